#!/usr/bin/env bash
# U-MASK small v4 (docs/families/umask.md "v4: more users"): the shipped v3 recipe and architecture, warm-started
# from the v3 run (artifacts/train/umask_small_v3, made by scripts/train_user_umask_small.sh) and trained on ten
# times the users: the 50 SYNTHETIC users of simulator seed 0 (v3's, so seed 0 stays "the training users" in the
# evaluation) plus 450 users of simulator seed 3 (a population no evaluation uses; 494 users load, a few have no
# usable days). Training days 1-5 only. Batch 16, lr 2e-4 (100 warm-up steps), cosine over 1600 steps (the run started with a 3000-step schedule and
# was resumed at step 800 with 1600, to end inside the session); one torch thread, niced, background; resumable.
#   scripts/train_user_umask_v4.sh [MAX_MINUTES [STEPS [TRAINER ARGS...]]]   log: artifacts/train/logs/$NAME.log
# (extra trainer arguments come last, so they override the ones below: scripts/train_user_umask_v5.sh uses that)
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${NAME:-umask_small_v4}
MAX_MINUTES=${1:-80}
STEPS=${2:-1600}
INIT=${INIT:-artifacts/train/umask_small_v3/ckpt/step_000524}
DATA=artifacts/data/users_s0x50_s3x450.npz
mkdir -p artifacts/train/logs
[[ -f "$DATA" ]] || OMP_NUM_THREADS=1 .venv/bin/python scripts/make_user_population.py "$DATA" 0:50 3:450
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nohup nice -n 5 .venv/bin/python -m umask.train.models.umask.trainer \
    --config small --steps "$STEPS" --batch-size 16 --warmup 100 --lr 0.0002 --eval-every 200 --eval-batches 12 \
    --ckpt-every 100 --data "$DATA" --set t_power=2.0 --set 'data_scale="none"' --set 'prior="blend"' \
    --set dit_calendar=true --set dit_epos=true --set dit_hb=true --init-from "$INIT" \
    --num-threads 1 --no-progress --max-minutes "$MAX_MINUTES" --out "artifacts/train/$NAME" "${@:3}" \
    >> "artifacts/train/logs/$NAME.log" 2>&1 &
echo "started $NAME (pid $!), log artifacts/train/logs/$NAME.log"
