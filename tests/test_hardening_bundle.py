"""Bundle verification covers what the loader reads (runtime/core/bundle.py): strict schema, listed and
contained paths, the exact file set, no symlinks, one verified read path (read once, hash, return).

``mini_bundle`` builds a small schema-valid bundle from plain files (verification never parses ONNX),
so these tests need no export; the last test opens the real tiny export with `read_verified` bytes.
Run: ``.venv/bin/python -m pytest -q tests/test_hardening_bundle.py``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from umask.runtime.core.bundle import (MANIFEST, bundle_family, manifest_paths, read_manifest, read_verified,
                                       verified_path, verify_bundle)
from umask.runtime.core.errors import BundleError, ManifestError

DATA = Path(__file__).resolve().parents[1] / "data" / "tsinghua_app_usage"

FILES = {"onnx/fp32/dit.onnx": b"dit-bytes" * 100, "onnx/fp32/maskgen.onnx": b"maskgen" * 50,
         "onnx/fp32/profile_mlp.onnx": b"mlp" * 70, "onnx/fp32/sbert.onnx": b"sbert" * 90,
         "tokenizer/tokenizer.json": b'{"version": "1.0"}', "catalog/llmapp_app.csv": (DATA / "llmapp_app.csv").read_bytes(),
         "catalog/llmapp_category.csv": (DATA / "llmapp_category.csv").read_bytes(),
         "catalog/llmapp_location.csv.gz": (DATA / "llmapp_location.csv.gz").read_bytes()}


def base_manifest() -> dict[str, Any]:
    """A schema-1 manifest shaped like the exporter's (export/families/umask/exporter.py)."""
    art = {net: {"file": f"onnx/fp32/{net}.onnx", "status": "ok", "parity": {"max_abs_diff": 1e-7},
                 "tolerance": {"rel_max": 1e-4}, "inputs": [{"name": "x", "shape": ["batch", 4], "dtype": "float32"}],
                 "outputs": [], "opset": 18} for net in ("dit", "maskgen", "profile_mlp")}
    return {
        "schema_version": 1, "created_utc": "2026-01-01T00:00:00+00:00",
        "checkpoint": {"path": "/x", "step": 1, "ema": True, "training_data": None},
        "model": {"umask": {"name": "tiny"}, "dit": {"channels": 22}, "maskgen": {"T": 16, "H": 4, "W": 4, "tau": 0.5},
                  "x_scale": [10.0] * 22, "tasks": ["short_term"], "mask_mode": "learned", "use_profile": True,
                  "rho_init": [0.5, 0.5, 0.9, 0.25], "cond_dim": 32, "sbert_dim": 384, "profile_source_trained": "template"},
        "featurization": {"feature_config": {"slot_minutes": 15, "H": 4, "W": 4, "cell_m": 500.0,
                                             "session_gap_minutes": 30.0},
                          "slot_seconds": 900, "window": {"context": 12, "horizon": 4, "short_horizon": 2,
                                                          "cold_max_active": 4},
                          "channels": {"n_categories": 20, "n_channels": 22, "names": ["traffic"]},
                          "tessellation": {"kind": "anchor"}, "scales": {"traffic": "log1p"},
                          "catalog": {"id_space": "llmapp", "loader": "load_llmapp_catalog",
                                      "files": ["catalog/llmapp_app.csv", "catalog/llmapp_category.csv",
                                                "catalog/llmapp_location.csv.gz"]},
                          "events_csv": "time,app_id,base_id,bytes", "profile_template_version": 1},
        "diffusion": {"num_train_steps": 1000, "schedule": "cosine", "alphas_cumprod": [0.99, 0.5, 0.01],
                      "prediction": "x0", "clamp": "eq. 35", "defaults": {"sampler": "ddim", "steps": 10, "n_samples": 2}},
        "sbert": {"status": "present", "file": "onnx/fp32/sbert.onnx", "tokenizer": "tokenizer/tokenizer.json",
                  "max_len": 128, "dim": 384, "int8": {"status": "rejected", "parity": {}, "method": "dynamic"}},
        "artifacts": {"fp32": art}, "tolerances": {"fp32": {"rel_max": 1e-4}}, "parity_inputs": {},
        "tensorrt": {"status": "skipped"}, "llm": {"status": "absent", "files": [], "source": None, "note": "none"},
        "versions": {"python": "3.11"}, "export_seconds": 1.5,
    }


