"""The one training loop of every model family: AdamW, LR schedule, EMA, checkpoints, resume, DDP.

A family (per-user U-MASK: train/models/umask/trainer.py; U-MASK on a grid:
train/models/umask/grid.py) is a small object, :class:`Family`, that loads its data, builds its
model, yields training batches, computes one step's loss and scores validation; :func:`run`
does the rest with a :class:`~umask.train.common.config.LoopConfig`::

    path = run(cfg, MyFamily(cfg))          # -> the final checkpoint directory

and writes ``<cfg.out>/``: ``config.json`` (model, training settings, data fingerprint),
``metrics.jsonl`` (training records every ``log_every`` steps, validation records; rank 0) and
``ckpt/`` (train/common/checkpoints.py: ``step_XXXXXX/``, ``latest``, ``best``).

Design decisions
----------------
* **Optimizer.** AdamW; weight decay only on >= 2-D weights (matrices, embedding tables), none on
  biases, norms and scalar / vector parameters (nanoGPT rule). LR: linear warm-up over ``warmup``
  steps, then cosine decay to ``min_lr_ratio * lr`` at ``steps``, computed from the step number
  (no scheduler state). Gradient-norm clipping at ``grad_clip``.
* **EMA.** A full copy of the model (parameters lerped, buffers copied) with decay
  ``min(ema_decay, (1 + n) / (10 + n))`` (fast early warm-up). Validation uses it.
* **Randomness.** Model init from ``seed`` on every rank (DDP also broadcasts rank 0's weights).
  Each step draws ALL its training noise from generators seeded by ``SeedSequence([seed, rank,
  step])`` (the family's loss gets that generator; ``torch.manual_seed`` is set from it for
  dropout), and the family's batches are a pure function of (seed, step), so a resumed run repeats
  an uninterrupted one exactly. The python / numpy / torch global RNG states are saved in
  state.json (as lists of ints) and restored, for any other consumer.
* **Resume.** ``resume="auto"`` continues from the newest complete checkpoint of ``<out>/ckpt``;
  ``"never"`` refuses a directory with checkpoints; a path resumes from that checkpoint. Resuming
  refuses a different model config, data (fingerprint) or any setting named in the config class's
  ``RESUME_MUST_MATCH``; a run stopped early by ``patience`` stays stopped, one stopped by
  ``max_minutes`` or ``stop_at`` continues.
* **DDP.** Under torchrun (``WORLD_SIZE`` > 1) the process group is initialized from the
  environment (gloo on CPU, nccl on CUDA) and the model wrapped in DistributedDataParallel
  (``Family.find_unused_parameters``); each rank reads its own shard of the batches, noise seeds
  are offset by rank, validation is sharded and all-reduced (:func:`evaluate`). Only rank 0
  writes checkpoints, logs and the progress bar.
* **Validation / early stopping.** Every ``eval_every`` steps and at the last step, the family
  scores the EMA model (``val/loss``, lower is better); the best one is checkpointed and named by
  ``ckpt/best`` (the last checkpoint when no validation ran); ``patience`` evaluations without
  improvement stop the run.
* **Progress.** A tqdm bar on rank 0 (loss, lr, val in its postfix); with ``progress=False`` a log
  line per training record instead.
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
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel as DDP

from umask.runtime.core.errors import InputError
from umask.train.common.checkpoints import (CKPT_FORMAT, atomic_text, clean_temp_dirs, find_latest_checkpoint,
                                            is_complete, load_training_state, resolve_checkpoint, save_checkpoint,
                                            step_dir_name, write_json)
from umask.train.common.config import LoopConfig

log = logging.getLogger(__name__)

Batch = dict[str, Any]


# ------------------------------------------------------------------------------------------------
# Distributed helpers
# ------------------------------------------------------------------------------------------------
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


def to_device(batch: Batch, device: torch.device) -> Batch:
    """Tensors of a batch moved to ``device`` (anything else unchanged)."""
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


# ------------------------------------------------------------------------------------------------
# Seeds and RNG states
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# Optimizer, LR, EMA
# ------------------------------------------------------------------------------------------------
def make_optimizer(model: torch.nn.Module, cfg: LoopConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on >= 2-D weights only. A model may name parameters that train at a
    multiple of the scheduled LR (``model.lr_scales()``: name -> multiplier, e.g. U-MASK's budget
    logit); each multiplier gets its own group, ``lr_scale`` is applied by :func:`optimizer_step`."""
    scales = model.lr_scales() if hasattr(model, "lr_scales") else {}
    groups: dict[tuple[bool, float], list[torch.nn.Parameter]] = {(True, 1.0): [], (False, 1.0): []}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((p.dim() >= 2, float(scales.get(name, 1.0))), []).append(p)
    return torch.optim.AdamW([{"params": ps, "weight_decay": cfg.weight_decay if decay else 0.0, "lr_scale": sc}
                              for (decay, sc), ps in groups.items()], lr=cfg.lr, betas=tuple(cfg.betas))


