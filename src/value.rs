//! Values: how typed values become bytes and back.
//!
//! Every entry carries a [`Kind`]:
//! - [`Kind::Int`]: a value that serializes as one integer in `i64` range (`42u8`,
//!   `-5i64`, …). Stored as the minimal little-endian two's-complement bytes. This is what
//!   `incr`/`decr` work on, and any integer type within range reads it back.
//! - [`Kind::Serde`]: anything else `Serialize`, stored with postcard.
//! - [`Kind::Bytes`]: raw bytes from the raw API. `incr` accepts them when they are ASCII
//!   decimal (memcached's rule) and keeps them as decimal text.
//! - [`Kind::Item`]: a memcached item (client flags and cas unique in a header, then the
//!   data), written by the memcached front end, which does its own `incr`/`decr`.

use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::ser::{Impossible, Serialize, Serializer};

/// How an entry's bytes are to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Kind {
    /// Raw bytes written through the raw API.
    Bytes = 0,
    /// A postcard-encoded value.
    Serde = 1,
    /// An integer (minimal little-endian two's complement), the target of `incr`/`decr`.
    Int = 2,
    /// A memcached item: a 12-byte header (client flags `u32`, then the cas unique `u64`,
    /// both little-endian) in front of the data. Written by the memcached front end
    /// ([`crate::memcached`]); `get` of a typed value refuses it, `get_raw` returns the header
    /// and the data.
    Item = 3,
}

impl Kind {
    /// The kind for a stored tag, if valid.
    pub const fn from_u8(tag: u8) -> Option<Kind> {
        match tag {
            0 => Some(Kind::Bytes),
            1 => Some(Kind::Serde),
            2 => Some(Kind::Int),
            3 => Some(Kind::Item),
            _ => None,
        }
    }
}

/// Why a value could not be read or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValueError {
    TooLarge,
    Serialize,
    Type,
}

/// Writes `value` into `buf`, returning the length and kind.
pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut [u8],
) -> Result<(usize, Kind), ValueError> {
    if let Ok(Some(i)) = value.serialize(IntProbe) {
        return encode_int(i, buf).map(|n| (n, Kind::Int));
    }
    let mut raw = RawOut {
        buf: &mut *buf,
        at: 0,
        full: false,
    };
    match value.serialize(&mut raw) {
        Ok(()) => return Ok((raw.at, Kind::Serde)),
        // Postcard writes the same bytes up to there, so it would run out of room too:
        // no second try (for a value the fast path always takes, the compiler then drops
        // postcard's).
        Err(_) if raw.full => return Err(ValueError::TooLarge),
        Err(_) => {}
    }
    match postcard::serialize_with_flavor(value, SliceOut { buf, at: 0 }) {
        Ok(used) => Ok((used, Kind::Serde)),
        Err(postcard::Error::SerializeBufferFull) => Err(ValueError::TooLarge),
        Err(_) => Err(ValueError::Serialize),
    }
}

/// postcard's output into a slice, as its own `to_slice` writes it, with the copies of
/// byte runs (varints, strings) through [`crate::words::copy`]: postcard's slice copies
/// them with `copy_from_slice`, which links a `memcpy` into firmware.
struct SliceOut<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl postcard::ser_flavors::Flavor for SliceOut<'_> {
    type Output = usize;

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let dst = self
            .buf
            .get_mut(self.at..)
            .and_then(|rest| rest.get_mut(..data.len()))
            .ok_or(postcard::Error::SerializeBufferFull)?;
        crate::words::copy(dst, data);
        self.at += data.len();
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        let dst = self
            .buf
            .get_mut(self.at)
            .ok_or(postcard::Error::SerializeBufferFull)?;
        *dst = data;
        self.at += 1;
        Ok(())
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.at)
    }
}

/// Reads a `T` from an entry's bytes.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], kind: Kind) -> Result<T, ValueError> {
    match kind {
        Kind::Int => {
            let i = decode_int(bytes).ok_or(ValueError::Type)?;
            T::deserialize(IntoDeserializer::<serde::de::value::Error>::into_deserializer(i))
                .map_err(|_| ValueError::Type)
        }
        Kind::Serde => {
            let mut raw = RawIn { bytes, at: 0 };
            match T::deserialize(&mut raw) {
                Ok(v) if raw.at == bytes.len() => return Ok(v),
                _ => {}
            }
            match postcard::take_from_bytes::<T>(bytes) {
                Ok((v, [])) => Ok(v),
                _ => Err(ValueError::Type),
            }
        }
        Kind::Bytes | Kind::Item => Err(ValueError::Type),
    }
}

