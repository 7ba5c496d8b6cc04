//! The `ops` target: an arbitrary sequence of every cache call on a [`MemCache`], run call by
//! call against the reference model ([`Model`]), one model shared by the whole sequence.
//!
//! After every call the answers must be equal, and so must `len()`, `is_empty()`, the cache
//! time, and the live contents (made key, exact stored bytes and kind, expiry, recency
//! order, read from the table with `Table::for_each_lru`).
//!
//! Keys are a class letter followed by a body: the class fixes the value type stored under
//! the key (`i` integers, `s` strings, `o` `Option<u8>`, `r` raw bytes), because a postcard
//! value read as another type is not always detectable. Bodies cover plain names, spaces,
//! DEL, CJK, a colon, keys at and over the key capacity, 250-character keys, and short
//! arbitrary byte strings. Typed reads of integer keys use several integer widths, `String`
//! and `Option<u8>`, whose answers the harness derives from the model's value.
//!
//! The clock is either a [`ManualClock`] starting anywhere (up to the top of `u64`) or a
//! [`Wrap32`] over a 32-bit counter starting anywhere, so counter wraps happen.

use std::cell::Cell;

use arbitrary::{Arbitrary, Unstructured};
use tickcache::model::{Model, Value};
use tickcache::{
    Cache, Clock, Config, Error, Key, KeyPolicy, Kind, ManualClock, Table, Timeout, Wrap32, NEVER,
};

/// Decodes `data` as the target does and checks it (for regression tests).
pub fn run_bytes(data: &[u8]) {
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        run(&input);
    }
}

/// One fuzz case: a configuration and the calls to make.
#[derive(Arbitrary, Debug, Clone)]
pub struct Input {
    /// How the cache is built.
    pub setup: Setup,
    /// The calls, in order.
    pub ops: Vec<Op>,
}

/// Table sizes (`N` entries, `K` key bytes, `V` value bytes).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Geometry {
    /// 16 entries, 24-byte keys, 16-byte values.
    Small,
    /// 8 entries, 255-byte keys (memcached's 250-character limit applies), 4-byte values.
    WideKeys,
    /// 3 entries, 12-byte keys, 8-byte values: culling all the time.
    Tiny,
}

/// The clock.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum ClockSetup {
    /// A manual clock starting at this tick.
    Manual(u64),
    /// A manual clock near the end of time.
    ManualLate(u16),
    /// A wrapping 32-bit counter starting at this value.
    Wrap(u32),
    /// A wrapping 32-bit counter a little before its wrap.
    WrapSoon(u16),
}

/// Ticks per second.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Rate {
    /// 1 Hz.
    One,
    /// 10 Hz.
    Ten,
    /// 1 kHz.
    Khz,
    /// 32768 Hz.
    Crystal,
    /// The largest rate.
    Max,
    /// Any rate (0 is taken as 1 by the clocks).
    Any(u32),
}

/// The configuration.
#[derive(Arbitrary, Debug, Clone)]
pub struct Setup {
    /// Table sizes.
    pub geometry: Geometry,
    /// The clock.
    pub clock: ClockSetup,
    /// Ticks per second.
    pub rate: Rate,
    /// `MAX_ENTRIES`, clamped to `1..=N`.
    pub max_entries: u8,
    /// `CULL_FREQUENCY`.
    pub cull_frequency: u8,
    /// Index into [`PREFIXES`].
    pub prefix: u8,
    /// `VERSION`.
    pub version: Version,
    /// The default timeout.
    pub timeout: TimeoutSeed,
    /// Lenient key policy instead of strict.
    pub lenient: bool,
    /// Make keys with `default_key_fn` as a custom key function (the slow path).
    pub key_fn: bool,
}

/// Key prefixes: none, short, non-ASCII, refused bytes, and heads too long to prebuild.
pub const PREFIXES: [&str; 8] = [
    "",
    "",
    "p",
    "site",
    "清",
    "a b",
    "x\u{7f}",
    "0123456789abcdef",
];

/// A version: the default, or a given one.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Version {
    /// The cache's default version.
    Default,
    /// 1.
    One,
    /// 2.
    Two,
    /// A small version.
    Small(i8),
    /// `i32::MAX`.
    Max,
    /// `i32::MIN`.
    Min,
    /// Any version.
    Any(i32),
}

impl Version {
    fn get(self) -> Option<i32> {
        match self {
            Version::Default => None,
            Version::One => Some(1),
            Version::Two => Some(2),
            Version::Small(v) => Some(i32::from(v)),
            Version::Max => Some(i32::MAX),
            Version::Min => Some(i32::MIN),
            Version::Any(v) => Some(v),
        }
    }

    fn config(self) -> i32 {
        self.get().unwrap_or(1)
    }
}

