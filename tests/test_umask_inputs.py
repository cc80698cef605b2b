"""The optional DiT inputs of the per-user U-MASK (issue "U-MASK that wins"): the slot calendar and the POI
embedding E_pos as token terms (eq. 33), the mask generator's h_b in the condition (eq. 19), and the median
point estimate. On a few SYNTHETIC simulator users (tiny config)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
import torch

from umask.train.diffusion import make_sampler
from umask.train.models.umask.data import (CAL_DIM, UserWindowDataset, WindowConfig, collate, simulated_users,
                                           slot_calendar)
from umask.train.models.umask.dit import DiT, dit_config
from umask.train.models.umask.model import UMask, UMaskConfig, umask_config

torch.set_num_threads(1)

DAY = 86400
FLAGS = {"dit_calendar": True, "dit_epos": True, "dit_hb": True}


@pytest.fixture(scope="module")
def users():
    return simulated_users(4, seed=0)


def _cfg(users, **kw) -> UMaskConfig:
    C, _, H, W = users[0].tensor.shape
    return umask_config("tiny", **kw).with_data(C, H, W, int(users[0].e_pos.shape[-1]))


def test_slot_calendar_knows_the_weekday_and_the_slot_of_day() -> None:
    start_ts = (date(2016, 4, 20) - date(1970, 1, 1)).days * DAY      # a Wednesday, the simulator's first day
    cal = slot_calendar(start_ts, 900, 0, 7 * 96)
    assert cal.shape == (7 * 96, CAL_DIM) and cal.dtype == np.float32
    weekend = cal[::96, 4]
    assert weekend.tolist() == [0, 0, 0, 1, 1, 0, 0]                  # Wed Thu Fri Sat Sun Mon Tue
    # slot of day: 06:00 (slot 24) is a quarter turn; the same slot on another day has the same code
    np.testing.assert_allclose(cal[24, :2], [1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(cal[24 + 3 * 96, :2], cal[24, :2], atol=1e-6)
    # a window starting mid-history is the same slice of the calendar
    np.testing.assert_array_equal(slot_calendar(start_ts, 900, 150, 10), cal[150:160])


def test_items_carry_the_calendar_only_when_asked(users) -> None:
    w = WindowConfig(context=12, horizon=4, short_horizon=2, cold_max_active=4)
    assert "cal" not in UserWindowDataset(users, w)[0]
    on = UserWindowDataset(users, WindowConfig(**{**w.to_dict(), "calendar": True}))
    it = on[5]
    u = users[it["user"]].tensor
    np.testing.assert_array_equal(it["cal"].numpy(), slot_calendar(u.start_ts, u.slot_seconds, it["start"], 16))


def test_extra_tokens_follow_the_patch_layout() -> None:
    cfg = dit_config("tiny", channels=3)
    net = DiT(cfg, cal_dim=CAL_DIM, poi_dim=6)
    t0, h0, w0 = cfg.patch
    gt, gh, gw = cfg.grid
    g = torch.Generator().manual_seed(0)
    cal = torch.randn(2, cfg.T, CAL_DIM, generator=g)
    e_pos = torch.randn(2, cfg.H, cfg.W, 6, generator=g)
    torch.set_grad_enabled(False)
    base = net.extra_tokens(cal, e_pos).reshape(2, gt, gh, gw, -1)
    cal2 = cal.clone()
    cal2[:, t0:2 * t0] += 1.0                                          # the slots of time token 1 only
    d = (net.extra_tokens(cal2, e_pos).reshape(2, gt, gh, gw, -1) - base).abs().amax(-1)
    assert bool((d[:, 1] > 0).all()) and float(d[:, [0, *range(2, gt)]].max()) == 0.0
    e2 = e_pos.clone()
    e2[:, h0:2 * h0, :w0] += 1.0                                       # the cells of spatial patch (1, 0) only
    d = (net.extra_tokens(cal, e2).reshape(2, gt, gh, gw, -1) - base).abs().amax(-1)
    assert bool((d[:, :, 1, 0] > 0).all())
    d[:, :, 1, 0] = 0.0
    assert float(d.max()) == 0.0
    torch.set_grad_enabled(True)


def test_default_config_has_no_new_inputs(users) -> None:
    cfg = _cfg(users)
    d = cfg.to_dict()
    assert not {"dit_calendar", "dit_epos", "dit_hb"} & set(d) and "calendar" not in d["window"]
    m = UMask(cfg)
    assert m.dit.cal_embedder is None and m.dit.poi_embedder is None and m.dit.hb_embedder is None
    on = _cfg(users, prior="blend", **FLAGS)
    assert UMaskConfig.from_dict(on.to_dict()) == on and on.window.calendar


def test_model_with_every_input_starts_at_the_prior_and_then_uses_them(users) -> None:
    cfg = _cfg(users, prior="blend", **FLAGS)
    torch.manual_seed(0)
    model = UMask(cfg)
    ds = UserWindowDataset(users, cfg.window)
    batch = collate([ds[i] for i in range(0, len(ds), max(1, len(ds) // 6))][:6])
    assert batch["cal"].shape == (6, cfg.window.T, CAL_DIM)
    loss, parts = model(batch, generator=torch.Generator().manual_seed(1))
    loss.backward()
    # every new input's embedder gets a gradient once the (zero-initialized) heads move: here through the blocks
    assert torch.isfinite(loss)
    sampler = make_sampler("ddim", model.schedule)
    out, hard = model.complete(batch, sampler, 2, n_samples=1, point="first_x0", return_mask=True)
    # zero-initialized residual: an untrained model returns the prior off the evidence
    off = (hard.expand_as(out) < 0.5)
    np.testing.assert_allclose(out[off].numpy(), batch["prior"][off].numpy(), atol=1e-6)
    # once the output head is not zero, the calendar, E_pos and h_b change the prediction
    with torch.no_grad():
        torch.nn.init.normal_(model.dit.final_layer.linear.weight, std=0.02)
        for blk in model.dit.blocks:
            torch.nn.init.normal_(blk.adaLN_modulation[-1].weight, std=0.02)
    ref = model.complete(batch, sampler, 2, point="first_x0")
    for key in ("cal", "e_pos"):
        b2 = {**batch, key: batch[key] + 1.0}
        assert float((model.complete(b2, sampler, 2, point="first_x0") - ref).abs().max()) > 0
    orig = model.dit_extras
    model.dit_extras = lambda b, mo: {**orig(b, mo), "h_b": torch.zeros_like(orig(b, mo)["h_b"])}
    assert float((model.complete(batch, sampler, 2, point="first_x0") - ref).abs().max()) > 0


def test_missing_input_is_refused(users) -> None:
    cfg = _cfg(users, **FLAGS)
    model = UMask(cfg)
    ds = UserWindowDataset(users, cfg.window)
    batch = collate([ds[0], ds[1]])
    del batch["cal"]
    with pytest.raises(Exception, match="cal"):
        model(batch)


def test_median_point_is_the_median_of_the_samples(users) -> None:
    cfg = _cfg(users, prior="blend")
    torch.manual_seed(0)
    model = UMask(cfg).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.dit.final_layer.linear.weight, std=0.05)
    ds = UserWindowDataset(users, cfg.window)
    batch = collate([ds[i] for i in range(3)])
    sampler = make_sampler("ddim", model.schedule)
    med = model.complete(batch, sampler, 2, n_samples=3, seed=4, point="median")
    # the same three draws one by one (same generator stream): mask first, then the samples in order
    draws = []
    g = torch.Generator().manual_seed(4)
    h_u = model.user_repr(batch)
    _, hard, mo = model.evidence(batch, h_u, g, deterministic=True)
    from umask.train.diffusion import model_denoise_fn

    x_obs = model._scale(batch["x0"] * batch["avail"]) * hard
    prior = model.prior_input(batch)
    fn = model_denoise_fn(lambda *a: model.dit(*a, prior), x_obs, hard, h_u, batch["task"])
    for _ in range(3):
        draws.append(sampler.sample(fn, x_obs, hard, 2, generator=g))
    want = torch.stack(draws).median(0).values
    want = torch.where(hard.expand_as(want) > 0.5, batch["x0"], want)
    np.testing.assert_allclose(med.numpy(), want.numpy(), atol=1e-6)
