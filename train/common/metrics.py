"""Metric functions shared by every model and baseline (numpy only).

Error metrics (PROTOCOL.md "Common rules"):

- :func:`mae`, :func:`rmse` over all entries, or only where a boolean ``mask`` is True
  (``masked_mae`` / ``masked_rmse`` are the same functions under the names used in the protocol);
- :func:`active_mask`: entries whose ground truth is non-zero, for the "active entries" rows.

Ranking metrics for one query (a ranked list of ids, best first, no duplicates, vs the non-empty
set of relevant ids), binary relevance:

- :func:`recall_at_k` = |top-k ∩ relevant| / |relevant|
- :func:`ndcg_at_k` = DCG@k / IDCG@k with gain 1 / log2(rank + 1), rank 1-based
- :func:`mrr_at_k` = 1 / rank of the first relevant id in the top k, 0 if none

Average per-query values over queries to report a data set figure.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import numpy as np

Ids = Iterable[Hashable] | np.ndarray  # item / category / app ids (any hashable; numpy arrays allowed)


def _selected_errors(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """pred - truth on the evaluated entries (all, or where mask is True), as a flat float64 array."""
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if pred.shape != truth.shape:
        raise ValueError(f"pred shape {pred.shape} != truth shape {truth.shape}")
    diff = pred - truth
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != np.bool_:
            raise ValueError(f"mask must be boolean, got dtype {mask.dtype}")
        try:
            mask = np.broadcast_to(mask, diff.shape)
        except ValueError:
            raise ValueError(f"mask shape {mask.shape} does not broadcast to {diff.shape}") from None
        diff = diff[mask]
    diff = diff.reshape(-1)
    if diff.size == 0:
        raise ValueError("no entries to evaluate (empty input or all-False mask)")
    if not np.all(np.isfinite(diff)):
        raise ValueError("prediction or truth is NaN/inf on evaluated entries")
    return diff


def mae(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute error over all entries, or over entries where ``mask`` is True."""
    return float(np.mean(np.abs(_selected_errors(pred, truth, mask))))


def rmse(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Root mean squared error over all entries, or over entries where ``mask`` is True."""
    return float(np.sqrt(np.mean(np.square(_selected_errors(pred, truth, mask)))))


masked_mae = mae
masked_rmse = rmse


def active_mask(truth: np.ndarray) -> np.ndarray:
    """Boolean mask of active entries: ground truth != 0."""
    return np.asarray(truth) != 0


def _as_list(ids: Iterable[Hashable] | np.ndarray) -> list[Hashable]:
    return np.asarray(ids).reshape(-1).tolist() if isinstance(ids, np.ndarray) else list(ids)


def _top_k(ranked: Ids, relevant: Ids, k: int) -> tuple[list[Hashable], set[Hashable]]:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ranked_list = _as_list(ranked)
    if len(set(ranked_list)) != len(ranked_list):
        raise ValueError("ranked list contains duplicate ids")
    rel = set(_as_list(relevant))
    if not rel:
        raise ValueError("relevant set is empty; the metric is undefined")
    return ranked_list[:k], rel


def recall_at_k(ranked: Ids, relevant: Ids, k: int) -> float:
    """Fraction of the relevant ids found in the top k of ``ranked``."""
    top, rel = _top_k(ranked, relevant, k)
    return sum(1 for x in top if x in rel) / len(rel)


def ndcg_at_k(ranked: Ids, relevant: Ids, k: int) -> float:
    """Binary-relevance NDCG@k: sum over hits of 1/log2(rank+1), divided by its ideal value."""
    top, rel = _top_k(ranked, relevant, k)
    dcg = sum(1.0 / np.log2(rank + 1) for rank, x in enumerate(top, start=1) if x in rel)
    idcg = sum(1.0 / np.log2(rank + 1) for rank in range(1, min(len(rel), k) + 1))
    return float(dcg / idcg)


def mrr_at_k(ranked: Ids, relevant: Ids, k: int) -> float:
    """Reciprocal rank of the first relevant id within the top k, else 0."""
    top, rel = _top_k(ranked, relevant, k)
    for rank, x in enumerate(top, start=1):
        if x in rel:
            return 1.0 / rank
    return 0.0