/// A timeout.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum TimeoutSeed {
    /// The configured default.
    Default,
    /// Never expires.
    Never,
    /// Zero seconds: expired at once.
    Zero,
    /// A few seconds, possibly negative.
    Secs(i8),
    /// Milliseconds, possibly negative.
    Millis(i16),
    /// Ticks, possibly negative.
    Ticks(i16),
    /// Any number of seconds.
    AnySecs(i64),
    /// Any number of milliseconds.
    AnyMillis(i64),
    /// Any number of ticks.
    AnyTicks(i64),
}

impl TimeoutSeed {
    fn get(self) -> Timeout {
        match self {
            TimeoutSeed::Default => Timeout::Default,
            TimeoutSeed::Never => Timeout::Never,
            TimeoutSeed::Zero => Timeout::Secs(0),
            TimeoutSeed::Secs(s) => Timeout::Secs(i64::from(s)),
            TimeoutSeed::Millis(ms) => Timeout::Millis(i64::from(ms)),
            TimeoutSeed::Ticks(t) => Timeout::Ticks(i64::from(t)),
            TimeoutSeed::AnySecs(s) => Timeout::Secs(s),
            TimeoutSeed::AnyMillis(ms) => Timeout::Millis(ms),
            TimeoutSeed::AnyTicks(t) => Timeout::Ticks(t),
        }
    }
}

/// A key's value type.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Integers.
    I,
    /// Strings.
    S,
    /// `Option<u8>`.
    O,
    /// Raw bytes.
    R,
}

impl Class {
    fn letter(self) -> u8 {
        match self {
            Class::I => b'i',
            Class::S => b's',
            Class::O => b'o',
            Class::R => b'r',
        }
    }

    /// The class for typed calls (`set_many`, `get_or_set`): raw keys become integer keys.
    fn typed(self) -> Class {
        if self == Class::R {
            Class::I
        } else {
            self
        }
    }
}

/// A key body, after the class letter.
#[derive(Arbitrary, Debug, Clone)]
pub enum Body {
    /// `1`, `2` or `3` (taken modulo 3), so calls collide.
    Plain(u8),
    /// Nothing: the key is the class letter alone.
    Empty,
    /// Contains a space.
    Space,
    /// Contains DEL.
    Del,
    /// Contains a NUL.
    Nul,
    /// Contains a colon.
    Colon,
    /// A few CJK characters (3 bytes, 1 character each).
    Cjk,
    /// Made key exactly at the key capacity with prefix "" and version 1.
    AtCapacity,
    /// Made key one byte over the key capacity with prefix "" and version 1.
    OverCapacity,
    /// 250 characters with prefix "" and version 1 (when the capacity allows).
    Chars250,
    /// Up to 6 arbitrary bytes.
    Bytes(Vec<u8>),
}

/// A key as a call names it.
#[derive(Arbitrary, Debug, Clone)]
pub struct KeySeed {
    /// The value type of the key.
    pub class: Class,
    /// The key after the class letter.
    pub body: Body,
    /// The version argument.
    pub version: Version,
}

/// A value, converted to the key's class before use.
#[derive(Arbitrary, Debug, Clone)]
pub enum ValueSeed {
    /// A small integer.
    Small(i8),
    /// Any integer.
    Int(i64),
    /// An integer at an edge (index into a list of edges).
    Edge(u8),
    /// A string.
    Text(String),
    /// An `Option<u8>`.
    Opt(Option<u8>),
    /// Bytes.
    Bytes(Vec<u8>),
    /// Decimal text for a raw value (index into a list of tricky decimal strings).
    Decimal(u8),
}

const EDGES: [i64; 10] = [
    i64::MAX,
    i64::MIN,
    i64::MAX - 1,
    i64::MIN + 1,
    i32::MAX as i64,
    0,
    255,
    256,
    -129,
    -1,
];

const DECIMALS: [&str; 16] = [
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
    "0000000000000000000001",
    "42",
];

