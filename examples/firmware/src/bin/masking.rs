//! How long interrupts stay masked by a shared cache call, on the target: the blocking
//! `SharedCache` (critical section) masks them for the whole call, a persistent `set` that
//! compacts the flash log included; the `AsyncSharedCache` masks them only while its
//! async mutex updates its own state, whatever the backend does. Run by `masking.sh`.
//!
//! Method: QEMU with `-icount shift=0` (1 ns of virtual time per instruction) and SysTick
//! at 25 MHz on mps2-an386: one tick per 40 instructions, checked by a calibration loop.
//! A blocking call runs inside one critical section from start to end, so its duration is
//! the time interrupts stay masked (to one tick, 40 instructions). The async cache's
//! masked windows (one to take the lock, one to give it back) are both inside
//! `try_with(|_| Ok(()))`; 1,024 of them timed in one loop give their cost per call to a
//! fraction of an instruction, an upper bound for the two windows together.
//!
//! The latency probe measures masking from the interrupt's side, whatever code masks:
//! SysTick fires every 97 ticks (3,880 instructions, a prime so that it falls due at every
//! phase of the calls), and its handler records how long after falling due it ran. A
//! window masked when it falls due delays it by the rest of the window, so the longest
//! delay over many exceptions approaches the longest masked window from below; it is
//! checked on the blocking memory sets, whose windows are timed exactly.
//!
//! The async persistent backend (`AsyncPersistent`, write-through) runs the same 400 sets
//! through an `AsyncSharedCache` on its own RAM-backed NOR, through the async flash traits
//! (each operation hands control back once), polled with a no-op waker: first timed with
//! SysTick counting freely (how long the compacting sets run, interrupts enabled, and
//! their longest single poll, the longest stretch the executor is held), then again under
//! the latency probe.
//!
//! The flash is RAM-backed NOR (QEMU's board has no flash controller to drive): it erases
//! in a few thousand instructions, where a real part's erase adds its own time
//! (milliseconds) to every compacting blocking call.

#![no_std]
#![no_main]

use core::future::Future;
use core::hint::black_box;
use core::pin::pin;
use core::sync::atomic::{AtomicU32, Ordering};
use core::task::{Context, Poll, Waker};

use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;
use cortex_m_semihosting::{debug, hprintln};
use embedded_storage::nor_flash::NorFlash;
use embedded_storage_async::nor_flash as nor_async;
use tickcache::flash::{AsyncPersistent, Persistent, Policy};
use tickcache::{AsyncSharedCache, Config, Key, ManualClock, MemCache, SharedCache, Table};

#[path = "../ramflash.rs"]
mod ramflash;
#[path = "../systick.rs"]
mod systick;

/// 4 pages of 1 KiB of NOR flash in RAM.
type Flash = ramflash::RamFlash<4096>;
/// Calls per workload.
const CALLS: u32 = 400;
/// Distinct keys: more than the 16 entries, so tables cull and the log compacts.
const KEYS: u32 = 24;

/// Instructions per tick, from a loop of a known instruction count (two per turn); `None`
/// unless QEMU runs with `-icount shift=0` on mps2-an386 (40 instructions a tick).
fn calibrate() -> Option<u32> {
    const TURNS: u32 = 1_000_000;
    let ticks = systick::known_loop(TURNS)?;
    let per_tick = (2 * TURNS + ticks / 2) / ticks;
    (per_tick == 40).then_some(per_tick)
}

/// The longest of `CALLS` timed calls: (all calls, the calls for which `compacted` said
/// yes), in ticks, and how many calls failed or compacted.
struct Longest {
    any: u32,
    compacting: u32,
    compactions: u32,
    failed: u32,
}

