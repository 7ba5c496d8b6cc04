//! The std adapter (feature `std`): a host clock, a thread-safe cache, a registry of caches by
//! alias (Django's `caches["default"]`) and heap conveniences for the batch calls.

use std::collections::{BTreeMap, HashMap};
use std::string::{String, ToString};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;
use std::vec::Vec;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backend::{Backend, Put};
use crate::cache::{Cache, ManyMap};
use crate::clock::Clock;
use crate::error::Error;
use crate::key::{AsKey, Key};
use crate::shared::backend_through_call;
use crate::timeout::Timeout;
use crate::value::Kind;

/// The host's monotonic clock, in microseconds since the first reading of any `StdClock` in
/// the process: every `StdClock` agrees, so caches over one [`SyncStore`] may each have
/// their own.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdClock {
    _private: (),
}

/// When the process first read a [`StdClock`].
static START: OnceLock<Instant> = OnceLock::new();

impl StdClock {
    /// The process's clock. Usable in a `static`.
    pub const fn new() -> Self {
        StdClock { _private: () }
    }
}

impl Clock for StdClock {
    fn ticks_per_second(&self) -> u32 {
        1_000_000
    }
    fn now(&self) -> u64 {
        let start = START.get_or_init(Instant::now);
        u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// A token for the calling thread: the address of a thread-local, distinct among the
/// threads alive at once. Never 0.
fn this_thread() -> usize {
    thread_local!(static TOKEN: u8 = const { 0 });
    TOKEN.with(|t| core::ptr::from_ref(t) as usize)
}

/// A `Mutex` that knows which thread holds it, so a thread that asks again while it holds
/// the lock is refused instead of deadlocking.
struct OwnedMutex<T> {
    inner: Mutex<T>,
    /// [`this_thread`] of the holder, or 0.
    owner: AtomicUsize,
}

/// The lock of a [`SyncCache`] (or a [`SyncStore`]), dereferencing to what it guards; it
/// forgets its holder thread before it unlocks.
pub struct SyncGuard<'a, T> {
    guard: MutexGuard<'a, T>,
    owner: &'a AtomicUsize,
}

impl<T> OwnedMutex<T> {
    const fn new(value: T) -> Self {
        OwnedMutex {
            inner: Mutex::new(value),
            owner: AtomicUsize::new(0),
        }
    }

    /// Waits for the lock; `None` at once when this thread already holds it. A panic in
    /// another thread while it held the lock does not poison it: every cache operation
    /// leaves its table consistent before it returns.
    fn lock(&self) -> Option<SyncGuard<'_, T>> {
        let me = this_thread();
        // Only this thread writes its own token, and it clears it before unlocking, so
        // reading it here means this thread holds the lock.
        if self.owner.load(Ordering::Relaxed) == me {
            return None;
        }
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.owner.store(me, Ordering::Relaxed);
        Some(SyncGuard {
            guard,
            owner: &self.owner,
        })
    }
}

impl<T: core::fmt::Debug> core::fmt::Debug for SyncGuard<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(&*self.guard, f)
    }
}

impl<T> Drop for SyncGuard<'_, T> {
    fn drop(&mut self) {
        self.owner.store(0, Ordering::Relaxed);
    }
}

