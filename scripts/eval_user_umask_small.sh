#!/usr/bin/env bash
# Regenerates benchmarks/results/v2_user_umask_small.json: the shipped per-user U-MASK (checkpoints/umask_small)
# on PROTOCOL v2 B1-B4, 50 SYNTHETIC users x simulator seeds 0, 1, 2 (seed 0 = the model's training users; it saw
# their training days 1-5 only; the test day is day 7), next to every v2 baseline on the same windows, plus B1 on
# the REAL 6-user sample, the inference ablations (seed 0, B2 + B4) and the paired window bootstrap vs the best
# baseline. Four niced one-thread processes (seed 0 + real, seed 1, seed 2, ablations), then a merge.
#   scripts/eval_user_umask_small.sh [CKPT]          (~20-30 min on the shared 2-core CPU)
#   NAME=umask_small_v4 OUT=benchmarks/results/v2_user_umask_small_v4.json NOTE="..." \
#       scripts/eval_user_umask_small.sh checkpoints/umask_small_v4
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=${1:-checkpoints/umask_small}
NAME=${NAME:-umask_small}                     # the rows' model name
OUT=${OUT:-benchmarks/results/v2_user_umask_small.json}
TMP=artifacts/eval/$NAME
mkdir -p "$TMP"
# MAE: the validation-calibrated zero rule for U-MASK and every baseline (user_mae_rule.py); it replaced the
# median of 3 DDIM samples, which lost every MAE row to the all-zero forecast.
COMMON=(--ckpt "$CKPT" --name "$NAME" --users 50 --b1-every 2 --x0-draws 1 --mae-rule --median-tasks ''
        --ablation-tasks B2,B4 ${NOTE:+--note "$NOTE"})
run() { OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 5 .venv/bin/python -m umask.bench.accuracy.user_umask_v2 "${COMMON[@]}" "$@"; }
run --seeds 0 --partial "$TMP/seed0.json" > "$TMP/seed0.log" 2>&1 &
run --seeds 1 --no-real --partial "$TMP/seed1.json" > "$TMP/seed1.log" 2>&1 &
run --seeds 2 --no-real --partial "$TMP/seed2.json" > "$TMP/seed2.log" 2>&1 &
ABL_SEEDS=${ABL_SEEDS:-0}                     # e.g. ABL_SEEDS="0 1 2": the inference ablations on every seed
ABL_PARTS=()
for s in $ABL_SEEDS; do
    run --seeds "$s" --tasks '' --ablations --no-real --partial "$TMP/ablations_s$s.json" > "$TMP/ablations_s$s.log" 2>&1 &
    ABL_PARTS+=("$TMP/ablations_s$s.json")
done
wait
.venv/bin/python -m umask.bench.accuracy.user_umask_v2 "${COMMON[@]}" --seeds 0,1,2 --ablations \
    --command-text "NAME=$NAME OUT=$OUT ABL_SEEDS=\"$ABL_SEEDS\" scripts/eval_user_umask_small.sh $CKPT" \
    --merge "$TMP/seed0.json" "$TMP/seed1.json" "$TMP/seed2.json" "${ABL_PARTS[@]}" --out "$OUT"
.venv/bin/python -m umask.bench.accuracy.user_umask_v2 --table "$OUT" --name "$NAME"
