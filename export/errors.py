"""Errors of the export stage, shared by every family's exporter.

Both are `UmaskError`s, so ``umask export`` ends with one line on stderr and exit status 9 (the
generic one; runtime/core/errors.py has the table) instead of a traceback::

    from umask.export.errors import ExportError, ParityError
"""

from __future__ import annotations

from umask.runtime.core.errors import UmaskError


class ExportError(UmaskError, RuntimeError):
    """The export cannot produce a bundle (bad checkpoint, fp32 parity failure, ...)."""


class ParityError(ExportError):
    """An artifact beyond its tolerance (the message says by how much)."""


__all__ = ["ExportError", "ParityError"]
