"""Grid evaluation harness, docs/PROTOCOL.md section A, on Milan (real) or any grid (numpy only).

The data is a raw (slots, cells) matrix (Milan's PROTOCOL A matrix, with Milan's fixed periods) or
a :class:`~umask.train.data.grids.GridData` (any H x W grid and slot length, with its own 8:1:1
split over whole days from :meth:`GridData.splits` and windows scaled to its day: A1 2 days of
history -> 1 day, A2 2-day windows). The description below uses Milan's numbers (144 slots a day).

Any model is evaluated on exactly the protocol's windows through a small callable interface, on
the standardized scale (per-cell z-score with the training period's mean / std); the harness
converts back to raw units for the raw-scale metrics.

- A1 forecasting: a :data:`ForecastFn` ``fn(history, starts, horizon) -> prediction`` gets
  ``history`` (n, 288, 25) standardized, ``starts`` (n,) the absolute slot index of each horizon
  start (slot 0 = 2013-11-01 00:00 local, so time-of-day = slot mod 144) and ``horizon`` = 144, and
  returns (n, 144, 25) standardized. Metrics over all 25 x 144 horizon entries of every window.
- A2 imputation: an :data:`ImputeFn` ``fn(observed, mask, starts) -> completed`` gets ``observed``
  (n, 288, 25) standardized with the hidden entries set to NaN (so a model cannot read them),
  ``mask`` (n, 288, 25) bool, True = hidden, and ``starts`` (n,) absolute first slots; returns
  (n, 288, 25) standardized. Metrics over hidden entries only.

The errors are pooled over every evaluated entry of every window (not averaged per window).
Raw-scale error of an entry = standardized error x the cell's training std, so raw MAE is the
std-weighted normalized MAE.

Run the baselines::

    python -m umask.bench.accuracy.grid --out benchmarks/results/milan_baselines.json
    python -m umask.bench.accuracy.grid --data my_grid.csv --grid 3x4 --slot-minutes 60 --out my.json

Before scoring a grid the harness logs a warning (and records it in every row's ``warnings``) when
its statistics make a metric meaningless: a cell whose training std is ~0 (its normalized errors
explode), a cell whose test level sits many training stds away from its training mean, a cell that
is all zero in the scored period (raw errors there say nothing about the model).

To evaluate another model, build a callable and call :func:`evaluate_a1` / :func:`evaluate_a2`
with ``models={"name": fn}`` (and ``model_info={"name": {"seeds": ..., "notes": ...}}`` for
stochastic models: seeds, number of samples, sampler steps).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from umask.runtime.core import gridimpute, gridscale
from umask.runtime.core.errors import InputError
from umask.runtime.families.umask.grid_prior import MILAN_FIRST_WEEKDAY, GridPrior
from umask.train.baselines import classical as baselines
from umask.train.common import metrics
from umask.train.common.checkpoints import atomic_text
from umask.train.data import splits
from umask.train.data.grids import GridData, open_grid

log = logging.getLogger(__name__)

DATASET: str = "milan_5x5_internet (real)"
# the scoreboard's name of the Milan PROTOCOL A test windows (benchmarks/reports/scoreboard.py, the v2 runners)
SCOREBOARD_MILAN: str = "milan 5x5 internet, test split"
# (scoreboard metric, key of score()) of every grid model's v2 rows: normalized and raw-unit (std-weighted) errors
V2_METRICS: tuple[tuple[str, str], ...] = (("nmae", "normalized_mae"), ("nrmse", "normalized_rmse"),
                                          ("mae_raw", "raw_mae"), ("rmse_raw", "raw_rmse"))
REPO_ROOT: Path = Path(__file__).resolve().parents[2]
DEFAULT_DATA: Path = REPO_ROOT / "data" / "milan_telecom" / "milan_5x5_internet_10min_30d.csv.gz"
DEFAULT_OUT: str = "benchmarks/results/milan_baselines.json"
PERIOD: int = splits.SLOTS_PER_DAY  # 144 ten-minute slots = one day
SCALE_NOTE: str = (
    "normalized = per-cell z-score with the training period's (slots 0..3455) mean and population std; "
    "raw = dataset units (internet activity per 10-min slot)"
)
TINY_STD: float = 1e-6  # a training std below TINY_STD * max(1, |mean|) makes the cell's normalized errors meaningless
SHIFT_STDS: float = 10.0  # a scored-period mean further than this many training stds from the training mean

ForecastFn = Callable[[np.ndarray, np.ndarray, int], np.ndarray]
"""(history (n, L, cells), starts (n,), horizon) -> (n, horizon, cells), standardized scale."""
ImputeFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""(observed (n, T, cells) NaN where hidden, mask (n, T, cells) True = hidden, starts (n,)) -> (n, T, cells)."""

