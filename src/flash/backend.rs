//! The operations: each changes the table and lists the change (the write-back set), in
//! RAM only ([`Core`]'s synchronous methods); the list reaches flash at once under
//! write-through, at the next flush under write-back. An operation that needs storage work
//! before it can change anything (the list or one batch would overflow, room for a clear
//! record, an insert culling more entries than the list holds) changes nothing, queues
//! the work ([`Work`]) and answers [`Error::Settle`]; the front end performs the work and
//! runs it again. The blocking front end ([`Persistent`]'s [`Backend`]) is here.

use tickcache_dual::dual;

use core::borrow::BorrowMut;
use core::hash::BuildHasher;

use embedded_storage::nor_flash::NorFlash;

use super::format::{key_cost, same};
use super::io::{Geometry, SyncIo};
use super::log::{IoOf, SyncIoOf};
use super::space::Batch;
use super::writeback::{Change, Listed};
use super::{widen, Core, FeOf, Persistent, Policy, Res, Work, CULL_MARK, NOWHERE};
use crate::backend::{Backend, Put, EXPIRED};
use crate::error::Error;
use crate::key::KeyError;
use crate::memcached::Store;
use crate::table::{CullPlan, Table};
use crate::value::Kind;

/// What [`Core::list_cull`] did with an insert's cull.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listing {
    /// The victims joined the list and the table dropped them.
    Listed,
    /// The list is to be flushed first.
    FlushFirst,
    /// The cull and the put go as one batch of their own ([`Work::CullingPut`]).
    Alone,
}