/// Minimal little-endian two's complement: 0 bytes for 0, 1 byte for -128..=127, …
///
/// The length comes from the count of significant bits, and the bytes are shifted out one
/// by one: no loop over redundant bytes and no `memcpy` call for 1 to 8 bytes.
pub(crate) fn encode_int(i: i64, buf: &mut [u8]) -> Result<usize, ValueError> {
    // Bits below the sign: those of `i`, or of `!i` when negative (-1 needs none).
    let magnitude = (i ^ (i >> 63)) as u64;
    let n = if i == 0 {
        0
    } else if crate::words::ARMV6M {
        int_len_by_compares(magnitude)
    } else {
        (64 - magnitude.leading_zeros() as usize) / 8 + 1
    };
    let dst = buf.get_mut(..n).ok_or(ValueError::TooLarge)?;
    let mut v = i as u64;
    for d in dst {
        *d = v as u8;
        v >>= 8;
    }
    Ok(n)
}

/// [`encode_int`]'s length for a magnitude below 2^63, `bits / 8 + 1`, without counting
/// leading zeros: ARMv6-M has no instruction for it (`leading_zeros` is a library call of
/// about 30 instructions per half), so this counts the thresholds 2^7, 2^15, 2^23 and 2^31
/// the low half, or the high half, reaches.
#[inline]
fn int_len_by_compares(magnitude: u64) -> usize {
    let (x, base) = match (magnitude >> 32) as u32 {
        0 => (magnitude as u32, 1),
        high => (high, 5),
    };
    base + usize::from(x >= 1 << 7)
        + usize::from(x >= 1 << 15)
        + usize::from(x >= 1 << 23)
        + usize::from(x >= 1 << 31)
}

/// Reverses [`encode_int`]; `None` when longer than 8 bytes or not minimal (only the
/// minimal form is ever written, so anything else is damaged storage).
pub(crate) fn decode_int(bytes: &[u8]) -> Option<i64> {
    if bytes.len() > 8 {
        return None;
    }
    let redundant = match bytes {
        [] => false,
        [0] => true,
        // The top byte only repeats the sign of the one below it (0x00 under a clear top
        // bit, 0xff under a set one): one compare with that byte's sign extension.
        [.., below, top] => *top == ((*below as i8) >> 7) as u8,
        [_] => false,
    };
    if redundant {
        return None;
    }
    // Sign-extend from the top byte, then shift the bytes in, most significant first.
    let mut v: i64 = match bytes.last() {
        Some(&b) if b & 0x80 != 0 => -1,
        _ => 0,
    };
    for &b in bytes.iter().rev() {
        v = (v << 8) | i64::from(b);
    }
    Some(v)
}

/// The ASCII digits at the start of `bytes`: how many there are, and their value (`None`
/// when it exceeds `u64`). Every decimal reader of the crate is built on this one.
#[inline]
pub(crate) fn leading_digits(bytes: &[u8]) -> (usize, Option<u64>) {
    let n = bytes
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(bytes.len());
    // Overflow is checked against u64::MAX's digits rather than with a checked multiply,
    // which 32-bit cores would do with a 128-bit multiplication routine.
    const MAX_TENTH: u64 = u64::MAX / 10;
    const MAX_LAST: u64 = u64::MAX % 10;
    let mut v = Some(0u64);
    for &d in &bytes[..n] {
        let d = u64::from(d - b'0');
        v = match v {
            Some(x) if x < MAX_TENTH || (x == MAX_TENTH && d <= MAX_LAST) => Some(x * 10 + d),
            _ => None,
        };
    }
    (n, v)
}

/// Unsigned ASCII decimal: one or more digits and nothing else, within `u64`.
pub(crate) fn parse_u64(bytes: &[u8]) -> Option<u64> {
    // One loop, refusing at the first byte that is not a digit (what `leading_digits`
    // tells, without its count of digits).
    const MAX_TENTH: u64 = u64::MAX / 10;
    const MAX_LAST: u64 = u64::MAX % 10;
    if bytes.is_empty() {
        return None;
    }
    let mut v = 0u64;
    for &b in bytes {
        let d = u64::from(b.wrapping_sub(b'0'));
        if d > 9 || v > MAX_TENTH || (v == MAX_TENTH && d > MAX_LAST) {
            return None;
        }
        v = v * 10 + d;
    }
    Some(v)
}

