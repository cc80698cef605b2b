#!/usr/bin/env bash
# FatsMB on PROTOCOL v2 C (real Taobao sample, 814 users, full ranking over 55,233 items):
# train the full model per seed, the denoiser / position ablations, export the seed-0 bundle, score
# every model and baseline, time the on-device request. One CPU thread, one job at a time.
#   ./scripts/train_fatsmb.sh [stage...]   stages: fatsmb prior ablations positions export score latency
# "prior" fits the repeat / co-occurrence prior's gains on top of each trained seed (a documented
# deviation from the paper, docs/families/fatsmb.md); export ships it, score reports FatsMB + prior
# as the headline and plain FatsMB as an ablation.
#   SEEDS="0 1 2" ./scripts/train_fatsmb.sh fatsmb score       (default SEEDS="0")
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
OUT=${OUT:-artifacts/fatsmb}
BUNDLE=${BUNDLE:-artifacts/bundles/fatsmb}
SEEDS=${SEEDS:-0}
STAGES=${*:-fatsmb prior ablations export score latency}
train() { local out=$1; shift; [ -f "$out/config.json" ] || nice -n 5 $PY -m umask.train.models.fatsmb.trainer --out "$out" "$@"; }
for stage in $STAGES; do
  case $stage in
    fatsmb)    for s in $SEEDS; do train "$OUT/seed$s" --seed $s; done ;;
    prior)     for s in $SEEDS; do nice -n 5 $PY -m umask.train.models.fatsmb.prior "$OUT/seed$s" --seed $s; done ;;
    ablations) AB="--guidance-grid 1,2 --steps-grid 10"     # smaller sampling grid than the headline run (CPU)
               train "$OUT/den_adaln" --seed 0 --denoiser adaln --init-from "$OUT/seed0" $AB
               train "$OUT/den_mlp" --seed 0 --denoiser mlp --init-from "$OUT/seed0" $AB ;;
    positions) # own folder (scored on its own); no stage 3 and a one-point sampling grid, to fit the CPU budget
               train "${OUT}_pos/pos_rope" --seed 0 --position rope --stage3-steps 0 --guidance-grid 1 --steps-grid 5
               train "${OUT}_pos/pos_ape" --seed 0 --position ape --stage3-steps 0 --guidance-grid 1 --steps-grid 5
               nice -n 5 $PY -m umask.bench.accuracy.fatsmb --protocol C --runs "${OUT}_pos" --baselines '' \
                 --out benchmarks/results/v2_fatsmb_positions.json ;;
    export)    nice -n 5 $PY -m umask.export.families.fatsmb.exporter "$OUT/seed0" "$BUNDLE" ;;
    score)     nice -n 5 $PY -m umask.bench.accuracy.fatsmb --protocol C --runs "$OUT" --seeds "${SEEDS// /,}" \
                 --bundle "$BUNDLE" --out benchmarks/results/v2_fatsmb.json ;;
    latency)   nice -n 5 $PY -m umask.bench.accuracy.fatsmb --protocol C --ckpt "$OUT/seed0" --bundle "$BUNDLE" \
                 --latency 200 --out benchmarks/results/v2_fatsmb_latency.json ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
