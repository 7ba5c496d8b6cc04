//! Opening a region: finding the log's pages, replaying them into the table, recovering
//! from damage, and formatting.

use tickcache_dual::dual;

use core::borrow::BorrowMut;
use core::hash::BuildHasher;
use core::marker::PhantomData;
use core::ops::Range;

use embedded_storage::nor_flash::NorFlash;

use super::backend::WriteBackFn;
use super::io::{Blocking, Geometry, SyncIo};
use super::log::{Committed, IoOf, Log, Pos, SyncIoOf, SCRATCH};
use super::{Core, Fe, FeOf, FlashError, Persistent, Policy, Work, CULL_MARK, NOWHERE};
use crate::backend::Backend;
use crate::error::Error;
use crate::table::{Kept, Table};
use crate::value::Kind;

use super::format::{RecHead, T_CLEAR, T_PUT, T_TOMB};

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
    #[inline(always)]
    pub fn open(
        flash: F,
        range: Range<u32>,
        table: Table<N, K, V, S>,
        policy: Policy,
    ) -> Result<Self, FeOf<F>> {
        Self::start_owned(flash, range, table.kept(), policy, false)
    }

    /// [`Persistent::open`], but when the flash holds something it cannot open
    /// ([`FlashError::Corrupted`]), the region is formatted ([`Persistent::erase_all`]) and
    /// opens empty: for firmware that prefers an empty cache to a refused one. Flash
    /// errors and a bad range are still returned.
    #[inline(always)]
    pub fn open_or_format(
        flash: F,
        range: Range<u32>,
        table: Table<N, K, V, S>,
        policy: Policy,
    ) -> Result<Self, FeOf<F>> {
        Self::start_owned(flash, range, table.kept(), policy, true)
    }

    /// [`Persistent::open`] into a table that lives elsewhere, lent as `table` (any
    /// `BorrowMut<Table>`: a `&'static mut Table` from a zero-initialised `static`, a
    /// `&mut Table` on the stack, or an owned table). Whatever the table held is cleared
    /// first (its culling limits are kept), so it ends holding exactly what the flash
    /// holds. For firmware that keeps the table, often the largest object it has, in a
    /// `static` of its own rather than moving it through the stack:
    ///
    /// ```
    /// # #[cfg(feature = "_mock")] {
    /// use tickcache::flash::{MockFlash, Persistent, Policy};
    /// use tickcache::{Config, ManualClock, Table};
    ///
    /// // In firmware: `cortex_m::singleton!(: Table<16, 32, 16> = Table::new()).unwrap()`
    /// // or `StaticCell::init`, a `&'static mut` into zero-initialised `.bss`.
    /// let table: &'static mut Table<16, 32, 16> = Box::leak(Box::new(Table::new()));
    /// let mut flash = MockFlash::<4, 1024, 4>::new();
    /// let p = Persistent::<_, 16, 32, 16>::open_in(&mut flash, 0..4096, table,
    ///     Policy::WriteThrough)?;
    /// let clock = ManualClock::new(1000);
    /// let mut cache = p.into_cache(&clock, Config::new());
    /// cache.set("answer", &42u32, 60).unwrap();
    /// # }
    /// # Ok::<(), tickcache::flash::FlashError<tickcache::flash::MockError>>(())
    /// ```
    pub fn open_in<T: BorrowMut<Table<N, K, V, S>>>(
        flash: F,
        range: Range<u32>,
        table: T,
        policy: Policy,
    ) -> Result<Persistent<F, N, K, V, D, S, T>, FeOf<F>> {
        Persistent::start_lent(flash, range, table, policy, false)
    }

    /// [`Persistent::open_or_format`] into a lent table, as [`Persistent::open_in`].
    pub fn open_or_format_in<T: BorrowMut<Table<N, K, V, S>>>(
        flash: F,
        range: Range<u32>,
        table: T,
        policy: Policy,
    ) -> Result<Persistent<F, N, K, V, D, S, T>, FeOf<F>> {
        Persistent::start_lent(flash, range, table, policy, true)
    }

    /// Opens the region into an owned table, given as what it keeps across a clear: the
    /// cleared table is built where the backend is ([`Table::emptied`]), so the whole table
    /// is neither moved there nor cleared.
    #[inline(always)]
    fn start_owned(
        flash: F,
        range: Range<u32>,
        kept: Kept<S>,
        policy: Policy,
        format: bool,
    ) -> Result<Self, FeOf<F>> {
        Self::start(flash, range, move || Table::emptied(kept), policy, format)
    }
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
    /// Opens the region into a lent `table`, clearing what it held first.
    #[inline(always)]
    fn start_lent(
        flash: F,
        range: Range<u32>,
        table: T,
        policy: Policy,
        format: bool,
    ) -> Result<Self, FeOf<F>> {
        let mut table = table;
        // Cleared once the range is checked.
        let cleared = move || {
            let _ = table.borrow_mut().clear();
            table
        };
        Self::start(flash, range, cleared, policy, format)
    }

    /// Opens the region into the table `table` makes (cleared), once the range is checked.
    /// Inlined where `open` is called: a policy given there as a constant decides whether
    /// write-back's culling step is linked ([`Core::write_back_for`]).
    #[inline(always)]
    fn start(
        flash: F,
        range: Range<u32>,
        table: impl FnOnce() -> T,
        policy: Policy,
        format: bool,
    ) -> Result<Self, FeOf<F>> {
        let write_back = Core::write_back_for(policy);
        Self::start_with(flash, range, table, policy, write_back, format)
    }

    /// [`Persistent::start`]. Out of line: the backend is built once, in the caller's
    /// place, rather than moved through the caller's frame (-192 bytes in the firmware's
    /// whole-API probe).
    #[inline(never)]
    fn start_with(
        flash: F,
        range: Range<u32>,
        table: impl FnOnce() -> T,
        policy: Policy,
        write_back: Option<WriteBackFn<Blocking<F>, N, K, V, D, S, T>>,
        format: bool,
    ) -> Result<Self, FeOf<F>> {
        let log = Core::<Blocking<F>, N, K, V, D, S, T>::region(range, flash.capacity())?;
        // The result is built in one piece around the cleared table (a lent one cleared
        // where it lies, an owned one built empty in place), then the core mounted inside
        // it: the table is not copied, and there is one way out.
        let mut r = Ok(Persistent {
            core: Core::build(log, table(), policy, write_back),
            buf: [0; SCRATCH],
            flash,
        });
        if let Ok(Persistent { core, buf, flash }) = &mut r {
            if let Err(e) = core.mount_or_format_blocking(&mut SyncIo::new(flash, buf), format) {
                r = Err(e);
            }
        }
        r
    }

    /// Formats the region: erases every page (counting the erase in each page's header),
    /// and empties the table and the list of changed keys. The log's pages go oldest first,
    /// so a power cut part-way leaves the newest pages as a shorter log: some entries may
    /// come back then, each with the latest value it had (never an older one).
    pub fn erase_all(&mut self) -> Result<(), FeOf<F>> {
        let Self { core, buf, flash } = self;
        core.erase_all_blocking(&mut SyncIo::new(flash, buf))
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
    /// A core over `range` of a flash of `capacity` bytes, into `table` (cleared), before
    /// [`Core::mount`]. Checks the geometry at compile time and the range.
    pub(crate) fn new(
        range: Range<u32>,
        capacity: usize,
        mut table: T,
        policy: Policy,
        write_back: Option<WriteBackFn<F, N, K, V, D, S, T>>,
    ) -> Result<Self, Fe<F>> {
        let log = Self::region(range, capacity)?;
        let _ = table.borrow_mut().clear();
        Ok(Self::build(log, table, policy, write_back))
    }

    /// A core on `log` (from [`Core::region`]) into `table`, cleared by the caller.
    #[inline(always)]
    fn build(
        log: Log<F>,
        table: T,
        policy: Policy,
        write_back: Option<WriteBackFn<F, N, K, V, D, S, T>>,
    ) -> Self {
        Core {
            list_fits: Self::list_always_fits(&log),
            table,
            hasher: PhantomData,
            log,
            policy,
            write_back,
            loc: const { [NOWHERE; N] },
            // Constants, so the zeroed arrays side by side are cleared in one piece.
            dirty_keys: const { [[0; K]; D] },
            dirty_len: const { [0; D] },
            dirty_loc: const { [NOWHERE; D] },
            dirty: 0,
            pending_clear: false,
            time: 0,
            commits: 0,
            evictions: 0,
            work: Work::None,
            want_flush: false,
            culled: false,
        }
    }

    /// The log over `range` of a flash of `capacity` bytes, when the range suits it.
    /// Checks the geometry at compile time.
    fn region(range: Range<u32>, capacity: usize) -> Result<Log<F>, Fe<F>> {
        const { assert!(D >= 2 && D <= 255, "D must be in 2..=255") };
        #[allow(clippy::let_unit_value)]
        let () = Log::<F>::GEOMETRY;
        let page_size = F::ERASE_SIZE as u32;
        let len = range.end.saturating_sub(range.start);
        if range.start % page_size != 0
            || len % page_size != 0
            || len / page_size < 2
            || range.end as usize > capacity
            || range.end > CULL_MARK
        {
            return Err(FlashError::BadRange);
        }
        Ok(Log::new(range.start, len / page_size, page_size))
    }

    /// [`Core::mount`]; with `format`, formats the region when the log cannot be continued.
    pub(crate) async fn mount_or_format(
        &mut self,
        io: &IoOf<F>,
        format: bool,
    ) -> Result<(), Fe<F>> {
        match self.mount(io).await {
            Err(FlashError::Corrupted) if format => self.erase_all(io).await,
            r => r,
        }
    }

    /// Reads the log: finds its pages, replays it into the table, checks for damage.
    pub(super) async fn mount(&mut self, io: &IoOf<F>) -> Result<(), Fe<F>> {
        let page_size = self.log.page_size;
        let log = &mut self.log;
        // Find the head (highest sequence), then walk back while sequences go down one by
        // one: pages are opened with consecutive numbers and leave the log from its tail, so
        // a gap means pages are missing, and the pages before it are not trusted (not read).
        // The head found so far is kept as a log of one page (`tail`, `seq`, `used` 1; the
        // log starts empty), its base time in `ht`.
        let mut ht = 0;
        // Reading every header also finds the highest erase count ([`Log::page_seq`]).
        for p in 0..log.pages {
            if log.page_seq(io, p).await? && (log.used == 0 || log.hdr.seq > log.seq) {
                (log.tail, log.used, log.seq, ht) = (p, 1, log.hdr.seq, log.hdr.base);
            }
        }
        if log.used > 0 {
            let (hp, hs) = (log.tail, log.seq);
            while log.used < log.pages {
                // The page before the tail joins the log when its sequence is one below the
                // tail's.
                let prev = log.phys(log.pages - 1);
                if !log.page_seq(io, prev).await? || log.hdr.seq.wrapping_add(log.used) != hs {
                    break;
                }
                log.tail = prev;
                log.used += 1;
                self.time = self.time.max(log.hdr.base);
            }
            if log.used == log.pages {
                // Only a compaction fills the last free page, and until it erases the
                // oldest page it writes nothing there but copies of that page's records:
                // drop the copies and let the compaction run again.
                log.erase_page(io, hp).await?;
                log.used -= 1;
                log.seq -= 1;
            } else {
                // Cache time starts at the latest base time of the log's pages: those
                // before the head were taken on the walk back.
                self.time = self.time.max(ht);
            }
            // Where the head's records end is found by the replay's check below.
        }
        // A page outside the log never has a valid header part B nor holds records, unless
        // damaged (an erase or a header write cut short leaves neither). Such a stray page
        // right after the head means a page newer than the head may have been there: nothing
        // read can be trusted to be the latest. Stray pages are erased below, so that they
        // never come to follow the head later.
        // A stray page whose sequence number is not below the log's oldest one cannot be an
        // older page cut off from it either (a copy of a log page, say): the same then.
        let (strays, lost_head) = Self::strays(io, log, false).await?;
        if lost_head {
            log.trust_from = log.used;
        }
        // Replay, checking how each page's records end (the head's end is where the next
        // record goes); then, when damage was found, replay again from the first page after
        // it: whatever came before may have been overwritten in the unreadable part (by a
        // record or a tombstone of any key).
        self.replay(io, Pos::START).await?;
        self.log.checked = Log::<F>::CHECKED;
        let trust = self.log.trust_from;
        if trust > 0 {
            let _ = self.table.borrow_mut().clear();
            self.replay(io, Pos { li: trust, off: 0 }).await?;
        }
        if lost_head {
            // Make the drop durable before the page that shows it is erased: a clear record
            // at the head (in a new page when the head is full: that page is then the stray
            // one, erased first).
            self.pending_clear = true;
            self.flush_dirty(io).await.map_err(|e| match e {
                Error::Backend(e) => e,
                _ => FlashError::Corrupted,
            })?;
        }
        let log = &mut self.log;
        if strays {
            Self::strays(io, log, true).await?;
        }
        // Free pages after the head that can join the log without an erase: a valid
        // part A and nothing else, or fully blank (part A is written now).
        let mut li = log.used;
        while li < log.pages {
            let p = log.phys(li);
            let addr = log.page_addr(p);
            // Blank from part A's end when part A is valid, else from the page's start.
            let has_a = log.erase_count(io, p).await?.is_some();
            let from = Log::<F>::a_len() * u32::from(has_a);
            if !log.is_blank(io, addr + from, page_size - from).await? {
                break;
            }
            if !has_a {
                let count = log.max_erase;
                log.write_part_a(io, addr, count).await?;
            }
            li += 1;
        }
        log.ready = li - log.used;
        Ok(())
    }

    /// Looks for stray pages (outside the log, with a valid header part B or records):
    /// whether there are any, and whether one shows that a page newer than the head may
    /// have been there (see [`Core::mount`]). With `erase`, erases them.
    async fn strays(io: &IoOf<F>, log: &mut Log<F>, erase: bool) -> Result<(bool, bool), Fe<F>> {
        let tail_seq = log.seq.wrapping_sub(log.used).wrapping_add(1);
        let mut strays = false;
        let mut lost_head = false;
        for li in log.used..log.pages {
            let p = log.phys(li);
            let valid = log.page_seq(io, p).await?;
            let newer = valid && log.hdr.seq >= tail_seq;
            if valid || log.holds_records(io, p).await? {
                strays = true;
                lost_head |= log.used > 0 && (li == log.used || newer);
                if erase {
                    log.erase_page(io, p).await?;
                }
            }
        }
        Ok((strays, lost_head))
    }

    /// Replays the records of committed batches from `from` on into the table (see
    /// [`Core::mount`]).
    pub(super) async fn replay(&mut self, io: &IoOf<F>, from: Pos) -> Result<(), Fe<F>> {
        let mut it = Committed::new(&self.log, from);
        // The key is read into the first slot of the list of changed keys, empty while the
        // log is read (`D` is at least 2): no key buffer of its own to clear.
        let key = &mut self.dirty_keys[0];
        let mut val = [0u8; V];
        let mut r = RecHead::BLANK;
        while let Some(addr) = it.next_into(io, &mut self.log, &mut r).await? {
            self.time = self.time.max(r.time);
            match r.ty() {
                // A put restores its value, a tombstone drops its key.
                ty @ (T_PUT | T_TOMB) => {
                    let kl = usize::from(r.klen);
                    // Key and value are read when they fit their buffers (taken with no
                    // panic path below).
                    self.log.read_at(io, addr, &r, key, &mut val).await?;
                    // A key longer than `K` was never restored: nothing to drop.
                    if let Some(k) = key.get(..kl) {
                        let table = self.table.borrow_mut();
                        // Any older value of the key goes first: a tombstone drops it, and
                        // so does a put this configuration cannot hold (written with a
                        // larger `V`, or of an unknown kind). A put restores into the slot
                        // it frees.
                        if let Some(i) = table.slot_of(k) {
                            table.remove_slot(i);
                        }
                        if let (T_PUT, Some(v), Some(kind)) =
                            (ty, val.get(..r.vlen as usize), Kind::from_u8(r.kind()))
                        {
                            if let Some(s) = table.restore(k, v, kind, r.expiry, self.time) {
                                self.loc[s] = addr;
                            }
                        }
                    }
                }
                T_CLEAR => {
                    let _ = self.table.borrow_mut().clear();
                }
                _ => {}
            }
        }
        self.log.written_time = self.time;
        Ok(())
    }

    /// Formats the region (see [`Persistent::erase_all`]).
    pub(crate) async fn erase_all(&mut self, io: &IoOf<F>) -> Result<(), Fe<F>> {
        let _ = self.table.borrow_mut().clear();
        self.dirty = 0;
        self.pending_clear = false;
        self.work = Work::None;
        let log = &mut self.log;
        for li in 0..log.pages {
            let p = log.phys(li);
            log.erase_page(io, p).await?;
        }
        log.used = 0;
        log.seq = 0;
        log.ready = log.pages;
        log.head_off = log.page_size;
        log.trust_from = 0;
        log.checked = Log::<F>::CHECKED;
        Ok(())
    }
}

// The async front end's recovery after a cancelled task (no blocking variant).
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
    /// Forgets everything RAM holds and reads the flash again, as after a reset: the
    /// recovery when work was cut off midway (a cancelled task). Changes not yet flushed
    /// are lost; cache time never goes back.
    pub(crate) async fn remount(&mut self, io: &IoOf<F>) -> Result<(), Fe<F>> {
        let _ = self.table.borrow_mut().clear();
        let (time, commits) = (self.time, self.commits);
        self.log = Log::new(self.log.base, self.log.pages, self.log.page_size);
        self.loc = [NOWHERE; N];
        self.dirty = 0;
        self.pending_clear = false;
        self.work = Work::None;
        self.want_flush = false;
        self.culled = false;
        self.time = 0;
        let r = self.mount(io).await;
        self.time = self.time.max(time);
        self.commits = commits;
        r
    }
}
