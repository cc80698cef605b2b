"""On-device event histories: the ``events.csv`` format, loading, validation, and the model window.

``events.csv`` (the runtime's own format, what an app on the phone logs)::

    time,app_id,base_id,bytes
    20160420081502,362,1217,5012
    ...

* ``time``: local wall-clock time ``YYYYMMDDhhmmss`` (as the official Tsinghua trace), one event per line;
* ``app_id`` / ``base_id``: ids in the bundle catalog's id space (LLMApp re-indexed ids for the shipped
  bundles; unknown ids are refused, naming the line);
* ``bytes``: traffic of the event, an integer >= 0;
* an optional ``user_id`` column must hold one value (a history is ONE user's).

Blank lines are skipped; any other malformed line raises `DataFormatError` with the file and line
(integers: ASCII digits only; UTF-8 with an optional BOM; gzip accepted). Reading is bounded by
`umask.runtime.core.limits.HISTORY_LIMITS` (events, lines, line length, decompressed bytes, time
span), applied while reading (`LimitError`). Duplicate records are kept (see `umask.runtime.core.events`).
``load_history`` also reads the official trace text (space-separated) and the LLMApp CSV sample.

``build_window`` turns one user's history into the fixed model window (see its docstring); the
export stage builds its calibration / parity inputs with the same function, so what was checked
at export time is what the device feeds the networks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from umask.runtime.core.catalog import Catalog
from umask.runtime.core.errors import DataFormatError, InputError, LimitError
from umask.runtime.core.events import EventLog, _Collector, _CsvRows, first_line, read_trace
from umask.runtime.core.featurize import DAY_SECONDS, FeatureConfig, ProfileStats, featurize_user, profile_statistics
from umask.runtime.core.limits import HISTORY_LIMITS, Limits
from umask.runtime.core.tessellation import CityGrid, UserLayout, fit_layout, poi_embedding, station_cells

EVENTS_CSV_COLUMNS = ("time", "app_id", "base_id", "bytes")
TASK_NAMES = ("short_term", "long_term", "cold_start", "imputation")   # = train/dit.TASKS (checked at export)
MAX_EVENTS = HISTORY_LIMITS.max_events            # oversized-history guard (about a year of heavy use)
MAX_HISTORY_DAYS = HISTORY_LIMITS.max_span_days
FUTURE_SLACK_S = 2 * DAY_SECONDS  # local time vs UTC clock: more than this ahead of the wall clock is "future"


def read_events_csv(path: str | Path, *, user: int = 0, limits: Limits | None = None) -> EventLog:
    """Read ``events.csv`` (see the module docstring) as an `EventLog` of user ``user``.
    ``limits``: default `HISTORY_LIMITS` (applied while reading; see `umask.runtime.core.limits`)."""
    lim = HISTORY_LIMITS if limits is None else limits
    col = _Collector(path, "raise", lim)
    rows = iter(_CsvRows(path, lim))
    first = next(rows, None)
    if first is None:
        raise DataFormatError(path, 1, f"empty file, expected the header {','.join(EVENTS_CSV_COLUMNS)}")
    header = [h.strip() for h in first[1]]
    missing = [c for c in EVENTS_CSV_COLUMNS if c not in header]
    if missing:
        raise DataFormatError(path, 1, f"missing columns {missing}; header is {header[:20]}")
    if len(set(header)) != len(header):
        raise DataFormatError(path, 1, f"duplicate column names in the header {header[:20]}")
    idx = [header.index(c) for c in EVENTS_CSV_COLUMNS]
    uidx = header.index("user_id") if "user_id" in header else None
    the_user: str | None = None
    for lineno, row in rows:
        if not row or all(not f.strip() for f in row):
            continue
        if len(row) != len(header):
            raise DataFormatError(path, lineno, f"expected {len(header)} fields, got {len(row)}")
        if uidx is not None:
            u = row[uidx].strip()
            if the_user is None:
                the_user = u
            elif u != the_user:
                raise DataFormatError(path, lineno, f"a history holds one user; found users {sorted({the_user, u})}")
        t, app, bs, nb = (row[i].strip() for i in idx)
        col.add(lineno, [str(user), t, bs, app, nb])
    return col.finish()


def load_history(path: str | Path, *, limits: Limits | None = None) -> EventLog:
    """``events.csv``, the official trace text or the LLMApp CSV sample, decided by the header line.
    ``limits``: default `HISTORY_LIMITS` for every layout (a history is one user's)."""
    lim = HISTORY_LIMITS if limits is None else limits
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: no such history file")
    first = first_line(p, lim)
    cols = [c.strip() for c in first.split(",")]
    if all(c in cols for c in EVENTS_CSV_COLUMNS):
        return read_events_csv(p, limits=lim)
    if "," in first and "user_id" not in cols:        # a CSV of none of the layouts: name them, not one's columns
        shown = ",".join(cols[:6]) + (",..." if len(cols) > 6 else "")
        raise DataFormatError(p, 1, f"the header '{shown:.80}' is none of the history layouts: events.csv (header "
                                    f"{','.join(EVENTS_CSV_COLUMNS)}), the LLMApp CSV (user_id,time,location,app_id,"
                                    "traffic,...) or the official space-separated trace text")
    return read_trace(p, limits=lim)


def compact_time(value: int | None, name: str) -> int | None:
    """A local ``YYYYMMDDhhmmss`` time (the events.csv format; what ``umask run --now`` takes) as local seconds,
    None for None; InputError naming ``name`` for anything that is not a valid 14-digit time."""
    from umask.runtime.core.events import parse_compact_time

    if value is None:
        return None
    if not 10**13 <= value < 10**14:
        raise InputError(f"{name} {value} is not a YYYYMMDDhhmmss time (14 digits)")
    ts, ok = parse_compact_time([value])
    if not ok[0]:
        raise InputError(f"{name} {value} is not a valid YYYYMMDDhhmmss time")
    return int(ts[0])


def as_timestamp(value: Any, name: str) -> int:
    """``value`` as local seconds (an int, a numpy integer or an integral finite float in
    [0, 2**62)); anything else (bool, inf, NaN, 1.5, str, 10**30) raises `InputError` naming ``name``."""
    if isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name} must be an integer number of seconds, got {value!r}")
    if isinstance(value, (int, np.integer)):
        v = int(value)
    elif isinstance(value, (float, np.floating)):
        if not math.isfinite(value) or value != math.floor(value):
            raise InputError(f"{name} must be a finite whole number of seconds, got {value!r}")
        if abs(value) >= 2.0**62:
            raise InputError(f"{name}={value!r} is out of range")
        v = int(value)
    else:
        raise InputError(f"{name} must be an integer number of seconds, got {type(value).__name__}")
    if not 0 <= v < 2**62:
        raise InputError(f"{name}={v} is out of range [0, 2**62)")
    return v


