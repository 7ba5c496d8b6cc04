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
}
