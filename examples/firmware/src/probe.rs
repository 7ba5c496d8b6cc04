//! The skeleton every size probe shares: reset handler, exit through semihosting, a panic
//! handler. Probes differ only in what `work` does, so their size difference is what that
//! work links in.

/// Ends the program with a status derived from `value`, so nothing computed is dead code.
pub fn finish(value: u32) -> ! {
    use cortex_m_semihosting::debug;
    if core::hint::black_box(value) == 0xFFFF_FFFF {
        debug::exit(debug::EXIT_FAILURE);
    } else {
        debug::exit(debug::EXIT_SUCCESS);
    }
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    cortex_m_semihosting::debug::exit(cortex_m_semihosting::debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
