//! Instructions per cache operation on the target: tickcache through its typed API beside
//! the no_std peers (heapless's `FnvIndexMap`, uluru's `LRUCache`), one workload, N = 64
//! and N = 1,024 entries, full tables. Run by `cost.sh`; prints one line per figure.
//!
//! Method. QEMU with `-icount shift=0` advances virtual time by exactly 1 ns per guest
//! instruction, and SysTick counts at 25 MHz of virtual time on mps2-an386 (16 MHz on the
//! micro:bit): one tick per 40 instructions (62.5). A loop of a known instruction count
//! calibrates the tick first and refuses to go on unless it is one of those, that is unless
//! QEMU runs with `-icount shift=0`. Each figure times 1,024 calls in one loop (deletes:
//! `1024 / N` rounds of N, the table refilled untimed between rounds), then the same loop
//! with an empty operation (the same key lookup and indirect call), and divides the
//! difference by 1,024: the operation alone, to about 0.05 of an instruction (0.6 for
//! delete at N = 64). The virtual clock moves only with instructions, so two runs print the
//! same figures. These are instructions, not cycles: QEMU models no wait states or pipeline.
//!
//! The Cortex-M0 build (thumbv6m-none-eabi, feature `cost`) runs on the same MPS2 board:
//! QEMU's only Cortex-M0 board, the micro:bit, has 16 KiB of RAM, too little for N = 1,024,
//! and this QEMU puts no Cortex-M0 on an MPS2 board. ARMv6-M is a subset of ARMv7-M, so the
//! M4 core runs the M0 build's instructions one for one; the same build linked for the
//! micro:bit (it then skips N = 1,024) gave the same N = 64 figures on QEMU's Cortex-M0,
//! within 0.1 instruction.
//!
//! A second subject, N = 64 only: the same typed API over the persistent backend
//! (`tickcache::flash::Persistent`, write-through) on the RAM NOR flash of `ramflash.rs`,
//! 32 pages of 1 KiB in a `static`. Its gets touch no flash (the table in RAM mirrors it):
//! beside the memory cache's figures they give what a read pays for the persistent backend
//! (the front end over a storage-bound backend, `Backend::STORAGE_BOUND`, and the backend's
//! own steps). Its set overwrite and incr write one record each through the RAM flash, and
//! their figures include that write and a share of the compactions the log needs (a real
//! flash adds its program and erase times on top). It runs only with feature
//! `cost-persistent`, in a second build: beside it the memory cache's shared code compiles
//! for two callers and its figures move by up to 5 instructions.

#![no_std]
#![no_main]

use core::hint::black_box;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m_semihosting::{debug, hprintln};
use static_cell::ConstStaticCell;
use tickcache::flash::{Persistent, Policy};
use tickcache::{Cache, Config, Table, Wrap32};

#[path = "../ramflash.rs"]
mod ramflash;
#[path = "../systick.rs"]
mod systick;

/// Calls timed per figure.
const OPS: usize = 1024;
/// Keys `sensor_0000` to `sensor_2047`: the first N fill a table, 1,024 and up miss.
const KEYS: usize = 2048;
const KEY_LEN: usize = 11;
/// Instructions per SysTick tick, in thousandths, on the boards QEMU models: 1 ns per
/// instruction and SysTick at 25 MHz (mps2-an386) or 16 MHz (micro:bit).
const BOARDS: [(u64, &str); 2] = [(40_000, "mps2-an386"), (62_500, "micro:bit")];

const fn key_bytes() -> [u8; KEYS * KEY_LEN] {
    let mut out = [0u8; KEYS * KEY_LEN];
    let mut i = 0;
    while i < KEYS {
        let name = b"sensor_";
        let mut j = 0;
        while j < name.len() {
            out[i * KEY_LEN + j] = name[j];
            j += 1;
        }
        let mut n = i;
        let mut d = KEY_LEN;
        while d > name.len() {
            d -= 1;
            out[i * KEY_LEN + d] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        i += 1;
    }
    out
}

const KEY_BYTES: &[u8; KEYS * KEY_LEN] = &key_bytes();
const ALL_KEYS: &str = match core::str::from_utf8(KEY_BYTES) {
    Ok(s) => s,
    Err(_) => panic!("keys are ASCII"),
};

fn key(i: usize) -> &'static str {
    ALL_KEYS.get(i * KEY_LEN..(i + 1) * KEY_LEN).unwrap_or("")
}

