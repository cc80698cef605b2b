"""Bundle directories: the strict manifest schema, integrity verification and the one verified read path.

A bundle is a directory written by ``umask export`` (export/families/umask/exporter.py)::

    manifest.json              schema, configs, files (sha256, size, I/O signatures), parity, versions
    manifest.sig               ed25519 signature of the canonical manifest (export/signing.py; optional here)
    onnx/<precision>/*.onnx    dit, profile_mlp per precision; maskgen, sbert in onnx/fp32 (shared)
    tokenizer/tokenizer.json   the SBERT tokenizer
    catalog/*                  app / category / base-station tables the featurization needs
    llm/*.gguf                 the profiling LLM (+ LoRA adapter) when the export found them
    trt/*                      TensorRT engines when ``tensorrt`` imported at export time
    golden/<onnx path>.npz     golden inputs + outputs of every ONNX file (runtime/core/golden.py; the self-test)

`verify_bundle` refuses (`BundleError`; `ManifestError` for schema breaks, naming the key path):

* a bundle holding a ``.partial`` marker (an interrupted export), a missing / unreadable /
  over-large / too deeply nested manifest, duplicate keys, NaN / Infinity, an unknown or
  wrongly typed ``schema_version`` (``true`` and ``1.0`` are not ``1``);
* any key the schema does not know (free-form JSON is allowed only in the informational
  sections listed in `FREE_FORM`: training config dumps, parity figures, versions), any wrongly
  typed or out-of-range value (sizes are ints >= 0, sha256 64 lowercase hex digits, ...);
* any path the manifest names (``files`` keys, ``artifacts.<precision>.<net>.file``,
  ``sbert.file`` / ``sbert.tokenizer`` / ``sbert.int8.file``, ``llm.model`` / ``llm.lora`` /
  ``llm.files``, ``featurization.catalog.files``, ``golden`` keys and ``golden.*.file``,
  ``tensorrt.engines.*.file``, ``tensorrt.timing_cache``) that is absolute, holds ``..`` / ``.`` / empty
  / backslash parts, is not listed in ``files``, or is (or lies under) a symlink;
* a bundle whose file set differs from ``files`` (an extra file, e.g. an ONNX external-data
  file or a planted library, is refused like a missing one; ``manifest.json`` and
  ``manifest.sig`` are the only unlisted files); an empty ``files`` cannot turn checks off;
* a listed file with a different size or sha256.

Loaders read bundle files ONLY through `read_verified(root, rel, manifest)`: it opens the file
without following symlinks, reads it once, checks size and sha256 of exactly those bytes and
returns them (``onnxruntime.InferenceSession(bytes)``, ``Tokenizer.from_str(bytes.decode())``), so
nothing can swap the file between the check and the load. ONNX models must embed their weights
(a model with external data fails to load from bytes: fail closed). GGUF files are opened by
llama.cpp by path; `verified_path` re-hashes them right before that open (a narrower window, not none).

``family`` (new key, a lowercase identifier) names the model family; absent means ``"umask"``
(schema-1 bundles). The shared envelope (``schema_version``, ``family``, ``files``, ``created_utc``,
``versions``, ``export_seconds``, ``golden``, ``tensorrt`` with the engines' TensorRT version and GPU
compute capability) is checked for every family; a family's sections are checked by the
schema it registers (`register_manifest_schema`; U-MASK's is `MANIFEST_SCHEMA`); a family without one
gets the envelope check only (its session dispatch refuses families it does not serve). The signature check lives in `umask.runtime.core.signing.verify_bundle`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any, Callable

from umask.runtime.core.errors import BundleError, ManifestError
from umask.runtime.core.limits import HISTORY_LIMITS, Limits

MANIFEST = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
SCHEMA_VERSION = 1
PARTIAL_MARKER = ".partial"
DEFAULT_FAMILY = "umask"
UNLISTED = frozenset({MANIFEST, SIGNATURE_FILE})

# ---------------------------------------------------------------------------------------------
# Strict JSON
# ---------------------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise _JsonRefused(f"duplicate key {k!r}")
        d[k] = v
    return d


class _JsonRefused(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _JsonRefused(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise _JsonRefused(f"number {text[:30]} overflows a float")
    return v


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(r"[\[\]{}]")


def strict_json_loads(text: str | bytes, *, max_depth: int = HISTORY_LIMITS.max_manifest_depth) -> Any:
    """json.loads refusing duplicate keys, NaN / Infinity, overflowing floats and nesting deeper than
    ``max_depth``; raises ValueError (with the reason) on any of them."""
    s = text if isinstance(text, str) else text.decode("utf-8")
    level = 0
    for ch in _BRACKETS.findall(_STRINGS.sub('""', s)):   # the depth scan runs before the parser can recurse
        if ch in "[{":
            level += 1
            if level > max_depth:
                raise _JsonRefused(f"nesting deeper than {max_depth}")
        else:
            level -= 1
    return json.loads(s, object_pairs_hook=_no_duplicates, parse_constant=_no_constant,
                      parse_float=_finite_float)


def canonical_manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The bytes a signature covers: sorted keys, no whitespace, ASCII, no NaN."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


# ---------------------------------------------------------------------------------------------
# The schema
# ---------------------------------------------------------------------------------------------

Check = Callable[[Any, str, "_Ctx"], None]


class _Ctx:
    def __init__(self, mpath: Path) -> None:
        self.mpath = mpath
        self.paths: list[tuple[str, str]] = []   # (key path, bundle-relative path)

    def fail(self, key: str, msg: str) -> None:
        raise ManifestError(f"{self.mpath}: {key}: {msg}")


def _tname(v: Any) -> str:
    return "null" if v is None else {bool: "bool", int: "int", float: "float", str: "string", list: "array",
                                     dict: "object"}.get(type(v), type(v).__name__)


def INT(lo: int = 0, hi: int = 2**53) -> Check:
    def c(v: Any, k: str, ctx: _Ctx) -> None:
        if type(v) is not int:
            ctx.fail(k, f"expected an int, got {_tname(v)} {v!r:.40}")
        if not lo <= v <= hi:
            ctx.fail(k, f"{v} out of range [{lo}, {hi}]")
    return c


def NUM(lo: float = -1e300, hi: float = 1e300) -> Check:
    def c(v: Any, k: str, ctx: _Ctx) -> None:
        if type(v) not in (int, float):
            ctx.fail(k, f"expected a number, got {_tname(v)}")
        if not (math.isfinite(v) and lo <= v <= hi):
            ctx.fail(k, f"{v} out of range [{lo}, {hi}]")
    return c


def STR(max_len: int = 4096, pattern: str | None = None) -> Check:
    rx = re.compile(pattern) if pattern else None

    def c(v: Any, k: str, ctx: _Ctx) -> None:
        if type(v) is not str:
            ctx.fail(k, f"expected a string, got {_tname(v)}")
        if len(v) > max_len:
            ctx.fail(k, f"string longer than {max_len}")
        if rx is not None and not rx.fullmatch(v):
            ctx.fail(k, f"{v[:60]!r} does not match {pattern}")
    return c


def BOOL(v: Any, k: str, ctx: _Ctx) -> None:
    if type(v) is not bool:
        ctx.fail(k, f"expected true / false, got {_tname(v)}")


def NULLABLE(inner: Check) -> Check:
    def c(v: Any, k: str, ctx: _Ctx) -> None:
        if v is not None:
            inner(v, k, ctx)
    return c


def LIST(item: Check, max_len: int = 100_000, min_len: int = 0) -> Check:
    def c(v: Any, k: str, ctx: _Ctx) -> None:
        if type(v) is not list:
            ctx.fail(k, f"expected an array, got {_tname(v)}")
        if not min_len <= len(v) <= max_len:
            ctx.fail(k, f"array of {len(v)} items, want {min_len}..{max_len}")
        for i, x in enumerate(v):
            item(x, f"{k}[{i}]", ctx)
    return c


def OBJ(required: dict[str, Check], optional: dict[str, Check] | None = None, *, extra: Check | None = None,
        when: Callable[[dict[str, Any], str, _Ctx], None] | None = None) -> Check:
    """An object with these keys; unknown keys are refused unless ``extra`` types them."""
    opt = optional or {}

    def c(v: Any, k: str, ctx: _Ctx) -> None:
        if type(v) is not dict:
            ctx.fail(k, f"expected an object, got {_tname(v)}")
        for name in required:
            if name not in v:
                ctx.fail(k, f"missing key {name!r}")
        for name, x in v.items():
            sub = required.get(name) or opt.get(name) or extra
            if sub is None:
                ctx.fail(k, f"unknown key {name!r} (this runtime's schema {SCHEMA_VERSION} does not know it)")
            sub(x, f"{k}.{name}" if k else name, ctx)
        if when is not None:
            when(v, k, ctx)
    return c


def MAP(value: Check, key_pattern: str = r"[A-Za-z0-9_.+-]{1,64}", max_items: int = 10_000) -> Check:
    rx = re.compile(key_pattern)

    def c(v: Any, k: str, ctx: _Ctx) -> None:
        if type(v) is not dict:
            ctx.fail(k, f"expected an object, got {_tname(v)}")
        if len(v) > max_items:
            ctx.fail(k, f"more than {max_items} entries")
        for name, x in v.items():
            if not rx.fullmatch(name):
                ctx.fail(k, f"key {name[:60]!r} does not match {key_pattern}")
            value(x, f"{k}.{name}", ctx)
    return c


def JSON(v: Any, k: str, ctx: _Ctx) -> None:
    """Free-form JSON (already depth-bounded and duplicate-free by the parser)."""


def _path_ok(rel: str) -> str | None:
    if not rel or len(rel) > 512:
        return "empty or longer than 512 characters"
    if "\\" in rel or "\x00" in rel:
        return "holds a backslash or NUL"
    if rel.startswith("/") or re.match(r"^[A-Za-z]:", rel):
        return "is absolute"
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "holds an empty, '.' or '..' part (leaves the bundle or is not canonical)"
    if parts[0] in UNLISTED or parts[-1] == PARTIAL_MARKER:
        return "names the manifest, its signature or the .partial marker"
    return None


def PATH(v: Any, k: str, ctx: _Ctx) -> None:
    """A bundle-relative POSIX path the loader opens; collected for the cross-check against ``files``."""
    if type(v) is not str:
        ctx.fail(k, f"expected a bundle-relative path string, got {_tname(v)}")
    why = _path_ok(v)
    if why:
        ctx.fail(k, f"path {v[:80]!r} {why}")
    ctx.paths.append((k, v))


HEX64 = STR(64, r"[0-9a-f]{64}")
NAME = STR(64, r"[A-Za-z0-9_.+-]{1,64}")
FAMILY = STR(32, r"[a-z][a-z0-9_-]{0,31}")


def _files(v: Any, k: str, ctx: _Ctx) -> None:
    if type(v) is not dict:
        ctx.fail(k, f"expected an object, got {_tname(v)}")
    if not v:
        ctx.fail(k, "is empty: a bundle lists every file it holds")
    if len(v) > 10_000:
        ctx.fail(k, "more than 10000 files")
    entry = OBJ({"sha256": HEX64, "size": INT(0, 2**50)})
    for rel, info in v.items():
        why = _path_ok(rel)
        if why:
            ctx.fail(k, f"file entry {rel[:80]!r} {why}")
        entry(info, f"{k}[{rel!r}]", ctx)


def _artifact_when(v: dict[str, Any], k: str, ctx: _Ctx) -> None:
    if v["status"] == "ok" and not v.get("file"):
        ctx.fail(k, "status 'ok' without a file")


ARTIFACT = OBJ({"status": NAME}, {
    "file": NULLABLE(PATH), "shared": NAME, "reason": STR(8192), "parity": JSON, "tolerance": JSON,
    "conversion": JSON, "inputs": JSON, "outputs": JSON, "opset": INT(1, 1000)}, when=_artifact_when)


def _sbert_when(v: dict[str, Any], k: str, ctx: _Ctx) -> None:
    if v["status"] == "present":
        for name in ("file", "tokenizer"):
            if name not in v:
                ctx.fail(k, f"status 'present' without {name!r}")


def _int8_when(v: dict[str, Any], k: str, ctx: _Ctx) -> None:
    if v["status"] == "ok" and not v.get("file"):
        ctx.fail(k, "status 'ok' without a file")


SBERT = OBJ({"status": STR(32, "present|absent")}, {
    "note": STR(), "inputs": LIST(NAME, 16), "outputs": LIST(NAME, 16), "dim": INT(1, 65536), "pooling": NAME,
    "normalize": BOOL, "max_len": INT(1, 65536), "opset": INT(1, 1000), "model_id": STR(512), "sha256": HEX64,
    "tokenizer": PATH, "file": PATH, "parity": JSON, "reused_from_cache": BOOL, "signature": JSON,
    "int8": OBJ({"status": NAME}, {"file": NULLABLE(PATH), "parity": JSON, "tolerance": JSON, "method": STR(),
                                   "reason": STR(8192), "note": STR()}, when=_int8_when)}, when=_sbert_when)


def _llm_when(v: dict[str, Any], k: str, ctx: _Ctx) -> None:
    if v["status"] == "present" and not (v.get("model") or v.get("files")):
        ctx.fail(k, "status 'present' without a model")


LLM = OBJ({"status": STR(32, "present|absent")}, {
    "files": LIST(PATH, 16), "source": NULLABLE(STR()), "note": STR(), "quant": NAME, "model": PATH,
    "lora": NULLABLE(PATH)}, when=_llm_when)

MODEL = OBJ({"x_scale": LIST(NUM(-1e6, 1e6), 4096, 1), "mask_mode": NAME, "use_profile": BOOL,
             "rho_init": LIST(NUM(0, 1), 64), "cond_dim": INT(1, 65536), "sbert_dim": INT(1, 65536),
             "maskgen": OBJ({"T": INT(1, 100_000), "H": INT(1, 4096), "W": INT(1, 4096)}, extra=JSON)},
            {"umask": JSON, "dit": JSON, "tasks": LIST(NAME, 64), "profile_source_trained": NAME,
             "all_evidence_tasks": LIST(NAME, 64)})

FEATURIZATION = OBJ({
    "feature_config": OBJ({}, {"slot_minutes": INT(1, 1440), "H": INT(1, 4096), "W": INT(1, 4096),
                               "cell_m": NUM(1e-3, 1e7), "session_gap_minutes": NUM(0, 1e6)}),
    "window": OBJ({"context": INT(1, 100_000), "horizon": INT(1, 100_000), "short_horizon": INT(1, 100_000),
                   "cold_max_active": INT(0, 100_000)}),
    "channels": OBJ({"n_channels": INT(1, 100_000)}, {"n_categories": INT(0, 100_000), "names": LIST(STR(256), 100_000)}),
}, {
    "slot_seconds": INT(1, 86400), "tessellation": JSON, "scales": JSON, "events_csv": STR(),
    "profile_template_version": INT(0, 10**6),
    "catalog": OBJ({"files": LIST(PATH, 64)}, {"id_space": NAME, "loader": NAME}),
})

DIFFUSION = OBJ({
    "alphas_cumprod": LIST(NUM(0, 1), 100_000, 1),
    "defaults": OBJ({}, {"sampler": NAME, "steps": INT(1, 100_000), "n_samples": INT(1, 10_000),
                         # per-task overrides (runtime/families/umask/checks.request_args), e.g. short_term: 1 draw
                         "by_task": MAP(OBJ({}, {"sampler": NAME, "steps": INT(1, 100_000),
                                                 "n_samples": INT(1, 10_000)}), r"[a-z_]{1,32}", 16)}),
}, {"num_train_steps": INT(1, 100_000), "schedule": NAME, "prediction": NAME, "clamp": STR()})

def _golden(v: Any, k: str, ctx: _Ctx) -> None:
    """``golden``: {ONNX file path: {file, precision, inputs, provider, status}} (runtime/core/golden.py);
    both the ONNX file and its golden file must be listed in ``files``."""
    if type(v) is not dict:
        ctx.fail(k, f"expected an object, got {_tname(v)}")
    if len(v) > 1000:
        ctx.fail(k, "more than 1000 entries")
    for rel, entry in v.items():
        PATH(rel, f"{k}[{rel!r}]", ctx)
        GOLDEN_ENTRY(entry, f"{k}[{rel!r}]", ctx)


def _golden_when(v: dict[str, Any], k: str, ctx: _Ctx) -> None:
    if v["status"] == "ok" and not v.get("file"):
        ctx.fail(k, "status 'ok' without a file")


GOLDEN_ENTRY = OBJ({"status": STR(32, "ok|skipped")}, {
    "file": PATH, "precision": STR(8, "fp32|fp16|int8"), "inputs": STR(16, "exporter|derived"),
    "provider": NAME, "reason": STR(2048), "batch": INT(0, 1 << 20)}, when=_golden_when)

# TensorRT engines (export/tensorrt.py): the builder's TensorRT version and the GPU compute capability
# an engine was built for; `umask.runtime.engines.trt_facts` refuses an engine on any other pair
CAPABILITY = STR(16, r"[0-9]{1,3}\.[0-9]{1,3}")
TRT_ENGINE = OBJ({"status": STR(16, "built|failed")}, {
    "file": PATH, "batch": INT(1, 1 << 20), "reason": STR(8192), "precision": NAME, "network": NAME,
    "tensorrt_version": STR(64), "compute_capability": CAPABILITY, "gpu_name": NULLABLE(STR(256))})
TENSORRT = OBJ({"status": STR(16, "built|skipped|disabled|failed")}, {
    "reason": STR(8192), "tensorrt_version": STR(64), "compute_capability": NULLABLE(CAPABILITY),
    "gpu_name": NULLABLE(STR(256)), "engines": MAP(TRT_ENGINE, r"[A-Za-z0-9_.+-]{1,64}/[A-Za-z0-9_.+-]{1,64}", 256),
    "timing_cache": PATH})

# informational sections: free-form JSON (depth-bounded), never read as paths
FREE_FORM = ("created_utc", "checkpoint", "tolerances", "parity_inputs", "versions",
             "model.umask", "model.dit", "model.maskgen (besides T, H, W)", "*.parity", "*.tolerance", "*.conversion",
             "*.inputs / *.outputs (I/O signatures)", "featurization.tessellation", "featurization.scales")

# the measured task accuracy of each precision against torch (export/precision.accuracy_gate_section);
# precision="auto" only picks a precision that passed it (runtime/engines/precision_choice.py)
ACCURACY_GATE = OBJ({"per_precision": MAP(OBJ({"pass": BOOL}, {"max_abs_gap": NUM(0, 1e9), "worst": STR(512)}),
                                          max_items=16)},
                    {"bar": STR(512), "source": STR(256), "sha256": HEX64, "rule": STR(128)})

# the envelope every family shares; the family's own sections come from its registered schema
ENVELOPE_REQUIRED: dict[str, Check] = {"schema_version": INT(SCHEMA_VERSION, SCHEMA_VERSION), "files": _files}
ENVELOPE_OPTIONAL: dict[str, Check] = {"family": FAMILY, "created_utc": STR(64), "versions": JSON,
                                       "export_seconds": NUM(0, 1e9), "golden": _golden, "tensorrt": TENSORRT,
                                       "accuracy_gate": ACCURACY_GATE}

UMASK_SECTIONS_REQUIRED: dict[str, Check] = {"model": MODEL, "featurization": FEATURIZATION, "diffusion": DIFFUSION,
                                             "artifacts": MAP(MAP(ARTIFACT), max_items=64)}
UMASK_SECTIONS_OPTIONAL: dict[str, Check] = {"checkpoint": JSON, "sbert": SBERT, "tolerances": JSON,
                                             "parity_inputs": JSON, "tensorrt": TENSORRT, "llm": LLM}

FAMILY_SCHEMAS: dict[str, Check] = {}


def register_manifest_schema(family: str, required: dict[str, Check], optional: dict[str, Check] | None = None) -> None:
    """Declare the strict schema of ``family``'s manifest sections (on top of the shared envelope).
    A family without a registered schema gets only the envelope check (its sections are free-form
    JSON): a family session must register one before it loads anything from its manifest."""
    FAMILY_SCHEMAS[family] = OBJ({**ENVELOPE_REQUIRED, **required}, {**ENVELOPE_OPTIONAL, **(optional or {})})


register_manifest_schema(DEFAULT_FAMILY, UMASK_SECTIONS_REQUIRED, UMASK_SECTIONS_OPTIONAL)
MANIFEST_SCHEMA = FAMILY_SCHEMAS[DEFAULT_FAMILY]
ENVELOPE_SCHEMA = OBJ(ENVELOPE_REQUIRED, ENVELOPE_OPTIONAL, extra=JSON)


# ---------------------------------------------------------------------------------------------
# Reading and verifying
# ---------------------------------------------------------------------------------------------

def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            b = fh.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def bundle_family(manifest: dict[str, Any]) -> str:
    """The manifest's model family (``"umask"`` when the key is absent: schema-1 bundles)."""
    return str(manifest.get("family", DEFAULT_FAMILY))


