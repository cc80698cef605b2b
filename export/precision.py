"""Precision variants of an fp32 ONNX graph: fp16 (norms / softmax / adaLN in fp32), int8 QDQ, int8 dynamic.

* **fp16** (`to_fp16`): ``onnxruntime.transformers.float16.convert_float_to_float16`` with
  ``keep_io_types=True`` (the graph keeps fp32 inputs / outputs; explicit Cast nodes sit at every
  fp32/fp16 boundary, so a TensorRT builder sees the precision of every layer in the graph) and
  kept in fp32: every op in `FP16_KEEP_OPS` (LayerNormalization, Softmax, the reductions and
  transcendental ops that overflow or lose precision in fp16) and every node of `FLOAT_SCOPES`
  (the adaLN modulation, the timestep embedding, the final layer's modulation and the profile
  MLP's LayerNorm).
* **int8 static QDQ** (`to_int8_qdq`): ONNX Runtime's pre-processing first (``quant_pre_process``:
  symbolic + ONNX shape inference and the basic graph optimizations, so the quantizer sees fused,
  fully-shaped nodes), then ``quantize_static`` in QuantFormat.QDQ, signed S8S8 (int8 weights per
  channel, symmetric; int8 activations), calibrated on the caller's windows with ``method``
  (minmax | entropy | percentile; `compare_calibrations` measures all three). Only weight MatMul /
  Gemm nodes (Linear layers) are quantized: activation x activation MatMuls (attention scores and
  values), norms, softmax and every node of `FLOAT_SCOPES` stay float, and so do the caller's
  ``keep_float`` nodes (the worst layers of `layer_errors`, onnxruntime's QDQ debugging tools).
* **int8 dynamic** (`to_int8_dynamic`): ``quantize_dynamic`` on the same node set, the comparison
  row (weights int8, activations quantized at run time).
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import onnx

from umask.runtime.engines.ort import cpu_int8_caps  # noqa: F401 - re-exported (the export's int8 facts)

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


CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def preprocess(src: Path, dst: Path) -> dict[str, Any]:
    """onnxruntime's quantization pre-processing (``quant_pre_process``): symbolic shape inference, the
    basic graph optimizations (constant folding, redundant-node removal, fusions) and ONNX shape inference,
    written to ``dst``. Returns what it did (node counts before / after)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    n0 = len(onnx.load(str(src), load_external_data=False).graph.node)
    with _quiet_root():
        quant_pre_process(str(src), str(dst), skip_optimization=False, skip_onnx_shape=False,
                          skip_symbolic_shape=False, auto_merge=True)
    n1 = len(onnx.load(str(dst), load_external_data=False).graph.node)
    return {"method": "onnxruntime.quantization.shape_inference.quant_pre_process(symbolic + ONNX shape inference, "
                      "basic optimizations)", "nodes_before": n0, "nodes_after": n1}


