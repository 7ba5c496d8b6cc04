//! Persistence on NOR flash (Django's file and database caches, for microcontrollers).
//!
//! [`Persistent`] wraps the memory [`Table`] and logs every change it makes to a region of
//! any [`embedded_storage::nor_flash::NorFlash`]. At start-up, [`Persistent::open`] replays
//! the log into the table; the cache then works exactly as before, with flash behind it.
//! The on-flash layout is documented in [`format`](mod@format).
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
//!   [`Cache::close`](crate::Cache::close)) or when `max_dirty` keys are waiting. `clear`
//!   is kept as a pending flag. After a power cut the cache holds the state of the last
//!   flush. An operation whose keys do not fit the list flushes the list first.
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
//! The time recorded is the latest one the backend saw, that of the last operation:
//! `close()` carries no time of its own, so call any operation first to record the
//! current time (the `persist` example does a `has_key` before `close`).
//!
//! # Recency after a reboot
//! Reads are not logged. After a reboot, recency (which entry Django's cull takes first) is
//! the order in which entries were last written.
//!
//! # Full flash
//! When an operation needs room, the oldest page is compacted: its live records are copied
//! to the head and the page is erased (pages are used in a cycle, so wear is spread evenly;
//! see [`Persistent::wear`]). When the flash holds only live records, entries are dropped
//! oldest-written first (the entries of the oldest page), and that drop is durable at once,
//! even if the operation that needed the room is then cut off. An entry that cannot fit at
//! all fails with [`Error::StorageFull`] and nothing else is lost.

#[cfg(feature = "std")]
mod file;
pub mod format;
mod log;
#[cfg(feature = "_mock")]
mod mock;

use core::fmt;
use core::hash::BuildHasher;
use core::ops::Range;

use embedded_storage::nor_flash::{ErrorType, NorFlash};

use crate::backend::{Backend, Put};
use crate::cache::Cache;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::Error;
use crate::hash::DefaultHashBuilder;
use crate::key::KeyError;
use crate::table::Table;
use crate::value::Kind;

#[cfg(feature = "std")]
pub use file::{FileFlash, FileFlashError};
pub use format::FORMAT_VERSION;
#[cfg(feature = "_mock")]
pub use mock::{MockError, MockFlash};

use format::{record_size, varint_len, RecHead, T_CLEAR, T_PUT, T_TIME, T_TOMB};
use log::{Committed, Log, Pos};

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
    /// The range is not page-aligned, holds fewer than two pages, or lies outside the
    /// flash.
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
/// RAM cost: the [`Table`] plus `D * (K + 1)` bytes and a few words. See the
/// [module documentation](self).
pub struct Persistent<
    F,
    const N: usize,
    const K: usize,
    const V: usize,
    const D: usize = 8,
    S = DefaultHashBuilder,
> {
    table: Table<N, K, V, S>,
    log: Log<F>,
    policy: Policy,
    dirty_keys: [[u8; K]; D],
    dirty_len: [u8; D],
    dirty: usize,
    pending_clear: bool,
    time: u64,
    commits: u64,
}

type Fe<F> = FlashError<<F as ErrorType>::Error>;
type Res<T, F> = Result<T, Error<Fe<F>>>;

/// Places records into the free space, page by page, to tell whether a batch fits.
struct Placer {
    rem: u32,
    spare: u32,
    cap: u32,
    ws: usize,
    /// Bytes of the time delta in the page being filled (0 in a fresh page).
    dlen: usize,
    ok: bool,
}

/// Expiry bytes of a record whose expiry is not known yet (the longest).
const XLEN_ANY: usize = 10;

/// Bytes of the expiry varint of a put written at `time`.
fn xlen(expiry: u64, time: u64) -> usize {
    if expiry == crate::NEVER {
        0
    } else {
        varint_len(expiry.saturating_sub(time))
    }
}

