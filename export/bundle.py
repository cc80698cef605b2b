"""The generic bundle writer every family's exporter uses (the family writes its files, this writes the bundle).

::

    from umask.export.bundle import write_bundle
    manifest = write_bundle(out, lambda tmp: {"model": ..., "artifacts": ...}, family="umask")

`write_bundle` builds everything in ``.<out>.tmp-<pid>`` next to ``out`` with a ``.partial``
marker that the runtime refuses (runtime/core/bundle.py), lets the family's ``build(tmp)`` write its
files and return its manifest sections, adds ``schema_version``, ``family`` and the sha256 + size
of every file, writes ``manifest.json`` last, signs it (``sign_key``: an ed25519 private key file or
key object; ``manifest.sig`` next to it, not listed in ``files``), fsyncs the tree, removes the marker and renames the
folder onto ``out`` (an older bundle there is swapped out, then deleted). On any exception, a
KeyboardInterrupt included, the temp folder is removed and ``out`` is untouched.
`signature` reads the I/O signature of an ONNX file for the manifest.

Golden I/O (`write_goldens`, runtime/core/golden.py): after ``build(tmp)`` every ``*.onnx`` file of the
bundle is run once by onnxruntime (CPU, one thread) and ``golden/<path>.npz`` stores its inputs and
outputs; ``manifest["golden"][<path>]`` records the file, the graph's precision class (int8 when it holds
quantize / integer ops, fp16 when it holds fp16 tensors, else fp32) and where the inputs came from.
A family's ``build`` may return real inputs under the section key ``golden_inputs`` ({ONNX path: feed};
the writer cuts each to its first row and does not write the key into the manifest); every other
ONNX file gets deterministic inputs derived from its I/O signature. The device's self-test
(``Session.open(..., self_test=True)``) compares against these outputs.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from umask.runtime.core.bundle import MANIFEST, PARTIAL_MARKER, SCHEMA_VERSION, SIGNATURE_FILE, sha256_file

log = logging.getLogger(__name__)

TOOL_MODULES = ("torch", "onnx", "onnxruntime", "numpy", "tokenizers")
GOLDEN_INPUTS_KEY = "golden_inputs"      # section key a family's build() may return: {ONNX path: feed}
INT8_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger",
                      "QLinearMatMul", "QLinearConv", "ConvInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul",
                      "QGemm", "QAttention"})


def signature(path: Path) -> dict[str, Any]:
    """{"inputs", "outputs": [{name, shape (dim names for dynamic axes), dtype}], "opset"} of an ONNX file."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)

    def io(vs: Any) -> list[dict[str, Any]]:
        out = []
        for v in vs:
            tt = v.type.tensor_type
            shape = [d.dim_param if d.dim_param else int(d.dim_value) for d in tt.shape.dim]
            out.append({"name": v.name, "shape": shape,
                        "dtype": onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name})
        return out

    return {"inputs": io(m.graph.input), "outputs": io(m.graph.output),
            "opset": max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))}


def tool_versions(modules: tuple[str, ...] = TOOL_MODULES) -> dict[str, str]:
    """Python, the given modules' versions (those that import) and this package's."""
    import importlib

    v = {"python": platform.python_version()}
    for name in modules:
        try:
            v[name] = str(importlib.import_module(name).__version__)
        except ImportError:
            continue
    try:
        from importlib.metadata import version

        v["umask-edge"] = version("umask-edge")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        v["umask-edge"] = "source"
    return v


def file_table(root: Path) -> dict[str, dict[str, Any]]:
    """sha256 + size of every file under ``root`` (posix relative paths), the partial marker left out."""
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != PARTIAL_MARKER:
            files[p.relative_to(root).as_posix()] = {"sha256": sha256_file(p), "size": p.stat().st_size}
    return files


