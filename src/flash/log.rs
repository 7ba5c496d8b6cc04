//! The log on flash: pages in a cycle, records appended at the head, read oldest first.
//!
//! This file knows the format (see [`format`](super::format)) and the NOR rules; it knows
//! nothing of the table. Every loop here is bounded by the number of pages or by the
//! number of records a page can hold, whatever the flash contains.

use tickcache_dual::dual;

use super::io::{Geometry, Io, SyncIo};

use super::format::{
    align_up, min_page_size, parse_part_a, parse_part_b, part_a_into, part_b_fields, Crc, Rec,
    RecHead, Unread, CRC_RESIDUE, MAX_WORD, PART_A, PART_B_MAX, PART_B_SEED, REC_CRC, REC_HEAD_MAX,
    VLEN_MAX,
};
use super::FlashError;

/// Bytes of the stack buffer used for reads and writes; `READ_SIZE` and `WRITE_SIZE` divide
/// it ([`Log::GEOMETRY`]).
pub(crate) const SCRATCH: usize = MAX_WORD;

/// Bytes after part A searched for a record in a page whose header does not check out.
const HOLD_SCAN: u32 = 256;

/// A place in the log: `li`-th page of the log (0 = oldest), byte offset in that page
/// (0: the page's first record, wherever its header ends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pos {
    pub li: u32,
    pub off: u32,
}

/// How a page's records end ([`Log::page_end`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// In blank flash: records may follow.
    Blank,
    /// In a record a power cut tore (blank flash after it): nothing may follow.
    Torn,
    /// In damage: the rest of the page is unreadable.
    Damaged,
}

/// A log page's header ([`Log::page_seq`]): its sequence number, where its records start
/// and its base time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PageHead {
    pub seq: u32,
    pub first: u32,
    pub base: u64,
}

impl Pos {
    /// The first record of the oldest page.
    pub const START: Pos = Pos { li: 0, off: 0 };
}

/// The log's RAM state. Laid out in order (`repr(C)`): the fields a new log starts at zero
/// first, side by side, so [`Log::new`] clears them in one piece; the four it sets from its
/// arguments last.
#[repr(C)]
pub(crate) struct Log<F> {
    /// Where the records of the last two pages looked up start, and their base times:
    /// (physical page, first record offset, base time).
    starts: [Option<(u32, u32, u64)>; 2],
    /// Base time of the head page.
    pub head_base: u64,
    /// Latest cache time written on flash.
    pub written_time: u64,
    /// The header [`Log::page_seq`] or [`Log::page_start`] last found.
    pub hdr: PageHead,
    /// Physical index of the oldest log page (or of the next page to use when empty).
    pub tail: u32,
    /// Pages in the log.
    pub used: u32,
    /// Free pages, from the one after the head, known to hold a valid part A and nothing
    /// else (they join the log without a read or an erase).
    pub ready: u32,
    /// Sequence number of the head page.
    pub seq: u32,
    /// Highest erase count seen (the estimate for a page whose count was lost).
    pub max_erase: u32,
    /// Log pages whose end has been checked: while the first replay at open reads the log
    /// ([`Log::CHECKED`] after it), [`Log::next_rec`] checks how each further page's records
    /// end, moves [`Log::trust_from`] past any damage and sets the head page's
    /// [`Log::head_off`] and [`Log::head_base`].
    pub checked: u32,
    /// First log page trusted to hold the latest record of every key it is read up to:
    /// damage was found in the page before it (or a gap just before it). Records before it
    /// are never restored nor copied by compaction; 0 when nothing is known damaged.
    pub trust_from: u32,
    /// Flash address of the region's first page.
    pub base: u32,
    /// Pages in the region.
    pub pages: u32,
    /// Bytes of a page (`ERASE_SIZE`).
    pub page_size: u32,
    /// Next record offset in the head page (`page_size` when the page is sealed).
    pub head_off: u32,
    geometry: core::marker::PhantomData<fn() -> F>,
}

type Res<T, F> = Result<T, FlashError<<F as Geometry>::Error>>;

/// The request slot for the flash of geometry `F`.
pub(crate) type IoOf<F> = Io<<F as Geometry>::Error>;

/// The blocking I/O object for the flash of geometry `F`.
pub(crate) type SyncIoOf<'a, F> = SyncIo<'a, <F as Geometry>::Nor>;

#[dual]
impl<F: Geometry> Log<F> {
    pub fn new(base: u32, pages: u32, page_size: u32) -> Self {
        Log {
            base,
            pages,
            page_size,
            tail: 0,
            used: 0,
            head_off: page_size,
            head_base: 0,
            ready: 0,
            seq: 0,
            max_erase: 0,
            written_time: 0,
            // A constant, so it is cleared in one piece with the zeroed fields beside it.
            starts: const { [None; 2] },
            hdr: PageHead {
                seq: 0,
                first: 0,
                base: 0,
            },
            checked: 0,
            trust_from: 0,
            geometry: core::marker::PhantomData,
        }
    }

