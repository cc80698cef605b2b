"""PROTOCOL v2 B baseline rows over several simulator seeds, aggregated for the scoreboard.

    python -m umask.bench.accuracy.user_v2 --users 50 --seeds 0,1,2      # ~5 min on one CPU thread

Runs the protocol-B harness (:mod:`umask.bench.accuracy.user`: every baseline of docs/PROTOCOL.md B,
including the v2 blend and the LightGBM global model) on ``--users`` SYNTHETIC simulator users for
each simulator seed, plus the REAL 6-user one-day sample (B1 short-term only, in-day context), and
writes ``benchmarks/results/v2_user_baselines.json``: one row per (protocol, model, metric) with the
mean over seeds as ``value`` and the standard deviation over seeds as ``spread`` (population std,
ddof=0; null for the single real sample). The scoreboard converter
(:mod:`umask.bench.reports.scoreboard`) reads that file as it is.

Headline metrics (docs/PROTOCOL.md B, "featurized scale" of the runtime's featurization):
``rmse_all/<group>`` and ``mae_all/<group>`` over every target entry; for B1 / B2 the event metrics
``app_recall@3`` and ``location_acc@1`` per target slot; for B3 ``ndcg@3`` / ``recall@3`` per domain.
Baselines are deterministic point forecasts, so the point estimator is the forecast itself for every
metric; the seeds are those of the simulator (different users), not of the models.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from umask.bench.accuracy import user as ue

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "v2_user_baselines.json"
GROUPS = ("traffic", "app", "location")


def metric_values(row: Mapping[str, Any]) -> Iterable[tuple[str, float, str]]:
    """(metric name, value, better) of one harness row, in the scoreboard's metric naming."""
    m = row["metrics"]
    for g in GROUPS:
        for name, key in (("rmse_all", "rmse"), ("mae_all", "mae")):
            v = (m.get(g) or {}).get(key)
            if v is not None:
                yield f"{name}/{g}", float(v), "lower"
    for name in ("app_recall@3", "location_acc@1"):
        v = (m.get("events") or {}).get(name)
        if v is not None:
            yield name, float(v), "higher"
    for domain, ranks in (m.get("ranking") or {}).items():
        for k in ("ndcg@3", "recall@3", "mrr@3"):
            if ranks.get(k) is not None:
                yield f"{k}/{domain}", float(ranks[k]), "higher"


def aggregate(runs: Mapping[int, Sequence[Mapping[str, Any]]], *, dataset: str, data: str,
              command: str) -> list[dict[str, Any]]:
    """Harness rows per seed -> one scoreboard-shaped row per (protocol, model, metric): mean and std over seeds."""
    vals: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    better: dict[str, str] = {}
    windows: dict[tuple[str, str], int] = defaultdict(int)
    for seed, rows in runs.items():
        for r in rows:
            key = (r["task_id"], r["model"])
            windows[key] += int(r["n_windows"])
            for metric, v, b in metric_values(r):
                vals[(*key, metric)].append(v)
                better[metric] = b
    out = []
    n_seeds = len(runs)
    for (protocol, model, metric), v in sorted(vals.items()):
        if len(v) != n_seeds:
            raise ValueError(f"{protocol} {model} {metric}: {len(v)} of {n_seeds} seeds have a value")
        out.append({"protocol": protocol, "dataset": dataset, "data": data, "model": model, "metric": metric,
                    "value": round(float(np.mean(v)), 6),
                    "spread": round(float(np.std(v)), 6) if n_seeds > 1 else None,
                    "better": better[metric], "n_windows": windows[(protocol, model)], "seeds": sorted(runs),
                    "command": command})
    return out


def _git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _atomic_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m umask.bench.accuracy.user_v2", description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=50, help="SYNTHETIC simulator users per seed")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated simulator seeds")
    ap.add_argument("--tasks", default="B1,B2,B3,B4", help="subset of B1,B2,B3,B4")
    ap.add_argument("--no-real", action="store_true", help="skip the REAL 6-user sample (B1)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="aggregated rows (JSON)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    tasks = tuple(t.strip().upper() for t in args.tasks.split(",") if t.strip())
    if not seeds or not set(tasks) <= set(ue.TASKS):
        ap.error("--seeds must name at least one seed and --tasks a subset of B1,B2,B3,B4")
    command = shlex.join(["python", "-m", "umask.bench.accuracy.user_v2", *argv])
    t0 = time.perf_counter()
    runs = {s: ue.evaluate(n_users=args.users, seed=s, tasks=tasks, command=command) for s in seeds}
    rows = aggregate(runs, dataset=f"sim {args.users} users x {len(seeds)} seeds, v2 B windows", data="synthetic",
                     command=command)
    if not args.no_real:
        rows += aggregate({0: ue.evaluate_real_sample(command=command)},
                          dataset="tsinghua sample 6 users 1 day, in-day context (B1-real)", data="real",
                          command=command)
    doc = {"meta": {"command": command, "commit": _git_commit(), "date": dt.date.today().isoformat(),
                    "wall_seconds": round(time.perf_counter() - t0, 1), "users_per_seed": args.users,
                    "seeds": seeds, "point_estimator": "the baselines' deterministic forecast, for every metric",
                    "spread": "population std over simulator seeds (null for the real sample)"},
           "rows": rows}
    _atomic_json(Path(args.out), doc)
    log.info("wrote %s: %d rows in %.0f s", args.out, len(rows), doc["meta"]["wall_seconds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
