#!/usr/bin/env bash
# Cargo runner: boots the firmware in QEMU (the board follows the target in the ELF's path),
# decodes its defmt log, and exits with the firmware's own status.
set -uo pipefail
elf="$1"
case "$elf" in
    *thumbv6m-none-eabi*) machine=(-machine microbit -cpu cortex-m0) ;;
    *) machine=(-machine mps2-an386 -cpu cortex-m4) ;;
esac
qemu=(timeout "${QEMU_TIMEOUT:-120}" qemu-system-arm "${machine[@]}" -nographic
    -semihosting-config enable=on,target=native -kernel "$elf")
if command -v defmt-print >/dev/null; then
    "${qemu[@]}" | defmt-print -e "$elf"
    exit "${PIPESTATUS[0]}"
else
    echo "defmt-print not found: install it with 'cargo install --locked defmt-print'" >&2
    exit 3
fi
