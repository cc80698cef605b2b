"""train/models: one trainer per model family, registered by name for ``umask train <family>``.

`MODELS` maps a family to its trainer entry module (a module with ``main(argv) -> int``), imported
only when that family is trained::

    from umask.train.models import trainer_main
    trainer_main("umask")(["--config", "small", "--out", "artifacts/train/umask_small"])
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

# family -> trainer entry module (one line per family)
MODELS: dict[str, str] = {
    "umask": "umask.train.models.umask.trainer",
    "umask_grid": "umask.train.models.umask.grid",
    "fatsmb": "umask.train.models.fatsmb.trainer",
    "gtslum": "umask.train.models.gtslum.trainer",
    "ustsllm": "umask.train.models.ustsllm.trainer",
}


def trainer_main(family: str) -> Callable[[Sequence[str] | None], int]:
    """The ``main(argv)`` of ``family``'s trainer."""
    if family not in MODELS:
        raise KeyError(f"no trainer for family {family!r} (known: {sorted(MODELS)})")
    return importlib.import_module(MODELS[family]).main


__all__ = ["MODELS", "trainer_main"]
