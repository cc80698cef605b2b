#!/usr/bin/env bash
# The shipped per-user U-MASK (checkpoints/umask_small/, docs/families/umask.md): the small config with the
# deterministic "blend" prior (the DiT learns the residual), the slot calendar and the POI embedding E_pos as
# token terms (eq. 33) and the mask generator's h_b in the DiT condition (eq. 19), v2 diffusion recipe
# (t_power 2, data_scale none). Data: 50 SYNTHETIC users of simulator seed 0, their training days 1-5 only.
# One torch thread, niced, in the background, checkpoints every 50 steps; run it again to resume (the same
# command continues from ckpt/latest). Stops at STEPS or at MAX_MINUTES of training time (resumes included).
#   scripts/train_user_umask_small.sh [MAX_MINUTES [STEPS]]     log: artifacts/train/logs/umask_small_v3.log
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${NAME:-umask_small_v3}
MAX_MINUTES=${1:-45}
STEPS=${2:-650}      # 3-4 s a step on the shared 2-core CPU (5+ agents): the cosine schedule ends in the time box
mkdir -p artifacts/train/logs
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nohup nice -n 5 .venv/bin/python -m umask.train.models.umask.trainer \
    --config small --steps "$STEPS" --warmup 50 --eval-every 100 --eval-batches 12 --ckpt-every 50 \
    --n-users 50 --sim-seed 0 --set t_power=2.0 --set 'data_scale="none"' --set 'prior="blend"' \
    --set dit_calendar=true --set dit_epos=true --set dit_hb=true \
    --num-threads 1 --no-progress --max-minutes "$MAX_MINUTES" --out "artifacts/train/$NAME" \
    >> "artifacts/train/logs/$NAME.log" 2>&1 &
echo "started $NAME (pid $!), log artifacts/train/logs/$NAME.log"
