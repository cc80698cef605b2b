"""Latency rows: the configuration to time (`Case`), the row schema, and the JSON / CSV / markdown results.

A row follows onnxruntime's benchmark tooling and ``trtexec``: engine and version, execution provider,
precision, threads, spinning, batch and input shapes, warm-up and samples, min / p50 / p90 / p95 /
p99 / max latency (ms), peak RSS (device memory on a GPU), artifact size, parity against torch fp32,
date, git commit and machine. Written by ``python -m umask.bench.latency.harness``.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from umask.bench.latency.machine import REPO_ROOT
from umask.bench.latency.request import BUNDLE_PRECISION
from umask.bench.latency.timing import PeakRSS, Timing, TimingConfig, measure
from umask.runtime.engines.ort import cpu_int8_caps

COMPONENTS = ("denoiser_step", "mask_generator", "profile_encoder", "profile_mlp", "llm_profile",
              "request_profile_cached", "request_profile_generated")
ROW_FIELDS = ("name", "component", "engine", "engine_version", "provider", "provider_used", "device", "precision",
              "threads", "spinning", "batch", "shapes", "warmup_s", "warmup_iters", "samples", "latency_ms",
              "repetitions", "peak_rss_mb", "peak_rss_method", "device_mem_mb", "artifact", "artifact_bytes", "parity",
              "llm", "request", "cpu_int8", "date", "git_commit", "machine", "notes")
LATENCY_KEYS = ("min", "p50", "p90", "p95", "p99", "max", "mean", "std")
REPETITION_KEYS = ("n", "samples_per_rep", "mean", "std", "p50", "p99", "rep_means")   # timing.repetition_summary


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


def shapes_of(feed: Mapping[str, Any]) -> dict[str, list[int]]:
    """Input name -> shape of a feed (the ``shapes`` column)."""
    return {k: list(np.shape(v)) for k, v in feed.items()}


def total_bytes(paths: Sequence[Path]) -> int:
    """Summed size of the files (the ``artifact_bytes`` column)."""
    return int(sum(Path(p).stat().st_size for p in paths))


def repo_relative(paths: Sequence[Path]) -> list[str]:
    """The files relative to the repository root where they lie inside it (the ``artifact`` column)."""
    out = []
    for p in paths:
        p = Path(p).resolve()
        try:
            out.append(str(p.relative_to(REPO_ROOT)))
        except ValueError:
            out.append(str(p))
    return out


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
    rep = row["repetitions"]
    if not isinstance(rep, Mapping) or set(rep) != set(REPETITION_KEYS):
        raise ValueError(f"row {row['name']!r}: repetitions must have the keys {REPETITION_KEYS}, got {rep!r:.120}")
    if rep["n"] < 1 or sum(rep["samples_per_rep"]) != int(row["samples"]) or len(rep["rep_means"]) != rep["n"] \
            or not all(math.isfinite(rep[k]) and rep[k] >= 0 for k in ("mean", "std", "p50", "p99")):
        raise ValueError(f"row {row['name']!r}: inconsistent repetitions {rep!r:.160}")
    if not isinstance(row["cpu_int8"], Mapping) or "int8_dot" not in row["cpu_int8"]:
        raise ValueError(f"row {row['name']!r}: cpu_int8 must be the CPU's int8 flags (runtime.engines.ort.cpu_int8_caps)")


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
        "samples": len(timing.samples_ms), "latency_ms": timing.summary(), "repetitions": timing.repetitions(),
        "peak_rss_mb": rss.mb, "peak_rss_method": rss.method,
        "device_mem_mb": case.device_mem() if case.device_mem is not None else None,
        "artifact": case.artifact, "artifact_bytes": case.artifact_bytes, "parity": parity,
        "llm": extra.get("llm"), "request": extra.get("request"), "cpu_int8": env.get("cpu_int8") or cpu_int8_caps(),
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
    c8 = next((r["cpu_int8"] for r in rows if r.get("cpu_int8")), None)
    if c8:
        lines += [f"CPU int8 dot product: {', '.join(c8['vnni_flags']) or ('ARM dotprod' if c8['arm_dotprod'] else 'none')}"
                  f" (onnxruntime reduce_range {c8['reduce_range']}).", ""]
    lines += ["| component | engine | precision | provider | thr | spin | batch | p50 ms | p90 ms | p99 ms | min ms "
              "| mean ± std of reps ms | peak RSS MB | size MB | parity vs torch fp32 |",
              "| --- | --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        lat = r["latency_ms"]
        rp = r.get("repetitions") or {}
        reps = f"{rp['mean']:.2f} ± {rp['std']:.2f} (r={rp['n']})" if rp else "-"
        size = None if r["artifact_bytes"] is None else r["artifact_bytes"] / 1e6
        spin = "-" if r["spinning"] is None else ("on" if r["spinning"] else "off")
        rq = r.get("request") or {}
        comp = r["component"] + (f" ({rq['sampler']} {rq['steps']}x{rq['n_samples']})" if rq else "")
        lines.append(f"| {comp} | {r['engine']} {r['engine_version']} | {r['precision']} | {r['provider']} | "
                     f"{r['threads']} | {spin} | {r['batch']} | {lat['p50']:.2f} | {lat['p90']:.2f} | {lat['p99']:.2f} | "
                     f"{lat['min']:.2f} | {reps} | {_fmt(r['peak_rss_mb'], '.0f')} | {_fmt(size, '.2f')} | "
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

def v2_request_rows(rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any], model: str) -> list[dict[str, Any]]:
    """Scoreboard (PROTOCOL v2 result-file) rows of the full-request rows: request p50 / p99 ms per engine x
    precision x sampler configuration, REAL sample request (B1, short term), for the README tables."""
    out = []
    for r in rows:
        if r["component"] != "request_profile_cached" or r["device"] != "cpu":
            continue
        q = r.get("request") or {}
        torch_ = r["engine"].startswith("torch")
        name = model + ("" if q.get("steps") == (meta.get("request") or {}).get("steps")
                        and q.get("n_samples") == (meta.get("request") or {}).get("n_samples")
                        else f"@{q.get('sampler')}{q.get('steps')}x{q.get('n_samples')}")
        for metric, key in (("request_p50_ms", "p50"), ("request_p99_ms", "p99")):
            out.append({"protocol": "B1", "dataset": f"tsinghua sample request latency, {r['threads']} thread(s)",
                        "data": "real", "model": name, "kind": "ours", "family": "umask",
                        "artifact": "torch" if torch_ else "onnx-" + BUNDLE_PRECISION.get(r["precision"], r["precision"]),
                        "metric": metric, "value": round(float(r["latency_ms"][key]), 3), "better": "lower",
                        "n_windows": int(r["samples"]), "seeds": [int(q.get("seed", 0))], "spread": None,
                        "command": meta.get("command", ""),
                        "notes": (f"{r['engine']} {r['engine_version']}, {q.get('sampler')} {q.get('steps')} steps x "
                                  f"{q.get('n_samples')} draws, profile (text + embedding) cached; machine "
                                  f"{r.get('machine')}, load before / after {meta.get('load_before')} / "
                                  f"{meta.get('load_after')}")})
    return out


def bundle_fingerprint(manifest: Mapping[str, Any] | None) -> str | None:
    """sha256 over the (path, sha256) of the bundle's ONNX files: equal for identical networks across exports."""
    if not manifest:
        return None
    items = sorted((k, v["sha256"]) for k, v in manifest.get("files", {}).items() if k.endswith(".onnx"))
    return hashlib.sha256(json.dumps(items).encode()).hexdigest() if items else None


