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
use super::{Core, Policy, Res, Work, NOWHERE};
use crate::error::Error;
use crate::table::{CullPlan, Table};

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
        self.pending_clear || (0..self.dirty).any(|i| same(self.dirty_key(i), key))
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
        for i in 0..self.dirty {
            let k = self.dirty_key(i);
            match self.table.borrow().peek_any(k) {
                Some((v, _, e)) => pl.place(key_cost(k), v.len(), xlen(e, self.time)),
                None => pl.place(key_cost(k), 0, 0),
            }
        }
    }

    /// Writes every changed key (and a pending clear) as one batch.
    pub(crate) async fn flush_dirty(&mut self, io: &IoOf<F>) -> Res<(), F> {
        if self.dirty() == 0 {
            return Ok(());
        }
        self.reserve(io, &|s: &Self, pl: &mut Placer| s.place_dirty(pl))
            .await?;
        let n = self.dirty();
        for i in 0..n {
            self.append_listed(io, i, n).await?;
        }
        self.dirty = 0;
        self.pending_clear = false;
        self.commits += 1;
        Ok(())
    }

    /// Appends the `i`-th of the `n` records of a flush: the pending clear first, then each
    /// changed key's value, or its tombstone when it is gone. Out of line, so the flush's
    /// loop keeps a small frame above the writer.
    #[blocking(inline(never))]
    async fn append_listed(&mut self, io: &IoOf<F>, i: usize, n: usize) -> Res<(), F> {
        let Self {
            table,
            log,
            loc,
            dirty_keys,
            dirty_len,
            time,
            pending_clear,
            ..
        } = self;
        let t: &Table<N, K, V, S> = (*table).borrow();
        let mut rec = Rec::bare(T_CLEAR, i == 0, i + 1 == n, *time);
        let mut slot = None;
        if let Some(d) = i.checked_sub(usize::from(*pending_clear)) {
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

    /// The live victims of `plan` at `now`, and whether the changed keys, their tombstones
    /// and a put (its key taking `kcost` bytes) fit the list and one batch.
    pub(super) fn cull_fits(
        &self,
        plan: CullPlan,
        kcost: usize,
        vlen: usize,
        now: u64,
    ) -> (usize, bool) {
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
        (victims, self.dirty + victims < D && pl.ok)
    }
}
