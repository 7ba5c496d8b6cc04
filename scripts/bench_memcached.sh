#!/usr/bin/env bash
# Throughput and p99 of tickcache-server against memcached on loopback, same load
# generator (tickcache-load), same run, servers alternating round by round:
# 50 connections, 90% get / 10% set, 16-byte keys, 32-byte values, with one worker thread
# each (memcached -t 1, --threads 1) and four (-t 4, --threads 4); then 100 KiB values
# (200 keys, so both hold them all within -m 64). Prints every round, the totals, and each
# server's median round with its ratio to memcached's.
#
#   scripts/bench_memcached.sh                  # 5 rounds of 10 s per server and row
#   SECS=4 ROUNDS=3 scripts/bench_memcached.sh  # shorter
#   ALSO=--no-batch scripts/bench_memcached.sh   # a third server: tickcache-server ALSO
#   LOAD_THREADS=2 scripts/bench_memcached.sh   # the load generator on 2 threads (default 1)
#   ROW="1 32 10000" scripts/bench_memcached.sh # one row: THREADS VALUE_SIZE KEYS
#   SERVER_CPUS=0 LOAD_CPUS=1 scripts/bench_memcached.sh
#                                               # servers and load on fixed CPUs (taskset)
#
# The servers alternate round by round, every other round in reverse order. With one load
# thread on a 2-core machine the load generator itself is the bottleneck (it takes about
# as much CPU per request as a one-thread server); LOAD_THREADS=2 spreads it over two
# event loops.
#
# With ALSO set, a second tickcache-server started with those extra options (on ALSO_PORT)
# takes its turn in every round too, e.g. to compare scheduling policies.
#
# Runs at most ROWS x 2 x ROUNDS x SECS seconds of load (400 s by default; x 3 with ALSO). Loopback only;
# every server started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SECS=${SECS:-10}
ROUNDS=${ROUNDS:-5}
CONNS=${CONNS:-50}
MC_PORT=${MC_PORT:-21299}
TC_PORT=${TC_PORT:-21301}
ALSO_PORT=${ALSO_PORT:-21303}
ALSO=${ALSO:-}
LOAD_THREADS=${LOAD_THREADS:-1}
# With SERVER_CPUS / LOAD_CPUS (taskset lists), both servers run on the same CPUs and the
# load generator on its own, so the kernel cannot place one server's threads differently
# from the other's (other processes still share those CPUs).
ON_SERVER=() ON_LOAD=()
[ -z "${SERVER_CPUS:-}" ] || ON_SERVER=(taskset -c "$SERVER_CPUS")
[ -z "${LOAD_CPUS:-}" ] || ON_LOAD=(taskset -c "$LOAD_CPUS")
nice cargo build --release --features server --bin tickcache-server --bin tickcache-load
command -v memcached >/dev/null || { echo "memcached is not installed" >&2; exit 1; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_port() {
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "port $1 did not open" >&2
    return 1
}

port_free() {
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
        echo "port $1 is in use: set MC_PORT/TC_PORT" >&2
        exit 1
    fi
}

row() { # THREADS VALUE_SIZE KEYS
    local threads=$1 size=$2 keys=$3
    port_free "$MC_PORT"
    port_free "$TC_PORT"
    "${ON_SERVER[@]}" memcached -u "$(id -un)" -l 127.0.0.1 -p "$MC_PORT" -t "$threads" -U 0 &
    local mc=$!
    "${ON_SERVER[@]}" "$TARGET/release/tickcache-server" --listen "127.0.0.1:$TC_PORT" --threads "$threads" 2>/dev/null &
    local tc=$!
    PIDS+=("$mc" "$tc")
    local addrs=(--addr "127.0.0.1:$MC_PORT" --addr "127.0.0.1:$TC_PORT") also=()
    if [ -n "$ALSO" ]; then
        port_free "$ALSO_PORT"
        # shellcheck disable=SC2086 # ALSO is a list of options
        "${ON_SERVER[@]}" "$TARGET/release/tickcache-server" --listen "127.0.0.1:$ALSO_PORT" --threads "$threads" $ALSO 2>/dev/null &
        also=($!)
        PIDS+=("${also[0]}")
        addrs+=(--addr "127.0.0.1:$ALSO_PORT")
    fi
    wait_port "$MC_PORT"
    wait_port "$TC_PORT"
    [ -z "$ALSO" ] || wait_port "$ALSO_PORT"
    echo "== memcached -t $threads vs tickcache-server --threads $threads, $size-byte values, $keys keys, $LOAD_THREADS load thread(s)${SERVER_CPUS:+, servers on CPU $SERVER_CPUS}${LOAD_CPUS:+, load on CPU $LOAD_CPUS}"
    "${ON_LOAD[@]}" "$TARGET/release/tickcache-load" "${addrs[@]}" --threads "$LOAD_THREADS" \
        --conns "$CONNS" --secs "$SECS" --rounds "$ROUNDS" --value-size "$size" --keys "$keys" \
        | sed "s/127.0.0.1:$MC_PORT/memcached/; s/127.0.0.1:$TC_PORT/tickcache-server/; s/127.0.0.1:$ALSO_PORT/tickcache-server $ALSO/"
    kill "$mc" "$tc" "${also[@]}"
    wait "$mc" "$tc" "${also[@]}" 2>/dev/null || true
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
trap 'cleanup; echo "load average at the end: $(cut -d" " -f1-3 /proc/loadavg)"' EXIT
if [ -n "${ROW:-}" ]; then
    # One row only, e.g. ROW="4 102400 200".
    row $ROW
    exit
fi
row 1 32 10000
row 4 32 10000
row 1 102400 200
row 4 102400 200
