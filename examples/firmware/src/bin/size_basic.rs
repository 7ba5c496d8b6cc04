//! Size probe: the calls most firmware needs (`set`, `get`, `delete` of a `u32`) on a
//! `static` memory cache. Build with `--no-default-features --release`.
#![no_std]
#![no_main]

use core::hint::black_box;

use tickcache::{Config, MemCache, SharedCache, Table, Timeout, Wrap32};

#[path = "../probe.rs"]
mod probe;

fn ticks() -> u32 {
    black_box(0)
}

static CACHE: SharedCache<Wrap32<fn() -> u32>, Table<16, 24, 16>, 24> = SharedCache::new(
    MemCache::new(Wrap32::new(1000, ticks), Table::new(), Config::new()),
);

#[cortex_m_rt::entry]
fn main() -> ! {
    let key: &str = black_box("key");
    let score = CACHE.lock(|c| {
        let mut score = u32::from(
            c.set(key, &black_box(5u32), Timeout::Secs(black_box(60)))
                .is_ok(),
        );
        score += c.get::<u32>(key).ok().flatten().unwrap_or(0);
        score += u32::from(c.delete(key) == Ok(true));
        score
    });
    probe::finish(score)
}
