"""Latency harness: every artifact of a bundle on every available engine, one row per configuration.

One command::

    python -m umask.bench.latency.harness --bundle artifacts/bundles/small \\
        --out benchmarks/results/latency_cpu.json [--quick]

Rows follow onnxruntime's benchmark tooling (``onnxruntime_perf_test``) and ``trtexec``: engine and
version, execution provider, precision, threads, spinning, batch and input shapes, a TIME-based
warm-up and the number of timed samples, min / p50 / p90 / p95 / p99 / max latency (ms), the peak
RSS during the measurement (device memory on a GPU), the artifact size on disk, parity against
torch fp32 on the same inputs (max abs diff and a task metric in the same row), date, git commit and
the machine (CPU, cores, load average).

Configurations
--------------
* ``torch`` eager fp32: the reference. The checkpoint named in the bundle manifest (or ``--ckpt``).
* ``onnxruntime`` fp32 / fp16 / int8-QDQ / int8-dynamic: each ONNX file of the bundle on each
  available execution provider (CPU here; CUDA / TensorRT EP where onnxruntime-gpu has them).
* ``tensorrt``: the bundle's native engines (TensorRT 10 Python API, torch CUDA buffers), only where
  ``import tensorrt`` works and CUDA is present; otherwise one skip line (``skipped``), no row. Never
  run on the CPU machine it was written on.
* ``llama.cpp``: each GGUF quant of the profiling LLM, when ``llama_cpp`` imports and the files exist:
  prompt tokens/s, generation tokens/s and time to first token.

Components (the ``component`` column): ``denoiser_step`` (one DiT call), ``mask_generator``,
``profile_encoder`` (SBERT, one profile text), ``profile_mlp``, ``llm_profile`` (LLM profile
generation) and the full on-device request ``request_profile_cached`` (history -> window ->
cached profile text -> SBERT -> h_u -> mask -> sampling -> prediction) and ``request_profile_generated``
(the same with the LLM writing the profile first).

The torch request uses the runtime's featurization (runtime/history.build_window) and the runtime's
numpy sampler (runtime/samplers) around torch networks, so with the same seed it draws the same
start noise as the runtime Session: the request parity (max abs diff) compares like with like.
The request's task metric is the short-term (next 1 h) MAE against the REAL events of the Tsinghua
6-user one-day sample (featurized scale), over ``--metric-users`` users x ``--metric-hours``.

Measurement (:func:`measure`): a global nanoGPT-style burn-in first (the first configuration runs,
untimed, for ``burn_in_s``), then per configuration a time-based warm-up (at least one call, until
``warmup_s`` has passed), then timed calls until both ``min_samples`` and ``duration_s`` are reached
(at most ``max_samples``). Peak RSS: Linux ``VmHWM`` after resetting it through
``/proc/self/clear_refs`` before each configuration (the process's resident peak while that
configuration ran, models of earlier configurations included); falls back to ``ru_maxrss`` (labeled).

Outputs: ``--out`` JSON ``{"meta": ..., "rows": [...], "skipped": [...]}``, the same rows flattened
in ``.csv`` and a markdown summary ``.md`` next to it.

Latency on a shared machine is meaningless: the meta records the 1-min load average before and after;
``--max-load L`` waits (up to ``--wait-load-s``) until the load average is below L.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import io
import json
import logging
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

REPO_ROOT: Path = Path(__file__).resolve().parents[2]
DEFAULT_OUT = "benchmarks/results/latency_cpu.json"
PERCENTILES = (50, 90, 95, 99)
COMPONENTS = ("denoiser_step", "mask_generator", "profile_encoder", "profile_mlp", "llm_profile",
              "request_profile_cached", "request_profile_generated")
PRECISIONS = ("fp32", "fp16", "int8_qdq", "int8_dynamic")
ROW_FIELDS = ("name", "component", "engine", "engine_version", "provider", "provider_used", "device", "precision",
              "threads", "spinning", "batch", "shapes", "warmup_s", "warmup_iters", "samples", "latency_ms",
              "peak_rss_mb", "peak_rss_method", "device_mem_mb", "artifact", "artifact_bytes", "parity", "llm",
              "request", "date", "git_commit", "machine", "notes")
LATENCY_KEYS = ("min", "p50", "p90", "p95", "p99", "max", "mean", "std")


# ------------------------------------------------------------------------------------------------
# Measurement
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimingConfig:
    """Warm-up and sample policy (trtexec-like: --warmUp ms, --duration s, --iterations min)."""

    warmup_s: float = 1.0          # time-based warm-up; at least one call
    duration_s: float = 3.0        # keep sampling until this much time has passed ...
    min_samples: int = 20          # ... and at least this many samples were taken
    max_samples: int = 2000        # hard cap
    burn_in_s: float = 3.0         # global burn-in before the first configuration (nanoGPT bench.py)

    def __post_init__(self) -> None:
        if self.warmup_s < 0 or self.duration_s < 0 or self.burn_in_s < 0:
            raise ValueError("warmup_s, duration_s and burn_in_s must be >= 0")
        if not 1 <= self.min_samples <= self.max_samples:
            raise ValueError(f"need 1 <= min_samples <= max_samples, got {self.min_samples}, {self.max_samples}")


FULL_TIMING = TimingConfig()
QUICK_TIMING = TimingConfig(warmup_s=0.05, duration_s=0.0, min_samples=3, max_samples=3, burn_in_s=0.0)


@dataclass
class Timing:
    warmup_iters: int
    warmup_s: float                 # warm-up time actually spent
    samples_ms: list[float]

    def summary(self) -> dict[str, float]:
        return latency_summary(self.samples_ms)


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
    samples: list[float] = []
    start = clock()
    while len(samples) < cfg.max_samples and (len(samples) < cfg.min_samples or clock() - start < cfg.duration_s):
        a = clock()
        fn()
        if sync is not None:
            sync()
        samples.append((clock() - a) * 1e3)
    return Timing(n_warm, warm, samples)


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
    VmHWM on exit (method ``VmHWM (reset)``). Elsewhere: ``ru_maxrss``, the process-lifetime peak
    (method ``ru_maxrss (process lifetime)``)."""

    def __init__(self) -> None:
        self.mb: float | None = None
        self.method = ""
        self._reset = False

    def __enter__(self) -> PeakRSS:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self._reset = _vm_hwm_kb() is not None
        except OSError:
            self._reset = False
        return self

    def __exit__(self, *exc: Any) -> None:
        kb = _vm_hwm_kb() if self._reset else None
        if kb is not None:
            self.mb, self.method = round(kb / 1024.0, 1), "VmHWM (reset before the configuration)"
        else:
            r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss       # KiB on Linux, bytes on macOS
            self.mb = round(r / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0), 1)
            self.method = "ru_maxrss (process lifetime)"


def _vm_hwm_kb() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for ln in fh:
                if ln.startswith("VmHWM:"):
                    return int(ln.split()[1])
    except OSError:
        return None
    return None


# ------------------------------------------------------------------------------------------------
# Environment
# ------------------------------------------------------------------------------------------------
def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def wait_for_quiet(max_load: float, timeout_s: float, poll_s: float = 30.0) -> list[float] | None:
    """Block until the 1-min load average is below ``max_load`` (or ``timeout_s`` passed); returns it."""
    t0 = time.monotonic()
    la = load_average()
    while la is not None and la[0] >= max_load and time.monotonic() - t0 < timeout_s:
        log.info("load average %s >= %.2f: waiting (%.0f s so far)", la, max_load, time.monotonic() - t0)
        time.sleep(poll_s)
        la = load_average()
    return la


