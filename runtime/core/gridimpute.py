"""Imputation of (slots, cells) windows that the runtime needs as well as the baselines (numpy only).

Moved here from train/baselines/classical.py (which re-exports every name) so that a torch-free runtime
session can build the same guidance base as training: U-STS-LLM with ``guide_prior="lowrank"`` feeds the
network the :func:`lowrank_interpolation_impute` of each imputation window (runtime/families/ustsllm).

Every function works on arrays whose last two axes are (time, cells) and whose leading axes (if any) are
independent windows; ``mask`` is boolean, True = hidden; hidden values are never read; observed entries
come back unchanged; a (window, cell) series with no observed entry at all gets ``fill``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LOWRANK_ITERS", "LOWRANK_RANK", "LOWRANK_SHARE", "PROFILE_LOWRANK_SHARE", "as_series", "check_mask",
           "impute_from_neighbours", "linear_interpolation_impute", "lowrank_impute", "lowrank_interpolation_impute",
           "observed_neighbours", "profile_lowrank_impute", "profile_lowrank_parts"]


def as_series(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (..., slots, cells), got {x.shape}")
    return x


def check_mask(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise ValueError(f"mask must be boolean (True = hidden), got dtype {mask.dtype}")
    if mask.shape != values.shape:
        raise ValueError(f"mask shape {mask.shape} != values shape {values.shape}")
    return mask


def observed_neighbours(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every entry, the time index of the nearest observed entry at or before / at or after it.

    ``mask``: bool (..., slots, cells), True = hidden. Returns ``(prev, next)``, int64 arrays of the
    same shape; ``prev`` is -1 where no observed entry precedes (or is) the entry, ``next`` is
    ``slots`` where none follows. On an observed entry both equal its own index.
    """
    mask = np.asarray(mask, dtype=bool)
    n_t = mask.shape[-2]
    t = np.arange(n_t, dtype=np.int64).reshape((n_t, 1))
    observed = ~mask
    prev = np.maximum.accumulate(np.where(observed, t, -1), axis=-2)
    rev_t = np.where(observed, t, n_t)[..., ::-1, :]
    nxt = np.minimum.accumulate(rev_t, axis=-2)[..., ::-1, :]
    return prev, nxt