impl ValueSeed {
    /// The value for a key of `class`.
    fn value(&self, class: Class) -> Value {
        let cap = |s: &str| -> String { s.chars().take(24).collect() };
        let capb = |b: &[u8]| -> Vec<u8> { b.iter().copied().take(24).collect() };
        match (class, self) {
            (Class::I, ValueSeed::Small(i)) => Value::Int(i64::from(*i)),
            (Class::I, ValueSeed::Int(i)) => Value::Int(*i),
            (Class::I, ValueSeed::Edge(e)) => Value::Int(EDGES[usize::from(*e) % EDGES.len()]),
            (Class::I, ValueSeed::Text(s)) => Value::Int(s.len() as i64),
            (Class::I, ValueSeed::Opt(o)) => Value::Int(o.map_or(-1, i64::from)),
            (Class::I, ValueSeed::Bytes(b)) => Value::Int(-(b.len() as i64)),
            (Class::I, ValueSeed::Decimal(d)) => Value::Int(i64::from(*d) << 20),
            (Class::S, ValueSeed::Text(s)) => Value::Text(cap(s)),
            (Class::S, ValueSeed::Bytes(b)) => Value::Text(cap(&String::from_utf8_lossy(b))),
            (Class::S, ValueSeed::Small(i)) => Value::Text(i.to_string()),
            (Class::S, ValueSeed::Int(i)) => Value::Text(i.to_string()),
            (Class::S, ValueSeed::Edge(e)) => Value::Text("清".repeat(usize::from(*e) % 8)),
            (Class::S, ValueSeed::Opt(o)) => Value::Text(format!("{o:?}")),
            (Class::S, ValueSeed::Decimal(d)) => {
                Value::Text(DECIMALS[usize::from(*d) % DECIMALS.len()].to_string())
            }
            (Class::O, ValueSeed::Opt(o)) => Value::OptU8(*o),
            (Class::O, ValueSeed::Small(i)) => Value::OptU8(u8::try_from(*i).ok()),
            (Class::O, ValueSeed::Int(i)) => Value::OptU8(u8::try_from(*i).ok()),
            (Class::O, ValueSeed::Edge(e)) => Value::OptU8(Some(*e)),
            (Class::O, ValueSeed::Text(s)) => Value::OptU8(s.bytes().next()),
            (Class::O, ValueSeed::Bytes(b)) => Value::OptU8(b.first().copied()),
            (Class::O, ValueSeed::Decimal(_)) => Value::OptU8(None),
            (Class::R, ValueSeed::Bytes(b)) => Value::Raw(capb(b)),
            (Class::R, ValueSeed::Decimal(d)) => Value::Raw(
                DECIMALS[usize::from(*d) % DECIMALS.len()]
                    .as_bytes()
                    .to_vec(),
            ),
            (Class::R, ValueSeed::Small(i)) => Value::Raw(i.to_string().into_bytes()),
            (Class::R, ValueSeed::Int(i)) => Value::Raw(i.to_string().into_bytes()),
            (Class::R, ValueSeed::Edge(e)) => Value::Raw(
                EDGES[usize::from(*e) % EDGES.len()]
                    .to_string()
                    .into_bytes(),
            ),
            (Class::R, ValueSeed::Text(s)) => Value::Raw(capb(s.as_bytes())),
            (Class::R, ValueSeed::Opt(o)) => Value::Raw(o.map(|b| vec![b]).unwrap_or_default()),
        }
    }
}

/// How an integer key is read back.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum ReadAs {
    /// The key's own type (`i64` for integer and raw keys).
    Own,
    /// `u8`.
    U8,
    /// `i8`.
    I8,
    /// `u64`.
    U64,
    /// `i32`.
    I32,
    /// `String` (an integer is the wrong type).
    Text,
    /// `Option<u8>` (an integer is the wrong type).
    OptU8,
}

/// An `incr`/`decr` delta.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Delta {
    /// A small delta.
    Small(i8),
    /// Any delta.
    Any(i64),
    /// `i64::MAX`.
    Max,
    /// `i64::MIN`.
    Min,
}

impl Delta {
    fn get(self) -> i64 {
        match self {
            Delta::Small(d) => i64::from(d),
            Delta::Any(d) => d,
            Delta::Max => i64::MAX,
            Delta::Min => i64::MIN,
        }
    }
}

/// An `incr_version`/`decr_version` delta.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum VersionDelta {
    /// A small delta.
    Small(i8),
    /// Any delta.
    Any(i32),
    /// `i32::MAX`.
    Max,
    /// `i32::MIN`.
    Min,
}

impl VersionDelta {
    fn get(self) -> i32 {
        match self {
            VersionDelta::Small(d) => i32::from(d),
            VersionDelta::Any(d) => d,
            VersionDelta::Max => i32::MAX,
            VersionDelta::Min => i32::MIN,
        }
    }
}

/// How far the clock moves.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Advance {
    /// A few ticks.
    Ticks(u8),
    /// Up to a minute at 1 kHz.
    Some(u16),
    /// Up to a 32-bit counter's whole period.
    Far(u32),
    /// Any distance (a wrapping counter moves at most one period).
    Any(u64),
}

/// One call.
#[derive(Arbitrary, Debug, Clone)]
pub enum Op {
    /// `get` (integer keys read with the chosen type; other classes with their own type).
    Get(KeySeed, ReadAs),
    /// `get_raw` into a buffer of this many bytes (modulo 40).
    GetRaw(KeySeed, u8),
    /// `with_raw`: the stored bytes and kind.
    WithRaw(KeySeed),
    /// `set` (`set_raw` for raw keys).
    Set(KeySeed, ValueSeed, TimeoutSeed),
    /// `add` (`add_raw` for raw keys).
    Add(KeySeed, ValueSeed, TimeoutSeed),
    /// `touch`.
    Touch(KeySeed, TimeoutSeed),
    /// `delete`.
    Delete(KeySeed),
    /// `has_key`.
    HasKey(KeySeed),
    /// `get_many` of keys of one class (raw keys read as `i64`).
    GetMany(Class, Vec<KeySeed>),
    /// `set_many` of values of one typed class.
    SetMany(Class, Vec<(KeySeed, ValueSeed)>, TimeoutSeed),
    /// `delete_many`.
    DeleteMany(Vec<KeySeed>),
    /// `get_or_set` (raw keys become integer keys).
    GetOrSet(KeySeed, ValueSeed, TimeoutSeed),
    /// `incr`.
    Incr(KeySeed, Delta),
    /// `decr`.
    Decr(KeySeed, Delta),
    /// `incr_version`.
    IncrVersion(KeySeed, VersionDelta),
    /// `decr_version`.
    DecrVersion(KeySeed, VersionDelta),
    /// `make_key` into a buffer of this many bytes (modulo 300).
    MakeKey(KeySeed, u16),
    /// `clear`.
    Clear,
    /// `close`.
    Close,
    /// Moves the clock.
    Advance(Advance),
    /// `resume_at`.
    ResumeAt(u64),
}

