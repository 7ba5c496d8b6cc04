//! Persistence on NOR flash (Django's file and database caches, for microcontrollers).
//!
//! [`Persistent`] wraps the memory [`Table`] and logs every change it makes to a region of
//! any [`embedded_storage::nor_flash::NorFlash`]. At start-up, [`Persistent::open`] replays
//! the log into the table; the cache then works exactly as before, with flash behind it.
//! The on-flash layout is documented in [`format`](mod@format).
//!
//! [`AsyncPersistent`] is the same over async flash
//! (`embedded_storage_async::nor_flash::NorFlash`), for
//! [`AsyncSharedCache`](crate::AsyncSharedCache): both front ends drive one core that
//! decides what to write and performs no I/O itself, so the log logic exists once.
//!
//! ```
//! # #[cfg(feature = "_mock")] {
//! use tickcache::flash::{MockFlash, Persistent, Policy};
//! use tickcache::{Config, ManualClock, Table};
//!
//! let mut flash = MockFlash::<4, 1024, 4>::new();
//! let clock = ManualClock::new(1000);
//! {
//!     let p = Persistent::<_, 16, 32, 16>::open(&mut flash, 0..4096, Table::new(),
//!         Policy::WriteThrough)?;
//!     let mut cache = p.into_cache(&clock, Config::new());
//!     cache.set("answer", &42u32, 60).unwrap(); // on flash when `set` returns
//! }
//! // Power off, power on: a new clock starts at zero, cache time continues from flash.
//! let clock = ManualClock::new(1000);
//! let p = Persistent::<_, 16, 32, 16>::open(&mut flash, 0..4096, Table::new(),
//!     Policy::WriteThrough)?;
//! let mut cache = p.into_cache(&clock, Config::new());
//! assert_eq!(cache.get::<u32>("answer").unwrap(), Some(42));
//! # }
//! # Ok::<(), tickcache::flash::FlashError<tickcache::flash::MockError>>(())
//! ```
//!
//! # Policies
//! - [`Policy::WriteThrough`]: an operation that returns `Ok` is on flash.
//! - [`Policy::WriteBack`]: changes are kept in RAM (the keys changed are listed, up to
//!   `D`) and reach flash together on [`Backend::flush`] (called by
//!   [`Cache::close`](crate::Cache::close)) or when `max_dirty` keys are waiting. A flush
//!   writes each changed key once, with its latest value. `clear` is written at
//!   once (one record; the changes it drops are never written). After a power cut the
//!   cache holds the state of the last flush. An operation whose keys do not fit the list
//!   flushes the list first.
//!
//! A policy passed to `open` as a constant decides what is linked: a write-through
//! firmware does not carry write-back's step of an insert that culls (760 bytes on
//! Cortex-M4) nor the placement of the batch an operation's changes will join.
//!
//! Under either policy a `set` that leaves a key's value, kind and expiry as its latest
//! record on flash has them writes nothing (a setting stored again at every boot wears
//! nothing); only that key's recency after a reboot differs (the log's order).
//!
//! Every operation (or every flush) is written as one batch, so after a power cut at any
//! byte the cache holds either the state before it or the state after it, including
//! operations that change several keys: `incr_version` (the old key's removal and the new
//! key) and an insert that culls (the culled keys' removals and the new entry).
//!
//! # Time across reboots
//! Each record carries the cache time of its write. On open, cache time continues from
//! the largest time found ([`Persistent::latest_time`], applied by
//! [`Persistent::into_cache`] through [`Cache::resume_at`](crate::Cache::resume_at)), so
//! time never runs backwards and an entry that expired never comes back: an expiry
//! observed by a read is logged too. Without a clock that runs while the power is off, a
//! timeout counts *powered-on* time: an entry set for 60 s before a night switched off
//! still has the rest of its 60 s in the morning. `Timeout::Never` entries always come back.
//! [`Cache::close`](crate::Cache::close) records the current cache time (with the
//! flush), so after a reboot time resumes from the close; without a close, from the last
//! operation flash saw.
//!
//! # A table in a `static`
//! The table, `N` slots of about `K + V` bytes, is usually the largest object firmware
//! has. [`Persistent::open_in`] opens into a table lent to the backend (`&'static mut`
//! from `StaticCell` or `cortex_m::singleton!`, so it lives in zero-initialised `.bss`
//! and never moves through the stack) and clears whatever it held before replaying the
//! log, so a table reused across a reopen holds exactly what the flash says.
//!
//! # Recency after a reboot
//! Reads are not logged. After a reboot, recency (which entry Django's cull takes first) is
//! the order in which entries were last written.
//!
//! # Full flash
//! When an operation needs room, the oldest page is compacted: its live records are copied
//! to the head and the page is erased (pages are used in a cycle, so wear is spread evenly;
//! see [`Persistent::wear`]). Compaction reads nothing to tell which records are live: for
//! each table slot, RAM keeps where its key's latest record lies (4 bytes a slot), so a
//! record is live when it is that one, and its copy is written from RAM (only the flushed
//! value of a key changed since the last flush is read back). When the flash holds only
//! live records, entries are dropped oldest-written first (the entries of the oldest page),
//! and that drop is durable at once, even if the operation that needed the room is then cut
//! off; [`Persistent::evictions`] counts them. Such drops are not Django's culling: a
//! region with room for every entry's record and the largest batch beside them, plus one
//! spare page, never needs them. Before any entry is dropped, compaction stops keeping what
//! the batch being made room for replaces: the flushed values of keys a write-back flush
//! rewrites, and the records of the entries an insert culls. A power cut before that batch
//! lands then loses those keys (a miss, never an older value). An entry that cannot fit at all fails with [`Error::StorageFull`] and
//! nothing else is lost.

