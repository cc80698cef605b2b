"""TensorRT engines from the bundle's explicit-precision ONNX files (TensorRT 10 Python API).

Builds one serialized engine per (network, precision) with a FIXED optimization profile
(min = opt = max batch = ``batch``; the engine serves exactly that batch) and a timing cache
shared by all builds of one export (loaded from / saved to ``timing.cache``). Precision flags
follow the ONNX file: the fp16 graph already carries explicit Cast nodes and fp32 islands, so
the builder gets ``BuilderFlag.FP16`` plus ``OBEY_PRECISION_CONSTRAINTS``; the int8 QDQ graph is
explicitly quantized, so it gets ``BuilderFlag.INT8`` (+ FP16 for the float islands) and needs no
calibrator. ``tensorrt`` cannot be installed on this CPU machine: `build_engines` then logs ONE
line and returns a manifest entry that says so. Never run here; written against the public
TensorRT 10 API (``trt.Builder``, ``trt.OnnxParser``, ``create_optimization_profile``,
``build_serialized_network``) for device_tests/ on a GPU machine.

Deployment facts: the manifest entry records the TensorRT version that built the engines and the
GPU compute capability (and name) they were built for, at the top and on every engine, so a
device refuses an engine built elsewhere before deserializing it
(`umask.runtime.engines.trt_facts.check_engine_facts` / ``load_engine``). Engine and timing-cache
paths are bundle-relative (``trt/<net>.<precision>.b<batch>.engine``), hashed like every file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TRT_PRECISIONS = ("fp32", "fp16", "int8-qdq")   # int8-dynamic (ORT's MatMulInteger) has no TensorRT path


def _profile_shape(shape: list[Any], batch: int) -> tuple[int, ...]:
    return tuple(batch if (not isinstance(d, int) or d < 0) else int(d) for d in shape)


def engine_facts(trt_module: Any) -> dict[str, Any]:
    """What an engine built now is tied to: {tensorrt_version, compute_capability, gpu_name} (the GPU facts
    from `umask.runtime.engines.trt_facts`, the providers tests replace)."""
    from umask.runtime.engines import trt_facts

    return {"tensorrt_version": str(trt_module.__version__), "compute_capability": trt_facts.compute_capability(),
            "gpu_name": trt_facts.gpu_name()}


def build_engines(onnx_files: dict[str, dict[str, Path]], signatures: dict[str, dict[str, Any]], out_dir: Path, *,
                  batch: int = 1, workspace_mb: int = 1024, bundle_root: Path | None = None) -> dict[str, Any]:
    """``onnx_files[precision][net] = path``; ``signatures[net]['inputs']`` = [{name, shape, dtype}].
    ``bundle_root``: the bundle folder the engine paths are relative to (default ``out_dir``'s parent).
    Returns the manifest's ``tensorrt`` entry: {status, tensorrt_version, compute_capability, gpu_name,
    engines | reason}."""
    try:
        import tensorrt as trt  # noqa: F401
    except ImportError as e:
        log.info("TensorRT: skipped (import tensorrt failed: %s); ONNX files only", e)
        return {"status": "skipped", "reason": f"import tensorrt failed: {e}"}
    import tensorrt as trt

    out_dir.mkdir(parents=True, exist_ok=True)
    root = Path(bundle_root) if bundle_root is not None else out_dir.parent
    facts = engine_facts(trt)
    if not facts["compute_capability"]:
        log.info("TensorRT: skipped (no CUDA device visible to the driver API)")
        return {"status": "skipped", "reason": "no CUDA device: the compute capability an engine is built for is unknown",
                "tensorrt_version": facts["tensorrt_version"]}
    tlog = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(tlog)
    cache_path = out_dir / "timing.cache"
    config0 = builder.create_builder_config()
    cache = config0.create_timing_cache(cache_path.read_bytes() if cache_path.exists() else b"")
    engines: dict[str, Any] = {}
    for prec, nets in onnx_files.items():
        if prec not in TRT_PRECISIONS:
            continue
        for net, path in nets.items():
            network = builder.create_network(0)          # TensorRT 10: explicit batch is the only mode
            parser = trt.OnnxParser(network, tlog)
            if not parser.parse(Path(path).read_bytes()):
                errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
                engines[f"{prec}/{net}"] = {"status": "failed", "reason": f"ONNX parse: {errs}"}
                continue
            config = builder.create_builder_config()
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
            config.set_timing_cache(cache, ignore_mismatch=False)
            if prec == "fp16":
                config.set_flag(trt.BuilderFlag.FP16)
                config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
            elif prec == "int8-qdq":
                config.set_flag(trt.BuilderFlag.INT8)
                config.set_flag(trt.BuilderFlag.FP16)
            profile = builder.create_optimization_profile()
            for spec in signatures[net]["inputs"]:
                shp = _profile_shape(spec["shape"], batch)
                profile.set_shape(spec["name"], shp, shp, shp)   # fixed profile
            config.add_optimization_profile(profile)
            blob = builder.build_serialized_network(network, config)
            if blob is None:
                engines[f"{prec}/{net}"] = {"status": "failed", "reason": "build_serialized_network returned None"}
                continue
            dst = out_dir / f"{net}.{prec}.b{batch}.engine"
            dst.write_bytes(bytes(blob))
            engines[f"{prec}/{net}"] = {"status": "built", "file": dst.relative_to(root).as_posix(), "batch": batch,
                                        "precision": prec, "network": net, **facts}
    cache_path.write_bytes(bytes(cache.serialize()))
    return {"status": "built", **facts, "engines": engines, "timing_cache": cache_path.relative_to(root).as_posix()}


__all__ = ["TRT_PRECISIONS", "build_engines", "engine_facts"]
