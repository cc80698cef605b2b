"""PROTOCOL v2 B metrics (train/common/metrics.py): slot Recall@k, slot Acc@1, ensemble CRPS."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from umask.train.common import metrics as M


def test_slot_recall_counts_only_active_slots_and_shares() -> None:
    truth = np.array([[2, 0, 1, 0], [0, 0, 0, 0], [0, 3, 0, 0]], dtype=float)   # slot 1 inactive
    scores = np.array([[0.9, 0.8, 0.1, 0.0], [1, 1, 1, 1], [0.5, 0.1, 0.2, 0.3]])
    # slot 0: top-2 {0, 1}, active {0, 2} -> 1/2; slot 2: top-2 {0, 3}, active {1} -> 0
    assert M.slot_recall_at_k(scores, truth, 2) == pytest.approx(0.25)
    assert M.slot_recall_at_k(scores, truth, 4) == pytest.approx(1.0)
    assert M.slot_recall_at_k(np.zeros((2, 3)), np.zeros((2, 3)), 1) is None
    with pytest.raises(ValueError):
        M.slot_recall_at_k(scores, truth, 5)


def test_slot_acc_at_1_ties_break_to_first_cell() -> None:
    truth = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=float)
    scores = np.array([[0.0, 2.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert M.slot_acc_at_1(scores, truth) == pytest.approx(1.0)   # tie in slot 1 -> cell 0, present
    wrong = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert M.slot_acc_at_1(wrong, truth) == pytest.approx(0.0)
    assert M.slot_acc_at_1(np.ones((1, 2)), np.zeros((1, 2))) is None


def test_crps_matches_pairwise_definition_and_reduces_to_mae() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3, 4))
    y = rng.normal(size=(3, 4))
    ref = np.mean([np.mean(np.abs(x - y), axis=0)
                   - 0.5 * np.mean([np.abs(a - b) for a, b in itertools.product(x, x)], axis=0)])
    assert M.crps_samples(x, y) == pytest.approx(ref, rel=1e-12)
    assert M.crps_samples(x[:1], y) == pytest.approx(M.mae(x[0], y))
    mask = y > 0
    assert M.crps_samples(x, y, mask) == pytest.approx(
        np.mean((np.mean(np.abs(x - y), axis=0)
                 - 0.5 * np.mean([np.abs(a - b) for a, b in itertools.product(x, x)], axis=0))[mask]))
    # a sharper ensemble around the truth scores better than a wide one
    assert M.crps_samples(y + 0.01 * x, y) < M.crps_samples(y + x, y)
    with pytest.raises(ValueError):
        M.crps_samples(x, y[:2])


def test_hour_ranked_app_recall_uses_the_hours_engagement() -> None:
    """user_scoring.event_sums: ``app_recall@3_hour`` ranks every slot of an hour by the forecast's sum over the hour;
    a forecast whose per-slot values jitter around the right hour ranking scores 1 there and less per slot."""
    from umask.bench.accuracy.user_scoring import SLOTS_PER_HOUR, event_sums
    from umask.runtime.core.featurize import ChannelLayout

    ch = ChannelLayout(n_categories=5)
    T = SLOTS_PER_HOUR
    truth = np.zeros((1, ch.n_channels, T, 2, 2))
    pred = np.zeros_like(truth)
    apps = np.arange(ch.apps.start, ch.apps.stop)
    for t in range(T):
        truth[0, apps[:3], t, 0, 0] = 1.0                       # categories 0, 1, 2 active in every slot
        pred[0, apps[:3], t, 0, 0] = 0.5                        # the forecast's hour engagement favors them ...
        pred[0, apps[3 + t % 2], t, 0, 0] = 0.9                 # ... but one other category peaks in each slot
    out = event_sums(pred, truth, ch)
    s, n = out["app_recall@3"]
    sh, nh = out["app_recall@3_hour"]
    assert n == nh == T
    assert sh / nh == pytest.approx(1.0)                       # 0.5 x 4 slots beats 0.9 x 2 slots
    assert s / n == pytest.approx(2 / 3)                       # per slot the peak takes one of the three places
