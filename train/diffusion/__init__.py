"""Diffusion pieces shared by the diffusion families: schedules (training side) and clamped samplers.

``from umask.train.diffusion import VPSchedule, make_sampler`` is the public surface; the numpy
mirror used on device is :mod:`umask.runtime.engines.samplers`.
"""

from umask.train.diffusion.samplers import (DDIMSampler, DenoiseFn, DPMSolverPP2MSampler, StepCallback,
                                            make_sampler, model_denoise_fn, trailing_timesteps)
from umask.train.diffusion.schedules import HighNoiseSchedule, VPSchedule, cosine_betas, linear_betas

__all__ = ["DDIMSampler", "DPMSolverPP2MSampler", "DenoiseFn", "HighNoiseSchedule", "StepCallback", "VPSchedule",
           "cosine_betas", "linear_betas", "make_sampler", "model_denoise_fn", "trailing_timesteps"]
