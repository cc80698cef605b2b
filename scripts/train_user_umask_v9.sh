#!/usr/bin/env bash
# U-MASK per-user v9 (issue 10): v7 fine-tuned with the "smooth_blend" prior: the slot-of-day mean of the prior is a
# kernel estimate (sums and counts smoothed around the clock with a 3-hour Gaussian) and the last value shares are
# 0.2 / 0 / 0.1 / 0.3 (short term / next day / cold start / imputation); both chosen on the validation day
# (`python -m umask.bench.accuracy.user_blend_weights` -> blend_weights_val.json "smooth";
# runtime/families/umask/prior.SMOOTH_MINUTES, SMOOTH_PRIOR_WEIGHTS). Same network and data as v4-v7 (494 SYNTHETIC
# users of seeds 0 and 3, days 1-5): warm start from v7's last step, LR 1e-4, 800 steps.
#   scripts/train_user_umask_v9.sh [MAX_MINUTES [STEPS]]     default 50 800; background, resumable, one thread
# then: NAME=umask_small_v9 OUT=benchmarks/results/v2_user_umask_small_v9.json ABL_SEEDS="0 1 2" \
#       scripts/eval_user_umask_small.sh checkpoints/umask_small_v9
set -euo pipefail
cd "$(dirname "$0")/.."
export NAME=${NAME:-umask_small_v9} INIT=${INIT:-artifacts/train/umask_small_v7/ckpt/step_000500}
exec scripts/train_user_umask_v4.sh "${1:-50}" "${2:-800}" --warmup 20 --lr 0.0001 --eval-every 100 --ckpt-every 50 \
    --set 'prior="smooth_blend"'
