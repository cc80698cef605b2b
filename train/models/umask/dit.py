"""U-MASK diffusion transformer (DiT) that completes a masked behaviour tensor.

One shared network serves every task (short-term prediction, long-term forecasting, cold-start
recommendation, imputation). Per task, only the evidence mask and the task token change. The network
predicts the clean tensor X_0 (x0-parameterization, eqs. 19 / 32) from

    x_t    (B, C, T, H, W)   noisy tensor at diffusion step t
    x_obs  (B, C, T, H, W)   evidence  M ⊙ X_0  (eq. 28; zero where unobserved)
    mask   (B, 1|C, T, H, W) 1 = observed evidence, 0 = to be generated
    t      (B,)              diffusion timestep (int or float, in [0, num_train_steps))
    h_u    (B, cond_dim)     U-SCOPE user representation
    task   (B,)              task id, an index into TASKS

Layout follows facebookresearch/DiT ``models.py`` (adaLN-Zero blocks, a final adaLN layer, fixed
sin-cos positional embedding). Config handling follows nanoGPT (a dataclass plus a small registry).

Equation numbers are the paper's (section 6, eqs. 28-35); docs/paper_notes.md §6 compares each one
with this code. Patching and evidence fusion are described in the paper's section 6.3 without an
equation number.

Export rules (the model must go through ``torch.onnx.export`` and run on phones):
- no data-dependent Python control flow in ``forward``: the only branches test config flags;
- patching: `patchify` / `unpatchify` use reshape/permute only (no unfold, no FFT); the patch embedding
  runs as one strided Conv3d with the x_embedder Linear's weights (`DiT.embed_patches`, the same sums:
  onnxruntime's 8-D transpose of `patchify` was half of the exported step's time). Conv3d is in
  onnxruntime, TensorRT and OpenVINO; a runtime without 3-D convolution can use patchify + the Linear;
- shapes are fixed by the config. Only the batch dimension varies;
- attention uses either ``F.scaled_dot_product_attention`` or plain matmul + softmax ("math").
  Both export with opset >= 14.

Evidence fusion (section 6.3, unnumbered, after eq. 34): we concatenate [x_t, x_obs, mask] along channels *before* patch
embedding. Cross-attention to a separate evidence token stream is the alternative, but this is
better here because
- it is cheap: the token count stays at L = (T/t0)(H/h0)(W/w0). Cross-attention would add a second
  length-L stream and a cross-attention layer per block, about doubling the sequence cost;
- it is export-friendly: one Linear on a wider patch and nothing more;
- every token sees its own evidence and the mask at the same coordinates, which is exactly what
  inpainting / completion needs. Attention then spreads it across space and time;
- the mask channel lets the network tell "observed zero" apart from "unobserved".
The mask is always expanded to C channels, so both per-channel and channel-tied masks fit one fixed
input layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# The four tasks, in one place. A task id is the index into this tuple (the task token e_tau).
TASKS: tuple[str, ...] = ("short_term", "long_term", "cold_start", "imputation")


def task_id(name: str) -> int:
    """Index of a task name in TASKS (raises ValueError for an unknown name)."""
    return TASKS.index(name)


# ------------------------------------------------------------------------------------------------
# Config
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DiTConfig:
    # behaviour tensor X in R^{C x T x H x W}
    channels: int = 22
    T: int = 96
    H: int = 4
    W: int = 4
    # spatio-temporal patch (t0, h0, w0); T, H, W must be divisible by it (section 6.3 patching)
    patch: tuple[int, int, int] = (4, 2, 2)
    # transformer
    d_model: int = 128
    depth: int = 4
    n_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    # conditioning (eq. 34): size of the U-SCOPE user representation h_u; number of task tokens
    cond_dim: int = 384
    n_tasks: int = len(TASKS)
    # False gives the "DiT without (user) conditioning" baseline: e_u = 0, h_u is ignored
    use_user_cond: bool = True
    # width of the sinusoidal timestep features before the timestep MLP
    freq_dim: int = 256
    # "sdpa" (F.scaled_dot_product_attention) or "math" (explicit matmul + softmax). Same numbers.
    attn_impl: str = "sdpa"

    def __post_init__(self) -> None:
        t0, h0, w0 = self.patch
        if self.T % t0 or self.H % h0 or self.W % w0:
            raise ValueError(f"(T, H, W)=({self.T}, {self.H}, {self.W}) not divisible by patch {self.patch}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} not divisible by n_heads={self.n_heads}")
        if self.d_model % 8:
            # the 3-D sin-cos embedding uses d/2 for time and d/4 each for h, w, each an even size
            raise ValueError(f"d_model={self.d_model} must be a multiple of 8")
        if self.freq_dim % 2:
            raise ValueError("freq_dim must be even")
        if self.attn_impl not in ("sdpa", "math"):
            raise ValueError(f"attn_impl must be 'sdpa' or 'math', got {self.attn_impl!r}")

    @property
    def grid(self) -> tuple[int, int, int]:
        """Token grid (T/t0, H/h0, W/w0)."""
        t0, h0, w0 = self.patch
        return self.T // t0, self.H // h0, self.W // w0

    @property
    def n_tokens(self) -> int:
        gt, gh, gw = self.grid
        return gt * gh * gw

    @property
    def patch_dim(self) -> int:
        """Values per output patch: C * t0 * h0 * w0."""
        t0, h0, w0 = self.patch
        return self.channels * t0 * h0 * w0


# Sizes are assumptions: the paper does not state them (see docs/paper_notes.md §1).
DIT_CONFIGS: dict[str, DiTConfig] = {
    # unit tests: 16 tokens, about 97k parameters
    "tiny": DiTConfig(channels=22, T=16, H=4, W=4, patch=(4, 2, 2), d_model=32, depth=2, n_heads=2,
                      cond_dim=32),
    # 2-core CPU training on (C=22, T=96..288, 4x4 grid): 96 tokens at T=96, 288 at T=288; ~1.5M params
    "small": DiTConfig(channels=22, T=96, H=4, W=4, patch=(4, 2, 2), d_model=128, depth=4, n_heads=4,
                       cond_dim=384),
    # GPU: DiT-S width at depth 12, T=288 (three days of 15-min slots) -> 288 tokens; ~33M params
    "base": DiTConfig(channels=22, T=288, H=4, W=4, patch=(4, 2, 2), d_model=384, depth=12, n_heads=6,
                      cond_dim=384),
}


def dit_config(name: str, **overrides) -> DiTConfig:
    """A named config from DIT_CONFIGS with some fields replaced, e.g. dit_config("small", T=288)."""
    if name not in DIT_CONFIGS:
        raise KeyError(f"unknown DiT config {name!r}; choose from {sorted(DIT_CONFIGS)}")
    return replace(DIT_CONFIGS[name], **overrides)


# ------------------------------------------------------------------------------------------------
# Patching (section 6.3, unnumbered): reshape/permute only, exact inverse of each other
# ------------------------------------------------------------------------------------------------
def patchify(x: torch.Tensor, patch: tuple[int, int, int]) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, L, C*t0*h0*w0). Tokens are ordered (T', H', W'), time-major."""
    t0, h0, w0 = patch
    _, C, T, H, W = x.shape  # static per config; only B is dynamic
    gt, gh, gw = T // t0, H // h0, W // w0
    x = x.reshape(-1, C, gt, t0, gh, h0, gw, w0)  # (B, C, T', t0, H', h0, W', w0)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # (B, T', H', W', C, t0, h0, w0)
    return x.reshape(-1, gt * gh * gw, C * t0 * h0 * w0)  # (B, L, P)


