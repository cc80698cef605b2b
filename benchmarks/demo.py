"""The main job (``umask demo``): the whole pipeline end to end on the bundled data.

Today it runs the data pipeline; later issues extend it to train -> export -> serve -> benchmark.

1. Real Tsinghua sample (6 users, 1 day): load, check against the catalog, featurize with the one
   runtime featurization, print per-user coverage and U-SCOPE statistics.
2. Synthetic users from the calibrated simulator (labeled synthetic): generate a week, write it in
   the official trace layout, read it back with the same loader as real data, featurize with
   layouts fitted on the training days only, build the PROTOCOL B windows, print the
   simulator-vs-real validation table.
3. Milan (real): PROTOCOL A1/A2 windows and the baseline rows.
4. Taobao (real): PROTOCOL C leave-one-out split.

Everything lands in ``artifacts/demo/summary.json``; the printed summary says which data is real.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from umask.runtime.catalog import load_llmapp_catalog
from umask.runtime.events import read_official_trace, read_trace
from umask.runtime.featurize import FeatureConfig, featurize_population
from umask.runtime.tessellation import dominant_place_type

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
TSINGHUA = DATA / "tsinghua_app_usage"
DAY = 86_400


def _rel(path: Path) -> str:
    """Path relative to the repository when it lies inside it (for readable, portable summaries)."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 76 - len(title)))


# -----------------------------------------------------------------------------
# 1. real Tsinghua sample
# -----------------------------------------------------------------------------

def real_sample(cfg: FeatureConfig) -> dict[str, Any]:
    _section("1. Tsinghua App Usage sample (REAL: 6 users, 2016-04-20)")
    catalog = load_llmapp_catalog(TSINGHUA)
    events = read_trace(TSINGHUA / "app_usage_trace_sample_llmapp.csv.gz")
    catalog.check_events(events)
    feats = featurize_population(events, catalog, cfg)
    names = catalog.apps.category_names
    rows = []
    print(f"{len(events)} records, {len(feats)} users, {len(np.unique(events.bs))} base stations; "
          f"layout {cfg.H}x{cfg.W} cells of {cfg.cell_m:.0f} m, fitted in-sample (the sample has one day)")
    print(f"{'user':>5} {'records':>8} {'coverage':>9} {'nnz':>6} {'regularity':>10}  top categories / most visited place type")
    for u, f in feats.items():
        cat_tot = f.profile.C_u.sum(axis=1)
        top = [names[i] for i in np.argsort(-cat_tot, kind="stable")[:2] if cat_tot[i] > 0]
        place = dominant_place_type(f.layout, catalog)[int(np.argmax(f.layout.counts))]  # most visited cell
        rows.append({"user": u, "records": f.report.n_events, "coverage": f.report.coverage,
                     "nnz": f.tensor.nnz, "regularity": f.profile.regularity, "top_categories": top})
        print(f"{u:>5} {f.report.n_events:>8} {f.report.coverage:>9.3f} {f.tensor.nnz:>6} "
              f"{f.profile.regularity:>10.3f}  {', '.join(top)} / {place}")
    return {"data": "real", "users": rows}


# -----------------------------------------------------------------------------
# 2. synthetic users from the calibrated simulator
# -----------------------------------------------------------------------------

