"""U-MASK with the deterministic "blend" prior (UMaskConfig.prior, issue "U-MASK that wins").

The prior (data.blend_prior / window_prior) reads evidence-eligible data only; the DiT built with it
starts as exactly the prior (zero-initialized residual head); the default "none" leaves configs,
items and the network as they were. On a few SYNTHETIC simulator users.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from umask.runtime.core.errors import InputError
from umask.train.diffusion import make_sampler
from umask.train.models.umask.data import (COLD, IMPUTE, LONG, SHORT, UserWindowDataset, WindowConfig, blend_prior,
                                           collate, history_tod_sums, simulated_users, val_windows, window_prior)
from umask.train.models.umask.dit import DiT
from umask.train.models.umask.model import UMask, UMaskConfig, umask_config
from umask.runtime.families.umask.prior import prior_weight

torch.set_num_threads(1)

TINY = WindowConfig(context=12, horizon=4, short_horizon=2, cold_max_active=4)


@pytest.fixture(scope="module")
def users():
    return simulated_users(4, seed=0)


def _cfg(users, prior: str) -> UMaskConfig:
    C, _, H, W = users[0].tensor.shape
    return umask_config("tiny", prior=prior).with_data(C, H, W, int(users[0].e_pos.shape[-1]))


def _reference_prior(x, avail, start, hs, hc, spd, weight=0.5, counted=None):
    """Loop-by-loop definition of the blend prior (data.blend_prior's docstring)."""
    C, T, H, W = x.shape
    out = np.zeros_like(x, dtype=np.float64)
    for c in range(C):
        for h in range(H):
            for w in range(W):
                av = [s for s in range(T) if avail[s, h, w]]
                for t in range(T):
                    before = [s for s in av if s <= t]
                    after = [s for s in av if s > t]
                    lv = x[c, before[-1], h, w] if before else (x[c, after[0], h, w] if after else 0.0)
                    tod = (start + t) % spd
                    obs = [x[c, s, h, w] for s in av if (start + s) % spd == tod]
                    if counted is not None:   # counted, not available: observed zeros
                        obs += [0.0 for s in range(T) if counted[s, h, w] and not avail[s, h, w]
                                and (start + s) % spd == tod]
                    tot = sum(obs) + (hs[c, tod, h, w] if hs is not None else 0.0)
                    n = len(obs) + (hc[tod] if hc is not None else 0)
                    out[c, t, h, w] = weight * lv + (1 - weight) * tot / n if n > 0 else lv
    return out


@pytest.mark.parametrize("with_history,with_counted", [(True, False), (False, False), (False, True)])
def test_blend_prior_matches_its_definition(with_history: bool, with_counted: bool) -> None:
    rng = np.random.default_rng(0)
    C, T, H, W, spd, start = 2, 11, 2, 3, 4, 3
    x = rng.random((C, T, H, W)).astype(np.float32)
    avail = rng.random((T, H, W)) < 0.4
    avail[:, 1, 2] = False                                    # one cell with no available slot at all
    hs = rng.random((C, spd, H, W)) * 3 if with_history else None
    hc = np.array([2, 0, 3, 1]) if with_history else None    # slot of day 1: no earlier day
    counted = None
    if with_counted:                                           # cold start: the first 7 slots count, unseen = 0
        counted = np.zeros((T, H, W), bool)
        counted[:7] = True
    got = blend_prior(x, avail[None].astype(np.float32), start, hs, hc, spd, counted=counted)
    assert got.shape == x.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, _reference_prior(x, avail, start, hs, hc, spd, counted=counted),
                               rtol=1e-5, atol=1e-6)


def test_history_sums_are_the_dense_history(users) -> None:
    t = users[1].tensor
    spd = t.slots_per_day
    for end in (0, 37, 2 * spd, 2 * spd + 5):
        sums, counts = history_tod_sums(t, end)
        ref = np.zeros_like(sums)
        d = t.dense(0, end)
        for s in range(end):
            ref[:, s % spd] += d[:, s]
        np.testing.assert_allclose(sums, ref, rtol=1e-6, atol=1e-6)
        assert counts.tolist() == np.bincount(np.arange(end) % spd, minlength=spd).tolist()