def git_commit(root: Path = REPO_ROOT) -> str | None:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for ln in fh:
                if ln.lower().startswith("model name"):
                    return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, OS, Python, the GPU when torch sees one, the Jetson model when present."""
    mem = None
    try:
        with open("/proc/meminfo") as fh:
            mem = round(int(fh.readline().split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    info: dict[str, Any] = {"cpu": cpu_model(), "logical_cores": os.cpu_count(), "memory_gb": mem,
                            "os": f"{platform.system()} {platform.release()}", "arch": platform.machine(),
                            "python": platform.python_version(), "hostname_hash": None, "gpu": None,
                            "jetson": None}
    jet = Path("/etc/nv_tegra_release")
    if jet.exists():
        try:
            info["jetson"] = jet.read_text().splitlines()[0][:120]
        except OSError:
            info["jetson"] = "present"
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - torch absent on a device install is fine
        pass
    return info


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"numpy": np.__version__}
    for mod in ("torch", "onnxruntime", "onnx", "tensorrt", "llama_cpp", "tokenizers"):
        try:
            m = __import__(mod)
            out[mod] = str(getattr(m, "__version__", "?"))
        except Exception:  # noqa: BLE001
            out[mod] = None
    return out


# ------------------------------------------------------------------------------------------------
# Rows
# ------------------------------------------------------------------------------------------------
@dataclass
class Case:
    """One configuration to time: ``fn()`` is one inference (one request for request rows)."""

    component: str
    engine: str
    engine_version: str
    precision: str
    fn: Callable[[], Any]
    provider: str = "cpu"
    provider_used: list[str] | None = None
    device: str = "cpu"
    threads: int = 1
    spinning: bool | None = None
    batch: int = 1
    shapes: dict[str, list[int]] = field(default_factory=dict)
    artifact: list[str] = field(default_factory=list)       # files (relative to the repo or bundle root)
    artifact_bytes: int | None = None
    parity: Callable[[], dict[str, Any] | None] | None = None
    timing: TimingConfig | None = None                       # overrides the run's TimingConfig (slow rows)
    setup: Callable[[], None] | None = None                  # runs before the measurement (e.g. torch threads)
    sync: Callable[[], None] | None = None
    device_mem: Callable[[], float | None] | None = None
    post: Callable[[Timing], dict[str, Any]] | None = None   # extra fields (e.g. the LLM's tokens/s)
    notes: str = ""

    @property
    def name(self) -> str:
        return f"{self.component}/{self.engine}/{self.precision}/{self.provider}/t{self.threads}"


def validate_row(row: Mapping[str, Any]) -> None:
    """Raise ValueError unless ``row`` has exactly ROW_FIELDS with sane latency figures."""
    missing = [k for k in ROW_FIELDS if k not in row]
    extra = [k for k in row if k not in ROW_FIELDS]
    if missing or extra:
        raise ValueError(f"row {row.get('name')!r}: missing fields {missing}, unknown fields {extra}")
    if row["component"] not in COMPONENTS:
        raise ValueError(f"row {row['name']!r}: unknown component {row['component']!r}")
    lat = row["latency_ms"]
    if set(lat) != set(LATENCY_KEYS):
        raise ValueError(f"row {row['name']!r}: latency keys {sorted(lat)} != {sorted(LATENCY_KEYS)}")
    chain = [lat[k] for k in ("min", "p50", "p90", "p95", "p99", "max")]
    if any(not math.isfinite(v) or v < 0 for v in chain) or chain != sorted(chain):
        raise ValueError(f"row {row['name']!r}: latency figures not ordered min <= p50 <= ... <= max: {chain}")
    if int(row["samples"]) < 1 or int(row["warmup_iters"]) < 1:
        raise ValueError(f"row {row['name']!r}: needs >= 1 warm-up call and >= 1 sample")


def run_case(case: Case, cfg: TimingConfig, env: Mapping[str, Any]) -> dict[str, Any]:
    """Measure one configuration -> a row (see ROW_FIELDS)."""
    if case.setup is not None:
        case.setup()
    with PeakRSS() as rss:
        timing = measure(case.fn, case.timing or cfg, sync=case.sync)
    parity = case.parity() if case.parity is not None else None
    extra = case.post(timing) if case.post is not None else {}
    row = {
        "name": case.name, "component": case.component, "engine": case.engine,
        "engine_version": case.engine_version, "provider": case.provider,
        "provider_used": case.provider_used, "device": case.device, "precision": case.precision,
        "threads": case.threads, "spinning": case.spinning, "batch": case.batch, "shapes": case.shapes,
        "warmup_s": round(timing.warmup_s, 4), "warmup_iters": timing.warmup_iters,
        "samples": len(timing.samples_ms), "latency_ms": timing.summary(),
        "peak_rss_mb": rss.mb, "peak_rss_method": rss.method,
        "device_mem_mb": case.device_mem() if case.device_mem is not None else None,
        "artifact": case.artifact, "artifact_bytes": case.artifact_bytes, "parity": parity,
        "llm": extra.get("llm"), "request": extra.get("request"),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": env.get("git_commit"), "machine": env.get("machine_tag"), "notes": case.notes,
    }
    validate_row(row)
    return row


def _flat(prefix: str, v: Any, out: dict[str, Any]) -> None:
    if isinstance(v, Mapping):
        for k, x in v.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), x, out)
    elif isinstance(v, (list, tuple)) and not all(isinstance(x, (int, float, str)) for x in v):
        out[prefix] = json.dumps(v, default=str)
    elif isinstance(v, (list, tuple)):
        out[prefix] = " ".join(str(x) for x in v)
    else:
        out[prefix] = v


def rows_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows flattened (nested keys joined with '.') as CSV; columns in first-seen order."""
    flat = []
    for r in rows:
        d: dict[str, Any] = {}
        _flat("", r, d)
        flat.append(d)
    cols: list[str] = []
    for d in flat:
        cols += [k for k in d if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for d in flat:
        w.writerow(d)
    return buf.getvalue()


def _fmt(v: Any, fmt: str = ".2f") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return format(v, fmt)
    return str(v)


def _parity_text(p: Mapping[str, Any] | None) -> str:
    if not p:
        return "-"
    parts = []
    if p.get("max_abs_diff") is not None:
        parts.append(f"max|d| {p['max_abs_diff']:.2e}")
    if p.get("metric") is not None and p.get("value") is not None:
        parts.append(f"{p['metric']} {p['value']:.4g}")
        if p.get("reference_value") is not None:
            parts.append(f"(torch {p['reference_value']:.4g})")
    return " ".join(parts) or "-"


def markdown_summary(rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any],
                     skipped: Sequence[str] = ()) -> str:
    m = meta.get("machine", {})
    lines = ["# Latency (U-MASK Edge bundle)", "",
             f"Machine: {m.get('cpu')}, {m.get('logical_cores')} logical cores, {m.get('memory_gb')} GB; "
             f"{m.get('os')}; load average before / after: {meta.get('load_before')} / {meta.get('load_after')}"
             f"{' (SHARED, LOADED machine: read the latencies as upper bounds)' if meta.get('loaded') else ''}.",
             f"Date {meta.get('date')}, git {meta.get('git_commit')}, mode {meta.get('mode')}; "
             f"warm-up {meta['timing']['warmup_s']} s (time-based), >= {meta['timing']['min_samples']} samples and "
             f">= {meta['timing']['duration_s']} s per row, burn-in {meta['timing']['burn_in_s']} s.",
             f"Command: `{meta.get('command')}`", ""]
    if meta.get("request"):
        rq = meta["request"]
        lines += [f"Request: {rq.get('description')}", ""]
    lines += ["| component | engine | precision | provider | thr | spin | batch | p50 ms | p90 ms | p99 ms | min ms "
              "| peak RSS MB | size MB | parity vs torch fp32 |",
              "| --- | --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        lat = r["latency_ms"]
        size = None if r["artifact_bytes"] is None else r["artifact_bytes"] / 1e6
        spin = "-" if r["spinning"] is None else ("on" if r["spinning"] else "off")
        lines.append(f"| {r['component']} | {r['engine']} {r['engine_version']} | {r['precision']} | {r['provider']} | "
                     f"{r['threads']} | {spin} | {r['batch']} | {lat['p50']:.2f} | {lat['p90']:.2f} | {lat['p99']:.2f} | "
                     f"{lat['min']:.2f} | {_fmt(r['peak_rss_mb'], '.0f')} | {_fmt(size, '.2f')} | "
                     f"{_parity_text(r['parity'])} |")
    llm = [r for r in rows if r.get("llm")]
    if llm:
        lines += ["", "| LLM quant | threads | prompt tokens/s | generation tokens/s | time to first token ms | "
                      "tokens (prompt / generated) |", "| --- | ---: | ---: | ---: | ---: | --- |"]
        for r in llm:
            x = r["llm"]
            lines.append(f"| {r['precision']} | {r['threads']} | {_fmt(x.get('prompt_tps'), '.1f')} | "
                         f"{_fmt(x.get('gen_tps'), '.1f')} | {_fmt(x.get('ttft_ms'), '.1f')} | "
                         f"{x.get('n_prompt')} / {x.get('n_gen')} |")
    ratios = meta.get("ratios") or {}
    if ratios:
        lines += ["", "Ratios (p50 latency of the full request, profile cached, vs torch eager fp32):", ""]
        lines += [f"- {k}: {v:.3f}" for k, v in ratios.items()]
    if skipped:
        lines += ["", "Skipped:"] + [f"- {s}" for s in skipped]
    notes = meta.get("notes") or []
    if notes:
        lines += ["", "Notes:"] + [f"- {s}" for s in notes]
    return "\n".join(lines) + "\n"


def write_results(out: Path, rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any],
                  skipped: Sequence[str]) -> list[Path]:
    """JSON + CSV + markdown, each written atomically (temp file + rename)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out, out.with_suffix(".csv"), out.with_suffix(".md")]
    texts = [json.dumps({"meta": meta, "rows": list(rows), "skipped": list(skipped)}, indent=2, default=str) + "\n",
             rows_csv(rows), markdown_summary(rows, meta, skipped)]
    for p, t in zip(paths, texts):
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(t)
        os.replace(tmp, p)
    return paths


# ------------------------------------------------------------------------------------------------
# Bundle, inputs, the request pipeline
# ------------------------------------------------------------------------------------------------
BUNDLE_PRECISION = {"fp32": "fp32", "fp16": "fp16", "int8_qdq": "int8-qdq", "int8_dynamic": "int8-dynamic"}
NETS = {"dit": "denoiser_step", "maskgen": "mask_generator", "profile_mlp": "profile_mlp", "sbert": "profile_encoder"}


@dataclass(frozen=True)
class RequestSpec:
    """The benchmarked request: one REAL-sample user, short-term prediction at ``hour`` (local)."""

    user_index: int = 0                    # index into the sorted users of the real sample
    hour: int = 18                         # "now" = this hour of the sample's day
    task: str = "short_term"
    sampler: str = "ddim"
    steps: int = 10
    n_samples: int = 2
    seed: int = 0
    metric_hours: tuple[int, ...] = (12, 18)   # task metric: every user of the sample at these hours

    def describe(self) -> str:
        return (f"REAL Tsinghua sample user #{self.user_index}, {self.task} at {self.hour:02d}:00 of its day, "
                f"{self.sampler} {self.steps} steps x {self.n_samples} samples, seed {self.seed}; raw history -> "
                "runtime build_window -> profile text -> SBERT -> profile MLP -> mask generator -> sampler "
                "(numpy, runtime/samplers) -> prediction of the target slots")


@dataclass
class RealSample:
    """The real one-day sample as a device sees it: catalog, grid, per-user events."""

    catalog: Any
    fcfg: Any
    grid: Any
    cells: Any
    events: dict[int, Any]
    day0: int

    @classmethod
    def load(cls, data_dir: Path | None = None) -> RealSample:
        from umask.runtime.core.catalog import load_llmapp_catalog
        from umask.runtime.core.events import read_llmapp_sample
        from umask.runtime.core.featurize import FeatureConfig
        from umask.runtime.core.tessellation import CityGrid, station_cells

        from umask.export.families.umask.exporter import DEFAULT_DATA, SAMPLE_FILE

        root = Path(data_dir) if data_dir is not None else DEFAULT_DATA
        catalog = load_llmapp_catalog(root)
        ev = read_llmapp_sample(root / SAMPLE_FILE)
        fcfg = FeatureConfig()
        grid = CityGrid.from_stations(catalog.stations, fcfg.cell_m)
        cells = station_cells(catalog.stations, grid)
        users = {int(u): ev.for_user(int(u)) for u in np.unique(ev.user).tolist()}
        day0 = int(ev.ts.min()) // 86400 * 86400
        return cls(catalog, fcfg, grid, cells, users, day0)

    def history(self, user_index: int, hour: int) -> tuple[Any, int]:
        """(events before now, now_ts) of the ``user_index``-th user at ``hour``."""
        u = sorted(self.events)[user_index]
        ev = self.events[u]
        now = self.day0 + hour * 3600
        return ev.take(ev.ts < now), now

    def truth(self, user_index: int, window: Any) -> np.ndarray:
        """(C, Th, H, W) featurized truth of the window's target slots, in the window's layout."""
        from umask.runtime.core.featurize import featurize_user

        u = sorted(self.events)[user_index]
        t0, t1 = window.target_slots
        ss = window.slot_seconds
        day0 = window.window_start_ts // 86400 * 86400              # featurize_user starts at a midnight
        off = (window.window_start_ts - day0) // ss
        tens, _ = featurize_user(self.events[u], self.catalog, window.layout, self.fcfg, day0, off + t1)
        return tens.dense(off + t0, off + t1)


class Nets:
    """The four networks of a request behind one numpy interface, from torch or onnxruntime."""

    def __init__(self, *, encode: Callable[[str], np.ndarray], profile: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 maskgen: Callable[..., np.ndarray], dit: Callable[..., np.ndarray]) -> None:
        self.encode, self.profile, self.maskgen, self.dit = encode, profile, maskgen, dit


class Pipeline:
    """One full on-device request over `Nets`: the runtime Session's computation (runtime/session.py
    ``complete``), written once in numpy for every engine: same window, same noise per sample
    (``default_rng(SeedSequence([seed, i]))``), same float64 accumulation, exact evidence, clip."""

    def __init__(self, nets: Nets, sample: RealSample, spec: Any, x_scale: np.ndarray, alphas_cumprod: np.ndarray,
                 n_coords: int, req: RequestSpec, sbert_dim: int = 384, use_profile: bool = True) -> None:
        from umask.runtime.engines.samplers import Schedule, make_sampler

        self.nets, self.sample, self.spec, self.req = nets, sample, spec, req
        self.sbert_dim, self.use_profile = int(sbert_dim), bool(use_profile)
        self.x_scale = np.asarray(x_scale, np.float32).reshape(1, -1, 1, 1, 1)
        self.sampler = make_sampler(req.sampler, Schedule(alphas_cumprod))
        self.n_coords = n_coords

    def window(self, hist: Any, now: int) -> Any:
        from umask.runtime.core.history import build_window

        return build_window(hist, self.sample.catalog, self.sample.fcfg, self.spec, self.req.task, now_ts=now,
                            grid=self.sample.grid, cells=self.sample.cells)

    def __call__(self, hist: Any, now: int, profile_text: str | None = None,
                 text_fn: Callable[[Any], str] | None = None, *, steps: int | None = None) -> tuple[np.ndarray, Any]:
        """(prediction (C, Th, H, W) on the featurized scale, clipped; window). ``profile_text``: the
        cached text; ``text_fn(window)``: generate it (LLM); neither: the runtime template profile."""
        from umask.runtime.families.umask.profile_text import template_profile

        w = self.window(hist, now)
        text = profile_text
        if text is None and w.stats is not None and self.use_profile:
            text = text_fn(w) if text_fn is not None else template_profile(w.stats)
        emb = np.zeros((1, self.sbert_dim), np.float32)
        present = np.zeros((1,), np.float32)
        if text is not None and self.use_profile:
            emb = self.nets.encode(text).reshape(1, -1).astype(np.float32)
            present[:] = 1.0
        h_u = self.nets.profile(emb, present)
        x, avail = w.x[None], w.avail[None]
        task = np.array([w.task_id], np.int64)
        hard = self.nets.maskgen(x, avail, h_u, task, w.e_pos[None], np.zeros((1, self.n_coords), np.float32))
        m = (np.asarray(hard)[:, :1] > 0.5).astype(np.float32)             # (1, 1, T, H, W)
        x_obs = (x * self.x_scale * m).astype(np.float32)

        def fn(x_t: np.ndarray, t: int) -> np.ndarray:
            return self.nets.dit(x_t, x_obs, m, np.array([t], np.int64), h_u, task)

        acc = np.zeros_like(x_obs, dtype=np.float64)
        for i in range(self.req.n_samples):
            rng = np.random.default_rng(np.random.SeedSequence([int(self.req.seed), i]))
            acc += self.sampler.sample(fn, x_obs, m, steps or self.req.steps, rng=rng)
        mean = (acc / self.req.n_samples / self.x_scale).astype(np.float32)[0]
        mean = np.where(np.broadcast_to(m[0] > 0.5, mean.shape), w.x, mean)
        return clip_target(mean, w), w


def clip_target(x: np.ndarray, w: Any) -> np.ndarray:
    """The target slots of a (C, T, H, W) completion, clipped to the featurized domain (Session._clip)."""
    t0, t1 = w.target_slots
    pred = np.maximum(np.asarray(x[:, t0:t1], np.float32), 0.0)
    pred[-1] = np.minimum(pred[-1], 1.0)                                # location channel in [0, 1]
    return pred


class SessionPipe:
    """`Pipeline`'s call signature over a runtime `Session` (the product path)."""

    def __init__(self, session: Any, req: RequestSpec, task: str = "short_term") -> None:
        self.s, self.req, self.task = session, req, task
        self.stage_s: list[dict[str, float]] = []

    def __call__(self, hist: Any, now: int, profile_text: str | None = None,
                 text_fn: Callable[[Any], str] | None = None, *, steps: int | None = None) -> tuple[np.ndarray, Any]:
        self.s._emb_cache.clear()     # "profile cached" = the TEXT is cached; SBERT runs per request (as the harness)
        c = self.s.complete(hist, self.task, steps=steps or self.req.steps, sampler=self.req.sampler,
                            seed=self.req.seed, n_samples=self.req.n_samples, now_ts=now, text=profile_text)
        self.stage_s.append(dict(c.timings))
        return clip_target(c.x, c.window), c.window


