//! The I/O seam between the log and a flash: the core asks, a driver performs.
//!
//! The log's three flash primitives (read a chunk, program a chunk, erase a range) are
//! `async fn`s of [`Io`] that put a request into a small slot and return `Pending` once;
//! everything above them (mount and replay, compaction, the batch writer, flush) is an
//! `async fn` over that slot. The core thus holds no flash and performs no I/O: a driver
//! polls the core's future, performs each request it finds in the slot on the real flash
//! and polls again. Two drivers, one per flash trait: [`drive`] for the blocking
//! `embedded_storage::nor_flash::NorFlash` (a no-op waker, a loop) and [`drive_async`] for
//! `embedded_storage_async::nor_flash::NorFlash`. So the log logic exists once.
//!
//! A request carries at most [`SCRATCH`] bytes (the slot's buffer); the core splits
//! longer reads and writes. While a request is out, the slot is marked in flight: if the
//! driver's future is dropped there (its task cancelled), the mark stays and the front end
//! recovers before its next operation ([`Io::interrupted`]).

use core::cell::Cell;
use core::fmt::Debug;
use core::future::{poll_fn, Future};
use core::marker::PhantomData;
use core::pin::{pin, Pin};
use core::task::{Context, Poll, Waker};

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
}

impl<F: embedded_storage_async::nor_flash::NorFlash> Geometry for Async<F> {
    type Error = F::Error;
    const READ_SIZE: usize = F::READ_SIZE;
    const WRITE_SIZE: usize = F::WRITE_SIZE;
    const ERASE_SIZE: usize = F::ERASE_SIZE;
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
            buf: Cell::new([0xff; SCRATCH]),
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
        out.copy_from_slice(&b[skip..skip + out.len()]);
    }

    /// Puts `bytes` at `at` of the buffer of the next write.
    pub fn stage(&self, at: usize, bytes: &[u8]) {
        let mut b = self.buf.get();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        self.buf.set(b);
    }

    /// Asks to program the buffer's first `len` bytes (staged with [`Io::stage`]) at
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

/// Performs the slot's request on a blocking flash.
fn perform<F: embedded_storage::nor_flash::NorFlash>(flash: &mut F, io: &Io<F::Error>) {
    let r = match io.req.replace(Req::Idle) {
        Req::Idle => Ok(()),
        Req::Read { addr, len } => {
            let mut b = [0u8; SCRATCH];
            let r = flash.read(addr, &mut b[..usize::from(len)]);
            io.buf.set(b);
            r
        }
        Req::Write { addr, len } => {
            let b = io.buf.get();
            flash.write(addr, &b[..usize::from(len)])
        }
        Req::Erase { from, to } => flash.erase(from, to),
    };
    if let Err(e) = r {
        io.err.set(Some(e));
    }
}

/// Runs the core's `work` (a future) to completion on a blocking flash: polls it with a
/// no-op waker and performs each request it leaves in `io`. A macro, so that the future is
/// built in place, pinned on the caller's stack, never moved (a future holds the buffers of
/// every call it awaits: a copy would double the stack).
macro_rules! drive {
    ($flash:expr, $io:expr, $work:expr) => {{
        let work = core::pin::pin!($work);
        $crate::flash::io::run($flash, $io, work)
    }};
}
pub(crate) use drive;

/// [`drive`]'s loop, compiled once per flash and answer type rather than per future.
#[inline(never)]
pub(crate) fn run<F: embedded_storage::nor_flash::NorFlash, R>(
    flash: &mut F,
    io: &Io<F::Error>,
    mut work: Pin<&mut dyn Future<Output = R>>,
) -> R {
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(r) = work.as_mut().poll(&mut cx) {
            return r;
        }
        perform(flash, io);
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
