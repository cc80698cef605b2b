"""The grid U-MASK's residual, gated per cell on the validation days (issue 10, Milan A1 / A2).

    python -m umask.bench.accuracy.grid_residual_gate --runs artifacts/train/grid_umask_s0 \
        artifacts/train/grid_umask_s1 artifacts/train/grid_umask_s2 --out benchmarks/results/v2_grid_umask_gated.json
    python -m umask.bench.accuracy.grid_residual_gate --family ustsllm --runs artifacts/train/ustsllm_s{0,1,2}/ckpt/best \
        --kind ablation --out benchmarks/results/v2_ustsllm_gated.json     # the same gate over U-STS-LLM (issue 12)

Why. The grid model predicts ``prior + residual`` (train/models/umask/grid.py). On A1 the residual fixes
cells whose prior level is off and makes the busy central cells worse (seed 0: cells 10, 11, 17 go from
0.35 / 0.31 / 0.30 nMAE with the prior alone to 0.47 / 0.45 / 0.35; docs/families/umask_grid.md): with 24
training days it learns per-cell patterns that do not recur. A practitioner would keep the residual only
where it has been seen to help. Here, per run, task and cell c, the prediction is

    prior + alpha_c x (model - prior),   alpha_c in ALPHAS,

with alpha_c chosen by the lowest normalized MAE of that cell on every VALIDATION window of the task (days
25-27, the trainer's own validation period; the test days are never read for the choice), then frozen and
applied to the test windows. alpha = 1 everywhere is the model itself, alpha = 0 the prior alone.
U-STS-LLM (``--family ustsllm``) has the same structure: its eq. 7 guidance starts from the same grid prior
and eq. 14 fuses the LLM branch on top, so the gate applies to the whole network's output. Same
weights, same noise draws (first_x0, 16 draws) and the harness's protocol windows and masks as
``grid_umask_v2``; the ungated test figures are recomputed here and must equal that file's per-seed rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from umask.bench.accuracy import grid as harness
from umask.bench.accuracy import grid_umask as gu
from umask.bench.accuracy.grid_umask_v2 import (DATASET, METRICS, _git_commit, cli_setup, harness_rows,
                                                  load_prior_run, predict, protocol_windows)
from umask.runtime.families.umask.grid_prior import A2_PRIOR_ROWS, ALPHAS, choose_alphas, gate
from umask.train.common.checkpoints import atomic_text

log = logging.getLogger(__name__)



def _truth_mask(task: str, fw: Any, iw: Any) -> tuple[np.ndarray, np.ndarray]:
    truth = fw.y if task == "a1" else iw.truth
    return truth, (np.ones_like(truth, bool) if task == "a1" else iw.mask)


def _umask_fns(run: str, grid: Any, samples: int, batch_size: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """task -> (model fn, prior fn) of a grid-prior U-MASK run's best checkpoint, and its info."""
    ckpt, model, config, e_pos, rescale, prior, geo = load_prior_run(run, grid)
    fns = {"a1": (gu.forecast_fn(model, e_pos, steps=10, n_samples=samples, seed=0, batch_size=batch_size, geo=geo,
                                 rescale=rescale, prior=prior, point="first_x0"), gu.prior_forecast_fn(prior, rescale)),
           "a2": (gu.impute_fn(model, e_pos, steps=10, n_samples=samples, seed=0, batch_size=batch_size, geo=geo,
                               rescale=rescale, prior=prior, point="first_x0"), gu.prior_impute_fn(prior, rescale))}
    return fns, {"run": run, "checkpoint": str(ckpt), "seed": int(config["train"]["seed"])}


