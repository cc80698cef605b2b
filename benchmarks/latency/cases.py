"""The configurations of a latency run, one maker per engine: torch, onnxruntime, TensorRT, llama.cpp.

Each ``*_cases(h)`` takes the `Harness` (benchmarks/latency/harness.py) and returns its `Case` list;
a configuration that cannot run here adds one line to ``h.skipped`` instead. Component rows time
one network of a backend (``backend.bind``); request rows time the runtime Session opened on that
backend (``SessionPipe``). Run by ``python -m umask.bench.latency.harness``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from umask.bench.latency.machine import REPO_ROOT
from umask.bench.latency.request import BUNDLE_PRECISION, NETS, SessionPipe
from umask.bench.latency.rows import Case, repo_relative, total_bytes
from umask.bench.latency.timing import Timing, TimingConfig

SESSION_NETS = ("dit", "maskgen", "profile_mlp")


def _torch_setup(threads: int, device: str) -> Callable[[], None]:
    def setup() -> None:
        import torch

        torch.set_num_threads(threads)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
    return setup


def torch_cases(h: Any) -> list[Case]:
    """Torch eager fp32 (the reference): each network and the Session on the torch backend, CPU (+ CUDA)."""
    import torch

    from umask.bench.latency.backends import TorchBackend

    h._load_torch()
    cfg = h.cfg
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    ckpt_files = [p for p in (h.ckpt / "ema.safetensors", h.ckpt / "config.json") if p.exists()]
    sbert_files = [p for p in (Path(h.encoder.model_path) / "model.safetensors",) if p.exists()]
    out = []
    for dev in devices:
        cuda = dev == "cuda"
        hooks = {"sync": torch.cuda.synchronize if cuda else None,
                 "device_mem": (lambda: round(torch.cuda.max_memory_allocated() / 2**20, 1)) if cuda else None}
        backend = h.torch_backend if not cuda else TorchBackend(h.model, h.encoder, dev)
        for thr in (cfg.threads if not cuda else (cfg.threads[0],)):
            for net, comp in NETS.items():
                if comp not in cfg.components or net not in h.feeds:
                    continue
                out.append(h.component_case(
                    net, "torch", torch.__version__, "fp32", backend, sbert_files if net == "sbert" else ckpt_files,
                    provider=dev, device=dev, threads=thr, setup=_torch_setup(thr, dev), **hooks,
                    notes="reference; checkpoint size = the whole UMask EMA weights" if net != "sbert"
                    else "network only (token ids given)"))
            if "request_profile_cached" in cfg.components:
                pipe = h.torch_pipe if not cuda else SessionPipe(h.open_session("fp32", backend=backend), cfg.request)
                c = h.request_case("torch", torch.__version__, "fp32", pipe, dev, thr, None, ckpt_files)
                c.device, c.setup = dev, _torch_setup(thr, dev)
                c.sync, c.device_mem = hooks["sync"], hooks["device_mem"]
                out.append(c)
                ref = cfg.reference_request
                if ref is not None and not cuda:
                    rpipe = SessionPipe(pipe.s, ref)
                    r = h.request_case("torch", torch.__version__, "fp32", rpipe, dev, thr, None, ckpt_files,
                                       with_parity=False)
                    r.setup = _torch_setup(thr, dev)
                    out.append(r)
    return out


def ort_cases(h: Any) -> list[Case]:
    """onnxruntime: every ONNX file of the bundle and the runtime Session (its own backend) per EP x precision
    x threads x spinning."""
    import onnxruntime as ort

    from umask.runtime.core.bundle import BundleError
    from umask.runtime.engines.backends import OrtBackend

    h._load_torch()
    cfg, bundle, man = h.cfg, h.cfg.bundle, h.manifest
    out = []
    for prov in h.providers():
        dev = "cuda" if "CUDA" in prov or "Tensorrt" in prov else "cpu"
        for prec in cfg.precisions:
            for thr in cfg.threads:
                for spin in cfg.spinning:
                    for net, comp in NETS.items():
                        if comp not in cfg.components or net not in h.feeds:
                            continue
                        if net in ("maskgen", "sbert") and prec != "fp32":
                            continue              # shared fp32 files: measured once (the fp32 rows)
                        entry = (man.get("sbert", {}) if net == "sbert"
                                 else man["artifacts"].get(BUNDLE_PRECISION[prec], {}).get(net, {}))
                        ok = entry.get("status") in ("ok", "present") and entry.get("file")
                        if not ok:
                            why = entry.get("status", "absent") + (f": {entry['reason']}" if entry.get("reason") else "")
                            h.skipped.append(f"onnxruntime {prec} {net}: not in the bundle ({why})")
                            continue
                        path = bundle / entry["file"]
                        be = OrtBackend({net: path}, providers=[prov], threads=thr, allow_spinning=spin)
                        out.append(h.component_case(net, "onnxruntime", ort.__version__, prec, be, [path],
                                                    provider=prov, device=dev, threads=thr, spinning=spin,
                                                    export_parity=entry.get("parity")))
                    if "request_profile_cached" not in cfg.components:
                        continue
                    try:
                        s = h.open_session(prec, providers=[prov], threads=thr, spinning=spin)
                    except BundleError as e:        # a precision the bundle rejected at export time
                        h.skipped.append(f"runtime Session {prec} on {prov}: {e}")
                        continue
                    out.append(h.request_case("onnxruntime (umask Session)", ort.__version__, prec,
                                              SessionPipe(s, cfg.request), prov, thr, spin, h.bundle_files(prec)))
    return out


def tensorrt_cases(h: Any) -> list[Case]:
    """The bundle's native TensorRT engines (trt/*.engine): each network, and the Session on a TensorRT
    backend (SBERT and networks without an engine on onnxruntime CPU) where a precision has all three engines."""
    from umask.bench.latency.backends import TensorRTBackend, tensorrt_unavailable

    why = tensorrt_unavailable()
    if why is not None:
        h.skipped.append(f"TensorRT: {why}; no TensorRT rows")
        return []
    import tensorrt as trt
    import torch

    from umask.runtime.engines.backends import OrtBackend
    from umask.runtime.families.umask.session import bundle_networks

    entry = h.manifest.get("tensorrt", {})
    engines = entry.get("engines", {}) if entry.get("status") == "built" else {}
    if not engines:
        h.skipped.append(f"TensorRT: the bundle has no engines ({entry.get('status')}: {entry.get('reason', '')}); "
                         "export on a machine with tensorrt")
        return []
    h._load_torch()
    cfg = h.cfg
    ours = {v: k for k, v in BUNDLE_PRECISION.items()}
    hooks = {"device_mem": lambda: round(torch.cuda.max_memory_allocated() / 2**20, 1),
             "setup": torch.cuda.reset_peak_memory_stats}
    by_prec: dict[str, dict[str, Path]] = {}
    out: list[Case] = []
    for key, e in sorted(engines.items()):
        prec_b, net = key.split("/")
        if e.get("status") != "built":
            continue
        path = cfg.bundle / "trt" / e["file"]
        if int(e.get("batch", 1)) == 1:
            by_prec.setdefault(prec_b, {})[net] = path
        if NETS.get(net) not in cfg.components or net not in h.feeds:
            continue
        if int(e.get("batch", 1)) != cfg.batch:
            h.skipped.append(f"TensorRT {key}: engine batch {e.get('batch')} != --batch {cfg.batch}")
            continue
        out.append(h.component_case(net, "tensorrt", trt.__version__, ours.get(prec_b, prec_b),
                                    TensorRTBackend({net: path}), [path], provider="TensorRT (native)", device="cuda",
                                    **hooks, notes="native engine, execute_async_v3 + stream sync per call "
                                                   "(host<->device copies excluded)"))
    if "request_profile_cached" in cfg.components:
        for prec_b, nets in sorted(by_prec.items()):
            if not all(n in nets for n in SESSION_NETS):
                h.skipped.append(f"TensorRT request {prec_b}: engines for {sorted(nets)} only (needs {SESSION_NETS})")
                continue
            prec = ours.get(prec_b, prec_b)
            rest = {n: p for n, p in bundle_networks(cfg.bundle, h.manifest, prec_b).items() if n not in nets}
            backend = TensorRTBackend(nets, fallback=OrtBackend(rest) if rest else None)
            c = h.request_case("tensorrt (umask Session)", trt.__version__, prec,
                               SessionPipe(h.open_session(prec, backend=backend), cfg.request), "TensorRT (native)", 1,
                               None, list(nets.values()) + list(rest.values()))
            c.device, c.device_mem, c.setup = "cuda", hooks["device_mem"], hooks["setup"]
            out.append(c)
    return out


def gguf_files(h: Any) -> list[Path]:
    """Every GGUF file (model or LoRA adapter): --gguf, else the bundle's llm/, else artifacts/uscope/gguf."""
    if h.cfg.gguf:
        return [Path(p) for p in h.cfg.gguf]
    if h.manifest.get("llm", {}).get("files"):
        return [h.cfg.bundle / f for f in h.manifest["llm"]["files"]]
    d = REPO_ROOT / "artifacts" / "uscope" / "gguf"
    return sorted(d.glob("*.gguf")) if d.is_dir() else []


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


