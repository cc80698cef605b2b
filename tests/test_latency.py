"""Latency harness (benchmarks/latency/): percentiles, time-based warm-up, row schema, peak RSS, --quick on a tiny bundle."""

from __future__ import annotations

import csv
import io
import mmap
import json
import random
from pathlib import Path

import numpy as np
import pytest

from umask.bench.latency import cli, machine, timing
from umask.bench.latency import rows as latrows


class FakeClock:
    """A clock that advances by ``step`` seconds per call of the timed function."""

    def __init__(self, step: float) -> None:
        self.t = 0.0
        self.step = step
        self.calls = 0

    def __call__(self) -> float:
        return self.t

    def fn(self) -> None:
        self.calls += 1
        self.t += self.step


def test_percentile_on_a_known_sequence() -> None:
    vals = list(range(1, 101))
    random.Random(0).shuffle(vals)
    assert timing.percentile(vals, 50) == pytest.approx(50.5)
    assert timing.percentile(vals, 90) == pytest.approx(90.1)
    assert timing.percentile(vals, 99) == pytest.approx(99.01)
    assert timing.percentile(vals, 0) == 1 and timing.percentile(vals, 100) == 100
    for q in (5, 37.5, 95, 99.9):
        assert timing.percentile(vals, q) == pytest.approx(float(np.percentile(vals, q)))
    assert timing.percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        timing.percentile([], 50)
    with pytest.raises(ValueError):
        timing.percentile([1.0], 101)


def test_latency_summary_is_ordered_and_complete() -> None:
    s = timing.latency_summary([5.0, 1.0, 3.0, 2.0, 4.0])
    assert set(s) == set(latrows.LATENCY_KEYS)
    assert s["min"] == 1.0 and s["max"] == 5.0 and s["p50"] == 3.0 and s["mean"] == 3.0
    assert s["min"] <= s["p50"] <= s["p90"] <= s["p95"] <= s["p99"] <= s["max"]


def test_warmup_is_time_based_then_samples_until_count_and_duration() -> None:
    step = 2.0 ** -6                                  # every call takes 15.625 ms (exact in binary)
    clock = FakeClock(step)
    cfg = timing.TimingConfig(warmup_s=5 * step, duration_s=0.0, min_samples=3, max_samples=100, burn_in_s=0.0)
    t = timing.measure(clock.fn, cfg, clock=clock)
    assert t.warmup_iters == 5 and t.warmup_s == pytest.approx(5 * step)
    assert t.samples_ms == pytest.approx([1e3 * step] * 3)
    assert clock.calls == 8
    # no warm-up time: still one warm-up call; duration wins over min_samples; max_samples caps
    clock = FakeClock(step)
    t = timing.measure(clock.fn, timing.TimingConfig(warmup_s=0.0, duration_s=10 * step, min_samples=1, max_samples=100),
                    clock=clock)
    assert t.warmup_iters == 1 and len(t.samples_ms) == 10
    clock = FakeClock(step)
    t = timing.measure(clock.fn, timing.TimingConfig(warmup_s=0.0, duration_s=10.0, min_samples=1, max_samples=7),
                    clock=clock)
    assert len(t.samples_ms) == 7
    # a slower function gets fewer warm-up calls for the same warm-up time
    clock = FakeClock(2 * step)
    assert timing.measure(clock.fn, cfg, clock=clock).warmup_iters == 3
    with pytest.raises(ValueError):
        timing.TimingConfig(min_samples=0)


def test_burn_in_runs_for_the_given_time() -> None:
    clock = FakeClock(0.25)
    assert timing.burn_in(clock.fn, 1.0, clock=clock) == 4
    assert timing.burn_in(clock.fn, 0.0, clock=clock) == 0


def _row(fn=lambda: sum(range(100)), **kw):  # noqa: ANN001, ANN202
    case = latrows.Case("denoiser_step", "numpy", np.__version__, "fp32", fn, threads=1, batch=2,
                    shapes={"x": [2, 3]}, artifact=[], artifact_bytes=123,
                    parity=lambda: {"reference": "self", "max_abs_diff": 0.0}, **kw)
    env = {"git_commit": "abc", "machine_tag": "test machine"}
    return latrows.run_case(case, timing.QUICK_TIMING, env)


def test_row_schema_csv_and_markdown() -> None:
    row = _row()
    assert tuple(row) == latrows.ROW_FIELDS
    latrows.validate_row(row)
    assert row["samples"] == timing.QUICK_TIMING.min_samples and row["warmup_iters"] >= 1
    assert row["peak_rss_mb"] > 0 and row["peak_rss_method"]
    assert row["name"] == "denoiser_step/numpy/fp32/cpu/t1"
    bad = dict(row)
    del bad["artifact_bytes"]
    with pytest.raises(ValueError, match="missing"):
        latrows.validate_row(bad)
    bad = dict(row, latency_ms={**row["latency_ms"], "p50": row["latency_ms"]["max"] + 1})
    with pytest.raises(ValueError, match="ordered"):
        latrows.validate_row(bad)
    with pytest.raises(ValueError, match="component"):
        latrows.validate_row(dict(row, component="warp_drive"))
    text = latrows.rows_csv([row, row])
    recs = list(csv.DictReader(io.StringIO(text)))
    assert len(recs) == 2 and float(recs[0]["latency_ms.p50"]) == row["latency_ms"]["p50"]
    assert recs[0]["shapes.x"] == "2 3"
    meta = {"machine": machine.machine_info(), "timing": timing.QUICK_TIMING.__dict__, "load_before": [0.1, 0, 0],
            "load_after": [0.1, 0, 0], "date": "d", "git_commit": "abc", "mode": "quick", "command": "c"}
    md = latrows.markdown_summary([row], meta, ["TensorRT: absent"])
    assert "| denoiser_step | numpy" in md and "- TensorRT: absent" in md


