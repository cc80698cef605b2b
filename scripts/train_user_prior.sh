#!/usr/bin/env bash
# U-MASK with the deterministic "blend" prior (UMaskConfig.prior = "blend"; issue "U-MASK that wins"):
# the DiT gets 0.5 x last available value + 0.5 x the user's slot-of-day mean of the eligible history
# as extra input channels and learns the residual on top of it (train/models/umask/model.py "Prior").
# v2 recipe (t_power 2, data_scale none, scripts/train_user_v2.sh), small config, 50 SYNTHETIC users
# of simulator seed 0 (the v2 baseline population), one torch thread, in the background with resume
# (run it again to continue), cut at --max-minutes of training time (resumed time included).
#   scripts/train_user_prior.sh [MAX_MINUTES [STEPS]]   log: artifacts/train/logs/umask_prior_blend.log
#   scripts/train_user_prior.sh eval [CKPT] [TASKS] [USERS]
#       protocol-B test-day rows of the checkpoint (default ckpt/latest; B1,B2,B3,B4; 50 users of seed 0) next to
#       every v2 baseline on the same windows -> benchmarks/results/v2_user_umask_prior.json, with the paired window
#       bootstrap against the best baseline in meta. The harness builds the prior itself (user_umask.UMaskPredictor
#       reads each window's history from the attached population); the point estimators are those of
#       benchmarks/accuracy/user_umask_v2.py (x0 at t = N-1 for RMSE / events / rankings, median of samples for MAE).
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=umask_prior_blend
if [[ "${1:-}" == "eval" ]]; then
    CKPT=${2:-artifacts/train/$NAME/ckpt/latest}
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} exec .venv/bin/python -m umask.bench.accuracy.user_umask_v2 \
        --ckpt "$CKPT" --name umask_prior_blend --seeds 0 --tasks "${3:-B1,B2,B3,B4}" --users "${4:-50}" \
        --note "U-MASK small, prior blend only (no calendar / E_pos / h_b inputs), 50 SYNTHETIC users of seed 0" \
        --command-text "$0 $*" --out benchmarks/results/v2_user_umask_prior.json
fi
MAX_MINUTES=${1:-35}
STEPS=${2:-700}      # ~20 steps a minute on a shared 2-core CPU: the cosine schedule ends inside the time box
mkdir -p artifacts/train/logs
OMP_NUM_THREADS=1 nohup .venv/bin/python -m umask.train.models.umask.trainer \
    --config small --steps "$STEPS" --warmup 50 --eval-every 50 --eval-batches 6 --ckpt-every 50 \
    --n-users 50 --sim-seed 0 --set t_power=2.0 --set 'data_scale="none"' --set 'prior="blend"' \
    --num-threads 1 --no-progress --max-minutes "$MAX_MINUTES" --out "artifacts/train/$NAME" \
    > "artifacts/train/logs/$NAME.log" 2>&1 &
echo "started $NAME (pid $!), log artifacts/train/logs/$NAME.log"