/// Write-back's steps, reached through the core's `write_back` field, so a firmware that
/// opens write-through links none of them ([`Core::write_back_for`]).
pub(crate) struct WriteBack<F, const N: usize, const K: usize, const V: usize, const D: usize, S, T>
{
    /// The step of an insert that culls ([`Core::list_cull`]).
    pub list_cull: fn(&mut Core<F, N, K, V, D, S, T>, CullPlan, &Staged<'_>) -> Listing,
    /// An operation's check that the batch a flush writes after its changes fits
    /// ([`Core::fits_after`]).
    pub fits_after: fn(&Core<F, N, K, V, D, S, T>, &[Change<'_>]) -> bool,
}

/// The type of the core's write-back steps: a function answering them ([`WriteBack`]),
/// one word.
pub(crate) type WriteBackFn<
    F,
    const N: usize,
    const K: usize,
    const V: usize,
    const D: usize,
    S,
    T,
> = fn() -> WriteBack<F, N, K, V, D, S, T>;

/// A put staged by a front end for [`Work::CullingPut`]: the work writes it whole.
#[derive(Clone, Copy)]
pub(crate) struct Staged<'a> {
    pub key: &'a [u8],
    pub val: &'a [u8],
    pub kind: Kind,
    pub expiry: u64,
    pub now: u64,
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
    /// Notes cache time `now`. Out of line: every operation's first step shares one copy
    /// (and `incr_version`'s frame, the deepest of the calls that do not compact, is 8
    /// bytes smaller on Cortex-M4 than with it inlined).
    #[inline(never)]
    pub(super) fn see(&mut self, now: u64) {
        self.time = self.time.max(now);
    }

    /// Drops `key` at `now` when it is held (with `expired`, only when it has expired: a
    /// read's first step) and lists that: true when it was live (with `expired`: it is
    /// held and live, so a read or `has_key` needs no lookup of its own).
    pub(crate) fn drop_key(&mut self, key: &[u8], now: u64, expired: bool) -> Res<bool, F> {
        self.change(key, now, expired, EXPIRED)
    }

    /// The one body of [`Core::drop_key`] and [`Backend::touch`]: with `set` [`EXPIRED`],
    /// drops `key` as `drop_key` does; else gives it expiry `set` when it is live (true)
    /// and leaves it alone otherwise (false). Inlined into the blocking front end's one
    /// copy of it run to its end (`Persistent::change`), which every read, delete and
    /// touch share.
    pub(super) fn change(&mut self, key: &[u8], now: u64, expired: bool, set: u64) -> Res<bool, F> {
        self.see(now);
        let touch = set != EXPIRED;
        let (i, vlen, live) = match self.table.borrow().peek_any(key) {
            Some((i, v, _, e)) => (i, v.len(), e > now),
            None => return Ok(false),
        };
        // Nothing to change: a touch of an entry that is not live, or the read before a get
        // of one that is.
        if if touch { !live } else { expired && live } {
            return Ok(live);
        }
        let vlen = if touch { vlen } else { Change::GONE };
        let Some(at) = self.room_at(key, vlen) else {
            return Err(Error::Settle);
        };
        self.mark(key, at);
        // Held in slot `i` above and unchanged since (`room_at` and `mark` change no entry):
        // the table changes that slot.
        let table = self.table.borrow_mut();
        if touch {
            table.set_expiry(i, set);
        } else {
            table.remove_slot(i);
        }
        Ok(live)
    }

    /// The first part of a put: `Ok(None)` when it is refused (an `add` of a live key),
    /// else the expiry of the entry held (live or not).
    pub(crate) fn put_gate(
        &mut self,
        key: &[u8],
        mode: Put,
        now: u64,
    ) -> Res<Option<Option<u64>>, F> {
        self.see(now);
        if key.len() > K {
            return Err(Error::Key(KeyError::OverCapacity));
        }
        let held = self.table.borrow().peek_any(key).map(|(_, _, _, e)| e);
        if mode == Put::Add && held.is_some_and(|e| e > now) {
            return Ok(None);
        }
        Ok(Some(held))
    }

    /// What `fill` gave, checked: the value fits `V` and one record of it fits the flash.
    pub(crate) fn put_filled(
        &self,
        key: &[u8],
        filled: Res<(usize, Kind), F>,
    ) -> Res<(usize, Kind), F> {
        match filled {
            Ok((len, _)) if len > V => Err(Error::ValueTooLarge),
            Ok((len, _)) if !self.fits_alone(key_cost(key), len) => Err(Error::StorageFull),
            other => other,
        }
    }

    /// Stores the staged value `s`. An insert that culls more entries than the list holds
    /// asks for [`Work::CullingPut`].
    #[inline(never)]
    pub(crate) fn put_staged(&mut self, s: &Staged<'_>) -> Res<(), F> {
        let plan = self.table.borrow().cull_plan(s.key);
        let at = if plan != CullPlan::None {
            // Under write-back, the tombstones of the cull join the list when they fit it
            // (`list_cull`, linked only when `open` was given a write-back policy); else
            // one batch of its own writes the cull and the put.
            match self.write_back.map(|wb| (wb().list_cull)(self, plan, s)) {
                Some(Listing::Listed) => {}
                Some(Listing::FlushFirst) => return self.ask(Work::Flush),
                _ => return self.ask(Work::CullingPut),
            }
            // A cull is planned for a key that is not held: no record of it on flash.
            NOWHERE
        } else {
            let Some(at) = self.room_at(s.key, s.val.len()) else {
                return Err(Error::Settle);
            };
            at
        };
        self.put_at(s, at)
    }

    /// The RAM part of [`Self::put_staged`], once there is room: the table takes the put
    /// and the list the key (`at`: its latest record on flash). Out of line: the table's
    /// arguments are not on the frame above the cull's placements.
    #[inline(never)]
    fn put_at(&mut self, s: &Staged<'_>, at: u32) -> Res<(), F> {
        // A set that leaves the key as its latest record on flash has it (value, kind and
        // expiry) is not written again, under either policy: no wear for a value rewritten
        // unchanged. Only its recency after a reboot differs (the log's order).
        let unchanged = at != NOWHERE
            && matches!(self.table.borrow().peek_any(s.key),
                Some((_, v, k, e)) if k == s.kind && e == s.expiry && same(v, s.val));
        self.put_table(s)?;
        if !unchanged {
            self.mark(s.key, at);
        }
        Ok(())
    }

    /// Write-back's step of an insert that culls (`plan`): the cull's live victims join
    /// the list as tombstones, each with its latest record, and the table drops them, when
    /// they fit the list and one batch with the changed keys and the put. When the list,
    /// the tombstones and the put do not fit one batch, the list is flushed first (the
    /// cull is decided again then: making room may have dropped entries). Reached through
    /// the core's write-back steps ([`WriteBack`]), so a write-through firmware does not
    /// link it.
    fn list_cull(&mut self, plan: CullPlan, s: &Staged<'_>) -> Listing {
        let now = s.now;
        let (list_fits, listed_fits, alone_fits) = self.cull_fits(plan, s);
        // A pending clear is written by a flush only.
        if self.pending_clear && self.dirty() > 0 {
            return Listing::FlushFirst;
        }
        if !(list_fits && listed_fits) {
            // The batch of its own holds the changed keys too; with nothing listed there is
            // nothing a flush first would take out of it.
            return if alone_fits || self.dirty() == 0 {
                Listing::Alone
            } else {
                Listing::FlushFirst
            };
        }
        self.list_victims(plan, now);
        Listing::Listed
    }

    /// The live victims of `plan` at `now` join the list as tombstones (each with its
    /// latest record on flash) and the table drops them. Out of line: its walk's frame is
    /// a sibling of [`Core::list_cull`]'s placements.
    #[inline(never)]
    fn list_victims(&mut self, plan: CullPlan, now: u64) {
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
            let listed = (0..*dirty).any(|d| same(&dirty_keys[d][..usize::from(dirty_len[d])], k));
            if live && !listed && *dirty < D {
                dirty_keys[*dirty][..k.len()].copy_from_slice(k);
                dirty_len[*dirty] = k.len() as u8;
                dirty_loc[*dirty] = t.slot_of(k).map_or(NOWHERE, |s| loc[s]);
                *dirty += 1;
            }
        });
        table.apply_cull(plan, now, &mut |_, _| {});
    }

