"""Training windows of the four U-MASK tasks on a few simulated (SYNTHETIC) users."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from umask.runtime.core.errors import InputError
from umask.train.models.umask.data import (COLD, IMPUTE, LONG, SHORT, StepBatchSampler, UserWindowDataset, WindowConfig,
                                 build_profile_table, channel_rms, collate, imputation_hidden, load_users,
                                 population_fingerprint, save_users, simulated_users, train_windows, val_windows)
from umask.train.data.user_windows import completion_mask, user_splits

torch.set_num_threads(1)

N_USERS = 6
DEFAULT = WindowConfig()                       # 192 + 96 = 288 slots
TINY = WindowConfig(context=12, horizon=4, short_horizon=2, cold_max_active=4)


@pytest.fixture(scope="module")
def users():
    return simulated_users(N_USERS, seed=0)


@pytest.fixture(scope="module")
def ds(users) -> UserWindowDataset:
    return UserWindowDataset(users, DEFAULT, data_seed=3)


def _rows_of(ds: UserWindowDataset, task: int, n: int = 12) -> list[int]:
    idx = np.flatnonzero(ds.windows[:, 2] == task)
    return idx[np.linspace(0, len(idx) - 1, n).astype(int)].tolist()


def test_users_and_splits(users) -> None:
    assert len(users) == N_USERS
    u = users[0]
    assert u.tensor.shape == (22, 7 * 96, 4, 4) and u.e_pos.shape[:2] == (4, 4)
    sp = user_splits(u.tensor.T)
    assert (sp["train"].t1, sp["val"].t1, sp["test"].t1) == (480, 576, 672)   # days 1-5 | 6 | 7
    assert u.profile is not None and u.profile.n_events > 0


def test_item_shapes(ds: UserWindowDataset, users) -> None:
    # every start in [0, 480 - 288] with stride 4, four tasks each
    assert len(ds) == N_USERS * 49 * 4
    it = ds[0]
    assert it["x0"].shape == (22, 288, 4, 4) and it["x0"].dtype == torch.float32
    assert it["avail"].shape == it["target"].shape == (1, 288, 4, 4)
    assert it["e_pos"].shape == users[0].e_pos.shape
    assert isinstance(it["task"], int) and isinstance(it["user"], int)
    b = collate([ds[i] for i in range(5)])
    assert b["x0"].shape == (5, 22, 288, 4, 4) and b["task"].dtype == torch.long and b["user"].shape == (5,)
    tiny = UserWindowDataset(users, TINY)
    assert tiny[(7, 2)]["x0"].shape == (22, 16, 4, 4)
    # x0 is exactly the user's tensor over the window
    ui, s = int(ds.windows[10, 0]), int(ds.windows[10, 1])
    np.testing.assert_array_equal(ds[10]["x0"].numpy(), users[ui].tensor.dense(s, s + 288))


def test_forecasting_semantics(ds: UserWindowDataset) -> None:
    for task, n_target in ((SHORT, 4), (LONG, 96), (COLD, 96)):
        for i in _rows_of(ds, task):
            it = ds[i]
            a, t = it["avail"][0].numpy(), it["target"][0].numpy()
            assert not (a * t).any(), "avail and target overlap"
            slots = np.flatnonzero(t.any(axis=(1, 2)))
            assert slots.tolist() == list(range(192, 192 + n_target))
            assert t[slots].all()                                   # every cell of a target slot
            assert not a[192:].any()                                # nothing of the horizon is available
            if task != COLD:
                assert a[:192].all()


def test_cold_start_history_cut(ds: UserWindowDataset, users) -> None:
    seen_full = False
    for i in _rows_of(ds, COLD, 30):
        it = ds[i]
        ui, s = int(ds.windows[i, 0]), int(ds.windows[i, 1])
        slots = np.flatnonzero(it["avail"][0].numpy().any(axis=(1, 2)))
        assert len(slots) <= 20
        active = users[ui].tensor.active_slots(s, s + 192) - s
        np.testing.assert_array_equal(slots, active[-20:])          # the most recent active slots
        seen_full |= len(slots) == 20
    assert seen_full                                                # the cut actually binds on this data


def test_imputation_masks(ds: UserWindowDataset) -> None:
    rows = _rows_of(ds, IMPUTE)
    for i in rows:
        it = ds[(i, 5)]
        a, t = it["avail"][0].numpy(), it["target"][0].numpy()
        assert not (a * t).any() and ((a + t)[:192] == 1).all()
        assert not a[192:].any() and not t[192:].any()              # horizon: not available, not a target
        frac = t[:192].mean()
        assert 0.68 <= frac <= 0.82, frac
        p, hidden = imputation_hidden(DEFAULT, 4, 4, 3, 5, i)
        assert 0.70 <= p <= 0.80
        np.testing.assert_array_equal(t[:192], hidden)
    # masks change with the epoch, are reproducible, and are not the evaluation (seed 1000 + i) masks
    i = rows[0]
    m0, m1 = ds[(i, 0)]["target"], ds[(i, 1)]["target"]
    assert not torch.equal(m0, m1) and torch.equal(m0, ds[(i, 0)]["target"]) and torch.equal(m0, ds[i]["target"])
    for k in range(5):
        assert not np.array_equal(m0[0, :192].numpy().astype(bool), completion_mask(k, 192, 4, 4)[2])


def test_no_target_in_validation_or_test_days(ds: UserWindowDataset, users) -> None:
    starts = ds.windows[:, 1]
    assert starts.min() == 0 and (starts + 288 <= 480).all()         # whole window inside days 1-5
    rows = train_windows(users, TINY)
    assert (rows[:, 1] + 16 <= 480).all() and (rows[:, 3] == 480).all()
    for i in range(0, len(ds), 97):
        t = ds[i]["target"][0].numpy()
        assert int(ds.windows[i, 1]) + np.flatnonzero(t.any(axis=(1, 2))).max() < 480


def test_validation_windows_never_read_test_day(users) -> None:
    rows = val_windows(users, DEFAULT)
    assert len(rows) == N_USERS * 4                                  # one target start (slot 480) per task
    vds = UserWindowDataset(users, DEFAULT, rows)
    for i in range(len(vds)):
        it = vds[i]
        s = int(rows[i, 1])
        last = s + 288
        x = it["x0"].numpy()
        real = min(last, 576) - s
        assert not x[:, real:].any()                                 # nothing of day 7 is loaded
        assert not it["avail"][0, real:].any() and not it["target"][0, real:].any()
        tslots = s + np.flatnonzero(it["target"][0].numpy().any(axis=(1, 2)))
        assert tslots.max() < 576
        if rows[i, 2] != IMPUTE:
            assert tslots.min() == 480                               # forecasting targets = validation day


def test_batch_sampler_is_a_function_of_the_step() -> None:
    s = StepBatchSampler(50, 4, seed=1)
    it = iter(s)
    first = [next(it) for _ in range(30)]
    resumed = iter(StepBatchSampler(50, 4, seed=1, start_step=17))
    assert [next(resumed) for _ in range(13)] == first[17:]
    assert s.steps_per_epoch == 12 and s.cursor(17) == {"epoch": 1, "batch_in_epoch": 5}
    epoch0 = [k for b in first[:12] for k in b]
    assert len({i for i, _ in epoch0}) == 48 and all(e == 0 for _, e in epoch0)
    # two ranks: disjoint shards of each epoch
    r0, r1 = StepBatchSampler(50, 4, seed=1, rank=0, world=2), StepBatchSampler(50, 4, seed=1, rank=1, world=2)
    a = {i for st in range(6) for i, _ in r0.batch(st)}
    b = {i for st in range(6) for i, _ in r1.batch(st)}
    assert len(a) == len(b) == 24 and not a & b
    with pytest.raises(InputError):
        StepBatchSampler(3, 4)


def test_save_load_users_and_profiles(users, tmp_path: Path) -> None:
    path = save_users(tmp_path / "u.npz", users, {"n_users": N_USERS})
    back, meta = load_users(path)
    assert meta == {"n_users": N_USERS}
    assert population_fingerprint(back) == population_fingerprint(users)
    assert back[2].profile.to_dict() == users[2].profile.to_dict()
    np.testing.assert_array_equal(back[1].tensor.dense(100, 200), users[1].tensor.dense(100, 200))
    rms = channel_rms(users)
    assert rms.shape == (22,) and (rms >= 0).all() and rms[-1] > 0   # location channel is set somewhere
    table = build_profile_table(users, "none")                       # no SBERT load
    it = UserWindowDataset(users, TINY, profiles=table)[3]
    assert it["profile_emb"].shape == (384,) and it["profile_present"] is False
