"""ONE command for U-SCOPE: SFT -> DPO -> merge -> GGUF conversions -> parity -> on-device profile.

    python -m umask.export.uscope_pipeline --quick          # or: umask uscope --quick

Needs the ``train`` extra (peft, trl) and the ``llm`` extra (llama-cpp-python: held-out profiles are
generated on the llama.cpp side, which is ~10x faster than transformers' generate on this CPU) plus
the llama-cpp-python sdist in ``cache/sdist`` (its llama.cpp converters). Stages are cached in
``--out`` (default ``artifacts/uscope``); ``--fresh`` re-runs everything.

Data: training users are SIMULATED (synthetic, train/simulator.py); held-out users are other
simulated users (another seed) and the REAL 6-user LLMApp sample. Writes
``benchmarks/results/uscope_llm.{json,md}`` (SFT loss, DPO reward accuracy, held-out profile
consistency base / SFT / SFT+DPO) and ``benchmarks/results/uscope_gguf.{json,md}`` (GGUF parity,
tokens/s per quant, h_u cosine, an on-device profile of a real user). Machine: whatever runs it
(reported in the files); the committed figures come from the shared 2-core CPU, one thread.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from umask.runtime.engines.llama import LlamaProfiler, chat_prompt
from umask.export import gguf as G
from umask.train.models.umask.uscope.llm import (
    DEFAULT_BASE_DIR,
    ROOT,
    UScopeConfig,
    UserItem,
    dpo_reward_accuracy,
    dpo_train,
    evaluate_profiles,
    load_causal_lm,
    make_dpo_pairs,
    prepare_base,
    real_users,
    save_json,
    sft_train,
    simulated_users,
)

log = logging.getLogger("umask.uscope")
RESULTS = ROOT / "benchmarks" / "results"
GGUF_NAMES = {"f16": "uscope-f16.gguf", "q8_0": "uscope-q8_0.gguf", "q4_k_m": "uscope-q4_k_m.gguf",
              "lora": "uscope-lora-f16.gguf", "base": "uscope-base-f16.gguf"}

QUICK = UScopeConfig(n_train_users=60, n_heldout_users=8, sft_steps=30, sft_batch=2, sft_lr=2e-3,
                     dpo_pairs=24, dpo_steps=10, dpo_batch=2, dpo_lr=5e-4, max_new_tokens=160)


def machine() -> str:
    return f"{platform.machine()} CPU, {os.cpu_count()} cores (shared), torch threads {torch.get_num_threads()}"


# -----------------------------------------------------------------------------
# On-device generation for a set of users (llama.cpp)
# -----------------------------------------------------------------------------

def llama_profiles(model: Path, items: list[UserItem], max_tokens: int, lora: Path | None = None,
                   threads: int = 1) -> tuple[list[str], dict[str, float]]:
    prof = LlamaProfiler(model, lora_path=lora, n_threads=threads)
    texts, pt, ps, gt, gs = [], 0.0, 0.0, 0.0, 0.0
    for it in items:
        ids, t = prof.generate_ids(prof.tokenize(chat_prompt(it.prompt)), max_tokens)
        texts.append(prof.detokenize(ids).strip())
        pt, ps, gt, gs = pt + t["prompt_tokens"], ps + t["prompt_s"], gt + t["gen_tokens"], gs + t["gen_s"]
    return texts, {"prompt_tok_s": pt / max(ps, 1e-9), "gen_tok_s": gt / max(gs, 1e-9),
                   "mean_gen_tokens": gt / max(1, len(items))}


# -----------------------------------------------------------------------------
# Stages
# -----------------------------------------------------------------------------

def run(cfg: UScopeConfig, *, fresh: bool = False, results_dir: Path = RESULTS) -> dict[str, Any]:
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    if not out.is_absolute():
        out = ROOT / out
    if fresh:
        for sub in ("sft_adapter", "sft_merged", "dpo_adapter", "merged", "gguf"):
            shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    gguf = out / "gguf"
    gguf.mkdir(exist_ok=True)
    timing: dict[str, float] = {}
    t_all = time.perf_counter()

    # 1. base model (saved once)
    t = time.perf_counter()
    base_dir = prepare_base(DEFAULT_BASE_DIR if cfg.base is None else out / "base", cfg.base)
    timing["base_s"] = time.perf_counter() - t

    # 2. users
    t = time.perf_counter()
    train = simulated_users(cfg.n_train_users, cfg.train_seed, cfg.sim_days)
    held_sim = simulated_users(cfg.n_heldout_users, cfg.heldout_seed, cfg.sim_days)
    real = real_users()
    heldout = held_sim + real
    timing["data_s"] = time.perf_counter() - t
    log.info("users: %d synthetic train, %d synthetic held-out, %d real held-out", len(train), len(held_sim), len(real))

    # 3. SFT (LoRA) -> adapter + merged
    sft_info: dict[str, Any] = {}
    if not (out / "sft_merged" / "config.json").is_file():
        t = time.perf_counter()
        model, tok = load_causal_lm(base_dir)
        pm, losses = sft_train(model, tok, train, cfg)
        pm.save_pretrained(out / "sft_adapter")
        merged = pm.merge_and_unload()
        merged.save_pretrained(out / "sft_merged", safe_serialization=True)
        tok.save_pretrained(out / "sft_merged")
        sft_info = {"losses": losses, "train_s": time.perf_counter() - t}
        save_json(out / "sft_info.json", sft_info)
        del model, pm, merged
    else:
        sft_info = json.loads((out / "sft_info.json").read_text())
    timing["sft_s"] = sft_info["train_s"]

    # 4. DPO (eq. 27) on the merged SFT model -> adapter + merged final model
    if not (out / "merged" / "config.json").is_file():
        t = time.perf_counter()
        model, tok = load_causal_lm(out / "sft_merged")
        pairs = make_dpo_pairs(train, cfg.dpo_pairs, cfg.seed)
        pm, hist = dpo_train(model, tok, pairs, cfg, out / "dpo_work")
        train_s = time.perf_counter() - t
        held_pairs = make_dpo_pairs(heldout, 2 * len(heldout), cfg.seed + 1)
        acc = dpo_reward_accuracy(pm, tok, held_pairs, cfg.dpo_beta)
        pm.save_pretrained(out / "dpo_adapter")
        merged = pm.merge_and_unload()
        merged.save_pretrained(out / "merged", safe_serialization=True)
        tok.save_pretrained(out / "merged")
        trl_acc = [h["rewards/accuracies"] for h in hist if "rewards/accuracies" in h]
        dpo_info = {"train_s": train_s, "n_train_pairs": len(pairs), "heldout": acc,
                    "trl_train_reward_accuracy_last": trl_acc[-1] if trl_acc else None,
                    "trl_train_reward_accuracy_mean_last5": float(np.mean(trl_acc[-5:])) if trl_acc else None,
                    "trl_loss": [h["loss"] for h in hist if "loss" in h]}
        save_json(out / "dpo_info.json", dpo_info)
        shutil.rmtree(out / "dpo_work", ignore_errors=True)
        del model, pm, merged
    dpo_info = json.loads((out / "dpo_info.json").read_text())
    timing["dpo_s"] = dpo_info["train_s"]

    # 5. GGUF conversions
    t = time.perf_counter()
    paths = {k: gguf / v for k, v in GGUF_NAMES.items()}
    if not paths["base"].is_file():
        G.hf_to_gguf(base_dir, paths["base"], "f16")
    if not paths["lora"].is_file():
        G.lora_to_gguf(out / "sft_adapter", base_dir, paths["lora"])
    if not paths["f16"].is_file():
        G.hf_to_gguf(out / "merged", paths["f16"], "f16")
    for q in ("q8_0", "q4_k_m"):
        if not paths[q].is_file():
            G.quantize(paths["f16"], paths[q], q, n_threads=cfg.threads)
    timing["gguf_s"] = time.perf_counter() - t

    # 6. held-out profiles (on the llama.cpp side, f16): base / SFT (base + GGUF LoRA) / SFT+DPO
    t = time.perf_counter()
    variants = {"base": (paths["base"], None), "sft_lora": (paths["base"], paths["lora"]),
                "sft_dpo": (paths["f16"], None)}
    profiles: dict[str, list[str]] = {}
    evals: dict[str, Any] = {}
    for name, (m, lora) in variants.items():
        texts, speed = llama_profiles(m, heldout, cfg.max_new_tokens, lora, cfg.threads)
        profiles[name] = texts
        evals[name] = {
            "synthetic_heldout": evaluate_profiles(texts[: len(held_sim)], held_sim),
            "real_sample": evaluate_profiles(texts[len(held_sim):], real),
            "all": evaluate_profiles(texts, heldout), "speed": speed}
    evals["template"] = {"all": evaluate_profiles([it.target for it in heldout], heldout)}
    timing["eval_s"] = time.perf_counter() - t
    save_json(out / "heldout_profiles.json", {"users": [it.user for it in heldout],
                                              "source": [it.source for it in heldout],
                                              "prompts": [it.prompt for it in heldout],
                                              "template": [it.target for it in heldout], **profiles})

    # 7. parity + tokens/s per quant, h_u cosine; on-device profile of a real user
    from umask.export.llm_parity import parity_report
    t = time.perf_counter()
    parity = parity_report(out / "merged", paths, real, max_tokens=cfg.max_new_tokens, threads=cfg.threads,
                           sft_dir=out / "sft_merged")
    timing["parity_s"] = time.perf_counter() - t
    timing["total_s"] = time.perf_counter() - t_all

    llm_res = {"what": "U-SCOPE profiling LLM: LoRA SFT + DPO (eq. 27) on SmolLM2-135M-Instruct",
               "machine": machine(), "config": cfg.to_dict(), "base": str(base_dir),
               "data": {"train": f"{len(train)} SYNTHETIC users (simulator seed {cfg.train_seed})",
                        "heldout": f"{len(held_sim)} SYNTHETIC users (seed {cfg.heldout_seed}) + {len(real)} REAL users "
                                   "(LLMApp 6-user sample, one day each)"},
               "sft": {"loss_first": sft_info["losses"][0], "loss_last5": float(np.mean(sft_info["losses"][-5:])),
                       "steps": len(sft_info["losses"]), "train_s": sft_info["train_s"]},
               "dpo": dpo_info, "consistency": evals, "timing_s": timing,
               "generation": "greedy, llama.cpp f16 GGUF, max_new_tokens=%d" % cfg.max_new_tokens}
    results_dir.mkdir(parents=True, exist_ok=True)
    save_json(results_dir / "uscope_llm.json", llm_res)
    (results_dir / "uscope_llm.md").write_text(llm_markdown(llm_res, profiles, heldout))
    save_json(results_dir / "uscope_gguf.json", parity)
    from umask.export.llm_parity import parity_markdown
    (results_dir / "uscope_gguf.md").write_text(parity_markdown(parity))
    return {"llm": llm_res, "gguf": parity}


def llm_markdown(r: dict[str, Any], profiles: dict[str, list[str]], heldout: list[UserItem]) -> str:
    c = r["consistency"]
    d = r["dpo"]
    h = d["heldout"]
    lines = ["# U-SCOPE profiling LLM: SFT (LoRA) and DPO", "",
             f"Regenerate: `python -m umask.export.uscope_pipeline --quick`. Machine: {r['machine']}.", "",
             f"Base: SmolLM2-135M-Instruct (`{r['base']}`). Training: {r['data']['train']}. "
             f"Held-out: {r['data']['heldout']}. Profiles: {r['generation']}.", "",
             f"SFT: {r['sft']['steps']} steps, loss {r['sft']['loss_first']:.3f} -> {r['sft']['loss_last5']:.3f} "
             f"(mean of last 5), {r['sft']['train_s']:.0f} s.", "",
             "## DPO (eq. 27)", "",
             f"{d['n_train_pairs']} training pairs, {d['train_s']:.0f} s. trl training reward accuracy "
             f"(mean of the last 5 logged steps): {_f(d['trl_train_reward_accuracy_mean_last5'])}.", "",
             f"Held-out reward accuracy (r = beta (log pi - log pi_ref), pi_ref = the SFT model): "
             f"**{h['accuracy']:.3f}** over {h['n']} pairs (mismatched user {_f(h.get('accuracy_mismatched'))}, "
             f"perturbed fact {_f(h.get('accuracy_perturbed'))}), mean margin {h['mean_margin']:.3f}.", "",
             "## Held-out profile consistency (fact checks against ProfileStats, train/uscope_llm.consistency_checks)",
             "", "| model | all | synthetic held-out | real sample | exact template text |", "|---|---|---|---|---|"]
    for name in ("base", "sft_lora", "sft_dpo"):
        e = c[name]
        lines.append(f"| {name} | {e['all']['consistency']:.3f} | {e['synthetic_heldout']['consistency']:.3f} | "
                     f"{e['real_sample']['consistency']:.3f} | {e['all']['exact_template']:.2f} |")
    lines.append(f"| template (rules, upper bound) | {c['template']['all']['consistency']:.3f} | | | 1.00 |")
    lines += ["", "Per-check pass rates (all held-out users):", "",
              "| check | " + " | ".join(("base", "sft_lora", "sft_dpo")) + " |", "|---" * 4 + "|"]
    for k in c["sft_dpo"]["all"]["checks"]:
        vals = [c[n]["all"]["checks"].get(k) for n in ("base", "sft_lora", "sft_dpo")]
        lines.append(f"| {k} | " + " | ".join(_f(v) for v in vals) + " |")
    i = len(heldout) - len([x for x in heldout if x.source == "real"])
    lines += ["", f"## Example (REAL user {heldout[i].user})", "", "Prompt x_u:", "", "```", heldout[i].prompt, "```", ""]
    for name in ("base", "sft_lora", "sft_dpo"):
        lines += [f"{name}:", "", "```", profiles[name][i], "```", ""]
    lines += ["Template (target):", "", "```", heldout[i].target, "```", "",
              "Reading: the targets are the rule-based template, so SFT/DPO can at best reproduce it; what the checks "
              "measure is whether the generated facts are right for users the model never saw. Small-step config: "
              "few steps on a tiny model, on a shared 2-core CPU.", ""]
    return "\n".join(lines)


def _f(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the small-step configuration (the committed results)")
    ap.add_argument("--base", default=None, help="a local HF causal-LM directory instead of SmolLM2")
    ap.add_argument("--out", default="artifacts/uscope")
    ap.add_argument("--fresh", action="store_true", help="re-run every stage")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = replace(QUICK if a.quick else UScopeConfig(), base=a.base, out_dir=a.out, threads=a.threads)
    run(cfg, fresh=a.fresh)
    print((RESULTS / "uscope_llm.md").read_text())
    print((RESULTS / "uscope_gguf.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
