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
//! The table culls as Django does: the input draws `MAX_ENTRIES` (1 to 24) and
//! `CULL_FREQUENCY` (0 to 5) ([`Culling`]), and the workload names 24 made keys, so an
//! insert past the limit culls under both policies: under write-through one batch (the
//! victims' tombstones and the put), under write-back either the tombstones joining the
//! list of changed keys or, when they do not fit it, one batch of the cull, the changed
//! keys it leaves and the put. Power cuts and reboots land anywhere in those: a cut is
//! armed a number of flash events ahead (bytes written, erases; mostly within the next
//! few writing calls) and stays armed across a reboot, so it can land in the open too
//! (the open then runs again with the power back).
//!
//! While the power is on, every answer must be the model's and the live contents (made key,
//! stored bytes, kind, expiry) must equal the model's in recency order (least recent first,
//! the order a cull takes them in). After each step no entry may have been dropped for room
//! (`evictions` stays 0: the flash, 8 pages, holds every entry the table can, so the model's
//! culling is the only one) and a page stays spare for compaction.
//!
//! After a cut (or a reboot without `close`) the flash is reopened and the recovered
//! contents, compared as a set, must be exactly the acknowledged state (nothing
//! acknowledged lost) or that state with the interrupted operation applied in full (all or
//! nothing). Under write-back, acknowledged means committed to flash (a flush), and a flush
//! of earlier changes made at the start of the interrupted operation also counts. One loss
//! is allowed, as FLASH.md documents it: when the interrupted operation is an insert that
//! culls, the room its batch makes does not copy the victims' records, so any of the
//! victims may be missing (a miss, never an older value); everything else must be as
//! above. Cache time after a reboot must not run backwards past what was committed, nor
//! beyond the latest time seen. Then the model takes the reopened table as its contents:
//! after a reboot recency is the order the log replays in (writes and flushes, not the
//! reads before the cut), which the model cannot know, so from there the engine's order is
//! the reference and the next culls must follow it. A failed check names the front end.
//!
//! Not checked, and why: the recovered recency order (above); which victims a cut insert
//! loses (whichever pages compaction erased before the cut); expired entries after a
//! reopen (the log need not keep them; only live contents are compared, and the model
//! takes whatever the table holds). [`reach`] counts what a run exercised (culls, cut
//! culling inserts, reopens that lost victims): `examples/persist_reach.rs` reports it
//! for a corpus.
//!
//! Keys are `i0`..`i5` (integers) and `r0`..`r5` (raw bytes) at versions 1 and 2: 24 made
//! keys in a table of 40 slots.

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

/// One fuzz case. Decoded ([`Arbitrary::arbitrary_take_rest`], what the target and the
/// regression tests use) as the geometry, the policy and the culling, then operations until
/// the bytes run out: no continuation byte between operations (a random byte string of
/// `n` bytes holds about `n / 8` of them, not one or two).
#[derive(Debug, Clone)]
pub struct Input {
    /// Flash word size.
    pub geometry: Geometry,
    /// When changes reach flash.
    pub policy: PolicySeed,
    /// The table's `MAX_ENTRIES` and `CULL_FREQUENCY`.
    pub culling: Culling,
    /// The workload, with cuts and reboots.
    pub ops: Vec<Op>,
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Input {
            geometry: u.arbitrary()?,
            policy: u.arbitrary()?,
            culling: u.arbitrary()?,
            ops: u.arbitrary()?,
        })
    }

    fn arbitrary_take_rest(mut u: Unstructured<'a>) -> arbitrary::Result<Self> {
        let (geometry, policy, culling) = (u.arbitrary()?, u.arbitrary()?, u.arbitrary()?);
        let mut ops = Vec::new();
        // Every operation takes at least one byte while any is left.
        while !u.is_empty() {
            ops.push(u.arbitrary()?);
        }
        Ok(Input {
            geometry,
            policy,
            culling,
            ops,
        })
    }
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

/// Django's culling for the table: `MAX_ENTRIES` 1 to 4 for `max` below 160 (a workload
/// between two `clear`s inserts a few keys, so most inputs cull), else 1 to 24 (every
/// limit below the 24 made keys culls once enough of them are held); `CULL_FREQUENCY` is
/// `freq` modulo 6 (0 clears the table at the limit, 1 empties it, 2 to 5 drop expired
/// entries first, then `len / CULL_FREQUENCY` least recent ones).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Culling {
    /// Picks `MAX_ENTRIES`: 1 + `max` modulo 4 below 160, else 1 + `max` modulo 24.
    pub max: u8,
    /// `CULL_FREQUENCY`, modulo 6.
    pub freq: u8,
}

