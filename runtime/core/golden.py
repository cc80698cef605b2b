"""Golden inputs and outputs of a bundle's ONNX files: the deployment facts a device checks itself against.

Every ONNX file of a bundle gets one golden file, written by the generic bundle writer
(`umask.export.bundle.write_bundle`) and listed (sha256, size) and signed like every other file::

    golden/<path of the ONNX file>.npz      in.<input name> ... and out.<output name> ... arrays

and one manifest entry ``golden[<path of the ONNX file>]`` = {file, precision, inputs ("exporter":
real inputs the family's exporter passed, "derived": deterministic inputs made from the I/O
signature), provider, status}. The golden outputs are onnxruntime's on the exporting machine's CPU.

A device's self-test (``Session.open(..., self_test=True)``, ``umask run / verify --self-test``) runs
each file it loads on those inputs and compares with the golden outputs (`compare`): a
`SelfTestError` names the file, the output and the difference when ``rel_max`` = max|got - golden| /
max(1, max|golden|) exceeds `SELF_TEST_TOLERANCES` of the file's precision class.

Why these tolerances (decided here, not in a paper): the self-test asks "does THIS engine compute
THIS network" (a wrong or corrupted engine, a broken kernel, a provider that silently drops a node,
a mismatched library) and must pass across CPUs and execution providers; it is not the accuracy gate
(the export's parity gate against torch is). fp32 kernels of different SIMD widths / GPUs (TF32)
differ by ~1e-6..1e-3 relative; fp16 by ~1e-3..1e-2; int8 graphs can flip a requantization by one
step between kernels (VNNI / non-VNNI, GPU), a few % at most on these networks. A broken engine
is off by O(1).

numpy only (no onnx, no onnxruntime, never torch); the run itself lives in `umask.runtime.engines.ort`.
"""

from __future__ import annotations

import hashlib
import io
import math
from typing import Any, Mapping, Sequence

import numpy as np

from umask.runtime.core.errors import BundleError

GOLDEN_DIR = "golden"
INPUT_PREFIX, OUTPUT_PREFIX = "in.", "out."
PRECISION_CLASSES = ("fp32", "fp16", "int8")
SELF_TEST_TOLERANCES: dict[str, float] = {"fp32": 1e-3, "fp16": 3e-2, "int8": 1e-1}   # rel_max, see the docstring
FIRST_DYNAMIC_DIM, OTHER_DYNAMIC_DIM = 1, 8     # derived inputs: batch 1, other dynamic axes (sequence) 8
INPUT_SOURCES = ("exporter", "derived")


class SelfTestError(BundleError):
    """An artifact whose outputs on its golden inputs differ from the golden outputs beyond tolerance
    (or cannot be computed at all); the message names the file, the output and the difference."""


def golden_file(onnx_rel: str) -> str:
    """Bundle path of the golden file of the ONNX file ``onnx_rel`` (bundle-relative POSIX)."""
    return f"{GOLDEN_DIR}/{onnx_rel}.npz"


