"""U-MASK mask generator (section 4, eqs. 5-18): a user- and task-specific evidence mask.

Given a user's behaviour window X (B, C, T, H, W), the coordinates that may be revealed as evidence
(``avail``), the U-SCOPE user representation h_u, the task and the location embedding E_pos, the
generator returns a mask over the (t, h, w) coordinates (all channels together) with EXACTLY k_b
ones, all inside ``avail``. The shared DiT (train/models/umask/dit.py) then completes the rest.

Equation numbers are the paper's (U-MASK, arXiv 2601.06867); docs/paper_notes.md §3 gives, for
each one, the paper's form, this code's form and why they differ. What the code implements:

- eq. 5   behavioural encoder and T_hier. Every coordinate gets a token
          u = GELU(W_x [x; avail] + W_e E_pos[h, w] + W_t [sincos(t); sincos(t mod period)]).
          T_hier = three normalized masked temporal poolings of u, done as matmuls with FIXED
          (T, T) kernels (no unfold / FFT, export-friendly), per spatial cell:
            F_short(t) = mean of available u within |t - s| <= short_radius      (local context)
            F_long(t)  = mean of available u within |t - s| <= long_radius       (day-scale context)
            F_pat(t)   = mean of available u at the same phase s = t (mod period) (daily pattern).
          User-level vectors (features for h_b and analysis plots): F_short = recency-weighted mean
          of u (decay exp(-(t_last - t) / short_radius)), F_long = mean of u, F_pat = a per-phase
          weighted sum of the daily phase profile (learned (period, d) weights, so users with
          different daily rhythms differ; this is the vector for the t-SNE plots).
          h_b = MLP([F_short; F_long; F_pat; density; activity]).
- eq. 6   task projection: a_tau = [F_short; F_long; F_pat](t, h, w) @ P_tau + b_tau, one (3d, d)
          matrix per task (gathered by the task index).
- eq. 7   Fisher-style sensitivity: G_tau in R^d is a buffer holding an EMA of the diagonal
          empirical Fisher E[(dL/da_tau)^2] of the downstream (DiT) loss with respect to the
          projected features; the trainer feeds it with ``update_fisher`` (never inside forward).
          a_tau <- a_tau * (1 + lambda (G_hat_tau - 1)), G_hat_tau = G_tau / mean(G_tau), so the
          gate is the identity while G is flat (init: G = 1). lambda = sigmoid(learnable), init 0.5.
- eq. 8   K-step residual refinement: a^(k+1) = a^(k) + Delta_tau^(k)(LN(a^(k)) + c_b), where c_b =
          W_c [h_b; W_u h_u; e_tau] (e_tau a task embedding, so Delta is task-specific) and
          Delta^(k) is a per-coordinate 2-layer MLP (own weights per step). Score s = w^T a^(K).
- eq. 9   batch stack Z_B: replaced by the reference set R (below: batch + bank, or the bank).
- eq. 10  soft groups: q_b = softmax_g(cos(h_b, mu_g) / group_temp), n_groups learnable prototypes.
- eq. 11  similarity: S_bj = q_b . q_j (probability that b and j share a soft group) against the
          reference set R, times the validity of j; neighbour similarity s_b = sum_j S_bj
          cos(F_pat_b, F_pat_j) / sum_j S_bj (how typical the user's daily pattern is among its
          group peers; the paper takes max_j S_bj). Also a neighbour context (not in the paper)
          hbar_b = sum_j S_bj h_j / sum_j S_bj (``features["e_b"]``; not the paper's e_b of
          eq. 12). Both are 0 when R is empty.
- eq. 12  reliability gamma_b = 2 sigmoid(MLP([h_b; hbar_b; s_b; density; activity; W_u h_u]))
          in (0, 2); the last layer is zero-initialized, so gamma_b = 1 at init (the paper's input
          is e_b = [s_b, ||Z_b||, H(A_b)]).
- eq. 13  learnable base ratio rho_tau = sigmoid(rho_logit_tau) (init ``rho_init``), effective
          ratio r_b = clamp(gamma_b rho_tau, min_ratio, max_ratio).
- budget (section 4.3.3, unnumbered; Algorithm 1 line 8): continuous budget kappa_b = r_b n_b and
          integer budget k_b = clamp(round(kappa_b), 1 if n_b > 0 else 0, n_b) with n_b = number
          of AVAILABLE coordinates, not T H W (round half to even, as torch and ONNX).
- eq. 14  temporal profile: log phi_b(t) = log_softmax_t(-decay_b (t_last_b - t)+ / period
          + phase_tau[t mod period]), decay_b = softplus(phi_decay_tau + w_phi . h_b);
          t_last_b = last slot with available data (recency with respect to the evidence edge).
          Mixture with beta_tau = sigmoid(learnable), taken in log space (paper_notes I5):
          logits = s + beta_tau log phi(t) + (1 - beta_tau) log psi(h, w), restricted to avail,
          log pi = log_softmax over the available coordinates (a product of experts).
- eq. 15  POI-based spatial affinity psi_b(h, w) = softmax_hw(<W_k E_pos[h, w], q_b> / sqrt(d)),
          query q_b = W_q [h_b; W_u h_u; e_bar_b] with e_bar_b the visit-weighted mean of
          W_k E_pos (the "feature-weighted" affinity).
- eq. 18  cold-start uniform mixing: pi <- (1 - eps_b) pi + eps_b U(avail), eps_b = cold_eps for
          the cold_start task and 0 otherwise. eps is FIXED (config, default 0.5), not learned: a
          learned eps would be driven to 0 by the completion loss and the exploration property
          (cold-start entropy > short-term entropy) could not be guaranteed. Computed in log space.
          With the defaults the cold-start entropy exceeds the short-term one for every user with
          n_b >= 2 available coordinates (uniform floor eps / n_b; flatter recency prior).
- eq. 16  Gumbel top-k: z = log pi + g, g ~ Gumbel(0, 1) (training: always; eval: from the given
          torch.Generator, none without one; or passed explicitly as ``gumbel``); the hard mask is
          1 on the k_b largest z, found by RANKING (a full sort, torch.topk(k=N) = ONNX TopK, then a
          scatter of the positions gives each coordinate's rank) and the comparison rank < k_b, so it
          is exact (ranks are a permutation: exactly k_b ones whatever the ties), branch-free and
          exportable. Unavailable coordinates sit at NEG and rank after every available one.
- relaxation (unnumbered: the "continuous relaxation" the paper mentions after eq. 20):
          m_soft = avail sigmoid((z - theta_b) / tau), theta_b
          solves sum m_soft = kappa_b (the CONTINUOUS budget): a fixed number of bisection steps
          (no gradient), then one Newton step with gradient, which gives the implicit-function
          gradient d theta / d(kappa, z). So gradients of a loss on the mask reach rho_tau,
          gamma_b (through kappa) and phi, psi, P_tau, ... (through z). Training output
          mask = hard + soft - soft.detach() (straight-through); eval output mask = hard.
          The paper's eq. 17 (M' = I ⊙ p, evidence scaled by relevance) is NOT implemented:
          the mask stays binary in value (paper_notes decision I2).

Batch statistics at inference (eqs. 9-11). The reference set R is
  - training, ``use_bank=False`` (the default in train mode): the other samples of the batch
    (self excluded) plus the valid entries of the reference bank;
  - ``use_bank=True`` (the default in eval mode and the only exported path): the bank only.
The bank is a fixed-size FIFO of detached (h_b, F_pat) vectors of recent training users, filled by
the trainer with ``update_bank(out.features)`` (never inside forward) and saved in the state dict,
so it ships with the model. With the bank as R every sample is processed independently, hence a
batch of N users gives the same outputs as N single-user calls (tested). The group prototypes
are applied to the stored h_b at every call, so the bank stays consistent with the current weights.

Defaults (ASSUMED, not from the paper): base ratios of the AVAILABLE coordinates rho_init =
(short_term 0.5, long_term 0.5, cold_start 0.9 -- a cold-start user has little history, so keep
most of it -- imputation 0.25), ratio clamp [0.02, 1.0], Gumbel / relaxation temperature tau =
0.5, cold_eps = 0.5, recency decays per task (4.0, 0.5, 0.05, 0.05) per ``period`` slots.

Export: ``forward`` has no data-dependent Python control flow (branches test config flags,
``self.training`` and whether optional arguments were given), shapes are fixed by the config except
the batch, no unfold / FFT. ``MaskGenExport`` wraps the eval path (bank statistics, explicit
Gumbel input, ``relax=False`` so the relaxation's bisection is not traced) for ``torch.onnx.export``
(opset 18, dynamo exporter; the TorchScript exporter works too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .dit import TASKS, sincos_1d

NEG = -1.0e9  # "-inf-like" logit of unavailable coordinates (finite: no NaN in softmax / sums)
COLD_START = TASKS.index("cold_start")


# ------------------------------------------------------------------------------------------------
# Config
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MaskGenConfig:
    # behaviour tensor X in R^{C x T x H x W} (same shapes as the DiT config of the same name)
    channels: int = 22
    T: int = 96
    H: int = 4
    W: int = 4
    poi_dim: int = 18            # P + 1: 17 Tsinghua POI shares + log1p(total) (runtime/core/tessellation.py)
    cond_dim: int = 384          # size of h_u
    d_hidden: int = 64
    n_groups: int = 8            # soft groups (eqs. 9-11)
    refine_steps: int = 2        # K (eq. 8)
    n_tasks: int = len(TASKS)
    tau: float = 0.5             # Gumbel / relaxation temperature (relaxation after eq. 20)
    bank_size: int = 256         # reference bank entries (eqs. 9-11 at inference)
    # base ratio per task, fraction of the AVAILABLE coordinates, order = TASKS (eq. 13)
    rho_init: tuple[float, ...] = (0.5, 0.5, 0.9, 0.25)
    min_ratio: float = 0.02
    max_ratio: float = 1.0
    # T_hier (eq. 5): slots per day, half-widths of the short and long temporal windows
    period: int = 96
    short_radius: int = 2
    long_radius: int = 48
    # eq. 14: initial recency decay per task (per ``period`` slots), order = TASKS
    phi_decay_init: tuple[float, ...] = (4.0, 0.5, 0.05, 0.05)
    group_temp: float = 0.1      # eq. 10
    cold_eps: float = 0.5        # eq. 18 (fixed)
    soft_iters: int = 32         # bisection steps of the relaxation threshold

    def __post_init__(self) -> None:
        if len(self.rho_init) != self.n_tasks or len(self.phi_decay_init) != self.n_tasks:
            raise ValueError("rho_init and phi_decay_init need one value per task")
        if not 0.0 < self.min_ratio <= self.max_ratio <= 1.0:
            raise ValueError(f"need 0 < min_ratio <= max_ratio <= 1, got {self.min_ratio}, {self.max_ratio}")
        if not all(0.0 < r < 1.0 for r in self.rho_init):
            raise ValueError(f"rho_init values must lie in (0, 1), got {self.rho_init}")
        if not 0.0 <= self.cold_eps < 1.0:
            raise ValueError(f"cold_eps must lie in [0, 1), got {self.cold_eps}")
        if self.tau <= 0 or self.group_temp <= 0:
            raise ValueError("tau and group_temp must be > 0")
        if min(self.T, self.H, self.W, self.period, self.d_hidden, self.n_groups, self.bank_size) < 1:
            raise ValueError("sizes must be >= 1")
        if self.refine_steps < 0 or self.short_radius < 0 or self.long_radius < 0 or self.soft_iters < 1:
            raise ValueError("refine_steps, radii must be >= 0 and soft_iters >= 1")
        if self.d_hidden % 2:
            raise ValueError("d_hidden must be even (sin-cos time features)")

    @property
    def n_coords(self) -> int:
        """N = T * H * W candidate coordinates."""
        return self.T * self.H * self.W


# Shapes match DIT_CONFIGS of the same name (channels, T, H, W, cond_dim). Sizes are assumptions.
MASKGEN_CONFIGS: dict[str, MaskGenConfig] = {
    # unit tests; period 8 so that T=16 holds two "days"
    "tiny": MaskGenConfig(channels=22, T=16, H=4, W=4, poi_dim=18, cond_dim=32, d_hidden=16, n_groups=4,
                          refine_steps=2, bank_size=16, period=8, short_radius=1, long_radius=4),
    # CPU training, 15-min slots, one day
    "small": MaskGenConfig(channels=22, T=96, H=4, W=4, poi_dim=18, cond_dim=384, d_hidden=64, n_groups=8,
                           refine_steps=2, bank_size=256, period=96, short_radius=2, long_radius=48),
    # GPU, three days of 15-min slots
    "base": MaskGenConfig(channels=22, T=288, H=4, W=4, poi_dim=18, cond_dim=384, d_hidden=128, n_groups=16,
                          refine_steps=3, bank_size=1024, period=96, short_radius=2, long_radius=48),
}


def maskgen_config(name: str, **overrides) -> MaskGenConfig:
    """A named config from MASKGEN_CONFIGS with some fields replaced."""
    if name not in MASKGEN_CONFIGS:
        raise KeyError(f"unknown mask-generator config {name!r}; choose from {sorted(MASKGEN_CONFIGS)}")
    return replace(MASKGEN_CONFIGS[name], **overrides)


@dataclass
class MaskOutput:
    mask: torch.Tensor      # (B, 1, T, H, W) straight-through in training, hard in eval
    hard: torch.Tensor      # (B, 1, T, H, W) {0, 1}, exactly k ones, inside avail
    soft: torch.Tensor      # (B, 1, T, H, W) in [0, 1] (relaxation, unnumbered)
    k: torch.Tensor         # (B,) long budget k_b (section 4.3.3, Algorithm 1 line 8)
    ratio: torch.Tensor     # (B,) effective ratio gamma_b * rho_tau (clamped)
    logits: torch.Tensor    # (B, N) log pi (eqs. 14-16, 18), NEG on unavailable coordinates
    probs: torch.Tensor     # (B, N) sampling distribution pi, 0 on unavailable coordinates
    features: dict[str, torch.Tensor] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# Fixed kernels
# ------------------------------------------------------------------------------------------------
def _phase_onehot(T: int, period: int) -> np.ndarray:
    """(period, T) 0/1 matrix, 1 where t mod period == p."""
    return (np.arange(T)[None, :] % period == np.arange(period)[:, None]).astype(np.float32)


def _tmix(m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Mix the time axis: (P, T) x (B, T, S, D) -> (B, P, S, D), i.e. einsum("pt,btsd->bpsd") as one MatMul."""
    B, T, S, D = v.shape
    return (m @ v.reshape(B, T, S * D)).reshape(B, m.shape[0], S, D)


