//! Property tests: random sequences of every cache operation, with clock advances, applied to
//! a real memory cache (the fixed `Table`, and the host's `HeapTable` with a budget large
//! enough that only its entry limit culls) and to the reference model
//! (`tickcache::model::Model`). Every answer
//! is compared, and after every operation so are the entry count and the live contents
//! (made key, value, expiry and recency order). The key pool, the operations and both
//! sides' runs are in `model_ops` (shared with `flash_model_props.rs`).
//!
//! Runs 256 cases per configuration by default; set `PROPTEST_CASES` to change that.

use proptest::prelude::*;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use tickcache::model::{Model, Value};

use tickcache::hash::DefaultHashBuilder;
use tickcache::heap::{HeapTable, Limits};
use tickcache::{Backend, Cache, Kind, ManualClock, Table};

mod model_ops;
use model_ops::{
    cache_config, config, decode_entry, engine_op, model_for, model_op, op, pool, setup, sweep_ops,
    Op, Out, Setup,
};

// ---------------------------------------------------------------------------------------
// Running both sides
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

impl<'c, B: Lru, const K: usize> Harness<'c, B, K> {
    /// `table` holds values of up to `value_cap` bytes and culls at `max` entries.
    fn new(clock: &'c ManualClock, s: &Setup, table: B, value_cap: usize, max: usize) -> Self {
        let cache = Cache::new(clock, table, cache_config(s));
        let model = model_for(s, clock_rate(clock), K, value_cap, max);
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
        if let Op::Advance(t) = op {
            model_ops::advance(self.clock, self.cache.now(), *t);
        }
        engine_op(&mut self.cache, &self.names, op)
            .expect("a memory cache neither fails nor asks to settle")
    }

    fn model(&mut self, op: &Op) -> Out {
        let now = self.cache.now();
        model_op(&mut self.model, &self.names, now, op)
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
        for op in sweep_ops() {
            let k = match op {
                Op::HasKey(k, _) | Op::Get(k, _) => k,
                _ => unreachable!("the sweep only reads"),
            };
            prop_assert_eq!(
                self.engine(&op),
                self.model(&op),
                "{:?} of {:?}",
                op,
                self.name(k)
            );
        }
        prop_assert_eq!(self.cache.len(), self.model.len());
        Ok(())
    }
}

fn clock_rate(clock: &ManualClock) -> u32 {
    tickcache::Clock::ticks_per_second(clock)
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
