//! The `persist` target: a workload on a cache persisted to a mock NOR flash, with power cuts
//! and reboots where the input says, checked against the reference model.
//!
//! Every input runs on both front ends, one after the other, each from a fresh flash and
//! with the same checks: first the blocking `Persistent` through a `Cache`, then the async
//! `AsyncPersistent` through an `AsyncSharedCache` (a no-op raw mutex, driven by
//! `embassy_futures::block_on`, every flash call yielding once). Each cache call is written
//! once and runs on the async front end inside `AsyncSharedCache::with`, the path of every
//! async Django method: lock, settle, the call, the call again after `Error::Settle`,
//! settle. The async run adds what only that path does: the async driver of the shared core
//! (each flash request awaited, the future pending once per flash call), calls that change
//! RAM only while the settle after them writes (a power cut lands in that settle), and the
//! re-run: a call that needs storage work first (the write-back list full) answers
//! `Settle`, changes nothing, and runs again once the settle has done that work, where the
//! blocking backend does the work inline and runs the operation again. No difference is allowed
//! between the two: the answers, the contents and the recovered state must be the model's
//! on each. (`AsyncBackend` allows one, a re-run `delete_many` or `set_many` counting or
//! reporting only its last run; the target uses neither.) [`run_on`] runs one front end.
//!
//! While the power is on, every answer must be the model's and the live contents (made key,
//! stored bytes, kind, expiry) must equal the model's. After a cut (or a reboot without
//! `close`) the flash is reopened and the recovered contents must be exactly the
//! acknowledged state (nothing acknowledged lost) or that state with the interrupted
//! operation applied in full (all or nothing). Under write-back, acknowledged means
//! committed to flash (a flush), and a flush of earlier changes made at the start of the
//! interrupted operation also counts. Cache time after a reboot must not run backwards past
//! what was committed, nor beyond the latest time seen. A failed check names the front end.
//!
//! Keys are `i0`..`i5` (integers) and `r0`..`r5` (raw bytes) at versions 1 and 2: 24 made
//! keys in a table of 40 on a flash that holds them all, so neither culling nor eviction
//! applies and recency (write order after a reboot) never matters.

use arbitrary::{Arbitrary, Unstructured};
use embassy_futures::block_on;
use tickcache::flash::{AsyncPersistent, FlashError, MockError, MockFlash, Persistent, Policy};
use tickcache::model::{Model, Value};
use tickcache::mutex::NoopRawMutex;
use tickcache::{
    AsyncSharedCache, Cache, Config, Error, Key, Kind, ManualClock, Table, Timeout, NEVER,
};

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

/// Which front end a run drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Front {
    /// `Persistent` over the blocking `NorFlash`, through a `Cache`.
    Blocking,
    /// `AsyncPersistent` over the async `NorFlash` (each flash call yielding once), through
    /// an `AsyncSharedCache` driven by `embassy_futures::block_on`.
    Async,
}

/// The front ends every input runs on, in this order.
pub const FRONTS: [Front; 2] = [Front::Blocking, Front::Async];

/// Runs one case: on each front end in turn, each from a fresh flash.
pub fn run(input: &Input) {
    for front in FRONTS {
        run_on(input, front);
    }
}

/// Runs one case on one front end, from a fresh flash.
pub fn run_on(input: &Input, front: Front) {
    let policy = match input.policy {
        PolicySeed::WriteThrough => Policy::WriteThrough,
        PolicySeed::WriteBack(d) => Policy::WriteBack {
            max_dirty: u16::from(d % 7),
        },
    };
    let ops = &input.ops;
    match input.geometry {
        Geometry::W1 => run_with::<512, 1, 1>(front, policy, ops),
        Geometry::W2R4 => run_with::<512, 2, 4>(front, policy, ops),
        Geometry::W4R64 => run_with::<512, 4, 64>(front, policy, ops),
        Geometry::W4R4 => run_with::<512, 4, 4>(front, policy, ops),
        Geometry::W8R32 => run_with::<512, 8, 32>(front, policy, ops),
        Geometry::W16 => run_with::<512, 16, 1>(front, policy, ops),
        Geometry::W32R32 => run_with::<512, 32, 32>(front, policy, ops),
        Geometry::W64R4 => run_with::<1024, 64, 4>(front, policy, ops),
    }
}

type Flash<const PS: usize, const WS: usize, const RS: usize> = MockFlash<8, PS, WS, RS>;

