"""Data-pipeline report: tessellation coverage and sparse-tensor size, on real and synthetic users.

``python -m umask.bench.reports.data`` writes ``benchmarks/results/data_report.json`` and ``.md``.

* REAL (Tsinghua sample, 6 users, one day): coverage of the 4x4 anchor-cell layout (a) fitted on
  the whole day and scored on it (in-sample), (b) fitted on the events before 15:00 and scored on
  the events from 15:00 on (held-out; the sample has no second day).
* SYNTHETIC (simulator, default 1000 users x 7 days, seed 0): layout fitted on days 1-5 (the
  PROTOCOL B training days), scored on the training days and on the held-out test day 7;
  sparse tensor memory for the whole population.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from umask.runtime.core.catalog import load_llmapp_catalog
from umask.runtime.core.events import read_trace
from umask.runtime.core.featurize import FeatureConfig, featurize_population
from umask.runtime.core.tessellation import CityGrid, coverage, fit_layout

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
TSINGHUA = ROOT / "data" / "tsinghua_app_usage"
DAY = 86_400
COMMAND = "python -m umask.bench.reports.data"


def real_coverage(cfg: FeatureConfig, split_hour: int = 15) -> list[dict[str, Any]]:
    catalog = load_llmapp_catalog(TSINGHUA)
    events = read_trace(TSINGHUA / "app_usage_trace_sample_llmapp.csv.gz")
    grid = CityGrid.from_stations(catalog.stations, cfg.cell_m)
    rows = []
    for u in events.users.tolist():
        ev = events.for_user(u)
        day0 = int(ev.ts.min()) // DAY * DAY
        cut = day0 + split_hour * 3600
        early, late = ev.take(ev.ts < cut), ev.take(ev.ts >= cut)
        full = fit_layout(ev, catalog, grid, cfg.H, cfg.W)
        row = {"user": u, "records": len(ev), "stations": int(len(np.unique(ev.bs))),
               "coverage_in_sample": coverage(ev, full, catalog),
               "records_after_split": len(late), "coverage_held_out": float("nan")}
        if len(early) and len(late):
            row["coverage_held_out"] = coverage(late, fit_layout(early, catalog, grid, cfg.H, cfg.W), catalog)
        rows.append(row)
    return rows


def synthetic_coverage(cfg: FeatureConfig, n_users: int, seed: int) -> dict[str, Any]:
    from umask.train import simulator

    catalog = load_llmapp_catalog(TSINGHUA)
    events, _ = simulator.simulate(simulator.SimulatorConfig(n_users=n_users, seed=seed), catalog)
    start = int(events.ts.min()) // DAY * DAY
    t = time.perf_counter()
    feats = featurize_population(events, catalog, cfg, fit_end_ts=start + 5 * DAY)
    t_feat = time.perf_counter() - t
    test = events.between(start + 6 * DAY, start + 7 * DAY)
    cov_fit = np.array([f.report.coverage for f in feats.values()])
    cov_test = []
    for u, f in feats.items():
        ev = test.for_user(u)
        if len(ev):
            cov_test.append(coverage(ev, f.layout, catalog))
    cov_test_a = np.array(cov_test)
    nbytes = sum(f.tensor.nbytes for f in feats.values())
    shape = next(iter(feats.values())).tensor.shape
    dense = n_users * int(np.prod(shape)) * 4
    return {"data": "synthetic", "n_users": len(feats), "seed": seed, "records": len(events),
            "coverage_all_days_mean": float(cov_fit.mean()), "coverage_all_days_p10": float(np.quantile(cov_fit, 0.1)),
            "coverage_test_day_mean": float(cov_test_a.mean()), "coverage_test_day_p10": float(np.quantile(cov_test_a, 0.1)),
            "users_with_test_day_events": len(cov_test), "tensor_shape_CTHW": list(shape),
            "sparse_mb": nbytes / 1e6, "dense_float32_mb": dense / 1e6, "featurize_s": t_feat}


def markdown(report: dict[str, Any]) -> str:
    cfg = report["feature_config"]
    lines = [f"Layout: {cfg['H']}x{cfg['W']} anchor cells of {cfg['cell_m']:.0f} m, {cfg['slot_minutes']}-min slots. "
             f"Command: `{report['command']}`", "",
             "REAL Tsinghua sample (one day, 2016-04-20): in-sample = layout fitted on the whole day; "
             "held-out = fitted before 15:00, scored on 15:00-24:00.", "",
             "| user | records | stations | coverage in-sample | records after 15:00 | coverage held-out |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in report["real"]:
        lines.append(f"| {r['user']} | {r['records']} | {r['stations']} | {r['coverage_in_sample']:.3f} | "
                     f"{r['records_after_split']} | {r['coverage_held_out']:.3f} |")
    s = report["synthetic"]
    lines += ["", f"SYNTHETIC simulator ({s['n_users']} users x 7 days, seed {s['seed']}, {s['records']:,} records): "
              "layout fitted on days 1-5.", "",
              "| coverage, days 1-7 (mean / p10) | coverage, held-out day 7 (mean / p10) | tensor (C, T, H, W) | sparse MB | dense fp32 MB | featurize s |",
              "|---|---|---|---:|---:|---:|",
              f"| {s['coverage_all_days_mean']:.3f} / {s['coverage_all_days_p10']:.3f} | "
              f"{s['coverage_test_day_mean']:.3f} / {s['coverage_test_day_p10']:.3f} | {tuple(s['tensor_shape_CTHW'])} | "
              f"{s['sparse_mb']:.1f} | {s['dense_float32_mb']:.0f} | {s['featurize_s']:.1f} |"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m umask.bench.reports.data", description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=1000, help="synthetic users (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="simulator seed")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "data_report.json")
    args = p.parse_args(argv)
    cfg = FeatureConfig()
    report = {"command": COMMAND + (f" --users {args.users}" if args.users != 1000 else ""),
              "feature_config": cfg.to_dict(), "real": real_coverage(cfg),
              "synthetic": synthetic_coverage(cfg, args.users, args.seed)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, allow_nan=True))
    md = markdown(report)
    args.out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    raise SystemExit(main())
