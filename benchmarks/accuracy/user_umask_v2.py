"""PROTOCOL v2 B rows of one U-MASK checkpoint over several simulator seeds, next to every v2 baseline.

    python -m umask.bench.accuracy.user_umask_v2 --ckpt checkpoints/umask_small --name umask_small \\
        --seeds 0,1,2 --users 50 --ablations --out benchmarks/results/v2_user_umask_small.json

For each simulator seed (``--users`` SYNTHETIC users; the checkpoint's own training population is
seed 0, and only its training days 1-5 were seen; seeds 1, 2 are users it never saw) the protocol-B
harness (:mod:`umask.bench.accuracy.user`) scores every v2 baseline and the checkpoint on the same
test-day windows; the REAL 6-user one-day sample adds B1 (in-day context; no earlier history, so
the prior is the in-day last value / mean). Rows: mean over seeds, spread = population std over
seeds (``user_v2.aggregate``); only the U-MASK rows go into the file's ``rows`` (the baselines are
``v2_user_baselines.json``, the same windows); the baselines' figures of this run are in
``meta.baselines`` so the comparison is visible in one file.

Point estimator per metric (stated in every row's notes):

* RMSE, the event metrics (app Recall@3, location Acc@1) and the B3 rankings: the network's
  conditional-mean estimate, its x0 prediction at the sampler's first step (t = N-1) averaged over
  ``--x0-draws`` noise draws (`UMask.complete(point="first_x0")`): the mean minimises squared
  error, and rankings by expected engagement are rankings by the mean;
* MAE with ``--mae-rule`` (the default of scripts/eval_user_umask_small.sh): the x0 mean estimate with
  entries at or below a threshold set to 0 and the others kept or set to an active level, both per
  task and channel group chosen on the validation day of the same users
  (:mod:`umask.bench.accuracy.user_mae_rule`); every v2 baseline gets the same rule with its own choice (``<baseline>@mae`` rows in ``meta.baselines``), so the best
  MAE baseline is the best of the plain and the ruled baselines;
* otherwise MAE: the per-entry median of ``--median-samples`` DDIM samples (``--median-steps`` steps)
  on the tasks in ``--median-tasks`` (the median minimises absolute error); elsewhere the MAE row
  comes from the mean estimate and says so.

``--ablations`` (seed 0 only): the same checkpoint with its evidence mask replaced at inference by
every available coordinate (``mask_none``) or a random subset of the base budget
(``mask_random``; the paper's Table 9 comparison), with the DiT's calendar / E_pos / h_b inputs
zeroed, with no evidence at all for the DiT (``no_evidence``: does the network use its evidence
beyond the prior?), without the profile, and the deterministic prior alone (``prior_only``).

``meta.paired``: all-entry RMSE (and median-MAE) per channel group of the model minus the best
baseline's on the same windows, pooled over the seeds, with a 2000-resample window bootstrap 95 %
interval; ``meta.error_by_hour``: B1 RMSE by target hour (model and best baseline), to show which
windows carry the error.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import shlex
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from umask.bench.accuracy import user as ue
from umask.bench.accuracy import user_mae_rule as mr
from umask.bench.accuracy.user_scoring import error_sums
from umask.bench.accuracy.user_umask import UMaskPredictor, umask_predictor
from umask.bench.accuracy.user_v2 import GROUPS, _atomic_json, _git_commit, aggregate
from umask.bench.reports.scoreboard import artifact_of

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
SIM_DATASET = "sim {users} users x {n} seeds, v2 B windows"          # = user_v2's dataset text
REAL_DATASET = "tsinghua sample 6 users 1 day, in-day context (B1-real)"
ABLATIONS = ("mask_learned", "mask_none", "mask_random", "no_calendar", "no_epos", "no_hb", "no_evidence", "no_profile",
             "prior_only")
ABLATION_NOTES = {
    "mask_learned": "ablation: the learned mask on every task, also where the shipped inference policy "
                    "(inference.all_evidence_tasks) reveals every available coordinate (Table 9 'learned')",
    "mask_none": "ablation: every available coordinate is evidence at inference (no learned mask; Table 9 'all')",
    "mask_random": "ablation: a uniformly random evidence subset of the base budget rho_tau at inference (Table 9)",
    "no_calendar": "ablation: the DiT's slot-calendar input zeroed at inference",
    "no_epos": "ablation: the DiT's E_pos token input zeroed at inference (the mask generator keeps it)",
    "no_hb": "ablation: the DiT's h_b condition zeroed at inference",
    "no_evidence": "ablation: the DiT gets no evidence (empty mask); the prior is still built from the history",
    "no_profile": "ablation: no U-SCOPE profile (the ProfileMLP's 'none' embedding) at inference",
    "prior_only": "the deterministic prior alone (runtime/families/umask/prior.window_prior) = an untrained "
                  "prior model's output",
}


# ------------------------------------------------------------------------------------------------
# Predictors
# ------------------------------------------------------------------------------------------------
def _zero_extra(pred: UMaskPredictor, key: str) -> None:
    """Zero one optional DiT input (cal / e_pos / h_b) of ``pred.model`` at inference."""
    orig = pred.model.dit_extras

    def extras(batch: Mapping[str, torch.Tensor], mo: Any) -> dict[str, torch.Tensor]:
        out = orig(batch, mo)
        if key not in out:
            raise NotImplementedError(f"the model has no DiT input {key!r}")
        return {**out, key: torch.zeros_like(out[key])}

    pred.model.dit_extras = extras


def _no_evidence(pred: UMaskPredictor) -> None:
    orig = pred.model.evidence

    def evidence(batch: Mapping[str, torch.Tensor], h_u: torch.Tensor, g: Any, *, deterministic: bool = False):
        _, hard, mo = orig(batch, h_u, g, deterministic=deterministic)
        z = torch.zeros_like(hard)
        return z, z, mo

    pred.model.evidence = evidence


def ablated(ckpt: str, kind: str, x0_draws: int) -> Callable[[ue.TaskBatch], np.ndarray]:
    """A predictor for ablation ``kind`` of the checkpoint (see the module docstring)."""
    pred = umask_predictor(ckpt, n_samples=x0_draws, point="first_x0",
                           profile_source="none" if kind == "no_profile" else "template")
    if kind == "mask_learned":
        pred.model.all_evidence_tasks = frozenset()
    elif kind == "mask_none":
        pred.model.cfg = dataclasses.replace(pred.model.cfg, mask_mode="none")
    elif kind == "mask_random":
        pred.model.cfg = dataclasses.replace(pred.model.cfg, mask_mode="random")
    elif kind in ("no_calendar", "no_epos", "no_hb"):
        _zero_extra(pred, {"no_calendar": "cal", "no_epos": "e_pos", "no_hb": "h_b"}[kind])
    elif kind == "no_evidence":
        _no_evidence(pred)
    elif kind == "prior_only":
        return PriorOnly(pred)
    elif kind != "no_profile":
        raise ValueError(f"unknown ablation {kind!r}")
    return pred


class PriorOnly:
    """The checkpoint's deterministic prior by itself, clipped and placed as U-MASK's output."""

    def __init__(self, pred: UMaskPredictor) -> None:
        if pred.prior == "none":
            raise ValueError("prior_only needs a prior model")
        self.pred = pred

    def attach_population(self, pop: ue.UserPopulation) -> None:
        self.pred.attach_population(pop)

    def __call__(self, view: ue.TaskBatch) -> np.ndarray:
        mb = self.pred.model_batch(view)
        pr = np.maximum(mb["prior"].numpy()[:, :, view.target_slice], 0.0)
        loc = view.channels.location_index
        pr[:, loc] = np.minimum(pr[:, loc], 1.0)
        out = np.where(view.avail, view.x_context, pr) if view.target_offset == 0 else pr
        return np.ascontiguousarray(out, np.float32)


class Recorder:
    """Wraps predictors; keeps each window's per-group error sums for the paired comparison."""

    def __init__(self) -> None:
        # (task, model) -> list of (window key, {group: (sse, sae, n)})
        self.errors: dict[tuple[str, str], dict[tuple[int, int, int], dict[str, tuple[float, float, float]]]] = \
            defaultdict(dict)
        self.pending: dict[tuple[str, tuple[int, ...], tuple[int, ...]], dict[str, np.ndarray]] = {}

    def wrap(self, name: str, fn: Callable[[ue.TaskBatch], np.ndarray]) -> Callable[[ue.TaskBatch], np.ndarray]:
        def call(view: ue.TaskBatch) -> np.ndarray:
            out = fn(view)
            self.pending.setdefault((view.task, tuple(view.users.tolist()), tuple(view.window_index.tolist())),
                                    {})[name] = out
            return out
        return call

    def collect(self, pop: ue.UserPopulation, seed: int, tasks: Sequence[str],
                windows: Mapping[str, Any] | None = None, split: str = "test") -> None:
        """Per-window error sums of every recorded prediction (truth from the same batches)."""
        for task in tasks:
            for batch in ue.iter_batches(pop, task, split, 32, windows=windows):
                got = self.pending.pop((task, tuple(batch.users.tolist()), tuple(batch.window_index.tolist())), {})
                for name, pred in got.items():
                    for i in range(batch.n):
                        sl = slice(i, i + 1)
                        es = error_sums(pred[sl], batch.truth[sl], batch.eval_mask[sl], batch.channels)
                        key = (seed, int(batch.users[i]), int(batch.window_index[i]))
                        self.errors[(task, name)][key] = {g: (es[g]["sse"], es[g]["sae"], es[g]["n"]) for g in GROUPS}
        self.pending.clear()


