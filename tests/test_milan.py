"""Tests of the Milan Telecom Italia loaders against the real samples in data/milan_telecom/."""

from __future__ import annotations

import gzip
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from umask.runtime.core.errors import DataFormatError
from umask.train.data import milan

DATA = Path(__file__).resolve().parents[1] / "data" / "milan_telecom"
RAW = DATA / "sms-call-internet-mi_raw_format_sample.txt"
MATRIX = DATA / "milan_5x5_internet_10min_30d.csv.gz"
CELLS = DATA / "milan_6cells_internet_total_2013-11-01.csv"
GRID = DATA / "milano-grid.geojson.gz"
ADJ = DATA / "milan_5x5_adjacency.csv"


@pytest.fixture(scope="module")
def raw() -> milan.MilanRaw:
    return milan.read_raw_daily(RAW)


# ---- raw daily format ---------------------------------------------------------------------------
def test_raw_fixture_parses(raw: milan.MilanRaw) -> None:
    # SOURCE.md: square 1 only, 71 slots from 2013-10-31 23:00 UTC, 143 lines
    assert raw.square_ids.tolist() == [1]
    assert raw.activity.shape == (1, 71, 5)
    assert raw.n_lines == 143 and raw.n_records == 143 and raw.skipped == {}
    assert raw.clock.start_ms[0] == milan.EPOCH_MS == 1383260400000
    assert raw.present.all()
    assert np.all(raw.activity >= 0)


def test_raw_sums_over_country_codes_match_hand_parse(raw: milan.MilanRaw) -> None:
    # Independent hand parse: internet is field 8 (index 7) when present, blank/omitted means 0.
    first_slot = 1383260400000
    expected_internet = 0.0
    expected_sms_in = 0.0
    for line in RAW.read_text().splitlines():
        fields = line.split("\t")
        if fields[0] == "1" and int(fields[1]) == first_slot:
            if len(fields) == 8 and fields[7]:
                expected_internet += float(fields[7])
            if len(fields) >= 4 and fields[3]:
                expected_sms_in += float(fields[3])
    assert expected_internet > 0
    assert raw.column("internet")[0, 0] == pytest.approx(expected_internet, rel=1e-12)
    assert raw.column("sms_in")[0, 0] == pytest.approx(expected_sms_in, rel=1e-12)
    assert raw.square(1)[0, milan.ACTIVITIES.index("internet")] == pytest.approx(expected_internet)


def test_slot_clock_of_slot_zero(raw: milan.MilanRaw) -> None:
    assert raw.clock.local_slot[0] == 0
    assert raw.clock.local_date[0] == np.datetime64("2013-11-01")
    assert raw.clock.global_slot[0] == 0
    # slot 6 is 01:00 local, still 2013-11-01
    assert raw.clock.local_slot[6] == 6


def test_slots_per_local_day_dst() -> None:
    assert milan.slots_in_local_day(date(2013, 11, 1)) == 144
    assert milan.slots_in_local_day(date(2013, 10, 27)) == 150  # DST ends
    assert milan.slots_in_local_day(date(2014, 3, 30)) == 138  # DST starts
    # on the 150-slot day, the slot starting at 23:50 local (UTC+1) is index 149
    last = int(np.datetime64("2013-10-27T22:50", "ms").astype(np.int64))
    clock = milan.slot_clock([last])
    assert clock.local_slot[0] == 149 and clock.local_date[0] == np.datetime64("2013-10-27")


def test_raw_gzip_is_transparent(tmp_path: Path) -> None:
    gz = tmp_path / "day.txt.gz"
    gz.write_bytes(gzip.compress(RAW.read_bytes()))
    a, b = milan.read_raw_daily(RAW), milan.read_raw_daily(gz)
    np.testing.assert_array_equal(a.activity, b.activity)


GOOD = "1\t1383260400000\t39\t0.1\t0.2\t0.3\t0.4\t11.0\n"
BAD_LINES = {
    "too_many_fields": "1\t1383260400000\t39\t0.1\t0.2\t0.3\t0.4\t11.0\t9\n",
    "non_numeric": "1\t1383260400000\t39\tabc\n",
    "negative": "1\t1383260400000\t39\t-0.5\n",
    "off_slot_boundary": "1\t1383260400001\t39\t0.5\n",
}


