#!/usr/bin/env bash
# U-MASK trained on profiles written by the U-SCOPE LLM (issue #10), with a fair control
# (docs/families/uscope_llm_trained.md). Two fine-tunes of the shipped checkpoint's training run
# (artifacts/train/umask_small_v3/ckpt/step_000524, warm start: its weights, a fresh optimizer and schedule),
# the shipped recipe (scripts/train_user_umask_small.sh: small config, blend prior, calendar / E_pos / h_b DiT
# terms, v2 diffusion recipe) on the same 50 SYNTHETIC users (simulator seed 0, training days only), the same
# steps, LR and seed; they differ ONLY in the profile text behind h_u = ProfileMLP(SBERT(y_u)) (eq. 24):
#   template: the rule-based template profile (control)   -> artifacts/train/umask_ft_template
#   llm:      the merged SFT+DPO U-SCOPE LLM (f16 GGUF, greedy, one thread), one text per user from its
#             training-days ProfileStats, cached in cache/llm_profiles and written to <out>/profiles.json
#                                                         -> artifacts/train/umask_ft_llm
# One torch thread, niced, in the background, ONE run at a time ("both": template, then llm). Run it again to
# resume (the same command continues from ckpt/latest).
# SEED=N (default 0) trains with --seed N into umask_ft_{template,llm}_sN (a second training seed).
#   scripts/train_umask_llm_profiles.sh [template|llm|both [STEPS [MAX_MINUTES]]]
#   logs: artifacts/train/logs/umask_ft_{template,llm}[_sN].log
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:-both}
STEPS=${2:-300}
MAX_MINUTES=${3:-15}
INIT=${INIT:-artifacts/train/umask_small_v3/ckpt/step_000524}
LLM_GGUF=${LLM_GGUF:-artifacts/uscope/gguf/uscope-f16.gguf}
SEED=${SEED:-0}
SUFFIX=$([ "$SEED" = 0 ] && echo "" || echo "_s$SEED")
mkdir -p artifacts/train/logs

run() {   # run NAME PROFILE_SOURCE
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 5 .venv/bin/python -m umask.train.models.umask.trainer \
        --config small --steps "$STEPS" --batch-size 8 --lr 1e-4 --warmup 20 --eval-every 100 --eval-batches 12 \
        --ckpt-every 50 --n-users 50 --sim-seed 0 --set t_power=2.0 --set 'data_scale="none"' --set 'prior="blend"' \
        --set dit_calendar=true --set dit_epos=true --set dit_hb=true --profile-source "$2" --init-from "$INIT" --seed "$SEED" \
        --num-threads 1 --no-progress --max-minutes "$MAX_MINUTES" --out "artifacts/train/$1" \
        >> "artifacts/train/logs/$1.log" 2>&1
}

case "$WHICH" in
    template) jobs=("umask_ft_template$SUFFIX template") ;;
    llm) jobs=("umask_ft_llm$SUFFIX llm:$LLM_GGUF") ;;
    both) jobs=("umask_ft_template$SUFFIX template" "umask_ft_llm$SUFFIX llm:$LLM_GGUF") ;;
    *) echo "usage: $0 [template|llm|both [STEPS [MAX_MINUTES]]]" >&2; exit 2 ;;
esac
(
    trap '' HUP
    for j in "${jobs[@]}"; do
        # shellcheck disable=SC2086
        run $j
        mkdir -p benchmarks/results/learning_curves
        name=${j%% *}
        cp "artifacts/train/$name/metrics.jsonl" "benchmarks/results/learning_curves/$name.jsonl"
    done
) </dev/null &
echo "started ${WHICH} (pid $!), logs artifacts/train/logs/umask_ft_*.log"