    /// The flash's geometry, checked when [`Persistent::open`](super::Persistent::open) is
    /// compiled for it: a geometry this log cannot use is a build error, never a panic.
    pub const GEOMETRY: () = {
        let (rs, ws, es) = (F::READ_SIZE, F::WRITE_SIZE, F::ERASE_SIZE);
        assert!(
            rs.is_power_of_two() && rs <= MAX_WORD,
            "NorFlash::READ_SIZE must be a power of two from 1 to 64"
        );
        assert!(
            ws.is_power_of_two() && ws <= MAX_WORD,
            "NorFlash::WRITE_SIZE must be a power of two from 1 to 64"
        );
        assert!(
            es % rs == 0 && es % ws == 0,
            "NorFlash::ERASE_SIZE must be a multiple of READ_SIZE and WRITE_SIZE"
        );
        assert!(
            es >= min_page_size(ws),
            "NorFlash::ERASE_SIZE is too small for its WRITE_SIZE: a page must hold two \
             header words and a record (flash::format::min_page_size)"
        );
        assert!(
            es as u64 <= u32::MAX as u64,
            "NorFlash::ERASE_SIZE must fit in a u32"
        );
    };

    /// Bytes of a page (`ERASE_SIZE`, [`Log::page_size`]): a constant the code here is
    /// compiled with, so page arithmetic folds.
    pub const PAGE: u32 = F::ERASE_SIZE as u32;

    pub fn a_len() -> u32 {
        align_up(PART_A, F::WRITE_SIZE) as u32
    }

    /// Longest page header (parts A and B, padded).
    pub fn hdr_max() -> u32 {
        Self::a_len() + align_up(PART_B_MAX, F::WRITE_SIZE) as u32
    }

    pub fn page_addr(&self, p: u32) -> u32 {
        self.base + p * Self::PAGE
    }

    /// The flash address of `pos`.
    #[cfg(test)]
    pub fn addr(&self, pos: Pos) -> u32 {
        self.page_addr(self.phys(pos.li)) + pos.off
    }

    /// True when flash address `at` lies in page `p`.
    pub fn in_page(&self, at: u32, p: u32) -> bool {
        at != super::NOWHERE && at.wrapping_sub(self.page_addr(p)) < Self::PAGE
    }

    /// Physical page of the `li`-th log page (`li` at most `pages`; the tail is below
    /// `pages`): one subtraction at most, no division.
    pub fn phys(&self, li: u32) -> u32 {
        let i = self.tail + li;
        if i >= self.pages {
            i - self.pages
        } else {
            i
        }
    }

    /// True when a record of `size` bytes can be appended: it fits the head page, or a
    /// free page is left to open.
    pub fn head_fits(&self, size: usize) -> bool {
        self.free() > 0 || self.head_off as usize + size <= Self::PAGE as usize
    }

    /// Bytes a fresh page can surely hold for records: a constant.
    pub fn cap(&self) -> u32 {
        Self::PAGE - Self::hdr_max()
    }

    /// Pages neither in the log nor reserved.
    pub fn free(&self) -> u32 {
        self.pages - self.used
    }

    /// Reads `out.len()` bytes at `addr`, honouring `READ_SIZE`, in requests of at most
    /// [`SCRATCH`] bytes.
    #[inline(never)]
    pub async fn read(&self, io: &IoOf<F>, addr: u32, out: &mut [u8]) -> Res<(), F> {
        let rs = F::READ_SIZE as u32;
        let mut done = 0usize;
        while done < out.len() {
            let at = addr + done as u32;
            let start = at - at % rs;
            let want = (out.len() - done) as u32 + (at - start);
            let len = align_up(want as usize, rs as usize).min(SCRATCH);
            let skip = (at - start) as usize;
            let n = (len - skip).min(out.len() - done);
            io.read(start, len).await?;
            io.take(skip, &mut out[done..done + n]);
            done += n;
        }
        Ok(())
    }

    /// True when `len` bytes from `addr` all read 0xFF.
    /// The bytes are checked where they land, in the request buffer.
    pub async fn is_blank(&mut self, io: &IoOf<F>, addr: u32, len: u32) -> Res<bool, F> {
        let end = addr + len;
        let mut at = addr;
        while at < end {
            let left = (end - at) as usize;
            let skip = self.window(io, at, left.min(SCRATCH)).await?;
            let n = (SCRATCH - skip).min(left);
            if io.with_buf(|b| b[skip..skip + n].iter().any(|&b| b != 0xff)) {
                return Ok(false);
            }
            at += n as u32;
        }
        Ok(true)
    }

