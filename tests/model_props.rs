//! Property tests: random sequences of every cache operation, with clock advances, applied to
//! a real memory cache (the fixed `Table`, and the host's `HeapTable` with a budget large
//! enough that only its entry limit culls) and to the reference model
//! (`tickcache::model::Model`). Every answer
//! is compared, and after every operation so are the entry count and the live contents
//! (made key, value, expiry and recency order).
//!
//! Keys come from a small pool so operations collide. Each key's first letter fixes the type
//! of its value (`i` i64, `s` String, `o` Option<u8>, `r` raw bytes), because a postcard
//! value read as another type is not always detectable. The pool includes keys that are
//! invalid (space, DEL), that sit at the key capacity, that exceed it, and that are 250
//! characters long with the prefix.
//!
//! Runs 256 cases per configuration by default; set `PROPTEST_CASES` to change that.

use proptest::prelude::*;
use proptest::sample::select;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use tickcache::model::{Model, Value};

use tickcache::hash::DefaultHashBuilder;
use tickcache::heap::{HeapTable, Limits};
use tickcache::{Backend, Cache, Config, Error, Key, KeyPolicy, Kind, ManualClock, Table, Timeout};

// ---------------------------------------------------------------------------------------
// The key pool

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
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
enum Shape {
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

const POOL: [(Class, Shape); 18] = [
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
fn pool(k: usize) -> Vec<String> {
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

fn class_of(k: usize) -> Class {
    POOL[k].0
}

fn indices(class: Class) -> Vec<usize> {
    (0..POOL.len()).filter(|&k| class_of(k) == class).collect()
}

// ---------------------------------------------------------------------------------------
// Operations

#[derive(Clone, Debug)]
enum Op {
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

fn version() -> impl Strategy<Value = Option<i32>> {
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

fn timeout() -> impl Strategy<Value = Timeout> {
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

fn int_value() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => -3i64..300,
        2 => any::<i64>(),
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX - 1),
        1 => Just(i32::MAX as i64),
    ]
}

fn raw_value() -> impl Strategy<Value = Vec<u8>> {
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

fn value_of(class: Class) -> BoxedStrategy<Value> {
    match class {
        Class::I => int_value().prop_map(Value::Int).boxed(),
        Class::S => "[a-z清]{0,18}".prop_map(Value::Text).boxed(),
        Class::O => any::<Option<u8>>().prop_map(Value::OptU8).boxed(),
        Class::R => raw_value().prop_map(Value::Raw).boxed(),
    }
}

/// A key of `class` with a value of its type.
fn keyed_value(classes: &[Class]) -> impl Strategy<Value = (usize, Value)> {
    let arms: Vec<_> = classes
        .iter()
        .map(|&class| (select(indices(class)), value_of(class)).boxed())
        .collect();
    proptest::strategy::Union::new(arms)
}

fn key() -> impl Strategy<Value = usize> {
    0..POOL.len()
}

fn delta() -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => -3i64..=3,
        2 => any::<i64>(),
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
    ]
}

fn version_delta() -> impl Strategy<Value = i32> {
    prop_oneof![
        6 => -2i32..=2,
        1 => Just(i32::MAX),
        1 => Just(i32::MIN),
    ]
}

fn op() -> impl Strategy<Value = Op> {
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
struct Setup {
    rate: u32,
    /// Fraction of N for MAX_ENTRIES, in 1..=N after scaling.
    max: usize,
    freq: u16,
    prefix: &'static str,
    version: i32,
    timeout: Timeout,
    strict: bool,
}

fn setup(n: usize) -> impl Strategy<Value = Setup> {
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
enum Out {
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

/// Sees one entry: made key, value bytes, kind, expiry tick.
type Visitor<'a> = dyn FnMut(&[u8], &[u8], Kind, u64) + 'a;

/// A backend whose entries the harness can list in recency order.
trait Lru: Backend<Error = std::convert::Infallible> {
    fn visit(&self, f: &mut Visitor<'_>);
}

impl<const N: usize, const K: usize, const V: usize, S: BuildHasher> Lru for Table<N, K, V, S> {
    fn visit(&self, f: &mut Visitor<'_>) {
        self.for_each_lru(f)
    }
}

impl<S: BuildHasher> Lru for HeapTable<S> {
    fn visit(&self, f: &mut Visitor<'_>) {
        self.for_each_lru(f)
    }
}

struct Harness<'c, B, const K: usize> {
    clock: &'c ManualClock,
    cache: Cache<&'c ManualClock, B, K>,
    model: Model,
    names: Vec<String>,
}

fn key_of(name: &str, version: Option<i32>) -> Key<'_> {
    Key {
        key: name.as_bytes(),
        version,
    }
}

impl<'c, B: Lru, const K: usize> Harness<'c, B, K> {
    /// `table` holds values of up to `value_cap` bytes and culls at `max` entries.
    fn new(clock: &'c ManualClock, s: &Setup, table: B, value_cap: usize, max: usize) -> Self {
        let config = Config::new()
            .key_prefix(s.prefix)
            .version(s.version)
            .timeout(s.timeout)
            .key_policy(if s.strict {
                KeyPolicy::Strict
            } else {
                KeyPolicy::Lenient
            });
        let cache = Cache::new(clock, table, config);
        let mut model = Model::new(clock_rate(clock), K, value_cap, max, usize::from(s.freq));
        model.prefix = s.prefix.to_string();
        model.version = s.version;
        model.timeout = s.timeout;
        model.strict = s.strict;
        Harness {
            clock,
            cache,
            model,
            names: pool(K),
        }
    }

    fn name(&self, k: usize) -> &str {
        &self.names[k]
    }

    fn engine(&mut self, op: &Op) -> Out {
        let names = self.names.clone();
        let name = |k: usize| names[k].as_str();
        let c = &mut self.cache;
        match op {
            Op::Get(k, v) => {
                let key = key_of(name(*k), *v);
                Out::Value(match class_of(*k) {
                    Class::I | Class::R => c.get::<i64>(key).map(|x| x.map(Value::Int)),
                    Class::S => c.get::<String>(key).map(|x| x.map(Value::Text)),
                    Class::O => c.get::<Option<u8>>(key).map(|x| x.map(Value::OptU8)),
                })
            }
            Op::GetU8(k, v) => Out::Value(
                c.get::<u8>(key_of(name(*k), *v))
                    .map(|x| x.map(|b| Value::Int(i64::from(b)))),
            ),
            Op::GetRaw(k, v, n) => {
                let mut buf = vec![0u8; *n];
                Out::Raw(
                    c.get_raw(key_of(name(*k), *v), &mut buf)
                        .map(|x| x.map(|len| buf[..len].to_vec())),
                )
            }
            Op::Set(k, v, x, t) => {
                let key = key_of(name(*k), *v);
                Out::Unit(match x {
                    Value::Int(i) => c.set(key, i, *t),
                    Value::Text(s) => c.set(key, s, *t),
                    Value::OptU8(o) => c.set(key, o, *t),
                    Value::Raw(b) => c.set_raw(key, b, *t),
                })
            }
            Op::Add(k, v, x, t) => {
                let key = key_of(name(*k), *v);
                Out::Bool(match x {
                    Value::Int(i) => c.add(key, i, *t),
                    Value::Text(s) => c.add(key, s, *t),
                    Value::OptU8(o) => c.add(key, o, *t),
                    Value::Raw(b) => c.add_raw(key, b, *t),
                })
            }
            Op::Touch(k, v, t) => Out::Bool(c.touch(key_of(name(*k), *v), *t)),
            Op::Delete(k, v) => Out::Bool(c.delete(key_of(name(*k), *v))),
            Op::HasKey(k, v) => Out::Bool(c.has_key(key_of(name(*k), *v))),
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
                Out::Many(hits, r)
            }
            Op::SetMany(items, t) => {
                let mut failed = Vec::new();
                let mut on_fail =
                    |key: Key<'_>, e: Error| failed.push((key.key.to_vec(), key.version, e));
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
                let n = [
                    c.set_many(ints, *t, &mut on_fail),
                    c.set_many(texts, *t, &mut on_fail),
                    c.set_many(opts, *t, &mut on_fail),
                ]
                .into_iter()
                .sum();
                Out::Failed(failed, n)
            }
            Op::DeleteMany(keys) => {
                Out::Count(c.delete_many(keys.iter().map(|&(k, v)| key_of(name(k), v))))
            }
            Op::GetOrSet(k, v, x, t) => {
                let key = key_of(name(*k), *v);
                Out::Got(match x.clone() {
                    Value::Int(i) => c.get_or_set(key, || i, *t).map(Value::Int),
                    Value::Text(s) => c.get_or_set(key, || s, *t).map(Value::Text),
                    Value::OptU8(o) => c.get_or_set(key, || o, *t).map(Value::OptU8),
                    Value::Raw(_) => unreachable!("get_or_set is typed"),
                })
            }
            Op::Incr(k, v, d) => Out::Int(c.incr(key_of(name(*k), *v), *d)),
            Op::Decr(k, v, d) => Out::Int(c.decr(key_of(name(*k), *v), *d)),
            Op::IncrVersion(k, v, d) => Out::Version(c.incr_version(key_of(name(*k), *v), *d)),
            Op::DecrVersion(k, v, d) => Out::Version(c.decr_version(key_of(name(*k), *v), *d)),
            Op::Clear => Out::Unit(c.clear()),
            Op::Close => Out::Unit(c.close()),
            Op::Advance(t) => {
                // The clock stops one tick short of u64::MAX: at u64::MAX itself the
                // engine reads every entry, "never" included, as expired (checked on its
                // own in bad_input.rs, `never_expiring_entries_survive_the_last_tick`).
                let room = u64::MAX - 1 - tickcache::Clock::now(self.clock);
                self.clock.advance((*t).min(room));
                Out::Advanced
            }
        }
    }

    fn model(&mut self, op: &Op) -> Out {
        let names = self.names.clone();
        let name = |k: usize| names[k].as_bytes();
        let now = tickcache::Clock::now(self.clock);
        let m = &mut self.model;
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

    /// The engine's live entries, least recent first, as the model reports them.
    fn engine_contents(&self) -> Vec<(Vec<u8>, Value, Option<u64>)> {
        let now = self.cache.now();
        let mut out = Vec::new();
        self.cache
            .backend()
            .visit(&mut |made, bytes, kind, expiry| {
                if expiry <= now {
                    return;
                }
                let value = decode_entry(made, bytes, kind);
                let expiry = (expiry != tickcache::NEVER).then_some(expiry);
                out.push((made.to_vec(), value, expiry));
            });
        out
    }

    fn check_state(&self, step: usize, op: &Op) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            self.cache.len(),
            self.model.len(),
            "entry count after step {} ({:?})",
            step,
            op
        );
        prop_assert_eq!(
            self.engine_contents(),
            self.model.live_entries(),
            "contents after step {} ({:?})",
            step,
            op
        );
        Ok(())
    }

    /// Reads every pool key at every version both ways (this changes recency and reclaims
    /// expired entries identically on both sides).
    fn final_sweep(&mut self) -> Result<(), TestCaseError> {
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
        for k in 0..POOL.len() {
            for v in versions {
                let has = Op::HasKey(k, v);
                prop_assert_eq!(
                    self.engine(&has),
                    self.model(&has),
                    "{:?} of {:?}",
                    has,
                    self.name(k)
                );
                let get = Op::Get(k, v);
                prop_assert_eq!(
                    self.engine(&get),
                    self.model(&get),
                    "{:?} of {:?}",
                    get,
                    self.name(k)
                );
            }
        }
        prop_assert_eq!(self.cache.len(), self.model.len());
        Ok(())
    }
}

fn clock_rate(clock: &ManualClock) -> u32 {
    tickcache::Clock::ticks_per_second(clock)
}

/// A typed read of a raw value is refused (`WrongType`) on a hit.
fn typed(r: Result<Option<Value>, Error>) -> Result<Option<Value>, Error> {
    match r {
        Ok(Some(Value::Raw(_))) => Err(Error::WrongType),
        other => other,
    }
}

/// Reads an engine entry back as a model value, by the class of its key.
fn decode_entry(made: &[u8], bytes: &[u8], kind: Kind) -> Value {
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
        (Some(b'i'), Kind::Int) => {
            assert!(bytes.len() <= 8, "integer of {} bytes", bytes.len());
            let fill = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                0xff
            } else {
                0
            };
            let mut le = [fill; 8];
            le[..bytes.len()].copy_from_slice(bytes);
            Value::Int(i64::from_le_bytes(le))
        }
        (Some(b's'), Kind::Serde) => Value::Text(postcard::from_bytes(bytes).expect("a String")),
        (Some(b'o'), Kind::Serde) => {
            Value::OptU8(postcard::from_bytes(bytes).expect("an Option<u8>"))
        }
        (Some(b'r'), Kind::Bytes) => Value::Raw(bytes.to_vec()),
        other => panic!("entry {made:?} stored as {other:?}"),
    }
}

