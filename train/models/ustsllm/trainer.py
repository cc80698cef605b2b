"""Train U-STS-LLM on a grid (PROTOCOL A: the Milan 5x5 sample or any slots x cells CSV)::

    umask train ustsllm --steps 450 --max-minutes 20 --out artifacts/train/ustsllm
    python -m umask.train.models.ustsllm.trainer --data my.csv --grid 3x4 --out artifacts/train/mine

Every step takes ``batch_size`` A1-shaped forecasting windows (2 days -> 1 day) and ``batch_size`` A2-shaped
imputation windows (2 days, each entry hidden with p ~ U(0.7, 0.8), the protocol's recipe with training
seeds) from the training period only, and minimizes eq. 15: alpha * MSE(forecast) + (1 - alpha) *
MSE(imputation over the hidden entries, eq. 16), on the grid's standardized scale after eq. 1's inverse
(``--loss l1``: the absolute error in both places, the MAE-optimal point).
Validation (EMA weights): a fixed subset of the validation period's A1 windows and A2 windows with the
protocol masks; ``val/loss`` is eq. 15 on them, ``val/nmae_a1`` / ``val/nmae_a2`` are logged beside it.
The shared loop (train/common/loop.py) does AdamW, EMA, checkpoints and resume.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
import torch.nn as nn

from umask.runtime.core.errors import InputError
from umask.runtime.core.gridscale import ProfileStatistic
from umask.runtime.families.ustsllm.stats import GridStats, fit_grid_stats, prior_channel, time_inputs
from umask.train.common import loop
from umask.train.common.config import (HelpFormatter, LoopConfig, add_dataclass_args, config_dict, dataclass_from_args,
                                       with_default)
from umask.train.data import splits
from umask.train.data.grids import GridData, open_grid
from umask.train.models.umask.grid_prior import MILAN_FIRST_WEEKDAY
from umask.train.models.ustsllm.model import TASKS, USTSConfig, USTSLLM

log = logging.getLogger(__name__)
MODEL, DATA = "model", "data"
LossName = Literal["mse", "l1"]
LOSSES: tuple[str, ...] = get_args(LossName)


@dataclass
class TrainConfig(LoopConfig):
    """The shared loop's settings plus the data and the multi-task loss; the network's own settings are
    :class:`~umask.train.models.ustsllm.model.USTSConfig` (``net``, its flags in the "model" group)."""

    data: str | None = field(default=None, metadata={"help": "slots x cells CSV (default: the Milan 5x5 sample)",
                                                      "group": DATA})
    grid: str | None = field(default=None, metadata={"help": "HxW of the cells (when not a square count)",
                                                      "group": DATA})
    slot_minutes: int = field(default=10, metadata={"help": "minutes per row", "group": DATA})
    adjacency: str | None = field(default=None, metadata={"help": "unused by this family (A is functional, eq. 8)",
                                                           "group": DATA})
    first_weekday: int | None = field(default=None, metadata={
        "help": "weekday of the grid's slot 0, Monday = 0 (default: Friday for the Milan sample, else Monday)",
        "group": DATA})
    profile_decay: float = field(default=1.0, metadata={
        "help": "the prior channel's slot-of-day profiles weigh training day d of n by decay ** (n-1-d); 1 = the "
                "plain mean (the runs before this setting); 0.875 = the grid prior's validation choice",
        "group": MODEL})
    profile_statistic: ProfileStatistic = field(default="mean", metadata={
        "help": "the prior channel's slot-of-day profiles: mean (the runs before this setting) or median of the "
                "training days (the MAE-optimal level, the profile_median_level baseline row; needs --profile-decay 1)",
        "group": MODEL})
    alpha: float = field(default=0.5, metadata={"help": "eq. 15 weight of the forecasting loss", "group": MODEL})
    loss: LossName = field(default="mse", metadata={
        "help": "the error inside eqs. 15-16: mse = the paper (the conditional mean, RMSE-optimal); l1 = absolute "
                "error (the conditional median, MAE-optimal: PROTOCOL A's headline is nMAE)", "group": MODEL})
    val_stride: int = field(default=8, metadata={"help": "validate on every N-th validation window", "group": DATA})
    net: USTSConfig = field(default_factory=USTSConfig, metadata={"cli": False})
    # the loop's settings with this family's defaults (sized for ~20 min on one CPU thread)
    steps: int = with_default(LoopConfig, "steps", 450)
    lr: float = with_default(LoopConfig, "lr", 1e-3)
    warmup: int = with_default(LoopConfig, "warmup", 30)
    ema_decay: float = with_default(LoopConfig, "ema_decay", 0.99)
    ckpt_every: int = with_default(LoopConfig, "ckpt_every", 50)
    eval_every: int = with_default(LoopConfig, "eval_every", 50)
    keep_last: int = with_default(LoopConfig, "keep_last", 2)
    progress: bool = with_default(LoopConfig, "progress", False)

    RESUME_MUST_MATCH = ("seed", "batch_size", "alpha", "profile_decay", "profile_statistic", "loss")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.alpha <= 1.0:
            raise InputError(f"--alpha must be in [0, 1], got {self.alpha}")

    def to_dict(self) -> dict[str, Any]:
        d = config_dict(self)
        d["net"] = self.net.to_dict()
        return d


# ------------------------------------------------------------------------------------------------
# Windows -> network inputs (numpy; shared with the scorer)
# ------------------------------------------------------------------------------------------------
def forecast_inputs(history: np.ndarray, first_slots: np.ndarray, stats: GridStats, horizon: int
                    ) -> dict[str, np.ndarray]:
    """Network inputs of forecasting windows: history (n, L, cells) standardized, first_slots (n,) = the
    absolute slot of each history's first row. The horizon rows are hidden (mask 1, value 0)."""
    n, L, c = history.shape
    x = np.concatenate([history, np.zeros((n, horizon, c))], 1)
    mask = np.zeros_like(x)
    mask[:, L:] = 1.0
    return _inputs(x, mask, first_slots, stats, "forecast")