_DEFAULT_COMMAND = "library call: umask.bench.accuracy.grid.{fn}(matrix, ...)"


# ------------------------------------------------------------------------------------------------
# The grid being scored: Milan's matrix or any GridData
# ------------------------------------------------------------------------------------------------
class GridSpec:
    """What the harness needs of a grid: raw values, periods, day length, window lengths, the weekday of
    slot 0 (``first_weekday``, Monday = 0: Milan's Friday, else Monday unless given), and the harness's scale
    (:attr:`scaler`, :attr:`z`)."""

    def __init__(self, data: np.ndarray | GridData, first_weekday: int | None = None) -> None:
        if isinstance(data, GridData):
            self.values = data.values
            self.splits: dict[str, tuple[int, int]] = data.splits()
            self.period = data.slots_per_day
            self.history, self.horizon = data.a1_lengths()
            self.window = data.a2_length()
            self.milan = data.source == "milan"
            self.dataset = DATASET if self.milan else (
                f"{Path(data.source).name} {data.height}x{data.width}, {data.slot_minutes}-min slots ({data.data})")
            self.slot_minutes = data.slot_minutes
            # weekday of slot 0 (Monday = 0): the Milan sample starts on a Friday; another grid is read as starting
            # on a Monday, as its trainers do without --first-weekday
            self.first_weekday = MILAN_FIRST_WEEKDAY if self.milan else 0
        else:
            self.values = np.asarray(data, dtype=np.float64)
            self.splits = dict(splits.MILAN_SPLITS)
            self.period = splits.SLOTS_PER_DAY
            self.history, self.horizon, self.window = splits.A1_HISTORY, splits.A1_HORIZON, splits.A2_WINDOW
            self.milan = True
            self.dataset = DATASET
            self.slot_minutes = 10
            self.first_weekday = MILAN_FIRST_WEEKDAY
        if first_weekday is not None:                     # the caller knows better (e.g. --first-weekday)
            self.first_weekday = int(first_weekday)
        if self.values.ndim != 2:
            raise InputError(f"expected a (slots, cells) matrix, got shape {self.values.shape}")
        self.train_end = self.splits["train"][1]

    @cached_property
    def scaler(self) -> splits.Scaler:
        """The harness's per-cell scaler: ``splits.fit_scaler`` of the training period (no floor)."""
        return splits.fit_scaler(self.values, splits=self.splits)

    @cached_property
    def z(self) -> np.ndarray:
        """The (slots, cells) matrix standardized with :attr:`scaler` (what every model is given)."""
        return self.scaler.transform(self.values)

    @property
    def scale_note(self) -> str:
        if self.milan:
            return SCALE_NOTE
        return (f"normalized = per-cell z-score with the training period's (slots 0..{self.train_end - 1}) mean and "
                f"population std; raw = dataset units (activity per {self.slot_minutes}-min slot)")

    def notes(self) -> dict[str, str]:
        """BASELINE_NOTES with this grid's day length and training period."""
        if self.milan:
            return dict(BASELINE_NOTES)
        return {k: v.replace("144 slots", f"{self.period} slots").replace("144 per day", f"{self.period} per day")
                .replace("slots 0..3455", f"slots 0..{self.train_end - 1}") for k, v in BASELINE_NOTES.items()}


