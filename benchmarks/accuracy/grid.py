"""Milan grid (real) evaluation harness, PROTOCOL.md section A (numpy only).

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
from pathlib import Path
from typing import Any

import numpy as np

from umask.train.baselines import classical as baselines
from umask.train.common import metrics
from umask.train.data import splits
from umask.train.data.milan import read_internet_matrix

log = logging.getLogger(__name__)

DATASET: str = "milan_5x5_internet (real)"
REPO_ROOT: Path = Path(__file__).resolve().parents[2]
DEFAULT_DATA: Path = REPO_ROOT / "data" / "milan_telecom" / "milan_5x5_internet_10min_30d.csv.gz"
DEFAULT_OUT: str = "benchmarks/results/milan_baselines.json"
PERIOD: int = splits.SLOTS_PER_DAY  # 144 ten-minute slots = one day
SCALE_NOTE: str = (
    "normalized = per-cell z-score with the training period's (slots 0..3455) mean and population std; "
    "raw = dataset units (internet activity per 10-min slot)"
)

ForecastFn = Callable[[np.ndarray, np.ndarray, int], np.ndarray]
"""(history (n, L, cells), starts (n,), horizon) -> (n, horizon, cells), standardized scale."""
ImputeFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""(observed (n, T, cells) NaN where hidden, mask (n, T, cells) True = hidden, starts (n,)) -> (n, T, cells)."""

_DEFAULT_COMMAND = "library call: umask.bench.accuracy.grid.{fn}(matrix, ...)"


# ------------------------------------------------------------------------------------------------
# Baseline model sets
# ------------------------------------------------------------------------------------------------
BASELINE_NOTES: dict[str, str] = {
    "last_value": "A1: repeat last history value; A2: last observed value in the cell, carried forward (backward fill at start)",
    "seasonal_naive": "A1: same slot one day (144 slots) earlier, repeated; A2: nearest observed value in the same cell (ties -> earlier)",
    "linear_interpolation": "per cell linear interpolation between observed entries, constant extrapolation at the ends",
    "historical_average": "mean by time-of-day slot (144 per day) over the training period (slots 0..3455), per cell",
    "all_zero": "0 on the standardized scale = per-cell training mean",
}


def _training_profile(z: np.ndarray, period: int) -> np.ndarray:
    train_end = splits.MILAN_SPLITS["train"][1]
    return baselines.fit_historical_average(z[:train_end], period=period, first_slot=0)


def baseline_forecasters(z_matrix: np.ndarray, *, period: int = PERIOD) -> dict[str, ForecastFn]:
    """The A1 baseline rows as :data:`ForecastFn` callables.

    ``z_matrix``: the standardized (slots, cells) matrix; only its training period (slots
    0..3455) is used, to fit the historical average.
    """
    profile = _training_profile(np.asarray(z_matrix, dtype=np.float64), period)
    return {
        "last_value": lambda h, s, n: baselines.last_value_forecast(h, n),
        "seasonal_naive": lambda h, s, n: baselines.seasonal_naive_forecast(h, n, period=period),
        "historical_average": lambda h, s, n: baselines.historical_average_forecast(profile, s, n),
        "all_zero": lambda h, s, n: baselines.all_zero((h.shape[0], n, h.shape[2])),
    }


def baseline_imputers(z_matrix: np.ndarray, *, period: int = PERIOD) -> dict[str, ImputeFn]:
    """The A2 baseline rows as :data:`ImputeFn` callables (HA fit on the training period only)."""
    profile = _training_profile(np.asarray(z_matrix, dtype=np.float64), period)
    return {
        "last_value": lambda x, m, s: baselines.last_value_impute(x, m),
        "seasonal_naive": lambda x, m, s: baselines.seasonal_naive_impute(x, m),
        "linear_interpolation": lambda x, m, s: baselines.linear_interpolation_impute(x, m),
        "historical_average": lambda x, m, s: baselines.historical_average_impute(x, m, profile, s),
        "all_zero": lambda x, m, s: np.where(m, 0.0, x),
    }


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
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "dataset": DATASET,
        "protocol": "docs/PROTOCOL.md A",
        "task": task,
        "split": split,
        "model": model,
        "window": window,
        "n_windows": int(n_windows),
        "n_entries": int(n_entries),
        "seeds": seeds,
        "metrics": result,
        "scale": SCALE_NOTE,
        "command": command,
    }
    if model in BASELINE_NOTES:
        row["notes"] = BASELINE_NOTES[model]
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


