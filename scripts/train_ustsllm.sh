#!/usr/bin/env bash
# U-STS-LLM (issue 12): train, ablate, score, export and time the family on the Milan 5x5 sample (real data).
# Every figure of benchmarks/results/v2_ustsllm.json comes from one of these steps (each row names its command).
#
#   scripts/train_ustsllm.sh all          # everything below, in order (~2 h on a shared 2-core CPU)
#   scripts/train_ustsllm.sh train|ablations|eval|zeroshot|export|bundle-eval|latency|curves
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
RUN=${RUN:-artifacts/train/ustsllm}
ABL=${ABL:-artifacts/train/ustsllm_ablations}
BUNDLE=${BUNDLE:-artifacts/bundles/ustsllm}
V2=${V2:-benchmarks/results/v2_ustsllm.json}
ABL_STEPS=${ABL_STEPS:-50}
ZS=artifacts/ustsllm/milan_blocksum_4x4.csv

train() {   # the full model: SmolLM2 blocks 0-1 frozen, 2-3 LoRA + bias; resumable (--resume auto)
  $PY -m umask.cli train ustsllm --steps 400 --max-minutes 25 --keep-last 10 --out "$RUN"
}

ablations() {   # Table III of the paper + random backbone, each ABL_STEPS steps (short runs, labeled so)
  for a in "no_ge --no-use-bias" "random_backbone --backbone random" "no_gs --no-use-guidance" "no_ste --no-use-ste"; do
    set -- $a
    $PY -m umask.cli train ustsllm --steps 400 --stop-at "$ABL_STEPS" --eval-every "$ABL_STEPS" --keep-last 1 \
      --out "$ABL/$1" "${@:2}"
  done
}

abl_flags() {   # --ablation NAME=CKPT for every finished ablation run, and the full model at the same step
  local f=""
  for d in "$ABL"/*/; do [ -d "$d/ckpt" ] && f="$f --ablation ustsllm_$(basename "$d")_${ABL_STEPS}steps=$d/ckpt/$(cat "$d/ckpt/latest")"; done
  local same="$RUN/ckpt/step_$(printf %06d "$ABL_STEPS")"
  [ -d "$same" ] && f="$f --ablation ustsllm_full_${ABL_STEPS}steps=$same"
  echo "$f"
}

eval_() {   # A1 / A2 on every protocol window: the model, its ablations, learned baselines, harness baselines
  $PY -m umask.cli eval A1 --family ustsllm --ckpt "$RUN" $(abl_flags) --nets dlinear,lstm,gpt4ts --v2 "$V2" \
    --out artifacts/eval/ustsllm_a1.json
  $PY -m umask.cli eval A2 --family ustsllm --ckpt "$RUN" $(abl_flags) --nets lstm --v2 "$V2" \
    --out artifacts/eval/ustsllm_a2.json
}

zeroshot_grid() {   # 16 series the model never saw as such: sums of each 2x2 block of neighbouring Milan cells
  mkdir -p "$(dirname "$ZS")"
  $PY - "$ZS" <<'EOF'
import sys, numpy as np
from umask.train.data.grids import milan_grid
v = milan_grid().values.reshape(-1, 5, 5)
s = v[:, :-1, :-1] + v[:, 1:, :-1] + v[:, :-1, 1:] + v[:, 1:, 1:]       # (slots, 4, 4)
np.savetxt(sys.argv[1], s.reshape(len(v), 16), delimiter=",", fmt="%.4f")
EOF
}

zeroshot() {
  zeroshot_grid
  for p in A1-zeroshot A2-zeroshot; do
    $PY -m umask.cli eval "$p" --family ustsllm --ckpt "$RUN" --data "$ZS" --grid 4x4 --v2 "$V2" \
      --out "artifacts/eval/ustsllm_${p,,}.json"
  done
}

export_() {
  $PY -m umask.export.families.ustsllm.exporter --ckpt "$RUN" --out "$BUNDLE" --precisions fp32,fp16,int8-qdq
}

bundle_eval() {   # the exported artifacts through the torch-free runtime session, every protocol window
  for p in A1 A2; do
    $PY -m umask.cli eval "$p" --family ustsllm --bundle "$BUNDLE" --precision fp32,int8-qdq --no-baselines \
      --v2 "$V2" --out "artifacts/eval/ustsllm_bundle_${p,,}.json"
  done
}

latency() {
  for p in A1 A2; do
    $PY -m umask.bench.accuracy.ustsllm --protocol "$p" --latency --ckpt "$RUN" --bundle "$BUNDLE" \
      --precision fp32,int8-qdq --v2 "$V2"
  done
}

curves() {   # the learning curves (training + validation records) of every run
  mkdir -p benchmarks/results/learning_curves
  cp "$RUN/metrics.jsonl" benchmarks/results/learning_curves/ustsllm_metrics.jsonl
  for d in "$ABL"/*/; do [ -f "$d/metrics.jsonl" ] && cp "$d/metrics.jsonl" \
    "benchmarks/results/learning_curves/ustsllm_$(basename "$d")_metrics.jsonl"; done
}

case "${1:-all}" in
  train) train ;; ablations) ablations ;; eval) eval_ ;; zeroshot) zeroshot ;; export) export_ ;;
  bundle-eval) bundle_eval ;; latency) latency ;; curves) curves ;;
  all) train; ablations; eval_; zeroshot; export_; bundle_eval; latency; curves ;;
  *) echo "usage: $0 [all|train|ablations|eval|zeroshot|export|bundle-eval|latency|curves]" >&2; exit 2 ;;
esac
