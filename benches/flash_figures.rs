//! Flash figures for FLASH.md, all on the mock flash (which counts every call):
//! sequential-storage's map beside tickcache on sequential-storage's published workload
//! (bare and Django-made keys, both policies), the same workload with values that change
//! every round and a flush every ten rounds (what write-back saves), bytes written per `set`, erases per 10,000 sets, wear spread, and the time to open a
//! full region.
//!
//! ```text
//! cargo run --release -p tickcache-benches --bin flash_figures
//! cargo run --release -p tickcache-benches --bin flash_figures -- open 64   # only open a full 64 KiB region
//! ```

use std::time::Instant;

use embedded_storage_async::nor_flash as anor;
use sequential_storage::cache::Cache as SsCache;
use sequential_storage::map::{MapConfig, MapStorage};
use tickcache::flash::{MockError, MockFlash, Persistent, Policy};
use tickcache::key::{KeyError, KeyWriter};
use tickcache::{Backend, Config, ManualClock, Table, Timeout};

// ---- sequential-storage's map workload (its src/cache/tests.rs, `map_tests::run_test`) ----

const LEN: [usize; 24] = [
    11, 13, 6, 13, 13, 10, 2, 3, 5, 36, 1, 65, 4, 6, 1, 15, 10, 7, 3, 15, 9, 3, 4, 5,
];
const WRITE_ORDER: [usize; 24] = [
    15, 0, 4, 22, 18, 11, 19, 8, 14, 23, 5, 1, 16, 10, 6, 12, 20, 17, 3, 9, 7, 13, 21, 2,
];
const READ_ORDER: [usize; 24] = [
    8, 22, 21, 11, 16, 23, 13, 15, 19, 7, 6, 2, 12, 1, 17, 4, 20, 14, 10, 5, 9, 3, 18, 0,
];
const ROUNDS: usize = 100;

/// Our mock flash seen through the async traits sequential-storage uses.
struct Async<'a, const P: usize, const S: usize>(&'a mut MockFlash<P, S, 1>);

impl<const P: usize, const S: usize> anor::ErrorType for Async<'_, P, S> {
    type Error = MockError;
}

impl<const P: usize, const S: usize> anor::ReadNorFlash for Async<'_, P, S> {
    const READ_SIZE: usize = 1;
    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), MockError> {
        embedded_storage::nor_flash::ReadNorFlash::read(self.0, offset, bytes)
    }
    fn capacity(&self) -> usize {
        embedded_storage::nor_flash::ReadNorFlash::capacity(self.0)
    }
}

impl<const P: usize, const S: usize> anor::NorFlash for Async<'_, P, S> {
    const WRITE_SIZE: usize = 1;
    const ERASE_SIZE: usize = S;
    async fn erase(&mut self, from: u32, to: u32) -> Result<(), MockError> {
        embedded_storage::nor_flash::NorFlash::erase(self.0, from, to)
    }
    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), MockError> {
        embedded_storage::nor_flash::NorFlash::write(self.0, offset, bytes)
    }
}

// The map overwrites item headers to mark them erased (the mock allows it, see below).
impl<const P: usize, const S: usize> anor::MultiwriteNorFlash for Async<'_, P, S> {}

/// Erases, read calls, bytes read, write calls, bytes written.
type Counts = [u64; 5];

fn counts<const P: usize, const S: usize, const W: usize>(f: &MockFlash<P, S, W>) -> Counts {
    [
        f.total_erases(),
        f.reads(),
        f.bytes_read(),
        f.writes(),
        f.bytes_written(),
    ]
}

fn seq_storage<const P: usize, const S: usize>() -> Counts {
    let mut flash = MockFlash::<P, S, 1>::new();
    flash.allow_rewrite(true);
    {
        let mut map = MapStorage::<u16, _, _>::new(
            Async(&mut flash),
            MapConfig::new(0..(P * S) as u32),
            SsCache::new_uncached(),
        );
        let mut buf = [0u8; 128];
        futures::executor::block_on(async {
            for _ in 0..ROUNDS {
                for i in WRITE_ORDER {
                    let v = vec![i as u8; LEN[i]];
                    map.store_item(&mut buf, &(i as u16), &v.as_slice())
                        .await
                        .expect("store");
                }
                for i in READ_ORDER {
                    let v = map
                        .fetch_item::<&[u8]>(&mut buf, &(i as u16))
                        .await
                        .expect("fetch")
                        .expect("present");
                    assert_eq!(v, &vec![i as u8; LEN[i]][..], "sequential-storage key {i}");
                }
            }
        });
    }
    counts(&flash)
}

