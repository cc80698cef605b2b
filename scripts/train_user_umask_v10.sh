#!/usr/bin/env bash
# U-MASK per-user v10 (issue 10, an experiment): v9 (the kernel prior "smooth_blend") fine-tuned on users with LONGER
# histories, v8's recipe over v9's prior: 500 SYNTHETIC 14-day users of simulator seeds 3 (450) and 4 (50), none of
# the evaluation seeds 0-2, so the DiT learns its residual over priors of 0-11 days (v9 trained on 7-day users: priors
# of at most five days; on the test day the prior has six and v9's residual is 0.5 % behind its own prior on B1/B2).
#   scripts/train_user_umask_v10.sh [MAX_MINUTES [STEPS]]     default 40 500; background, resumable, one thread
# then: NAME=umask_small_v10 OUT=benchmarks/results/v2_user_umask_small_v10.json ABL_SEEDS="0" \
#       scripts/eval_user_umask_small.sh checkpoints/umask_small_v10
set -euo pipefail
cd "$(dirname "$0")/.."
DATA14=artifacts/data/users_s3x450_s4x50_14d.npz
[[ -f "$DATA14" ]] || OMP_NUM_THREADS=1 .venv/bin/python scripts/make_user_population.py "$DATA14" 3:450 4:50 --days 14
export NAME=${NAME:-umask_small_v10} INIT=${INIT:-artifacts/train/umask_small_v9/ckpt/step_000800}
exec scripts/train_user_umask_v4.sh "${1:-40}" "${2:-500}" --warmup 20 --lr 0.0001 --eval-every 100 --ckpt-every 50 \
    --set 'prior="smooth_blend"' --data "$DATA14"
