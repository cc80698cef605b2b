"""Requests of the grid sessions (U-STS-LLM, grid U-MASK), numpy only: array checks and ``umask run``.

:func:`window_batch` turns a request's values and first slots into a checked (n, slots, cells) batch; the CLI
below feeds a CSV to a session's ``forecast`` / ``impute``:

    umask run --bundle DIR --values FILE.csv [--task forecast|impute] [--first-slot N] [--precision P]
              [--trusted-keys PUB | --allow-unsigned]

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

from umask.runtime.core.errors import BUNDLE_ERRORS, InputError, exit_status_help

TASKS = ("forecast", "impute")


def window_batch(values: Any, name: str, n_cells: int, lengths: tuple[int, int], first_slot: Any
                 ) -> tuple[np.ndarray, bool, np.ndarray]:
    """(values as float64 (n, slots, cells), whether one window (slots, cells) was given, first slots int64 (n,))
    with lengths[0] <= slots <= lengths[1]; InputError naming ``name`` / ``first_slot`` otherwise."""
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected a numeric array (slots, cells)") from None
    single = v.ndim == 2
    v = v[None] if single else v
    lo, hi = lengths
    if v.ndim != 3 or not lo <= v.shape[1] <= hi or v.shape[2] != n_cells or v.shape[0] < 1:
        want = str(lo) if lo == hi else f"{lo}..{hi}"
        raise InputError(f"{name}: expected shape ({want}, {n_cells}) or (n, {want}, {n_cells}), got {np.shape(values)}")
    try:
        raw = np.asarray(first_slot)
        if raw.dtype.kind not in "iuf" or (raw.dtype.kind == "f" and not np.all(np.isfinite(raw) & (raw == np.floor(raw)))):
            raise ValueError("not a whole number")
        first = np.broadcast_to(raw.astype(np.int64).reshape(-1), (v.shape[0],)).copy()
    except (TypeError, ValueError):
        raise InputError(f"first_slot: expected a whole slot index or one per window ({v.shape[0]}), got "
                         f"{first_slot!r:.60}") from None
    if np.any(first < 0):
        raise InputError(f"first_slot must be >= 0, got {first_slot!r:.60}")
    return v, single, first


def missing_mask(mask: Any, values: Any, batch: np.ndarray, single: bool) -> np.ndarray:
    """The missing-entry mask of an imputation request as bool (n, slots, cells) (``batch``, ``single``: what
    :func:`window_batch` made of ``values``); InputError unless it is boolean (or 0/1 integers) of the values'
    shape and every observed entry (mask False) is finite."""
    m = np.asarray(mask)
    if m.shape != np.shape(values) or m.dtype.kind not in "bui":
        raise InputError(f"mask: expected a boolean array of shape {np.shape(values)}, got {m.dtype} {m.shape}")
    m = (m[None] if single else m).astype(bool)
    if not np.all(np.isfinite(batch[~m])):
        raise InputError("values: observed entries (mask False) must be finite")
    return m


MAX_ABS_Z = 1e6     # standardized values beyond this are refused: a million training stds is another grid or unit


def standardized(stats: Any, raw: np.ndarray, name: str, observed: np.ndarray | None = None) -> np.ndarray:
    """``stats.transform(raw)`` (the bundle's per-cell scaler), refusing values more than MAX_ABS_Z training standard
    deviations from their cell's mean (only where ``observed``, when given): the network computes in float32, and
    such inputs overflow it into NaN; they mean another grid, another unit or a corrupt feed."""
    z = stats.transform(raw)
    bad = np.abs(z) > MAX_ABS_Z
    if observed is not None:
        bad &= observed
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        where = ", ".join(f"{k} {i}" for k, i in zip(("window", "slot", "cell")[3 - len(idx):], idx))
        raise InputError(f"{name}: the value at {where} ({float(np.asarray(raw)[idx]):.4g}) is {float(abs(z[idx])):.3g} "
                         f"training standard deviations from its cell's mean (limit {MAX_ABS_Z:g}): not the units or "
                         "the grid this bundle was trained on")
    return z


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
    from umask.runtime.core.signing import add_key_options

    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Forecast or impute one window of a grid of cells with a grid bundle (umask_grid, ustsllm), "
                    "privately (numpy + onnxruntime, no torch, no network); prints JSON in the CSV's raw units. The "
                    "bundle must be signed by a trusted key (--trusted-keys or $UMASK_TRUSTED_KEYS) unless "
                    "--allow-unsigned.",
        epilog="--values: one row per slot, one column per cell in the training CSV's order (raw units, no time\n"
               "column; a header line is skipped). forecast: the history window (the bundle's context, e.g. 2 days)\n"
               "-> the next horizon. impute: a window with empty fields or NaN where entries are missing.\n\n"
               "--first-slot: the index of the CSV's first row in the grid's own slot numbering, where slot 0 is the\n"
               "first row of the data the model was trained on (a midnight; the manifest records its weekday). It\n"
               "sets the time of day and the weekday the model conditions on. On the shipped Milan bundles\n"
               "(144 ten-minute slots a day, slot 0 = Friday 2013-11-01 00:00), 3888 is the start of day 27.\n\n"
               + exit_status_help(InputError, *BUNDLE_ERRORS, input_means="bad argument or values") + "\n\n"
               f"example: {prog.split(' (')[0]} --bundle grid_bundle/ --values window.csv --task impute "
               "--first-slot 3888 --trusted-keys keys/umask.pub")
    p.add_argument("--bundle", required=True, help="bundle directory written by 'umask export --family umask_grid|ustsllm'")
    p.add_argument("--values", required=True, help="CSV, one row per slot, one column per cell (no time column)")
    p.add_argument("--history", help=argparse.SUPPRESS)     # the per-user flag: refused with a pointer below
    p.add_argument("--task", default="forecast", choices=TASKS, help="forecast (default) or impute")
    p.add_argument("--first-slot", type=int, default=0,
                   help="slot index of the CSV's first row, counted from the training data's first row (default 0)")
    p.add_argument("--precision", default="fp32", help="fp32 | fp16 | int8-qdq | int8-dynamic (default fp32)")
    add_key_options(p)
    if "--history" in argv and "--values" not in argv:
        raise InputError(f"--bundle is a grid bundle ({prog.split('(')[-1].rstrip(')')}): it takes --values CSV "
                         "(slots x cells), not a per-user --history; see --help")
    ns = p.parse_args(argv)
    vals = read_values_csv(Path(ns.values))
    with session_cls.open(ns.bundle, precision=ns.precision, trusted_keys=ns.trusted_keys,
                          allow_unsigned=ns.allow_unsigned) as s:
        try:
            out = (s.forecast(vals, first_slot=ns.first_slot) if ns.task == "forecast"
                   else s.impute(vals, np.isnan(vals), first_slot=ns.first_slot))
        except InputError as e:                            # name the flag: the session names its argument
            raise InputError(f"--values {ns.values} (--task {ns.task}, --first-slot {ns.first_slot}): {e}") from None
    print(json.dumps({"task": ns.task, "shape": list(out.shape), "values": np.round(out, 4).tolist()}))
    return 0


__all__ = ["MAX_ABS_Z", "TASKS", "grid_run_main", "missing_mask", "read_values_csv", "standardized", "window_batch"]
