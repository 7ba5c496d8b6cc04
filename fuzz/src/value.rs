//! The `value` target: arbitrary bytes stored under a chosen [`Kind`] (raw bytes through
//! `set_raw`, the other kinds through `Table::restore`, as persistence restores them), then
//! read back with typed `get::<T>` for several `T`, with `get_raw`, and changed with `incr`.
//!
//! Checked: no panic; a raw entry is the wrong type for every typed read; an integer entry
//! reads as its sign-extended value in every integer type it fits and as the wrong type
//! otherwise; a successful typed read round-trips (storing the value read back stores the
//! same bytes under the same kind, and reads back equal); `get_raw` gives the bytes (an
//! integer as decimal text) or `BufferTooSmall`; `incr` follows the model's rules
//! (`NotInteger` for anything but an integer entry or ASCII decimal bytes, `Overflow`,
//! `ValueTooLarge`), leaves the entry unchanged when it fails and stores the new value in the
//! entry's own kind when it succeeds.

use arbitrary::{Arbitrary, Unstructured};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tickcache::model::{Model, Value};
use tickcache::{Backend, Config, Error, Kind, ManualClock, MemCache, Put, Table, Timeout, NEVER};

/// Decodes `data` as the target does and checks it (for regression tests).
pub fn run_bytes(data: &[u8]) {
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        run(&input);
    }
}

/// Like [`run_bytes`], and also checks what [`run`] lets pass as a known open finding.
pub fn run_bytes_full(data: &[u8]) {
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        run_with(&input, true);
    }
}

/// Known open findings, which the campaign lets pass so it can look for others (each has a
/// regression test in `tests/fuzz_regressions.rs` that checks it strictly):
/// - an integer entry whose bytes are longer than the minimal encoding (`[0x00]`, `[0x01,
///   0x00]`) reads as its value, which re-encodes shorter: the integer decoder accepts
///   non-minimal encodings;
/// - a postcard entry with an overlong varint (`[0x80, 0x00]` for 0: a continuation byte
///   followed by a zero byte ends every overlong varint) reads as the value, which
///   re-encodes shorter: postcard's decoder accepts overlong varints.
fn known_finding(kind: Kind, bytes: &[u8], re_encoded: &[u8]) -> bool {
    match kind {
        Kind::Serde => {
            re_encoded.len() < bytes.len() && bytes.windows(2).any(|w| w[0] >= 0x80 && w[1] == 0)
        }
        _ => false,
    }
}

/// One fuzz case.
#[derive(Arbitrary, Debug, Clone)]
pub struct Input {
    /// How the bytes are tagged.
    pub kind: KindSeed,
    /// The `incr` delta.
    pub delta: i64,
    /// The `get_raw` buffer length, modulo 48.
    pub raw_len: u8,
    /// The stored bytes.
    pub bytes: Vec<u8>,
}

/// The stored kind.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum KindSeed {
    /// Raw bytes (`set_raw`).
    Bytes,
    /// A postcard value.
    Serde,
    /// An integer.
    Int,
    /// A memcached item (header and data).
    Item,
}

/// A small struct, as firmware stores them.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Reading {
    /// A sensor id.
    pub id: u8,
    /// A signed reading.
    pub value: i16,
    /// A flag.
    pub ok: bool,
    /// A label.
    pub label: Option<char>,
}

const V: usize = 32;
type Mem<'c> = MemCache<&'c ManualClock, 4, 16, V>;

/// The integer an `Int` entry holds, read plainly: sign-extended little-endian, at most 8
/// bytes, and only in its minimal form (the engine treats any other form as damaged
/// storage: the wrong type).
fn int_of(bytes: &[u8]) -> Option<i64> {
    if bytes.len() > 8 {
        return None;
    }
    let neg = bytes.last().is_some_and(|b| b & 0x80 != 0);
    let mut le = [if neg { 0xff } else { 0 }; 8];
    le[..bytes.len()].copy_from_slice(bytes);
    let i = i64::from_le_bytes(le);
    (Value::Int(i).encoded_len() == bytes.len()).then_some(i)
}

