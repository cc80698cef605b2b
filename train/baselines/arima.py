"""ARIMA baseline (statsmodels SARIMAX) for forecasting and, via the Kalman smoother, imputation.

Common interface of the learned baselines (``arima``, ``patchtst``, ``csdi``)
------------------------------------------------------------------------------
Every learned baseline works on stacks of windows of standardized series, shape ``(n, L, N)``
(n windows, L time slots, N series: the 25 Milan cells, or later the channels / coordinates of a
per-user tensor), and exposes

- ``fit(...) -> model``: trains / fits on the *training period only* (a ``(T, N)`` standardized
  matrix; PatchTST and CSDI also take a validation segment for early stopping);
- ``forecast_fn(model) -> ForecastFn``: ``fn(history (n, L, N), starts (n,), horizon) -> (n, horizon, N)``;
  ``starts`` are the absolute slot indices of the first *horizon* slot (time of day =
  ``slot mod period``); the history may contain NaN (= missing);
- ``impute_fn(model) -> ImputeFn`` (where supported): ``fn(observed (n, T, N) NaN at hidden,
  mask (n, T, N) bool True = hidden, starts (n,) absolute first slots) -> (n, T, N)``; observed
  entries are returned unchanged.

These are exactly :data:`umask.bench.accuracy.grid.ForecastFn` / ``ImputeFn``, so the callables plug
into :func:`~umask.bench.accuracy.grid.evaluate_a1` / :func:`~umask.bench.accuracy.grid.evaluate_a2` and
into a per-user harness with the same array conventions (set ``period`` to 96 for 15-min slots).

What this module does
---------------------
Seasonality: a seasonal ARIMA with a daily period of 144 slots (a 144-lag seasonal difference or
seasonal AR term) makes the state vector ~150-300 long, so every Kalman step costs O(m^2) - too slow
for 289 x 25 windows, and with only 24 training days the seasonal parameters are poorly determined.
Instead the series is *deseasonalized* with the training period's time-of-day profile (the
``historical_average`` baseline: per-cell mean by slot-of-day over slots 0..3455), and a
low-order, stationary ARMA(p, 0, q) without constant models the residual ``r_t = z_t -
profile[t mod 144]`` (its training mean is exactly 0). The forecast is ``profile + ARMA forecast
of r``: at short horizons it carries the current deviation from the usual daily shape forward, and
it reverts to the historical average as the horizon grows (the ARMA is stationary).

Fitting: per series (cell), each order of a small grid (default p <= 3, q <= 2, d = 0) is fit by
exact Gaussian maximum likelihood (statsmodels SARIMAX, state-space form, stationary and invertible
parameters enforced) on the whole training-period residual, and the order with the lowest AIC is
kept. Nothing after the training period is used.

Forecasting a window: the fitted parameters are fixed; the Kalman filter is run on the window's
own 288-slot history residual (initialized at the stationary distribution, missing values allowed)
and the 144-step forecast is read off. No re-estimation per window, so the 289 x 25 A1 windows take
about a minute on one core.

Imputation (A2): the same fixed-parameter model, run through the Kalman *smoother* over the window
with the hidden entries as missing observations; the hidden entries get profile + smoothed residual
(the conditional mean given all observed entries of that cell in the window). Cells are treated
independently (no spatial coupling).

Run on Milan (PROTOCOL A)::

    python -m umask.train.baselines.arima --out benchmarks/results/milan_arima.json
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["ArimaConfig", "ArimaModel", "fit", "forecast", "impute", "forecast_fn", "impute_fn", "main"]

DEFAULT_ORDERS: tuple[tuple[int, int, int], ...] = (
    (1, 0, 0), (2, 0, 0), (3, 0, 0),
    (1, 0, 1), (2, 0, 1), (3, 0, 1),
    (1, 0, 2), (2, 0, 2),
)


@dataclass(frozen=True)
class ArimaConfig:
    """ARIMA settings.

    ``period``: slots per day (144 for Milan, 96 for 15-min per-user tensors).
    ``deseasonalize``: subtract the training time-of-day profile before the ARMA (see module doc).
    ``orders``: candidate (p, d, q) orders; the lowest ``criterion`` (aic / bic) per series wins.
    ``first_slot``: absolute slot index of the first training row (time of day = slot mod period).
    """

    period: int = 144
    deseasonalize: bool = True
    orders: tuple[tuple[int, int, int], ...] = DEFAULT_ORDERS
    criterion: str = "aic"
    first_slot: int = 0
    maxiter: int = 200


@dataclass
class ArimaModel:
    """A fitted per-series ARIMA: order and parameters of series j in ``orders[j]``, ``params[j]``
    (SARIMAX order: ar, ma, sigma2); ``profile`` (period, N) or None."""

    cfg: ArimaConfig
    orders: list[tuple[int, int, int]]
    params: list[np.ndarray]
    profile: np.ndarray | None
    criteria: list[float] = field(default_factory=list)
    fit_seconds: float = 0.0

    @property
    def n_series(self) -> int:
        return len(self.orders)

    def select(self, cols: Sequence[int]) -> ArimaModel:
        """The model of series ``cols`` only (same orders, parameters and profile columns), e.g. to
        forecast the active subset of a per-user tensor's series (benchmarks/user_peers.py)."""
        cols = [int(c) for c in cols]
        return ArimaModel(cfg=self.cfg, orders=[self.orders[c] for c in cols], params=[self.params[c] for c in cols],
                          profile=None if self.profile is None else self.profile[:, cols],
                          criteria=[self.criteria[c] for c in cols] if self.criteria else [],
                          fit_seconds=self.fit_seconds)


