#!/usr/bin/env bash
# U-STS-LLM (issue 12): train, ablate, score, export and time the family on the Milan 5x5 sample (real data).
# Every figure of benchmarks/results/v2_ustsllm.json comes from one of these steps (each row names its command).
#
#   scripts/train_ustsllm.sh all          # everything below, in order (~2 h on a shared 2-core CPU)
#   scripts/train_ustsllm.sh train|ablations|eval|ablation-eval|nets|zeroshot|export|bundle-eval|latency|curves|patch|patch-l1|lowrank|lowrank-profile
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-0 1 2}
RUNS=""; for s in $SEEDS; do RUNS="$RUNS artifacts/train/ustsllm_s$s/ckpt/best"; done
RUN=${RUN:-artifacts/train/ustsllm_s0}           # the seed that is exported, timed and run zero-shot
SCORE="$PY -m umask.bench.accuracy.ustsllm"       # = umask eval <protocol> --family ustsllm (several --ckpt runs)
ABL=${ABL:-artifacts/train/ustsllm_ablations}
BUNDLE=${BUNDLE:-artifacts/bundles/ustsllm}
V2=${V2:-benchmarks/results/v2_ustsllm.json}
ABL_STEPS=${ABL_STEPS:-100}
ZS=artifacts/ustsllm/milan_blocksum_4x4.csv

train() {   # the full model, one run per seed: SmolLM2 blocks 0-1 frozen, 2-3 LoRA + bias; resumable (--resume auto)
  for s in $SEEDS; do
    $PY -m umask.cli train ustsllm --steps 600 --max-minutes 14 --eval-every 50 --ckpt-every 50 --patience 4 \
      --keep-last 20 --seed "$s" --out "artifacts/train/ustsllm_s$s"
  done
}

