"""One house for the model families: registries, family dispatch, pluggable network backends, the generic bundle writer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export_fixtures import edited_bundle, real_user, tiny_bundle
from umask.runtime.core.bundle import MANIFEST, PARTIAL_MARKER, BundleError, sha256_file, verify_bundle
from umask.runtime.core.errors import InputError
from umask.runtime.engines.backends import NetworkBackend, OrtBackend
from umask.runtime.engines.ort import CPU, resolve_providers
from umask.runtime.families import FAMILIES, session_class
from umask.runtime.session import FamilySession, Session


def _with_manifest(src: Path, dst: Path, edit) -> Path:  # noqa: ANN001
    """``src`` (the tiny bundle) with its manifest edited and re-signed by the test key: the family key
    is what is tested, not the signature (an edit without re-signing is refused, see test_signing)."""
    assert src == tiny_bundle()[1]
    return edited_bundle(dst, manifest_edit=edit)


def test_registries_resolve_to_their_family() -> None:
    from umask.export.families import EXPORTERS, exporter
    from umask.train.models import MODELS, trainer_main

    assert set(FAMILIES) == set(EXPORTERS) == set(MODELS) >= {"umask"}
    for fam in FAMILIES:
        cls = session_class(fam)
        assert issubclass(cls, FamilySession) and cls.family == fam
        assert callable(exporter(fam)) and callable(trainer_main(fam))
    with pytest.raises(KeyError, match="known"):
        exporter("warp_drive")
    with pytest.raises(KeyError, match="known"):
        trainer_main("warp_drive")


def test_dispatch_by_manifest_family(tmp_path: Path) -> None:
    _, b = tiny_bundle()
    m = verify_bundle(b)
    assert m["family"] == "umask" and m["schema_version"] == 1
    with Session.open(b, precision="fp32") as s:
        assert type(s) is session_class("umask") and s.family == "umask"
        d = s.describe()
        assert d["family"] == "umask" and d["precision"] == "fp32" and d["backend"] == "onnxruntime"
        assert s.predict_short(real_user())["traffic_bytes"]
    with pytest.raises(RuntimeError, match="closed"):  # closed: the backend runs nothing any more
        s.predict_short(real_user())
    # a schema-1 manifest without the key is a U-MASK bundle
    old = _with_manifest(b, tmp_path / "old", lambda m: m.pop("family"))
    assert Session.open(old).family == "umask"
    # an unknown family names the manifest key
    odd = _with_manifest(b, tmp_path / "odd", lambda m: m.update(family="warp_drive"))
    with pytest.raises(BundleError, match=r"manifest key 'family' = 'warp_drive'.*known: \[") as ei:
        Session.open(odd)
    assert all(repr(f) in str(ei.value) for f in FAMILIES)         # every registered family is named


class Recording(NetworkBackend):
    """Runs an inner backend and counts the calls per network."""

    name = "recording"

    def __init__(self, inner: NetworkBackend) -> None:
        self.inner, self.calls = inner, {}

    def nets(self) -> tuple[str, ...]:
        return self.inner.nets()

    def run(self, net, feeds):  # noqa: ANN001, ANN201
        self.calls[net] = self.calls.get(net, 0) + 1
        return self.inner.run(net, feeds)


def test_the_session_runs_every_network_on_the_given_backend() -> None:
    from umask.runtime.families.umask.session import Session as UMaskSession, bundle_networks

    _, b = tiny_bundle()
    ref = UMaskSession.open(b)
    rec = Recording(OrtBackend(bundle_networks(b, ref.manifest, "fp32")))
    s = UMaskSession.open(b, backend=rec)
    ev = real_user()
    a = s.complete(ev, "short_term", steps=3, n_samples=2, seed=4)
    r = ref.complete(ev, "short_term", steps=3, n_samples=2, seed=4)
    assert np.array_equal(a.x, r.x) and np.array_equal(a.mask, r.mask)
    assert rec.calls["dit"] == 3 * 2 and rec.calls["maskgen"] == 1 and rec.calls["profile_mlp"] == 1
    assert rec.calls.get("sbert", 0) == 1 and s.report()["backend"] == "recording"
    # a backend that lacks a network the bundle needs is refused by name
    part = OrtBackend({"dit": b / "onnx/fp32/dit.onnx"})
    with pytest.raises(InputError, match="maskgen"):
        UMaskSession.open(b, backend=part)


def test_torch_reference_backend_matches_onnxruntime() -> None:
    pytest.importorskip("torch")
    from umask.bench.latency.backends import TorchBackend
    from umask.runtime.families.umask.session import Session as UMaskSession
    from umask.train.models.umask.profile_encoder import SentenceEncoder
    from umask.train.models.umask.trainer import load_model

    ckpt, b = tiny_bundle()
    model = load_model(ckpt, ema=True)[0].eval()
    ts = UMaskSession.open(b, backend=TorchBackend(model, SentenceEncoder()))
    os_ = UMaskSession.open(b)
    ev = real_user()
    t = ts.complete(ev, "short_term", steps=4, n_samples=1, seed=0)
    o = os_.complete(ev, "short_term", steps=4, n_samples=1, seed=0)
    assert np.array_equal(t.mask, o.mask)
    assert float(np.abs(t.x - o.x).max()) < 1e-3                    # same noise, same sampler, fp32 engines
    assert ts.report()["providers"]["dit"] == ["torch:cpu"]


def test_provider_resolution_falls_back_to_cpu() -> None:
    use, missing = resolve_providers(["warp", "cpu"])
    assert use == [CPU] and missing == ["warp"]
    assert resolve_providers(None) == ([CPU], [])


def test_write_bundle_is_atomic_and_lists_every_file(tmp_path: Path) -> None:
    from umask.export.bundle import write_bundle

    def build(tmp: Path) -> dict:
        assert (tmp / PARTIAL_MARKER).is_file()                 # the runtime refuses a half-written bundle
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a.bin").write_bytes(b"abc" * 100)
        return {"model": {"k": 1}, "family": "ignored", "files": {"ignored": 1}}

    out = tmp_path / "b"
    m = write_bundle(out, build, family="toy")
    on_disk = json.loads((out / MANIFEST).read_text())
    assert on_disk == m and m["family"] == "toy" and m["schema_version"] == 1 and m["model"] == {"k": 1}
    assert m["files"] == {"sub/a.bin": {"sha256": sha256_file(out / "sub/a.bin"), "size": 300}}
    assert not (out / PARTIAL_MARKER).exists()

    def boom(tmp: Path) -> dict:
        (tmp / "half.bin").write_bytes(b"x")
        raise KeyboardInterrupt("killed mid-export")

    with pytest.raises(KeyboardInterrupt):
        write_bundle(out, boom, family="toy")
    assert json.loads((out / MANIFEST).read_text()) == m            # the old bundle is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]      # no temp folder left
