"""pymemcache against the Cortex-M firmware serving memcached over its UART (QEMU's serial
port on a local TCP socket). Run by examples/firmware/memcached.sh.

    python scripts/firmware_memcached.py PORT

The UART is one byte stream whatever the TCP connections: QEMU takes one client at a
time, and the firmware's parser state carries over from one client to the next. So each
case opens its own connection, and the cases with damaged input check that the next
client is served normally. Exits non-zero on the first failure.
"""

import socket
import sys
import time

from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheClientError, MemcacheServerError

PORT = int(sys.argv[1])
ADDR = ("127.0.0.1", PORT)


def client():
    # noreply off: every store waits for its reply, so a refusal is seen.
    return Client(ADDR, connect_timeout=10, timeout=10, default_noreply=False)


def raw(data, want, timeout=10.0):
    """Sends `data` on a connection of its own and checks the reply is exactly `want`."""
    s = socket.create_connection(ADDR, timeout=timeout)
    try:
        s.sendall(data)
        got = b""
        deadline = time.monotonic() + timeout
        while len(got) < len(want) and time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            got += chunk
        # Anything more arriving shortly would be a reply too many.
        s.settimeout(0.3)
        try:
            got += s.recv(65536)
        except socket.timeout:
            pass
    finally:
        s.close()
    assert got == want, f"sent {data[:80]!r}...: got {got!r}, want {want!r}"


def check(name, f):
    f()
    print(f"ok   {name}")


def basics():
    c = client()
    assert c.version().endswith(b"-tickcache"), c.version()
    assert c.set("a", b"1") is True
    assert c.get("a") == b"1"
    assert c.add("a", b"2") is False
    assert c.set("n", b"10") is True
    assert c.incr("n", 5) == 15
    assert c.decr("n", 20) == 0
    assert c.incr("missing", 1) is None
    assert c.delete("a") is True
    assert c.delete("a") is False
    assert c.get("a") is None
    value, cas = c.gets("n")
    assert value.strip() == b"0", value
    assert c.cas("n", b"7", cas) is True
    assert c.cas("n", b"8", cas) is False
    assert c.get("n") == b"7"
    stats = c.stats()
    assert stats[b"cmd_get"] > 0 and stats[b"item_size_max"] == 1024, stats
    c.close()


def multi_get():
    c = client()
    items = {f"key:{i}": f"value {i}".encode() * (i + 1) for i in range(40)}
    assert c.set_many(items) == []
    wanted = list(items) + [f"absent:{i}" for i in range(10)]
    got = c.get_many(wanted)
    assert got == items, (len(got), len(items))
    c.close()


def oversized_item():
    c = client()
    c.set("big", b"old")
    try:
        c.set("big", b"x" * 5000)
        raise AssertionError("a 5,000-byte item was stored")
    except MemcacheServerError as e:
        assert "object too large" in str(e), e
    # The refused item's data was discarded; the old value went with it, as in memcached.
    assert c.get("big") is None
    assert c.set("fits", b"y" * 1024) is True
    assert c.get("fits") == b"y" * 1024
    c.close()


def long_line():
    client().set("a2", b"x")
    raw(
        b"get " + b"k" * 5000 + b"\r\nget a2\r\n",
        b"CLIENT_ERROR line too long\r\nVALUE a2 0 1\r\nx\r\nEND\r\n",
    )
    assert client().get("a2") == b"x"


def byte_lost_then_more_lines():
    # 9 of 10 bytes arrive: the block is taken up to the next line's first byte, refused,
    # and the rest of that line is read as a command (memcached's rule).
    raw(
        b"set lost 0 0 10\r\n123456789\r\nget a2\r\n",
        b"CLIENT_ERROR bad data chunk\r\nERROR\r\n",
    )
    c = client()
    assert c.get("lost") is None
    assert c.get("a2") == b"x"
    c.close()


def byte_lost_then_silence():
    # Nothing follows the damaged block: after a second without bytes the firmware drops
    # the incomplete command and says so.
    raw(
        b"set lost 0 0 10\r\n123456789\r\n",
        b"CLIENT_ERROR incomplete command dropped\r\n",
        timeout=5.0,
    )
    c = client()
    assert c.get("lost") is None
    assert c.set("lost", b"0123456789") is True
    assert c.get("lost") == b"0123456789"
    c.close()


def client_gone_mid_value():
    s = socket.create_connection(ADDR, timeout=10)
    s.sendall(b"set half 0 0 100\r\nabc")
    s.close()
    # The firmware drops the incomplete command after a second without bytes (its error
    # line goes nowhere: QEMU drops what the UART sends while no client is connected).
    time.sleep(2.5)
    c = client()
    assert c.get("half") is None
    assert c.get("a2") == b"x"
    c.close()


def garbage():
    raw(b"\x00\xff\x80 binary\r\n\x80\x01\x00\x00\r\n", b"ERROR\r\nERROR\r\n")
    assert client().get("a2") == b"x"


def main():
    cases = [
        ("set, get, add, incr, decr, delete, gets/cas, stats", basics),
        ("multi-get of 50 keys", multi_get),
        ("an oversized item is refused cleanly", oversized_item),
        ("a line longer than the buffer", long_line),
        ("a byte lost in a value, more lines follow", byte_lost_then_more_lines),
        ("a byte lost in a value, then silence", byte_lost_then_silence),
        ("a client gone in the middle of a value", client_gone_mid_value),
        ("binary garbage", garbage),
    ]
    failed = 0
    for name, f in cases:
        try:
            check(name, f)
        except (AssertionError, MemcacheClientError, MemcacheServerError, OSError) as e:
            failed += 1
            print(f"FAIL {name}: {e!r}")
    print(f"{len(cases) - failed} of {len(cases)} firmware cases passed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