def lr_at(step: int, cfg: LoopConfig) -> float:
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


# ------------------------------------------------------------------------------------------------
# The family protocol
# ------------------------------------------------------------------------------------------------
class Family:
    """What a model family tells the loop. Subclass it and fill in the methods that raise.

    The loop calls, in order: :meth:`setup` (once per process, data loaded), :meth:`model_dict`,
    :meth:`data_info`, :meth:`build_model` (under the run seed), then per step
    :meth:`loss` / :meth:`after_step` on the batches of :meth:`train_batches`, and
    :meth:`validate` on the EMA model every ``eval_every`` steps.
    """

    trainer: str = "umask.train.common.loop"      # module named in config.json ("trainer")
    find_unused_parameters: bool = False           # DDP: parameters that may get no gradient

    def setup(self, d: Dist, device: torch.device) -> None:
        """Load the data (every rank builds the same); rank 0 may fill caches first (``d.barrier()``)."""

    def model_dict(self) -> dict[str, Any]:
        """The model config as JSON (resume refuses a different one)."""
        raise NotImplementedError

    def data_info(self) -> dict[str, Any]:
        """What the data is, for config.json; its ``fingerprint`` must match on resume."""
        raise NotImplementedError

    def build_model(self) -> torch.nn.Module:
        """A fresh model (on CPU; the loop moves it), built under the run seed."""
        raise NotImplementedError

    def train_batches(self, start_step: int, d: Dist) -> tuple[Iterator[Batch], Callable[[int], dict[str, Any]]]:
        """(this rank's batches from step ``start_step`` on, cursor(step) -> JSON for state.json)."""
        raise NotImplementedError

    def loss(self, net: torch.nn.Module, batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, Any]]:
        """(scalar loss to minimize, loss parts to log) of one batch; all noise from ``generator``."""
        return net(batch, generator=generator)

    def after_step(self, model: torch.nn.Module, batch: Batch) -> None:
        """Model state updated after the optimizer step (outside autograd); default none."""

    def validate(self, ema: torch.nn.Module, device: torch.device, d: Dist) -> dict[str, float]:
        """Validation scores of the EMA model; ``val/loss`` (lower is better) is the criterion."""
        raise NotImplementedError

    def describe(self, rec: Mapping[str, Any]) -> str:
        """Extra text of a training log line (progress bar off)."""
        return ""


# ------------------------------------------------------------------------------------------------
# Steps, validation, metrics
# ------------------------------------------------------------------------------------------------
def optimizer_step(family: Family, model: torch.nn.Module, net: torch.nn.Module, batch: Batch,
                   opt: torch.optim.Optimizer, ema: torch.nn.Module, cfg: LoopConfig, *, step: int,
                   rank: int = 0) -> tuple[float, dict[str, Any], torch.Tensor | None]:
    """One optimizer step: LR from the schedule, seeded noise, loss, backward, clip, AdamW,
    the family's after-step update, EMA. ``model`` is the bare module (``net`` may be its DDP
    wrapper). Returns (lr, loss parts, gradient norm or None)."""
    lr = lr_at(step, cfg)
    for g_ in opt.param_groups:
        g_["lr"] = lr * g_.get("lr_scale", 1.0)
    s = step_seed(cfg.seed, rank, step)
    torch.manual_seed(s)                                  # dropout and any other global draws
    gen = torch.Generator().manual_seed(s)                # the family's noise
    opt.zero_grad(set_to_none=True)
    total, parts = family.loss(net, batch, gen)
    total.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 else None
    if not bool(torch.isfinite(total)) or (gnorm is not None and not bool(torch.isfinite(gnorm))):
        # stop before the weights turn NaN: a checkpoint written after this step would serve NaN without a word
        raise InputError(f"step {step}: the loss or its gradient is not finite ({float(total.detach()):g}); the "
                         "network diverged on this data and these settings, so no later checkpoint is written")
    opt.step()
    family.after_step(model, batch)
    ema_update(ema, model, ema_decay_at(step, cfg.ema_decay))
    return lr, parts, gnorm


