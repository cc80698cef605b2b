"""The deterministic grid prior and calendar features that the grid DiT refines (issue 10, PROTOCOL A), numpy only.

Shared by training (train/models/umask/grid.py, which re-exports it from train/models/umask/grid_prior.py),
the scorers and the torch-free grid session (runtime/families/umask/grid_session.py), so a bundle builds
exactly the prior the network was trained on.

The paper's DiT (eqs. 28-35) completes the tensor from noise with the evidence as its only input.
On a 5x5 grid with 24 training days and a 2-core CPU that leaves the network to rediscover the
daily profile, the weekly rhythm and the recent level from scratch, and a 1,200-step run did not:
it scored A1 nMAE 0.448, the same as the training-period slot-of-day mean (0.450). This module
gives it what a practitioner would start from; the DiT predicts ``prior + residual`` with a
zero-initialized residual (dit.py ``use_prior``: adaLN-Zero final layer), so an untrained model
returns exactly the prior and training only has to learn what the prior misses. This is the
guidance-signal idea of the U-STS-LLM seed transplanted to U-MASK; the paper has no prior.

Prior (all on the model's standardized scale, fit on the TRAINING period only):

* profile(t) = mean over training days of the same slot of day, separately for weekdays and for
  weekend days (:class:`GridPrior`, ``weekday`` / ``weekend`` (D, cells)). The weekday of absolute
  slot t is ``(first_weekday + t // D) mod 7`` (Milan: slot 0 = Friday 2013-11-01). Without a
  weekend (or weekday) day in training, both are the all-days profile.
* Recency (``profile_decay``, a run setting; runs saved before it have 1 = the plain mean): training day d
  of n weighs ``decay ** (n - 1 - d)``. Milan's traffic drifts over the month (the weekdays' daily mean
  falls by about 0.2 training std from early to late November), so the latest days are the better
  base. On the VALIDATION windows the A1 prior's nMAE / nRMSE fall from 0.3951 / 0.6233 (plain mean) to
  0.3769 / 0.6068 at 0.875, the one value of the sweep 1 .. 0.8 (steps of 0.025) that is lowest (to
  1e-4) on both; 0.85 ties on nMAE and is worse on nRMSE (``python -m umask.bench.accuracy.grid_prior_sweep``
  -> benchmarks/results/grid_prior_sweep.json, which also lists the test figures it never chooses on). An
  expanding-window check on training days 10-23 agrees (A1 prior nMAE 0.452 vs 0.460). The prior is better,
  the trained model is not: the grid DiT retrained over the 0.875 prior scores A1 0.396 (gated 0.386) on
  test against 0.387 (0.371) over the plain one, while on validation the two are level (gated 0.367 vs 0.370;
  docs/families/umask_grid.md), so the grid trainer keeps 1 as its default and ``--profile-decay`` stays an option. Swapping the recency-weighted prior under a network
  trained on the plain one is worse still (validation A1 0.383 vs 0.377, seed 0; a one-off check, no result file): the residual learned to
  correct the plain profile.
* A1 horizon: profile + ``level_weight`` x (mean of history - profile over the last
  ``level_slots`` history slots): the recent level shift, held over the whole horizon. On the
  VALIDATION windows (days 25-27; plain-mean profiles, before ``profile_decay``) the weekday/weekend
  profile alone gave nMAE 0.441 (all-days profile 0.461), the level term with 36 slots and weight
  0.5 gave 0.395; larger windows / weights and a decay over the horizon were not better there.
  The constants are chosen on validation, never on test.
* A2 window: per cell linear interpolation between the observed entries of the window (the
  protocol baseline, :func:`gridimpute.linear_interpolation_impute`), the profile where a cell has
  no observed entry in the window. On validation, interpolating the deviation from the profile
  instead was not better on test-like days (PROTOCOL baselines: LI 0.282 nMAE on test).
  ``a2="lowrank"`` (train option ``--a2-prior lowrank``): the ``lowrank_interpolation`` baseline
  instead, half a rank-5 completion of the window across cells and half the interpolation
  (runtime/core/gridimpute.py; test nMAE 0.253 against 0.282), so the prior already uses the cells
  observed at the same slot. ``a2="lowrank_profile"``: the ``profile_lowrank_interpolation`` row, that completion
  blended with the same completion of the window's deviation from the profile
  (``gridimpute.profile_lowrank_impute``; test nMAE 0.247).
* Frame positions outside the window (the day-aligned frame holds 4 days) get the profile, so the
  prior channel always carries the time of day and the weekday type.

Calendar features (:func:`calendar`): the day type (weekday, weekend) of each of the frame's 4
days, one-hot = 8 values, the grid model's conditioning width. They enter the DiT as e_u (eq. 34's
user embedding slot; a grid has no user profile, so the slot is free): the DiT's ``user_embedder``
MLP maps them into the adaLN conditioning of every block. Together with the day-aligned frame
(frame position = slot of day, in the fixed positional embedding) the network knows the slot of
day and the day type of every token. Why not the weekday itself: 24 training days hold 3-4 of each
weekday, and a per-weekday profile is worse than the weekday / weekend one on VALIDATION (A1
nMAE 0.508 vs 0.441); a first run with one-hot weekdays (7 + weekend flag per day) learned
residuals that helped on validation (A1 0.382 vs the prior's 0.399 at step 400) but hurt on the
later test days (0.417 vs 0.394 at step 700, its best validation step), consistent with
per-weekday residuals fitted to 3-4 days each (one of the four training Fridays is the 1 November
holiday). The day type is what the prior already distinguishes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from umask.runtime.core import gridimpute, gridscale
from umask.runtime.core.errors import InputError

__all__ = ["A2_PRIORS", "A2_PRIOR_ROWS", "CALENDAR_DIM", "DAYS_PER_FRAME", "LEVEL_SLOTS_OF_DAY", "LEVEL_WEIGHT", "MILAN_FIRST_WEEKDAY",
           "GridPrior",
           "ALPHAS", "calendar", "choose_alphas", "gate", "weekday"]

A2_PRIORS: tuple[str, ...] = ("interpolation", "lowrank", "lowrank_profile")
A2_PRIOR_ROWS: dict[str, str] = {"interpolation": "linear interpolation", "lowrank": "lowrank_interpolation",
                                 "lowrank_profile": "profile_lowrank_interpolation"}
MILAN_FIRST_WEEKDAY: int = 4          # 2013-11-01 (slot 0 of the Milan sample) was a Friday; Monday = 0
DAYS_PER_FRAME: int = 4               # the grid frame is 4 days (grid.GridGeometry.frame)
CALENDAR_DIM: int = 2 * DAYS_PER_FRAME  # one-hot day type (weekday, weekend) per frame day = 8
LEVEL_SLOTS_OF_DAY: float = 0.25      # A1 level term over the last quarter day (Milan: 36 slots = 6 h)
LEVEL_WEIGHT: float = 0.5             # ... with weight 0.5 (validation sweep, module doc)


weekday = gridscale.weekday            # (slots, slots_per_day, first_weekday) -> Monday = 0 .. Sunday = 6


def calendar(frame_first_slots: np.ndarray, slots_per_day: int, first_weekday: int) -> np.ndarray:
    """(n, 8) float32: for each of the 4 days of a day-aligned frame starting at absolute slot
    ``frame_first_slots`` (n,) (a local midnight, may be negative), one-hot day type (weekday,
    weekend)."""
    first = np.asarray(frame_first_slots, np.int64).reshape(-1)
    days = first[:, None] // int(slots_per_day) + np.arange(DAYS_PER_FRAME)[None, :]      # (n, 4)
    weekend = ((int(first_weekday) + days) % 7 >= 5).astype(np.float32)
    return np.stack([1.0 - weekend, weekend], axis=2).reshape(len(first), CALENDAR_DIM)


@dataclass(frozen=True)
class GridPrior:
    """The deterministic prior of a grid (module doc): weekday / weekend slot-of-day profiles of
    the training period plus the A1 level term and the A2 interpolation.

    weekday, weekend: float64 (D, cells) profiles; slots_per_day D; first_weekday of absolute slot
    0; level_slots / level_weight: the A1 level term."""

    weekday: np.ndarray
    weekend: np.ndarray
    slots_per_day: int
    first_weekday: int
    level_slots: int
    level_weight: float
    a2: str = "interpolation"

    @classmethod
    def fit(cls, z: np.ndarray, train_end: int, slots_per_day: int, first_weekday: int = 0, *,
            level_slots: int | None = None, level_weight: float = LEVEL_WEIGHT, a2: str = "interpolation",
            profile_decay: float = 1.0) -> GridPrior:
        """Profiles from the whole training days of ``z`` (slots, cells) before ``train_end``, day d of n weighted
        ``profile_decay ** (n - 1 - d)`` (1 = the plain mean; module doc)."""
        wk_prof, we_prof = gridscale.day_type_profiles(z, train_end, slots_per_day, first_weekday, profile_decay)
        return cls.of_profiles(wk_prof, we_prof, slots_per_day, first_weekday, level_slots=level_slots,
                               level_weight=level_weight, a2=a2)

    @classmethod
    def of_profiles(cls, weekday: np.ndarray, weekend: np.ndarray, slots_per_day: int, first_weekday: int = 0, *,
                    level_slots: int | None = None, level_weight: float = LEVEL_WEIGHT,
                    a2: str = "interpolation") -> GridPrior:
        """The prior over profiles fit elsewhere (``gridscale.day_type_profiles``, e.g. a bundle's GridStats), so the
        exporter and the session build it from the very profiles the bundle stores."""
        if a2 not in A2_PRIORS:
            raise InputError(f"a2 must be one of {A2_PRIORS}, got {a2!r}")
        D = int(slots_per_day)
        if level_slots is None:
            level_slots = max(1, round(LEVEL_SLOTS_OF_DAY * D))
        return cls(weekday, weekend, D, int(first_weekday), int(level_slots), float(level_weight), a2)

    def describe(self) -> dict[str, object]:
        d = asdict(self)
        del d["weekday"], d["weekend"]
        return {"kind": "weekday/weekend slot-of-day profile of the training period; A1 + level term; "
                        f"A2 {A2_PRIOR_ROWS[self.a2]}", **d}

    # ---- pieces ----
    def profile(self, slots: np.ndarray) -> np.ndarray:
        """(...,) absolute slots -> (..., cells) weekday / weekend profile values."""
        slots = np.asarray(slots, np.int64)
        tod = slots % self.slots_per_day
        weekend = weekday(slots, self.slots_per_day, self.first_weekday) >= 5
        return np.where(weekend[..., None], self.weekend[tod], self.weekday[tod])

    def forecast(self, history: np.ndarray, starts: np.ndarray, horizon: int) -> np.ndarray:
        """A1 prior: (n, L, cells) history, (n,) horizon starts -> (n, horizon, cells)."""
        history = np.asarray(history, np.float64)
        starts = np.asarray(starts, np.int64).reshape(-1)
        n, L, _ = history.shape
        k = min(self.level_slots, L)
        past = self.profile(starts[:, None] + np.arange(-k, 0)[None, :])                  # (n, k, cells)
        level = np.nanmean(history[:, L - k:] - past, axis=1, keepdims=True)             # (n, 1, cells)
        level = np.nan_to_num(level, nan=0.0)
        return self.profile(starts[:, None] + np.arange(horizon)[None, :]) + self.level_weight * level

    def impute(self, observed: np.ndarray, hidden: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """A2 prior: (n, L, cells) values (anything at hidden entries), hidden mask -> (n, L, cells):
        observed entries as given, hidden ones linearly interpolated per cell, or with ``a2="lowrank"`` the
        lowrank_interpolation row, with ``a2="lowrank_profile"`` the profile_lowrank_interpolation row (the profile in
        a cell with no observed entry in the window)."""
        observed = np.asarray(observed, np.float64)
        hidden = np.asarray(hidden, bool)
        values = np.where(hidden, 0.0, observed)
        starts = np.asarray(starts, np.int64).reshape(-1)
        window = starts[:, None] + np.arange(observed.shape[1])[None, :]                  # (n, L) absolute slots
        if self.a2 == "lowrank_profile":
            return gridimpute.profile_lowrank_impute(values, hidden, self.profile(window))
        impute = gridimpute.lowrank_interpolation_impute if self.a2 == "lowrank" else gridimpute.linear_interpolation_impute
        out = impute(values, hidden)
        empty = hidden.all(axis=1, keepdims=True)                                         # (n, 1, cells)
        if empty.any():
            out = np.where(empty, self.profile(window), out)
        return out

    # ---- day-aligned frames (grid.forecast_frame / grid.impute_frame layout) ----
    def _frame(self, frame_first: np.ndarray, T: int) -> np.ndarray:
        return self.profile(np.asarray(frame_first, np.int64)[:, None] + np.arange(T)[None, :])  # (n, T, cells)

    def forecast_frame(self, history: np.ndarray, starts: np.ndarray, offset: np.ndarray, T: int,
                       horizon: int) -> np.ndarray:
        """(n, T, cells) prior of A1 frames: the profile at every frame position, the A1 prior on the
        horizon (``offset``: frame position of the first history slot, grid.forecast_frame)."""
        history = np.asarray(history, np.float64)
        starts = np.asarray(starts, np.int64).reshape(-1)
        L = history.shape[1]
        offset = np.asarray(offset, np.int64).reshape(-1)
        out = self._frame(starts - L - offset, T)
        fc = self.forecast(history, starts, horizon)
        for i, o in enumerate(offset):
            out[i, o + L:o + L + horizon] = fc[i]
        return out

    def impute_frame(self, values: np.ndarray, hidden: np.ndarray, starts: np.ndarray, offset: np.ndarray,
                     T: int) -> np.ndarray:
        """(n, T, cells) prior of A2 frames: the profile everywhere, the A2 prior on the window."""
        starts = np.asarray(starts, np.int64).reshape(-1)
        offset = np.asarray(offset, np.int64).reshape(-1)
        out = self._frame(starts - offset, T)
        imp = self.impute(values, hidden, starts)
        L = imp.shape[1]
        for i, o in enumerate(offset):
            out[i, o:o + L] = imp[i]
        return out


# ------------------------------------------------------------------------------------------------
# The per-cell gate between the network and a simple estimator (benchmarks/accuracy/grid_residual_gate.py)
# ------------------------------------------------------------------------------------------------
ALPHAS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


def choose_alphas(model: np.ndarray, other: np.ndarray, truth: np.ndarray, mask: np.ndarray,
                  alphas: Sequence[float] = ALPHAS) -> np.ndarray:
    """(cells,) per cell (last axis) the alpha of ``other + alpha (model - other)`` with the lowest masked
    absolute error on these windows (n, L, cells); ties go to the smaller alpha (the simple estimator).
    Chosen on validation windows only, then frozen (the bundle stores them)."""
    err = np.stack([(np.abs(other + a * (model - other) - truth) * mask).sum((0, 1)) for a in alphas])   # (A, cells)
    return np.asarray(alphas, np.float64)[np.argmin(err, axis=0)]


def gate(model: np.ndarray, other: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """``other + alpha_c (model - other)`` per cell c (last axis) of (n, L, cells) predictions."""
    return other + np.asarray(alphas, np.float64)[None, None, :] * (model - other)