/// A fixed pseudo-random sequence (xorshift32) for the order of hits and misses: a cycle
/// through the keys would always touch the least recently used entry, the worst case of a
/// list scanned from the front.
const fn order() -> [u16; OPS] {
    let mut out = [0u16; OPS];
    let mut x: u32 = 0x2545_F491;
    let mut i = 0;
    while i < OPS {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out[i] = (x % 1024) as u16;
        i += 1;
    }
    out
}
static ORDER: [u16; OPS] = order();

/// Which key the i-th call uses.
#[derive(Clone, Copy)]
enum Keys {
    /// A random key of the N stored.
    Hit,
    /// A random key of the 1,024 never stored.
    Miss,
    /// Keys N, N + 1, ...: each one new.
    Fresh,
    /// Keys 0, 1, ... N - 1: each stored one once.
    Each,
}

impl Keys {
    fn index(self, i: usize, n: usize) -> usize {
        match self {
            Keys::Hit => usize::from(ORDER[i % OPS]) % n,
            Keys::Miss => 1024 + usize::from(ORDER[i % OPS]),
            Keys::Fresh => n + i,
            Keys::Each => i,
        }
    }
}

// Timed loops stay well under SysTick's 2^24 ticks: the longest here, uluru's misses at
// N = 1,024, is about 90 million instructions.

