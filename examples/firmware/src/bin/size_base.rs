//! Size probe: the skeleton without a cache (the baseline the other probes are measured
//! against). Build with `--no-default-features --release`.
#![no_std]
#![no_main]

#[path = "../probe.rs"]
mod probe;

#[cortex_m_rt::entry]
fn main() -> ! {
    probe::finish(core::hint::black_box(7))
}
