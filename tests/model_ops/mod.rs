//! What the model property tests share: the key pool, random operation sequences (every
//! cache operation, with versions, timeouts and clock advances), cache configurations, and
//! one operation run on a `Cache` over any backend or on the reference model
//! (`tickcache::model::Model`), each answer in one comparable form.
//!
//! Keys come from a small pool so operations collide. Each key's first letter fixes the type
//! of its value (`i` i64, `s` String, `o` Option<u8>, `r` raw bytes), because a postcard
//! value read as another type is not always detectable. The pool includes keys that are
//! invalid (space, DEL), that sit at the key capacity, that exceed it, and that are 250
//! characters long with the prefix.

#![allow(dead_code)]

use proptest::prelude::*;
use proptest::sample::select;
use tickcache::model::{Model, Value};
use tickcache::{Backend, Cache, Clock, Config, Error, Key, KeyPolicy, Kind, Timeout};

// ---------------------------------------------------------------------------------------
// The key pool

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// i64 values.
    I,
    /// String values.
    S,
    /// Option<u8> values.
    O,
    /// Raw bytes.
    R,
}

#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// A short ordinary name.
    Plain(&'static str),
    /// Contains a space.
    Space,
    /// Contains DEL.
    Del,
    /// Non-ASCII characters, well within the capacity.
    Cjk,
    /// Made key exactly at the capacity with prefix "" and version 1.
    AtCapacity,
    /// Made key one byte over the capacity at any version.
    OverCapacity,
    /// Made key of 250 characters with prefix "" and version 1 (when the capacity allows).
    Chars250,
}

pub const POOL: [(Class, Shape); 18] = [
    (Class::I, Shape::Plain("1")),
    (Class::I, Shape::Plain("2")),
    (Class::I, Shape::Plain("3")),
    (Class::I, Shape::Space),
    (Class::I, Shape::AtCapacity),
    (Class::S, Shape::Plain("1")),
    (Class::S, Shape::Plain("2")),
    (Class::S, Shape::Cjk),
    (Class::S, Shape::Del),
    (Class::S, Shape::OverCapacity),
    (Class::O, Shape::Plain("1")),
    (Class::O, Shape::Plain("2")),
    (Class::O, Shape::Chars250),
    (Class::R, Shape::Plain("1")),
    (Class::R, Shape::Plain("2")),
    (Class::R, Shape::Plain("3")),
    (Class::R, Shape::AtCapacity),
    (Class::R, Shape::Cjk),
];

/// The pool's key names for made-key capacity `k`.
pub fn pool(k: usize) -> Vec<String> {
    POOL.iter()
        .map(|&(class, shape)| {
            let c = match class {
                Class::I => 'i',
                Class::S => 's',
                Class::O => 'o',
                Class::R => 'r',
            };
            // ":1:" takes 3 bytes of the made key.
            let body = match shape {
                Shape::Plain(s) => s.to_string(),
                Shape::Space => " x".to_string(),
                Shape::Del => "\u{7f}".to_string(),
                Shape::Cjk => "清".repeat(((k - 4) / 3).min(6)),
                Shape::AtCapacity => "x".repeat(k - 4),
                Shape::OverCapacity => "y".repeat(k - 3),
                Shape::Chars250 => "w".repeat((k - 4).min(246)),
            };
            format!("{c}{body}")
        })
        .collect()
}

pub fn class_of(k: usize) -> Class {
    POOL[k].0
}

pub fn indices(class: Class) -> Vec<usize> {
    (0..POOL.len()).filter(|&k| class_of(k) == class).collect()
}

// ---------------------------------------------------------------------------------------
// Operations

