//! Size probe: the calls most firmware needs (`set`, `get`, `delete` of a `u32`) on a
//! `static` memory cache. Build with `--no-default-features --release`.
#![no_std]
#![no_main]

use core::hint::black_box;

use tickcache::{Cache, Config, Table, Timeout, Wrap32};

#[path = "../probe.rs"]
mod probe;

fn ticks() -> u32 {
    black_box(0)
}

#[cortex_m_rt::entry]
fn main() -> ! {
    let key: &str = black_box("key");
    // The table in a static of its own (zero bytes, so `.bss`); the cache borrows it.
    let Some(table) = cortex_m::singleton!(: Table<16, 24, 16> = Table::new()) else {
        probe::finish(0xFFFF_FFFF)
    };
    let mut cache: Cache<_, _, 24> = Cache::new(
        Wrap32::new(1000, ticks as fn() -> u32),
        table,
        Config::new(),
    );
    let score = {
        let c = &mut cache;
        let mut score = u32::from(
            c.set(key, &black_box(5u32), Timeout::Secs(black_box(60)))
                .is_ok(),
        );
        score += c.get::<u32>(key).ok().flatten().unwrap_or(0);
        score += u32::from(c.delete(key) == Ok(true));
        score
    };
    probe::finish(score)
}