def _seed(onnx_rel: str, attempt: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{onnx_rel}#{attempt}".encode()).digest()[:8], "little")


def derive_inputs(inputs: Sequence[Mapping[str, Any]], onnx_rel: str, attempt: int = 0) -> dict[str, np.ndarray]:
    """Deterministic inputs from an I/O signature ``[{name, shape, dtype}]`` (the manifest's format;
    a dynamic axis is a name or a negative / zero size): the first dynamic axis 1, other dynamic axes
    8; floats standard normal from a seed that hashes ``onnx_rel`` (same file path, same inputs);
    integers and booleans all ones (attempt 0: ones are valid indices, token ids and attention masks of
    most networks) or all zeros (attempt 1, the caller's fallback when ones fail or give non-finite
    outputs)."""
    rng = np.random.default_rng(_seed(onnx_rel, attempt))
    out: dict[str, np.ndarray] = {}
    for spec in inputs:
        shape = []
        for i, d in enumerate(spec["shape"]):
            fixed = isinstance(d, int) and d > 0
            shape.append(int(d) if fixed else (FIRST_DYNAMIC_DIM if i == 0 else OTHER_DYNAMIC_DIM))
        dt = np.dtype(spec["dtype"])
        if dt.kind == "f":
            out[spec["name"]] = rng.standard_normal(shape).astype(dt)
        elif dt.kind in "iub":
            out[spec["name"]] = np.full(shape, 1 if attempt == 0 else 0, dt)
        else:
            raise BundleError(f"{onnx_rel}: input {spec['name']!r} has dtype {dt.name}: no derived golden input")
    return out


def first_rows(feed: Mapping[str, np.ndarray], inputs: Sequence[Mapping[str, Any]], n: int = 1) -> dict[str, np.ndarray]:
    """``feed`` cut to its first ``n`` rows on every input whose first axis is dynamic (an exporter's
    real batch becomes a small golden example)."""
    dyn = {s["name"] for s in inputs if s["shape"] and not (isinstance(s["shape"][0], int) and s["shape"][0] > 0)}
    return {k: (np.ascontiguousarray(np.asarray(v)[:n]) if k in dyn else np.asarray(v)) for k, v in feed.items()}


def pack(inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> bytes:
    """The .npz bytes of a golden file (no object arrays: loadable with allow_pickle=False)."""
    arrays = {**{INPUT_PREFIX + k: np.asarray(v) for k, v in inputs.items()},
              **{OUTPUT_PREFIX + k: np.asarray(v) for k, v in outputs.items()}}
    for k, v in arrays.items():
        if v.dtype.hasobject:
            raise ValueError(f"golden array {k!r} has an object dtype")
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def unpack(data: bytes, where: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(inputs, outputs) of golden-file bytes (already hash-verified by the caller); BundleError naming
    ``where`` when they are not a golden file."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - numpy / zipfile raise many types on a bad file
        raise BundleError(f"{where}: not a golden .npz file ({type(e).__name__}: {str(e)[:160]})") from None
    ins = {k[len(INPUT_PREFIX):]: v for k, v in arrays.items() if k.startswith(INPUT_PREFIX)}
    outs = {k[len(OUTPUT_PREFIX):]: v for k, v in arrays.items() if k.startswith(OUTPUT_PREFIX)}
    if not ins or not outs or len(ins) + len(outs) != len(arrays):
        raise BundleError(f"{where}: a golden file holds 'in.*' and 'out.*' arrays only, got {sorted(arrays)[:8]}")
    return ins, outs


def tolerance(precision: str) -> float:
    if precision not in SELF_TEST_TOLERANCES:
        raise BundleError(f"golden precision {precision!r} is not one of {PRECISION_CLASSES}")
    return SELF_TEST_TOLERANCES[precision]


def compare(got: Mapping[str, np.ndarray], golden: Mapping[str, np.ndarray], *, artifact: str,
            precision: str) -> dict[str, Any]:
    """{output: {max_abs_diff, rel_max}}, ``ok`` and the tolerance; raises `SelfTestError` naming
    ``artifact``, the output and the difference beyond `SELF_TEST_TOLERANCES[precision]` (or on a missing
    output, a shape change, a non-finite value where the golden output is finite, or a finite one where it is not)."""
    tol = tolerance(precision)
    figures: dict[str, Any] = {}
    for name, ref in golden.items():
        if name not in got:
            raise SelfTestError(f"{artifact}: self-test: output {name!r} missing (engine gave {sorted(got)})")
        a = np.asarray(got[name])
        if a.shape != ref.shape:
            raise SelfTestError(f"{artifact}: self-test: output {name!r} has shape {list(a.shape)}, golden "
                                f"{list(ref.shape)}")
        if ref.dtype.kind == "b" or ref.dtype.kind in "iu":
            diff = float(np.mean(a != ref)) if ref.size else 0.0       # fraction of differing entries
            figures[name] = {"mismatch_fraction": diff}
            if diff > (0.0 if precision == "fp32" else 1e-3):
                raise SelfTestError(f"{artifact}: self-test: output {name!r}: {diff:.3%} of the entries differ "
                                    f"from the golden output (precision {precision})")
            continue
        a64, r64 = a.astype(np.float64), ref.astype(np.float64)
        fin = np.isfinite(r64)
        if not np.isfinite(a64[fin]).all():
            raise SelfTestError(f"{artifact}: self-test: output {name!r} is not finite where the golden output is")
        if not np.array_equal(a64[~fin], r64[~fin], equal_nan=True):     # -inf by design (e.g. a log-prior of 0)
            raise SelfTestError(f"{artifact}: self-test: output {name!r} differs from the golden output where that "
                                f"is not finite ({int((~fin).sum())} entries: -inf / +inf / NaN must be the same)")
        d = float(np.abs(a64[fin] - r64[fin]).max()) if fin.any() else 0.0
        scale = max(1.0, float(np.abs(r64[fin]).max()) if fin.any() else 1.0)
        rel = d / scale
        figures[name] = {"max_abs_diff": d, "rel_max": rel}
        if not math.isfinite(rel) or rel > tol:
            raise SelfTestError(f"{artifact}: self-test: output {name!r} differs from the golden output by "
                                f"max |d| = {d:.4g} (rel {rel:.3g} > tolerance {tol:g} for {precision}; "
                                f"x{rel / tol:.1f})")
    return {"ok": True, "precision": precision, "tolerance_rel_max": tol, "outputs": figures}


__all__ = ["GOLDEN_DIR", "PRECISION_CLASSES", "SELF_TEST_TOLERANCES", "INPUT_SOURCES", "SelfTestError", "golden_file",
           "derive_inputs", "first_rows", "pack", "unpack", "tolerance", "compare"]
