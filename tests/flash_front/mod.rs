//! The two front ends of the persistent backend, for harnesses that run against both: the
//! blocking `Persistent` through a `Cache`, and `AsyncPersistent` through an
//! `AsyncSharedCache` (one task, `NoopRawMutex`) on the async face of the same `MockFlash`,
//! driven by `embassy_futures::block_on`, each flash call yielding once.
//!
//! A harness makes every cache call with [`call!`]: the same closure runs on the `Cache`
//! directly, or inside `AsyncSharedCache::with` (the path of every async Django method:
//! lock, settle, the call, re-run after `Error::Settle`, settle).

#![allow(dead_code)]

use std::ops::Range;

use embassy_futures::block_on;
use tickcache::flash::{AsyncPersistent, FlashError, MockError, MockFlash, Persistent, Policy};
use tickcache::mutex::NoopRawMutex;
use tickcache::{AsyncSharedCache, Cache, Config, ManualClock, Table};

/// Which front end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `Persistent` over the blocking `NorFlash`.
    Blocking,
    /// `AsyncPersistent` over the async `NorFlash`.
    Async,
}

/// Both front ends, for tests.
pub const BOTH: [Kind; 2] = [Kind::Blocking, Kind::Async];

/// A cache over one of the front ends, on a borrowed mock flash.
pub enum Front<
    'c,
    'f,
    const PG: usize,
    const PS: usize,
    const WS: usize,
    const RS: usize,
    const N: usize,
    const K: usize,
    const V: usize,
> {
    /// Blocking.
    Blocking(Cache<&'c ManualClock, Persistent<&'f mut MockFlash<PG, PS, WS, RS>, N, K, V>, K>),
    /// Async.
    Async(
        AsyncSharedCache<
            &'c ManualClock,
            AsyncPersistent<&'f mut MockFlash<PG, PS, WS, RS>, N, K, V>,
            K,
            NoopRawMutex,
        >,
    ),
}

/// Runs one cache call (a closure over `&mut Cache<..>`) on either front end.
#[macro_export]
macro_rules! call {
    ($front:expr, |$c:ident| $body:expr) => {
        match &mut $front {
            $crate::flash_front::Front::Blocking($c) => $body,
            $crate::flash_front::Front::Async(shared) => {
                embassy_futures::block_on(shared.with(|$c| $body))
            }
        }
    };
}

/// The same call on the backend of either front end.
macro_rules! on_backend {
    ($front:expr, |$b:ident| $body:expr) => {
        match $front {
            Front::Blocking(c) => {
                let $b = c.backend_mut();
                $body
            }
            Front::Async(s) => {
                let $b = s.get_mut().backend_mut();
                $body
            }
        }
    };
}

impl<
        'c,
        'f,
        const PG: usize,
        const PS: usize,
        const WS: usize,
        const RS: usize,
        const N: usize,
        const K: usize,
        const V: usize,
    > Front<'c, 'f, PG, PS, WS, RS, N, K, V>
{
    /// Opens `range` of `flash` into a new table, and a cache whose time continues from
    /// the flash.
    pub fn open(
        kind: Kind,
        flash: &'f mut MockFlash<PG, PS, WS, RS>,
        range: Range<u32>,
        table: Table<N, K, V>,
        policy: Policy,
        clock: &'c ManualClock,
    ) -> Result<Self, FlashError<MockError>> {
        Self::open_with(kind, flash, range, table, policy, clock, Config::new())
    }

    /// [`Front::open`] with the cache configured by `config`.
    pub fn open_with(
        kind: Kind,
        flash: &'f mut MockFlash<PG, PS, WS, RS>,
        range: Range<u32>,
        table: Table<N, K, V>,
        policy: Policy,
        clock: &'c ManualClock,
        config: Config,
    ) -> Result<Self, FlashError<MockError>> {
        Ok(match kind {
            Kind::Blocking => {
                let p = Persistent::open(flash, range, table, policy)?;
                Front::Blocking(p.into_cache(clock, config))
            }
            Kind::Async => {
                flash.yield_each_call(true);
                let p = block_on(AsyncPersistent::open(flash, range, table, policy))?;
                Front::Async(AsyncSharedCache::with_raw_mutex(
                    p.into_cache(clock, config),
                ))
            }
        })
    }

    /// Which front end.
    pub fn kind(&self) -> Kind {
        match self {
            Front::Blocking(_) => Kind::Blocking,
            Front::Async(_) => Kind::Async,
        }
    }

    /// The cache's time now.
    pub fn now(&mut self) -> u64 {
        match self {
            Front::Blocking(c) => c.now(),
            Front::Async(s) => s.get_mut().now(),
        }
    }

    /// Batches committed since open.
    pub fn commits(&mut self) -> u64 {
        on_backend!(self, |b| b.commits())
    }

    /// Entries dropped for room on flash since open.
    #[allow(dead_code)]
    pub fn evictions(&mut self) -> u32 {
        on_backend!(self, |b| b.evictions())
    }

    /// Pages holding the log.
    pub fn pages_used(&mut self) -> u32 {
        on_backend!(self, |b| b.pages_used())
    }

    /// The largest cache time on flash at open, or written since.
    pub fn latest_time(&mut self) -> u64 {
        on_backend!(self, |b| b.latest_time())
    }

    /// The mock flash.
    pub fn flash_mut(&mut self) -> &mut MockFlash<PG, PS, WS, RS> {
        on_backend!(self, |b| &mut **b.flash_mut())
    }

    /// Calls `f` with the key, value and expiry of each entry, least recent first.
    pub fn for_each(&mut self, mut f: impl FnMut(&[u8], &[u8], u64)) {
        self.visit(|k, v, _, e| f(k, v, e))
    }

    /// Calls `f` with the key, value, kind and expiry of each entry, least recent first.
    pub fn visit(&mut self, f: impl FnMut(&[u8], &[u8], tickcache::Kind, u64)) {
        on_backend!(self, |b| b.table().for_each_lru(f))
    }

    /// Entries held, expired ones included until reclaimed.
    pub fn len(&mut self) -> usize {
        match self {
            Front::Blocking(c) => c.len(),
            Front::Async(s) => s.get_mut().len(),
        }
    }
}

/// A xorshift generator for the seeded workloads (start it from an odd seed).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Below `n` (0 for `n` = 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn byte(&mut self) -> u8 {
        (self.next() >> 24) as u8
    }
}
