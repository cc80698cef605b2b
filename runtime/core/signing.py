"""Bundle signatures: ed25519 (the ``cryptography`` package) over the canonical manifest bytes.

The signature file ``manifest.sig`` (JSON) sits next to ``manifest.json``::

    {"format": "umask-bundle-signature", "version": 1, "algorithm": "ed25519",
     "key_id": "<16 hex: sha256 of the raw public key>", "signature": "<base64 of 64 bytes>"}

It signs `canonical_manifest_bytes(manifest)` (sorted keys, no whitespace, ASCII). The manifest
lists every file with its sha256, so the signature covers the whole bundle; `verify_bundle`
checks the signature AND the integrity (`umask.runtime.core.bundle.verify_bundle`).

Trusted public keys (PEM SubjectPublicKeyInfo files, ``*.pub`` / ``*.pem`` in a keys folder), from,
in this order: the ``trusted_keys`` argument (key objects, PEM bytes, files or folders), else the
environment variable ``UMASK_TRUSTED_KEYS`` (files or folders separated by ``os.pathsep``). An
unsigned bundle, one signed by a key not in that set or a bad signature raises `SignatureError`
unless the caller passes ``allow_unsigned=True`` (then an unsigned bundle loads with a warning;
a present but invalid signature is still refused). Keys and signatures are made by
``python -m umask.export.signing keygen|sign`` (export/signing.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Union

from umask.runtime.core.bundle import (MANIFEST, SIGNATURE_FILE, canonical_manifest_bytes, strict_json_loads,
                                       verify_bundle as verify_integrity)
from umask.runtime.core.errors import SignatureError

log = logging.getLogger(__name__)

ENV_TRUSTED_KEYS = "UMASK_TRUSTED_KEYS"
SIG_FORMAT = "umask-bundle-signature"
SIG_VERSION = 1
KEY_SUFFIXES = (".pub", ".pem")

KeySpec = Union[str, Path, bytes, Any]   # a file / folder path, PEM bytes, or an Ed25519PublicKey


def key_id(public_key: Any) -> str:
    """16 hex digits of sha256 over the raw 32-byte public key."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(data: bytes, origin: str = "<bytes>") -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        k = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise SignatureError(f"{origin}: not a PEM public key ({e})") from None
    if not isinstance(k, Ed25519PublicKey):
        raise SignatureError(f"{origin}: not an ed25519 public key ({type(k).__name__})")
    return k


def _keys_from(spec: KeySpec) -> list[Any]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if isinstance(spec, Ed25519PublicKey):
        return [spec]
    if isinstance(spec, bytes):
        return [load_public_key(spec)]
    p = Path(spec)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix in KEY_SUFFIXES and f.is_file())
        return [load_public_key(f.read_bytes(), str(f)) for f in files]
    if p.is_file():
        return [load_public_key(p.read_bytes(), str(p))]
    raise SignatureError(f"trusted key {spec!s}: no such file or folder")


def trusted_keys_from(trusted_keys: Iterable[KeySpec] | KeySpec | None = None) -> dict[str, Any]:
    """{key_id: public key} of ``trusted_keys`` (else of ``$UMASK_TRUSTED_KEYS``; else empty)."""
    if trusted_keys is None:
        env = os.environ.get(ENV_TRUSTED_KEYS, "")
        specs: list[KeySpec] = [s for s in env.split(os.pathsep) if s.strip()]
    elif isinstance(trusted_keys, (str, Path, bytes)) or not isinstance(trusted_keys, Iterable):
        specs = [trusted_keys]
    else:
        specs = list(trusted_keys)
    keys: dict[str, Any] = {}
    for s in specs:
        for k in _keys_from(s):
            keys[key_id(k)] = k
    return keys


