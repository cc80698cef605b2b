"""Sequential-recommendation baselines on any integer item vocabulary (PROTOCOL v2 C; reusable for D).

Every model here has the same two calls::

    model = SASRec(SASRecConfig(d=64)).fit(train_seqs, n_items, n_behaviors, seed=0, steps=2000)
    scores = model.score(prefixes, target_behavior=None)        # (B, n_items) float32, higher = better

- ``train_seqs`` / ``prefixes``: a list of per-user sequences, each a pair ``(items, behaviors)`` of
  1-D integer arrays in time order (oldest first); ``behaviors`` may be ``None`` (single-behavior
  data). Items are ``0 .. n_items-1``, behaviors ``0 .. n_behaviors-1``.
- ``score`` ranks ALL items (full ranking, nothing sampled, items already in the history are NOT
  removed: repeat interactions are legitimate targets in Taobao and in app usage).
  ``target_behavior`` (B,) optionally names the behavior of the interaction to predict; the models
  that can use it say so, the others ignore it.

Models:

- :class:`Popularity`: interaction counts over the training sequences; ``per_behavior=True`` counts
  only interactions of the target behavior (ties broken by the overall count).
- :class:`RecentItems`: the user's most recent distinct items first (most recent = best), every
  other item after them in popularity order.
- :class:`CoOccurrence`: item-to-item counts of pairs that follow each other within ``window``
  positions in the training sequences; a prefix scores ``sum_j w^j C[last_j, :]`` over its last
  ``n_last`` items (``w`` = recency decay), plus a popularity tie-break far below one count.
- :class:`RepeatCoocBlend` ("blend"): recency-weighted repeat counts per behavior + co-occurrence +
  popularity as log features with non-negative gains per target behavior, fitted on training-split
  queries and selected on validation (`umask.train.baselines.repeat_prior`; FatsMB's prior alone).
- :class:`SASRec` (Kang & McAuley 2018): causal Transformer over item (+ behavior) embeddings with
  learned positions; next-item loss at every position; the last hidden state, plus a learned
  embedding of the target behavior when ``target_aware`` (so it is behavior-specific like the
  protocol's task), is scored against the tied item embeddings.
- :class:`BERT4Rec` (Sun et al. 2019): bidirectional Transformer trained on the Cloze task (mask a
  share of items, predict them); to score, a [mask] token (with the target behavior, when known)
  is appended to the prefix.

Training of the two Transformers: AdamW, random end-crops of the training sequences (so every
position of a sequence longer than ``max_len`` is used), and the exact softmax over all items when
``n_items <= full_softmax_max`` (default: always for these data), on at most ``max_positions`` loss
positions per batch (each row's last one always kept); otherwise a sampled softmax over
``n_negatives`` uniformly drawn items shared by the batch (accidental hits masked). A sampled
softmax with 1,024 of 55k items was tried first: the training loss fell while validation Recall@10
stayed at ~0.005, because items that are rarely drawn as negatives are never pushed down.
Torch runs on one thread unless the caller sets otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

log = logging.getLogger(__name__)

Seq = tuple[np.ndarray, Optional[np.ndarray]]  # (items (L,), behaviors (L,) or None), oldest first


def _check_seqs(seqs: Sequence[Seq], n_items: int, n_behaviors: int, what: str) -> None:
    for u, (items, beh) in enumerate(seqs):
        items = np.asarray(items)
        if items.ndim != 1:
            raise ValueError(f"{what}[{u}]: items must be 1-D, got shape {items.shape}")
        if items.size and (items.min() < 0 or items.max() >= n_items):
            raise ValueError(f"{what}[{u}]: item ids must lie in [0, {n_items}), got {items.min()}..{items.max()}")
        if beh is not None:
            beh = np.asarray(beh)
            if beh.shape != items.shape:
                raise ValueError(f"{what}[{u}]: behaviors {beh.shape} != items {items.shape}")
            if beh.size and (beh.min() < 0 or beh.max() >= n_behaviors):
                raise ValueError(f"{what}[{u}]: behavior ids must lie in [0, {n_behaviors})")


def _target_array(target_behavior, n: int) -> Optional[np.ndarray]:
    if target_behavior is None:
        return None
    tb = np.asarray(target_behavior, dtype=np.int64).reshape(-1)
    if tb.shape[0] != n:
        raise ValueError(f"target_behavior has {tb.shape[0]} entries for {n} prefixes")
    return tb


class SeqRecommender:
    """Common interface: ``fit(...) -> self`` and ``score(prefixes, target_behavior) -> (B, n_items)``."""

    name = "base"
    n_items = 0
    n_behaviors = 1

    def fit(self, seqs: Sequence[Seq], n_items: int, n_behaviors: int = 1, seed: int = 0,
            steps: int = 0) -> "SeqRecommender":
        raise NotImplementedError

    def score(self, prefixes: Sequence[Seq], target_behavior=None) -> np.ndarray:
        raise NotImplementedError


# ------------------------------------------------------------------------------------------------
# Count-based baselines
# ------------------------------------------------------------------------------------------------
def _counts(seqs: Sequence[Seq], n_items: int, n_behaviors: int) -> tuple[np.ndarray, np.ndarray]:
    """Overall item counts (n_items,) and per-behavior counts (n_behaviors, n_items)."""
    total = np.zeros(n_items, dtype=np.float64)
    per = np.zeros((n_behaviors, n_items), dtype=np.float64)
    for items, beh in seqs:
        items = np.asarray(items, dtype=np.int64)
        total += np.bincount(items, minlength=n_items)
        b = np.zeros_like(items) if beh is None else np.asarray(beh, dtype=np.int64)
        np.add.at(per, (b, items), 1.0)
    return total, per


class Popularity(SeqRecommender):
    """Most interacted items; ``per_behavior`` ranks by counts of the target behavior (tie: overall)."""

    def __init__(self, per_behavior: bool = False) -> None:
        self.per_behavior = per_behavior
        self.name = "pop_behavior" if per_behavior else "pop"

    def fit(self, seqs, n_items, n_behaviors=1, seed=0, steps=0):
        _check_seqs(seqs, n_items, n_behaviors, "seqs")
        self.n_items, self.n_behaviors = n_items, n_behaviors
        self.total, self.per = _counts(seqs, n_items, n_behaviors)
        self.tiebreak = self.total / (self.total.max() + 1.0)       # < 1: never outranks one count
        return self

    def score(self, prefixes, target_behavior=None):
        tb = _target_array(target_behavior, len(prefixes))
        if not self.per_behavior or tb is None:
            return np.tile(self.total.astype(np.float32), (len(prefixes), 1))
        return (self.per[tb] + self.tiebreak[None]).astype(np.float32)


class RecentItems(SeqRecommender):
    """The prefix's distinct items, most recent first; all others follow in popularity order."""

    name = "recent"

    def fit(self, seqs, n_items, n_behaviors=1, seed=0, steps=0):
        _check_seqs(seqs, n_items, n_behaviors, "seqs")
        self.n_items, self.n_behaviors = n_items, n_behaviors
        total, _ = _counts(seqs, n_items, n_behaviors)
        self.fallback = (total / (total.max() + 1.0)).astype(np.float32)   # in [0, 1)
        return self

    def score(self, prefixes, target_behavior=None):
        out = np.tile(self.fallback, (len(prefixes), 1))
        for r, (items, _) in enumerate(prefixes):
            items = np.asarray(items, dtype=np.int64)
            # later positions overwrite earlier ones: score = 1 + position of the last occurrence
            out[r, items] = 1.0 + np.arange(len(items), dtype=np.float32)
        return out


