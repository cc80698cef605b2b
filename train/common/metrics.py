"""Metric functions shared by every model and baseline (numpy only).

Error metrics (docs/PROTOCOL.md "Rules for every figure"):

- :func:`mae`, :func:`rmse` over all entries, or only where a boolean ``mask`` is True
  (``masked_mae`` / ``masked_rmse`` are the same functions under the names used in the protocol);
- :func:`active_mask`: entries whose ground truth is non-zero, for the "active entries" rows.

Ranking metrics for one query (a ranked list of ids, best first, no duplicates, vs the non-empty
set of relevant ids), binary relevance:

- :func:`recall_at_k` = |top-k ∩ relevant| / |relevant|
- :func:`ndcg_at_k` = DCG@k / IDCG@k with gain 1 / log2(rank + 1), rank 1-based
- :func:`mrr_at_k` = 1 / rank of the first relevant id in the top k, 0 if none

Average per-query values over queries to report a data set figure.

PROTOCOL v2 B event and probabilistic metrics (docs/PROTOCOL.md, section B):

- :func:`slot_recall_at_k`: per target slot, the share of the slot's active app categories that are
  in the model's top k for that slot, averaged over slots with any activity (app Recall@3);
- :func:`slot_acc_at_1`: per target slot with presence, 1 if the model's top cell is a cell where
  the user is present, averaged over those slots (location Acc@1);
- :func:`crps_samples`: the continuous ranked probability score of an ensemble, per entry
  E|X - y| - 0.5 E|X - X'| (the "energy" form; exact for the empirical distribution of the samples,
  computed in O(n log n) per entry by sorting), averaged over the evaluated entries. For one sample
  it equals the MAE, so a deterministic model's CRPS is its MAE.
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


# ------------------------------------------------------------------------------------------------
# PROTOCOL v2 B: event metrics per target slot, CRPS of samples
# ------------------------------------------------------------------------------------------------
def _slot_pair(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if scores.shape != truth.shape or scores.ndim < 2:
        raise ValueError(f"expected matching (..., slots, items) arrays, got {scores.shape} and {truth.shape}")
    if not (np.all(np.isfinite(scores)) and np.all(np.isfinite(truth))):
        raise ValueError("scores or truth is NaN/inf")
    return scores.reshape(-1, scores.shape[-1]), truth.reshape(-1, truth.shape[-1])


def slot_recall_at_k(scores: np.ndarray, truth: np.ndarray, k: int) -> float | None:
    """Mean over slots with activity of |top-k(scores) ∩ active(truth)| / |active(truth)|.

    ``scores`` and ``truth`` are (..., slots, items); the last axis is the item axis (app categories).
    Ties in the scores break by the lower item index (stable sort), so a constant predictor is scored
    deterministically. Returns None when no slot has activity.
    """
    s, y = _slot_pair(scores, truth)
    if not 1 <= k <= s.shape[1]:
        raise ValueError(f"k must be in [1, {s.shape[1]}], got {k}")
    active = y > 0                                             # (N, K)
    rows = active.any(axis=1)
    if not rows.any():
        return None
    top = np.argsort(-s[rows], axis=1, kind="stable")[:, :k]   # (N', k)
    hit = np.take_along_axis(active[rows], top, axis=1).sum(axis=1)
    return float(np.mean(hit / active[rows].sum(axis=1)))


def slot_acc_at_1(scores: np.ndarray, truth: np.ndarray) -> float | None:
    """Mean over slots with presence of 1[truth at argmax(scores) > 0]; (..., slots, cells) arrays.

    Returns None when no slot has presence.
    """
    s, y = _slot_pair(scores, truth)
    rows = (y > 0).any(axis=1)
    if not rows.any():
        return None
    top = np.argmax(s[rows], axis=1)                           # first maximum: stable tie-break
    return float(np.mean(y[rows][np.arange(top.size), top] > 0))


def crps_samples(samples: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean CRPS of an ensemble: ``samples`` is (n, *truth.shape); evaluated where ``mask`` is True.

    Per entry, with the samples sorted x_(1) <= ... <= x_(n):
    CRPS = mean_i |x_i - y| - (1 / n^2) sum_i (2i - n - 1) x_(i)   (the second term is 0.5 E|X - X'|).
    """
    x = np.asarray(samples, dtype=np.float64)
    y = np.asarray(truth, dtype=np.float64)
    if x.ndim != y.ndim + 1 or x.shape[1:] != y.shape or x.shape[0] < 1:
        raise ValueError(f"samples must be (n, *{y.shape}), got {x.shape}")
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype != np.bool_:
            raise ValueError(f"mask must be boolean, got dtype {m.dtype}")
        m = np.broadcast_to(m, y.shape)
        x, y = x[:, m], y[m]                                   # (n, E), (E,)
    else:
        x, y = x.reshape(x.shape[0], -1), y.reshape(-1)
    if y.size == 0:
        raise ValueError("no entries to evaluate (empty input or all-False mask)")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("samples or truth is NaN/inf on evaluated entries")
    n = x.shape[0]
    term1 = np.mean(np.abs(x - y[None]), axis=0)               # (E,)
    xs = np.sort(x, axis=0)
    w = (2 * np.arange(1, n + 1) - n - 1)[:, None]             # (n, 1)
    term2 = np.sum(w * xs, axis=0) / (n * n)                   # (E,) = 0.5 E|X - X'|
    return float(np.mean(term1 - term2))