def grid_warnings(values: np.ndarray, periods: Mapping[str, tuple[int, int]], split: str = "test") -> list[str]:
    """Statistics of a grid that make a metric meaningless, as messages (each also logged).

    - a cell whose training std is tiny (<= TINY_STD * max(1, |mean|)): its normalized errors are
      divided by ~0 (the scaler uses std 1 when it is exactly 0);
    - a cell whose mean over ``split`` lies more than SHIFT_STDS training stds from its training
      mean: its normalized errors are dominated by the shift, not by the model;
    - a cell that is all zero over ``split``: its raw errors only measure how far from 0 a model is.
    """
    values = np.asarray(values, dtype=np.float64)
    train = values[: periods["train"][1]]
    lo, hi = periods[split]
    scored = values[lo:hi]
    mean, std = train.mean(axis=0), train.std(axis=0)
    out = []
    tiny = np.flatnonzero(std <= TINY_STD * np.maximum(1.0, np.abs(mean)))
    if len(tiny):
        out.append(f"cells {tiny.tolist()} have a training std of ~0 ({std[tiny].tolist()}): their normalized "
                   "errors are meaningless; read the raw metrics")
    ok = np.setdiff1d(np.arange(values.shape[1]), tiny)
    if len(ok) and len(scored):
        shift = np.abs(scored[:, ok].mean(axis=0) - mean[ok]) / std[ok]
        far = ok[shift > SHIFT_STDS]
        if len(far):
            out.append(f"cells {far.tolist()}: the {split} mean is more than {SHIFT_STDS:g} training stds from the "
                       "training mean; their normalized errors measure the shift, not the model")
    if len(scored):
        zero = np.flatnonzero(np.all(scored == 0, axis=0))
        if len(zero):
            out.append(f"cells {zero.tolist()} are all zero in the {split} period: their errors only say how far "
                       "from 0 a model predicts")
    for msg in out:
        log.warning("%s", msg)
    return out


# ------------------------------------------------------------------------------------------------
# Baseline model sets
# ------------------------------------------------------------------------------------------------
BASELINE_NOTES: dict[str, str] = {
    "last_value": "A1: repeat last history value; A2: last observed value in the cell, carried forward (backward fill at start)",
    "seasonal_naive": "A1: same slot one day (144 slots) earlier, repeated; A2: nearest observed value in the same cell (ties -> earlier)",
    "linear_interpolation": "per cell linear interpolation between observed entries, constant extrapolation at the ends",
    "historical_average": "mean by time-of-day slot (144 per day) over the training period (slots 0..3455), per cell",
    "all_zero": "0 on the standardized scale = per-cell training mean",
    "profile_level": "A1: weekday / weekend slot-of-day mean profile of the training days (slots 0..3455) + 0.5 x the "
                     "history's mean gap to it over the last quarter day, held over the horizon (the grid prior "
                     "that the U-MASK grid model and U-STS-LLM start from); our addition",
    "profile_median_level": "A1: as profile_level with the per-slot median of the training days instead of the mean "
                            "(the MAE-optimal level of a slot for these bursty counts); our addition",
    "lowrank_interpolation": "0.5 x rank-5 completion of the window's slots x cells matrix (iterative truncated "
                             "SVD, 10 iterations from the interpolation) + 0.5 x linear interpolation; rank, share "
                             "and iterations chosen on the validation windows (choose_lowrank); our addition",
    "profile_lowrank_interpolation": "0.6 x lowrank_interpolation + 0.4 x (weekday / weekend slot-of-day profile of "
                                     "the training days + lowrank_interpolation of the window's deviation from that "
                                     "profile); share chosen on the validation windows (choose_profile_share); our "
                                     "addition",
}


def _training_profile(z: np.ndarray, period: int, train_end: int | None = None) -> np.ndarray:
    train_end = splits.MILAN_SPLITS["train"][1] if train_end is None else int(train_end)
    return baselines.fit_historical_average(z[:train_end], period=period, first_slot=0)


