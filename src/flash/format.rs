//! The on-flash format, version [`FORMAT_VERSION`].
//!
//! The flash region is cut into *pages* of `NorFlash::ERASE_SIZE` bytes, used in a cycle.
//! Each page starts with a header in two parts, then holds records back to back. Fixed
//! fields are little-endian; variable ones are LEB128 varints (7 bits a byte, low group
//! first, high bit set on every byte but the last; at most 10 bytes for a `u64`). Every
//! part and every record starts at a multiple of `WRITE_SIZE` and is padded with `0xFF`
//! to a multiple of it, so each flash word is written once between erases.
//!
//! ```text
//! page header, part A (8 bytes, written right after the erase)
//!  0     1     2              6         8
//!  +-----+-----+--------------+---------+ ... pad to WRITE_SIZE
//!  | 'T' | ver | erase count  | CRC-16  |
//!  +-----+-----+--------------+---------+
//!   0x54   = 3   times erased   low 16 bits of CRC-32C over bytes 0..6
//!
//! page header, part B (9 to 18 bytes, written when the page joins the log)
//!  0              4                  4+n          8+n
//!  +--------------+------------------+------------+ ... pad to WRITE_SIZE
//!  |  sequence    | base time (n B)  |  CRC-32C   |
//!  +--------------+------------------+------------+
//!                   varint: cache time when the page was opened; record times are
//!                   deltas from it. CRC-32C over the byte 'B' (0x42), the sequence
//!                   and the base time: the leading constant keeps a blank field from
//!                   checking out (over bytes that start with FF FF FF FF, CRC-32C's
//!                   initial value cancels, and FF FF FF FF 00 would have CRC FF FF FF FF,
//!                   what blank flash reads). Sequence 0xFFFF_FFFF is never valid.
//!                   Records start at the next multiple of WRITE_SIZE.
//!
//! record (first byte never 0xFF: a 0xFF byte where a record would start means "blank")
//!  0     1                                                                        +4
//!  +-----+--------+--------+---------+---------+------+-------+---------+
//!  | tag | key    | vlen   | Δtime   | expiry  | key  | value | CRC-32C | pad
//!  +-----+--------+--------+---------+---------+------+-------+---------+
//!         varint   varint   varint    varint    rest
//!         P,T      P only   if D      if X       CRC over every byte before it
//!
//!  key varint: length of the key's rest << 1 | V. Django's made keys are
//!  `<key prefix>:<version>:<key>`, and with the default key prefix and version they
//!  start with `:1:`: V set means the key is `:1:` then the rest (3 bytes saved), V clear
//!  that the key is the rest (at least one byte). A key is at most 255 bytes whole.
//!
//!  tag bits:  7 6 | 5 | 4 | 3 | 2 | 1 0
//!             type| S | E | D | X | kind
//!  type: 0 put (P), 1 tombstone (T), 2 clear, 3 time. S first record of a batch,
//!  E last record of a batch (commit). D: a time delta follows (absent = 0).
//!  X: an expiry follows (puts only; absent = never). kind: the value's `Kind` (puts
//!  only, else 0). A time record carries no X and no kind, so 0xFF is never a tag.
//!  time = page base time + Δtime; expiry = time + the varint (0: expired at `time`).
//! ```
//!
//! A page whose part A is invalid is free (blank or garbage from an interrupted erase).
//! A page with both parts valid belongs to the log; the log is the run of such pages with
//! consecutive sequence numbers (each page opened gets the next one) that ends at the
//! highest one, read oldest first. Inside a page, records are read up to the first one that
//! is blank or fails its CRC. What follows tells how the page ends: blank flash, or a torn
//! record (a prefix of a record, then blank flash to the end of the page, and no valid
//! record inside its claimed length), is a normal end; anything else is damage, and
//! [`Persistent::open`](super::Persistent::open) then drops every entry whose latest record
//! precedes it. Outside the log, no page has a valid part B or holds valid records unless
//! damaged.
//!
//! An operation writes one *batch*: its records from a first (`S`) to a last (`E`) one. A
//! batch counts only when its last record is on flash; a batch cut short is ignored. A
//! batch may continue on the next page; its first page may later be compacted away, and
//! the records left on the next page still count once their `E` record is found.
//!
//! A record copied by compaction takes the base time of the page it is copied to (already
//! on flash, so time does not move), and keeps its absolute expiry.
//!
//! Older versions are not read: version 1 (32-byte page header, 28-byte record header) and
//! version 2 (this layout with a one-byte key length and no key prefix) have no valid
//! version-3 part A, so such an image opens empty, and its pages are erased before reuse
//! (their erase counts restart from the highest count known). Firmware that moves to this
//! version starts with an empty cache; nothing old is ever read as new.
//!
//! # Geometry
//!
//! Any NOR flash whose `READ_SIZE` and `WRITE_SIZE` are powers of two from 1 to
//! [`MAX_WORD`] (64) bytes, and whose `ERASE_SIZE` is a multiple of both and at least
//! [`min_page_size`] (34 bytes for `WRITE_SIZE` 1, 192 for 64; large pages are fine, 128 KiB
//! sectors included). Reads are made at multiples of `READ_SIZE`, writes at multiples of
//! `WRITE_SIZE`. A geometry outside these bounds does not compile:
//! [`Persistent::open`](super::Persistent::open) checks the flash's associated constants in
//! a `const` block. STM32H7's 32-byte flash words:
//!
//! ```
//! # use embedded_storage::nor_flash::{ErrorType, NorFlash, NorFlashErrorKind, ReadNorFlash};
//! # use tickcache::flash::{Persistent, Policy};
//! # use tickcache::Table;
//! # /// Pages of `E` bytes in RAM, written in words of `W` bytes.
//! # struct Ram<const W: usize, const E: usize>(Vec<u8>);
//! # impl<const W: usize, const E: usize> ErrorType for Ram<W, E> {
//! #     type Error = NorFlashErrorKind;
//! # }
//! # impl<const W: usize, const E: usize> ReadNorFlash for Ram<W, E> {
//! #     const READ_SIZE: usize = 1;
//! #     fn read(&mut self, at: u32, out: &mut [u8]) -> Result<(), Self::Error> {
//! #         out.copy_from_slice(&self.0[at as usize..at as usize + out.len()]);
//! #         Ok(())
//! #     }
//! #     fn capacity(&self) -> usize { self.0.len() }
//! # }
//! # impl<const W: usize, const E: usize> NorFlash for Ram<W, E> {
//! #     const WRITE_SIZE: usize = W;
//! #     const ERASE_SIZE: usize = E;
//! #     fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
//! #         self.0[from as usize..to as usize].fill(0xff);
//! #         Ok(())
//! #     }
//! #     fn write(&mut self, at: u32, data: &[u8]) -> Result<(), Self::Error> {
//! #         let dst = &mut self.0[at as usize..at as usize + data.len()];
//! #         dst.iter_mut().zip(data).for_each(|(d, s)| *d &= s);
//! #         Ok(())
//! #     }
//! # }
//! let flash = Ram::<32, 512>(vec![0xff; 2048]);
//! let p = Persistent::<_, 8, 16, 16>::open(flash, 0..2048, Table::new(), Policy::WriteThrough);
//! assert!(p.is_ok());
//! ```
//!
//! A 128-byte page of 64-byte words holds the two header words and no record:
//!
//! ```compile_fail
//! # use embedded_storage::nor_flash::{ErrorType, NorFlash, NorFlashErrorKind, ReadNorFlash};
//! # use tickcache::flash::{Persistent, Policy};
//! # use tickcache::Table;
//! # /// Pages of `E` bytes in RAM, written in words of `W` bytes.
//! # struct Ram<const W: usize, const E: usize>(Vec<u8>);
//! # impl<const W: usize, const E: usize> ErrorType for Ram<W, E> {
//! #     type Error = NorFlashErrorKind;
//! # }
//! # impl<const W: usize, const E: usize> ReadNorFlash for Ram<W, E> {
//! #     const READ_SIZE: usize = 1;
//! #     fn read(&mut self, at: u32, out: &mut [u8]) -> Result<(), Self::Error> {
//! #         out.copy_from_slice(&self.0[at as usize..at as usize + out.len()]);
//! #         Ok(())
//! #     }
//! #     fn capacity(&self) -> usize { self.0.len() }
//! # }
//! # impl<const W: usize, const E: usize> NorFlash for Ram<W, E> {
//! #     const WRITE_SIZE: usize = W;
//! #     const ERASE_SIZE: usize = E;
//! #     fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
//! #         self.0[from as usize..to as usize].fill(0xff);
//! #         Ok(())
//! #     }
//! #     fn write(&mut self, at: u32, data: &[u8]) -> Result<(), Self::Error> {
//! #         let dst = &mut self.0[at as usize..at as usize + data.len()];
//! #         dst.iter_mut().zip(data).for_each(|(d, s)| *d &= s);
//! #         Ok(())
//! #     }
//! # }
//! let flash = Ram::<64, 128>(vec![0xff; 512]);
//! let p = Persistent::<_, 8, 16, 16>::open(flash, 0..512, Table::new(), Policy::WriteThrough);
//! ```

