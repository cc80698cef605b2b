"""The simulated world (stations, anchor pools, archetype rhythms, volume scaling, the category-share
correction) and `simulate`, which runs the population.

Part of `umask.train.simulator`. ``python -m umask.train.simulator validate --users 200`` runs it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from umask.runtime.core.catalog import Catalog, load_llmapp_catalog
from umask.runtime.core.errors import InputError
from umask.runtime.core.events import EventLog
from umask.train.simulator.agents import _draw_prefs, _User
from umask.train.simulator.calibration import Calibration, _mean_one, fit_calibration
from umask.train.simulator.config import (
    ANCHOR_POOL_QUANTILE,
    ARCHETYPES,
    CALIBRATION_SEED,
    DEFAULT_MIX,
    HOME_POI,
    KIND_CATEGORY_LIFT,
    KIND_NAMES,
    LEISURE_POI,
    N_SERVING,
    PILOT_CONTEXTS,
    PILOT_USERS,
    POI_SMOOTHING,
    SLOT_S,
    SLOTS_PER_DAY,
    USER_ID_BASE,
    WINDOW_S,
    WORK_POI,
    Archetype,
    SimulatorConfig,
    _paths,
)

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# The world: stations, anchor pools, archetype rhythms, volume scaling
# ------------------------------------------------------------------------------------------------
def _poi_lift(poi: np.ndarray, cols: Sequence[int]) -> np.ndarray:
    city = poi.sum(axis=0) / max(poi.sum(), 1.0)
    tot = poi.sum(axis=1)
    share = (poi[:, list(cols)].sum(axis=1) + POI_SMOOTHING * city[list(cols)].sum()) / (tot + POI_SMOOTHING)
    return share / max(city[list(cols)].sum(), 1e-12)


def _archetype_rhythm(arch: Archetype, base: np.ndarray) -> np.ndarray:
    per_h = SLOTS_PER_DAY // 24
    r = np.roll(base, round(arch.rhythm_shift_h * per_h))
    hours = (np.arange(SLOTS_PER_DAY) + 0.5) / per_h
    for a, b, f in arch.rate_windows:
        inside = ((hours >= a) & (hours < b)) | ((hours + 24 >= a) & (hours + 24 < b))
        r = r * np.where(inside, f, 1.0)
    return r / r.sum()


class _World:
    """Everything shared by all simulated users (built once per `simulate` call)."""

    def __init__(self, catalog: Catalog, cal: Calibration, config: SimulatorConfig) -> None:
        if catalog.id_space != "llmapp" or not catalog.stations.has_coordinates:
            raise InputError("the simulator needs the LLMApp catalog (stations with coordinates)")
        self.catalog, self.cal, self.config = catalog, cal, config
        st = catalog.stations
        lat0 = float(np.nanmean(st.lat))
        self.xy = np.stack([(st.lon - np.nanmean(st.lon)) * 111.32 * math.cos(math.radians(lat0)),
                            (st.lat - lat0) * 110.57], axis=1)
        poi = st.poi.astype(np.float64)
        names = list(st.poi_names)
        col = {n: i for i, n in enumerate(names)}

        def cols(want: Sequence[str]) -> list[int]:
            got = [col[w] for w in want if w in col]
            if not got:
                raise InputError(f"station table lacks POI columns {list(want)}")
            return got

        tot = poi.sum(axis=1)
        ok = tot >= 3
        self.poi_total = tot

        def pool(want: Sequence[str], q: float = ANCHOR_POOL_QUANTILE) -> np.ndarray:
            lift = _poi_lift(poi, cols(want))
            thr = np.quantile(lift[ok], q)
            return np.flatnonzero(ok & (lift >= thr))

        self.home_pool, self.work_pool, self.leisure_pool = pool(HOME_POI), pool(WORK_POI), pool(LEISURE_POI)
        self.home_lift, self.work_lift = _poi_lift(poi, cols(HOME_POI)), _poi_lift(poi, cols(WORK_POI))
        self.leisure_lift = _poi_lift(poi, cols(LEISURE_POI))
        self._nn: dict[int, np.ndarray] = {}
        self.grid = _Grid(self.xy, 1.0)
        k_n = catalog.apps.n_categories
        # apps per category, by id (Zipf popularity prior by id rank within the category)
        self.cat_apps: list[np.ndarray] = [catalog.apps.app_ids[catalog.apps.app_category == k] for k in range(k_n)]
        self.max_apps = max(1, max(len(a) for a in self.cat_apps))
        self.app_table = np.zeros((k_n, self.max_apps), np.int64)
        for k, a in enumerate(self.cat_apps):
            if len(a):
                self.app_table[k, :len(a)] = a
                self.app_table[k, len(a):] = a[-1]
        self.n_apps = np.array([len(a) for a in self.cat_apps])
        # category lifts by place kind (assumption), mean one under the population shares
        cname = {n: i for i, n in enumerate(cal.category_names)}
        kl = np.ones((len(KIND_NAMES), k_n))
        for kind, rules in KIND_CATEGORY_LIFT.items():
            for cat, f in rules.items():
                if cat in cname:
                    kl[KIND_NAMES.index(kind), cname[cat]] = f
        self.kind_lift = _mean_one(kl, cal.pop_shares)
        # archetype rhythms and per-archetype category bases (population-corrected, see below)
        self.rhythm = {a: _archetype_rhythm(arch, cal.rhythm144) for a, arch in ARCHETYPES.items()}
        lo, hi = WINDOW_S[0] // SLOT_S, WINDOW_S[1] // SLOT_S
        wmass = {a: float(r[lo:hi].sum()) for a, r in self.rhythm.items()}
        self.cat_base: dict[str, np.ndarray] = {}
        raw: dict[str, np.ndarray] = {}
        for a, arch in ARCHETYPES.items():
            b = np.where(cal.simulable, cal.pop_shares, 0.0) ** arch.pref_temperature
            tilt = np.ones(k_n)
            for cat, f in arch.category_tilt.items():
                if cat in cname:
                    tilt[cname[cat]] = f
            raw[a] = b * tilt / (b * tilt).sum()
        # volume: expected weekday records in the window of the default population = real mean
        rec_per_ep = float(cal.sessions_per_episode.mean() * cal.records_per_session.mean())
        denom = sum(DEFAULT_MIX[a] * ARCHETYPES[a].activity * ARCHETYPES[a].active_day_prob * wmass[a]
                    for a in ARCHETYPES) / sum(DEFAULT_MIX.values())
        self.base_episodes_per_day = cal.target_window_records / rec_per_ep / denom
        self.cat_base = raw
        self._correct_category_base(raw)
        log.info("world: %d stations, pools home/work/leisure = %d/%d/%d; %.1f episodes per "
                 "day at activity 1", len(self.xy), len(self.home_pool), len(self.work_pool),
                 len(self.leisure_pool), self.base_episodes_per_day)

    def _correct_category_base(self, raw: dict[str, np.ndarray]) -> None:
        """Make the activity-weighted default population reproduce ``pop_shares``.

        Personal Dirichlet draws and the context lifts (place kind, station place type, time of day)
        move the realized category shares away from the archetype bases. A small pilot population
        (`PILOT_USERS` per archetype, fixed seed) gives each archetype's real distribution of session
        contexts; a Monte-Carlo fixed point then rescales the bases by population / realized."""
        cal = self.cal
        k_n = len(cal.pop_shares)
        wts = {a: DEFAULT_MIX[a] * ARCHETYPES[a].activity * ARCHETYPES[a].active_day_prob for a in ARCHETYPES}
        mc = np.random.default_rng(CALIBRATION_SEED)
        ctx: dict[str, np.ndarray] = {}
        for a, arch in ARCHETYPES.items():
            parts = []
            for j in range(PILOT_USERS):
                u = _User(-1, arch, self, np.random.default_rng([CALIBRATION_SEED, j]))
                u.simulate(7, 2, contexts_only=True)
                parts.append(u.contexts)
            kd, pt, hb = (np.concatenate([p[i] for p in parts]) for i in range(3))
            if len(kd) == 0:
                ctx[a] = np.ones((1, k_n))
                continue
            pick = mc.integers(0, len(kd), PILOT_CONTEXTS)
            ctx[a] = self.kind_lift[kd[pick]] * cal.place_lift[pt[pick]] * cal.time_lift[hb[pick]]
        corr = np.ones(k_n)
        base: dict[str, np.ndarray] = {}
        for _ in range(4):
            mix = np.zeros(k_n)
            for a, arch in ARCHETYPES.items():
                v = raw[a] * corr
                base[a] = v / v.sum()
                p = _draw_prefs(base[a], arch.pref_concentration, mc, len(ctx[a])) * ctx[a]
                mix += wts[a] * (p / p.sum(axis=1, keepdims=True)).mean(axis=0)
            mix /= sum(wts.values())
            corr *= np.where(mix > 0, cal.pop_shares / np.maximum(mix, 1e-12), 0.0)
        for a in ARCHETYPES:
            v = raw[a] * corr
            base[a] = v / v.sum()
        self.cat_base = base

    # -- geometry --------------------------------------------------------------------------------
    def dist_from(self, row: int) -> np.ndarray:
        return np.hypot(*(self.xy - self.xy[row]).T)

    def serving(self, row: int) -> np.ndarray:
        """The N_SERVING nearest stations of a station (itself first)."""
        got = self._nn.get(row)
        if got is None:
            cand = self.grid.candidates(self.xy[row][None, :])[0]
            cand = cand[cand >= 0]
            d = np.hypot(*(self.xy[cand] - self.xy[row]).T)
            d[cand == row] = -1.0
            if len(cand) > N_SERVING and np.sort(d)[N_SERVING - 1] <= self.grid.cell:
                got = cand[np.argsort(d, kind="stable")[:N_SERVING]]
            else:  # sparse area: exact search over all stations
                d = self.dist_from(row)
                d[row] = -1.0
                got = np.argsort(d, kind="stable")[:N_SERVING]
            self._nn[row] = got
        return got

    def nearest(self, pts: np.ndarray) -> np.ndarray:
        """Nearest station row per point (exact: grid neighbourhood, brute force where sparse)."""
        cand = self.grid.candidates(pts)
        d = ((self.xy[np.maximum(cand, 0)] - pts[:, None, :]) ** 2).sum(axis=2)
        d[cand < 0] = np.inf
        best = d.argmin(axis=1)
        out = cand[np.arange(len(pts)), best]
        far = d[np.arange(len(pts)), best] > self.grid.cell ** 2
        if far.any():
            dd = ((self.xy[None, :, :] - pts[far][:, None, :]) ** 2).sum(axis=2)
            out[far] = dd.argmin(axis=1)
        return out


class _Grid:
    """Square cells of ``cell`` km; per cell, the stations of its 3x3 neighbourhood (padded with -1).
    A station within ``cell`` km of a point is always among the point's candidates."""

    def __init__(self, xy: np.ndarray, cell: float = 1.0) -> None:
        self.cell = cell
        self.lo = xy.min(axis=0)
        ij = np.floor((xy - self.lo) / cell).astype(np.int64)
        self.shape = ij.max(axis=0) + 1
        nx, ny = int(self.shape[0]), int(self.shape[1])
        tgt, sta = [], []
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                ti, tj = ij[:, 0] + di, ij[:, 1] + dj
                ok = (ti >= 0) & (ti < nx) & (tj >= 0) & (tj < ny)
                tgt.append(ti[ok] * ny + tj[ok])
                sta.append(np.flatnonzero(ok))
        t, s_ = np.concatenate(tgt), np.concatenate(sta)
        order = np.lexsort((s_, t))
        t, s_ = t[order], s_[order]
        counts = np.bincount(t, minlength=nx * ny)
        start = np.cumsum(counts) - counts
        rank = np.arange(len(t)) - start[t]
        self.table = np.full((nx * ny, max(1, int(counts.max()))), -1, np.int32)
        self.table[t, rank] = s_

    def candidates(self, pts: np.ndarray) -> np.ndarray:
        ij = np.floor((pts - self.lo) / self.cell).astype(np.int64)
        ij = np.clip(ij, 0, self.shape - 1)
        return self.table[ij[:, 0] * int(self.shape[1]) + ij[:, 1]]



