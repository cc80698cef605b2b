"""The house's one per-cell grid scaler (runtime/core/gridscale.py) and its users, on the real Milan sample."""

from __future__ import annotations

import numpy as np
import pytest

from umask.runtime.core import gridscale
from umask.runtime.core.errors import InputError
from umask.train.data import splits
from umask.train.data.grids import milan_grid


def test_on_milan_every_user_gets_the_protocol_scale_bit_for_bit() -> None:
    """The floor does not bind on Milan: the grid U-MASK trainer, U-STS-LLM (training and runtime stats) and
    the harness standardize with exactly the protocol's per-cell scaler, so the committed rows stay valid."""
    from umask.bench.accuracy.grid import GridSpec
    from umask.runtime.families.ustsllm.stats import fit_grid_stats
    from umask.train.models.umask.grid import grid_scaler

    g = milan_grid()
    train_end = g.splits()["train"][1]
    proto = splits.fit_scaler(g.values)
    mean, std = gridscale.fit_cell_scaler(g.values, train_end, floor=True)
    assert std.min() > 0.3 * np.median(std)                   # the quietest real cell is far above the floor
    for m, s in ((mean, std), (grid_scaler(g.values, train_end).mean, grid_scaler(g.values, train_end).std),
                 (fit_grid_stats(g.values, train_end, 144).mean, fit_grid_stats(g.values, train_end, 144).std),
                 (GridSpec(g).scaler.mean, GridSpec(g).scaler.std)):
        np.testing.assert_array_equal(m, proto.mean)
        np.testing.assert_array_equal(s, proto.std)


def test_constant_and_near_constant_cells_get_the_floor() -> None:
    v = milan_grid().values[:, :6].copy()
    train_end = 3456
    v[:train_end, 2] = 40.0                                   # constant in training, real afterwards
    v[:train_end, 4] = 40.0 + 1e-3 * np.sin(np.arange(train_end))   # near-constant
    _, raw = gridscale.fit_cell_scaler(v, train_end, floor=False)
    _, floored = gridscale.fit_cell_scaler(v, train_end, floor=True)
    floor = gridscale.STD_FLOOR_OF_MEDIAN * np.median(raw)
    assert raw[2] == 1.0 and raw[4] < 1e-2                      # the protocol scaler: std 1 only when exactly 0
    assert floored[2] == pytest.approx(floor) and floored[4] == pytest.approx(floor)
    real = [0, 1, 3, 5]
    np.testing.assert_array_equal(floored[real], raw[real])    # real cells untouched
    z = (v[train_end:, 4] - v[:train_end, 4].mean()) / floored[4]
    assert np.abs(z).max() < np.abs((v[train_end:, 4] - v[:train_end, 4].mean()) / raw[4]).max() / 10
    with pytest.raises(InputError, match="NaN"):
        gridscale.fit_cell_scaler(np.where(np.arange(6) == 1, np.nan, v), train_end)
    with pytest.raises(InputError, match="train_end"):
        gridscale.fit_cell_scaler(v, 0)


def test_day_type_profiles_split_weekdays_from_weekends() -> None:
    v = milan_grid().values
    mean, std = gridscale.fit_cell_scaler(v, 3456)
    z = (v - mean) / std
    wk, we = gridscale.day_type_profiles(z, 3456, 144, first_weekday=4)      # Milan: slot 0 is a Friday
    days = z[:3456].reshape(24, 144, 25)
    weekend = np.array([(4 + d) % 7 >= 5 for d in range(24)])
    assert weekend.sum() == 8                                  # 4 weekends in days 1-24 (Nov 2013)
    np.testing.assert_allclose(we, days[weekend].mean(0))
    np.testing.assert_allclose(wk, days[~weekend].mean(0))
    assert np.abs(wk - we).mean() > 0.1                      # real Milan traffic differs by day type


def test_profile_decay_weights_the_latest_training_days_and_old_runs_keep_the_plain_mean() -> None:
    """``profile_decay``: training day d of n weighs decay ** (n-1-d), per day type; 1 is the plain mean; a
    run's config without the setting (every run before it) gets the plain mean it trained on; bad decays refused."""
    from umask.train.models.umask.grid_prior import prior_of

    v = milan_grid().values
    mean, std = gridscale.fit_cell_scaler(v, 3456)
    z = (v - mean) / std
    days = z[:3456].reshape(24, 144, 25)
    weekend = np.array([(4 + d) % 7 >= 5 for d in range(24)])
    wk, we = gridscale.day_type_profiles(z, 3456, 144, 4, decay=0.5)
    w = 0.5 ** (23 - np.arange(24))
    for got, sel in ((wk, ~weekend), (we, weekend)):
        np.testing.assert_allclose(got, np.tensordot(w[sel], days[sel], axes=1) / w[sel].sum())
    # decay 0.5 leans on the last days: day 23 (Sunday 24 Nov) carries over half the weekend profile
    assert np.abs(we - days[23]).mean() < np.abs(we - days[weekend].mean(0)).mean()
    np.testing.assert_allclose(gridscale.day_type_profiles(z, 3456, 144, 4, decay=1.0)[0], days[~weekend].mean(0))
    old = prior_of({"prior": "grid"}, z, 3456, 144)
    np.testing.assert_allclose(old.weekday, days[~weekend].mean(0))
    new = prior_of({"prior": "grid", "profile_decay": 0.875}, z, 3456, 144)
    np.testing.assert_allclose(new.weekday, gridscale.day_type_profiles(z, 3456, 144, 4, decay=0.875)[0])
    assert not np.allclose(new.weekday, old.weekday)
    for bad in (0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(InputError, match="decay"):
            gridscale.day_type_profiles(z, 3456, 144, 4, decay=bad)
