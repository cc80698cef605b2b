"""Spatio-temporal patch tokens for U-STS-LLM (``USTSConfig.st_patch > 0``; issue 12, A2).

The shipped network reads one token per cell for the whole window and its eq. 13 head maps that token to
all 288 slots of an A2 window. Inside a long gap the LLM branch therefore sees the cell only through a
summary of the whole two days, and barely moves off its linear-interpolation guidance (A2 nMAE 0.281
against 0.282). With ``st_patch = P`` each token is one cell's patch of P consecutive slots instead, so the
sequence is cells x time patches (Milan, P = 48: 25 x 6 = 150 tokens for A2, 25 x 9 = 225 for A1) and the
attention can relate a gap of one cell to what its functionally similar cells show at the same time.

Decisions (the paper has node groups x time steps, not this layout; see model.py's docstring for the rest):

* **Per-slot channels.** The default's three (value, hidden flag, day-type profile) plus the task's guidance
  signal G (eq. 7) over the whole input: for imputation the corrected interpolation, for forecasting the
  observed history followed by the guidance forecast of the horizon. The network then embeds *where the
  guidance stands* inside each token and only has to learn the correction, as eq. 14 asks of it.
* **Eqs. 2-6 per token.** The 1x1 convolution (eq. 3) and the strided temporal convolution of ``patch``
  slots (eq. 4) plus the eq. 2 time-of-day / weekday / day-type embedding of each sub-patch run as in the
  default; the eq. 5 GRU runs over the cell's whole sequence of sub-patches, *bidirectionally* (for
  imputation the observations after a gap matter as much as those before it), and eq. 6 maps the
  ``P / patch`` GRU outputs of each token to the model width. A learned position embedding of the token's
  time patch within the window (per task, since A1 and A2 have different lengths) is added: the backbone
  has no RoPE here, and attention between tokens of different cells at the same time needs to know which
  tokens are simultaneous. Nothing depends on the cell index, so renumbering the cells still permutes the
  output.
* **Eqs. 8-9 over tokens: repeated over patches.** The functional graph A (cosine similarity of the cells'
  profiles) is a property of the cells, not of a time patch, so the cells x cells bias B~ is expanded with
  ``kron(B~, ones(K, K))``: every token of cell i attends every token of cell j with the same bias. The
  alternative (bias only between same-patch tokens) would have made the bias a statement about simultaneity,
  which the position embedding already carries.
* **Eq. 13 per token.** The regression head maps each token back to its P slots; for forecasting only the
  horizon tokens' slots are kept. It starts at exactly zero (the LoRA-style zero start), so an untrained
  patch network returns its guidance signal exactly and eq. 14's fusion is unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

CHANNELS = 4          # value, hidden flag, profile, guidance signal G


class PatchPerception(nn.Module):
    """Eqs. 2-6 with one token per (cell, time patch of ``cfg.st_patch`` slots); returns (B, N * K, d)."""

    def __init__(self, cfg: Any, d_model: int, time: nn.Module, tasks: tuple[str, ...]) -> None:
        super().__init__()
        self.cfg = cfg
        self.sub = cfg.st_patch // cfg.patch                                               # eq. 4 patches per token
        self.conv1x1 = nn.Linear(CHANNELS, cfg.c_hidden)                                   # eq. 3
        self.group_conv = nn.Conv1d(cfg.c_hidden, cfg.d_group, cfg.patch, stride=cfg.patch)  # eq. 4
        self.time = time                                                                   # eq. 2
        self.gru = nn.GRU(cfg.d_group, cfg.d_gru // 2, batch_first=True, bidirectional=True)  # eq. 5
        self.proj = nn.ModuleDict({t: nn.Linear(self.sub * cfg.d_gru, d_model) for t in tasks})  # eq. 6
        self.pos = nn.ParameterDict({t: nn.Parameter(0.02 * torch.randn(cfg.length(t) // cfg.st_patch, d_model))
                                     for t in tasks})                                      # time-patch position

    def forward(self, chans: torch.Tensor, tod: torch.Tensor, dow: torch.Tensor, task: str) -> torch.Tensor:
        """chans: (B, N, T, 4). Returns H_p (B, N * K, d), cell-major (token n * K + k = cell n, patch k)."""
        b, n, t, _ = chans.shape
        xc = F.gelu(self.conv1x1(chans))                                    # (B, N, T, c)      eq. 3
        f = F.gelu(self.group_conv(xc.reshape(b * n, t, -1).transpose(1, 2)))   # (B*N, D, T/patch) eq. 4
        p = f.shape[-1]
        e = self.time(tod, dow, p).repeat_interleave(n, dim=0)             # (B*N, T/patch, D)  eq. 2
        hg, _ = self.gru(f.transpose(1, 2) + torch.tanh(e))                # (B*N, T/patch, d_h) eq. 5
        k = p // self.sub
        tokens = self.proj[task](hg.reshape(b, n, k, self.sub * self.cfg.d_gru))   # (B, N, K, d)  eq. 6
        tokens = tokens + self.pos[task]                                   # (K, d) broadcast
        return tokens.reshape(b, n * k, -1)                                # (B, N*K, d)


def token_bias(bias: torch.Tensor, k: int) -> torch.Tensor:
    """Eqs. 8-9 over tokens: the cells x cells B~ (B, N, N) repeated over the K time patches of each cell,
    kron(B~, ones(K, K)) -> (B, N*K, N*K) in the cell-major token order of :class:`PatchPerception`."""
    b, n, _ = bias.shape
    return bias.view(b, n, 1, n, 1).expand(b, n, k, n, k).reshape(b, n * k, n * k)


def guidance_channel(task: str, xs_n: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The guidance signal over the whole input (B, N, T): the imputation guidance as it is; for forecasting
    the observed history (xs_n's first T - S slots) followed by the horizon's guidance g (B, N, S)."""
    if task == "impute":
        return g
    return torch.cat([xs_n[..., : xs_n.shape[-1] - g.shape[-1]], g], -1)


def tokens_to_slots(delta: torch.Tensor, n: int, target: int) -> torch.Tensor:
    """Eq. 13 per token: (B, N*K, P) head outputs -> (B, N, target), the last ``target`` slots of each cell."""
    b = delta.shape[0]
    return delta.reshape(b, n, -1)[..., -target:]