/// One call's answer, in a form both sides produce.
#[derive(Debug, PartialEq, Eq)]
enum Out {
    Unit(Result<(), Error>),
    Bool(Result<bool, Error>),
    Int(Result<i64, Error>),
    Version(Result<i32, Error>),
    Value(Result<Option<Value>, Error>),
    Raw(Result<Option<Vec<u8>>, Error>),
    Stored(Result<Option<(Vec<u8>, Kind)>, Error>),
    Many(Vec<(Vec<u8>, Option<i32>, Value)>, Result<usize, Error>),
    Failed(Vec<(Vec<u8>, Option<i32>, Error)>, Result<usize, Error>),
    Count(Result<usize, Error>),
    Got(Result<Value, Error>),
    Made(Result<Vec<u8>, tickcache::KeyError>),
    Time(u64),
}

/// The cache's clock: a manual clock or a wrapping counter.
enum FuzzClock<'a> {
    Manual(&'a ManualClock),
    Wrap(&'a Wrap32<&'a dyn Fn() -> u32>),
}

impl Clock for FuzzClock<'_> {
    fn ticks_per_second(&self) -> u32 {
        match self {
            FuzzClock::Manual(c) => c.ticks_per_second(),
            FuzzClock::Wrap(c) => c.ticks_per_second(),
        }
    }
    fn now(&self) -> u64 {
        match self {
            FuzzClock::Manual(c) => c.now(),
            FuzzClock::Wrap(c) => c.now(),
        }
    }
}

/// Runs one case: builds the cache for the chosen geometry and checks every call.
pub fn run(input: &Input) {
    match input.setup.geometry {
        Geometry::Small => run_with::<16, 24, 16>(input),
        Geometry::WideKeys => run_with::<8, 255, 4>(input),
        Geometry::Tiny => run_with::<3, 12, 8>(input),
    }
}

fn rate(r: Rate) -> u32 {
    match r {
        Rate::One => 1,
        Rate::Ten => 10,
        Rate::Khz => 1000,
        Rate::Crystal => 32_768,
        Rate::Max => u32::MAX,
        Rate::Any(r) => r,
    }
}

fn run_with<const N: usize, const K: usize, const V: usize>(input: &Input) {
    let s = &input.setup;
    let rate = rate(s.rate);
    let manual = ManualClock::new(rate);
    let counter = Cell::new(0u32);
    let read = || counter.get();
    let read: &dyn Fn() -> u32 = &read;
    let wrap = Wrap32::new(rate, read);
    let clock = match s.clock {
        ClockSetup::Manual(t) => {
            manual.set(t);
            FuzzClock::Manual(&manual)
        }
        ClockSetup::ManualLate(t) => {
            manual.set(u64::MAX - u64::from(t));
            FuzzClock::Manual(&manual)
        }
        ClockSetup::Wrap(t) => {
            counter.set(t);
            FuzzClock::Wrap(&wrap)
        }
        ClockSetup::WrapSoon(t) => {
            counter.set(u32::MAX - u32::from(t));
            FuzzClock::Wrap(&wrap)
        }
    };
    let wrapping = matches!(clock, FuzzClock::Wrap(_));
    let max = usize::from(s.max_entries).clamp(1, N);
    let freq = s.cull_frequency;
    let prefix = PREFIXES[usize::from(s.prefix) % PREFIXES.len()];
    let version = s.version.config();
    let timeout = s.timeout.get();
    let mut config = Config::new()
        .key_prefix(prefix)
        .version(version)
        .timeout(timeout)
        .key_policy(if s.lenient {
            KeyPolicy::Lenient
        } else {
            KeyPolicy::Strict
        });
    if s.key_fn {
        config = config.key_function(tickcache::key::default_key_fn);
    }
    let model_rate = clock.ticks_per_second();
    let mut h = Harness::<N, K, V> {
        cache: Cache::new(clock, Table::with_culling(max, u16::from(freq)), config),
        model: Model::new(model_rate, K, V, max, usize::from(freq)),
    };
    h.model.prefix = prefix.to_string();
    h.model.version = version;
    h.model.timeout = config.default_timeout();
    h.model.strict = !s.lenient;
    h.model.now = h.cache.now();
    for (step, op) in input.ops.iter().enumerate() {
        let (engine, model) = match op {
            Op::Advance(a) => {
                let before = h.cache.now();
                let d = match *a {
                    Advance::Ticks(t) => u64::from(t),
                    Advance::Some(t) => u64::from(t) * 1000,
                    Advance::Far(t) => u64::from(t),
                    Advance::Any(t) => t,
                };
                if wrapping {
                    // A wrapping counter must be read once per period: move it at most one
                    // period, and the read below notices the wrap.
                    let d = d.min(u64::from(u32::MAX)) as u32;
                    counter.set(counter.get().wrapping_add(d));
                    let after = h.cache.now();
                    let expected = before.saturating_add(u64::from(d)).min(NEVER - 1);
                    (Out::Time(after), Out::Time(expected))
                } else {
                    manual.advance(d);
                    let after = h.cache.now();
                    (
                        Out::Time(after),
                        Out::Time(before.saturating_add(d).min(NEVER - 1)),
                    )
                }
            }
            Op::ResumeAt(t) => {
                let before = h.cache.now();
                h.cache.resume_at(*t);
                let after = h.cache.now();
                (Out::Time(after), Out::Time(before.max(*t).min(NEVER - 1)))
            }
            op => (h.engine(op), h.model(op)),
        };
        assert_eq!(engine, model, "answer to step {step}: {op:?}");
        h.model.now = h.cache.now();
        h.check_state(step, op);
    }
    h.final_sweep();
}