def torch_nets(model: Any, encoder: Any, device: str = "cpu") -> Nets:
    """Torch eager fp32 networks (the export wrappers: the same computation the ONNX files hold)."""
    import torch

    from umask.export.families.umask import networks as om

    if device != "cpu":                          # a device copy: the CPU reference keeps its weights
        import copy

        model = copy.deepcopy(model).to(device)
        sbert = copy.deepcopy(encoder.module).to(device)
    else:
        sbert = encoder.module
    mods = dict(om.wrappers(model).items())

    def T(a: np.ndarray) -> Any:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    @torch.inference_mode()
    def encode(text: str) -> np.ndarray:
        enc = encoder.tokenize([text])
        return sbert(enc["input_ids"].to(device), enc["attention_mask"].to(device)).float().cpu().numpy()

    @torch.inference_mode()
    def profile(emb: np.ndarray, present: np.ndarray) -> np.ndarray:
        return mods["profile_mlp"](T(emb), T(present)).cpu().numpy()

    @torch.inference_mode()
    def maskgen(*a: np.ndarray) -> np.ndarray:
        return mods["maskgen"](*(T(x) for x in a))[0].cpu().numpy()

    @torch.inference_mode()
    def dit(*a: np.ndarray) -> np.ndarray:
        return mods["dit"](*(T(x) for x in a)).cpu().numpy()

    return Nets(encode=encode, profile=profile, maskgen=maskgen, dit=dit)