def mini_bundle(root: Path, manifest: dict[str, Any] | None = None, files: dict[str, bytes] | None = None,
                *, list_files: bool = True) -> Path:
    """Write ``files`` under ``root`` and a manifest listing them (``list_files``) with their sha256."""
    files = FILES if files is None else files
    m = base_manifest() if manifest is None else manifest
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    if list_files:
        m["files"] = {rel: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for rel, d in sorted(files.items())}
    (root / MANIFEST).write_text(json.dumps(m), encoding="utf-8")
    return root


def test_mini_bundle_verifies_and_names_every_loaded_path(tmp_path: Path) -> None:
    b = mini_bundle(tmp_path / "b")
    m = verify_bundle(b)
    assert bundle_family(m) == "umask"                         # absent in schema 1 means "umask"
    keys = {k for k, _ in manifest_paths(b)}
    assert {"artifacts.fp32.dit.file", "sbert.file", "sbert.tokenizer", "featurization.catalog.files[0]"} <= keys
    m2 = base_manifest()
    m2["family"] = "umask"
    assert bundle_family(verify_bundle(mini_bundle(tmp_path / "c", m2))) == "umask"


def _expect(tmp_path: Path, mutate, match: str, exc=ManifestError) -> None:
    m = base_manifest()
    mutate(m)
    b = mini_bundle(tmp_path / f"b{abs(hash(match)) % 10**8}", m)
    with pytest.raises(exc, match=match):
        verify_bundle(b)


@pytest.mark.parametrize("mutate,match", [
    (lambda m: m.update(schema_version=True), "schema_version True"),
    (lambda m: m.update(schema_version=1.0), "schema_version 1.0"),
    (lambda m: m.update(schema_version=2), "this runtime reads 1"),
    (lambda m: m.update(surprise=1), "unknown key 'surprise'"),
    (lambda m: m["artifacts"]["fp32"]["dit"].update(exec="rm -rf /"), r"artifacts.fp32.dit: unknown key 'exec'"),
    (lambda m: m["artifacts"]["fp32"]["dit"].update(file="../../etc/passwd"), r"artifacts.fp32.dit.file: path .*leaves"),
    (lambda m: m["artifacts"]["fp32"]["dit"].update(file="/etc/passwd"), r"artifacts.fp32.dit.file: .*absolute"),
    (lambda m: m["sbert"].update(tokenizer="tokenizer/other.json"), r"sbert.tokenizer: .*not listed in files"),
    (lambda m: m["llm"].update(status="present", model="llm/x.gguf", files=["llm/x.gguf"]), r"llm.*not listed in files"),
    (lambda m: m["model"].update(cond_dim="32"), r"model.cond_dim: expected an int, got string"),
    (lambda m: m["model"].update(cond_dim=True), r"model.cond_dim: expected an int, got bool"),
    (lambda m: m["featurization"]["window"].update(context=-1), r"featurization.window.context: -1 out of range"),
    (lambda m: m["diffusion"].update(alphas_cumprod=[0.5, 2.0]), r"alphas_cumprod\[1\]: 2.0 out of range"),
    (lambda m: m.update(family="../x"), r"family: .* does not match"),
    (lambda m: m.pop("model"), "missing key 'model'"),
    (lambda m: m["artifacts"]["fp32"]["dit"].update(file=None), r"artifacts.fp32.dit: status 'ok' without a file"),
])
def test_schema_refusals_name_the_key(tmp_path: Path, mutate, match: str) -> None:
    exc = BundleError if "schema_version" in match or "reads 1" in match else ManifestError
    _expect(tmp_path, mutate, match, exc)


def test_files_entries_are_strict(tmp_path: Path) -> None:
    b = mini_bundle(tmp_path / "b")
    m = json.loads((b / MANIFEST).read_text())
    for mutate, match in [
        (lambda m: m.update(files={}), "files: is empty"),
        (lambda m: m["files"]["onnx/fp32/dit.onnx"].update(size=900.0), r"size.*expected an int, got float"),
        (lambda m: m["files"]["onnx/fp32/dit.onnx"].update(size="900"), r"size.*expected an int, got string"),
        (lambda m: m["files"]["onnx/fp32/dit.onnx"].update(sha256="ABC"), r"sha256.*does not match"),
        (lambda m: m["files"]["onnx/fp32/dit.onnx"].update(mode=0o777), r"unknown key 'mode'"),
        (lambda m: m["files"].update({"../outside": {"sha256": "0" * 64, "size": 1}}), r"'../outside'"),
    ]:
        mm = copy.deepcopy(m)
        mutate(mm)
        (b / MANIFEST).write_text(json.dumps(mm))
        with pytest.raises(ManifestError, match=match):
            verify_bundle(b)