/// A cache over one of the front ends, on the borrowed mock flash.
enum Engine<'c, 'f, const PS: usize, const WS: usize, const RS: usize> {
    Blocking(Cache<&'c ManualClock, Persistent<&'f mut Flash<PS, WS, RS>, N, K, V>, K>),
    Async(
        AsyncSharedCache<
            &'c ManualClock,
            AsyncPersistent<&'f mut Flash<PS, WS, RS>, N, K, V>,
            K,
            NoopRawMutex,
        >,
    ),
}

/// Runs one cache call, written once as a closure body over `&mut Cache<..>`, on either
/// front end: directly on the blocking one, inside `AsyncSharedCache::with` on the async
/// one (the path of every async Django method: lock, settle, the call, the call again
/// after `Error::Settle`, settle).
macro_rules! call {
    ($engine:expr, |$c:ident| $body:expr) => {
        match &mut $engine {
            Engine::Blocking($c) => $body,
            Engine::Async(shared) => block_on(shared.with(|$c| $body)),
        }
    };
}

/// The same expression on the backend of either front end.
macro_rules! backend {
    ($engine:expr, |$b:ident| $body:expr) => {
        match &mut $engine {
            Engine::Blocking(c) => {
                let $b = c.backend_mut();
                $body
            }
            Engine::Async(shared) => {
                let $b = shared.get_mut().backend_mut();
                $body
            }
        }
    };
}

impl<'c, 'f, const PS: usize, const WS: usize, const RS: usize> Engine<'c, 'f, PS, WS, RS> {
    /// Opens the whole flash into a new table, and a cache whose time continues from it.
    fn open(
        front: Front,
        flash: &'f mut Flash<PS, WS, RS>,
        policy: Policy,
        clock: &'c ManualClock,
    ) -> Self {
        let range = 0..(8 * PS as u32);
        match front {
            Front::Blocking => {
                let p = Persistent::open(flash, range, Table::new(), policy).expect("open");
                Engine::Blocking(p.into_cache(clock, Config::new()))
            }
            Front::Async => {
                flash.yield_each_call(true);
                let p = block_on(AsyncPersistent::open(flash, range, Table::new(), policy))
                    .expect("open");
                Engine::Async(AsyncSharedCache::with_raw_mutex(
                    p.into_cache(clock, Config::new()),
                ))
            }
        }
    }

    /// The cache's time now.
    fn now(&mut self) -> u64 {
        match self {
            Engine::Blocking(c) => c.now(),
            Engine::Async(shared) => shared.get_mut().now(),
        }
    }

    /// Batches committed since open.
    fn commits(&mut self) -> u64 {
        backend!(*self, |b| b.commits())
    }

    /// Changed keys waiting for a flush.
    fn dirty(&mut self) -> usize {
        backend!(*self, |b| b.dirty())
    }

    /// The mock flash.
    fn flash_mut(&mut self) -> &mut Flash<PS, WS, RS> {
        backend!(*self, |b| &mut **b.flash_mut())
    }

