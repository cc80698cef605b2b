"""Model-agnostic baseline predictors for (slots, cells) series (numpy only).

Shared by every data set; the daily period is a parameter (144 ten-minute slots for Milan, 96
fifteen-minute slots for the per-user tensors). Every function works on arrays whose last two axes
are (time, cells) and whose leading axes (if any) are independent windows, so a whole stack of
evaluation windows is handled in one vectorized call. Nothing here knows about scalers: the
evaluation harness passes standardized values in and gets standardized values out.

Forecasting (history -> the next ``horizon`` slots):

- :func:`last_value_forecast`: repeat the last history value;
- :func:`seasonal_naive_forecast`: the same slot one period (one day) earlier, repeated;
- :func:`historical_average_forecast` with a profile from :func:`fit_historical_average`:
  mean by time-of-day slot over the training period, per cell;
- :func:`all_zero`: zero everywhere, i.e. the training mean on the standardized scale.

Imputation (values + boolean mask, True = hidden; hidden values are never read):

- :func:`last_value_impute`: last observed value in the same cell carried forward, with backward
  fill before the first observed entry;
- :func:`seasonal_naive_impute`: the nearest observed value in the same cell (docs/PROTOCOL.md A2's
  "seasonal naive" row: a 288-slot window with 70-80 % hidden rarely has the same slot of the other
  day observed, so the protocol uses the nearest observed neighbour in time);
- :func:`linear_interpolation_impute`: per cell linear interpolation between the observed entries
  around a gap, constant extrapolation before the first / after the last observed entry;
- :func:`historical_average_impute`, :func:`all_zero` as above;
- :func:`lowrank_interpolation_impute`: ``LOWRANK_SHARE`` x a rank-``LOWRANK_RANK`` completion of the
  window's (time, cells) matrix (:func:`lowrank_impute`, iterative truncated SVD started from the
  interpolation) + the rest x linear interpolation. Our addition to PROTOCOL A2's rows: the cells of a
  grid share their daily shape, so the other cells observed at a slot say something about a hidden one,
  which interpolation in time alone cannot use.

Imputers return the observed entries unchanged. A (window, cell) series with no observed entry at
all gets ``fill`` (default 0.0 = the training mean on the standardized scale).

The same baselines as :class:`~umask.train.baselines.base.Predictor` s (registered names in
brackets): :class:`AllZero` [all_zero], :class:`LastValue` [last_value], :class:`SeasonalNaive`
[seasonal_naive], :class:`HistoricalAverage` [historical_average], :class:`LinearInterpolation`
[linear_interpolation], :class:`LowRankInterpolation` [lowrank_interpolation],
:class:`ProfileLowRankInterpolation` [profile_lowrank_interpolation], :class:`NearestObserved`
[nearest_observed] and the PROTOCOL v2 B
:class:`Blend` [blend] = 0.5 x last value + 0.5 x historical average (forecast and imputation).
"""

from __future__ import annotations

import numpy as np
from umask.runtime.core.errors import InputError
from umask.runtime.core.gridimpute import (LOWRANK_ITERS, LOWRANK_RANK, LOWRANK_SHARE, linear_interpolation_impute,
                                           lowrank_impute, lowrank_interpolation_impute, observed_neighbours)
from umask.runtime.core.gridimpute import as_series as _as_series
from umask.runtime.core.gridimpute import check_mask as _check_mask
from umask.runtime.core.gridimpute import impute_from_neighbours as _impute_from_neighbours
from umask.train.baselines.base import Predictor, as_starts, as_windows, check_horizon, register

__all__ = [
    "AllZero",
    "Blend",
    "HistoricalAverage",
    "LastValue",
    "LinearInterpolation",
    "LOWRANK_ITERS",
    "LOWRANK_RANK",
    "LOWRANK_SHARE",
    "LowRankInterpolation",
    "NearestObserved",
    "SeasonalNaive",
    "all_zero",
    "fit_historical_average",
    "historical_average_forecast",
    "historical_average_impute",
    "historical_average_predict",
    "last_value_forecast",
    "last_value_impute",
    "linear_interpolation_impute",
    "lowrank_impute",
    "lowrank_interpolation_impute",
    "observed_neighbours",
    "seasonal_naive_forecast",
    "seasonal_naive_impute",
]


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------
def _check_horizon(horizon: int) -> int:
    if int(horizon) < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    return int(horizon)