def check_history(events: EventLog, catalog: Catalog, *, now_ts: int | None = None,
                  wall_clock: float | None = None, limits: Limits | None = None) -> EventLog:
    """Validate one user's history; returns it time-sorted. Raises `InputError` / `DataFormatError`
    (`LimitError` beyond ``limits``, default `HISTORY_LIMITS`)."""
    lim = HISTORY_LIMITS if limits is None else limits
    if not isinstance(events, EventLog):
        raise InputError(f"history must be an EventLog (or a file path), got {type(events).__name__}")
    if now_ts is not None:
        now_ts = as_timestamp(now_ts, "now_ts")
    if wall_clock is not None:
        if isinstance(wall_clock, bool) or not isinstance(wall_clock, (int, float, np.integer, np.floating)) \
                or not math.isfinite(wall_clock):
            raise InputError(f"wall_clock must be a finite number of seconds, got {wall_clock!r}")
    if len(events) == 0:
        raise InputError("empty history (no events)")
    if len(events) > lim.max_events:
        raise LimitError(events.source, None, f"history has {len(events)} events; the limit is {lim.max_events} "
                         "(Limits.max_events; pass the recent part)")
    for name in ("user", "ts", "bs", "app", "bytes"):
        a = getattr(events, name)
        if not (isinstance(a, np.ndarray) and a.ndim == 1 and np.issubdtype(a.dtype, np.integer)):
            raise InputError(f"EventLog.{name} must be a 1-D integer array, got "
                             f"{getattr(a, 'dtype', type(a))} {getattr(a, 'shape', '')}")
    if (events.bytes < 0).any():
        raise InputError("history holds negative bytes")
    if len(np.unique(events.user)) != 1:
        raise InputError(f"a history holds one user; got users {np.unique(events.user)[:5].tolist()}...")
    if (events.ts < 0).any():
        raise InputError("history holds timestamps before 1970")
    if (events.ts >= 2**62).any():
        raise InputError("history holds timestamps out of range (>= 2**62 s)")
    span_days = (int(events.ts.max()) - int(events.ts.min())) / DAY_SECONDS
    if span_days > lim.max_span_days:
        raise LimitError(events.source, None, f"history spans {span_days:.0f} days; the limit is "
                         f"{lim.max_span_days} days (Limits.max_span_days)")
    clock = time.time() if wall_clock is None else float(wall_clock)
    if int(events.ts.max()) > clock + FUTURE_SLACK_S:
        raise InputError(f"history is future-dated: its last event is {(events.ts.max() - clock) / 86400:.1f} days "
                         "after the device clock")
    if now_ts is not None and int(events.ts.max()) >= now_ts:
        n = int((events.ts >= now_ts).sum())
        raise InputError(f"{n} events are dated at or after now_ts={now_ts} (future-dated history)")
    catalog.check_events(events)
    return events.sorted()


