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

Taobao (PROTOCOL C): :func:`leave_one_out`, per user by time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# Milan constants (PROTOCOL.md section A). Ranges are half-open [start, end).
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


def _split_range(split: str) -> tuple[int, int]:
    if split not in MILAN_SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {tuple(MILAN_SPLITS)}")
    return MILAN_SPLITS[split]


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


def fit_scaler(matrix: np.ndarray, *, train_end: int = MILAN_SPLITS["train"][1]) -> Scaler:
    """Fit a per-cell scaler on slots ``0 .. train_end-1`` of a (slots, cells) matrix only.

    Uses the population standard deviation (ddof=0). A cell that is constant over the training
    period gets std 1 (and a warning) so that transforming never divides by zero.
    """
    matrix = _check_matrix(matrix, train_end)
    train = matrix[:train_end]
    if not np.all(np.isfinite(train)):
        raise ValueError("training period contains NaN or inf")
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    flat = std == 0
    if np.any(flat):
        log.warning("cells %s are constant in the training period; using std = 1", np.flatnonzero(flat).tolist())
        std = np.where(flat, 1.0, std)
    return Scaler(mean=mean, std=std)


# ------------------------------------------------------------------------------------------------
# A1 forecasting windows
# ------------------------------------------------------------------------------------------------
def forecast_starts(
    split: Split = "test", *, history: int = A1_HISTORY, horizon: int = A1_HORIZON, stride: int = 1
) -> np.ndarray:
    """Horizon start slots s of the A1 windows of ``split`` (whole horizon inside the split)."""
    lo, hi = _split_range(split)
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
) -> ForecastWindows:
    """Cut the A1 windows of ``split`` from a (slots, cells) matrix (copies, float64)."""
    starts = forecast_starts(split, history=history, horizon=horizon, stride=stride)
    matrix = _check_matrix(matrix, _split_range(split)[1])
    hist_idx = starts[:, None] + np.arange(-history, 0)[None, :]
    hor_idx = starts[:, None] + np.arange(horizon)[None, :]
    return ForecastWindows(x=matrix[hist_idx], y=matrix[hor_idx], starts=starts)


# ------------------------------------------------------------------------------------------------
# A2 imputation windows and masks
# ------------------------------------------------------------------------------------------------
def imputation_starts(split: Split = "test", *, window: int = A2_WINDOW, stride: int = 1) -> np.ndarray:
    """First slots of the A2 windows lying wholly inside ``split`` (test: 3888 .. 4032)."""
    lo, hi = _split_range(split)
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


def imputation_windows(matrix: np.ndarray, split: Split = "test", *, window: int = A2_WINDOW) -> ImputationWindows:
    """Cut the A2 windows of ``split`` and attach their protocol masks."""
    matrix = _check_matrix(matrix, _split_range(split)[1])
    starts = imputation_starts(split, window=window)
    idx = starts[:, None] + np.arange(window)[None, :]
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
