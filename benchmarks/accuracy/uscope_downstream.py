"""U-SCOPE downstream table (paper RQ4): ONE U-MASK checkpoint with h_u from four profile sources.

    python -m umask.bench.accuracy.uscope_downstream [--ckpt DIR] [--users 20]

(a) no profile, (b) the template profile, (c) the U-SCOPE LLM after LoRA SFT (base f16 GGUF + LoRA
GGUF), (d) after LoRA SFT + DPO (merged f16 GGUF); greedy generation with runtime/llm.LlamaProfiler.
The checkpoint (default: ``artifacts/train/umask_small_v2/ckpt/latest`` if it exists, else
``umask_small``) was trained on TEMPLATE profiles, so (c)/(d) test whether LLM-written profiles are
close enough to the template in SBERT space to keep its accuracy; a checkpoint trained on LLM
profiles would be the paper's setting. Subset: the first N SYNTHETIC users, B1 (target hours 2, 8,
14, 20) + B3, no real sample, no baselines, so it runs in minutes. This is a thin wrapper that calls
``benchmarks/umask_eval.py`` with one ``--profile`` per row; the exact command lands in the result file
(``benchmarks/results/uscope_downstream.{json,md}``).

    python -m umask.bench.accuracy.uscope_downstream --trained-on-llm CKPT_TEMPLATE CKPT_LLM [--gguf F16.gguf]

The paper's setting (issue #10): CKPT_LLM was trained on profiles the LLM (``--gguf``) wrote
(scripts/train_umask_llm_profiles.sh), CKPT_TEMPLATE is the same fine-tune on template profiles. Rows:
the control with template profiles; CKPT_LLM with the LLM profiles it was trained on, with template
profiles, with no profile; same windows. Repeat ``--trained-on-llm`` once per training seed; the v2 result
file ``benchmarks/results/uscope_llm_trained_seeds.{json,md}`` holds the mean and population std over the
seeds (harness outputs: ``uscope_llm_trained.{json,md}``, then ``uscope_llm_trained_1.{json,md}``, ...).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from umask.bench.accuracy.user_umask import main as umask_eval_main
from umask.runtime.core.errors import InputError
from umask.train.common.checkpoints import resolve_checkpoint

ROOT = Path(__file__).resolve().parents[2]
GGUF = Path("artifacts/uscope/gguf")


def default_ckpt() -> Path:
    for run in ("umask_small_v2", "umask_small"):
        p = Path("artifacts/train") / run / "ckpt" / "latest"
        if (ROOT / p).exists():
            step = (ROOT / p).read_text().strip() if (ROOT / p).is_file() else None
            return p.parent / step if step else p
    raise FileNotFoundError("no U-MASK checkpoint under artifacts/train/umask_small{_v2,}/ckpt")


def harness_argv(rows: dict[str, tuple[Path, str, str]], users: int, out: str) -> list[str]:
    """benchmarks/accuracy/user_umask.py arguments: one model per row {name: (checkpoint, profile spec,
    note)}, the first ``users`` SYNTHETIC users, B1 (target hours 2, 8, 14, 20) + B3, no baselines."""
    argv: list[str] = []
    for name, (ckpt, _, _) in rows.items():
        argv += ["--ckpt", str(ckpt), "--name", name]
    for name, (_, src, note) in rows.items():
        argv += ["--profile", f"{name}={src}", "--note", f"{name}={note}"]
    return argv + ["--users", str(users), "--tasks", "B1,B3", "--b1-every", "6", "--b1-offset", "2", "--no-real",
                   "--no-baselines", "--steps", "10", "--samples", "2", "--out", out]


def argv_for(ckpt: Path, users: int, out: str) -> list[str]:
    lora, dpo = f"llm:{GGUF}/uscope-base-f16.gguf+{GGUF}/uscope-lora-f16.gguf", f"llm:{GGUF}/uscope-f16.gguf"
    rows = {"a_no_profile": (ckpt, "none", "(a) no profile: h_u = the learned no-profile embedding"),
            "b_template": (ckpt, "template", "(b) template profile (what the checkpoint was trained on)"),
            "c_lora": (ckpt, lora, "(c) U-SCOPE LLM after LoRA SFT (base f16 GGUF + LoRA GGUF, greedy); checkpoint "
                                   "trained on TEMPLATE profiles"),
            "d_lora_dpo": (ckpt, dpo, "(d) U-SCOPE LLM after LoRA SFT + DPO (merged f16 GGUF, greedy); checkpoint "
                                      "trained on TEMPLATE profiles")}
    return harness_argv(rows, users, out)


# -----------------------------------------------------------------------------
# --trained-on-llm: a checkpoint TRAINED on LLM-written profiles vs its template-trained control (issue #10)
# -----------------------------------------------------------------------------

LLM_TRAINED_V2 = "benchmarks/results/uscope_llm_trained_seeds.json"
FT_NOTE = ("fine-tuned 300 steps from artifacts/train/umask_small_v3/ckpt/step_000524 (the shipped recipe, 50 "
           "SYNTHETIC users of simulator seed 0, training days only; scripts/train_umask_llm_profiles.sh)")


def llm_trained_rows(pairs: Sequence[tuple[Path, Path]], gguf: Path) -> dict[str, tuple[int, str, str, str]]:
    """{name: (0 = the template-trained / 1 = the LLM-trained checkpoint of each pair, inference profile
    spec, kind, note)}: (A) the template-trained control with template profiles; (B) the LLM-trained
    checkpoint with the LLM profiles it was trained on, with template profiles and with no profile."""
    a = f"(A) control: {FT_NOTE}; profiles at training: TEMPLATE ({', '.join(str(p[0]) for p in pairs)})"
    b = (f"(B) {FT_NOTE}; profiles at training: U-SCOPE LLM llm:{gguf} (greedy) "
         f"({', '.join(str(p[1]) for p in pairs)})")
    return {"umask_ft_template": (0, "template", "ablation", f"{a}; at inference: TEMPLATE"),
            "umask_ft_llm": (1, f"llm:{gguf}", "ours", f"{b}; at inference: the same LLM (greedy)"),
            "umask_ft_llm_infer_template": (1, "template", "ablation", f"{b}; at inference: TEMPLATE"),
            "umask_ft_llm_infer_none": (1, "none", "ablation",
                                        f"{b}; at inference: no profile (the learned no-profile embedding)")}


def profile_shift(run_dir: Path) -> dict[str, Any]:
    """How far the LLM texts a run was trained on (<run>/profiles.json) sit from the template texts of the
    same users in SBERT space: mean / min cosine per user, and the mean cosine between DIFFERENT users'
    profiles for each source (lower = the profiles tell users apart more); and the facts each text gets
    right (uscope/llm.profile_consistency: share of the applicable fact checks against ProfileStats)."""
    from umask.runtime.families.umask.profile_text import template_profile
    from umask.train.models.umask.uscope.llm import profile_consistency
    from umask.train.models.umask.profile_encoder import SentenceEncoder, profile_embeddings
    from umask.train.models.umask.trainer import TrainConfig, load_population

    prof = json.loads((run_dir / "profiles.json").read_text())
    cfg = json.loads((run_dir / "config.json").read_text())["train"]
    users, _ = load_population(TrainConfig(n_users=cfg["n_users"], sim_seed=cfg["sim_seed"], data=cfg["data"]))
    enc = SentenceEncoder(cache_dir=cfg.get("sbert_cache") or None)
    stats = [u.profile for u in users]
    texts = [prof["profiles"][str(u.user)] for u in users]
    tpl, _ = profile_embeddings(stats, "template", encoder=enc)
    llm, _ = profile_embeddings(stats, "text", encoder=enc, texts=texts)

    def between(e: np.ndarray) -> float:
        c = e @ e.T
        return float((c.sum() - np.trace(c)) / (len(c) * (len(c) - 1)))

    same = (tpl * llm).sum(1)            # SBERT embeddings are L2-normalized: dot = cosine
    return {"run": str(run_dir), "n_users": len(users), "cos_llm_vs_template_mean": round(float(same.mean()), 4),
            "cos_llm_vs_template_min": round(float(same.min()), 4),
            "cos_between_users_template": round(between(tpl), 4), "cos_between_users_llm": round(between(llm), 4),
            "distinct_texts_template": len({template_profile(st) for st in stats}),
            "distinct_texts_llm": len(set(texts)),
            "facts_right_template": round(float(np.mean([profile_consistency(template_profile(st), st)
                                                          for st in stats])), 4),
            "facts_right_llm": round(float(np.mean([profile_consistency(t, st) for t, st in zip(texts, stats)])), 4)}


def write_v2(harness_outs: Sequence[Path], v2_out: Path, rows: dict[str, tuple[int, str, str, str]], command: str,
             seeds: Sequence[int], extra_meta: dict[str, Any] | None = None) -> int:
    """The harness rows of ``harness_outs`` (one file per training seed, same windows) as a v2 result
    file: the scoreboard's figures of user_umask.py results (v1 windows), mean over the training seeds,
    spread = their population std (null for one seed); each row with its kind, family and note; + a .md."""
    from datetime import datetime, timezone

    from umask.bench.latency.machine import git_commit
    from umask.bench.reports.scoreboard import _user_rows

    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    groups: dict[tuple[str, str, str], list[Any]] = {}
    for path in harness_outs:
        for r in _user_rows(path, json.loads(path.read_text())["rows"], "0000000", date):   # commit: the meta's
            groups.setdefault((r.protocol, r.model, r.metric), []).append(r)
    one = len(harness_outs) == 1
    out = []
    for (proto, model, metric), rs in groups.items():
        if len(rs) != len(harness_outs) or len({r.n_windows for r in rs}) != 1:
            raise InputError(f"{proto} {model} {metric}: not one figure on the same windows per seed")
        vals = np.array([r.value for r in rs])
        r = rs[0]
        _, _, kind, note = rows[model]
        out.append({"protocol": proto, "dataset": r.dataset, "data": r.data, "model": model, "kind": kind,
                    "family": "umask", "artifact": "torch", "metric": metric, "value": round(float(vals.mean()), 6),
                    "better": r.better, "n_windows": r.n_windows, "seeds": list(seeds),
                    "spread": None if one else round(float(vals.std()), 6), "command": command,
                    "notes": f"{note}; {r.notes}; " + ("1 training seed" if one else
                                                     f"mean over training seeds {list(seeds)}")})
    meta = {"command": command, "commit": git_commit() or "unknown", "date": date,
            "harness_results": [str(p) for p in harness_outs], "seeds": list(seeds),
            "spread": "population std over training seeds (null for one seed)",
            "notes": ("SYNTHETIC. U-MASK trained on profiles written by the U-SCOPE LLM (issue #10) vs the same "
                      "fine-tune on template profiles; 20 users, B1 target hours 2/8/14/20 + B3, 10 DDIM steps, "
                      f"2 samples, first-step x0 point forecast (prior blend); training seeds {list(seeds)}, "
                      "sampling seed 0"),
            **(extra_meta or {})}
    v2_out.parent.mkdir(parents=True, exist_ok=True)
    v2_out.write_text(json.dumps({"meta": meta, "rows": out}, indent=1) + "\n")
    keys = ("mae_all/traffic", "mae_all/app", "mae_all/location", "rmse_all/traffic", "rmse_all/app",
            "rmse_all/location", "recall@3/app", "ndcg@3/app")
    tab: dict[tuple[str, str], dict[str, str]] = {}
    for r in out:
        sd = "" if r["spread"] is None else f" ± {r['spread']:.2g}"
        tab.setdefault((r["protocol"], r["model"]), {})[r["metric"]] = f"{r['value']:.4g}{sd}"
    present = [k for k in keys if any(k in v for v in tab.values())]
    md = ["# U-MASK trained on LLM-written profiles (SYNTHETIC)", "", f"Command: `{command}`", "",
          f"{meta['notes']}; mean ± {meta['spread']}.", "",
          "| protocol | model | profile at inference | " + " | ".join(present) + " |",
          "|---|---|---|" + "---:|" * len(present)]
    for (proto, model), v in tab.items():
        md.append(f"| {proto} | {model} | {rows[model][1]} | " + " | ".join(v.get(k, "") for k in present) + " |")
    md += ["", *(f"- {n}: {note}" for n, (_, _, _, note) in rows.items())]
    for i, ps in enumerate(meta.get("profile_shift", [])):
        md += ["", f"Profile texts at training, SBERT space (`profile_shift`, run {i + 1}): "
               + ", ".join(f"{k} {v}" for k, v in ps.items())]
    v2_out.with_suffix(".md").write_text("\n".join(md) + "\n")
    return len(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", default=None, help="U-MASK checkpoint (default: umask_small_v2 latest, else umask_small)")
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--out", default=None, help="harness result file (default: benchmarks/results/"
                                                "uscope_downstream.json, with --trained-on-llm uscope_llm_trained.json; "
                                                "the second and later pairs add _<i>)")
    ap.add_argument("--trained-on-llm", nargs=2, action="append", metavar=("CKPT_TEMPLATE", "CKPT_LLM"), default=None,
                    help="instead of the four-source table of one checkpoint: the control fine-tuned on template "
                         "profiles vs the checkpoint fine-tuned on --gguf's profiles (with its LLM, template and no "
                         "profile), also written as a v2 result file (--v2-out); repeat it once per training seed")
    ap.add_argument("--gguf", default=str(GGUF / "uscope-f16.gguf"), help="the LLM CKPT_LLM was trained on")
    ap.add_argument("--v2-out", default=LLM_TRAINED_V2)
    ap.add_argument("--reuse", action="store_true",
                    help="with --trained-on-llm: a pair whose harness result exists is not evaluated again")
    a = ap.parse_args(argv)
    if a.trained_on_llm is None:
        return umask_eval_main(argv_for(Path(a.ckpt) if a.ckpt else default_ckpt(), a.users,
                                        a.out or "benchmarks/results/uscope_downstream.json"))
    pairs = [(Path(t), Path(m)) for t, m in a.trained_on_llm]
    seeds = []
    for pair in pairs:
        s = {json.loads((resolve_checkpoint(c) / "config.json").read_text())["train"]["seed"] for c in pair}
        if len(s) != 1:
            raise InputError(f"{pair}: the two checkpoints of a pair must share the training seed, got {sorted(s)}")
        seeds.append(s.pop())
    base = Path(a.out or "benchmarks/results/uscope_llm_trained.json")
    outs = [base if i == 0 else base.with_name(f"{base.stem}_{i}{base.suffix}") for i in range(len(pairs))]
    rows = llm_trained_rows(pairs, Path(a.gguf))
    for pair, out in zip(pairs, outs):
        if a.reuse and out.is_file():
            continue
        rc = umask_eval_main(harness_argv({n: (pair[w], s, note) for n, (w, s, _, note) in rows.items()},
                                          a.users, str(out)))
        if rc != 0:
            return rc
    args = [x for x in (sys.argv[1:] if argv is None else argv) if x != "--reuse"]
    command = shlex.join(["python", "-m", "umask.bench.accuracy.uscope_downstream", *args])
    # the LLM texts are the same for every seed (one cache); the shift is measured on the first run's
    run = next((p for p in (pairs[0][1], *pairs[0][1].parents) if (p / "profiles.json").is_file()), None)
    n = write_v2(outs, Path(a.v2_out), rows, command, seeds,
                 {"profile_shift": [profile_shift(run)] if run is not None else []})
    print(f"wrote {n} rows to {a.v2_out} and {Path(a.v2_out).with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
