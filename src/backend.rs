//! The backend trait: where made keys and encoded values live.
//!
//! [`Cache`](crate::Cache) does the Django part (making and validating keys, resolving
//! timeouts, encoding values) and hands a backend made keys, absolute expiry ticks and a
//! closure that writes the encoded value straight into the backend's storage. A backend
//! keeps Django's locmem semantics for what it stores:
//!
//! - an entry is *live* while `now < expiry`; an expired entry behaves as missing;
//! - `get` hits, `put`s and `incr` make an entry most recent; `has_key`, `touch` and a
//!   refused `add` do not;
//! - a failed `put` of an existing key leaves that key absent, never stale.
//!
//! The crate ships [`Table`](crate::Table) (Django's locmem) and [`Dummy`](crate::Dummy)
//! (Django's dummy). A user backend implements this trait; the persistent backends wrap a
//! [`Table`](crate::Table) and log its changes to flash.

use core::fmt::Debug;

use crate::error::Error;
use crate::value::Kind;

/// Expiry tick of an entry that never expires.
pub const NEVER: u64 = u64::MAX;

/// The expiry a [`Cache`](crate::Cache) resolves a timeout that is already over to (a live
/// entry's expiry is after `now`, so never 0): [`Backend::touch`] with it deletes the key.
pub(crate) const EXPIRED: u64 = 0;

/// What a `put` does with a key that is already live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Put {
    /// Overwrite it (Django's `set`).
    Set,
    /// Leave it and report `false` (Django's `add`).
    Add,
}

/// Storage for made keys and encoded values, with expiry and recency.
///
/// Every method takes the cache time `now` where expiry matters. Keys are made keys (already
/// validated); values are written by the `fill` closure of [`Backend::put`].
pub trait Backend {
    /// The backend's own failure (for example a flash error). `Infallible` for RAM.
    type Error: Debug;

    /// True for a backend whose stores are bound by storage work (a persistent one: a store
    /// programs flash, which dwarfs the instructions around it): a [`Cache`](crate::Cache)
    /// over it is compiled for size where that costs its reads nothing. It reads the cache
    /// time through one out-of-line step, shared by every operation and
    /// [`Cache::close`](crate::Cache::close), and resolves every timeout through the
    /// general arithmetic (no 32-bit fast path for seconds, which only stores take). False
    /// by default: a RAM backend keeps those steps inline.
    const STORAGE_BOUND: bool = false;

    /// Reads a live entry, making it most recent; `read` sees its bytes and kind.
    /// An expired entry is dropped and reads as a miss.
    fn get<R>(
        &mut self,
        key: &[u8],
        now: u64,
        read: impl FnOnce(&[u8], Kind) -> R,
    ) -> Result<Option<R>, Error<Self::Error>>;

    /// True when `key` is live. Does not change recency; drops an expired entry.
    fn has_key(&mut self, key: &[u8], now: u64) -> Result<bool, Error<Self::Error>>;

    /// Stores a value written by `fill` into a buffer of the backend's value capacity.
    ///
    /// With [`Put::Add`] and a live key, returns `Ok(false)` without calling `fill`. When
    /// `fill` fails, its error is returned and the key is left absent; nothing else is lost.
    fn put(
        &mut self,
        key: &[u8],
        mode: Put,
        expiry: u64,
        now: u64,
        fill: impl FnOnce(&mut [u8]) -> Result<(usize, Kind), Error<Self::Error>>,
    ) -> Result<bool, Error<Self::Error>>;

    /// Sets a live entry's expiry without changing recency; `false` if missing or expired.
    /// An `expiry` of 0 is never a live entry's: a [`Cache`](crate::Cache) passes it for a
    /// timeout already over (Django's `touch(key, 0)`), and the backend then removes the key
    /// as [`Backend::delete`] does, answering `true` when it was live (0 does not mean
    /// "never expires", as it does in memcached's protocol).
    fn touch(&mut self, key: &[u8], expiry: u64, now: u64) -> Result<bool, Error<Self::Error>>;

    /// Removes `key`; `true` when a live entry was removed.
    fn delete(&mut self, key: &[u8], now: u64) -> Result<bool, Error<Self::Error>>;

