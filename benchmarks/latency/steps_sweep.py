"""Steps-vs-accuracy sweep: sampler x steps -> B1/B2 (per-user) and A1 (Milan) error against request latency.

::

    python -m umask.bench.latency.steps_sweep --ckpt artifacts/train/umask_small_v2/ckpt/latest \\
        --milan artifacts/train/milan_umask --bundle artifacts/bundles/small \\
        --out benchmarks/results/steps_sweep.json [--quick]

For every sampler in ``--samplers`` (DDIM eta 0, DPM-Solver++(2M); both with the evidence clamp) and
every step count in ``--steps``:

* **B1 / B2** (PROTOCOL B, SYNTHETIC simulator users): the per-user harness
  (benchmarks/user_eval.evaluate_population) with the U-MASK adapter (benchmarks/umask_eval
  `UMaskPredictor`), the first ``--users`` users of the checkpoint's training population (same
  simulator seed; their test day was never trained on), B1 target hours ``--b1-hours`` only, B2 all
  windows, ``--samples`` samples per window, sampling seed ``--seed``. Error = the mean over the
  traffic / app / location groups of the active-entry MAE (truth != 0; featurized scale); the
  all-entry MAE is kept in the rows.
* **A1** (PROTOCOL A, REAL Milan grid): benchmarks/milan_umask_eval `forecast_fn` over the Milan
  U-MASK checkpoint ``--milan`` (its best step), every ``--a1-stride``-th test window. Error =
  normalized MAE.
* **Latency**: one full on-device request (REAL sample user, short-term, history -> prediction; the
  runtime Session, benchmarks/latency/request.py `SessionPipe`) at that sampler and step count,
  ``--samples`` samples, over the bundle's ONNX files with onnxruntime at ``--latency-precision``;
  without ``--bundle`` the latency is not measured (None, noted).

"Fewest steps within 5 %": per sampler and task, the smallest step count whose error is at most
(1 + ``--tolerance``) x the error at the largest step count of the sweep (50).

Writes ``--out`` (JSON: meta + rows + the fewest-steps table) and a markdown table next to it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_OUT = "benchmarks/results/steps_sweep.json"
SAMPLERS = ("ddim", "dpmpp_2m")
STEPS = (50, 20, 10, 4)
B_GROUPS = ("traffic", "app", "location")


@dataclass
class SweepConfig:
    ckpt: Path
    milan: Path | None = None
    bundle: Path | None = None
    out: Path = Path(DEFAULT_OUT)
    samplers: tuple[str, ...] = SAMPLERS
    steps: tuple[int, ...] = STEPS
    users: int = 30
    b1_hours: tuple[int, ...] = (2, 8, 14, 20)
    tasks: tuple[str, ...] = ("B1", "B2", "A1")
    samples: int = 1
    seed: int = 0
    a1_stride: int = 12
    batch_size: int = 32
    tolerance: float = 0.05
    latency_precision: str = "int8_qdq"
    latency_samples: int = 5
    quick: bool = False
    data_dir: Path | None = None
    notes: list[str] = field(default_factory=list)


def b_error(row: Mapping[str, Any]) -> float:
    """Mean over traffic / app / location of the active-entry MAE of a user_eval row."""
    return float(np.mean([row["metrics"][g]["active_mae"] for g in B_GROUPS]))


def fewest_steps(errors: Mapping[int, float], tolerance: float = 0.05) -> dict[str, Any]:
    """Smallest step count whose error <= (1 + tolerance) x the error at the largest step count."""
    if not errors:
        raise ValueError("no errors")
    ref_steps = max(errors)
    ref = errors[ref_steps]
    ok = sorted(s for s, e in errors.items() if e <= (1.0 + tolerance) * ref)
    return {"reference_steps": ref_steps, "reference_error": ref, "tolerance": tolerance,
            "bound": (1.0 + tolerance) * ref, "fewest_steps": ok[0] if ok else ref_steps,
            "error_at_fewest": errors[ok[0]] if ok else ref}


# ------------------------------------------------------------------------------------------------
# Parts
# ------------------------------------------------------------------------------------------------
class PerUser:
    """B1 / B2 on the first N simulated users with one loaded checkpoint."""

    def __init__(self, cfg: SweepConfig) -> None:
        from umask.bench.accuracy import user as ue
        from umask.bench.accuracy.user_umask import population_matches, resolve_checkpoint, subset_population
        from umask.train.models.umask.trainer import load_model

        self.ue = ue
        self.ckpt = resolve_checkpoint(cfg.ckpt)
        self.model, self.config = load_model(self.ckpt, ema=True)
        tr = self.config["train"]
        full = ue.simulated_population(int(tr["n_users"]), int(tr["sim_seed"]), data_dir=cfg.data_dir)
        self.same_population = population_matches(full, self.config)
        self.pop = subset_population(full, cfg.users)
        self.cfg = cfg
        self._encoder = None
        c = tr.get("sbert_cache")
        self.sbert_cache = None if not c else (Path(c) if Path(c).is_absolute() else ue.REPO_ROOT / c)

    def rows(self, sampler: str, steps: int) -> list[dict[str, Any]]:
        from umask.bench.accuracy.user_umask import UMaskPredictor

        cfg = self.cfg
        pred = UMaskPredictor(self.model, self.config, sampler=sampler, steps=steps, n_samples=cfg.samples,
                              seed=cfg.seed, sbert_cache=self.sbert_cache, encoder=self._encoder,
                              checkpoint=self.ckpt)
        name = f"umask {sampler} {steps}"
        tasks = tuple(t for t in cfg.tasks if t in ("B1", "B2"))
        rows = self.ue.evaluate_population(self.pop, {name: pred}, split="test", tasks=tasks,
                                           batch_size=cfg.batch_size, model_info={name: pred.info()},
                                           windows={"B1": set(cfg.b1_hours)})
        self._encoder = pred._encoder
        return rows


class MilanA1:
    """A1 on a stride subset of the Milan test windows with the Milan U-MASK checkpoint."""

    def __init__(self, cfg: SweepConfig) -> None:
        from umask.bench.accuracy import grid as milan_eval
        from umask.train.data.milan import read_internet_matrix
        from umask.train.models.umask.grid import best_checkpoint, load_model

        self.ckpt = best_checkpoint(cfg.milan)
        self.model, self.config = load_model(self.ckpt)
        self.matrix = read_internet_matrix(milan_eval.DEFAULT_DATA)
        self.cfg = cfg

    def row(self, sampler: str, steps: int) -> dict[str, Any]:
        from umask.bench.accuracy.grid_umask import _e_pos, forecast_fn, score_rows

        cfg = self.cfg
        name = f"milan_umask {sampler} {steps}"
        fn = forecast_fn(self.model, _e_pos(self.config), sampler=sampler, steps=steps, n_samples=cfg.samples,
                         seed=cfg.seed, batch_size=cfg.batch_size)
        return score_rows(self.matrix, "a1", {name: fn}, stride=cfg.a1_stride, command="steps_sweep")[0]


class RequestLatency:
    """p50 of one full request per (sampler, steps): the runtime Session over the bundle (onnxruntime,
    ``--latency-precision``, CPU, 1 thread). Without a bundle nothing is timed (the latency columns are None)."""

    def __init__(self, cfg: SweepConfig) -> None:
        from umask.bench.latency.request import BUNDLE_PRECISION, RealSample, RequestSpec, request_inputs
        from umask.bench.latency.timing import TimingConfig

        self.req = RequestSpec(n_samples=cfg.samples, seed=cfg.seed)
        self.timing = TimingConfig(warmup_s=0.0 if cfg.quick else 0.5, duration_s=0.0,
                                   min_samples=1 if cfg.quick else cfg.latency_samples,
                                   max_samples=1 if cfg.quick else cfg.latency_samples, burn_in_s=0.0)
        self.session = None
        self.engine = "not measured (no --bundle)"
        if cfg.bundle is None:
            cfg.notes.append("latency: no --bundle given; the request latency (the runtime Session over a bundle) "
                             "was not measured")
            return
        from umask.runtime.families.umask.session import Session

        self.session = Session.open(cfg.bundle, precision=BUNDLE_PRECISION[cfg.latency_precision], threads=1,
                                    profile_source="template")
        self.engine = (f"runtime Session, onnxruntime {cfg.latency_precision} (CPUExecutionProvider, 1 thread, "
                       "spinning off)")
        self.hist, self.now, _w, self.text = request_inputs(self.session, RealSample.load(cfg.data_dir), self.req)

    def describe(self) -> str:
        rq = self.req
        return (f"REAL Tsinghua sample user #{rq.user_index}, {rq.task} at {rq.hour:02d}:00, the row's sampler and "
                f"steps x {rq.n_samples} sample(s), seed {rq.seed}, profile text cached; raw history -> window -> "
                f"SBERT -> profile MLP -> mask -> sampler -> prediction; {self.timing.min_samples} timed requests "
                f"after a {self.timing.warmup_s} s warm-up")

    def measure(self, sampler: str, steps: int) -> dict[str, Any]:
        from umask.bench.latency.request import SessionPipe
        from umask.bench.latency.timing import measure

        if self.session is None:
            return {"latency_engine": self.engine, "latency_ms": None, "latency_samples": 0}
        req = replace(self.req, sampler=sampler, steps=steps)
        pipe = SessionPipe(self.session, req)
        hist, now, text = self.hist, self.now, self.text
        t = measure(lambda: pipe(hist, now, profile_text=text), self.timing)
        return {"latency_engine": self.engine, "latency_ms": t.summary(), "latency_samples": len(t.samples_ms)}


# ------------------------------------------------------------------------------------------------
# Sweep
# ------------------------------------------------------------------------------------------------
def _p50(row: Mapping[str, Any]) -> float | None:
    return row["latency_ms"]["p50"] if row.get("latency_ms") else None


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def fewest_table(rows: Sequence[Mapping[str, Any]], samplers: Sequence[str], tolerance: float) -> list[dict[str, Any]]:
    fewest = []
    for sampler in samplers:
        for task in dict.fromkeys(r["task"] for r in rows):
            errs = {r["steps"]: r["error"] for r in rows if r["sampler"] == sampler and r["task"] == task}
            if errs:
                f = fewest_steps(errs, tolerance)
                lat_at = {r["steps"]: _p50(r) for r in rows if r["sampler"] == sampler and r["task"] == task}
                fewest.append({"sampler": sampler, "task": task, **f,
                               "latency_p50_ms_at_fewest": lat_at[f["fewest_steps"]],
                               "latency_p50_ms_at_reference": lat_at[f["reference_steps"]]})
    return fewest


def remeasure_latency(res: dict[str, Any], cfg: SweepConfig, command: str) -> dict[str, Any]:
    """Re-measure only the request latency of an existing sweep (e.g. once the machine is quiet)."""
    from umask.bench.latency.machine import load_average

    load_before = load_average()
    latency = RequestLatency(cfg)
    cache: dict[tuple[str, int], dict[str, Any]] = {}
    for r in res["rows"]:
        key = (r["sampler"], int(r["steps"]))
        if key not in cache:
            cache[key] = latency.measure(*key)
        r.update(cache[key])
    res["fewest_steps"] = fewest_table(res["rows"], list(dict.fromkeys(r["sampler"] for r in res["rows"])),
                                       float(res["meta"]["config"]["tolerance"]))
    res["meta"].update({"latency_engine": latency.engine, "latency_command": command, "request": latency.describe(),
                        "latency_load_before": load_before, "latency_load_after": load_average(),
                        "load_before": load_before, "load_after": load_average()})
    res["meta"]["notes"] = list(res["meta"].get("notes", [])) + [
        f"latency column re-measured by `{command}` (load average {load_before} before)"]
    return res


def run(cfg: SweepConfig, command: str) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from umask.bench.latency.machine import git_commit, load_average, machine_info

    t0 = time.perf_counter()
    load_before = load_average()
    per_user = PerUser(cfg) if {"B1", "B2"} & set(cfg.tasks) else None
    milan = MilanA1(cfg) if "A1" in cfg.tasks and cfg.milan is not None else None
    if "A1" in cfg.tasks and cfg.milan is None:
        cfg.notes.append("A1 skipped: no --milan checkpoint")
    latency = RequestLatency(cfg)
    rows: list[dict[str, Any]] = []
    grid = [(s, n) for s in cfg.samplers for n in cfg.steps]
    for sampler, steps in tqdm(grid, desc="sampler x steps", unit="cfg"):
        lat = latency.measure(sampler, steps)
        base = {"sampler": sampler, "steps": steps, "samples": cfg.samples, "seed": cfg.seed, **lat}
        if per_user is not None:
            for r in per_user.rows(sampler, steps):
                rows.append({**base, "task": r["task_id"], "dataset": r["dataset"], "synthetic": True,
                             "error": b_error(r), "error_metric": "mean active-entry MAE (traffic, app, location)",
                             "mae": float(np.mean([r["metrics"][g]["mae"] for g in B_GROUPS])),
                             "metrics": r["metrics"], "n_windows": r["n_windows"], "n_users": r["n_users"],
                             "window": r["window"]})
        if milan is not None:
            r = milan.row(sampler, steps)
            rows.append({**base, "task": "A1", "dataset": "Milan Telecom Italia 5x5 grid (REAL)", "synthetic": False,
                         "error": float(r["metrics"]["normalized_mae"]), "error_metric": "normalized MAE",
                         "mae": float(r["metrics"]["normalized_mae"]), "metrics": r["metrics"],
                         "n_windows": r["n_windows"], "window": r["window"]})
    fewest = fewest_table(rows, cfg.samplers, cfg.tolerance)
    machine = machine_info()
    meta = {"command": command, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "git_commit": git_commit(), "machine": machine, "load_before": load_before, "load_after": load_average(),
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
            "checkpoint": str(per_user.ckpt) if per_user else None,
            "same_population_as_training": per_user.same_population if per_user else None,
            "users": per_user.pop.info.get("evaluated_subset") if per_user else None,
            "milan_checkpoint": str(milan.ckpt) if milan else None, "latency_engine": latency.engine,
            "request": latency.describe(), "wall_seconds": round(time.perf_counter() - t0, 1),
            "notes": cfg.notes}
    return {"meta": meta, "rows": rows, "fewest_steps": fewest}


def markdown(res: Mapping[str, Any]) -> str:
    m = res["meta"]
    mc = m["machine"]
    cfg = m["config"]
    lines = ["# Steps vs accuracy (U-MASK samplers)", "",
             f"Machine: {mc['cpu']}, {mc['logical_cores']} logical cores; load average before / after "
             f"{m['load_before']} / {m['load_after']}; git {m['git_commit']}; {m['date']}.",
             f"Command: `{m['command']}`", "",
             f"- B1/B2: SYNTHETIC simulator users, {m['users']} (same users as training: "
             f"{m['same_population_as_training']}; test day), B1 target hours {cfg['b1_hours']}; checkpoint "
             f"`{m['checkpoint']}`; error = mean over traffic/app/location of the active-entry MAE.",
             f"- A1: REAL Milan grid, every {cfg['a1_stride']}th test window; checkpoint `{m['milan_checkpoint']}`; "
             "error = normalized MAE.",
             f"- {cfg['samples']} sample(s) per window, seed {cfg['seed']}; latency = p50 of one full request "
             f"({m['latency_engine']}): {m['request']}.", "",
             "| sampler | steps | task | error | all-entry MAE | request p50 ms |",
             "| --- | ---: | --- | ---: | ---: | ---: |"]
    for r in res["rows"]:
        lines.append(f"| {r['sampler']} | {r['steps']} | {r['task']} | {r['error']:.4f} | {r['mae']:.4f} | "
                     f"{_ms(_p50(r))} |")
    lines += ["", f"Fewest steps whose error stays within {100 * cfg['tolerance']:.0f} % of the "
                  f"{max(cfg['steps'])}-step error:", "",
              f"| sampler | task | fewest steps | error there | error at {max(cfg['steps'])} | request p50 ms there / at "
              f"{max(cfg['steps'])} |",
              "| --- | --- | ---: | ---: | ---: | --- |"]
    for f in res["fewest_steps"]:
        lines.append(f"| {f['sampler']} | {f['task']} | {f['fewest_steps']} | {f['error_at_fewest']:.4f} | "
                     f"{f['reference_error']:.4f} | {_ms(f['latency_p50_ms_at_fewest'])} / "
                     f"{_ms(f['latency_p50_ms_at_reference'])} |")
    if m.get("notes"):
        lines += ["", "Notes:"] + [f"- {n}" for n in m["notes"]]
    return "\n".join(lines) + "\n"


def write(res: Mapping[str, Any], out: Path) -> list[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out, out.with_suffix(".md")]
    for p, t in zip(paths, [json.dumps(res, indent=2, default=str) + "\n", markdown(res)]):
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(t)
        os.replace(tmp, p)
    return paths


def _csv(text: str, conv: Any) -> tuple[Any, ...]:
    return tuple(conv(x.strip()) for x in text.split(",") if x.strip())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m umask.bench.latency.steps_sweep", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", type=Path, default=Path("artifacts/train/umask_small_v2/ckpt/latest"))
    p.add_argument("--milan", type=Path, default=Path("artifacts/train/milan_umask"), help="'' = no A1")
    p.add_argument("--bundle", type=Path, default=None, help="bundle for the onnxruntime request latency")
    p.add_argument("--out", type=Path, default=Path(DEFAULT_OUT))
    p.add_argument("--samplers", default=",".join(SAMPLERS))
    p.add_argument("--steps", default=",".join(map(str, STEPS)))
    p.add_argument("--users", type=int, default=30)
    p.add_argument("--b1-hours", default="2,8,14,20")
    p.add_argument("--tasks", default="B1,B2,A1")
    p.add_argument("--samples", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--a1-stride", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--tolerance", type=float, default=0.05)
    p.add_argument("--latency-precision", default="int8_qdq")
    p.add_argument("--latency-samples", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="smoke: 3 users, B1 hour 14, A1 stride 96, steps 4,2")
    p.add_argument("--latency-only", action="store_true",
                   help="keep the accuracy of the existing --out file, re-measure only the request latency")
    p.add_argument("--max-load", type=float, default=None, help="wait until the 1-min load average is below this")
    p.add_argument("--wait-load-s", type=float, default=1800.0)
    p.add_argument("--data-dir", type=Path, default=None)
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    import torch

    torch.set_num_threads(1)
    cfg = SweepConfig(ckpt=ns.ckpt, milan=ns.milan if str(ns.milan) not in ("", ".") else None, bundle=ns.bundle,
                      out=ns.out, samplers=_csv(ns.samplers, str), steps=_csv(ns.steps, int), users=ns.users,
                      b1_hours=_csv(ns.b1_hours, int), tasks=_csv(ns.tasks, lambda s: s.upper()), samples=ns.samples,
                      seed=ns.seed, a1_stride=ns.a1_stride, batch_size=ns.batch_size, tolerance=ns.tolerance,
                      latency_precision=ns.latency_precision, latency_samples=ns.latency_samples, quick=ns.quick,
                      data_dir=ns.data_dir)
    if ns.quick:
        cfg.users, cfg.b1_hours, cfg.a1_stride = min(cfg.users, 3), (14,), max(cfg.a1_stride, 96)
        cfg.notes.append("QUICK smoke run: 3 users, B1 hour 14, A1 every 96th window; not a result")
    bad = [s for s in cfg.samplers if s not in SAMPLERS]
    if bad or not cfg.steps or min(cfg.steps) < 1:
        p.error(f"samplers must come from {SAMPLERS} and steps be >= 1")
    command = shlex.join(["python", "-m", "umask.bench.latency.steps_sweep", *argv])
    if ns.max_load is not None:
        from umask.bench.latency.machine import wait_for_quiet

        wait_for_quiet(ns.max_load, ns.wait_load_s)
    if ns.latency_only:
        if not cfg.out.is_file():
            p.error(f"--latency-only needs an existing {cfg.out}")
        res = remeasure_latency(json.loads(cfg.out.read_text()), cfg, command)
    else:
        res = run(cfg, command)
    paths = write(res, cfg.out)
    print(markdown(res), end="")
    print("wrote " + ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