def baseline_forecasters(
    z_matrix: np.ndarray, *, period: int = PERIOD, train_end: int | None = None,
    first_weekday: int = MILAN_FIRST_WEEKDAY,
) -> dict[str, ForecastFn]:
    """The A1 baseline rows as :data:`ForecastFn` callables.

    ``z_matrix``: the standardized (slots, cells) matrix; only its training period (slots
    0..train_end-1; default Milan's 0..3455) is used, to fit the profiles. ``period``: slots per day;
    ``first_weekday``: weekday of slot 0 (Monday = 0; default the Milan sample's Friday).
    """
    z = np.asarray(z_matrix, dtype=np.float64)
    end = splits.MILAN_SPLITS["train"][1] if train_end is None else int(train_end)
    profile = _training_profile(z, period, end)
    priors = {name: GridPrior.of_profiles(*gridscale.day_type_profiles(z, end, period, first_weekday, statistic=stat),
                                          period, first_weekday)
              for name, stat in (("profile_level", "mean"), ("profile_median_level", "median"))}
    return {
        "last_value": lambda h, s, n: baselines.last_value_forecast(h, n),
        "seasonal_naive": lambda h, s, n: baselines.seasonal_naive_forecast(h, n, period=period),
        "historical_average": lambda h, s, n: baselines.historical_average_forecast(profile, s, n),
        "all_zero": lambda h, s, n: baselines.all_zero((h.shape[0], n, h.shape[2])),
        **{name: (lambda h, s, n, p=p: p.forecast(h, s, n)) for name, p in priors.items()},
    }


def baseline_imputers(
    z_matrix: np.ndarray, *, period: int = PERIOD, train_end: int | None = None,
    first_weekday: int = MILAN_FIRST_WEEKDAY,
) -> dict[str, ImputeFn]:
    """The A2 baseline rows as :data:`ImputeFn` callables (HA and the day-type profiles fit on the training period
    only; ``first_weekday`` as :func:`baseline_forecasters`)."""
    z = np.asarray(z_matrix, dtype=np.float64)
    end = splits.MILAN_SPLITS["train"][1] if train_end is None else int(train_end)
    profile = _training_profile(z, period, end)
    day_type = GridPrior.fit(z, end, period, first_weekday, a2="lowrank_profile")
    return {
        "last_value": lambda x, m, s: baselines.last_value_impute(x, m),
        "seasonal_naive": lambda x, m, s: baselines.seasonal_naive_impute(x, m),
        "linear_interpolation": lambda x, m, s: baselines.linear_interpolation_impute(x, m),
        "historical_average": lambda x, m, s: baselines.historical_average_impute(x, m, profile, s),
        "all_zero": lambda x, m, s: np.where(m, 0.0, x),
        "lowrank_interpolation": lambda x, m, s: baselines.lowrank_interpolation_impute(x, m),
        "profile_lowrank_interpolation": lambda x, m, s: day_type.impute(x, m, s),
    }


LOWRANK_GRID: dict[str, tuple[float, ...]] = {"rank": (2, 3, 5, 8, 12), "share": (0.3, 0.5, 0.7),
                                              "iters": (10, 20, 30, 50)}


def choose_lowrank(grid: np.ndarray | GridData, split: splits.Split = "val") -> dict[str, Any]:
    """nMAE of :func:`classical.lowrank_interpolation_impute` for every (rank, share, iters) of LOWRANK_GRID on
    ``split``'s A2 windows and masks (the protocol's rule, seed 1000 + window index), and the best triple. The
    frozen LOWRANK_RANK / LOWRANK_SHARE / LOWRANK_ITERS come from this on the validation windows; never run it
    on test. About 20 s on Milan."""
    spec = GridSpec(grid)
    win = splits.imputation_windows(spec.z, split, window=spec.window, splits=spec.splits)
    if not len(win):
        raise _no_windows("A2", spec, split, spec.window)
    observed = np.where(win.mask, 0.0, win.truth)
    li = baselines.linear_interpolation_impute(observed, win.mask)
    err = lambda pred: float(np.abs(pred - win.truth)[win.mask].mean())  # noqa: E731
    table: dict[str, float] = {"linear_interpolation": err(li)}
    best: tuple[float, dict[str, float]] = (np.inf, {})
    for rank in LOWRANK_GRID["rank"]:
        for iters in LOWRANK_GRID["iters"]:
            lr = baselines.lowrank_impute(observed, win.mask, rank=int(rank), iters=int(iters))
            for share in LOWRANK_GRID["share"]:
                v = table[f"rank{rank}_iters{iters}_share{share}"] = err(share * lr + (1.0 - share) * li)
                if v < best[0]:
                    best = (v, {"rank": int(rank), "share": float(share), "iters": int(iters)})
    return {"split": split, "n_windows": len(win), "nmae": table, "chosen": best[1],
            "frozen": {"rank": baselines.LOWRANK_RANK, "share": baselines.LOWRANK_SHARE,
                       "iters": baselines.LOWRANK_ITERS}}


