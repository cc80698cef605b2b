"""Grid U-MASK bundles scored on Milan A1 / A2 through the runtime session, next to their torch network (issue 10).

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

Rows: ``umask_grid_bundle`` per (task, artifact), value = mean over the bundles (seeds), spread = std; and
``latency_p50_ms`` / ``latency_p90_ms`` of one request (one window, 16 noise draws, 1 thread) per artifact.
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
LATENCY_REQUESTS = 30


def artifact_name(precision: str) -> str:
    return "torch" if precision == "torch" else f"onnx-{precision}"


class TorchSession:
    """A bundle's session with the checkpoint's torch DiT in place of its ONNX file (the reference rows)."""

    def __init__(self, bundle: str | Path) -> None:
        from umask.export.families.umask.grid_exporter import _load, torch_dit
        from umask.runtime.session import Session

        self.inner = Session.open(bundle, precision="fp32", allow_unsigned=True)
        model, _, _ = _load(self.inner.manifest["checkpoint"]["path"])
        self.inner._dit = torch_dit(model)                  # the same pipeline, the torch network

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def open_session(bundle: str, precision: str) -> Any:
    from umask.runtime.session import Session

    return TorchSession(bundle) if precision == "torch" else Session.open(bundle, precision=precision,
                                                                           allow_unsigned=True)


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


def latency(sess: Any, spec: Any, fw: Any, iw: Any, n: int = LATENCY_REQUESTS) -> dict[str, float]:
    """p50 / p90 ms of one request (A1 forecast of one window, then A2 impute of one window), alternating."""
    sc = spec.scaler
    times = []
    for i in range(n):
        j, k = i % len(fw.starts), i % len(iw.starts)
        t0 = time.perf_counter()
        if i % 2 == 0:
            sess.forecast(sc.inverse_transform(fw.x[j]), first_slot=int(fw.starts[j] - fw.x.shape[1]))
        else:
            sess.impute(np.where(iw.mask[k], np.nan, sc.inverse_transform(iw.truth[k])), iw.mask[k],
                        first_slot=int(iw.starts[k]))
        times.append((time.perf_counter() - t0) * 1e3)
    return {"latency_p50_ms": round(float(np.percentile(times, 50)), 2),
            "latency_p90_ms": round(float(np.percentile(times, 90)), 2)}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m umask.bench.accuracy.grid_umask_bundle", description=__doc__.splitlines()[0])
    p.add_argument("--bundles", nargs="+", required=True, help="grid U-MASK bundles, one per training seed")
    p.add_argument("--precisions", default="torch," + ",".join(PRECISIONS),
                   help="torch (the bundle's pipeline with the checkpoint's network) and the bundle's precisions")
    p.add_argument("--tasks", default="a1,a2")
    p.add_argument("--out", default="benchmarks/results/v2_grid_umask_bundle.json")
    p.add_argument("--no-latency", action="store_true")
    args = p.parse_args(argv)
    command, tasks, t_start, grid, spec = cli_setup("umask.bench.accuracy.grid_umask_bundle", argv, args.tasks)
    fw, iw = protocol_windows(spec, "test")
    precs = [s.strip() for s in args.precisions.split(",") if s.strip()]
    per: dict[str, dict[str, dict[str, dict[str, float]]]] = {}       # precision -> task -> seed -> metrics
    lat: dict[str, dict[str, float]] = {}
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
    rows: list[dict[str, Any]] = []
    for prec, by_task in per.items():
        for task, by_seed in by_task.items():
            ss = sorted(by_seed, key=int)
            for metric, _ in METRICS:
                vals = np.array([by_seed[s][metric] for s in ss])
                rows.append({"protocol": task.upper(), "dataset": DATASET, "data": "real", "model": NAME, "kind": "ours",
                             "family": "umask", "artifact": artifact_name(prec), "metric": metric,
                             "value": float(vals.mean()), "better": "lower",
                             "n_windows": int(len(fw.starts) if task == "a1" else len(iw.starts)),
                             "seeds": [int(s) for s in ss], "spread": round(float(vals.std(ddof=1)), 5) if len(vals) > 1
                             else None, "command": command,
                             "notes": f"grid U-MASK bundle through the runtime session ({artifact_name(prec)}; torch = the "
                                      "same pipeline with the checkpoint's network): first-step x0, 16 draws, per-cell "
                                      "gate chosen on validation (A1 over the grid prior, A2 over lowrank_interpolation); "
                                      f"{len(ss)} bundles (seeds), per seed {np.round(vals, 4).tolist()}"})
    for prec, d in lat.items():
        for metric, v in d.items():
            rows.append({"protocol": "A", "dataset": DATASET, "data": "real", "model": NAME, "kind": "ours",
                         "family": "umask", "artifact": artifact_name(prec), "metric": metric, "value": v,
                         "better": "lower", "n_windows": LATENCY_REQUESTS, "seeds": [seeds[0]], "spread": None,
                         "command": command,
                         "notes": "one request = forecast (A1) or impute (A2) of one window in raw units, 16 noise draws, "
                                  f"1 thread, {LATENCY_REQUESTS} timed requests alternating; shared 2-core CPU"})
    doc = {"meta": {"command": command, "commit": _git_commit(), "date": dt.date.today().isoformat(),
                    "wall_seconds": round(time.perf_counter() - t_start, 1), "bundles": list(args.bundles),
                    "loadavg_before": round(load_before, 2), "loadavg_after": round(os.getloadavg()[0], 2),
                    "per_seed": per, "latency": lat},
           "rows": rows}
    atomic_text(Path(args.out), json.dumps(doc, indent=1, default=float) + "\n")
    print(json.dumps({p_: {t: {s: v["nmae"] for s, v in d.items()} for t, d in by.items()} for p_, by in per.items()},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
