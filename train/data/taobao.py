"""Loaders for the Taobao UserBehavior sample (Alibaba Tianchi), numpy only.

See ``data/taobao_user_behavior/SOURCE.md``. Two layouts of the same 84,287 rows ship:

- ``UserBehavior_head.csv.gz``: the original Tianchi format, comma-separated, no header,
  ``user_id,item_id,category_id,behavior_type,timestamp`` (Unix seconds), original row order
  (:func:`read_user_behavior`);
- ``retail.txt.gz``: the MB-STR / PBAT / FatsMB ``retail.txt`` layout, tab-separated, no header,
  ``uid sid behavior timestamp``, sorted by (uid, timestamp), stable (:func:`read_retail`). It has
  no category column: ``category`` is -1 (:data:`UNKNOWN_CATEGORY`).

Both return :class:`Interactions`, a dataclass of numpy arrays with behaviour codes from
:data:`BEHAVIORS` (pv=0, fav=1, cart=2, buy=3).

Bad lines (wrong number of fields, non-integer or negative ids/timestamps, unknown behaviour, empty
lines) raise :class:`~umask.runtime.core.errors.DataFormatError` naming the file and the 1-based line.
With ``on_error="skip"`` they are skipped instead and counted per reason in
``Interactions.skipped`` (also logged as a warning); nothing is dropped silently.
Gzip is detected from the file's magic bytes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from umask.runtime.core.errors import DataFormatError
from umask.runtime.core.events import open_text

log = logging.getLogger(__name__)

BEHAVIORS: tuple[str, ...] = ("pv", "fav", "cart", "buy")  # code = position in this tuple
BEHAVIOR_CODE: dict[str, int] = {name: code for code, name in enumerate(BEHAVIORS)}
UNKNOWN_CATEGORY: int = -1  # category of rows read from a layout without a category column

OnError = Literal["raise", "skip"]


@dataclass
class Interactions:
    """User-item interactions as parallel numpy arrays (one entry per file row, file order).

    user, item, category (-1 when unknown), timestamp: int64; behavior: int8 code into BEHAVIORS.
    skipped: reason -> number of lines skipped (empty unless read with on_error="skip").
    """

    path: str
    user: np.ndarray
    item: np.ndarray
    category: np.ndarray
    behavior: np.ndarray
    timestamp: np.ndarray
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.user.shape[0])

    @property
    def n_users(self) -> int:
        return int(np.unique(self.user).shape[0])

    def behavior_counts(self) -> dict[str, int]:
        """Rows per behaviour name, e.g. {"pv": 75693, ...}."""
        counts = np.bincount(self.behavior, minlength=len(BEHAVIORS))
        return {name: int(counts[code]) for code, name in enumerate(BEHAVIORS)}


class _BadLine(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _to_int(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise _BadLine("non_numeric", f"{name}: not an integer: {text!r}") from None
    if value < 0:
        raise _BadLine("negative", f"{name}: negative value {value}")
    return value


def _read(path: str | Path, sep: str, columns: tuple[str, ...], on_error: OnError) -> Interactions:
    """Shared line parser; ``columns`` names the fields, using user/item/category/behavior/timestamp."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    path = Path(path)
    cols: dict[str, list[int]] = {name: [] for name in ("user", "item", "category", "behavior", "timestamp")}
    has_category = "category" in columns
    skipped: dict[str, int] = {}
    with open_text(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.rstrip("\r\n")
            try:
                if not line.strip():
                    raise _BadLine("empty_line", "empty line")
                fields = line.split(sep)
                if len(fields) != len(columns):
                    raise _BadLine("field_count", f"expected {len(columns)} fields ({sep!r}-separated), found {len(fields)}")
                row: dict[str, int] = {}
                for name, text in zip(columns, fields):
                    if name == "behavior":
                        if text not in BEHAVIOR_CODE:
                            raise _BadLine("unknown_behavior", f"behavior {text!r} not in {BEHAVIORS}")
                        row[name] = BEHAVIOR_CODE[text]
                    else:
                        row[name] = _to_int(text, name)
            except _BadLine as bad:
                if on_error == "raise":
                    raise DataFormatError(path, lineno, bad.message) from None
                skipped[bad.reason] = skipped.get(bad.reason, 0) + 1
                continue
            if not has_category:
                row["category"] = UNKNOWN_CATEGORY
            for name, value in row.items():
                cols[name].append(value)
    if skipped:
        log.warning("%s: skipped %d bad lines: %s", path, sum(skipped.values()), skipped)
    if not cols["user"]:
        raise DataFormatError(path, None, "no valid rows")
    out = Interactions(
        path=str(path),
        user=np.asarray(cols["user"], dtype=np.int64),
        item=np.asarray(cols["item"], dtype=np.int64),
        category=np.asarray(cols["category"], dtype=np.int64),
        behavior=np.asarray(cols["behavior"], dtype=np.int8),
        timestamp=np.asarray(cols["timestamp"], dtype=np.int64),
        skipped=skipped,
    )
    log.info("%s: %d rows, %d users", path, len(out), out.n_users)
    return out


def read_user_behavior(path: str | Path, *, on_error: OnError = "raise") -> Interactions:
    """Read Tianchi ``UserBehavior.csv`` format: ``user,item,category,behavior,timestamp``."""
    return _read(path, ",", ("user", "item", "category", "behavior", "timestamp"), on_error)


def read_retail(path: str | Path, *, on_error: OnError = "raise") -> Interactions:
    """Read ``retail.txt`` format: ``uid<TAB>sid<TAB>behavior<TAB>timestamp``; category = -1."""
    return _read(path, "\t", ("user", "item", "behavior", "timestamp"), on_error)
