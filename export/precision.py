"""Precision variants of an fp32 ONNX graph: fp16 (norms / softmax / adaLN in fp32), int8 QDQ, int8 dynamic.

* **fp16** (`to_fp16`): ``onnxruntime.transformers.float16.convert_float_to_float16`` with
  ``keep_io_types=True`` (the graph keeps fp32 inputs / outputs; explicit Cast nodes sit at every
  fp32/fp16 boundary, so a TensorRT builder sees the precision of every layer in the graph) and
  kept in fp32: every op in `FP16_KEEP_OPS` (LayerNormalization, Softmax, the reductions and
  transcendental ops that overflow or lose precision in fp16) and every node of `FLOAT_SCOPES`
  (the adaLN modulation, the timestep embedding, the final layer's modulation and the profile
  MLP's LayerNorm).
* **int8 static QDQ** (`to_int8_qdq`): ``quantize_static`` in QuantFormat.QDQ, int8 weights
  (per channel) and activations, calibrated (MinMax) on the caller's windows. Only weight MatMul /
  Gemm nodes (Linear layers) are quantized: activation x activation MatMuls (attention scores and
  values), norms, softmax and every node of `FLOAT_SCOPES` stay float.
* **int8 dynamic** (`to_int8_dynamic`): ``quantize_dynamic`` on the same node set, the comparison
  row (weights int8, activations quantized at run time).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import onnx

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8-qdq", "int8-dynamic")
FP16_KEEP_OPS = ("LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "Pow", "Sqrt", "Exp", "Log",
                 "Sin", "Cos", "Erf", "TopK", "Range", "CumSum")
FLOAT_SCOPES = ("adaLN_modulation", "t_embedder", "task_embedder", "norm", "/profile/net/net.0")


def _in_scope(name: str) -> bool:
    return any(s in name for s in FLOAT_SCOPES)


def float_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes kept in float by FLOAT_SCOPES."""
    return [n.name for n in model.graph.node if _in_scope(n.name)]


def weight_matmuls(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    """(quantizable MatMul/Gemm nodes with an initializer input, every other MatMul/Gemm node)."""
    inits = {i.name for i in model.graph.initializer}
    consts = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    weights = inits | consts
    keep, skip = [], []
    for n in model.graph.node:
        if n.op_type not in ("MatMul", "Gemm"):
            continue
        if any(i in weights for i in n.input[:2]) and not _in_scope(n.name):
            keep.append(n.name)
        else:
            skip.append(n.name)
    return keep, skip


@contextlib.contextmanager
def _quiet_root():
    """onnxruntime.quantization logs one INFO line per tensor on the root logger: keep it out."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def to_fp16(src: Path, dst: Path) -> dict[str, Any]:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(src))
    keep_nodes = float_nodes(model)
    blocked = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FP16_KEEP_OPS))
    m16 = convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked, node_block_list=keep_nodes,
                                   disable_shape_infer=False)
    onnx.save(m16, str(dst))
    n_cast = sum(1 for n in m16.graph.node if n.op_type == "Cast")
    return {"method": "onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)",
            "fp32_ops": blocked, "fp32_nodes": len(keep_nodes), "cast_nodes": n_cast}


class _Reader:
    """onnxruntime CalibrationDataReader over a list of feed dicts."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # pragma: no cover - not used by MinMax
        pass


def cpu_int8_caps() -> dict[str, Any]:
    """The x86 int8 dot-product extensions of this CPU (from /proc/cpuinfo; empty elsewhere).

    Without VNNI (AVX512-VNNI or AVX-VNNI) onnxruntime's x86 int8 GEMM multiplies u8 x s8 pairs with
    ``vpmaddubsw``, whose 16-bit pair sums saturate when both weights of a pair are large: the known
    "u8s8 saturation" of non-VNNI AVX2 / AVX-512 machines. The cure onnxruntime documents is
    ``reduce_range`` (7-bit weights), so the pair sum fits; on VNNI machines full 8-bit range is exact.
    """
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    vnni = sorted(flags & {"avx512_vnni", "avx_vnni", "avx512vnni"})
    return {"vnni": bool(vnni), "vnni_flags": vnni, "avx2": "avx2" in flags, "avx512f": "avx512f" in flags,
            "reduce_range": bool(flags) and not vnni}


def to_int8_qdq(src: Path, dst: Path, calibration: Iterable[dict[str, np.ndarray]]) -> dict[str, Any]:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(src))
    keep, skip = weight_matmuls(model)
    exclude = sorted(set(skip) | set(float_nodes(model)))
    feeds = list(calibration)
    caps = cpu_int8_caps()
    with _quiet_root():
        quantize_static(str(src), str(dst), _Reader(feeds), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=exclude, per_channel=True,
                        reduce_range=caps["reduce_range"],
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    return {"method": "onnxruntime.quantization.quantize_static(QuantFormat.QDQ, MinMax, per-channel S8S8)",
            "quantized_nodes": len(keep), "float_matmuls": len(skip), "calibration_samples": len(feeds),
            "reduce_range": caps["reduce_range"], "cpu_int8": caps}


def to_int8_dynamic(src: Path, dst: Path) -> dict[str, Any]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    keep, skip = weight_matmuls(model)
    exclude = sorted(set(skip) | set(float_nodes(model)))
    caps = cpu_int8_caps()
    with _quiet_root():
        quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=exclude,
                         weight_type=QuantType.QInt8, per_channel=True, reduce_range=caps["reduce_range"])
    return {"method": "onnxruntime.quantization.quantize_dynamic(QInt8 weights, per channel)",
            "quantized_nodes": len(keep), "float_matmuls": len(skip), "reduce_range": caps["reduce_range"],
            "cpu_int8": caps}


__all__ = ["PRECISIONS", "FP16_KEEP_OPS", "FLOAT_SCOPES", "float_nodes", "weight_matmuls", "to_fp16", "to_int8_qdq",
           "to_int8_dynamic"]