PROFILE_SHARES: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)


def choose_profile_share(grid: np.ndarray | GridData, split: splits.Split = "val") -> dict[str, Any]:
    """nMAE of ``gridimpute.profile_lowrank_impute`` for every share of PROFILE_SHARES on ``split``'s A2 windows and
    masks, and the best share; the frozen PROFILE_LOWRANK_SHARE comes from this on the validation windows (never
    run it on test). The completions keep the frozen LOWRANK_* constants. About 10 s on Milan."""
    spec = GridSpec(grid)
    win = splits.imputation_windows(spec.z, split, window=spec.window, splits=spec.splits)
    if not len(win):
        raise _no_windows("A2", spec, split, spec.window)
    prior = GridPrior.fit(spec.z, spec.train_end, spec.period, spec.first_weekday)
    observed = np.where(win.mask, 0.0, win.truth)
    prof = prior.profile(win.starts[:, None] + np.arange(spec.window)[None, :])
    plain, resid = gridimpute.profile_lowrank_parts(observed, win.mask, prof)       # independent of the share
    table = {f"share{share}": float(np.abs(share * plain + (1.0 - share) * resid - win.truth)[win.mask].mean())
             for share in PROFILE_SHARES}
    chosen = min(PROFILE_SHARES, key=lambda sh: table[f"share{sh}"])
    return {"split": split, "n_windows": len(win), "nmae": table, "chosen": {"share": float(chosen)},
            "frozen": {"share": gridimpute.PROFILE_LOWRANK_SHARE}}


def baseline_models(task: str, spec: GridSpec, *, suffix: str = "", note: str = ""
                    ) -> tuple[dict[str, Callable[..., np.ndarray]], dict[str, dict[str, Any]]]:
    """(models, model_info) of the baselines of ``task`` ("a1" / "a2") on ``spec``'s grid (fit on
    its training period): names ``<baseline><suffix>``, notes = the grid's baseline note + ``note``
    (e.g. ``"@subset"`` / ``"; same windows"`` when another model is scored on a stride subset)."""
    if task.lower() == "a1":
        base = baseline_forecasters(spec.z, period=spec.period, train_end=spec.train_end,
                                    first_weekday=spec.first_weekday)
    else:
        base = baseline_imputers(spec.z, period=spec.period, train_end=spec.train_end, first_weekday=spec.first_weekday)
    notes = spec.notes()
    return ({name + suffix: fn for name, fn in base.items()},
            {name + suffix: {"notes": notes[name] + note} for name in base})


# ------------------------------------------------------------------------------------------------
# Scoring
# ------------------------------------------------------------------------------------------------
def _check_prediction(name: str, pred: Any, shape: tuple[int, ...]) -> np.ndarray:
    pred = np.asarray(pred, dtype=np.float64)
    if pred.shape != shape:
        raise ValueError(f"model {name!r} returned shape {pred.shape}, expected {shape}")
    return pred


def score(
    pred_z: np.ndarray, truth_z: np.ndarray, scaler: splits.Scaler, mask: np.ndarray | None = None
) -> dict[str, float]:
    """Normalized and raw-scale MAE / RMSE, pooled over all (or the masked) entries.

    ``pred_z``, ``truth_z``: (..., cells) standardized; raw values come from the scaler's inverse.
    """
    pred_raw = scaler.inverse_transform(pred_z)
    truth_raw = scaler.inverse_transform(truth_z)
    return {
        "normalized_mae": metrics.mae(pred_z, truth_z, mask),
        "normalized_rmse": metrics.rmse(pred_z, truth_z, mask),
        "raw_mae": metrics.mae(pred_raw, truth_raw, mask),
        "raw_rmse": metrics.rmse(pred_raw, truth_raw, mask),
    }


