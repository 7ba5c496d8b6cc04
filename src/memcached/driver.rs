//! The connection driver: one memcached text-protocol connection, sans IO.
//!
//! A [`Driver`] owns a connection's input buffer and the [`Parser`]; the caller moves bytes
//! in (from a socket, a UART, a test) and replies out (to an [`embedded_io::Write`] sink):
//!
//! ```text
//! loop {
//!     let n = read(driver.space());           // or driver.feed(bytes)
//!     driver.fill(n);
//!     while driver.step(&mut engine, &now, &mut out)? != Event::Need {
//!         send(&out); out.clear();            // drain the sink as often as suits
//!     }
//! }
//! ```
//!
//! Each [`Driver::step`] does a bounded amount of work: one command, or one key of a
//! multi-get (so a reply of thousands of keys streams out key by key, never held whole).
//! The driver frames lines and data blocks and handles the bad input a wire delivers:
//! - a data block over the item limit is answered `SERVER_ERROR object too large for cache`
//!   and discarded as it arrives, never buffered;
//! - a line longer than the line limit is answered `CLIENT_ERROR line too long`, then either
//!   the connection closes (memcached's choice, [`LongLines::Close`]) or the driver drops
//!   bytes up to the next newline and reads on ([`LongLines::Resync`], for a UART, which
//!   cannot be closed);
//! - a data block not followed by `\r\n` (a byte lost on the wire) is answered
//!   `CLIENT_ERROR bad data chunk` and reading goes on after it, as memcached does; a
//!   command that never completes can be dropped with [`Driver::reset`].
//!
//! # Buffers
//! The input buffer is a [`Buffer`]: `[u8; N]` (fixed, for firmware; the whole connection
//! then costs `N` bytes and a few words) or, with feature `std`, a `GrowBuf` that grows
//! only while a large command arrives. A buffer of [`Parser::buffer_size`] bytes always
//! holds a whole command; [`Driver::new`] lowers the item limit to fit a smaller one.
//!
//! # Output
//! The sink is any [`embedded_io::Write`]: a `heapless::Vec<u8, N>` (fixed memory), a
//! `Vec<u8>`, a UART. When a write fails (a `heapless::Vec` that is full, a closed socket),
//! [`Driver::step`] returns a [`WriteError`] saying how many bytes of the unfinished reply
//! reached the sink; the command has taken effect, the rest of a multi-get is dropped, and
//! the next step first writes `SERVER_ERROR reply larger than the output buffer`. A
//! buffer sink drops the unfinished bytes and carries on, so the client sees a well-formed
//! error line; a stream sink is broken and its connection should close.

use embedded_io::Write;

use super::parse::{Command, Keys, Parser, Step};
use super::{Memcached, Now, Outcome, Scratch, Sink, Store};

/// The line written after a reply that did not fit in the sink.
pub const REPLY_TOO_LARGE: &[u8] = b"SERVER_ERROR reply larger than the output buffer\r\n";
const END: &[u8] = b"END\r\n";

/// What executes commands for a [`Driver`] whose replies go to a `W`: the [`Memcached`]
/// engine (for any sink), or a wrapper of it (a server adding its own `stats` or writing
/// into its own sink type, a test checking every reply).
pub trait Handler<W: Write> {
    /// Runs what is due at `now` (a delayed `flush_all`); called before a multi-get.
    fn tick(&mut self, now: &Now);
    /// Executes a command other than a retrieval, writing its reply into `out`.
    fn execute(&mut self, cmd: &Command<'_>, now: &Now, out: &mut Reply<'_, W>) -> Outcome;
    /// One key of a retrieval (`touch`: `gat`'s exptime): its `VALUE` block on a hit.
    fn get_one(
        &mut self,
        key: &[u8],
        cas: bool,
        touch: Option<i64>,
        now: &Now,
        out: &mut Reply<'_, W>,
    );
}

impl<W: Write, S: Store, const V: usize, B: Scratch> Handler<W> for Memcached<S, V, B> {
    fn tick(&mut self, now: &Now) {
        Memcached::tick(self, now);
    }
    fn execute(&mut self, cmd: &Command<'_>, now: &Now, out: &mut Reply<'_, W>) -> Outcome {
        Memcached::execute(self, cmd, now, out)
    }
    fn get_one(
        &mut self,
        key: &[u8],
        cas: bool,
        touch: Option<i64>,
        now: &Now,
        out: &mut Reply<'_, W>,
    ) {
        Memcached::get_one(self, key, cas, touch, now, out);
    }
}