@pytest.mark.parametrize("kind", ["blend", "task_blend", "horizon_blend", "smooth_blend", "smooth_interp"])
def test_prior_never_reads_targets_or_the_future(users, kind: str) -> None:
    """Changing the target values (and everything not available, and the tensor from the window
    start on) must not change any item's prior, for every task."""
    cfg = replace(WindowConfig(), prior=kind)
    ds = UserWindowDataset(users, cfg, data_seed=1)
    rng = np.random.default_rng(5)
    for task in (SHORT, LONG, COLD, IMPUTE):
        for i in np.flatnonzero(ds.windows[:, 2] == task)[[3, 60, -1]]:
            it = ds[int(i)]
            u = users[int(it["user"])]
            x0, avail, target = it["x0"].numpy(), it["avail"].numpy(), it["target"].numpy()
            assert target.sum() > 0 and (avail * target).sum() == 0
            got = window_prior(u.tensor, int(it["start"]), x0, avail, task, cfg.context, kind)
            np.testing.assert_array_equal(got, it["prior"].numpy())
            noisy = np.where(avail > 0.5, x0, x0 + rng.random(x0.shape).astype(np.float32) * 5.0)
            np.testing.assert_array_equal(window_prior(u.tensor, int(it["start"]), noisy, avail, task, cfg.context,
                                                       kind), got)
            # the prior is not a copy of the truth: on targets with events it differs from x0 somewhere
            tm = np.broadcast_to(target > 0.5, x0.shape)
            assert not np.allclose(got[tm], x0[tm])
    # the history part uses slots strictly before the window start only
    t = users[0].tensor
    s1, c1 = history_tod_sums(t, 150)
    s2, c2 = history_tod_sums(t.slice_time(0, 150), 150)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(c1, c2)


def test_prior_uses_history_and_falls_back_to_last_value(users) -> None:
    u = users[2]
    C, _, H, W = u.tensor.shape
    T = 20
    x = u.tensor.dense(300, 300 + T)
    avail = np.zeros((1, T, H, W), np.float32)
    avail[:, :8] = 1.0
    with_hist = window_prior(u.tensor, 300, x, avail, SHORT, 8)
    cold = window_prior(u.tensor, 300, x, avail, COLD, 8)                 # no earlier days for cold start
    lv = np.broadcast_to(x[:, 7:8], (C, T - 8, H, W))
    # cold start, slots of day never available in the window: the last value alone
    np.testing.assert_allclose(cold[:, 8:], lv, atol=1e-7)
    hs, hc = history_tod_sums(u.tensor, 300)
    tod = (300 + np.arange(8, T)) % u.tensor.slots_per_day
    ha = hs[:, tod] / hc[tod][None, :, None, None]
    np.testing.assert_allclose(with_hist[:, 8:], 0.5 * lv + 0.5 * ha, rtol=1e-5, atol=1e-6)
    # "task_blend": the same two parts with the task's last value share (0.3 short term, 0.1 next day)
    for task, share in ((SHORT, 0.3), (LONG, 0.1), (IMPUTE, 0.3)):
        assert prior_weight("task_blend", task) == share
        got = window_prior(u.tensor, 300, x, avail, task, 8, "task_blend")
        np.testing.assert_allclose(got[:, 8:], share * lv + (1 - share) * ha, rtol=1e-5, atol=1e-6)
    assert prior_weight("task_blend", COLD) == 0.1 and prior_weight("blend", COLD) == 0.5
    # "horizon_blend" (v7): blend's 0.5 within hours of the evidence, task_blend's 0.1 a day ahead
    assert [prior_weight("horizon_blend", t) for t in (SHORT, LONG, COLD, IMPUTE)] == [0.5, 0.1, 0.1, 0.5]
    np.testing.assert_array_equal(window_prior(u.tensor, 300, x, avail, SHORT, 8, "horizon_blend"), with_hist)
    np.testing.assert_array_equal(window_prior(u.tensor, 300, x, avail, LONG, 8, "horizon_blend"),
                                  window_prior(u.tensor, 300, x, avail, LONG, 8, "task_blend"))
    cold_t = window_prior(u.tensor, 300, x, avail, COLD, 8, "task_blend")
    np.testing.assert_allclose(cold_t[:, 8:], lv, atol=1e-7)             # no slot-of-day mean there: lv alone
    counted = np.zeros((T, H, W), bool)
    counted[:8] = True
    np.testing.assert_array_equal(cold_t, blend_prior(x, avail, 300, None, None, u.tensor.slots_per_day, 0.1,
                                                      counted=counted))
    with pytest.raises(InputError, match="weighted prior"):
        window_prior(u.tensor, 300, x, avail, SHORT, 8, "none")