fn run<const N: usize, const K: usize, const V: usize>(
    s: &Setup,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    run_hashed::<N, K, V, DefaultHashBuilder>(s, ops)
}

/// A hasher that gives every key the same hash: every entry shares one chain, so only the
/// key comparison tells entries apart. Slow, and must still answer exactly like the model.
#[derive(Default)]
struct SameHash;

impl Hasher for SameHash {
    fn write(&mut self, _: &[u8]) {}
    fn finish(&self) -> u64 {
        0x5a5a_5a5a_5a5a_5a5a
    }
}

fn run_hashed<const N: usize, const K: usize, const V: usize, S: BuildHasher + Default>(
    s: &Setup,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let max = s.max.clamp(1, N);
    let table: Table<N, K, V, S> =
        Table::try_with_culling_and_hasher(max, s.freq, S::default()).expect("max is in 1..=N");
    run_on::<_, K>(table, V, max, s, ops)
}

/// The heap table with made keys of up to `K` bytes, values of up to `v` bytes, Django's
/// culling at `max` entries, and a byte budget no sequence can reach (so only the entry
/// limit culls, as in the model; the budget's own eviction is tested in heap_table.rs).
fn run_heap<const K: usize, S: BuildHasher + Default>(
    v: usize,
    max: usize,
    s: &Setup,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let limits = Limits::new(usize::MAX / 2)
        .key_max(K)
        .value_max(v)
        .culling(max, s.freq);
    let table = HeapTable::with_hasher(limits, S::default()).expect("valid limits");
    run_on::<_, K>(table, v, max, s, ops)
}