def unpatchify(tokens: torch.Tensor, channels: int, grid: tuple[int, int, int],
               patch: tuple[int, int, int]) -> torch.Tensor:
    """(B, L, C*t0*h0*w0) -> (B, C, T, H, W), the inverse of ``patchify``."""
    t0, h0, w0 = patch
    gt, gh, gw = grid
    x = tokens.reshape(-1, gt, gh, gw, channels, t0, h0, w0)  # (B, T', H', W', C, t0, h0, w0)
    x = x.permute(0, 4, 1, 5, 2, 6, 3, 7)  # (B, C, T', t0, H', h0, W', w0)
    return x.reshape(-1, channels, gt * t0, gh * h0, gw * w0)  # (B, C, T, H, W)


# ------------------------------------------------------------------------------------------------
# Fixed sin-cos embeddings (positions and diffusion timesteps)
# ------------------------------------------------------------------------------------------------
def sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    """(M,) positions -> (M, dim) [sin | cos] embedding, as in DiT / MAE."""
    assert dim % 2 == 0
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))  # (dim/2,)
    out = np.outer(pos.reshape(-1).astype(np.float64), omega)  # (M, dim/2)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)  # (M, dim)


def sincos_3d(dim: int, grid: tuple[int, int, int]) -> np.ndarray:
    """(T'*H'*W', dim) fixed 3-D embedding: d/2 channels for time, d/4 for h, d/4 for w.

    Time gets the larger share because the time axis is the long one (T' up to ~100 tokens)
    and the spatial grid is small (2x2 .. 8x8). Token order matches ``patchify`` (time-major).
    """
    gt, gh, gw = grid
    tt, hh, ww = np.meshgrid(np.arange(gt), np.arange(gh), np.arange(gw), indexing="ij")  # (T', H', W')
    return np.concatenate([sincos_1d(dim // 2, tt), sincos_1d(dim // 4, hh), sincos_1d(dim // 4, ww)],
                          axis=1)  # (L, dim)


class TimestepEmbedder(nn.Module):
    """Diffusion step t -> e_t: sinusoidal features followed by a 2-layer MLP (DiT)."""

    def __init__(self, d_model: int, freq_dim: int = 256, max_period: float = 10000.0) -> None:
        super().__init__()
        half = freq_dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)  # (freq_dim/2,), fixed
        self.mlp = nn.Sequential(nn.Linear(freq_dim, d_model), nn.SiLU(), nn.Linear(d_model, d_model))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = t.to(torch.float32)[:, None] * self.freqs[None]  # (B, freq_dim/2)
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, freq_dim)
        return self.mlp(emb)  # (B, D)


