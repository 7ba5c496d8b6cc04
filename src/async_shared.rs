//! Sharing between async tasks: [`AsyncSharedCache`], a cache behind embassy-sync's async
//! `Mutex`. A task holds the lock across the awaits of its call (the storage work of an
//! [`AsyncBackend`]); other tasks wait on the lock, and interrupts are never masked for
//! longer than the lock's own bookkeeping.

use core::future::{ready, Future};
use core::hash::BuildHasher;

use embassy_sync::blocking_mutex::raw::{CriticalSectionRawMutex, RawMutex};
use embassy_sync::mutex::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backend::Backend;
use crate::cache::Cache;
use crate::clock::Clock;
use crate::dummy::Dummy;
use crate::error::Error;
use crate::key::{AsKey, Key};
use crate::table::Table;
use crate::timeout::Timeout;

type Res<T, B> = Result<T, Error<<B as Backend>::Error>>;

/// A backend an [`AsyncSharedCache`] can hold: the blocking [`Backend`] calls decide and
/// apply each change in RAM, and [`AsyncBackend::settle`] awaits the storage work they left
/// (flash writes, erases, compaction steps).
///
/// RAM backends ([`Table`], [`Dummy`], `HeapTable`) have no storage work: their `settle` is
/// ready at once. A backend over async storage queues its work in its calls and performs it
/// in `settle`. The async shared cache holds its lock until `settle` completes, so:
/// - a task awaiting the storage makes other tasks wait on the lock, never on a critical
///   section, and interrupts stay enabled through the whole call;
/// - a call that returned `Ok` has reached the storage.
///
/// If a `settle` future is dropped midway (its task cancelled), the work it did not finish
/// must stay queued (or the backend must recover from it): every call through an
/// [`AsyncSharedCache`] settles before it runs too, so the next call completes it.
///
/// # Work needed before a call: the re-run rule
/// A call that cannot change RAM before some storage work (a persistent backend whose list
/// of changes is full, or an insert whose cull must be written with it) returns
/// [`Error::Settle`] and **changes nothing**. [`AsyncSharedCache::with`] then settles (the
/// backend performs the work) and runs its closure again from the start, so the calls the
/// closure made before that one run twice. Every [`Cache`] method is correct under this:
/// its backend calls before the last one are reads, or writes that leave the same state
/// when repeated (`set_many` sets the same values again, `add` and `get_or_set` are a read
/// and one `put`, `incr_version` one `rekey`, or a read and deletes, `delete_many` deletes
/// again), and
/// a put the backend completed in its settle (an insert that culls) is recognised when run
/// again and answers as it did. What a repetition changes is only a count or a report
/// from the first run: `delete_many` counts the live entries the last run removed, and
/// `set_many` reports a failed item once per run. In a closure of your own, make a call
/// whose repetition matters (`incr`, a count) the last of the closure, or give it a
/// closure of its own. A closure that inserts more new keys than the table's
/// `MAX_ENTRIES` may never complete (its first inserts cull the later ones again on each
/// run): give each insert its own call, as [`AsyncSharedCache::set_many`] does.
pub trait AsyncBackend: Backend {
    /// Completes the storage work the calls since the last `settle` left.
    fn settle(&mut self) -> impl Future<Output = Result<(), Error<Self::Error>>>;
}

impl<const N: usize, const K: usize, const V: usize, S: BuildHasher> AsyncBackend
    for Table<N, K, V, S>
{
    /// Nothing to do: the table is the storage.
    #[inline]
    fn settle(&mut self) -> impl Future<Output = Result<(), Error<Self::Error>>> {
        ready(Ok(()))
    }
}

impl AsyncBackend for Dummy {
    /// Nothing to do: nothing is stored.
    #[inline]
    fn settle(&mut self) -> impl Future<Output = Result<(), Error<Self::Error>>> {
        ready(Ok(()))
    }
}

#[cfg(feature = "std")]
impl<S: BuildHasher> AsyncBackend for crate::heap::HeapTable<S> {
    /// Nothing to do: the heap table is the storage.
    #[inline]
    fn settle(&mut self) -> impl Future<Output = Result<(), Error<Self::Error>>> {
        ready(Ok(()))
    }
}

/// A borrowed backend settles the backend it borrows: a table in a `static` of its own
/// (`.bss`) can be lent to the cache.
impl<B: AsyncBackend + ?Sized> AsyncBackend for &mut B {
    #[inline]
    fn settle(&mut self) -> impl Future<Output = Result<(), Error<Self::Error>>> {
        (**self).settle()
    }
}

