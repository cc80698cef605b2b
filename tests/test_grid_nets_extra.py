"""ConvLSTM, TimesNet and SAITS grid baselines (train/baselines/grid_nets_extra.py) on the real Milan sample:
tiny step counts, one thread."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from umask.runtime.core.errors import InputError
from umask.train.baselines import base
from umask.train.baselines.grid_nets_extra import SAITSNet, fft_periods, saits_batch, square_grid
from umask.train.data import splits
from umask.train.data.grids import milan_grid

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def z() -> np.ndarray:
    v = milan_grid().values
    return splits.fit_scaler(v).transform(v)                       # (4320, 25) real, standardized


def _windows(z: np.ndarray, length: int, cells: slice = slice(None)) -> np.ndarray:
    return np.stack([z[3888 + i:3888 + i + length, cells] for i in (0, 17, 60)])


def test_square_grid() -> None:
    assert square_grid(25) == (5, 5) and square_grid(12) == (3, 4) and square_grid(7) == (1, 7)


def test_timesnet_period_detection_finds_the_day(z: np.ndarray) -> None:
    week = torch.as_tensor(np.stack([z[s:s + 1008] for s in (0, 1008, 2016)]), dtype=torch.float32)   # (3, 7 days, 25)
    periods, amp = fft_periods(week, 2)
    assert periods[0] == 144 and amp.shape == (3, 2)
    two_days = torch.as_tensor(z[None, 144:432], dtype=torch.float32)                  # the A2 window length
    assert fft_periods(two_days, 1)[0] == [144]


@pytest.mark.parametrize("name", ["timesnet", "convlstm"])
def test_forecast_and_impute_shapes(z: np.ndarray, name: str) -> None:
    m = base.get(name)(period=144, steps=2).fit(z[:3456], val=z[3168:3888])
    info = m.info()
    assert info["steps"] == {"forecast": 2, "impute": 2} and set(info["val"]) == {"forecast", "impute"}
    hist = _windows(z, 288)
    y = m.forecast(hist, 144)
    assert y.shape == (3, 144, 25) and np.all(np.isfinite(y))
    mask = np.random.default_rng(0).random(hist.shape) < 0.75
    out = m.impute(np.where(mask, np.nan, hist), mask)
    assert out.shape == hist.shape and np.all(np.isfinite(out)) and np.array_equal(out[~mask], hist[~mask])
    np.testing.assert_allclose(m.impute(np.where(mask, 1e3, hist), mask), out, atol=1e-5)   # hidden never read
    with pytest.raises(InputError):
        m.forecast(hist[:, :200], 144)


def test_training_lowers_the_timesnet_forecast_loss(z: np.ndarray) -> None:
    m = base.get("timesnet")(period=144, steps=40, tasks=("forecast",)).fit(z[:3456])
    curve = m.losses["forecast"]
    assert np.mean(curve[-10:]) < np.mean(curve[:10])
    with pytest.raises(InputError, match="no impute net"):
        m.impute(_windows(z, 288), np.ones((3, 288, 25), bool))


def test_convlstm_on_a_non_square_grid(z: np.ndarray) -> None:
    cells = slice(0, 12)                                           # 12 real cells as a 3 x 4 grid
    m = base.get("convlstm")(period=144, steps=2, grid=(3, 4), tasks=("forecast",)).fit(z[:3456, cells])
    y = m.forecast(_windows(z, 288, cells), 144)
    assert y.shape == (3, 144, 12) and np.all(np.isfinite(y)) and m.info()["grid"] == [3, 4]
    with pytest.raises(InputError, match="does not match"):
        base.get("convlstm")(period=144, steps=1, grid=(5, 5)).fit(z[:3456, cells])


def test_saits_masks_do_not_leak_hidden_targets(z: np.ndarray) -> None:
    w = torch.as_tensor(_windows(z, 288), dtype=torch.float32).permute(0, 2, 1).reshape(-1, 288)   # rows (3*25, 288)
    x, obs, hidden = saits_batch(w, np.random.default_rng(0), 25)
    assert torch.all(x[hidden.bool()] == 0) and torch.all((obs + hidden) == 1) and 0.6 < float(hidden.mean()) < 0.9
    net = SAITSNet(25, 288, d=16, heads=2, d_ff=16).eval()
    torch.manual_seed(0)
    changed = w + 5.0 * torch.randn_like(w) * hidden.transpose(1, 2).reshape(-1, 288)   # other hidden truths
    x2, obs2, _ = saits_batch(changed, np.random.default_rng(0), 25)                   # the same masks
    assert torch.equal(obs, obs2)
    with torch.no_grad():
        a, b = net.estimates(x, obs), net.estimates(x2, obs2)
    for ea, eb in zip(a, b):
        torch.testing.assert_close(ea, eb)


def test_saits_trains_and_imputes(z: np.ndarray) -> None:
    m = base.get("saits")(period=144, steps=3).fit(z[:3456], val=z[3168:3888])
    assert m.info()["steps"] == {"impute": 3} and np.isfinite(m.info()["val"]["impute"]["loss"])
    truth = _windows(z, 288)
    mask = np.random.default_rng(1).random(truth.shape) < 0.75
    out = m.impute(np.where(mask, np.nan, truth), mask)
    assert out.shape == truth.shape and np.all(np.isfinite(out)) and np.array_equal(out[~mask], truth[~mask])
    np.testing.assert_allclose(m.impute(np.where(mask, -7.0, truth), mask), out, atol=1e-5)
    with pytest.raises(InputError, match="imputation"):
        m.forecast(truth, 144)
