"""FatsMB training: the three stages of section 3.4 / Alg. 1, model selection on validation only.

    umask train fatsmb --out artifacts/fatsmb/seed0 --seed 0          # = python -m umask.train.models.fatsmb.trainer

Stage 1 (MBAE pretraining, eq. 14): Cloze task on random end-crops of the training sequences: each
item is masked with probability rho, the behavior of a masked item with probability sigma, and the
last token of the crop is always masked (that is the inference layout: the target token is appended
last); exact softmax cross-entropy over all items on at most ``max_positions`` masked tokens per batch
(`seqrec.softmax_xent`, `seqrec.cap_positions`; a sampled softmax was tried first and did not
generalize, see that module).
Stage 2 (latent diffusion, eqs. 15-16): encoder and decoder frozen; for a crop ending at the target,
z_b = E(prefix + [mask item, target behavior]) and z_∅ = E(prefix + [mask item, mask behavior]); the
denoiser learns z_b from z_t = q_sample(z_b, t), z_∅ and b (b dropped to ∅ with p_uncond, eq. 17).
We train x0-prediction (MSE to z_b), not eq. 16's epsilon: both give the same DDIM update, and the
decoder consumes z_0 directly (as in DreamRec / DiffuRec). Alg. 1 line 21 also writes ẑ_b.
Stage 3 (decoder fine-tuning): encoder and denoiser frozen; z_0 sampled with the guided DDIM
(time-step interval Δt -> T/Δt steps, `umask.train.diffusion.samplers.DDIMSampler`) is decoded and
trained on the next item. The item table is shared with the frozen encoder, so only the decoder's
projection and item bias move.

After each stage the weights at the best validation Recall@10 are kept; the guidance w and the
interval are then picked on validation. The test set is never read here.
Outputs in --out: ``model.safetensors`` (tied weights deduplicated), ``items.safetensors`` (dense
item -> raw item id and raw category, -1 unknown), ``config.json`` (network, training and chosen sampling settings,
validation figures), ``curve.jsonl`` (the learning curve).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors.torch import load_model, save_file, save_model

from umask.train.baselines.seqrec import _pad_left, cap_positions, selection_score, softmax_xent
from umask.train.common.checkpoints import atomic_json
from umask.train.common.config import add_dataclass_args, config_dict, dataclass_from_args, from_config_dict
from umask.train.common.ship import read_config
from umask.train.diffusion.samplers import DDIMSampler
from umask.train.diffusion.schedules import VPSchedule
from umask.train.models.fatsmb.data import TAOBAO_SAMPLE, ProtocolC, load_protocol_c
from umask.train.models.fatsmb.model import FatsMB, FatsMBConfig

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Stage lengths and optimisation (paper: AdamW, lr 2e-3, batch 256 on GPU; here batch 32 on one thread)."""

    data: str = field(default=str(TAOBAO_SAMPLE), metadata={
        "help": "Taobao file: Tianchi UserBehavior CSV(.gz) or retail.txt(.gz)"})
    out: str = field(default="artifacts/fatsmb/run", metadata={"help": "output folder"})
    seed: int = field(default=0, metadata={"help": "seed of init, batches, noise"})
    max_users: int = field(default=0, metadata={"help": "keep only the first N users (0 = all; for tiny test runs)"})
    init_from: str = field(default="", metadata={
        "help": "run folder whose stage-1 MBAE (encoder + decoder) is reused; stage 1 is skipped"})
    stage1_steps: int = field(default=1000, metadata={"help": "MBAE Cloze pretraining steps"})
    stage2_steps: int = field(default=1000, metadata={"help": "denoiser steps"})
    stage3_steps: int = field(default=200, metadata={"help": "decoder fine-tuning steps (0 = skip)"})
    eval_every: int = field(default=200, metadata={
        "help": "validation Recall@10 every N steps (model selection on validation)"})
    batch_size: int = field(default=32, metadata={"help": "sequences per step"})
    lr: float = field(default=2e-3, metadata={"help": "AdamW learning rate (paper 2e-3)"})
    lr_stage3: float = field(default=5e-4, metadata={"help": "decoder fine-tuning learning rate"})
    rho: float = field(default=0.2, metadata={"help": "item mask probability (paper sweeps 0.2..0.8)"})
    sigma: float = field(default=0.5, metadata={"help": "behavior mask probability at masked items"})
    p_uncond: float = field(default=0.2, metadata={"help": "classifier-free guidance drop rate (paper 0.2)"})
    n_negatives: int = field(default=1024, metadata={
        "help": "sampled-softmax negatives, used only when n_items > full_softmax_max"})
    full_softmax_max: int = field(default=200_000, metadata={
        "help": "exact softmax over all items up to this vocabulary size"})
    max_positions: int = field(default=96, metadata={
        "help": "Cloze loss positions per batch (the target token of each row always kept)"})
    sample_steps: int = field(default=10, metadata={"help": "T / Δt: DDIM steps used in stage 3 and as the default"})
    guidance: float = field(default=1.5, metadata={
        "help": "default w (uncond + w (cond - uncond)); re-chosen on validation"})
    guidance_grid: str = field(default="1,1.5,2,3", metadata={"help": "w values tried on validation after training"})
    steps_grid: str = field(default="5,10,20", metadata={"help": "T/Δt values tried on validation after training"})


