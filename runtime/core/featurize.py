"""Featurization: raw events -> per-user behavior tensor X_u (C x T x H x W) and U-SCOPE statistics.

This is the ONE featurization of the project: training, evaluation and the on-device runtime all
call it (design rule 2). numpy only.

Channel layout (the only place it is defined; K = number of app categories of the catalog)::

    channel 0          traffic   log1p(sum of bytes of the user's events in (slot, cell)) / TRAFFIC_SCALE
    channels 1 .. K    apps      log1p(number of records of category k in (slot, cell))   / APP_SCALE
    channel K+1        location  1.0 if the user had any event in (slot, cell), else 0.0

so C = K + 2 (22 for the 20 Tsinghua categories). Time: slot t covers local seconds
[start_ts + t * slot_seconds, start_ts + (t+1) * slot_seconds); ``start_ts`` is a local midnight.
Space: slot (h, w) of the user's `UserLayout` (see tessellation.py); events outside the layout or
outside [start_ts, start_ts + T * slot_seconds) are counted in `FeaturizeReport`, not stored.

Absent channels (app-only logs, runtime/core/usage_log.py). A log without places has NO location
channel and, without a bytes column, no traffic channel: "not recorded", which is not "zero".
``featurize_user(..., absent={"location"[, "traffic"]})`` (and `featurize_population`) then

* stores nothing in the absent channels and records them on the tensor
  (`SparseBehaviorTensor.absent`, `ChannelLayout.absent`, `ChannelLayout.present`; saved by
  `SparseBehaviorTensor.to_arrays`), so training and scoring can leave them out;
* with location absent, never consults the base-station catalog (the events carry the
  placeholder station -1) and puts every event in layout cell (0, 0) of the configured H x W,
  through a `placeless_layout` (no city cell, no grid: a placeholder `CityGrid`). Why cell (0, 0)
  of H x W and not a 1 x 1 tensor: the model families patch space 2 x 2 (DiT patch (4, 2, 2)), so a
  1 x 1 tensor would fit none of the stock configs or bundle shapes, while keeping H x W gives app-only
  and located users one tensor shape. The other cells are structurally empty; the training windows
  make them neither evidence nor target (train/models/umask/data.py), so the model sees a 1 x 1
  problem. E_pos is all zeros (no POI is known) and the profile statistics have no places.

The default (nothing absent) path is unchanged, bit for bit.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from umask.runtime.core.catalog import Catalog
from umask.runtime.core.errors import DataFormatError, InputError
from umask.runtime.core.events import EventLog
from umask.runtime.core.tessellation import (CityGrid, UserLayout, _single_user, dominant_place_index, fit_layout,
                           poi_embedding, station_cells)

log = logging.getLogger(__name__)

DAY_SECONDS = 86_400
TRAFFIC_SCALE = 20.0              # log1p(bytes per slot-cell) is ~6..16 on the real sample -> ~0.3..0.8
APP_SCALE = math.log1p(60.0)      # 60 records of one category in one 15-min slot-cell -> 1.0
TRAFFIC = slice(0, 1)             # the traffic channel (fixed); apps/location depend on K
ABSENTABLE = ("location", "traffic")   # channels a log may not record (usage_log.UsageLog.absent)
NOTHING_ABSENT: frozenset[str] = frozenset()


def check_absent(absent: Any) -> frozenset[str]:
    """``absent`` as a frozenset of channel names from :data:`ABSENTABLE` (InputError otherwise)."""
    if isinstance(absent, str):
        raise InputError(f"absent must be a set of channel names, got the string {absent!r}")
    out = frozenset(str(a) for a in absent)
    unknown = sorted(out - set(ABSENTABLE))
    if unknown:
        raise InputError(f"absent channels must be among {ABSENTABLE}, got {unknown}")
    return out


# -----------------------------------------------------------------------------
# Configuration and channel layout
# -----------------------------------------------------------------------------

@dataclass(frozen=True)
class FeatureConfig:
    slot_minutes: int = 15
    H: int = 4
    W: int = 4
    cell_m: float = 500.0
    session_gap_minutes: float = 30.0

    def __post_init__(self) -> None:
        if self.slot_minutes < 1 or 1440 % self.slot_minutes != 0:
            raise InputError(f"slot_minutes must divide a day (1440 min), got {self.slot_minutes}")
        if self.H < 1 or self.W < 1:
            raise InputError(f"H and W must be >= 1, got {self.H} x {self.W}")
        if not self.cell_m > 0:
            raise InputError(f"cell_m must be > 0, got {self.cell_m}")
        if not self.session_gap_minutes > 0:
            raise InputError(f"session_gap_minutes must be > 0, got {self.session_gap_minutes}")

    @property
    def slot_seconds(self) -> int:
        return self.slot_minutes * 60

    @property
    def slots_per_day(self) -> int:
        return 1440 // self.slot_minutes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureConfig":
        unknown = set(d) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise InputError(f"FeatureConfig: unknown keys {sorted(unknown)}")
        return cls(**d)


@dataclass(frozen=True)
class ChannelLayout:
    """Where each channel group lives for K app categories (see the module docstring).

    ``absent``: channel groups the data does not record (from :data:`ABSENTABLE`); they keep their
    place in the layout (C stays K + 2) but hold no values and must be neither evidence nor target.
    """

    n_categories: int
    absent: frozenset[str] = NOTHING_ABSENT

    def __post_init__(self) -> None:
        object.__setattr__(self, "absent", check_absent(self.absent))

    @property
    def n_channels(self) -> int:
        return self.n_categories + 2

    @property
    def traffic(self) -> slice:
        return TRAFFIC

    @property
    def apps(self) -> slice:
        return slice(1, 1 + self.n_categories)

    @property
    def location(self) -> slice:
        return slice(1 + self.n_categories, 2 + self.n_categories)

    @property
    def location_index(self) -> int:
        return 1 + self.n_categories

    @property
    def present(self) -> np.ndarray:
        """(C,) float32: 1 for a recorded channel, 0 for an absent one (``channel_present`` of a window)."""
        out = np.ones(self.n_channels, np.float32)
        for name in self.absent:
            out[getattr(self, name)] = 0.0
        return out

    @classmethod
    def for_catalog(cls, catalog: Catalog, absent: Any = NOTHING_ABSENT) -> "ChannelLayout":
        return cls(catalog.apps.n_categories, frozenset(absent))

    @classmethod
    def for_channels(cls, n_channels: int, absent: Any = NOTHING_ABSENT) -> "ChannelLayout":
        if n_channels < 3:
            raise InputError(f"a behavior tensor has K + 2 >= 3 channels, got {n_channels}")
        return cls(n_channels - 2, frozenset(absent))


def apps_slice(n_categories: int) -> slice:
    return ChannelLayout(n_categories).apps


def location_slice(n_categories: int) -> slice:
    return ChannelLayout(n_categories).location


def channel_names(catalog: Catalog) -> list[str]:
    """["traffic", "app:<category>" x K, "location"]."""
    return ["traffic"] + [f"app:{n}" for n in catalog.apps.category_names] + ["location"]


def encode_traffic(nbytes: np.ndarray) -> np.ndarray:
    return (np.log1p(np.asarray(nbytes, np.float64)) / TRAFFIC_SCALE).astype(np.float32)


def decode_traffic(x: np.ndarray) -> np.ndarray:
    """Channel-0 values -> bytes (float64)."""
    return np.expm1(np.asarray(x, np.float64) * TRAFFIC_SCALE)


def encode_app_counts(n: np.ndarray) -> np.ndarray:
    return (np.log1p(np.asarray(n, np.float64)) / APP_SCALE).astype(np.float32)


def decode_app_counts(x: np.ndarray) -> np.ndarray:
    """App-channel values -> record counts (float64; round for integers)."""
    return np.expm1(np.asarray(x, np.float64) * APP_SCALE)


# -----------------------------------------------------------------------------
# Sparse behavior tensor
# -----------------------------------------------------------------------------

@dataclass(eq=False)
class SparseBehaviorTensor:
    """X_u of shape (C, T, H, W) in COO form.

    ``key`` is the flat index in (t, c, h, w) order, ``((t * C + c) * H + h) * W + w``, strictly
    increasing, so a time range is one contiguous run found by binary search. int32 when the tensor
    has fewer than 2**31 entries (a 7-day, 22-channel, 4 x 4 tensor has 236,544). Only non-zero
    values are stored (a typical user-week: a few thousand, i.e. tens of kB).

    ``absent``: channel groups the source did not record (see the module docstring); they store no
    entries (checked), and ``channels`` carries them.
    """

    shape: tuple[int, int, int, int]   # (C, T, H, W)
    start_ts: int                      # local seconds of slot 0 (a local midnight)
    slot_seconds: int
    key: np.ndarray                    # (nnz,) int32/int64 sorted flat (t, c, h, w) index
    values: np.ndarray                 # (nnz,) float32
    absent: frozenset[str] = NOTHING_ABSENT

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)  # type: ignore[assignment]
        if len(self.shape) != 4 or min(self.shape) < 1:
            raise InputError(f"shape must be (C, T, H, W) with positive sizes, got {self.shape}")
        size = int(np.prod(self.shape, dtype=np.int64))
        dtype = np.int32 if size < 2**31 else np.int64
        self.key = np.asarray(self.key).astype(dtype, copy=False)
        self.values = np.asarray(self.values).astype(np.float32, copy=False)
        if self.key.ndim != 1 or self.key.shape != self.values.shape:
            raise InputError("key and values must be 1-D arrays of equal length")
        if len(self.key) and (self.key[0] < 0 or self.key[-1] >= size or (np.diff(self.key) <= 0).any()):
            raise InputError("key must be strictly increasing flat indices inside the shape")
        self.absent = check_absent(self.absent)
        if self.absent and len(self.key):
            ch = ChannelLayout.for_channels(self.C, self.absent)
            c = (self.key.astype(np.int64) // (self.H * self.W)) % self.C       # (nnz,) channel of each entry
            stored = (ch.present[c] == 0).sum()
            if stored:
                raise InputError(f"{int(stored)} entries lie in the absent channels {sorted(self.absent)}")

    @property
    def C(self) -> int:
        return self.shape[0]

    @property
    def T(self) -> int:
        return self.shape[1]

    @property
    def H(self) -> int:
        return self.shape[2]

    @property
    def W(self) -> int:
        return self.shape[3]

    @property
    def nnz(self) -> int:
        return len(self.key)

    @property
    def nbytes(self) -> int:
        return int(self.key.nbytes + self.values.nbytes)

    @property
    def slots_per_day(self) -> int:
        return DAY_SECONDS // self.slot_seconds

    @property
    def channels(self) -> ChannelLayout:
        return ChannelLayout.for_channels(self.C, self.absent)

    def _range(self, t0: int, t1: int | None) -> tuple[int, int, int, int]:
        t1 = self.T if t1 is None else int(t1)
        t0 = int(t0)
        if not 0 <= t0 <= t1 <= self.T:
            raise InputError(f"time range [{t0}, {t1}) outside [0, {self.T}]")
        per_t = self.C * self.H * self.W
        lo, hi = np.searchsorted(self.key, [t0 * per_t, t1 * per_t])
        return t0, t1, int(lo), int(hi)

    def dense(self, t0: int = 0, t1: int | None = None) -> np.ndarray:
        """Slots [t0, t1) as a dense (C, t1 - t0, H, W) float32 array."""
        t0, t1, lo, hi = self._range(t0, t1)
        C, _, H, W = self.shape
        flat = np.zeros((t1 - t0) * C * H * W, np.float32)
        flat[self.key[lo:hi].astype(np.int64) - t0 * C * H * W] = self.values[lo:hi]
        return np.ascontiguousarray(flat.reshape(t1 - t0, C, H, W).transpose(1, 0, 2, 3))  # (C, L, H, W)

    def coords(self, t0: int = 0, t1: int | None = None) -> tuple[np.ndarray, ...]:
        """(c, t, h, w, value) arrays of the stored entries in slots [t0, t1)."""
        t0, t1, lo, hi = self._range(t0, t1)
        C, _, H, W = self.shape
        k = self.key[lo:hi].astype(np.int64)
        rest, w = np.divmod(k, W)
        rest, h = np.divmod(rest, H)
        t, c = np.divmod(rest, C)
        return c, t, h, w, self.values[lo:hi]

    def active_slots(self, t0: int = 0, t1: int | None = None) -> np.ndarray:
        """Sorted slot indices in [t0, t1) where the user had any event (location channel set; with
        the location absent, any stored entry: every event has an app, so an app channel is set)."""
        c, t, _, _, _ = self.coords(t0, t1)
        if "location" in self.absent:
            return np.unique(t)
        return np.unique(t[c == self.channels.location_index])

    def slice_time(self, t0: int, t1: int) -> "SparseBehaviorTensor":
        """Slots [t0, t1) as a new tensor (start_ts shifted; only meaningful at day boundaries)."""
        t0, t1, lo, hi = self._range(t0, t1)
        if t1 == t0:
            raise InputError("empty time range")
        per_t = self.C * self.H * self.W
        return SparseBehaviorTensor((self.C, t1 - t0, self.H, self.W), self.start_ts + t0 * self.slot_seconds,
                                    self.slot_seconds, self.key[lo:hi].astype(np.int64) - t0 * per_t,
                                    self.values[lo:hi].copy(), self.absent)

    @classmethod
    def from_dense(cls, x: np.ndarray, start_ts: int, slot_seconds: int,
                   absent: Any = NOTHING_ABSENT) -> "SparseBehaviorTensor":
        """(C, T, H, W) dense array -> sparse (zeros are not stored)."""
        x = np.asarray(x, np.float32)
        if x.ndim != 4:
            raise InputError(f"expected (C, T, H, W), got shape {x.shape}")
        flat = x.transpose(1, 0, 2, 3).reshape(-1)  # (t, c, h, w) order
        key = np.flatnonzero(flat)
        return cls(x.shape, int(start_ts), int(slot_seconds), key, flat[key], frozenset(absent))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """For ``np.savez``: everything needed to rebuild the tensor (``absent`` as a unicode array,
        only when a channel is absent, so files of complete tensors are as before; no pickle)."""
        out = {"shape": np.array(self.shape, np.int64), "start_ts": np.array(self.start_ts, np.int64),
               "slot_seconds": np.array(self.slot_seconds, np.int64), "key": self.key, "values": self.values}
        if self.absent:
            out["absent"] = np.array(sorted(self.absent), dtype="<U16")
        return out

    @classmethod
    def from_arrays(cls, d: dict[str, np.ndarray]) -> "SparseBehaviorTensor":
        absent = frozenset(str(a) for a in np.asarray(d["absent"]).reshape(-1)) if "absent" in d else NOTHING_ABSENT
        return cls(tuple(int(s) for s in d["shape"]), int(d["start_ts"]), int(d["slot_seconds"]),
                   np.asarray(d["key"]), np.asarray(d["values"]), absent)


# -----------------------------------------------------------------------------
# Featurization of one user
# -----------------------------------------------------------------------------

@dataclass
class FeaturizeReport:
    """Where the events went; n_events = n_used + n_outside_time + n_outside_layout."""

    user: int
    n_events: int
    n_outside_time: int      # before start_ts or at/after the end of the last slot
    n_outside_layout: int    # inside the time range, but in a cell that is not in the layout

    @property
    def n_used(self) -> int:
        return self.n_events - self.n_outside_time - self.n_outside_layout

    @property
    def coverage(self) -> float:
        """Share of in-time events that the layout covers (NaN if none are in time)."""
        in_time = self.n_events - self.n_outside_time
        return self.n_used / in_time if in_time else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "n_used": self.n_used}


def _check_events(events: EventLog) -> None:
    for name in ("user", "ts", "bs", "app", "bytes"):
        a = getattr(events, name)
        if not (isinstance(a, np.ndarray) and a.ndim == 1 and np.issubdtype(a.dtype, np.integer)):
            raise InputError(f"EventLog.{name} must be a 1-D integer array (build it with EventLog.from_arrays)")
    if (events.bytes < 0).any():
        raise InputError("EventLog.bytes holds negative values")


def _check_layout(layout: UserLayout, cfg: FeatureConfig) -> None:
    if (layout.H, layout.W) != (cfg.H, cfg.W):
        raise InputError(f"layout is {layout.H} x {layout.W}, config wants {cfg.H} x {cfg.W}")
    if layout.grid.cell_m != cfg.cell_m:
        raise InputError(f"layout grid has {layout.grid.cell_m} m cells, config wants {cfg.cell_m} m")


def _check_apps(events: EventLog, catalog: Catalog) -> None:
    """`Catalog.check_events` for the apps only (an app-only log has no base stations to check)."""
    known = catalog.apps.category_index(events.app, unknown="map") >= 0
    if not known.all():
        i = int(np.flatnonzero(~known)[0])
        line = None if events.line is None else int(events.line[i])
        raise DataFormatError(events.source, line, f"unknown app id {int(events.app[i])} ({int((~known).sum())} "
                                                   f"events in all; catalog id space is '{catalog.id_space}')")


def _check_catalog(events: EventLog, catalog: Catalog, absent: frozenset[str]) -> None:
    if "location" in absent:
        _check_apps(events, catalog)          # the base-station catalog is not consulted
    else:
        catalog.check_events(events)


PLACELESS_GRID_ORIGIN = (0.0, 0.0, 0.0)      # (lat0, lon0, lat_ref) of a placeless layout's placeholder grid


def placeless_layout(cfg: FeatureConfig, events: EventLog | None = None, user: int | None = None) -> UserLayout:
    """The layout of a user whose location is absent: no city cell in any slot (all -1), a
    placeholder grid (origin 0, 0, no extent), and every (fitting-period) event counted in slot
    (0, 0), where `featurize_user` puts it. ``events``: the fitting period (for counts and times)."""
    counts = np.zeros((cfg.H, cfg.W), np.int64)
    fit = (None, None)
    if events is not None and len(events):
        counts[0, 0] = len(events)
        fit = (int(events.ts.min()), int(events.ts.max()) + 1)
    grid = CityGrid(*PLACELESS_GRID_ORIGIN, cfg.cell_m, 0, 0)
    return UserLayout(grid, np.full((cfg.H, cfg.W, 2), -1, np.int64), counts, user, *fit)


def _slots(events: EventLog, catalog: Catalog, layout: UserLayout, absent: frozenset[str]) -> np.ndarray:
    """(N,) layout slot of every event: located through the catalog, or 0 (cell (0, 0)) without a location."""
    if "location" in absent:
        return np.zeros(len(events), np.int64)
    return layout.locate(events, catalog)


def featurize_user(events: EventLog, catalog: Catalog, layout: UserLayout | None, cfg: FeatureConfig,
                   start_ts: int, n_slots: int, *,
                   absent: frozenset[str] = NOTHING_ABSENT) -> tuple[SparseBehaviorTensor, FeaturizeReport]:
    """One user's events -> (X_u of shape (K+2, n_slots, H, W), report). See the module docstring.

    ``absent``: channels the log does not record (``UsageLog.absent``). With ``"location"`` absent
    ``layout`` may be None (a `placeless_layout` is used) and every event goes to cell (0, 0)."""
    absent = check_absent(absent)
    user = _single_user(events, "featurize_user")
    _check_events(events)
    _check_catalog(events, catalog, absent)
    if layout is None:
        if "location" not in absent:
            raise InputError("featurize_user needs a layout unless the location channel is absent")
        layout = placeless_layout(cfg, events, user)
    return _featurize(events, user, catalog, layout, cfg, start_ts, n_slots, absent)


def _featurize(events: EventLog, user: int, catalog: Catalog, layout: UserLayout, cfg: FeatureConfig,
               start_ts: int, n_slots: int,
               absent: frozenset[str] = NOTHING_ABSENT) -> tuple[SparseBehaviorTensor, FeaturizeReport]:
    _check_layout(layout, cfg)
    start_ts, n_slots = int(start_ts), int(n_slots)
    if start_ts % DAY_SECONDS != 0:
        raise InputError(f"start_ts {start_ts} is not a local midnight (multiple of 86400)")
    if n_slots < 1:
        raise InputError(f"n_slots must be >= 1, got {n_slots}")
    K = catalog.apps.n_categories
    HW = cfg.H * cfg.W
    C = K + 2
    per_t = C * HW

    t = (events.ts - start_ts) // cfg.slot_seconds                  # (N,) slot of each event
    in_time = (t >= 0) & (t < n_slots)
    slot = _slots(events, catalog, layout, absent)                   # (N,) h*W+w or -1
    used = in_time & (slot >= 0)
    report = FeaturizeReport(user, len(events), int((~in_time).sum()), int((in_time & (slot < 0)).sum()))

    t, s = t[used], slot[used]
    cat = catalog.apps.category_index(events.app[used])              # (n,) 0..K-1
    nbytes = events.bytes[used].astype(np.float64)

    cell_key, inv = np.unique(t * HW + s, return_inverse=True)       # active (slot, cell) pairs
    byte_sum = np.bincount(inv.reshape(-1), weights=nbytes, minlength=len(cell_key))
    tt, ss = np.divmod(cell_key, HW)
    app_key, app_n = np.unique(t * per_t + (1 + cat) * HW + s, return_counts=True)

    keys = np.concatenate([tt * per_t + ss,                          # channel 0: traffic
                           app_key,                                  # channels 1..K: apps
                           tt * per_t + (K + 1) * HW + ss])          # channel K+1: location
    values = np.concatenate([encode_traffic(byte_sum), encode_app_counts(app_n),
                             np.ones(len(cell_key), np.float32)])
    keep = values != 0                                               # zero-byte slots store no traffic
    if absent:                                                       # absent channels store nothing
        n_t, n_a = len(cell_key), len(app_key)
        keep[:n_t] &= "traffic" not in absent
        keep[n_t + n_a:] &= "location" not in absent
    order = np.argsort(keys[keep], kind="stable")
    tensor = SparseBehaviorTensor((C, n_slots, cfg.H, cfg.W), start_ts, cfg.slot_seconds,
                                  keys[keep][order], values[keep][order], absent)
    return tensor, report


# -----------------------------------------------------------------------------
# U-SCOPE profile statistics (paper section 5.1)
# -----------------------------------------------------------------------------

@dataclass(eq=False)
class ProfileStats:
    """pi_time, C_u and sigma_u of one user's history, plus counts that put them in context.

    * ``pi_hour`` (24,) / ``pi_weekday`` (7, Monday = 0): share of events per hour of day / weekday.
    * ``C_u`` (K, H*W): events per (app category, layout slot), covered events only.
      ``C_place`` (K, P): the same events per (category, dominant POI type of the slot's cell);
      events in cells without POIs are not in C_place (``n_unknown_place`` counts them).
    * sigma_u, session regularity. A session is a run of events whose consecutive gaps are
      <= session_gap_minutes. ``session_start_entropy`` = H(start-hour histogram) / log(24) in [0, 1];
      ``regularity`` = 1 - session_start_entropy (1: every session starts in the same hour;
      0: starts spread evenly over the day; few sessions give little evidence either way).
      ``day_similarity`` = mean cosine similarity of the 24-bin hourly event-count vectors over
      all pairs of active days (NaN with fewer than 2 active days).
    """

    user: int
    n_events: int
    n_covered: int
    n_active_days: int
    pi_hour: np.ndarray            # (24,) float64, sums to 1
    pi_weekday: np.ndarray         # (7,) float64, sums to 1
    C_u: np.ndarray                # (K, H*W) int64
    C_place: np.ndarray            # (K, P) int64
    n_unknown_place: int
    category_names: list[str]      # (K,)
    place_types: list[str]         # (P,)
    slot_place: list[str]          # (H*W,) dominant POI type per slot, or "unknown"
    n_sessions: int
    sessions_per_day: float
    mean_session_minutes: float
    session_start_entropy: float
    regularity: float
    day_similarity: float

    @property
    def pi_time(self) -> np.ndarray:
        """The paper's pi_time: the hour-of-day distribution."""
        return self.pi_hour

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable (arrays -> lists, NaN -> None)."""
        out: dict[str, Any] = {}
        for k, v in asdict(self).items():
            if isinstance(v, np.ndarray):
                v = v.tolist()
            elif isinstance(v, float) and math.isnan(v):
                v = None
            out[k] = v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ProfileStats":
        kw = dict(d)
        for k in ("pi_hour", "pi_weekday"):
            kw[k] = np.array(kw[k], np.float64)
        for k in ("C_u", "C_place"):
            kw[k] = np.array(kw[k], np.int64)
        for k in ("sessions_per_day", "mean_session_minutes", "session_start_entropy", "regularity",
                  "day_similarity"):
            kw[k] = float("nan") if kw[k] is None else float(kw[k])
        return cls(**kw)


def _normalized_entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum() / math.log(len(counts)))


def profile_statistics(events: EventLog, catalog: Catalog, layout: UserLayout | None, cfg: FeatureConfig, *,
                       cells: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                       absent: frozenset[str] = NOTHING_ABSENT) -> ProfileStats:
    """U-SCOPE statistics of one user's (history) events. Deterministic.

    ``cells`` optionally carries `station_cells(catalog.stations, layout.grid)` computed once.
    With ``"location"`` in ``absent`` every event is in slot 0 and no slot has a place ("unknown").
    """
    absent = check_absent(absent)
    user = _single_user(events, "profile_statistics")
    _check_events(events)
    _check_catalog(events, catalog, absent)
    if layout is None:
        if "location" not in absent:
            raise InputError("profile_statistics needs a layout unless the location channel is absent")
        layout = placeless_layout(cfg, events, user)
    return _profile(events, user, catalog, layout, cfg, cells, absent)


def _profile(events: EventLog, user: int, catalog: Catalog, layout: UserLayout, cfg: FeatureConfig,
             cells: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
             absent: frozenset[str] = NOTHING_ABSENT) -> ProfileStats:
    _check_layout(layout, cfg)
    K, HW = catalog.apps.n_categories, cfg.H * cfg.W
    P = len(catalog.stations.poi_names)
    ts = np.sort(events.ts)
    n = len(ts)

    day = ts // DAY_SECONDS
    hour = (ts % DAY_SECONDS) // 3600
    pi_hour = np.bincount(hour, minlength=24) / n
    pi_weekday = np.bincount((day + 3) % 7, minlength=7) / n        # 1970-01-01 was a Thursday

    cat = catalog.apps.category_index(events.app)
    slot = _slots(events, catalog, layout, absent)
    cov = slot >= 0
    C_u = np.bincount(cat[cov] * HW + slot[cov], minlength=K * HW).reshape(K, HW)
    place = (np.full(HW, -1, np.int64) if "location" in absent      # no place is known
             else dominant_place_index(layout, catalog, cells=cells))  # (H*W,)
    ev_place = place[slot[cov]]
    known = ev_place >= 0
    C_place = np.bincount(cat[cov][known] * P + ev_place[known], minlength=K * P).reshape(K, P)
    names = catalog.stations.poi_names

    # sigma_u: sessions = runs of events separated by gaps > session_gap_minutes
    brk = np.flatnonzero(np.diff(ts) > cfg.session_gap_minutes * 60)
    starts = np.concatenate([[0], brk + 1])
    ends = np.concatenate([brk, [n - 1]])
    lengths_min = (ts[ends] - ts[starts]) / 60.0
    start_hours = np.bincount((ts[starts] % DAY_SECONDS) // 3600, minlength=24)
    entropy = _normalized_entropy(start_hours)
    days = np.unique(day)

    day_sim = float("nan")
    if len(days) >= 2:
        prof = np.zeros((len(days), 24), np.float64)                  # (D, 24) events per hour per day
        np.add.at(prof, (np.searchsorted(days, day), hour), 1.0)
        unit = prof / np.linalg.norm(prof, axis=1, keepdims=True)
        sim = unit @ unit.T
        iu = np.triu_indices(len(days), k=1)
        day_sim = float(sim[iu].mean())

    return ProfileStats(
        user=user, n_events=n, n_covered=int(cov.sum()), n_active_days=len(days),
        pi_hour=pi_hour, pi_weekday=pi_weekday, C_u=C_u.astype(np.int64), C_place=C_place.astype(np.int64),
        n_unknown_place=int((~known).sum()), category_names=list(catalog.apps.category_names),
        place_types=list(names), slot_place=[names[i] if i >= 0 else "unknown" for i in place.tolist()],
        n_sessions=len(starts), sessions_per_day=len(starts) / len(days),
        mean_session_minutes=float(lengths_min.mean()), session_start_entropy=entropy,
        regularity=1.0 - entropy, day_similarity=day_sim)


# -----------------------------------------------------------------------------
# A population
# -----------------------------------------------------------------------------

@dataclass(eq=False)
class UserFeatures:
    user: int
    layout: UserLayout
    tensor: SparseBehaviorTensor   # (C, T, H, W) over the population's full span
    report: FeaturizeReport
    profile: ProfileStats          # from the fitting-period (history) events
    e_pos: np.ndarray              # (H, W, P+1) float32 location embedding


def day_span(ts: np.ndarray, slot_seconds: int) -> tuple[int, int]:
    """(start_ts, n_slots) of the whole local days that hold ``ts``."""
    ts = np.asarray(ts, np.int64)
    if ts.size == 0:
        raise InputError("empty history (no events)")
    start = int(ts.min()) // DAY_SECONDS * DAY_SECONDS
    end = -(-(int(ts.max()) + 1) // DAY_SECONDS) * DAY_SECONDS
    return start, (end - start) // slot_seconds


def featurize_population(events: EventLog, catalog: Catalog, cfg: FeatureConfig = FeatureConfig(),
                         fit_end_ts: int | None = None, *, grid: CityGrid | None = None,
                         log_every: int | None = None,
                         absent: frozenset[str] = NOTHING_ABSENT) -> dict[int, UserFeatures]:
    """Featurize every user of ``events``.

    Per user: the layout and profile statistics come from the events before ``fit_end_ts`` (all
    events when None); the tensor covers the whole local days spanned by all events (one common
    start_ts and T for the population). Users without events before ``fit_end_ts`` get no layout;
    they are left out of the result and logged with their count.

    ``absent`` (e.g. ``UsageLog.absent``): with ``"location"`` absent no grid is built and no
    station is looked up; every user gets a `placeless_layout` and an all-zero E_pos of the
    catalog's POI width (H, W, P+1), so the model shapes match a located population's.
    """
    absent = check_absent(absent)
    _check_events(events)
    if len(events) == 0:
        raise InputError("empty history (no events)")
    _check_catalog(events, catalog, absent)
    placeless = "location" in absent
    cells = None
    if not placeless:
        grid = grid or CityGrid.from_stations(catalog.stations, cfg.cell_m)
        if grid.cell_m != cfg.cell_m:
            raise InputError(f"grid has {grid.cell_m} m cells, config wants {cfg.cell_m} m")
        cells = station_cells(catalog.stations, grid)
    start_ts, n_slots = day_span(events.ts, cfg.slot_seconds)

    if len(events) > 1 and ((np.diff(events.user) < 0).any()
                            or ((np.diff(events.user) == 0) & (np.diff(events.ts) < 0)).any()):
        events = events.sorted()
    users, first = np.unique(events.user, return_index=True)
    bounds = np.append(first, len(events))
    every = log_every or max(1, len(users) // 10)
    out: dict[int, UserFeatures] = {}
    no_history: list[int] = []
    for i, u in enumerate(users.tolist()):
        ev = events.take(slice(int(bounds[i]), int(bounds[i + 1])))
        hist = ev if fit_end_ts is None else ev.take(ev.ts < fit_end_ts)
        if len(hist) == 0:
            no_history.append(u)
            continue
        if placeless:
            layout = placeless_layout(cfg, hist, u)
            e_pos = np.zeros((cfg.H, cfg.W, len(catalog.stations.poi_names) + 1), np.float32)
        else:
            layout = fit_layout(hist, catalog, grid, cfg.H, cfg.W)
            e_pos = poi_embedding(layout, catalog, cells=cells)
        tensor, report = _featurize(ev, u, catalog, layout, cfg, start_ts, n_slots, absent)
        profile = _profile(hist, u, catalog, layout, cfg, cells, absent)
        out[u] = UserFeatures(u, layout, tensor, report, profile, e_pos)
        if (i + 1) % every == 0 or i + 1 == len(users):
            log.info("featurized %d/%d users", i + 1, len(users))
    if no_history:
        log.warning("%d users have no events before fit_end_ts=%s and were left out, e.g. %s",
                    len(no_history), fit_end_ts, no_history[:10])
    return out
