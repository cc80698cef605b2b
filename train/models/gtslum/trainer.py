"""Train GTS-LUM on PROTOCOL D windows (``umask train gtslum ...`` or ``python -m umask.train.models.gtslum.trainer``).

    python -m umask.train.models.gtslum.trainer --users 50 --sim-seed 0 --out artifacts/gtslum/full_s0

Steps (one CPU thread; the run directory holds everything the scorer and the exporter read):
1. users: SYNTHETIC simulator users with protocol B's split (`umask.bench`-free: the simulator and the
   runtime featurization are called directly, as `user_tasks.simulated_population` does);
2. encoders, fitted once: Sentence-BERT + spectral tree -> semantic IDs of the K (P + 1) behaviors;
   node2vec of the training app-place graph; the frozen decoder's text embedding of each of the 63
   timestamp descriptors (mean of SmolLM2 token embeddings, computed once);
3. phase I: Q-Former pre-training (behavior- and sequence-level contrastive / matching / generation);
4. phase II: contrastive end-to-end training of everything but the frozen decoder; validation
   Recall@5 / NDCG@5 on day 6 every ``eval_every`` steps, the best state kept;
5. writes ``model.safetensors`` (trainable weights + encoder tables; no decoder weights),
   ``config.json`` and ``metrics.jsonl`` (the learning curve).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from umask.runtime.families.gtslum import sequence as sq
from umask.train.common.checkpoints import atomic_json
from umask.train.common.config import HelpFormatter, add_dataclass_args, dataclass_from_args
from umask.train.common.metrics import ndcg_at_k, recall_at_k
from umask.train.common.ship import read_config
from umask.train.models.gtslum import data as gd
from umask.train.models.gtslum.encoders import embed_texts, node2vec, semantic_ids
from umask.train.models.gtslum.model import GTSLUM, GTSLUMConfig

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
KS = (5, 10)


@dataclass
class TrainConfig(GTSLUMConfig):
    """Model sizes (GTSLUMConfig) plus the run."""

    users: int = field(default=50, metadata={"help": "SYNTHETIC simulator users"})
    sim_seed: int = field(default=0, metadata={"help": "simulator seed (the population)"})
    seed: int = field(default=0, metadata={"help": "run seed (init, batches)"})
    pretrain_steps: int = field(default=40, metadata={"help": "phase I (Q-Former pre-training) steps"})
    steps: int = field(default=250, metadata={"help": "phase II (end-to-end contrastive) steps"})
    batch_size: int = field(default=16, metadata={"help": "windows per step"})
    lr: float = field(default=2e-3, metadata={"help": "AdamW peak learning rate (cosine decay)"})
    eval_every: int = field(default=50, metadata={"help": "validation every N phase II steps"})
    val_windows: int = field(default=300, metadata={"help": "validation windows (a fixed random subset; CPU time)"})
    max_minutes: float = field(default=30.0, metadata={"help": "stop phase II after this many minutes"})
    base: str = field(default="cache/uscope/base", metadata={"help": "SmolLM2 float32 checkpoint (made once)"})
    out: str = field(default="artifacts/gtslum/run", metadata={"help": "run directory"})
    threads: int = field(default=1, metadata={"help": "torch threads"})


def model_config(cfg: TrainConfig) -> GTSLUMConfig:
    return GTSLUMConfig(**{f.name: getattr(cfg, f.name) for f in fields(GTSLUMConfig)})


# ------------------------------------------------------------------------------------------------
# Data and encoders
# ------------------------------------------------------------------------------------------------
def descriptor_embeddings(base: str | Path) -> np.ndarray:
    """(63, D) mean frozen token embedding of every timestamp descriptor text (computed once)."""
    from safetensors import safe_open
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base))
    with safe_open(str(Path(base) / "model.safetensors"), "pt") as f:
        table = f.get_tensor("model.embed_tokens.weight")
    out = [table[torch.tensor(tok(t, add_special_tokens=False)["input_ids"])].mean(0) for t in sq.descriptor_texts()]
    return torch.stack(out).numpy()


def fit_encoders(users: gd.Users, cfg: TrainConfig) -> dict[str, np.ndarray]:
    from umask.train.models.umask.uscope.llm import prepare_base

    prepare_base(cfg.base)
    texts = sq.behavior_texts(users.category_names, users.poi_names)
    sid = semantic_ids(embed_texts(texts), branch=cfg.sid_sizes[0], depth=len(cfg.sid_sizes) - 1, seed=0)
    if sid[:, -1].max() >= cfg.sid_sizes[-1]:
        raise ValueError(f"a spectral leaf holds {sid[:, -1].max() + 1} behaviors > sid_sizes[-1]={cfg.sid_sizes[-1]}")
    nodes = node2vec(gd.training_graph(users), dim=cfg.node_dim, seed=0)
    return {"sid_table": sid, "node_emb": nodes, "desc_text": descriptor_embeddings(cfg.base)}


def to_batch(x: gd.Inputs, idx: np.ndarray | slice | None = None) -> dict[str, torch.Tensor]:
    sub = x if idx is None else x.take(idx)
    keys = ("types", "index", "time_id", "beh_category", "beh_place", "beh_valid", "graph", "table", "target_hist",
            "truth")
    return {k: torch.from_numpy(np.ascontiguousarray(getattr(sub, k))) for k in keys}


def build_model(cfg: GTSLUMConfig, enc: dict[str, np.ndarray], base: str | Path | None) -> GTSLUM:
    m = GTSLUM(cfg, torch.from_numpy(enc["sid_table"]), torch.from_numpy(enc["node_emb"]),
               torch.from_numpy(enc["desc_text"]))
    if base is not None:
        m.decoder.load_base(base)
    else:                              # tests: a random frozen decoder, the same one every time
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, p in m.decoder.named_parameters():
                if not name.endswith("layernorm.weight") and name != "norm.weight":
                    p.normal_(0.0, 0.1, generator=g)
    return m


# ------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------
def rank_metrics(scores: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Mean Recall@5, Recall@10, NDCG@5 over windows (ties broken by category index)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    out: dict[str, list[float]] = {"recall@5": [], "recall@10": [], "ndcg@5": []}
    for o, t in zip(order, truth):
        rel = np.flatnonzero(t)
        out["recall@5"].append(recall_at_k(o, rel, 5))
        out["recall@10"].append(recall_at_k(o, rel, 10))
        out["ndcg@5"].append(ndcg_at_k(o, rel, 5))
    return {k: float(np.mean(v)) for k, v in out.items()}


@torch.no_grad()
def predict(model: GTSLUM, x: gd.Inputs, batch: int = 128) -> np.ndarray:
    model.eval()
    return np.concatenate([model(to_batch(x, np.arange(i, min(i + batch, len(x))))).numpy()
                           for i in range(0, len(x), batch)])


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------
def _lr(step: int, total: int, peak: float, warmup: int = 30) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(1.0, (step - warmup) / max(1, total - warmup)))))


def train(cfg: TrainConfig, users: gd.Users | None = None) -> Path:
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    users = users or gd.synthetic_users(cfg.users, cfg.sim_seed)
    enc = fit_encoders(users, cfg)
    mcfg = model_config(cfg)
    kw = gd.input_kw(mcfg)
    xtr = gd.build_inputs(users, gd.windows(users, "train"), enc["node_emb"], **kw)
    wva = gd.windows(users, "val")
    keep = np.sort(np.random.default_rng(0).permutation(len(wva))[:cfg.val_windows])
    xva = gd.build_inputs(users, [wva[i] for i in keep], enc["node_emb"], **kw)
    log.info("data + encoders in %.0f s: %d train / %d val windows", time.perf_counter() - t0, len(xtr), len(xva))
    model = build_model(mcfg, enc, cfg.base)
    curve = (out / METRICS_FILE).open("w")

    def record(rec: dict[str, Any]) -> None:
        curve.write(json.dumps(rec) + "\n")
        curve.flush()

    # phase I: Q-Former pre-training (nothing to align when the Q-Former reads semantic IDs only)
    if cfg.pretrain_steps and cfg.modalities != "text":
        params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(
            ("decoder.", "user_proj", "cat_emb", "prior_w", "sep", "tgt", "target_in", "weekday_emb", "tcat_emb", "time_emb"))]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
        gen = torch.Generator().manual_seed(cfg.seed)
        model.train()
        for step in range(cfg.pretrain_steps):
            for g in opt.param_groups:
                g["lr"] = _lr(step, cfg.pretrain_steps, cfg.lr)
            parts = model.pretrain_losses(to_batch(xtr, rng.integers(0, len(xtr), cfg.batch_size)), gen)
            loss = sum(parts.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            if step % 10 == 0 or step == cfg.pretrain_steps - 1:
                record({"phase": "I", "step": step, "loss": float(loss.detach()), **{k: float(v.detach()) for k, v in parts.items()}})
    # phase II: contrastive end-to-end training, decoder frozen
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    best, best_state, t2 = -1.0, None, time.perf_counter()
    for step in range(cfg.steps):
        model.train()
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg.steps, cfg.lr)
        loss = model.loss(to_batch(xtr, rng.integers(0, len(xtr), cfg.batch_size)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        last = step == cfg.steps - 1 or (time.perf_counter() - t2) / 60 > cfg.max_minutes
        if step % 10 == 0:
            record({"phase": "II", "step": step, "loss": float(loss), "seconds": round(time.perf_counter() - t2, 1)})
        if (step + 1) % cfg.eval_every == 0 or last:
            val = rank_metrics(predict(model, xva), xva.truth)
            record({"phase": "II", "step": step + 1, "eval": True, **{f"val/{k}": v for k, v in val.items()}})
            log.info("step %d loss %.4f val %s", step + 1, float(loss), {k: round(v, 4) for k, v in val.items()})
            if val["ndcg@5"] > best:
                best, best_state = val["ndcg@5"], {k: v.clone() for k, v in model.trainable_state().items()}
        if last:
            break
    curve.close()
    save_run(out, best_state, {"model": mcfg.to_dict(), "train": {f.name: getattr(cfg, f.name) for f in fields(cfg)},
                               "data": {"dataset": users.dataset, "n_train_windows": len(xtr),
                                        "n_val_windows": len(xva), "category_names": users.category_names,
                                        "poi_names": users.poi_names},
                               "best_val_ndcg@5": best, "train_seconds": round(time.perf_counter() - t0, 1)})
    log.info("wrote %s (best val ndcg@5 %.4f) in %.0f s", out, best, time.perf_counter() - t0)
    return out


def save_run(out: str | Path, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """A run directory: ``model.safetensors`` (trainable weights + encoder tables) and ``config.json``
    (``meta``: model, train (its ``base`` names the decoder checkpoint; None = a random frozen decoder,
    tests only), data (category and POI names))."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / (MODEL_FILE + ".tmp")))
    (out / (MODEL_FILE + ".tmp")).replace(out / MODEL_FILE)
    atomic_json(out / CONFIG_FILE, {**meta, "trainer": "umask.train.models.gtslum.trainer"})
    return out