# ------------------------------------------------------------------------------------------------
# Transformer block with adaLN-Zero
# ------------------------------------------------------------------------------------------------
def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x * (1 + scale) + shift, with per-sample (B, D) shift and scale broadcast over tokens."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)  # (B, L, D)


class Attention(nn.Module):
    """Multi-head self-attention over all L tokens (no causal mask: completion sees the whole window)."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.d_model // cfg.n_heads
        self.attn_impl = cfg.attn_impl
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.attn_drop = nn.Dropout(cfg.dropout)
        self.proj_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, L, D = x.shape
        qkv = self.qkv(x).reshape(-1, L, 3, self.n_heads, self.head_dim)  # (B, L, 3, nh, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, nh, L, hd)
        if self.attn_impl == "sdpa":  # config flag, fixed at construction
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))  # (B, nh, L, L)
            att = self.attn_drop(torch.softmax(att, dim=-1))
            y = att @ v  # (B, nh, L, hd)
        y = y.transpose(1, 2).reshape(-1, L, D)  # (B, L, D)
        return self.proj_drop(self.proj(y))


class Mlp(nn.Module):
    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        hidden = int(cfg.d_model * cfg.mlp_ratio)
        self.fc1 = nn.Linear(cfg.d_model, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))  # (B, L, D)


class DiTBlock(nn.Module):
    """Pre-LN transformer block. c sets shift/scale/gate for attention and MLP (adaLN-Zero).

    The modulation Linear is zero-initialized. Then every gate is 0 and the block is exactly the
    identity at init: x + 0 * f(x) == x.
    """

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        D = cfg.d_model
        self.norm1 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(cfg)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        # x: (B, L, D), c: (B, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = \
            self.adaLN_modulation(c).chunk(6, dim=1)  # 6 x (B, D)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x  # (B, L, D)


class FinalLayer(nn.Module):
    """adaLN then a linear map back to patch values. Both are zero-initialized, so the output is 0 at init."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        D = cfg.d_model
        self.norm_final = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(D, cfg.patch_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)  # 2 x (B, D)
        return self.linear(modulate(self.norm_final(x), shift, scale))  # (B, L, P)