@pytest.mark.parametrize("reason", sorted(BAD_LINES))
def test_raw_bad_line_raises_with_file_and_line(tmp_path: Path, reason: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(GOOD + GOOD + BAD_LINES[reason] + GOOD)
    with pytest.raises(DataFormatError) as err:
        milan.read_raw_daily(path)
    assert err.value.line == 3
    assert err.value.path == str(path)
    assert f"{path}:3" in str(err.value)


def test_raw_skip_mode_counts(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(GOOD + "".join(BAD_LINES[r] for r in sorted(BAD_LINES)) + BAD_LINES["negative"] + "\n")
    out = milan.read_raw_daily(path, on_error="skip")
    assert out.skipped == {"too_many_fields": 1, "non_numeric": 1, "negative": 2, "off_slot_boundary": 1, "empty_line": 1}
    assert out.n_lines == 7 and out.n_records == 1
    assert out.column("internet")[0, 0] == pytest.approx(11.0)


def test_raw_ragged_and_blank_fields_are_zero(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    path.write_text("5\t1383261000000\t0\t1.5\n5\t1383261000000\t39\t\t2.0\t\t\t3.0\n5\t1383260400000\t39\n")
    out = milan.read_raw_daily(path)
    assert out.square(5)[1].tolist() == [1.5, 2.0, 0.0, 0.0, 3.0]
    assert out.square(5)[0].tolist() == [0.0] * 5
    with pytest.raises(ValueError):
        milan.read_raw_daily(path, on_error="ignore")  # type: ignore[arg-type]


# ---- processed files ----------------------------------------------------------------------------
def test_internet_matrix() -> None:
    x = milan.read_internet_matrix(MATRIX)
    assert x.shape == (4320, 25) and x.dtype == np.float64
    assert np.all(x > 0)
    assert x.min() == pytest.approx(10.54, abs=0.01) and x.max() == pytest.approx(3136.28, abs=0.01)


@pytest.mark.parametrize(
    ("content", "line"),
    [("1,2,3\n4,5\n", 2), ("1,2,3\n4,x,6\n", 2), ("1,nan,3\n", 1), ("1,2,3\n\n1,2,3\n", 2)],
)
def test_internet_matrix_errors(tmp_path: Path, content: str, line: int) -> None:
    path = tmp_path / "m.csv"
    path.write_text(content)
    with pytest.raises(DataFormatError) as err:
        milan.read_internet_matrix(path, n_slots=None, n_cells=None)
    assert err.value.line == line and str(path) in str(err.value)


def test_internet_matrix_shape_check(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(DataFormatError, match="expected 25 fields"):
        milan.read_internet_matrix(path)
    with pytest.raises(DataFormatError, match="expected 4320 rows"):
        milan.read_internet_matrix(path, n_cells=3)


def test_identified_cells() -> None:
    cells = milan.read_identified_cells(CELLS)
    assert sorted(cells) == [4259, 4456, 4703, 5060, 5085, 5200]
    for series in cells.values():
        assert len(series.clock) == 144 and series.values.shape == (144,)
        assert series.clock.local_slot.tolist() == list(range(144))
        assert np.all(series.clock.local_date == np.datetime64("2013-11-01"))
        assert series.clock.start_ms[0] == milan.EPOCH_MS
    assert cells[4259].values[0] == pytest.approx(261.68029483973805)


def test_identified_cells_errors(tmp_path: Path) -> None:
    header = "square_id,time_interval,internet_total\n"
    cases = {
        "wrong,header\n": 1,
        header + "1,1383260400000,1.0\n1,1383260400000,2.0\n": 3,  # duplicate
        header + "1,1383260400000,abc\n": 2,
        header + "1,1383260400500,1.0\n": 2,
    }
    for content, line in cases.items():
        path = tmp_path / "c.csv"
        path.write_text(content)
        with pytest.raises(DataFormatError) as err:
            milan.read_identified_cells(path)
        assert err.value.line == line


def test_grid() -> None:
    grid = milan.read_grid_geojson(GRID)
    assert len(grid) == 10000 and grid.centroids.shape == (10000, 2)
    lon, lat = grid.centroids[:, 0], grid.centroids[:, 1]
    # cellId 1 is the south-west-most centroid
    assert int(np.argmin(lon + lat)) == 0
    assert lat[0] == pytest.approx(lat.min(), abs=1e-3) and lon[0] == pytest.approx(lon.min(), abs=1e-3)
    # ids grow eastwards then northwards
    assert grid.centroid(2)[0] > grid.centroid(1)[0]
    assert grid.centroid(101)[1] > grid.centroid(1)[1]
    assert grid.cell_to_rowcol(1) == (0, 0)
    assert grid.cell_to_rowcol(101) == (1, 0)
    assert grid.cell_to_rowcol(10000) == (99, 99)
    ids = np.arange(1, 10001)
    np.testing.assert_array_equal(grid.rowcol_to_cell(*grid.cell_to_rowcol(ids)), ids)
    with pytest.raises(ValueError):
        grid.cell_to_rowcol(0)


def test_grid_errors(tmp_path: Path) -> None:
    path = tmp_path / "g.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(DataFormatError):
        milan.read_grid_geojson(path)
    path.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(DataFormatError, match="expected 10000 cells"):
        milan.read_grid_geojson(path)


def test_adjacency() -> None:
    adj = milan.read_adjacency(ADJ)
    assert adj.shape == (25, 25)
    np.testing.assert_array_equal(adj, adj.T)
    # row-major 5x5: cell k is adjacent to k+1 (same row) and k+5
    assert adj[0, 1] > 0 and adj[0, 5] > 0 and adj[4, 5] == 0


def test_adjacency_asymmetric(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("0,1\n2,0\n")
    with pytest.raises(DataFormatError, match="not symmetric") as err:
        milan.read_adjacency(path, n_cells=2)
    assert err.value.line == 1