/// Version of the on-flash format this crate writes and reads.
pub const FORMAT_VERSION: u8 = 3;

/// Magic byte at the start of every page header.
pub const MAGIC: u8 = b'T';

/// Length of header part A before padding.
pub(crate) const PART_A: usize = 8;
/// Longest header part B before padding.
pub(crate) const PART_B_MAX: usize = 4 + VARINT_MAX + 4;
/// Longest record header before the key (tag, key varint, version, vlen, time delta,
/// expiry).
pub(crate) const REC_HEAD_MAX: usize = 1 + 2 + 1 + 3 + VARINT_MAX + VARINT_MAX;
/// Bytes of the CRC closing a record.
pub(crate) const REC_CRC: usize = 4;
/// Longest varint of a `u64`.
pub(crate) const VARINT_MAX: usize = 10;
/// Largest value length a record can state (a 3-byte varint).
pub(crate) const VLEN_MAX: usize = (1 << 21) - 1;

/// Record types (tag bits 7..6).
pub(crate) const T_PUT: u8 = 0;
pub(crate) const T_TOMB: u8 = 1;
pub(crate) const T_CLEAR: u8 = 2;
pub(crate) const T_TIME: u8 = 3;
/// Tag bits.
pub(crate) const TAG_START: u8 = 0b0010_0000;
pub(crate) const TAG_END: u8 = 0b0001_0000;
pub(crate) const TAG_DELTA: u8 = 0b0000_1000;
pub(crate) const TAG_EXPIRY: u8 = 0b0000_0100;

/// Sentinel for "no expiry".
const NEVER: u64 = u64::MAX;

/// Largest `READ_SIZE` and `WRITE_SIZE` supported: reads and writes go through a stack
/// buffer of this many bytes.
pub const MAX_WORD: usize = 64;

