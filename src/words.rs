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

/// `dst.copy_from_slice(src)` for buffers of one length (the shorter length otherwise), without
/// a `memcpy` call on targets without an operating system: there the crate's own copies
/// (keys into slots, raw values, staged values, key parts) go through this one out-of-line
/// loop, so a firmware links no compiler-builtins `memcpy` for them (730 bytes on
/// Cortex-M4), and short copies cost fewer instructions than its byte loop. Elsewhere the
/// platform's `memcpy` is fast and this is `copy_from_slice`.
#[inline]
pub(crate) fn copy(dst: &mut [u8], src: &[u8]) {
    if cfg!(target_os = "none") {
        copy_loop(dst, src);
    } else {
        let n = dst.len().min(src.len());
        dst[..n].copy_from_slice(&src[..n]);
    }
}

/// [`copy`]'s loop: whole words where the core loads unaligned words (the last bytes as one
/// more word overlapping the one before); on ARMv6-M whole words where both buffers are
/// word-aligned (keys are), bytes otherwise. A `black_box(())` in each loop (no
/// instruction) keeps the optimizer from turning it back into a `memcpy` call.
#[inline(never)]
pub(crate) fn copy_loop(dst: &mut [u8], src: &[u8]) {
    let n = dst.len().min(src.len());
    let (dst, src) = (&mut dst[..n], &src[..n]);
    if ARMV6M {
        copy_aligned(dst, src);
    } else {
        copy_unaligned(dst, src);
    }
}

/// [`copy_loop`] on a core that loads unaligned words.
#[inline(always)]
fn copy_unaligned(dst: &mut [u8], src: &[u8]) {
    const W: usize = 4;
    let n = dst.len().min(src.len());
    if n < W {
        copy_bytes(dst, src);
        return;
    }
    let mut at = 0;
    while at + W < n {
        if let (Some(d), Some(s)) = (dst.get_mut(at..at + W), src.get(at..at + W)) {
            d.copy_from_slice(s);
        }
        at += W;
        core::hint::black_box(());
    }
    if let (Some(d), Some(s)) = (dst.get_mut(n - W..n), src.get(n - W..n)) {
        d.copy_from_slice(s);
    }
}

/// [`copy_loop`] on ARMv6-M: whole words when both buffers start on a word boundary.
#[inline(always)]
fn copy_aligned(dst: &mut [u8], src: &[u8]) {
    let whole = src.len() & !3;
    let (dw, dt) = dst.split_at_mut(whole.min(dst.len()));
    match (<[u32]>::mut_from_bytes(dw), words(src)) {
        (Ok(dw), Some((sw, st))) => {
            for (d, s) in dw.iter_mut().zip(sw) {
                *d = *s;
                core::hint::black_box(());
            }
            copy_bytes(dt, st);
        }
        _ => copy_bytes(dst, src),
    }
}

/// A byte at a time.
#[inline(always)]
fn copy_bytes(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
        core::hint::black_box(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The firmware's copy loops (run here on the host, where `copy` is `copy_from_slice`),
    /// the unaligned words' and ARMv6-M's, copy every length and alignment exactly and
    /// write nothing past the end.
    #[test]
    fn copy_loop_copies_exactly() {
        let src = Aligned(core::array::from_fn::<u8, 40, _>(|i| i as u8 + 1));
        for (from, start) in (0..4).flat_map(|f| (0..4).map(move |s| (f, s))) {
            for len in 0..=32 {
                let src = &src.0[from..from + len];
                let mut want = [0u8; 40];
                want[start..start + len].copy_from_slice(src);
                let mut dst = Aligned([0u8; 40]);
                copy_loop(&mut dst.0[start..start + len], src);
                assert_eq!(dst.0, want, "{from} {start} {len}");
                let mut dst = Aligned([0u8; 40]);
                copy(&mut dst.0[start..start + len], src);
                assert_eq!(dst.0, want, "{from} {start} {len}");
                let mut dst = Aligned([0u8; 40]);
                copy_aligned(&mut dst.0[start..start + len], src);
                assert_eq!(dst.0, want, "{from} {start} {len}");
            }
        }
    }

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