struct Harness<'a, const N: usize, const K: usize, const V: usize> {
    cache: Cache<FuzzClock<'a>, Table<N, K, V>, K>,
    model: Model,
}

/// The key's bytes for key capacity `k`.
fn name(key: &KeySeed, k: usize) -> Vec<u8> {
    let mut out = vec![key.class.letter()];
    // ":1:" and the class letter take 4 bytes of the made key.
    let room = k.saturating_sub(4);
    match &key.body {
        Body::Plain(i) => out.push(b'1' + i % 3),
        Body::Empty => {}
        Body::Space => out.extend_from_slice(b" x"),
        Body::Del => out.push(0x7f),
        Body::Nul => out.extend_from_slice(b"a\0"),
        Body::Colon => out.extend_from_slice(b":1:"),
        Body::Cjk => out.extend_from_slice("清".repeat((room / 3).min(6)).as_bytes()),
        Body::AtCapacity => out.resize(1 + room, b'x'),
        Body::OverCapacity => out.resize(2 + room, b'y'),
        Body::Chars250 => out.resize(1 + room.min(246), b'w'),
        Body::Bytes(b) => out.extend(b.iter().take(6)),
    }
    out
}

fn key_of(name: &[u8], version: Option<i32>) -> Key<'_> {
    Key { key: name, version }
}

/// The stored bytes and kind the engine must hold for a model value.
fn encoded(value: &Value) -> (Vec<u8>, Kind) {
    match value {
        Value::Int(i) => (i.to_le_bytes()[..value.encoded_len()].to_vec(), Kind::Int),
        Value::Text(s) => {
            let mut buf = [0u8; 128];
            let used = postcard::to_slice(s, &mut buf).expect("a short string");
            (used.to_vec(), Kind::Serde)
        }
        Value::OptU8(None) => (vec![0], Kind::Serde),
        Value::OptU8(Some(b)) => (vec![1, *b], Kind::Serde),
        Value::Raw(b) => (b.clone(), Kind::Bytes),
    }
}

/// A typed read of a model value with the read type the call asked for.
fn read_as(value: Value, class: Class, read: ReadAs) -> Result<Value, Error> {
    match (value, class) {
        (Value::Raw(_), _) => Err(Error::WrongType),
        (Value::Int(i), Class::I) => {
            let fits = match read {
                ReadAs::Own => true,
                ReadAs::U8 => u8::try_from(i).is_ok(),
                ReadAs::I8 => i8::try_from(i).is_ok(),
                ReadAs::U64 => u64::try_from(i).is_ok(),
                ReadAs::I32 => i32::try_from(i).is_ok(),
                ReadAs::Text | ReadAs::OptU8 => false,
            };
            if fits {
                Ok(Value::Int(i))
            } else {
                Err(Error::WrongType)
            }
        }
        (v, _) => Ok(v),
    }
}

