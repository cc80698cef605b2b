#!/usr/bin/env bash
# Regenerates benchmarks/results/user_umask.{json,md}: U-MASK (v2 recipe), its three ablations and the
# session-1 run, next to the simple baselines, on 50 SYNTHETIC users + the REAL 6-user sample.
set -euo pipefail
cd "$(dirname "$0")/.."
OMP_NUM_THREADS=1 .venv/bin/python -m umask.bench.accuracy.user_umask \
 --ckpt artifacts/train/umask_small_v2/ckpt/latest --name umask \
 --ckpt artifacts/train/umask_noprofile_v2/ckpt/latest --name umask_no_uscope \
 --ckpt artifacts/train/dit_randommask_v2/ckpt/latest --name dit_random_mask \
 --ckpt artifacts/train/dit_uncond_v2/ckpt/latest --name dit_uncond \
 --ckpt artifacts/train/umask_small/ckpt/latest --name umask_v1 \
 --note 'umask=U-MASK small, v2 recipe (t_power 2, data_scale none): learned evidence mask + U-SCOPE profile (template -> SBERT -> ProfileMLP) + DiT user conditioning (a)' \
 --note 'umask_no_uscope=ablation (b), v2 recipe: U-MASK without U-SCOPE (--no-profile; learned mask kept)' \
 --note 'dit_random_mask=ablation (c), v2 recipe: uniformly random evidence mask with the base budget rho_tau = (0.5, 0.5, 0.9, 0.25) of avail (--mask-mode random); profile on' \
 --note 'dit_uncond=ablation (d), v2 recipe: plain DiT inpainter, no user conditioning (--no-dit-conditioning, --no-profile), every available coordinate is evidence (--mask-mode none)' \
 --note 'umask_v1=reference: the session-1 U-MASK run (uniform t, data_scale global = x22.5), same steps; shows what the v2 recipe changed' \
 --users 50 --seed 0 --b1-every 6 --b1-offset 2 --steps 10 --samples 2 --sample-seed 0 \
 --out benchmarks/results/user_umask.json
