//! The Django-shaped API over any [`Backend`].

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backend::{Backend, Put, EXPIRED, NEVER};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::Error;
use crate::key::{self, AsKey, Key, KeyError, KeyPolicy};
use crate::table::Table;
use crate::timeout::Timeout;
use crate::value::{self, Kind, ValueError};
use crate::words::Aligned;

/// A cache with Django's API: clock `C`, backend `B`, made keys of at most `K` bytes.
///
/// The memory cache is [`MemCache`]; see the [crate documentation](crate) for a tour.
pub struct Cache<C, B, const K: usize> {
    clock: C,
    backend: B,
    config: Config,
    /// How far cache time runs ahead of the clock ([`Cache::resume_at`]), plus one (at most
    /// `u64::MAX`): [`Cache::now`] then takes one add and its carry.
    offset1: u64,
    /// Where each call makes its key: one buffer in the cache rather than a zeroed one on
    /// the stack of every call.
    /// Word-aligned for the word-at-a-time paths of [`crate::words`].
    scratch: Aligned<[u8; K]>,
}

/// The memory cache (Django's locmem): `N` entries, made keys up to `K` bytes, encoded values
/// up to `V` bytes. `size_of::<MemCache<C, N, K, V>>()` is about `(N + 1) * (K + V + 19)`
/// bytes.
pub type MemCache<C, const N: usize, const K: usize, const V: usize> = Cache<C, Table<N, K, V>, K>;

type Res<T, B> = Result<T, Error<<B as Backend>::Error>>;

/// A value encoder behind a `dyn` call: writes into the slot, answers its length and kind
/// or its error as one word ([`filled`]).
type DynFill<'a> = &'a mut dyn FnMut(&mut [u8]) -> u32;

/// An encoder's answer as one word, returned in a register where a `Result` of a length and
/// a kind goes through memory on 32-bit cores: the length in bits 0 to 28, the kind in bits
/// 29 and 30; bit 31 and the error's number for an error. A value of 512 MiB or more (only
/// a heap table or an outside backend could offer the room) is [`ValueError::TooLarge`],
/// never a length cut short.
#[inline(always)]
fn filled(r: Result<(usize, Kind), ValueError>) -> u32 {
    match r {
        Ok((len, kind)) if len >> 29 == 0 => len as u32 | (kind as u32) << 29,
        Ok(_) => 1 << 31 | ValueError::TooLarge as u32,
        Err(e) => 1 << 31 | e as u32,
    }
}

/// [`filled`]'s word taken apart.
#[inline(always)]
fn unfilled<E>(w: u32) -> Result<(usize, Kind), Error<E>> {
    if w >> 31 != 0 {
        return Err(value_error(match w & 3 {
            0 => ValueError::TooLarge,
            1 => ValueError::Serialize,
            _ => ValueError::Type,
        }));
    }
    let kind = match (w >> 29) & 3 {
        0 => Kind::Bytes,
        1 => Kind::Serde,
        2 => Kind::Int,
        _ => Kind::Item,
    };
    Ok(((w & 0x1fff_ffff) as usize, kind))
}

fn value_error<E>(e: ValueError) -> Error<E> {
    match e {
        ValueError::TooLarge => Error::ValueTooLarge,
        ValueError::Serialize => Error::Serialize,
        ValueError::Type => Error::WrongType,
    }
}

impl<C: Clock, B: Backend, const K: usize> Cache<C, B, K> {
    /// A cache over `backend`, reading time from `clock`. Usable in `const` and `static`.
    pub const fn new(clock: C, backend: B, config: Config) -> Self {
        const { assert!(K >= 1, "K must be at least 1") };
        Cache {
            clock,
            backend,
            config,
            offset1: 1,
            scratch: Aligned([0; K]),
        }
    }

    /// [`Cache::new`] followed by [`Cache::resume_at`]`(ticks)`, built in one piece: the
    /// persistent backends' `into_cache` moves a backend of a kilobyte or more, and built
    /// this way it is moved once, straight into the caller's cache (a call on the new cache
    /// before returning it had the whole cache copied once more).
    #[inline(always)]
    pub(crate) fn resumed(clock: C, backend: B, config: Config, ticks: u64) -> Self {
        // `now()` with no offset yet.
        let now = clock.now().min(NEVER - 1);
        let mut cache = Self::new(clock, backend, config);
        cache.offset1 = ticks.saturating_sub(now).saturating_add(1);
        cache
    }

    /// The cache time in ticks: the clock's time, moved forward by [`Cache::resume_at`].
    /// It stops one tick short of [`NEVER`], so a `Never` entry outlives any clock.
    #[inline]
    pub fn now(&self) -> u64 {
        // The clock plus the offset plus one saturates exactly when the clock plus the
        // offset is `NEVER` or past it, and less one it is then `NEVER - 1`: one
        // saturating add, where `saturating_add` and `min` add a 64-bit compare on 32-bit
        // cores.
        self.clock.now().saturating_add(self.offset1) - 1
    }

