"""Variance-preserving diffusion for masked completion: schedule, x0 loss, and clamped samplers.

The pieces are small objects that can be swapped, in the style of diffusers:

- ``VPSchedule`` (in :mod:`umask.train.diffusion.schedules`): betas and alphas_cumprod (cosine or
  linear, 1000 training steps), ``q_sample`` (eq. 31) and the x0-prediction training loss
  ``x0_loss`` (eqs. 19 / 32);
- ``DDIMSampler`` (Song et al. 2021) and ``DPMSolverPP2MSampler`` (Lu et al. 2022, DPM-Solver++(2M),
  multistep, 2nd order, data prediction): the reverse update of the paper's section 6.4
  (unnumbered). Each applies the evidence clamp of eq. 35 at every step.

Equation numbers are the paper's; docs/paper_notes.md §6 compares each one with this code.

The evidence clamp (eq. 35, RePaint-style). The paper inserts the clean evidence X_u into the state
after each step; this code re-noises it to the state's level instead, so the network only sees
inputs like those of training, and the returned sample still equals the evidence exactly
(docs/paper_notes.md §6, eq. 35). With obs = (mask == 1):
  1. every prediction is clamped: x0_hat <- where(obs, x_obs, x0_hat), before the update;
  2. after every update to the next timestep s, the observed entries are set to the evidence noised
     to level s: x_s <- where(obs, sqrt(abar_s) x_obs + sqrt(1 - abar_s) eps_obs, x_s);
  3. the returned sample is where(obs, x_obs, x_0), so it equals x_obs exactly on observed entries.
eps_obs is drawn once per sample by default ("fixed"). Then the observed coordinates follow exactly
the deterministic DDIM / probability-flow trajectory that the clamped prediction induces.
``evidence_noise="fresh"`` instead draws new noise at every step (RePaint).

The sampler math uses plain tensor ops (where, scalar * tensor, +) with scalar coefficients
computed in Python floats from the float32 ``alphas_cumprod``. Each line maps 1:1 to numpy, so the
torch-free runtime can repeat it. ``denoise_fn(x_t, t: int) -> x0_hat`` is a closure: a torch
model here (see ``model_denoise_fn``), an ONNX session in the runtime.

Timestep grid: "trailing" spacing (diffusers ``timestep_spacing="trailing"``). The first step is
always the last training step N-1, the noisiest level, whatever the step count. The final update
goes to the clean level (abar = 1, sigma = 0).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch

DenoiseFn = Callable[[torch.Tensor, int], torch.Tensor]  # (x_t (B, C, T, H, W), t) -> x0_hat
StepCallback = Callable[[int, int, torch.Tensor, torch.Tensor], None]  # (i, t, x_next, x0_hat)

from umask.train.diffusion.schedules import VPSchedule


def model_denoise_fn(model: Callable[..., torch.Tensor], x_obs: torch.Tensor, mask: torch.Tensor,
                     h_u: torch.Tensor, task: torch.Tensor) -> DenoiseFn:
    """A ``denoise_fn(x_t, t: int) -> x0_hat`` closure over a DiT-signature model and fixed conditions."""
    B = x_obs.shape[0]

    def denoise_fn(x_t: torch.Tensor, t: int) -> torch.Tensor:
        tt = torch.full((B,), int(t), dtype=torch.long, device=x_t.device)  # (B,)
        return model(x_t, x_obs, mask, tt, h_u, task)

    return denoise_fn


# ------------------------------------------------------------------------------------------------
# Samplers with the evidence clamp (eq. 35)
# ------------------------------------------------------------------------------------------------
def trailing_timesteps(num_train_steps: int, steps: int) -> np.ndarray:
    """Descending int64 grid of ``steps`` training timesteps that starts at N-1 ("trailing").

    t_i = round(N - i * N / steps) - 1, for i = 0..steps-1. For example N=1000, steps=4 gives
    [999, 749, 499, 249]. The sampler then takes one last update to the clean level (t = -1).
    """
    if not 1 <= steps <= num_train_steps:
        raise ValueError(f"steps must be in [1, {num_train_steps}], got {steps}")
    grid = np.round(np.arange(num_train_steps, 0, -num_train_steps / steps)).astype(np.int64) - 1
    return grid[:steps]


class _ClampedSampler:
    """Common parts: timestep grid, RNG, initial state, evidence clamp."""

    def __init__(self, schedule: VPSchedule, evidence_noise: str = "fixed") -> None:
        if evidence_noise not in ("fixed", "fresh"):
            raise ValueError(f"evidence_noise must be 'fixed' or 'fresh', got {evidence_noise!r}")
        self.schedule = schedule
        self.evidence_noise = evidence_noise

    def timesteps(self, steps: int) -> np.ndarray:
        """The descending training timesteps visited with ``steps`` network evaluations."""
        return trailing_timesteps(self.schedule.num_train_steps, steps)

    def prev_timesteps(self, steps: int) -> np.ndarray:
        """The target level of each update: the next grid entry, and -1 (clean) after the last one."""
        ts = self.timesteps(steps)
        return np.concatenate([ts[1:], np.array([-1], dtype=np.int64)])

    @staticmethod
    def _generator(seed: Optional[int], generator: Optional[torch.Generator]) -> Optional[torch.Generator]:
        if generator is not None:
            return generator
        if seed is not None:
            return torch.Generator().manual_seed(int(seed))
        return None

    @staticmethod
    def _randn(like: torch.Tensor, g: Optional[torch.Generator]) -> torch.Tensor:
        # drawn on CPU in float32, so one seed gives the same numbers on every device
        return torch.randn(like.shape, generator=g, dtype=torch.float32).to(like)

    def _clamp(self, x: torch.Tensor, obs: torch.Tensor, x_obs: torch.Tensor, eps_obs: torch.Tensor,
               t: int, g: Optional[torch.Generator]) -> torch.Tensor:
        """eq. 35 (re-noised): observed entries <- evidence noised to level t (t = -1: x_obs itself)."""
        a, s = self.schedule.alpha_sigma(t)
        if self.evidence_noise == "fresh":
            eps_obs = self._randn(x, g)
        return torch.where(obs, a * x_obs + s * eps_obs, x)

    def _init(self, x_obs: torch.Tensor, mask: torch.Tensor, t_first: int, g: Optional[torch.Generator],
              noise: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(obs, eps_obs, x_T): a boolean evidence mask, the evidence noise, and the start state."""
        obs = (mask > 0.5).expand_as(x_obs)  # (B, C, T, H, W) bool
        z = self._randn(x_obs, g) if noise is None else noise.to(x_obs)
        a, s = self.schedule.alpha_sigma(t_first)
        x = torch.where(obs, a * x_obs + s * z, z)  # unobserved: pure noise; observed: noised evidence
        return obs, z, x

    def sample(self, denoise_fn: DenoiseFn, x_obs: torch.Tensor, mask: torch.Tensor, steps: int, *,
               seed: Optional[int] = None, generator: Optional[torch.Generator] = None,
               noise: Optional[torch.Tensor] = None,
               callback: Optional[StepCallback] = None) -> torch.Tensor:
        """Complete x_obs (B, C, T, H, W) where mask (B, 1|C, T, H, W) is 0, in ``steps`` evaluations.

        Deterministic given ``seed`` (or ``generator``, or explicit start ``noise`` for a
        deterministic sampler). ``callback(i, t, x_next, x0_hat)`` runs after each update with the
        clamped state and the clamped prediction. The result equals x_obs exactly where mask == 1.
        """
        g = self._generator(seed, generator)
        ts, prev = self.timesteps(steps), self.prev_timesteps(steps)
        obs, eps_obs, x = self._init(x_obs, mask, int(ts[0]), g, noise)
        with torch.no_grad():
            x = self._run(denoise_fn, x, obs, x_obs, eps_obs, ts, prev, g, callback)
        return torch.where(obs, x_obs, x)  # exact evidence in the output

    def _run(self, denoise_fn, x, obs, x_obs, eps_obs, ts, prev, g, callback):  # pragma: no cover
        raise NotImplementedError