def _check_schema_version(m: Any, mpath: Path) -> None:
    if type(m) is not dict:
        raise ManifestError(f"{mpath}: the manifest must be a JSON object, got {_tname(m)}")
    v = m.get("schema_version")
    if type(v) is not int or v != SCHEMA_VERSION:
        raise BundleError(f"{mpath}: schema_version {v!r} ({_tname(v)}), this runtime reads {SCHEMA_VERSION} (an int)")


def read_manifest(bundle: str | Path, *, limits: Limits | None = None) -> dict[str, Any]:
    """The manifest after the strict schema check (no file is read besides manifest.json)."""
    m, _ = _read_manifest(Path(bundle), HISTORY_LIMITS if limits is None else limits)
    return m


def _read_manifest(root: Path, lim: Limits) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory")
    if os.path.lexists(root / PARTIAL_MARKER):
        raise BundleError(f"{root}: holds {PARTIAL_MARKER}: an export was interrupted; re-run it")
    mpath = root / MANIFEST
    if mpath.is_symlink() or not mpath.is_file():
        raise BundleError(f"{root}: no {MANIFEST} (incomplete bundle)" if not mpath.is_symlink()
                          else f"{mpath}: is a symlink")
    try:
        with open(mpath, "rb") as fh:
            raw = fh.read(lim.max_manifest_bytes + 1)
    except OSError as e:
        raise BundleError(f"{mpath}: unreadable manifest ({e})") from None
    if len(raw) > lim.max_manifest_bytes:
        raise ManifestError(f"{mpath}: larger than {lim.max_manifest_bytes:,} bytes (Limits.max_manifest_bytes)")
    try:
        m = strict_json_loads(raw.decode("utf-8"), max_depth=lim.max_manifest_depth)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ManifestError(f"{mpath}: unreadable manifest ({type(e).__name__}: {str(e)[:200]})") from None
    _check_schema_version(m, mpath)
    ctx = _Ctx(mpath)
    FAMILY("family" in m and m["family"] or DEFAULT_FAMILY, "family", ctx)
    FAMILY_SCHEMAS.get(bundle_family(m), ENVELOPE_SCHEMA)(m, "", ctx)
    listed = m["files"]
    for key, rel in ctx.paths:
        if rel not in listed:
            raise ManifestError(f"{mpath}: {key}: {rel!r} is not listed in files (every file the loader opens "
                                "must be hashed)")
    return m, ctx.paths


