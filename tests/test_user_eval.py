"""PROTOCOL B per-user evaluation harness (benchmarks/user_eval.py) on a small simulated population."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from umask.bench.accuracy import user as ue
from umask.bench.accuracy import user_scoring
from umask.runtime.core.featurize import SparseBehaviorTensor
from umask.train.common import metrics
from umask.train.data.user_windows import top_k_categories

N_USERS = 12


@pytest.fixture(scope="module")
def pop() -> ue.UserPopulation:
    return ue.simulated_population(N_USERS, seed=0)


@pytest.fixture(scope="module")
def real() -> ue.UserPopulation:
    return ue.real_population()


def _oracle(p: ue.UserPopulation) -> ue.Predictor:
    """Reads the ground truth from the population's tensors (the batch a model gets has no truth)."""
    def fn(b: ue.TaskBatch) -> np.ndarray:
        assert b.truth is None
        return np.stack([p.features[int(u)].tensor.dense(int(s), int(s) + b.horizon)
                         for u, s in zip(b.users, b.starts)])
    return fn


def _rows_by(rows: list[dict], model: str) -> dict[str, dict]:
    return {r["task_id"]: r for r in rows if r["model"] == model}


@pytest.fixture(scope="module")
def rows(pop: ue.UserPopulation) -> list[dict]:
    models = {**ue.v2_baseline_models(pop), "oracle": _oracle(pop)}
    return ue.evaluate(models, population=pop, batch_size=50)


def test_oracle_scores_zero_and_ranks_perfectly(rows: list[dict]) -> None:
    oracle = _rows_by(rows, "oracle")
    assert set(oracle) == {"B1", "B2", "B3", "B4"}
    for r in oracle.values():
        for g in ue.GROUPS:
            for k, v in r["metrics"][g].items():
                assert v == 0.0, (r["task_id"], g, k)
    rank = oracle["B3"]["metrics"]["ranking"]
    for g, ks in (("app", ue.APP_KS), ("location", ue.LOC_KS)):
        assert rank[g]["n_users_ranked"] > 0
        assert rank[g]["n_users_ranked"] + rank[g]["n_skipped_no_target_activity"] == N_USERS
        for k in ks:
            for name in ("recall", "ndcg", "mrr"):
                assert rank[g][f"{name}@{k}"] == pytest.approx(1.0)
    # all_zero ranks nothing
    assert _rows_by(rows, "all_zero")["B3"]["metrics"]["ranking"]["app"]["recall@5"] == 0.0


def test_all_zero_active_error_is_mean_abs_truth(pop: ue.UserPopulation, rows: list[dict]) -> None:
    zero = _rows_by(rows, "all_zero")
    for task in ("B1", "B4"):
        truth = {g: [] for g in ue.GROUPS}
        for b in ue.iter_batches(pop, task, "test", batch_size=64):
            for g, sl in user_scoring._group_slices(b.channels).items():
                y = b.truth[:, sl]
                truth[g].append(y[np.broadcast_to(b.eval_mask, y.shape)])
        for g in ue.GROUPS:
            y = np.concatenate(truth[g]).astype(np.float64)
            act = y[y != 0]
            m = zero[task]["metrics"][g]
            assert zero[task]["n_entries"][g] == {"all": y.size, "active": act.size}
            assert m["active_mae"] == pytest.approx(np.abs(act).mean(), rel=1e-9)
            assert m["active_rmse"] == pytest.approx(np.sqrt((act ** 2).mean()), rel=1e-9)
            assert m["mae"] == pytest.approx(np.abs(y).mean(), rel=1e-9)
        assert zero[task]["metrics"]["location"]["active_mae"] == pytest.approx(1.0)