class DDIMSampler(_ClampedSampler):
    """DDIM (Song et al. 2021) driven by the x0 prediction; eta = 0 is deterministic (section 6.4 reverse update, unnumbered)."""

    def __init__(self, schedule: VPSchedule, eta: float = 0.0, evidence_noise: str = "fixed") -> None:
        super().__init__(schedule, evidence_noise)
        self.eta = float(eta)

    def _run(self, denoise_fn, x, obs, x_obs, eps_obs, ts, prev, g, callback):
        for i, (t, s) in enumerate(zip(ts.tolist(), prev.tolist())):
            x0 = torch.where(obs, x_obs, denoise_fn(x, t))  # eq. 35: clamp the prediction
            a_t, s_t = self.schedule.alpha_sigma(t)
            a_s, s_s = self.schedule.alpha_sigma(s)
            eps = (x - a_t * x0) / s_t  # implied noise
            # sigma = eta * sqrt((1 - abar_s) / (1 - abar_t)) * sqrt(1 - abar_t / abar_s)
            sig = self.eta * (s_s / s_t) * math.sqrt(max(0.0, 1.0 - (a_t / a_s) ** 2))
            x = a_s * x0 + math.sqrt(max(0.0, s_s ** 2 - sig ** 2)) * eps  # section 6.4 reverse update (unnumbered)
            if sig > 0.0:  # a property of the grid, not of the data
                x = x + sig * self._randn(x, g)
            x = self._clamp(x, obs, x_obs, eps_obs, s, g)  # eq. 35: re-noised evidence at level s
            if callback is not None:
                callback(i, t, x, x0)
        return x


