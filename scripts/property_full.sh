#!/usr/bin/env bash
# Full-size property runs of the hardening issue: every entry point (history parsing, manifest loading,
# each Session request method, the `umask run` CLI) on UMASK_PROPERTY_EXAMPLES generated hostile cases
# (default 2000 each; the test suite runs 100-200). A crash, a hang (hypothesis deadline / the per-file
# timeout), a traceback or an invalid output fails the file. Writes, per file, the pytest summary and
# hypothesis' outcome statistics (accepted / refused by error class) to
#   benchmarks/results/hardening_property_full.txt   (raw log, appended per file)
#   benchmarks/results/hardening_property_full.json  (one row per file: examples, passed, failed, seconds)
#
#   scripts/property_full.sh [EXAMPLES] [FILE ...]      # e.g. scripts/property_full.sh 2000
# One thread, about 1-2 hours on the 2-core CPU for all four files at 2000 (the Session and CLI files
# dominate: each case opens or drives a Session).
set -uo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
shift || true
FILES=("$@")
if [ ${#FILES[@]} -eq 0 ]; then
    FILES=(tests/test_property_history.py tests/test_property_manifest.py tests/test_property_session.py
           tests/test_property_cli.py)
fi
OUT=benchmarks/results/hardening_property_full
mkdir -p benchmarks/results
: > "$OUT.txt.partial"
rows=()
for f in "${FILES[@]}"; do
    t0=$(date +%s)
    log=$(mktemp)
    UMASK_PROPERTY_EXAMPLES=$N OMP_NUM_THREADS=1 timeout 7200 .venv/bin/python -m pytest -q -p no:cacheprovider \
        --hypothesis-show-statistics "$f" > "$log" 2>&1
    rc=$?
    t1=$(date +%s)
    { echo "===== $f (UMASK_PROPERTY_EXAMPLES=$N, exit $rc, $((t1 - t0)) s)"; cat "$log"; } >> "$OUT.txt.partial"
    passed=$(grep -Eo '[0-9]+ passed' "$log" | tail -1 | cut -d' ' -f1)
    failed=$(grep -Eo '[0-9]+ failed' "$log" | tail -1 | cut -d' ' -f1)
    rows+=("{\"file\": \"$f\", \"examples_per_test\": $N, \"exit\": $rc, \"passed\": ${passed:-0}, \"failed\": ${failed:-0}, \"seconds\": $((t1 - t0))}")
    rm -f "$log"
done
mv "$OUT.txt.partial" "$OUT.txt"
commit=$(git rev-parse --short HEAD)
{
    echo "{\"meta\": {\"command\": \"scripts/property_full.sh $N\", \"commit\": \"$commit\", \"date\": \"$(date -u +%F)\","
    echo "          \"machine\": \"$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)\"},"
    echo " \"files\": ["
    printf '%s\n' "${rows[@]}" | paste -sd, - | sed 's/},{/},\n  {/g; s/^/  /'
    echo " ]}"
} > "$OUT.json.partial" && mv "$OUT.json.partial" "$OUT.json"
cat "$OUT.json"