impl<const N: usize, const K: usize, const V: usize> Harness<'_, N, K, V> {
    /// A typed read through the engine: `read` for integer keys, the own type otherwise.
    fn engine_get(&mut self, name: &[u8], v: Option<i32>, class: Class, read: ReadAs) -> Out {
        let c = &mut self.cache;
        let key = key_of(name, v);
        let int = |r: Result<Option<i64>, Error>| r.map(|x| x.map(Value::Int));
        Out::Value(match (class, read) {
            (Class::I, ReadAs::U8) => int(c.get::<u8>(key).map(|x| x.map(i64::from))),
            (Class::I, ReadAs::I8) => int(c.get::<i8>(key).map(|x| x.map(i64::from))),
            (Class::I, ReadAs::U64) => int(c.get::<u64>(key).map(|x| x.map(|u| u as i64))),
            (Class::I, ReadAs::I32) => int(c.get::<i32>(key).map(|x| x.map(i64::from))),
            (Class::I, ReadAs::Text) => c.get::<String>(key).map(|x| x.map(Value::Text)),
            (Class::I, ReadAs::OptU8) => c.get::<Option<u8>>(key).map(|x| x.map(Value::OptU8)),
            (Class::I | Class::R, _) => int(c.get::<i64>(key)),
            (Class::S, _) => c.get::<String>(key).map(|x| x.map(Value::Text)),
            (Class::O, _) => c.get::<Option<u8>>(key).map(|x| x.map(Value::OptU8)),
        })
    }

    fn engine(&mut self, op: &Op) -> Out {
        let c = &mut self.cache;
        match op {
            Op::Get(k, read) => {
                let n = name(k, K);
                self.engine_get(&n, k.version.get(), k.class, *read)
            }
            Op::GetRaw(k, len) => {
                let n = name(k, K);
                let mut buf = vec![0u8; usize::from(*len % 40)];
                Out::Raw(
                    c.get_raw(key_of(&n, k.version.get()), &mut buf)
                        .map(|x| x.map(|len| buf[..len].to_vec())),
                )
            }
            Op::WithRaw(k) => {
                let n = name(k, K);
                Out::Stored(c.with_raw(key_of(&n, k.version.get()), |b, kind| (b.to_vec(), kind)))
            }
            Op::Set(k, x, t) => {
                let n = name(k, K);
                let key = key_of(&n, k.version.get());
                let t = t.get();
                Out::Unit(match x.value(k.class) {
                    Value::Int(i) => c.set(key, &i, t),
                    Value::Text(s) => c.set(key, &s, t),
                    Value::OptU8(o) => c.set(key, &o, t),
                    Value::Raw(b) => c.set_raw(key, &b, t),
                })
            }
            Op::Add(k, x, t) => {
                let n = name(k, K);
                let key = key_of(&n, k.version.get());
                let t = t.get();
                Out::Bool(match x.value(k.class) {
                    Value::Int(i) => c.add(key, &i, t),
                    Value::Text(s) => c.add(key, &s, t),
                    Value::OptU8(o) => c.add(key, &o, t),
                    Value::Raw(b) => c.add_raw(key, &b, t),
                })
            }
            Op::Touch(k, t) => {
                let n = name(k, K);
                Out::Bool(c.touch(key_of(&n, k.version.get()), t.get()))
            }
            Op::Delete(k) => {
                let n = name(k, K);
                Out::Bool(c.delete(key_of(&n, k.version.get())))
            }
            Op::HasKey(k) => {
                let n = name(k, K);
                Out::Bool(c.has_key(key_of(&n, k.version.get())))
            }
            Op::GetMany(class, keys) => {
                let names: Vec<(Vec<u8>, Option<i32>)> = keys
                    .iter()
                    .map(|k| {
                        let k = KeySeed {
                            class: *class,
                            ..k.clone()
                        };
                        (name(&k, K), k.version.get())
                    })
                    .collect();
                let keys = names.iter().map(|(n, v)| key_of(n, *v));
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
            Op::SetMany(class, items, t) => {
                let class = class.typed();
                let items: Vec<(Vec<u8>, Option<i32>, Value)> = items
                    .iter()
                    .map(|(k, x)| {
                        let k = KeySeed { class, ..k.clone() };
                        (name(&k, K), k.version.get(), x.value(class))
                    })
                    .collect();
                let mut failed = Vec::new();
                let on_fail =
                    |key: Key<'_>, e: Error| failed.push((key.key.to_vec(), key.version, e));
                let t = t.get();
                let n = match class {
                    Class::I | Class::R => {
                        let ints: Vec<(Key<'_>, i64)> = items
                            .iter()
                            .map(|(n, v, x)| match x {
                                Value::Int(i) => (key_of(n, *v), *i),
                                other => unreachable!("{other:?}"),
                            })
                            .collect();
                        c.set_many(ints.iter().map(|(k, i)| (*k, i)), t, on_fail)
                    }
                    Class::S => {
                        let texts: Vec<(Key<'_>, &str)> = items
                            .iter()
                            .map(|(n, v, x)| match x {
                                Value::Text(s) => (key_of(n, *v), s.as_str()),
                                other => unreachable!("{other:?}"),
                            })
                            .collect();
                        c.set_many(texts.iter().map(|(k, s)| (*k, *s)), t, on_fail)
                    }
                    Class::O => {
                        let opts: Vec<(Key<'_>, Option<u8>)> = items
                            .iter()
                            .map(|(n, v, x)| match x {
                                Value::OptU8(o) => (key_of(n, *v), *o),
                                other => unreachable!("{other:?}"),
                            })
                            .collect();
                        c.set_many(opts.iter().map(|(k, o)| (*k, o)), t, on_fail)
                    }
                };
                Out::Failed(failed, n)
            }
            Op::DeleteMany(keys) => {
                let names: Vec<(Vec<u8>, Option<i32>)> =
                    keys.iter().map(|k| (name(k, K), k.version.get())).collect();
                Out::Count(c.delete_many(names.iter().map(|(n, v)| key_of(n, *v))))
            }
            Op::GetOrSet(k, x, t) => {
                let k = KeySeed {
                    class: k.class.typed(),
                    ..k.clone()
                };
                let n = name(&k, K);
                let key = key_of(&n, k.version.get());
                let t = t.get();
                Out::Got(match x.value(k.class) {
                    Value::Int(i) => c.get_or_set(key, || i, t).map(Value::Int),
                    Value::Text(s) => c.get_or_set(key, || s, t).map(Value::Text),
                    Value::OptU8(o) => c.get_or_set(key, || o, t).map(Value::OptU8),
                    Value::Raw(_) => unreachable!("typed class"),
                })
            }
            Op::Incr(k, d) => {
                let n = name(k, K);
                Out::Int(c.incr(key_of(&n, k.version.get()), d.get()))
            }
            Op::Decr(k, d) => {
                let n = name(k, K);
                Out::Int(c.decr(key_of(&n, k.version.get()), d.get()))
            }
            Op::IncrVersion(k, d) => {
                let n = name(k, K);
                Out::Version(c.incr_version(key_of(&n, k.version.get()), d.get()))
            }
            Op::DecrVersion(k, d) => {
                let n = name(k, K);
                Out::Version(c.decr_version(key_of(&n, k.version.get()), d.get()))
            }
            Op::MakeKey(k, cap) => {
                let n = name(k, K);
                let mut buf = vec![0u8; usize::from(*cap % 300)];
                Out::Made(
                    c.make_key(key_of(&n, k.version.get()), &mut buf)
                        .map(|len| buf[..len].to_vec()),
                )
            }
            Op::Clear => Out::Unit(c.clear()),
            Op::Close => Out::Unit(c.close()),
            Op::Advance(_) | Op::ResumeAt(_) => unreachable!("handled by the runner"),
        }
    }

    fn model(&mut self, op: &Op) -> Out {
        let m = &mut self.model;
        match op {
            Op::Get(k, read) => {
                let n = name(k, K);
                Out::Value(
                    m.get(&n, k.version.get())
                        .and_then(|x| x.map(|x| read_as(x, k.class, *read)).transpose()),
                )
            }
            Op::GetRaw(k, len) => {
                let n = name(k, K);
                let len = usize::from(*len % 40);
                Out::Raw(match m.get(&n, k.version.get()) {
                    Ok(Some(x)) => {
                        let bytes = match x {
                            Value::Raw(b) => b,
                            Value::Int(i) => i.to_string().into_bytes(),
                            other => encoded(&other).0,
                        };
                        if bytes.len() > len {
                            Err(Error::BufferTooSmall)
                        } else {
                            Ok(Some(bytes))
                        }
                    }
                    other => other.map(|_| None),
                })
            }
            Op::WithRaw(k) => {
                let n = name(k, K);
                Out::Stored(m.get(&n, k.version.get()).map(|x| x.map(|x| encoded(&x))))
            }
            Op::Set(k, x, t) => {
                let n = name(k, K);
                Out::Unit(m.set(&n, k.version.get(), x.value(k.class), t.get()))
            }
            Op::Add(k, x, t) => {
                let n = name(k, K);
                Out::Bool(m.add(&n, k.version.get(), x.value(k.class), t.get()))
            }
            Op::Touch(k, t) => {
                let n = name(k, K);
                Out::Bool(m.touch(&n, k.version.get(), t.get()))
            }
            Op::Delete(k) => {
                let n = name(k, K);
                Out::Bool(m.delete(&n, k.version.get()))
            }
            Op::HasKey(k) => {
                let n = name(k, K);
                Out::Bool(m.has_key(&n, k.version.get()))
            }
            Op::GetMany(class, keys) => {
                let mut hits = Vec::new();
                let mut r = Ok(0);
                // Every key is validated before any is read.
                if let Some(e) = keys.iter().find_map(|k| {
                    let k = KeySeed {
                        class: *class,
                        ..k.clone()
                    };
                    m.make_key(&name(&k, K), k.version.get()).err()
                }) {
                    return Out::Many(hits, Err(Error::Key(e)));
                }
                for k in keys {
                    let k = KeySeed {
                        class: *class,
                        ..k.clone()
                    };
                    let n = name(&k, K);
                    let v = k.version.get();
                    match m
                        .get(&n, v)
                        .and_then(|x| x.map(|x| read_as(x, k.class, ReadAs::Own)).transpose())
                    {
                        Ok(Some(x)) => hits.push((n, v, x)),
                        Ok(None) => {}
                        Err(e) => {
                            r = Err(e);
                            break;
                        }
                    }
                }
                let r = r.map(|_: usize| hits.len());
                Out::Many(hits, r)
            }
            Op::SetMany(class, items, t) => {
                let class = class.typed();
                let mut failed = Vec::new();
                // Every key is validated before any is stored.
                if let Some(e) = items.iter().find_map(|(k, _)| {
                    let k = KeySeed { class, ..k.clone() };
                    m.make_key(&name(&k, K), k.version.get()).err()
                }) {
                    return Out::Failed(failed, Err(Error::Key(e)));
                }
                for (k, x) in items {
                    let k = KeySeed { class, ..k.clone() };
                    let n = name(&k, K);
                    let v = k.version.get();
                    if let Err(e) = m.set(&n, v, x.value(class), t.get()) {
                        failed.push((n, v, e));
                    }
                }
                let n = failed.len();
                Out::Failed(failed, Ok(n))
            }
            Op::DeleteMany(keys) => {
                // Every key is validated before any is deleted.
                if let Some(e) = keys
                    .iter()
                    .find_map(|k| m.make_key(&name(k, K), k.version.get()).err())
                {
                    return Out::Count(Err(Error::Key(e)));
                }
                let mut r = Ok(0);
                for k in keys {
                    let n = name(k, K);
                    match m.delete(&n, k.version.get()) {
                        Ok(gone) => r = r.map(|c| c + usize::from(gone)),
                        Err(e) => {
                            r = Err(e);
                            break;
                        }
                    }
                }
                Out::Count(r)
            }
            Op::GetOrSet(k, x, t) => {
                let class = k.class.typed();
                let k = KeySeed { class, ..k.clone() };
                let n = name(&k, K);
                Out::Got(m.get_or_set(&n, k.version.get(), x.value(class), t.get()))
            }
            Op::Incr(k, d) => {
                let n = name(k, K);
                Out::Int(m.incr(&n, k.version.get(), d.get()))
            }
            Op::Decr(k, d) => {
                let n = name(k, K);
                Out::Int(m.decr(&n, k.version.get(), d.get()))
            }
            Op::IncrVersion(k, d) => {
                let n = name(k, K);
                Out::Version(m.incr_version(&n, k.version.get(), d.get()))
            }
            Op::DecrVersion(k, d) => {
                let n = name(k, K);
                Out::Version(match d.get().checked_neg() {
                    Some(d) => m.incr_version(&n, k.version.get(), d),
                    None => Err(Error::Overflow),
                })
            }
            Op::MakeKey(k, cap) => {
                let n = name(k, K);
                let key_cap = m.key_cap;
                m.key_cap = usize::from(*cap % 300);
                let made = m.make_key(&n, k.version.get());
                m.key_cap = key_cap;
                Out::Made(made)
            }
            Op::Clear => {
                m.clear();
                Out::Unit(Ok(()))
            }
            Op::Close => Out::Unit(Ok(())),
            Op::Advance(_) | Op::ResumeAt(_) => unreachable!("handled by the runner"),
        }
    }

    /// Entry count, emptiness, time, and the live contents in recency order, exactly.
    fn check_state(&self, step: usize, op: &Op) {
        assert_eq!(
            self.cache.len(),
            self.model.len(),
            "len after step {step}: {op:?}"
        );
        assert_eq!(
            self.cache.is_empty(),
            self.model.is_empty(),
            "is_empty after step {step}: {op:?}"
        );
        assert_eq!(self.cache.now(), self.model.now, "time after step {step}");
        let now = self.cache.now();
        let mut engine = Vec::new();
        self.cache
            .backend()
            .for_each_lru(|made, bytes, kind, expiry| {
                assert!(bytes.len() <= V, "value of {} bytes", bytes.len());
                assert!(made.len() <= K, "made key of {} bytes", made.len());
                if expiry > now {
                    engine.push((made.to_vec(), bytes.to_vec(), kind, expiry));
                }
            });
        let model: Vec<_> = self
            .model
            .live_entries()
            .into_iter()
            .map(|(made, value, expiry)| {
                let (bytes, kind) = encoded(&value);
                (made, bytes, kind, expiry.unwrap_or(NEVER))
            })
            .collect();
        assert_eq!(engine, model, "contents after step {step}: {op:?}");
    }

    /// Reads every key the sequence named, plus a few, both ways.
    fn final_sweep(&mut self) {
        let mut seen: Vec<(Vec<u8>, Kind)> = Vec::new();
        self.cache
            .backend()
            .for_each_lru(|made, _, kind, _| seen.push((made.to_vec(), kind)));
        for (made, _) in seen {
            // Every entry is also reachable through the model's view of its key.
            let live = self.model.live_entries().iter().any(|(m, _, _)| *m == made);
            let has = self.cache.backend().peek(&made, self.cache.now()).is_some();
            assert_eq!(has, live, "peek of {made:?}");
        }
        assert_eq!(self.cache.len(), self.model.len());
    }
}
