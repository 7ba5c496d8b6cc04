//! The async front end: [`AsyncPersistent`], the persistent backend over
//! `embedded_storage_async::nor_flash::NorFlash`, for [`AsyncSharedCache`].
//!
//! Its [`Backend`] calls change RAM only (the same core operations as [`Persistent`]'s);
//! [`AsyncBackend::settle`] awaits the flash work they leave. A call that needs work before
//! it can change anything answers [`Error::Settle`] having changed nothing; the async shared
//! cache then settles and runs the call again.

use core::borrow::BorrowMut;
use core::fmt;
use core::future::Future;
use core::hash::BuildHasher;
use core::ops::Range;

use embedded_storage_async::nor_flash::{ErrorType, NorFlash};

use super::backend::{Staged, WriteBackFn};
use super::io::{drive_async, Async, Io};
use super::{Core, FeOf, Policy, Wear, Work};
use crate::async_shared::AsyncBackend;
use crate::backend::{Backend, Put};
use crate::error::Error;
use crate::hash::DefaultHashBuilder;
use crate::memcached::Store;
use crate::table::Table;
use crate::value::Kind;

#[cfg(doc)]
use super::Persistent;
#[cfg(doc)]
use crate::async_shared::AsyncSharedCache;

/// A put kept for the work that writes it whole (an insert culling more entries than the
/// list holds), and recognised when the call is run again.
struct Stage<const K: usize, const V: usize> {
    key: [u8; K],
    klen: usize,
    val: [u8; V],
    vlen: usize,
    kind: Kind,
    expiry: u64,
    now: u64,
}

impl<const K: usize, const V: usize> Stage<K, V> {
    fn staged(&self) -> Staged<'_> {
        Staged {
            key: &self.key[..self.klen],
            val: &self.val[..self.vlen],
            kind: self.kind,
            expiry: self.expiry,
            now: self.now,
        }
    }
}

/// [`Persistent`] over async NOR flash (`embedded_storage_async::nor_flash::NorFlash`:
/// embassy-rp, embassy-stm32, nrf-softdevice and others): the same log, format, policies
/// and recovery, from the same core. Share it between tasks with
/// [`AsyncSharedCache`]: every Django call is then
/// `cache.set(..).await` and friends, and under [`Policy::WriteThrough`] a call that
/// returned `Ok` is on flash.
///
/// ```
/// # #[cfg(feature = "_mock")] {
/// use embassy_futures::block_on;
/// use tickcache::flash::{AsyncPersistent, MockFlash, Policy};
/// use tickcache::{AsyncSharedCache, Config, ManualClock, Table};
/// use tickcache::mutex::NoopRawMutex;
///
/// let clock = ManualClock::new(1000);
/// let mut flash = MockFlash::<4, 1024, 4>::new(); // also an async NorFlash
/// block_on(async {
///     let p = AsyncPersistent::<_, 16, 32, 16>::open(&mut flash, 0..4096, Table::new(),
///         Policy::WriteThrough).await?;
///     let cache: AsyncSharedCache<_, _, 32, NoopRawMutex> =
///         AsyncSharedCache::with_raw_mutex(p.into_cache(&clock, Config::new()));
///     cache.set("answer", &42u32, 60).await.unwrap(); // on flash when it returns
///     assert_eq!(cache.get::<u32>("answer").await.unwrap(), Some(42));
///     Ok::<(), tickcache::flash::FlashError<tickcache::flash::MockError>>(())
/// })?;
/// # }
/// # Ok::<(), tickcache::flash::FlashError<tickcache::flash::MockError>>(())
/// ```
///
/// # Calls, settling and cancellation
/// The [`Backend`] calls never touch the flash: they change the table and list the change.
/// [`AsyncBackend::settle`] writes what the policy asks for (every change under
/// write-through; under write-back, the list when `max_dirty` keys wait, a clear at once,
/// everything after [`Backend::flush`] / `close`). A call that needs storage work first
/// (the list or one batch would overflow, room for a clear record, an insert culling more
/// entries than the list holds) changes nothing and returns [`Error::Settle`]; the async
/// shared cache settles and runs it again. Used without one, do the same: await `settle`
/// and call again.
///
/// If a `settle` future is dropped in the middle (its task cancelled), the RAM state may
/// be half-way through a write. The next call answers [`Error::Settle`] and the next
/// `settle` reads the flash again into the table, as after a reset with the power kept:
/// what the flash holds is kept (under write-through, every call that returned `Ok`), and
/// under write-back the changes not yet flushed are lost (as after a power cut). Cache time
/// never goes back.
///
/// RAM cost: [`Persistent`]'s, plus `K + V` bytes and a few words for the staged put.
pub struct AsyncPersistent<
    F: ErrorType,
    const N: usize,
    const K: usize,
    const V: usize,
    const D: usize = 8,
    S = DefaultHashBuilder,
    T = Table<N, K, V, S>,
