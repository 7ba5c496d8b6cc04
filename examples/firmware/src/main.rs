//! tickcache on a Cortex-M under QEMU: the blango walk-through, the engine's conformance
//! checks (the same module the host tests run), a cache shared between an interrupt
//! handler and the main loop, and the deepest stack a cache call uses.
//!
//! `cargo run --release` (Cortex-M4, mps2-an386) or
//! `cargo run --release --target thumbv6m-none-eabi` (Cortex-M0, micro:bit). The exit
//! status is the firmware's: 0 when every check passed.

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::SCB;
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::debug;
use serde::{Deserialize, Serialize};
use tickcache::flash::{Persistent, Policy};
use tickcache::{Config, Key, ManualClock, MemCache, SharedCache, Table, Timeout, Wrap32};

#[cfg(feature = "log")]
use defmt_semihosting as _;

#[path = "../../../tests/shared_checks/mod.rs"]
mod shared_checks;

mod ramflash;
mod stack;

/// Logging through defmt when the `log` feature is on, nothing otherwise.
macro_rules! info {
    ($($t:tt)*) => {{
        #[cfg(feature = "log")]
        defmt::info!($($t)*);
    }};
}
macro_rules! error {
    ($($t:tt)*) => {{
        #[cfg(feature = "log")]
        defmt::error!($($t)*);
    }};
}

#[cfg(board_m0)]
const BOARD: &str = "Cortex-M0 (micro:bit)";
#[cfg(not(board_m0))]
const BOARD: &str = "Cortex-M4 (mps2-an386)";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Post {
    id: u32,
    title: heapless::String<24>,
    likes: u32,
}

/// Counts failed checks; each failure is logged.
struct Checks {
    failed: u32,
}

impl Checks {
    fn check(&mut self, name: &str, ok: bool) {
        if ok {
            info!("ok   {=str}", name);
        } else {
            error!("FAIL {=str}", name);
            self.failed += 1;
        }
    }
}

fn secs(clock: &ManualClock) -> u32 {
    use tickcache::Clock;
    (clock.now() / u64::from(clock.ticks_per_second())) as u32
}

