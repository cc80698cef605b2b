"""onnxruntime in one place: execution-provider selection and session options for every family session.

numpy + onnxruntime only (never torch). Used by `umask.runtime.engines.backends.OrtBackend` (the
runtime's network backend), the export's parity checks and the latency harness::

    use, missing = resolve_providers(["cuda", "cpu"])      # aliases -> EP names, unavailable ones dropped
    so = session_options(threads=1, allow_spinning=False)
    sess = inference_session("onnx/fp32/dit.onnx", so, use)
    report = self_test(bundle_dir, manifest, ["onnx/fp32/dit.onnx"])   # golden I/O check (core/golden.py)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
PROVIDER_ALIASES = {"cpu": CPU, "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider",
                    "coreml": "CoreMLExecutionProvider"}
IGNORED_PROVIDERS = ("AzureExecutionProvider",)     # listed by onnxruntime builds, runs no local graph


def available_providers() -> list[str]:
    """The execution providers this onnxruntime build can run graphs on (Azure left out)."""
    import onnxruntime as ort

    return [p for p in ort.get_available_providers() if p not in IGNORED_PROVIDERS]


def resolve_providers(requested: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(providers to use, requested ones missing here): names or aliases (cpu / cuda / tensorrt / coreml);
    unavailable ones are dropped with one warning and the CPU provider is always last."""
    import onnxruntime as ort

    avail = ort.get_available_providers()
    want = [PROVIDER_ALIASES.get(p.lower(), p) for p in (requested or [CPU])]
    use = [p for p in want if p in avail]
    missing = [p for p in want if p not in avail]
    if missing:
        log.warning("execution providers %s are not available here (have %s); falling back", missing, avail)
    if CPU not in use:
        use.append(CPU)
    return use, missing


def session_options(threads: int = 1, inter_op_threads: int = 1, allow_spinning: bool = False) -> Any:
    """SessionOptions: ``threads`` intra-op threads, ``inter_op_threads``, spinning of idle threads
    (off by default: busy-waiting onnxruntime threads slow the host app down), warnings silenced."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = int(inter_op_threads)
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "1" if allow_spinning else "0")
    so.log_severity_level = 3
    return so


def inference_session(model: str | Path | bytes, options: Any = None, providers: Sequence[str] | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` of ``model`` (a path, or the verified bytes of the file;
    default options: one CPU thread, spinning off)."""
    import onnxruntime as ort

    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, options if options is not None else session_options(),
                                providers=list(providers or [CPU]))


X86_VNNI_FLAGS = ("avx512_vnni", "avx512vnni", "avx_vnni", "avx_vnni_int8")
ARM_DOT_FLAGS = ("asimddp",)                  # ARMv8.2 SDOT / UDOT ("dotprod")


def cpu_int8_caps(cpuinfo: str | None = None) -> dict[str, Any]:
    """The int8 dot-product extensions of this CPU from /proc/cpuinfo (``cpuinfo``: its text, for tests;
    empty where it cannot be read). x86: VNNI (``avx512_vnni`` = AVX512-VNNI, ``avx_vnni`` = AVX-VNNI),
    ``amx_int8``; ARM: ``asimddp`` (SDOT/UDOT dot product), ``i8mm`` (int8 matrix multiply).

    Without VNNI, onnxruntime's x86 int8 GEMM multiplies u8 x s8 pairs with ``vpmaddubsw``, whose 16-bit
    pair sums saturate when both weights of a pair are large (the known "u8s8 saturation" of non-VNNI
    AVX2 / AVX-512 machines); the cure onnxruntime documents is ``reduce_range`` (7-bit weights), so
    ``reduce_range`` is True exactly on an x86 CPU without VNNI. ``int8_dot``: the CPU has any int8 dot
    product instruction (VNNI, AMX or ARM dotprod); without one, int8 GEMMs rarely beat fp32 ones."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key = line.split(":", 1)[0].strip().lower()
        if key in ("flags", "features") and ":" in line:
            flags = set(line.split(":", 1)[1].split())
            break
    vnni = sorted(flags & set(X86_VNNI_FLAGS))
    dot = sorted(flags & set(ARM_DOT_FLAGS))
    x86 = "sse2" in flags or "avx2" in flags
    return {"vnni": bool(vnni), "vnni_flags": vnni, "avx512_vnni": bool(flags & {"avx512_vnni", "avx512vnni"}),
            "avx_vnni": "avx_vnni" in flags, "amx_int8": "amx_int8" in flags, "arm_dotprod": bool(dot),
            "arm_i8mm": "i8mm" in flags, "avx2": "avx2" in flags, "avx512f": "avx512f" in flags,
            "int8_dot": bool(vnni or dot or "amx_int8" in flags), "reduce_range": x86 and not vnni}


def self_test(root: str | Path, manifest: dict[str, Any], files: Sequence[str] | None = None, *,
              providers: Sequence[str] | None = None, threads: int = 1) -> dict[str, Any]:
    """Run each ONNX file in ``files`` (bundle paths; None: every file with a golden entry) on its golden
    inputs with ``providers`` and compare with the golden outputs (`umask.runtime.core.golden`). The
    manifest must be the verified (signed) one; the ONNX and golden bytes are read through `read_verified`.
    Returns {file: figures}; raises `SelfTestError` naming the file and the difference, or when a file
    has no usable golden entry (a bundle from an exporter without golden I/O cannot be self-tested)."""
    import time

    from umask.runtime.core import golden as gd
    from umask.runtime.core.bundle import read_verified

    root = Path(root)
    table = manifest.get("golden") or {}
    targets = sorted(table) if files is None else list(dict.fromkeys(files))
    if not targets:
        raise gd.SelfTestError(f"{root}: self-test: the manifest lists no golden I/O (exported before golden files "
                               "existed); re-export the bundle")
    use, _ = resolve_providers(providers)
    report: dict[str, Any] = {}
    for rel in targets:
        where = f"{root}/{rel}"
        entry = table.get(rel)
        if entry is None or entry.get("status") != "ok":
            raise gd.SelfTestError(f"{where}: self-test: no golden I/O for this artifact "
                                   f"({(entry or {}).get('reason', 'not in manifest.golden')})")
        ins, outs = gd.unpack(read_verified(root, entry["file"], manifest), f"{root}/{entry['file']}")
        t0 = time.perf_counter()
        try:
            sess = inference_session(read_verified(root, rel, manifest), session_options(threads=threads), use)
            names = [o.name for o in sess.get_outputs()]
            got = dict(zip(names, sess.run(None, ins)))
        except gd.SelfTestError:
            raise
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types; one typed error here
            raise gd.SelfTestError(f"{where}: self-test: the engine failed on the golden inputs "
                                   f"({type(e).__name__}: {' '.join(str(e).split())[:300]})") from None
        fig = gd.compare(got, outs, artifact=where, precision=entry["precision"])
        fig["seconds"] = round(time.perf_counter() - t0, 4)
        fig["providers"] = list(sess.get_providers())
        report[rel] = fig
    log.info("self-test passed: %d artifact(s) of %s", len(report), root)
    return report


__all__ = ["CPU", "PROVIDER_ALIASES", "available_providers", "resolve_providers", "session_options",
           "inference_session", "self_test", "cpu_int8_caps"]