/// Smallest page (`ERASE_SIZE`) for a write size of `ws` bytes: header parts A and B, each
/// padded to whole words (they are written at different times), and the shortest record.
/// 34 bytes for `WRITE_SIZE` 1, 64 for 16, 96 for 32, 192 for 64.
pub const fn min_page_size(ws: usize) -> usize {
    align_up(PART_A, ws) + align_up(PART_B_MAX, ws) + record_size(2, 0, 0, 0, ws)
}

/// The prefix that Django's default key function gives every key (empty key prefix,
/// version 1): records write it as one bit.
const PREFIX: &[u8] = b":1:";

/// `a == b` for byte strings, without `memcmp`: no other part of the cache links it
/// (XORs folded, which the compiler does not turn back into a call).
#[inline(never)]
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |d, (x, y)| d | (x ^ y)) == 0
}

/// True when `key` starts with [`PREFIX`]: its first bytes compared as one word, not
/// through [`same`]'s loop.
pub(crate) fn prefixed(key: &[u8]) -> bool {
    key.first_chunk::<{ PREFIX.len() }>()
        .is_some_and(|p| p == PREFIX)
}

/// Bytes `key` takes in a record: its varint and its rest. A key has at most 255 bytes
/// (`K`, and what a record can state), so the varint of its rest's length (shifted by one)
/// is one byte below 64 bytes of rest and two from there: one compare, no call of the
/// varint writer. Out of line: the placers share one copy.
#[inline(never)]
pub(crate) fn key_cost(key: &[u8]) -> usize {
    let rest = key.len() - if prefixed(key) { PREFIX.len() } else { 0 };
    1 + usize::from(rest >= 64) + rest
}

/// Rounds `n` up to a multiple of `align`, a power of two (as `READ_SIZE` and `WRITE_SIZE`
/// are, checked when the flash's geometry is): one add and one mask.
pub(crate) const fn align_up(n: usize, align: usize) -> usize {
    (n + (align - 1)) & !(align - 1)
}

/// CRC-32C (Castagnoli), reflected, computed four bits at a time from a 16-entry table.
#[derive(Clone, Copy)]
pub(crate) struct Crc(u32);

const CRC_TABLE: [u32; 16] = {
    let mut t = [0u32; 16];
    let mut i = 0;
    while i < 16 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 4 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

impl Crc {
    pub(crate) const fn new() -> Self {
        Crc(!0)
    }

    /// Adds `bytes`.
    #[inline(always)]
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        *self = self.updated(bytes);
    }

    /// The CRC with `bytes` added. Out of line, the CRC passed and answered in a register:
    /// its callers keep it out of their frames.
    #[inline(never)]
    pub(crate) fn updated(mut self, bytes: &[u8]) -> Crc {
        for &b in bytes {
            self.push(b);
        }
        self
    }

    /// Adds one byte.
    #[inline(always)]
    pub(crate) const fn push(&mut self, b: u8) {
        let mut c = self.0 ^ b as u32;
        c = (c >> 4) ^ CRC_TABLE[(c & 0xf) as usize];
        self.0 = (c >> 4) ^ CRC_TABLE[(c & 0xf) as usize];
    }

    pub(crate) const fn finish(&self) -> u32 {
        !self.0
    }
}

/// What [`Crc`] finishes with over any bytes followed by their CRC-32C (little-endian):
/// a record checks out when its CRC run over its stored CRC too ends here.
pub(crate) const CRC_RESIDUE: u32 = 0x4867_4BC7;

/// CRC-32C of one slice.
pub(crate) fn crc32c(bytes: &[u8]) -> u32 {
    let mut c = Crc::new();
    c.update(bytes);
    c.finish()
}

/// Bytes of the LEB128 varint of `v`: the varint writer, writing nothing (one loop for
/// both).
#[inline(always)]
pub(crate) fn varint_len(v: u64) -> usize {
    put_varint_at(None, 0, v)
}

/// Writes the varint of `v` at the start of `out`; returns its length.
#[cfg(test)]
pub(crate) fn put_varint(out: &mut [u8; MAX_WORD], v: u64) -> usize {
    put_varint_at(Some(out), 0, v)
}

/// Writes the varint of `v` at `out[at..]` when there is an `out` (bytes past its end are
/// not written); returns where it ends. Out of line, its arguments in registers: the one
/// varint writer, below the record header's encoder.
#[inline(never)]
pub(crate) fn put_varint_at(
    mut out: Option<&mut [u8; MAX_WORD]>,
    mut at: usize,
    mut v: u64,
) -> usize {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        let more = v != 0;
        if let Some(d) = out.as_deref_mut().and_then(|o| o.get_mut(at)) {
            *d = b | u8::from(more) << 7;
        }
        at += 1;
        if !more {
            return at;
        }
    }
}

/// Reads a varint of at most `max` bytes from the start of `buf`: value and length.
/// `None` when it does not end within `max` bytes or `buf`, or overflows a `u64`.
#[cfg(test)]
pub(crate) fn get_varint(buf: &[u8], max: usize) -> Option<(u64, usize)> {
    // [`varint_at`] reads from the second byte on.
    let h = [&[0][..], buf].concat();
    let (v, end) = varint_at(&h, 1, max);
    ended(end).ok().map(|end| (v, end - 1))
}

/// Header part A for a page erased `erase_count` times.
#[cfg(test)]
pub(crate) fn part_a(erase_count: u32) -> [u8; PART_A] {
    let mut b = [0u8; MAX_WORD];
    part_a_into(&mut b, erase_count);
    *b.first_chunk().unwrap()
}