def _range_text(values: np.ndarray) -> str:
    return f"{int(values[0])}..{int(values[-1])}" if len(values) else "none"


def _row(
    *,
    task: str,
    split: str,
    model: str,
    window: dict[str, Any],
    n_windows: int,
    n_entries: int,
    seeds: dict[str, Any],
    result: dict[str, float],
    command: str,
    extra: Mapping[str, Any] | None,
    spec: GridSpec | None = None,
    warnings: Sequence[str] = (),
) -> dict[str, Any]:
    notes = BASELINE_NOTES if spec is None else spec.notes()
    row: dict[str, Any] = {
        "dataset": DATASET if spec is None else spec.dataset,
        "protocol": "docs/PROTOCOL.md A",
        "task": task,
        "split": split,
        "model": model,
        "window": window,
        "n_windows": int(n_windows),
        "n_entries": int(n_entries),
        "seeds": seeds,
        "metrics": result,
        "scale": SCALE_NOTE if spec is None else spec.scale_note,
        "command": command,
    }
    if model in notes:
        row["notes"] = notes[model]
    if warnings:
        row["warnings"] = list(warnings)
    if extra:
        extra = dict(extra)
        if "seeds" in extra:
            row["seeds"] = {**seeds, "model": extra.pop("seeds")}
        row.update(extra)
    return row


# ------------------------------------------------------------------------------------------------
# A1 / A2
# ------------------------------------------------------------------------------------------------
def _subset(n: int, stride: int) -> np.ndarray:
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return np.arange(0, n, stride)


def _no_windows(task: str, spec: GridSpec, split: str, need: int) -> InputError:
    lo, hi = spec.splits[split]
    return InputError(
        f"{task}: the {split} period of this grid (slots {lo}..{hi - 1}, {(hi - lo) // spec.period} days) holds no "
        f"window of {need} slots; use a longer grid (8:1:1 over whole days: {split} gets 10 % of the days)"
    )


def _subset_note(window: dict[str, Any], stride: int, n_protocol: int) -> dict[str, Any]:
    if stride > 1:
        window["subset"] = f"every {stride}th of the {n_protocol} protocol windows (indices 0, {stride}, ...)"
    return window


def _score_models(models: Mapping[str, Callable[..., np.ndarray]], predict: Callable[[Callable[..., np.ndarray]], Any],
                  truth: np.ndarray, mask: np.ndarray | None, *, task: str, fn_name: str, spec: GridSpec,
                  **row: Any) -> list[dict[str, Any]]:
    """One row per model: ``predict(fn)`` checked against ``truth``'s shape and scored (over ``mask``
    when given); ``row``: the other :func:`_row` fields (split, window, n_windows, seeds, warnings,
    command, model_info)."""
    model_info, command = row.pop("model_info"), row.pop("command")
    rows = []
    for name, fn in models.items():
        pred = _check_prediction(name, predict(fn), truth.shape)
        rows.append(_row(task=task, model=name, n_entries=truth.size if mask is None else int(mask.sum()),
                         result=score(pred, truth, spec.scaler, mask),
                         command=command or _DEFAULT_COMMAND.format(fn=fn_name),
                         extra=(model_info or {}).get(name), spec=spec, **row))
    return rows


