#!/usr/bin/env bash
# Server cost per request, for memcached and tickcache-server side by side, independent of
# how fast the machine lets the load run: CPU time (user, system), system calls by kind,
# context switches (scripts/server_cost.py), with the load of scripts/bench_memcached.sh
# (tickcache-load, 50 connections, 90 % get / 10 % set, 16-byte keys). The servers take
# turns, REPEAT times each.
#
#   scripts/server_cost.sh THREADS VALUE_SIZE KEYS [SECS]   # e.g. 1 32 10000 3
#   PERF=0 scripts/server_cost.sh 1 32 10000                # CPU only (no perf tracepoints)
#   OTHER=/tmp/tickcache-server-old scripts/server_cost.sh 1 32 10000
#                                                           # a third server: another build
#
# Needs perf with access to the syscall tracepoints (e.g. as root) unless PERF=0. Loopback
# only; every server started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
THREADS=$1 SIZE=$2 KEYS=$3 SECS=${4:-3}
REPEAT=${REPEAT:-3}
MC_PORT=${MC_PORT:-21331} TC_PORT=${TC_PORT:-21332} OTHER_PORT=${OTHER_PORT:-21333}
nice cargo build --release --features server --bin tickcache-server --bin tickcache-load
command -v memcached >/dev/null || { echo "memcached is not installed" >&2; exit 1; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
names=() ports=()
start() { # NAME PORT CMD...
    local name=$1 port=$2
    shift 2
    "$@" 2>/dev/null &
    PIDS+=($!)
    names+=("$name")
    ports+=("$port")
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "port $port did not open" >&2
    exit 1
}
start memcached "$MC_PORT" memcached -u "$(id -un)" -l 127.0.0.1 -p "$MC_PORT" -t "$THREADS" -U 0
start tickcache-server "$TC_PORT" "$TARGET/release/tickcache-server" \
    --listen "127.0.0.1:$TC_PORT" --threads "$THREADS"
if [ -n "${OTHER:-}" ]; then
    start "$OTHER" "$OTHER_PORT" "$OTHER" --listen "127.0.0.1:$OTHER_PORT" --threads "$THREADS"
fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $THREADS thread(s), $SIZE-byte values, $KEYS keys, ${SECS} s windows"
for _ in $(seq 1 "$REPEAT"); do
    for i in "${!names[@]}"; do
        echo "${names[$i]} $(python3 scripts/server_cost.py "${PIDS[$i]}" "${ports[$i]}" "$SECS" -- \
            "$TARGET/release/tickcache-load" --addr "127.0.0.1:${ports[$i]}" --conns 50 \
            --secs "$((${SECS%.*} + 2))" --value-size "$SIZE" --keys "$KEYS")"
    done
done
