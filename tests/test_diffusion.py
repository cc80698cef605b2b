"""Tests of the VP schedule, the x0 loss and the clamped samplers (train/diffusion.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from umask.train.diffusion import (DDIMSampler, DPMSolverPP2MSampler, HighNoiseSchedule, VPSchedule, make_sampler,
                                   model_denoise_fn, trailing_timesteps)
from umask.train.models.umask.dit import DiT, dit_config

torch.set_num_threads(1)

SCHED = VPSchedule()
SAMPLER_CLASSES = [DDIMSampler, DPMSolverPP2MSampler]
SHAPE = (2, 3, 8, 2, 2)  # (B, C, T, H, W): the samplers do not care about the model's sizes


def _problem(seed: int = 0, ratio: float = 0.5):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(SHAPE, generator=g)
    mask = (torch.rand((SHAPE[0], 1, *SHAPE[2:]), generator=g) < ratio).float()
    return x0, mask, x0 * mask


def _fake_denoiser(scale: float = 0.7):
    """A deterministic, non-oracle denoise_fn: a fixed smooth function of (x_t, t)."""
    def fn(x_t: torch.Tensor, t: int) -> torch.Tensor:
        return scale * torch.tanh(x_t) + 0.01 * t / 1000.0
    return fn


# ---- schedule ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_schedule_is_variance_preserving_and_monotone(kind: str) -> None:
    s = VPSchedule(schedule=kind)
    ac = s.alphas_cumprod
    assert ac.dtype == torch.float32 and ac.shape == (1000,)
    assert bool((ac[1:] < ac[:-1]).all()) and 0 < float(ac[-1]) < 1e-3 and float(ac[0]) > 0.99
    assert s.alpha_sigma(-1) == (1.0, 0.0)
    a, sg = s.alpha_sigma(500)
    assert math.isclose(a * a + sg * sg, 1.0, rel_tol=1e-6)


def test_high_noise_schedule_biases_training_timesteps_only() -> None:
    N = 1000
    base, biased = VPSchedule(N), HighNoiseSchedule(N, power=2.0)
    # same betas: the samplers see exactly the same process
    assert torch.equal(base.alphas_cumprod, biased.alphas_cumprod)
    g = torch.Generator().manual_seed(0)
    t = biased.sample_t(200_000, g)
    assert int(t.min()) >= 0 and int(t.max()) == N - 1
    # t = N - 1 - floor(N u^2): P(t >= 900) = P(u < sqrt(0.1)) = 0.316, P(t >= 990) = 0.1
    assert abs(float((t >= 900).float().mean()) - math.sqrt(0.1)) < 0.01
    assert abs(float((t >= 990).float().mean()) - 0.1) < 0.005
    u = base.sample_t(200_000, torch.Generator().manual_seed(0))
    assert abs(float((u >= 900).float().mean()) - 0.1) < 0.01
    with pytest.raises(ValueError):
        HighNoiseSchedule(N, power=0.0)


def test_q_sample_statistics() -> None:
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x0 = torch.full((n, 1, 1, 1, 1), 2.0)
    for t in (0, 250, 600, 999):
        noise = torch.randn(x0.shape, generator=g)
        xt = SCHED.q_sample(x0, torch.full((n,), t), noise)
        abar = float(SCHED.alphas_cumprod[t])
        assert abs(xt.mean().item() - 2.0 * math.sqrt(abar)) < 0.01
        assert abs(xt.var().item() - (1.0 - abar)) < 0.01 * max(1.0 - abar, 0.05) + 1e-4
    # per-sample timesteps broadcast over (C, T, H, W)
    x0 = torch.randn(SHAPE)
    noise = torch.randn(SHAPE)
    t = torch.tensor([0, 999])
    xt = SCHED.q_sample(x0, t, noise)
    for b in range(2):
        abar = SCHED.alphas_cumprod[t[b]]
        torch.testing.assert_close(xt[b], abar.sqrt() * x0[b] + (1 - abar).sqrt() * noise[b])


def test_x0_loss_counts_only_target_entries_by_default() -> None:
    x0, mask, _ = _problem()
    h_u, task = torch.zeros(2, 4), torch.zeros(2, dtype=torch.long)
    # a "model" that is perfect on unobserved entries and wrong by 1 on observed ones
    def model(x_t, x_obs, m, t, h, tau):
        return x0 + m

    assert SCHED.x0_loss(model, x0, mask, h_u, task).item() == 0.0
    full = SCHED.x0_loss(model, x0, mask, h_u, task, include_observed=True).item()
    assert math.isclose(full, mask.expand_as(x0).mean().item(), rel_tol=1e-6)
    # loss_mask removes entries from the average
    wrong = lambda *a: x0 + 1.0  # noqa: E731
    lm = torch.zeros_like(x0)
    lm[0] = 1.0
    assert math.isclose(SCHED.x0_loss(wrong, x0, mask, h_u, task, loss_mask=lm).item(), 1.0, rel_tol=1e-6)


# ---- timestep grid -----------------------------------------------------------------------------
def test_trailing_timesteps() -> None:
    assert trailing_timesteps(1000, 1).tolist() == [999]
    assert trailing_timesteps(1000, 4).tolist() == [999, 749, 499, 249]
    for steps in (1, 3, 7, 10, 50, 333, 1000):
        ts = trailing_timesteps(1000, steps)
        assert len(ts) == steps and ts[0] == 999 and ts[-1] >= 0 and bool((np.diff(ts) < 0).all())
    assert DDIMSampler(SCHED).prev_timesteps(4).tolist() == [749, 499, 249, -1]


# ---- samplers ----------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", SAMPLER_CLASSES)
def test_evidence_is_clamped_at_every_step(cls) -> None:
    x0, mask, x_obs = _problem(1)
    obs = (mask > 0.5).expand_as(x0)
    sampler = cls(SCHED)
    prev = sampler.prev_timesteps(10)
    seen = []

    def callback(i: int, t: int, x: torch.Tensor, x0_hat: torch.Tensor) -> None:
        assert torch.equal(x0_hat[obs], x_obs[obs])  # the clamped prediction is the evidence
        a, s = SCHED.alpha_sigma(int(prev[i]))
        if s > 0:  # observed entries of x are the evidence noised with one fixed eps
            seen.append(((x[obs] - a * x_obs[obs]) / s))
        else:
            assert torch.equal(x[obs], x_obs[obs])

    out = sampler.sample(_fake_denoiser(), x_obs, mask, 10, seed=0, callback=callback)
    assert len(seen) == 9
    for eps in seen[1:]:
        torch.testing.assert_close(eps, seen[0], rtol=1e-3, atol=1e-3)
    assert torch.equal(out[obs], x_obs[obs])
    assert torch.isfinite(out).all()
    assert not torch.equal(out[~obs], x_obs[~obs])  # the unobserved entries were generated


@pytest.mark.parametrize("cls", SAMPLER_CLASSES)
def test_same_seed_same_sample(cls) -> None:
    _, mask, x_obs = _problem(2)
    sampler = cls(SCHED)
    a = sampler.sample(_fake_denoiser(), x_obs, mask, 8, seed=123)
    b = sampler.sample(_fake_denoiser(), x_obs, mask, 8, seed=123)
    c = sampler.sample(_fake_denoiser(), x_obs, mask, 8, seed=124)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_ddim_stochastic_eta_is_seeded_and_clamped() -> None:
    _, mask, x_obs = _problem(3)
    sampler = DDIMSampler(SCHED, eta=1.0, evidence_noise="fresh")
    a = sampler.sample(_fake_denoiser(), x_obs, mask, 6, seed=7)
    b = sampler.sample(_fake_denoiser(), x_obs, mask, 6, seed=7)
    obs = (mask > 0.5).expand_as(x_obs)
    assert torch.equal(a, b) and torch.equal(a[obs], x_obs[obs])


@pytest.mark.parametrize("cls", SAMPLER_CLASSES)
@pytest.mark.parametrize("steps", [1, 4, 10])
def test_oracle_denoiser_recovers_x0(cls, steps: int) -> None:
    x0, mask, x_obs = _problem(4)
    xs = []

    def oracle(x_t: torch.Tensor, t: int) -> torch.Tensor:
        xs.append(x_t)
        return x0

    out = cls(SCHED).sample(oracle, x_obs, mask, steps, seed=0)
    assert len(xs) == steps
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-6)
    # with a perfect x0 and fixed noise, every visited state is a forward sample q(x_t | x0) with one
    # shared eps, i.e. the sampler follows the exact probability-flow trajectory
    ts = trailing_timesteps(1000, steps)
    eps = [(x - math.sqrt(SCHED.alphas_cumprod[t]) * x0) / math.sqrt(1 - SCHED.alphas_cumprod[t])
           for x, t in zip(xs, ts.tolist())]
    for e in eps[1:]:
        torch.testing.assert_close(e, eps[0], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("cls", SAMPLER_CLASSES)
def test_cold_start_no_evidence(cls) -> None:
    x0, _, _ = _problem(5)
    mask = torch.zeros(SHAPE[0], 1, *SHAPE[2:])
    out = cls(SCHED).sample(_fake_denoiser(), x0 * mask, mask, 5, seed=0)
    assert out.shape == SHAPE and torch.isfinite(out).all()
    # an all-observed mask returns the evidence untouched
    full = torch.ones_like(mask)
    assert torch.equal(cls(SCHED).sample(_fake_denoiser(), x0, full, 3, seed=0), x0)


@pytest.mark.parametrize("name", ["ddim", "dpmpp_2m"])
@pytest.mark.parametrize("steps", [1, 4, 10, 50])
def test_step_counts_run(name: str, steps: int) -> None:
    _, mask, x_obs = _problem(6, ratio=0.1)
    calls = []
    fn = _fake_denoiser()
    out = make_sampler(name, SCHED).sample(lambda x, t: calls.append(t) or fn(x, t), x_obs, mask, steps,
                                           seed=0)
    assert len(calls) == steps and calls[0] == 999
    assert torch.isfinite(out).all()


def test_samplers_with_the_tiny_dit() -> None:
    torch.manual_seed(0)
    model = DiT(dit_config("tiny")).eval()
    x_t, x_obs, mask, _, h_u, task = model.example_inputs(batch=2)
    fn = model_denoise_fn(model, x_obs, mask, h_u, task)
    obs = (mask > 0.5).expand_as(x_obs)
    for name in ("ddim", "dpmpp_2m"):
        out = make_sampler(name, SCHED).sample(fn, x_obs, mask, 3, seed=0)
        assert out.shape == x_obs.shape and torch.isfinite(out).all()
        assert torch.equal(out[obs], x_obs[obs])
