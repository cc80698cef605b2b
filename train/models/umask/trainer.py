"""Joint per-user U-MASK training (Algorithm 1, eqs. 19-20) over the shared loop (train/common/loop.py).

``python -m umask.train.models.umask.trainer --config tiny --steps 50 --out artifacts/train/tiny`` trains the
named model config (train/models/umask/model.UMASK_CONFIGS: tiny / small / base) on simulated users
(or ``--data`` = a `data.save_users` .npz or a trace file) and writes ``<out>/``::

    config.json                the run's full configuration (model, training, data fingerprint)
    metrics.jsonl              train / validation records (rank 0)
    ckpt/step_XXXXXX/          model.safetensors  ema.safetensors  optimizer.safetensors
                               config.json  state.json
    ckpt/latest                text file: name of the newest COMPLETE checkpoint directory
    ckpt/best                  the checkpoint with the best validation loss (--eval-every; else the last)

Under torchrun it trains with DDP (gloo on CPU):
``torchrun --standalone --nproc_per_node=2 -m umask.train.models.umask.trainer ...``.

The optimizer, LR schedule, EMA, seeding, atomic checkpoints, resume, DDP, validation and early
stopping are the shared loop's (train/common/loop.py, train/common/checkpoints.py; settings in
train/common/config.LoopConfig). This module is the per-user U-MASK family on top of it:

* **Step (Algorithm 1 order).** batch -> h_u (ProfileMLP on the frozen SBERT embedding) -> mask
  generator (h_b, budget, Gumbel top-k, straight-through) -> noise x0 at a random t -> DiT
  x0-prediction -> L = L_diff + w_nce L_InfoNCE + w_budget L_budget -> backward -> grad clip ->
  AdamW -> mask generator state: ``update_fisher(task, dL/da_tau, avail)`` and
  ``update_bank(features)`` (:meth:`UMaskFamily.after_step`, never inside forward) -> EMA update.
  The EMA copies buffers too, so it carries the mask generator's bank and Fisher statistics.
* **Data.** Every rank builds the same deterministic population; rank 0 fills the SBERT embedding
  cache first, then the others read it. The data order and per-item randomness are pure functions
  of (seed, epoch, index) (data.StepBatchSampler; each rank reads its own shard, ``--batch-size``
  is per process), so a resumed run repeats an uninterrupted one exactly for any world size.
* **DDP.** ``find_unused_parameters`` only in the ablations where parts of the model get no
  gradient (random / no mask, no profile input); InfoNCE negatives are the local batch; DDP
  broadcasts rank 0's buffers (bank, Fisher) every forward.
* **Resume** refuses a different model config, data set (fingerprint), seed, batch size, user
  count, simulator seed or profile source (``TrainConfig.RESUME_MUST_MATCH``).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Dataset

from umask.runtime.core.errors import InputError
from umask.runtime.families.umask.profile_text import parse_profile_spec
from umask.train.common import loop
from umask.train.common.checkpoints import (CKPT_FILES, CKPT_FORMAT, STEP_PREFIX, atomic_json, atomic_text,
                                            best_checkpoint, clean_temp_dirs, find_latest_checkpoint, flatten_optimizer, is_complete,
                                            resolve_checkpoint, save_checkpoint, step_dir_name, unflatten_optimizer,
                                            write_json)
from umask.train.common.config import HelpFormatter, LoopConfig, add_dataclass_args, dataclass_from_args
from umask.train.common.ship import read_config
from umask.train.common.loop import (Dist, ema_decay_at, ema_update, init_distributed, lr_at, make_optimizer,
                                     resolve_device, rng_state, seed_everything, set_rng_state, step_seed)
from umask.train.models.umask.data import (ProfileTable, StepBatchSampler, UserData, UserWindowDataset, build_profile_table,
                                 channel_rms, collate, load_users, population_fingerprint, simulated_users,
                                 required_train_windows, users_from_trace, val_windows)
from umask.train.models.umask.model import UMASK_CONFIGS, UMask, UMaskConfig

log = logging.getLogger(__name__)

__all__ = ["CKPT_FILES", "CKPT_FORMAT", "STEP_PREFIX", "Dist", "TrainConfig", "UMaskFamily", "UserFamily",
           "atomic_text", "best_checkpoint", "build_parser", "clean_temp_dirs", "config_from_args", "ema_decay_at",
           "ema_update", "evaluate", "find_latest_checkpoint", "flatten_optimizer", "init_distributed",
           "is_complete", "load_model", "load_population", "lr_at", "main", "make_optimizer", "resolve_checkpoint",
           "resolve_device", "rng_state", "save_checkpoint", "seed_everything", "set_rng_state", "step_dir_name",
           "step_seed", "train", "unflatten_optimizer", "write_json"]

MODEL, DATA = "model", "data"


# -----------------------------------------------------------------------------
# Configuration
# -----------------------------------------------------------------------------

@dataclass
class TrainConfig(LoopConfig):
    """Per-user U-MASK training: the shared loop's settings plus model and data."""

    model: str = field(default="tiny", metadata={"help": "named model size (UMASK_CONFIGS)", "flag": "--config",
                                                 "choices": sorted(UMASK_CONFIGS), "group": MODEL})
    model_overrides: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "override a UMaskConfig field (JSON value), e.g. --set w_nce=0.05", "flag": "--set",
        "group": MODEL})
    data: str | None = field(default=None, metadata={
        "help": "users .npz (data.save_users) or a trace file; default: simulated users", "group": DATA})
    n_users: int = field(default=200, metadata={"help": "simulated users (without --data)", "group": DATA})
    sim_seed: int = field(default=0, metadata={"help": "simulator seed (without --data)", "group": DATA})
    profile_source: str = field(default="template", metadata={
        "help": "U-SCOPE profile text for SBERT: template, none (no profile input), or llm:MODEL.gguf[+LORA.gguf] "
                "(one text per user written by the profiling LLM from its training-days statistics, greedy, "
                "cached in the LLM profile cache folder, copied to <out>/profiles.json)", "group": DATA})
    sbert_cache: str | None = field(default="cache/sbert", metadata={
        "help": "SBERT embedding cache folder ('' for none)", "none_text": "", "group": DATA})
    llm_profile_cache: str | None = field(default="cache/llm_profiles", metadata={
        "help": "cache folder of LLM-written profile texts ('' for none)", "none_text": "", "group": DATA})

    RESUME_MUST_MATCH: ClassVar[tuple[str, ...]] = (*LoopConfig.RESUME_MUST_MATCH, "model", "model_overrides",
                                                    "data", "n_users", "sim_seed", "profile_source")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model not in UMASK_CONFIGS:
            raise InputError(f"unknown model config {self.model!r}; choose from {sorted(UMASK_CONFIGS)}")
        parse_profile_spec(self.profile_source)      # InputError on an unknown spelling

    def model_config(self) -> UMaskConfig:
        return replace(UMASK_CONFIGS[self.model], **self.model_overrides)


