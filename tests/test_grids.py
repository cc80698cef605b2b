"""Tests of the any-grid loader (train/data/grids.py) and the grid splits (train/data/splits.py).

Every grid here is cut from the REAL Milan matrix (the shipped 5x5 sample or the raw-format file).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from umask.runtime.core.errors import DataFormatError, InputError
from umask.train.data import grids, splits
from umask.train.data.milan import read_adjacency, read_internet_matrix, read_raw_daily

DATA = Path(__file__).resolve().parents[1] / "data" / "milan_telecom"
MILAN = DATA / "milan_5x5_internet_10min_30d.csv.gz"


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    return read_internet_matrix(MILAN)


def sub_block(matrix: np.ndarray, rows: range, cols: range) -> np.ndarray:
    """Columns of the (r, c) cells of the 5x5 block, row-major over the sub-block."""
    return matrix[:, [r * 5 + c for r in rows for c in cols]]


def write_csv(path: Path, values: np.ndarray, *, header: list[str] | None = None, time: np.ndarray | None = None) -> Path:
    lines = [] if header is None else [",".join(header)]
    for i, row in enumerate(values):
        fields = [repr(float(v)) for v in row]
        if time is not None:
            fields.insert(0, str(time[i]))
        lines.append(",".join(fields))
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


# ---- Milan ----------------------------------------------------------------------------------------
def test_milan_grid_is_protocol_a(matrix: np.ndarray) -> None:
    g = grids.milan_grid()
    np.testing.assert_array_equal(g.values, matrix)
    assert (g.height, g.width, g.slot_minutes, g.slots_per_day, g.n_cells) == (5, 5, 10, 144, 25)
    assert g.splits() == splits.MILAN_SPLITS
    assert splits.grid_splits(4320, 144) == splits.MILAN_SPLITS
    assert g.a1_lengths() == (splits.A1_HISTORY, splits.A1_HORIZON) and g.a2_length() == splits.A2_WINDOW
    np.testing.assert_array_equal(g.adj, read_adjacency(DATA / "milan_5x5_adjacency.csv"))
    # every Milan weight sits on an edge of the 4-neighbour grid (some of those edges weigh 0)
    four = grids.grid_adjacency(5, 5)
    assert np.all(four[g.adj > 0] == 1) and 0 < (g.adj > 0).sum() < four.sum()


def test_load_shipped_milan_csv_equals_milan_grid(matrix: np.ndarray) -> None:
    g = grids.load_grid_csv(MILAN)  # 25 columns: a square, no --grid needed
    np.testing.assert_array_equal(g.values, matrix)
    assert g.shape == (5, 5) and g.adjacency is None and g.splits() == splits.MILAN_SPLITS


def test_window_functions_with_explicit_milan_splits_are_identical(matrix: np.ndarray) -> None:
    sp = grids.milan_grid().splits()
    a = splits.forecast_windows(matrix, "test")
    b = splits.forecast_windows(matrix, "test", splits=sp)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.starts, b.starts)
    c = splits.imputation_windows(matrix, "val")
    d = splits.imputation_windows(matrix, "val", splits=sp)
    np.testing.assert_array_equal(c.mask, d.mask)
    np.testing.assert_array_equal(splits.fit_scaler(matrix).std, splits.fit_scaler(matrix, splits=sp).std)


# ---- another grid ---------------------------------------------------------------------------------
def test_3x4_sub_block_with_header_and_slot_column(tmp_path: Path, matrix: np.ndarray) -> None:
    block = sub_block(matrix, range(1, 4), range(0, 4))  # (4320, 12)
    path = write_csv(tmp_path / "b.csv.gz", block, header=["slot", *[f"c{i}" for i in range(12)]],
                     time=np.arange(len(block)))
    with pytest.raises(InputError, match="not a square number: pass --grid"):
        grids.load_grid_csv(path)
    g = grids.load_grid_csv(path, grid="3x4")
    np.testing.assert_array_equal(g.values, block)
    assert g.shape == (3, 4) and g.n_cells == 12 and g.splits() == splits.MILAN_SPLITS
    adj = g.adj
    assert adj.shape == (12, 12) and adj[0, 1] == adj[0, 4] == 1 and adj[3, 4] == 0  # 3 and 4: row wrap
    with pytest.raises(InputError, match=r"--grid 4x4 means 16 cells, but .*b.csv.gz:2 has 12 value columns"):
        grids.load_grid_csv(path, grid="4x4")


def test_headerless_time_column_detected_and_hourly_slots(tmp_path: Path, matrix: np.ndarray) -> None:
    block = sub_block(matrix, range(0, 2), range(0, 2))
    hourly = block.reshape(30, 24, 6, 4).sum(axis=2).reshape(720, 4)  # 10-min -> 60-min slots
    ms = 1383260400000 + 3_600_000 * np.arange(720)
    path = write_csv(tmp_path / "h.csv", hourly, time=ms)  # 5 columns: 1 time + 2x2
    g = grids.load_grid_csv(path, slot_minutes=60)
    np.testing.assert_array_equal(g.values, hourly)
    assert g.shape == (2, 2) and g.slots_per_day == 24
    assert g.splits() == {"train": (0, 576), "val": (576, 648), "test": (648, 720)}
    assert g.a1_lengths() == (48, 24)
    sp = g.splits()
    win = splits.forecast_windows(g.values, "test", history=48, horizon=24, splits=sp)
    assert win.starts[0] == 648 and win.starts[-1] == 720 - 24
    np.testing.assert_array_equal(win.x[0], hourly[600:648])
    imp = splits.imputation_windows(g.values, "test", window=48, splits=sp)
    assert imp.truth.shape == (25, 48, 4) and imp.starts[0] == 648


def test_raw_format_sample_as_a_grid(tmp_path: Path) -> None:
    raw = read_raw_daily(DATA / "sms-call-internet-mi_raw_format_sample.txt")
    internet = raw.column("internet").T  # (slots, squares)
    n = internet.shape[1]
    path = write_csv(tmp_path / "raw.csv", internet)
    g = grids.load_grid_csv(path, grid=(1, n), slot_minutes=10)
    np.testing.assert_array_equal(g.values, internet)
    with pytest.raises(InputError, match="8:1:1 split needs"):
        g.splits()  # the sample spans less than a day: too short for any window


def test_adjacency_matrix_and_edge_list(tmp_path: Path, matrix: np.ndarray) -> None:
    block = sub_block(matrix, range(0, 3), range(0, 4))
    data = write_csv(tmp_path / "g.csv", block)
    edges = tmp_path / "edges.csv"
    edges.write_text("a,b\n0,1\n1,2\n5,9\n")
    g = grids.load_grid_csv(data, grid="3x4", adjacency=edges)
    assert g.adjacency is not None and g.adjacency.sum() == 6 and g.adjacency[9, 5] == 1
    full = tmp_path / "adj.csv"
    np.savetxt(full, grids.grid_adjacency(3, 4), delimiter=",", fmt="%g")
    g2 = grids.load_grid_csv(data, grid="3x4", adjacency=full)
    np.testing.assert_array_equal(g2.adj, grids.grid_adjacency(3, 4))

    bad = grids.grid_adjacency(3, 4)
    bad[2, 3] = 0.0  # row 3 (1-based) loses an edge that row 4 keeps
    np.savetxt(full, bad, delimiter=",", fmt="%g")
    with pytest.raises(DataFormatError, match=r"adj.csv:3: not symmetric: A\[2,3\]=0 but A\[3,2\]=1"):
        grids.load_grid_csv(data, grid="3x4", adjacency=full)
    edges.write_text("0,1\n4,12\n")
    with pytest.raises(DataFormatError, match=r"edges.csv:2: cell index 12 out of range 0..11"):
        grids.load_grid_csv(data, grid="3x4", adjacency=edges)


# ---- bad input: one message naming file and line ---------------------------------------------------
@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("1.0,2.0,nan,4.0", r"bad.csv:3: column 3: not a finite number: 'nan'"),
        ("1.0,2.0,-3.0,4.0", r"bad.csv:3: column 3: negative value -3"),
        ("1.0,2.0,4.0", r"bad.csv:3: ragged row: expected 4 fields \(as line 1\), found 3"),
        ("1.0,2.0,x,4.0", r"bad.csv:3: column 3: not a number: 'x'"),
        ("1.0,2.0,inf,4.0", r"bad.csv:3: column 3: not a finite number: 'inf'"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, matrix: np.ndarray, row: str, message: str) -> None:
    rows = [",".join(repr(float(v)) for v in matrix[i, :4]) for i in range(4)]
    rows[2] = row
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataFormatError, match=message):
        grids.load_grid_csv(path, grid="2x2")


def test_bad_arguments(tmp_path: Path, matrix: np.ndarray) -> None:
    path = write_csv(tmp_path / "ok.csv", matrix[:, :4])
    with pytest.raises(InputError, match="--slot-minutes 7"):
        grids.load_grid_csv(path, slot_minutes=7)
    with pytest.raises(InputError, match="--grid '2by2'"):
        grids.load_grid_csv(path, grid="2by2")
    with pytest.raises(InputError, match="no such file"):
        grids.load_grid_csv(tmp_path / "missing.csv")
    (tmp_path / "blank.csv").write_text("1,2,3,4\n\n5,6,7,8\n")
    with pytest.raises(DataFormatError, match="blank.csv:2: empty line"):
        grids.load_grid_csv(tmp_path / "blank.csv")
    (tmp_path / "back.csv").write_text("0,1,2,3,4\n2,1,2,3,4\n1,1,2,3,4\n")
    with pytest.raises(InputError):  # the first column is not a constant step: 5 value columns, not square
        grids.load_grid_csv(tmp_path / "back.csv")
    (tmp_path / "tback.csv").write_text("time,a,b,c,d\n0,1,2,3,4\n2,1,2,3,4\n1,1,2,3,4\n")
    with pytest.raises(DataFormatError, match="tback.csv:4: time column not increasing"):
        grids.load_grid_csv(tmp_path / "tback.csv")
