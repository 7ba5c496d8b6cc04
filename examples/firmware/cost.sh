#!/usr/bin/env bash
# Instructions per cache operation on Cortex-M4 and Cortex-M0: runs src/bin/cost.rs (feature
# `cost`, opt-level "s", LTO) for thumbv7em-none-eabihf and thumbv6m-none-eabi under QEMU
# with -icount shift=0, and prints a markdown table: tickcache beside heapless and uluru at
# N = 64 and N = 1,024 entries, with the ratio tickcache / heapless.
#
# Method (details in src/bin/cost.rs): with -icount shift=0 QEMU's virtual clock moves 1 ns
# per guest instruction and SysTick on mps2-an386 ticks at 25 MHz, so one tick is 40
# instructions. Each figure is 1,024 calls timed in one loop minus the same loop with an
# empty operation, divided by 1,024: a fraction of an instruction, the same on every run.
# Both builds run on mps2-an386 (4 MiB RAM; QEMU's only Cortex-M0 board, the micro:bit, has
# 16 KiB): the M4 core executes the ARMv6-M build's instructions one for one (checked: the M0
# build's N = 64 figures on the micro:bit match within 0.1 instruction).
#
# A second table, "persistent backend, N = 64": the same calls on a cache over
# `flash::Persistent` (write-through) on the RAM NOR flash, beside the memory cache's
# figures. Its gets touch no flash; its set overwrite and incr include the RAM flash's
# write of one record and a share of compaction. --check does not check these rows.
#
# --check fails when a tickcache figure grew more than 10% above cost-budget.txt, or when
# any tickcache operation at N = 1,024 costs more than 1.5 times what it costs at N = 64.
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# Each core twice: the memory cache and its peers (feature `cost`), then the persistent
# subject (feature `cost-persistent`, whose build adds it), keeping only its lines.
run_cost() { # target features filter
    cargo build -q --release --no-default-features --features "$2" --bin cost --target "$1"
    local log
    log=$(mktemp)
    if ! timeout "${QEMU_TIMEOUT:-300}" qemu-system-arm -machine mps2-an386 -cpu cortex-m4 \
        -nographic -icount shift=0 -semihosting-config enable=on,target=native \
        -kernel "target/$1/release/cost" >"$log"; then
        grep -v '^cost ' "$log" >&2 || true
        rm -f "$log"
        echo "the cost firmware for $1 ($2) failed" >&2
        exit 1
    fi
    grep -E "$3" "$log" >>"$out" || true
    rm -f "$log"
}
for target in thumbv7em-none-eabihf thumbv6m-none-eabi; do
    run_cost "$target" cost '.'
    run_cost "$target" cost-persistent '^cost [^ ]+ persistent '
done

awk -v check="${1:-}" -v budget_file=cost-budget.txt '
    BEGIN {
        while ((getline line < budget_file) > 0)
            if (split(line, f, " ") == 2 && f[1] !~ /^#/) budget[f[1]] = f[2]
    }
    $1 == "cost" { v[$2, $3, $4, $5] = $6; next }
    END {
        nops = split("get_hit get_miss set_overwrite set_evicting set_evicting_one delete incr", ops, " ")
        label["get_hit"] = "get hit"; label["get_miss"] = "get miss"
        label["set_overwrite"] = "set overwrite"
        label["set_evicting"] = "set evicting (tickcache: cull a third, `Table::new()`)"
        label["set_evicting_one"] = "set evicting (tickcache: 1 per insert, `with_culling(N, N)`)"
        label["delete"] = "delete"; label["incr"] = "incr"
        split("m4 m0", cores, " "); split("64 1024", sizes, " ")
        printf "| operation | N |"
        for (c = 1; c <= 2; c++) {
            C = toupper(cores[c])
            printf " %s tickcache | %s heapless | %s uluru | %s tickcache / heapless |", C, C, C, C
        }
        printf "\n|---|---:|"
        for (c = 1; c <= 8; c++) printf "---:|"
        printf "\n"
        for (o = 1; o <= nops; o++) for (s = 1; s <= 2; s++) {
            op = ops[o]; n = sizes[s]
            printf "| %s | %s |", label[op], (n == 1024 ? "1,024" : n)
            for (c = 1; c <= 2; c++) {
                core = cores[c]
                t = v[core, "tickcache", op, n]
                # The peers have one eviction strategy: the same figure on both rows.
                peer_op = (op == "set_evicting_one" ? "set_evicting" : op)
                h = v[core, "heapless", peer_op, n]; u = v[core, "uluru", peer_op, n]
                printf " %s | %s | %s | %s |", (t == "" ? "-" : sprintf("%.1f", t)),
                    (h == "" ? "-" : sprintf("%.1f", h)), (u == "" ? "-" : sprintf("%.1f", u)),
                    (t == "" || h == "" ? "-" : sprintf("%.2f×", t / h))
            }
            printf "\n"
        }
        printf "\npersistent backend, N = 64 (`flash::Persistent`, write-through, on the RAM flash)\n\n"
        printf "| operation | M4 | M4 memory cache | M0 | M0 memory cache |\n|---|---:|---:|---:|---:|\n"
        np = split("get_hit get_miss set_overwrite incr", pops, " ")
        plabel["get_hit"] = "get hit (no flash)"; plabel["get_miss"] = "get miss (no flash)"
        plabel["set_overwrite"] = "set overwrite (with the RAM flash write)"
        plabel["incr"] = "incr (with the RAM flash write)"
        for (o = 1; o <= np; o++) {
            op = pops[o]
            printf "| %s |", plabel[op]
            for (c = 1; c <= 2; c++) {
                p = v[cores[c], "persistent", op, 64]; t = v[cores[c], "tickcache", op, 64]
                printf " %s | %s |", (p == "" ? "-" : sprintf("%.1f", p)),
                    (t == "" ? "-" : sprintf("%.1f", t))
            }
            printf "\n"
        }
        fflush()
        if (check != "--check") exit 0
        status = 0
        for (c = 1; c <= 2; c++) for (o = 1; o <= nops; o++) {
            core = cores[c]; op = ops[o]
            for (s = 1; s <= 2; s++) {
                n = sizes[s]; name = core "_" op "_" n; now = v[core, "tickcache", op, n]
                if (now == "") { print "no figure for " name > "/dev/stderr"; status = 1; continue }
                if (!(name in budget)) {
                    print "no recorded " name " in cost-budget.txt" > "/dev/stderr"; status = 1
                } else if (now > budget[name] * 1.1) {
                    printf "%s grew to %.2f instructions, more than 10%% over the recorded %s\n",
                        name, now, budget[name] > "/dev/stderr"
                    status = 1
                }
            }
            small = v[core, "tickcache", op, 64]; large = v[core, "tickcache", op, 1024]
            if (small != "" && large != "" && large > small * 1.5) {
                printf "%s %s at N = 1,024 costs %.2f instructions, %.1f times N = 64 (%.2f): more than 1.5 times\n",
                    toupper(core), op, large, large / small, small > "/dev/stderr"
                status = 1
            }
        }
        exit status
    }' "$out"