ablations() {   # Table III of the paper + random backbone, ABL_STEPS steps of the seed-0 schedule each (short, labeled so)
  for a in "no_gs --no-use-guidance" "random_backbone --backbone random" "no_ge --no-use-bias" "no_ste --no-use-ste"; do
    set -- $a
    $PY -m umask.cli train ustsllm --steps 600 --stop-at "$ABL_STEPS" --eval-every "$ABL_STEPS" --keep-last 1 \
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

eval_() {   # A1 / A2 on every protocol window: every seed (mean, std), the guidance alone, the prior alone, baselines
  for p in A1 A2; do
    $SCORE --protocol "$p" --ckpt $RUNS --guidance-only --prior-row --v2 "$V2" --out "artifacts/eval/ustsllm_${p,,}.json"
  done
}

ablation_eval() {   # the short ablation runs beside the full seed-0 run at the same step
  for p in A1 A2; do
    $SCORE --protocol "$p" $(abl_flags) --no-baselines --v2 "$V2" --out "artifacts/eval/ustsllm_ablations_${p,,}.json"
  done
}

nets() {   # the learned grid baselines (own compact implementations, train/baselines/grid_nets.py), capped time each
  $SCORE --protocol A1 --nets dlinear,lstm,gpt4ts --no-baselines --v2 "$V2" --out artifacts/eval/ustsllm_nets_a1.json
  $SCORE --protocol A2 --nets lstm,brits --no-baselines --v2 "$V2" --out artifacts/eval/ustsllm_nets_a2.json
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
    $SCORE --protocol "$p" --ckpt $RUNS --data "$ZS" --grid 4x4 --first-weekday 4 --v2 "$V2" \
      --out "artifacts/eval/ustsllm_${p,,}.json"
  done
}

export_() {
  $PY -m umask.export.families.ustsllm.exporter --ckpt "$RUN/ckpt/best" --out "$BUNDLE" --precisions fp32,fp16,int8-qdq
}

bundle_eval() {   # the exported artifacts through the torch-free runtime session, every protocol window
  for p in A1 A2; do
    $PY -m umask.cli eval "$p" --family ustsllm --bundle "$BUNDLE" --precision fp32,int8-qdq --no-baselines \
      --v2 "$V2" --out "artifacts/eval/ustsllm_bundle_${p,,}.json"
  done
}

latency() {
  for p in A1 A2; do
    $PY -m umask.bench.accuracy.ustsllm --protocol "$p" --latency --ckpt "$RUN/ckpt/best" --bundle "$BUNDLE" \
      --precision fp32,int8-qdq --v2 "$V2"
  done
}

train_patch() {  # NAME MINUTES FLAGS...: one patch-token run per seed, artifacts/train/ustsllm_NAME_s<seed> (900 steps at
  # most, MINUTES cap, patience 4), its learning curve copied to the results; sets RUNS_OF to their best checkpoints
  local name=$1 minutes=$2; shift 2
  RUNS_OF=""
  for s in $SEEDS; do
    $PY -m umask.cli train ustsllm --st-patch 48 "$@" --steps 900 --max-minutes "$minutes" --eval-every 50 \
      --ckpt-every 50 --patience 4 --keep-last 20 --seed "$s" --out "artifacts/train/ustsllm_${name}_s$s"
    cp "artifacts/train/ustsllm_${name}_s$s/metrics.jsonl" "benchmarks/results/learning_curves/ustsllm_${name}_s${s}_metrics.jsonl"
    RUNS_OF="$RUNS_OF artifacts/train/ustsllm_${name}_s$s/ckpt/best"
  done
}

patch() {   # spatio-temporal patch tokens (--st-patch 48): one run per seed (45-minute cap each), scored over the
  # seeds as `ustsllm_patch` into their own file; the seed-0 step chosen on validation A2 stays an ablation row
  train_patch patch 45
  local runs=$RUNS_OF
  for p in A1 A2; do
    $SCORE --protocol "$p" --ckpt $runs --name ustsllm_patch --no-baselines --v2 benchmarks/results/v2_ustsllm_patch.json \
      --out "artifacts/eval/ustsllm_patch_${p,,}.json"
  done
}

patch_l1() {  # the interpolation-based patch network with the absolute error (--loss l1; 35-minute cap for seed 0,
  # 30 for seeds 1-2 run side by side), gated per cell on A2 against the lowrank_interpolation row
  # (rows ustsllm_patch_l1*, v2_ustsllm_patch_l1_gated.json; kind ablation)
  train_patch patch_l1 35 --loss l1
  local runs=$RUNS_OF
  $PY -m umask.bench.accuracy.grid_residual_gate --family ustsllm --runs $runs --a2-prior lowrank --tasks a2 \
    --name ustsllm_patch_l1_gated_lowrank --kind ablation --out benchmarks/results/v2_ustsllm_patch_l1_gated.json
  # the same runs gated against the profile_lowrank_interpolation row instead (rows ustsllm_patch_l1_gated_profile*)
  $PY -m umask.bench.accuracy.grid_residual_gate --family ustsllm --runs $runs --a2-prior lowrank_profile --tasks a2 \
    --name ustsllm_patch_l1_gated_profile --kind ablation --out benchmarks/results/v2_ustsllm_patch_l1_gated_profile.json
  # the seed-0 network alone, ungated
  $SCORE --protocol A2 --ablation ustsllm_patch_l1=artifacts/train/ustsllm_patch_l1_s0/ckpt/best --no-baselines \
    --v2 benchmarks/results/v2_ustsllm_patch_l1_gated.json --out artifacts/eval/ustsllm_patch_l1_a2.json
}

lowrank() {  # patch tokens with the eq. 7 imputation guidance started from the lowrank_interpolation baseline
  # (--guide-prior lowrank, train/models/ustsllm/model.py): one run per seed (40-minute cap each), scored over the
  # seeds as `ustsllm_lowrank` (and `ustsllm_lowrank_ens3`, the mean of the seeds' outputs); STAGE_RUNS_ONLY=1
  # trains without scoring (to run seeds side by side).
  # GUIDE=lowrank_input: the row as the impute prior channel only, the guidance base stays the interpolation
  # (runs ustsllm_lowrank_input_s*, rows `ustsllm_lowrank_input` in the same file)
  # PROFILE_DECAY=0.875: the prior channel's profiles weighted towards the latest training days (the grid prior's
  # validation choice, python -m umask.bench.accuracy.grid_prior_sweep): runs ustsllm_lowrank_recent_s*, rows
  # `ustsllm_lowrank_recent` in v2_ustsllm_lowrank_recent.json (the first such rows were withdrawn: scored with the
  # wrong profiles before the scorer's run_stats fix, docs/families/ustsllm.md)
  # LOSS=l1: eqs. 15-16 with the absolute error (the MAE-optimal point; TrainConfig.loss): runs ustsllm_lowrank_l1_s*,
  # rows `ustsllm_lowrank_l1` in v2_ustsllm_lowrank_l1.json
  # PROFILE_STAT=median: the prior channel's profiles are the per-slot medians (runs ustsllm_lowrank_l1_med_s* with LOSS=l1)
  # GUIDE=lowrank_profile: the profile_lowrank_interpolation row instead (runs ustsllm_lowrank_profile*_s*, rows
  # `ustsllm_lowrank_profile*` in v2_ustsllm_lowrank_profile<tag>.json; step lowrank-profile)
  local g=${GUIDE:-lowrank} d=${PROFILE_DECAY:-1} l=${LOSS:-mse} m=${PROFILE_STAT:-mean} runs="" tag="" file=lowrank
  [[ "$d" != 1 && "$d" != 1.0 ]] && tag="_recent"
  [[ "$l" != mse ]] && tag="${tag}_$l"
  [[ "$m" != mean ]] && tag="${tag}_med"
  [[ "$g" == lowrank_profile ]] && file=lowrank_profile
  train_patch "${g}${tag}" 40 --guide-prior "$g" --profile-decay "$d" --profile-statistic "$m" --loss "$l"
  [ "${STAGE_RUNS_ONLY:-0}" = 1 ] && return
  runs=$RUNS_OF
  for p in A1 A2; do
    $SCORE --protocol "$p" --ckpt $runs --name "ustsllm_$g$tag" --guidance-only --ensemble --no-baselines \
      --v2 "benchmarks/results/v2_ustsllm_$file$tag.json" --out "artifacts/eval/ustsllm_${g}${tag}_${p,,}.json"
  done
}

lowrank_profile() {  # the lowrank_profile guidance trained with --loss l1 (3 seeds, as `lowrank`), then its per-cell A2
  # gate against the profile_lowrank_interpolation row (rows ustsllm_lowrank_profile_l1_gated*, 3 seeds), and the
  # seed-0 run as a gated bundle (export --a2-gate lowrank_profile) scored through the torch-free session
  local runs="" b=artifacts/bundles/ustsllm_lowrank_profile_l1 v2=benchmarks/results/v2_ustsllm_lowrank_profile_l1.json
  GUIDE=lowrank_profile LOSS=l1 lowrank
  for s in $SEEDS; do runs="$runs artifacts/train/ustsllm_lowrank_profile_l1_s$s/ckpt/best"; done
  $PY -m umask.bench.accuracy.grid_residual_gate --family ustsllm --runs $runs --a2-prior lowrank_profile --tasks a2 \
    --name ustsllm_lowrank_profile_l1_gated --out benchmarks/results/v2_ustsllm_lowrank_profile_l1_gated.json
  $PY -m umask.export.families.ustsllm.exporter --ckpt artifacts/train/ustsllm_lowrank_profile_l1_s0/ckpt/best --out "$b" \
    --precisions fp32,int8-qdq --a2-gate lowrank_profile
  $SCORE --protocol A1 --bundle "$b" --name ustsllm_lowrank_profile_l1 --precision fp32,int8-qdq --no-baselines \
    --v2 "$v2" --out artifacts/eval/ustsllm_lowrank_profile_l1_bundle_a1.json
  $SCORE --protocol A2 --bundle "$b" --name ustsllm_lowrank_profile_l1_gated --precision fp32,int8-qdq --no-baselines \
    --v2 "$v2" --out artifacts/eval/ustsllm_lowrank_profile_l1_bundle_a2.json
}

curves() {   # the learning curves (training + validation records) of every run
  mkdir -p benchmarks/results/learning_curves
  for s in $SEEDS; do cp "artifacts/train/ustsllm_s$s/metrics.jsonl" "benchmarks/results/learning_curves/ustsllm_s${s}_metrics.jsonl"; done
  for d in "$ABL"/*/; do [ -f "$d/metrics.jsonl" ] && cp "$d/metrics.jsonl" \
    "benchmarks/results/learning_curves/ustsllm_$(basename "$d")_metrics.jsonl"; done
}

case "${1:-all}" in
  train) train ;; ablations) ablations ;; eval) eval_ ;; ablation-eval) ablation_eval ;; nets) nets ;;
  zeroshot) zeroshot ;; export) export_ ;;
  bundle-eval) bundle_eval ;; latency) latency ;; curves) curves ;; patch) patch ;; patch-l1) patch_l1 ;;
  lowrank) lowrank ;; lowrank-profile) lowrank_profile ;;
  all) train; ablations; eval_; ablation_eval; nets; zeroshot; export_; bundle_eval; latency; curves ;;
  *) echo "usage: $0 [all|train|ablations|eval|ablation-eval|nets|zeroshot|export|bundle-eval|latency|curves|patch|patch-l1|lowrank|lowrank-profile]" >&2
     exit 2 ;;
esac