#[derive(Clone, Debug)]
pub enum Op {
    /// Typed read (raw keys are read as i64, which must be refused on a hit).
    Get(usize, Option<i32>),
    /// An i64 key read as u8.
    GetU8(usize, Option<i32>),
    /// Raw read into a buffer of the given size (raw keys; integers read as decimal).
    GetRaw(usize, Option<i32>, usize),
    Set(usize, Option<i32>, Value, Timeout),
    Add(usize, Option<i32>, Value, Timeout),
    Touch(usize, Option<i32>, Timeout),
    Delete(usize, Option<i32>),
    HasKey(usize, Option<i32>),
    GetMany(Class, Vec<(usize, Option<i32>)>),
    SetMany(Vec<(usize, Option<i32>, Value)>, Timeout),
    DeleteMany(Vec<(usize, Option<i32>)>),
    GetOrSet(usize, Option<i32>, Value, Timeout),
    Incr(usize, Option<i32>, i64),
    Decr(usize, Option<i32>, i64),
    IncrVersion(usize, Option<i32>, i32),
    DecrVersion(usize, Option<i32>, i32),
    Clear,
    Close,
    Advance(u64),
}

pub fn version() -> impl Strategy<Value = Option<i32>> {
    prop_oneof![
        4 => Just(None),
        2 => Just(Some(1)),
        2 => Just(Some(2)),
        1 => Just(Some(0)),
        1 => Just(Some(-1)),
        1 => Just(Some(10)),
        1 => Just(Some(i32::MAX)),
        1 => Just(Some(i32::MIN)),
    ]
}

pub fn timeout() -> impl Strategy<Value = Timeout> {
    prop_oneof![
        4 => Just(Timeout::Default),
        2 => Just(Timeout::Never),
        1 => Just(Timeout::Secs(0)),
        1 => (-5i64..0).prop_map(Timeout::Secs),
        4 => (1i64..20).prop_map(Timeout::Secs),
        2 => (-10i64..5000).prop_map(Timeout::Millis),
        2 => (-10i64..5000).prop_map(Timeout::Ticks),
        1 => Just(Timeout::Secs(i64::MAX)),
        1 => Just(Timeout::Secs(i64::MIN)),
        1 => Just(Timeout::Millis(i64::MAX)),
        1 => Just(Timeout::Ticks(i64::MIN)),
    ]
}

pub fn int_value() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => -3i64..300,
        2 => any::<i64>(),
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX - 1),
        1 => Just(i32::MAX as i64),
    ]
}

pub fn raw_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..=18),
        3 => (-1000i64..1000).prop_map(|i| i.to_string().into_bytes()),
        1 => any::<i64>().prop_map(|i| i.to_string().into_bytes()),
        1 => select(vec![
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "9999",
            "9999999999999999",
            "-999999999999999",
            "007",
            "+5",
            " 5",
            "5 ",
            "-",
            "--5",
            "-0",
            "",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
    ]
}

pub fn value_of(class: Class) -> BoxedStrategy<Value> {
    match class {
        Class::I => int_value().prop_map(Value::Int).boxed(),
        Class::S => "[a-z清]{0,18}".prop_map(Value::Text).boxed(),
        Class::O => any::<Option<u8>>().prop_map(Value::OptU8).boxed(),
        Class::R => raw_value().prop_map(Value::Raw).boxed(),
    }
}

/// A key of `class` with a value of its type.
pub fn keyed_value(classes: &[Class]) -> impl Strategy<Value = (usize, Value)> {
    let arms: Vec<_> = classes
        .iter()
        .map(|&class| (select(indices(class)), value_of(class)).boxed())
        .collect();
    proptest::strategy::Union::new(arms)
}

pub fn key() -> impl Strategy<Value = usize> {
    0..POOL.len()
}

pub fn delta() -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => -3i64..=3,
        2 => any::<i64>(),
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
    ]
}

pub fn version_delta() -> impl Strategy<Value = i32> {
    prop_oneof![
        6 => -2i32..=2,
        1 => Just(i32::MAX),
        1 => Just(i32::MIN),
    ]
}

