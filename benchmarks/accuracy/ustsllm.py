"""Score U-STS-LLM on PROTOCOL A (A1, A2) and its zero-shot variants, on exactly the harness's windows.

``umask eval A1 --family ustsllm --ckpt RUN`` calls :func:`main` with ``--protocol A1`` and the flags
given. The network is scored through benchmarks/accuracy/grid.py (the protocol's windows and masks,
its per-cell training scaler, pooled metrics), next to the harness baselines on the same windows::

    python -m umask.bench.accuracy.ustsllm --protocol A1 --ckpt artifacts/train/ustsllm \\
        --ablation ustsllm_random_backbone=artifacts/train/ustsllm_random --v2 benchmarks/results/v2_ustsllm.json
    python -m umask.bench.accuracy.ustsllm --protocol A2 --bundle artifacts/bundles/ustsllm --precision int8-qdq
    python -m umask.bench.accuracy.ustsllm --protocol A1-zeroshot --ckpt artifacts/train/ustsllm \\
        --data other_grid.csv --grid 4x4

Zero-shot: the Milan-trained network, unchanged, on another grid; the grid's own statistics (scaler,
time-of-day profile, functional graph: runtime/families/ustsllm/stats.py) are fitted on that grid's
training period, as the harness fits its scaler. The grid must have the network's slot length.

``--v2 FILE`` upserts the rows (nmae, nrmse per model and artifact) into a PROTOCOL v2 result file
(benchmarks/reports/scoreboard.py ``_v2_rows``); ``--out`` keeps the harness's full rows and table.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from umask.bench.accuracy import grid as harness
from umask.runtime.core.errors import InputError
from umask.runtime.families.ustsllm.stats import GridStats, fit_grid_stats
from umask.train.common.checkpoints import atomic_json
from umask.train.data.grids import GridData, open_grid
from umask.train.models.ustsllm.trainer import first_weekday_of

log = logging.getLogger(__name__)

PROTOCOLS = ("A1", "A2", "A1-zeroshot", "A2-zeroshot")
META_NOTE = ("U-STS-LLM (issue 12): real Milan data, PROTOCOL A windows and masks of benchmarks/accuracy/grid.py; the "
             "headline rows are the mean over the training seeds they name (spread = sample std), ablations one seed; "
             "short CPU-only runs on a shared 2-core machine (docs/families/ustsllm.md)")
BATCH = 16
SEED_SEP = "#"          # harness model name "ustsllm#1" = seed run 1 of row "ustsllm"


# ------------------------------------------------------------------------------------------------
# Model callables on the harness's standardized scale
# ------------------------------------------------------------------------------------------------
def run_stats(grid: GridData, first_weekday: int, config: Mapping[str, Any]) -> GridStats:
    """The statistics a run's network reads (scaler, prior-channel profiles, graph), fit on ``grid``'s training
    days with the run's own recipe: its ``profile_decay`` and ``profile_statistic`` (runs saved before them: 1 and
    the mean). On the training grid
    this is the run's recorded ``data.stats``; on another grid (zero-shot) the same recipe on that grid's days.
    Before 2026-12-07 the scorer fit every run with the plain mean, so runs trained with ``--profile-decay`` were
    scored with another prior channel than they trained on (the withdrawn ``ustsllm_lowrank_recent`` rows)."""
    train = config.get("train") or {}
    return fit_grid_stats(grid.values, grid.splits()["train"][1], grid.slots_per_day, first_weekday,
                          float(train.get("profile_decay", 1.0)), str(train.get("profile_statistic", "mean")))


def torch_fns(ckpt: str, grid: GridData, first_weekday: int, *, llm_branch: bool = True
              ) -> tuple[Callable[..., np.ndarray], Callable[..., np.ndarray], dict]:
    """(ForecastFn, ImputeFn, info) of a training checkpoint (EMA weights, eq. 1 at its midpoint) on ``grid``
    (statistics: :func:`run_stats`). ``llm_branch=False``: the eq. 13 head zeroed, so Y = G, the trained
    guidance signal alone (eq. 14)."""
    import torch

    from umask.train.models.ustsllm.model import load_model
    from umask.train.models.ustsllm.trainer import forecast_inputs, impute_inputs, to_torch

    model, config = load_model(ckpt)
    cfg = model.cfg
    stats = run_stats(grid, first_weekday, config)
    if not llm_branch:
        if not cfg.use_guidance:
            raise InputError(f"{ckpt}: a network without the guidance signal has no guidance-only variant")
        with torch.no_grad():
            for lin in model.rconv.values():
                lin.weight.zero_()
                lin.bias.zero_()

    def run(task: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, inputs["x"].shape[0], BATCH):
                part = to_torch({k: (v if k == "graph" else v[i:i + BATCH]) for k, v in inputs.items()})
                out.append(model(task, **part).numpy())
        return np.concatenate(out).astype(np.float64)

    def forecast(history: np.ndarray, starts: np.ndarray, horizon: int) -> np.ndarray:
        _check_lengths(cfg.history, cfg.horizon, history.shape[1], horizon)
        return run("forecast", forecast_inputs(history, starts - history.shape[1], stats, horizon))

    def impute(observed: np.ndarray, mask: np.ndarray, starts: np.ndarray) -> np.ndarray:
        _check_lengths(cfg.window, cfg.window, observed.shape[1], observed.shape[1])
        pred = run("impute", impute_inputs(observed, mask, starts, stats, cfg.guide_prior))
        return np.where(mask, pred, observed)

    from umask.train.common.checkpoints import resolve_checkpoint

    resolved = resolve_checkpoint(ckpt)
    step = (json.loads((resolved / "state.json").read_text())["step"] if (resolved / "state.json").exists()
            else (config.get("shipped") or {}).get("step"))        # a shipped folder records its source step
    return forecast, impute, {"checkpoint": str(resolved), "train_step": step, "seed": config.get("train", {}).get("seed"),
                              "net": cfg.to_dict()}


def prior_fns(spec: harness.GridSpec, first_weekday: int) -> tuple[Callable[..., np.ndarray], Callable[..., np.ndarray], dict]:
    """(ForecastFn, ImputeFn, info) of the deterministic base of the eq. 7 guidance alone: the grid prior
    (train/models/umask/grid_prior.py) fit on the grid's training days, on the harness's scale."""
    from umask.train.models.umask.grid_prior import GridPrior

    prior = GridPrior.fit(spec.z, spec.train_end, spec.period, first_weekday)

    def impute(observed: np.ndarray, mask: np.ndarray, starts: np.ndarray) -> np.ndarray:
        return np.where(mask, prior.impute(observed, mask, starts), observed)

    return (lambda h, s, n: prior.forecast(h, s, n)), impute, {"prior": prior.describe()}


def bundle_fns(bundle: str, precision: str, stats: GridStats, *, own_stats: bool = False
               ) -> tuple[Callable[..., np.ndarray], Callable[..., np.ndarray], dict]:
    """(ForecastFn, ImputeFn, info) of an exported bundle through the torch-free runtime session
    (raw units in and out, converted with the harness grid's scaler ``stats``). ``own_stats``: the session reads
    the statistics the bundle carries (its run's, what a user of the bundle gets on the training grid); else
    ``stats`` (another grid: zero-shot)."""
    from umask.runtime.families.ustsllm.session import Session

    sess = Session.open(bundle, precision=precision, allow_unsigned=True)
    session_stats = None if own_stats else stats

    def forecast(history: np.ndarray, starts: np.ndarray, horizon: int) -> np.ndarray:
        raw = sess.forecast(stats.inverse(history), first_slot=starts - history.shape[1], stats=session_stats)
        return stats.transform(raw)

    def impute(observed: np.ndarray, mask: np.ndarray, starts: np.ndarray) -> np.ndarray:
        raw = sess.impute(stats.inverse(np.where(mask, 0.0, observed)), mask, first_slot=starts, stats=session_stats)
        return stats.transform(raw)

    return forecast, impute, {"bundle": str(bundle), "precision": precision}


def _check_lengths(net_in: int, net_out: int, got_in: int, got_out: int) -> None:
    if net_in != got_in or net_out != got_out:
        raise InputError(f"the network reads {net_in} slots and predicts {net_out}; this grid's windows are "
                         f"{got_in} -> {got_out} (use a grid with the training grid's slot length)")


# ------------------------------------------------------------------------------------------------
# v2 rows
# ------------------------------------------------------------------------------------------------
def _git_commit() -> str:
    try:
        c = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                           cwd=harness.REPO_ROOT).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "train/models/ustsllm", "benchmarks/accuracy/ustsllm.py"],
                               capture_output=True, text=True, cwd=harness.REPO_ROOT).stdout.strip()
        return c + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def v2_rows(rows: Sequence[dict[str, Any]], protocol: str, data: str, command: str,
            meta: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """nmae / nrmse / mae_raw / rmse_raw rows of the scoreboard's v2 shape from the harness rows (raw = the grid's
    units, the std-weighted error); ``meta``: model -> kind, family, artifact, notes."""
    out = []
    rows = _seed_means(rows, meta)
    for r in rows:
        m = meta.get(r["model"], {"kind": "baseline", "family": None, "artifact": "numpy"})
        for metric, key in harness.V2_METRICS:
            dataset = harness.SCOREBOARD_MILAN if r["dataset"] == harness.DATASET else r["dataset"]
            row = {"protocol": protocol, "dataset": dataset, "data": data, "model": m.get("model", r["model"]),
                   "kind": m["kind"], "family": m["family"], "artifact": m["artifact"], "metric": metric,
                   "value": round(float(r["metrics"][key]), 6), "better": "lower", "n_windows": r["n_windows"],
                   "seeds": r.get("train_seeds", [0]), "spread": r.get("spread", {}).get(key), "command": command}
            notes = m.get("notes") or r.get("notes")
            if r.get("per_seed"):
                notes += (f"; {len(r['train_seeds'])} training seeds {r['train_seeds']}, value = their mean, spread = sample std "
                          f"over seeds (per seed {[round(v, 4) for v in r['per_seed'][key]]})")
            if r.get("window", {}).get("subset"):
                notes = f"{notes + '; ' if notes else ''}{r['window']['subset']}"
            if notes:
                row["notes"] = notes
            out.append(row)
    return out


def _seed_means(rows: Sequence[dict[str, Any]], meta: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Harness rows with the seed runs "name#k" folded into one row "name": metrics = mean over the seeds,
    ``spread`` = their sample std, ``seeds`` = the training seeds (meta[...]["seed"]), ``per_seed`` values."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["model"].split(SEED_SEP)[0], []).append(r)
    out = []
    for name, rs in groups.items():
        if len(rs) == 1 and SEED_SEP not in rs[0]["model"]:
            out.append(rs[0])
            continue
        keys = tuple(k for _, k in harness.V2_METRICS)
        vals = {k: [float(r["metrics"][k]) for r in rs] for k in keys}
        agg = {**rs[0], "model": name, "metrics": {**rs[0]["metrics"], **{k: float(np.mean(v)) for k, v in vals.items()}},
               "spread": {k: round(float(np.std(v, ddof=1)), 6) for k, v in vals.items()}, "per_seed": vals,
               "train_seeds": [meta.get(r["model"], {}).get("seed", i) for i, r in enumerate(rs)]}
        meta.setdefault(name, dict(meta[rs[0]["model"]]))
        out.append(agg)
    return out


def upsert_v2(path: Path, rows: Sequence[dict[str, Any]], meta_note: str) -> None:
    """Add ``rows`` to the v2 file ``path``, replacing rows with the same (protocol, dataset, model, artifact, metric)."""
    doc = json.loads(path.read_text()) if path.exists() else {"meta": {}, "rows": []}
    key = lambda r: (r["protocol"], r["dataset"], r["model"], r["artifact"], r["metric"])  # noqa: E731
    new = {key(r) for r in rows}
    doc["rows"] = [r for r in doc["rows"] if key(r) not in new] + list(rows)
    doc["meta"].update({"command": "scripts/train_ustsllm.sh (every row names its own command)",
                        "commit": _git_commit(), "date": _dt.date.today().isoformat(), "notes": meta_note})
    atomic_json(path, doc)


# ------------------------------------------------------------------------------------------------
# Where the error is: per cell and per hour of day, the model against its guidance base
# ------------------------------------------------------------------------------------------------
def error_breakdown(task: str, spec: harness.GridSpec, fns: dict[str, Callable[..., np.ndarray]]) -> dict[str, Any]:
    """nMAE of each model in ``fns`` (name -> ForecastFn / ImputeFn) on every test window of ``task``, split
    by cell and by hour of day of the scored slot (A1: the horizon; A2: the hidden entries)."""
    from umask.train.data import splits

    if task == "a1":
        w = splits.forecast_windows(spec.z, "test", history=spec.history, horizon=spec.horizon, splits=spec.splits)
        truth, keep = w.y, np.ones(w.y.shape, bool)
        slots = w.starts[:, None] + np.arange(spec.horizon)[None, :]
        preds = {k: fn(w.x.copy(), w.starts.copy(), spec.horizon) for k, fn in fns.items()}
    else:
        w = splits.imputation_windows(spec.z, "test", window=spec.window, splits=spec.splits)
        truth, keep = w.truth, w.mask
        slots = w.starts[:, None] + np.arange(spec.window)[None, :]
        preds = {k: fn(np.where(w.mask, np.nan, w.truth), w.mask.copy(), w.starts.copy()) for k, fn in fns.items()}
    hour = (slots % spec.period) * 24 // spec.period                                 # (n, T)
    hour = np.broadcast_to(hour[..., None], truth.shape)
    out: dict[str, Any] = {"n_windows": int(truth.shape[0]), "scale": "normalized (harness z-scores)"}
    for k, p in preds.items():
        err = np.abs(p - truth) * keep
        out[k] = {"nmae": round(float(err.sum() / keep.sum()), 4),
                  "by_cell": [round(float(err[..., c].sum() / keep[..., c].sum()), 4) for c in range(truth.shape[2])],
                  "by_hour_of_day": [round(float(err[hour == h].sum() / max(keep[hour == h].sum(), 1)), 4)
                                     for h in range(24)]}
    return out


# ------------------------------------------------------------------------------------------------
# Latency: torch eager vs the bundle's onnxruntime sessions, on real test windows
# ------------------------------------------------------------------------------------------------
def _memo(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """``fn`` answering a repeated request (same array contents and arguments) from its first answer (a copy)."""
    cache: dict[tuple, np.ndarray] = {}

    def call(*args: Any) -> np.ndarray:
        key = tuple(hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest() + str(a.shape)
                    if isinstance(a, np.ndarray) else a for a in args)
        if key not in cache:
            cache[key] = np.asarray(fn(*args))
        return cache[key].copy()

    return call


def _timed(fn: Callable[[], Any], reps: int) -> list[float]:
    import time

    fn()                                                   # warm-up
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def latency_rows(ckpt: str | None, bundle: str | None, precisions: Sequence[str], task: str, *, reps: int = 20,
                 reps32: int = 3, command: str = "", name: str = "ustsllm") -> list[dict[str, Any]]:
    """p50 / p99 ms per window at batch 1 and windows per second at batch 1 and 32, one CPU thread, for the
    torch eager checkpoint and each bundle precision, on the Milan test windows of ``task`` (a1 | a2)."""
    import torch

    torch.set_num_threads(1)
    grid = open_grid(None)
    wd = first_weekday_of(grid)
    stats = fit_grid_stats(grid.values, grid.splits()["train"][1], grid.slots_per_day, wd)
    spec = harness.GridSpec(grid)
    starts = np.arange(3888, 3888 + 32 * 4, 4)
    if task == "a1":
        hist = np.stack([spec.z[s - 288:s] for s in starts])
        runs = {"torch": torch_fns(ckpt, grid, wd)[0] if ckpt else None}
        call = lambda fn, n: fn(hist[:n], starts[:n], 144)  # noqa: E731
    else:
        truth = np.stack([spec.z[s - 288:s] for s in starts])
        mask = np.random.default_rng(0).random(truth.shape) < 0.75
        obs = np.where(mask, np.nan, truth)
        runs = {"torch": torch_fns(ckpt, grid, wd)[1] if ckpt else None}
        call = lambda fn, n: fn(obs[:n], mask[:n], starts[:n] - 288)  # noqa: E731
    for prec in precisions if bundle else ():
        f, i, _ = bundle_fns(bundle, prec, stats)
        runs[f"onnx-{prec}"] = f if task == "a1" else i
    rows = []
    proto = task.upper()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    note = (f"one CPU thread (torch.set_num_threads(1) / onnxruntime intra_op 1) on a shared 2-core machine, load average "
            f"{load:.1f} at the start: absolute times move with the load; the ratio torch vs onnx in the same call is the "
            "useful figure; torch = eager with LoRA unmerged; onnx through the runtime session (raw units in/out, "
            "scaling included)")
    for art, fn in runs.items():
        if fn is None:
            continue
        t1 = np.array(_timed(lambda: call(fn, 1), reps)) * 1e3
        t32 = np.array(_timed(lambda: call(fn, 32), reps32))
        figs = {"latency_p50_ms": (float(np.percentile(t1, 50)), "lower"),
                "latency_p99_ms": (float(np.percentile(t1, 99)), "lower"),
                "windows_per_s@b1": (float(1e3 / np.median(t1)), "higher"),
                "windows_per_s@b32": (float(32 / np.median(t32)), "higher")}
        for metric, (value, better) in figs.items():
            rows.append({"protocol": proto, "dataset": harness.SCOREBOARD_MILAN, "data": "real", "model": name,
                         "kind": "ours", "family": "ustsllm", "artifact": art, "metric": metric,
                         "value": round(value, 3), "better": better, "n_windows": 32 if "b32" in metric else reps,
                         "seeds": [0], "spread": None, "command": command, "notes": note})
        log.info("%s %s: p50 %.1f ms, %.1f windows/s at batch 32", proto, art, figs["latency_p50_ms"][0],
                 figs["windows_per_s@b32"][0])
    return rows


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m umask.bench.accuracy.ustsllm", description=__doc__.splitlines()[0])
    p.add_argument("--protocol", required=True, choices=PROTOCOLS)
    p.add_argument("--ckpt", nargs="+", default=None,
                   help="training run(s) or checkpoint(s) of the network (torch rows); several = training seeds, "
                        "scored separately and reported as mean and sample std")
    p.add_argument("--guidance-only", action="store_true",
                   help="also score each --ckpt with the LLM branch (eq. 13 head) zeroed: the trained guidance alone")
    p.add_argument("--ensemble", action="store_true",
                   help="with several --ckpt runs: also a row NAME_ensN whose output is the mean of the runs' outputs")
    p.add_argument("--prior-row", action="store_true",
                   help="also score the deterministic guidance base alone (the grid prior, no training)")
    p.add_argument("--where", action="store_true",
                   help="also write the first --ckpt's and the prior's nMAE by cell and hour of day into the v2 meta")
    p.add_argument("--first-weekday", type=int, default=None,
                   help="weekday (Monday = 0) of the grid's slot 0 (default: Friday for the Milan sample, else Monday)")
    p.add_argument("--name", default="ustsllm", help="row name of --ckpt / --bundle")
    p.add_argument("--ablation", action="append", default=[], metavar="NAME=CKPT",
                   help="another checkpoint scored on the same windows as an ablation row (repeatable)")
    p.add_argument("--bundle", help="exported bundle scored through the runtime session (onnx rows)")
    p.add_argument("--precision", default="int8-qdq", help="bundle precision(s), comma-separated: fp32,fp16,int8-qdq")
    p.add_argument("--data", default=None, help="slots x cells CSV (default: the Milan sample; zero-shot: required)")
    p.add_argument("--grid", default=None, help="HxW of --data")
    p.add_argument("--slot-minutes", type=int, default=10)
    p.add_argument("--adjacency", default=None, help="accepted for the common eval flags; unused (eq. 8's A is functional)")
    p.add_argument("--stride", type=int, default=1, help="score every N-th protocol window")
    p.add_argument("--no-baselines", action="store_true", help="leave the harness baselines out")
    p.add_argument("--nets", default="", help="learned grid baselines to fit on the training period and score: "
                                              "comma-separated of dlinear, lstm, gpt4ts, brits (train/baselines/grid_nets.py), "
                                              "convlstm, timesnet, saits (grid_nets_extra.py); NAME#K = training "
                                              "seed K, several seeds folded into one row (mean, sample std)")
    p.add_argument("--net-seconds", type=float, default=300.0, help="training time cap per learned baseline and task")
    p.add_argument("--out", default=None, help="harness rows JSON (+ .md); default artifacts/eval/ustsllm_<protocol>.json")
    p.add_argument("--v2", default=None, help="upsert nmae/nrmse rows into this v2 result file")
    p.add_argument("--latency", action="store_true", help="latency rows (torch eager vs the bundle) instead of accuracy")
    p.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)     # common eval flags, no meaning here
    p.add_argument("--samples", type=int, default=None, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    command = shlex.join(["python", "-m", "umask.bench.accuracy.ustsllm", *argv])
    zeroshot = ns.protocol.endswith("-zeroshot")
    task = ns.protocol[:2].lower()
    if zeroshot and ns.data is None:
        raise InputError(f"--protocol {ns.protocol}: name the grid the model never saw with --data")
    if not (ns.ckpt or ns.bundle or ns.ablation or ns.nets or ns.prior_row) or (ns.latency and not (ns.ckpt or ns.bundle)):
        raise InputError("--ckpt, --bundle, --ablation, --nets or --prior-row: nothing to score")
    if ns.latency:
        rows = latency_rows(ns.ckpt[0] if ns.ckpt else None, ns.bundle, [p.strip() for p in ns.precision.split(",") if p.strip()], task,
                            command=command, name=ns.name or "ustsllm")
        if ns.v2:
            upsert_v2(Path(ns.v2), rows, META_NOTE)
        print(json.dumps(rows, indent=1))
        return 0
    grid = open_grid(ns.data, grid=ns.grid, slot_minutes=ns.slot_minutes)
    if zeroshot and grid.source == "milan":
        raise InputError("--data: a zero-shot protocol needs a grid other than the Milan training sample")
    train_end = grid.splits()["train"][1]
    first_weekday = first_weekday_of(grid, ns.first_weekday)
    stats = fit_grid_stats(grid.values, train_end, grid.slots_per_day, first_weekday)   # the grid's own (zero-shot too)

    models: dict[str, Callable[..., np.ndarray]] = {}
    meta: dict[str, dict[str, Any]] = {}
    info: dict[str, Any] = {}

    def add(name: str, fns: tuple, kind: str, artifact: str, notes: str) -> None:
        models[name] = fns[0] if task == "a1" else fns[1]
        meta[name] = {"kind": kind, "family": "ustsllm", "artifact": artifact, "notes": notes,
                      "seed": fns[2].get("seed", 0) if fns[2].get("seed") is not None else 0}
        info[name] = {"seeds": 0, "notes": notes, **fns[2]}

    zs_note = " (trained on Milan 5x5; applied unchanged, with this grid's own scaler, profile and graph)" if zeroshot else ""
    for k, ckpt in enumerate(ns.ckpt or []):          # one model row per training seed, aggregated by v2_rows
        sfx = f"{SEED_SEP}{k}" if len(ns.ckpt) > 1 else ""
        fns = torch_fns(ckpt, grid, first_weekday)
        if ns.ensemble:                                # the ensemble row asks each seed the same windows again
            fns = (_memo(fns[0]), _memo(fns[1]), fns[2])
        add(ns.name + sfx, fns, "ours", "torch", "U-STS-LLM, torch eager, EMA weights, best "
            "validation checkpoint" + zs_note)
        if ns.guidance_only:
            add(f"{ns.name}_guidance_only{sfx}", torch_fns(ckpt, grid, first_weekday, llm_branch=False), "ablation", "torch",
                "U-STS-LLM with the LLM branch (eq. 13 head) zeroed: the trained eq. 7 guidance alone" + zs_note)
    if ns.ensemble and len(ns.ckpt or []) > 1:          # one row: the seeds' outputs averaged, every request
        seeds = [models[ns.name + f"{SEED_SEP}{k}"] for k in range(len(ns.ckpt))]
        ens = lambda *a: np.mean([fn(*(x.copy() if isinstance(x, np.ndarray) else x for x in a))  # noqa: E731
                                  for fn in seeds], axis=0)
        n = len(seeds)
        add(f"{ns.name}_ens{n}", (ens, ens, {"seed": 0, "checkpoints": [str(c) for c in ns.ckpt]}), "ours", "torch",
            f"mean of the {n} training seeds' outputs (each window runs all {n} networks: {n}x the compute of one)"
            + zs_note)
    if ns.prior_row:
        add(f"{ns.name}_prior_only", prior_fns(harness.GridSpec(grid), first_weekday), "ablation", "numpy",
            "the deterministic base of the eq. 7 guidance alone, no training: the grid prior "
            "(train/models/umask/grid_prior.py; A1 day-type profile + level term, A2 linear interpolation)")
    for spec in ns.ablation:
        name, _, path = spec.partition("=")
        if not path:
            raise InputError(f"--ablation {spec!r}: expected NAME=CKPT")
        add(name, torch_fns(path, grid, first_weekday), "ablation", "torch", f"U-STS-LLM ablation {name}" + zs_note)
    if ns.bundle:
        for prec in [p.strip() for p in ns.precision.split(",") if p.strip()]:
            add(f"{ns.name}@{prec}", bundle_fns(ns.bundle, prec, stats, own_stats=not zeroshot), "ours", f"onnx-{prec}",
                f"U-STS-LLM bundle, onnxruntime CPU, {prec}" + zs_note)
            meta[f"{ns.name}@{prec}"]["model"] = ns.name          # same model, another artifact
    for net in [n.strip() for n in ns.nets.split(",") if n.strip()]:
        from umask.train.baselines import base as registry

        cls_name, _, seed = net.partition(SEED_SEP)     # "timesnet#1": training seed 1, folded into row "timesnet"
        cls = registry.get(cls_name)
        if (task == "a1" and not cls.forecasts) or (task == "a2" and not cls.imputes):
            log.info("%s has no %s row", net, ns.protocol)
            continue
        spec = harness.GridSpec(grid)
        kw = ({"grid": grid.shape, "tasks": ("forecast" if task == "a1" else "impute",)}
              if getattr(cls, "grid_aware", False) else {})
        fitted = cls(period=grid.slots_per_day, max_seconds=ns.net_seconds, seed=int(seed or 0), **kw).fit(
            spec.z[:train_end], val=spec.z[train_end - spec.history:grid.splits()["val"][1]])  # val: choice of weights
        models[net] = ((lambda m: lambda h, s, n: m.forecast(h, n, starts=s))(fitted) if task == "a1"
                       else (lambda m: lambda x, k, s: m.impute(x, k, starts=s))(fitted))
        meta[net] = {"kind": "baseline", "family": None, "artifact": "torch", "seed": int(seed or 0),
                     "notes": f"own compact implementation ({cls.__module__.replace('umask.', '').replace('.', '/')}.py), "
                              f"fit on this grid's training period: {fitted.info()}"}
        info[net] = {"seeds": 0, "notes": meta[net]["notes"]}
    if not ns.no_baselines:
        base, base_info = harness.baseline_models(task, harness.GridSpec(grid, first_weekday))
        models.update(base)
        info.update(base_info)
    if ns.where and ns.ckpt:                             # the first seed against the guidance base alone
        fns = {"model": models[ns.name + (f"{SEED_SEP}0" if len(ns.ckpt) > 1 else "")],
               "prior_only": prior_fns(harness.GridSpec(grid), first_weekday)[0 if task == "a1" else 1]}
        if ns.guidance_only:
            fns["guidance_only"] = models[f"{ns.name}_guidance_only" + (f"{SEED_SEP}0" if len(ns.ckpt) > 1 else "")]
        where = error_breakdown(task, harness.GridSpec(grid), fns)
        where["checkpoint"] = info[ns.name + (f"{SEED_SEP}0" if len(ns.ckpt) > 1 else "")].get("checkpoint")
        if ns.v2:
            path = Path(ns.v2)
            doc = json.loads(path.read_text()) if path.exists() else {"meta": {}, "rows": []}
            doc["meta"].setdefault("where_the_error_is", {})[ns.protocol] = where
            atomic_json(path, doc)
    rows = harness.evaluate(task, grid, models, model_info=info, command=command, stride=ns.stride)
    out = Path(ns.out or f"artifacts/eval/ustsllm_{ns.protocol.lower()}.json")
    harness.write_report(rows, out, ns.data or harness.DEFAULT_DATA)
    if ns.v2:
        upsert_v2(Path(ns.v2), v2_rows(rows, ns.protocol, grid.data, command, meta), META_NOTE)
        log.info("upserted %s", ns.v2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
