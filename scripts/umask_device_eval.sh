#!/usr/bin/env bash
# The exported U-MASK artifacts scored through the runtime Session next to torch (issue 10, deliver 5):
# export CKPT (signed with KEY), then PROTOCOL B (SYNTHETIC, 50 users of simulator seed SEEDS, B1 every 4th target
# hour) and B1 on the REAL 6-user sample, every precision, in three processes on disjoint protocols (a shared CPU),
# merged into OUT. Logs under artifacts/device_eval/.
#   scripts/umask_device_eval.sh CKPT BUNDLE OUT [SEEDS] [KEY]
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=$1 BUNDLE=$2 OUT=$3 SEEDS=${4:-0} KEY=${5:-artifacts/device_eval/keys/dev.key}
LOG=artifacts/device_eval
mkdir -p "$LOG"
if [[ ! -f "$KEY" ]]; then
    .venv/bin/python -m umask.export.signing keygen --out "$(dirname "$KEY")" --name "$(basename "$KEY" .key)"
fi
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
if [[ ! -f "$BUNDLE/manifest.json" ]]; then
    .venv/bin/umask export --ckpt "$CKPT" --out "$BUNDLE" --sign-key "$KEY" --no-tensorrt > "$LOG/export.log" 2>&1
fi
PUB="${KEY%.key}.pub"
COMMON=(--bundle "$BUNDLE" --ckpt "$CKPT" --users 50 --seeds "$SEEDS" --b1-every 4 --trusted-keys "$PUB")
run() { .venv/bin/python -m umask.bench.accuracy.user_device "${COMMON[@]}" "$@"; }
run --tasks B1 --no-real --out "$LOG/part_b1.json" > "$LOG/part_b1.log" 2>&1 &
run --tasks B2,B3,B4 --no-real --out "$LOG/part_b234.json" > "$LOG/part_b234.log" 2>&1 &
run --tasks none --out "$LOG/part_real.json" > "$LOG/part_real.log" 2>&1 &
wait
.venv/bin/python -m umask.bench.accuracy.user_device --merge "$LOG/part_b1.json" "$LOG/part_b234.json" \
    "$LOG/part_real.json" "$OUT"
# discrete metrics move in one-event steps: count the events of these windows and add them to the gate
.venv/bin/python -m umask.bench.accuracy.user_device --resolution "$OUT" 50 "$SEEDS" B1,B2,B3,B4 4 2 50
