"""The user-facing command line for the families beside U-MASK, as a newcomer walks it (REAL Milan cells summed to
an hourly 3x4 grid, a tiny FatsMB run on the REAL Taobao sample): U-STS-LLM trained on a grid of hourly slots
(its window defaults mean days there, and the loss stays finite), scored and exported without repeating --data,
run on its own bundle; FatsMB exported through ``umask export``; a FatsMB bundle given to ``umask run`` gets a
named error, not a traceback. Tiny settings: it checks the plumbing, not the accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from umask.cli import main
from umask.runtime.core.errors import InputError
from umask.train.data.milan import read_internet_matrix

REPO = Path(__file__).resolve().parents[1]
MILAN = REPO / "data" / "milan_telecom" / "milan_5x5_internet_10min_30d.csv.gz"


@pytest.fixture(scope="module")
def hourly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    m = read_internet_matrix(MILAN)
    cols = [r * 5 + c for r in range(1, 4) for c in range(4)]
    path = tmp_path_factory.mktemp("grid") / "g34_hourly.csv"
    np.savetxt(path, m[:, cols].reshape(30, 24, 6, 12).sum(axis=2).reshape(720, 12), delimiter=",", fmt="%.6f")
    return path


def test_ustsllm_on_an_hourly_grid_end_to_end(hourly: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "ustsllm", "--data", str(hourly), "--grid", "3x4", "--slot-minutes", "60", "--steps", "3",
                 "--eval-every", "3", "--out", str(run)]) == 0
    cfg = json.loads((run / "config.json").read_text())
    net = cfg["model"]["net"]
    assert (net["history"], net["horizon"], net["window"], net["slots_per_day"]) == (48, 24, 48, 24)   # days, not slots
    losses = [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert losses and all(np.isfinite(losses))
    capsys.readouterr()
    # scored on the run's own grid without --data (it used to score Milan's 25 cells silently)
    assert main(["eval", "A1", "--family", "ustsllm", "--ckpt", str(run / "ckpt" / "latest"),
                 "--out", str(tmp_path / "a1.json")]) == 0
    rows = json.loads((tmp_path / "a1.json").read_text())
    rows = rows["rows"] if isinstance(rows, dict) else rows
    assert rows and all(r["dataset"].startswith("g34_hourly.csv 3x4, 60-min slots") for r in rows), rows[0]
    # exported through `umask export` without --data: the exporter reads the grid from the run's config
    bundle = tmp_path / "bundle"
    assert main(["export", "--family", "ustsllm", "--ckpt", str(run / "ckpt" / "latest"), "--out", str(bundle),
                 "--precisions", "fp32"]) == 0
    hist = tmp_path / "hist.csv"
    np.savetxt(hist, np.loadtxt(hourly, delimiter=",")[600:648], delimiter=",")
    capsys.readouterr()
    assert main(["run", "--bundle", str(bundle), "--values", str(hist), "--first-slot", "600", "--allow-unsigned"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["shape"] == [24, 12] and np.all(np.isfinite(out["values"]))


def test_fatsmb_exports_through_the_cli_and_run_names_what_serves_it(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "fatsmb"
    assert main(["train", "fatsmb", "--max-users", "60", "--stage1-steps", "2", "--stage2-steps", "2",
                 "--stage3-steps", "2", "--out", str(run)]) == 0
    bundle = tmp_path / "fb"
    assert main(["export", "--family", "fatsmb", "--ckpt", str(run), "--out", str(bundle)]) == 0   # its own precisions
    assert set(json.loads((bundle / "manifest.json").read_text())["artifacts"]) == {"fp32", "int8-qdq"}
    capsys.readouterr()
    assert main(["export", "--family", "fatsmb", "--ckpt", str(run), "--out", str(tmp_path / "fb2"),
                 "--data", "x.csv"]) == InputError.exit_code
    assert "--data does not apply to the fatsmb exporter" in capsys.readouterr().err
    assert main(["run", "--bundle", str(bundle), "--history", str(tmp_path / "h.csv"), "--behavior", "buy",
                 "--allow-unsigned"]) == InputError.exit_code          # the fatsmb request CLI names the missing file
    err = capsys.readouterr().err
    assert "h.csv: no such file" in err and "Traceback" not in err


def test_a_diverging_step_stops_before_the_weights_turn_nan() -> None:
    from umask.train.common import loop

    class Fam:
        def loss(self, net, batch, gen):
            w = net.weight.sum()
            return w * float("nan"), {}

        def after_step(self, model, batch):
            pass

    net = torch.nn.Linear(2, 1)
    before = net.weight.detach().clone()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    ema = torch.nn.Linear(2, 1)
    with pytest.raises(InputError, match="not finite"):
        loop.optimizer_step(Fam(), net, net, {}, opt, ema, loop.LoopConfig(steps=1), step=0)
    assert torch.equal(net.weight, before)


def test_every_run_help_lists_the_exit_codes_its_errors_carry(capsys: pytest.CaptureFixture[str]) -> None:
    """The exit-status lines of the run commands' help are built from the error classes (one list of codes)."""
    from umask.runtime.core import errors as E

    text = E.exit_status_help(E.InputError, E.DataFormatError, *E.BUNDLE_ERRORS, width=1000)
    assert text == ("exit status: 0 ok; 2 bad command line; 3 bad argument; 4 bad history file; 6 bundle refused; "
                    "7 manifest schema; 8 signature.")
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert f"{E.LimitError.exit_code} limit;" in out and f"{E.SignatureError.exit_code} signature." in out