    /// The write-back steps the core's `write_back` field holds ([`WriteBack`]): `Some` for
    /// a write-back `policy`, `None` for write-through. Inlined where `open` is called, so
    /// a policy given there as a constant decides whether the steps are linked.
    #[inline(always)]
    pub(crate) fn write_back_for(policy: Policy) -> Option<WriteBackFn<F, N, K, V, D, S, T>> {
        match policy {
            Policy::WriteThrough => None,
            Policy::WriteBack { .. } => Some(Self::write_back_steps),
        }
    }

    /// Write-back's steps ([`Self::write_back_for`]).
    fn write_back_steps() -> WriteBack<F, N, K, V, D, S, T> {
        WriteBack {
            list_cull: Self::list_cull,
            fits_after: Self::fits_after,
        }
    }

    /// Deletes `key` at `now`: true when it was live.
    pub(crate) fn delete(&mut self, key: &[u8], now: u64) -> Res<bool, F> {
        self.drop_key(key, now, false)
    }

    pub(crate) fn incr(&mut self, key: &[u8], delta: i64, now: u64) -> Res<i64, F> {
        self.see(now);
        let Some(i) = self.table.borrow().slot_of(key) else {
            return Err(Error::NotFound);
        };
        let Some(at) = self.room_at(key, V) else {
            return Err(Error::Settle);
        };
        // Held in slot `i` above and unchanged since (`room_at` changes no entry): the table
        // adds to that slot, with no second lookup of the key.
        let r = self.table.borrow_mut().incr_slot(i, delta, now);
        if matches!(r, Ok(_) | Err(Error::NotFound)) {
            self.mark(key, at);
        }
        r.map_err(widen)
    }

    pub(crate) fn rekey(&mut self, from: &[u8], to: &[u8], expiry: u64, now: u64) -> Res<bool, F> {
        self.see(now);
        if to.len() > K {
            return Err(Error::Key(KeyError::OverCapacity));
        }
        let vlen = match self.table.borrow().peek_any(from) {
            Some((_, v, _, _)) => v.len(),
            None => return Ok(false),
        };
        self.room(&[
            Change {
                key: from,
                vlen: Change::GONE,
            },
            Change { key: to, vlen },
        ])?;
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
        Ok(moved)
    }

    /// Under both policies the clear is written at once (one small record): the changed
    /// keys it drops are not written, and no older record has to be kept for them.
    pub(crate) fn clear(&mut self) -> Res<(), F> {
        // Room for the clear record first, while RAM still mirrors the flash: a compaction
        // here copies the live entries, so a power cut before the record lands leaves the
        // cache as it was (compacting after the table is emptied would drop them).
        if !self.fits_now(Batch::Small) {
            return self.ask(Work::Room);
        }
        let _ = self.table.borrow_mut().clear();
        self.dirty = 0;
        self.pending_clear = true;
        Ok(())
    }

    /// [`Work::CullingPut`]: marks the cull's victims, makes room for the batch
    /// ([`Batch::Culling`] in [`Self::place_batch`]), writes it ([`Self::write_batch`]). The victims are
    /// marked before room is made, so making room drops none of the entries the cull
    /// keeps while victims are left to drop. Out of line: the front end's settle keeps a
    /// small frame on every call's path.
    #[blocking(inline(never))]
    async fn culling_put(&mut self, io: &IoOf<F>, s: &Staged<'_>) -> Res<(), F> {
        self.mark_victims(s.key, s.now);
        let mut r = self.reserve(io, Batch::Culling(s)).await;
        if r.is_ok() {
            r = self.write_batch(io, Some(s)).await;
        }
        self.unmark_victims();
        r
    }

