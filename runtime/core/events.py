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

Strictness and resources (see `umask.runtime.core.limits`):

* integers are ASCII decimal digits with an optional leading ``-`` (``int()`` would also take
  ``1_000``, ``+5`` and non-ASCII digits such as ``١٢``: refused here), within int64;
* text is UTF-8 (a leading BOM is dropped); invalid UTF-8, a truncated or corrupt gzip and CSV
  syntax errors raise `DataFormatError` with the file and line, never a bare Python error;
* the limits (events, lines, line length, decompressed bytes, time span) apply while reading and
  raise `LimitError`; records stream into int64 numpy columns block by block (48 bytes a record,
  no Python tuple per record);
* duplicates: records are kept as given, duplicates included. The trace logs usage per app and
  second; two identical lines are indistinguishable from two events logged in the same second
  (the shipped sample has 33 same-user, same-second, same-app pairs), so nothing is merged or
  dropped; the featurization counts each record.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import zlib
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Literal

import numpy as np

from umask.runtime.core.errors import DataFormatError, InputError, LimitError
from umask.runtime.core.limits import BULK_LIMITS, Limits

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
                if (np.issubdtype(a.dtype, np.floating) and np.all(np.isfinite(a)) and np.all(a == np.round(a))
                        and np.all(np.abs(a) < 2.0**62)):
                    a = a.astype(np.int64)
                else:
                    raise InputError(f"{name} must hold integers, got dtype {a.dtype}")
            if a.dtype == np.uint64 and a.size and int(a.max()) > 2**63 - 1:
                raise InputError(f"{name} holds values beyond int64")
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
# Readers: bounded line sources, strict integers, columns streamed into numpy
# -----------------------------------------------------------------------------

_GZIP_MAGIC = b"\x1f\x8b"
_INT64_MAX = 2**63 - 1
_CHUNK = 1 << 16        # records per block: time parsing, the span check and the numpy conversion run per block


class _CountingRaw(io.RawIOBase):
    """A raw binary stream that counts the bytes read through it and stops at ``limit``."""

    def __init__(self, inner: IO[bytes], limit: int, path: str) -> None:
        super().__init__()
        self._inner, self._limit, self._path, self.total = inner, limit, path, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        room = self._limit - self.total + 1               # read one byte past the limit to detect it
        view = memoryview(b)[:max(1, min(len(b), room))]
        n = self._inner.readinto(view) or 0
        self.total += n
        if self.total > self._limit:
            raise LimitError(self._path, None, f"more than {self._limit:,} bytes (decompressed) "
                                               "(Limits.max_decompressed_bytes)")
        return n

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            super().close()


def _open_binary(path: str | Path, limits: Limits | None) -> io.BufferedReader:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such data file: {path}")
    lim = BULK_LIMITS if limits is None else limits
    with path.open("rb") as fh:
        magic = fh.read(2)
    inner: IO[bytes] = gzip.open(path, "rb") if magic == _GZIP_MAGIC else path.open("rb")  # type: ignore[assignment]
    return io.BufferedReader(_CountingRaw(inner, lim.max_decompressed_bytes, str(path)))


def open_text(path: str | Path, *, limits: Limits | None = None) -> IO[str]:
    """Open a data file as UTF-8 text (a leading BOM is dropped); gzip is detected from its magic bytes,
    not its suffix. The bytes read (decompressed) are bounded by ``limits.max_decompressed_bytes``
    (default `BULK_LIMITS`). Prefer `iter_lines`, which also bounds lines and names the line of any
    decoding or gzip error."""
    return io.TextIOWrapper(_open_binary(path, limits), encoding="utf-8-sig", errors="strict", newline="")


def iter_lines(path: str | Path, limits: Limits | None = None) -> Iterator[tuple[int, str]]:
    """(1-based line number, line text with its end of line) for every physical line, blank ones included.

    Bounds applied while reading (``limits``, default `BULK_LIMITS`): ``max_line_bytes`` per line,
    ``max_lines`` lines, ``max_decompressed_bytes`` in all. Invalid UTF-8 raises `DataFormatError`
    naming the line; a truncated or corrupt gzip and read errors name the line being read (gzip
    decompresses ahead in blocks: the damage is at or after it); a tripped limit raises `LimitError`."""
    lim = BULK_LIMITS if limits is None else limits
    lineno = 0
    with _open_binary(path, lim) as fh:
        while True:
            try:
                raw = fh.readline(lim.max_line_bytes + 1)
            except LimitError as e:
                raise LimitError(path, lineno + 1, e.message) from None
            except (EOFError, gzip.BadGzipFile, zlib.error) as e:
                raise DataFormatError(path, lineno + 1, f"corrupt or truncated gzip data ({e})") from None
            except OSError as e:
                raise DataFormatError(path, lineno + 1, f"read error ({e})") from None
            if not raw:
                return
            lineno += 1
            if lineno > lim.max_lines:
                raise LimitError(path, lineno, f"more than {lim.max_lines:,} lines (Limits.max_lines)")
            if len(raw) > lim.max_line_bytes and raw[-1:] != b"\n":
                raise LimitError(path, lineno, f"line longer than {lim.max_line_bytes:,} bytes "
                                               "(Limits.max_line_bytes)")
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]                                   # UTF-8 byte order mark (Excel and friends)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataFormatError(path, lineno, f"not UTF-8 text ({e.reason} at byte {e.start} of the line: "
                                                    f"{raw[e.start:e.start + 1]!r})") from None
            yield lineno, text


