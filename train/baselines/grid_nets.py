"""Compact learned grid baselines of the U-STS-LLM paper's tables: DLinear, LSTM, a GPT4TS-style frozen LLM.

Own small implementations (no extra library), channel independent (each cell is one univariate
series, weights shared by all cells), trained on windows of the training period only, on the
harness's standardized scale, with a fixed step budget sized for one CPU thread:

* ``dlinear`` (A1): moving-average (25 slots) trend / remainder decomposition, one linear map
  history -> horizon per component (Zeng et al., 2023).
* ``lstm`` (A1 and A2): A1 a one-layer LSTM over the history (downsampled to 30-minute means) whose
  last state is mapped to the horizon; A2 a bidirectional LSTM over (value, hidden flag) per slot that
  predicts every slot, its loss on the hidden entries.
* ``brits`` (A2): BRITS (Cao et al., 2018), bidirectional recurrent imputation with temporal decay,
  history and feature (cross-cell) regression; multivariate over the grid's cells, so fit per grid.
* ``gpt4ts`` (A1): GPT4TS ("One fits all", Zhou et al., 2023) with the first 4 frozen SmolLM2 blocks
  in place of GPT-2's 6: per-series instance norm, patches of 24 slots (stride 24) embedded linearly
  as tokens, learned position embedding, the frozen blocks (their norms trainable, as GPT4TS trains
  layer norms), flattened to the horizon by one linear head.

    from umask.train.baselines import base
    m = base.get("dlinear")(period=144).fit(z[:3456])
    y = m.forecast(history, 144)
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from umask.runtime.core.errors import InputError
from umask.train.baselines.base import Predictor, as_windows, check_horizon, register

log = logging.getLogger(__name__)

HISTORY, HORIZON, WINDOW = 288, 144, 288


class _Trained(Predictor):
    """Shared fitting: random training windows, Adam, ``steps`` steps or ``max_seconds``."""

    steps: ClassVar[int] = 300
    batch: ClassVar[int] = 16            # windows per step (x all cells)
    lr: ClassVar[float] = 1e-3
    val_every: ClassVar[int] = 25        # steps between validation checks (fit with ``val``)
    val_windows: ClassVar[int] = 16      # evenly spaced validation windows

    def __init__(self, *, period: int = 144, seed: int = 0, steps: int | None = None,
                 max_seconds: float = 300.0) -> None:
        super().__init__(period=period)
        self.seed, self.max_seconds = seed, float(max_seconds)
        self.n_steps = int(steps or self.steps)
        self.nets: dict[str, nn.Module] = {}
        self.losses: dict[str, list[float]] = {}
        self.val: dict[str, dict[str, float]] = {}

    def _fit_task(self, task: str, net: nn.Module, train: np.ndarray, length: int, loss_fn: Any,
                  val: np.ndarray | None = None) -> None:
        """Train ``net`` on random windows of ``train``. ``val`` (T_v, N): when given, ``loss_fn`` on fixed
        evenly spaced windows of it (fixed masks) every ``val_every`` steps and at the end, in eval mode; the
        weights with the lowest validation loss are kept (``info()["val"]``)."""
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=self.lr)
        z = torch.as_tensor(train, dtype=torch.float32)
        starts = np.arange(0, train.shape[0] - length + 1)
        if not len(starts):
            raise InputError(f"{self.name}: the training period is shorter than one window ({length} slots)")
        vw = None
        if val is not None and val.shape[0] >= length:
            vs = np.unique(np.linspace(0, val.shape[0] - length, self.val_windows).astype(int))
            vz = torch.as_tensor(np.nan_to_num(np.asarray(val, np.float64)), dtype=torch.float32)
            vw = torch.stack([vz[i:i + length] for i in vs]).permute(0, 2, 1).reshape(-1, length)
        best: tuple[float, int, dict | None] = (np.inf, 0, None)
        t0, curve = time.perf_counter(), []
        for step in range(self.n_steps):
            s = rng.choice(starts, self.batch)
            w = torch.stack([z[i:i + length] for i in s]).permute(0, 2, 1).reshape(-1, length)  # (B*N, length)
            loss = loss_fn(net, w, rng)
            opt.zero_grad()
            loss.backward()
            opt.step()
            curve.append(float(loss.detach()))
            over = time.perf_counter() - t0 > self.max_seconds
            if vw is not None and ((step + 1) % self.val_every == 0 or over or step + 1 == self.n_steps):
                net.eval()
                with torch.no_grad():
                    v = float(loss_fn(net, vw, np.random.default_rng(12345)))
                net.train()
                if v < best[0]:
                    best = (v, step + 1, {k: t.detach().clone() for k, t in net.state_dict().items()})
            if over:
                log.info("%s %s: time budget reached at step %d", self.name, task, step + 1)
                break
        if best[2] is not None:
            net.load_state_dict(best[2])
            self.val[task] = {"loss": best[0], "step": best[1]}
        net.eval()
        self.nets[task], self.losses[task] = net, curve
        log.info("%s %s: %d steps, %.0f s, loss %.4f -> %.4f%s", self.name, task, len(curve),
                 time.perf_counter() - t0, np.mean(curve[:10]), np.mean(curve[-10:]),
                 f", best validation {best[0]:.4f} at step {best[1]}" if best[2] is not None else "")

    def _history(self, history: np.ndarray, horizon: int) -> np.ndarray:
        """The checked (n, HISTORY, N) forecast input, missing values as 0."""
        h = as_windows(history, "history", self.n_series)
        if check_horizon(horizon) != HORIZON or h.shape[1] != HISTORY:
            raise InputError(f"{self.name} maps {HISTORY} slots to {HORIZON}")
        return np.nan_to_num(h)

    def _apply(self, task: str, series: np.ndarray, *extra: np.ndarray) -> np.ndarray:
        """series (n, L, N) -> the task net on (n*N, L) rows -> (n, out, N)."""
        n, L, N = series.shape
        rows = [torch.as_tensor(a.transpose(0, 2, 1).reshape(n * N, L), dtype=torch.float32) for a in (series, *extra)]
        with torch.no_grad():
            out = self.nets[task](*rows).numpy().astype(np.float64)
        return out.reshape(n, N, -1).transpose(0, 2, 1)

    def info(self) -> dict[str, object]:
        return {**super().info(), "seed": self.seed, "steps": {k: len(v) for k, v in self.losses.items()},
                "final_loss": {k: float(np.mean(v[-10:])) for k, v in self.losses.items()},
                **({"val": self.val} if self.val else {})}


def _forecast_loss(net: nn.Module, w: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    return F.mse_loss(net(w[:, :HISTORY]), w[:, HISTORY:])


# ------------------------------------------------------------------------------------------------
# DLinear
# ------------------------------------------------------------------------------------------------
class DLinearNet(nn.Module):
    def __init__(self, kernel: int = 25) -> None:
        super().__init__()
        self.kernel = kernel
        self.trend = nn.Linear(HISTORY, HORIZON)
        self.season = nn.Linear(HISTORY, HORIZON)

    def forward(self, x: torch.Tensor) -> torch.Tensor:            # (R, L) -> (R, S)
        pad = self.kernel // 2
        xp = F.pad(x.unsqueeze(1), (pad, pad), mode="replicate")
        trend = F.avg_pool1d(xp, self.kernel, stride=1).squeeze(1)
        return self.trend(trend) + self.season(x - trend)


@register
class DLinearPredictor(_Trained):
    name: ClassVar[str] = "dlinear"

    def fit(self, train: np.ndarray, *, first_slot: int = 0, val: np.ndarray | None = None) -> DLinearPredictor:
        super().fit(train)
        self._fit_task("forecast", DLinearNet(), np.asarray(train, np.float64), HISTORY + HORIZON, _forecast_loss)
        return self

    def forecast(self, history: np.ndarray, horizon: int, *, starts: np.ndarray | None = None) -> np.ndarray:
        return self._apply("forecast", self._history(history, horizon))


# ------------------------------------------------------------------------------------------------
# LSTM
# ------------------------------------------------------------------------------------------------
class LSTMForecaster(nn.Module):
    def __init__(self, hidden: int = 64, pool: int = 3) -> None:
        super().__init__()
        self.pool = pool
        self.lstm = nn.LSTM(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, HORIZON)

    def forward(self, x: torch.Tensor) -> torch.Tensor:            # (R, L) -> (R, S)
        xs = F.avg_pool1d(x.unsqueeze(1), self.pool).transpose(1, 2)  # (R, L/pool, 1)
        _, (h, _) = self.lstm(xs)
        return self.head(h[-1])


class LSTMImputer(nn.Module):
    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.lstm = nn.LSTM(2, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:   # (R, T) x2 -> (R, T)
        out, _ = self.lstm(torch.stack([x * (1 - mask), mask], -1))
        return self.head(out).squeeze(-1)


def hide_mask(w: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """1 = hidden, with the protocol's A2 recipe per row: p ~ U(0.7, 0.8), each slot hidden with probability p."""
    p = torch.as_tensor(rng.uniform(0.7, 0.8, size=(w.shape[0], 1)), dtype=torch.float32)
    return (torch.as_tensor(rng.random(w.shape), dtype=torch.float32) < p).float()


