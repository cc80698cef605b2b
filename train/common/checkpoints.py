"""Training checkpoints on disk: safetensors + JSON, written atomically, found again after a kill.

Used by the shared training loop (train/common/loop.py) and by everything that reads a run
(benchmarks, export). Layout of a run directory::

    <out>/ckpt/step_XXXXXX/    model.safetensors  ema.safetensors  optimizer.safetensors
                               config.json  state.json
    <out>/ckpt/latest          text file: name of the newest COMPLETE checkpoint directory
    <out>/ckpt/best            the checkpoint with the best validation loss (else the last one)

* **Atomic.** :func:`save_checkpoint` writes every file into ``ckpt/.tmp-step_XXXXXX-<pid>``,
  fsyncs, renames the directory to ``ckpt/step_XXXXXX`` (atomic on one file system) and only then
  replaces ``ckpt/latest`` (temp file + os.replace). A kill at any moment leaves either the old or
  the new checkpoint, never a half one under a step name; :func:`clean_temp_dirs` removes leftover
  temporary directories on the next start. The ``keep_last`` newest checkpoints (and ``keep``,
  e.g. the best one) are kept.
* **No pickle.** Tensors in safetensors (the optimizer's per-parameter tensors flattened as
  ``"<param index>.<name>"`` by :func:`flatten_optimizer`; its scalar state, e.g. ``step``, and the
  param-group hyper-parameters in state.json), everything else JSON.
* **Finding one.** :func:`find_latest_checkpoint` (newest complete one of a ``ckpt`` folder),
  :func:`best_checkpoint` (a run's ``ckpt/best``), :func:`resolve_checkpoint` (whatever a user
  names: a step directory, a pointer file, a ``ckpt`` folder or a run folder).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from umask.runtime.core.errors import InputError

log = logging.getLogger(__name__)

CKPT_FORMAT = 1
CKPT_FILES = ("model.safetensors", "ema.safetensors", "optimizer.safetensors", "config.json", "state.json")
TENSOR_FILES = CKPT_FILES[:3]
STEP_PREFIX = "step_"

__all__ = ["CKPT_FILES", "CKPT_FORMAT", "STEP_PREFIX", "atomic_text", "best_checkpoint", "clean_temp_dirs",
           "find_latest_checkpoint", "flatten_optimizer", "is_complete", "load_training_state", "resolve_checkpoint",
           "save_checkpoint", "step_dir_name", "unflatten_optimizer", "write_json"]


# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------
def fsync_dir(path: Path) -> None:
    """fsync a directory (its entries), where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: Path, obj: Any) -> None:
    """JSON file, flushed and fsynced (inside a directory that is renamed into place afterwards)."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (temp file + fsync + os.replace)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_json(path: Path, obj: Any) -> None:
    """Replace ``path`` with the JSON of ``obj`` atomically."""
    atomic_text(path, json.dumps(obj, indent=1) + "\n")


# ------------------------------------------------------------------------------------------------
# Optimizer state without pickle
# ------------------------------------------------------------------------------------------------
def _contig(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in sd.items()}


def flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors for safetensors, JSON part): per-parameter tensors as '<index>.<name>'; 0-dim
    tensors named 'step' and python scalars go to JSON, with the param groups' hyper-parameters."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, st in sd["state"].items():
        for name, v in st.items():
            key = f"{idx}.{name}"
            if isinstance(v, torch.Tensor) and not (name == "step" and v.dim() == 0):
                tensors[key] = v.detach().cpu().contiguous().clone()
            elif isinstance(v, torch.Tensor):
                scalars[key] = {"value": v.item(), "dtype": str(v.dtype).replace("torch.", "")}
            else:
                scalars[key] = {"value": v, "dtype": None}
    groups = []
    for g in sd["param_groups"]:
        groups.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()})
    return tensors, {"scalars": scalars, "param_groups": groups}


def unflatten_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Load :func:`flatten_optimizer` output back into ``opt``."""
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    for key, s in meta["scalars"].items():
        idx, name = key.split(".", 1)
        val = torch.tensor(s["value"], dtype=getattr(torch, s["dtype"])) if s["dtype"] else s["value"]
        state.setdefault(int(idx), {})[name] = val
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})


# ------------------------------------------------------------------------------------------------
# Checkpoint directories
# ------------------------------------------------------------------------------------------------
def step_dir_name(step: int) -> str:
    return f"{STEP_PREFIX}{step:06d}"


def is_complete(path: str | Path) -> bool:
    """All checkpoint files present and readable (safetensors headers, state.json parses)."""
    path = Path(path)
    if not path.is_dir() or any(not (path / f).is_file() for f in CKPT_FILES):
        return False
    try:
        st = json.loads((path / "state.json").read_text())
        json.loads((path / "config.json").read_text())
        for f in TENSOR_FILES:
            with safe_open(str(path / f), framework="pt") as fh:
                fh.keys()
        return int(st["format"]) == CKPT_FORMAT and isinstance(st["step"], int)
    except Exception:  # noqa: BLE001 - any unreadable part makes it incomplete
        return False


def _step_dirs(root: Path) -> list[tuple[int, Path]]:
    out = []
    for p in root.glob(f"{STEP_PREFIX}*"):
        try:
            out.append((int(p.name[len(STEP_PREFIX):]), p))
        except ValueError:
            continue
    return sorted(out)


