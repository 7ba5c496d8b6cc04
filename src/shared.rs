//! Sharing behind a blocking lock, generic over embassy-sync's [`RawMutex`]: one cache
//! between interrupt handlers and thread mode ([`SharedCache`]), and one store under several
//! configured caches ([`Store`]).
//!
//! Tasks that await storage share an [`AsyncSharedCache`](crate::AsyncSharedCache) instead.

use core::cell::RefCell;

use embassy_sync::blocking_mutex::raw::{CriticalSectionRawMutex, RawMutex};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backend::{Backend, Put};
use crate::cache::Cache;
use crate::clock::Clock;
use crate::error::Error;
use crate::key::AsKey;
use crate::timeout::Timeout;
use crate::value::Kind;

/// A cache behind a blocking lock, so a `static` cache can be used from interrupts and the
/// main loop alike. Each call runs with the lock held, start to end.
///
/// The lock is embassy-sync's [`RawMutex`] `M`:
/// - [`CriticalSectionRawMutex`] (the default, and what [`SharedCache::new`] builds): usable
///   from interrupt handlers and thread mode; interrupts are masked for the length of each
///   call (a memory cache call is short).
/// - `ThreadModeRawMutex`: thread mode only (a call from an interrupt handler panics);
///   interrupts stay enabled. Single-core parts only.
/// - [`NoopRawMutex`](crate::mutex::NoopRawMutex): one execution context (not `Sync`, so not
///   in a `static`); no cost at all.
///
/// Tasks that await storage (an async flash) share an
/// [`AsyncSharedCache`](crate::AsyncSharedCache), which never masks interrupts across a call.
///
/// [`SharedCache::lock`] is for straight-line code. Where code run inside a call may use
/// the same cache again (a value's `Serialize`, a closure), use [`SharedCache::with`]: the
/// inner call gets [`Error::Busy`] instead of a panic.
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
///
/// Another lock is one type parameter and [`SharedCache::with_raw_mutex`]:
///
/// ```
/// use tickcache::mutex::NoopRawMutex;
/// use tickcache::{Config, ManualClock, MemCache, SharedCache, Table};
/// let clock = ManualClock::new(1000);
/// let cache: SharedCache<_, Table<8, 16, 8>, 16, NoopRawMutex> =
///     SharedCache::with_raw_mutex(MemCache::new(&clock, Table::new(), Config::new()));
/// assert_eq!(cache.with(|c| c.incr("n", 1)), Err(tickcache::Error::NotFound));
/// ```
pub struct SharedCache<C, B, const K: usize, M = CriticalSectionRawMutex> {
    inner: embassy_sync::blocking_mutex::Mutex<M, RefCell<Cache<C, B, K>>>,
}

impl<C, B, const K: usize> SharedCache<C, B, K> {
    /// Wraps a cache behind a critical section. Usable in a `static`.
    pub const fn new(cache: Cache<C, B, K>) -> Self {
        Self::with_raw_mutex(cache)
    }
}

impl<C, B, const K: usize, M: RawMutex> SharedCache<C, B, K, M> {
    /// Wraps a cache behind the lock `M` (see [`SharedCache`] for which one to pick).
    /// Usable in a `static`.
    pub const fn with_raw_mutex(cache: Cache<C, B, K>) -> Self {
        SharedCache {
            inner: embassy_sync::blocking_mutex::Mutex::new(RefCell::new(cache)),
        }
    }

    /// The cache, taken out of its lock.
    pub fn into_inner(self) -> Cache<C, B, K> {
        self.inner.into_inner().into_inner()
    }

    /// Runs `f` on the cache with the lock held (inside a critical section by default).
    ///
    /// # Panics
    /// When called again from inside `f` (a re-entrant call on the same cache); use
    /// [`SharedCache::with`] or [`SharedCache::try_lock`] where that can happen (a value
    /// whose `Serialize` reads the cache, a closure).
    pub fn lock<R>(&self, f: impl FnOnce(&mut Cache<C, B, K>) -> R) -> R {
        self.inner.lock(|cache| f(&mut cache.borrow_mut()))
    }

    /// Like [`SharedCache::lock`], but `None` instead of a panic on a re-entrant call.
    pub fn try_lock<R>(&self, f: impl FnOnce(&mut Cache<C, B, K>) -> R) -> Option<R> {
        self.inner.lock(|cache| {
            let mut cache = cache.try_borrow_mut().ok()?;
            Some(f(&mut cache))
        })
    }