/// A cache shared between async tasks (embassy, or any executor): each call awaits the lock,
/// runs the cache call, then awaits the storage work it left ([`AsyncBackend::settle`])
/// before it lets the next task in. The lock is embassy-sync's async `Mutex`: waiting tasks
/// are woken, never spun, and no critical section is held across an await.
///
/// Which shared cache to use:
/// - **Tasks** (thread mode or an interrupt executor): `AsyncSharedCache`. A call never
///   masks interrupts for longer than the lock's bookkeeping, even while a persistent
///   backend erases flash.
/// - **Interrupt handlers** (no executor, cannot await): a blocking
///   [`SharedCache`](crate::SharedCache), whose calls run in a critical section; or, on an
///   `AsyncSharedCache`, [`AsyncSharedCache::try_with`], which answers [`Error::Busy`]
///   instead of waiting while a task holds the lock.
///
/// The lock is not fair: unlocking wakes a waiting task but hands it nothing, so a task
/// that calls again before yielding to the executor (back-to-back calls with no other await
/// between them) takes the lock again, and the woken task finds it held. A task that
/// writes in a loop should await something between its calls that lets the woken task run
/// first (a timer or a channel; one `yield_now` can be too short) if other tasks must see
/// each value; `examples/embassy` paces its writer that way.
///
/// `M` is the raw mutex guarding the lock's own state (a few instructions per lock and
/// unlock): [`CriticalSectionRawMutex`] (the default, from [`AsyncSharedCache::new`]) when
/// tasks run on more than one executor or priority, `ThreadModeRawMutex` when they all run
/// in thread mode, [`NoopRawMutex`](crate::mutex::NoopRawMutex) within one executor (not in
/// a `static`).
///
/// ```
/// use embassy_futures::{block_on, join::join};
/// use tickcache::{AsyncSharedCache, Config, ManualClock, MemCache, Table};
///
/// let clock = ManualClock::new(1000);
/// let cache: AsyncSharedCache<_, Table<8, 16, 8>, 16> =
///     AsyncSharedCache::new(MemCache::new(&clock, Table::new(), Config::new()));
///
/// let writer = async {
///     cache.set("reading", &21u16, 60).await?;
///     cache.add("hits", &0i64, None).await
/// };
/// let counter = async {
///     cache.add("hits", &0i64, None).await?;
///     cache.incr("hits", 1).await
/// };
/// let (w, c) = block_on(join(writer, counter));
/// w?;
/// assert_eq!(c?, 1);
/// assert_eq!(block_on(cache.get::<u16>("reading"))?, Some(21));
/// # Ok::<(), tickcache::Error>(())
/// ```
pub struct AsyncSharedCache<C, B, const K: usize, M: RawMutex = CriticalSectionRawMutex> {
    inner: Mutex<M, Cache<C, B, K>>,
}

impl<C, B, const K: usize> AsyncSharedCache<C, B, K> {
    /// Wraps a cache; the lock's state is guarded by a critical section. Usable in a
    /// `static`.
    pub const fn new(cache: Cache<C, B, K>) -> Self {
        Self::with_raw_mutex(cache)
    }
}

impl<C, B, const K: usize, M: RawMutex> AsyncSharedCache<C, B, K, M> {
    /// Wraps a cache, the lock's state guarded by `M` (see [`AsyncSharedCache`]). Usable in
    /// a `static`.
    pub const fn with_raw_mutex(cache: Cache<C, B, K>) -> Self {
        AsyncSharedCache {
            inner: Mutex::new(cache),
        }
    }

    /// The cache, taken out of its lock.
    pub fn into_inner(self) -> Cache<C, B, K> {
        self.inner.into_inner()
    }

    /// The cache, without locking: `&mut self` proves no task holds the lock.
    pub fn get_mut(&mut self) -> &mut Cache<C, B, K> {
        self.inner.get_mut()
    }
}

impl<C, B: Backend, const K: usize, M: RawMutex> AsyncSharedCache<C, B, K, M> {
    /// Runs one or more cache calls now, without waiting: `f`'s result, or [`Error::Busy`]
    /// while the lock is held (by a task in a call, or further up this stack: a value's
    /// `Serialize` or a closure that uses this cache from inside one of its calls). Never
    /// waits, never panics: usable from an interrupt handler.
    ///
    /// Storage work `f` leaves (a persistent backend's writes) is done by the next async
    /// call; for writes that must reach storage before they are acknowledged, use
    /// [`AsyncSharedCache::with`]. A call that needs storage work before it can run
    /// ([`Error::Settle`], see [`AsyncBackend`]) answers [`Error::Busy`] here too, having
    /// changed nothing: make it from a task.
    pub fn try_with<R>(&self, f: impl FnOnce(&mut Cache<C, B, K>) -> Res<R, B>) -> Res<R, B> {
        match self.inner.try_lock() {
            Ok(mut cache) => match f(&mut cache) {
                Err(Error::Settle) => Err(Error::Busy),
                r => r,
            },
            Err(_) => Err(Error::Busy),
        }
    }
}