def test_duplicate_keys_nan_and_deep_nesting_are_refused(tmp_path: Path) -> None:
    b = mini_bundle(tmp_path / "b")
    text = (b / MANIFEST).read_text()
    for bad, match in [(text[:-1] + ', "schema_version": 1}', "duplicate key 'schema_version'"),
                       (text.replace('"export_seconds": 1.5', '"export_seconds": NaN'), "NaN is not JSON"),
                       (text.replace('"export_seconds": 1.5', '"export_seconds": 1e999'), "overflows"),
                       ("[" * 100_000 + "]" * 100_000, "nesting deeper"),
                       ('{"schema_version": 1, "x": ' + "1" * 5000 + "}", "unreadable manifest")]:
        (b / MANIFEST).write_text(bad)
        with pytest.raises(ManifestError, match=match):
            verify_bundle(b)


def test_file_set_must_equal_the_listing(tmp_path: Path) -> None:
    b = mini_bundle(tmp_path / "b")
    (b / "onnx/fp32/dit.onnx.data").write_bytes(b"external weights nobody hashed")
    with pytest.raises(BundleError, match=r"dit.onnx.data: not listed in the manifest"):
        verify_bundle(b)


def test_symlinks_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(FILES["onnx/fp32/dit.onnx"])          # same bytes: hashes would match
    b = mini_bundle(tmp_path / "b")
    (b / "onnx/fp32/dit.onnx").unlink()
    os.symlink(outside, b / "onnx/fp32/dit.onnx")
    with pytest.raises(BundleError, match="is a symlink"):
        verify_bundle(b)
    with pytest.raises(BundleError, match="without following links"):
        read_verified(b, "onnx/fp32/dit.onnx", read_manifest(b))
    c = mini_bundle(tmp_path / "c")                             # a symlinked directory
    shutil.move(str(c / "tokenizer"), str(tmp_path / "tok"))
    os.symlink(tmp_path / "tok", c / "tokenizer")
    with pytest.raises(BundleError, match="is a symlink"):
        verify_bundle(c)


def test_read_verified_returns_the_hashed_bytes(tmp_path: Path) -> None:
    b = mini_bundle(tmp_path / "b")
    m = verify_bundle(b)
    assert read_verified(b, "onnx/fp32/dit.onnx", m) == FILES["onnx/fp32/dit.onnx"]
    # swapped after verification (the TOCTOU window of hash-by-path then load-by-path): refused at read
    (b / "onnx/fp32/dit.onnx").write_bytes(b"X" * len(FILES["onnx/fp32/dit.onnx"]))
    with pytest.raises(BundleError, match=r"dit.onnx: sha256 .* \(modified\)"):
        read_verified(b, "onnx/fp32/dit.onnx", m)
    with pytest.raises(BundleError, match="changed since"):
        verified_path(b, "onnx/fp32/dit.onnx", m)
    with pytest.raises(BundleError, match="not listed"):
        read_verified(b, "onnx/fp32/evil.onnx", m)
    with pytest.raises(BundleError, match="leaves the bundle|'..'"):
        _ = m["files"].setdefault("../x", {"sha256": "0" * 64, "size": 1}) and read_verified(b, "../x", m)


def test_onnxruntime_loads_verified_bytes_of_the_real_export() -> None:
    pytest.importorskip("torch")
    import onnxruntime as ort
    from export_fixtures import tiny_bundle

    _, bundle = tiny_bundle()
    m = verify_bundle(bundle)
    rel = m["artifacts"]["fp32"]["profile_mlp"]["file"]
    s = ort.InferenceSession(read_verified(bundle, rel, m), providers=["CPUExecutionProvider"])
    assert [i.name for i in s.get_inputs()] == [i["name"] for i in m["artifacts"]["fp32"]["profile_mlp"]["inputs"]]


def test_other_families_get_the_envelope_check(tmp_path: Path) -> None:
    files = {"net.onnx": b"toy"}
    toy = {"schema_version": 1, "family": "toy", "model": {"anything": [1, 2]}}
    b = mini_bundle(tmp_path / "toy", toy, files)
    assert bundle_family(verify_bundle(b)) == "toy"              # unregistered sections: free-form
    (b / "stray.bin").write_bytes(b"x")
    with pytest.raises(BundleError, match="stray.bin: not listed"):
        verify_bundle(b)                                          # the envelope still holds
    bad = mini_bundle(tmp_path / "bad", {"schema_version": 1, "family": "Toy!"}, files)
    with pytest.raises(ManifestError, match="family"):
        verify_bundle(bad)