class DPMSolverPP2MSampler(_ClampedSampler):
    """DPM-Solver++(2M), Lu et al. 2022 (arXiv 2211.01095, Alg. 2), data prediction.

    With lambda = log(alpha / sigma) and h_i = lambda_s - lambda_t:
        D_i = x0_i                                            (first step)
        D_i = (1 + 1/(2 r_i)) x0_i - 1/(2 r_i) x0_{i-1},  r_i = h_{i-1} / h_i
        x_s = (sigma_s / sigma_t) x_t - alpha_s (exp(-h_i) - 1) D_i
    The last update to the clean level (sigma = 0, h = inf) is first-order, i.e. x_0 = x0_hat
    (as diffusers does with final_sigmas_type="zero").
    """

    def _run(self, denoise_fn, x, obs, x_obs, eps_obs, ts, prev, g, callback):
        x0_prev: Optional[torch.Tensor] = None
        h_prev = 0.0
        for i, (t, s) in enumerate(zip(ts.tolist(), prev.tolist())):
            x0 = torch.where(obs, x_obs, denoise_fn(x, t))  # eq. 35: clamp the prediction
            a_t, s_t = self.schedule.alpha_sigma(t)
            a_s, s_s = self.schedule.alpha_sigma(s)
            if s < 0:  # final update to the clean level: the first-order limit is x0_hat itself
                h = math.inf
                x = a_s * x0
            else:
                h = (math.log(a_s) - math.log(s_s)) - (math.log(a_t) - math.log(s_t))  # lambda_s - lambda_t
                if x0_prev is None:  # first step: first order (DPM-Solver++ 1 = DDIM)
                    d = x0
                else:
                    r = h_prev / h
                    d = (1.0 + 0.5 / r) * x0 - (0.5 / r) * x0_prev
                x = (s_s / s_t) * x - (a_s * math.expm1(-h)) * d
            x = self._clamp(x, obs, x_obs, eps_obs, s, g)  # eq. 35: re-noised evidence at level s
            if callback is not None:
                callback(i, t, x, x0)
            x0_prev, h_prev = x0, h
        return x


SAMPLERS = {"ddim": DDIMSampler, "dpmpp_2m": DPMSolverPP2MSampler}


def make_sampler(name: str, schedule: VPSchedule, **kwargs) -> _ClampedSampler:
    """``make_sampler("ddim" | "dpmpp_2m", schedule, **kwargs)``."""
    if name not in SAMPLERS:
        raise KeyError(f"unknown sampler {name!r}; choose from {sorted(SAMPLERS)}")
    return SAMPLERS[name](schedule, **kwargs)


__all__ = ["VPSchedule", "model_denoise_fn", "trailing_timesteps",
           "DDIMSampler", "DPMSolverPP2MSampler", "SAMPLERS", "make_sampler"]
