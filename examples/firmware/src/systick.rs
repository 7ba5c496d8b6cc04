//! SysTick as an instruction counter under QEMU's `-icount shift=0`, shared by the `cost`
//! and `masking` binaries: the counter's set-up, readings, and a loop of a known
//! instruction count to calibrate it against.

use core::hint::black_box;
use cortex_m::peripheral::{syst::SystClkSource, SYST};

/// Starts SysTick counting down from 2^24 - 1 on the core clock, wrapping, its exception
/// off.
pub fn start(syst: &mut SYST) {
    syst.disable_interrupt();
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(0x00FF_FFFF);
    syst.clear_current();
    syst.enable_counter();
}

/// Restarts SysTick counting down from `period - 1` (at most 2^24) with its exception on:
/// it fires every `period` ticks, and [`now`] no longer measures long stretches. [`start`]
/// turns it back into the free-running counter.
#[allow(dead_code)] // masking only
pub fn periodic(syst: &mut SYST, period: u32) {
    syst.disable_counter();
    syst.set_reload(period - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// The SysTick counter: 24 bits counting down, so a timed stretch must stay under 2^24
/// ticks (671 million instructions at 40 a tick).
pub fn now() -> u32 {
    SYST::get_current()
}

/// Ticks since `start` (a reading of [`now`]), modulo 2^24.
pub fn since(start: u32) -> u32 {
    start.wrapping_sub(now()) & 0x00FF_FFFF
}

/// Ticks taken by `turns` turns of a two-instruction loop (`subs`, `bne`), or `None` when
/// the loop did not run to the end; at least 1.
pub fn known_loop(turns: u32) -> Option<u32> {
    let start = now();
    let mut left = black_box(turns);
    // SAFETY: only the register given is changed; no memory is touched.
    unsafe {
        core::arch::asm!(
            "2:",
            "subs {0}, {0}, #1",
            "bne 2b",
            inout(reg) left,
            options(nomem, nostack),
        );
    }
    let ticks = since(start).max(1);
    (left == 0).then_some(ticks)
}