impl<C: Clock, B: AsyncBackend, const K: usize, M: RawMutex> AsyncSharedCache<C, B, K, M> {
    /// Runs one or more cache calls under the lock, as one step no other task sees half
    /// of: waits for the lock, completes storage work an earlier (cancelled) call left,
    /// runs `f`, then awaits the storage work `f` left. `f` is synchronous, so the lock is
    /// only held across the backend's own awaits. When a call in `f` needs storage work
    /// first ([`Error::Settle`]), the work is awaited and `f` runs again from the start
    /// (see [`AsyncBackend`] for what that means for the calls before it).
    ///
    /// Inside `f`, this same cache answers [`Error::Busy`] ([`AsyncSharedCache::try_with`]).
    ///
    /// ```
    /// # use embassy_futures::block_on;
    /// # use tickcache::{AsyncSharedCache, Config, Error, ManualClock, MemCache, Table};
    /// # let clock = ManualClock::new(1000);
    /// # let cache: AsyncSharedCache<_, Table<8, 16, 8>, 16> =
    /// #     AsyncSharedCache::new(MemCache::new(&clock, Table::new(), Config::new()));
    /// # block_on(async {
    /// // A read-modify-write no other task can interleave with.
    /// let total = cache
    ///     .with(|c| {
    ///         let seen = c.get::<u32>("seen")?.unwrap_or(0);
    ///         c.set("seen", &(seen + 5), 60)?;
    ///         Ok(seen + 5)
    ///     })
    ///     .await?;
    /// assert_eq!(total, 5);
    /// let inner = cache.with(|_| Ok(cache.try_with(|c| c.get::<u32>("seen")))).await?;
    /// assert_eq!(inner, Err(Error::Busy));
    /// # Ok::<(), Error>(())
    /// # })?;
    /// # Ok::<(), Error>(())
    /// ```
    pub async fn with<R>(&self, mut f: impl FnMut(&mut Cache<C, B, K>) -> Res<R, B>) -> Res<R, B> {
        let mut cache = self.inner.lock().await;
        loop {
            cache.backend_mut().settle().await?;
            let out = f(&mut cache);
            if !matches!(out, Err(Error::Settle)) {
                cache.backend_mut().settle().await?;
                return out;
            }
        }
    }

    /// Django's `get` ([`Cache::get`]).
    pub async fn get<T: DeserializeOwned>(&self, key: impl AsKey) -> Res<Option<T>, B> {
        let key = key.as_key();
        self.with(|c| c.get(key)).await
    }

    /// Django's `has_key` ([`Cache::has_key`]).
    pub async fn has_key(&self, key: impl AsKey) -> Res<bool, B> {
        let key = key.as_key();
        self.with(|c| c.has_key(key)).await
    }