def _bundle_file_set(root: Path) -> set[str]:
    """Every entry under ``root`` (relative POSIX paths); refuses symlinks and special files anywhere."""
    out: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        for name in dirnames + filenames:
            p = d / name
            st = os.lstat(p)
            rel = p.relative_to(root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                raise BundleError(f"{root}: {rel} is a symlink (a bundle holds regular files only)")
            if name in filenames:
                if not stat.S_ISREG(st.st_mode):
                    raise BundleError(f"{root}: {rel} is not a regular file")
                out.add(rel)
    return out


def verify_bundle(bundle: str | Path, *, checksums: bool = True, limits: Limits | None = None) -> dict[str, Any]:
    """The manifest after the schema check, the file-set check and every listed file's size and
    (``checksums``) sha256. Integrity only: `umask.runtime.core.signing.verify_bundle` adds the
    signature check that loaders should use."""
    root = Path(bundle)
    m, _ = _read_manifest(root, HISTORY_LIMITS if limits is None else limits)
    present = _bundle_file_set(root) - UNLISTED
    listed = set(m["files"])
    extra, gone = sorted(present - listed), sorted(listed - present)
    bad: list[str] = [f"{rel}: missing" for rel in gone]
    bad += [f"{rel}: not listed in the manifest (unexpected file)" for rel in extra]
    for rel in sorted(listed & present):
        info = m["files"][rel]
        p = root / rel
        size = p.stat().st_size
        if size != info["size"]:
            bad.append(f"{rel}: size {size} != manifest {info['size']} (truncated or replaced)")
            continue
        if checksums:
            digest = sha256_file(p)
            if digest != info["sha256"]:
                bad.append(f"{rel}: sha256 {digest[:12]}... != manifest {info['sha256'][:12]}... (modified)")
    if bad:
        raise BundleError(f"{root}: refusing a tampered or incomplete bundle: " + "; ".join(bad[:20])
                          + (f"; and {len(bad) - 20} more" if len(bad) > 20 else ""))
    return m


def _open_nofollow(root: Path, rel: str) -> int:
    """An fd of ``root/rel`` opened without following a symlink in any component below ``root``."""
    why = _path_ok(rel)
    if why:
        raise BundleError(f"{root}: {rel!r} {why}")
    fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        parts = rel.split("/")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | (0 if last else getattr(os, "O_DIRECTORY", 0))
            try:
                nfd = os.open(part, flags, dir_fd=fd)
            except OSError as e:
                raise BundleError(f"{root}: cannot open {rel} without following links ({e.strerror})") from None
            os.close(fd)
            fd = nfd
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BundleError(f"{root}: {rel} is not a regular file")
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_verified(bundle: str | Path, rel: str, manifest: dict[str, Any] | None = None) -> bytes:
    """The bytes of bundle file ``rel``, read once (no symlink followed) and checked against the
    manifest's size and sha256 before they are returned. ``manifest``: the verified manifest
    (`verify_bundle`'s result; read and schema-checked here when None)."""
    root = Path(bundle)
    m = read_manifest(root) if manifest is None else manifest
    info = m.get("files", {}).get(rel) if isinstance(m.get("files"), dict) else None
    if info is None:
        raise BundleError(f"{root}: {rel!r} is not listed in the manifest's files")
    fd = _open_nofollow(root, rel)
    try:
        with os.fdopen(fd, "rb", closefd=True) as fh:
            fd = -1
            data = fh.read(int(info["size"]) + 1)
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) != info["size"]:
        raise BundleError(f"{root}: {rel}: size {len(data)} != manifest {info['size']} (truncated or replaced)")
    digest = hashlib.sha256(data).hexdigest()
    if digest != info["sha256"]:
        raise BundleError(f"{root}: {rel}: sha256 {digest[:12]}... != manifest {info['sha256'][:12]}... (modified)")
    return data