impl<T> core::ops::Deref for SyncGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> core::ops::DerefMut for SyncGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// One store under several configured caches on the host, shared between threads: the
/// [`Store`](crate::Store) of firmware with a `Mutex` instead of a critical section.
///
/// `&SyncStore<B>` and `Arc<SyncStore<B>>` are [`Backend`]s, so [`Caches`] can register
/// aliases that differ in prefix, version, key function or default timeout over one store,
/// as Django's caches that share a `LOCATION`:
///
/// ```
/// use std::sync::Arc;
/// use tickcache::{Cache, Caches, Config, StdClock, SyncStore, Table};
///
/// type Location = Arc<SyncStore<Table<64, 48, 32>>>;
/// let location: Location = Arc::new(SyncStore::new(Table::new()));
/// let mut caches: Caches<StdClock, Location, 48> = Caches::new();
/// for (alias, config) in [
///     ("default", Config::new()),
///     ("prefix", Config::new().key_prefix("cacheprefix")),
///     ("v2", Config::new().version(2)),
/// ] {
///     caches.insert(alias, Cache::new(StdClock::new(), Arc::clone(&location), config));
/// }
///
/// let cache = caches.default_cache()?;
/// cache.lock().set("answer", &42u32, 60)?;
/// assert_eq!(caches.get("prefix")?.lock().get::<u32>("answer")?, None);
/// assert_eq!(caches.get("v2")?.lock().get::<u32>("answer")?, None);
/// assert_eq!(caches.get("v2")?.lock().len(), 1); // one store under every alias
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Every cache over the store needs the same time: [`StdClock`]s all agree; other clocks
/// should be one shared clock.
///
/// Every backend call takes the store's lock; a call made while this thread holds it (a
/// value's `Serialize` that uses a cache over the same store) returns [`Error::Busy`]
/// instead of deadlocking.
pub struct SyncStore<B> {
    inner: OwnedMutex<B>,
}

impl<B> SyncStore<B> {
    /// A store over `backend`. Usable in a `static`.
    pub const fn new(backend: B) -> Self {
        SyncStore {
            inner: OwnedMutex::new(backend),
        }
    }

    /// Runs `f` on the backend under the store's lock (for calls the caches do not offer);
    /// `None` when this thread already holds it.
    pub fn try_lock<R>(&self, f: impl FnOnce(&mut B) -> R) -> Option<R> {
        let mut backend = self.inner.lock()?;
        Some(f(&mut backend))
    }

    /// The backend, taken out of the store.
    pub fn into_inner(self) -> B {
        self.inner
            .inner
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
    }
}

impl<B: Backend> SyncStore<B> {
    /// Runs one backend call under the lock; [`Error::Busy`] when re-entered.
    #[inline]
    fn call<R>(
        &self,
        f: impl FnOnce(&mut B) -> Result<R, Error<B::Error>>,
    ) -> Result<R, Error<B::Error>> {
        self.try_lock(f).unwrap_or(Err(Error::Busy))
    }
}

impl<B: Backend> core::fmt::Debug for SyncStore<B> {
    /// The number of entries, or `<locked>` while a thread holds the store: never blocks.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut s = f.debug_struct("SyncStore");
        match self.inner.inner.try_lock() {
            Ok(b) => s.field("len", &b.len()),
            Err(std::sync::TryLockError::Poisoned(p)) => s.field("len", &p.into_inner().len()),
            Err(std::sync::TryLockError::WouldBlock) => s.field("len", &format_args!("<locked>")),
        };
        s.finish()
    }
}

backend_through_call!(&SyncStore<B>);
backend_through_call!(Arc<SyncStore<B>>);

/// A cache shared between threads: a `Mutex` around a [`Cache`].
///
/// [`SyncCache::lock`] is for straight-line code. Where code run inside a call may use the
/// same cache again on the same thread (a value's `Serialize`, a closure), use
/// [`SyncCache::with`]: the inner call gets [`Error::Busy`] instead of a deadlock.
pub struct SyncCache<C, B, const K: usize> {
    inner: OwnedMutex<Cache<C, B, K>>,
}

impl<C, B, const K: usize> SyncCache<C, B, K> {
    /// Wraps a cache. Usable in a `static`.
    pub const fn new(cache: Cache<C, B, K>) -> Self {
        SyncCache {
            inner: OwnedMutex::new(cache),
        }
    }