    /// Django's `set` ([`Cache::set`]); returns once the backend has settled it.
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: impl AsKey,
        value: &T,
        timeout: impl Into<Timeout>,
    ) -> Res<(), B> {
        let key = key.as_key();
        let timeout = timeout.into();
        self.with(|c| c.set(key, value, timeout)).await
    }

    /// Django's `add` ([`Cache::add`]): `true` if it stored. Of several tasks racing `add`
    /// on one missing key, exactly one stores.
    pub async fn add<T: Serialize + ?Sized>(
        &self,
        key: impl AsKey,
        value: &T,
        timeout: impl Into<Timeout>,
    ) -> Res<bool, B> {
        let key = key.as_key();
        let timeout = timeout.into();
        self.with(|c| c.add(key, value, timeout)).await
    }

    /// Django's `touch` ([`Cache::touch`]).
    pub async fn touch(&self, key: impl AsKey, timeout: impl Into<Timeout>) -> Res<bool, B> {
        let key = key.as_key();
        let timeout = timeout.into();
        self.with(|c| c.touch(key, timeout)).await
    }

    /// Django's `delete` ([`Cache::delete`]).
    pub async fn delete(&self, key: impl AsKey) -> Res<bool, B> {
        let key = key.as_key();
        self.with(|c| c.delete(key)).await
    }

    /// Django's `incr` ([`Cache::incr`]): the new value.
    pub async fn incr(&self, key: impl AsKey, delta: i64) -> Res<i64, B> {
        let key = key.as_key();
        self.with(|c| c.incr(key, delta)).await
    }

    /// Django's `decr` ([`Cache::decr`]): the new value.
    pub async fn decr(&self, key: impl AsKey, delta: i64) -> Res<i64, B> {
        let key = key.as_key();
        self.with(|c| c.decr(key, delta)).await
    }

    /// Django's `set_many` ([`Cache::set_many`]): every key is checked first (an invalid
    /// one stores nothing), then each item is set in a locked call of its own, so other
    /// tasks may run between items (Django's `set_many` is not atomic either). `failed`
    /// hears each item that could not be stored, once; the count of those is returned.
    ///
    /// Prefer this to `with(|c| c.set_many(..))` on a persistent backend: there, an item
    /// that needs storage work first makes the whole closure run again from its first item,
    /// and when the batch holds more new keys than the table's `MAX_ENTRIES`, each run's
    /// first inserts cull the later ones again, so the closure never completes.
    ///
    /// ```
    /// # use embassy_futures::block_on;
    /// # use tickcache::{AsyncSharedCache, Config, ManualClock, MemCache, Table};
    /// # let clock = ManualClock::new(1000);
    /// # let cache: AsyncSharedCache<_, Table<8, 16, 8>, 16> =
    /// #     AsyncSharedCache::new(MemCache::new(&clock, Table::new(), Config::new()));
    /// let items = [("a", &1u8), ("b", &2)];
    /// assert_eq!(block_on(cache.set_many(items, 60, |_, _| {}))?, 0);
    /// assert_eq!(block_on(cache.get::<u8>("b"))?, Some(2));
    /// # Ok::<(), tickcache::Error>(())
    /// ```
    pub async fn set_many<'k, 'v, T, I, KK>(
        &self,
        items: I,
        timeout: impl Into<Timeout>,
        mut failed: impl FnMut(Key<'k>, Error<B::Error>),
    ) -> Res<usize, B>
    where
        T: Serialize + ?Sized + 'v,
        I: IntoIterator<Item = (KK, &'v T)>,
        I::IntoIter: Clone,
        KK: Into<Key<'k>>,
    {
        let items = items.into_iter();
        let keys = items.clone().map(|(key, _)| key.into());
        self.with(|c| c.validate_all(keys.clone()).map_err(Error::from))
            .await?;
        let timeout = timeout.into();
        let mut failures = 0;
        for (key, value) in items {
            let key = key.into();
            if let Err(e) = self.with(|c| c.set(key, value, timeout)).await {
                failed(key, e);
                failures += 1;
            }
        }
        Ok(failures)
    }

    /// Django's `clear` ([`Cache::clear`]).
    pub async fn clear(&self) -> Res<(), B> {
        self.with(|c| c.clear()).await
    }

    /// Django's `close` ([`Cache::close`]): every change made durable.
    pub async fn close(&self) -> Res<(), B> {
        self.with(|c| c.close()).await
    }

    /// Django's `get_or_set`, with `default` run outside the lock: it may use this same
    /// cache, and other tasks are not held up while it computes. As in Django, the value is
    /// read again after the `add`: if another task stored the key meanwhile, that value is
    /// returned (and the default is not stored).
    pub async fn get_or_set<T, F>(
        &self,
        key: impl AsKey,
        default: F,
        timeout: impl Into<Timeout>,
    ) -> Res<T, B>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> T,
    {
        let key = key.as_key();
        if let Some(v) = self.with(|c| c.get(key)).await? {
            return Ok(v);
        }
        let v = default();
        let timeout = timeout.into();
        let stored = self
            .with(|c| {
                c.add(key, &v, timeout)?;
                c.get(key)
            })
            .await?;
        Ok(stored.unwrap_or(v))
    }
}

impl<C, B: Backend, const K: usize, M: RawMutex> core::fmt::Debug for AsyncSharedCache<C, B, K, M> {
    /// The cache's own `Debug`, or `<busy>` while a call holds the lock.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut s = f.debug_struct("AsyncSharedCache");
        match self.inner.try_lock() {
            Ok(cache) => s.field("inner", &*cache).finish(),
            Err(_) => s.field("inner", &format_args!("<busy>")).finish(),
        }
    }
}