/// Writes header part A for a page erased `erase_count` times at the start of `a` (a
/// request buffer): encoded in place, no copy of its own.
pub(crate) fn part_a_into(a: &mut [u8; MAX_WORD], erase_count: u32) {
    a[0] = MAGIC;
    a[1] = FORMAT_VERSION;
    a[2..6].copy_from_slice(&erase_count.to_le_bytes());
    let crc = crc32c(&a[..6]) as u16;
    a[6..8].copy_from_slice(&crc.to_le_bytes());
}

/// The erase count of a valid part A at the start of `a`.
pub(crate) fn parse_part_a(a: &[u8]) -> Option<u32> {
    let a = a.first_chunk::<PART_A>()?;
    let crc = u16::from_le_bytes([a[6], a[7]]);
    // Magic and version compared as one half-word.
    let id = u16::from_le_bytes([a[0], a[1]]);
    if id != u16::from_le_bytes([MAGIC, FORMAT_VERSION]) || crc32c(&a[..6]) as u16 != crc {
        return None;
    }
    Some(u32::from_le_bytes([a[2], a[3], a[4], a[5]]))
}

/// Header part B: the page's sequence number and base time; the bytes and their length.
#[cfg(test)]
pub(crate) fn part_b(seq: u32, time: u64) -> ([u8; PART_B_MAX], usize) {
    let mut b = [0u8; MAX_WORD];
    let n = part_b_into(&mut b, seq, time);
    let mut out = [0u8; PART_B_MAX];
    out.copy_from_slice(&b[..PART_B_MAX]);
    (out, n)
}

/// Writes header part B (the page's sequence number and base time) at the start of `b` (a
/// request buffer); returns its length.
#[cfg(test)]
pub(crate) fn part_b_into(b: &mut [u8; MAX_WORD], seq: u32, time: u64) -> usize {
    let n = part_b_fields(b, seq, time);
    let crc = part_b_crc(&b[..n]).finish();
    b[n..n + 4].copy_from_slice(&crc.to_le_bytes());
    n + 4
}

/// Writes the fields of header part B (the page's sequence number and base time) at the
/// start of `b` (a request buffer); returns their length. The record writer appends their
/// CRC, from [`PART_B_SEED`]: the log's one writer writes part B whole.
pub(crate) fn part_b_fields(b: &mut [u8; MAX_WORD], seq: u32, time: u64) -> usize {
    b[..4].copy_from_slice(&seq.to_le_bytes());
    put_varint_at(Some(b), 4, time)
}

/// The sequence number, base time and length of a valid part B at the start of `b`.
pub(crate) fn parse_part_b(b: &[u8]) -> Option<(u32, u64, usize)> {
    if b.len() < 9 {
        return None;
    }
    let seq = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let (time, n) = varint_at(b, 4, b.len() - 8);
    ended(n).ok()?;
    // The varint leaves the CRC's 4 bytes in `b` (taken with no panic path).
    let (fields, rest) = b.split_at_checked(n)?;
    let crc = u32::from_le_bytes(*rest.first_chunk::<4>()?);
    (seq != SEQ_NEVER && part_b_crc(fields).finish() == crc).then_some((seq, time, n + 4))
}

/// A sequence number never written: reading it means a blank or damaged part B.
pub(crate) const SEQ_NEVER: u32 = u32::MAX;

/// Part B's CRC before its fields: the constant `'B'` in front (see the diagram).
pub(crate) const PART_B_SEED: Crc = {
    let mut c = Crc::new();
    c.push(b'B');
    c
};

/// CRC-32C of part B's fields, with the constant `'B'` in front, not finished.
fn part_b_crc(fields: &[u8]) -> Crc {
    let mut c = PART_B_SEED;
    c.update(fields);
    c
}

/// What [`varint_at`] answers for a varint `h` ends before ([`Unread::Short`]: every byte
/// there asks for one more).
const SHORT: usize = 0;
/// What [`varint_at`] answers for bytes that are no varint ([`Unread::Invalid`]).
const INVALID: usize = 1;

/// The varint of at most `max` bytes at `h[n..]` (`n` at least 1) and where it ends in
/// `h`, or why there is none: an end of [`SHORT`] or [`INVALID`] (a varint ends at 2 or
/// later), told apart by [`ended`]. The one varint reader of record and page headers; its
/// answer is a plain pair, no result tag to store and test besides the end. Inlined into
/// its two callers (the record header's decoder and part B's check): no call, and each
/// copy folds its own offset and bound.
#[inline(always)]
fn varint_at(h: &[u8], n: usize, max: usize) -> (u64, usize) {
    let h = h.get(n..).unwrap_or_default();
    // Its length first: every byte but the last asks for one more.
    let mut len = 0;
    let last = loop {
        let Some(&b) = h.get(len) else {
            return (0, SHORT);
        };
        len += 1;
        if b & 0x80 == 0 {
            break b;
        }
        if len >= max.min(VARINT_MAX) {
            return (0, INVALID);
        }
    };
    // A tenth byte holds the top bit of a `u64` only; a non-minimal encoding (a trailing
    // zero group) is refused.
    if (len == VARINT_MAX && last > 1) || (len > 1 && last == 0) {
        return (0, INVALID);
    }
    // Then its value, high group first: shifts by a constant.
    let mut v = 0u64;
    for &b in h.get(..len).unwrap_or_default().iter().rev() {
        v = v << 7 | u64::from(b & 0x7f);
    }
    (v, n + len)
}

/// Where a varint read by [`varint_at`] ends, or why there is none.
#[inline(always)]
fn ended(end: usize) -> Result<usize, Unread> {
    if end > INVALID {
        Ok(end)
    } else if end == SHORT {
        Err(Unread::Short)
    } else {
        Err(Unread::Invalid)
    }
}