# ------------------------------------------------------------------------------------------------
# Paired comparison and error breakdown
# ------------------------------------------------------------------------------------------------
def _stat(arr: np.ndarray, n: np.ndarray, idx: np.ndarray, kind: str) -> float:
    tot = max(float(n[idx].sum()), 1.0)
    return float(np.sqrt(arr[idx].sum() / tot)) if kind == "rmse" else float(arr[idx].sum() / tot)


def paired(rec: Recorder, task: str, model: str, baselines: Sequence[str], kind: str = "rmse",
           n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """``model`` minus the best of ``baselines`` (by the pooled figure) per group, window bootstrap."""
    mine = rec.errors.get((task, model))
    if not mine:
        return {}
    keys = sorted(mine)
    col = 0 if kind == "rmse" else 1
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for g in GROUPS:
        n = np.array([mine[k][g][2] for k in keys])
        a = np.array([mine[k][g][col] for k in keys])
        allw = np.arange(len(keys))
        best, best_v, b = None, np.inf, None
        for bl in baselines:
            e = rec.errors.get((task, bl))
            if not e or set(e) != set(keys):
                continue
            arr = np.array([e[k][g][col] for k in keys])
            v = _stat(arr, n, allw, kind)
            if v < best_v:
                best, best_v, b = bl, v, arr
        if best is None:
            continue
        boot = np.empty(n_boot)
        for i in range(n_boot):
            idx = rng.integers(0, len(keys), len(keys))
            boot[i] = _stat(a, n, idx, kind) - _stat(b, n, idx, kind)
        m = _stat(a, n, allw, kind)
        pw_a, pw_b = a / np.maximum(n, 1), b / np.maximum(n, 1)
        out[g] = {"best_baseline": best, f"{kind}_model": round(m, 6), f"{kind}_baseline": round(best_v, 6),
                  "diff": round(m - best_v, 6), "diff_rel": round((m - best_v) / max(best_v, 1e-12), 4),
                  "diff_ci95": [round(float(np.percentile(boot, 2.5)), 6), round(float(np.percentile(boot, 97.5)), 6)],
                  "windows_model_better": int((pw_a < pw_b - 1e-15).sum()),
                  "windows_baseline_better": int((pw_b < pw_a - 1e-15).sum()), "n_windows": len(keys)}
    return out


def error_by_hour(rec: Recorder, model: str, baseline: str) -> dict[str, Any]:
    """B1 all-entry RMSE per group by target hour (window index = hour of the test day), pooled over seeds,
    and the share of the model's squared error in its worst 10 % of windows."""
    mine, base = rec.errors.get(("B1", model)), rec.errors.get(("B1", baseline))
    if not mine or not base:
        return {}
    out: dict[str, Any] = {}
    for g in GROUPS:
        by: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        for k, v in mine.items():
            h = k[2] % 24
            by[h][0] += v[g][0]
            by[h][1] += base[k][g][0]
            by[h][2] += v[g][2]
        sse = np.array(sorted((v[g][0] for v in mine.values()), reverse=True))
        top = max(1, len(sse) // 10)
        out[g] = {"hours": {h: [round(float(np.sqrt(a / max(n, 1))), 5), round(float(np.sqrt(b / max(n, 1))), 5)]
                            for h, (a, b, n) in sorted(by.items())},
                  "what": f"[{model}, {baseline}] RMSE per target hour",
                  "sse_share_worst_10pct_windows": round(float(sse[:top].sum() / max(sse.sum(), 1e-30)), 3)}
    return out


# ------------------------------------------------------------------------------------------------
# Rows
# ------------------------------------------------------------------------------------------------
X0_NOTE = ("point estimator: x0 prediction at t = N-1, mean of {d} noise draws (conditional mean; RMSE, events, "
           "rankings by expected engagement)")
MEDIAN_NOTE = "point estimator: per-entry median of {s} DDIM samples ({k} steps) (MAE)"
MEAN_FOR_MAE = "point estimator: the x0 mean estimate (median samples not run on this task: CPU time)"


def model_rows(runs: Mapping[int, Sequence[Mapping[str, Any]]], name: str, kind: str, notes: str, dataset: str,
               data: str, command: str, median_tasks: Sequence[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Scoreboard rows of ``name`` (x0 rows; MAE from ``name@median`` where it ran), with kind / family / notes."""
    runs_x0 = {s: [r for r in rows if r["model"] == name] for s, rows in runs.items()}
    runs_md = {s: [dict(r, model=name) for r in rows if r["model"] == f"{name}@median"] for s, rows in runs.items()}
    runs_mr = {s: [dict(r, model=name) for r in rows if r["model"] == name + mr.SUFFIX] for s, rows in runs.items()}
    ruled = aggregate(runs_mr, dataset=dataset, data=data, command=command) if any(runs_mr.values()) else []
    ruled_tasks = {r["protocol"] for r in ruled}
    out = []
    for r in aggregate(runs_x0, dataset=dataset, data=data, command=command):
        if r["metric"].startswith("mae_all/") and (r["protocol"] in ruled_tasks or (
                r["protocol"] in median_tasks and any(runs_md.values()))):
            continue
        out.append(r)
    if ruled_tasks:
        for r in ruled:
            if r["metric"].startswith("mae_all/"):
                r["_est"] = mr.NOTE.format(taus="meta.mae_rule")
                out.append(r)
    if any(runs_md.values()):
        for r in aggregate(runs_md, dataset=dataset, data=data, command=command):
            if r["metric"].startswith("mae_all/") and r["protocol"] not in ruled_tasks:
                r["_est"] = MEDIAN_NOTE.format(s=args.median_samples, k=args.median_steps)
                out.append(r)
    for r in out:
        is_mae = r["metric"].startswith("mae_all/")
        est = r.pop("_est", None) or (MEAN_FOR_MAE if is_mae else X0_NOTE.format(d=args.x0_draws))
        r.update(kind=kind, family="umask", artifact="torch", notes=f"{notes}; {est}")
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m umask.bench.accuracy.user_umask_v2",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", help="checkpoint (step dir, ckpt/best|latest, run dir, shipped folder)")
    ap.add_argument("--name", default="umask_small", help="row model name")
    ap.add_argument("--note", default="U-MASK small (prior blend + calendar + E_pos + h_b), trained on the 50 "
                                      "SYNTHETIC users of simulator seed 0 (training days only)",
                    help="what the model is (every row's notes)")
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--tasks", default="B1,B2,B3,B4")
    ap.add_argument("--b1-every", type=int, default=1, help="B1: keep target hours h with h %% K == offset")
    ap.add_argument("--b1-offset", type=int, default=None, help="B1: the kept residue (default 2 when K > 2)")
    ap.add_argument("--x0-draws", type=int, default=1, help="noise draws of the x0 (mean) estimate")
    ap.add_argument("--median-samples", type=int, default=3)
    ap.add_argument("--median-steps", type=int, default=2)
    ap.add_argument("--median-tasks", default="B2,B4", help="tasks whose MAE uses the median of samples ('' none)")
    ap.add_argument("--mae-rule", action="store_true",
                    help="MAE rows from the validation-calibrated zero rule (user_mae_rule), for U-MASK and every "
                         "baseline")
    ap.add_argument("--mae-calib-b1-every", type=int, default=4,
                    help="calibration: B1 validation target hours h with h %% K == K // 2 (CPU time)")
    ap.add_argument("--ablations", action="store_true", help="the inference ablations on the first seed")
    ap.add_argument("--ablation-tasks", default="B2,B4", help="tasks of the ablations (B1 has 24x the windows)")
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--partial", default=None, metavar="FILE",
                    help="write this run's raw rows and window errors to FILE (merge later with --merge)")
    ap.add_argument("--merge", nargs="+", default=None, metavar="FILE",
                    help="build the result file from --partial files (no evaluation)")
    ap.add_argument("--command-text", default=None, help="the command recorded in the rows (default: this one)")
    ap.add_argument("--table", default=None, metavar="RESULT_JSON", help="print the markdown summary of a result file")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "v2_user_umask_small.json"))
    return ap


def _csv(text: str) -> tuple[str, ...]:
    return tuple(t.strip().upper() for t in text.split(",") if t.strip())


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Evaluate per the arguments -> raw partial (harness rows per seed, window errors, real rows, info)."""
    from umask.bench.accuracy.user_umask import b1_hours

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    tasks, median_tasks, abl_tasks = _csv(args.tasks), _csv(args.median_tasks), _csv(args.ablation_tasks)
    offset = args.b1_offset if args.b1_offset is not None else (2 if args.b1_every > 2 else 0)
    windows = {"B1": set(b1_hours(args.b1_every, offset))} if args.b1_every > 1 else None
    t_start = time.perf_counter()
    name = args.name
    main_pred = umask_predictor(args.ckpt, n_samples=args.x0_draws, point="first_x0")
    med_pred = umask_predictor(args.ckpt, steps=args.median_steps, n_samples=args.median_samples, point="median")
    rec = Recorder()
    runs: dict[int, list[dict[str, Any]]] = {}
    abl_runs: dict[int, list[dict[str, Any]]] = {}
    baseline_names: list[str] = []
    calib: dict[str, Any] = {}
    if args.mae_rule:
        main_pred = mr.LastCall(main_pred)        # the x0 row and its @mae row share one evaluation
    for seed in seeds:
        pop = ue.simulated_population(args.users, seed)
        base: dict[str, Any] = {k: mr.LastCall(f) for k, f in ue.v2_baseline_models(pop).items()}
        for pr in (main_pred, med_pred):
            pr.attach_population(pop)
        ruled_models: dict[str, Any] = {}
        if args.mae_rule:
            k = args.mae_calib_b1_every
            cal_windows = {"B1": set(b1_hours(k, k // 2))} if k > 1 else None
            cal_models = {name: main_pred, **{b: f for b, f in base.items() if b != "all_zero"}}
            rules, calib[str(seed)] = mr.calibrate(pop, cal_models, tasks, windows=cal_windows)
            log.info("seed %d: MAE rule calibrated on the validation day (%.0f s): %s", seed,
                     time.perf_counter() - t_start, calib[str(seed)]["chosen"].get(name))
            ruled_models = {m + mr.SUFFIX: mr.ruled(cal_models[m], rules.get(m, {})) for m in cal_models}
        baseline_names = [*base, *(m for m in ruled_models if m != name + mr.SUFFIX)]

        def median_only(view: ue.TaskBatch) -> np.ndarray:
            if view.task not in median_tasks:
                raise NotImplementedError("median samples not run on this task (CPU time)")
            return med_pred(view)

        models = {n: rec.wrap(n, f) for n, f in base.items()}
        models[name] = rec.wrap(name, main_pred)
        models[f"{name}@median"] = rec.wrap(f"{name}@median", median_only)
        models.update({n: rec.wrap(n, f) for n, f in ruled_models.items()})
        runs[seed] = ue.evaluate_population(pop, models, split="test", tasks=tasks, command=command, windows=windows)
        if args.ablations and seed == seeds[0]:
            abl = {}
            for kind in ABLATIONS:
                pa = ablated(args.ckpt, kind, args.x0_draws)
                pa.attach_population(pop)
                abl[f"{name}:{kind}" if kind != "prior_only" else "prior_only"] = rec.wrap(kind, pa)
            abl_runs[seed] = ue.evaluate_population(pop, abl, split="test", tasks=abl_tasks, command=command)
        rec.collect(pop, seed, tuple(dict.fromkeys((*tasks, *(abl_tasks if args.ablations else ())))), windows)
        log.info("seed %d done (%.0f s)", seed, time.perf_counter() - t_start)
    real: list[dict[str, Any]] = []
    if not args.no_real:
        real_pop = ue.real_population()
        main_pred.attach_population(real_pop)
        real = ue.evaluate_real_sample({**ue.real_baseline_models(), name: main_pred}, command=command,
                                       population=real_pop)
    return {"seeds": seeds, "runs": {str(k): v for k, v in runs.items()},
            "abl_runs": {str(k): v for k, v in abl_runs.items()}, "real": real, "baselines": baseline_names,
            "errors": [[t, m, *k, v] for (t, m), d in rec.errors.items() for k, v in d.items()],
            "info": main_pred.info(), "train_seed": main_pred.config.get("train", {}).get("sim_seed"),
            "b1_hours": sorted(windows["B1"]) if windows else None, "mae_rule": calib,
            "seconds": round(time.perf_counter() - t_start, 1)}


def prior_row_name(info: Mapping[str, Any]) -> str:
    """The model name of the prior-alone ablation row: ``prior_only`` for the 0.5 "blend" prior (v4, v5), else
    ``prior_only_<kind>`` (v6 task_blend, v7 horizon_blend): each kind is another numpy predictor, and the
    scoreboard keys a row by its model name. ``info``: a partial's predictor info (older partials name only the
    checkpoint, whose config.json gives the kind)."""
    kind = info.get("prior")
    if kind is None:
        from umask.train.common.checkpoints import resolve_checkpoint

        cfg = json.loads((resolve_checkpoint(info["checkpoint"]) / "config.json").read_text())
        kind = cfg.get("model", {}).get("prior", "none")
    return "prior_only" if kind in ("blend", "none") else f"prior_only_{kind}"


def build(parts: Sequence[Mapping[str, Any]], args: argparse.Namespace, command: str) -> dict[str, Any]:
    """The result document (rows + meta) from one or more raw partials."""
    name = args.name
    tasks, median_tasks, abl_tasks = _csv(args.tasks), _csv(args.median_tasks), _csv(args.ablation_tasks)
    runs: dict[int, list[dict[str, Any]]] = defaultdict(list)     # partials may split one seed's tasks
    abl_runs: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for pt in parts:
        for k, v in pt["runs"].items():
            runs[int(k)].extend(v)
        for k, v in pt["abl_runs"].items():
            abl_runs[int(k)].extend(v)
    runs = {k: v for k, v in runs.items() if v}
    seeds = sorted(runs)
    rec = Recorder()
    for pt in parts:
        for t, m, seed, user, widx, v in pt["errors"]:
            rec.errors[(t, m)][(int(seed), int(user), int(widx))] = {g: tuple(x) for g, x in v.items()}
    baseline_names = list(dict.fromkeys(b for pt in parts for b in pt["baselines"]))
    mae_rule = {k: v for pt in parts for k, v in (pt.get("mae_rule") or {}).items()}
    b1h = next((pt["b1_hours"] for pt in parts if pt.get("b1_hours")), None)
    dataset = SIM_DATASET.format(users=args.users, n=len(seeds))
    if b1h:
        dataset += f" (B1: target hours {','.join(map(str, b1h))} only)"
    rows = model_rows(runs, name, "ours", args.note, dataset, "synthetic", command, median_tasks, args)
    base_rows = [r for r in aggregate({s: [x for x in rr if x["model"] in baseline_names] for s, rr in runs.items()},
                                      dataset=dataset, data="synthetic", command=command)
                 if not r["model"].endswith(mr.SUFFIX) or r["metric"].startswith("mae_all/")]   # a rule is for MAE
    # into the scoreboard: the baselines on the same B1 subset (its baseline rows score every hour) and the
    # ruled (@mae) baselines of every task (they exist only in this run)
    for r in base_rows:
        same_b1, ruled_row = bool(b1h) and r["protocol"] == "B1", r["model"].endswith(mr.SUFFIX)
        if same_b1 or ruled_row:
            notes = [*(["the baseline on the same B1 target-hour subset as U-MASK"] if same_b1 else []),
                     *([mr.NOTE.format(taus="meta.mae_rule")] if ruled_row else [])]
            rows.append({**r, "kind": "baseline", "family": None, "artifact": artifact_of(r["model"].split("@")[0]),
                         "notes": "; ".join(notes)})
    for kind in ABLATIONS:
        mname = f"{name}:{kind}" if kind != "prior_only" else "prior_only"
        sub = {s: [r for r in rr if r["model"] == mname] for s, rr in abl_runs.items()}
        if any(sub.values()):
            seeds_txt = f"seed {min(sub)}" if len(sub) == 1 else f"x {len(sub)} seeds"
            for r in aggregate(sub, dataset=f"sim {args.users} users {seeds_txt}, v2 B windows (ablation)",
                               data="synthetic", command=command):
                note = ABLATION_NOTES[kind] if kind == "prior_only" else \
                    f"{ABLATION_NOTES[kind]}; {X0_NOTE.format(d=args.x0_draws)}"
                r.update(kind="ablation", family="umask", artifact="numpy" if kind == "prior_only" else "torch",
                         notes=note)
                if kind == "prior_only":
                    r["model"] = prior_row_name(parts[0]["info"])
                rows.append(r)
    real = [r for pt in parts for r in pt.get("real", [])]
    real_rows = aggregate({0: real}, dataset=REAL_DATASET, data="real", command=command) if real else []
    for r in real_rows:
        if r["model"] == name:
            est = ("point estimator: the x0 mean estimate (no median samples on the real sample)"
                   if r["metric"].startswith("mae_all/") else X0_NOTE.format(d=args.x0_draws))
            r.update(kind="ours", family="umask", artifact="torch",
                     notes=f"{args.note}; REAL sample, one day: the prior has no earlier history; {est}")
            rows.append(r)
    plain = [b for b in baseline_names if not b.endswith(mr.SUFFIX)]     # a ruled baseline is an MAE estimator
    pair: dict[str, Any] = {t: {"rmse": paired(rec, t, name, plain, "rmse")} for t in tasks}
    for t in median_tasks:
        if t in pair and (t, f"{name}@median") in rec.errors:
            pair[t]["mae_median"] = paired(rec, t, f"{name}@median", baseline_names, "mae")
    for t in tasks:
        if t in pair and (t, name + mr.SUFFIX) in rec.errors:
            pair[t]["mae_rule"] = paired(rec, t, name + mr.SUFFIX, baseline_names, "mae")
    for t in abl_tasks:
        if t in pair:
            pair[t]["ablations_rmse_vs_best_baseline_first_seed"] = {
                k: paired(rec, t, k, plain, "rmse") for k in ABLATIONS if (t, k) in rec.errors}
    best_b1 = next(iter(pair.get("B1", {}).get("rmse", {}).values()), {}).get("best_baseline", "lightgbm")
    meta = {
        "command": command, "commit": _git_commit(), "date": dt.date.today().isoformat(),
        "wall_seconds": round(sum(pt.get("seconds", 0.0) for pt in parts), 1), "users_per_seed": args.users,
        "seeds": seeds, "b1_target_hours": b1h or "all 24",
        "population": (f"SYNTHETIC simulator, {args.users} users per seed; the checkpoint was trained on seed "
                       f"{parts[0].get('train_seed')} users' training days 1-5; every row scores the test day "
                       "(day 7); seeds other than the training seed are users the model never saw"),
        "model": parts[0]["info"],
        "point_estimator": {"rmse, events, rankings": X0_NOTE.format(d=args.x0_draws),
                            "mae": mr.NOTE.format(taus="meta.mae_rule") if mae_rule else (
                                MEDIAN_NOTE.format(s=args.median_samples, k=args.median_steps)
                                + f" on {list(median_tasks)}; the x0 mean elsewhere")},
        "mae_rule": mae_rule or None,
        "spread": "population std over simulator seeds (null for one seed / the real sample)",
        "paired": {"what": "model minus the best baseline (chosen by the pooled figure) on the same windows pooled "
                           "over seeds; diff < 0: the model is better; 2000-resample window bootstrap 95 % interval",
                   **pair},
        "error_by_hour": error_by_hour(rec, name, best_b1),
        "baselines": {"what": "the v2 baselines' rows of this run (same windows)",
                      "rows": [{k: r[k] for k in ("protocol", "model", "metric", "value", "spread")}
                               for r in base_rows]},
        "real_baselines": [{k: r[k] for k in ("protocol", "model", "metric", "value")} for r in real_rows
                           if r["model"] != name]}
    return {"meta": meta, "rows": rows}


HEADLINE = ("rmse_all/traffic", "rmse_all/app", "rmse_all/location", "mae_all/traffic", "mae_all/app",
            "mae_all/location", "app_recall@3", "location_acc@1", "ndcg@3/app", "ndcg@3/location")


def table(doc: Mapping[str, Any], name: str = "umask_small") -> str:
    """Markdown: per (protocol, headline metric) the model, the best baseline of the same run and the gap."""
    base: dict[tuple[str, str], tuple[str, float, Any]] = {}
    for r in doc["meta"]["baselines"]["rows"]:
        k = (r["protocol"], r["metric"])
        lower = r["metric"].startswith(("rmse", "mae"))
        b = base.get(k)
        if b is None or (r["value"] < b[1] if lower else r["value"] > b[1]):
            base[k] = (r["model"], r["value"], r["spread"])
    lines = ["| task | metric | U-MASK (mean ± sd over seeds) | best baseline | gap |", "|---|---|---|---|---|"]
    for r in doc["rows"]:
        if r["model"] != name or r["data"] != "synthetic" or r["metric"] not in HEADLINE:
            continue
        b = base.get((r["protocol"], r["metric"]))
        if b is None:
            continue
        gap = (r["value"] - b[1]) / max(abs(b[1]), 1e-12)
        sd = f" ± {r['spread']:.4f}" if r["spread"] is not None else ""
        bsd = f" ± {b[2]:.4f}" if b[2] is not None else ""
        lines.append(f"| {r['protocol']} | {r['metric']} | {r['value']:.4f}{sd} | {b[0]} {b[1]:.4f}{bsd} | "
                     f"{gap:+.1%} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = _parser()
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(max(1, args.threads))
    command = args.command_text or shlex.join(["python", "-m", "umask.bench.accuracy.user_umask_v2", *argv])
    if args.table:
        print(table(json.loads(Path(args.table).read_text()), args.name))
        return 0
    if args.merge:
        parts = [json.loads(Path(f).read_text()) for f in args.merge]
    else:
        if not args.ckpt:
            ap.error("--ckpt is required (unless --merge)")
        parts = [run(args, command)]
        if args.partial:
            _atomic_json(Path(args.partial), parts[0])
            log.info("wrote the partial %s (%.0f s)", args.partial, parts[0]["seconds"])
            return 0
    doc = build(parts, args, command)
    _atomic_json(Path(args.out), doc)
    log.info("wrote %s: %d rows", args.out, len(doc["rows"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