# ------------------------------------------------------------------------------------------------
# Batches
# ------------------------------------------------------------------------------------------------
def shift_tokens(items: Sequence[np.ndarray], behs: Sequence[np.ndarray], L: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense ids (already shifted, incl. [mask]) -> right-aligned (N, L) tensors (0 = pad)."""
    return torch.from_numpy(_pad_left(items, L)), torch.from_numpy(_pad_left(behs, L))


def query_tokens(prefixes, target_behavior: np.ndarray | None, n_items: int, n_behaviors: int, L: int,
                 mask_behavior: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Prefix + the target token [mask item, target behavior or [mask]] (the inference layout)."""
    its, bhs = [], []
    for r, (items, beh) in enumerate(prefixes):
        tb = n_behaviors + 1 if (mask_behavior or target_behavior is None) else int(target_behavior[r]) + 1
        its.append(np.r_[np.asarray(items, np.int64)[-(L - 1):] + 1, n_items + 1])
        bhs.append(np.r_[np.asarray(beh, np.int64)[-(L - 1):] + 1, tb])
    return shift_tokens(its, bhs, L)


def crop_batch(train, rng: np.random.Generator, batch: int):
    """Random end-crops: (prefixes, target items, target behaviors) with a non-empty prefix."""
    idx = rng.integers(0, len(train), batch)
    prefixes, ti, tb = [], [], []
    for u in idx:
        items, beh = train[u]
        e = int(rng.integers(1, len(items)))                  # target position, prefix = items[:e]
        prefixes.append((items[:e], beh[:e]))
        ti.append(items[e])
        tb.append(beh[e])
    return prefixes, torch.tensor(ti), np.asarray(tb)


# ------------------------------------------------------------------------------------------------
# Scoring (shared by training-time validation and the benchmark harness)
# ------------------------------------------------------------------------------------------------
@torch.no_grad()
def latents(model: FatsMB, prefixes, target_behavior, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_b, z_∅) of the queries: behavior-specific and behavior-agnostic encodings (N, d) each."""
    model.eval()
    zb, zn = [], []
    for s in range(0, len(prefixes), batch):
        p = prefixes[s: s + batch]
        tb = None if target_behavior is None else target_behavior[s: s + batch]
        args = (model.n_items, model.n_behaviors, model.cfg.max_len)
        zb.append(model.encoder(*query_tokens(p, tb, *args, mask_behavior=False)))
        zn.append(model.encoder(*query_tokens(p, tb, *args, mask_behavior=True)))
    return torch.cat(zb), torch.cat(zn)


def sample_z0(model: FatsMB, z_null: torch.Tensor, target_behavior: torch.Tensor, *, steps: int, w: float,
              seed: int = 0, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Alg. 2: z_T ~ N(0, I), guided DDIM (eq. 5) over ``steps`` trailing timesteps -> z_0 (N, d)."""
    sched = VPSchedule(model.cfg.diffusion_steps, model.cfg.schedule)
    b = target_behavior.long()

    def denoise(z_t: torch.Tensor, t: int) -> torch.Tensor:
        return model.guided(z_t, torch.full((z_t.shape[0],), t, dtype=torch.long), z_null, b, w)

    zeros = torch.zeros_like(z_null)                           # no evidence: the clamp never applies
    return DDIMSampler(sched).sample(denoise, zeros, zeros, steps, seed=seed, noise=noise)


@torch.no_grad()
def score(model: FatsMB, prefixes, target_behavior: np.ndarray, *, mode: str = "diffusion", steps: int = 10,
          w: float = 1.5, seed: int = 0) -> np.ndarray:
    """Scores over all items (N, n_items). mode: diffusion (the full model) | ae (MBAE alone: decode z_b)."""
    z = query_latent(model, prefixes, target_behavior, mode=mode, steps=steps, w=w, seed=seed)
    return torch.cat([model.decoder(z[s: s + 256]) for s in range(0, len(z), 256)]).numpy()


@torch.no_grad()
def query_latent(model: FatsMB, prefixes, target_behavior: np.ndarray, *, mode: str = "diffusion", steps: int = 10,
                 w: float = 1.5, seed: int = 0) -> torch.Tensor:
    """The latent the decoder reads (N, d): z_0 of the guided sampler (mode diffusion) or z_b (mode ae)."""
    model.eval()
    zb, zn = latents(model, prefixes, target_behavior)
    if mode == "ae":
        return zb
    if mode != "diffusion":
        raise ValueError(f"mode must be diffusion or ae, got {mode!r}")
    # z_T = numpy default_rng(seed) draw, the same for every query: the runtime's convention, so torch and
    # the exported artifacts differ only by numerics
    z_T = torch.from_numpy(np.random.default_rng(seed).standard_normal((1, model.cfg.d)).astype(np.float32))
    return sample_z0(model, zn, torch.from_numpy(np.asarray(target_behavior)), steps=steps, w=w,
                     noise=z_T.expand_as(zn).contiguous())


def val_recall(model, data: ProtocolC, **kw) -> float:
    """The validation figure model selection maximizes: ``data.val_metric`` (Taobao: Recall@10)."""
    s = score(model, data.val.prefixes, data.val.behavior, **kw)
    return selection_score(s, data.val.item, data.val_metric)


# ------------------------------------------------------------------------------------------------
# The three stages
# ------------------------------------------------------------------------------------------------
def _stage(name, model, params, steps, lr, loss_fn, validate, tc: TrainConfig, curve: list,
           key: str = "val_recall@10") -> None:
    """AdamW over ``params`` for ``steps``; validation (``key`` in the curve) every eval_every; keep the best weights."""
    if steps <= 0:
        return
    opt = torch.optim.AdamW(params, lr=lr)
    best = (validate(), 0, {k: v.clone() for k, v in model.state_dict().items()}) if name == "stage3" else (-1.0, 0, None)
    t0 = time.time()
    for step in range(1, steps + 1):
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        rec = {"stage": name, "step": step, "loss": float(loss.detach()), "seconds": round(time.time() - t0, 1)}
        if step % tc.eval_every == 0 or step == steps:
            rec[key] = validate()
            if rec[key] > best[0]:
                best = (rec[key], step, {k: v.clone() for k, v in model.state_dict().items()})
            log.info("%s step %d loss %.4f %s %.4f (%.0fs)", name, step, rec["loss"], key, rec[key], rec["seconds"])
        if step % 25 == 0 or key in rec:
            curve.append(rec)
    model.load_state_dict(best[2])
    curve.append({"stage": name, "best_step": best[1], f"best_{key}": best[0]})


def train(cfg: FatsMBConfig, tc: TrainConfig, data: ProtocolC | None = None) -> tuple[FatsMB, dict]:
    torch.manual_seed(tc.seed)
    rng = np.random.default_rng(tc.seed)
    g = torch.Generator().manual_seed(tc.seed)
    data = data or load_protocol_c(tc.data, max_users=tc.max_users or None)
    train_seqs = [s for s in data.train if len(s[0]) >= 2]
    model = FatsMB(cfg, data.n_items, data.n_behaviors)
    nI, nB, L = data.n_items, data.n_behaviors, cfg.max_len
    curve: list[dict] = []
    key = f"val_{data.val_metric}"                             # Taobao: val_recall@10

    def xent(z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        proj = model.decoder.proj(z)
        table, bias = model.decoder.table.weight[1:-1], model.decoder.bias
        fn = lambda cand: proj @ table.T + bias if cand is None else proj @ table[cand].T + bias[cand]  # noqa: E731
        return softmax_xent(fn, target, nI, tc.n_negatives, tc.full_softmax_max, g)

    # Stage 1: MBAE Cloze pretraining (eq. 14, Alg. 1 lines 2-15)
    def loss1() -> torch.Tensor:
        model.train()
        prefixes, ti, tb = crop_batch(train_seqs, rng, tc.batch_size)
        its = [np.r_[p[0][-(L - 1):], t] + 1 for p, t in zip(prefixes, ti.numpy())]
        bhs = [np.r_[p[1][-(L - 1):], b] + 1 for p, b in zip(prefixes, tb)]
        items, beh = shift_tokens(its, bhs, L)
        real = items > 0
        masked = (torch.rand(items.shape, generator=g) < tc.rho) & real
        masked[:, -1] = True                                    # the target token: inference layout
        masked = cap_positions(masked, tc.max_positions, g)      # bounds the exact softmax over 55k items
        hide_b = masked & (torch.rand(items.shape, generator=g) < tc.sigma)
        h = model.encoder.hidden(items.masked_fill(masked, nI + 1), beh.masked_fill(hide_b, nB + 1))
        return xent(h[masked], items[masked] - 1)

    if tc.init_from:                                           # denoiser ablations share one pretrained MBAE
        src, _ = load(tc.init_from)
        if src.cfg.position != cfg.position or src.n_items != nI:
            raise ValueError(f"--init-from {tc.init_from}: position {src.cfg.position} / {src.n_items} items do not match")
        model.encoder.load_state_dict(src.encoder.state_dict())
        model.decoder.load_state_dict(src.decoder.state_dict())
        tc.stage1_steps = 0
        curve.append({"stage": "stage1", "init_from": tc.init_from})
    enc_params = list(model.encoder.parameters()) + [p for n, p in model.decoder.named_parameters() if not n.startswith("table")]
    _stage("stage1", model, enc_params, tc.stage1_steps, tc.lr, loss1,
           lambda: val_recall(model, data, mode="ae"), tc, curve, key)
    ae_val = val_recall(model, data, mode="ae")

    # Stage 2: latent diffusion, encoder/decoder frozen (eqs. 15-17, Alg. 1 lines 16-22)
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    for p in model.decoder.parameters():
        p.requires_grad_(False)
    sched = VPSchedule(cfg.diffusion_steps, cfg.schedule)

    def loss2() -> torch.Tensor:
        prefixes, _, tb = crop_batch(train_seqs, rng, tc.batch_size)
        zb, zn = latents(model, prefixes, tb)
        model.denoiser.train()
        t = sched.sample_t(len(tb), g)
        z_t = sched.q_sample(zb, t, torch.randn(zb.shape, generator=g))                 # eq. 15
        b = torch.from_numpy(tb).long()
        b = torch.where(torch.rand(len(tb), generator=g) < tc.p_uncond, torch.full_like(b, nB), b)   # CFG drop
        return torch.mean((model.denoiser(z_t, t, zn, b) - zb) ** 2)                   # eq. 16 (x0 form)

    _stage("stage2", model, list(model.denoiser.parameters()), tc.stage2_steps, tc.lr, loss2,
           lambda: val_recall(model, data, steps=tc.sample_steps, w=tc.guidance), tc, curve, key)

    # Stage 3: decoder fine-tuning on the next item through the sampler (Alg. 1 lines 23-28)
    for p in model.denoiser.parameters():
        p.requires_grad_(False)
    dec_params = [p for n, p in model.decoder.named_parameters() if not n.startswith("table")]
    for p in dec_params:
        p.requires_grad_(True)

    def loss3() -> torch.Tensor:
        prefixes, ti, tb = crop_batch(train_seqs, rng, tc.batch_size)
        _, zn = latents(model, prefixes, tb)
        z0 = sample_z0(model, zn, torch.from_numpy(tb), steps=tc.sample_steps, w=tc.guidance,
                       seed=int(rng.integers(1 << 31)))
        model.decoder.train()
        return xent(z0, ti)

    _stage("stage3", model, dec_params, tc.stage3_steps, tc.lr_stage3, loss3,
           lambda: val_recall(model, data, steps=tc.sample_steps, w=tc.guidance), tc, curve, key)

    # Sampling settings chosen on validation (guidance w, number of steps T/Δt)
    grid = {}
    for w in [float(x) for x in tc.guidance_grid.split(",")]:
        for st in [int(x) for x in tc.steps_grid.split(",")]:
            grid[f"w={w},steps={st}"] = val_recall(model, data, steps=st, w=w)
    best = max(grid, key=grid.get)
    w_best, steps_best = (float(best.split(",")[0][2:]), int(best.split(",")[1][6:]))
    info = {f"{key}_ae": ae_val, "val_grid": grid, "guidance": w_best, "sample_steps": steps_best,
            key: grid[best], "val_metric": data.val_metric, "curve": curve}
    log.info("chosen on validation: w=%s steps=%d (%s %.4f); AE alone %.4f", w_best, steps_best, key, grid[best], ae_val)
    return model, info


# ------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------
def save(model: FatsMB, tc: TrainConfig, info: dict, data: ProtocolC, out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_model(model, str(out / "model.safetensors"))
    raw_cat = data.category_ids[data.item_category] if data.has_categories else data.item_category
    save_file({"item_ids": torch.from_numpy(data.item_ids), "item_category": torch.from_numpy(raw_cat)},
              str(out / "items.safetensors"))
    with open(out / "curve.jsonl", "w", encoding="utf-8") as fh:
        for rec in info["curve"]:
            fh.write(json.dumps(rec) + "\n")
    meta = {"family": "fatsmb", "model": config_dict(model.cfg), "train": asdict(tc), "n_items": model.n_items,
            "n_behaviors": model.n_behaviors, "behaviors": list(data.behaviors), "data": data.path,
            "sampling": {"guidance": info["guidance"], "steps": info["sample_steps"],
                         "diffusion_steps": model.cfg.diffusion_steps, "schedule": model.cfg.schedule},
            "validation": {k: v for k, v in info.items() if k != "curve"}}
    atomic_json(out / "config.json", meta)
    return out


def load(run: str | Path) -> tuple[FatsMB, dict]:
    """(model, config.json) of a run folder written by :func:`save`."""
    run = Path(run)
    meta = read_config(run)                       # a shipped folder: every file as its shipper hashed it
    model = FatsMB(from_config_dict(FatsMBConfig, meta["model"]), meta["n_items"], meta["n_behaviors"])
    load_model(model, str(run / "model.safetensors"))
    model.eval()
    return model, meta


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="umask train fatsmb", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_dataclass_args(p, FatsMBConfig)
    add_dataclass_args(p, TrainConfig)
    p.add_argument("--num-threads", type=int, default=1, help="torch CPU threads")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = build_parser()
    ns = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(ns.num_threads)
    cfg, tc = dataclass_from_args(FatsMBConfig, ns), dataclass_from_args(TrainConfig, ns)
    data = load_protocol_c(tc.data, max_users=tc.max_users or None)
    model, info = train(cfg, tc, data)
    out = save(model, tc, info, data, tc.out)
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
