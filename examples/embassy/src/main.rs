//! tickcache under embassy on a Cortex-M4 (QEMU mps2-an386): two tasks of the thread-mode
//! executor share one persistent [`AsyncSharedCache`] in a `static`, its log on NOR flash
//! driven through the async flash traits, then a simulated reboot checks what survived.
//!
//! - `sensor` writes a reading every sampling period (100 ms), each under its own key with a
//!   500 ms timeout, and the newest one under `latest`; it counts them in `written`.
//! - `monitor` reads `latest` and counts each new reading it sees with `incr` in `seen`.
//! - Both start by racing `add` on `owner`: exactly one of them stores it.
//! - `main` waits for both, then checks the counters, the values, which readings expired
//!   and that the cache answers `Busy` (never a panic or a deadlock) when used from inside
//!   one of its own calls.
//! - Then the reboot: the cache is abandoned where it stands (no `close`, as at a power
//!   cut), the clock restarts at zero, and the cache is opened again from the same flash
//!   into fresh RAM: the owner, the counters and the unexpired readings come back, the
//!   expired ones do not, and cache time resumes from the flash.
//!
//! `cargo run --release` builds it and boots it in QEMU with semihosting (the runner is
//! `../firmware/run.sh`, which decodes the defmt log); the exit status is 0 when every
//! check passed, 1 otherwise.
//!
//! # Flash
//! QEMU's board has no flash controller to drive, so the flash is 4 pages of 512 bytes of
//! RAM in a `static` ([`nor::Cells`]) behind an async driver ([`nor::RamNor`]) that keeps
//! NOR's rules and yields to the executor once per operation, as a driver awaiting its
//! flash controller does. The run writes enough to compact the log (checked: a page is
//! erased a second time). On a part, the driver is the HAL's: embassy-rp, embassy-stm32
//! and nrf-softdevice implement the same `embedded_storage_async::nor_flash::NorFlash`.
//!
//! # The cache in a `static`
//! The table (the largest object) sits in a zero-initialised `static` of its own
//! ([`ConstStaticCell`], so `.bss`) and is lent to the backend as `&'static mut`; the cache
//! over it is made at boot by [`open`] and put in a [`StaticCell`], so the tasks get
//! `&'static Shared`. Every call awaits the cache's async mutex, then the flash: interrupts
//! are never masked across a write or an erase (checked: the flash counts the operations
//! that ran with PRIMASK set, and there are none), and other tasks run while the flash
//! works.
//!
//! # Time
//! The cache reads time through its [`Clock`](tickcache::Clock): here a [`Wrap32`] over a
//! 32-bit tick counter at 1 kHz. On hardware a SysTick or timer interrupt increments the
//! counter; in this example `sensor` advances it by one sampling period per reading, so
//! every run under QEMU is the same. The log records the cache time of each write, so
//! after a reboot cache time continues from the latest one even though the counter starts
//! again at zero.
//!
//! With embassy-time, its `Instant` is the cache clock: 64-bit and monotonic, so no
//! [`Wrap32`] is needed. It too starts at zero after a reset; cache time still continues
//! from the flash.
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
//! // In `open`: the same backend, with `EmbassyClock` where `Wrap32::new(..)` stands.
//! let cache = backend.into_cache(EmbassyClock, Config::new());
//! ```

#![no_std]
#![no_main]

mod nor;

use core::fmt::Write as _;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;

use cortex_m_semihosting::debug;
use defmt::{error, info};
use embassy_executor::Spawner;
use embassy_futures::yield_now;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::signal::Signal;
use static_cell::{ConstStaticCell, StaticCell};
use tickcache::flash::{AsyncPersistent, FlashError, Policy};
use tickcache::hash::DefaultHashBuilder;
use tickcache::{AsyncSharedCache, Config, Error, Timeout, Wrap32};

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

/// The table: 32 entries, made keys up to 24 bytes, values up to 16 bytes.
type Table = tickcache::Table<32, 24, 16>;

/// The flash driver.
type Flash = nor::RamNor<FLASH_SIZE>;

