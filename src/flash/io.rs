//! The I/O seam between the log and a flash: the core asks, the front end's I/O object
//! performs.
//!
//! The log's three flash primitives (read a chunk, program a chunk, erase a range) are
//! methods of the core's I/O object; everything above them (mount and replay, compaction,
//! the batch writer, flush) is written once, as `async fn`s, and compiled twice by
//! [`tickcache_dual::dual`]:
//!
//! - **async**, for [`AsyncPersistent`](super::AsyncPersistent): the I/O object is [`Io`],
//!   a small request slot. Each primitive puts a request into it and returns `Pending`
//!   once; [`drive_async`] polls the core's future, performs each request it finds on the
//!   `embedded_storage_async::nor_flash::NorFlash` and polls again.
//! - **blocking**, for [`Persistent`](super::Persistent): the same functions with `async`
//!   and `.await` dropped and a `_blocking` suffix; the I/O object is [`SyncIo`] (taken by
//!   `&mut`), which performs each request on the `embedded_storage::nor_flash::NorFlash`
//!   at once. Plain functions: the blocking backend carries no futures, no state machines
//!   and no polling loop.
//!
//! Either way the core holds no flash and performs no I/O itself, so the log logic exists
//! once.
//!
//! A request carries at most [`SCRATCH`] bytes (the I/O object's buffer); the core splits
//! longer reads and writes. While a request of the slot is out, the slot is marked in
//! flight: if the driver's future is dropped there (its task cancelled), the mark stays and
//! the async front end recovers before its next operation ([`Io::interrupted`]).

use core::cell::Cell;
use core::fmt::Debug;
use core::future::{poll_fn, Future};
use core::marker::PhantomData;
use core::pin::{pin, Pin};
use core::task::{Context, Poll};

use super::format::{Encoded, Rec, RecHead};
use super::log::SCRATCH;
use super::FlashError;

/// What the core needs to know of a flash: its geometry and its error type. Implemented by
/// [`Blocking`] and [`Async`] for the two flash traits.
pub(crate) trait Geometry {
    /// The flash's error.
    type Error: Debug;
    /// `NorFlash::READ_SIZE`.
    const READ_SIZE: usize;
    /// `NorFlash::WRITE_SIZE`.
    const WRITE_SIZE: usize;
    /// `NorFlash::ERASE_SIZE`: the page.
    const ERASE_SIZE: usize;
    /// The flash the blocking core's [`SyncIo`] is lent: the blocking flash itself for
    /// [`Blocking`], [`NoNor`] for [`Async`] (whose core is never run blocking).
    type Nor: Nor<Error = Self::Error>;
}

/// The geometry of a blocking flash.
pub struct Blocking<F>(PhantomData<fn() -> F>);

/// The geometry of an async flash.
pub struct Async<F>(PhantomData<fn() -> F>);

impl<F: embedded_storage::nor_flash::NorFlash> Geometry for Blocking<F> {
    type Error = F::Error;
    const READ_SIZE: usize = F::READ_SIZE;
    const WRITE_SIZE: usize = F::WRITE_SIZE;
    const ERASE_SIZE: usize = F::ERASE_SIZE;
    type Nor = F;
}

impl<F: embedded_storage_async::nor_flash::NorFlash> Geometry for Async<F> {
    type Error = F::Error;
    const READ_SIZE: usize = F::READ_SIZE;
    const WRITE_SIZE: usize = F::WRITE_SIZE;
    const ERASE_SIZE: usize = F::ERASE_SIZE;
    type Nor = NoNor<F::Error>;
}

/// A request of the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Req {
    /// Nothing asked.
    Idle,
    /// Read `len` bytes at `addr` into the buffer.
    Read { addr: u32, len: u8 },
    /// Program the buffer's first `len` bytes at `addr`.
    Write { addr: u32, len: u8 },
    /// Erase `from..to`.
    Erase { from: u32, to: u32 },
}

/// The request slot: owned by the front end, lent to the core by `&` and to the driver.
pub(crate) struct Io<E> {
    req: Cell<Req>,
    buf: Cell<[u8; SCRATCH]>,
    err: Cell<Option<E>>,
    /// Set with each request, cleared when its answer is taken: still set when the driver
    /// was dropped between the two.
    in_flight: Cell<bool>,
}

/// One request of the core, from the slot's point of view: put in the slot when built,
/// `Pending` at the first poll (the driver performs it then), its answer at the second.
/// The core's only suspension point; a small hand-written future, so the core's state
/// machines hold two words for it.
pub(crate) struct Ask<'a, E> {
    io: &'a Io<E>,
    asked: bool,
}

impl<E> Future for Ask<'_, E> {
    type Output = Res<(), E>;

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Res<(), E>> {
        if !self.asked {
            self.asked = true;
            self.io.in_flight.set(true);
            return Poll::Pending;
        }
        let done = self.io.err.take();
        self.io.in_flight.set(false);
        Poll::Ready(match done {
            Some(e) => Err(FlashError::Flash(e)),
            None => Ok(()),
        })
    }
}