def _llm_post(tims: list[dict[str, float]], max_tokens: int) -> Any:
    def post(_t: Timing) -> dict[str, Any]:
        ts = tims[1:] or tims                        # drop the warm-up call
        pt = [t["prompt_tokens"] / t["prompt_s"] for t in ts if t["prompt_s"] > 0]
        gt = [t["gen_tokens"] / t["gen_s"] for t in ts if t["gen_s"] > 0 and t["gen_tokens"] > 0]
        return {"llm": {"prompt_tps": float(np.median(pt)) if pt else None,
                        "gen_tps": float(np.median(gt)) if gt else None,
                        "ttft_ms": float(np.median([t["prompt_s"] for t in ts])) * 1e3,
                        "n_prompt": int(ts[-1]["prompt_tokens"]), "n_gen": int(ts[-1]["gen_tokens"]),
                        "max_tokens": max_tokens, "decoding": "greedy (LlamaProfiler)"}}
    return post


def llm_cases(h: Any) -> list[Case]:
    """llama.cpp: each GGUF quant's profile generation, and the Session request with that LLM writing the profile."""
    from umask.runtime.engines.llama import llama_cpp_available

    if not llama_cpp_available():
        h.skipped.append("llama.cpp: llama_cpp does not import (install the llm extra: UMASK_WITH_LLM=1 "
                         "./scripts/setup.sh); no LLM rows")
        return []
    models = llm_models(gguf_files(h))
    if not models:
        h.skipped.append("llama.cpp: no GGUF files (bundle llm/ or artifacts/uscope/gguf); no LLM rows")
        return []
    import llama_cpp

    from umask.runtime.core.bundle import BundleError
    from umask.runtime.engines.llama import LlamaProfiler, chat_prompt
    from umask.runtime.families.umask.profile_text import build_prompt

    h._load_torch()
    cfg = h.cfg
    prompt = chat_prompt(build_prompt(h.window.stats))
    n = 1 if cfg.quick else 3
    slow = TimingConfig(warmup_s=0.0, duration_s=0.0, min_samples=n, max_samples=n, burn_in_s=0.0)
    out = []
    for path, lora, quant in models:
        files = [path] + ([lora] if lora else [])
        for thr in cfg.threads:
            prof = LlamaProfiler(path, lora_path=lora, n_threads=thr)
            ids = prof.tokenize(prompt)
            tims: list[dict[str, float]] = []

            def fn(prof: Any = prof, ids: list[int] = ids, tims: list[dict[str, float]] = tims) -> Any:
                toks, t = prof.generate_ids(ids, cfg.llm_max_tokens)
                tims.append(t)
                return toks

            if "llm_profile" in cfg.components:
                out.append(Case("llm_profile", "llama.cpp", llama_cpp.__version__, quant, fn, provider="cpu",
                                threads=thr, shapes={"prompt_tokens": [len(ids)]}, artifact=repo_relative(files),
                                artifact_bytes=total_bytes(files), timing=slow,
                                post=_llm_post(tims, cfg.llm_max_tokens),
                                notes="time to first token = prompt evaluation (the first token is the argmax "
                                      "of the prompt's last logits)"))
            if "request_profile_generated" not in cfg.components or quant != cfg.llm_request_quant:
                continue
            s, prec, errors = None, None, []
            for prec in ("int8_qdq", "fp32"):
                try:
                    s = h.open_session(prec, threads=thr, profile_source="llm", llm=prof)
                    break
                except BundleError as e:
                    errors.append(f"{prec}: {e}")
            if s is None:
                h.skipped.append("LLM request: no Session opens (" + "; ".join(errors) + ")")
                continue
            pipe = SessionPipe(s, cfg.request, before=prof._memo.clear, embedding_cached=False)   # a real generation
            out.append(h.request_case("onnxruntime+llama.cpp", h.vers.get("onnxruntime") or "?", f"{prec}+{quant}",
                                      pipe, "CPUExecutionProvider", thr, False, h.bundle_files(prec) + files,
                                      generated=True, component="request_profile_generated", timing=slow,
                                      notes="runtime Session.complete with profile_source='llm': the LLM writes the "
                                            f"profile (greedy, <= {cfg.llm_max_tokens} tokens) before SBERT"))
    return out


__all__ = ["torch_cases", "ort_cases", "tensorrt_cases", "llm_cases", "gguf_files", "llm_models"]
