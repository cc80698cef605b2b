"""Bundle directories: manifest schema, checksum verification (numpy + stdlib only).

A bundle is a directory written by ``umask export`` (export/exporter.py)::

    manifest.json              schema, configs, files (sha256, size, I/O signatures), parity, versions
    onnx/<precision>/*.onnx    dit, profile_mlp per precision; maskgen, sbert in onnx/fp32 (shared)
    tokenizer/tokenizer.json   the SBERT tokenizer
    catalog/*                  app / category / base-station tables the featurization needs
    llm/*.gguf                 the profiling LLM (+ LoRA adapter) when the export found them
    trt/*                      TensorRT engines when ``tensorrt`` imported at export time

`verify_bundle` refuses (``BundleError``) a bundle whose manifest is missing or unreadable, whose
schema version is unknown, that misses a listed file, holds a file with a different size or
sha256, or holds a stray ``.partial`` marker of an interrupted export.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
PARTIAL_MARKER = ".partial"


class BundleError(RuntimeError):
    """A bundle that must not be loaded (incomplete, tampered, unknown schema)."""


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            b = fh.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def read_manifest(bundle: str | Path) -> dict[str, Any]:
    root = Path(bundle)
    if not root.is_dir():
        raise BundleError(f"{bundle}: not a bundle directory")
    if (root / PARTIAL_MARKER).exists():
        raise BundleError(f"{bundle}: holds {PARTIAL_MARKER}: an export was interrupted; re-run it")
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{bundle}: no {MANIFEST} (incomplete bundle)")
    try:
        m = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{mpath}: unreadable manifest ({e})") from None
    if not isinstance(m, dict) or m.get("schema_version") != SCHEMA_VERSION:
        raise BundleError(f"{mpath}: schema_version {m.get('schema_version') if isinstance(m, dict) else None!r}, "
                          f"this runtime reads {SCHEMA_VERSION}")
    for key in ("files", "model", "featurization", "diffusion", "artifacts"):
        if key not in m:
            raise BundleError(f"{mpath}: missing section {key!r}")
    return m


def verify_bundle(bundle: str | Path, *, checksums: bool = True) -> dict[str, Any]:
    """The manifest after checking every listed file's presence, size and (``checksums``) sha256."""
    root = Path(bundle)
    m = read_manifest(root)
    bad: list[str] = []
    for rel, info in sorted(m["files"].items()):
        p = root / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise BundleError(f"{root / MANIFEST}: file entry {rel!r} leaves the bundle")
        if not p.is_file():
            bad.append(f"{rel}: missing")
            continue
        size = p.stat().st_size
        if size != int(info["size"]):
            bad.append(f"{rel}: size {size} != manifest {info['size']} (truncated or replaced)")
            continue
        if checksums:
            digest = sha256_file(p)
            if digest != info["sha256"]:
                bad.append(f"{rel}: sha256 {digest[:12]}... != manifest {info['sha256'][:12]}... (modified)")
    if bad:
        raise BundleError(f"{root}: refusing a tampered or incomplete bundle: " + "; ".join(bad))
    return m


__all__ = ["MANIFEST", "SCHEMA_VERSION", "PARTIAL_MARKER", "BundleError", "sha256_file", "read_manifest",
           "verify_bundle"]
