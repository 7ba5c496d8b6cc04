//! Timeouts and their conversion to expiry ticks.
//!
//! Django's rules: the default timeout comes from the configuration (300 s unless set),
//! `None` never expires, and a timeout of zero or below stores an entry that is already
//! expired. tickcache keeps those rules; conversion to ticks happens once per call and
//! saturates, so no input overflows or panics. A positive timeout shorter than one tick
//! rounds up to one tick, so it never expires the entry at once (Django's locmem keeps a
//! 0.5 s entry).

use core::time::Duration;

use crate::backend::{EXPIRED, NEVER};

/// How long an entry lives.
///
/// Integers convert to seconds, so `cache.set("k", &1, 75)` stores for 75 s; a
/// [`Duration`] converts too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Timeout {
    /// The cache's configured default (Django's `DEFAULT_TIMEOUT`).
    #[default]
    Default,
    /// Never expires (Django's `None`).
    Never,
    /// Whole seconds; zero or negative means already expired.
    Secs(i64),
    /// Milliseconds; zero or negative means already expired. Rounded down to whole ticks,
    /// but never below one tick.
    Millis(i64),
    /// Clock ticks; zero or negative means already expired.
    Ticks(i64),
}

impl Timeout {
    /// Django's default: 300 seconds.
    pub const DJANGO_DEFAULT: Timeout = Timeout::Secs(300);

    /// Converts to a tick count at `rate` ticks per second.
    ///
    /// Returns `None` for [`Timeout::Never`], `Some(0)` for a timeout that is already over
    /// (zero or negative), at least `Some(1)` for a positive one (a positive timeout shorter
    /// than a tick keeps the entry for one tick), and saturates at `u64::MAX - 1` (so it never
    /// collides with "never"). `Default` is resolved by the caller; here it counts as
    /// Django's 300 s.
    pub const fn to_ticks(self, rate: u32) -> Option<u64> {
        // The expiry tick of an entry stored at time 0 is its count of ticks.
        match self.expiry_at(0, rate) {
            NEVER => None,
            t => Some(t),
        }
    }

    /// The expiry tick of an entry stored at `now` with this timeout at `rate` ticks per
    /// second: [`NEVER`] for [`Timeout::Never`], [`EXPIRED`] (0) for a timeout that is
    /// already over, else `now` plus [`Timeout::to_ticks`]' ticks, at most `NEVER - 1`.
    /// `Default` is resolved by the caller; here it counts as Django's 300 s.
    ///
    /// Every kind of timeout is a count of units and a rate of ticks per unit (a tick's
    /// rate is 1; milliseconds divide by 1,000 as well), so one product serves them all.
    pub(crate) const fn expiry_at(self, now: u64, rate: u32) -> u64 {
        let (n, per, millis) = match self {
            Timeout::Never => return NEVER,
            Timeout::Default => (300, rate, false),
            Timeout::Secs(s) => (s, rate, false),
            Timeout::Millis(ms) => (ms, rate, true),
            Timeout::Ticks(t) => (t, 1, false),
        };
        if n <= 0 {
            return EXPIRED;
        }
        // floor(ms * rate / 1000) exactly, without a 128-bit product: ms = 1000 q + r, so
        // it is q * rate + floor(r * rate / 1000); seconds and ticks have no rest.
        let (q, r) = if millis {
            crate::value::divrem_small(n as u64, 1000)
        } else {
            (n as u64, 0)
        };
        ticks_after(now, q, r, per, 1000)
    }

    /// [`Timeout::expiry_at`] with one path for every kind of timeout: seconds and ticks
    /// divided by 1 (which the division answers at once) as milliseconds are by 1,000.
    /// Smaller where any kind may come (a [storage-bound](crate::Backend::STORAGE_BOUND)
    /// cache resolves every timeout here); `expiry_at` leaves seconds and ticks undivided,
    /// so a firmware that never gives milliseconds links no division.
    pub(crate) const fn expiry_uniform(self, now: u64, rate: u32) -> u64 {
        let (n, per, div) = match self {
            Timeout::Never => return NEVER,
            Timeout::Default => (300, rate, 1),
            Timeout::Secs(s) => (s, rate, 1),
            Timeout::Millis(ms) => (ms, rate, 1000),
            Timeout::Ticks(t) => (t, 1, 1),
        };
        if n <= 0 {
            return EXPIRED;
        }
        let (q, r) = crate::value::divrem_small(n as u64, div);
        ticks_after(now, q, r, per, div as u32)
    }