def read_signature(bundle: str | Path) -> dict[str, Any] | None:
    """The parsed ``manifest.sig`` (None when the bundle has none); malformed -> `SignatureError`."""
    p = Path(bundle) / SIGNATURE_FILE
    if not os.path.lexists(p):
        return None
    if p.is_symlink() or not p.is_file():
        raise SignatureError(f"{p}: not a regular file")
    raw = p.read_bytes()[:65537]
    try:
        sig = strict_json_loads(raw.decode("utf-8"), max_depth=2)
    except (UnicodeDecodeError, ValueError) as e:
        raise SignatureError(f"{p}: unreadable signature file ({e})") from None
    want = {"format": SIG_FORMAT, "version": SIG_VERSION, "algorithm": "ed25519"}
    if type(sig) is not dict or set(sig) != set(want) | {"key_id", "signature"}:
        raise SignatureError(f"{p}: want exactly the keys {sorted(set(want) | {'key_id', 'signature'})}")
    for k, v in want.items():
        if sig[k] != v or type(sig[k]) is not type(v):
            raise SignatureError(f"{p}: {k} is {sig[k]!r}, want {v!r}")
    if type(sig["key_id"]) is not str or type(sig["signature"]) is not str:
        raise SignatureError(f"{p}: key_id and signature must be strings")
    try:
        sig["signature_bytes"] = base64.b64decode(sig["signature"], validate=True)
    except (binascii.Error, ValueError) as e:
        raise SignatureError(f"{p}: signature is not base64 ({e})") from None
    if len(sig["signature_bytes"]) != 64:
        raise SignatureError(f"{p}: an ed25519 signature has 64 bytes, got {len(sig['signature_bytes'])}")
    return sig


def check_signature(manifest: dict[str, Any], sig: dict[str, Any], keys: dict[str, Any], origin: str) -> str:
    """The key id that signed ``manifest``; raises `SignatureError` otherwise."""
    from cryptography.exceptions import InvalidSignature

    k = keys.get(sig["key_id"])
    if k is None:
        raise SignatureError(f"{origin}: signed by key {sig['key_id']}, which is not trusted "
                             f"(trusted: {sorted(keys) or 'none'}; see {ENV_TRUSTED_KEYS})")
    try:
        k.verify(sig["signature_bytes"], canonical_manifest_bytes(manifest))
    except InvalidSignature:
        raise SignatureError(f"{origin}: the signature does not match the manifest (modified after signing, "
                             f"or not made by key {sig['key_id']})") from None
    return sig["key_id"]


def verify_bundle(bundle: str | Path, *, trusted_keys: Iterable[KeySpec] | KeySpec | None = None,
                  allow_unsigned: bool = False, checksums: bool = True) -> dict[str, Any]:
    """Integrity (`umask.runtime.core.bundle.verify_bundle`) + signature by a trusted key.

    Returns the manifest; sets nothing in it. ``allow_unsigned=True`` is the caller's explicit
    opt-out for bundles without ``manifest.sig`` (logged); a signature that is present is always
    checked, so a bundle signed by another key or tampered after signing is refused anyway."""
    root = Path(bundle)
    manifest = verify_integrity(root, checksums=checksums)
    sig = read_signature(root)
    if sig is None:
        if allow_unsigned:
            log.warning("%s: unsigned bundle loaded (allow_unsigned=True)", root)
            return manifest
        raise SignatureError(f"{root}: unsigned bundle (no {SIGNATURE_FILE}); sign it with `python -m "
                             f"umask.export.signing sign --bundle {root} --key KEY` (or export with --sign-key KEY), "
                             "or opt out with --allow-unsigned (allow_unsigned=True in Python)")
    keys = trusted_keys_from(trusted_keys)
    if not keys:
        raise SignatureError(f"{root}: signed, but no trusted key is configured (--trusted-keys PUB, trusted_keys= "
                             f"in Python, or ${ENV_TRUSTED_KEYS})")
    check_signature(manifest, sig, keys, str(root / MANIFEST))
    return manifest


def add_key_options(p: Any) -> None:
    """The command-line flags of :func:`verify_bundle`'s two key settings, on an ``argparse`` parser (every
    command that opens a bundle: ``umask run`` / ``verify`` for every family)."""
    p.add_argument("--trusted-keys", action="append", default=None, metavar="PATH",
                   help=f"a public key file (.pub / .pem) or a folder of them; repeatable (default: ${ENV_TRUSTED_KEYS})")
    p.add_argument("--allow-unsigned", action="store_true",
                   help="accept a bundle without manifest.sig (a signature that is present is always checked)")


__all__ = ["ENV_TRUSTED_KEYS", "add_key_options", "SIG_FORMAT", "SIG_VERSION", "SignatureError", "key_id", "load_public_key",
           "trusted_keys_from", "read_signature", "check_signature", "verify_bundle"]
