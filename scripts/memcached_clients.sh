#!/usr/bin/env bash
# Real memcached clients against tickcache-server (and, for comparison, Debian's memcached
# 1.6 when installed): pymemcache's basic calls and Django's PyMemcacheCacheTests.
#
#   scripts/memcached_clients.sh            # builds the server, runs everything
#   WORK=/tmp/mc-clients scripts/memcached_clients.sh
#
# Needs python3 with venv and network access to PyPI (first run only). Only loopback
# addresses are used. Every server started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${WORK:-$ROOT/target/memcached-clients}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
TC_PORT=${TC_PORT:-21411}
MC_PORT=${MC_PORT:-21412}
mkdir -p "$WORK"

nice cargo build --release --features server --bin tickcache-server
SERVER=$TARGET/release/tickcache-server

if [ ! -x "$WORK/venv/bin/python" ]; then
    python3 -m venv "$WORK/venv"
fi
PY=$WORK/venv/bin/python
"$PY" -m pip install -q "pymemcache>=4,<5" "django>=5.2,<6"
DJVER=$("$PY" -c 'import django; print(django.__version__)')
if [ ! -d "$WORK/django-src/Django-$DJVER" ]; then
    mkdir -p "$WORK/django-src"
    "$PY" -m pip download -q --no-binary :all: --no-deps "django==$DJVER" -d "$WORK/django-src"
    tar -xzf "$WORK/django-src/django-$DJVER.tar.gz" -C "$WORK/django-src"
    mv "$WORK/django-src/django-$DJVER" "$WORK/django-src/Django-$DJVER" 2>/dev/null || true
fi
DJSRC=$WORK/django-src/Django-$DJVER
"$PY" -m pip install -q -e "$DJSRC"
# Django's own test requirements for the cache tests (pymemcache is already installed).
"$PY" -m pip install -q "asgiref>=3.8" "sqlparse>=0.5" tblib 2>/dev/null || true

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_port() {
    for _ in $(seq 1 100); do
        "$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "port $1 did not open" >&2
    return 1
}

# The default heap table has memcached's limits (-m 64, -I 1m), as the memcached below.
"$SERVER" --listen 127.0.0.1:$TC_PORT &
PIDS+=($!)
wait_port $TC_PORT
HAVE_MC=0
if command -v memcached >/dev/null; then
    memcached -u nobody -l 127.0.0.1 -p $MC_PORT -t 1 -U 0 &
    PIDS+=($!)
    wait_port $MC_PORT && HAVE_MC=1
fi

echo "== pymemcache basic calls"
"$PY" "$ROOT/scripts/pymemcache_basic.py" $TC_PORT

if [ $HAVE_MC = 1 ]; then
    echo "== raw protocol: tickcache-server vs memcached"
    "$PY" "$ROOT/scripts/memcached_compare.py" $MC_PORT $TC_PORT | tail -1
fi

write_settings() { # port label
    cat > "$WORK/settings_$2.py" <<PYEOF
from test_sqlite import *  # noqa: F401,F403
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": "127.0.0.1:$1",
    },
}
PYEOF
}

echo "== Django $DJVER cache.tests.PyMemcacheCacheTests"
run_django_wrapped() { # port label
    write_settings "$1" "$2"
    local log=$WORK/django_$2.log
    ( cd "$DJSRC/tests" && PYTHONPATH="$WORK:$DJSRC/tests" "$PY" runtests.py \
        --settings="settings_$2" --parallel 1 -v 2 cache.tests.PyMemcacheCacheTests ) >"$log" 2>&1 || true
    local ran ok fail err skip
    ran=$(grep -Eo '^Ran [0-9]+' "$log" | grep -Eo '[0-9]+' || echo 0)
    ok=$(grep -Ec ' \.\.\. ok$' "$log" || true)
    fail=$(grep -Ec ' \.\.\. FAIL$' "$log" || true)
    err=$(grep -Ec ' \.\.\. ERROR$' "$log" || true)
    skip=$(grep -Ec ' \.\.\. skipped' "$log" || true)
    printf '%-18s ran %3s  ok %3s  failed %2s  errors %2s  skipped %2s\n' \
        "$2" "$ran" "$ok" "$fail" "$err" "$skip"
    grep -E ' \.\.\. (FAIL|ERROR)$' "$log" | sed 's/^/    /' || true
}
run_django_wrapped $TC_PORT tickcache_server
if [ $HAVE_MC = 1 ]; then
    run_django_wrapped $MC_PORT memcached_1_6
    # Every test that passes against memcached must pass against tickcache-server.
    grep -E ' \.\.\. ok$' "$WORK/django_memcached_1_6.log" | sed 's/ \.\.\. ok$//' | sort > "$WORK/ok_mc.txt"
    grep -E ' \.\.\. ok$' "$WORK/django_tickcache_server.log" | sed 's/ \.\.\. ok$//' | sort > "$WORK/ok_tc.txt"
    missing=$(comm -23 "$WORK/ok_mc.txt" "$WORK/ok_tc.txt" | wc -l)
    echo "tests passing on memcached but not on tickcache-server: $missing"
    comm -23 "$WORK/ok_mc.txt" "$WORK/ok_tc.txt" | sed 's/^/    /'
    [ "$missing" = 0 ]
fi
