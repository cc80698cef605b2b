"""Repeat / co-occurrence prior over the item table: numpy only, shared by training, the baseline and the runtime.

This is a DEVIATION from paper 003 (documented in docs/families/fatsmb.md): the paper's model scores
items by the decoder alone. On the real Taobao sample 31 % of the test targets are items of the
user's own history and 54 % of the test items never occur in the training rows, so a network that
learns item embeddings from 82k training rows cannot rank them; "recent items" and item
co-occurrence are ~8x ahead of every learned model. A practitioner would give the model the prior a
repeat-aware recommender has (RepeatNet, Ren et al. 2019: a repeat mode next to an explore mode).
We add it as a residual on the logits, with learned non-negative gains per target behavior b:

    score_b(j) = a_b * decoder(z)_j + sum_f g_{b,f} * x_f(j)

with the features x_f(j) (all log1p of counts, so a gain is an exponent on a count ratio):

- ``repeat_<beh>``: recency-weighted count of item j in the history under behavior <beh>,
  sum over its occurrences of ``repeat_decay ** age`` (age 0 = the last interaction);
- ``repeat_last``: the same over all behaviors with the fast decay ``last_decay`` (the very last items);
- ``cooc_last`` / ``cooc``: co-occurrence counts C[i, j] of item pairs that follow within ``window``
  steps in the TRAINING sequences (symmetric, self-pairs left out), from the last item only, and
  summed over the last ``n_last`` items with weights ``cooc_decay ** k``;
- ``pop``: log1p of j's interaction count in the training sequences.

Only the history of the query and the tables counted on the training split enter; the validation
and test targets are never counted (tests/test_fatsmb_prior.py). For a training query cut from a
training sequence at position e, :func:`query_features` takes ``future`` = the rest of that sequence
and removes its pairs and counts from the tables, so the gains are fitted on counts that respect
time exactly like the validation and test queries do.

The features of one query are sparse (history items and their co-occurrence neighbors, a few hundred
of 55k); only ``pop`` is dense. ``apply`` adds the prior to a score vector in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from umask.runtime.core.errors import InputError


@dataclass
class PriorConfig:
    """Feature settings (fixed, not learned; the gains are learned)."""

    window: int = 3               # co-occurrence: pairs that follow within this many steps
    n_last: int = 5               # co-occurrence: the last items of the history that vote
    cooc_decay: float = 0.6       # weight of the k-th most recent voting item: cooc_decay ** k
    repeat_decay: float = 0.9     # repeat_<beh>: weight of an occurrence of age a: repeat_decay ** a
    last_decay: float = 0.5       # repeat_last: the same with a fast decay


def feature_names(behaviors: Sequence[str]) -> list[str]:
    """Names of the feature columns, in order; the last one (``pop``) is the dense column."""
    return [f"repeat_{b}" for b in behaviors] + ["repeat_last", "cooc_last", "cooc", "pop"]


class PriorTables:
    """Counts from the training sequences: the co-occurrence CSR (n_items x n_items) and item counts."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, counts: np.ndarray,
                 n_behaviors: int, cfg: PriorConfig) -> None:
        self.indptr, self.indices = np.asarray(indptr, np.int64), np.asarray(indices, np.int64)
        self.data, self.counts = np.asarray(data, np.float32), np.asarray(counts, np.float32)
        self.n_items, self.n_behaviors, self.cfg = len(self.counts), int(n_behaviors), cfg
        if len(self.indptr) != self.n_items + 1 or len(self.indices) != len(self.data):
            raise InputError(f"prior tables: indptr {len(self.indptr)} / indices {len(self.indices)} / data "
                             f"{len(self.data)} do not fit {self.n_items} items")
        self.logpop = np.log1p(self.counts).astype(np.float32)                       # (n_items,) dense column

    @property
    def n_features(self) -> int:
        return self.n_behaviors + 4

    @classmethod
    def build(cls, seqs: Sequence[tuple[np.ndarray, np.ndarray]], n_items: int, n_behaviors: int,
              cfg: PriorConfig | None = None) -> "PriorTables":
        """Count the pairs and items of ``seqs`` (the TRAINING sequences only)."""
        cfg = cfg or PriorConfig()
        a, c = _pairs([np.asarray(s[0], np.int64) for s in seqs], cfg.window)
        key = np.r_[a * n_items + c, c * n_items + a]                                  # symmetric
        uniq, cnt = np.unique(key, return_counts=True)
        rows, cols = uniq // n_items, uniq % n_items
        indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=n_items))]
        counts = np.bincount(np.concatenate([np.asarray(s[0], np.int64) for s in seqs] or [np.zeros(0, np.int64)]),
                             minlength=n_items)
        return cls(indptr, cols, cnt.astype(np.float32), counts, n_behaviors, cfg)

    def arrays(self) -> dict[str, np.ndarray]:
        """What the bundle stores (``prior.npz``)."""
        return {"indptr": self.indptr, "indices": self.indices.astype(np.int32), "data": self.data, "counts": self.counts}

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        s, e = self.indptr[i], self.indptr[i + 1]
        return self.indices[s:e], self.data[s:e]