fn longest(mut call: impl FnMut(u32) -> bool, mut compacted: impl FnMut() -> bool) -> Longest {
    let mut l = Longest {
        any: 0,
        compacting: 0,
        compactions: 0,
        failed: 0,
    };
    for i in 0..CALLS {
        let start = systick::now();
        let ok = call(i);
        let t = systick::since(start);
        l.failed += u32::from(!ok);
        l.any = l.any.max(t);
        if compacted() {
            l.compactions += 1;
            l.compacting = l.compacting.max(t);
        }
    }
    l
}

fn key(i: u32) -> Key<'static> {
    Key::new("sensor").version((i % KEYS) as i32)
}

#[cortex_m_rt::entry]
fn main() -> ! {
    let Some(mut p) = cortex_m::Peripherals::take() else {
        stop(false)
    };
    systick::start(&mut p.SYST);
    let Some(per_tick) = calibrate() else {
        hprintln!("calibration failed: run under QEMU mps2-an386 with -icount shift=0");
        stop(false)
    };
    let mut failed = 0;
    let clock = ManualClock::new(1000);

    // Blocking, memory: every call is masked from start to end.
    let mem = SharedCache::new(MemCache::<_, 16, 24, 16>::new(
        &clock,
        Table::new(),
        Config::new(),
    ));
    let l = longest(|i| mem.with(|c| c.set(key(i), &i, 600)).is_ok(), || false);
    failed += l.failed;
    hprintln!(
        "masking blocking_memory_set {} instructions (longest of {} sets)",
        l.any * per_tick,
        CALLS
    );

    // Blocking, persistent (write-through on RAM-backed NOR): the sets that compact.
    let Some(flash) = cortex_m::singleton!(: Flash = Flash::new()) else {
        stop(false)
    };
    failed += u32::from(flash.erase(0, 4096).is_err());
    type P<'f> = Persistent<&'f mut Flash, 16, 24, 16>;
    match P::open(&mut *flash, 0..4096, Table::new(), Policy::WriteThrough) {
        Ok(p) => {
            let shared = SharedCache::new(p.into_cache(&clock, Config::new()));
            let erases = core::cell::Cell::new(0u64);
            let l = longest(
                |i| shared.with(|c| c.set(key(i), &i, 600)).is_ok(),
                || {
                    let now = shared
                        .lock(|c| c.backend_mut().wear().map(|w| w.total))
                        .unwrap_or(0);
                    now != erases.replace(now)
                },
            );
            failed += l.failed + u32::from(l.compactions == 0);
            hprintln!(
                "masking blocking_persistent_set {} instructions (longest of {} sets)",
                l.any * per_tick,
                CALLS
            );
            hprintln!(
                "masking blocking_persistent_compacting_set {} instructions (longest of {} sets that erased a page)",
                l.compacting * per_tick,
                l.compactions
            );
        }
        Err(_) => failed += 1,
    }

    // Async: only the mutex's own bookkeeping is masked, whatever the call does.
    let tasks = AsyncSharedCache::new(MemCache::<_, 16, 24, 16>::new(
        &clock,
        Table::new(),
        Config::new(),
    ));
    const TIMED: u32 = 1024;
    let start = systick::now();
    for _ in 0..TIMED {
        failed += u32::from(black_box(&tasks).try_with(|_| Ok(())).is_err());
    }
    let ticks = systick::since(start);
    let per_call = u64::from(ticks) * u64::from(per_tick) * 100 / u64::from(TIMED);
    hprintln!(
        "masking async_lock_and_unlock {}.{:02} instructions (both masked windows and the call around them, mean of {})",
        per_call / 100,
        per_call % 100,
        TIMED
    );

    // The latency probe, checked on calls known to mask: the blocking memory sets above.
    let mem = SharedCache::new(MemCache::<_, 16, 24, 16>::new(
        &clock,
        Table::new(),
        Config::new(),
    ));
    let late = probe(&mut p.SYST, || {
        for i in 0..CALLS {
            failed += u32::from(mem.with(|c| c.set(key(i), &i, 600)).is_err());
        }
    });
    late.print(
        "blocking_memory_set_latency",
        per_tick,
        format_args!("{} sets", CALLS),
    );

    // The async memory cache under the probe: only the lock's bookkeeping masks.
    let late = probe(&mut p.SYST, || {
        for i in 0..CALLS {
            failed += u32::from(run(tasks.set(key(i), &i, 600), &mut 0).is_err());
        }
    });
    late.print(
        "async_memory_set_latency",
        per_tick,
        format_args!("{} sets", CALLS),
    );

    failed += async_persistent(&mut p.SYST, &clock, per_tick);

    if failed != 0 {
        hprintln!("{} calls failed", failed);
    }
    stop(failed == 0)
}