> {
    core: Core<Async<F>, N, K, V, D, S, T>,
    io: Io<F::Error>,
    flash: F,
    stage: Stage<K, V>,
}

impl<
        F: NorFlash,
        const N: usize,
        const K: usize,
        const V: usize,
        const D: usize,
        S: BuildHasher,
    > AsyncPersistent<F, N, K, V, D, S>
{
    /// [`Persistent::open`] on async flash: opens the log in `range` (page-aligned) and
    /// replays it into `table`. A blank or foreign region opens empty.
    #[inline(always)]
    pub fn open(
        flash: F,
        range: Range<u32>,
        table: Table<N, K, V, S>,
        policy: Policy,
    ) -> impl Future<Output = Result<Self, FeOf<F>>> {
        Self::opening(flash, range, table, policy, false)
    }

    /// [`Persistent::open_or_format`] on async flash: formats the region when the log
    /// cannot be continued.
    #[inline(always)]
    pub fn open_or_format(
        flash: F,
        range: Range<u32>,
        table: Table<N, K, V, S>,
        policy: Policy,
    ) -> impl Future<Output = Result<Self, FeOf<F>>> {
        Self::opening(flash, range, table, policy, true)
    }

    /// [`Persistent::open_in`] on async flash: opens into a lent table (a `&'static mut
    /// Table` in `.bss`, say), cleared first.
    #[inline(always)]
    pub fn open_in<T: BorrowMut<Table<N, K, V, S>>>(
        flash: F,
        range: Range<u32>,
        table: T,
        policy: Policy,
    ) -> impl Future<Output = Result<AsyncPersistent<F, N, K, V, D, S, T>, FeOf<F>>> {
        AsyncPersistent::opening(flash, range, table, policy, false)
    }

    /// [`Persistent::open_or_format_in`] on async flash.
    #[inline(always)]
    pub fn open_or_format_in<T: BorrowMut<Table<N, K, V, S>>>(
        flash: F,
        range: Range<u32>,
        table: T,
        policy: Policy,
    ) -> impl Future<Output = Result<AsyncPersistent<F, N, K, V, D, S, T>, FeOf<F>>> {
        AsyncPersistent::opening(flash, range, table, policy, true)
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
    > AsyncPersistent<F, N, K, V, D, S, T>
{
    /// The opening future. Write-back's culling step ([`Core::write_back_for`]) is chosen
    /// here, where `open` is called and before the future is made, so a policy given there
    /// as a constant decides whether it is linked.
    #[inline(always)]
    fn opening(
        flash: F,
        range: Range<u32>,
        table: T,
        policy: Policy,
        format: bool,
    ) -> impl Future<Output = Result<Self, FeOf<F>>> {
        Self::start(
            flash,
            range,
            table,
            policy,
            Core::write_back_for(policy),
            format,
        )
    }

    async fn start(
        mut flash: F,
        range: Range<u32>,
        table: T,
        policy: Policy,
        write_back: Option<WriteBackFn<Async<F>, N, K, V, D, S, T>>,
        format: bool,
    ) -> Result<Self, FeOf<F>> {
        let capacity = flash.capacity();
        let mut core = Core::new(range, capacity, table, policy, write_back)?;
        let io = Io::new();
        drive_async(&mut flash, &io, core.mount_or_format(&io, format)).await?;
        Ok(AsyncPersistent {
            core,
            io,
            flash,
            stage: Stage {
                key: [0; K],
                klen: 0,
                val: [0; V],
                vlen: 0,
                kind: Kind::Bytes,
                expiry: 0,
                now: 0,
            },
        })
    }

    /// [`Persistent::erase_all`]: formats the region and empties the table.
    pub async fn erase_all(&mut self) -> Result<(), FeOf<F>> {
        let Self {
            core, io, flash, ..
        } = self;
        drive_async(flash, io, async {
            core.recover(io).await?;
            core.erase_all(io).await
        })
        .await
    }

    /// Writes every change and the current cache time ([`Backend::flush`], awaited).
    pub async fn flush(&mut self) -> Result<(), Error<FeOf<F>>> {
        self.core.want_flush = true;
        self.settle().await
    }

    /// Erase counts over all pages (reads each page header).
    pub async fn wear(&mut self) -> Result<Wear, FeOf<F>> {
        let Self {
            core, io, flash, ..
        } = self;
        drive_async(flash, io, async {
            core.recover(io).await?;
            core.wear(io).await
        })
        .await
    }

    /// The erase count of page `page` (0-based in the region), `None` when unreadable.
    pub async fn erase_count(&mut self, page: u32) -> Result<Option<u32>, FeOf<F>> {
        let Self {
            core, io, flash, ..
        } = self;
        drive_async(flash, io, async {
            core.recover(io).await?;
            core.erase_count(io, page).await
        })
        .await
    }

    front_accessors!();

    /// Runs a RAM operation, unless work was cut off (then [`Error::Settle`]: the next
    /// settle recovers first).
    fn run<R>(
        &mut self,
        op: impl FnOnce(&mut Core<Async<F>, N, K, V, D, S, T>) -> super::Res<R, Async<F>>,
    ) -> Result<R, Error<FeOf<F>>> {
        if self.io.cut_off() {
            return Err(Error::Settle);
        }
        op(&mut self.core)
    }

    /// Drops `key` when it is held at `now` (with `expired`, only when it has expired,
    /// before a read: true when it is held and live; else true when it was live, a
    /// delete).
    fn drop_key(&mut self, expired: bool, key: &[u8], now: u64) -> Result<bool, Error<FeOf<F>>> {
        self.run(|c| c.drop_key(key, now, expired))
    }

    /// [`Core::change`]: [`Backend::touch`] gives `key` expiry `set` through it.
    fn change(
        &mut self,
        expired: bool,
        key: &[u8],
        now: u64,
        set: u64,
    ) -> Result<bool, Error<FeOf<F>>> {
        self.run(|c| c.change(key, now, expired, set))
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
    > Backend for AsyncPersistent<F, N, K, V, D, S, T>
{
    type Error = FeOf<F>;

    front_ops!();

    fn put(
        &mut self,
        key: &[u8],
        mode: Put,
        expiry: u64,
        now: u64,
        fill: impl FnOnce(&mut [u8]) -> Result<(usize, Kind), Error<Self::Error>>,
    ) -> Result<bool, Error<Self::Error>> {
        if self.io.cut_off() {
            return Err(Error::Settle);
        }
        let mut staged = [0u8; V];
        // The culling put the last settle wrote, when this is that put run again: done
        // (checked below against the value too; an `add` now finds the key held).
        let culled = self.core.culled && self.stage.staged().key == key;
        if culled {
            self.core.culled = false;
        }
        let Some(held) = self.core.put_gate(key, mode, now)? else {
            return Ok(culled);
        };
        let (len, kind) = match self.core.put_filled(key, fill(&mut staged)) {
            Ok(x) => x,
            Err(e) => {
                // Never leave a stale value readable: the key goes.
                if held.is_some() {
                    self.core.delete(key, now)?;
                }
                return Err(e);
            }
        };
        let st = self.stage.staged();
        if culled && st.val == &staged[..len] && st.kind == kind {
            return Ok(true);
        }
        let s = Staged {
            key,
            val: &staged[..len],
            kind,
            expiry,
            now,
        };
        let r = self.core.put_staged(&s);
        if matches!(r, Err(Error::Settle)) && self.core.work == Work::CullingPut {
            let stage = &mut self.stage;
            stage.key[..key.len()].copy_from_slice(key);
            stage.klen = key.len();
            stage.val[..len].copy_from_slice(&staged[..len]);
            stage.vlen = len;
            stage.kind = kind;
            stage.expiry = expiry;
            stage.now = now;
        }
        r.map(|()| true)
    }

    /// Asks for a flush (the changes and the current cache time); the next
    /// [`AsyncBackend::settle`] writes it.
    fn flush(&mut self) -> Result<(), Error<Self::Error>> {
        self.core.want_flush = true;
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
    > AsyncBackend for AsyncPersistent<F, N, K, V, D, S, T>
{
    /// Recovers from a cancelled settle (reads the flash again), performs the work the
    /// last call asked for, then writes what the policy asks for.
    fn settle(&mut self) -> impl Future<Output = Result<(), Error<Self::Error>>> {
        let Self {
            core,
            io,
            flash,
            stage,
        } = self;
        drive_async(flash, io, core.settle(io, stage.staged()))
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
    > Store for AsyncPersistent<F, N, K, V, D, S, T>
{
    fn peek(&self, key: &[u8], now: u64) -> Option<(&[u8], Kind, u64)> {
        self.core.table.borrow().peek(key, now)
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
    > fmt::Debug for AsyncPersistent<F, N, K, V, D, S, T>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncPersistent")
            .field("len", &self.core.table.borrow().len())
            .field("policy", &self.core.policy)
            .field("pages", &self.core.log.pages)
            .field("pages_used", &self.core.log.used)
            .field("dirty", &self.core.dirty)
            .field("time", &self.core.time)
            .finish_non_exhaustive()
    }
}
