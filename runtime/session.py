"""One entry point for every model family's bundle: ``Session.open(bundle_dir, **kwargs)``.

Reads the manifest's ``family`` (manifests without one are schema-1 U-MASK bundles: "umask") and
opens the family's own torch-free session from `umask.runtime.families.FAMILIES`::

    from umask.runtime.session import Session
    with Session.open("artifacts/bundles/small", precision="int8-qdq") as s:   # a U-MASK Session
        print(s.family, s.describe())

The family session verifies the bundle's signature by a trusted key (``trusted_keys=`` or
``$UMASK_TRUSTED_KEYS``; ``allow_unsigned=True`` is the explicit opt-out) before it loads anything.

`FamilySession` is the small interface every family session implements: ``open`` / ``close``,
context manager, the ``family`` attribute and ``describe()``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from umask.runtime.core.bundle import DEFAULT_FAMILY, MANIFEST, BundleError, bundle_family, read_manifest
from umask.runtime.core.errors import InputError
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

    def close(self) -> None:
        """Release engines and models; the session serves no request afterwards."""

    def __enter__(self) -> FamilySession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Session:
    """Dispatches to the family session of a bundle; see the module docstring."""

    @staticmethod
    def open(bundle: str | Path, **kwargs: Any) -> FamilySession:
        """The family session of ``bundle``, opened with ``kwargs`` (the family's own options; every family
        takes ``trusted_keys=`` / ``allow_unsigned=`` and checks the signature before it loads a file)."""
        if not isinstance(bundle, (str, Path)):
            raise InputError(f"bundle must be a directory path, got {type(bundle).__name__}")
        root = Path(bundle)
        fam = bundle_family(read_manifest(root))
        if fam not in FAMILIES:
            raise BundleError(f"{root / MANIFEST}: manifest key {FAMILY_KEY!r} = {fam!r} is not a family this "
                              f"runtime serves (known: {sorted(FAMILIES)})")
        return session_class(fam).open(root, **kwargs)


__all__ = ["FamilySession", "Session", "FAMILY_KEY", "DEFAULT_FAMILY"]