def evaluate_a1(
    matrix: np.ndarray | GridData,
    models: Mapping[str, ForecastFn] | None = None,
    *,
    split: splits.Split = "test",
    model_info: Mapping[str, Mapping[str, Any]] | None = None,
    command: str | None = None,
    stride: int = 1,
) -> list[dict[str, Any]]:
    """PROTOCOL A1 (48 h -> 24 h forecasting) on the raw (4320, 25) ``matrix``; one row per model.

    ``matrix`` may be any :class:`GridData` instead: its own periods (``GridData.splits()``) and
    windows of 2 days -> 1 day of its slots are used. ``models``: name -> :data:`ForecastFn` on the standardized scale (default: the baselines of
    :func:`baseline_forecasters`). ``model_info``: optional per-model extra row fields; a
    ``"seeds"`` entry there replaces the model seed ("n/a" by default). ``command``: recorded in
    every row. ``stride`` > 1 scores every stride-th protocol window only (for slow models; the
    rows say so, and baselines must then be scored with the same stride to compare).
    """
    spec = GridSpec(matrix)
    warnings = grid_warnings(spec.values, spec.splits, split)
    z = spec.z
    win = splits.forecast_windows(z, split, history=spec.history, horizon=spec.horizon, splits=spec.splits)
    n_protocol = len(win.starts)
    if not n_protocol:
        raise _no_windows("A1", spec, split, spec.horizon)
    idx = _subset(n_protocol, stride)
    win = splits.ForecastWindows(win.x[idx], win.y[idx], win.starts[idx])
    if models is None:
        models = baseline_forecasters(z, period=spec.period, train_end=spec.train_end, first_weekday=spec.first_weekday)
    window = _subset_note({
        "history": spec.history,
        "horizon": spec.horizon,
        "stride": stride,
        "horizon_starts": _range_text(win.starts),
    }, stride, n_protocol)
    # copies: a model cannot alter the shared windows
    return _score_models(models, lambda fn: fn(win.x.copy(), win.starts.copy(), win.y.shape[1]), win.y, None,
                         task="A1 forecasting (48h -> 24h)", fn_name="evaluate_a1", spec=spec, split=split,
                         window=window, n_windows=len(win.starts), seeds={"model": "n/a", "masks": "n/a"},
                         warnings=warnings, command=command, model_info=model_info)


def evaluate_a2(
    matrix: np.ndarray | GridData,
    models: Mapping[str, ImputeFn] | None = None,
    *,
    split: splits.Split = "test",
    model_info: Mapping[str, Mapping[str, Any]] | None = None,
    command: str | None = None,
    stride: int = 1,
) -> list[dict[str, Any]]:
    """PROTOCOL A2 (imputation, 70-80 % hidden) on the raw (4320, 25) ``matrix``; one row per model.

    Uses the protocol masks (seed 1000 + window index). ``models``: name -> :data:`ImputeFn`
    (default: :func:`baseline_imputers`); other arguments (a :class:`GridData` too) as
    :func:`evaluate_a1`; windows are 2 days of the grid's slots. With
    ``stride`` > 1 the windows keep their protocol index, so their masks are unchanged.
    """
    spec = GridSpec(matrix)
    warnings = grid_warnings(spec.values, spec.splits, split)
    z = spec.z
    win = splits.imputation_windows(z, split, window=spec.window, splits=spec.splits)
    n_protocol = len(win)
    if not n_protocol:
        raise _no_windows("A2", spec, split, spec.window)
    idx = _subset(n_protocol, stride)
    win = splits.ImputationWindows(win.truth[idx], win.mask[idx], win.p[idx], win.starts[idx])
    if models is None:
        models = baseline_imputers(z, period=spec.period, train_end=spec.train_end, first_weekday=spec.first_weekday)
    window = _subset_note({
        "length": spec.window,
        "stride": stride,
        "starts": _range_text(win.starts),
        "p_missing": "Uniform(0.70, 0.80) per window",
        "mean_hidden_fraction": float(win.mask.mean()),
    }, stride, n_protocol)
    last = int(idx[-1])
    seed_range = f"{splits.A2_SEED_BASE}..{splits.A2_SEED_BASE + last}" + (f" step {stride}" if stride > 1 else "")
    seeds = {
        "model": "n/a",
        "masks": f"{splits.A2_SEED_BASE} + protocol window index i, i in 0..{last}"
        + (f" step {stride}" if stride > 1 else "") + f" ({seed_range})",
        "mask_seed_range": seed_range,
    }
    observed = np.where(win.mask, np.nan, win.truth)
    return _score_models(models, lambda fn: fn(observed.copy(), win.mask.copy(), win.starts.copy()), win.truth,
                         win.mask, task="A2 imputation (70-80% missing)", fn_name="evaluate_a2", spec=spec,
                         split=split, window=window, n_windows=len(win), seeds=seeds, warnings=warnings,
                         command=command, model_info=model_info)


