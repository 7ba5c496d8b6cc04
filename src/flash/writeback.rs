//! The write-back set: keys changed and not yet on flash, and the flush that writes them
//! (and a pending clear) as one batch. Write-through is the same path with a flush after
//! every operation.

use tickcache_dual::dual;

use core::borrow::BorrowMut;
use core::hash::BuildHasher;

use super::backend::Staged;
#[cfg(doc)]
use super::backend::WriteBack;
use super::format::{
    key_cost, record_size, same, Rec, TAG_END, TAG_START, T_CLEAR, T_PUT, T_TIME, T_TOMB,
};
use super::io::Geometry;
use super::log::{IoOf, Log, SyncIoOf};
use super::space::{xlen, Batch, Placer, XLEN_ANY};
use super::{Core, Policy, Res, Work, CULL_MARK, NOWHERE};
use crate::error::Error;
use crate::table::{CullPlan, Table, VictimWalk};

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
    /// Changed key `i` of the list (empty past the list's capacity: no panic path).
    pub(super) fn dirty_key(&self, i: usize) -> &[u8] {
        listed_key(&self.dirty_keys, &self.dirty_len, i)
    }

    pub(super) fn is_dirty(&self, key: &[u8]) -> bool {
        self.pending_clear || self.dirty_index(key).is_some()
    }

    /// Where `key` is in the list of changed keys.
    fn dirty_index(&self, key: &[u8]) -> Option<usize> {
        (0..self.dirty).find(|&i| same(self.dirty_key(i), key))
    }

    /// Where the latest record of `key` lies on flash, when it is held and unchanged since
    /// the last flush ([`NOWHERE`] else). Taken before a change, for [`Self::mark`].
    #[inline(never)]
    pub(super) fn on_flash(&self, key: &[u8]) -> u32 {
        if self.is_dirty(key) {
            return NOWHERE;
        }
        let slot = self.table.borrow().slot_of(key);
        slot.and_then(|s| self.loc.get(s).copied())
            .unwrap_or(NOWHERE)
    }

    /// Records `key` as changed, its latest record on flash being at `at` (from
    /// [`Self::on_flash`] before the change); the caller made room with [`Self::room`].
    pub(super) fn mark(&mut self, key: &[u8], at: u32) {
        let d = self.dirty;
        if d >= D || key.len() > K || self.dirty_index(key).is_some() {
            return;
        }
        self.dirty_keys[d][..key.len()].copy_from_slice(key);
        self.dirty_len[d] = key.len() as u8;
        self.dirty_loc[d] = at;
        self.dirty = d + 1;
    }

    /// Asks for a flush first ([`Work::Flush`], and [`Error::Settle`]: the operation
    /// changes nothing) when the keys an operation is about to change (`changes`) would not
    /// fit the list, or the batch the list then makes would not fit the flash. The batch
    /// is placed as a flush will write it ([`Self::fits_after`]), so an operation allowed
    /// here never leads to a flush that cannot fit. With nothing listed, a flush would
    /// change nothing: the batch goes alone. Under write-through the list is empty at the
    /// start of every operation unless a flush failed; then it is flushed first whenever
    /// some batch of a full list may not fit the flash (the batch is not placed: its
    /// placement is write-back's, [`WriteBack::fits_after`]).
    pub(super) fn room(&mut self, changes: &[Change<'_>]) -> Res<(), F> {
        let fits = self.dirty + changes.len() <= D
            && (self.list_fits
                || self
                    .write_back
                    .is_some_and(|wb| (wb().fits_after)(self, changes)));
        if !fits && self.dirty() > 0 {
            return self.ask(Work::Flush);
        }
        Ok(())
    }

    /// [`Self::room`] for one change of `key` (`vlen`), then where its latest record lies
    /// ([`Self::on_flash`], for [`Self::mark`]); `None` when it asked for a flush first.
    /// Out of line: the operations that change one key share one copy of the two steps.
    #[inline(never)]
    pub(super) fn room_at(&mut self, key: &[u8], vlen: usize) -> Option<u32> {
        self.room(&[Change { key, vlen }]).ok()?;
        Some(self.on_flash(key))
    }

    /// True when the batch a flush writes after an operation that makes `changes` fits an
    /// empty log: a pending clear, then the changed keys as [`Self::write_batch`] writes
    /// them ([`Self::place_changed`]; a change's value with the longest expiry). Out of
    /// line: the placement's frames are not on an operation's path when any batch of the
    /// list fits ([`Self::list_always_fits`]). Write-back's ([`WriteBack::fits_after`]):
    /// reached through the core's write-back steps only.
    pub(super) fn fits_after(&self, changes: &[Change<'_>]) -> bool {
        let mut pl = self.empty_placer();
        if self.pending_clear {
            pl.place(0, 0, 0);
        }
        self.place_changed(&mut pl, changes);
        pl.ok()
    }

    /// True when the batch of a full list (`D` records of the largest size: a key of `K`
    /// bytes, a value of `V`, the longest expiry) and a clear record fit an empty log of
    /// `log`'s pages in whatever order they are written. A page is left only for a record
    /// that does not fit its rest, so each page left holds more than `cap - m` bytes (`m`
    /// the largest record): `s` bytes take at most `s / (cap - m + 1) + 1` pages. Then no
    /// operation's check has to place the list (most regions: 4 pages of 1 KiB hold any
    /// list of 8 keys of 24 bytes with 16-byte values many times over).
    pub(super) fn list_always_fits(log: &Log<F>) -> bool {
        let m = record_size(K + 2, V, 0, XLEN_ANY, F::WRITE_SIZE) as u64;
        let s = (D as u64 + 1) * m;
        let cap = u64::from(log.cap());
        m <= cap && s / (cap + 1 - m) + 1 < u64::from(log.pages)
    }

    /// Queues `work` and answers [`Error::Settle`]: the operation changed nothing and runs
    /// again once the work is done.
    pub(super) fn ask<R>(&mut self, work: Work) -> Res<R, F> {
        self.work = work;
        Err(Error::Settle)
    }

    /// True when the policy says the changes are to be written now (a pending clear is
    /// written at once under both); may be true with nothing to write
    /// ([`Self::flush_dirty`] then writes nothing).
    pub(crate) fn should_flush(&self) -> bool {
        let max = match self.policy {
            Policy::WriteThrough => 0,
            Policy::WriteBack { max_dirty } => usize::from(max_dirty),
        };
        // With nothing listed, the flush that this asks for changes nothing: no test of
        // that here (write-through asks at every call).
        self.pending_clear || self.dirty >= max.min(D)
    }

    /// The record of changed key `d` as [`Listed::word`] holds it, no batch flags set: the
    /// value of the slot holding it ([`Listed::Held`]), else its tombstone
    /// ([`Listed::Gone`]); 0 (no such word) when it is a victim of the insert writing its
    /// batch (marked). One table lookup for all three: out of line, one copy for a batch's
    /// writer and its placement; the writer appends the word as it is.
    #[inline(never)]
    pub(super) fn held_kept(&self, d: usize) -> usize {
        let what = match self.table.borrow().slot_of(self.dirty_key(d)) {
            Some(s) if self.loc[s] & CULL_MARK != 0 => return 0,
            Some(s) => Listed::Held(s),
            None => Listed::Gone(d),
        };
        what.word(false, false)
    }

    /// Places the changed keys of a batch after an operation that makes `changes`, as
    /// [`Self::write_batch`] writes them: the keys gone in the list's order (keys the
    /// operation adds to the list after those listed), then the keys held likewise. Keys
    /// that are victims of a cull are left out (all are placed in a flush or an
    /// operation's check: no victim is marked then). The body of [`Self::place_kept`]
    /// (no changes: a flush, an insert that culls) and [`Self::place_changed`]
    /// (write-back's check of an operation), inlined into each.
    #[inline(always)]
    fn place_listed(&self, pl: &mut Placer<F>, changes: &[Change<'_>]) {
        for held in 0..2 {
            let held = held == 1;
            // The listed keys, then the changes that are not listed, each with the value
            // length and expiry bytes of its record when the key is held after the changes
            // (`None`: gone): one site places every record.
            for j in 0..self.dirty + changes.len() {
                let (k, state) = if j < self.dirty {
                    if self.dirty_victim(j) {
                        continue;
                    }
                    let k = self.dirty_key(j);
                    let state = match changes.iter().find(|c| same(c.key, k)) {
                        Some(c) => c.state(),
                        None => (self.table.borrow().peek_any(k))
                            .map(|(_, v, _, e)| (v.len(), xlen(e, self.time))),
                    };
                    (k, state)
                } else {
                    match changes.get(j - self.dirty) {
                        Some(c) if self.dirty_index(c.key).is_none() => (c.key, c.state()),
                        _ => continue,
                    }
                };
                if state.is_some() == held {
                    // A value, or a tombstone (no value, no expiry).
                    let (vlen, x) = state.unwrap_or((0, 0));
                    pl.place(key_cost(k), vlen, x);
                }
            }
        }
    }

    /// Places the changed keys of a batch as [`Self::write_batch`] writes them
    /// ([`Self::place_listed`] with no changes). Out of line: a flush and an insert that
    /// culls share one copy.
    #[inline(never)]
    fn place_kept(&self, pl: &mut Placer<F>) {
        self.place_listed(pl, &[]);
    }

    /// [`Self::place_listed`] after an operation that makes `changes`: write-back's
    /// ([`Self::fits_after`]), not linked by a firmware that opens write-through.
    #[inline(never)]
    fn place_changed(&self, pl: &mut Placer<F>, changes: &[Change<'_>]) {
        self.place_listed(pl, changes);
    }

    /// Marks the victims of the cull that an insert of `key` at `now` makes
    /// ([`CULL_MARK`] in their slots' flash addresses), until [`Self::unmark_victims`]:
    /// the cull is decided once, before room is made for its batch.
    pub(super) fn mark_victims(&mut self, key: &[u8], now: u64) {
        let Self { table, loc, .. } = self;
        let t: &Table<N, K, V, S> = (*table).borrow();
        let mut walk = VictimWalk::new(t, t.cull_plan(key), now);
        while let Some(i) = walk.next(t, now) {
            // A slot is below `N` (no panic path).
            if let Some(at) = loc.get_mut(i) {
                *at |= CULL_MARK;
            }
        }
    }

    pub(super) fn unmark_victims(&mut self) {
        for at in &mut self.loc {
            *at &= !CULL_MARK;
        }
    }

    pub(super) fn is_victim(&self, key: &[u8]) -> bool {
        (self.table.borrow().slot_of(key)).is_some_and(|s| self.loc[s] & CULL_MARK != 0)
    }

    /// The key of slot `i` when the cull needs its tombstone (`None` when the slot is no
    /// victim): a changed key's when a flushed record of it lies on flash (its value since is
    /// never written), an unchanged one's when its record lies on flash and it is live at
    /// `now` (an expired one stays expired after a reboot: the batch carries the time).
    pub(super) fn cull_tomb(&self, i: usize, now: u64) -> Option<&[u8]> {
        let at = self.loc.get(i).copied().unwrap_or(NOWHERE);
        if at & CULL_MARK == 0 {
            return None;
        }
        let (k, _, _, e) = self.table.borrow().slot(i);
        let tomb = match self.dirty_index(k) {
            Some(d) => self.dirty_loc.get(d).is_some_and(|&at| at != NOWHERE),
            None => at != CULL_MARK && e > now,
        };
        tomb.then_some(k)
    }

    /// Places the tombstones of the cull whose victims are marked ([`Self::cull_tomb`]).
    /// Inlined into [`Self::place_batch`], its one caller: its walk adds nothing to the
    /// deepest frames on Cortex-M4 or M0.
    #[inline(always)]
    fn place_tombs(&self, pl: &mut Placer<F>, now: u64) {
        for i in 0..N {
            if let Some(k) = self.cull_tomb(i, now) {
                pl.place(key_cost(k), 0, 0);
            }
        }
    }

    /// Places `batch`'s records in the order they are written ([`Self::write_batch`]), each
    /// where it will be written, so the check is exact, not an estimate that another order
    /// could overflow. [`Batch::Small`]: one small record. A flush ([`Batch::Flush`]): a
    /// pending clear, then the changed keys ([`Self::place_kept`]). An insert that culls
    /// ([`Batch::Culling`], victims marked): a clear record, or the tombstones the cull
    /// needs ([`Self::cull_tomb`]) and the changed keys it leaves; then the staged put.
    /// The batches share one site for the clear record. Called by [`Self::placed`] only.
    pub(super) fn place_batch(&self, pl: &mut Placer<F>, batch: Batch<'_>) {
        let clear = match batch {
            Batch::Small => true,
            Batch::Flush => self.pending_clear,
            Batch::Culling(_) => self.table.borrow().insert_clears(),
        };
        if clear {
            pl.place(0, 0, 0);
        }
        match batch {
            Batch::Small => {}
            Batch::Flush => self.place_kept(pl),
            Batch::Culling(s) => {
                // A cull that clears drops every changed key.
                if !clear {
                    self.place_tombs(pl, s.now);
                    self.place_kept(pl);
                }
                pl.place(key_cost(s.key), s.val.len(), xlen(s.expiry, self.time));
            }
        }
    }

    /// Writes every changed key (and a pending clear) as one batch.
    pub(crate) async fn flush_dirty(&mut self, io: &IoOf<F>) -> Res<(), F> {
        if self.dirty() == 0 {
            return Ok(());
        }
        self.reserve(io, Batch::Flush).await?;
        self.write_batch(io, None).await?;
        Ok(())
    }

    /// Writes a batch, in the order its placement placed it (making room changes no listed
    /// key: compaction neither copies nor drops one). For a flush (`put` `None`; the list
    /// is not empty): a pending clear, the changed keys gone, then those held; the list is
    /// then empty and the batch committed ([`Batch::Flush`] in [`Self::place_batch`]). For an
    /// insert that culls (`put` its staged value, the victims marked: [`Work::CullingPut`]):
    /// the cull (one clear record, or the live victims' tombstones: expired ones stay
    /// expired after a reboot), the changed keys it leaves gone then held (the victims'
    /// pending values are never written), then the put, which ends the batch
    /// ([`Batch::Culling`] in [`Self::place_batch`]). The one writer of every batch: out of line, a sibling of
    /// the room-making's frames, its loops' frame one step above the record writer.
    ///
    /// Replayed with a value first, a value of a new key could find the table at its limit
    /// and cull an entry that the batch's tombstone was to make room for (an entry Django's
    /// cull never removed, lost at the next open): so the keys gone come first.
    #[blocking(inline(never))]
    pub(super) async fn write_batch(
        &mut self,
        io: &IoOf<F>,
        put: Option<&Staged<'_>>,
    ) -> Res<(), F> {
        let mut i = 0;
        let clear = match put {
            Some(_) => self.table.borrow().insert_clears(),
            None => self.pending_clear,
        };
        // Three parts, one append site: the clear or the cull's tombstones, the changed
        // keys gone, those held. The first part's count, then the other two's (a cull
        // that clears drops every changed key), and the records of a flush's batch, `n`
        // (0 in a culling batch: only its put ends it).
        let (first, rest, n) = match put {
            Some(_) if clear => (1, 0, 0),
            Some(_) => (N, self.dirty, 0),
            None => (usize::from(clear), self.dirty, self.dirty()),
        };
        for part in 0..3 {
            let count = if part == 0 { first } else { rest };
            for v in 0..count {
                let w = match (part, put) {
                    (0, _) if clear => Listed::Clear.word(false, false),
                    (0, Some(s)) => match self.cull_tomb(v, s.now) {
                        Some(_) => Listed::Victim(v).word(false, false),
                        None => continue,
                    },
                    // The keys gone in part 1, those held in part 2 (their variant bits
                    // follow each other). A victim of the cull is left out (none is marked
                    // in a flush): its word is 0, neither.
                    _ => match self.held_kept(v) {
                        w if w & 7 == Listed::GONE - 1 + part => w,
                        _ => continue,
                    },
                };
                let flags =
                    (usize::from(i == 0) * Listed::START) | (usize::from(i + 1 == n) * Listed::END);
                self.append_word(io, w | flags).await?;
                i += 1;
            }
        }
        self.dirty = 0;
        if let Some(s) = put {
            // The put, as the table now holds it, ends the batch.
            let slot = self.take_culled(s)?;
            self.append_listed(io, Listed::Held(usize::from(slot)), i == 0, true)
                .await?;
            self.culled = true;
        } else {
            self.pending_clear = false;
        }
        self.commits += 1;
        Ok(())
    }

    /// Appends a record of a batch (`start`, `end`: its first, its last): `what`'s record,
    /// through [`Self::append_word`] (the three in one word).
    #[inline(always)]
    pub(super) fn append_listed<'s>(
        &'s mut self,
        io: &'s IoOf<F>,
        what: Listed,
        start: bool,
        end: bool,
    ) -> impl core::future::Future<Output = Res<(), F>> + 's {
        self.append_word(io, what.word(start, end))
    }

    /// [`Self::append_listed`]'s blocking variant.
    #[inline(always)]
    pub(super) fn append_listed_blocking(
        &mut self,
        io: &mut SyncIoOf<'_, F>,
        what: Listed,
        start: bool,
        end: bool,
    ) -> Res<(), F> {
        self.append_word_blocking(io, what.word(start, end))
    }

    /// Appends a record of a batch, or compaction's copy of an entry: the record of the
    /// [`Listed`] in `w` (a held slot's value, else a tombstone; the caller's lookup named
    /// it, so none is made here) with its batch flags ([`Listed::word`]). Out of line, so
    /// the loops writing a batch and compaction's loop keep a small frame above the
    /// writer; its arguments in three registers, so no caller reserves room for more.
    #[blocking(inline(never))]
    pub(super) async fn append_word(&mut self, io: &IoOf<F>, w: usize) -> Res<(), F> {
        let Self {
            table,
            log,
            loc,
            dirty_keys,
            dirty_len,
            time,
            evictions,
            ..
        } = self;
        let t: &Table<N, K, V, S> = (*table).borrow();
        // A tombstone unless said otherwise; the word's batch bits are the tag's own.
        let mut rec = Rec::bare(T_TOMB, w as u8 & (TAG_START | TAG_END), *time);
        // The variant is matched as the word holds it ([`Listed::word`]), not decoded
        // first: the three that name a slot share one arm, one read of the slot.
        let (kind_of, i) = (w & 7, w >> 8);
        let keeps = kind_of == Listed::HELD || kind_of == Listed::COPY;
        match kind_of {
            Listed::CLEAR => rec.set_type(T_CLEAR, 0),
            Listed::TIME => rec.set_type(T_TIME, 0),
            Listed::GONE => rec.key = listed_key(dirty_keys, dirty_len, i),
            // A held slot's value, a victim's tombstone (still held: its record is a
            // tombstone all the same), compaction's copy.
            _ => {
                let (k, v, kind, expiry) = t.slot(i);
                rec.key = k;
                if keeps {
                    rec.set_type(T_PUT, kind as u8);
                    rec.val = v;
                    rec.expiry = expiry;
                }
                if kind_of == Listed::COPY {
                    // At the head page's base time (already on flash), and only when it
                    // fits that page and is not evicted: else the entry goes with the
                    // tail page (durable at once: the page is erased next).
                    rec.time = log.head_base;
                    if w & Listed::EVICT != 0
                        || !log.head_fits(Log::<F>::rec_size(&rec, rec.time) as usize)
                    {
                        (*table).borrow_mut().remove_slot(i);
                        *evictions += 1;
                        return Ok(());
                    }
                }
            }
        }
        let at = log.append(io, &rec).await.map_err(Error::Backend)?;
        if keeps {
            if let Some(at_slot) = loc.get_mut(i) {
                *at_slot = at;
            }
        }
        Ok(())
    }

    /// The tombstones of the live victims of `plan` at `now` that the list does not hold
    /// (they join it in the order of the cull's walk). Out of line: the walk's frame is not
    /// on the frame of every operation's check.
    #[inline(never)]
    fn place_new_victims(&self, pl: &mut Placer<F>, plan: CullPlan, now: u64) {
        self.table
            .borrow()
            .for_each_victim(plan, now, &mut |k, live| {
                if live && self.dirty_index(k).is_none() {
                    pl.place(key_cost(k), 0, 0);
                }
            });
    }

    /// For write-back's insert `s` that culls (`plan`): whether the live victims fit the
    /// list beside the changed keys; whether the batch a flush writes once they and the put
    /// are listed fits the flash; and whether the batch of its own
    /// ([`Work::CullingPut`]: the victims' tombstones, the changed keys, the put) fits it.
    /// Each batch is placed in the order it is written, in a step of its own: the two
    /// placements are siblings under this frame. The victims are marked meanwhile.
    pub(super) fn cull_fits(&mut self, plan: CullPlan, s: &Staged<'_>) -> (bool, bool, bool) {
        let victims = self.live_victims(plan, s.now);
        self.mark_victims(s.key, s.now);
        let listed = self.list_fits || self.fits_listed(plan, s);
        let alone = self.batch_bytes(Batch::Culling(s)).is_some();
        self.unmark_victims();
        (self.dirty + victims < D, listed, alone)
    }

    /// Places changed key `d`'s record for [`Self::fits_listed`] when the key is held
    /// (`held`), or gone, after the put `put` and the cull whose victims are marked. Out of
    /// line: its lookup's frame is not on the placement loop's.
    #[inline(never)]
    fn place_listed_marked(&self, pl: &mut Placer<F>, d: usize, held: bool, put: &Change<'_>) {
        let k = self.dirty_key(d);
        if same(put.key, k) {
            if put.held().is_some() == held {
                put.place(pl);
            }
        } else if self.is_victim(k) {
            if !held {
                pl.place(key_cost(k), 0, 0);
            }
        } else {
            let entry = self.table.borrow().peek_any(k);
            if entry.is_some() == held {
                // A value, or a tombstone (no value, no expiry).
                let (vlen, x) = entry.map_or((0, 0), |(_, v, _, e)| (v.len(), xlen(e, self.time)));
                pl.place(key_cost(k), vlen, x);
            }
        }
    }

    /// The live victims of `plan` at `now`.
    #[inline(never)]
    fn live_victims(&self, plan: CullPlan, now: u64) -> usize {
        let mut victims = 0;
        self.table
            .borrow()
            .for_each_victim(plan, now, &mut |_, live| victims += usize::from(live));
        victims
    }

    /// Whether the batch a flush writes once the live victims of `plan` and the put `s`
    /// are listed fits an empty log, placed as [`Self::fits_after`] places an operation's
    /// changes, with the victims gone: those listed in the list's order, the others after them (they join
    /// the list in the cull's order). Victims marked.
    #[inline(never)]
    fn fits_listed(&self, plan: CullPlan, s: &Staged<'_>) -> bool {
        let put = Change {
            key: s.key,
            vlen: s.val.len(),
        };
        let mut listed = self.empty_placer();
        if self.pending_clear {
            listed.place(0, 0, 0);
        }
        for held in [false, true] {
            for d in 0..self.dirty {
                self.place_listed_marked(&mut listed, d, held, &put);
            }
            if !held {
                self.place_new_victims(&mut listed, plan, s.now);
            } else if self.dirty_index(s.key).is_none() {
                put.place(&mut listed);
            }
        }
        listed.ok()
    }
}

/// Changed key `i` of a list held in `keys` and `lens` (the last past the list's capacity,
/// where no caller asks: no panic path, no branch). Out of line: one copy for every walk of
/// the list and compaction's copy of a changed key (fields of the core, so a caller may
/// hold another field mutably meanwhile). The arrays by reference, their length `D` a
/// constant of the code: three arguments in registers, none on the stack, in a firmware
/// with lists of several sizes too.
#[inline(never)]
pub(super) fn listed_key<'k, const K: usize, const D: usize>(
    keys: &'k [[u8; K]; D],
    lens: &[u8; D],
    i: usize,
) -> &'k [u8] {
    let i = i.min(D.saturating_sub(1));
    match (keys.get(i), lens.get(i)) {
        (Some(k), Some(&l)) => k.get(..usize::from(l)).unwrap_or(k),
        _ => &[],
    }
}

