"""PROTOCOL B harness, part 1: the evaluated populations (simulator, real sample), the task windows
and `TaskBatch` (see ``benchmarks/accuracy/user.py`` for the protocol and the command line).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from umask.runtime.core.catalog import Catalog, load_llmapp_catalog
from umask.runtime.core.events import EventLog
from umask.runtime.core.featurize import (
    DAY_SECONDS,
    ChannelLayout,
    FeatureConfig,
    ProfileStats,
    UserFeatures,
    featurize_population,
    profile_statistics,
)
from umask.runtime.core.tessellation import station_cells
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
TASK_OF: dict[str, str] = {"B1": "short_term", "B2": "long_term", "B3": "cold_start", "B4": "imputation"}   # the model task
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
        return profile_statistics(ev.take(keep), self.pop.catalog, f.layout, self.pop.cfg, cells=self._cells,
                                  absent=f.tensor.absent)


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


