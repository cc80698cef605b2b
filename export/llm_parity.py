"""U-SCOPE GGUF parity: torch (merged SFT+DPO) vs llama.cpp GGUF f16 / Q8_0 / Q4_K_M, and the LoRA adapter.

* Greedy top-1 token agreement: the torch model's greedy answer for each prompt is the reference
  sequence; each GGUF evaluates the same prompt + reference tokens (teacher forcing) and we count the
  answer positions (incl. the end-of-turn token) where its arg-max equals the torch token.
* LoRA adapter: base f16 GGUF + ``uscope-lora-f16.gguf`` vs the torch SFT model, the other way round
  (the GGUF's greedy answer is the reference, torch is teacher-forced): no extra torch generation.
* tokens/s per quant: prompt evaluation and greedy generation through `runtime.llm.LlamaProfiler`
  (one thread unless told otherwise).
* h_u cosine: Sentence-BERT (train/profile_encoder.SentenceEncoder) of the torch profile text vs the
  on-device profile text, per prompt (eq. 24's input side).

Run by the pipeline (``python -m umask.export.uscope_pipeline --quick``), which writes
``benchmarks/results/uscope_gguf.{json,md}``.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from umask.runtime.engines.llama import IM_END, MAX_PROFILE_TOKENS, LlamaProfiler, chat_prompt

log = logging.getLogger(__name__)


@torch.no_grad()
def torch_greedy(model: Any, tok: Any, prompts: Sequence[str], max_tokens: int) -> list[tuple[list[int], list[int]]]:
    """[(prompt ids, greedy answer ids without the end token)] with one left-padded batch."""
    end_id = tok.convert_tokens_to_ids(IM_END)
    pids = [tok(chat_prompt(p), add_special_tokens=False)["input_ids"] for p in prompts]
    L = max(len(p) for p in pids)
    ids = torch.full((len(pids), L), tok.pad_token_id, dtype=torch.long)      # (B, L) left padded
    att = torch.zeros((len(pids), L), dtype=torch.long)
    for i, p in enumerate(pids):
        ids[i, L - len(p):] = torch.tensor(p)
        att[i, L - len(p):] = 1
    gen = model.generate(input_ids=ids, attention_mask=att, max_new_tokens=max_tokens, do_sample=False,
                         eos_token_id=end_id, pad_token_id=tok.pad_token_id)
    out = []
    for i, p in enumerate(pids):
        a = gen[i, L:].tolist()
        if end_id in a:
            a = a[: a.index(end_id)]
        out.append((p, a))
    return out


@torch.no_grad()
def torch_argmax(model: Any, prompt_ids: list[int], answer_ids: list[int]) -> np.ndarray:
    """Arg-max of the torch model at the answer positions (len(answer)+1: the last predicts the end)."""
    x = torch.tensor([prompt_ids + answer_ids])
    logits = model(input_ids=x).logits[0]                                   # (L, V)
    return logits[len(prompt_ids) - 1:].argmax(-1).numpy()


def gguf_argmax(prof: LlamaProfiler, prompt_ids: list[int], answer_ids: list[int]) -> np.ndarray:
    logits = prof.next_token_logits(prompt_ids + answer_ids)                # (L, V)
    return logits[len(prompt_ids) - 1:].argmax(-1)


def parity_report(merged_dir: str | Path, paths: dict[str, Path], items: Sequence[Any], *,
                  max_tokens: int = MAX_PROFILE_TOKENS, threads: int = 1, sft_dir: str | Path | None = None
                  ) -> dict[str, Any]:
    from umask.train.models.umask.profile_encoder import SentenceEncoder
    from umask.train.models.umask.uscope.llm import load_causal_lm

    prompts = [it.prompt for it in items]
    model, tok = load_causal_lm(merged_dir)
    end_id = tok.convert_tokens_to_ids(IM_END)
    log.info("torch greedy reference for %d prompts", len(prompts))
    ref = torch_greedy(model, tok, prompts, max_tokens)
    torch_texts = [tok.decode(a, skip_special_tokens=True).strip() for _, a in ref]
    enc = SentenceEncoder()
    e_torch = enc.encode(torch_texts)
    res: dict[str, Any] = {"what": "U-SCOPE GGUF parity vs torch (merged SFT+DPO), REAL 6-user sample prompts",
                           "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared), {threads} thread(s)",
                           "n_prompts": len(prompts), "max_tokens": max_tokens, "quants": {}}
    for q in ("f16", "q8_0", "q4_k_m"):
        path = paths[q]
        prof = LlamaProfiler(path, n_threads=threads, logits_all=True)
        tok_ok = all(prof.tokenize(chat_prompt(p)) == r[0] for p, r in zip(prompts, ref))
        agree, n = 0, 0
        for p_ids, a_ids in tqdm(ref, desc=f"parity {q}", unit="prompt"):
            want = np.array(a_ids + [end_id])
            got = gguf_argmax(prof, p_ids, a_ids)
            agree += int((got == want).sum())
            n += len(want)
        del prof
        gen = LlamaProfiler(path, n_threads=threads)
        texts, ps, pt, gs, gt = [], 0.0, 0.0, 0.0, 0.0
        for p_ids, _ in ref:
            ids, t = gen.generate_ids(p_ids, max_tokens)
            texts.append(gen.detokenize(ids).strip())
            ps, pt, gs, gt = ps + t["prompt_s"], pt + t["prompt_tokens"], gs + t["gen_s"], gt + t["gen_tokens"]
        del gen
        e_dev = enc.encode(texts)
        cos = (e_torch * e_dev).sum(1) / (np.linalg.norm(e_torch, axis=1) * np.linalg.norm(e_dev, axis=1))
        res["quants"][q] = {"file": path.name, "size_mb": path.stat().st_size / 2**20,
                            "top1_agreement": agree / n, "n_tokens": n, "tokenizer_match": tok_ok,
                            "prompt_tok_s": pt / max(ps, 1e-9), "gen_tok_s": gt / max(gs, 1e-9),
                            "h_u_cosine_mean": float(cos.mean()), "h_u_cosine_min": float(cos.min()),
                            "exact_text_match": float(np.mean([a == b for a, b in zip(texts, torch_texts)])),
                            "texts": texts}
    del model
    if sft_dir is not None and paths.get("lora") is not None and paths["lora"].is_file():
        sft, _ = load_causal_lm(sft_dir)
        prof = LlamaProfiler(paths["base"], lora_path=paths["lora"], n_threads=threads)
        agree, n = 0, 0
        for p_ids, _ in tqdm(ref, desc="parity lora", unit="prompt"):
            a_ids, _t = prof.generate_ids(p_ids, max_tokens)
            want = np.array(a_ids + [end_id])
            got = torch_argmax(sft, p_ids, a_ids)
            agree += int((got == want).sum())
            n += len(want)
        res["lora"] = {"file": paths["lora"].name, "size_mb": paths["lora"].stat().st_size / 2**20,
                       "base": paths["base"].name, "top1_agreement_vs_torch_sft": agree / n, "n_tokens": n}
    res["torch_texts"] = torch_texts
    res["device_example"] = {"user": int(items[0].user), "source": "real", "quant": "q4_k_m",
                             "prompt": prompts[0], "profile": res["quants"]["q4_k_m"]["texts"][0],
                             "torch_profile": torch_texts[0]}
    return res


def parity_markdown(r: dict[str, Any]) -> str:
    lines = ["# U-SCOPE on-device GGUF: parity and speed", "",
             f"Regenerate: `python -m umask.export.uscope_pipeline --quick`. Machine: {r['machine']}. "
             f"{r['n_prompts']} REAL-sample prompts, greedy, up to {r['max_tokens']} tokens.", "",
             "| GGUF | MB | top-1 agreement vs torch | tokenizer ids equal | prompt tok/s | gen tok/s | "
             "h_u cosine mean (min) | identical text |", "|---|---|---|---|---|---|---|---|"]
    for q, v in r["quants"].items():
        lines.append(f"| {v['file']} | {v['size_mb']:.0f} | {v['top1_agreement']:.3f} ({v['n_tokens']} tok) | "
                     f"{v['tokenizer_match']} | {v['prompt_tok_s']:.0f} | {v['gen_tok_s']:.1f} | "
                     f"{v['h_u_cosine_mean']:.4f} ({v['h_u_cosine_min']:.4f}) | {v['exact_text_match']:.2f} |")
    if "lora" in r:
        lv = r["lora"]
        lines += ["", f"LoRA adapter `{lv['file']}` ({lv['size_mb']:.1f} MB) on `{lv['base']}`: top-1 agreement with "
                  f"the torch SFT model {lv['top1_agreement_vs_torch_sft']:.3f} ({lv['n_tokens']} tokens)."]
    d = r["device_example"]
    lines += ["", f"## On-device profile ({d['quant']}) of REAL user {d['user']}", "", "Prompt x_u:", "", "```",
              d["prompt"], "```", "", "On device:", "", "```", d["profile"], "```", "", "Torch:", "", "```",
              d["torch_profile"], "```", "",
              "tok/s were measured on a shared, busy 2-core machine (other jobs running): read them as a lower bound.", ""]
    return "\n".join(lines)
