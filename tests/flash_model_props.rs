//! Property tests of the persistent backends against the reference model
//! (`tickcache::model::Model`): the random operation sequences of `model_props.rs` (every
//! Django operation, versions, timeouts, clock advances; `model_ops`) run on both front ends
//! (blocking `Persistent` through a `Cache`, `AsyncPersistent` through `AsyncSharedCache`
//! with each flash call yielding once; `flash_front`), under write-through and write-back,
//! on a 6 x 128 B mock flash (about half the cases compact: the log wraps and pages are
//! erased), with a table that culls (`MAX_ENTRIES` and `CULL_FREQUENCY` drawn per case).
//!
//! Every answer is compared, and after every operation the entry count and the live
//! contents in recency order. In the middle of each case and at its end the cache is
//! reopened from the flash, and the reopened contents must equal the model's live entries;
//! the model then takes the reopened table as its contents (after a reboot, recency is the
//! log's replay order, not the order of earlier reads). Under write-through the reopen comes
//! after `close` or without it (drawn per case), and the cache's time resumes from the flash
//! (the model's clock is set to it). Under write-back the reopen always follows `close`:
//! without it the flash holds the last flush, and when a flush happened inside an operation
//! (the list of changed keys full) is not visible to the caller, so no model state names it;
//! power cuts under write-back are checked against the last flush in `flash_powercut.rs`.
//!
//! The flash is still large enough that the log never drops live entries for room (8
//! entries of at most 24 + 16 bytes beside 5 usable pages), so the model's culling is the
//! only one: every step checks that no entry was dropped for room (`evictions`). Two
//! cases used to: an insert culling more entries than the write-back list holds, whose
//! room-making copied the victims' records, and a write-back flush whose replaced records
//! were kept until entries had to go.
//!
//! One documented difference is allowed: through `AsyncSharedCache::with`, `delete_many`
//! run again after storage work counts only the entries its last run removed (see
//! `AsyncBackend`), so on the async front end its count may be lower than the model's
//! (the contents are still compared).
//!
//! Left out: `set_many` through one closure on the async front end (see `Case::step`), and the last ticks of
//! time: advances are capped at 2^40 ticks, because at cache time u64::MAX - 1 an entry
//! stored already expired is not held as the model and the memory table hold it (the
//! count differs by one; minimal case: rate 1, `MAX_ENTRIES` 1, `CULL_FREQUENCY` 0, time
//! u64::MAX - 1, `set` with a 1 s timeout, then `get_or_set` of another key).
//!
//! Runs 128 cases per property by default; set `PROPTEST_CASES` to change that.

use proptest::prelude::*;
use proptest::sample::select;
use tickcache::flash::{MockFlash, Policy};
use tickcache::model::{Model, Value};
use tickcache::{ManualClock, Table, NEVER};

mod flash_front;
mod model_ops;
use flash_front::{Front, Kind};
use model_ops::{
    cache_config, decode_entry, engine_op, model_for, model_op, op, pool, setup, sweep_ops, Op,
    Out, Setup,
};

const N: usize = 8;
const K: usize = 24;
const V: usize = 16;
const PAGES: usize = 6;
const PAGE: usize = 128;
type Flash = MockFlash<PAGES, PAGE, 4, 4>;
type Cache<'c, 'f> = Front<'c, 'f, PAGES, PAGE, 4, 4, N, K, V>;

/// Made key, value, expiry (`None` = never).
type Entry = (Vec<u8>, Value, Option<u64>);

/// Every entry the engine holds, least recent first, expired ones included.
fn held(front: &mut Cache<'_, '_>) -> Vec<Entry> {
    let mut out = Vec::new();
    front.visit(|made, bytes, kind, expiry| {
        let value = decode_entry(made, bytes, kind);
        out.push((made.to_vec(), value, (expiry != NEVER).then_some(expiry)));
    });
    out
}

fn live(entries: Vec<Entry>, now: u64) -> Vec<Entry> {
    entries
        .into_iter()
        .filter(|(_, _, e)| e.is_none_or(|e| e > now))
        .collect()
}

/// One case on one front end under one policy.
struct Case<'a> {
    kind: Kind,
    policy: Policy,
    s: &'a Setup,
    ops: &'a [Op],
    /// Operations before the reopen in the middle.
    reopen_at: usize,
    /// Write-through: `close` before the middle and the final reopen.
    close: [bool; 2],
}

