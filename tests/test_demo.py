"""Smoke test of the main job's --quick path and of the CLI entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from umask.bench.demo import main


def test_demo_quick_writes_summary(tmp_path: Path, capsys) -> None:
    assert main(["--quick", "--users", "12", "--out", str(tmp_path), "--llm-dir", str(tmp_path / "no-llm")]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    out = capsys.readouterr().out
    # every part ran and labels its data
    assert summary["tsinghua_real"]["data"] == "real"
    assert [u["user"] for u in summary["tsinghua_real"]["users"]] == [4, 5, 6, 7, 8, 9]
    assert all(u["coverage"] >= 0.9 for u in summary["tsinghua_real"]["users"])
    sim = summary["simulator"]
    assert sim["data"] == "synthetic" and sim["n_users"] == 12 and "synthetic" in sim["trace"]
    assert (tmp_path / "sim" / "App_usage_trace.synthetic.txt.gz").exists()
    assert sim["windows_per_user"]["B2"] == 1 and sim["windows_per_user"]["B1"] == 24
    assert summary["milan"]["data"] == "real"
    a2 = {r["model"] for r in summary["milan"]["rows"] if r["task"].startswith("A2")}
    assert a2 == {"last_value", "seasonal_naive", "linear_interpolation", "historical_average", "all_zero",
                  "lowrank_interpolation", "profile_lowrank_interpolation"}
    a1 = [r["model"] for r in summary["milan"]["rows"] if r["task"].startswith("A1")]
    assert sorted(a1) == sorted({"last_value", "seasonal_naive", "historical_average", "all_zero", "profile_level",
                                 "profile_median_level"}) and len(summary["milan"]["rows"]) == len(a2) + len(a1)
    assert summary["taobao"]["test"] == summary["taobao"]["users"] == 814
    assert "SYNTHETIC" in out and "REAL" in out
    # train -> export -> runtime Session serving the real users -> latency / accuracy summary
    assert summary["train"]["data"] == "synthetic"
    assert (tmp_path / "bundle" / "manifest.json").exists()
    served = summary["serve"]
    assert served["data"] == "real" and [u["user"] for u in served["users"]] == [4, 5, 6, 7, 8, 9]
    ok = [u for u in served["users"] if "next_hour" in u]
    assert len(ok) >= 4
    for u in ok:
        assert u["profile_source"] in ("template", "llm") and u["profile"]
        assert 0 < u["k"] <= u["n_avail"]
        assert u["next_hour"]["apps"] and all(v >= 0 for v in u["next_hour"]["traffic_bytes"])
    rows = {r["precision"]: r for r in summary["latency_accuracy"]["rows"]}
    assert set(rows) == {"fp32", "int8-qdq"}
    for r in rows.values():
        assert r["requests"] >= 10 and r["p50_ms"] > 0 and 0 <= r["mae"] < 1 and r["last_value_mae"] >= 0
    # step 9: the shipped grid checkpoint exported, opened by its signed-bundle session, scored on REAL Milan windows
    grid = summary["grid"]
    assert grid["data"] == "real" and (tmp_path / "grid_bundle" / "manifest.json").exists()
    by_task = {r["task"]: r for r in grid["rows"]}
    assert set(by_task) == {"A1", "A2"} and by_task["A1"]["windows"] > 30 and by_task["A2"]["windows"] > 15
    assert 0.25 < by_task["A1"]["nmae"] < 0.45 and 0.18 < by_task["A2"]["nmae"] < 0.30   # the trained model, not noise


def test_cli_help_lists_commands() -> None:
    res = subprocess.run([sys.executable, "-m", "umask.cli", "--help"], capture_output=True, text=True, check=True)
    assert "demo" in res.stdout and "simulate" in res.stdout
    bad = subprocess.run([sys.executable, "-m", "umask.cli", "nonsense"], capture_output=True, text=True)
    assert bad.returncode != 0 and "invalid choice" in bad.stderr
