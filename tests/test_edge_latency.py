"""llama-bench-style repetitions and the CPU's int8 flags in every latency row (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest

from umask.bench.latency import rows as latrows
from umask.bench.latency import timing
from umask.runtime.engines.ort import cpu_int8_caps


class FakeClock:
    """Each fn() call advances the clock by the next of ``costs`` (s), cycling."""

    def __init__(self, costs):  # noqa: ANN001
        self.t, self.costs, self.i = 0.0, list(costs), 0

    def __call__(self) -> float:
        return self.t

    def fn(self) -> None:
        self.t += self.costs[self.i % len(self.costs)]
        self.i += 1


def test_measure_splits_samples_into_repetitions() -> None:
    cfg = timing.TimingConfig(warmup_s=0.0, duration_s=0.0, min_samples=10, max_samples=10, burn_in_s=0.0,
                              repetitions=5)
    clock = FakeClock([0.001])
    t = timing.measure(clock.fn, cfg, clock=clock)
    assert [len(r) for r in t.reps] == [2] * 5 and len(t.samples_ms) == 10
    rep = t.repetitions()
    assert rep["n"] == 5 and rep["samples_per_rep"] == [2] * 5
    assert rep["mean"] == pytest.approx(1.0) and rep["std"] == pytest.approx(0.0, abs=1e-9)
    # a drift between repetitions shows as the std of the repetition means
    clock = FakeClock([0.001, 0.001, 0.001, 0.003, 0.003])       # warm-up takes the first call
    t = timing.measure(clock.fn, timing.TimingConfig(warmup_s=0.0, duration_s=0.0, min_samples=4, max_samples=4,
                                                     burn_in_s=0.0, repetitions=2), clock=clock)
    r = t.repetitions()
    means = [float(np.mean(x)) for x in t.reps]
    assert r["rep_means"] == pytest.approx(means) and r["std"] == pytest.approx(float(np.std(means, ddof=1)), abs=1e-4)
    assert r["std"] > 0.5 and r["p50"] == pytest.approx(timing.percentile(t.samples_ms, 50))
    assert r["p99"] == pytest.approx(timing.percentile(t.samples_ms, 99))


def test_repetitions_never_exceed_the_sample_budget() -> None:
    for lo, hi, reps in ((1, 1, 5), (3, 3, 5), (20, 2000, 5), (7, 7, 3), (8, 9, 3)):
        cfg = timing.TimingConfig(warmup_s=0.0, duration_s=0.0, min_samples=lo, max_samples=hi, burn_in_s=0.0,
                                  repetitions=reps)
        clock = FakeClock([0.001])
        t = timing.measure(clock.fn, cfg, clock=clock)
        assert lo <= len(t.samples_ms) <= hi and t.repetitions()["n"] == min(reps, lo)
    with pytest.raises(ValueError, match="repetitions"):
        timing.TimingConfig(repetitions=0)


def test_every_row_has_repetitions_and_cpu_int8() -> None:
    case = latrows.Case("denoiser_step", "numpy", np.__version__, "fp32", lambda: sum(range(1000)), threads=1)
    row = latrows.run_case(case, timing.TimingConfig(warmup_s=0.0, duration_s=0.0, min_samples=6, max_samples=6,
                                                     burn_in_s=0.0, repetitions=3), {"git_commit": "abc"})
    assert tuple(row) == latrows.ROW_FIELDS
    assert row["repetitions"]["n"] == 3 and sum(row["repetitions"]["samples_per_rep"]) == row["samples"] == 6
    assert row["cpu_int8"] == cpu_int8_caps()
    for bad in (dict(row, repetitions={}), dict(row, cpu_int8=None),
                dict(row, repetitions={**row["repetitions"], "samples_per_rep": [1]})):
        with pytest.raises(ValueError, match="repetitions|cpu_int8"):
            latrows.validate_row(bad)
    md = latrows.markdown_summary([row], {"machine": {}, "timing": timing.QUICK_TIMING.__dict__})
    assert "mean ± std of reps" in md and "(r=3)" in md and "CPU int8 dot product" in md
