"""Export a checkpoint to a bundle and write the size / parity / wall-time report.

::

    OMP_NUM_THREADS=1 python -m umask.bench.reports.export --ckpt artifacts/train/umask_small/ckpt/latest \
        --out artifacts/bundles/small --report benchmarks/results/export_small.json

Writes ``--report`` (JSON: the export's manifest summary: bundle size per precision, parity per
artifact, tolerances, export wall time, machine) and the markdown next to it. Parity figures are on
the REAL Tsinghua sample windows (see export/families/umask/exporter.py); the model itself was trained on
SYNTHETIC users (the checkpoint's training data is named in the report).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)


def _mb(n: int) -> float:
    return round(n / 1e6, 3)


def summarize(bundle: Path, manifest: dict[str, Any], wall: float, command: str) -> dict[str, Any]:
    files = manifest["files"]
    shared = sum(v["size"] for k, v in files.items() if not k.startswith("onnx/") or k.startswith("onnx/fp32/")
                 and Path(k).stem in ("maskgen", "sbert"))
    sizes = {}
    for p, arts in manifest["artifacts"].items():
        own = {n: files[e["file"]]["size"] for n, e in arts.items() if e.get("file") and e.get("status") == "ok"}
        nets = {n: s for n, s in own.items() if n in ("dit", "profile_mlp")}
        sizes[p] = {"dit_mb": _mb(nets["dit"]) if "dit" in nets else "rejected",
                    "profile_mlp_mb": _mb(nets["profile_mlp"]) if "profile_mlp" in nets else "rejected",
                    "maskgen_mb (fp32, shared)": _mb(files["onnx/fp32/maskgen.onnx"]["size"]),
                    "device_total_mb": _mb(sum(nets.values()) + shared)}
    comp = {}
    sb = manifest.get("sbert", {})
    if sb.get("file"):
        comp["SBERT fp32 (default)"] = {"mb": _mb(files[sb["file"]]["size"]), "parity": sb.get("parity")}
    s8 = sb.get("int8", {})
    if s8:
        comp["SBERT int8 (opt-in, sbert_precision=int8)"] = {
            "mb": _mb(files[s8["file"]]["size"]) if s8.get("file") in files else s8.get("status"),
            "parity": s8.get("parity"), "status": s8.get("status")}
    for f in manifest.get("llm", {}).get("files", []):
        comp[f"LLM {Path(f).name} ({manifest['llm'].get('quant')})"] = {"mb": _mb(files[f]["size"]), "parity": None}
    other = sum(v["size"] for k, v in files.items() if k.startswith(("catalog/", "tokenizer/")))
    comp["catalog + tokenizer"] = {"mb": _mb(other), "parity": None}
    parity = {p: {n: {"status": e.get("status"), **{k: v for k, v in e.get("parity", {}).items() if k != "timesteps"}}
                  for n, e in arts.items() if "parity" in e} for p, arts in manifest["artifacts"].items()}
    return {"meta": {"command": command, "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared), "
                     "1 thread", "checkpoint": manifest["checkpoint"], "bundle": str(bundle),
                     "parity_inputs": manifest["parity_inputs"], "versions": manifest["versions"],
                     "export_wall_seconds": round(wall, 1), "tensorrt": manifest["tensorrt"], "llm": manifest["llm"],
                     "sbert": {k: manifest["sbert"].get(k) for k in ("status", "model_id", "parity")}},
            "bundle_total_mb": _mb(sum(v["size"] for v in files.values())), "sizes": sizes, "shared": comp,
            "parity": parity,
            "tolerances": manifest["tolerances"]}


def markdown(r: dict[str, Any]) -> str:
    m = r["meta"]
    lines = [f"# Export report: {m['bundle']}", "",
             f"Command: `{m['command']}`  ",
             f"Machine: {m['machine']}. Checkpoint: `{m['checkpoint']['path']}` (step {m['checkpoint']['step']}, "
             f"trained on {m['checkpoint']['training_data']}).  ",
             f"Parity inputs: {m['parity_inputs']['data']}; DiT timesteps {m['parity_inputs']['dit_timesteps']}.  ",
             f"Export wall time: {m['export_wall_seconds']} s. Bundle on disk: {r['bundle_total_mb']} MB "
             f"(incl. SBERT {m['sbert']['status']}, catalog, tokenizer). TensorRT: {m['tensorrt']['status']}"
             f" ({m['tensorrt'].get('reason', '')}). GGUF: {m['llm']['status']}.", "",
             "## Size per precision (MB)", "", "| precision | DiT | profile MLP | mask gen (fp32) | device total |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for p, s in r["sizes"].items():
        lines.append(f"| {p} | {s['dit_mb']} | {s['profile_mlp_mb']} | {s['maskgen_mb (fp32, shared)']} | "
                     f"{s['device_total_mb']} |")
    lines += ["", "Device total = this precision's DiT + profile MLP + the shared fp32 mask generator, fp32 SBERT, "
              "the profiling LLM (when shipped), tokenizer and catalog.", "",
              "## Shared components", "", "| component | MB | parity |", "| --- | ---: | --- |"]
    for name, c in r.get("shared", {}).items():
        par = c.get("parity") or {}
        ptxt = ", ".join(f"{k} {par[k]:.4g}" for k in ("min_cosine", "mean_cosine", "max_abs_diff") if k in par)
        lines.append(f"| {name} | {c['mb']} | {ptxt or '-'} |")
    lines += ["", "LLM parity (greedy token agreement vs torch, tokens/s) is in uscope_gguf.md.", "",
              "## Parity vs torch fp32 (REAL-sample windows)", "",
              "| precision | network | status | max abs diff | rel max | completion max diff | completion MAE | "
              "app top-5 agreement | other |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]

    def f(v: Any) -> str:
        return "-" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))

    for p, nets in r["parity"].items():
        for n, e in nets.items():
            other = ", ".join(f"{k} {f(e[k])}" for k in ("mask_agreement", "min_cosine") if k in e)
            lines.append(f"| {p} | {n} | {e['status']} | {f(e.get('max_abs_diff'))} | {f(e.get('rel_max'))} | "
                         f"{f(e.get('completion_max_abs_diff'))} | {f(e.get('completion_mae'))} | "
                         f"{f(e.get('app_top5_agreement'))} | {other} |")
    lines += ["", "Tolerances (export/families/umask/exporter.py TOLERANCES): " + json.dumps(r["tolerances"]), ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from umask.export.families.umask.exporter import DEFAULT_GGUF_DIR, export_bundle

    ap = argparse.ArgumentParser(prog="python -m umask.bench.reports.export", description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--out", required=True, help="bundle directory")
    ap.add_argument("--report", default="benchmarks/results/export_small.json")
    ap.add_argument("--gguf-dir", default=str(DEFAULT_GGUF_DIR))
    ap.add_argument("--llm-quant", default="q8_0", help="profiling LLM shipped: q8_0 | q4_k_m | f16 | base+lora")
    ns = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    command = "OMP_NUM_THREADS=1 python -m umask.bench.reports.export " + shlex.join(list(argv or sys.argv[1:]))
    t0 = time.perf_counter()
    man = export_bundle(ns.ckpt, ns.out, gguf_dir=ns.gguf_dir, llm_quant=ns.llm_quant)
    r = summarize(Path(ns.out), man, time.perf_counter() - t0, command)
    out = Path(ns.report)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(r, indent=1) + "\n")
    os.replace(tmp, out)
    md = out.with_suffix(".md")
    md.with_suffix(".md.tmp").write_text(markdown(r))
    os.replace(md.with_suffix(".md.tmp"), md)
    print(markdown(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
