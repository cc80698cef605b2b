"""onnxruntime in one place: execution-provider selection and session options for every family session.

numpy + onnxruntime only (never torch). Used by `umask.runtime.engines.backends.OrtBackend` (the
runtime's network backend), the export's parity checks and the latency harness::

    use, missing = resolve_providers(["cuda", "cpu"])      # aliases -> EP names, unavailable ones dropped
    so = session_options(threads=1, allow_spinning=False)
    sess = inference_session("onnx/fp32/dit.onnx", so, use)
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


__all__ = ["CPU", "PROVIDER_ALIASES", "available_providers", "resolve_providers", "session_options",
           "inference_session"]
