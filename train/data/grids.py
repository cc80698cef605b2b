"""Any spatio-temporal grid as one object: :class:`GridData` (numpy only).

PROTOCOL A was written for the Milan 5x5 block; this module lets the same protocol, baselines and
U-MASK grid model run on a user's own grid: a (slots x cells) matrix of raw activity whose cells
are row-major over an H x W block, a slot length that divides the day, and a cell adjacency.

- :func:`load_grid_csv` reads a user's CSV (plain or gzip) into a :class:`GridData`;
- :func:`milan_grid` is the shipped Milan sample, exactly PROTOCOL A's matrix;
- :func:`grid_adjacency` is the 4-neighbour adjacency of an H x W block (used when none is given);
- :meth:`GridData.splits` is :func:`umask.train.data.splits.grid_splits` of the grid (8:1:1 over
  whole days; Milan's 30 days give exactly ``MILAN_SPLITS``).

CSV layout read by :func:`load_grid_csv`::

    time,c0,c1,...,c11          <- optional header row (any non-numeric first line)
    0,107.0,112.3,...,97.7      <- optional leading time / slot column, then one value per cell
    1,91.7,96.3,...,79.4

One row per slot, in time order; row 0 is taken as the start of a day (time of day = row mod
slots per day). The leading column is a time / slot column when the header names it (``time``,
``slot``, ``timestamp``, ``date``, ...), when its fields are not numbers (``2013-11-01 00:00``),
or, without a header, when the row has exactly one column more than the grid's cells and the
first column rises by one constant step (slot indices, Unix seconds / ms); the loader logs which
rule it applied. Values must be finite and non-negative; every bad line raises
:class:`~umask.runtime.core.errors.DataFormatError` naming the file and the 1-based line; a bad
argument (``--grid``, ``--slot-minutes``) raises :class:`~umask.runtime.core.errors.InputError`
naming it.

Adjacency file (optional): either a cells x cells matrix (0/1, or non-negative weights such as
Milan's ``milan_5x5_adjacency.csv``; symmetric, zero diagonal), or an edge list of ``a,b`` rows
(0-based row-major cell indices, optional header; each edge is undirected).

Example::

    python -c "from umask.train.data.grids import load_grid_csv; print(load_grid_csv('my.csv', grid='3x4'))"
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from umask.runtime.core.errors import DataFormatError, InputError
from umask.runtime.core.events import open_text
from umask.train.data import splits as _splits

log = logging.getLogger(__name__)

REPO_ROOT: Path = Path(__file__).resolve().parents[2]
MILAN_DATA: Path = REPO_ROOT / "data" / "milan_telecom" / "milan_5x5_internet_10min_30d.csv.gz"
MILAN_ADJACENCY: Path = REPO_ROOT / "data" / "milan_telecom" / "milan_5x5_adjacency.csv"
MINUTES_PER_DAY: int = 1440
TIME_NAMES: frozenset[str] = frozenset(
    {"time", "slot", "slots", "timestamp", "datetime", "date", "t", "slot_index", "time_interval", "start",
     "start_time", "index", "ts"}
)


# ------------------------------------------------------------------------------------------------
# The grid
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GridData:
    """A (slots x cells) activity matrix on an H x W grid of cells.

    values:       float64 (slots, cells), raw units, cells row-major over height x width
    height/width: the grid; height * width == cells
    slot_minutes: length of one slot; 1440 % slot_minutes == 0
    adjacency:    float64 (cells, cells), 0/1 (or non-negative weights), symmetric; None -> the
                  4-neighbour adjacency of the H x W grid (:func:`grid_adjacency`), see :attr:`adj`
    source:       the file path, or ``"milan"`` for the shipped sample
    data:         ``"real"`` | ``"synthetic"``
    """

    values: np.ndarray
    height: int
    width: int
    slot_minutes: int
    adjacency: np.ndarray | None
    source: str
    data: str

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 2:
            raise InputError(f"{self.source}: grid values must be (slots, cells), got shape {values.shape}")
        if self.height < 1 or self.width < 1 or self.height * self.width != values.shape[1]:
            raise InputError(f"{self.source}: grid {self.height}x{self.width} does not match {values.shape[1]} cells")
        check_slot_minutes(self.slot_minutes)
        if self.data not in ("real", "synthetic"):
            raise InputError(f"{self.source}: data must be 'real' or 'synthetic', got {self.data!r}")
        object.__setattr__(self, "values", values)
        if self.adjacency is not None:
            adj = np.asarray(self.adjacency, dtype=np.float64)
            n = values.shape[1]
            if adj.shape != (n, n):
                raise InputError(f"{self.source}: adjacency has shape {adj.shape}, the grid has {n} cells")
            object.__setattr__(self, "adjacency", adj)

    @property
    def slots_per_day(self) -> int:
        return MINUTES_PER_DAY // self.slot_minutes

    @property
    def n_cells(self) -> int:
        return int(self.values.shape[1])

    @property
    def n_slots(self) -> int:
        return int(self.values.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return self.height, self.width

    @property
    def adj(self) -> np.ndarray:
        """The adjacency to use: the given one, else the 4-neighbour adjacency of the grid."""
        return grid_adjacency(self.height, self.width) if self.adjacency is None else self.adjacency

    def splits(self) -> dict[str, tuple[int, int]]:
        """Chronological 8:1:1 over whole days (:func:`umask.train.data.splits.grid_splits`)."""
        return _splits.grid_splits(self.n_slots, self.slots_per_day)

    def a1_lengths(self) -> tuple[int, int]:
        """(history, horizon) of A1: 2 days -> 1 day in this grid's slots."""
        return _splits.a1_lengths(self.slots_per_day)

    def a2_length(self) -> int:
        """A2 imputation window: 2 days in this grid's slots."""
        return _splits.a2_length(self.slots_per_day)

    def describe(self) -> str:
        days = self.n_slots / self.slots_per_day
        return (f"{self.source}: {self.data}, {self.n_slots} slots of {self.slot_minutes} min ({days:g} days) x "
                f"{self.n_cells} cells ({self.height}x{self.width})")


