"""`umask train umask --data <trace>` on Tsinghua-format traces (official layout and the LLMApp CSV).

The per-user trainer needs >= 3 whole days (train / val / test by day), so the end-to-end run uses a
SYNTHETIC week written by the simulator in the official ``App_usage_trace.txt`` layout, the layout a
user with the full trace brings; the REAL LLMApp sample (one day) must route to the per-user trainer
too and be refused there with one line, not be mistaken for a grid CSV.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from umask.cli import main

REPO = Path(__file__).resolve().parents[1]
LLMAPP = REPO / "data" / "tsinghua_app_usage" / "app_usage_trace_sample_llmapp.csv.gz"


@pytest.fixture(scope="module")
def official_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    assert main(["simulate", "generate", "--users", "3", "--seed", "3", "--out", str(out), "--no-validation",
                 "--no-progress"]) == 0
    trace = out / "App_usage_trace.synthetic.txt.gz"
    assert trace.is_file()
    return trace


def test_official_trace_trains_the_per_user_model(official_trace: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "umask", "--data", str(official_trace), "--config", "tiny", "--steps", "2",
                 "--out", str(run)]) == 0
    cfg = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else None
    ckpts = sorted((run / "ckpt").glob("step_*"))
    assert ckpts, "no checkpoint written"
    meta = cfg or json.loads((ckpts[-1] / "config.json").read_text())
    assert str(official_trace) in json.dumps(meta)          # the run records the user's own data


def test_llmapp_sample_routes_to_the_per_user_trainer(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # one day of REAL data: the per-user trainer refuses it in one line (it used to be read as a grid CSV)
    rc = main(["train", "umask", "--data", str(LLMAPP), "--config", "tiny", "--steps", "1", "--out",
               str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc != 0
    assert "square" not in err and "grid" not in err.lower(), err
    assert "days" in err


def test_too_few_days_for_the_window_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # the REAL day repeated over 4 days: enough for train / val / test, not for the small config's 3-day windows,
    # which must lie inside the training days (all but the last two)
    import datetime as dt
    import gzip

    head, *rows = gzip.open(LLMAPP, "rt").read().splitlines()
    ti = head.split(",").index("time")
    out = [head]
    for d in range(4):
        for r in rows:
            f = r.split(",")
            f[ti] = (dt.datetime.strptime(f[ti], "%Y%m%d%H%M%S") + dt.timedelta(days=d)).strftime("%Y%m%d%H%M%S")
            out.append(",".join(f))
    log = tmp_path / "four_days.csv"
    log.write_text("\n".join(out) + "\n")
    rc = main(["train", "umask", "--data", str(log), "--config", "small", "--steps", "1", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 3, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    # one line: refused before the SBERT encoder loads (its progress bar would print on a fresh clone)
    assert len(lines) == 1 and "no training window" in lines[0] and "at least 5 days" in lines[0], err
