#!/usr/bin/env bash
# Isolated environment for the ExecuTorch (XNNPACK) peer of the latency harness (issue 15).
# executorch pins its own dependencies (torchao, coremltools, pandas, ...), so it lives in its own venv,
# never in the project's .venv. torch is pinned to the project's version (2.13.0, CPU build): executorch
# 1.5.1 declares no torch requirement, and its AOT libraries are built against that release.
#   bash scripts/peers_env_executorch.sh             # creates artifacts/peers/et (idempotent, stamp)
#   PEERS_ET_VENV=/some/dir bash scripts/peers_env_executorch.sh
# The latency harness finds it through $UMASK_ET_PYTHON or artifacts/peers/et/bin/python.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${PEERS_ET_VENV:-$ROOT/artifacts/peers/et}"
EXECUTORCH_VERSION="${EXECUTORCH_VERSION:-1.5.1}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
# CPU-only torch: a bare `torch` from PyPI is the multi-GB CUDA build. The local wheel cache / the
# PyTorch CPU index carry "+cpu" builds; pip prefers "2.13.0+cpu" over "2.13.0" when both are offered.
TORCH_INDEX="${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.peers-et-stamp"
WANT="executorch==$EXECUTORCH_VERSION torch==$TORCH_VERSION"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  echo "ExecuTorch peers env up to date: $VENV ($WANT)"; exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
  # local "+cpu" wheel first (pip's find-links); the CPU index only when no local wheel resolves
  "${PIP[@]}" "torch==$TORCH_VERSION+cpu" 2>/dev/null || "${PIP[@]}" "torch==$TORCH_VERSION+cpu" --extra-index-url "$TORCH_INDEX"
fi
"${PIP[@]}" "executorch==$EXECUTORCH_VERSION" "torch==$TORCH_VERSION" safetensors "numpy>=2,<3"
"$VENV/bin/python" - <<'PY'
import torch, numpy, safetensors
from executorch import version
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner  # noqa: F401
from executorch.runtime import Runtime  # noqa: F401
print("executorch", version.__version__, "torch", torch.__version__, "numpy", numpy.__version__)
assert "cu" not in torch.__version__.split("+")[-1], "a CUDA torch build was installed"
PY
echo "$WANT" > "$STAMP"