/// A flash driver that counts the pages it erased: [`ramflash::AsyncRamFlash`], passed
/// through.
struct Counted<'f> {
    flash: ramflash::AsyncRamFlash<'f, 4096>,
    erases: u32,
}

impl nor_async::ErrorType for Counted<'_> {
    type Error = ramflash::RamFlashError;
}

impl nor_async::ReadNorFlash for Counted<'_> {
    const READ_SIZE: usize =
        <ramflash::AsyncRamFlash<'static, 4096> as nor_async::ReadNorFlash>::READ_SIZE;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        nor_async::ReadNorFlash::read(&mut self.flash, offset, bytes).await
    }

    fn capacity(&self) -> usize {
        nor_async::ReadNorFlash::capacity(&self.flash)
    }
}

impl nor_async::NorFlash for Counted<'_> {
    const WRITE_SIZE: usize =
        <ramflash::AsyncRamFlash<'static, 4096> as nor_async::NorFlash>::WRITE_SIZE;
    const ERASE_SIZE: usize =
        <ramflash::AsyncRamFlash<'static, 4096> as nor_async::NorFlash>::ERASE_SIZE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        nor_async::NorFlash::erase(&mut self.flash, from, to).await?;
        self.erases += (to - from) / Self::ERASE_SIZE as u32;
        Ok(())
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        nor_async::NorFlash::write(&mut self.flash, offset, bytes).await
    }
}

/// Polls `f` to completion with a no-op waker, as an executor with nothing else to run
/// would; `longest` is raised to the longest single poll, in ticks (the longest stretch
/// the call keeps the executor from other tasks).
fn run<F: Future>(f: F, longest: &mut u32) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        let start = systick::now();
        let poll = f.as_mut().poll(&mut cx);
        *longest = (*longest).max(systick::since(start));
        if let Poll::Ready(out) = poll {
            return out;
        }
    }
}

/// SysTick period for the latency probe, in ticks: a prime, so its exceptions land at every
/// phase of the calls.
const PROBE_PERIOD: u32 = 97;
/// The latest SysTick exception, in ticks after it fell due, and how many fired.
static LATEST: AtomicU32 = AtomicU32::new(0);
static FIRED: AtomicU32 = AtomicU32::new(0);

/// The latency probe: with SysTick periodic, how long after falling due each exception
/// runs. Interrupts masked when it falls due delay it by the rest of the masked window.
#[exception]
fn SysTick() {
    // The exception falls due as the counter reaches 0; it reloads `PROBE_PERIOD - 1` one
    // tick later and counts down from there.
    let late = match SYST::get_current() {
        0 => 0,
        now => PROBE_PERIOD.saturating_sub(now),
    };
    LATEST.fetch_max(late, Ordering::Relaxed);

    FIRED.fetch_add(1, Ordering::Relaxed);
}

/// What the latency probe saw: the longest wait of a SysTick exception, in ticks, and how
/// many fired.
struct Latency {
    longest: u32,
    fired: u32,
}

impl Latency {
    /// Prints the probe's figure: the longest wait, in instructions (a wait under one
    /// tick reads as 0).
    fn print(&self, name: &str, per_tick: u32, during: core::fmt::Arguments<'_>) {
        hprintln!(
            "masking {} {} instructions (longest wait of {} SysTick exceptions, one every {} instructions, to one tick, {} instructions, during {})",
            name,
            self.longest * per_tick,
            self.fired,
            PROBE_PERIOD * per_tick,
            per_tick,
            during
        );
    }
}

