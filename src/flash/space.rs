//! Space on flash: placing a batch's records into pages to tell whether it fits, making
//! room for it, and compaction (copying the oldest page's live records to the head).
//!
//! Compaction reads no record to know which are live: RAM holds every entry, and where each
//! entry's latest record lies (`Persistent::loc`, per table slot, and `dirty_loc` for keys
//! changed since the last flush). A record in the oldest page is live when it is that
//! latest record; an unchanged entry is copied from RAM, a changed one from flash (its
//! flushed value is what a power cut must bring back).

use tickcache_dual::dual;

use core::borrow::BorrowMut;
use core::hash::BuildHasher;
use core::marker::PhantomData;

use super::backend::Staged;
use super::format::{record_bytes, record_size, varint_len, Rec, RecHead};
use super::io::Geometry;
use super::log::{IoOf, Log, SyncIoOf};
use super::writeback::{listed_key, Listed};
use super::{Core, Fe, Res, CULL_MARK, NOWHERE};
use crate::error::Error;
use crate::table::Table;

/// Places records into the free space, page by page, to tell whether a batch fits (records
/// padded to `F`'s write size, a constant of the placer's code, not a field).
pub(super) struct Placer<F> {
    rem: u32,
    spare: u32,
    /// Bytes a fresh page holds; 0 once a record did not fit (no record fits then:
    /// [`Placer::ok`]).
    cap: u32,
    /// Bytes of the time delta in the page being filled (0 in a fresh page).
    dlen: usize,
    /// Bytes of the records placed.
    bytes: u32,
    flash: PhantomData<F>,
}

/// A batch that room is made for ([`Core::reserve`]) or that is placed to tell whether it
/// fits ([`Core::batch_bytes`], [`Core::fits_now`]), named rather than given as a closure:
/// one placement function ([`Core::place_batch`]), no closure bodies. Two words (every
/// variant holds at most one reference), passed in registers: no caller keeps it in its
/// frame.
#[derive(Clone, Copy)]
pub(super) enum Batch<'a> {
    /// One small record (a clear or a time record): the batch of a [`Work::Room`] and of a
    /// time record.
    ///
    /// [`Work::Room`]: super::Work::Room
    Small,
    /// The batch of a flush of the list as it is.
    Flush,
    /// The batch of an insert that culls, victims marked ([`Core::place_batch`]).
    Culling(&'a Staged<'a>),
}

/// Expiry bytes of a record whose expiry is not known yet (the longest).
pub(super) const XLEN_ANY: usize = 10;

/// Bytes of the expiry varint of a put written at `time`. Out of line: the placements of
/// a changed key and of a culling insert's put share one copy.
#[inline(never)]
pub(super) fn xlen(expiry: u64, time: u64) -> usize {
    if expiry == crate::NEVER {
        0
    } else {
        varint_len(expiry.saturating_sub(time))
    }
}

impl<F: Geometry> Placer<F> {
    /// True while every record placed fit (a fresh page holds some bytes: a page holds
    /// more than its header).
    pub(super) fn ok(&self) -> bool {
        self.cap != 0
    }