impl<W: Write, T: Handler<W> + ?Sized> Handler<W> for &mut T {
    fn tick(&mut self, now: &Now) {
        T::tick(self, now);
    }
    fn execute(&mut self, cmd: &Command<'_>, now: &Now, out: &mut Reply<'_, W>) -> Outcome {
        T::execute(self, cmd, now, out)
    }
    fn get_one(
        &mut self,
        key: &[u8],
        cas: bool,
        touch: Option<i64>,
        now: &Now,
        out: &mut Reply<'_, W>,
    ) {
        T::get_one(self, key, cas, touch, now, out);
    }
}

/// A connection's input buffer.
pub trait Buffer {
    /// The bytes now allocated (all of them for a fixed buffer).
    fn bytes(&self) -> &[u8];
    /// The same, mutably.
    fn bytes_mut(&mut self) -> &mut [u8];
    /// The most bytes the buffer can ever hold.
    fn capacity(&self) -> usize {
        self.bytes().len()
    }
    /// Grows (if it can) because the buffered bytes fill it; fixed buffers do nothing.
    fn grow(&mut self) {}
    /// Called when the buffer is empty: a growable buffer returns to its resting size.
    fn rest(&mut self) {}
}

impl<const N: usize> Buffer for [u8; N] {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

/// A heap buffer that starts small, doubles while one command does not fit (up to its
/// capacity) and shrinks back once it is empty: a connection costs its resting size between
/// large commands.
#[cfg(feature = "std")]
#[derive(Clone, Debug)]
pub struct GrowBuf {
    bytes: std::vec::Vec<u8>,
    small: usize,
    max: usize,
}

#[cfg(feature = "std")]
impl GrowBuf {
    /// A buffer resting at `small` bytes, growing up to `max` (at least `small`).
    pub fn new(small: usize, max: usize) -> Self {
        let small = small.clamp(1, max.max(1));
        GrowBuf {
            bytes: std::vec![0; small],
            small,
            max: max.max(small),
        }
    }
}

#[cfg(feature = "std")]
impl Buffer for GrowBuf {
    fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
    fn capacity(&self) -> usize {
        self.max
    }
    fn grow(&mut self) {
        let len = self.bytes.len().saturating_mul(2).min(self.max);
        self.bytes.resize(len, 0);
    }
    fn rest(&mut self) {
        if self.bytes.len() > self.small {
            self.bytes.truncate(self.small);
            self.bytes.shrink_to_fit();
        }
    }
}

/// What to do with a command line longer than the line limit (after answering
/// `CLIENT_ERROR line too long`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LongLines {
    /// Close the connection, as memcached does.
    Close,
    /// Drop bytes up to the next newline and read on (a link that cannot be closed).
    Resync,
}

/// What a [`Driver::step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event {
    /// Nothing left to do with the buffered bytes: read more.
    Need,
    /// A command, or one key of a multi-get, was handled (its reply, if any, is in the
    /// sink): call again.
    Progress,
    /// The connection is over (`quit`, or a long line under [`LongLines::Close`]): send
    /// what the sink holds and close.
    Close,
}

/// A reply that did not fit in the sink, or a sink that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WriteError<E> {
    /// The sink's error; `None` when it accepted no bytes (`Ok(0)`).
    pub error: Option<E>,
    /// Bytes of the unfinished reply that reached the sink (drop them from a buffer sink).
    pub written: usize,
}

impl<E: core::fmt::Debug> core::fmt::Display for WriteError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.error {
            Some(e) => write!(f, "reply sink failed after {} bytes: {e:?}", self.written),
            None => write!(f, "reply sink full after {} bytes", self.written),
        }
    }
}

impl<E: core::fmt::Debug> core::error::Error for WriteError<E> {}

/// A multi-get in progress: its line stays in the buffer until the last key is answered.
/// Offsets are from the start of the unconsumed bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Multi {
    /// The keys not yet answered: `pos..end`.
    pos: usize,
    end: usize,
    /// The line's length, newline included.
    used: usize,
    cas: bool,
    touch: Option<i64>,
}

/// One memcached connection, sans IO: see the [module documentation](crate::memcached::driver).
#[derive(Clone, Debug)]
pub struct Driver<B> {
    parser: Parser,
    buf: B,
    start: usize,
    end: usize,
    long_lines: LongLines,
    /// Dropping bytes up to the next newline after a long line.
    discarding: bool,
    multi: Option<Multi>,
    owed: Option<&'static [u8]>,
    closed: bool,
}

