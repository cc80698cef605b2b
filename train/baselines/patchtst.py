"""PatchTST forecasting baseline (Nie et al., ICLR 2023) via ``transformers.PatchTSTForPrediction``.

Interface: the common one of the learned baselines (see :mod:`umask.train.baselines.arima`):
``fit(train_z, val_z, cfg) -> PatchTSTModel`` and ``forecast_fn(model) -> ForecastFn`` with
``fn(history (n, L, N), starts (n,), horizon) -> (n, horizon, N)`` on the standardized scale.
PatchTST is forecasting-only (no ``impute_fn``).

Model (small, CPU): channel-independent PatchTST - every series (cell) is a separate univariate
sample (``num_input_channels = 1``; the N series of a window are folded into the batch), so one
network serves any number of series (25 Milan cells or a per-user tensor's coordinates). Context
288 slots (48 h), prediction 144 (24 h), patches of 16 slots with stride 8 (35 patches), d_model 64,
3 encoder layers, 4 heads, feed-forward 128, dropout 0.1, batch norm, sin-cos positional encoding,
instance scaling ``std`` (RevIN-style per-sample standardization inside the model), the paper's
flatten head (all 35 x 64 patch embeddings -> one linear layer -> 144 steps, ``pooling_type=None``);
MSE loss. About 0.42 M parameters (0.32 M of them in the head).

Training: samples are (window, series) pairs whose history *and* horizon lie inside the training
matrix (Milan: slots 0..3455, horizon starts 288..3312, 3025 x 25 = 75,625 pairs), drawn uniformly
with replacement in mini-batches (an "epoch" = ``steps_per_epoch`` batches). AdamW, constant
learning rate after a short linear warm-up, gradient clipping at 1.0. After each epoch the MSE on
the validation windows (Milan: horizon starts 3456..3744 with stride ``val_stride`` = 3, i.e. 97
windows x 25 cells; histories reach back into the training period, as PROTOCOL A1 defines windows)
is computed; the best epoch's weights are kept and training
stops after ``patience`` epochs without improvement, after ``max_epochs`` or after ``max_minutes``.
Seeds: ``torch.manual_seed(seed)`` (initialization, dropout) and ``numpy.random.default_rng(seed)``
(batches). Run with ``torch.set_num_threads(threads)`` (default 1).

Run on Milan (PROTOCOL A1)::

    python -m umask.bench.accuracy.grid_peers patchtst --out benchmarks/results/milan_patchtst.json
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from umask.runtime.core.errors import InputError
from umask.train.baselines.base import Predictor, as_windows, check_horizon, register

log = logging.getLogger(__name__)

__all__ = ["PatchTSTBaselineConfig", "PatchTSTModel", "fit", "forecast", "forecast_fn", "series_windows", "PatchTSTPredictor"]


@dataclass(frozen=True)
class PatchTSTBaselineConfig:
    """Architecture and training budget (defaults: the Milan A1 run)."""

    context_length: int = 288
    prediction_length: int = 144
    patch_length: int = 16
    patch_stride: int = 8
    d_model: int = 64
    num_layers: int = 3
    num_heads: int = 4
    ffn_dim: int = 128
    dropout: float = 0.1
    scaling: str | None = "std"
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    steps_per_epoch: int = 100
    max_epochs: int = 30
    patience: int = 4
    max_minutes: float = 5.0
    seed: int = 0
    threads: int = 1
    eval_batch: int = 1024
    val_stride: int = 3
    progress: bool = True


@dataclass
class PatchTSTModel:
    """A trained network plus its config and training log."""

    net: Any
    cfg: PatchTSTBaselineConfig
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_mse: float = math.inf
    train_seconds: float = 0.0
    n_params: int = 0


def _build(cfg: PatchTSTBaselineConfig):
    from transformers import PatchTSTConfig, PatchTSTForPrediction

    hf = PatchTSTConfig(
        num_input_channels=1,
        context_length=cfg.context_length,
        prediction_length=cfg.prediction_length,
        patch_length=cfg.patch_length,
        patch_stride=cfg.patch_stride,
        d_model=cfg.d_model,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        ffn_dim=cfg.ffn_dim,
        attention_dropout=cfg.dropout,
        ff_dropout=cfg.dropout,
        positional_dropout=cfg.dropout,
        head_dropout=cfg.dropout,
        scaling=cfg.scaling,
        loss="mse",
        do_mask_input=False,
        share_embedding=True,
        channel_attention=False,
        pooling_type=None,  # the paper's flatten head (all patch embeddings -> linear -> horizon)
    )
    return PatchTSTForPrediction(hf)


def series_windows(z: np.ndarray, context: int, horizon: int) -> np.ndarray:
    """Horizon starts (relative to ``z``) of every window with history and horizon inside ``z`` (T, N)."""
    T = z.shape[0]
    if T < context + horizon:
        return np.zeros(0, dtype=np.int64)
    return np.arange(context, T - horizon + 1, dtype=np.int64)


def _gather(z: np.ndarray, starts: np.ndarray, series: np.ndarray, context: int, horizon: int):
    """(B,) starts and series indices -> past (B, context, 1), future (B, horizon, 1) float32."""
    t_past = starts[:, None] + np.arange(-context, 0)[None, :]
    t_fut = starts[:, None] + np.arange(horizon)[None, :]
    past = z[t_past, series[:, None]]
    fut = z[t_fut, series[:, None]]
    return past[..., None].astype(np.float32), fut[..., None].astype(np.float32)


def _predict_series(net, past: np.ndarray, batch: int) -> np.ndarray:
    """past (B, context) float (NaN = missing) -> (B, prediction_length) float64."""
    import torch

    out = []
    net.eval()
    with torch.inference_mode():
        for i in range(0, past.shape[0], batch):
            p = past[i : i + batch]
            obs = np.isfinite(p)
            x = torch.from_numpy(np.where(obs, p, 0.0).astype(np.float32))[..., None]
            m = torch.from_numpy(obs.astype(np.float32))[..., None]
            pred = net(past_values=x, past_observed_mask=m).prediction_outputs
            out.append(pred[..., 0].double().numpy())
    return np.concatenate(out, axis=0) if out else np.zeros((0, net.config.prediction_length))


def _val_mse(net, z_val: np.ndarray, cfg: PatchTSTBaselineConfig) -> float:
    starts = series_windows(z_val, cfg.context_length, cfg.prediction_length)[:: cfg.val_stride]
    n, N = len(starts), z_val.shape[1]
    s = np.repeat(starts, N)
    j = np.tile(np.arange(N), n)
    past, fut = _gather(z_val, s, j, cfg.context_length, cfg.prediction_length)
    pred = _predict_series(net, past[..., 0].astype(np.float64), cfg.eval_batch)
    return float(np.mean((pred - fut[..., 0]) ** 2))


def fit(train_z: np.ndarray, val_z: np.ndarray | None, cfg: PatchTSTBaselineConfig | None = None) -> PatchTSTModel:
    """Train PatchTST on the windows of ``train_z`` (T, N) standardized (training period only).

    ``val_z``: a (T_val, N) segment whose windows are the validation windows: it should start
    ``context_length`` slots before the validation period (Milan: ``z[3456 - 288 : 3888]``) so that
    its windows are exactly PROTOCOL A1's validation windows. ``None``: no early stopping (the last
    epoch is kept).
    """
    import torch
    from tqdm.auto import tqdm

    cfg = cfg or PatchTSTBaselineConfig()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train_z = np.asarray(train_z, dtype=np.float64)
    if not np.all(np.isfinite(train_z)):
        raise ValueError("train_z must be finite")
    starts = series_windows(train_z, cfg.context_length, cfg.prediction_length)
    if len(starts) == 0:
        raise ValueError(f"train_z has {train_z.shape[0]} slots; need >= context + prediction")
    N = train_z.shape[1]
    net = _build(cfg)
    n_params = sum(p.numel() for p in net.parameters())
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / max(1, cfg.warmup_steps)))
    model = PatchTSTModel(net=net, cfg=cfg, n_params=n_params)
    best_state = copy.deepcopy(net.state_dict())
    bad = 0
    t0 = time.perf_counter()
    log.info("PatchTST: %d params, %d training windows x %d series", n_params, len(starts), N)
    for epoch in range(cfg.max_epochs):
        net.train()
        losses = []
        bar = tqdm(range(cfg.steps_per_epoch), desc=f"patchtst epoch {epoch}", disable=not cfg.progress,
                   mininterval=5.0, leave=False)
        for _ in bar:
            s = rng.choice(starts, size=cfg.batch_size)
            j = rng.integers(0, N, size=cfg.batch_size)
            past, fut = _gather(train_z, s, j, cfg.context_length, cfg.prediction_length)
            out = net(past_values=torch.from_numpy(past), future_values=torch.from_numpy(fut))
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(out.loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        rec = {"epoch": epoch, "train_mse": float(np.mean(losses)), "seconds": time.perf_counter() - t0}
        if val_z is not None:
            rec["val_mse"] = _val_mse(net, np.asarray(val_z, dtype=np.float64), cfg)
            if rec["val_mse"] < model.best_val_mse:
                model.best_val_mse, model.best_epoch, bad = rec["val_mse"], epoch, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                bad += 1
        else:
            model.best_epoch = epoch
            best_state = copy.deepcopy(net.state_dict())
        model.history.append(rec)
        log.info("epoch %d: train mse %.4f val mse %s (%.0f s)", epoch, rec["train_mse"],
                 f"{rec['val_mse']:.4f}" if "val_mse" in rec else "n/a", rec["seconds"])
        if val_z is not None and bad >= cfg.patience:
            log.info("early stop: no val improvement for %d epochs", bad)
            break
        if time.perf_counter() - t0 > 60.0 * cfg.max_minutes:
            log.info("time budget of %.1f min reached", cfg.max_minutes)
            break
    net.load_state_dict(best_state)
    net.eval()
    model.train_seconds = time.perf_counter() - t0
    return model


def forecast(model: PatchTSTModel, history: np.ndarray, starts: np.ndarray | None, horizon: int) -> np.ndarray:
    """Forecast (n, horizon, N) from ``history`` (n, L, N), L >= context_length (the last
    context_length slots are used; NaN = missing, passed as ``past_observed_mask``).
    ``starts`` is unused (PatchTST sees no calendar) but kept for the ForecastFn signature."""
    import torch

    torch.set_num_threads(model.cfg.threads)
    history = np.asarray(history, dtype=np.float64)
    if history.ndim != 3:
        raise ValueError(f"history must be (n, L, N), got {history.shape}")
    n, L, N = history.shape
    ctx, pl = model.cfg.context_length, model.cfg.prediction_length
    if L < ctx:
        raise ValueError(f"history has {L} slots, PatchTST needs context_length = {ctx}")
    if horizon > pl:
        raise ValueError(f"horizon {horizon} > trained prediction_length {pl}")
    past = history[:, L - ctx :, :].transpose(0, 2, 1).reshape(n * N, ctx)
    pred = _predict_series(model.net, past, model.cfg.eval_batch)[:, :horizon]
    return pred.reshape(n, N, horizon).transpose(0, 2, 1)


def forecast_fn(model: PatchTSTModel):
    """A :data:`umask.bench.accuracy.grid.ForecastFn` for ``model``."""
    return lambda history, starts, horizon: forecast(model, history, starts, horizon)


@register
class PatchTSTPredictor(Predictor):
    """``patchtst``: the channel-independent PatchTST as a Predictor (forecasting only; no calendar)."""

    name = "patchtst"

    def __init__(self, *, period: int = 144, cfg: PatchTSTBaselineConfig | None = None) -> None:
        super().__init__(period=period)
        self.cfg = cfg or PatchTSTBaselineConfig()
        self.model: PatchTSTModel | None = None

    def fit(self, train: np.ndarray, *, first_slot: int = 0, val: np.ndarray | None = None) -> PatchTSTPredictor:
        super().fit(train)
        self.model = fit(np.asarray(train, np.float64), None if val is None else np.asarray(val, np.float64), self.cfg)
        return self

    def forecast(self, history: np.ndarray, horizon: int, *, starts: np.ndarray | None = None) -> np.ndarray:
        if self.model is None:
            raise InputError("patchtst: call fit(train) first")
        return forecast(self.model, as_windows(history, "history"), starts, check_horizon(horizon))

    def info(self) -> dict[str, object]:
        m = self.model
        return {**super().info(), "seed": self.cfg.seed,
                **({} if m is None else {"n_params": m.n_params, "best_epoch": m.best_epoch})}