/// The accessors of a front end (a `core` and a `flash` field), the same for
/// [`Persistent`] and [`AsyncPersistent`]: written once, emitted into each inherent impl.
macro_rules! front_accessors {
    () => {
        /// The largest cache time found on flash at open, or written since.
        pub fn latest_time(&self) -> u64 {
            self.core.time
        }

        /// A cache over this backend whose time continues from [`Self::latest_time`]
        /// (share an async one with
        /// [`AsyncSharedCache::new`](crate::AsyncSharedCache::new)). Inlined, so the
        /// backend moves into the cache once.
        #[inline(always)]
        pub fn into_cache<C: $crate::clock::Clock>(
            self,
            clock: C,
            config: $crate::config::Config,
        ) -> $crate::cache::Cache<C, Self, K> {
            let t = self.core.time;
            $crate::cache::Cache::resumed(clock, self, config, t)
        }

        /// The memory table (read-only: changes must go through the backend).
        pub fn table(&self) -> &$crate::table::Table<N, K, V, S> {
            self.core.table.borrow()
        }

        /// The flash.
        pub fn flash(&self) -> &F {
            &self.flash
        }

        /// The flash, mutably (for counters of a test flash; do not write to the region).
        pub fn flash_mut(&mut self) -> &mut F {
            &mut self.flash
        }

        /// Gives the flash back.
        pub fn into_flash(self) -> F {
            self.flash
        }

        /// The policy.
        pub fn policy(&self) -> Policy {
            self.core.policy
        }

        /// Batches committed since open (one per write-through operation or flush).
        pub fn commits(&self) -> u64 {
            self.core.commits
        }

        /// Entries dropped since open to make room on flash (the oldest page's, when the
        /// flash holds only live records; see "Full flash" in the
        /// [module documentation](crate::flash)): Django's culling did not choose them.
        /// Zero while the region has room for every entry's record beside the batches
        /// written.
        pub fn evictions(&self) -> u32 {
            self.core.evictions
        }

        /// Keys changed and not yet on flash (write-back; a pending clear counts as one).
        pub fn dirty(&self) -> usize {
            self.core.dirty()
        }

        /// Pages in the region.
        pub fn pages(&self) -> u32 {
            self.core.log.pages
        }

        /// Pages currently holding the log.
        pub fn pages_used(&self) -> u32 {
            self.core.log.used
        }
    };
}