def test_error_sums_match_metrics(pop: ue.UserPopulation) -> None:
    b = next(ue.iter_batches(pop, "B2", "test", batch_size=8))
    pred = ue.predict_last_value(b.model_view())
    s = ue.error_sums(pred, b.truth, b.eval_mask, b.channels)["app"]
    p, y = pred[:, b.channels.apps], b.truth[:, b.channels.apps]
    assert s["sae"] / s["n"] == pytest.approx(metrics.mae(p, y), rel=1e-9)
    assert np.sqrt(s["sse_act"] / s["n_act"]) == pytest.approx(metrics.rmse(p, y, metrics.active_mask(y)), rel=1e-9)


def test_batch_shapes_and_model_view(pop: ue.UserPopulation) -> None:
    C, H, W = pop.channels.n_channels, 4, 4
    models = ue.v2_baseline_models(pop)         # one lightgbm fit for every task
    for task, Tc, Th, off in (("B1", 192, 4, 192), ("B2", 192, 96, 192), ("B3", 192, 96, 192), ("B4", 192, 192, 0)):
        b = next(ue.iter_batches(pop, task, "test", batch_size=5))
        assert b.x_context.shape == (5, C, Tc, H, W) and b.x_context.dtype == np.float32
        assert b.avail.shape == (5, 1, Tc, H, W) and b.avail.dtype == bool
        assert b.truth.shape == (5, C, Th, H, W) and b.eval_mask.shape == (5, 1, Th, H, W)
        assert b.horizon == Th and b.target_offset == off and b.e_pos.shape[:3] == (5, H, W)
        assert len(b.profiles) == 5 and b.users.shape == b.starts.shape == (5,)
        assert ((b.starts - b.context_starts) == off).all()
        assert (b.x_context[~np.broadcast_to(b.avail, b.x_context.shape)] == 0).all()
        v = b.model_view()
        assert v.truth is None and not v.x_context.flags.writeable
        for name, fn in models.items():
            if (name == "linear_interpolation" and task != "B4") or (name == "lightgbm" and task == "B4"):
                with pytest.raises(NotImplementedError):
                    fn(v)
                continue
            assert fn(v).shape == (5, C, Th, H, W), (task, name)
    b1 = next(ue.iter_batches(pop, "B1", "test", batch_size=3))
    np.testing.assert_array_equal(ue.predict_last_value(b1.model_view()),
                                  np.repeat(b1.x_context[:, :, -1:], 4, axis=2))


def test_historical_average_uses_training_days_only(pop: ue.UserPopulation) -> None:
    u = pop.users[0]
    f = pop.features[u]
    d = f.tensor.dense()
    d2 = d.copy()
    d2[:, pop.train_end:] = np.random.default_rng(0).random(d2[:, pop.train_end:].shape).astype(np.float32)
    changed = dataclasses.replace(pop, features={**pop.features, u: dataclasses.replace(
        f, tensor=SparseBehaviorTensor.from_dense(d2, f.tensor.start_ts, f.tensor.slot_seconds))})
    for task in ("B1", "B2"):
        b = next(ue.iter_batches(pop, task, "test", batch_size=30, users=[u]))
        b2 = next(ue.iter_batches(changed, task, "test", batch_size=30, users=[u]))
        assert not np.array_equal(b.truth, b2.truth)
        np.testing.assert_array_equal(ue.HistoricalAverage(pop)(b.model_view()),
                                      ue.HistoricalAverage(changed)(b2.model_view()))
    # the profile is the time-of-day mean of days 1-5
    ha = ue.HistoricalAverage(pop).profile(u)
    np.testing.assert_allclose(ha, d[:, :480].reshape(d.shape[0], 5, 96, 4, 4).mean(axis=1), atol=1e-6)