# ------------------------------------------------------------------------------------------------
# Fitting
# ------------------------------------------------------------------------------------------------
def _sarimax(endog: np.ndarray, order: tuple[int, int, int]):
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    return SARIMAX(endog, order=order, trend="n", enforce_stationarity=True, enforce_invertibility=True)


def _time_of_day_profile(train: np.ndarray, period: int, first_slot: int) -> np.ndarray:
    phase = (first_slot + np.arange(train.shape[0])) % period
    sums = np.zeros((period, train.shape[1]))
    counts = np.zeros((period, train.shape[1]))
    ok = np.isfinite(train)
    np.add.at(sums, phase, np.where(ok, train, 0.0))
    np.add.at(counts, phase, ok.astype(np.float64))
    overall = np.nanmean(train, axis=0, keepdims=True)
    return np.where(counts > 0, sums / np.maximum(counts, 1.0), overall)


def _profile_at(model: ArimaModel, slots: np.ndarray) -> np.ndarray:
    """Profile values at absolute slots (..., T) -> (..., T, N); zeros without deseasonalizing."""
    if model.profile is None:
        return np.zeros((*slots.shape, model.n_series))
    return model.profile[np.asarray(slots, dtype=np.int64) % model.profile.shape[0]]


def fit(train: np.ndarray, cfg: ArimaConfig | None = None) -> ArimaModel:
    """Fit one ARIMA per series on a standardized training matrix ``train`` (T, N) (NaN allowed).

    Only the rows passed are used: the caller cuts the training period (Milan: slots 0..3455).
    """
    cfg = cfg or ArimaConfig()
    train = np.asarray(train, dtype=np.float64)
    if train.ndim != 2:
        raise ValueError(f"train must be (T, N), got {train.shape}")
    if cfg.criterion not in ("aic", "bic"):
        raise ValueError(f"criterion must be aic or bic, got {cfg.criterion!r}")
    t0 = time.perf_counter()
    profile = _time_of_day_profile(train, cfg.period, cfg.first_slot) if cfg.deseasonalize else None
    resid = train - profile[(cfg.first_slot + np.arange(train.shape[0])) % cfg.period] if profile is not None else train
    orders, params, crits = [], [], []
    for j in range(train.shape[1]):
        best = None
        for order in cfg.orders:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    res = _sarimax(resid[:, j], tuple(order)).fit(disp=False, maxiter=cfg.maxiter)
                except (np.linalg.LinAlgError, ValueError) as exc:  # pragma: no cover - rare
                    log.warning("series %d order %s failed: %s", j, order, exc)
                    continue
            crit = float(getattr(res, cfg.criterion))
            if np.isfinite(crit) and (best is None or crit < best[0]):
                best = (crit, tuple(order), np.asarray(res.params, dtype=np.float64))
        if best is None:
            raise RuntimeError(f"no ARIMA order could be fit for series {j}")
        crits.append(best[0])
        orders.append(best[1])
        params.append(best[2])
        log.info("series %d: order %s %s=%.1f params %s", j, best[1], cfg.criterion, best[0], np.round(best[2], 3))
    return ArimaModel(cfg=cfg, orders=orders, params=params, profile=profile, criteria=crits,
                      fit_seconds=time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------------
# Forecasting and imputation with fixed parameters
# ------------------------------------------------------------------------------------------------
def _check_windows(x: np.ndarray, model: ArimaModel, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] != model.n_series:
        raise ValueError(f"{name} must be (n, L, {model.n_series}), got {x.shape}")
    return x


def forecast(model: ArimaModel, history: np.ndarray, starts: np.ndarray, horizon: int) -> np.ndarray:
    """Forecast (n, horizon, N) from ``history`` (n, L, N) standardized (NaN = missing).

    ``starts``: (n,) absolute slot of the first horizon slot (history = starts-L .. starts-1).
    """
    history = _check_windows(history, model, "history")
    n, L, N = history.shape
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    if starts.shape[0] != n:
        raise ValueError(f"starts has {starts.shape[0]} entries for {n} windows")
    hist_slots = starts[:, None] + np.arange(-L, 0)[None, :]
    hor_slots = starts[:, None] + np.arange(horizon)[None, :]
    resid = history - _profile_at(model, hist_slots)
    out = np.empty((n, horizon, N))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for j in range(N):
            for i in range(n):
                res = _sarimax(resid[i, :, j], model.orders[j]).filter(model.params[j])
                out[i, :, j] = res.forecast(horizon)
    return out + _profile_at(model, hor_slots)


def impute(model: ArimaModel, observed: np.ndarray, mask: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Kalman-smoother imputation: hidden entries (mask True) get profile + smoothed residual.

    ``observed``, ``mask``: (n, T, N); hidden values are never read. Observed entries are returned
    unchanged. ``starts``: (n,) absolute first slot of each window.
    """
    observed = _check_windows(observed, model, "observed")
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != observed.shape:
        raise ValueError(f"mask shape {mask.shape} != observed shape {observed.shape}")
    n, T, N = observed.shape
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    prof = _profile_at(model, starts[:, None] + np.arange(T)[None, :])
    resid = np.where(mask, np.nan, observed - prof)
    smooth = np.empty_like(resid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for j in range(N):
            for i in range(n):
                res = _sarimax(resid[i, :, j], model.orders[j]).smooth(model.params[j])
                design = res.filter_results.design[0, :, 0]
                smooth[i, :, j] = design @ res.smoothed_state
    return np.where(mask, prof + smooth, observed)


def forecast_fn(model: ArimaModel):
    """A :data:`umask.bench.accuracy.grid.ForecastFn` for ``model``."""
    return lambda history, starts, horizon: forecast(model, history, starts, horizon)


def impute_fn(model: ArimaModel):
    """A :data:`umask.bench.accuracy.grid.ImputeFn` for ``model`` (Kalman smoother)."""
    return lambda observed, mask, starts: impute(model, observed, mask, starts)


# ------------------------------------------------------------------------------------------------
# CLI: Milan A1 / A2
# ------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Fit ARIMA on the Milan training period, evaluate A1 (and A2), write JSON + markdown."""
    from umask.bench.accuracy import grid as milan_eval
    from umask.train.data import splits
    from umask.train.data.milan import read_internet_matrix

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m umask.train.baselines.arima", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(milan_eval.DEFAULT_DATA))
    parser.add_argument("--out", default="benchmarks/results/milan_arima.json")
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--tasks", default="a1,a2", help="comma-separated subset of a1,a2")
    parser.add_argument("--criterion", default="aic", choices=("aic", "bic"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    command = shlex.join(["python", "-m", "umask.train.baselines.arima", *argv])
    tasks = {t.strip().lower() for t in args.tasks.split(",") if t.strip()}

    matrix = read_internet_matrix(args.data)
    z = splits.fit_scaler(matrix).transform(matrix)
    train_end = splits.MILAN_SPLITS["train"][1]
    cfg = ArimaConfig(period=splits.SLOTS_PER_DAY, criterion=args.criterion)
    model = fit(z[:train_end], cfg)
    log.info("fit %d series in %.1f s", model.n_series, model.fit_seconds)
    order_counts: dict[str, int] = {}
    for o in model.orders:
        order_counts[str(o)] = order_counts.get(str(o), 0) + 1
    info_base = {
        "seeds": "n/a (deterministic MLE)",
        "notes": (
            "ARMA(p,0,q) per cell on the residual after subtracting the training time-of-day profile; "
            f"order by {cfg.criterion.upper()} over {list(cfg.orders)} on training slots 0..{train_end - 1}; "
            "parameters fixed, Kalman filter on each window's history (A1) / Kalman smoother over observed "
            "entries (A2); statsmodels SARIMAX"
        ),
        "fit": {"orders_chosen": order_counts, "fit_seconds": round(model.fit_seconds, 1),
                "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}},
    }
    rows: list[dict[str, Any]] = []
    if "a1" in tasks:
        t0 = time.perf_counter()
        rows += milan_eval.evaluate_a1(matrix, {"arima": forecast_fn(model)}, split=args.split,
                                       model_info={"arima": info_base}, command=command)
        rows[-1]["eval_seconds"] = round(time.perf_counter() - t0, 1)
        log.info("A1 done in %.1f s", rows[-1]["eval_seconds"])
    if "a2" in tasks:
        t0 = time.perf_counter()
        rows += milan_eval.evaluate_a2(matrix, {"arima": impute_fn(model)}, split=args.split,
                                       model_info={"arima": info_base}, command=command)
        rows[-1]["eval_seconds"] = round(time.perf_counter() - t0, 1)
        log.info("A2 done in %.1f s", rows[-1]["eval_seconds"])
    milan_eval.write_report(rows, Path(args.out), args.data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
