#!/usr/bin/env bash
# Issue 15 on the shipped U-MASK model: every edge-speed figure of docs/edge_speed.md, in one sequential run on
# ONE thread (run it on a quiet machine: each step waits for the 1-min load average to drop below MAX_LOAD).
#   scripts/edge_speed.sh [export|sweep|int8|latency|peers|llm|auto|all]   (default all: every step but sweep; export
#   only when the bundle is missing)
# Writes benchmarks/results/{v2_request_sweep,int8_report,latency_cpu,peers_cpu,llm_profile_cpu,precision_auto_cpu}.*
# The bundle is the shipped checkpoint's export with its device-scorer accuracy gate and the U-SCOPE GGUF
# (python -m umask.export.uscope_pipeline --quick writes artifacts/uscope/gguf; needs UMASK_WITH_LLM=1 setup).
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=${CKPT:-checkpoints/umask_small}
BUNDLE=${BUNDLE:-artifacts/bundles/umask_small}
KEY=${KEY:-artifacts/device_eval/keys/dev.key}
GATE=${GATE:-benchmarks/results/v2_user_umask_device.json}
LLM_QUANT=${LLM_QUANT:-q8_0}
MAX_LOAD=${MAX_LOAD:-1.5}
PY=.venv/bin/python
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
what=${1:-all}
want() { [[ "$what" == "$1" || ( "$what" == all && "$1" != sweep && "$1" != export ) ]]; }
quiet() {
    "$PY" -c "from umask.bench.latency.machine import wait_for_quiet; print('load', wait_for_quiet($MAX_LOAD, 1800))"
}
if want export || [[ ! -f "$BUNDLE/manifest.json" ]]; then
    if [[ ! -f "$KEY" ]]; then
        "$PY" -m umask.export.signing keygen --out "$(dirname "$KEY")" --name "$(basename "$KEY" .key)"
    fi
    .venv/bin/umask export --ckpt "$CKPT" --out "$BUNDLE" --sign-key "$KEY" --no-tensorrt --accuracy-gate "$GATE" \
        --llm-quant "$LLM_QUANT"
fi
PUB="${KEY%.key}.pub"
if want sweep; then      # accuracy only (not timing-sensitive): steps x draws vs the 50-step result, PROTOCOL v2 B
    "$PY" -m umask.bench.accuracy.request_sweep --bundle "$BUNDLE" --trusted-keys "$PUB" --users 30 --seed 0 \
        --b1-every 8 --configs ddim:50:2,ddim:10:2,ddim:1:2,ddim:1:1 --out benchmarks/results/v2_request_sweep.json
fi
export UMASK_TRUSTED_KEYS="$PUB"
if want int8; then
    quiet
    "$PY" -m umask.bench.latency.int8_report --ckpt "$CKPT" --out benchmarks/results/int8_report.json
fi
if want latency; then
    quiet
    "$PY" -m umask.bench.latency.harness --bundle "$BUNDLE" --ckpt "$CKPT" --threads 1 --reference ddim:50:2 \
        --engines torch,onnxruntime,llama.cpp --out benchmarks/results/latency_cpu.json \
        --v2-out benchmarks/results/v2_umask_latency.json
fi
if want peers; then
    quiet
    "$PY" -m umask.bench.latency.peers --bundle "$BUNDLE" --ckpt "$CKPT" --out benchmarks/results/peers_cpu.json
fi
if want llm; then
    quiet
    "$PY" -m umask.bench.latency.llm_profile --gguf-dir artifacts/uscope/gguf --quants f16,q8_0,q4_k_m --threads 1,2 \
        --modes plain,prefix,template --reps 2 \
        --out benchmarks/results/llm_profile_cpu.json
fi
if want auto; then
    quiet
    "$PY" - "$BUNDLE" <<'EOF'
import json, sys
from pathlib import Path
from umask.runtime.core.signing import verify_bundle
from umask.runtime.engines.precision_choice import choose_precision
b = Path(sys.argv[1])
c = choose_precision(b, verify_bundle(b, trusted_keys=None), threads=1, record=False, rounds=15)
out = Path("benchmarks/results/precision_auto_cpu.json")
out.write_text(json.dumps({k: c[k] for k in ("precision", "reason", "measured_ms", "facts", "date", "rule")}, indent=1) + "\n")
print(out.read_text())
EOF
fi