def request_ratios(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """p50 of each cached-profile request row / p50 of the torch eager fp32 request at the same threads and the
    same sampler configuration; and, when the run has a torch row at another configuration (the harness's
    ``reference_request``), / that row too."""
    def conf(r: Mapping[str, Any]) -> tuple[Any, ...]:
        q = r.get("request") or {}
        return (q.get("sampler"), q.get("steps"), q.get("n_samples"))

    torch_rows = [r for r in rows if r["component"] == "request_profile_cached" and r["engine"] == "torch"
                  and r["device"] == "cpu"]
    out = {}
    for r in rows:
        if r["component"] != "request_profile_cached" or r["engine"] == "torch":
            continue
        spin = "" if r["spinning"] is None else (", spin on" if r["spinning"] else ", spin off")
        name = f"{r['engine']} {r['precision']} {r['provider']} ({r['threads']} thr{spin})"
        for t in torch_rows:
            if t["threads"] != r["threads"]:
                continue
            same = conf(t) == conf(r)
            s_, n_, k_ = conf(t)
            key = f"{name} / torch fp32 ({r['threads']} thr" + (")" if same else f", {s_} {n_} steps x {k_} draws)")
            out[key] = round(r["latency_ms"]["p50"] / t["latency_ms"]["p50"], 4)
    return out


__all__ = ["COMPONENTS", "ROW_FIELDS", "LATENCY_KEYS", "REPETITION_KEYS", "Case", "validate_row", "run_case", "rows_csv",
           "markdown_summary", "write_results", "v2_request_rows", "bundle_fingerprint", "request_ratios", "shapes_of", "total_bytes",
           "repo_relative"]