def test_b4_counts_only_hidden_coordinates(pop: ue.UserPopulation) -> None:
    oracle = _oracle(pop)

    def hidden_only(b: ue.TaskBatch) -> np.ndarray:
        return np.where(b.eval_mask, oracle(b), 100.0)   # garbage on observed coordinates

    (r,) = ue.evaluate({"hidden_only": hidden_only}, population=pop, tasks=("B4",))
    assert all(v == 0.0 for g in ue.GROUPS for v in r["metrics"][g].values())
    n_hidden = 0
    for b in ue.iter_batches(pop, "B4", "test", batch_size=64):
        np.testing.assert_array_equal(b.avail, ~b.eval_mask)
        assert (b.x_context[np.broadcast_to(b.eval_mask, b.x_context.shape)] == 0).all()
        np.testing.assert_array_equal(b.x_context, b.truth * b.avail)
        assert 0.65 < b.eval_mask.mean() < 0.82
        n_hidden += int(b.eval_mask.sum())
    K = pop.channels.n_categories
    assert r["n_entries"]["traffic"]["all"] == n_hidden and r["n_entries"]["app"]["all"] == K * n_hidden
    assert r["seeds"]["masks"].startswith("1000 + window index")


def test_cold_start_cut_and_ground_truth(pop: ue.UserPopulation) -> None:
    (b,) = list(ue.iter_batches(pop, "B3", "test", batch_size=100))
    assert b.n == N_USERS
    for i, u in enumerate(b.users.tolist()):
        x = pop.features[u].tensor
        vis = b.avail[i, 0, :, 0, 0]
        assert vis.sum() <= 20 and (b.avail[i, 0] == vis[:, None, None]).all()
        active = x.active_slots(b.context_starts[i], b.starts[i])
        np.testing.assert_array_equal(np.flatnonzero(vis) + b.context_starts[i], active[-20:])
        # the harness's app engagement ranks categories exactly as user_windows' ground truth
        truth_rank = ue.rank_items(ue.app_engagement(b.truth[i:i + 1], b.channels)[0], 10)
        np.testing.assert_array_equal(truth_rank, top_k_categories(x, (int(b.starts[i]), int(b.starts[i]) + 96), 10))
        prof = b.profiles[i]
        if vis.any():
            assert prof is not None and prof.n_events < pop.features[u].profile.n_events
        else:
            assert prof is None


def test_ranking_definitions() -> None:
    true = np.array([5.0, 0.0, 3.0, 9.0, 1.0])            # true order: 3, 0, 2, 4
    pred = np.array([0.0, 2.0, 1.0, 4.0, 0.5])             # predicted order: 3, 1, 2, 4
    m = ue.ranking_scores(pred, true, (1, 3))
    assert m["recall@1"] == 1.0 and m["mrr@3"] == 1.0
    assert m["recall@3"] == pytest.approx(2 / 3)           # {3, 0, 2} vs {3, 1, 2}
    assert ue.ranking_scores(pred, np.zeros(5), (1,)) is None
    assert ue.rank_items(np.array([1.0, 2.0, 2.0, 0.0])).tolist() == [1, 2, 0]


def test_real_sample_windows_stay_inside_the_day(real: ue.UserPopulation) -> None:
    batches = list(ue.iter_batches(real, "B1-real", batch_size=1000))
    (b,) = batches
    assert b.n == 6 * len(ue.REAL_TARGET_STARTS) and b.task == "B1" and b.Tc == 192 and b.horizon == 4
    assert b.starts.min() == 32 and (b.starts + b.horizon).max() <= 96 - 4
    slots = b.context_slots()
    av = b.avail[:, 0, :, 0, 0]
    assert (b.avail == av[:, None, :, None, None]).all()
    np.testing.assert_array_equal(av, (slots >= 0) & (slots < b.starts[:, None]))
    assert (b.x_context[:, :, ~av.any(axis=0)] == 0).all()
    for i in range(b.n):
        day = real.features[int(b.users[i])].tensor.dense()
        s = int(b.starts[i])
        np.testing.assert_array_equal(b.truth[i], day[:, s:s + 4])
        np.testing.assert_array_equal(b.x_context[i][:, av[i]], day[:, :s])
        p = b.profiles[i]
        assert p is None or p.n_events <= real.features[int(b.users[i])].profile.n_events


