"""Tests of the U-MASK DiT (train/dit.py): shapes, adaLN-Zero init, patching, conditioning flag,
batch independence, a tiny overfit, and ONNX export when onnx is installed."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from umask.train.diffusion import VPSchedule
from umask.train.models.umask.dit import (DIT_CONFIGS, TASKS, DiT, DiTBlock, dit_config, patchify, task_id,
                             unpatchify)

torch.set_num_threads(1)


def _tiny(**overrides) -> DiT:
    torch.manual_seed(0)
    return DiT(dit_config("tiny", **overrides)).eval()


def _randomize_zero_init(model: DiT, seed: int = 1) -> DiT:
    """Give the zero-initialized adaLN / output weights random values, so the net is non-trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "adaLN_modulation" in name or "final_layer.linear" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model


# ---- config ------------------------------------------------------------------------------------
def test_config_registry_and_overrides() -> None:
    assert set(DIT_CONFIGS) == {"tiny", "small", "base"}
    assert TASKS == ("short_term", "long_term", "cold_start", "imputation")
    assert task_id("cold_start") == 2
    cfg = dit_config("small", T=288)
    assert cfg.T == 288 and cfg.n_tokens == 288 // 4 * 2 * 2 and cfg.n_tasks == len(TASKS)
    with pytest.raises(ValueError):
        dit_config("tiny", T=15)  # not divisible by t0
    with pytest.raises(KeyError):
        dit_config("huge")


# ---- patching ----------------------------------------------------------------------------------
def test_patchify_unpatchify_round_trip() -> None:
    cfg = dit_config("tiny")
    x = torch.randn(3, cfg.channels, cfg.T, cfg.H, cfg.W)
    tokens = patchify(x, cfg.patch)
    assert tokens.shape == (3, cfg.n_tokens, cfg.patch_dim)
    assert torch.equal(unpatchify(tokens, cfg.channels, cfg.grid, cfg.patch), x)
    # token 0 holds exactly the first (t0, h0, w0) block of every channel
    t0, h0, w0 = cfg.patch
    assert torch.equal(tokens[:, 0].reshape(3, cfg.channels, t0, h0, w0), x[:, :, :t0, :h0, :w0])


def test_conv_patch_embedding_equals_patchify_then_linear() -> None:
    """DiT.embed_patches (one strided Conv3d over the Linear's weights) = x_embedder(patchify(z))."""
    m = _tiny()
    cfg = m.cfg
    z = torch.randn(2, m.x_embedder.in_features // (cfg.patch[0] * cfg.patch[1] * cfg.patch[2]), cfg.T, cfg.H, cfg.W)
    want = m.x_embedder(patchify(z, cfg.patch))
    assert torch.allclose(m.embed_patches(z), want, atol=1e-5)


# ---- shapes and init ---------------------------------------------------------------------------
def test_forward_shape_and_zero_output_at_init() -> None:
    model = _tiny()
    inputs = model.example_inputs(batch=3)
    out = model(*inputs)
    assert out.shape == inputs[0].shape == (3, 22, 16, 4, 4)
    assert torch.equal(out, torch.zeros_like(out))  # zero final projection
    # a per-channel mask and float timesteps are accepted too
    x_t, x_obs, mask, t, h_u, task = inputs
    out2 = model(x_t, x_obs, mask.expand_as(x_t), t.float(), h_u, task)
    assert out2.shape == x_t.shape


def test_adaln_zero_blocks_are_identity_at_init() -> None:
    model = _tiny()
    x = torch.randn(2, model.cfg.n_tokens, model.cfg.d_model)
    c = torch.randn(2, model.cfg.d_model)
    for block in model.blocks:
        assert isinstance(block, DiTBlock)
        assert torch.equal(block(x, c), x)


def test_one_optimizer_step_makes_output_nonzero() -> None:
    model = _tiny().train()
    sched = VPSchedule()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 22, 16, 4, 4, generator=g)
    mask = (torch.rand(2, 1, 16, 4, 4, generator=g) < 0.5).float()
    h_u, task = torch.randn(2, 32, generator=g), torch.tensor([0, 3])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = sched.x0_loss(model, x0, mask, h_u, task, generator=g)
    loss.backward()
    opt.step()
    out = model.eval()(*model.example_inputs())
    assert out.abs().max() > 0