    /// Locks the cache, waiting for another thread that holds it. A panic in another
    /// thread while it held the lock does not poison it: every cache operation leaves the
    /// table consistent before it returns.
    ///
    /// # Panics
    /// When this thread already holds the lock (a re-entrant call, which would otherwise
    /// deadlock); use [`SyncCache::with`] or [`SyncCache::try_lock`] where that can happen.
    pub fn lock(&self) -> SyncGuard<'_, Cache<C, B, K>> {
        match self.inner.lock() {
            Some(guard) => guard,
            None => panic!("SyncCache::lock by the thread that holds it; use SyncCache::with"),
        }
    }

    /// Like [`SyncCache::lock`], but `None` instead of a panic when this thread already
    /// holds the lock.
    pub fn try_lock(&self) -> Option<SyncGuard<'_, Cache<C, B, K>>> {
        self.inner.lock()
    }

    /// Runs one or more cache calls under the lock: `f`'s result, or [`Error::Busy`] when
    /// this thread already holds the lock (a value's `Serialize` or a closure that uses
    /// this cache from inside one of its calls). Never panics and never deadlocks on
    /// re-entry.
    ///
    /// ```
    /// use tickcache::{Config, MemCache, StdClock, SyncCache, Table};
    /// let cache = SyncCache::new(MemCache::<_, 8, 16, 8>::new(StdClock::new(), Table::new(), Config::new()));
    /// cache.with(|c| c.set("k", &1u8, 60))?;
    /// let inner = cache.with(|_| Ok(cache.with(|c| c.get::<u8>("k"))))?;
    /// assert_eq!(inner, Err(tickcache::Error::Busy));
    /// assert_eq!(cache.with(|c| c.get::<u8>("k"))?, Some(1));
    /// # Ok::<(), tickcache::Error>(())
    /// ```
    pub fn with<R, E>(
        &self,
        f: impl FnOnce(&mut Cache<C, B, K>) -> Result<R, Error<E>>,
    ) -> Result<R, Error<E>> {
        match self.inner.lock() {
            Some(mut cache) => f(&mut cache),
            None => Err(Error::Busy),
        }
    }
}

impl<C: Clock, B: Backend, const K: usize> SyncCache<C, B, K> {
    /// Django's `get_or_set`, with `default` run while the lock is released, so it may use
    /// this same cache (inside [`SyncCache::lock`] it would deadlock) and other threads are
    /// not held up while it computes. As in Django, the value is read again after the
    /// `add`: if another thread stored the key meanwhile, that value is returned.
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

impl<C, B, const K: usize> core::fmt::Debug for SyncCache<C, B, K>
where
    Cache<C, B, K>: core::fmt::Debug,
{
    /// The cache's own `Debug`, or `<locked>` while another thread holds it.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SyncCache")
            .field("inner", &self.inner.inner)
            .finish()
    }
}

/// An unknown alias (Django's `InvalidCacheBackendError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAlias(pub String);

impl core::fmt::Display for UnknownAlias {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "The connection '{}' doesn't exist.", self.0)
    }
}

impl std::error::Error for UnknownAlias {}

/// Caches by alias, Django's `caches`: `caches.get("default")`.
pub struct Caches<C, B, const K: usize> {
    by_alias: HashMap<String, Arc<SyncCache<C, B, K>>>,
}

impl<C, B, const K: usize> core::fmt::Debug for Caches<C, B, K> {
    /// The registered aliases.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Caches")
            .field("aliases", &self.by_alias.keys())
            .finish()
    }
}

impl<C, B, const K: usize> Default for Caches<C, B, K> {
    fn default() -> Self {
        Caches {
            by_alias: HashMap::new(),
        }
    }
}

impl<C, B, const K: usize> Caches<C, B, K> {
    /// Django's alias for the default cache.
    pub const DEFAULT_ALIAS: &'static str = "default";

    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `cache` under `alias`, replacing any cache already there.
    pub fn insert(&mut self, alias: &str, cache: Cache<C, B, K>) -> Arc<SyncCache<C, B, K>> {
        let shared = Arc::new(SyncCache::new(cache));
        self.by_alias.insert(alias.to_string(), Arc::clone(&shared));
        shared
    }

    /// The cache registered under `alias`: the same one every time.
    pub fn get(&self, alias: &str) -> Result<Arc<SyncCache<C, B, K>>, UnknownAlias> {
        self.by_alias
            .get(alias)
            .cloned()
            .ok_or_else(|| UnknownAlias(alias.to_string()))
    }

    /// The default cache (`caches["default"]`, Django's `cache`).
    pub fn default_cache(&self) -> Result<Arc<SyncCache<C, B, K>>, UnknownAlias> {
        self.get(Self::DEFAULT_ALIAS)
    }

    /// Every alias registered.
    pub fn aliases(&self) -> impl Iterator<Item = &str> {
        self.by_alias.keys().map(String::as_str)
    }

