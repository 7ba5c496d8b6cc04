//! The `persist` target: a workload on a cache persisted to a mock NOR flash, with power cuts
//! and reboots where the input says, checked against the reference model.
//!
//! While the power is on, every answer must be the model's and the live contents (made key,
//! stored bytes, kind, expiry) must equal the model's. After a cut (or a reboot without
//! `close`) the flash is reopened and the recovered contents must be exactly the
//! acknowledged state (nothing acknowledged lost) or that state with the interrupted
//! operation applied in full (all or nothing). Under write-back, acknowledged means
//! committed to flash (a flush), and a flush of earlier changes made at the start of the
//! interrupted operation also counts. Cache time after a reboot must not run backwards past
//! what was committed, nor beyond the latest time seen.
//!
//! Keys are `i0`..`i5` (integers) and `r0`..`r5` (raw bytes) at versions 1 and 2: 24 made
//! keys in a table of 40 on a flash that holds them all, so neither culling nor eviction
//! applies and recency (write order after a reboot) never matters.

use arbitrary::{Arbitrary, Unstructured};
use tickcache::flash::{FlashError, MockError, MockFlash, Persistent, Policy};
use tickcache::model::{Model, Value};
use tickcache::{Config, Error, Key, Kind, ManualClock, Table, Timeout, NEVER};

/// Decodes `data` as the target does and checks it (for regression tests).
pub fn run_bytes(data: &[u8]) {
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        run(&input);
    }
}

/// One fuzz case.
#[derive(Arbitrary, Debug, Clone)]
pub struct Input {
    /// Flash word size.
    pub geometry: Geometry,
    /// When changes reach flash.
    pub policy: PolicySeed,
    /// The workload, with cuts and reboots.
    pub ops: Vec<Op>,
}

/// Flash geometry: 8 pages of 512 bytes (1,024 for 64-byte words), written in words of
/// `WRITE_SIZE` bytes and read in units of `READ_SIZE` bytes (the mock refuses any other
/// read or write). Eight variants: the top three bits of an input's fourth byte pick one
/// (the first four bytes are a little-endian `u32` scaled to the variant count).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Geometry {
    /// Written and read a byte at a time.
    W1,
    /// 2-byte words, reads of 4.
    W2R4,
    /// 4-byte words, reads of 64 (a record's header can cross a read window's end).
    W4R64,
    /// 4-byte words, reads of 4.
    W4R4,
    /// 8-byte words, reads of 32.
    W8R32,
    /// 16-byte words.
    W16,
    /// 32-byte words (STM32H7), reads of 32.
    W32R32,
    /// 64-byte words, reads of 4, pages of 1,024 bytes.
    W64R4,
}

/// The policy.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum PolicySeed {
    /// Every operation is on flash when it returns.
    WriteThrough,
    /// Changes reach flash on `close` or when this many (modulo 7) keys are waiting.
    WriteBack(u8),
}

/// A value for a key of the key's class.
#[derive(Arbitrary, Debug, Clone)]
pub enum ValueSeed {
    /// An integer.
    Int(i16),
    /// Decimal text.
    Decimal(i16),
    /// Bytes (up to 8).
    Bytes(Vec<u8>),
}

/// A timeout.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum TimeoutSeed {
    /// Never expires.
    Never,
    /// 1 to 40 seconds.
    Secs(u8),
    /// Expired at once.
    Zero,
    /// The default (300 s).
    Default,
}

impl TimeoutSeed {
    fn get(self) -> Timeout {
        match self {
            TimeoutSeed::Never => Timeout::Never,
            TimeoutSeed::Secs(s) => Timeout::Secs(1 + i64::from(s % 40)),
            TimeoutSeed::Zero => Timeout::Secs(0),
            TimeoutSeed::Default => Timeout::Default,
        }
    }
}

