"""numpy DDIM and DPM-Solver++(2M) with the evidence clamp (eq. 35): train/diffusion/samplers.py line for line.

The schedule comes from the bundle manifest (``alphas_cumprod`` as float32, exactly the training
copy), the coefficients are Python floats computed as in the torch samplers, and every update is
the same ``where`` / scalar-times-array sequence, so with the same start noise and the same
denoiser the two implementations agree to float32 rounding (tests/test_session.py checks it).

Noise comes from ``numpy.random.default_rng(seed)`` (float32 standard normal): the same seed gives
the same output on every run and thread. The torch side uses torch's generator, so equal seeds do
not give equal noise across the two; pass ``noise=`` to compare them.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from umask.runtime.core.errors import InputError

DenoiseFn = Callable[[np.ndarray, int], np.ndarray]     # (x_t (B, C, T, H, W), t) -> x0_hat
SAMPLER_NAMES = ("ddim", "dpmpp_2m")


def trailing_timesteps(num_train_steps: int, steps: int) -> np.ndarray:
    """Descending grid of ``steps`` training timesteps starting at N-1 (diffusers "trailing")."""
    if not 1 <= steps <= num_train_steps:
        raise InputError(f"steps must be in [1, {num_train_steps}], got {steps}")
    grid = np.round(np.arange(num_train_steps, 0, -num_train_steps / steps)).astype(np.int64) - 1
    return grid[:steps]


class Schedule:
    """VP schedule from the manifest's float32 ``alphas_cumprod`` (N,)."""

    def __init__(self, alphas_cumprod: np.ndarray) -> None:
        a = np.asarray(alphas_cumprod, np.float32)
        if a.ndim != 1 or a.size < 1 or not np.all(np.isfinite(a)) or not np.all((a > 0) & (a <= 1)):
            raise InputError("alphas_cumprod must be a 1-D array in (0, 1]")
        self.alphas_cumprod = a
        self.num_train_steps = int(a.size)

    def alpha_sigma(self, t: int) -> tuple[float, float]:
        if t < 0:
            return 1.0, 0.0
        abar = float(self.alphas_cumprod[t])
        return math.sqrt(abar), math.sqrt(1.0 - abar)


class ClampedSampler:
    """Common parts of both samplers (see train/diffusion._ClampedSampler)."""

    name = "base"

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule

    def timesteps(self, steps: int) -> np.ndarray:
        return trailing_timesteps(self.schedule.num_train_steps, steps)

    def prev_timesteps(self, steps: int) -> np.ndarray:
        ts = self.timesteps(steps)
        return np.concatenate([ts[1:], np.array([-1], dtype=np.int64)])

    def sample(self, denoise_fn: DenoiseFn, x_obs: np.ndarray, mask: np.ndarray, steps: int, *,
               seed: int | None = None, rng: np.random.Generator | None = None,
               noise: np.ndarray | None = None) -> np.ndarray:
        """Complete ``x_obs`` (B, C, T, H, W) where ``mask`` (B, 1|C, T, H, W) is 0; exact evidence where 1."""
        x_obs = np.asarray(x_obs, np.float32)
        ts, prev = self.timesteps(steps), self.prev_timesteps(steps)
        obs = np.broadcast_to(np.asarray(mask) > 0.5, x_obs.shape)
        if noise is None:
            g = rng if rng is not None else np.random.default_rng(seed)
            noise = g.standard_normal(x_obs.shape, dtype=np.float32)
        z = np.asarray(noise, np.float32)
        if z.shape != x_obs.shape:
            raise InputError(f"noise has shape {z.shape}, expected {x_obs.shape}")
        a, s = self.schedule.alpha_sigma(int(ts[0]))
        x = np.where(obs, a * x_obs + s * z, z).astype(np.float32)   # start: noised evidence / pure noise
        x = self._run(denoise_fn, x, obs, x_obs, z, ts, prev)
        return np.where(obs, x_obs, x).astype(np.float32)

    def _clamp(self, x: np.ndarray, obs: np.ndarray, x_obs: np.ndarray, eps_obs: np.ndarray, t: int) -> np.ndarray:
        a, s = self.schedule.alpha_sigma(t)
        return np.where(obs, a * x_obs + s * eps_obs, x).astype(np.float32)   # eq. 35 (re-noised)

    def _run(self, denoise_fn, x, obs, x_obs, eps_obs, ts, prev):  # pragma: no cover
        raise NotImplementedError


class DDIM(ClampedSampler):
    """DDIM, eta = 0 (deterministic given the start noise)."""

    name = "ddim"

    def _run(self, denoise_fn, x, obs, x_obs, eps_obs, ts, prev):
        for t, s in zip(ts.tolist(), prev.tolist()):
            x0 = np.where(obs, x_obs, denoise_fn(x, t))
            a_t, s_t = self.schedule.alpha_sigma(t)
            a_s, s_s = self.schedule.alpha_sigma(s)
            eps = (x - a_t * x0) / s_t
            x = (a_s * x0 + math.sqrt(max(0.0, s_s ** 2)) * eps).astype(np.float32)
            x = self._clamp(x, obs, x_obs, eps_obs, s)
        return x


class DPMSolverPP2M(ClampedSampler):
    """DPM-Solver++(2M) (Lu et al. 2022), data prediction; first-order first and last steps."""

    name = "dpmpp_2m"

    def _run(self, denoise_fn, x, obs, x_obs, eps_obs, ts, prev):
        x0_prev: np.ndarray | None = None
        h_prev = 0.0
        for t, s in zip(ts.tolist(), prev.tolist()):
            x0 = np.where(obs, x_obs, denoise_fn(x, t))
            a_t, s_t = self.schedule.alpha_sigma(t)
            a_s, s_s = self.schedule.alpha_sigma(s)
            if s < 0:
                h = math.inf
                x = (a_s * x0).astype(np.float32)
            else:
                h = (math.log(a_s) - math.log(s_s)) - (math.log(a_t) - math.log(s_t))
                if x0_prev is None:
                    d = x0
                else:
                    r = h_prev / h
                    d = (1.0 + 0.5 / r) * x0 - (0.5 / r) * x0_prev
                x = ((s_s / s_t) * x - (a_s * math.expm1(-h)) * d).astype(np.float32)
            x = self._clamp(x, obs, x_obs, eps_obs, s)
            x0_prev, h_prev = x0, h
        return x


def make_sampler(name: str, schedule: Schedule) -> ClampedSampler:
    if name == "ddim":
        return DDIM(schedule)
    if name == "dpmpp_2m":
        return DPMSolverPP2M(schedule)
    raise InputError(f"unknown sampler {name!r}; choose from {SAMPLER_NAMES}")


__all__ = ["SAMPLER_NAMES", "trailing_timesteps", "Schedule", "ClampedSampler", "DDIM", "DPMSolverPP2M",
           "make_sampler"]