/// The record [`Core::append_word`] appends.
#[derive(Clone, Copy)]
pub(super) enum Listed {
    /// The pending clear (a clear record).
    Clear,
    /// The cache time (a time record, [`Core::flush_all`]'s).
    Time,
    /// The tombstone of changed key `d` of the list (not held).
    Gone(usize),
    /// The value of the entry in slot `i`.
    Held(usize),
    /// The tombstone of the entry in slot `i`, a cull's victim still held.
    Victim(usize),
    /// Compaction's copy of the entry in slot `i` (its value at the head page's base
    /// time), appended only when it fits the head page and [`Listed::EVICT`] is not set
    /// (else the entry is dropped).
    Copy(usize),
}

impl Listed {
    /// [`Listed::word`]'s bit of a batch's first record (the record tag's).
    pub const START: usize = TAG_START as usize;
    /// [`Listed::word`]'s bit of a batch's last record (the record tag's).
    pub const END: usize = TAG_END as usize;
    /// [`Listed::word`]'s variant bits (its low three) of a [`Listed::Clear`].
    const CLEAR: usize = 0;
    /// The variant bits of a [`Listed::Time`].
    const TIME: usize = 1;
    /// The variant bits of a [`Listed::Gone`].
    const GONE: usize = 2;
    /// The variant bits of a [`Listed::Held`]: [`Listed::GONE`]'s next (the batch writer
    /// tells a part's changed keys by the part's number).
    const HELD: usize = 3;
    /// The variant bits of a [`Listed::Victim`].
    const VICTIM: usize = 4;
    /// The variant bits of a [`Listed::Copy`] (read by [`Core::append_word`] with no
    /// decoding: the variants naming a slot, the last three, share one arm there).
    const COPY: usize = 5;
    /// [`Listed::word`]'s bit of a [`Listed::Copy`] whose entry is dropped, not copied.
    pub const EVICT: usize = 1 << 3;

