//! tickcache side by side with host LRU caches, on one workload.
//!
//! Workload: capacity 1024 entries, 16-byte keys `post_{:011}`, 32-byte values (`[u8; 32]`),
//! keys precomputed so formatting is not measured. Operations:
//!
//! - `get_hit`: read keys that are present, in a fixed shuffled order;
//! - `get_miss`: read keys that were never stored;
//! - `set_overwrite`: store new values under keys that are present;
//! - `set_evicting`: the cache is full and every store is a key it does not hold, so each
//!   store has to make room (keys cycle through a pool four times the capacity).
//!
//! tickcache runs through its typed API (`cache.set(key, &value, Timeout::Secs(300))`,
//! `cache.get::<[u8; 32]>(key)`): key making (`:1:post_…`, 19 bytes), strict key validation,
//! postcard encoding (32 bytes), expiry and LRU bookkeeping are all part of what is measured.
//! It is `MemCache<ManualClock, 1024, 19, 32>`: the smallest `K` and `V` that hold this
//! workload. `tickcache` uses `Table::new()` (Django's `CULL_FREQUENCY` 3: a full table drops
//! a third of its entries at once, amortised over the following inserts); `tickcache_cull1`
//! uses `Table::with_culling(1024, 1024)` (one entry per insert, like the peers).
//!
//! Modes:
//! - `cargo bench -p tickcache-benches --bench ops`: criterion, one group per operation.
//! - `TICKCACHE_CALLGRIND=<op>:<impl>` (and optionally `TICKCACHE_OPS=<n>`, default 100000):
//!   prepares the cache as criterion does, runs `n` operations and exits. `benches/callgrind.sh`
//!   runs it under callgrind with `n` and `2n` operations and takes the difference.
//! - `TICKCACHE_CALLGRIND=ram`: RAM bytes per entry of each implementation (tab-separated).
//! - `TICKCACHE_CALLGRIND=check`: hit counts that show each implementation really does the
//!   workload (all keys held after the fill, none of the missing ones, how many of the last
//!   1024 inserts an evicting run keeps).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::Duration;

use criterion::Criterion;
use tickcache::{Config, ManualClock, MemCache, Table, Timeout};

/// Entries held by every cache.
const CAP: usize = 1024;
/// Keys cycled through by `set_evicting`; a power of two, four times the capacity.
const POOL: usize = 4 * CAP;

type Key16 = [u8; 16];
type Val = [u8; 32];

// ---------------------------------------------------------------------------------------------
// Live heap bytes, counted only while `COUNTING` is set (the RAM mode), so timed runs pay one
// relaxed load per allocation and nothing else.

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---------------------------------------------------------------------------------------------
// The workload.

struct Workload {
    /// Keys stored by the fill (`get_hit`, `set_overwrite`).
    present: Vec<Key16>,
    /// A shuffled order over `present`.
    order: Vec<usize>,
    /// Keys never stored (`get_miss`).
    absent: Vec<Key16>,
    /// `set_evicting` keys; the fill stores the first `CAP` of them.
    fresh: Vec<Key16>,
    value: Val,
}

fn key(n: usize) -> Key16 {
    let s = format!("post_{n:011}");
    s.as_bytes().try_into().expect("16-byte key")
}