    /// Runs one or more cache calls with the lock held: `f`'s result, or
    /// [`Error::Busy`] on a re-entrant call (a value's `Serialize` or a closure that uses
    /// this cache from inside one of its calls). Never panics.
    ///
    /// ```
    /// use tickcache::{Config, Error, ManualClock, MemCache, SharedCache, Table};
    /// let clock = ManualClock::new(1000);
    /// let cache: SharedCache<_, Table<8, 16, 8>, 16> =
    ///     SharedCache::new(MemCache::new(&clock, Table::new(), Config::new()));
    /// cache.with(|c| c.set("k", &1u8, 60))?;
    /// let inner = cache.with(|_| Ok(cache.with(|c| c.get::<u8>("k"))))?;
    /// assert_eq!(inner, Err(Error::Busy));
    /// assert_eq!(cache.with(|c| c.get::<u8>("k"))?, Some(1));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn with<R, E>(
        &self,
        f: impl FnOnce(&mut Cache<C, B, K>) -> Result<R, Error<E>>,
    ) -> Result<R, Error<E>> {
        self.try_lock(f).unwrap_or(Err(Error::Busy))
    }
}

impl<C, B: Backend, const K: usize, M: RawMutex> core::fmt::Debug for SharedCache<C, B, K, M> {
    /// The cache's own `Debug`, or `<busy>` inside a call on it.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut s = f.debug_struct("SharedCache");
        match self.try_lock(|c| s.field("inner", c).finish()) {
            Some(done) => done,
            None => s.field("inner", &format_args!("<busy>")).finish(),
        }
    }
}

impl<C: Clock, B: Backend, const K: usize, M: RawMutex> SharedCache<C, B, K, M> {
    /// Django's `get_or_set`, with `default` run outside the lock: it may read
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
    pub fn get_or_set<T, F>(
        &self,
        key: impl AsKey,
        default: F,
        timeout: impl Into<Timeout>,
    ) -> Result<T, Error<B::Error>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> T,
    {
        let key = key.as_key();
        if let Some(v) = self.with(|c| c.get(key))? {
            return Ok(v);
        }
        let v = default();
        let timeout = timeout.into();
        let stored = self.with(|c| {
            c.add(key, &v, timeout)?;
            c.get(key)
        })?;
        Ok(stored.unwrap_or(v))
    }
}

/// One store under several configured caches: Django's caches that share a `LOCATION` but
/// differ in `KEY_PREFIX`, `VERSION`, `KEY_FUNCTION` or `TIMEOUT`.
///
/// A `&Store<B>` is a [`Backend`], so each [`Cache`] takes `&STORE` with its own
/// [`Config`](crate::Config) and clock. Such a cache is a few words (its clock, its
/// configuration): build one where it is used, or keep it in a [`SharedCache`] `static`.
/// The store itself can live in a `static` (a [`Table`](crate::Table) of zero bytes goes to
/// `.bss`), and every backend call runs in one critical section, so caches over it may be
/// used from interrupts and the main loop alike. Another embassy-sync [`RawMutex`] `M` is
/// one type parameter and [`Store::with_raw_mutex`] away (see [`SharedCache`]).
///
/// A call made while the store is busy further up the same stack (a value's `Serialize`
/// that uses a cache over the same store) returns [`Error::Busy`] instead of panicking.
///
/// Expiry is absolute ticks in the store, so every cache over it needs the same time:
/// give them one clock (`&CLOCK`) or clocks that agree, and over a persistent backend call
/// [`Cache::resume_at`] on each with the backend's latest time.
///
/// ```
/// use tickcache::{Cache, Config, Key, ManualClock, Store, Table};
///
/// static STORE: Store<Table<16, 32, 16>> = Store::new(Table::new());
/// const SITE: Config = Config::new().key_prefix("site");
/// const SITE_V2: Config = SITE.version(2);
///
/// let clock = ManualClock::new(1000);
/// let mut cache = Cache::<_, _, 32>::new(&clock, &STORE, SITE);
/// let mut v2 = Cache::<_, _, 32>::new(&clock, &STORE, SITE_V2);
/// let mut other = Cache::<_, _, 32>::new(&clock, &STORE, Config::new().key_prefix("other"));
///
/// cache.set("answer", &42u32, 60)?;
/// assert_eq!(v2.get::<u32>("answer")?, None); // site:2:answer
/// assert_eq!(v2.get::<u32>(Key::new("answer").version(1))?, Some(42)); // site:1:answer
/// assert_eq!(other.get::<u32>("answer")?, None); // other:1:answer
/// assert_eq!(other.len(), 1); // one store: every cache over it sees one entry
/// # Ok::<(), tickcache::Error>(())
/// ```
pub struct Store<B, M = CriticalSectionRawMutex> {
    inner: embassy_sync::blocking_mutex::Mutex<M, RefCell<B>>,
}

