"""The v2 scorer's paired comparison and summary table (benchmarks/accuracy/user_umask_v2.py), on
constructed per-window errors (no model: the statistics themselves)."""

from __future__ import annotations

import numpy as np

from umask.bench.accuracy.user_umask_v2 import GROUPS, Recorder, paired, table


def _recorder(shift: float) -> Recorder:
    """Model errors = the good baseline's times (1 + shift); a bad baseline twice as large."""
    rng = np.random.default_rng(0)
    rec = Recorder()
    for w in range(200):
        key = (0, w // 10, w % 10)
        n = 40.0
        sse = float(rng.gamma(2.0, 0.5)) * n
        for name, f in (("good", 1.0), ("bad", 2.0), ("model", 1.0 + shift)):
            rec.errors[("B1", name)][key] = {g: (sse * f, np.sqrt(sse * f), n) for g in GROUPS}
    return rec


def test_paired_picks_the_best_baseline_and_brackets_the_gap() -> None:
    for shift, sign in ((-0.2, -1), (0.2, 1)):
        res = paired(_recorder(shift), "B1", "model", ["bad", "good"])
        for g in GROUPS:
            r = res[g]
            assert r["best_baseline"] == "good" and r["n_windows"] == 200
            want = np.sqrt(1 + shift) - 1                       # RMSE ratio of a constant per-window SSE factor
            assert abs(r["diff_rel"] - want) < 1e-3
            lo, hi = r["diff_ci95"]
            assert lo <= r["diff"] <= hi and np.sign(lo) == np.sign(hi) == sign
            assert (r["windows_model_better"] == 200) == (sign < 0)


def test_paired_ignores_a_baseline_on_other_windows() -> None:
    rec = _recorder(-0.1)
    rec.errors[("B1", "partial")] = {k: v for i, (k, v) in enumerate(rec.errors[("B1", "good")].items()) if i < 10}
    assert paired(rec, "B1", "model", ["partial", "good"])["traffic"]["best_baseline"] == "good"
    assert paired(rec, "B2", "model", ["good"]) == {}


def test_table_compares_with_the_best_baseline_of_the_run() -> None:
    doc = {"meta": {"baselines": {"rows": [
        {"protocol": "B1", "model": "a", "metric": "rmse_all/app", "value": 0.02, "spread": 0.001},
        {"protocol": "B1", "model": "b", "metric": "rmse_all/app", "value": 0.03, "spread": 0.001},
        {"protocol": "B1", "model": "b", "metric": "app_recall@3", "value": 0.6, "spread": None}]}},
        "rows": [{"model": "m", "data": "synthetic", "protocol": "B1", "metric": "rmse_all/app", "value": 0.019,
                  "spread": 0.002},
                 {"model": "m", "data": "synthetic", "protocol": "B1", "metric": "app_recall@3", "value": 0.66,
                  "spread": None}]}
    out = table(doc, "m").splitlines()
    assert "| B1 | rmse_all/app | 0.0190 ± 0.0020 | a 0.0200 ± 0.0010 | -5.0% |" in out
    assert "| B1 | app_recall@3 | 0.6600 | b 0.6000 | +10.0% |" in out
