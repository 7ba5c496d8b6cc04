//! A NOR flash model for tests (internal feature `_mock`, not covered by semver).
//!
//! It enforces what real NOR flash demands and a careless driver gets wrong: erase sets a
//! page to 0xFF; reads are aligned to `READ_SIZE` and writes to `WRITE_SIZE`; a word is
//! written at most once between erases. It can cut the power after any byte of a write or
//! during an erase (the page then holds garbage), and it counts every read, write and erase.

use std::vec;
use std::vec::Vec;

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// What the mock flash refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MockError {
    /// Offset or length not aligned to `READ_SIZE` (reads), `WRITE_SIZE` (writes) or the
    /// page (erases).
    NotAligned,
    /// Outside the flash.
    OutOfBounds,
    /// A word written a second time without an erase in between.
    DoubleWrite,
    /// The power is off (cut by [`MockFlash::cut_after`]).
    PowerOff,
}

impl NorFlashError for MockError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            MockError::NotAligned => NorFlashErrorKind::NotAligned,
            MockError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            _ => NorFlashErrorKind::Other,
        }
    }
}

/// `PAGES` pages of `PAGE_SIZE` bytes, written in words of `WRITE_SIZE` bytes and read in
/// units of `READ_SIZE` bytes (offset and length both multiples of it).
#[derive(Clone, Debug)]
pub struct MockFlash<
    const PAGES: usize,
    const PAGE_SIZE: usize,
    const WRITE_SIZE: usize,
    const READ_SIZE: usize = 1,
> {
    data: Vec<u8>,
    written: Vec<bool>,
    cut: Option<u64>,
    powered: bool,
    events: u64,
    rng: u64,
    reads: u64,
    bytes_read: u64,
    writes: u64,
    bytes_written: u64,
    erases: Vec<u32>,
    rewrite: bool,
    yields: bool,
}

impl<
        const PAGES: usize,
        const PAGE_SIZE: usize,
        const WRITE_SIZE: usize,
        const READ_SIZE: usize,
    > Default for MockFlash<PAGES, PAGE_SIZE, WRITE_SIZE, READ_SIZE>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<
        const PAGES: usize,
        const PAGE_SIZE: usize,
        const WRITE_SIZE: usize,
        const READ_SIZE: usize,
    > MockFlash<PAGES, PAGE_SIZE, WRITE_SIZE, READ_SIZE>
{
    /// A fully erased flash with the power on.
    pub fn new() -> Self {
        const {
            assert!(WRITE_SIZE >= 1 && PAGE_SIZE % WRITE_SIZE == 0 && PAGES >= 1);
            assert!(READ_SIZE >= 1 && PAGE_SIZE % READ_SIZE == 0);
        }
        MockFlash {
            data: vec![0xff; PAGES * PAGE_SIZE],
            written: vec![false; PAGES * PAGE_SIZE / WRITE_SIZE],
            cut: None,
            powered: true,
            events: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            reads: 0,
            bytes_read: 0,
            writes: 0,
            bytes_written: 0,
            erases: vec![0; PAGES],
            rewrite: false,
            yields: false,
        }
    }

    /// Makes each call of the async face (`embedded_storage_async`) return `Pending` once
    /// before it runs, as a driver waiting for the hardware does. Off by default.
    pub fn yield_each_call(&mut self, on: bool) {
        self.yields = on;
    }

    /// Cuts the power after `events` more events (an event is one byte written or one
    /// erase): those happen, the next one does not. An erase cut this way leaves its page
    /// holding garbage. Every operation then fails with [`MockError::PowerOff`].
    pub fn cut_after(&mut self, events: u64) {
        self.cut = Some(events);
    }

    /// Lets a written word be written again before an erase (bits still only go from 1
    /// to 0), as `MultiwriteNorFlash` parts allow. Off by default.
    pub fn allow_rewrite(&mut self, on: bool) {
        self.rewrite = on;
    }

    /// Restores the power and cancels any pending cut (a reboot).
    pub fn power_on(&mut self) {
        self.powered = true;
        self.cut = None;
    }

    /// False after a cut, until [`MockFlash::power_on`].
    pub fn is_powered(&self) -> bool {
        self.powered
    }

    /// Events (bytes written and erases) since creation.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Read calls.
    pub fn reads(&self) -> u64 {
        self.reads
    }

    /// Bytes read.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Write calls.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// Bytes written.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Erases of page `page`.
    pub fn erases(&self, page: usize) -> u32 {
        self.erases.get(page).copied().unwrap_or(0)
    }

    /// Erases over all pages.
    pub fn total_erases(&self) -> u64 {
        self.erases.iter().map(|&e| u64::from(e)).sum()
    }

    /// Sets every counter (reads, writes, bytes, erases) back to zero.
    pub fn reset_counters(&mut self) {
        self.reads = 0;
        self.bytes_read = 0;
        self.writes = 0;
        self.bytes_written = 0;
        self.erases.iter_mut().for_each(|e| *e = 0);
    }

    /// The raw contents.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// Overwrites one byte as corruption would (bypassing the NOR rules); its word then
    /// counts as written, unless the byte is 0xFF (as after an erase: on NOR flash an
    /// erased-looking word can be programmed).
    pub fn corrupt(&mut self, offset: usize, byte: u8) {
        if let Some(b) = self.data.get_mut(offset) {
            *b = byte;
            if byte != 0xff {
                self.written[offset / WRITE_SIZE] = true;
            }
        }
    }

    fn next_random(&mut self) -> u8 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 24) as u8
    }

    /// Counts one event; false when the power goes off instead.
    fn event(&mut self) -> bool {
        match self.cut {
            Some(0) => {
                self.powered = false;
                self.cut = None;
                false
            }
            Some(n) => {
                self.cut = Some(n - 1);
                self.events += 1;
                true
            }
            None => {
                self.events += 1;
                true
            }
        }
    }
}

