"""Milan PROTOCOL A runs of the learned peer baselines (ARIMA, PatchTST, CSDI): fit on the training
period, evaluate A1 (forecasting) and A2 (imputation) with the Milan harness (``grid.py``), write
JSON + markdown.

The models live in ``train/baselines`` (no harness code there); this module is their Milan harness::

    python -m umask.bench.accuracy.grid_peers arima --out benchmarks/results/milan_arima.json
    python -m umask.bench.accuracy.grid_peers patchtst --out benchmarks/results/milan_patchtst.json
    python -m umask.bench.accuracy.grid_peers csdi --out benchmarks/results/milan_csdi.json

(before the split these were ``python -m umask.train.baselines.{arima,patchtst,csdi}``; same
options, same rows.)
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from umask.bench.accuracy import grid as milan_eval
from umask.train.data import splits
from umask.train.data.milan import read_internet_matrix

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# What every peer command shares: --data / --out / --split, the command line, the Milan matrix
# ------------------------------------------------------------------------------------------------
def _parser(model: str, doc: str | None) -> argparse.ArgumentParser:
    """The argument parser of ``grid_peers MODEL`` with the options every peer has."""
    parser = argparse.ArgumentParser(prog=f"python -m umask.bench.accuracy.grid_peers {model}",
                                     description=(doc or model).splitlines()[0])
    parser.add_argument("--data", default=str(milan_eval.DEFAULT_DATA))
    parser.add_argument("--out", default=f"benchmarks/results/milan_{model}.json")
    parser.add_argument("--split", default="test", choices=("val", "test"))
    return parser


def _tasks(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """The ``--tasks`` list, in the order given (a subset of a1,a2; else a parser error)."""
    tasks = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not tasks or not set(tasks) <= {"a1", "a2"}:
        parser.error(f"--tasks must be a subset of a1,a2, got {text!r}")
    return list(dict.fromkeys(tasks))


def _start(model: str, args: argparse.Namespace, argv: Sequence[str]) -> tuple[str, np.ndarray, np.ndarray]:
    """Logging on; (the command line, the raw Milan matrix of ``--data``, its harness z-scores)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    command = shlex.join(["python", "-m", "umask.bench.accuracy.grid_peers", model, *argv])
    matrix = read_internet_matrix(args.data)
    return command, matrix, milan_eval.GridSpec(matrix).z


def _timed_rows(task: str, matrix: np.ndarray, models: dict[str, Any], **kw: Any) -> list[dict[str, Any]]:
    """``milan_eval.evaluate`` of ``task``; the first row records the seconds it took (``eval_seconds``)."""
    t0 = time.perf_counter()
    rows = milan_eval.evaluate(task, matrix, models, **kw)
    rows[0]["eval_seconds"] = round(time.perf_counter() - t0, 1)
    log.info("%s done in %.1f s", task.upper(), rows[0]["eval_seconds"])
    return rows


