"""Where GTS-LUM's score comes from, and what simple signals the simulator leaves beyond the hour kernel (issue 14).

    .venv/bin/python scripts/gtslum_headroom.py [--runs artifacts/gtslum/full_s0,...] \
        [--out benchmarks/results/gtslum_headroom.json]

Two tables, SYNTHETIC PROTOCOL D windows of simulator seeds 0-2 (50 users each), NDCG@5 / Recall@5:

1. ``decomposition`` (test day): each trained run's head split into its parts: the whole head, the frequency
   prior alone (w1 log shares at the target hour + w2 log overall shares), the contrastive term alone
   (score_scale x cosine / tau), and the kernel time-of-day row. Shows whether the network adds anything over
   its prior.
2. ``signals`` (validation and test days): the kernel time-of-day row plus a place term (the same kernel over the
   user's history at the place of the last behavior; the simulator draws a session's category from user x place
   x hour) or a recency term (categories of the last four active intervals), in log space with the weights
   listed. Chosen nowhere: every variant is shown on both days.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from umask.bench.accuracy import gtslum as bg
from umask.runtime.families.gtslum import sequence as sq
from umask.train.common.checkpoints import atomic_json
from umask.train.models.gtslum import data as gd
from umask.train.models.gtslum import trainer as gt

log = logging.getLogger("gtslum_headroom")
SEEDS = (0, 1, 2)
SIGNALS = {"kernel": (0.0, 0.0), "kernel+0.5place": (0.5, 0.0), "kernel+1place": (1.0, 0.0),
           "kernel+2place": (2.0, 0.0), "kernel+0.3recent": (0.0, 0.3), "kernel+1place+0.3recent": (1.0, 0.3)}


def _metrics(scores: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    m = gt.rank_metrics(scores, truth)
    return {"ndcg@5": round(m["ndcg@5"], 4), "recall@5": round(m["recall@5"], 4)}


def decomposition(run: str, seed: int, users: gd.Users) -> dict[str, object]:
    model, meta = gt.load(run)
    x = bg.model_inputs(users, meta, model.node_emb.numpy())
    b = gt.to_batch(x)
    K = model.cfg.n_categories
    with torch.no_grad():
        u = F.normalize(model.user_proj(model.user_embedding(b)), dim=-1)
        scale = getattr(model, "score_scale", torch.tensor(1.0))
        contrastive = (scale * u @ F.normalize(model.cat_emb, dim=-1).T / model.cfg.tau).numpy()
        prior = (model.prior_w[0] * torch.log(b["target_hist"] + 0.01)
                 + model.prior_w[1] * torch.log(b["table"][:, :K] + 0.01)).numpy()
        full = model(b).numpy()
    kern = bg.time_of_day_kernel_scores(x.hour_hist, x.target_ts, bg.popularity_scores(users, x))
    return {"run": run, "seed": seed, "score_scale": round(float(scale.detach()), 4),
            "prior_w": [round(float(w), 4) for w in model.prior_w.detach()],
            "std_over_categories": {"contrastive": round(float(contrastive.std(1).mean()), 3),
                                    "prior": round(float(prior.std(1).mean()), 3)},
            "head": _metrics(full, x.truth), "prior_only": _metrics(prior, x.truth),
            "contrastive_only": _metrics(contrastive, x.truth), "kernel_row": _metrics(kern, x.truth)}


def signal_scores(users: gd.Users, split: str, hours: float = bg.TOD_KERNEL_HOURS) -> dict[str, np.ndarray]:
    """(n, K) shares: the hour kernel, the hour kernel at the last behavior's place, recent categories; truth."""
    K = users.n_categories
    out: dict[str, list[np.ndarray]] = {"kernel": [], "place": [], "recent": [], "truth": []}
    for w in gd.windows(users, split):
        b = users.behaviors[w.user].before(w.target_ts)
        row = sq.kernel_hour_counts(sq.hour_histogram(b, K), w.target_ts, hours)
        place, recent = np.zeros(K), np.zeros(K)
        if len(b):
            at = b.place == b.place[-1]
            ph = np.zeros((24, K))
            np.add.at(ph, ((b.interval[at] % sq.INTERVALS_PER_DAY) // 4, b.category[at]), 1.0)
            place = sq.kernel_hour_counts(ph, w.target_ts, hours)
            np.add.at(recent, b.category[b.interval >= b.interval[-1] - 4], 1.0)
        for k, v in (("kernel", row), ("place", place), ("recent", recent)):
            out[k].append(v / max(float(v.sum()), 1.0))
        out["truth"].append(w.truth)
    return {k: np.asarray(v) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default=",".join(f"artifacts/gtslum/full_s{s}" for s in SEEDS),
                    help="comma-separated GTS-LUM runs, one per simulator seed 0, 1, 2")
    ap.add_argument("--out", default="benchmarks/results/gtslum_headroom.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    runs = [r for r in args.runs.split(",") if r]
    pops = {s: gd.synthetic_users(50, s) for s in SEEDS}
    dec = [decomposition(r, s, pops[s]) for s, r in zip(SEEDS, runs)]
    signals: dict[str, dict[str, object]] = {}
    for split in ("val", "test"):
        per: dict[str, list[float]] = {k: [] for k in SIGNALS}
        for s in SEEDS:
            sc = signal_scores(pops[s], split)
            for name, (gp, gr) in SIGNALS.items():
                v = np.log(sc["kernel"] + 0.01) + gp * np.log(sc["place"] + 0.01) + gr * np.log(sc["recent"] + 0.01)
                per[name].append(_metrics(v, sc["truth"])["ndcg@5"])
        signals[split] = {k: {"ndcg@5_mean": round(float(np.mean(v)), 4), "per_seed": v} for k, v in per.items()}
    doc = {"meta": {"command": "python scripts/gtslum_headroom.py " + " ".join(sys.argv[1:] if argv is None else argv),
                    "date": time.strftime("%Y-%m-%d"), "wall_seconds": round(time.perf_counter() - t0, 1),
                    "data": "SYNTHETIC, 50 simulator users x seeds 0-2, PROTOCOL D windows",
                    "kernel_hours": bg.TOD_KERNEL_HOURS},
           "decomposition": dec, "signals": signals}
    atomic_json(Path(args.out), doc)
    print(json.dumps({"decomposition": [{k: d[k] for k in ("seed", "head", "prior_only", "contrastive_only",
                                                           "kernel_row")} for d in dec], "signals": signals}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