def test_task_blend_baseline_is_the_blend_with_the_task_share() -> None:
    """The blend_tuned baseline row (the prior of a task_blend model, as a row) = Blend with the task's share."""
    from umask.bench.accuracy import user as ue
    from umask.bench.accuracy.user_baselines import Blend, HistoricalAverage, TaskBlend

    pop = ue.simulated_population(3, 0)
    ha = HistoricalAverage(pop)
    tuned = TaskBlend(ha)
    for task, share in (("B1", 0.3), ("B2", 0.1), ("B4", 0.3)):
        batch = next(ue.iter_batches(pop, task, "val", batch_size=4))
        np.testing.assert_array_equal(tuned(batch), Blend(ha, share)(batch))
        assert not np.array_equal(tuned(batch), Blend(ha)(batch))


def test_default_leaves_configs_items_and_network_unchanged(users) -> None:
    cfg = _cfg(users, "none")
    d = cfg.to_dict()
    assert "prior" not in d and "prior" not in d["window"]
    assert UMaskConfig.from_dict(d) == cfg
    ds = UserWindowDataset(users, cfg.window)
    assert "prior" not in ds[0]
    m = UMask(cfg)
    dcfg = cfg.dit_config()
    t0, h0, w0 = dcfg.patch
    assert not m.dit.use_prior and m.dit.x_embedder.in_features == 3 * dcfg.channels * t0 * h0 * w0
    # the default DiT draws exactly the same initial weights as a DiT built the old way
    torch.manual_seed(3)
    a = DiT(dcfg)
    torch.manual_seed(3)
    b = DiT(dcfg, use_prior=False)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())

    blend = _cfg(users, "blend")
    bd = blend.to_dict()
    assert bd["prior"] == "blend" and bd["window"]["prior"] == "blend"
    assert UMaskConfig.from_dict(bd) == blend and blend.window.prior == "blend"
    assert UMask(blend).dit.x_embedder.in_features == 4 * dcfg.channels * t0 * h0 * w0
    with pytest.raises(InputError):
        umask_config("tiny", prior="median")
    with pytest.raises(InputError):
        WindowConfig(prior="x")


@pytest.mark.parametrize("point", ["mean", "first_x0"])
def test_fresh_model_completes_with_exactly_the_prior(users, point: str) -> None:
    cfg = _cfg(users, "blend")
    vw = val_windows(users, cfg.window)
    ds = UserWindowDataset(users, cfg.window, vw)
    rows = [int(i) for task in (SHORT, LONG, COLD, IMPUTE) for i in np.flatnonzero(vw[:, 2] == task)[[0, 7, -1]]]
    b = collate([ds[i] for i in rows])
    assert set(b["task"].tolist()) == {SHORT, LONG, COLD, IMPUTE}
    torch.manual_seed(0)
    m = UMask(cfg)
    out, hard = m.complete(b, make_sampler("ddim", m.schedule), 4, 2, seed=1, return_mask=True, point=point)
    ev = hard.expand_as(out) > 0.5
    tgt = b["target"].expand_as(out) > 0.5
    assert ev.any() and tgt.any()
    torch.testing.assert_close(out[tgt], b["prior"][tgt], rtol=0, atol=1e-6)
    torch.testing.assert_close(out[ev], b["x0"][ev], rtol=0, atol=0)
    # without the prior in the batch the prior model refuses, by name
    with pytest.raises(InputError, match="prior"):
        m.complete({k: v for k, v in b.items() if k != "prior"}, make_sampler("ddim", m.schedule), 2)
    with pytest.raises(InputError):
        m.complete(b, make_sampler("ddim", m.schedule), 2, point="mode")