@torch.no_grad()
def evaluate(model: torch.nn.Module, ds: Any, cfg: LoopConfig, device: torch.device, d: Dist,
             collate_fn: Callable[[Sequence[Any]], Batch]) -> dict[str, float]:
    """Mean loss parts (``model(batch, generator=g)``) over up to ``eval_batches`` batches of ``ds``
    with fixed noise, sharded over ranks: ``{"val/<part>": value}``."""
    n_batches = min(cfg.eval_batches, math.ceil(len(ds) / cfg.batch_size))
    # a fixed permutation, so batches mix items (e.g. InfoNCE negatives) and every evaluation sees the same ones
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(step_seed(cfg.seed, 0, 0, 2))).tolist()
    sums: dict[str, float] = {}
    count = 0
    was_training = model.training
    model.eval()
    for b in range(d.rank, n_batches, d.world):
        idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        batch = to_device(collate_fn([ds[i] for i in idx]), device)
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


class Metrics:
    """Append-only metrics.jsonl on rank 0; on resume, records after the resumed step are dropped."""

    def __init__(self, path: Path, enabled: bool, resume_step: int) -> None:
        self.path, self.enabled = path, enabled
        if enabled and path.exists():
            keep = []
            for line in path.read_text().splitlines():
                try:
                    if int(json.loads(line).get("step", 0)) <= resume_step:
                        keep.append(line)
                except (ValueError, json.JSONDecodeError, AttributeError):
                    continue
            atomic_text(path, "".join(x + "\n" for x in keep))

    def write(self, rec: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")


def check_resume(saved: dict[str, Any], current: dict[str, Any], must_match: Sequence[str]) -> None:
    """Refuse to resume ``saved`` (a checkpoint's config.json) as ``current`` when it is another run."""
    if saved["model"] != current["model"]:
        raise InputError("cannot resume: the model config differs from the checkpoint's "
                         f"({saved['model']} vs {current['model']})")
    for k in must_match:
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


def warm_start(init_from: str | Path, run_config: dict[str, Any], model: torch.nn.Module, ema: torch.nn.Module,
               device: str | torch.device = "cpu") -> Path:
    """Load the weights (model and EMA) of the checkpoint ``init_from`` names into a fresh run: a
    fine-tune on other data or with another schedule. The optimizer, the step and the LR schedule
    start anew. Refuses a checkpoint of another model config (names both), except in the fields the
    model class lists as shaping only the training loss (``TRAINING_ONLY_FIELDS``, e.g. a loss
    weight) or as changing inputs of the same network (``WARM_START_FIELDS``, e.g. the values of a prior
    input; the weights must still load strictly): those may change in a fine-tune and are logged."""
    ckpt = resolve_checkpoint(init_from)
    saved = json.loads((ckpt / "config.json").read_text())
    free = set(getattr(model, "TRAINING_ONLY_FIELDS", ())) | set(getattr(model, "WARM_START_FIELDS", ()))
    old_m, new_m = saved.get("model") or {}, run_config["model"]
    def _fixed(d: dict[str, Any]) -> dict[str, Any]:        # nested too: e.g. UMaskConfig.window mirrors prior
        return {k: _fixed(v) if isinstance(v, dict) else v for k, v in d.items() if k not in free}

    if _fixed(old_m) != _fixed(new_m):
        raise InputError(f"--init-from {init_from}: the model config differs from the checkpoint's "
                         f"({saved.get('model')} vs {run_config['model']})")
    what = ", ".join(f"{k} {old_m.get(k)!r} -> {new_m.get(k)!r}" for k in sorted(free) if old_m.get(k) != new_m.get(k))
    if what:
        log.info("warm start changes fields the weights do not depend on: %s", what)
    weights = load_file(str(ckpt / "model.safetensors"), device=str(device))
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:            # a WARM_START_FIELDS change that changes the network (e.g. prior none -> blend)
        raise InputError(f"--init-from {init_from}: its weights do not fit this model ({what or 'same config'}): "
                         f"{str(e).splitlines()[0][:300]}") from e
    ema_path = ckpt / "ema.safetensors"
    ema.load_state_dict(load_file(str(ema_path), device=str(device)) if ema_path.is_file() else weights)
    log.info("warm start from %s (trained on data %s); fresh optimizer and schedule", ckpt,
             saved.get("data", {}).get("fingerprint", "?"))
    return ckpt


def _resume_point(cfg: LoopConfig, ckpt_root: Path) -> Path | None:
    if cfg.resume == "auto":
        return find_latest_checkpoint(ckpt_root)
    if cfg.resume in ("never", "no", ""):
        existing = find_latest_checkpoint(ckpt_root)
        if existing is not None:
            raise InputError(f"--resume never, but {existing} exists: use --resume auto, another --out, "
                             "or delete the old run")
        return None
    ckpt = Path(cfg.resume)
    if not is_complete(ckpt):
        raise InputError(f"--resume {ckpt}: not a complete checkpoint directory")
    return ckpt


# ------------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------------
def run(cfg: LoopConfig, family: Family) -> Path:
    """Train (or resume) ``family`` per ``cfg``; returns the final checkpoint directory."""
    torch.set_num_threads(max(1, cfg.num_threads))
    d = init_distributed(resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0"))))
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

    t_data = time.perf_counter()
    family.setup(d, device)
    run_config = {"format": CKPT_FORMAT, "model": family.model_dict(), "train": cfg.to_dict(),
                  "data": family.data_info(), "world_size": d.world, "trainer": family.trainer,
                  "versions": {"python": platform.python_version(), "torch": torch.__version__,
                               "numpy": np.__version__}}
    log.info("data ready in %.1f s", time.perf_counter() - t_data)

    # ---- model, EMA, optimizer ----
    seed_everything(cfg.seed)                                  # identical init on every rank
    model = family.build_model().to(device)
    seed_everything(step_seed(cfg.seed, d.rank, 0, stream=3) % 2**31)   # then per-rank global streams
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = make_optimizer(model, cfg)

    # ---- resume ----
    start_step, best = 0, {"step": None, "val": None, "evals_since_best": 0}
    train_seconds, finished = 0.0, False
    ckpt = _resume_point(cfg, ckpt_root)
    if ckpt is not None:
        check_resume(json.loads((ckpt / "config.json").read_text()), run_config, type(cfg).RESUME_MUST_MATCH)
        state = load_training_state(ckpt, model, ema, opt, device)
        start_step = int(state["step"])
        best = state.get("best", best)
        train_seconds = float(state.get("train_seconds", 0.0))
        finished = bool(state.get("stopped_early", False)) or state.get("stopped") == "patience"
        if d.world == int(state.get("world_size", 1)) and state.get("rng"):
            set_rng_state(state["rng"][d.rank] if isinstance(state["rng"], list) else state["rng"])
        log.info("resumed from %s (step %d)", ckpt, start_step)
    elif cfg.init_from:
        warm_start(cfg.init_from, run_config, model, ema, device)
    if d.is_main:
        write_json(out / "config.json", run_config)

    end_step = cfg.steps if cfg.stop_at is None else min(cfg.steps, cfg.stop_at)
    if finished:
        log.info("the checkpointed run had stopped early (patience); nothing more to train")
        end_step = start_step
    batches, cursor = family.train_batches(start_step, d)
    net: torch.nn.Module = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                               find_unused_parameters=family.find_unused_parameters) if d.enabled else model
    metrics = Metrics(out / "metrics.jsonl", d.is_main, start_step)
    stopped: str | None = None

    def gather_rng() -> Any:
        st = rng_state()
        if not d.enabled:
            return st
        allst: list[Any] = [None] * d.world
        dist.all_gather_object(allst, st)  # JSON-friendly lists
        return allst

    def checkpoint(step: int, *, is_best: bool = False) -> Path:
        rng_all = gather_rng()
        path = ckpt_root / step_dir_name(step)
        if d.is_main:
            state = {"world_size": d.world, "rng": rng_all, "best": best, "stopped": stopped,
                     "stopped_early": stopped == "patience", "train_seconds": round(train_seconds, 2),
                     "data_cursor": {**cursor(step), "samples_seen": step * cfg.batch_size * d.world},
                     "time": time.time()}
            keep = (step_dir_name(best["step"]),) if best.get("step") is not None else ()
            path = save_checkpoint(ckpt_root, step, model, ema, opt, run_config, state, cfg.keep_last, keep)
            if is_best:
                atomic_text(ckpt_root / "best", path.name + "\n")
        d.barrier()
        return path

    from tqdm.auto import tqdm

    bar = tqdm(total=end_step, initial=start_step, disable=not (d.is_main and cfg.progress), dynamic_ncols=True,
               desc=f"train {run_config['model'].get('name', '')}".strip(), unit="step")
    last_path: Path | None = ckpt
    acc: dict[str, float] = {}
    postfix: dict[str, str] = {}
    acc_n, t_log, step = 0, time.perf_counter(), start_step
    t_start = time.perf_counter()
    model.train()
    while step < end_step:
        t_step = time.perf_counter()
        batch = to_device(next(batches), device)
        lr, parts, gnorm = optimizer_step(family, model, net, batch, opt, ema, cfg, step=step, rank=d.rank)
        step += 1
        train_seconds += time.perf_counter() - t_step
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
                   "elapsed_s": time.perf_counter() - t_start, "train_seconds": round(train_seconds, 1)}
            metrics.write(rec)
            postfix.update(loss=f"{rec['loss']:.4f}", lr=f"{lr:.2e}")
            bar.set_postfix(postfix)
            if not cfg.progress and d.is_main:
                log.info("step %d loss %.4f lr %.2e %.2f s/step%s", step, rec["loss"], lr, dt / acc_n,
                         family.describe(rec))
            acc, acc_n, t_log = {}, 0, time.perf_counter()

        improved = False
        if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
            t_val = time.perf_counter()
            val = family.validate(ema, device, d)
            metrics.write({"step": step, **val, "val_seconds": round(time.perf_counter() - t_val, 1)})
            if best["val"] is None or val["val/loss"] < best["val"]:
                best = {"step": step, "val": val["val/loss"], "evals_since_best": 0}
                improved = True
            else:
                best["evals_since_best"] = int(best["evals_since_best"]) + 1
            postfix["val"] = f"{val['val/loss']:.4f}"
            bar.set_postfix(postfix)
            log.debug("step %d val loss %.4f (best %.4f at %s)", step, val["val/loss"], best["val"], best["step"])
            if cfg.patience and best["evals_since_best"] >= cfg.patience:
                log.info("early stop at step %d: no validation improvement in %d evaluations (best %.5f at %s)",
                         step, cfg.patience, best["val"], best["step"])
                stopped = "patience"
        if cfg.max_minutes is not None and train_seconds >= 60.0 * cfg.max_minutes and not stopped:
            log.info("stopping at step %d: %.1f minutes of training reached", step, train_seconds / 60.0)
            stopped = "max_minutes"
        if step % cfg.ckpt_every == 0 or step == end_step or improved or stopped:
            last_path = checkpoint(step, is_best=improved)
        if stopped:
            break
    bar.close()
    if last_path is None or last_path.name != step_dir_name(step):
        last_path = checkpoint(step)                          # e.g. nothing to train and no checkpoint yet
    if d.is_main and not (ckpt_root / "best").exists():      # no validation ran: the last checkpoint stands in
        atomic_text(ckpt_root / "best", last_path.name + "\n")
    log.info("done: step %d, %.0f s of training, %s", step, train_seconds, last_path)
    if d.enabled:
        d.barrier()
        dist.destroy_process_group()
    return Path(last_path)


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None, parser: argparse.ArgumentParser,
         to_config: Callable[[argparse.Namespace], LoopConfig], train: Callable[[Any], Path], *, prog: str) -> int:
    """A family's ``main``: parse (``-v`` for debug logging), log per rank (rank 0 at INFO, the others
    WARNING), build the config and train (an InputError exits with its ``exit_code`` and one line), print the final
    checkpoint on rank 0."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    verbose = bool(getattr(ns, "verbose", False))
    logging.basicConfig(level=logging.DEBUG if verbose else (logging.INFO if rank == 0 else logging.WARNING),
                        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    log.info("command: %s", shlex.join(["python", "-m", prog, *argv]))
    try:
        path = train(to_config(ns))
    except InputError as e:                   # a bad setting or data file: its message, no traceback
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code                    # the class's status (umask.runtime.core.errors), as `umask` uses
    if rank == 0:
        print(path)
    return 0
