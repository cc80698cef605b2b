#!/usr/bin/env bash
# U-MASK small v5 (docs/families/umask.md "v5: a learned budget"): v4 fine-tuned with eq. 13's budget LEARNED
# instead of pinned. v1-v4 kept every base ratio rho_tau at its initial value twice over: the pin term
# (r_b - rho_init)^2 and Adam's step size (about lr per step, so at lr 2e-4 rho's logit cannot move far).
# v5 drops the term (budget_mode "free": eq. 13 as written) and trains rho's logit at 100x the LR
# (budget_lr_scale), on the v4 population (50 SYNTHETIC users of seed 0 + 450 of seed 3, training days 1-5):
# the v4 script and recipe, warm-started from v4, 400 steps at lr 1e-4 (20 warm-up steps).
#   scripts/train_user_umask_v5.sh [MAX_MINUTES [STEPS]]     log: artifacts/train/logs/umask_small_v5.log
# BUDGET_MODE=price W_BUDGET=0.05 NAME=umask_small_v5_price scripts/train_user_umask_v5.sh: a price per revealed
# fraction instead (model.py "L_budget").
set -euo pipefail
cd "$(dirname "$0")/.."
export NAME=${NAME:-umask_small_v5} INIT=${INIT:-artifacts/train/umask_small_v4/ckpt/step_001600}
exec scripts/train_user_umask_v4.sh "${1:-60}" "${2:-400}" --warmup 20 --lr 0.0001 --eval-every 100 --ckpt-every 50 \
    --set "budget_mode=\"${BUDGET_MODE:-free}\"" --set budget_lr_scale=100.0 --set "w_budget=${W_BUDGET:-0.1}"
