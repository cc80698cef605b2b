"""Grid U-MASK bundles scored on Milan A1 / A2 through the runtime session, next to their torch network (issue 10).

    scripts/train_grid_umask.sh bundle          # the two steps below for seeds 0, 1, 2
    python -m umask.export.families.umask.grid_exporter --ckpt artifacts/train/grid_umask_s0 --out artifacts/bundles/umask_grid_s0
    python -m umask.bench.accuracy.grid_umask_bundle --bundles artifacts/bundles/umask_grid_s{0,1,2} \
        --out benchmarks/results/v2_grid_umask_bundle.json

Per bundle (one per training seed) and precision, the on-device session (runtime/families/umask/grid_session.py)
answers every test window of the protocol through its public API in RAW units (``forecast(history,
first_slot=)``, ``impute(values, mask, first_slot=)``); the harness (benchmarks/accuracy/grid.py) scores the
answers. The ``torch`` artifact is the same pipeline (frames, prior, noise draws, gate) with the checkpoint's
torch network in place of the ONNX file, so the rows differ only by the network file. The gate (per-cell
alphas, A1 over the grid prior, A2 over the lowrank_interpolation row) was chosen by the exporter on the
validation days; the test days are read only here.

Any grid: ``--data my.csv --grid 3x4 --slot-minutes 30`` scores bundles of a grid trained on that CSV on its own
PROTOCOL A test days (the rows' dataset names the file; ``data`` is "real" because the file's own values are
scored: label yours in the notes if they are not).

Rows: ``umask_grid_bundle`` per (task, artifact), value = mean over the bundles (seeds), spread = std; and
``latency_p50_ms`` / ``latency_p99_ms`` of one request (one window, 16 noise draws, 1 thread) per task and artifact.

``meta.draws_sweep`` (the first bundle, ``--sweep-precision``, VALIDATION windows only): the gated nMAE and
the request latency for 1, 2, 4, 8 and 16 noise draws. A request's cost is one DiT call per draw (about
2.7 ms each on one core; batching the draws into one call was no faster per row), so ``n_samples=`` trades
latency against accuracy at request time; the default stays the 16 draws every row above was scored with.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from umask.bench.accuracy.grid_umask_v2 import DATASET, METRICS, _git_commit, cli_setup, harness_rows, protocol_windows
from umask.train.common.checkpoints import atomic_text

log = logging.getLogger(__name__)

NAME = "umask_grid_bundle"
PRECISIONS = ("fp32", "fp16", "int8-qdq", "int8-dynamic")
LATENCY_REQUESTS = 60


def artifact_name(precision: str) -> str:
    return "torch" if precision == "torch" else f"onnx-{precision}"


def open_session(bundle: str, precision: str) -> Any:
    """The bundle's session; ``torch``: the same session with the checkpoint's torch network as its backend."""
    from umask.runtime.session import Session

    if precision != "torch":
        return Session.open(bundle, precision=precision, allow_unsigned=True)
    from umask.bench.latency.backends import TorchBackend
    from umask.export.families.umask.grid_exporter import _load

    manifest = json.loads((Path(bundle) / "manifest.json").read_text())
    model, _, _ = _load(manifest["checkpoint"]["path"])
    return Session.open(bundle, precision="fp32", allow_unsigned=True, backend=TorchBackend(model))


def predictions(sess: Any, spec: Any, fw: Any, iw: Any, tasks: Sequence[str]) -> dict[str, np.ndarray]:
    """task -> the session's answers on the protocol windows, on the harness's scale (raw in, raw out)."""
    sc = spec.scaler
    out = {}
    if "a1" in tasks:
        raw = sc.inverse_transform(fw.x)
        out["a1"] = sc.transform(sess.forecast(raw, first_slot=fw.starts - fw.x.shape[1]))
    if "a2" in tasks:
        raw = np.where(iw.mask, np.nan, sc.inverse_transform(iw.truth))
        out["a2"] = sc.transform(sess.impute(raw, iw.mask, first_slot=iw.starts))
    return out


def latency(sess: Any, spec: Any, fw: Any, iw: Any, n: int = LATENCY_REQUESTS) -> dict[str, dict[str, float]]:
    """task -> p50 / p99 ms of one request (A1: forecast of one window; A2: impute of one window), raw units in
    and out, ``n`` timed requests each over the first ``n`` test windows (after one untimed warm-up request)."""
    sc = spec.scaler

    def a1(j: int) -> Any:
        return sess.forecast(sc.inverse_transform(fw.x[j]), first_slot=int(fw.starts[j] - fw.x.shape[1]))

    def a2(j: int) -> Any:
        return sess.impute(np.where(iw.mask[j], np.nan, sc.inverse_transform(iw.truth[j])), iw.mask[j],
                           first_slot=int(iw.starts[j]))

    out = {}
    for task, fn, count in (("a1", a1, len(fw.starts)), ("a2", a2, len(iw.starts))):
        fn(0)
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            fn(i % count)
            times.append((time.perf_counter() - t0) * 1e3)
        out[task] = {"latency_p50_ms": round(float(np.percentile(times, 50)), 2),
                     "latency_p99_ms": round(float(np.percentile(times, 99)), 2)}
    return out


SWEEP_DRAWS = (1, 2, 4, 8, 16)


def draws_sweep(bundle: str, precision: str, spec: Any, fw: Any, iw: Any, grid: Any) -> dict[str, Any]:
    """Validation gated nMAE per task and test-window request latency for each draw count of SWEEP_DRAWS."""
    from umask.export.families.umask.grid_exporter import protocol_windows as val_windows

    sess = open_session(bundle, precision)
    val = val_windows(sess.stats.transform(grid.values), grid.splits(), sess.spec, "val")
    out: dict[str, Any] = {"bundle": bundle, "precision": precision, "split": "val", "by_draws": {}}
    for n in SWEEP_DRAWS:
        row: dict[str, float] = {}
        for task, (x, h, f, y) in val.items():
            g = sess.predict_standardized(task, x, h, f, n_samples=n)["gated"]
            m = np.ones_like(y, bool) if h is None else h
            row[f"{task}_val_nmae"] = round(float(np.abs(g - y)[m].mean()), 5)
        sess.default_samples = n                          # the request default, for the latency figure
        row.update({f"{t}_{k}": v for t, d in latency(sess, spec, fw, iw, 20).items() for k, v in d.items()})
        out["by_draws"][str(n)] = row
        log.info("draws %d: %s", n, row)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m umask.bench.accuracy.grid_umask_bundle", description=__doc__.splitlines()[0])
    p.add_argument("--bundles", nargs="+", required=True, help="grid U-MASK bundles, one per training seed")
    p.add_argument("--precisions", default="torch," + ",".join(PRECISIONS),
                   help="torch (the bundle's pipeline with the checkpoint's network) and the bundle's precisions")
    p.add_argument("--tasks", default="a1,a2")
    p.add_argument("--out", default="benchmarks/results/v2_grid_umask_bundle.json")
    p.add_argument("--data", default=None, help="the grid CSV the bundles were trained on (default: the Milan sample)")
    p.add_argument("--grid", default=None, help="HxW of the CSV's cells")
    p.add_argument("--slot-minutes", type=int, default=10)
    p.add_argument("--no-latency", action="store_true")
    p.add_argument("--sweep-precision", default="int8-qdq", help="artifact of the draws sweep ('' = no sweep)")
    args = p.parse_args(argv)
    command, tasks, t_start, grid, spec = cli_setup("umask.bench.accuracy.grid_umask_bundle", argv, args.tasks)
    if args.data is not None:
        from umask.bench.accuracy import grid as harness
        from umask.train.data.grids import open_grid

        grid = open_grid(args.data, grid=args.grid, slot_minutes=args.slot_minutes)
        spec = harness.GridSpec(grid)
    dataset = DATASET if spec.milan else spec.dataset
    fw, iw = protocol_windows(spec, "test")
    precs = [s.strip() for s in args.precisions.split(",") if s.strip()]
    per: dict[str, dict[str, dict[str, dict[str, float]]]] = {}       # precision -> task -> seed -> metrics
    lat: dict[str, dict[str, dict[str, float]]] = {}
    seeds: list[int] = []
    load_before = os.getloadavg()[0]
    for b in args.bundles:
        manifest = json.loads((Path(b) / "manifest.json").read_text())
        seed = int(manifest["checkpoint"].get("seed") or 0)
        seeds.append(seed)
        for prec in precs:
            if prec != "torch" and manifest["artifacts"].get(prec, {}).get("dit", {}).get("status") != "ok":
                log.warning("%s: no usable %s artifact; skipped", b, prec)
                continue
            t0 = time.perf_counter()
            sess = open_session(b, prec)
            preds = predictions(sess, spec, fw, iw, tasks)
            for task, pr in preds.items():
                m = harness_rows(grid, task, {"x": pr}, "test", command)["x"]
                per.setdefault(prec, {}).setdefault(task, {})[str(seed)] = {k: round(float(m[mk]), 5)
                                                                          for k, mk in METRICS}
            if not args.no_latency and b == args.bundles[0]:
                lat[prec] = latency(sess, spec, fw, iw)
            log.info("%s %s: %s (%.0f s)", b, prec, {t: per[prec][t][str(seed)]["nmae"] for t in preds},
                     time.perf_counter() - t0)
    sweep = draws_sweep(args.bundles[0], args.sweep_precision, spec, fw, iw, grid) if args.sweep_precision else None
    rows: list[dict[str, Any]] = []
    for prec, by_task in per.items():
        for task, by_seed in by_task.items():
            ss = sorted(by_seed, key=int)
            for metric, _ in METRICS:
                vals = np.array([by_seed[s][metric] for s in ss])
                rows.append({"protocol": task.upper(), "dataset": dataset, "data": "real", "model": NAME, "kind": "ours",
                             "family": "umask", "artifact": artifact_name(prec), "metric": metric,
                             "value": float(vals.mean()), "better": "lower",
                             "n_windows": int(len(fw.starts) if task == "a1" else len(iw.starts)),
                             "seeds": [int(s) for s in ss], "spread": round(float(vals.std(ddof=1)), 5) if len(vals) > 1
                             else None, "command": command,
                             "notes": f"grid U-MASK bundle through the runtime session ({artifact_name(prec)}; torch = the "
                                      "same pipeline with the checkpoint's network): first-step x0, 16 draws, per-cell "
                                      "gate chosen on validation (A1 over the grid prior, A2 over lowrank_interpolation); "
                                      f"{len(ss)} bundles (seeds), per seed {np.round(vals, 4).tolist()}"})
    for prec, by_task in lat.items():
        for task, d in by_task.items():
            for metric, v in d.items():
                rows.append({"protocol": task.upper(), "dataset": dataset, "data": "real", "model": NAME, "kind": "ours",
                             "family": "umask", "artifact": artifact_name(prec), "metric": metric, "value": v,
                             "better": "lower", "n_windows": LATENCY_REQUESTS, "seeds": [seeds[0]], "spread": None,
                             "command": command,
                             "notes": f"one request = {'forecast' if task == 'a1' else 'impute'} of one window in raw "
                                      f"units, 16 noise draws, 1 thread, {LATENCY_REQUESTS} timed requests; shared 2-core "
                                      "CPU (load average in meta)"})
    doc = {"meta": {"command": command, "commit": _git_commit(), "date": dt.date.today().isoformat(),
                    "wall_seconds": round(time.perf_counter() - t_start, 1), "bundles": list(args.bundles),
                    "loadavg_before": round(load_before, 2), "loadavg_after": round(os.getloadavg()[0], 2),
                    "per_seed": per, "latency": lat, "draws_sweep": sweep},
           "rows": rows}
    atomic_text(Path(args.out), json.dumps(doc, indent=1, default=float) + "\n")
    print(json.dumps({p_: {t: {s: v["nmae"] for s, v in d.items()} for t, d in by.items()} for p_, by in per.items()},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