/// The [`Backend`] calls that change RAM only, the same for both front ends: each runs a
/// core operation through the front end's `run` (which settles the work it asks for, or
/// answers [`Error::Settle`] for the caller to settle); a read first drops an expired
/// key, and a delete drops its key, through the front end's `drop_key`. Emitted into each
/// `Backend` impl beside its own `put` and `flush`.
macro_rules! front_ops {
    () => {
        fn get<R>(
            &mut self,
            key: &[u8],
            now: u64,
            read: impl FnOnce(&[u8], $crate::value::Kind) -> R,
        ) -> Result<Option<R>, Error<Self::Error>> {
            if !self.drop_key(true, key, now)? {
                return Ok(None);
            }
            Ok(self.core.table.borrow_mut().read_any(key, read))
        }

        fn has_key(&mut self, key: &[u8], now: u64) -> Result<bool, Error<Self::Error>> {
            self.drop_key(true, key, now)
        }

        fn touch(&mut self, key: &[u8], expiry: u64, now: u64) -> Result<bool, Error<Self::Error>> {
            self.change(false, key, now, expiry)
        }

        fn delete(&mut self, key: &[u8], now: u64) -> Result<bool, Error<Self::Error>> {
            self.drop_key(false, key, now)
        }

        fn incr(&mut self, key: &[u8], delta: i64, now: u64) -> Result<i64, Error<Self::Error>> {
            self.run(|c| c.incr(key, delta, now))
        }

        fn rekey(
            &mut self,
            from: &[u8],
            to: &[u8],
            expiry: u64,
            now: u64,
        ) -> Result<bool, Error<Self::Error>> {
            self.run(|c| c.rekey(from, to, expiry, now))
        }

        fn clear(&mut self) -> Result<(), Error<Self::Error>> {
            self.run(|c| c.clear())
        }

        fn flush_at(&mut self, now: u64) -> Result<(), Error<Self::Error>> {
            self.core.see(now);
            Backend::flush(self)
        }

        fn len(&self) -> usize {
            self.core.table.borrow().len()
        }
    };
}

mod asynch;
mod backend;
#[cfg(feature = "std")]
mod file;
pub mod format;
mod io;
mod log;
#[cfg(feature = "_mock")]
mod mock;
mod mount;
mod space;
mod writeback;

use tickcache_dual::dual;

use core::borrow::BorrowMut;
use core::fmt;
use core::hash::BuildHasher;
use core::marker::PhantomData;

use embedded_storage::nor_flash::{ErrorType, NorFlash};

use crate::backend::Backend;
use crate::error::Error;
use crate::hash::DefaultHashBuilder;
use crate::table::Table;

pub use asynch::AsyncPersistent;
#[cfg(feature = "std")]
pub use file::{FileFlash, FileFlashError};
pub use format::FORMAT_VERSION;
#[cfg(feature = "_mock")]
pub use mock::{MockError, MockFlash};

use io::{Blocking, Geometry, SyncIo};
use log::{IoOf, Log, SyncIoOf};

/// When changes reach flash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Policy {
    /// Every operation is on flash when it returns `Ok`.
    WriteThrough,
    /// Changes reach flash on `flush`/`close`, or when `max_dirty` changed keys are waiting
    /// (at most the backend's `D`; 0 or 1 behaves as write-through).
    WriteBack {
        /// Changed keys that trigger a flush.
        max_dirty: u16,
    },
}

/// Errors of the flash layer, generic over the flash's own error `E`. Surfaced through
/// [`Error::Backend`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FlashError<E> {
    /// The flash failed to read, write or erase. The RAM cache may then be ahead of flash;
    /// reopen to resynchronise.
    Flash(E),
    /// The log cannot be continued (its page sequence numbers are exhausted) or a write
    /// was asked that the log cannot hold. Damaged records and records larger than `K` or
    /// `V` are not errors: [`Persistent::open`] drops them (its docs say which entries go
    /// with them); [`Persistent::open_or_format`] formats the region on this error.
    Corrupted,
    /// The range is not page-aligned, holds fewer than two pages, lies outside the flash,
    /// or ends beyond 2 GiB.
    BadRange,
    /// Not returned any more: a flash geometry the log cannot use (`READ_SIZE` or
    /// `WRITE_SIZE` not a power of two up to 64, `ERASE_SIZE` not a multiple of them or
    /// below [`format::min_page_size`]) now fails to compile.
    Unsupported,
}

