//! The log on flash: pages in a cycle, records appended at the head, read oldest first.
//!
//! This file knows the format (see [`format`](super::format)) and the NOR rules; it knows
//! nothing of the table. Every loop here is bounded by the number of pages or by the
//! number of records a page can hold, whatever the flash contains.

use embedded_storage::nor_flash::NorFlash;

use super::format::{
    align_up, parse_part_a, parse_part_b, part_a, part_b, record_size, Crc, RecHead, PART_A,
    PART_B, REC_HEADER, TAG_END, TAG_FIXED, TAG_START,
};
use super::FlashError;

/// Bytes of the stack buffer used for reads and writes; `READ_SIZE` and `WRITE_SIZE` must
/// divide it.
pub(crate) const SCRATCH: usize = 64;

/// A place in the log: `li`-th page of the log (0 = oldest), byte offset in that page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pos {
    pub li: u32,
    pub off: u32,
}

pub(crate) struct Log<F> {
    pub flash: F,
    pub base: u32,
    pub pages: u32,
    pub page_size: u32,
    /// Header bytes (parts A and B, padded).
    pub hdr: u32,
    /// Physical index of the oldest log page (or of the next page to use when empty).
    pub tail: u32,
    /// Pages in the log.
    pub used: u32,
    /// Next record offset in the head page (`page_size` when the page is sealed).
    pub head_off: u32,
    /// Sequence number of the head page.
    pub seq: u32,
    /// Highest erase count seen (the estimate for a page whose count was lost).
    pub max_erase: u32,
    /// Latest cache time written in a record.
    pub written_time: u64,
}

type Res<T, F> = Result<T, FlashError<<F as embedded_storage::nor_flash::ErrorType>::Error>>;

impl<F: NorFlash> Log<F> {
    pub fn a_len() -> u32 {
        align_up(PART_A, F::WRITE_SIZE) as u32
    }

    pub fn page_addr(&self, p: u32) -> u32 {
        self.base + p * self.page_size
    }

    /// Physical page of the `li`-th log page.
    pub fn phys(&self, li: u32) -> u32 {
        (self.tail + li) % self.pages
    }

    /// Bytes a page can hold for records.
    pub fn cap(&self) -> u32 {
        self.page_size - self.hdr
    }

    /// Pages neither in the log nor reserved.
    pub fn free(&self) -> u32 {
        self.pages - self.used
    }

    /// Reads `out.len()` bytes at `addr`, honouring `READ_SIZE`.
    pub fn read(&mut self, addr: u32, out: &mut [u8]) -> Res<(), F> {
        let rs = F::READ_SIZE as u32;
        if rs <= 1 {
            return self.flash.read(addr, out).map_err(FlashError::Flash);
        }
        let mut scratch = [0u8; SCRATCH];
        let mut done = 0usize;
        while done < out.len() {
            let at = addr + done as u32;
            let start = at - at % rs;
            let want = (out.len() - done) as u32 + (at - start);
            let len = align_up(want as usize, rs as usize).min(SCRATCH);
            self.flash
                .read(start, &mut scratch[..len])
                .map_err(FlashError::Flash)?;
            let skip = (at - start) as usize;
            let n = (len - skip).min(out.len() - done);
            out[done..done + n].copy_from_slice(&scratch[skip..skip + n]);
            done += n;
        }
        Ok(())
    }

    /// True when `len` bytes from `addr` all read 0xFF.
    pub fn is_blank(&mut self, addr: u32, len: u32) -> Res<bool, F> {
        let mut buf = [0u8; SCRATCH];
        let mut done = 0u32;
        while done < len {
            let n = (len - done).min(SCRATCH as u32);
            self.read(addr + done, &mut buf[..n as usize])?;
            if buf[..n as usize].iter().any(|&b| b != 0xff) {
                return Ok(false);
            }
            done += n;
        }
        Ok(true)
    }

    /// The page's erase count (part A), if readable.
    pub fn erase_count(&mut self, p: u32) -> Res<Option<u32>, F> {
        let mut a = [0u8; PART_A];
        self.read(self.page_addr(p), &mut a)?;
        Ok(parse_part_a(&a))
    }