pub fn op() -> impl Strategy<Value = Op> {
    const ALL: [Class; 4] = [Class::I, Class::S, Class::O, Class::R];
    const TYPED: [Class; 3] = [Class::I, Class::S, Class::O];
    let batch_class = select(ALL.to_vec());
    prop_oneof![
        6 => (key(), version()).prop_map(|(k, v)| Op::Get(k, v)),
        1 => (select(indices(Class::I)), version()).prop_map(|(k, v)| Op::GetU8(k, v)),
        2 => (select([indices(Class::R), indices(Class::I)].concat()), version(), 0usize..24)
            .prop_map(|(k, v, n)| Op::GetRaw(k, v, n)),
        6 => (keyed_value(&ALL), version(), timeout()).prop_map(|((k, x), v, t)| Op::Set(k, v, x, t)),
        3 => (keyed_value(&ALL), version(), timeout()).prop_map(|((k, x), v, t)| Op::Add(k, v, x, t)),
        2 => (key(), version(), timeout()).prop_map(|(k, v, t)| Op::Touch(k, v, t)),
        2 => (key(), version()).prop_map(|(k, v)| Op::Delete(k, v)),
        2 => (key(), version()).prop_map(|(k, v)| Op::HasKey(k, v)),
        2 => batch_class.prop_flat_map(|class| {
            let keys = prop::collection::vec((select(indices(class)), version()), 0..5);
            keys.prop_map(move |keys| Op::GetMany(class, keys))
        }),
        2 => select(TYPED.to_vec()).prop_flat_map(|class| {
            let items = prop::collection::vec(
                (select(indices(class)), version(), value_of(class)),
                0..5,
            );
            (items, timeout()).prop_map(|(items, t)| Op::SetMany(items, t))
        }),
        1 => prop::collection::vec((key(), version()), 0..5).prop_map(Op::DeleteMany),
        2 => (keyed_value(&TYPED), version(), timeout())
            .prop_map(|((k, x), v, t)| Op::GetOrSet(k, v, x, t)),
        3 => (key(), version(), delta()).prop_map(|(k, v, d)| Op::Incr(k, v, d)),
        2 => (key(), version(), delta()).prop_map(|(k, v, d)| Op::Decr(k, v, d)),
        2 => (key(), version(), version_delta()).prop_map(|(k, v, d)| Op::IncrVersion(k, v, d)),
        1 => (key(), version(), version_delta()).prop_map(|(k, v, d)| Op::DecrVersion(k, v, d)),
        1 => Just(Op::Clear),
        1 => Just(Op::Close),
        5 => prop_oneof![0u64..2000, 0u64..40_000, Just(u64::MAX / 2)].prop_map(Op::Advance),
    ]
}

// ---------------------------------------------------------------------------------------
// Configuration

#[derive(Clone, Debug)]
pub struct Setup {
    pub rate: u32,
    /// Fraction of N for MAX_ENTRIES, in 1..=N after scaling.
    pub max: usize,
    pub freq: u16,
    pub prefix: &'static str,
    pub version: i32,
    pub timeout: Timeout,
    pub strict: bool,
}

pub fn setup(n: usize) -> impl Strategy<Value = Setup> {
    (
        select(vec![1u32, 10, 1000, 32_768]),
        1..=n,
        0u16..=5,
        select(vec!["", "", "p"]),
        select(vec![1, 1, 2, -1]),
        select(vec![
            Timeout::Secs(300),
            Timeout::Secs(300),
            Timeout::Never,
            Timeout::Secs(5),
            Timeout::Millis(1500),
            Timeout::Secs(0),
        ]),
        prop::bool::weighted(0.75),
    )
        .prop_map(
            |(rate, max, freq, prefix, version, timeout, strict)| Setup {
                rate,
                max,
                freq,
                prefix,
                version,
                timeout,
                strict,
            },
        )
}

// ---------------------------------------------------------------------------------------
// Running both sides