impl<B: Buffer> Driver<B> {
    /// A connection reading into `buf`, accepting data blocks of up to `item_max` bytes and
    /// command lines of up to `line_max` bytes (newline included). Both are lowered to fit
    /// the buffer's capacity: the line limit to the capacity, the item limit to what a
    /// longest line leaves. Long lines close the connection (see
    /// [`Driver::long_lines`]).
    pub fn new(buf: B, item_max: usize, line_max: usize) -> Self {
        let cap = buf.capacity();
        let line_max = line_max.clamp(1, cap.max(1));
        let item_max = item_max.min(cap.saturating_sub(line_max + 2));
        Driver {
            parser: Parser::new(item_max, line_max),
            buf,
            start: 0,
            end: 0,
            long_lines: LongLines::Close,
            discarding: false,
            multi: None,
            owed: None,
            closed: false,
        }
    }

    /// Sets what a line over the limit does.
    pub fn long_lines(mut self, long_lines: LongLines) -> Self {
        self.long_lines = long_lines;
        self
    }

    /// The item limit in data bytes (after fitting the buffer).
    pub const fn item_max(&self) -> usize {
        self.parser.item_max()
    }

    /// The bytes buffered and not yet consumed.
    pub const fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// True when part of a command is here (buffered, or a too-large data block or a long
    /// line still being dropped): a deadline for the command runs.
    pub const fn partial(&self) -> bool {
        self.start < self.end || self.parser.skipping() || self.discarding
    }

    /// True while a too-large data block or a long line is being dropped: the bytes that
    /// arrive belong to a command already answered.
    pub const fn skipping(&self) -> bool {
        self.parser.skipping() || self.discarding
    }

    /// True once the connection is over ([`Event::Close`]).
    pub const fn closed(&self) -> bool {
        self.closed
    }

    /// Free room to read into (compacting the buffer, and growing a growable one when a
    /// command needs it). Empty only when the connection is closed, or while a multi-get
    /// fills the buffer (call [`Driver::step`]).
    pub fn space(&mut self) -> &mut [u8] {
        if self.closed {
            return &mut [];
        }
        if self.start == self.end && self.multi.is_none() {
            self.start = 0;
            self.end = 0;
            self.buf.rest();
        } else if self.end == self.buf.bytes().len() && self.start > 0 {
            self.buf.bytes_mut().copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.bytes().len() {
            self.buf.grow();
        }
        let end = self.end;
        self.buf.bytes_mut().get_mut(end..).unwrap_or(&mut [])
    }

    /// Records that the first `n` bytes of [`Driver::space`] were filled.
    pub fn fill(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.bytes().len());
    }

