"""export/families: one exporter per model family (checkpoint -> verified bundle), registered by name.

`EXPORTERS` maps a family to the dotted path of its export function, imported when it is asked for
(each pulls in torch and its family's training code). Every exporter writes through the generic
bundle writer (export/bundle.py) and stamps its ``family`` into the manifest::

    from umask.export.families import exporter
    exporter("umask")(ckpt, out)           # umask.export.families.umask.exporter.export_bundle
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

# family -> "module:function" (one line per family)
EXPORTERS: dict[str, str] = {
    "umask": "umask.export.families.umask.exporter:export_bundle",
    "umask_grid": "umask.export.families.umask.grid_exporter:export_bundle",
    "fatsmb": "umask.export.families.fatsmb.exporter:export_bundle",
    "gtslum": "umask.export.families.gtslum.exporter:export_bundle",
    "ustsllm": "umask.export.families.ustsllm.exporter:export_bundle",
}


def exporter(family: str) -> Callable[..., dict[str, Any]]:
    """The export function of ``family``: ``fn(ckpt, out, **options) -> manifest``."""
    if family not in EXPORTERS:
        raise KeyError(f"no exporter for family {family!r} (known: {sorted(EXPORTERS)})")
    module, _, name = EXPORTERS[family].partition(":")
    return getattr(importlib.import_module(module), name)


__all__ = ["EXPORTERS", "exporter"]