def _ustsllm_fns(ckpt: str, grid: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """task -> (model fn, prior fn) of a U-STS-LLM checkpoint: the whole network (eq. 14) and the grid prior its
    eq. 7 guidance starts from (benchmarks/accuracy/ustsllm.prior_fns)."""
    from umask.bench.accuracy.ustsllm import prior_fns, torch_fns
    from umask.train.models.ustsllm.trainer import first_weekday_of

    wd = first_weekday_of(grid)
    f, i, info = torch_fns(ckpt, grid, wd)
    pf, pi, _ = prior_fns(harness.GridSpec(grid), wd)
    return {"a1": (f, pf), "a2": (i, pi)}, {"run": ckpt, "checkpoint": info["checkpoint"], "seed": int(info["seed"] or 0)}


def a2_other(spec: harness.GridSpec, a2_prior: str) -> Any:
    """The A2 gate's other end with ``--a2-prior lowrank`` / ``lowrank_profile``: the lowrank_interpolation /
    profile_lowrank_interpolation baseline row of the harness (an ImputeFn)."""
    return harness.baseline_imputers(spec.z, period=spec.period, train_end=spec.train_end,
                                     first_weekday=spec.first_weekday)[A2_PRIOR_ROWS[a2_prior]]


def run_predictions(run: str, grid: Any, spec: harness.GridSpec, tasks: Sequence[str], samples: int,
                    batch_size: int, family: str = "umask", a2_prior: str = "grid") -> dict[str, Any]:
    """Model and prior predictions of one run on the validation and test windows of each task."""
    fns, out = _umask_fns(run, grid, samples, batch_size) if family == "umask" else _ustsllm_fns(run, grid)
    if a2_prior != "grid":
        fns["a2"] = (fns["a2"][0], a2_other(spec, a2_prior))
    for split in ("val", "test"):
        fw, iw = protocol_windows(spec, split)
        for task in tasks:
            t0 = time.perf_counter()
            fn, pfn = fns[task]
            out[(split, task)] = {"model": predict(task, fn, fw, iw), "prior": predict(task, pfn, fw, iw),
                                  "truth_mask": _truth_mask(task, fw, iw)}
            log.info("%s %s %s: %.0f s", run, split, task.upper(), time.perf_counter() - t0)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m umask.bench.accuracy.grid_residual_gate",
                                description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True,
                   help="one per training seed: grid-prior U-MASK run directories, or U-STS-LLM checkpoints")
    p.add_argument("--family", default="umask", choices=("umask", "ustsllm"), help="the runs' model family")
    p.add_argument("--name", default=None, help="row name (default umask_grid_gated / ustsllm_gated)")
    p.add_argument("--kind", default="ours", choices=("ours", "ablation"), help="the rows' scoreboard kind")
    p.add_argument("--out", default="benchmarks/results/v2_grid_umask_gated.json")
    p.add_argument("--tasks", default="a1,a2")
    p.add_argument("--samples", type=int, default=16, help="noise draws per window (first_x0), as grid_umask_v2")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--a2-prior", default="grid", choices=("grid", "lowrank", "lowrank_profile"),
                   help="A2's other end of the gate: the model's own grid prior (linear interpolation), the "
                        "lowrank_interpolation baseline (low-rank completion across cells + interpolation), or the "
                        "profile_lowrank_interpolation baseline (that blended with the completion of the deviation "
                        "from the day-type profile)")
    args = p.parse_args(argv)
    command, tasks, t_start, grid, spec = cli_setup("umask.bench.accuracy.grid_residual_gate", argv, args.tasks)
    runs = [run_predictions(r, grid, spec, tasks, args.samples, args.batch_size, args.family, args.a2_prior)
            for r in args.runs]
    name = args.name or ("umask_grid_gated" if args.family == "umask" else "ustsllm_gated")
    base = "umask_grid_prior" if args.family == "umask" else "ustsllm"
    seeds = [r["seed"] for r in runs]
    rows: list[dict[str, Any]] = []
    meta_tasks: dict[str, Any] = {}
    for task in tasks:
        n_test = len(runs[0][("test", task)]["model"])
        per_seed: dict[str, Any] = {}
        gated_preds = []
        for r in runs:
            v, t = r[("val", task)], r[("test", task)]
            alphas = choose_alphas(v["model"], v["prior"], *v["truth_mask"])
            g = gate(t["model"], t["prior"], alphas)
            gated_preds.append(g)
            m = harness_rows(grid, task, {"gated": g, "model": t["model"], "prior": t["prior"]}, "test", command)
            vt, vm = v["truth_mask"]
            val_nmae = {k: round(float((np.abs(x - vt) * vm).sum() / vm.sum()), 5)
                        for k, x in (("gated", gate(v["model"], v["prior"], alphas)), ("model", v["model"]),
                                     ("prior", v["prior"]))}
            per_seed[str(r["seed"])] = {"alphas_per_cell": alphas.tolist(), "val_nmae": val_nmae,
                                        "test": {k: {name: round(float(x[mk]), 5) for name, mk in METRICS}
                                                 for k, x in m.items()}}
            log.info("%s seed %s: alphas %s; test nMAE gated %.4f model %.4f prior %.4f", task.upper(), r["seed"],
                     alphas.tolist(), m["gated"]["normalized_mae"], m["model"]["normalized_mae"],
                     m["prior"]["normalized_mae"])
        ens = harness_rows(grid, task, {"ens": np.mean(gated_preds, axis=0)}, "test", command)["ens"]
        other = (f"the {A2_PRIOR_ROWS[args.a2_prior]} baseline (not its own prior)"
                 if task == "a2" and args.a2_prior != "grid" else "its grid prior")
        for metric, mkey in METRICS:
            vals = np.array([per_seed[str(s)]["test"]["gated"][metric] for s in seeds])
            spread = round(float(vals.std(ddof=1)), 5) if len(vals) > 1 else None
            rows.append({"protocol": task.upper(), "dataset": DATASET, "data": "real", "model": name,
                         "kind": args.kind, "family": args.family, "artifact": "torch", "metric": metric,
                         "value": float(vals.mean()), "better": "lower", "n_windows": n_test, "seeds": seeds,
                         "spread": spread, "command": command,
                         "notes": f"{base}'s weights and predictions"
                                  f"{f' (first_x0, {args.samples} draws)' if args.family == 'umask' else ''} with the "
                                  f"residual over {other} gated per cell on the validation windows (alpha in {list(ALPHAS)}); "
                                  f"{len(seeds)} training seeds, value = mean, spread = std (per seed "
                                  f"{np.round(vals, 4).tolist()})"})
            if len(runs) > 1:
                rows.append({"protocol": task.upper(), "dataset": DATASET, "data": "real",
                             "model": f"{name}_ens{len(runs)}", "kind": args.kind, "family": args.family,
                             "artifact": "torch", "metric": metric, "value": float(ens[mkey]), "better": "lower",
                             "n_windows": n_test, "seeds": seeds, "spread": None, "command": command,
                             "notes": f"per-entry mean of the {len(runs)} seeds' gated predictions"})
        meta_tasks[task.upper()] = {"per_seed": per_seed,
                                    "ensemble": {name: round(float(ens[mk]), 5) for name, mk in METRICS}}
    doc = {"meta": {"command": command, "commit": _git_commit(), "date": dt.date.today().isoformat(),
                    "wall_seconds": round(time.perf_counter() - t_start, 1), "alphas": list(ALPHAS),
                    "chosen_on": "every validation window of the task (the trainer's validation days), per cell, "
                                 "lowest normalized MAE; frozen, then applied to the test windows",
                    "runs": [{"run": r["run"], "checkpoint": r["checkpoint"], "seed": r["seed"]} for r in runs],
                    "tasks": meta_tasks},
           "rows": rows}
    atomic_text(Path(args.out), json.dumps(doc, indent=1, default=float) + "\n")
    print(json.dumps({t: {"ensemble": v["ensemble"], **{s: v["per_seed"][s]["test"]["gated"] for s in v["per_seed"]}}
                      for t, v in meta_tasks.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
