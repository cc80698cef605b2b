#!/usr/bin/env bash
# U-MASK per-user v11 (issue 10): v9 fine-tuned with the "smooth_interp" prior: v9's "smooth_blend" everywhere but on
# imputation windows, where the last value is replaced by linear interpolation between the available slots around
# each gap and its share is 0.5 (runtime/families/umask/prior.INTERP_PRIORS; the share chosen on the validation day:
# `python -m umask.bench.accuracy.user_impute_mix` -> v2_user_impute_mix.json). Same network and data as v4-v9 (494
# SYNTHETIC users of seeds 0 and 3, days 1-5): warm start from v9's last step, LR 1e-4, 500 steps.
#   scripts/train_user_umask_v11.sh [MAX_MINUTES [STEPS]]     default 40 500; background, resumable, one thread
# then: NAME=umask_small_v11 OUT=benchmarks/results/v2_user_umask_small_v11.json ABL_SEEDS="0 1 2" \
#       scripts/eval_user_umask_small.sh artifacts/train/umask_small_v11
set -euo pipefail
cd "$(dirname "$0")/.."
export NAME=${NAME:-umask_small_v11} INIT=${INIT:-artifacts/train/umask_small_v9/ckpt/step_000800}
exec scripts/train_user_umask_v4.sh "${1:-40}" "${2:-500}" --warmup 20 --lr 0.0001 --eval-every 100 --ckpt-every 50 \
    --set 'prior="smooth_interp"'
