#!/usr/bin/env bash
# Flash and RAM that tickcache adds to a firmware: each size probe (src/bin/size_*.rs) minus
# the bare skeleton (size_base), built for thumbv7em-none-eabihf with opt-level "s", LTO,
# defmt off. Prints a markdown table; with --check, fails when a figure grew more than 10%
# above the one recorded in size-budget.txt.
set -euo pipefail
cd "$(dirname "$0")"
target=thumbv7em-none-eabihf
cargo build -q --release --no-default-features --bins --target "$target"
dir="target/$target/release"
size_tool=$(command -v arm-none-eabi-size || command -v llvm-size || true)
[ -n "$size_tool" ] || { echo "need arm-none-eabi-size (binutils-arm-none-eabi) or llvm-size" >&2; exit 2; }

# flash = .text + .rodata + .data (its initializer lives in flash); ram = .data + .bss
measure() {
    "$size_tool" -A "$dir/$1" | awk '
        $1 == ".text" || $1 == ".rodata" { flash += $2 }
        $1 == ".data" { flash += $2; ram += $2 }
        $1 == ".bss" || $1 == ".uninit" { ram += $2 }
        END { print flash, ram }'
}
read -r base_flash base_ram < <(measure size_base)
status=0
echo "| probe | flash bytes added | RAM bytes added |"
echo "|---|---|---|"
for probe in $(ls src/bin | sed -n 's/^\(size_[a-z_]*\)\.rs$/\1/p' | grep -v '^size_base$'); do
    read -r flash ram < <(measure "$probe")
    df=$((flash - base_flash)); dr=$((ram - base_ram))
    echo "| ${probe#size_} | $df | $dr |"
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
exit $status