def test_peak_rss_sees_an_allocation() -> None:
    with timing.PeakRSS() as base:
        pass
    with timing.PeakRSS() as peak:
        # 64 MB of FRESH pages (an anonymous mmap): a numpy array could land in memory the allocator already
        # holds resident from earlier tests of a long pytest process, and then the resident set would not grow
        m = mmap.mmap(-1, 64 * 2**20)
        a = np.frombuffer(m, dtype=np.uint8)
        a[:] = 1                                       # 64 MB touched
        assert int(a[::4096].sum()) == 64 * 2**20 // 4096
        del a
        m.close()
    if not peak.method.startswith(("VmHWM", "VmRSS")):
        pytest.skip(f"no per-block peak here ({peak.method})")
    assert peak.mb >= base.mb + 50


def test_request_ratios_against_torch() -> None:
    def r(engine: str, p50: float, prec: str = "fp32") -> dict:
        return {"component": "request_profile_cached", "engine": engine, "device": "cpu", "threads": 1,
                "spinning": False if engine != "torch" else None, "precision": prec, "provider": "CPU",
                "latency_ms": {"p50": p50}}
    out = latrows.request_ratios([r("torch", 200.0), r("onnxruntime", 50.0, "int8_qdq")])
    assert list(out.values()) == [0.25] and "int8_qdq" in next(iter(out))
    # a torch row at another sampler configuration (the harness's --reference) gets its own ratio
    rows = [r("torch", 200.0), r("onnxruntime", 50.0)]
    for x, (steps, n) in zip(rows, ((1, 1), (1, 1))):
        x["request"] = {"sampler": "ddim", "steps": steps, "n_samples": n}
    ref = {**r("torch", 5000.0), "request": {"sampler": "ddim", "steps": 50, "n_samples": 2}}
    out = latrows.request_ratios([*rows, ref])
    assert sorted(out.values()) == [0.01, 0.25]
    assert any("ddim 50 steps x 2 draws" in k for k, v in out.items() if v == 0.01)


@pytest.mark.slow
def test_quick_mode_on_a_tiny_exported_bundle(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from export_fixtures import tiny_bundle

    ckpt, bundle = tiny_bundle()
    out = tmp_path / "latency.json"
    assert cli.main(["--bundle", str(bundle), "--ckpt", str(ckpt), "--quick", "--metric", "--out", str(out),
                     "--reference", "ddim:3:1", "--v2-out", str(tmp_path / "v2_lat.json")]) == 0
    res = json.loads(out.read_text())
    rows = res["rows"]
    for row in rows:
        latrows.validate_row(row)
    have = {(r["component"], r["engine"].split()[0], r["precision"]) for r in rows}
    for comp in ("denoiser_step", "mask_generator", "profile_mlp", "profile_encoder", "request_profile_cached"):
        assert (comp, "torch", "fp32") in have and (comp, "onnxruntime", "fp32") in have, comp
    man = json.loads((bundle / "manifest.json").read_text())
    for p, ours in (("fp16", "fp16"), ("int8-qdq", "int8_qdq"), ("int8-dynamic", "int8_dynamic")):
        if man["artifacts"][p]["dit"]["status"] == "ok":
            assert ("denoiser_step", "onnxruntime", ours) in have
            assert ("request_profile_cached", "onnxruntime", ours) in have
    fp32_req = [r for r in rows if r["component"] == "request_profile_cached" and r["engine"] != "torch"
                and r["precision"] == "fp32"][0]
    assert fp32_req["parity"]["max_abs_diff"] < 1e-3            # same noise, same numpy sampler
    par = fp32_req["parity"]
    assert par["n_requests"] >= 6 and par["metric"] == "short_term_active_mae"
    assert par["value"] == pytest.approx(par["reference_value"], abs=1e-3)   # fp32 Session == torch on the metric
    assert par["max_abs_diff_all_requests"] < 1e-3
    assert any(s.startswith("TensorRT:") for s in res["skipped"]) or any(r["engine"] == "tensorrt" for r in rows)
    assert res["meta"]["mode"].startswith("quick") and res["meta"]["load_before"] is not None
    assert len(list(csv.DictReader(io.StringIO(out.with_suffix(".csv").read_text())))) == len(rows)
    assert "request_profile_cached" in out.with_suffix(".md").read_text()
    assert any(k.startswith("onnxruntime") for k in res["meta"]["ratios"])
    ref = [r for r in rows if r["component"] == "request_profile_cached" and r["engine"].startswith("torch")
           and r["request"]["steps"] == 3]
    assert len(ref) == 1 and ref[0]["request"]["n_samples"] == 1 and ref[0]["parity"] is None
    assert any("ddim 3 steps x 1 draws" in k for k in res["meta"]["ratios"])
    from umask.bench.reports import scoreboard as sb

    v2 = json.loads((tmp_path / "v2_lat.json").read_text())
    got = list(sb._v2_rows(tmp_path / "v2_lat.json", v2, "abc1234", "2026-12-06"))
    n_req = sum(r["component"] == "request_profile_cached" and r["device"] == "cpu" for r in rows)
    assert len(got) == 2 * n_req and {r["model"] for r in v2["rows"]} == {"umask_small", "umask_small@ddim3x1"}
