"""PROTOCOL v2 B gradient-boosted global baseline: one LightGBM model over every series, lag and calendar
features, registered as ``lightgbm``.

Strategy: DIRECT multi-horizon with the horizon step as a feature -- one model predicts x[o + h] for
every step h = 0 .. ``max_horizon`` - 1 from what is known at the forecast origin o (the first horizon
slot). Why not recursive: feeding predictions back compounds their errors over a 96- or 144-step day
and needs one model call per step; why not one model per step: ``max_horizon`` models to train for
the same data. With h as a feature, the calendar of the *target* slot is exact and the model learns
how fast the lags lose their value with the horizon.

Features of a row (series j, origin o, step h, target slot t = o + h), all from slots < o:

* ``lag_1 .. lag_k``: x[o - 1], ..., x[o - k] (``n_lags``, default 6);
* ``mean_recent``: mean of the last ``recent`` observed slots (default 6);
* ``same_slot_day``: x[t - m * period] with the smallest m >= 1 that lies before o (the same slot on
  the last day that is in the history: yesterday for h < period);
* ``same_slot_week``: x[t - 7 * period] when it lies before o and inside the history, else missing;
* ``slot_of_day`` = t mod period, ``weekday`` = (t // period + ``weekday0``) mod 7, ``step`` = h;
* optionally ``series`` (the column index, categorical; ``use_series_id``) -- only meaningful when
  the forecast series are the training series.

Missing history values are NaN and LightGBM routes them natively. Training rows: origins every
``origin_stride`` slots of the training matrix whose lags and target lie inside it, every step,
every series; at most ``max_rows`` rows (a seeded random subset). ``num_threads`` = 1 and
``deterministic`` so a fit is reproducible for a seed.

    from umask.train.baselines import base
    m = base.get("lightgbm")(period=144, max_horizon=6).fit(z_train)      # (T, N)
    y = m.forecast(history, 6, starts=starts)                              # (n, L, N) -> (n, 6, N)
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from umask.runtime.core.errors import InputError
from umask.train.baselines.base import Predictor, as_starts, as_windows, check_horizon, register

log = logging.getLogger(__name__)

__all__ = ["LightGBMConfig", "LightGBMGlobal", "feature_names"]


@dataclass(frozen=True)
class LightGBMConfig:
    """Features, training rows and booster settings (see the module docstring)."""

    max_horizon: int = 6
    n_lags: int = 6
    recent: int = 6
    weekday0: int = 0               # weekday of absolute day 0 (Monday = 0); Milan 2013-11-01 was a Friday (4)
    use_series_id: bool = False
    origin_stride: int = 1
    max_rows: int = 200_000
    num_boost_round: int = 200
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 20
    feature_fraction: float = 0.9
    seed: int = 0
    num_threads: int = 1


def feature_names(cfg: LightGBMConfig) -> list[str]:
    names = [f"lag_{i}" for i in range(1, cfg.n_lags + 1)]
    names += ["mean_recent", "same_slot_day", "same_slot_week", "slot_of_day", "weekday", "step"]
    return names + (["series"] if cfg.use_series_id else [])


def _features(src: np.ndarray, row_of: np.ndarray, hist_start: np.ndarray, origins: np.ndarray,
              steps: np.ndarray, cfg: LightGBMConfig, period: int, series: np.ndarray | None) -> np.ndarray:
    """Feature rows for origins and steps.

    ``src`` (S, L): histories, slot ``hist_start[r] + i`` at index i of row ``row_of[r]``; only
    indices before the origin are read. ``origins``, ``steps``: (R,) absolute origin slot and step h.
    Returns (R, F) float64."""
    R = len(origins)
    L = src.shape[1]
    end = origins - hist_start                                # (R,) index of the origin (= L for windows)
    cols: list[np.ndarray] = []

    def at(idx: np.ndarray) -> np.ndarray:
        ok = (idx >= 0) & (idx < end)
        return np.where(ok, src[row_of, np.clip(idx, 0, L - 1)], np.nan)

    for i in range(1, cfg.n_lags + 1):
        cols.append(at(end - i))
    rec = np.stack([at(end - i) for i in range(1, cfg.recent + 1)], axis=1)
    cnt = np.isfinite(rec).sum(axis=1)
    cols.append(np.where(cnt > 0, np.nansum(rec, axis=1) / np.maximum(cnt, 1), np.nan))
    target = origins + steps
    m = steps // period + 1                                  # smallest m with target - m * period < origin
    cols.append(at(target - m * period - hist_start))
    cols.append(at(target - 7 * period - hist_start))  # before the origin only when step < 7 periods
    cols.append((target % period).astype(np.float64))
    cols.append(((target // period + cfg.weekday0) % 7).astype(np.float64))
    cols.append(steps.astype(np.float64))
    if cfg.use_series_id:
        cols.append(np.zeros(R) if series is None else series.astype(np.float64))
    return np.stack(cols, axis=1)


@register
class LightGBMGlobal(Predictor):
    """``lightgbm``: the global gradient-boosted model (module docstring). Forecasting only."""

    name = "lightgbm"

    def __init__(self, *, period: int = 144, cfg: LightGBMConfig | None = None, **overrides: Any) -> None:
        super().__init__(period=period)
        base = cfg or LightGBMConfig()
        self.cfg = LightGBMConfig(**{**asdict(base), **overrides})
        if self.cfg.max_horizon < 1 or self.cfg.n_lags < 1 or self.cfg.recent < 1:
            raise InputError(f"max_horizon, n_lags and recent must be >= 1, got {self.cfg}")
        self.booster: Any = None
        self.n_rows = 0
        self.fit_seconds = 0.0

    @property
    def context_needed(self) -> int:
        """History slots that every feature can use (a week + the horizon)."""
        return 7 * self.period + self.cfg.max_horizon

    def fit(self, train: np.ndarray, *, first_slot: int = 0, val: np.ndarray | None = None) -> LightGBMGlobal:
        """Fit on the training matrix (T, N) only; ``val`` is not used (fixed number of rounds)."""
        import lightgbm as lgb

        super().fit(train)
        cfg, p = self.cfg, self.period
        z = np.asarray(train, dtype=np.float64)
        T, N = z.shape
        H = cfg.max_horizon
        lo = max(cfg.n_lags, cfg.recent)
        origins = np.arange(lo, T - H + 1, cfg.origin_stride)
        if len(origins) == 0:
            raise InputError(f"train has {T} slots, need > {lo + H} for {cfg.n_lags} lags and horizon {H}")
        t0 = time.perf_counter()
        total = len(origins) * H * N
        if total > cfg.max_rows:      # a seeded subset of (origin, step, series) triples, never the full grid
            flat = np.sort(np.random.default_rng(cfg.seed).choice(total, cfg.max_rows, replace=False))
        else:
            flat = np.arange(total)
        io, hh, jj = np.unravel_index(flat, (len(origins), H, N))
        oo = origins[io]
        y = z[oo + hh, jj]
        keep = np.isfinite(y)
        oo, hh, jj, y = oo[keep], hh[keep], jj[keep], y[keep]
        X = _features(z.T, jj, np.full(len(oo), first_slot), oo + first_slot, hh, cfg, p, jj)   # (R, F)
        params = {"objective": "regression", "learning_rate": cfg.learning_rate, "num_leaves": cfg.num_leaves,
                  "min_data_in_leaf": cfg.min_data_in_leaf, "feature_fraction": cfg.feature_fraction,
                  "seed": cfg.seed, "num_threads": cfg.num_threads, "deterministic": True, "verbose": -1}
        cat = ["series"] if cfg.use_series_id else "auto"
        data = lgb.Dataset(X, y, feature_name=feature_names(cfg), categorical_feature=cat, free_raw_data=True)
        self.booster = lgb.train(params, data, num_boost_round=cfg.num_boost_round)
        self.n_rows = int(len(y))
        self.fit_seconds = time.perf_counter() - t0
        log.info("lightgbm: %d rows (%d series x %d origins x %d steps, subset), %d rounds in %.1f s",
                 self.n_rows, N, len(origins), H, cfg.num_boost_round, self.fit_seconds)
        return self

    def forecast(self, history: np.ndarray, horizon: int, *, starts: np.ndarray | None = None) -> np.ndarray:
        """history (n, L, N), NaN = missing; ``starts`` (n,) absolute first horizon slot (calendar)."""
        if self.booster is None:
            raise InputError("lightgbm: call fit(train) first")
        history = as_windows(history, "history", self.n_series if self.cfg.use_series_id else None)
        horizon = check_horizon(horizon)
        if horizon > self.cfg.max_horizon:
            raise InputError(f"horizon {horizon} > max_horizon {self.cfg.max_horizon} the model was trained for")
        n, L, N = history.shape
        s = as_starts(starts, n)
        ii, hh, jj = np.meshgrid(np.arange(n), np.arange(horizon), np.arange(N), indexing="ij")
        ii, hh, jj = ii.ravel(), hh.ravel(), jj.ravel()
        src = history.transpose(0, 2, 1).reshape(n * N, L)   # (n*N, L)
        X = _features(src, ii * N + jj, s[ii] - L, s[ii], hh, self.cfg, self.period, jj)
        pred = self.booster.predict(X, num_threads=self.cfg.num_threads)
        return pred.reshape(n, horizon, N)

    def info(self) -> dict[str, object]:
        return {**super().info(), "strategy": "direct multi-horizon, step as a feature", "rows": self.n_rows,
                "fit_seconds": round(self.fit_seconds, 1), "config": asdict(self.cfg)}
