//! Made keys a word at a time on cores that cannot load an unaligned word.
//!
//! ARMv6-M (Cortex-M0, M0+ and M1) has no unaligned word loads: four bytes of unknown
//! alignment read as one `u32` cost four byte loads and three shifts and adds. The cache
//! makes each key in a word-aligned buffer ([`Aligned`]) and the table keeps its keys in
//! word-aligned slots, so there the hash and the chain walk read whole words, through
//! `zerocopy`'s checked cast (the crate has no `unsafe`), and fall back to the bytewise path
//! when a key does not start on a word boundary. Other targets load unaligned words in one
//! instruction and keep the plain path.

use zerocopy::FromBytes;

/// True on ARMv6-M, told apart as 32-bit Arm without 32-bit atomics (every later Arm
/// M-profile core has them): no unaligned word loads, no count-leading-zeros instruction
/// and no 32 x 32 -> 64-bit multiply.
pub(crate) const ARMV6M: bool = cfg!(all(target_arch = "arm", not(target_has_atomic = "32")));

/// `T` on a word boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(4))]
pub(crate) struct Aligned<T>(pub(crate) T);

/// `bytes` as whole words and the 0 to 3 bytes after them, or `None` when `bytes` does not
/// start on a word boundary.
#[inline(always)]
pub(crate) fn words(bytes: &[u8]) -> Option<(&[u32], &[u8])> {
    let (whole, tail) = bytes.split_at(bytes.len() & !3);
    let words = <[u32]>::ref_from_bytes(whole).ok()?;
    Some((words, tail))
}

/// The 0 to 3 bytes after a key's whole words (as [`words`] leaves them, so on a word
/// boundary) as one little-endian `u32`, zero above them: a half-word load and a byte load
/// at most, where a byte loop costs about 8 instructions a byte on Cortex-M0.
#[inline(always)]
pub(crate) fn tail_word(tail: &[u8]) -> u32 {
    let (two, one) = tail.split_at(tail.len() & 2);
    let mut w = 0;
    let mut shift = 0;
    if let Ok(&[half]) = <[u16]>::ref_from_bytes(two) {
        w = u32::from(u16::from_le(half));
        shift = 16;
    } else if let [a, b] = two {
        w = u32::from(*a) | u32::from(*b) << 8;
        shift = 16;
    }
    if let Some(&b) = one.first() {
        w |= u32::from(b) << shift;
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_only_on_a_boundary() {
        let buf = Aligned([1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        let (w, tail) = words(&buf.0[..7]).unwrap();
        assert_eq!(w, &[u32::from_ne_bytes([1, 2, 3, 4])]);
        assert_eq!(tail, &[5, 6, 7]);
        assert!(words(&buf.0[1..]).is_none());
        assert_eq!(words(&buf.0[..0]), Some((&[][..], &[][..])));
    }

    #[test]
    fn tail_word_is_the_bytes_zero_extended() {
        let buf = Aligned([0xa1u8, 0xb2, 0xc3, 0xd4]);
        for start in 0..4 {
            for len in 0..=(4 - start).min(3) {
                let tail = &buf.0[start..start + len];
                let mut want = [0u8; 4];
                want[..len].copy_from_slice(tail);
                assert_eq!(tail_word(tail), u32::from_le_bytes(want), "{start} {len}");
            }
        }
    }
}
