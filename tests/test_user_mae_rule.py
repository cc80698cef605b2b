"""The validation-calibrated MAE rule (benchmarks/accuracy/user_mae_rule.py): what it does to a
prediction, and that calibrating on a real (simulated) validation day picks the rule that is best there."""

from __future__ import annotations

import math

import numpy as np
import pytest

from umask.bench.accuracy import user as ue
from umask.bench.accuracy.user_mae_rule import LastCall, ZeroRule, calibrate, ruled
from umask.bench.accuracy.user_scoring import _group_slices, error_sums
from umask.runtime.core.featurize import ChannelLayout


def test_rule_zeroes_small_means_and_sets_levels_per_group() -> None:
    ch = ChannelLayout(n_categories=3)                       # C = 5: traffic, 3 apps, location
    pred = np.full((2, ch.n_channels, 4, 2, 2), 0.3, np.float32)
    pred[:, :, 0] = 0.9
    rule = ZeroRule({"traffic": 0.5, "app": 0.0, "location": 0.5}, {"location": 1.0})
    out = rule.apply(pred, ch)
    sl = _group_slices(ch)
    assert np.all(out[:, sl["traffic"], 1:] == 0) and np.allclose(out[:, sl["traffic"], 0], 0.9)
    assert np.allclose(out[:, sl["app"]], pred[:, sl["app"]])               # tau 0, no level: unchanged
    assert np.all(out[:, sl["location"], 0] == 1.0) and np.all(out[:, sl["location"], 1:] == 0)
    assert np.allclose(pred[:, :, 1:], 0.3)                                  # the input is not modified
    assert ZeroRule({"traffic": math.inf}).apply(pred, ch)[:, sl["traffic"]].max() == 0


@pytest.fixture(scope="module")
def pop() -> ue.UserPopulation:
    return ue.simulated_population(3, 0)


def _mae(pop: ue.UserPopulation, fn, task: str, split: str) -> dict[str, float]:
    s: dict[str, list[float]] = {}
    for b in ue.iter_batches(pop, task, split, 32):
        for g, v in error_sums(fn(b.model_view()), b.truth, b.eval_mask, b.channels).items():
            acc = s.setdefault(g, [0.0, 0.0])
            acc[0] += v["sae"]
            acc[1] += v["n"]
    return {g: a / max(n, 1.0) for g, (a, n) in s.items()}


def test_calibration_picks_the_validation_best_and_never_loses_to_its_endpoints(pop) -> None:
    base = ue.v2_baseline_models(pop)
    models = {"blend": base["blend"], "all_zero": base["all_zero"]}
    rules, record = calibrate(pop, models, ["B2"])
    ruled_blend = ruled(base["blend"], rules["blend"])
    val = _mae(pop, ruled_blend, "B2", "val")
    for g, plain in _mae(pop, base["blend"], "B2", "val").items():
        zero = _mae(pop, base["all_zero"], "B2", "val")[g]
        # the chosen rule is the argmin over a grid that holds both "keep the mean" and "all zero"
        assert val[g] <= min(plain, zero) + 1e-12
        assert math.isclose(val[g], min(record["val_mae_per_tau"]["blend"]["B2"][g]), rel_tol=0, abs_tol=6e-7)   # the record rounds to 6 decimals
    # on sparse behavior data the mean is a poor MAE estimator: the rule moves off tau = 0 somewhere
    assert any(r["tau"] != 0.0 for r in record["chosen"]["blend"]["B2"].values())
    with pytest.raises(NotImplementedError, match="B4"):
        next(ruled(base["blend"], rules["blend"])(b.model_view()) for b in ue.iter_batches(pop, "B4", "test", 32))


def test_last_call_evaluates_once_per_view(pop) -> None:
    calls = []

    def fn(view):
        calls.append(view)
        return np.zeros(1)

    lc = LastCall(fn)
    views = [b.model_view() for b in ue.iter_batches(pop, "B2", "test", 2)][:2]
    lc(views[0]), lc(views[0]), lc(views[1]), lc(views[1])
    assert len(calls) == 2
