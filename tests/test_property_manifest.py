"""Property test: manifest loading (runtime/core/bundle.py) on generated hostile manifests.

Each example mutates a valid manifest (replace / delete / add a key, change a type, plant a path) or
writes raw bytes. `verify_bundle` must either raise one of the project's error types or return a
manifest that satisfies the invariants (schema_version the int 1, every loaded path listed, hashed and
inside the bundle); anything else fails.

CI size: 200 examples. Full size::

    UMASK_PROPERTY_EXAMPLES=2000 .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_property_manifest.py
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from export_fixtures import scratch_dir
from test_hardening_bundle import FILES, mini_bundle
from umask.runtime.core.bundle import MANIFEST, manifest_paths, read_verified, verify_bundle
from umask.runtime.core.errors import UmaskError

EXAMPLES = int(os.environ.get("UMASK_PROPERTY_EXAMPLES", "200"))

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                      st.text(max_size=12), st.sampled_from(["../x", "/etc/passwd", "onnx/fp32/dit.onnx", "a//b",
                                                             "C:\\x", "manifest.json", "tokenizer/tokenizer.json"]))
json_value = st.recursive(json_leaf, lambda c: st.one_of(st.lists(c, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), c, max_size=4)),
                          max_leaves=12)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def mutated(draw, base: dict[str, Any]) -> bytes:
    m = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(m) if p]
        p = draw(st.sampled_from(paths))
        parent = m
        for k in p[:-1]:
            parent = parent[k]
        op = draw(st.sampled_from(["replace", "delete", "add"]))
        if op == "replace":
            parent[p[-1]] = draw(json_value)
        elif op == "delete":
            del parent[p[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(json_value)
        else:
            parent.append(draw(json_value))
    text = json.dumps(m)
    how = draw(st.sampled_from(["json", "json", "json", "cut", "dupkey", "bytes"]))
    if how == "cut":
        return text.encode()[: draw(st.integers(0, len(text)))]
    if how == "dupkey":
        return (text[:-1] + ', "files": {}}').encode()
    if how == "bytes":
        return draw(st.binary(max_size=200))
    return text.encode()


def _run(bundle: Path, raw: bytes) -> None:
    (bundle / MANIFEST).write_bytes(raw)
    try:
        m = verify_bundle(bundle)
    except UmaskError as e:
        event(f"refused: {type(e).__name__}")
        return
    event("accepted")
    assert type(m["schema_version"]) is int and m["schema_version"] == 1
    assert set(m["files"]) == set(FILES)
    for key, rel in manifest_paths(bundle):
        assert rel in m["files"], key
        assert read_verified(bundle, rel, m) == FILES[rel]


_BASE: dict[str, Any] = {}


def _bundle() -> tuple[Path, dict[str, Any]]:
    if not _BASE:
        root = scratch_dir("prop-")
        mini_bundle(root / "b")
        _BASE["root"] = root / "b"
        _BASE["manifest"] = json.loads((root / "b" / MANIFEST).read_text())
    return _BASE["root"], _BASE["manifest"]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_manifest_loading_never_crashes_nor_accepts_invalid(data) -> None:
    root, base = _bundle()
    _run(root, data.draw(mutated(base)))
