"""One simulated user: anchors among real stations, a week of stays, usage episodes -> sessions ->
records with the real burst structure, app categories and bytes.

Part of `umask.train.simulator` (`_World` in ``world.py`` holds what all users share).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from umask.train.simulator.calibration import Calibration
from umask.train.simulator.config import (
    ANCHOR_LIFT_POWER,
    EPISODE_GAP_S,
    EXPLORE,
    HOME,
    HOUR_BIN,
    KIND_RATE,
    LEISURE,
    N_SERVING,
    PREF_FLOOR,
    SERVING_ALPHA,
    SLOT_S,
    SLOTS_PER_DAY,
    TRANSIT,
    TRANSIT_SERVING_ALPHA,
    TRAVEL_FIXED_MIN,
    TRAVEL_KMH,
    WAYPOINT_KM,
    WORK,
    Archetype,
)

if TYPE_CHECKING:
    from umask.train.simulator.world import _World

# ------------------------------------------------------------------------------------------------
# One user
# ------------------------------------------------------------------------------------------------
class _User:
    def __init__(self, uid: int, arch: Archetype, world: _World, rng: np.random.Generator) -> None:
        self.uid, self.arch, self.world, self.rng = uid, arch, world, rng
        # per session of the last `simulate`: (place kind, station place type, time-of-day bin)
        self.contexts: tuple[np.ndarray, np.ndarray, np.ndarray] | tuple[()] = ()
        cal = world.cal
        self.pattern = arch.pattern if "|" not in arch.pattern else str(rng.choice(arch.pattern.split("|")))
        self.activity = float(rng.lognormal(-0.18, 0.6))       # mean 1
        # places: (kind, primary station row, serving rows, cumulative serving weights)
        self.kind: list[int] = []
        self.rows: list[int] = []
        self.serv: list[np.ndarray] = []
        self.cumw: list[np.ndarray] = []
        self._transit: dict[int, int] = {}
        self._routes: dict[tuple[int, int], list[int]] = {}
        home_row = self._choose(world.home_pool, world.home_lift[world.home_pool] ** ANCHOR_LIFT_POWER)
        self.home = self._add_place(HOME, home_row)
        self.d_home = world.dist_from(home_row)
        self.work: int | None = None
        self.commute_km = 0.0
        has_work = self.pattern in ("commute", "explore", "night") and rng.random() < arch.has_work_prob
        if has_work:
            d = float(np.clip(rng.lognormal(math.log(max(arch.commute_km, 1.0)), 0.6), 1.5, 22.0))
            dd = self.d_home[world.work_pool]
            cand = world.work_pool[(dd >= 0.75 * d) & (dd <= 1.3 * d)]
            row = self._choose(cand, world.work_lift[cand] ** ANCHOR_LIFT_POWER) if len(cand) else int(world.work_pool[np.argmin(np.abs(dd - d))])
            self.work = self._add_place(WORK, row)
            self.commute_km = float(self.d_home[row])
        self.leisure: list[int] = []
        self.leisure_near_work: int | None = None
        for j in range(arch.n_leisure):
            near_work = self.work is not None and j == 1 and self.pattern == "commute"
            d = world.dist_from(self.rows[self.work]) if near_work else self.d_home
            self.leisure.append(self._add_place(LEISURE, self._pick_near(world.leisure_pool, d, arch.leisure_radius_km)))
            if near_work:
                self.leisure_near_work = self.leisure[-1]
        self.n_anchor_places = len(self.rows)
        # preferences
        base = world.cat_base[arch.name]
        self.pref = _draw_prefs(base, arch.pref_concentration, rng, 1)[0]
        k_n = len(base)
        self.app_cum = np.ones((k_n, world.max_apps))
        self.fav_apps: dict[str, list[int]] = {}
        for k in range(k_n):
            n = world.n_apps[k]
            if n == 0:
                continue
            prior = 1.0 / np.arange(1, n + 1)
            w = rng.dirichlet(arch.app_concentration * prior / prior.sum() * n ** 0.5 + 1e-3)
            c = np.cumsum(w)
            c[-1] = 1.0
            self.app_cum[k, :n] = c
            if self.pref[k] >= 0.05:
                self.fav_apps[cal.category_names[k]] = world.cat_apps[k][np.argsort(-w)[:3]].tolist()
        self.rhythm = world.rhythm[arch.name]

    # -- places ----------------------------------------------------------------------------------
    def _add_place(self, kind: int, row: int) -> int:
        serv = self.world.serving(row)
        w = self.rng.dirichlet(TRANSIT_SERVING_ALPHA if kind == TRANSIT else SERVING_ALPHA)
        if kind != TRANSIT:  # users linger where real users are seen more often (type attractiveness)
            cal = self.world.cal
            w = w * cal.type_attract[cal.place_types[serv]]
            w = w / w.sum()
        self.kind.append(kind)
        self.rows.append(row)
        self.serv.append(serv)
        c = np.cumsum(w)
        c[-1] = 1.0
        self.cumw.append(c)
        return len(self.rows) - 1

    def _pick_near(self, pool: np.ndarray, dist: np.ndarray, radius: float) -> int:
        dd = dist[pool]
        cand = pool[(dd <= radius) & (dd > 0.05)]
        if len(cand) == 0:
            return int(pool[np.argsort(dd)[min(1, len(pool) - 1)]])
        return self._choose(cand, self.world.leisure_lift[cand] ** ANCHOR_LIFT_POWER)

    def _choose(self, cand: np.ndarray, weight: np.ndarray | None = None) -> int:
        """A station among candidates, weighted by the real place-type attractiveness."""
        cal = self.world.cal
        p = cal.type_attract[cal.place_types[cand]] * (1.0 if weight is None else weight)
        return int(self.rng.choice(cand, p=p / p.sum()))

    def _explore_place(self) -> int:
        w = self.world
        r = self.arch.explore_radius_km
        cand = np.flatnonzero((self.d_home > 0.5) & (self.d_home <= r) & (w.poi_total > 0))
        if len(cand) == 0:
            return self.leisure[0] if self.leisure else self.home
        return self._add_place(EXPLORE, self._choose(cand, np.sqrt(w.poi_total[cand] * w.leisure_lift[cand])))

    def _outing(self, near_work: bool = False) -> int:
        rng = self.rng
        if rng.random() < self.arch.explore_prob or not self.leisure:
            return self._explore_place()
        if near_work and self.leisure_near_work is not None:
            return self.leisure_near_work
        w = 1.0 / np.arange(1, len(self.leisure) + 1)
        return self.leisure[int(rng.choice(len(self.leisure), p=w / w.sum()))]

    def route(self, a: int, b: int) -> list[int]:
        """Transit places (stations nearest to the straight line) between places a and b."""
        key = (self.rows[a], self.rows[b])
        got = self._routes.get(key)
        if got is not None:
            return got
        pa, pb = self.world.xy[key[0]], self.world.xy[key[1]]
        dist = float(np.hypot(*(pb - pa)))
        n = int(dist // WAYPOINT_KM)
        places: list[int] = []
        if n >= 1:
            f = np.arange(1, n + 1) / (n + 1)
            rows = self.world.nearest(pa[None, :] + f[:, None] * (pb - pa)[None, :])
            prev = key[0]
            for r in rows.tolist():
                if r in (prev, key[1]):
                    continue
                prev = r
                if r not in self._transit:
                    self._transit[r] = self._add_place(TRANSIT, r)
                places.append(self._transit[r])
        self._routes[key] = places
        return places

    # -- routine ---------------------------------------------------------------------------------
    def _n(self, mean: float, sd: float) -> float:
        return float(mean + sd * self.rng.standard_normal())

    def plan_day(self, dow: int) -> list[tuple[int, float]]:
        """Stays of one day as (place, end hour relative to the day's midnight; may exceed 24)."""
        s, rng, weekend = self.arch.schedule, self.rng, dow >= 5
        stays: list[tuple[int, float]] = []
        p = self.pattern
        if p in ("commute", "explore") and not weekend and self.work is not None:
            stays.append((self.home, self._n(s["leave"], s["leave_sd"])))
            if rng.random() < s["lunch_prob"]:
                t = self._n(12.1, 0.25)
                stays += [(self.work, t), (self._outing(near_work=True), t + self._n(1.0, 0.2))]
            back = self._n(s["back"], s["back_sd"])
            stays.append((self.work, back))
            if rng.random() < s["evening_prob"]:
                t = back + 0.6
                for _ in range(int(rng.integers(1, int(s["evening_stops"]) + 1))):
                    t += max(0.5, self._n(1.5, 0.5))
                    stays.append((self._outing(), t))
                    t += 0.3
            stays.append((self.home, 24.0))
        elif p == "night":
            stays.append((self.home, self._n(s["wake"], s["wake_sd"])))
            if not weekend and self.work is not None:
                stays.append((self.work, self._n(s["shift_end"], s["shift_end_sd"])))
            if rng.random() < s["weekend_night_out_prob" if weekend else "night_out_prob"]:
                start = self._n(s["night_out_start"], 0.7)
                stays.append((self.home, start))
                stays.append((self._outing(), self._n(s["night_out_end"], s["night_out_end_sd"])))
            stays.append((self.home, 24.0))
        elif p == "home" and not weekend:
            if rng.random() < s.get("errand_prob", 0.0):
                t = self._n(s["errand_at"], s["errand_sd"])
                stays += [(self.home, t), (self._outing(), t + max(0.3, self._n(s["errand_h"], 0.4)))]
            stays.append((self.home, 24.0))
        else:  # weekends (and weekday without work): outings from home
            n_out = int(rng.poisson(s.get("weekend_outings", 1.0)))
            t = self._n(s.get("weekend_out", 11.0), s.get("weekend_out_sd", 1.5))
            for _ in range(n_out):
                stays.append((self.home, t))
                t += max(0.5, self._n(s.get("outing_h", 2.5), 0.8))
                stays.append((self._outing(), t))
                t += max(0.5, self._n(1.5, 0.7))
            stays.append((self.home, 24.0))
        # enforce increasing end times (noise may reorder them), keep >= 15 minutes per stay
        out: list[tuple[int, float]] = []
        last = 0.0
        for place, end in stays:
            end = max(end, last + 0.25)
            out.append((place, end))
            last = end
        return out

    def week_segments(self, days: int, dow0: int) -> tuple[np.ndarray, np.ndarray]:
        """(segment start in seconds from the first midnight, place index) for the whole period."""
        stays: list[tuple[int, float]] = []
        for d in range(days):
            stays += [(p, d * 24.0 + e) for p, e in self.plan_day((dow0 + d) % 7)]
        starts: list[float] = [0.0]
        places: list[int] = [self.home]
        cursor = 0.0
        for place, end in stays:
            if end <= cursor + 0.1:
                continue
            if place != places[-1]:
                route = self.route(places[-1], place)
                dist = float(np.hypot(*(self.world.xy[self.rows[place]] - self.world.xy[self.rows[places[-1]]])))
                dur = (TRAVEL_FIXED_MIN + 60.0 * dist / TRAVEL_KMH) / 60.0 * float(self.rng.lognormal(0, 0.15))
                dur = min(dur, max(end - cursor - 0.25, 0.05))
                for j, wp in enumerate(route):
                    starts.append(cursor + j * dur / len(route))
                    places.append(wp)
                cursor += dur if route else 0.0
                starts.append(cursor)
                places.append(place)
            cursor = end
        return np.array(starts) * 3600.0, np.array(places, np.int64)

    # -- events ----------------------------------------------------------------------------------
    def simulate(self, days: int, dow0: int, *, contexts_only: bool = False) -> tuple[np.ndarray, ...]:
        w, cal, rng, arch = self.world, self.world.cal, self.rng, self.arch
        seg_t, seg_p = self.week_segments(days, dow0)
        kind = np.array(self.kind)
        serv = np.stack(self.serv)
        cumw = np.stack(self.cumw)
        n_slots = days * SLOTS_PER_DAY
        slot_t = np.arange(n_slots) * float(SLOT_S)
        si = np.clip(np.searchsorted(seg_t, slot_t + SLOT_S / 2, side="right") - 1, 0, None)
        shape = (np.tile(self.rhythm, days) * KIND_RATE[kind[seg_p[si]]]).reshape(days, SLOTS_PER_DAY)
        shape /= shape.sum(axis=1, keepdims=True)
        dows = (dow0 + np.arange(days)) % 7
        day_eps = (w.base_episodes_per_day * arch.activity * self.activity
                   * np.where(dows >= 5, arch.weekend_activity, 1.0)
                   * (rng.random(days) < arch.active_day_prob)
                   * rng.lognormal(-0.03125, 0.25, days))
        counts = rng.poisson((shape * day_eps[:, None]).ravel())
        ep_t = np.repeat(slot_t, counts) + rng.random(int(counts.sum())) * SLOT_S
        n_ep = len(ep_t)
        if n_ep == 0:
            z = np.zeros(0, np.int64)
            self.contexts = (z, z, z)
            return z, z, z, z
        # episodes -> sessions -> records, with the real burst structure
        def boot(arr: np.ndarray, n: int) -> np.ndarray:  # resample the real empirical distribution
            return arr[rng.integers(0, len(arr), n)]

        nsess = boot(cal.sessions_per_episode, n_ep)
        n_s = int(nsess.sum())
        sess_ep = np.repeat(np.arange(n_ep), nsess)
        size = boot(cal.records_per_session, n_s)
        n_r = int(size.sum())
        rec_sess = np.repeat(np.arange(n_s), size)
        first_rec = np.cumsum(size) - size
        g = boot(cal.within_gaps, n_r)
        g[first_rec] = 0.0
        cs = np.cumsum(g)
        off = cs - cs[first_rec][rec_sess]
        dur = off[first_rec + size - 1]
        first_sess = np.cumsum(nsess) - nsess
        step = np.zeros(n_s)
        step[1:] = dur[:-1] + boot(cal.between_gaps, n_s - 1)
        step[first_sess] = 0.0
        cs2 = np.cumsum(step)
        rel = cs2 - cs2[first_sess][sess_ep]                   # session start within its episode
        last_sess = first_sess + nsess - 1
        ep_len = rel[last_sess] + dur[last_sess]
        # episodes do not overlap: each starts > EPISODE_GAP_S after the previous one ended
        # (start'_i = max(start_i, end'_{i-1} + gap), solved with a running maximum)
        ep_t = np.sort(ep_t)
        shift = np.zeros(n_ep)
        shift[1:] = np.cumsum(ep_len[:-1] + EPISODE_GAP_S + 1.0)
        ep_t = np.maximum.accumulate(ep_t - shift) + shift
        s_start = ep_t[sess_ep] + rel
        t = s_start[rec_sess] + off
        # where: place by time, station among the place's serving stations (+ ping-pong)
        rec_place = seg_p[np.clip(np.searchsorted(seg_t, t, side="right") - 1, 0, None)]
        u_ep = rng.random(n_ep)[sess_ep][rec_sess]
        choice = np.minimum((cumw[rec_place] < u_ep[:, None]).sum(axis=1), N_SERVING - 1)
        flip = rng.random(n_r) < cal.pingpong_q
        alt = (choice + rng.integers(1, N_SERVING, n_r)) % N_SERVING
        choice = np.where(flip, alt, choice)
        row = serv[rec_place, choice]
        # what: category per session, app per session, bytes per record
        r0 = first_rec
        hour = ((s_start % 86400) // 3600).astype(np.int64)
        self.contexts = (kind[rec_place[r0]], cal.place_types[row[r0]], HOUR_BIN[hour])
        if contexts_only:
            z = np.zeros(0, np.int64)
            return z, z, z, z
        wts = (self.pref[None, :] * w.kind_lift[kind[rec_place[r0]]]
               * cal.place_lift[cal.place_types[row[r0]]] * cal.time_lift[HOUR_BIN[hour]])
        cw = np.cumsum(wts, axis=1)
        cat = np.minimum((cw < (rng.random(n_s) * cw[:, -1])[:, None]).sum(axis=1), len(self.pref) - 1)
        ai = (self.app_cum[cat] < rng.random(n_s)[:, None]).sum(axis=1)
        app = w.app_table[cat, np.minimum(ai, w.n_apps[cat] - 1)]
        rcat = cat[rec_sess]
        nbytes = _draw_bytes(cal, rcat, rng)
        keep = t < days * 86400.0
        order = np.argsort(t[keep], kind="stable")
        return (t[keep].astype(np.int64)[order], w.catalog.stations.ids[row[keep]][order],
                app[rec_sess][keep][order], nbytes[keep][order])

    def meta(self) -> dict[str, Any]:
        w = self.world
        st = w.catalog.stations

        lifts = {"home": w.home_lift, "work": w.work_lift, "leisure": w.leisure_lift}

        def anchor(role: str, p: int) -> dict[str, Any]:
            r = self.rows[p]
            return {"role": role, "bs": int(st.ids[r]), "lat": round(float(st.lat[r]), 6),
                    "lon": round(float(st.lon[r]), 6),
                    "place_type": w.cal.place_type_names[int(w.cal.place_types[r])],
                    "role_poi_lift": round(float(lifts[role][r]), 3),
                    "km_from_home": round(float(self.d_home[r]), 2),
                    "serving_bs": [int(x) for x in st.ids[self.serv[p]]]}

        anchors = [anchor("home", self.home)]
        if self.work is not None:
            anchors.append(anchor("work", self.work))
        anchors += [anchor("leisure", p) for p in self.leisure]
        explored = [int(st.ids[self.rows[p]]) for p in range(len(self.rows)) if self.kind[p] == EXPLORE]
        top = np.argsort(-self.pref)[:5]
        return {"user_id": self.uid, "archetype": self.arch.name, "routine": self.pattern,
                "activity": round(self.activity, 4), "commute_km": round(self.commute_km, 2),
                "anchors": anchors, "explored_bs": explored,
                "n_transit_bs": sum(1 for k in self.kind if k == TRANSIT),
                "top_categories": {w.cal.category_names[k]: round(float(self.pref[k]), 4) for k in top},
                "favourite_apps": self.fav_apps}


def _draw_prefs(base: np.ndarray, concentration: float, rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, K) personal category preferences: Dirichlet(concentration * base), 3 % of base mixed in."""
    pos = base > 0
    out = np.zeros((n, len(base)))
    out[:, pos] = rng.dirichlet(np.maximum(concentration * base[pos], 1e-3), size=n)
    return (1.0 - PREF_FLOOR) * out + PREF_FLOOR * base[None, :]


def _draw_bytes(cal: Calibration, cat: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per record: bin by its real share, log-uniform inside; the open top bin: truncated Pareto."""
    b = cal.bins
    n = len(cat)
    cum = np.cumsum(b.share, axis=1)
    j = np.minimum((cum[cat] < rng.random(n)[:, None]).sum(axis=1), b.left.shape[1] - 1)
    lo, hi = b.left[cat, j], b.right[cat, j]
    u = rng.random(n)
    x = np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo)))
    top = j == b.left.shape[1] - 1
    a = cal.top_bin_alpha
    x_top = lo * (1.0 - u * (1.0 - (lo / hi) ** a)) ** (-1.0 / a)
    x = np.where(top, x_top, x)
    return np.clip(np.floor(x), np.ceil(lo), np.maximum(np.ceil(hi) - 1, np.ceil(lo))).astype(np.int64)