    /// Reads the `READ_SIZE`-aligned window holding the `n` bytes at `addr` into the
    /// request buffer, in one request (`n` and the offset of `addr` in its read word come
    /// to at most [`SCRATCH`] bytes); returns where the bytes start in the buffer. The bytes
    /// are used where they land: no buffer on the caller's stack.
    async fn window(&self, io: &IoOf<F>, addr: u32, n: usize) -> Res<usize, F> {
        let rs = F::READ_SIZE;
        let skip = addr as usize % rs;
        io.read(addr - skip as u32, align_up(skip + n, rs).min(SCRATCH))
            .await?;
        Ok(skip)
    }

    /// The page's erase count (part A), if readable.
    #[blocking(inline(always))]
    pub async fn erase_count(&mut self, io: &IoOf<F>, p: u32) -> Res<Option<u32>, F> {
        let at = self.window(io, self.page_addr(p), PART_A).await?;
        Ok(io.with_buf(|b| parse_part_a(&b[at..])))
    }

    /// True when page `p` belongs to a log; its header (sequence number, base time and the
    /// offset of its first record) is then in [`Log::hdr`]. The header is checked in the
    /// request buffer; a valid erase count in it raises [`Log::max_erase`] (so that mount's
    /// scan reads each header once).
    pub async fn page_seq(&mut self, io: &IoOf<F>, p: u32) -> Res<bool, F> {
        let a_len = Self::a_len() as usize;
        let addr = self.page_addr(p);
        // Both parts in one read, unless part A's padding is wider than 8 bytes: two then.
        let one = a_len <= PART_A + 8;
        let at = self
            .window(io, addr, if one { a_len + PART_B_MAX } else { PART_A })
            .await?;
        let count = io.with_buf(|b| parse_part_a(&b[at..]));
        let a_ok = count.is_some();
        self.max_erase = self.max_erase.max(count.unwrap_or(0));
        let b_at = if one {
            at + a_len
        } else {
            self.window(io, addr + a_len as u32, PART_B_MAX).await?
        };
        if !a_ok {
            return Ok(false);
        }
        let Some((seq, time, len)) = io.with_buf(|b| parse_part_b(&b[b_at..b_at + PART_B_MAX]))
        else {
            return Ok(false);
        };
        // Below the page's end: a page holds both header parts and a record
        // ([`Log::GEOMETRY`]).
        self.hdr = PageHead {
            seq,
            first: (a_len + align_up(len, F::WRITE_SIZE)) as u32,
            base: time,
        };
        Ok(true)
    }

    /// True when page `p` is a log page; where its records start and its base time are
    /// then in [`Log::hdr`].
    pub async fn page_start(&mut self, io: &IoOf<F>, p: u32) -> Res<bool, F> {
        if let Some(&(_, first, base)) = self.known(p) {
            (self.hdr.first, self.hdr.base) = (first, base);
            return Ok(true);
        }
        if !self.page_seq(io, p).await? {
            return Ok(false);
        }
        self.starts[1] = self.starts[0];
        self.starts[0] = Some((p, self.hdr.first, self.hdr.base));
        Ok(true)
    }

    /// What is known of page `p`'s start ([`Log::page_start`]'s lookup).
    fn known(&self, p: u32) -> Option<&(u32, u32, u64)> {
        self.starts.iter().flatten().find(|(q, _, _)| *q == p)
    }

    /// Forgets what is known of page `p`'s header: the page opening's step (only log pages
    /// are looked up, and every page joins the log through [`Log::open_page`]).
    fn forget(&mut self, p: u32) {
        for s in &mut self.starts {
            if s.is_some_and(|(q, _, _)| q == p) {
                *s = None;
            }
        }
    }

    /// Writes the `staged` bytes already at the start of the request buffer (a record's
    /// header or part B's fields), `parts` (the key's rest and the value; none for part B)
    /// and their CRC-32C (run on from `sum`) back to back from `addr` (aligned), padding
    /// the end with 0xFF: the writer of every record kind and of part B. Out of line: a
    /// sibling of the header's encoding below the record writer's frame.
    #[blocking(inline(never))]
    async fn write_parts(
        &mut self,
        io: &IoOf<F>,
        addr: u32,
        staged: usize,
        mut sum: Crc,
        parts: &[&[u8]],
    ) -> Res<(), F> {
        let ws = F::WRITE_SIZE.max(1);
        // At most a buffer's worth staged (no panic path in the staging below); the CRC
        // takes it in where it is.
        let mut fill = staged.min(SCRATCH);
        io.with_buf(|b| sum.update(&b[..fill]));
        let mut at = addr;
        // The bytes go straight into the request slot's buffer, the CRC computed on the
        // way; it follows the last part.
        for i in 0..parts.len() + 1 {
            let tail;
            let part = match parts.get(i) {
                Some(p) => *p,
                None => {
                    tail = sum.finish().to_le_bytes();
                    &tail
                }
            };
            for &b in part {
                io.put(fill, b);
                sum.push(b);
                fill += 1;
                if fill == SCRATCH {
                    io.write(at, SCRATCH).await?;
                    at += SCRATCH as u32;
                    fill = 0;
                }
            }
        }
        if fill > 0 {
            // Padded to a whole word the same way, a byte at a time.
            while fill % ws != 0 {
                io.put(fill, 0xff);
                fill += 1;
            }
            io.write(at, fill).await?;
        }
        Ok(())
    }

