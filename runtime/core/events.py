"""Raw behavior events: the one in-memory form every loader produces and featurization consumes.

An event is one record of the Tsinghua App Usage trace: (user, time, base station, app, bytes).
Two file layouts carry it and both load into the same `EventLog`:

* the official layout, ``App_usage_trace.txt``: space-separated, no header,
  ``user_id time(YYYYMMDDhhmmss, local) base_station_id app_id traffic_bytes``;
  the calibrated simulator writes this layout too;
* the LLMApp re-indexed sample, ``app_usage_trace_sample_llmapp.csv(.gz)``: CSV with header
  ``user_id,time,location,app_id,app_cate_id,traffic,...`` (ids in LLMApp's id space).

Time convention: ``ts`` is *local wall-clock* seconds since 1970-01-01 00:00 (the trace's
timestamps carry no zone; Shanghai has no DST). Slot and day arithmetic is integer division.
Bad records raise `DataFormatError` naming file and line; with ``on_error="skip"`` they are
skipped and counted per reason in `EventLog.report` (nothing is dropped silently).
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable, Literal

import numpy as np

from umask.runtime.core.errors import DataFormatError, InputError

log = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]

# Columns of the LLMApp sample that the loader needs (others are ignored).
LLMAPP_REQUIRED = ("user_id", "time", "location", "app_id", "traffic")


# -----------------------------------------------------------------------------
# The event log
# -----------------------------------------------------------------------------

@dataclass
class EventLog:
    """Struct of arrays, one entry per event, sorted by (user, ts) after loading."""

    user: np.ndarray   # (N,) int64
    ts: np.ndarray     # (N,) int64 local wall-clock seconds since 1970-01-01
    bs: np.ndarray     # (N,) int64 base-station id (in the catalog's id space)
    app: np.ndarray    # (N,) int64 app id (in the catalog's id space)
    bytes: np.ndarray  # (N,) int64 traffic in bytes (>= 0)
    line: np.ndarray | None = None      # (N,) int64 1-based source line, for error messages
    source: str | None = None           # file the events came from
    report: Counter = field(default_factory=Counter)  # skipped records per reason

    def __post_init__(self) -> None:
        n = len(self.user)
        for name in ("ts", "bs", "app", "bytes"):
            if len(getattr(self, name)) != n:
                raise InputError(f"EventLog.{name} has {len(getattr(self, name))} entries, user has {n}")
        if self.line is not None and len(self.line) != n:
            raise InputError("EventLog.line length differs from the other columns")

    def __len__(self) -> int:
        return len(self.user)

    @property
    def users(self) -> np.ndarray:
        return np.unique(self.user)

    def take(self, idx: np.ndarray) -> "EventLog":
        """Subset by an index or boolean array (report is carried over)."""
        return EventLog(self.user[idx], self.ts[idx], self.bs[idx], self.app[idx], self.bytes[idx],
                        None if self.line is None else self.line[idx], self.source, Counter(self.report))

    def for_user(self, user: int) -> "EventLog":
        return self.take(self.user == user)

    def between(self, start_ts: int, end_ts: int) -> "EventLog":
        """Events with start_ts <= ts < end_ts."""
        return self.take((self.ts >= start_ts) & (self.ts < end_ts))

    def sorted(self) -> "EventLog":
        order = np.lexsort((self.ts, self.user))
        return self.take(order)

    @staticmethod
    def concat(logs: Iterable["EventLog"]) -> "EventLog":
        logs = list(logs)
        if not logs:
            return EventLog.empty()
        rep: Counter = Counter()
        for lg in logs:
            rep.update(lg.report)
        lines = None if any(lg.line is None for lg in logs) else np.concatenate([lg.line for lg in logs])
        return EventLog(*(np.concatenate([getattr(lg, c) for lg in logs]) for c in ("user", "ts", "bs", "app", "bytes")),
                        line=lines, source=logs[0].source, report=rep)

    @staticmethod
    def empty() -> "EventLog":
        z = np.zeros(0, np.int64)
        return EventLog(z, z.copy(), z.copy(), z.copy(), z.copy())

    @staticmethod
    def from_arrays(user, ts, bs, app, nbytes) -> "EventLog":
        """Build from in-memory columns, validating dtypes and values (for on-device callers)."""
        cols = []
        for name, a in (("user", user), ("ts", ts), ("bs", bs), ("app", app), ("bytes", nbytes)):
            a = np.asarray(a)
            if a.ndim != 1:
                raise InputError(f"{name} must be 1-D, got shape {a.shape}")
            if a.size and not np.issubdtype(a.dtype, np.integer):
                if np.issubdtype(a.dtype, np.floating) and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
                    a = a.astype(np.int64)
                else:
                    raise InputError(f"{name} must hold integers, got dtype {a.dtype}")
            cols.append(a.astype(np.int64))
        if (cols[4] < 0).any():
            raise InputError("bytes must be >= 0")
        return EventLog(*cols).sorted()


# -----------------------------------------------------------------------------
# Timestamps: YYYYMMDDhhmmss <-> local seconds (vectorizable, no time zones)
# -----------------------------------------------------------------------------

def days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y = np.asarray(y, np.int64) - (np.asarray(m) <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    m = np.asarray(m, np.int64)
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + np.asarray(d, np.int64) - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


_DAYS_IN_MONTH = np.array([0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def parse_compact_time(stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """YYYYMMDDhhmmss integers -> (local seconds, ok mask). Invalid dates get ok=False."""
    s = np.asarray(stamps, np.int64)
    year, rest = np.divmod(s, 10**10)
    month, rest = np.divmod(rest, 10**8)
    day, rest = np.divmod(rest, 10**6)
    hh, rest = np.divmod(rest, 10**4)
    mm, ss = np.divmod(rest, 100)
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    mdays = _DAYS_IN_MONTH[np.clip(month, 0, 12)] - ((month == 2) & ~leap)
    ok = ((year >= 1970) & (year <= 2100) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= mdays)
          & (hh < 24) & (mm < 60) & (ss < 60))
    secs = days_from_civil(year, np.clip(month, 1, 12), np.clip(day, 1, 31)) * 86400 + hh * 3600 + mm * 60 + ss
    return np.where(ok, secs, 0), ok


def format_compact_time(ts: np.ndarray) -> np.ndarray:
    """Local seconds -> YYYYMMDDhhmmss as int64 (inverse of `parse_compact_time`)."""
    ts = np.asarray(ts, np.int64)
    dt = ts.astype("datetime64[s]")
    days = dt.astype("datetime64[D]")
    y = dt.astype("datetime64[Y]").astype(np.int64) + 1970
    m = dt.astype("datetime64[M]").astype(np.int64) % 12 + 1
    d = (days - dt.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
    sod = ts - days.astype(np.int64) * 86400
    return y * 10**10 + m * 10**8 + d * 10**6 + (sod // 3600) * 10**4 + (sod % 3600) // 60 * 100 + sod % 60


# -----------------------------------------------------------------------------
# Readers
# -----------------------------------------------------------------------------

def open_text(path: str | Path) -> IO[str]:
    """Open a data file as UTF-8 text; gzip is detected from its magic bytes, not its suffix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such data file: {path}")
    with path.open("rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


class _Collector:
    """Accumulates validated rows; routes each bad row to an error or a counted skip."""

    def __init__(self, path: str | Path, on_error: OnError) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.path, self.on_error = str(path), on_error
        self.rows: list[tuple[int, int, int, int, int, int]] = []  # user, stamp, bs, app, bytes, line
        self.report: Counter = Counter()

    def bad(self, line: int, reason: str, detail: str) -> None:
        if self.on_error == "raise":
            raise DataFormatError(self.path, line, f"{reason}: {detail}")
        self.report[reason] += 1

    def add(self, line: int, fields: list[str]) -> None:
        try:
            user, stamp, bs, app, nbytes = (int(f) for f in fields)
        except ValueError:
            self.bad(line, "non-integer field", repr(fields))
            return
        if nbytes < 0:
            self.bad(line, "negative bytes", str(nbytes))
            return
        if user < 0 or bs < 0 or app < 0:
            self.bad(line, "negative id", repr(fields))
            return
        self.rows.append((user, stamp, bs, app, nbytes, line))

    def finish(self) -> EventLog:
        arr = np.array(self.rows, dtype=np.int64).reshape(-1, 6)
        ts, ok = parse_compact_time(arr[:, 1])
        if not ok.all():
            first = int(np.flatnonzero(~ok)[0])
            if self.on_error == "raise":
                raise DataFormatError(self.path, int(arr[first, 5]),
                                      f"unparseable time {arr[first, 1]} (want YYYYMMDDhhmmss)")
            self.report["unparseable time"] += int((~ok).sum())
            arr, ts = arr[ok], ts[ok]
        if self.report:
            log.warning("%s: skipped %d records: %s", self.path, sum(self.report.values()), dict(self.report))
        evl = EventLog(arr[:, 0], ts, arr[:, 2], arr[:, 3], arr[:, 4], line=arr[:, 5],
                       source=self.path, report=self.report)
        return evl.sorted()


def read_official_trace(path: str | Path, *, on_error: OnError = "raise") -> EventLog:
    """Read ``App_usage_trace.txt`` (official layout; also the simulator's output). ``.gz`` is fine."""
    col = _Collector(path, on_error)
    with open_text(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            fields = raw.split()
            if not fields:
                continue  # blank lines carry no record
            if len(fields) != 5:
                col.bad(lineno, "wrong field count", f"expected 5 fields, got {len(fields)}")
                continue
            col.add(lineno, fields)
    return col.finish()


def read_llmapp_sample(path: str | Path, *, on_error: OnError = "raise") -> EventLog:
    """Read the LLMApp re-indexed CSV sample (header ``user_id,time,location,app_id,...``)."""
    col = _Collector(path, on_error)
    with open_text(path) as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise DataFormatError(path, 1, "empty file, expected a header")
        missing = [c for c in LLMAPP_REQUIRED if c not in header]
        if missing:
            raise DataFormatError(path, 1, f"missing columns {missing}; header is {header}")
        idx = [header.index(c) for c in LLMAPP_REQUIRED]
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                col.bad(lineno, "wrong field count", f"expected {len(header)} fields, got {len(row)}")
                continue
            col.add(lineno, [row[i] for i in idx])
    return col.finish()


def read_trace(path: str | Path, *, on_error: OnError = "raise") -> EventLog:
    """Read either layout, deciding by the first line (a CSV header -> LLMApp sample)."""
    with open_text(path) as fh:
        first = fh.readline()
    if first.startswith("user_id,") or "," in first:
        return read_llmapp_sample(path, on_error=on_error)
    return read_official_trace(path, on_error=on_error)


def write_official_trace(events: EventLog, path: str | Path, *, chunk: int = 200_000) -> None:
    """Write events in the official layout (atomically: temp file + rename). ``.gz`` compresses."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    stamps = format_compact_time(events.ts)
    table = np.column_stack([events.user, stamps, events.bs, events.app, events.bytes])
    if path.suffix == ".gz":
        fh: IO[str] = io.TextIOWrapper(gzip.open(tmp, "wb", compresslevel=6), encoding="utf-8")
    else:
        fh = open(tmp, "w", encoding="utf-8")
    with fh:
        for i in range(0, len(table), chunk):  # str.join over lists is ~1.5x faster than np.savetxt
            fh.write("".join(f"{a} {b} {c} {d} {e}\n" for a, b, c, d, e in table[i:i + chunk].tolist()))
    tmp.replace(path)