def test_rows_carry_dataset_labels(pop: ue.UserPopulation, real: ue.UserPopulation, rows: list[dict]) -> None:
    for r in rows:
        assert r["dataset"] == "simulator (synthetic)" and r["synthetic"] is True
        assert r["simulator"]["n_users"] == N_USERS and r["simulator"]["seed"] == 0 and r["seeds"]["simulator"] == 0
        assert r["n_windows"] > 0 and r["protocol"] == "docs/PROTOCOL.md B"
    assert {r["model"] for r in rows if r["task_id"] == "B1"} == {"all_zero", "last_value", "historical_average",
                                                                "seasonal_naive", "blend", "blend_tuned", "historical_average_all",
                                                                "blend_tuned_all", "historical_average_smooth",
                                                                "blend_smooth", "lightgbm", "oracle"}
    assert sum(r["task_id"] == "B4" and r["model"] == "linear_interpolation" for r in rows) == 1
    real_rows = ue.evaluate_real_sample(population=real, model_info={"last_value": {"seeds": [0, 1], "samples": 4}})
    assert {r["model"] for r in real_rows} == {"all_zero", "last_value", "context_mean"}
    for r in real_rows:
        assert "(real)" in r["dataset"] and r["synthetic"] is False and r["n_users"] == 6 and r["n_windows"] == 90
        assert "1 day" in r["window"]["why_not_protocol"]
    lv = next(r for r in real_rows if r["model"] == "last_value")
    assert lv["seeds"]["model"] == [0, 1] and lv["samples"] == 4
    md = ue.markdown_table(rows + real_rows)
    assert "simulator (synthetic)" in md and "(real)" in md and "Recall@10" in md