    /// Writes the `n` bytes staged at the start of the request buffer (part A, at most
    /// [`SCRATCH`] bytes padded) at `addr`, padded with 0xFF a byte at a time (no fill of
    /// a range, whose copy of the buffer the async build's state machines would hold): a
    /// small frame below the page erase. A function of its own: the async build's state
    /// machines are smaller so.
    async fn write_staged(&mut self, io: &IoOf<F>, addr: u32, n: usize) -> Res<(), F> {
        let end = align_up(n, F::WRITE_SIZE);
        for i in n..end {
            io.put(i, 0xff);
        }
        io.write(addr, end).await?;
        Ok(())
    }

    /// Writes part A with `count` on the (blank) page at flash address `addr`. Out of line
    /// in the blocking build: the page erase and mount share one copy.
    #[blocking(inline(never))]
    pub async fn write_part_a(&mut self, io: &IoOf<F>, addr: u32, count: u32) -> Res<(), F> {
        io.stage_with(|b| part_a_into(b, count));
        self.write_staged(io, addr, PART_A).await
    }

    /// Erases page `p` and writes its part A with the count incremented: the count read
    /// before the erase, else the highest seen ([`Log::max_erase`]).
    pub async fn erase_page(&mut self, io: &IoOf<F>, p: u32) -> Res<(), F> {
        let old = self.erase_count(io, p).await?.unwrap_or(self.max_erase);
        let addr = self.page_addr(p);
        io.erase(addr, addr + Self::PAGE).await?;
        let count = old.saturating_add(1);
        self.max_erase = self.max_erase.max(count);
        self.write_part_a(io, addr, count).await
    }

    /// Takes the page after the head into the log with base time `time`: without a read
    /// when it is ready, else erasing it first.
    pub async fn open_page(&mut self, io: &IoOf<F>, time: u64) -> Res<(), F> {
        if self.used >= self.pages {
            return Err(FlashError::Corrupted);
        }
        let p = self.phys(self.used);
        if self.ready > 0 {
            self.ready -= 1;
        } else {
            self.erase_page(io, p).await?;
        }
        self.forget(p);
        let a_len = Self::a_len();
        // Sequences never wrap: 2^32 - 1 page openings outlast any flash part.
        let seq = match self.seq.checked_add(1) {
            Some(s) if s != crate::flash::format::SEQ_NEVER => s,
            _ => return Err(FlashError::Corrupted),
        };
        // Part B's fields are encoded straight into the request buffer; the record writer
        // appends their CRC.
        let n = io.stage_with(|b| part_b_fields(b, seq, time));
        self.write_parts(io, self.page_addr(p) + a_len, n, PART_B_SEED, &[])
            .await?;
        let n = n + 4;
        self.seq = seq;
        self.used += 1;
        self.written_time = self.written_time.max(time);
        self.head_base = time;
        self.head_off = a_len + align_up(n, F::WRITE_SIZE) as u32;
        Ok(())
    }

    /// Reads and checks the record at `off` of page `p` into `r` ([`Log::read_record_at`]
    /// at its address).
    #[blocking(inline(always))]
    pub async fn read_record_into(
        &mut self,
        io: &IoOf<F>,
        p: u32,
        off: u32,
        r: &mut RecHead,
    ) -> Res<bool, F> {
        self.read_record_at(io, self.page_addr(p) + off, r).await
    }

    /// Reads and checks the record at flash address `addr` (in a log page) into `r`, whose
    /// `time` gives the page's base time on entry ([`RecHead::in_page`]): false when blank
    /// or invalid (`r` then means nothing). The record is read into the request buffer and
    /// checked there, and its header decoded into `r`: no buffer and no header of its own
    /// on the stack, and no argument on it (this lies on the deepest path of a call,
    /// compaction reading a changed key's record). Pages start at multiples of the page
    /// size (the region's start is one, [`Core::region`](super::Core)), so the address
    /// tells the record's offset in its page: never 0 (a page's records start after its
    /// header), so an address at a multiple of the page size is the end of the page before
    /// it, where no record fits.
    pub async fn read_record_at(
        &mut self,
        io: &IoOf<F>,
        addr: u32,
        r: &mut RecHead,
    ) -> Res<bool, F> {
        // `off` is in `1..=PAGE`: a record ends inside its page.
        let off = addr.wrapping_sub(1) % Self::PAGE + 1;
        let room = (Self::PAGE - off) as usize;
        if room < 1 + REC_CRC {
            return Ok(false);
        }
        // One read request covers a short record whole (header, key, value and CRC).
        let skip = self.window(io, addr, room.min(SCRATCH)).await?;
        let hn = (SCRATCH - skip).min(room);
        // The header lies in that window unless it crosses the window's end (reads of 64
        // bytes beneath smaller words): then it is read on its own, and the CRC is taken
        // over the record from its start.
        let in_window = hn >= room.min(REC_HEAD_MAX);
        let head = if in_window {
            io.with_buf(|b| RecHead::parse_into(&b[skip..skip + hn.min(REC_HEAD_MAX)], r))
                .is_ok()
        } else {
            self.read_head(io, addr, room, r).await?
        };
        if !head {
            return Ok(false);
        }
        let hn = if in_window { hn } else { 0 };
        self.check_record(io, addr, r, skip, hn).await
    }

