#!/usr/bin/env bash
# One-time (idempotent) set-up: a project virtual environment with everything installed.
# Re-runs are no-ops unless pyproject.toml or constraints.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.umask-setup-stamp
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV with $($PY --version)"
    "$PY" -m venv "$VENV"
fi
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    exit 0
fi
echo "[setup] installing umask-edge[all] (torch pinned by constraints.txt; first run takes a few minutes)"
# constraints.txt pins torch==2.13.0: a bare 'torch' would resolve to multi-GB CUDA builds.
"$VENV/bin/pip" install --quiet --progress-bar off -c constraints.txt -e ".[all]" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
"$VENV/bin/python" -c "import umask.runtime, umask.train" # fails loudly if the install did not work
echo "$want" > "$STAMP"
echo "[setup] done"
