"""The U-MASK -> PROTOCOL B adapter (benchmarks/umask_eval.py) on a tiny checkpoint trained here.

The "tiny" model config has a 16-slot window; the fixture trains it for a few steps with the
PROTOCOL window (192 + 96 slots) instead, so real harness batches fit; the stock tiny window is
used to check that a mismatched window is rejected. SYNTHETIC users, one torch thread.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from umask.bench.accuracy import user_umask as me
from umask.bench.accuracy import user as ue
from umask.runtime.core.errors import InputError
from umask.train.models.umask.dit import TASKS
from umask.train.models.umask.trainer import TrainConfig, train
from umask.train.models.umask.model import UMASK_CONFIGS, UMask

torch.set_num_threads(1)
N_USERS = 4
PROTOCOL_WINDOW = {"context": 192, "horizon": 96, "short_horizon": 4, "cold_max_active": 20}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("umask_eval")
    cfg = TrainConfig(model="tiny", model_overrides={"window": PROTOCOL_WINDOW}, steps=3, warmup=1, batch_size=4,
                      lr=2e-3, n_users=N_USERS, sim_seed=0, sbert_cache=str(d / "sbert"), out=str(d / "run"),
                      progress=False, log_every=1, ckpt_every=10, seed=0)
    return train(cfg)


@pytest.fixture(scope="module")
def pop() -> ue.UserPopulation:
    return ue.simulated_population(N_USERS, seed=0)


@pytest.fixture(scope="module")
def pred(ckpt: Path) -> me.UMaskPredictor:
    return me.umask_predictor(ckpt, steps=2, n_samples=2, seed=0)


def _first(pop: ue.UserPopulation, task: str, n: int = 3) -> ue.TaskBatch:
    return next(ue.iter_batches(pop, task, "test", n))


def test_checkpoint_resolution(ckpt: Path) -> None:
    run = ckpt.parent.parent
    assert me.resolve_checkpoint(run) == ckpt
    assert me.resolve_checkpoint(run / "ckpt" / "latest") == ckpt
    assert me.resolve_checkpoint(ckpt) == ckpt
    with pytest.raises(InputError):
        me.resolve_checkpoint(run / "nothing")


def test_same_population_as_training(pop: ue.UserPopulation, pred: me.UMaskPredictor) -> None:
    assert me.population_matches(pop, pred.config)
    assert not me.population_matches(me.subset_population(pop, 2), pred.config)


@pytest.mark.parametrize("task", ue.TASKS)
def test_shapes_layout_and_evidence(pop: ue.UserPopulation, pred: me.UMaskPredictor, task: str) -> None:
    b = _first(pop, task)
    mb = pred.model_batch(b.model_view())
    T, ctx = 288, 192
    assert mb["x0"].shape == (b.n, 22, T, 4, 4) and mb["avail"].shape == (b.n, 1, T, 4, 4)
    assert (mb["task"] == TASKS.index(me.TASK_OF[task])).all()
    np.testing.assert_array_equal(mb["avail"][:, :, :ctx].numpy(), b.avail)
    assert mb["avail"][:, :, ctx:].sum() == 0                          # the horizon is never evidence
    np.testing.assert_array_equal(mb["x0"][:, :, :ctx].numpy(), b.x_context)
    assert mb["x0"][:, :, ctx:].abs().sum() == 0                       # no target leaks into x0
    np.testing.assert_array_equal(mb["e_pos"].numpy(), b.e_pos)
    assert mb["profile_emb"].shape == (b.n, 384)
    tgt = mb["target"].numpy()
    if task == "B4":
        np.testing.assert_array_equal(tgt[:, :, :ctx] > 0, b.eval_mask)
    else:
        assert tgt[:, :, ctx:ctx + b.horizon].all() and tgt.sum() == b.n * b.horizon * 16

    y = pred(b.model_view())
    assert y.shape == b.truth.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert y.min() >= 0.0 and y[:, b.channels.location_index].max() <= 1.0
    if task == "B4":                                                  # observed coordinates = the evidence
        obs = np.broadcast_to(b.avail, y.shape)
        np.testing.assert_array_equal(y[obs], b.x_context[obs])


def test_deterministic_for_a_seed(pop: ue.UserPopulation, pred: me.UMaskPredictor, ckpt: Path) -> None:
    b = _first(pop, "B2", 2).model_view()
    y1, y2 = pred(b), pred(b)
    np.testing.assert_array_equal(y1, y2)
    again = me.umask_predictor(ckpt, steps=2, n_samples=2, seed=0)
    np.testing.assert_array_equal(again(b), y1)
    other = me.umask_predictor(ckpt, steps=2, n_samples=2, seed=1)
    assert not np.array_equal(other(b), y1)


def test_b3_profiles_come_from_the_batch(pop: ue.UserPopulation, pred: me.UMaskPredictor) -> None:
    b = _first(pop, "B3", N_USERS)
    emb, present = pred.profile_inputs(b.profiles)
    assert present.tolist() == [p is not None for p in b.profiles]
    assert np.all(emb[~present] == 0)
    # a window without statistics is handled (the "no profile" embedding), not an error
    b.profiles[0] = None
    y = pred(b.model_view())
    assert np.isfinite(y).all()


def test_mismatched_window_is_rejected(pop: ue.UserPopulation) -> None:
    torch.manual_seed(0)
    cfg = UMASK_CONFIGS["tiny"].with_data(22, 4, 4, 15)               # stock tiny: 12 + 4 slots
    p = me.UMaskPredictor(UMask(cfg), {}, steps=1, n_samples=1, profile_source="none")
    for task in ("B2", "B4"):
        with pytest.raises(InputError, match="192"):
            p(_first(pop, task, 1).model_view())


def test_real_sample_and_harness_rows(ckpt: Path) -> None:
    # profile_source="none" keeps this fast (the real windows' profiles are new SBERT texts; B3 covers that path)
    pred = me.umask_predictor(ckpt, steps=1, n_samples=2, seed=0, profile_source="none")
    real = ue.real_population()
    rows = ue.evaluate_real_sample({"umask": pred}, population=real, model_info={"umask": pred.info()})
    (r,) = rows
    assert r["n_windows"] == 6 * len(ue.REAL_TARGET_STARTS)
    assert r["samples"] == 2 and r["steps"] == 1 and r["seeds"]["model"] == [0] and r["profile_input"] == "none"
    assert r["training"]["checkpoint_step"] == 3 and "--config tiny" in r["training"]["command"]


def test_main_b1_subset_and_files(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "u.json"
    rc = me.main(["--ckpt", str(ckpt), "--name", "tiny_umask", "--users", "2", "--tasks", "B1,B4",
                  "--b1-every", "4", "--steps", "1", "--samples", "1", "--no-real", "--out", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    rows = {(r["task_id"], r["model"]): r for r in data["rows"]}
    assert {m for _, m in rows} == {"tiny_umask", "all_zero", "last_value", "historical_average", "seasonal_naive",
                                    "linear_interpolation", "blend", "blend_tuned", "historical_average_all",
                                    "blend_tuned_all", "historical_average_smooth", "blend_smooth",
                                    "lightgbm"}   # the PROTOCOL v2 baselines
    b1 = rows[("B1", "tiny_umask")]
    assert b1["n_windows"] == 2 * 6 and b1["n_users"] == 2 and "subset" in b1["window"]
    assert rows[("B1", "last_value")]["n_windows"] == 2 * 6             # baselines on the same windows
    assert rows[("B4", "tiny_umask")]["n_windows"] == 2
    md = out.with_suffix(".md").read_text()
    assert "tiny_umask" in md and "## Summary" in md
    assert ue.iter_batches.__name__ == "iter_batches"                    # the B1 filter is undone


def test_evidence_diagnostics(pop: ue.UserPopulation, pred: me.UMaskPredictor) -> None:
    b = _first(pop, "B4", 2)
    rows = me.evidence_diagnostics(pred, b, timesteps=(999, 500))
    assert [r["t"] for r in rows] == [999, 500, "complete()"]
    r = rows[0]
    assert r["snr_location_1"] < 0.01 < rows[1]["snr_location_1"]
    assert r["mean_abs_effect_of_evidence"] >= 0 and 0 < r["evidence_share_of_avail"] <= 1
    with pytest.raises(InputError):
        me.evidence_diagnostics(pred, b.model_view())


def test_context_override_and_window_fit(pop: ue.UserPopulation) -> None:
    torch.manual_seed(0)
    cfg = UMASK_CONFIGS["tiny"].with_data(22, 4, 4, 15)               # stock tiny: 12 + 4 slots
    model = UMask(cfg)
    strict = me.UMaskPredictor(model, {}, steps=1, n_samples=1, profile_source="none")
    why = me.window_fit(strict, "B1", "tiny_umask")
    assert why is not None and "12 context + 4 horizon" in why and "--context-slots 12" in why
    p = me.UMaskPredictor(model, {}, steps=1, n_samples=1, profile_source="none", context_slots=12)
    assert me.window_fit(p, "B1") is None and me.window_fit(p, "B4") is None
    assert "no --context-slots override helps" in me.window_fit(p, "B2")
    with pytest.raises(InputError, match="context-slots 13"):
        me.UMaskPredictor(model, {}, profile_source="none", context_slots=13)
    b = _first(pop, "B1", 2)
    fb, chunks = p.fit_context(b.model_view())
    assert chunks == 1 and fb.Tc == 12 and fb.target_offset == 12 and fb.horizon == b.horizon
    np.testing.assert_array_equal(fb.x_context, b.x_context[:, :, -12:])
    np.testing.assert_array_equal(fb.context_starts, b.context_starts + 180)
    np.testing.assert_array_equal(fb.starts, b.starts)                 # the protocol's targets
    assert p(b.model_view()).shape == b.truth.shape
    b4 = _first(pop, "B4", 2)
    fb, chunks = p.fit_context(b4.model_view())
    assert chunks == 16 and fb.n == 2 * 16 and fb.Tc == fb.horizon == 12
    np.testing.assert_array_equal(fb.x_context[16 + 3], b4.x_context[1, :, 36:48])   # user 1, chunk 3
    y = p(b4.model_view())
    assert y.shape == b4.truth.shape
    obs = np.broadcast_to(b4.avail, y.shape)                           # chunks reassembled in order
    np.testing.assert_array_equal(y[obs], b4.x_context[obs])


def test_prior_model_gets_its_prior_from_the_harness(pop: ue.UserPopulation) -> None:
    """A prior='blend' model scored by the harness: the predictor builds data.window_prior from the attached
    population; a fresh model (zero-init residual) then returns exactly that prior on the target, and the
    x0 point estimate is the default. Without the population it refuses by name."""
    from dataclasses import replace

    from umask.train.models.umask.data import WindowConfig, window_prior

    torch.manual_seed(0)
    cfg = replace(UMASK_CONFIGS["tiny"], window=WindowConfig(context=192, horizon=96), prior="blend")
    cfg = cfg.with_data(22, 4, 4, 15)
    p = me.UMaskPredictor(UMask(cfg), {}, steps=1, n_samples=1, profile_source="none", clip=False)
    assert p.prior == "blend" and p.point == "first_x0" and "prior blend" in p.info()["point_forecast"]
    b = _first(pop, "B2", 2)
    with pytest.raises(InputError, match="attach_population"):
        p(b.model_view())
    p.attach_population(pop)
    y = p(b.model_view())                                       # (n, C, 96, H, W)
    mb = p.model_batch(b)
    ref = []
    for i, (u, s) in enumerate(zip(b.users, b.context_starts)):
        t = pop.features[int(u)].tensor
        ref.append(window_prior(t, int(s), mb["x0"][i].numpy(), mb["avail"][i].numpy(), TASKS.index("long_term"), 192)
                   * t.channels.present[:, None, None, None])
    ref = np.stack(ref)[:, :, 192:288]
    assert np.abs(ref).sum() > 0
    np.testing.assert_allclose(y, ref, atol=1e-5)