impl Culling {
    /// `MAX_ENTRIES`: 1 to 4 for `max` below 160, else 1 to 24.
    pub fn max_entries(self) -> usize {
        let m = usize::from(self.max);
        1 + if m < 160 { m % 4 } else { m % KEYS }
    }

    /// `CULL_FREQUENCY`: 0 to 5.
    pub fn cull_frequency(self) -> u16 {
        u16::from(self.freq % 6)
    }
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
    /// Cuts the power after more flash events (bytes written, erases): `n` modulo 256 for
    /// `n` below 32,768 (within the next few writing calls), else modulo 4,096 (deep in a
    /// long flush or compaction). A cut not yet landed stays armed across a reboot.
    Cut(u16),
    /// Reboots without `close` (a cut still armed stays armed, and may land in the open).
    Reboot,
}

/// Table slots (at least `MAX_ENTRIES`).
const N: usize = 40;
/// Made keys the workload names: 6 names of each class, 2 versions.
const KEYS: usize = 24;
/// Key capacity in bytes.
const K: usize = 24;
/// Flash pages.
const PAGES: usize = 8;
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

/// Live contents, least recent first (or sorted by made key, see [`sorted`]): made key,
/// bytes, kind, expiry.
type Contents = Vec<(Vec<u8>, Vec<u8>, Kind, u64)>;

/// The model's live contents at `now`, least recent first.
fn model_contents(m: &Model, now: u64) -> Contents {
    let mut m = m.clone();
    m.now = now;
    m.live_entries()
        .into_iter()
        .map(|(k, v, e)| {
            let (b, kind) = encoded(&v);
            (k, b, kind, e.unwrap_or(NEVER))
        })
        .collect()
}

/// Contents as a set: sorted by made key.
fn sorted(mut c: Contents) -> Contents {
    c.sort_by(|a, b| a.0.cmp(&b.0));
    c
}

/// An entry the engine holds as the model's value: the made key's name says the class
/// (`:1:i0` an integer, `:1:r0` raw bytes).
fn decoded(made: &[u8], bytes: &[u8], kind: Kind) -> Value {
    let class = made
        .iter()
        .rposition(|&b| b == b':')
        .map(|i| made.get(i + 1));
    match (class, kind) {
        (Some(Some(b'i')), Kind::Int) => Value::Int(
            tickcache::model::stored_int(bytes).unwrap_or_else(|| panic!("integer {bytes:?}")),
        ),
        (Some(Some(b'r')), Kind::Bytes) => Value::Raw(bytes.to_vec()),
        other => panic!("entry {made:?} held as {other:?}"),
    }
}

/// Whether the recovered contents `found` (sorted) are `base` (sorted) with some of
/// `victims` missing: an insert's cull whose batch a power cut interrupted may lose its
/// victims (compaction for its batch does not copy them), never bring back anything else.
fn recovered_from(found: &Contents, base: &Contents, victims: &[Vec<u8>]) -> bool {
    let kept: Contents = base
        .iter()
        .filter(|x| !victims.contains(&x.0) || found.contains(x))
        .cloned()
        .collect();
    *found == kept
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

/// What a run exercised, for measuring the target's reach (see `examples/persist_reach.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reach {
    /// Inserts that culled (the model dropped entries to stay within `MAX_ENTRIES`).
    pub culls: u64,
    /// Culling inserts a power cut interrupted.
    pub cut_culls: u64,
    /// Reopens after a cut or a reboot whose recovered contents lacked some of the
    /// interrupted cull's victims.
    pub lost_victims: u64,
    /// Reopens after a cut or a reboot.
    pub reopens: u64,
    /// Calls a power cut interrupted.
    pub cuts: u64,
    /// Opens a power cut interrupted.
    pub cut_opens: u64,
}

impl core::ops::AddAssign for Reach {
    fn add_assign(&mut self, o: Reach) {
        self.culls += o.culls;
        self.cut_culls += o.cut_culls;
        self.lost_victims += o.lost_victims;
        self.reopens += o.reopens;
        self.cuts += o.cuts;
        self.cut_opens += o.cut_opens;
    }
}

/// Runs one case: on each front end in turn, each from a fresh flash.
pub fn run(input: &Input) {
    reach(input);
}

/// [`run`], returning what the runs exercised (summed over both front ends).
pub fn reach(input: &Input) -> Reach {
    let mut r = Reach::default();
    for front in FRONTS {
        r += run_on(input, front);
    }
    r
}

