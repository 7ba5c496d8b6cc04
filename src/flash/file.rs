//! `FileFlash`: a NOR flash image in a file (feature `std`), so a host simulation keeps its
//! cache across process runs. It follows the same rules as a real part: erase sets a page
//! to 0xFF, writes are aligned to `WRITE_SIZE`, and a word is written at most once between
//! erases (a word that is not all 0xFF when the image is opened counts as written).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::vec;
use std::vec::Vec;

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// What the file flash refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileFlashError {
    /// Offset or length not aligned to `WRITE_SIZE` (writes) or the page (erases).
    NotAligned,
    /// Outside the image.
    OutOfBounds,
    /// A word written a second time without an erase in between.
    DoubleWrite,
    /// The file could not be read or written.
    Io(io::ErrorKind),
}

impl NorFlashError for FileFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            FileFlashError::NotAligned => NorFlashErrorKind::NotAligned,
            FileFlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            _ => NorFlashErrorKind::Other,
        }
    }
}

/// A flash image of `pages` pages of `PAGE_SIZE` bytes in a file, written in words of
/// `WRITE_SIZE` bytes. Every write and erase goes to the file at once.
#[derive(Debug)]
pub struct FileFlash<const PAGE_SIZE: usize = 4096, const WRITE_SIZE: usize = 4> {
    file: File,
    data: Vec<u8>,
    written: Vec<bool>,
}

impl<const PAGE_SIZE: usize, const WRITE_SIZE: usize> FileFlash<PAGE_SIZE, WRITE_SIZE> {
    /// Opens the image at `path`, creating it erased (all 0xFF) with `pages` pages when
    /// missing. An existing image must be `pages * PAGE_SIZE` bytes long.
    pub fn open(path: impl AsRef<Path>, pages: usize) -> io::Result<Self> {
        const { assert!(WRITE_SIZE >= 1 && PAGE_SIZE % WRITE_SIZE == 0) };
        let size = pages * PAGE_SIZE;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        if data.is_empty() {
            data = vec![0xff; size];
            file.write_all(&data)?;
            file.flush()?;
        } else if data.len() != size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "flash image has the wrong size",
            ));
        }
        let written = data
            .chunks(WRITE_SIZE)
            .map(|w| w.iter().any(|&b| b != 0xff))
            .collect();
        Ok(FileFlash {
            file,
            data,
            written,
        })
    }

    /// The image's contents.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    fn store(&mut self, at: usize, len: usize) -> Result<(), FileFlashError> {
        let io = |e: io::Error| FileFlashError::Io(e.kind());
        self.file.seek(SeekFrom::Start(at as u64)).map_err(io)?;
        self.file.write_all(&self.data[at..at + len]).map_err(io)?;
        self.file.flush().map_err(io)
    }
}

impl<const PAGE_SIZE: usize, const WRITE_SIZE: usize> ErrorType
    for FileFlash<PAGE_SIZE, WRITE_SIZE>
{
    type Error = FileFlashError;
}

impl<const PAGE_SIZE: usize, const WRITE_SIZE: usize> ReadNorFlash
    for FileFlash<PAGE_SIZE, WRITE_SIZE>
{
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FileFlashError> {
        let start = offset as usize;
        let src = start
            .checked_add(bytes.len())
            .and_then(|end| self.data.get(start..end))
            .ok_or(FileFlashError::OutOfBounds)?;
        bytes.copy_from_slice(src);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.data.len()
    }
}

impl<const PAGE_SIZE: usize, const WRITE_SIZE: usize> NorFlash
    for FileFlash<PAGE_SIZE, WRITE_SIZE>
{
    const WRITE_SIZE: usize = WRITE_SIZE;
    const ERASE_SIZE: usize = PAGE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FileFlashError> {
        let (from, to) = (from as usize, to as usize);
        if from % PAGE_SIZE != 0 || to % PAGE_SIZE != 0 || from > to {
            return Err(FileFlashError::NotAligned);
        }
        if to > self.data.len() {
            return Err(FileFlashError::OutOfBounds);
        }
        self.data[from..to].fill(0xff);
        self.written[from / WRITE_SIZE..to / WRITE_SIZE]
            .iter_mut()
            .for_each(|w| *w = false);
        self.store(from, to - from)
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FileFlashError> {
        let start = offset as usize;
        if start % WRITE_SIZE != 0 || bytes.len() % WRITE_SIZE != 0 {
            return Err(FileFlashError::NotAligned);
        }
        let end = start
            .checked_add(bytes.len())
            .filter(|&e| e <= self.data.len())
            .ok_or(FileFlashError::OutOfBounds)?;
        let words = &mut self.written[start / WRITE_SIZE..end / WRITE_SIZE];
        if words.iter().any(|&w| w) {
            return Err(FileFlashError::DoubleWrite);
        }
        words.iter_mut().for_each(|w| *w = true);
        for (d, &b) in self.data[start..end].iter_mut().zip(bytes) {
            *d &= b;
        }
        self.store(start, bytes.len())
    }
}
