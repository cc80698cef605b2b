"""Tiny tests of the learned baselines (benchmarks/arima.py, patchtst.py, csdi.py).

Synthetic (n, L, N) series only (plus one cheap check of the CSDI subset evaluator on the Milan
matrix); every model is tiny and trained for a few steps on one thread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("statsmodels")

from umask.train.baselines import arima  # noqa: E402
from umask.train.baselines import csdi  # noqa: E402

torch.set_num_threads(1)

DATA = Path(__file__).resolve().parents[1] / "data" / "milan_telecom" / "milan_5x5_internet_10min_30d.csv.gz"
PERIOD = 24


def _sine(T: int, N: int, seed: int = 0, noise: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None]
    phase = np.linspace(0, np.pi, N)[None, :]
    return np.sin(2 * np.pi * t / PERIOD + phase) + noise * rng.normal(size=(T, N))


# ---- ARIMA --------------------------------------------------------------------------------------
def test_arima_ar1_forecast_matches_analytic() -> None:
    rng = np.random.default_rng(1)
    phi, T = 0.7, 3000
    y = np.zeros(T)
    for t in range(1, T):
        y[t] = phi * y[t - 1] + rng.normal()
    cfg = arima.ArimaConfig(deseasonalize=False, orders=((1, 0, 0),))
    model = arima.fit(y[:2500, None], cfg)
    phi_hat = float(model.params[0][0])
    assert abs(phi_hat - phi) < 0.05
    hist = y[2300:2500][None, :, None]
    h = np.arange(1, 11)
    pred = arima.forecast(model, hist, np.array([2500]), 10)
    assert pred.shape == (1, 10, 1)
    # the Kalman forecast of a fitted AR(1) is exactly phi_hat^h * last value
    np.testing.assert_allclose(pred[0, :, 0], phi_hat**h * hist[0, -1, 0], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(pred[0, :, 0], phi**h * hist[0, -1, 0], atol=0.1 * abs(hist[0, -1, 0]) + 1e-6)


def test_arima_seasonal_forecast_and_impute() -> None:
    z = _sine(24 * 40, 2)
    cfg = arima.ArimaConfig(period=PERIOD, orders=((1, 0, 0), (1, 0, 1)))
    model = arima.fit(z[: 24 * 30], cfg)
    starts = np.array([24 * 32, 24 * 33 + 5, 24 * 35])
    hist = np.stack([z[s - 48 : s] for s in starts])
    truth = np.stack([z[s : s + 24] for s in starts])
    pred = arima.forecast_fn(model)(hist, starts, 24)
    assert pred.shape == (3, 24, 2) and np.all(np.isfinite(pred))
    assert np.abs(pred - truth).mean() < 0.15  # the profile + ARMA recovers the sine
    hist_nan = hist.copy()
    hist_nan[0, 10:20, 1] = np.nan  # missing history values are allowed
    assert np.all(np.isfinite(arima.forecast(model, hist_nan, starts, 24)))
    rng = np.random.default_rng(2)
    win = np.stack([z[s : s + 48] for s in starts])
    mask = rng.random(win.shape) < 0.75
    out = arima.impute_fn(model)(np.where(mask, np.nan, win), mask, starts)
    assert out.shape == win.shape and np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[~mask], win[~mask])
    assert np.abs(out - win)[mask].mean() < 0.15


# ---- PatchTST -----------------------------------------------------------------------------------
def _tiny_patchtst_cfg(**kw):
    from umask.train.baselines import patchtst

    base = dict(context_length=32, prediction_length=8, patch_length=8, patch_stride=4, d_model=16, num_layers=1,
                num_heads=2, ffn_dim=32, dropout=0.0, batch_size=32, lr=3e-3, warmup_steps=5, steps_per_epoch=15,
                max_epochs=3, patience=10, max_minutes=1.0, eval_batch=256, val_stride=2, progress=False)
    base.update(kw)
    return patchtst.PatchTSTBaselineConfig(**base)


def test_patchtst_trains_and_forecasts() -> None:
    pytest.importorskip("transformers")
    from umask.train.baselines import patchtst

    z = _sine(400, 3)
    cfg = _tiny_patchtst_cfg()
    model = patchtst.fit(z[:300], z[300 - 32 :], cfg)
    losses = [h["train_mse"] for h in model.history]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert model.best_epoch >= 0 and np.isfinite(model.best_val_mse)
    hist = np.stack([z[s - 40 : s] for s in (330, 350)])  # longer than the context: last 32 used
    pred = patchtst.forecast_fn(model)(hist, np.array([330, 350]), 8)
    assert pred.shape == (2, 8, 3) and np.all(np.isfinite(pred))
    assert patchtst.forecast(model, hist, None, 5).shape == (2, 5, 3)
    hist[0, 3, 1] = np.nan
    assert np.all(np.isfinite(patchtst.forecast(model, hist, None, 8)))
    with pytest.raises(ValueError):
        patchtst.forecast(model, hist[:, :20], None, 8)
    with pytest.raises(ValueError):
        patchtst.forecast(model, hist, None, 9)


# ---- CSDI ---------------------------------------------------------------------------------------
def _tiny_csdi_cfg(**kw) -> csdi.CSDIConfig:
    base = dict(n_features=3, window=24, period=PERIOD, channels=16, layers=1, nheads=1, ff_dim=32,
                diffusion_embedding_dim=32, timeemb=32, featureemb=8, forecast_len=8, batch_size=8,
                max_steps=120, max_minutes=1.0, val_every=40, n_val=16, nsample=2, sample_batch=16, progress=False)
    base.update(kw)
    return csdi.CSDIConfig(**base)


@pytest.fixture(scope="module")
def csdi_model() -> csdi.CSDIModel:
    z = _sine(600, 3)
    return csdi.fit(z[:480], z[480:], _tiny_csdi_cfg(), val_first_slot=480)


def test_csdi_schedule_matches_paper() -> None:
    net = csdi.CSDINet(csdi.CSDIConfig(n_features=2, channels=8, layers=1))
    assert len(net.beta) == 50
    np.testing.assert_allclose(net.beta[[0, -1]], [1e-4, 0.5])
    np.testing.assert_allclose(np.sqrt(net.beta), np.linspace(0.01, np.sqrt(0.5), 50))


def test_csdi_random_mask_only_hides_observed() -> None:
    rng = np.random.default_rng(0)
    obs = torch.from_numpy((rng.random((64, 3, 10)) < 0.6).astype(np.float32))
    cond = csdi.random_cond_mask(obs, rng)
    assert torch.all(cond <= obs)  # conditional entries are observed ones
    frac = (cond.sum((1, 2)) / obs.sum((1, 2)).clamp(min=1)).numpy()
    assert frac.min() < 0.3 and frac.max() > 0.7  # ratio ~ U(0, 1) per sample


def test_csdi_loss_decreases(csdi_model: csdi.CSDIModel) -> None:
    val = [h["val_loss"] for h in csdi_model.history]
    train = [h["train_loss"] for h in csdi_model.history]
    assert len(val) == 3
    assert val[-1] < 0.6 * val[0] and train[-1] < train[0]


def test_csdi_impute_keeps_observed_finite_and_deterministic(csdi_model: csdi.CSDIModel) -> None:
    z = _sine(600, 3, seed=5)
    starts = np.array([480, 500])
    win = np.stack([z[s : s + 48] for s in starts])  # 2 chunks of 24
    mask = np.random.default_rng(3).random(win.shape) < 0.75
    observed = np.where(mask, np.nan, win)
    a = csdi.impute_fn(csdi_model)(observed, mask, starts)
    assert a.shape == win.shape and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a[~mask], win[~mask])
    b = csdi.impute(csdi_model, observed.copy(), mask.copy(), starts)
    np.testing.assert_array_equal(a, b)  # same sampler seed -> same output
    c = csdi.impute(csdi_model, observed, mask, starts, seed=123)
    assert not np.array_equal(a, c)
    # a window length that is not a multiple of the model window (end-aligned last chunk)
    d = csdi.impute(csdi_model, observed[:, :30], mask[:, :30], starts)
    assert d.shape == (2, 30, 3) and np.all(np.isfinite(d))
    np.testing.assert_array_equal(d[~mask[:, :30]], win[:, :30][~mask[:, :30]])


def test_csdi_forecast_shapes(csdi_model: csdi.CSDIModel) -> None:
    z = _sine(600, 3, seed=6)
    starts = np.array([500, 530])
    hist = np.stack([z[s - 30 : s] for s in starts])
    for horizon in (20, 5):
        pred = csdi.forecast_fn(csdi_model)(hist, starts, horizon)
        assert pred.shape == (2, horizon, 3) and np.all(np.isfinite(pred))
    np.testing.assert_array_equal(csdi.forecast(csdi_model, hist, starts, 20), csdi.forecast(csdi_model, hist, starts, 20))


def test_csdi_training_is_seeded() -> None:
    z = _sine(300, 3)
    cfg = _tiny_csdi_cfg(max_steps=5, val_every=5)
    a = csdi.fit(z[:240], z[240:], cfg)
    b = csdi.fit(z[:240], z[240:], cfg)
    for (ka, va), (kb, vb) in zip(a.net.state_dict().items(), b.net.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_csdi_subset_evaluator_matches_harness() -> None:
    if not DATA.exists():
        pytest.skip("Milan matrix not available")
    from umask.train.baselines import classical as baselines
    from umask.bench.accuracy import grid as milan_eval
    from umask.bench.accuracy import grid_peers
    from umask.train.data.milan import read_internet_matrix

    matrix = read_internet_matrix(DATA)
    fn = {"lin": lambda x, m, s: baselines.linear_interpolation_impute(x, m)}
    full = grid_peers._subset_rows(matrix, "a2", fn, 1, "test", {}, "test")
    ref = milan_eval.evaluate_a2(matrix, fn, command="test")
    assert full[0]["metrics"] == ref[0]["metrics"]
    sub = grid_peers._subset_rows(matrix, "a2", fn, 8, "test", {}, "test")[0]
    assert sub["n_windows"] == 19 and sub["window"]["stride"] == 8
    assert sub["seeds"]["mask_seed_range"] == "1000..1144 step 8"
    fa = {"sn": lambda h, s, n: baselines.seasonal_naive_forecast(h, n, period=144)}
    a1 = grid_peers._subset_rows(matrix, "a1", fa, 24, "test", {}, "test")[0]
    assert a1["n_windows"] == 13 and a1["n_entries"] == 13 * 144 * 25
