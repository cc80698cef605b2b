"""The Monte-Carlo parameter oracle (benchmarks/accuracy/user_oracle.py) on 3 SYNTHETIC users, small K."""

from __future__ import annotations

import numpy as np
import pytest

from umask.bench.accuracy import user as ue
from umask.bench.accuracy import user_oracle as uo
from umask.bench.accuracy.user_tasks import simulated_population

N_USERS, SEED, KS = 3, 0, (2, 4)


@pytest.fixture(scope="module")
def run() -> uo.OracleRun:
    r = uo.record_population(N_USERS, SEED)      # asserts recorded users == benchmark population
    before = {u: (r.pop.features[u].tensor.key.copy(), r.pop.features[u].tensor.values.copy(),
                  len(r.users[u].rows), r.users[u].rng.bit_generator.state) for u in r.pop.users}
    uo.build_oracle(r, KS, unconditional=True, progress=False)
    r.before = before                            # type: ignore[attr-defined]
    return r


def test_original_population_untouched(run: uo.OracleRun) -> None:
    fresh = simulated_population(N_USERS, SEED)   # what the benchmark builds, from scratch
    assert fresh.users == run.pop.users and len(run.pop.users) == N_USERS
    for u in run.pop.users:
        key, values, n_places, rng_state = run.before[u]     # type: ignore[attr-defined]
        t = run.pop.features[u].tensor
        assert np.array_equal(t.key, key) and np.array_equal(t.values, values)
        assert np.array_equal(t.key, fresh.features[u].tensor.key)
        assert np.array_equal(t.values, fresh.features[u].tensor.values)
        for name in ("ts", "bs", "app", "bytes"):
            assert np.array_equal(getattr(run.pop.events[u], name), getattr(fresh.events[u], name))
        # the replicates neither added places to the recorded user nor drew from its generator
        assert len(run.users[u].rows) == n_places
        assert run.users[u].rng.bit_generator.state == rng_state


def test_replicates_replay_earlier_plans_and_redraw_the_window(run: uo.OracleRun) -> None:
    u = run.pop.users[0]
    user = run.users[u]
    days = len(user.plans)
    assert days == 7
    d0 = uo.TASK_D0["B2"]
    reps = [uo.replicate(user, d0, np.random.default_rng([1, k])) for k in range(4)]
    outs = [r.simulate(days, 2) for r in reps]     # 2016-04-20 is a Wednesday (weekday 2)
    for r in reps:
        assert r.plans[:d0] == user.plans[:d0]     # days 1-6 replayed: the conditional of the module docstring
    assert len({tuple(np.round([e for _, e in r.plans[d0]], 6)) for r in reps}) > 1   # day 7 redrawn
    day7 = [o[0] >= d0 * 86400 for o in outs]
    assert len({int(m.sum()) for m in day7}) > 1   # different day-7 event counts
    assert len(user.plans) == days and user.replay is None


def test_oracle_statistics(run: uo.OracleRun) -> None:
    spd = run.pop.slots_per_day
    for (d0, u), w in run.windows.items():
        T = run.pop.features[u].tensor.T
        first = uo.TASK_D0["B4"] if d0 == 0 else d0
        assert w.t0 == first * spd
        for k in KS:
            m = w.mean[k]
            assert m.shape == (run.pop.channels.n_channels, T - w.t0, 4, 4)
            assert (m >= w.lo - 1e-6).all() and (m <= w.hi + 1e-6).all()     # inside the replicate range
            assert (w.var[k] >= 0).all()
        assert (w.hi > w.lo).any()                 # replicates differ from each other
        loc = w.mean[max(KS)][run.pop.channels.location_index]
        assert loc.min() >= 0 and loc.max() <= 1   # presence frequency: the location channel's 0/1 scale


def test_oracle_through_the_harness(run: uo.OracleRun) -> None:
    pred = uo.OraclePredictor(run, max(KS))
    for task in ("B1", "B2", "B4"):
        batch = next(ue.iter_batches(run.pop, task, batch_size=N_USERS))
        y = pred(batch.model_view())
        assert y.shape == batch.truth.shape and y.dtype == batch.truth.dtype
        # same featurized scale as the truth: no channel's forecast exceeds what the replicates reach,
        # and the truth's largest value is of the same order as the forecast's
        assert np.isfinite(y).all() and y.min() >= 0
        assert y.max() <= 1.5 * batch.truth.max() + 1e-6 and batch.truth.max() <= 1.5 * max(y.max(), 1e-6) + 1
    rows = ue.evaluate_population(run.pop, {uo.MODEL: pred}, tasks=("B2",))
    assert rows[0]["n_windows"] == N_USERS
    for g in uo.GROUPS:
        rmse = rows[0]["metrics"][g]["rmse"]
        assert 0 < rmse < 1
        assert pred.mean_var("B2", g) > 0
        assert rmse ** 2 - pred.mean_var("B2", g) / max(KS) < rmse ** 2