impl Case<'_> {
    fn open<'c, 'f>(
        &self,
        flash: &'f mut Flash,
        clock: &'c ManualClock,
        max: usize,
    ) -> Result<Cache<'c, 'f>, TestCaseError> {
        let table = Table::try_with_culling(max, self.s.freq).expect("max is in 1..=N");
        let range = 0..(PAGES * PAGE) as u32;
        Front::open_with(
            self.kind,
            flash,
            range,
            table,
            self.policy,
            clock,
            cache_config(self.s),
        )
        .map_err(|e| TestCaseError::fail(format!("open: {e:?}")))
    }

    /// After an open: the reopened live contents are the model's; the model takes the
    /// reopened table (its recency order and the expired entries it holds) and its time.
    fn reopened(
        &self,
        front: &mut Cache<'_, '_>,
        model: &mut Model,
        when: &str,
    ) -> Result<(), TestCaseError> {
        let now = front.now();
        model.now = now;
        let all = held(front);
        let mut got = live(all.clone(), now);
        let mut want = model.live_entries();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        want.sort_by(|a, b| a.0.cmp(&b.0));
        prop_assert_eq!(
            got,
            want,
            "{:?} {:?}: contents reopened {}",
            self.kind,
            self.policy,
            when
        );
        model.restore(all);
        Ok(())
    }

    /// One operation on both sides, then the count and the contents.
    fn step(
        &self,
        front: &mut Cache<'_, '_>,
        clock: &ManualClock,
        model: &mut Model,
        names: &[String],
        step: usize,
        op: &Op,
    ) -> Result<(), TestCaseError> {
        if self.kind == Kind::Async && matches!(op, Op::SetMany(..)) {
            // Not run on the async front end: every call here is one closure through
            // `AsyncSharedCache::with`, and a closure over `Cache::set_many` with more new
            // keys than `MAX_ENTRIES` runs again from its first item after each culling
            // insert's storage work, for ever (e.g. three keys with `MAX_ENTRIES` 1 or 2).
            // `AsyncSharedCache::set_many` sets item by item and completes
            // (tests/flash_async.rs).
            return Ok(());
        }
        if let Op::Advance(t) = op {
            // Time stays far from u64::MAX (see the module documentation).
            model_ops::advance(clock, front.now(), (*t).min(1 << 40));
        }
        let engine = call!(*front, |c| engine_op(c, names, op))
            .map_err(|e| TestCaseError::fail(format!("step {step} ({op:?}): {e:?}")))?;
        // The premise of the comparison: no entry was dropped for room.
        prop_assert_eq!(
            front.evictions(),
            0,
            "{:?} {:?}: entries dropped for room at step {} ({:?})",
            self.kind,
            self.policy,
            step,
            op
        );
        let now = front.now();
        let want = model_op(model, names, now, op);
        let allowed = match (&engine, &want) {
            // A run of `delete_many` again after storage work counts its last run only.
            (Out::Count(Ok(got)), Out::Count(Ok(want))) => {
                self.kind == Kind::Async && matches!(op, Op::DeleteMany(_)) && got <= want
            }
            _ => false,
        };
        if !allowed {
            prop_assert_eq!(
                &engine,
                &want,
                "{:?} {:?}: answer to step {} ({:?})",
                self.kind,
                self.policy,
                step,
                op
            );
        }
        prop_assert_eq!(front.len(), model.len(), "entry count after step {}", step);
        prop_assert_eq!(
            live(held(front), now),
            model.live_entries(),
            "{:?} {:?}: contents after step {} ({:?})",
            self.kind,
            self.policy,
            step,
            op
        );
        Ok(())
    }

    fn run(&self) -> Result<(), TestCaseError> {
        let mut flash = Flash::new();
        let max = self.s.max.clamp(1, N);
        let mut model = model_for(self.s, self.s.rate, K, V, max);
        let names = pool(K);
        let halves = [&self.ops[..self.reopen_at], &self.ops[self.reopen_at..]];
        let mut at = 0;
        for (half, ops) in halves.into_iter().enumerate() {
            // Each open starts a new clock (a reboot): the cache's time resumes from flash.
            let clock = ManualClock::new(self.s.rate);
            let mut front = self.open(&mut flash, &clock, max)?;
            self.reopened(&mut front, &mut model, "in the middle")?;
            for op in ops {
                self.step(&mut front, &clock, &mut model, &names, at, op)?;
                at += 1;
            }
            if half == 1 {
                for op in sweep_ops() {
                    self.step(&mut front, &clock, &mut model, &names, at, &op)?;
                }
            }
            if self.close[half] || matches!(self.policy, Policy::WriteBack { .. }) {
                self.step(&mut front, &clock, &mut model, &names, at, &Op::Close)?;
            }
        }
        let clock = ManualClock::new(self.s.rate);
        let mut front = self.open(&mut flash, &clock, max)?;
        self.reopened(&mut front, &mut model, "at the end")
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 128,
        ..model_ops::config()
    }
}

