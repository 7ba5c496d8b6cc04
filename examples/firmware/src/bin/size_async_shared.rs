//! Size probe: the basic workload (`set`, `get`, `delete` of a `u32`) through a `static`
//! `AsyncSharedCache` (embassy-sync's async mutex), polled to completion with a no-op waker
//! (no executor linked). Build with `--no-default-features --release`.
#![no_std]
#![no_main]

use core::future::Future;
use core::hint::black_box;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use tickcache::{AsyncSharedCache, Cache, Config, Table, Timeout, Wrap32};

#[path = "../probe.rs"]
mod probe;

fn ticks() -> u32 {
    black_box(0)
}

static CACHE: AsyncSharedCache<Wrap32<fn() -> u32>, Table<16, 24, 16>, 24> = AsyncSharedCache::new(
    Cache::new(Wrap32::new(1000, ticks), Table::new(), Config::new()),
);

/// Polls `f` until it is ready (a memory cache's calls are ready at the first poll).
fn run<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

#[cortex_m_rt::entry]
fn main() -> ! {
    let key: &str = black_box("key");
    let score = run(async {
        let mut score = u32::from(
            CACHE
                .set(key, &black_box(5u32), Timeout::Secs(black_box(60)))
                .await
                .is_ok(),
        );
        score += CACHE.get::<u32>(key).await.ok().flatten().unwrap_or(0);
        score += u32::from(CACHE.delete(key).await == Ok(true));
        score
    });
    probe::finish(score)
}