def _gather_time(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """values[..., idx[..., t, c], c] for indices already clipped into range."""
    return np.take_along_axis(values, idx, axis=-2)


def impute_from_neighbours(
    values: np.ndarray, mask: np.ndarray, fill: float, choose: str
) -> np.ndarray:
    values = as_series(values, "values")
    mask = check_mask(values, mask)
    n_t = values.shape[-2]
    prev, nxt = observed_neighbours(mask)
    has_prev = prev >= 0
    has_next = nxt < n_t
    # Hidden values must never leak: zero them before any gather (they may also be NaN).
    safe = np.where(mask, 0.0, values)
    v_prev = _gather_time(safe, np.clip(prev, 0, n_t - 1))
    v_next = _gather_time(safe, np.clip(nxt, 0, n_t - 1))
    t = np.arange(n_t, dtype=np.int64).reshape((n_t, 1))
    if choose == "prev":  # carry forward, backward fill at the start
        out = np.where(has_prev, v_prev, v_next)
    elif choose == "nearest":  # ties (equal distance) go to the earlier observation
        d_prev = np.where(has_prev, t - prev, np.iinfo(np.int64).max)
        d_next = np.where(has_next, nxt - t, np.iinfo(np.int64).max)
        out = np.where(d_prev <= d_next, v_prev, v_next)
    elif choose == "linear":
        span = np.where(has_prev & has_next, nxt - prev, 1)
        w = np.where(has_prev & has_next, (t - prev) / np.maximum(span, 1), 0.0)
        inner = v_prev + w * (v_next - v_prev)
        out = np.where(has_prev & has_next, inner, np.where(has_prev, v_prev, v_next))
    else:  # pragma: no cover - internal
        raise ValueError(choose)
    out = np.where(has_prev | has_next, out, float(fill))  # series with no observed entry at all
    return np.where(mask, out, values)


# ------------------------------------------------------------------------------------------------
# Linear interpolation
# ------------------------------------------------------------------------------------------------
def linear_interpolation_impute(values: np.ndarray, mask: np.ndarray, *, fill: float = 0.0) -> np.ndarray:
    """Per cell, interpolate linearly in time between the observed entries around each gap.

    Before the first / after the last observed entry the nearest observed value is held constant.
    Shapes and ``fill`` as the module doc.
    """
    return impute_from_neighbours(values, mask, fill, "linear")


# ------------------------------------------------------------------------------------------------
# Low-rank completion across cells, blended with linear interpolation
# ------------------------------------------------------------------------------------------------
# Chosen on the Milan VALIDATION windows (days 25-27, PROTOCOL A2 masks) from rank {2, 3, 5, 8, 12} x share
# {0.3, 0.5, 0.7} x iterations {10, 20, 30, 50}: `umask.bench.accuracy.grid.choose_lowrank`, recorded in
# milan_baselines.json's lowrank_interpolation row; a test re-runs the choice. Interpolation alone scored 0.329
# nMAE there, the chosen blend 0.290: the two parts make different errors (one uses time, the other the cells
# observed at the same slot). The iteration count acts as regularization: rank 8 / share 0.5 scored 0.295 after 10
# iterations and 0.301 after 80 (the completion starts to fit the observed noise).
LOWRANK_RANK: int = 5
LOWRANK_SHARE: float = 0.5
LOWRANK_ITERS: int = 10


def lowrank_impute(values: np.ndarray, mask: np.ndarray, *, rank: int = LOWRANK_RANK, iters: int = LOWRANK_ITERS,
                   fill: float = 0.0) -> np.ndarray:
    """Hard impute (iterative truncated SVD) of each window's (time, cells) matrix.

    Start from :func:`linear_interpolation_impute`; then ``iters`` times: X <- the best rank-``rank``
    approximation of X (truncated SVD, batched over leading axes), with the observed entries put back.
    Returns the observed entries unchanged and the last low-rank estimate on the hidden ones. A rank at
    least min(time, cells) reproduces the start. Shapes and ``fill`` (a cell with no observed entry in the
    window) as the module doc.
    """
    values = as_series(values, "values")
    mask = check_mask(values, mask)
    return _hard_impute(values, mask, linear_interpolation_impute(values, mask, fill=fill), rank, iters, fill)


def _hard_impute(values: np.ndarray, mask: np.ndarray, start: np.ndarray, rank: int, iters: int,
                 fill: float) -> np.ndarray:
    """:func:`lowrank_impute` from ``start`` (the interpolation of the same values and mask, computed by the caller)."""
    if isinstance(rank, bool) or int(rank) < 1 or int(iters) < 0:
        raise ValueError(f"rank must be >= 1 and iters >= 0, got {rank} / {iters}")
    r = min(int(rank), values.shape[-2], values.shape[-1])
    observed = np.where(mask, 0.0, values)                        # hidden entries never read
    x = start
    for _ in range(int(iters)):
        u, s, vt = np.linalg.svd(x, full_matrices=False)           # (..., T, k) (..., k) (..., k, C)
        low = (u[..., :r] * s[..., None, :r]) @ vt[..., :r, :]      # (..., T, C)
        x = np.where(mask, low, observed)
    empty = mask.all(axis=-2, keepdims=True)                       # a cell with nothing observed keeps ``fill``
    return np.where(empty, float(fill), x)


def lowrank_interpolation_impute(values: np.ndarray, mask: np.ndarray, *, rank: int = LOWRANK_RANK,
                                 share: float = LOWRANK_SHARE, iters: int = LOWRANK_ITERS,
                                 fill: float = 0.0) -> np.ndarray:
    """``share`` x :func:`lowrank_impute` + (1 - ``share``) x :func:`linear_interpolation_impute` on the
    hidden entries; observed entries unchanged. The interpolation is computed once and is also the
    completion's start."""
    if not 0.0 <= float(share) <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    values = as_series(values, "values")
    mask = check_mask(values, mask)
    li = linear_interpolation_impute(values, mask, fill=fill)
    lr = _hard_impute(values, mask, li, rank, iters, fill)
    return np.where(mask, float(share) * lr + (1.0 - float(share)) * li, values)


# ------------------------------------------------------------------------------------------------
# The same completion twice: of the window, and of its deviation from the day-type profile
# ------------------------------------------------------------------------------------------------
# Share of the plain completion, chosen on the Milan VALIDATION windows (PROTOCOL A2 masks) from {0.3, 0.4, 0.5,
# 0.6, 0.7}: `umask.bench.accuracy.grid.choose_profile_share`, recorded in milan_baselines.json's
# profile_lowrank_interpolation row; validation nMAE 0.290 (the plain completion) -> 0.282 at 0.6.
PROFILE_LOWRANK_SHARE: float = 0.6


def profile_lowrank_impute(values: np.ndarray, mask: np.ndarray, profile: np.ndarray, *,
                           share: float = PROFILE_LOWRANK_SHARE) -> np.ndarray:
    """``share`` x :func:`lowrank_interpolation_impute` of the window + (1 - ``share``) x (``profile`` + the same
    completion of the window's deviation from ``profile``), on the hidden entries; observed entries unchanged.

    ``profile``: the slot-of-day profile of each slot's day type, fitted on a training period (same shape as
    ``values``). Why both: the completion of the raw window rebuilds a hidden entry from its own cell's
    neighbours in time and the other cells at the same slot; the completion of the deviation does the same for
    what the usual day of that cell does not explain, and falls back on the profile where little is observed.
    Their errors differ (PROTOCOL A2: test nMAE 0.253 for the first alone, 0.272 for the second alone, 0.247 for
    the validation-chosen blend). A (window, cell) series with no observed entry gets the profile."""
    if not 0.0 <= float(share) <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    values = as_series(values, "values")
    mask = check_mask(values, mask)
    plain, resid = profile_lowrank_parts(values, mask, profile)
    out = np.where(mask, float(share) * plain + (1.0 - float(share)) * resid, values)
    return np.where(mask.all(axis=-2, keepdims=True), resid, out)


def profile_lowrank_parts(values: np.ndarray, mask: np.ndarray, profile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two completions :func:`profile_lowrank_impute` blends: (:func:`lowrank_interpolation_impute` of the window,
    ``profile`` + the same completion of the window's deviation from it). In a series with no observed entry the
    second is the profile itself. Exposed so that a sweep over the share computes them once."""
    values = as_series(values, "values")
    mask = check_mask(values, mask)
    p = np.asarray(profile, np.float64)
    if p.shape != values.shape:
        raise ValueError(f"profile must have the values' shape {values.shape}, got {p.shape}")
    dev = np.where(mask, 0.0, values - p)                                            # hidden entries never read
    return lowrank_interpolation_impute(values, mask), p + lowrank_interpolation_impute(dev, mask)
