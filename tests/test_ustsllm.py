"""U-STS-LLM (issue 12): a tiny network trained a few steps on a real Milan crop, its export and runtime
session, zero-shot on a grid with another cell count, and input errors.

The network here is small (one random-init SmolLM2-shaped block, narrow side modules) so the file runs in
well under a minute on one CPU thread; the pretrained backbone is exercised by the training run itself
(scripts/train_ustsllm.sh)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from umask.runtime.core.errors import InputError
from umask.runtime.families.ustsllm.stats import fit_grid_stats
from umask.train.data.grids import GridData, milan_grid

torch.set_num_threads(1)

TINY = dict(backbone="random", n_blocks=2, n_frozen=1, c_hidden=4, d_group=8, d_gru=8, guide_hidden=8,
            guide_step=24, lora_r=2)


def _crop(rows: slice, cols: slice) -> GridData:
    milan = milan_grid()
    idx = np.arange(25).reshape(5, 5)[rows, cols]
    h, w = idx.shape
    return GridData(values=milan.values[:, idx.ravel()], height=h, width=w, slot_minutes=10, adjacency=None,
                    source=f"milan crop {h}x{w}", data="real")


def _write_csv(grid: GridData, path: Path) -> Path:
    np.savetxt(path, grid.values, delimiter=",", fmt="%.6f")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GridData]:
    from umask.train.models.ustsllm.model import USTSConfig
    from umask.train.models.ustsllm.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("ustsllm") / "run"
    grid = _crop(slice(0, 3), slice(0, 3))                      # 9 real Milan cells, 30 days
    cfg = TrainConfig(steps=3, batch_size=2, warmup=1, eval_every=3, val_stride=64, out=str(out),
                      net=USTSConfig(**TINY))
    ckpt = train(cfg, grid=grid)
    return ckpt, grid


def test_training_writes_a_loadable_checkpoint_with_finite_losses(trained: tuple[Path, GridData]) -> None:
    from umask.train.models.ustsllm.model import load_model

    ckpt, grid = trained
    recs = [json.loads(line) for line in (ckpt.parents[1] / "metrics.jsonl").read_text().splitlines()]
    assert any("val/loss" in r for r in recs)
    assert all(np.isfinite(r.get("loss", 0.0)) and np.isfinite(r.get("val/loss", 0.0)) for r in recs)
    model, config = load_model(ckpt)
    assert config["data"]["grid"] == [3, 3] and model.cfg.n_blocks == 2
    # only LoRA adapters of the top block and the side modules train; the backbone is frozen (eqs. 10-11)
    names = {n for n, p in model.named_parameters() if p.requires_grad and n.startswith("blocks.")}
    assert names and all("lora_" in n and n.startswith("blocks.1.self_attn.") for n in names)


def _inputs(grid: GridData, n: int = 2) -> dict[str, torch.Tensor]:
    from umask.train.models.ustsllm.trainer import forecast_inputs, to_torch

    stats = fit_grid_stats(grid.values, grid.splits()["train"][1], grid.slots_per_day)
    z = stats.transform(grid.values)
    starts = np.array([3600, 3700])[:n]
    return to_torch(forecast_inputs(np.stack([z[s - 288:s] for s in starts]), starts - 288, stats, 144))


def test_cells_are_unordered_tokens_and_lora_merge_keeps_the_output(trained: tuple[Path, GridData]) -> None:
    from umask.train.models.ustsllm.model import load_model, merge_lora

    ckpt, grid = trained
    model, _ = load_model(ckpt)
    inp = _inputs(grid)
    with torch.no_grad():
        y = model("forecast", **inp)
        perm = torch.tensor([4, 0, 8, 2, 6, 1, 3, 7, 5])
        pinp = {k: (v[..., perm] if v.dim() == 3 else v) for k, v in inp.items()}
        pinp["graph"] = inp["graph"][perm][:, perm]
        y_perm = model("forecast", **pinp)
        assert torch.allclose(y[..., perm], y_perm, atol=1e-4)       # no position: any renumbering of cells
        assert merge_lora(model.blocks) == 4                          # q, k, v, o of the one LoRA block
        assert torch.allclose(model("forecast", **inp), y, atol=1e-5)


def test_shipped_folder_drops_the_backbone_and_rebuilds_the_same_network(trained: tuple[Path, GridData],
                                                                         tmp_path: Path, monkeypatch) -> None:
    """train/common/ship.py: the folder holds everything but the frozen blocks, which the constructor reloads from
    the package. The tiny run's backbone is random, so here the 'package' is made to hold the run's own blocks."""
    from safetensors.torch import load_file

    import umask.train.models.ustsllm.model as um
    from umask.train.common.ship import ship_ustsllm

    ckpt, grid = trained
    with pytest.raises(InputError, match="differs from the package"):      # a random backbone cannot be rebuilt
        ship_ustsllm(ckpt, tmp_path / "refused")
    ref, _ = um.load_model(ckpt)
    backbone = {k.removeprefix("blocks.").replace(".base_layer", ""): v for k, v in ref.state_dict().items()
                if k in um.frozen_backbone_keys(ref.state_dict())}                    # names before LoRA wraps them
    orig = um.load_blocks

    def package_blocks(cfg):   # the package's weights = this run's frozen blocks
        blocks, lcfg = orig(cfg)
        assert not blocks.load_state_dict(backbone, strict=False).unexpected_keys
        return blocks, lcfg

    monkeypatch.setattr(um, "load_blocks", package_blocks)
    out = ship_ustsllm(ckpt, tmp_path / "shipped")
    sd = load_file(str(out / "model.safetensors"))
    assert not any(k.startswith("blocks.") and "lora_" not in k for k in sd)             # no frozen weights
    assert "scaling.c" in sd and any("lora_" in k for k in sd)                          # adapters and side modules
    shipped, config = um.load_model(out)
    assert config["shipped"]["family"] == "ustsllm" and config["shipped"]["step"] == 3
    inp = _inputs(grid)
    with torch.no_grad():
        assert torch.equal(shipped("forecast", **inp), ref("forecast", **inp))
    (out / "model.safetensors").write_bytes((out / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(InputError, match="changed since it was shipped"):
        um.load_model(out)


def test_export_parity_and_runtime_session_match_torch(trained: tuple[Path, GridData], tmp_path: Path) -> None:
    from umask.export.families.ustsllm.exporter import export_bundle
    from umask.runtime.session import Session
    from umask.train.models.ustsllm.model import load_model

    ckpt, grid = trained
    data = _write_csv(grid, tmp_path / "crop.csv")
    m = export_bundle(ckpt, tmp_path / "bundle", precisions=["fp32", "int8-qdq"], data=data, int8_rel_tol=0.5)
    assert m["family"] == "ustsllm" and m["model"]["lora_merged"] == 4
    assert m["artifacts"]["fp32"]["forecast"]["parity"]["max_abs_diff_vs_torch"] <= 1e-3
    q = m["artifacts"]["int8-qdq"]["impute"]
    assert q["conversion"]["quantized_nodes"] > 0 and np.isfinite(q["parity"]["nmae"])
    model, _ = load_model(ckpt)
    stats = fit_grid_stats(grid.values, grid.splits()["train"][1], grid.slots_per_day)
    with Session.open(tmp_path / "bundle", allow_unsigned=True) as s:
        assert s.describe()["cells"] == 9
        hist = grid.values[3600 - 288:3600]                                   # raw units in
        raw = s.forecast(hist, first_slot=3600 - 288)
        with torch.no_grad():
            ref = model("forecast", **{k: v[:1] for k, v in _inputs(grid).items() if k != "graph"},
                        graph=_inputs(grid)["graph"]).numpy()[0]
        np.testing.assert_allclose(raw, stats.inverse(ref), rtol=1e-3, atol=1e-2 * float(stats.std.mean()))
        win = grid.values[3888:3888 + 288]
        mask = np.random.default_rng(0).random(win.shape) < 0.75
        done = s.impute(np.where(mask, np.nan, win), mask, first_slot=3888)
        assert np.array_equal(done[~mask], win[~mask]) and np.all(np.isfinite(done))
        # bad input: typed errors naming the argument
        with pytest.raises(InputError, match="history"):
            s.forecast(hist[:100], first_slot=0)
        with pytest.raises(InputError, match="finite"):
            s.forecast(np.where(np.arange(9) == 3, np.nan, hist), first_slot=0)
        with pytest.raises(InputError, match="mask"):
            s.impute(win, mask[:10], first_slot=0)
        other = fit_grid_stats(_crop(slice(0, 3), slice(0, 4)).values, 3456, 144)   # 12 cells
        out12 = s.forecast(_crop(slice(0, 3), slice(0, 4)).values[:288], first_slot=0, stats=other)
        assert out12.shape == (144, 12)                                    # any cell count with its own stats


def test_lowrank_guidance_bundle_session_builds_the_training_prior(tmp_path: Path) -> None:
    """A guide_prior="lowrank" network through export and the torch-free session: the session computes the
    impute task's prior channel (runtime/core/gridimpute.py) exactly as training did, so its raw-unit imputation
    equals torch's on the same window."""
    from umask.export.families.ustsllm.exporter import export_bundle
    from umask.runtime.session import Session
    from umask.train.models.ustsllm.model import USTSConfig, load_model
    from umask.train.models.ustsllm.trainer import TrainConfig, impute_inputs, to_torch, train

    grid = _crop(slice(0, 3), slice(0, 3))
    cfg = TrainConfig(steps=2, batch_size=2, warmup=1, eval_every=2, val_stride=64, out=str(tmp_path / "run"),
                      net=USTSConfig(**TINY, guide_prior="lowrank"))
    ckpt = train(cfg, grid=grid)
    m = export_bundle(ckpt, tmp_path / "bundle", precisions=["fp32"], data=_write_csv(grid, tmp_path / "crop.csv"),
                      a2_gate="none")
    assert m["model"]["net"]["guide_prior"] == "lowrank" and m["gate"] == {}
    assert m["artifacts"]["fp32"]["impute"]["parity"]["max_abs_diff_vs_torch"] <= 1e-3
    model, _ = load_model(ckpt)
    stats = fit_grid_stats(grid.values, grid.splits()["train"][1], grid.slots_per_day)
    win = grid.values[3888:3888 + 288]
    mask = np.random.default_rng(1).random(win.shape) < 0.75
    with torch.no_grad():
        ref = model("impute", **to_torch(impute_inputs(stats.transform(win)[None], mask[None], np.array([3888]), stats,
                                                       "lowrank"))).numpy()[0]
    with Session.open(tmp_path / "bundle", allow_unsigned=True) as s:
        done = s.impute(np.where(mask, np.nan, win), mask, first_slot=3888)
    np.testing.assert_allclose(done[mask], stats.inverse(ref)[mask], rtol=1e-3, atol=1e-2 * float(stats.std.mean()))
    assert np.array_equal(done[~mask], win[~mask])


