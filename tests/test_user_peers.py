"""Per-user peer baselines (benchmarks/user_peers.py): ARIMA, PatchTST, CSDI as user_eval Predictors.

Tiny sizes: the learned models train for a few seconds on a small population with an obvious daily
pattern; the shape/finite checks run on REAL windows of the shipped 6-user sample.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pytest
from umask.bench.accuracy import user as ue
from umask.bench.accuracy import user_peers as up

SPD = 96
T = 7 * SPD
TRAIN_END = 5 * SPD


@pytest.fixture(scope="module")
def real_pop() -> ue.UserPopulation:
    return ue.real_population()


@dataclass
class _Tensor:
    x: np.ndarray                                   # (C, T, H, W)

    def dense(self, t0: int = 0, t1: int | None = None) -> np.ndarray:
        return self.x[:, t0:t1].copy()


@dataclass
class _Features:
    tensor: _Tensor


@dataclass
class DailyPopulation:
    """A week of users whose traffic channel follows a clean daily pattern (active 08:00-16:00)."""

    n_users: int = 2
    H: int = 2
    W: int = 2
    C: int = 22
    seed: int = 0
    synthetic: bool = True
    slots_per_day: int = SPD
    train_end: int = TRAIN_END
    features: dict[int, _Features] = field(init=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        tod = np.arange(T) % SPD
        self.features = {}
        for u in range(self.n_users):
            x = np.zeros((self.C, T, self.H, self.W), np.float32)
            on = (tod >= 32) & (tod < 64)
            x[0, on, 0, 0] = 0.5 + 0.02 * rng.standard_normal(on.sum())
            x[self.C - 1, on, 0, 0] = 1.0                         # location: there while active
            self.features[u] = _Features(_Tensor(x))

    @property
    def users(self) -> list[int]:
        return sorted(self.features)


def forecast_batch(pop: DailyPopulation, channels: ue.ChannelLayout, starts: list[int], horizon: int = 4,
                   Tc: int = 192) -> ue.TaskBatch:
    """B1-shaped windows of user 0 (context [s - Tc, s), target [s, s + horizon)), with truth."""
    x = pop.features[0].tensor.x
    n, H, W = len(starts), pop.H, pop.W
    ctx = np.stack([x[:, s - Tc:s] for s in starts])
    truth = np.stack([x[:, s:s + horizon] for s in starts])
    return ue.TaskBatch(
        task="B1", task_name="B1", split="test", dataset="daily pattern (synthetic)", x_context=ctx,
        avail=np.ones((n, 1, Tc, H, W), bool), context_starts=np.array(starts) - Tc, starts=np.array(starts),
        horizon=horizon, target_offset=Tc, eval_mask=np.ones((n, 1, horizon, H, W), bool),
        e_pos=np.zeros((n, H, W, 2), np.float32), users=np.zeros(n, np.int64), window_index=np.arange(n),
        profiles=[None] * n, channels=channels, slots_per_day=SPD, start_ts=0, truth=truth)


def completion_batch(pop: DailyPopulation, channels: ue.ChannelLayout, start: int = T - 192) -> ue.TaskBatch:
    x = pop.features[0].tensor.x[:, start:start + 192]
    hidden = np.random.default_rng(1).random((192, pop.H, pop.W)) < 0.7
    H, W = pop.H, pop.W
    return ue.TaskBatch(
        task="B4", task_name="B4", split="test", dataset="daily pattern (synthetic)", x_context=(x * ~hidden)[None],
        avail=(~hidden)[None, None], context_starts=np.array([start]), starts=np.array([start]), horizon=192,
        target_offset=0, eval_mask=hidden[None, None], e_pos=np.zeros((1, H, W, 2), np.float32),
        users=np.zeros(1, np.int64), window_index=np.zeros(1, np.int64), profiles=[None], channels=channels,
        slots_per_day=SPD, start_ts=0, truth=x[None])


@pytest.fixture(scope="module")
def daily() -> DailyPopulation:
    return DailyPopulation()


@pytest.fixture(scope="module")
def tiny_patchtst(daily: DailyPopulation) -> up.UserPatchTST:
    cfg = up.default_patchtst_config(prediction_length=4, d_model=16, num_layers=1, num_heads=2, ffn_dim=32,
                                     batch_size=32, steps_per_epoch=40, max_epochs=3, patience=3, warmup_steps=5,
                                     max_minutes=1.0, progress=False)
    model, info = up.fit_user_patchtst(daily, cfg, inactive_fraction=0.05, seed=0)   # type: ignore[arg-type]
    return up.UserPatchTST(model, info)


@pytest.fixture(scope="module")
def tiny_csdi(daily: DailyPopulation) -> up.UserCSDI:
    cfg = up.default_csdi_config(daily.C, SPD, channels=8, layers=1, num_steps=5, nsample=1, max_steps=6,
                                 val_every=3, n_val=4, batch_size=4, progress=False)
    model, mean, std, info = up.fit_user_csdi(daily, cfg)   # type: ignore[arg-type]
    return up.UserCSDI(model, mean, std, info)


def _real_batch(pop: ue.UserPopulation, window: int = 10) -> ue.TaskBatch:
    return next(ue.iter_batches(pop, "B1-real", "day", 8, windows={"B1-real": {window}}))


def _check(pred: np.ndarray, batch: ue.TaskBatch) -> None:
    assert pred.shape == (batch.n, batch.channels.n_channels, batch.horizon) + batch.x_context.shape[3:]
    assert np.isfinite(pred).all()
    assert pred.min() >= 0.0 and pred[:, batch.channels.location_index].max() <= 1.0


def test_series_views_round_trip(real_pop: ue.UserPopulation) -> None:
    b = _real_batch(real_pop)
    s = up.batch_series(b)
    assert s.shape == (b.n, b.Tc, b.channels.n_channels * 16)
    assert np.isnan(s[:, 0]).all() and np.isfinite(s[:, -1]).all()      # slots before the day are unobserved
    back = up.series_tensor(np.nan_to_num(s), b.channels.n_channels, 4, 4)
    np.testing.assert_array_equal(back, b.x_context)


def test_predictors_on_real_sample(real_pop: ue.UserPopulation, tiny_patchtst: up.UserPatchTST,
                                   tiny_csdi: up.UserCSDI) -> None:
    batch = _real_batch(real_pop).model_view()
    assert batch.truth is None and batch.n == 6
    for fn in (up.UserArima(real_pop), tiny_patchtst, tiny_csdi):
        _check(fn(batch), batch)
    assert tiny_csdi.n_cells_sampled > 0


def test_completion_paths(daily: DailyPopulation, real_pop: ue.UserPopulation, tiny_csdi: up.UserCSDI,
                          tiny_patchtst: up.UserPatchTST) -> None:
    b = completion_batch(daily, real_pop.channels)
    for fn in (up.UserArima(daily), tiny_csdi):   # type: ignore[arg-type]
        pred = fn(b.model_view())
        _check(pred, b)
        obs = np.broadcast_to(b.avail, pred.shape)
        np.testing.assert_array_equal(pred[obs], b.x_context[obs])      # evidence returned as given
    with pytest.raises(NotImplementedError):
        tiny_patchtst(b.model_view())


def test_arima_and_patchtst_beat_all_zero_on_daily_pattern(daily: DailyPopulation, real_pop: ue.UserPopulation,
                                                           tiny_patchtst: up.UserPatchTST) -> None:
    # targets on day 7 inside, outside and across the active hours (08:00-16:00)
    b = forecast_batch(daily, real_pop.channels, [6 * SPD + s for s in (20, 30, 34, 44, 54, 62, 70, 80)])
    truth = b.truth[:, 0]
    zero_mae = np.abs(truth).mean()
    arima = up.UserArima(daily)   # type: ignore[arg-type]
    for name, fn in (("arima", arima), ("patchtst", tiny_patchtst)):
        mae = np.abs(fn(b.model_view())[:, 0] - truth).mean()
        assert mae < 0.5 * zero_mae, (name, mae, zero_mae)
    assert arima.n_fitted == 2                                       # only the active series were fitted
    with pytest.raises(NotImplementedError):
        arima(_as_task(b, "B3"))


def _as_task(b: ue.TaskBatch, task: str) -> ue.TaskBatch:
    return dataclasses.replace(b.model_view(), task=task)


def test_harness_rows_carry_model_names(real_pop: ue.UserPopulation, tiny_patchtst: up.UserPatchTST) -> None:
    rows = ue.evaluate_population(real_pop, {"arima": up.UserArima(real_pop), "patchtst": tiny_patchtst},
                                  split="day", tasks=("B1-real",), windows={"B1-real": {10}})
    assert [r["model"] for r in rows] == ["arima", "patchtst"]
    assert all(r["n_windows"] == 6 and not r["synthetic"] for r in rows)
    assert all(np.isfinite(r["metrics"]["app"]["mae"]) for r in rows)