/// Parses memcached-style ASCII decimal (unsigned, or signed with `-`), no surrounding
/// space; leading zeros are allowed, the value must fit in `i64`.
pub(crate) fn parse_decimal(bytes: &[u8]) -> Option<i64> {
    // The sign as a number, not a branch around the digits: with a digit loop in each arm,
    // the optimizer inlined it twice (32 bytes of the persistent firmware probe, 56 of the
    // memory one).
    let neg = bytes.first() == Some(&b'-');
    let digits = bytes.get(usize::from(neg)..)?;
    if digits.is_empty() {
        return None;
    }
    // A value past `BOUND` gets a tenfold larger one with its next digit, beyond every
    // `i64` magnitude; up to `BOUND`, `v * 10 + d` stays below 2^64. One compare a digit,
    // where `parse_u64`'s exact `u64` bound takes two.
    const BOUND: u64 = (1 << 63) / 10;
    let mut m = 0u64;
    for &b in digits {
        let d = u64::from(b.wrapping_sub(b'0'));
        if d > 9 || m > BOUND {
            return None;
        }
        m = m * 10 + d;
    }
    // At most 2^63 - 1, or 2^63 with the sign (which wraps to `i64::MIN` below).
    if m > i64::MAX as u64 + u64::from(neg) {
        return None;
    }
    let v = m as i64;
    Some(if neg { v.wrapping_neg() } else { v })
}

/// Writes `v` as ASCII decimal at the start of `buf`; returns the length. The one decimal
/// formatter of the crate.
pub(crate) fn write_u64(v: u64, buf: &mut [u8; 20]) -> usize {
    // Digits come out last first; they are gathered in `tmp` and copied once (an in-place
    // move would link a memmove routine, 1.5 KiB of flash on a Cortex-M).
    let mut tmp = [0u8; 20];
    let mut at = tmp.len();
    let mut n = v;
    loop {
        at -= 1;
        let (q, r) = divrem_small(n, 10);
        tmp[at] = b'0' + r as u8;
        n = q;
        if n == 0 {
            break;
        }
    }
    let len = tmp.len() - at;
    crate::words::copy(&mut buf[..len], &tmp[at..]);
    len
}

/// Writes `i` as ASCII decimal into `buf`: its length, or [`ValueError::TooLarge`] when
/// `buf` is too short. Inlined over [`decimal_into`], whose length (0 for too short: a
/// number has a digit) comes back in a register, where this result goes through memory
/// on 32-bit cores.
#[inline(always)]
pub(crate) fn write_decimal(i: i64, buf: &mut [u8]) -> Result<usize, ValueError> {
    match decimal_into(i, buf) {
        0 => Err(ValueError::TooLarge),
        n => Ok(n),
    }
}

/// [`write_decimal`]'s body: the length written, 0 when `buf` is too short.
///
/// The digits are counted first and then written in place, last first: no buffer to zero
/// and no copy, so a firmware links neither `memset` nor `memcpy` for it.
#[inline(never)]
fn decimal_into(i: i64, buf: &mut [u8]) -> usize {
    let m = i.unsigned_abs();
    // 10^19 < u64::MAX < 10^20: at most 20 digits, and `p` never overflows before the
    // count stops.
    let mut digits = 1;
    let mut p: u64 = 10;
    while digits < 20 && m >= p {
        digits += 1;
        p = p.wrapping_mul(10);
    }
    let sign = usize::from(i < 0);
    let Some(dst) = buf.get_mut(..sign + digits) else {
        return 0;
    };
    let (head, tail) = dst.split_at_mut(sign);
    if let Some(minus) = head.first_mut() {
        *minus = b'-';
    }
    let mut n = m;
    for d in tail.iter_mut().rev() {
        let (q, r) = divrem_small(n, 10);
        *d = b'0' + r as u8;
        n = q;
    }
    sign + digits
}

/// `(x / d, x % d)` for a divisor below 2^16, by long division in 16-bit digits with 32-bit
/// operations only: 32-bit cores have no 64-bit divide instruction, and the generic 64-bit
/// division routine costs nearly a kilobyte of flash. The remainder is computed here from
/// the quotient, so the out-of-line division answers in registers (a pair of `u64` and
/// `u32` goes through memory on 32-bit cores).
#[inline(always)]
pub(crate) const fn divrem_small(x: u64, d: u16) -> (u64, u32) {
    let q = div_small(x, d);
    // `x - q * d` is the remainder, below 2^16: its low 32 bits are exact.
    (
        q,
        (x as u32).wrapping_sub((q as u32).wrapping_mul(d as u32)),
    )
}

/// [`divrem_small`]'s quotient.
// One copy for every caller: the loop unrolls into about 120 bytes of Thumb code.
#[inline(never)]
const fn div_small(x: u64, d: u16) -> u64 {
    // Seconds and ticks over a storage-bound cache divide by 1
    // (`Timeout::expiry_uniform`): answered at once, a store no longer.
    if d == 1 {
        return x;
    }
    let d = d as u32;
    let mut q: u64 = 0;
    let mut r: u32 = 0;
    let mut shift = 64;
    while shift > 0 {
        shift -= 16;
        let cur = (r << 16) | ((x >> shift) as u32 & 0xffff);
        q = (q << 16) | (cur / d) as u64;
        r = cur % d;
    }
    q
}

