//! Hashing for the table's chains: the same 32-bit hash on every pointer width.
//!
//! [`Table`](crate::Table) takes its hasher as a [`BuildHasher`] type parameter (as heapless's
//! `IndexMap` does) and feeds it the made key with one [`Hasher::write`] call. The bucket is
//! taken from the 32 bits of [`fold`]: the low half of `finish()` XOR the high half, so a
//! hasher that fills only the low 32 bits (a 32-bit hash widened to `u64`) and one that fills
//! all 64 both give well-mixed bucket bits. Nothing depends on `usize`, so a key lands in the
//! same chain on a 16-, 32- or 64-bit target.
//!
//! The default, [`TickHasher`], is small and fast on Cortex-M0 as well as on x86-64. It is
//! not keyed: a program that stores keys chosen by a network peer should use a keyed hasher
//! (`tickcache-server` uses std's `RandomState`), so nobody can pick keys that share a chain.
//!
//! ```
//! use core::hash::{BuildHasher, Hasher};
//! use tickcache::hash::{DefaultHashBuilder, TickHasher};
//!
//! let mut h = TickHasher::default();
//! h.write(b":1:sensor_0001");
//! // The same value on every target: a 32-bit state widened to u64.
//! assert!(h.finish() <= u64::from(u32::MAX));
//! assert_eq!(DefaultHashBuilder::default().build_hasher().finish(), 0);
//! ```

use core::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// The default hash builder of [`Table`](crate::Table): [`TickHasher`], unkeyed.
pub type DefaultHashBuilder = BuildHasherDefault<TickHasher>;

/// A multiplicative hash that takes the key four bytes at a time with 32-bit arithmetic
/// only (one rotate, one XOR and one multiply per word), so it costs the same few
/// instructions per word on Cortex-M0, Cortex-M4 and x86-64 and gives the same value on
/// each. The final step is a multiply, whose high bits mix every input bit; the table takes
/// its bucket from the high bits.
#[derive(Clone, Copy, Debug, Default)]
pub struct TickHasher {
    state: u32,
}

/// An odd constant with well-spread bits (2^32 divided by the golden ratio).
const SEED: u32 = 0x9e37_79b9;

impl TickHasher {
    #[inline(always)]
    fn word(&mut self, w: u32) {
        self.state = (self.state.rotate_left(5) ^ w).wrapping_mul(SEED);
    }
}

impl Hasher for TickHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        if crate::words::ARMV6M {
            // ARMv6-M: whole-word loads where the key is word-aligned (the cache's and the
            // table's keys are), the same words as below.
            if let Some((words, tail)) = crate::words::words(bytes) {
                self.write_words(words, tail);
                return;
            }
        }
        let mut words = bytes.chunks_exact(4);
        for w in &mut words {
            self.word(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        }
        let tail = words.remainder();
        if let (false, Some(&[a, b, c, d])) = (crate::words::ARMV6M, bytes.last_chunk::<4>()) {
            // The tail taken from the key's last four bytes, one (unaligned) load shifted
            // down to the tail's bytes: the word `tail` builds a byte at a time, without its
            // loop (5 to 10 instructions less a lookup on Cortex-M4).
            if !tail.is_empty() {
                let last = u32::from_le_bytes([a, b, c, d]) >> (8 * (4 - tail.len()));
                self.word(last ^ ((tail.len() as u32) << 30));
            }
            return;
        }
        self.tail(tail);
    }

    #[inline]
    fn finish(&self) -> u64 {
        u64::from(self.state)
    }
}

impl TickHasher {
    /// [`Hasher::write`] of a word-aligned key, given as its whole words and the 0 to 3
    /// bytes after them (see [`crate::words`]): the same value as the bytewise path.
    #[inline(always)]
    fn write_words(&mut self, words: &[u32], tail: &[u8]) {
        for &w in words {
            self.word(u32::from_le(w));
        }
        if !tail.is_empty() {
            let w = crate::words::tail_word(tail);
            self.word(w ^ ((tail.len() as u32) << 30));
        }
    }

