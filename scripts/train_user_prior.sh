#!/usr/bin/env bash
# U-MASK with the deterministic "blend" prior (UMaskConfig.prior = "blend"; issue "U-MASK that wins"):
# the DiT gets 0.5 x last available value + 0.5 x the user's slot-of-day mean of the eligible history
# as extra input channels and learns the residual on top of it (train/models/umask/model.py "Prior").
# v2 recipe (t_power 2, data_scale none, scripts/train_user_v2.sh), small config, 50 SYNTHETIC users
# of simulator seed 0 (the v2 baseline population), one torch thread, in the background with resume
# (run it again to continue), cut at --max-minutes of training time (resumed time included).
#   scripts/train_user_prior.sh [MAX_MINUTES]        log: artifacts/train/logs/umask_prior_blend.log
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=umask_prior_blend
MAX_MINUTES=${1:-35}
mkdir -p artifacts/train/logs
OMP_NUM_THREADS=1 nohup .venv/bin/python -m umask.train.models.umask.trainer \
    --config small --steps 1000 --warmup 50 --eval-every 50 --eval-batches 6 --ckpt-every 50 \
    --n-users 50 --sim-seed 0 --set t_power=2.0 --set 'data_scale="none"' --set 'prior="blend"' \
    --num-threads 1 --no-progress --max-minutes "$MAX_MINUTES" --out "artifacts/train/$NAME" \
    > "artifacts/train/logs/$NAME.log" 2>&1 &
echo "started $NAME (pid $!), log artifacts/train/logs/$NAME.log"