def _pairs(seqs: Sequence[np.ndarray], window: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, c): every ordered pair (s[p], s[p + lag]), 1 <= lag <= window, with a != c."""
    aa, cc = [], []
    for s in seqs:
        for lag in range(1, window + 1):
            aa.append(s[:-lag])
            cc.append(s[lag:])
    a = np.concatenate(aa) if aa else np.zeros(0, np.int64)
    c = np.concatenate(cc) if cc else np.zeros(0, np.int64)
    keep = a != c                                      # a self-pair is a repeat, not a co-occurrence
    return a[keep], c[keep]


def query_features(t: PriorTables, items: np.ndarray, behaviors: np.ndarray,
                   future: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sparse features of one query: (idx (K,), x (K, F)) with the dense ``pop`` column given as the
    CORRECTION to ``t.logpop`` at idx (zero unless ``future`` is given).

    ``items`` / ``behaviors``: the history (dense ids, oldest first). ``future``: for a training query cut
    from a training sequence, the items of that sequence from the target on; their pairs (with the
    history and among themselves) and counts are taken out of the tables, so nothing at or after the
    target enters (time-respecting counts; None for validation / test queries, whose targets were
    never counted)."""
    cfg, nB = t.cfg, t.n_behaviors
    items, behaviors = np.asarray(items, np.int64), np.asarray(behaviors, np.int64)
    n = len(items)
    age = np.arange(n - 1, -1, -1, dtype=np.float64)                                   # 0 = last
    last = items[::-1][: cfg.n_last]                                                    # most recent first
    cand_parts = [items]
    # co-occurrence rows of the voting items
    rows = [t.row(int(i)) for i in last]
    cand_parts += [r[0] for r in rows]
    fut_pairs = None
    if future is not None and len(future):
        full = np.r_[items, np.asarray(future, np.int64)]
        a, c = _pairs([full], cfg.window)
        lags = range(1, cfg.window + 1)
        pos_a = np.concatenate([np.arange(max(len(full) - lag, 0)) for lag in lags])
        lag_all = np.concatenate([np.full(max(len(full) - lag, 0), lag) for lag in lags])
        keep_self = full[pos_a] != full[pos_a + lag_all]
        late = (pos_a + lag_all)[keep_self] >= n                                        # the pair touches the future
        fut_pairs = (np.r_[a[late], c[late]], np.r_[c[late], a[late]])                 # both orientations
        cand_parts.append(np.asarray(future, np.int64))
    idx = np.unique(np.concatenate(cand_parts))
    pos = {int(j): k for k, j in enumerate(idx)}
    x = np.zeros((len(idx), nB + 4), np.float64)
    where = np.searchsorted(idx, items)
    np.add.at(x, (where, np.clip(behaviors, 0, nB - 1)), cfg.repeat_decay ** age)      # repeat_<beh>
    np.add.at(x[:, nB], where, cfg.last_decay ** age)                                   # repeat_last
    for k, (i, (cols, vals)) in enumerate(zip(last, rows)):
        w = cfg.cooc_decay ** k
        sel = np.searchsorted(idx, cols)
        if k == 0:
            x[sel, nB + 1] += vals
        x[sel, nB + 2] += w * vals
        if fut_pairs is not None:                                                       # remove future pairs
            m = fut_pairs[0] == i
            if m.any():
                s2 = np.array([pos[int(j)] for j in fut_pairs[1][m]])
                if k == 0:
                    np.add.at(x[:, nB + 1], s2, -1.0)
                np.add.at(x[:, nB + 2], s2, -w)
    x[:, nB + 1: nB + 3] = np.maximum(x[:, nB + 1: nB + 3], 0.0)
    x[:, : nB + 3] = np.log1p(x[:, : nB + 3])
    if future is not None and len(future):                                              # pop without the future
        fc = np.bincount(np.searchsorted(idx, np.asarray(future, np.int64)), minlength=len(idx))
        cnt = t.counts[idx].astype(np.float64)
        x[:, nB + 3] = np.log1p(np.maximum(cnt - fc, 0.0)) - np.log1p(cnt)
    return idx, x.astype(np.float32)


def apply(scores: np.ndarray, t: PriorTables, items: np.ndarray, behaviors: np.ndarray, target: int,
          gains: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``scale[target] * scores + prior`` for one query (scores (n_items,) -> new array (n_items,)).
    ``gains`` (n_behaviors, F) and ``scale`` (n_behaviors,) are the fitted non-negative weights."""
    if scores.shape != (t.n_items,):
        raise InputError(f"scores have shape {scores.shape}; the prior tables have {t.n_items} items")
    g = np.asarray(gains, np.float32)[target]
    out = np.float32(scale[target]) * scores.astype(np.float32) + g[-1] * t.logpop
    idx, x = query_features(t, items, behaviors)
    out[idx] += x @ g
    return out
