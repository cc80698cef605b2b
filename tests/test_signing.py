"""Bundle signatures (runtime/core/signing.py, export/signing.py): ed25519 over the canonical manifest.

Run: ``.venv/bin/python -m pytest -q tests/test_signing.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_hardening_bundle import mini_bundle
from umask.export.signing import generate_keypair, sign_bundle
from umask.runtime.core.bundle import MANIFEST, SIGNATURE_FILE
from umask.runtime.core.errors import BundleError, SignatureError
from umask.runtime.core.signing import ENV_TRUSTED_KEYS, verify_bundle

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def keys(tmp_path: Path):
    return generate_keypair(tmp_path / "keys", "release"), generate_keypair(tmp_path / "other", "other")


def test_signed_bundle_verifies_with_its_key_only(tmp_path: Path, keys, monkeypatch) -> None:
    (priv, pub), (priv2, pub2) = keys
    b = mini_bundle(tmp_path / "b")
    sign_bundle(b, priv)
    assert verify_bundle(b, trusted_keys=[pub])["schema_version"] == 1
    assert verify_bundle(b, trusted_keys=pub.parent)["schema_version"] == 1        # a keys folder
    monkeypatch.setenv(ENV_TRUSTED_KEYS, str(pub))
    assert verify_bundle(b)["schema_version"] == 1                                  # from the environment
    with pytest.raises(SignatureError, match="not trusted"):
        verify_bundle(b, trusted_keys=[pub2])
    monkeypatch.delenv(ENV_TRUSTED_KEYS)
    with pytest.raises(SignatureError, match="no trusted key is configured"):
        verify_bundle(b)
    # re-signed by another key: refused by the first key's holders, even with allow_unsigned
    sign_bundle(b, priv2)
    with pytest.raises(SignatureError, match="not trusted"):
        verify_bundle(b, trusted_keys=[pub], allow_unsigned=True)


def test_unsigned_is_refused_unless_the_caller_opts_out(tmp_path: Path, keys) -> None:
    (_, pub), _ = keys
    b = mini_bundle(tmp_path / "b")
    with pytest.raises(SignatureError, match="unsigned bundle"):
        verify_bundle(b, trusted_keys=[pub])
    assert verify_bundle(b, trusted_keys=[pub], allow_unsigned=True)["schema_version"] == 1
    assert SignatureError.exit_code != BundleError.exit_code and issubclass(SignatureError, BundleError)


def test_manifest_edit_after_signing_is_refused(tmp_path: Path, keys) -> None:
    (priv, pub), _ = keys
    b = mini_bundle(tmp_path / "b")
    sign_bundle(b, priv)
    m = json.loads((b / MANIFEST).read_text())
    m["model"]["cond_dim"] = 33                      # schema-valid, integrity-valid, not what was signed
    (b / MANIFEST).write_text(json.dumps(m, indent=3))
    with pytest.raises(SignatureError, match="does not match the manifest"):
        verify_bundle(b, trusted_keys=[pub])
    m["model"]["cond_dim"] = 32                      # same content, other formatting: the canonical bytes agree
    (b / MANIFEST).write_text(json.dumps(m, indent=3))
    assert verify_bundle(b, trusted_keys=[pub])["model"]["cond_dim"] == 32


def test_malformed_signature_files(tmp_path: Path, keys) -> None:
    (priv, pub), _ = keys
    b = mini_bundle(tmp_path / "b")
    sign_bundle(b, priv)
    sig = json.loads((b / SIGNATURE_FILE).read_text())
    for bad, match in [({**sig, "algorithm": "rsa"}, "algorithm"), ({**sig, "signature": "!!"}, "base64"),
                       ({**sig, "extra": 1}, "exactly the keys"), ({**sig, "signature": "AAAA"}, "64 bytes")]:
        (b / SIGNATURE_FILE).write_text(json.dumps(bad))
        with pytest.raises(SignatureError, match=match):
            verify_bundle(b, trusted_keys=[pub])


def test_tampered_bundle_is_never_signed(tmp_path: Path, keys) -> None:
    (priv, _), _ = keys
    b = mini_bundle(tmp_path / "b")
    (b / "onnx/fp32/dit.onnx").write_bytes(b"tampered")
    with pytest.raises(BundleError, match="truncated or replaced"):
        sign_bundle(b, priv)
    assert not (b / SIGNATURE_FILE).exists()


def test_cli_keygen_and_sign(tmp_path: Path) -> None:
    b = mini_bundle(tmp_path / "b")
    run = [sys.executable, "-m", "umask.export.signing"]
    r = subprocess.run(run + ["keygen", "--out", str(tmp_path / "k")], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(run + ["sign", "--bundle", str(b), "--key", str(tmp_path / "k/umask.key")], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert verify_bundle(b, trusted_keys=[tmp_path / "k/umask.pub"])["schema_version"] == 1
    r = subprocess.run(run + ["keygen", "--out", str(tmp_path / "k")], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 3 and "refusing to overwrite" in r.stderr      # InputError.exit_code