    /// Places a record: a key taking `kcost` bytes ([`key_cost`](super::format::key_cost);
    /// 0 for clear and time records), `vlen` value bytes, `xlen` expiry bytes.
    /// A leaf (no division: the write size is a power of two), at the end of the path of
    /// every operation's check.
    pub(super) fn place(&mut self, kcost: usize, vlen: usize, xlen: usize) {
        let raw = record_bytes(kcost, vlen, xlen) as u32;
        let pad = F::WRITE_SIZE as u32 - 1;
        let size = (raw + self.dlen as u32 + pad) & !pad;
        self.bytes += size;
        if size <= self.rem {
            self.rem -= size;
            return;
        }
        let fresh = (raw + pad) & !pad;
        if self.spare == 0 || fresh > self.cap {
            self.cap = 0;
            return;
        }
        self.spare -= 1;
        self.dlen = 0;
        self.rem = self.cap - fresh;
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
    /// A placer over an empty log (does a batch fit at all?).
    pub(super) fn empty_placer(&self) -> Placer<F> {
        Placer {
            rem: 0,
            spare: self.log.pages - 1,
            cap: self.log.cap(),
            dlen: 0,
            bytes: 0,
            flash: PhantomData,
        }
    }

    /// A placer over the current free space (keeping one page spare for compaction) with
    /// `now`, else [`Self::empty_placer`]. Inlined into [`Self::placed`], its one caller
    /// (no call and frame of its own; `placed`'s frame stays as it was).
    #[inline(always)]
    fn placer_for(&self, now: bool) -> Placer<F> {
        let mut pl = self.empty_placer();
        if now {
            // The current free space, keeping one page spare for compaction: the head
            // page's rest (none in an empty log) and the free pages but one. With no page
            // free nothing fits (no page to keep spare): a zero fresh-page size says so
            // ([`Placer::ok`]) whatever the records placed.
            let log = &self.log;
            let free = log.free();
            pl.spare = free.wrapping_sub(1);
            if free == 0 {
                pl.cap = 0;
            }
            if log.used != 0 {
                pl.rem = log.page_size - log.head_off;
                pl.dlen = log.delta_len(self.time);
            }
        }
        pl
    }

    /// Makes room for `batch`: compacts the oldest pages, then, when
    /// the flash holds only live records, drops the oldest page's entries.
    ///
    /// When the batch cannot fit beside the records it replaces (a write-back flush
    /// rewriting most of a small region), compaction does not keep those: copying them
    /// round the log would not make room. Else it keeps them for one cycle round the log,
    /// and drops them before it drops any entry. The victims of a culling insert (marked)
    /// are never copied. A power cut while such a batch is written then loses those keys
    /// (a miss, never an older value).
    ///
    /// Out of line: a front end's step that calls it stays small.
    #[blocking(inline(never))]
    pub(super) async fn reserve(&mut self, io: &IoOf<F>, batch: Batch<'_>) -> Res<(), F> {
        // The placers sit in sibling frames (`batch_bytes`, `fits_now`), not in this one:
        // it lies on the deepest path of a call, above compaction's copies.
        let Some(bytes) = self.batch_bytes(batch) else {
            return Err(Error::StorageFull);
        };
        // The records the batch replaces take about as much room as the batch. (It fits
        // the region, which ends below 2^31: twice its bytes cannot overflow.)
        let keep = 2 * bytes <= (self.log.pages - 1) * self.log.cap();
        let mut round = 0;
        // The page count is read where it is used, not kept across the loop's calls: a
        // smaller frame above compaction's copies. At most `3 * pages + 4` rounds, counted
        // at the end of each (there is always a first).
        loop {
            round += 1;
            let pages = self.log.pages;
            if self.fits_now(batch) {
                return Ok(());
            }
            if self.log.used <= 1 {
                self.log
                    .open_page(io, self.time)
                    .await
                    .map_err(Error::Backend)?;
            } else {
                // Records of changed keys are kept for the first cycle round the log only:
                // when that made no room, dropping them (a power cut in the batch then loses
                // those keys) comes before dropping entries.
                // (`round` counts from 1 here.)
                self.reclaim_tail(io, round > 2 * pages, keep && round <= pages)
                    .await?;
            }
            if round >= 3 * self.log.pages + 4 {
                return Err(Error::StorageFull);
            }
        }
    }

    /// Compacts the oldest page: copies its live records to the head (or, with `evict`,
    /// drops their entries; without `keep`, never given with `evict`, the records of
    /// changed keys are not copied), then erases it. Reads only the records of changed
    /// keys. Out of line with a small frame: it lies on the deepest path of a call (an
    /// operation making room).
    #[blocking(inline(always))]
    pub(super) async fn reclaim_tail(
        &mut self,
        io: &IoOf<F>,
        evict: bool,
        keep: bool,
    ) -> Res<(), F> {
        // Only a time already on flash may expire entries here (the copies read it from
        // the log, [`Self::copied_now`]).
        let tail = self.log.tail;
        // Records before damage found at open are never copied: no entry was restored from
        // them, so no slot and no changed key points there. A copy takes the head page's
        // base time (already on flash) and keeps its absolute expiry.
        for d in 0..self.dirty {
            let Some(&at) = self.dirty_loc.get(d) else {
                break;
            };
            if !self.log.in_page(at, tail) {
                continue;
            }
            // Copied, or lost with the page (a miss after a power cut, never an older value:
            // the key's older records were in pages erased before).
            self.dirty_loc[d] = NOWHERE;
            // (`keep` is never given with `evict`: its caller keeps them for the first cycle
            // only, evicts after the second.)
            if keep && !self.dirty_victim(d) {
                self.copy_flushed(io, d, at).await.map_err(Error::Backend)?;
            }
        }
        // Unchanged entries, least recent first: RAM holds what their latest record says.
        // Those that cannot be copied, or all with `evict`, go with the page (durable at
        // once: it is erased next).
        let mut s = self.table.borrow().older(None);
        while let Some(i) = s {
            s = self.table.borrow().older(Some(i));
            if self.copy_wanted(i) {
                let w = Listed::Copy(i).word(true, true) | (Listed::EVICT * usize::from(evict));
                self.append_word(io, w).await?;
            }
        }
        let log = &mut self.log;
        log.erase_page(io, tail).await.map_err(Error::Backend)?;
        // The next page in the cycle, without a division.
        log.tail = if tail + 1 == log.pages { 0 } else { tail + 1 };
        log.used -= 1;
        log.trust_from = log.trust_from.saturating_sub(1);
        // The erased page is now the last free page in the cycle.
        if log.ready + 1 == log.free() {
            log.ready += 1;
        }
        Ok(())
    }

    /// True when slot `i`'s entry is to be copied to the head: its latest record lies in
    /// the tail page, it is unchanged and live ([`Self::copied_now`]). The copy is the
    /// batch's record writer's ([`Listed::Copy`]), which drops the entry instead (it goes
    /// with the page: durable at once, the page is erased next) when it is evicted or the
    /// copy does not fit. Out of line: the compaction loop calls the writer itself, one
    /// frame less above it.
    #[inline(never)]
    fn copy_wanted(&mut self, i: usize) -> bool {
        let tail = self.log.tail;
        // A slot of the table's walk is below `N`: the clamp is one compare, no panic path.
        let i = i.min(N - 1);
        let at = self.loc[i];
        if !self.log.in_page(at & !CULL_MARK, tail) {
            return false;
        }
        // A victim of the insert making room: its batch removes the entry, so the record
        // is not copied (a power cut before the batch lands loses the entry).
        let victim = at & CULL_MARK != 0;
        let (k, _, _, e) = self.table.borrow().slot(i);
        if !victim && self.is_dirty(k) {
            return false;
        }
        // The address goes with the page ([`NOWHERE`]), a victim's mark stays.
        self.loc[i] = at & CULL_MARK;
        !victim && e > self.copied_now()
    }

    /// Copies the flushed record of changed key `d` at `at` (in the tail page, whose start
    /// it reads first, [`Log::page_start`]: once, then it is known) to the head when it is
    /// still live ([`Self::copied_now`]) and fits, and sets where the copy starts as the
    /// key's record on flash (the caller set [`NOWHERE`] there: left when it is not
    /// copied). The page start's read lies under this frame, beside the copy's reads and
    /// writes, which go deeper. The key comes from the list, only the value is read.
    /// Answers no address: its result fits a register. Its errors are the flash's, widened
    /// once by the caller (not at each of its three calls).
    #[blocking(inline(never))]
    async fn copy_flushed(&mut self, io: &IoOf<F>, d: usize, at: u32) -> Result<(), Fe<F>> {
        let log = &mut self.log;
        let tail = log.tail;
        let k = listed_key(&self.dirty_keys, &self.dirty_len, d);
        // The header's fields that the copy needs; the header itself is dead after this
        // block, so its slot is free for the copy's description below.
        let (expiry, kind, vl, from) = {
            // The page's start (read once: then it is known, and this reads nothing).
            if !log.page_start(io, tail).await? {
                return Ok(());
            }
            let mut r = RecHead::in_page(log.hdr.base);
            let off = at - log.page_addr(tail);
            if !log.read_record_into(io, tail, off, &mut r).await?
                || r.expiry <= log.written_time
                || usize::from(r.klen) != k.len()
                || r.vlen as usize > V
            {
                return Ok(());
            }
            (
                r.expiry,
                r.kind(),
                r.vlen as usize,
                at + r.body_end() - r.vlen,
            )
        };
        let mut val = [0u8; V];
        log.read(io, from, &mut val[..vl]).await?;
        let base = log.head_base;
        let copy = Rec::put(k, &val[..vl], kind, base, expiry);
        if !log.head_fits(Log::<F>::rec_size(&copy, base) as usize) {
            return Ok(());
        }
        self.dirty_loc[d] = log.append(io, &copy).await?;
        Ok(())
    }

    /// The bytes of `batch`'s records, placed in an empty log; `None` when it
    /// cannot fit even there ([`Self::placed`]).
    pub(super) fn batch_bytes(&self, batch: Batch<'_>) -> Option<u32> {
        self.placed(false, batch)
    }

    /// The bytes of `batch`'s records, placed in the free space (with `now`, one page kept
    /// spare: `None` when no page is free) or in an empty log; `None` when it does not fit
    /// there. Out of line: its placer is not on the caller's frame
    /// ([`Self::reserve`]'s, an operation's).
    #[inline(never)]
    fn placed(&self, now: bool, batch: Batch<'_>) -> Option<u32> {
        let mut pl = self.placer_for(now);
        self.place_batch(&mut pl, batch);
        pl.ok().then_some(pl.bytes)
    }

    /// True when changed key `d` is a victim of the insert making room (its flushed record
    /// is not copied). Its table lookup is out of line ([`Self::held_kept`]): the lookup's
    /// frame is not on [`Self::reserve`]'s, which lies above compaction's copies.
    pub(super) fn dirty_victim(&self, d: usize) -> bool {
        self.held_kept(d) == 0
    }

    /// The time compaction expires entries at: the latest time on flash, not the cache's
    /// (after a power cut, time resumes from what the flash holds, where a later expiry
    /// would still be live). Copies do not move it (they take the head page's base time,
    /// already on flash), so it holds for a whole compaction; read where it is used, so
    /// the copies take no time argument (one stack word pair less on each call).
    fn copied_now(&self) -> u64 {
        self.log.written_time
    }

    /// True when `batch` fits the free space now, one page kept spare ([`Self::reserve`]
    /// would not touch the flash; [`Self::placed`], which answers `None` when no page is
    /// free).
    pub(super) fn fits_now(&self, batch: Batch<'_>) -> bool {
        self.placed(true, batch).is_some()
    }

    /// True when one put record of this size (a key of at most `K` bytes, a value of at
    /// most `V`) fits the flash at all: placed in an empty log directly, with no batch to
    /// describe. When a record of the largest key and value fits a page, every one does:
    /// that test is on constants and folds, so most firmware places nothing here.
    pub(super) fn fits_alone(&self, kcost: usize, vlen: usize) -> bool {
        if record_size(K + 2, V, 0, XLEN_ANY, F::WRITE_SIZE) <= self.log.cap() as usize {
            return true;
        }
        let mut pl = self.empty_placer();
        pl.place(kcost, vlen, XLEN_ANY);
        pl.ok()
    }
}
