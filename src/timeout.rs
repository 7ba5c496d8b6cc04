//! Timeouts and their conversion to expiry ticks.
//!
//! Django's rules: the default timeout comes from the configuration (300 s unless set),
//! `None` never expires, and a timeout of zero or below stores an entry that is already
//! expired. tickcache keeps those rules; conversion to ticks happens once per call and
//! saturates, so no input overflows or panics. A positive timeout shorter than one tick
//! rounds up to one tick, so it never expires the entry at once (Django's locmem keeps a
//! 0.5 s entry).

use core::time::Duration;

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
        match self.ticks_unbounded(rate) {
            Some(t) if t >= u64::MAX - 1 => Some(u64::MAX - 1),
            other => other,
        }
    }

    /// [`Timeout::to_ticks`] without its bound at `u64::MAX - 1`: what `Cache::expiry`
    /// uses, since it bounds the expiry tick (the time plus these ticks) below
    /// [`NEVER`](crate::backend::NEVER) anyway, and a second bound cost 20 bytes of
    /// firmware.
    pub(crate) const fn ticks_unbounded(self, rate: u32) -> Option<u64> {
        // 64-bit saturating arithmetic only: no 128-bit multiply or divide in firmware.
        let rate = rate as u64;
        let ticks = match self {
            Timeout::Never => return None,
            // 300 times a 32-bit rate: no overflow.
            Timeout::Default => 300 * rate,
            // Below 2^32 seconds `mul_sat` is one 32 x 32-bit product (its high half is
            // 0); a separate arm for it cost 8 bytes of firmware, and `Cache::expiry`
            // takes the common timeouts in a 32-bit path of its own before this.
            Timeout::Secs(s) if s > 0 => mul_sat(s as u64, rate),
            Timeout::Millis(ms) if ms > 0 => {
                // floor(ms * rate / 1000) exactly, without a 128-bit product:
                // ms = 1000 q + r, so it is q * rate + floor(r * rate / 1000).
                let (q, r) = crate::value::divrem_small(ms as u64, 1000);
                let (part, _) = crate::value::divrem_small(r as u64 * rate, 1000);
                mul_sat(q, rate).saturating_add(part)
            }
            Timeout::Ticks(t) if t > 0 => t as u64,
            _ => return Some(0),
        };
        // Positive from here on: never shorter than one tick.
        if ticks == 0 {
            Some(1)
        } else {
            Some(ticks)
        }
    }

    /// True when the timeout is zero or negative: storing with it expires the entry at once.
    pub const fn is_expired_at_once(self, rate: u32) -> bool {
        matches!(self.to_ticks(rate), Some(0))
    }
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
