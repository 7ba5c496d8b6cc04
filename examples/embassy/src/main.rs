//! tickcache under embassy on a Cortex-M4 (QEMU mps2-an386): two tasks of the thread-mode
//! executor share one [`AsyncSharedCache`] in a `static`.
//!
//! - `sensor` writes a reading every sampling period (100 ms), each under its own key with a
//!   500 ms timeout, and the newest one under `latest`; it counts them in `written`.
//! - `monitor` reads `latest` and counts each new reading it sees with `incr` in `seen`.
//! - Both start by racing `add` on `owner`: exactly one of them stores it.
//! - `main` waits for both, then checks the counters, the values, which readings expired
//!   and that the cache answers `Busy` (never a panic or a deadlock) when used from inside
//!   one of its own calls.
//!
//! `cargo run --release` builds it and boots it in QEMU with semihosting (the runner is
//! `../firmware/run.sh`, which decodes the defmt log); the exit status is 0 when every
//! check passed, 1 otherwise.
//!
//! # Time
//! The cache reads time through its [`Clock`](tickcache::Clock): here a [`Wrap32`] over a
//! 32-bit tick counter at 1 kHz. On hardware a SysTick or timer interrupt increments the
//! counter; in this example `sensor` advances it by one sampling period per reading, so
//! every run under QEMU is the same.
//!
//! With embassy-time, its `Instant` is the cache clock: 64-bit and monotonic, so no
//! [`Wrap32`] is needed.
//!
//! ```ignore
//! /// The cache clock: embassy-time's tick counter.
//! struct EmbassyClock;
//!
//! impl tickcache::Clock for EmbassyClock {
//!     fn ticks_per_second(&self) -> u32 {
//!         // 1 MHz unless a `tick-hz-*` feature of embassy-time says otherwise.
//!         u32::try_from(embassy_time::TICK_HZ).unwrap_or(u32::MAX)
//!     }
//!     fn now(&self) -> u64 {
//!         embassy_time::Instant::now().as_ticks()
//!     }
//! }
//!
//! type CacheClock = EmbassyClock;
//! static CACHE: Shared =
//!     AsyncSharedCache::new(Cache::new(EmbassyClock, Store::new(), Config::new()));
//! ```
//!
//! # Where a persistent cache plugs in
//! [`Store`] is the one line that names the backend, and [`open`] is where the cache is
//! made ready at boot; the tasks only see `&'static Shared`. A backend over async flash (an
//! [`AsyncBackend`](tickcache::AsyncBackend)) replaces [`Store`], and [`open`] mounts it
//! from flash into a `static` before the tasks start. A reboot is then [`boot`] run again
//! on a freshly opened cache.

#![no_std]
#![no_main]

use core::fmt::Write as _;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;

use cortex_m_semihosting::debug;
use defmt::{error, info};
use embassy_executor::Spawner;
use embassy_futures::yield_now;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::signal::Signal;
use tickcache::{AsyncSharedCache, Cache, Config, Error, Table, Timeout, Wrap32};

use defmt_semihosting as _;

/// The tick counter behind the cache clock (1 kHz).
static TICKS: AtomicU32 = AtomicU32::new(0);

fn ticks() -> u32 {
    TICKS.load(Ordering::Relaxed)
}

/// Moves time forward (what a SysTick handler does on hardware). One writer, so a load and
/// a store are enough.
fn advance(by: u32) {
    TICKS.store(ticks().wrapping_add(by), Ordering::Relaxed);
}

/// The cache clock: the tick counter, extended to 64 bits.
type CacheClock = Wrap32<fn() -> u32>;

/// The backend: 32 entries, made keys up to 24 bytes, values up to 16 bytes, in RAM.
type Store = Table<32, 24, 16>;

/// The cache the tasks share.
type Shared = AsyncSharedCache<CacheClock, Store, 24>;

static CACHE: Shared = AsyncSharedCache::new(Cache::new(
    Wrap32::new(1000, ticks),
    Store::new(),
    Config::new(),
));

/// The sampling period, in ticks of the 1 kHz clock.
const PERIOD: u32 = 100;
/// How many readings `sensor` writes.
const READINGS: u32 = 20;
/// How long each reading stays readable.
const READING_TIMEOUT: Duration = Duration::from_millis(500);

/// The cache, ready for the tasks.
async fn open() -> &'static Shared {
    &CACHE
}

/// The value of reading `i`, in tenths of a degree.
fn reading(i: u32) -> i16 {
    200 + (i as i16 % 7) * 3
}

/// The key of reading `i`.
fn reading_key(i: u32) -> heapless::String<12> {
    let mut key = heapless::String::new();
    // "reading" and at most 10 digits fit in 12 bytes.
    let _ = write!(key, "reading{i}");
    key
}

/// What `sensor` did.
#[derive(Clone, Copy, defmt::Format)]
struct SensorReport {
    owner: bool,
    written: i64,
}

/// What `monitor` did.
#[derive(Clone, Copy, defmt::Format)]
struct MonitorReport {
    owner: bool,
    seen: i64,
    counted: i64,
    wrong_values: u32,
    saw_last: bool,
}

type Report<T> = Signal<CriticalSectionRawMutex, Result<T, Error>>;
static SENSOR_DONE: Report<SensorReport> = Signal::new();
static MONITOR_DONE: Report<MonitorReport> = Signal::new();

