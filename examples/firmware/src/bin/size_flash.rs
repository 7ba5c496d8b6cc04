//! Size probe: the whole API of a cache persisted on NOR flash (write-through), every
//! method called with inputs the compiler cannot see; the flash is 4 KiB of RAM-backed NOR
//! in a `static`, the cache itself on the stack. Build with `--no-default-features --release`.
#![no_std]
#![no_main]

use core::hint::black_box;

use static_cell::ConstStaticCell;
use tickcache::flash::{Persistent, Policy};
use tickcache::{Config, Table, Wrap32};

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

#[cortex_m_rt::entry]
fn main() -> ! {
    // The flash in a static of its own, initialised at compile time (zero bytes, so `.bss`
    // and no start-up code, as a real flash).
    static FLASH: ConstStaticCell<Flash> = ConstStaticCell::new(Flash::new());
    let Some(flash) = FLASH.try_take() else {
        probe::finish(0xFFFF_FFFF)
    };
    let Ok(backend) =
        Persistent::<_, 16, 24, 16>::open(flash, 0..4096, Table::new(), Policy::WriteThrough)
    else {
        probe::finish(0xFFFF_FFFF)
    };
    let mut cache = backend.into_cache(Wrap32::new(1000, ticks as fn() -> u32), Config::new());
    let score = whole_api::exercise(&mut cache);
    probe::finish(score)
}
