#!/usr/bin/env bash
# U-MASK small v5 (docs/families/umask.md "v5: a learned budget"): v4 fine-tuned with eq. 13's budget LEARNED
# instead of pinned. v1-v4 kept every base ratio rho_tau at its initial value twice over: the pin term
# (r_b - rho_init)^2 and Adam's step size (about lr per step, so at lr 2e-4 rho's logit cannot move far).
# v5 drops the term (budget_mode "free": eq. 13 as written) and trains rho's logit at 100x the LR
# (budget_lr_scale), on the v4 population (50 SYNTHETIC users of seed 0 + 450 of seed 3, training days 1-5).
#   scripts/train_user_umask_v5.sh [MAX_MINUTES [STEPS]]     log: artifacts/train/logs/umask_small_v5.log
# BUDGET_MODE=price W_BUDGET=0.05 NAME=umask_small_v5_price scripts/train_user_umask_v5.sh: a price per revealed
# fraction instead (model.py "L_budget").
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${NAME:-umask_small_v5}
MAX_MINUTES=${1:-60}
STEPS=${2:-400}
INIT=${INIT:-artifacts/train/umask_small_v4/ckpt/step_001600}
BUDGET_MODE=${BUDGET_MODE:-free}
W_BUDGET=${W_BUDGET:-0.1}
DATA=artifacts/data/users_s0x50_s3x450.npz
mkdir -p artifacts/train/logs
[[ -f "$DATA" ]] || OMP_NUM_THREADS=1 .venv/bin/python scripts/make_user_population.py "$DATA" 0:50 3:450
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nohup nice -n 5 .venv/bin/python -m umask.train.models.umask.trainer \
    --config small --steps "$STEPS" --batch-size 16 --warmup 20 --lr 0.0001 --eval-every 100 --eval-batches 12 \
    --ckpt-every 50 --data "$DATA" --set t_power=2.0 --set 'data_scale="none"' --set 'prior="blend"' \
    --set dit_calendar=true --set dit_epos=true --set dit_hb=true \
    --set "budget_mode=\"$BUDGET_MODE\"" --set budget_lr_scale=100.0 --set "w_budget=$W_BUDGET" --init-from "$INIT" \
    --num-threads 1 --no-progress --max-minutes "$MAX_MINUTES" --out "artifacts/train/$NAME" \
    >> "artifacts/train/logs/$NAME.log" 2>&1 &
echo "started $NAME (pid $!), log artifacts/train/logs/$NAME.log"