/// Runs `work` with SysTick firing every [`PROBE_PERIOD`] ticks, then restarts it as the
/// free-running counter.
fn probe(syst: &mut SYST, work: impl FnOnce()) -> Latency {
    LATEST.store(0, Ordering::Relaxed);
    FIRED.store(0, Ordering::Relaxed);
    systick::periodic(syst, PROBE_PERIOD);
    work();
    systick::start(syst);
    Latency {
        longest: LATEST.load(Ordering::Relaxed),
        fired: FIRED.load(Ordering::Relaxed),
    }
}

/// 400 sets through an `AsyncSharedCache` over the async persistent backend on a freshly
/// erased `cells` (through the async flash traits), each polled to completion: the longest
/// set and the longest of those that compacted, in ticks, and the longest single poll of a
/// compacting set.
fn async_sets(cells: &mut Flash, clock: &ManualClock) -> (Longest, u32) {
    let mut l = Longest {
        any: 0,
        compacting: 0,
        compactions: 0,
        failed: 0,
    };
    let mut longest_poll = 0;
    if cells.erase(0, 4096).is_err() {
        l.failed += 1;
        return (l, 0);
    }
    let flash = Counted {
        flash: ramflash::AsyncRamFlash(cells),
        erases: 0,
    };
    type A<'f> = AsyncPersistent<Counted<'f>, 16, 24, 16>;
    let opened = run(
        A::open(flash, 0..4096, Table::new(), Policy::WriteThrough),
        &mut 0,
    );
    let Ok(p) = opened else {
        l.failed += 1;
        return (l, 0);
    };
    let shared = AsyncSharedCache::new(p.into_cache(clock, Config::new()));
    let erases = || {
        shared
            .try_with(|c| Ok(c.backend().flash().erases))
            .unwrap_or(0)
    };
    let mut seen = erases();
    for i in 0..CALLS {
        let mut poll = 0;
        let start = systick::now();
        let ok = run(shared.set(key(i), &i, 600), &mut poll).is_ok();
        let t = systick::since(start);
        l.failed += u32::from(!ok);
        l.any = l.any.max(t);
        let now = erases();
        if now != seen {
            seen = now;
            l.compactions += 1;
            l.compacting = l.compacting.max(t);
            longest_poll = longest_poll.max(poll);
        }
    }
    (l, longest_poll)
}

/// The async persistent figures: [`async_sets`] twice on the same RAM-backed NOR. First
/// SysTick counts freely: how long the compacting sets ran (interrupts enabled) and their
/// longest single poll. Then under the latency probe: the longest any SysTick exception
/// waited. Returns the calls that failed.
fn async_persistent(syst: &mut SYST, clock: &ManualClock, per_tick: u32) -> u32 {
    let Some(cells) = cortex_m::singleton!(: Flash = Flash::new()) else {
        return 1;
    };
    let (l, longest_poll) = async_sets(cells, clock);
    let mut failed = l.failed + u32::from(l.compactions == 0);
    hprintln!(
        "async_persistent_compacting_set {} instructions with interrupts enabled (longest of {} sets that erased a page; the longest single poll among them, the executor held, {})",
        l.compacting * per_tick,
        l.compactions,
        longest_poll * per_tick
    );
    let mut probed = None;
    let late = probe(syst, || probed = Some(async_sets(cells, clock)));
    let compactions = probed.map_or(0, |(l, _)| {
        failed += l.failed;
        l.compactions
    });
    failed += u32::from(compactions == 0);
    late.print(
        "async_persistent_set_latency",
        per_tick,
        format_args!("{} sets, {} of them compacting", CALLS, compactions),
    );
    failed
}

/// Ends the program: exit status 0 when `ok`.
fn stop(ok: bool) -> ! {
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    stop(false)
}
