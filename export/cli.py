"""``umask export`` and ``umask run`` command lines."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Sequence

log = logging.getLogger(__name__)


def export_main(argv: Sequence[str] | None = None) -> int:
    from umask.export.families.umask.exporter import (DEFAULT_DATA, DEFAULT_GGUF_DIR, DEFAULT_SBERT_CACHE, LLM_QUANTS, ExportError,
                                       export_bundle)
    from umask.export.precision import PRECISIONS

    p = argparse.ArgumentParser(
        prog="umask export",
        description="Export a U-MASK training checkpoint to a verified on-device bundle: ONNX (fp32, fp16, int8 QDQ, "
                    "int8 dynamic) of the DiT step, mask generator, profile MLP and SBERT encoder, TensorRT engines "
                    "when tensorrt imports, the profiling LLM's GGUF files, and manifest.json with sha256 and "
                    "parity figures. Every artifact is checked against torch fp32 on real-sample windows; one beyond "
                    "its tolerance is not written.",
        epilog="example: umask export --ckpt artifacts/train/umask_small/ckpt/latest --out artifacts/bundles/small")
    p.add_argument("--ckpt", required=True, help="checkpoint: a step directory, a ckpt/latest|best pointer, a ckpt "
                                                 "folder or a run folder")
    p.add_argument("--out", required=True, help="bundle directory to write (replaced atomically)")
    p.add_argument("--precisions", default=",".join(PRECISIONS),
                   help=f"comma-separated, must include fp32 (default: {','.join(PRECISIONS)})")
    p.add_argument("--gguf-dir", default=str(DEFAULT_GGUF_DIR),
                   help="the U-SCOPE pipeline's GGUF folder; the LLM chosen by --llm-quant goes into the bundle's llm/ "
                        "(absent: noted, the device writes template profiles)")
    p.add_argument("--llm-quant", default="q8_0", choices=LLM_QUANTS,
                   help="which profiling LLM to ship: a merged model quant, or base+lora (base GGUF + LoRA adapter GGUF)")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA),
                   help="Tsinghua LLMApp folder: catalog tables for the device + the real calibration sample")
    p.add_argument("--no-sbert", action="store_true", help="leave the SBERT encoder out (no semantic profile on device)")
    p.add_argument("--sbert-cache", default=str(DEFAULT_SBERT_CACHE), help="reuse folder for the SBERT ONNX export")
    p.add_argument("--no-tensorrt", action="store_true", help="do not try to build TensorRT engines")
    ns = p.parse_args(argv)
    try:
        m = export_bundle(ns.ckpt, ns.out, precisions=[s.strip() for s in ns.precisions.split(",") if s.strip()],
                          data_dir=ns.data_dir, gguf_dir=ns.gguf_dir or None, llm_quant=ns.llm_quant, sbert=not ns.no_sbert,
                          sbert_cache=ns.sbert_cache or None, tensorrt=not ns.no_tensorrt)
    except (ExportError, ValueError, OSError) as e:
        print(f"umask export: error: {' '.join(str(e).split())}", file=sys.stderr)
        return int(getattr(e, "exit_code", 2))
    summary = {p_: {n: {"status": e.get("status"), **{k: e.get("parity", {}).get(k) for k in
                                                      ("rel_max", "completion_max_abs_diff")}}
                    for n, e in a.items() if "parity" in e} for p_, a in m["artifacts"].items()}
    print(json.dumps({"bundle": ns.out, "export_seconds": m["export_seconds"], "tensorrt": m["tensorrt"]["status"],
                      "llm": m["llm"]["status"], "artifacts": summary}, indent=1))
    return 0


def run_main(argv: Sequence[str] | None = None) -> int:
    from umask.runtime.core.bundle import BundleError
    from umask.runtime.families.umask.session import Session

    p = argparse.ArgumentParser(
        prog="umask run",
        description="Run a bundle on one user's raw event history, privately (numpy + onnxruntime, no torch, no "
                    "network), and print the predictions as JSON.",
        epilog="history formats: events.csv (header time,app_id,base_id,bytes; time = local YYYYMMDDhhmmss), the "
               "official Tsinghua trace text, or the LLMApp CSV sample (one user). Example: umask run --bundle "
               "artifacts/bundles/small --history events.csv --task short")
    p.add_argument("--bundle", required=True, help="bundle directory written by 'umask export'")
    p.add_argument("--history", required=True, help="the user's event history file")
    p.add_argument("--task", required=True, choices=("short", "long", "cold", "impute"),
                   help="short: next hour; long: next 24 h; cold: app + location recommendation; impute: fill gaps")
    p.add_argument("--precision", default="fp32", help="fp32 | fp16 | int8-qdq | int8-dynamic (default fp32)")
    p.add_argument("--sbert-precision", default="fp32", choices=("fp32", "int8"),
                   help="profile-text encoder: fp32 (default) or the bundle's cosine-gated int8 SBERT (~4x smaller)")
    p.add_argument("--providers", default="cpu", help="comma-separated: cpu, cuda, tensorrt (falls back to cpu)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    p.add_argument("--spin", action="store_true", help="let idle onnxruntime threads spin (faster, burns CPU)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the bundle's)")
    p.add_argument("--sampler", default=None, choices=("ddim", "dpmpp_2m"), help="default: the bundle's")
    p.add_argument("--samples", type=int, default=None, help="completions averaged (default: the bundle's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-k", type=int, default=5, help="items to recommend (task cold)")
    p.add_argument("--now", type=int, default=None,
                   help="end of the history as local YYYYMMDDhhmmss (default: the slot after the last event)")
    p.add_argument("--profile-source", default="auto", choices=("auto", "template", "llm"))
    ns = p.parse_args(argv)
    from umask.runtime.core.errors import InputError
    from umask.runtime.core.events import parse_compact_time

    try:
        now_ts = None
        if ns.now is not None:
            ts, ok = parse_compact_time([ns.now])
            if not ok[0]:
                raise InputError(f"--now {ns.now} is not a valid YYYYMMDDhhmmss time")
            now_ts = int(ts[0])
        s = Session.open(ns.bundle, providers=ns.providers.split(","), threads=ns.threads, allow_spinning=ns.spin,
                         sbert_precision=ns.sbert_precision,
                         precision=ns.precision, profile_source=ns.profile_source)
        kw = {"steps": ns.steps, "sampler": ns.sampler, "n_samples": ns.samples, "seed": ns.seed, "now_ts": now_ts}
        out = s.run(ns.history, ns.task, k=ns.k, **kw)
    except (BundleError, ValueError, OSError) as e:
        print(f"umask run: error: {' '.join(str(e).split())}", file=sys.stderr)
        return int(getattr(e, "exit_code", 2))
    print(json.dumps(out, indent=1, default=float))
    return 0


__all__ = ["export_main", "run_main"]
