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
"""

from __future__ import annotations

import argparse
from pathlib import Path

from umask.bench.accuracy.user_umask import main as umask_eval_main

ROOT = Path(__file__).resolve().parents[2]
GGUF = Path("artifacts/uscope/gguf")


def default_ckpt() -> Path:
    for run in ("umask_small_v2", "umask_small"):
        p = Path("artifacts/train") / run / "ckpt" / "latest"
        if (ROOT / p).exists():
            step = (ROOT / p).read_text().strip() if (ROOT / p).is_file() else None
            return p.parent / step if step else p
    raise FileNotFoundError("no U-MASK checkpoint under artifacts/train/umask_small{_v2,}/ckpt")


def argv_for(ckpt: Path, users: int, out: str) -> list[str]:
    rows = {"a_no_profile": ("none", "(a) no profile: h_u = the learned no-profile embedding"),
            "b_template": ("template", "(b) template profile (what the checkpoint was trained on)"),
            "c_lora": (f"llm:{GGUF}/uscope-base-f16.gguf+{GGUF}/uscope-lora-f16.gguf",
                       "(c) U-SCOPE LLM after LoRA SFT (base f16 GGUF + LoRA GGUF, greedy); checkpoint trained on "
                       "TEMPLATE profiles"),
            "d_lora_dpo": (f"llm:{GGUF}/uscope-f16.gguf",
                           "(d) U-SCOPE LLM after LoRA SFT + DPO (merged f16 GGUF, greedy); checkpoint trained on "
                           "TEMPLATE profiles")}
    argv: list[str] = []
    for name in rows:
        argv += ["--ckpt", str(ckpt), "--name", name]
    for name, (src, note) in rows.items():
        argv += ["--profile", f"{name}={src}", "--note", f"{name}={note}"]
    return argv + ["--users", str(users), "--tasks", "B1,B3", "--b1-every", "6", "--b1-offset", "2", "--no-real",
                   "--no-baselines", "--steps", "10", "--samples", "2", "--out", out]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", default=None, help="U-MASK checkpoint (default: umask_small_v2 latest, else umask_small)")
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--out", default="benchmarks/results/uscope_downstream.json")
    a = ap.parse_args(argv)
    return umask_eval_main(argv_for(Path(a.ckpt) if a.ckpt else default_ckpt(), a.users, a.out))


if __name__ == "__main__":
    raise SystemExit(main())