def ort_session(path: Path, provider: str, threads: int, spinning: bool) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "1" if spinning else "0")
    so.log_severity_level = 3
    providers = [provider] + (["CPUExecutionProvider"] if provider != "CPUExecutionProvider" else [])
    return ort.InferenceSession(str(path), so, providers=providers)


def _casting_run(sess: Any) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    """sess.run with each feed cast to the input's declared element type."""
    types = {i.name: i.type for i in sess.get_inputs()}
    conv = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
            "tensor(int32)": np.int32, "tensor(bool)": np.bool_}

    def run(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return sess.run(None, {k: np.asarray(v).astype(conv.get(types[k], None) or np.asarray(v).dtype, copy=False)
                               for k, v in feed.items() if k in types})
    return run


def bundle_file(bundle: Path, manifest: Mapping[str, Any], precision: str, net: str) -> Path | None:
    """Path of ``net``'s ONNX file at ``precision`` (our name), or None when the bundle has none (rejected)."""
    if net == "sbert":
        s = manifest.get("sbert", {})
        return bundle / s["file"] if s.get("status") == "present" and s.get("file") else None
    a = manifest["artifacts"].get(BUNDLE_PRECISION[precision], {}).get(net)
    if not a or a.get("status") != "ok" or not a.get("file"):
        return None
    return bundle / a["file"]


def ort_nets(bundle: Path, manifest: Mapping[str, Any], precision: str, provider: str, threads: int,
             spinning: bool) -> tuple[Nets, dict[str, Any], list[Path]]:
    """onnxruntime networks of the bundle at ``precision`` (mask generator and SBERT: the shared fp32 files)."""
    from tokenizers import Tokenizer

    files = {net: bundle_file(bundle, manifest, precision, net) for net in ("dit", "maskgen", "profile_mlp", "sbert")}
    if files["dit"] is None or files["maskgen"] is None or files["profile_mlp"] is None:
        raise FileNotFoundError(f"{bundle}: no complete {precision} network set ({files})")
    sess = {k: ort_session(p, provider, threads, spinning) for k, p in files.items() if p is not None}
    run = {k: _casting_run(s) for k, s in sess.items()}
    tok = None
    if "sbert" in sess:
        tok = Tokenizer.from_file(str(bundle / manifest["sbert"].get("tokenizer", "tokenizer/tokenizer.json")))

    def encode(text: str) -> np.ndarray:
        if tok is None:
            raise FileNotFoundError(f"{bundle}: no SBERT encoder in the bundle")
        e = tok.encode(text)
        ids = np.array([e.ids], np.int64)
        att = np.array([e.attention_mask], np.int64)
        return run["sbert"]({"input_ids": ids, "attention_mask": att})[0].astype(np.float32)

    def profile(emb: np.ndarray, present: np.ndarray) -> np.ndarray:
        return run["profile_mlp"]({"emb": emb, "present": present})[0].astype(np.float32)

    def maskgen(x, avail, h_u, task, e_pos, gumbel) -> np.ndarray:  # noqa: ANN001
        return run["maskgen"]({"x": x, "avail": avail, "h_u": h_u, "task": task, "e_pos": e_pos, "gumbel": gumbel})[0]

    def dit(x_t, x_obs, mask, t, h_u, task) -> np.ndarray:  # noqa: ANN001
        return run["dit"]({"x_t": x_t, "x_obs": x_obs, "mask": mask, "t": t, "h_u": h_u,
                           "task": task})[0].astype(np.float32)

    used = {k: s.get_providers()[0] for k, s in sess.items()}
    return Nets(encode=encode, profile=profile, maskgen=maskgen, dit=dit), {"sessions": sess, "used": used}, \
        [p for p in files.values() if p is not None]


def trt_runner(engine_path: Path, feed: Mapping[str, np.ndarray]) -> tuple[Callable[[], None], Callable[[], np.ndarray]]:
    """(run, first_output) for a serialized TensorRT 10 engine with its inputs on the GPU (torch buffers)."""
    import tensorrt as trt
    import torch

    rt = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    eng = rt.deserialize_cuda_engine(Path(engine_path).read_bytes())
    if eng is None:
        raise RuntimeError(f"{engine_path}: TensorRT could not deserialize the engine")
    ctx = eng.create_execution_context()
    names = [eng.get_tensor_name(i) for i in range(eng.num_io_tensors)]
    bufs: dict[str, Any] = {}
    outs = []
    for n in names:
        dt = np.dtype(trt.nptype(eng.get_tensor_dtype(n)))
        if eng.get_tensor_mode(n) == trt.TensorIOMode.INPUT:
            t = torch.from_numpy(np.ascontiguousarray(np.asarray(feed[n]).astype(dt))).cuda()
            ctx.set_input_shape(n, tuple(t.shape))
            bufs[n] = t
    for n in names:
        if n not in bufs:
            dt = np.dtype(trt.nptype(eng.get_tensor_dtype(n)))
            bufs[n] = torch.empty(tuple(ctx.get_tensor_shape(n)), dtype=torch.from_numpy(np.zeros(0, dt)).dtype,
                                  device="cuda")
            outs.append(n)
    for n, t in bufs.items():
        ctx.set_tensor_address(n, t.data_ptr())
    stream = torch.cuda.Stream()

    def run() -> None:
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"{engine_path}: execute_async_v3 failed")
        stream.synchronize()

    def first() -> np.ndarray:
        return bufs[outs[0]].float().cpu().numpy()

    return run, first


# ------------------------------------------------------------------------------------------------
# Configurations
# ------------------------------------------------------------------------------------------------
@dataclass
class HarnessConfig:
    bundle: Path | None = None
    ckpt: Path | None = None
    out: Path = Path(DEFAULT_OUT)
    quick: bool = False
    threads: tuple[int, ...] = (1,)
    spinning: tuple[bool, ...] = (False,)
    batch: int = 1
    precisions: tuple[str, ...] = PRECISIONS
    providers: tuple[str, ...] | None = None            # None: every available one
    components: tuple[str, ...] = COMPONENTS
    engines: tuple[str, ...] = ("torch", "onnxruntime", "tensorrt", "llama.cpp")
    gguf: tuple[Path, ...] = ()
    llm_request_quant: str = "q8_0"
    llm_max_tokens: int = 192
    request: RequestSpec = field(default_factory=RequestSpec)
    timing: TimingConfig = FULL_TIMING
    metric: bool = True                                 # compute the request task metric over the sample
    data_dir: Path | None = None


def _shapes(feed: Mapping[str, np.ndarray]) -> dict[str, list[int]]:
    return {k: list(np.shape(v)) for k, v in feed.items()}


def _size(paths: Sequence[Path]) -> int:
    return int(sum(Path(p).stat().st_size for p in paths))


def _rel(paths: Sequence[Path]) -> list[str]:
    out = []
    for p in paths:
        p = Path(p).resolve()
        try:
            out.append(str(p.relative_to(REPO_ROOT)))
        except ValueError:
            out.append(str(p))
    return out


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).reshape(len(a), -1), np.asarray(b, np.float64).reshape(len(b), -1)
    return float(((a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)).min())


def component_metric(net: str, got: np.ndarray, ref: np.ndarray) -> tuple[str, float]:
    """The per-network task metric of a row: DiT relative max error, mask agreement, cosine."""
    if net == "dit":
        return "rel_max_err", _diff(got, ref) / max(1.0, float(np.abs(ref).max()))
    if net == "maskgen":
        return "mask_agreement", float((np.asarray(got) == np.asarray(ref)).mean())
    return "min_cosine", _cos(got, ref)


def request_metric(preds: Sequence[np.ndarray], truths: Sequence[np.ndarray]) -> dict[str, float]:
    """Short-term MAE on the featurized scale over all entries and over active (truth != 0) entries."""
    p = np.concatenate([np.ravel(x) for x in preds]).astype(np.float64)
    t = np.concatenate([np.ravel(x) for x in truths]).astype(np.float64)
    act = t != 0
    return {"mae": float(np.abs(p - t).mean()),
            "active_mae": float(np.abs(p - t)[act].mean()) if act.any() else float("nan"),
            "n_entries": int(t.size), "n_active": int(act.sum())}


