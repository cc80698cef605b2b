"""The validation-vs-test report of the grid models (benchmarks/accuracy/grid_val_vs_test.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from umask.bench.accuracy import grid_val_vs_test as gvt

ROOT = Path(__file__).resolve().parents[1]


def test_agreement_counts_orders_and_ranks() -> None:
    a = np.array([0.30, 0.32, 0.35, 0.40])
    assert gvt.agreement(a, a + 1.0) == {"spearman": 1.0, "pairs_same_order": 1.0, "pairs": 6}
    assert gvt.agreement(a, -a) == {"spearman": -1.0, "pairs_same_order": 0.0, "pairs": 6}
    # one swapped pair of four: 5 of 6 pairs agree; a tie on one side drops its pair
    assert gvt.agreement(a, np.array([0.30, 0.35, 0.32, 0.40]))["pairs_same_order"] == round(5 / 6, 3)
    tie = gvt.agreement(a, np.array([0.30, 0.30, 0.35, 0.40]))
    assert tie["pairs"] == 5 and tie["pairs_same_order"] == 1.0


def test_the_committed_report_regenerates_from_the_committed_gated_files(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert gvt.main(["--results", str(ROOT / "benchmarks/results"), "--out", str(out)]) == 0
    new, old = json.loads(out.read_text()), json.loads((ROOT / gvt.OUT).read_text())
    assert new["tasks"] == old["tasks"]
    pts = new["tasks"]["A1"]["points"]
    assert len({(p["val_nmae"], p["test_nmae"]) for p in pts}) == len(pts) > 20      # one point per predictor
