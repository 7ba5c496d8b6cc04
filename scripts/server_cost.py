#!/usr/bin/env python3
"""Server cost per request, independent of how fast the load runs: CPU time, system calls
by kind and context switches of one server process, divided by the requests it served in
the same window.

    scripts/server_cost.py PID PORT SECS -- LOAD COMMAND...

Starts LOAD COMMAND (e.g. tickcache-load against PORT), waits one second (the load stores
its keys and connects), then for SECS seconds counts, for the process PID and all its
threads:
- requests: `cmd_get` + `cmd_set` from the server's `stats` (read on PORT before and after);
- CPU: the threads' run time (`/proc/PID/task/*/schedstat`), split into user and system
  time (`/proc/PID/task/*/stat`, clock ticks);
- how often its threads blocked (`sleeps`, voluntary context switches) and were
  preempted (involuntary ones), from `/proc/PID/task/*/status`, and the same for its
  busiest thread (the worker, with one worker thread) with its share of a CPU: the
  process totals include helper threads (memcached's LRU maintainer wakes hundreds of
  times a second);
- the load command's CPU time per request too (its threads' run time);
- system calls by kind and context switches: `perf stat` tracepoints over the window
  (needs perf with access to the syscall tracepoints, e.g. as root; `PERF=0` leaves
  them out, and with them perf's own cost on every system call; `RECORD=FILE` samples
  the server's stacks into FILE with `perf record` instead, for `perf report`, and
  adds the sampled user-space time per request, `user_ns` (code, libc and other
  libraries; not the kernel), with the `TOP` (default 6) costliest user-space functions,
  `sym:NAME=NS`; the samples are of `cpu-clock`, so they work without hardware counters,
  and the same code shows where it stalls: a function whose time per request grows with
  more threads while its instructions do not is waiting for memory).
Prints one line `key=value ...` of per-request figures. Linux only.
"""

import ast
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

# Samples a second of `RECORD`.
FREQ = 4000

SYSCALLS = [
    "read",
    "recvfrom",
    "recvmsg",
    "write",
    "writev",
    "sendto",
    "sendmsg",
    "epoll_wait",
    "epoll_pwait",
    "epoll_ctl",
    "futex",
]


