#!/usr/bin/env bash
# FatsMB, mobile variant (protocol C-mobile): items = the 20 app categories, behaviors open / long / heavy,
# from per-user app-usage records (umask.train.data.mobile_mb). SYNTHETIC: 500 simulator users, simulator
# seed 0, 7 days; REAL: the shipped 6-user one-day Tsinghua sample (a check only). FatsMB is trained on the
# synthetic users (small config for 20 items), the prior's gains are fitted on top, then every baseline and
# FatsMB are scored on the synthetic test queries and on the real ones (FatsMB: the synthetic runs,
# transferred; baselines: fitted on the real training split). One CPU thread, one job at a time.
#   ./scripts/train_fatsmb_mobile.sh [stage...]    stages: data fatsmb prior score   (default: all)
#   ./scripts/train_fatsmb_mobile.sh bundle         export seed0 (fp32 + int8-qdq, with and without the prior), score
#                                                   the bundles on the synthetic test queries, time them (new file)
#   ./scripts/train_fatsmb_mobile.sh places         items = places (base stations): data, FatsMB seed 0 + prior, every
#                                                   baseline (SASRec / BERT4Rec seed 0) on the synthetic users + the real check,
#                                                   the seed-0 bundle scored and timed (~12 min)
#   SEEDS="0 1 2" ./scripts/train_fatsmb_mobile.sh                                   (default SEEDS="0 1 2")
#   APPEND=1 BASELINES=history_freq,blend ./scripts/train_fatsmb_mobile.sh score      add / rescore some models only
#     (the committed file: the full score stage without history_freq and blend_longmem, then this line; rows of the
#     same data set, model and artifact are replaced, the rest kept)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
OUT=${OUT:-artifacts/fatsmb_mobile}
SIM=$OUT/data/sim_s0_u500.mobile_mb.tsv.gz
REAL=$OUT/data/real.mobile_mb.tsv.gz
SEEDS=${SEEDS:-0 1 2}
RESULT=${RESULT:-benchmarks/results/v2_fatsmb_mobile.json}
STAGES=${*:-data fatsmb prior score}
PLACES=$OUT/places
PSIM=$PLACES/data/sim_s0_u500.places.synthetic.mobile_mb.tsv.gz
PREAL=$PLACES/data/real.places.mobile_mb.tsv.gz
REALNOTE="REAL 6-user one-day sample, a check only (6 test queries); FatsMB rows \
use the networks and prior gains trained on the SYNTHETIC users (sim-to-real transfer, prior tables counted on the \
real training split); baselines are fitted on the real training split"
LATNOTE="PROVISIONAL: measured on a shared 2-core CPU while other jobs ran (see the load average); rerun on an idle \
machine before quoting"
# small config for 20 items; the shipped stage lengths (1000 / 1000 / 200)
NET="--d 32 --layers 2 --heads 2 --max-len 50 --den-layers 2"
BASELINES=${BASELINES:-pop,pop_behavior,recent,history_freq,cooc,blend,sasrec,bert4rec}
DECAYS=${DECAYS:-0.9,0.99,0.999}   # blend_longmem: the blend's repeat decay chosen on validation (a diagnostic)
train() { local out=$1; shift; [ -f "$out/config.json" ] || nice -n 10 $PY -m umask.train.models.fatsmb.trainer --out "$out" "$@"; }
for stage in $STAGES; do
  case $stage in
    data)   nice -n 10 $PY -m umask.train.data.mobile_mb --source sim --n-users 500 --seed 0 --days 7 --out "$SIM"
            nice -n 10 $PY -m umask.train.data.mobile_mb --source real --out "$REAL" ;;
    fatsmb) for s in $SEEDS; do train "$OUT/runs/seed$s" --data "$SIM" --seed $s $NET; done ;;
    prior)  for s in $SEEDS; do nice -n 10 $PY -m umask.train.models.fatsmb.prior "$OUT/runs/seed$s" --seed $s \
              --repeat-decays "$DECAYS"; done ;;
    score)  nice -n 10 $PY -m umask.bench.accuracy.fatsmb --data "$SIM" --runs "$OUT/runs" --seeds "${SEEDS// /,}" \
              --baselines "$BASELINES" --blend-repeat-decays "$DECAYS" --out "$RESULT" ${APPEND:+--append}
            nice -n 10 $PY -m umask.bench.accuracy.fatsmb --data "$REAL" --runs "$OUT/runs" --seeds "${SEEDS// /,}" \
              --baselines "$BASELINES" --blend-repeat-decays "$DECAYS" --out "$RESULT" --append --note "$REALNOTE" ;;
    bundle) ex() { nice -n 10 $PY -m umask.export.families.fatsmb.exporter "$OUT/runs/seed0" "$@"; }
            ex "$OUT/bundle"; ex "$OUT/bundle_noprior" --no-prior
            nice -n 10 $PY -m umask.bench.accuracy.fatsmb --data "$SIM" --runs "$OUT/runs" --seeds "${SEEDS// /,}" --baselines '' \
              --bundle "$OUT/bundle" --bundle "$OUT/bundle_noprior" --out "$RESULT" --append
            nice -n 10 $PY -m umask.bench.accuracy.fatsmb --data "$SIM" --ckpt "$OUT/runs/seed0" --bundle "$OUT/bundle" \
              --latency 200 --out benchmarks/results/v2_fatsmb_mobile_latency.json --note "$LATNOTE" ;;
    places) nice -n 10 $PY -m umask.train.data.mobile_mb --source sim --items place --n-users 500 --seed 0 --days 7 --out "$PSIM"
            nice -n 10 $PY -m umask.train.data.mobile_mb --source real --items place --out "$PREAL"
            train "$PLACES/runs/seed0" --data "$PSIM" --seed 0 $NET
            nice -n 10 $PY -m umask.train.models.fatsmb.prior "$PLACES/runs/seed0" --seed 0
            score() { nice -n 10 $PY -m umask.bench.accuracy.fatsmb --runs "$PLACES/runs" --seeds 0 --baselines "$BASELINES" \
                        --blend-repeat-decays "$DECAYS" --out benchmarks/results/v2_fatsmb_mobile_places.json "$@"; }
            score --data "$PSIM" ${APPEND:+--append}
            score --data "$PREAL" --append --note "$REALNOTE"
            nice -n 10 $PY -m umask.export.families.fatsmb.exporter "$PLACES/runs/seed0" "$PLACES/bundle"
            nice -n 10 $PY -m umask.bench.accuracy.fatsmb --data "$PSIM" --runs "$PLACES/runs" --seeds 0 --baselines '' \
              --bundle "$PLACES/bundle" --out benchmarks/results/v2_fatsmb_mobile_places.json --append
            nice -n 10 $PY -m umask.bench.accuracy.fatsmb --data "$PSIM" --ckpt "$PLACES/runs/seed0" --bundle "$PLACES/bundle" \
              --latency 200 --out benchmarks/results/v2_fatsmb_mobile_places_latency.json --note "$LATNOTE" ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