impl<B> Store<B> {
    /// A store over `backend`, each call in a critical section. Usable in a `static`.
    pub const fn new(backend: B) -> Self {
        Self::with_raw_mutex(backend)
    }
}

impl<B, M: RawMutex> Store<B, M> {
    /// A store over `backend` behind the lock `M` (see [`SharedCache`] for which one to
    /// pick). Usable in a `static`.
    pub const fn with_raw_mutex(backend: B) -> Self {
        Store {
            inner: embassy_sync::blocking_mutex::Mutex::new(RefCell::new(backend)),
        }
    }

    /// Runs `f` on the backend under the lock (for calls the caches do not
    /// offer, such as a table's statistics); `None` when the store is busy further up this
    /// stack.
    pub fn try_lock<R>(&self, f: impl FnOnce(&mut B) -> R) -> Option<R> {
        self.inner.lock(|backend| {
            let mut backend = backend.try_borrow_mut().ok()?;
            Some(f(&mut backend))
        })
    }

    /// The backend, taken out of the store.
    pub fn into_inner(self) -> B {
        self.inner.into_inner().into_inner()
    }
}

impl<B: Backend, M: RawMutex> Store<B, M> {
    /// Runs one backend call under the lock; [`Error::Busy`] when re-entered.
    #[inline]
    fn call<R>(
        &self,
        f: impl FnOnce(&mut B) -> Result<R, Error<B::Error>>,
    ) -> Result<R, Error<B::Error>> {
        self.try_lock(f).unwrap_or(Err(Error::Busy))
    }
}

impl<B, M> core::fmt::Debug for Store<B, M>
where
    B: Backend,
    M: RawMutex,
{
    /// The number of entries, or `<busy>` while a call holds the store.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut s = f.debug_struct("Store");
        match self.try_lock(|b| b.len()) {
            Some(len) => s.field("len", &len),
            None => s.field("len", &format_args!("<busy>")),
        };
        s.finish()
    }
}

/// Implements [`Backend`] for a store handle type whose target has `call` (one backend call
/// under the store's lock, [`Error::Busy`] when re-entered) and `try_lock`.
macro_rules! backend_through_call {
    ($handle:ty $(, $gen:ident: $bound:path)*) => {
        impl<B: Backend $(, $gen: $bound)*> Backend for $handle {
            type Error = B::Error;

            #[inline]
            fn get<R>(
                &mut self,
                key: &[u8],
                now: u64,
                read: impl FnOnce(&[u8], Kind) -> R,
            ) -> Result<Option<R>, Error<Self::Error>> {
                self.call(|b| b.get(key, now, read))
            }

            fn has_key(&mut self, key: &[u8], now: u64) -> Result<bool, Error<Self::Error>> {
                self.call(|b| b.has_key(key, now))
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
                self.call(|b| b.put(key, mode, expiry, now, fill))
            }

            fn touch(
                &mut self,
                key: &[u8],
                expiry: u64,
                now: u64,
            ) -> Result<bool, Error<Self::Error>> {
                self.call(|b| b.touch(key, expiry, now))
            }

            fn delete(&mut self, key: &[u8], now: u64) -> Result<bool, Error<Self::Error>> {
                self.call(|b| b.delete(key, now))
            }

            fn incr(
                &mut self,
                key: &[u8],
                delta: i64,
                now: u64,
            ) -> Result<i64, Error<Self::Error>> {
                self.call(|b| b.incr(key, delta, now))
            }

            fn rekey(
                &mut self,
                from: &[u8],
                to: &[u8],
                expiry: u64,
                now: u64,
            ) -> Result<bool, Error<Self::Error>> {
                self.call(|b| b.rekey(from, to, expiry, now))
            }

            fn clear(&mut self) -> Result<(), Error<Self::Error>> {
                self.call(|b| b.clear())
            }

            fn flush(&mut self) -> Result<(), Error<Self::Error>> {
                self.call(|b| b.flush())
            }

            fn flush_at(&mut self, now: u64) -> Result<(), Error<Self::Error>> {
                self.call(|b| b.flush_at(now))
            }

            /// The number of entries; 0 while the store is busy further up this stack.
            fn len(&self) -> usize {
                self.try_lock(|b| b.len()).unwrap_or(0)
            }
        }
    };
}
#[cfg(feature = "std")]
pub(crate) use backend_through_call;

backend_through_call!(&Store<B, M>, M: RawMutex);
