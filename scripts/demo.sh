#!/usr/bin/env bash
# The main job of the README: set-up (idempotent), then the end-to-end demo on the bundled data.
# Pass --quick for the few-minute path.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/umask demo "$@"