    /// Django's `close_caches`: calls `close` on every cache, returning the first error.
    pub fn close_all(&self) -> Result<(), Error<B::Error>>
    where
        C: Clock,
        B: Backend,
    {
        let mut first = Ok(());
        for cache in self.by_alias.values() {
            if let Err(e) = cache.lock().close() {
                first = first.and(Err(e));
            }
        }
        first
    }
}

impl<C: Clock, B: Backend, const K: usize> Cache<C, B, K> {
    /// Django's `get_many` returning a map of the keys found, as owned strings (a key that
    /// is not UTF-8 is converted lossily). `keys` is any iterator of key-likes, as for
    /// [`Cache::get_many`]; to keep the keys' own type, use [`Cache::get_many_into`] with a
    /// `HashMap`.
    ///
    /// ```
    /// # use tickcache::{MemCache, Config, ManualClock, Table};
    /// # let clock = ManualClock::new(1000);
    /// # let mut cache: MemCache<_, 8, 16, 16> = MemCache::new(&clock, Table::new(), Config::new());
    /// cache.set_many([("a", &1u8), ("b", &2)], 60, |_, _| {})?;
    /// let names = vec![String::from("a"), String::from("c")];
    /// let got = cache.get_many_map::<u8, _>(&names)?;
    /// assert_eq!(got, [(String::from("a"), 1)].into());
    /// // Django's version= for the batch: nothing at version 2.
    /// assert!(cache.at_version(2).get_many_map::<u8, _>(&names)?.is_empty());
    /// # Ok::<(), tickcache::Error>(())
    /// ```
    pub fn get_many_map<'k, T, I>(&mut self, keys: I) -> Result<HashMap<String, T>, Error<B::Error>>
    where
        T: DeserializeOwned,
        I: IntoIterator,
        I::IntoIter: Clone,
        I::Item: Into<Key<'k>>,
    {
        let mut found = HashMap::new();
        self.get_many(keys, |k, v| {
            found.insert(String::from_utf8_lossy(k.key).into_owned(), v);
        })?;
        Ok(found)
    }

    /// Django's `set_many` from a map (or any iterator of `(key, &value)` pairs, as for
    /// [`Cache::set_many`]), returning the keys that failed to store. An invalid key is an
    /// error and nothing is stored (Django's memcached backends).
    ///
    /// ```
    /// # use std::collections::{BTreeMap, HashMap};
    /// # use tickcache::{MemCache, Config, ManualClock, Table};
    /// # let clock = ManualClock::new(1000);
    /// # let mut cache: MemCache<_, 8, 16, 16> = MemCache::new(&clock, Table::new(), Config::new());
    /// let posts: HashMap<String, u32> = [("a".into(), 1), ("b".into(), 2)].into();
    /// assert!(cache.set_many_map(&posts, 60)?.is_empty());
    /// assert_eq!(cache.get::<u32>("b")?, Some(2));
    /// # Ok::<(), tickcache::Error>(())
    /// ```
    pub fn set_many_map<'k, 'v, T, I, KK>(
        &mut self,
        items: I,
        timeout: impl Into<Timeout>,
    ) -> Result<Vec<String>, Error<B::Error>>
    where
        T: Serialize + ?Sized + 'v,
        I: IntoIterator<Item = (KK, &'v T)>,
        I::IntoIter: Clone,
        KK: Into<Key<'k>>,
    {
        let mut failed = Vec::new();
        self.set_many(items, timeout, |k, _| {
            failed.push(String::from_utf8_lossy(k.key).into_owned());
        })?;
        Ok(failed)
    }
}

impl<K, V, S> ManyMap<K, V> for HashMap<K, V, S>
where
    K: Eq + core::hash::Hash,
    S: core::hash::BuildHasher,
{
    fn insert_hit(&mut self, key: K, value: V) -> Result<(), (K, V)> {
        self.insert(key, value);
        Ok(())
    }
}

impl<K: Ord, V> ManyMap<K, V> for BTreeMap<K, V> {
    fn insert_hit(&mut self, key: K, value: V) -> Result<(), (K, V)> {
        self.insert(key, value);
        Ok(())
    }
}