    /// Copies as much of `bytes` as there is room for; returns how many were taken (call
    /// [`Driver::step`] until [`Event::Need`], then feed the rest).
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        let space = self.space();
        let n = space.len().min(bytes.len());
        space[..n].copy_from_slice(&bytes[..n]);
        self.fill(n);
        n
    }

    /// Drops the unfinished command (buffered bytes, a data block being discarded, a long
    /// line being dropped), for a link where a command that stalls means lost bytes. True
    /// when there was one. A multi-get in progress still finishes.
    pub fn reset(&mut self) -> bool {
        let keep = self.multi.map_or(0, |m| m.used).min(self.end - self.start);
        let was = self.end - self.start > keep || self.parser.skipping() || self.discarding;
        self.end = self.start + keep;
        self.parser.reset();
        self.discarding = false;
        was
    }

    /// Handles the next command (or the next key of a multi-get) in the buffered bytes,
    /// writing its reply into `out`; see [`Event`] and [`WriteError`].
    pub fn step<W: Write, H: Handler<W>>(
        &mut self,
        handler: &mut H,
        now: &Now,
        out: &mut W,
    ) -> Result<Event, WriteError<W::Error>> {
        if self.closed {
            return Ok(Event::Close);
        }
        let mut o = Reply::new(out);
        if let Some(line) = self.owed.take() {
            o.put(line);
            // An error line that does not fit either is dropped, so this cannot loop.
            o.check()?;
            return Ok(Event::Progress);
        }
        if let Some(m) = self.multi {
            return self.next_key(m, handler, now, o);
        }
        loop {
            let pending = &self.buf.bytes()[self.start..self.end];
            if self.discarding {
                match pending.iter().position(|&b| b == b'\n') {
                    Some(nl) => {
                        self.start += nl + 1;
                        self.discarding = false;
                        continue;
                    }
                    None => {
                        self.start = self.end;
                        return Ok(Event::Need);
                    }
                }
            }
            match self.parser.next(pending) {
                Step::Need => return Ok(Event::Need),
                Step::Skip(n) => self.start += n,
                Step::Close { reply } => {
                    o.put(reply);
                    match self.long_lines {
                        LongLines::Close => {
                            self.closed = true;
                            o.check()?;
                            return Ok(Event::Close);
                        }
                        LongLines::Resync => {
                            self.discarding = true;
                            o.check()
                                .inspect_err(|_| self.owed = Some(REPLY_TOO_LARGE))?;
                            return Ok(Event::Progress);
                        }
                    }
                }
                Step::Command { cmd, used } => {
                    let (keys, cas, touch) = match cmd {
                        Command::Get { keys, cas } => (keys, cas, None),
                        Command::Gat { exptime, keys, cas } => (keys, cas, Some(exptime)),
                        cmd => {
                            let outcome = handler.execute(&cmd, now, &mut o);
                            self.start += used;
                            if outcome == Outcome::Close {
                                self.closed = true;
                                o.check()?;
                                return Ok(Event::Close);
                            }
                            o.check()
                                .inspect_err(|_| self.owed = Some(REPLY_TOO_LARGE))?;
                            return Ok(Event::Progress);
                        }
                    };
                    let list = keys.as_bytes();
                    // The key list is a tail of the line, which starts at `pending[0]`.
                    let pos = (list.as_ptr() as usize).wrapping_sub(pending.as_ptr() as usize);
                    debug_assert!(pos + list.len() <= used);
                    let m = Multi {
                        pos,
                        end: pos + list.len(),
                        used,
                        cas,
                        touch,
                    };
                    handler.tick(now);
                    return self.next_key(m, handler, now, o);
                }
            }
        }
    }

    /// Answers the next key of a multi-get; the last one also writes `END` and consumes the
    /// line.
    fn next_key<W: Write, H: Handler<W>>(
        &mut self,
        mut m: Multi,
        handler: &mut H,
        now: &Now,
        mut o: Reply<'_, W>,
    ) -> Result<Event, WriteError<W::Error>> {
        let line = &self.buf.bytes()[self.start..self.end];
        let list = line.get(m.pos..m.end).unwrap_or(&[]);
        let mut keys = Keys::new(list);
        if let Some(key) = keys.next() {
            handler.get_one(key, m.cas, m.touch, now, &mut o);
            m.pos = m.end - keys.as_bytes().len();
        }
        let last = Keys::new(line.get(m.pos..m.end).unwrap_or(&[]))
            .next()
            .is_none();
        if last {
            o.put(END);
            self.multi = None;
            self.start += m.used;
        } else {
            self.multi = Some(m);
        }
        if let Err(e) = o.check() {
            if !last {
                self.multi = None;
                self.start += m.used;
            }
            self.owed = Some(REPLY_TOO_LARGE);
            return Err(e);
        }
        Ok(Event::Progress)
    }
}

/// The reply of one step: a [`Sink`] over the driver's [`embedded_io::Write`] that stops
/// at the first failed write and remembers it (the driver then returns a [`WriteError`]).
pub struct Reply<'a, W: Write> {
    w: &'a mut W,
    written: usize,
    failed: Option<Option<W::Error>>,
}

impl<'a, W: Write> Reply<'a, W> {
    fn new(w: &'a mut W) -> Self {
        Reply {
            w,
            written: 0,
            failed: None,
        }
    }

    /// The sink itself, for a handler that writes into its own sink type directly (what
    /// it writes there is not counted in [`WriteError::written`] and cannot fail the step).
    pub fn sink(&mut self) -> &mut W {
        self.w
    }

    fn check(&mut self) -> Result<(), WriteError<W::Error>> {
        match self.failed.take() {
            None => Ok(()),
            Some(error) => Err(WriteError {
                error,
                written: self.written,
            }),
        }
    }
}

impl<W: Write> core::fmt::Debug for Reply<'_, W> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Reply")
            .field("written", &self.written)
            .field("failed", &self.failed.is_some())
            .finish_non_exhaustive()
    }
}

impl<W: Write> Sink for Reply<'_, W> {
    fn put(&mut self, mut bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        while !bytes.is_empty() {
            match self.w.write(bytes) {
                Ok(0) => {
                    self.failed = Some(None);
                    return;
                }
                Ok(n) => {
                    let n = n.min(bytes.len());
                    self.written += n;
                    bytes = &bytes[n..];
                }
                Err(e) => {
                    self.failed = Some(Some(e));
                    return;
                }
            }
        }
    }
}
