"""Tests of the shared baselines (benchmarks/baselines.py) and the Milan A1/A2 harness
(benchmarks/milan_eval.py) on hand-made arrays and on the real 5x5 internet matrix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from umask.train.baselines import classical as bl
from umask.bench.accuracy import grid as milan_eval
from umask.train.data.milan import read_internet_matrix

DATA = Path(__file__).resolve().parents[1] / "data" / "milan_telecom" / "milan_5x5_internet_10min_30d.csv.gz"
TRAIN_END, TEST_START = 3456, 3888


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    return read_internet_matrix(DATA)


@pytest.fixture(scope="module")
def a1_rows(matrix: np.ndarray) -> dict[str, dict[str, Any]]:
    return {r["model"]: r for r in milan_eval.evaluate_a1(matrix)}


@pytest.fixture(scope="module")
def a2_rows(matrix: np.ndarray) -> dict[str, dict[str, Any]]:
    return {r["model"]: r for r in milan_eval.evaluate_a2(matrix)}


# ---- baselines on hand-made arrays --------------------------------------------------------------
def test_last_value_forecast_repeats_last_history_value() -> None:
    hist = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    pred = bl.last_value_forecast(hist, 4)
    np.testing.assert_array_equal(pred, np.tile([[3.0, 30.0]], (4, 1)))
    batched = bl.last_value_forecast(np.stack([hist, hist + 1]), 2)
    assert batched.shape == (2, 2, 2)
    np.testing.assert_array_equal(batched[1], [[4.0, 31.0], [4.0, 31.0]])


def test_last_value_impute_carries_forward_and_backfills_start() -> None:
    x = np.array([np.nan, np.nan, 5.0, np.nan, 7.0, np.nan])[:, None]
    m = np.isnan(x)
    out = bl.last_value_impute(x, m)
    np.testing.assert_array_equal(out[:, 0], [5.0, 5.0, 5.0, 5.0, 7.0, 7.0])


def test_imputers_never_read_hidden_values() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 40, 4))
    m = rng.random(x.shape) < 0.7
    for fn in (bl.last_value_impute, bl.seasonal_naive_impute, bl.linear_interpolation_impute, bl.lowrank_impute,
               bl.lowrank_interpolation_impute):
        a = fn(x, m)
        b = fn(np.where(m, 1e6, x), m)
        c = fn(np.where(m, np.nan, x), m)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(a[~m], x[~m])  # observed entries untouched


def test_imputers_fill_a_fully_hidden_cell() -> None:
    x = np.zeros((5, 2))
    m = np.zeros((5, 2), dtype=bool)
    m[:, 1] = True
    for fn in (bl.last_value_impute, bl.seasonal_naive_impute, bl.linear_interpolation_impute, bl.lowrank_impute,
               bl.lowrank_interpolation_impute):
        np.testing.assert_array_equal(fn(x, m, fill=-3.0)[:, 1], -3.0)


def test_lowrank_impute_recovers_a_low_rank_matrix_that_interpolation_cannot() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 60, 2)) @ rng.normal(size=(2, 2, 12))           # two rank-2 (60, 12) windows, rough in time
    m = rng.random(x.shape) < 0.5
    lr = bl.lowrank_impute(x, m, rank=2, iters=300)
    li = bl.linear_interpolation_impute(x, m)
    err_lr, err_li = np.abs(lr - x)[m].mean(), np.abs(li - x)[m].mean()
    assert err_lr < 0.05 * err_li                                            # 0.024 vs 1.27 here
    blend = bl.lowrank_interpolation_impute(x, m, rank=2, iters=300, share=0.25)
    np.testing.assert_allclose(blend[m], 0.25 * lr[m] + 0.75 * li[m])
    # rank >= min(time, cells): nothing to complete, the start (interpolation) comes back
    np.testing.assert_allclose(bl.lowrank_impute(x, m, rank=12), li)
    with pytest.raises(ValueError, match="share"):
        bl.lowrank_interpolation_impute(x, m, share=1.5)


def test_lowrank_constants_are_the_validation_choice(matrix: np.ndarray, a2_rows: dict[str, dict[str, Any]]) -> None:
    """The frozen rank / share / iterations are the best of the sweep on the VALIDATION windows, and the row
    beats interpolation on the test windows (the cells observed at a slot inform a hidden one)."""
    sel = milan_eval.choose_lowrank(matrix)
    assert sel["split"] == "val" and sel["chosen"] == sel["frozen"]
    assert sel["nmae"][f"rank{bl.LOWRANK_RANK}_iters{bl.LOWRANK_ITERS}_share{bl.LOWRANK_SHARE}"] == min(
        v for k, v in sel["nmae"].items() if k.startswith("rank"))
    assert a2_rows["lowrank_interpolation"]["metrics"]["normalized_mae"] < \
        a2_rows["linear_interpolation"]["metrics"]["normalized_mae"]


def test_profile_lowrank_impute_blends_two_completions_and_reads_no_hidden_value() -> None:
    from umask.runtime.core import gridimpute

    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 48, 6))
    prof = rng.normal(size=x.shape)
    m = rng.random(x.shape) < 0.75
    m[1, :, 4] = True                                                        # a cell with nothing observed
    out = gridimpute.profile_lowrank_impute(x, m, prof, share=0.6)
    np.testing.assert_array_equal(out, gridimpute.profile_lowrank_impute(np.where(m, np.nan, x), m, prof, share=0.6))
    np.testing.assert_array_equal(out[~m], x[~m])
    np.testing.assert_array_equal(out[1, :, 4], prof[1, :, 4])               # the profile where nothing is seen
    plain = bl.lowrank_interpolation_impute(x, m)
    resid = prof + bl.lowrank_interpolation_impute(np.where(m, 0.0, x - prof), m)
    keep = m & ~m.all(axis=1, keepdims=True)
    np.testing.assert_allclose(out[keep], 0.6 * plain[keep] + 0.4 * resid[keep])
    np.testing.assert_allclose(gridimpute.profile_lowrank_impute(x, m, prof, share=1.0)[keep], plain[keep])
    # a profile that is the truth makes the deviation zero: the second completion returns the truth
    np.testing.assert_allclose(gridimpute.profile_lowrank_impute(x, m, x, share=0.0), x, atol=1e-12)
    with pytest.raises(ValueError, match="profile"):
        gridimpute.profile_lowrank_impute(x, m, prof[:, :10])
    with pytest.raises(ValueError, match="share"):
        gridimpute.profile_lowrank_impute(x, m, prof, share=-0.1)


def test_profile_lowrank_share_is_the_validation_choice(matrix: np.ndarray, a2_rows: dict[str, dict[str, Any]]) -> None:
    """The frozen share is the best of its sweep on the VALIDATION windows; on the test windows the row beats the
    lowrank_interpolation row it builds on (what the day-type profile adds)."""
    sel = milan_eval.choose_profile_share(matrix)
    assert sel["split"] == "val" and sel["chosen"] == sel["frozen"]
    assert sel["nmae"][f"share{sel['frozen']['share']}"] == min(sel["nmae"].values())
    row = a2_rows["profile_lowrank_interpolation"]["metrics"]
    assert row["normalized_mae"] < a2_rows["lowrank_interpolation"]["metrics"]["normalized_mae"]
    assert row["normalized_rmse"] < a2_rows["lowrank_interpolation"]["metrics"]["normalized_rmse"]


def test_seasonal_naive_forecast_exact_on_periodic_series() -> None:
    period = 6
    t = np.arange(5 * period)
    series = np.stack([np.sin(2 * np.pi * t / period), (t % period) ** 2], axis=1).astype(float)
    hist, future = series[: 2 * period], series[2 * period :]
    pred = bl.seasonal_naive_forecast(hist, len(future), period=period)  # horizon = 3 periods
    np.testing.assert_allclose(pred, future, atol=1e-12)
    # "one period earlier" literally for h < period
    hist2 = np.arange(20.0)[:, None]
    np.testing.assert_array_equal(bl.seasonal_naive_forecast(hist2, 3, period=5)[:, 0], [15.0, 16.0, 17.0])
    with pytest.raises(ValueError):
        bl.seasonal_naive_forecast(hist2, 3, period=21)


def test_seasonal_naive_impute_takes_nearest_observed_ties_earlier() -> None:
    x = np.array([1.0, np.nan, np.nan, np.nan, 9.0, np.nan, np.nan])[:, None]
    m = np.isnan(x)
    out = bl.seasonal_naive_impute(x, m)
    # slot 1: d=1 vs 3 -> 1; slot 2: tie -> earlier 1; slot 3: d=3 vs 1 -> 9; tail -> 9
    np.testing.assert_array_equal(out[:, 0], [1.0, 1.0, 1.0, 9.0, 9.0, 9.0, 9.0])


def test_linear_interpolation_exact_on_ramp_and_constant_at_ends() -> None:
    t = np.arange(30, dtype=float)
    x = np.stack([3.0 * t - 2.0, -0.5 * t + 4.0], axis=1)
    m = np.zeros_like(x, dtype=bool)
    m[[0, 1, 5, 6, 7, 8, 15, 28, 29], 0] = True
    m[[3, 4, 10, 11, 12, 13, 14, 20], 1] = True
    out = bl.linear_interpolation_impute(x, m)
    inner = np.ones_like(m)
    inner[[0, 1, 28, 29], 0] = False  # before the first / after the last observed entry of cell 0
    np.testing.assert_allclose(out[inner], x[inner], atol=1e-12)
    np.testing.assert_array_equal(out[[0, 1], 0], x[2, 0])
    np.testing.assert_array_equal(out[[28, 29], 0], x[27, 0])
    # agrees with np.interp (which extrapolates as a constant) on random gaps
    rng = np.random.default_rng(1)
    y = rng.normal(size=(50, 3))
    mm = rng.random(y.shape) < 0.75
    got = bl.linear_interpolation_impute(y, mm)
    for c in range(3):
        obs = np.flatnonzero(~mm[:, c])
        np.testing.assert_allclose(got[:, c], np.interp(np.arange(50), obs, y[obs, c]), atol=1e-12)


def test_historical_average_profile_uses_training_period_only() -> None:
    period = 4
    rng = np.random.default_rng(2)
    full = rng.normal(size=(5 * period, 3))
    train_end = 3 * period
    profile = bl.fit_historical_average(full[:train_end], period=period)
    np.testing.assert_allclose(profile, full[:train_end].reshape(3, period, 3).mean(axis=0))
    # slots lookup by time of day, any leading shape
    pred = bl.historical_average_forecast(profile, np.array([13, 16]), 3)
    np.testing.assert_array_equal(pred[0], profile[[1, 2, 3]])
    np.testing.assert_array_equal(pred[1], profile[[0, 1, 2]])
    # first_slot shifts the phase
    part = full[1 : 1 + train_end]
    shifted = bl.fit_historical_average(part, period=period, first_slot=1)
    for k in range(period):
        rows = [j for j in range(train_end) if (1 + j) % period == k]
        np.testing.assert_allclose(shifted[k], part[rows].mean(axis=0))


def test_historical_average_in_harness_ignores_later_periods(matrix: np.ndarray) -> None:
    from umask.train.data import splits

    z = splits.fit_scaler(matrix).transform(matrix)
    changed = z.copy()
    changed[TRAIN_END:] = 123.0  # validation and test values
    starts = np.array([3888, 4000])
    hist = z[starts[:, None] + np.arange(-288, 0)]
    a = milan_eval.baseline_forecasters(z)["historical_average"](hist, starts, 144)
    b = milan_eval.baseline_forecasters(changed)["historical_average"](hist, starts, 144)
    np.testing.assert_array_equal(a, b)
    changed[TRAIN_END - 1, 0] += 5.0  # the last training slot counts
    c = milan_eval.baseline_forecasters(changed)["historical_average"](hist, starts, 144)
    assert not np.array_equal(a, c)


def test_all_zero() -> None:
    np.testing.assert_array_equal(bl.all_zero((2, 3, 4)), np.zeros((2, 3, 4)))


# ---- harness on the real matrix -----------------------------------------------------------------
def test_a1_rows_windows_and_entries(a1_rows: dict[str, dict[str, Any]]) -> None:
    assert set(a1_rows) == {"last_value", "seasonal_naive", "historical_average", "all_zero", "profile_level",
                            "profile_median_level"}
    for r in a1_rows.values():
        assert r["dataset"] == "milan_5x5_internet (real)" and r["split"] == "test"
        assert r["n_windows"] == 289
        assert r["n_entries"] == 289 * 25 * 144
        assert r["seeds"]["model"] == "n/a"
        assert r["window"]["horizon_starts"] == "3888..4176"
        assert r["command"]
        assert all(np.isfinite(v) and v > 0 for v in r["metrics"].values())


def test_a2_rows_windows_and_entries(a2_rows: dict[str, dict[str, Any]]) -> None:
    from umask.train.data import splits

    hidden = sum(int(splits.imputation_mask(i)[1].sum()) for i in range(145))
    assert set(a2_rows) == {"last_value", "seasonal_naive", "linear_interpolation", "historical_average", "all_zero",
                            "lowrank_interpolation", "profile_lowrank_interpolation"}
    for r in a2_rows.values():
        assert r["n_windows"] == 145
        assert r["n_entries"] == hidden
        assert r["seeds"]["mask_seed_range"] == "1000..1144"
        assert r["window"]["starts"] == "3888..4032"


def _train_stats(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    train = matrix[:TRAIN_END]
    return train.mean(axis=0), train.std(axis=0)


def test_a1_last_value_recomputed_independently(matrix: np.ndarray, a1_rows: dict[str, dict[str, Any]]) -> None:
    mean, std = _train_stats(matrix)
    err_raw = np.empty((289, 144, 25))
    for i, s in enumerate(range(TEST_START, TEST_START + 289)):
        err_raw[i] = matrix[s - 1][None, :] - matrix[s : s + 144]
    err_z = err_raw / std
    m = a1_rows["last_value"]["metrics"]
    assert m["normalized_mae"] == pytest.approx(np.abs(err_z).mean(), rel=1e-10)
    assert m["normalized_rmse"] == pytest.approx(np.sqrt((err_z**2).mean()), rel=1e-10)
    assert m["raw_mae"] == pytest.approx(np.abs(err_raw).mean(), rel=1e-10)
    assert m["raw_rmse"] == pytest.approx(np.sqrt((err_raw**2).mean()), rel=1e-10)
    # raw MAE = normalized errors weighted by the per-cell training std
    assert m["raw_mae"] == pytest.approx((np.abs(err_z) * std).mean(), rel=1e-10)
    assert m["raw_rmse"] ** 2 == pytest.approx((err_z**2 * std**2).mean(), rel=1e-10)
    # all-zero on the standardized scale = training mean on the raw scale
    truth = np.stack([matrix[s : s + 144] for s in range(TEST_START, TEST_START + 289)])
    assert a1_rows["all_zero"]["metrics"]["raw_mae"] == pytest.approx(np.abs(truth - mean).mean(), rel=1e-10)


def test_a1_profile_median_level_recomputed_independently(matrix: np.ndarray,
                                                          a1_rows: dict[str, dict[str, Any]]) -> None:
    """The median row by hand: per cell and slot of day the median of the training days of the same day type
    (slot 0 = Friday 2013-11-01), plus half the history's mean gap to that profile over its last 36 slots."""
    mean, std = _train_stats(matrix)
    z = (matrix - mean) / std
    days = z[:TRAIN_END].reshape(24, 144, 25)
    weekend = np.array([(4 + d) % 7 >= 5 for d in range(24)])
    med = {False: np.median(days[~weekend], axis=0), True: np.median(days[weekend], axis=0)}

    def profile(slot: int) -> np.ndarray:
        return med[(4 + slot // 144) % 7 >= 5][slot % 144]

    errs = []
    for s in range(TEST_START, TEST_START + 289, 16):
        level = np.mean([z[t] - profile(t) for t in range(s - 36, s)], axis=0)
        pred = np.stack([profile(t) for t in range(s, s + 144)]) + 0.5 * level
        errs.append(pred - z[s:s + 144])
    sub = milan_eval.evaluate_a1(matrix, {"m": milan_eval.baseline_forecasters(z)["profile_median_level"]}, stride=16)
    assert sub[0]["metrics"]["normalized_mae"] == pytest.approx(np.abs(errs).mean(), rel=1e-9)
    # the row is the median twin of the mean profile row (same level term), and both read only training days
    assert a1_rows["profile_median_level"]["metrics"] != a1_rows["profile_level"]["metrics"]
    with pytest.raises(Exception, match="decay"):
        from umask.runtime.core import gridscale
        gridscale.day_type_profiles(z, TRAIN_END, 144, 4, 0.9, statistic="median")


def test_a2_linear_interpolation_recomputed_independently(
    matrix: np.ndarray, a2_rows: dict[str, dict[str, Any]]
) -> None:
    _, std = _train_stats(matrix)
    errs_raw, cells = [], []
    for i, s in enumerate(range(TEST_START, TEST_START + 145)):
        rng = np.random.default_rng(1000 + i)
        p = rng.uniform(0.7, 0.8)
        hidden = rng.random((288, 25)) < p
        truth = matrix[s : s + 288]
        for c in range(25):
            obs = np.flatnonzero(~hidden[:, c])
            est = np.interp(np.arange(288), obs, truth[obs, c])
            errs_raw.append((est - truth[:, c])[hidden[:, c]])
            cells.append(np.full(int(hidden[:, c].sum()), c))
    err_raw = np.concatenate(errs_raw)
    err_z = err_raw / std[np.concatenate(cells)]
    m = a2_rows["linear_interpolation"]["metrics"]
    assert a2_rows["linear_interpolation"]["n_entries"] == err_raw.size
    assert m["normalized_mae"] == pytest.approx(np.abs(err_z).mean(), rel=1e-9)
    assert m["normalized_rmse"] == pytest.approx(np.sqrt((err_z**2).mean()), rel=1e-9)
    assert m["raw_mae"] == pytest.approx(np.abs(err_raw).mean(), rel=1e-9)
    assert m["raw_rmse"] == pytest.approx(np.sqrt((err_raw**2).mean()), rel=1e-9)


def test_seasonal_naive_beats_last_value_on_a1(a1_rows: dict[str, dict[str, Any]]) -> None:
    sn, lv = a1_rows["seasonal_naive"]["metrics"], a1_rows["last_value"]["metrics"]
    for key in ("normalized_mae", "normalized_rmse", "raw_mae", "raw_rmse"):
        assert sn[key] < lv[key]


def test_generic_predict_fn_sees_protocol_windows(matrix: np.ndarray) -> None:
    from umask.train.data import splits

    z = splits.fit_scaler(matrix).transform(matrix)

    def oracle(history: np.ndarray, starts: np.ndarray, horizon: int) -> np.ndarray:
        np.testing.assert_array_equal(history, z[starts[:, None] + np.arange(-288, 0)])
        return z[starts[:, None] + np.arange(horizon)]

    rows = milan_eval.evaluate_a1(matrix, {"oracle": oracle}, model_info={"oracle": {"seeds": [7], "samples": 1}})
    assert len(rows) == 1 and rows[0]["model"] == "oracle"
    assert rows[0]["metrics"]["normalized_mae"] == 0.0 and rows[0]["metrics"]["raw_rmse"] == 0.0
    assert rows[0]["seeds"]["model"] == [7] and rows[0]["samples"] == 1

    def peeker(observed: np.ndarray, mask: np.ndarray, starts: np.ndarray) -> np.ndarray:
        assert np.array_equal(np.isnan(observed), mask)  # hidden entries are not readable
        return np.nan_to_num(observed, nan=0.0)

    (row,) = milan_eval.evaluate_a2(matrix, {"zero_fill": peeker})
    a2_zero = milan_eval.evaluate_a2(matrix, {"z": lambda x, m, s: np.where(m, 0.0, x)})[0]
    assert row["metrics"] == a2_zero["metrics"]

    with pytest.raises(ValueError, match="shape"):
        milan_eval.evaluate_a1(matrix, {"bad": lambda h, s, n: h})


def test_main_writes_json_and_markdown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "res" / "milan.json"
    assert milan_eval.main(["--out", str(out), "--tasks", "a1"]) == 0
    rows = json.loads(out.read_text())
    assert [r["model"] for r in rows] == ["last_value", "seasonal_naive", "historical_average", "all_zero",
                                          "profile_level", "profile_median_level"]
    assert rows[0]["command"] == f"python -m umask.bench.accuracy.grid --out {out} --tasks a1"
    table = out.with_suffix(".md").read_text()
    assert "| A1 forecasting (48h -> 24h) | seasonal_naive | 289 | 1040400 |" in table
    assert table in capsys.readouterr().out
    assert sorted(q.name for q in out.parent.iterdir()) == ["milan.json", "milan.md"]  # no temp files left


def test_evaluate_by_task_name_with_a_stride(matrix: np.ndarray, a1_rows: dict[str, dict[str, Any]]) -> None:
    from umask.runtime.core.errors import InputError
    from umask.train.data import splits

    rows = {r["model"]: r for r in milan_eval.evaluate("A1", matrix)}
    assert rows == a1_rows
    sub = {r["model"]: r for r in milan_eval.evaluate("a2", matrix, stride=8)}
    idx = range(0, 145, 8)
    hidden = sum(int(splits.imputation_mask(i)[1].sum()) for i in idx)
    r = sub["last_value"]
    assert r["n_windows"] == len(idx) == 19 and r["n_entries"] == hidden
    assert r["seeds"]["mask_seed_range"] == "1000..1144 step 8" and "subset" in r["window"]
    with pytest.raises(InputError, match="a1 or a2"):
        milan_eval.evaluate("b1", matrix)
    # the harness's scale: the training period's mean and population std, per cell
    spec = milan_eval.GridSpec(matrix)
    mean, std = _train_stats(matrix)
    np.testing.assert_allclose(spec.scaler.std, std, rtol=1e-12)
    np.testing.assert_allclose(spec.z[TEST_START], (matrix[TEST_START] - mean) / std, rtol=1e-10)


# ---- any grid: a GridData brings its own periods and window lengths --------------------------------
def _grid(values: np.ndarray, h: int, w: int, minutes: int, source: str = "cut.csv") -> Any:
    from umask.train.data.grids import GridData

    return GridData(values=values, height=h, width=w, slot_minutes=minutes, adjacency=None, source=source, data="real")


def test_milan_griddata_rows_identical_to_matrix_rows(matrix: np.ndarray, a2_rows: dict[str, dict[str, Any]]) -> None:
    from umask.train.data.grids import milan_grid

    rows = {r["model"]: r for r in milan_eval.evaluate_a2(milan_grid())}
    assert rows == a2_rows


def test_hourly_3x4_grid_uses_its_own_splits(matrix: np.ndarray) -> None:
    # REAL values: a 3x4 sub-block of the Milan block, summed to hourly slots, 10 days only
    cols = [r * 5 + c for r in range(1, 4) for c in range(4)]
    hourly = matrix[:, cols].reshape(30, 24, 6, 12).sum(axis=2).reshape(720, 12)[: 24 * 20]  # 20 days
    grid = _grid(hourly, 3, 4, 60)
    assert grid.splits() == {"train": (0, 384), "val": (384, 432), "test": (432, 480)}
    (row,) = [r for r in milan_eval.evaluate_a1(grid) if r["model"] == "last_value"]
    # independent: history 48 h, horizon 24 h, test horizons starting 432 .. 456
    train = hourly[:384]
    std = train.std(axis=0)
    starts = range(432, 480 - 24 + 1)
    err = np.stack([hourly[s - 1][None, :] - hourly[s : s + 24] for s in starts])
    assert row["n_windows"] == len(starts) == 25 and row["window"]["horizon_starts"] == "432..456"
    assert row["window"]["history"] == 48 and row["window"]["horizon"] == 24
    assert row["metrics"]["raw_mae"] == pytest.approx(np.abs(err).mean(), rel=1e-10)
    assert row["metrics"]["normalized_mae"] == pytest.approx(np.abs(err / std).mean(), rel=1e-10)
    assert row["dataset"].startswith("cut.csv 3x4, 60-min slots") and "0..383" in row["scale"]
    # a Milan-range harness would have cut windows past the end of this grid: the rows say 2 days -> 1 day
    a2 = {r["model"]: r for r in milan_eval.evaluate_a2(grid)}
    assert a2["last_value"]["window"]["length"] == 48 and a2["last_value"]["window"]["starts"] == "432..432"
    assert "24 per day" in a2["historical_average"]["notes"]


def test_grid_warnings_and_too_short_periods(matrix: np.ndarray, caplog: pytest.LogCaptureFixture) -> None:
    from umask.runtime.core.errors import InputError

    values = matrix[:, :4].copy()
    values[:, 2] = 5.0  # a constant cell: its training std is 0
    with caplog.at_level("WARNING"):
        rows = milan_eval.evaluate_a1(_grid(values, 2, 2, 10), {"z": lambda h, s, n: np.zeros((h.shape[0], n, 4))})
    assert any("cells [2] have a training std of ~0" in w for w in rows[0]["warnings"])
    assert "training std of ~0" in caplog.text
    assert "warnings" not in milan_eval.evaluate_a1(matrix, {"z": lambda h, s, n: np.zeros((h.shape[0], n, 25))})[0]
    # 10 days of 10-min slots: 1 test day holds A1 windows but no 2-day A2 window
    short = _grid(matrix[: 10 * 144, :4], 2, 2, 10)
    assert milan_eval.evaluate_a1(short)[0]["n_windows"] == 1
    with pytest.raises(InputError, match="A2: the test period of this grid .* holds no window of 288 slots"):
        milan_eval.evaluate_a2(short)


def test_main_on_a_grid_csv(tmp_path: Path, matrix: np.ndarray) -> None:
    data = tmp_path / "g.csv"
    np.savetxt(data, matrix[:, [0, 1, 2, 5, 6, 7]], delimiter=",")
    out = tmp_path / "g.json"
    assert milan_eval.main(["--data", str(data), "--grid", "2x3", "--out", str(out), "--tasks", "a1"]) == 0
    rows = json.loads(out.read_text())
    assert rows[0]["dataset"].startswith("g.csv 2x3") and rows[0]["n_entries"] == 289 * 144 * 6