    /// True when the record at `addr` with header `r` fits the bytes left in its page (told
    /// by the address, as [`Log::read_record_at`] tells them) and its CRC checks out; its first `hn` bytes are in the request buffer from
    /// `skip` on (as read, or with a header of the caller's in place), the rest is read
    /// through it. The CRC runs over the stored CRC too: a record checks out when that
    /// ends in CRC-32C's residue ([`CRC_RESIDUE`]), so the stored bytes are never taken
    /// apart. The one CRC check of every record read, at open, in compaction and in
    /// damage checks. Out of line: [`Log::read_record_at`] keeps a small frame above the
    /// header's decoding, and the CRC's work is a sibling of it.
    #[inline(never)]
    async fn check_record(
        &mut self,
        io: &IoOf<F>,
        addr: u32,
        r: &RecHead,
        skip: usize,
        hn: usize,
    ) -> Res<bool, F> {
        let room = Self::PAGE - (addr.wrapping_sub(1) % Self::PAGE + 1);
        if r.size(F::WRITE_SIZE) > room as usize {
            return Ok(false);
        }
        let end = r.body_end() as usize + REC_CRC;
        let have = hn.min(end);
        let mut crc = Crc::new();
        // Within the buffer: `hn` bytes were read there (taken with no panic path).
        io.with_buf(|b| crc.update(b.get(skip..skip + have).unwrap_or_default()));
        let rs = F::READ_SIZE as u32;
        let mut at = addr + have as u32;
        let to = addr + end as u32;
        while at < to {
            let start = at - at % rs;
            let skip = (at - start) as usize;
            let len = align_up((to - start) as usize, rs as usize).min(SCRATCH);
            let n = (len - skip).min((to - at) as usize);
            io.read(start, len).await?;
            io.with_buf(|b| crc.update(&b[skip..skip + n]));
            at += n as u32;
        }
        Ok(crc.finish() == CRC_RESIDUE)
    }

    /// Decodes the header of the record at `addr` (`room` bytes before the page's end) into
    /// `r` (the page's base time in `r.time`), read on its own: for a header across the end
    /// of a read window. Out of line, so its
    /// buffer is not on `read_record_at`'s frame.
    #[inline(never)]
    async fn read_head(
        &mut self,
        io: &IoOf<F>,
        addr: u32,
        room: usize,
        r: &mut RecHead,
    ) -> Res<bool, F> {
        let mut h = [0u8; REC_HEAD_MAX];
        let n = room.min(REC_HEAD_MAX);
        self.read(io, addr, &mut h[..n]).await?;
        Ok(RecHead::parse_into(&h[..n], r).is_ok())
    }