# -----------------------------------------------------------------------------
# Data and checkpoints
# -----------------------------------------------------------------------------

def load_population(cfg: TrainConfig) -> tuple[list[UserData], dict[str, Any]]:
    """Users from ``cfg.data`` (.npz of data.save_users, a trace file, or an app-only ``time,app``
    log: data.users_from_trace routes it) or the simulator. Channels the data does not record are
    logged with what the model cannot predict and go to config.json (``absent_channels``,
    ``cannot_predict``); the windows leave them out of the loss (data.py ``channel_present``)."""
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
    absent = sorted(set().union(*(u.absent for u in users)))
    if absent:
        from umask.runtime.core.usage_log import CHANNEL_OUTPUTS

        info["absent_channels"] = absent
        info["cannot_predict"] = [f"{ch}: {CHANNEL_OUTPUTS[ch]}" for ch in absent]
        for ch in absent:
            log.warning("absent channel %s: the model cannot predict %s", ch, CHANNEL_OUTPUTS[ch])
    return users, info


def load_model(ckpt_dir: str | Path, *, ema: bool = True, device: str | torch.device = "cpu") -> tuple[UMask, dict[str, Any]]:
    """Rebuild a UMask from a checkpoint directory (EMA or raw weights) -> (model in eval mode, config.json).

    A shipped model folder (train/models/umask/ship.py: ``model.safetensors`` = the EMA weights, no
    ``ema.safetensors``) loads with either ``ema`` value; fp16 weights are widened to the model's fp32."""
    ckpt_dir = Path(ckpt_dir)
    config = read_config(ckpt_dir)                # a shipped folder: its weights as the shipper hashed them
    model = UMask(UMaskConfig.from_dict(config["model"]))
    name = "ema.safetensors" if ema and (ckpt_dir / "ema.safetensors").is_file() else "model.safetensors"
    sd = load_file(str(ckpt_dir / name), device=str(device))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    model.all_evidence_tasks = task_ids((config.get("inference") or {}).get("all_evidence_tasks", []),
                                        "config.json inference.all_evidence_tasks")
    return model.to(device).eval(), config


