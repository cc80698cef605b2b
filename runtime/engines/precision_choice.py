"""``precision="auto"``: the precision this machine runs fastest, measured once per machine and recorded.

int8 is not faster everywhere: onnxruntime's int8 GEMMs win on CPUs with an int8 dot product
(VNNI, AMX, ARM dotprod) and on large layers, and lose on small layers where the
quantize / dequantize nodes cost more than the narrower GEMM saves (measured on this project's
DiT step: int8 QDQ 12.4 ms vs fp32 11.4 ms on an AVX512-VNNI CPU, issue 15). So the runtime does
not assume; `choose_precision`:

1. reads the record ``precision_choice.json`` in ``$UMASK_CACHE_DIR`` (only where the integrator set it:
   the runtime writes nothing under the user's home by default, issue 11; without it the choice is kept
   for the life of the process) for the key (bundle networks' sha256, CPU model and int8 flags, onnxruntime version, providers, threads);
2. otherwise times, on the golden inputs the bundle stores (runtime/core/golden.py), one run of every
   network each candidate precision has of its own (``artifacts[precision]`` entries that are not
   ``shared``; fp32 only on the networks the others replace), in interleaved rounds (so a load change hits all precisions alike), median of the rounds;
3. candidates: the precisions the bundle has with golden I/O, minus those its ``accuracy_gate`` failed
   (the device scorer's measured headline accuracy vs torch, written at export: export/precision.py
   `accuracy_gate_section`); a bundle without a gate is decided on speed alone, and the reason says so;
4. rule: the fastest quantized / half precision wins only when its median is at most
   `SPEEDUP_REQUIRED` x the fp32 median (at least 10 % faster); otherwise fp32 (it is the reference
   accuracy, so a tie goes to it). The choice, the figures and the CPU's int8 flags are recorded.

numpy + onnxruntime only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

from umask.runtime.core.errors import BundleError, InputError

log = logging.getLogger(__name__)

AUTO = "auto"
REFERENCE = "fp32"
CANDIDATES = ("fp32", "int8-qdq", "int8-dynamic")   # fp16 is a GPU precision: CPUs emulate most fp16 kernels
SPEEDUP_REQUIRED = 0.9
RECORD_FILE = "precision_choice.json"
ENV_CACHE_DIR = "UMASK_CACHE_DIR"


_MEMO: dict[str, dict[str, Any]] = {}     # key -> choice, this process (no cache directory configured)


def record_path() -> Path | None:
    """``$UMASK_CACHE_DIR/precision_choice.json``; None when the variable is unset (nothing is written)."""
    base = os.environ.get(ENV_CACHE_DIR)
    return Path(base) / RECORD_FILE if base else None


def _cpu_model() -> str:
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.lower().startswith(("model name", "hardware", "cpu model")):
                return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def precision_files(manifest: dict[str, Any], precision: str) -> list[str]:
    """The ONNX files a ``precision`` session runs of its own (shared entries left out)."""
    arts = manifest.get("artifacts") or {}
    entries = arts.get(precision) or {}
    return sorted(e["file"] for e in entries.values()
                  if isinstance(e, dict) and e.get("status") == "ok" and e.get("file") and not e.get("shared"))


def gated_out(manifest: dict[str, Any]) -> dict[str, str]:
    """Precisions the bundle's ``accuracy_gate`` (measured task accuracy vs torch) failed -> why."""
    per = ((manifest.get("accuracy_gate") or {}).get("per_precision") or {})
    return {p: f"failed the accuracy gate ({g.get('worst')}: |gap| {g.get('max_abs_gap')})"
            for p, g in per.items() if not g.get("pass", False)}


def usable(manifest: dict[str, Any], candidates: Sequence[str]) -> list[str]:
    """The candidates the bundle has, every own network ok, with golden I/O, and not failed by the bundle's
    accuracy gate (fp32, the reference, is never gated out)."""
    gold = manifest.get("golden") or {}
    arts = manifest.get("artifacts") or {}
    failed = gated_out(manifest)
    out = []
    for p in candidates:
        if p != REFERENCE and p in failed:
            continue
        entries = arts.get(p) or {}
        if not entries or any(isinstance(e, dict) and e.get("status") != "ok" for e in entries.values()):
            continue
        files = precision_files(manifest, p)
        if files and all((gold.get(f) or {}).get("status") == "ok" for f in files):
            out.append(p)
    return out


def machine_key(manifest: dict[str, Any], providers: Sequence[str], threads: int) -> tuple[str, dict[str, Any]]:
    from umask.runtime.engines.ort import cpu_int8_caps
    import onnxruntime as ort

    nets = sorted((k, v["sha256"]) for k, v in manifest.get("files", {}).items() if k.endswith(".onnx"))
    facts = {"bundle": hashlib.sha256(json.dumps(nets).encode()).hexdigest()[:16], "cpu": _cpu_model(),
             "cpu_int8": cpu_int8_caps(), "onnxruntime": ort.__version__, "providers": list(providers),
             "threads": int(threads)}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24], facts


