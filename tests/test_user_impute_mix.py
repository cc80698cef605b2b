"""The B4 interpolation mix (benchmarks/accuracy/user_impute_mix.py): the arithmetic of the mix, that the
share chosen on a real (simulated) validation day is the one with the lowest RMSE there, and the rows a
run writes (the test day scored once, mean rows with RMSE, ruled rows with MAE)."""

from __future__ import annotations

import numpy as np
import pytest

from umask.bench.accuracy import user as ue
from umask.bench.accuracy import user_impute_mix as im
from umask.bench.accuracy.user_mae_rule import LastCall
from umask.bench.accuracy.user_scoring import _group_slices
from umask.runtime.core.featurize import ChannelLayout


def test_mix_is_a_per_group_convex_combination() -> None:
    ch = ChannelLayout(n_categories=3)
    pred = np.full((2, ch.n_channels, 4, 2, 2), 1.0, np.float32)
    interp = np.zeros_like(pred)
    out = im.InterpMix({"traffic": 1.0, "app": 0.25, "location": 0.0}).apply(pred, interp, ch)
    sl = _group_slices(ch)
    assert np.all(out[:, sl["traffic"]] == 1.0) and np.allclose(out[:, sl["app"]], 0.25)
    assert np.all(out[:, sl["location"]] == 0.0) and np.all(pred == 1.0) and np.all(interp == 0.0)


@pytest.fixture(scope="module")
def pop() -> ue.UserPopulation:
    return ue.simulated_population(3, 0)


def _rmse(pop: ue.UserPopulation, fn, split: str) -> dict[str, float]:
    sse: dict[str, float] = {}
    n: dict[str, int] = {}
    for b in ue.iter_batches(pop, "B4", split, 32):
        p = fn(b.model_view())
        for g, sl in _group_slices(b.channels).items():
            m = np.broadcast_to(b.eval_mask, b.truth[:, sl].shape)
            d = np.asarray(p[:, sl], np.float64)[m] - np.asarray(b.truth[:, sl], np.float64)[m]
            sse[g], n[g] = sse.get(g, 0.0) + float(d @ d), n.get(g, 0) + d.size
    return {g: float(np.sqrt(sse[g] / n[g])) for g in sse}


def test_calibration_picks_the_validation_best_share(pop: ue.UserPopulation) -> None:
    base = {k: LastCall(f) for k, f in ue.v2_baseline_models(pop).items()}
    interp, model = base[im.INTERP], base["blend_smooth"]
    mixes, rec = im.calibrate(pop, {"m": model}, interp)
    table = rec["val_rmse_per_weight"]["m"]
    for g, w in mixes["m"].weights.items():
        assert table[g][im.WEIGHTS.index(w)] == min(table[g])
    # the recorded table is the RMSE of each fixed share, recomputed independently here (w = 1: the model, 0: interp)
    for k in (0, len(im.WEIGHTS) - 1):
        w = im.WEIGHTS[k]
        fixed = im.mixed(model, interp, im.InterpMix({g: w for g in table}))
        got = _rmse(pop, fixed, "val")
        assert all(abs(got[g] - table[g][k]) < 1e-5 for g in table), (got, table)
    assert got == pytest.approx(_rmse(pop, model, "val"), abs=1e-6)                 # w = 1 is the model itself
    view = next(ue.iter_batches(pop, "B2", "val", 32)).model_view()
    with pytest.raises(NotImplementedError):
        im.mixed(model, interp, mixes["m"])(view)


def test_a_run_writes_mean_rows_with_rmse_and_ruled_rows_with_mae(pop: ue.UserPopulation) -> None:
    base = ue.v2_baseline_models(pop)
    rows, rec = im.run_seed(pop, LastCall(base["blend"]), "stand_in", "test")
    out = im.build({0: rows}, "stand_in", 3, "test", "")
    kinds = {(r["model"], r["metric"].split("/")[0], r["kind"]) for r in out}
    assert ("stand_in+interp", "rmse_all", "ours") in kinds and ("stand_in+interp@mae", "mae_all", "ours") in kinds
    assert ("blend_smooth+interp", "rmse_all", "baseline") in kinds
    assert not any(m.endswith("@mae") and k == "rmse_all" or not m.endswith("@mae") and k == "mae_all"
                   for m, k, _ in kinds)
    assert set(rec["mix"]["chosen"]) == {"stand_in", *im.MIXED_BASELINES}


def test_the_command_scores_a_shipped_checkpoint(tmp_path) -> None:
    import json
    from pathlib import Path

    ckpt = Path(__file__).resolve().parents[1] / "checkpoints" / "umask_small_v9"
    out = tmp_path / "mix.json"
    assert im.main(["--ckpt", str(ckpt), "--name", "v9", "--seeds", "0", "--users", "3", "--no-baseline-rows",
                    "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert {r["model"] for r in doc["rows"]} == {"v9+interp", "v9+interp@mae"} and {r["kind"] for r in doc["rows"]} == {"ours"}
    assert set(doc["meta"]["weights"]["0"]["chosen"]) == {"v9", *im.MIXED_BASELINES}     # baselines still calibrated
