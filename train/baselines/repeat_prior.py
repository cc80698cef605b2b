"""Fitting the gains of the repeat / co-occurrence prior (`umask.runtime.families.fatsmb.prior`).

    score_b(j) = a_b * base(j) + sum_f g_{b,f} * x_f(j)        a_b, g_{b,f} >= 0 (softplus), b = target behavior

``base`` is a neural model's logits (FatsMB's decoder) or nothing (the "recent + co-occurrence blend"
baseline, :class:`umask.train.baselines.seqrec.RepeatCoocBlend`). The features are the numpy ones of
the runtime, so the torch scores, the exported bundle and the runtime session add the same prior.

Training queries: the last ``last_positions`` positions of every TRAINING sequence (prefix = what
precedes, target = the item there), with time-respecting counts (`query_features(..., future=...)`
takes the target and everything after it out of the tables). Loss: the exact softmax cross-entropy
over all items. The step with the best validation Recall@10 is kept (validation queries: prefix =
the whole training sequence, target = the validation row, which no table counted). The test set is
never read here.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from umask.runtime.families.fatsmb.prior import PriorConfig, PriorTables, feature_names, query_features
from umask.train.baselines.seqrec import selection_score

log = logging.getLogger(__name__)

BaseFn = Callable[[np.ndarray], Optional[torch.Tensor]]   # query rows -> (len(rows), n_items) logits or None


@dataclass
class GainFitConfig:
    """How the gains are fitted (a few dozen parameters: seconds to minutes on one thread)."""

    last_positions: int = 5      # training queries: the last N positions of every training sequence
    steps: int = 200             # Adam steps
    batch: int = 128             # queries per step
    lr: float = 0.05             # Adam learning rate on the raw (pre-softplus) gains
    eval_every: int = 25         # validation Recall@10 every N steps; the best step is kept
    init_gain: float = 0.5       # every g_{b,f} at the start
    seed: int = 0                # batch order


class GainHead(nn.Module):
    """The non-negative gains (n_behaviors, F) and the base scale a (n_behaviors,)."""

    def __init__(self, n_behaviors: int, n_features: int, init_gain: float, with_base: bool) -> None:
        super().__init__()
        inv = lambda v: float(np.log(np.expm1(v)))                            # noqa: E731  softplus^-1
        self.raw_g = nn.Parameter(torch.full((n_behaviors, n_features), inv(init_gain)))
        self.raw_a = nn.Parameter(torch.full((n_behaviors,), inv(1.0)), requires_grad=with_base)
        self.with_base = with_base

    def gains(self) -> tuple[torch.Tensor, torch.Tensor]:
        a = F.softplus(self.raw_a) if self.with_base else torch.zeros_like(self.raw_a)
        return F.softplus(self.raw_g), a

    def forward(self, base: Optional[torch.Tensor], logpop: torch.Tensor, feats: Sequence[tuple[np.ndarray, np.ndarray]],
                tb: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_items) of B queries: base (B, n_items) or None, feats[r] = (idx (K,), x (K, F))."""
        g, a = self.gains()
        gb = g[tb]                                                                    # (B, F)
        out = gb[:, -1:] * logpop[None]                                               # dense pop column
        if base is not None:
            out = out + a[tb][:, None] * base
        rows = torch.from_numpy(np.concatenate([np.full(len(i), r) for r, (i, _) in enumerate(feats)]))
        cols = torch.from_numpy(np.concatenate([i for i, _ in feats]))
        x = torch.from_numpy(np.concatenate([v for _, v in feats]))                   # (sum K, F)
        return out.index_put((rows, cols), (x * gb[rows]).sum(-1), accumulate=True)


def training_queries(seqs: Sequence[tuple[np.ndarray, np.ndarray]], last_positions: int):
    """(prefixes, futures, target items, target behaviors) from the last positions of each sequence."""
    prefixes, futures, ti, tb = [], [], [], []
    for items, beh in seqs:
        for e in range(max(1, len(items) - last_positions), len(items)):
            prefixes.append((items[:e], beh[:e]))
            futures.append(items[e:])
            ti.append(items[e])
            tb.append(beh[e])
    return prefixes, futures, np.asarray(ti, np.int64), np.asarray(tb, np.int64)