def verified_path(bundle: str | Path, rel: str, manifest: dict[str, Any] | None = None) -> Path:
    """``root/rel`` after re-checking it (no symlink, size, sha256) right now: for loaders that only
    take a path (llama.cpp's GGUF). Prefer `read_verified`."""
    root = Path(bundle)
    m = read_manifest(root) if manifest is None else manifest
    info = m["files"].get(rel)
    if info is None:
        raise BundleError(f"{root}: {rel!r} is not listed in the manifest's files")
    fd = _open_nofollow(root, rel)
    h = hashlib.sha256()
    n = 0
    with os.fdopen(fd, "rb") as fh:
        while True:
            b = fh.read(1 << 22)
            if not b:
                break
            n += len(b)
            h.update(b)
    if n != info["size"] or h.hexdigest() != info["sha256"]:
        raise BundleError(f"{root}: {rel}: changed since the manifest was written (size {n}, sha256 "
                          f"{h.hexdigest()[:12]}...)")
    return root / rel


def manifest_paths(manifest_path: str | Path) -> list[tuple[str, str]]:
    """(key path, bundle path) of every path a bundle's manifest names (for reports and tests)."""
    root = Path(manifest_path)
    _, paths = _read_manifest(root if root.is_dir() else root.parent, HISTORY_LIMITS)
    return paths


__all__ = ["MANIFEST", "SIGNATURE_FILE", "SCHEMA_VERSION", "PARTIAL_MARKER", "DEFAULT_FAMILY", "FREE_FORM",
           "BundleError", "ManifestError", "MANIFEST_SCHEMA", "FAMILY_SCHEMAS", "register_manifest_schema",
           "sha256_file", "strict_json_loads", "canonical_manifest_bytes",
           "bundle_family", "read_manifest", "verify_bundle", "read_verified", "verified_path", "manifest_paths"]
