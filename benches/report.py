#!/usr/bin/env python3
"""Prints the README comparison table from the latest benchmark results.

Reads criterion's medians (<target>/criterion/<op>/<impl>/new/estimates.json) and the output
of benches/callgrind.sh (<target>/callgrind/instructions.tsv and ram.tsv). The target
directory is CARGO_TARGET_DIR, else ./target, else the first argument.

The ratio column is tickcache divided by the best peer; the HashMap floor has no eviction
policy and is not counted as a peer.
"""

import csv
import json
import os
import sys

PEERS = ["lru", "schnellru", "quick_cache", "heapless", "moka"]
FLOOR = "hashmap"
# (label, criterion/callgrind op, tickcache variant)
ROWS = [
    ("get hit", "get_hit", "tickcache"),
    ("get hit, value as `serde_bytes::ByteArray<32>`", "get_hit", "tickcache_bytes"),
    ("get miss", "get_miss", "tickcache"),
    ("set overwrite", "set_overwrite", "tickcache"),
    ("set overwrite, value as `serde_bytes::ByteArray<32>`", "set_overwrite", "tickcache_bytes"),
    ("set evicting, cull 1/3 (`Table::new()`)", "set_evicting", "tickcache"),
    ("set evicting, 1 per insert (`with_culling(1024, 1024)`)", "set_evicting", "tickcache_cull1"),
]


def target_dir():
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.environ.get("CARGO_TARGET_DIR", "target")


def median_ns(target, op, impl):
    path = os.path.join(target, "criterion", op, impl, "new", "estimates.json")
    try:
        with open(path) as f:
            return json.load(f)["median"]["point_estimate"]
    except (OSError, KeyError, ValueError):
        return None


def read_tsv(path):
    try:
        with open(path) as f:
            return list(csv.DictReader(f, delimiter="\t"))
    except OSError:
        return []


def fmt(x, digits):
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def ratio(mine, peers):
    known = [p for p in peers if p is not None]
    if mine is None or not known:
        return "–"
    return f"{mine / min(known):.2f}×"


def main():
    target = target_dir()
    cg = read_tsv(os.path.join(target, "callgrind", "instructions.tsv"))
    ir = {(r["op"], r["impl"]): float(r["ir_per_op"]) for r in cg}
    ram = {
        r["impl"]: float(r["bytes_per_entry"])
        for r in read_tsv(os.path.join(target, "callgrind", "ram.tsv"))
    }

    cols = ["tickcache"] + PEERS + [f"{FLOOR} (floor)"]
    print("| operation | " + " | ".join(cols) + " | tickcache / best peer |")
    print("|---|" + "---:|" * (len(cols) + 1))
    for label, op, mine in ROWS:
        for unit, get, digits in (
            ("ns", lambda o, i: median_ns(target, o, i), 1),
            ("instructions", lambda o, i: ir.get((o, i)), 0),
        ):
            mine_v = get(op, mine)
            peer_v = [get(op, p) for p in PEERS]
            cells = [fmt(mine_v, digits)] + [fmt(v, digits) for v in peer_v]
            cells.append(fmt(get(op, FLOOR), digits))
            print(f"| {label}, {unit} | " + " | ".join(cells) + f" | {ratio(mine_v, peer_v)} |")
    peer_ram = [ram.get(p) for p in PEERS]
    cells = [fmt(ram.get("tickcache"), 1)] + [fmt(v, 1) for v in peer_ram]
    cells.append(fmt(ram.get(FLOOR), 1))
    print("| RAM bytes per entry | " + " | ".join(cells) + f" | {ratio(ram.get('tickcache'), peer_ram)} |")


if __name__ == "__main__":
    main()
