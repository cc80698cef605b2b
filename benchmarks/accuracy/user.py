"""Per-user behavior-tensor evaluation harness, PROTOCOL.md section B (numpy only, model-agnostic).

Data
----
* **simulator (synthetic)** -- the main benchmark. ``simulate(SimulatorConfig(n_users, seed=seed))``
  (7 days from Wed 2016-04-20), featurized with the runtime's one featurization
  ``featurize_population(events, catalog, FeatureConfig(), fit_end_ts=start + 5 days)``: every
  user's layout (tessellation), ``e_pos`` and U-SCOPE ``ProfileStats`` come from the 5 training days
  only. A user with no event in the training days gets no layout and is left out (counted in every
  row). Splits per user (``train/user_windows.py``): train = days 1-5 (slots 0..479), validation =
  day 6 (480..575), test = day 7 (576..671).
* **real 6-user one-day sample** (LLMApp's Tsinghua sample, Wed 2016-04-20) -- a short-term-only
  sanity check. It holds ONE day, so PROTOCOL B's 2-day context, the day splits and every baseline
  that needs an earlier day (historical average, seasonal naive) are impossible there. Windows:
  target = the 4 slots (1 h) starting at s = 32, 36, ..., 88 (08:00, 09:00, ..., 22:00; the sample
  records 07:00-23:30, so every target hour lies inside the recorded part of the day), 15 windows per
  user; context = everything before the target hour in that day, [0, s), delivered in the same
  192-slot frame as B1 ([s - 192, s); slots before the day are unobserved: zero in ``x_context``,
  ``avail`` False). The layout, ``e_pos`` are fitted on the whole (only) day; the ``ProfileStats``
  of each window are recomputed from the events before its target start (None when there are none).

Tasks (simulator; windows from ``train/user_windows.py``, split = test by default)
-------------------------------------------------------------------------------
* B1 short-term: context 192 slots (2 days) -> target 4 slots (1 h); target starts every 4 slots of
  the split day (24 windows per user).
* B2 long-term: context 192 slots -> target the whole split day (96 slots); 1 window per user.
* B3 cold-start: the 192-slot context before the split day, cut to its most recent <= 20 *active*
  slots (``avail`` marks them; everything else is zero and unobserved) -> the split day (96 slots).
  The ``ProfileStats`` handed to models are recomputed from the events in those visible slots only
  (None when there are none), so a conditioning model sees no more history than the cut; the
  layout / ``e_pos`` stay those of the training days (the featurization is fixed per user).
  Error metrics over the 96-slot target plus ranking metrics (below).
* B4 completion: 192-slot windows ending at the split day's end (1 per user); (t, h, w) coordinates
  hidden with the PROTOCOL A2 recipe (``default_rng(1000 + window index)``; the window index is the
  position in the user's split list, so every user's test window uses seed 1000). ``x_context`` =
  the window with every hidden coordinate zeroed in all channels, ``avail`` = not hidden,
  ``eval_mask`` = hidden; Tc = Th = 192 and the target is the window itself.

Metrics
-------
All on the **featurized scale** of ``runtime/featurize.py`` (fixed, defined once; no per-user
standardization): traffic = log1p(bytes per slot-cell) / 20, app k = log1p(records) / log1p(60),
location = 0/1. Per task and channel group -- traffic (channel 0), app (channels 1..K), location
(channel K+1) -- MAE and RMSE pooled over every evaluated entry of every window ("all": the entries
inside ``eval_mask``; "active": those with ground truth != 0). Raw scale where a unit exists:
traffic in bytes per slot-cell (``decode_traffic``), apps in records per slot-cell
(``decode_app_counts``); predictions are clipped to [0, 10] before decoding.

B3 ranking: per user, engagement in the target day = for app category k the records
(sum over slots and cells of ``decode_app_counts(clip(x_k, 0, 10))``), for layout location (h, w) the
active slots (sum over slots of ``clip(x_loc, 0, ...)``), both rounded to 1e-3; the same function
scores the ground truth and the prediction (the ground-truth app ranking equals
``user_windows.top_k_categories``; locations are ranked by dwell, i.e. active 15-min slots, which is
what the location channel encodes). Ranked lists keep positive scores only, ties -> smaller index.
Relevance: for Recall@k and NDCG@k the relevant set is the user's true top-k items
(min(k, number of engaged items)), so a perfect ranking scores 1 at every k; MRR@k is the
reciprocal rank of the user's single most-engaged true item within the predicted top k. k = 1, 3, 5
for locations and 1, 3, 5, 10 for apps. Users without any target-day activity are skipped and
counted. Averages are over ranked users.

Models
------
A :data:`Predictor` is ``fn(batch: TaskBatch) -> np.ndarray`` of shape (n, C, Th, H, W) on the
featurized scale. It receives a read-only view of the batch without ``truth``. Raising
``NotImplementedError`` skips that model for that task. Stochastic models pass
``model_info={"name": {"seeds": ..., "samples": ..., "steps": ...}}`` (merged into their rows).

An adapter for a trained model, e.g.::

    def predictor(batch: TaskBatch) -> np.ndarray:      # batch.truth is None here
        x, m = batch.x_context, batch.avail               # (n, C, Tc, H, W), (n, 1, Tc, H, W)
        tod = batch.time_of_day(batch.context_slots())    # (n, Tc); batch.e_pos, batch.profiles
        ...                                                # condition on the user
        return y                                           # (n, C, batch.horizon, H, W)

    rows = evaluate({"umask": predictor}, n_users=300, seed=0,
                    model_info={"umask": {"seeds": [0], "samples": 8, "steps": 50}})
    rows += evaluate_real_sample({"umask": predictor})

Batches hold <= ``batch_size`` windows (default 32: ~0.4 GB peak for the baselines at 300 users).

Run the baselines::

    python -m umask.bench.accuracy.user --users 300 --seed 0 --out benchmarks/results/user_baselines.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import sys
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from umask.train.baselines import classical as baselines
from umask.runtime.core.catalog import Catalog, load_llmapp_catalog
from umask.runtime.core.events import EventLog
from umask.runtime.core.featurize import (
    DAY_SECONDS,
    ChannelLayout,
    FeatureConfig,
    ProfileStats,
    UserFeatures,
    decode_app_counts,
    decode_traffic,
    featurize_population,
    profile_statistics,
)
from umask.runtime.core.tessellation import station_cells
from umask.train.common import metrics as tm
from umask.train.data import user_windows as uw
from umask.train.simulator import (
    DEFAULT_DATA_DIR,
    TSINGHUA_DIR,
    SimulatorConfig,
    load_real_sample,
    simulate,
)

log = logging.getLogger(__name__)

SYNTHETIC_DATASET = "simulator (synthetic)"
REAL_DATASET = "tsinghua_app_usage LLMApp 6-user one-day sample (real)"
REPO_ROOT: Path = Path(__file__).resolve().parents[2]
DEFAULT_OUT = "benchmarks/results/user_baselines.json"
TASKS = ("B1", "B2", "B3", "B4")
TASK_NAMES = {
    "B1": "B1 short-term (2 d -> 1 h)",
    "B2": "B2 long-term (2 d -> 24 h)",
    "B3": "B3 cold-start (<= 20 active slots -> next 24 h)",
    "B4": "B4 completion (70-80% of (t,h,w) hidden, 2 d)",
}
REAL_TASK_NAME = "B1-real short-term (in-day context -> 1 h)"
GROUPS = ("traffic", "app", "location")
APP_KS = (1, 3, 5, 10)
LOC_KS = (1, 3, 5)
TRAIN_DAYS = 5                       # fit_end_ts = start + 5 days (= the train split of a 7-day week)
REAL_TARGET_STARTS = tuple(range(32, 89, 4))   # 08:00, 09:00, ..., 22:00 (15-minute slots)
RAW_CLIP = (0.0, 10.0)
SCORE_DECIMALS = 3
SCALE_NOTE = ("featurized scale of runtime/featurize.py (traffic log1p(bytes)/20, app log1p(records)/log1p(60), "
              "location 0/1; fixed, no per-user standardization); raw: traffic bytes per slot-cell, app records per "
              "slot-cell (predictions clipped to [0, 10] before decoding)")

Predictor = Callable[["TaskBatch"], np.ndarray]
"""(TaskBatch without truth) -> (n, C, Th, H, W) prediction on the featurized scale."""


# ------------------------------------------------------------------------------------------------
# Population
# ------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class UserPopulation:
    """Featurized users of one data set plus what the harness needs to cut windows."""

    dataset: str
    synthetic: bool
    features: dict[int, UserFeatures]       # user -> features (sorted by user)
    events: dict[int, EventLog]             # user -> that user's raw events (time-sorted)
    catalog: Catalog
    cfg: FeatureConfig
    info: dict[str, Any] = field(default_factory=dict)   # provenance for the rows

    @property
    def users(self) -> list[int]:
        return sorted(self.features)

    @property
    def channels(self) -> ChannelLayout:
        return ChannelLayout.for_catalog(self.catalog)

    @property
    def T(self) -> int:
        return next(iter(self.features.values())).tensor.T

    @property
    def start_ts(self) -> int:
        return next(iter(self.features.values())).tensor.start_ts

    @property
    def slots_per_day(self) -> int:
        return self.cfg.slots_per_day

    @property
    def train_end(self) -> int:
        """One past the last training slot (start of the validation day)."""
        return uw.user_splits(self.T, self.slots_per_day)["val"].t0


def _split_events(events: EventLog) -> dict[int, EventLog]:
    events = events.sorted()
    users, first = np.unique(events.user, return_index=True)
    bounds = np.append(first, len(events))
    return {int(u): events.take(slice(int(bounds[i]), int(bounds[i + 1]))) for i, u in enumerate(users.tolist())}


def _catalog(data_dir: str | Path | None) -> Catalog:
    root = Path(DEFAULT_DATA_DIR if data_dir is None else data_dir)
    return load_llmapp_catalog(root / TSINGHUA_DIR if (root / TSINGHUA_DIR).is_dir() else root)


def simulated_population(n_users: int = 300, seed: int = 0, *, data_dir: str | Path | None = None,
                         cfg: FeatureConfig | None = None) -> UserPopulation:
    """SYNTHETIC users from the calibrated simulator, featurized with layouts/profiles from days 1-5."""
    t0 = time.perf_counter()
    cfg = cfg or FeatureConfig()
    catalog = _catalog(data_dir)
    sim = SimulatorConfig(n_users=n_users, seed=seed)
    events, _ = simulate(sim, catalog, data_dir, progress=False)
    fit_end = sim.start_ts + TRAIN_DAYS * DAY_SECONDS
    feats = featurize_population(events, catalog, cfg, fit_end_ts=fit_end)
    left_out = sorted(set(np.unique(events.user).tolist()) - set(feats))
    per_user = _split_events(events)
    info = {"simulator": {"n_users": sim.n_users, "seed": sim.seed, "days": sim.days, "start_date": sim.start_date},
            "n_users_evaluated": len(feats), "left_out_no_training_events": left_out,
            "fit_end_ts": fit_end, "featurize": f"featurize_population(events, catalog, FeatureConfig(), "
                                                 f"fit_end_ts=start + {TRAIN_DAYS} days)",
            "build_seconds": round(time.perf_counter() - t0, 2)}
    return UserPopulation(SYNTHETIC_DATASET, True, dict(sorted(feats.items())),
                          {u: per_user[u] for u in feats}, catalog, cfg, info)


def real_population(*, data_dir: str | Path | None = None, cfg: FeatureConfig | None = None) -> UserPopulation:
    """The REAL 6-user one-day sample, featurized on its only day (layout/e_pos fitted on that day)."""
    cfg = cfg or FeatureConfig()
    catalog = _catalog(data_dir)
    events = load_real_sample(data_dir)
    feats = featurize_population(events, catalog, cfg)
    start = next(iter(feats.values())).tensor.start_ts
    info = {"day": (date(1970, 1, 1) + timedelta(days=start // DAY_SECONDS)).isoformat(),
            "n_users_evaluated": len(feats), "n_events": len(events),
            "featurize": "featurize_population(events, catalog, FeatureConfig()) (layout/e_pos from the whole day: "
                         "the sample has one day, no training period exists)"}
    return UserPopulation(REAL_DATASET, False, dict(sorted(feats.items())), _split_events(events), catalog, cfg, info)


# ------------------------------------------------------------------------------------------------
# Task batches
# ------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class TaskBatch:
    """n evaluation windows of one task, stacked.

    Absolute slot t covers [start_ts + t * 900 s, ...), start_ts a local midnight, so the time of day
    of slot t is ``t % slots_per_day`` (also for negative t: slots before the data). Context index i
    is absolute slot ``context_starts + i``; target index j is absolute slot ``starts + j`` =
    context index ``target_offset + j`` (forecasting: target_offset = Tc, the target follows the
    context; B4: 0, the target is the context window itself).
    """

    task: str                      # "B1" | "B2" | "B3" | "B4"
    task_name: str
    split: str
    dataset: str
    x_context: np.ndarray          # (n, C, Tc, H, W) float32, zero where not avail
    avail: np.ndarray              # (n, 1, Tc, H, W) bool, True = observed context coordinate
    context_starts: np.ndarray     # (n,) int64 absolute slot of x_context[:, :, 0]
    starts: np.ndarray             # (n,) int64 absolute slot of the first target slot
    horizon: int                   # Th
    target_offset: int             # Tc (forecasting) or 0 (B4)
    eval_mask: np.ndarray          # (n, 1, Th, H, W) bool, entries that are scored (B4: hidden)
    e_pos: np.ndarray              # (n, H, W, P+1) float32 location embedding of each user's layout
    users: np.ndarray              # (n,) int64
    window_index: np.ndarray       # (n,) int64 position in the user's window list
    profiles: list[ProfileStats | None]   # (n,) conditioning statistics (see the module docstring)
    channels: ChannelLayout
    slots_per_day: int
    start_ts: int                  # local seconds of absolute slot 0 (a local midnight)
    truth: np.ndarray | None = None    # (n, C, Th, H, W) float32; None in the model's view

    @property
    def n(self) -> int:
        return int(self.x_context.shape[0])

    @property
    def Tc(self) -> int:
        return int(self.x_context.shape[2])

    @property
    def target_slice(self) -> slice:
        """The target's slots in context coordinates (may lie beyond Tc for forecasting)."""
        return slice(self.target_offset, self.target_offset + self.horizon)

    def context_slots(self) -> np.ndarray:
        """(n, Tc) absolute slots."""
        return self.context_starts[:, None] + np.arange(self.Tc)[None, :]

    def target_slots(self) -> np.ndarray:
        """(n, Th) absolute slots."""
        return self.starts[:, None] + np.arange(self.horizon)[None, :]

    def time_of_day(self, slots: np.ndarray) -> np.ndarray:
        return np.asarray(slots) % self.slots_per_day

    def weekday(self, slots: np.ndarray) -> np.ndarray:
        """Monday = 0 (1970-01-01 was a Thursday)."""
        return (self.start_ts // DAY_SECONDS + np.asarray(slots) // self.slots_per_day + 3) % 7

    def model_view(self) -> TaskBatch:
        """The batch without ``truth``, arrays read-only (what a predictor receives)."""
        def ro(a: np.ndarray) -> np.ndarray:
            v = a.view()
            v.flags.writeable = False
            return v
        return dataclasses.replace(
            self, truth=None, x_context=ro(self.x_context), avail=ro(self.avail),
            context_starts=ro(self.context_starts), starts=ro(self.starts), eval_mask=ro(self.eval_mask),
            e_pos=ro(self.e_pos), users=ro(self.users), window_index=ro(self.window_index),
            profiles=list(self.profiles))


@dataclass(frozen=True, eq=False)
class _Spec:
    """One window before densification."""

    user: int
    index: int
    c0: int                         # context start (absolute, may be < 0)
    Tc: int
    t0: int                         # target start
    Th: int
    visible: np.ndarray | None = None   # B3: visible absolute slots
    hidden: np.ndarray | None = None    # B4: (Tc, H, W) bool
    profile_mode: str = "train"     # "train" | "visible" (B3) | "before" (real: events before t0)


def _window_specs(pop: UserPopulation, task: str, split: str, user: int) -> list[_Spec]:
    x = pop.features[user].tensor
    if task == "B1":
        return [_Spec(user, w.index, w.context[0], w.context[1] - w.context[0], w.target[0],
                      w.target[1] - w.target[0]) for w in uw.short_term_windows(x, split)]
    if task == "B2":
        return [_Spec(user, w.index, w.context[0], w.context[1] - w.context[0], w.target[0],
                      w.target[1] - w.target[0]) for w in uw.long_term_windows(x, split)]
    if task == "B3":
        return [_Spec(user, w.index, w.context[0], w.context[1] - w.context[0], w.target[0],
                      w.target[1] - w.target[0], visible=w.visible_slots, profile_mode="visible")
                for w in uw.cold_start_windows(x, split)]
    if task == "B4":
        return [_Spec(user, w.index, w.span[0], w.span[1] - w.span[0], w.span[0], w.span[1] - w.span[0],
                      hidden=w.mask) for w in uw.completion_windows(x, split)]
    if task == "B1-real":
        Tc = uw.CONTEXT_SLOTS
        return [_Spec(user, i, s - Tc, Tc, s, uw.SHORT_HORIZON, profile_mode="before")
                for i, s in enumerate(REAL_TARGET_STARTS)]
    raise ValueError(f"unknown task {task!r}")


def _padded(dense: np.ndarray, t0: int, t1: int) -> np.ndarray:
    """dense[:, t0:t1] with zeros for slots outside [0, T)."""
    C, T, H, W = dense.shape
    out = np.zeros((C, t1 - t0, H, W), np.float32)
    a, b = max(t0, 0), min(t1, T)
    if b > a:
        out[:, a - t0:b - t0] = dense[:, a:b]
    return out


class _ProfileMaker:
    """ProfileStats for cut histories (B3: events in the visible slots; real: events before t0)."""

    def __init__(self, pop: UserPopulation) -> None:
        self.pop = pop
        self._cells: Any = None

    def __call__(self, spec: _Spec) -> ProfileStats | None:
        f = self.pop.features[spec.user]
        if spec.profile_mode == "train":
            return f.profile
        ev = self.pop.events[spec.user]
        slot = (ev.ts - f.tensor.start_ts) // f.tensor.slot_seconds
        keep = np.isin(slot, spec.visible) if spec.profile_mode == "visible" else slot < spec.t0
        if not keep.any():
            return None
        if self._cells is None:
            self._cells = station_cells(self.pop.catalog.stations, f.layout.grid)
        return profile_statistics(ev.take(keep), self.pop.catalog, f.layout, self.pop.cfg, cells=self._cells)


def iter_batches(pop: UserPopulation, task: str, split: str = "test", batch_size: int = 32,
                 users: Sequence[int] | None = None,
                 windows: Mapping[str, Collection[int]] | None = None) -> Iterator[TaskBatch]:
    """Stream the task's windows of every user in batches of <= ``batch_size`` windows (with truth).

    ``windows``: optional task -> window indices to keep (e.g. ``{"B1": {2, 8, 14, 20}}`` scores
    only those target hours); tasks not named keep all their windows.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    keep = None if windows is None else windows.get(task)
    users = pop.users if users is None else list(users)
    profiles = _ProfileMaker(pop)
    name = REAL_TASK_NAME if task == "B1-real" else TASK_NAMES[task]
    task_id = "B1" if task == "B1-real" else task
    ch = pop.channels
    pending: list[tuple[_Spec, np.ndarray]] = []

    def build(chunk: list[tuple[_Spec, np.ndarray]]) -> TaskBatch:
        specs = [s for s, _ in chunk]
        Tc, Th = specs[0].Tc, specs[0].Th
        xs, avs, ys, ms = [], [], [], []
        for s, dense in chunk:
            H, W = dense.shape[2:]
            ctx = _padded(dense, s.c0, s.c0 + s.Tc)
            slots = s.c0 + np.arange(s.Tc)
            av = np.broadcast_to(((slots >= 0) & (slots < dense.shape[1]))[:, None, None], (s.Tc, H, W)).copy()
            if s.visible is not None:
                av &= np.isin(slots, s.visible)[:, None, None]
            if s.hidden is not None:
                av &= ~s.hidden
            ctx *= av[None]
            xs.append(ctx)
            avs.append(av[None])
            ys.append(_padded(dense, s.t0, s.t0 + s.Th))
            ms.append((s.hidden if s.hidden is not None else np.ones((s.Th, H, W), bool))[None])
        return TaskBatch(
            task=task_id, task_name=name, split=split, dataset=pop.dataset,
            x_context=np.stack(xs), avail=np.stack(avs), context_starts=np.array([s.c0 for s in specs], np.int64),
            starts=np.array([s.t0 for s in specs], np.int64), horizon=Th,
            target_offset=0 if task == "B4" else Tc, eval_mask=np.stack(ms),
            e_pos=np.stack([pop.features[s.user].e_pos for s in specs]).astype(np.float32),
            users=np.array([s.user for s in specs], np.int64),
            window_index=np.array([s.index for s in specs], np.int64),
            profiles=[profiles(s) for s in specs], channels=ch, slots_per_day=pop.slots_per_day,
            start_ts=pop.start_ts, truth=np.stack(ys))

    for u in users:
        specs = _window_specs(pop, task, split, u)
        if keep is not None:
            specs = [sp for sp in specs if sp.index in keep]
        if not specs:
            continue
        dense = pop.features[u].tensor.dense()
        for s in specs:
            pending.append((s, dense))
            if len(pending) == batch_size:
                yield build(pending)
                pending = []
    if pending:
        yield build(pending)


# ------------------------------------------------------------------------------------------------
# Baselines (Predictors)
# ------------------------------------------------------------------------------------------------
BASELINE_NOTES: dict[str, str] = {
    "all_zero": "0 everywhere (no activity)",
    "last_value": "B1/B2/B3: the last observed context slot per (c,h,w), repeated (0 if none); "
                  "B4: last observed value carried forward along time, backward fill before the first",
    "historical_average": "mean by time-of-day slot over the user's training days (days 1-5); B3: over the "
                          "visible cold-start history only (the 2 context days, cut slots as 0), since a "
                          "cold-start user has no training days",
    "seasonal_naive": "same (c,h,w) one day (96 slots) earlier when that context coordinate is observed, "
                      "else the historical average",
    "linear_interpolation": "B4 only: per (c,h,w) linear interpolation in time between observed coordinates, "
                            "constant extrapolation at the ends",
    "context_mean": "real sample only (no earlier day for a historical average): mean of the observed "
                    "in-day context slots per (c,h,w), repeated",
}


def _neighbours(batch: TaskBatch) -> tuple[np.ndarray, np.ndarray]:
    """prev/next observed context index per (n, 1, Tc, H, W) (-1 / Tc where none)."""
    n, _, Tc, H, W = batch.avail.shape
    prev, nxt = baselines.observed_neighbours(~np.asarray(batch.avail).reshape(n, 1, Tc, H * W))
    return prev.reshape(n, 1, Tc, H, W), nxt.reshape(n, 1, Tc, H, W)


def _gather(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """x (n, C, Tc, H, W) at time indices idx (n, 1, T', H, W) (clipped into range) -> (n, C, T', H, W)."""
    n, C, Tc = x.shape[:3]
    idx = np.clip(idx, 0, Tc - 1)
    return np.take_along_axis(x, np.broadcast_to(idx, (n, C) + idx.shape[2:]), axis=2)


def last_observed(batch: TaskBatch) -> np.ndarray:
    """(n, C, H, W): the value at the last observed context slot per (h, w) (0 where none)."""
    prev, _ = _neighbours(batch)
    last = prev[:, :, -1:]                                   # (n, 1, 1, H, W)
    return np.where(last >= 0, _gather(np.asarray(batch.x_context), last), 0.0)[:, :, 0]


def predict_all_zero(batch: TaskBatch) -> np.ndarray:
    return np.zeros((batch.n, batch.channels.n_channels, batch.horizon) + batch.x_context.shape[3:], np.float32)


def _impute(batch: TaskBatch, choose: str) -> np.ndarray:
    x = np.asarray(batch.x_context)
    prev, nxt = _neighbours(batch)
    Tc = batch.Tc
    has_p, has_n = prev >= 0, nxt < Tc
    vp, vn = _gather(x, prev), _gather(x, nxt)
    if choose == "prev":
        out = np.where(has_p, vp, vn)
    else:  # linear
        t = np.arange(Tc).reshape(1, 1, Tc, 1, 1)
        both = has_p & has_n
        w = np.where(both, (t - prev) / np.maximum(nxt - prev, 1), 0.0)
        out = np.where(both, vp + w * (vn - vp), np.where(has_p, vp, vn))
    out = np.where(has_p | has_n, out, 0.0)
    return np.where(batch.avail, x, out).astype(np.float32)


def predict_last_value(batch: TaskBatch) -> np.ndarray:
    if batch.target_offset == 0:                              # completion: target = the context window
        return _impute(batch, "prev")
    return np.repeat(last_observed(batch)[:, :, None], batch.horizon, axis=2).astype(np.float32)


def predict_linear_interpolation(batch: TaskBatch) -> np.ndarray:
    if batch.target_offset != 0:
        raise NotImplementedError("linear interpolation is a completion (B4) baseline")
    return _impute(batch, "linear")


def predict_context_mean(batch: TaskBatch) -> np.ndarray:
    x = np.asarray(batch.x_context, np.float64)
    cnt = np.asarray(batch.avail).sum(axis=2)                # (n, 1, H, W)
    mean = x.sum(axis=2) / np.maximum(cnt, 1)
    return np.repeat(mean[:, :, None], batch.horizon, axis=2).astype(np.float32)


def _context_tod_mean(batch: TaskBatch) -> np.ndarray:
    """(n, C, spd, H, W): mean by time of day over the context slots (unobserved slots count as 0)."""
    n, C, Tc, H, W = batch.x_context.shape
    spd = batch.slots_per_day
    tod = batch.time_of_day(batch.context_slots())           # (n, Tc)
    out = np.zeros((n, C, spd, H, W))
    cnt = np.zeros((n, spd))
    rows = np.repeat(np.arange(n), Tc)
    np.add.at(out, (rows, slice(None), tod.reshape(-1)), np.asarray(batch.x_context).transpose(0, 2, 1, 3, 4)
              .reshape(n * Tc, C, H, W))
    np.add.at(cnt, (rows, tod.reshape(-1)), 1.0)
    return out / np.maximum(cnt, 1)[:, None, :, None, None]


class HistoricalAverage:
    """Per-user mean by time-of-day slot over the training days (cached per user).

    Uses only slots [0, train_end) of each user's tensor. For B3 it uses the cold-start context
    instead (see BASELINE_NOTES).
    """

    def __init__(self, pop: UserPopulation) -> None:
        self.pop = pop
        self.train_end = pop.train_end
        self._cache: dict[int, np.ndarray] = {}

    def profile(self, user: int) -> np.ndarray:
        """(C, slots_per_day, H, W) float32."""
        p = self._cache.get(user)
        if p is None:
            spd = self.pop.slots_per_day
            d = self.pop.features[user].tensor.dense(0, self.train_end)
            C, T, H, W = d.shape
            p = d.reshape(C, T // spd, spd, H, W).mean(axis=1).astype(np.float32)
            self._cache[user] = p
        return p

    def table(self, batch: TaskBatch) -> np.ndarray:
        """(n, C, spd, H, W) time-of-day table for each window."""
        if batch.task == "B3":
            return _context_tod_mean(batch)
        return np.stack([self.profile(int(u)) for u in batch.users])

    def at(self, table: np.ndarray, batch: TaskBatch, slots: np.ndarray) -> np.ndarray:
        """table (n, C, spd, H, W) at absolute slots (n, T') -> (n, C, T', H, W)."""
        tod = batch.time_of_day(slots)
        n = batch.n
        return table[np.arange(n)[:, None], :, tod].transpose(0, 2, 1, 3, 4)

    def __call__(self, batch: TaskBatch) -> np.ndarray:
        ha = self.at(self.table(batch), batch, batch.target_slots())
        if batch.target_offset == 0:
            ha = np.where(batch.avail, batch.x_context, ha)
        return ha.astype(np.float32)


class SeasonalNaive:
    """Same (c, h, w) one day earlier when observed in the context, else the historical average."""

    def __init__(self, ha: HistoricalAverage) -> None:
        self.ha = ha

    def __call__(self, batch: TaskBatch) -> np.ndarray:
        spd = batch.slots_per_day
        ha = self.ha.at(self.ha.table(batch), batch, batch.target_slots())
        idx = (batch.target_slots() - spd - batch.context_starts[:, None])     # (n, Th) context index
        inside = (idx >= 0) & (idx < batch.Tc)
        idx5 = np.broadcast_to(np.clip(idx, 0, batch.Tc - 1)[:, None, :, None, None],
                               (batch.n, 1, batch.horizon) + batch.avail.shape[3:])
        obs = np.take_along_axis(np.asarray(batch.avail), idx5, axis=2) & inside[:, None, :, None, None]
        pred = np.where(obs, _gather(np.asarray(batch.x_context), idx5), ha)
        if batch.target_offset == 0:
            pred = np.where(batch.avail, batch.x_context, pred)
        return pred.astype(np.float32)


def baseline_models(pop: UserPopulation) -> dict[str, Predictor]:
    """The PROTOCOL B baseline rows for a population with training days (the simulator)."""
    ha = HistoricalAverage(pop)
    return {"all_zero": predict_all_zero, "last_value": predict_last_value, "historical_average": ha,
            "seasonal_naive": SeasonalNaive(ha), "linear_interpolation": predict_linear_interpolation}


def real_baseline_models(pop: UserPopulation | None = None) -> dict[str, Predictor]:
    """Baselines possible on a single day: all_zero, last_value, context_mean."""
    return {"all_zero": predict_all_zero, "last_value": predict_last_value, "context_mean": predict_context_mean}


# ------------------------------------------------------------------------------------------------
# Scoring
# ------------------------------------------------------------------------------------------------
_SUM_KEYS = ("n", "sae", "sse", "n_act", "sae_act", "sse_act", "raw_sae", "raw_sse", "raw_sae_act", "raw_sse_act")


def _group_slices(ch: ChannelLayout) -> dict[str, slice]:
    return {"traffic": ch.traffic, "app": ch.apps, "location": ch.location}


def _decode(group: str, x: np.ndarray) -> np.ndarray | None:
    if group == "traffic":
        return decode_traffic(x)
    if group == "app":
        return decode_app_counts(x)
    return None


def error_sums(pred: np.ndarray, truth: np.ndarray, eval_mask: np.ndarray,
               channels: ChannelLayout) -> dict[str, dict[str, float]]:
    """Per channel group: counts and sums of |e|, e^2 over the eval entries (all / active, raw)."""
    out: dict[str, dict[str, float]] = {}
    for g, sl in _group_slices(channels).items():
        p = np.asarray(pred[:, sl], np.float64)
        y = np.asarray(truth[:, sl], np.float64)
        m = np.broadcast_to(eval_mask, y.shape)
        pv, yv = p[m], y[m]
        act = yv != 0
        e = pv - yv
        s = {"n": float(e.size), "sae": float(np.abs(e).sum()), "sse": float((e * e).sum()),
             "n_act": float(act.sum()), "sae_act": float(np.abs(e[act]).sum()), "sse_act": float((e[act] ** 2).sum())}
        rp = _decode(g, np.clip(pv, *RAW_CLIP))
        if rp is not None:
            re = rp - _decode(g, yv)
            s.update(raw_sae=float(np.abs(re).sum()), raw_sse=float((re * re).sum()),
                     raw_sae_act=float(np.abs(re[act]).sum()), raw_sse_act=float((re[act] ** 2).sum()))
        out[g] = s
    return out


def _finish_errors(sums: Mapping[str, float], group: str) -> dict[str, float | None]:
    def ratio(a: str, n: str, root: bool = False) -> float | None:
        if sums.get(n, 0) == 0 or a not in sums:
            return None
        v = sums[a] / sums[n]
        return float(np.sqrt(v)) if root else float(v)
    m = {"mae": ratio("sae", "n"), "rmse": ratio("sse", "n", True),
         "active_mae": ratio("sae_act", "n_act"), "active_rmse": ratio("sse_act", "n_act", True)}
    if group in ("traffic", "app"):
        m.update(raw_mae=ratio("raw_sae", "n"), raw_rmse=ratio("raw_sse", "n", True),
                 raw_active_mae=ratio("raw_sae_act", "n_act"), raw_active_rmse=ratio("raw_sse_act", "n_act", True))
    return m


def app_engagement(x: np.ndarray, channels: ChannelLayout) -> np.ndarray:
    """(n, C, T, H, W) -> (n, K) records per category over the window (rounded to 1e-3)."""
    a = decode_app_counts(np.clip(np.asarray(x[:, channels.apps], np.float64), *RAW_CLIP))
    return np.round(a.sum(axis=(2, 3, 4)), SCORE_DECIMALS)


def location_engagement(x: np.ndarray, channels: ChannelLayout) -> np.ndarray:
    """(n, C, T, H, W) -> (n, H*W) active slots per layout location (rounded to 1e-3)."""
    loc = np.clip(np.asarray(x[:, channels.location_index], np.float64), 0.0, None)   # (n, T, H, W)
    return np.round(loc.sum(axis=1).reshape(loc.shape[0], -1), SCORE_DECIMALS)


def rank_items(scores: np.ndarray, k: int | None = None) -> np.ndarray:
    """Indices of the positive scores, highest first, ties -> smaller index (at most k)."""
    scores = np.asarray(scores)
    order = np.lexsort((np.arange(len(scores)), -scores))
    order = order[scores[order] > 0]
    return order if k is None else order[:k]


def ranking_scores(pred_scores: np.ndarray, true_scores: np.ndarray, ks: Sequence[int]) -> dict[str, float] | None:
    """Recall/NDCG@k (relevant = true top-k) and MRR@k (relevant = true top-1) for one user; None if no truth."""
    truth = rank_items(true_scores)
    if len(truth) == 0:
        return None
    ranked = rank_items(pred_scores, max(ks))
    out = {}
    for k in ks:
        rel = truth[:k]
        out[f"recall@{k}"] = tm.recall_at_k(ranked, rel, k)
        out[f"ndcg@{k}"] = tm.ndcg_at_k(ranked, rel, k)
        out[f"mrr@{k}"] = tm.mrr_at_k(ranked, truth[:1], k)
    return out


class _Acc:
    """Streaming sums for one (task, model)."""

    def __init__(self, ranking: bool) -> None:
        self.err = {g: dict.fromkeys(_SUM_KEYS, 0.0) for g in GROUPS}
        self.rank = {g: {"n_ranked": 0, "n_skipped_no_target_activity": 0, "sums": {}} for g in ("app", "location")} \
            if ranking else None
        self.n_windows = 0
        self.users: set[int] = set()
        self.seconds = 0.0

    def add(self, batch: TaskBatch, pred: np.ndarray) -> None:
        assert batch.truth is not None
        self.n_windows += batch.n
        self.users.update(batch.users.tolist())
        for g, s in error_sums(pred, batch.truth, batch.eval_mask, batch.channels).items():
            for k, v in s.items():
                self.err[g][k] += v
        if self.rank is not None:
            for g, fn, ks in (("app", app_engagement, APP_KS), ("location", location_engagement, LOC_KS)):
                ps, ts = fn(pred, batch.channels), fn(batch.truth, batch.channels)
                r = self.rank[g]
                for i in range(batch.n):
                    m = ranking_scores(ps[i], ts[i], ks)
                    if m is None:
                        r["n_skipped_no_target_activity"] += 1
                        continue
                    r["n_ranked"] += 1
                    for k, v in m.items():
                        r["sums"][k] = r["sums"].get(k, 0.0) + v

    def result(self) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
        metrics: dict[str, Any] = {g: _finish_errors(self.err[g], g) for g in GROUPS}
        entries = {g: {"all": int(self.err[g]["n"]), "active": int(self.err[g]["n_act"])} for g in GROUPS}
        if self.rank is not None:
            metrics["ranking"] = {}
            for g, r in self.rank.items():
                n = r["n_ranked"]
                metrics["ranking"][g] = {"n_users_ranked": n,
                                         "n_skipped_no_target_activity": r["n_skipped_no_target_activity"],
                                         **{k: (v / n if n else None) for k, v in r["sums"].items()}}
        return metrics, entries


def _check_prediction(name: str, pred: Any, batch: TaskBatch) -> np.ndarray:
    shape = (batch.n, batch.channels.n_channels, batch.horizon) + batch.x_context.shape[3:]
    pred = np.asarray(pred)
    if pred.shape != shape:
        raise ValueError(f"model {name!r} returned shape {pred.shape} for {batch.task}, expected {shape}")
    if not np.isfinite(pred[np.broadcast_to(batch.eval_mask, shape)]).all():
        raise ValueError(f"model {name!r} returned NaN/inf on evaluated entries of {batch.task}")
    return pred


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------
def _window_text(pop: UserPopulation, task: str, split: str) -> dict[str, Any]:
    if task == "B1-real":
        return {"context": "[0, s): every slot of the day before the target (delivered as [s-192, s), slots < 0 "
                           "unobserved)", "horizon": 4,
                "target_starts": f"s = {REAL_TARGET_STARTS[0]}..{REAL_TARGET_STARTS[-1]} step 4 "
                                 f"(08:00..22:00 local), {len(REAL_TARGET_STARTS)} per user",
                "why_not_protocol": "the real sample has 1 day: PROTOCOL B's 2-day context and day splits are impossible"}
    sp = uw.user_splits(pop.T, pop.slots_per_day)[split]
    base = {"split_slots": f"{sp.t0}..{sp.t1 - 1}", "slot_minutes": pop.cfg.slot_minutes}
    if task == "B1":
        return {**base, "context": uw.CONTEXT_SLOTS, "horizon": uw.SHORT_HORIZON, "stride": 4,
                "target_starts": f"{sp.t0}..{sp.t1 - uw.SHORT_HORIZON} step 4"}
    if task == "B2":
        return {**base, "context": uw.CONTEXT_SLOTS, "horizon": pop.slots_per_day, "target": f"{sp.t0}..{sp.t1 - 1}"}
    if task == "B3":
        return {**base, "context": f"{sp.t0 - uw.CONTEXT_SLOTS}..{sp.t0 - 1} cut to the most recent <= "
                                   f"{uw.MAX_ACTIVE_SLOTS} active slots", "horizon": pop.slots_per_day,
                "ranking_ks": {"app": list(APP_KS), "location": list(LOC_KS)},
                "relevance": "Recall/NDCG@k: the true top-k items by target-day engagement (apps: records, "
                             "locations: active slots); MRR@k: the true top-1 item"}
    return {**base, "length": uw.CONTEXT_SLOTS, "span": f"{sp.t1 - uw.CONTEXT_SLOTS}..{sp.t1 - 1}",
            "p_missing": "Uniform(0.70, 0.80) per window over (t, h, w)",
            "evaluated": "hidden coordinates only (all channels)"}


def _resolve_models(models: Any, pop: UserPopulation, default: Callable[[UserPopulation], Mapping[str, Predictor]]
                    ) -> Mapping[str, Predictor]:
    if models is None:
        return default(pop)
    if callable(models) and not isinstance(models, Mapping):
        return models(pop)
    return models


def evaluate_population(pop: UserPopulation, models: Mapping[str, Predictor], *, split: str = "test",
                        tasks: Sequence[str] = TASKS, batch_size: int = 32,
                        model_info: Mapping[str, Mapping[str, Any]] | None = None,
                        command: str | None = None,
                        windows: Mapping[str, Collection[int]] | None = None) -> list[dict[str, Any]]:
    """Score ``models`` on ``tasks`` of a population; one row per (task, model).

    ``windows``: optional per-task window subset, as in :func:`iter_batches` (every model alike)."""
    rows: list[dict[str, Any]] = []
    for task in tasks:
        t0 = time.perf_counter()
        accs = {name: _Acc(ranking=task == "B3") for name in models}
        skipped: set[str] = set()
        mask_seeds: set[int] = set()
        for batch in iter_batches(pop, task, split, batch_size, windows=windows):
            if task == "B4":
                mask_seeds.update((uw.MASK_SEED_BASE + batch.window_index).tolist())
            view = batch.model_view()
            for name, fn in models.items():
                if name in skipped:
                    continue
                t1 = time.perf_counter()
                try:
                    pred = fn(view)
                except NotImplementedError as e:
                    log.info("model %s skipped on %s: %s", name, task, e)
                    skipped.add(name)
                    continue
                accs[name].add(batch, _check_prediction(name, pred, batch))
                accs[name].seconds += time.perf_counter() - t1
        log.info("%s: %.1f s", task, time.perf_counter() - t0)
        seeds: dict[str, Any] = {"model": "n/a"}
        if pop.synthetic:
            seeds["simulator"] = pop.info["simulator"]["seed"]
        seeds["masks"] = (f"{uw.MASK_SEED_BASE} + window index ({', '.join(map(str, sorted(mask_seeds)))})"
                          if task == "B4" else "n/a")
        for name in models:
            if name in skipped or accs[name].n_windows == 0:
                continue
            metrics, entries = accs[name].result()
            row: dict[str, Any] = {
                "dataset": pop.dataset,
                "synthetic": pop.synthetic,
                "protocol": "docs/PROTOCOL.md B",
                "task": REAL_TASK_NAME if task == "B1-real" else TASK_NAMES[task],
                "task_id": "B1" if task == "B1-real" else task,
                "split": split,
                "model": name,
                "window": _window_text(pop, task, split),
                "n_windows": accs[name].n_windows,
                "n_users": len(accs[name].users),
                "n_entries": entries,
                "seeds": dict(seeds),
                "metrics": metrics,
                "scale": SCALE_NOTE,
                "command": command or "library call: umask.bench.accuracy.user.evaluate(...)",
                "predict_seconds": round(accs[name].seconds, 3),
            }
            if pop.synthetic:
                row["simulator"] = {**pop.info["simulator"], "n_users_evaluated": pop.info["n_users_evaluated"],
                                    "left_out_no_training_events": pop.info["left_out_no_training_events"]}
                row["featurize"] = pop.info["featurize"]
            else:
                row["real_sample"] = {k: v for k, v in pop.info.items()}
            if name in BASELINE_NOTES:
                row["notes"] = BASELINE_NOTES[name]
            extra = dict((model_info or {}).get(name, {}))
            if "seeds" in extra:
                row["seeds"] = {**row["seeds"], "model": extra.pop("seeds")}
            row.update(extra)
            rows.append(row)
    return rows


def evaluate(models: Mapping[str, Predictor] | Callable[[UserPopulation], Mapping[str, Predictor]] | None = None,
             *, n_users: int = 300, seed: int = 0, split: str = "test", tasks: Sequence[str] = TASKS,
             batch_size: int = 32, model_info: Mapping[str, Mapping[str, Any]] | None = None,
             command: str | None = None, population: UserPopulation | None = None,
             data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """PROTOCOL B on the SYNTHETIC simulator population (``n_users``, ``seed``); one row per (task, model).

    ``models``: name -> :data:`Predictor`, or a callable population -> such a dict (baselines that
    need the training days, e.g. :func:`baseline_models`), or None for the baselines.
    ``population``: a prebuilt :func:`simulated_population` (then n_users/seed are not used).
    """
    if split not in ("val", "test"):
        raise ValueError("split must be 'val' or 'test' (the profiles and layouts are fit on the train days)")
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise ValueError(f"unknown tasks {bad}; known: {TASKS}")
    pop = population if population is not None else simulated_population(n_users, seed, data_dir=data_dir)
    return evaluate_population(pop, _resolve_models(models, pop, baseline_models), split=split, tasks=tasks,
                               batch_size=batch_size, model_info=model_info, command=command)


def evaluate_real_sample(models: Mapping[str, Predictor] | Callable[[UserPopulation], Mapping[str, Predictor]]
                         | None = None, *, batch_size: int = 32,
                         model_info: Mapping[str, Mapping[str, Any]] | None = None, command: str | None = None,
                         population: UserPopulation | None = None,
                         data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Short-term sanity check on the REAL 6-user one-day sample (see the module docstring)."""
    pop = population if population is not None else real_population(data_dir=data_dir)
    rows = evaluate_population(pop, _resolve_models(models, pop, real_baseline_models), split="day",
                               tasks=("B1-real",), batch_size=batch_size, model_info=model_info, command=command)
    for r in rows:
        r["split"] = f"the sample's only day ({pop.info['day']}), no train/val/test split"
    return rows


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------
def _f(v: Any, fmt: str = ".4f") -> str:
    return "-" if v is None else format(v, fmt)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: one section per (dataset, task), one line per model x channel group (+ B3 ranking)."""
    lines: list[str] = []
    if rows:
        lines.append(f"Scale: {rows[0]['scale']}.")
        lines.append(f"Command: `{rows[0]['command']}`")
        lines.append("")
    sections: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        sections.setdefault((r["dataset"], r["task"]), []).append(r)
    for (dataset, task), rs in sections.items():
        r0 = rs[0]
        if r0.get("synthetic"):
            sim = r0["simulator"]
            who = (f"{dataset}, {r0['n_users']} users ({sim['n_users']} simulated, seed {sim['seed']}, "
                   f"{len(sim['left_out_no_training_events'])} without training-day events left out)")
        else:
            who = f"{dataset}, {r0['n_users']} users"
        lines.append(f"### {task} -- {who}; split: {r0['split']}")
        lines.append("")
        lines.append(f"Windows: {r0['n_windows']}; window: "
                     + "; ".join(f"{k} = {v}" for k, v in r0["window"].items() if k != "relevance")
                     + f"; seeds: {', '.join(f'{k} {v}' for k, v in r0['seeds'].items())}.")
        if "relevance" in r0["window"]:
            lines.append(f"Relevance: {r0['window']['relevance']}.")
        lines.append("")
        lines.append("| model | group | entries (all / active) | MAE | RMSE | active MAE | active RMSE "
                     "| raw MAE | raw RMSE | raw active MAE | raw active RMSE |")
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rs:
            for g in GROUPS:
                m, e = r["metrics"][g], r["n_entries"][g]
                lines.append(f"| {r['model']} | {g} | {e['all']} / {e['active']} | {_f(m['mae'])} | {_f(m['rmse'])} "
                             f"| {_f(m['active_mae'])} | {_f(m['active_rmse'])} | {_f(m.get('raw_mae'), '.4g')} "
                             f"| {_f(m.get('raw_rmse'), '.4g')} | {_f(m.get('raw_active_mae'), '.4g')} "
                             f"| {_f(m.get('raw_active_rmse'), '.4g')} |")
        if "ranking" in r0["metrics"]:
            lines.append("")
            ks = [f"@{k}" for k in APP_KS]
            lines.append("| model | group | users ranked / skipped | " + " | ".join(f"Recall{k}" for k in ks) + " | "
                         + " | ".join(f"NDCG{k}" for k in ks) + " | " + " | ".join(f"MRR{k}" for k in ks) + " |")
            lines.append("|---|---|---:|" + "---:|" * (3 * len(ks)))
            for r in rs:
                for g in ("app", "location"):
                    m = r["metrics"]["ranking"][g]
                    cells = [_f(m.get(f"{name}{k}")) for name in ("recall", "ndcg", "mrr") for k in ks]
                    lines.append(f"| {r['model']} | {g} | {m['n_users_ranked']} / {m['n_skipped_no_target_activity']} | "
                                 + " | ".join(cells) + " |")
        lines.append("")
        for r in rs:
            if r.get("notes"):
                lines.append(f"- {r['model']}: {r['notes']}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: baselines on the SYNTHETIC simulator (B1-B4) and the REAL one-day sample (short-term)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m umask.bench.accuracy.user", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=300, help="simulated users (SYNTHETIC)")
    parser.add_argument("--seed", type=int, default=0, help="simulator seed")
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--tasks", default="B1,B2,B3,B4", help="comma-separated subset of B1,B2,B3,B4")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per batch")
    parser.add_argument("--no-real", action="store_true", help="skip the real one-day sample check")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON rows; the markdown goes next to it (.md)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    command = shlex.join(["python", "-m", "umask.bench.accuracy.user", *argv])
    tasks = tuple(t.strip().upper() for t in args.tasks.split(",") if t.strip())
    if not tasks or not set(tasks) <= set(TASKS):
        parser.error(f"--tasks must be a subset of {','.join(TASKS)}, got {args.tasks!r}")

    t0 = time.perf_counter()
    rows = evaluate(n_users=args.users, seed=args.seed, split=args.split, tasks=tasks, batch_size=args.batch_size,
                    command=command, data_dir=args.data_dir)
    if not args.no_real:
        rows += evaluate_real_sample(batch_size=args.batch_size, command=command, data_dir=args.data_dir)
    elapsed = time.perf_counter() - t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    table = (f"# Per-user baselines (PROTOCOL B)\n\nSYNTHETIC main benchmark (calibrated simulator) + REAL one-day "
             f"sample sanity check. Wall time {elapsed:.1f} s.\n\n" + markdown_table(rows))
    out.with_suffix(".md").write_text(table)
    print(table, end="")
    print(f"\nwrote {out} and {out.with_suffix('.md')} in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
