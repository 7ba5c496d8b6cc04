//! Stack painting: fill the unused stack with a pattern, run a workload, find the lowest
//! word the pattern no longer holds.

const PAINT: u32 = 0xDEAD_BEEF;
/// How far below the caller's stack pointer to paint, at most.
const SPAN: usize = 8 * 1024;

extern "C" {
    /// End of `.bss` and `.uninit`, from cortex-m-rt's linker script.
    static __sheap: u32;
}

/// Runs `f` and returns the deepest stack use below this function's frame, in bytes.
#[inline(never)]
pub fn deepest<R>(f: impl FnOnce() -> R) -> u32 {
    let sp = cortex_m::register::msp::read() as usize;
    let top = (sp - 64) & !3; // leave this frame alone
                              // Never below the end of the statics (cortex-m-rt's `__sheap`), whatever the span.
                              // Only the address of the linker symbol is taken, never its value.
    let statics_end = core::ptr::addr_of!(__sheap) as usize;
    let bottom = top.saturating_sub(SPAN).max((statics_end + 3) & !3);
    // SAFETY: [bottom, top) lies below the live stack pointer and above the statics, inside
    // RAM, and nothing but the stack of the call below can use it; volatile writes keep the
    // paint from being elided.
    unsafe {
        let mut p = bottom;
        while p < top {
            core::ptr::write_volatile(p as *mut u32, PAINT);
            p += 4;
        }
    }
    core::hint::black_box(f());
    let mut p = bottom;
    // SAFETY: the same words as above, read back after the workload returned.
    while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    (top - p) as u32
}
