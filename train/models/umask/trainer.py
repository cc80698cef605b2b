"""Joint U-MASK training (Algorithm 1, eqs. 19-20): AdamW, EMA, checkpoints, resume, DDP.

``python -m umask.train.models.umask.trainer --config tiny --steps 50 --out artifacts/train/tiny`` trains the
named model config (train/umask_model.UMASK_CONFIGS: tiny / small / base) on simulated users (or
``--data`` = a `dataset.save_users` .npz or a trace file) and writes ``<out>/``::

    config.json                the run's full configuration (model, training, data fingerprint)
    metrics.jsonl              train / validation records (rank 0)
    ckpt/step_XXXXXX/          model.safetensors  ema.safetensors  optimizer.safetensors
                               config.json  state.json
    ckpt/latest                text file: name of the newest COMPLETE checkpoint directory
    ckpt/best                  (with --eval-every) the checkpoint with the best validation loss

Per step (Algorithm 1 order): batch -> h_u (ProfileMLP on the frozen SBERT embedding) -> mask
generator (h_b, budget, Gumbel top-k, straight-through) -> noise x0 at a random t -> DiT
x0-prediction -> L = L_diff + w_nce L_InfoNCE + w_budget L_budget -> backward -> grad clip ->
AdamW -> mask generator state: ``update_fisher(task, dL/da_tau, avail)`` and
``update_bank(features)`` -> EMA update.

Design decisions
----------------
* **Optimizer.** AdamW; weight decay only on >= 2-D weights (matrices, embeddings tables, the
  task projections), none on biases, norms and scalar / vector parameters (nanoGPT rule). LR:
  linear warm-up over ``warmup`` steps, then cosine decay to ``min_lr_ratio * lr`` at ``steps``,
  computed from the step number (no scheduler state). Gradient-norm clipping at ``grad_clip``.
* **EMA.** A full copy of the model (parameters lerped, buffers copied: the mask generator's bank
  and Fisher statistics) with decay ``min(ema_decay, (1 + n) / (10 + n))`` (fast early warm-up).
  Validation and `load_model(..., ema=True)` use it.
* **Randomness.** Model init from ``seed`` on every rank (DDP also broadcasts rank 0's weights).
  Each step draws ALL its training noise (diffusion t and eps, Gumbel noise, random masks,
  dropout) from generators seeded by ``SeedSequence([seed, rank, step])``, and the data order and
  per-item randomness are pure functions of (seed, epoch, index) (dataset.StepBatchSampler), so a
  resumed run repeats an uninterrupted one exactly (tested: allclose parameters) for any world
  size. The python / numpy / torch global RNG states are still saved in state.json (as lists of
  ints) and restored, for any other consumer.
* **Checkpoints, atomically.** Rank 0 writes every file into ``ckpt/.tmp-step_XXXXXX-<pid>``,
  fsyncs, renames the directory to ``ckpt/step_XXXXXX`` (atomic on one file system) and only then
  replaces ``ckpt/latest`` (temp file + os.replace). A kill at any moment leaves either the old or
  the new checkpoint, never a half one under a step name; leftover temp directories are ignored
  and removed on the next start. The ``keep_last`` newest checkpoints (and ``best``) are kept.
  No pickle anywhere: tensors in safetensors (the optimizer's per-parameter tensors flattened as
  ``"<param index>.<name>"``; its scalar state, e.g. ``step``, and the param-group
  hyper-parameters in state.json), everything else JSON.
* **Resume.** ``--resume auto`` (default) continues from the newest complete checkpoint of
  ``<out>/ckpt`` (the ``latest`` pointer, cross-checked by scanning for the highest complete
  ``step_*``); ``never`` insists on a fresh run (refuses a directory with checkpoints); a path resumes from that checkpoint directory. Resuming
  refuses a different model config, data set (fingerprint), seed or batch size.
* **DDP.** Under torchrun (``WORLD_SIZE`` > 1) the process group is initialized from the
  environment (gloo on CPU, nccl on CUDA), the model is wrapped in DistributedDataParallel
  (``find_unused_parameters`` only in the ablations where parts of the model get no gradient:
  random / no mask, no profile input), each rank reads its own shard of every epoch's permutation
  (``--batch-size`` is per process), noise seeds are offset by rank, InfoNCE negatives are the
  local batch, and DDP broadcasts rank 0's buffers (bank, Fisher) every forward. Validation is
  sharded across ranks and all-reduced. Only rank 0 writes checkpoints, logs and the progress bar.
* **Validation / early stopping.** Every ``eval_every`` steps the EMA model's loss on the
  validation day's windows (fixed noise seeds, so comparable across evaluations); the best one is
  checkpointed and pointed to by ``ckpt/best``; ``patience`` evaluations without improvement stop
  the run (0: never).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import platform
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from umask.runtime.core.errors import InputError
from umask.train.models.umask.data import (ProfileTable, StepBatchSampler, UserData, UserWindowDataset, build_profile_table,
                                 channel_rms, collate, load_users, population_fingerprint, simulated_users,
                                 users_from_trace, val_windows)
from umask.train.models.umask.model import UMASK_CONFIGS, UMask, UMaskConfig

log = logging.getLogger(__name__)

CKPT_FORMAT = 1
CKPT_FILES = ("model.safetensors", "ema.safetensors", "optimizer.safetensors", "config.json", "state.json")
STEP_PREFIX = "step_"
# TrainConfig fields whose change would make a resumed run a different run
RESUME_MUST_MATCH = ("model", "model_overrides", "seed", "batch_size", "data", "n_users", "sim_seed",
                     "profile_source")


# -----------------------------------------------------------------------------
# Configuration
# -----------------------------------------------------------------------------

@dataclass
class TrainConfig:
    model: str = "tiny"                                   # UMASK_CONFIGS name
    model_overrides: dict[str, Any] = field(default_factory=dict)   # UMaskConfig fields, e.g. mask_mode
    steps: int = 1000                                     # total optimizer steps (sets the LR schedule)
    stop_at: int | None = None                         # stop this invocation after this global step
    batch_size: int = 8                                   # per process
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    ckpt_every: int = 100
    keep_last: int = 3
    eval_every: int = 0                                   # 0: no validation
    eval_batches: int = 8
    patience: int = 0                                     # evaluations without improvement; 0: no early stop
    log_every: int = 10
    out: str = "artifacts/train/run"
    resume: str = "auto"                                  # "auto" | "never" | a checkpoint directory
    data: str | None = None                            # users .npz (dataset.save_users) or a trace file
    n_users: int = 200                                    # simulated users when data is None
    sim_seed: int = 0
    profile_source: str = "template"                      # "template" (SBERT) | "none"
    sbert_cache: str | None = "cache/sbert"            # SBERT embedding cache (None: no cache)
    num_threads: int = 1                                  # torch intra-op threads per process
    num_workers: int = 0                                  # DataLoader workers
    device: str = "auto"                                  # "auto" | "cpu" | "cuda" | "cuda:N"
    progress: bool = True                                 # tqdm bar on rank 0

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if self.model not in UMASK_CONFIGS:
            raise InputError(f"unknown model config {self.model!r}; choose from {sorted(UMASK_CONFIGS)}")
        if self.steps < 1 or self.batch_size < 1 or self.ckpt_every < 1 or self.log_every < 1:
            raise InputError("steps, batch_size, ckpt_every and log_every must be >= 1")
        if self.stop_at is not None and self.stop_at < 0:
            raise InputError("stop_at must be >= 0")
        if self.warmup < 0 or self.keep_last < 1 or self.eval_every < 0 or self.patience < 0:
            raise InputError("warmup, eval_every, patience must be >= 0 and keep_last >= 1")
        if self.profile_source not in ("template", "none"):
            raise InputError(f"profile_source must be 'template' or 'none', got {self.profile_source!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def model_config(self) -> UMaskConfig:
        return replace(UMASK_CONFIGS[self.model], **self.model_overrides)


# -----------------------------------------------------------------------------
# Distributed helpers
# -----------------------------------------------------------------------------

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed(device: torch.device) -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1 (env://), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    elif name == "cuda":
        name = f"cuda:{local_rank}"
    return torch.device(name)


# -----------------------------------------------------------------------------
# Seeds and RNG states
# -----------------------------------------------------------------------------

def step_seed(seed: int, rank: int, step: int, stream: int = 0) -> int:
    """A 63-bit seed for (run seed, rank, step, stream) from numpy's SeedSequence."""
    return int(np.random.SeedSequence([int(seed), int(rank), int(step), int(stream)]).generate_state(2, np.uint64)[0]
               & np.uint64(0x7FFF_FFFF_FFFF_FFFF))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch global RNG states as JSON-friendly lists / ints."""
    py = random.getstate()
    npst = np.random.get_state()
    out = {"python": [py[0], list(py[1]), py[2]],
           "numpy": [npst[0], npst[1].tolist(), int(npst[2]), int(npst[3]), float(npst[4])],
           "torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return out


def set_rng_state(st: dict[str, Any]) -> None:
    py = st["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = st["numpy"]
    np.random.set_state((n[0], np.array(n[1], np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(torch.tensor(st["torch"], dtype=torch.uint8))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in st["cuda"]])


# -----------------------------------------------------------------------------
# Optimizer, LR, EMA
# -----------------------------------------------------------------------------

def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """LR of optimizer step ``step`` (0-based): linear warm-up, then cosine to min_lr_ratio * lr."""
    if cfg.warmup > 0 and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    span = max(1, cfg.steps - cfg.warmup)
    prog = min(1.0, (step - cfg.warmup) / span)
    lo = cfg.lr * cfg.min_lr_ratio
    return lo + 0.5 * (cfg.lr - lo) * (1.0 + math.cos(math.pi * prog))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for pe, p in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(p.detach(), 1.0 - decay)
    for be, b in zip(ema.buffers(), model.buffers(), strict=True):
        be.copy_(b)


def ema_decay_at(n_updates: int, decay: float) -> float:
    return min(decay, (1.0 + n_updates) / (10.0 + n_updates))


# -----------------------------------------------------------------------------
# Checkpoint files (safetensors + JSON, no pickle)
# -----------------------------------------------------------------------------

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


def _fsync_dir(path: Path) -> None:
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


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def step_dir_name(step: int) -> str:
    return f"{STEP_PREFIX}{step:06d}"


def is_complete(path: Path) -> bool:
    """All checkpoint files present and readable (safetensors headers, state.json parses)."""
    path = Path(path)
    if not path.is_dir() or any(not (path / f).is_file() for f in CKPT_FILES):
        return False
    try:
        st = json.loads((path / "state.json").read_text())
        json.loads((path / "config.json").read_text())
        for f in ("model.safetensors", "ema.safetensors", "optimizer.safetensors"):
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
    _write_json(tmp / "config.json", config)
    _write_json(tmp / "state.json", {**state, "format": CKPT_FORMAT, "step": int(step), "optimizer": opt_meta})
    for f in CKPT_FILES:  # data of the files on disk before the rename makes them visible
        with open(tmp / f, "rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(tmp)
    if final.exists():  # the same step written again (e.g. after a resume): swap it out
        trash = root / f".trash-{name}-{os.getpid()}"
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(root)
    _atomic_text(root / "latest", name + "\n")
    # prune: keep the newest keep_last and anything named in ``keep`` (e.g. best)
    dirs = _step_dirs(root)
    for _, p in dirs[:-keep_last]:
        if p.name not in keep and p != final:
            shutil.rmtree(p, ignore_errors=True)
    return final


def clean_temp_dirs(root: Path) -> None:
    for p in list(root.glob(".tmp-*")) + list(root.glob(".trash-*")) + list(root.glob(".latest.tmp*")):
        log.info("removing leftover %s", p)
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def load_model(ckpt_dir: str | Path, *, ema: bool = True, device: str | torch.device = "cpu") -> tuple[UMask, dict[str, Any]]:
    """Rebuild a UMask from a checkpoint directory (EMA or raw weights) -> (model in eval mode, config.json)."""
    ckpt_dir = Path(ckpt_dir)
    config = json.loads((ckpt_dir / "config.json").read_text())
    model = UMask(UMaskConfig.from_dict(config["model"]))
    sd = load_file(str(ckpt_dir / ("ema.safetensors" if ema else "model.safetensors")), device=str(device))
    model.load_state_dict(sd)
    return model.to(device).eval(), config


# -----------------------------------------------------------------------------
# Data
# -----------------------------------------------------------------------------

def load_population(cfg: TrainConfig) -> tuple[list[UserData], dict[str, Any]]:
    """Users from ``cfg.data`` (.npz of dataset.save_users, or a trace file) or the simulator."""
    if cfg.data is None:
        users = simulated_users(cfg.n_users, cfg.sim_seed)
        info = {"source": "simulator (SYNTHETIC)", "n_users": cfg.n_users, "sim_seed": cfg.sim_seed}
    elif str(cfg.data).endswith(".npz"):
        users, meta = load_users(cfg.data)
        info = {"source": f"users file {cfg.data}", **{k: v for k, v in meta.items() if isinstance(v, (str, int, float))}}
    else:
        users = users_from_trace(cfg.data)
        info = {"source": f"trace {cfg.data}"}
    if not users:
        raise InputError("the data set has no users")
    info.update({"n_users_loaded": len(users), "tensor_shape": list(users[0].tensor.shape),
                 "fingerprint": population_fingerprint(users)})
    return users, info


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


# -----------------------------------------------------------------------------
# Training
# -----------------------------------------------------------------------------

class _Metrics:
    """Append-only metrics.jsonl on rank 0; on resume, records after the resumed step are dropped."""

    def __init__(self, path: Path, enabled: bool, resume_step: int) -> None:
        self.path, self.enabled = path, enabled
        if enabled and path.exists():
            keep = []
            for line in path.read_text().splitlines():
                try:
                    if int(json.loads(line).get("step", 0)) <= resume_step:
                        keep.append(line)
                except (ValueError, json.JSONDecodeError):
                    continue
            _atomic_text(path, "".join(x + "\n" for x in keep))

    def write(self, rec: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")


@torch.no_grad()
def evaluate(model: UMask, ds: UserWindowDataset, cfg: TrainConfig, device: torch.device, d: Dist) -> dict[str, float]:
    """Mean loss parts over up to ``eval_batches`` validation batches (fixed noise), sharded over ranks."""
    n_batches = min(cfg.eval_batches, math.ceil(len(ds) / cfg.batch_size))
    # a fixed permutation, so batches mix users (InfoNCE negatives) and every evaluation sees the same windows
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(step_seed(cfg.seed, 0, 0, 2))).tolist()
    sums: dict[str, float] = {}
    count = 0
    was_training = model.training
    model.eval()
    for b in range(d.rank, n_batches, d.world):
        idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        batch = _to(collate([ds[i] for i in idx]), device)
        g = torch.Generator().manual_seed(step_seed(cfg.seed, 0, b, stream=1))
        _, parts = model(batch, generator=g)
        for k, v in parts.items():
            if "/" not in k:
                sums[k] = sums.get(k, 0.0) + float(v)
        count += 1
    model.train(was_training)
    keys = sorted(sums) if sums else ["loss"]
    vec = torch.tensor([sums.get(k, 0.0) for k in keys] + [float(count)], dtype=torch.float64)
    if d.enabled:
        dist.all_reduce(vec)
    n = max(vec[-1].item(), 1.0)
    return {f"val/{k}": vec[i].item() / n for i, k in enumerate(keys)}


def _run_config(cfg: TrainConfig, mcfg: UMaskConfig, data_info: dict[str, Any], d: Dist) -> dict[str, Any]:
    return {"format": CKPT_FORMAT, "model": mcfg.to_dict(), "train": cfg.to_dict(), "data": data_info,
            "world_size": d.world,
            "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}}


def _check_resume(saved: dict[str, Any], current: dict[str, Any]) -> None:
    if saved["model"] != current["model"]:
        raise InputError("cannot resume: the model config differs from the checkpoint's "
                         f"({saved['model']} vs {current['model']})")
    for k in RESUME_MUST_MATCH:
        if saved["train"].get(k) != current["train"].get(k):
            raise InputError(f"cannot resume: train.{k} = {current['train'].get(k)!r}, "
                             f"checkpoint has {saved['train'].get(k)!r}")
    if saved["data"].get("fingerprint") != current["data"].get("fingerprint"):
        raise InputError("cannot resume: the data set differs from the checkpoint's (fingerprint)")
    if saved["train"].get("steps") != current["train"].get("steps"):
        log.warning("resuming with steps=%s (checkpoint run had %s): the LR schedule changes",
                    current["train"]["steps"], saved["train"]["steps"])
    if saved.get("world_size") != current.get("world_size"):
        log.warning("resuming with %s processes (checkpoint run had %s): the data order changes",
                    current.get("world_size"), saved.get("world_size"))



def train_step(model: Any, net: torch.nn.Module, batch: dict[str, Any], opt: torch.optim.Optimizer, ema: torch.nn.Module,
               cfg: Any, *, step: int, rank: int = 0) -> tuple[float, dict[str, Any], torch.Tensor | None]:
    """One optimizer step of Algorithm 1, shared by this trainer and train/milan_umask.py.

    ``model`` is the bare UMask (``net`` may be its DDP wrapper); ``cfg`` needs lr/warmup/steps/
    min_lr_ratio (for `lr_at`), seed, grad_clip and ema_decay. Every random draw of the step is
    seeded from (seed, rank, step), which is what makes resume exact. Returns (lr, loss parts,
    gradient norm or None).
    """
    lr = lr_at(step, cfg)
    for g_ in opt.param_groups:
        g_["lr"] = lr
    s = step_seed(cfg.seed, rank, step)
    torch.manual_seed(s)                                  # dropout and any other global draws
    gen = torch.Generator().manual_seed(s)                # t, eps, Gumbel, random masks
    opt.zero_grad(set_to_none=True)
    total, parts = net(batch, generator=gen)
    total.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 else None
    opt.step()
    # mask generator state (never inside forward): eq. 7 Fisher statistics, eqs. 9-11 bank
    mo, model.last_mask_out = model.last_mask_out, None
    a_tau = mo.features.get("a_tau")
    if model.cfg.mask_mode == "learned" and a_tau is not None and a_tau.grad is not None:
        model.maskgen.update_fisher(batch["task"], a_tau.grad, batch["avail"])
    if "h_b" in mo.features:  # absent only where a subclass skips the mask generator (Milan, mask_mode none)
        model.maskgen.update_bank(mo.features)
    ema_update(ema, model, ema_decay_at(step, cfg.ema_decay))
    return lr, parts, gnorm


def train(cfg: TrainConfig) -> Path:
    """Train (or resume) per ``cfg``; returns the final checkpoint directory."""
    torch.set_num_threads(max(1, cfg.num_threads))
    device0 = resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    d = init_distributed(device0)
    device = resolve_device(cfg.device, d.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    out = Path(cfg.out)
    ckpt_root = out / "ckpt"
    if d.is_main:
        out.mkdir(parents=True, exist_ok=True)
        ckpt_root.mkdir(exist_ok=True)
        clean_temp_dirs(ckpt_root)
    d.barrier()

    # ---- data (every rank builds the same deterministic population) ----
    t_data = time.perf_counter()
    users, data_info = load_population(cfg)
    C, _, H, W = users[0].tensor.shape
    mcfg = cfg.model_config().with_data(C, H, W, int(users[0].e_pos.shape[-1]))
    profiles: ProfileTable | None = None
    if mcfg.use_profile and cfg.profile_source != "none":
        if d.is_main:  # rank 0 fills the SBERT cache first; the others then read it
            profiles = build_profile_table(users, cfg.profile_source, cache_dir=cfg.sbert_cache)
        d.barrier()
        if not d.is_main:
            profiles = build_profile_table(users, cfg.profile_source, cache_dir=cfg.sbert_cache)
    train_ds = UserWindowDataset(users, mcfg.window, profiles=profiles, data_seed=cfg.seed)
    val_ds = UserWindowDataset(users, mcfg.window, val_windows(users, mcfg.window), profiles=profiles,
                               data_seed=cfg.seed)
    rms = channel_rms(users)
    data_info.update({"n_train_windows": len(train_ds), "n_val_windows": len(val_ds),
                      "channel_rms_train": [round(float(v), 6) for v in rms],
                      "profile_source": cfg.profile_source if profiles is not None else "none"})
    run_config = _run_config(cfg, mcfg, data_info, d)
    log.info("data: %d users, %d train / %d val windows (%.1f s)", len(users), len(train_ds), len(val_ds),
             time.perf_counter() - t_data)

    # ---- model, EMA, optimizer ----
    seed_everything(cfg.seed)                                  # identical init on every rank
    model = UMask(mcfg).to(device)
    seed_everything(step_seed(cfg.seed, d.rank, 0, stream=3) % 2**31)   # then per-rank global streams
    model.set_data_scale(torch.from_numpy(rms))
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = make_optimizer(model, cfg)
    log.info("model %s: %.3f M parameters (DiT %.3f M, mask generator %.3f M)", mcfg.name,
             model.num_params() / 1e6, model.dit.num_params() / 1e6, model.maskgen.num_params() / 1e6)

    # ---- resume ----
    start_step, best = 0, {"step": None, "val": None, "evals_since_best": 0}
    finished_early = False
    ckpt: Path | None = None
    if cfg.resume == "auto":
        ckpt = find_latest_checkpoint(ckpt_root)
    elif cfg.resume in ("never", "no", ""):
        existing = find_latest_checkpoint(ckpt_root)
        if existing is not None:
            raise InputError(f"--resume never, but {existing} exists: use --resume auto, another --out, "
                             "or delete the old run")
    else:
        ckpt = Path(cfg.resume)
        if not is_complete(ckpt):
            raise InputError(f"{ckpt} is not a complete checkpoint directory")
    if ckpt is not None:
        saved = json.loads((ckpt / "config.json").read_text())
        _check_resume(saved, run_config)
        state = json.loads((ckpt / "state.json").read_text())
        model.load_state_dict(load_file(str(ckpt / "model.safetensors"), device=str(device)))
        ema.load_state_dict(load_file(str(ckpt / "ema.safetensors"), device=str(device)))
        unflatten_optimizer(opt, load_file(str(ckpt / "optimizer.safetensors"), device=str(device)),
                            state["optimizer"])
        start_step = int(state["step"])
        best = state.get("best", best)
        finished_early = bool(state.get("stopped_early", False))
        if d.world == int(state.get("world_size", 1)) and "rng" in state:
            set_rng_state(state["rng"][d.rank] if isinstance(state["rng"], list) else state["rng"])
        log.info("resumed from %s (step %d)", ckpt, start_step)
    if d.is_main:
        _write_json(out / "config.json", run_config)

    end_step = cfg.steps if cfg.stop_at is None else min(cfg.steps, cfg.stop_at)
    if finished_early:
        log.info("the checkpointed run had stopped early (patience); nothing more to train")
        end_step = start_step
    sampler = StepBatchSampler(len(train_ds), cfg.batch_size, seed=cfg.seed, rank=d.rank, world=d.world,
                               start_step=start_step)
    loader = DataLoader(train_ds, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.num_workers,
                        pin_memory=device.type == "cuda", persistent_workers=cfg.num_workers > 0)
    # parameters without a gradient exist only in the ablations (no profile MLP input, random / no mask)
    find_unused = mcfg.mask_mode != "learned" or profiles is None
    net: torch.nn.Module = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                               find_unused_parameters=find_unused) if d.enabled else model
    metrics = _Metrics(out / "metrics.jsonl", d.is_main, start_step)

    stopped_early = False

    def gather_rng() -> Any:
        st = rng_state()
        if not d.enabled:
            return st
        allst: list[Any] = [None] * d.world
        dist.all_gather_object(allst, st)  # JSON-friendly lists
        return allst

    def checkpoint(step: int, *, force_best: bool = False) -> Path:
        rng_all = gather_rng()
        path = ckpt_root / step_dir_name(step)
        if d.is_main:
            state = {"world_size": d.world, "rng": rng_all, "best": best, "stopped_early": stopped_early,
                     "data_cursor": {**sampler.cursor(step), "samples_seen": step * cfg.batch_size * d.world},
                     "time": time.time()}
            keep = (step_dir_name(best["step"]),) if best.get("step") is not None else ()
            path = save_checkpoint(ckpt_root, step, model, ema, opt, run_config, state, cfg.keep_last, keep)
            if force_best:
                _atomic_text(ckpt_root / "best", path.name + "\n")
        d.barrier()
        return path

    from tqdm.auto import tqdm

    bar = tqdm(total=end_step, initial=start_step, disable=not (d.is_main and cfg.progress), dynamic_ncols=True,
               desc=f"train {mcfg.name}", unit="step")
    last_path: Path | None = ckpt
    acc: dict[str, float] = {}
    postfix: dict[str, str] = {}
    acc_n, t_log, step = 0, time.perf_counter(), start_step
    t_start = time.perf_counter()
    it = iter(loader) if start_step < end_step else None
    model.train()
    while step < end_step and it is not None:
        batch = _to(next(it), device)
        lr, parts, gnorm = train_step(model, net, batch, opt, ema, cfg, step=step, rank=d.rank)
        step += 1
        bar.update(1)

        for k, v in parts.items():
            acc[k] = acc.get(k, 0.0) + float(v)
        if gnorm is not None:
            acc["grad_norm"] = acc.get("grad_norm", 0.0) + float(gnorm)
        acc_n += 1
        if step % cfg.log_every == 0 or step == end_step:
            dt = time.perf_counter() - t_log
            rec = {"step": step, "lr": lr, **{k: v / acc_n for k, v in acc.items()},
                   "steps_per_s": acc_n / dt, "samples_per_s": acc_n * cfg.batch_size * d.world / dt,
                   "elapsed_s": time.perf_counter() - t_start}
            metrics.write(rec)
            postfix.update(loss=f"{rec['loss']:.4f}", lr=f"{lr:.2e}")
            bar.set_postfix(postfix)
            acc, acc_n, t_log = {}, 0, time.perf_counter()

        improved = False
        if cfg.eval_every and step % cfg.eval_every == 0:
            val = evaluate(ema, val_ds, cfg, device, d)
            metrics.write({"step": step, **val})
            if best["val"] is None or val["val/loss"] < best["val"]:
                best = {"step": step, "val": val["val/loss"], "evals_since_best": 0}
                improved = True
            else:
                best["evals_since_best"] = int(best["evals_since_best"]) + 1
            postfix["val"] = f"{val['val/loss']:.4f}"
            bar.set_postfix(postfix)
            if cfg.patience and best["evals_since_best"] >= cfg.patience:
                log.info("early stop at step %d: no validation improvement in %d evaluations (best %.5f at %s)",
                         step, cfg.patience, best["val"], best["step"])
                stopped_early = True
        if step % cfg.ckpt_every == 0 or step == end_step or improved or stopped_early:
            last_path = checkpoint(step, force_best=improved)
        if stopped_early:
            break
    bar.close()
    if last_path is None or last_path.name != step_dir_name(step):
        last_path = checkpoint(step)                          # e.g. nothing to train and no checkpoint yet
    log.info("done: step %d, %s", step, last_path)
    if d.enabled:
        d.barrier()
        dist.destroy_process_group()
    return Path(last_path)


# -----------------------------------------------------------------------------
# Command line
# -----------------------------------------------------------------------------

def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    try:
        return k, json.loads(v)
    except json.JSONDecodeError:
        return k, v


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m umask.train.models.umask.trainer",
        description="Joint U-MASK training (profile MLP + mask generator + DiT, eqs. 19-20) with AdamW, EMA, "
                    "atomic safetensors checkpoints and automatic resume. Under torchrun it trains with DDP "
                    "(gloo on CPU): torchrun --standalone --nproc_per_node=2 -m umask.train.models.umask.trainer ...",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--config", default=d.model, choices=sorted(UMASK_CONFIGS), help="named model size")
    g.add_argument("--set", dest="overrides", action="append", default=[], type=_parse_override, metavar="KEY=VALUE",
                   help="override a UMaskConfig field (JSON value), e.g. --set w_nce=0.05; repeatable")
    g.add_argument("--mask-mode", choices=("learned", "random", "none"), default=None,
                   help="evidence mask: learned U-MASK, random with the same base budget, or none (all available)")
    g.add_argument("--no-profile", action="store_true", help="ablation: U-MASK without U-SCOPE (no profile h_u)")
    g.add_argument("--no-dit-conditioning", action="store_true", help="baseline: DiT without user conditioning")
    g = p.add_argument_group("optimization")
    g.add_argument("--steps", type=int, default=d.steps, help="total optimizer steps (sets the LR schedule)")
    g.add_argument("--stop-at", type=int, default=None, help="stop this invocation after this global step")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="windows per step and process")
    g.add_argument("--lr", type=float, default=d.lr)
    g.add_argument("--min-lr-ratio", type=float, default=d.min_lr_ratio, help="final LR as a fraction of --lr")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--warmup", type=int, default=d.warmup, help="linear LR warm-up steps")
    g.add_argument("--grad-clip", type=float, default=d.grad_clip, help="max gradient norm (0: off)")
    g.add_argument("--ema-decay", type=float, default=d.ema_decay)
    g.add_argument("--seed", type=int, default=d.seed)
    g = p.add_argument_group("checkpoints and logging")
    g.add_argument("--out", default=d.out, help="run directory (config.json, metrics.jsonl, ckpt/)")
    g.add_argument("--ckpt-every", type=int, default=d.ckpt_every, help="checkpoint every N steps")
    g.add_argument("--keep-last", type=int, default=d.keep_last, help="checkpoints to keep")
    g.add_argument("--resume", default=d.resume, help="'auto' (newest complete checkpoint in --out), 'never', "
                                                      "or a checkpoint directory")
    g.add_argument("--log-every", type=int, default=d.log_every)
    g.add_argument("--eval-every", type=int, default=d.eval_every, help="validation-day loss every N steps (0: off)")
    g.add_argument("--eval-batches", type=int, default=d.eval_batches)
    g.add_argument("--patience", type=int, default=d.patience, help="early stop after N evaluations without "
                                                                    "improvement (0: off)")
    g.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    g = p.add_argument_group("data")
    g.add_argument("--data", default=None, help="users .npz (dataset.save_users) or a trace file; default: simulate")
    g.add_argument("--n-users", type=int, default=d.n_users, help="simulated users (without --data)")
    g.add_argument("--sim-seed", type=int, default=d.sim_seed, help="simulator seed (without --data)")
    g.add_argument("--profile-source", choices=("template", "none"), default=d.profile_source,
                   help="U-SCOPE profile text for SBERT")
    g.add_argument("--sbert-cache", default=d.sbert_cache, help="SBERT embedding cache folder ('' for none)")
    g = p.add_argument_group("system")
    g.add_argument("--num-threads", type=int, default=d.num_threads, help="torch threads per process")
    g.add_argument("--num-workers", type=int, default=d.num_workers, help="DataLoader worker processes")
    g.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N")
    g.add_argument("-v", "--verbose", action="store_true")
    return p


def config_from_args(ns: argparse.Namespace) -> TrainConfig:
    overrides = dict(ns.overrides)
    if ns.mask_mode is not None:
        overrides["mask_mode"] = ns.mask_mode
    if ns.no_profile:
        overrides["use_profile"] = False
    if ns.no_dit_conditioning:
        overrides["dit_conditioning"] = False
    return TrainConfig(model=ns.config, model_overrides=overrides, steps=ns.steps, stop_at=ns.stop_at,
                       batch_size=ns.batch_size, lr=ns.lr, min_lr_ratio=ns.min_lr_ratio, weight_decay=ns.weight_decay,
                       warmup=ns.warmup, grad_clip=ns.grad_clip, ema_decay=ns.ema_decay, seed=ns.seed,
                       ckpt_every=ns.ckpt_every, keep_last=ns.keep_last, eval_every=ns.eval_every,
                       eval_batches=ns.eval_batches, patience=ns.patience, log_every=ns.log_every, out=ns.out,
                       resume=ns.resume, data=ns.data, n_users=ns.n_users, sim_seed=ns.sim_seed,
                       profile_source=ns.profile_source, sbert_cache=ns.sbert_cache or None,
                       num_threads=ns.num_threads, num_workers=ns.num_workers, device=ns.device,
                       progress=not ns.no_progress)


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.DEBUG if ns.verbose else (logging.INFO if rank == 0 else logging.WARNING),
                        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        cfg = config_from_args(ns)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    path = train(cfg)
    if rank == 0:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