def stats(port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"stats\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    out = {}
    for line in data.decode().splitlines():
        parts = line.split(" ")
        if len(parts) == 3 and parts[0] == "STAT":
            out[parts[1]] = parts[2]
    return int(out.get("cmd_get", 0)) + int(out.get("cmd_set", 0))


def cpu(pid):
    """(run ns, user ticks, system ticks, voluntary and involuntary context switches) over
    the process's threads, then each thread's (run ns, voluntary, involuntary) by id."""
    run = user = system = vol = invol = 0
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                t_run = int(f.read().split()[0])
                run += t_run
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
                user += int(fields[11])
                system += int(fields[12])
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                t_vol = t_invol = 0
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        t_vol = int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        t_invol = int(line.split()[1])
                vol += t_vol
                invol += t_invol
                threads[tid] = (t_run, t_vol, t_invol)
        except FileNotFoundError:
            pass
    return run, user, system, vol, invol, threads


def machine():
    """Busy and idle CPU time of the whole machine so far (clock ticks, `/proc/stat`):
    idle includes iowait."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]
    return sum(ticks[:8]) - idle, idle


def window(pid, port, secs, load, control):
    """Prints the requests served and the CPU used by the server and the load over SECS
    seconds; with `control` (a directory holding perf's control and acknowledgement
    fifos), perf counts over the same span."""
    def perf(command):
        if control:
            with open(os.path.join(control, "ctl"), "w") as ctl:
                ctl.write(command + "\n")
            with open(os.path.join(control, "ack")) as ack:
                ack.readline()

    perf("enable")
    r0, c0, l0, m0 = stats(port), cpu(pid), cpu(load), machine()
    time.sleep(secs)
    r1, c1, l1, m1 = stats(port), cpu(pid), cpu(load), machine()
    perf("disable")
    print(repr((r0, r1, c0, c1, l0, l1, m0, m1)))


def main():
    if len(sys.argv) == 7 and sys.argv[1] == "window":
        window(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]),
               sys.argv[6])
        return
    if len(sys.argv) < 6 or sys.argv[4] != "--":
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    pid, port, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    load = subprocess.Popen(sys.argv[5:], stdout=subprocess.DEVNULL)
    control = tempfile.mkdtemp()
    try:
        time.sleep(1.0)
        events = ["raw_syscalls:sys_enter", "context-switches"] + [
            f"syscalls:sys_enter_{s}" for s in SYSCALLS
        ]
        # The window is the command perf runs (this script's `window` mode); perf starts
        # with its events disabled and the window enables them around its own span, so
        # the requests, CPU time and system calls are counted over the same span.
        for fifo in ("ctl", "ack"):
            os.mkfifo(os.path.join(control, fifo))
        cmd = [sys.executable, __file__, "window", str(pid), str(port), str(secs),
               str(load.pid), ""]
        fifos = ["-D", "-1", "--control",
                 f"fifo:{control}/ctl,{control}/ack"]
        if os.environ.get("RECORD"):
            cmd[-1] = control
            cmd = ["perf", "record", "-q", "-e", "cpu-clock", "-F", str(FREQ), "-g", "-p",
                   str(pid), "-o", os.environ["RECORD"]] + fifos + ["--"] + cmd
        elif os.environ.get("PERF", "1") != "0":
            cmd[-1] = control
            cmd = ["perf", "stat", "-x", ",", "-p", str(pid), "-e", ",".join(events)] \
                + fifos + ["--"] + cmd
        perf = subprocess.run(cmd, capture_output=True, text=True)
        r0, r1, c0, c1, l0, l1, m0, m1 = ast.literal_eval(perf.stdout)
    finally:
        load.wait()
        shutil.rmtree(control, ignore_errors=True)
    # The two `stats` commands themselves are not counted as requests.
    reqs = max(r1 - r0, 1)
    hz = os.sysconf("SC_CLK_TCK")
    counts = {}
    for line in perf.stderr.splitlines():
        f = line.split(",")
        if len(f) > 2 and f[0].strip().isdigit():
            name = f[2].replace("syscalls:sys_enter_", "").replace("raw_syscalls:sys_enter", "syscalls")
            counts[name] = int(f[0])
    fields = [
        f"requests={reqs}",
        f"req_per_s={reqs / secs:.0f}",
        f"cpu_us={(c1[0] - c0[0]) / 1e3 / reqs:.2f}",
        f"user_us={(c1[1] - c0[1]) * 1e6 / hz / reqs:.2f}",
        f"sys_us={(c1[2] - c0[2]) * 1e6 / hz / reqs:.2f}",
    ]
    fields.append(f"sleeps={(c1[3] - c0[3]) / reqs:.3f}")
    fields.append(f"preempted={(c1[4] - c0[4]) / reqs:.3f}")
    fields.append(f"cpu_share={(c1[0] - c0[0]) / 1e9 / secs:.2f}")
    # The thread that ran most (the worker, with one worker thread): its share of a CPU,
    # how often it blocked per request and how often a second it was preempted.
    busy = [(t1[0] - c0[5][tid][0], t1[1] - c0[5][tid][1], t1[2] - c0[5][tid][2])
            for tid, t1 in c1[5].items() if tid in c0[5]]
    if busy:
        run, vol, invol = max(busy)
        fields.append(f"busiest_thread_share={run / 1e9 / secs:.2f}")
        fields.append(f"busiest_thread_sleeps={vol / reqs:.4f}")
        fields.append(f"busiest_thread_preempted_per_s={invol / secs:.0f}")
    fields.append(f"load_cpu_us={(l1[0] - l0[0]) / 1e3 / reqs:.2f}")
    # How the machine's CPUs were used over the window, in CPUs: the load generator's share,
    # what other processes took (all busy time less the server's and the load's), and what
    # stayed idle. A closed-loop run is limited by the server and the load only when
    # `idle_cpus` is near 0 and `other_cpus` small.
    busy = (m1[0] - m0[0]) / hz / secs
    load_share = (l1[0] - l0[0]) / 1e9 / secs
    fields.append(f"load_share={load_share:.2f}")
    fields.append(f"other_cpus={max(busy - load_share - (c1[0] - c0[0]) / 1e9 / secs, 0):.2f}")
    fields.append(f"idle_cpus={(m1[1] - m0[1]) / hz / secs:.2f}")
    for name in ["syscalls", "context-switches"] + SYSCALLS:
        n = counts.get(name, 0)
        if n or name in ("syscalls", "context-switches"):
            fields.append(f"{name}={n / reqs:.3f}")
    if os.environ.get("RECORD"):
        fields += user_profile(os.environ["RECORD"], reqs)
    print(" ".join(fields))


def user_profile(data, reqs):
    """User-space time per request from a `perf record` file: the total and the costliest
    functions (nanoseconds per request)."""
    report = subprocess.run(
        ["perf", "report", "-i", data, "-n", "--no-children", "--sort", "dso,sym", "-g",
         "none", "-t", "\t"], capture_output=True, text=True).stdout
    ns_per_sample = 1e9 / FREQ
    total, syms = 0, []
    for line in report.splitlines():
        f = line.split("\t")
        if line.startswith("#") or len(f) < 4 or "[k]" in f[3]:
            continue
        n = int(f[1].strip())
        total += n
        syms.append((n, f[3].replace("[.]", "").strip().replace(" ", "_")))
    out = [f"user_ns={total * ns_per_sample / reqs:.0f}"]
    for n, name in sorted(syms, reverse=True)[: int(os.environ.get("TOP", "6"))]:
        out.append(f"sym:{name}={n * ns_per_sample / reqs:.0f}")
    return out


if __name__ == "__main__":
    main()
