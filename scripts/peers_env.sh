#!/usr/bin/env bash
# Isolated environment for the peer runtimes of the latency harness (issue 15): OpenVINO (CPU plugin).
# Kept out of the project's .venv so its pins never conflict with onnxruntime / torch there.
#   bash scripts/peers_env.sh            # creates artifacts/peers/venv (idempotent)
#   PEERS_VENV=/some/dir bash scripts/peers_env.sh
# The latency harness finds it through $UMASK_PEERS_PYTHON or artifacts/peers/venv/bin/python
# (python -m umask.bench.latency.peers --bundle ...).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${PEERS_VENV:-$ROOT/artifacts/peers/venv}"
OPENVINO_VERSION="${OPENVINO_VERSION:-2026.4.1}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "openvino==$OPENVINO_VERSION" "numpy<3"
"$VENV/bin/python" -c "import openvino as ov, numpy; print('openvino', ov.__version__, 'numpy', numpy.__version__)"
touch "$VENV/.peers-stamp"