def impute_inputs(observed: np.ndarray, mask: np.ndarray, first_slots: np.ndarray, stats: GridStats,
                  guide_prior: str = "grid_prior") -> dict[str, np.ndarray]:
    """Network inputs of imputation windows: observed (n, T, cells) (hidden entries NaN or anything),
    mask (n, T, cells) True = hidden. ``guide_prior`` "lowrank" / "lowrank_input" / "lowrank_profile": the prior
    channel is the window's lowrank_interpolation / profile_lowrank_interpolation row (USTSConfig.guide_prior, stats.
    prior_channel), else the day-type profile."""
    m = np.asarray(mask, bool)
    return _inputs(np.where(m, 0.0, np.nan_to_num(observed)), m.astype(np.float64), first_slots, stats, "impute",
                   guide_prior)


def _inputs(x: np.ndarray, mask: np.ndarray, first_slots: np.ndarray, stats: GridStats, task: str,
            guide_prior: str = "grid_prior") -> dict[str, np.ndarray]:
    tod, dow = time_inputs(first_slots, stats)
    prior = prior_channel(stats, task, x, mask > 0, first_slots, guide_prior)
    return {"x": x.astype(np.float32), "mask": mask.astype(np.float32), "prior": prior.astype(np.float32),
            "tod": tod, "dow": dow, "graph": stats.graph.astype(np.float32)}


def first_weekday_of(grid: GridData, given: int | None = None) -> int:
    """The weekday (Monday = 0) of ``grid``'s slot 0: ``given``, else the Milan sample's (Friday, as the grid
    prior's ``prior_of``), else Monday."""
    if given is not None:
        return int(given)
    return MILAN_FIRST_WEEKDAY if grid.source == "milan" else 0


def to_torch(inputs: dict[str, np.ndarray], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v, device=device) for k, v in inputs.items()}


