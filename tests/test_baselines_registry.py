"""The baseline interface: registry, classical Predictors (incl. the v2 blend), ARIMA stability, LightGBM.

Real inputs first: the Milan 5x5 matrix under data/milan_telecom.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from umask.runtime.core.errors import InputError
from umask.train.baselines import base, classical

MILAN = Path(__file__).resolve().parents[1] / "data" / "milan_telecom" / "milan_5x5_internet_10min_30d.csv.gz"
P = 144


@pytest.fixture(scope="module")
def z() -> np.ndarray:
    from umask.train.data.milan import read_internet_matrix

    m = np.log1p(read_internet_matrix(MILAN)[:, :4].astype(np.float64))      # (4320, 4) 4 real cells
    return (m - m[: 24 * P].mean(axis=0)) / m[: 24 * P].std(axis=0)


def test_registry_names_and_get() -> None:
    want = {"all_zero", "last_value", "seasonal_naive", "historical_average", "linear_interpolation",
            "nearest_observed", "blend", "arima", "patchtst", "csdi", "lightgbm", "lowrank_interpolation",
            "profile_lowrank_interpolation"}
    assert want <= set(base.names())
    for n in ("last_value", "blend", "historical_average"):
        cls = base.get(n)
        assert issubclass(cls, base.Predictor) and cls.name == n and base.BASELINES[n] is cls
    with pytest.raises(InputError, match="unknown baseline"):
        base.get("no_such_model")


def test_classical_predictors_match_the_functions(z: np.ndarray) -> None:
    train = z[: 14 * P]
    starts = np.array([20 * P + 7, 21 * P + 100])
    hist = np.stack([z[s - 2 * P : s] for s in starts])                       # (2, 288, 4)
    lv = base.get("last_value")(period=P).fit(train).forecast(hist, 12, starts=starts)
    np.testing.assert_array_equal(lv, classical.last_value_forecast(hist, 12))
    sn = base.get("seasonal_naive")(period=P).fit(train).forecast(hist, 12, starts=starts)
    np.testing.assert_array_equal(sn, classical.seasonal_naive_forecast(hist, 12, period=P))
    ha = base.get("historical_average")(period=P).fit(train)
    profile = classical.fit_historical_average(train, period=P)
    np.testing.assert_allclose(ha.forecast(hist, 12, starts=starts),
                               classical.historical_average_forecast(profile, starts, 12))
    bl = base.get("blend")(period=P).fit(train).forecast(hist, 12, starts=starts)
    np.testing.assert_allclose(bl, 0.5 * lv + 0.5 * ha.forecast(hist, 12, starts=starts))
    assert not np.allclose(bl, lv) and not np.allclose(bl, ha.forecast(hist, 12, starts=starts))


def test_imputers_keep_observed_and_fill_hidden(z: np.ndarray) -> None:
    starts = np.array([20 * P, 22 * P])
    win = np.stack([z[s : s + 2 * P] for s in starts])
    mask = np.random.default_rng(0).random(win.shape) < 0.7
    obs = np.where(mask, np.nan, win)
    for n in ("last_value", "seasonal_naive", "historical_average", "linear_interpolation", "nearest_observed",
              "blend", "all_zero", "lowrank_interpolation", "profile_lowrank_interpolation"):
        m = base.get(n)(period=P).fit(z[: 14 * P])
        out = m.impute(obs, mask, starts=starts)
        assert out.shape == win.shape and np.all(np.isfinite(out)), n
        np.testing.assert_array_equal(out[~mask], win[~mask])
    with pytest.raises(NotImplementedError):
        base.get("linear_interpolation")(period=P).forecast(obs, 3)


def test_last_value_skips_missing_history() -> None:
    h = np.array([[[1.0], [2.0], [np.nan]]])
    np.testing.assert_array_equal(base.get("last_value")().forecast(h, 2), [[[2.0], [2.0]]])


# ---- ARIMA stability ----------------------------------------------------------------------------
def test_arima_rejects_a_near_unit_root_that_explodes(caplog) -> None:
    pytest.importorskip("statsmodels")
    from umask.train.baselines import arima

    # the failing real cell: AR(2) with a double root at -1.0002 ("stationary" for SARIMAX)
    r = 1 / 1.0002
    bad = np.array([-2 * r, -r * r, 1.0])
    cfg = arima.ArimaConfig(period=1, deseasonalize=False, orders=((2, 0, 0),))
    old = arima.ArimaModel(cfg=cfg, orders=[(2, 0, 0)], params=[bad], profile=None)
    flat = np.ones((1, 50, 1))
    exploded = arima.forecast(old, flat, np.array([50]), 144)
    assert np.abs(exploded).max() > 100            # what the unchecked model did to a flat history
    assert "AR root" in arima.check_stability((2, 0, 0), bad, arima.ArimaConfig())
    assert arima.check_stability((1, 0, 0), np.array([0.7, 1.0]), arima.ArimaConfig()) is None
    # a fit whose only candidate order ends near the unit circle falls back (logged) and stays bounded
    rng = np.random.default_rng(0)
    x = np.zeros(700)
    for t in range(2, 700):
        x[t] = -2 * 0.999 * x[t - 1] - 0.999**2 * x[t - 2] + rng.standard_normal()
    x = (x - x.mean()) / x.std()
    with caplog.at_level(logging.WARNING, logger="umask.train.baselines.arima"):
        m = arima.fit(x[:600, None], cfg)
    for o, p in zip(m.orders, m.params):
        assert arima.check_stability(o, p, arima.ArimaConfig()) is None
    f = arima.forecast(m, flat, np.array([600]), 144)
    assert np.all(np.isfinite(f)) and np.abs(f).max() <= 3.0
    if m.orders[0] == arima.WHITE_NOISE:
        assert m.fallbacks and "rejected" in caplog.text


def test_arima_constant_series_is_white_noise_not_a_division_by_zero() -> None:
    pytest.importorskip("statsmodels")
    from umask.train.baselines import arima

    train = np.column_stack([np.full(300, 2.0), np.sin(np.arange(300) * 2 * np.pi / 24)])
    m = arima.fit(train, arima.ArimaConfig(period=24, orders=((1, 0, 0),)))
    assert m.orders[0] == arima.WHITE_NOISE and "min_std" in m.fallbacks[0]
    f = arima.forecast(m, train[None, -48:], np.array([300]), 24)
    np.testing.assert_allclose(f[0, :, 0], 2.0)
    assert np.all(np.isfinite(f))


# ---- LightGBM global -----------------------------------------------------------------------------
def test_lightgbm_fits_real_milan_and_uses_the_calendar(z: np.ndarray) -> None:
    pytest.importorskip("lightgbm")
    model = base.get("lightgbm")(period=P, max_horizon=6, num_boost_round=40, max_rows=20_000)
    model.fit(z[: 14 * P])
    starts = np.array([15 * P + 30, 16 * P + 100, 17 * P + 5])
    hist = np.stack([z[s - 7 * P - 6 : s] for s in starts])                  # (3, 1014, 4)
    y = model.forecast(hist, 6, starts=starts)
    assert y.shape == (3, 6, 4) and np.all(np.isfinite(y))
    assert np.all(np.abs(y) < 10 * np.abs(z[: 14 * P]).max())
    # the same history at another slot of day: the prediction changes (the calendar is used)
    shifted = model.forecast(hist, 6, starts=starts + P // 2)
    assert np.abs(shifted - y).max() > 1e-3
    # reproducible for a seed (1 thread, deterministic)
    again = base.get("lightgbm")(period=P, max_horizon=6, num_boost_round=40, max_rows=20_000).fit(z[: 14 * P])
    np.testing.assert_array_equal(again.forecast(hist, 6, starts=starts), y)
    with pytest.raises(InputError, match="max_horizon"):
        model.forecast(hist, 7, starts=starts)


def test_profile_lowrank_predictor_is_the_harness_row_on_real_milan() -> None:
    """The registered profile_lowrank_interpolation Predictor, fitted on the training days, gives the harness's A2
    row (benchmarks/accuracy/grid.baseline_imputers) on real test windows; its profile needs whole days."""
    from umask.bench.accuracy.grid import GridSpec, baseline_imputers
    from umask.train.data import splits
    from umask.train.data.milan import read_internet_matrix

    spec = GridSpec(read_internet_matrix(MILAN))
    iw = splits.imputation_windows(spec.z, "test")
    j = np.array([0, 77])
    obs = np.where(iw.mask[j], np.nan, iw.truth[j])
    want = baseline_imputers(spec.z, first_weekday=spec.first_weekday)["profile_lowrank_interpolation"](
        obs, iw.mask[j], iw.starts[j])
    m = base.get("profile_lowrank_interpolation")(period=P, first_weekday=spec.first_weekday)
    np.testing.assert_allclose(m.fit(spec.z[:3456]).impute(obs, iw.mask[j], starts=iw.starts[j]), want)
    # a training period that starts a day later: the weekday shifts with it, the answer does not change much
    shifted = base.get("profile_lowrank_interpolation")(period=P, first_weekday=spec.first_weekday)
    got = shifted.fit(spec.z[P:3456], first_slot=P).impute(obs, iw.mask[j], starts=iw.starts[j])
    assert np.abs(got - want)[iw.mask[j]].mean() < 0.05
    with pytest.raises(InputError, match="midnight"):
        m.fit(spec.z[5:3456], first_slot=5)