/// Why a record header does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unread {
    /// The bytes end before the header does: a write cut short could have left them.
    Short,
    /// No header starts with these bytes.
    Invalid,
}

/// A record to write, whatever its kind: the one description every writer passes (its
/// header depends on the page it lands in, [`RecHead::encode`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rec<'a> {
    /// The tag's type ([`T_PUT`], [`T_TOMB`], [`T_CLEAR`] or [`T_TIME`]), `S`, `E` and kind
    /// (puts only) bits; [`RecHead::encode`] adds `D` and `X`.
    pub tag: u8,
    /// The whole key (empty for clear and time records).
    pub key: &'a [u8],
    /// The value (puts only).
    pub val: &'a [u8],
    /// Cache time of the write.
    pub time: u64,
    /// Absolute expiry (puts only; `u64::MAX`: never).
    pub expiry: u64,
}

/// The type bits of a tag.
pub(crate) const TAG_TYPE: u8 = 0b1100_0000;

impl<'a> Rec<'a> {
    /// Sets the record's type to `ty` ([`T_PUT`], [`T_TOMB`], ...) with `kind` (a put's
    /// kind bits; 0 otherwise), keeping its `S` and `E` bits.
    pub(crate) fn set_type(&mut self, ty: u8, kind: u8) {
        self.tag = self.tag & !TAG_TYPE | ty << 6 | kind;
    }

    /// A record of type `ty` with batch bits `flags` ([`TAG_START`], [`TAG_END`]) and no key
    /// nor value yet, written at `time`: the batch writer's base for every record it writes.
    pub(crate) const fn bare(ty: u8, flags: u8, time: u64) -> Self {
        Rec {
            tag: ty << 6 | flags,
            key: &[],
            val: &[],
            time,
            expiry: 0,
        }
    }

    /// A put of `key` = `val` (a single-record batch unless the flags are changed).
    pub(crate) const fn put(
        key: &'a [u8],
        val: &'a [u8],
        kind: u8,
        time: u64,
        expiry: u64,
    ) -> Self {
        Rec {
            tag: T_PUT << 6 | TAG_START | TAG_END | (kind & 0b11),
            key,
            val,
            time,
            expiry,
        }
    }
}

/// A record header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecHead {
    pub tag: u8,
    /// Length of the whole key, its prefix put back (0 for clear and time records).
    pub klen: u8,
    /// The key starts with `:1:`, not written (see the diagram).
    pub pfx: bool,
    pub vlen: u32,
    /// Absolute cache time of the write.
    pub time: u64,
    /// Absolute expiry tick (`u64::MAX`: never; puts only).
    pub expiry: u64,
    /// Bytes of the header before the key.
    pub hlen: u8,
}

impl RecHead {
    pub(crate) fn ty(&self) -> u8 {
        self.tag >> 6
    }
    pub(crate) fn kind(&self) -> u8 {
        self.tag & 0b11
    }
    pub(crate) fn start(&self) -> bool {
        self.tag & TAG_START != 0
    }
    pub(crate) fn end(&self) -> bool {
        self.tag & TAG_END != 0
    }

    /// The header of `rec` in a page of base time `base` (a time older than `base` is
    /// stored as `base`), decoded: what [`RecHead::parse_into`] reads back from the bytes
    /// [`RecHead::encode`] writes (the tests' reference). The key and value lengths must be
    /// in range (`key` 1..=255 bytes for puts and tombstones, empty else; the value at most
    /// [`VLEN_MAX`] bytes).
    #[cfg(test)]
    pub(crate) fn new(rec: &Rec<'_>, base: u64) -> RecHead {
        let (tag, time, expiry) = Self::fields(rec, base);
        let e = Self::encode(rec, None, base);
        RecHead {
            tag,
            klen: rec.key.len() as u8,
            pfx: e.plen() != 0,
            vlen: rec.val.len() as u32,
            time,
            expiry,
            hlen: e.hlen() as u8,
        }
    }

    /// The tag (with `D` and `X`), time and expiry of `rec`'s header in a page of base time
    /// `base`.
    #[inline(always)]
    fn fields(rec: &Rec<'_>, base: u64) -> (u8, u64, u64) {
        let mut tag = rec.tag;
        let mut time = base;
        if rec.time > base {
            time = rec.time;
            tag |= TAG_DELTA;
        }
        let mut expiry = NEVER;
        if tag >> 6 == T_PUT && rec.expiry != NEVER {
            tag |= TAG_EXPIRY;
            expiry = rec.expiry.max(time);
        }
        (tag, time, expiry)
    }

    /// Encodes the header of `rec` in a page of base time `base` (a time older than `base`
    /// is stored as `base`; the key and value lengths must be in range: `key` 1..=255
    /// bytes for puts and tombstones, empty else, the value at most [`VLEN_MAX`] bytes)
    /// at the start of `h` when there is one (none: the header only measured), and answers
    /// what the writer needs of it in two registers ([`Encoded`]): no header is built in
    /// the caller's frame. The base last: every argument is in a register. One function
    /// measures and encodes a header: the writer stages it in the request buffer with the
    /// length it measures.
    #[inline(never)]
    pub(crate) fn encode(rec: &Rec<'_>, mut h: Option<&mut [u8; MAX_WORD]>, base: u64) -> Encoded {
        let (tag, time, expiry) = Self::fields(rec, base);
        let ty = tag >> 6;
        // Lengths as a header holds them (a key of at most 255 bytes, [`RecHead::klen`]).
        let klen = usize::from(rec.key.len() as u8);
        let vlen = rec.val.len() as u32;
        let pfx = prefixed(rec.key);
        let plen = PREFIX.len() * usize::from(pfx);
        let rest = klen - plen;
        if let Some(h) = h.as_deref_mut() {
            h[0] = tag;
        }
        let mut n = 1;
        if ty <= T_TOMB {
            n = put_varint_at(h.as_deref_mut(), n, (rest << 1 | usize::from(pfx)) as u64);
            if ty == T_PUT {
                n = put_varint_at(h.as_deref_mut(), n, u64::from(vlen));
            }
        }
        if tag & TAG_DELTA != 0 {
            n = put_varint_at(h.as_deref_mut(), n, time - base);
        }
        if tag & TAG_EXPIRY != 0 {
            n = put_varint_at(h, n, expiry - time);
        }
        Encoded {
            end: (n + rest) as u32 + vlen,
            hp: n as u32 | (plen as u32) << 8,
        }
    }

