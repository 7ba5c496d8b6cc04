#!/usr/bin/env bash
# User-space instructions per request of memcached and tickcache-server under valgrind's
# callgrind: a count that does not depend on the machine's load (the server's own code,
# libc and, for tickcache-server, tokio; not the kernel). The load is that of
# scripts/bench_memcached.sh (tickcache-load, 50 connections, 90 % get / 10 % set, 16-byte
# keys), much slower under valgrind; counting starts after one second of warm-up (keys
# stored, connections open) and stops after SECS more seconds; requests are counted by the
# server's stats (cmd_get + cmd_set).
#
#   scripts/server_instructions.sh THREADS VALUE_SIZE KEYS [SECS]   # e.g. 1 32 10000 3
#   OTHER=/tmp/tickcache-server-old scripts/server_instructions.sh 1 32 10000
#                                                                    # and another build
#
# Needs valgrind (callgrind_control). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
THREADS=$1 SIZE=$2 KEYS=$3 SECS=${4:-3}
PORT=${PORT:-21341}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
nice cargo build --release --features server --bin tickcache-server --bin tickcache-load

requests() {
    python3 - "$PORT" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"stats\r\n")
d = b""
while not d.endswith(b"END\r\n"):
    d += s.recv(65536)
st = dict(l.split(" ")[1:3] for l in d.decode().splitlines() if l.startswith("STAT"))
print(int(st["cmd_get"]) + int(st["cmd_set"]))
PY
}

count() { # NAME CMD...
    local name=$1
    shift
    valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.%p" "$@" >/dev/null 2>"$OUT/$name.log" &
    local vg=$!
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.2
    done
    local load=("$TARGET/release/tickcache-load" --addr "127.0.0.1:$PORT" --conns 50
        --value-size "$SIZE" --keys "$KEYS")
    "${load[@]}" --secs 1 >/dev/null
    callgrind_control -z "$vg" >/dev/null
    local r0 r1
    r0=$(requests)
    "${load[@]}" --secs "$SECS" >/dev/null
    r1=$(requests)
    callgrind_control -d "$vg" >/dev/null
    kill "$vg"
    wait "$vg" 2>/dev/null || true
    # The dump taken after zeroing is part 1.
    local ir
    ir=$(sed -n 's/^summary: //p' "$OUT/$name".*.1 | head -1)
    echo "$name requests=$((r1 - r0)) instructions=$ir per_request=$((ir / (r1 - r0)))"
}

echo "$THREADS thread(s), $SIZE-byte values, $KEYS keys, ${SECS} s"
count tickcache-server "$TARGET/release/tickcache-server" --listen "127.0.0.1:$PORT" --threads "$THREADS"
if [ -n "${OTHER:-}" ]; then
    count other "$OTHER" --listen "127.0.0.1:$PORT" --threads "$THREADS"
fi
# Under valgrind, memcached may set its open-files limit only to valgrind's hard limit less
# the descriptors valgrind keeps (12): hence -c.
(
    ulimit -n 4096
    ulimit -Hn 4096
    count memcached memcached -u "$(id -un)" -l 127.0.0.1 -p "$PORT" -t "$THREADS" -U 0 -c 4084
)