# ------------------------------------------------------------------------------------------------
# ARIMA: A1 + A2
# ------------------------------------------------------------------------------------------------
def main_arima(argv: Sequence[str] | None = None) -> int:
    """Fit ARIMA on the Milan training period, evaluate A1 (and A2), write JSON + markdown."""
    from umask.train.baselines import arima

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser("arima", arima.__doc__)
    parser.add_argument("--tasks", default="a1,a2", help="comma-separated subset of a1,a2")
    parser.add_argument("--criterion", default="aic", choices=("aic", "bic"))
    args = parser.parse_args(argv)
    tasks = _tasks(parser, args.tasks)
    command, matrix, z = _start("arima", args, argv)
    train_end = splits.MILAN_SPLITS["train"][1]
    cfg = arima.ArimaConfig(period=splits.SLOTS_PER_DAY, criterion=args.criterion)
    model = arima.fit(z[:train_end], cfg)
    log.info("fit %d series in %.1f s", model.n_series, model.fit_seconds)
    order_counts: dict[str, int] = {}
    for o in model.orders:
        order_counts[str(o)] = order_counts.get(str(o), 0) + 1
    info_base = {
        "seeds": "n/a (deterministic MLE)",
        "notes": (
            "ARMA(p,0,q) per cell on the residual after subtracting the training time-of-day profile; "
            f"order by {cfg.criterion.upper()} over {list(cfg.orders)} on training slots 0..{train_end - 1}; "
            "parameters fixed, Kalman filter on each window's history (A1) / Kalman smoother over observed "
            "entries (A2); statsmodels SARIMAX"
        ),
        "fit": {"orders_chosen": order_counts, "fit_seconds": round(model.fit_seconds, 1),
                "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}},
    }
    rows: list[dict[str, Any]] = []
    for task in ("a1", "a2"):
        if task in tasks:
            fn = arima.forecast_fn(model) if task == "a1" else arima.impute_fn(model)
            rows += _timed_rows(task, matrix, {"arima": fn}, split=args.split, model_info={"arima": info_base},
                                command=command)
    milan_eval.write_report(rows, Path(args.out), args.data)
    return 0


# ------------------------------------------------------------------------------------------------
# PatchTST: A1
# ------------------------------------------------------------------------------------------------
def main_patchtst(argv: Sequence[str] | None = None) -> int:
    """Train on the Milan training period (early stopping on validation), evaluate A1, write results."""
    import torch
    from umask.train.baselines import patchtst

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser("patchtst", patchtst.__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-minutes", type=float, default=patchtst.PatchTSTBaselineConfig.max_minutes)
    parser.add_argument("--max-epochs", type=int, default=patchtst.PatchTSTBaselineConfig.max_epochs)
    parser.add_argument("--steps-per-epoch", type=int, default=patchtst.PatchTSTBaselineConfig.steps_per_epoch)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    command, matrix, z = _start("patchtst", args, argv)
    torch.set_num_threads(args.threads)
    tr0, tr1 = splits.MILAN_SPLITS["train"]
    va0, va1 = splits.MILAN_SPLITS["val"]
    cfg = patchtst.PatchTSTBaselineConfig(seed=args.seed, max_minutes=args.max_minutes, max_epochs=args.max_epochs,
                                 steps_per_epoch=args.steps_per_epoch, threads=args.threads,
                                 progress=not args.no_progress)
    model = patchtst.fit(z[tr0:tr1], z[va0 - cfg.context_length : va1], cfg)
    info = {
        "seeds": cfg.seed,
        "notes": (
            "transformers PatchTSTForPrediction, channel-independent (each cell a univariate sample), "
            f"context {cfg.context_length}, prediction {cfg.prediction_length}, patch {cfg.patch_length} "
            f"stride {cfg.patch_stride}, d_model {cfg.d_model}, {cfg.num_layers} layers, {cfg.num_heads} heads, "
            f"ffn {cfg.ffn_dim}, dropout {cfg.dropout}, scaling {cfg.scaling}; MSE loss, AdamW lr {cfg.lr}, "
            f"batch {cfg.batch_size}; trained on windows inside slots {tr0}..{tr1 - 1}, early stopping on "
            f"validation windows (horizon starts {va0}..{va1 - cfg.prediction_length})"
        ),
        "fit": {
            "n_params": model.n_params,
            "train_seconds": round(model.train_seconds, 1),
            "epochs_run": len(model.history),
            "best_epoch": model.best_epoch,
            "best_val_mse": round(model.best_val_mse, 5),
            "optimizer_steps": len(model.history) * cfg.steps_per_epoch,
            "history": [{k: round(v, 5) for k, v in h.items()} for h in model.history],
            "config": asdict(cfg),
            "threads": args.threads,
        },
    }
    rows = _timed_rows("a1", matrix, {"patchtst": patchtst.forecast_fn(model)}, split=args.split,
                       model_info={"patchtst": info}, command=command)
    milan_eval.write_report(rows, Path(args.out), args.data)
    return 0


# ------------------------------------------------------------------------------------------------
# CSDI: A2 + A1 (every stride-th protocol window)
# ------------------------------------------------------------------------------------------------
def _subset_rows(matrix: np.ndarray, task: str, models: dict[str, Any], stride: int, split: str,
                 model_info: dict[str, dict[str, Any]], command: str) -> list[dict[str, Any]]:
    """``milan_eval.evaluate`` on every ``stride``-th protocol window (kept for tests/test_learned_baselines.py)."""
    return milan_eval.evaluate(task, matrix, models, split=split, model_info=model_info, command=command,
                               stride=stride)


def main_csdi(argv: Sequence[str] | None = None) -> int:
    """Train CSDI on the Milan training period, evaluate A2 (imputation) and A1 (forecasting)."""
    import torch
    from umask.train.baselines import csdi

    argv = list(sys.argv[1:] if argv is None else argv)
    d = csdi.CSDIConfig()
    parser = _parser("csdi", csdi.__doc__)
    parser.add_argument("--tasks", default="a2,a1", help="comma-separated subset of a1,a2")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--max-steps", type=int, default=d.max_steps)
    parser.add_argument("--max-minutes", type=float, default=d.max_minutes)
    parser.add_argument("--channels", type=int, default=d.channels)
    parser.add_argument("--layers", type=int, default=d.layers)
    parser.add_argument("--nsample", type=int, default=d.nsample)
    parser.add_argument("--a1-stride", type=int, default=36, help="evaluate every k-th A1 protocol window")
    parser.add_argument("--a2-stride", type=int, default=8, help="evaluate every k-th A2 protocol window")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--save-model", default=None, help="optional path for the trained weights (torch.save)")
    args = parser.parse_args(argv)
    tasks = _tasks(parser, args.tasks)
    command, matrix, z = _start("csdi", args, argv)
    torch.set_num_threads(args.threads)
    tr0, tr1 = splits.MILAN_SPLITS["train"]
    va0, va1 = splits.MILAN_SPLITS["val"]
    cfg = csdi.CSDIConfig(n_features=z.shape[1], period=splits.SLOTS_PER_DAY, seed=args.seed, max_steps=args.max_steps,
                     max_minutes=args.max_minutes, channels=args.channels, layers=args.layers,
                     nsample=args.nsample, threads=args.threads, progress=not args.no_progress)
    model = csdi.fit(z[tr0:tr1], z[va0:va1], cfg, train_first_slot=tr0, val_first_slot=va0)
    log.info("trained %d steps in %.0f s (best step %d, val loss %.4f)", model.steps_run, model.train_seconds,
             model.best_step, model.best_val)
    if args.save_model:
        csdi.save(model, args.save_model)
    info = {
        "seeds": {"train": cfg.seed, "sampler": cfg.seed},
        "samples": cfg.nsample,
        "sampler": f"DDPM ancestral sampling, {cfg.num_steps} steps, point estimate = mean of {cfg.nsample} samples",
        "notes": (
            f"CSDI (compact): channels {cfg.channels}, {cfg.layers} residual layers, {cfg.nheads} head, "
            f"time emb {cfg.timeemb} (slot of day), feature emb {cfg.featureemb}, diffusion emb "
            f"{cfg.diffusion_embedding_dim}; {cfg.num_steps} steps quad schedule {cfg.beta_start}..{cfg.beta_end}; "
            f"trained on random {cfg.window}-slot windows of slots {tr0}..{tr1 - 1}, masks: paper's random "
            f"strategy ({1 - cfg.forecast_prob:.0%}) / last {cfg.forecast_len} slots hidden ({cfg.forecast_prob:.0%}); "
            f"A2: 288-slot windows imputed as 4 independent {cfg.window}-slot chunks; A1: horizon generated "
            f"autoregressively in {cfg.forecast_len}-slot chunks each conditioned on the previous "
            f"{cfg.window - cfg.forecast_len} slots"
        ),
        "fit": {
            "n_params": model.n_params, "train_seconds": round(model.train_seconds, 1),
            "steps_run": model.steps_run, "best_step": model.best_step, "best_val_loss": round(model.best_val, 5),
            "history": [{k: round(v, 5) for k, v in h.items()} for h in model.history],
            "config": asdict(cfg), "threads": args.threads,
        },
    }
    rows: list[dict[str, Any]] = []
    spec = milan_eval.GridSpec(matrix)
    for task in tasks:
        stride = args.a1_stride if task == "a1" else args.a2_stride
        models: dict[str, Any] = {"csdi": csdi.forecast_fn(model) if task == "a1" else csdi.impute_fn(model)}
        model_info: dict[str, dict[str, Any]] = {"csdi": info}
        if stride > 1:  # re-score the baselines on the same windows for a like-for-like comparison
            base, base_info = milan_eval.baseline_models(task, spec, suffix="@subset", note="; same windows as csdi")
            models.update(base)
            model_info.update(base_info)
        rows += _timed_rows(task, matrix, models, split=args.split, model_info=model_info, command=command,
                            stride=stride)
    milan_eval.write_report(rows, Path(args.out), args.data)
    return 0


COMMANDS = {"arima": main_arima, "patchtst": main_patchtst, "csdi": main_csdi}


def main(argv: Sequence[str] | None = None) -> int:
    """``grid_peers MODEL [options]`` with MODEL one of arima, patchtst, csdi."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m umask.bench.accuracy.grid_peers {{{','.join(COMMANDS)}}} [options]", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