/// A case's sequence and where it reopens.
fn case() -> impl Strategy<Value = (Setup, Vec<Op>, usize, [bool; 2])> {
    (setup(N), prop::collection::vec(op(), 1..300)).prop_flat_map(|(s, ops)| {
        let n = ops.len();
        (Just(s), Just(ops), 0..=n, [any::<bool>(), any::<bool>()])
    })
}

fn both(
    policy: Policy,
    (s, ops, reopen_at, close): (Setup, Vec<Op>, usize, [bool; 2]),
) -> Result<(), TestCaseError> {
    for kind in flash_front::BOTH {
        Case {
            kind,
            policy,
            s: &s,
            ops: &ops,
            reopen_at,
            close,
        }
        .run()?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Write-through: every answer and the contents after each operation and each reopen
    /// (with or without `close`) are the model's, on both front ends.
    #[test]
    fn write_through_matches_model(c in case()) {
        both(Policy::WriteThrough, c)?;
    }

    /// Write-back (flushing at 1, 3 or 8 changed keys): every answer and the contents after
    /// each operation and each reopen after `close` are the model's, on both front ends.
    #[test]
    fn write_back_matches_model(c in case(), max_dirty in select(vec![1u16, 3, 8])) {
        both(Policy::WriteBack { max_dirty }, c)?;
    }
}

/// A write-back flush whose list is reordered (tombstones first) must be placed in the
/// order it is written: placed in list order, this flush needed one page less than its
/// writes took, filled the spare page, and the reopen lost the whole batch. Found by
/// `write_back_matches_model` (`PROPTEST_RNG_SEED=5`), reduced step by step.
#[test]
fn write_back_flush_placed_as_written() {
    use tickcache::Timeout;
    let s = Setup {
        rate: 10,
        max: 4,
        freq: 4,
        prefix: "",
        version: 2,
        timeout: Timeout::Millis(1500),
        strict: true,
    };
    let ops = vec![
        Op::Clear,
        Op::Set(
            13,
            None,
            Value::Raw(vec![
                45, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57,
            ]),
            Timeout::Millis(1281),
        ),
        Op::Add(
            15,
            None,
            Value::Raw(vec![
                45, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57, 57,
            ]),
            Timeout::Millis(3101),
        ),
        Op::Add(13, Some(1), Value::Raw(vec![53, 49, 50]), Timeout::Default),
        Op::Set(
            14,
            None,
            Value::Raw(vec![177, 64, 156, 243, 55, 233, 118, 50, 187]),
            Timeout::Default,
        ),
        Op::Set(
            7,
            None,
            Value::Text(String::from("i清n清o清u")),
            Timeout::Ticks(4238),
        ),
        Op::Advance(9223372036854775807),
        Op::Add(
            6,
            None,
            Value::Text(String::from("清b清")),
            Timeout::Millis(9223372036854775807),
        ),
        Op::Set(12, Some(0), Value::OptU8(Some(131)), Timeout::Millis(2830)),
        Op::SetMany(
            vec![
                (5, None, Value::Text(String::from("清"))),
                (
                    5,
                    Some(-2147483648),
                    Value::Text(String::from("清rdp清z清清清清wo")),
                ),
            ],
            Timeout::Millis(9223372036854775807),
        ),
        Op::Set(1, None, Value::Int(9223372036854775807), Timeout::Default),
        Op::Set(
            15,
            Some(1),
            Value::Raw(vec![
                7, 201, 194, 157, 21, 220, 63, 201, 121, 91, 162, 35, 210, 156,
            ]),
            Timeout::Default,
        ),
        Op::Close,
        Op::Advance(1862),
        Op::SetMany(
            vec![
                (2, Some(2), Value::Int(9223372036854775807)),
                (1, Some(-2147483648), Value::Int(298)),
                (2, Some(1), Value::Int(28)),
            ],
            Timeout::Default,
        ),
        Op::GetOrSet(7, Some(-1), Value::Text(String::from("")), Timeout::Default),
        Op::Set(
            2,
            Some(1),
            Value::Int(-9223372036854775808),
            Timeout::Default,
        ),
        Op::IncrVersion(2, Some(2), 2),
        Op::Advance(9223372036854775807),
        Op::Set(2, None, Value::Int(-7820842712229196585), Timeout::Default),
        Op::GetOrSet(11, Some(10), Value::OptU8(None), Timeout::Default),
    ];
    both(
        Policy::WriteBack { max_dirty: 8 },
        (s, ops, 21, [false, false]),
    )
    .unwrap();
}
