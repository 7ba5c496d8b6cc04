//! Size probe: the whole API of a cache persisted on NOR flash (write-through), every
//! method called with inputs the compiler cannot see; the flash is 4 KiB of RAM-backed NOR
//! in a `static`, the cache itself on the stack. Build with `--no-default-features --release`.
#![no_std]
#![no_main]

use core::hint::black_box;

use tickcache::flash::{Persistent, Policy};
use tickcache::{Config, Key, Table, Timeout, Wrap32};

#[path = "../probe.rs"]
mod probe;
#[path = "../ramflash.rs"]
mod ramflash;

type Flash = ramflash::RamFlash<4096>;

fn ticks() -> u32 {
    black_box(0)
}

#[cortex_m_rt::entry]
fn main() -> ! {
    let key: &str = black_box("key");
    let other: &str = black_box("other");
    let t = Timeout::Secs(black_box(60));
    // The flash in a static of its own (zero bytes, so `.bss`).
    let Some(flash) = cortex_m::singleton!(: Flash = Flash::new()) else {
        probe::finish(0xFFFF_FFFF)
    };
    let Ok(backend) =
        Persistent::<_, 16, 24, 16>::open(flash, 0..4096, Table::new(), Policy::WriteThrough)
    else {
        probe::finish(0xFFFF_FFFF)
    };
    let mut cache = backend.into_cache(Wrap32::new(1000, ticks as fn() -> u32), Config::new());
    let score = {
        let c = &mut cache;
        let mut score = 0u32;
        let mut buf = [0u8; 16];
        score += u32::from(c.set(key, &black_box(5u32), t).is_ok());
        score += c.get::<u32>(key).ok().flatten().unwrap_or(0);
        score += u32::from(c.set_raw(other, black_box(&b"raw"[..]), t).is_ok());
        score += c.get_raw(other, &mut buf).ok().flatten().unwrap_or(0) as u32;
        score += u32::from(c.add(key, &black_box([1u8; 4]), Timeout::Never) == Ok(true));
        score += u32::from(c.touch(key, t) == Ok(true));
        score += u32::from(c.has_key(Key::new(key).version(black_box(2))) == Ok(true));
        score += c
            .get_many([key, other], |_, v: u32| score_add(v))
            .unwrap_or(0) as u32;
        score += c.set_many([(key, &1u32), (other, &2u32)], t, |_, _| {}) as u32;
        score += c.get_or_set(other, || black_box(3u32), t).unwrap_or(0);
        score += c.incr(key, black_box(2)).unwrap_or(0) as u32;
        score += c.decr(key, black_box(1)).unwrap_or(0) as u32;
        score += c.incr_version(key, black_box(1)).unwrap_or(0) as u32;
        score += c.decr_version(key, black_box(1)).unwrap_or(0) as u32;
        score += u32::from(c.delete(key) == Ok(true));
        score += c.delete_many([key, other]).unwrap_or(0) as u32;
        score += u32::from(c.clear().is_ok());
        score += u32::from(c.close().is_ok());
        score
    };
    probe::finish(score)
}

fn score_add(v: u32) {
    black_box(v);
}
