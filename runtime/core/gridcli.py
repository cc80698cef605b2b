"""``umask run`` for grid bundles (U-STS-LLM, grid U-MASK): a slots x cells CSV in, JSON out, numpy only.

    umask run --bundle DIR --values FILE.csv [--task forecast|impute] [--first-slot N] [--precision P]

The CSV holds one row per slot and one column per cell (raw units, no time column; a header line is
skipped); for ``--task impute`` an empty field or NaN marks a missing entry. The family session's
``forecast(values, first_slot=)`` / ``impute(values, mask, first_slot=)`` answer; the JSON carries the task,
the shape and the values rounded to 4 decimals.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from umask.runtime.core.errors import InputError

TASKS = ("forecast", "impute")


def read_values_csv(path: Path) -> np.ndarray:
    """(slots, cells) float64 of a grid CSV (NaN where a field is empty); InputError naming the file."""
    if not path.is_file():
        raise InputError(f"--values {path}: no such file")
    rows = [ln for ln in path.read_text().splitlines() if ln.strip()]
    if not rows:
        raise InputError(f"--values {path}: empty file")
    try:
        float(rows[0].split(",")[0] or "nan")
    except ValueError:
        rows = rows[1:]                                    # a header line
    try:
        vals = np.array([[float(f) if f.strip() else np.nan for f in r.split(",")] for r in rows])
    except ValueError as e:
        raise InputError(f"--values {path}: not a numeric CSV ({e})") from None
    if vals.ndim != 2:
        raise InputError(f"--values {path}: rows have different numbers of fields")
    return vals


def grid_run_main(argv: Sequence[str] | None, session_cls: Any, prog: str) -> int:
    """The CLI above over ``session_cls.open`` (a grid family's session)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("--bundle", required=True)
    p.add_argument("--values", required=True, help="CSV, one row per slot, one column per cell (no time column)")
    p.add_argument("--task", default="forecast", choices=TASKS)
    p.add_argument("--first-slot", type=int, default=0)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--allow-unsigned", action="store_true")
    ns = p.parse_args(argv)
    vals = read_values_csv(Path(ns.values))
    with session_cls.open(ns.bundle, precision=ns.precision, allow_unsigned=ns.allow_unsigned) as s:
        out = (s.forecast(vals, first_slot=ns.first_slot) if ns.task == "forecast"
               else s.impute(vals, np.isnan(vals), first_slot=ns.first_slot))
    print(json.dumps({"task": ns.task, "shape": list(out.shape), "values": np.round(out, 4).tolist()}))
    return 0


__all__ = ["TASKS", "grid_run_main", "read_values_csv"]