    /// The record in one word with its batch flags (`start`, `end`: [`Listed::START`],
    /// [`Listed::END`], the bits of [`Rec`]'s tag): the index (a slot's, below 65,535, or
    /// a list's, below 256) above the low byte, the variant in the low bits.
    pub fn word(self, start: bool, end: bool) -> usize {
        let (v, i) = match self {
            Listed::Clear => (Self::CLEAR, 0),
            Listed::Time => (Self::TIME, 0),
            Listed::Gone(d) => (Self::GONE, d),
            Listed::Held(i) => (Self::HELD, i),
            Listed::Victim(i) => (Self::VICTIM, i),
            Listed::Copy(i) => (Self::COPY, i),
        };
        (i << 8) | (usize::from(start) * Self::START) | (usize::from(end) * Self::END) | v
    }
}

/// A key an operation is about to change, as the flush's batch will hold it.
#[derive(Clone, Copy)]
pub(crate) struct Change<'a> {
    pub key: &'a [u8],
    /// The value's length when the key is held after the operation ([`Change::GONE`] when
    /// it is gone).
    pub vlen: usize,
}

impl Change<'_> {
    /// The `vlen` of a key gone after the operation.
    pub const GONE: usize = usize::MAX;

    fn held(&self) -> Option<usize> {
        (self.vlen != Self::GONE).then_some(self.vlen)
    }

    /// The value length and expiry bytes of its record when the key is held after the
    /// operation (the longest expiry), `None` when it is gone.
    fn state(&self) -> Option<(usize, usize)> {
        self.held().map(|v| (v, XLEN_ANY))
    }

    /// Places its record: a value (with the longest expiry) or a tombstone.
    fn place<F: Geometry>(&self, pl: &mut Placer<F>) {
        match self.held() {
            Some(v) => pl.place(key_cost(self.key), v, XLEN_ANY),
            None => pl.place(key_cost(self.key), 0, 0),
        }
    }
}