    /// True when the timeout is zero or negative: storing with it expires the entry at once.
    pub const fn is_expired_at_once(self, rate: u32) -> bool {
        matches!(self.to_ticks(rate), Some(0))
    }
}

/// The expiry of a positive timeout of `div q + r` units of `per / div` ticks, `r` below
/// `div` (at most 1,000), at `now` (below [`NEVER`]): `now` plus floor((div q + r) per / div)
/// ticks, at least one, at most `NEVER - 1`. Without a 128-bit product: with
/// per = div a + b, floor(r per / div) = r a + floor(r b / div), below 2^32.
#[inline(always)]
const fn ticks_after(now: u64, q: u64, r: u32, per: u32, div: u32) -> u64 {
    let part = r * (per / div) + r * (per % div) / div;
    let ticks = mul_sat(q, per as u64).saturating_add(part as u64);
    // Positive: never shorter than one tick (an OR of the zero test: no select of
    // 64-bit values).
    let ticks = ticks | (ticks == 0) as u64;
    // `now` is below `NEVER` (cache time is): `now + 1` plus the ticks saturates
    // exactly when `now` plus them would reach `NEVER`, and less one it is then
    // `NEVER - 1`, with no 64-bit compare for the bound.
    now.wrapping_add(1).saturating_add(ticks) - 1
}

/// `x * rate` for a 32-bit `rate`, saturating at `u64::MAX`: two 32 x 32-bit products
/// rather than a 64 x 64-bit multiply with its overflow check, which 32-bit cores spell out
/// at length.
const fn mul_sat(x: u64, rate: u64) -> u64 {
    let high = (x >> 32) * rate;
    if high >> 32 != 0 {
        return u64::MAX;
    }
    ((x & 0xffff_ffff) * rate).saturating_add(high << 32)
}

macro_rules! from_secs {
    ($($t:ty),*) => {$(
        impl From<$t> for Timeout {
            /// Seconds, as in Django's `timeout=75`.
            fn from(secs: $t) -> Self {
                Timeout::Secs(i64::try_from(secs).unwrap_or(i64::MAX))
            }
        }
    )*};
}
from_secs!(i8, i16, i32, i64, u8, u16, u32, u64, isize, usize);

impl From<Duration> for Timeout {
    /// A duration, kept to the millisecond; a sub-millisecond rest rounds up, so a positive
    /// duration never becomes an already-expired timeout.
    fn from(d: Duration) -> Self {
        let millis = d.as_millis() + u128::from(d.subsec_nanos() % 1_000_000 != 0);
        Timeout::Millis(i64::try_from(millis).unwrap_or(i64::MAX))
    }
}