/// One step.
#[derive(Arbitrary, Debug, Clone)]
pub enum Op {
    /// `set` (`set_raw` for raw keys).
    Set(u8, bool, ValueSeed, TimeoutSeed),
    /// `add` (`add_raw` for raw keys).
    Add(u8, bool, ValueSeed, TimeoutSeed),
    /// `delete`.
    Delete(u8, bool),
    /// `incr`.
    Incr(u8, bool, i8),
    /// `touch`.
    Touch(u8, bool, TimeoutSeed),
    /// `get` (`get_raw` for raw keys).
    Get(u8, bool),
    /// `incr_version` from the version to the other one.
    IncrVersion(u8, bool),
    /// `clear`.
    Clear,
    /// `close` (a flush).
    Close,
    /// Moves the clock by this many milliseconds.
    Advance(u16),
    /// Cuts the power after this many more flash events (bytes written, erases).
    Cut(u16),
    /// Reboots without `close`.
    Reboot,
}

const N: usize = 40;
const K: usize = 24;
const V: usize = 16;
const RATE: u32 = 1000;

/// A key: 6 names of each class, 2 versions.
fn key(n: u8, v2: bool) -> (String, i32, bool) {
    let raw = n % 12 >= 6;
    let name = format!("{}{}", if raw { 'r' } else { 'i' }, n % 6);
    (name, if v2 { 2 } else { 1 }, raw)
}

fn value(raw: bool, seed: &ValueSeed) -> Value {
    match (raw, seed) {
        (false, ValueSeed::Int(i) | ValueSeed::Decimal(i)) => Value::Int(i64::from(*i)),
        (false, ValueSeed::Bytes(b)) => Value::Int(b.len() as i64),
        (true, ValueSeed::Int(i) | ValueSeed::Decimal(i)) => Value::Raw(i.to_string().into_bytes()),
        (true, ValueSeed::Bytes(b)) => Value::Raw(b.iter().copied().take(8).collect()),
    }
}

/// The stored bytes and kind for a model value.
fn encoded(v: &Value) -> (Vec<u8>, Kind) {
    match v {
        Value::Int(i) => (i.to_le_bytes()[..v.encoded_len()].to_vec(), Kind::Int),
        Value::Raw(b) => (b.clone(), Kind::Bytes),
        other => unreachable!("{other:?}"),
    }
}

/// Live contents, sorted by made key: made key, bytes, kind, expiry.
type Contents = Vec<(Vec<u8>, Vec<u8>, Kind, u64)>;