class Harness:
    """Builds every configuration (`Case`) of a run and measures them."""

    def __init__(self, cfg: HarnessConfig) -> None:
        self.cfg = cfg
        self.skipped: list[str] = []
        self.notes: list[str] = []
        self.manifest: dict[str, Any] | None = None
        if cfg.bundle is not None:
            from umask.runtime.core.bundle import verify_bundle

            self.manifest = verify_bundle(cfg.bundle)
        self.vers = versions()
        self._torch_ready = False

    # -- the torch reference --
    def _load_torch(self) -> None:
        if self._torch_ready:
            return
        import torch

        from umask.bench.accuracy.user_umask import resolve_checkpoint
        from umask.runtime.core.history import WindowSpec
        from umask.train.models.umask.profile_encoder import SentenceEncoder
        from umask.train.models.umask.trainer import load_model

        torch.set_num_threads(max(self.cfg.threads))
        ckpt = self.cfg.ckpt or (Path(self.manifest["checkpoint"]["path"]) if self.manifest else None)
        if ckpt is None:
            raise ValueError("give --bundle (its manifest names the checkpoint) or --ckpt")
        self.ckpt = resolve_checkpoint(ckpt)
        self.model, self.config = load_model(self.ckpt, ema=True)
        self.encoder = SentenceEncoder()
        w = self.model.cfg.window
        self.spec = WindowSpec(w.context, w.horizon, w.short_horizon, w.cold_max_active)
        self.sample = RealSample.load(self.cfg.data_dir)
        self.n_coords = self.model.cfg.maskgen_config().n_coords
        self.x_scale = self.model.x_scale.numpy()
        self.acp = self.model.schedule.alphas_cumprod.numpy().astype(np.float32)
        sb = (self.manifest or {}).get("sbert", {"status": "present"})
        self.use_profile = bool(self.model.cfg.use_profile) and sb.get("status") == "present"
        if not self.use_profile:
            self.notes.append("requests use the profile MLP's 'no profile' embedding (model without U-SCOPE or "
                              "bundle without SBERT)")
        self.torch_nets = torch_nets(self.model, self.encoder)
        self.torch_pipe = self.pipeline(self.torch_nets)
        self._build_inputs()
        self._torch_ready = True

    def pipeline(self, nets: Nets, req: RequestSpec | None = None) -> Pipeline:
        return Pipeline(nets, self.sample, self.spec, self.x_scale, self.acp, self.n_coords, req or self.cfg.request,
                        sbert_dim=int(self.model.cfg.sbert_dim), use_profile=self.use_profile)

    def _build_inputs(self) -> None:
        """Component inputs from the benchmarked request's REAL window (tiled to the batch size)."""
        from umask.runtime.families.umask.profile_text import template_profile
        from umask.runtime.engines.samplers import Schedule

        rq, B = self.cfg.request, self.cfg.batch
        hist, now = self.sample.history(rq.user_index, rq.hour)
        self.hist, self.now = hist, now
        w = self.torch_pipe.window(hist, now)
        self.window = w
        self.text = template_profile(w.stats) if w.stats is not None else "no profile"
        tile = lambda a: np.ascontiguousarray(np.repeat(np.asarray(a)[None], B, axis=0))  # noqa: E731
        tn = self.torch_nets
        emb = tn.encode(self.text)
        present = np.ones((B,), np.float32)
        feeds: dict[str, dict[str, np.ndarray]] = {}
        feeds["profile_mlp"] = {"emb": np.repeat(emb, B, 0), "present": present}
        h_u = tn.profile(feeds["profile_mlp"]["emb"], present)
        task = np.full((B,), w.task_id, np.int64)
        feeds["maskgen"] = {"x": tile(w.x), "avail": tile(w.avail), "h_u": h_u, "task": task, "e_pos": tile(w.e_pos),
                            "gumbel": np.zeros((B, self.n_coords), np.float32)}
        hard = tn.maskgen(*feeds["maskgen"].values())
        x0 = feeds["maskgen"]["x"] * self.x_scale.reshape(1, -1, 1, 1, 1)
        x_obs = (x0 * hard).astype(np.float32)
        a, s = Schedule(self.acp).alpha_sigma(999)
        z = np.random.default_rng(0).standard_normal(x_obs.shape, dtype=np.float32)
        feeds["dit"] = {"x_t": (a * x0 + s * z).astype(np.float32), "x_obs": x_obs, "mask": hard,
                        "t": np.full((B,), 999, np.int64), "h_u": h_u, "task": task}
        enc = self.encoder.tokenize([self.text] * B)
        feeds["sbert"] = {"input_ids": enc["input_ids"].numpy().astype(np.int64),
                          "attention_mask": enc["attention_mask"].numpy().astype(np.int64)}
        if self.manifest is not None and self.manifest.get("sbert", {}).get("status") == "present":
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(self.cfg.bundle / self.manifest["sbert"].get("tokenizer",
                                                                                         "tokenizer/tokenizer.json")))
            e = tok.encode(self.text)
            feeds["sbert"] = {"input_ids": np.array([e.ids] * B, np.int64),
                              "attention_mask": np.array([e.attention_mask] * B, np.int64)}
        self.feeds = feeds
        self.ref = {net: self._torch_call(net)() for net in feeds}

    def _device_model(self, device: str) -> tuple[Any, Any]:
        """(UMask, SBERT module) on ``device``; copies for a GPU so the CPU reference is untouched."""
        if device == "cpu":
            return self.model, self.encoder.module
        cache = self.__dict__.setdefault("_dev_models", {})
        if device not in cache:
            import copy

            cache[device] = (copy.deepcopy(self.model).to(device), copy.deepcopy(self.encoder.module).to(device))
        return cache[device]

    def _torch_call(self, net: str, device: str = "cpu") -> Callable[[], Any]:
        import torch

        from umask.export.families.umask import networks as om

        model, sbert = self._device_model(device)
        mod = sbert if net == "sbert" else om.wrappers(model)[net]
        tens = [torch.from_numpy(np.ascontiguousarray(v)).to(device) for v in self.feeds[net].values()]

        def call() -> Any:
            with torch.inference_mode():
                out = mod(*tens)
            out = out[0] if isinstance(out, tuple) else out
            return out.float().cpu().numpy() if device == "cpu" else out

        return call

    # -- request metric over the sample --
    def request_eval(self, pipe: Pipeline, text_fn: Callable[[Any], str] | None = None) -> tuple[list[np.ndarray], dict[str, float]]:
        preds, truths = [], []
        for ui in range(len(self.sample.events)):
            for h in self.cfg.request.metric_hours:
                hist, now = self.sample.history(ui, h)
                if len(hist) < 5:
                    continue
                try:
                    pred, w = pipe(hist, now, text_fn=text_fn)
                except Exception as e:  # noqa: BLE001 - a user without context at that hour
                    log.debug("metric request user %d %02d:00 skipped: %s", ui, h, e)
                    continue
                preds.append(pred)
                truths.append(self.sample.truth(ui, w))
        return preds, request_metric(preds, truths)

    # -- cases --
    def cases(self) -> list[Case]:
        cfg = self.cfg
        out: list[Case] = []
        if "torch" in cfg.engines:
            out += self.torch_cases()
        if "onnxruntime" in cfg.engines:
            out += self.ort_cases()
        if "tensorrt" in cfg.engines:
            out += self.tensorrt_cases()
        if "llama.cpp" in cfg.engines:
            out += self.llm_cases()
        return out

    def torch_cases(self) -> list[Case]:
        import torch

        self._load_torch()
        cfg = self.cfg
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        ckpt_files = [self.ckpt / "ema.safetensors", self.ckpt / "config.json"]
        out = []
        for dev in devices:
            sync = torch.cuda.synchronize if dev == "cuda" else None
            mem = (lambda: round(torch.cuda.max_memory_allocated() / 2**20, 1)) if dev == "cuda" else None
            for thr in (cfg.threads if dev == "cpu" else (cfg.threads[0],)):
                for net, comp in NETS.items():
                    if comp not in cfg.components:
                        continue
                    fn = self._torch_call(net, dev)
                    art = ckpt_files if net != "sbert" else [Path(self.encoder.model_path) / "model.safetensors"]
                    art = [p for p in art if p.exists()]
                    out.append(Case(comp, "torch", torch.__version__, "fp32", fn, provider=dev, device=dev,
                                    setup=(lambda t=thr, d=dev: (torch.set_num_threads(t), d == "cuda"
                                                                 and torch.cuda.reset_peak_memory_stats())),
                                    threads=thr, batch=cfg.batch, shapes=_shapes(self.feeds[net]), artifact=_rel(art),
                                    artifact_bytes=_size(art), sync=sync, device_mem=mem,
                                    parity=lambda: {"reference": "torch eager fp32 (this row)", "max_abs_diff": 0.0},
                                    notes="reference; checkpoint size = the whole UMask EMA weights"
                                    if net != "sbert" else "network only (token ids given)"))
                if "request_profile_cached" in cfg.components:
                    pipe = self.torch_pipe if dev == "cpu" else self.pipeline(torch_nets(self.model, self.encoder, dev))
                    c = self.request_case("torch", torch.__version__, "fp32", pipe, dev, thr, None, ckpt_files, [dev])
                    c.device, c.sync, c.device_mem = dev, sync, mem
                    c.setup = lambda t=thr, d=dev: (torch.set_num_threads(t), d == "cuda"
                                                    and torch.cuda.reset_peak_memory_stats())
                    out.append(c)
        return out

    def request_case(self, engine: str, version: str, precision: str, pipe: Pipeline, provider: str, threads: int,
                     spinning: bool | None, files: Sequence[Path], used: Any, *, text_fn: Callable[[Any], str] | None = None,
                     component: str = "request_profile_cached", timing: TimingConfig | None = None,
                     notes: str = "") -> Case:
        hist, now, text = self.hist, self.now, self.text

        if text_fn is None:
            def fn() -> Any:
                return pipe(hist, now, profile_text=text)
        else:
            def fn() -> Any:
                return pipe(hist, now, text_fn=text_fn)

        def parity() -> dict[str, Any]:
            ref_pred, _ = self.torch_pipe(hist, now, profile_text=text)
            got, _ = pipe(hist, now, profile_text=text)
            d: dict[str, Any] = {"reference": "torch eager fp32 request (same seed, same numpy sampler)",
                                 "max_abs_diff": _diff(got, ref_pred)}
            if self.cfg.metric:
                if not hasattr(self, "_torch_metric"):
                    self._torch_preds, self._torch_metric = self.request_eval(self.torch_pipe)
                preds, m = self.request_eval(pipe, text_fn)
                d.update({"metric": "short_term_active_mae", "value": m["active_mae"],
                          "reference_value": self._torch_metric["active_mae"], "mae": m["mae"],
                          "reference_mae": self._torch_metric["mae"], "n_requests": len(preds),
                          "metric_data": "REAL Tsinghua 6-user sample, next 1 h, featurized scale",
                          "max_abs_diff_all_requests": max((_diff(a, b) for a, b in zip(preds, self._torch_preds)),
                                                           default=None) if text_fn is None else None})
            return d

        rq = self.cfg.request
        return Case(component, engine, version, precision, fn, provider=provider, provider_used=used, threads=threads,
                    spinning=spinning, batch=1, shapes={"history_events": [len(hist)], "window": list(self.window.x.shape)},
                    artifact=_rel(files), artifact_bytes=_size(files), parity=parity, timing=timing,
                    post=lambda t: {"request": {"sampler": rq.sampler, "steps": rq.steps, "n_samples": rq.n_samples,
                                                "seed": rq.seed, "task": rq.task, "user_index": rq.user_index,
                                                "hour": rq.hour}},
                    notes=notes or "full request from the raw history (profile text cached)")

    def providers(self) -> list[str]:
        import onnxruntime as ort

        avail = [p for p in ort.get_available_providers() if p not in ("AzureExecutionProvider",)]
        want = self.cfg.providers or tuple(avail)
        for p in want:
            if p not in avail:
                self.skipped.append(f"onnxruntime provider {p}: not available here (available: {avail})")
        return [p for p in want if p in avail]

    def ort_cases(self) -> list[Case]:
        import onnxruntime as ort

        if self.manifest is None:
            self.skipped.append("onnxruntime: no --bundle given")
            return []
        self._load_torch()
        cfg, bundle, man = self.cfg, self.cfg.bundle, self.manifest
        out = []
        for prov in self.providers():
            for prec in cfg.precisions:
                for thr in cfg.threads:
                    for spin in cfg.spinning:
                        out += self._ort_prec_cases(ort.__version__, bundle, man, prec, prov, thr, spin)
        return out

    def _ort_prec_cases(self, version: str, bundle: Path, man: Mapping[str, Any], prec: str, prov: str, thr: int,
                        spin: bool) -> list[Case]:
        cfg = self.cfg
        out = []
        for net, comp in NETS.items():
            if comp not in cfg.components:
                continue
            if net in ("maskgen", "sbert") and prec != "fp32":
                continue                      # shared fp32 files: measured once (the fp32 rows)
            path = bundle_file(bundle, man, prec, net)
            if path is None:
                a = man["artifacts"].get(BUNDLE_PRECISION[prec], {}).get(net, {})
                self.skipped.append(f"onnxruntime {prec} {net}: not in the bundle "
                                    f"({a.get('status', 'absent')}{': ' + a['reason'] if a.get('reason') else ''})")
                continue
            sess = ort_session(path, prov, thr, spin)
            run = _casting_run(sess)
            feed = self.feeds[net]
            ref = self.ref[net]
            exp = (man["artifacts"].get(BUNDLE_PRECISION[prec], {}).get(net, {}) if net != "sbert"
                   else man.get("sbert", {})).get("parity")

            def parity(run=run, feed=feed, ref=ref, net=net, exp=exp) -> dict[str, Any]:  # noqa: ANN001
                got = run(feed)[0]
                metric, value = component_metric(net, got, ref)
                return {"reference": "torch eager fp32, same inputs", "max_abs_diff": _diff(got, ref),
                        "metric": metric, "value": value, "export_time": exp}

            out.append(Case(comp, "onnxruntime", version, prec, (lambda run=run, feed=feed: run(feed)), provider=prov,
                            provider_used=sess.get_providers(), device="cuda" if "CUDA" in prov or "Tensorrt" in prov
                            else "cpu", threads=thr, spinning=spin, batch=cfg.batch, shapes=_shapes(feed),
                            artifact=_rel([path]), artifact_bytes=_size([path]), parity=parity))
        if "request_profile_cached" in cfg.components:
            c = self.session_request(prec, prov, thr, spin)
            if c == "rejected":
                return out
            if c is None:
                try:
                    nets, info, files = ort_nets(bundle, man, prec, prov, thr, spin)
                except FileNotFoundError as e:
                    self.skipped.append(f"onnxruntime {prec} request: {e}")
                    return out
                c = self.request_case("onnxruntime", version, prec, self.pipeline(nets), prov, thr, spin, files,
                                      info["used"], notes="full request (harness pipeline over the bundle's ONNX "
                                      "files; the runtime Session did not import) from the raw history, profile "
                                      "text cached")
            out.append(c)
        return out

    def _session(self, prec: str, prov: str, thr: int, spin: bool, profile_source: str = "template") -> Any:
        """A runtime Session; None when the Session does not import, "rejected" when it refuses the precision."""
        try:
            from umask.runtime.families.umask.session import Session
        except Exception as e:  # noqa: BLE001
            msg = f"runtime Session: not importable ({type(e).__name__}: {e}); request rows use the harness pipeline"
            if msg not in self.skipped:
                self.skipped.append(msg)
            return None
        try:
            return Session.open(self.cfg.bundle, providers=[prov], threads=thr, allow_spinning=spin,
                                precision=BUNDLE_PRECISION[prec], profile_source=profile_source, llm_threads=thr)
        except Exception as e:  # noqa: BLE001 - a precision the bundle rejected at export time
            self.skipped.append(f"runtime Session {prec} on {prov}: {type(e).__name__}: {e}")
            return "rejected"

    def session_files(self, prec: str, with_llm: bool = False) -> list[Path]:
        man, b = self.manifest, self.cfg.bundle
        files = [bundle_file(b, man, prec, n) for n in ("dit", "maskgen", "profile_mlp", "sbert")]
        files = [f for f in files if f is not None]
        tok = man.get("sbert", {}).get("tokenizer")
        if tok and (b / tok).is_file():
            files.append(b / tok)
        if with_llm:
            files += [b / f for f in man.get("llm", {}).get("files", [])]
        return files

    def session_request(self, prec: str, prov: str, thr: int, spin: bool) -> Case | str | None:
        s = self._session(prec, prov, thr, spin)
        if s is None or isinstance(s, str):
            return s
        pipe = SessionPipe(s, self.cfg.request)
        c = self.request_case("onnxruntime (umask Session)", self.vers.get("onnxruntime") or "?", prec, pipe, prov,
                              thr, spin, self.session_files(prec), s.report()["providers"],
                              notes="runtime Session.complete(history, 'short_term', text=cached profile): window, "
                                    "SBERT (embedding cache cleared per request), profile MLP, mask, sampler")
        base_post = c.post

        def post(t: Timing, pipe: SessionPipe = pipe) -> dict[str, Any]:
            d = base_post(t) if base_post else {}
            st = pipe.stage_s[1:] or pipe.stage_s
            keys = sorted({k for x in st for k in x})
            d.setdefault("request", {})["stage_ms_median"] = {k: round(1e3 * float(np.median([x.get(k, 0.0) for x in st])), 3)
                                                               for k in keys}
            return d
        c.post = post
        return c

    def tensorrt_cases(self) -> list[Case]:
        """Native TensorRT engines of the bundle (trt/*.engine), timed through the TensorRT 10 Python API
        with CUDA buffers from torch. Written against the public API; never run on the CPU machine
        this harness was developed on (no TensorRT there)."""
        try:
            import tensorrt as trt
        except Exception as e:  # noqa: BLE001
            self.skipped.append(f"TensorRT: `import tensorrt` failed ({type(e).__name__}: {e}); no TensorRT rows")
            return []
        import torch

        if not torch.cuda.is_available():
            self.skipped.append("TensorRT: tensorrt imports but torch sees no CUDA device; no TensorRT rows")
            return []
        entry = (self.manifest or {}).get("tensorrt", {})
        engines = entry.get("engines", {}) if entry.get("status") == "built" else {}
        if not engines:
            self.skipped.append(f"TensorRT: the bundle has no engines ({entry.get('status')}: {entry.get('reason', '')}); "
                                "export on a machine with tensorrt")
            return []
        self._load_torch()
        out = []
        for key, e in sorted(engines.items()):
            prec_b, net = key.split("/")
            prec = {v: k for k, v in BUNDLE_PRECISION.items()}.get(prec_b, prec_b)
            if e.get("status") != "built" or NETS.get(net) not in self.cfg.components:
                continue
            if int(e.get("batch", 1)) != self.cfg.batch:
                self.skipped.append(f"TensorRT {key}: engine batch {e.get('batch')} != --batch {self.cfg.batch}")
                continue
            path = self.cfg.bundle / "trt" / e["file"]
            run, first = trt_runner(path, self.feeds[net])
            ref = self.ref[net]

            def parity(run=run, first=first, ref=ref, net=net) -> dict[str, Any]:  # noqa: ANN001
                run()
                got = first()
                metric, value = component_metric(net, got, ref)
                return {"reference": "torch eager fp32, same inputs", "max_abs_diff": _diff(got, ref),
                        "metric": metric, "value": value}

            out.append(Case(NETS[net], "tensorrt", trt.__version__, prec, run, provider="TensorRT (native)",
                            device="cuda", threads=1, batch=self.cfg.batch, shapes=_shapes(self.feeds[net]),
                            artifact=_rel([path]), artifact_bytes=_size([path]), parity=parity,
                            device_mem=lambda: round(torch.cuda.max_memory_allocated() / 2**20, 1),
                            setup=torch.cuda.reset_peak_memory_stats,
                            notes="native engine, execute_async_v3 + stream sync per call (host<->device copies "
                                  "excluded)"))
        return out

    def gguf_files(self) -> list[Path]:
        """Every GGUF file (model or LoRA adapter): --gguf, else the bundle's llm/, else artifacts/uscope/gguf."""
        if self.cfg.gguf:
            return [Path(p) for p in self.cfg.gguf]
        if self.manifest is not None and self.manifest.get("llm", {}).get("files"):
            return [self.cfg.bundle / f for f in self.manifest["llm"]["files"]]
        d = REPO_ROOT / "artifacts" / "uscope" / "gguf"
        return sorted(d.glob("*.gguf")) if d.is_dir() else []

    @staticmethod
    def llm_models(files: Sequence[Path]) -> list[tuple[Path, Path | None, str]]:
        """(model, LoRA adapter or None, label): merged quants alone; a ``base`` model with the adapter."""
        loras = [f for f in files if "lora" in f.name.lower()]
        out = []
        for f in files:
            if f in loras:
                continue
            name = f.stem.lower().removeprefix("uscope-")
            if "base" in name and loras:
                out.append((f, loras[0], f"{name}+{loras[0].stem.lower().removeprefix('uscope-')}"))
            else:
                out.append((f, None, name))
        return out

    def session_llm_label(self, sess: Any) -> str:
        """The GGUF model (+ adapter) a Session loads: its first non-LoRA file, its first LoRA file."""
        files = [Path(f) for f in sess.manifest["llm"]["files"]]
        base = [f for f in files if "lora" not in f.name.lower()]
        lora = [f for f in files if "lora" in f.name.lower()]
        lab = base[0].stem.lower().removeprefix("uscope-") if base else "?"
        return lab + (f"+{lora[0].stem.lower().removeprefix('uscope-')}" if lora else "")

    def llm_cases(self) -> list[Case]:
        from umask.runtime.engines.llama import llama_cpp_available

        if not llama_cpp_available():
            self.skipped.append("llama.cpp: llama_cpp does not import (install the llm extra: UMASK_WITH_LLM=1 "
                                "./scripts/setup.sh); no LLM rows")
            return []
        files = self.gguf_files()
        models = self.llm_models(files)
        if not models:
            self.skipped.append("llama.cpp: no GGUF files (bundle llm/ or artifacts/uscope/gguf); no LLM rows")
            return []
        import llama_cpp

        from umask.runtime.engines.llama import LlamaProfiler, chat_prompt
        from umask.runtime.families.umask.profile_text import build_prompt

        self._load_torch()
        cfg = self.cfg
        prompt = chat_prompt(build_prompt(self.window.stats))
        slow = TimingConfig(warmup_s=0.0, duration_s=0.0, min_samples=1 if cfg.quick else 3,
                            max_samples=1 if cfg.quick else 3, burn_in_s=0.0)
        out = []
        for path, lora, quant in models:
            for thr in cfg.threads:
                prof = LlamaProfiler(path, lora_path=lora, n_threads=thr)
                ids = prof.tokenize(prompt)
                tims: list[dict[str, float]] = []

                def fn(prof=prof, ids=ids, tims=tims) -> Any:  # noqa: ANN001
                    toks, t = prof.generate_ids(ids, cfg.llm_max_tokens)
                    tims.append(t)
                    return toks

                def post(_t: Timing, tims=tims) -> dict[str, Any]:  # noqa: ANN001
                    ts = tims[1:] or tims                        # drop the warm-up call
                    pt = [t["prompt_tokens"] / t["prompt_s"] for t in ts if t["prompt_s"] > 0]
                    gt = [t["gen_tokens"] / t["gen_s"] for t in ts if t["gen_s"] > 0 and t["gen_tokens"] > 0]
                    return {"llm": {"prompt_tps": float(np.median(pt)) if pt else None,
                                    "gen_tps": float(np.median(gt)) if gt else None,
                                    "ttft_ms": float(np.median([t["prompt_s"] for t in ts])) * 1e3,
                                    "n_prompt": int(ts[-1]["prompt_tokens"]), "n_gen": int(ts[-1]["gen_tokens"]),
                                    "max_tokens": cfg.llm_max_tokens, "decoding": "greedy (LlamaProfiler)"}}

                if "llm_profile" in cfg.components:
                    out.append(Case("llm_profile", "llama.cpp", llama_cpp.__version__, quant, fn, provider="cpu",
                                    threads=thr, shapes={"prompt_tokens": [len(ids)]},
                                    artifact=_rel([path] + ([lora] if lora else [])),
                                    artifact_bytes=_size([path] + ([lora] if lora else [])), timing=slow, post=post,
                                    notes="time to first token = prompt evaluation (the first token is the argmax "
                                          "of the prompt's last logits)"))
                # The harness pipeline (ORT int8 networks + this GGUF) rather than Session.complete with
                # profile_source='llm': that path deadlocks in runtime/session.py at the time of writing
                # (profile() holds the non-reentrant _llm_lock and calls _llm_profiler(), which takes it again).
                if "request_profile_generated" in cfg.components and self.manifest is not None \
                        and quant == cfg.llm_request_quant:
                    try:
                        nets, info, files_ = ort_nets(cfg.bundle, self.manifest, "int8_qdq", self.providers()[0], thr,
                                                      False)
                        prec = "int8_qdq"
                    except (FileNotFoundError, IndexError):
                        nets, info, files_ = self.torch_nets, {"used": ["cpu"]}, []
                        prec = "fp32"

                    def text_fn(w: Any, prof=prof) -> str:  # noqa: ANN001
                        prof._memo.clear() if hasattr(prof, "_memo") else None   # time a real generation
                        return prof.generate(build_prompt(w.stats))

                    out.append(self.request_case("onnxruntime+llama.cpp", self.vers.get("onnxruntime") or "?",
                                                 f"{prec}+{quant}", self.pipeline(nets), "CPUExecutionProvider", thr,
                                                 False, list(files_) + [path], info["used"], text_fn=text_fn,
                                                 component="request_profile_generated", timing=slow,
                                                 notes="full request with the LLM writing the profile (greedy, "
                                                       f"<= {cfg.llm_max_tokens} tokens) before SBERT"))
        return out


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def bundle_fingerprint(manifest: Mapping[str, Any] | None) -> str | None:
    """sha256 over the (path, sha256) of the bundle's ONNX files: equal for identical networks across exports."""
    if not manifest:
        return None
    import hashlib

    items = sorted((k, v["sha256"]) for k, v in manifest.get("files", {}).items() if k.endswith(".onnx"))
    return hashlib.sha256(json.dumps(items).encode()).hexdigest() if items else None


