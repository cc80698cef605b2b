"""CSDI (Tashiro et al., NeurIPS 2021): conditional score-based diffusion for imputation, compact.

Interface: the common one of the learned baselines (see :mod:`umask.train.baselines.arima`):
``fit(train_z, val_z, cfg) -> CSDIModel``, ``impute_fn(model) -> ImputeFn`` (A2) and
``forecast_fn(model) -> ForecastFn`` (A1, the horizon treated as missing), on stacks of standardized
windows ``(n, L, N)``; internally a window is the paper's ``K x L`` array (K = N features = cells).

Faithful to the paper and the authors' code (github.com/ermongroup/CSDI, ``diff_models.py`` /
``main_model.py``):

- denoiser ``eps_theta`` (the official 1x1 convolutions are written as ``nn.Linear`` over a
  channels-last layout: the same maps and initialization, fewer transposes): input projection (1x1 conv of the 2 channels [conditional observations,
  noisy targets]) -> ``layers`` residual blocks -> skip sum / sqrt(layers) -> 1x1 conv, ReLU, 1x1
  conv (zero-initialized) -> predicted noise (K x L);
- residual block: x + diffusion-step projection -> *temporal* transformer layer (attention over L,
  per feature) -> *feature* transformer layer (attention over K, per time step) -> 1x1 conv to 2C
  + 1x1 conv of the side information -> gated activation sigmoid * tanh -> 1x1 conv to 2C ->
  (x + residual) / sqrt(2) and a skip output; PyTorch ``TransformerEncoderLayer`` (post-norm, GELU,
  feed-forward 64, dropout 0.1) as in the official code;
- side information: sinusoidal time embedding (128) of each column's timestamp + learned feature
  embedding (16) of each row + the conditional mask (1 channel) = 145 channels; here the timestamp
  is the *slot of day* (absolute slot mod ``period``), so the side information carries the time of
  day; the temporal transformer has no positional encoding of its own (as in the paper);
- diffusion-step embedding: sinusoidal table (128) -> Linear -> SiLU -> Linear -> SiLU;
- 50 diffusion steps, quadratic schedule beta_t = (linspace(sqrt(1e-4), sqrt(0.5), 50))^2;
- training (self-supervised): only the observed entries are used; the paper's *random* strategy
  draws a ratio r ~ U(0, 1) per sample and moves round(r x #observed) random observed entries from
  the conditional set to the imputation targets; loss = MSE between the true and predicted noise
  over the targets; Adam (lr 1e-3, weight decay 1e-6) with the official step decay (x0.1 at 75 %
  and 90 % of the steps);
- inference: DDPM ancestral sampling (the paper's Algorithm 2) from N(0, I) over the targets with
  the conditional observations fixed; point estimate = the **mean** of ``nsample`` samples
  (PROTOCOL: stochastic models report the sample mean; the official repo reports the median).

Deviations for a 1-core CPU budget (documented in every result row):

- small network: ``channels`` 32, ``layers`` 2, 1 attention head (official: 64, 4, 8), ~0.1 M
  parameters;
- windows: the model is trained on random ``window`` = 72-slot (12 h) sub-windows of the training
  period (the paper used L = 36..48); A2's 288-slot windows are imputed as 4 independent
  non-overlapping 72-slot chunks;
- forecasting (A1): CSDI is an imputation model; the forecast treats the horizon as missing. With a
  72-slot model the 144-slot horizon is generated autoregressively in 3 chunks: each chunk = the
  last ``window - forecast_len`` = 24 known slots (history, or this sample's own previous chunk) +
  ``forecast_len`` = 48 hidden slots. So that the network has seen this pattern, a fraction
  ``forecast_prob`` = 0.5 of the training masks are the forecasting pattern (the last 48 slots of the
  window are the targets; a deviation from the paper's pure random strategy), the rest the paper's
  random strategy;
- a fixed number of optimizer steps (Milan: 700 batches of 16, about 7 minutes on one shared core,
  with a wall-clock cap of 8 minutes) instead of 200 epochs, so the network is far less trained than in the paper; the
  weights with the lowest loss on a fixed set of 64 validation windows (fixed masks, diffusion steps
  and noise; evaluated every 50 steps) are kept;
- sampling cost (50 steps x ``nsample`` x chunks) is the bottleneck on a CPU, so the Milan run can
  evaluate every ``stride``-th protocol window (same windows and masks as the protocol; defaults:
  every 8th A2 window = 19 of 145, every 36th A1 window = 9 of 289); the rows then state
  ``n_windows`` and the stride, and the baselines are re-scored on the same subset (``name@subset``).
  Milan run: about 7 min training + 3 min A2 + 1.2 min A1 sampling on one contended core.

Run on Milan (PROTOCOL A)::

    python -m umask.bench.accuracy.grid_peers csdi --out benchmarks/results/milan_csdi.json
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from umask.runtime.core.errors import InputError
from umask.train.baselines.base import Predictor, as_starts, as_windows, check_horizon, register

log = logging.getLogger(__name__)

__all__ = [
    "CSDIConfig", "CSDIModel", "CSDINet", "fit", "impute", "forecast", "impute_fn", "forecast_fn",
    "random_cond_mask", "save", "load", "CSDIPredictor",
]


@dataclass(frozen=True)
class CSDIConfig:
    """Architecture, diffusion, training and sampling settings (defaults: the Milan run)."""

    n_features: int = 25
    window: int = 72
    period: int = 144
    channels: int = 32
    layers: int = 2
    nheads: int = 1
    ff_dim: int = 64
    diffusion_embedding_dim: int = 128
    timeemb: int = 128
    featureemb: int = 16
    num_steps: int = 50
    beta_start: float = 1e-4
    beta_end: float = 0.5
    forecast_prob: float = 0.5
    forecast_len: int = 48
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-6
    max_steps: int = 700
    max_minutes: float = 8.0
    val_every: int = 50
    n_val: int = 64
    nsample: int = 5
    sample_batch: int = 64
    seed: int = 0
    threads: int = 1
    progress: bool = True


# ------------------------------------------------------------------------------------------------
# Network (diff_models.py of the official code)
# ------------------------------------------------------------------------------------------------
def _proj(cin: int, cout: int) -> nn.Linear:
    """A 1x1 convolution of the official code, written as a Linear over a channels-last layout
    (same map and the same Kaiming-normal weight initialization)."""
    layer = nn.Linear(cin, cout)
    nn.init.kaiming_normal_(layer.weight)
    return layer


def _transformer(channels: int, heads: int, ff: int) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(d_model=channels, nhead=heads, dim_feedforward=ff, activation="gelu",
                                      batch_first=True)


class DiffusionEmbedding(nn.Module):
    def __init__(self, num_steps: int, dim: int = 128) -> None:
        super().__init__()
        steps = torch.arange(num_steps).unsqueeze(1).float()
        half = dim // 2
        freqs = 10.0 ** (torch.arange(half).float() / (half - 1) * 4.0).unsqueeze(0)
        table = steps * freqs
        self.register_buffer("embedding", torch.cat([torch.sin(table), torch.cos(table)], dim=1), persistent=False)
        self.projection1 = nn.Linear(dim, dim)
        self.projection2 = nn.Linear(dim, dim)

    def forward(self, step: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.projection1(self.embedding[step]))
        return F.silu(self.projection2(x))


class ResidualBlock(nn.Module):
    def __init__(self, side_dim: int, channels: int, demb: int, nheads: int, ff: int) -> None:
        super().__init__()
        self.diffusion_projection = nn.Linear(demb, channels)
        self.cond_projection = _proj(side_dim, 2 * channels)
        self.mid_projection = _proj(channels, 2 * channels)
        self.output_projection = _proj(channels, 2 * channels)
        self.time_layer = _transformer(channels, nheads, ff)
        self.feature_layer = _transformer(channels, nheads, ff)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, demb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, K, L, C) channels-last; cond = cond_projection(side info) (B, K, L, 2C);
        demb (B or 1, demb)."""
        B, K, L, C = x.shape
        y = x + self.diffusion_projection(demb)[:, None, None, :]
        if L > 1:  # temporal attention: sequences over L, one per (sample, feature)
            y = self.time_layer(y.reshape(B * K, L, C)).reshape(B, K, L, C)
        if K > 1:  # feature attention: sequences over K, one per (sample, time)
            y = self.feature_layer(y.transpose(1, 2).reshape(B * L, K, C)).reshape(B, L, K, C).transpose(1, 2)
        y = self.mid_projection(y) + cond
        gate, filt = torch.chunk(y, 2, dim=-1)
        y = self.output_projection(torch.sigmoid(gate) * torch.tanh(filt))
        residual, skip = torch.chunk(y, 2, dim=-1)
        return (x + residual) / math.sqrt(2.0), skip


