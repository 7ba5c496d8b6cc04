//! Size probe: the whole API of the memory cache, every method called with inputs the
//! compiler cannot see, on a cache whose table lives in a `static` of its own.
//! Build with `--no-default-features --release`.
#![no_std]
#![no_main]

use core::hint::black_box;

use tickcache::{Cache, Config, Table, Wrap32};

#[path = "../probe.rs"]
mod probe;
#[path = "../whole_api.rs"]
mod whole_api;

fn ticks() -> u32 {
    black_box(0)
}

#[cortex_m_rt::entry]
fn main() -> ! {
    // The table in a static of its own (zero bytes, so `.bss`); the cache borrows it.
    let Some(table) = cortex_m::singleton!(: Table<16, 24, 16> = Table::new()) else {
        probe::finish(0xFFFF_FFFF)
    };
    let mut cache: Cache<_, _, 24> = Cache::new(
        Wrap32::new(1000, ticks as fn() -> u32),
        table,
        Config::new(),
    );
    let score = whole_api::exercise(&mut cache);
    probe::finish(score)
}