def measure(root: Path, manifest: dict[str, Any], precisions: Sequence[str], *, providers: Sequence[str],
            threads: int, rounds: int = 7) -> dict[str, float]:
    """Median ms over ``rounds`` interleaved rounds of one golden-input run of each precision's own networks."""
    from umask.runtime.core import golden as gd
    from umask.runtime.core.bundle import read_verified
    from umask.runtime.engines.ort import inference_session, session_options

    runs: dict[str, list[tuple[Any, dict[str, Any]]]] = {}
    # compare like with like: the fp32 side times only the networks the other candidates have their own
    # file for (e.g. the DiT and profile MLP, not the shared fp32 mask generator / SBERT every precision runs)
    others = {Path(r).stem for q in precisions if q != REFERENCE for r in precision_files(manifest, q)}
    for p in precisions:
        runs[p] = []
        for rel in precision_files(manifest, p):
            if p == REFERENCE and others and Path(rel).stem not in others:
                continue
            entry = manifest["golden"][rel]
            ins, _ = gd.unpack(read_verified(root, entry["file"], manifest), f"{root}/{entry['file']}")
            sess = inference_session(read_verified(root, rel, manifest), session_options(threads=threads), providers)
            sess.run(None, ins)                                     # warm-up
            runs[p].append((sess, ins))
    times: dict[str, list[float]] = {p: [] for p in precisions}
    for _ in range(rounds):
        for p in precisions:
            t0 = time.perf_counter()
            for sess, ins in runs[p]:
                sess.run(None, ins)
            times[p].append((time.perf_counter() - t0) * 1e3)
    return {p: round(statistics.median(v), 4) for p, v in times.items()}


def decide(ms: dict[str, float]) -> tuple[str, str]:
    """(precision, why) by the rule of the module docstring."""
    if REFERENCE not in ms:
        best = min(ms, key=ms.get)
        return best, f"no {REFERENCE} artifact: fastest measured"
    others = {p: v for p, v in ms.items() if p != REFERENCE}
    if not others:
        return REFERENCE, "only fp32 is available"
    best = min(others, key=others.get)
    ratio = others[best] / max(ms[REFERENCE], 1e-9)
    if ratio <= SPEEDUP_REQUIRED:
        return best, f"{best} {others[best]:.3f} ms = {ratio:.2f} x fp32 {ms[REFERENCE]:.3f} ms (<= {SPEEDUP_REQUIRED})"
    return REFERENCE, (f"fastest other precision {best} is {ratio:.2f} x fp32 (needs <= {SPEEDUP_REQUIRED}): "
                       f"int8 is not faster on this machine, fp32 kept")


def choose_precision(root: str | Path, manifest: dict[str, Any], *, providers: Sequence[str] | None = None,
                     threads: int = 1, candidates: Sequence[str] = CANDIDATES, record: bool = True,
                     rounds: int = 7) -> dict[str, Any]:
    """The precision for this machine (see the module docstring). ``manifest``: the verified one.
    Returns {precision, reason, measured_ms, measured (False: read from the record), key, facts, record}."""
    from umask.runtime.engines.ort import resolve_providers

    root = Path(root)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise InputError(f"threads must be an int >= 1, got {threads!r:.40}")
    use, _ = resolve_providers(providers)
    have = usable(manifest, candidates)
    if not have:
        raise BundleError(f"{root}: precision 'auto': none of {list(candidates)} is usable with golden I/O in this "
                          f"bundle (has {sorted(manifest.get('artifacts') or {})}); name a precision")
    key, facts = machine_key(manifest, use, threads)
    path = record_path() if record else None
    book: dict[str, Any] = {}
    if record and path is None and key in _MEMO and _MEMO[key].get("precision") in have:
        return {**_MEMO[key], "measured": False, "record": None}     # no cache directory: this process's choice
    if path is not None and path.is_file():
        try:
            book = json.loads(path.read_text())
        except (OSError, ValueError):
            book = {}
        hit = book.get(key) if isinstance(book, dict) else None
        if isinstance(hit, dict) and hit.get("precision") in have:
            return {**hit, "measured": False, "record": str(path)}
    if len(have) == 1:
        ms: dict[str, float] = {}
        choice, why = have[0], f"only {have[0]} is usable"
    else:
        ms = measure(root, manifest, have, providers=use, threads=threads, rounds=rounds)
        choice, why = decide(ms)
    failed = gated_out(manifest)
    if failed:
        why += "; not considered: " + "; ".join(f"{p} {w}" for p, w in sorted(failed.items()) if p in candidates)
    elif "accuracy_gate" not in manifest:
        why += "; the bundle carries no accuracy gate: speed alone decided"
    out = {"precision": choice, "reason": why, "measured_ms": ms, "key": key, "facts": facts,
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rule": f"int8 only at <= {SPEEDUP_REQUIRED} x fp32"}
    if record and path is None:
        _MEMO[key] = out
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            book = book if isinstance(book, dict) else {}
            book[key] = out
            tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
            tmp.write_text(json.dumps(book, indent=1, sort_keys=True))
            os.replace(tmp, path)
        except OSError as e:
            log.warning("precision auto: cannot write the record %s (%s); measured again next time", path, e)
    log.info("precision auto: %s (%s)", choice, why)
    return {**out, "measured": True, "record": str(path) if path else None}


__all__ = ["AUTO", "CANDIDATES", "SPEEDUP_REQUIRED", "RECORD_FILE", "ENV_CACHE_DIR", "record_path", "precision_files",
           "gated_out", "usable", "machine_key", "measure", "decide", "choose_precision"]
