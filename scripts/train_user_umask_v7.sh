#!/usr/bin/env bash
# U-MASK per-user v7 (issue 10): v4 fine-tuned with the "horizon_blend" prior: the last value share stays 0.5 for
# short-term and imputation windows (as v4) and is 0.1 for next-day and cold start (as v6's task_blend);
# runtime/families/umask/prior.PRIOR_SHARES, chosen from v4 vs v6 on the validation day
# (`python scripts/umask_prior_val.py checkpoints/umask_small_v4 checkpoints/umask_small_v6`). Same network, data,
# budget and schedule as v6: warm start from v4's last step, LR 1e-4, 500 steps.
#   scripts/train_user_umask_v7.sh [MAX_MINUTES [STEPS]]     default 60 500; background, resumable, one thread
# then: NAME=umask_small_v7 OUT=benchmarks/results/v2_user_umask_small_v7.json ABL_SEEDS="0 1 2" \
#       scripts/eval_user_umask_small.sh checkpoints/umask_small_v7
set -euo pipefail
cd "$(dirname "$0")/.."
export NAME=${NAME:-umask_small_v7} INIT=${INIT:-artifacts/train/umask_small_v4/ckpt/step_001600}
exec scripts/train_user_umask_v4.sh "${1:-60}" "${2:-500}" --warmup 20 --lr 0.0001 --eval-every 100 --ckpt-every 50 \
    --set 'prior="horizon_blend"'