/// One operation's answer, in a form both sides map to.
#[derive(Clone, Debug, PartialEq)]
pub enum Out {
    Unit(Result<(), Error>),
    Bool(Result<bool, Error>),
    Int(Result<i64, Error>),
    Version(Result<i32, Error>),
    Value(Result<Option<Value>, Error>),
    Raw(Result<Option<Vec<u8>>, Error>),
    Many(Vec<(Vec<u8>, Option<i32>, Value)>, Result<usize, Error>),
    Failed(Vec<(Vec<u8>, Option<i32>, Error)>, Result<usize, Error>),
    Count(Result<usize, Error>),
    Got(Result<Value, Error>),
    Advanced,
}

/// The made key's parts for the cache.
pub fn key_of(name: &str, version: Option<i32>) -> Key<'_> {
    Key {
        key: name.as_bytes(),
        version,
    }
}

/// An answer of the cache over backend error `E`: its backend failures and
/// `Error::Settle` apart (outer `Err`), every other error as the memory cache reports it.
fn split<T, E>(r: Result<T, Error<E>>) -> Result<Result<T, Error>, Error<E>> {
    match r {
        Ok(x) => Ok(Ok(x)),
        Err(e) => narrow(e).map(Err),
    }
}

/// `e` without a backend error, or `e` itself when it is one (or `Error::Settle`).
fn narrow<E>(e: Error<E>) -> Result<Error, Error<E>> {
    Ok(match e {
        Error::Key(k) => Error::Key(k),
        Error::ValueTooLarge => Error::ValueTooLarge,
        Error::Serialize => Error::Serialize,
        Error::WrongType => Error::WrongType,
        Error::NotFound => Error::NotFound,
        Error::BufferTooSmall => Error::BufferTooSmall,
        Error::NotInteger => Error::NotInteger,
        Error::Overflow => Error::Overflow,
        Error::StorageFull => Error::StorageFull,
        Error::Busy => Error::Busy,
        other => return Err(other),
    })
}

