"""PROTOCOL v2 rows of the grid-prior U-MASK on Milan A1 / A2 (issue 10): seeds, ablation, diagnosis.

``python -m umask.bench.accuracy.grid_umask_v2 --runs artifacts/train/grid_umask_s0 ... --out
benchmarks/results/v2_grid_umask.json`` (scripts/train_grid_umask.sh eval) scores the best checkpoint
of every run (one run per training seed) on exactly the PROTOCOL A test windows and masks of the
shared harness (benchmarks/accuracy/grid.py: every prediction goes through ``grid.evaluate``), next
to the harness baselines recomputed on the same windows and the ARIMA / PatchTST rows of their
result files, and writes

* rows (v2 shape, benchmarks/reports/scoreboard.py ``_v2_rows``): ``umask_grid_prior`` (kind ours,
  family umask): the mean over the seeds, spread = the seeds' standard deviation and range;
  ``grid_prior_only`` (kind ablation): the deterministic prior alone (= the model with a zero
  residual), metrics nmae, nrmse, mae_raw, rmse_raw. Each metric's row uses the point estimator
  chosen for it (meta.point_estimator).
* meta: per-seed figures, the baselines on the same windows, the margin over the best baseline
  against the seed spread, a paired bootstrap over windows (model - best recomputed baseline and
  model - prior), and where the error sits (per cell, per hour of day, per horizon lead), the
  learning curves (copied to benchmarks/results/learning_curves/grid_umask_s<seed>.jsonl) with the
  validation loss of the prior alone for reference.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from umask.bench.accuracy import grid as harness
from umask.bench.accuracy import grid_umask as gu
from umask.train.common.checkpoints import atomic_text, best_checkpoint
from umask.train.data import splits
from umask.train.data.grids import GridData, milan_grid

log = logging.getLogger(__name__)

DATASET = "milan 5x5 internet, test split"          # the scoreboard's dataset name of the Milan rows
METRICS = harness.V2_METRICS
REFERENCE = ("milan_arima.json", "milan_patchtst.json")
CURVES = Path("benchmarks/results/learning_curves")


# ------------------------------------------------------------------------------------------------
# Predictions on the protocol windows (computed once, then scored by the harness)
# ------------------------------------------------------------------------------------------------
def protocol_windows(spec: harness.GridSpec, split: str = "test") -> tuple[splits.ForecastWindows, Any]:
    """The harness's A1 windows and A2 windows + masks (what ``evaluate_a1`` / ``evaluate_a2`` cut)."""
    f = splits.forecast_windows(spec.z, split, history=spec.history, horizon=spec.horizon, splits=spec.splits)
    i = splits.imputation_windows(spec.z, split, window=spec.window, splits=spec.splits)
    return f, i


def predict(task: str, fn: Callable[..., np.ndarray], fw: splits.ForecastWindows, iw: Any) -> np.ndarray:
    if task == "a1":
        return np.asarray(fn(fw.x.copy(), fw.starts.copy(), fw.y.shape[1]), np.float64)
    return np.asarray(fn(np.where(iw.mask, np.nan, iw.truth), iw.mask.copy(), iw.starts.copy()), np.float64)


def harness_rows(grid: GridData, task: str, preds: Mapping[str, np.ndarray], split: str,
                 command: str) -> dict[str, dict[str, float]]:
    """name -> harness metrics of fixed predictions (the harness cuts the windows and checks shapes)."""
    models = {name: (lambda *a, _p=p: _p) for name, p in preds.items()}
    rows = harness.evaluate(task, grid, models, split=split, command=command)
    return {r["model"]: r["metrics"] for r in rows}


def window_errors(task: str, pred: np.ndarray, fw: splits.ForecastWindows, iw: Any) -> dict[str, np.ndarray]:
    """Per-window sums on the normalized scale: abs, sq, count (n,)."""
    truth = fw.y if task == "a1" else iw.truth
    m = np.ones_like(truth, bool) if task == "a1" else iw.mask
    e = np.where(m, pred - truth, 0.0)
    return {"abs": np.abs(e).sum((1, 2)), "sq": (e ** 2).sum((1, 2)), "n": m.sum((1, 2)).astype(np.float64)}


