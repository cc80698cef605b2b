"""PROTOCOL B harness, part 3: scoring (error sums on the featurized and raw scales, B3 ranking
metrics, the per-row accumulator) and the markdown report. Importers use them through
``umask.bench.accuracy.user``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from umask.runtime.core.featurize import ChannelLayout, decode_app_counts, decode_traffic
from umask.train.common import metrics as tm
from umask.bench.accuracy.user_tasks import APP_KS, GROUPS, LOC_KS, RAW_CLIP, SCORE_DECIMALS, TaskBatch

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# Scoring
# ------------------------------------------------------------------------------------------------
_SUM_KEYS = ("n", "sae", "sse", "n_act", "sae_act", "sse_act", "raw_sae", "raw_sse", "raw_sae_act", "raw_sse_act")


def _group_slices(ch: ChannelLayout) -> dict[str, slice]:
    return {"traffic": ch.traffic, "app": ch.apps, "location": ch.location}


def _decode(group: str, x: np.ndarray) -> np.ndarray | None:
    if group == "traffic":
        return decode_traffic(x)
    if group == "app":
        return decode_app_counts(x)
    return None


def error_sums(pred: np.ndarray, truth: np.ndarray, eval_mask: np.ndarray,
               channels: ChannelLayout) -> dict[str, dict[str, float]]:
    """Per channel group: counts and sums of |e|, e^2 over the eval entries (all / active, raw)."""
    out: dict[str, dict[str, float]] = {}
    for g, sl in _group_slices(channels).items():
        p = np.asarray(pred[:, sl], np.float64)
        y = np.asarray(truth[:, sl], np.float64)
        m = np.broadcast_to(eval_mask, y.shape)
        pv, yv = p[m], y[m]
        act = yv != 0
        e = pv - yv
        s = {"n": float(e.size), "sae": float(np.abs(e).sum()), "sse": float((e * e).sum()),
             "n_act": float(act.sum()), "sae_act": float(np.abs(e[act]).sum()), "sse_act": float((e[act] ** 2).sum())}
        rp = _decode(g, np.clip(pv, *RAW_CLIP))
        if rp is not None:
            re = rp - _decode(g, yv)
            s.update(raw_sae=float(np.abs(re).sum()), raw_sse=float((re * re).sum()),
                     raw_sae_act=float(np.abs(re[act]).sum()), raw_sse_act=float((re[act] ** 2).sum()))
        out[g] = s
    return out


def _finish_errors(sums: Mapping[str, float], group: str) -> dict[str, float | None]:
    def ratio(a: str, n: str, root: bool = False) -> float | None:
        if sums.get(n, 0) == 0 or a not in sums:
            return None
        v = sums[a] / sums[n]
        return float(np.sqrt(v)) if root else float(v)
    m = {"mae": ratio("sae", "n"), "rmse": ratio("sse", "n", True),
         "active_mae": ratio("sae_act", "n_act"), "active_rmse": ratio("sse_act", "n_act", True)}
    if group in ("traffic", "app"):
        m.update(raw_mae=ratio("raw_sae", "n"), raw_rmse=ratio("raw_sse", "n", True),
                 raw_active_mae=ratio("raw_sae_act", "n_act"), raw_active_rmse=ratio("raw_sse_act", "n_act", True))
    return m


def app_engagement(x: np.ndarray, channels: ChannelLayout) -> np.ndarray:
    """(n, C, T, H, W) -> (n, K) records per category over the window (rounded to 1e-3)."""
    a = decode_app_counts(np.clip(np.asarray(x[:, channels.apps], np.float64), *RAW_CLIP))
    return np.round(a.sum(axis=(2, 3, 4)), SCORE_DECIMALS)


def location_engagement(x: np.ndarray, channels: ChannelLayout) -> np.ndarray:
    """(n, C, T, H, W) -> (n, H*W) active slots per layout location (rounded to 1e-3)."""
    loc = np.clip(np.asarray(x[:, channels.location_index], np.float64), 0.0, None)   # (n, T, H, W)
    return np.round(loc.sum(axis=1).reshape(loc.shape[0], -1), SCORE_DECIMALS)


def rank_items(scores: np.ndarray, k: int | None = None) -> np.ndarray:
    """Indices of the positive scores, highest first, ties -> smaller index (at most k)."""
    scores = np.asarray(scores)
    order = np.lexsort((np.arange(len(scores)), -scores))
    order = order[scores[order] > 0]
    return order if k is None else order[:k]


def ranking_scores(pred_scores: np.ndarray, true_scores: np.ndarray, ks: Sequence[int]) -> dict[str, float] | None:
    """Recall/NDCG@k (relevant = true top-k) and MRR@k (relevant = true top-1) for one user; None if no truth."""
    truth = rank_items(true_scores)
    if len(truth) == 0:
        return None
    ranked = rank_items(pred_scores, max(ks))
    out = {}
    for k in ks:
        rel = truth[:k]
        out[f"recall@{k}"] = tm.recall_at_k(ranked, rel, k)
        out[f"ndcg@{k}"] = tm.ndcg_at_k(ranked, rel, k)
        out[f"mrr@{k}"] = tm.mrr_at_k(ranked, truth[:1], k)
    return out


SLOTS_PER_HOUR = 4      # the 15-minute slots of the per-user featurization (runtime FeatureConfig default)


def event_sums(pred: np.ndarray, truth: np.ndarray, channels: ChannelLayout) -> dict[str, tuple[float, int]]:
    """PROTOCOL v2 B event metrics of one forecast batch as (sum over scored slots, number of scored slots).

    ``app_recall@3``: per target slot with app activity, the share of its active categories (summed over
    the layout cells) in the model's top 3 for that slot; ``location_acc@1``: per target slot with
    presence, whether the model's top cell is a present cell (`umask.train.common.metrics`). Every entry
    of a forecast target slot is a target, so these are only defined for B1 / B2.
    """
    out: dict[str, tuple[float, int]] = {}
    pa = np.asarray(pred[:, channels.apps], np.float64).sum(axis=(3, 4)).transpose(0, 2, 1)   # (n, T, K)
    ya = np.asarray(truth[:, channels.apps], np.float64).sum(axis=(3, 4)).transpose(0, 2, 1)
    n_app = int((ya > 0).any(axis=-1).sum())
    r = tm.slot_recall_at_k(pa, ya, 3)
    out["app_recall@3"] = (0.0 if r is None else r * n_app, n_app)
    # the same recall with every slot of an hour ranked by the prediction's expected engagement over that hour
    # (the sum of its slots; B1's target is one hour): the ranking point estimate of PROTOCOL v2 B (rankings by
    # expected engagement), which a per-slot mean is not. Reported next to the per-slot ranking for every model.
    T = pa.shape[1]
    if T % SLOTS_PER_HOUR == 0:
        hour = pa.reshape(pa.shape[0], T // SLOTS_PER_HOUR, SLOTS_PER_HOUR, -1).sum(axis=2, keepdims=True)
        ph = np.broadcast_to(hour, (pa.shape[0], T // SLOTS_PER_HOUR, SLOTS_PER_HOUR, pa.shape[2])).reshape(pa.shape)
        rh = tm.slot_recall_at_k(ph, ya, 3)
        out["app_recall@3_hour"] = (0.0 if rh is None else rh * n_app, n_app)
    li = channels.location_index
    pl = np.asarray(pred[:, li], np.float64).reshape(pred.shape[0], pred.shape[2], -1)       # (n, T, H*W)
    yl = np.asarray(truth[:, li], np.float64).reshape(truth.shape[0], truth.shape[2], -1)
    n_loc = int((yl > 0).any(axis=-1).sum())
    a = tm.slot_acc_at_1(pl, yl)
    out["location_acc@1"] = (0.0 if a is None else a * n_loc, n_loc)
    return out


class _Acc:
    """Streaming sums for one (task, model)."""

    def __init__(self, ranking: bool, events: bool = False) -> None:
        self.events: dict[str, list[float]] | None = {} if events else None
        self.err = {g: dict.fromkeys(_SUM_KEYS, 0.0) for g in GROUPS}
        self.rank = {g: {"n_ranked": 0, "n_skipped_no_target_activity": 0, "sums": {}} for g in ("app", "location")} \
            if ranking else None
        self.n_windows = 0
        self.users: set[int] = set()
        self.seconds = 0.0

    def add(self, batch: TaskBatch, pred: np.ndarray) -> None:
        assert batch.truth is not None
        self.n_windows += batch.n
        self.users.update(batch.users.tolist())
        for g, s in error_sums(pred, batch.truth, batch.eval_mask, batch.channels).items():
            for k, v in s.items():
                self.err[g][k] += v
        if self.events is not None:
            for k, (s, n) in event_sums(pred, batch.truth, batch.channels).items():
                acc = self.events.setdefault(k, [0.0, 0])
                acc[0] += s
                acc[1] += n
        if self.rank is not None:
            for g, fn, ks in (("app", app_engagement, APP_KS), ("location", location_engagement, LOC_KS)):
                ps, ts = fn(pred, batch.channels), fn(batch.truth, batch.channels)
                r = self.rank[g]
                for i in range(batch.n):
                    m = ranking_scores(ps[i], ts[i], ks)
                    if m is None:
                        r["n_skipped_no_target_activity"] += 1
                        continue
                    r["n_ranked"] += 1
                    for k, v in m.items():
                        r["sums"][k] = r["sums"].get(k, 0.0) + v

    def result(self) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
        metrics: dict[str, Any] = {g: _finish_errors(self.err[g], g) for g in GROUPS}
        entries = {g: {"all": int(self.err[g]["n"]), "active": int(self.err[g]["n_act"])} for g in GROUPS}
        if self.events is not None:
            metrics["events"] = {k: (s / n if n else None) for k, (s, n) in self.events.items()}
            metrics["events"].update({f"n_slots/{k}": int(n) for k, (_, n) in self.events.items()})
        if self.rank is not None:
            metrics["ranking"] = {}
            for g, r in self.rank.items():
                n = r["n_ranked"]
                metrics["ranking"][g] = {"n_users_ranked": n,
                                         "n_skipped_no_target_activity": r["n_skipped_no_target_activity"],
                                         **{k: (v / n if n else None) for k, v in r["sums"].items()}}
        return metrics, entries


def _check_prediction(name: str, pred: Any, batch: TaskBatch) -> np.ndarray:
    shape = (batch.n, batch.channels.n_channels, batch.horizon) + batch.x_context.shape[3:]
    pred = np.asarray(pred)
    if pred.shape != shape:
        raise ValueError(f"model {name!r} returned shape {pred.shape} for {batch.task}, expected {shape}")
    if not np.isfinite(pred[np.broadcast_to(batch.eval_mask, shape)]).all():
        raise ValueError(f"model {name!r} returned NaN/inf on evaluated entries of {batch.task}")
    return pred




# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------
def _f(v: Any, fmt: str = ".4f") -> str:
    return "-" if v is None else format(v, fmt)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: one section per (dataset, task), one line per model x channel group (+ B3 ranking)."""
    lines: list[str] = []
    if rows:
        lines.append(f"Scale: {rows[0]['scale']}.")
        lines.append(f"Command: `{rows[0]['command']}`")
        lines.append("")
    sections: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        sections.setdefault((r["dataset"], r["task"]), []).append(r)
    for (dataset, task), rs in sections.items():
        r0 = rs[0]
        if r0.get("synthetic"):
            sim = r0["simulator"]
            who = (f"{dataset}, {r0['n_users']} users ({sim['n_users']} simulated, seed {sim['seed']}, "
                   f"{len(sim['left_out_no_training_events'])} without training-day events left out)")
        else:
            who = f"{dataset}, {r0['n_users']} users"
        lines.append(f"### {task} -- {who}; split: {r0['split']}")
        lines.append("")
        lines.append(f"Windows: {r0['n_windows']}; window: "
                     + "; ".join(f"{k} = {v}" for k, v in r0["window"].items() if k != "relevance")
                     + f"; seeds: {', '.join(f'{k} {v}' for k, v in r0['seeds'].items())}.")
        if "relevance" in r0["window"]:
            lines.append(f"Relevance: {r0['window']['relevance']}.")
        lines.append("")
        lines.append("| model | group | entries (all / active) | MAE | RMSE | active MAE | active RMSE "
                     "| raw MAE | raw RMSE | raw active MAE | raw active RMSE |")
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rs:
            for g in GROUPS:
                m, e = r["metrics"][g], r["n_entries"][g]
                lines.append(f"| {r['model']} | {g} | {e['all']} / {e['active']} | {_f(m['mae'])} | {_f(m['rmse'])} "
                             f"| {_f(m['active_mae'])} | {_f(m['active_rmse'])} | {_f(m.get('raw_mae'), '.4g')} "
                             f"| {_f(m.get('raw_rmse'), '.4g')} | {_f(m.get('raw_active_mae'), '.4g')} "
                             f"| {_f(m.get('raw_active_rmse'), '.4g')} |")
        if "ranking" in r0["metrics"]:
            lines.append("")
            ks = [f"@{k}" for k in APP_KS]
            lines.append("| model | group | users ranked / skipped | " + " | ".join(f"Recall{k}" for k in ks) + " | "
                         + " | ".join(f"NDCG{k}" for k in ks) + " | " + " | ".join(f"MRR{k}" for k in ks) + " |")
            lines.append("|---|---|---:|" + "---:|" * (3 * len(ks)))
            for r in rs:
                for g in ("app", "location"):
                    m = r["metrics"]["ranking"][g]
                    cells = [_f(m.get(f"{name}{k}")) for name in ("recall", "ndcg", "mrr") for k in ks]
                    lines.append(f"| {r['model']} | {g} | {m['n_users_ranked']} / {m['n_skipped_no_target_activity']} | "
                                 + " | ".join(cells) + " |")
        lines.append("")
        for r in rs:
            if r.get("notes"):
                lines.append(f"- {r['model']}: {r['notes']}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


