"""PROTOCOL B harness, part 2: the baseline rows (all zero, last value, historical average, seasonal
naive, linear interpolation, context mean, the v2 blend and the LightGBM global model) as harness
predictors ``fn(TaskBatch) -> (n, C, Th, H, W)``, and the series views of a batch shared with the
learned peers (``user_peers.py``). Importers use them through ``umask.bench.accuracy.user``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
from umask.train.baselines import classical as baselines
from umask.bench.accuracy.user_tasks import TASK_OF, Predictor, TaskBatch, UserPopulation

log = logging.getLogger(__name__)

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
    "blend": "PROTOCOL v2 B: 0.5 x last_value + 0.5 x historical_average (same definitions as those rows; "
             "B4: on the hidden coordinates)",
    "blend_tuned": "blend with the last value share chosen per task on the validation day (B1 0.3, B2 0.1, B3 0.1, "
                   "B4 0.3: runtime/families/umask/prior.TASK_PRIOR_WEIGHTS, the task_blend prior of U-MASK v6; "
                   "python -m umask.bench.accuracy.user_blend_weights)",
    "historical_average_all": "PROTOCOL v2 B's wording: mean by time of day over every slot before the window "
                              "(forecasting: before the first target slot, so the test day's B1 / B2 also read "
                              "day 6; B4: before the window start); `historical_average` averages days 1-5 only",
    "blend_tuned_all": "blend_tuned over historical_average_all (the same history as U-MASK's prior)",
    "historical_average_smooth": "historical_average_all as a kernel estimate: sums and counts by slot of day "
                                 "smoothed around the clock with a 3-hour Gaussian before the division "
                                 "(runtime/families/umask/prior.SMOOTH_MINUTES; B3: over the context)",
    "blend_smooth": "the blend over historical_average_smooth with the last value shares chosen with the kernel on "
                    "the validation day (prior.SMOOTH_PRIOR_WEIGHTS): the smooth_blend prior of U-MASK v9 as a row",
    "lightgbm": "PROTOCOL v2 B: one global LightGBM (umask.train.baselines.lightgbm_global, direct multi-horizon, "
                "horizon step as a feature) over every (user, c, h, w) series of the training days (all active + "
                "5 % of the all-zero ones, <= 200k rows, 150 rounds, 1 thread); lags, same slot yesterday / last "
                "week, slot of day, weekday; forecasting only (no B4 row); clipped to the featurized domain",
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


def _context_tod_mean(batch: TaskBatch, smooth_slots: float = 0.0) -> np.ndarray:
    """(n, C, spd, H, W): mean by time of day over the context slots (unobserved slots count as 0); with
    ``smooth_slots`` > 0 the kernel estimate of the "smooth_blend" prior (sums and counts smoothed around the
    clock, `umask.runtime.families.umask.prior.tod_mean`)."""
    n, C, Tc, H, W = batch.x_context.shape
    spd = batch.slots_per_day
    tod = batch.time_of_day(batch.context_slots())           # (n, Tc)
    out = np.zeros((n, C, spd, H, W))
    cnt = np.zeros((n, spd))
    rows = np.repeat(np.arange(n), Tc)
    np.add.at(out, (rows, slice(None), tod.reshape(-1)), np.asarray(batch.x_context).transpose(0, 2, 1, 3, 4)
              .reshape(n * Tc, C, H, W))
    np.add.at(cnt, (rows, tod.reshape(-1)), 1.0)
    from umask.runtime.families.umask.prior import tod_mean       # the prior's own division (raw or kernel)

    return tod_mean(out, cnt[:, None, :, None, None], smooth_slots, 2)[0]


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


class HistoricalAverageBefore(HistoricalAverage):
    """The historical average over EVERY slot before the window, as PROTOCOL v2 B words it (the
    ``historical_average_all`` rows): before the first target slot when forecasting (B1 / B2: the earlier days
    and the context, all observed history), before the window start for completion (B4: the window's hidden
    entries are never read). `HistoricalAverage` (the ``historical_average`` rows) averages the training days
    1-5 only, so on the test day it misses day 6 for B1 / B2, and on the validation day's B4 windows (days 5-6) it
    reads day 5's hidden entries; it stays for comparability with the committed files. B3: the context, as there.
    Per slot of day: the sum over the slots before ``end`` divided by how many of them fall on that slot of day
    (`history_tod_sums`, the sums the models' prior uses). ``smooth_minutes`` > 0: the kernel estimate of the
    "smooth_blend" prior (sums and counts smoothed around the clock with a Gaussian of that width; the
    ``historical_average_smooth`` rows)."""

    def __init__(self, pop: UserPopulation, smooth_minutes: float = 0.0) -> None:
        from umask.runtime.families.umask.prior import minutes_to_slots

        super().__init__(pop)
        self.smooth_slots = minutes_to_slots(smooth_minutes, pop.slots_per_day)
        self._before: dict[tuple[int, int], np.ndarray] = {}

    def profile_before(self, user: int, end: int) -> np.ndarray:
        """(C, slots_per_day, H, W) float32 mean by slot of day over slots [0, end) of ``user``."""
        key = (int(user), int(end))
        p = self._before.get(key)
        if p is None:
            from umask.runtime.families.umask.prior import history_tod_sums, tod_mean   # the prior's own sums / rule

            sums, counts = history_tod_sums(self.pop.features[int(user)].tensor, int(end))
            p = tod_mean(sums, counts[None, :, None, None], self.smooth_slots, 1)[0].astype(np.float32)
            self._before[key] = p
        return p

    def table(self, batch: TaskBatch) -> np.ndarray:
        if batch.task == "B3":
            return _context_tod_mean(batch, self.smooth_slots)
        ends = batch.starts if batch.target_offset > 0 else batch.context_starts
        return np.stack([self.profile_before(int(u), int(e)) for u, e in zip(batch.users, ends)])


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


class Blend:
    """PROTOCOL v2 B: ``weight`` x last value + (1 - weight) x historical average (weight 0.5)."""

    def __init__(self, ha: HistoricalAverage, weight: float = 0.5) -> None:
        self.ha, self.weight = ha, float(weight)

    def __call__(self, batch: TaskBatch) -> np.ndarray:
        pred = self.weight * predict_last_value(batch) + (1.0 - self.weight) * self.ha(batch)
        if batch.target_offset == 0:
            pred = np.where(batch.avail, batch.x_context, pred)
        return pred.astype(np.float32)


class TaskBlend:
    """`Blend` with the last value share of the task (``TASK_PRIOR_WEIGHTS``, chosen on the validation day):
    the baseline a U-MASK with the "task_blend" prior starts from, so that model meets its own prior as a row.
    ``shares``: another task -> share table (``SMOOTH_PRIOR_WEIGHTS`` for the ``blend_smooth`` row)."""

    def __init__(self, ha: HistoricalAverage, shares: Mapping[str, float] | None = None) -> None:
        from umask.runtime.families.umask.prior import TASK_PRIOR_WEIGHTS

        shares = TASK_PRIOR_WEIGHTS if shares is None else shares
        self.by_task = {b: Blend(ha, shares[t]) for b, t in TASK_OF.items()}

    def __call__(self, batch: TaskBatch) -> np.ndarray:
        return self.by_task[batch.task](batch)


# ------------------------------------------------------------------------------------------------
# Series views of a batch (shared with the learned peers, user_peers.py)
# ------------------------------------------------------------------------------------------------
def batch_series(batch: TaskBatch) -> np.ndarray:
    """x_context (n, C, Tc, H, W) -> (n, Tc, C*H*W) float64, NaN where the coordinate is not observed."""
    x = np.asarray(batch.x_context, np.float64)
    n, C, Tc, H, W = x.shape
    x = np.where(np.broadcast_to(batch.avail, x.shape), x, np.nan)
    return x.transpose(0, 2, 1, 3, 4).reshape(n, Tc, C * H * W)


def series_tensor(y: np.ndarray, C: int, H: int, W: int) -> np.ndarray:
    """(n, T, C*H*W) -> (n, C, T, H, W)."""
    n, T, _ = y.shape
    return y.reshape(n, T, C, H, W).transpose(0, 2, 1, 3, 4)


def clip_domain(pred: np.ndarray, batch: TaskBatch) -> np.ndarray:
    """Clip (n, C, T, H, W) to the featurized domain; B4: observed coordinates exactly as given."""
    out = np.clip(pred, 0.0, None)
    li = batch.channels.location_index
    out[:, li] = np.clip(out[:, li], 0.0, 1.0)
    if batch.target_offset == 0:
        out = np.where(batch.avail, batch.x_context, out)
    return out.astype(np.float32)


def population_series(pop: UserPopulation, t0: int, t1: int) -> np.ndarray:
    """(t1 - t0, U * S): every user's series over slots [t0, t1) side by side (sorted users)."""
    cols = []
    for u in pop.users:
        d = pop.features[u].tensor.dense(t0, t1).astype(np.float64)          # (C, T, H, W)
        cols.append(d.transpose(1, 0, 2, 3).reshape(d.shape[1], -1))
    return np.concatenate(cols, axis=1)


class LightGBMRow:
    """The ``lightgbm`` row: `umask.train.baselines.lightgbm_global` fitted lazily on the first batch.

    Training series: every (user, c, h, w) series of the training days that is active there plus an
    ``inactive_fraction`` of the all-zero ones (seeded); max_horizon = one day (B2 / B3)."""

    def __init__(self, pop: UserPopulation, *, inactive_fraction: float = 0.05, seed: int = 0,
                 **overrides: object) -> None:
        self.pop, self.inactive_fraction, self.seed = pop, float(inactive_fraction), int(seed)
        self.overrides = {"max_horizon": pop.slots_per_day, "num_boost_round": 150, "max_rows": 200_000,
                          "seed": seed, "weekday0": _weekday0(pop), **overrides}
        self.model = None
        self.n_series = 0

    def fitted(self):
        if self.model is None:
            from umask.train.baselines import base

            z = population_series(self.pop, 0, self.pop.train_end)           # (train_end, U*S)
            act = (z != 0).any(axis=0)
            rng = np.random.default_rng(self.seed)
            cols = np.flatnonzero(act | (rng.random(act.shape) < self.inactive_fraction))
            self.n_series = len(cols)
            self.model = base.get("lightgbm")(period=self.pop.slots_per_day, **self.overrides).fit(z[:, cols])
        return self.model

    def __call__(self, batch: TaskBatch) -> np.ndarray:
        if batch.target_offset == 0:
            raise NotImplementedError("the LightGBM global model is a forecasting baseline (no completion)")
        C, H, W = batch.channels.n_channels, *batch.x_context.shape[3:]
        y = self.fitted().forecast(batch_series(batch), batch.horizon, starts=batch.starts)
        return clip_domain(series_tensor(y, C, H, W), batch)


def _weekday0(pop: UserPopulation) -> int:
    """Weekday (Monday = 0) of absolute slot 0 of the population (1970-01-01 was a Thursday)."""
    return int((pop.start_ts // 86400 + 3) % 7)


def baseline_models(pop: UserPopulation, *, v2: bool = False, lightgbm: bool = True) -> dict[str, Predictor]:
    """The PROTOCOL B baseline rows for a population with training days (the simulator).

    ``v2``: add the PROTOCOL v2 B rows ``blend`` and (with ``lightgbm``) ``lightgbm``; the harness's
    own `evaluate` and CLI do (`v2_baseline_models`); other harnesses opt in."""
    ha = HistoricalAverage(pop)
    rows: dict[str, Predictor] = {
        "all_zero": predict_all_zero, "last_value": predict_last_value, "historical_average": ha,
        "seasonal_naive": SeasonalNaive(ha), "linear_interpolation": predict_linear_interpolation}
    if v2:
        rows["blend"] = Blend(ha)
        rows["blend_tuned"] = TaskBlend(ha)
        ha_all = HistoricalAverageBefore(pop)
        rows["historical_average_all"] = ha_all
        rows["blend_tuned_all"] = TaskBlend(ha_all)
        from umask.runtime.families.umask.prior import SMOOTH_MINUTES, SMOOTH_PRIOR_WEIGHTS

        ha_smooth = HistoricalAverageBefore(pop, SMOOTH_MINUTES)
        rows["historical_average_smooth"] = ha_smooth
        rows["blend_smooth"] = TaskBlend(ha_smooth, SMOOTH_PRIOR_WEIGHTS)
        if lightgbm:
            rows["lightgbm"] = LightGBMRow(pop)
    return rows


def v2_baseline_models(pop: UserPopulation) -> dict[str, Predictor]:
    """Every baseline row incl. the PROTOCOL v2 B ``blend`` and ``lightgbm``."""
    return baseline_models(pop, v2=True)


def real_baseline_models(pop: UserPopulation | None = None) -> dict[str, Predictor]:
    """Baselines possible on a single day: all_zero, last_value, context_mean."""
    return {"all_zero": predict_all_zero, "last_value": predict_last_value, "context_mean": predict_context_mean}


