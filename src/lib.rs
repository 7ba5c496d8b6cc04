//! Django's cache API for microcontrollers: `no_std`, no heap, expiry on a tick clock.
//!
//! ```
//! use tickcache::{Config, ManualClock, MemCache, Table, Timeout};
//!
//! let clock = ManualClock::new(1000); // a 1 kHz tick
//! // 64 entries, made keys up to 32 bytes, values up to 48 bytes: all in this one value.
//! let mut cache: MemCache<_, 64, 32, 48> = MemCache::new(&clock, Table::new(), Config::new());
//!
//! cache.set("admin_user", &42u32, 30)?; // 30 seconds
//! assert_eq!(cache.get::<u32>("admin_user")?, Some(42));
//! clock.advance_secs(30);
//! assert_eq!(cache.get::<u32>("admin_user")?, None); // expired
//!
//! cache.set("nothing", &None::<u32>, Timeout::Never)?; // a stored None ...
//! assert_eq!(cache.get::<Option<u32>>("nothing")?, Some(None)); // ... is not a miss
//!
//! let n = cache.get_or_set("post_count", || 7i64, 300)?;
//! assert_eq!(cache.incr("post_count", 1)?, n + 1);
//! # Ok::<(), tickcache::Error>(())
//! ```
//!
//! # Map from Django
//! | Django | tickcache |
//! |---|---|
//! | `cache.set(k, v, 75)` / `set(k, v)` | [`Cache::set`]`(k, &v, 75)` / [`Cache::set_default`]`(k, &v)` |
//! | `incr(k)` / `incr(k, 5)` | [`Cache::incr_one`]`(k)` / [`Cache::incr`]`(k, 5)` |
//! | `cache.get(k)` / `get(k, default)` | [`Cache::get`] returns `Option<T>`; `unwrap_or(default)` |
//! | `timeout=None` / `0` / negative | [`Timeout::Never`] / expire at once |
//! | `version=2` | `(k, 2)` or `Key::new(k).version(2)`; for a whole batch, [`Cache::at_version`]`(2).get_many(..)` |
//! | `get_many` → dict | [`Cache::get_many`] (a visitor), [`Cache::get_many_into`] (a `heapless` map, or any [`ManyMap`]); on the host `get_many_map` |
//! | `LocMemCache` / `DummyCache` | [`Table`] / [`Dummy`] backends; on the host also `HeapTable` (feature `std`: entries on the heap under a byte budget) |
//! | `MAX_ENTRIES`, `CULL_FREQUENCY` | [`Table::with_culling`] |
//! | `KEY_PREFIX`, `VERSION`, `KEY_FUNCTION`, `TIMEOUT` | [`Config`] |
//! | `ValueError` from `incr` | [`Error::NotFound`] |
//! | `InvalidCacheKey` / `CacheKeyWarning` | [`KeyPolicy::Strict`] (the default) / [`KeyPolicy::Warn`]`(hook)` |
//! | `caches["default"]` | `Caches` (feature `std`) |
//! | caches sharing a `LOCATION` | a [`Cache`] per [`Config`] over one [`Store`] (`&STORE`); on the host `Caches` aliases over one `Arc<SyncStore>` |
//!
//! # Django's cache documentation, in tickcache
//! The examples of Django's "low-level cache API", one block each.
//!
//! The basics: `set`, `get` with a default, `add`, `get_or_set` with a value and with a
//! callable, `touch`, `incr`/`decr`, `delete`, `clear`.
//! ```
//! use tickcache::{Clock, Config, ManualClock, MemCache, Table, Timeout};
//! let clock = ManualClock::new(1000);
//! let mut cache: MemCache<_, 16, 32, 32> = MemCache::new(&clock, Table::new(), Config::new());
//!
//! // cache.set("my_key", "hello, world!", 30); cache.get("my_key")
//! cache.set("my_key", "hello, world!", 30)?;
//! assert_eq!(cache.get::<String>("my_key")?.as_deref(), Some("hello, world!"));
//! // cache.get("my_key", "has expired") after 30 s
//! clock.advance_secs(30);
//! let v = cache.get::<String>("my_key")?.unwrap_or_else(|| "has expired".into());
//! assert_eq!(v, "has expired");
//! // cache.add("add_key", "Initial value"); cache.add("add_key", "New value")
//! assert!(cache.add_default("add_key", "Initial value")?);
//! assert!(!cache.add_default("add_key", "New value")?);
//! assert_eq!(cache.get::<String>("add_key")?.as_deref(), Some("Initial value"));
//! // cache.get_or_set("my_new_key", "my new value", 100)
//! let v: String = cache.get_or_set("my_new_key", || "my new value".into(), 100)?;
//! assert_eq!(v, "my new value");
//! // cache.get_or_set("some-timestamp-key", datetime.datetime.now): the callable runs
//! // only on a miss.
//! let first = cache.get_or_set("some-timestamp-key", || clock.now(), Timeout::Default)?;
//! clock.advance_secs(1);
//! let again = cache.get_or_set("some-timestamp-key", || clock.now(), Timeout::Default)?;
//! assert_eq!(first, again);
//! // cache.touch("add_key", 10); cache.incr("num"), incr("num", 10), decr, decr("num", 5)
//! assert!(cache.touch("add_key", 10)?);
//! cache.set_default("num", &1)?;
//! assert_eq!(cache.incr_one("num")?, 2);
//! assert_eq!(cache.incr("num", 10)?, 12);
//! assert_eq!(cache.decr_one("num")?, 11);
//! assert_eq!(cache.decr("num", 5)?, 6);
//! // cache.delete("a"); cache.clear()
//! assert!(cache.delete("num")?);
//! cache.clear()?;
//! assert!(cache.is_empty());
//! # Ok::<(), tickcache::Error>(())
//! ```
//!
//! Batches, and Django's `version=`, per call and for a whole batch.
//! ```
//! use std::collections::HashMap;
//! use tickcache::{Config, ManualClock, MemCache, Table};
//! let clock = ManualClock::new(1000);
//! let mut cache: MemCache<_, 16, 32, 32> = MemCache::new(&clock, Table::new(), Config::new());
//!
//! // cache.set_many({"a": 1, "b": 2, "c": 3}); cache.get_many(["a", "b", "c"])
//! assert_eq!(cache.set_many([("a", &1), ("b", &2), ("c", &3)], 300, |_, _| {})?, 0);
//! let got: HashMap<&str, i32> = {
//!     let mut m = HashMap::new();
//!     cache.get_many_into(["a", "b", "c"], &mut m)?;
//!     m
//! };
//! assert_eq!(got, HashMap::from([("a", 1), ("b", 2), ("c", 3)]));
//! // Without a heap: a heapless map.
//! let mut small = heapless::LinearMap::<&str, i32, 4>::new();
//! cache.get_many_into(["a", "c", "x"], &mut small)?;
//! assert_eq!(small.len(), 2);
//! // cache.delete_many(["a", "b", "c"])
//! assert_eq!(cache.delete_many(["a", "b", "c"])?, 3);
//!
//! // cache.set("my_key", "hello world!", version=2); cache.get("my_key");
//! // cache.get("my_key", version=2)
//! cache.set(("my_key", 2), "hello world!", 300)?;
//! assert_eq!(cache.get::<String>("my_key")?, None);
//! assert_eq!(cache.get::<String>(("my_key", 2))?.as_deref(), Some("hello world!"));
//! // cache.incr_version("my_key", version=2): now at version 3
//! assert_eq!(cache.incr_version(("my_key", 2), 1)?, 3);
//! assert_eq!(cache.get::<String>(("my_key", 3))?.as_deref(), Some("hello world!"));
//! // cache.set_many({...}, version=2); cache.get_many([...], version=2);
//! // cache.delete_many([...], version=2)
//! cache.at_version(2).set_many([("x", &1), ("y", &2)], 300, |_, _| {})?;
//! assert_eq!(cache.get_many(["x", "y"], |_, _: i32| {})?, 0);
//! assert_eq!(cache.at_version(2).get_many(["x", "y"], |_, _: i32| {})?, 2);
//! assert_eq!(cache.at_version(2).delete_many(["x", "y"])?, 2);
//! # Ok::<(), tickcache::Error>(())
//! ```
//!
//! Several caches over one store (`CACHES` entries that share a `LOCATION` but differ in
//! `KEY_PREFIX`, `VERSION`, `KEY_FUNCTION` or `TIMEOUT`). On firmware the store is a
//! `static` and each configured cache borrows it:
//! ```
//! use tickcache::{Cache, Config, ManualClock, Store, Table, Timeout};
//!
//! static LOCATION: Store<Table<32, 48, 32>> = Store::new(Table::new());
//! const DEFAULT: Config = Config::new();
//! const SITE_V2: Config = Config::new().key_prefix("site").version(2).timeout(Timeout::Secs(60));
//!
//! let clock = ManualClock::new(1000);
//! let mut cache = Cache::<_, _, 48>::new(&clock, &LOCATION, DEFAULT);
//! let mut site = Cache::<_, _, 48>::new(&clock, &LOCATION, SITE_V2);
//! cache.set("k", &1u8, 300)?; // :1:k
//! site.set_default("k", &2u8)?; // site:2:k, for 60 s
//! assert_eq!((cache.get::<u8>("k")?, site.get::<u8>("k")?), (Some(1), Some(2)));
//! assert_eq!(cache.len(), 2); // one store
//! # Ok::<(), tickcache::Error>(())
//! ```
//! On the host, `caches["alias"]` over one `SyncStore`:
//! ```
//! use std::sync::Arc;
//! use tickcache::{Cache, Caches, Config, StdClock, SyncStore, Table};
//!
//! type Location = Arc<SyncStore<Table<64, 48, 32>>>;
//! let location: Location = Arc::new(SyncStore::new(Table::new()));
//! let mut caches: Caches<StdClock, Location, 48> = Caches::new();
//! caches.insert("default", Cache::new(StdClock::new(), Arc::clone(&location), Config::new()));
//! caches.insert("v2", Cache::new(StdClock::new(), location, Config::new().version(2)));
//!
//! // cache1 = caches["default"]; cache2 = caches["default"]; cache1 is cache2
//! assert!(Arc::ptr_eq(&caches.get("default")?, &caches.get("default")?));
//! caches.get("default")?.lock().set("k", &1u8, 300)?;
//! assert_eq!(caches.get("v2")?.lock().get::<u8>("k")?, None);
//! assert_eq!(caches.get("v2")?.lock().get::<u8>(("k", 1))?, Some(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Cache key warnings: Django's locmem warns about keys memcached would refuse
//! (`CacheKeyWarning`) and goes on; [`KeyPolicy::Warn`] calls a hook and goes on, and the
//! default [`KeyPolicy::Strict`] refuses them, as the memcached backends do.
//! ```
//! use tickcache::{Config, Error, Key, KeyError, KeyPolicy, ManualClock, MemCache, Table};
//!
//! fn cache_key_warning(key: Key<'_>, rule: KeyError) {
//!     eprintln!("CacheKeyWarning: {:?}: {rule}", core::str::from_utf8(key.key));
//! }
//! let clock = ManualClock::new(1000);
//! let warn = Config::new().key_policy(KeyPolicy::Warn(cache_key_warning));
//! let mut locmem: MemCache<_, 8, 32, 8> = MemCache::new(&clock, Table::new(), warn);
//! locmem.set("key with spaces", &1u8, 60)?; // warns, stores
//! assert_eq!(locmem.get::<u8>("key with spaces")?, Some(1));
//!
//! let mut strict: MemCache<_, 8, 32, 8> = MemCache::new(&clock, Table::new(), Config::new());
//! assert_eq!(strict.set("key with spaces", &1u8, 60), Err(Error::Key(KeyError::BadChar)));
//! # Ok::<(), tickcache::Error>(())
//! ```
//!
//! # Where this differs from Django, and why
//! - A timeout of zero or below removes the key at once instead of storing an expired entry;
//!   every read behaves the same, and no slot is spent on a dead entry.
//! - A positive timeout lasts at least one tick, however short: 5 ms on a 100 Hz clock
//!   keeps the value for one 10 ms tick.
//! - Overwriting an existing key never culls (Django's locmem culls on every `set` when
//!   full, even one that does not grow the table). With a non-zero `CULL_FREQUENCY`,
//!   culling reclaims expired entries first (except a cull of a single entry, which takes
//!   the least recent one in O(1)); frequency 0 clears everything, as in Django.
//! - Key errors are errors (Django's memcached backends), checked in Django's order and
//!   before the key capacity: [`KeyError::TooLong`], [`KeyError::BadChar`], then
//!   [`KeyError::OverCapacity`]; [`KeyPolicy::Warn`] calls a hook instead, as locmem warns.
//!   The capacity is in bytes and no table holds over 255 (see [`key`]).
//! - Batch calls validate every key before using any (Django's memcached backends): one
//!   invalid key changes nothing. Under [`KeyPolicy::Warn`] the hook so hears of a
//!   batch's key twice.
//! - A value is encoded straight into its slot inside the cache's lock (Django pickles
//!   before it locks): a `Serialize` that uses the same shared cache or store gets
//!   [`Error::Busy`] from that inner call, never a panic. `get_or_set` runs its default
//!   outside the lock, as Django does.
//! - `delete` returns `true` only for a live entry (memcached's answer), not for an expired
//!   one that happened not to be reclaimed yet.
//! - `incr`/`decr` work on integers in `i64` range (and on ASCII decimal raw values, as
//!   memcached does); overflow is an error instead of Python's big integers.
//! - `incr_version` moves the entry in place, so it never culls.
//!
//! # Time
//! Expiry is in ticks of the [`Clock`] the firmware provides. Timeouts in seconds or
//! milliseconds convert once, saturating, and a positive timeout is never shorter than one
//! tick. An entry is expired when `expiry <= now`.
//!
//! # Sharing a cache
//! | who uses it | share it through | while a call runs |
//! |---|---|---|
//! | interrupt handlers and the main loop | [`SharedCache`] (default lock: a critical section) | interrupts masked for the whole call |
//! | thread mode only | [`SharedCache`] over `ThreadModeRawMutex` ([`mutex`]) | interrupts enabled; a call from a handler panics |
//! | async tasks (embassy or any executor) | [`AsyncSharedCache`] | other tasks wait on the lock; interrupts enabled, storage awaited with the lock held ([`AsyncBackend`]) |
//! | an interrupt handler, next to tasks | [`AsyncSharedCache::try_with`] | never waits: [`Error::Busy`] while a task holds the lock |
//! | threads on the host | `SyncCache` (feature `std`) | a `std::sync::Mutex` |
//!
//! From inside one of its own calls (a value's `Serialize`, a closure), each answers
//! [`Error::Busy`] instead of panicking or deadlocking.