def paired_bootstrap(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], n_boot: int = 2000,
                     seed: int = 0) -> dict[str, Any]:
    """Pooled nMAE / nRMSE of ``a`` minus ``b`` over the same windows, 95 % percentile interval of a
    bootstrap over windows (resampled with replacement, paired)."""
    rng = np.random.default_rng(seed)
    n = len(a["n"])
    idx = rng.integers(0, n, (n_boot, n))

    def stat(x: Mapping[str, np.ndarray], i: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
        cnt = x["n"][i].sum(-1)
        return x["abs"][i].sum(-1) / cnt, np.sqrt(x["sq"][i].sum(-1) / cnt)

    (ma, ra), (mb, rb) = stat(a, slice(None)), stat(b, slice(None))
    (bma, bra), (bmb, brb) = stat(a, idx), stat(b, idx)
    out = {}
    for name, d, bd in (("nmae", ma - mb, bma - bmb), ("nrmse", ra - rb, bra - brb)):
        out[name] = {"diff": round(float(d), 5), "ci95": [round(float(np.percentile(bd, 2.5)), 5),
                                                          round(float(np.percentile(bd, 97.5)), 5)]}
    return out


def error_map(task: str, pred: np.ndarray, fw: splits.ForecastWindows, iw: Any, period: int) -> dict[str, Any]:
    """Where the normalized absolute error sits: per cell (row-major), per hour of day, per lead hour (A1)."""
    truth = fw.y if task == "a1" else iw.truth
    m = np.ones_like(truth, bool) if task == "a1" else iw.mask
    err = np.abs(pred - truth)
    L = truth.shape[1]
    first = fw.starts if task == "a1" else iw.starts
    tod = (first[:, None] + np.arange(L)[None, :]) % period                          # (n, L)
    hour = (tod * 24) // period
    hours = np.broadcast_to(hour[:, :, None], truth.shape)
    per_cell = (err * m).sum((0, 1)) / np.maximum(m.sum((0, 1)), 1)
    per_hour = [float((err * m)[hours == h].sum() / max(m[hours == h].sum(), 1)) for h in range(24)]
    out = {"per_cell_nmae": np.round(per_cell, 4).tolist(), "per_hour_of_day_nmae": np.round(per_hour, 4).tolist()}
    if task == "a1":
        lead = np.arange(L) * 24 // period
        out["per_lead_hour_nmae"] = [round(float(err[:, lead == h].mean()), 4) for h in range(24)]
    return out


# ------------------------------------------------------------------------------------------------
# One run (seed)
# ------------------------------------------------------------------------------------------------
def load_prior_run(run: str, grid: GridData) -> tuple[Path, Any, dict[str, Any], np.ndarray, Any, Any, Any]:
    """A grid-prior run's best checkpoint -> (path, model, config, E_pos, rescale, grid prior, geometry)."""
    ckpt = best_checkpoint(run)
    model, config = gu.load_model(ckpt)
    e_pos, rescale = gu.checkpoint_inputs(config, grid)
    prior = gu.checkpoint_prior(model, config, grid, rescale)
    if prior is None:
        raise SystemExit(f"{run}: not a grid-prior checkpoint (--prior grid)")
    return ckpt, model, config, e_pos, rescale, prior, gu.geometry(model, grid)


def score_run(run: str, grid: GridData, spec: harness.GridSpec, fw: Any, iw: Any, tasks: Sequence[str], *,
              points: Mapping[str, str], samples: int, steps: int, batch_size: int,
              command: str) -> dict[str, Any]:
    """Predictions, harness metrics and per-window errors of one run's best checkpoint (and of its prior)."""
    ckpt, model, config, e_pos, rescale, prior, geo = load_prior_run(run, grid)
    out: dict[str, Any] = {"run": run, "checkpoint": str(ckpt), "seed": int(config["train"]["seed"]),
                           "fit": gu._fit_info(ckpt, config), "tasks": {}}
    for task in tasks:
        t0 = time.perf_counter()
        mk = gu.forecast_fn if task == "a1" else gu.impute_fn
        preds = {}
        for point in sorted(set(points.values())):
            fn = mk(model, e_pos, steps=steps, n_samples=samples, seed=0, batch_size=batch_size, geo=geo,
                    rescale=rescale, prior=prior, point=point)
            preds[point] = predict(task, fn, fw, iw)
        pmk = gu.prior_forecast_fn if task == "a1" else gu.prior_impute_fn
        preds["prior_only"] = predict(task, pmk(prior, rescale), fw, iw)
        metrics = harness_rows(grid, task, preds, "test", command)
        out["tasks"][task] = {"metrics": metrics, "preds": preds, "seconds": round(time.perf_counter() - t0, 1),
                              "errors": {k: window_errors(task, p, fw, iw) for k, p in preds.items()}}
        log.info("%s %s: %s", run, task.upper(), {k: round(v["normalized_mae"], 4) for k, v in metrics.items()})
    out["prior"] = prior.describe()
    return out


def estimator_check(run: str, grid: GridData, spec: harness.GridSpec, stride: int, samples: int,
                    steps: int) -> dict[str, Any]:
    """Normalized MAE / RMSE of each point estimator (and of the prior) on every ``stride``-th
    VALIDATION window of A1 and A2: how the per-metric estimator was chosen (never on test)."""
    fw, iw = protocol_windows(spec, "val")
    fw = splits.ForecastWindows(fw.x[::stride], fw.y[::stride], fw.starts[::stride])
    iw = splits.ImputationWindows(iw.truth[::stride], iw.mask[::stride], iw.p[::stride], iw.starts[::stride])
    model, config = gu.load_model(best_checkpoint(run))
    e_pos, rescale = gu.checkpoint_inputs(config, grid)
    prior = gu.checkpoint_prior(model, config, grid, rescale)
    out: dict[str, Any] = {"run": run, "stride": stride, "draws": samples, "ddim_steps": steps}
    for task in ("a1", "a2"):
        truth = fw.y if task == "a1" else iw.truth
        m = np.ones_like(truth, bool) if task == "a1" else iw.mask
        pmk = gu.prior_forecast_fn if task == "a1" else gu.prior_impute_fn
        mk = gu.forecast_fn if task == "a1" else gu.impute_fn
        fns = {"prior_only": pmk(prior, rescale)}
        fns.update({pt: mk(model, e_pos, steps=steps, n_samples=samples, rescale=rescale, prior=prior, point=pt)
                    for pt in gu.POINTS})
        res = {}
        for name, fn in fns.items():
            e = (predict(task, fn, fw, iw) - truth)[m]
            res[name] = {"nmae": round(float(np.abs(e).mean()), 4), "nrmse": round(float(np.sqrt((e ** 2).mean())), 4)}
        out[task.upper()] = {"n_windows": int(len(fw.starts) if task == "a1" else len(iw.starts)), **res}
        log.info("validation estimators %s: %s", task.upper(), res)
    return out


def prior_val_loss(run: str) -> float | None:
    """Validation target loss of a zero-residual model (= the prior) with the run's own settings and
    windows: the learning curve's reference line."""
    from umask.train.common import loop
    from umask.train.models.umask.data import collate
    from umask.train.models.umask.grid import GridFamily, GridTrainConfig

    cfg_d = json.loads((best_checkpoint(run) / "config.json").read_text())["train"]
    fields = GridTrainConfig.__dataclass_fields__
    cfg = GridTrainConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg_d.items() if k in fields})
    fam = GridFamily(cfg)
    fam.setup(loop.Dist(), torch.device("cpu"))
    torch.manual_seed(cfg.seed)
    fresh = fam.build_model()
    return float(loop.evaluate(fresh, fam.val_ds, cfg, torch.device("cpu"), loop.Dist(), collate)["val/target"])


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------
def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def reference_metrics(results: Path) -> dict[str, dict[str, dict[str, float]]]:
    """task -> model -> harness metrics of the ARIMA / PatchTST result files (all protocol windows)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in REFERENCE:
        path = results / name
        if path.exists():
            for r in json.loads(path.read_text()):
                if r.get("split") == "test" and "@" not in r["model"] and r["model"] not in harness.BASELINE_NOTES:
                    out.setdefault(r["task"][:2].lower(), {})[r["model"]] = r["metrics"]
    return out


def cli_setup(module: str, argv: Sequence[str], tasks_arg: str) -> tuple[str, list[str], float, GridData, Any]:
    """A Milan scoring CLI's common start (logging, one torch thread) -> (command, tasks, start time, the
    Milan grid, its harness spec)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(1)
    tasks = [t.strip().lower() for t in tasks_arg.split(",") if t.strip()]
    grid = milan_grid()
    return shlex.join(["python", "-m", module, *argv]), tasks, time.perf_counter(), grid, harness.GridSpec(grid)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m umask.bench.accuracy.grid_umask_v2", description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True, help="run directories, one per training seed")
    p.add_argument("--out", default="benchmarks/results/v2_grid_umask.json")
    p.add_argument("--tasks", default="a1,a2")
    p.add_argument("--samples", type=int, default=4, help="noise draws per window")
    p.add_argument("--steps", type=int, default=10, help="DDIM steps of the sampled estimators")
    p.add_argument("--point-mae", default="first_x0", choices=gu.POINTS, help="point estimator of the MAE rows")
    p.add_argument("--point-rmse", default="first_x0", choices=gu.POINTS, help="point estimator of the RMSE rows")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-curves", action="store_true", help="do not copy the learning curves")
    p.add_argument("--name", default="umask_grid_prior",
                   help="row name of the runs (their prior-only ablation: grid_prior_only for the default name, "
                        "else NAME_prior_only); the learning curves are copied as NAME's files")
    p.add_argument("--val-check-stride", type=int, default=16,
                   help="also score every point estimator on every k-th validation window of the first run (0: skip)")
    args = p.parse_args(argv)
    command, tasks, t_start, grid, spec = cli_setup("umask.bench.accuracy.grid_umask_v2", argv, args.tasks)
    fw, iw = protocol_windows(spec)
    points = {"mae": args.point_mae, "rmse": args.point_rmse}
    prior_name = "grid_prior_only" if args.name == "umask_grid_prior" else f"{args.name}_prior_only"
    curve_stem = "grid_umask" if args.name == "umask_grid_prior" else args.name
    runs = [score_run(r, grid, spec, fw, iw, tasks, points=points, samples=args.samples, steps=args.steps,
                      batch_size=args.batch_size, command=command) for r in args.runs]
    seeds = [r["seed"] for r in runs]
    refs = reference_metrics(Path(args.out).parent)
    rows, meta_tasks = [], {}
    for task in tasks:
        base_fns, _ = harness.baseline_models(task, spec)
        base_preds = {k: predict(task, f, fw, iw) for k, f in base_fns.items() if k != "all_zero"}
        base_metrics = harness_rows(grid, task, base_preds, "test", command)
        base_err = {k: window_errors(task, v, fw, iw) for k, v in base_preds.items()}
        per_seed = {str(r["seed"]): {k: r["tasks"][task]["metrics"][k] for k in r["tasks"][task]["metrics"]}
                    for r in runs}

        def metric_of(r: Mapping[str, Any], mkey: str) -> float:
            point = points["mae" if "mae" in mkey else "rmse"]
            return float(r["tasks"][task]["metrics"][point][mkey])

        all_base = {**base_metrics, **refs.get(task, {})}
        summary = {}
        for metric, mkey in METRICS:
            vals = np.array([metric_of(r, mkey) for r in runs])
            prior_vals = np.array([r["tasks"][task]["metrics"]["prior_only"][mkey] for r in runs])
            best_name = min(all_base, key=lambda k: all_base[k][mkey])
            best = all_base[best_name][mkey]
            spread = float(vals.std(ddof=1)) if len(vals) > 1 else None
            summary[metric] = {"mean": round(float(vals.mean()), 5), "per_seed": np.round(vals, 5).tolist(),
                               "seed_std": None if spread is None else round(spread, 5),
                               "best_baseline": best_name, "best_baseline_value": round(float(best), 5),
                               "margin": round(float(best - vals.mean()), 5),
                               "beats_best_by_more_than_spread": bool(spread is not None
                                                                      and best - vals.max() > 0
                                                                      and best - vals.mean() > 2 * spread),
                               "prior_only": round(float(prior_vals.mean()), 5)}
            pe = "mae" if "mae" in metric else "rmse"
            note = (f"point estimator: {gu.POINT_TEXT[points[pe]]}; {len(runs)} training seeds {seeds}, value = "
                    f"their mean, spread = sample std over seeds (per seed {np.round(vals, 4).tolist()}); all "
                    f"{len(fw.starts) if task == 'a1' else len(iw.starts)} protocol windows")
            rows.append({"protocol": task.upper(), "dataset": DATASET, "data": "real", "model": args.name,
                         "kind": "ours", "family": "umask", "artifact": "torch", "metric": metric,
                         "value": float(vals.mean()), "better": "lower",
                         "n_windows": int(len(fw.starts) if task == "a1" else len(iw.starts)), "seeds": seeds,
                         "spread": None if spread is None else round(spread, 5),
                         "command": command, "notes": note})
            rows.append({"protocol": task.upper(), "dataset": DATASET, "data": "real", "model": prior_name,
                         "kind": "ablation", "family": "umask", "artifact": "numpy", "metric": metric,
                         "value": float(prior_vals.mean()), "better": "lower",
                         "n_windows": rows[-1]["n_windows"], "seeds": [0], "spread": None, "command": command,
                         "notes": "the deterministic grid prior alone (train/models/umask/grid_prior.py) = the "
                                  "grid-prior U-MASK with a zero residual; no training seed"})
        # the seeds' ensemble: per-entry mean of their point predictions (one row per metric's estimator)
        ens_metrics = {}
        if len(runs) > 1:
            for pt in sorted(set(points.values())):
                ens = np.mean([r["tasks"][task]["preds"][pt] for r in runs], axis=0)
                ens_metrics[pt] = harness_rows(grid, task, {"ens": ens}, "test", command)["ens"]
            for metric, mkey in METRICS:
                pt = points["mae" if "mae" in metric else "rmse"]
                rows.append({"protocol": task.upper(), "dataset": DATASET, "data": "real",
                             "model": f"{args.name}_ens{len(runs)}", "kind": "ours", "family": "umask",
                             "artifact": "torch", "metric": metric, "value": float(ens_metrics[pt][mkey]),
                             "better": "lower", "n_windows": rows[-1]["n_windows"], "seeds": seeds, "spread": None,
                             "command": command,
                             "notes": f"per-entry mean of the {len(runs)} seeds' point predictions ({gu.POINT_TEXT[pt]})"})
        # paired bootstrap (seed 0's run) vs the best recomputed baseline and vs the prior
        r0 = runs[0]["tasks"][task]
        best_rec = min(base_metrics, key=lambda k: base_metrics[k]["normalized_mae"])
        boot = {f"{pt}_minus_{best_rec}": paired_bootstrap(r0["errors"][pt], base_err[best_rec])
                for pt in sorted(set(points.values()))}
        boot.update({f"{pt}_minus_prior_only": paired_bootstrap(r0["errors"][pt], r0["errors"]["prior_only"])
                     for pt in sorted(set(points.values()))})
        period = spec.period
        diag = {"umask_grid_prior": error_map(task, r0["preds"][points["mae"]], fw, iw, period),
                "prior_only": error_map(task, r0["preds"]["prior_only"], fw, iw, period),
                best_rec: error_map(task, base_preds[best_rec], fw, iw, period)}
        meta_tasks[task.upper()] = {
            "summary": summary, "per_seed_all_points": per_seed,
            "ensemble_of_seeds": {pt: {m: round(v[mk], 5) for m, mk in METRICS} for pt, v in ens_metrics.items()},
            "baselines_same_windows": {k: {m: round(v[mk], 5) for m, mk in METRICS} for k, v in base_metrics.items()},
            "reference_rows": {k: {m: round(v[mk], 5) for m, mk in METRICS if v.get(mk) is not None}
                               for k, v in refs.get(task, {}).items()},
            "paired_bootstrap_seed0": {"what": "pooled normalized metric of the model minus the other on the same "
                                               "windows (negative = model better), 95 % percentile interval of 2000 "
                                               "window resamples; the windows overlap (stride 1), so the interval "
                                               "is optimistic", **boot},
            "where_the_error_is_seed0": diag,
            "eval_seconds": [r["tasks"][task]["seconds"] for r in runs]}
    curves = {}
    for r in runs:
        src = Path(r["run"]) / "metrics.jsonl"
        if src.exists() and not args.no_curves:
            dst = CURVES / f"{curve_stem}_s{r['seed']}.jsonl"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            curves[str(r["seed"])] = str(dst)
    ref_loss = prior_val_loss(runs[0]["run"])
    val_check = (estimator_check(runs[0]["run"], grid, spec, args.val_check_stride, 8, args.steps)
                 if args.val_check_stride > 0 else None)
    doc = {"meta": {
        "command": command, "commit": _git_commit(), "date": dt.date.today().isoformat(),
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "notes": "U-MASK grid model with the deterministic grid prior (train/models/umask/grid.py, grid_prior.py): "
                 "DiT = prior + zero-init residual, calendar features as e_u, day-aligned 576-slot frame, every "
                 "available observation as evidence (mask_mode none); real Milan data, PROTOCOL A test windows "
                 "and masks of benchmarks/accuracy/grid.py",
        "point_estimator": {"mae_rows": gu.POINT_TEXT[points["mae"]], "rmse_rows": gu.POINT_TEXT[points["rmse"]],
                            "draws": args.samples, "sampler_steps_if_sampled": args.steps,
                            "chosen_on_validation": val_check},
        "spread": "sample standard deviation of the metric over the training seeds",
        "seeds": seeds, "runs": [{k: r[k] for k in ("run", "checkpoint", "seed", "fit")} for r in runs],
        "prior": runs[0]["prior"],
        "learning_curves": {"files": curves, "val_target_of_the_prior_alone": ref_loss,
                            "what": "metrics.jsonl of each run; val/target = eq. 19 target x0 error on the "
                                    "validation windows at fixed noise; the prior alone (zero residual) scores "
                                    "val_target_of_the_prior_alone on the same windows"},
        "tasks": meta_tasks,
        "export": "no grid export path: export/families/umask/exporter.py refuses prior != 'none' and has no grid "
                  "frame; the exported artifact is not scored on A1 / A2 (left for later)"},
        "rows": rows}
    out = Path(args.out)
    atomic_text(out, json.dumps(doc, indent=1, default=float) + "\n")
    atomic_text(out.with_suffix(".md"), markdown(doc))
    print(markdown(doc))
    return 0


