"""PROTOCOL D data for GTS-LUM: users, windows and the arrays one window gives a model (numpy).

Task (docs/PROTOCOL.md D): at the start of an hour, rank the K app categories by whether the user
opens them in that hour. One window per (user, target hour); the truth is the set of categories with
any record in the hour. Windows whose target hour has no app record have no relevant item (recall is
undefined) and are skipped, for every model alike.

Users and split are protocol B's (`umask.train.data.user_windows.user_splits`): SYNTHETIC simulator
users over 7 days (days 1-5 train, day 6 validation, day 7 test), or the REAL 6-user one-day sample,
where every hour 08:00..22:00 is a test target with the in-day history before it as context (the
sample has no earlier day). Every model sees only events strictly before the target hour; the
training windows of the synthetic users start on day 2 (so each has a day of history).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from umask.runtime.core.catalog import Catalog
from umask.runtime.core.events import EventLog
from umask.runtime.families.gtslum import sequence as sq
from umask.train.data.user_windows import user_splits

REAL_TARGET_HOURS = tuple(range(8, 23))            # the real sample: 08:00 .. 22:00


@dataclass
class Users:
    """Interval-level behaviors of each user of one data set."""

    dataset: str
    synthetic: bool
    behaviors: dict[int, sq.Behaviors]
    start_ts: int                       # local midnight of day 1
    n_days: int
    n_categories: int
    n_places: int                       # P (place types 0..P-1, P = unknown)
    category_names: list[str]
    poi_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)
    events: dict[int, EventLog] = field(default_factory=dict)   # raw events per user (scoring a bundle)


def catalog_maps(catalog: Catalog) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(app ids, their category, station ids, their place type) of a catalog."""
    return (catalog.apps.app_ids, catalog.apps.app_category, catalog.stations.ids,
            sq.place_types(catalog.stations.poi))


def user_behaviors(ev: EventLog, catalog: Catalog) -> sq.Behaviors:
    cat = catalog.apps.category_index(ev.app)
    st = catalog.stations.index_of(ev.bs)
    places = sq.place_types(catalog.stations.poi)
    return sq.behaviors_from_events(ev.ts, cat, places[st], ev.bytes, catalog.stations.poi.shape[1])


def _catalog() -> Catalog:
    from umask.runtime.core.catalog import load_llmapp_catalog
    from umask.train.simulator import DEFAULT_DATA_DIR, TSINGHUA_DIR

    return load_llmapp_catalog(Path(DEFAULT_DATA_DIR) / TSINGHUA_DIR)


def _users(dataset: str, synthetic: bool, events: EventLog, catalog: Catalog, n_days: int,
           info: dict[str, Any]) -> Users:
    events = events.sorted()
    per = {int(u): events.for_user(u) for u in np.unique(events.user)}
    beh = {u: user_behaviors(ev, catalog) for u, ev in per.items()}
    start = int(events.ts.min()) // sq.DAY_SECONDS * sq.DAY_SECONDS
    return Users(dataset, synthetic, beh, start, n_days, catalog.apps.n_categories, catalog.stations.poi.shape[1],
                 list(catalog.apps.category_names), list(catalog.stations.poi_names), info, per)


def synthetic_users(n_users: int, seed: int) -> Users:
    """Protocol B's SYNTHETIC population: the calibrated simulator with `SimulatorConfig(n_users, seed)`
    (the call `umask.bench.accuracy.user_tasks.simulated_population` makes), 7 days from its start date."""
    from umask.train.simulator import SimulatorConfig, simulate

    catalog = _catalog()
    sim = SimulatorConfig(n_users=n_users, seed=seed)
    events, _ = simulate(sim, catalog, None, progress=False)
    users = _users(f"sim {n_users} users seed {seed}", True, events, catalog, sim.days,
                   {"simulator": {"n_users": n_users, "seed": seed, "days": sim.days}})
    users.start_ts = int(sim.start_ts)
    return users


def real_users() -> Users:
    """The REAL 6-user one-day sample (data/tsinghua_app_usage, LLMApp id space)."""
    from umask.train.simulator import load_real_sample

    return _users("tsinghua sample 6 users 1 day", False, load_real_sample(None), _catalog(), 1,
                  {"source": "data/tsinghua_app_usage/app_usage_trace_sample_llmapp.csv.gz"})


# ------------------------------------------------------------------------------------------------
# Windows
# ------------------------------------------------------------------------------------------------
def target_times(users: Users, split: str) -> list[int]:
    """Target hour starts (local seconds) of ``split``: synthetic "train" = days 2-5, "val" = day 6,
    "test" = day 7; the real sample: "test" = 08:00..22:00 of its day."""
    if not users.synthetic:
        if split != "test":
            return []
        return [users.start_ts + h * 3600 for h in REAL_TARGET_HOURS]
    sp = user_splits(users.n_days * sq.INTERVALS_PER_DAY, sq.INTERVALS_PER_DAY)[split]
    t0 = max(sp.t0, sq.INTERVALS_PER_DAY)          # training targets from day 2 on
    return [users.start_ts + t * sq.INTERVAL_SECONDS for t in range(t0, sp.t1, 4)]


