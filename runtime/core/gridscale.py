"""Per-cell scaling and calendar profiles of a (slots, cells) grid, numpy only.

One implementation, used by every grid model and scorer of the house (issue 12):

- :func:`fit_cell_scaler`: the per-cell training-period mean and population std (ddof 0). With
  ``floor=True`` (what every grid *model* trains on: the U-MASK grid trainer
  ``train/models/umask/grid.py grid_scaler``, U-STS-LLM's ``fit_grid_stats`` in training and in the
  runtime session) the std is floored at ``max(0.01 x median cell std, 1e-6)``. With
  ``floor=False`` (the protocol's own scaler, ``train/data/splits.fit_scaler``, which defines the
  harness's normalized metrics) only an exactly constant cell is set to std 1.
  Why a floor: a cell that is (almost) constant during training but active later gets a tiny std,
  and its later values become enormous z-scores (a cell constant in training but for 4 slots gave
  z = 1727) that the model has never seen and that swamp the loss of every window holding them.
  A hundredth of the median leaves real quiet cells alone: on Milan the quietest cell has 0.38 x
  the median std, so the floor never binds there and Milan's z-scores are the protocol's.
- :func:`weekday` and :func:`day_type_profiles`: the weekday / weekend slot-of-day profiles of the
  training days (the grid prior of ``train/models/umask/grid_prior.py`` and U-STS-LLM's prior
  channel and guidance signal).
"""

from __future__ import annotations

import logging
from typing import Literal, get_args

import numpy as np

from umask.runtime.core.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["PROFILE_STATISTICS", "ProfileStatistic", "STD_FLOOR_OF_MEDIAN", "STD_FLOOR_ABS", "fit_cell_scaler", "weekday",
           "day_type_profiles"]

STD_FLOOR_OF_MEDIAN: float = 1e-2    # the std floor as a fraction of the median cell std
STD_FLOOR_ABS: float = 1e-6          # ... and never below this


def fit_cell_scaler(values: np.ndarray, train_end: int, *, floor: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float64 (cells,) of slots 0..train_end-1 of the (slots, cells) matrix ``values``.

    ``floor``: std floored at ``max(STD_FLOOR_OF_MEDIAN x median std, STD_FLOOR_ABS)`` (module doc);
    otherwise only an exactly constant cell gets std 1. Both log the cells they change."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise InputError(f"values must be a (slots, cells) matrix, got shape {v.shape}")
    if not 1 <= int(train_end) <= v.shape[0]:
        raise InputError(f"train_end must be in 1..{v.shape[0]} (the matrix's slots), got {train_end}")
    train = v[: int(train_end)]
    if not np.all(np.isfinite(train)):
        raise InputError("the training period holds NaN or inf")
    mean, std = train.mean(axis=0), train.std(axis=0)
    if floor:
        low_std = max(STD_FLOOR_OF_MEDIAN * float(np.median(std)), STD_FLOOR_ABS)
        low = np.flatnonzero(std < low_std)
        if len(low):
            log.warning("cells %s have a training std below %.3g (1/100 of the median); floored", low.tolist(),
                        low_std)
        return mean, np.maximum(std, low_std)
    flat = std == 0
    if np.any(flat):
        log.warning("cells %s are constant in the training period; using std = 1", np.flatnonzero(flat).tolist())
    return mean, np.where(flat, 1.0, std)


def weekday(slots: np.ndarray, slots_per_day: int, first_weekday: int) -> np.ndarray:
    """Weekday (Monday = 0) of absolute slots (any shape, int); slot 0 is a midnight of ``first_weekday``."""
    return (int(first_weekday) + np.asarray(slots, np.int64) // int(slots_per_day)) % 7


ProfileStatistic = Literal["mean", "median"]           # the statistic of a slot-of-day profile (one place)
PROFILE_STATISTICS: tuple[str, ...] = get_args(ProfileStatistic)


def day_type_profiles(z: np.ndarray, train_end: int, slots_per_day: int, first_weekday: int,
                      decay: float = 1.0, *, statistic: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """(weekday, weekend) float64 (slots_per_day, cells): the mean by slot of day of the whole training
    days of ``z`` (slots, cells) before ``train_end``, over the weekdays and over the weekend days. Without a
    weekend (or weekday) day in training both are the all-days profile.

    ``decay`` in (0, 1]: day d of n training days weighs ``decay ** (n - 1 - d)``, so the latest days count
    most (1 = the plain mean). Why: a month of cell traffic drifts (on Milan the daily mean of the weekdays
    falls by about 0.2 training std over the 24 training days), and a profile that follows the recent days
    is a better base for the next one (runtime/families/umask/grid_prior.py: the validation sweep and what it did
    to the trained models).

    ``statistic="median"``: the per-slot median of the days instead of the (weighted) mean, the MAE-optimal
    level of a slot for bursty counts (the A1 baseline row ``profile_median_level``); only with ``decay`` 1."""
    if statistic not in PROFILE_STATISTICS:
        raise InputError(f"statistic must be one of {PROFILE_STATISTICS}, got {statistic!r}")
    if statistic == "median" and float(decay) != 1.0:
        raise InputError(f"a median profile has no day weights: decay must be 1, got {decay}")
    D = int(slots_per_day)
    n_days = int(train_end) // D
    if n_days < 1:
        raise InputError(f"a slot-of-day profile needs at least one whole training day ({D} slots), got {train_end}")
    if not 0 <= int(first_weekday) <= 6:
        raise InputError(f"first_weekday must be 0 (Monday) .. 6 (Sunday), got {first_weekday}")
    if not 0.0 < float(decay) <= 1.0:
        raise InputError(f"the profile decay must be in (0, 1], got {decay}")
    days = np.asarray(z, np.float64)[: n_days * D].reshape(n_days, D, -1)              # (days, D, cells)
    we = weekday(np.arange(n_days) * D, D, first_weekday) >= 5
    w = float(decay) ** (n_days - 1 - np.arange(n_days, dtype=np.float64))              # (days,) newest = 1

    def profile(sel: np.ndarray) -> np.ndarray:
        if statistic == "median":
            return np.median(days[sel], axis=0)                                           # (D, cells)
        return np.tensordot(w[sel], days[sel], axes=1) / w[sel].sum()                     # (D, cells)

    every = profile(np.ones(n_days, bool))
    return (profile(~we) if (~we).any() else every), (profile(we) if we.any() else every)
