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

These callables have the signature of the Milan harness's ``ForecastFn`` / ``ImputeFn``
(``benchmarks/accuracy/grid.py``; the Milan runs live in ``benchmarks/accuracy/grid_peers.py``).
:class:`ArimaPredictor` wraps the same functions as a registered
:class:`~umask.train.baselines.base.Predictor` (``arima``); set ``period`` to 96 for 15-min slots.

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

Stability (a real 21-cell grid had one cell whose AIC-best AR(2) had a double root at -1.0002,
forecasting |z| up to 7.7e4 from a flat history): "enforced" stationarity still lets the optimizer
end on the unit circle's edge. After each fit the AR and MA roots are checked (every root modulus
>= 1 + ``root_margin``) and so is the forecast *gain*, ``max_h ||F^h||_2`` of the AR companion
matrix F over ``gain_steps`` steps (<= ``max_gain``; a repeated root near the unit circle amplifies a
flat history linearly in h even when it is "stationary"). An order that fails is skipped with a
logged reason; when no order passes, the series falls back to white noise around the profile
(order (0, 0, 0): the historical average), also logged. The residual is scaled by its training std,
floored at ``min_std``, before fitting (the Gaussian ARMA is scale-invariant, so the AR / MA
parameters are unchanged; it only conditions the optimizer), and a residual with std below
``min_std`` is not fitted at all (white noise).

Forecasting a window: the fitted parameters are fixed; the Kalman filter is run on the window's
own 288-slot history residual (initialized at the stationary distribution, missing values allowed)
and the 144-step forecast is read off. No re-estimation per window, so the 289 x 25 A1 windows take
about a minute on one core.

Imputation (A2): the same fixed-parameter model, run through the Kalman *smoother* over the window
with the hidden entries as missing observations; the hidden entries get profile + smoothed residual
(the conditional mean given all observed entries of that cell in the window). Cells are treated
independently (no spatial coupling).

Run on Milan (PROTOCOL A)::

    python -m umask.bench.accuracy.grid_peers arima --out benchmarks/results/milan_arima.json
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from umask.runtime.core.errors import InputError
from umask.train.baselines.base import Predictor, as_starts, as_windows, check_horizon, register

log = logging.getLogger(__name__)

__all__ = ["ArimaConfig", "ArimaModel", "ArimaPredictor", "check_stability", "fit", "forecast", "forecast_fn",
           "impute", "impute_fn"]

WHITE_NOISE: tuple[int, int, int] = (0, 0, 0)

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
    root_margin: float = 1e-3        # every AR / MA root modulus >= 1 + root_margin
    max_gain: float = 10.0           # max_h ||F^h||_2 of the AR companion matrix over gain_steps steps
    gain_steps: int = 1000
    min_std: float = 1e-4            # residual std floor (scaling); below it: white noise, no fit


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
    scales: list[float] = field(default_factory=list)     # residual scale per series (empty: 1.0)
    fallbacks: dict[int, str] = field(default_factory=dict)  # series -> why it fell back / skipped orders

    def scale(self, j: int) -> float:
        return float(self.scales[j]) if self.scales else 1.0

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
                          fit_seconds=self.fit_seconds, scales=[self.scale(c) for c in cols])


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


def check_stability(order: tuple[int, int, int], params: np.ndarray, cfg: ArimaConfig) -> str | None:
    """None when the fitted parameters are safely stationary, invertible and of bounded forecast gain;
    else the reason (see the module docstring). ``params``: SARIMAX order (ar..., ma..., sigma2)."""
    p, _, q = order
    ar, ma = np.asarray(params[:p], float), np.asarray(params[p:p + q], float)
    if not (np.all(np.isfinite(ar)) and np.all(np.isfinite(ma))):
        return "non-finite parameters"
    lim = 1.0 + cfg.root_margin
    if p:
        r = np.abs(np.roots(np.r_[-ar[::-1], 1.0]))      # roots of 1 - phi_1 z - ... - phi_p z^p
        if r.size and r.min() < lim:
            return f"AR root modulus {r.min():.5f} < {lim:g} (ar={np.round(ar, 4).tolist()})"
        comp = np.zeros((p, p))
        comp[0] = ar
        comp[1:, :-1] = np.eye(p - 1)
        power, gain = np.eye(p), 1.0
        for _ in range(cfg.gain_steps):
            power = comp @ power
            g = float(np.linalg.norm(power, 2))
            gain = max(gain, g)
            if gain > cfg.max_gain or g < 1e-6:
                break
        if gain > cfg.max_gain:
            return f"forecast gain max_h ||F^h|| = {gain:.1f} > {cfg.max_gain:g} (ar={np.round(ar, 4).tolist()})"
    if q:
        r = np.abs(np.roots(np.r_[ma[::-1], 1.0]))        # roots of 1 + theta_1 z + ... + theta_q z^q
        if r.size and r.min() < lim:
            return f"MA root modulus {r.min():.5f} < {lim:g} (ma={np.round(ma, 4).tolist()})"
    return None