def test_residual_learns_and_loss_is_on_targets(users) -> None:
    """A few optimizer steps move the completion off the prior (the zero head gets a gradient), and
    the training loss at init is the prior's own squared error on the targets (eq. 19)."""
    cfg = replace(_cfg(users, "blend"), w_nce=0.0, w_budget=0.0, w_context=0.0)
    ds = UserWindowDataset(users, cfg.window)
    b = collate([ds[i] for i in range(0, len(ds), len(ds) // 16)][:16])
    torch.manual_seed(0)
    m = UMask(cfg)
    loss, parts = m(b, generator=torch.Generator().manual_seed(0))
    sq = ((b["prior"] - b["x0"]) ** 2).mean(1, keepdim=True)
    tgt = b["target"]
    ref = ((sq * tgt).flatten(1).sum(1) / tgt.flatten(1).sum(1).clamp_min(1)).mean()
    torch.testing.assert_close(parts["target"], ref, rtol=1e-5, atol=1e-7)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    for step in range(3):
        opt.zero_grad()
        loss, _ = m(b, generator=torch.Generator().manual_seed(step))
        loss.backward()
        opt.step()
    out = m.complete(b, make_sampler("ddim", m.schedule), 2, 1, seed=0, point="first_x0")
    tm = tgt.expand_as(out) > 0.5
    assert (out[tm] - b["prior"][tm]).abs().max() > 1e-4


def test_task_shares_are_the_validation_choice() -> None:
    """TASK_PRIOR_WEIGHTS (frozen in the runtime) = the shares the committed validation grid picks by its rule
    (benchmarks/results/blend_weights_val.json, `python -m umask.bench.accuracy.user_blend_weights`)."""
    import json
    from pathlib import Path

    from umask.bench.accuracy.user_blend_weights import GRID, choose
    from umask.bench.accuracy.user_tasks import TASK_OF
    from umask.runtime.families.umask.prior import TASK_PRIOR_WEIGHTS

    res = json.loads((Path(__file__).resolve().parents[1] / "benchmarks/results/blend_weights_val.json").read_text())
    assert res["meta"]["grid"] == list(GRID) and set(res["chosen"]) == set(TASK_OF)
    for b, task in TASK_OF.items():
        rmse = {float(w): v for w, v in res["rmse"][b].items()}
        assert choose(rmse) == res["chosen"][b] == TASK_PRIOR_WEIGHTS[task]
        assert all(rmse[res["chosen"][b]][g] <= rmse[0.5][g] for g in ("traffic", "app", "location"))
    assert choose({0.5: {"traffic": 1.0, "app": 1.0, "location": 1.0},
                   0.1: {"traffic": 0.5, "app": 1.2, "location": 1.0}}) == 0.1     # mean ratio 0.9 < 1


def test_smooth_prior_constants_are_the_validation_choice() -> None:
    """SMOOTH_MINUTES / SMOOTH_PRIOR_WEIGHTS (the "smooth_blend" prior of v9) = what the committed validation grid
    picks by its rule (blend_weights_val.json "smooth"), and the kernel beats the raw mean at the chosen share."""
    import json
    from pathlib import Path

    from umask.bench.accuracy.user_blend_weights import PRIOR_WEIGHT, SMOOTH_GRID, SMOOTH_SHARES, choose_smooth
    from umask.bench.accuracy.user_tasks import TASK_OF
    from umask.runtime.families.umask.prior import SMOOTH_MINUTES, SMOOTH_PRIOR_WEIGHTS

    res = json.loads((Path(__file__).resolve().parents[1] / "benchmarks/results/blend_weights_val.json").read_text())
    sm = res["smooth"]
    assert sm["grid_minutes"] == list(SMOOTH_GRID) and sm["grid_shares"] == list(SMOOTH_SHARES) and sm["agree"]
    table = {b: {float(m): {float(w): v for w, v in ws.items()} for m, ws in sm["rmse"][b].items()} for b in TASK_OF}
    ref = {b: res["rmse"][b][str(PRIOR_WEIGHT)] for b in TASK_OF}
    minutes, shares = choose_smooth(table, ref)
    assert minutes == sm["chosen_minutes"] == SMOOTH_MINUTES
    for b, task in TASK_OF.items():
        w = shares[b]
        assert w == SMOOTH_PRIOR_WEIGHTS[task] == sm["chosen"][b]
        raw = res["rmse"][b].get(str(w))
        # the raw blend of the same share: the kernel wins. Not on B4: the raw rows' historical_average averages
        # days 1-5, which on the validation window (days 5-6) reads day 5's hidden entries (user_baselines).
        if raw is not None and b != "B4":
            assert all(table[b][minutes][w][g] < raw[g] for g in ("traffic", "app", "location"))


def test_smooth_blend_prior_is_a_kernel_estimate_and_reads_no_target() -> None:
    """blend_prior with smooth_slots: the slot-of-day part is (K sums) / (K counts), so an evidence slot informs
    neighbouring slots of day (a forecast target right after the context gets a mean where the raw prior has
    none), a constant signal stays constant, and target values never enter."""
    from umask.runtime.families.umask.prior import blend_prior, prior_smooth_slots, tod_kernel

    rng = np.random.default_rng(0)
    spd, C, H, W, T = 96, 2, 2, 2, 8
    x = rng.random((C, T, H, W)).astype(np.float32)
    avail = np.zeros((T, H, W), np.float32)
    avail[:4] = 1                                              # context 4 slots, then 4 target slots
    sig = prior_smooth_slots("smooth_blend", spd)
    assert sig == pytest.approx(12.0) and prior_smooth_slots("horizon_blend", spd) == 0.0
    raw = blend_prior(x, avail, 10, None, None, spd, 0.0)
    sm = blend_prior(x, avail, 10, None, None, spd, 0.0, smooth_slots=sig)
    lv = x[:, 3]                                               # raw: no mean at the targets' slots of day -> lv
    np.testing.assert_allclose(raw[:, 4:], np.broadcast_to(lv[:, None], raw[:, 4:].shape), rtol=1e-6)
    K = tod_kernel(spd, sig)
    tod = 10 + np.arange(4)
    want = np.einsum("s,cshw->chw", K[14, tod], x[:, :4]) / K[14, tod].sum()
    np.testing.assert_allclose(sm[:, 4], want, rtol=1e-5)      # slot 14: kernel-weighted mean of slots 10-13
    x2 = x.copy()
    x2[:, 4:] = 99.0                                           # target values never enter
    np.testing.assert_array_equal(blend_prior(x2, avail, 10, None, None, spd, 0.2, smooth_slots=sig),
                                  blend_prior(x, avail, 10, None, None, spd, 0.2, smooth_slots=sig))
    const = np.full((C, T, H, W), 0.25, np.float32)
    hist = (np.full((C, spd, H, W), 0.25 * 6), np.full(spd, 6))
    np.testing.assert_allclose(blend_prior(const, avail, 10, *hist, spd, 0.2, smooth_slots=sig), 0.25, rtol=1e-5)


def test_bundle_prior_parameters_must_be_the_runtimes() -> None:
    """check_prior_note (Session.open): a bundle whose recorded shares or kernel width differ from what this runtime
    builds for its kind is refused with the field named; a note from before the kernel (no smooth_minutes) is a
    raw-mean prior; a model without a prior or a manifest without a note passes."""
    from umask.runtime.families.umask.prior import (PRIOR_SMOOTH_MINUTES, TASK_NAMES, check_prior_note,
                                                    prior_weight)

    for kind in ("blend", "task_blend", "horizon_blend", "smooth_blend"):
        note = {"kind": kind, "weight_last_value": {t: prior_weight(kind, i) for i, t in enumerate(TASK_NAMES)},
                "smooth_minutes": PRIOR_SMOOTH_MINUTES[kind]}
        check_prior_note(kind, note, "m.json")
        with pytest.raises(InputError, match="weight_last_value.long_term"):
            check_prior_note(kind, {**note, "weight_last_value": {**note["weight_last_value"], "long_term": 0.77}}, "m")
        with pytest.raises(InputError, match="smooth_minutes"):
            check_prior_note(kind, {**note, "smooth_minutes": 45.0}, "m.json")
        with pytest.raises(InputError, match="must be a number"):
            check_prior_note(kind, {**note, "smooth_minutes": "wide"}, "m.json")
    old = {"kind": "horizon_blend", "weight_last_value": {"short_term": 0.5, "long_term": 0.1}}   # v7-era bundle
    check_prior_note("horizon_blend", old, "m.json")
    with pytest.raises(InputError, match="smooth_minutes = 0"):
        check_prior_note("smooth_blend", {"kind": "smooth_blend"}, "m.json")
    with pytest.raises(InputError, match="kind"):
        check_prior_note("smooth_blend", {"kind": "blend"}, "m.json")
    check_prior_note("none", {"kind": "anything"}, "m.json")
    check_prior_note("blend", None, "m.json")


def test_smooth_interp_interpolates_imputation_gaps_only() -> None:
    """"smooth_interp" (v11): on an imputation window the last value becomes the linear interpolation between the
    available slots around each gap (ends: the nearest available value); other tasks get "smooth_blend"'s prior."""
    from umask.runtime.families.umask.prior import INTERP_SHARE, task_prior

    spd, T = 96, 12
    x = np.zeros((2, T, 1, 1), np.float32)
    avail = np.zeros((1, T, 1, 1), np.float32)
    for s, v in ((2, 1.0), (6, 3.0), (9, 0.0)):                  # available slots and their (channel 0) values
        x[0, s], avail[0, s] = v, 1.0
    x[1] = np.where(avail[0] > 0.5, 0.0, 7.0)                     # channel 1: 7 only where hidden, never read
    lin = np.interp(np.arange(T), [2, 6, 9], [1.0, 3.0, 0.0])     # linear between them, constant at the ends
    got = task_prior(x, avail, 0, IMPUTE, 0, None, spd, weight=1.0, interpolate=True)
    np.testing.assert_allclose(got[0, :, 0, 0], lin, rtol=1e-6)
    assert np.all(got[1] == 0.0)
    step = task_prior(x, avail, 0, IMPUTE, 0, None, spd, weight=1.0)   # without: the last value carried forward
    np.testing.assert_allclose(step[0, :, 0, 0], [1, 1, 1, 1, 1, 1, 3, 3, 3, 0, 0, 0])
    for task in (SHORT, LONG, COLD):                              # no evidence after a forecast target: unchanged
        np.testing.assert_array_equal(task_prior(x, avail, 0, task, 4, None, spd, 0.3, interpolate=True),
                                      task_prior(x, avail, 0, task, 4, None, spd, 0.3))
    assert prior_weight("smooth_interp", IMPUTE) == INTERP_SHARE and prior_weight("smooth_interp", SHORT) == \
        prior_weight("smooth_blend", SHORT)


def test_interp_share_is_the_validation_choice() -> None:
    """INTERP_SHARE = the share of the kernel mean's mix with interpolation that the committed B4 validation runs
    choose most often (v2_user_impute_mix.json, row historical_average_smooth+interp; w = the kernel's share)."""
    import json
    from collections import Counter
    from pathlib import Path

    from umask.runtime.families.umask.prior import INTERP_SHARE

    res = json.loads((Path(__file__).resolve().parents[1] / "benchmarks/results/v2_user_impute_mix.json").read_text())
    chosen = Counter(w for seed in res["meta"]["weights"].values()
                     for w in seed["chosen"]["historical_average_smooth"].values())
    assert chosen.most_common(1)[0][0] == 1.0 - INTERP_SHARE