    /// Adds `delta` to an integer entry, keeping its expiry and making it most recent.
    /// Returns the new value; [`Error::NotFound`], [`Error::NotInteger`] or
    /// [`Error::Overflow`] otherwise, with the entry unchanged.
    fn incr(&mut self, key: &[u8], delta: i64, now: u64) -> Result<i64, Error<Self::Error>>;

    /// Moves a live entry to a new key with a new expiry, replacing whatever `to` held, and
    /// makes it most recent (Django's `incr_version`). `false` when `from` is not live.
    fn rekey(
        &mut self,
        from: &[u8],
        to: &[u8],
        expiry: u64,
        now: u64,
    ) -> Result<bool, Error<Self::Error>>;

    /// Removes every entry.
    fn clear(&mut self) -> Result<(), Error<Self::Error>>;

    /// Makes every acknowledged change durable (a no-op for RAM backends).
    fn flush(&mut self) -> Result<(), Error<Self::Error>> {
        Ok(())
    }

    /// [`Backend::flush`] at cache time `now`: a backend that keeps time across reboots
    /// (a persistent one) also records `now`, so time resumes from it. What
    /// [`Cache::close`](crate::Cache::close) calls.
    fn flush_at(&mut self, now: u64) -> Result<(), Error<Self::Error>> {
        let _ = now;
        self.flush()
    }

    /// Number of entries held, live or expired but not yet reclaimed.
    fn len(&self) -> usize;

    /// True when no entry is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A borrowed backend is a backend: a firmware can keep a large [`Table`](crate::Table) in a
/// `static` of its own (all zero bytes, so in `.bss`, costing no flash) and hand the cache a
/// `&'static mut` to it, for example from `cortex_m::singleton!`.
///
/// ```
/// use tickcache::{Backend, Cache, Config, ManualClock, Table};
/// let clock = ManualClock::new(1000);
/// let mut table = Table::<8, 16, 8>::new();
/// let mut cache: Cache<_, &mut Table<8, 16, 8>, 16> = Cache::new(&clock, &mut table, Config::new());
/// cache.set("k", &1u8, 60)?;
/// drop(cache);
/// assert_eq!(table.len(), 1);
/// # Ok::<(), tickcache::Error>(())
/// ```
impl<B: Backend + ?Sized> Backend for &mut B {
    type Error = B::Error;

    const STORAGE_BOUND: bool = B::STORAGE_BOUND;

    #[inline]
    fn get<R>(
        &mut self,
        key: &[u8],
        now: u64,
        read: impl FnOnce(&[u8], Kind) -> R,
    ) -> Result<Option<R>, Error<Self::Error>> {
        (**self).get(key, now, read)
    }

    fn has_key(&mut self, key: &[u8], now: u64) -> Result<bool, Error<Self::Error>> {
        (**self).has_key(key, now)
    }

    #[inline]
    fn put(
        &mut self,
        key: &[u8],
        mode: Put,
        expiry: u64,
        now: u64,
        fill: impl FnOnce(&mut [u8]) -> Result<(usize, Kind), Error<Self::Error>>,
    ) -> Result<bool, Error<Self::Error>> {
        (**self).put(key, mode, expiry, now, fill)
    }

    fn touch(&mut self, key: &[u8], expiry: u64, now: u64) -> Result<bool, Error<Self::Error>> {
        (**self).touch(key, expiry, now)
    }

    fn delete(&mut self, key: &[u8], now: u64) -> Result<bool, Error<Self::Error>> {
        (**self).delete(key, now)
    }

    fn incr(&mut self, key: &[u8], delta: i64, now: u64) -> Result<i64, Error<Self::Error>> {
        (**self).incr(key, delta, now)
    }

    fn rekey(
        &mut self,
        from: &[u8],
        to: &[u8],
        expiry: u64,
        now: u64,
    ) -> Result<bool, Error<Self::Error>> {
        (**self).rekey(from, to, expiry, now)
    }

    fn clear(&mut self) -> Result<(), Error<Self::Error>> {
        (**self).clear()
    }

    fn flush(&mut self) -> Result<(), Error<Self::Error>> {
        (**self).flush()
    }

    fn flush_at(&mut self, now: u64) -> Result<(), Error<Self::Error>> {
        (**self).flush_at(now)
    }

    fn len(&self) -> usize {
        (**self).len()
    }
}