/// The host example's story, on the target: a post cached for 30 s, invalidated on save,
/// a count for 300 s, a stored None, batches, get_or_set, counters, versions.
#[inline(never)] // its own frame: the 16 KiB of the Cortex-M0 are shared
fn blango(checks: &mut Checks) {
    let clock = ManualClock::new(1000);
    let mut cache: MemCache<&ManualClock, 32, 24, 40> =
        MemCache::new(&clock, Table::new(), Config::new());
    info!(
        "blango: a {=usize}-byte cache of 32 entries",
        core::mem::size_of_val(&cache)
    );
    let queries = core::cell::Cell::new(0u32);
    let mut post = Post {
        id: 1,
        title: heapless::String::try_from("Hello, blango").unwrap_or_default(),
        likes: 3,
    };

    let detail = |cache: &mut MemCache<&ManualClock, 32, 24, 40>, post: &Post| -> Option<Post> {
        if let Ok(Some(p)) = cache.get::<Post>("post_1") {
            return Some(p);
        }
        queries.set(queries.get() + 1);
        cache.set("post_1", post, 30).ok()?;
        Some(post.clone())
    };
    let first = detail(&mut cache, &post);
    clock.advance_secs(10);
    let second = detail(&mut cache, &post);
    info!("[t={=u32}s] post 1 read twice", secs(&clock));
    checks.check(
        "blango: a post is cached",
        first == second && first.is_some(),
    );
    clock.advance_secs(20);
    let _ = detail(&mut cache, &post);
    info!(
        "[t={=u32}s] after 30 s the post expired and was read again",
        secs(&clock)
    );
    checks.check("blango: expiry after 30 s", queries.get() == 2);
    post.likes += 1;
    checks.check(
        "blango: save invalidates",
        cache.delete("post_1") == Ok(true),
    );
    let fresh = detail(&mut cache, &post);
    checks.check(
        "blango: fresh post after save",
        fresh.map(|p| p.likes) == Some(4),
    );

    let _ = cache.set("post_count", &3i64, Timeout::Default);
    clock.advance_secs(299);
    let live = cache.get::<i64>("post_count") == Ok(Some(3));
    clock.advance_secs(1);
    let gone = cache.get::<i64>("post_count") == Ok(None);
    info!("[t={=u32}s] post_count lived 300 s", secs(&clock));
    checks.check("blango: post_count for 300 s", live && gone);

    let _ = cache.set("featured", &None::<u32>, Timeout::Never);
    checks.check(
        "blango: stored None",
        cache.get::<Option<u32>>("featured") == Ok(Some(None)),
    );

    let failed = cache.set_many([("a", &1u32), ("b", &2), ("c", &3)], 60, |_, _| {});
    let mut sum = 0;
    let found = cache.get_many(["a", "b", "c", "d"], |_, v: u32| sum += v);
    checks.check(
        "blango: set_many/get_many",
        failed == Ok(0) && found == Ok(3) && sum == 6,
    );

    let mut calls = 0;
    for _ in 0..3 {
        let _ = cache.get_or_set(
            "latest",
            || {
                calls += 1;
                7u32
            },
            60,
        );
    }
    checks.check("blango: get_or_set calls once", calls == 1);

    let counters = cache.add("visits", &0i64, 60) == Ok(true)
        && cache.add("visits", &5i64, 60) == Ok(false)
        && cache.incr("visits", 10) == Ok(10)
        && cache.decr("visits", 3) == Ok(7)
        && cache.touch("visits", 5) == Ok(true);
    clock.advance_secs(5);
    checks.check(
        "blango: add/incr/decr/touch",
        counters && cache.has_key("visits") == Ok(false),
    );

    let _ = cache.set(Key::new("schema").version(1), &1u8, Timeout::Never);
    let moved = cache.incr_version("schema", 1) == Ok(2)
        && cache.get::<u8>(Key::new("schema").version(2)) == Ok(Some(1));
    checks.check("blango: incr_version", moved);
    let cleared = cache.clear().is_ok() && cache.is_empty();
    checks.check("blango: clear", cleared);
}

/// The tick counter of the shared cache's clock: advanced by the interrupt handler.
static TICKS: AtomicU32 = AtomicU32::new(0);

fn ticks() -> u32 {
    TICKS.load(Ordering::Relaxed)
}

type SharedClock = Wrap32<fn() -> u32>;
static SHARED: SharedCache<SharedClock, Table<8, 16, 8>, 16> = SharedCache::new(MemCache::new(
    Wrap32::new(1000, ticks),
    Table::new(),
    Config::new(),
));