type Res<T, E> = Result<T, FlashError<E>>;

impl<E> Io<E> {
    /// An idle slot.
    pub const fn new() -> Self {
        Io {
            req: Cell::new(Req::Idle),
            buf: Cell::new([0; SCRATCH]),
            err: Cell::new(None),
            in_flight: Cell::new(false),
        }
    }

    /// True when a driver was dropped in the middle of the core's work (a cancelled task):
    /// the core's RAM state may be half-way through a change. Cleared.
    pub fn interrupted(&self) -> bool {
        self.req.set(Req::Idle);
        let _ = self.err.take();
        self.in_flight.replace(false)
    }

    /// True when a driver was dropped in the middle of the core's work (not cleared).
    pub fn cut_off(&self) -> bool {
        self.in_flight.get()
    }

    fn ask(&self, req: Req) -> Ask<'_, E> {
        self.req.set(req);
        Ask {
            io: self,
            asked: false,
        }
    }

    /// Asks for `len` (at most [`SCRATCH`]) bytes at `addr` (aligned by the caller to
    /// `READ_SIZE`); once answered, [`Io::take`] copies them out.
    pub fn read(&self, addr: u32, len: usize) -> Ask<'_, E> {
        self.ask(Req::Read {
            addr,
            len: len as u8,
        })
    }

    /// Copies the bytes read from `skip` on into `out`.
    pub fn take(&self, skip: usize, out: &mut [u8]) {
        let b = self.buf.get();
        crate::words::copy(out, &b[skip..skip + out.len()]);
    }

    /// Runs `f` over the buffer (the bytes of the last read).
    pub fn with_buf<R>(&self, f: impl FnOnce(&[u8; SCRATCH]) -> R) -> R {
        f(&self.buf.get())
    }

    /// Puts byte `b` at `at` of the buffer of the next write (past its end: nowhere), in
    /// place: the writer's byte loop computes the CRC on the way.
    pub fn put(&self, at: usize, b: u8) {
        let buf: &Cell<[u8]> = &self.buf;
        if let Some(d) = buf.as_slice_of_cells().get(at) {
            d.set(b);
        }
    }

    /// Encodes the header of `rec` (page base time `base`) at the start of the buffer of
    /// the next write; returns what the writer needs of it.
    pub fn stage_head(&self, rec: &Rec<'_>, base: u64) -> Encoded {
        let mut b = self.buf.get();
        let e = RecHead::encode(rec, Some(&mut b), base);
        self.buf.set(b);
        e
    }

    /// Runs `f` over the buffer of the next write (to encode bytes in place).
    pub fn stage_with<R>(&self, f: impl FnOnce(&mut [u8; SCRATCH]) -> R) -> R {
        let mut b = self.buf.get();
        let r = f(&mut b);
        self.buf.set(b);
        r
    }

    /// Asks to program the buffer's first `len` bytes (staged with [`Io::put`]) at
    /// `addr`.
    pub fn write(&self, addr: u32, len: usize) -> Ask<'_, E> {
        self.ask(Req::Write {
            addr,
            len: len as u8,
        })
    }

    /// Asks to erase `from..to`.
    pub fn erase(&self, from: u32, to: u32) -> Ask<'_, E> {
        self.ask(Req::Erase { from, to })
    }
}

/// A blocking flash as the blocking core reaches it. [`SyncIo`] is generic over it (the
/// blocking core is compiled once per flash type anyway), so these calls inline into
/// [`SyncIo`]'s three primitives: no vtable and no out-of-line shims.
pub(crate) trait Nor {
    /// The flash's error.
    type Error;
    /// `NorFlash::read`.
    fn nor_read(&mut self, addr: u32, out: &mut [u8]) -> Result<(), Self::Error>;
    /// `NorFlash::write`.
    fn nor_write(&mut self, addr: u32, bytes: &[u8]) -> Result<(), Self::Error>;
    /// `NorFlash::erase`.
    fn nor_erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error>;
}

impl<F: embedded_storage::nor_flash::NorFlash> Nor for F {
    type Error = F::Error;
    fn nor_read(&mut self, addr: u32, out: &mut [u8]) -> Result<(), F::Error> {
        self.read(addr, out)
    }
    fn nor_write(&mut self, addr: u32, bytes: &[u8]) -> Result<(), F::Error> {
        self.write(addr, bytes)
    }
    fn nor_erase(&mut self, from: u32, to: u32) -> Result<(), F::Error> {
        self.erase(from, to)
    }
}

/// The [`Geometry::Nor`] of an async flash: no value exists, as the async core's blocking
/// variant is never run.
pub(crate) struct NoNor<E>(core::convert::Infallible, PhantomData<fn() -> E>);

impl<E> Nor for NoNor<E> {
    type Error = E;
    fn nor_read(&mut self, _: u32, _: &mut [u8]) -> Result<(), E> {
        match self.0 {}
    }
    fn nor_write(&mut self, _: u32, _: &[u8]) -> Result<(), E> {
        match self.0 {}
    }
    fn nor_erase(&mut self, _: u32, _: u32) -> Result<(), E> {
        match self.0 {}
    }
}

