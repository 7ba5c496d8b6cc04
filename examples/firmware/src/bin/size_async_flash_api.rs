//! Size probe: the whole API of a cache persisted on NOR flash through the async front end
//! (`AsyncPersistent` over the async flash traits, write-through), shared through an
//! `AsyncSharedCache` and polled to completion with a no-op waker (no executor linked):
//! the Django calls the async cache has (`get`, `set`, `add`, `incr`, ...) awaited one by
//! one, the rest through `with`. The flash is 4 KiB of RAM-backed NOR in a `static`
//! (behind `AsyncRamFlash`, which yields once per operation), the cache itself on the
//! stack, as in the blocking probe (`size_flash`). Build with
//! `--no-default-features --release`.
#![no_std]
#![no_main]

use core::future::Future;
use core::hint::black_box;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use static_cell::ConstStaticCell;
use tickcache::flash::{AsyncPersistent, Policy};
use tickcache::{AsyncSharedCache, Config, Table, Timeout, Wrap32};

#[path = "../probe.rs"]
mod probe;
#[path = "../ramflash.rs"]
mod ramflash;
#[path = "../whole_api.rs"]
mod whole_api;

type Flash = ramflash::RamFlash<4096>;

fn ticks() -> u32 {
    black_box(0)
}

/// Polls `f` until it is ready (the flash hands control back once per operation).
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
    // The flash in a static of its own, initialised at compile time (zero bytes, so `.bss`
    // and no start-up code, as a real flash).
    static FLASH: ConstStaticCell<Flash> = ConstStaticCell::new(Flash::new());
    let Some(flash) = FLASH.try_take() else {
        probe::finish(0xFFFF_FFFF)
    };
    let score = run(async {
        let Ok(backend) = AsyncPersistent::<_, 16, 24, 16>::open(
            ramflash::AsyncRamFlash(flash),
            0..4096,
            Table::new(),
            Policy::WriteThrough,
        )
        .await
        else {
            return 0xFFFF_FFFF;
        };
        let cache = AsyncSharedCache::new(
            backend.into_cache(Wrap32::new(1000, ticks as fn() -> u32), Config::new()),
        );
        let key: &str = black_box("key");
        let t = Timeout::Secs(black_box(60));
        let mut score = 0u32;
        score += u32::from(cache.set(key, &black_box(5u32), t).await.is_ok());
        score += cache.get::<u32>(key).await.ok().flatten().unwrap_or(0);
        score += u32::from(cache.add(key, &black_box(6u32), t).await.unwrap_or(false));
        score += u32::from(cache.has_key(key).await.unwrap_or(false));
        score += u32::from(cache.touch(key, t).await.unwrap_or(false));
        score += cache.incr(key, black_box(2)).await.unwrap_or(0) as u32;
        score += cache.decr(key, black_box(1)).await.unwrap_or(0) as u32;
        score += cache
            .get_or_set(key, || black_box(3u32), t)
            .await
            .unwrap_or(0);
        score += u32::from(cache.delete(key).await.unwrap_or(false));
        score += u32::from(cache.clear().await.is_ok());
        score += u32::from(cache.close().await.is_ok());
        // The rest of the API (raw, batch and version calls) inside one locked call.
        score += cache
            .with(|c| Ok(whole_api::exercise(c)))
            .await
            .unwrap_or(0);
        score
    });
    probe::finish(score)
}