def request_ratios(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """p50 of each cached-profile request row / p50 of the torch eager fp32 request at the same threads."""
    ref = {r["threads"]: r["latency_ms"]["p50"] for r in rows
           if r["component"] == "request_profile_cached" and r["engine"] == "torch" and r["device"] == "cpu"}
    out = {}
    for r in rows:
        if r["component"] != "request_profile_cached" or r["engine"] == "torch" or r["threads"] not in ref:
            continue
        spin = "" if r["spinning"] is None else (", spin on" if r["spinning"] else ", spin off")
        key = f"{r['engine']} {r['precision']} {r['provider']} ({r['threads']} thr{spin}) / torch fp32 ({r['threads']} thr)"
        out[key] = round(r["latency_ms"]["p50"] / ref[r["threads"]], 4)
    return out


def _csv(text: str, conv: Callable[[str], Any]) -> tuple[Any, ...]:
    return tuple(conv(x.strip()) for x in text.split(",") if x.strip())


def _bool(x: str) -> bool:
    if x.lower() in ("1", "on", "true", "yes"):
        return True
    if x.lower() in ("0", "off", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected on/off, got {x!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m umask.bench.latency.harness", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--bundle", type=Path, default=None, help="bundle directory (umask export); its manifest names "
                                                             "the checkpoint of the torch reference")
    p.add_argument("--ckpt", type=Path, default=None, help="torch reference checkpoint (default: the manifest's)")
    p.add_argument("--out", type=Path, default=Path(DEFAULT_OUT))
    p.add_argument("--quick", action="store_true", help="smoke mode: 3 samples per row, no burn-in, no request metric")
    p.add_argument("--metric", action=argparse.BooleanOptionalAction, default=None,
                   help="compute the request task metric over the REAL sample (default: on, off with --quick)")
    p.add_argument("--threads", default="1", help="comma list of intra-op / torch thread counts")
    p.add_argument("--spinning", default="off", help="comma list of onnxruntime spinning settings (on/off)")
    p.add_argument("--batch", type=int, default=1, help="batch size of the component rows")
    p.add_argument("--precisions", default=",".join(PRECISIONS))
    p.add_argument("--providers", default=None, help="comma list of onnxruntime EPs (default: every available)")
    p.add_argument("--components", default=",".join(COMPONENTS))
    p.add_argument("--engines", default="torch,onnxruntime,tensorrt,llama.cpp")
    p.add_argument("--gguf", action="append", default=[], type=Path, help="GGUF file(s) (default: the bundle's llm/ "
                                                                          "or artifacts/uscope/gguf)")
    p.add_argument("--llm-request-quant", default="q8_0", help="GGUF quant of the profile-generated request row")
    p.add_argument("--llm-max-tokens", type=int, default=192)
    p.add_argument("--sampler", default=None, choices=("ddim", "dpmpp_2m"), help="default: the manifest's")
    p.add_argument("--steps", type=int, default=None, help="default: the manifest's")
    p.add_argument("--samples", type=int, default=None, help="default: the manifest's")
    p.add_argument("--user-index", type=int, default=0)
    p.add_argument("--hour", type=int, default=18)
    p.add_argument("--warmup-s", type=float, default=None)
    p.add_argument("--duration-s", type=float, default=None)
    p.add_argument("--min-samples", type=int, default=None)
    p.add_argument("--burn-in-s", type=float, default=None)
    p.add_argument("--max-load", type=float, default=None, help="wait until the 1-min load average is below this")
    p.add_argument("--wait-load-s", type=float, default=1800.0)
    p.add_argument("--data-dir", type=Path, default=None)
    return p


def config_from_args(ns: argparse.Namespace) -> HarnessConfig:
    timing = QUICK_TIMING if ns.quick else FULL_TIMING
    over = {k: v for k, v in {"warmup_s": ns.warmup_s, "duration_s": ns.duration_s, "min_samples": ns.min_samples,
                              "burn_in_s": ns.burn_in_s}.items() if v is not None}
    if over:
        timing = replace(timing, **over, max_samples=max(timing.max_samples, over.get("min_samples", 0)))
    defaults = {"sampler": "ddim", "steps": 10, "n_samples": 2}
    if ns.bundle is not None and (ns.bundle / "manifest.json").is_file():
        defaults.update(json.loads((ns.bundle / "manifest.json").read_text()).get("diffusion", {}).get("defaults", {}))
    req = RequestSpec(user_index=ns.user_index, hour=ns.hour, sampler=ns.sampler or defaults["sampler"],
                      steps=ns.steps or int(defaults["steps"]), n_samples=ns.samples or int(defaults["n_samples"]))
    precisions = _csv(ns.precisions, str)
    bad = [x for x in precisions if x not in PRECISIONS]
    comps = _csv(ns.components, str)
    badc = [x for x in comps if x not in COMPONENTS]
    if bad or badc:
        raise SystemExit(f"unknown precisions {bad} (known {PRECISIONS}) / components {badc} (known {COMPONENTS})")
    return HarnessConfig(bundle=ns.bundle, ckpt=ns.ckpt, out=ns.out, quick=ns.quick, threads=_csv(ns.threads, int),
                         spinning=_csv(ns.spinning, _bool), batch=ns.batch, precisions=precisions,
                         providers=_csv(ns.providers, str) if ns.providers else None, components=comps,
                         engines=_csv(ns.engines, str), gguf=tuple(ns.gguf), llm_request_quant=ns.llm_request_quant,
                         llm_max_tokens=ns.llm_max_tokens, request=req, timing=timing,
                         metric=(not ns.quick) if ns.metric is None else ns.metric,
                         data_dir=ns.data_dir)


def run(cfg: HarnessConfig, command: str = "", *, max_load: float | None = None,
        wait_load_s: float = 1800.0) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    """Build and measure every configuration; returns (rows, meta, skipped)."""
    from tqdm.auto import tqdm

    os.environ.setdefault("OMP_NUM_THREADS", str(max(cfg.threads)))
    t_start = time.perf_counter()
    h = Harness(cfg)
    cases = h.cases()
    if not cases:
        raise SystemExit("no configuration to measure (see the skip lines): " + "; ".join(h.skipped))
    la_wait = wait_for_quiet(max_load, wait_load_s) if max_load is not None else None
    machine = machine_info()
    env = {"git_commit": git_commit(),
           "machine_tag": f"{machine['cpu']} x{machine['logical_cores']}" + (f", {machine['gpu']}" if machine['gpu']
                                                                              else "")}
    load_before = load_average()
    n_burn = burn_in(cases[0].fn, cfg.timing.burn_in_s) if cfg.timing.burn_in_s > 0 else 0
    rows = []
    for c in tqdm(cases, desc="latency rows", unit="row"):
        log.info("measuring %s", c.name)
        rows.append(run_case(c, cfg.timing, env))
    load_after = load_average()
    meta = {
        "command": command, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": env["git_commit"], "machine": machine, "versions": h.vers,
        "load_before": load_before, "load_after": load_after, "load_when_waited": la_wait,
        "loaded": bool(load_before and load_before[0] >= 1.0) or bool(load_after and load_after[0] >= 1.5),
        "mode": "quick (smoke)" if cfg.quick else "full", "timing": asdict(cfg.timing),
        "burn_in": {"seconds": cfg.timing.burn_in_s, "calls": n_burn, "of": cases[0].name},
        "bundle": str(cfg.bundle) if cfg.bundle else None,
        "bundle_created": (h.manifest or {}).get("created_utc"),
        "bundle_onnx_sha256": bundle_fingerprint(h.manifest),
        "checkpoint": str(getattr(h, "ckpt", None)),
        "request": {**asdict(cfg.request), "description": cfg.request.describe()},
        "ratios": request_ratios(rows), "wall_seconds": round(time.perf_counter() - t_start, 1),
        "notes": [
            "Latency in ms per call (a request row: one full request). Peak RSS is the process's resident peak "
            "while the row ran (every model loaded so far included).",
            "Component inputs come from the benchmarked REAL request window (tiled to the batch); the denoiser "
            "row is one DiT call at t = 999 (the sampler's first step).",
            "Parity: vs torch eager fp32 on the same inputs; 'export_time' (JSON) repeats the manifest's figures.",
            "Data: REAL Tsinghua 6-user one-day sample (data/tsinghua_app_usage); the model was trained on "
            "SYNTHETIC users (see the checkpoint's config).",
        ] + h.notes,
    }
    return rows, meta, list(dict.fromkeys(h.skipped))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    cfg = config_from_args(ns)
    command = shlex.join(["python", "-m", "umask.bench.latency.harness", *argv])
    rows, meta, skipped = run(cfg, command, max_load=ns.max_load, wait_load_s=ns.wait_load_s)
    paths = write_results(cfg.out, rows, meta, skipped)
    print(markdown_summary(rows, meta, skipped), end="")
    for s in skipped:
        log.info("skip: %s", s)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