def task_ids(names: Sequence[str], what: str) -> frozenset[int]:
    """Task names (dit.TASKS) -> their ids; InputError naming ``what`` on an unknown name (ship.py and
    `load_model` check the all-evidence policy with it)."""
    from umask.train.models.umask.dit import TASKS

    bad = [n for n in names if n not in TASKS]
    if bad:
        raise InputError(f"{what}: unknown task(s) {bad}; tasks are {list(TASKS)}")
    return frozenset(TASKS.index(n) for n in names)


def evaluate(model: UMask, ds: Dataset, cfg: LoopConfig, device: torch.device, d: Dist) -> dict[str, float]:
    """Mean loss parts over up to ``eval_batches`` validation batches (fixed noise), sharded over ranks."""
    return loop.evaluate(model, ds, cfg, device, d, collate)


# -----------------------------------------------------------------------------
# The U-MASK family steps (shared with grid.py)
# -----------------------------------------------------------------------------

class UMaskFamily(loop.Family):
    """What every U-MASK family does the same: resumable batches of a window data set
    (data.StepBatchSampler), the model's own loss, the mask generator's state update after each
    step, the validation loss at fixed noise. Subclasses set ``cfg``, ``mcfg``, ``train_ds``,
    ``val_ds`` and ``info`` in :meth:`setup` and build the model."""

    cfg: LoopConfig
    mcfg: UMaskConfig
    train_ds: Dataset
    val_ds: Dataset
    info: dict[str, Any]
    device: torch.device = torch.device("cpu")

    def model_dict(self) -> dict[str, Any]:
        return self.mcfg.to_dict()

    def data_info(self) -> dict[str, Any]:
        return self.info

    def train_batches(self, start_step: int, d: Dist) -> tuple[Iterator[dict[str, Any]], Callable[[int], dict[str, Any]]]:
        sampler = StepBatchSampler(len(self.train_ds), self.cfg.batch_size, seed=self.cfg.seed, rank=d.rank,
                                   world=d.world, start_step=start_step)

        def batches() -> Iterator[dict[str, Any]]:       # workers start at the first batch, not before
            yield from DataLoader(self.train_ds, batch_sampler=sampler, collate_fn=collate,
                                  num_workers=self.cfg.num_workers, pin_memory=self.device.type == "cuda",
                                  persistent_workers=self.cfg.num_workers > 0)

        return batches(), sampler.cursor

    def after_step(self, model: torch.nn.Module, batch: dict[str, Any]) -> None:
        # mask generator state (never inside forward): eq. 7 Fisher statistics, eqs. 9-11 bank
        mo, model.last_mask_out = model.last_mask_out, None
        a_tau = mo.features.get("a_tau")
        if model.cfg.mask_mode == "learned" and a_tau is not None and a_tau.grad is not None:
            model.maskgen.update_fisher(batch["task"], a_tau.grad, batch["avail"])
        if "h_b" in mo.features:  # absent only where a subclass skips the mask generator (grid, mask_mode none)
            model.maskgen.update_bank(mo.features)

    def validate(self, ema: torch.nn.Module, device: torch.device, d: Dist) -> dict[str, float]:
        return evaluate(ema, self.val_ds, self.cfg, device, d)

    def describe(self, rec: Mapping[str, Any]) -> str:
        return f" evidence {rec['evidence_ratio']:.2f}" if "evidence_ratio" in rec else ""


