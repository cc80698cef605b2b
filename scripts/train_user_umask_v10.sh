#!/usr/bin/env bash
# U-MASK per-user v10 (issue 10, an experiment): v8's recipe over v9's prior. v9 (the kernel prior "smooth_blend")
# fine-tuned on 500 SYNTHETIC 14-day users of simulator seeds 3 (450) and 4 (50), none of the evaluation seeds 0-2,
# so the DiT learns its residual over priors of 0-11 days (v9 trained on 7-day users: priors of at most five days;
# on the test day the prior has six, and v9's residual is 0.5 % behind its own prior on B1 / B2).
#   scripts/train_user_umask_v10.sh [MAX_MINUTES [STEPS]]     default 40 500; background, resumable, one thread
# then: NAME=umask_small_v10 OUT=... ABL_SEEDS="0" scripts/eval_user_umask_small.sh <shipped folder>
set -euo pipefail
cd "$(dirname "$0")/.."
export NAME=${NAME:-umask_small_v10} INIT=${INIT:-artifacts/train/umask_small_v9/ckpt/step_000800}
exec scripts/train_user_umask_v8.sh "${1:-40}" "${2:-500}" --set 'prior="smooth_blend"'
