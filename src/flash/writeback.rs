//! The write-back set: keys changed and not yet on flash, and the flush that writes them
//! (and a pending clear) as one batch. Write-through is the same path with a flush after
//! every operation.

use tickcache_dual::dual;

use core::borrow::BorrowMut;
use core::hash::BuildHasher;

use super::format::{key_cost, key_cost_max, same, Rec, T_CLEAR, T_PUT, T_TOMB};
use super::io::Geometry;
use super::log::{IoOf, SyncIoOf};
use super::space::{xlen, Placer, XLEN_ANY};
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
    pub(super) fn dirty_key(&self, i: usize) -> &[u8] {
        &self.dirty_keys[i][..usize::from(self.dirty_len[i])]
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
        match self.table.borrow().slot_of(key) {
            Some(s) if !self.is_dirty(key) => self.loc[s],
            _ => NOWHERE,
        }
    }

    /// Records `key` as changed, its latest record on flash being at `at` (from
    /// [`Self::on_flash`] before the change); the caller made room with [`Self::room`].
    pub(super) fn mark(&mut self, key: &[u8], at: u32) {
        if (0..self.dirty).any(|i| same(self.dirty_key(i), key)) || key.len() > K {
            return;
        }
        if self.dirty < D {
            self.dirty_keys[self.dirty][..key.len()].copy_from_slice(key);
            self.dirty_len[self.dirty] = key.len() as u8;
            self.dirty_loc[self.dirty] = at;
            self.dirty += 1;
        }
    }

    /// Asks for a flush first ([`Work::Flush`], and [`Error::Settle`]: the operation
    /// changes nothing) when `keys` more changed keys (or a put of `klen` + `vlen` bytes)
    /// would not fit the list or one batch.
    pub(super) fn room(&mut self, keys: usize, put: Option<(usize, usize)>) -> Res<(), F> {
        let fits = self.dirty + keys <= D && {
            let mut pl = self.empty_placer();
            self.place_dirty(&mut pl);
            for _ in 0..keys {
                let (k, v) = put.unwrap_or((K, 0));
                pl.place(key_cost_max(k), v, XLEN_ANY);
            }
            pl.ok
        };
        // With nothing listed, a flush would change nothing: the batch goes alone.
        if !fits && self.dirty() > 0 {
            return self.ask(Work::Flush);
        }
        Ok(())
    }

    /// Queues `work` and answers [`Error::Settle`]: the operation changed nothing and runs
    /// again once the work is done.
    pub(super) fn ask<R>(&mut self, work: Work) -> Res<R, F> {
        self.work = work;
        Err(Error::Settle)
    }

    /// True when the policy says the changes are to be written now (a pending clear is
    /// written at once under both).
    pub(crate) fn should_flush(&self) -> bool {
        let max = match self.policy {
            Policy::WriteThrough => 0,
            Policy::WriteBack { max_dirty } => usize::from(max_dirty),
        };
        self.pending_clear || (self.dirty() > 0 && self.dirty() >= max.min(D))
    }

    pub(super) fn place_dirty(&self, pl: &mut Placer) {
        if self.pending_clear {
            pl.place(0, 0, 0);
        }
        for d in 0..self.dirty {
            self.place_changed(pl, d);
        }
    }

    /// Places changed key `d`'s record: its value, or its tombstone when it is gone.
    fn place_changed(&self, pl: &mut Placer, d: usize) {
        let k = self.dirty_key(d);
        match self.table.borrow().peek_any(k) {
            Some((v, _, e)) => pl.place(key_cost(k), v.len(), xlen(e, self.time)),
            None => pl.place(key_cost(k), 0, 0),
        }
    }

    /// Marks the victims of the cull that an insert of `key` at `now` makes
    /// ([`CULL_MARK`] in their slots' flash addresses), until [`Self::unmark_victims`]:
    /// the cull is decided once, before room is made for its batch.
    pub(super) fn mark_victims(&mut self, key: &[u8], now: u64) {
        let Self { table, loc, .. } = self;
        let t: &Table<N, K, V, S> = (*table).borrow();
        let mut walk = VictimWalk::new(t, t.cull_plan(key), now);
        while let Some(i) = walk.next(t, now) {
            loc[i] |= CULL_MARK;
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

    /// Whether the cull of slot `i` needs a tombstone (false when the slot is no victim):
    /// a changed key's when a flushed record of it lies on flash (its value since is never
    /// written), an unchanged one's when its record lies on flash and it is live at `now`
    /// (an expired one stays expired after a reboot: the batch carries the time).
    pub(super) fn cull_tomb(&self, i: usize, now: u64) -> bool {
        if self.loc[i] & CULL_MARK == 0 {
            return false;
        }
        let (k, _, _, e) = self.table.borrow().slot(i);
        match self.dirty_index(k) {
            Some(d) => self.dirty_loc[d] != NOWHERE,
            None => self.loc[i] != CULL_MARK && e > now,
        }
    }

    /// Places the batch of an insert that culls ([`Work::CullingPut`], victims marked): a
    /// clear record, or the tombstones the cull needs ([`Self::cull_tomb`]) and the changed
    /// keys it leaves; then the put of `key` (`vlen` value bytes, expiring at `expiry`).
    pub(super) fn place_culling(
        &self,
        pl: &mut Placer,
        key: &[u8],
        vlen: usize,
        expiry: u64,
        now: u64,
    ) {
        let t = self.table.borrow();
        if t.cull_plan(key) == CullPlan::Clear {
            pl.place(0, 0, 0);
        } else {
            for i in 0..N {
                if self.cull_tomb(i, now) {
                    pl.place(key_cost(t.slot(i).0), 0, 0);
                }
            }
            for d in 0..self.dirty {
                if !self.is_victim(self.dirty_key(d)) {
                    self.place_changed(pl, d);
                }
            }
        }
        pl.place(key_cost(key), vlen, xlen(expiry, self.time));
    }

    /// Writes every changed key (and a pending clear) as one batch.
    pub(crate) async fn flush_dirty(&mut self, io: &IoOf<F>) -> Res<(), F> {
        if self.dirty() == 0 {
            return Ok(());
        }
        // Ordered before room is made: the batch is placed in the order it is written.
        self.tombstones_first();
        self.reserve(io, &|s: &Self, pl: &mut Placer| s.place_dirty(pl))
            .await?;
        let n = self.dirty();
        let clear = usize::from(self.pending_clear);
        for i in 0..n {
            self.append_listed(io, i.checked_sub(clear), i == 0, i + 1 == n)
                .await?;
        }
        self.dirty = 0;
        self.pending_clear = false;
        self.commits += 1;
        Ok(())
    }

    /// Orders the list so that the keys gone come before the keys held: a batch writes its
    /// tombstones before its values. Called before the batch's room is made (placing the
    /// records in another order than they are written could need another page), and
    /// making room changes no listed key: compaction neither copies nor drops one. Replayed the other way, a value of a new key could
    /// find the table at its limit and cull an entry that the batch's tombstone was to make
    /// room for (an entry Django's cull never removed, lost at the next open).
    pub(super) fn tombstones_first(&mut self) {
        let mut w = 0;
        for i in 0..self.dirty {
            if self.table.borrow().peek_any(self.dirty_key(i)).is_none() {
                if w < i {
                    // Byte by byte (`swap` of whole rows links `memmove`).
                    let (head, tail) = self.dirty_keys.split_at_mut(i);
                    head[w].swap_with_slice(&mut tail[0]);
                    self.dirty_len.swap(w, i);
                    self.dirty_loc.swap(w, i);
                }
                w += 1;
            }
        }
    }

    /// Appends a record of a batch (`start`, `end`: its first, its last): changed key `d`'s
    /// value, or its tombstone when it is gone; with no `d`, the pending clear. Out of
    /// line, so the flush's loop keeps a small frame above the writer.
    #[blocking(inline(never))]
    pub(super) async fn append_listed(
        &mut self,
        io: &IoOf<F>,
        d: Option<usize>,
        start: bool,
        end: bool,
    ) -> Res<(), F> {
        let Self {
            table,
            log,
            loc,
            dirty_keys,
            dirty_len,
            time,
            ..
        } = self;
        let t: &Table<N, K, V, S> = (*table).borrow();
        let mut rec = Rec::bare(T_CLEAR, start, end, *time);
        let mut slot = None;
        if let Some(d) = d {
            let k = &dirty_keys[d][..usize::from(dirty_len[d])];
            rec.key = k;
            rec.ty = T_TOMB;
            if let Some((v, kind, expiry)) = t.peek_any(k) {
                rec.ty = T_PUT;
                rec.val = v;
                rec.kind = kind as u8;
                rec.expiry = expiry;
                slot = t.slot_of(k);
            }
        }
        let at = log.append(io, &rec).await.map_err(Error::Backend)?;
        if let Some(s) = slot {
            loc[s] = at;
        }
        Ok(())
    }

    /// Whether the live victims of `plan` at `now` fit the list beside the changed keys,
    /// and whether those keys, the victims' tombstones and a put (its key taking `kcost`
    /// bytes) fit one batch.
    pub(super) fn cull_fits(
        &self,
        plan: CullPlan,
        kcost: usize,
        vlen: usize,
        now: u64,
    ) -> (bool, bool) {
        let mut victims = 0;
        let mut pl = self.empty_placer();
        self.place_dirty(&mut pl);
        self.table
            .borrow()
            .for_each_victim(plan, now, &mut |k, live| {
                if live {
                    victims += 1;
                    pl.place(key_cost(k), 0, 0);
                }
            });
        pl.place(kcost, vlen, XLEN_ANY);
        (self.dirty + victims < D, pl.ok)
    }
}