/// A serializer that answers "is this value a single integer in i64 range?".
struct IntProbe;

#[derive(Debug)]
struct NotInt;

impl core::fmt::Display for NotInt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("not an integer")
    }
}

impl serde::ser::StdError for NotInt {}

impl serde::ser::Error for NotInt {
    fn custom<M: core::fmt::Display>(_msg: M) -> Self {
        NotInt
    }
}

macro_rules! probe_int {
    ($($f:ident: $t:ty),*) => {$(
        fn $f(self, v: $t) -> Result<Option<i64>, NotInt> {
            Ok(i64::try_from(v).ok())
        }
    )*};
}
macro_rules! probe_none {
    ($($f:ident: $t:ty),*) => {$(
        fn $f(self, _v: $t) -> Result<Option<i64>, NotInt> {
            Ok(None)
        }
    )*};
}

impl Serializer for IntProbe {
    type Ok = Option<i64>;
    type Error = NotInt;
    type SerializeSeq = Impossible<Option<i64>, NotInt>;
    type SerializeTuple = Impossible<Option<i64>, NotInt>;
    type SerializeTupleStruct = Impossible<Option<i64>, NotInt>;
    type SerializeTupleVariant = Impossible<Option<i64>, NotInt>;
    type SerializeMap = Impossible<Option<i64>, NotInt>;
    type SerializeStruct = Impossible<Option<i64>, NotInt>;
    type SerializeStructVariant = Impossible<Option<i64>, NotInt>;