/// Runs one case on one front end, from a fresh flash.
pub fn run_on(input: &Input, front: Front) -> Reach {
    let policy = match input.policy {
        PolicySeed::WriteThrough => Policy::WriteThrough,
        PolicySeed::WriteBack(d) => Policy::WriteBack {
            max_dirty: u16::from(d % 7),
        },
    };
    let (ops, c) = (&input.ops, input.culling);
    match input.geometry {
        Geometry::W1 => run_with::<512, 1, 1>(front, policy, c, ops),
        Geometry::W2R4 => run_with::<512, 2, 4>(front, policy, c, ops),
        Geometry::W4R64 => run_with::<512, 4, 64>(front, policy, c, ops),
        Geometry::W4R4 => run_with::<512, 4, 4>(front, policy, c, ops),
        Geometry::W8R32 => run_with::<512, 8, 32>(front, policy, c, ops),
        Geometry::W16 => run_with::<512, 16, 1>(front, policy, c, ops),
        Geometry::W32R32 => run_with::<512, 32, 32>(front, policy, c, ops),
        Geometry::W64R4 => run_with::<1024, 64, 4>(front, policy, c, ops),
    }
}

type Flash<const PS: usize, const WS: usize, const RS: usize> = MockFlash<PAGES, PS, WS, RS>;

/// An opened backend; `None` when the power went off during the open. Any other error fails.
fn opened<P>(front: Front, r: Result<P, Fe>) -> Option<P> {
    match r {
        Ok(p) => Some(p),
        Err(FlashError::Flash(MockError::PowerOff)) => None,
        Err(e) => panic!("{front:?}: open: {e:?}"),
    }
}

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
    /// Opens the whole flash into a new table culling as `culling` says, and a cache whose
    /// time continues from it; `None` when the power goes off during the open (a cut
    /// armed before a reboot).
    fn open(
        front: Front,
        flash: &'f mut Flash<PS, WS, RS>,
        policy: Policy,
        culling: Culling,
        clock: &'c ManualClock,
    ) -> Option<Self> {
        let range = 0..(PAGES * PS) as u32;
        let table = Table::try_with_culling(culling.max_entries(), culling.cull_frequency())
            .expect("MAX_ENTRIES in 1..=N");
        Some(match front {
            Front::Blocking => {
                let p = opened(front, Persistent::open(flash, range, table, policy))?;
                Engine::Blocking(p.into_cache(clock, Config::new()))
            }
            Front::Async => {
                flash.yield_each_call(true);
                let p = opened(
                    front,
                    block_on(AsyncPersistent::open(flash, range, table, policy)),
                )?;
                Engine::Async(AsyncSharedCache::with_raw_mutex(
                    p.into_cache(clock, Config::new()),
                ))
            }
        })
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

    /// Entries dropped since open to make room on flash.
    fn evictions(&mut self) -> u32 {
        backend!(*self, |b| b.evictions())
    }

    /// Pages holding the log.
    fn pages_used(&mut self) -> u32 {
        backend!(*self, |b| b.pages_used())
    }

    /// Live contents at `now`, least recent first.
    fn contents(&mut self, now: u64) -> Contents {
        let mut out = Vec::new();
        backend!(*self, |b| b.table().for_each_lru(|k, v, kind, e| {
            if e > now {
                out.push((k.to_vec(), v.to_vec(), kind, e));
            }
        }));
        out
    }

    /// Every entry held, expired ones included, least recent first, as the model's
    /// entries (made key, value, expiry with `None` for never).
    fn held(&mut self) -> Vec<(Vec<u8>, Value, Option<u64>)> {
        let mut out = Vec::new();
        backend!(*self, |b| b.table().for_each_lru(|k, v, kind, e| {
            out.push((k.to_vec(), decoded(k, v, kind), (e != NEVER).then_some(e)));
        }));
        out
    }

    /// The checks of storage after a step: no entry was dropped for room (the model's
    /// culling is the only one), and a page is left spare for compaction.
    fn check_storage(&mut self, front: Front, what: &dyn core::fmt::Debug) {
        assert_eq!(
            self.evictions(),
            0,
            "{front:?}: entries dropped for room at {what:?}"
        );
        assert!(
            self.pages_used() < PAGES as u32,
            "{front:?}: no spare page after {what:?}"
        );
    }
}

/// A call a power cut interrupted: the state in RAM before it, the state had it completed,
/// and the made keys its cull dropped (an insert's; empty when it did not cull).
struct Interrupted {
    before: Model,
    after: Model,
    victims: Vec<Vec<u8>>,
}