def find_latest_checkpoint(root: str | Path) -> Path | None:
    """Newest complete checkpoint under ``root`` (= <out>/ckpt): the ``latest`` pointer if it names
    a complete directory, unless a newer complete ``step_*`` exists (killed between the rename and
    the pointer update); incomplete or temporary directories are never returned."""
    root = Path(root)
    if not root.is_dir():
        return None
    best: Path | None = None
    ptr = root / "latest"
    if ptr.is_file():
        cand = root / ptr.read_text().strip()
        if cand.name.startswith(STEP_PREFIX) and is_complete(cand):
            best = cand
        else:
            log.warning("checkpoint pointer %s names %s, which is not a complete checkpoint; scanning", ptr, cand)
    for step, p in reversed(_step_dirs(root)):
        if best is not None and step <= int(best.name[len(STEP_PREFIX):]):
            break
        if is_complete(p):
            return p
        log.warning("ignoring incomplete checkpoint directory %s", p)
    return best


def save_checkpoint(root: Path, step: int, model: torch.nn.Module, ema: torch.nn.Module,
                    opt: torch.optim.Optimizer, config: dict[str, Any], state: dict[str, Any],
                    keep_last: int, keep: tuple[str, ...] = ()) -> Path:
    """Write ``root/step_XXXXXX`` atomically and point ``root/latest`` at it (see the module doc)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = step_dir_name(step)
    final = root / name
    tmp = root / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    opt_tensors, opt_meta = flatten_optimizer(opt)
    meta = {"format": str(CKPT_FORMAT), "step": str(step)}
    save_file(_contig(model.state_dict()), str(tmp / "model.safetensors"), metadata=meta)
    save_file(_contig(ema.state_dict()), str(tmp / "ema.safetensors"), metadata=meta)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"), metadata=meta)
    write_json(tmp / "config.json", config)
    write_json(tmp / "state.json", {**state, "format": CKPT_FORMAT, "step": int(step), "optimizer": opt_meta})
    for f in CKPT_FILES:  # data of the files on disk before the rename makes them visible
        with open(tmp / f, "rb") as fh:
            os.fsync(fh.fileno())
    fsync_dir(tmp)
    if final.exists():  # the same step written again (e.g. after a resume): swap it out
        trash = root / f".trash-{name}-{os.getpid()}"
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fsync_dir(root)
    atomic_text(root / "latest", name + "\n")
    # prune: keep the newest keep_last and anything named in ``keep`` (e.g. best)
    dirs = _step_dirs(root)
    for _, p in dirs[:-keep_last]:
        if p.name not in keep and p != final:
            shutil.rmtree(p, ignore_errors=True)
    return final


def clean_temp_dirs(root: Path) -> None:
    """Remove what an interrupted :func:`save_checkpoint` / :func:`atomic_text` left in ``root``."""
    root = Path(root)
    for p in list(root.glob(".tmp-*")) + list(root.glob(".trash-*")) + list(root.glob(".latest.tmp*")):
        log.info("removing leftover %s", p)
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def load_training_state(ckpt: Path, model: torch.nn.Module, ema: torch.nn.Module, opt: torch.optim.Optimizer,
                        device: str | torch.device = "cpu") -> dict[str, Any]:
    """Load weights, EMA weights and optimizer state of ``ckpt`` in place; returns its state.json."""
    ckpt = Path(ckpt)
    state = json.loads((ckpt / "state.json").read_text())
    model.load_state_dict(load_file(str(ckpt / "model.safetensors"), device=str(device)))
    ema.load_state_dict(load_file(str(ckpt / "ema.safetensors"), device=str(device)))
    unflatten_optimizer(opt, load_file(str(ckpt / "optimizer.safetensors"), device=str(device)), state["optimizer"])
    return state


# ------------------------------------------------------------------------------------------------
# Naming a checkpoint
# ------------------------------------------------------------------------------------------------
def _is_ckpt_dir(p: Path) -> bool:
    return p.is_dir() and (p / "config.json").is_file() and (
        (p / "ema.safetensors").is_file() or (p / "model.safetensors").is_file())


def _is_shipped(p: Path) -> bool:
    """A shipped folder (train/common/ship.py: config.json with a ``shipped`` record + model.safetensors)."""
    if not (_is_ckpt_dir(p) and (p / "model.safetensors").is_file()):
        return False
    try:
        return "shipped" in json.loads((p / "config.json").read_text())
    except (OSError, ValueError):
        return False


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from what a user names: a step directory, a ``ckpt/best`` /
    ``ckpt/latest`` pointer file, a ``ckpt`` folder (its newest complete checkpoint) or a run
    directory (its ``ckpt/``). Raises InputError naming ``path`` when none is found."""
    p = Path(path)
    if p.is_file():                                   # pointer file: the name of a step directory
        p = p.parent / p.read_text().strip()
        if _is_ckpt_dir(p):
            return p
    elif is_complete(p) or _is_ckpt_dir(p):
        return p
    else:
        for root in (p, p / "ckpt"):
            found = find_latest_checkpoint(root)
            if found is not None:
                return found
    raise InputError(f"{path}: no checkpoint found (expected a step_* directory, a best/latest pointer file, "
                     "a ckpt folder or a run directory with ckpt/)")


def best_checkpoint(run_dir: str | Path) -> Path:
    """``<run>/ckpt/best`` if it names a complete checkpoint, else the newest complete one. A
    checkpoint directory (or a shipped folder, train/common/ship.py) itself is returned unchanged."""
    run_dir = Path(run_dir)
    if is_complete(run_dir) or _is_shipped(run_dir):
        return run_dir
    root = run_dir / "ckpt"
    ptr = root / "best"
    if ptr.is_file():
        cand = root / ptr.read_text().strip()
        if is_complete(cand):
            return cand
    latest = find_latest_checkpoint(root)
    if latest is None:
        raise InputError(f"no complete checkpoint under {run_dir}")
    return latest