# ------------------------------------------------------------------------------------------------
# Last value
# ------------------------------------------------------------------------------------------------
def last_value_forecast(history: np.ndarray, horizon: int) -> np.ndarray:
    """Forecast every horizon slot as the last history value of the same cell.

    ``history``: (..., L, cells) with L >= 1. Returns (..., horizon, cells) float64.
    """
    history = _as_series(history, "history")
    horizon = _check_horizon(horizon)
    if history.shape[-2] < 1:
        raise ValueError("history is empty")
    last = history[..., -1:, :]
    return np.repeat(last, horizon, axis=-2)


def last_value_impute(values: np.ndarray, mask: np.ndarray, *, fill: float = 0.0) -> np.ndarray:
    """Fill each hidden entry with the last observed value of the same cell (carry forward).

    Hidden entries before a cell's first observed entry take that first observed value (backward
    fill). ``values``, ``mask``: (..., slots, cells), mask True = hidden; hidden values are ignored
    (may be NaN). A cell with no observed entry gets ``fill``. Observed entries are returned as-is.
    """
    return _impute_from_neighbours(values, mask, fill, "prev")


# ------------------------------------------------------------------------------------------------
# Seasonal naive
# ------------------------------------------------------------------------------------------------
def seasonal_naive_forecast(history: np.ndarray, horizon: int, *, period: int = 144) -> np.ndarray:
    """Forecast slot h of the horizon as the value one ``period`` earlier, the last period repeated.

    With the horizon starting right after the history, prediction[h] = history[L - period +
    (h mod period)]: for h < period exactly "the same slot one day earlier", beyond that the last
    observed day repeats. ``history``: (..., L, cells) with L >= period. Returns (..., horizon, cells).
    """
    history = _as_series(history, "history")
    horizon = _check_horizon(horizon)
    if period < 1:
        raise ValueError(f"period must be >= 1, got {period}")
    n_hist = history.shape[-2]
    if n_hist < period:
        raise ValueError(f"history has {n_hist} slots, need at least one period ({period})")
    idx = n_hist - period + (np.arange(horizon) % period)
    return history[..., idx, :]


def seasonal_naive_impute(values: np.ndarray, mask: np.ndarray, *, fill: float = 0.0) -> np.ndarray:
    """Fill each hidden entry with the nearest observed value in time of the same cell.

    Ties (an observed entry at the same distance on both sides) take the earlier one. This is
    PROTOCOL.md A2's seasonal-naive row for imputation. Shapes and ``fill`` as
    :func:`last_value_impute`.
    """
    return _impute_from_neighbours(values, mask, fill, "nearest")


# ------------------------------------------------------------------------------------------------
# Historical average (time-of-day profile)
# ------------------------------------------------------------------------------------------------
def fit_historical_average(train: np.ndarray, *, period: int = 144, first_slot: int = 0) -> np.ndarray:
    """Mean by time-of-day slot over the training period, per cell.

    ``train``: (slots, cells), the training period only (the caller cuts it; nothing later may be
    passed). ``first_slot``: absolute slot index of ``train[0]``; time-of-day of absolute slot t is
    ``t mod period`` (slot 0 = local midnight). Returns the profile, float64 (period, cells);
    a time-of-day that never occurs in ``train`` gets the overall training mean of the cell.
    """
    train = _as_series(train, "train")
    if train.ndim != 2:
        raise ValueError(f"train must be (slots, cells), got {train.shape}")
    if period < 1:
        raise ValueError(f"period must be >= 1, got {period}")
    if train.shape[0] < 1 or not np.all(np.isfinite(train)):
        raise ValueError("train must be non-empty and finite")
    phase = (first_slot + np.arange(train.shape[0])) % period
    sums = np.zeros((period, train.shape[1]))
    np.add.at(sums, phase, train)
    counts = np.bincount(phase, minlength=period).astype(np.float64)[:, None]
    overall = train.mean(axis=0, keepdims=True)
    return np.where(counts > 0, sums / np.maximum(counts, 1.0), overall)