/// Made keys `before` holds (expired ones included) and `after` does not, other than
/// `made`: what an insert of `made` culled.
fn culled(before: &Model, after: &Model, made: &[u8]) -> Vec<Vec<u8>> {
    let kept = after.entries();
    before
        .entries()
        .into_iter()
        .map(|(k, _, _)| k)
        .filter(|k| k != made && !kept.iter().any(|(j, _, _)| j == k))
        .collect()
}

fn run_with<const PS: usize, const WS: usize, const RS: usize>(
    front: Front,
    policy: Policy,
    culling: Culling,
    ops: &[Op],
) -> Reach {
    let write_back = policy != Policy::WriteThrough;
    let mut flash = Flash::<PS, WS, RS>::new();
    let (max, freq) = (culling.max_entries(), culling.cull_frequency());
    let fresh = || Model::new(RATE, K, V, max, usize::from(freq));
    let mut reach = Reach::default();
    // The state on flash, and (after a cut) the call it interrupted.
    let mut acked = fresh();
    let mut pending: Option<Interrupted> = None;
    let mut t_floor = 0u64;
    let mut t_ceiling = 0u64;
    let mut ops = ops.iter().peekable();
    let mut first = true;
    let mut last_round = false;
    loop {
        // The power comes back after a cut; a cut armed before a reboot stays armed, and
        // when it lands in the open, the power comes back and the open runs again.
        if !flash.is_powered() {
            flash.power_on();
        }
        let clock = ManualClock::new(RATE);
        let mut e = loop {
            match Engine::open(front, &mut flash, policy, culling, &clock) {
                Some(e) => break e,
                None => {
                    reach.cut_opens += 1;
                    flash.power_on();
                }
            }
        };
        e.check_storage(front, &"open");
        let t = e.now();
        assert!(
            t >= t_floor && t <= t_ceiling,
            "{front:?}: time {t} after reopen outside {t_floor}..={t_ceiling}"
        );
        // The recovered contents, as a set: recency after a reopen is the log's replay
        // order, not the model's.
        let found = sorted(e.contents(t));
        let mut candidates = vec![sorted(model_contents(&acked, t))];
        let mut victims = Vec::new();
        if let Some(i) = pending.take() {
            if write_back {
                candidates.push(sorted(model_contents(&i.before, t)));
            }
            candidates.push(sorted(model_contents(&i.after, t)));
            victims = i.victims;
        }
        if !candidates
            .iter()
            .any(|c| recovered_from(&found, c, &victims))
        {
            panic!(
                "{front:?}: recovered {found:?}\nacknowledged {:?}\nculled {victims:?}",
                candidates[0]
            );
        }
        if !candidates.contains(&found) {
            reach.lost_victims += 1;
        }
        if !first {
            reach.reopens += 1;
        }
        first = false;
        t_floor = t;
        if last_round {
            return reach;
        }
        // The model takes the reopened table as its contents: every entry held (expired
        // ones too, as they count towards `MAX_ENTRIES`) in the table's recency order.
        acked = fresh();
        acked.restore(e.held());
        acked.now = t;
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
                e.check_storage(front, &"the final close");
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
                    let events = if *n < 0x8000 { n % 256 } else { n % 4096 };
                    e.flash_mut().cut_after(u64::from(events));
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
            // What an insert culled (the model decides; the engine must agree).
            let victims = match op {
                Op::Set(n, v2, ..) | Op::Add(n, v2, ..) => {
                    let (name, ver, _) = key(*n, *v2);
                    let made = after.make_key(name.as_bytes(), Some(ver)).expect("key");
                    culled(&current, &after, &made)
                }
                _ => Vec::new(),
            };
            if !victims.is_empty() {
                reach.culls += 1;
            }
            let Some((got, want)) = got else {
                // The power went off during the call.
                assert_eq!(
                    e.evictions(),
                    0,
                    "{front:?}: entries dropped for room at {op:?}"
                );
                reach.cuts += 1;
                if !victims.is_empty() {
                    reach.cut_culls += 1;
                }
                pending = Some(Interrupted {
                    before: current,
                    after,
                    victims,
                });
                break;
            };
            assert_eq!(got, want, "{front:?}: answer to {op:?}");
            // While the power is on, the contents are the model's in recency order.
            assert_eq!(
                e.contents(now),
                model_contents(&after, now),
                "{front:?}: contents after {op:?}"
            );
            e.check_storage(front, op);
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