/// Runs one case, letting the known open findings pass.
pub fn run(input: &Input) {
    run_with(input, false);
}

/// Runs one case; `full` also checks the known open findings.
pub fn run_with(input: &Input, full: bool) {
    let clock = ManualClock::new(1000);
    let mut cache: Mem<'_> = MemCache::new(&clock, Table::new(), Config::new());
    let kind = match input.kind {
        KindSeed::Bytes => Kind::Bytes,
        KindSeed::Serde => Kind::Serde,
        KindSeed::Int => Kind::Int,
        KindSeed::Item => Kind::Item,
    };
    let bytes = &input.bytes[..];
    let fits = bytes.len() <= V;
    if kind == Kind::Bytes {
        let r = cache.set_raw("k", bytes, Timeout::Never);
        assert_eq!(
            r,
            if fits {
                Ok(())
            } else {
                Err(Error::ValueTooLarge)
            }
        );
    } else {
        let now = cache.now();
        let stored = cache
            .backend_mut()
            .put(b":1:k", Put::Set, NEVER, now, |dst| {
                let dst = dst.get_mut(..bytes.len()).ok_or(Error::ValueTooLarge)?;
                dst.copy_from_slice(bytes);
                Ok((bytes.len(), kind))
            })
            .is_ok();
        assert_eq!(stored, fits, "put of {} bytes", bytes.len());
    }
    if !fits {
        assert!(cache.is_empty());
        return;
    }
    assert_eq!(stored(&mut cache, "k"), Some((bytes.to_vec(), kind)));

    let int = if kind == Kind::Int {
        int_of(bytes)
    } else {
        None
    };
    check_int::<u8>(&mut cache, input, full, int);
    check_int::<i8>(&mut cache, input, full, int);
    check_int::<u16>(&mut cache, input, full, int);
    check_int::<i32>(&mut cache, input, full, int);
    check_int::<u64>(&mut cache, input, full, int);
    check_int::<i64>(&mut cache, input, full, int);
    check_other::<String>(&mut cache, input, full);
    check_other::<Option<u8>>(&mut cache, input, full);
    check_other::<Reading>(&mut cache, input, full);
    check_other::<[u8; 4]>(&mut cache, input, full);
    check_other::<bool>(&mut cache, input, full);
    check_other::<char>(&mut cache, input, full);
    check_other::<(u16, i8)>(&mut cache, input, full);
    check_other::<Vec<u8>>(&mut cache, input, full);

    check_get_raw(&mut cache, input, int);
    check_incr(&mut cache, input, int);
}

/// The stored bytes and kind of `key`, `None` on a miss.
fn stored(cache: &mut Mem<'_>, key: &str) -> Option<(Vec<u8>, Kind)> {
    cache
        .with_raw(key, |b, k| (b.to_vec(), k))
        .expect("a valid key")
}

