"""Sequential-rec baselines (umask.train.baselines.seqrec) and the full-ranking metrics, on the real Taobao sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from umask.train.baselines import seqrec
from umask.train.common.metrics import full_ranking_metrics, group_max_scores, ndcg_at_k, recall_at_k
from umask.train.models.fatsmb.data import load_protocol_c

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data():
    return load_protocol_c(max_users=60)


def _brute_force(scores: np.ndarray, target: np.ndarray, k: int, n_perm: int, rng: np.random.Generator):
    """Recall@k / NDCG@k averaged over random tie-breaks, through the per-list reference functions."""
    rec, nd = np.zeros(len(target)), np.zeros(len(target))
    for _ in range(n_perm):
        jitter = rng.random(scores.shape)
        for r in range(len(target)):
            ranked = np.lexsort((jitter[r], -scores[r]))                  # score desc, random tie order
            rec[r] += recall_at_k(ranked, [target[r]], k) / n_perm
            nd[r] += ndcg_at_k(ranked, [target[r]], k) / n_perm
    return rec, nd


def test_full_ranking_matches_reference_without_and_with_ties():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(20, 50))                                         # no ties: exact
    t = rng.integers(0, 50, 20)
    m = full_ranking_metrics(s, t, ks=(5,))
    ref = [(recall_at_k(np.argsort(-row), [y], 5), ndcg_at_k(np.argsort(-row), [y], 5)) for row, y in zip(s, t)]
    assert np.allclose(m["recall@5"], [a for a, _ in ref]) and np.allclose(m["ndcg@5"], [b for _, b in ref])
    s = rng.integers(0, 3, size=(6, 12)).astype(float)                    # heavy ties: expectation over tie-breaks
    t = rng.integers(0, 12, 6)
    m = full_ranking_metrics(s, t, ks=(4,))
    rec, nd = _brute_force(s, t, 4, 1500, rng)
    assert np.allclose(m["recall@4"], rec, atol=0.03) and np.allclose(m["ndcg@4"], nd, atol=0.03)
    const = full_ranking_metrics(np.zeros((3, 100)), np.array([0, 5, 99]), ks=(10,))
    assert np.allclose(const["recall@10"], 0.1)                           # a constant model earns k/N, not 1


def test_group_max_is_first_appearance_of_category():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(4, 30))
    groups = rng.integers(0, 7, 30)
    g = group_max_scores(s, groups, 7)
    for r in range(4):
        first_seen = list(dict.fromkeys(groups[np.argsort(-s[r])]))
        by_group = [c for c in np.argsort(-g[r]) if np.isfinite(g[r, c])]
        assert first_seen == by_group


def test_split_is_leave_one_out_and_chronological(data):
    for u in range(len(data.train)):
        tr_items, _ = data.train[u]
        v_items, _ = data.val.prefixes[u]
        te_items, _ = data.test.prefixes[u]
        assert np.array_equal(v_items, tr_items)
        assert np.array_equal(te_items, np.r_[tr_items, data.val.item[u]])
    assert data.n_items > 1000 and data.has_categories


@pytest.mark.parametrize("name", ["pop", "pop_behavior", "recent", "cooc"])
def test_count_baselines_rank_all_items(data, name):
    m = seqrec.make(name).fit(data.train, data.n_items, data.n_behaviors)
    s = m.score(data.val.prefixes, data.val.behavior)
    assert s.shape == (len(data.val), data.n_items) and np.all(np.isfinite(s))
    if name == "recent":                                                   # most recent item is ranked first
        last = np.array([p[0][-1] for p in data.val.prefixes])
        assert np.all(np.argmax(s, axis=1) == last)
    if name == "pop_behavior":                                             # buy-popularity differs from pv-popularity
        b = m.score(data.val.prefixes[:2], np.array([0, 3]))
        assert not np.array_equal(np.argsort(-b[0])[:20], np.argsort(-b[1])[:20])


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_transformers_train_and_loss_drops(data, name):
    m = seqrec.make(name, d=32, max_len=20, batch_size=16, max_positions=48)
    m.fit(data.train, data.n_items, data.n_behaviors, seed=0, steps=60)
    losses = [r["loss"] for r in m.curve]
    assert len(losses) == 6 and np.mean(losses[-2:]) < np.mean(losses[:2])
    s = m.score(data.test.prefixes[:7], data.test.behavior[:7])
    assert s.shape == (7, data.n_items) and np.all(np.isfinite(s))
    s_none = m.score(data.test.prefixes[:7])                               # target behavior optional
    assert np.all(np.isfinite(s_none))


def test_bad_inputs_raise(data):
    with pytest.raises(ValueError, match="item ids"):
        seqrec.make("pop").fit([(np.array([0, 5]), None)], n_items=3)
    m = seqrec.make("pop").fit(data.train, data.n_items, data.n_behaviors)
    with pytest.raises(ValueError, match="target_behavior"):
        m.score(data.val.prefixes[:3], np.array([0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        full_ranking_metrics(np.full((1, 4), np.nan), np.array([0]))
    with pytest.raises(ValueError, match="target ids"):
        full_ranking_metrics(np.zeros((1, 4)), np.array([4]))


def test_cap_positions_keeps_last_and_bounds_count():
    g = torch.Generator().manual_seed(0)
    keep = torch.rand(6, 30, generator=g) < 0.7
    keep[2] = False
    capped = seqrec.cap_positions(keep, 10, g)
    assert int(capped.sum()) == 10 and not bool((capped & ~keep).any())
    for r in range(6):
        if keep[r].any():
            assert capped[r, int(torch.nonzero(keep[r])[-1])]
    assert torch.equal(seqrec.cap_positions(keep, 10_000, g), keep)