def to_int8_qdq(src: Path, dst: Path, calibration: Iterable[dict[str, np.ndarray]], *, method: str = "minmax",
                pre_process: bool = True, keep_float: Iterable[str] = (), percentile: float = 99.999) -> dict[str, Any]:
    """int8 QDQ of ``src`` (see the module docstring): ``method`` the calibration (minmax | entropy |
    percentile, with ``percentile``), ``pre_process`` runs `preprocess` first, ``keep_float`` node names
    (of the pre-processed graph: `layer_errors` reports those names) stay float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"method must be one of {CALIBRATION_METHODS}, got {method!r}")
    pre: dict[str, Any] | None = None
    q_src = src
    if pre_process:
        q_src = dst.with_name(dst.stem + ".pre.onnx")
        pre = preprocess(src, q_src)
    try:
        model = onnx.load(str(q_src))
        keep, skip = weight_matmuls(model)
        kept = sorted(set(keep_float) & set(keep))
        exclude = sorted(set(skip) | set(float_nodes(model)) | set(kept))
        feeds = list(calibration)
        caps = cpu_int8_caps()
        extra: dict[str, Any] = {"ActivationSymmetric": False, "WeightSymmetric": True}
        if method == "percentile":
            extra["CalibPercentile"] = percentile
        cm = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[method]
        if method == "entropy":
            # quantize_static builds its Entropy calibrator with num_bins = num_quantized_bins = 128 and passes
            # no option to change them: the KL search then has ONE candidate, the full range, i.e. MinMax
            # (measured: byte-identical models). So the ranges come from our own Entropy calibrator with
            # a 512-bin histogram (TensorRT: 2048) over 128 quantized bins, handed over as TensorQuantOverrides.
            extra["TensorQuantOverrides"] = entropy_ranges(q_src, feeds, dst.parent)
            cm = CalibrationMethod.MinMax
        with _quiet_root():
            quantize_static(str(q_src), str(dst), _Reader(feeds), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=exclude, per_channel=True,
                            reduce_range=caps["reduce_range"],
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            calibrate_method=cm, extra_options=extra)
    finally:
        if pre_process and q_src.exists():
            q_src.unlink()
    how = f"Entropy ({ENTROPY_BINS} bins -> {ENTROPY_QUANTIZED_BINS}, TensorQuantOverrides)" if method == "entropy" else cm.name
    return {"method": f"onnxruntime.quantization.quantize_static(QuantFormat.QDQ, {how}, per-channel S8S8)",
            "calibration": method, "pre_process": pre, "quantized_nodes": len(keep) - len(kept),
            "kept_float": kept, "float_matmuls": len(skip), "calibration_samples": len(feeds),
            "reduce_range": caps["reduce_range"], "cpu_int8": caps}


ENTROPY_BINS, ENTROPY_QUANTIZED_BINS = 512, 128     # TensorRT uses 2048 bins; 512 keeps the KL search (pure Python) ~20x cheaper


def entropy_ranges(model_path: Path, feeds: list[dict[str, np.ndarray]], work_dir: Path) -> dict[str, list[dict[str, float]]]:
    """KL-divergence (entropy) activation ranges of every MatMul / Gemm tensor of ``model_path`` on ``feeds``
    (onnxruntime's EntropyCalibrater, ``ENTROPY_BINS`` histogram bins, ``ENTROPY_QUANTIZED_BINS`` quantized
    bins), in quantize_static's ``TensorQuantOverrides`` form {tensor: [{rmin, rmax}]}."""
    import tempfile

    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    with tempfile.TemporaryDirectory(dir=work_dir) as td, _quiet_root(), contextlib.redirect_stdout(io.StringIO()):
        cal = create_calibrator(str(model_path), ["MatMul", "Gemm"], augmented_model_path=str(Path(td) / "aug.onnx"),
                                calibrate_method=CalibrationMethod.Entropy,
                                extra_options={"num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS})
        cal.collect_data(_Reader(list(feeds)))
        data = cal.compute_data()
    out = {}
    for name, td_ in data.items():
        lo, hi = td_.range_value
        out[name] = [{"rmin": np.float32(min(float(lo), 0.0)), "rmax": np.float32(max(float(hi), 0.0))}]
    return out


def layer_errors(float_src: Path, qdq: Path, feeds: list[dict[str, np.ndarray]], *, pre_process: bool = True,
                 work_dir: Path | None = None) -> list[dict[str, Any]]:
    """Per-layer float-vs-quantized error of the QDQ model ``qdq`` (onnxruntime.quantization.qdq_loss_debug):
    every quantized activation tensor's SQNR in dB (higher is better) inside the QDQ model (``qdq_sqnr_db``:
    the tensor vs its quantize-dequantize) and across models (``xmodel_sqnr_db``: the QDQ model's tensor vs
    the float model's), with the MatMul / Gemm nodes that read or write it (what `to_int8_qdq`'s
    ``keep_float`` takes). Sorted worst first (lowest ``qdq_sqnr_db``). ``float_src`` is pre-processed like the quantizer's
    input (``pre_process``), so tensor names match."""
    import tempfile

    from onnxruntime.quantization.qdq_loss_debug import (collect_activations, compute_activation_error,
                                                         create_activation_matching,
                                                         modify_model_output_intermediate_tensors)

    with tempfile.TemporaryDirectory(dir=work_dir) as td:
        t = Path(td)
        fsrc = float_src
        if pre_process:
            fsrc = t / "float.pre.onnx"
            preprocess(float_src, fsrc)
        fa, qa = t / "float.aug.onnx", t / "qdq.aug.onnx"
        with _quiet_root():
            modify_model_output_intermediate_tensors(str(fsrc), str(fa))
            modify_model_output_intermediate_tensors(str(qdq), str(qa))
            f_act = collect_activations(str(fa), list(feeds))
            q_act = collect_activations(str(qa), list(feeds))
        err = compute_activation_error(create_activation_matching(q_act, f_act))
        model = onnx.load(str(fsrc), load_external_data=False)
    consumers: dict[str, list[str]] = {}        # tensor -> the MatMul / Gemm nodes reading or writing it
    for n in model.graph.node:
        if n.op_type in ("MatMul", "Gemm"):
            for i in [*n.input, *n.output]:
                consumers.setdefault(i, []).append(n.name)
    rows = []
    for tensor, e in err.items():
        q = e.get("qdq_err")
        x = e.get("xmodel_err")
        rows.append({"tensor": tensor, "qdq_sqnr_db": None if q is None else float(q),
                     "xmodel_sqnr_db": None if x is None else float(x), "nodes": sorted(consumers.get(tensor, []))})
    rows.sort(key=lambda r: (r["qdq_sqnr_db"] is None, r["qdq_sqnr_db"] if r["qdq_sqnr_db"] is not None else 0.0))
    return rows


def worst_nodes(errors: list[dict[str, Any]], n: int) -> list[str]:
    """The MatMul / Gemm nodes of the ``n`` worst quantized tensors of `layer_errors` (to keep in float)."""
    out: list[str] = []
    for r in errors:
        if len(out) >= n:
            break
        for node in r["nodes"]:
            if node not in out:
                out.append(node)
    return out[:n] if n else []


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


def check_precisions(precisions: Iterable[str], allowed: Sequence[str] = PRECISIONS) -> list[str]:
    """``precisions`` without repeats (order kept); InputError unless fp32 is among them and all are ``allowed``
    (every exporter writes fp32 first: the other precisions derive from it and are held to it)."""
    from umask.runtime.core.errors import InputError

    out = list(dict.fromkeys(precisions))
    if "fp32" not in out or any(p not in allowed for p in out):
        raise InputError(f"precisions must include fp32 and come from {tuple(allowed)}; got {out}")
    return out


__all__ = ["PRECISIONS", "check_precisions", "FP16_KEEP_OPS", "FLOAT_SCOPES", "CALIBRATION_METHODS", "float_nodes", "weight_matmuls",
           "to_fp16", "preprocess", "to_int8_qdq", "entropy_ranges", "layer_errors", "worst_nodes", "to_int8_dynamic", "cpu_int8_caps"]


# ------------------------------------------------------------------------------------------------
# The accuracy gate a bundle carries (manifest "accuracy_gate"; precision="auto" honours it)
# ------------------------------------------------------------------------------------------------
ARTIFACT_PRECISION = {"onnx-fp32": "fp32", "onnx-fp16": "fp16", "onnx-int8-qdq": "int8-qdq",
                      "onnx-int8-dynamic": "int8-dynamic"}


def accuracy_gate_section(result_file: str | Path, checkpoint: str | Path | None = None) -> dict[str, Any]:
    """The manifest's ``accuracy_gate`` from a device-scorer result (benchmarks.accuracy.user_device:
    ``meta.gate``, each artifact's largest headline gap to torch on the protocol's windows). A precision
    passes when ``meta.gate.resolution`` says it is within 1 % or one discrete event on every headline metric
    (when that section exists), else when ``vs_torch.within_1pct``. The file's sha256 is recorded, and
    ``checkpoint`` (when given) must be the checkpoint the result was scored with (``meta.checkpoint``)."""
    import hashlib
    import json

    from umask.runtime.core.errors import InputError

    path = Path(result_file)
    try:
        raw = path.read_bytes()
        meta = json.loads(raw)["meta"]
        gate = meta["gate"]
        per = gate["per_artifact"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a device-scorer result with meta.gate.per_artifact "
                         f"({type(e).__name__}: {e})") from None
    if checkpoint is not None and meta.get("checkpoint") is not None:
        want, got = Path(str(checkpoint)).resolve(), Path(str(meta["checkpoint"])).resolve()
        if want != got:
            raise InputError(f"{path}: scored checkpoint {meta['checkpoint']}, not the exported {checkpoint}")
    res = ((gate.get("resolution") or {}).get("per_artifact") or {})
    out: dict[str, dict[str, Any]] = {}
    for art, g in per.items():
        prec = ARTIFACT_PRECISION.get(art)
        vt = (g or {}).get("vs_torch") or {}
        if prec is None or "within_1pct" not in vt:
            continue
        ok = bool(res[art]["within_1pct_or_one_event"]) if art in res else bool(vt["within_1pct"])
        out[prec] = {"pass": ok, "max_abs_gap": float(vt.get("max_abs_gap", 0.0)), "worst": str(vt.get("worst"))[:500]}
    if not out:
        raise InputError(f"{path}: meta.gate.per_artifact names no onnx-* artifact with vs_torch.within_1pct")
    return {"bar": str(gate.get("bar", ""))[:500], "source": path.name, "sha256": hashlib.sha256(raw).hexdigest(),
            "rule": "within 1 % or one discrete event" if res else "within 1 %", "per_precision": out}

