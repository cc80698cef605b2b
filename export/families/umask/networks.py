"""The networks the device runs, as ONNX-exportable torch wrappers, and their plain-ONNX export.

* ``DiTStep``: one x0-prediction of the shared DiT (eq. ~32) in MODEL space:
  (x_t, x_obs, mask, t, h_u, task[, prior]) -> x0. The runtime multiplies featurized data by the
  manifest's ``x_scale`` before the sampler and divides it back after (as `UMask.complete`). A prior
  model (UMaskConfig.prior = "blend") takes its deterministic prior (model space) as an input and
  returns prior + residual off the evidence (train/models/umask/dit.py); dit_calendar / dit_epos / dit_hb
  models also take ``cal`` (B, T, 5), ``e_pos`` (B, H, W, P) and ``h_b`` (B, d), in that order
  (`dit_extra_names`), and their mask generator step gives ``h_b`` as a 5th output.
* ``MaskGenStep``: the deterministic evaluation mask (`UMask.evidence(deterministic=True)` =
  ``MaskGenerator(..., use_bank=True, relax=False)``, no Gumbel noise by default) with ``x_scale``
  BAKED IN: it takes featurized x (x * avail) like the rest of the runtime.
* ``ProfileStep``: the profile MLP (eq. 24): (SBERT embedding, present flag) -> h_u.

Exporter: the shared `umask.export.onnx_export.export_module` (``torch.onnx.export(..., dynamo=False)``,
the TorchScript exporter), opset pinned to `OPSET`, the batch axis dynamic. Why not optimum-onnx: its
releases require transformers < 4.58 and this project runs transformers 5.x; and the three U-MASK
networks are custom modules that optimum has no export config for anyway. The dynamo exporter was
tried by the profiling issue for MiniLM and wrote an invalid graph with torch 2.13 + transformers 5 (train/profile_encoder.py).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from umask.export.onnx_export import OPSET, export_module
from umask.runtime.families.umask.prior import CAL_DIM, DIT_EXTRA_INPUTS
from umask.train.models.umask.mask_generator import MaskGenerator
from umask.train.models.umask.model import UMask

log = logging.getLogger(__name__)



def dit_extra_names(model: UMask) -> tuple[str, ...]:
    """The DiT's optional inputs (runtime prior.DIT_EXTRA_INPUTS order): prior, cal, e_pos, h_b."""
    d = model.dit
    on = {"prior": d.use_prior, "cal": getattr(d, "cal_dim", 0) > 0, "e_pos": getattr(d, "poi_dim", 0) > 0,
          "h_b": getattr(d, "hb_dim", 0) > 0}
    return tuple(n for n in DIT_EXTRA_INPUTS if on[n])


class DiTStep(nn.Module):
    input_names: tuple[str, ...] = ("x_t", "x_obs", "mask", "t", "h_u", "task")
    output_names = ("x0",)

    def __init__(self, model: UMask) -> None:
        super().__init__()
        self.dit = model.dit
        self.extra = dit_extra_names(model)
        self.input_names = (*DiTStep.input_names, *self.extra)

    def forward(self, x_t, x_obs, mask, t, h_u, task, *extra):
        kw = dict(zip(self.extra, extra))
        prior = kw.pop("prior", None)
        if prior is not None:
            return self.dit(x_t, x_obs, mask, t, h_u, task, prior, **kw)
        return self.dit(x_t, x_obs, mask, t, h_u, task, **kw)


class MaskGenStep(nn.Module):
    input_names = ("x", "avail", "h_u", "task", "e_pos", "gumbel")
    output_names: tuple[str, ...] = ("hard", "probs", "k", "ratio")

    def __init__(self, model: UMask) -> None:
        super().__init__()
        self.gen: MaskGenerator = model.maskgen
        self.register_buffer("x_scale", model.x_scale.detach().clone().reshape(1, -1, 1, 1, 1))
        self.with_hb = "h_b" in dit_extra_names(model)     # the DiT takes h_b: a 5th output (eq. 19 F_b)
        if self.with_hb:
            self.output_names = (*MaskGenStep.output_names, "h_b")

    def forward(self, x, avail, h_u, task, e_pos, gumbel):
        out = self.gen(x * self.x_scale * avail, avail, h_u, task, e_pos, use_bank=True, gumbel=gumbel, relax=False)
        if self.with_hb:
            return out.hard, out.probs, out.k, out.ratio, out.features["h_b"]
        return out.hard, out.probs, out.k, out.ratio


class ProfileStep(nn.Module):
    input_names = ("emb", "present")
    output_names = ("h_u",)

    def __init__(self, model: UMask) -> None:
        super().__init__()
        self.profile = model.profile

    def forward(self, emb, present):
        return self.profile(emb, present > 0.5)


def example_inputs(model: UMask, batch: int = 2, seed: int = 0) -> dict[str, tuple[torch.Tensor, ...]]:
    """Tracing inputs per network (random; parity uses real windows, see exporter.py)."""
    g = torch.Generator().manual_seed(seed)
    d, m = model.cfg.dit_config(), model.cfg.maskgen_config()
    shape = (batch, d.channels, d.T, d.H, d.W)
    avail = (torch.rand((batch, 1, d.T, d.H, d.W), generator=g) < 0.6).float()
    x = torch.rand(shape, generator=g) * avail
    h_u = torch.randn((batch, d.cond_dim), generator=g)
    task = torch.tensor([i % d.n_tasks for i in range(batch)], dtype=torch.long)
    dit = (torch.randn(shape, generator=g), x, avail, torch.tensor([999, 10][:batch] + [500] * max(0, batch - 2)),
           h_u, task)
    extra = {"prior": lambda: torch.rand(shape, generator=g),
             "cal": lambda: torch.rand((batch, d.T, CAL_DIM), generator=g),
             "e_pos": lambda: torch.rand((batch, d.H, d.W, m.poi_dim), generator=g),
             "h_b": lambda: torch.randn((batch, m.d_hidden), generator=g)}
    dit = (*dit, *(extra[n]() for n in dit_extra_names(model)))
    mg = (x, avail, h_u, task, torch.rand((batch, d.H, d.W, m.poi_dim), generator=g),
          torch.zeros((batch, m.n_coords)))
    prof = (torch.randn((batch, model.cfg.sbert_dim), generator=g), torch.ones(batch))
    return {"dit": dit, "maskgen": mg, "profile_mlp": prof}


def wrappers(model: UMask) -> dict[str, nn.Module]:
    return {"dit": DiTStep(model).eval(), "maskgen": MaskGenStep(model).eval(), "profile_mlp": ProfileStep(model).eval()}


__all__ = ["OPSET", "dit_extra_names", "DiTStep", "MaskGenStep", "ProfileStep", "example_inputs", "wrappers", "export_module"]
