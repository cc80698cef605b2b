"""PROTOCOL B splits and windows on a 7-day per-user tensor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from umask.runtime.core.catalog import load_llmapp_catalog
from umask.runtime.core.errors import InputError
from umask.runtime.core.events import read_llmapp_sample
from umask.runtime.core.featurize import (ChannelLayout, SparseBehaviorTensor, encode_app_counts,
                                     featurize_population)
from umask.train.data.user_windows import (cold_start_windows, completion_mask, completion_windows, long_term_windows,
                                      short_term_windows, top_k_categories, top_k_locations, user_splits)

DATA = Path(__file__).resolve().parents[1] / "data" / "tsinghua_app_usage"
K, T, H, W = 20, 7 * 96, 4, 4
CH = ChannelLayout(K)
START = 16911 * 86400   # 2016-04-20 00:00 local


def _week(active_slots: np.ndarray, seed: int = 0) -> SparseBehaviorTensor:
    """A (22, 672, 4, 4) tensor with events in the given slots (one random cell and category each)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((K + 2, T, H, W), np.float32)
    for t in active_slots.tolist():
        h, w, k = rng.integers(0, H), rng.integers(0, W), rng.integers(0, K)
        x[1 + k, t, h, w] = encode_app_counts(rng.integers(1, 5))
        x[0, t, h, w] = 0.5
        x[CH.location_index, t, h, w] = 1.0
    return SparseBehaviorTensor.from_dense(x, START, 900)


@pytest.fixture(scope="module")
def week() -> SparseBehaviorTensor:
    return _week(np.random.default_rng(1).choice(T, 250, replace=False))


def test_splits() -> None:
    sp = user_splits(T)
    assert (sp["train"].t0, sp["train"].t1) == (0, 480)
    assert (sp["val"].t0, sp["val"].t1) == (480, 576)
    assert (sp["test"].t0, sp["test"].t1) == (576, 672)
    with pytest.raises(InputError):
        user_splits(2 * 96)
    with pytest.raises(InputError):
        user_splits(7 * 96 + 5)


def test_short_term_windows(week: SparseBehaviorTensor) -> None:
    test = short_term_windows(week, "test")
    assert len(test) == 24
    assert test[0].context == (384, 576) and test[0].target == (576, 580)
    assert test[-1].target == (668, 672) and [w.index for w in test] == list(range(24))
    assert all(w.context[1] == w.target[0] and w.context[1] - w.context[0] == 192 for w in test)
    val = short_term_windows(week, "val", stride=1)
    assert len(val) == 93 and val[0].target == (480, 484) and val[-1].target == (572, 576)
    train = short_term_windows(week, "train")        # targets need 192 slots of context
    assert train[0].target == (192, 196) and train[-1].target == (476, 480) and len(train) == 72
    c, y = test[3].context_dense(week), test[3].target_dense(week)
    assert c.shape == (22, 192, 4, 4) and y.shape == (22, 4, 4, 4)
    np.testing.assert_array_equal(y, week.dense()[:, 588:592])
    assert short_term_windows(T, "test") == test        # works from a length too


def test_long_term_windows(week: SparseBehaviorTensor) -> None:
    test = long_term_windows(week, "test")
    assert len(test) == 1 and test[0].context == (384, 576) and test[0].target == (576, 672)
    assert long_term_windows(week, "val")[0].target == (480, 576)
    train = long_term_windows(week, "train")
    assert [w.target for w in train] == [(192, 288), (288, 384), (384, 480)]


def test_completion_masks(week: SparseBehaviorTensor) -> None:
    test = completion_windows(week, "test")
    assert len(test) == 1 and test[0].span == (480, 672) and test[0].mask.shape == (192, 4, 4)
    many = completion_windows(week, "test", stride=1)
    assert len(many) == 96 and many[-1].span == (480, 672) and many[0].span == (385, 577)
    for w in many:
        assert 0.7 <= w.p < 0.8
        # p is in [0.7, 0.8); the realized fraction is Binomial(3072, p) / 3072 (sd ~0.008), so a
        # window drawn near p = 0.70 can show 0.676: check it against its own p, ~5 sd.
        assert abs(w.hidden_fraction - w.p) < 0.04
        # the PROTOCOL A2 recipe, written out
        rng = np.random.default_rng(1000 + w.index)
        p = rng.uniform(0.7, 0.8)
        assert w.seed == 1000 + w.index and p == w.p
        np.testing.assert_array_equal(w.mask, rng.random((192, 4, 4)) < p)
    fractions = np.array([w.hidden_fraction for w in many])
    assert 0.7 <= fractions.mean() <= 0.8
    assert completion_mask(0, 192, 4, 4)[1] == many[0].p                 # reproducible by index
    assert len(completion_windows(week, "train")) == 4                   # days 1..4 end >= 192


def test_cold_start_cut() -> None:
    busy = _week(np.arange(300, 672, 2))                                 # 186 active slots
    (win,) = cold_start_windows(busy, "test")
    assert win.context == (384, 576) and win.target == (576, 672)
    assert len(win.visible_slots) == 20
    active_ctx = busy.active_slots(384, 576)
    np.testing.assert_array_equal(win.visible_slots, active_ctx[-20:])   # the most recent ones
    m = win.context_mask()
    assert m.sum() == 20 and m.shape == (192,)
    d = win.context_dense(busy)
    assert (d[:, ~m] == 0).all()
    np.testing.assert_array_equal(d[:, m], busy.dense(384, 576)[:, m])
    assert len(np.unique(np.nonzero(d[CH.location_index])[0])) == 20    # <= 20 slots with activity

    sparse = _week(np.array([10, 400, 500, 600, 650]))
    (win,) = cold_start_windows(sparse, "test")
    assert win.visible_slots.tolist() == [400, 500]                      # fewer than 20: all kept
    assert len(cold_start_windows(sparse, "test", max_active=1)[0].visible_slots) == 1


def test_top_k_ground_truth() -> None:
    x = np.zeros((K + 2, T, H, W), np.float32)
    target = (576, 672)
    # category 3: 5 records, category 7: 5 records (tie -> smaller index first), category 1: 2
    for k, n, t, (h, w) in ((3, 5, 580, (0, 0)), (7, 3, 600, (1, 1)), (7, 2, 601, (1, 1)), (1, 2, 610, (2, 3))):
        x[1 + k, t, h, w] = encode_app_counts(n)
        x[CH.location_index, t, h, w] = 1.0
    x[1 + 9, 100, 0, 0] = encode_app_counts(50)                          # outside the target: ignored
    xs = SparseBehaviorTensor.from_dense(x, START, 900)
    assert top_k_categories(xs, target, 10).tolist() == [3, 7, 1]
    assert top_k_categories(xs, target, 1).tolist() == [3]
    assert top_k_locations(xs, target, 5).tolist() == [0, 5, 11]         # slots h*W+w with 5, 5, 2 records


def test_real_sample_is_too_short_for_splits() -> None:
    catalog = load_llmapp_catalog(DATA)
    pop = featurize_population(read_llmapp_sample(DATA / "app_usage_trace_sample_llmapp.csv.gz"), catalog)
    x = pop[8].tensor
    assert x.T == 96
    with pytest.raises(InputError, match="at least 3 days"):
        short_term_windows(x, "test")