fn model_contents(m: &Model, now: u64) -> Contents {
    let mut m = m.clone();
    m.now = now;
    let mut out: Contents = m
        .live_entries()
        .into_iter()
        .map(|(k, v, e)| {
            let (b, kind) = encoded(&v);
            (k, b, kind, e.unwrap_or(NEVER))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[derive(Debug, PartialEq, Eq)]
enum Out {
    Unit(Result<(), Error>),
    Bool(Result<bool, Error>),
    Int(Result<i64, Error>),
    Version(Result<i32, Error>),
    Value(Result<Option<Value>, Error>),
}

type Fe = FlashError<MockError>;

/// The engine's error as the model's; `None` for a power cut. Any other flash error fails.
fn plain(e: Error<Fe>) -> Option<Error> {
    Some(match e {
        Error::Backend(FlashError::Flash(MockError::PowerOff)) => return None,
        Error::Key(k) => Error::Key(k),
        Error::ValueTooLarge => Error::ValueTooLarge,
        Error::Serialize => Error::Serialize,
        Error::WrongType => Error::WrongType,
        Error::NotFound => Error::NotFound,
        Error::BufferTooSmall => Error::BufferTooSmall,
        Error::NotInteger => Error::NotInteger,
        Error::Overflow => Error::Overflow,
        other => panic!("unexpected error {other:?}"),
    })
}

/// Maps an engine answer; `None` when the power went off during the call.
fn answer<T>(r: Result<T, Error<Fe>>) -> Option<Result<T, Error>> {
    match r {
        Ok(v) => Some(Ok(v)),
        Err(e) => plain(e).map(Err),
    }
}

/// Runs one case.
pub fn run(input: &Input) {
    let policy = match input.policy {
        PolicySeed::WriteThrough => Policy::WriteThrough,
        PolicySeed::WriteBack(d) => Policy::WriteBack {
            max_dirty: u16::from(d % 7),
        },
    };
    let ops = &input.ops;
    match input.geometry {
        Geometry::W1 => run_with::<512, 1, 1>(policy, ops),
        Geometry::W2R4 => run_with::<512, 2, 4>(policy, ops),
        Geometry::W4R64 => run_with::<512, 4, 64>(policy, ops),
        Geometry::W4R4 => run_with::<512, 4, 4>(policy, ops),
        Geometry::W8R32 => run_with::<512, 8, 32>(policy, ops),
        Geometry::W16 => run_with::<512, 16, 1>(policy, ops),
        Geometry::W32R32 => run_with::<512, 32, 32>(policy, ops),
        Geometry::W64R4 => run_with::<1024, 64, 4>(policy, ops),
    }
}

type Flash<const PS: usize, const WS: usize, const RS: usize> = MockFlash<8, PS, WS, RS>;
type Back<'f, const PS: usize, const WS: usize, const RS: usize> =
    Persistent<&'f mut Flash<PS, WS, RS>, N, K, V>;

fn engine_contents<const PS: usize, const WS: usize, const RS: usize>(
    p: &Back<'_, PS, WS, RS>,
    now: u64,
) -> Contents {
    let mut out = Vec::new();
    p.table().for_each_lru(|k, v, kind, e| {
        if e > now {
            out.push((k.to_vec(), v.to_vec(), kind, e));
        }
    });
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn run_with<const PS: usize, const WS: usize, const RS: usize>(policy: Policy, ops: &[Op]) {
    let write_back = policy != Policy::WriteThrough;
    let mut flash = Flash::<PS, WS, RS>::new();
    let fresh = || Model::new(RATE, K, V, N, 3);
    // The state on flash, the state in RAM before the call being made, and (after a cut)
    // the state had the interrupted call completed.
    let mut acked = fresh();
    let mut pending: Option<(Model, Model)> = None;
    let mut t_floor = 0u64;
    let mut t_ceiling = 0u64;
    let mut ops = ops.iter().peekable();
    let mut last_round = false;
    loop {
        flash.power_on();
        let clock = ManualClock::new(RATE);
        let p: Back<'_, PS, WS, RS> =
            Persistent::open(&mut flash, 0..(8 * PS as u32), Table::new(), policy).expect("open");
        let mut cache = p.into_cache(&clock, Config::new());
        let t = cache.now();
        assert!(
            t >= t_floor && t <= t_ceiling,
            "time {t} after reopen outside {t_floor}..={t_ceiling}"
        );
        let found = engine_contents(cache.backend(), t);
        let mut candidates = vec![acked.clone()];
        if let Some((before, after)) = pending.take() {
            if write_back {
                candidates.push(before);
            }
            candidates.push(after);
        }
        let Some(recovered) = candidates
            .into_iter()
            .find(|m| model_contents(m, t) == found)
        else {
            panic!(
                "recovered {found:?}\nacknowledged {:?}",
                model_contents(&acked, t)
            );
        };
        acked = recovered;
        acked.now = t;
        t_floor = t;
        if last_round {
            return;
        }
        let mut current = acked.clone();
        let mut commits = cache.backend().commits();
        loop {
            let Some(op) = ops.next() else {
                // Done: close with the power on, and check the final state once more.
                cache.backend_mut().flash_mut().power_on();
                // `close` records the cache time, the clock's after any last advance.
                let now = cache.now();
                t_ceiling = t_ceiling.max(now);
                cache.close().expect("final close");
                t_floor = t_floor.max(now);
                acked = current;
                last_round = true;
                break;
            };
            let now = cache.now();
            t_ceiling = t_ceiling.max(now);
            current.now = now;
            let mut after = current.clone();
            let m = &mut after;
            let c = &mut cache;
            let got = match op {
                Op::Advance(ms) => {
                    clock.advance(u64::from(*ms));
                    continue;
                }
                Op::Cut(n) => {
                    c.backend_mut().flash_mut().cut_after(u64::from(*n));
                    continue;
                }
                Op::Reboot => {
                    pending = None;
                    break;
                }
                Op::Set(n, v2, x, t) => {
                    let (name, ver, raw) = key(*n, *v2);
                    let k = Key::new(&name).version(ver);
                    let x = value(raw, x);
                    let want = Out::Unit(m.set(name.as_bytes(), Some(ver), x.clone(), t.get()));
                    let got = match x {
                        Value::Int(i) => answer(c.set(k, &i, t.get())),
                        Value::Raw(b) => answer(c.set_raw(k, &b, t.get())),
                        _ => unreachable!(),
                    };
                    got.map(|g| (Out::Unit(g), want))
                }
                Op::Add(n, v2, x, t) => {
                    let (name, ver, raw) = key(*n, *v2);
                    let k = Key::new(&name).version(ver);
                    let x = value(raw, x);
                    let want = Out::Bool(m.add(name.as_bytes(), Some(ver), x.clone(), t.get()));
                    let got = match x {
                        Value::Int(i) => answer(c.add(k, &i, t.get())),
                        Value::Raw(b) => answer(c.add_raw(k, &b, t.get())),
                        _ => unreachable!(),
                    };
                    got.map(|g| (Out::Bool(g), want))
                }
                Op::Delete(n, v2) => {
                    let (name, ver, _) = key(*n, *v2);
                    let want = Out::Bool(m.delete(name.as_bytes(), Some(ver)));
                    answer(c.delete(Key::new(&name).version(ver))).map(|g| (Out::Bool(g), want))
                }
                Op::Incr(n, v2, d) => {
                    let (name, ver, _) = key(*n, *v2);
                    let d = i64::from(*d);
                    let want = Out::Int(m.incr(name.as_bytes(), Some(ver), d));
                    answer(c.incr(Key::new(&name).version(ver), d)).map(|g| (Out::Int(g), want))
                }
                Op::Touch(n, v2, t) => {
                    let (name, ver, _) = key(*n, *v2);
                    let want = Out::Bool(m.touch(name.as_bytes(), Some(ver), t.get()));
                    answer(c.touch(Key::new(&name).version(ver), t.get()))
                        .map(|g| (Out::Bool(g), want))
                }
                Op::Get(n, v2) => {
                    let (name, ver, raw) = key(*n, *v2);
                    let k = Key::new(&name).version(ver);
                    let want = Out::Value(m.get(name.as_bytes(), Some(ver)));
                    let got = if raw {
                        let mut buf = [0u8; V];
                        answer(c.get_raw(k, &mut buf))
                            .map(|r| r.map(|o| o.map(|n| Value::Raw(buf[..n].to_vec()))))
                    } else {
                        answer(c.get::<i64>(k)).map(|r| r.map(|o| o.map(Value::Int)))
                    };
                    got.map(|g| (Out::Value(g), want))
                }
                Op::IncrVersion(n, v2) => {
                    let (name, ver, _) = key(*n, *v2);
                    let d = if ver == 1 { 1 } else { -1 };
                    let want = Out::Version(m.incr_version(name.as_bytes(), Some(ver), d));
                    answer(c.incr_version(Key::new(&name).version(ver), d))
                        .map(|g| (Out::Version(g), want))
                }
                Op::Clear => {
                    m.clear();
                    answer(c.clear()).map(|g| (Out::Unit(g), Out::Unit(Ok(()))))
                }
                Op::Close => answer(c.close()).map(|g| (Out::Unit(g), Out::Unit(Ok(())))),
            };
            let Some((got, want)) = got else {
                // The power went off during the call.
                pending = Some((current, after));
                break;
            };
            assert_eq!(got, want, "answer to {op:?}");
            assert_eq!(
                engine_contents(cache.backend(), now),
                model_contents(&after, now),
                "contents after {op:?}"
            );
            let c = cache.backend().commits();
            if c != commits {
                // A commit during the call: of the call itself, or (write-back) of the
                // earlier changes only, when the call's own changes are still waiting.
                acked = if cache.backend().dirty() == 0 {
                    after.clone()
                } else {
                    current.clone()
                };
                // `clear` and `close` records bear the latest time the backend saw.
                if !matches!(op, Op::Clear | Op::Close) {
                    t_floor = t_floor.max(now);
                }
                commits = c;
            } else if !write_back {
                acked = after.clone();
            }
            current = after;
        }
    }
}