impl<
        const PAGES: usize,
        const PAGE_SIZE: usize,
        const WRITE_SIZE: usize,
        const READ_SIZE: usize,
    > ErrorType for MockFlash<PAGES, PAGE_SIZE, WRITE_SIZE, READ_SIZE>
{
    type Error = MockError;
}

impl<
        const PAGES: usize,
        const PAGE_SIZE: usize,
        const WRITE_SIZE: usize,
        const READ_SIZE: usize,
    > ReadNorFlash for MockFlash<PAGES, PAGE_SIZE, WRITE_SIZE, READ_SIZE>
{
    const READ_SIZE: usize = READ_SIZE;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), MockError> {
        if !self.powered {
            return Err(MockError::PowerOff);
        }
        let start = offset as usize;
        if start % READ_SIZE != 0 || bytes.len() % READ_SIZE != 0 {
            return Err(MockError::NotAligned);
        }
        let src = start
            .checked_add(bytes.len())
            .and_then(|end| self.data.get(start..end))
            .ok_or(MockError::OutOfBounds)?;
        bytes.copy_from_slice(src);
        self.reads += 1;
        self.bytes_read += bytes.len() as u64;
        Ok(())
    }

    fn capacity(&self) -> usize {
        PAGES * PAGE_SIZE
    }
}