/// The key as given, without Django's `prefix:version:` (the map's keys are bare `u16`s).
fn bare_key(
    _prefix: &str,
    _version: i32,
    key: &[u8],
    out: &mut KeyWriter<'_>,
) -> Result<(), KeyError> {
    out.push(key)
}

const NAMES: [&str; 24] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    "17", "18", "19", "20", "21", "22", "23",
];

/// One run of sequential-storage's workload through the `Cache` API. With `rewrite`, each
/// round's values differ from the last round's (the round number is in every value) and a
/// flush ends every tenth round; else the values are the map workload's, the same every
/// round.
fn tickcache_run<const P: usize, const S: usize>(
    policy: Policy,
    bare: bool,
    rewrite: bool,
) -> Counts {
    let mut flash = MockFlash::<P, S, 1>::new();
    let clock = ManualClock::new(1000);
    let p =
        Persistent::<_, 32, 8, 72, 32>::open(&mut flash, 0..(P * S) as u32, Table::new(), policy)
            .expect("open");
    let config = if bare {
        Config::new().key_function(bare_key)
    } else {
        Config::new()
    };
    let mut cache = p.into_cache(&clock, config);
    let mut out = [0u8; 72];
    for round in 0..ROUNDS {
        let value = |i: usize| {
            let fill = if rewrite { (i + round) as u8 } else { i as u8 };
            vec![fill; LEN[i]]
        };
        for i in WRITE_ORDER {
            cache
                .set_raw(NAMES[i], &value(i), Timeout::Never)
                .expect("set");
        }
        for (n, i) in READ_ORDER.into_iter().enumerate() {
            let want = value(i);
            if n % 2 == 0 {
                let len = cache
                    .get_raw(NAMES[i], &mut out)
                    .expect("get")
                    .expect("held");
                assert_eq!(&out[..len], &want[..], "tickcache key {i}");
            } else {
                let same = cache.with_raw(NAMES[i], |b, _| b == want).expect("get");
                assert_eq!(same, Some(true), "tickcache key {i}");
            }
        }
        if rewrite && round % 10 == 9 {
            cache.backend_mut().flush().expect("flush");
        }
    }
    cache.close().expect("close");
    counts(cache.backend().flash())
}

fn row(name: &str, c: Counts) {
    println!(
        "| {name} | {} | {} | {} | {} | {} |",
        c[0], c[1], c[2], c[3], c[4]
    );
}

/// Write-back keeping every key of a round listed (`max_dirty` above the 24 keys).
const WRITE_BACK: Policy = Policy::WriteBack { max_dirty: 32 };

fn side_by_side<const P: usize, const S: usize>() {
    println!();
    println!("## sequential-storage's map workload, {P} x {S} B, WRITE_SIZE 1, one run");
    println!("| engine | erases | read calls | bytes read | write calls | bytes written |");
    println!("|---|---|---|---|---|---|");
    row("sequential-storage 8 map, no cache", seq_storage::<P, S>());
    for (keys, bare) in [("bare keys `n`", true), ("Django keys `:1:n`", false)] {
        row(
            &format!("tickcache write-through, {keys}"),
            tickcache_run::<P, S>(Policy::WriteThrough, bare, false),
        );
        row(
            &format!("tickcache write-back (max_dirty 6), {keys}"),
            tickcache_run::<P, S>(Policy::WriteBack { max_dirty: 6 }, bare, false),
        );
    }
}

fn rewrites<const P: usize, const S: usize>() {
    println!();
    println!(
        "## rewrites: 24 keys, new values every round, 100 rounds, a flush every 10, {P} x {S} B"
    );
    println!("| engine | erases | read calls | bytes read | write calls | bytes written |");
    println!("|---|---|---|---|---|---|");
    for (keys, bare) in [("bare keys `n`", true), ("Django keys `:1:n`", false)] {
        row(
            &format!("tickcache write-through, {keys}"),
            tickcache_run::<P, S>(Policy::WriteThrough, bare, true),
        );
        row(
            &format!("tickcache write-back (max_dirty 32), {keys}"),
            tickcache_run::<P, S>(WRITE_BACK, bare, true),
        );
    }
}

// ---- tickcache's own workload ------------------------------------------------------------

