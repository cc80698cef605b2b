"""PROTOCOL v2 B3 (cross-domain cold start): the window cut, the retrieval pieces, the baselines and
the shipped U-MASK's retrieval path, on simulator users and the shipped real sample."""

from __future__ import annotations

import numpy as np
import pytest

from umask.bench.accuracy import user as ue
from umask.bench.accuracy import user_b3 as b3
from umask.runtime.core.errors import InputError
from umask.runtime.core.featurize import decode_app_counts
from umask.runtime.families.umask import retrieval as rt
from umask.train.data import user_windows as uw

N_USERS = 8


@pytest.fixture(scope="module")
def pop():
    return ue.simulated_population(N_USERS, seed=0)


@pytest.fixture(scope="module")
def bank(pop):
    return b3.Bank.build(pop)


def test_cross_domain_cut_reads_only_the_source_domain(pop):
    ch = pop.channels
    for u in pop.users[:4]:
        x = pop.features[u].tensor
        for source in uw.B3_SOURCES:
            (w,) = uw.cross_domain_windows(x, source, "test")
            t0 = uw.user_splits(x.T)["test"].t0
            assert w.history == (t0 - uw.B3_HISTORY, t0) and w.target == (t0, t0 + x.slots_per_day)
            assert w.target_domain == ("location" if source == "app" else "app")
            d = x.dense(*w.history)                                        # (C, 20, H, W)
            hist = w.source_history(x)
            if source == "app":                                           # records per category, no place axis
                assert hist.shape == (uw.B3_HISTORY, ch.n_categories)
                want = np.rint(decode_app_counts(d[ch.apps])).sum(axis=(2, 3)).T
                np.testing.assert_allclose(hist, want)
                want = x.dense(*w.target)[ch.location_index].sum(axis=0).reshape(-1)
                np.testing.assert_allclose(w.target_engagement(x), want)
            else:                                                         # presence per cell, no app axis
                assert hist.shape == (uw.B3_HISTORY, x.H, x.W)
                np.testing.assert_array_equal(hist, d[ch.location_index])
                np.testing.assert_allclose(w.target_engagement(x), uw.engagement(x, *w.target)[0])
        with pytest.raises(InputError):
            uw.cross_domain_windows(x, "traffic")


def test_real_sample_has_no_b3_window():
    """The shipped real sample is one day: no 20-slot history + next day fits (the reason for no real rows)."""
    real = ue.real_population()
    x = next(iter(real.features.values())).tensor
    assert x.T == x.slots_per_day
    with pytest.raises(InputError):
        uw.cross_domain_windows(x, "app", "test")


def test_retrieval_pieces():
    bank = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [2.0, 0.0]])
    rows, sims = rt.cosine_top_k(np.array([1.0, 0.0]), bank, 2, exclude=np.array([False, False, False, True]))
    assert rows.tolist() == [0, 2] and sims[0] >= sims[1]
    assert rt.cosine_top_k(np.zeros(2), bank, 2) is None
    kinds = np.eye(3)
    t = rt.place_transfer(kinds, kinds, np.array([True, True, False]))
    np.testing.assert_allclose(t.sum(axis=1), 1.0)
    assert (t[:, 2] == 0).all() and t[0].argmax() == 0 and t[1].argmax() == 1


def test_baselines_use_other_users_only(pop, bank):
    for source in uw.B3_SOURCES:
        cs = b3.cases(pop, source)
        assert len(cs) == len(pop.users)
        for c in cs[:3]:
            nb = b3.knn_users(bank, c, 3)
            assert nb is None or (c.user not in nb and len(nb) == 3)
            for fn in (b3.popularity, b3.knn_history_average):
                s = fn(bank, c)
                n_items = pop.channels.n_categories if c.window.target_domain == "app" else len(bank.filled[c.user])
                assert s.shape == (n_items,) and (s >= 0).all()
                if c.window.target_domain == "location":              # only the user's own places score
                    assert (s[~bank.filled[c.user]] == 0).all()
        # shrink 0 = every other user = popularity; shrink 1 = the neighbours alone
        c = cs[0]
        nb = [v for v in bank.users if v != c.user][:2]
        np.testing.assert_allclose(bank.day_scores(nb, c.user, c.window.target_domain, 0.0), b3.popularity(bank, c))
        np.testing.assert_allclose(bank.day_scores(nb, c.user, c.window.target_domain, 1.0),
                                   bank.day_scores(nb, c.user, c.window.target_domain))
        # popularity never reads the cold user: changing its own tables leaves it unchanged
        c = cs[0]
        before = b3.popularity(bank, c)
        saved = bank.app_tod[c.user], bank.loc_tod[c.user]
        bank.app_tod[c.user], bank.loc_tod[c.user] = saved[0] * 0 + 5.0, saved[1] * 0 + 5.0
        try:
            np.testing.assert_allclose(b3.popularity(bank, c), before)
        finally:
            bank.app_tod[c.user], bank.loc_tod[c.user] = saved


def test_umask_retrieval_windows_and_scores(pop, bank):
    from umask.bench.accuracy.user_b3_umask import UMaskColdStart

    runner = UMaskColdStart(str(ue.REPO_ROOT / "checkpoints" / "umask_small"), k=3)
    runner.pred.attach_population(pop)
    ch, L = pop.channels, uw.B3_HISTORY
    for source in uw.B3_SOURCES:
        cs = b3.cases(pop, source)[:4]
        c = cs[0]
        prof = runner.profile(pop, c.user, source, lambda s: (s >= c.window.history[0]) & (s < c.window.history[1]))
        nb = runner.retrieve(bank, c, prof, runner.h_u([prof])[0])
        assert nb is None or (c.user not in nb and len(nb) == 3)
        nb = nb or [v for v in pop.users if v != c.user]
        x, av = runner.window(bank, c, nb)
        x0, av0 = runner.window(bank, c, None)
        assert av.all() and av0[0, -L:].all() and not av0[0, :-L].any()
        for xx in (x, x0):                                     # the own source slots are the history, exactly
            if source == "location":
                np.testing.assert_array_equal(xx[ch.location_index, -L:], c.hist)
            else:                                              # records kept, spread over places
                got = decode_app_counts(xx[ch.apps, -L:].astype(np.float64)).sum(axis=(2, 3)).T
                np.testing.assert_allclose(got, c.hist, rtol=1e-4, atol=1e-3)
        assert not x0[:, :-L].any()                            # no retrieval: nothing else is known
        out = runner.run(bank, cs)
        n_items = ch.n_categories if c.window.target_domain == "app" else x.shape[2] * x.shape[3]
        for variant in ("retrieval", "no_retrieval", "retrieval_prior_only"):
            assert len(out[variant]) == len(cs)
            assert all(s.shape == (n_items,) and np.isfinite(s).all() for s in out[variant])
        assert any(not np.allclose(a, b) for a, b in zip(out["retrieval"], out["no_retrieval"]))
