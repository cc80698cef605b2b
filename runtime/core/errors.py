"""Errors raised on bad input. One place, so callers can catch them by type."""

from __future__ import annotations

from pathlib import Path


class DataFormatError(ValueError):
    """A data file does not follow its format. Names the file and the 1-based line."""

    def __init__(self, path: str | Path | None, line: int | None, message: str) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.message = message
        where = self.path or "<input>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")


class InputError(ValueError):
    """An in-memory input (array, history, request) is unusable; the message says why."""