def test_main_writes_json_and_markdown(tmp_path, capsys) -> None:
    out = tmp_path / "u.json"
    assert ue.main(["--users", "4", "--seed", "1", "--tasks", "B1,B3", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert {r["task_id"] for r in rows} == {"B1", "B3"}
    assert any(r["synthetic"] is False for r in rows)
    assert all(r["command"].startswith("python -m umask.bench.accuracy.user --users 4") for r in rows)
    assert out.with_suffix(".md").read_text() in capsys.readouterr().out


def test_v2_rows_blend_and_lightgbm(pop: ue.UserPopulation) -> None:
    assert not {"blend", "lightgbm"} & set(ue.baseline_models(pop))     # opt-in for other harnesses
    models = ue.v2_baseline_models(pop)
    assert {"blend", "lightgbm"} <= set(models) and "blend" in ue.BASELINE_NOTES and "lightgbm" in ue.BASELINE_NOTES
    b = next(ue.iter_batches(pop, "B1", batch_size=8)).model_view()
    lv, ha = ue.predict_last_value(b), models["historical_average"](b)
    np.testing.assert_allclose(models["blend"](b), 0.5 * lv + 0.5 * ha, rtol=1e-6, atol=1e-7)
    y = models["lightgbm"](b)
    assert y.shape == (b.n, b.channels.n_channels, b.horizon) + b.x_context.shape[3:]
    assert np.all(np.isfinite(y)) and y.min() >= 0.0
    b4 = next(ue.iter_batches(pop, "B4", batch_size=8)).model_view()
    with pytest.raises(NotImplementedError):
        models["lightgbm"](b4)


def test_historical_average_all_reads_every_slot_before_the_window_and_nothing_after(pop: ue.UserPopulation) -> None:
    """historical_average_all (PROTOCOL v2 B's wording): B2 on the test day averages days 1-6 by slot of day (the
    training-days row averages 1-5); B4 averages only the days before the window start, so the validation
    window's hidden day-5 entries (which the training-days row reads) never enter; B3 is the context mean."""
    from umask.bench.accuracy.user_baselines import HistoricalAverageBefore

    ha_all, ha = HistoricalAverageBefore(pop), ue.HistoricalAverage(pop)
    spd = pop.slots_per_day
    b2 = next(ue.iter_batches(pop, "B2", "test", batch_size=4)).model_view()
    u, start = int(b2.users[0]), int(b2.starts[0])
    assert start == 6 * spd                                          # the test day's first slot: days 1-6 before it
    d = pop.features[u].tensor.dense(0, start)
    want = d.reshape(d.shape[0], 6, spd, *d.shape[2:]).mean(axis=1)
    np.testing.assert_allclose(ha_all.profile_before(u, start), want, rtol=1e-5, atol=1e-7)
    assert not np.allclose(ha_all(b2), ha(b2))                     # day 6 counts here, not in the training-days row
    b4 = next(ue.iter_batches(pop, "B4", "val", batch_size=4)).model_view()
    u, c0 = int(b4.users[0]), int(b4.context_starts[0])
    assert c0 == 4 * spd                                             # the validation window covers days 5-6
    table = ha_all.table(b4)[0]
    np.testing.assert_allclose(table, ha_all.profile_before(u, c0), rtol=0, atol=0)
    d = pop.features[u].tensor.dense(0, c0)
    np.testing.assert_allclose(table, d.reshape(d.shape[0], 4, spd, *d.shape[2:]).mean(axis=1), rtol=1e-5, atol=1e-7)
    b3 = next(ue.iter_batches(pop, "B3", "test", batch_size=4)).model_view()
    np.testing.assert_array_equal(ha_all(b3), ha(b3))
    assert "historical_average_all" in ue.BASELINE_NOTES and "blend_tuned_all" in ue.BASELINE_NOTES


def test_historical_average_smooth_is_the_kernel_estimate_of_the_same_history(pop: ue.UserPopulation) -> None:
    """historical_average_smooth: the sums and counts of historical_average_all smoothed around the clock by the
    prior's kernel, then divided; a constant profile stays constant, mass is kept per day, and nothing after the
    window enters (the smoothed table of B2's test windows equals the kernel applied to days 1-6 only)."""
    from umask.bench.accuracy.user_baselines import HistoricalAverageBefore
    from umask.runtime.families.umask.prior import SMOOTH_MINUTES, smooth_tod, tod_kernel

    spd = pop.slots_per_day
    ha_all, ha_s = HistoricalAverageBefore(pop), HistoricalAverageBefore(pop, SMOOTH_MINUTES)
    assert ha_s.smooth_slots == SMOOTH_MINUTES * spd / 1440 > 0
    b2 = next(ue.iter_batches(pop, "B2", "test", batch_size=4)).model_view()
    u, start = int(b2.users[0]), int(b2.starts[0])
    raw, sm = ha_all.profile_before(u, start), ha_s.profile_before(u, start)
    np.testing.assert_allclose(sm, smooth_tod(raw, ha_s.smooth_slots, 1), rtol=1e-5, atol=1e-7)   # equal counts
    np.testing.assert_allclose(sm.sum(axis=1), raw.sum(axis=1), rtol=1e-4, atol=1e-6)          # mass per day kept
    assert np.abs(sm - raw).max() > 1e-3 and sm.max() < raw.max()                               # it does smooth
    K = tod_kernel(spd, ha_s.smooth_slots)
    np.testing.assert_allclose(K.sum(axis=1), 1.0) and np.testing.assert_allclose(K @ np.ones(spd), 1.0)
    assert K[0, 1] > K[0, 4] > K[0, spd // 2] and K[0, 1] == pytest.approx(K[0, spd - 1])      # around the clock
    np.testing.assert_allclose(ha_s(b2), ha_s.at(ha_s.table(b2), b2, b2.target_slots()), rtol=0, atol=0)
    models = ue.v2_baseline_models(pop)
    assert {"historical_average_smooth", "blend_smooth"} <= set(models) <= set(ue.BASELINE_NOTES) | {"oracle"}
