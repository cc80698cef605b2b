"""The on-device U-SCOPE profile: time per profile and quality per GGUF quant and decoding mode (issue 15 deliver 4).

    python -m umask.bench.latency.llm_profile --gguf-dir artifacts/uscope/gguf \\
        --quants f16,q8_0,q4_k_m --threads 1,2 --out benchmarks/results/llm_profile_cpu.json

Prompts: the profiling prompts x_u (`profile_text.build_prompt`) of the REAL 6-user Tsinghua sample, one
full day each. Every (quant, mode, threads) generates the profile of every prompt ``--reps`` times, greedy,
through the runtime's `LlamaProfiler` (llama.cpp), after one warm-up profile:

* ``plain``: the whole chat prompt evaluated per profile, one token per model call (the old path);
* ``prefix``: the chat frame + system prompt evaluated once and kept (`LlamaProfiler` ``reuse_prefix``);
* ``fast``: ``prefix`` + prompt-lookup drafting (``draft_tokens``);
* ``template``: ``fast`` + the rule-based template profile of the same statistics as a second draft source
  (`LlamaProfiler.generate(..., draft=...)`).
Drafted modes are greedy in exact arithmetic only; the gate column says whether their texts equal the
quant's plain greedy texts (runtime/engines/llama.py, the note above DRAFT_TOKENS).

Quality gate per row: the quant's teacher-forced top-1 agreement with the f16 GGUF's plain greedy profile
of each prompt (end-of-turn included) >= `GATE_TOP1`, and the f16 GGUF's teacher-forced top-1 agreement with
the text the row's mode produced >= `GATE_TOP1` (drafting may leave the plain greedy path after a near-tie:
batched evaluation rounds differently; whether the text equals the plain one is reported too). Rows: p50 / p99 / mean / std of the seconds per profile, prompt and answer tokens,
model calls, accepted draft tokens, and the gate. The machine's load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from umask.bench.latency.machine import REPO_ROOT, git_commit, load_average, machine_info
from umask.bench.latency.timing import write_json_md
from umask.runtime.engines.llama import IM_END, MAX_PROFILE_TOKENS, LlamaProfiler, chat_prompt

log = logging.getLogger(__name__)

GATE_TOP1 = 0.98                     # at most ~1 answer token in 50 may differ from f16 under teacher forcing
# (draft_tokens, reuse_prefix, template draft)
MODES = {"plain": (0, False, False), "prefix": (0, True, False), "fast": (4, True, False),
         "template": (4, True, True)}
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "llm_profile_cpu.json"


def real_stats(n: int | None = None) -> list[Any]:
    """U-SCOPE statistics (`ProfileStats`) of the first ``n`` users (all: None) of the REAL 6-user sample,
    each over its whole day."""
    from umask.bench.latency.request import RealSample
    from umask.runtime.core.featurize import profile_statistics
    from umask.runtime.core.tessellation import fit_layout

    sample = RealSample.load()
    out = []
    for u in sorted(sample.events)[:n]:
        ev = sample.events[u]
        layout = fit_layout(ev, sample.catalog, sample.grid, sample.fcfg.H, sample.fcfg.W)
        out.append(profile_statistics(ev, sample.catalog, layout, sample.fcfg))
    return out


def real_prompts(n: int | None = None) -> list[str]:
    """x_u of the first ``n`` users (all: None) of the REAL 6-user sample."""
    from umask.runtime.families.umask.profile_text import build_prompt

    return [build_prompt(st) for st in real_stats(n)]


def top1_agreement(prof: LlamaProfiler, prompts_ids: Sequence[list[int]], answers: Sequence[list[int]],
                   end_id: int) -> float:
    """Share of reference answer positions (+ the end-of-turn) where the arg-max of ``prof`` (a teacher-forcing
    profiler, ``logits_all=True``) is the reference token."""
    hit = n = 0
    for p, a in zip(prompts_ids, answers):
        ref = list(a) + [end_id]
        logits = prof.next_token_logits(list(p) + list(a))               # (len, vocab)
        pred = logits[len(p) - 1: len(p) - 1 + len(ref)].argmax(axis=1)
        hit += int((pred == np.asarray(ref)).sum())
        n += len(ref)
    return hit / max(n, 1)


def time_mode(path: Path, prompts: Sequence[str], mode: str, threads: int, reps: int, max_tokens: int,
              drafts: Sequence[str]) -> tuple[dict[str, Any], list[list[int]]]:
    draft, reuse, use_text = MODES[mode]
    prof = LlamaProfiler(path, n_threads=threads, draft_tokens=draft, reuse_prefix=reuse)
    ids = [prof.tokenize(chat_prompt(p)) for p in prompts]
    dids = [prof.tokenize(d) if use_text else None for d in drafts]
    prof.generate_ids(ids[0], max_tokens, draft_ids=dids[0])             # warm-up (and the cached prefix)
    secs, outs, stats = [], [], []
    for _ in range(reps):
        for p, d in zip(ids, dids):
            t0 = time.perf_counter()
            o, t = prof.generate_ids(p, max_tokens, draft_ids=d)
            secs.append(time.perf_counter() - t0)
            stats.append(t)
    for p, d in zip(ids, dids):
        outs.append(prof.generate_ids(p, max_tokens, draft_ids=d)[0])
    s = np.asarray(secs)
    gen = sum(t["gen_tokens"] for t in stats)
    row = {"mode": mode, "threads": threads, "draft_tokens": draft, "reuse_prefix": reuse,
           "template_draft": use_text, "n": len(secs),
           "p50_s": round(float(np.median(s)), 4), "p99_s": round(float(np.percentile(s, 99)), 4),
           "mean_s": round(float(s.mean()), 4), "std_s": round(float(s.std()), 4),
           "prompt_tokens_mean": round(float(np.mean([t["prompt_tokens"] for t in stats])), 1),
           "prompt_reused_mean": round(float(np.mean([t["prompt_reused"] for t in stats])), 1),
           "answer_tokens_mean": round(gen / len(stats), 1),
           "prompt_s_mean": round(float(np.mean([t["prompt_s"] for t in stats])), 4),
           "gen_s_mean": round(float(np.mean([t["gen_s"] for t in stats])), 4),
           "model_calls_per_token": round(sum(t["model_calls"] for t in stats) / max(gen, 1), 3),
           "draft_accepted_share": round(sum(t["draft_accepted"] for t in stats) / max(gen, 1), 3)}
    return row, outs


def run(gguf_dir: Path, quants: Sequence[str], threads: Sequence[int], reps: int, max_tokens: int,
        modes: Sequence[str]) -> dict[str, Any]:
    from umask.runtime.families.umask.profile_text import build_prompt, template_profile

    stats = real_stats()
    prompts, drafts = [build_prompt(st) for st in stats], [template_profile(st) for st in stats]
    files = {q: gguf_dir / f"uscope-{q}.gguf" for q in quants}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise SystemExit(f"llm_profile: missing GGUF files {missing} (python -m umask.export.uscope_pipeline --quick)")
    ref_path = gguf_dir / "uscope-f16.gguf"
    ref = LlamaProfiler(ref_path, draft_tokens=0, reuse_prefix=False)
    p_ids = [ref.tokenize(chat_prompt(p)) for p in prompts]
    ref_out = [ref.generate_ids(p, max_tokens)[0] for p in p_ids]
    end_id = ref.tokenize(IM_END)[0]
    del ref
    f16_tf = LlamaProfiler(ref_path, logits_all=True)       # teacher forcing with f16, loaded once for every row
    rows, gate = [], {}
    for q, f in files.items():
        agree = 1.0 if f == ref_path else top1_agreement(LlamaProfiler(f, logits_all=True), p_ids, ref_out, end_id)
        gate[q] = {"top1_vs_f16": round(agree, 4), "bar": GATE_TOP1, "pass": bool(agree >= GATE_TOP1)}
        plain_ids: list[list[int]] | None = None
        for thr in threads:
            for mode in modes:
                row, outs = time_mode(f, prompts, mode, thr, reps, max_tokens, drafts)
                if mode == "plain" and plain_ids is None:
                    plain_ids = outs
                # the text this mode produced, checked by the f16 model (teacher forcing): a drafted mode may
                # leave the plain greedy path after a near-tie (batched rounding), so its own text is gated
                f16_on_out = top1_agreement(f16_tf, p_ids, outs, end_id)
                row["gate"] = {"equal_plain_text": None if plain_ids is None else outs == plain_ids,
                               "f16_top1_on_output": round(f16_on_out, 4),
                               "pass": bool(agree >= GATE_TOP1 and f16_on_out >= GATE_TOP1)}
                rows.append({"quant": q, "file": f.name, "size_mb": round(f.stat().st_size / 2**20, 1), **row})
                log.info("%s %s threads %d: p50 %.3f s, gate %s", q, mode, thr, row["p50_s"], row["gate"])
    return {"rows": rows, "gate": gate, "n_prompts": len(prompts),
            "reference_answer_tokens": [len(o) for o in ref_out]}


def markdown(doc: dict[str, Any]) -> str:
    m = doc["meta"]
    lines = ["# On-device U-SCOPE profile: seconds per profile by quant and decoding mode", "",
             f"Command: `{m['command']}`. Machine: {m['machine'].get('cpu', '?')}; load average before / after "
             f"{m['load_before']} / {m['load_after']}; git {m['commit']}; {m['date']}. REAL 6-user sample prompts, "
             f"greedy, up to {m['max_tokens']} tokens, {m['reps']} repetitions after a warm-up.", "",
             "| quant | MB | mode | threads | p50 s | p99 s | prompt tok (reused) | answer tok | calls / tok | "
             "quant top-1 vs f16 | f16 top-1 on this text | = plain text | gate |",
             "|---|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---|---|"]
    for r in doc["rows"]:
        g, rg = doc["gate"][r["quant"]], r["gate"]
        lines.append(f"| {r['quant']} | {r['size_mb']} | {r['mode']} | {r['threads']} | {r['p50_s']:.3f} | "
                     f"{r['p99_s']:.3f} | {r['prompt_tokens_mean']:.0f} ({r['prompt_reused_mean']:.0f}) | "
                     f"{r['answer_tokens_mean']:.0f} | {r['model_calls_per_token']:.2f} | {g['top1_vs_f16']:.3f} | "
                     f"{rg['f16_top1_on_output']:.3f} | {rg['equal_plain_text']} | {'pass' if rg['pass'] else 'FAIL'} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m umask.bench.latency.llm_profile", description=__doc__.splitlines()[0])
    ap.add_argument("--gguf-dir", type=Path, default=REPO_ROOT / "artifacts" / "uscope" / "gguf")
    ap.add_argument("--quants", default="f16,q8_0,q4_k_m")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--threads", default="1")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=MAX_PROFILE_TOKENS)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ns = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    load0 = load_average()
    res = run(ns.gguf_dir, [q for q in ns.quants.split(",") if q], [int(t) for t in ns.threads.split(",") if t],
              ns.reps, ns.max_tokens, [m for m in ns.modes.split(",") if m])
    doc = {"meta": {"command": shlex.join(["python", "-m", "umask.bench.latency.llm_profile", *argv]),
                    "commit": git_commit(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "machine": machine_info(), "load_before": load0, "load_after": load_average(),
                    "max_tokens": ns.max_tokens, "reps": ns.reps, "data": "real",
                    "gate": f"per row: the quant's teacher-forced top-1 agreement with the f16 GGUF's greedy profile "
                            f">= {GATE_TOP1}, and the f16 GGUF's teacher-forced top-1 agreement with the text this "
                            f"mode produced >= {GATE_TOP1} (a drafted mode's text may differ from the plain greedy "
                            "text after a near-tie; column '= plain text')"},
           **res}
    write_json_md(ns.out, doc, markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
