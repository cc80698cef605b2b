"""Bundle signing: ed25519 key pairs and ``manifest.sig`` (the ``cryptography`` package; see
runtime/core/signing.py for the format and the verification)::

    python -m umask.export.signing keygen --out keys/ --name release     # keys/release.key (0600) + keys/release.pub
    python -m umask.export.signing sign --bundle artifacts/bundles/small --key keys/release.key
    UMASK_TRUSTED_KEYS=keys/ umask verify artifacts/bundles/small

The private key is PEM PKCS#8, unencrypted unless ``--passphrase-env VAR`` names an environment
variable holding a passphrase. Signing checks the bundle's integrity first (a tampered bundle is
never signed) and writes ``manifest.sig`` atomically.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
from pathlib import Path

from umask.runtime.core.bundle import MANIFEST, SIGNATURE_FILE, canonical_manifest_bytes, verify_bundle
from umask.runtime.core.errors import InputError, SignatureError
from umask.runtime.core.signing import SIG_FORMAT, SIG_VERSION, key_id

log = logging.getLogger(__name__)


def _atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def generate_keypair(out_dir: str | Path, name: str = "umask", *, passphrase: bytes | None = None) -> tuple[Path, Path]:
    """Write ``<name>.key`` (private, mode 0600) and ``<name>.pub`` in ``out_dir``; refuses to overwrite."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    priv_p, pub_p = out / f"{name}.key", out / f"{name}.pub"
    for p in (priv_p, pub_p):
        if p.exists():
            raise InputError(f"{p}: exists; refusing to overwrite a key")
    k = Ed25519PrivateKey.generate()
    enc = (serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption())
    _atomic_write(priv_p, k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc), 0o600)
    _atomic_write(pub_p, k.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    log.info("key %s: %s, %s", key_id(k.public_key()), priv_p, pub_p)
    return priv_p, pub_p


def load_private_key(path: str | Path, passphrase: bytes | None = None):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        k = serialization.load_pem_private_key(Path(path).read_bytes(), password=passphrase)
    except (ValueError, TypeError, OSError) as e:
        raise SignatureError(f"{path}: cannot load the private key ({e})") from None
    if not isinstance(k, Ed25519PrivateKey):
        raise SignatureError(f"{path}: not an ed25519 private key")
    return k


def signature_bytes(manifest: dict, private_key, *, passphrase: bytes | None = None) -> bytes:
    """The ``manifest.sig`` content for ``manifest`` (for an exporter that signs inside its temp dir,
    before the bundle becomes visible: write it next to manifest.json, then drop ``.partial``)."""
    k = private_key if hasattr(private_key, "sign") else load_private_key(private_key, passphrase)
    sig = k.sign(canonical_manifest_bytes(manifest))
    doc = {"format": SIG_FORMAT, "version": SIG_VERSION, "algorithm": "ed25519", "key_id": key_id(k.public_key()),
           "signature": base64.b64encode(sig).decode("ascii")}
    return (json.dumps(doc, indent=1) + "\n").encode("ascii")


def sign_bundle(bundle: str | Path, private_key, *, passphrase: bytes | None = None) -> Path:
    """Verify ``bundle``'s integrity, then write its ``manifest.sig``. ``private_key``: a key file or
    an ``Ed25519PrivateKey``. Returns the signature file's path."""
    root = Path(bundle)
    manifest = verify_bundle(root, checksums=True)
    data = signature_bytes(manifest, private_key, passphrase=passphrase)
    out = root / SIGNATURE_FILE
    _atomic_write(out, data)
    doc = json.loads(data)
    log.info("signed %s/%s with key %s", root, MANIFEST, doc["key_id"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m umask.export.signing", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("keygen", help="write <name>.key and <name>.pub")
    g.add_argument("--out", required=True)
    g.add_argument("--name", default="umask")
    g.add_argument("--passphrase-env", default=None, help="environment variable holding a passphrase")
    s = sub.add_parser("sign", help="write <bundle>/manifest.sig")
    s.add_argument("--bundle", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--passphrase-env", default=None)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    pw = os.environ[a.passphrase_env].encode() if a.passphrase_env else None
    try:
        if a.cmd == "keygen":
            priv, pub = generate_keypair(a.out, a.name, passphrase=pw)
            print(json.dumps({"private": str(priv), "public": str(pub)}))
        else:
            print(json.dumps({"signature": str(sign_bundle(a.bundle, a.key, passphrase=pw))}))
    except Exception as e:  # noqa: BLE001 - typed project errors carry their exit code
        code = getattr(e, "exit_code", None)
        if code is None:
            raise
        print(f"error: {e}", file=sys.stderr)
        return code
    return 0


__all__ = ["generate_keypair", "load_private_key", "signature_bytes", "sign_bundle", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