/// Runs `op` on `c` (key names from `names`). Backend failures and `Error::Settle` are
/// returned apart (so `AsyncSharedCache::with` runs the call again after its storage
/// work); every other answer is in the `Out`. `Advance` is left to the caller.
pub fn engine_op<C: Clock, B: Backend, const K: usize>(
    c: &mut Cache<C, B, K>,
    names: &[String],
    op: &Op,
) -> Result<Out, Error<B::Error>> {
    let name = |k: usize| names[k].as_str();
    Ok(match op {
        Op::Get(k, v) => {
            let key = key_of(name(*k), *v);
            Out::Value(split(match class_of(*k) {
                Class::I | Class::R => c.get::<i64>(key).map(|x| x.map(Value::Int)),
                Class::S => c.get::<String>(key).map(|x| x.map(Value::Text)),
                Class::O => c.get::<Option<u8>>(key).map(|x| x.map(Value::OptU8)),
            })?)
        }
        Op::GetU8(k, v) => Out::Value(split(
            c.get::<u8>(key_of(name(*k), *v))
                .map(|x| x.map(|b| Value::Int(i64::from(b)))),
        )?),
        Op::GetRaw(k, v, n) => {
            let mut buf = vec![0u8; *n];
            Out::Raw(split(
                c.get_raw(key_of(name(*k), *v), &mut buf)
                    .map(|x| x.map(|len| buf[..len].to_vec())),
            )?)
        }
        Op::Set(k, v, x, t) => {
            let key = key_of(name(*k), *v);
            Out::Unit(split(match x {
                Value::Int(i) => c.set(key, i, *t),
                Value::Text(s) => c.set(key, s, *t),
                Value::OptU8(o) => c.set(key, o, *t),
                Value::Raw(b) => c.set_raw(key, b, *t),
            })?)
        }
        Op::Add(k, v, x, t) => {
            let key = key_of(name(*k), *v);
            Out::Bool(split(match x {
                Value::Int(i) => c.add(key, i, *t),
                Value::Text(s) => c.add(key, s, *t),
                Value::OptU8(o) => c.add(key, o, *t),
                Value::Raw(b) => c.add_raw(key, b, *t),
            })?)
        }
        Op::Touch(k, v, t) => Out::Bool(split(c.touch(key_of(name(*k), *v), *t))?),
        Op::Delete(k, v) => Out::Bool(split(c.delete(key_of(name(*k), *v)))?),
        Op::HasKey(k, v) => Out::Bool(split(c.has_key(key_of(name(*k), *v)))?),
        Op::GetMany(class, keys) => {
            let keys = keys.iter().map(|&(k, v)| key_of(name(k), v));
            let mut hits = Vec::new();
            let r = match class {
                Class::I | Class::R => c.get_many(keys, |key, x: i64| {
                    hits.push((key.key.to_vec(), key.version, Value::Int(x)))
                }),
                Class::S => c.get_many(keys, |key, x: String| {
                    hits.push((key.key.to_vec(), key.version, Value::Text(x)))
                }),
                Class::O => c.get_many(keys, |key, x: Option<u8>| {
                    hits.push((key.key.to_vec(), key.version, Value::OptU8(x)))
                }),
            };
            let r = split(r)?;
            Out::Many(hits, r)
        }
        Op::SetMany(items, t) => {
            let mut failed = Vec::new();
            let mut fatal = None;
            let mut on_fail = |key: Key<'_>, e: Error<B::Error>| match narrow(e) {
                Ok(e) => failed.push((key.key.to_vec(), key.version, e)),
                Err(e) => fatal = Some(e),
            };
            // Items of one class share a type; split them by that type.
            let ints: Vec<_> = items
                .iter()
                .filter_map(|(k, v, x)| match x {
                    Value::Int(i) => Some((key_of(name(*k), *v), i)),
                    _ => None,
                })
                .collect();
            let texts: Vec<_> = items
                .iter()
                .filter_map(|(k, v, x)| match x {
                    Value::Text(s) => Some((key_of(name(*k), *v), s)),
                    _ => None,
                })
                .collect();
            let opts: Vec<_> = items
                .iter()
                .filter_map(|(k, v, x)| match x {
                    Value::OptU8(o) => Some((key_of(name(*k), *v), o)),
                    _ => None,
                })
                .collect();
            // Items of one class only: at most one call has items.
            let mut n = Ok(0);
            for r in [
                c.set_many(ints, *t, &mut on_fail),
                c.set_many(texts, *t, &mut on_fail),
                c.set_many(opts, *t, &mut on_fail),
            ] {
                let r = split(r)?;
                n = n.and_then(|n| r.map(|m| n + m));
            }
            if let Some(e) = fatal {
                return Err(e);
            }
            Out::Failed(failed, n)
        }
        Op::DeleteMany(keys) => Out::Count(split(
            c.delete_many(keys.iter().map(|&(k, v)| key_of(name(k), v))),
        )?),
        Op::GetOrSet(k, v, x, t) => {
            let key = key_of(name(*k), *v);
            Out::Got(split(match x.clone() {
                Value::Int(i) => c.get_or_set(key, || i, *t).map(Value::Int),
                Value::Text(s) => c.get_or_set(key, || s, *t).map(Value::Text),
                Value::OptU8(o) => c.get_or_set(key, || o, *t).map(Value::OptU8),
                Value::Raw(_) => unreachable!("get_or_set is typed"),
            })?)
        }
        Op::Incr(k, v, d) => Out::Int(split(c.incr(key_of(name(*k), *v), *d))?),
        Op::Decr(k, v, d) => Out::Int(split(c.decr(key_of(name(*k), *v), *d))?),
        Op::IncrVersion(k, v, d) => Out::Version(split(c.incr_version(key_of(name(*k), *v), *d))?),
        Op::DecrVersion(k, v, d) => Out::Version(split(c.decr_version(key_of(name(*k), *v), *d))?),
        Op::Clear => Out::Unit(split(c.clear())?),
        Op::Close => Out::Unit(split(c.close())?),
        Op::Advance(_) => Out::Advanced,
    })
}