    /// How page `p`'s records, ending at `off` (no valid record there), end: in blank
    /// flash, in a record a power cut tore, or in damage. The page's base time is the one
    /// [`Log::page_start`] left in [`Log::hdr`]. Headers are decoded into `r` (the
    /// caller's, whatever it holds).
    ///
    /// A torn record is a prefix of a record, followed by blank flash to the end of the
    /// page (nothing is written after a torn record: the page is sealed when the log is
    /// next opened). So the bytes from `off` to the last one not 0xFF must be a header cut
    /// short, or a whole header with the record's last bytes still blank. Anything else (a
    /// record whose CRC fails with its last byte written, a header no bytes could complete,
    /// written bytes after blank ones) is damage, and so is a torn-looking record with
    /// valid records inside its claimed length or one whose header, with one bit flipped
    /// back, makes a whole record. Other damage to a page's last record that makes it claim
    /// more bytes than were written, or leaves its last CRC byte 0xFF, reads as torn.
    ///
    /// The last record's header bytes are read into `h` (the walk's own buffer,
    /// [`Committed`]'s: zeroed once with the walk, not at every page's end).
    ///
    /// Its blocking variant is always inlined into its one caller, [`Log::next_rec`] (open's
    /// replay); the async variant is left to the compiler (`#[cold]`: a page's end is met
    /// once a page).
    #[cold]
    #[blocking(inline(always))]
    pub async fn page_end(
        &mut self,
        io: &IoOf<F>,
        p: u32,
        off: u32,
        r: &mut RecHead,
        h: &mut [u8; REC_HEAD_MAX],
    ) -> Res<End, F> {
        let base = self.hdr.base;
        let addr = self.page_addr(p);
        // One past the last byte that is not 0xFF, relative to `off`.
        let mut written = 0u32;
        let mut at = off;
        while at < Self::PAGE {
            let left = (Self::PAGE - at) as usize;
            let skip = self.window(io, addr + at, left.min(SCRATCH)).await?;
            let n = (SCRATCH - skip).min(left);
            if let Some(i) = io.with_buf(|b| b[skip..skip + n].iter().rposition(|&b| b != 0xff)) {
                written = at - off + i as u32 + 1;
            }
            at += n as u32;
        }
        if written == 0 {
            return Ok(End::Blank);
        }
        let n = (written as usize).min(REC_HEAD_MAX);
        self.read(io, addr + off, &mut h[..n]).await?;
        r.time = base;
        let torn = match RecHead::parse_into(&h[..n], r) {
            Err(Unread::Short) => true,
            Err(Unread::Invalid) => false,
            Ok(()) => {
                written < r.body_end() + REC_CRC as u32
                    && r.size(F::WRITE_SIZE) as u64 <= u64::from(Self::PAGE - off)
            }
        };
        if !torn {
            return Ok(End::Damaged);
        }
        // A length field damaged upwards makes the following records look like the rest
        // of a torn one: a valid record inside it tells them apart. In the page's last
        // record, one flipped header bit is found by flipping each back: a whole record
        // that then checks out, ending where the written bytes end, was not torn.
        if self
            .valid_record_in(io, p, off + 1, off + written, base, r)
            .await?
        {
            return Ok(End::Damaged);
        }
        for bit in 0..n * 8 {
            let flip = 1 << (bit % 8);
            h[bit / 8] ^= flip;
            r.time = base;
            if RecHead::parse_into(&h[..n], r).is_ok() {
                // It ends within the CRC's bytes past the written ones (`written` to
                // `written + REC_CRC`, one compare); the record must fit the page:
                // [`Log::check_record`] checks it.
                let end = r.body_end() + REC_CRC as u32;
                if end.wrapping_sub(written) < REC_CRC as u32
                    && self.crc_ok(io, p, off, h, r).await?
                {
                    return Ok(End::Damaged);
                }
            }
            h[bit / 8] ^= flip;
        }
        Ok(End::Torn)
    }

    /// True when the record at `off` of page `p`, with header bytes `head` (decoded as `r`)
    /// in place of those on flash, fits the page and has a matching CRC: the header is
    /// staged in the request buffer and checked there as a record read is.
    #[cold]
    #[inline(always)]
    async fn crc_ok(
        &mut self,
        io: &IoOf<F>,
        p: u32,
        off: u32,
        head: &[u8],
        r: &RecHead,
    ) -> Res<bool, F> {
        let hl = usize::from(r.hlen);
        // `head` holds the decoded header whole (no panic path).
        io.stage_with(|b| {
            if let (Some(d), Some(h)) = (b.get_mut(..hl), head.get(..hl)) {
                crate::words::copy(d, h);
            }
        });
        let addr = self.page_addr(p) + off;
        self.check_record(io, addr, r, 0, hl).await
    }

    /// True when a valid record starts at a multiple of `WRITE_SIZE` in `from..to` of page
    /// `p` (read with base time `base`, each header decoded into `r`).
    #[cold]
    #[inline(always)]
    async fn valid_record_in(
        &mut self,
        io: &IoOf<F>,
        p: u32,
        from: u32,
        to: u32,
        base: u64,
        r: &mut RecHead,
    ) -> Res<bool, F> {
        let ws = F::WRITE_SIZE as u32;
        // The first multiple of `WRITE_SIZE` at or after `from`, written out: through
        // `align_up` the async build inlined this whole scan (+120 B, a longer poll).
        let mut off = from.div_ceil(ws) * ws;
        while off < to.min(Self::PAGE) {
            *r = RecHead::in_page(base);
            if self.read_record_at(io, self.page_addr(p) + off, r).await? {
                return Ok(true);
            }
            off += ws;
        }
        Ok(false)
    }

    /// True when page `p` (not in the log) holds a valid record in its first bytes after
    /// part A: a log page whose header is damaged. Blank pages are told at one read.
    #[cold]
    #[inline(always)]
    pub async fn holds_records(&mut self, io: &IoOf<F>, p: u32) -> Res<bool, F> {
        let from = Self::a_len();
        let to = (from + HOLD_SCAN).min(Self::PAGE);
        if self
            .is_blank(io, self.page_addr(p) + from, to - from)
            .await?
        {
            return Ok(false);
        }
        let mut r = RecHead::BLANK;
        self.valid_record_in(io, p, from, to, 0, &mut r).await
    }