# ------------------------------------------------------------------------------------------------
# PROTOCOL v2 C (and D): full ranking of one held-out target per query, ties counted honestly
# ------------------------------------------------------------------------------------------------
def full_ranking_metrics(scores: np.ndarray, target: np.ndarray, ks: Iterable[int] = (10, 20)) -> dict[str, np.ndarray]:
    """Per-query Recall@k and NDCG@k of one relevant id per query, ranked over ALL columns.

    scores (B, N): higher is better; target (B,): the relevant column of each row. Ties are not
    broken in the model's favor: with g columns scoring strictly higher than the target and t other
    columns scoring exactly the same, the target's rank is taken as uniform over g+1 .. g+t+1 (the
    expectation over random tie-breaking), so a constant score gives Recall@k = k / N, not 1.
    Returns {"recall@k": (B,), "ndcg@k": (B,), "rank": (B,) mean 1-based rank}; average over rows for
    a data-set figure. With one relevant id IDCG = 1, so NDCG@k = E[1 / log2(rank + 1); rank <= k].
    """
    s = np.asarray(scores)
    tgt = np.asarray(target, dtype=np.int64).reshape(-1)
    if s.ndim != 2 or s.shape[0] != tgt.shape[0]:
        raise ValueError(f"scores must be (B, N) with B = len(target), got {s.shape} and {tgt.shape}")
    if tgt.size and (tgt.min() < 0 or tgt.max() >= s.shape[1]):
        raise ValueError(f"target ids must lie in [0, {s.shape[1]}), got {tgt.min()}..{tgt.max()}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN/inf")
    ts = s[np.arange(s.shape[0]), tgt][:, None]                   # (B, 1)
    greater = np.sum(s > ts, axis=1)                               # (B,)
    ties = np.sum(s == ts, axis=1) - 1                             # (B,) other columns tied with the target
    out: dict[str, np.ndarray] = {"rank": greater + 1 + ties / 2.0}
    for k in ks:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        n_pos = ties + 1
        inside = np.clip(k - greater, 0, n_pos)                    # positions g+1..min(k, g+t+1)
        out[f"recall@{k}"] = inside / n_pos
        ndcg = np.zeros(len(tgt))
        for i in np.nonzero(inside)[0]:
            pos = np.arange(greater[i] + 1, greater[i] + inside[i] + 1)
            ndcg[i] = np.sum(1.0 / np.log2(pos + 1)) / n_pos[i]
        out[f"ndcg@{k}"] = ndcg
    return out


def group_max_scores(scores: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Scores of groups (e.g. item categories) as the best score of their members: (B, N) -> (B, n_groups).

    Ranking groups by this score is the order in which groups first appear in the item ranking, so
    category-level Recall@k asks whether the target's category is among the first k distinct
    categories of the ranked items. Groups with no member score -inf.
    """
    s = np.asarray(scores)
    g = np.asarray(groups, dtype=np.int64).reshape(-1)
    if s.ndim != 2 or s.shape[1] != g.shape[0]:
        raise ValueError(f"groups must give one group per column: scores {s.shape}, groups {g.shape}")
    if g.size and (g.min() < 0 or g.max() >= n_groups):
        raise ValueError(f"group ids must lie in [0, {n_groups})")
    order = np.argsort(g, kind="stable")
    sg = g[order]
    starts = np.flatnonzero(np.r_[True, sg[1:] != sg[:-1]])        # first column of each present group
    out = np.full((s.shape[0], n_groups), -np.inf, dtype=np.float64)
    out[:, sg[starts]] = np.maximum.reduceat(s[:, order], starts, axis=1)
    return out
