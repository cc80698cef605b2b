"""The BRITS A2 baseline of train/baselines/grid_nets.py on a real Milan crop (a few steps, one thread)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from umask.runtime.core.errors import InputError
from umask.train.baselines import base
from umask.train.data import splits
from umask.train.data.grids import milan_grid

torch.set_num_threads(1)


def test_brits_imputes_without_reading_hidden_entries() -> None:
    z = splits.fit_scaler(milan_grid().values).transform(milan_grid().values)[:, :4]     # 4 real cells
    m = base.get("brits")(period=144, steps=3).fit(z[:3456])
    assert m.info()["steps"] == {"impute": 3} and np.isfinite(m.info()["final_loss"]["impute"])
    truth = np.stack([z[3888:3888 + 288], z[3900:3900 + 288]])
    mask = np.random.default_rng(0).random(truth.shape) < 0.75
    out = m.impute(np.where(mask, np.nan, truth), mask)
    assert np.array_equal(out[~mask], truth[~mask]) and np.all(np.isfinite(out))
    other = m.impute(np.where(mask, 1e3, truth), mask)                  # anything at the hidden entries
    np.testing.assert_allclose(other, out, atol=1e-5)
    with pytest.raises(InputError, match="imputation"):
        m.forecast(truth, 144)
