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

# what each exit status means on a command line (the `--help` epilogs are built from it: one list of codes)
CLI_MEANING = {InputError: "bad argument", DataFormatError: "bad history file", LimitError: "limit",
               BundleError: "bundle refused", ManifestError: "manifest schema", SignatureError: "signature"}
BUNDLE_ERRORS = (BundleError, ManifestError, SignatureError)


def exit_status_help(*errors: type[UmaskError], input_means: str | None = None, width: int = 100) -> str:
    """``exit status: 0 ok; 2 bad command line; 3 bad argument; ...`` for a command that raises ``errors`` (their
    `exit_code` and `CLI_MEANING`; ``input_means`` rewords InputError's), wrapped at ``width`` for a help epilog."""
    import textwrap

    parts = ["0 ok", "2 bad command line"] + [
        f"{e.exit_code} {input_means if e is InputError and input_means else CLI_MEANING[e]}"
        for e in sorted(set(errors), key=lambda e: e.exit_code)]
    return "\n".join(textwrap.wrap("exit status: " + "; ".join(parts) + ".", width))


__all__ = ["UmaskError", "InputError", "DataFormatError", "LimitError", "BundleError", "ManifestError",
           "SignatureError", "EXIT_CODES", "CLI_MEANING", "BUNDLE_ERRORS", "exit_status_help"]
