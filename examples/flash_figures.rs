//! Flash figures for FLASH.md: bytes written per `set`, erases per 10,000 sets, wear
//! spread, and sequential-storage's published workload shape, all on the mock flash.
//!
//! ```text
//! cargo run --release --example flash_figures
//! ```

use tickcache::flash::{MockFlash, Persistent, Policy};
use tickcache::{Backend, Config, ManualClock, Table, Timeout};

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

fn seq_storage_shape<const PS: usize>() {
    // 4 pages, 24 keys, 100 rounds in which every key is stored once.
    let mut flash = MockFlash::<4, PS, 4>::new();
    let clock = ManualClock::new(1000);
    let p = Persistent::<_, 24, 8, 8>::open(
        &mut flash,
        0..(4 * PS) as u32,
        Table::new(),
        Policy::WriteThrough,
    )
    .expect("open");
    let mut cache = p.into_cache(&clock, Config::new());
    for round in 0..100u32 {
        for k in 0..24u8 {
            cache
                .set_raw(Key(k).as_str(), &round.to_le_bytes(), Timeout::Never)
                .expect("set");
        }
    }
    let held = cache.len();
    let f = cache.backend().flash();
    println!(
        "| 4 x {PS} B | 2,400 | {} | {} | {} | {held} of 24 |",
        f.total_erases(),
        f.reads(),
        f.bytes_read(),
    );
}

struct Key(u8);
impl Key {
    fn as_str(&self) -> &'static str {
        const NAMES: [&str; 24] = [
            "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9", "k10", "k11", "k12", "k13",
            "k14", "k15", "k16", "k17", "k18", "k19", "k20", "k21", "k22", "k23",
        ];
        NAMES[usize::from(self.0) % 24]
    }
}

fn reopen_cost() {
    let mut flash = MockFlash::<8, 4096, 4>::new();
    {
        let clock = ManualClock::new(1000);
        let p = Persistent::<_, 64, 32, 16>::open(
            &mut flash,
            0..8 * 4096,
            Table::new(),
            Policy::WriteThrough,
        )
        .expect("open");
        let mut cache = p.into_cache(&clock, Config::new());
        for i in 0..2_000u32 {
            let k = format!("sensor:{}", i % 48);
            cache.set(k.as_str(), &i, Timeout::Never).expect("set");
        }
    }
    flash.reset_counters();
    let p = Persistent::<_, 64, 32, 16>::open(
        &mut flash,
        0..8 * 4096,
        Table::new(),
        Policy::WriteThrough,
    )
    .expect("open");
    let len = p.len();
    let used = p.pages_used();
    let f = p.flash();
    println!(
        "open after 2,000 sets: {len} entries restored from {used} pages, {} reads, {} bytes read",
        f.reads(),
        f.bytes_read()
    );
}

fn main() {
    println!("## 10,000 sets, 48 keys, u32 values, 8 pages of 4 KiB");
    println!("| policy | WRITE_SIZE | bytes written per set | erases | most / least erased page | bytes read per set |");
    println!("|---|---|---|---|---|---|");
    fixed_workload::<1>(Policy::WriteThrough);
    fixed_workload::<4>(Policy::WriteThrough);
    fixed_workload::<16>(Policy::WriteThrough);
    fixed_workload::<4>(Policy::WriteBack { max_dirty: 8 });
    println!();
    println!("## sequential-storage's workload shape: 4 pages, 24 keys, 100 rounds of stores");
    println!("| flash | stores | erases | read calls | bytes read | entries held |");
    println!("|---|---|---|---|---|---|");
    seq_storage_shape::<256>();
    seq_storage_shape::<512>();
    println!();
    reopen_cost();
}