async fn sensor_run(cache: &Shared) -> Result<SensorReport, Error> {
    let owner = cache.add("owner", "sensor", Timeout::Never).await?;
    cache.add("written", &0i64, Timeout::Never).await?;
    let mut written = 0;
    for i in 0..READINGS {
        advance(PERIOD);
        let value = reading(i);
        cache.set(&reading_key(i), &value, READING_TIMEOUT).await?;
        cache.set("latest", &(i, value), READING_TIMEOUT).await?;
        written = cache.incr("written", 1).await?;
        yield_now().await; // the monitor runs here
    }
    Ok(SensorReport { owner, written })
}

async fn monitor_run(cache: &Shared) -> Result<MonitorReport, Error> {
    let owner = cache.add("owner", "monitor", Timeout::Never).await?;
    cache.add("seen", &0i64, Timeout::Never).await?;
    let mut report = MonitorReport {
        owner,
        seen: 0,
        counted: 0,
        wrong_values: 0,
        saw_last: false,
    };
    let mut last = None;
    // Bounded: a monitor that never sees the last reading fails instead of hanging.
    for _ in 0..READINGS * 10 {
        if let Some((i, value)) = cache.get::<(u32, i16)>("latest").await? {
            if last != Some(i) {
                last = Some(i);
                report.counted += 1;
                report.seen = cache.incr("seen", 1).await?;
                if value != reading(i) {
                    report.wrong_values += 1;
                }
            }
        }
        if last == Some(READINGS - 1) {
            report.saw_last = true;
            break;
        }
        yield_now().await;
    }
    Ok(report)
}

#[embassy_executor::task]
async fn sensor(cache: &'static Shared) {
    SENSOR_DONE.signal(sensor_run(cache).await);
}

#[embassy_executor::task]
async fn monitor(cache: &'static Shared) {
    MONITOR_DONE.signal(monitor_run(cache).await);
}

/// Counts failed checks; each one is logged.
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

/// One boot: both tasks run to completion over `cache`, then the checks.
async fn boot(spawner: &Spawner, cache: &'static Shared, checks: &mut Checks) {
    spawner.spawn(sensor(cache).expect("the sensor task is not running yet"));
    spawner.spawn(monitor(cache).expect("the monitor task is not running yet"));
    let s = SENSOR_DONE.wait().await;
    let m = MONITOR_DONE.wait().await;
    info!("sensor: {}", s);
    info!("monitor: {}", m);
    let (Ok(s), Ok(m)) = (s, m) else {
        checks.check("both tasks ran without an error", false);
        return;
    };

    let owner = cache.get::<heapless::String<8>>("owner").await;
    let winner = if s.owner { "sensor" } else { "monitor" };
    checks.check(
        "racing add: exactly one task stored the key, and its value stayed",
        s.owner != m.owner && owner.ok().flatten().as_deref() == Some(winner),
    );
    checks.check(
        "sensor: every reading written and counted",
        s.written == i64::from(READINGS)
            && cache.get::<i64>("written").await == Ok(Some(s.written)),
    );
    checks.check(
        "monitor: incr counted each new reading it saw, and it saw the last one",
        m.counted >= 1
            && m.counted <= i64::from(READINGS)
            && m.seen == m.counted
            && m.saw_last
            && cache.get::<i64>("seen").await == Ok(Some(m.counted)),
    );
    checks.check(
        "monitor: every value read was the one written",
        m.wrong_values == 0,
    );

    // Readings live 500 ms: at 2,000 ms those written after 1,500 ms (the last 5) remain.
    let mut alive = 0;
    let mut right = true;
    for i in 0..READINGS {
        match cache.get::<i16>(&reading_key(i)).await {
            Ok(Some(v)) => {
                alive += 1;
                right &= v == reading(i) && i >= READINGS - 5;
            }
            Ok(None) => {}
            Err(_) => right = false,
        }
    }
    info!("at {=u32} ms: {=u32} readings alive", ticks(), alive);
    checks.check(
        "timeouts: exactly the last 5 readings alive",
        alive == 5 && right,
    );

    advance(500);
    let latest = cache.get::<(u32, i16)>("latest").await;
    let written = cache.get::<i64>("written").await;
    checks.check(
        "timeouts: 500 ms later the latest reading is gone, the counters stay",
        latest == Ok(None) && written == Ok(Some(i64::from(READINGS))),
    );

    // Used from inside one of its own calls (a closure, a value's Serialize): Busy.
    let inner = cache
        .with(|_| Ok(cache.try_with(|c| c.incr("seen", 1))))
        .await;
    let seen = cache.get::<i64>("seen").await;
    checks.check(
        "re-entrant use answers Busy and changes nothing",
        inner == Ok(Err(Error::Busy)) && seen == Ok(Some(m.counted)),
    );
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    info!("tickcache under embassy on Cortex-M4 (mps2-an386)");
    let mut checks = Checks { failed: 0 };
    let cache = open().await;
    boot(&spawner, cache, &mut checks).await;
    if checks.failed == 0 {
        info!("all checks passed");
        debug::exit(debug::EXIT_SUCCESS);
    } else {
        error!("{=u32} checks failed", checks.failed);
        debug::exit(debug::EXIT_FAILURE);
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
