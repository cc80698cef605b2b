"""Which loss term moves eq. 13's budget? The gradient of each U-MASK loss term on the base-budget logit rho_tau.

    .venv/bin/python scripts/umask_budget_gradients.py [CKPT] [--batches 12] [--out benchmarks/results/umask_budget_gradients.json]

For ``--batches`` batches of 16 training windows (the first 150 users of the v4 population file; SYNTHETIC) it
backpropagates the loss of a ``budget_mode="free"`` model twice with the same noise: with ``w_nce = 0`` (the
completion term L_diff alone, incl. its context part) and with the checkpoint's ``w_nce`` (L_diff + InfoNCE);
the difference is the InfoNCE term's gradient. Reported per task: the mean gradient on rho's logit (its sign
is the direction gradient descent moves the budget: negative = more evidence) and the mean absolute value.
The numbers quoted in docs/paper_notes.md 9.1 and docs/families/umask.md "v5" come from the v4 checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from umask.train.common.checkpoints import atomic_json
from umask.train.models.umask.data import UserWindowDataset, build_profile_table, collate
from umask.train.models.umask.dit import TASKS
from umask.train.models.umask.trainer import TrainConfig, load_model, load_population

log = logging.getLogger("umask_budget_gradients")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt", nargs="?", default="artifacts/train/umask_small_v4/ckpt/step_001600")
    ap.add_argument("--data", default="artifacts/data/users_s0x50_s3x450.npz")
    ap.add_argument("--users", type=int, default=150)
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--out", default="benchmarks/results/umask_budget_gradients.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    model, _ = load_model(args.ckpt, ema=False)
    model.train()
    cfg = TrainConfig(model="small", data=args.data)
    users = load_population(cfg)[0][:args.users]
    profiles = build_profile_table(users, cfg.profile_source, cache_dir=cfg.sbert_cache, llm_cache=cfg.llm_profile_cache)
    ds = UserWindowDataset(users, model.cfg.window, profiles=profiles, data_seed=0)
    rng = np.random.default_rng(0)
    free = replace(model.cfg, budget_mode="free")
    grads: dict[str, list[np.ndarray]] = {"completion": [], "infonce": []}
    for b in range(args.batches):
        batch = collate([ds[int(i)] for i in rng.choice(len(ds), 16, replace=False)])
        g = {}
        for name, c in (("completion", replace(free, w_nce=0.0)), ("all", free)):
            model.cfg = c
            model.zero_grad(set_to_none=True)
            total, _ = model(batch, generator=torch.Generator().manual_seed(b))
            total.backward()
            g[name] = model.maskgen.rho_logit.grad.detach().clone().numpy()
        grads["completion"].append(g["completion"])
        grads["infonce"].append(g["all"] - g["completion"])
        log.info("batch %d/%d", b + 1, args.batches)
    out = {"meta": {"command": f"python scripts/umask_budget_gradients.py {args.ckpt} --batches {args.batches}",
                    "checkpoint": args.ckpt, "data": "SYNTHETIC (simulator population file " + args.data + ")",
                    "users": args.users, "batches": args.batches, "batch_size": 16,
                    "what": "d loss / d rho_logit per task; negative mean = gradient descent raises the budget"},
           "terms": {k: {t: {"mean": float(np.mean(v, 0)[i]), "mean_abs": float(np.mean(np.abs(v), 0)[i])}
                         for i, t in enumerate(TASKS)} for k, v in grads.items()}}
    atomic_json(Path(args.out), out)
    print(json.dumps(out["terms"], indent=1))


if __name__ == "__main__":
    main()