def evaluate_a1(
    matrix: np.ndarray,
    models: Mapping[str, ForecastFn] | None = None,
    *,
    split: splits.Split = "test",
    model_info: Mapping[str, Mapping[str, Any]] | None = None,
    command: str | None = None,
    stride: int = 1,
) -> list[dict[str, Any]]:
    """PROTOCOL A1 (48 h -> 24 h forecasting) on the raw (4320, 25) ``matrix``; one row per model.

    ``models``: name -> :data:`ForecastFn` on the standardized scale (default: the baselines of
    :func:`baseline_forecasters`). ``model_info``: optional per-model extra row fields; a
    ``"seeds"`` entry there replaces the model seed ("n/a" by default). ``command``: recorded in
    every row. ``stride`` > 1 scores every stride-th protocol window only (for slow models; the
    rows say so, and baselines must then be scored with the same stride to compare).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    scaler = splits.fit_scaler(matrix)
    z = scaler.transform(matrix)
    win = splits.forecast_windows(z, split)
    n_protocol = len(win.starts)
    idx = _subset(n_protocol, stride)
    win = splits.ForecastWindows(win.x[idx], win.y[idx], win.starts[idx])
    if models is None:
        models = baseline_forecasters(z)
    n, horizon, cells = win.y.shape
    window = {
        "history": splits.A1_HISTORY,
        "horizon": splits.A1_HORIZON,
        "stride": stride,
        "horizon_starts": _range_text(win.starts),
    }
    if stride > 1:
        window["subset"] = f"every {stride}th of the {n_protocol} protocol windows (indices 0, {stride}, ...)"
    seeds = {"model": "n/a", "masks": "n/a"}
    rows = []
    for name, fn in models.items():
        history = win.x.copy()  # a model cannot alter the shared windows
        pred = _check_prediction(name, fn(history, win.starts.copy(), horizon), (n, horizon, cells))
        rows.append(
            _row(
                task="A1 forecasting (48h -> 24h)",
                split=split,
                model=name,
                window=window,
                n_windows=n,
                n_entries=win.y.size,
                seeds=seeds,
                result=score(pred, win.y, scaler),
                command=command or _DEFAULT_COMMAND.format(fn="evaluate_a1"),
                extra=(model_info or {}).get(name),
            )
        )
    return rows


def evaluate_a2(
    matrix: np.ndarray,
    models: Mapping[str, ImputeFn] | None = None,
    *,
    split: splits.Split = "test",
    model_info: Mapping[str, Mapping[str, Any]] | None = None,
    command: str | None = None,
    stride: int = 1,
) -> list[dict[str, Any]]:
    """PROTOCOL A2 (imputation, 70-80 % hidden) on the raw (4320, 25) ``matrix``; one row per model.

    Uses the protocol masks (seed 1000 + window index). ``models``: name -> :data:`ImputeFn`
    (default: :func:`baseline_imputers`); other arguments as :func:`evaluate_a1`. With
    ``stride`` > 1 the windows keep their protocol index, so their masks are unchanged.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    scaler = splits.fit_scaler(matrix)
    z = scaler.transform(matrix)
    win = splits.imputation_windows(z, split)
    n_protocol = len(win)
    idx = _subset(n_protocol, stride)
    win = splits.ImputationWindows(win.truth[idx], win.mask[idx], win.p[idx], win.starts[idx])
    if models is None:
        models = baseline_imputers(z)
    shape = win.truth.shape
    n_hidden = int(win.mask.sum())
    window = {
        "length": splits.A2_WINDOW,
        "stride": stride,
        "starts": _range_text(win.starts),
        "p_missing": "Uniform(0.70, 0.80) per window",
        "mean_hidden_fraction": float(win.mask.mean()),
    }
    last = int(idx[-1])
    seed_range = f"{splits.A2_SEED_BASE}..{splits.A2_SEED_BASE + last}" + (f" step {stride}" if stride > 1 else "")
    seeds = {
        "model": "n/a",
        "masks": f"{splits.A2_SEED_BASE} + protocol window index i, i in 0..{last}"
        + (f" step {stride}" if stride > 1 else "") + f" ({seed_range})",
        "mask_seed_range": seed_range,
    }
    if stride > 1:
        window["subset"] = f"every {stride}th of the {n_protocol} protocol windows (indices 0, {stride}, ...)"
    observed = np.where(win.mask, np.nan, win.truth)
    rows = []
    for name, fn in models.items():
        pred = _check_prediction(name, fn(observed.copy(), win.mask.copy(), win.starts.copy()), shape)
        rows.append(
            _row(
                task="A2 imputation (70-80% missing)",
                split=split,
                model=name,
                window=window,
                n_windows=len(win),
                n_entries=n_hidden,
                seeds=seeds,
                result=score(pred, win.truth, scaler, win.mask),
                command=command or _DEFAULT_COMMAND.format(fn="evaluate_a2"),
                extra=(model_info or {}).get(name),
            )
        )
    return rows


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
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="milan_5x5_internet_10min_30d.csv(.gz)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON rows; the markdown table goes next to it (.md)")
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--tasks", default="a1,a2", help="comma-separated subset of a1,a2")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "umask.bench.accuracy.grid", *argv])

    tasks = {t.strip().lower() for t in args.tasks.split(",") if t.strip()}
    if not tasks or not tasks <= {"a1", "a2"}:
        parser.error(f"--tasks must be a subset of a1,a2, got {args.tasks!r}")
    matrix = read_internet_matrix(args.data)
    rows: list[dict[str, Any]] = []
    if "a1" in tasks:
        rows += evaluate_a1(matrix, split=args.split, command=command)
    if "a2" in tasks:
        rows += evaluate_a2(matrix, split=args.split, command=command)
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
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    table = markdown_table(rows)
    out.with_suffix(".md").write_text(table)
    print(table, end="")
    print(f"\nwrote {out} and {out.with_suffix('.md')}")
    return table


if __name__ == "__main__":
    raise SystemExit(main())
