"""`umask eval B1 --ckpt RUN` on a run trained with `umask train umask --data <Tsinghua trace>`.

The evaluation population is the user's own trace (the one recorded in the run's config, or
--data), featurized as the trainer featurized it (the fingerprint must match), not the simulator's
200 users. The trace is a SYNTHETIC week the simulator writes in the official App_usage_trace.txt
layout (3 users): the per-user protocol needs >= 3 whole days, the shipped REAL sample has one.
Models: the tiny config trained for 2 steps with PROTOCOL B's window (192 + 96 slots), which
scores B1 as the protocol says, and the stock tiny window (12 + 4), which is refused in one line
unless the explicit --context-slots override asks for a NON-protocol smoke test. One torch thread.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from umask.cli import main

torch.set_num_threads(1)
PROTOCOL_WINDOW = 'window={"context": 192, "horizon": 96, "short_horizon": 4, "cold_max_active": 20}'
BASELINES = {"all_zero", "last_value", "historical_average", "seasonal_naive"}


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    assert main(["simulate", "generate", "--users", "3", "--seed", "3", "--out", str(out), "--no-validation",
                 "--no-progress"]) == 0
    return out / "App_usage_trace.synthetic.txt.gz"


def _train(trace: Path, out: Path, *extra: str) -> Path:
    assert main(["train", "umask", "--data", str(trace), "--config", "tiny", "--steps", "2", "--num-threads", "1",
                 "--no-progress", *extra, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def protocol_run(trace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(trace, tmp_path_factory.mktemp("run") / "protocol", "--set", PROTOCOL_WINDOW)


@pytest.fixture(scope="module")
def tiny_run(trace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(trace, tmp_path_factory.mktemp("run") / "tiny")


def _trace_users(trace: Path) -> list[int]:
    with gzip.open(trace, "rt") as fh:
        return sorted({int(line.split()[0]) for line in fh if line.strip()})


def _rows(out: Path) -> list[dict]:
    return json.loads(out.read_text())["rows"]


def test_b1_scores_the_users_own_trace(trace: Path, protocol_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "b1.json"
    assert main(["eval", "B1", "--ckpt", str(protocol_run), "--steps", "1", "--samples", "1", "--out", str(out)]) == 0
    rows = _rows(out)
    models = {r["model"] for r in rows}
    assert "umask" in models and BASELINES <= models
    users = _trace_users(trace)
    assert len(users) == 3
    for r in rows:                                     # every row: the trace's users, not the simulator's 200
        assert r["task_id"] == "B1" and r["dataset"].startswith("user data: App_usage_trace.synthetic.txt.gz")
        assert "simulator" not in r and r["data"]["trace"] == str(trace)
        assert r["data"]["users"] == users and r["n_users"] == 3
        assert r["n_windows"] == 3 * 24                   # the last day is the test day: 24 target hours
        assert r["window"]["context"] == 192 and "non-protocol" not in r["dataset"]
    (um,) = [r for r in rows if r["model"] == "umask"]
    assert "same users as training: True" in um["notes"]   # featurized exactly as in training (fingerprint)
    assert um["training"]["data"]["source"] == f"trace {trace}"
    assert "user data" in out.with_suffix(".md").read_text()


def test_explicit_data_is_the_same_population(trace: Path, protocol_run: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    common = ["eval", "B4", "--ckpt", str(protocol_run), "--steps", "1", "--samples", "1"]
    assert main([*common, "--out", str(a)]) == 0
    assert main([*common, "--data", str(trace), "--out", str(b)]) == 0
    ra, rb = _rows(a), _rows(b)
    assert [(r["model"], r["metrics"]) for r in ra] == [(r["model"], r["metrics"]) for r in rb]
    assert {r["n_windows"] for r in ra} == {3}           # one completion window per user


def test_short_window_is_refused_in_one_line(tiny_run: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["eval", "B1", "--ckpt", str(tiny_run), "--out", str(tmp_path / "x.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1, err
    assert "config 'tiny'" in err[0] and "12 context + 4 horizon" in err[0] and "192 context slots" in err[0]
    assert "--config small" in err[0] and "--context-slots 12" in err[0]
    assert not (tmp_path / "x.json").exists()
    # B2 predicts 96 slots: longer than the horizon, no override helps
    rc = main(["eval", "B2", "--ckpt", str(tiny_run), "--context-slots", "12", "--out", str(tmp_path / "y.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "no --context-slots override helps" in err[0], err


def test_context_override_is_recorded_in_every_row(trace: Path, tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    assert main(["eval", "B1", "--ckpt", str(tiny_run), "--context-slots", "12", "--steps", "1", "--samples", "1",
                 "--out", str(out)]) == 0
    rows = _rows(out)
    assert "umask" in {r["model"] for r in rows} and BASELINES <= {r["model"] for r in rows}
    for r in rows:
        assert "non-protocol context 12" in r["dataset"] and r["context_override"]["context_slots"] == 12
        assert r["data"]["users"] == _trace_users(trace)
    (um,) = [r for r in rows if r["model"] == "umask"]
    assert um["context_slots"] == 12 and um["n_windows"] == 3 * 24
    assert "NON-PROTOCOL" in out.with_suffix(".md").read_text()


def test_grid_csv_data_is_refused_in_one_line(protocol_run: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    grid = tmp_path / "grid.csv"
    grid.write_text("time,c0,c1,c2\n" + "".join(f"{t},{t % 3},{t % 5},{t % 7}\n" for t in range(48)))
    rc = main(["eval", "B1", "--ckpt", str(protocol_run), "--data", str(grid), "--out", str(tmp_path / "g.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1, err
    assert f"--data {grid}: a grid CSV" in err[0] and "umask eval A1" in err[0]
    assert not (tmp_path / "g.json").exists()
