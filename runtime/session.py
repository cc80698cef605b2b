"""One entry point for every model family's bundle: ``Session.open(bundle_dir, **kwargs)``.

Reads the manifest's ``family`` (manifests without one are schema-1 U-MASK bundles: "umask") and
opens the family's own torch-free session from `umask.runtime.families.FAMILIES`::

    from umask.runtime.session import Session
    with Session.open("artifacts/bundles/small", precision="int8-qdq") as s:   # a U-MASK Session
        print(s.family, s.describe())

The family session verifies the bundle's signature by a trusted key (``trusted_keys=`` or
``$UMASK_TRUSTED_KEYS``; ``allow_unsigned=True`` is the explicit opt-out) before it loads anything.

``precision="auto"`` (shared, for bundles whose manifest has ``artifacts.<precision>``): the precision
this machine runs fastest, measured once on the bundle's golden inputs and recorded per machine
(`umask.runtime.engines.precision_choice`: int8 only where it is at least 10 % faster than fp32);
the choice and its figures are in ``session.precision_choice``.

``self_test=True`` (shared by every family): once the family session is open, each ONNX file it
loaded runs on its golden inputs (stored and signed in the bundle, runtime/core/golden.py) on the
same providers and threads, and its outputs must match the golden outputs within the precision's
tolerance; otherwise the session is closed and `SelfTestError` names the file and the difference.
The figures are in ``session.self_test_report``. Which files: the family session's
``self_test_files()`` when it defines one, else the bundle files its ONNX backend loaded
(``backend.origins``), else ``artifacts[precision]`` of the manifest, else every golden entry.

`FamilySession` is the small interface every family session implements: ``open`` / ``close``,
context manager, the ``family`` attribute and ``describe()``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from umask.runtime.core.bundle import DEFAULT_FAMILY, MANIFEST, BundleError, bundle_family, read_manifest
from umask.runtime.core.errors import InputError
from umask.runtime.engines.precision_choice import AUTO
from umask.runtime.families import FAMILIES, session_class

FAMILY_KEY = "family"             # absent: DEFAULT_FAMILY ("umask", schema-1 bundles predate the key)


class FamilySession(ABC):
    """A family's on-device session over one verified bundle."""

    family: ClassVar[str]

    @classmethod
    @abstractmethod
    def open(cls, bundle: str | Path, **kwargs: Any) -> FamilySession:
        """Verify ``bundle`` and load what the family needs to serve requests."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-ready: the family, the bundle and what actually runs (engines, precision, threads)."""

    @classmethod
    def open_verified(cls, bundle: str | Path, *, precision: str, providers: Any, threads: int, verify: bool,
                      trusted_keys: Any, allow_unsigned: bool, **extra: Any) -> Any:
        """The common ``open`` of a family whose constructor is ``cls(root, manifest, precision, providers,
        threads, **extra)``: checks the bundle path and ``threads`` (1..256), verifies the signature by a trusted
        key (unless ``allow_unsigned``) and, with ``verify``, every file's sha256, then constructs the session."""
        from umask.runtime.core.signing import verify_bundle as verify_signed

        if not isinstance(bundle, (str, Path)):
            raise InputError(f"bundle must be a directory path, got {type(bundle).__name__}")
        if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= 256:
            raise InputError(f"threads must be an int in 1..256, got {threads!r}")
        root = Path(bundle)
        manifest = verify_signed(root, trusted_keys=trusted_keys, allow_unsigned=allow_unsigned, checksums=verify)
        return cls(root, manifest, precision, providers, threads, **extra)  # type: ignore[call-arg]

    def close(self) -> None:
        """Release engines and models; the session serves no request afterwards."""

    def __enter__(self) -> FamilySession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Session:
    """Dispatches to the family session of a bundle; see the module docstring."""

    @staticmethod
    def open(bundle: str | Path, *, self_test: bool = False, **kwargs: Any) -> FamilySession:
        """The family session of ``bundle``, opened with ``kwargs`` (the family's own options; every family
        takes ``trusted_keys=`` / ``allow_unsigned=`` and checks the signature before it loads a file).
        ``self_test``: run the golden-I/O self-test of the loaded files (module docstring)."""
        if not isinstance(bundle, (str, Path)):
            raise InputError(f"bundle must be a directory path, got {type(bundle).__name__}")
        if not isinstance(self_test, bool):
            raise InputError(f"self_test must be true or false, got {self_test!r:.40}")
        root = Path(bundle)
        fam = bundle_family(read_manifest(root))
        if fam not in FAMILIES:
            raise BundleError(f"{root / MANIFEST}: manifest key {FAMILY_KEY!r} = {fam!r} is not a family this "
                              f"runtime serves (known: {sorted(FAMILIES)})")
        choice = None
        if kwargs.get("precision") == AUTO:
            choice = resolve_auto_precision(root, kwargs)
            kwargs["precision"] = choice["precision"]
        sess = session_class(fam).open(root, **kwargs)
        if choice is not None:
            sess.precision_choice = choice      # type: ignore[attr-defined]
        if self_test:
            try:
                sess.self_test_report = run_self_test(sess, root, **kwargs)   # type: ignore[attr-defined]
            except BaseException:
                sess.close()
                raise
        return sess