/// Ticks taken by `calls` calls of `op` on keys chosen by `keys`. One function for every
/// measurement and its empty twin, the operation behind an opaque indirect call, so the
/// loop around it is the same code each time.
#[inline(never)]
fn timed(keys: Keys, n: usize, calls: usize, op: &mut dyn FnMut(&'static str, u32)) -> u32 {
    let op = black_box(op);
    let start = systick::now();
    for i in 0..calls {
        op(key(keys.index(i, n)), i as u32);
    }
    systick::since(start)
}

/// What each implementation offers the benchmark, on keys like `sensor_0001` and `u32`
/// values.
trait Subject {
    const NAME: &'static str;
    /// Empties the container and stores keys `0..n` (untimed).
    fn fill(&mut self, n: usize);
    fn len(&self) -> usize;
    fn get(&mut self, key: &str) -> Option<u32>;
    /// Stores, evicting when full; true when stored.
    fn set(&mut self, key: &str, value: u32) -> bool;
    /// `None`: no delete in this implementation.
    fn delete(&mut self, key: &str) -> Option<bool>;
    fn incr(&mut self, key: &str) -> Option<u32>;
}

fn ticker() -> u32 {
    static CLOCK: AtomicU32 = AtomicU32::new(0);
    CLOCK.load(Ordering::Relaxed)
}

/// Made keys `:1:sensor_0001` are 14 bytes; a `u32` encodes in at most 5.
type Tick<const N: usize> = Cache<Wrap32<fn() -> u32>, Table<N, 16, 8>, 16>;

/// tickcache through its typed API: key making and validation, expiry, LRU, culling.
struct Tickcache<const N: usize> {
    cache: Tick<N>,
    culling: fn() -> Table<N, 16, 8>,
}

impl<const N: usize> Subject for Tickcache<N> {
    const NAME: &'static str = "tickcache";
    fn fill(&mut self, n: usize) {
        self.cache = Cache::new(
            Wrap32::new(1000, ticker as fn() -> u32),
            (self.culling)(),
            Config::new(),
        );
        for i in 0..n {
            let _ = self.cache.set(key(i), &(i as u32), 300);
        }
    }
    fn len(&self) -> usize {
        self.cache.len()
    }
    #[inline(always)]
    fn get(&mut self, key: &str) -> Option<u32> {
        self.cache.get::<u32>(key).ok().flatten()
    }
    #[inline(always)]
    fn set(&mut self, key: &str, value: u32) -> bool {
        self.cache.set(key, &value, 300).is_ok()
    }
    #[inline(always)]
    fn delete(&mut self, key: &str) -> Option<bool> {
        Some(self.cache.delete(key) == Ok(true))
    }
    #[inline(always)]
    fn incr(&mut self, key: &str) -> Option<u32> {
        self.cache.incr(key, 1).ok().map(|v| v as u32)
    }
}

/// The persistent subject's flash: 32 pages of 1 KiB, room for the log of N = 64 entries
/// many times over, so compaction stays a small share of each write.
type PFlash = ramflash::RamFlash<{ 32 * 1024 }>;
/// Values up to 12 bytes, not the memory subject's 8: a table type of its own, compiled for
/// this cache alone as in a firmware that has only it (one table type shared by both caches
/// puts the table's code out of line and moves the memory cache's N = 64 figures by up to
/// 28 instructions).
type PTick = Cache<Wrap32<fn() -> u32>, Persistent<&'static mut PFlash, 64, 16, 12>, 16>;

/// tickcache over the persistent backend, write-through, N = 64: the same calls as
/// [`Tickcache`]; a fill clears the cache (a clear record on flash) and sets the N keys.
struct TickPersistent(PTick);

impl Subject for TickPersistent {
    const NAME: &'static str = "persistent";
    fn fill(&mut self, n: usize) {
        let _ = self.0.clear();
        for i in 0..n {
            let _ = self.0.set(key(i), &(i as u32), 300);
        }
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    #[inline(always)]
    fn get(&mut self, key: &str) -> Option<u32> {
        self.0.get::<u32>(key).ok().flatten()
    }
    #[inline(always)]
    fn set(&mut self, key: &str, value: u32) -> bool {
        self.0.set(key, &value, 300).is_ok()
    }
    #[inline(always)]
    fn delete(&mut self, key: &str) -> Option<bool> {
        Some(self.0.delete(key) == Ok(true))
    }
    #[inline(always)]
    fn incr(&mut self, key: &str) -> Option<u32> {
        self.0.incr(key, 1).ok().map(|v| v as u32)
    }
}

type RawKey = [u8; KEY_LEN];

fn raw(key: &str) -> RawKey {
    key.as_bytes().try_into().unwrap_or([0; KEY_LEN])
}

/// heapless `FnvIndexMap` keyed by the 11 key bytes, with a `Deque` of keys in insertion
/// order so a set on a full map can remove the oldest entry and insert (a FIFO cache; the
/// map itself has no eviction). A delete removes from the map only.
struct Heapless<const N: usize> {
    map: heapless::index_map::FnvIndexMap<RawKey, u32, N>,
    fifo: heapless::Deque<RawKey, N>,
}

impl<const N: usize> Subject for Heapless<N> {
    const NAME: &'static str = "heapless";
    fn fill(&mut self, n: usize) {
        self.map.clear();
        self.fifo.clear();
        for i in 0..n {
            self.set(key(i), i as u32);
        }
    }
    fn len(&self) -> usize {
        self.map.len()
    }
    #[inline(always)]
    fn get(&mut self, key: &str) -> Option<u32> {
        self.map.get(&raw(key)).copied()
    }
    #[inline(always)]
    fn set(&mut self, key: &str, value: u32) -> bool {
        let k = raw(key);
        if let Some(slot) = self.map.get_mut(&k) {
            *slot = value;
            return true;
        }
        if self.map.len() == N {
            if let Some(oldest) = self.fifo.pop_front() {
                self.map.swap_remove(&oldest);
            }
        }
        self.map.insert(k, value).is_ok() && self.fifo.push_back(k).is_ok()
    }
    #[inline(always)]
    fn delete(&mut self, key: &str) -> Option<bool> {
        Some(self.map.swap_remove(&raw(key)).is_some())
    }
    #[inline(always)]
    fn incr(&mut self, key: &str) -> Option<u32> {
        let v = self.map.get_mut(&raw(key))?;
        *v += 1;
        Some(*v)
    }
}

/// uluru's `LRUCache`: an array with an LRU list, searched linearly from the most recently
/// used entry. It has no delete.
struct Uluru<const N: usize>(uluru::LRUCache<(RawKey, u32), N>);

impl<const N: usize> Subject for Uluru<N> {
    const NAME: &'static str = "uluru";
    fn fill(&mut self, n: usize) {
        self.0.clear();
        for i in 0..n {
            self.set(key(i), i as u32);
        }
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    #[inline(always)]
    fn get(&mut self, key: &str) -> Option<u32> {
        let k = raw(key);
        self.0.find(|e| e.0 == k).map(|e| e.1)
    }
    #[inline(always)]
    fn set(&mut self, key: &str, value: u32) -> bool {
        let k = raw(key);
        match self.0.find(|e| e.0 == k) {
            Some(e) => e.1 = value,
            None => {
                self.0.insert((k, value));
            }
        }
        true
    }
    #[inline(always)]
    fn delete(&mut self, _key: &str) -> Option<bool> {
        None
    }
    #[inline(always)]
    fn incr(&mut self, key: &str) -> Option<u32> {
        let k = raw(key);
        let e = self.0.find(|e| e.0 == k)?;
        e.1 += 1;
        Some(e.1)
    }
}

/// Hundredths of an instruction per call: `rounds` rounds of `calls` calls, each round on a
/// freshly filled table, minus the same rounds of the empty operation.
fn cost<S: Subject>(
    bench: &Bench,
    s: &mut S,
    n: usize,
    keys: Keys,
    rounds: usize,
    calls: usize,
    mut op: impl FnMut(&mut S, &'static str, u32),
) -> u64 {
    let (mut busy, mut idle) = (0u64, 0u64);
    for _ in 0..rounds {
        s.fill(n);
        busy += u64::from(timed(keys, n, calls, &mut |k, i| op(s, k, i)));
        idle += u64::from(timed(keys, n, calls, &mut |k, _| {
            black_box(k);
        }));
    }
    busy.saturating_sub(idle) * bench.milli_per_tick / 10 / (rounds * calls) as u64
}

fn report(subject: &str, op: &str, n: usize, centi: u64) {
    let core = if cfg!(board_m0) { "m0" } else { "m4" };
    hprintln!(
        "cost {} {} {} {} {}.{:02}",
        core,
        subject,
        op,
        n,
        centi / 100,
        centi % 100
    );
}

struct Bench {
    /// Instructions per tick, in thousandths, from the calibration.
    milli_per_tick: u64,
    /// Checks that failed: a figure for an operation that did not do its work (a "hit" that
    /// missed) would be meaningless.
    failed: u32,
}

impl Bench {
    fn check(&mut self, what: &str, ok: bool) {
        if !ok {
            hprintln!("FAIL {}", what);
            self.failed += 1;
        }
    }
}

/// A set of a new key on a full table, reported as `label`.
fn evicting<S: Subject>(s: &mut S, n: usize, bench: &mut Bench, label: &str) {
    let c = cost(bench, s, n, Keys::Fresh, 1, OPS, |s, k, i| {
        black_box(s.set(k, i));
    });
    let newest = key(Keys::Fresh.index(OPS - 1, n));
    bench.check(
        "set evicting",
        s.len() <= n && s.len() >= n / 2 && s.get(newest) == Some(OPS as u32 - 1),
    );
    report(S::NAME, label, n, c);
}

/// Every operation on one implementation at one N.
#[inline(never)]
fn suite<S: Subject>(s: &mut S, n: usize, bench: &mut Bench) {
    let name = S::NAME;
    reads(s, n, bench);
    set_overwrite(s, n, bench);

    evicting(s, n, bench, "set_evicting");

    if s.delete(key(0)).is_some() {
        let c = cost(bench, s, n, Keys::Each, OPS / n, n, |s, k, _| {
            black_box(s.delete(k));
        });
        bench.check("delete", s.len() == 0);
        report(name, "delete", n, c);
    }

    incr(s, n, bench);
}

/// Fills the table, checks hits and misses, and reports get hit and get miss.
fn reads<S: Subject>(s: &mut S, n: usize, bench: &mut Bench) {
    s.fill(n);
    bench.check("fill", s.len() == n);
    bench.check(
        "hit",
        (0..OPS).all(|i| s.get(key(Keys::Hit.index(i, n))).is_some()),
    );
    bench.check(
        "miss",
        (0..OPS).all(|i| s.get(key(Keys::Miss.index(i, n))).is_none()),
    );

    let c = cost(bench, s, n, Keys::Hit, 1, OPS, |s, k, _| {
        black_box(s.get(k));
    });
    report(S::NAME, "get_hit", n, c);
    let c = cost(bench, s, n, Keys::Miss, 1, OPS, |s, k, _| {
        black_box(s.get(k));
    });
    report(S::NAME, "get_miss", n, c);
}

/// A set of a stored key.
fn set_overwrite<S: Subject>(s: &mut S, n: usize, bench: &mut Bench) {
    let c = cost(bench, s, n, Keys::Hit, 1, OPS, |s, k, i| {
        black_box(s.set(k, i));
    });
    bench.check("set overwrite", s.len() == n && s.get(key(0)).is_some());
    report(S::NAME, "set_overwrite", n, c);
}

/// An incr of a stored key.
fn incr<S: Subject>(s: &mut S, n: usize, bench: &mut Bench) {
    let c = cost(bench, s, n, Keys::Hit, 1, OPS, |s, k, _| {
        black_box(s.incr(k));
    });
    let total: u32 = (0..n).filter_map(|i| s.get(key(i))).sum();
    let before: u32 = (0..n as u32).sum();
    bench.check("incr", total == before + OPS as u32);
    report(S::NAME, "incr", n, c);
}

#[inline(never)]
fn tickcache_suites<const N: usize>(bench: &mut Bench) {
    let new: fn() -> Table<N, 16, 8> = Table::new;
    let mut t = Tickcache {
        cache: Cache::new(
            Wrap32::new(1000, ticker as fn() -> u32),
            new(),
            Config::new(),
        ),
        culling: new,
    };
    suite(&mut t, N, bench);
    // One eviction per insert, like the peers, instead of Django's cull of a third.
    t.culling = || Table::with_culling(N, N as u16);
    evicting(&mut t, N, bench, "set_evicting_one");
}

/// The persistent subject at N = 64: the reads, set overwrite and incr (no eviction or
/// delete: the memory cache's figures stand for the table's work there).
#[inline(never)]
fn persistent_suite(bench: &mut Bench) {
    static FLASH: ConstStaticCell<PFlash> = ConstStaticCell::new(PFlash::new());
    let Some(flash) = FLASH.try_take() else {
        return bench.check("persistent flash taken once", false);
    };
    let backend = Persistent::<_, 64, 16, 12>::open_or_format(
        flash,
        0..32 * 1024,
        Table::new(),
        Policy::WriteThrough,
    );
    let Ok(backend) = backend else {
        return bench.check("persistent open", false);
    };
    let mut p =
        TickPersistent(backend.into_cache(Wrap32::new(1000, ticker as fn() -> u32), Config::new()));
    reads(&mut p, 64, bench);
    set_overwrite(&mut p, 64, bench);
    incr(&mut p, 64, bench);
}

#[inline(never)]
fn peer_suites<const N: usize>(bench: &mut Bench) {
    let mut h = Heapless::<N> {
        map: heapless::index_map::FnvIndexMap::new(),
        fifo: heapless::Deque::new(),
    };
    suite(&mut h, N, bench);
    let mut u = Uluru::<N>(uluru::LRUCache::new());
    suite(&mut u, N, bench);
}

/// Thousandths of an instruction per SysTick tick, from a loop of a known instruction count
/// (two per turn); `None` unless it is one of the known boards under `-icount shift=0`.
fn calibrate() -> Option<u64> {
    const TURNS: u32 = 1_000_000;
    let ticks = u64::from(systick::known_loop(TURNS)?);
    let milli = u64::from(2 * TURNS) * 1000 / ticks;
    let board = BOARDS
        .iter()
        .find(|(known, _)| known.abs_diff(milli) * 10_000 <= *known)?;
    hprintln!(
        "calibration: {} ticks for {} instructions ({}, {}.{:03} instructions a tick)",
        ticks,
        2 * TURNS,
        board.1,
        board.0 / 1000,
        board.0 % 1000
    );
    Some(board.0)
}

/// Bytes of RAM the linker script gave the firmware (the stack starts at its end).
fn ram_bytes() -> usize {
    extern "C" {
        static _stack_start: u32;
    }
    (&raw const _stack_start as usize).wrapping_sub(0x2000_0000)
}

#[cortex_m_rt::entry]
fn main() -> ! {
    if let Some(mut p) = cortex_m::Peripherals::take() {
        systick::start(&mut p.SYST);
    }
    let mut bench = Bench {
        milli_per_tick: 0,
        failed: 0,
    };
    match calibrate() {
        Some(milli) => bench.milli_per_tick = milli,
        None => bench.check("calibration (run under QEMU with -icount shift=0)", false),
    }
    if bench.failed == 0 {
        tickcache_suites::<64>(&mut bench);
        if cfg!(feature = "cost-persistent") {
            persistent_suite(&mut bench);
        }
        peer_suites::<64>(&mut bench);
        // The N = 1,024 tables live on the stack: over 100 KiB, far more than a micro:bit has.
        if ram_bytes() >= 1 << 20 {
            tickcache_suites::<1024>(&mut bench);
            peer_suites::<1024>(&mut bench);
        } else {
            hprintln!("N = 1,024 skipped: {} bytes of RAM", ram_bytes());
        }
    }
    if bench.failed == 0 {
        debug::exit(debug::EXIT_SUCCESS);
    } else {
        debug::exit(debug::EXIT_FAILURE);
    }
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    hprintln!("panic");
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