    /// The last 1 to 3 bytes of a key, if any.
    #[inline(always)]
    fn tail(&mut self, tail: &[u8]) {
        if !tail.is_empty() {
            // Shifts rather than a copy into a zeroed word: no `memcpy` call for 1-3 bytes.
            let mut w = 0u32;
            for (i, &b) in tail.iter().enumerate() {
                w |= u32::from(b) << (8 * i);
            }
            // The length in the top bits keeps "a" and "a\0" apart.
            self.word(w ^ ((tail.len() as u32) << 30));
        }
    }
}

/// Folds a hasher's 64-bit answer into the 32 bits the table's bucket is taken from.
#[inline]
pub fn fold(hash: u64) -> u32 {
    (hash as u32) ^ ((hash >> 32) as u32)
}

/// The hash of `key` by a hasher from `builder`, folded to 32 bits: one `write` of the
/// key's bytes (no length prefix, so no `usize` enters the hash).
#[inline]
pub fn hash32<S: BuildHasher>(builder: &S, key: &[u8]) -> u32 {
    let mut h = builder.build_hasher();
    h.write(key);
    fold(h.finish())
}

/// Maps a 32-bit hash onto `0..n` from its high bits (Lemire's multiply-shift,
/// `(hash * n) >> 32`), computed with two 16 x 16-bit products so no target needs a 64-bit
/// multiply. Exact for `n <= 65536`.
#[inline]
pub fn reduce(hash: u32, n: u32) -> usize {
    debug_assert!(n <= 1 << 16);
    let lo = (hash & 0xffff) * n;
    let hi = (hash >> 16) * n + (lo >> 16);
    (hi >> 16) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduce_is_multiply_shift() {
        let mut x = 0x1234_5678u32;
        for n in [1u32, 2, 3, 64, 1000, 1024, 4096, 65534, 65535, 65536] {
            for _ in 0..2000 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let want = ((u64::from(x) * u64::from(n)) >> 32) as usize;
                assert_eq!(reduce(x, n), want, "{x} {n}");
                assert!(reduce(x, n) < n as usize);
            }
            assert_eq!(reduce(u32::MAX, n), n as usize - 1);
            assert_eq!(reduce(0, n), 0);
        }
    }

    #[test]
    fn hash_uses_every_byte_and_the_tail_length() {
        let base = hash32(&DefaultHashBuilder::default(), b"sensor:17:temp");
        for i in 0..14 {
            let mut k = *b"sensor:17:temp";
            k[i] ^= 1;
            assert_ne!(hash32(&DefaultHashBuilder::default(), &k), base, "byte {i}");
        }
        let h = |k: &[u8]| hash32(&DefaultHashBuilder::default(), k);
        assert_ne!(h(b"a"), h(b"a\0"));
        assert_ne!(h(b"ab"), h(b"ab\0\0"));
    }

    /// ARMv6-M's word path (run here on the host) gives the bytewise path's value for
    /// every length of an aligned key.
    #[test]
    fn word_path_matches_byte_path() {
        let mut buf = crate::words::Aligned([0u8; 40]);
        for (i, b) in buf.0.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        for len in 0..=buf.0.len() {
            let bytes = &buf.0[..len];
            let (words, tail) = crate::words::words(bytes).unwrap();
            let mut by_words = TickHasher::default();
            by_words.write_words(words, tail);
            let mut by_bytes = TickHasher::default();
            by_bytes.write(bytes);
            assert_eq!(by_words.finish(), by_bytes.finish(), "{len}");
        }
    }

    /// The value is pinned: the i686 lane runs this too (and the firmware's on-target checks
    /// the same value), so a hash that depended on the pointer width or the byte order would
    /// fail (and a change of hash, which moves every key to another chain, is a deliberate
    /// edit of this line).
    #[test]
    fn same_value_on_every_width() {
        let mut h = TickHasher::default();
        h.write(b":1:post_1");
        assert_eq!(h.finish(), 0x39d7_e715);
        assert_eq!(
            hash32(&DefaultHashBuilder::default(), b":1:post_1"),
            0x39d7_e715
        );
    }
}