def fsync_tree(root: Path) -> None:
    """fsync every file, then every folder (deepest first) under ``root``."""
    for p in sorted(root.rglob("*")):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    for d in sorted({p.parent for p in root.rglob("*")} | {root}, key=lambda x: -len(x.parts)):
        _fsync_dir(d)


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def graph_precision(path: Path) -> str:
    """The precision class of an ONNX file for its self-test tolerance: ``int8`` (quantize / integer ops),
    ``fp16`` (any fp16 initializer or Cast to fp16), else ``fp32``."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    nodes = list(m.graph.node)
    if any(n.op_type in INT8_OPS for n in nodes):
        return "int8"
    f16 = onnx.TensorProto.FLOAT16
    if any(i.data_type == f16 for i in m.graph.initializer) or any(
            n.op_type == "Cast" and any(a.name == "to" and a.i == f16 for a in n.attribute) for n in nodes):
        return "fp16"
    return "fp32"


def _usable(outs: list[Any]) -> bool:
    """Outputs a golden file can pin: no NaN anywhere. +-inf is kept (a log-prior of a never-seen category
    is -inf by design, GTS-LUM's head); `golden.compare` then requires the same infinities."""
    import numpy as np

    return all(not np.isnan(o).any() for o in outs if np.asarray(o).dtype.kind == "f")


def write_goldens(root: Path, given: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Write ``golden/<path>.npz`` for every ONNX file under ``root`` (see the module docstring); returns
    the manifest's ``golden`` section. ``given``: real inputs per ONNX path (an unknown path is an error)."""
    from umask.runtime.core import golden as gd
    from umask.runtime.engines.ort import CPU, inference_session

    given = dict(given or {})
    onnx_files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.onnx") if p.is_file())
    unknown = sorted(set(given) - set(onnx_files))
    if unknown:
        raise ValueError(f"{GOLDEN_INPUTS_KEY}: {unknown} are not ONNX files of the bundle (have {onnx_files})")
    section: dict[str, dict[str, Any]] = {}
    for rel in onnx_files:
        path = root / rel
        sig = signature(path)
        if rel in given:
            source, attempts = "exporter", [gd.first_rows(given[rel], sig["inputs"])]
        else:
            source, attempts = "derived", [gd.derive_inputs(sig["inputs"], rel, a) for a in (0, 1)]
        precision = graph_precision(path)
        sess = inference_session(path)
        names = [o.name for o in sess.get_outputs()]
        why = "no attempt"
        for feed in attempts:
            try:
                outs = sess.run(None, feed)
            except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types; tried with the next feed
                why = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
                continue
            if not _usable(outs):
                why = "NaN outputs"
                continue
            dst = root / gd.golden_file(rel)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(gd.pack(feed, dict(zip(names, outs))))
            first = next(iter(feed.values()), None)
            section[rel] = {"status": "ok", "file": gd.golden_file(rel), "precision": precision, "inputs": source,
                            "provider": CPU, "batch": int(first.shape[0]) if first is not None and first.ndim else 0}
            break
        else:
            log.warning("golden I/O of %s skipped: %s", rel, why)
            section[rel] = {"status": "skipped", "precision": precision, "inputs": source, "reason": why}
    return section


def write_bundle(out: str | Path, build: Callable[[Path], dict[str, Any]], *, family: str,
                 schema_version: int = SCHEMA_VERSION, started: float | None = None, sign_key: Any = None,
                 passphrase: bytes | None = None, golden: bool = True) -> dict[str, Any]:
    """Write the bundle ``out`` atomically; ``build(tmp)`` writes the family's files under ``tmp`` and returns
    its manifest sections. Returns the manifest (with ``files``, and ``export_seconds`` since ``started``, a
    ``time.perf_counter()`` value, default: now). ``sign_key``: sign the manifest with this ed25519 private
    key (a PEM file or an ``Ed25519PrivateKey``; ``passphrase`` for an encrypted file) before the bundle
    becomes visible; None writes an unsigned bundle (the runtime opens it only with ``allow_unsigned=True``).
    ``golden``: write the golden I/O of every ONNX file (`write_goldens`). See the module docstring."""
    t0 = time.perf_counter() if started is None else started
    key = None
    if sign_key is not None:     # load (and fail on) the key before any work
        from umask.export.signing import load_private_key

        key = sign_key if hasattr(sign_key, "sign") else load_private_key(sign_key, passphrase)
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    (tmp / PARTIAL_MARKER).write_text("export in progress\n")
    try:
        sections = dict(build(tmp))
        given = sections.pop(GOLDEN_INPUTS_KEY, None)
        manifest = {"schema_version": schema_version, "family": family,
                    **{k: v for k, v in sections.items() if k not in ("schema_version", "family", "files", "golden")}}
        if golden:
            gsec = write_goldens(tmp, given)
            if gsec:
                manifest["golden"] = gsec
        manifest["export_seconds"] = round(time.perf_counter() - t0, 2)
        manifest["files"] = file_table(tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        if key is not None:
            from umask.export.signing import signature_bytes

            # signed as the runtime reads it back (json round trip: the canonical bytes of the parsed manifest)
            (tmp / SIGNATURE_FILE).write_bytes(signature_bytes(json.loads((tmp / MANIFEST).read_text("utf-8")), key))
        (tmp / PARTIAL_MARKER).unlink()
        fsync_tree(tmp)
        if out.exists():
            trash = out.parent / f".{out.name}.trash-{os.getpid()}"
            os.replace(out, trash)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
        _fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("%s bundle %s written in %.1f s", family, out, manifest["export_seconds"])
    return manifest


__all__ = ["signature", "tool_versions", "file_table", "fsync_tree", "write_bundle", "write_goldens", "graph_precision",
           "TOOL_MODULES", "GOLDEN_INPUTS_KEY"]
