#!/usr/bin/env python3
"""RSS of a memcached-protocol server while many clients pipeline commands without reading.

    scripts/pipeline_memory.py PID PORT [CONNS] [SECONDS]

Stores one item of 1,000,000 bytes (`big`), then opens CONNS connections (default 1000); each writes
`stats` and `get big` requests until its socket no longer accepts them (the server stopped
reading it) or SECONDS pass (default 5), never reading a reply. Prints the server's RSS
(`ps -o rss`, KiB) before, during (the peak while the clients hold their backlog) and
1 s after they closed, as one line of `key=value` pairs. Loopback only.
"""
import socket
import subprocess
import sys
import time


def rss_kib(pid):
    out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


def main():
    pid, port = int(sys.argv[1]), int(sys.argv[2])
    conns = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 5.0
    addr = ("127.0.0.1", port)
    big = b"b" * 1_000_000
    s = socket.create_connection(addr)
    s.sendall(b"set big 0 0 %d\r\n" % len(big) + big + b"\r\n")
    reply = b""
    while not reply.endswith(b"\r\n"):
        reply += s.recv(64)
    assert reply == b"STORED\r\n", reply
    time.sleep(0.5)
    before = rss_kib(pid)
    chunk = b"stats\r\nget big\r\n" * 4096
    socks = []
    for _ in range(conns):
        c = socket.create_connection(addr)
        c.setblocking(False)
        socks.append(c)
    open_ = list(socks)
    peak = before
    end = time.time() + seconds
    sent = 0
    sampled = 0.0
    while open_ and time.time() < end:
        if time.time() - sampled > 0.2:
            peak = max(peak, rss_kib(pid))
            sampled = time.time()
        still = []
        for c in open_:
            try:
                sent += c.send(chunk)
                still.append(c)
            except BlockingIOError:
                pass  # this client is no longer read: leave it stalled
            except OSError:
                pass
        open_ = still
    # Hold the backlog a moment, sampling.
    for _ in range(10):
        peak = max(peak, rss_kib(pid))
        time.sleep(0.1)
    stalled = conns - len(open_)
    for c in socks:
        c.close()
    time.sleep(1.0)
    after = rss_kib(pid)
    s.close()
    print(
        f"conns={conns} stalled={stalled} sent_mib={sent >> 20} "
        f"rss_before_kib={before} rss_peak_kib={peak} rss_after_kib={after} "
        f"growth_kib={peak - before}"
    )


if __name__ == "__main__":
    main()
