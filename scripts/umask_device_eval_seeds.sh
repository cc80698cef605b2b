#!/usr/bin/env bash
# The exported U-MASK artifacts through the runtime Session next to torch, 3 simulator seeds (one process per
# seed, the REAL sample with seed 0), merged into OUT with the one-event resolution of the discrete metrics.
# Exports CKPT first when BUNDLE has no manifest (signed with KEY). Logs under artifacts/device_eval/NAME/.
#   scripts/umask_device_eval_seeds.sh CKPT BUNDLE OUT NAME [KEY]
#   e.g. scripts/umask_device_eval_seeds.sh checkpoints/umask_small_v4 artifacts/bundles/umask_small_v4 \
#        benchmarks/results/v2_user_umask_device_v4.json umask_small_v4
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=$1 BUNDLE=$2 OUT=$3 NAME=$4 KEY=${5:-artifacts/device_eval/keys/dev.key}
LOG=artifacts/device_eval/$NAME
mkdir -p "$LOG"
[[ -f "$KEY" ]] || .venv/bin/python -m umask.export.signing keygen --out "$(dirname "$KEY")" --name "$(basename "$KEY" .key)"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
[[ -f "$BUNDLE/manifest.json" ]] || .venv/bin/umask export --ckpt "$CKPT" --out "$BUNDLE" --sign-key "$KEY" --no-tensorrt \
    > "$LOG/export.log" 2>&1
# --population-users 50: the same 50 users per seed as scripts/eval_user_umask_small.sh (not the first 50 of the
# checkpoint's own training-population size)
COMMON=(--bundle "$BUNDLE" --ckpt "$CKPT" --users 50 --population-users 50 --b1-every 4 --trusted-keys "${KEY%.key}.pub" --model-name "$NAME")
for s in 0 1 2; do
    real=(); [[ $s == 0 ]] || real=(--no-real)
    nice -n 5 .venv/bin/python -m umask.bench.accuracy.user_device "${COMMON[@]}" --seeds $s "${real[@]}" \
        --out "$LOG/s$s.json" > "$LOG/s$s.log" 2>&1 &
done
wait
.venv/bin/python -m umask.bench.accuracy.user_device --merge-seeds "$NAME" "$LOG/s0.json" "$LOG/s1.json" "$LOG/s2.json" "$OUT"
.venv/bin/python -m umask.bench.accuracy.user_device --resolution "$OUT" 50 0,1,2 B1,B2,B3,B4 4 2 50
