"""Plots of the latency harness and the steps sweep (matplotlib, Agg), next to the result files.

::

    python -m umask.bench.plots.latency --latency benchmarks/results/latency_cpu.json \\
        --sweep benchmarks/results/steps_sweep.json --out benchmarks/results/plots

Writes
* ``latency_per_config.png``: p50 latency per configuration (bar) with p90 and p99 marks, per component;
* ``steps_accuracy.png``: error vs sampler steps per task (B1, B2, A1), one line per sampler, and the
  full-request latency vs steps;
* ``tradeoff_precision.png``: per precision of the full request: latency (x) vs the task metric
  (y, short-term active MAE on the REAL sample), marker area = artifact size on disk; plus the
  denoiser step's latency vs its file size.
Each title names the machine and the load average of the run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

COMPONENT_ORDER = ("request_profile_generated", "request_profile_cached", "llm_profile", "profile_encoder",
                   "mask_generator", "denoiser_step", "profile_mlp")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _machine(meta: Mapping[str, Any]) -> str:
    m = meta.get("machine", {})
    la = meta.get("load_before")
    return f"{m.get('cpu')} x{m.get('logical_cores')}, load {la[0] if la else '?'}"


def _label(r: Mapping[str, Any]) -> str:
    eng = r["engine"].replace("onnxruntime (umask Session)", "ORT Session").replace("onnxruntime", "ORT")
    prov = r["provider"].replace("ExecutionProvider", "")
    return f"{eng} {r['precision']} {prov} t{r['threads']}"


def plot_latency(res: Mapping[str, Any], out: Path) -> Path:
    plt = _plt()
    rows = sorted(res["rows"], key=lambda r: (COMPONENT_ORDER.index(r["component"])
                                              if r["component"] in COMPONENT_ORDER else 99, r["latency_ms"]["p50"]))
    n = len(rows)
    fig, ax = plt.subplots(figsize=(10, 0.32 * n + 1.6))
    y = list(range(n))
    p50 = [r["latency_ms"]["p50"] for r in rows]
    colors = {c: f"C{i}" for i, c in enumerate(COMPONENT_ORDER)}
    ax.barh(y, p50, color=[colors.get(r["component"], "gray") for r in rows], alpha=0.8)
    ax.scatter([r["latency_ms"]["p90"] for r in rows], y, marker="|", color="k", s=60, label="p90")
    ax.scatter([r["latency_ms"]["p99"] for r in rows], y, marker="x", color="k", s=18, label="p99")
    ax.set_yticks(y, [f"{r['component']}: {_label(r)}" for r in rows], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("latency per call (ms, log scale); bar = p50")
    ax.set_title(f"Latency per configuration ({_machine(res['meta'])}, {res['meta'].get('mode')})", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.invert_yaxis()
    fig.tight_layout()
    p = out / "latency_per_config.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p


def _step_ticks(ax: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    steps = sorted({int(r["steps"]) for r in rows})
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(steps, [str(s) for s in steps])


def plot_steps(sweep: Mapping[str, Any], out: Path) -> Path:
    plt = _plt()
    rows = sweep["rows"]
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    samplers = list(dict.fromkeys(r["sampler"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks) + 1, figsize=(3.6 * (len(tasks) + 1), 3.4))
    for ax, task in zip(axes, tasks):
        for i, s in enumerate(samplers):
            pts = sorted((r["steps"], r["error"]) for r in rows if r["task"] == task and r["sampler"] == s)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=f"C{i}", label=s)
            ref = max(pts)[1]
            ax.axhline(1.05 * ref, color=f"C{i}", ls=":", lw=0.8)
        metric = next(r["error_metric"] for r in rows if r["task"] == task)
        _step_ticks(ax, rows)
        ax.set_xlabel("sampler steps")
        ax.set_ylabel(metric, fontsize=7)
        ax.set_title(f"{task} ({'REAL' if task == 'A1' else 'SYNTHETIC'})", fontsize=9)
        ax.legend(fontsize=7, title="dotted: 1.05 x error at max steps", title_fontsize=6)
    ax = axes[-1]
    for i, s in enumerate(samplers):
        pts = sorted({(r["steps"], r["latency_ms"]["p50"]) for r in rows if r["sampler"] == s})
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=f"C{i}", label=s)
    _step_ticks(ax, rows)
    ax.set_yscale("log")
    ax.set_xlabel("sampler steps")
    ax.set_ylabel("full request p50 (ms)")
    ax.set_title(sweep["meta"].get("latency_engine", "")[:40], fontsize=7)
    ax.legend(fontsize=7)
    fig.suptitle(f"Accuracy vs steps ({_machine(sweep['meta'])})", fontsize=9)
    fig.tight_layout()
    p = out / "steps_accuracy.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p


def plot_tradeoff(res: Mapping[str, Any], out: Path) -> Path:
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    req = [r for r in res["rows"] if r["component"] == "request_profile_cached"]
    for i, r in enumerate(req):
        par = r.get("parity") or {}
        y = par.get("value")
        if y is None:
            continue
        size = (r["artifact_bytes"] or 0) / 1e6
        a1.scatter(r["latency_ms"]["p50"], y, s=20 + 4 * size, color=f"C{i}", alpha=0.7, label=f"{_label(r)} ({size:.1f} MB)")
    a1.ticklabel_format(axis="y", useOffset=False)
    a1.set_xlabel("full request p50 latency (ms)")
    a1.set_ylabel("short-term active MAE, REAL sample (lower is better)")
    a1.set_title("request: latency vs accuracy (marker area ~ size on disk)", fontsize=8)
    if a1.collections:
        a1.legend(fontsize=6)
    den = [r for r in res["rows"] if r["component"] == "denoiser_step" and r["artifact_bytes"]]
    for i, r in enumerate(den):
        a2.scatter(r["artifact_bytes"] / 1e6, r["latency_ms"]["p50"], color=f"C{i}", label=_label(r))
        a2.annotate(r["precision"], (r["artifact_bytes"] / 1e6, r["latency_ms"]["p50"]), fontsize=7)
    a2.set_xlabel("artifact size (MB; torch row: the whole checkpoint)")
    a2.set_ylabel("denoiser step p50 (ms)")
    a2.set_title("denoiser: size vs latency per precision", fontsize=8)
    if den:
        a2.legend(fontsize=6)
    fig.suptitle(f"Size / latency / accuracy per precision ({_machine(res['meta'])})", fontsize=9)
    fig.tight_layout()
    p = out / "tradeoff_precision.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m umask.bench.plots.latency", description=__doc__.splitlines()[0])
    p.add_argument("--latency", type=Path, default=Path("benchmarks/results/latency_cpu.json"))
    p.add_argument("--sweep", type=Path, default=Path("benchmarks/results/steps_sweep.json"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/plots"))
    ns = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    ns.out.mkdir(parents=True, exist_ok=True)
    written = []
    if ns.latency.is_file():
        res = json.loads(ns.latency.read_text())
        written += [plot_latency(res, ns.out), plot_tradeoff(res, ns.out)]
    else:
        log.warning("no %s: latency plots skipped", ns.latency)
    if ns.sweep.is_file():
        written.append(plot_steps(json.loads(ns.sweep.read_text()), ns.out))
    else:
        log.warning("no %s: steps plot skipped", ns.sweep)
    if not written:
        p.error("nothing to plot")
    print("wrote " + ", ".join(map(str, written)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