fn run_on<B: Lru, const K: usize>(
    table: B,
    value_cap: usize,
    max: usize,
    s: &Setup,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let clock = ManualClock::new(s.rate);
    let mut h: Harness<'_, B, K> = Harness::new(&clock, s, table, value_cap, max);
    for (step, op) in ops.iter().enumerate() {
        let engine = h.engine(op);
        let model = h.model(op);
        prop_assert_eq!(&engine, &model, "answer to step {} ({:?})", step, op);
        h.check_state(step, op)?;
    }
    h.final_sweep()
}

fn config() -> ProptestConfig {
    // Failures are reported with the shrunk sequence; no regression file is written.
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// 16 entries, keys up to 24 bytes, values up to 16 bytes.
    #[test]
    fn engine_matches_model(s in setup(16), ops in prop::collection::vec(op(), 1..200)) {
        run::<16, 24, 16>(&s, &ops)?;
    }

    /// Keys up to 255 bytes (so memcached's 250-character limit applies), values of at most
    /// 4 bytes (so strings, raw values and growing integers overflow them).
    #[test]
    fn engine_matches_model_wide_keys_small_values(
        s in setup(8),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        run::<8, 255, 4>(&s, &ops)?;
    }

    /// Every key hashes alike (one chain holds the whole table): answers must not change.
    #[test]
    fn engine_matches_model_with_a_constant_hasher(
        s in setup(16),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        run_hashed::<16, 24, 16, BuildHasherDefault<SameHash>>(&s, &ops)?;
    }

    /// The heap table (std's keyed hasher), 16 entries at most, keys up to 24 bytes, values
    /// up to 16 bytes: the fixed table's first configuration.
    #[test]
    fn heap_table_matches_model(s in setup(16), ops in prop::collection::vec(op(), 1..200)) {
        run_heap::<24, std::collections::hash_map::RandomState>(16, s.max, &s, &ops)?;
    }

    /// The heap table with keys up to 255 bytes and values of at most 4 bytes.
    #[test]
    fn heap_table_matches_model_wide_keys_small_values(
        s in setup(8),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        run_heap::<255, std::collections::hash_map::RandomState>(4, s.max, &s, &ops)?;
    }

    /// The heap table with no entry limit (the server's setting): nothing is ever culled.
    #[test]
    fn heap_table_without_entry_limit_matches_model(
        s in setup(16),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        run_heap::<24, std::collections::hash_map::RandomState>(16, usize::MAX, &s, &ops)?;
    }

    /// The heap table with every key hashing alike (one probe sequence for all).
    #[test]
    fn heap_table_matches_model_with_a_constant_hasher(
        s in setup(16),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        run_heap::<24, BuildHasherDefault<SameHash>>(16, s.max, &s, &ops)?;
    }
}
