#!/usr/bin/env bash
# U-MASK per-user v8 (issue 10, an experiment): v7 fine-tuned on users with LONGER histories, so that the DiT learns
# its residual over priors of up to 11 days (v4-v7 trained on 7-day users: training windows inside days 1-5, priors
# of at most five days; on the test day the prior has six and v7's residual stopped helping, docs/families/umask.md
# "v6 and v7"). Data: 500 SYNTHETIC 14-day users of simulator seeds 3 (450) and 4 (50), none of the evaluation
# seeds 0-2 (`scripts/make_user_population.py artifacts/data/users_s3x450_s4x50_14d.npz 3:450 4:50 --days 14`).
#   scripts/train_user_umask_v8.sh [MAX_MINUTES [STEPS [TRAINER ARGS...]]]   default 40 500; background, resumable,
#   one thread (extra trainer arguments come last and override: scripts/train_user_umask_v10.sh uses that)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA14=artifacts/data/users_s3x450_s4x50_14d.npz
[[ -f "$DATA14" ]] || OMP_NUM_THREADS=1 .venv/bin/python scripts/make_user_population.py "$DATA14" 3:450 4:50 --days 14
export NAME=${NAME:-umask_small_v8} INIT=${INIT:-artifacts/train/umask_small_v7/ckpt/step_000500}
exec scripts/train_user_umask_v4.sh "${1:-40}" "${2:-500}" --warmup 20 --lr 0.0001 --eval-every 100 --ckpt-every 50 \
    --set 'prior="horizon_blend"' --data "$DATA14" "${@:3}"