def historical_average_predict(profile: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """Look up the profile at absolute slot indices: (..., n) ints -> (..., n, cells)."""
    profile = np.asarray(profile, dtype=np.float64)
    slots = np.asarray(slots, dtype=np.int64)
    return profile[slots % profile.shape[0]]


def historical_average_forecast(profile: np.ndarray, starts: np.ndarray, horizon: int) -> np.ndarray:
    """Historical-average forecast of windows whose horizons start at absolute slots ``starts``.

    ``starts``: (n,) ints. Returns (n, horizon, cells). The history is not used.
    """
    horizon = _check_horizon(horizon)
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    return historical_average_predict(profile, starts[:, None] + np.arange(horizon)[None, :])


def historical_average_impute(
    values: np.ndarray, mask: np.ndarray, profile: np.ndarray, starts: np.ndarray
) -> np.ndarray:
    """Fill hidden entries with the training time-of-day profile.

    ``values``, ``mask``: (n, slots, cells); ``starts``: (n,) absolute first slot of each window.
    Observed entries are returned as-is.
    """
    values = _as_series(values, "values")
    mask = _check_mask(values, mask)
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    if values.ndim != 3 or starts.shape[0] != values.shape[0]:
        raise ValueError(f"values must be (n, slots, cells) with n = len(starts); got {values.shape}, {starts.shape}")
    ha = historical_average_predict(profile, starts[:, None] + np.arange(values.shape[1])[None, :])
    return np.where(mask, ha, values)


# ------------------------------------------------------------------------------------------------
# All zero
# ------------------------------------------------------------------------------------------------
def all_zero(shape: tuple[int, ...]) -> np.ndarray:
    """Zeros of ``shape``; on the standardized scale this is the per-cell training mean."""
    return np.zeros(shape, dtype=np.float64)


# ------------------------------------------------------------------------------------------------
# The same baselines as Predictors (registry names: see the module docstring)
# ------------------------------------------------------------------------------------------------
def nan_profile(train: np.ndarray, period: int, first_slot: int = 0) -> np.ndarray:
    """Mean by time-of-day slot over ``train`` (T, N), NaN entries skipped -> (period, N); a slot of
    day never observed gets the series' overall mean (0 when the series has no finite entry)."""
    train = np.asarray(train, dtype=np.float64)
    phase = (first_slot + np.arange(train.shape[0])) % period
    ok = np.isfinite(train)
    sums = np.zeros((period, train.shape[1]))
    counts = np.zeros((period, train.shape[1]))
    np.add.at(sums, phase, np.where(ok, train, 0.0))
    np.add.at(counts, phase, ok.astype(np.float64))
    n_ok = ok.sum(axis=0, keepdims=True)
    overall = np.where(n_ok > 0, np.where(ok, train, 0.0).sum(axis=0, keepdims=True) / np.maximum(n_ok, 1), 0.0)
    return np.where(counts > 0, sums / np.maximum(counts, 1.0), overall)


def last_observed_forecast(history: np.ndarray, horizon: int, *, fill: float = 0.0) -> np.ndarray:
    """Last *observed* (finite) history value per series repeated ``horizon`` times; ``fill`` where
    a series has no observed entry. history (n, L, N) -> (n, horizon, N)."""
    history = as_windows(history, "history")
    horizon = check_horizon(horizon)
    prev, _ = observed_neighbours(~np.isfinite(history))
    last = prev[:, -1:, :]                                                    # (n, 1, N)
    v = np.take_along_axis(np.nan_to_num(history, nan=0.0), np.maximum(last, 0), axis=1)
    return np.repeat(np.where(last >= 0, v, float(fill)), horizon, axis=1)


@register
class AllZero(Predictor):
    """0 everywhere (the training mean on a standardized scale, no activity on the featurized one)."""

    name = "all_zero"
    imputes = True

    def forecast(self, history: np.ndarray, horizon: int, *, starts: np.ndarray | None = None) -> np.ndarray:
        history = as_windows(history, "history")
        return np.zeros((history.shape[0], check_horizon(horizon), history.shape[2]))

    def impute(self, values: np.ndarray, mask: np.ndarray, *, starts: np.ndarray | None = None) -> np.ndarray:
        values = as_windows(values, "values")
        return np.where(_check_mask(values, mask), 0.0, values)


@register
class LastValue(Predictor):
    """Forecast: the last observed history value, repeated. Imputation: carry forward (backward
    fill before the first observed entry)."""

    name = "last_value"
    imputes = True

    def forecast(self, history: np.ndarray, horizon: int, *, starts: np.ndarray | None = None) -> np.ndarray:
        return last_observed_forecast(history, horizon)

    def impute(self, values: np.ndarray, mask: np.ndarray, *, starts: np.ndarray | None = None) -> np.ndarray:
        return last_value_impute(as_windows(values, "values"), mask)


@register
class SeasonalNaive(Predictor):
    """Forecast: the same slot one period earlier (the last period repeated); where that slot is not
    observed, the last observed value. Imputation: the nearest observed value (PROTOCOL A2)."""

    name = "seasonal_naive"
    imputes = True

    def forecast(self, history: np.ndarray, horizon: int, *, starts: np.ndarray | None = None) -> np.ndarray:
        history = as_windows(history, "history")
        if history.shape[1] < self.period:
            raise InputError(f"seasonal naive needs >= {self.period} history slots, got {history.shape[1]}")
        sn = seasonal_naive_forecast(history, horizon, period=self.period)
        return np.where(np.isfinite(sn), sn, last_observed_forecast(history, horizon))

    def impute(self, values: np.ndarray, mask: np.ndarray, *, starts: np.ndarray | None = None) -> np.ndarray:
        return seasonal_naive_impute(as_windows(values, "values"), mask)


@register
class HistoricalAverage(Predictor):
    """Mean by slot of day over the training period, per series (NaN skipped). Needs ``starts``."""

    name = "historical_average"
    imputes = True

    def __init__(self, *, period: int = 144) -> None:
        super().__init__(period=period)
        self.profile: np.ndarray | None = None      # (period, N)

    def fit(self, train: np.ndarray, *, first_slot: int = 0, val: np.ndarray | None = None) -> HistoricalAverage:
        super().fit(train)
        self.profile = nan_profile(train, self.period, first_slot)
        return self

    def _at(self, slots: np.ndarray) -> np.ndarray:
        if self.profile is None:
            raise InputError(f"{self.name}: call fit(train) first")
        return historical_average_predict(self.profile, slots)

    def forecast(self, history: np.ndarray, horizon: int, *, starts: np.ndarray | None = None) -> np.ndarray:
        history = as_windows(history, "history", self.n_series)
        s = as_starts(starts, history.shape[0])
        return self._at(s[:, None] + np.arange(check_horizon(horizon))[None, :])

    def impute(self, values: np.ndarray, mask: np.ndarray, *, starts: np.ndarray | None = None) -> np.ndarray:
        values = as_windows(values, "values", self.n_series)
        mask = _check_mask(values, mask)
        s = as_starts(starts, values.shape[0])
        return np.where(mask, self._at(s[:, None] + np.arange(values.shape[1])[None, :]), values)


@register
class LinearInterpolation(Predictor):
    """Imputation only: linear in time between the observed entries around a gap."""

    name = "linear_interpolation"
    forecasts = False
    imputes = True

    def forecast(self, history: np.ndarray, horizon: int, *, starts: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError("linear interpolation is an imputation baseline")

    def impute(self, values: np.ndarray, mask: np.ndarray, *, starts: np.ndarray | None = None) -> np.ndarray:
        return linear_interpolation_impute(as_windows(values, "values"), mask)


@register
class LowRankInterpolation(Predictor):
    """Imputation only: low-rank completion across cells blended with linear interpolation
    (:func:`lowrank_interpolation_impute`)."""

    name = "lowrank_interpolation"
    forecasts = False
    imputes = True

    def forecast(self, history: np.ndarray, horizon: int, *, starts: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError("low-rank interpolation is an imputation baseline")

    def impute(self, values: np.ndarray, mask: np.ndarray, *, starts: np.ndarray | None = None) -> np.ndarray:
        return lowrank_interpolation_impute(as_windows(values, "values"), mask)


@register
class ProfileLowRankInterpolation(Predictor):
    """Imputation only: :class:`LowRankInterpolation` blended with the weekday / weekend slot-of-day profile of the
    training days plus the same completion of the window's deviation from it
    (``gridimpute.profile_lowrank_impute``; the A2 row ``profile_lowrank_interpolation``). ``first_weekday``: the
    weekday (Monday = 0) of absolute slot 0. Needs ``starts`` and a training period of whole days from a midnight."""

    name = "profile_lowrank_interpolation"
    forecasts = False
    imputes = True

    def __init__(self, *, period: int = 144, first_weekday: int = 0) -> None:
        super().__init__(period=period)
        self.first_weekday = int(first_weekday)
        self.prior = None
        self._offset = 0                                                        # absolute slot of training row 0

    def fit(self, train: np.ndarray, *, first_slot: int = 0,
            val: np.ndarray | None = None) -> ProfileLowRankInterpolation:
        from umask.runtime.families.umask.grid_prior import GridPrior

        super().fit(train)
        if int(first_slot) % self.period:
            raise InputError(f"{self.name}: the training period must start at a midnight (first_slot {first_slot} "
                             f"is not a multiple of {self.period})")
        fw = (self.first_weekday + int(first_slot) // self.period) % 7       # weekday of the training period's row 0
        t = np.asarray(train, dtype=np.float64)
        if t.ndim != 2 or not np.all(np.isfinite(t)):
            raise InputError(f"{self.name}: train must be a finite (T, N) matrix, got shape {t.shape}")
        self.prior = GridPrior.fit(t, t.shape[0], self.period, fw, a2="lowrank_profile")
        self._offset = int(first_slot)
        return self

    def forecast(self, history: np.ndarray, horizon: int, *, starts: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError("profile low-rank interpolation is an imputation baseline")

    def impute(self, values: np.ndarray, mask: np.ndarray, *, starts: np.ndarray | None = None) -> np.ndarray:
        if self.prior is None:
            raise InputError(f"{self.name}: call fit(train) first")
        values = as_windows(values, "values", self.n_series)
        mask = _check_mask(values, mask)
        s = as_starts(starts, values.shape[0]) - self._offset     # slots counted from the training period's row 0
        return self.prior.impute(values, mask, s)


@register
class NearestObserved(Predictor):
    """Imputation only: the nearest observed entry in time (ties: the earlier one)."""

    name = "nearest_observed"
    forecasts = False
    imputes = True

    def forecast(self, history: np.ndarray, horizon: int, *, starts: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError("nearest observed is an imputation baseline")

    def impute(self, values: np.ndarray, mask: np.ndarray, *, starts: np.ndarray | None = None) -> np.ndarray:
        return seasonal_naive_impute(as_windows(values, "values"), mask)


@register
class Blend(Predictor):
    """PROTOCOL v2 B: ``weight`` x last value + (1 - weight) x historical average (weight 0.5).

    Forecast: last observed value and the slot-of-day training profile; imputation: carry-forward
    and the profile on the hidden entries (observed entries unchanged)."""

    name = "blend"
    imputes = True

    def __init__(self, *, period: int = 144, weight: float = 0.5) -> None:
        super().__init__(period=period)
        if not 0.0 <= float(weight) <= 1.0:
            raise InputError(f"blend weight must be in [0, 1], got {weight}")
        self.weight = float(weight)
        self.ha = HistoricalAverage(period=period)

    def fit(self, train: np.ndarray, *, first_slot: int = 0, val: np.ndarray | None = None) -> Blend:
        super().fit(train)
        self.ha.fit(train, first_slot=first_slot)
        return self

    def forecast(self, history: np.ndarray, horizon: int, *, starts: np.ndarray | None = None) -> np.ndarray:
        lv = last_observed_forecast(history, horizon)
        return self.weight * lv + (1.0 - self.weight) * self.ha.forecast(history, horizon, starts=starts)

    def impute(self, values: np.ndarray, mask: np.ndarray, *, starts: np.ndarray | None = None) -> np.ndarray:
        values = as_windows(values, "values")
        mask = _check_mask(values, mask)
        lv = last_value_impute(values, mask)
        ha = self.ha.impute(values, mask, starts=starts)
        return np.where(mask, self.weight * lv + (1.0 - self.weight) * ha, values)

    def info(self) -> dict[str, object]:
        return {**super().info(), "weight_last_value": self.weight}