    /// Bytes of the key the prefix stands for (not on flash).
    pub(crate) fn plen(&self) -> usize {
        PREFIX.len() * usize::from(self.pfx)
    }

    /// Writes the key prefix the record stands for into `out` (at least 3 bytes); returns
    /// its length.
    pub(crate) fn prefix(&self, out: &mut [u8]) -> usize {
        if self.pfx {
            out[..PREFIX.len()].copy_from_slice(PREFIX);
        }
        self.plen()
    }

    /// No header: what [`RecHead::parse_into`] fills in.
    pub(crate) const BLANK: RecHead = RecHead {
        tag: 0,
        klen: 0,
        pfx: false,
        vlen: 0,
        time: 0,
        expiry: 0,
        hlen: 0,
    };

    /// No header yet, in a page of base time `base` (kept in `time` until one is decoded).
    pub(crate) const fn in_page(base: u64) -> RecHead {
        RecHead {
            time: base,
            ..RecHead::BLANK
        }
    }

    /// [`RecHead::parse`], without why a header does not decode.
    #[cfg(test)]
    pub(crate) fn decode(h: &[u8], base: u64) -> Option<RecHead> {
        Self::parse(h, base).ok()
    }

    /// [`RecHead::parse_into`] a header of its own.
    #[cfg(test)]
    pub(crate) fn parse(h: &[u8], base: u64) -> Result<RecHead, Unread> {
        let mut r = RecHead::in_page(base);
        Self::parse_into(h, &mut r).map(|()| r)
    }

    /// Decodes a header from the start of `h` (which may run past it) in a page of base
    /// time `r.time` on entry ([`RecHead::in_page`]: the base passed in the header filled,
    /// no argument of its own) into `r` (left partly written when the header does not
    /// decode), checking
    /// its shape (not the CRC, which needs key and value). Tells a header that `h` cuts
    /// short ([`Unread::Short`]: it may continue past `h`) from one that no bytes after `h`
    /// could make valid. The header is decoded where the caller keeps it, not copied out of
    /// a frame of its own (this lies on the deepest path of a call, compaction reading a
    /// changed key's record).
    #[inline(never)]
    pub(crate) fn parse_into(h: &[u8], r: &mut RecHead) -> Result<(), Unread> {
        let base = r.time;
        let tag = h.first().copied().ok_or(Unread::Short)?;
        let ty = tag >> 6;
        let x = tag & TAG_EXPIRY != 0;
        // A put's kind bits name a kind whatever they hold; other types have neither kind
        // nor expiry.
        if ty != T_PUT && (tag & 0b11 != 0 || x) {
            return Err(Unread::Invalid);
        }
        *r = RecHead {
            tag,
            expiry: NEVER,
            time: base,
            ..RecHead::BLANK
        };
        // The varints present, one bit each in their order: the key (puts and
        // tombstones), the value length (puts), the time delta (`D`), the expiry (`X`).
        // One read site for them all, each decoded after it in its own arm.
        let mut fields = u8::from(ty <= T_TOMB)
            | u8::from(ty == T_PUT) << 1
            | u8::from(tag & TAG_DELTA != 0) << 2
            | u8::from(x) << 3;
        let mut n = 1;
        while fields != 0 {
            let i = fields.trailing_zeros();
            fields &= fields - 1;
            // The key varint holds 2 bytes at most, the value length 3.
            let max = if i < 2 { 2 + i as usize } else { VARINT_MAX };
            let (v, end) = varint_at(h, n, max);
            n = ended(end)?;
            match i {
                0 => {
                    // Two bytes hold 14 bits: exact in a `usize`.
                    let k = v as usize;
                    r.pfx = k & 1 != 0;
                    let full = (k >> 1) + PREFIX.len() * usize::from(r.pfx);
                    if full == 0 || full > 255 {
                        return Err(Unread::Invalid);
                    }
                    r.klen = full as u8;
                }
                1 => r.vlen = v as u32,
                // The time (a delta from the base, in `time` so far), then the expiry (a
                // delta from the time): a zero delta is written as none, and an expiry of
                // never as none.
                _ => {
                    let t = r.time.checked_add(v).ok_or(Unread::Invalid)?;
                    let (bad, field) = if i == 2 {
                        (v == 0, &mut r.time)
                    } else {
                        (t == NEVER, &mut r.expiry)
                    };
                    if bad {
                        return Err(Unread::Invalid);
                    }
                    *field = t;
                }
            }
        }
        r.hlen = n as u8;
        Ok(())
    }

    /// Bytes before the CRC (header, the key's rest and value).
    #[inline(never)]
    pub(crate) fn body_end(&self) -> u32 {
        (usize::from(self.hlen) + usize::from(self.klen) - self.plen()) as u32 + self.vlen
    }