def evaluate(task: str, matrix: np.ndarray | GridData, models: Mapping[str, Any] | None = None,
             **kw: Any) -> list[dict[str, Any]]:
    """:func:`evaluate_a1` (``task`` "a1") or :func:`evaluate_a2` ("a2") with the same arguments."""
    fns = {"a1": evaluate_a1, "a2": evaluate_a2}
    if task.lower() not in fns:
        raise InputError(f"task must be a1 or a2, got {task!r}")
    return fns[task.lower()](matrix, models, **kw)


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------
def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table of result rows (one line per task x model), with a provenance header."""
    lines = []
    if rows:
        lines.append(f"Dataset: {rows[0]['dataset']}; split: {rows[0]['split']}; {rows[0]['scale']}.")
        lines.append(f"Command: `{rows[0]['command']}`")
        lines.append("")
    lines.append("| task | model | windows | entries | seeds | norm MAE | norm RMSE | raw MAE | raw RMSE |")
    lines.append("|---|---|---:|---:|---|---:|---:|---:|---:|")
    for r in rows:
        m = r["metrics"]
        masks = r["seeds"].get("mask_seed_range", r["seeds"]["masks"])
        seeds = f"model {r['seeds']['model']}; masks {masks}"
        lines.append(
            f"| {r['task']} | {r['model']} | {r['n_windows']} | {r['n_entries']} | {seeds} | "
            f"{m['normalized_mae']:.4f} | {m['normalized_rmse']:.4f} | {m['raw_mae']:.2f} | {m['raw_rmse']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: evaluate the baselines on A1 and A2, write JSON rows and a markdown table, print the table."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m umask.bench.accuracy.grid", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA),
                        help="slots x cells CSV (default: the shipped Milan 5x5 matrix, PROTOCOL A)")
    parser.add_argument("--grid", default=None, help="HxW of the cells (needed when the cell count is not a square)")
    parser.add_argument("--slot-minutes", type=int, default=10, help="minutes per row (divides 1440)")
    parser.add_argument("--adjacency", default=None, help="cells x cells 0/1 matrix or a,b edge-list CSV")
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON rows; the markdown table goes next to it (.md)")
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--tasks", default="a1,a2", help="comma-separated subset of a1,a2")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "umask.bench.accuracy.grid", *argv])

    tasks = {t.strip().lower() for t in args.tasks.split(",") if t.strip()}
    if not tasks or not tasks <= {"a1", "a2"}:
        parser.error(f"--tasks must be a subset of a1,a2, got {args.tasks!r}")
    grid = open_grid(args.data, grid=args.grid, slot_minutes=args.slot_minutes, adjacency=args.adjacency)
    rows: list[dict[str, Any]] = []
    if "a1" in tasks:
        rows += evaluate_a1(grid, split=args.split, command=command)
    if "a2" in tasks:
        a2 = evaluate_a2(grid, split=args.split, command=command)
        for r in a2:
            if r["model"] == "lowrank_interpolation":   # how its constants were chosen (validation windows)
                r["selection"] = choose_lowrank(grid)
            elif r["model"] == "profile_lowrank_interpolation":
                r["selection"] = choose_profile_share(grid)
        rows += a2
    write_report(rows, Path(args.out), args.data)
    return 0


def write_report(rows: list[dict[str, Any]], out: Path, data: str | Path) -> str:
    """Tag every row with the data file (repo-relative when inside the repo), write the JSON rows to
    ``out`` and the markdown table next to it (``.md``), print the table and return it."""
    data_path = Path(data).resolve()
    try:
        data_text = str(data_path.relative_to(REPO_ROOT))
    except ValueError:
        data_text = str(data_path)
    for r in rows:
        r["data"] = data_text
    table = markdown_table(rows)
    write_rows(rows, out, table)
    return table


def write_rows(rows: Sequence[Mapping[str, Any]], out: Path, table: str) -> None:
    """Write the JSON rows to ``out`` and ``table`` (markdown) next to it (``.md``), each atomically,
    then print the table and where both went."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_text(out, json.dumps(list(rows), indent=2, default=str) + "\n")
    atomic_text(out.with_suffix(".md"), table)
    print(table, end="")
    print(f"\nwrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    raise SystemExit(main())
