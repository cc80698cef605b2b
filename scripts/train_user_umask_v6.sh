#!/usr/bin/env bash
# U-MASK per-user v6 (issue 10): v4 fine-tuned with the per-task prior ("task_blend": last value share 0.3 for
# short-term and imputation, 0.1 for next-day and cold start; runtime/families/umask/prior.TASK_PRIOR_WEIGHTS,
# chosen on the validation day by `python -m umask.bench.accuracy.user_blend_weights`). Same network and data as
# v4 (the prior's values change, not its shape), budget pinned as v4, LR 1e-4, warm start from v4's last step.
#   scripts/train_user_umask_v6.sh [MAX_MINUTES [STEPS]]     default 60 500; background, resumable, one thread
# then: NAME=umask_small_v6 OUT=benchmarks/results/v2_user_umask_small_v6.json ABL_SEEDS="0 1 2" \
#       scripts/eval_user_umask_small.sh checkpoints/umask_small_v6
set -euo pipefail
cd "$(dirname "$0")/.."
export NAME=${NAME:-umask_small_v6} INIT=${INIT:-artifacts/train/umask_small_v4/ckpt/step_001600}
exec scripts/train_user_umask_v4.sh "${1:-60}" "${2:-500}" --warmup 20 --lr 0.0001 --eval-every 100 --ckpt-every 50 \
    --set 'prior="task_blend"'