# ---- conditioning ------------------------------------------------------------------------------
def test_no_user_conditioning_flag_ignores_h_u() -> None:
    model = _randomize_zero_init(_tiny(use_user_cond=False))
    assert model.user_embedder is None
    x_t, x_obs, mask, t, h_u, task = model.example_inputs()
    a = model(x_t, x_obs, mask, t, h_u, task)
    b = model(x_t, x_obs, mask, t, 5.0 * torch.randn_like(h_u), task)
    assert a.abs().max() > 0 and torch.equal(a, b)
    # with conditioning on, h_u does change the output
    cond = _randomize_zero_init(_tiny())
    assert not torch.allclose(cond(x_t, x_obs, mask, t, h_u, task),
                              cond(x_t, x_obs, mask, t, 5.0 * torch.randn_like(h_u), task))


def test_attention_impls_agree() -> None:
    sdpa = _randomize_zero_init(_tiny(attn_impl="sdpa"))
    math_ = _randomize_zero_init(_tiny(attn_impl="math"))
    math_.load_state_dict(sdpa.state_dict())
    inputs = sdpa.example_inputs()
    torch.testing.assert_close(sdpa(*inputs), math_(*inputs), rtol=1e-5, atol=1e-5)


def test_batch_independence() -> None:
    model = _randomize_zero_init(_tiny())
    inputs = model.example_inputs(batch=4, seed=3)
    full = model(*inputs)
    # sample 0 alone gives the same result, and changing the other samples does not move it
    alone = model(*[x[:1] for x in inputs])
    torch.testing.assert_close(full[:1], alone, rtol=1e-5, atol=1e-6)
    other = model.example_inputs(batch=4, seed=4)
    mixed = [torch.cat([a[:1], b[1:]]) for a, b in zip(inputs, other)]
    torch.testing.assert_close(model(*mixed)[:1], full[:1], rtol=1e-5, atol=1e-6)


# ---- learning ----------------------------------------------------------------------------------
def test_tiny_overfit_one_example() -> None:
    model = _tiny().train()
    sched = VPSchedule()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(1, 22, 16, 4, 4, generator=g)
    mask = (torch.rand(1, 1, 16, 4, 4, generator=g) < 0.5).float()
    h_u, task = torch.randn(1, 32, generator=g), torch.tensor([1])
    t, noise = torch.tensor([300]), torch.randn(x0.shape, generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    losses = []
    for _ in range(40):
        loss = sched.x0_loss(model, x0, mask, h_u, task, t, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses


# ---- export ------------------------------------------------------------------------------------
@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="onnx is not installed")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_export_tiny(tmp_path) -> None:
    import onnx

    model = _randomize_zero_init(_tiny())
    inputs = model.example_inputs(batch=2)
    path = tmp_path / "dit_tiny.onnx"
    names = ["x_t", "x_obs", "mask", "t", "h_u", "task"]
    # the dynamo exporter needs onnxscript; fall back to the TorchScript exporter without it
    dynamo = importlib.util.find_spec("onnxscript") is not None
    torch.onnx.export(model, inputs, str(path), input_names=names, output_names=["x0_hat"],
                      dynamic_axes={n: {0: "batch"} for n in names + ["x0_hat"]}, opset_version=18,
                      dynamo=dynamo)
    onnx.checker.check_model(onnx.load(str(path)))
    if importlib.util.find_spec("onnxruntime") is not None:
        import numpy as np
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for batch in (2, 3):  # the batch axis is dynamic
            feed = model.example_inputs(batch=batch, seed=batch)
            got = sess.run(None, {n: x.numpy() for n, x in zip(names, feed)})[0]
            np.testing.assert_allclose(got, model(*feed).detach().numpy(), rtol=1e-4, atol=1e-5)
