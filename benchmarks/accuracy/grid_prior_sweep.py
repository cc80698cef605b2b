"""How recent should the grid prior's slot-of-day profile be? A validation sweep of ``profile_decay`` (issue 10 / 12).

The grid prior (runtime/families/umask/grid_prior.py) that the U-MASK grid DiT and U-STS-LLM's prior channel
refine starts from weekday / weekend slot-of-day profiles of the training days. With ``profile_decay`` < 1
training day d of n weighs ``decay ** (n - 1 - d)``. This sweep scores the A1 prior alone (profile + the level
term, whose constants stay as they are) on the VALIDATION windows for each decay and picks the one with the
lowest validation nMAE, nRMSE breaking ties (both to 1e-4). The test figures are written next to them for the
record; they never choose anything.

A second check does not use the validation days: an expanding-window pass over the last 14 training days (Milan:
days 10-23), each day's A1 windows (every 6th slot) forecast by a prior fit on the days before it. It scores the level prior and, as a
richer candidate, a ridge regression of the horizon's hourly deviation from the profile on the history's mean
deviation over its last 1 h / 6 h / 1 d / 2 d (per lead hour, shared by the cells, fit on the windows before
the day), for the plain and the chosen decay.

    python -m umask.bench.accuracy.grid_prior_sweep [--decays 1,0.95,...] [--out benchmarks/results/grid_prior_sweep.json]
    python -m umask.bench.accuracy.grid_prior_sweep --data my_grid.csv --grid 3x4 --slot-minutes 30 [--first-weekday 0] --out my.json

On your own grid, pass the chosen value to training (``umask train umask --data my_grid.csv ... --profile-decay X``);
on Milan the better prior did not make a better trained model (docs/families/umask_grid.md), so compare both.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from umask.bench.accuracy import grid as harness
from umask.runtime.families.umask.grid_prior import GridPrior
from umask.train.common import metrics
from umask.train.common.checkpoints import atomic_text
from umask.train.data import splits
from umask.train.data.grids import GridData, open_grid
from umask.train.models.umask.grid_prior import first_weekday_of_run

log = logging.getLogger(__name__)

DECAYS: tuple[float, ...] = (1.0, 0.95, 0.925, 0.9, 0.875, 0.85, 0.825, 0.8)
OUT = Path("benchmarks/results/grid_prior_sweep.json")


def sweep(grid: GridData, decays: Sequence[float], first_weekday: int) -> dict[str, object]:
    """{decay: {split: {nmae, nrmse}}} of the A1 prior on the harness's windows of ``grid``, the validation
    choice, and the expanding-window check (module doc)."""
    spec = harness.GridSpec(grid)
    train_end = spec.splits["train"][1]
    windows = {s: splits.forecast_windows(spec.z, s, history=spec.history, horizon=spec.horizon, splits=spec.splits)
               for s in ("val", "test")}
    if not all(windows[s].starts.size for s in windows):
        raise SystemExit(f"{spec.dataset}: the validation or test split holds no A1 window")
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for d in decays:
        prior = GridPrior.fit(spec.z, train_end, spec.period, first_weekday, profile_decay=float(d))
        preds = {split: prior.forecast(fw.x, fw.starts, fw.y.shape[1]) for split, fw in windows.items()}
        rows[str(float(d))] = row = {split: {"nmae": round(metrics.mae(preds[split], fw.y), 4),
                                             "nrmse": round(metrics.rmse(preds[split], fw.y), 4)}
                                     for split, fw in windows.items()}
        log.info("decay %s: %s", d, row)
    chosen = min(rows, key=lambda k: (rows[k]["val"]["nmae"], rows[k]["val"]["nrmse"]))
    n_train = train_end // spec.period
    days = range(max(spec.history // spec.period + 1, n_train - 14), n_train)
    doc: dict[str, object] = {"meta": {"data": (f"{grid.data.upper()} grid {Path(grid.source).name} ({grid.height}x{grid.width}, "
                              f"{grid.slot_minutes}-min slots): PROTOCOL A1 windows of the validation and test splits "
                              f"{spec.splits}, harness z-scores; first weekday {first_weekday} (Monday = 0)"),
                     "what": "the A1 grid prior alone (weekday / weekend slot-of-day profile weighted decay ** (n-1-d) "
                             "over the n training days + 0.5 x the level shift of the history's last quarter day); chosen "
                             "on validation nMAE, nRMSE breaking ties"},
            "decays": rows, "chosen_on_validation": float(chosen)}
    if len(days):
        doc[f"expanding_days_{days[0]}_{days[-1]}"] = expanding(spec.z, spec.period, sorted({1.0, float(chosen)}, reverse=True),
                                                                first_weekday, days, spec.history, spec.horizon)
    else:
        log.warning("%d training days: too few for the expanding-window check (skipped)", n_train)
    return doc


def _deviation_features(prior: GridPrior, x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """(n, cells, 5): the history's mean deviation from the profile over its last hour, 6 hours, day and two days
    (Milan: 6 / 36 / 144 / 288 slots; at least one slot, at most the history), and 1."""
    D, L = prior.slots_per_day, x.shape[1]
    dev = x - prior.profile(starts[:, None] + np.arange(-L, 0)[None, :])                   # (n, L, cells)
    spans = [min(L, max(1, k)) for k in (D // 24, D // 4, D, 2 * D)]
    return np.stack([dev[:, -k:].mean(1) for k in spans] + [np.ones(dev.shape[::2])], -1)


def expanding(z: np.ndarray, slots_per_day: int, decays: Sequence[float], first_weekday: int, days: range,
              history: int, horizon: int, ridge: float = 1.0) -> dict[str, dict[str, float]]:
    """Mean A1 nMAE over ``days`` of the level prior and of the ridge level model, each day forecast from a fit
    on the days before it (module doc); the ridge model's leads are blocks of ``slots_per_day // 24`` slots (an
    hour; one slot on coarser grids)."""
    D = int(slots_per_day)
    per_hour = max(1, D // 24)
    if horizon % per_hour:
        per_hour = 1

    def cut(st: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return z[st[:, None] + np.arange(-history, 0)[None, :]], z[st[:, None] + np.arange(horizon)[None, :]]

    out: dict[str, dict[str, float]] = {}
    for d in decays:
        level, ridge_err = [], []
        for k in days:
            prior = GridPrior.fit(z, k * D, D, first_weekday, profile_decay=float(d))
            st = np.arange(history, k * D - horizon + 1, max(1, D // 48))                    # windows before day k
            x, y = cut(st)
            X = _deviation_features(prior, x, st).reshape(-1, 5)
            dev = y - prior.profile(st[:, None] + np.arange(horizon)[None, :])
            Y = dev.reshape(len(st), horizon // per_hour, per_hour, -1).mean(2).transpose(0, 2, 1).reshape(len(X), -1)
            W = np.linalg.solve(X.T @ X + ridge * np.eye(5), X.T @ Y)                       # (5, lead hours)
            st = np.arange(k * D, (k + 1) * D, max(1, D // 24))
            x, y = cut(st)
            level.append(metrics.mae(prior.forecast(x, st, horizon), y))
            fit = np.repeat(np.einsum("ncf,fh->nhc", _deviation_features(prior, x, st), W), per_hour, axis=1)
            ridge_err.append(metrics.mae(prior.profile(st[:, None] + np.arange(horizon)[None, :]) + fit, y))
        out[str(float(d))] = {"level_prior_nmae": round(float(np.mean(level)), 4),
                              "ridge_level_nmae": round(float(np.mean(ridge_err)), 4)}
        log.info("expanding days %d-%d, decay %s: %s", days[0], days[-1], d, out[str(float(d))])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--decays", default=",".join(str(d) for d in DECAYS), help="comma-separated decays in (0, 1]")
    p.add_argument("--data", default=None, help="slots x cells grid CSV (default: the shipped Milan sample)")
    p.add_argument("--grid", default=None, help="HxW of the CSV's cells (default: a square number of columns)")
    p.add_argument("--slot-minutes", type=int, default=10)
    p.add_argument("--first-weekday", type=int, default=None,
                   help="weekday of slot 0, Monday = 0 (default: Friday for the Milan sample, Monday for a CSV)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    grid = open_grid(args.data, grid=args.grid, slot_minutes=args.slot_minutes)
    first_weekday = first_weekday_of_run({"first_weekday": args.first_weekday}, grid.source)
    try:
        decays = [float(x) for x in args.decays.split(",")]
    except ValueError:
        p.error(f"--decays must be comma-separated numbers in (0, 1], got {args.decays!r}")
    if not all(0.0 < d <= 1.0 for d in decays):
        p.error(f"--decays must lie in (0, 1], got {args.decays!r}")
    doc = sweep(grid, decays, first_weekday)
    given = sys.argv[1:] if argv is None else list(argv)
    doc["meta"]["command"] = " ".join(["python -m umask.bench.accuracy.grid_prior_sweep", *given])
    atomic_text(args.out, json.dumps(doc, indent=1) + "\n")
    log.info("chosen on validation: %s -> %s", doc["chosen_on_validation"], args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
