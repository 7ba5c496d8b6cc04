#!/usr/bin/env bash
# RSS of tickcache-server and memcached, idle and while 1,000 clients pipeline `stats` and
# `get` of a 1,000,000-byte item without reading (scripts/pipeline_memory.py), then after
# they closed. Loopback only; every server started here is stopped on exit.
#
#   scripts/pipeline_memory.sh [CONNS]        # default 1000
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CONNS=${1:-1000}
TC_PORT=${TC_PORT:-21421}
MC_PORT=${MC_PORT:-21422}
nice cargo build --release --features server --bin tickcache-server
ulimit -n 20000 2>/dev/null || true

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

measure() { # NAME PORT CMD...
    local name=$1 port=$2
    shift 2
    "$@" 2>/dev/null &
    local pid=$!
    PIDS+=("$pid")
    sleep 1
    echo "$name idle_rss_kib=$(ps -o rss= -p "$pid" | tr -d ' ')"
    echo "$name $(python3 scripts/pipeline_memory.py "$pid" "$port" "$CONNS" 20)"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

measure tickcache-server "$TC_PORT" "$TARGET/release/tickcache-server" \
    --listen "127.0.0.1:$TC_PORT" --request-timeout 60 --max-conns 2000
if command -v memcached >/dev/null; then
    measure memcached "$MC_PORT" memcached -u "$(id -un)" -l 127.0.0.1 -p "$MC_PORT" -U 0 -c 2000
fi
