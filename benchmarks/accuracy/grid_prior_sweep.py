"""How recent should the grid prior's slot-of-day profile be? A validation sweep of ``profile_decay`` (issue 10 / 12).

The grid prior (runtime/families/umask/grid_prior.py) that the U-MASK grid DiT and U-STS-LLM's prior channel
refine starts from weekday / weekend slot-of-day profiles of the training days. With ``profile_decay`` < 1
training day d of n weighs ``decay ** (n - 1 - d)``. This sweep scores the A1 prior alone (profile + the level
term, whose constants stay as they are) on the VALIDATION windows for each decay and picks the one with the
lowest validation nMAE, nRMSE breaking ties (both to 1e-4). The test figures are written next to them for the
record; they never choose anything.

A second check does not use the validation days: an expanding-window pass over training days 10-23, each day's
A1 windows (every 6th slot) forecast by a prior fit on the days before it. It scores the level prior and, as a
richer candidate, a ridge regression of the horizon's hourly deviation from the profile on the history's mean
deviation over its last 1 h / 6 h / 1 d / 2 d (per lead hour, shared by the cells, fit on the windows before
the day), for the plain and the chosen decay.

    python -m umask.bench.accuracy.grid_prior_sweep [--decays 1,0.95,...] [--out benchmarks/results/grid_prior_sweep.json]
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from umask.bench.accuracy import grid as harness
from umask.runtime.families.umask.grid_prior import MILAN_FIRST_WEEKDAY, GridPrior
from umask.train.common.checkpoints import atomic_text
from umask.train.data import splits
from umask.train.data.grids import milan_grid

log = logging.getLogger(__name__)

DECAYS: tuple[float, ...] = (1.0, 0.95, 0.925, 0.9, 0.875, 0.85, 0.825, 0.8)
OUT = Path("benchmarks/results/grid_prior_sweep.json")


def sweep(decays: Sequence[float]) -> dict[str, object]:
    """{decay: {split: {nmae, nrmse}}} of the A1 prior on the harness's Milan windows, and the validation choice."""
    spec = harness.GridSpec(milan_grid())
    train_end = spec.splits["train"][1]
    windows = {s: splits.forecast_windows(spec.z, s, history=spec.history, horizon=spec.horizon, splits=spec.splits)
               for s in ("val", "test")}
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for d in decays:
        prior = GridPrior.fit(spec.z, train_end, spec.period, MILAN_FIRST_WEEKDAY, profile_decay=float(d))
        rows[str(float(d))] = {}
        for split, fw in windows.items():
            err = prior.forecast(fw.x, fw.starts, fw.y.shape[1]) - fw.y                   # (n, horizon, cells)
            rows[str(float(d))][split] = {"nmae": round(float(np.abs(err).mean()), 4),
                                          "nrmse": round(float(np.sqrt((err ** 2).mean())), 4)}
        log.info("decay %s: %s", d, rows[str(float(d))])
    chosen = min(rows, key=lambda k: (rows[k]["val"]["nmae"], rows[k]["val"]["nrmse"]))
    return {"meta": {"command": "python -m umask.bench.accuracy.grid_prior_sweep",
                     "data": "REAL Milan 5x5 internet, PROTOCOL A1 windows of the validation (days 25-27, Mon-Wed) and "
                             "test (days 28-30, Thu-Sat) splits, harness z-scores",
                     "what": "the A1 grid prior alone (weekday / weekend slot-of-day profile weighted decay ** (n-1-d) "
                             "over the n training days + 0.5 x the last 36 slots' level shift); chosen on validation "
                             "nMAE, nRMSE breaking ties"},
            "decays": rows, "chosen_on_validation": float(chosen)}


def _deviation_features(prior: GridPrior, x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """(n, cells, 5): the history's mean deviation from the profile over its last 6 / 36 / 144 / 288 slots, and 1."""
    dev = x - prior.profile(starts[:, None] + np.arange(-x.shape[1], 0)[None, :])          # (n, L, cells)
    return np.stack([dev[:, -k:].mean(1) for k in (6, 36, 144, 288)] + [np.ones(dev.shape[::2])], -1)


def expanding(z: np.ndarray, slots_per_day: int, decays: Sequence[float], days: range = range(10, 24),
              history: int = 288, horizon: int = 144, ridge: float = 1.0) -> dict[str, dict[str, float]]:
    """Mean A1 nMAE over ``days`` of the level prior and of the ridge level model, each day forecast from a fit
    on the days before it (module doc). Milan's lengths: 48 h history, 24 h horizon, 10-min slots (6 a lead hour)."""
    D, per_hour = int(slots_per_day), int(slots_per_day) // 24

    def cut(st: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return z[st[:, None] + np.arange(-history, 0)[None, :]], z[st[:, None] + np.arange(horizon)[None, :]]

    out: dict[str, dict[str, float]] = {}
    for d in decays:
        level, ridge_err = [], []
        for k in days:
            prior = GridPrior.fit(z, k * D, D, MILAN_FIRST_WEEKDAY, profile_decay=float(d))
            st = np.arange(history, k * D - horizon + 1, 3)                                  # windows before day k
            x, y = cut(st)
            X = _deviation_features(prior, x, st).reshape(-1, 5)
            dev = y - prior.profile(st[:, None] + np.arange(horizon)[None, :])
            Y = dev.reshape(len(st), horizon // per_hour, per_hour, -1).mean(2).transpose(0, 2, 1).reshape(len(X), -1)
            W = np.linalg.solve(X.T @ X + ridge * np.eye(5), X.T @ Y)                       # (5, lead hours)
            st = np.arange(k * D, (k + 1) * D, 6)
            x, y = cut(st)
            level.append(np.abs(prior.forecast(x, st, horizon) - y).mean())
            fit = np.repeat(np.einsum("ncf,fh->nhc", _deviation_features(prior, x, st), W), per_hour, axis=1)
            ridge_err.append(np.abs(prior.profile(st[:, None] + np.arange(horizon)[None, :]) + fit - y).mean())
        out[str(float(d))] = {"level_prior_nmae": round(float(np.mean(level)), 4),
                              "ridge_level_nmae": round(float(np.mean(ridge_err)), 4)}
        log.info("expanding days %d-%d, decay %s: %s", days[0], days[-1], d, out[str(float(d))])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--decays", default=",".join(str(d) for d in DECAYS), help="comma-separated decays in (0, 1]")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    doc = sweep([float(x) for x in args.decays.split(",")])
    spec = harness.GridSpec(milan_grid())
    doc["expanding_days_10_23"] = expanding(spec.z, spec.period, sorted({1.0, doc["chosen_on_validation"]}, reverse=True))
    atomic_text(args.out, json.dumps(doc, indent=1) + "\n")
    log.info("chosen on validation: %s -> %s", doc["chosen_on_validation"], args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
