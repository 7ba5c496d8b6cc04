#!/usr/bin/env bash
# pymemcache talks to the Cortex-M firmware: builds src/bin/memcached.rs (memcached's text
# protocol over the MPS2-AN386 board's UART0), boots it in QEMU with the serial port on a
# local TCP socket, and runs scripts/firmware_memcached.py against it. Exits non-zero on any
# failure; QEMU is stopped on exit either way.
#
#   bash examples/firmware/memcached.sh
#   FW_PORT=21413 WORK=target/memcached-clients bash examples/firmware/memcached.sh
#
# Needs qemu-system-arm and python3 with venv (pymemcache comes from PyPI on the first run,
# into the same virtualenv as scripts/memcached_clients.sh). Only loopback is used.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(cd ../.. && pwd)
PORT=${FW_PORT:-21413}
WORK=${WORK:-$ROOT/target/memcached-clients}
ELF=target/thumbv7em-none-eabihf/release/memcached

cargo build -q --release --no-default-features --bin memcached

mkdir -p "$WORK"
[ -x "$WORK/venv/bin/python" ] || python3 -m venv "$WORK/venv"
PY=$WORK/venv/bin/python
"$PY" -c 'import pymemcache' 2>/dev/null || "$PY" -m pip install -q "pymemcache>=4,<5"

log=$(mktemp)
qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -display none -monitor none \
    -semihosting-config enable=on,target=native \
    -serial "tcp:127.0.0.1:$PORT,server=on,wait=off" \
    -kernel "$ELF" </dev/null >"$log" 2>&1 &
qemu=$!
cleanup() {
    kill "$qemu" 2>/dev/null || true
    wait "$qemu" 2>/dev/null || true
    rm -f "$log"
}
trap cleanup EXIT

# Up when the firmware has printed its banner (semihosting) and the port takes connections.
for _ in $(seq 1 100); do
    if grep -q "memcached on UART0" "$log" &&
        "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2).close()" \
            2>/dev/null; then
        break
    fi
    if ! kill -0 "$qemu" 2>/dev/null; then
        cat "$log" >&2
        echo "QEMU exited before the firmware was up" >&2
        exit 1
    fi
    sleep 0.1
done
cat "$log"

timeout "${FW_TIMEOUT:-180}" "$PY" "$ROOT/scripts/firmware_memcached.py" "$PORT"