/// Advances `clock` by `t` ticks, stopping one tick short of `u64::MAX` in cache time
/// (`now`): at u64::MAX itself the engine reads every entry, "never" included, as expired
/// (checked on its own in bad_input.rs, `never_expiring_entries_survive_the_last_tick`).
pub fn advance(clock: &tickcache::ManualClock, now: u64, t: u64) {
    clock.advance(t.min(u64::MAX - 1 - now));
}

/// Runs `op` on the model `m` at cache time `now` (key names from `names`).
pub fn model_op(m: &mut Model, names: &[String], now: u64, op: &Op) -> Out {
    let name = |k: usize| names[k].as_bytes();
    match op {
        Op::Get(k, v) => Out::Value(typed(m.get(name(*k), *v))),
        Op::GetU8(k, v) => Out::Value(match m.get(name(*k), *v) {
            Ok(Some(Value::Int(i))) if u8::try_from(i).is_ok() => Ok(Some(Value::Int(i))),
            Ok(Some(_)) => Err(Error::WrongType),
            other => other,
        }),
        Op::GetRaw(k, v, n) => Out::Raw(match m.get(name(*k), *v) {
            Ok(Some(x)) => {
                let bytes = match x {
                    Value::Raw(b) => b,
                    Value::Int(i) => i.to_string().into_bytes(),
                    other => panic!("raw read of {other:?}"),
                };
                if bytes.len() > *n {
                    Err(Error::BufferTooSmall)
                } else {
                    Ok(Some(bytes))
                }
            }
            other => other.map(|_| None),
        }),
        Op::Set(k, v, x, t) => Out::Unit(m.set(name(*k), *v, x.clone(), *t)),
        Op::Add(k, v, x, t) => Out::Bool(m.add(name(*k), *v, x.clone(), *t)),
        Op::Touch(k, v, t) => Out::Bool(m.touch(name(*k), *v, *t)),
        Op::Delete(k, v) => Out::Bool(m.delete(name(*k), *v)),
        Op::HasKey(k, v) => Out::Bool(m.has_key(name(*k), *v)),
        Op::GetMany(_, keys) => {
            let mut hits = Vec::new();
            let mut r = Ok(0);
            // Every key is validated before any is read.
            if let Some(e) = keys.iter().find_map(|&(k, v)| m.make_key(name(k), v).err()) {
                return Out::Many(hits, Err(Error::Key(e)));
            }
            for &(k, v) in keys {
                match typed(m.get(name(k), v)) {
                    Ok(Some(x)) => hits.push((name(k).to_vec(), v, x)),
                    Ok(None) => {}
                    Err(e) => {
                        r = Err(e);
                        break;
                    }
                }
            }
            let r = r.map(|_| hits.len());
            Out::Many(hits, r)
        }
        Op::SetMany(items, t) => {
            let mut failed = Vec::new();
            // Every key is validated before any is stored.
            if let Some(e) = items
                .iter()
                .find_map(|(k, v, _)| m.make_key(name(*k), *v).err())
            {
                return Out::Failed(failed, Err(Error::Key(e)));
            }
            for (k, v, x) in items {
                if let Err(e) = m.set(name(*k), *v, x.clone(), *t) {
                    failed.push((name(*k).to_vec(), *v, e));
                }
            }
            let n = failed.len();
            Out::Failed(failed, Ok(n))
        }
        Op::DeleteMany(keys) => {
            // Every key is validated before any is deleted.
            if let Some(e) = keys.iter().find_map(|&(k, v)| m.make_key(name(k), v).err()) {
                return Out::Count(Err(Error::Key(e)));
            }
            let mut r = Ok(0);
            for &(k, v) in keys {
                match m.delete(name(k), v) {
                    Ok(gone) => r = r.map(|n| n + usize::from(gone)),
                    Err(e) => {
                        r = Err(e);
                        break;
                    }
                }
            }
            Out::Count(r)
        }
        Op::GetOrSet(k, v, x, t) => Out::Got(m.get_or_set(name(*k), *v, x.clone(), *t)),
        Op::Incr(k, v, d) => Out::Int(m.incr(name(*k), *v, *d)),
        Op::Decr(k, v, d) => Out::Int(m.decr(name(*k), *v, *d)),
        Op::IncrVersion(k, v, d) => Out::Version(m.incr_version(name(*k), *v, *d)),
        Op::DecrVersion(k, v, d) => Out::Version(match d.checked_neg() {
            Some(d) => m.incr_version(name(*k), *v, d),
            None => Err(Error::Overflow),
        }),
        Op::Clear => {
            m.clear();
            Out::Unit(Ok(()))
        }
        Op::Close => Out::Unit(Ok(())),
        Op::Advance(_) => {
            m.now = now;
            Out::Advanced
        }
    }
}

