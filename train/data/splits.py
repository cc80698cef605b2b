"""The evaluation splits of ``docs/PROTOCOL.md`` as code (pure numpy, no torch).

Milan grid (PROTOCOL A), on the (4320 slots x 25 cells) internet matrix:

- chronological split 8:1:1 over days: train slots 0..3455, validation 3456..3887, test 3888..4319;
- :func:`fit_scaler`: per-cell mean / standard deviation over the training period only;
- A1 forecasting (:func:`forecast_starts`, :func:`forecast_windows`): history L = 288, horizon
  S = 144. A window is identified by its horizon start s (history = s-L .. s-1, horizon =
  s .. s+S-1) and belongs to the split that contains its whole horizon; the history may reach back
  into earlier periods but not before slot 0. Test: s = 3888 .. 4176 (289 windows);
  validation: s = 3456 .. 3744 (289); train: s = 288 .. 3312 (3025).
- A2 imputation (:func:`imputation_starts`, :func:`imputation_mask`): windows of 288 slots lying
  wholly inside the split, stride 1; test: s = 3888 .. 4032 (145 windows). The mask of window index
  i (0-based position in that list) comes from ``numpy.random.default_rng(1000 + i)``: first
  ``p = rng.uniform(0.7, 0.8)``, then ``mask = rng.random((288, 25)) < p`` (True = hidden). The
  validation windows use the same recipe with their own 0-based index.

Any grid (``train/data/grids.py``): :func:`grid_splits` cuts a grid of any length and slot size into
the same chronological 8:1:1 over whole days (Milan's 30 days give exactly :data:`MILAN_SPLITS`),
and the window functions take ``splits=`` (None = Milan) with lengths scaled to the grid's day
(:func:`a1_lengths`: 2 days of history -> 1 day of horizon; :func:`a2_length`: 2-day windows).

Taobao (PROTOCOL C): :func:`leave_one_out`, per user by time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from umask.runtime.core import gridscale
from umask.runtime.core.errors import InputError

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# Milan constants (docs/PROTOCOL.md section A). Ranges are half-open [start, end).
# ------------------------------------------------------------------------------------------------
MILAN_N_SLOTS: int = 4320
MILAN_N_CELLS: int = 25
SLOTS_PER_DAY: int = 144
MILAN_SPLITS: dict[str, tuple[int, int]] = {
    "train": (0, 3456),  # days 1-24
    "val": (3456, 3888),  # days 25-27
    "test": (3888, 4320),  # days 28-30
}
A1_HISTORY: int = 288  # 48 h of 10-minute slots
A1_HORIZON: int = 144  # 24 h
A2_WINDOW: int = 288  # imputation window length
A2_P_RANGE: tuple[float, float] = (0.70, 0.80)  # per-window missing probability ~ Uniform(0.7, 0.8)
A2_SEED_BASE: int = 1000  # seed of window i = 1000 + i

Split = Literal["train", "val", "test"]
Splits = Mapping[str, tuple[int, int]]

A1_HISTORY_DAYS: int = 2  # A1 on any grid: 2 days of history ...
A1_HORIZON_DAYS: int = 1  # ... -> 1 day of horizon
A2_WINDOW_DAYS: int = 2  # A2 on any grid: 2-day windows
EVAL_FRACTION: float = 0.1  # validation and test each get 10 % of the whole days (8:1:1)


def _split_range(split: str, splits: Splits | None = None) -> tuple[int, int]:
    table = MILAN_SPLITS if splits is None else splits
    if split not in table:
        raise ValueError(f"unknown split {split!r}; expected one of {tuple(table)}")
    lo, hi = table[split]
    return int(lo), int(hi)


# ------------------------------------------------------------------------------------------------
# Any grid: splits over whole days and window lengths in days
# ------------------------------------------------------------------------------------------------
def a1_lengths(slots_per_day: int) -> tuple[int, int]:
    """(history, horizon) of A1 on a grid with ``slots_per_day`` slots a day (Milan: 288, 144)."""
    return A1_HISTORY_DAYS * int(slots_per_day), A1_HORIZON_DAYS * int(slots_per_day)


def a2_length(slots_per_day: int) -> int:
    """Length of an A2 imputation window on a grid with ``slots_per_day`` slots a day (Milan: 288)."""
    return A2_WINDOW_DAYS * int(slots_per_day)


def grid_splits(n_slots: int, slots_per_day: int) -> dict[str, tuple[int, int]]:
    """Chronological 8:1:1 split over WHOLE days of a grid with ``n_slots`` slots.

    Validation and test get ``max(1, floor(0.1 * days))`` days each (Milan: 30 days -> 3 / 3, i.e.
    exactly :data:`MILAN_SPLITS`), training the remaining earlier days. Slots after the last whole
    day belong to no split (logged). Raises :class:`InputError` when the training period cannot
    hold one A1 window (2 days of history + 1 day of horizon, so at least 5 days in all).
    """
    n_slots, slots_per_day = int(n_slots), int(slots_per_day)
    if slots_per_day < 1:
        raise InputError(f"slots_per_day must be >= 1, got {slots_per_day}")
    n_days = n_slots // slots_per_day
    n_eval = max(1, int(n_days * EVAL_FRACTION + 1e-9))
    n_train = n_days - 2 * n_eval
    need = A1_HISTORY_DAYS + A1_HORIZON_DAYS
    if n_train < need:
        raise InputError(
            f"the grid has {n_slots} slots = {n_days} whole days of {slots_per_day} slots; the 8:1:1 split "
            f"needs at least {need} training days (one A1 window: {A1_HISTORY_DAYS} days of history + "
            f"{A1_HORIZON_DAYS} of horizon) plus 1 validation and 1 test day, i.e. >= {need + 2} days"
        )
    rest = n_slots - n_days * slots_per_day
    if rest:
        log.warning("the last %d slots do not fill a whole day (%d slots) and belong to no split", rest, slots_per_day)
    train_end = n_train * slots_per_day
    val_end = train_end + n_eval * slots_per_day
    return {"train": (0, train_end), "val": (train_end, val_end), "test": (val_end, val_end + n_eval * slots_per_day)}


def _check_matrix(matrix: np.ndarray, min_slots: int) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"expected a (slots, cells) matrix, got shape {matrix.shape}")
    if matrix.shape[0] < min_slots:
        raise ValueError(f"matrix has {matrix.shape[0]} slots, need at least {min_slots}")
    return matrix


# ------------------------------------------------------------------------------------------------
# Scaler
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scaler:
    """Per-cell standardization z = (x - mean) / std; mean, std: float64 (cells,)."""

    mean: np.ndarray
    std: np.ndarray

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.std

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, dtype=np.float64) * self.std + self.mean


def fit_scaler(matrix: np.ndarray, *, train_end: int | None = None, splits: Splits | None = None) -> Scaler:
    """Fit a per-cell scaler on slots ``0 .. train_end-1`` of a (slots, cells) matrix only.

    ``train_end`` defaults to the end of the training period of ``splits`` (None = Milan, 3456).
    Uses the population standard deviation (ddof=0). A cell that is constant over the training
    period gets std 1 (and a warning) so that transforming never divides by zero.
    """
    if train_end is None:
        train_end = _split_range("train", splits)[1]
    matrix = _check_matrix(matrix, train_end)
    if not np.all(np.isfinite(matrix[:train_end])):
        raise ValueError("training period contains NaN or inf")
    mean, std = gridscale.fit_cell_scaler(matrix, train_end, floor=False)   # the one implementation
    return Scaler(mean=mean, std=std)


# ------------------------------------------------------------------------------------------------
# A1 forecasting windows
# ------------------------------------------------------------------------------------------------
def forecast_starts(
    split: Split = "test",
    *,
    history: int = A1_HISTORY,
    horizon: int = A1_HORIZON,
    stride: int = 1,
    splits: Splits | None = None,
) -> np.ndarray:
    """Horizon start slots s of the A1 windows of ``split`` (whole horizon inside the split).

    ``splits``: the grid's periods (:func:`grid_splits`); None = Milan's :data:`MILAN_SPLITS`.
    """
    lo, hi = _split_range(split, splits)
    first = max(lo, history)  # the history must not start before slot 0
    last = hi - horizon
    if last < first:
        return np.zeros(0, dtype=np.int64)
    return np.arange(first, last + 1, stride, dtype=np.int64)


@dataclass(frozen=True)
class ForecastWindows:
    """Stacked A1 windows: x (n, history, cells), y (n, horizon, cells), starts (n,) horizon starts."""

    x: np.ndarray
    y: np.ndarray
    starts: np.ndarray

    def __len__(self) -> int:
        return int(self.starts.shape[0])


def forecast_windows(
    matrix: np.ndarray,
    split: Split = "test",
    *,
    history: int = A1_HISTORY,
    horizon: int = A1_HORIZON,
    stride: int = 1,
    splits: Splits | None = None,
) -> ForecastWindows:
    """Cut the A1 windows of ``split`` from a (slots, cells) matrix (copies, float64)."""
    starts = forecast_starts(split, history=history, horizon=horizon, stride=stride, splits=splits)
    matrix = _check_matrix(matrix, _split_range(split, splits)[1])
    hist_idx = starts[:, None] + np.arange(-history, 0)[None, :]
    hor_idx = starts[:, None] + np.arange(horizon)[None, :]
    return ForecastWindows(x=matrix[hist_idx], y=matrix[hor_idx], starts=starts)


# ------------------------------------------------------------------------------------------------
# A2 imputation windows and masks
# ------------------------------------------------------------------------------------------------
def imputation_starts(
    split: Split = "test", *, window: int = A2_WINDOW, stride: int = 1, splits: Splits | None = None
) -> np.ndarray:
    """First slots of the A2 windows lying wholly inside ``split`` (Milan test: 3888 .. 4032)."""
    lo, hi = _split_range(split, splits)
    if hi - lo < window:
        return np.zeros(0, dtype=np.int64)
    return np.arange(lo, hi - window + 1, stride, dtype=np.int64)


def imputation_mask(
    window_index: int, *, window: int = A2_WINDOW, n_cells: int = MILAN_N_CELLS
) -> tuple[float, np.ndarray]:
    """(p, mask) of A2 window ``window_index`` (0-based); mask (window, cells) bool, True = hidden.

    Exactly PROTOCOL.md: rng = default_rng(1000 + i); p = rng.uniform(0.7, 0.8);
    mask = rng.random((288, 25)) < p.
    """
    if window_index < 0:
        raise ValueError(f"window_index must be >= 0, got {window_index}")
    rng = np.random.default_rng(A2_SEED_BASE + int(window_index))
    p = float(rng.uniform(*A2_P_RANGE))
    mask = rng.random((window, n_cells)) < p
    return p, mask


@dataclass(frozen=True)
class ImputationWindows:
    """Stacked A2 windows: truth (n, window, cells), mask (n, window, cells) True = hidden,
    p (n,) the drawn missing probabilities, starts (n,) first slot of each window."""

    truth: np.ndarray
    mask: np.ndarray
    p: np.ndarray
    starts: np.ndarray

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def observed(self, fill: float = 0.0) -> np.ndarray:
        """The model input: truth with hidden entries replaced by ``fill``."""
        return np.where(self.mask, fill, self.truth)


def imputation_windows(
    matrix: np.ndarray, split: Split = "test", *, window: int = A2_WINDOW, splits: Splits | None = None
) -> ImputationWindows:
    """Cut the A2 windows of ``split`` and attach their protocol masks (seed 1000 + window index)."""
    matrix = _check_matrix(matrix, _split_range(split, splits)[1])
    starts = imputation_starts(split, window=window, splits=splits)
    idx = starts[:, None] + np.arange(window)[None, :]
    if not len(starts):
        empty = np.zeros((0, window, matrix.shape[1]))
        return ImputationWindows(truth=empty, mask=empty.astype(bool), p=np.zeros(0), starts=starts)
    ps, masks = zip(*(imputation_mask(i, window=window, n_cells=matrix.shape[1]) for i in range(len(starts))))
    return ImputationWindows(truth=matrix[idx], mask=np.stack(masks), p=np.asarray(ps), starts=starts)


# ------------------------------------------------------------------------------------------------
# Taobao leave-one-out
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LooSplit:
    """Row indices (into the original arrays) of each part; every array is sorted by (user, time).

    order: all rows sorted by (user, timestamp, original row index).
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    order: np.ndarray


def leave_one_out(user: np.ndarray, timestamp: np.ndarray) -> LooSplit:
    """Leave-one-out per user by time (PROTOCOL.md C).

    Rows are ordered per user by timestamp; equal timestamps keep the original row order (the row
    that comes later in the file counts as later). A user's last row is test, the one before it
    validation, the rest train. Users with 2 rows have no training row; a user with a single row
    has only a test row (none occur in the shipped sample, where every user has >= 4 rows).
    """
    user = np.asarray(user).reshape(-1)
    timestamp = np.asarray(timestamp).reshape(-1)
    if user.shape != timestamp.shape:
        raise ValueError(f"user and timestamp differ in length: {user.shape} vs {timestamp.shape}")
    rows = np.arange(len(user))
    order = np.lexsort((rows, timestamp, user))  # last key is primary
    sorted_user = user[order]
    is_last = np.ones(len(order), dtype=bool)
    is_last[:-1] = sorted_user[:-1] != sorted_user[1:]
    is_second_last = np.zeros(len(order), dtype=bool)
    is_second_last[:-1] = is_last[1:] & ~is_last[:-1]
    return LooSplit(
        train=order[~is_last & ~is_second_last],
        val=order[is_second_last],
        test=order[is_last],
        order=order,
    )