/// Stores `v` under another key and checks it is stored as `bytes` under `kind`, and reads
/// back equal. A value is stored as an integer exactly when it is one in `i64` range, so a
/// postcard entry that reads as an integer type re-encodes as an integer entry: then only
/// the value is compared.
fn round_trip<T>(cache: &mut Mem<'_>, input: &Input, full: bool, v: &T, kind: Kind)
where
    T: Serialize + DeserializeOwned + PartialEq + Clone + core::fmt::Debug,
{
    let r = cache.set("re", v, Timeout::Never);
    assert_eq!(r, Ok(()), "re-storing {v:?}");
    let (bytes, re_kind) = stored(cache, "re").expect("just stored");
    let known = !full && known_finding(kind, &input.bytes, &bytes);
    if re_kind == kind && !known {
        assert_eq!(
            bytes, input.bytes,
            "{v:?} read from {kind:?} {:?} re-encodes differently",
            input.bytes
        );
    }
    assert_eq!(cache.get::<T>("re"), Ok(Some(v.clone())), "read back");
    assert_eq!(cache.delete("re"), Ok(true));
}

fn check_int<T>(cache: &mut Mem<'_>, input: &Input, full: bool, int: Option<i64>)
where
    T: Serialize + DeserializeOwned + PartialEq + Clone + core::fmt::Debug + TryFrom<i64>,
{
    let got = cache.get::<T>("k");
    let kind = stored(cache, "k").map(|s| s.1).expect("stored");
    match kind {
        Kind::Bytes | Kind::Item => assert_eq!(got, Err(Error::WrongType), "raw entry read typed"),
        Kind::Int => {
            let expected = int
                .and_then(|i| T::try_from(i).ok())
                .ok_or(Error::WrongType)
                .map(Some);
            assert_eq!(got, expected, "integer entry {:?}", input.bytes);
        }
        Kind::Serde => {}
    }
    if let Ok(Some(v)) = got {
        round_trip(cache, input, full, &v, kind);
    }
}

fn check_other<T>(cache: &mut Mem<'_>, input: &Input, full: bool)
where
    T: Serialize + DeserializeOwned + PartialEq + Clone + core::fmt::Debug,
{
    let got = cache.get::<T>("k");
    let kind = stored(cache, "k").map(|s| s.1).expect("stored");
    match kind {
        Kind::Bytes | Kind::Item => assert_eq!(got, Err(Error::WrongType), "raw entry read typed"),
        // No non-integer type in this list reads an integer entry.
        Kind::Int => assert_eq!(got, Err(Error::WrongType), "integer entry read as non-int"),
        Kind::Serde => {
            let plain = match postcard::take_from_bytes::<T>(&input.bytes) {
                Ok((v, [])) => Ok(Some(v)),
                _ => Err(Error::WrongType),
            };
            assert_eq!(got, plain, "postcard entry {:?}", input.bytes);
        }
    }
    if let Ok(Some(v)) = got {
        round_trip(cache, input, full, &v, kind);
    }
}

fn check_get_raw(cache: &mut Mem<'_>, input: &Input, int: Option<i64>) {
    let (bytes, kind) = stored(cache, "k").expect("stored");
    let len = usize::from(input.raw_len % 48);
    let mut buf = vec![0u8; len];
    let got = cache
        .get_raw("k", &mut buf)
        .map(|o| o.map(|n| buf[..n].to_vec()));
    let want = match kind {
        Kind::Int => match int {
            Some(i) => Ok(i.to_string().into_bytes()),
            None => Err(Error::WrongType),
        },
        _ => Ok(bytes),
    };
    let want = match want {
        Ok(b) if b.len() > len => Err(Error::BufferTooSmall),
        other => other.map(Some),
    };
    assert_eq!(
        got, want,
        "get_raw of {kind:?} {:?} into {len}",
        input.bytes
    );
}

fn check_incr(cache: &mut Mem<'_>, input: &Input, int: Option<i64>) {
    let (bytes, kind) = stored(cache, "k").expect("stored");
    // The model's answer for the value the entry holds.
    let mut model = Model::new(1000, 16, V, 4, 3);
    let value = match kind {
        Kind::Bytes => Some(Value::Raw(bytes.clone())),
        Kind::Int => int.map(Value::Int),
        // Any postcard value: the model's string is one. Items are the memcached front
        // end's to change.
        Kind::Serde | Kind::Item => Some(Value::Text(String::new())),
    };
    let want = match value {
        Some(value) => {
            model
                .set(b"k", None, value, Timeout::Never)
                .expect("model stores it");
            model.incr(b"k", None, input.delta)
        }
        None => Err(Error::NotInteger),
    };
    let got = cache.incr("k", input.delta);
    assert_eq!(got, want, "incr {} of {kind:?} {bytes:?}", input.delta);
    let after = stored(cache, "k").expect("still stored");
    match got {
        Ok(new) => {
            let new_bytes = match kind {
                Kind::Int => new.to_le_bytes()[..Value::Int(new).encoded_len()].to_vec(),
                _ => new.to_string().into_bytes(),
            };
            assert_eq!(after, (new_bytes, kind), "entry after incr");
        }
        Err(_) => assert_eq!(after, (bytes, kind), "entry after a failed incr"),
    }
}
