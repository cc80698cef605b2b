"""U-MASK on the Milan grid: windows, a tiny training run, checkpoints, resume, eval adapters.

Real Milan matrix (data/milan_telecom), a tiny model (DiT d=32, depth 1; mask generator d=8), a few
optimizer steps on one torch thread.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from umask.bench.accuracy import grid as milan_eval
from umask.bench.accuracy.grid_umask import checkpoint_inputs as ev_inputs
from umask.bench.accuracy.grid_umask import (checkpoint_scaler, complete, forecast_fn, impute_fn, prior_forecast_fn,
                                             prior_impute_fn, score_rows)
from umask.runtime.core.errors import InputError
from umask.train.data import splits
from umask.train.data.grids import GridData, milan_grid
from umask.train.data.milan import read_internet_matrix
from umask.train.models.umask.grid import (
    FRAME,
    HISTORY,
    IMPUTE,
    LONG,
    MilanTrainConfig,
    MilanUMask,
    MilanWindowDataset,
    best_checkpoint,
    forecast_frame,
    load_grid,
    load_milan,
    load_model,
    milan_model_config,
    split_rows,
    train,
)
from umask.train.models.umask.grid_prior import MILAN_FIRST_WEEKDAY, GridPrior, calendar
from umask.train.models.umask.trainer import is_complete
from umask.train.models.umask.trainer import load_model as trainer_load_model

torch.set_num_threads(1)

TINY = {"d_model": 32, "depth": 1, "n_heads": 2, "d_hidden": 8}


@pytest.fixture(scope="module")
def milan() -> tuple[np.ndarray, np.ndarray]:
    z, e_pos, _ = load_milan()
    return z, e_pos


def _cfg(out: Path, **kw) -> MilanTrainConfig:
    base = {**TINY, "out": str(out), "batch_size": 8, "lr": 3e-3, "warmup": 2, "log_every": 1, "eval_every": 10,
            "eval_batches": 2, "ckpt_every": 10, "seed": 0, "steps": 30}
    base.update(kw)
    return MilanTrainConfig(**base)


def _rows() -> tuple[np.ndarray, np.ndarray]:
    return split_rows("train", stride=50), split_rows("val", stride=64)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, milan) -> Path:
    z, e_pos = milan
    out = tmp_path_factory.mktemp("milan_umask") / "run"
    tr, va = _rows()
    # the paper's variant: learned evidence mask, no prior (the grid prior has its own tests below)
    train(_cfg(out, mask_mode="learned", prior="none"), z=z, e_pos=e_pos, train_rows=tr, val_rows=va)
    return out


def _records(out: Path) -> list[dict]:
    return [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if ln.strip()]


# ------------------------------------------------------------------------------------------------
def test_windows_and_frames(milan) -> None:
    z, e_pos = milan
    rows = split_rows("train")
    end = np.where(rows[:, 0] == LONG, rows[:, 1] + splits.A1_HORIZON, rows[:, 1] + splits.A2_WINDOW)
    assert end.max() <= splits.MILAN_SPLITS["train"][1] and rows[:, 1].min() >= 0
    assert (rows[:, 0] == LONG).sum() == 3025 and (rows[:, 0] == IMPUTE).sum() == 3169
    ds = MilanWindowDataset(z, e_pos, rows, seed=0)
    i1 = 77
    a1 = ds.item(i1)
    s = int(rows[i1, 1])
    o = (s - HISTORY) % 144                                   # day-aligned: frame position = time of day
    assert a1["x0"].shape == (1, FRAME, 5, 5) and a1["task"] == LONG and FRAME == 576
    assert a1["avail"][0, o:o + HISTORY].all() and a1["avail"].sum() == HISTORY * 25
    assert a1["target"][0, o + HISTORY:o + HISTORY + 144].all() and a1["target"].sum() == 144 * 25
    np.testing.assert_allclose(a1["x0"][0, o:o + HISTORY].reshape(HISTORY, 25).numpy(), z[s - HISTORY:s], rtol=1e-6)
    np.testing.assert_allclose(a1["x0"][0, o + HISTORY:o + HISTORY + 144].reshape(144, 25).numpy(), z[s:s + 144],
                               rtol=1e-6)
    i2 = int(np.flatnonzero(rows[:, 0] == IMPUTE)[5])
    s2 = int(rows[i2, 1])
    o2 = s2 % 144
    b0, b0_again, b1 = ds.item(i2, 0), ds.item(i2, 0), ds.item(i2, 1)
    av, tg = b0["avail"][0, o2:o2 + HISTORY], b0["target"][0, o2:o2 + HISTORY]
    assert torch.all(av + tg == 1) and (b0["avail"] + b0["target"]).sum() == HISTORY * 25
    assert 0.6 < float(tg.mean()) < 0.9
    assert torch.equal(b0["avail"], b0_again["avail"]) and not torch.equal(b0["avail"], b1["avail"])
    # training masks never reuse the evaluation seeds' masks
    _, prot = splits.imputation_mask(5)
    assert not np.array_equal(tg.reshape(HISTORY, 25).numpy().astype(bool), prot)


def test_training_loss_decreases_and_checkpoints(run: Path) -> None:
    recs = [r for r in _records(run) if "loss" in r]
    assert len(recs) == 30
    first = np.mean([r["target"] for r in recs[:5]])
    last = np.mean([r["target"] for r in recs[-5:]])
    assert last < 0.85 * first, (first, last)
    vals = [r["val/loss"] for r in _records(run) if "val/loss" in r]
    assert len(vals) == 3 and vals[-1] < vals[0]
    best = best_checkpoint(run)
    assert is_complete(best) and (run / "ckpt" / "best").is_file()
    cfg = json.loads((best / "config.json").read_text())
    assert cfg["model"]["mask_mode"] == "learned" and cfg["model"]["use_profile"] is False
    assert cfg["model"]["window"]["context"] + cfg["model"]["window"]["horizon"] == FRAME == 576
    # the per-user trainer's loader reads the checkpoint (same format)
    m, _ = trainer_load_model(best)
    ours, _ = load_model(best)
    sd = load_file(str(best / "ema.safetensors"))
    for k, v in ours.state_dict().items():
        assert torch.equal(v, sd[k]) and torch.equal(m.state_dict()[k], v)


def test_resume_matches_uninterrupted(tmp_path: Path, milan) -> None:
    z, e_pos = milan
    tr, va = _rows()
    kw = {"steps": 6, "eval_every": 0, "ckpt_every": 3, "mask_mode": "none"}
    train(_cfg(tmp_path / "a", **kw), z=z, e_pos=e_pos, train_rows=tr, val_rows=va)
    # interrupted: a 3-step run, then resumed to 6 with the same schedule
    train(_cfg(tmp_path / "b", **{**kw, "max_minutes": 0.0}), z=z, e_pos=e_pos, train_rows=tr, val_rows=va)
    assert (tmp_path / "b" / "ckpt" / "latest").read_text().strip() == "step_000001"
    train(_cfg(tmp_path / "b", **kw), z=z, e_pos=e_pos, train_rows=tr, val_rows=va)
    a = load_file(str(tmp_path / "a" / "ckpt" / "step_000006" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "ckpt" / "step_000006" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_adapters_shapes_observed_exact_and_deterministic(run: Path, milan) -> None:
    z, e_pos = milan
    model, _ = load_model(best_checkpoint(run))
    fwin = splits.forecast_windows(z, "test")
    idx = np.array([0, 100, 288])
    kw = {"steps": 3, "n_samples": 2, "seed": 7}
    f = forecast_fn(model, e_pos, **kw)
    pred = f(fwin.x[idx], fwin.starts[idx], 144)
    assert pred.shape == (3, 144, 25) and np.isfinite(pred).all()
    np.testing.assert_array_equal(pred, f(fwin.x[idx], fwin.starts[idx], 144))            # same seed
    one = forecast_fn(model, e_pos, batch_size=1, **kw)(fwin.x[idx], fwin.starts[idx], 144)
    np.testing.assert_allclose(pred, one, rtol=1e-4, atol=1e-4)                            # batching-free
    other = forecast_fn(model, e_pos, **{**kw, "seed": 8})(fwin.x[idx], fwin.starts[idx], 144)
    assert not np.allclose(pred, other)

    iwin = splits.imputation_windows(z, "test")
    j = np.array([0, 144])
    obs = np.where(iwin.mask[j], np.nan, iwin.truth[j])
    stats: dict = {}
    out = impute_fn(model, e_pos, stats=stats, **kw)(obs.copy(), iwin.mask[j].copy(), iwin.starts[j])
    assert out.shape == (2, 288, 25) and np.isfinite(out).all()
    np.testing.assert_array_equal(out[~iwin.mask[j]], iwin.truth[j][~iwin.mask[j]])       # observed kept exactly
    assert 0.0 < stats["evidence_ratio"].mean() < 1.0                                       # learned mask subsets
    np.testing.assert_array_equal(out, impute_fn(model, e_pos, **kw)(obs.copy(), iwin.mask[j].copy(), iwin.starts[j]))
    allev: dict = {}
    out_all = impute_fn(model, e_pos, all_evidence=True, stats=allev, **kw)(obs.copy(), iwin.mask[j].copy(),
                                                                           iwin.starts[j])
    assert out_all.shape == out.shape and np.allclose(allev["evidence_ratio"], 1.0)

    # an untrained "DiT, all evidence" model through the harness's scorer (shapes, finite metrics)
    torch.manual_seed(0)
    dit = MilanUMask(milan_model_config(mask_mode="none", **TINY)).eval()
    matrix = read_internet_matrix(milan_eval.DEFAULT_DATA)
    rows = score_rows(matrix, "a1", {"dit": forecast_fn(dit, e_pos, steps=2, n_samples=1)}, stride=96,
                      command="test")
    assert rows[0]["n_windows"] == 4 and np.isfinite(rows[0]["metrics"]["normalized_mae"])


def test_frame_never_reads_hidden_entries(run: Path, milan) -> None:
    """Changing hidden truth values (or the horizon) does not change the completion."""
    z, e_pos = milan
    model, _ = load_model(best_checkpoint(run))
    iwin = splits.imputation_windows(z, "test")
    m = iwin.mask[:1]
    a = np.where(m, 0.0, iwin.truth[:1])
    b = np.where(m, 123.0, iwin.truth[:1])
    fa = impute_fn(model, e_pos, steps=2, n_samples=1)(np.where(m, np.nan, a), m, iwin.starts[:1])
    fb = impute_fn(model, e_pos, steps=2, n_samples=1)(np.where(m, np.nan, b), m, iwin.starts[:1])
    np.testing.assert_array_equal(fa, fb)
    fr = forecast_frame(z[None, 3600:3888], np.array([3888]))
    tgt = fr["target"] > 0.5
    fr["x0"][tgt] = 55.0
    fr["e_pos"] = e_pos
    c1 = complete(model, fr, LONG, np.array([3888]), steps=2, n_samples=1)
    fr2 = {**fr, "x0": fr["x0"].copy()}
    fr2["x0"][tgt] = -9.0
    c2 = complete(model, fr2, LONG, np.array([3888]), steps=2, n_samples=1)
    np.testing.assert_array_equal(c1, c2)


def test_adapters_read_back_the_right_frame_positions(monkeypatch, milan) -> None:
    """The horizon / window is read back from the day-aligned frame positions it was written to."""
    import umask.bench.accuracy.grid_umask as ev

    _, e_pos = milan

    def fake_complete(model, frames, task, starts, **kw):
        n = frames["x0"].shape[0]
        pos = np.arange(FRAME, dtype=np.float64)[None, None, :, None, None]
        return np.broadcast_to(pos, (n, 1, FRAME, 5, 5)).copy()

    monkeypatch.setattr(ev, "complete", fake_complete)
    starts = np.array([3888, 3900, 4176])
    pred = ev.forecast_fn(None, e_pos)(np.zeros((3, HISTORY, 25)), starts, 144)
    want = ((starts - HISTORY) % 144 + HISTORY)[:, None] + np.arange(144)[None, :]
    np.testing.assert_array_equal(pred[:, :, 7], want)
    mask = np.ones((3, HISTORY, 25), bool)
    out = ev.impute_fn(None, e_pos)(np.full((3, HISTORY, 25), np.nan), mask, starts)
    np.testing.assert_array_equal(out[:, :, 3], (starts % 144)[:, None] + np.arange(HISTORY)[None, :])


# ------------------------------------------------------------------------------------------------
# The checkpoint's scale: a cell (almost) constant in training keeps its training z-scores
# ------------------------------------------------------------------------------------------------
QUIET = 7  # the cell made almost constant over the training period


@pytest.fixture(scope="module")
def quiet_grid() -> GridData:
    """The real Milan grid with cell 7 almost constant (a 1e-4 ripple) over the training period and
    real afterwards: its harness std is ~1e-4, while grid_scaler floors it."""
    g = milan_grid()
    values = g.values.copy()
    end = g.splits()["train"][1]
    values[:end, QUIET] = 50.0 + 1e-4 * np.sin(np.arange(end))
    return GridData(values=values, height=5, width=5, slot_minutes=10, adjacency=g.adjacency,
                    source="milan_quiet_cell", data="real")


@pytest.fixture(scope="module")
def quiet_run(tmp_path_factory: pytest.TempPathFactory, quiet_grid: GridData) -> Path:
    out = tmp_path_factory.mktemp("quiet") / "run"
    train(_cfg(out, steps=2, eval_every=2, ckpt_every=2, train_stride=97, val_stride=64), grid=quiet_grid)
    return out


def test_milan_scale_bridge_is_the_identity(milan) -> None:
    """On Milan the floor does not bind: the adapters see the harness's z-scores unchanged (and the
    E_pos training computed)."""
    _, e_pos = milan
    got, rescale = ev_inputs(None, milan_grid())
    assert rescale.identity
    np.testing.assert_array_equal(got, e_pos)
    z = splits.forecast_windows(milan_eval.GridSpec(milan_grid()).z, "test").x[:2]
    assert rescale.to_model(z) is z and rescale.to_harness(z) is z


def test_saved_scaler_is_read_from_the_checkpoint(quiet_run: Path, quiet_grid: GridData, caplog) -> None:
    _, config = load_model(best_checkpoint(quiet_run))
    _, _, trained = load_grid(quiet_grid)
    assert "scaler" in config["data"]                        # grid.py saves it (6 decimals)
    floor = 0.01 * float(np.median(trained.std))
    assert trained.std[QUIET] == pytest.approx(floor)         # the floor binds on the quiet cell
    # the saved one matches the grid being scored: the full-precision recomputation is used
    sc = checkpoint_scaler(config, quiet_grid)
    np.testing.assert_array_equal(sc.std, trained.std)
    np.testing.assert_array_equal(sc.mean, trained.mean)
    # no saved scaler (in-memory training): recomputed with the same floor
    np.testing.assert_array_equal(checkpoint_scaler({"data": {}}, quiet_grid).std, trained.std)
    # a checkpoint trained on other data: its own (saved) scaler, with a warning
    other = {"data": {"scaler": {"mean": (trained.mean + 10.0).tolist(), "std": (2 * trained.std).tolist()},
                      "source": "elsewhere.csv"}}
    with caplog.at_level("WARNING"):
        sc = checkpoint_scaler(other, quiet_grid)
    np.testing.assert_allclose(sc.std, 2 * trained.std)
    assert "elsewhere.csv" in caplog.text
    bad = {"data": {"scaler": {"mean": [0.0] * 3, "std": [1.0] * 3}}}
    with pytest.raises(InputError, match="3 cells"):
        checkpoint_scaler(bad, quiet_grid)


def test_adapters_give_the_model_its_training_z_scores(monkeypatch, quiet_run: Path, quiet_grid: GridData) -> None:
    """The model reads the quiet cell on the scale it was trained on, and its completions come back
    on the harness's scale (the same raw values)."""
    import umask.bench.accuracy.grid_umask as ev

    model, config = load_model(best_checkpoint(quiet_run))
    z_train, _, trained = load_grid(quiet_grid)               # what training fed the model
    spec = milan_eval.GridSpec(quiet_grid)
    e_pos, rescale = ev.checkpoint_inputs(config, quiet_grid)
    assert not rescale.identity
    seen: list[np.ndarray] = []
    fill = 0.5                                                # the fake model's value at every target entry

    def fake_complete(model, frames, task, starts, **kw):
        seen.append(frames["x0"].copy())
        return np.where(frames["target"] > 0.5, fill, frames["x0"]).astype(np.float64)

    monkeypatch.setattr(ev, "complete", fake_complete)
    win = splits.forecast_windows(spec.z, "test")
    idx = np.array([0, 150])
    st = win.starts[idx]
    assert np.abs(win.x[idx][..., QUIET]).max() > 1e3          # the harness's z of the quiet cell is huge
    pred = ev.forecast_fn(model, e_pos, rescale=rescale)(win.x[idx], st, 144)
    for i, s in enumerate(st):
        o = (s - HISTORY) % 144
        got = seen[-1][i, 0, o:o + HISTORY].reshape(HISTORY, 25)
        np.testing.assert_allclose(got, z_train[s - HISTORY:s], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(spec.scaler.inverse_transform(pred), trained.inverse_transform(np.full((2, 144, 25), fill)),
                               rtol=1e-9)

    iwin = splits.imputation_windows(spec.z, "test")
    j = np.array([0, 100])
    obs = np.where(iwin.mask[j], np.nan, iwin.truth[j])
    out = ev.impute_fn(model, e_pos, rescale=rescale)(obs.copy(), iwin.mask[j].copy(), iwin.starts[j])
    for i, s in enumerate(iwin.starts[j]):
        o = s % 144
        got = seen[-1][i, 0, o:o + HISTORY].reshape(HISTORY, 25)
        want = np.where(iwin.mask[j][i], 0.0, z_train[s:s + HISTORY])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    m = iwin.mask[j]
    np.testing.assert_array_equal(out[~m], iwin.truth[j][~m])                              # observed kept exactly
    np.testing.assert_allclose(spec.scaler.inverse_transform(out)[m],
                               trained.inverse_transform(np.full(m.shape, fill))[m], rtol=1e-9)
    # the real model through the same bridge: finite completions on the harness's scale
    monkeypatch.undo()
    prior = ev.checkpoint_prior(model, config, quiet_grid, rescale)      # a grid-prior run (the default)
    real = ev.forecast_fn(model, e_pos, rescale=rescale, prior=prior, steps=2, n_samples=1)(win.x[idx[:1]], st[:1], 144)
    assert real.shape == (1, 144, 25) and np.isfinite(real).all()
    with pytest.raises(InputError, match="prior"):
        ev.forecast_fn(model, e_pos, rescale=rescale, steps=2, n_samples=1)(win.x[idx[:1]], st[:1], 144)


# ------------------------------------------------------------------------------------------------
# The grid prior (grid_prior.py) and the model that refines it
# ------------------------------------------------------------------------------------------------
def test_grid_prior_profiles_calendar_and_no_leak(milan) -> None:
    z, _ = milan
    pr = GridPrior.fit(z, 3456, 144, MILAN_FIRST_WEEKDAY)
    days = z[:3456].reshape(24, 144, 25)
    wd = (4 + np.arange(24)) % 7                                   # 2013-11-01 was a Friday
    np.testing.assert_allclose(pr.weekend, days[wd >= 5].mean(0))
    np.testing.assert_allclose(pr.weekday, days[wd < 5].mean(0))
    # the test days 28-30 are Thursday, Friday, Saturday: a Saturday slot reads the weekend profile
    np.testing.assert_allclose(pr.profile(np.array([29 * 144 + 7])), pr.weekend[7][None])
    np.testing.assert_allclose(pr.profile(np.array([27 * 144 + 7])), pr.weekday[7][None])
    cal = calendar(np.array([27 * 144]), 144, MILAN_FIRST_WEEKDAY).reshape(4, 2)   # Thu, Fri, Sat, Sun
    assert cal.argmax(1).tolist() == [0, 0, 1, 1] and (cal.sum(1) == 1).all()
    # A1: only the history is read; A2: hidden entries are never read, observed entries pass through
    fw = splits.forecast_windows(z, "test")
    a = pr.forecast(fw.x[:3], fw.starts[:3], 144)
    level = (fw.x[:3, -pr.level_slots:] - pr.profile(fw.starts[:3, None] + np.arange(-pr.level_slots, 0))).mean(1)
    np.testing.assert_allclose(a, pr.profile(fw.starts[:3, None] + np.arange(144)) + pr.level_weight * level[:, None])
    iw = splits.imputation_windows(z, "test")
    m = iw.mask[:2]
    x1, x2 = np.where(m, 0.0, iw.truth[:2]), np.where(m, 99.0, iw.truth[:2])
    np.testing.assert_array_equal(pr.impute(x1, m, iw.starts[:2]), pr.impute(x2, m, iw.starts[:2]))
    np.testing.assert_array_equal(pr.impute(x1, m, iw.starts[:2])[~m], iw.truth[:2][~m])
    # the dataset's A1 item carries the same prior on the horizon and the calendar of its frame
    ds = MilanWindowDataset(z, milan[1], np.array([[LONG, 3600]]), prior=pr)
    it = ds.item(0)
    o = (3600 - HISTORY) % 144
    np.testing.assert_allclose(it["prior"][0, o + HISTORY:o + HISTORY + 144].reshape(144, 25).numpy(),
                               pr.forecast(z[None, 3600 - HISTORY:3600], np.array([3600]), 144)[0], rtol=1e-5, atol=1e-5)
    first_day = (3600 - HISTORY) // 144                     # the frame starts at the midnight of the history's day
    assert it["calendar"].tolist() == calendar(np.array([first_day * 144]), 144, MILAN_FIRST_WEEKDAY)[0].tolist()


def test_grid_prior_lowrank_a2_is_the_lowrank_row(milan) -> None:
    """a2="lowrank" (train --a2-prior lowrank): the A2 window's prior is the lowrank_interpolation row, hidden
    entries never read, A1 unchanged; the run's config selects it (prior_of)."""
    from umask.train.baselines import classical
    from umask.train.models.umask.grid_prior import prior_of

    z, _ = milan
    plain = GridPrior.fit(z, 3456, 144, MILAN_FIRST_WEEKDAY)
    pr = prior_of({"prior": "grid", "a2_prior": "lowrank"}, z, 3456, 144)
    assert pr.a2 == "lowrank" and "lowrank" in pr.describe()["kind"]
    iw = splits.imputation_windows(z, "test")
    m = iw.mask[:2]
    x1, x2 = np.where(m, 0.0, iw.truth[:2]), np.where(m, 99.0, iw.truth[:2])
    got = pr.impute(x1, m, iw.starts[:2])
    np.testing.assert_array_equal(got, pr.impute(x2, m, iw.starts[:2]))
    np.testing.assert_allclose(got, classical.lowrank_interpolation_impute(x1, m))
    assert not np.allclose(got[m], plain.impute(x1, m, iw.starts[:2])[m])
    fw = splits.forecast_windows(z, "test")
    np.testing.assert_array_equal(pr.forecast(fw.x[:2], fw.starts[:2], 144), plain.forecast(fw.x[:2], fw.starts[:2], 144))
    assert prior_of({"prior": "grid"}, z, 3456, 144).a2 == "interpolation"      # runs before the option
    with pytest.raises(ValueError, match="a2"):
        GridPrior.fit(z, 3456, 144, a2="svd")


def test_untrained_prior_model_returns_the_prior_and_points(milan) -> None:
    """Zero-init residual: an untrained grid-prior model completes with exactly the prior, whatever
    the point estimator; the adapters read the prior on the checkpoint's scale."""
    z, e_pos = milan
    torch.manual_seed(0)
    model = MilanUMask(milan_model_config(mask_mode="none", prior="grid", **TINY)).eval()
    assert model.dit.use_prior and model.cfg.dit_conditioning
    pr = GridPrior.fit(z, 3456, 144, MILAN_FIRST_WEEKDAY)
    fw = splits.forecast_windows(z, "test")
    idx = np.array([0, 200])
    want = prior_forecast_fn(pr)(fw.x[idx], fw.starts[idx], 144)
    for point in ("first_x0", "mean", "median"):
        got = forecast_fn(model, e_pos, prior=pr, point=point, steps=2, n_samples=3)(fw.x[idx], fw.starts[idx], 144)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    iw = splits.imputation_windows(z, "test")
    m = iw.mask[:2]
    obs = np.where(m, np.nan, iw.truth[:2])
    got = impute_fn(model, e_pos, prior=pr, point="first_x0", n_samples=1)(obs.copy(), m.copy(), iw.starts[:2])
    np.testing.assert_allclose(got, prior_impute_fn(pr)(obs.copy(), m.copy(), iw.starts[:2]), rtol=1e-4, atol=1e-4)
