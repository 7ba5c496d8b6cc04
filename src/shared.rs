//! Sharing one cache between interrupt handlers and thread mode, through `critical-section`.

use core::cell::RefCell;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backend::Backend;
use crate::cache::Cache;
use crate::clock::Clock;
use crate::error::Error;
use crate::key::Key;
use crate::timeout::Timeout;

/// A cache behind a `critical_section::Mutex`, so a `static` cache can be used from
/// interrupts and the main loop alike. Each call runs inside one critical section.
///
/// ```
/// use core::sync::atomic::{AtomicU32, Ordering};
/// use tickcache::{Config, MemCache, SharedCache, Table, Wrap32};
///
/// // A 1 kHz tick counter, incremented by the SysTick handler.
/// static TICKS: AtomicU32 = AtomicU32::new(0);
/// fn ticks() -> u32 {
///     TICKS.load(Ordering::Relaxed)
/// }
/// type Clock = Wrap32<fn() -> u32>;
/// static CACHE: SharedCache<Clock, Table<8, 16, 8>, 16> =
///     SharedCache::new(MemCache::new(Wrap32::new(1000, ticks), Table::new(), Config::new()));
///
/// CACHE.lock(|c| c.set("boots", &1u32, 60)).unwrap(); // from thread mode
/// assert_eq!(CACHE.lock(|c| c.incr("boots", 1)).unwrap(), 2); // or from an interrupt
/// ```
pub struct SharedCache<C, B, const K: usize> {
    inner: critical_section::Mutex<RefCell<Cache<C, B, K>>>,
}

impl<C, B, const K: usize> SharedCache<C, B, K> {
    /// Wraps a cache. Usable in a `static`.
    pub const fn new(cache: Cache<C, B, K>) -> Self {
        SharedCache {
            inner: critical_section::Mutex::new(RefCell::new(cache)),
        }
    }

    /// Runs `f` on the cache inside a critical section.
    ///
    /// # Panics
    /// When called again from inside `f` (a re-entrant call on the same cache); use
    /// [`SharedCache::try_lock`] where that can happen.
    pub fn lock<R>(&self, f: impl FnOnce(&mut Cache<C, B, K>) -> R) -> R {
        critical_section::with(|cs| f(&mut self.inner.borrow_ref_mut(cs)))
    }

    /// Like [`SharedCache::lock`], but `None` instead of a panic on a re-entrant call.
    pub fn try_lock<R>(&self, f: impl FnOnce(&mut Cache<C, B, K>) -> R) -> Option<R> {
        critical_section::with(|cs| {
            let mut cache = self.inner.borrow(cs).try_borrow_mut().ok()?;
            Some(f(&mut cache))
        })
    }
}

impl<C: Clock, B: Backend, const K: usize> SharedCache<C, B, K> {
    /// Django's `get_or_set`, with `default` run outside the critical section: it may read
    /// or write this same cache (inside [`SharedCache::lock`] it would panic on the
    /// re-entrant borrow), and interrupts stay enabled while it computes.
    ///
    /// As in Django, the value is read again after the `add`: if another context stored
    /// the key meanwhile, that value is returned (and the default is not stored).
    ///
    /// ```
    /// use tickcache::{Config, ManualClock, MemCache, SharedCache, Table};
    /// let clock = ManualClock::new(1000);
    /// let cache: SharedCache<_, Table<8, 16, 8>, 16> =
    ///     SharedCache::new(MemCache::new(&clock, Table::new(), Config::new()));
    ///
    /// cache.lock(|c| c.set("base", &40u32, 60)).unwrap();
    /// // The default reads the same cache.
    /// let answer = || cache.lock(|c| c.get::<u32>("base")).unwrap().unwrap_or(0) + 2;
    /// assert_eq!(cache.get_or_set("answer", answer, 60).unwrap(), 42);
    /// assert_eq!(cache.lock(|c| c.get::<u32>("answer")).unwrap(), Some(42));
    /// ```
    pub fn get_or_set<'k, T, F>(
        &self,
        key: impl Into<Key<'k>>,
        default: F,
        timeout: impl Into<Timeout>,
    ) -> Result<T, Error<B::Error>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> T,
    {
        let key = key.into();
        if let Some(v) = self.lock(|c| c.get(key))? {
            return Ok(v);
        }
        let v = default();
        let timeout = timeout.into();
        let stored = self.lock(|c| {
            c.add(key, &v, timeout)?;
            c.get(key)
        })?;
        Ok(stored.unwrap_or(v))
    }
}
