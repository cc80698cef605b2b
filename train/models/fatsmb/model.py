"""FatsMB (paper 003, "From Agnostic to Specific"): the networks, one readable file.

Three exportable parts, plus the guided sampler that ties them together:

- :class:`MBAE` encoder (section 3.1): item + behavior embeddings, bidirectional Transformer blocks
  whose attention carries the position by APE (eq. 9), RoPE (eqs. 10-11) or BaRoPE (eqs. 12-13,
  28-30). It reads a sequence whose last token is a masked item and returns the state there: the
  behavior-specific preference z_b when that token keeps its behavior, the behavior-agnostic z_∅
  when the behavior is masked too.
- :class:`Decoder` (eq. 14): z -> scores over ALL items, a projection then dot products with the
  (tied) item table plus an item bias.
- the denoiser (section 3.3): :class:`MCGLNDenoiser` (eqs. 18-23: adaLN-Zero blocks, the modulation
  from e_t + e_b, a mixture of shared and behavior-private experts routed hard by the target
  behavior) or the ablations ``adaln`` (no experts) and ``mlp`` (conditions concatenated, no
  modulation). It predicts z_0 (see the note in :func:`diffusion_loss`).

Decisions where the paper is vague (each also noted at the code):
- BaRoPE's h(a) (eq. 13) is a positive gain per rotary PAIR (softplus of an MLP of the behavior
  embedding), so the rotation and the gain commute and eq. 30 holds exactly; the paper's text says
  BaRoPE touches q and v (Fig. 3) but Alg. 1 line 11 and the derivation (eq. 30) put it on q and k:
  we follow the algorithm (q and k).
- eq. 21 writes ``MLP(LN(Concat(z_t + z_∅)))``: we read it as the concatenation [z_t, z_∅] (2d),
  layer-normed, modulated by (γ_s, β_s), passed through an MLP to d, gated by α_s.
- Classifier-free guidance (eq. 17) is written here as uncond + w (cond - uncond), which equals the
  paper's (1 + ω) cond - ω uncond with w = 1 + ω; w = 1 is the plain conditional model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class FatsMBConfig:
    """Network settings (paper section 4.1.4 defaults d=64, 2 + 2 layers, L=50, scaled for one CPU thread)."""

    d: int = field(default=64, metadata={"help": "latent / embedding size (paper: 64)"})
    layers: int = field(default=2, metadata={"help": "encoder Transformer blocks (paper: 2)"})
    heads: int = field(default=2, metadata={"help": "attention heads"})
    max_len: int = field(default=50, metadata={
        "help": "longest sequence the encoder reads, incl. the masked target token (paper: 50)"})
    dropout: float = field(default=0.1, metadata={"help": "dropout (paper: 0.1)"})
    position: str = field(default="barope", metadata={"help": "barope | rope | ape  (ablation of section 3.1)"})
    denoiser: str = field(default="mcgln", metadata={"help": "mcgln | adaln | mlp  (ablation of section 3.3)"})
    den_layers: int = field(default=2, metadata={"help": "denoiser blocks (paper: 2 MCGLN layers)"})
    shared_experts: int = field(default=2, metadata={"help": "m_s, eq. 19"})
    private_experts: int = field(default=1, metadata={"help": "m_p per behavior, eq. 19"})
    diffusion_steps: int = field(default=200, metadata={"help": "T (paper sweeps 50..1000)"})
    schedule: str = field(default="linear", metadata={"help": "VP noise schedule: linear | cosine"})


# ------------------------------------------------------------------------------------------------
# Encoder: MBAE with APE / RoPE / BaRoPE
# ------------------------------------------------------------------------------------------------
def rope_tables(L: int, dk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of m * theta_i for positions 0..L-1 and the dk/2 rotary frequencies (eq. 11): (L, dk/2) each."""
    inv = 1.0 / (10000 ** (torch.arange(0, dk, 2, dtype=torch.float32) / dk))
    ang = torch.arange(L, dtype=torch.float32)[:, None] * inv[None]
    return ang.cos(), ang.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """f(q, m) = q e^{i m theta} (eq. 11) on interleaved pairs: x (B, H, L, dk), cos/sin (L, dk/2)."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class Attention(nn.Module):
    """Multi-head self-attention (eqs. 7-8) with the position scheme of the config."""

    def __init__(self, cfg: FatsMBConfig) -> None:
        super().__init__()
        self.h, self.dk = cfg.heads, cfg.d // cfg.heads
        self.qkv = nn.Linear(cfg.d, 3 * cfg.d)
        self.out = nn.Linear(cfg.d, cfg.d)
        self.drop = nn.Dropout(cfg.dropout)
        self.position = cfg.position

    def forward(self, x: torch.Tensor, pad: torch.Tensor, gain: torch.Tensor | None,
                cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.h, self.dk).permute(2, 0, 3, 1, 4)   # each (B, H, L, dk)
        if self.position in ("rope", "barope"):
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)                          # eq. 11
        if gain is not None:                                                          # eq. 13: h(a) f(q, m)
            q, k = q * gain, k * gain                                                 # gain (B, H, L, dk)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.dk)                          # (B, H, L, L) eq. 8
        att = att.masked_fill(pad[:, None, None, :], float("-inf")).softmax(-1)       # no key is padding-only:
        y = (self.drop(att) @ v).transpose(1, 2).reshape(B, L, -1)                    # the target token is real
        return self.out(y)


class Block(nn.Module):
    def __init__(self, cfg: FatsMBConfig) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d), nn.LayerNorm(cfg.d)
        self.att = Attention(cfg)
        self.ff = nn.Sequential(nn.Linear(cfg.d, 4 * cfg.d), nn.GELU(), nn.Linear(4 * cfg.d, cfg.d), nn.Dropout(cfg.dropout))

    def forward(self, x, pad, gain, cos, sin):
        x = x + self.att(self.ln1(x), pad, gain, cos, sin)
        return x + self.ff(self.ln2(x))


class MBAE(nn.Module):
    """Multi-Behavior AutoEncoder encoder E (section 3.1).

    Ids are shifted: items 1..n (0 = pad, n+1 = [mask]); behaviors 1..B (0 = pad, B+1 = [mask]).
    ``forward(items, behaviors)`` with (N, L) right-aligned ids returns the state of the LAST token
    (N, d): call it with the target token [mask] appended (behavior kept -> z_b, masked -> z_∅).
    """

    def __init__(self, cfg: FatsMBConfig, n_items: int, n_behaviors: int) -> None:
        super().__init__()
        self.cfg, self.n_items, self.n_behaviors = cfg, n_items, n_behaviors
        self.item = nn.Embedding(n_items + 2, cfg.d)
        self.beh = nn.Embedding(n_behaviors + 2, cfg.d)
        self.pos = nn.Embedding(cfg.max_len, cfg.d) if cfg.position == "ape" else None   # eq. 9
        for emb in (self.item, self.beh, self.pos):
            if emb is not None:
                nn.init.normal_(emb.weight, std=0.02)
        dk = cfg.d // cfg.heads
        self.dk2 = dk // 2
        # BaRoPE h(a): an MLP of the behavior embedding -> one positive gain per rotary pair (eq. 13, 28)
        self.h_gain = nn.Sequential(nn.Linear(cfg.d, cfg.d), nn.GELU(), nn.Linear(cfg.d, cfg.heads * dk // 2)) \
            if cfg.position == "barope" else None
        if self.h_gain is not None:
            nn.init.zeros_(self.h_gain[-1].weight)
            nn.init.constant_(self.h_gain[-1].bias, math.log(math.e - 1))                 # softplus -> gain 1 at init
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.d)
        self.drop = nn.Dropout(cfg.dropout)
        cos, sin = rope_tables(cfg.max_len, dk)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def hidden(self, items: torch.Tensor, beh: torch.Tensor) -> torch.Tensor:
        """All token states (N, L, d)."""
        N, L = items.shape
        x = self.item(items) + self.beh(beh)                                            # eq. 9 without e_p
        if self.pos is not None:
            x = x + self.pos.weight[-L:][None]                                            # APE, right-aligned
        gain = None
        if self.h_gain is not None:
            g = F.softplus(self.h_gain(self.beh(beh)))                                    # (N, L, H*dk/2)
            g = g.unflatten(-1, (self.cfg.heads, self.dk2))
            g = torch.stack((g, g), dim=-1).flatten(-2)            # same gain for a pair
            gain = g.permute(0, 2, 1, 3)                                                  # (N, H, L, dk)
        cos, sin = self.cos[-L:], self.sin[-L:]
        pad = items == 0
        x = self.drop(x)
        for blk in self.blocks:
            x = blk(x, pad, gain, cos, sin)
        return self.norm(x)

    def forward(self, items: torch.Tensor, beh: torch.Tensor) -> torch.Tensor:
        return self.hidden(items, beh)[:, -1]                                            # (N, d)


class Decoder(nn.Module):
    """Decoder D (eq. 14): z (N, d) -> logits over all items (N, n_items), item table tied to the encoder's."""

    def __init__(self, cfg: FatsMBConfig, item_table: nn.Embedding) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(cfg.d, cfg.d), nn.GELU(), nn.LayerNorm(cfg.d))
        self.table = item_table                                                          # shared parameter
        self.bias = nn.Parameter(torch.zeros(item_table.num_embeddings - 2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.proj(z) @ self.table.weight[1:-1].T + self.bias                       # (N, n_items)


# ------------------------------------------------------------------------------------------------
# Denoisers (section 3.3)
# ------------------------------------------------------------------------------------------------
def timestep_embedding(t: torch.Tensor, d: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps t (N,) -> (N, d)."""
    half = d // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    ang = t.float()[:, None] * freqs[None]
    return torch.cat([ang.cos(), ang.sin()], dim=-1)


class ExpertMLP(nn.Module):
    """E experts as batched weights: x (N, d) -> (N, E, d); ``index`` (N, E) picks each row's experts."""

    def __init__(self, n: int, d: int) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(n, d, 2 * d) / math.sqrt(d))
        self.b1 = nn.Parameter(torch.zeros(n, 2 * d))
        self.w2 = nn.Parameter(torch.randn(n, 2 * d, d) / math.sqrt(2 * d))
        self.b2 = nn.Parameter(torch.zeros(n, d))

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        h = F.gelu(torch.einsum("nd,nedh->neh", x, self.w1[index]) + self.b1[index])    # (N, E, 2d)
        return torch.einsum("neh,nehd->ned", h, self.w2[index]) + self.b2[index]        # (N, E, d)


class MoE(nn.Module):
    """eqs. 18-20: softmax gate over m_s shared + the m_p private experts of the target behavior
    (hard routing); for b = ∅ the private experts are dropped and the gate renormalizes over the shared."""

    def __init__(self, cfg: FatsMBConfig, n_behaviors: int) -> None:
        super().__init__()
        self.ms, self.mp, self.nb = cfg.shared_experts, cfg.private_experts, n_behaviors
        self.shared = ExpertMLP(self.ms, cfg.d)
        self.private = ExpertMLP(n_behaviors * self.mp, cfg.d)
        self.gate = nn.Linear(cfg.d, self.ms + self.mp)                                 # W_g, eq. 18

    def forward(self, x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        N = x.shape[0]
        null = b >= self.nb                                                              # (N,) b = ∅
        shared = self.shared(x, torch.arange(self.ms).expand(N, -1))                     # (N, ms, d)
        pidx = b.clamp(max=self.nb - 1)[:, None] * self.mp + torch.arange(self.mp)[None]  # (N, mp)
        private = self.private(x, pidx)                                                  # (N, mp, d)
        logits = self.gate(x)                                                            # (N, ms+mp)
        logits = torch.cat([logits[:, : self.ms], logits[:, self.ms:].masked_fill(null[:, None], -1e9)], 1)
        w = logits.softmax(-1)                                                           # eq. 18 / 20
        return torch.einsum("ne,ned->nd", w, torch.cat([shared, private], 1))            # eq. 19


class MCGLNBlock(nn.Module):
    """One Multi-Condition Guided LayerNorm block (eqs. 21-23), adaLN-Zero initialised (identity at start)."""

    def __init__(self, cfg: FatsMBConfig, n_behaviors: int, experts: bool) -> None:
        super().__init__()
        d = cfg.d
        self.ln_s = nn.LayerNorm(2 * d, elementwise_affine=False)
        self.ln_t = nn.LayerNorm(d, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(2 * d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.moe = MoE(cfg, n_behaviors) if experts else nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        # eq. 23: (alpha_s, beta_s, gamma_s) on the 2d concat, (alpha_t, beta_t, gamma_t) on d
        self.mod = nn.Sequential(nn.SiLU(), nn.Linear(d, d + 2 * 2 * d + 3 * d))
        nn.init.zeros_(self.mod[-1].weight)                                              # adaLN-Zero
        nn.init.zeros_(self.mod[-1].bias)
        self.d = d

    def forward(self, z, z_null, cond, b):
        d = self.d
        a_s, b_s, g_s, a_t, b_t, g_t = self.mod(cond).split([d, 2 * d, 2 * d, d, d, d], dim=-1)
        s = self.ln_s(torch.cat([z, z_null], -1)) * (1 + g_s) + b_s                    # eq. 21
        z = z + a_s * self.mlp(s)
        u = self.ln_t(z) * (1 + g_t) + b_t                                               # eq. 22
        f = self.moe(u, b) if isinstance(self.moe, MoE) else self.moe(u)
        return z + a_t * f


class MCGLNDenoiser(nn.Module):
    """x0-predicting denoiser: (z_t, t, z_∅, b) -> z_0 estimate. ``kind``: mcgln | adaln | mlp."""

    def __init__(self, cfg: FatsMBConfig, n_behaviors: int) -> None:
        super().__init__()
        self.kind, self.d, self.nb = cfg.denoiser, cfg.d, n_behaviors
        d = cfg.d
        self.t_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))          # e_t
        self.b_emb = nn.Embedding(n_behaviors + 1, d)                                    # e_b, last row = ∅
        if self.kind == "mlp":                                                           # ablation: no modulation
            self.net = nn.Sequential(nn.Linear(4 * d, 4 * d), nn.GELU(), nn.Linear(4 * d, 4 * d), nn.GELU(),
                                     nn.Linear(4 * d, d))
        elif self.kind in ("mcgln", "adaln"):
            self.blocks = nn.ModuleList(MCGLNBlock(cfg, n_behaviors, experts=self.kind == "mcgln")
                                        for _ in range(cfg.den_layers))
            self.final_ln = nn.LayerNorm(d, elementwise_affine=False)
            self.final = nn.Linear(d, d)
        else:
            raise ValueError(f"denoiser must be mcgln, adaln or mlp, got {self.kind!r}")

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, z_null: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """z_t, z_null (N, d); t (N,) int timesteps; b (N,) behavior, n_behaviors = ∅. Returns (N, d)."""
        e_t = self.t_mlp(timestep_embedding(t, self.d))
        e_b = self.b_emb(b)
        if self.kind == "mlp":
            return self.net(torch.cat([z_t, z_null, e_t, e_b], -1))
        cond = e_t + e_b                                                                 # eq. 23 input
        z = z_t
        for blk in self.blocks:
            z = blk(z, z_null, cond, b)
        return self.final(self.final_ln(z))


class FatsMB(nn.Module):
    """Encoder + decoder + denoiser, and the helpers every stage uses."""

    def __init__(self, cfg: FatsMBConfig, n_items: int, n_behaviors: int) -> None:
        super().__init__()
        self.cfg, self.n_items, self.n_behaviors = cfg, n_items, n_behaviors
        self.encoder = MBAE(cfg, n_items, n_behaviors)
        self.decoder = Decoder(cfg, self.encoder.item)
        self.denoiser = MCGLNDenoiser(cfg, n_behaviors)

    def guided(self, z_t: torch.Tensor, t: torch.Tensor, z_null: torch.Tensor, b: torch.Tensor,
               w: float) -> torch.Tensor:
        """Classifier-free guidance (eq. 17): uncond + w (cond - uncond); w = 1 + the paper's ω."""
        cond = self.denoiser(z_t, t, z_null, b)
        if w == 1.0:
            return cond
        uncond = self.denoiser(z_t, t, z_null, torch.full_like(b, self.n_behaviors))
        return uncond + w * (cond - uncond)