def check_slot_minutes(slot_minutes: int) -> int:
    """``slot_minutes`` as int if it divides the day, else InputError naming ``--slot-minutes``."""
    try:
        m = int(slot_minutes)
    except (TypeError, ValueError):
        raise InputError(f"--slot-minutes must be an integer number of minutes, got {slot_minutes!r}") from None
    if m != slot_minutes or m < 1 or MINUTES_PER_DAY % m:
        raise InputError(f"--slot-minutes {slot_minutes!r} must divide the day (1440 min): e.g. 5, 10, 15, 30, 60")
    return m


def parse_grid(grid: str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``"HxW"`` (or ``(H, W)``) -> (H, W); InputError naming ``--grid`` otherwise."""
    if isinstance(grid, str):
        m = re.fullmatch(r"\s*(\d+)\s*[xX*,]\s*(\d+)\s*", grid)
        if not m:
            raise InputError(f"--grid {grid!r}: expected HxW, e.g. 5x5 or 3x4")
        h, w = int(m.group(1)), int(m.group(2))
    else:
        try:
            h, w = (int(v) for v in grid)
        except (TypeError, ValueError):
            raise InputError(f"--grid {grid!r}: expected HxW, e.g. 5x5 or 3x4") from None
    if h < 1 or w < 1:
        raise InputError(f"--grid {grid!r}: height and width must be >= 1")
    return h, w


def grid_adjacency(height: int, width: int) -> np.ndarray:
    """4-neighbour 0/1 adjacency (cells, cells) float64 of an H x W grid, cells row-major."""
    h, w = int(height), int(width)
    n = h * w
    adj = np.zeros((n, n), dtype=np.float64)
    idx = np.arange(n).reshape(h, w)
    right = (idx[:, :-1].ravel(), idx[:, 1:].ravel())
    down = (idx[:-1, :].ravel(), idx[1:, :].ravel())
    for a, b in (right, down):
        adj[a, b] = 1.0
        adj[b, a] = 1.0
    return adj


# ------------------------------------------------------------------------------------------------
# CSV reader
# ------------------------------------------------------------------------------------------------
def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _split_fields(line: str) -> list[str]:
    sep = "," if "," in line else ("\t" if "\t" in line else None)
    return [f.strip() for f in (line.split(sep) if sep else line.split())]


def _read_lines(path: Path) -> list[tuple[int, list[str]]]:
    """(1-based line number, fields) of every line; blank lines only allowed at the end."""
    out: list[tuple[int, list[str]]] = []
    blank_at: int | None = None
    with open_text(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                blank_at = blank_at or lineno
                continue
            if blank_at is not None:
                raise DataFormatError(path, blank_at, "empty line inside the data")
            out.append((lineno, _split_fields(line)))
    if not out:
        raise DataFormatError(path, None, "file is empty")
    return out


def _constant_step(col: np.ndarray) -> float | None:
    if len(col) < 2:
        return None
    d = np.diff(col)
    return float(d[0]) if d[0] > 0 and np.all(d == d[0]) else None


def load_grid_csv(
    path: str | Path,
    *,
    grid: str | tuple[int, int] | None = None,
    slot_minutes: int = 10,
    adjacency: str | Path | None = None,
    data: str = "real",
) -> GridData:
    """Read a slots x cells CSV (see the module doc for the layout) into a :class:`GridData`.

    ``grid``: ``"HxW"`` or (H, W); required when the number of value columns is not a square (a
    square count n*n defaults to n x n), checked against the columns. ``slot_minutes`` must divide
    the day. ``adjacency``: optional matrix or edge-list CSV; None -> 4-neighbour adjacency.
    ``data``: the provenance label (``"real"`` unless you generated the file).
    """
    path = Path(path)
    minutes = check_slot_minutes(slot_minutes)
    if not path.is_file():
        raise InputError(f"--data {path}: no such file")
    shape = None if grid is None else parse_grid(grid)
    lines = _read_lines(path)

    # header row: any non-numeric field in the first line
    header: list[str] | None = None
    if not all(_is_number(f) for f in lines[0][1]):
        header = lines[0][1]
        lines = lines[1:]
        if not lines:
            raise DataFormatError(path, 1, "only a header row, no data rows")
    first_no, first = lines[0]
    n_fields = len(first)
    for lineno, fields in lines:
        if len(fields) != n_fields:
            raise DataFormatError(path, lineno, f"ragged row: expected {n_fields} fields (as line {first_no}), "
                                                f"found {len(fields)}")
    if header is not None and len(header) != n_fields:
        raise DataFormatError(path, 1, f"header has {len(header)} fields, the data rows {n_fields}")

    # leading time / slot column
    time_col = False
    reason = ""
    if header is not None and header[0].strip().lower() in TIME_NAMES:
        time_col, reason = True, f"the header names it {header[0]!r}"
    elif not _is_number(first[0]):
        time_col, reason = True, f"its first field {first[0]!r} is not a number"
    elif n_fields >= 2:
        col = np.array([float(f[0]) if _is_number(f[0]) else np.nan for _, f in lines])
        step = _constant_step(col) if np.all(np.isfinite(col)) else None
        if step is not None:
            n_rest = n_fields - 1
            fits = shape[0] * shape[1] == n_rest if shape else (math.isqrt(n_rest) ** 2 == n_rest
                                                               and math.isqrt(n_fields) ** 2 != n_fields)
            if fits:
                time_col, reason = True, (f"it rises by a constant step {step:g} and the other {n_rest} columns "
                                          f"make the grid")
    if time_col:
        log.info("%s: column 1 is taken as the time / slot column (%s); it is not a cell", path, reason)
        col0 = [f[0] for _, f in lines]
        if all(_is_number(v) for v in col0):
            t = np.asarray([float(v) for v in col0])
            bad = np.flatnonzero(np.diff(t) <= 0)
            if len(bad):
                raise DataFormatError(path, lines[int(bad[0]) + 1][0],
                                      f"time column not increasing: {col0[bad[0] + 1]} after {col0[bad[0]]}")
    start = 1 if time_col else 0
    n_cells = n_fields - start
    if n_cells < 1:
        raise DataFormatError(path, first_no, "no value columns")

    # grid shape
    if shape is None:
        side = math.isqrt(n_cells)
        if side * side != n_cells:
            raise InputError(f"{path} has {n_cells} value columns, not a square number: pass --grid HxW "
                             f"(height x width = {n_cells}, cells row-major)")
        shape = (side, side)
    elif shape[0] * shape[1] != n_cells:
        raise InputError(f"--grid {shape[0]}x{shape[1]} means {shape[0] * shape[1]} cells, but {path}:{first_no} "
                         f"has {n_cells} value columns" + (" (after the time column)" if time_col else ""))

    values = np.empty((len(lines), n_cells), dtype=np.float64)
    for i, (lineno, fields) in enumerate(lines):
        for j, text in enumerate(fields[start:]):
            try:
                v = float(text)
            except ValueError:
                raise DataFormatError(path, lineno, f"column {j + start + 1}: not a number: {text!r}") from None
            if not math.isfinite(v):
                raise DataFormatError(path, lineno, f"column {j + start + 1}: not a finite number: {text!r}")
            if v < 0:
                raise DataFormatError(path, lineno, f"column {j + start + 1}: negative value {v:g}")
            values[i, j] = v

    adj = None if adjacency is None else read_adjacency_csv(adjacency, n_cells)
    out = GridData(values=values, height=shape[0], width=shape[1], slot_minutes=minutes, adjacency=adj,
                   source=str(path), data=data)
    log.info("%s", out.describe())
    return out


def read_adjacency_csv(path: str | Path, n_cells: int) -> np.ndarray:
    """An adjacency file (cells x cells matrix, or ``a,b`` edge list) -> (cells, cells) float64.

    Matrix: finite, non-negative, symmetric, zero diagonal. Edge list: 0-based cell indices in
    0..cells-1, no self loops; edges are undirected. Errors name the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--adjacency {path}: no such file")
    lines = _read_lines(path)
    if not all(_is_number(f) for f in lines[0][1]):
        lines = lines[1:]  # header
        if not lines:
            raise DataFormatError(path, 1, "only a header row")
    width = len(lines[0][1])
    if width == n_cells and len(lines) == n_cells:
        adj = np.empty((n_cells, n_cells))
        for i, (lineno, fields) in enumerate(lines):
            if len(fields) != n_cells:
                raise DataFormatError(path, lineno, f"ragged row: expected {n_cells} fields, found {len(fields)}")
            for j, text in enumerate(fields):
                try:
                    v = float(text)
                except ValueError:
                    raise DataFormatError(path, lineno, f"column {j + 1}: not a number: {text!r}") from None
                if not math.isfinite(v) or v < 0:
                    raise DataFormatError(path, lineno, f"column {j + 1}: weight must be finite and >= 0, got {text!r}")
                adj[i, j] = v
        for i, (lineno, _) in enumerate(lines):
            if adj[i, i] != 0:
                raise DataFormatError(path, lineno, f"self loop: A[{i},{i}]={adj[i, i]:g} (the diagonal must be 0)")
            off = np.flatnonzero(adj[i] != adj[:, i])
            if len(off):
                j = int(off[0])
                raise DataFormatError(path, lineno, f"not symmetric: A[{i},{j}]={adj[i, j]:g} but A[{j},{i}]={adj[j, i]:g}")
        return adj
    if width != 2:
        raise DataFormatError(path, lines[0][0], f"expected a {n_cells}x{n_cells} matrix or an 'a,b' edge list, "
                                                 f"found {width} fields per row and {len(lines)} rows")
    adj = np.zeros((n_cells, n_cells))
    for lineno, fields in lines:
        if len(fields) != 2:
            raise DataFormatError(path, lineno, f"edge list row must be 'a,b', found {len(fields)} fields")
        try:
            a, b = int(fields[0]), int(fields[1])
        except ValueError:
            raise DataFormatError(path, lineno, f"cell indices must be integers: {','.join(fields)!r}") from None
        for v in (a, b):
            if not 0 <= v < n_cells:
                raise DataFormatError(path, lineno, f"cell index {v} out of range 0..{n_cells - 1}")
        if a == b:
            raise DataFormatError(path, lineno, f"self loop {a},{b}")
        adj[a, b] = adj[b, a] = 1.0
    return adj


# ------------------------------------------------------------------------------------------------
# The shipped Milan sample
# ------------------------------------------------------------------------------------------------
def milan_grid() -> GridData:
    """The shipped Milan 5x5 block: exactly PROTOCOL A's (4320, 25) matrix, 10-min slots, with its
    weighted 4-neighbour adjacency (``milan_5x5_adjacency.csv``); ``splits()`` == MILAN_SPLITS."""
    from umask.train.data.milan import read_adjacency, read_internet_matrix

    values = read_internet_matrix(MILAN_DATA)
    adj = read_adjacency(MILAN_ADJACENCY)
    return GridData(values=values, height=5, width=5, slot_minutes=10, adjacency=adj, source="milan", data="real")


def open_grid(
    path: str | Path | None = None,
    *,
    grid: str | tuple[int, int] | None = None,
    slot_minutes: int = 10,
    adjacency: str | Path | None = None,
) -> GridData:
    """The grid a command line names: :func:`milan_grid` for the shipped Milan matrix (or no path)
    read as 5x5 10-minute slots without another adjacency, else :func:`load_grid_csv`."""
    if path is None:
        return milan_grid()
    shipped = Path(path).resolve() == MILAN_DATA.resolve()
    if shipped and adjacency is None and int(slot_minutes) == 10 and (grid is None or parse_grid(grid) == (5, 5)):
        return milan_grid()
    return load_grid_csv(path, grid=grid, slot_minutes=slot_minutes, adjacency=adjacency)


def run_grid_args(train_cfg: dict) -> dict:
    """:func:`open_grid`'s arguments for the grid a grid run (grid U-MASK, U-STS-LLM) was trained on, read from its
    config's ``train`` section (``data`` None or ``"milan"``: the shipped sample). The exporters and ``umask eval``
    reopen a run's own grid with it, so a run on a user's CSV is never exported or scored on Milan by default."""
    src = train_cfg.get("data")
    return {"path": None if src in (None, "milan") else src, "grid": train_cfg.get("grid"),
            "slot_minutes": int(train_cfg.get("slot_minutes", 10)), "adjacency": train_cfg.get("adjacency")}


__all__ = ["GridData", "check_slot_minutes", "grid_adjacency", "load_grid_csv", "milan_grid", "open_grid",
           "parse_grid", "read_adjacency_csv", "run_grid_args"]
