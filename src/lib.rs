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
//!   The capacity is in bytes and no table holds over 255 (see [`key`]). Batch calls
//!   validate every key before using any.
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