    /// Bytes the record takes on flash with write size `ws`.
    #[inline(never)]
    pub(crate) fn size(&self, ws: usize) -> usize {
        align_up(self.body_end() as usize + REC_CRC, ws)
    }
}

/// What the record writer needs of an encoded header ([`RecHead::encode`]): two words,
/// answered in registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Encoded {
    /// Bytes before the CRC (header, the key's rest and value: [`RecHead::body_end`]).
    pub end: u32,
    /// The header's length, and from bit 8 on the bytes of the key the prefix stands for.
    hp: u32,
}

impl Encoded {
    /// Bytes of the header.
    pub(crate) fn hlen(self) -> usize {
        (self.hp & 0xff) as usize
    }

    /// Bytes of the key the prefix stands for (not on flash, [`RecHead::plen`]).
    pub(crate) fn plen(self) -> usize {
        (self.hp >> 8) as usize
    }

    /// Bytes the record takes on flash with write size `ws` ([`RecHead::size`]).
    pub(crate) fn size(self, ws: usize) -> usize {
        align_up(self.end as usize + REC_CRC, ws)
    }
}

/// Upper bound on the bytes a record takes on flash whose key takes `kcost` bytes
/// ([`key_cost`]; 0 for clear and time records) with `vlen` value bytes, a time delta of
/// `dlen` varint bytes (0: none) and an expiry varint of `xlen` bytes (0: never).
pub(crate) const fn record_size(
    kcost: usize,
    vlen: usize,
    dlen: usize,
    xlen: usize,
    ws: usize,
) -> usize {
    // The value length's varint counted in place, not by `varint_len` (the out-of-line
    // varint writer): the size of a record of constant lengths (the capacities') folds to
    // a constant.
    let mut lens = 1;
    let mut v = vlen as u64 >> 7;
    while v != 0 {
        lens += 1;
        v >>= 7;
    }
    align_up(bytes_with(kcost, vlen, xlen, lens) + dlen, ws)
}

/// [`record_size`] before the time delta and the padding to a whole word.
#[inline(always)]
pub(crate) fn record_bytes(kcost: usize, vlen: usize, xlen: usize) -> usize {
    bytes_with(kcost, vlen, xlen, varint_len(vlen as u64))
}

