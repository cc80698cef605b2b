"""Where FatsMB's hits can come from: item Recall@10 on the protocol-C test split by kind of target.

    python -m umask.bench.accuracy.fatsmb_reach --run artifacts/fatsmb/seed0 --out benchmarks/results/fatsmb_reach.json

Test targets (real Taobao sample, 814 users) fall in three groups: a repeat of an item of the user's
own history; an item new to the user but present in the training rows; an item that occurs in no
training row and not in the history (no model that learns from the training split can rank it).
For each group: its share and the item Recall@10 of FatsMB without and with the prior, the blend
baseline and "recent items" (seed-0 run; the same scores as benchmarks/results/v2_fatsmb.json).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from umask.train.common.checkpoints import atomic_json
from umask.train.common.metrics import full_ranking_metrics
from umask.train.models.fatsmb.data import TAOBAO_SAMPLE, load_protocol_c


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    from umask.train.baselines import seqrec
    from umask.train.models.fatsmb import prior as prior_fit
    from umask.train.models.fatsmb import trainer

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="artifacts/fatsmb/seed0")
    p.add_argument("--data", default=str(TAOBAO_SAMPLE))
    p.add_argument("--out", default="benchmarks/results/fatsmb_reach.json")
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    d = load_protocol_c(ns.data)
    tables, q = prior_fit.tables_for(d), d.test
    in_hist = np.array([it in pre[0] for pre, it in zip(q.prefixes, q.item)])
    in_train = tables.counts[q.item] > 0
    groups = {"repeat_of_history": in_hist, "new_to_user_seen_in_training": ~in_hist & in_train,
              "never_in_training_nor_history": ~in_hist & ~in_train}
    model, meta = trainer.load(ns.run)
    st, w = meta["sampling"]["steps"], meta["sampling"]["guidance"]
    val = (d.val.prefixes, d.val.item, d.val.behavior)
    scores = {"fatsmb_noprior": trainer.score(model, q.prefixes, q.behavior, steps=st, w=w),
              "fatsmb": prior_fit.score(model, meta, prior_fit.load_fit(ns.run), tables, q.prefixes, q.behavior),
              "blend": seqrec.make("blend").fit(d.train, d.n_items, d.n_behaviors, val=val).score(q.prefixes, q.behavior),
              "recent": seqrec.make("recent").fit(d.train, d.n_items, d.n_behaviors).score(q.prefixes, q.behavior)}
    out = {g: {"share": round(float(m.mean()), 4), "users": int(m.sum())} for g, m in groups.items()}
    for name, s in scores.items():
        r = full_ranking_metrics(s, q.item, (10,))["recall@10"]
        for g, m in groups.items():
            out[g][f"{name}_item_recall@10"] = round(float(r[m].mean()), 4)
    atomic_json(Path(ns.out), {"meta": {"command": "python -m umask.bench.accuracy.fatsmb_reach " + " ".join(argv or []),
                                        "data": "real", "run": ns.run, "users": len(q)}, "groups": out})
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