impl<E: fmt::Debug> fmt::Display for FlashError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlashError::Flash(e) => write!(f, "flash error: {e:?}"),
            FlashError::Corrupted => f.write_str("flash contents are corrupted"),
            FlashError::BadRange => f.write_str("flash range is not usable"),
            FlashError::Unsupported => f.write_str("flash geometry is not supported"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for FlashError<E> {}

impl<E> From<FlashError<E>> for Error<FlashError<E>> {
    fn from(e: FlashError<E>) -> Self {
        Error::Backend(e)
    }
}

/// Erase counts over the pages of the region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Wear {
    /// Pages in the region.
    pub pages: u32,
    /// Lowest erase count among pages whose count is readable.
    pub min: u32,
    /// Highest erase count.
    pub max: u32,
    /// Sum of the readable erase counts.
    pub total: u64,
    /// Pages whose count is not readable (never erased by this crate, or cut mid-erase).
    pub unknown: u32,
}

/// The memory table, logged to NOR flash: `N` entries, keys up to `K` bytes, values up to
/// `V` bytes, and up to `D` changed keys waiting under [`Policy::WriteBack`].
///
/// RAM cost: the [`Table`] plus `4 * N + D * (K + 5)` bytes and a few words: where each
/// entry's latest record lies on flash (so compaction knows a live record without reading
/// the log), and the changed keys. See the [module documentation](self).
///
/// The log logic is shared with [`AsyncPersistent`] (async flash): a core that decides
/// what to write and performs no I/O itself; this front end performs its requests on the
/// blocking flash.
pub struct Persistent<
    F: ErrorType,
    const N: usize,
    const K: usize,
    const V: usize,
    const D: usize = 8,
    S = DefaultHashBuilder,
    T = Table<N, K, V, S>,
> {
    core: Core<Blocking<F>, N, K, V, D, S, T>,
    /// The buffer of the blocking core's requests.
    buf: [u8; log::SCRATCH],
    flash: F,
}

/// Storage work an operation needs before it can change anything (it changed nothing and
/// is run again after the work).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Work {
    /// None queued.
    None,
    /// Write the list of changed keys (it or one batch would overflow).
    Flush,
    /// Make room for one small record (a clear), while RAM still mirrors the flash.
    Room,
    /// An insert that culls more entries than the list holds: the victims' tombstones and
    /// the put, one batch, from the value the front end staged.
    CullingPut,
}

/// The I/O-free core of the persistent backends: the table, where each entry's latest
/// record lies, the list of changed keys and the log's RAM state. Its operations change
/// RAM only; its `async fn`s (mount, flush, compaction) ask for flash I/O through the
/// request slot ([`io`]) and are driven by a front end.
pub(crate) struct Core<F, const N: usize, const K: usize, const V: usize, const D: usize, S, T> {
    table: T,
    hasher: PhantomData<fn() -> S>,
    log: Log<F>,
    policy: Policy,
    /// Write-back's steps (an insert that culls, an operation's check of the batch its
    /// changes join), `None` under write-through (linked only when `open` is given a
    /// write-back policy; see [`Core::write_back_for`]).
    write_back: Option<backend::WriteBackFn<F, N, K, V, D, S, T>>,
    /// Any batch of a full list fits the region, in whatever order it is written
    /// ([`Core::list_always_fits`]): an operation's check need not place its records.
    list_fits: bool,
    /// Per table slot: where the latest record of the key held there starts on flash
    /// ([`NOWHERE`] when unknown). Exact for every key that is held and not changed since
    /// the last flush: each record written for it sets it.
    loc: [u32; N],
    dirty_keys: [[u8; K]; D],
    dirty_len: [u8; D],
    /// Per changed key: where its latest record on flash starts, taken before the change.
    dirty_loc: [u32; D],
    dirty: usize,
    pending_clear: bool,
    time: u64,
    commits: u64,
    /// Entries dropped from the table for room on flash since open.
    evictions: u32,
    /// The work the last operation asked for.
    work: Work,
    /// A flush (and a time record) was asked for ([`Backend::flush`] of the async front
    /// end): done by the next settle.
    want_flush: bool,
    /// Set when a [`Work::CullingPut`] has written its put (taken by the front end).
    culled: bool,
}