impl Workload {
    fn new() -> Self {
        let mut order: Vec<usize> = (0..CAP).collect();
        // Fisher-Yates with a fixed xorshift sequence: the same order in every run.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in (1..CAP).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut value = [0u8; 32];
        for (i, b) in value.iter_mut().enumerate() {
            *b = i as u8 ^ 0xa5;
        }
        Workload {
            present: (0..CAP).map(key).collect(),
            order,
            absent: (0..CAP).map(|i| key(10_000_000 + i)).collect(),
            fresh: (0..POOL).map(|i| key(20_000_000 + i)).collect(),
            value,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The implementations under test.

trait Subject {
    const NAME: &'static str;
    fn boxed() -> Box<Self>;
    fn get(&mut self, k: &Key16) -> Option<Val>;
    /// Stores `v` under `k`, making room if `k` is new and the cache is full.
    fn set(&mut self, k: &Key16, v: &Val);
    /// Stores a key known to be new; `oldest` is the key stored `CAP` inserts ago. Only the
    /// `HashMap` floor uses it (it has no eviction policy of its own).
    #[inline(always)]
    fn set_new(&mut self, k: &Key16, v: &Val, _oldest: &Key16) {
        self.set(k, v);
    }
    /// Finishes deferred work after a fill (moka applies writes in batches).
    fn settle(&mut self) {}
}

/// tickcache with `Table::with_culling(1024, CULL)`; `CULL` 3 is `Table::new()`.
struct Tick<const CULL: u16>(MemCache<ManualClock, CAP, 19, 32>);

impl<const CULL: u16> Subject for Tick<CULL> {
    const NAME: &'static str = if CULL == 3 {
        "tickcache"
    } else {
        "tickcache_cull1"
    };

    fn boxed() -> Box<Self> {
        let table = if CULL == 3 {
            Table::new()
        } else {
            Table::with_culling(CAP, CULL)
        };
        Box::new(Tick(MemCache::new(
            ManualClock::new(1000),
            table,
            Config::new(),
        )))
    }

    #[inline(always)]
    fn get(&mut self, k: &Key16) -> Option<Val> {
        self.0.get::<Val>(k).expect("get")
    }

    #[inline(always)]
    fn set(&mut self, k: &Key16, v: &Val) {
        self.0.set(k, v, Timeout::Secs(300)).expect("set");
    }
}

/// tickcache through its raw API (`set_raw`, `with_raw`): the same table and key making,
/// without serde. Measured by `benches/callgrind.sh` only, to show what encoding costs.
struct TickRaw(MemCache<ManualClock, CAP, 19, 32>);

impl Subject for TickRaw {
    const NAME: &'static str = "tickcache_raw";

    fn boxed() -> Box<Self> {
        Box::new(TickRaw(MemCache::new(
            ManualClock::new(1000),
            Table::new(),
            Config::new(),
        )))
    }

    #[inline(always)]
    fn get(&mut self, k: &Key16) -> Option<Val> {
        self.0
            .with_raw(k, |bytes, _| bytes.try_into().ok())
            .expect("with_raw")
            .flatten()
    }

    #[inline(always)]
    fn set(&mut self, k: &Key16, v: &Val) {
        self.0.set_raw(k, v, Timeout::Secs(300)).expect("set_raw");
    }
}

/// tickcache through the typed API with the value as `serde_bytes::ByteArray<32>`, which
/// serializes as one byte string (a length and a copy) instead of 32 separate `u8`s.
/// Measured by `benches/callgrind.sh` only.
struct TickBytes(MemCache<ManualClock, CAP, 19, 33>);

impl Subject for TickBytes {
    const NAME: &'static str = "tickcache_bytes";

    fn boxed() -> Box<Self> {
        Box::new(TickBytes(MemCache::new(
            ManualClock::new(1000),
            Table::new(),
            Config::new(),
        )))
    }

    #[inline(always)]
    fn get(&mut self, k: &Key16) -> Option<Val> {
        self.0
            .get::<serde_bytes::ByteArray<32>>(k)
            .expect("get")
            .map(serde_bytes::ByteArray::into_array)
    }

    #[inline(always)]
    fn set(&mut self, k: &Key16, v: &Val) {
        let v = serde_bytes::ByteArray::new(*v);
        self.0.set(k, &v, Timeout::Secs(300)).expect("set");
    }
}

struct Lru(lru::LruCache<Key16, Val>);

impl Subject for Lru {
    const NAME: &'static str = "lru";
    fn boxed() -> Box<Self> {
        Box::new(Lru(lru::LruCache::new(NonZeroUsize::new(CAP).unwrap())))
    }
    #[inline(always)]
    fn get(&mut self, k: &Key16) -> Option<Val> {
        self.0.get(k).copied()
    }
    #[inline(always)]
    fn set(&mut self, k: &Key16, v: &Val) {
        self.0.put(*k, *v);
    }
}

struct Schnell(schnellru::LruMap<Key16, Val, schnellru::ByLength>);

impl Subject for Schnell {
    const NAME: &'static str = "schnellru";
    fn boxed() -> Box<Self> {
        Box::new(Schnell(schnellru::LruMap::new(schnellru::ByLength::new(
            CAP as u32,
        ))))
    }
    #[inline(always)]
    fn get(&mut self, k: &Key16) -> Option<Val> {
        self.0.get(k).copied()
    }
    #[inline(always)]
    fn set(&mut self, k: &Key16, v: &Val) {
        self.0.insert(*k, *v);
    }
}

struct Quick(quick_cache::unsync::Cache<Key16, Val>);

impl Subject for Quick {
    const NAME: &'static str = "quick_cache";
    fn boxed() -> Box<Self> {
        Box::new(Quick(quick_cache::unsync::Cache::new(CAP)))
    }
    #[inline(always)]
    fn get(&mut self, k: &Key16) -> Option<Val> {
        self.0.get(k).copied()
    }
    #[inline(always)]
    fn set(&mut self, k: &Key16, v: &Val) {
        self.0.insert(*k, *v);
    }
}

/// heapless `FnvIndexMap` plus a `Deque` of keys in insertion order: a FIFO cache without a
/// heap. A hit does not change the order.
struct Heapless {
    map: heapless::index_map::FnvIndexMap<Key16, Val, CAP>,
    fifo: heapless::Deque<Key16, CAP>,
}

impl Subject for Heapless {
    const NAME: &'static str = "heapless";
    fn boxed() -> Box<Self> {
        Box::new(Heapless {
            map: heapless::index_map::FnvIndexMap::new(),
            fifo: heapless::Deque::new(),
        })
    }
    #[inline(always)]
    fn get(&mut self, k: &Key16) -> Option<Val> {
        self.map.get(k).copied()
    }
    #[inline(always)]
    fn set(&mut self, k: &Key16, v: &Val) {
        if let Some(slot) = self.map.get_mut(k) {
            *slot = *v;
            return;
        }
        if self.map.len() == CAP {
            if let Some(oldest) = self.fifo.pop_front() {
                self.map.swap_remove(&oldest);
            }
        }
        if self.map.insert(*k, *v).is_ok() {
            let _ = self.fifo.push_back(*k);
        }
    }
}

struct Moka(moka::sync::Cache<Key16, Val>);

impl Subject for Moka {
    const NAME: &'static str = "moka";
    fn boxed() -> Box<Self> {
        Box::new(Moka(
            moka::sync::Cache::builder()
                .max_capacity(CAP as u64)
                .time_to_live(Duration::from_secs(300))
                .build(),
        ))
    }
    #[inline(always)]
    fn get(&mut self, k: &Key16) -> Option<Val> {
        self.0.get(k)
    }
    #[inline(always)]
    fn set(&mut self, k: &Key16, v: &Val) {
        self.0.insert(*k, *v);
    }
    fn settle(&mut self) {
        self.0.run_pending_tasks();
    }
}

/// The floor: std's `HashMap` (hashbrown) with the Fx hash tickcache uses, no eviction
/// policy. `set_evicting` removes the key stored `CAP` inserts ago, which the workload knows.
struct Floor(HashMap<Key16, Val, rustc_hash::FxBuildHasher>);

impl Subject for Floor {
    const NAME: &'static str = "hashmap";
    fn boxed() -> Box<Self> {
        Box::new(Floor(HashMap::with_capacity_and_hasher(
            CAP,
            rustc_hash::FxBuildHasher,
        )))
    }
    #[inline(always)]
    fn get(&mut self, k: &Key16) -> Option<Val> {
        self.0.get(k).copied()
    }
    #[inline(always)]
    fn set(&mut self, k: &Key16, v: &Val) {
        self.0.insert(*k, *v);
    }
    #[inline(always)]
    fn set_new(&mut self, k: &Key16, v: &Val, oldest: &Key16) {
        self.0.remove(oldest);
        self.0.insert(*k, *v);
    }
}

// ---------------------------------------------------------------------------------------------
// Operations, as const generics so each loop is monomorphic.

const GET_HIT: u8 = 0;
const GET_MISS: u8 = 1;
const SET_OVERWRITE: u8 = 2;
const SET_EVICTING: u8 = 3;

const OPS: [&str; 4] = ["get_hit", "get_miss", "set_overwrite", "set_evicting"];

/// A cache filled to capacity for operation `OP`, and the first step index.
fn prepared<S: Subject, const OP: u8>(w: &Workload) -> (Box<S>, usize) {
    let mut s = S::boxed();
    let keys = if OP == SET_EVICTING {
        &w.fresh[..CAP]
    } else {
        &w.present[..]
    };
    for k in keys {
        s.set(k, &w.value);
    }
    s.settle();
    let start = if OP == SET_EVICTING { CAP } else { 0 };
    (s, start)
}

/// Step `i` of operation `OP`.
#[inline(always)]
fn step<S: Subject, const OP: u8>(s: &mut S, w: &Workload, i: usize) {
    match OP {
        GET_HIT => {
            let k = &w.present[w.order[i % CAP]];
            black_box(s.get(black_box(k)));
        }
        GET_MISS => {
            let k = &w.absent[i % CAP];
            black_box(s.get(black_box(k)));
        }
        SET_OVERWRITE => {
            let k = &w.present[w.order[i % CAP]];
            s.set(black_box(k), black_box(&w.value));
        }
        _ => {
            let k = &w.fresh[i % POOL];
            let oldest = &w.fresh[i.wrapping_sub(CAP) % POOL];
            s.set_new(black_box(k), black_box(&w.value), oldest);
        }
    }
}

fn bench_one<S: Subject, const OP: u8>(c: &mut Criterion, group: &str, w: &Workload) {
    let mut g = c.benchmark_group(group);
    let (mut s, mut i) = prepared::<S, OP>(w);
    g.bench_function(S::NAME, |b| {
        b.iter(|| {
            step::<S, OP>(&mut s, w, i);
            i = i.wrapping_add(1);
        })
    });
    g.finish();
}

fn drive<S: Subject, const OP: u8>(w: &Workload, n: usize) {
    let (mut s, start) = prepared::<S, OP>(w);
    for i in start..start + n {
        step::<S, OP>(&mut s, w, i);
    }
    black_box(&s);
}

/// Calls `$f::<Impl, OP>($args)` for the implementation named `$name`; `None` when unknown.
macro_rules! with_impl {
    ($name:expr, $op:ident, $f:ident($($arg:expr),*)) => {
        match $name {
            "tickcache" => Some($f::<Tick<3>, $op>($($arg),*)),
            "tickcache_cull1" => Some($f::<Tick<{ CAP as u16 }>, $op>($($arg),*)),
            "tickcache_raw" => Some($f::<TickRaw, $op>($($arg),*)),
            "tickcache_bytes" => Some($f::<TickBytes, $op>($($arg),*)),
            "lru" => Some($f::<Lru, $op>($($arg),*)),
            "schnellru" => Some($f::<Schnell, $op>($($arg),*)),
            "quick_cache" => Some($f::<Quick, $op>($($arg),*)),
            "heapless" => Some($f::<Heapless, $op>($($arg),*)),
            "moka" => Some($f::<Moka, $op>($($arg),*)),
            "hashmap" => Some($f::<Floor, $op>($($arg),*)),
            _ => None,
        }
    };
}

/// Calls `with_impl!` with the operation named `$op` as a const generic.
macro_rules! with_op_impl {
    ($op:expr, $name:expr, $f:ident($($arg:expr),*)) => {
        match $op {
            "get_hit" => with_impl!($name, GET_HIT, $f($($arg),*)),
            "get_miss" => with_impl!($name, GET_MISS, $f($($arg),*)),
            "set_overwrite" => with_impl!($name, SET_OVERWRITE, $f($($arg),*)),
            "set_evicting" => with_impl!($name, SET_EVICTING, $f($($arg),*)),
            _ => None,
        }
    };
}

/// Implementations in report order; `tickcache_cull1` differs from `tickcache` only when
/// culling, so it runs in `set_evicting` alone.
const IMPLS: [&str; 9] = [
    "tickcache",
    "tickcache_cull1",
    "tickcache_bytes",
    "lru",
    "schnellru",
    "quick_cache",
    "heapless",
    "moka",
    "hashmap",
];

fn runs_in(op: &str, name: &str) -> bool {
    match name {
        "tickcache_cull1" => op == "set_evicting",
        "tickcache_bytes" => op == "get_hit" || op == "set_overwrite",
        _ => true,
    }
}

// ---------------------------------------------------------------------------------------------
// RAM and sanity modes.

fn ram<S: Subject>(w: &Workload) -> f64 {
    COUNTING.store(true, Ordering::SeqCst);
    let before = LIVE.load(Ordering::SeqCst);
    let mut s = S::boxed();
    for k in &w.present {
        s.set(k, &w.value);
    }
    s.settle();
    let after = LIVE.load(Ordering::SeqCst);
    COUNTING.store(false, Ordering::SeqCst);
    drop(black_box(s));
    (after - before) as f64 / CAP as f64
}

fn check<S: Subject>(w: &Workload) -> String {
    let (mut s, _) = prepared::<S, GET_HIT>(w);
    let hits = w.present.iter().filter(|k| s.get(k).is_some()).count();
    let false_hits = w.absent.iter().filter(|k| s.get(k).is_some()).count();
    let (mut s, start) = prepared::<S, SET_EVICTING>(w);
    let n = 10 * POOL;
    for i in start..start + n {
        step::<S, SET_EVICTING>(&mut s, w, i);
    }
    s.settle();
    let kept = (start + n - CAP..start + n)
        .filter(|&i| s.get(&w.fresh[i % POOL]).is_some())
        .count();
    format!("{}\t{hits}\t{false_hits}\t{kept}", S::NAME)
}

fn side_mode(mode: &str) {
    let w = Workload::new();
    match mode {
        "ram" => {
            println!("impl\tbytes_per_entry");
            for name in IMPLS {
                let bytes = match name {
                    "tickcache" => ram::<Tick<3>>(&w),
                    "tickcache_cull1" => ram::<Tick<{ CAP as u16 }>>(&w),
                    "tickcache_bytes" => ram::<TickBytes>(&w),
                    "lru" => ram::<Lru>(&w),
                    "schnellru" => ram::<Schnell>(&w),
                    "quick_cache" => ram::<Quick>(&w),
                    "heapless" => ram::<Heapless>(&w),
                    "moka" => ram::<Moka>(&w),
                    _ => ram::<Floor>(&w),
                };
                println!("{name}\t{bytes:.1}");
            }
            let table = std::mem::size_of::<MemCache<ManualClock, CAP, 19, 32>>();
            eprintln!(
                "size_of::<MemCache<ManualClock, {CAP}, 19, 32>>() = {table} ({:.1} per entry)",
                table as f64 / CAP as f64
            );
        }
        "check" => {
            println!("impl\thits_after_fill/{CAP}\tabsent_hits\tkept_of_last_{CAP}_inserts");
            for name in IMPLS {
                let line = match name {
                    "tickcache" => check::<Tick<3>>(&w),
                    "tickcache_cull1" => check::<Tick<{ CAP as u16 }>>(&w),
                    "tickcache_bytes" => check::<TickBytes>(&w),
                    "lru" => check::<Lru>(&w),
                    "schnellru" => check::<Schnell>(&w),
                    "quick_cache" => check::<Quick>(&w),
                    "heapless" => check::<Heapless>(&w),
                    "moka" => check::<Moka>(&w),
                    _ => check::<Floor>(&w),
                };
                println!("{line}");
            }
        }
        spec => {
            let (op, name) = spec.split_once(':').unwrap_or((spec, ""));
            let n = std::env::var("TICKCACHE_OPS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(100_000);
            if with_op_impl!(op, name, drive(&w, n)).is_none() {
                eprintln!("unknown TICKCACHE_CALLGRIND={spec}: want <op>:<impl>, ram or check");
                eprintln!("ops: get_hit get_miss set_overwrite set_evicting");
                eprintln!("impls: {} tickcache_raw tickcache_bytes", IMPLS.join(" "));
                std::process::exit(2);
            }
        }
    }
}

fn main() {
    if let Ok(mode) = std::env::var("TICKCACHE_CALLGRIND") {
        side_mode(&mode);
        return;
    }
    let w = Workload::new();
    let mut c = Criterion::default().configure_from_args();
    for op in OPS {
        for name in IMPLS {
            if runs_in(op, name) {
                let c = &mut c;
                let _ = with_op_impl!(op, name, bench_one(c, op, &w));
            }
        }
    }
    c.final_summary();
}