class HistoryFrequency(SeqRecommender):
    """The user's own profile: how often each item occurs in the WHOLE prefix, order and behavior ignored,
    smoothed by popularity: score_j = log(n_j + alpha * p_j) with p the training items' shares and
    alpha = 1 pseudo-interaction (unseen items follow in popularity order). No recency decay, unlike
    `recent` and the blend's repeat features; a yardstick for data where the next item depends on who
    the user is but not on the order (the mobile variant's simulator, docs/families/fatsmb.md)."""

    name = "history_freq"

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = float(alpha)

    def fit(self, seqs, n_items, n_behaviors=1, seed=0, steps=0):
        _check_seqs(seqs, n_items, n_behaviors, "seqs")
        self.n_items, self.n_behaviors = n_items, n_behaviors
        total, _ = _counts(seqs, n_items, n_behaviors)
        self.share = total / max(total.sum(), 1.0)
        return self

    def score(self, prefixes, target_behavior=None):
        counts = np.stack([np.bincount(np.asarray(items, np.int64), minlength=self.n_items) for items, _ in prefixes])
        return np.log(counts + self.alpha * self.share[None] + 1e-12).astype(np.float32)


class CoOccurrence(SeqRecommender):
    """Item-to-item transitions within ``window`` steps, summed over the prefix's last items."""

    def __init__(self, window: int = 3, n_last: int = 5, decay: float = 0.6) -> None:
        self.window, self.n_last, self.decay = window, n_last, decay
        self.name = "cooc"

    def fit(self, seqs, n_items, n_behaviors=1, seed=0, steps=0):
        import scipy.sparse as sp

        _check_seqs(seqs, n_items, n_behaviors, "seqs")
        self.n_items, self.n_behaviors = n_items, n_behaviors
        rows, cols = [], []
        for items, _ in seqs:
            items = np.asarray(items, dtype=np.int64)
            for lag in range(1, self.window + 1):
                rows.append(items[:-lag])
                cols.append(items[lag:])
        r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        keep = r != c                                                # self-transitions are "recent", not co-occurrence
        # symmetric: a pair that follows in either order co-occurs
        self.C = sp.csr_matrix((np.ones(2 * keep.sum(), np.float32),
                                (np.r_[r[keep], c[keep]], np.r_[c[keep], r[keep]])), shape=(n_items, n_items))
        total, _ = _counts(seqs, n_items, n_behaviors)
        self.fallback = (1e-3 * total / (total.max() + 1.0)).astype(np.float32)
        return self

    def score(self, prefixes, target_behavior=None):
        import scipy.sparse as sp

        rows, cols, vals = [], [], []
        for r, (items, _) in enumerate(prefixes):
            last = np.asarray(items, dtype=np.int64)[::-1][: self.n_last]
            rows.append(np.full(len(last), r))
            cols.append(last)
            vals.append(self.decay ** np.arange(len(last), dtype=np.float32))
        Q = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(len(prefixes), self.n_items))
        return (Q @ self.C).toarray().astype(np.float32) + self.fallback[None]


