"""Session hardening (the hardening issue): signed bundles only, verified loading, request bounds, typed errors,
range-checked JSON outputs. Each finding of the issue has a test here that failed on the code before the fix.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_hardening_session.py``
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from export_fixtures import edited_bundle, real_user, signing_test_key, tiny_bundle
from umask.runtime.core.bundle import SIGNATURE_FILE, read_verified
from umask.runtime.core.errors import BundleError, InputError, LimitError, ManifestError, SignatureError
from umask.runtime.core.events import EventLog
from umask.runtime.core.limits import REQUEST_LIMITS
from umask.runtime.engines.backends import NetworkBackend, OrtBackend
from umask.runtime.families.umask.session import Session, bundle_networks
from umask.runtime.session import Session as AnySession


@pytest.fixture(scope="module")
def session() -> Session:
    return Session.open(tiny_bundle()[1])


class Tamper(NetworkBackend):
    """The bundle's onnxruntime networks, with the DiT's output replaced by ``dit(x0)``."""

    name = "tamper"

    def __init__(self, inner: OrtBackend, dit) -> None:  # noqa: ANN001
        self.inner, self.dit = inner, dit

    def nets(self) -> tuple[str, ...]:
        return self.inner.nets()

    def run(self, net: str, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        out = self.inner.run(net, feeds)
        return [self.dit(out[0])] if net == "dit" else out


def _tampered(dit) -> Session:  # noqa: ANN001
    b = tiny_bundle()[1]
    ref = Session.open(b)
    return Session.open(b, backend=Tamper(OrtBackend(bundle_networks(b, ref.manifest, "fp32")), dit))


# ------------------------------------------------------------------------------------------ signatures
def test_unsigned_and_foreign_signed_bundles_are_refused(tmp_path: Path) -> None:
    from umask.export.signing import generate_keypair, sign_bundle

    unsigned = edited_bundle(tmp_path / "unsigned", sign=False)
    with pytest.raises(SignatureError, match="unsigned bundle"):
        Session.open(unsigned)
    with pytest.raises(SignatureError, match="unsigned bundle"):
        AnySession.open(unsigned)                                # the family dispatch too
    assert Session.open(unsigned, allow_unsigned=True).predict_short(real_user(), steps=2)["slots"]
    # re-signed by someone else: refused, even with allow_unsigned (a present signature is always checked)
    other, _ = generate_keypair(tmp_path / "keys", "mallory")
    foreign = edited_bundle(tmp_path / "foreign", sign=False)
    sign_bundle(foreign, other)
    for kw in ({}, {"allow_unsigned": True}):
        with pytest.raises(SignatureError, match="not trusted"):
            Session.open(foreign, **kw)
    # trusted only through the argument: the environment's key is then not consulted
    with pytest.raises(SignatureError, match="not trusted"):
        Session.open(tiny_bundle()[1], trusted_keys=[tmp_path / "keys" / "mallory.pub"])
    assert Session.open(tiny_bundle()[1], trusted_keys=[signing_test_key()[1]]).family == "umask"


def test_a_bundle_loading_an_unlisted_file_cannot_be_built_by_editing_the_manifest(tmp_path: Path) -> None:
    evil = tiny_bundle()[1] / "onnx/fp32/profile_mlp.onnx"

    def point_dit_at_evil(m: dict) -> None:
        m["artifacts"]["fp32"]["dit"]["file"] = "onnx/fp32/evil.onnx"

    # 1. the manifest names a file it does not list: schema refusal, whatever the signature
    with pytest.raises(ManifestError, match="not listed in files"):
        Session.open(edited_bundle(tmp_path / "a", manifest_edit=point_dit_at_evil))
    # 2. the file is planted but not listed: refused as an unexpected file
    b = edited_bundle(tmp_path / "b")
    (b / "onnx/fp32/evil.onnx").write_bytes(evil.read_bytes())
    with pytest.raises(BundleError, match="not listed in the manifest"):
        Session.open(b)
    # 3. planted AND listed (so the file set, sizes and hashes agree): the old signature no longer matches
    c = edited_bundle(tmp_path / "c", sign=False, manifest_edit=point_dit_at_evil,
                      add_files={"onnx/fp32/evil.onnx": evil.read_bytes()})
    (c / SIGNATURE_FILE).write_bytes((tiny_bundle()[1] / SIGNATURE_FILE).read_bytes())
    with pytest.raises(SignatureError, match="does not match the manifest"):
        Session.open(c)
    # 4. symlinked into the bundle: refused
    d = edited_bundle(tmp_path / "d")
    (d / "catalog/llmapp_app.csv").unlink()
    (d / "catalog/llmapp_app.csv").symlink_to(tiny_bundle()[1] / "catalog/llmapp_app.csv")
    with pytest.raises(BundleError, match="symlink"):
        Session.open(d)


def test_every_file_is_loaded_from_verified_bytes(monkeypatch) -> None:
    import umask.runtime.engines.ort as ort_engine
    import umask.runtime.families.umask.session as sess_mod

    b = tiny_bundle()[1]
    models: list[type] = []
    real = ort_engine.inference_session
    monkeypatch.setattr(ort_engine, "inference_session", lambda m, *a, **k: models.append(type(m)) or real(m, *a, **k))
    reads: list[str] = []
    monkeypatch.setattr(sess_mod, "read_verified", lambda root, rel, m=None: reads.append(rel) or read_verified(root, rel, m))
    s = Session.open(b, precision="int8-qdq")
    assert models == [bytes] * 4                                   # dit, profile_mlp, maskgen, sbert
    m = s.manifest
    assert set(reads) == {m["artifacts"]["int8-qdq"]["dit"]["file"], m["artifacts"]["int8-qdq"]["profile_mlp"]["file"],
                          "onnx/fp32/maskgen.onnx", m["sbert"]["file"], m["sbert"]["tokenizer"],
                          *m["featurization"]["catalog"]["files"]}


def test_io_signature_is_checked_at_open(tmp_path: Path) -> None:
    def retype(m: dict) -> None:
        m["artifacts"]["fp32"]["dit"]["inputs"][3]["dtype"] = "float32"       # t is int64 in the graph

    with pytest.raises(BundleError, match=r"dit input 't' is int64, manifest float32"):
        Session.open(edited_bundle(tmp_path / "a", manifest_edit=retype))

    def rename(m: dict) -> None:
        m["artifacts"]["fp32"]["profile_mlp"]["outputs"][0]["name"] = "h"

    with pytest.raises(BundleError, match=r"profile_mlp outputs \['h_u'\] differ"):
        Session.open(edited_bundle(tmp_path / "b", manifest_edit=rename))


# ------------------------------------------------------------------------------------------ manifest values
def test_missing_sbert_section_is_refused_not_silently_profile_free(tmp_path: Path) -> None:
    b = edited_bundle(tmp_path / "b", manifest_edit=lambda m: m.pop("sbert"))
    with pytest.raises(ManifestError, match="no 'sbert' section"):
        Session.open(b)


@pytest.mark.parametrize("bad", [-10.0, 0.0, 1e-9])
def test_non_positive_x_scale_is_refused(tmp_path: Path, bad: float) -> None:
    def edit(m: dict) -> None:
        m["model"]["x_scale"][3] = bad

    with pytest.raises(ManifestError, match=r"model.x_scale\[3\]"):
        Session.open(edited_bundle(tmp_path / "b", manifest_edit=edit))


# ------------------------------------------------------------------------------------------ request bounds
def test_threads_beyond_the_limit_fail_fast() -> None:
    t = time.perf_counter()
    with pytest.raises(LimitError, match=r"threads=100000 is above the limit"):
        Session.open(tiny_bundle()[1], threads=100000)
    with pytest.raises(InputError, match="threads must be a positive integer"):
        Session.open(tiny_bundle()[1], threads=0)
    assert time.perf_counter() - t < 30


def test_steps_times_samples_is_bounded(session: Session) -> None:
    ev = real_user()
    with pytest.raises(LimitError, match="steps=1000 is above"):
        session.complete(ev, "short_term", steps=1000, n_samples=64)
    with pytest.raises(LimitError, match="n_samples=64 is above"):
        session.complete(ev, "short_term", steps=2, n_samples=64)
    lim = REQUEST_LIMITS
    steps = min(lim.max_steps, session.schedule.num_train_steps)
    n = lim.max_denoiser_calls // steps + 1
    if n <= lim.max_samples:
        with pytest.raises(LimitError, match="max_denoiser_calls"):
            session.complete(ev, "short_term", steps=steps, n_samples=n)


def test_embedding_cache_is_bounded(tmp_path: Path) -> None:
    s = Session.open(tiny_bundle()[1], limits=replace(REQUEST_LIMITS, max_cache_entries=3))
    embs = [s.sbert([f"profile text number {i}"])[0] for i in range(6)]
    assert len(s._emb_cache) == 3 and list(s._emb_cache) == [f"profile text number {i}" for i in (3, 4, 5)]
    assert np.array_equal(s.sbert(["profile text number 0"])[0], embs[0])   # recomputed, same embedding
    with pytest.raises(LimitError, match="max_cache_entries"):
        s.sbert(["x"] * 4)


@pytest.mark.parametrize("text", [b"bytes text", 42, ["a", "b"], "lone \ud800 surrogate", "", "   ",
                                  "x" * (REQUEST_LIMITS.max_text_chars + 1)])
def test_bad_profile_text_is_an_input_error(session: Session, text) -> None:  # noqa: ANN001
    ev = real_user()
    for call in (lambda: session.embed(ev, text=text), lambda: session.profile(ev, text=text),
                 lambda: session.predict_short(ev, text=text, steps=1), lambda: session.sbert([text])):
        with pytest.raises(InputError, match="text"):
            call()


def test_now_far_in_range_and_out_of_range(session: Session) -> None:
    ev = real_user()
    with pytest.raises(InputError, match="now_ts"):
        session.predict_short(ev, now_ts=2**63, steps=1)
    years = int(ev.ts.max()) + 3 * 365 * 86400
    with pytest.raises(InputError, match=r"days\) after the history's last event"):
        session.predict_short(ev, now_ts=years, steps=1)
    lim = session.limits.max_idle_hours * 3600
    ss = session.fcfg.slot_seconds
    too_far = (int(ev.ts.max()) + lim) // ss * ss + 2 * ss
    with pytest.raises(InputError, match="max_idle_hours"):
        session.predict_short(ev, now_ts=too_far, steps=1)
    # within the bound (a night without the phone): served
    ok = (int(ev.ts.max()) + lim) // ss * ss - ss
    assert session.predict_short(ev, now_ts=ok, steps=1)["slots"]


def test_request_options_are_typed(session: Session) -> None:
    ev = real_user()
    for kw in ({"steps": "2"}, {"steps": 2.0}, {"n_samples": True}, {"sampler": 3}, {"seed": 2**64},
               {"now_ts": "20160420"}, {"missing": [[True]]}):
        with pytest.raises(InputError):
            session.complete(ev, "imputation", **kw)
    with pytest.raises(InputError, match="unknown request options"):
        session.run(ev, "short", stepz=2)
    for hist in (b"events.csv", 12, None, "no\x00file", "x" * 5000, Path("/")):
        with pytest.raises(InputError):
            session.predict_short(hist, steps=1)
    with pytest.raises(InputError):
        session.window(ev, ["short_term"])
    assert isinstance(ev, EventLog)


# ------------------------------------------------------------------------------------------ outputs, engines
def test_large_finite_network_output_gives_valid_json() -> None:
    s = _tampered(lambda x0: np.full_like(x0, 1e30))
    ev = real_user()
    for out in (s.predict_short(ev, steps=2), s.forecast_long(ev, steps=2), s.recommend(ev, steps=2),
                s.impute(ev, steps=2), s.run(ev, "long", steps=2)):
        text = json.dumps(out, allow_nan=False, default=float)        # raised "Out of range float" before
        assert "Infinity" not in text
    out = s.predict_short(ev, steps=2)
    n_cells = s.fcfg.H * s.fcfg.W
    assert max(out["traffic_bytes"]) <= REQUEST_LIMITS.max_traffic_bytes_per_slot * n_cells * 1.0001
    assert all(a["expected_records"] <= REQUEST_LIMITS.max_app_records_per_slot * n_cells * len(out["slots"]) * 1.0001
               for a in out["apps"])


def test_nan_from_the_network_is_a_bundle_error() -> None:
    s = _tampered(lambda x0: np.full_like(x0, np.nan))
    with pytest.raises(BundleError, match="NaN"):
        s.predict_short(real_user(), steps=2)


def test_onnxruntime_exceptions_become_bundle_errors(session: Session) -> None:
    with pytest.raises(BundleError, match="dit network failed on this input"):
        session.backend.run("dit", {"x_t": np.zeros((1, 2), np.float32)})
    with pytest.raises(BundleError, match="cannot load the dit network"):
        OrtBackend({"dit": b"not an onnx model"})
    s = Session.open(tiny_bundle()[1])
    s.close()
    with pytest.raises(BundleError, match="closed"):
        s.predict_short(real_user(), steps=1)


def test_bounds_are_in_the_run_help(capsys) -> None:
    from umask.cli import main

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for name in REQUEST_LIMITS.DOCS:
        assert name in out
    assert str(REQUEST_LIMITS.max_steps) in out and "--allow-unsigned" in out and "--trusted-keys" in out