@dataclass(frozen=True)
class WindowSpec:
    """The model window (from the checkpoint's WindowConfig): T = context + horizon slots."""

    context: int
    horizon: int
    short_horizon: int
    cold_max_active: int

    @property
    def T(self) -> int:
        return self.context + self.horizon

    def target_len(self, task: str) -> int:
        return {"short_term": self.short_horizon, "long_term": self.horizon, "cold_start": self.horizon,
                "imputation": self.context}[task]

    def to_dict(self) -> dict[str, int]:
        return {"context": self.context, "horizon": self.horizon, "short_horizon": self.short_horizon,
                "cold_max_active": self.cold_max_active}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowSpec:
        return cls(int(d["context"]), int(d["horizon"]), int(d["short_horizon"]), int(d["cold_max_active"]))


@dataclass(eq=False)
class Window:
    """One request in model layout (featurized scale, batch axis added by the caller)."""

    task: str
    task_id: int
    x: np.ndarray            # (C, T, H, W) float32, zero outside avail
    avail: np.ndarray        # (1, T, H, W) float32 {0, 1}: coordinates the device may reveal as evidence
    target: np.ndarray       # (1, T, H, W) float32 {0, 1}: coordinates to predict
    e_pos: np.ndarray        # (H, W, P) float32
    stats: ProfileStats | None
    layout: UserLayout
    window_start_ts: int     # local seconds of window slot 0
    now_ts: int              # end of the context (a slot boundary)
    slot_seconds: int
    target_slots: tuple[int, int]   # [t0, t1) in window coordinates (imputation: the context)