impl From<Option<u32>> for Timeout {
    /// Django's `timeout=None` is `Timeout::Never`; `Some(secs)` is seconds.
    fn from(t: Option<u32>) -> Self {
        match t {
            None => Timeout::Never,
            Some(s) => Timeout::Secs(i64::from(s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `expiry_at` against the rules in 128-bit arithmetic: every kind of timeout, counts
    /// from `i64::MIN` to `i64::MAX`, rates from 0 to `u32::MAX` (the rest of milliseconds
    /// times the rate at its largest), times up to `NEVER - 1`.
    #[test]
    fn expiry_ticks_follow_the_rules_exactly() {
        let counts = [
            i64::MIN,
            -1,
            0,
            1,
            2,
            999,
            1000,
            1001,
            0xffff,
            0x1_0000,
            0xffff_ffff,
            0x1_0000_0000,
            i64::MAX / 1000,
            i64::MAX,
        ];
        let rates = [0, 1, 3, 1000, 0xffff, 0x1_0000, 32_768, u32::MAX];
        let times = [0, 1, 1 << 40, (1 << 62) - 1, 1 << 62, NEVER - 2, NEVER - 1];
        for &n in &counts {
            for &rate in &rates {
                for &now in &times {
                    for t in [
                        Timeout::Secs(n),
                        Timeout::Millis(n),
                        Timeout::Ticks(n),
                        Timeout::Default,
                        Timeout::Never,
                    ] {
                        let r = u128::from(rate);
                        // The ticks of a positive timeout, `None` for one already over.
                        let ticks = match t {
                            Timeout::Never => Some(u128::MAX),
                            Timeout::Default => Some(300 * r),
                            Timeout::Secs(s) if s > 0 => Some(s as u128 * r),
                            Timeout::Millis(ms) if ms > 0 => Some(ms as u128 * r / 1000),
                            Timeout::Ticks(t) if t > 0 => Some(t as u128),
                            _ => None,
                        };
                        let want = match ticks {
                            None => EXPIRED,
                            Some(u128::MAX) => NEVER,
                            // At least one tick, and at most `NEVER - 1`.
                            Some(k) => {
                                (u128::from(now) + k.max(1)).min(u128::from(NEVER - 1)) as u64
                            }
                        };
                        assert_eq!(t.expiry_at(now, rate), want, "{t:?} at {rate}/s, {now}");
                        let uniform = t.expiry_uniform(now, rate);
                        assert_eq!(uniform, want, "uniform {t:?} at {rate}/s, {now}");
                    }
                }
            }
        }
    }

    #[test]
    fn conversions_saturate() {
        assert_eq!(
            Timeout::Secs(i64::MAX).to_ticks(u32::MAX),
            Some(u64::MAX - 1)
        );
        assert_eq!(Timeout::Secs(i64::MIN).to_ticks(u32::MAX), Some(0));
        // Both sides of the 32 x 32-bit fast path agree with the saturating product.
        let big = u64::from(u32::MAX);
        assert_eq!(
            Timeout::Secs(big as i64).to_ticks(u32::MAX),
            Some(big * big)
        );
        assert_eq!(
            Timeout::Secs(big as i64 + 1).to_ticks(u32::MAX),
            Some((big + 1) * big)
        );
        assert_eq!(Timeout::Secs(300).to_ticks(1000), Some(300_000));
        // Both sides of 65,536 seconds and ticks per second, where `Cache::expiry` takes
        // its 32-bit product: the general path gives the same ticks.
        for (s, rate) in [(0xffff, 0xffff), (0x1_0000, 0xffff), (0xffff, 0x1_0000)] {
            assert_eq!(
                Timeout::Secs(s).to_ticks(rate),
                Some(s as u64 * u64::from(rate))
            );
        }
        assert_eq!(Timeout::Millis(1).to_ticks(1000), Some(1));
        assert_eq!(Timeout::Millis(1).to_ticks(100), Some(1));
        assert_eq!(Timeout::Millis(0).to_ticks(100), Some(0));
        assert_eq!(Timeout::Millis(-1).to_ticks(100), Some(0));
        assert_eq!(Timeout::Millis(15).to_ticks(100), Some(1));
        assert_eq!(Timeout::Millis(25).to_ticks(100), Some(2));
        assert_eq!(Timeout::Secs(1).to_ticks(0), Some(1));
        assert_eq!(Timeout::Default.to_ticks(0), Some(1));
        assert_eq!(Timeout::Secs(0).to_ticks(1000), Some(0));
        assert_eq!(Timeout::Never.to_ticks(1000), None);
        assert_eq!(
            Timeout::from(Duration::from_millis(1500)).to_ticks(1000),
            Some(1500)
        );
        assert_eq!(
            Timeout::from(Duration::from_micros(1)).to_ticks(1000),
            Some(1)
        );
        assert!(Timeout::from(Duration::MAX).to_ticks(1000) >= Some(i64::MAX as u64));
    }
}
