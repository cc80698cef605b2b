"""Tests of the U-MASK mask generator (train/models/umask/mask_generator.py): shapes, the exact budget
of section 4.3.3 (Algorithm 1 line 8) with the Gumbel top-k of eq. 16, the relaxation (unnumbered,
after eq. 20; gradients reach rho_tau, phi, psi),
cold-start exploration (eq. 18), bank-based single-user inference (eqs. 9-11), determinism and
ONNX export with onnxruntime parity."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from umask.train.models.umask.dit import DIT_CONFIGS, TASKS, task_id
from umask.train.models.umask.mask_generator import (MASKGEN_CONFIGS, NEG, MaskGenerator, MaskGenExport, maskgen_config)

torch.set_num_threads(1)


def _tiny(seed: int = 0, **overrides) -> MaskGenerator:
    torch.manual_seed(seed)
    return MaskGenerator(maskgen_config("tiny", **overrides))


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-30))).sum(1)


def _check_budget(out, avail: torch.Tensor) -> None:
    B = avail.shape[0]
    n = avail.flatten(1).sum(1)
    hard = out.hard.flatten(1)
    for name in ("mask", "hard", "soft", "ratio", "logits", "probs"):
        assert torch.isfinite(getattr(out, name)).all(), name
    assert set(torch.unique(hard).tolist()) <= {0.0, 1.0}
    assert torch.equal(hard.sum(1).long(), out.k)                       # exactly k_b ones
    assert bool((hard <= avail.flatten(1)).all())                        # only available coordinates
    want = torch.round(out.ratio.detach() * n)
    want = torch.minimum(torch.maximum(want, (n > 0).float()), n).long()
    assert torch.equal(out.k, want)                                      # section 4.3.3 budget formula
    assert bool(((out.soft >= 0) & (out.soft <= 1)).all())
    assert bool((out.soft.flatten(1) <= avail.flatten(1)).all())
    assert bool((out.probs[avail.flatten(1) == 0] == 0).all())
    assert bool((out.logits[avail.flatten(1) == 0] <= NEG / 2).all())
    sums = out.probs.sum(1)
    torch.testing.assert_close(sums, (n > 0).float(), atol=1e-5, rtol=0)
    assert out.k.shape == (B,) and out.k.dtype == torch.long


# ---- config ------------------------------------------------------------------------------------
def test_config_registry_matches_dit() -> None:
    assert set(MASKGEN_CONFIGS) == set(DIT_CONFIGS) == {"tiny", "small", "base"}
    for name, cfg in MASKGEN_CONFIGS.items():
        dit = DIT_CONFIGS[name]
        assert (cfg.channels, cfg.T, cfg.H, cfg.W, cfg.cond_dim) == (dit.channels, dit.T, dit.H, dit.W,
                                                                       dit.cond_dim)
        assert cfg.n_tasks == len(TASKS) and len(cfg.rho_init) == len(TASKS)
    assert maskgen_config("small", T=288).T == 288
    with pytest.raises(KeyError):
        maskgen_config("huge")
    with pytest.raises(ValueError):
        maskgen_config("tiny", rho_init=(0.5, 0.5))
    with pytest.raises(ValueError):
        maskgen_config("tiny", cold_eps=1.0)


# ---- shapes ------------------------------------------------------------------------------------
def test_shapes_tiny() -> None:
    model = _tiny()
    cfg = model.cfg
    B, N = 3, cfg.T * cfg.H * cfg.W
    x, avail, h_u, task, e_pos = model.example_inputs(B)
    out = model(x, avail, h_u, task, e_pos)
    for name in ("mask", "hard", "soft"):
        assert getattr(out, name).shape == (B, 1, cfg.T, cfg.H, cfg.W), name
    assert out.k.shape == out.ratio.shape == (B,)
    assert out.logits.shape == out.probs.shape == (B, N)
    f = out.features
    for name in ("h_b", "F_short", "F_long", "F_pat", "e_b"):
        assert f[name].shape == (B, cfg.d_hidden), name
    assert f["gamma_b"].shape == f["s_b"].shape == f["rho_tau"].shape == (B,)
    assert f["q"].shape == (B, cfg.n_groups)
    assert f["phi"].shape == (B, cfg.T) and f["psi"].shape == (B, cfg.H, cfg.W)
    assert f["a_tau"].shape == (B, N, cfg.d_hidden)
    # at init gamma_b = 1, so the effective ratio is the task's base ratio
    torch.testing.assert_close(out.ratio, torch.tensor(cfg.rho_init)[task])


# ---- budget ------------------------------------------------------------------------------------
@pytest.mark.parametrize("train", [True, False])
def test_budget_exact_inside_avail(train: bool) -> None:
    model = _tiny().train(train)
    g = torch.Generator().manual_seed(3)
    tasks = torch.arange(len(TASKS))
    for p in (0.0, 0.01, 0.05, 0.3, 0.7, 1.0):
        x, avail, h_u, _, e_pos = model.example_inputs(4, seed=int(p * 100), p_avail=p)
        avail[0] = 0.0                                # an all-zero sample inside every batch
        avail[1, 0, 0, 0, 0] = 1.0                    # and one with at least a coordinate
        x = x * avail
        out = model(x, avail, h_u, tasks, e_pos, generator=g)
        _check_budget(out, avail)
        assert int(out.k[0]) == 0 and float(out.soft[0].detach().sum()) == 0.0
        assert bool((out.k[avail.flatten(1).sum(1) > 0] >= 1).all()) and int(out.k[1]) >= 1
        if train:                                     # straight-through: forward value = hard
            torch.testing.assert_close(out.mask, out.hard, atol=1e-6, rtol=0)
            # relaxation mass = continuous budget kappa_b = ratio_b * n_b
            torch.testing.assert_close(out.soft.flatten(1).sum(1), out.features["kappa"], atol=1e-2, rtol=1e-3)
            (out.mask * torch.randn_like(out.mask)).sum().backward()
            assert all(torch.isfinite(q.grad).all() for q in model.parameters() if q.grad is not None)
            model.zero_grad()
        else:
            assert torch.equal(out.mask, out.hard)
    # all-zero avail everywhere: no NaN, k = 0
    x, avail, h_u, task, e_pos = model.example_inputs(2, p_avail=0.0)
    out = model(x, avail, h_u, task, e_pos)
    _check_budget(out, avail)
    assert out.k.tolist() == [0, 0] and float(out.hard.sum()) == 0.0


def test_soft_option_returns_relaxation() -> None:
    model = _tiny().train()
    out = model(*model.example_inputs(2), hard=False)
    assert torch.equal(out.mask, out.soft)


# ---- gradients through the straight-through estimator ------------------------------------------
def test_gradients_reach_ratio_profiles_and_affinity() -> None:
    model = _tiny().train()
    x, avail, h_u, _, e_pos = model.example_inputs(8, seed=5)
    task = torch.arange(8) % len(TASKS)               # every task twice
    out = model(x, avail, h_u, task, e_pos, generator=torch.Generator().manual_seed(0))
    w = torch.randn(out.mask.shape, generator=torch.Generator().manual_seed(1))
    (out.mask * w).sum().backward()
    rho_grad = model.rho_logit.grad
    assert rho_grad is not None and bool((rho_grad.abs() > 0).all()), rho_grad      # eq. 13, every task
    for name in ("phi_decay", "phi_phase", "beta_logit", "psi_key.weight", "psi_query.weight",
                 "enc_pos.weight", "P", "score.weight"):
        p = dict(model.named_parameters())[name]
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


# ---- cold-start exploration (eq. 18) -----------------------------------------------------------
def test_cold_start_entropy_higher_than_short_term() -> None:
    model = _tiny().eval()
    x, avail, h_u, _, e_pos = model.example_inputs(6, seed=7, p_avail=0.5)
    short = model(x, avail, h_u, torch.full((6,), task_id("short_term")), e_pos)
    cold = model(x, avail, h_u, torch.full((6,), task_id("cold_start")), e_pos)
    assert bool((_entropy(cold.probs) > _entropy(short.probs)).all())
    assert bool((cold.features["eps"] == model.cfg.cold_eps).all())
    assert bool((short.features["eps"] == 0).all())
    # the uniform floor: every available coordinate keeps at least eps / n_b of the mass
    n = avail.flatten(1).sum(1, keepdim=True)
    on = avail.flatten(1) > 0
    assert bool((cold.probs[on] >= (model.cfg.cold_eps / n).expand_as(on)[on] * (1 - 1e-5)).all())


# ---- single-user inference with the reference bank (eqs. 9-11) ---------------------------------
def _trained_bank_model() -> MaskGenerator:
    model = _tiny(seed=1).train()
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():   # make gamma_b depend on the bank statistics (s_b, e_b)
        for p in model.gamma_mlp.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
        for i in range(3):
            out = model(*model.example_inputs(8, seed=20 + i), generator=g)
            model.update_bank(out.features)
    return model.eval()


def test_bank_fifo() -> None:
    model = _tiny()
    M = model.cfg.bank_size
    out = model(*model.example_inputs(M - 2))
    model.update_bank(out.features)
    assert int(model.bank_valid.sum()) == M - 2 and int(model.bank_ptr) == M - 2
    out = model(*model.example_inputs(5, seed=1))
    model.update_bank(out.features)
    assert int(model.bank_valid.sum()) == M and int(model.bank_ptr) == 3
    torch.testing.assert_close(model.bank_h[:3], out.features["h_b"][2:].detach())
    assert "bank_h" in model.state_dict() and "bank_valid" in model.state_dict()
    model.reset_bank()
    assert float(model.bank_valid.sum()) == 0


def test_single_user_matches_batch_with_bank() -> None:
    model = _trained_bank_model()
    B = 5
    x, avail, h_u, _, e_pos = model.example_inputs(B, seed=99)
    task = torch.arange(B) % len(TASKS)
    avail[4] = 0.0
    x = x * avail
    with torch.no_grad():
        batch = model(x, avail, h_u, task, e_pos)
        assert float(batch.features["s_b"][:4].abs().min()) > 0       # the bank is in use
        for i in range(B):
            one = model(x[i:i + 1], avail[i:i + 1], h_u[i:i + 1], task[i:i + 1], e_pos[i:i + 1])
            assert torch.equal(one.hard, batch.hard[i:i + 1])
            assert torch.equal(one.k, batch.k[i:i + 1])
            torch.testing.assert_close(one.probs, batch.probs[i:i + 1], rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(one.ratio, batch.ratio[i:i + 1], rtol=1e-5, atol=1e-7)
            for name in ("gamma_b", "s_b", "e_b", "h_b", "F_pat"):
                torch.testing.assert_close(one.features[name], batch.features[name][i:i + 1],
                                           rtol=1e-5, atol=1e-6)
        # with seeded Gumbel noise drawn for the whole batch, the per-sample rows agree too
        gum = -torch.log(-torch.log(torch.rand(B, model.cfg.n_coords,
                                               generator=torch.Generator().manual_seed(4))))
        batch = model(x, avail, h_u, task, e_pos, gumbel=gum)
        for i in range(B):
            one = model(x[i:i + 1], avail[i:i + 1], h_u[i:i + 1], task[i:i + 1], e_pos[i:i + 1],
                        gumbel=gum[i:i + 1])
            assert torch.equal(one.hard, batch.hard[i:i + 1])
        # training statistics (batch as reference set) do depend on the batch, the bank path not
        s_train = model(x, avail, h_u, task, e_pos, use_bank=False).features["s_b"]
        assert not torch.allclose(s_train, batch.features["s_b"])


# ---- determinism ---------------------------------------------------------------------------------
def test_determinism_with_generator() -> None:
    model = _tiny().eval()
    inputs = model.example_inputs(4, seed=2)
    a = model(*inputs, generator=torch.Generator().manual_seed(123))
    b = model(*inputs, generator=torch.Generator().manual_seed(123))
    c = model(*inputs, generator=torch.Generator().manual_seed(124))
    assert torch.equal(a.hard, b.hard) and torch.equal(a.probs, b.probs)
    assert not torch.equal(a.hard, c.hard)                 # the noise matters
    d = model(*inputs)                                     # eval without a generator: pure top-k
    e = model(*inputs, gumbel=torch.zeros_like(d.logits))
    assert torch.equal(d.hard, e.hard) and torch.equal(d.hard, model(*inputs).hard)
    top = torch.topk(d.logits, int(d.k[0]), dim=1).indices[0]
    assert set(top.tolist()) == set(torch.nonzero(d.hard.flatten(1)[0]).flatten().tolist())
    model.train()
    f = model(*inputs, generator=torch.Generator().manual_seed(5))
    g = model(*inputs, generator=torch.Generator().manual_seed(5))
    assert torch.equal(f.hard, g.hard) and torch.equal(f.soft, g.soft)


def test_fisher_update_changes_task_features() -> None:
    model = _tiny().eval()
    inputs = model.example_inputs(4, seed=3)
    before = model(*inputs).logits
    out = model.train()(*inputs, generator=torch.Generator().manual_seed(0))
    loss = (out.mask * torch.randn_like(out.mask)).sum()
    (grad,) = torch.autograd.grad(loss, out.features["a_tau"])
    model.update_fisher(inputs[3], grad, inputs[1], momentum=0.0)
    assert not torch.equal(model.fisher, torch.ones_like(model.fisher))
    assert not torch.allclose(model.eval()(*inputs).logits, before)


# ---- ONNX export -------------------------------------------------------------------------------
@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="onnx is not installed")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_onnx_export_tiny(tmp_path) -> None:
    import numpy as np
    import onnx

    model = _trained_bank_model()
    wrapper = MaskGenExport(model).eval()
    names, outs = list(MaskGenExport.input_names), list(MaskGenExport.output_names)
    N = model.cfg.n_coords
    x, avail, h_u, task, e_pos = model.example_inputs(2, seed=0)
    path = tmp_path / "maskgen_tiny.onnx"
    dynamo = importlib.util.find_spec("onnxscript") is not None
    torch.onnx.export(wrapper, (x, avail, h_u, task, e_pos, torch.zeros(2, N)), str(path), input_names=names,
                      output_names=outs, dynamic_axes={n: {0: "batch"} for n in names + outs},
                      opset_version=18, dynamo=dynamo)
    onnx.checker.check_model(onnx.load(str(path)))
    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime is not installed")
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(8)
    for batch in (2, 1):                                   # the batch axis is dynamic
        feed = model.example_inputs(batch, seed=40 + batch)
        feed[3][:] = torch.arange(batch) % len(TASKS) + (2 if batch == 1 else 0)  # cold-start for B=1
        gum = -torch.log(-torch.log(torch.rand(batch, N, generator=g).clamp(1e-10, 1 - 1e-7)))
        for noise in (torch.zeros(batch, N), gum):
            with torch.no_grad():
                ref = wrapper(*feed, noise)
                full = model(*feed, gumbel=noise)
            assert torch.equal(ref[0], full.hard) and torch.equal(ref[1], full.probs)
            got = sess.run(None, {n: t.numpy() for n, t in zip(names, (*feed, noise))})
            np.testing.assert_array_equal(got[0], ref[0].numpy())          # hard mask identical
            np.testing.assert_allclose(got[1], ref[1].numpy(), rtol=1e-4, atol=1e-6)  # probs
            np.testing.assert_array_equal(got[2], ref[2].numpy())          # k
            np.testing.assert_allclose(got[3], ref[3].numpy(), rtol=1e-5, atol=1e-6)  # ratio


@pytest.mark.parametrize("T,period", [(288, 96), (50, 12)])
def test_time_mixing_equals_the_fixed_kernels(T: int, period: int) -> None:
    """The O(T) box sums and phase folds (the exported graph's fast path) equal the (T, T) band and
    (period, T) one-hot MatMuls they replace, for T a whole number of periods and not."""
    import numpy as np

    from umask.train.models.umask.mask_generator import _box_sum, _phase_onehot, _phase_spread, _phase_sum, _tmix

    def _band(T: int, radius: int) -> np.ndarray:       # the (T, T) 0/1 band |t - s| <= radius the box sums replace
        t = np.arange(T)
        return (np.abs(t[:, None] - t[None, :]) <= radius).astype(np.float32)

    g = torch.Generator().manual_seed(0)
    v = torch.randn(2, T, 3, 5, generator=g) * (torch.rand(2, T, 3, 1, generator=g) > 0.4)
    for r in (0, 2, 48):
        want = _tmix(torch.from_numpy(_band(T, r)), v)
        assert torch.allclose(_box_sum(v, r), want, atol=1e-5), r
    oh = torch.from_numpy(_phase_onehot(T, period))
    assert torch.allclose(_phase_sum(oh, v), _tmix(oh, v), atol=1e-5)
    p = torch.randn(2, period, 3, 5, generator=g)
    assert torch.allclose(_phase_spread(oh, p), _tmix(oh.t(), p), atol=1e-6)
    assert np.isfinite(_box_sum(v, 2).numpy()).all()
