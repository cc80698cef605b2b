"""int8 report of a U-MASK DiT step: calibration methods, per-layer errors, float islands, parity and latency vs fp32.

::

    python -m umask.bench.latency.int8_report --ckpt artifacts/train/edge_small \
        --out benchmarks/results/int8_report.json

One run, one process, one thread (``OMP_NUM_THREADS=1``, onnxruntime intra-op 1, spinning off):

1. REAL windows of the shipped Tsinghua sample (the exporter's `real_windows`: runtime featurization,
   four tasks), split in two halves: calibration windows (even) and held-out parity windows (odd),
   DiT inputs at the export's parity timesteps;
2. the fp32 DiT step ONNX (the exporter's module), then int8 variants: the legacy path (no
   pre-processing, MinMax), ``quant_pre_process`` + S8S8 QDQ per channel with each calibration method
   (MinMax, Entropy, Percentile), the best method with its worst N layers kept float (per-layer
   SQNR of onnxruntime's qdq_loss_debug), and dynamic int8 for reference;
3. parity of each on the held-out windows against torch fp32 (the exporter's `dit_parity`: model-space
   rel max over 5 timesteps and the full 10-step DDIM completion MAE, app top-5 agreement) and the
   export gate (`TOLERANCES`);
4. DiT-step latency of every variant at the request's batch (n_samples) in INTERLEAVED rounds (each
   round runs every variant once, so a load change hits all alike), with llama-bench-style
   repetitions (mean, std of the repetition means; p50, p99 of all samples);
5. the CPU's int8 flags, the load average before / after, and what the runtime's ``precision="auto"``
   rule (`umask.runtime.engines.precision_choice.decide`) picks from these figures.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from umask.bench.latency.machine import git_commit, load_average, machine_info
from umask.bench.latency.timing import split_summary, write_json_md

log = logging.getLogger(__name__)

DEFAULT_OUT = Path("benchmarks/results/int8_report.json")


def _time_interleaved(sessions: dict[str, Any], feed: dict[str, np.ndarray], rounds: int,
                      repetitions: int) -> dict[str, dict[str, Any]]:
    for s in sessions.values():            # warm-up
        for _ in range(3):
            s.run(None, feed)
    samples: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(rounds):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, feed)
            samples[k].append((time.perf_counter() - t0) * 1e3)
    return {k: split_summary(v, repetitions) for k, v in samples.items()}


def build_report(ckpt: Path, *, keep_float: tuple[int, ...] = (2, 4), rounds: int = 60, repetitions: int = 5,
                 max_windows: int = 24, work: Path | None = None) -> dict[str, Any]:
    import torch

    from umask.export import precision as prec
    from umask.export.families.umask import exporter as ex
    from umask.export.families.umask import networks as om
    from umask.runtime.core.catalog import load_llmapp_catalog
    from umask.runtime.core.featurize import ChannelLayout
    from umask.runtime.engines.ort import cpu_int8_caps, inference_session, session_options
    from umask.runtime.engines.precision_choice import decide
    from umask.train.common.checkpoints import resolve_checkpoint
    from umask.train.models.umask.profile_encoder import SentenceEncoder
    from umask.train.models.umask.trainer import load_model

    torch.set_num_threads(1)
    load_before = load_average()
    ckpt_dir = resolve_checkpoint(ckpt)
    model, _ = load_model(ckpt_dir, ema=True)
    model.eval()
    catalog = load_llmapp_catalog(ex.DEFAULT_DATA)
    channels = ChannelLayout.for_catalog(catalog)
    pairs = ex.real_windows_with_history(model, ex.DEFAULT_DATA, max_windows=max_windows)
    enc = SentenceEncoder() if model.cfg.use_profile else None
    cal_p, ev_p = pairs[0::2], pairs[1::2]
    cal_w, ev_w = [w for w, _ in cal_p], [w for w, _ in ev_p]
    b_cal = ex.torch_inputs(model, cal_w, enc, ex.window_priors(model, cal_p, catalog))   # a prior model's prior
    b_ev = ex.torch_inputs(model, ev_w, enc, ex.window_priors(model, ev_p, catalog))
    b_ev["target"] = torch.from_numpy(np.stack([w.target for w in ev_w]))
    cal_feeds, ev_feeds = ex.dit_feeds(model, b_cal), ex.dit_feeds(model, b_ev, seed=1)
    td = Path(tempfile.mkdtemp(prefix="int8-report-", dir=work))
    src = td / "dit.fp32.onnx"
    om.export_module(om.wrappers(model)["dit"], om.example_inputs(model)["dit"], src)
    gate = ex.TOLERANCES["int8-qdq"]
    variants: dict[str, dict[str, Any]] = {"fp32": {"file": src, "conversion": {"method": "torch.onnx.export"}}}

    def add(name: str, path: Path, meta: dict[str, Any]) -> None:
        variants[name] = {"file": path, "conversion": meta}

    t0 = time.perf_counter()
    add("int8-qdq legacy (no pre-process, minmax)", td / "legacy.onnx",
        prec.to_int8_qdq(src, td / "legacy.onnx", cal_feeds, pre_process=False))
    for m in prec.CALIBRATION_METHODS:
        add(f"int8-qdq {m}", td / f"{m}.onnx", prec.to_int8_qdq(src, td / f"{m}.onnx", cal_feeds, method=m))
    add("int8-dynamic", td / "dynamic.onnx", prec.to_int8_dynamic(src, td / "dynamic.onnx"))
    for name, v in variants.items():
        v["parity"] = ex.dit_parity(model, v["file"], ev_feeds, b_ev, channels)
        log.info("%s: %s", name, {k: v["parity"][k] for k in ("rel_max", "completion_mae")})
    methods = {m: variants[f"int8-qdq {m}"]["parity"]["completion_mae"] for m in prec.CALIBRATION_METHODS}
    best = min(methods, key=methods.get)
    layers = prec.layer_errors(src, variants[f"int8-qdq {best}"]["file"], ev_feeds[:2], work_dir=td)
    for n in keep_float:
        worst = prec.worst_nodes(layers, n)
        name = f"int8-qdq {best} + {n} worst layers float"
        add(name, td / f"{best}.keep{n}.onnx", prec.to_int8_qdq(src, td / f"{best}.keep{n}.onnx", cal_feeds,
                                                                method=best, keep_float=worst))
        variants[name]["parity"] = ex.dit_parity(model, variants[name]["file"], ev_feeds, b_ev, channels)
    convert_s = time.perf_counter() - t0

    # latency at the short-term request's batch: its draws of one window per DiT call (the bundle defaults)
    from umask.runtime.families.umask.checks import task_defaults

    n = int(task_defaults(ex.sampler_defaults(model), "short_term")["n_samples"])
    feed = {k: np.ascontiguousarray(np.repeat(v[:1], n, axis=0)) for k, v in ev_feeds[2].items()}
    so = session_options(threads=1, allow_spinning=False)
    sessions = {k: inference_session(v["file"], so) for k, v in variants.items()}
    lat = _time_interleaved(sessions, feed, rounds, repetitions)
    fp = lat["fp32"]["latency_ms"]["p50"]
    rows = []
    for name, v in variants.items():
        par = v["parity"]
        ok = name == "fp32" or (par["rel_max"] <= gate["rel_max"] and par["completion_mae"] <= gate["completion_mae"])
        rows.append({"variant": name, "bytes": v["file"].stat().st_size, "conversion": v["conversion"],
                     "parity": {k: par[k] for k in ("rel_max", "max_abs_diff", "completion_mae",
                                                    "completion_max_abs_diff", "app_top5_agreement", "n_windows")},
                     "passes_export_gate": bool(ok), **lat[name],
                     "speedup_vs_fp32_p50": round(fp / lat[name]["latency_ms"]["p50"], 4)})
    passing = {r["variant"]: r["latency_ms"]["p50"] for r in rows if r["passes_export_gate"]}
    fastest = min((k for k in passing if k != "fp32"), key=passing.get, default=None)
    rule_in = {"fp32": passing["fp32"], **({"int8": passing[fastest]} if fastest else {})}
    choice, why = decide(rule_in)
    caps = cpu_int8_caps()
    return {
        "meta": {"command": " ".join([os.path.basename(sys.executable), "-m", "umask.bench.latency.int8_report",
                                      *sys.argv[1:]]),
                 "commit": git_commit(), "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                 "checkpoint": str(ckpt_dir), "model_note": f"checkpoint {ckpt_dir}"
                 + (f" (prior {model.cfg.prior})" if getattr(model.cfg, "prior", "none") != "none" else ""),
                 "data": f"REAL: {ex.DEFAULT_DATA.name} sample, {len(cal_w)} calibration windows (even) and {len(ev_w)} "
                         f"held-out parity windows (odd), DiT inputs at timesteps {list(ex.PARITY_TIMESTEPS)}",
                 "latency_feed": {k: list(v.shape) for k, v in feed.items()}, "rounds": rounds,
                 "repetitions": repetitions, "threads": 1, "cpu_int8": caps, "machine": machine_info(),
                 "load_before": load_before, "load_after": load_average(),
                 "loaded": bool(load_before and load_before[0] >= 1.0),
                 "export_gate": gate, "conversion_seconds": round(convert_s, 1),
                 "notes": ["latency figures are PROVISIONAL: a 2-core machine shared with other agents (see the load "
                           "average); the rounds are interleaved so the ratios are fairer than the absolute ms",
                           "parity: the exporter's dit_parity on held-out windows (not used for calibration)"]},
        "calibration_comparison": methods, "best_calibration": best,
        "layer_errors": layers[:12], "rows": rows,
        "runtime_choice": {"precision": "fp32" if choice == "fp32" else fastest, "reason": why,
                           "rule": "umask.runtime.engines.precision_choice.decide (int8 only at <= 0.9 x fp32)"},
    }


def markdown(rep: dict[str, Any]) -> str:
    m = rep["meta"]
    c = m["cpu_int8"]
    flags = ", ".join(c["vnni_flags"]) or ("ARM dotprod" if c["arm_dotprod"] else "none")
    lines = ["# int8 report: U-MASK DiT step (fp32 vs int8 variants, same run)", "",
             f"{m['model_note']}.", "",
             f"Machine: {m['machine'].get('cpu')}, int8 dot-product flags: {flags} (reduce_range "
             f"{c['reduce_range']}); 1 thread; load average before / after {m['load_before']} / {m['load_after']}"
             f"{' (SHARED, LOADED: latency figures are provisional)' if m['loaded'] else ''}.",
             f"Data: {m['data']}. Latency feed {m['latency_feed']['x_t']} (the request's n_samples), {m['rounds']} "
             f"interleaved rounds, {m['repetitions']} repetitions.", f"Command: `{m['command']}` (commit {m['commit']})",
             "", "| variant | rel max | completion MAE | app top-5 | gate | p50 ms | p99 ms | mean ± std of reps ms "
                 "| speed-up vs fp32 | MB |",
             "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rep["rows"]:
        p, rp = r["parity"], r["repetitions"]
        lines.append(f"| {r['variant']} | {p['rel_max']:.3g} | {p['completion_mae']:.3g} | {p['app_top5_agreement']:.3f} "
                     f"| {'pass' if r['passes_export_gate'] else 'FAIL'} | {r['latency_ms']['p50']:.2f} | "
                     f"{r['latency_ms']['p99']:.2f} | {rp['mean']:.2f} ± {rp['std']:.2f} | "
                     f"{r['speedup_vs_fp32_p50']:.2f} | {r['bytes'] / 1e6:.2f} |")
    lines += ["", "Calibration methods (completion MAE on held-out windows): "
              + ", ".join(f"{k} {v:.3g}" for k, v in rep["calibration_comparison"].items())
              + f"; best: {rep['best_calibration']}.", "",
              "Worst quantized tensors (onnxruntime qdq_loss_debug; SQNR dB, higher is better):", "",
              "| tensor | QDQ SQNR dB | cross-model SQNR dB | MatMul / Gemm nodes |", "| --- | ---: | ---: | --- |"]
    for r in rep["layer_errors"][:8]:
        q, x = r["qdq_sqnr_db"], r["xmodel_sqnr_db"]
        lines.append(f"| {r['tensor']} | {'-' if q is None else f'{q:.1f}'} | {'-' if x is None else f'{x:.1f}'} | "
                     f"{', '.join(r['nodes']) or '-'} |")
    ch = rep["runtime_choice"]
    lines += ["", f"Runtime choice on this machine (`precision=\"auto\"` rule): **{ch['precision']}** ({ch['reason']}).", ""]
    lines += [f"- {n}" for n in m["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m umask.bench.latency.int8_report", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="U-MASK checkpoint (run folder, ckpt folder or step dir)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON path; the .md is written next to it")
    p.add_argument("--keep-float", default="2,4", help="comma-separated N: keep the N worst layers float (default 2,4)")
    p.add_argument("--rounds", type=int, default=60, help="interleaved latency rounds (default 60)")
    p.add_argument("--repetitions", type=int, default=5, help="repetitions the rounds are split into (default 5)")
    p.add_argument("--max-windows", type=int, default=24)
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    keep = tuple(int(x) for x in ns.keep_float.split(",") if x.strip())
    rep = build_report(Path(ns.ckpt), keep_float=keep, rounds=ns.rounds, repetitions=ns.repetitions,
                       max_windows=ns.max_windows)
    write_json_md(ns.out, rep, markdown(rep))
    print(markdown(rep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