# ------------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------------
class DiT(nn.Module):
    """x0-predicting diffusion transformer for masked behaviour-tensor completion."""

    def __init__(self, cfg: DiTConfig, *, use_prior: bool = False, cal_dim: int = 0, poi_dim: int = 0,
                 hb_dim: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        # prior residual mode (UMaskConfig.prior != "none"; a constructor flag, not a DiTConfig field,
        # so the default config and every exported bundle stay as they were): the deterministic
        # prior enters as C more input channels and the output is prior + residual off the evidence
        self.use_prior = bool(use_prior)
        # optional extra inputs (UMaskConfig.dit_calendar / dit_epos / dit_hb; 0 = absent, the default,
        # so existing checkpoints and exported graphs are unchanged):
        # cal_dim: per-slot calendar features (B, T, cal_dim) -> a token term (what slot of day / day of
        #   week each token is: the sin-cos position only knows the index inside the window);
        # poi_dim: the POI location embedding E_pos (B, H, W, poi_dim) -> a token term (eq. 33);
        # hb_dim: the mask generator's behaviour summary h_b (B, hb_dim) -> a condition term (eq. 19 F_b).
        self.cal_dim, self.poi_dim, self.hb_dim = int(cal_dim), int(poi_dim), int(hb_dim)
        C, D = cfg.channels, cfg.d_model
        t0, h0, w0 = cfg.patch

        # section 6.3 patching + evidence fusion: patch embedding of [x_t, x_obs, mask] -> D
        # (the token embedding term of eq. 33).
        # Input patch = 3C channels (4C with the prior) * t0*h0*w0 values.
        self.x_embedder = nn.Linear((4 if self.use_prior else 3) * C * t0 * h0 * w0, D)
        # eq. 33 (positional term): fixed 3-D sin-cos positional embedding, rebuilt from the config
        # and not saved (no POI location embedding: docs/paper_notes.md §6, eq. 33).
        pos = torch.from_numpy(sincos_3d(D, cfg.grid)).float().unsqueeze(0)  # (1, L, D)
        self.register_buffer("pos_embed", pos, persistent=False)

        # eq. 34: conditioning c = e_u + e_tau, plus e_t (eq. 33's E_time, added to c, not to the tokens)
        self.t_embedder = TimestepEmbedder(D, cfg.freq_dim)  # e_t
        self.task_embedder = nn.Embedding(cfg.n_tasks, D)  # e_tau
        # e_u = MLP(h_u). Absent in the no-conditioning baseline (a config flag, not a data branch)
        self.user_embedder = (nn.Sequential(nn.Linear(cfg.cond_dim, D), nn.SiLU(), nn.Linear(D, D))
                              if cfg.use_user_cond else None)

        # eq. 33 E_pos (POI embedding pooled per spatial patch) and the slot calendar, both added to the tokens
        self.cal_embedder = nn.Linear(t0 * self.cal_dim, D) if self.cal_dim else None
        self.poi_embedder = nn.Linear(h0 * w0 * self.poi_dim, D) if self.poi_dim else None
        # eq. 19: F_{b,tau} conditions the network; here h_b (the generator's user-level behaviour vector,
        # computed from the available history only) enters c next to e_u + e_tau
        self.hb_embedder = (nn.Sequential(nn.Linear(self.hb_dim, D), nn.SiLU(), nn.Linear(D, D))
                            if self.hb_dim else None)

        self.blocks = nn.ModuleList([DiTBlock(cfg) for _ in range(cfg.depth)])
        self.final_layer = FinalLayer(cfg)
        self.initialize_weights()

    # ---- initialization (DiT models.py, written out) ----
    def initialize_weights(self) -> None:
        # 1. every Linear: Xavier-uniform weights, zero bias (the transformer default in DiT)
        def _basic_init(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

        self.apply(_basic_init)
        # 2. conditioning embedders: N(0, 0.02), as DiT does for its timestep MLP and label table
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        nn.init.normal_(self.task_embedder.weight, std=0.02)
        if self.user_embedder is not None:
            nn.init.normal_(self.user_embedder[0].weight, std=0.02)
            nn.init.normal_(self.user_embedder[2].weight, std=0.02)
        if self.hb_embedder is not None:
            nn.init.normal_(self.hb_embedder[0].weight, std=0.02)
            nn.init.normal_(self.hb_embedder[2].weight, std=0.02)
        # 3. adaLN-Zero: zero modulation, so every block starts as the identity
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        # 4. final layer: zero modulation and zero output projection, so the prediction is 0 at init
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    # ---- pieces, so that tests and baselines can call them ----
    def condition(self, t: torch.Tensor, h_u: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """c = e_t + e_u + e_tau, shape (B, D): eq. 34's e_u + e_tau plus eq. 33's timestep term E_time.

        e_u = 0 when use_user_cond is False."""
        c = self.t_embedder(t) + self.task_embedder(task)  # (B, D)
        if self.user_embedder is not None:  # config flag, fixed at construction
            c = c + self.user_embedder(h_u)
        return c

    def extra_tokens(self, cal: torch.Tensor | None, e_pos: torch.Tensor | None) -> torch.Tensor | None:
        """(B, L, D) token term of the calendar (B, T, cal_dim) and E_pos (B, H, W, poi_dim), or None."""
        cfg = self.cfg
        t0, h0, w0 = cfg.patch
        gt, gh, gw = cfg.grid
        out = None
        if self.cal_embedder is not None:          # constructor flag
            if cal is None:
                raise ValueError(f"this DiT takes a calendar input (B, T, {self.cal_dim})")
            ct = self.cal_embedder(cal.reshape(-1, gt, t0 * self.cal_dim))            # (B, T', D)
            out = ct[:, :, None, None, :].expand(-1, gt, gh, gw, ct.shape[-1])         # (B, T', H', W', D)
        if self.poi_embedder is not None:          # constructor flag
            if e_pos is None:
                raise ValueError(f"this DiT takes e_pos (B, H, W, {self.poi_dim})")
            e = e_pos.reshape(-1, gh, h0, gw, w0, self.poi_dim).permute(0, 1, 3, 2, 4, 5)  # (B, H', W', h0, w0, P)
            pt = self.poi_embedder(e.reshape(-1, gh, gw, h0 * w0 * self.poi_dim))     # (B, H', W', D)
            pt = pt[:, None].expand(-1, gt, gh, gw, pt.shape[-1])                      # (B, T', H', W', D)
            out = pt if out is None else out + pt
        return None if out is None else out.reshape(-1, gt * gh * gw, out.shape[-1])   # (B, L, D), time-major

    def forward(self, x_t: torch.Tensor, x_obs: torch.Tensor, mask: torch.Tensor, t: torch.Tensor,
                h_u: torch.Tensor, task: torch.Tensor, prior: torch.Tensor | None = None, *,
                cal: torch.Tensor | None = None, e_pos: torch.Tensor | None = None,
                h_b: torch.Tensor | None = None) -> torch.Tensor:
        """Predict X_0 (B, C, T, H, W) (eqs. 19 / 32 parameterization).

        mask may be (B, 1, T, H, W) (tied across channels) or (B, C, T, H, W).
        In the no-conditioning baseline h_u is accepted and ignored.
        ``cal`` / ``e_pos`` / ``h_b``: required exactly when the DiT was built with cal_dim / poi_dim / hb_dim.
        With ``use_prior``, ``prior`` (B, C, T, H, W) is required: it is a fourth input block and the
        prediction is ``x_obs`` on the evidence and ``prior + residual`` elsewhere; the residual is
        the (zero-initialized, adaLN-Zero) final layer's output, so at init the DiT returns the prior.
        """
        cfg = self.cfg
        m = mask.to(x_t.dtype).expand_as(x_t)  # (B, C, T, H, W)
        # section 6.3 (unnumbered, after eq. 34): evidence fusion by channel concatenation
        if self.use_prior:  # constructor flag, fixed at construction
            if prior is None:
                raise ValueError("this DiT was built with use_prior=True: forward needs prior (B, C, T, H, W)")
            z = torch.cat([x_t, x_obs, m, prior], dim=1)  # (B, 4C, T, H, W)
        else:
            z = torch.cat([x_t, x_obs, m], dim=1)  # (B, 3C, T, H, W)
        x = self.embed_patches(z) + self.pos_embed  # (B, L, D)
        extra = self.extra_tokens(cal, e_pos)
        if extra is not None:
            x = x + extra  # eq. 33: + E_pos (and the slot calendar)
        c = self.condition(t, h_u, task)  # (B, D)
        if self.hb_embedder is not None:  # constructor flag; eq. 19 F_b conditioning
            if h_b is None:
                raise ValueError(f"this DiT takes h_b (B, {self.hb_dim})")
            c = c + self.hb_embedder(h_b)
        for block in self.blocks:
            x = block(x, c)  # (B, L, D)
        x = self.final_layer(x, c)  # (B, L, C*t0*h0*w0)
        out = unpatchify(x, cfg.channels, cfg.grid, cfg.patch)  # (B, C, T, H, W)
        if self.use_prior:
            out = torch.where(m > 0.5, x_obs, prior + out)  # no gradient into the mask through the switch
        return out

    def embed_patches(self, z: torch.Tensor) -> torch.Tensor:
        """``x_embedder(patchify(z))`` computed as one strided Conv3d with the Linear's weights viewed as
        (D, C_in, t0, h0, w0): the same sums in the same token order (T', H', W'), without the 8-D permute
        of `patchify`, which cost ~10 ms of a ~20 ms exported DiT step in onnxruntime on one CPU thread
        (the Linear stays the parameter, so checkpoints are unchanged). (B, C_in, T, H, W) -> (B, L, D)."""
        t0, h0, w0 = self.cfg.patch
        w = self.x_embedder.weight                                      # (D, C_in * t0 * h0 * w0)
        y = F.conv3d(z, w.view(w.shape[0], -1, t0, h0, w0), self.x_embedder.bias, stride=(t0, h0, w0))
        return y.flatten(2).transpose(1, 2)                              # (B, L, D)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def example_inputs(self, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Random inputs of the right shapes and dtypes, for export and smoke tests."""
        cfg = self.cfg
        g = torch.Generator().manual_seed(seed)
        shape = (batch, cfg.channels, cfg.T, cfg.H, cfg.W)
        x0 = torch.randn(shape, generator=g)
        mask = (torch.rand((batch, 1, cfg.T, cfg.H, cfg.W), generator=g) < 0.5).float()
        x_t = torch.randn(shape, generator=g)
        t = torch.randint(0, 1000, (batch,), generator=g)
        h_u = torch.randn((batch, cfg.cond_dim), generator=g)
        task = torch.randint(0, cfg.n_tasks, (batch,), generator=g)
        return x_t, x0 * mask, mask, t, h_u, task


__all__ = ["TASKS", "task_id", "DiTConfig", "DIT_CONFIGS", "dit_config", "patchify", "unpatchify",
           "sincos_1d", "sincos_3d", "TimestepEmbedder", "modulate", "Attention", "Mlp", "DiTBlock",
           "FinalLayer", "DiT"]