    /// Reads the key (its prefix put back) and value of the record at flash address `at`
    /// ([`Log::append`]'s answer, [`Committed::next_into`]'s), with header `r`, into
    /// `key` and `val`, each when it fits (the caller tells by the lengths in `r`). The
    /// key is read whenever it fits, even when the value does not.
    #[inline(never)]
    pub async fn read_at(
        &mut self,
        io: &IoOf<F>,
        at: u32,
        r: &RecHead,
        key: &mut [u8],
        val: &mut [u8],
    ) -> Res<(), F> {
        let (kl, vl) = (usize::from(r.klen), r.vlen as usize);
        if kl > key.len() {
            return Ok(());
        }
        let p = r.prefix(key);
        let addr = at + u32::from(r.hlen);
        self.read(io, addr, key.get_mut(p..kl).unwrap_or(&mut []))
            .await?;
        if vl > val.len() {
            return Ok(());
        }
        self.read(io, addr + (kl - p) as u32, &mut val[..vl]).await
    }

    /// The first valid record at or after `pos`, its header decoded into `r`, moving to
    /// the next log page when a page's records end (checked there while open reads the
    /// log, [`Log::checked`], with `h` for a page's last header bytes); `None` at the end of
    /// the log. The position returned has a real offset; the record's flash address comes
    /// with it.
    pub async fn next_rec(
        &mut self,
        io: &IoOf<F>,
        mut pos: Pos,
        r: &mut RecHead,
        h: &mut [u8; REC_HEAD_MAX],
    ) -> Res<Option<(Pos, u32)>, F> {
        // Bounded by the pages in the log: each turn moves to the next one.
        loop {
            if pos.li >= self.used {
                return Ok(None);
            }
            let p = self.phys(pos.li);
            if self.page_start(io, p).await? {
                let (first, base) = (self.hdr.first, self.hdr.base);
                let off = pos.off.max(first);
                r.time = base;
                let at = self.page_addr(p) + off;
                if self.read_record_at(io, at, r).await? {
                    return Ok(Some((Pos { li: pos.li, off }, at)));
                }
                if pos.li >= self.checked {
                    self.checked = pos.li + 1;
                    let end = self.page_end(io, p, off, r, h).await?;
                    if end == End::Damaged {
                        self.trust_from = self.trust_from.max(pos.li + 1);
                    }
                    if self.checked == self.used {
                        // The head page: records go on where they end, unless anything
                        // but blank flash follows them (the page is sealed then).
                        self.head_off = if end == End::Blank { off } else { Self::PAGE };
                        self.head_base = base;
                    }
                }
            }
            pos = Pos {
                li: pos.li + 1,
                off: 0,
            };
        }
    }

    /// [`Log::checked`] once open's checks are done: no page is checked again.
    pub const CHECKED: u32 = u32::MAX;

    /// Upper bound on the records the log can hold (bounds every scan).
    pub fn max_records(&self) -> u32 {
        let min = (1 + REC_CRC) as u32;
        self.pages * (Self::PAGE / min + 1) + 4
    }

    /// Bytes of the time delta a record written at `time` takes in the head page.
    pub fn delta_len(&self, time: u64) -> usize {
        if self.used == 0 || time <= self.head_base {
            0
        } else {
            super::format::varint_len(time - self.head_base)
        }
    }

    /// Bytes `rec` takes in a page of base time `base`.
    #[inline(never)]
    pub fn rec_size(rec: &Rec<'_>, base: u64) -> u32 {
        RecHead::encode(rec, None, base).size(F::WRITE_SIZE) as u32
    }

    /// Where the next record goes: the head page's first free byte.
    fn head_addr(&self) -> u32 {
        self.page_addr(self.phys(self.used - 1)) + self.head_off
    }

    /// Appends the record `rec` at the head, opening the next page when it does not fit,
    /// and returns where it starts ([`Log::read_at`] reads it back). The caller has made
    /// sure there is room. The one writer of every record kind; a small frame (the page
    /// opening and the record's header are siblings below it, not nested).
    pub async fn append(&mut self, io: &IoOf<F>, rec: &Rec<'_>) -> Res<u32, F> {
        if rec.key.len() > 255 || rec.val.len() > VLEN_MAX {
            return Err(FlashError::Corrupted);
        }
        // On a fresh page the delta from its base (this record's time) is zero.
        if Self::rec_size(rec, rec.time) > self.cap() {
            return Err(FlashError::Corrupted);
        }
        // The header depends on the page's base time, which a new page may change.
        if self.used == 0 || self.head_off + Self::rec_size(rec, self.head_base) > Self::PAGE {
            self.open_page(io, rec.time.max(self.written_time)).await?;
        }
        self.write_record(io, rec).await
    }

