"""ConvLSTM, TimesNet and SAITS: the remaining learned grid baselines of the U-STS-LLM paper's tables (issue 12).

Own compact implementations on the conventions of :mod:`umask.train.baselines.grid_nets` (its `_Trained`
fitting loop: random training-period windows on the harness's standardized scale, Adam, a step budget
and a time cap, the weights of the best validation check kept when ``fit`` gets ``val``). Unlike the
channel-independent DLinear / LSTM there, these three read the whole grid at once, as in their papers:

* ``convlstm`` (A1, A2): ConvLSTM (Shi et al., 2015), LSTM gates computed by 3x3 convolutions over the
  H x W grid (``grid=(H, W)``; default: the most square factorization of the cell count).
* ``timesnet`` (A1, A2): TimesNet (Wu et al., 2023), FFT top-k periods, each period's 1D -> 2D fold
  processed by an inception block of 2D convolutions, amplitude-weighted aggregation.
* ``saits`` (A2): SAITS (Du et al., 2023), two diagonally-masked self-attention blocks and their learned
  weighted combination, trained with the joint ORT + MIT loss.

Sizes are chosen for one CPU thread and a few minutes of training (each class docstring says which and
why); they are much smaller than the papers' defaults.

    from umask.train.baselines import base
    m = base.get("timesnet")(period=144, max_seconds=240).fit(z[:3456], val=z[3168:3888])
    y = m.forecast(history, 144)                       # (n, 288, 25) -> (n, 144, 25)
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from umask.runtime.core.errors import InputError
from umask.train.baselines.base import as_windows, register
from umask.train.baselines.grid_nets import (HISTORY, HORIZON, WINDOW, _forecast_loss, _impute_loss, _Trained,
                                             hide_mask)

__all__ = ["ConvLSTMPredictor", "TimesNetPredictor", "SAITSPredictor", "ConvLSTMCell", "ConvLSTMForecaster",
           "ConvLSTMImputer", "TimesNet", "SAITSNet", "fft_periods", "square_grid"]


def square_grid(n: int) -> tuple[int, int]:
    """The most square (H, W) with H * W = n, H <= W (5x5 for Milan's 25 cells)."""
    h = max(d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0)
    return h, n // h


def _sinusoid(length: int, d: int) -> torch.Tensor:
    """Fixed sine / cosine position table (length, d), as both TimesNet and SAITS embed positions."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(length, d)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
    return pe


def _to_grid(rows: torch.Tensor, n: int) -> torch.Tensor:
    """Rows (B*N, L) as the `_Trained` loop stacks them -> (B, L, N)."""
    return rows.view(-1, n, rows.shape[1]).transpose(1, 2)


def _to_rows(x: torch.Tensor) -> torch.Tensor:
    """(B, L, N) -> rows (B*N, L)."""
    return x.transpose(1, 2).reshape(-1, x.shape[1])


class _GridNet(_Trained):
    """What the three nets share: ``grid`` (H, W) (default: `square_grid` of the cell count) and ``tasks``,
    the nets to train ("forecast", "impute"; the ustsllm harness passes the scored one, as it passes the
    grid, to classes with ``grid_aware``); forecast / impute through the nets in chunks of windows
    (attention over 288 slots is the memory peak), hidden entries zeroed, observed entries kept."""

    grid_aware: ClassVar[bool] = True
    chunk: ClassVar[int] = 32

    def __init__(self, *, grid: tuple[int, int] | None = None, tasks: tuple[str, ...] = ("forecast", "impute"),
                 **kw) -> None:
        super().__init__(**kw)
        self.grid = tuple(grid) if grid is not None else None
        self.tasks = tuple(tasks)

    def _fit_nets(self, train: np.ndarray, val: np.ndarray | None, nets: dict) -> None:
        """nets: task -> (net factory, window length, loss); only the tasks of ``self.tasks``."""
        n = self.n_series
        self.grid = self.grid or square_grid(n)
        if self.grid[0] * self.grid[1] != n:
            raise InputError(f"{self.name}: grid {self.grid} does not match {n} cells")
        tr = np.asarray(train, np.float64)
        for task, (make, length, loss) in nets.items():
            if task in self.tasks:
                torch.manual_seed(self.seed)                           # the initial weights depend on the seed alone
                self._fit_task(task, make(), tr, length, loss, val)

    def _chunked(self, task: str, *arrays: np.ndarray) -> np.ndarray:
        if task not in self.nets:
            raise InputError(f"{self.name} was fitted with tasks={self.tasks}; no {task} net")
        return np.concatenate([self._apply(task, *(a[i:i + self.chunk] for a in arrays))
                               for i in range(0, arrays[0].shape[0], self.chunk)])

    def forecast(self, history: np.ndarray, horizon: int, *, starts: np.ndarray | None = None) -> np.ndarray:
        if not self.forecasts:
            raise InputError(f"{self.name} is an imputation baseline (A2); it has no A1 forecast")
        return self._chunked("forecast", self._history(history, horizon))

    def impute(self, values: np.ndarray, mask: np.ndarray, *, starts: np.ndarray | None = None) -> np.ndarray:
        v = as_windows(values, "values", self.n_series)
        m = np.asarray(mask, bool)
        if v.shape[1] != WINDOW or m.shape != v.shape:
            raise InputError(f"{self.name} imputes windows of {WINDOW} slots with a mask of their shape, "
                             f"got values {v.shape}, mask {m.shape}")
        return np.where(m, self._chunked("impute", np.where(m, 0.0, v), m.astype(np.float64)), v)

    def info(self) -> dict[str, object]:
        return {**super().info(), "grid": list(self.grid or ())}


# ------------------------------------------------------------------------------------------------
# ConvLSTM (Shi et al., 2015)
# ------------------------------------------------------------------------------------------------
class ConvLSTMCell(nn.Module):
    """One ConvLSTM cell, eq. 3 of Shi et al.: the input, forget and output gates and the cell candidate
    are convolutions of [X_t, H_{t-1}] (one conv gives all four), with peephole terms W_c o C. The paper's
    peephole weights are per position; here per channel, so one net runs on any H x W grid."""

    def __init__(self, c_in: int, c_hid: int, kernel: int = 3) -> None:
        super().__init__()
        self.c_hid = c_hid
        self.conv = nn.Conv2d(c_in + c_hid, 4 * c_hid, kernel, padding=kernel // 2)
        self.peep = nn.Parameter(torch.zeros(3, c_hid, 1, 1))           # W_ci, W_cf, W_co

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state                                                   # (B, C, H, W) each
        i, f, o, g = self.conv(torch.cat([x, h], 1)).chunk(4, 1)
        i = torch.sigmoid(i + self.peep[0] * c)
        f = torch.sigmoid(f + self.peep[1] * c)
        c = f * c + i * torch.tanh(g)
        o = torch.sigmoid(o + self.peep[2] * c)                        # eq. 3: the output gate peeps at C_t
        return o * torch.tanh(c), c

    def run(self, xs: torch.Tensor) -> list[torch.Tensor]:
        """xs (B, T, C_in, H, W) -> the hidden states of every step, T x (B, C, H, W)."""
        b, _, _, hh, ww = xs.shape
        state = (xs.new_zeros(b, self.c_hid, hh, ww), xs.new_zeros(b, self.c_hid, hh, ww))
        out = []
        for t in range(xs.shape[1]):
            state = self(xs[:, t], state)
            out.append(state[0])
        return out


class ConvLSTMForecaster(nn.Module):
    """Encoder of two stacked ConvLSTM layers over the history pooled to ``pool``-slot means, the paper's
    forecaster reduced to a 1x1 convolution of both layers' last hidden states to the horizon (one value
    per cell and horizon slot). The window's per-cell history mean is taken out and added back."""

    def __init__(self, grid: tuple[int, int], hidden: int = 16, pool: int = 3) -> None:
        super().__init__()
        self.grid, self.pool = grid, pool
        self.enc = nn.ModuleList([ConvLSTMCell(1, hidden), ConvLSTMCell(hidden, hidden)])
        self.head = nn.Conv2d(2 * hidden, HORIZON, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:               # rows (R, L) -> (R, S)
        h, w = self.grid
        mu = x.mean(1, keepdim=True)
        xs = F.avg_pool1d((x - mu).unsqueeze(1), self.pool).squeeze(1)          # (R, L/pool)
        xs = _to_grid(xs, h * w).reshape(-1, xs.shape[1], 1, h, w)              # (B, T', 1, H, W)
        h1 = self.enc[0].run(xs)
        h2 = self.enc[1].run(torch.stack(h1, 1))
        y = self.head(torch.cat([h1[-1], h2[-1]], 1))                            # (B, S, H, W)
        return _to_rows(y.flatten(2)) + mu                                       # (B, S, N) -> rows


class ConvLSTMImputer(nn.Module):
    """Bidirectional ConvLSTM over every slot of the window, input channels (value with hidden entries
    zeroed, hidden flag); a 1x1 convolution of both directions' hidden states estimates each entry."""

    def __init__(self, grid: tuple[int, int], hidden: int = 16) -> None:
        super().__init__()
        self.grid = grid
        self.dirs = nn.ModuleList([ConvLSTMCell(2, hidden), ConvLSTMCell(2, hidden)])
        self.head = nn.Conv2d(2 * hidden, 1, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:   # rows (R, T) x2 -> (R, T)
        h, w = self.grid
        T = x.shape[1]
        xs = torch.stack([_to_grid(x * (1 - mask), h * w), _to_grid(mask, h * w)], 2).reshape(-1, T, 2, h, w)
        fwd = torch.stack(self.dirs[0].run(xs), 1)                                 # (B, T, C, H, W)
        bwd = torch.stack(self.dirs[1].run(xs.flip(1)), 1).flip(1)
        y = self.head(torch.cat([fwd, bwd], 2).flatten(0, 1)).view(-1, T, h * w)   # (B, T, N)
        return _to_rows(y)


@register
class ConvLSTMPredictor(_GridNet):
    """ConvLSTM for A1 and A2. Size: 16 hidden channels (the paper: 64-128), 3x3 kernels, A1 two layers over
    30-minute means (96 steps, like the LSTM baseline), A2 one layer each way over the 288 slots: a 5x5 grid
    step is cheap but the recurrence is sequential, so depth and width stay small for one CPU thread."""

    name: ClassVar[str] = "convlstm"
    imputes: ClassVar[bool] = True
    steps: ClassVar[int] = 1500
    batch: ClassVar[int] = 8

    def fit(self, train: np.ndarray, *, first_slot: int = 0, val: np.ndarray | None = None) -> ConvLSTMPredictor:
        super().fit(train)
        g = self.grid or square_grid(self.n_series)
        self._fit_nets(train, val, {"forecast": (lambda: ConvLSTMForecaster(g), HISTORY + HORIZON, _forecast_loss),
                                    "impute": (lambda: ConvLSTMImputer(g), WINDOW, _impute_loss)})
        return self


# ------------------------------------------------------------------------------------------------
# TimesNet (Wu et al., 2023)
# ------------------------------------------------------------------------------------------------
def fft_periods(x: torch.Tensor, k: int) -> tuple[list[int], torch.Tensor]:
    """TimesNet eq. 1: amplitudes A = Avg(Amp(FFT(X))) over the batch and channels, the top-k frequencies
    f_1..f_k (the zero frequency excluded), periods p_i = ceil(T / f_i); also each sample's amplitude at
    those frequencies (B, k), the weights of eq. 6. x (B, T, C)."""
    amp = torch.fft.rfft(x, dim=1).abs()                               # (B, T//2+1, C)
    mean = amp.mean((0, 2)).detach()
    mean[0] = 0.0
    top = torch.topk(mean, k).indices.clamp(min=1)
    T = x.shape[1]
    return [int(math.ceil(T / int(f))) for f in top], amp.mean(-1)[:, top]


class Inception(nn.Module):
    """Inception block of TimesNet's 2D kernel: parallel k x k convolutions, k = 1, 3, 5, ..., averaged."""

    def __init__(self, c_in: int, c_out: int, n_kernels: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(c_in, c_out, 2 * i + 1, padding=i) for i in range(n_kernels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:               # (B, C, rows, p)
        return torch.stack([c(x) for c in self.convs], -1).mean(-1)


class TimesBlock(nn.Module):
    """TimesNet eqs. 3-6: for each detected period p, fold (B, T, D) into (B, D, ceil(T/p), p) (zero padded),
    apply inception -> GELU -> inception, unfold, truncate to T; softmax of the amplitudes weights the k
    results (adaptive aggregation), plus the residual."""

    def __init__(self, d: int, d_ff: int, k: int, n_kernels: int) -> None:
        super().__init__()
        self.k = k
        self.conv = nn.Sequential(Inception(d, d_ff, n_kernels), nn.GELU(), Inception(d_ff, d, n_kernels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:               # (B, T, D) -> (B, T, D)
        b, T, d = x.shape
        periods, amp = fft_periods(x, self.k)
        outs = []
        for p in periods:
            rows = -(-T // p)
            img = F.pad(x, (0, 0, 0, rows * p - T)).reshape(b, rows, p, d).permute(0, 3, 1, 2)   # eq. 3 (1D -> 2D)
            outs.append(self.conv(img).permute(0, 2, 3, 1).reshape(b, rows * p, d)[:, :T])      # eqs. 4-5
        w = F.softmax(amp, 1)                                          # eq. 6
        return torch.einsum("btdk,bk->btd", torch.stack(outs, -1), w) + x


class TimesNet(nn.Module):
    """TimesNet over the grid's N cells as the channels of one multivariate series (the paper's setting).
    Forecast: instance normalization, token embedding (conv over time) + position table, the paper's linear
    extension of the time axis L -> L + S, TimesBlocks with layer norm, projection to the N cells, the last
    S slots de-normalized. Impute: normalization from the observed entries only, the hidden flags as extra
    input channels (not in the paper, whose input has zeros only: with 75 % hidden a zero is ambiguous),
    the estimate at every slot. No calendar embedding (the `_Trained` windows carry no timestamps)."""

    def __init__(self, n: int, length: int, *, horizon: int = 0, d: int = 32, d_ff: int = 32, k: int = 2,
                 n_kernels: int = 3, layers: int = 2) -> None:
        super().__init__()
        self.n, self.horizon = n, horizon
        c_in = n if horizon else 2 * n
        self.embed = nn.Conv1d(c_in, d, 3, padding=1, padding_mode="circular")
        self.register_buffer("pe", _sinusoid(length + horizon, d))
        self.extend = nn.Linear(length, length + horizon) if horizon else None
        self.blocks = nn.ModuleList([TimesBlock(d, d_ff, k, n_kernels) for _ in range(layers)])
        self.norm = nn.LayerNorm(d)
        self.proj = nn.Linear(d, n)

    def _body(self, x: torch.Tensor) -> torch.Tensor:                # (B, L, C) -> (B, L', N)
        h = self.embed(x.transpose(1, 2))                              # (B, D, L)
        if self.extend is not None:
            h = self.extend(h)                                         # (B, D, L + S)
        h = h.transpose(1, 2) + self.pe
        for blk in self.blocks:
            h = self.norm(blk(h))
        return self.proj(h)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:   # rows -> rows
        xg = _to_grid(x, self.n)                                       # (B, L, N)
        if mask is None:                                               # forecast
            mu = xg.mean(1, keepdim=True)
            sd = torch.sqrt(xg.var(1, keepdim=True, unbiased=False) + 1e-5)
            y = self._body((xg - mu) / sd)[:, -self.horizon:] * sd + mu
            return _to_rows(y)
        obs = 1 - _to_grid(mask, self.n)
        cnt = obs.sum(1, keepdim=True).clamp(min=1.0)
        mu = (xg * obs).sum(1, keepdim=True) / cnt
        sd = torch.sqrt((((xg - mu) * obs) ** 2).sum(1, keepdim=True) / cnt + 1e-5)
        y = self._body(torch.cat([(xg - mu) / sd * obs, 1 - obs], -1)) * sd + mu
        return _to_rows(y)


@register
class TimesNetPredictor(_GridNet):
    """TimesNet for A1 and A2. Size: d_model 32, d_ff 32, 2 TimesBlocks, top-2 periods, 3 inception kernels
    (1, 3, 5) -- the paper uses d_model 16-64, top-5 (forecast) / top-3 (imputation), 6 kernels; fewer
    kernels and periods cut the 2D-convolution cost, the dominant one on a CPU thread."""

    name: ClassVar[str] = "timesnet"
    imputes: ClassVar[bool] = True
    steps: ClassVar[int] = 1500
    batch: ClassVar[int] = 8

    def fit(self, train: np.ndarray, *, first_slot: int = 0, val: np.ndarray | None = None) -> TimesNetPredictor:
        super().fit(train)
        n = self.n_series
        self._fit_nets(train, val, {"forecast": (lambda: TimesNet(n, HISTORY, horizon=HORIZON), HISTORY + HORIZON,
                                                 _forecast_loss),
                                    "impute": (lambda: TimesNet(n, WINDOW), WINDOW, _impute_loss)})
        return self


# ------------------------------------------------------------------------------------------------
# SAITS (Du et al., 2023)
# ------------------------------------------------------------------------------------------------
class DMSALayer(nn.Module):
    """Transformer encoder layer with diagonally-masked self-attention (SAITS eq. 5): the attention of a
    slot to itself is set to -inf before the softmax, so each estimate comes from the other slots only.
    Pre-norm, as SAITS' encoder layer. Returns the attention map too (eq. 12 reads the last one)."""

    def __init__(self, d: int, heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, d_ff), nn.ReLU(), nn.Linear(d_ff, d))
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:   # (B, T, D)
        b, T, d = h.shape
        q, k, v = self.qkv(self.n1(h)).view(b, T, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        s = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)                 # (B, heads, T, T)
        a = F.softmax(s.masked_fill(torch.eye(T, dtype=torch.bool, device=h.device), float("-inf")), -1)  # eq. 5
        h = h + self.drop(self.out((a @ v).transpose(1, 2).reshape(b, T, d)))
        return h + self.drop(self.ff(self.n2(h))), a


class SAITSNet(nn.Module):
    """SAITS over the grid (features = the N cells, sequence = the T slots). Block 1 (eqs. 6-8): [X, M]
    embedded + positions, DMSA layers, X~1 = linear; X' = M*X + (1-M)*X~1. Block 2 (eqs. 9-11): the same on
    [X', M], X~2 = linear(ReLU(linear)). Weighted combination (eqs. 12-14): eta = sigmoid(linear([A, M]))
    with A the head-averaged attention of block 2's last layer, X~3 = (1 - eta)*X~2 + eta*X~1."""

    def __init__(self, n: int, length: int, d: int = 64, heads: int = 4, d_ff: int = 128, layers: int = 1,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.n = n
        self.emb1, self.emb2 = nn.Linear(2 * n, d), nn.Linear(2 * n, d)
        self.register_buffer("pe", _sinusoid(length, d))
        self.block1 = nn.ModuleList([DMSALayer(d, heads, d_ff, dropout) for _ in range(layers)])
        self.block2 = nn.ModuleList([DMSALayer(d, heads, d_ff, dropout) for _ in range(layers)])
        self.out1 = nn.Linear(d, n)
        self.out2 = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, n))
        self.eta = nn.Linear(n + length, n)
        self.drop = nn.Dropout(dropout)

    def estimates(self, x: torch.Tensor, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x, obs (B, T, N), x zero where not observed -> X~1, X~2, X~3 (B, T, N)."""
        h = self.drop(self.emb1(torch.cat([x, obs], -1)) + self.pe)
        for layer in self.block1:
            h, _ = layer(h)
        x1 = self.out1(h)                                              # eq. 7
        xc = obs * x + (1 - obs) * x1                                  # eq. 8
        h = self.drop(self.emb2(torch.cat([xc, obs], -1)) + self.pe)
        a = h.new_zeros(0)
        for layer in self.block2:
            h, a = layer(h)
        x2 = self.out2(h)                                              # eq. 10
        eta = torch.sigmoid(self.eta(torch.cat([obs, a.mean(1)], -1))) # eqs. 12-13: (B, T, N)
        return x1, x2, (1 - eta) * x2 + eta * x1                       # eq. 14

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:   # rows (R, T) x2 -> X~3 rows
        obs = 1 - _to_grid(mask, self.n)
        return _to_rows(self.estimates(_to_grid(x, self.n) * obs, obs)[2])


def saits_batch(w: torch.Tensor, rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Complete training windows (rows (B*N, T)) -> (input X (B, T, N) with the hidden entries zeroed,
    observed mask M, MIT mask I). The training period is complete, so the artificially masked set of MIT
    is the protocol's hidden set (p ~ U(0.7, 0.8)) and ORT reconstructs the observed rest; no true value
    of an I entry is in the input."""
    hidden = _to_grid(hide_mask(w, rng), n)
    obs = 1 - hidden
    return _to_grid(w, n) * obs, obs, hidden


def _saits_loss(net: SAITSNet, w: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """SAITS eqs. 15-17: L = ORT + MIT, ORT = the mean of the three estimates' MAE on the observed entries,
    MIT = X~3's MAE on the artificially masked entries (lambda = 1). In eval mode (the validation check of
    the fitting loop) the MIT term alone: the imputation error on hidden entries the test scores."""
    x, obs, hidden = saits_batch(w, rng, net.n)
    truth = _to_grid(w, net.n)
    x1, x2, x3 = net.estimates(x, obs)
    mae = lambda e, m: ((e - truth).abs() * m).sum() / m.sum().clamp(min=1.0)  # noqa: E731
    mit = mae(x3, hidden)
    return mit if not net.training else (mae(x1, obs) + mae(x2, obs) + mae(x3, obs)) / 3 + mit


@register
class SAITSPredictor(_GridNet):
    """SAITS for A2. Size: d_model 64, 4 heads, d_ff 128, one DMSA layer per block, dropout 0.1 (the paper:
    d_model 256-512, 2 layers per block): attention over the 288 slots is O(T^2) per head, so width and
    depth stay small for one CPU thread and a few hundred steps."""

    name: ClassVar[str] = "saits"
    forecasts: ClassVar[bool] = False
    imputes: ClassVar[bool] = True
    steps: ClassVar[int] = 1500
    batch: ClassVar[int] = 8

    def fit(self, train: np.ndarray, *, first_slot: int = 0, val: np.ndarray | None = None) -> SAITSPredictor:
        super().fit(train)
        self._fit_nets(train, val, {"impute": (lambda: SAITSNet(self.n_series, WINDOW), WINDOW, _saits_loss)})
        return self