impl<
        const PAGES: usize,
        const PAGE_SIZE: usize,
        const WRITE_SIZE: usize,
        const READ_SIZE: usize,
    > NorFlash for MockFlash<PAGES, PAGE_SIZE, WRITE_SIZE, READ_SIZE>
{
    const WRITE_SIZE: usize = WRITE_SIZE;
    const ERASE_SIZE: usize = PAGE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), MockError> {
        if !self.powered {
            return Err(MockError::PowerOff);
        }
        let (from, to) = (from as usize, to as usize);
        if from % PAGE_SIZE != 0 || to % PAGE_SIZE != 0 || from > to {
            return Err(MockError::NotAligned);
        }
        if to > self.data.len() {
            return Err(MockError::OutOfBounds);
        }
        for page in from / PAGE_SIZE..to / PAGE_SIZE {
            let range = page * PAGE_SIZE..(page + 1) * PAGE_SIZE;
            if !self.event() {
                for i in range.clone() {
                    self.data[i] = self.next_random();
                }
                let words = page * PAGE_SIZE / WRITE_SIZE..(page + 1) * PAGE_SIZE / WRITE_SIZE;
                self.written[words].iter_mut().for_each(|w| *w = true);
                return Err(MockError::PowerOff);
            }
            self.data[range].fill(0xff);
            let words = page * PAGE_SIZE / WRITE_SIZE..(page + 1) * PAGE_SIZE / WRITE_SIZE;
            self.written[words].iter_mut().for_each(|w| *w = false);
            self.erases[page] += 1;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), MockError> {
        if !self.powered {
            return Err(MockError::PowerOff);
        }
        let start = offset as usize;
        if start % WRITE_SIZE != 0 || bytes.len() % WRITE_SIZE != 0 {
            return Err(MockError::NotAligned);
        }
        let end = start
            .checked_add(bytes.len())
            .filter(|&e| e <= self.data.len())
            .ok_or(MockError::OutOfBounds)?;
        if !self.rewrite
            && self.written[start / WRITE_SIZE..end / WRITE_SIZE]
                .iter()
                .any(|&w| w)
        {
            return Err(MockError::DoubleWrite);
        }
        self.writes += 1;
        for (i, &b) in bytes.iter().enumerate() {
            if !self.event() {
                return Err(MockError::PowerOff);
            }
            let at = start + i;
            self.written[at / WRITE_SIZE] = true;
            // NOR programming only clears bits.
            self.data[at] &= b;
            self.bytes_written += 1;
        }
        Ok(())
    }
}

/// Returns `Pending` once (waking itself), then `Ready`: an async flash call that yields to
/// the executor, as a real driver waiting for the hardware does.
struct YieldOnce(bool);

impl core::future::Future for YieldOnce {
    type Output = ();

    fn poll(
        mut self: core::pin::Pin<&mut Self>,
        cx: &mut core::task::Context<'_>,
    ) -> core::task::Poll<()> {
        if self.0 {
            core::task::Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            core::task::Poll::Pending
        }
    }
}

/// The same flash as an async NOR flash (`embedded_storage_async`), for the async
/// persistent backend; with [`MockFlash::yield_each_call`], each call first returns
/// `Pending` once.
impl<
        const PAGES: usize,
        const PAGE_SIZE: usize,
        const WRITE_SIZE: usize,
        const READ_SIZE: usize,
    > embedded_storage_async::nor_flash::ReadNorFlash
    for MockFlash<PAGES, PAGE_SIZE, WRITE_SIZE, READ_SIZE>
{
    const READ_SIZE: usize = READ_SIZE;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), MockError> {
        if self.yields {
            YieldOnce(false).await;
        }
        ReadNorFlash::read(self, offset, bytes)
    }

    fn capacity(&self) -> usize {
        PAGES * PAGE_SIZE
    }
}

impl<
        const PAGES: usize,
        const PAGE_SIZE: usize,
        const WRITE_SIZE: usize,
        const READ_SIZE: usize,
    > embedded_storage_async::nor_flash::NorFlash
    for MockFlash<PAGES, PAGE_SIZE, WRITE_SIZE, READ_SIZE>
{
    const WRITE_SIZE: usize = WRITE_SIZE;
    const ERASE_SIZE: usize = PAGE_SIZE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), MockError> {
        if self.yields {
            YieldOnce(false).await;
        }
        NorFlash::erase(self, from, to)
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), MockError> {
        if self.yields {
            YieldOnce(false).await;
        }
        NorFlash::write(self, offset, bytes)
    }
}
