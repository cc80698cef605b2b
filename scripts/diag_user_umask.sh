#!/usr/bin/env bash
# Regenerates benchmarks/results/user_umask_diagnostics.{json,md}: does the DiT's x0-prediction use the
# evidence, per diffusion timestep? (first 32 SYNTHETIC users' B2 and B4 test windows)
set -euo pipefail
cd "$(dirname "$0")/.."
OMP_NUM_THREADS=1 .venv/bin/python -m umask.bench.accuracy.user_umask \
 --ckpt artifacts/train/umask_small_v2/ckpt/latest --name umask \
 --ckpt artifacts/train/dit_uncond_v2/ckpt/latest --name dit_uncond \
 --ckpt artifacts/train/umask_small/ckpt/latest --name umask_v1 \
 --seed 0 --diagnostics 32 --out benchmarks/results/user_umask_diagnostics.json
