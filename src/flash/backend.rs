//! The [`Backend`] implementation: each operation changes the table and logs the change
//! (at once under write-through, at the next flush under write-back).

use core::borrow::BorrowMut;
use core::hash::BuildHasher;

use embedded_storage::nor_flash::NorFlash;

use super::format::{key_cost, T_CLEAR, T_PUT, T_TIME, T_TOMB};
use super::space::{xlen, Placer};
use super::{widen, Fe, Persistent, Policy, Res, NOWHERE};
use crate::backend::{Backend, Put};
use crate::error::Error;
use crate::key::KeyError;
use crate::memcached::Store;
use crate::table::{CullPlan, Table};
use crate::value::Kind;

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
    pub(super) fn see(&mut self, now: u64) {
        self.time = self.time.max(now);
    }

    /// Logs the lazy removal of `key` when it is held but expired at `now`.
    pub(super) fn note_expired(&mut self, key: &[u8], now: u64) -> Res<bool, F> {
        let expired = matches!(self.table.borrow().peek_any(key), Some((_, _, e)) if e <= now);
        if expired {
            self.make_room(1, None)?;
        }
        Ok(expired)
    }

    /// Before a read at `now`: drops `key` when it is held but expired, and logs that
    /// (true then). Not generic, so the typed reads share it.
    #[inline(never)]
    fn drop_expired(&mut self, key: &[u8], now: u64) -> Res<bool, F> {
        self.see(now);
        if !self.note_expired(key, now)? {
            return Ok(false);
        }
        let at = self.on_flash(key);
        let _ = self.table.borrow_mut().delete(key, now);
        self.mark(key, at);
        self.settle()?;
        Ok(true)
    }

    /// An insert that culls more keys than the list holds: one batch written directly.
    pub(super) fn put_culling(
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
            match s.table.borrow().cull_plan(key) {
                CullPlan::Clear => pl.place(0, 0, 0),
                plan => s.table.borrow().for_each_victim(plan, now, &mut |k, live| {
                    if live {
                        pl.place(key_cost(k), 0, 0);
                    }
                }),
            }
            pl.place(key_cost(key), vlen, xlen(expiry, s.time));
        })?;
        let time = self.time;
        let Self { table, log, .. } = self;
        let table: &mut Table<N, K, V, S> = table.borrow_mut();
        let plan = table.cull_plan(key);
        let mut first = true;
        let mut err = None;
        // The log records exactly the live entries the table removes (expired ones need
        // no record: they stay expired after a reboot), or one clear record.
        table.apply_cull(plan, now, &mut |k, live| {
            if live && plan != CullPlan::Clear && err.is_none() {
                err = log.append(T_TOMB, first, false, 0, k, &[], time, 0).err();
                first = false;
            }
        });
        if let Some(e) = err {
            return Err(Error::Backend(e));
        }
        if plan == CullPlan::Clear {
            log.append(T_CLEAR, true, false, 0, &[], &[], time, 0)
                .map_err(Error::Backend)?;
            first = false;
        }
        table
            .put_bytes(key, expiry, now, staged, kind)
            .map_err(widen)?;
        let at = log
            .append(T_PUT, first, true, kind as u8, key, staged, time, expiry)
            .map_err(Error::Backend)?;
        if let Some(s) = table.slot_of(key) {
            self.loc[s] = at;
        }
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
        T: BorrowMut<Table<N, K, V, S>>,
    > Backend for Persistent<F, N, K, V, D, S, T>
{
    type Error = Fe<F>;

    fn get<R>(
        &mut self,
        key: &[u8],
        now: u64,
        read: impl FnOnce(&[u8], Kind) -> R,
    ) -> Result<Option<R>, Error<Self::Error>> {
        if self.drop_expired(key, now)? {
            return Ok(None);
        }
        self.table.borrow_mut().get(key, now, read).map_err(widen)
    }

    fn has_key(&mut self, key: &[u8], now: u64) -> Result<bool, Error<Self::Error>> {
        if self.drop_expired(key, now)? {
            return Ok(false);
        }
        self.table.borrow_mut().has_key(key, now).map_err(widen)
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
        let held = self.table.borrow().peek_any(key).map(|(_, _, e)| e);
        if mode == Put::Add && held.is_some_and(|e| e > now) {
            return Ok(false);
        }
        let mut staged = [0u8; V];
        let filled = match fill(&mut staged) {
            Ok((len, _)) if len > V => Err(Error::ValueTooLarge),
            Ok((len, _)) if !self.fits_alone(key_cost(key), len) => Err(Error::StorageFull),
            other => other,
        };
        let (len, kind) = match filled {
            Ok(x) => x,
            Err(e) => {
                // Never leave a stale value readable: the key goes.
                if held.is_some() {
                    self.make_room(1, None)?;
                    let at = self.on_flash(key);
                    let _ = self.table.borrow_mut().delete(key, now);
                    self.mark(key, at);
                    self.settle()?;
                }
                return Err(e);
            }
        };
        let mut plan = self.table.borrow().cull_plan(key);
        if plan != CullPlan::None {
            // Under write-back, the tombstones of the cull join the list when they fit it.
            let mut listed = false;
            if matches!(self.policy, Policy::WriteBack { .. }) {
                let (victims, fits) = self.cull_fits(plan, key_cost(key), len, now);
                listed = victims < D && fits;
                if victims < D && !fits {
                    self.flush_dirty()?;
                    // Making room may have dropped entries: decide the cull again.
                    plan = self.table.borrow().cull_plan(key);
                    listed = self.cull_fits(plan, key_cost(key), len, now).1;
                }
            }
            if !listed {
                self.put_culling(key, expiry, now, &staged[..len], kind)?;
                return Ok(true);
            }
            // The victims join the list (as tombstones), each with its latest record.
            let Self {
                table,
                loc,
                dirty_keys,
                dirty_len,
                dirty_loc,
                dirty,
                ..
            } = self;
            let table: &mut Table<N, K, V, S> = table.borrow_mut();
            let t = &*table;
            t.for_each_victim(plan, now, &mut |k, live| {
                let listed = (0..*dirty).any(|d| &dirty_keys[d][..usize::from(dirty_len[d])] == k);
                if live && !listed && *dirty < D {
                    dirty_keys[*dirty][..k.len()].copy_from_slice(k);
                    dirty_len[*dirty] = k.len() as u8;
                    dirty_loc[*dirty] = t.slot_of(k).map_or(NOWHERE, |s| loc[s]);
                    *dirty += 1;
                }
            });
            table.apply_cull(plan, now, &mut |_, _| {});
        } else {
            self.make_room(1, Some((key.len(), len)))?;
        }
        // Under write-back, a set that changes nothing is not written again.
        let same = matches!(self.table.borrow().peek_any(key),
            Some((v, k, e)) if v == &staged[..len] && k == kind && e == expiry);
        let at = self.on_flash(key);
        let unchanged = same && at != NOWHERE && matches!(self.policy, Policy::WriteBack { .. });
        self.table
            .borrow_mut()
            .put_bytes(key, expiry, now, &staged[..len], kind)
            .map_err(widen)?;
        if !unchanged {
            self.mark(key, at);
        }
        self.settle()?;
        Ok(true)
    }

    fn touch(&mut self, key: &[u8], expiry: u64, now: u64) -> Result<bool, Error<Self::Error>> {
        self.see(now);
        let vlen = match self.table.borrow().peek(key, now) {
            Some((v, _, _)) => v.len(),
            None => return Ok(false),
        };
        self.make_room(1, Some((key.len(), vlen)))?;
        let at = self.on_flash(key);
        let touched = self
            .table
            .borrow_mut()
            .touch(key, expiry, now)
            .map_err(widen)?;
        if touched {
            self.mark(key, at);
            self.settle()?;
        }
        Ok(touched)
    }

    fn delete(&mut self, key: &[u8], now: u64) -> Result<bool, Error<Self::Error>> {
        self.see(now);
        if self.table.borrow().peek_any(key).is_none() {
            return Ok(false);
        }
        self.make_room(1, None)?;
        let at = self.on_flash(key);
        let live = self.table.borrow_mut().delete(key, now).map_err(widen)?;
        self.mark(key, at);
        self.settle()?;
        Ok(live)
    }

    fn incr(&mut self, key: &[u8], delta: i64, now: u64) -> Result<i64, Error<Self::Error>> {
        self.see(now);
        if self.table.borrow().peek_any(key).is_none() {
            return Err(Error::NotFound);
        }
        self.make_room(1, Some((key.len(), V)))?;
        let at = self.on_flash(key);
        let r = self.table.borrow_mut().incr(key, delta, now);
        match r {
            Ok(_) | Err(Error::NotFound) => {
                self.mark(key, at);
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
        let vlen = match self.table.borrow().peek_any(from) {
            Some((v, _, _)) => v.len(),
            None => return Ok(false),
        };
        self.make_room(2, Some((K, vlen)))?;
        let (at_from, at_to) = (self.on_flash(from), self.on_flash(to));
        let moved = self
            .table
            .borrow_mut()
            .rekey(from, to, expiry, now)
            .map_err(widen)?;
        self.mark(from, at_from);
        if moved {
            self.mark(to, at_to);
        }
        self.settle()?;
        Ok(moved)
    }

    /// Under both policies the clear is written at once (one small record): the changed
    /// keys it drops are not written, and no older record has to be kept for them.
    fn clear(&mut self) -> Result<(), Error<Self::Error>> {
        // Room for the clear record first, while RAM still mirrors the flash: a compaction
        // here copies the live entries, so a power cut before the record lands leaves the
        // cache as it was (compacting after the table is emptied would drop them).
        self.reserve(&|_: &Self, pl: &mut Placer| pl.place(0, 0, 0))?;
        let _ = self.table.borrow_mut().clear();
        self.dirty = 0;
        self.pending_clear = true;
        self.flush_dirty()
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

    fn flush_at(&mut self, now: u64) -> Result<(), Error<Self::Error>> {
        self.see(now);
        self.flush()
    }

    fn len(&self) -> usize {
        self.table.borrow().len()
    }
}

/// The memcached engine runs on a persistent table too: reads come from RAM.
impl<
        F: NorFlash,
        const N: usize,
        const K: usize,
        const V: usize,
        const D: usize,
        S: BuildHasher,
        T: BorrowMut<Table<N, K, V, S>>,
    > Store for Persistent<F, N, K, V, D, S, T>
{
    fn peek(&self, key: &[u8], now: u64) -> Option<(&[u8], Kind, u64)> {
        self.table.borrow().peek(key, now)
    }
}

#[cfg(all(test, feature = "_mock"))]
mod tests {
    use super::super::log::{Committed, Pos};
    use super::super::{MockFlash, Persistent, Policy};
    use crate::backend::{Backend, Put};
    use crate::flash::format::{T_CLEAR, T_TOMB};
    use crate::table::Table;
    use crate::value::Kind;

    type P = Persistent<MockFlash<32, 1024, 4>, 8, 8, 4>;

    /// What the log's records from the `skip`-th on remove: tombstoned keys, and whether a
    /// clear record is among them. Also returns the number of records.
    fn logged(p: &mut P, skip: usize) -> (Vec<Vec<u8>>, bool, usize) {
        let mut it = Committed::new(&p.log, Pos::START);
        let (mut tombs, mut clear, mut n) = (Vec::new(), false, 0);
        let mut key = [0u8; 8];
        while let Some((at, r)) = it.next(&mut p.log).unwrap() {
            n += 1;
            if n <= skip {
                continue;
            }
            if r.ty() == T_CLEAR {
                clear = true;
            }
            if r.ty() == T_TOMB {
                assert!(p.log.read_body(at, &r, &mut key, &mut []).unwrap());
                tombs.push(key[..usize::from(r.klen)].to_vec());
            }
        }
        tombs.sort();
        (tombs, clear, n)
    }

    fn live(p: &P, now: u64) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        p.table().for_each_lru(|k, _, _, e| {
            if e > now {
                keys.push(k.to_vec());
            }
        });
        keys.sort();
        keys
    }

    /// Every culling insert, under both policies and every kind of plan (clear, one entry,
    /// sweep), logs a tombstone for exactly the live entries the table removed (or one
    /// clear record, when it removed them all).
    #[test]
    fn the_log_records_exactly_the_entries_a_cull_removes() {
        for freq in [0u16, 1, 2, 3, 6] {
            for policy in [Policy::WriteThrough, Policy::WriteBack { max_dirty: 4 }] {
                let table = Table::<8, 8, 4>::with_culling(6, freq);
                let mut p = P::open(MockFlash::new(), 0..32 * 1024, table, policy).unwrap();
                let mut culls = 0;
                for i in 0u64..120 {
                    let now = 100 + i * 3;
                    p.flush().unwrap();
                    let before = live(&p, now);
                    let (_, _, skip) = logged(&mut p, 0);
                    let key = [
                        b'k',
                        b'0' + (i * 7 % 23) as u8 / 10,
                        b'0' + (i * 7 % 23) as u8 % 10,
                    ];
                    // Some entries expire soon, so sweeps find expired ones too.
                    let expiry = if i % 3 == 0 { now + 5 } else { now + 10_000 };
                    let culled = p.table().cull_plan(&key) != super::CullPlan::None;
                    p.put(&key, Put::Set, expiry, now, |dst| {
                        dst[..2].copy_from_slice(&[i as u8, 1]);
                        Ok((2, Kind::Bytes))
                    })
                    .unwrap();
                    p.flush().unwrap();
                    if !culled {
                        continue;
                    }
                    culls += 1;
                    let after = live(&p, now);
                    let mut removed: Vec<Vec<u8>> = before
                        .iter()
                        .filter(|k| !after.contains(k))
                        .cloned()
                        .collect();
                    removed.sort();
                    let (tombs, clear, _) = logged(&mut p, skip);
                    if freq == 0 {
                        assert!(clear && tombs.is_empty() || !clear && tombs == removed);
                        assert_eq!(after, vec![key.to_vec()]);
                    } else {
                        assert!(!clear);
                        assert_eq!(tombs, removed, "freq {freq}, {policy:?}, insert {i}");
                    }
                }
                assert!(culls > 10, "freq {freq}: {culls} culls");
                // No compaction ran, so counting records located each insert's batch.
                assert_eq!(p.log.tail, 0);
            }
        }
    }
}
