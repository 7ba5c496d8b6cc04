#!/usr/bin/env python3
"""pymemcache's basic calls against a memcached-protocol server on 127.0.0.1:PORT."""
import sys

from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheClientError, MemcacheServerError

port = int(sys.argv[1])
c = Client(("127.0.0.1", port), connect_timeout=2, timeout=5, default_noreply=False)
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        print("FAILED:", what)
        sys.exit(1)


c.flush_all()
check(c.set("a", b"1") is True, "set")
check(c.get("a") == b"1", "get")
check(c.add("a", b"2") is False, "add existing")
check(c.add("b", b"2") is True, "add new")
check(c.replace("zz", b"3") is False, "replace missing")
check(c.replace("b", b"3") is True, "replace")
check(c.append("b", b"4") and c.get("b") == b"34", "append")
check(c.prepend("b", b"2") and c.get("b") == b"234", "prepend")
check(c.incr("a", 5) == 6, "incr")
check(c.decr("a", 10) == 0, "decr floors at 0")
check(c.incr("missing", 1) is None, "incr missing")
c.set("big", b"18446744073709551615")
check(c.incr("big", 1) == 0, "incr wraps")
try:
    c.set("txt", b"abc")
    c.incr("txt", 1)
    check(False, "incr on text must fail")
except MemcacheClientError:
    checks += 1
value, cas = c.gets("b")
check(value == b"234" and cas, "gets")
check(c.cas("b", b"new", cas) is True, "cas ok")
check(c.cas("b", b"newer", cas) is False, "cas stale")
check(c.cas("nope", b"x", 1) is None, "cas missing")
check(c.get_many(["a", "b", "nope"]) == {"a": b"0", "b": b"new"}, "get_many")
check(c.set_many({"x": b"1", "y": b"2"}) == [], "set_many")
check(c.delete("x") is True and c.delete("x", noreply=False) is False, "delete")
check(c.touch("y", 100, noreply=False) is True, "touch")
check(c.touch("nope", 100, noreply=False) is False, "touch missing")
c.set("flagged", b"v", expire=0)
check(c.set("noreply", b"q", noreply=True) is True and c.get("noreply") == b"q", "noreply")
check(c.set("gone", b"q", expire=-1) and c.get("gone") is None, "negative expire")
try:
    c.set("huge", b"x" * (2 << 20))
    check(False, "huge set must fail")
except MemcacheServerError as e:
    check("too large" in str(e), "too large message")
check(c.get("huge") is None, "huge not stored")
check(b"tickcache" in c.version() or c.version(), "version")
st = c.stats()
check(st.get(b"curr_items", 0) >= 1 or st.get("curr_items", 0) >= 1, "stats")
c.flush_all()
check(c.get("a") is None, "flush_all")
c.quit()
print(f"pymemcache basic calls: {checks} checks passed")