    /// Makes cache time continue from at least `ticks`, so time never runs backwards across a
    /// reboot (persistent backends call this with the latest time found in storage).
    pub fn resume_at(&mut self, ticks: u64) {
        let now = self.now();
        if ticks > now {
            self.offset1 = self.offset1.saturating_add(ticks - now);
        }
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably (for backend-specific calls such as wear statistics).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Number of entries held (expired ones are counted until reclaimed).
    pub fn len(&self) -> usize {
        self.backend.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.backend.is_empty()
    }

    /// Writes the made and validated key into `out` and returns its length (Django's
    /// `make_and_validate_key`).
    pub fn make_key(&self, key: impl AsKey, out: &mut [u8]) -> Result<usize, KeyError> {
        let key = key.as_key();
        let version = key.version.unwrap_or(self.config.version);
        key::make(&self.config, version, key.key, out)
    }

    /// Makes `key` into the scratch buffer; returns its length and the cache time: the start
    /// of every call. One copy, out of line, for every operation (key making, its errors and
    /// the clock's arithmetic are compiled once rather than at each call).
    #[inline(never)]
    fn prepare(&mut self, key: Key<'_>) -> Result<(usize, u64), KeyError> {
        let config = &self.config;
        let version = key.version.unwrap_or(config.version);
        // Under the warning policy or with a custom key function the configuration has no
        // head, so every key takes the general path (which calls the hook or the function).
        let strict = matches!(config.policy, KeyPolicy::Strict);
        let fast = if version == config.version {
            key::make_with_head(&config.head, key.key, &mut self.scratch.0, strict)
        } else {
            None
        };
        let n = match fast {
            Some(made) => made?,
            None => key::make(config, version, key.key, &mut self.scratch.0)?,
        };
        Ok((n, self.time()))
    }

    /// [`Cache::now`] for an operation or a close: out of line over a backend that
    /// is [storage-bound](Backend::STORAGE_BOUND) (the clock's call and the offset's arithmetic
    /// once, for [`Cache::prepare`] and [`Cache::close`]), inline over any other (its
    /// close does not read the time, and the memory cache's operations save the call).
    #[inline(always)]
    fn time(&self) -> u64 {
        if B::STORAGE_BOUND {
            self.now_out_of_line()
        } else {
            self.now()
        }
    }

    /// [`Cache::now`], out of line.
    #[inline(never)]
    fn now_out_of_line(&self) -> u64 {
        self.now()
    }

    /// Resolves a timeout to an absolute expiry tick, or [`EXPIRED`] when it is already
    /// over: a plain `u64`, returned in registers (an `Option<u64>` goes through memory on
    /// 32-bit cores). A live entry's expiry is after `now`, so never 0.
    fn expiry(&self, timeout: Timeout, now: u64) -> u64 {
        let timeout = match timeout {
            Timeout::Default => self.config.timeout,
            t => t,
        };
        let rate = self.clock.ticks_per_second();
        // Over a storage-bound backend the store's flash work dwarfs the general path's
        // instructions: no fast path, and one path for every kind of timeout (smaller
        // firmware).
        if B::STORAGE_BOUND {
            return timeout.expiry_uniform(now, rate);
        }
        // The common case in 32-bit arithmetic: 1 to 65,535 seconds at a rate below 65,536
        // is one 32-bit product, and added to a time below 2^62 ticks it can neither
        // saturate nor reach `NEVER - 1` (on Cortex-M0 the general path's 64-bit compares
        // and saturation cost about 40 instructions a store).
        if let Timeout::Secs(s) = timeout {
            if (s as u64).wrapping_sub(1) < 0xffff
                && rate.wrapping_sub(1) < 0xffff
                && now >> 62 == 0
            {
                return now + u64::from(s as u32 * rate);
            }
        }
        timeout.expiry_at(now, rate)
    }

    /// Stores through the backend; a timeout that is already over removes the key instead.
    ///
    /// Every typed and raw store funnels into [`Cache::store_dyn`] with the value's encoder
    /// behind a `dyn` call, so the backend's insert path is compiled once, not once per
    /// value type: smaller firmware for an indirect call per store.
    fn store(
        &mut self,
        key: Key<'_>,
        mode: Put,
        timeout: Timeout,
        mut fill: impl FnMut(&mut [u8]) -> u32,
    ) -> Res<bool, B> {
        // Every encoder only reads the value it borrows, so it can run more than once: no
        // `Option` to take it out of.
        self.store_dyn(key, mode, timeout, &mut fill)
    }

    #[inline(never)]
    fn store_dyn(
        &mut self,
        key: Key<'_>,
        mode: Put,
        timeout: Timeout,
        fill: DynFill<'_>,
    ) -> Res<bool, B> {
        let (n, now) = self.prepare(key)?;
        let made = made(&self.scratch.0, n);
        match self.expiry(timeout, now) {
            EXPIRED => {
                if mode == Put::Add {
                    // A key `has_key` finds not live is absent once it answers (it drops an
                    // expired entry): no delete to make.
                    return Ok(!self.backend.has_key(made, now)?);
                }
                self.backend.delete(made, now)?;
                Ok(true)
            }
            expiry => self
                .backend
                .put(made, mode, expiry, now, |dst| unfilled(fill(dst))),
        }
    }

    /// Django's `get`: the value, or `None` on a miss. A stored `None` reads as `Some(None)`
    /// with `T = Option<_>`. A hit makes the entry most recent.
    ///
    /// Reading with a type that does not match the stored value is [`Error::WrongType`].
    #[inline]
    pub fn get<T: DeserializeOwned>(&mut self, key: impl AsKey) -> Res<Option<T>, B> {
        self.get_key(key.as_key())
    }

    /// [`Cache::get`] once per value type, whatever the key's type.
    fn get_key<T: DeserializeOwned>(&mut self, key: Key<'_>) -> Res<Option<T>, B> {
        let (n, now) = self.prepare(key)?;
        let made = made(&self.scratch.0, n);
        self.backend
            .get(made, now, |bytes, kind| {
                value::decode::<T>(bytes, kind).map_err(value_error)
            })?
            .transpose()
    }

    /// Raw reads ([`Cache::with_raw`], and so [`Cache::get_raw`]) funnel here with the reader
    /// behind a `dyn` call, so key making, lookup and the recency update are compiled once,
    /// not once per reader (as stores funnel into [`Cache::store_dyn`]). The typed
    /// [`Cache::get`] calls the backend directly: behind a `dyn` reader, decoding a
    /// `[u8; 32]` cost about 180 more instructions a hit on x86-64.
    #[inline(never)]
    fn read_dyn(&mut self, key: Key<'_>, read: &mut dyn FnMut(&[u8], Kind)) -> Res<(), B> {
        let (n, now) = self.prepare(key)?;
        let made = made(&self.scratch.0, n);
        self.backend.get(made, now, read)?;
        Ok(())
    }

    /// Reads the stored bytes into `out` and returns their length, or `None` on a miss.
    /// Integers read as ASCII decimal (as memcached sends them). A hit makes the entry
    /// most recent.
    pub fn get_raw(&mut self, key: impl AsKey, out: &mut [u8]) -> Res<Option<usize>, B> {
        let r = self.with_raw(key, |bytes, kind| match kind {
            Kind::Int => match value::decode_int(bytes) {
                Some(i) => value::write_decimal(i, out).map_err(|_| Error::BufferTooSmall),
                None => Err(Error::WrongType),
            },
            _ => match out.get_mut(..bytes.len()) {
                Some(dst) => {
                    crate::words::copy(dst, bytes);
                    Ok(bytes.len())
                }
                None => Err(Error::BufferTooSmall),
            },
        })?;
        r.transpose()
    }

    /// Calls `read` with the stored bytes and their [`Kind`] without copying; `None` on a
    /// miss. A hit makes the entry most recent.
    pub fn with_raw<R>(
        &mut self,
        key: impl AsKey,
        read: impl FnOnce(&[u8], Kind) -> R,
    ) -> Res<Option<R>, B> {
        let mut read = Some(read);
        let mut out = None;
        self.read_dyn(key.as_key(), &mut |bytes, kind| {
            if let Some(read) = read.take() {
                out = Some(read(bytes, kind));
            }
        })?;
        Ok(out)
    }

    /// Django's `set`: stores `value` for `timeout` (seconds, [`Timeout`] or `Duration`).
    ///
    /// A timeout of zero or below removes the key. If the value cannot be stored
    /// ([`Error::ValueTooLarge`], [`Error::Serialize`]) the key's old value is removed too,
    /// so no stale value stays readable.
    #[inline]
    pub fn set<T: Serialize + ?Sized>(
        &mut self,
        key: impl AsKey,
        value: &T,
        timeout: impl Into<Timeout>,
    ) -> Res<(), B> {
        self.store(key.as_key(), Put::Set, timeout.into(), |dst| {
            filled(value::encode(value, dst))
        })
        .map(drop)
    }

    /// Django's `set(key, value)` without a timeout: [`Cache::set`] with the configured
    /// default timeout ([`Timeout::Default`], 300 s unless the [`Config`] says otherwise).
    ///
    /// ```
    /// # use tickcache::{MemCache, Config, ManualClock, Table};
    /// # let clock = ManualClock::new(1000);
    /// # let mut cache: MemCache<_, 8, 16, 16> = MemCache::new(&clock, Table::new(), Config::new());
    /// cache.set_default("greeting", "hello")?;
    /// clock.advance_secs(299);
    /// assert_eq!(cache.get::<String>("greeting")?.as_deref(), Some("hello"));
    /// clock.advance_secs(1);
    /// assert_eq!(cache.get::<String>("greeting")?, None);
    /// # Ok::<(), tickcache::Error>(())
    /// ```
    #[inline]
    pub fn set_default<T: Serialize + ?Sized>(&mut self, key: impl AsKey, value: &T) -> Res<(), B> {
        self.set(key, value, Timeout::Default)
    }

    /// Django's `add(key, value)` without a timeout: [`Cache::add`] with the configured
    /// default timeout.
    ///
    /// ```
    /// # use tickcache::{MemCache, Config, ManualClock, Table};
    /// # let clock = ManualClock::new(1000);
    /// # let mut cache: MemCache<_, 8, 16, 16> = MemCache::new(&clock, Table::new(), Config::new());
    /// assert!(cache.add_default("lock", &1u8)?);
    /// assert!(!cache.add_default("lock", &2u8)?);
    /// # Ok::<(), tickcache::Error>(())
    /// ```
    #[inline]
    pub fn add_default<T: Serialize + ?Sized>(
        &mut self,
        key: impl AsKey,
        value: &T,
    ) -> Res<bool, B> {
        self.add(key, value, Timeout::Default)
    }

    /// Stores raw bytes (read back with [`Cache::get_raw`] or [`Cache::with_raw`]).
    pub fn set_raw(
        &mut self,
        key: impl AsKey,
        bytes: &[u8],
        timeout: impl Into<Timeout>,
    ) -> Res<(), B> {
        self.store(key.as_key(), Put::Set, timeout.into(), |dst| {
            filled(copy_raw(bytes, dst))
        })
        .map(drop)
    }

    /// Django's `add`: stores only when the key is missing or expired; `true` if it stored.
    /// A refused `add` does not change recency.
    pub fn add<T: Serialize + ?Sized>(
        &mut self,
        key: impl AsKey,
        value: &T,
        timeout: impl Into<Timeout>,
    ) -> Res<bool, B> {
        self.store(key.as_key(), Put::Add, timeout.into(), |dst| {
            filled(value::encode(value, dst))
        })
    }

    /// [`Cache::add`] for raw bytes.
    pub fn add_raw(
        &mut self,
        key: impl AsKey,
        bytes: &[u8],
        timeout: impl Into<Timeout>,
    ) -> Res<bool, B> {
        self.store(key.as_key(), Put::Add, timeout.into(), |dst| {
            filled(copy_raw(bytes, dst))
        })
    }

    /// Django's `touch`: gives a live entry a new timeout; `false` if missing or expired.
    /// Does not change recency. A timeout of zero or below expires the entry (and returns
    /// `true` if it was live).
    #[inline]
    pub fn touch(&mut self, key: impl AsKey, timeout: impl Into<Timeout>) -> Res<bool, B> {
        self.touch_key(key.as_key(), timeout.into())
    }

    fn touch_key(&mut self, key: Key<'_>, timeout: Timeout) -> Res<bool, B> {
        let (n, now) = self.prepare(key)?;
        let made = made(&self.scratch.0, n);
        // A timeout already over ([`EXPIRED`]): the backend's touch deletes the key.
        let expiry = self.expiry(timeout, now);
        self.backend.touch(made, expiry, now)
    }

    /// Django's `delete`: `true` when a live entry was removed.
    #[inline]
    pub fn delete(&mut self, key: impl AsKey) -> Res<bool, B> {
        self.delete_key(key.as_key())
    }

    fn delete_key(&mut self, key: Key<'_>) -> Res<bool, B> {
        let (n, now) = self.prepare(key)?;
        let made = made(&self.scratch.0, n);
        self.backend.delete(made, now)
    }

    /// Django's `has_key` (`key in cache`): `true` for a live entry, a stored `None`
    /// included. Does not change recency.
    #[inline]
    pub fn has_key(&mut self, key: impl AsKey) -> Res<bool, B> {
        self.has_key_key(key.as_key())
    }

    fn has_key_key(&mut self, key: Key<'_>) -> Res<bool, B> {
        let (n, now) = self.prepare(key)?;
        let made = made(&self.scratch.0, n);
        self.backend.has_key(made, now)
    }

    /// Checks every key before a batch call touches anything (Django's memcached backends
    /// make and validate all keys first): the first invalid key's error, or `Ok`.
    pub(crate) fn validate_all(
        &mut self,
        keys: impl Iterator<Item = impl AsKey>,
    ) -> Result<(), KeyError> {
        for key in keys {
            self.prepare(key.as_key())?;
        }
        Ok(())
    }

    /// Django's `get_many`, without a heap: calls `found(key, value)` for each key present
    /// and returns how many were found. Use the same key twice and it is visited twice.
    ///
    /// `keys` is any iterator of key-likes (`&str`, `&String`, [`Key`], ...) that can be
    /// walked twice (`Clone`, as iterators over arrays, slices and maps are): every key is
    /// validated first, and if any is invalid the error is returned before any entry is
    /// read (no `found` call, no change of recency), as Django's memcached backends do.
    /// Django's `version=` for the whole batch is [`Cache::at_version`].
    ///
    /// ```
    /// # use tickcache::{MemCache, Config, ManualClock, Table};
    /// # let clock = ManualClock::new(1000);
    /// # let mut cache: MemCache<_, 8, 16, 16> = MemCache::new(&clock, Table::new(), Config::new());
    /// cache.set("a", &1u8, 60)?;
    /// cache.set("b", &2u8, 60)?;
    /// let mut sum = 0;
    /// let found = cache.get_many(["a", "b", "c"], |_key, v: u8| sum += v)?;
    /// assert_eq!((found, sum), (2, 3));
    /// # Ok::<(), tickcache::Error>(())
    /// ```
    pub fn get_many<'k, T, I>(
        &mut self,
        keys: I,
        mut found: impl FnMut(Key<'k>, T),
    ) -> Res<usize, B>
    where
        T: DeserializeOwned,
        I: IntoIterator,
        I::IntoIter: Clone,
        I::Item: Into<Key<'k>>,
    {
        let keys = keys.into_iter();
        self.validate_all(keys.clone().map(Into::into))?;
        let mut hits = 0;
        for key in keys {
            let key = key.into();
            if let Some(v) = self.get_key(key)? {
                found(key, v);
                hits += 1;
            }
        }
        Ok(hits)
    }

    /// Django's `get_many` into a map of the keys found, keyed by the keys as given (so
    /// duplicates collapse, as in Django's dict); returns how many hits were inserted.
    ///
    /// Any [`ManyMap`]: a `heapless` `LinearMap` or `IndexMap` without a heap, or (feature
    /// `std`) a `HashMap` or `BTreeMap`. A hit that no longer fits a full map is
    /// [`Error::BufferTooSmall`]; the map then holds the hits before it. Keys are validated
    /// first, as in [`Cache::get_many`].
    ///
    /// ```
    /// # use tickcache::{MemCache, Config, ManualClock, Table};
    /// # let clock = ManualClock::new(1000);
    /// # let mut cache: MemCache<_, 8, 16, 16> = MemCache::new(&clock, Table::new(), Config::new());
    /// cache.set("a", &1u8, 60)?;
    /// cache.set("b", &2u8, 60)?;
    /// let mut got = heapless::LinearMap::<&str, u8, 4>::new();
    /// cache.get_many_into(["a", "b", "c", "a"], &mut got)?;
    /// assert_eq!((got.len(), got.get("a"), got.get("c")), (2, Some(&1), None));
    /// # Ok::<(), tickcache::Error>(())
    /// ```
    pub fn get_many_into<'k, T, I, M>(&mut self, keys: I, map: &mut M) -> Res<usize, B>
    where
        T: DeserializeOwned,
        I: IntoIterator,
        I::IntoIter: Clone,
        I::Item: Into<Key<'k>> + Clone,
        M: ManyMap<I::Item, T> + ?Sized,
    {
        let keys = keys.into_iter();
        self.validate_all(keys.clone().map(Into::into))?;
        let mut hits = 0;
        for item in keys {
            let key: Key<'k> = item.clone().into();
            if let Some(v) = self.get_key(key)? {
                map.insert_hit(item, v).map_err(|_| Error::BufferTooSmall)?;
                hits += 1;
            }
        }
        Ok(hits)
    }

    /// Django's `set_many`: stores each pair; for each one that fails to store (value too
    /// large, not serializable, storage error), calls `failed(key, error)` and goes on.
    /// Returns the number that failed (memcached's list of failed keys).
    ///
    /// `items` is any iterator of `(key, &value)` pairs that can be walked twice (an array,
    /// a slice's iterator, `&HashMap`): every key is validated first, and if any is invalid
    /// its [`Error::Key`] is returned and nothing is stored, as Django's memcached backends
    /// raise before storing anything. Django's `version=` is [`Cache::at_version`].
    ///
    /// ```
    /// # use tickcache::{MemCache, Config, ManualClock, Table};
    /// # let clock = ManualClock::new(1000);
    /// # let mut cache: MemCache<_, 8, 16, 16> = MemCache::new(&clock, Table::new(), Config::new());
    /// let failed = cache.set_many([("a", &1u32), ("b", &2)], 60, |_key, _error| {})?;
    /// assert_eq!(failed, 0);
    /// # Ok::<(), tickcache::Error>(())
    /// ```
    pub fn set_many<'k, 'v, T, I, KK>(
        &mut self,
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
        // The loop of `set_many_raw` with `set` for `set_raw`, written out: through a
        // shared loop taking the store call as a closure, the whole-API firmware probe grew
        // by 28 bytes.
        let items = items.into_iter();
        self.validate_all(items.clone().map(|(key, _)| key.into()))?;
        let timeout = timeout.into();
        let mut failures = 0;
        for (key, value) in items {
            let key = key.into();
            if let Err(e) = self.set(key, value, timeout) {
                if matches!(e, Error::Settle) {
                    return Err(e);
                }
                failed(key, e);
                failures += 1;
            }
        }
        Ok(failures)
    }

    /// [`Cache::set_many`] for raw bytes (read back with [`Cache::get_raw`]).
    ///
    /// ```
    /// # use tickcache::{MemCache, Config, ManualClock, Table};
    /// # let clock = ManualClock::new(1000);
    /// # let mut cache: MemCache<_, 8, 16, 16> = MemCache::new(&clock, Table::new(), Config::new());
    /// let items: [(&str, &[u8]); 2] = [("a", b"alpha"), ("b", b"beta")];
    /// assert_eq!(cache.set_many_raw(items, 60, |_, _| {})?, 0);
    /// let mut buf = [0u8; 8];
    /// assert_eq!(cache.get_raw("b", &mut buf)?, Some(4));
    /// # Ok::<(), tickcache::Error>(())
    /// ```
    pub fn set_many_raw<'k, 'v, I, KK>(
        &mut self,
        items: I,
        timeout: impl Into<Timeout>,
        mut failed: impl FnMut(Key<'k>, Error<B::Error>),
    ) -> Res<usize, B>
    where
        I: IntoIterator<Item = (KK, &'v [u8])>,
        I::IntoIter: Clone,
        KK: Into<Key<'k>>,
    {
        let items = items.into_iter();
        self.validate_all(items.clone().map(|(key, _)| key.into()))?;
        let timeout = timeout.into();
        let mut failures = 0;
        for (key, value) in items {
            let key = key.into();
            if let Err(e) = self.set_raw(key, value, timeout) {
                if matches!(e, Error::Settle) {
                    return Err(e);
                }
                failed(key, e);
                failures += 1;
            }
        }
        Ok(failures)
    }

    /// Django's `delete_many`: deletes each key; returns how many live entries were removed.
    ///
    /// Every key is validated first: if any is invalid, the error is returned and nothing
    /// is deleted (Django's memcached backends). Django's `version=` is
    /// [`Cache::at_version`].
    pub fn delete_many<I>(&mut self, keys: I) -> Res<usize, B>
    where
        I: IntoIterator,
        I::IntoIter: Clone,
        I::Item: AsKey,
    {
        let keys = keys.into_iter();
        self.validate_all(keys.clone())?;
        let mut removed = 0;
        for key in keys {
            removed += usize::from(self.delete(key)?);
        }
        Ok(removed)
    }

    /// This cache with `version` as its default version, for the calls made through it:
    /// Django's `version=` argument, for a whole batch at once. Keys given with their own
    /// [`Key::version`] keep it. The view borrows this cache's clock and backend.
    ///
    /// ```
    /// # use tickcache::{MemCache, Config, Key, ManualClock, Table};
    /// # let clock = ManualClock::new(1000);
    /// # let mut cache: MemCache<_, 8, 16, 16> = MemCache::new(&clock, Table::new(), Config::new());
    /// // cache.set_many({"a": 1, "b": 2}, version=2)
    /// cache.at_version(2).set_many([("a", &1u32), ("b", &2)], 60, |_, _| {})?;
    /// assert_eq!(cache.get::<u32>("a")?, None);
    /// assert_eq!(cache.get::<u32>(Key::new("a").version(2))?, Some(1));
    /// // cache.get_many(["a", "b"], version=2)
    /// let mut sum = 0;
    /// cache.at_version(2).get_many(["a", "b"], |_, v: u32| sum += v)?;
    /// assert_eq!(sum, 3);
    /// // cache.delete_many(["a", "b"], version=2)
    /// assert_eq!(cache.at_version(2).delete_many(["a", "b"])?, 2);
    /// # Ok::<(), tickcache::Error>(())
    /// ```
    pub fn at_version(&mut self, version: i32) -> Cache<&C, &mut B, K> {
        Cache {
            clock: &self.clock,
            backend: &mut self.backend,
            config: self.config.version(version),
            offset1: self.offset1,
            scratch: self.scratch,
        }
    }

    /// Django's `get_or_set`: the cached value, or else `default()` (called only on a miss),
    /// which is then `add`ed with `timeout` and returned. With a timeout of zero nothing is
    /// stored and the default is returned.
    pub fn get_or_set<T, F>(
        &mut self,
        key: impl AsKey,
        default: F,
        timeout: impl Into<Timeout>,
    ) -> Res<T, B>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> T,
    {
        let key = key.as_key();
        if let Some(v) = self.get_key(key)? {
            return Ok(v);
        }
        let v = default();
        self.add(key, &v, timeout)?;
        Ok(v)
    }

    /// Django's `incr`: adds `delta` to an integer, keeps its expiry, makes it most recent and
    /// returns the new value. [`Error::NotFound`] on a miss, [`Error::NotInteger`] on a
    /// non-integer, [`Error::Overflow`] past the `i64` range (value unchanged).
    // Always inlined, as `decr`, `incr_version` and `decr_version`: each is one call of
    // the out-of-line step, and left to the optimizer, the whole-API firmware probe kept
    // them out of line along with the callers around them (444 bytes more on Cortex-M4).
    // `get` stays `#[inline]`: always inlined, a memory cache's hit cost more instructions.
    #[inline(always)]
    pub fn incr(&mut self, key: impl AsKey, delta: i64) -> Res<i64, B> {
        self.incr_key(key.as_key(), delta)
    }

    fn incr_key(&mut self, key: Key<'_>, delta: i64) -> Res<i64, B> {
        let (n, now) = self.prepare(key)?;
        let made = made(&self.scratch.0, n);
        self.backend.incr(made, delta, now)
    }

    /// Django's `incr(key)`: [`Cache::incr`] by 1.
    ///
    /// ```
    /// # use tickcache::{MemCache, Config, ManualClock, Table};
    /// # let clock = ManualClock::new(1000);
    /// # let mut cache: MemCache<_, 8, 16, 16> = MemCache::new(&clock, Table::new(), Config::new());
    /// cache.set_default("hits", &41)?;
    /// assert_eq!(cache.incr_one("hits")?, 42);
    /// assert_eq!(cache.decr_one("hits")?, 41);
    /// # Ok::<(), tickcache::Error>(())
    /// ```
    #[inline]
    pub fn incr_one(&mut self, key: impl AsKey) -> Res<i64, B> {
        self.incr(key, 1)
    }

    /// Django's `decr(key)`: [`Cache::incr`] by -1.
    #[inline]
    pub fn decr_one(&mut self, key: impl AsKey) -> Res<i64, B> {
        self.incr(key, -1)
    }

    /// Django's `decr`: `incr` by `-delta`. A `delta` of `i64::MIN` has no negation and is
    /// [`Error::Overflow`] before the key is looked at.
    #[inline(always)]
    pub fn decr(&mut self, key: impl AsKey, delta: i64) -> Res<i64, B> {
        let delta = delta.checked_neg().ok_or(Error::Overflow)?;
        self.incr_key(key.as_key(), delta)
    }

    /// Django's `incr_version`: moves the value from its version to version + `delta` with
    /// the default timeout and returns the new version. [`Error::NotFound`] on a miss.
    #[inline(always)]
    pub fn incr_version(&mut self, key: impl AsKey, delta: i32) -> Res<i32, B> {
        self.incr_version_key(key.as_key(), delta)
    }

    fn incr_version_key(&mut self, key: Key<'_>, delta: i32) -> Res<i32, B> {
        let version = key.version.unwrap_or(self.config.version);
        let to_version = version.checked_add(delta).ok_or(Error::Overflow)?;
        if self.move_version(key, version, to_version)? {
            Ok(to_version)
        } else {
            Err(Error::NotFound)
        }
    }

    /// Moves `key`'s value from `version` to `to_version` with the default timeout: true
    /// when it was there to move. Its answer (a flag or an error) fits a register, where
    /// the new version's result goes through memory on 32-bit cores: every error of the
    /// move is passed on as it is, and the version is added once, by the caller.
    fn move_version(&mut self, key: Key<'_>, version: i32, to_version: i32) -> Res<bool, B> {
        let (nf, now) = self.prepare(key.version(version))?;
        let from_buf = self.scratch;
        let from = made(&from_buf.0, nf);
        let (nt, _) = self.prepare(key.version(to_version))?;
        let to = made(&self.scratch.0, nt);
        match self.expiry(Timeout::Default, now) {
            // A default timeout of 0: both versions go. Read first, then delete: run again
            // after storage work (`AsyncSharedCache::with`), the answer is still the read's
            // (a first delete of `from` would answer "not found" the second time).
            EXPIRED => {
                let live = self.backend.has_key(from, now)?;
                if live {
                    self.backend.delete(to, now)?;
                    self.backend.delete(from, now)?;
                }
                Ok(live)
            }
            expiry => self.backend.rekey(from, to, expiry, now),
        }
    }

    /// Django's `decr_version`.
    #[inline(always)]
    pub fn decr_version(&mut self, key: impl AsKey, delta: i32) -> Res<i32, B> {
        let delta = delta.checked_neg().ok_or(Error::Overflow)?;
        self.incr_version_key(key.as_key(), delta)
    }

    /// Django's `clear`: removes everything.
    pub fn clear(&mut self) -> Res<(), B> {
        self.backend.clear()
    }

    /// Django's `close`: makes every change durable (flushes a write-back persistent
    /// backend) and records the current cache time with a persistent backend, so after a
    /// reboot time resumes from the close; the cache stays usable.
    pub fn close(&mut self) -> Res<(), B> {
        let now = self.time();
        self.backend.flush_at(now)
    }
}

/// A map that [`Cache::get_many_into`] fills with the hits of a batch: Django's `get_many`
/// dict. Implemented for `heapless`'s `LinearMap` and `IndexMap` and, with feature `std`,
/// for `HashMap` and `BTreeMap`; implement it for any other map.
pub trait ManyMap<K, V> {
    /// Inserts `value` under `key`, replacing a value already there; hands both back when
    /// the map is full.
    fn insert_hit(&mut self, key: K, value: V) -> Result<(), (K, V)>;
}

impl<K: Eq, V, const N: usize> ManyMap<K, V> for heapless::LinearMap<K, V, N> {
    fn insert_hit(&mut self, key: K, value: V) -> Result<(), (K, V)> {
        self.insert(key, value).map(drop)
    }
}

impl<K, V, S, const N: usize> ManyMap<K, V> for heapless::IndexMap<K, V, S, N>
where
    K: Eq + core::hash::Hash,
    S: core::hash::BuildHasher,
{
    fn insert_hit(&mut self, key: K, value: V) -> Result<(), (K, V)> {
        self.insert(key, value).map(drop)
    }
}

/// The first `n` bytes of a key buffer: `n` is a made key's length, never over `K`, and the
/// clamp (one compare) stands where a bounds check would put a panic call at every use.
#[inline(always)]
fn made<const K: usize>(buf: &[u8; K], n: usize) -> &[u8] {
    &buf[..n.min(K)]
}

fn copy_raw(bytes: &[u8], dst: &mut [u8]) -> Result<(usize, Kind), ValueError> {
    let slot = dst.get_mut(..bytes.len()).ok_or(ValueError::TooLarge)?;
    crate::words::copy(slot, bytes);
    Ok((bytes.len(), Kind::Bytes))
}

impl<C, B, const K: usize> core::fmt::Debug for Cache<C, B, K>
where
    B: Backend,
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Cache")
            .field("len", &self.backend.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ManualClock, Table};

    #[test]
    fn cache_time_follows_the_clock_plus_the_resumed_offset_and_stops_short_of_never() {
        let clock = ManualClock::new(1000);
        let mut c: MemCache<_, 4, 16, 8> = Cache::new(&clock, Table::new(), Config::new());
        assert_eq!(c.now(), 0);
        clock.advance(10);
        c.resume_at(25);
        assert_eq!(c.now(), 25);
        c.resume_at(5); // never backwards
        assert_eq!(c.now(), 25);
        clock.advance(7);
        assert_eq!(c.now(), 32);
        // The sum saturates one tick short of `NEVER`, whichever part is large.
        c.resume_at(NEVER - 3);
        assert_eq!(c.now(), NEVER - 3);
        clock.advance(2);
        assert_eq!(c.now(), NEVER - 1);
        clock.advance(u64::MAX);
        assert_eq!(c.now(), NEVER - 1);
        c.resume_at(NEVER);
        assert_eq!(c.now(), NEVER - 1);
        let resumed: MemCache<_, 4, 16, 8> =
            Cache::resumed(&clock, Table::new(), Config::new(), NEVER);
        assert_eq!(resumed.now(), NEVER - 1);
    }

    #[test]
    fn an_encoders_answer_keeps_its_length_kind_and_error() {
        for kind in [Kind::Bytes, Kind::Serde, Kind::Int, Kind::Item] {
            for len in [0, 1, 16, (1 << 29) - 1] {
                assert_eq!(unfilled::<()>(filled(Ok((len, kind)))), Ok((len, kind)));
            }
            // 512 MiB or more: too large, never a length cut short.
            for len in [1 << 29, (1 << 29) + 5, usize::MAX] {
                let got = unfilled::<()>(filled(Ok((len, kind))));
                assert_eq!(got, Err(Error::ValueTooLarge));
            }
        }
        for (e, want) in [
            (ValueError::TooLarge, Error::ValueTooLarge),
            (ValueError::Serialize, Error::Serialize),
            (ValueError::Type, Error::WrongType),
        ] {
            assert_eq!(unfilled::<()>(filled(Err(e))), Err(want));
        }
    }
}