class CSDINet(nn.Module):
    """eps_theta plus side-information embeddings (CSDI_base of the official code)."""

    def __init__(self, cfg: CSDIConfig) -> None:
        super().__init__()
        self.cfg = cfg
        side_dim = cfg.timeemb + cfg.featureemb + 1
        self.embed_layer = nn.Embedding(cfg.n_features, cfg.featureemb)
        self.diffusion_embedding = DiffusionEmbedding(cfg.num_steps, cfg.diffusion_embedding_dim)
        self.input_projection = _proj(2, cfg.channels)
        self.output_projection1 = _proj(cfg.channels, cfg.channels)
        self.output_projection2 = _proj(cfg.channels, 1)
        nn.init.zeros_(self.output_projection2.weight)
        self.residual_layers = nn.ModuleList(
            ResidualBlock(side_dim, cfg.channels, cfg.diffusion_embedding_dim, cfg.nheads, cfg.ff_dim)
            for _ in range(cfg.layers)
        )
        beta = np.linspace(cfg.beta_start**0.5, cfg.beta_end**0.5, cfg.num_steps) ** 2  # "quad" schedule
        self.beta = beta
        self.alpha_hat = 1.0 - beta
        self.alpha = np.cumprod(self.alpha_hat)
        self.register_buffer("alpha_torch", torch.tensor(self.alpha, dtype=torch.float32), persistent=False)

    # side information ---------------------------------------------------------------------------
    def time_embedding(self, pos: torch.Tensor) -> torch.Tensor:
        """pos (B, L) float -> (B, L, timeemb), the transformer sinusoid."""
        d = self.cfg.timeemb
        div = 1.0 / torch.pow(10000.0, torch.arange(0, d, 2, dtype=torch.float32) / d)
        ang = pos[..., None] * div
        pe = torch.zeros(*pos.shape, d)
        pe[..., 0::2] = torch.sin(ang)
        pe[..., 1::2] = torch.cos(ang)
        return pe

    def side_info(self, tod: torch.Tensor, cond_mask: torch.Tensor) -> torch.Tensor:
        """tod (B, L) slot of day, cond_mask (B, K, L) -> side info (B, K, L, timeemb+featureemb+1),
        channels-last."""
        B, K, L = cond_mask.shape
        te = self.time_embedding(tod.float())[:, None, :, :].expand(B, K, L, -1)
        fe = self.embed_layer(torch.arange(K))[None, :, None, :].expand(B, K, L, -1)
        return torch.cat([te, fe, cond_mask[..., None]], dim=-1)

    def cond_cache(self, side: torch.Tensor) -> list[torch.Tensor]:
        """The side-information projections of every residual block (constant over the diffusion
        steps, so sampling computes them once)."""
        return [layer.cond_projection(side) for layer in self.residual_layers]

    # denoiser -------------------------------------------------------------------------------------
    def eps(self, x: torch.Tensor, cond: list[torch.Tensor], step: torch.Tensor) -> torch.Tensor:
        """x (B, 2, K, L) -> predicted noise (B, K, L); ``cond`` from :meth:`cond_cache`."""
        h = F.relu(self.input_projection(x.permute(0, 2, 3, 1)))  # (B, K, L, C)
        demb = self.diffusion_embedding(step)
        skips = []
        for layer, c in zip(self.residual_layers, cond):
            h, s = layer(h, c, demb)
            skips.append(s)
        h = torch.stack(skips).sum(0) / math.sqrt(len(self.residual_layers))
        h = F.relu(self.output_projection1(h))
        return self.output_projection2(h)[..., 0]

    def loss(self, x: torch.Tensor, obs_mask: torch.Tensor, cond_mask: torch.Tensor, tod: torch.Tensor,
             t: torch.Tensor | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Denoising loss over the targets (observed, not conditional). x, masks (B, K, L)."""
        B = x.shape[0]
        if t is None:
            t = torch.randint(0, self.cfg.num_steps, (B,))
        if noise is None:
            noise = torch.randn_like(x)
        a = self.alpha_torch[t][:, None, None]
        noisy = a.sqrt() * x + (1.0 - a).sqrt() * noise
        inp = torch.stack([cond_mask * x, (1.0 - cond_mask) * noisy], dim=1)
        pred = self.eps(inp, self.cond_cache(self.side_info(tod, cond_mask)), t)
        target = obs_mask - cond_mask
        n = target.sum()
        return (((noise - pred) * target) ** 2).sum() / torch.clamp(n, min=1.0)

    @torch.no_grad()
    def sample(self, x: torch.Tensor, cond_mask: torch.Tensor, tod: torch.Tensor,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """One DDPM sample per batch element; conditional entries returned as given. (B, K, L)."""
        cond = self.cond_cache(self.side_info(tod, cond_mask))
        cur = torch.randn(x.shape, generator=generator)
        cobs = cond_mask * x
        for t in range(self.cfg.num_steps - 1, -1, -1):
            inp = torch.stack([cobs, (1.0 - cond_mask) * cur], dim=1)
            pred = self.eps(inp, cond, torch.tensor([t]))
            c1 = 1.0 / self.alpha_hat[t] ** 0.5
            c2 = (1.0 - self.alpha_hat[t]) / (1.0 - self.alpha[t]) ** 0.5
            cur = c1 * (cur - c2 * pred)
            if t > 0:
                sigma = ((1.0 - self.alpha[t - 1]) / (1.0 - self.alpha[t]) * self.beta[t]) ** 0.5
                cur = cur + sigma * torch.randn(cur.shape, generator=generator)
        return cond_mask * x + (1.0 - cond_mask) * cur


# ------------------------------------------------------------------------------------------------
# Masks
# ------------------------------------------------------------------------------------------------
def random_cond_mask(obs_mask: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The paper's random strategy: per sample r ~ U(0,1); round(r * #observed) observed entries
    become targets, the rest of the observed entries stay conditional. (B, K, L) float."""
    B = obs_mask.shape[0]
    flat = obs_mask.reshape(B, -1)
    scores = torch.from_numpy(rng.random(flat.shape).astype(np.float32)) * flat
    cond = flat.clone()
    for i in range(B):
        n_obs = int(flat[i].sum().item())
        n_tgt = int(round(n_obs * rng.random()))
        if n_tgt > 0:
            cond[i, scores[i].topk(n_tgt).indices] = 0.0
    return cond.reshape(obs_mask.shape)


def _forecast_cond_mask(obs_mask: torch.Tensor, hidden: int) -> torch.Tensor:
    cond = obs_mask.clone()
    cond[..., -hidden:] = 0.0
    return cond


def _training_masks(obs: torch.Tensor, cfg: CSDIConfig, rng: np.random.Generator) -> torch.Tensor:
    cond = random_cond_mask(obs, rng)
    fc = torch.from_numpy(rng.random(obs.shape[0]) < cfg.forecast_prob)
    if bool(fc.any()):
        cond[fc] = _forecast_cond_mask(obs[fc], cfg.forecast_len)
    return cond


# ------------------------------------------------------------------------------------------------
# Model container, training
# ------------------------------------------------------------------------------------------------
@dataclass
class CSDIModel:
    net: CSDINet
    cfg: CSDIConfig
    history: list[dict[str, float]] = field(default_factory=list)
    best_step: int = -1
    best_val: float = math.inf
    train_seconds: float = 0.0
    steps_run: int = 0
    n_params: int = 0


def _cut(z: np.ndarray, starts: np.ndarray, length: int, seqs: np.ndarray | None = None) -> np.ndarray:
    """(T, K) matrix, (B,) starts -> (B, K, length); or (S, T, K) stack with (B,) sequence indices."""
    idx = starts[:, None] + np.arange(length)[None, :]
    cut = z[idx] if seqs is None else z[seqs[:, None], idx]
    return np.ascontiguousarray(cut.transpose(0, 2, 1))


def _tod(first_slots: np.ndarray, length: int, period: int) -> torch.Tensor:
    return torch.from_numpy(((first_slots[:, None] + np.arange(length)[None, :]) % period).astype(np.float32))


def _batch(z: np.ndarray, starts: np.ndarray, first_slot: int, cfg: CSDIConfig, seqs: np.ndarray | None = None):
    x = _cut(z, starts, cfg.window, seqs)
    obs = np.isfinite(x)
    xt = torch.from_numpy(np.where(obs, x, 0.0).astype(np.float32))
    return xt, torch.from_numpy(obs.astype(np.float32)), _tod(first_slot + starts, cfg.window, cfg.period)


def fit(train_z: np.ndarray, val_z: np.ndarray | None = None, cfg: CSDIConfig | None = None, *,
        train_first_slot: int = 0, val_first_slot: int | None = None) -> CSDIModel:
    """Train CSDI on random ``cfg.window``-slot sub-windows of ``train_z`` (T, K) standardized
    (NaN = missing, never a target). ``val_z``: (T_val, K) validation segment for model selection
    (fixed windows, masks, diffusion steps and noise); ``*_first_slot``: absolute slot of row 0
    (for the time-of-day side information; Milan: 0 and 3456).

    ``train_z`` / ``val_z`` may also be stacks (S, T, K) of S independent sequences on the same
    time axis (e.g. the cells of many users, benchmarks/user_peers.py): a sub-window is then a
    uniformly drawn (sequence, start) pair. The (T, K) path draws exactly the same random numbers
    as before (the Milan results are unchanged)."""
    cfg = cfg or CSDIConfig()
    from tqdm.auto import tqdm

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train_z = np.asarray(train_z, dtype=np.float64)
    if train_z.ndim not in (2, 3) or train_z.shape[-1] != cfg.n_features:
        raise ValueError(f"train_z must be (T, {cfg.n_features}) or (S, T, {cfg.n_features}), got {train_z.shape}")
    n_seq = train_z.shape[0] if train_z.ndim == 3 else 0     # 0: one (T, K) matrix
    n_starts = train_z.shape[-2] - cfg.window + 1
    if n_starts < 1:
        raise ValueError(f"train_z has {train_z.shape[0]} slots < window {cfg.window}")
    net = CSDINet(cfg)
    model = CSDIModel(net=net, cfg=cfg, n_params=sum(p.numel() for p in net.parameters()))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    val = None
    if val_z is not None:
        val_z = np.asarray(val_z, dtype=np.float64)
        if val_z.ndim != train_z.ndim:
            raise ValueError(f"val_z must have the layout of train_z, got {val_z.shape} and {train_z.shape}")
        vfs = train_first_slot + train_z.shape[-2] if val_first_slot is None else val_first_slot
        vrng = np.random.default_rng(cfg.seed + 10_000)
        vs = np.sort(vrng.integers(0, val_z.shape[-2] - cfg.window + 1, size=cfg.n_val))
        vq = vrng.integers(0, val_z.shape[0], size=cfg.n_val) if n_seq else None
        vx, vobs, vtod = _batch(val_z, vs, vfs, cfg, vq)
        vcond = _training_masks(vobs, cfg, vrng)
        vt = torch.from_numpy(vrng.integers(0, cfg.num_steps, size=cfg.n_val))
        vnoise = torch.from_numpy(vrng.standard_normal(vx.shape).astype(np.float32))
        val = (vx, vobs, vcond, vtod, vt, vnoise)

    def val_loss() -> float:
        net.eval()
        with torch.no_grad():
            out = float(net.loss(val[0], val[1], val[2], val[3], val[4], val[5]))
        net.train()
        return out

    best_state = copy.deepcopy(net.state_dict())
    t0 = time.perf_counter()
    losses: list[float] = []
    net.train()
    bar = tqdm(range(cfg.max_steps), desc="csdi train", disable=not cfg.progress, mininterval=10.0)
    step = 0
    for step in bar:
        # official step decay (x0.1 at 75 % and 90 % of training), progress = the larger of the step
        # and wall-clock fractions so that a time cap still decays the learning rate
        progress = max(step / cfg.max_steps, (time.perf_counter() - t0) / (60.0 * cfg.max_minutes))
        for grp in opt.param_groups:
            grp["lr"] = cfg.lr * (1.0 if progress < 0.75 else 0.1 if progress < 0.9 else 0.01)
        starts = rng.integers(0, n_starts, size=cfg.batch_size)
        seqs = rng.integers(0, n_seq, size=cfg.batch_size) if n_seq else None
        x, obs, tod = _batch(train_z, starts, train_first_slot, cfg, seqs)
        cond = _training_masks(obs, cfg, rng)
        loss = net.loss(x, obs, cond, tod)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        done = step + 1 == cfg.max_steps or time.perf_counter() - t0 > 60.0 * cfg.max_minutes
        if (step + 1) % cfg.val_every == 0 or done:
            rec = {"step": step + 1, "train_loss": float(np.mean(losses[-cfg.val_every:])),
                   "seconds": time.perf_counter() - t0}
            if val is not None:
                rec["val_loss"] = val_loss()
                if rec["val_loss"] < model.best_val:
                    model.best_val, model.best_step = rec["val_loss"], step + 1
                    best_state = copy.deepcopy(net.state_dict())
            else:
                model.best_step = step + 1
                best_state = copy.deepcopy(net.state_dict())
            model.history.append(rec)
            bar.set_postfix(loss=f"{rec['train_loss']:.4f}", val=f"{rec.get('val_loss', float('nan')):.4f}")
            log.info("step %d: train loss %.4f val loss %s (%.0f s)", step + 1, rec["train_loss"],
                     f"{rec['val_loss']:.4f}" if "val_loss" in rec else "n/a", rec["seconds"])
        if done:
            break
    model.steps_run = step + 1
    net.load_state_dict(best_state)
    net.eval()
    model.train_seconds = time.perf_counter() - t0
    return model


# ------------------------------------------------------------------------------------------------
# Inference
# ------------------------------------------------------------------------------------------------
def _sample_mean(model: CSDIModel, x: np.ndarray, cond: np.ndarray, first_slots: np.ndarray,
                 generator: torch.Generator, desc: str) -> np.ndarray:
    """Mean of nsample DDPM samples of chunks x, cond (B, K, W) -> (B, K, W) float64."""
    from tqdm.auto import tqdm

    cfg = model.cfg
    B, K, W = x.shape
    S = cfg.nsample
    rep = lambda a: np.repeat(a, S, axis=0)  # noqa: E731
    xs, cs, fs = rep(x), rep(cond), rep(first_slots)
    out = np.zeros((B * S, K, W))
    with torch.inference_mode():
        for i in tqdm(range(0, B * S, cfg.sample_batch), desc=desc, disable=not cfg.progress, mininterval=10.0):
            sl = slice(i, i + cfg.sample_batch)
            smp = model.net.sample(torch.from_numpy(xs[sl].astype(np.float32)),
                                   torch.from_numpy(cs[sl].astype(np.float32)),
                                   _tod(fs[sl], W, cfg.period), generator)
            out[sl] = smp.double().numpy()
    return out.reshape(B, S, K, W).mean(axis=1)


def _chunk_starts(T: int, W: int) -> list[int]:
    if T < W:
        raise ValueError(f"window of {T} slots is shorter than the model window {W}")
    starts = list(range(0, T - W + 1, W))
    if starts[-1] + W < T:
        starts.append(T - W)
    return starts


def impute(model: CSDIModel, observed: np.ndarray, mask: np.ndarray, starts: np.ndarray, *,
           seed: int | None = None) -> np.ndarray:
    """Impute (n, T, K) windows: hidden entries (mask True, or NaN) get the mean of ``nsample``
    samples; observed entries are returned unchanged. Windows are cut into ``window``-slot chunks
    (non-overlapping; a last partial chunk is aligned to the end). ``starts``: (n,) absolute slot of
    each window's first row (time of day). ``seed``: sampler seed (default cfg.seed)."""
    cfg = model.cfg
    torch.set_num_threads(cfg.threads)
    observed = np.asarray(observed, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if observed.ndim != 3 or observed.shape[2] != cfg.n_features or mask.shape != observed.shape:
        raise ValueError(f"observed / mask must be (n, T, {cfg.n_features}); got {observed.shape}, {mask.shape}")
    n, T, K = observed.shape
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    known = ~mask & np.isfinite(observed)
    vals = np.where(known, observed, 0.0)
    cs = _chunk_starts(T, cfg.window)
    xs = np.concatenate([vals[:, c : c + cfg.window].transpose(0, 2, 1) for c in cs])
    ms = np.concatenate([known[:, c : c + cfg.window].transpose(0, 2, 1) for c in cs]).astype(np.float64)
    fs = np.concatenate([starts + c for c in cs])
    g = torch.Generator().manual_seed(cfg.seed if seed is None else seed)
    mean = _sample_mean(model, xs, ms, fs, g, "csdi impute").reshape(len(cs), n, K, cfg.window)
    full = np.zeros((n, T, K))
    for k, c in enumerate(cs):  # later chunks overwrite the overlap of an end-aligned last chunk
        full[:, c : c + cfg.window] = mean[k].transpose(0, 2, 1)
    return np.where(known, observed, full)


def forecast(model: CSDIModel, history: np.ndarray, starts: np.ndarray, horizon: int, *,
             seed: int | None = None) -> np.ndarray:
    """Forecast (n, horizon, K): the horizon is treated as missing and generated autoregressively in
    chunks of ``forecast_len`` slots, each conditioned on the ``window - forecast_len`` slots before
    it (history, or the same sample's previous chunk). Mean of ``nsample`` sample paths.
    ``starts``: (n,) absolute slot of the first horizon slot."""
    from tqdm.auto import tqdm

    cfg = model.cfg
    torch.set_num_threads(cfg.threads)
    history = np.asarray(history, dtype=np.float64)
    if history.ndim != 3 or history.shape[2] != cfg.n_features:
        raise ValueError(f"history must be (n, L, {cfg.n_features}), got {history.shape}")
    n, L, K = history.shape
    ctx, F_ = cfg.window - cfg.forecast_len, cfg.forecast_len
    if L < ctx:
        raise ValueError(f"history has {L} slots, need >= {ctx}")
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    S = cfg.nsample
    out_h, horizon = horizon, max(horizon, F_)  # generate at least one full chunk, trim at the end
    g = torch.Generator().manual_seed(cfg.seed if seed is None else seed)
    # sample paths: (n * S, ctx + horizon, K), the context part known
    paths = np.repeat(history[:, L - ctx :], S, axis=0)
    known_ctx = np.isfinite(paths)
    paths = np.concatenate([np.where(known_ctx, paths, 0.0), np.zeros((n * S, horizon, K))], axis=1)
    known = np.concatenate([known_ctx, np.zeros((n * S, horizon, K), dtype=bool)], axis=1)
    s_rep = np.repeat(starts, S)
    n_chunks = math.ceil(horizon / F_)
    with torch.inference_mode():
        for k in range(n_chunks):
            lo = min(k * F_, horizon - F_)  # chunk hides paths[ctx+lo : ctx+lo+F_]
            a = lo  # window = paths[a : a + window]
            x = paths[:, a : a + cfg.window].transpose(0, 2, 1)
            m = known[:, a : a + cfg.window].transpose(0, 2, 1).astype(np.float32)
            first = s_rep - ctx + a
            out = np.empty_like(x)
            for i in tqdm(range(0, n * S, cfg.sample_batch), desc=f"csdi forecast {k + 1}/{n_chunks}",
                          disable=not cfg.progress, mininterval=10.0):
                sl = slice(i, i + cfg.sample_batch)
                out[sl] = model.net.sample(torch.from_numpy(x[sl].astype(np.float32)), torch.from_numpy(m[sl]),
                                           _tod(first[sl], cfg.window, cfg.period), g).double().numpy()
            seg = out.transpose(0, 2, 1)  # (n*S, window, K)
            new = ~known[:, a : a + cfg.window]
            paths[:, a : a + cfg.window] = np.where(new, seg, paths[:, a : a + cfg.window])
            known[:, a : a + cfg.window] = True
    return paths[:, ctx:].reshape(n, S, horizon, K).mean(axis=1)[:, :out_h]


def save(model: CSDIModel, path: str | Path) -> None:
    """Save the weights, config and training log (``torch.save``); reload with :func:`load`."""
    torch.save({"state_dict": model.net.state_dict(), "cfg": asdict(model.cfg), "history": model.history,
                "best_step": model.best_step, "best_val": model.best_val, "steps_run": model.steps_run,
                "train_seconds": model.train_seconds}, Path(path))


def load(path: str | Path) -> CSDIModel:
    blob = torch.load(Path(path), weights_only=True)
    cfg = CSDIConfig(**blob["cfg"])
    net = CSDINet(cfg)
    net.load_state_dict(blob["state_dict"])
    net.eval()
    return CSDIModel(net=net, cfg=cfg, history=blob["history"], best_step=blob["best_step"],
                     best_val=blob["best_val"], train_seconds=blob["train_seconds"], steps_run=blob["steps_run"],
                     n_params=sum(p.numel() for p in net.parameters()))


def forecast_fn(model: CSDIModel, *, seed: int | None = None):
    """A :data:`umask.bench.accuracy.grid.ForecastFn` for ``model``."""
    return lambda history, starts, horizon: forecast(model, history, starts, horizon, seed=seed)


def impute_fn(model: CSDIModel, *, seed: int | None = None):
    """A :data:`umask.bench.accuracy.grid.ImputeFn` for ``model``."""
    return lambda observed, mask, starts: impute(model, observed, mask, starts, seed=seed)


@register
class CSDIPredictor(Predictor):
    """``csdi``: the compact CSDI as a Predictor (stochastic: mean of ``nsample`` samples, seeded)."""

    name = "csdi"
    stochastic = True
    imputes = True

    def __init__(self, *, period: int = 144, cfg: CSDIConfig | None = None, seed: int | None = None) -> None:
        super().__init__(period=period)
        from dataclasses import replace

        self.cfg = replace(cfg or CSDIConfig(), period=self.period)
        self.seed = seed
        self.model: CSDIModel | None = None

    def fit(self, train: np.ndarray, *, first_slot: int = 0, val: np.ndarray | None = None) -> CSDIPredictor:
        super().fit(train)
        from dataclasses import replace

        train = np.asarray(train, np.float64)
        cfg = replace(self.cfg, n_features=train.shape[1])
        self.model = fit(train, None if val is None else np.asarray(val, np.float64), cfg,
                         train_first_slot=first_slot, val_first_slot=first_slot + train.shape[0])
        return self

    def _m(self) -> CSDIModel:
        if self.model is None:
            raise InputError("csdi: call fit(train) first")
        return self.model

    def forecast(self, history: np.ndarray, horizon: int, *, starts: np.ndarray | None = None) -> np.ndarray:
        history = as_windows(history, "history", self.n_series)
        return forecast(self._m(), history, as_starts(starts, history.shape[0]), check_horizon(horizon), seed=self.seed)

    def impute(self, values: np.ndarray, mask: np.ndarray, *, starts: np.ndarray | None = None) -> np.ndarray:
        values = as_windows(values, "values", self.n_series)
        return impute(self._m(), values, mask, as_starts(starts, values.shape[0]), seed=self.seed)

    def info(self) -> dict[str, object]:
        return {**super().info(), "seed": self.cfg.seed if self.seed is None else self.seed,
                "samples": self.cfg.nsample, "steps": self.cfg.num_steps}
