"""Variance-preserving noise schedules: betas, alphas_cumprod, q_sample, the x0 loss, training-t sampling.

Shared by every diffusion family (U-MASK's DiT, FatsMB's latent denoiser); the samplers that walk
these schedules are in :mod:`umask.train.diffusion.samplers`, their numpy twins in
:mod:`umask.runtime.engines.samplers`. ``VPSchedule``: cosine or linear betas over 1000 training
steps, ``q_sample`` (eq. 31) and the x0-prediction loss ``x0_loss`` (eqs. 19 / 32);
``HighNoiseSchedule`` biases training timesteps towards high noise.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch



# ------------------------------------------------------------------------------------------------
# Noise schedule
# ------------------------------------------------------------------------------------------------
def cosine_betas(num_train_steps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal (2021): abar(t) = cos^2(((t/N + s) / (1 + s)) * pi/2), betas clipped at max_beta."""
    t = np.arange(num_train_steps + 1, dtype=np.float64) / num_train_steps
    f = np.cos((t + s) / (1 + s) * math.pi / 2) ** 2  # (N+1,)
    return np.minimum(1.0 - f[1:] / f[:-1], max_beta)  # (N,)


def linear_betas(num_train_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """Ho et al. (2020) linear betas."""
    return np.linspace(beta_start, beta_end, num_train_steps, dtype=np.float64)


class VPSchedule:
    """Variance-preserving forward process x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (eq. 31)."""

    def __init__(self, num_train_steps: int = 1000, schedule: str = "cosine", *,
                 beta_start: float = 1e-4, beta_end: float = 0.02, cosine_s: float = 0.008) -> None:
        if schedule == "cosine":
            betas = cosine_betas(num_train_steps, cosine_s)
        elif schedule == "linear":
            betas = linear_betas(num_train_steps, beta_start, beta_end)
        else:
            raise ValueError(f"schedule must be 'cosine' or 'linear', got {schedule!r}")
        self.num_train_steps = num_train_steps
        self.schedule = schedule
        # float32 is the reference copy: training, samplers and the exported manifest all read it
        self.betas = torch.from_numpy(betas).float()  # (N,)
        self.alphas_cumprod = torch.from_numpy(np.cumprod(1.0 - betas)).float()  # (N,)
        if not bool((self.alphas_cumprod > 0).all()):
            raise ValueError("alphas_cumprod underflows to 0; use fewer steps or a smaller max beta")

    def alpha_sigma(self, t: int) -> tuple[float, float]:
        """(alpha_t, sigma_t) = (sqrt(abar_t), sqrt(1 - abar_t)) as Python floats; t = -1 is clean (1, 0)."""
        if t < 0:
            return 1.0, 0.0
        abar = float(self.alphas_cumprod[t])
        return math.sqrt(abar), math.sqrt(1.0 - abar)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """eq. 31: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise. x0, noise (B, ...); t (B,) long."""
        abar = self.alphas_cumprod.to(x0.device)[t.long()].to(x0.dtype)  # (B,)
        abar = abar.reshape(-1, *([1] * (x0.dim() - 1)))  # (B, 1, 1, 1, 1)
        return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise

    def sample_t(self, batch: int, generator: Optional[torch.Generator] = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
        """Training timesteps, uniform over {0, ..., N-1}, shape (batch,) long."""
        return torch.randint(0, self.num_train_steps, (batch,), generator=generator).to(device)

    def x0_loss(self, model: Callable[..., torch.Tensor], x0: torch.Tensor, mask: torch.Tensor,
                h_u: torch.Tensor, task: torch.Tensor, t: Optional[torch.Tensor] = None,
                noise: Optional[torch.Tensor] = None, loss_mask: Optional[torch.Tensor] = None, *,
                include_observed: bool = False,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """x0-prediction loss, eqs. 19 / 32 (x0 regression; docs/paper_notes.md I4).

        L = sum(w * (f(x_t, M⊙X, M, t, c) - X)^2) / sum(w)

        By default w = (1 - M), so only the generated (unobserved) entries count. With
        include_observed=True, w = 1 everywhere. ``loss_mask`` (broadcastable to x0, 1 = valid
        ground truth) multiplies w, e.g. to skip entries missing from the raw data.
        ``model(x_t, x_obs, mask, t, h_u, task) -> x0_hat`` (the DiT signature).
        x0: (B, C, T, H, W); mask: (B, 1|C, T, H, W), 1 = evidence.
        """
        B = x0.shape[0]
        if t is None:
            t = self.sample_t(B, generator, x0.device)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator).to(x0)
        m = mask.to(x0.dtype)
        x_obs = x0 * m  # (B, C, T, H, W) evidence
        # observed entries of x_t are exactly the noised evidence, as in the sampler's clamp
        x_t = self.q_sample(x0, t, noise)
        pred = model(x_t, x_obs, m, t, h_u, task)  # (B, C, T, H, W)
        w = torch.ones_like(x0) if include_observed else (1.0 - m).expand_as(x0)
        if loss_mask is not None:
            w = w * loss_mask.to(x0.dtype).expand_as(x0)
        return ((pred - x0) ** 2 * w).sum() / w.sum().clamp_min(1.0)


class HighNoiseSchedule(VPSchedule):
    """The model's VP schedule (same betas, so samplers are unchanged) with training timesteps biased
    towards high noise: t = N - 1 - floor(N u^power), u ~ U(0, 1); power 1 = uniform.

    Why: few-step samplers start at t = N - 1, where the x0 prediction must come from the evidence
    alone (for A1, the forecast); uniform t spends 1 % of the samples at t >= 990. power 2 puts
    P(t >= 900) = 0.32 and P(t >= 990) = 0.10 (uniform: 0.10 and 0.01)."""

    def __init__(self, num_train_steps: int = 1000, schedule: str = "cosine", power: float = 2.0) -> None:
        super().__init__(num_train_steps, schedule)
        if power <= 0:
            raise ValueError(f"t_power must be > 0, got {power}")
        self.power = float(power)

    def sample_t(self, batch: int, generator: Optional[torch.Generator] = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
        u = torch.rand((batch,), generator=generator, dtype=torch.float64)
        t = self.num_train_steps - 1 - torch.floor(self.num_train_steps * u.pow(self.power))
        return t.clamp(0, self.num_train_steps - 1).long().to(device)
