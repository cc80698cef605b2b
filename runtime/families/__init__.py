"""runtime/families: one torch-free session per model family, registered by name.

`FAMILIES` maps the manifest's ``family`` to the dotted path of its session class (a
`umask.runtime.session.FamilySession`), imported only when a bundle of that family is opened::

    from umask.runtime.families import session_class
    cls = session_class("umask")          # umask.runtime.families.umask.session.Session
"""

from __future__ import annotations

import importlib
from typing import Any

# family -> "module:Class" of its session (one line per family)
FAMILIES: dict[str, str] = {
    "umask": "umask.runtime.families.umask.session:Session",
    "umask_grid": "umask.runtime.families.umask.grid_session:Session",
    "fatsmb": "umask.runtime.families.fatsmb.session:Session",
    "gtslum": "umask.runtime.families.gtslum.session:Session",
    "ustsllm": "umask.runtime.families.ustsllm.session:Session",
}


def session_class(family: str) -> Any:
    """The session class of ``family`` (KeyError for an unknown family; `umask.runtime.session` turns
    that into a BundleError naming the manifest key)."""
    module, _, name = FAMILIES[family].partition(":")
    return getattr(importlib.import_module(module), name)


__all__ = ["FAMILIES", "session_class"]
