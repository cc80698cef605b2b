#!/usr/bin/env bash
# U-MASK on the Milan grid with the grid prior (issue 10, PROTOCOL A1 / A2; train/models/umask/grid.py,
# grid_prior.py): the DiT refines a deterministic prior (weekday/weekend slot-of-day profile of the
# training period + recent level for A1, linear interpolation for A2) as a zero-init residual, with
# calendar features, the day-aligned frame and every available observation as evidence (mask_mode none).
# One torch thread, nice, in the background, one run at a time, resumable (run it again to continue).
#   scripts/train_grid_umask.sh [SEEDS [STEPS [MAX_MINUTES_PER_SEED]]]   default "0 1 2" 800 11
#       trains artifacts/train/grid_umask_s<SEED> one after another; log artifacts/train/logs/grid_umask.log
#   scripts/train_grid_umask.sh eval [SEEDS]
#       A1 + A2 test rows of every seed's best checkpoint next to the baselines on the same windows
#       -> benchmarks/results/v2_grid_umask.json (+ .md), learning curves copied to
#       benchmarks/results/learning_curves/grid_umask_s<SEED>.jsonl
#   scripts/train_grid_umask.sh bundle [SEEDS]
#       exports each seed's best checkpoint as a umask_grid bundle (artifacts/bundles/umask_grid_s<SEED>: fp32,
#       fp16, int8 QDQ and dynamic; per-cell gate chosen on validation) and scores every artifact through the
#       torch-free session -> benchmarks/results/v2_grid_umask_bundle.json (about 3 + 2 minutes per seed)
#   A2_PRIOR=lowrank scripts/train_grid_umask.sh [...]
#       the same with the A2 prior = the lowrank_interpolation row (--a2-prior lowrank): runs
#       artifacts/train/grid_umask_lowrank_s<SEED>, rows benchmarks/results/v2_grid_umask_lowrank.json
#   PROFILE_DECAY=0.875 scripts/train_grid_umask.sh [...|eval]
#       the prior's profiles weighted towards the latest training days (0.875 = the prior-alone validation choice,
#       python -m umask.bench.accuracy.grid_prior_sweep): runs grid_umask_recent_s<SEED>, rows v2_grid_umask_recent.json.
#       The prior is better, the trained model worse (docs/families/umask_grid.md); the default stays 1 (plain mean)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
A2=${A2_PRIOR:-interpolation}
DECAY=${PROFILE_DECAY:-1}
TAG=""; [[ "$A2" == lowrank ]] && TAG="_lowrank"
NAME=umask_grid${TAG:+_lowrank}
if [[ "$DECAY" != 1 && "$DECAY" != 1.0 ]]; then TAG="${TAG}_recent"; NAME="${NAME}_recent"; fi
if [[ "${1:-}" == "eval" ]]; then
    SEEDS=${2:-"0 1 2"}
    RUNS=()
    for s in $SEEDS; do RUNS+=("artifacts/train/grid_umask${TAG}_s$s"); done
    exec nice -n 5 .venv/bin/python -m umask.bench.accuracy.grid_umask_v2 --runs "${RUNS[@]}" --samples 16 \
        ${TAG:+--name $NAME} --out "benchmarks/results/v2_grid_umask${TAG}.json"
fi
if [[ "${1:-}" == "bundle" ]]; then
    SEEDS=${2:-"0 1 2"}
    BUNDLES=()
    for s in $SEEDS; do
        nice -n 5 .venv/bin/python -m umask.export.families.umask.grid_exporter --ckpt "artifacts/train/grid_umask${TAG}_s$s" \
            --out "artifacts/bundles/umask_grid${TAG}_s$s" --precisions fp32,fp16,int8-qdq,int8-dynamic
        BUNDLES+=("artifacts/bundles/umask_grid${TAG}_s$s")
    done
    exec nice -n 5 .venv/bin/python -m umask.bench.accuracy.grid_umask_bundle --bundles "${BUNDLES[@]}" \
        --out "benchmarks/results/v2_grid_umask${TAG}_bundle.json"
fi
SEEDS=${1:-"0 1 2"}
STEPS=${2:-800}
MAXMIN=${3:-11}
mkdir -p artifacts/train/logs
nohup nice -n 5 bash -c '
for s in '"$SEEDS"'; do
    .venv/bin/python -m umask.train.models.umask.grid --prior grid --a2-prior '"$A2"' --profile-decay '"$DECAY"' \
        --mask-mode none --seed "$s" \
        --steps '"$STEPS"' --warmup 100 --eval-every 100 --ckpt-every 100 --num-threads 1 --no-progress \
        --max-minutes '"$MAXMIN"' --out "artifacts/train/grid_umask'"$TAG"'_s$s"
done' >> "artifacts/train/logs/grid_umask${TAG}.log" 2>&1 &
echo "started grid_umask${TAG} seeds [$SEEDS] (pid $!), log artifacts/train/logs/grid_umask${TAG}.log"
