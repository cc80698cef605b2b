"""Steps sweep (benchmarks/steps_sweep.py): the fewest-steps rule, the B error, the report and the plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from umask.bench.plots import latency as plots_latency
from umask.bench.latency import steps_sweep as sw


def test_fewest_steps_within_tolerance() -> None:
    errs = {50: 1.00, 20: 1.03, 10: 1.049, 4: 1.20}
    f = sw.fewest_steps(errs, 0.05)
    assert f["fewest_steps"] == 10 and f["reference_steps"] == 50 and f["bound"] == pytest.approx(1.05)
    assert sw.fewest_steps({50: 1.0, 20: 1.06, 10: 0.9}, 0.05)["fewest_steps"] == 10   # non-monotone: smallest ok
    assert sw.fewest_steps({50: 1.0, 20: 1.2}, 0.05)["fewest_steps"] == 50
    assert sw.fewest_steps({50: 1.0, 4: 1.2}, 0.25)["fewest_steps"] == 4
    with pytest.raises(ValueError):
        sw.fewest_steps({})


def test_b_error_is_the_mean_active_mae_of_the_groups() -> None:
    row = {"metrics": {"traffic": {"active_mae": 0.3}, "app": {"active_mae": 0.6}, "location": {"active_mae": 0.9}}}
    assert sw.b_error(row) == pytest.approx(0.6)


def _result() -> dict:
    rows = []
    for s in ("ddim", "dpmpp_2m"):
        for n, e in ((50, 0.50), (20, 0.51), (10, 0.52), (4, 0.60)):
            for task in ("B1", "A1"):
                rows.append({"sampler": s, "steps": n, "task": task, "error": e + (0.01 if s == "ddim" else 0.0),
                             "mae": e / 10, "error_metric": "normalized MAE" if task == "A1" else "act. MAE",
                             "latency_ms": {"p50": 20.0 * n}})
    fewest = [{"sampler": s, "task": t, **sw.fewest_steps({r["steps"]: r["error"] for r in rows
                                                             if r["sampler"] == s and r["task"] == t}),
               "latency_p50_ms_at_fewest": 200.0, "latency_p50_ms_at_reference": 1000.0}
              for s in ("ddim", "dpmpp_2m") for t in ("B1", "A1")]
    meta = {"machine": {"cpu": "test cpu", "logical_cores": 2}, "load_before": [0.5, 0, 0], "load_after": [0.5, 0, 0],
            "git_commit": "abc", "date": "d", "command": "c", "users": "first 30", "same_population_as_training": True,
            "checkpoint": "ck", "milan_checkpoint": "mk", "latency_engine": "torch", "request": "r", "notes": [],
            "config": {"b1_hours": [2, 8], "a1_stride": 12, "samples": 1, "seed": 0, "tolerance": 0.05,
                       "steps": [50, 20, 10, 4]}}
    return {"meta": meta, "rows": rows, "fewest_steps": fewest}


def test_report_and_plots(tmp_path: Path) -> None:
    res = _result()
    assert all(f["fewest_steps"] == 10 for f in res["fewest_steps"])
    md = sw.markdown(res)
    assert "| ddim | B1 | 10 |" in md and "error at 50" in md
    paths = sw.write(res, tmp_path / "steps_sweep.json")
    assert json.loads(paths[0].read_text())["rows"][0]["sampler"] == "ddim"
    p = plots_latency.plot_steps(res, tmp_path)
    assert p.stat().st_size > 5000