/// The backend: the log on the flash, replayed into the table lent as `&'static mut`.
/// Write-through: a call that returned `Ok` is on flash.
type Store = AsyncPersistent<Flash, 32, 24, 16, 8, DefaultHashBuilder, &'static mut Table>;

/// What a cache call can answer.
type CacheError = Error<FlashError<nor::RamNorError>>;

/// The cache the tasks share.
type Shared = AsyncSharedCache<CacheClock, Store, 24>;

/// Pages of flash: few enough that the run compacts the log.
const PAGES: u32 = 4;
/// Bytes of flash.
const FLASH_SIZE: usize = PAGES as usize * nor::PAGE;

/// The flash cells: the one state a reboot keeps.
static FLASH: nor::Cells<FLASH_SIZE> = nor::Cells::new();

/// What one boot keeps in RAM: the table, all zero bytes when new (so it sits in `.bss`
/// and never moves through the stack), and the cache over it, made at boot and lent to the
/// tasks as `&'static`.
struct Ram {
    table: ConstStaticCell<Table>,
    cache: StaticCell<Shared>,
}

impl Ram {
    const fn new() -> Self {
        Ram {
            table: ConstStaticCell::new(Table::new()),
            cache: StaticCell::new(),
        }
    }
}

/// The RAM of each boot: a reset hands the firmware fresh RAM, so the simulated reboot
/// takes the second one.
static BOOTS: [Ram; 2] = [Ram::new(), Ram::new()];