def test_gated_bundle_blends_the_network_with_the_profile_lowrank_row_per_cell(tmp_path: Path) -> None:
    """export --a2-gate lowrank_profile: per-cell alphas chosen on the validation windows go into the manifest, and
    the session's impute returns other + alpha (network - other) with the row computed from the bundle's statistics;
    gated=False or another grid's statistics give the network alone; a malformed gate is refused."""
    from umask.export.families.ustsllm.exporter import export_bundle
    from umask.runtime.core.bundle import BundleError
    from umask.runtime.core import gridimpute
    from umask.runtime.families.ustsllm.stats import window_prior
    from umask.runtime.session import Session
    from umask.train.models.ustsllm.model import USTSConfig
    from umask.train.models.ustsllm.trainer import TrainConfig, train

    grid = _crop(slice(1, 4), slice(1, 4))
    cfg = TrainConfig(steps=2, batch_size=2, warmup=1, eval_every=2, val_stride=64, out=str(tmp_path / "run"),
                      net=USTSConfig(**TINY, guide_prior="lowrank_profile", st_patch=48))
    ckpt = train(cfg, grid=grid)
    m = export_bundle(ckpt, tmp_path / "bundle", precisions=["fp32"], data=_write_csv(grid, tmp_path / "crop.csv"),
                      a2_gate="lowrank_profile")
    g = m["gate"]["impute"]
    alphas = np.asarray(g["alphas"])
    assert g["other"] == "lowrank_profile" and alphas.shape == (9,) and np.all((alphas >= 0) & (alphas <= 1))
    assert g["windows"] == 145 and g["val_nmae"]["gated"] <= min(g["val_nmae"]["model"], g["val_nmae"]["other"])
    win = grid.values[3900:3900 + 288]
    mask = np.random.default_rng(2).random(win.shape) < 0.75
    with Session.open(tmp_path / "bundle", allow_unsigned=True) as s:
        gated = s.impute(np.where(mask, np.nan, win), mask, first_slot=3900)
        plain = s.impute(np.where(mask, np.nan, win), mask, first_slot=3900, gated=False)
        st = s.stats
        other_stats = s.impute(win, mask, first_slot=3900, stats=st)       # caller statistics: no gate
        with pytest.raises(BundleError, match="gate.impute"):
            s._read_gate({"impute": {"other": "lowrank_profile", "alphas": [0.5] * 4}}, "m")
        with pytest.raises(BundleError, match="gate.impute"):
            s._read_gate({"impute": {"other": "svd", "alphas": [0.5] * 9}}, "m")
    z = st.transform(np.where(mask, 0.0, win))[None]
    row = gridimpute.profile_lowrank_impute(np.where(mask[None], 0.0, z), mask[None],
                                            window_prior(st, np.array([3900]), 288))[0]
    expect = st.inverse(row + alphas[None, :] * (st.transform(plain) - row))
    np.testing.assert_allclose(gated[mask], expect[mask], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(other_stats, plain)
    assert np.array_equal(gated[~mask], win[~mask])
    assert not np.allclose(gated[mask], plain[mask]) or np.all((alphas == 0) | (alphas == 1))


def test_zero_shot_scorer_on_a_grid_with_another_cell_count(trained: tuple[Path, GridData], tmp_path: Path) -> None:
    from umask.bench.accuracy import ustsllm as scorer

    ckpt, _ = trained
    other = _write_csv(_crop(slice(1, 5), slice(1, 4)), tmp_path / "other_4x3.csv")     # 12 cells, unseen crop
    out, v2 = tmp_path / "zs.json", tmp_path / "v2.json"
    assert scorer.main(["--protocol", "A1-zeroshot", "--ckpt", str(ckpt), "--data", str(other), "--grid", "4x3",
                        "--stride", "97", "--out", str(out), "--v2", str(v2)]) == 0
    rows = json.loads(v2.read_text())["rows"]
    ours = [r for r in rows if r["model"] == "ustsllm"]
    assert {r["metric"] for r in ours} == {"nmae", "nrmse", "mae_raw", "rmse_raw"} and all(r["protocol"] == "A1-zeroshot" for r in ours)
    assert all(np.isfinite(r["value"]) and r["n_windows"] == 3 for r in ours)
    assert any(r["model"] == "historical_average" for r in rows)
    with pytest.raises(InputError, match="--data"):
        scorer.main(["--protocol", "A2-zeroshot", "--ckpt", str(ckpt)])
    hourly = tmp_path / "hourly.csv"
    np.savetxt(hourly, _crop(slice(0, 2), slice(0, 2)).values.reshape(720, 6, 4).mean(1), delimiter=",")
    with pytest.raises(InputError, match="slot"):
        scorer.main(["--protocol", "A1-zeroshot", "--ckpt", str(ckpt), "--data", str(hourly), "--grid", "2x2",
                     "--slot-minutes", "60", "--no-baselines"])


def test_untrained_guidance_is_the_grid_prior_on_real_milan_windows() -> None:
    """Eq. 7's guidance starts at the grid prior of train/models/umask/grid_prior.py (A1: day-type profile +
    level term; A2: linear interpolation) and eq. 14's LLM branch at zero correction: with the eq. 13 head
    zeroed, an untrained network returns the prior."""
    from umask.train.data import splits
    from umask.train.models.umask.grid_prior import MILAN_FIRST_WEEKDAY, GridPrior
    from umask.train.models.ustsllm.model import USTSConfig, USTSLLM
    from umask.train.models.ustsllm.trainer import forecast_inputs, impute_inputs, to_torch

    g = milan_grid()
    stats = fit_grid_stats(g.values, 3456, 144, MILAN_FIRST_WEEKDAY)
    z = stats.transform(g.values)
    prior = GridPrior.fit(z, 3456, 144, MILAN_FIRST_WEEKDAY)
    net = USTSLLM(USTSConfig(**TINY)).eval()
    with torch.no_grad():
        for lin in net.rconv.values():
            lin.weight.zero_()
    fw = splits.forecast_windows(z, "test")
    i = np.array([0, 100, 288])                              # a weekday and a weekend horizon among them
    with torch.no_grad():
        y = net("forecast", **to_torch(forecast_inputs(fw.x[i], fw.starts[i] - 288, stats, 144))).numpy()
    np.testing.assert_allclose(y, prior.forecast(fw.x[i], fw.starts[i], 144), atol=1e-4)
    iw = splits.imputation_windows(z, "test")
    j = np.array([0, 144])
    with torch.no_grad():
        y = net("impute", **to_torch(impute_inputs(iw.truth[j], iw.mask[j], iw.starts[j], stats))).numpy()
    ref = prior.impute(np.where(iw.mask[j], 0.0, iw.truth[j]), iw.mask[j], iw.starts[j])
    np.testing.assert_allclose(y[iw.mask[j]], ref[iw.mask[j]], atol=1e-3)


def test_lowrank_guidance_starts_at_the_lowrank_interpolation_row() -> None:
    """guide_prior="lowrank": the impute task's prior channel is the window's lowrank_interpolation (the same
    function as the A2 baseline row) and an untrained network returns it on the hidden entries; forecasting is
    unchanged (the profile channel)."""
    from umask.train.baselines import classical
    from umask.train.data import splits
    from umask.train.models.ustsllm.model import USTSConfig, USTSLLM
    from umask.train.models.ustsllm.trainer import forecast_inputs, impute_inputs, to_torch

    stats, z, iw = _milan_test_imputation()
    j = np.array([3, 120])
    inp = impute_inputs(iw.truth[j], iw.mask[j], iw.starts[j], stats, "lowrank")
    ref = classical.lowrank_interpolation_impute(np.where(iw.mask[j], np.nan, iw.truth[j]), iw.mask[j])
    np.testing.assert_allclose(inp["prior"], ref, atol=1e-5)
    assert not np.allclose(inp["prior"], impute_inputs(iw.truth[j], iw.mask[j], iw.starts[j], stats)["prior"])
    fw = splits.forecast_windows(z, "test")
    f_in = forecast_inputs(fw.x[:2], fw.starts[:2] - 288, stats, 144)
    for st_patch in (0, 48):
        net = USTSLLM(USTSConfig(**TINY, guide_prior="lowrank", st_patch=st_patch)).eval()
        with torch.no_grad():
            for lin in net.rconv.values():
                lin.weight.zero_()
            y = net("impute", **to_torch(inp)).numpy()
        np.testing.assert_allclose(y[iw.mask[j]], ref[iw.mask[j]], atol=1e-3)
        plain = USTSLLM(USTSConfig(**TINY, st_patch=st_patch)).eval()
        plain.load_state_dict(net.state_dict())
        with torch.no_grad():
            np.testing.assert_allclose(net("forecast", **to_torch(f_in)).numpy(),
                                       plain("forecast", **to_torch(f_in)).numpy(), atol=1e-6)
    # lowrank_input: the same prior channel, but the guidance base stays the interpolation
    both = impute_inputs(iw.truth[j], iw.mask[j], iw.starts[j], stats, "lowrank_input")
    np.testing.assert_array_equal(both["prior"], inp["prior"])
    li = classical.linear_interpolation_impute(np.where(iw.mask[j], np.nan, iw.truth[j]), iw.mask[j])
    net = USTSLLM(USTSConfig(**TINY, guide_prior="lowrank_input", st_patch=48)).eval()
    with torch.no_grad():
        for lin in net.rconv.values():
            lin.weight.zero_()
        y = net("impute", **to_torch(both)).numpy()
    np.testing.assert_allclose(y[iw.mask[j]], li[iw.mask[j]], atol=1e-3)
    with pytest.raises(ValueError, match="guide_prior"):
        USTSConfig(**TINY, guide_prior="svd")


def _milan_test_imputation() -> tuple:
    """(Milan GridStats, its standardized matrix, the protocol's A2 test windows on that scale)."""
    from umask.train.data import splits
    from umask.train.models.umask.grid_prior import MILAN_FIRST_WEEKDAY

    g = milan_grid()
    stats = fit_grid_stats(g.values, 3456, 144, MILAN_FIRST_WEEKDAY)
    z = stats.transform(g.values)
    return stats, z, splits.imputation_windows(z, "test")


def test_lowrank_profile_guidance_starts_at_the_profile_lowrank_row() -> None:
    """guide_prior="lowrank_profile": the impute prior channel is the profile_lowrank_interpolation row over the
    run's own day-type profiles, and the untrained network returns it on the hidden entries."""
    from umask.runtime.core import gridimpute
    from umask.runtime.families.ustsllm.stats import window_prior
    from umask.train.models.ustsllm.model import USTSConfig, USTSLLM
    from umask.train.models.ustsllm.trainer import impute_inputs, to_torch

    stats, _, iw = _milan_test_imputation()
    j = np.array([7, 90])
    inp = impute_inputs(iw.truth[j], iw.mask[j], iw.starts[j], stats, "lowrank_profile")
    ref = gridimpute.profile_lowrank_impute(np.where(iw.mask[j], 0.0, iw.truth[j]), iw.mask[j],
                                            window_prior(stats, iw.starts[j], 288))
    np.testing.assert_allclose(inp["prior"], ref, atol=1e-5)
    net = USTSLLM(USTSConfig(**TINY, guide_prior="lowrank_profile", st_patch=48)).eval()
    with torch.no_grad():
        y = net("impute", **to_torch(inp)).numpy()
    np.testing.assert_allclose(y[iw.mask[j]], ref[iw.mask[j]], atol=1e-3)


def test_scorer_folds_seed_runs_and_scores_guidance_and_prior_rows(trained: tuple[Path, GridData],
                                                                    tmp_path: Path) -> None:
    from umask.bench.accuracy import ustsllm as scorer
    from umask.bench.reports import scoreboard

    ckpt, _ = trained
    v2 = tmp_path / "v2.json"
    assert scorer.main(["--protocol", "A2", "--ckpt", str(ckpt), str(ckpt), "--guidance-only", "--prior-row", "--where",
                        "--ensemble", "--stride", "97", "--out", str(tmp_path / "a2.json"), "--v2", str(v2)]) == 0
    doc = json.loads(v2.read_text())
    rows = {(r["model"], r["metric"]): r for r in doc["rows"]}
    ours = rows[("ustsllm", "nmae")]
    assert ours["seeds"] == [0, 0] and ours["spread"] == 0.0 and "per seed" in ours["notes"]
    ens = rows[("ustsllm_ens2", "nmae")]                  # the mean of two identical runs is that run
    assert ens["kind"] == "ours" and ens["seeds"] == [0] and abs(ens["value"] - ours["value"]) < 1e-9
    assert rows[("ustsllm_guidance_only", "nmae")]["kind"] == "ablation"
    prior = rows[("ustsllm_prior_only", "nmae")]
    assert prior["seeds"] == [0] and prior["spread"] is None and prior["artifact"] == "numpy"
    # the A2 guidance base is the protocol's linear interpolation row, to the bit
    assert prior["value"] == rows[("linear_interpolation", "nmae")]["value"]
    assert len(list(scoreboard._v2_rows(v2, doc, "abc1234", "2026-12-06"))) == len(doc["rows"])
    where = doc["meta"]["where_the_error_is"]["A2"]
    assert len(where["model"]["by_cell"]) == 25 and len(where["prior_only"]["by_hour_of_day"]) == 24
    assert where["n_windows"] == 145 and 0 < where["prior_only"]["nmae"] < 1          # every test window


def test_l1_loss_is_the_absolute_error_of_eqs_15_16_on_real_windows() -> None:
    """TrainConfig.loss="l1": eq. 15 weighs the mean absolute forecast error and the mean absolute error of the
    hidden entries (eq. 16's support); "mse" keeps the paper's squares; the MSE parts are logged either way and an
    unknown name is refused. The same network and real Milan windows give both."""
    from umask.train.data import splits
    from umask.train.models.umask.grid_prior import MILAN_FIRST_WEEKDAY
    from umask.train.models.ustsllm.model import USTSConfig
    from umask.train.models.ustsllm.trainer import MultiTask, TrainConfig, forecast_inputs, impute_inputs, to_torch

    g = milan_grid()
    stats = fit_grid_stats(g.values, 3456, 144, MILAN_FIRST_WEEKDAY)
    z = stats.transform(g.values)
    fw, iw = splits.forecast_windows(z, "val"), splits.imputation_windows(z, "val")
    batch = {"forecast": {**to_torch(forecast_inputs(fw.x[:2], fw.starts[:2] - 288, stats, 144)),
                          "y": torch.as_tensor(fw.y[:2], dtype=torch.float32)},
             "impute": {**to_torch(impute_inputs(iw.truth[:2], iw.mask[:2], iw.starts[:2], stats)),
                        "y": torch.as_tensor(iw.truth[:2], dtype=torch.float32)}}
    torch.manual_seed(0)
    l1 = MultiTask(USTSConfig(**TINY), alpha=0.3, loss="l1").eval()
    mse = MultiTask(USTSConfig(**TINY), alpha=0.3).eval()
    mse.load_state_dict(l1.state_dict())
    with torch.no_grad():
        loss1, p1 = l1(batch)
        loss2, p2 = mse(batch)
        yf = l1.net("forecast", **{k: v for k, v in batch["forecast"].items() if k != "y"}).numpy()
        yi = l1.net("impute", **{k: v for k, v in batch["impute"].items() if k != "y"}).numpy()
    h = iw.mask[:2]
    mae_f, mae_i = np.abs(yf - fw.y[:2]).mean(), np.abs(yi - iw.truth[:2])[h].mean()
    mse_f, mse_i = ((yf - fw.y[:2]) ** 2).mean(), ((yi - iw.truth[:2]) ** 2)[h].mean()
    np.testing.assert_allclose(float(loss1), 0.3 * mae_f + 0.7 * mae_i, rtol=1e-4)
    np.testing.assert_allclose(float(loss2), 0.3 * mse_f + 0.7 * mse_i, rtol=1e-4)
    assert p1["mse_impute"] == pytest.approx(p2["mse_impute"]) and p1["nmae_a2"] == pytest.approx(mae_i, rel=1e-4)
    with pytest.raises(InputError, match="loss"):
        MultiTask(USTSConfig(**TINY), alpha=0.5, loss="huber")
    assert TrainConfig(loss="l1").to_dict()["loss"] == "l1"


def test_scorer_reads_each_run_with_the_statistics_it_trained_on(tmp_path: Path) -> None:
    """A run trained over recency-weighted profiles (--profile-decay) is scored with those profiles: the scorer's
    statistics equal the run's recorded data.stats, not the plain-mean fit (the bug behind the withdrawn
    ustsllm_lowrank_recent rows)."""
    from umask.bench.accuracy.ustsllm import run_stats, torch_fns
    from umask.runtime.families.ustsllm.stats import GridStats
    from umask.train.models.ustsllm.model import USTSConfig, load_model
    from umask.train.models.ustsllm.trainer import TrainConfig, forecast_inputs, to_torch, train

    grid = _crop(slice(1, 3), slice(2, 4))                      # 4 real Milan cells
    cfg = TrainConfig(steps=2, batch_size=2, warmup=1, eval_every=2, val_stride=64, out=str(tmp_path / "run"),
                      profile_decay=0.8, net=USTSConfig(**TINY))
    ckpt = train(cfg, grid=grid)
    model, config = load_model(ckpt)
    recorded = GridStats.from_dict(config["data"]["stats"])
    got = run_stats(grid, 0, config)
    np.testing.assert_allclose(got.profile, recorded.profile, atol=1e-12)
    np.testing.assert_allclose(got.graph, recorded.graph, atol=1e-12)
    plain = run_stats(grid, 0, {"train": {}})                   # a run saved before the setting: the plain mean
    assert not np.allclose(plain.profile, recorded.profile, atol=1e-3)
    med = run_stats(grid, 0, {"train": {"profile_statistic": "median"}})
    z_train = plain.transform(grid.values)[:grid.splits()["train"][1]]
    days = z_train[: len(z_train) // 144 * 144].reshape(-1, 144, grid.n_cells)
    weekday = np.array([d % 7 < 5 for d in range(len(days))])                 # slot 0 is a Monday here
    np.testing.assert_allclose(med.profile, np.median(days[weekday], axis=0), atol=1e-12)
    np.testing.assert_allclose(med.profile_weekend, np.median(days[~weekday], axis=0), atol=1e-12)
    # the scorer's forecast is the network over the recorded statistics
    z = recorded.transform(grid.values)
    starts = np.array([3600, 3700])
    hist = np.stack([z[s - 288:s] for s in starts])
    fc = torch_fns(str(ckpt), grid, 0)[0](hist, starts, 144)
    with torch.no_grad():
        ref = model("forecast", **to_torch(forecast_inputs(hist, starts - 288, recorded, 144))).numpy()
    np.testing.assert_allclose(fc, ref, atol=1e-5)
