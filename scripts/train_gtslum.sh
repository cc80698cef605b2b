#!/usr/bin/env bash
# GTS-LUM (issue 14): headline runs (3 simulator seeds) and the ablations of the seed, one after the other,
# one CPU thread each, then the protocol-D scoring, the export and its latency rows.
#   ./scripts/train_gtslum.sh [train|export|eval|ablations|all]     (default all; artifacts under artifacts/gtslum/)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
A=artifacts/gtslum
STAGE=${1:-all}
HEAD_STEPS=${HEAD_STEPS:-250}
ABL_STEPS=${ABL_STEPS:-50}
ABL_PRE=${ABL_PRE:-10}
# target-hour shares smoothed over neighbouring hours (the kernel time-of-day row's width, chosen on validation:
# benchmarks/accuracy/gtslum.py TOD_KERNEL_HOURS); the runs with the raw same-hour shares are kept as rawhist_s*
TH_HOURS=${TH_HOURS:-4}
train() {   # name, extra flags...
  local name=$1; shift
  [ -f "$A/$name/model.safetensors" ] && { echo "have $A/$name"; return; }
  nice -n 5 $PY -m umask.train.models.gtslum.trainer --out "$A/$name" "$@" > "$A/$name.log" 2>&1
}
if [ "$STAGE" = train ] || [ "$STAGE" = all ]; then
  mkdir -p $A
  for s in 0 1 2; do train full_s$s --sim-seed $s --seed $s --steps $HEAD_STEPS --target-hist-hours $TH_HOURS; done
  # the same without the kernel shares and without the score gate (the headline runs of 2026-12-06), and without
  # the score gate only: ablations of what the two additions carry
  for s in 0 1 2; do train rawhist_s$s --sim-seed $s --seed $s --steps $HEAD_STEPS --target-hist-hours 0 --no-score-gate; done
  for s in 0 1 2; do train nogate_s$s --sim-seed $s --seed $s --steps $HEAD_STEPS --target-hist-hours $TH_HOURS --no-score-gate; done
  # ablations of the seed (seed 0, short runs; the full model at the same length first, as their reference)
  train abl_full_short --steps $ABL_STEPS --pretrain-steps $ABL_PRE
  for tg in none end; do train abl_target_$tg --target $tg --steps $ABL_STEPS --pretrain-steps $ABL_PRE; done
  for ts in none positional text component; do train abl_ts_$ts --timestamps $ts --steps $ABL_STEPS --pretrain-steps $ABL_PRE; done
  for md in text graph table; do train abl_mod_$md --modalities $md --steps $ABL_STEPS --pretrain-steps $ABL_PRE; done
fi
ABL=$(for d in $A/abl_*/; do n=$(basename $d); [ -f $d/model.safetensors ] && printf '%s=%s,' "${n#abl_}" "${d%/}"; done)
# the two additions of 2026-12-07, one row each over the 3 seeds: rawhist = neither (the headline runs before),
# nogate = the kernel shares without the score gate
ABL="$ABL$(for v in rawhist nogate; do for s in 0 1 2; do [ -f $A/${v}_s$s/model.safetensors ] && printf '%s=%s,' $v $A/${v}_s$s; done; done)"
if [ "$STAGE" = export ] || [ "$STAGE" = all ]; then
  $PY -m umask.export.families.gtslum.exporter $A/full_s0 $A/bundle
  $PY -m umask.bench.accuracy.gtslum --latency --runs $A/full_s0 --bundle $A/bundle \
      --out benchmarks/results/v2_gtslum_latency.json
fi
if [ "$STAGE" = eval ] || [ "$STAGE" = all ]; then
  $PY -m umask.bench.accuracy.gtslum --protocol D --runs $A/full_s0,$A/full_s1,$A/full_s2 \
      --bundle $A/bundle --out benchmarks/results/v2_gtslum.json
  # the U-MASK family's recommendation on the same windows (the shipped checkpoint), merged into the same file
  $PY -m umask.bench.accuracy.gtslum --only umask --umask checkpoints/umask_small --out benchmarks/results/v2_gtslum.json
  for v in v4 v9; do
    $PY -m umask.bench.accuracy.gtslum --only umask --umask checkpoints/umask_small_$v --umask-name umask_small_$v \
        --out benchmarks/results/v2_gtslum.json
  done
  # the kernel time-of-day row's width, chosen on the validation day (meta.kernel; the row itself is re-scored)
  $PY -m umask.bench.accuracy.gtslum --only kernel --out benchmarks/results/v2_gtslum.json
  mkdir -p benchmarks/results/learning_curves
  for s in 0 1 2; do cp $A/full_s$s/metrics.jsonl benchmarks/results/learning_curves/gtslum_full_s${s}_metrics.jsonl; done
fi
if [ "$STAGE" = ablations ] || [ "$STAGE" = all ]; then
  $PY -m umask.bench.accuracy.gtslum --protocol D --runs $A/full_s0 --ablations "${ABL%,}" --ablations-only --no-real \
      --out benchmarks/results/v2_gtslum_ablations.json
fi