/// A flash address no record has: 0 lies before the region or at the start of its first
/// page, where the page header is, never a record. Zero, so the tables of addresses start
/// zeroed (no `memset` of 0xFF bytes).
const NOWHERE: u32 = 0;

/// Set in a slot's flash address while an insert that culls makes room and writes its
/// batch: the slot is one of the cull's victims (compaction does not copy its record, the
/// batch removes it). Regions end below it.
const CULL_MARK: u32 = 1 << 31;

type Fe<F> = FlashError<<F as Geometry>::Error>;
type Res<T, F> = Result<T, Error<Fe<F>>>;
type FeOf<F> = FlashError<<F as ErrorType>::Error>;

/// The table's error as the backend's. Out of line: the operations share one copy of the
/// variants' mapping.
#[inline(never)]
fn widen<E>(e: Error) -> Error<E> {
    e.widen()
}

impl<
        F: NorFlash,
        const N: usize,
        const K: usize,
        const V: usize,
        const D: usize,
        S: BuildHasher,
        T: BorrowMut<Table<N, K, V, S>>,
    > Persistent<F, N, K, V, D, S, T>
{
    front_accessors!();

    /// The erase count of page `page` (0-based in the region), `None` when unreadable.
    pub fn erase_count(&mut self, page: u32) -> Result<Option<u32>, FeOf<F>> {
        let Self { core, buf, flash } = self;
        core.erase_count_blocking(&mut SyncIo::new(flash, buf), page)
    }

    /// Erase counts over all pages (reads each page header).
    pub fn wear(&mut self) -> Result<Wear, FeOf<F>> {
        let Self { core, buf, flash } = self;
        core.wear_blocking(&mut SyncIo::new(flash, buf))
    }
}

#[dual]
impl<
        F: Geometry,
        const N: usize,
        const K: usize,
        const V: usize,
        const D: usize,
        S: BuildHasher,
        T: BorrowMut<Table<N, K, V, S>>,
    > Core<F, N, K, V, D, S, T>
{
    /// Keys changed and not yet on flash, a pending clear counting as one.
    pub(crate) fn dirty(&self) -> usize {
        self.dirty + usize::from(self.pending_clear)
    }

    /// The erase count of page `page`, `None` when unreadable or beyond the region.
    pub(crate) async fn erase_count(
        &mut self,
        io: &IoOf<F>,
        page: u32,
    ) -> Result<Option<u32>, Fe<F>> {
        if page >= self.log.pages {
            return Ok(None);
        }
        self.log.erase_count(io, page).await
    }

    /// Erase counts over all pages (reads each page header).
    pub(crate) async fn wear(&mut self, io: &IoOf<F>) -> Result<Wear, Fe<F>> {
        let mut w = Wear {
            pages: self.log.pages,
            min: u32::MAX,
            ..Wear::default()
        };
        for p in 0..self.log.pages {
            match self.log.erase_count(io, p).await? {
                Some(c) => {
                    w.min = w.min.min(c);
                    w.max = w.max.max(c);
                    w.total += u64::from(c);
                }
                None => w.unknown += 1,
            }
        }
        if w.min == u32::MAX {
            w.min = 0;
        }
        Ok(w)
    }
}

impl<
        F: ErrorType,
        const N: usize,
        const K: usize,
        const V: usize,
        const D: usize,
        S: BuildHasher,
        T: BorrowMut<Table<N, K, V, S>>,
    > fmt::Debug for Persistent<F, N, K, V, D, S, T>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Persistent")
            .field("len", &self.core.table.borrow().len())
            .field("policy", &self.core.policy)
            .field("pages", &self.core.log.pages)
            .field("pages_used", &self.core.log.used)
            .field("dirty", &self.core.dirty)
            .field("time", &self.core.time)
            .finish_non_exhaustive()
    }
}
