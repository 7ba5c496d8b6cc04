//! Size probe: a cache persisted on async NOR flash (`AsyncPersistent`, write-through)
//! shared through an `AsyncSharedCache` (one task: `NoopRawMutex`), with the calls of the
//! basic workload plus `incr` and `close` (`set`, `get`, `incr`, `delete`, `close`), polled
//! to completion with a no-op waker (no executor linked). The flash is the RAM-backed NOR of
//! the blocking `flash` probe behind an async adapter. Build with
//! `--no-default-features --release`.
#![no_std]
#![no_main]

use core::future::Future;
use core::hint::black_box;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use embedded_storage::nor_flash::{NorFlash as _, ReadNorFlash as _};
use embedded_storage_async::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use static_cell::ConstStaticCell;
use tickcache::flash::{AsyncPersistent, Policy};
use tickcache::mutex::NoopRawMutex;
use tickcache::{AsyncSharedCache, Config, Table, Timeout, Wrap32};

#[path = "../probe.rs"]
mod probe;
#[path = "../ramflash.rs"]
mod ramflash;

type Ram = ramflash::RamFlash<4096>;

/// The RAM-backed NOR behind the async flash traits.
struct AsyncRam(&'static mut Ram);

impl ErrorType for AsyncRam {
    type Error = ramflash::RamFlashError;
}

impl ReadNorFlash for AsyncRam {
    const READ_SIZE: usize = 1;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.0.read(offset, bytes)
    }

    fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

impl NorFlash for AsyncRam {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 1024;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.0.erase(from, to)
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.0.write(offset, bytes)
    }
}

fn ticks() -> u32 {
    black_box(0)
}

/// Polls `f` until it is ready.
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
    static FLASH: ConstStaticCell<Ram> = ConstStaticCell::new(Ram::new());
    let Some(flash) = FLASH.try_take() else {
        probe::finish(0xFFFF_FFFF)
    };
    let key: &str = black_box("key");
    let score = run(async {
        let Ok(backend) = AsyncPersistent::<_, 16, 24, 16>::open(
            AsyncRam(flash),
            0..4096,
            Table::new(),
            Policy::WriteThrough,
        )
        .await
        else {
            return 0xFFFF_FFFF;
        };
        let cache: AsyncSharedCache<_, _, 24, NoopRawMutex> = AsyncSharedCache::with_raw_mutex(
            backend.into_cache(Wrap32::new(1000, ticks as fn() -> u32), Config::new()),
        );
        let mut score = u32::from(
            cache
                .set(key, &black_box(5u32), Timeout::Secs(black_box(60)))
                .await
                .is_ok(),
        );
        score += cache.get::<u32>(key).await.ok().flatten().unwrap_or(0);
        score += cache.incr(key, black_box(2)).await.unwrap_or(0) as u32;
        score += u32::from(cache.delete(key).await == Ok(true));
        score += u32::from(cache.close().await.is_ok());
        score
    });
    probe::finish(score)
}