def _allocate(mix: Mapping[str, float], n: int, rng: np.random.Generator) -> list[str]:
    """Largest-remainder quotas of the mix, shuffled."""
    names = [k for k in ARCHETYPES if mix.get(k, 0) > 0]
    w = np.array([mix[k] for k in names], float)
    exact = w / w.sum() * n
    q = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - q), kind="stable")[: n - q.sum()]:
        q[i] += 1
    out = [nm for nm, c in zip(names, q) for _ in range(c)]
    return [out[i] for i in rng.permutation(n)]


def _progress(it: Iterable[Any], total: int, enabled: bool) -> Iterable[Any]:
    if not enabled:
        return it
    try:
        from tqdm import tqdm
    except ImportError:  # degrade gracefully
        return it
    return tqdm(it, total=total, desc="simulating users (synthetic)", unit="user")


def simulate(config: SimulatorConfig, catalog: Catalog | None = None, data_dir: str | Path | None = None,
             *, calibration: Calibration | None = None, progress: bool | None = None
             ) -> tuple[EventLog, list[dict[str, Any]]]:
    """Simulate ``config.n_users`` users over ``config.days`` days (deterministic given the seed).

    Returns the SYNTHETIC events (LLMApp id space; user ids from `USER_ID_BASE`) sorted by
    (user, time), and per-user metadata (archetype, routine, anchors with real station ids, ...)."""
    t0 = time.perf_counter()
    if catalog is None:
        catalog = load_llmapp_catalog(_paths(data_dir)[0])
    cal = calibration if calibration is not None else fit_calibration(catalog, data_dir)
    world = _World(catalog, cal, config)
    ss = np.random.SeedSequence(config.seed)
    user_seeds = ss.spawn(config.n_users)
    archs = _allocate(config.archetype_mix, config.n_users, np.random.default_rng(ss.spawn(1)[0]))
    dow0 = date.fromisoformat(config.start_date).weekday()
    start = config.start_ts
    cols: list[list[np.ndarray]] = [[], [], [], [], []]
    meta: list[dict[str, Any]] = []
    show = config.n_users >= 200 if progress is None else progress
    for i in _progress(range(config.n_users), config.n_users, show):
        uid = USER_ID_BASE + i
        user = _User(uid, ARCHETYPES[archs[i]], world, np.random.default_rng(user_seeds[i]))
        t, bs, app, nb = user.simulate(config.days, dow0)
        cols[0].append(np.full(len(t), uid, np.int64))
        cols[1].append(t + start)
        cols[2].append(bs)
        cols[3].append(app)
        cols[4].append(nb)
        meta.append(user.meta())
    ev = EventLog(*(np.concatenate(c) if c else np.zeros(0, np.int64) for c in cols),
                  source=f"synthetic:simulator(seed={config.seed})")
    log.info("simulated %d SYNTHETIC users x %d days: %d records in %.1f s", config.n_users, config.days,
             len(ev), time.perf_counter() - t0)
    return ev, meta