    probe_int!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128);
    probe_none!(serialize_bool: bool, serialize_f32: f32, serialize_f64: f64,
        serialize_char: char, serialize_str: &str, serialize_bytes: &[u8],
        serialize_unit_struct: &'static str);

    fn serialize_none(self) -> Result<Option<i64>, NotInt> {
        Ok(None)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<Option<i64>, NotInt> {
        Ok(None)
    }
    fn serialize_unit(self) -> Result<Option<i64>, NotInt> {
        Ok(None)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<Option<i64>, NotInt> {
        Ok(None)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<Option<i64>, NotInt> {
        Ok(None)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Option<i64>, NotInt> {
        Ok(None)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotInt> {
        Err(NotInt)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotInt> {
        Err(NotInt)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, NotInt> {
        Err(NotInt)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotInt> {
        Err(NotInt)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotInt> {
        Err(NotInt)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, NotInt> {
        Err(NotInt)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotInt> {
        Err(NotInt)
    }
    fn collect_str<T: core::fmt::Display + ?Sized>(self, _: &T) -> Result<Option<i64>, NotInt> {
        Ok(None)
    }
}

// ---------------------------------------------------------------------------------------------
// Byte values without postcard's per-element calls.
//
// Postcard writes a `[u8; N]` (a tuple of `u8`s) as its N bytes, a byte string
// (`serialize_bytes`) and a sequence of `u8`s (`&[u8]`, `Vec<u8>`) as a varint length and the
// bytes, and a newtype struct as its content. `RawOut` and `RawIn` handle exactly these forms
// and refuse anything else; on a refusal [`encode`] and [`decode`] start again with postcard.
// What they write and read is byte for byte what postcard writes and reads, so a value stored
// either way reads back either way: the fast path only saves postcard's call and error check
// per byte (about 200 instructions for a `[u8; 32]` on x86-64).

/// Anything `RawOut`/`RawIn` do not handle (the caller falls back to postcard).
#[derive(Debug)]
struct Fallback;

impl core::fmt::Display for Fallback {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("not plain bytes")
    }
}

impl serde::ser::StdError for Fallback {}

impl serde::ser::Error for Fallback {
    fn custom<M: core::fmt::Display>(_msg: M) -> Self {
        Fallback
    }
}

impl serde::de::Error for Fallback {
    fn custom<M: core::fmt::Display>(_msg: M) -> Self {
        Fallback
    }
}

/// Writes a value whose postcard form is plain bytes at the top level.
struct RawOut<'a> {
    buf: &'a mut [u8],
    at: usize,
    /// A write ran past the buffer (the value is too large, not refused).
    full: bool,
}

impl RawOut<'_> {
    #[inline]
    fn push(&mut self, b: u8) -> Result<(), Fallback> {
        let Some(slot) = self.buf.get_mut(self.at) else {
            self.full = true;
            return Err(Fallback);
        };
        *slot = b;
        self.at += 1;
        Ok(())
    }

    /// A postcard varint (LEB128) length.
    fn push_len(&mut self, mut n: usize) -> Result<(), Fallback> {
        while n >= 0x80 {
            self.push(n as u8 | 0x80)?;
            n >>= 7;
        }
        self.push(n as u8)
    }
}

/// The elements of a tuple or sequence: each must be a `u8`.
struct RawElems<'s, 'a>(&'s mut RawOut<'a>);

macro_rules! refuse_ser {
    ($ok:ty; $($f:ident: $t:ty),*) => {$(
        fn $f(self, _v: $t) -> Result<$ok, Fallback> {
            Err(Fallback)
        }
    )*};
}

/// The serializer methods that refuse, shared by [`RawOut`] and [`ByteOut`].
macro_rules! refuse_rest {
    ($ok:ty) => {
        refuse_ser!($ok; serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
            serialize_i64: i64, serialize_i128: i128, serialize_u16: u16, serialize_u32: u32,
            serialize_u64: u64, serialize_u128: u128, serialize_bool: bool,
            serialize_f32: f32, serialize_f64: f64, serialize_char: char,
            serialize_str: &str, serialize_unit_struct: &'static str);
        fn serialize_none(self) -> Result<$ok, Fallback> {
            Err(Fallback)
        }
        fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<$ok, Fallback> {
            Err(Fallback)
        }
        fn serialize_unit(self) -> Result<$ok, Fallback> {
            Err(Fallback)
        }
        fn serialize_unit_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
        ) -> Result<$ok, Fallback> {
            Err(Fallback)
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<$ok, Fallback> {
            Err(Fallback)
        }
        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct, Fallback> {
            Err(Fallback)
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, Fallback> {
            Err(Fallback)
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Fallback> {
            Err(Fallback)
        }
        fn serialize_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStruct, Fallback> {
            Err(Fallback)
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, Fallback> {
            Err(Fallback)
        }
        fn collect_str<T: core::fmt::Display + ?Sized>(self, _: &T) -> Result<$ok, Fallback> {
            Err(Fallback)
        }
    };
}

impl<'s, 'a> Serializer for &'s mut RawOut<'a> {
    type Ok = ();
    type Error = Fallback;
    type SerializeSeq = RawElems<'s, 'a>;
    type SerializeTuple = RawElems<'s, 'a>;
    type SerializeTupleStruct = Impossible<(), Fallback>;
    type SerializeTupleVariant = Impossible<(), Fallback>;
    type SerializeMap = Impossible<(), Fallback>;
    type SerializeStruct = Impossible<(), Fallback>;
    type SerializeStructVariant = Impossible<(), Fallback>;

    refuse_rest!(());
    refuse_ser!((); serialize_u8: u8);

    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Fallback> {
        self.push_len(v.len())?;
        let Some(dst) = self.buf.get_mut(self.at..self.at + v.len()) else {
            self.full = true;
            return Err(Fallback);
        };
        crate::words::copy(dst, v);
        self.at += v.len();
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Fallback> {
        value.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<RawElems<'s, 'a>, Fallback> {
        let len = len.ok_or(Fallback)?;
        // Checked before the length is written: a longer value would not fit anyway.
        if len > self.buf.len() {
            return Err(Fallback);
        }
        self.push_len(len)?;
        Ok(RawElems(self))
    }
    #[inline]
    fn serialize_tuple(self, _len: usize) -> Result<RawElems<'s, 'a>, Fallback> {
        Ok(RawElems(self))
    }
}

impl serde::ser::SerializeTuple for RawElems<'_, '_> {
    type Ok = ();
    type Error = Fallback;
    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Fallback> {
        self.0.push(value.serialize(ByteOut)?)
    }
    #[inline]
    fn end(self) -> Result<(), Fallback> {
        Ok(())
    }
}

impl serde::ser::SerializeSeq for RawElems<'_, '_> {
    type Ok = ();
    type Error = Fallback;
    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Fallback> {
        self.0.push(value.serialize(ByteOut)?)
    }
    #[inline]
    fn end(self) -> Result<(), Fallback> {
        Ok(())
    }
}

/// One element of a tuple or sequence: a `u8`, or a refusal.
struct ByteOut;

impl Serializer for ByteOut {
    type Ok = u8;
    type Error = Fallback;
    type SerializeSeq = Impossible<u8, Fallback>;
    type SerializeTuple = Impossible<u8, Fallback>;
    type SerializeTupleStruct = Impossible<u8, Fallback>;
    type SerializeTupleVariant = Impossible<u8, Fallback>;
    type SerializeMap = Impossible<u8, Fallback>;
    type SerializeStruct = Impossible<u8, Fallback>;
    type SerializeStructVariant = Impossible<u8, Fallback>;

    refuse_rest!(u8);
    refuse_ser!(u8; serialize_bytes: &[u8]);

    #[inline]
    fn serialize_u8(self, v: u8) -> Result<u8, Fallback> {
        Ok(v)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<u8, Fallback> {
        Err(Fallback)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Fallback> {
        Err(Fallback)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Fallback> {
        Err(Fallback)
    }
}

/// Reads what [`RawOut`] writes: a tuple of `u8`s, a byte string or a sequence of `u8`s,
/// which must take every byte.
struct RawIn<'de> {
    bytes: &'de [u8],
    at: usize,
}

impl RawIn<'_> {
    /// A canonical postcard varint length of one to three bytes that leaves exactly that
    /// many bytes (anything else is left to postcard).
    fn take_len(&mut self) -> Result<usize, Fallback> {
        let mut n = 0usize;
        for shift in [0, 7, 14] {
            let b = *self.bytes.get(self.at).ok_or(Fallback)?;
            self.at += 1;
            n |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                if b == 0 && shift != 0 {
                    return Err(Fallback);
                }
                return match self.bytes.len() - self.at {
                    rest if rest == n => Ok(n),
                    _ => Err(Fallback),
                };
            }
        }
        Err(Fallback)
    }

    /// Visits the bytes after `at` as a sequence of `u8`s, which must take all of them.
    #[inline]
    fn visit_elems<'de, V: serde::de::Visitor<'de>>(
        &mut self,
        bytes: &'de [u8],
        visitor: V,
    ) -> Result<V::Value, Fallback> {
        let mut seq = RawSeq(bytes.iter());
        let v = visitor.visit_seq(&mut seq)?;
        if seq.0.len() != 0 {
            return Err(Fallback);
        }
        self.at += bytes.len();
        Ok(v)
    }
}

/// The elements of a tuple or sequence of `u8`s.
struct RawSeq<'de>(core::slice::Iter<'de, u8>);

impl<'de> serde::de::SeqAccess<'de> for RawSeq<'de> {
    type Error = Fallback;

    #[inline]
    fn next_element_seed<T: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Fallback> {
        match self.0.next() {
            Some(&b) => seed.deserialize(ByteIn(b)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

/// One element: a `u8`, or a refusal.
struct ByteIn(u8);

impl<'de> serde::de::Deserializer<'de> for ByteIn {
    type Error = Fallback;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Fallback> {
        Err(Fallback)
    }

    #[inline]
    fn deserialize_u8<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fallback> {
        visitor.visit_u8(self.0)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

impl<'de> serde::de::Deserializer<'de> for &mut RawIn<'de> {
    type Error = Fallback;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Fallback> {
        Err(Fallback)
    }

    #[inline]
    fn deserialize_tuple<V: serde::de::Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Fallback> {
        // Every element a `u8`, so one byte each.
        if len != self.bytes.len() {
            return Err(Fallback);
        }
        let bytes = self.bytes;
        self.visit_elems(bytes, visitor)
    }

    fn deserialize_seq<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fallback> {
        self.take_len()?;
        let bytes = &self.bytes[self.at..];
        self.visit_elems(bytes, visitor)
    }

    fn deserialize_bytes<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Fallback> {
        let n = self.take_len()?;
        let bytes = &self.bytes[self.at..];
        self.at += n;
        visitor.visit_borrowed_bytes(bytes)
    }

    fn deserialize_byte_buf<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Fallback> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Fallback> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string option unit
        unit_struct tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte string through `serialize_bytes`/`deserialize_bytes`, as `serde_bytes` does.
    #[derive(Debug, PartialEq)]
    struct Blob(std::vec::Vec<u8>);

    impl Serialize for Blob {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }

    impl<'de> serde::Deserialize<'de> for Blob {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = Blob;
                fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> Result<Blob, E> {
                    Ok(Blob(v.to_vec()))
                }
            }
            d.deserialize_byte_buf(V)
        }
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Wrapped([u8; 4]);

    /// `encode` writes what postcard writes, and `decode` reads what postcard reads, for
    /// values `RawOut`/`RawIn` take and for values they hand over to postcard.
    fn same_as_postcard<T>(value: &T, room: usize)
    where
        T: Serialize + DeserializeOwned + PartialEq + core::fmt::Debug,
    {
        let mut ours = std::vec![0u8; room];
        let mut theirs = std::vec![0u8; room];
        let got = encode(value, &mut ours);
        let want = postcard::to_slice(value, &mut theirs).map(|b| b.len());
        match (got, want) {
            (Ok((n, Kind::Serde)), Ok(m)) => {
                assert_eq!(&ours[..n], &theirs[..m], "{value:?}");
                assert_eq!(decode::<T>(&ours[..n], Kind::Serde).as_ref(), Ok(value));
            }
            (Ok((_, Kind::Int)), _) => {}
            (Err(ValueError::TooLarge), Err(postcard::Error::SerializeBufferFull)) => {}
            other => panic!("{value:?}: {other:?}"),
        }
    }

    /// `decode` of any bytes (damaged storage included) gives postcard's answer.
    fn reads_as_postcard<T>(bytes: &[u8])
    where
        T: DeserializeOwned + PartialEq + core::fmt::Debug,
    {
        let want = match postcard::take_from_bytes::<T>(bytes) {
            Ok((v, [])) => Ok(v),
            _ => Err(ValueError::Type),
        };
        assert_eq!(decode::<T>(bytes, Kind::Serde), want, "{bytes:?}");
    }

    proptest::proptest! {
        #[test]
        fn byte_values_match_postcard(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            room in 0usize..320,
        ) {
            let mut arr = [0u8; 32];
            for (a, b) in arr.iter_mut().zip(&bytes) {
                *a = *b;
            }
            same_as_postcard(&arr, room);
            same_as_postcard(&Wrapped([arr[0], arr[1], arr[2], arr[3]]), room);
            same_as_postcard(&Blob(bytes.clone()), room);
            same_as_postcard(&bytes, room);
            let words: std::vec::Vec<u16> = bytes.iter().map(|&b| u16::from(b).wrapping_mul(300)).collect();
            same_as_postcard(&words, room);
            same_as_postcard(&(arr[0], u16::from(arr[1]) << 8), room);
            same_as_postcard(&Some(arr), room);
            // Through postcard, with its byte runs (the text, the varints) copied by the
            // crate's flavor.
            let text = std::string::String::from_utf8_lossy(&bytes).into_owned();
            same_as_postcard(&(text, u32::from(arr[0]) << 20, arr[1]), room);
        }

        #[test]
        fn any_bytes_read_as_postcard(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            reads_as_postcard::<[u8; 32]>(&bytes);
            reads_as_postcard::<[u8; 1]>(&bytes);
            reads_as_postcard::<Wrapped>(&bytes);
            reads_as_postcard::<Blob>(&bytes);
            reads_as_postcard::<std::vec::Vec<u8>>(&bytes);
            reads_as_postcard::<heapless::Vec<u8, 8>>(&bytes);
            reads_as_postcard::<(u8, u8)>(&bytes);
            reads_as_postcard::<std::vec::Vec<u16>>(&bytes);
        }
    }

    #[test]
    fn byte_values_at_length_boundaries() {
        for len in [0usize, 1, 127, 128, 129, 200, 16383, 16384, 16385] {
            let bytes: std::vec::Vec<u8> = (0..len).map(|i| i as u8).collect();
            same_as_postcard(&Blob(bytes.clone()), len + 3);
            same_as_postcard(&bytes, len + 3);
            same_as_postcard(&Blob(bytes.clone()), len + 1);
            reads_as_postcard::<Blob>(&postcard::to_allocvec(&Blob(bytes.clone())).unwrap());
            // An overlong length form postcard also reads.
            let mut long = std::vec![
                0x80 | (len as u8 & 0x7f),
                (len >> 7) as u8 | 0x80,
                (len >> 14) as u8
            ];
            long.extend_from_slice(&bytes);
            reads_as_postcard::<Blob>(&long);
            reads_as_postcard::<std::vec::Vec<u8>>(&long);
        }
    }

    #[test]
    fn int_lengths_at_every_byte_boundary() {
        let mut buf = [0u8; 9];
        for k in 0..64 {
            for i in [
                1i64 << k,
                (1i64 << k).wrapping_sub(1),
                (1i64 << k).wrapping_neg(),
                (1i64 << k).wrapping_neg().wrapping_sub(1),
                !(1i64 << k),
            ] {
                let n = encode_int(i, &mut buf).unwrap();
                assert_eq!(decode_int(&buf[..n]), Some(i), "{i}");
                // Minimal: the fewest bytes whose sign extension is `i`.
                let fits = |m: u32| m == 8 || (i << (64 - 8 * m) >> (64 - 8 * m)) == i;
                let want = if i == 0 {
                    0
                } else {
                    (1..=8).find(|&m| fits(m)).unwrap()
                };
                assert_eq!(n, want as usize, "{i}");
                assert_eq!(
                    encode_int(i, &mut buf[..n.saturating_sub(1)]),
                    if n == 0 {
                        Ok(0)
                    } else {
                        Err(ValueError::TooLarge)
                    }
                );
            }
        }
    }

    /// The ARMv6-M length (compares) is the length from leading zeros, at every bit.
    #[test]
    fn int_length_by_compares_counts_bits() {
        for k in 0..63 {
            for m in [1u64 << k, (1u64 << k) - 1, (1u64 << (k + 1)) - 1] {
                if m == 0 {
                    continue;
                }
                let bits = 64 - m.leading_zeros() as usize;
                assert_eq!(int_len_by_compares(m), bits / 8 + 1, "{m}");
            }
        }
    }

    #[test]
    fn int_roundtrip_is_minimal() {
        let mut buf = [0u8; 8];
        for (i, len) in [
            (0i64, 0),
            (1, 1),
            (-1, 1),
            (127, 1),
            (128, 2),
            (-128, 1),
            (-129, 2),
        ] {
            assert_eq!(encode_int(i, &mut buf), Ok(len), "{i}");
            assert_eq!(decode_int(&buf[..len]), Some(i));
        }
        for i in [i64::MIN, i64::MAX, 1 << 40, -(1 << 40)] {
            let n = encode_int(i, &mut buf).unwrap();
            assert_eq!(decode_int(&buf[..n]), Some(i));
        }
    }

    #[test]
    fn only_minimal_integers_decode() {
        let mut buf = [0u8; 8];
        for i in [
            0i64,
            1,
            -1,
            127,
            128,
            -128,
            -129,
            255,
            256,
            i64::MAX,
            i64::MIN,
        ] {
            let n = encode_int(i, &mut buf).unwrap();
            assert_eq!(decode_int(&buf[..n]), Some(i));
        }
        for bad in [
            &[0u8][..],
            &[1, 0],
            &[0x7f, 0],
            &[0xff, 0xff],
            &[0x80, 0xff, 0xff],
        ] {
            assert_eq!(decode_int(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn integers_are_recognised_and_read_back_in_any_width() {
        let mut buf = [0u8; 16];
        assert_eq!(encode(&300u16, &mut buf).map(|x| x.1), Ok(Kind::Int));
        let (n, k) = encode(&300u16, &mut buf).unwrap();
        assert_eq!(decode::<i64>(&buf[..n], k), Ok(300));
        assert_eq!(decode::<u8>(&buf[..n], k), Err(ValueError::Type));
        assert_eq!(encode(&u64::MAX, &mut buf).map(|x| x.1), Ok(Kind::Serde));
        assert_eq!(encode(&Some(1u8), &mut buf).map(|x| x.1), Ok(Kind::Serde));
        assert_eq!(encode(&1.5f32, &mut buf).map(|x| x.1), Ok(Kind::Serde));
    }

    #[test]
    fn small_division_matches_the_operator() {
        for x in [
            0u64,
            1,
            9,
            10,
            999,
            1000,
            65_535,
            1 << 32,
            u64::MAX,
            0x1234_5678_9abc_def0,
        ] {
            for d in [1u16, 3, 10, 1000, 65_535] {
                let (q, r) = divrem_small(x, d);
                assert_eq!(
                    (q, u64::from(r)),
                    (x / u64::from(d), x % u64::from(d)),
                    "{x} / {d}"
                );
            }
        }
    }

    #[test]
    fn decimal_text() {
        let mut buf = [0u8; 20];
        for i in [0i64, 7, -7, i64::MAX, i64::MIN] {
            let n = write_decimal(i, &mut buf).unwrap();
            assert_eq!(parse_decimal(&buf[..n]), Some(i));
        }
        // Every digit count, both signs, at each side of a power of ten; a buffer one byte
        // short is refused and left as it was.
        let mut p = 1i64;
        for _ in 0..19 {
            for i in [p - 1, p, -p, 1 - p] {
                let text = std::format!("{i}");
                let n = write_decimal(i, &mut buf).unwrap();
                assert_eq!(&buf[..n], text.as_bytes());
                let mut short = [b'x'; 20];
                let room = text.len() - 1;
                assert_eq!(
                    write_decimal(i, &mut short[..room]),
                    Err(ValueError::TooLarge)
                );
                assert_eq!(short, [b'x'; 20]);
            }
            p = p.saturating_mul(10);
        }
        for bad in [&b""[..], b"-", b"1a", b" 1", b"99999999999999999999"] {
            assert_eq!(parse_decimal(bad), None);
        }
        assert_eq!(parse_decimal(b"-9223372036854775809"), None);
        assert_eq!(parse_decimal(b"9223372036854775808"), None);
        for v in [0u64, 9, 10, u64::MAX] {
            let mut b = [0u8; 20];
            let n = write_u64(v, &mut b);
            assert_eq!(parse_u64(&b[..n]), Some(v));
            assert_eq!(leading_digits(&b[..n]), (n, Some(v)));
        }
        assert_eq!(leading_digits(b"18446744073709551616x"), (20, None));
        assert_eq!(leading_digits(b"x1"), (0, Some(0)));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"+1"), None);
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"18446744073709551620"), None);
        assert_eq!(parse_u64(b"0018446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"12/"), None);
        assert_eq!(parse_u64(b"12:"), None);
    }
}
