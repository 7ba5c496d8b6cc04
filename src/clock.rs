//! Monotonic tick clocks.
//!
//! tickcache never reads wall time. Expiry is measured in *ticks* of a clock the firmware
//! provides: a SysTick count, a timer, an RTC. A [`Clock`] returns a monotonic `u64` and says
//! how many ticks make a second, so timeouts given in seconds or milliseconds convert once.
//!
//! - [`ManualClock`]: advanced by hand, for tests and simulations.
//! - [`Wrap32`]: extends a wrapping 32-bit hardware counter to 64 bits. It must be polled
//!   (any cache call polls it) at least once per wrap of the counter.
//! - `StdClock` (feature `std`): the host's monotonic clock in microseconds.

use core::cell::Cell;

/// A monotonic source of time in ticks.
///
/// `now` must never go backwards. The tick rate is fixed for the clock's lifetime.
pub trait Clock {
    /// Ticks per second (for example 1000 for a 1 ms SysTick).
    fn ticks_per_second(&self) -> u32;

    /// The current time in ticks.
    fn now(&self) -> u64;
}

impl<C: Clock + ?Sized> Clock for &C {
    #[inline]
    fn ticks_per_second(&self) -> u32 {
        (**self).ticks_per_second()
    }
    #[inline]
    fn now(&self) -> u64 {
        (**self).now()
    }
}

/// A clock that only moves when told to: the clock of tests and host simulations.
///
/// It lives in a [`Cell`], so a shared reference is enough to advance it while a cache
/// holds `&ManualClock`.
///
/// ```
/// use tickcache::{Clock, ManualClock};
/// let clock = ManualClock::new(1000); // 1 kHz
/// clock.advance_secs(30);
/// assert_eq!(clock.now(), 30_000);
/// ```
#[derive(Debug)]
pub struct ManualClock {
    now: Cell<u64>,
    rate: u32,
}

impl ManualClock {
    /// A clock at tick 0 running at `ticks_per_second` (0 is taken as 1).
    pub const fn new(ticks_per_second: u32) -> Self {
        let rate = if ticks_per_second == 0 {
            1
        } else {
            ticks_per_second
        };
        Self {
            now: Cell::new(0),
            rate,
        }
    }

    /// Moves the clock forward by `ticks` (saturating at `u64::MAX`).
    pub fn advance(&self, ticks: u64) {
        self.now.set(self.now.get().saturating_add(ticks));
    }

    /// Moves the clock forward by whole seconds.
    pub fn advance_secs(&self, secs: u64) {
        self.advance(secs.saturating_mul(u64::from(self.rate)));
    }

    /// Moves the clock forward by milliseconds (rounded down to whole ticks).
    pub fn advance_millis(&self, millis: u64) {
        let ticks = u128::from(millis) * u128::from(self.rate) / 1000;
        self.advance(u64::try_from(ticks).unwrap_or(u64::MAX));
    }

    /// Sets the time. A value below the current one is ignored: the clock is monotonic.
    pub fn set(&self, ticks: u64) {
        if ticks > self.now.get() {
            self.now.set(ticks);
        }
    }
}

impl Clock for ManualClock {
    #[inline]
    fn ticks_per_second(&self) -> u32 {
        self.rate
    }
    #[inline]
    fn now(&self) -> u64 {
        self.now.get()
    }
}

/// Extends a wrapping 32-bit counter (a SysTick-driven tick count, a timer register) to a
/// monotonic 64-bit clock.
///
/// Each call to [`Clock::now`] reads the counter; a value below the previous one means the
/// counter wrapped once. The counter must therefore be read at least once per wrap
/// (every 49.7 days for a 1 kHz count): call [`Wrap32::poll`] from a periodic task if the
/// cache may sit unused for that long.
///
/// ```
/// use core::cell::Cell;
/// use tickcache::{Clock, Wrap32};
/// let hw = Cell::new(u32::MAX - 1);
/// let clock = Wrap32::new(1000, || hw.get());
/// assert_eq!(clock.now(), u64::from(u32::MAX - 1));
/// hw.set(3); // the counter wrapped
/// assert_eq!(clock.now(), (1u64 << 32) + 3);
/// ```
pub struct Wrap32<F> {
    read: F,
    rate: u32,
    last: Cell<u32>,
    /// The wraps counted: the high half of the time (the low half is the counter), so
    /// [`Wrap32::poll`] reads and writes one word, not a 64-bit sum whose low half is 0.
    wraps: Cell<u32>,
}

impl<F: Fn() -> u32> Wrap32<F> {
    /// Wraps the counter reader `read`, which ticks `ticks_per_second` times a second.
    pub const fn new(ticks_per_second: u32, read: F) -> Self {
        let rate = if ticks_per_second == 0 {
            1
        } else {
            ticks_per_second
        };
        Self {
            read,
            rate,
            last: Cell::new(0),
            wraps: Cell::new(0),
        }
    }

    /// Reads the counter and records a wrap if one happened; returns the extended time.
    pub fn poll(&self) -> u64 {
        let raw = (self.read)();
        if raw < self.last.get() {
            self.wraps.set(self.wraps.get().wrapping_add(1));
        }
        self.last.set(raw);
        u64::from(self.wraps.get()) << 32 | u64::from(raw)
    }
}

impl<F: Fn() -> u32> Clock for Wrap32<F> {
    #[inline]
    fn ticks_per_second(&self) -> u32 {
        self.rate
    }
    #[inline]
    fn now(&self) -> u64 {
        self.poll()
    }
}

impl<F> core::fmt::Debug for Wrap32<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Wrap32")
            .field("rate", &self.rate)
            .field("last", &self.last.get())
            .field("wraps", &self.wraps.get())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_saturates_and_is_monotonic() {
        let c = ManualClock::new(1_000_000);
        c.advance_secs(u64::MAX);
        assert_eq!(c.now(), u64::MAX);
        c.set(5);
        assert_eq!(c.now(), u64::MAX);
    }

    #[test]
    fn wrap32_counts_many_wraps() {
        let hw = Cell::new(0u32);
        let clock = Wrap32::new(1, || hw.get());
        let mut expected = 0u64;
        for _ in 0..5 {
            for step in [0x4000_0000u32, 0x4000_0000, 0x4000_0000, 0x4000_0000] {
                hw.set(hw.get().wrapping_add(step));
                expected += u64::from(step);
                assert_eq!(clock.now(), expected);
            }
        }
    }
}
