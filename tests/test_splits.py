"""Tests of the PROTOCOL.md splits (train/splits.py) and the shared metrics (train/metrics.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from umask.train.common import metrics
from umask.train.data import splits
from umask.train.data import taobao
from umask.train.data.milan import read_internet_matrix

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    return read_internet_matrix(DATA / "milan_telecom" / "milan_5x5_internet_10min_30d.csv.gz")


# ---- Milan: periods and scaler ------------------------------------------------------------------
def test_milan_periods_cover_the_matrix() -> None:
    assert splits.MILAN_SPLITS == {"train": (0, 3456), "val": (3456, 3888), "test": (3888, 4320)}
    assert splits.MILAN_SPLITS["test"][1] == splits.MILAN_N_SLOTS == 30 * splits.SLOTS_PER_DAY


def test_scaler_uses_training_period_only(matrix: np.ndarray) -> None:
    scaler = splits.fit_scaler(matrix)
    np.testing.assert_allclose(scaler.mean, matrix[:3456].mean(axis=0))
    np.testing.assert_allclose(scaler.std, matrix[:3456].std(axis=0))
    changed = matrix.copy()
    changed[3456:] *= 100.0  # validation and test periods
    other = splits.fit_scaler(changed)
    np.testing.assert_array_equal(scaler.mean, other.mean)
    np.testing.assert_array_equal(scaler.std, other.std)
    changed[3455, 0] += 1000.0  # the last training slot does count
    assert splits.fit_scaler(changed).mean[0] != scaler.mean[0]
    z = scaler.transform(matrix)
    np.testing.assert_allclose(z[:3456].mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(scaler.inverse_transform(z), matrix)


# ---- A1 forecasting -----------------------------------------------------------------------------
def test_a1_test_windows(matrix: np.ndarray) -> None:
    starts = splits.forecast_starts("test")
    assert len(starts) == 289 and starts[0] == 3888 and starts[-1] == 4176
    win = splits.forecast_windows(matrix, "test")
    assert win.x.shape == (289, 288, 25) and win.y.shape == (289, 144, 25)
    # first window: history 3600..3887, horizon 3888..4031
    np.testing.assert_array_equal(win.x[0], matrix[3600:3888])
    np.testing.assert_array_equal(win.y[0], matrix[3888:4032])
    # last window's horizon ends at the last slot
    np.testing.assert_array_equal(win.y[-1], matrix[4176:4320])


def test_a1_val_and_train_windows_keep_horizon_in_split() -> None:
    val = splits.forecast_starts("val")
    assert val[0] == 3456 and val[-1] + 144 == 3888 and len(val) == 289
    train = splits.forecast_starts("train")
    assert train[0] == 288 and train[-1] + 144 == 3456


# ---- A2 imputation ------------------------------------------------------------------------------
def test_a2_windows_and_first_mask(matrix: np.ndarray) -> None:
    starts = splits.imputation_starts("test")
    assert len(starts) == 145 and starts[0] == 3888 and starts[-1] == 4032
    win = splits.imputation_windows(matrix, "test")
    np.testing.assert_array_equal(win.truth[0], matrix[3888:4176])  # first window 3888..4175

    # the PROTOCOL.md recipe, written out independently
    rng = np.random.default_rng(1000 + 0)
    p_expected = rng.uniform(0.7, 0.8)
    mask_expected = rng.random((288, 25)) < p_expected
    hidden_expected = int(mask_expected.sum())

    p, mask = splits.imputation_mask(0)
    assert p == p_expected
    np.testing.assert_array_equal(mask, mask_expected)
    assert int(win.mask[0].sum()) == hidden_expected
    assert 0.70 * 288 * 25 <= hidden_expected <= 0.80 * 288 * 25
    # every window's masks follow the recipe with seed 1000 + index
    rng = np.random.default_rng(1000 + 144)
    p144 = rng.uniform(0.7, 0.8)
    np.testing.assert_array_equal(win.mask[144], rng.random((288, 25)) < p144)
    assert np.all((win.p >= 0.7) & (win.p < 0.8))
    assert np.all(win.observed()[win.mask] == 0.0)


# ---- Taobao leave-one-out -----------------------------------------------------------------------
def test_loo_tiny_case_with_ties() -> None:
    user = np.array([7, 7, 3, 7, 3, 3, 7])
    ts = np.array([5, 9, 1, 9, 2, 2, 1])
    loo = splits.leave_one_out(user, ts)
    # user 7: rows by time 6 (t1), 0 (t5), 1 (t9), 3 (t9) -> the tie at t9 goes to the later row 3
    # user 3: rows 2 (t1), 4 (t2), 5 (t2)
    assert sorted(loo.test.tolist()) == [3, 5]
    assert sorted(loo.val.tolist()) == [1, 4]
    assert sorted(loo.train.tolist()) == [0, 2, 6]
    one = splits.leave_one_out(np.array([1, 2, 2]), np.array([0, 0, 1]))
    assert one.test.tolist() == [0, 2] and one.val.tolist() == [1] and one.train.tolist() == []


def test_loo_on_taobao() -> None:
    data = taobao.read_user_behavior(DATA / "taobao_user_behavior" / "UserBehavior_head.csv.gz")
    loo = splits.leave_one_out(data.user, data.timestamp)
    n_users = data.n_users
    assert len(loo.test) == len(loo.val) == n_users == 814
    assert len(loo.train) + len(loo.val) + len(loo.test) == len(data)
    assert len(np.unique(np.concatenate([loo.train, loo.val, loo.test]))) == len(data)
    assert np.array_equal(np.unique(data.user[loo.test]), np.unique(data.user))
    assert np.array_equal(np.unique(data.user[loo.val]), np.unique(data.user))
    # test and val are the last two rows of each user by (timestamp, row order)
    key = {int(u): (int(data.timestamp[i]), int(i)) for u, i in zip(data.user[loo.test], loo.test)}
    vkey = {int(u): (int(data.timestamp[i]), int(i)) for u, i in zip(data.user[loo.val], loo.val)}
    for u in key:
        assert vkey[u] < key[u]
    for i in loo.train.tolist():
        u = int(data.user[i])
        assert (int(data.timestamp[i]), i) < vkey[u]


# ---- metrics ------------------------------------------------------------------------------------
def test_mae_rmse_hand_cases() -> None:
    truth = np.array([[0.0, 1.0], [2.0, 0.0]])
    pred = np.array([[1.0, 1.0], [0.0, 0.0]])
    assert metrics.mae(pred, truth) == pytest.approx(3.0 / 4)  # |1|+0+|2|+0
    assert metrics.rmse(pred, truth) == pytest.approx(math.sqrt(5.0 / 4))
    active = metrics.active_mask(truth)
    assert active.tolist() == [[False, True], [True, False]]
    assert metrics.masked_mae(pred, truth, active) == pytest.approx(1.0)  # (0 + 2) / 2
    assert metrics.masked_rmse(pred, truth, active) == pytest.approx(math.sqrt(2.0))
    # a (2,) mask broadcasts over rows: second column only -> errors 0, 0
    assert metrics.mae(pred, truth, np.array([False, True])) == 0.0
    with pytest.raises(ValueError):
        metrics.mae(pred, truth, np.zeros((2, 2), dtype=bool))
    with pytest.raises(ValueError):
        metrics.mae(pred[:1], truth)
    with pytest.raises(ValueError):
        metrics.rmse(np.array([np.nan]), np.array([0.0]))


def test_ranking_hand_cases() -> None:
    ranked = [10, 20, 30, 40, 50]
    relevant = {30, 99}
    assert metrics.recall_at_k(ranked, relevant, 2) == 0.0
    assert metrics.recall_at_k(ranked, relevant, 3) == 0.5
    assert metrics.mrr_at_k(ranked, relevant, 5) == pytest.approx(1 / 3)
    assert metrics.mrr_at_k(ranked, relevant, 2) == 0.0
    # DCG = 1/log2(4) = 0.5; IDCG (2 relevant, k=5) = 1 + 1/log2(3)
    assert metrics.ndcg_at_k(ranked, relevant, 5) == pytest.approx(0.5 / (1 + 1 / math.log2(3)))
    assert metrics.ndcg_at_k(np.array([30, 99, 1]), relevant, 2) == pytest.approx(1.0)
    # single held-out item (leave-one-out): recall@k is a hit indicator
    assert metrics.recall_at_k(ranked, [50], 5) == 1.0
    with pytest.raises(ValueError):
        metrics.recall_at_k(ranked, set(), 5)
    with pytest.raises(ValueError):
        metrics.ndcg_at_k([1, 1, 2], {1}, 2)
    with pytest.raises(ValueError):
        metrics.mrr_at_k(ranked, {10}, 0)
