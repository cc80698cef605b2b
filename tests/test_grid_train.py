"""The grid trainer on a grid that is not Milan's: a 3x4 block cut from the real Milan matrix, summed
to 30-minute slots and written as a CSV (header + time column), trained a few steps and resumed.

Tiny model (DiT d=32, depth 1; mask generator d=8), one torch thread, a few seconds per run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from umask.runtime.core.errors import InputError
from umask.train.common.checkpoints import best_checkpoint, is_complete
from umask.train.data import splits
from umask.train.data.grids import load_grid_csv, milan_grid
from umask.train.models.umask.grid import (IMPUTE, LONG, MILAN, GridGeometry, GridTrainConfig, GridWindowDataset,
                                           grid_scaler, load_grid, load_model, resolve_patch, split_rows, train)

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
TINY = {"d_model": 32, "depth": 1, "n_heads": 2, "d_hidden": 8}


def _milan_block_30min() -> np.ndarray:
    """Rows 1-3, columns 0-3 of the Milan 5x5 block, 10-minute slots summed in threes: (1440, 12)."""
    v = milan_grid().values.reshape(-1, 5, 5)[:, 1:4, 0:4].reshape(-1, 12)
    return v.reshape(-1, 3, 12).sum(1)


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("grid34") / "milan_3x4_30min.csv"
    v = _milan_block_30min()
    lines = ["time," + ",".join(f"c{i}" for i in range(12))]
    lines += [f"{t}," + ",".join(f"{x:.4f}" for x in row) for t, row in enumerate(v)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _cfg(csv: Path, out: Path, **kw) -> GridTrainConfig:
    base = {**TINY, "data": str(csv), "grid": "3x4", "slot_minutes": 30, "out": str(out), "batch_size": 4,
            "lr": 3e-3, "warmup": 2, "log_every": 1, "eval_every": 3, "eval_batches": 1, "ckpt_every": 3,
            "seed": 0, "steps": 6, "train_stride": 7, "val_stride": 4, "progress": False}
    base.update(kw)
    return GridTrainConfig(**base)


def test_geometry_windows_and_frames_follow_the_grid(csv: Path) -> None:
    grid = load_grid_csv(csv, grid="3x4", slot_minutes=30)
    geom = GridGeometry.of(grid)
    assert (geom.height, geom.width, geom.slots_per_day) == (3, 4, 48)
    assert (geom.history, geom.horizon, geom.window, geom.frame) == (96, 48, 96, 192)
    periods = grid.splits()
    assert periods["train"] == (0, 24 * 48) and periods["val"] == (24 * 48, 27 * 48)
    z, e_pos, scaler = load_grid(grid)
    assert z.shape == (1440, 12) and e_pos.shape == (3, 4, 4)
    np.testing.assert_allclose(z[:1152].mean(0), 0.0, atol=1e-9)            # training-period scaler
    rows = split_rows("train", geom=geom, periods=periods)
    end = np.where(rows[:, 0] == LONG, rows[:, 1] + geom.horizon, rows[:, 1] + geom.window)
    assert end.max() == periods["train"][1] and rows[rows[:, 0] == LONG, 1].min() == geom.history
    ds = GridWindowDataset(z, e_pos, rows, geom=geom)
    i = int(np.flatnonzero(rows[:, 0] == LONG)[10])
    s = int(rows[i, 1])
    item = ds.item(i)
    o = (s - geom.history) % 48                                             # day-aligned in 30-minute slots
    assert item["x0"].shape == (1, 192, 3, 4)
    assert item["avail"][0, o:o + 96].all() and item["avail"].sum() == 96 * 12
    np.testing.assert_allclose(item["x0"][0, o:o + 96].reshape(96, 12).numpy(), z[s - 96:s], rtol=1e-6)
    j = int(np.flatnonzero(rows[:, 0] == IMPUTE)[3])
    imp = ds.item(j)
    assert ((imp["avail"] + imp["target"]).sum() == 96 * 12) and 0.6 < float(imp["target"].sum()) / (96 * 12) < 0.9
    # the patch adapts to H x W, and a patch that does not fit names the admissible sizes
    assert resolve_patch(None, geom) == (4, 3, 4) and resolve_patch(None, MILAN) == (4, 5, 5)
    with pytest.raises(InputError, match=r"h0=5 does not divide H=3 \(choose from \[1, 3\]\)"):
        resolve_patch((4, 5, 5), geom)


def test_std_floor_bounds_a_cell_constant_in_training() -> None:
    v = _milan_block_30min()
    train_end = 24 * 48
    x = v.copy()
    x[:train_end, 5] = 50.0
    x[[10, 300, 700, 1000], 5] = 51.0                         # constant in training but for 4 slots
    raw = splits.fit_scaler(x, train_end=train_end)
    floored = grid_scaler(x, train_end)
    z_raw = np.abs(raw.transform(x)[train_end:, 5]).max()
    z_floor = np.abs(floored.transform(x)[train_end:, 5]).max()
    assert z_raw > 1000 and z_floor < z_raw / 10
    assert floored.std[5] == pytest.approx(0.01 * np.median(raw.std))
    others = np.arange(12) != 5
    np.testing.assert_array_equal(floored.std[others], raw.std[others])  # real cells untouched
    # Milan: no cell is near the floor, so its z-scores are the protocol scaler's
    m = milan_grid()
    np.testing.assert_array_equal(grid_scaler(m.values, 3456).std, splits.fit_scaler(m.values).std)


def test_train_and_resume_on_a_3x4_grid(csv: Path, tmp_path: Path) -> None:
    straight = train(_cfg(csv, tmp_path / "a"))
    assert straight.name == "step_000006" and is_complete(straight)
    config = json.loads((straight / "config.json").read_text())
    assert config["data"]["grid"] == [3, 4] and config["data"]["slot_minutes"] == 30
    assert config["data"]["splits"]["val"] == [1152, 1296]
    dit = config["model"]["dit_overrides"]
    assert (dit["H"], dit["W"], list(dit["patch"])) == (3, 4, [4, 3, 4])
    assert config["model"]["window"]["context"] + config["model"]["window"]["horizon"] == 192
    recs = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs if "loss" in r] == list(range(1, 7))
    assert all(np.isfinite(r["loss"]) for r in recs if "loss" in r)
    assert [r["step"] for r in recs if "val/loss" in r] == [3, 6]
    best = best_checkpoint(tmp_path / "a")
    model, _ = load_model(best)
    assert model.dit.cfg.n_tokens == 48
    # the default grid prior on a 3x4 grid of 30-minute slots (48 a day; weekday of slot 0: Monday for a CSV)
    assert model.cfg.prior != "none" and model.dit.use_prior
    assert config["train"]["prior"] == "grid" and config["data"]["prior"]["slots_per_day"] == 48
    assert config["data"]["prior"]["first_weekday"] == 0

    # interrupted after 3 steps (stop_at), then resumed to 6 with the same schedule: same weights
    first = train(_cfg(csv, tmp_path / "b", stop_at=3))
    assert first.name == "step_000003"
    resumed = train(_cfg(csv, tmp_path / "b"))
    assert resumed.name == "step_000006"
    for f in ("model.safetensors", "ema.safetensors"):
        a, b = load_file(str(straight / f)), load_file(str(resumed / f))
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=f"{f}:{k}")
    # the same run directory on another grid's data is refused
    with pytest.raises(InputError, match="model config|data set"):
        train(_cfg(csv, tmp_path / "b", data="milan", grid=None, slot_minutes=10, steps=9))


def test_cli_refuses_a_patch_that_does_not_fit(csv: Path, tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "umask.train.models.umask.grid", "--data", str(csv), "--grid", "3x4",
                          "--slot-minutes", "30", "--patch", "4,5,5", "--steps", "1", "--out", str(tmp_path / "r")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == InputError.exit_code, res.stderr[-2000:]
    assert "--patch 4,5,5 does not fit the 3x4 grid" in res.stderr and "Traceback" not in res.stderr


def test_residual_gate_keeps_the_residual_where_it_helps_on_validation() -> None:
    """grid_prior.choose_alphas (the gate of grid_residual_gate and of the grid bundle): per cell, alpha of
    prior + alpha (model - prior) by the lowest masked absolute error; a cell where the model is right keeps alpha 1, one where the prior is right gets 0, masked-out
    entries do not vote, and ties go to the prior."""
    from umask.runtime.families.umask.grid_prior import ALPHAS, choose_alphas, gate

    rng = np.random.default_rng(0)
    truth = rng.random((6, 5, 4))
    prior = truth.copy()
    model = truth.copy()
    model[..., 0] += 1.0                      # cell 0: the residual is wrong -> 0
    prior[..., 1] += 1.0                      # cell 1: the prior is wrong -> 1
    prior[..., 2] += 1.0
    model[..., 2] -= 1.0                      # cell 2: the truth lies halfway between -> 0.5
    mask = np.ones_like(truth, bool)
    a = choose_alphas(model, prior, truth, mask)
    assert a.tolist() == [0.0, 1.0, 0.5, 0.0]  # cell 3: model == prior, a tie -> the prior
    np.testing.assert_allclose(gate(model, prior, a)[..., 1], model[..., 1])
    np.testing.assert_allclose(gate(model, prior, a)[..., 0], prior[..., 0])
    hide = mask.copy()
    hide[..., 1] = False                      # no visible entry of cell 1: every alpha ties -> 0
    assert choose_alphas(model, prior, truth, hide)[1] == 0.0 and set(a) <= set(ALPHAS)


def test_grid_bundle_on_a_3x4_grid_of_30_minute_slots(csv: Path, tmp_path: Path) -> None:
    """Any grid, not only Milan: a 3x4 run of 30-minute slots exports to a umask_grid bundle (the exporter finds the
    CSV through the run's config) whose session forecasts a day and imputes a window of that grid in raw units.
    The run weighs its profiles towards the latest days (--profile-decay 0.9): the bundle carries those profiles."""
    from umask.export.families import exporter
    from umask.runtime.core import gridscale
    from umask.runtime.families.ustsllm.stats import fit_grid_stats
    from umask.runtime.session import Session

    run = tmp_path / "run"
    train(_cfg(csv, run, mask_mode="none", profile_decay=0.9))
    m = exporter("umask_grid")(run, tmp_path / "bundle", precisions=("fp32",), samples=1)
    assert m["model"]["geometry"] == {"height": 3, "width": 4, "slots_per_day": 48, "history": 96, "horizon": 48,
                                      "window": 96, "frame": 192}
    assert m["grid"]["slot_minutes"] == 30 and len(m["gate"]["impute"]["alphas"]) == 12
    grid = load_grid_csv(csv, grid="3x4", slot_minutes=30)
    train_end = grid.splits()["train"][1]
    stats = fit_grid_stats(grid.values, train_end, 48, 0)
    wk, _ = gridscale.day_type_profiles(stats.transform(grid.values), train_end, 48, 0, decay=0.9)
    assert m["model"]["prior"]["profile_decay"] == 0.9
    np.testing.assert_allclose(m["stats"]["profile"], wk, rtol=0, atol=1e-9)
    t0 = grid.splits()["test"][0]
    with Session.open(tmp_path / "bundle", allow_unsigned=True) as s:
        day = s.forecast(grid.values[t0 - 96:t0], first_slot=t0 - 96)
        assert day.shape == (48, 12) and np.all(np.isfinite(day))
        win = grid.values[t0:t0 + 96]
        mask = np.random.default_rng(0).random(win.shape) < 0.75
        full = s.impute(np.where(mask, np.nan, win), mask, first_slot=t0)
        assert np.array_equal(full[~mask], win[~mask]) and np.all(np.isfinite(full))
        with pytest.raises(InputError, match=r"\(96, 12\)"):
            s.forecast(grid.values[t0 - 96:t0, :10], first_slot=t0 - 96)
    # the bundle benchmark scores it on that grid's own test days, torch next to the ONNX file
    from umask.bench.accuracy.grid_umask_bundle import main as bench

    out = tmp_path / "rows.json"
    assert bench(["--bundles", str(tmp_path / "bundle"), "--data", str(csv), "--grid", "3x4", "--slot-minutes", "30",
                  "--precisions", "torch,fp32", "--no-latency", "--sweep-precision", "", "--out", str(out)]) == 0
    rows = {(r["protocol"], r["artifact"], r["metric"]): r for r in json.loads(out.read_text())["rows"]}
    assert {r["dataset"] for r in rows.values()} == {f"{csv.name} 3x4, 30-min slots ({grid.data})"}
    for task in ("A1", "A2"):
        t, o = rows[(task, "torch", "nmae")]["value"], rows[(task, "onnx-fp32", "nmae")]["value"]
        assert 0 < t < 2 and abs(t - o) <= 1e-3 * t


def test_prior_sweep_runs_on_a_3x4_grid_and_chooses_on_validation(csv: Path, tmp_path: Path) -> None:
    """grid_prior_sweep on a user's CSV: the A1 prior's errors per decay on that grid's own validation and test
    windows, the decay chosen by validation nMAE alone, and the expanding-window check over its last training days."""
    from umask.bench.accuracy import grid as harness
    from umask.bench.accuracy.grid_prior_sweep import main as sweep
    from umask.runtime.families.umask.grid_prior import GridPrior

    out = tmp_path / "sweep.json"
    assert sweep(["--data", str(csv), "--grid", "3x4", "--slot-minutes", "30", "--decays", "1,0.8", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert "milan_3x4_30min.csv (3x4, 30-min slots)" in doc["meta"]["data"] and "--grid 3x4" in doc["meta"]["command"]
    rows = doc["decays"]
    assert set(rows) == {"1.0", "0.8"}
    assert doc["chosen_on_validation"] == float(min(rows, key=lambda k: (rows[k]["val"]["nmae"], rows[k]["val"]["nrmse"])))
    spec = harness.GridSpec(load_grid_csv(csv, grid="3x4", slot_minutes=30))
    fw = splits.forecast_windows(spec.z, "test", history=96, horizon=48, splits=spec.splits)
    prior = GridPrior.fit(spec.z, spec.splits["train"][1], 48, 0, profile_decay=0.8)
    assert rows["0.8"]["test"]["nmae"] == round(float(np.abs(prior.forecast(fw.x, fw.starts, 48) - fw.y).mean()), 4)
    check = doc["expanding_days_10_23"]                        # 30 days -> 24 training days -> the last 14
    assert all(0 < v < 2 for d in check.values() for v in d.values())