    /// Writes `rec` at the head (it fits the head page).
    #[blocking(inline(never))]
    async fn write_record(&mut self, io: &IoOf<F>, rec: &Rec<'_>) -> Res<u32, F> {
        // The header is encoded straight into the request buffer; only what the write
        // needs of it comes back, in registers. The record's address is worked out after
        // that call, so the frame keeps nothing across it but the arguments.
        let e = io.stage_head(rec, self.head_base);
        let addr = self.head_addr();
        self.head_off += e.size(F::WRITE_SIZE) as u32;
        let (hl, plen) = (e.hlen(), e.plen());
        let parts: [&[u8]; 2] = [rec.key.get(plen..).unwrap_or(&[]), rec.val];
        if let Err(e) = self.write_parts(io, addr, hl, Crc::new(), &parts).await {
            // A torn record ends the page's readable records: write nothing after it.
            self.head_off = Self::PAGE;
            return Err(e);
        }
        // The head page's base time is on flash already (its part B: `written_time` is
        // never below it), so only the record's own time can raise it; the base is not
        // kept across the calls (a smaller frame).
        self.written_time = self.written_time.max(rec.time);
        Ok(addr)
    }
}

/// Walks the records of committed batches from a position, oldest first. Laid out in
/// order (`repr(C)`): its two zeroed buffers side by side, cleared in one piece.
#[repr(C)]
pub(crate) struct Committed {
    /// The header of the record whose batch's end [`Committed::next_into`] is looking for:
    /// kept here, set once, so no call clears one of its own.
    held: RecHead,
    /// The bytes of a page's last header, for [`Log::page_end`]: kept here, zeroed once
    /// with the walk, not at every page's end.
    head: [u8; REC_HEAD_MAX],
    pos: Pos,
    /// End record of the batch being walked.
    end: Option<Pos>,
    budget: u32,
}

#[dual]
impl Committed {
    pub fn new<F: Geometry>(log: &Log<F>, pos: Pos) -> Self {
        Committed {
            pos,
            end: None,
            // Never wraps: regions end below 2^31 and pages hold at least 34 bytes, so
            // `max_records` stays below 2^29.
            budget: log.max_records().wrapping_mul(3),
            held: RecHead::BLANK,
            head: [0; REC_HEAD_MAX],
        }
    }

    /// The flash address of the next record of a committed batch, its header decoded into
    /// `r`; `None` at the end of the log.
    pub async fn next_into<F: Geometry>(
        &mut self,
        io: &IoOf<F>,
        log: &mut Log<F>,
        r: &mut RecHead,
    ) -> Res<Option<u32>, F> {
        let ws = F::WRITE_SIZE;
        // The address of a record whose batch's end is being looked for (its header in
        // `self.held`; [`NOWHERE`](super::NOWHERE), which no record has, while none is),
        // and where the search is.
        let mut first = super::NOWHERE;
        let mut q = self.pos;
        loop {
            if self.budget == 0 {
                return Ok(None);
            }
            self.budget -= 1;
            let Some((at, addr)) = log.next_rec(io, q, r, &mut self.head).await? else {
                return Ok(None);
            };
            q = Pos {
                li: at.li,
                off: at.off + r.size(ws) as u32,
            };
            if first == super::NOWHERE {
                self.pos = q;
                if let Some(end) = self.end {
                    if at == end {
                        self.end = None;
                    }
                    return Ok(Some(addr));
                }
                if r.end() {
                    return Ok(Some(addr));
                }
                // A batch (or what is left of one): look for its end before the next start.
                first = addr;
                self.held = *r;
                continue;
            }
            if r.start() {
                // The batch never ended: go on from this record.
                first = super::NOWHERE;
                q = at;
                self.pos = at;
            } else if r.end() {
                self.end = Some(at);
                *r = self.held;
                return Ok(Some(first));
            }
        }
    }
}

#[cfg(all(test, feature = "_mock"))]
impl Committed {
    /// The next record of a committed batch ([`Committed::next_into`]) and its header.
    pub fn next_blocking<F: Geometry>(
        &mut self,
        io: &mut SyncIoOf<'_, F>,
        log: &mut Log<F>,
    ) -> Res<Option<(Pos, RecHead)>, F> {
        let mut r = RecHead::BLANK;
        let at = self.next_into_blocking(io, log, &mut r)?;
        // The position of the record's address (never at a page's start).
        let pos = |at: u32| {
            let (page, off) = (
                (at - log.base) / Log::<F>::PAGE,
                (at - log.base) % Log::<F>::PAGE,
            );
            let li = (page + log.pages - log.tail) % log.pages;
            Pos { li, off }
        };
        Ok(at.map(|at| (pos(at), r)))
    }
}
