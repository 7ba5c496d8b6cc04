//! The on-flash format, version [`FORMAT_VERSION`].
//!
//! The flash region is cut into *pages* of `NorFlash::ERASE_SIZE` bytes, used in a cycle.
//! Each page starts with a header in two parts, then holds records back to back. Every
//! field is little-endian; every part and every record starts at a multiple of
//! `WRITE_SIZE` and is padded with `0xFF` to a multiple of it, so each flash word is
//! written once between erases. Parts `A` and `B` are 16 bytes each before padding.
//!
//! ```text
//! page header, part A (written right after the erase)
//!  0      4      5        8              12             16
//!  +------+------+--------+--------------+--------------+ ... pad to WRITE_SIZE
//!  | magic| ver  | 0 0 0  | erase count  | CRC-32C 0..12|
//!  +------+------+--------+--------------+--------------+
//!  "TKCH"   = 1             times erased   over magic..erase count
//!
//! page header, part B (written when the page joins the log)
//!  0              4                            12             16
//!  +--------------+----------------------------+--------------+ ... pad to WRITE_SIZE
//!  |  sequence    | cache time when opened     | CRC-32C      |
//!  +--------------+----------------------------+--------------+
//!  CRC over the erase count (from part A), sequence and time. The time keeps the latest
//!  cache time on flash when the pages that held it are compacted away.
//!
//! record (first byte never 0xFF: a 0xFF byte where a record would start means "blank")
//!  0     1     2     3     4       6     8           16          24        28
//!  +-----+-----+-----+-----+-------+-----+-----------+-----------+---------+-----+-------+
//!  | tag |kind |klen |  0  | vlen  | 0 0 |   time    |  expiry   | CRC-32C | key | value | pad
//!  +-----+-----+-----+-----+-------+-----+-----------+-----------+---------+-----+-------+
//!  tag = 0b01ES_TTTT: T type (1 put, 2 tombstone, 3 clear, 4 time), S first record of a
//!  batch, E last record of a batch (commit). CRC over bytes 0..24, key and value.
//!  time = cache time of the write; expiry = absolute expiry tick (puts), else 0.
//! ```
//!
//! A page whose part A is invalid is free (blank or garbage from an interrupted erase).
//! A page with both parts valid belongs to the log; the log is the run of such pages with
//! increasing sequence numbers that ends at the highest one, read oldest first. Inside a
//! page, records are read up to the first one that is blank or fails its CRC.
//!
//! An operation writes one *batch*: its records from a first (`S`) to a last (`E`) one. A
//! batch counts only when its last record is on flash; a batch cut short is ignored. A
//! batch may continue on the next page; its first page may later be compacted away, and
//! the records left on the next page still count once their `E` record is found.

/// Version of the on-flash format this crate writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// Magic bytes at the start of every page header.
pub const MAGIC: [u8; 4] = *b"TKCH";

/// Length of header part A before padding.
pub(crate) const PART_A: usize = 16;
/// Length of header part B before padding.
pub(crate) const PART_B: usize = 16;
/// Length of a record header (before key and value).
pub(crate) const REC_HEADER: usize = 28;

/// Record types.
pub(crate) const T_PUT: u8 = 1;
pub(crate) const T_TOMB: u8 = 2;
pub(crate) const T_CLEAR: u8 = 3;
pub(crate) const T_TIME: u8 = 4;
/// Tag bits.
pub(crate) const TAG_FIXED: u8 = 0b0100_0000;
pub(crate) const TAG_START: u8 = 0b0001_0000;
pub(crate) const TAG_END: u8 = 0b0010_0000;

/// Rounds `n` up to a multiple of `align` (a power of two or any positive number).
pub(crate) const fn align_up(n: usize, align: usize) -> usize {
    n.div_ceil(align) * align
}

/// CRC-32C (Castagnoli), reflected, computed four bits at a time from a 16-entry table.
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

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        let mut c = self.0;
        for &b in bytes {
            c ^= u32::from(b);
            c = (c >> 4) ^ CRC_TABLE[(c & 0xf) as usize];
            c = (c >> 4) ^ CRC_TABLE[(c & 0xf) as usize];
        }
        self.0 = c;
    }

    pub(crate) const fn finish(&self) -> u32 {
        !self.0
    }
}

/// CRC-32C of one slice.
pub(crate) fn crc32c(bytes: &[u8]) -> u32 {
    let mut c = Crc::new();
    c.update(bytes);
    c.finish()
}

/// Header part A for a page erased `erase_count` times.
pub(crate) fn part_a(erase_count: u32) -> [u8; PART_A] {
    let mut a = [0u8; PART_A];
    a[..4].copy_from_slice(&MAGIC);
    a[4] = FORMAT_VERSION;
    a[8..12].copy_from_slice(&erase_count.to_le_bytes());
    let crc = crc32c(&a[..12]);
    a[12..16].copy_from_slice(&crc.to_le_bytes());
    a
}

/// The erase count of a valid part A.
pub(crate) fn parse_part_a(a: &[u8; PART_A]) -> Option<u32> {
    let crc = u32::from_le_bytes([a[12], a[13], a[14], a[15]]);
    if a[..4] != MAGIC || a[4] != FORMAT_VERSION || crc32c(&a[..12]) != crc {
        return None;
    }
    Some(u32::from_le_bytes([a[8], a[9], a[10], a[11]]))
}