def synthetic_users(cfg: FeatureConfig, n_users: int, seed: int, out_dir: Path) -> dict[str, Any]:
    from umask.train import simulator
    from umask.train.user_windows import (cold_start_windows, completion_windows, long_term_windows,
                                          short_term_windows, user_splits)

    _section(f"2. Calibrated simulator (SYNTHETIC: {n_users} users x 7 days, seed {seed})")
    catalog = load_llmapp_catalog(TSINGHUA)
    sim_cfg = simulator.SimulatorConfig(n_users=n_users, seed=seed)
    t = time.perf_counter()
    paths = simulator.write_synthetic(out_dir, sim_cfg, catalog=catalog, with_validation=False)
    trace_path = paths["trace"]
    t_gen = time.perf_counter() - t
    events = read_official_trace(trace_path)  # the same loader as for the real trace
    catalog.check_events(events)
    print(f"wrote {_rel(trace_path)} ({trace_path.stat().st_size / 1e6:.1f} MB, "
          f"{len(events)} records) in {t_gen:.1f} s; read back with the official-format loader")

    start = int(events.ts.min()) // DAY * DAY
    fit_end = start + 5 * DAY  # layouts and profiles from the 5 training days only (no leakage)
    t = time.perf_counter()
    feats = featurize_population(events, catalog, cfg, fit_end_ts=fit_end)
    t_feat = time.perf_counter() - t
    cov_train, cov_test, nbytes = [], [], 0
    for f in feats.values():
        nbytes += f.tensor.nbytes
        cov_train.append(f.report.coverage)
    from umask.runtime.tessellation import coverage
    test_ev = events.between(start + 6 * DAY, start + 7 * DAY)
    for u, f in feats.items():
        ev = test_ev.for_user(u)
        if len(ev):
            cov_test.append(coverage(ev, f.layout, catalog))
    any_t = next(iter(feats.values())).tensor
    splits = user_splits(any_t.shape[1], cfg.slots_per_day)
    n_b1 = len(short_term_windows(any_t, "test"))
    n_b2 = len(long_term_windows(any_t, "test"))
    n_b3 = len(cold_start_windows(any_t, "test"))
    n_b4 = len(completion_windows(any_t, "test"))
    print(f"featurized {len(feats)} users in {t_feat:.1f} s: tensor {tuple(any_t.shape)} (C, T, H, W) each, "
          f"{nbytes / 1e6:.1f} MB sparse in all")
    print(f"layout coverage (fit on days 1-5): all days mean {np.mean(cov_train):.3f}; "
          f"held-out test day mean {np.mean(cov_test):.3f} (min {np.min(cov_test):.3f})")
    print("per-user split (days): " + ", ".join(f"{k} {v.t0 // cfg.slots_per_day + 1}-{v.t1 // cfg.slots_per_day}"
                                                 for k, v in splits.items()))
    print(f"PROTOCOL B test windows per user: B1 {n_b1}, B2 {n_b2}, B3 {n_b3}, B4 {n_b4}")

    real = read_trace(TSINGHUA / "app_usage_trace_sample_llmapp.csv.gz")
    table_rows = simulator.validate(events, real, catalog)
    print()
    print(simulator.format_validation(table_rows))
    return {"data": "synthetic", "trace": _rel(trace_path), "n_users": len(feats),
            "records": len(events), "generate_s": round(t_gen, 2), "featurize_s": round(t_feat, 2),
            "sparse_mb": round(nbytes / 1e6, 2), "coverage_fit_days_mean": float(np.mean(cov_train)),
            "coverage_test_day_mean": float(np.mean(cov_test)),
            "windows_per_user": {"B1": n_b1, "B2": n_b2, "B3": n_b3, "B4": n_b4},
            "validation": table_rows}


# -----------------------------------------------------------------------------
# 3. Milan and 4. Taobao
# -----------------------------------------------------------------------------

def milan() -> dict[str, Any]:
    from umask.bench import milan_eval
    from umask.train.milan import read_internet_matrix

    _section("3. Milan Telecom Italia 5x5 internet, 30 days (REAL): PROTOCOL A baselines")
    matrix = read_internet_matrix(DATA / "milan_telecom" / "milan_5x5_internet_10min_30d.csv.gz")
    rows = milan_eval.evaluate_a1(matrix) + milan_eval.evaluate_a2(matrix)
    print(milan_eval.markdown_table(rows))
    return {"data": "real", "rows": rows}


def taobao() -> dict[str, Any]:
    from umask.train.splits import leave_one_out
    from umask.train.taobao import BEHAVIORS, read_user_behavior

    _section("4. Taobao UserBehavior head (REAL): PROTOCOL C leave-one-out")
    inter = read_user_behavior(DATA / "taobao_user_behavior" / "UserBehavior_head.csv.gz")
    split = leave_one_out(inter.user, inter.timestamp)
    counts = inter.behavior_counts()
    test_beh = np.bincount(inter.behavior[split.test], minlength=len(BEHAVIORS))
    print(f"{len(inter.user)} interactions, {inter.n_users} users, {len(np.unique(inter.item))} items; "
          f"behaviors {counts}")
    print(f"leave-one-out: train {len(split.train)}, val {len(split.val)}, test {len(split.test)} "
          f"(test behaviors: {dict(zip(BEHAVIORS, test_beh.tolist()))})")
    return {"data": "real", "interactions": len(inter.user), "users": inter.n_users,
            "train": len(split.train), "val": len(split.val), "test": len(split.test)}


# -----------------------------------------------------------------------------
# entry point
# -----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="umask demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few-minute path (fewer synthetic users)")
    p.add_argument("--users", type=int, default=None, help="synthetic users (default 1000, --quick 100)")
    p.add_argument("--seed", type=int, default=0, help="simulator seed")
    p.add_argument("--out", type=Path, default=ROOT / "artifacts" / "demo", help="output folder")
    args = p.parse_args(argv)
    n_users = args.users or (100 if args.quick else 1000)
    if n_users < 1:
        p.error("--users must be >= 1")
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = FeatureConfig()
    t0 = time.perf_counter()
    summary: dict[str, Any] = {"feature_config": cfg.to_dict(), "quick": args.quick}
    summary["tsinghua_real"] = real_sample(cfg)
    summary["simulator"] = synthetic_users(cfg, n_users, args.seed, args.out / "sim")
    summary["milan"] = milan()
    summary["taobao"] = taobao()
    summary["elapsed_s"] = round(time.perf_counter() - t0, 1)
    out = args.out / "summary.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=1, default=float))
    tmp.replace(out)
    _section("done")
    print(f"summary written to {out} ({summary['elapsed_s']} s). Real: Tsinghua sample, Milan, Taobao. "
          f"Synthetic: the simulator's {n_users} users.")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    raise SystemExit(main())