fn fixed_workload<const WS: usize>(policy: Policy) {
    // 8 pages of 4 KiB; 48 keys, u32 values, 10,000 sets in a fixed pseudo-random order.
    let mut flash = MockFlash::<8, 4096, WS>::new();
    let clock = ManualClock::new(1000);
    let p = Persistent::<_, 64, 32, 16>::open(&mut flash, 0..8 * 4096, Table::new(), policy)
        .expect("open");
    let mut cache = p.into_cache(&clock, Config::new());
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for i in 0..10_000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let k = format!("sensor:{}", x % 48);
        clock.advance(10);
        cache.set(k.as_str(), &i, Timeout::Secs(3600)).expect("set");
    }
    cache.close().expect("close");
    let wear = cache.backend_mut().wear().expect("wear");
    let f = cache.backend().flash();
    println!(
        "| {policy:?} | {WS} | {:.1} | {} | {} / {} | {:.1} |",
        f.bytes_written() as f64 / 10_000.0,
        f.total_erases(),
        wear.max,
        wear.min,
        f.bytes_read() as f64 / 10_000.0,
    );
}

/// Opens a region (apart, for an instruction count with callgrind's `--toggle-collect`).
#[inline(never)]
fn reopen<const P: usize>(
    flash: &mut MockFlash<P, 4096, 4>,
    size: u32,
) -> Persistent<&mut MockFlash<P, 4096, 4>, 256, 16, 40> {
    Persistent::open(flash, 0..size, Table::new(), Policy::WriteThrough).expect("open")
}

/// Fills a region of `P` pages of 4 KiB (256 live entries of 40 bytes, rewritten until
/// every page has been in the log), then opens it: host time, reads, entries restored.
fn open_full<const P: usize>(quiet: bool) {
    let mut flash = MockFlash::<P, 4096, 4>::new();
    let size = (P * 4096) as u32;
    {
        let clock = ManualClock::new(1000);
        let p = Persistent::<_, 256, 16, 40>::open(
            &mut flash,
            0..size,
            Table::new(),
            Policy::WriteThrough,
        )
        .expect("open");
        let mut cache = p.into_cache(&clock, Config::new());
        let v = [7u8; 40];
        for i in 0..(P as u32 * 4096 / 40) {
            clock.advance(1);
            let k = format!("e{}", i % 256);
            cache.set_raw(k.as_str(), &v, Timeout::Never).expect("set");
        }
    }
    flash.reset_counters();
    let t = Instant::now();
    let p = reopen(&mut flash, size);
    let took = t.elapsed();
    if quiet {
        return;
    }
    let (len, used) = (p.len(), p.pages_used());
    let f = p.flash();
    println!(
        "| {} KiB | {used} | {len} | {:.2} ms | {} | {} |",
        P * 4,
        took.as_secs_f64() * 1000.0,
        f.reads(),
        f.bytes_read()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("open") {
        // For an instruction count: `valgrind --tool=callgrind` on this mode.
        match args.get(2).map(String::as_str) {
            Some("16") => open_full::<4>(true),
            Some("32") => open_full::<8>(true),
            _ => open_full::<16>(true),
        }
        return;
    }
    side_by_side::<4, 256>();
    side_by_side::<4, 512>();
    side_by_side::<8, 256>();
    rewrites::<4, 256>();
    rewrites::<4, 512>();
    rewrites::<8, 256>();
    println!();
    println!("## 10,000 sets, 48 keys, u32 values, 8 pages of 4 KiB");
    println!("| policy | WRITE_SIZE | bytes written per set | erases | most / least erased page | bytes read per set |");
    println!("|---|---|---|---|---|---|");
    fixed_workload::<1>(Policy::WriteThrough);
    fixed_workload::<4>(Policy::WriteThrough);
    fixed_workload::<16>(Policy::WriteThrough);
    fixed_workload::<32>(Policy::WriteThrough);
    fixed_workload::<64>(Policy::WriteThrough);
    fixed_workload::<4>(Policy::WriteBack { max_dirty: 8 });
    fixed_workload::<32>(Policy::WriteBack { max_dirty: 8 });
    fixed_workload::<64>(Policy::WriteBack { max_dirty: 8 });
    println!();
    println!("## open a full region (pages of 4 KiB, WRITE_SIZE 4, 256 entries of 40 B)");
    println!(
        "| region | pages in the log | entries restored | host time | read calls | bytes read |"
    );
    println!("|---|---|---|---|---|---|");
    open_full::<4>(false);
    open_full::<8>(false);
    open_full::<16>(false);
}