# ------------------------------------------------------------------------------------------------
# The loss module the loop trains
# ------------------------------------------------------------------------------------------------
class MultiTask(nn.Module):
    """``forward(batch, generator) -> (loss, parts)`` of eq. 15 around a :class:`USTSLLM` (``self.net``)."""

    def __init__(self, cfg: USTSConfig, alpha: float, loss: str = "mse") -> None:
        super().__init__()
        if loss not in LOSSES:
            raise InputError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        self.net, self.alpha, self.loss = USTSLLM(cfg), float(alpha), loss

    def forward(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        parts: dict[str, float] = {}
        losses = {}
        for task in TASKS:
            inp = batch[task]
            u = torch.rand(inp["x"].shape[0], generator=generator) if self.training else None
            y = self.net(task, inp["x"], inp["mask"], inp["prior"], inp["tod"], inp["dow"], inp["graph"], u=u)
            err = y - inp["y"]
            # eqs. 15-16 write MSE; with loss="l1" the same sums use |err| (a deviation, TrainConfig.loss: the MSE
            # optimum is the conditional mean, and these skewed, bursty counts are scored on nMAE, whose optimum
            # is the median)
            e2, e1 = err ** 2, err.abs()
            if task == "impute":                                             # eq. 16: hidden entries only
                w = inp["mask"]
                n = w.sum().clamp(min=1.0)
                mse, mae = (e2 * w).sum() / n, (e1 * w).sum() / n
                parts["nmae_a2"] = float(mae.detach())
            else:
                mse, mae = e2.mean(), e1.mean()
                parts["nmae_a1"] = float(mae.detach())
            losses[task] = mae if self.loss == "l1" else mse
            parts[f"mse_{task}"] = float(mse.detach())
        loss = self.alpha * losses["forecast"] + (1 - self.alpha) * losses["impute"]      # eq. 15
        parts["loss"] = float(loss.detach())
        parts["lambda"] = float(torch.sigmoid(self.net.gate.detach())) if self.net.cfg.use_guidance else 0.0
        return loss, parts


# ------------------------------------------------------------------------------------------------
# Family
# ------------------------------------------------------------------------------------------------
class USTSFamily(loop.Family):
    """Data, windows and validation of U-STS-LLM for the shared loop."""

    trainer = "umask.train.models.ustsllm.trainer"

    def __init__(self, cfg: TrainConfig, grid: GridData | None = None) -> None:
        self.cfg, self.grid = cfg, grid

    def setup(self, d: loop.Dist, device: torch.device) -> None:
        cfg = self.cfg
        grid = self.grid if self.grid is not None else open_grid(cfg.data, grid=cfg.grid,
                                                                 slot_minutes=cfg.slot_minutes)
        if grid.slots_per_day != cfg.net.slots_per_day:
            raise InputError(f"--slot-minutes {grid.slot_minutes}: the network is built for "
                             f"{cfg.net.slots_per_day} slots a day (history {cfg.net.history} slots)")
        self.grid, self.device = grid, device
        self.periods = grid.splits()
        train_end = self.periods["train"][1]
        self.stats = fit_grid_stats(grid.values, train_end, grid.slots_per_day, first_weekday_of(grid, cfg.first_weekday),
                                    cfg.profile_decay, cfg.profile_statistic)
        self.z = self.stats.transform(grid.values)                          # (slots, cells)
        net = cfg.net
        self.f_starts = np.arange(net.history, train_end - net.horizon + 1)  # horizon starts, whole window in train
        self.i_starts = np.arange(0, train_end - net.window + 1)
        if not len(self.f_starts) or not len(self.i_starts):
            raise InputError(f"{grid.source}: the training period ({train_end} slots) is shorter than one window")
        fw = splits.forecast_windows(self.z, "val", history=net.history, horizon=net.horizon, splits=self.periods)
        iw = splits.imputation_windows(self.z, "val", window=net.window, splits=self.periods)
        fi, ii = np.arange(0, len(fw.starts), cfg.val_stride), np.arange(0, len(iw), cfg.val_stride)
        if not len(fi) or not len(ii):
            raise InputError(f"{grid.source}: no validation window ({len(fi)} forecast, {len(ii)} imputation): the "
                             f"validation days hold {self.periods['val'][1] - self.periods['val'][0]} slots; history "
                             f"{net.history} + horizon {net.horizon} / window {net.window} slots do not fit them (the "
                             "window flags count slots, not days)")
        self.val = {
            "forecast": {**to_torch(forecast_inputs(fw.x[fi], fw.starts[fi] - net.history, self.stats, net.horizon)),
                         "y": torch.as_tensor(fw.y[fi], dtype=torch.float32)},
            "impute": {**to_torch(impute_inputs(iw.truth[ii], iw.mask[ii], iw.starts[ii], self.stats,
                                                net.guide_prior)),
                       "y": torch.as_tensor(iw.truth[ii], dtype=torch.float32)},
        }
        log.info("%s; %d forecast / %d imputation training windows, %d + %d validation windows",
                 grid.describe(), len(self.f_starts), len(self.i_starts), len(fi), len(ii))

    def model_dict(self) -> dict[str, Any]:
        return {"name": "ustsllm", "net": self.cfg.net.to_dict(), "alpha": self.cfg.alpha, "loss": self.cfg.loss}

    def data_info(self) -> dict[str, Any]:
        h = hashlib.sha256(np.ascontiguousarray(self.grid.values).tobytes()).hexdigest()[:16]
        return {"source": self.grid.source, "data": self.grid.data, "shape": list(self.grid.values.shape),
                "grid": [self.grid.height, self.grid.width], "slot_minutes": self.grid.slot_minutes,
                "periods": {k: list(v) for k, v in self.periods.items()}, "fingerprint": h,
                "stats": self.stats.to_dict()}

    def build_model(self) -> nn.Module:
        model = MultiTask(self.cfg.net, self.cfg.alpha, self.cfg.loss)
        log.info("U-STS-LLM: %d trainable of %d parameters", model.net.trainable_parameters(),
                 sum(p.numel() for p in model.parameters()))
        return model

    def batch(self, step: int) -> dict[str, Any]:
        """The batch of ``step``: a pure function of (seed, step), so a resumed run repeats an uninterrupted one."""
        rng = np.random.default_rng([self.cfg.seed, step, 7])
        net, bs = self.cfg.net, self.cfg.batch_size
        s = rng.choice(self.f_starts, bs)
        hist = np.stack([self.z[t - net.history:t] for t in s])
        fut = np.stack([self.z[t:t + net.horizon] for t in s])
        f = {**to_torch(forecast_inputs(hist, s - net.history, self.stats, net.horizon)),
             "y": torch.as_tensor(fut, dtype=torch.float32)}
        s = rng.choice(self.i_starts, bs)
        truth = np.stack([self.z[t:t + net.window] for t in s])
        p = rng.uniform(*splits.A2_P_RANGE, size=(bs, 1, 1))
        mask = rng.random(truth.shape) < p
        i = {**to_torch(impute_inputs(truth, mask, s, self.stats, net.guide_prior)),
             "y": torch.as_tensor(truth, dtype=torch.float32)}
        return {"forecast": f, "impute": i}

    def train_batches(self, start_step: int, d: loop.Dist) -> tuple[Iterator[dict], Callable[[int], dict[str, Any]]]:
        def gen() -> Iterator[dict]:
            step = start_step
            while True:
                yield self.batch(step * d.world + d.rank)
                step += 1
        return gen(), lambda step: {"step": step}

    @torch.no_grad()
    def validate(self, ema: nn.Module, device: torch.device, d: loop.Dist) -> dict[str, float]:
        ema.eval()
        _, parts = ema(self.val)
        return {f"val/{k}": v for k, v in parts.items() if k != "lambda"}


def train(cfg: TrainConfig, *, grid: GridData | None = None) -> Path:
    """Train (or resume) per ``cfg`` on ``grid`` (default: the grid ``cfg.data`` names); returns the last checkpoint."""
    return loop.run(cfg, USTSFamily(cfg, grid))


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m umask.train.models.ustsllm.trainer", description=__doc__.splitlines()[0],
                                formatter_class=HelpFormatter)
    groups = {name: p.add_argument_group(name) for name in (MODEL, DATA, "optimization", "checkpoints and logging",
                                                            "system")}
    add_dataclass_args(p, TrainConfig, groups=groups)
    add_dataclass_args(p, USTSConfig, exclude=("slots_per_day",))          # the network (eqs. 1-14)
    groups["system"].add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def config_from_args(ns: argparse.Namespace) -> TrainConfig:
    spd = 1440 // int(ns.slot_minutes)
    # The window flags count slots; their defaults are the protocol's days at Milan's 10-minute slots (2 days of
    # history, 1 day ahead, 2-day imputation windows). On a grid of another slot length the defaults mean the same
    # days, not the same slot counts (288 hourly slots would be 12 days); a value the user gave stays as given.
    days = {"history": 2, "horizon": 1, "window": 2}
    defaults = {k: USTSConfig.__dataclass_fields__[k].default for k in days}
    scaled = {k: days[k] * spd for k in days if getattr(ns, k, defaults[k]) == defaults[k] and spd != 144}
    net = dataclass_from_args(USTSConfig, ns, slots_per_day=spd, **scaled)
    return dataclass_from_args(TrainConfig, ns, net=net)


def main(argv: Sequence[str] | None = None) -> int:
    return loop.main(argv, build_parser(), config_from_args, train, prog="umask.train.models.ustsllm.trainer")


if __name__ == "__main__":
    raise SystemExit(main())
