#!/usr/bin/env bash
# The per-user U-MASK runs behind benchmarks/results/user_umask.md ("v2" recipe: training timesteps biased
# to high noise, t_power 2, and no data scaling, data_scale "none"; see train/models/umask/model.py "Timesteps").
# U-MASK and its three ablations, 1000 steps each, small config, 1 torch thread per run, two runs at a time
# (2-core CPU: about 40 min a pair when the machine is otherwise busy). Logs: artifacts/train/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
COMMON=(--config small --steps 1000 --warmup 50 --eval-every 250 --eval-batches 6 --ckpt-every 250
        --n-users 300 --sim-seed 0 --set t_power=2.0 --set 'data_scale="none"' --num-threads 1 --no-progress)
mkdir -p artifacts/train/logs
run() {
    local name=$1; shift
    OMP_NUM_THREADS=1 .venv/bin/python -m umask.train.models.umask.trainer "${COMMON[@]}" "$@" --out "artifacts/train/$name" \
        > "artifacts/train/logs/$name.log" 2>&1
    echo "$name done"
}
( run umask_small_v2; run dit_randommask_v2 --mask-mode random ) &
( run umask_noprofile_v2 --no-profile; run dit_uncond_v2 --no-profile --mask-mode none --no-dit-conditioning ) &
wait
