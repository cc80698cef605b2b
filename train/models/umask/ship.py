"""Ship a trained per-user U-MASK checkpoint inside the repository (``checkpoints/<name>/``).

    python -m umask.train.models.umask.ship artifacts/train/umask_small_v3/ckpt/latest checkpoints/umask_small

writes ``model.safetensors`` (the checkpoint's EMA weights, the ones every evaluation scores, stored as
fp16 to keep the folder a few MB; `trainer.load_model` widens them back to fp32) and ``config.json``
(the run's configuration plus a ``shipped`` record: source checkpoint, step, dtype, sha256 of the weights).
The model card (MODEL_CARD.md) is written by hand next to them, with the scores of THIS folder. The
optimizer state is not shipped: to continue training, use the run's own checkpoint. The other families'
shipper (and the atomic writer used here) is ``umask.train.common.ship``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file

from umask.runtime.core.errors import InputError
from umask.train.common.checkpoints import resolve_checkpoint
from umask.train.common.ship import write_shipped

log = logging.getLogger(__name__)


def ship(ckpt: str | Path, out: str | Path, *, dtype: str = "float16",
         all_evidence_tasks: Sequence[str] = ()) -> Path:
    """Copy the EMA weights (as ``dtype``) and the config of checkpoint ``ckpt`` into ``out``; returns ``out``.

    ``all_evidence_tasks``: task names (dit.TASKS) whose inference uses every available coordinate as
    evidence instead of the learned mask; recorded as ``inference.all_evidence_tasks`` in config.json,
    read by ``trainer.load_model`` and carried into the bundle by the exporter."""
    from umask.train.models.umask.trainer import task_ids

    src = resolve_checkpoint(ckpt)
    if dtype not in ("float16", "float32"):
        raise InputError(f"dtype must be float16 or float32, got {dtype!r}")
    task_ids(all_evidence_tasks, "--all-evidence-tasks")
    ema = src / "ema.safetensors"
    if not ema.is_file():
        raise InputError(f"{src}: no ema.safetensors (ship a training checkpoint, not a shipped folder)")
    sd = load_file(str(ema))
    cast = getattr(torch, dtype)
    sd = {k: (v.to(cast) if v.is_floating_point() else v).contiguous() for k, v in sd.items()}
    config = json.loads((src / "config.json").read_text())
    state = json.loads((src / "state.json").read_text()) if (src / "state.json").is_file() else {}
    if all_evidence_tasks:
        config["inference"] = {"all_evidence_tasks": list(dict.fromkeys(all_evidence_tasks)),
                               "why": "every available coordinate is evidence at inference for these tasks: the "
                                      "learned mask discarded evidence that helps (docs/families/umask.md)"}
    return write_shipped(out, sd, config, {"family": "umask", "from": str(src), "step": state.get("step"),
                                           "weights": "ema", "dtype": dtype},
                         metadata={"weights": "ema", "dtype": dtype})


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m umask.train.models.umask.ship", description=__doc__.splitlines()[0])
    p.add_argument("ckpt", help="training checkpoint (step dir, ckpt/latest|best, run dir)")
    p.add_argument("out", help="folder to write (e.g. checkpoints/umask_small)")
    p.add_argument("--dtype", default="float16", choices=("float16", "float32"))
    p.add_argument("--all-evidence-tasks", default="",
                   help="comma-separated tasks (short_term,long_term,cold_start,imputation) whose inference uses "
                        "every available coordinate instead of the learned mask")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ship(args.ckpt, args.out, dtype=args.dtype,
         all_evidence_tasks=[t.strip() for t in args.all_evidence_tasks.split(",") if t.strip()])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
