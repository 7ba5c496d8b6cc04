//! Size probe, the like-for-like peer of `size_like_heapless`: tickcache's `set`,
//! `get::<Reading>` and `delete` of a small serde struct on a memory cache whose
//! `Table<16, 24, 16>` lives in a `static` of its own. Build with
//! `--no-default-features --release`.
#![no_std]
#![no_main]

use core::hint::black_box;

use tickcache::{Cache, Config, Table, Timeout, Wrap32};

#[path = "../like.rs"]
mod like;
#[path = "../probe.rs"]
mod probe;

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
    // Never expires: the heapless map keeps its entries for good too.
    let mut score = u32::from(
        cache
            .set(like::key(), &like::reading(), Timeout::Never)
            .is_ok(),
    );
    if let Some(r) = cache.get::<like::Reading>(like::key()).ok().flatten() {
        score = score.wrapping_add(like::score(&r));
    }
    score += u32::from(cache.delete(like::key()) == Ok(true));
    probe::finish(score)
}