def markdown(doc: Mapping[str, Any]) -> str:
    # the rows' names (--name): the model's torch rows are kind "ours", its prior-only rows the numpy ablation
    name = next(r["model"] for r in doc["rows"] if r["kind"] == "ours" and r["artifact"] == "torch")
    prior_name = next(r["model"] for r in doc["rows"] if r["kind"] == "ablation" and r["artifact"] == "numpy")
    lines = [f"Command: `{doc['meta']['command']}`", "", "| task | model | nMAE | nRMSE | raw MAE | raw RMSE |",
             "|---|---|---:|---:|---:|---:|"]
    for task, t in doc["meta"]["tasks"].items():
        s = t["summary"]

        def cell(m: str) -> str:
            sd = s[m]["seed_std"]
            return f"{s[m]['mean']:.4f}" + (f" ± {sd:.4f}" if sd is not None else "")
        lines.append(f"| {task} | {name} (ours, {len(doc['meta']['seeds'])} seeds) | {cell('nmae')} | "
                     f"{cell('nrmse')} | {cell('mae_raw')} | {cell('rmse_raw')} |")
        lines.append(f"| {task} | {prior_name} (ablation) | {s['nmae']['prior_only']:.4f} | "
                     f"{s['nrmse']['prior_only']:.4f} | {s['mae_raw']['prior_only']:.2f} | "
                     f"{s['rmse_raw']['prior_only']:.2f} |")
        for pt, v in t.get("ensemble_of_seeds", {}).items():
            lines.append(f"| {task} | {name}_ens{len(doc['meta']['seeds'])} ({pt}) | {v['nmae']:.4f} | "
                         f"{v['nrmse']:.4f} | {v['mae_raw']:.2f} | {v['rmse_raw']:.2f} |")
        for k, v in {**t["baselines_same_windows"], **t["reference_rows"]}.items():
            lines.append(f"| {task} | {k} | {v['nmae']:.4f} | {v['nrmse']:.4f} | {v['mae_raw']:.2f} | "
                         f"{v['rmse_raw']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