def fit(train: np.ndarray, cfg: ArimaConfig | None = None) -> ArimaModel:
    """Fit one ARIMA per series on a standardized training matrix ``train`` (T, N) (NaN allowed).

    Only the rows passed are used: the caller cuts the training period (Milan: slots 0..3455).
    Orders whose fit is unstable are skipped (``check_stability``); a series with no stable order, or
    with a residual std below ``cfg.min_std``, gets white noise around its profile (``fallbacks``).
    """
    cfg = cfg or ArimaConfig()
    train = np.asarray(train, dtype=np.float64)
    if train.ndim != 2:
        raise InputError(f"train must be (T, N), got {train.shape}")
    if cfg.criterion not in ("aic", "bic"):
        raise InputError(f"criterion must be aic or bic, got {cfg.criterion!r}")
    t0 = time.perf_counter()
    profile = _time_of_day_profile(train, cfg.period, cfg.first_slot) if cfg.deseasonalize else None
    resid = train - profile[(cfg.first_slot + np.arange(train.shape[0])) % cfg.period] if profile is not None else train
    orders, params, crits, scales = [], [], [], []
    fallbacks: dict[int, str] = {}
    for j in range(train.shape[1]):
        col = resid[:, j]
        std = float(np.nanstd(col)) if np.isfinite(col).any() else 0.0
        scale = max(std, cfg.min_std)
        best = None
        reasons: list[str] = []
        if std < cfg.min_std:
            reasons.append(f"residual std {std:.2e} < min_std {cfg.min_std:g}")
        else:
            for order in cfg.orders:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        res = _sarimax(col / scale, tuple(order)).fit(disp=False, maxiter=cfg.maxiter)
                    except (np.linalg.LinAlgError, ValueError) as exc:  # pragma: no cover - rare
                        reasons.append(f"order {tuple(order)} failed: {exc}")
                        continue
                crit = float(getattr(res, cfg.criterion))
                par = np.asarray(res.params, dtype=np.float64)
                why = check_stability(tuple(order), par, cfg)
                if why is not None:
                    reasons.append(f"order {tuple(order)} rejected: {why}")
                    continue
                if np.isfinite(crit) and (best is None or crit < best[0]):
                    best = (crit, tuple(order), par)
        if best is None:
            best = (float("nan"), WHITE_NOISE, np.array([1.0]))
            reasons.append("fallback: white noise around the profile (order (0, 0, 0))")
        if reasons:
            fallbacks[j] = "; ".join(reasons)
            log.warning("series %d: %s", j, fallbacks[j])
        crits.append(best[0])
        orders.append(best[1])
        params.append(best[2])
        scales.append(scale)
        log.info("series %d: order %s %s=%.1f params %s", j, best[1], cfg.criterion, best[0], np.round(best[2], 3))
    return ArimaModel(cfg=cfg, orders=orders, params=params, profile=profile, criteria=crits,
                      fit_seconds=time.perf_counter() - t0, scales=scales, fallbacks=fallbacks)


# ------------------------------------------------------------------------------------------------
# Forecasting and imputation with fixed parameters
# ------------------------------------------------------------------------------------------------
def _check_windows(x: np.ndarray, model: ArimaModel, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] != model.n_series:
        raise InputError(f"{name} must be (n, L, {model.n_series}), got {x.shape}")
    return x