    /// Writes every change and the current cache time ([`Backend::flush`]).
    pub(crate) async fn flush_all(&mut self, io: &IoOf<F>) -> Res<(), F> {
        self.flush_dirty(io).await?;
        if self.time > self.log.written_time {
            self.reserve(io, Batch::Small).await?;
            // A batch of its own, through the batch's record writer (no record on this
            // frame).
            self.append_listed(io, Listed::Time, true, true).await?;
            self.commits += 1;
        }
        Ok(())
    }

    /// The table's part of the end of an insert's culling batch ([`Self::write_batch`]): it
    /// drops the victims, now on flash, and takes the put; answers the put's slot (a
    /// table's slot fits 16 bits: the answer fits a register). Out of line: its calls'
    /// arguments are not on the frame above the put's writer.
    #[inline(never)]
    pub(super) fn take_culled(&mut self, s: &Staged<'_>) -> Res<u16, F> {
        let Self { table, loc, .. } = self;
        let table: &mut Table<N, K, V, S> = table.borrow_mut();
        // Every entry is marked when the cull clears.
        for (i, at) in loc.iter().enumerate() {
            if at & CULL_MARK != 0 {
                table.remove_slot(i);
            }
        }
        self.put_table(s)?;
        // A put leaves its entry the most recent (the error is never answered).
        let newest = self.table.borrow().newest();
        newest.map(|i| i as u16).ok_or(Error::NotFound)
    }

    /// The table takes the staged put `s`. Out of line: the table's many arguments are
    /// unpacked once, for a put and the end of a culling batch ([`Self::take_culled`]).
    #[inline(never)]
    fn put_table(&mut self, s: &Staged<'_>) -> Res<(), F> {
        self.table
            .borrow_mut()
            .put_bytes(s.kind, s.key, s.val, s.expiry)
            .map_err(widen)
    }
}