    /// The page's sequence number and opening time when it belongs to a log.
    pub fn page_seq(&mut self, p: u32) -> Res<Option<(u32, u64)>, F> {
        let Some(count) = self.erase_count(p)? else {
            return Ok(None);
        };
        let mut b = [0u8; PART_B];
        self.read(self.page_addr(p) + Self::a_len(), &mut b)?;
        Ok(parse_part_b(count, &b))
    }

    /// Writes `parts` back to back from `addr` (aligned), padding the end with 0xFF.
    fn write_parts(&mut self, addr: u32, parts: &[&[u8]]) -> Res<(), F> {
        let ws = F::WRITE_SIZE.max(1);
        let mut buf = [0xffu8; SCRATCH];
        let mut fill = 0usize;
        let mut at = addr;
        for part in parts {
            let mut rest: &[u8] = part;
            while !rest.is_empty() {
                let n = (SCRATCH - fill).min(rest.len());
                buf[fill..fill + n].copy_from_slice(&rest[..n]);
                fill += n;
                rest = &rest[n..];
                if fill == SCRATCH {
                    self.flash.write(at, &buf).map_err(FlashError::Flash)?;
                    at += SCRATCH as u32;
                    fill = 0;
                }
            }
        }
        if fill > 0 {
            let end = align_up(fill, ws);
            buf[fill..end].fill(0xff);
            self.flash
                .write(at, &buf[..end])
                .map_err(FlashError::Flash)?;
        }
        Ok(())
    }

    /// Erases page `p` and writes its part A with the count incremented.
    pub fn erase_page(&mut self, p: u32) -> Res<u32, F> {
        let old = self.erase_count(p)?.unwrap_or(self.max_erase);
        let addr = self.page_addr(p);
        self.flash
            .erase(addr, addr + self.page_size)
            .map_err(FlashError::Flash)?;
        let count = old.saturating_add(1);
        self.max_erase = self.max_erase.max(count);
        self.write_parts(addr, &[&part_a(count)])?;
        Ok(count)
    }

    /// Takes the page after the head into the log (erasing it unless it is already a blank
    /// page with a valid part A).
    pub fn open_page(&mut self, time: u64) -> Res<(), F> {
        if self.used >= self.pages {
            return Err(FlashError::Corrupted);
        }
        let p = self.phys(self.used);
        let addr = self.page_addr(p);
        let a_len = Self::a_len();
        let count = match self.erase_count(p)? {
            Some(c) if self.is_blank(addr + a_len, self.page_size - a_len)? => c,
            _ => self.erase_page(p)?,
        };
        let seq = self.seq.wrapping_add(1);
        self.write_parts(addr + a_len, &[&part_b(count, seq, time)])?;
        self.written_time = self.written_time.max(time);
        self.seq = seq;
        self.used += 1;
        self.head_off = self.hdr;
        Ok(())
    }

    /// Reads and checks the record at `off` of page `p`; `None` when blank or invalid.
    pub fn read_record(&mut self, p: u32, off: u32) -> Res<Option<RecHead>, F> {
        if off < self.hdr || off as usize + REC_HEADER > self.page_size as usize {
            return Ok(None);
        }
        let addr = self.page_addr(p) + off;
        let mut h = [0u8; REC_HEADER];
        self.read(addr, &mut h)?;
        let Some(r) = RecHead::decode(&h) else {
            return Ok(None);
        };
        let size = r.size(F::WRITE_SIZE) as u32;
        if off + size > self.page_size {
            return Ok(None);
        }
        let mut crc = Crc::new();
        crc.update(&h[..24]);
        let body = u32::from(r.klen) + u32::from(r.vlen);
        let mut buf = [0u8; SCRATCH];
        let mut done = 0u32;
        while done < body {
            let n = (body - done).min(SCRATCH as u32);
            self.read(addr + REC_HEADER as u32 + done, &mut buf[..n as usize])?;
            crc.update(&buf[..n as usize]);
            done += n;
        }
        Ok((crc.finish() == r.crc).then_some(r))
    }

    /// Reads the key and value of the record at `pos` into `key` and `val`.
    pub fn read_body(
        &mut self,
        pos: Pos,
        r: &RecHead,
        key: &mut [u8],
        val: &mut [u8],
    ) -> Res<bool, F> {
        let (kl, vl) = (usize::from(r.klen), usize::from(r.vlen));
        if kl > key.len() || vl > val.len() {
            return Ok(false);
        }
        let addr = self.page_addr(self.phys(pos.li)) + pos.off + REC_HEADER as u32;
        self.read(addr, &mut key[..kl])?;
        self.read(addr + kl as u32, &mut val[..vl])?;
        Ok(true)
    }

