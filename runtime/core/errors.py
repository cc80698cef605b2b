"""Errors raised on bad input. One place, so callers can catch them by type.

Every failure of the runtime on bad input (a data file, a history, a bundle, a signature, an
argument) is one of these types, with a message that names the input: ``file:line`` for data
files, the manifest key path for bundles, the argument for calls. Python's own exceptions
(OverflowError, csv.Error, EOFError, gzip.BadGzipFile, UnicodeDecodeError, KeyError, TypeError,
RecursionError, ...) are translated at the reader that meets them; they never escape a loader.

Each class carries a distinct process exit status, ``exit_code``, for the command line
(``umask`` uses ``getattr(e, "exit_code", 2)``):

=================  =========  ==========================================================
class              exit_code  meaning
=================  =========  ==========================================================
(argparse usage)   2          bad command line (argparse's own convention; not a class here)
InputError         3          an in-memory input or argument is unusable
DataFormatError    4          a data file does not follow its format (file and line named)
LimitError         5          an input exceeds a resource limit of `umask.runtime.core.limits`
BundleError        6          a bundle that must not be loaded (incomplete, tampered, unknown schema)
ManifestError      7          a manifest that breaks the schema (the key path is named)
SignatureError     8          a bundle that is unsigned, signed by an untrusted key, or badly signed
UmaskError         9          the common base (not raised directly)
=================  =========  ==========================================================

``LimitError`` is both a `DataFormatError` (when it names a file and line) and an `InputError`
(in-memory histories), so callers catching either keep working. ``ManifestError`` and
``SignatureError`` are `BundleError` s.
"""

from __future__ import annotations

from pathlib import Path


class UmaskError(Exception):
    """Base of every error type of the project's runtime."""

    exit_code = 9


class InputError(UmaskError, ValueError):
    """An in-memory input (array, history, request) is unusable; the message says why."""

    exit_code = 3


class DataFormatError(UmaskError, ValueError):
    """A data file does not follow its format. Names the file and the 1-based line."""

    exit_code = 4

    def __init__(self, path: str | Path | None, line: int | None, message: str) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.message = message
        where = self.path or "<input>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")


class LimitError(DataFormatError, InputError):
    """An input exceeds one of the declared resource limits (`umask.runtime.core.limits.Limits`)."""

    exit_code = 5


class BundleError(UmaskError, RuntimeError):
    """A bundle that must not be loaded (incomplete, tampered, unknown schema)."""

    exit_code = 6


class ManifestError(BundleError):
    """A manifest that breaks the schema; the message names the file and the key path."""

    exit_code = 7


class SignatureError(BundleError):
    """A bundle without a valid signature by a trusted key."""

    exit_code = 8


EXIT_CODES = {c.__name__: c.exit_code for c in (InputError, DataFormatError, LimitError, BundleError, ManifestError,
                                                 SignatureError, UmaskError)}

__all__ = ["UmaskError", "InputError", "DataFormatError", "LimitError", "BundleError", "ManifestError",
           "SignatureError", "EXIT_CODES"]
