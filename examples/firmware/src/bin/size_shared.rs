//! Size probe: the basic workload (`set`, `get`, `delete` of a `u32`) through a `static`
//! blocking `SharedCache` (critical section). Build with `--no-default-features --release`.
#![no_std]
#![no_main]

use core::hint::black_box;

use tickcache::{Cache, Config, SharedCache, Table, Timeout, Wrap32};

#[path = "../probe.rs"]
mod probe;

fn ticks() -> u32 {
    black_box(0)
}

static CACHE: SharedCache<Wrap32<fn() -> u32>, Table<16, 24, 16>, 24> = SharedCache::new(
    Cache::new(Wrap32::new(1000, ticks), Table::new(), Config::new()),
);

#[cortex_m_rt::entry]
fn main() -> ! {
    let key: &str = black_box("key");
    let mut score = u32::from(
        CACHE
            .with(|c| c.set(key, &black_box(5u32), Timeout::Secs(black_box(60))))
            .is_ok(),
    );
    score += CACHE
        .with(|c| c.get::<u32>(key))
        .ok()
        .flatten()
        .unwrap_or(0);
    score += u32::from(CACHE.with(|c| c.delete(key)) == Ok(true));
    probe::finish(score)
}