def _box_sum(v: torch.Tensor, radius: int) -> torch.Tensor:
    """``K @ v`` along the time axis of (B, T, S, D), K the (T, T) 0/1 band |t - s| <= radius: computed
    as a difference of cumulative sums in float64 (O(T) instead of the (T, T) MatMul, which was 85 MFLOP a
    call and most of the exported mask generator's time; float64 keeps the difference exact to float32)."""
    T = v.shape[1]
    c = F.pad(v.double().cumsum(1), (0, 0, 0, 0, 1, 0))             # (B, T + 1, S, D), c[k] = sum_{s < k} v[s]
    t = torch.arange(T, device=v.device)
    hi, lo = (t + radius + 1).clamp(max=T), (t - radius).clamp(min=0)
    return (c[:, hi] - c[:, lo]).to(v.dtype)


def _pool(radius: int, ua: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Normalized masked temporal pooling: (K @ (u * a)) / max(K @ a, 1), K the (T, T) band |t - s| <= radius.
    ua (B, T, S, d), a (B, T, S, 1)."""
    return _box_sum(ua, radius) / _box_sum(a, radius).clamp_min(1.0)


def _phase_sum(onehot: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``onehot @ v`` for the (period, T) phase one-hot: per phase p, the sum over t = p (mod period) of
    (B, T, S, D) -> (B, period, S, D). When T is a whole number of periods this is a reshape and a sum."""
    B, T, S, D = v.shape
    P = onehot.shape[0]
    if T % P:
        return _tmix(onehot, v)
    return v.reshape(B, T // P, P, S, D).sum(1)


def _phase_spread(onehot: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``onehot.T @ v``: each slot t takes its phase's row, (B, period, S, D) -> (B, T, S, D)."""
    P, T = onehot.shape
    if T % P:
        return _tmix(onehot.t(), v)
    return v.repeat(1, T // P, 1, 1)


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity matrix (B, d) x (R, d) -> (B, R)."""
    return F.normalize(a, dim=-1, eps=1e-6) @ F.normalize(b, dim=-1, eps=1e-6).t()


# ------------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------------
class RefineStep(nn.Module):
    """Delta^(k) of eq. 8: a per-coordinate 2-layer MLP on LN(a) + c_b."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 2 * d)
        self.fc2 = nn.Linear(2 * d, d)

    def forward(self, a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        # a (B, N, d), c (B, d)
        return self.fc2(F.gelu(self.fc1(self.norm(a) + c.unsqueeze(1))))


class MaskGenerator(nn.Module):
    """U-MASK mask generator (eqs. 5-18). See the module docstring for each equation."""

    def __init__(self, cfg: MaskGenConfig) -> None:
        super().__init__()
        self.cfg = cfg
        C, T, d, nt = cfg.channels, cfg.T, cfg.d_hidden, cfg.n_tasks

        # ---- eq. 5: coordinate tokens, behavioural encoder, T_hier ----
        self.enc_x = nn.Linear(C + 1, d)                 # [x; avail] per coordinate
        self.enc_pos = nn.Linear(cfg.poi_dim, d)         # E_pos[h, w] -> d
        tfeat = np.concatenate([sincos_1d(d // 2, np.arange(T)),
                                sincos_1d(d // 2, np.arange(T) % cfg.period)], axis=1)  # (T, d)
        self.register_buffer("time_feat", torch.from_numpy(tfeat).float(), persistent=False)
        self.enc_t = nn.Linear(d, d)
        self.register_buffer("phase_onehot", torch.from_numpy(_phase_onehot(T, cfg.period)), persistent=False)
        self.register_buffer("t_index", torch.arange(T, dtype=torch.float32), persistent=False)
        self.pat_weight = nn.Parameter(torch.ones(cfg.period, d) + 0.1 * torch.randn(cfg.period, d))
        self.enc_hb = nn.Sequential(nn.Linear(3 * d + 2, d), nn.GELU(), nn.Linear(d, d))
        self.user = nn.Linear(cfg.cond_dim, d)           # W_u h_u

        # ---- eq. 6: task projection P_tau ----
        self.P = nn.Parameter(torch.randn(nt, 3 * d, d) / math.sqrt(3 * d))
        self.P_bias = nn.Parameter(torch.zeros(nt, d))

        # ---- eq. 7: Fisher-style sensitivity G_tau (buffer, EMA by update_fisher) and lambda ----
        self.register_buffer("fisher", torch.ones(nt, d))
        self.lambda_logit = nn.Parameter(torch.zeros(()))

        # ---- eq. 8: K-step residual refinement Delta_tau ----
        self.task_embed = nn.Embedding(nt, d)
        self.refine_ctx = nn.Linear(3 * d, d)
        self.refine = nn.ModuleList([RefineStep(d) for _ in range(cfg.refine_steps)])
        self.score = nn.Linear(d, 1)

        # ---- eqs. 9-12: soft groups, reliability ----
        self.prototypes = nn.Parameter(torch.randn(cfg.n_groups, d))
        self.gamma_mlp = nn.Sequential(nn.Linear(3 * d + 3, d), nn.GELU(), nn.Linear(d, 1))
        nn.init.zeros_(self.gamma_mlp[-1].weight)
        nn.init.zeros_(self.gamma_mlp[-1].bias)   # gamma_b = 1 at init: ratio = rho_tau
        # reference bank: FIFO of (h_b, F_pat), saved with the model
        self.register_buffer("bank_h", torch.zeros(cfg.bank_size, d))
        self.register_buffer("bank_pat", torch.zeros(cfg.bank_size, d))
        self.register_buffer("bank_valid", torch.zeros(cfg.bank_size))
        self.register_buffer("bank_ptr", torch.zeros((), dtype=torch.long))

        # ---- eq. 13: learnable base ratio rho_tau ----
        rho = torch.tensor(cfg.rho_init, dtype=torch.float32)
        self.rho_logit = nn.Parameter(torch.log(rho) - torch.log1p(-rho))

        # ---- eqs. 14-15: temporal profile phi, mixing beta_tau (eq. 14), spatial affinity psi ----
        dec = torch.tensor(cfg.phi_decay_init, dtype=torch.float32)
        self.phi_decay = nn.Parameter(torch.where(dec > 20, dec, torch.log(torch.expm1(dec))))  # softplus^-1
        self.phi_user = nn.Linear(d, 1)
        nn.init.zeros_(self.phi_user.weight)
        nn.init.zeros_(self.phi_user.bias)
        self.phi_phase = nn.Parameter(torch.zeros(nt, cfg.period))
        self.psi_key = nn.Linear(cfg.poi_dim, d)   # W_k: E_pos projection
        self.psi_query = nn.Linear(3 * d, d)       # W_q
        self.beta_logit = nn.Parameter(torch.zeros(nt))

        # ---- eq. 18: cold-start mixing weight (fixed) ----
        eps = torch.zeros(nt)
        eps[COLD_START] = cfg.cold_eps
        self.register_buffer("eps_task", eps)

    # -------------------------------------------------------------------------------------------
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def rho(self) -> torch.Tensor:
        """(n_tasks,) base ratios rho_tau (eq. 13)."""
        return torch.sigmoid(self.rho_logit)

    def _groups(self, h: torch.Tensor) -> torch.Tensor:
        """eq. 10: soft group assignment q (.., n_groups)."""
        return torch.softmax(_cos(h, self.prototypes) / self.cfg.group_temp, dim=-1)

    # -------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, avail: torch.Tensor, h_u: torch.Tensor, task: torch.Tensor,
                e_pos: torch.Tensor, *, generator: Optional[torch.Generator] = None, hard: bool = True,
                use_bank: Optional[bool] = None, gumbel: Optional[torch.Tensor] = None,
                relax: bool = True) -> MaskOutput:
        """x (B, C, T, H, W), avail (B, 1, T, H, W) {0,1}, h_u (B, cond_dim), task (B,) long,
        e_pos (B, H, W, poi_dim). ``gumbel`` (B, N) overrides the noise of eq. 16 (for export).
        ``hard=False`` returns mask = soft (no straight-through) in both modes.
        ``relax=False`` skips the relaxation (soft = mask = hard, theta = 0): the cheaper
        inference path that the export uses; hard, probs, k, ratio and logits are unchanged."""
        cfg = self.cfg
        T, H, W, d = cfg.T, cfg.H, cfg.W, cfg.d_hidden
        S, N = H * W, cfg.n_coords
        if use_bank is None:
            use_bank = not self.training
        a = avail.to(x.dtype)
        xa = x * a                                                       # unavailable -> 0

        # ---------------- eq. 5: coordinate tokens u, behavioural encoder h_b, T_hier ----------
        xt = torch.cat([xa, a], dim=1).permute(0, 2, 3, 4, 1).reshape(-1, T, S, cfg.channels + 1)
        pos = self.enc_pos(e_pos.reshape(-1, S, cfg.poi_dim))            # (B, S, d)
        u = F.gelu(self.enc_x(xt) + pos.unsqueeze(1) + self.enc_t(self.time_feat)[None, :, None, :])  # (B,T,S,d)
        at = a.reshape(-1, T, S, 1)                                      # (B, T, S, 1)
        ua = u * at
        F_short_map = _pool(cfg.short_radius, ua, at)                    # (B, T, S, d)
        F_long_map = _pool(cfg.long_radius, ua, at)
        prof_num = _phase_sum(self.phase_onehot, ua)                     # (B, period, S, d)
        prof_den = _phase_sum(self.phase_onehot, at)                     # (B, period, S, 1)
        F_pat_map = _phase_spread(self.phase_onehot, prof_num / prof_den.clamp_min(1.0))   # (B, T, S, d)

        n_avail = a.flatten(1).sum(1)                                    # (B,)
        n_c = n_avail.clamp_min(1.0)
        a_t = at.amax(dim=(2, 3))                                        # (B, T) slot has data
        t_last = (a_t * self.t_index).amax(dim=1)                        # (B,) last slot with data
        rec = torch.exp(-(t_last[:, None] - self.t_index).clamp_min(0.0) / max(cfg.short_radius, 1)) * a_t
        rec_w = rec[:, :, None, None] * at                               # (B, T, S, 1)
        F_short = (ua * rec_w).sum((1, 2)) / rec_w.sum((1, 2)).clamp_min(1e-6)   # (B, d)
        F_long = ua.sum((1, 2)) / n_c[:, None]                           # (B, d)
        phase_cnt = prof_den.sum(2)                                      # (B, period, 1)
        phase_prof = prof_num.sum(2) / phase_cnt.clamp_min(1.0)          # (B, period, d)
        F_pat = (phase_prof * self.pat_weight).sum(1) / cfg.period      # (B, d)
        density = (n_avail / N)[:, None]                                 # (B, 1)
        activity = (xa.mean(1).flatten(1).sum(1) / n_c)[:, None]         # (B, 1)
        stats = torch.cat([density, activity], dim=1)                    # (B, 2)
        h_b = self.enc_hb(torch.cat([F_short, F_long, F_pat, stats], dim=1))  # (B, d)
        hu = self.user(h_u)                                              # (B, d)

        # ---------------- eq. 6: task projection P_tau -------------------------------------------
        z = torch.cat([F_short_map, F_long_map, F_pat_map], dim=-1).reshape(-1, N, 3 * d)
        a_tau = torch.bmm(z, self.P[task]) + self.P_bias[task][:, None, :]  # (B, N, d)

        # ---------------- eq. 7: Fisher-style sensitivity G_tau, lambda -------------------------
        G = self.fisher[task]                                            # (B, d)
        G_hat = G / G.mean(dim=1, keepdim=True).clamp_min(1e-12)
        lam = torch.sigmoid(self.lambda_logit)
        a_k = a_tau * (1.0 + lam * (G_hat - 1.0)).unsqueeze(1)

        # ---------------- eq. 8: K-step residual refinement Delta_tau ---------------------------
        ctx = self.refine_ctx(torch.cat([h_b, hu, self.task_embed(task)], dim=1))  # (B, d)
        for step in self.refine:                                          # K fixed by the config
            a_k = a_k + step(a_k, ctx)
        score = self.score(a_k).squeeze(-1)                               # (B, N)

        # ---------------- eqs. 9-11: reference set, soft groups, similarity, context -----------
        q = self._groups(h_b)                                             # eq. 10: (B, G)
        q_bank = self._groups(self.bank_h)                                # (M, G)
        S_bank = (q @ q_bank.t()) * self.bank_valid[None, :]              # eq. 11: (B, M)
        num_s = (S_bank * _cos(F_pat, self.bank_pat)).sum(1)
        num_e = S_bank @ self.bank_h
        den = S_bank.sum(1)
        if not use_bank:  # training: the rest of the batch joins the reference set (self excluded)
            B = h_b.shape[0]
            S_batch = (q @ q.t()) * (1.0 - torch.eye(B, dtype=h_b.dtype, device=h_b.device))
            num_s = num_s + (S_batch * _cos(F_pat, F_pat)).sum(1)
            num_e = num_e + S_batch @ h_b
            den = den + S_batch.sum(1)
        s_b = num_s / den.clamp_min(1e-6)                                 # eq. 11: (B,)
        e_b = num_e / den.clamp_min(1e-6)[:, None]                        # hbar_b, context: (B, d)

        # ---------------- eq. 12: reliability gamma_b ---------------------------------------------
        g_in = torch.cat([h_b, e_b, hu, s_b[:, None], stats], dim=1)
        gamma = 2.0 * torch.sigmoid(self.gamma_mlp(g_in).squeeze(-1))     # (B,) in (0, 2)

        # ---------------- eq. 13: base ratio rho_tau; budget k_b (section 4.3.3, Alg. 1 line 8) ---
        rho_tau = torch.sigmoid(self.rho_logit)[task]                     # (B,)
        ratio = (gamma * rho_tau).clamp(cfg.min_ratio, cfg.max_ratio)
        kappa = ratio * n_avail                                           # continuous budget
        k_f = torch.round(kappa.detach())
        k_f = torch.minimum(torch.maximum(k_f, (n_avail > 0).to(k_f.dtype)), n_avail)
        k = k_f.to(torch.long)

        # ---------------- eq. 14: temporal profile phi --------------------------------------------
        decay = F.softplus(self.phi_decay[task] + self.phi_user(h_b).squeeze(-1))  # (B,)
        lag = (t_last[:, None] - self.t_index).clamp_min(0.0) / cfg.period          # (B, T)
        phase = self.phi_phase[task][:, self.t_index.long() % cfg.period]           # (B, T)
        log_phi = torch.log_softmax(-decay[:, None] * lag + phase, dim=1)           # (B, T)

        # ---------------- eq. 15: spatial affinity psi with E_pos; eq. 14: mixing beta_tau --------
        keys = self.psi_key(e_pos.reshape(-1, S, cfg.poi_dim))                      # (B, S, d)
        visits = at.sum(1)                                                          # (B, S, 1)
        e_bar = (keys * visits).sum(1) / visits.sum(1).clamp_min(1.0)               # (B, d)
        query = self.psi_query(torch.cat([h_b, hu, e_bar], dim=1))                  # (B, d)
        log_psi = torch.log_softmax((keys @ query.unsqueeze(-1)).squeeze(-1) / math.sqrt(d), dim=1)  # (B, S)
        beta = torch.sigmoid(self.beta_logit)[task]                                 # (B,)
        prior = (beta[:, None, None] * log_phi[:, :, None]
                 + (1.0 - beta)[:, None, None] * log_psi[:, None, :]).reshape(-1, N)  # (B, N)
        avail_n = a.reshape(-1, N)
        on = avail_n > 0.5
        raw = torch.where(on, score + prior, torch.full_like(score, NEG))
        log_pi = torch.log_softmax(raw, dim=1)                                      # (B, N)

        # ---------------- eq. 18: cold-start uniform mixing ---------------------------------------
        eps = self.eps_task[task]                                                   # (B,) fixed
        lu = -torch.log(n_c)[:, None]                                               # log U(avail)
        l1 = torch.log1p(-eps)[:, None] + log_pi
        l2 = torch.log(eps.clamp_min(1e-30))[:, None] + lu
        m = torch.maximum(l1, l2)
        log_mix = m + torch.log(torch.exp(l1 - m) + torch.exp(l2 - m))              # logaddexp
        is_cold = (eps > 0)[:, None]
        logits = torch.where(on, torch.where(is_cold, log_mix, log_pi), torch.full_like(log_pi, NEG))
        probs = torch.exp(logits) * avail_n                                         # (B, N)

        # ---------------- eq. 16: Gumbel top-k ----------------------------------------------------
        if gumbel is None:
            if self.training or generator is not None:
                uni = torch.rand(logits.shape, generator=generator, dtype=torch.float32).to(logits)
                gumbel = -torch.log(-torch.log(uni.clamp(1e-10, 1.0 - 1e-7)))
            else:
                gumbel = torch.zeros_like(logits)
        zs = logits + gumbel                                                        # perturbed scores
        order = torch.topk(zs.detach(), N, dim=1, largest=True, sorted=True).indices  # (B, N) ONNX TopK
        pos_idx = torch.arange(N, device=zs.device).unsqueeze(0).expand_as(order)
        rank = torch.zeros_like(order).scatter(1, order, pos_idx)                   # rank of each coord
        hard_m = (rank < k[:, None]).to(x.dtype) * avail_n                          # exactly k_b ones

        # ---------------- relaxation (unnumbered, after eq. 20): soft mask, sum = kappa ----------
        if not relax:  # inference-only path (export): no relaxation, soft = hard, no gradient
            feats = self._features(h_b, F_short, F_long, F_pat, q, s_b, e_b, gamma, rho_tau, kappa,
                                   kappa * 0.0, log_phi, log_psi, beta, eps, lam, a_tau, score, n_avail)
            shape = (-1, 1, T, H, W)
            hm = hard_m.reshape(shape)
            return MaskOutput(mask=hm, hard=hm, soft=hm, k=k, ratio=ratio, logits=logits, probs=probs,
                              features=feats)
        tau = cfg.tau
        zd = zs.detach()
        hi = torch.where(on, zd, torch.full_like(zd, NEG)).amax(1) + 30.0 * tau
        lo = torch.where(on, zd, torch.full_like(zd, -NEG)).amin(1) - 30.0 * tau
        kd = kappa.detach()
        with torch.no_grad():
            for _ in range(cfg.soft_iters):                                         # fixed count
                mid = 0.5 * (lo + hi)
                tot = (torch.sigmoid((zd - mid[:, None]) / tau) * avail_n).sum(1)
                too_many = tot > kd
                lo = torch.where(too_many, mid, lo)
                hi = torch.where(too_many, hi, mid)
            theta0 = 0.5 * (lo + hi)
        sig = torch.sigmoid((zs - theta0[:, None]) / tau) * avail_n
        f_val = sig.sum(1)
        f_der = (sig * (1.0 - sig)).sum(1) / tau
        step_t = ((f_val - kappa) / f_der.clamp_min(1e-6)).clamp(-5.0 * tau, 5.0 * tau)
        theta = theta0 + step_t                                                     # implicit-gradient Newton step
        soft_m = torch.sigmoid((zs - theta[:, None]) / tau) * avail_n               # (B, N) in [0, 1]

        if not hard:
            mask = soft_m
        elif self.training:
            mask = hard_m + soft_m - soft_m.detach()                                # straight-through
        else:
            mask = hard_m

        shape = (-1, 1, T, H, W)
        feats = self._features(h_b, F_short, F_long, F_pat, q, s_b, e_b, gamma, rho_tau, kappa, theta,
                               log_phi, log_psi, beta, eps, lam, a_tau, score, n_avail)
        return MaskOutput(mask=mask.reshape(shape), hard=hard_m.reshape(shape), soft=soft_m.reshape(shape),
                          k=k, ratio=ratio, logits=logits, probs=probs, features=feats)

    def _features(self, h_b, F_short, F_long, F_pat, q, s_b, e_b, gamma, rho_tau, kappa, theta, log_phi,
                  log_psi, beta, eps, lam, a_tau, score, n_avail) -> dict[str, torch.Tensor]:
        """Intermediate quantities for analysis plots, the bank and the Fisher update."""
        return {"h_b": h_b, "F_short": F_short, "F_long": F_long, "F_pat": F_pat, "q": q, "s_b": s_b,
                "e_b": e_b, "gamma_b": gamma, "rho_tau": rho_tau, "kappa": kappa, "theta": theta,
                "phi": log_phi.exp(), "psi": log_psi.exp().reshape(-1, self.cfg.H, self.cfg.W), "beta": beta,
                "eps": eps, "lambda": lam, "a_tau": a_tau, "score": score, "n_avail": n_avail}

    # -------------------------------------------------------------------------------------------
    # Trainer-side state updates (never called inside forward)
    # -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def update_bank(self, features: dict[str, torch.Tensor]) -> None:
        """FIFO-write the detached h_b and F_pat of a batch into the reference bank (eqs. 9-11)."""
        h = features["h_b"].detach().to(self.bank_h)
        p = features["F_pat"].detach().to(self.bank_pat)
        M = self.cfg.bank_size
        n = h.shape[0]
        if n > M:  # only the most recent M fit
            h, p, n = h[-M:], p[-M:], M
        idx = (int(self.bank_ptr) + torch.arange(n, device=self.bank_h.device)) % M
        self.bank_h[idx] = h
        self.bank_pat[idx] = p
        self.bank_valid[idx] = 1.0
        self.bank_ptr.fill_((int(self.bank_ptr) + n) % M)

    @torch.no_grad()
    def reset_bank(self) -> None:
        self.bank_h.zero_()
        self.bank_pat.zero_()
        self.bank_valid.zero_()
        self.bank_ptr.zero_()

    @torch.no_grad()
    def update_fisher(self, task: torch.Tensor, grad_a: torch.Tensor, avail: Optional[torch.Tensor] = None,
                      momentum: float = 0.99) -> None:
        """eq. 7: G_tau <- m G_tau + (1 - m) mean (dL/da_tau)^2 per task present in the batch.

        ``grad_a`` (B, N, d) is the gradient of the downstream loss w.r.t. ``out.features["a_tau"]``
        (e.g. ``torch.autograd.grad(loss, out.features["a_tau"], retain_graph=True)[0]``); ``avail``
        (B, 1, T, H, W) restricts the mean to available coordinates.
        """
        g2 = grad_a.detach().to(self.fisher) ** 2                       # (B, N, d)
        if avail is not None:
            w = avail.reshape(g2.shape[0], -1, 1).to(g2)
        else:
            w = torch.ones_like(g2[..., :1])
        per = (g2 * w).sum(1) / w.sum(1).clamp_min(1.0)                 # (B, d)
        for t in torch.unique(task).tolist():
            sel = task == t
            self.fisher[t] = momentum * self.fisher[t] + (1.0 - momentum) * per[sel].mean(0)

    # -------------------------------------------------------------------------------------------
    def example_inputs(self, batch: int = 2, seed: int = 0, p_avail: float = 0.6) -> tuple[torch.Tensor, ...]:
        """Random (x, avail, h_u, task, e_pos) of the right shapes, for tests and export."""
        cfg = self.cfg
        g = torch.Generator().manual_seed(seed)
        avail = (torch.rand((batch, 1, cfg.T, cfg.H, cfg.W), generator=g) < p_avail).float()
        x = torch.rand((batch, cfg.channels, cfg.T, cfg.H, cfg.W), generator=g) * avail
        h_u = torch.randn((batch, cfg.cond_dim), generator=g)
        task = torch.randint(0, cfg.n_tasks, (batch,), generator=g)
        e_pos = torch.rand((batch, cfg.H, cfg.W, cfg.poi_dim), generator=g)
        return x, avail, h_u, task, e_pos


class MaskGenExport(nn.Module):
    """The on-device path for ONNX export: eval, bank statistics, explicit Gumbel noise input.

    Inputs: x, avail, h_u, task, e_pos, gumbel (B, N) (zeros: deterministic top-k).
    Outputs: hard (B, 1, T, H, W), probs (B, N), k (B,) int64, ratio (B,), logits (B, N).
    """

    input_names = ("x", "avail", "h_u", "task", "e_pos", "gumbel")
    output_names = ("hard", "probs", "k", "ratio", "logits")

    def __init__(self, gen: MaskGenerator) -> None:
        super().__init__()
        self.gen = gen

    def forward(self, x, avail, h_u, task, e_pos, gumbel):
        out = self.gen(x, avail, h_u, task, e_pos, use_bank=True, gumbel=gumbel, relax=False)
        return out.hard, out.probs, out.k, out.ratio, out.logits


__all__ = ["NEG", "MaskGenConfig", "MASKGEN_CONFIGS", "maskgen_config", "MaskOutput", "MaskGenerator",
           "MaskGenExport", "RefineStep"]