# ------------------------------------------------------------------------------------------------
# Transformers: SASRec and BERT4Rec
# ------------------------------------------------------------------------------------------------
@dataclass
class TransformerRecConfig:
    """Settings of SASRec / BERT4Rec (paper defaults scaled down for one CPU thread)."""

    d: int = 64                    # embedding / hidden size
    layers: int = 2                # Transformer blocks
    heads: int = 2                 # attention heads
    max_len: int = 50              # longest prefix the model sees (older items are cut)
    dropout: float = 0.2           # dropout on embeddings and inside blocks
    lr: float = 2e-3               # AdamW learning rate
    weight_decay: float = 0.0      # AdamW weight decay
    batch_size: int = 32           # sequences per step
    n_negatives: int = 1024        # sampled-softmax candidates when n_items > full_softmax_max
    full_softmax_max: int = 200_000  # vocabularies up to this size get the exact softmax over all items
    max_positions: int = 96        # loss positions per batch (each row's last always kept): bounds the exact softmax
    mask_prob: float = 0.2         # BERT4Rec: share of positions masked for the Cloze task
    target_aware: bool = True      # add a target-behavior embedding to the scoring state
    eval_batch: int = 256          # prefixes per forward pass in score()


class _Encoder(nn.Module):
    """Token = item + behavior + position embedding, then pre-LN Transformer blocks. Index 0 = padding."""

    def __init__(self, cfg: TransformerRecConfig, n_items: int, n_behaviors: int, causal: bool) -> None:
        super().__init__()
        self.cfg, self.causal = cfg, causal
        self.item = nn.Embedding(n_items + 2, cfg.d, padding_idx=0)   # 0 pad, 1..n items, n+1 [mask]
        self.beh = nn.Embedding(n_behaviors + 2, cfg.d, padding_idx=0)  # 0 pad, 1..B, B+1 [mask]/unknown
        self.pos = nn.Embedding(cfg.max_len, cfg.d)
        self.target = nn.Embedding(n_behaviors + 1, cfg.d)              # last row = "unknown target"
        nn.init.zeros_(self.target.weight)
        layer = nn.TransformerEncoderLayer(cfg.d, cfg.heads, 4 * cfg.d, cfg.dropout, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.blocks = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d)
        self.drop = nn.Dropout(cfg.dropout)
        for emb in (self.item, self.beh, self.pos):
            nn.init.normal_(emb.weight, std=0.02)

    def forward(self, items: torch.Tensor, beh: torch.Tensor) -> torch.Tensor:
        """items, beh: (B, L) shifted ids (0 = pad), right-aligned; returns hidden states (B, L, d)."""
        L = items.shape[1]
        pos = torch.arange(L, device=items.device)
        h = self.item(items) + self.beh(beh) + self.pos(pos)[None]   # (B, L, d)
        h = self.blocks(self.drop(h), mask=attention_mask(items == 0, self.causal, self.cfg.heads))
        return self.norm(h)

    def logits(self, h: torch.Tensor, cand: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Dot products with the item table (tied weights): (..., d) -> (..., n_items) or (..., |cand|)."""
        w = self.item.weight[1:-1] if cand is None else self.item.weight[cand + 1]
        return h @ w.T


def attention_mask(pad: torch.Tensor, causal: bool, heads: int) -> torch.Tensor:
    """Boolean attention mask (B*heads, L, L), True = blocked: padded keys (and future keys when
    causal) are blocked, but every position may always see itself, so rows of padding never have all
    keys blocked (that gives NaN, and 0 * NaN leaks into real positions through the next layer)."""
    B, L = pad.shape
    blocked = pad[:, None, :].expand(B, L, L)                            # (B, L, L) key is padding
    if causal:
        blocked = blocked | torch.triu(torch.ones(L, L, dtype=torch.bool), 1)[None]
    blocked = blocked & ~torch.eye(L, dtype=torch.bool)[None]
    return blocked.repeat_interleave(heads, dim=0)


def _pad_left(seqs: Sequence[np.ndarray], L: int, fill: int = 0) -> np.ndarray:
    """Right-align each sequence in an (n, L) array (older items are cut), padding with ``fill`` on the left."""
    out = np.full((len(seqs), L), fill, dtype=np.int64)
    for r, s in enumerate(seqs):
        s = np.asarray(s, dtype=np.int64)[-L:]
        if len(s):
            out[r, L - len(s):] = s
    return out


def selection_score(scores: np.ndarray, target: np.ndarray, metric: str = "recall@10") -> float:
    """The validation figure that model selection maximizes: the mean of ``metric`` ("recall@k" or
    "ndcg@k", `full_ranking_metrics`) over the queries. Taobao selects on recall@10; the 20-item mobile
    variant on ndcg@10, since there recall@10 is near 1 for every model (docs/families/fatsmb.md)."""
    from umask.train.common.metrics import full_ranking_metrics

    name, _, k = metric.partition("@")
    if name not in ("recall", "ndcg") or not k.isdigit():
        raise ValueError(f"selection metric must be recall@k or ndcg@k, got {metric!r}")
    return float(full_ranking_metrics(scores, target, ks=(int(k),))[metric].mean())


def softmax_xent(logits_fn, target: torch.Tensor, n_items: int, n_negatives: int, full_softmax_max: int,
                 g: torch.Generator) -> torch.Tensor:
    """Cross-entropy of P queries vs item ids ``target`` (P,): exact when n_items <= full_softmax_max,
    else a sampled softmax over [the batch's positives, n_negatives uniform items] shared by the batch,
    with accidental hits masked. ``logits_fn(cand)`` returns (P, n_items) for cand None, else (P, |cand|)."""
    if n_items <= full_softmax_max:
        return F.cross_entropy(logits_fn(None), target)
    cand = torch.cat([target, torch.randint(0, n_items, (n_negatives,), generator=g)])
    logits = logits_fn(cand)                                             # (P, P + n_neg)
    P = target.shape[0]
    hit = cand[None, :] == target[:, None]                               # accidental hits (and the positive)
    hit[torch.arange(P), torch.arange(P)] = False
    return F.cross_entropy(logits.masked_fill(hit, float("-inf")), torch.arange(P))


def cap_positions(keep: torch.Tensor, max_n: int, g: torch.Generator) -> torch.Tensor:
    """At most ``max_n`` True entries of the (B, L) loss mask: each row's last kept position always stays
    (the next-item case scoring uses), the rest is a uniform random subset. Bounds the cost of an
    exact softmax over a large vocabulary."""
    if max_n <= 0 or int(keep.sum()) <= max_n:
        return keep
    B, L = keep.shape
    last = torch.zeros_like(keep)
    has = keep.any(1)
    idx = L - 1 - torch.flip(keep, [1]).float().argmax(1)                 # last True per row
    last[torch.arange(B)[has], idx[has]] = True
    rest = keep & ~last
    budget = max(0, max_n - int(last.sum()))
    flat = torch.nonzero(rest.flatten()).squeeze(1)
    pick = flat[torch.randperm(len(flat), generator=g)[:budget]]
    out = last.flatten().clone()
    out[pick] = True
    return out.view(B, L)


class _TransformerRec(SeqRecommender):
    causal = True

    def __init__(self, cfg: Optional[TransformerRecConfig] = None) -> None:
        self.cfg = cfg or TransformerRecConfig()
        self.curve: list[dict[str, float]] = []

    # --- training ---------------------------------------------------------------------------
    def _batch(self, seqs: Sequence[Seq], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Random end-crops of ``batch_size`` sequences: shifted item ids and behavior ids (B, max_len+1)."""
        L = self.cfg.max_len + 1
        idx = rng.integers(0, len(seqs), self.cfg.batch_size)
        its, bhs = [], []
        for u in idx:
            items, beh = seqs[u]
            end = int(rng.integers(2, len(items) + 1)) if len(items) > 2 else len(items)
            its.append(np.asarray(items[:end], dtype=np.int64) + 1)
            b = np.zeros(end, np.int64) if beh is None else np.asarray(beh[:end], dtype=np.int64)
            bhs.append(b + 1)
        return _pad_left(its, L), _pad_left(bhs, L)

    def _xent(self, h: torch.Tensor, target: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return softmax_xent(lambda cand: self.net.logits(h, cand), target, self.n_items, self.cfg.n_negatives,
                            self.cfg.full_softmax_max, g)

    def fit(self, seqs, n_items, n_behaviors=1, seed=0, steps=2000, val: Optional[tuple] = None,
            eval_every: int = 0, val_metric: str = "recall@10"):
        """Train for ``steps`` AdamW steps. ``val`` = (prefixes, targets, target_behaviors) logs a
        ``val_metric`` learning curve every ``eval_every`` steps into ``self.curve`` and keeps the weights of the
        best validation point (``self.best_step``); without ``val`` the last weights are kept."""
        key = f"val_{val_metric}"
        _check_seqs(seqs, n_items, n_behaviors, "seqs")
        seqs = [s for s in seqs if len(s[0]) >= 2]
        if not seqs:
            raise ValueError("no training sequence has 2 or more items")
        self.n_items, self.n_behaviors = n_items, n_behaviors
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        g = torch.Generator().manual_seed(seed)
        self.net = _Encoder(self.cfg, n_items, n_behaviors, causal=self.causal)
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        best: tuple = (-1.0, 0, None)
        for step in range(1, steps + 1):
            self.net.train()
            items, beh = (torch.from_numpy(a) for a in self._batch(seqs, rng))
            loss = self._loss(items, beh, g, rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
            opt.step()
            rec = {"step": step, "loss": float(loss.detach())}
            if val is not None and eval_every and (step % eval_every == 0 or step == steps):
                rec[key] = selection_score(self.score(val[0], val[2]), val[1], val_metric)
                if rec[key] > best[0]:                                    # model selection on validation only
                    best = (rec[key], step, {k: v.clone() for k, v in self.net.state_dict().items()})
                log.info("%s step %d loss %.4f val %s %.4f", self.name, step, rec["loss"], val_metric, rec[key])
            if step % 10 == 0 or key in rec:
                self.curve.append(rec)
        if best[2] is not None:
            self.net.load_state_dict(best[2])
            self.best_step = best[1]
        self.net.eval()
        return self

    def _loss(self, items, beh, g, rng) -> torch.Tensor:  # pragma: no cover - per model
        raise NotImplementedError

    def _query(self, chunk, tb: Optional[np.ndarray]) -> torch.Tensor:  # pragma: no cover - per model
        raise NotImplementedError

    @torch.no_grad()
    def score(self, prefixes, target_behavior=None):
        tb = _target_array(target_behavior, len(prefixes))
        self.net.eval()
        out = np.zeros((len(prefixes), self.n_items), dtype=np.float32)
        for s in range(0, len(prefixes), self.cfg.eval_batch):
            chunk = prefixes[s: s + self.cfg.eval_batch]
            h = self._query(chunk, None if tb is None else tb[s: s + len(chunk)])   # (b, d)
            out[s: s + len(chunk)] = self.net.logits(h).numpy()
        return out

    def _target_emb(self, tb: Optional[np.ndarray], n: int) -> torch.Tensor:
        if not self.cfg.target_aware:
            return torch.zeros(n, self.cfg.d)
        idx = np.full(n, self.n_behaviors) if tb is None else tb
        return self.net.target(torch.from_numpy(np.asarray(idx, dtype=np.int64)))


class SASRec(_TransformerRec):
    """Causal self-attention; next-item loss at every position (target behavior = the next one's)."""

    name = "sasrec"
    causal = True

    def _loss(self, items, beh, g, rng):
        inp, inb, out, outb = items[:, :-1], beh[:, :-1], items[:, 1:], beh[:, 1:]
        h = self.net(inp, inb)                                           # (B, L, d)
        if self.cfg.target_aware:
            h = h + self.net.target((outb - 1).clamp(min=0))             # behavior of the item to predict
        keep = cap_positions((out > 0) & (inp > 0), self.cfg.max_positions, g)
        return self._xent(h[keep], out[keep] - 1, g)

    def _query(self, chunk, tb: Optional[np.ndarray]) -> torch.Tensor:
        """Last hidden state of each prefix (+ the target-behavior embedding): (b, d)."""
        items = _pad_left([np.asarray(i, np.int64) + 1 for i, _ in chunk], self.cfg.max_len)
        beh = _pad_left([(np.zeros(len(i), np.int64) if b is None else np.asarray(b, np.int64)) + 1
                         for i, b in chunk], self.cfg.max_len)
        h = self.net(torch.from_numpy(items), torch.from_numpy(beh))[:, -1]          # (b, d)
        return h + self._target_emb(tb, len(chunk))


class BERT4Rec(_TransformerRec):
    """Bidirectional self-attention with the Cloze task; the last position is masked at least once per batch row."""

    name = "bert4rec"
    causal = False

    def _loss(self, items, beh, g, rng):
        items, beh = items[:, 1:], beh[:, 1:]                            # (B, L)
        real = items > 0
        masked = (torch.rand(items.shape, generator=g) < self.cfg.mask_prob) & real
        masked[:, -1] |= torch.rand(items.shape[0], generator=g) < 0.5  # next-item-like: mask the last item often
        masked &= real
        if not masked.any():
            masked[:, -1] = real[:, -1]
        masked = cap_positions(masked, self.cfg.max_positions, g)
        inp = items.masked_fill(masked, self.n_items + 1)                # [mask] item
        hide_b = masked & (torch.rand(items.shape, generator=g) < 0.5)   # half the time the behavior is hidden too,
        h = self.net(inp, beh.masked_fill(hide_b, self.n_behaviors + 1))  # so scoring without a target behavior is trained
        return self._xent(h[masked], items[masked] - 1, g)

    def _query(self, chunk, tb: Optional[np.ndarray]) -> torch.Tensor:
        """State of a [mask] token appended to each prefix, with the target behavior when known: (b, d)."""
        mask_beh = self.n_behaviors + 1                                  # "unknown behavior" token
        items = _pad_left([np.r_[np.asarray(i, np.int64) + 1, self.n_items + 1] for i, _ in chunk], self.cfg.max_len)
        tbs = [mask_beh if tb is None else int(tb[r]) + 1 for r in range(len(chunk))]
        beh = _pad_left([np.r_[(np.zeros(len(i), np.int64) if b is None else np.asarray(b, np.int64)) + 1, t]
                         for (i, b), t in zip(chunk, tbs)], self.cfg.max_len)
        return self.net(torch.from_numpy(items), torch.from_numpy(beh))[:, -1]


class RepeatCoocBlend(SeqRecommender):
    """"Recent + co-occurrence blend": FatsMB's repeat / co-occurrence prior with NO neural part
    (`umask.train.baselines.repeat_prior`): per target behavior, non-negative gains on the log
    features (recency-weighted own-history counts per behavior, co-occurrence from the last items,
    popularity), fitted exactly as FatsMB's prior gains are (training-split queries with
    time-respecting counts, best validation step kept). The honest yardstick for FatsMB + prior."""

    name = "blend"

    def fit(self, seqs, n_items, n_behaviors=1, seed=0, steps=200, val: Optional[tuple] = None,
            val_metric: str = "recall@10", prior_cfg=None, **_):
        """``prior_cfg``: the features' `PriorConfig` (None = the defaults FatsMB's prior uses)."""
        from umask.train.baselines import repeat_prior as rp

        _check_seqs(seqs, n_items, n_behaviors, "seqs")
        if val is None:
            raise ValueError("blend: the gains are selected on validation; pass val=(prefixes, items, behaviors)")
        self.n_items, self.n_behaviors = n_items, n_behaviors
        self.tables = rp.PriorTables.build(seqs, n_items, n_behaviors, prior_cfg)
        cfg = rp.GainFitConfig(steps=steps, seed=seed)
        names = [str(b) for b in range(n_behaviors)] if n_behaviors != 4 else ["pv", "fav", "cart", "buy"]
        self.fit_info = rp.fit_gains(self.tables, rp.training_queries(seqs, cfg.last_positions), val,
                                     base_train=None, base_val=None, cfg=cfg, behaviors=names, val_metric=val_metric)
        self.head, self.best_step = rp.head_from(self.fit_info), self.fit_info["best_step"]
        return self

    def score(self, prefixes, target_behavior=None):
        from umask.train.baselines import repeat_prior as rp

        tb = _target_array(target_behavior, len(prefixes))
        tb = np.zeros(len(prefixes), np.int64) if tb is None else tb
        return rp.prior_scores(self.head, self.tables, rp.features(self.tables, prefixes), tb, None).astype(np.float32)


def make(name: str, **kwargs) -> SeqRecommender:
    """A baseline by name: pop, pop_behavior, recent, history_freq, cooc, blend, sasrec, bert4rec (kwargs go to
    its config)."""
    simple = {"pop": lambda: Popularity(False), "pop_behavior": lambda: Popularity(True),
              "recent": RecentItems, "cooc": lambda: CoOccurrence(**kwargs), "blend": RepeatCoocBlend,
              "history_freq": lambda: HistoryFrequency(**kwargs)}
    if name in simple:
        return simple[name]()
    if name == "sasrec":
        return SASRec(TransformerRecConfig(**kwargs))
    if name == "bert4rec":
        return BERT4Rec(TransformerRecConfig(**kwargs))
    raise ValueError(f"unknown baseline {name!r} (known: pop, pop_behavior, recent, cooc, blend, sasrec, bert4rec)")


__all__ = ["softmax_xent", "cap_positions", "attention_mask", "Seq", "SeqRecommender", "Popularity", "RecentItems", "CoOccurrence", "RepeatCoocBlend", "TransformerRecConfig",
           "SASRec", "BERT4Rec", "make"]
