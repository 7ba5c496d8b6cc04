#!/usr/bin/env bash
# Bounded fuzz campaign for one target, or for every target in turn.
#
#   fuzz/run.sh TARGET SECONDS     run TARGET for SECONDS (libFuzzer -max_total_time)
#   fuzz/run.sh all SECONDS        run every target for SECONDS each, one after another
#
# The corpus lives in fuzz/corpus/TARGET (seeds are the files named seed-*), the key and
# record dictionary is fuzz/dict/keys.dict, and the log goes to fuzz/logs/TARGET-DATE.log
# (libFuzzer's final stats lines at its end). On a crash the input is minimized with
# `cargo fuzz tmin` and its path printed: copy it to fuzz/regressions/TARGET/ so that
# tests/fuzz_regressions.rs replays it under plain `cargo test`.
#
# Environment: FUZZ_TARGET_DIR (cargo target dir, default fuzz/target: give a long campaign
# its own so that rebuilding does not touch its binary), FUZZ_TIMEOUT (seconds for one
# input before it counts as a hang, default 10), FUZZ_ARGS (more libFuzzer flags).
# Runs under `nice`; needs `cargo +nightly` and cargo-fuzz.
set -uo pipefail

TARGETS=(ops key value persist flash_image memcached)

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

usage() {
    local IFS='|'
    echo "usage: $0 {${TARGETS[*]}|all} SECONDS" >&2
    exit 2
}

[ $# -eq 2 ] || usage
target=$1
seconds=$2
[[ $seconds =~ ^[0-9]+$ ]] || usage

if [ "$target" = all ]; then
    status=0
    for t in "${TARGETS[@]}"; do
        "$0" "$t" "$seconds" || status=1
    done
    exit $status
fi

known=0
for t in "${TARGETS[@]}"; do
    [ "$t" = "$target" ] && known=1
done
[ $known = 1 ] || usage
if [ ! -f "$here/fuzz_targets/$target.rs" ]; then
    echo "$target: no fuzz target yet (fuzz/fuzz_targets/$target.rs), skipped" >&2
    exit 0
fi

target_dir=${FUZZ_TARGET_DIR:-$here/target}
corpus=$here/corpus/$target
artifacts=$here/artifacts/$target
mkdir -p "$corpus" "$artifacts" "$here/logs"
log=$here/logs/$target-$(date +%Y%m%d-%H%M%S).log
marker=$(mktemp)
trap 'rm -f "$marker"' EXIT

cd "$root" || exit 1
echo "$target: ${seconds}s, corpus $corpus, log $log"
nice cargo +nightly fuzz run --target-dir "$target_dir" "$target" "$corpus" -- \
    -max_total_time="$seconds" \
    -timeout="${FUZZ_TIMEOUT:-10}" \
    -dict="$here/dict/keys.dict" \
    -print_final_stats=1 \
    ${FUZZ_ARGS:-} \
    >"$log" 2>&1
status=$?

grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log"
if [ $status -eq 0 ]; then
    echo "$target: clean"
    exit 0
fi

crash=$(find "$artifacts" -maxdepth 1 -type f -newer "$marker" \
    \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) \
    -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2-)
if [ -z "$crash" ]; then
    echo "$target: libFuzzer exited with $status and left no input; see $log" >&2
    exit $status
fi
echo "$target: failing input $crash; minimizing"
tmin_log=$log.tmin
nice cargo +nightly fuzz tmin --target-dir "$target_dir" -r 2000 "$target" "$crash" \
    >"$tmin_log" 2>&1
minimized=$(find "$artifacts" -maxdepth 1 -type f -name 'minimized-from-*' -newer "$marker" \
    -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2-)
if [ -n "$minimized" ]; then
    echo "$target: minimized input $minimized"
else
    echo "$target: minimizing failed (see $tmin_log); input $crash"
fi
grep -m1 -A3 'panicked at' "$log" >&2
exit 1