    /// Live contents at `now`, sorted by made key.
    fn contents(&mut self, now: u64) -> Contents {
        let mut out = Vec::new();
        backend!(*self, |b| b.table().for_each_lru(|k, v, kind, e| {
            if e > now {
                out.push((k.to_vec(), v.to_vec(), kind, e));
            }
        }));
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

fn run_with<const PS: usize, const WS: usize, const RS: usize>(
    front: Front,
    policy: Policy,
    ops: &[Op],
) {
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
        let mut e = Engine::open(front, &mut flash, policy, &clock);
        let t = e.now();
        assert!(
            t >= t_floor && t <= t_ceiling,
            "{front:?}: time {t} after reopen outside {t_floor}..={t_ceiling}"
        );
        let found = e.contents(t);
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
                "{front:?}: recovered {found:?}\nacknowledged {:?}",
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
        let mut commits = e.commits();
        loop {
            let Some(op) = ops.next() else {
                // Done: close with the power on, and check the final state once more.
                e.flash_mut().power_on();
                // `close` records the cache time, the clock's after any last advance.
                let now = e.now();
                t_ceiling = t_ceiling.max(now);
                call!(e, |c| c.close()).expect("final close");
                t_floor = t_floor.max(now);
                acked = current;
                last_round = true;
                break;
            };
            let now = e.now();
            t_ceiling = t_ceiling.max(now);
            current.now = now;
            let mut after = current.clone();
            let m = &mut after;
            let got = match op {
                Op::Advance(ms) => {
                    clock.advance(u64::from(*ms));
                    continue;
                }
                Op::Cut(n) => {
                    e.flash_mut().cut_after(u64::from(*n));
                    continue;
                }
                Op::Reboot => {
                    pending = None;
                    break;
                }
                Op::Set(n, v2, x, t) => {
                    let (name, ver, raw) = key(*n, *v2);
                    let k = Key::new(&name).version(ver);
                    let t = t.get();
                    let x = value(raw, x);
                    let want = Out::Unit(m.set(name.as_bytes(), Some(ver), x.clone(), t));
                    let got = match x {
                        Value::Int(i) => answer(call!(e, |c| c.set(k, &i, t))),
                        Value::Raw(b) => answer(call!(e, |c| c.set_raw(k, &b, t))),
                        _ => unreachable!(),
                    };
                    got.map(|g| (Out::Unit(g), want))
                }
                Op::Add(n, v2, x, t) => {
                    let (name, ver, raw) = key(*n, *v2);
                    let k = Key::new(&name).version(ver);
                    let t = t.get();
                    let x = value(raw, x);
                    let want = Out::Bool(m.add(name.as_bytes(), Some(ver), x.clone(), t));
                    let got = match x {
                        Value::Int(i) => answer(call!(e, |c| c.add(k, &i, t))),
                        Value::Raw(b) => answer(call!(e, |c| c.add_raw(k, &b, t))),
                        _ => unreachable!(),
                    };
                    got.map(|g| (Out::Bool(g), want))
                }
                Op::Delete(n, v2) => {
                    let (name, ver, _) = key(*n, *v2);
                    let k = Key::new(&name).version(ver);
                    let want = Out::Bool(m.delete(name.as_bytes(), Some(ver)));
                    answer(call!(e, |c| c.delete(k))).map(|g| (Out::Bool(g), want))
                }
                Op::Incr(n, v2, d) => {
                    let (name, ver, _) = key(*n, *v2);
                    let k = Key::new(&name).version(ver);
                    let d = i64::from(*d);
                    let want = Out::Int(m.incr(name.as_bytes(), Some(ver), d));
                    answer(call!(e, |c| c.incr(k, d))).map(|g| (Out::Int(g), want))
                }
                Op::Touch(n, v2, t) => {
                    let (name, ver, _) = key(*n, *v2);
                    let k = Key::new(&name).version(ver);
                    let t = t.get();
                    let want = Out::Bool(m.touch(name.as_bytes(), Some(ver), t));
                    answer(call!(e, |c| c.touch(k, t))).map(|g| (Out::Bool(g), want))
                }
                Op::Get(n, v2) => {
                    let (name, ver, raw) = key(*n, *v2);
                    let k = Key::new(&name).version(ver);
                    let want = Out::Value(m.get(name.as_bytes(), Some(ver)));
                    let got = if raw {
                        let mut buf = [0u8; V];
                        answer(call!(e, |c| c.get_raw(k, &mut buf)))
                            .map(|r| r.map(|o| o.map(|n| Value::Raw(buf[..n].to_vec()))))
                    } else {
                        answer(call!(e, |c| c.get::<i64>(k))).map(|r| r.map(|o| o.map(Value::Int)))
                    };
                    got.map(|g| (Out::Value(g), want))
                }
                Op::IncrVersion(n, v2) => {
                    let (name, ver, _) = key(*n, *v2);
                    let k = Key::new(&name).version(ver);
                    let d = if ver == 1 { 1 } else { -1 };
                    let want = Out::Version(m.incr_version(name.as_bytes(), Some(ver), d));
                    answer(call!(e, |c| c.incr_version(k, d))).map(|g| (Out::Version(g), want))
                }
                Op::Clear => {
                    m.clear();
                    answer(call!(e, |c| c.clear())).map(|g| (Out::Unit(g), Out::Unit(Ok(()))))
                }
                Op::Close => {
                    answer(call!(e, |c| c.close())).map(|g| (Out::Unit(g), Out::Unit(Ok(()))))
                }
            };
            let Some((got, want)) = got else {
                // The power went off during the call.
                pending = Some((current, after));
                break;
            };
            assert_eq!(got, want, "{front:?}: answer to {op:?}");
            assert_eq!(
                e.contents(now),
                model_contents(&after, now),
                "{front:?}: contents after {op:?}"
            );
            let c = e.commits();
            if c != commits {
                // A commit during the call: of the call itself, or (write-back) of the
                // earlier changes only, when the call's own changes are still waiting.
                acked = if e.dirty() == 0 {
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