class UserFamily(UMaskFamily):
    """Per-user U-MASK: simulated users or a trace, profiles from SBERT, channel-RMS data scale."""

    trainer = "umask.train.models.umask.trainer"

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg

    def setup(self, d: Dist, device: torch.device) -> None:
        cfg, self.device = self.cfg, device
        users, info = load_population(cfg)
        C, _, H, W = users[0].tensor.shape
        self.mcfg = mcfg = cfg.model_config().with_data(C, H, W, int(users[0].e_pos.shape[-1]))
        windows = required_train_windows(users, mcfg.window)     # too few days: say so before loading SBERT
        profiles: ProfileTable | None = None
        if mcfg.use_profile and cfg.profile_source != "none":
            # rank 0 fills the SBERT (and LLM profile) caches first; the others then read them
            build = lambda: build_profile_table(users, cfg.profile_source, cache_dir=cfg.sbert_cache,  # noqa: E731
                                                llm_cache=cfg.llm_profile_cache)
            if d.is_main:
                profiles = build()
                if profiles.texts is not None:       # the texts the run was trained on, for audit
                    Path(cfg.out).mkdir(parents=True, exist_ok=True)
                    atomic_json(Path(cfg.out) / "profiles.json",
                               {"source": cfg.profile_source, **(profiles.info or {}),
                                "profiles": {str(u.user): t for u, t in zip(users, profiles.texts)}})
            d.barrier()
            if not d.is_main:
                profiles = build()
        self.train_ds = UserWindowDataset(users, mcfg.window, windows, profiles=profiles, data_seed=cfg.seed)
        self.val_ds = UserWindowDataset(users, mcfg.window, val_windows(users, mcfg.window), profiles=profiles,
                                        data_seed=cfg.seed)
        self.rms = channel_rms(users)
        # parameters without a gradient exist only in the ablations (no profile MLP input, random / no mask)
        self.find_unused_parameters = mcfg.mask_mode != "learned" or profiles is None
        self.info = {**info, "n_train_windows": len(self.train_ds), "n_val_windows": len(self.val_ds),
                     "channel_rms_train": [round(float(v), 6) for v in self.rms],
                     "profile_source": cfg.profile_source if profiles is not None else "none"}
        log.info("data: %d users, %d train / %d val windows", len(users), len(self.train_ds), len(self.val_ds))

    def build_model(self) -> UMask:
        model = UMask(self.mcfg)
        model.set_data_scale(torch.from_numpy(np.asarray(self.rms)))
        log.info("model %s: %.3f M parameters (DiT %.3f M, mask generator %.3f M)", self.mcfg.name,
                 model.num_params() / 1e6, model.dit.num_params() / 1e6, model.maskgen.num_params() / 1e6)
        return model


def train(cfg: TrainConfig) -> Path:
    """Train (or resume) per ``cfg``; returns the final checkpoint directory."""
    return loop.run(cfg, UserFamily(cfg))


# -----------------------------------------------------------------------------
# Command line
# -----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m umask.train.models.umask.trainer",
        description="Joint U-MASK training (profile MLP + mask generator + DiT, eqs. 19-20) with AdamW, EMA, "
                    "atomic safetensors checkpoints and automatic resume. Under torchrun it trains with DDP "
                    "(gloo on CPU): torchrun --standalone --nproc_per_node=2 -m umask.train.models.umask.trainer ...",
        formatter_class=HelpFormatter)
    groups = {name: p.add_argument_group(name) for name in (MODEL, "optimization", "checkpoints and logging", DATA,
                                                            "system")}
    add_dataclass_args(p, TrainConfig, groups=groups)
    g = groups[MODEL]   # shorthands for UMaskConfig overrides (ablations)
    g.add_argument("--mask-mode", choices=("learned", "random", "none"), default=None,
                   help="evidence mask: learned U-MASK, random with the same base budget, or none (all available)")
    g.add_argument("--no-profile", action="store_true", help="ablation: U-MASK without U-SCOPE (no profile h_u)")
    g.add_argument("--no-dit-conditioning", action="store_true", help="baseline: DiT without user conditioning")
    groups["system"].add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def config_from_args(ns: argparse.Namespace) -> TrainConfig:
    overrides = dict(ns.model_overrides or ())
    if ns.mask_mode is not None:
        overrides["mask_mode"] = ns.mask_mode
    if ns.no_profile:
        overrides["use_profile"] = False
    if ns.no_dit_conditioning:
        overrides["dit_conditioning"] = False
    return dataclass_from_args(TrainConfig, ns, model_overrides=overrides)


def main(argv: list[str] | None = None) -> int:
    return loop.main(argv, build_parser(), config_from_args, train, prog="umask.train.models.umask.trainer")


if __name__ == "__main__":
    raise SystemExit(main())
