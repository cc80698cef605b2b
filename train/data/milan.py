"""Loaders for the Milan Telecom Italia Big Data Challenge samples (numpy only).

See ``data/milan_telecom/SOURCE.md`` for where every file comes from. This module reads:

- the raw daily format (``sms-call-internet-mi-YYYY-MM-DD.txt``): :func:`read_raw_daily`;
- the processed 5x5 internet matrix (4320 slots x 25 cells): :func:`read_internet_matrix`;
- the 6 fully identified cells of 2013-11-01: :func:`read_identified_cells`;
- the 100x100 Milano grid GeoJSON: :func:`read_grid_geojson`;
- the 25x25 adjacency of the 5x5 block: :func:`read_adjacency`.

Every loader raises :class:`~umask.runtime.core.errors.DataFormatError` (file and 1-based line) on bad
input. Every file may be plain or gzip-compressed: compression is detected from its first two bytes,
not from its name.

The slot clock
--------------
Milan data comes in 10-minute slots whose start is stored as Unix milliseconds (UTC). A slot is
also placed on its *local* (Europe/Rome) day: ``local_slot`` counts 10-minute slots elapsed since
local midnight, ``local_date`` is the local calendar date. A normal day has 144 slots; the day
daylight saving starts has 138 and the day it ends has 150 (e.g. 2013-10-27 has 150, 2014-03-30
has 138). 2013-11-01 is an ordinary 144-slot day. Because Rome's UTC offsets are whole hours, slot
boundaries in UTC are slot boundaries in local time too.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np

from umask.runtime.core.errors import DataFormatError
from umask.runtime.core.events import open_text

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# Constants (the single place where the Milan time base and layout are defined)
# ------------------------------------------------------------------------------------------------
SLOT_MINUTES: int = 10  # length of one time slot
SLOT_MS: int = SLOT_MINUTES * 60 * 1000  # 600_000 ms
SLOTS_PER_DAY: int = 24 * 60 // SLOT_MINUTES  # 144 on a day without a DST change
TIMEZONE: str = "Europe/Rome"  # local time of the data set
EPOCH_MS: int = 1383260400000  # start of slot 0 = 2013-10-31 23:00 UTC = 2013-11-01 00:00 Europe/Rome
EPOCH_LOCAL_DATE: date = date(2013, 11, 1)  # local date of slot 0
GRID_SIDE: int = 100  # Milano grid is 100 x 100 cells; cellId 1 = south-west, ids grow east then north
RAW_FIELDS: tuple[str, ...] = (
    "square_id", "time_interval", "country_code",
    "sms_in", "sms_out", "call_in", "call_out", "internet",
)
ACTIVITIES: tuple[str, ...] = RAW_FIELDS[3:]  # the five activity columns, in file order
MATRIX_SLOTS: int = 4320  # milan_5x5_internet_10min_30d: 30 days x 144 slots
MATRIX_CELLS: int = 25  # 5 x 5 block, row-major

OnError = Literal["raise", "skip"]

_ZONE = ZoneInfo(TIMEZONE)


# ------------------------------------------------------------------------------------------------
# Small I/O helpers
# ------------------------------------------------------------------------------------------------
def _strip_eol(line: str) -> str:
    return line.rstrip("\r\n")


def _parse_float(text: str, path: Path, lineno: int, what: str) -> float:
    """A finite float; raise DataFormatError naming the file, line and field otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise DataFormatError(path, lineno, f"{what}: not a number: {text!r}") from None
    if not math.isfinite(value):
        raise DataFormatError(path, lineno, f"{what}: not a finite number: {text!r}")
    return value