/// [`record_bytes`], given the bytes of the value length's varint (`lens`).
#[inline(always)]
const fn bytes_with(kcost: usize, vlen: usize, xlen: usize, lens: usize) -> usize {
    // The value length (a tombstone has none: one byte of slack).
    let lens = if kcost > 0 { lens } else { 0 };
    1 + kcost + lens + xlen + vlen + REC_CRC
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header of a record with `vlen` value bytes.
    #[allow(clippy::too_many_arguments)]
    fn head(
        ty: u8,
        start: bool,
        end: bool,
        kind: u8,
        key: &[u8],
        vlen: usize,
        time: u64,
        expiry: u64,
        base: u64,
    ) -> (RecHead, [u8; REC_HEAD_MAX]) {
        let val = [0u8; 300];
        let rec = Rec {
            tag: ty << 6 | u8::from(start) << 5 | u8::from(end) << 4 | kind,
            key,
            val: &val[..vlen],
            time,
            expiry,
        };
        let mut h = [0xffu8; MAX_WORD];
        let e = RecHead::encode(&rec, Some(&mut h), base);
        assert_eq!(e, RecHead::encode(&rec, None, base));
        let r = RecHead::new(&rec, base);
        assert_eq!(
            (e.end, e.hlen(), e.plen()),
            (r.body_end(), usize::from(r.hlen), r.plen())
        );
        (r, *h.first_chunk().unwrap())
    }

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn bytes_and_their_crc_end_in_the_residue() {
        for data in [&b""[..], b"123456789", &[0xff; 70], &[0; 5]] {
            let mut c = Crc::new();
            c.update(data);
            c.update(&crc32c(data).to_le_bytes());
            assert_eq!(c.finish(), CRC_RESIDUE);
            let mut c = Crc::new();
            c.update(data);
            c.update(&(crc32c(data) ^ 1).to_le_bytes());
            assert_ne!(c.finish(), CRC_RESIDUE);
        }
    }

    #[test]
    fn varints_round_trip() {
        let mut b = [0u8; MAX_WORD];
        for v in [0, 1, 127, 128, 300, 1 << 35, u64::MAX - 1, u64::MAX] {
            let n = put_varint(&mut b, v);
            assert_eq!(n, varint_len(v));
            assert_eq!(get_varint(&b[..n], VARINT_MAX), Some((v, n)));
            // Cut short, it never decodes.
            assert_eq!(get_varint(&b[..n - 1], VARINT_MAX), None);
        }
        assert_eq!(get_varint(&[0xff; 12], VARINT_MAX), None);
        assert_eq!(get_varint(&[0x80, 0x00], VARINT_MAX), None);
        assert_eq!(
            get_varint(
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
                10
            ),
            None
        );
    }

    #[test]
    fn headers_round_trip() {
        let a = part_a(7);
        assert_eq!(parse_part_a(&a), Some(7));
        let mut bad = a;
        bad[3] ^= 1;
        assert_eq!(parse_part_a(&bad), None);
        assert_eq!(parse_part_a(&[0xff; PART_A]), None);
        for t in [0u64, 5, 1 << 40, u64::MAX] {
            let (b, n) = part_b(42, t);
            assert_eq!(n, 8 + varint_len(t));
            assert_eq!(parse_part_b(&b), Some((42, t, n)));
            for cut in 0..n {
                let mut torn = [0xffu8; PART_B_MAX];
                torn[..cut].copy_from_slice(&b[..cut]);
                assert_eq!(parse_part_b(&torn), None, "cut at {cut}");
            }
        }
    }

    #[test]
    fn record_header_round_trip() {
        for (ty, kind, klen, vlen, time, expiry, base) in [
            (T_PUT, 2u8, 3usize, 2usize, 99u64, 1234u64, 90u64),
            (T_PUT, 0, 2, 200, 90, u64::MAX, 90),
            (T_PUT, 1, 1, 0, 50, 40, 90),
            (T_TOMB, 0, 4, 0, 1 << 40, u64::MAX, 0),
            (T_CLEAR, 0, 0, 0, 7, u64::MAX, 7),
            (T_TIME, 0, 0, 0, 8, u64::MAX, 7),
        ] {
            let key = &b"abcd"[..klen];
            let (r, h) = head(ty, true, true, kind, key, vlen, time, expiry, base);
            assert_ne!(h[0], 0xff);
            assert_eq!(RecHead::decode(&h, base), Some(r));
            assert_eq!(r.time, time.max(base));
            let kc = if klen > 0 { key_cost(key) } else { 0 };
            let dlen = varint_len(time.saturating_sub(base));
            assert!(r.size(1) <= record_size(kc, vlen, dlen, 10, 1));
        }
        let (r, _) = head(T_PUT, true, true, 0, b"ab", 5, 9, u64::MAX, 9);
        assert_eq!(r.hlen, 3);
        assert_eq!(r.size(1), 3 + 2 + 5 + 4);
        assert_eq!(r.size(16), 16);
        assert_eq!(RecHead::decode(&[0xff; REC_HEAD_MAX], 0), None);
    }

    #[test]
    fn a_header_cut_short_is_told_from_an_invalid_one() {
        for (ty, kind, key, vlen, time, expiry, base) in [
            (T_PUT, 2u8, &b"abc"[..], 300usize, 1 << 20, 1 << 30, 90u64),
            (T_PUT, 0, b":1:abc", 3, 5, 9, 0),
            (T_TOMB, 0, &[b'k'; 255], 0, 200, u64::MAX, 0),
            (T_TIME, 0, b"", 0, 1 << 40, u64::MAX, 0),
        ] {
            let (r, h) = head(ty, true, false, kind, key, vlen, time, expiry, base);
            let n = usize::from(r.hlen);
            assert_eq!(RecHead::parse(&h[..n], base), Ok(r));
            for cut in 0..n {
                assert_eq!(
                    RecHead::parse(&h[..cut], base),
                    Err(Unread::Short),
                    "cut {cut}"
                );
            }
        }
        assert_eq!(RecHead::parse(&[0xff], 0), Err(Unread::Invalid));
        assert_eq!(RecHead::parse(&[0x00, 0x00], 0), Err(Unread::Invalid));
        assert_eq!(
            RecHead::parse(&[0x00, 0x03, 0x80, 0x00], 0),
            Err(Unread::Invalid)
        );
    }

    #[test]
    fn the_default_django_prefix_is_one_bit_and_read_back_whole() {
        for (key, pfx) in [
            (&b":1:answer"[..], true),
            (b":1:", true),
            (&[b'k'; 255], false),
            ([&b":1:"[..], &[b'k'; 252]].concat().leak(), true),
            // Written whole.
            (b":2:x", false),
            (b":1", false),
            (b"app:1:x", false),
            (b"k", false),
        ] {
            let (r, h) = head(T_PUT, true, true, 0, key, 2, 9, u64::MAX, 9);
            assert_eq!(r.pfx, pfx, "{key:?}");
            let rest = key.len() - if pfx { 3 } else { 0 };
            // Tag, key varint, value length, the key's rest, two value bytes.
            let varint = if rest < 64 { 1 } else { 2 };
            assert_eq!(r.body_end() as usize, 1 + varint + 1 + rest + 2, "{key:?}");
            assert_eq!(key_cost(key), varint + rest, "{key:?}");
            let back = RecHead::decode(&h, 9).expect("decodes");
            assert_eq!(back, r);
            let mut p = [0u8; 3];
            let n = back.prefix(&mut p);
            assert_eq!(&p[..n], &key[..n], "{key:?}");
            assert_eq!(usize::from(back.klen), key.len());
        }
        // A key over 255 bytes whole, and an empty one, never decode.
        for k in [0u64, 253 << 1 | 1, 256 << 1] {
            let mut h = [0u8; MAX_WORD];
            let n = put_varint_at(Some(&mut h), 1, k) - 1;
            h[1 + n] = 2;
            assert_eq!(RecHead::decode(&h, 0), None, "{k}");
        }
    }

    #[test]
    fn blank_part_b_with_one_stray_byte_is_not_valid() {
        for at in 0..PART_B_MAX {
            for stray in [0x00u8, 0x7f, 0xfe] {
                let mut b = [0xffu8; PART_B_MAX];
                b[at] = stray;
                assert_eq!(parse_part_b(&b), None, "byte {at} = {stray:#x}");
            }
        }
    }

    #[test]
    fn the_never_sequence_is_not_valid() {
        let (b, _) = part_b(SEQ_NEVER, 5);
        assert_eq!(parse_part_b(&b), None);
        let (b, n) = part_b(SEQ_NEVER - 1, 5);
        assert_eq!(parse_part_b(&b), Some((SEQ_NEVER - 1, 5, n)));
    }
}