def first_line(path: str | Path, limits: Limits | None = None) -> str:
    """The file's first line (bounded like `iter_lines`), '' for an empty file."""
    for _, raw in iter_lines(path, limits):
        return raw
    return ""


class _CsvRows:
    """csv.reader over `iter_lines`, yielding (line of the row's first physical line, fields); csv errors
    (an over-long field, a stray quote) become `DataFormatError` with the line."""

    def __init__(self, path: str | Path, limits: Limits | None, **fmt: Any) -> None:
        self.path, self.line = path, 0
        self._lines = iter_lines(path, limits)
        self._reader = csv.reader(self._feed(), strict=True, **fmt)

    def _feed(self) -> Iterator[str]:
        for self.line, raw in self._lines:
            yield raw

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        while True:
            before = self.line + 1
            try:
                row = next(self._reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise DataFormatError(self.path, max(before, self.line), f"malformed CSV ({e})") from None
            yield before, row


def strict_int(text: str) -> int | None:
    """An ASCII decimal integer (optional leading ``-``), else None.

    Python's ``int()`` also accepts ``"1_000"``, ``"+5"``, ``" 5 "`` and non-ASCII digits such as
    ``"١٢"``; none of those is a valid field here."""
    neg = text[:1] == "-"
    body = text[1:] if neg else text
    if not (body.isascii() and body.isdigit()) or len(body) > 19:
        return None
    v = int(body)
    return -v if neg else v


class _Collector:
    """Accumulates validated records into compact int64 columns (48 bytes a record), block by block;
    routes each bad record to an error or a counted skip; applies ``limits`` as it goes."""

    def __init__(self, path: str | Path, on_error: OnError, limits: Limits | None = None) -> None:
        if on_error not in ("raise", "skip"):
            raise InputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.path, self.on_error = str(path), on_error
        self.limits = BULK_LIMITS if limits is None else limits
        self.report: Counter = Counter()
        self._buf = [array("q") for _ in range(6)]        # user, stamp, bs, app, bytes, line
        self._blocks: list[list[np.ndarray]] = []          # per block: user, ts, bs, app, bytes, line
        self.n = 0
        self._tmin, self._tmax = None, None

    def bad(self, line: int, reason: str, detail: str) -> None:
        if self.on_error == "raise":
            raise DataFormatError(self.path, line, f"{reason}: {detail}")
        self.report[reason] += 1

    def add(self, line: int, fields: list[str]) -> None:
        joined = "".join(fields)
        if (len(fields) == 5 and joined.isascii() and joined.isdigit() and all(fields)
                and max(map(len, fields)) <= 18):          # fast path: plain non-negative ints below 2**63
            user, stamp, bs, app, nbytes = map(int, fields)
        else:
            vals = [strict_int(f) for f in fields]
            if len(vals) != 5 or any(v is None for v in vals):
                self.bad(line, "non-integer field", repr(fields)[:200])
                return
            user, stamp, bs, app, nbytes = vals  # type: ignore[misc]
            if any(abs(v) > _INT64_MAX for v in vals):  # type: ignore[arg-type]
                self.bad(line, "integer out of range", f"{repr(fields)[:200]} (int64)")
                return
            if nbytes < 0:  # type: ignore[operator]
                self.bad(line, "negative bytes", str(nbytes))
                return
            if user < 0 or bs < 0 or app < 0:  # type: ignore[operator]
                self.bad(line, "negative id", repr(fields)[:200])
                return
        self.n += 1
        if self.n > self.limits.max_events:
            raise LimitError(self.path, line, f"more than {self.limits.max_events:,} events (Limits.max_events)")
        b = self._buf
        b[0].append(user); b[1].append(stamp); b[2].append(bs)  # type: ignore[arg-type]  # noqa: E702
        b[3].append(app); b[4].append(nbytes); b[5].append(line)  # type: ignore[arg-type]  # noqa: E702
        if len(b[0]) >= _CHUNK:
            self._flush()

    def _flush(self) -> None:
        if not len(self._buf[0]):
            return
        cols = [np.frombuffer(a, np.int64).copy() for a in self._buf]
        self._buf = [array("q") for _ in range(6)]
        ts, ok = parse_compact_time(cols[1])
        if not ok.all():
            first = int(np.flatnonzero(~ok)[0])
            if self.on_error == "raise":
                raise DataFormatError(self.path, int(cols[5][first]),
                                      f"unparseable time {cols[1][first]} (want YYYYMMDDhhmmss)")
            bad = int((~ok).sum())
            self.report["unparseable time"] += bad
            self.n -= bad
            cols, ts = [c[ok] for c in cols], ts[ok]
        cols[1] = ts
        if len(ts):
            lo = np.minimum.accumulate(ts) if self._tmin is None else np.minimum.accumulate(np.r_[self._tmin, ts])[1:]
            hi = np.maximum.accumulate(ts) if self._tmax is None else np.maximum.accumulate(np.r_[self._tmax, ts])[1:]
            over = np.flatnonzero(hi - lo > self.limits.max_span_days * 86400)
            if len(over):
                raise LimitError(self.path, int(cols[5][over[0]]), f"the events span more than "
                                 f"{self.limits.max_span_days} days (Limits.max_span_days)")
            self._tmin, self._tmax = int(lo[-1]), int(hi[-1])
        self._blocks.append(cols)

    def finish(self) -> EventLog:
        self._flush()
        if self._blocks:
            cols = [np.concatenate([blk[i] for blk in self._blocks]) for i in range(6)]
        else:
            cols = [np.zeros(0, np.int64) for _ in range(6)]
        self._blocks = []
        if self.report:
            log.warning("%s: skipped %d records: %s", self.path, sum(self.report.values()), dict(self.report))
        evl = EventLog(cols[0], cols[1], cols[2], cols[3], cols[4], line=cols[5], source=self.path,
                       report=self.report)
        return evl if _is_sorted(evl) else evl.sorted()


def _is_sorted(ev: EventLog) -> bool:
    du, dt = np.diff(ev.user), np.diff(ev.ts)
    return bool(((du > 0) | ((du == 0) & (dt >= 0))).all())


def read_official_trace(path: str | Path, *, on_error: OnError = "raise", limits: Limits | None = None) -> EventLog:
    """Read ``App_usage_trace.txt`` (official layout; also the simulator's output). ``.gz`` is fine.
    ``limits``: default `BULK_LIMITS`."""
    col = _Collector(path, on_error, limits)
    for lineno, raw in iter_lines(path, col.limits):
        fields = raw.split()
        if not fields:
            continue  # blank lines carry no record
        if len(fields) != 5:
            col.bad(lineno, "wrong field count", f"expected 5 fields, got {len(fields)}")
            continue
        col.add(lineno, fields)
    return col.finish()


def read_llmapp_sample(path: str | Path, *, on_error: OnError = "raise", limits: Limits | None = None) -> EventLog:
    """Read the LLMApp re-indexed CSV sample (header ``user_id,time,location,app_id,...``).
    ``limits``: default `BULK_LIMITS`."""
    col = _Collector(path, on_error, limits)
    rows = iter(_CsvRows(path, col.limits))
    first = next(rows, None)
    if first is None:
        raise DataFormatError(path, 1, "empty file, expected a header")
    header = [h.strip() for h in first[1]]
    missing = [c for c in LLMAPP_REQUIRED if c not in header]
    if missing:
        raise DataFormatError(path, 1, f"missing columns {missing}; header is {header[:20]}")
    if len(set(header)) != len(header):
        raise DataFormatError(path, 1, f"duplicate column names in the header {header[:20]}")
    idx = [header.index(c) for c in LLMAPP_REQUIRED]
    for lineno, row in rows:
        if not row:
            continue
        if len(row) != len(header):
            col.bad(lineno, "wrong field count", f"expected {len(header)} fields, got {len(row)}")
            continue
        col.add(lineno, [row[i].strip() for i in idx])
    return col.finish()


def read_trace(path: str | Path, *, on_error: OnError = "raise", limits: Limits | None = None) -> EventLog:
    """Read either layout, deciding by the first line (a CSV header -> LLMApp sample)."""
    first = first_line(path, limits)
    if first.startswith("user_id,") or "," in first:
        return read_llmapp_sample(path, on_error=on_error, limits=limits)
    return read_official_trace(path, on_error=on_error, limits=limits)


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