/// A typed read of a raw value is refused (`WrongType`) on a hit.
pub fn typed(r: Result<Option<Value>, Error>) -> Result<Option<Value>, Error> {
    match r {
        Ok(Some(Value::Raw(_))) => Err(Error::WrongType),
        other => other,
    }
}

/// Reads an engine entry back as a model value, by the class of its key.
pub fn decode_entry(made: &[u8], bytes: &[u8], kind: Kind) -> Value {
    // prefix:version:name, where neither prefix nor version contains ':'.
    let name_at = made
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b':')
        .nth(1)
        .map(|(i, _)| i + 1)
        .expect("made key has prefix:version:");
    let class = made.get(name_at).copied();
    match (class, kind) {
        (Some(b'i'), Kind::Int) => Value::Int(
            tickcache::model::stored_int(bytes).unwrap_or_else(|| panic!("integer {bytes:?}")),
        ),
        (Some(b's'), Kind::Serde) => Value::Text(postcard::from_bytes(bytes).expect("a String")),
        (Some(b'o'), Kind::Serde) => {
            Value::OptU8(postcard::from_bytes(bytes).expect("an Option<u8>"))
        }
        (Some(b'r'), Kind::Bytes) => Value::Raw(bytes.to_vec()),
        other => panic!("entry {made:?} stored as {other:?}"),
    }
}

/// The cache configuration of `s`.
pub fn cache_config(s: &Setup) -> Config {
    Config::new()
        .key_prefix(s.prefix)
        .version(s.version)
        .timeout(s.timeout)
        .key_policy(if s.strict {
            KeyPolicy::Strict
        } else {
            KeyPolicy::Lenient
        })
}

/// The model of a cache configured by `s`: `rate` ticks a second, made keys of up to
/// `key_cap` bytes, values of up to `value_cap`, culling at `max` entries.
pub fn model_for(s: &Setup, rate: u32, key_cap: usize, value_cap: usize, max: usize) -> Model {
    let mut model = Model::new(rate, key_cap, value_cap, max, usize::from(s.freq));
    model.prefix = s.prefix.to_string();
    model.version = s.version;
    model.timeout = s.timeout;
    model.strict = s.strict;
    model
}

/// Reads of every pool key at every version, `has_key` and `get` (they change recency and
/// reclaim expired entries identically on both sides), for the end of a case.
pub fn sweep_ops() -> Vec<Op> {
    let versions = [
        None,
        Some(0),
        Some(1),
        Some(2),
        Some(-1),
        Some(10),
        Some(i32::MAX),
        Some(i32::MIN),
    ];
    (0..POOL.len())
        .flat_map(|k| versions.map(|v| [Op::HasKey(k, v), Op::Get(k, v)]))
        .flatten()
        .collect()
}

/// Failures are reported with the shrunk sequence; no regression file is written.
pub fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}