def forecast(model: ArimaModel, history: np.ndarray, starts: np.ndarray, horizon: int) -> np.ndarray:
    """Forecast (n, horizon, N) from ``history`` (n, L, N) standardized (NaN = missing).

    ``starts``: (n,) absolute slot of the first horizon slot (history = starts-L .. starts-1).
    """
    history = _check_windows(history, model, "history")
    n, L, N = history.shape
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    if starts.shape[0] != n:
        raise InputError(f"starts has {starts.shape[0]} entries for {n} windows")
    hist_slots = starts[:, None] + np.arange(-L, 0)[None, :]
    hor_slots = starts[:, None] + np.arange(horizon)[None, :]
    resid = history - _profile_at(model, hist_slots)
    out = np.empty((n, horizon, N))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for j in range(N):
            sc = model.scale(j)
            if model.orders[j] == WHITE_NOISE:      # the profile alone
                out[:, :, j] = 0.0
                continue
            for i in range(n):
                res = _sarimax(resid[i, :, j] / sc, model.orders[j]).filter(model.params[j])
                out[i, :, j] = res.forecast(horizon) * sc
    return out + _profile_at(model, hor_slots)


def impute(model: ArimaModel, observed: np.ndarray, mask: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Kalman-smoother imputation: hidden entries (mask True) get profile + smoothed residual.

    ``observed``, ``mask``: (n, T, N); hidden values are never read. Observed entries are returned
    unchanged. ``starts``: (n,) absolute first slot of each window.
    """
    observed = _check_windows(observed, model, "observed")
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != observed.shape:
        raise InputError(f"mask shape {mask.shape} != observed shape {observed.shape}")
    n, T, N = observed.shape
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    prof = _profile_at(model, starts[:, None] + np.arange(T)[None, :])
    resid = np.where(mask, np.nan, observed - prof)
    smooth = np.empty_like(resid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for j in range(N):
            sc = model.scale(j)
            if model.orders[j] == WHITE_NOISE:      # the profile alone
                smooth[:, :, j] = 0.0
                continue
            for i in range(n):
                res = _sarimax(resid[i, :, j] / sc, model.orders[j]).smooth(model.params[j])
                design = res.filter_results.design[0, :, 0]
                smooth[i, :, j] = (design @ res.smoothed_state) * sc
    return np.where(mask, prof + smooth, observed)


def forecast_fn(model: ArimaModel):
    """``fn(history, starts, horizon)`` for the Milan harness (``grid.ForecastFn``)."""
    return lambda history, starts, horizon: forecast(model, history, starts, horizon)


def impute_fn(model: ArimaModel):
    """``fn(observed, mask, starts)`` for the Milan harness (``grid.ImputeFn``; Kalman smoother)."""
    return lambda observed, mask, starts: impute(model, observed, mask, starts)


# ------------------------------------------------------------------------------------------------
# Predictor
# ------------------------------------------------------------------------------------------------
@register
class ArimaPredictor(Predictor):
    """``arima``: per-series ARMA around the training slot-of-day profile (module docstring)."""

    name = "arima"
    imputes = True

    def __init__(self, *, period: int = 144, cfg: ArimaConfig | None = None) -> None:
        super().__init__(period=period)
        base = cfg or ArimaConfig()
        from dataclasses import replace

        self.cfg = replace(base, period=self.period)
        self.model: ArimaModel | None = None

    def fit(self, train: np.ndarray, *, first_slot: int = 0, val: np.ndarray | None = None) -> ArimaPredictor:
        super().fit(train)
        from dataclasses import replace

        self.model = fit(train, replace(self.cfg, first_slot=first_slot))
        return self

    def _m(self) -> ArimaModel:
        if self.model is None:
            raise InputError("arima: call fit(train) first")
        return self.model

    def forecast(self, history: np.ndarray, horizon: int, *, starts: np.ndarray | None = None) -> np.ndarray:
        history = as_windows(history, "history", self.n_series)
        return forecast(self._m(), history, as_starts(starts, history.shape[0]), check_horizon(horizon))

    def impute(self, values: np.ndarray, mask: np.ndarray, *, starts: np.ndarray | None = None) -> np.ndarray:
        values = as_windows(values, "values", self.n_series)
        return impute(self._m(), values, mask, as_starts(starts, values.shape[0]))

    def info(self) -> dict[str, object]:
        m = self.model
        extra: dict[str, object] = {}
        if m is not None:
            counts: dict[str, int] = {}
            for o in m.orders:
                counts[str(o)] = counts.get(str(o), 0) + 1
            extra = {"orders_chosen": counts, "fallbacks": len(m.fallbacks), "fit_seconds": round(m.fit_seconds, 1)}
        return {**super().info(), **extra}
