"""Do Milan's 3 validation days rank grid models the way the 3 test days do? (issues 10 / 12, PROTOCOL A)

Every per-cell gate, early stop and default of the grid families is chosen on the validation windows (days
25-27, Monday-Wednesday) and scored once on the test windows (days 28-30, Thursday-Saturday). The gated result
files (``benchmarks/accuracy/grid_residual_gate.py``) record, for each training seed, the validation and the test
nMAE of three predictors: the network, its simple base (the grid prior or the low-rank row) and the per-cell gate
between them. This report pools those predictors over the committed files, one point per distinct predictor
(identical validation and test figures mean the same predictions: a base or a network that several files score
counts once), and measures how well the validation nMAE orders them on test:
Spearman's rank correlation and the share of pairs the two splits order the same way.

    python -m umask.bench.accuracy.grid_val_vs_test [--out benchmarks/results/grid_val_vs_test.json]

Nothing is trained or re-scored: the figures are the files' own.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from umask.train.common.checkpoints import atomic_text

log = logging.getLogger(__name__)

RESULTS = Path("benchmarks/results")
OUT = RESULTS / "grid_val_vs_test.json"
# the gated result files (grid_residual_gate); each holds the tasks it scored
FILES: tuple[str, ...] = (
    "v2_grid_umask_gated.json", "v2_grid_umask_gated_lowrank.json", "v2_grid_umask_lowrank_gated.json",
    "v2_grid_umask_recent_gated.json", "v2_grid_umask_recent_gated_lowrank.json", "v2_ustsllm_gated.json",
    "v2_ustsllm_gated_lowrank.json", "v2_ustsllm_lowrank_gated.json")
TASKS: tuple[str, ...] = ("A1", "A2")
PREDICTORS = ("gated", "model", "prior")


def points(task: str, results: Path = RESULTS) -> list[dict[str, Any]]:
    """One {name, val, test} per distinct predictor of ``task`` in the gated files, deduplicated by the pair of
    figures (the first file, seed and kind that scored it names it)."""
    out: dict[tuple[float, float], dict[str, Any]] = {}
    for name in FILES:
        tasks = json.loads((results / name).read_text())["meta"]["tasks"]
        for seed, rec in sorted(tasks.get(task, {}).get("per_seed", {}).items()):
            for kind in PREDICTORS:
                val, test = round(float(rec["val_nmae"][kind]), 5), round(float(rec["test"][kind]["nmae"]), 5)
                label = f"{name[3:-5]} seed {seed} {'base' if kind == 'prior' else kind}"
                out.setdefault((val, test), {"name": label, "val_nmae": val, "test_nmae": test})
    return list(out.values())


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), 0-based."""
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(len(x), dtype=np.float64)
    for v in np.unique(x):
        tie = x == v
        r[tie] = r[tie].mean()
    return r


def agreement(val: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """Spearman's rho of the two columns and the share of pairs (ties on either side left out) they order alike."""
    rv, rt = _ranks(np.asarray(val, np.float64)), _ranks(np.asarray(test, np.float64))
    rho = float(np.corrcoef(rv, rt)[0, 1])
    dv, dt = np.sign(val[:, None] - val[None, :]), np.sign(test[:, None] - test[None, :])
    upper = np.triu(np.ones_like(dv, bool), 1) & (dv != 0) & (dt != 0)
    return {"spearman": round(rho, 3), "pairs_same_order": round(float((dv == dt)[upper].mean()), 3),
            "pairs": int(upper.sum())}


def report(results: Path = RESULTS) -> dict[str, Any]:
    doc: dict[str, Any] = {"meta": {"command": "python -m umask.bench.accuracy.grid_val_vs_test",
                                    "data": "REAL Milan 5x5, PROTOCOL A: validation windows (days 25-27) and test windows "
                                            "(days 28-30) as recorded in the gated result files",
                                    "files": list(FILES)}, "tasks": {}}
    for task in TASKS:
        pts = points(task, results)
        val = np.array([p["val_nmae"] for p in pts])
        test = np.array([p["test_nmae"] for p in pts])
        agree = agreement(val, test)
        doc["tasks"][task] = {"n_predictors": len(pts), **agree, "best_on_validation": pts[int(val.argmin())],
                              "best_on_test": pts[int(test.argmin())], "points": pts}
        log.info("%s: %d predictors, %s", task, len(pts), agree)
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", type=Path, default=RESULTS, help="folder of the gated result files")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    atomic_text(args.out, json.dumps(report(args.results), indent=1) + "\n")
    log.info("-> %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