#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

mod async_shared;
pub mod backend;
mod cache;
pub mod clock;
mod config;
mod dummy;
mod error;
pub mod flash;
pub mod hash;
#[cfg(feature = "std")]
pub mod heap;
#[cfg(feature = "std")]
mod host;
pub mod key;
pub mod memcached;
#[cfg(feature = "_model")]
pub mod model;
mod shared;
pub mod table;
mod timeout;
pub mod value;
mod words;

pub use async_shared::{AsyncBackend, AsyncSharedCache};
pub use backend::{Backend, Put, NEVER};
pub use cache::{Cache, ManyMap, MemCache};
pub use clock::{Clock, ManualClock, Wrap32};
pub use config::Config;
pub use dummy::Dummy;
pub use error::Error;
pub use flash::{FlashError, Persistent, Policy};
#[cfg(feature = "std")]
pub use heap::HeapTable;
#[cfg(feature = "std")]
pub use host::{Caches, StdClock, SyncCache, SyncGuard, SyncStore, UnknownAlias};
pub use key::{AsKey, Key, KeyError, KeyPolicy, KeyWarning};
pub use shared::{SharedCache, Store};
pub use table::Table;
pub use timeout::Timeout;
pub use value::Kind;

/// The locks a [`SharedCache`] or an [`AsyncSharedCache`] is built on: embassy-sync's raw
/// mutexes. `CriticalSectionRawMutex` (the default) works from interrupts and thread mode;
/// `ThreadModeRawMutex` (Cortex-M, or feature `std`) from thread mode only;
/// `NoopRawMutex` within one execution context.
pub mod mutex {
    pub use embassy_sync::blocking_mutex::raw::*;
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
