"""B1 app Recall@3 with the ranking point estimate of PROTOCOL v2 B: expected engagement over the target hour (issue 10).

    python -m umask.bench.accuracy.user_rank_hour --ckpt checkpoints/umask_small_v10 --name umask_small_v10 \
        --seeds 0,1,2 --out benchmarks/results/v2_user_rank_hour.json

Why. B1's app Recall@3 ranks the 20 app categories in each of the target hour's four 15-minute slots. The
other rows rank each slot by the forecast's value in that slot: the mean (RMSE) estimate, which the issue
asks not to reuse for rankings ("expected engagement for rankings"). Here every slot of the hour is ranked by
the forecast's expected engagement over the hour (the sum of its four slots; `user_scoring.event_sums`,
metric ``app_recall@3_hour``), the same for U-MASK and every baseline. The question asked of the validation
day first (``meta.val``): does that estimator help each model, and which row leads; the test rows are the
answer on the test day (same users, windows and models as the per-slot rows of ``v2_user_umask_small_v10.json``:
50 SYNTHETIC users x simulator seeds 0-2, B1 target hours 0, 2, ..., 22).

A second question (``--kernel-betas``): the prior U-MASK refines (``smooth_blend``) mixes the last value into
the kernel slot-of-day mean with the share that minimized RMSE on validation (B1: 0.2). For rankings the
last value is worse than the kernel mean alone (``blend_smooth`` 0.786 vs ``historical_average_smooth`` 0.7985
app Recall@3). ``<name>@kernel<beta>`` is U-MASK's forecast with that share moved back to the kernel mean,
``x0 + beta (prior at share 0 - prior at the model's share)``: at beta = 1 the network's residual over the
kernel mean alone. beta is meant to be read off the validation day.

Rows: ``app_recall@3_hour`` per model (U-MASK: the x0 estimate at t = N-1, one draw, as its per-slot rows),
value = mean over the simulator seeds, spread = population std over them (as `user_v2`). ``meta``: per split,
seed and model both recalls.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from umask.bench.accuracy import user as ue
from umask.train.common.checkpoints import atomic_text

log = logging.getLogger(__name__)

METRICS = ("app_recall@3", "app_recall@3_hour")


class KernelRanked:
    """U-MASK's forecast with ``beta`` of its prior's last-value share moved to the kernel slot-of-day mean."""

    def __init__(self, base: Any, predictor: Any, beta: float) -> None:
        self.base, self.p, self.beta = base, predictor, float(beta)

    def __call__(self, view: Any) -> np.ndarray:
        from umask.runtime.families.umask.prior import history_tod_sums, prior_smooth_slots, task_prior
        from umask.bench.accuracy.user_umask import MODEL_TASKS, TASK_OF

        pred = self.base(view)
        p = self.p
        mb = p.model_batch(view)                      # its "prior": the model's own prior (share 0.2 on B1)
        x0, avail, pw = mb["x0"].numpy(), mb["avail"].numpy(), mb["prior"].numpy()
        task = MODEL_TASKS.index(TASK_OF[view.task])
        sl = view.target_slice
        out = np.array(pred, np.float64)
        for i, (u, start) in enumerate(zip(view.users, view.context_starts)):
            tensor = p.population.features[int(u)].tensor
            spd = tensor.slots_per_day
            hist = history_tod_sums(tensor, int(start))
            smooth = prior_smooth_slots(p.prior, spd)
            p0 = task_prior(x0[i], avail[i], int(start), task, p.window.context, hist, spd, 0.0, smooth)
            out[i] += self.beta * (p0 * tensor.channels.present[:, None, None, None] - pw[i])[:, sl]
        return np.maximum(out, 0.0).astype(np.float32)


def score(pop: Any, models: dict[str, Any], split: str, windows: Any, command: str) -> dict[str, dict[str, float]]:
    rows = ue.evaluate_population(pop, models, split=split, tasks=["B1"], command=command, windows=windows)
    return {r["model"]: {**{m: float(r["metrics"]["events"][m]) for m in METRICS}, "n_windows": int(r["n_windows"])}
            for r in rows}


def main(argv: Sequence[str] | None = None) -> int:
    from umask.bench.accuracy.user_umask import b1_hours, umask_predictor

    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m umask.bench.accuracy.user_rank_hour", description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--name", required=True, help="the U-MASK rows' model name")
    p.add_argument("--users", type=int, default=50)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--b1-every", type=int, default=2, help="B1 target hours h with h %% K == 0 (the v10 rows' windows)")
    p.add_argument("--kernel-betas", default="", help="e.g. 0.5,1: the @kernel<beta> rows (see above; '' = none)")
    p.add_argument("--out", default="benchmarks/results/v2_user_rank_hour.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    import torch

    torch.set_num_threads(1)
    command = shlex.join(["python", "-m", "umask.bench.accuracy.user_rank_hour", *argv])
    t0 = time.perf_counter()
    windows = {"B1": set(b1_hours(args.b1_every, 0))} if args.b1_every > 1 else None
    from umask.bench.accuracy.user_mae_rule import LastCall

    raw = umask_predictor(args.ckpt, n_samples=1, point="first_x0")
    pred = LastCall(raw)                                  # the @kernel rows reuse the same network evaluation
    betas = [float(b) for b in args.kernel_betas.split(",") if b.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    res: dict[str, dict[str, dict[str, dict[str, float]]]] = {"val": {}, "test": {}}
    dataset = None
    for seed in seeds:
        pop = ue.simulated_population(args.users, seed)
        pred.attach_population(pop)
        models = {**ue.v2_baseline_models(pop), args.name: pred,
                  **{f"{args.name}@kernel{b:g}": KernelRanked(pred, raw, b) for b in betas}}
        for split in ("val", "test"):
            res[split][str(seed)] = score(pop, models, split, windows, command)
            best = max(res[split][str(seed)].items(), key=lambda kv: kv[1]["app_recall@3_hour"])
            log.info("seed %d %s: %s %s; best hour-ranked %s %.4f (%.0f s)", seed, split, args.name,
                     res[split][str(seed)][args.name], best[0], best[1]["app_recall@3_hour"], time.perf_counter() - t0)
        dataset = (f"sim {args.users} users x {len(seeds)} seeds, v2 B windows (B1: target hours "
                   f"{','.join(map(str, sorted(windows['B1'])))} only)") if windows else None
    rows = []
    names = list(res["test"][str(seeds[0])])
    for model in names:
        vals = np.array([res["test"][str(s)][model]["app_recall@3_hour"] for s in seeds])
        per_slot = np.array([res["test"][str(s)][model]["app_recall@3"] for s in seeds])
        rows.append({"protocol": "B1", "dataset": dataset, "data": "synthetic", "model": model,
                     "kind": "ours" if model.startswith(args.name) else "baseline",
                     "family": "umask" if model.startswith(args.name) else None,
                     "artifact": "torch" if model.startswith(args.name) else ("lightgbm" if model == "lightgbm" else "numpy"),
                     "metric": "app_recall@3_hour", "value": float(vals.mean()), "better": "higher",
                     "n_windows": sum(res["test"][str(s)][model]["n_windows"] for s in seeds), "seeds": seeds, "spread": float(vals.std()), "command": command,
                     "notes": "app Recall@3 per target slot, every slot of the hour ranked by the forecast's expected "
                              "engagement over the hour (sum of its 4 slots); per seed "
                              f"{np.round(vals, 4).tolist()}; the per-slot ranking of the same forecasts: "
                              f"{np.round(per_slot, 4).tolist()}"})
    val_mean = {m: {k: float(np.mean([res["val"][str(s)][m][k] for s in seeds])) for k in METRICS} for m in names}
    doc = {"meta": {"command": command, "date": dt.date.today().isoformat(),
                    "wall_seconds": round(time.perf_counter() - t0, 1), "checkpoint": args.ckpt,
                    "point_estimator": "U-MASK: x0 at t = N-1, 1 draw; baselines: their forecasts",
                    "val_mean_over_seeds": val_mean, "per_seed": res},
           "rows": rows}
    atomic_text(Path(args.out), json.dumps(doc, indent=1) + "\n")
    order = sorted(names, key=lambda m: -val_mean[m]["app_recall@3_hour"])
    for m in order:
        t = {k: round(float(np.mean([res["test"][str(s)][m][k] for s in seeds])), 4) for k in METRICS}
        print(f"{m:32s} val {val_mean[m]['app_recall@3']:.4f} / {val_mean[m]['app_recall@3_hour']:.4f}   "
              f"test {t['app_recall@3']:.4f} / {t['app_recall@3_hour']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