impl Placer {
    /// Places a record: `klen` key bytes (0 for clear and time records), `vlen` value
    /// bytes, `xlen` expiry bytes.
    fn place(&mut self, klen: usize, vlen: usize, xlen: usize) {
        let size = record_size(klen, vlen, self.dlen, xlen, self.ws) as u32;
        if size <= self.rem {
            self.rem -= size;
            return;
        }
        let fresh = record_size(klen, vlen, 0, xlen, self.ws) as u32;
        if self.spare == 0 || fresh > self.cap {
            self.ok = false;
            return;
        }
        self.spare -= 1;
        self.dlen = 0;
        self.rem = self.cap - fresh;
    }
}

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
    > Persistent<F, N, K, V, D, S>
{
    /// Opens the log in `range` of `flash` (page-aligned: `NorFlash::ERASE_SIZE` is the
    /// page) and replays it into `table` (whose culling limits are kept). A blank or
    /// foreign region opens empty.
    ///
    /// # What is dropped, and why
    /// A cache may lose an entry (a miss), never serve a value older than one it
    /// acknowledged later. So, besides expired entries and batches a power cut left
    /// incomplete:
    /// - **Records this configuration cannot hold** (a key longer than `K` or a value
    ///   longer than `V`, written by firmware with larger capacities) are skipped, and
    ///   any older value of the same key is dropped with them.
    /// - **Everything before damage.** Records are replayed oldest first. A page's records
    ///   end in blank flash, or in a record a power cut tore (a prefix of a record followed
    ///   by blank flash). Any other end (a record whose CRC fails, a header no record has,
    ///   written bytes after blank ones) is damage: the rest of that page is unreadable and
    ///   may have held newer records or tombstones of any key. So every entry whose latest
    ///   record lies before the damage is dropped, and everything written after it (from
    ///   the next page on) is kept. With several damaged pages, the newest one counts.
    /// - **Pages cut off from the log.** Log pages carry consecutive sequence numbers; the
    ///   log is the run ending at the highest one. Pages before a gap in the numbers are not
    ///   read (their entries are lost; nothing newer is).
    /// - **Everything, when the newest page may be gone.** A page after the head that has a
    ///   valid header part B, or holds valid records (a log page whose header is damaged),
    ///   or a page outside the log whose sequence number is not below the log's oldest (a
    ///   copy of a log page), shows that a page newer than the head may have been there.
    ///   Every entry is dropped, and a clear record written at the head makes that durable.
    ///
    /// Pages outside the log with a valid header or records (stray pages) are erased, so
    /// they never come to follow the head later. Records dropped for damage are never
    /// copied by compaction, so a drop holds across reopens until the damaged page is
    /// erased, and writes made after the damaged open are kept.
    ///
    /// Damage that leaves no trace cannot be told from a shorter log, and older values of
    /// keys written in the lost part then come back: the newest page, or the end of it,
    /// erased (or replaced by zeros or garbage, as a page erase cut short leaves it); a
    /// page's last record damaged so that it claims more bytes than were written (beyond
    /// one flipped header bit, which is found) or with its last CRC byte 0xFF, which reads
    /// as a record a power cut tore. See `FLASH.md` for measured figures.
    ///
    /// Returns [`FlashError::Corrupted`] only when the log cannot be continued at all (its
    /// sequence numbers are exhausted); [`Persistent::open_or_format`] formats the region
    /// then and opens it empty, and [`Persistent::erase_all`] formats it at any time:
    ///
    /// ```
    /// # #[cfg(feature = "_mock")] {
    /// use tickcache::flash::{MockFlash, Persistent, Policy};
    /// use tickcache::Table;
    ///
    /// let mut flash = MockFlash::<4, 1024, 4>::new();
    /// let mut p = Persistent::<_, 16, 32, 16>::open_or_format(&mut flash, 0..4096,
    ///     Table::new(), Policy::WriteThrough)?;
    /// p.erase_all()?; // every entry gone, on flash too
    /// assert_eq!(p.pages_used(), 0);
    /// # }
    /// # Ok::<(), tickcache::flash::FlashError<tickcache::flash::MockError>>(())
    /// ```
    pub fn open(
        flash: F,
        range: Range<u32>,
        table: Table<N, K, V, S>,
        policy: Policy,
    ) -> Result<Self, Fe<F>> {
        Self::start(flash, range, table, policy, false)
    }

    /// [`Persistent::open`], but when the flash holds something it cannot open
    /// ([`FlashError::Corrupted`]), the region is formatted ([`Persistent::erase_all`]) and
    /// opens empty: for firmware that prefers an empty cache to a refused one. Flash
    /// errors and a bad range are still returned.
    pub fn open_or_format(
        flash: F,
        range: Range<u32>,
        table: Table<N, K, V, S>,
        policy: Policy,
    ) -> Result<Self, Fe<F>> {
        Self::start(flash, range, table, policy, true)
    }

    fn start(
        flash: F,
        range: Range<u32>,
        table: Table<N, K, V, S>,
        policy: Policy,
        format: bool,
    ) -> Result<Self, Fe<F>> {
        const { assert!(D >= 2 && D <= 255, "D must be in 2..=255") };
        #[allow(clippy::let_unit_value)]
        let () = Log::<F>::GEOMETRY;
        let page_size = F::ERASE_SIZE as u32;
        let len = range.end.saturating_sub(range.start);
        if range.start % page_size != 0
            || len % page_size != 0
            || len / page_size < 2
            || range.end as usize > flash.capacity()
        {
            return Err(FlashError::BadRange);
        }
        let log = Log::new(flash, range.start, len / page_size, page_size);
        let mut me = Persistent {
            table,
            log,
            policy,
            dirty_keys: [[0; K]; D],
            dirty_len: [0; D],
            dirty: 0,
            pending_clear: false,
            time: 0,
            commits: 0,
        };
        match me.mount() {
            Err(FlashError::Corrupted) if format => me.erase_all()?,
            r => r?,
        }
        Ok(me)
    }

    /// Reads the log: finds its pages, replays it into the table, checks for damage.
    fn mount(&mut self) -> Result<(), Fe<F>> {
        let page_size = self.log.page_size;
        let log = &mut self.log;
        // Find the head (highest sequence), then walk back while sequences go down one by
        // one: pages are opened with consecutive numbers and leave the log from its tail, so
        // a gap means pages are missing, and the pages before it are not trusted (not read).
        let mut head: Option<(u32, u32)> = None;
        for p in 0..log.pages {
            if let Some(c) = log.erase_count(p)? {
                log.max_erase = log.max_erase.max(c);
            }
            if let Some((s, _, _)) = log.page_seq(p)? {
                if head.is_none_or(|(_, hs)| s > hs) {
                    head = Some((p, s));
                }
            }
        }
        if let Some((hp, hs)) = head {
            let (mut cur, mut cur_seq, mut used) = (hp, hs, 1);
            while used < log.pages {
                let prev = (cur + log.pages - 1) % log.pages;
                match log.page_seq(prev)? {
                    Some((s, _, _)) if s.wrapping_add(1) == cur_seq => {
                        cur = prev;
                        cur_seq = s;
                        used += 1;
                    }
                    _ => break,
                }
            }
            log.tail = cur;
            log.used = used;
            log.seq = hs;
            Self::find_head_end(log)?;
            if log.used == log.pages {
                // Only a compaction fills the last free page, and until it erases the
                // oldest page it writes nothing there but copies of that page's records:
                // drop the copies and let the compaction run again.
                log.erase_page(hp, None)?;
                log.used -= 1;
                log.seq = hs - 1;
                Self::find_head_end(log)?;
            }
        }
        // A page outside the log never has a valid header part B nor holds records, unless
        // damaged (an erase or a header write cut short leaves neither). Such a stray page
        // right after the head means a page newer than the head may have been there: nothing
        // read can be trusted to be the latest. Stray pages are erased below, so that they
        // never come to follow the head later.
        // A stray page whose sequence number is not below the log's oldest one cannot be an
        // older page cut off from it either (a copy of a log page, say): the same then.
        let tail_seq = log.seq.wrapping_sub(log.used).wrapping_add(1);
        let mut strays = false;
        let mut lost_head = false;
        for li in log.used..log.pages {
            let p = log.phys(li);
            let seq = log.page_seq(p)?.map(|(s, _, _)| s);
            if seq.is_some() || log.holds_records(p)? {
                strays = true;
                let newer = seq.is_some_and(|s| s >= tail_seq);
                lost_head |= log.used > 0 && (li == log.used || newer);
            }
        }
        if lost_head {
            log.trust_from = log.used;
        }
        for li in 0..self.log.used {
            let p = self.log.phys(li);
            if let Some((_, t)) = self.log.page_start(p)? {
                self.time = self.time.max(t);
            }
        }
        // Replay, checking how each page's records end; then, when damage was found, replay
        // again from the first page after it: whatever came before may have been overwritten
        // in the unreadable part (by a record or a tombstone of any key).
        self.log.check = true;
        self.replay(Pos::START)?;
        self.log.check = false;
        let trust = self.log.trust_from;
        if trust > 0 {
            let _ = self.table.clear();
            self.replay(Pos { li: trust, off: 0 })?;
        }
        if lost_head {
            // Make the drop durable before the page that shows it is erased: a clear record
            // at the head (in a new page when the head is full: that page is then the stray
            // one, erased first).
            self.pending_clear = true;
            self.flush_dirty().map_err(|e| match e {
                Error::Backend(e) => e,
                _ => FlashError::Corrupted,
            })?;
        }
        let log = &mut self.log;
        if strays {
            for li in log.used..log.pages {
                let p = log.phys(li);
                if log.page_seq(p)?.is_some() || log.holds_records(p)? {
                    log.erase_page(p, None)?;
                }
            }
        }
        // Free pages after the head that can join the log without an erase: a valid
        // part A and nothing else, or fully blank (part A is written now).
        log.ready = 0;
        for li in log.used..log.pages {
            let p = log.phys(li);
            let addr = log.page_addr(p);
            let a_len = Log::<F>::a_len();
            let ready = match log.erase_count(p)? {
                Some(_) => log.is_blank(addr + a_len, page_size - a_len)?,
                None if log.is_blank(addr, page_size)? => {
                    let count = log.max_erase;
                    log.write_part_a(p, count)?;
                    true
                }
                None => false,
            };
            if !ready {
                break;
            }
            log.ready += 1;
        }
        Ok(())
    }

    /// Sets the head page's base time and where its records end (the page is sealed when
    /// anything but blank follows them).
    fn find_head_end(log: &mut Log<F>) -> Result<(), Fe<F>> {
        let (hp, ps) = (log.phys(log.used - 1), log.page_size);
        let Some((first, base)) = log.page_start(hp)? else {
            return Err(FlashError::Corrupted);
        };
        let mut off = first;
        for _ in 0..log.max_records() {
            match log.read_record(hp, off, base)? {
                Some(r) => off += r.size(F::WRITE_SIZE) as u32,
                None => break,
            }
        }
        let blank = log.is_blank(log.page_addr(hp) + off, ps - off)?;
        log.head_off = if blank { off } else { ps };
        log.head_base = base;
        Ok(())
    }

    fn replay(&mut self, from: Pos) -> Result<(), Fe<F>> {
        let mut it = Committed::new(&self.log, from);
        let mut key = [0u8; K];
        let mut val = [0u8; V];
        while let Some((at, r)) = it.next(&mut self.log)? {
            self.time = self.time.max(r.time);
            match r.ty() {
                T_PUT => {
                    let kl = usize::from(r.klen);
                    let fits = self.log.read_body(at, &r, &mut key, &mut val)?;
                    let restored = fits
                        && Kind::from_u8(r.kind()).is_some_and(|kind| {
                            let v = &val[..r.vlen as usize];
                            self.table.restore(&key[..kl], v, kind, r.expiry, self.time)
                        });
                    // A record this configuration cannot hold (written with a larger `K` or
                    // `V`) is dropped, and so is any older value of its key.
                    if !restored {
                        let mut key_only = r;
                        key_only.vlen = 0;
                        if self.log.read_body(at, &key_only, &mut key, &mut [])? {
                            let _ = self.table.delete(&key[..kl], 0);
                        }
                    }
                }
                // A key longer than `K` was never restored: nothing to remove.
                T_TOMB if self.log.read_body(at, &r, &mut key, &mut [])? => {
                    let _ = self.table.delete(&key[..usize::from(r.klen)], 0);
                }
                T_CLEAR => {
                    let _ = self.table.clear();
                }
                _ => {}
            }
        }
        self.log.written_time = self.time;
        Ok(())
    }

    /// Formats the region: erases every page (counting the erase in each page's header),
    /// and empties the table and the list of changed keys. The log's pages go oldest first,
    /// so a power cut part-way leaves the newest pages as a shorter log: some entries may
    /// come back then, each with the latest value it had (never an older one).
    pub fn erase_all(&mut self) -> Result<(), Fe<F>> {
        let _ = self.table.clear();
        self.dirty = 0;
        self.pending_clear = false;
        let log = &mut self.log;
        for li in 0..log.pages {
            let p = log.phys(li);
            log.erase_page(p, None)?;
        }
        log.used = 0;
        log.seq = 0;
        log.ready = log.pages;
        log.head_off = log.page_size;
        log.trust_from = 0;
        log.check = false;
        Ok(())
    }

    /// The largest cache time found on flash at open, or written since.
    pub fn latest_time(&self) -> u64 {
        self.time
    }

    /// A cache over this backend whose time continues from [`Persistent::latest_time`].
    pub fn into_cache<C: Clock>(self, clock: C, config: Config) -> Cache<C, Self, K> {
        let t = self.time;
        let mut cache = Cache::new(clock, self, config);
        cache.resume_at(t);
        cache
    }

    /// The memory table (read-only: changes must go through the backend).
    pub fn table(&self) -> &Table<N, K, V, S> {
        &self.table
    }

    /// The flash.
    pub fn flash(&self) -> &F {
        &self.log.flash
    }

    /// The flash, mutably (for counters of a test flash; do not write to the region).
    pub fn flash_mut(&mut self) -> &mut F {
        &mut self.log.flash
    }

    /// Gives the flash back.
    pub fn into_flash(self) -> F {
        self.log.flash
    }

    /// The policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Batches committed since open (one per write-through operation or flush).
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// Keys changed and not yet on flash (write-back).
    pub fn dirty(&self) -> usize {
        self.dirty + usize::from(self.pending_clear)
    }

    /// Pages in the region.
    pub fn pages(&self) -> u32 {
        self.log.pages
    }

    /// Pages currently holding the log.
    pub fn pages_used(&self) -> u32 {
        self.log.used
    }

    /// The erase count of page `page` (0-based in the region), `None` when unreadable.
    pub fn erase_count(&mut self, page: u32) -> Result<Option<u32>, Fe<F>> {
        if page >= self.log.pages {
            return Ok(None);
        }
        self.log.erase_count(page)
    }

    /// Erase counts over all pages (reads each page header).
    pub fn wear(&mut self) -> Result<Wear, Fe<F>> {
        let mut w = Wear {
            pages: self.log.pages,
            min: u32::MAX,
            ..Wear::default()
        };
        for p in 0..self.log.pages {
            match self.log.erase_count(p)? {
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

    // ---- dirty keys -------------------------------------------------------------------

    fn dirty_key(&self, i: usize) -> &[u8] {
        &self.dirty_keys[i][..usize::from(self.dirty_len[i])]
    }

    fn is_dirty(&self, key: &[u8]) -> bool {
        self.pending_clear || (0..self.dirty).any(|i| self.dirty_key(i) == key)
    }

    /// Records `key` as changed; the caller made room with [`Self::make_room`].
    fn mark(&mut self, key: &[u8]) {
        if (0..self.dirty).any(|i| self.dirty_key(i) == key) || key.len() > K {
            return;
        }
        if self.dirty < D {
            self.dirty_keys[self.dirty][..key.len()].copy_from_slice(key);
            self.dirty_len[self.dirty] = key.len() as u8;
            self.dirty += 1;
        }
    }

    /// Flushes first when `keys` more changed keys (or a put of `klen` + `vlen` bytes)
    /// would not fit the list or one batch.
    fn make_room(&mut self, keys: usize, put: Option<(usize, usize)>) -> Res<(), F> {
        let fits = self.dirty + keys <= D && {
            let mut pl = self.empty_placer();
            self.place_dirty(&mut pl);
            for _ in 0..keys {
                let (k, v) = put.unwrap_or((K, 0));
                pl.place(k, v, XLEN_ANY);
            }
            pl.ok
        };
        if !fits {
            self.flush_dirty()?;
        }
        Ok(())
    }

    /// Writes the changes when the policy says so.
    fn settle(&mut self) -> Res<(), F> {
        let max = match self.policy {
            Policy::WriteThrough => 0,
            Policy::WriteBack { max_dirty } => usize::from(max_dirty),
        };
        if self.dirty() > 0 && self.dirty() >= max.min(D) {
            self.flush_dirty()?;
        }
        Ok(())
    }

    fn place_dirty(&self, pl: &mut Placer) {
        if self.pending_clear {
            pl.place(0, 0, 0);
        }
        for i in 0..self.dirty {
            let k = self.dirty_key(i);
            match self.table.peek_any(k) {
                Some((v, _, e)) => pl.place(k.len(), v.len(), xlen(e, self.time)),
                None => pl.place(k.len(), 0, 0),
            }
        }
    }

    /// A placer over an empty log (does a batch fit at all?).
    fn empty_placer(&self) -> Placer {
        Placer {
            rem: 0,
            spare: self.log.pages - 1,
            cap: self.log.cap(),
            ws: F::WRITE_SIZE,
            dlen: 0,
            ok: true,
        }
    }

    /// A placer over the current free space, keeping one page spare for compaction.
    fn placer(&self) -> Placer {
        let rem = if self.log.used == 0 {
            0
        } else {
            self.log.page_size - self.log.head_off
        };
        Placer {
            rem,
            spare: self.log.free().saturating_sub(1),
            cap: self.log.cap(),
            ws: F::WRITE_SIZE,
            dlen: self.log.delta_len(self.time),
            ok: true,
        }
    }

    /// Writes every changed key (and a pending clear) as one batch.
    fn flush_dirty(&mut self) -> Res<(), F> {
        if self.dirty() == 0 {
            return Ok(());
        }
        self.reserve(&|s: &Self, pl: &mut Placer| s.place_dirty(pl))?;
        let n = self.dirty();
        let time = self.time;
        let mut i = 0;
        if self.pending_clear {
            self.log
                .append(T_CLEAR, true, n == 1, 0, &[], &[], time, 0)
                .map_err(Error::Backend)?;
            i = 1;
        }
        let mut key = [0u8; K];
        let mut val = [0u8; V];
        for d in 0..self.dirty {
            let klen = usize::from(self.dirty_len[d]);
            key[..klen].copy_from_slice(&self.dirty_keys[d][..klen]);
            let k = &key[..klen];
            let (start, end) = (i == 0, i + 1 == n);
            match self.table.peek_any(k) {
                Some((v, kind, expiry)) => {
                    let vl = v.len();
                    val[..vl].copy_from_slice(v);
                    self.log
                        .append(T_PUT, start, end, kind as u8, k, &val[..vl], time, expiry)
                        .map_err(Error::Backend)?;
                }
                None => self
                    .log
                    .append(T_TOMB, start, end, 0, k, &[], time, 0)
                    .map_err(Error::Backend)?,
            }
            i += 1;
        }
        self.dirty = 0;
        self.pending_clear = false;
        self.commits += 1;
        Ok(())
    }

    /// Makes room for the batch `sizes` describes: compacts the oldest pages, then, when
    /// the flash holds only live records, drops the oldest page's entries.
    fn reserve(&mut self, sizes: &dyn Fn(&Self, &mut Placer)) -> Res<(), F> {
        let mut pl = self.empty_placer();
        sizes(self, &mut pl);
        if !pl.ok {
            return Err(Error::StorageFull);
        }
        let pages = self.log.pages;
        for round in 0..(3 * pages + 4) {
            if self.log.free() > 0 {
                let mut pl = self.placer();
                sizes(self, &mut pl);
                if pl.ok {
                    return Ok(());
                }
            }
            if self.log.used <= 1 {
                self.log.open_page(self.time).map_err(Error::Backend)?;
                continue;
            }
            self.reclaim_tail(round >= 2 * pages)?;
        }
        Err(Error::StorageFull)
    }

    /// Compacts the oldest page: copies its live records to the head (or, with `evict`,
    /// drops their entries), then erases it.
    fn reclaim_tail(&mut self, evict: bool) -> Res<(), F> {
        // Only a time already on flash may expire entries here: after a power cut, time
        // resumes from what the flash holds, where a later expiry would still be live.
        let now = self.log.written_time;
        let ws = F::WRITE_SIZE;
        let mut it = Committed::new(&self.log, Pos::START);
        let mut key = [0u8; K];
        let mut val = [0u8; V];
        // Records before the damage found at open are never copied: they were not restored.
        let trusted = self.log.trust_from == 0;
        while let Some((at, r)) = it.next(&mut self.log).map_err(Error::Backend)? {
            if at.li != 0 {
                break;
            }
            if !trusted || r.ty() != T_PUT || r.expiry <= now {
                continue;
            }
            if !self
                .log
                .read_body(at, &r, &mut key, &mut val)
                .map_err(Error::Backend)?
            {
                continue;
            }
            let (k, v) = (&key[..usize::from(r.klen)], &val[..r.vlen as usize]);
            let dirty = self.is_dirty(k);
            let matches = matches!(self.table.peek_any(k),
                Some((rv, rk, re)) if rv == v && rk as u8 == r.kind() && re == r.expiry);
            if !dirty && !matches {
                continue;
            }
            // The table may hold the same value again, written later: only the latest
            // record of a key is copied.
            let after = Pos {
                li: at.li,
                off: at.off + r.size(ws) as u32,
            };
            if self.newer_exists(k, after)? {
                continue;
            }
            let copy = RecHead::new(
                T_PUT,
                true,
                true,
                r.kind(),
                k.len(),
                v.len(),
                r.time,
                r.expiry,
                self.log.head_base,
            );
            let size = copy.size(ws) as u32;
            let no_room = self.log.free() == 0 && self.log.head_off + size > self.log.page_size;
            if evict || no_room {
                if !dirty {
                    let _ = self.table.delete(k, now);
                }
                continue;
            }
            self.log
                .append(T_PUT, true, true, r.kind(), k, v, r.time, r.expiry)
                .map_err(Error::Backend)?;
        }
        let tail = self.log.tail;
        self.log.erase_page(tail, None).map_err(Error::Backend)?;
        self.log.tail = (tail + 1) % self.log.pages;
        self.log.used -= 1;
        self.log.trust_from = self.log.trust_from.saturating_sub(1);
        // The erased page is now the last free page in the cycle.
        if self.log.ready + 1 == self.log.free() {
            self.log.ready += 1;
        }
        Ok(())
    }

    /// True when a committed record after `from` changes `key` (or clears everything).
    fn newer_exists(&mut self, key: &[u8], from: Pos) -> Res<bool, F> {
        let mut it = Committed::new(&self.log, from);
        let mut k = [0u8; K];
        while let Some((at, r)) = it.next(&mut self.log).map_err(Error::Backend)? {
            match r.ty() {
                T_CLEAR => return Ok(true),
                T_PUT | T_TOMB if usize::from(r.klen) == key.len() => {
                    let mut none = [0u8; 0];
                    let mut r0 = r;
                    r0.vlen = 0;
                    if self
                        .log
                        .read_body(at, &r0, &mut k, &mut none)
                        .map_err(Error::Backend)?
                        && &k[..key.len()] == key
                    {
                        return Ok(true);
                    }
                }
                _ => {}
            }
        }
        Ok(false)
    }

    fn see(&mut self, now: u64) {
        self.time = self.time.max(now);
    }

    /// Logs the lazy removal of `key` when it is held but expired at `now`.
    fn note_expired(&mut self, key: &[u8], now: u64) -> Res<bool, F> {
        let expired = matches!(self.table.peek_any(key), Some((_, _, e)) if e <= now);
        if expired {
            self.make_room(1, None)?;
        }
        Ok(expired)
    }

    /// An insert that culls more keys than the list holds: one batch written directly.
    fn put_culling(
        &mut self,
        key: &[u8],
        expiry: u64,
        now: u64,
        staged: &[u8],
        kind: Kind,
    ) -> Res<(), F> {
        self.flush_dirty()?;
        let vlen = staged.len();
        self.reserve(&|s: &Self, pl: &mut Placer| {
            if s.table.would_cull(key) {
                if s.table.cull_frequency() == 0 {
                    pl.place(0, 0, 0);
                } else {
                    s.table.cull_victims(now, |k| pl.place(k.len(), 0, 0));
                }
            }
            pl.place(key.len(), vlen, xlen(expiry, s.time));
        })?;
        let time = self.time;
        let Self { table, log, .. } = self;
        let mut first = true;
        if table.would_cull(key) {
            if table.cull_frequency() == 0 {
                table.cull_reporting(now, |_| {});
                log.append(T_CLEAR, true, false, 0, &[], &[], time, 0)
                    .map_err(Error::Backend)?;
                first = false;
            } else {
                let mut err = None;
                table.cull_reporting(now, |k| {
                    if err.is_none() {
                        if let Err(e) = log.append(T_TOMB, first, false, 0, k, &[], time, 0) {
                            err = Some(e);
                        }
                        first = false;
                    }
                });
                if let Some(e) = err {
                    return Err(Error::Backend(e));
                }
            }
        }
        table
            .put(key, Put::Set, expiry, now, |dst| {
                dst[..staged.len()].copy_from_slice(staged);
                Ok((staged.len(), kind))
            })
            .map_err(widen)?;
        log.append(T_PUT, first, true, kind as u8, key, staged, time, expiry)
            .map_err(Error::Backend)?;
        self.commits += 1;
        Ok(())
    }
}

impl<
        F: NorFlash,
        const N: usize,
        const K: usize,
        const V: usize,
        const D: usize,
        S: BuildHasher,
    > Backend for Persistent<F, N, K, V, D, S>
{
    type Error = Fe<F>;

    fn get<R>(
        &mut self,
        key: &[u8],
        now: u64,
        read: impl FnOnce(&[u8], Kind) -> R,
    ) -> Result<Option<R>, Error<Self::Error>> {
        self.see(now);
        if self.note_expired(key, now)? {
            let _ = self.table.delete(key, now);
            self.mark(key);
            self.settle()?;
            return Ok(None);
        }
        self.table.get(key, now, read).map_err(widen)
    }

    fn has_key(&mut self, key: &[u8], now: u64) -> Result<bool, Error<Self::Error>> {
        self.see(now);
        if self.note_expired(key, now)? {
            let _ = self.table.delete(key, now);
            self.mark(key);
            self.settle()?;
            return Ok(false);
        }
        self.table.has_key(key, now).map_err(widen)
    }

    fn put(
        &mut self,
        key: &[u8],
        mode: Put,
        expiry: u64,
        now: u64,
        fill: impl FnOnce(&mut [u8]) -> Result<(usize, Kind), Error<Self::Error>>,
    ) -> Result<bool, Error<Self::Error>> {
        self.see(now);
        if key.len() > K {
            return Err(Error::Key(KeyError::OverCapacity));
        }
        let held = self.table.peek_any(key).map(|(_, _, e)| e);
        if mode == Put::Add && held.is_some_and(|e| e > now) {
            return Ok(false);
        }
        let mut staged = [0u8; V];
        let filled = match fill(&mut staged) {
            Ok((len, _)) if len > V => Err(Error::ValueTooLarge),
            Ok((len, _)) if !self.fits_alone(key.len(), len) => Err(Error::StorageFull),
            other => other,
        };
        let (len, kind) = match filled {
            Ok(x) => x,
            Err(e) => {
                // Never leave a stale value readable: the key goes.
                if held.is_some() {
                    self.make_room(1, None)?;
                    let _ = self.table.delete(key, now);
                    self.mark(key);
                    self.settle()?;
                }
                return Err(e);
            }
        };
        if self.table.would_cull(key) {
            let mut victims = 0;
            if self.table.cull_frequency() == 0 {
                victims = N;
            } else {
                self.table.cull_victims(now, |_| victims += 1);
            }
            let listed = matches!(self.policy, Policy::WriteBack { .. }) && victims < D;
            if listed && !self.cull_fits(key.len(), len, now) {
                self.flush_dirty()?;
            }
            if !listed || !self.cull_fits(key.len(), len, now) {
                self.put_culling(key, expiry, now, &staged[..len], kind)?;
                return Ok(true);
            }
            let Self {
                table,
                dirty_keys,
                dirty_len,
                dirty,
                ..
            } = self;
            table.cull_reporting(now, |k| {
                if *dirty < D {
                    dirty_keys[*dirty][..k.len()].copy_from_slice(k);
                    dirty_len[*dirty] = k.len() as u8;
                    *dirty += 1;
                }
            });
        } else {
            self.make_room(1, Some((key.len(), len)))?;
        }
        self.table
            .put(key, Put::Set, expiry, now, |dst| {
                dst[..len].copy_from_slice(&staged[..len]);
                Ok((len, kind))
            })
            .map_err(widen)?;
        self.mark(key);
        self.settle()?;
        Ok(true)
    }

    fn touch(&mut self, key: &[u8], expiry: u64, now: u64) -> Result<bool, Error<Self::Error>> {
        self.see(now);
        let vlen = match self.table.peek(key, now) {
            Some((v, _, _)) => v.len(),
            None => return Ok(false),
        };
        self.make_room(1, Some((key.len(), vlen)))?;
        let touched = self.table.touch(key, expiry, now).map_err(widen)?;
        if touched {
            self.mark(key);
            self.settle()?;
        }
        Ok(touched)
    }

    fn delete(&mut self, key: &[u8], now: u64) -> Result<bool, Error<Self::Error>> {
        self.see(now);
        if self.table.peek_any(key).is_none() {
            return Ok(false);
        }
        self.make_room(1, None)?;
        let live = self.table.delete(key, now).map_err(widen)?;
        self.mark(key);
        self.settle()?;
        Ok(live)
    }

    fn incr(&mut self, key: &[u8], delta: i64, now: u64) -> Result<i64, Error<Self::Error>> {
        self.see(now);
        if self.table.peek_any(key).is_none() {
            return Err(Error::NotFound);
        }
        self.make_room(1, Some((key.len(), V)))?;
        let r = self.table.incr(key, delta, now);
        match r {
            Ok(_) | Err(Error::NotFound) => {
                self.mark(key);
                self.settle()?;
            }
            _ => {}
        }
        r.map_err(widen)
    }

    fn rekey(
        &mut self,
        from: &[u8],
        to: &[u8],
        expiry: u64,
        now: u64,
    ) -> Result<bool, Error<Self::Error>> {
        self.see(now);
        if to.len() > K {
            return Err(Error::Key(KeyError::OverCapacity));
        }
        let vlen = match self.table.peek_any(from) {
            Some((v, _, _)) => v.len(),
            None => return Ok(false),
        };
        self.make_room(2, Some((K, vlen)))?;
        let moved = self.table.rekey(from, to, expiry, now).map_err(widen)?;
        self.mark(from);
        if moved {
            self.mark(to);
        }
        self.settle()?;
        Ok(moved)
    }

    fn clear(&mut self) -> Result<(), Error<Self::Error>> {
        let _ = self.table.clear();
        self.dirty = 0;
        self.pending_clear = true;
        self.settle()
    }

    fn flush(&mut self) -> Result<(), Error<Self::Error>> {
        self.flush_dirty()?;
        if self.time > self.log.written_time {
            self.reserve(&|_: &Self, pl: &mut Placer| pl.place(0, 0, 0))?;
            let t = self.time;
            self.log
                .append(T_TIME, true, true, 0, &[], &[], t, 0)
                .map_err(Error::Backend)?;
            self.commits += 1;
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.table.len()
    }
}

impl<
        F: NorFlash,
        const N: usize,
        const K: usize,
        const V: usize,
        const D: usize,
        S: BuildHasher,
    > Persistent<F, N, K, V, D, S>
{
    /// True when the changed keys, the tombstones of a cull at `now` and a put fit the list
    /// and one batch.
    fn cull_fits(&self, klen: usize, vlen: usize, now: u64) -> bool {
        let mut victims = 0;
        self.table.cull_victims(now, |_| victims += 1);
        if self.dirty + victims + 1 > D {
            return false;
        }
        let mut pl = self.empty_placer();
        self.place_dirty(&mut pl);
        self.table.cull_victims(now, |k| pl.place(k.len(), 0, 0));
        pl.place(klen, vlen, XLEN_ANY);
        pl.ok
    }

    /// True when one put record of this size fits the flash at all.
    fn fits_alone(&self, klen: usize, vlen: usize) -> bool {
        let mut pl = self.empty_placer();
        pl.place(klen, vlen, XLEN_ANY);
        pl.ok
    }
}

impl<F, const N: usize, const K: usize, const V: usize, const D: usize, S: BuildHasher> fmt::Debug
    for Persistent<F, N, K, V, D, S>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Persistent")
            .field("len", &self.table.len())
            .field("policy", &self.policy)
            .field("pages", &self.log.pages)
            .field("pages_used", &self.log.used)
            .field("dirty", &self.dirty)
            .field("time", &self.time)
            .finish_non_exhaustive()
    }
}
