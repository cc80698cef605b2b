"""Smoke test of the main job's --quick path and of the CLI entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from umask.bench.demo import main


def test_demo_quick_writes_summary(tmp_path: Path, capsys) -> None:
    assert main(["--quick", "--users", "12", "--out", str(tmp_path)]) == 0
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
    assert summary["milan"]["data"] == "real" and len(summary["milan"]["rows"]) == 9
    assert summary["taobao"]["test"] == summary["taobao"]["users"] == 814
    assert "SYNTHETIC" in out and "REAL" in out


def test_cli_help_lists_commands() -> None:
    res = subprocess.run([sys.executable, "-m", "umask.cli", "--help"], capture_output=True, text=True, check=True)
    assert "demo" in res.stdout and "simulate" in res.stdout
    bad = subprocess.run([sys.executable, "-m", "umask.cli", "nonsense"], capture_output=True, text=True)
    assert bad.returncode != 0 and "invalid choice" in bad.stderr