/// The blocking core's I/O object: lent the flash and the front end's buffer for one
/// operation, it performs each request at once. The blocking core takes it by `&mut`.
///
/// Its three primitives pass `&*self` to `black_box` (no instruction): the object's address
/// is then used, not only loaded from, so the optimizer does not split every `&mut SyncIo`
/// parameter of the core into two (the flash and the buffer), which costs more registers
/// and spills in each function of the core than it saves (about 200 bytes on Cortex-M4).
pub(crate) struct SyncIo<'a, N> {
    flash: &'a mut N,
    buf: &'a mut [u8; SCRATCH],
}

impl<'a, N: Nor> SyncIo<'a, N> {
    /// An I/O object over `flash`, with `buf` as its buffer.
    pub fn new(flash: &'a mut N, buf: &'a mut [u8; SCRATCH]) -> Self {
        SyncIo { flash, buf }
    }

    /// Reads `len` (at most [`SCRATCH`]) bytes at `addr` (aligned by the caller to
    /// `READ_SIZE`) into the buffer; [`SyncIo::take`] copies them out. Out of line: one
    /// copy of the call and its error's mapping for every read of the log.
    #[inline(never)]
    pub fn read_blocking(&mut self, addr: u32, len: usize) -> Res<(), N::Error> {
        core::hint::black_box(&*self); // See the type's doc.
        self.flash
            .nor_read(addr, &mut self.buf[..len])
            .map_err(FlashError::Flash)
    }

    /// Copies the bytes read from `skip` on into `out`.
    pub fn take(&self, skip: usize, out: &mut [u8]) {
        crate::words::copy(out, &self.buf[skip..skip + out.len()]);
    }

    /// Runs `f` over the buffer (the bytes of the last read).
    pub fn with_buf<R>(&self, f: impl FnOnce(&[u8; SCRATCH]) -> R) -> R {
        f(self.buf)
    }

    /// Puts byte `b` at `at` of the buffer of the next write (past its end: nowhere): the
    /// writer's byte loop computes the CRC on the way, and no `memcpy` frame sits below it.
    pub fn put(&mut self, at: usize, b: u8) {
        if let Some(d) = self.buf.get_mut(at) {
            *d = b;
        }
    }

    /// Encodes the header of `rec` (page base time `base`) at the start of the buffer of
    /// the next write; returns what the writer needs of it.
    pub fn stage_head(&mut self, rec: &Rec<'_>, base: u64) -> Encoded {
        RecHead::encode(rec, Some(self.buf), base)
    }

    /// Runs `f` over the buffer of the next write (to encode bytes in place).
    pub fn stage_with<R>(&mut self, f: impl FnOnce(&mut [u8; SCRATCH]) -> R) -> R {
        f(self.buf)
    }

    /// Programs the buffer's first `len` bytes (staged with [`SyncIo::put`]) at `addr`.
    /// Out of line: one copy of the call and its error's mapping for every write.
    #[inline(never)]
    pub fn write_blocking(&mut self, addr: u32, len: usize) -> Res<(), N::Error> {
        core::hint::black_box(&*self); // See the type's doc.
        self.flash
            .nor_write(addr, self.buf.get(..len).unwrap_or(&self.buf[..]))
            .map_err(FlashError::Flash)
    }

    /// Erases `from..to`.
    pub fn erase_blocking(&mut self, from: u32, to: u32) -> Res<(), N::Error> {
        core::hint::black_box(&*self); // See the type's doc.
        self.flash.nor_erase(from, to).map_err(FlashError::Flash)
    }
}

/// Runs the core's `work` to completion on an async flash, awaiting each request it leaves
/// in `io`. Dropped midway, it leaves `io` marked in flight ([`Io::interrupted`]).
pub(crate) async fn drive_async<F: embedded_storage_async::nor_flash::NorFlash, R>(
    flash: &mut F,
    io: &Io<F::Error>,
    work: impl Future<Output = R>,
) -> R {
    let mut work = pin!(work);
    loop {
        let step = poll_fn(|cx| match work.as_mut().poll(cx) {
            Poll::Ready(r) => Poll::Ready(Some(r)),
            Poll::Pending => Poll::Ready(None),
        })
        .await;
        if let Some(r) = step {
            return r;
        }
        let r = match io.req.replace(Req::Idle) {
            Req::Idle => Ok(()),
            Req::Read { addr, len } => {
                let mut b = [0u8; SCRATCH];
                let r = flash.read(addr, &mut b[..usize::from(len)]).await;
                io.buf.set(b);
                r
            }
            Req::Write { addr, len } => {
                let b = io.buf.get();
                flash.write(addr, &b[..usize::from(len)]).await
            }
            Req::Erase { from, to } => flash.erase(from, to).await,
        };
        if let Err(e) = r {
            io.err.set(Some(e));
        }
    }
}