def _impute_loss(net: nn.Module, w: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    mask = hide_mask(w, rng)
    err = (net(w, mask) - w) ** 2
    return (err * mask).sum() / mask.sum().clamp(min=1.0)


@register
class LSTMPredictor(_Trained):
    name: ClassVar[str] = "lstm"
    imputes: ClassVar[bool] = True
    steps: ClassVar[int] = 200
    batch: ClassVar[int] = 8

    def fit(self, train: np.ndarray, *, first_slot: int = 0, val: np.ndarray | None = None) -> LSTMPredictor:
        super().fit(train)
        tr = np.asarray(train, np.float64)
        self._fit_task("forecast", LSTMForecaster(), tr, HISTORY + HORIZON, _forecast_loss)
        self._fit_task("impute", LSTMImputer(), tr, WINDOW, _impute_loss)
        return self

    def forecast(self, history: np.ndarray, horizon: int, *, starts: np.ndarray | None = None) -> np.ndarray:
        return self._apply("forecast", self._history(history, horizon))

    def impute(self, values: np.ndarray, mask: np.ndarray, *, starts: np.ndarray | None = None) -> np.ndarray:
        v = as_windows(values, "values", self.n_series)
        m = np.asarray(mask, bool)
        pred = self._apply("impute", np.where(m, 0.0, v), m.astype(np.float64))
        return np.where(m, pred, v)


# ------------------------------------------------------------------------------------------------
# BRITS (A2)
# ------------------------------------------------------------------------------------------------
class BRITSDirection(nn.Module):
    """One direction of BRITS (Cao et al., 2018) over the N cells of a window: at each slot the history
    regression x^ = W_x h, the feature regression z^ = W_z x^c with a zero diagonal (each cell from the
    others at the same slot), their combination c^ = beta z^ + (1 - beta) x^ with beta from the decay of
    the inputs and the mask, and a temporal decay gamma = exp(-relu(W delta)) of the hidden state, where
    delta is the time since each cell's last observation. The completed slot feeds an LSTM cell."""

    def __init__(self, n: int, hidden: int) -> None:
        super().__init__()
        self.n, self.hidden = n, hidden
        self.decay_h = nn.Linear(n, hidden)
        self.decay_x = nn.Linear(n, n)
        self.hist = nn.Linear(hidden, n)
        self.feat = nn.Linear(n, n)
        self.beta = nn.Linear(2 * n, n)
        self.cell = nn.LSTMCell(2 * n, hidden)
        self.register_buffer("off_diag", 1.0 - torch.eye(n))

    def forward(self, x: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:    # (B, T, N) x2 -> estimates (B, T, N)
        b, T, n = x.shape
        h = x.new_zeros(b, self.hidden)
        c = x.new_zeros(b, self.hidden)
        delta = x.new_zeros(b, n)
        out = []
        for t in range(T):
            xt, mt = x[:, t], obs[:, t]
            h = h * torch.exp(-F.relu(self.decay_h(delta)))
            x_h = self.hist(h)
            x_c = mt * xt + (1 - mt) * x_h
            z_h = F.linear(x_c, self.feat.weight * self.off_diag, self.feat.bias)
            beta = torch.sigmoid(self.beta(torch.cat([torch.exp(-F.relu(self.decay_x(delta))), mt], -1)))
            c_h = beta * z_h + (1 - beta) * x_h
            out.append(c_h)
            h, c = self.cell(torch.cat([mt * xt + (1 - mt) * c_h, mt], -1), (h, c))
            delta = (1 - mt) * (delta + 1) + mt                                    # slots since last observation
        return torch.stack(out, 1)


class BRITSNet(nn.Module):
    """Bidirectional BRITS; rows (B*N, T) as the other grid nets give them, regrouped to (B, T, N)."""

    def __init__(self, n: int, hidden: int = 64) -> None:
        super().__init__()
        self.n = n
        self.dirs = nn.ModuleList([BRITSDirection(n, hidden) for _ in range(2)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:   # (R, T) x2 -> (R, T)
        T = x.shape[1]
        xs = (x * (1 - mask)).view(-1, self.n, T).transpose(1, 2)            # (B, T, N)
        obs = (1 - mask).view(-1, self.n, T).transpose(1, 2)
        fwd = self.dirs[0](xs, obs)
        bwd = self.dirs[1](xs.flip(1), obs.flip(1)).flip(1)
        return (0.5 * (fwd + bwd)).transpose(1, 2).reshape(-1, T)


@register
class BRITSPredictor(_Trained):
    """BRITS for A2 (own compact implementation): trained on training-period windows hidden with the protocol's
    recipe (p ~ U(0.7, 0.8)), MSE on the hidden entries."""

    name: ClassVar[str] = "brits"
    forecasts: ClassVar[bool] = False
    imputes: ClassVar[bool] = True
    steps: ClassVar[int] = 300
    batch: ClassVar[int] = 8

    def fit(self, train: np.ndarray, *, first_slot: int = 0, val: np.ndarray | None = None) -> BRITSPredictor:
        super().fit(train)
        tr = np.asarray(train, np.float64)
        self._fit_task("impute", BRITSNet(tr.shape[1]), tr, WINDOW, _impute_loss)
        return self

    impute = LSTMPredictor.impute

    def forecast(self, history: np.ndarray, horizon: int, *, starts: np.ndarray | None = None) -> np.ndarray:
        raise InputError("brits is an imputation baseline (A2); it has no A1 forecast")


# ------------------------------------------------------------------------------------------------
# GPT4TS-style frozen LLM forecaster
# ------------------------------------------------------------------------------------------------
class GPT4TSNet(nn.Module):
    def __init__(self, n_blocks: int = 4, patch: int = 24, backbone: str = "smollm2") -> None:
        super().__init__()
        from umask.train.models.ustsllm.model import USTSConfig, block_forward, load_blocks

        self.patch, self._block_forward = patch, block_forward
        self.blocks, lcfg = load_blocks(USTSConfig(n_blocks=n_blocks, n_frozen=n_blocks, backbone=backbone))
        for name, p in self.blocks.named_parameters():
            p.requires_grad_("layernorm" in name)                 # GPT4TS: norms trainable, the rest frozen
        d, n_tok = lcfg.hidden_size, HISTORY // patch
        self.heads, self.kv = lcfg.num_attention_heads, lcfg.num_key_value_heads
        self.head_dim = getattr(lcfg, "head_dim", None) or d // self.heads
        self.embed = nn.Linear(patch, d)
        self.pos = nn.Parameter(torch.zeros(n_tok, d))
        self.out = nn.Linear(n_tok * d, HORIZON)

    def forward(self, x: torch.Tensor) -> torch.Tensor:            # (R, L) -> (R, S)
        mu, sd = x.mean(1, keepdim=True), x.std(1, keepdim=True) + 1e-5
        xn = (x - mu) / sd                                          # instance norm (GPT4TS / RevIN)
        h = self.embed(xn.view(x.shape[0], -1, self.patch)) + self.pos  # (R, P, d)
        for blk in self.blocks:                                     # causal attention not needed: the
            h = self._block_forward(blk, h, None, self.heads, self.kv, self.head_dim)  # head reads every token
        return self.out(h.flatten(1)) * sd + mu


@register
class GPT4TSPredictor(_Trained):
    name: ClassVar[str] = "gpt4ts"
    steps: ClassVar[int] = 150
    batch: ClassVar[int] = 4

    def fit(self, train: np.ndarray, *, first_slot: int = 0, val: np.ndarray | None = None) -> GPT4TSPredictor:
        super().fit(train)
        self._fit_task("forecast", GPT4TSNet(), np.asarray(train, np.float64), HISTORY + HORIZON, _forecast_loss)
        return self

    def forecast(self, history: np.ndarray, horizon: int, *, starts: np.ndarray | None = None) -> np.ndarray:
        h = self._history(history, horizon)
        out = []
        for i in range(0, h.shape[0], 16):
            out.append(self._apply("forecast", h[i:i + 16]))
        return np.concatenate(out)


__all__ = ["DLinearPredictor", "LSTMPredictor", "GPT4TSPredictor", "BRITSPredictor", "DLinearNet", "LSTMForecaster",
           "LSTMImputer", "BRITSNet", "GPT4TSNet"]
