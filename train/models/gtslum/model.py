"""GTS-LUM, the model (paper 002, "GTS-LUM: Reshaping User Behavior Modeling with LLMs in
Telecommunications Industry"), nanoGPT style: config, Q-Former, frozen decoder, the whole model.

The paper's summary gives no equation numbers; the comments name its mechanisms instead:

* **semantic interval timestamps** -> `GTSLUM.assemble` (tds tokens, time IDs);
* **semantic IDs + business embeddings -> Q-Former** -> `QFormer` (behavior fusion, b^F_j);
* **Q-Former pre-training** (behavior-level and sequence-level contrastive / matching / generation)
  -> `GTSLUM.pretrain_losses`;
* **target-aware sequence, target at the front** -> the TGT token (`sequence.layout` places it);
* **frozen decoder, user embedding = last position** -> `FrozenDecoder` (SmolLM2-135M, first k blocks);
* **contrastive end-to-end training + prediction head** -> `GTSLUM.forward` / `GTSLUM.loss`.

Decisions where the paper is vague or our setting differs (each also noted at its code):
* The decoder is SmolLM2-135M (the issue's choice; the paper uses TinyLlama-1.1B), and only its
  first ``llm_blocks`` blocks (default 2 of 30) run, followed by its final RMSNorm: on a 2-core CPU
  every training step back-propagates through the frozen blocks (the trainable Q-Former sits below
  them), and 2 blocks keep a step under a second. The frozen weights are read from the float32
  safetensors copy that `umask.train.models.umask.uscope.llm.prepare_base` makes of the GGUF.
* A tds token is one vector, the mean of the frozen token embeddings of its descriptor text,
  computed once (63 descriptors) instead of a run of word tokens, to keep sequences short.
* The target: ranking K = 20 categories with the candidate in front would cost K decoder passes;
  the front-placed target here is the *target query* -- the target interval's descriptor, a learned
  [TGT] vector and the user's category shares at the target hour of day -- and the K categories are
  scored against the last state by the head (a two-tower contrast, as in the paper's phase II).
* The n_q query outputs of a behavior are mean-pooled into one decoder token.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from umask.runtime.families.gtslum import sequence as sq

MODALITIES = ("text", "graph", "table", "all")      # text = semantic IDs only; graph / table: + that business input


@dataclass
class GTSLUMConfig:
    """Sizes and switches of the model (the ablations flip `timestamps`, `target`, `modalities`)."""

    n_categories: int = field(default=20, metadata={"help": "K app categories (the items ranked)"})
    n_places: int = field(default=14, metadata={"help": "P POI place types (P + 1 with 'unknown place')"})
    sid_sizes: tuple[int, ...] = field(default=(4, 4, 64), metadata={"help": "codebook size per semantic-ID level"})
    node_dim: int = field(default=16, metadata={"help": "node2vec dimension E"})
    d_q: int = field(default=64, metadata={"help": "Q-Former width"})
    q_layers: int = field(default=2, metadata={"help": "Q-Former layers"})
    q_heads: int = field(default=4, metadata={"help": "Q-Former attention heads"})
    n_queries: int = field(default=2, metadata={"help": "learned queries per behavior"})
    llm_dim: int = field(default=576, metadata={"help": "decoder width (SmolLM2-135M)"})
    llm_blocks: int = field(default=2, metadata={"help": "first k decoder blocks that run (of 30)"})
    llm_heads: int = field(default=9, metadata={"help": "decoder attention heads"})
    llm_kv_heads: int = field(default=3, metadata={"help": "decoder key/value heads (GQA)"})
    llm_ffn: int = field(default=1536, metadata={"help": "decoder MLP width"})
    rope_theta: float = field(default=100000.0, metadata={"help": "decoder RoPE base"})
    rms_eps: float = field(default=1e-5, metadata={"help": "decoder RMSNorm epsilon"})
    head_dim: int = field(default=64, metadata={"help": "user/category embedding width of the head"})
    tau: float = field(default=0.1, metadata={"help": "temperature of the contrastive losses"})
    timestamps: str = field(default="full", metadata={"help": "none | text | component | positional | full"})
    target: str = field(default="front", metadata={"help": "none | end | front"})
    modalities: str = field(default="all", metadata={"help": "text | graph | table | all"})
    prior_head: bool = field(default=True, metadata={
        "help": "head adds learned multiples of log(user's category shares at the target hour / overall) to the "
                "contrastive scores (our addition; --no-prior-head = the paper's plain head)"})
    max_intervals: int = field(default=6, metadata={"help": "active intervals in the sequence"})
    per_interval: int = field(default=3, metadata={"help": "behaviors kept per interval"})
    score_gate: bool = field(default=True, metadata={
        "help": "(with prior_head) the contrastive scores enter the head times a learned scale that starts at 0, so "
                "the untrained head is the frequency prior and training adds the network only as far as it helps "
                "(our addition; --no-score-gate = the contrastive scores at full weight from the start)"})
    target_hist_hours: float = field(default=0.0, metadata={
        "help": "width (hours) of the Gaussian that smooths the user's hour-of-day counts before the target "
                "hour's shares are read (target token and head prior; sequence.target_shares); 0 = the raw "
                "same-hour counts (runs before this option)"})

    def __post_init__(self) -> None:
        self.sid_sizes = tuple(int(s) for s in self.sid_sizes)
        if not self.target_hist_hours >= 0:
            raise ValueError(f"target_hist_hours must be >= 0, got {self.target_hist_hours!r}")
        if self.timestamps not in sq.TIMESTAMP_MODES or self.target not in sq.TARGET_MODES \
                or self.modalities not in MODALITIES:
            raise ValueError(f"timestamps {self.timestamps!r} / target {self.target!r} / modalities "
                             f"{self.modalities!r}: not one of {sq.TIMESTAMP_MODES} / {sq.TARGET_MODES} / {MODALITIES}")

    @property
    def table_dim(self) -> int:
        return self.n_categories + sq.N_TABLE_STATS

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sid_sizes"] = list(self.sid_sizes)
        return d


# ------------------------------------------------------------------------------------------------
# Q-Former: learned queries attend to [semantic-ID tokens ; business tokens]
# ------------------------------------------------------------------------------------------------
class QFormerLayer(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        h = self.ln1(q)
        q = q + self.self_attn(h, h, h, need_weights=False)[0]            # queries talk to each other
        q = q + self.cross_attn(self.ln2(q), kv, kv, need_weights=False)[0]  # ... and read the inputs
        return q + self.mlp(self.ln3(q))


class QFormer(nn.Module):
    """Fuses one behavior's semantic ID with its business embeddings into n_q query vectors."""

    def __init__(self, cfg: GTSLUMConfig) -> None:
        super().__init__()
        d, E = cfg.d_q, cfg.node_dim
        self.cfg = cfg
        self.sid_emb = nn.ModuleList(nn.Embedding(n, d) for n in cfg.sid_sizes)   # one codebook per tree level
        self.level_emb = nn.Parameter(torch.randn(len(cfg.sid_sizes), d) * 0.02)
        self.graph_in = nn.ModuleList([nn.Linear(E, d), nn.Linear(E, d), nn.Linear(3 * E, d)])  # app, place, user graph
        self.table_in = nn.Sequential(nn.Linear(cfg.table_dim, d), nn.GELU(), nn.Linear(d, d))   # table embedding
        self.type_emb = nn.Parameter(torch.randn(5, d) * 0.02)          # sid / app / place / graph / table
        self.queries = nn.Parameter(torch.randn(cfg.n_queries, d) * 0.02)
        self.layers = nn.ModuleList(QFormerLayer(d, cfg.q_heads) for _ in range(cfg.q_layers))
        self.ln = nn.LayerNorm(d)

    @property
    def use_graph(self) -> bool:
        return self.cfg.modalities in ("graph", "all")

    @property
    def use_table(self) -> bool:
        return self.cfg.modalities in ("table", "all")

    def sid_tokens(self, sid: torch.Tensor) -> torch.Tensor:
        """(N, D) semantic IDs -> (N, D, d) tokens."""
        return torch.stack([emb(sid[:, i]) for i, emb in enumerate(self.sid_emb)], 1) + self.level_emb + self.type_emb[0]

    def business_tokens(self, app: torch.Tensor, place: torch.Tensor, graph: torch.Tensor,
                        table: torch.Tensor) -> torch.Tensor | None:
        """(N, E), (N, E), (N, 3E), (N, K + 8) -> (N, n_biz, d), None when the modality set has none."""
        toks = []
        if self.use_graph:
            toks += [self.graph_in[0](app) + self.type_emb[1], self.graph_in[1](place) + self.type_emb[2],
                     self.graph_in[2](graph) + self.type_emb[3]]
        if self.use_table:
            toks.append(self.table_in(table) + self.type_emb[4])
        return torch.stack(toks, 1) if toks else None

    def forward(self, kv: torch.Tensor) -> torch.Tensor:
        """(N, M, d) input tokens -> (N, n_q, d) query outputs."""
        q = self.queries.expand(kv.shape[0], -1, -1)
        for layer in self.layers:
            q = layer(q, kv)
        return self.ln(q)