def load(run_dir: str | Path, base: str | Path | None = None) -> tuple[GTSLUM, dict[str, Any]]:
    """(model in eval mode, config.json) of a finished run; the decoder reloaded from ``base``
    (default: the run's own base path)."""
    from safetensors.torch import load_file

    run = Path(run_dir)
    if not (run / CONFIG_FILE).is_file() or not (run / MODEL_FILE).is_file():
        from umask.runtime.core.errors import InputError

        raise InputError(f"{run}: not a GTS-LUM run ({CONFIG_FILE} and {MODEL_FILE} needed)")
    meta = read_config(run)                       # a shipped folder: every file as its shipper hashed it
    mcfg = GTSLUMConfig(**{"prior_head": False, "score_gate": False, **meta["model"]})   # runs from before these
    sd = load_file(str(run / MODEL_FILE))
    enc = {k: sd[k].numpy() for k in ("sid_table", "node_emb", "desc_text")}
    base = base or meta["train"].get("base")
    if base is not None and not (Path(base) / "model.safetensors").is_file():
        from umask.train.models.umask.uscope.llm import prepare_base

        prepare_base(base)            # a fresh clone serving a shipped run: dequantize the package's GGUF once
    model = build_model(mcfg, enc, base)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if unexpected or [k for k in missing if not k.startswith("decoder.") and k != "prior_w"]:
        raise ValueError(f"{run}: state mismatch (missing {missing[:5]}, unexpected {unexpected[:5]})")
    model.eval()
    return model, meta


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m umask.train.models.gtslum.trainer", formatter_class=HelpFormatter,
                                 description=__doc__.splitlines()[0])
    add_dataclass_args(ap, TrainConfig)
    ap.add_argument("--data", help=argparse.SUPPRESS)            # forwarded by `umask train`; simulator only here
    ns = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if ns.data is not None:
        print("error: --data: the GTS-LUM trainer reads SYNTHETIC simulator users (--users, --sim-seed)", file=sys.stderr)
        return 2
    cfg = dataclass_from_args(TrainConfig, ns)
    print(train(cfg))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