def resolve_auto_precision(root: Path, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``precision="auto"``: the measured (or recorded) choice of `umask.runtime.engines.precision_choice`
    for this machine, providers and threads, on the signature-verified manifest."""
    from umask.runtime.core.signing import verify_bundle as verify_signed
    from umask.runtime.engines.precision_choice import choose_precision

    manifest = verify_signed(root, trusted_keys=kwargs.get("trusted_keys"),
                             allow_unsigned=bool(kwargs.get("allow_unsigned", False)), checksums=False)
    return choose_precision(root, manifest, providers=kwargs.get("providers"), threads=kwargs.get("threads", 1))


def self_test_files(sess: Any, root: Path, manifest: dict[str, Any], precision: str | None) -> list[str] | None:
    """The bundle paths of the ONNX files ``sess`` loaded (see the module docstring); None: every golden entry."""
    hook = getattr(sess, "self_test_files", None)
    if callable(hook):
        return list(hook())
    origins = getattr(getattr(sess, "backend", None), "origins", None)
    prefix = f"{root}/"
    if isinstance(origins, dict) and origins and all(str(o).startswith(prefix) for o in origins.values()):
        return sorted(str(o)[len(prefix):] for o in origins.values())
    arts = manifest.get("artifacts")
    if isinstance(arts, dict) and precision in arts:
        return sorted({e["file"] for e in arts[precision].values() if isinstance(e, dict) and e.get("file")})
    return None


def run_self_test(sess: Any, root: Path, **kwargs: Any) -> dict[str, Any]:
    """The self-test of an open family session (`umask.runtime.engines.ort.self_test` on its files, with
    the session's providers and threads, against the manifest the session verified)."""
    from umask.runtime.core.signing import verify_bundle as verify_signed
    from umask.runtime.engines.ort import self_test

    manifest = getattr(sess, "manifest", None)
    if not isinstance(manifest, dict):       # a family session that keeps no manifest: verify it again
        manifest = verify_signed(root, trusted_keys=kwargs.get("trusted_keys"),
                                 allow_unsigned=bool(kwargs.get("allow_unsigned", False)))
    files = self_test_files(sess, root, manifest, getattr(sess, "precision", kwargs.get("precision")))
    return self_test(root, manifest, files, providers=kwargs.get("providers"), threads=int(kwargs.get("threads", 1)))


__all__ = ["FamilySession", "Session", "FAMILY_KEY", "DEFAULT_FAMILY", "run_self_test", "self_test_files",
           "resolve_auto_precision"]