def _read_numeric_rows(path: Path, sep: str, n_cols: int | None) -> np.ndarray:
    """Parse a header-less numeric CSV into a float64 matrix, checking every line.

    ``n_cols`` fixes the expected number of fields per row; ``None`` takes it from the first row.
    Blank fields, non-numbers, NaN/inf and ragged rows raise DataFormatError with the line.
    """
    rows: list[list[float]] = []
    with open_text(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = _strip_eol(raw)
            if not line.strip():
                raise DataFormatError(path, lineno, "empty line")
            fields = line.split(sep)
            if n_cols is None:
                n_cols = len(fields)
            if len(fields) != n_cols:
                raise DataFormatError(path, lineno, f"expected {n_cols} fields, found {len(fields)}")
            rows.append([_parse_float(f, path, lineno, f"column {j + 1}") for j, f in enumerate(fields)])
    if not rows:
        raise DataFormatError(path, None, "file is empty")
    return np.asarray(rows, dtype=np.float64)


# ------------------------------------------------------------------------------------------------
# Slot clock
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SlotClock:
    """Where each 10-minute slot lies in time.

    start_ms:    slot start, Unix milliseconds UTC, int64 (n,)
    local_slot:  index of the slot within its Europe/Rome day, int16 (n,), 0 at local midnight
    local_date:  Europe/Rome calendar date of the slot start, datetime64[D] (n,)
    """

    start_ms: np.ndarray
    local_slot: np.ndarray
    local_date: np.ndarray

    @property
    def global_slot(self) -> np.ndarray:
        """Slot index counted from slot 0 of the data set (:data:`EPOCH_MS`), int64."""
        return (self.start_ms - EPOCH_MS) // SLOT_MS

    def __len__(self) -> int:
        return int(self.start_ms.shape[0])


def _local_midnight_ms(day: date) -> int:
    """UTC milliseconds of 00:00 Europe/Rome on ``day`` (never ambiguous: Rome switches at 02:00/03:00)."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=_ZONE)
    return int(midnight.timestamp()) * 1000


def slots_in_local_day(day: date) -> int:
    """Number of 10-minute slots in the Europe/Rome day ``day`` (144, or 138/150 on DST days)."""
    return (_local_midnight_ms(day + timedelta(days=1)) - _local_midnight_ms(day)) // SLOT_MS


def slot_clock(start_ms: np.ndarray | list[int]) -> SlotClock:
    """Build the :class:`SlotClock` of slot starts given in UTC milliseconds.

    Raises ValueError if a start is not on a 10-minute boundary.
    """
    start = np.asarray(start_ms, dtype=np.int64).reshape(-1)
    if np.any(start % SLOT_MS != 0):
        bad = int(start[start % SLOT_MS != 0][0])
        raise ValueError(f"slot start {bad} ms is not on a {SLOT_MINUTES}-minute boundary")
    uniq, inverse = np.unique(start, return_inverse=True)
    local_slot = np.empty(uniq.shape, dtype=np.int16)
    local_date = np.empty(uniq.shape, dtype="datetime64[D]")
    for i, ms in enumerate(uniq.tolist()):
        day = datetime.fromtimestamp(ms / 1000, tz=timezone.utc).astimezone(_ZONE).date()
        local_slot[i] = (ms - _local_midnight_ms(day)) // SLOT_MS
        local_date[i] = np.datetime64(day, "D")
    return SlotClock(start_ms=start, local_slot=local_slot[inverse], local_date=local_date[inverse])


# ------------------------------------------------------------------------------------------------
# Raw daily format
# ------------------------------------------------------------------------------------------------
@dataclass
class MilanRaw:
    """Activity of a raw daily file, summed over country codes.

    square_ids: sorted grid square ids, int64 (n_squares,)
    clock:      the slot axis: every 10-minute slot from the first to the last start in the file
                (dense, no gaps), see :class:`SlotClock`
    activity:   float64 (n_squares, n_slots, 5), columns in :data:`ACTIVITIES` order; blank fields,
                omitted trailing fields and (square, slot) pairs without any record are 0
    present:    bool (n_squares, n_slots): at least one record exists for that (square, slot)
    n_lines:    lines read; n_records: lines used; skipped: reason -> number of skipped lines
    """

    path: str
    square_ids: np.ndarray
    clock: SlotClock
    activity: np.ndarray
    present: np.ndarray
    n_lines: int
    n_records: int
    skipped: dict[str, int] = field(default_factory=dict)

    def column(self, name: str) -> np.ndarray:
        """One activity (``"sms_in"``, ..., ``"internet"``) as (n_squares, n_slots)."""
        if name not in ACTIVITIES:
            raise KeyError(f"unknown activity {name!r}; expected one of {ACTIVITIES}")
        return self.activity[:, :, ACTIVITIES.index(name)]

    def square(self, square_id: int) -> np.ndarray:
        """All activities of one square as (n_slots, 5)."""
        pos = np.searchsorted(self.square_ids, square_id)
        if pos >= len(self.square_ids) or self.square_ids[pos] != square_id:
            raise KeyError(f"square {square_id} not in {self.path}")
        return self.activity[pos]


class _BadLine(Exception):
    """A raw line is malformed; ``reason`` is the key counted in skip mode."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _parse_raw_line(line: str) -> tuple[int, int, list[float]]:
    """Parse one raw line into (square_id, time_ms, 5 activities); raise _BadLine if malformed."""
    if not line.strip():
        raise _BadLine("empty_line", "empty line")
    fields = line.split("\t")
    if len(fields) > len(RAW_FIELDS):
        raise _BadLine("too_many_fields", f"expected at most {len(RAW_FIELDS)} fields, found {len(fields)}")
    if len(fields) < 3:
        raise _BadLine("too_few_fields", f"expected at least 3 fields (square, time, country), found {len(fields)}")
    ints: list[int] = []
    for name, text in zip(RAW_FIELDS[:3], fields[:3]):
        try:
            ints.append(int(text))
        except ValueError:
            raise _BadLine("non_numeric", f"{name}: not an integer: {text!r}") from None
    square_id, time_ms, country = ints
    if square_id < 1 or time_ms < 0 or country < 0:
        raise _BadLine("negative", "square_id must be >= 1, time_interval and country_code >= 0")
    if time_ms % SLOT_MS != 0:
        raise _BadLine("off_slot_boundary", f"time_interval {time_ms} is not on a {SLOT_MINUTES}-minute boundary")
    values = [0.0] * len(ACTIVITIES)
    for j, text in enumerate(fields[3:]):
        text = text.strip()
        if not text:
            continue  # blank means zero
        try:
            value = float(text)
        except ValueError:
            raise _BadLine("non_numeric", f"{ACTIVITIES[j]}: not a number: {text!r}") from None
        if not math.isfinite(value):
            raise _BadLine("non_numeric", f"{ACTIVITIES[j]}: not a finite number: {text!r}")
        if value < 0:
            raise _BadLine("negative", f"{ACTIVITIES[j]}: negative value {value}")
        values[j] = value
    return square_id, time_ms, values


def read_raw_daily(path: str | Path, *, on_error: OnError = "raise") -> MilanRaw:
    """Read a raw Telecom Italia daily file (tab-separated, 8 fields, no header), plain or gzip.

    Fields: ``square_id time_interval country_code sms_in sms_out call_in call_out internet``;
    rows may be ragged (omitted trailing fields) and blank fields mean zero. Activities are summed
    over country codes per (square, slot).

    Bad lines (more than 8 or fewer than 3 fields, non-numeric or non-finite values, negative values,
    a time not on a 10-minute boundary, empty lines) raise DataFormatError naming file and line when
    ``on_error="raise"``. With ``on_error="skip"`` they are skipped, logged and counted per reason in
    ``MilanRaw.skipped``; nothing is dropped silently. A file without any valid record raises.

    Pure-Python line parser: fine for the samples; a full ~5 M-line day takes tens of seconds.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    path = Path(path)
    squares: list[int] = []
    times: list[int] = []
    values: list[list[float]] = []
    skipped: dict[str, int] = {}
    n_lines = 0
    with open_text(path) as fh:
        for n_lines, raw in enumerate(fh, start=1):
            try:
                square_id, time_ms, vals = _parse_raw_line(_strip_eol(raw))
            except _BadLine as bad:
                if on_error == "raise":
                    raise DataFormatError(path, n_lines, bad.message) from None
                skipped[bad.reason] = skipped.get(bad.reason, 0) + 1
                log.debug("%s:%d: skipped (%s)", path, n_lines, bad.message)
                continue
            squares.append(square_id)
            times.append(time_ms)
            values.append(vals)
    if skipped:
        log.warning("%s: skipped %d bad lines: %s", path, sum(skipped.values()), skipped)
    if not squares:
        raise DataFormatError(path, None, "no valid records")

    sq = np.asarray(squares, dtype=np.int64)
    t = np.asarray(times, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    square_ids, sq_idx = np.unique(sq, return_inverse=True)
    starts = np.arange(t.min(), t.max() + SLOT_MS, SLOT_MS, dtype=np.int64)
    t_idx = (t - t.min()) // SLOT_MS
    activity = np.zeros((len(square_ids), len(starts), len(ACTIVITIES)), dtype=np.float64)
    np.add.at(activity, (sq_idx, t_idx), v)
    present = np.zeros((len(square_ids), len(starts)), dtype=bool)
    present[sq_idx, t_idx] = True
    log.info("%s: %d records, %d squares, %d slots", path, len(sq), len(square_ids), len(starts))
    return MilanRaw(
        path=str(path), square_ids=square_ids, clock=slot_clock(starts), activity=activity,
        present=present, n_lines=n_lines, n_records=len(sq), skipped=skipped,
    )


# ------------------------------------------------------------------------------------------------
# Processed matrix, identified cells, adjacency
# ------------------------------------------------------------------------------------------------
def read_internet_matrix(
    path: str | Path, *, n_slots: int | None = MATRIX_SLOTS, n_cells: int | None = MATRIX_CELLS
) -> np.ndarray:
    """Read ``milan_5x5_internet_10min_30d.csv.gz``: (slots x cells) float64, no header.

    Row t is slot t (slot 0 = :data:`EPOCH_MS`, inferred, see SOURCE.md); column k is cell k of the
    5x5 block, row-major. Every row must have ``n_cells`` finite non-negative numbers and the file
    ``n_slots`` rows (``None`` skips either check).
    """
    path = Path(path)
    matrix = _read_numeric_rows(path, ",", n_cells)
    if n_slots is not None and matrix.shape[0] != n_slots:
        raise DataFormatError(path, None, f"expected {n_slots} rows, found {matrix.shape[0]}")
    neg_rows = np.flatnonzero((matrix < 0).any(axis=1))
    if len(neg_rows):
        raise DataFormatError(path, int(neg_rows[0]) + 1, "negative activity value")
    log.info("%s: matrix %s", path, matrix.shape)
    return matrix


def read_adjacency(path: str | Path, *, n_cells: int | None = MATRIX_CELLS) -> np.ndarray:
    """Read ``milan_5x5_adjacency.csv``: square, symmetric, finite, non-negative weight matrix."""
    path = Path(path)
    adj = _read_numeric_rows(path, ",", n_cells)
    if adj.shape[0] != adj.shape[1]:
        raise DataFormatError(path, None, f"adjacency is not square: {adj.shape}")
    neg_rows = np.flatnonzero((adj < 0).any(axis=1))
    if len(neg_rows):
        raise DataFormatError(path, int(neg_rows[0]) + 1, "negative weight")
    asym_rows = np.flatnonzero((adj != adj.T).any(axis=1))
    if len(asym_rows):
        i = int(asym_rows[0])
        j = int(np.flatnonzero(adj[i] != adj[:, i])[0])
        raise DataFormatError(path, i + 1, f"not symmetric: A[{i},{j}]={adj[i, j]} but A[{j},{i}]={adj[j, i]}")
    return adj


@dataclass(frozen=True)
class CellSeries:
    """One square's series: its slot clock and the values, time-ordered."""

    clock: SlotClock
    values: np.ndarray  # float64 (n_slots,)


def read_identified_cells(path: str | Path) -> dict[int, CellSeries]:
    """Read ``milan_6cells_internet_total_2013-11-01.csv`` -> {square_id: CellSeries}.

    Header ``square_id,time_interval,internet_total`` (time in UTC ms). Each square's rows are sorted
    by time; duplicate (square, time) pairs, off-boundary times and bad numbers raise DataFormatError.
    """
    path = Path(path)
    expected = ["square_id", "time_interval", "internet_total"]
    per_square: dict[int, dict[int, float]] = {}
    with open_text(path) as fh:
        header = _strip_eol(fh.readline())
        if header.split(",") != expected:
            raise DataFormatError(path, 1, f"expected header {','.join(expected)!r}, found {header!r}")
        for lineno, raw in enumerate(fh, start=2):
            line = _strip_eol(raw)
            fields = line.split(",")
            if len(fields) != 3:
                raise DataFormatError(path, lineno, f"expected 3 fields, found {len(fields)}")
            try:
                square_id, time_ms = int(fields[0]), int(fields[1])
            except ValueError:
                raise DataFormatError(path, lineno, f"square_id/time_interval not integers: {line!r}") from None
            value = _parse_float(fields[2], path, lineno, "internet_total")
            if value < 0:
                raise DataFormatError(path, lineno, f"negative internet_total {value}")
            if time_ms % SLOT_MS != 0:
                raise DataFormatError(path, lineno, f"time_interval {time_ms} not on a {SLOT_MINUTES}-minute boundary")
            series = per_square.setdefault(square_id, {})
            if time_ms in series:
                raise DataFormatError(path, lineno, f"duplicate row for square {square_id} at {time_ms}")
            series[time_ms] = value
    if not per_square:
        raise DataFormatError(path, None, "no data rows")
    out: dict[int, CellSeries] = {}
    for square_id in sorted(per_square):
        times = sorted(per_square[square_id])
        out[square_id] = CellSeries(
            clock=slot_clock(times),
            values=np.asarray([per_square[square_id][t] for t in times], dtype=np.float64),
        )
    return out


# ------------------------------------------------------------------------------------------------
# Grid
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MilanGrid:
    """The Milano square grid.

    cell_ids:  int64 (n,), sorted, 1..side*side
    centroids: float64 (n, 2) as (lon, lat), WGS84, centroid of each polygon
    side:      cells per row/column (100); cellId 1 is the south-west corner, ids grow eastwards
               along a row, then rows grow northwards
    """

    cell_ids: np.ndarray
    centroids: np.ndarray
    side: int = GRID_SIDE

    def __len__(self) -> int:
        return int(self.cell_ids.shape[0])

    def cell_to_rowcol(self, cell_id: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """cellId -> (row, col), row 0 = southernmost, col 0 = westernmost. Works on arrays."""
        ids = np.asarray(cell_id, dtype=np.int64)
        if np.any((ids < 1) | (ids > self.side * self.side)):
            raise ValueError(f"cellId out of range 1..{self.side * self.side}: {cell_id}")
        return (ids - 1) // self.side, (ids - 1) % self.side

    def rowcol_to_cell(self, row: int | np.ndarray, col: int | np.ndarray) -> np.ndarray:
        """(row, col) -> cellId, the inverse of :meth:`cell_to_rowcol`."""
        r, c = np.asarray(row, dtype=np.int64), np.asarray(col, dtype=np.int64)
        if np.any((r < 0) | (r >= self.side) | (c < 0) | (c >= self.side)):
            raise ValueError(f"row/col out of range 0..{self.side - 1}: ({row}, {col})")
        return r * self.side + c + 1

    def centroid(self, cell_id: int) -> tuple[float, float]:
        """(lon, lat) of one cell."""
        lon, lat = self.centroids[int(cell_id) - 1]
        return float(lon), float(lat)


def _polygon_centroid(ring: np.ndarray) -> np.ndarray:
    """Area centroid of a closed (or open) lon/lat ring, planar formula; vertex mean if degenerate."""
    x, y = ring[:, 0], ring[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    area = cross.sum() / 2.0
    if abs(area) < 1e-18:
        return ring.mean(axis=0)
    return np.array([((x + x1) * cross).sum(), ((y + y1) * cross).sum()]) / (6.0 * area)


def read_grid_geojson(path: str | Path, *, side: int = GRID_SIDE) -> MilanGrid:
    """Read ``milano-grid.geojson(.gz)``: one Polygon feature per cell with property ``cellId``.

    Checks that the ids are exactly 1..side*side. The feature order in the file does not matter.
    """
    path = Path(path)
    with open_text(path) as fh:
        try:
            doc = json.load(fh)
        except json.JSONDecodeError as err:
            raise DataFormatError(path, err.lineno, f"invalid JSON: {err.msg}") from None
    features = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(features, list):
        raise DataFormatError(path, None, "not a GeoJSON FeatureCollection")
    n = side * side
    if len(features) != n:
        raise DataFormatError(path, None, f"expected {n} cells ({side}x{side}), found {len(features)}")
    centroids = np.full((n, 2), np.nan)
    for k, feat in enumerate(features):
        try:
            cell_id = int(feat["properties"]["cellId"])
            ring = np.asarray(feat["geometry"]["coordinates"][0], dtype=np.float64)
        except (KeyError, TypeError, ValueError, IndexError):
            raise DataFormatError(path, None, f"feature {k}: missing cellId or polygon coordinates") from None
        if not 1 <= cell_id <= n:
            raise DataFormatError(path, None, f"feature {k}: cellId {cell_id} outside 1..{n}")
        if not np.isnan(centroids[cell_id - 1, 0]):
            raise DataFormatError(path, None, f"feature {k}: duplicate cellId {cell_id}")
        if ring.ndim != 2 or ring.shape[1] < 2 or ring.shape[0] < 3:
            raise DataFormatError(path, None, f"feature {k}: polygon ring has shape {ring.shape}")
        centroids[cell_id - 1] = _polygon_centroid(ring[:, :2])
    log.info("%s: %d grid cells", path, n)
    return MilanGrid(cell_ids=np.arange(1, n + 1, dtype=np.int64), centroids=centroids, side=side)