@dataclass
class Window:
    user: int
    target_ts: int
    truth: np.ndarray                   # (K,) bool categories opened in the target hour


def windows(users: Users, split: str) -> list[Window]:
    out = []
    for u, b in users.behaviors.items():
        for t in target_times(users, split):
            hour = b.between(t, t + 3600)
            if not len(hour):
                continue
            truth = np.zeros(users.n_categories, bool)
            truth[hour.category] = True
            out.append(Window(u, t, truth))
    return out


@dataclass
class Inputs:
    """Stacked model inputs of n windows (every array from the history before each target)."""

    types: np.ndarray        # (n, L) int64
    index: np.ndarray        # (n, L) int64
    time_id: np.ndarray      # (n, L) int64
    beh_category: np.ndarray  # (n, Nb) int64
    beh_place: np.ndarray    # (n, Nb) int64
    beh_valid: np.ndarray    # (n, Nb) bool
    graph: np.ndarray        # (n, 3E) float32 user app-place graph summary
    table: np.ndarray        # (n, K + 8) float32 attribute table
    target_hist: np.ndarray  # (n, K) float32 category shares at the target's hour of day
    hour_hist: np.ndarray    # (n, 24, K) float32 (baselines)
    truth: np.ndarray        # (n, K) bool
    users: np.ndarray        # (n,) int64
    target_ts: np.ndarray    # (n,) int64

    def __len__(self) -> int:
        return len(self.types)

    def take(self, idx: np.ndarray) -> Inputs:
        return Inputs(**{k: v[idx] for k, v in self.__dict__.items()})


INPUT_KEYS: tuple[str, ...] = ("max_intervals", "per_interval", "timestamps", "target", "target_hist_hours")


def input_kw(cfg: Any) -> dict[str, Any]:
    """The `build_inputs` keywords a model needs, from its config (a GTSLUMConfig or config.json's "model"
    dict; runs saved before ``target_hist_hours`` existed read the raw same-hour shares, 0)."""
    d = cfg if isinstance(cfg, Mapping) else cfg.to_dict()
    return {k: d.get(k, 0.0) if k == "target_hist_hours" else d[k] for k in INPUT_KEYS}


def window_inputs(b: sq.Behaviors, target_ts: int, node_emb: np.ndarray, n_categories: int, n_places: int, *,
                  max_intervals: int, per_interval: int, timestamps: str, target: str,
                  target_hist_hours: float = 0.0) -> dict[str, np.ndarray]:
    """The arrays of one window (the runtime session builds the same with the same functions)."""
    hist = b.before(target_ts)
    seq = sq.layout(hist, target_ts, max_intervals=max_intervals, per_interval=per_interval,
                    timestamps=timestamps, target=target)
    hh = sq.hour_histogram(hist, n_categories)
    return {"types": seq.types, "index": seq.index, "time_id": seq.time_id, "beh_category": seq.beh_category,
            "beh_place": seq.beh_place, "beh_valid": seq.beh_valid,
            "graph": sq.graph_summary(hist, node_emb, n_categories),
            "table": sq.table_attributes(hist, n_categories, n_places),
            "target_hist": sq.target_shares(hh, target_ts, target_hist_hours), "hour_hist": hh}


def build_inputs(users: Users, wins: list[Window], node_emb: np.ndarray, *, max_intervals: int, per_interval: int,
                 timestamps: str = "full", target: str = "front", target_hist_hours: float = 0.0) -> Inputs:
    rows = [window_inputs(users.behaviors[w.user], w.target_ts, node_emb, users.n_categories, users.n_places,
                          max_intervals=max_intervals, per_interval=per_interval, timestamps=timestamps,
                          target=target, target_hist_hours=target_hist_hours) for w in wins]
    st = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    return Inputs(**st, truth=np.stack([w.truth for w in wins]), users=np.array([w.user for w in wins], np.int64),
                  target_ts=np.array([w.target_ts for w in wins], np.int64))


def training_graph(users: Users) -> np.ndarray:
    """App-place edge weights of the training period (synthetic: days 1-5; real: not used for fitting)."""
    from umask.train.models.gtslum.encoders import app_place_graph

    end = users.start_ts + (users.n_days - 2) * sq.DAY_SECONDS
    cats = np.concatenate([b.before(end).category for b in users.behaviors.values()])
    places = np.concatenate([b.before(end).place for b in users.behaviors.values()])
    return app_place_graph(cats, places, users.n_categories, users.n_places)


def popularity(users: Users) -> np.ndarray:
    """(K,) share of active intervals per category over every user's training period (the popularity baseline)."""
    end = users.start_ts + (users.n_days - 2) * sq.DAY_SECONDS if users.synthetic else None
    cats = np.concatenate([(b.before(end) if end else b).category for b in users.behaviors.values()])
    c = np.bincount(cats, minlength=users.n_categories).astype(np.float64)
    return c / max(c.sum(), 1.0)


__all__ = ["Users", "Window", "Inputs", "INPUT_KEYS", "input_kw", "target_times", "windows", "window_inputs",
           "build_inputs", "training_graph", "popularity", "catalog_maps", "user_behaviors", "synthetic_users", "real_users", "REAL_TARGET_HOURS"]
