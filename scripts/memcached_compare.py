#!/usr/bin/env python3
"""Sends the same raw byte sequences to two memcached-protocol servers on 127.0.0.1 and
prints the replies side by side; exits 1 when they differ.

usage: memcached_compare.py PORT_A PORT_B
Each case runs on a fresh connection after `flush_all`; cas uniques are masked (the two
servers count differently). A case given as a tuple of parts is sent part by part, 0.2 s
apart (a command arriving slowly, well within a request timeout)."""
import re
import socket
import sys
import time

CASES = [
    b"set a 0 0 -1\r\nxy\r\n",
    b"set " + b"k" * 251 + b" 0 0 2\r\nxy\r\n",
    b"set a 0 0 2\r\nxyz\r\n",
    b"set a 0 0 2 noreply\r\nxyz\r\n",
    b"get\r\n", b"\r\n", b"bogus\r\n", b"SET a 0 0 1\r\nx\r\n",
    b"set a x 0 2\r\nxy\r\n",
    b"set a 0 0 2 junk\r\nxy\r\nget a\r\n",
    b"incr a x\r\n",
    b"set n 0 0 2\r\n10\r\ndecr n 1\r\nget n\r\nincr n 18446744073709551615\r\n",
    b"set n 0 0 2\r\n-5\r\nincr n 1\r\n",
    b"set n 0 0 20\r\n18446744073709551615\r\nincr n 1\r\nget n\r\n",
    b"set n 0 0 1\r\n5\r\nincr n -1\r\n",
    b"set n 0 0 3\r\n 12\r\nincr n 1\r\n",
    b"set n 0 0 3\r\n12 \r\nincr n 1\r\nget n\r\n",
    b"set n 0 0 3\r\n012\r\nincr n 1\r\n",
    b"set n 0 0 0\r\n\r\nincr n 1\r\n",
    b"set n 7 0 1\r\n9\r\nincr n 1\r\nget n\r\n",
    b"incr nope 1\r\ndecr nope 1\r\n",
    b"delete a 5\r\n", b"set a 0 0 1\r\nx\r\ndelete a 0\r\ndelete a\r\n",
    b"touch a x\r\n", b"gat x a\r\n", b"flush_all x\r\n", b"verbosity\r\n",
    b"verbosity 1 noreply\r\nverbosity 1\r\n",
    b"stats foo\r\n", b"stats reset\r\n",
    b"set a 0 0 1\r\nx\r\nincr a 1\r\n",
    b"set big 0 0 1048577\r\n" + b"a" * 1048577 + b"\r\nget big\r\n",
    b"set big 0 0 1\r\nq\r\nset big 0 0 1048577\r\n" + b"a" * 1048577 + b"\r\nget big\r\n",
    b"set a 0 0 1\r\nx\r\nadd a 0 0 1048577 noreply\r\n" + b"a" * 1048577 + b"\r\nget a\r\n",
    b"set a 0 0 2000000 noreply\r\n" + b"b" * 2000002 + b"get a\r\n",
    b"cas a 0 0 1 x\r\nz\r\n",
    b"cas a 0 0 1 1\r\nz\r\n",
    b"set a 0 0 1\r\nq\r\ngets a\r\n",
    b"set n 5 -1 1\r\n5\r\nget n\r\ntouch n -1\r\n",
    b"set n 5 100 1\r\n5\r\ntouch n 10\r\ntouch n -1\r\nget n\r\n",
    b"set a 3 0 1\r\nx\r\nadd a 0 0 1\r\ny\r\nadd b 0 -1 1\r\ny\r\nget a b\r\n",
    b"replace a 0 0 1\r\ny\r\nset a 0 0 1\r\nx\r\nreplace a 9 0 1\r\ny\r\nget a\r\n",
    b"append zz 0 0 1\r\nx\r\nset a 4 0 1\r\nx\r\nprepend a 0 0 1\r\ny\r\nappend a 1 0 2\r\nzz\r\nget a\r\n",
    b"flush_all noreply\r\nget a\r\n",
    b"get " + b"k" * 251 + b"\r\n",
    b"x" * 3000 + b"\r\n",
    b"set a 0 0 1 \r\nx\r\n",
    b"set  a  0 0 1\r\nx\r\nget a\r\n",
    b"set a 0 0 1\nx\r\nget a\n",
    b"incr\r\n", b"touch a\r\n", b"delete\r\n", b"get a b c\r\n",
    b"set a -1 0 1\r\nx\r\n",
    b"gats 100 a\r\n", b"set a 1 0 1\r\nx\r\ngat 100 a\r\ngats 0 a b\r\n",
    b"delete a noreply\r\nget a\r\n",
    b"quit\r\nget a\r\n",
    b"set a 0 0 1\r\nx\r\nget a a\r\n",
    b"flush_all 0 noreply\r\nflush_all 0\r\nflush_all\r\n",
    b"set a 0 0 1 noreply\r\nx\r\nadd a 0 0 1 noreply\r\ny\r\nincr a 1 noreply\r\ntouch a 1 noreply\r\nget a\r\n",
    b"set c 0 0 1\r\n1\r\ngets c\r\ncas c 0 0 1 999999\r\n2\r\n",
    b"\x00\x01\x02\xff\r\n",
    b"get a\r\n\r\n\r\nget a\r\n",
    # incr/decr read the stored value with strtoull: white space, a sign, leading zeros,
    # then the end, white space or NUL; results are padded to the stored length.
    b"set n 0 0 4\r\n\t\x0b\x0c5\r\nincr n 1\r\nget n\r\n",
    b"set n 0 0 3\r\n\r\n5\r\nincr n 1\r\nget n\r\n",
    b"set n 0 0 3\r\n +5\r\nincr n 1\r\nget n\r\n",
    b"set n 0 0 2\r\n-0\r\nincr n 1\r\nget n\r\n",
    b"set n 0 0 5\r\n5\x00abc\r\nincr n 1\r\nget n\r\n",
    b"set n 0 0 5\r\n5\x0babc\r\ndecr n 1\r\nget n\r\n",
    b"set n 0 0 31\r\n" + b"0" * 30 + b"7\r\nincr n 1\r\nget n\r\n",
    b"set n 0 0 41\r\n00000000000000000000018446744073709551615\r\nincr n 1\r\nget n\r\n",
    b"set n 0 0 21\r\n-18446744073709551615\r\nincr n 1\r\nget n\r\n",
    b"set n 0 0 20\r\n-9223372036854775809\r\nincr n 1\r\nget n\r\n",
    b"set n 0 0 20\r\n-9223372036854775808\r\nincr n 1\r\n",
    b"set n 0 0 3\r\n+-5\r\nincr n 1\r\nset n 0 0 3\r\n+ 5\r\nincr n 1\r\n",
    b"set n 0 0 2\r\n\x005\r\nincr n 1\r\nset n 0 0 3\r\n0x5\r\nincr n 1\r\n",
    b"set n 0 0 23\r\n99999999999999999999999\r\nincr n 1\r\n",
    b"set n 2 0 41\r\n9" + b" " * 40 + b"\r\nincr n 1\r\nget n\r\n",
    b"set n 0 0 200\r\n1" + b" " * 199 + b"\r\ndecr n 1\r\nget n\r\n",
    b"set n 0 0 4000\r\n" + b"0" * 3999 + b"9\r\nincr n 1\r\nget n\r\n",
    # ... and the delta the same way; a line ends at its first NUL.
    b"set n 0 0 2\r\n10\r\nincr n +1\r\ndecr n -0\r\nincr n \x0b1\r\ndecr n \t\x0c1\r\nget n\r\n",
    b"set n 0 0 2\r\n10\r\nincr n 1\t\r\ndecr n 1\x0b\r\nincr n 1\x00x\r\ndecr n 1\rx\r\n",
    b"set n 0 0 2\r\n10\r\nincr n 0000000000000000000000000000003\r\n",
    b"set n 0 0 2\r\n10\r\nincr n -18446744073709551615\r\nincr n -9223372036854775809\r\n",
    b"set n 0 0 2\r\n10\r\ndecr n -9223372036854775808\r\nincr n +\r\nincr n -\r\nincr n +-1\r\n",
    b"set n 0 0 2\r\n10\r\nincr n -5\r\ndecr n -1\r\nincr n 0x1\r\nget n\r\n",
    b"set n 0 0 2\r\n10\r\nincr n \x001\r\nincr n\x00 1\r\nget n\x00 zz\r\n",
    b"set n 0 0 2\r\n10\r\nincr n 1 noreply\x00 junk\r\ntouch n 0\x00x\r\n\x00get n\r\nget n\r\n",
    b"set n 0 0 1 noreply\x00\r\nx\r\nset z 0 0 3\r\na\x00b\r\nget n z\r\n",
    # A cas unique is read like a delta (none of these match; the refused ones are errors).
    b"set n 0 0 1\r\nx\r\ncas n 0 0 1 +99999999999\r\ny\r\ncas n 0 0 1 \x0b\t99999999999\r\ny\r\n"
    + b"cas n 0 0 1 -0\r\ny\r\ncas n 0 0 1 000000000000000000000000099999999999\r\ny\r\n"
    + b"cas n 0 0 1 -1\r\ny\r\ncas n 0 0 1 1x\r\ny\r\ncas n 0 0 1 18446744073709551616\r\ny\r\n",
    # Commands arriving slowly, a few bytes at a time, are answered as if sent at once.
    (b"se", b"t n 0 0 2\r", b"\n1", b"0\r\ninc", b"r n 5\r\n"),
    (b"get n\r\nset n 0 0 1\r\n", b"7", b"\r\n", b"incr n 2\r\nget", b" n\r\n"),
    (b"set big 0 0 1048577\r\n" + b"a" * 1000, b"a" * 1047577, b"\r\nget big\r\n"),
]


def run(port, data):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"flush_all\r\n")
    s.settimeout(1)
    buf = b""
    while not buf.endswith(b"OK\r\n"):
        buf += s.recv(100)
    parts = data if isinstance(data, tuple) else (data,)
    for i, part in enumerate(parts):
        if i:
            time.sleep(0.2)
        s.sendall(part)
    time.sleep(0.15)
    s.settimeout(0.25)
    out = b""
    try:
        while True:
            d = s.recv(1 << 20)
            if not d:
                out += b"<EOF>"
                break
            out += d
    except OSError:
        pass
    s.close()
    return re.sub(rb"(VALUE \S+ \d+ \d+) \d+", rb"\1 <cas>", out)


def main():
    a, b = int(sys.argv[1]), int(sys.argv[2])
    diffs = 0
    for case in CASES:
        ra, rb = run(a, case), run(b, case)
        same = ra == rb
        diffs += not same
        shown = b"|".join(case) if isinstance(case, tuple) else case
        print(("same" if same else "DIFF"), repr(shown[:60]))
        if not same:
            print("   A:", repr(ra[:200]))
            print("   B:", repr(rb[:200]))
    print(f"{len(CASES) - diffs}/{len(CASES)} cases identical")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