    /// The first valid record at or after `pos`, moving to the next log page when a page's
    /// records end; `None` at the end of the log.
    pub fn next_rec(&mut self, mut pos: Pos) -> Res<Option<(Pos, RecHead)>, F> {
        for _ in 0..=self.pages {
            if pos.li >= self.used {
                return Ok(None);
            }
            if let Some(r) = self.read_record(self.phys(pos.li), pos.off)? {
                return Ok(Some((pos, r)));
            }
            pos = Pos {
                li: pos.li + 1,
                off: self.hdr,
            };
        }
        Ok(None)
    }

    /// Upper bound on the records the log can hold (bounds every scan).
    pub fn max_records(&self) -> u32 {
        let min = record_size(0, 0, F::WRITE_SIZE) as u32;
        self.pages * (self.page_size / min + 1) + 4
    }

    /// Appends one record at the head, opening the next page when it does not fit. The
    /// caller has made sure there is room.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &mut self,
        ty: u8,
        start: bool,
        end: bool,
        kind: u8,
        key: &[u8],
        val: &[u8],
        time: u64,
        expiry: u64,
    ) -> Res<(), F> {
        let size = record_size(key.len(), val.len(), F::WRITE_SIZE) as u32;
        if size > self.cap() || key.len() > 255 || val.len() > usize::from(u16::MAX) {
            return Err(FlashError::Corrupted);
        }
        if self.used == 0 || self.head_off + size > self.page_size {
            self.open_page(time.max(self.written_time))?;
        }
        let mut tag = TAG_FIXED | ty;
        if start {
            tag |= TAG_START;
        }
        if end {
            tag |= TAG_END;
        }
        let mut r = RecHead {
            tag,
            kind,
            klen: key.len() as u8,
            vlen: val.len() as u16,
            time,
            expiry,
            crc: 0,
        };
        r.crc = r.compute_crc(key, val);
        let addr = self.page_addr(self.phys(self.used - 1)) + self.head_off;
        self.head_off += size;
        if let Err(e) = self.write_parts(addr, &[&r.encode(), key, val]) {
            // A torn record ends the page's readable records: write nothing after it.
            self.head_off = self.page_size;
            return Err(e);
        }
        self.written_time = self.written_time.max(time);
        Ok(())
    }
}

/// Walks the records of committed batches from a position, oldest first.
pub(crate) struct Committed {
    pos: Pos,
    /// End record of the batch being walked.
    end: Option<Pos>,
    budget: u32,
}

impl Committed {
    pub fn new<F: NorFlash>(log: &Log<F>, pos: Pos) -> Self {
        Committed {
            pos,
            end: None,
            budget: log.max_records().saturating_mul(3),
        }
    }

    pub fn next<F: NorFlash>(&mut self, log: &mut Log<F>) -> Res<Option<(Pos, RecHead)>, F> {
        let ws = F::WRITE_SIZE;
        loop {
            if self.budget == 0 {
                return Ok(None);
            }
            self.budget -= 1;
            let Some((at, r)) = log.next_rec(self.pos)? else {
                return Ok(None);
            };
            self.pos = Pos {
                li: at.li,
                off: at.off + r.size(ws) as u32,
            };
            if let Some(end) = self.end {
                if at == end {
                    self.end = None;
                }
                return Ok(Some((at, r)));
            }
            if r.end() {
                return Ok(Some((at, r)));
            }
            // A batch (or what is left of one): look for its end before the next start.
            let mut q = self.pos;
            loop {
                if self.budget == 0 {
                    return Ok(None);
                }
                self.budget -= 1;
                match log.next_rec(q)? {
                    None => return Ok(None),
                    Some((qa, qr)) if qr.start() => {
                        self.pos = qa;
                        break;
                    }
                    Some((qa, qr)) if qr.end() => {
                        self.end = Some(qa);
                        return Ok(Some((at, r)));
                    }
                    Some((qa, qr)) => {
                        q = Pos {
                            li: qa.li,
                            off: qa.off + qr.size(ws) as u32,
                        }
                    }
                }
            }
        }
    }
}