/// Header part B: the page's sequence number and the cache time when it was opened, bound
/// to its erase count.
pub(crate) fn part_b(erase_count: u32, seq: u32, time: u64) -> [u8; PART_B] {
    let mut b = [0u8; PART_B];
    b[..4].copy_from_slice(&seq.to_le_bytes());
    b[4..12].copy_from_slice(&time.to_le_bytes());
    let mut c = Crc::new();
    c.update(&erase_count.to_le_bytes());
    c.update(&b[..12]);
    b[12..16].copy_from_slice(&c.finish().to_le_bytes());
    b
}

/// The sequence number and time of a valid part B.
pub(crate) fn parse_part_b(erase_count: u32, b: &[u8; PART_B]) -> Option<(u32, u64)> {
    let seq = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let time = u64::from_le_bytes([b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11]]);
    let crc = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
    let mut c = Crc::new();
    c.update(&erase_count.to_le_bytes());
    c.update(&b[..12]);
    (c.finish() == crc).then_some((seq, time))
}

/// A record header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecHead {
    pub tag: u8,
    pub kind: u8,
    pub klen: u8,
    pub vlen: u16,
    pub time: u64,
    pub expiry: u64,
    pub crc: u32,
}

impl RecHead {
    pub(crate) fn ty(&self) -> u8 {
        self.tag & 0x0f
    }
    pub(crate) fn start(&self) -> bool {
        self.tag & TAG_START != 0
    }
    pub(crate) fn end(&self) -> bool {
        self.tag & TAG_END != 0
    }

    /// The first 24 bytes (what the CRC covers before key and value).
    pub(crate) fn encode(&self) -> [u8; REC_HEADER] {
        let mut h = [0u8; REC_HEADER];
        h[0] = self.tag;
        h[1] = self.kind;
        h[2] = self.klen;
        h[4..6].copy_from_slice(&self.vlen.to_le_bytes());
        h[8..16].copy_from_slice(&self.time.to_le_bytes());
        h[16..24].copy_from_slice(&self.expiry.to_le_bytes());
        h[24..28].copy_from_slice(&self.crc.to_le_bytes());
        h
    }

    /// Decodes and checks the fixed fields (not the CRC, which needs key and value).
    pub(crate) fn decode(h: &[u8; REC_HEADER]) -> Option<RecHead> {
        let tag = h[0];
        let ty = tag & 0x0f;
        if tag & 0b1100_0000 != TAG_FIXED || !(T_PUT..=T_TIME).contains(&ty) {
            return None;
        }
        if h[3] != 0 || h[6] != 0 || h[7] != 0 {
            return None;
        }
        let r = RecHead {
            tag,
            kind: h[1],
            klen: h[2],
            vlen: u16::from_le_bytes([h[4], h[5]]),
            time: u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]),
            expiry: u64::from_le_bytes([h[16], h[17], h[18], h[19], h[20], h[21], h[22], h[23]]),
            crc: u32::from_le_bytes([h[24], h[25], h[26], h[27]]),
        };
        let shape_ok = match ty {
            T_PUT => r.klen > 0 && r.kind <= 2,
            T_TOMB => r.klen > 0 && r.vlen == 0 && r.kind == 0 && r.expiry == 0,
            _ => r.klen == 0 && r.vlen == 0 && r.kind == 0 && r.expiry == 0,
        };
        shape_ok.then_some(r)
    }

    /// CRC over the header's first 24 bytes, `key` and `value`.
    pub(crate) fn compute_crc(&self, key: &[u8], value: &[u8]) -> u32 {
        let h = self.encode();
        let mut c = Crc::new();
        c.update(&h[..24]);
        c.update(key);
        c.update(value);
        c.finish()
    }

    /// Bytes the record takes on flash with write size `ws`.
    pub(crate) fn size(&self, ws: usize) -> usize {
        record_size(usize::from(self.klen), usize::from(self.vlen), ws)
    }
}

/// Bytes a record with `klen` key and `vlen` value bytes takes on flash.
pub(crate) const fn record_size(klen: usize, vlen: usize, ws: usize) -> usize {
    align_up(REC_HEADER + klen + vlen, ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn headers_round_trip() {
        let a = part_a(7);
        assert_eq!(parse_part_a(&a), Some(7));
        let mut bad = a;
        bad[9] ^= 1;
        assert_eq!(parse_part_a(&bad), None);
        let b = part_b(7, 42, 1234);
        assert_eq!(parse_part_b(7, &b), Some((42, 1234)));
        assert_eq!(parse_part_b(8, &b), None);
        assert_eq!(parse_part_a(&[0xff; PART_A]), None);
    }

    #[test]
    fn record_header_round_trip() {
        let mut r = RecHead {
            tag: TAG_FIXED | TAG_START | TAG_END | T_PUT,
            kind: 2,
            klen: 3,
            vlen: 2,
            time: 99,
            expiry: 1234,
            crc: 0,
        };
        r.crc = r.compute_crc(b"abc", b"xy");
        let h = r.encode();
        assert_ne!(h[0], 0xff);
        assert_eq!(RecHead::decode(&h), Some(r));
        assert_eq!(RecHead::decode(&[0xff; REC_HEADER]), None);
        assert_eq!(record_size(3, 2, 16), 48);
        assert_eq!(record_size(3, 2, 1), 33);
    }
}
