"""Tests of the ``umask`` command line (umask/cli.py): help a new user can follow, one-line errors
with a non-zero exit status, and train -> eval end to end on a 3x4 grid cut from the REAL Milan
matrix (tiny model, a few steps: it checks the plumbing, not the accuracy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from umask.cli import main
from umask.train.data.milan import read_internet_matrix

REPO = Path(__file__).resolve().parents[1]
MILAN = REPO / "data" / "milan_telecom" / "milan_5x5_internet_10min_30d.csv.gz"
LLMAPP = REPO / "data" / "tsinghua_app_usage" / "app_usage_trace_sample_llmapp.csv.gz"


@pytest.fixture(scope="module")
def grid34(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Rows 1-3, columns 0-3 of the Milan 5x5 block, summed to hourly slots: (720, 12), 30 days."""
    m = read_internet_matrix(MILAN)
    cols = [r * 5 + c for r in range(1, 4) for c in range(4)]
    hourly = m[:, cols].reshape(30, 24, 6, 12).sum(axis=2).reshape(720, 12)
    path = tmp_path_factory.mktemp("grid") / "g34.csv"
    np.savetxt(path, hourly, delimiter=",", fmt="%.6f")
    return path


def test_top_level_help_lists_train_and_eval(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("train:", "eval:", "export:", "run:", "bench:", "demo:", "simulate:", "uscope:"):
        assert cmd in out


def test_version_names_the_installed_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    import tomllib
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    want = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert capsys.readouterr().out.strip() == f"umask-edge {want}"


def test_the_command_has_names_no_shell_shadows() -> None:
    # bash runs its `umask` builtin before anything on PATH: the same CLI ships as `umask-edge` and `python -m umask`
    import tomllib
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["umask-edge"] == scripts["umask"] == "umask.cli:main"
    res = subprocess.run([sys.executable, "-m", "umask", "train", "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and "umask train" in res.stdout, res.stderr[-2000:]


def test_train_umask_help_shows_routing_example_and_trainer_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "umask", "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "umask train umask --data" in out and "--grid HxW" in out
    assert "flags of the per-user trainer" in out and "--steps" in out  # the trainer's own flags follow
    assert main(["train", "umask", "--grid", "3x4", "--help"]) == 0
    assert "flags of the grid trainer" in capsys.readouterr().out


def test_eval_a1_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["eval", "A1", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "A1 (forecasting" in out and "examples:" in out and "umask eval A1 --ckpt" in out


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["eval", "A1", "--data", "{bad}", "--grid", "1x3"], "bad.csv:3: ragged row: expected 3 fields", 4),
        (["train", "umask", "--data", "{bad}", "--grid", "1x3"], "bad.csv:3: ragged row: expected 3 fields", 4),
        (["eval", "A1", "--data", "{good}", "--grid", "2x2"], "--grid 2x2 means 4 cells", 3),
        (["eval", "A2", "--data", "{good}", "--grid", "1x3", "--slot-minutes", "7"], "--slot-minutes 7", 3),
        (["eval", "B2"], "B2 needs --ckpt", 3),
        (["eval", "A1", "--bundle", "x"], "--bundle x: no bundle there", 3),
        (["train", "umask", "--data", "{missing}"], "no such file", 3),
    ],
)
def test_bad_input_gives_one_line_and_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str, code: int
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n4,5,6\n7,8\n")
    good = tmp_path / "good.csv"
    good.write_text("1,2,3\n4,5,6\n")
    args = [a.format(bad=bad, good=good, missing=tmp_path / "missing.csv") for a in args]
    rc = main(args)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == code, err
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err


def test_app_only_log_lists_what_it_cannot_predict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from umask.runtime.core.events import format_compact_time, read_llmapp_sample

    ev = read_llmapp_sample(LLMAPP)
    path = tmp_path / "apps.csv"
    stamps = format_compact_time(ev.ts)
    path.write_text("time,app\n" + "".join(f"{int(t)},{int(a)}\n" for t, a in zip(stamps, ev.app)))
    rc = main(["train", "umask", "--data", str(path), "--steps", "1"])
    err = capsys.readouterr().err
    assert rc != 0 and "Traceback" not in err
    assert "it cannot predict" in err and "location:" in err and "traffic:" in err
    assert err.strip().splitlines()[-1].startswith("umask train: error: --data")


def test_main_as_a_process_exits_non_zero_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "neg.csv"
    bad.write_text("1,2,3,4\n1,-2,3,4\n")
    proc = subprocess.run([sys.executable, "-m", "umask.cli", "eval", "A1", "--data", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [f"umask eval: error: {bad}:2: column 2: negative value -2"]


def test_train_then_eval_a1_on_a_3x4_grid(tmp_path: Path, grid34: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    rc = main(["train", "umask", "--data", str(grid34), "--grid", "3x4", "--slot-minutes", "60",
               "--steps", "3", "--batch-size", "4", "--d-model", "32", "--depth", "1", "--n-heads", "2",
               "--d-hidden", "8", "--eval-every", "3", "--eval-batches", "1", "--out", str(run)])
    assert rc == 0, capsys.readouterr().err
    assert (run / "ckpt" / "best").exists() or (run / "ckpt" / "latest").exists()
    config = json.loads((run / "config.json").read_text())
    assert "3x4" in json.dumps(config)  # the run records the grid it was trained on
    out = tmp_path / "a1.json"
    rc = main(["eval", "A1", "--ckpt", str(run), "--data", str(grid34), "--grid", "3x4", "--slot-minutes", "60",
               "--steps", "2", "--samples", "1", "--stride", "8", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    rows = {r["model"]: r for r in json.loads(out.read_text())}
    assert set(rows) >= {"umask", "seasonal_naive@subset", "historical_average@subset"}
    u = rows["umask"]
    # 30 hourly days -> test days 28-30; A1 horizons 24 slots, every 8th of the 49 test windows
    assert u["window"]["history"] == 48 and u["window"]["horizon"] == 24 and u["n_windows"] == 7
    assert u["n_entries"] == 7 * 24 * 12 and np.isfinite(u["metrics"]["raw_mae"])
    assert u["n_entries"] == rows["seasonal_naive@subset"]["n_entries"]
    # the same run on the wrong grid shape is refused in one line
    rc = main(["eval", "A1", "--ckpt", str(run), "--data", str(grid34), "--grid", "4x3", "--slot-minutes", "60",
               "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 3 and "trained on a 3x4 grid" in err[-1]