// The async front end's own steps (cancellation is async only): no blocking variant.
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
    /// Reads the flash again when work was cut off (a dropped driver): RAM may be half-way
    /// through a change.
    pub(crate) async fn recover(&mut self, io: &IoOf<F>) -> Result<(), super::Fe<F>> {
        if io.interrupted() {
            self.remount(io).await?;
        }
        Ok(())
    }

    /// Performs the work the last operation asked for (`staged`: the put a
    /// [`Work::CullingPut`] writes). The async front end's step: the blocking one's settle
    /// (`Persistent::settle`) takes the same steps itself.
    pub(crate) async fn perform(
        &mut self,
        io: &IoOf<F>,
        staged: Option<&Staged<'_>>,
    ) -> Res<(), F> {
        match core::mem::replace(&mut self.work, Work::None) {
            Work::None => Ok(()),
            Work::Flush => self.flush_dirty(io).await,
            Work::Room => self.reserve(io, Batch::Small).await,
            // One batch: the cull, the changed keys it leaves, the put (the operation asked
            // for a flush first when they do not fit one). Room and the batch run beside
            // each other, not nested: one frame deep less on the stack.
            Work::CullingPut => match staged {
                Some(s) => self.culling_put(io, s).await,
                None => Ok(()),
            },
        }
    }

    /// The async front end's settle: recovers, performs the work the last operation asked
    /// for (`staged`: the put a [`Work::CullingPut`] writes), writes the changes when the
    /// policy says so, then a flush asked for.
    pub(crate) async fn settle(&mut self, io: &IoOf<F>, staged: Staged<'_>) -> Res<(), F> {
        self.culled = false;
        self.recover(io).await?;
        self.perform(io, Some(&staged)).await?;
        if self.should_flush() {
            self.flush_dirty(io).await?;
        }
        if self.want_flush {
            self.flush_all(io).await?;
            self.want_flush = false;
        }
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
    > Persistent<F, N, K, V, D, S, T>
{
    /// After a RAM operation of the core: performs the work it asked for (`staged`: the put
    /// a [`Work::CullingPut`] writes) and answers true (it answered [`Error::Settle`] and
    /// runs again), else writes the changes when the policy says so. Out of line: one copy
    /// for every operation of every typed [`Cache`](crate::Cache) method.
    #[inline(never)]
    fn settle(&mut self, staged: Option<&Staged<'_>>) -> Result<bool, Error<FeOf<F>>> {
        let Self { core, buf, flash } = self;
        let mut io = SyncIo::new(flash, buf);
        // Only an operation that answered `Error::Settle` leaves work queued ([`Core::perform`]'s
        // steps, here with one call of the flush for a flush asked for and one the policy wants).
        let work = core::mem::replace(&mut core.work, Work::None);
        let flush = match work {
            Work::None => core.should_flush(),
            Work::Flush => true,
            Work::Room => {
                core.reserve_blocking(&mut io, Batch::Small)?;
                false
            }
            Work::CullingPut => {
                if let Some(s) = staged {
                    core.culling_put_blocking(&mut io, s)?;
                }
                false
            }
        };
        if flush {
            core.flush_dirty_blocking(&mut io)?;
        }
        Ok(work != Work::None)
    }

    /// Drops `key` when it is held at `now` (with `expired`, only when it has expired,
    /// before a read: true when it is held and live; else true when it was live, a
    /// delete), and writes that when the policy says so. Out of line: a call passes no
    /// expiry, [`Persistent::change`] is called with [`EXPIRED`] once.
    #[inline(never)]
    fn drop_key(&mut self, expired: bool, key: &[u8], now: u64) -> Result<bool, Error<FeOf<F>>> {
        self.change(expired, key, now, EXPIRED)
    }

    /// [`Core::change`] run to its end: [`Persistent::drop_key`] with `set` [`EXPIRED`],
    /// else [`Backend::touch`]. Out of line and not generic: every read (typed, raw,
    /// `has_key`), delete and touch share one copy. The flag comes first, as in
    /// `drop_key`: before the key it is passed in a register, where after the time (a
    /// `u64` that 32-bit cores pass on the stack) it was stored by every caller.
    #[inline(never)]
    fn change(
        &mut self,
        expired: bool,
        key: &[u8],
        now: u64,
        set: u64,
    ) -> Result<bool, Error<FeOf<F>>> {
        self.run(|c| c.change(key, now, expired, set))
    }

    /// Runs a RAM operation of the core: performs the work it asks for first and runs it
    /// again, then writes the changes when the policy says so.
    fn run<R>(
        &mut self,
        mut op: impl FnMut(
            &mut Core<super::io::Blocking<F>, N, K, V, D, S, T>,
        ) -> Res<R, super::io::Blocking<F>>,
    ) -> Result<R, Error<FeOf<F>>> {
        loop {
            let r = op(&mut self.core);
            if !self.settle(None)? {
                return r;
            }
        }
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
    type Error = FeOf<F>;

    const STORAGE_BOUND: bool = true;

    front_ops!();

    fn put(
        &mut self,
        key: &[u8],
        mode: Put,
        expiry: u64,
        now: u64,
        fill: impl FnOnce(&mut [u8]) -> Result<(usize, Kind), Error<Self::Error>>,
    ) -> Result<bool, Error<Self::Error>> {
        let Some(held) = self.core.put_gate(key, mode, now)? else {
            return Ok(false);
        };
        let mut staged = [0u8; V];
        let (len, kind) = match self.core.put_filled(key, fill(&mut staged)) {
            Ok(x) => x,
            Err(e) => {
                // Never leave a stale value readable: the key goes.
                if held.is_some() {
                    Backend::delete(self, key, now)?;
                }
                return Err(e);
            }
        };
        let s = Staged {
            key,
            // `put_filled` checked `len <= V`: no panic path.
            val: staged.get(..len).unwrap_or(&staged),
            kind,
            expiry,
            now,
        };
        loop {
            let r = self.core.put_staged(&s);
            if !self.settle(Some(&s))? {
                return r.map(|()| true);
            }
            // The work wrote the put (an insert that culls).
            if self.core.culled {
                self.core.culled = false;
                return Ok(true);
            }
        }
    }

    fn flush(&mut self) -> Result<(), Error<Self::Error>> {
        let Self { core, buf, flash } = self;
        core.flush_all_blocking(&mut SyncIo::new(flash, buf))
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
        self.core.table.borrow().peek(key, now)
    }
}

#[cfg(all(test, feature = "_mock"))]
mod tests {
    use super::super::io::SyncIo;
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
        let Persistent { core, buf, flash } = p;
        let mut io = SyncIo::new(flash, buf);
        let mut it = Committed::new(&core.log, Pos::START);
        let (mut tombs, mut clear, mut n) = (Vec::new(), false, 0);
        let mut key = [0u8; 8];
        while let Some((at, r)) = it.next_blocking(&mut io, &mut core.log).unwrap() {
            n += 1;
            if n <= skip {
                continue;
            }
            if r.ty() == T_CLEAR {
                clear = true;
            }
            if r.ty() == T_TOMB {
                let addr = core.log.addr(at);
                // The key fits the buffer, and a tombstone has no value: both read.
                assert!(usize::from(r.klen) <= key.len() && r.vlen == 0);
                core.log
                    .read_at_blocking(&mut io, addr, &r, &mut key, &mut [])
                    .unwrap();
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
                assert_eq!(p.core.log.tail, 0);
            }
        }
    }
}
