//! The write-back set: keys changed and not yet on flash, and the flush that writes them
//! (and a pending clear) as one batch. Write-through is the same path with a flush after
//! every operation.

use core::borrow::BorrowMut;
use core::hash::BuildHasher;

use embedded_storage::nor_flash::NorFlash;

use super::format::{key_cost, key_cost_max, T_CLEAR, T_PUT, T_TOMB};
use super::space::{xlen, Placer, XLEN_ANY};
use super::{Persistent, Policy, Res, NOWHERE};
use crate::error::Error;
use crate::table::{CullPlan, Table};

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
    pub(super) fn dirty_key(&self, i: usize) -> &[u8] {
        &self.dirty_keys[i][..usize::from(self.dirty_len[i])]
    }

    pub(super) fn is_dirty(&self, key: &[u8]) -> bool {
        self.pending_clear || (0..self.dirty).any(|i| self.dirty_key(i) == key)
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
    /// [`Self::on_flash`] before the change); the caller made room with [`Self::make_room`].
    pub(super) fn mark(&mut self, key: &[u8], at: u32) {
        if (0..self.dirty).any(|i| self.dirty_key(i) == key) || key.len() > K {
            return;
        }
        if self.dirty < D {
            self.dirty_keys[self.dirty][..key.len()].copy_from_slice(key);
            self.dirty_len[self.dirty] = key.len() as u8;
            self.dirty_loc[self.dirty] = at;
            self.dirty += 1;
        }
    }

    /// Flushes first when `keys` more changed keys (or a put of `klen` + `vlen` bytes)
    /// would not fit the list or one batch.
    pub(super) fn make_room(&mut self, keys: usize, put: Option<(usize, usize)>) -> Res<(), F> {
        let fits = self.dirty + keys <= D && {
            let mut pl = self.empty_placer();
            self.place_dirty(&mut pl);
            for _ in 0..keys {
                let (k, v) = put.unwrap_or((K, 0));
                pl.place(key_cost_max(k), v, XLEN_ANY);
            }
            pl.ok
        };
        if !fits {
            self.flush_dirty()?;
        }
        Ok(())
    }

    /// Writes the changes when the policy says so.
    pub(super) fn settle(&mut self) -> Res<(), F> {
        let max = match self.policy {
            Policy::WriteThrough => 0,
            Policy::WriteBack { max_dirty } => usize::from(max_dirty),
        };
        if self.dirty() > 0 && self.dirty() >= max.min(D) {
            self.flush_dirty()?;
        }
        Ok(())
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
    pub(super) fn flush_dirty(&mut self) -> Res<(), F> {
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
            match self.table.borrow().peek_any(k) {
                Some((v, kind, expiry)) => {
                    let vl = v.len();
                    val[..vl].copy_from_slice(v);
                    let at = self
                        .log
                        .append(T_PUT, start, end, kind as u8, k, &val[..vl], time, expiry)
                        .map_err(Error::Backend)?;
                    if let Some(s) = self.table.borrow().slot_of(k) {
                        self.loc[s] = at;
                    }
                }
                None => {
                    self.log
                        .append(T_TOMB, start, end, 0, k, &[], time, 0)
                        .map_err(Error::Backend)?;
                }
            }
            i += 1;
        }
        self.dirty = 0;
        self.pending_clear = false;
        self.commits += 1;
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
