#!/usr/bin/env bash
# Flash and RAM that tickcache adds to a firmware: each size probe (src/bin/size_*.rs) minus
# the bare skeleton (size_base), built for thumbv7em-none-eabihf with opt-level "s", LTO,
# defmt off. Prints a markdown table; with --check, fails when a figure grew more than 10%
# above the one recorded in size-budget.txt (the figures with mem*).
#
# Almost any firmware links compiler-builtins' memcpy/memset/memclr/memmove/memcmp anyway, so
# each probe's flash is also given without them: minus the bytes of the mem* symbols
# (memcpy, memmove, memset, memcmp, bcmp, __aeabi_mem*, compiler_builtins::mem::*) that the
# probe links and the skeleton does not.
set -euo pipefail
cd "$(dirname "$0")"
target=thumbv7em-none-eabihf
cargo build -q --release --no-default-features --bins --target "$target"
dir="target/$target/release"
size_tool=$(command -v arm-none-eabi-size || command -v llvm-size || true)
[ -n "$size_tool" ] || { echo "need arm-none-eabi-size (binutils-arm-none-eabi) or llvm-size" >&2; exit 2; }
nm_tool=$(command -v arm-none-eabi-nm || command -v llvm-nm || true)
[ -n "$nm_tool" ] || { echo "need arm-none-eabi-nm (binutils-arm-none-eabi) or llvm-nm" >&2; exit 2; }

# flash = .text + .rodata + .data (its initializer lives in flash); ram = .data + .bss
measure() {
    "$size_tool" -A "$dir/$1" | awk '
        $1 == ".text" || $1 == ".rodata" { flash += $2 }
        $1 == ".data" { flash += $2; ram += $2 }
        $1 == ".bss" || $1 == ".uninit" { ram += $2 }
        END { print flash, ram }'
}

# The mem* symbols a binary links, one "size name" a line (demangled, sizes in decimal).
# Aliases (one address under several names) are listed once.
mem_symbols() {
    "$nm_tool" -S --size-sort -C -t d "$dir/$1" | awk '
        NF >= 4 {
            name = $4; for (i = 5; i <= NF; i++) name = name " " $i
            if (name ~ /^(memcpy|memmove|memset|memcmp|bcmp|__aeabi_mem[a-z0-9]*)$/ ||
                name ~ /^compiler_builtins::mem::/) {
                if (!seen[$1]++) print $2 + 0, name
            }
        }'
}
# Bytes of the mem* symbols in probe $1 that the skeleton does not link.
mem_added() {
    awk '{ size = $1; $1 = "" }
         FILENAME == ARGV[1] { base[$0] = 1; next }
         !($0 in base) { sum += size }
         END { print sum + 0 }' <(mem_symbols size_base) <(mem_symbols "$1")
}

read -r base_flash base_ram < <(measure size_base)
status=0
echo "| probe | flash bytes added | flash bytes added without mem* | RAM bytes added |"
echo "|---|---|---|---|"
for probe in $(ls src/bin | sed -n 's/^\(size_[a-z_]*\)\.rs$/\1/p' | grep -v '^size_base$'); do
    read -r flash ram < <(measure "$probe")
    df=$((flash - base_flash)); dr=$((ram - base_ram))
    dm=$((df - $(mem_added "$probe")))
    echo "| ${probe#size_} | $df | $dm | $dr |"
    if [ "${1:-}" = "--check" ]; then
        for kind in flash ram; do
            now=$([ $kind = flash ] && echo $df || echo $dr)
            recorded=$(awk -v k="${probe#size_}_$kind" '$1 == k { print $2 }' size-budget.txt)
            if [ -z "$recorded" ]; then
                echo "no recorded ${probe#size_}_$kind in size-budget.txt" >&2; status=1
            elif [ $((now * 10)) -gt $((recorded * 11)) ]; then
                echo "${probe#size_} $kind grew to $now bytes, more than 10% over the recorded $recorded" >&2
                status=1
            fi
        done
    fi
done
# A policy given to `open` as a constant decides what is linked: the write-through probes
# must not carry write-back's step of a culling insert (`Core::list_cull`, 760 bytes).
if [ "${1:-}" = "--check" ]; then
    for probe in size_flash size_async_flash size_async_flash_api; do
        if "$nm_tool" -C "$dir/$probe" | grep -q 'list_cull'; then
            echo "$probe links write-back's list_cull though it opens write-through" >&2
            status=1
        fi
    done
fi
exit $status