def build_window(events: EventLog, catalog: Catalog, fcfg: FeatureConfig, spec: WindowSpec, task: str, *,
                 now_ts: int | None = None, missing: np.ndarray | None = None, grid: CityGrid | None = None,
                 cells: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                 wall_clock: float | None = None) -> Window:
    """One user's raw history -> the model window of ``task`` (training layout, train/dataset.py).

    * ``now_ts`` (default: the end of the slot of the last event, rounded up to a slot boundary) ends
      the context: window slots ``[0, context)`` are the ``context`` slots before it, slots
      ``[context, T)`` the horizon. Events at or after ``now_ts`` are refused (future-dated).
    * The layout (H x W anchor cells) and E_pos are fitted on the whole history, the profile
      statistics too (cold start: on the events of the visible slots only).
    * avail: context slots on or after the first history day's midnight (a device knows nothing
      before it started logging); all (h, w) of those slots. Cold start keeps the most recent
      ``cold_max_active`` ACTIVE slots only (training's B3 cut).
    * target: short_term the first ``short_horizon`` horizon slots; long_term / cold_start the
      whole horizon; imputation the ``missing`` (context, H, W) bool coordinates of the context
      (default: every context coordinate without an event, i.e. the gaps), which are removed
      from avail.
    """
    if task not in TASK_NAMES:
        raise InputError(f"unknown task {task!r}; choose from {TASK_NAMES}")
    events = check_history(events, catalog, now_ts=now_ts, wall_clock=wall_clock)
    ss = fcfg.slot_seconds
    last = int(events.ts.max())
    now = (last // ss + 1) * ss if now_ts is None else -(-as_timestamp(now_ts, "now_ts") // ss) * ss
    w0 = now - spec.context * ss                                # window start (local seconds)
    grid = grid or CityGrid.from_stations(catalog.stations, fcfg.cell_m)
    cells = cells or station_cells(catalog.stations, grid)
    layout = fit_layout(events, catalog, grid, fcfg.H, fcfg.W)
    e_pos = poi_embedding(layout, catalog, cells=cells)
    day0 = w0 // DAY_SECONDS * DAY_SECONDS
    n_slots = (now - day0) // ss
    tensor, _ = featurize_user(events, catalog, layout, fcfg, day0, n_slots)
    off = (w0 - day0) // ss
    ctx = tensor.dense(off, off + spec.context)                 # (C, context, H, W)
    C, H, W = ctx.shape[0], fcfg.H, fcfg.W
    T = spec.T
    x = np.zeros((C, T, H, W), np.float32)
    x[:, :spec.context] = ctx
    hist0 = int(events.ts.min()) // DAY_SECONDS * DAY_SECONDS
    slot_ts = w0 + np.arange(spec.context) * ss
    ok_slot = slot_ts >= hist0                                  # (context,)
    avail = np.zeros((1, T, H, W), np.float32)
    target = np.zeros((1, T, H, W), np.float32)
    stats_events = events
    if task == "cold_start":
        active = np.flatnonzero((np.abs(ctx).sum(axis=(0, 2, 3)) > 0) & ok_slot)
        keep = active[-spec.cold_max_active:] if spec.cold_max_active > 0 else active[:0]
        avail[0, keep] = 1.0
        vis_ts = slot_ts[keep]
        sel = np.isin((events.ts - w0) // ss, (vis_ts - w0) // ss) & (events.ts >= w0)
        stats_events = events.take(sel) if sel.any() else None
    else:
        avail[0, :spec.context][ok_slot] = 1.0
    if task == "imputation":
        if missing is None:
            miss = (np.abs(ctx).sum(axis=0) == 0)               # (context, H, W): the gaps
        else:
            miss = np.asarray(missing)
            if miss.shape != (spec.context, H, W) or miss.dtype != np.bool_:
                raise InputError(f"missing must be a bool array of shape {(spec.context, H, W)}, got "
                                 f"{miss.dtype} {miss.shape}")
        miss = miss & ok_slot[:, None, None]
        if not miss.any():
            raise InputError("nothing to impute: the missing mask selects no coordinate of the history window")
        target[0, :spec.context] = miss
        avail[0, :spec.context] *= ~miss
        tslots = (0, spec.context)
    else:
        tslots = (spec.context, spec.context + spec.target_len(task))
        target[0, tslots[0]:tslots[1]] = 1.0
    if avail.sum() == 0 and task != "imputation":
        raise InputError("the history has no slot inside the model's context window "
                         f"({spec.context} slots of {fcfg.slot_minutes} min before now)")
    x *= avail
    stats = None
    if stats_events is not None and len(stats_events):
        stats = profile_statistics(stats_events, catalog, layout, fcfg, cells=cells)
    return Window(task, TASK_NAMES.index(task), x, avail, target, e_pos.astype(np.float32), stats, layout,
                  int(w0), int(now), ss, tslots)


__all__ = ["EVENTS_CSV_COLUMNS", "TASK_NAMES", "MAX_EVENTS", "as_timestamp", "compact_time", "read_events_csv", "load_history", "check_history",
           "WindowSpec", "Window", "build_window"]
