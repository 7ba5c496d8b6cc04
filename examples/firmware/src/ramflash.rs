//! A NOR flash in RAM for the firmware's persistence scenario: erase sets bytes to 0xFF,
//! a write can only clear bits (it ANDs into the cells, as NOR does), writes are aligned to
//! `WRITE_SIZE`, erases to `ERASE_SIZE`. [`AsyncRamFlash`] puts it behind the async
//! (`embedded_storage_async`) flash traits.

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// Why an operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RamFlashError {
    /// Misaligned offset or length.
    NotAligned,
    /// Outside the flash.
    OutOfBounds,
}

impl NorFlashError for RamFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            RamFlashError::NotAligned => NorFlashErrorKind::NotAligned,
            RamFlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
        }
    }
}

/// `SIZE` bytes of NOR flash in RAM, in pages of 1 KiB written in 4-byte words.
pub struct RamFlash<const SIZE: usize> {
    cells: [u8; SIZE],
    /// Pages erased since creation.
    pub erases: u32,
}

impl<const SIZE: usize> RamFlash<SIZE> {
    /// A flash that reads as all zeros, as after power-on with RAM cleared: the cache's
    /// open treats such pages as not formatted.
    pub const fn new() -> Self {
        RamFlash {
            cells: [0; SIZE],
            erases: 0,
        }
    }

    fn range(
        &self,
        offset: u32,
        len: usize,
        align: usize,
    ) -> Result<core::ops::Range<usize>, RamFlashError> {
        let start = offset as usize;
        if !start.is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(RamFlashError::NotAligned);
        }
        let end = start.checked_add(len).ok_or(RamFlashError::OutOfBounds)?;
        if end > SIZE {
            return Err(RamFlashError::OutOfBounds);
        }
        Ok(start..end)
    }
}

impl<const SIZE: usize> ErrorType for RamFlash<SIZE> {
    type Error = RamFlashError;
}

impl<const SIZE: usize> ReadNorFlash for RamFlash<SIZE> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let r = self.range(offset, bytes.len(), 1)?;
        bytes.copy_from_slice(&self.cells[r]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        SIZE
    }
}

impl<const SIZE: usize> NorFlash for RamFlash<SIZE> {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 1024;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        let len = to.checked_sub(from).ok_or(RamFlashError::OutOfBounds)? as usize;
        let r = self.range(from, len, Self::ERASE_SIZE)?;
        self.cells[r].fill(0xFF);
        self.erases += (len / Self::ERASE_SIZE) as u32;
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let r = self.range(offset, bytes.len(), Self::WRITE_SIZE)?;
        for (cell, b) in self.cells[r].iter_mut().zip(bytes) {
            *cell &= b;
        }
        Ok(())
    }
}

/// A [`RamFlash`] behind the async flash traits (what embassy's flash drivers implement):
/// each operation first hands control back to its caller once, as a driver awaiting its
/// flash controller does, then does what the blocking one does.
#[allow(dead_code)] // the async probes and masking only
pub struct AsyncRamFlash<'f, const SIZE: usize>(pub &'f mut RamFlash<SIZE>);

mod nor_async {
    use core::future::Future;
    use core::pin::Pin;
    use core::task::{Context, Poll};

    use embedded_storage::nor_flash::{NorFlash as _, ReadNorFlash as _};
    use embedded_storage_async::nor_flash::{ErrorType, NorFlash, ReadNorFlash};

    use super::{AsyncRamFlash, RamFlash, RamFlashError};

    /// Pending once (waking its task at once), then ready.
    #[allow(dead_code)] // the async probes and masking only
    struct Yield(bool);

    impl Future for Yield {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                Poll::Ready(())
            } else {
                self.0 = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }

    impl<const SIZE: usize> ErrorType for AsyncRamFlash<'_, SIZE> {
        type Error = RamFlashError;
    }

    impl<const SIZE: usize> ReadNorFlash for AsyncRamFlash<'_, SIZE> {
        const READ_SIZE: usize = RamFlash::<SIZE>::READ_SIZE;

        async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
            Yield(false).await;
            self.0.read(offset, bytes)
        }

        fn capacity(&self) -> usize {
            self.0.capacity()
        }
    }

    impl<const SIZE: usize> NorFlash for AsyncRamFlash<'_, SIZE> {
        const WRITE_SIZE: usize = RamFlash::<SIZE>::WRITE_SIZE;
        const ERASE_SIZE: usize = RamFlash::<SIZE>::ERASE_SIZE;

        async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
            Yield(false).await;
            self.0.erase(from, to)
        }

        async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
            Yield(false).await;
            self.0.write(offset, bytes)
        }
    }
}