/// PendSV, triggered from the main loop: one tick and one counter increment per interrupt.
#[exception]
fn PendSV() {
    // A single writer, so load + store is enough on a core without compare-and-swap.
    TICKS.store(
        TICKS.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
    let _ = SHARED.lock(|c| c.incr("irq", 1));
}

/// The cache shared between the main loop and an interrupt handler.
#[inline(never)] // its own frame: the 16 KiB of the Cortex-M0 are shared
fn interrupt_sharing(checks: &mut Checks) {
    let stored =
        SHARED.lock(|c| c.set("irq", &0i64, 60).is_ok() && c.set("main", &0i64, 60).is_ok());
    for _ in 0..100 {
        SCB::set_pendsv();
        cortex_m::asm::dsb();
        cortex_m::asm::isb();
        let _ = SHARED.lock(|c| c.incr("main", 1));
    }
    let (irq, main) = SHARED.lock(|c| (c.get::<i64>("irq"), c.get::<i64>("main")));
    info!(
        "interrupt sharing: {=u32} ticks, irq {}, main {}",
        ticks(),
        irq.ok().flatten(),
        main.ok().flatten()
    );
    checks.check(
        "shared cache: interrupt and main loop",
        stored && irq == Ok(Some(100)) && main == Ok(Some(100)) && ticks() == 100,
    );
}

/// 4 pages of 1 KiB of NOR flash in RAM.
type Flash = ramflash::RamFlash<4096>;

/// Fills a persistent cache, "reboots" by reopening the same flash region with a new clock
/// that starts at zero, and checks what came back.
#[inline(never)] // its own frame: the 16 KiB of the Cortex-M0 are shared
fn persistence(checks: &mut Checks, flash: &mut Flash) {
    for policy in [Policy::WriteThrough, Policy::WriteBack { max_dirty: 4 }] {
        // A blank part: erase everything first.
        use embedded_storage::nor_flash::NorFlash;
        let erased = flash.erase(0, 4096).is_ok();
        let first = {
            let clock = ManualClock::new(1000);
            let Ok(p) = P::open(&mut *flash, 0..4096, Table::new(), policy) else {
                checks.check("persistence: open a blank region", false);
                return;
            };
            let mut cache = p.into_cache(&clock, Config::new());
            let mut ok = cache.set("config", &0xC0FFEEu32, Timeout::Never).is_ok()
                && cache.set("short", &1u8, 5).is_ok()
                && cache.set("long", &2u8, 600).is_ok()
                && cache.set("gone", &3u8, 600).is_ok()
                && cache
                    .set(Key::new("schema").version(1), &7u8, Timeout::Never)
                    .is_ok()
                && cache.set("boots", &0i64, Timeout::Never).is_ok();
            for _ in 0..20 {
                ok &= cache.incr("boots", 1).is_ok();
            }
            clock.advance_secs(10);
            ok &= cache.delete("gone") == Ok(true) && cache.incr_version("schema", 1) == Ok(2);
            ok &= cache.has_key("long") == Ok(true); // records the current time
            ok &= cache.close().is_ok();
            ok
        };
        // Reboot: a new clock at zero; cache time resumes from the flash.
        let clock = ManualClock::new(1000);
        let Ok(p) = P::open(&mut *flash, 0..4096, Table::new(), policy) else {
            checks.check("persistence: reopen", false);
            return;
        };
        let mut cache = p.into_cache(&clock, Config::new());
        let back = cache.get::<u32>("config") == Ok(Some(0xC0FFEE))
            && cache.get::<u8>("short") == Ok(None)
            && cache.get::<u8>("long") == Ok(Some(2))
            && cache.get::<u8>("gone") == Ok(None)
            && cache.get::<u8>(Key::new("schema").version(2)) == Ok(Some(7))
            && cache.get::<u8>(Key::new("schema").version(1)) == Ok(None)
            && cache.get::<i64>("boots") == Ok(Some(20));
        let d1 = stack::deepest(|| cache.set("config", &1u32, Timeout::Never).is_ok());
        let d2 = stack::deepest(|| cache.incr("boots", 1).is_ok());
        let d3 = stack::deepest(|| cache.incr_version("long", 1).is_ok());
        // Compaction: the workload fills the region several times over, so calls reclaim
        // the oldest page, copying its live records (under write-back, also a changed
        // key's flushed record, read back from flash). Erases after open come only from
        // compaction (every page was formatted or found ready at open).
        let erased_before = erases(&mut cache);
        let (compacted_ok, d5) = compacting(&mut cache);
        let erased_after = erases(&mut cache);
        let d4 = stack::deepest(|| cache.close().is_ok());
        info!(
            "  set {=u32} incr {=u32} incr_version {=u32} close {=u32} compacting {=u32}",
            d1, d2, d3, d4, d5
        );
        let depth = d1.max(d2).max(d3).max(d4);
        info!("  deepest stack of a persistent cache call (set/incr/incr_version/close): {=u32} bytes without compaction, {=u32} with", depth, depth.max(d5));
        info!(
            "  compaction: {=u32} page erases during the compacting workload",
            erased_after.saturating_sub(erased_before)
        );
        checks.check(
            "persistence: the painted workload compacted",
            compacted_ok && erased_after > erased_before,
        );
        let wear = cache.backend_mut().wear();
        let resumed = cache.now() / 1000;
        match policy {
            Policy::WriteThrough => info!(
                "persistence (write-through): cache time resumed at {=u64} s",
                resumed
            ),
            _ => info!(
                "persistence (write-back): cache time resumed at {=u64} s",
                resumed
            ),
        }
        if let Ok(w) = wear {
            info!(
                "  wear: {=u32} pages, erases min {=u32} max {=u32}",
                w.pages, w.min, w.max
            );
        }
        checks.check(
            "persistence: entries come back after a reboot, expired ones do not",
            erased && first && back,
        );
    }
}

/// A persistent cache over [`Flash`].
type P<'f> = Persistent<&'f mut Flash, 16, 24, 16>;

/// Keys rewritten all the time, and keys rewritten once their records reach the oldest
/// page (their records are live when that page is compacted).
const FILL: [&str; 4] = ["fill_0", "fill_1", "fill_2", "fill_3"];
const RARE: [&str; 6] = ["rare_0", "rare_1", "rare_2", "rare_3", "rare_4", "rare_5"];

/// A value of 15 bytes serialized (each `u32` a 5-byte varint): records large enough
/// that a few batches fill what a compaction leaves of a page.
fn big(n: u32) -> [u32; 3] {
    [n | 0xF000_0000; 3]
}

/// Pages erased so far (after open, only compaction erases).
fn erases(cache: &mut tickcache::Cache<&ManualClock, P<'_>, 24>) -> u32 {
    cache.backend_mut().flash_mut().erases
}

/// Persistent calls over the 4 KiB region that compact it again and again: the rare keys
/// are written together, the filler keys rewritten until the page holding the rare keys'
/// records is the oldest, then each rare key is changed in a batch of its own (under
/// write-back its flushed record lies in the page the batch's compaction reclaims) and
/// `incr` and `incr_version` run. Returns whether every call succeeded and the values read
/// back are right, and the deepest stack of one call (each painted on its own).
#[inline(never)]
fn compacting(cache: &mut tickcache::Cache<&ManualClock, P<'_>, 24>) -> (bool, u32) {
    let mut deep = 0;
    // Each call painted on its own (as the others are): the deepest below the call.
    macro_rules! call {
        ($e:expr) => {{
            let mut r = false;
            deep = deep.max(stack::deepest(|| r = $e));
            r
        }};
    }
    let mut ok = call!(cache.set("ver", &0u32, Timeout::Never).is_ok());
    let mut version = 1;
    let mut n = 0u32;
    for cycle in 0..8u32 {
        for k in RARE {
            ok &= call!(cache.set(k, &big(cycle), Timeout::Never).is_ok());
        }
        for f in FILL {
            ok &= call!(cache.set(f, &big(n), Timeout::Never).is_ok());
        }
        let used = cache.backend_mut().pages_used();
        let from = erases(cache);
        // Until the page the rare keys were written to is the oldest and the log is full
        // (one page is kept free for compaction): the next batch that needs room
        // compacts it.
        for _ in 0..400 {
            let b = cache.backend_mut();
            if b.flash().erases >= from + used - 1 && b.pages_used() + 1 >= b.pages() {
                break;
            }
            n += 1;
            let f = FILL[n as usize % FILL.len()];
            ok &= call!(cache.set(f, &big(n), Timeout::Never).is_ok());
        }
        for k in RARE {
            ok &= call!(cache.set(k, &big(cycle + 100), Timeout::Never).is_ok());
            for f in &FILL[1..] {
                n += 1;
                ok &= call!(cache.set(*f, &big(n), Timeout::Never).is_ok());
            }
            ok &= call!(cache.incr("boots", 1).is_ok());
            let v = Key::new("ver").version(version);
            ok &= call!(matches!(cache.incr_version(v, 1), Ok(v) if v == version + 1));
            version += 1;
        }
    }
    ok &= matches!(cache.get::<[u32; 3]>(RARE[0]), Ok(Some(v)) if v == big(107))
        && matches!(
            cache.get::<u32>(Key::new("ver").version(version)),
            Ok(Some(0))
        );
    (ok, deep)
}

/// The deepest stack of persistent calls when the table is full, so that inserts cull:
/// more keys than the table holds, rewrites, `incr`, `touch`, `incr_version`, deletes and
/// `close`, each call painted on its own, under both policies, then a reopen brings back
/// what the last close wrote. Run on the firmware's cache over 4 KiB (a list of 8 changed
/// keys) and over a region barely larger than a batch: 2 pages of 1 KiB with a list of 32
/// keys of 24 bytes and 16-byte values (about 60 bytes a record). A batch of 33 such
/// records takes 3 pages by the open's bound (a page is left only for a record that does
/// not fit its rest), more than the region has, so there every operation's check places
/// its batch record by record as the flush will write it, and a write-back insert that
/// culls places the list's batch with the victims joined.
fn culling(checks: &mut Checks, flash: &mut Flash) {
    let (deep, ok_4k) = culling_region::<8>(flash, 4096, 4);
    info!(
        "  inserts that cull, 4 KiB: deepest persistent call {=u32} / {=u32} bytes (write-through / write-back)",
        deep[0], deep[1]
    );
    let (small, ok_small) = culling_region::<32>(flash, 2048, 32);
    info!(
        "  inserts that cull, 2 pages, a full list of 32 does not always fit: deepest persistent call {=u32} / {=u32} bytes (write-through / write-back)",
        small[0], small[1]
    );
    checks.check(
        "inserts that cull: every call succeeded, a reopen brought back the last close",
        ok_4k && ok_small,
    );
}

/// The culling workload and its reopen on a blank region of `len` bytes with a list of `D`
/// changed keys, under write-through then write-back (`max_dirty`): the deepest persistent
/// call under each, and whether every call succeeded and each reopen brought back the last
/// close.
fn culling_region<const D: usize>(flash: &mut Flash, len: u32, max_dirty: u16) -> ([u32; 2], bool) {
    let mut deep = [0u32; 2];
    let mut ok = true;
    for (i, policy) in [Policy::WriteThrough, Policy::WriteBack { max_dirty }]
        .into_iter()
        .enumerate()
    {
        ok &= culling_workload::<D>(flash, len, policy, &mut deep[i])
            && culling_reopen::<D>(flash, len, policy);
    }
    (deep, ok)
}

/// Keys of the culling workload: more than the table holds.
const CULL_KEYS: [&str; 24] = [
    "k00", "k01", "k02", "k03", "k04", "k05", "k06", "k07", "k08", "k09", "k10", "k11", "k12",
    "k13", "k14", "k15", "k16", "k17", "k18", "k19", "k20", "k21", "k22", "k23",
];

/// The culling workload on a blank region of `len` bytes, a list of `D` changed keys, each
/// call painted on its own (the deepest goes into `deep`); true when every call succeeded.
#[inline(never)] // its own frame: the 16 KiB of the Cortex-M0 are shared
fn culling_workload<const D: usize>(
    flash: &mut Flash,
    len: u32,
    policy: Policy,
    deep: &mut u32,
) -> bool {
    use embedded_storage::nor_flash::NorFlash;
    if flash.erase(0, len).is_err() {
        return false;
    }
    let clock = ManualClock::new(1000);
    let Ok(p) = Persistent::<_, 16, 24, 16, D>::open(&mut *flash, 0..len, Table::new(), policy)
    else {
        return false;
    };
    let mut cache = p.into_cache(&clock, Config::new());
    let mut d = [0u32; 7];
    macro_rules! call {
        ($i:expr, $e:expr) => {{
            let mut r = false;
            d[$i] = d[$i].max(stack::deepest(|| r = $e));
            r
        }};
    }
    let mut ok = true;
    for round in 0..6u32 {
        for (i, k) in CULL_KEYS.iter().enumerate() {
            ok &= call!(0, cache.set(*k, &big(round * 100 + i as u32), 600).is_ok());
        }
        ok &= call!(1, cache.set("n", &0i64, Timeout::Never).is_ok());
        ok &= call!(2, cache.incr("n", 5).is_ok());
        ok &= call!(3, cache.touch(CULL_KEYS[23], 900).is_ok());
        ok &= call!(4, matches!(cache.incr_version("n", 1), Ok(2)));
        ok &= call!(5, cache.delete(CULL_KEYS[22]).is_ok());
        ok &= call!(6, cache.close().is_ok());
    }
    info!(
        "    set {=u32} insert {=u32} incr {=u32} touch {=u32} incr_version {=u32} delete {=u32} close {=u32}",
        d[0], d[1], d[2], d[3], d[4], d[5], d[6]
    );
    *deep = d.iter().fold(*deep, |a, b| a.max(*b));
    ok && matches!(cache.get::<[u32; 3]>(CULL_KEYS[23]), Ok(Some(v)) if v == big(523))
}

/// A reboot after [`culling_workload`]: what its last close wrote comes back.
#[inline(never)] // its own frame: the 16 KiB of the Cortex-M0 are shared
fn culling_reopen<const D: usize>(flash: &mut Flash, len: u32, policy: Policy) -> bool {
    let clock = ManualClock::new(1000);
    let Ok(p) = Persistent::<_, 16, 24, 16, D>::open(&mut *flash, 0..len, Table::new(), policy)
    else {
        return false;
    };
    let mut cache = p.into_cache(&clock, Config::new());
    matches!(cache.get::<[u32; 3]>(CULL_KEYS[23]), Ok(Some(v)) if v == big(523))
        && cache.get::<[u32; 3]>(CULL_KEYS[22]) == Ok(None)
        && cache.get::<i64>(Key::new("n").version(2)) == Ok(Some(5))
}

#[entry]
fn main() -> ! {
    info!("tickcache on {=str}", BOARD);
    let mut checks = Checks { failed: 0 };

    blango(&mut checks);
    let failed = shared_checks::run_all(|name, r| match r {
        Ok(()) => info!("ok   {=str}", name),
        Err(why) => error!("FAIL {=str}: {=str}", name, why),
    });
    checks.failed += failed as u32;
    interrupt_sharing(&mut checks);
    match cortex_m::singleton!(: Flash = Flash::new()) {
        Some(flash) => {
            persistence(&mut checks, flash);
            culling(&mut checks, flash);
        }
        None => checks.check("persistence: flash region", false),
    }

    let clock = ManualClock::new(1000);
    let mut c: MemCache<&ManualClock, 16, 24, 16> =
        MemCache::new(&clock, Table::new(), Config::new());
    let depth = stack::deepest(|| {
        let post = Post {
            id: 1,
            title: heapless::String::new(),
            likes: 2,
        };
        c.set("k", &post, 60).is_ok()
            && c.get::<Post>("k").is_ok()
            && c.get_or_set("n", || 1i64, 60).is_ok()
            && c.incr("n", 1).is_ok()
            && c.incr_version("n", 1).is_ok()
            && c.set_many([("a", &1u8), ("b", &2u8)], 60, |_, _| {}) == Ok(0)
            && c.delete_many(["a", "b"]).is_ok()
    });
    info!("deepest stack of a cache call (set/get/get_or_set/incr/incr_version/set_many/delete_many): {=u32} bytes", depth);
    checks.check("stack measured", depth > 0);

    if checks.failed == 0 {
        info!("all checks passed");
        debug::exit(debug::EXIT_SUCCESS);
    } else {
        error!("{=u32} checks failed", checks.failed);
        debug::exit(debug::EXIT_FAILURE);
    }
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    error!("panic");
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
