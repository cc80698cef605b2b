"""Latency measurement: time-based warm-up, samples, percentiles, burn-in and the peak RSS of a configuration.

Used by the latency harness (``python -m umask.bench.latency.harness``) and the steps sweep. Follows
``trtexec`` / ``onnxruntime_perf_test``: a TIME-based warm-up (at least one call), then timed calls
until both ``min_samples`` and ``duration_s`` are reached (at most ``max_samples``); a global
nanoGPT-style burn-in before the first configuration. The timed calls are split into
``repetitions`` back-to-back repetitions (llama-bench's ``-r``: the same sample budget, cut in R
parts); every row reports the mean and std of the repetition means and the p50 / p99 of all samples
(`repetition_summary`), so a run-to-run drift shows as a std, not as a hidden outlier. Peak RSS: Linux ``VmHWM`` after resetting it
through ``/proc/self/clear_refs``; falls back to ``ru_maxrss`` (labeled).
"""

from __future__ import annotations

import math
import resource
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class TimingConfig:
    """Warm-up and sample policy (trtexec-like: --warmUp ms, --duration s, --iterations min)."""

    warmup_s: float = 1.0          # time-based warm-up; at least one call
    duration_s: float = 3.0        # keep sampling until this much time has passed ...
    min_samples: int = 20          # ... and at least this many samples were taken
    max_samples: int = 2000        # hard cap
    burn_in_s: float = 3.0         # global burn-in before the first configuration (nanoGPT bench.py)
    repetitions: int = 5           # llama-bench -r: the sample budget split in this many repetitions

    def __post_init__(self) -> None:
        if self.warmup_s < 0 or self.duration_s < 0 or self.burn_in_s < 0:
            raise ValueError("warmup_s, duration_s and burn_in_s must be >= 0")
        if not 1 <= self.min_samples <= self.max_samples:
            raise ValueError(f"need 1 <= min_samples <= max_samples, got {self.min_samples}, {self.max_samples}")
        if self.repetitions < 1:
            raise ValueError(f"repetitions must be >= 1, got {self.repetitions}")

    def per_repetition(self) -> list[tuple[float, int, int]]:
        """(duration_s, min_samples, max_samples) of each repetition: min(repetitions, min_samples) of them,
        the budget divided so the totals are exactly the config's (sum of minima = min_samples, of maxima =
        max_samples, of durations = duration_s)."""
        r = min(self.repetitions, self.min_samples)
        return [(self.duration_s / r, self.min_samples // r + (i < self.min_samples % r),
                 self.max_samples // r + (i < self.max_samples % r)) for i in range(r)]


FULL_TIMING = TimingConfig()
QUICK_TIMING = TimingConfig(warmup_s=0.05, duration_s=0.0, min_samples=3, max_samples=3, burn_in_s=0.0, repetitions=3)


@dataclass
class Timing:
    warmup_iters: int
    warmup_s: float                 # warm-up time actually spent
    samples_ms: list[float]         # all samples, in order
    reps: list[list[float]] | None = None   # the same samples per repetition (None: one repetition)

    def summary(self) -> dict[str, float]:
        return latency_summary(self.samples_ms)

    def repetitions(self) -> dict[str, Any]:
        return repetition_summary(self.reps or [self.samples_ms])


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between order statistics
    (numpy's default "linear" method: rank (n - 1) q / 100)."""
    if not len(values):
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be in [0, 100], got {q}")
    s = sorted(float(v) for v in values)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def latency_summary(samples_ms: Sequence[float]) -> dict[str, float]:
    """min / p50 / p90 / p95 / p99 / max / mean / std (population) of the samples, in ms."""
    if not len(samples_ms):
        raise ValueError("no samples")
    a = np.asarray(samples_ms, np.float64)
    out = {"min": float(a.min())}
    out.update({f"p{q}": percentile(a.tolist(), q) for q in PERCENTILES})
    out.update({"max": float(a.max()), "mean": float(a.mean()), "std": float(a.std())})
    return {k: round(v, 4) for k, v in out.items()}


def repetition_summary(reps: Sequence[Sequence[float]]) -> dict[str, Any]:
    """llama-bench-style repetitions: ``n`` repetitions, ``mean`` and ``std`` (sample std, ddof 1; 0 for one
    repetition) of the per-repetition mean latencies, ``p50`` / ``p99`` of all samples pooled, and the
    repetition means themselves (ms)."""
    reps = [list(r) for r in reps if len(r)]
    if not reps:
        raise ValueError("no samples")
    means = np.array([float(np.mean(r)) for r in reps])
    pooled = [x for r in reps for x in r]
    return {"n": len(reps), "samples_per_rep": [len(r) for r in reps], "mean": round(float(means.mean()), 4),
            "std": round(float(means.std(ddof=1)) if len(reps) > 1 else 0.0, 4),
            "p50": round(percentile(pooled, 50), 4), "p99": round(percentile(pooled, 99), 4),
            "rep_means": [round(float(m), 4) for m in means]}


def split_summary(samples_ms: Sequence[float], repetitions: int) -> dict[str, Any]:
    """{latency_ms, repetitions, samples} of samples taken in order, cut into ``repetitions`` consecutive
    equal parts (the remainder goes to the last one): for harnesses that time in their own loop."""
    v = list(samples_ms)
    r = max(1, min(int(repetitions), len(v)))
    per = len(v) // r
    reps = [v[i * per:(i + 1) * per] if i < r - 1 else v[i * per:] for i in range(r)]
    return {"latency_ms": latency_summary(v), "repetitions": repetition_summary(reps), "samples": len(v)}


def write_json_md(out: Path, obj: Any, md: str) -> list[Path]:
    """``out`` (JSON of ``obj``) and ``out`` with suffix .md (``md``), each written atomically."""
    import json
    import os

    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out, out.with_suffix(".md")]
    for path, text in zip(paths, (json.dumps(obj, indent=1, default=str) + "\n", md)):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return paths


def measure(fn: Callable[[], Any], cfg: TimingConfig, *, clock: Callable[[], float] = time.perf_counter,
            sync: Callable[[], None] | None = None) -> Timing:
    """Time ``fn()``: time-based warm-up, then samples (see `TimingConfig`). ``sync`` runs after
    each call inside the timed region (e.g. ``torch.cuda.synchronize``). ``clock`` is injectable for tests."""
    t0 = clock()
    n_warm = 0
    while True:                                  # at least one warm-up call, then until warmup_s passed
        fn()
        if sync is not None:
            sync()
        n_warm += 1
        if clock() - t0 >= cfg.warmup_s:
            break
    warm = clock() - t0
    reps: list[list[float]] = []
    for dur, lo, hi in cfg.per_repetition():
        samples: list[float] = []
        start = clock()
        while len(samples) < hi and (len(samples) < lo or clock() - start < dur):
            a = clock()
            fn()
            if sync is not None:
                sync()
            samples.append((clock() - a) * 1e3)
        reps.append(samples)
    return Timing(n_warm, warm, [x for r in reps for x in r], reps)


def burn_in(fn: Callable[[], Any], seconds: float, *, clock: Callable[[], float] = time.perf_counter) -> int:
    """Run ``fn`` untimed for ``seconds`` (nanoGPT bench.py's burn-in stage); returns the call count."""
    n, t0 = 0, clock()
    while clock() - t0 < seconds:
        fn()
        n += 1
    return n


class PeakRSS:
    """Resident-set peak of this process while the ``with`` block ran (MB).

    Linux: writes ``5`` to /proc/self/clear_refs (resets VmHWM to the current RSS) on entry and reads
    VmHWM on exit (method ``VmHWM (reset ...)``). Some kernels and sandboxes accept the write but do
    not reset the mark (VmHWM stays above VmRSS right after it); there a thread samples VmRSS every
    ``interval_s`` instead (method ``VmRSS (sampled ...)``: a peak shorter than the interval can be
    missed). Elsewhere: ``ru_maxrss``, the process-lifetime peak (method ``ru_maxrss (process lifetime)``)."""

    RESET_SLACK_KB = 4096          # VmHWM may exceed VmRSS by page-table noise right after a working reset

    def __init__(self, interval_s: float = 0.002) -> None:
        self.mb: float | None = None
        self.method = ""
        self.interval_s = interval_s
        self._reset = False
        self._sampled_kb = 0
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakRSS:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            hwm, rss = _vm_hwm_kb(), _vm_rss_kb()
            self._reset = hwm is not None and rss is not None and hwm <= rss + self.RESET_SLACK_KB
            if not self._reset and rss is not None:
                self._start_sampler(rss)
        except OSError:
            self._reset = False
        return self

    def _start_sampler(self, rss_kb: int) -> None:
        self._sampled_kb = rss_kb
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                kb = _vm_rss_kb()
                if kb is not None and kb > self._sampled_kb:
                    self._sampled_kb = kb
                self._stop.wait(self.interval_s)

        self._thread = threading.Thread(target=sample, name="PeakRSS", daemon=True)
        self._thread.start()

    def __exit__(self, *exc: Any) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            kb = max(self._sampled_kb, _vm_rss_kb() or 0)
            self.mb = round(kb / 1024.0, 1)
            self.method = f"VmRSS (sampled every {self.interval_s * 1e3:g} ms; VmHWM is not resettable here)"
            return
        kb = _vm_hwm_kb() if self._reset else None
        if kb is not None:
            self.mb, self.method = round(kb / 1024.0, 1), "VmHWM (reset before the configuration)"
        else:
            r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss       # KiB on Linux, bytes on macOS
            self.mb = round(r / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0), 1)
            self.method = "ru_maxrss (process lifetime)"


def _vm_rss_kb() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for ln in fh:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1])
    except OSError:
        return None
    return None


def _vm_hwm_kb() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for ln in fh:
                if ln.startswith("VmHWM:"):
                    return int(ln.split()[1])
    except OSError:
        return None
    return None


__all__ = ["PERCENTILES", "TimingConfig", "FULL_TIMING", "QUICK_TIMING", "Timing", "percentile", "latency_summary",
           "repetition_summary", "split_summary", "write_json_md", "measure", "burn_in", "PeakRSS"]