# ------------------------------------------------------------------------------------------------
# The frozen decoder: the first k blocks of SmolLM2-135M (Llama architecture)
# ------------------------------------------------------------------------------------------------
class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], -1)


class LlamaBlock(nn.Module):
    """One Llama decoder block (RMSNorm, GQA self-attention with RoPE, SwiGLU MLP), weight names as in HF."""

    def __init__(self, cfg: GTSLUMConfig) -> None:
        super().__init__()
        D, hd = cfg.llm_dim, cfg.llm_dim // cfg.llm_heads
        self.h, self.kvh, self.hd = cfg.llm_heads, cfg.llm_kv_heads, hd
        self.input_layernorm = RMSNorm(D, cfg.rms_eps)
        self.post_attention_layernorm = RMSNorm(D, cfg.rms_eps)
        self.q_proj = nn.Linear(D, D, bias=False)
        self.k_proj = nn.Linear(D, cfg.llm_kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(D, cfg.llm_kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(D, D, bias=False)
        self.gate_proj = nn.Linear(D, cfg.llm_ffn, bias=False)
        self.up_proj = nn.Linear(D, cfg.llm_ffn, bias=False)
        self.down_proj = nn.Linear(cfg.llm_ffn, D, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, L, self.h, self.hd).transpose(1, 2)          # (B, h, L, hd)
        k = self.k_proj(h).view(B, L, self.kvh, self.hd).transpose(1, 2)        # (B, kvh, L, hd)
        v = self.v_proj(h).view(B, L, self.kvh, self.hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        rep = self.h // self.kvh
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)         # (B, h, L, hd)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd) + bias             # (B, h, L, L)
        y = att.softmax(-1) @ v
        x = x + self.o_proj(y.transpose(1, 2).reshape(B, L, D))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class FrozenDecoder(nn.Module):
    """inputs_embeds (B, L, D) + key mask (B, L) -> last position's state (B, D); weights frozen."""

    def __init__(self, cfg: GTSLUMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(LlamaBlock(cfg) for _ in range(cfg.llm_blocks))
        self.norm = RMSNorm(cfg.llm_dim, cfg.rms_eps)
        hd = cfg.llm_dim // cfg.llm_heads
        self.register_buffer("inv_freq", 1.0 / cfg.rope_theta ** (torch.arange(0, hd, 2).float() / hd), persistent=False)
        self.requires_grad_(False)

    def load_base(self, base_dir: str | Path) -> None:
        """Copy the first k blocks and the final norm from the SmolLM2 safetensors checkpoint."""
        from safetensors import safe_open

        with safe_open(str(Path(base_dir) / "model.safetensors"), "pt") as f:
            self.norm.weight.copy_(f.get_tensor("model.norm.weight"))
            for i, blk in enumerate(self.blocks):
                for name, p in blk.named_parameters():
                    part = name.split(".")[0]
                    sub = "self_attn" if part.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else \
                        "mlp" if part.endswith(("gate_proj", "up_proj", "down_proj")) else None
                    key = f"model.layers.{i}.{sub + '.' if sub else ''}{name}"
                    with torch.no_grad():
                        p.copy_(f.get_tensor(key))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        m = mask.to(x.dtype)                                                   # (B, L) 1 = real token
        pos = (m.cumsum(1) - 1).clamp(min=0)                                   # left padding: real tokens 0, 1, ...
        ang = pos[..., None] * self.inv_freq                                   # (B, L, hd/2)
        ang = torch.cat([ang, ang], -1)[:, None]                               # (B, 1, L, hd)
        cos, sin = ang.cos(), ang.sin()
        ar = torch.arange(L, device=x.device)
        ok = (ar[:, None] >= ar[None])[None] & (mask[:, None, :] > 0)          # (B, L, L) keys: earlier + real
        ok = ok | (ar[:, None] == ar[None])[None]                              # pad rows attend to themselves
        bias = torch.where(ok, 0.0, -1e9)[:, None].to(x.dtype)                 # (B, 1, L, L)
        for blk in self.blocks:
            x = blk(x, cos, sin, bias)
        return self.norm(x[:, -1])                                             # user embedding: last position


# ------------------------------------------------------------------------------------------------
# GTS-LUM
# ------------------------------------------------------------------------------------------------
class GTSLUM(nn.Module):
    def __init__(self, cfg: GTSLUMConfig, sid_table: torch.Tensor, node_emb: torch.Tensor,
                 desc_text: torch.Tensor, emb_rms: float = 0.136) -> None:
        super().__init__()
        self.cfg = cfg
        D, d, K = cfg.llm_dim, cfg.d_q, cfg.n_categories
        self.register_buffer("sid_table", sid_table.long())        # (K (P+1), levels) semantic ID per behavior
        self.register_buffer("node_emb", node_emb.float())         # (K + P + 1, E) node2vec (fixed)
        self.register_buffer("desc_text", desc_text.float())       # (63, D) frozen text embedding of each tds
        self.emb_rms = emb_rms                                     # scale of the decoder's own token embeddings
        self.qformer = QFormer(cfg)
        self.to_llm = nn.Linear(d, D)                              # b^F_j: fused behavior -> decoder token
        nn.init.normal_(self.to_llm.weight, std=emb_rms / math.sqrt(d))
        self.sep = nn.Parameter(torch.randn(D) * emb_rms)          # [SEP]
        self.tgt = nn.Parameter(torch.randn(D) * emb_rms)          # [TGT]
        self.target_in = nn.Linear(K, D)                           # user's category shares at the target hour
        self.weekday_emb = nn.Parameter(torch.randn(7, D) * emb_rms)                     # "component" timestamps
        self.tcat_emb = nn.Parameter(torch.randn(sq.N_TIME_CATEGORIES, D) * emb_rms)
        self.time_emb = nn.Parameter(torch.randn(sq.MAX_TIME_ID + 1, D) * emb_rms * 0.5)  # time IDs
        self.decoder = FrozenDecoder(cfg)
        self.user_proj = nn.Linear(D, cfg.head_dim)                # next-app-category head: user tower
        self.cat_emb = nn.Parameter(torch.randn(K, cfg.head_dim) * 0.1)                  # ... item tower
        self.prior_w = nn.Parameter(torch.full((2,), 0.5))         # frequency prior of the head (prior_head)
        if cfg.prior_head and cfg.score_gate:                      # zero-initialized gate of the contrastive scores
            self.score_scale = nn.Parameter(torch.zeros(()))
        # phase I heads (Q-Former pre-training)
        self.text_proj = nn.Linear(d, d)
        self.biz_proj = nn.Linear(d, d)
        self.match_head = nn.Linear(d, 1)
        self.gen_heads = nn.ModuleList(nn.Linear(d, n) for n in cfg.sid_sizes)
        self.seq_match = nn.Linear(2 * d, 1)
        self.seq_gen = nn.Linear(d, K)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Everything but the frozen decoder (reloaded from the base checkpoint)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("decoder.")}

    # -- behavior fusion -------------------------------------------------------------------------
    def behavior_inputs(self, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Flattened per-behavior inputs: (sid (N, levels), app node, place node, user graph, table)."""
        cat, pl = b["beh_category"], b["beh_place"]                          # (B, Nb)
        B, Nb = cat.shape
        beh = cat * (self.cfg.n_places + 1) + pl
        sid = self.sid_table[beh.reshape(-1)]
        app = self.node_emb[cat.reshape(-1)]
        place = self.node_emb[self.cfg.n_categories + pl.reshape(-1)]
        graph = b["graph"][:, None].expand(B, Nb, -1).reshape(B * Nb, -1)
        table = b["table"][:, None].expand(B, Nb, -1).reshape(B * Nb, -1)
        return sid, app, place, graph, table

    def fuse(self, sid: torch.Tensor, app: torch.Tensor, place: torch.Tensor, graph: torch.Tensor,
             table: torch.Tensor) -> torch.Tensor:
        """b^F: Q-Former over [semantic-ID tokens ; business tokens] -> (N, D) decoder tokens."""
        kv = self.qformer.sid_tokens(sid)
        biz = self.qformer.business_tokens(app, place, graph, table)
        if biz is not None:
            kv = torch.cat([kv, biz], 1)
        return self.to_llm(self.qformer(kv).mean(1))                        # n_q outputs pooled to one token

    # -- sequence assembly: semantic interval timestamps, target token ---------------------------
    def assemble(self, types: torch.Tensor, index: torch.Tensor, time_id: torch.Tensor, beh: torch.Tensor,
                 target_hist: torch.Tensor) -> torch.Tensor:
        """(B, L) tokens + (B, Nb, D) fused behaviors -> (B, L, D) decoder inputs."""
        cfg = self.cfg
        D = cfg.llm_dim
        desc = index.clamp(0, sq.N_DESCRIPTORS - 1)
        if cfg.timestamps == "component":                                   # learned weekday + time category
            tds = self.weekday_emb[desc // sq.N_TIME_CATEGORIES] + self.tcat_emb[desc % sq.N_TIME_CATEGORIES]
        elif cfg.timestamps in ("text", "full"):                            # the descriptor's text embedding
            tds = self.desc_text[desc]
        else:
            tds = torch.zeros(*types.shape, D, dtype=beh.dtype, device=beh.device)
        slot = index.clamp(0, beh.shape[1] - 1)
        behx = torch.gather(beh, 1, slot[..., None].expand(-1, -1, D))      # (B, L, D)
        tgt = self.tgt + tds + self.target_in(target_hist)[:, None]         # target query token
        t = types[..., None]
        x = torch.where(t == sq.BEH, behx, torch.zeros_like(behx))
        x = torch.where(t == sq.TDS, tds, x)
        x = torch.where(t == sq.SEP, self.sep.expand_as(x), x)
        x = torch.where(t == sq.TGT, tgt, x)
        if cfg.timestamps in ("positional", "full"):                        # time ID shared inside an interval
            x = x + self.time_emb[time_id] * (t != sq.PAD)
        return x

    def user_embedding(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        B, Nb = b["beh_category"].shape
        beh = self.fuse(*self.behavior_inputs(b)).view(B, Nb, -1)
        x = self.assemble(b["types"], b["index"], b["time_id"], beh, b["target_hist"])
        return self.decoder(x, (b["types"] != sq.PAD).to(x.dtype))

    def head(self, h: torch.Tensor, target_hist: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """(B, D) user embedding -> (B, K) category scores: cosine(user, category) / tau, plus (prior_head)
        w1 log(eps + shares at the target hour) + w2 log(eps + overall shares) of the user's history.

        The prior is our addition, not the paper's: trained for a few hundred CPU steps, the plain head
        learned global popularity and not the user (the run kept as ablation "head_noprior"); the
        prior gives the head the user's frequencies directly and the network learns the correction.
        With ``score_gate`` the contrastive scores are multiplied by a scale that starts at 0 (the house's
        residual-over-a-prior rule, as U-MASK's zero-initialized residual): without it the cosine / tau term
        (std about 2.2 over categories against 0.6 for each prior term) dominated from the first step and,
        alone, ranked far below the prior (test NDCG@5 0.38-0.59 against 0.86; runs of 2026-12-07)."""
        u = F.normalize(self.user_proj(h), dim=-1)
        s = u @ F.normalize(self.cat_emb, dim=-1).T / self.cfg.tau                    # (B, K)
        if self.cfg.prior_head and self.cfg.score_gate:
            s = self.score_scale * s
        if self.cfg.prior_head:
            K = self.cfg.n_categories
            s = s + self.prior_w[0] * torch.log(target_hist + 0.01) + self.prior_w[1] * torch.log(table[:, :K] + 0.01)
        return s

    def forward(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.user_embedding(b), b["target_hist"], b["table"])

    def loss(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """Phase II contrastive end-to-end loss: multi-positive InfoNCE of the user embedding against all
        K category embeddings (each opened category is a positive, the others the negatives)."""
        logp = self(b).log_softmax(-1)
        pos = b["truth"].float()
        return -((logp * pos).sum(-1) / pos.sum(-1).clamp(min=1)).mean()

    # -- phase I: Q-Former pre-training ----------------------------------------------------------
    def pretrain_losses(self, b: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Behavior level (over valid behaviors) and sequence level (over windows):
        contrastive (text view vs business view), matching (true vs shuffled business), generation
        (semantic-ID codes / the window's category mix from the business view)."""
        qf = self.qformer
        B, Nb = b["beh_category"].shape
        sid, app, place, graph, table = self.behavior_inputs(b)
        valid = b["beh_valid"].reshape(-1)
        sid, app, place, graph, table = (a[valid] for a in (sid, app, place, graph, table))
        win = torch.arange(B, device=sid.device)[:, None].expand(B, Nb).reshape(-1)[valid]
        N = len(sid)
        s_tok = qf.sid_tokens(sid)
        biz = qf.business_tokens(app, place, graph, table)
        t = F.normalize(self.text_proj(s_tok.mean(1)), dim=-1)                 # text (semantic-ID) view
        z_raw = qf(biz).mean(1)
        z = F.normalize(self.biz_proj(z_raw), dim=-1)                          # business view
        beh = (b["beh_category"].reshape(-1)[valid] * (self.cfg.n_places + 1)
                                               + b["beh_place"].reshape(-1)[valid])
        same = (beh[:, None] == beh[None]) & (win[:, None] == win[None])       # duplicates are not negatives
        logits = t @ z.T / self.cfg.tau
        logits = logits.masked_fill(same & ~torch.eye(N, dtype=torch.bool, device=t.device), -1e4)
        lab = torch.arange(N, device=t.device)
        btc = 0.5 * (F.cross_entropy(logits, lab) + F.cross_entropy(logits.T, lab))
        perm = torch.randperm(N, generator=gen).to(t.device)                  # matching: shuffled business tokens
        neg = beh[perm] != beh
        fused_pos = qf(torch.cat([s_tok, biz], 1)).mean(1)
        fused_neg = qf(torch.cat([s_tok, biz[perm]], 1)).mean(1)
        m_logit = torch.cat([self.match_head(fused_pos), self.match_head(fused_neg)[neg]]).squeeze(-1)
        m_lab = torch.cat([torch.ones(N), torch.zeros(int(neg.sum()))]).to(t.device)
        btm = F.binary_cross_entropy_with_logits(m_logit, m_lab)
        btg = sum(F.cross_entropy(h(z_raw), sid[:, i]) for i, h in enumerate(self.gen_heads)) / len(self.gen_heads)
        # sequence level: pooled behaviors of a window vs the user's business side (its table/graph tokens)
        raw = torch.zeros(B, device=t.device).index_add_(0, win, torch.ones(N, device=t.device))
        cnt = raw.clamp(min=1)
        seq_t = torch.zeros(B, t.shape[1], device=t.device).index_add_(0, win, fused_pos) / cnt[:, None]
        user_z = qf(biz[:, -1:]).mean(1)                                       # the window's user-level token
        has = raw > 0
        st = F.normalize(self.text_proj(seq_t), dim=-1)
        sz = F.normalize(self.biz_proj(user_z.new_zeros(B, user_z.shape[1]).index_copy(0, win, user_z)), dim=-1)
        sl = st @ sz.T / self.cfg.tau
        nh = int(has.sum())
        sc = F.cross_entropy(sl[has][:, has], torch.arange(nh, device=t.device)) if nh > 1 else sl.sum() * 0
        rp = torch.roll(torch.arange(B), 1).to(t.device)
        sm_logit = torch.cat([self.seq_match(torch.cat([seq_t, sz], -1)), self.seq_match(torch.cat([seq_t, sz[rp]], -1))])
        sm = F.binary_cross_entropy_with_logits(sm_logit.squeeze(-1), torch.cat([torch.ones(B), torch.zeros(B)]).to(t.device))
        mix = torch.zeros(B, self.cfg.n_categories, device=t.device).index_add_(
            0, win, F.one_hot(b["beh_category"].reshape(-1)[valid], self.cfg.n_categories).float())
        mix = mix / mix.sum(-1, keepdim=True).clamp(min=1)
        sg = -(self.seq_gen(user_z.new_zeros(B, user_z.shape[1]).index_copy(0, win, user_z)).log_softmax(-1) * mix).sum(-1).mean()
        return {"btc": btc, "btm": btm, "btg": btg, "sc": sc, "sm": sm, "sg": sg}


__all__ = ["GTSLUMConfig", "GTSLUM", "QFormer", "FrozenDecoder", "LlamaBlock", "MODALITIES"]
