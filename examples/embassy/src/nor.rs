//! NOR flash in RAM behind the async flash traits
//! (`embedded_storage_async::nor_flash::{ReadNorFlash, NorFlash}`), the interface embassy's
//! flash drivers implement.
//!
//! The cells live in a `static` [`Cells`], so they outlast every driver made over them: a
//! simulated reboot makes a new [`RamNor`] over the same cells, as firmware makes a new
//! driver over the same flash after a reset. NOR rules hold: an erase sets a page to `0xFF`,
//! a write can only clear bits (it ANDs into the cells), writes are aligned to
//! [`RamNor::WRITE_SIZE`] and erases to [`RamNor::ERASE_SIZE`]. Each operation first yields
//! to the executor once, as a real driver awaits its flash controller, so other tasks run
//! while the flash "erases". The cells count the operations that ran with interrupts
//! masked ([`Cells::masked`]): a front end holding a critical section across its flash work
//! shows there.

use core::cell::RefCell;
use core::sync::atomic::{AtomicU32, Ordering};

use embassy_futures::yield_now;
use embassy_sync::blocking_mutex::raw::ThreadModeRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embedded_storage_async::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// Page size: the unit of erase.
pub const PAGE: usize = 512;

/// Why an operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum RamNorError {
    /// Offset or length not a multiple of the operation's unit.
    NotAligned,
    /// Outside the flash.
    OutOfBounds,
}

impl NorFlashError for RamNorError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            RamNorError::NotAligned => NorFlashErrorKind::NotAligned,
            RamNorError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
        }
    }
}

/// `SIZE` bytes of flash cells, and how many page erases they have seen. Zero bytes when
/// new, so a `static` of it sits in `.bss`; the cache's open treats pages of zeros as not
/// formatted.
pub struct Cells<const SIZE: usize> {
    // Thread mode only (the executor's tasks), so no critical section is ever taken.
    bytes: Mutex<ThreadModeRawMutex, RefCell<[u8; SIZE]>>,
    erases: AtomicU32,
    masked: AtomicU32,
}

impl<const SIZE: usize> Cells<SIZE> {
    /// All-zero cells.
    pub const fn new() -> Self {
        Cells {
            bytes: Mutex::new(RefCell::new([0; SIZE])),
            erases: AtomicU32::new(0),
            masked: AtomicU32::new(0),
        }
    }

    /// Pages erased so far, by every driver over these cells.
    pub fn erases(&self) -> u32 {
        self.erases.load(Ordering::Relaxed)
    }

    /// Operations (reads, writes, erases) that ran with interrupts masked (PRIMASK set):
    /// a caller that holds a critical section across the flash's work.
    pub fn masked(&self) -> u32 {
        self.masked.load(Ordering::Relaxed)
    }

    fn with<R>(&self, f: impl FnOnce(&mut [u8; SIZE]) -> R) -> R {
        if cortex_m::register::primask::read().is_inactive() {
            self.masked.fetch_add(1, Ordering::Relaxed);
        }
        self.bytes.lock(|cells| f(&mut cells.borrow_mut()))
    }
}

/// An async NOR flash driver over [`Cells`] in a `static`: pages of [`PAGE`] bytes,
/// written in 4-byte words, read in bytes.
pub struct RamNor<const SIZE: usize> {
    cells: &'static Cells<SIZE>,
}

impl<const SIZE: usize> RamNor<SIZE> {
    /// A driver over `cells` (what the flash held before stays).
    pub fn new(cells: &'static Cells<SIZE>) -> Self {
        RamNor { cells }
    }

    /// The cells `offset..offset + len`, both multiples of `align`.
    fn range(
        offset: u32,
        len: usize,
        align: usize,
    ) -> Result<core::ops::Range<usize>, RamNorError> {
        let start = offset as usize;
        if !start.is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(RamNorError::NotAligned);
        }
        let end = start.checked_add(len).ok_or(RamNorError::OutOfBounds)?;
        if end > SIZE {
            return Err(RamNorError::OutOfBounds);
        }
        Ok(start..end)
    }
}

impl<const SIZE: usize> ErrorType for RamNor<SIZE> {
    type Error = RamNorError;
}

impl<const SIZE: usize> ReadNorFlash for RamNor<SIZE> {
    const READ_SIZE: usize = 1;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let r = Self::range(offset, bytes.len(), Self::READ_SIZE)?;
        yield_now().await;
        self.cells.with(|cells| bytes.copy_from_slice(&cells[r]));
        Ok(())
    }

    fn capacity(&self) -> usize {
        SIZE
    }
}

impl<const SIZE: usize> NorFlash for RamNor<SIZE> {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = PAGE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        let len = to.checked_sub(from).ok_or(RamNorError::OutOfBounds)? as usize;
        let r = Self::range(from, len, Self::ERASE_SIZE)?;
        yield_now().await;
        self.cells.with(|cells| cells[r].fill(0xFF));
        let pages = (len / Self::ERASE_SIZE) as u32;
        self.cells.erases.fetch_add(pages, Ordering::Relaxed);
        Ok(())
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let r = Self::range(offset, bytes.len(), Self::WRITE_SIZE)?;
        yield_now().await;
        self.cells.with(|cells| {
            for (cell, b) in cells[r].iter_mut().zip(bytes) {
                *cell &= b;
            }
        });
        Ok(())
    }
}
