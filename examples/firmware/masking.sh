#!/usr/bin/env bash
# How long interrupts stay masked by a shared cache call on Cortex-M4 (src/bin/masking.rs):
# builds it (opt-level "s", LTO, defmt off) and runs it under QEMU mps2-an386 with
# -icount shift=0, printing one "masking NAME INSTRUCTIONS ..." line per figure.
set -euo pipefail
cd "$(dirname "$0")"
target=thumbv7em-none-eabihf
cargo build -q --release --no-default-features --bin masking --target "$target"
timeout "${QEMU_TIMEOUT:-120}" qemu-system-arm -machine mps2-an386 -cpu cortex-m4 \
    -nographic -icount shift=0 -semihosting-config enable=on,target=native \
    -kernel "target/$target/release/masking"
