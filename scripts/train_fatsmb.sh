#!/usr/bin/env bash
# FatsMB on PROTOCOL v2 C (real Taobao sample): 3 seeds of the full model, the ablations, then scoring
# against every baseline (3 seeds for SASRec / BERT4Rec). One CPU thread, one job at a time.
#   ./scripts/train_fatsmb.sh [stage...]   stages: fatsmb ablations score   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
OUT=${OUT:-artifacts/fatsmb}
STAGES=${*:-fatsmb ablations score}
train() { local out=$1; shift; [ -f "$out/config.json" ] || nice -n 5 $PY -m umask.train.models.fatsmb.trainer --out "$out" "$@"; }
for stage in $STAGES; do
  case $stage in
    fatsmb)    for s in 0 1 2; do train "$OUT/seed$s" --seed $s; done ;;
    ablations) train "$OUT/den_adaln" --seed 0 --denoiser adaln --init-from "$OUT/seed0"
               train "$OUT/den_mlp" --seed 0 --denoiser mlp --init-from "$OUT/seed0"
               train "$OUT/pos_rope" --seed 0 --position rope --stage1-steps 1000 --stage2-steps 800 --stage3-steps 0
               train "$OUT/pos_ape" --seed 0 --position ape --stage1-steps 1000 --stage2-steps 800 --stage3-steps 0 ;;
    score)     nice -n 5 $PY -m umask.bench.accuracy.fatsmb --protocol C --runs "$OUT" --seeds 0,1,2 \
                 --out benchmarks/results/v2_fatsmb.json ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