/// Opens the cache at boot: replays the log on [`FLASH`] into `ram`'s table (a blank flash
/// opens empty), and makes the cache over it, its time continuing from the flash.
async fn open(ram: &'static Ram) -> Result<&'static Shared, CacheError> {
    let flash = nor::RamNor::new(&FLASH);
    let backend = AsyncPersistent::<Flash, 32, 24, 16>::open_in(
        flash,
        0..FLASH_SIZE as u32,
        ram.table.take(),
        Policy::WriteThrough,
    )
    .await?;
    let cache = backend.into_cache(Wrap32::new(1000, ticks as fn() -> u32), Config::new());
    Ok(ram.cache.init(AsyncSharedCache::new(cache)))
}

/// The sampling period, in ticks of the 1 kHz clock.
const PERIOD: u32 = 100;
/// How many readings `sensor` writes.
const READINGS: u32 = 20;
/// How long each reading stays readable.
const READING_TIMEOUT: Duration = Duration::from_millis(500);

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

type Report<T> = Signal<CriticalSectionRawMutex, Result<T, CacheError>>;
static SENSOR_DONE: Report<SensorReport> = Signal::new();
static MONITOR_DONE: Report<MonitorReport> = Signal::new();

/// Stands in for `Timer::after` of the sampling period (this example links no time
/// driver): the sensor steps aside for a few turns of the executor, so the other tasks get
/// the cache between two readings. One turn would not do: the sensor, woken first, would
/// take the lock again before the monitor, woken by its release, runs.
async fn sampling_pause() {
    for _ in 0..4 {
        yield_now().await;
    }
}

async fn sensor_run(cache: &Shared) -> Result<SensorReport, CacheError> {
    let owner = cache.add("owner", "sensor", Timeout::Never).await?;
    cache.add("written", &0i64, Timeout::Never).await?;
    let mut written = 0;
    for i in 0..READINGS {
        advance(PERIOD);
        let value = reading(i);
        cache.set(&reading_key(i), &value, READING_TIMEOUT).await?;
        cache.set("latest", &(i, value), READING_TIMEOUT).await?;
        written = cache.incr("written", 1).await?;
        sampling_pause().await; // the monitor runs here
    }
    Ok(SensorReport { owner, written })
}

async fn monitor_run(cache: &Shared) -> Result<MonitorReport, CacheError> {
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
    for _ in 0..READINGS * 100 {
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

/// True when `cache` holds exactly readings `from..READINGS`, each with its value.
async fn readings_alive_from(cache: &Shared, from: u32) -> bool {
    let mut alive = 0;
    let mut right = true;
    for i in 0..READINGS {
        match cache.get::<i16>(&reading_key(i)).await {
            Ok(Some(v)) => {
                alive += 1;
                right &= v == reading(i) && i >= from;
            }
            Ok(None) => right &= i < from,
            Err(_) => right = false,
        }
    }
    info!(
        "tick counter at {=u32} ms: {=u32} readings alive",
        ticks(),
        alive
    );
    right
}

/// What the first boot leaves for the second to find.
struct Survivors {
    /// The task that won the `add` race on `owner`.
    winner: &'static str,
    /// The readings `monitor` counted.
    counted: i64,
}

/// The first boot: both tasks run to completion over one cache, then the checks.
async fn first_boot(spawner: &Spawner, checks: &mut Checks) -> Option<Survivors> {
    let cache = match open(&BOOTS[0]).await {
        Ok(cache) => cache,
        Err(e) => {
            error!("open: {}", e);
            checks.check("the first boot opens the flash", false);
            return None;
        }
    };
    let erases_at_open = FLASH.erases();
    spawner.spawn(sensor(cache).expect("the sensor task is not running yet"));
    spawner.spawn(monitor(cache).expect("the monitor task is not running yet"));
    let s = SENSOR_DONE.wait().await;
    let m = MONITOR_DONE.wait().await;
    info!("sensor: {}", s);
    info!("monitor: {}", m);
    let (Ok(s), Ok(m)) = (s, m) else {
        checks.check("both tasks ran without an error", false);
        return None;
    };
    let erases = FLASH.erases();
    info!(
        "{=u32} pages erased at open, {=u32} while the tasks ran",
        erases_at_open,
        erases - erases_at_open
    );
    checks.check(
        "the log compacted while the tasks ran (a page erased a second time)",
        erases > PAGES,
    );
    checks.check(
        "no flash read, write or erase ran with interrupts masked",
        FLASH.masked() == 0,
    );

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
    checks.check(
        "timeouts: exactly the last 5 readings alive",
        readings_alive_from(cache, READINGS - 5).await,
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
    Some(Survivors {
        winner,
        counted: m.counted,
    })
}

/// The simulated reboot: the first boot's cache is abandoned where it stands (no `close`,
/// as at a power cut), the clock restarts at zero, and the cache is opened again from the
/// same flash into fresh RAM. Then the checks of what came back.
async fn second_boot(survivors: &Survivors, checks: &mut Checks) {
    TICKS.store(0, Ordering::Relaxed);
    let cache = match open(&BOOTS[1]).await {
        Ok(cache) => cache,
        Err(e) => {
            error!("reopen: {}", e);
            checks.check("the second boot reopens the flash", false);
            return;
        }
    };
    let owner = cache.get::<heapless::String<8>>("owner").await;
    let written = cache.get::<i64>("written").await;
    let seen = cache.get::<i64>("seen").await;
    checks.check(
        "reboot: the owner and both counters came back",
        owner.ok().flatten().as_deref() == Some(survivors.winner)
            && written == Ok(Some(i64::from(READINGS)))
            && seen == Ok(Some(survivors.counted)),
    );
    // Cache time resumes at 2,000 ms, the time of the last write flash saw.
    checks.check(
        "reboot: the 5 unexpired readings came back with their values, the expired ones did not",
        readings_alive_from(cache, READINGS - 5).await,
    );
    advance(100);
    checks.check(
        "reboot: time resumed from flash: 100 ms later the oldest of them expired",
        readings_alive_from(cache, READINGS - 4).await,
    );
    let latest = cache.get::<(u32, i16)>("latest").await;
    advance(400);
    let latest_later = cache.get::<(u32, i16)>("latest").await;
    checks.check(
        "reboot: the latest reading lives until 500 ms after it was written, then goes",
        latest == Ok(Some((READINGS - 1, reading(READINGS - 1)))) && latest_later == Ok(None),
    );
    checks.check(
        "reboot: the cache takes writes again",
        cache.incr("written", 1).await == Ok(i64::from(READINGS) + 1),
    );
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    info!("tickcache under embassy on Cortex-M4 (mps2-an386)");
    let mut checks = Checks { failed: 0 };
    if let Some(survivors) = first_boot(&spawner, &mut checks).await {
        second_boot(&survivors, &mut checks).await;
    }
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