def features(tables: PriorTables, prefixes, futures=None) -> list[tuple[np.ndarray, np.ndarray]]:
    return [query_features(tables, p[0], p[1], None if futures is None else futures[r]) for r, p in enumerate(prefixes)]


@torch.no_grad()
def prior_scores(head: GainHead, tables: PriorTables, feats, tb: np.ndarray, base_fn: Optional[BaseFn],
                 chunk: int = 256) -> np.ndarray:
    """Scores (N, n_items) of N queries with the current gains (base_fn(rows) gives their base logits)."""
    logpop = torch.from_numpy(tables.logpop)
    out = []
    for s in range(0, len(feats), chunk):
        rows = np.arange(s, min(s + chunk, len(feats)))
        base = base_fn(rows) if base_fn is not None else None
        out.append(head(base, logpop, [feats[r] for r in rows], torch.from_numpy(tb[rows])).numpy())
    return np.concatenate(out)


def fit_gains(tables: PriorTables, train_q, val_q, *, base_train: Optional[BaseFn], base_val: Optional[BaseFn],
              cfg: GainFitConfig, behaviors: Sequence[str], val_metric: str = "recall@10") -> dict:
    """Fit the gains; returns {"gains", "scale", "features", "val_<val_metric>", "best_step", "curve", ...}
    (the best step by ``val_metric`` on validation, `seqrec.selection_score`).

    ``train_q`` = (prefixes, futures, target items, target behaviors) (see :func:`training_queries`);
    ``val_q`` = (prefixes, target items, target behaviors)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    ftr = features(tables, train_q[0], train_q[1])
    fval = features(tables, val_q[0])
    head = GainHead(tables.n_behaviors, tables.n_features, cfg.init_gain, with_base=base_train is not None)
    opt = torch.optim.Adam([p for p in head.parameters() if p.requires_grad], lr=cfg.lr)
    logpop = torch.from_numpy(tables.logpop)
    ti, tb = torch.from_numpy(train_q[2]), torch.from_numpy(train_q[3])

    def validate() -> float:
        s = prior_scores(head, tables, fval, val_q[2], base_val)
        return selection_score(s, val_q[1], val_metric)

    key = f"val_{val_metric}"
    best = (validate(), 0, {k: v.clone() for k, v in head.state_dict().items()})
    curve = [{"step": 0, key: best[0]}]
    for step in range(1, cfg.steps + 1):
        rows = rng.integers(0, len(ftr), cfg.batch)
        base = base_train(rows) if base_train is not None else None
        loss = F.cross_entropy(head(base, logpop, [ftr[r] for r in rows], tb[rows]), ti[rows])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            v, lv = validate(), float(loss.detach())
            curve.append({"step": step, "loss": lv, key: v})
            log.info("prior gains step %d loss %.4f val %s %.4f", step, lv, val_metric, v)
            if v > best[0]:
                best = (v, step, {k: val.clone() for k, val in head.state_dict().items()})
    head.load_state_dict(best[2])
    g, a = head.gains()
    return {"gains": g.detach().numpy().round(6).tolist(), "scale": a.detach().numpy().round(6).tolist(),
            "features": feature_names(behaviors), "behaviors": list(behaviors), key: best[0],
            "val_metric": val_metric,
            "best_step": best[1], "curve": curve, "fit": asdict(cfg), "prior_config": asdict(tables.cfg),
            "training_queries": len(ftr)}


def head_from(fit: dict) -> GainHead:
    """A GainHead holding the fitted gains of ``fit`` (for scoring)."""
    g, a = np.asarray(fit["gains"], np.float32), np.asarray(fit["scale"], np.float32)
    head = GainHead(g.shape[0], g.shape[1], 0.5, with_base=bool(np.any(a > 0)))
    with torch.no_grad():
        head.raw_g.copy_(torch.from_numpy(np.log(np.expm1(np.maximum(g, 1e-6)))))
        head.raw_a.copy_(torch.from_numpy(np.log(np.expm1(np.maximum(a, 1e-6)))))
    return head


__all__ = ["GainFitConfig", "GainHead", "PriorConfig", "PriorTables", "fit_gains", "head_from", "prior_scores",
           "training_queries", "features"]
