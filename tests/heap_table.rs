//! The heap table's byte budget, which the model does not know: eviction in recency order,
//! the budget never exceeded, the accounting exact, and oversized values refused without
//! leaving a stale value. (Its Django semantics are checked against the model in
//! model_props.rs.)

use tickcache::heap::{entry_cost, HeapLimitError, HeapTable, Limits, ENTRY_OVERHEAD};
use tickcache::memcached::{Command, HeapMemcached, Memcached, Now, Parser, Step, Store};
use tickcache::{Backend, Cache, Config, Error, Kind, ManualClock, Put, NEVER};

fn put(t: &mut HeapTable, key: &str, len: usize, now: u64) -> Result<bool, Error> {
    t.put(key.as_bytes(), Put::Set, NEVER, now, |buf| {
        let dst = buf.get_mut(..len).ok_or(Error::ValueTooLarge)?;
        dst.fill(key.as_bytes()[0]);
        Ok((len, Kind::Bytes))
    })
}

fn keys_lru(t: &HeapTable) -> Vec<String> {
    let mut out = Vec::new();
    t.for_each_lru(|k, _, _, _| out.push(String::from_utf8(k.to_vec()).unwrap()));
    out
}

/// The sum of the entries' costs, from the entries themselves.
fn counted(t: &HeapTable) -> usize {
    let mut sum = 0;
    t.for_each_lru(|k, v, _, _| sum += entry_cost(k.len(), v.len()));
    sum
}

fn has(t: &mut HeapTable, key: &str) -> bool {
    t.has_key(key.as_bytes(), 0).unwrap()
}

#[test]
fn limits_are_checked() {
    let small = Limits::new(100).value_max(100);
    assert_eq!(HeapTable::new(small).err(), Some(HeapLimitError::Budget));
    let fits = Limits::new(entry_cost(250, 1000)).value_max(1000);
    assert!(HeapTable::new(fits).is_ok());
    let no_entries = Limits::new(1 << 20).culling(0, 3);
    assert_eq!(
        HeapTable::new(no_entries).err(),
        Some(HeapLimitError::MaxEntries)
    );
    assert_eq!(
        HeapTable::new(Limits::new(1 << 20).key_max(0)).err(),
        Some(HeapLimitError::KeyMax)
    );
}

/// Room for exactly three 100-byte entries with one-byte keys: the fourth evicts the least
/// recent one, and a `get` changes which one that is.
#[test]
fn the_budget_evicts_least_recent_first() {
    let one = entry_cost(1, 100);
    let mut t = HeapTable::new(Limits::new(3 * one + one / 2).key_max(1).value_max(100)).unwrap();
    for k in ["a", "b", "c"] {
        assert_eq!(put(&mut t, k, 100, 0), Ok(true));
    }
    assert_eq!(t.bytes(), 3 * one);
    assert_eq!(t.evictions(), 0);
    t.get(b"a", 0, |_, _| ()).unwrap();
    assert_eq!(put(&mut t, "d", 100, 0), Ok(true));
    assert_eq!(keys_lru(&t), ["c", "a", "d"]);
    assert_eq!(t.evictions(), 1);
    // has_key and touch do not change recency: "c" goes next.
    assert!(has(&mut t, "c"));
    assert!(t.touch(b"c", NEVER, 0).unwrap());
    assert_eq!(put(&mut t, "e", 100, 0), Ok(true));
    assert_eq!(keys_lru(&t), ["a", "d", "e"]);
    assert_eq!(t.bytes(), 3 * one);
    assert_eq!(t.evictions(), 2);
}

/// An overwrite that grows evicts other entries, never the one being written; one that
/// shrinks frees its bytes.
#[test]
fn a_growing_overwrite_evicts_others() {
    let budget = entry_cost(1, 100) * 3;
    let mut t = HeapTable::new(Limits::new(budget).key_max(1).value_max(250)).unwrap();
    for k in ["a", "b", "c"] {
        put(&mut t, k, 100, 0).unwrap();
    }
    // "a" is the least recent; growing it to 200 bytes needs 100 more: "b" goes.
    put(&mut t, "a", 200, 0).unwrap();
    assert_eq!(keys_lru(&t), ["c", "a"]);
    assert_eq!(t.bytes(), entry_cost(1, 100) + entry_cost(1, 200));
    put(&mut t, "a", 1, 0).unwrap();
    assert_eq!(t.bytes(), entry_cost(1, 100) + entry_cost(1, 1));
    assert_eq!(t.bytes(), counted(&t));
    t.get(b"a", 0, |v, _| assert_eq!(v, b"a")).unwrap();
}

/// Expired entries are reclaimed by the same eviction (and are not counted as evictions).
#[test]
fn expired_entries_make_room_without_counting_as_evictions() {
    let one = entry_cost(1, 10);
    let mut t = HeapTable::new(Limits::new(2 * one).key_max(1).value_max(10)).unwrap();
    t.put(b"x", Put::Set, 5, 0, |b| {
        b[..10].fill(1);
        Ok((10, Kind::Bytes))
    })
    .unwrap();
    put(&mut t, "y", 10, 0).unwrap();
    put(&mut t, "z", 10, 10).unwrap();
    assert_eq!(keys_lru(&t), ["y", "z"]);
    assert_eq!(t.evictions(), 0);
}

/// A value over the limit is refused with `ValueTooLarge`: a new key is not stored and
/// nothing is evicted for it; an existing key is removed (no stale value) and its bytes
/// are given back.
#[test]
fn an_oversized_value_is_refused_and_leaves_no_stale_value() {
    let mut t = HeapTable::new(Limits::new(1 << 20).key_max(8).value_max(1000)).unwrap();
    put(&mut t, "old", 10, 0).unwrap();
    put(&mut t, "other", 10, 0).unwrap();
    let before = t.bytes();
    assert_eq!(put(&mut t, "new", 1001, 0), Err(Error::ValueTooLarge));
    assert!(!has(&mut t, "new"));
    assert_eq!(t.bytes(), before);
    assert_eq!(put(&mut t, "old", 1001, 0), Err(Error::ValueTooLarge));
    assert!(!has(&mut t, "old"));
    assert!(has(&mut t, "other"));
    assert_eq!(t.bytes(), entry_cost(5, 10));
    assert_eq!(t.len(), 1);
    // A fill that claims more than the buffer it was given is refused the same way.
    let r = t.put(b"other", Put::Set, NEVER, 0, |_| Ok((1001, Kind::Bytes)));
    assert_eq!(r, Err(Error::ValueTooLarge));
    assert!(t.is_empty());
    assert_eq!(t.bytes(), 0);
    // A key over the key limit.
    assert_eq!(
        put(&mut t, "ninebytes", 1, 0),
        Err(Error::Key(tickcache::KeyError::OverCapacity))
    );

    // The same through the cache API.
    let clock = ManualClock::new(1000);
    let table = HeapTable::new(Limits::new(1 << 20).value_max(1000)).unwrap();
    let mut cache: Cache<_, _, 250> = Cache::new(&clock, table, Config::new());
    cache.set_raw("session", &[1u8; 1000], 60).unwrap();
    assert_eq!(
        cache.set_raw("session", &[2u8; 1001], 60),
        Err(Error::ValueTooLarge)
    );
    assert!(!cache.has_key("session").unwrap());
    assert_eq!(cache.backend().bytes(), 0);
}

/// Thousands of writes of sizes from 0 to 3,000 bytes, overwrites, increments, renames and
/// deletes under a 20 KiB budget (a small xorshift drives them): after every step the
/// budget holds and the accounting equals the sum over the entries.
#[test]
fn the_budget_is_never_exceeded() {
    let budget = 20 << 10;
    let mut t = HeapTable::new(Limits::new(budget).key_max(16).value_max(3000)).unwrap();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut most = 0;
    for step in 0..20_000u64 {
        let r = next();
        let key = format!("k{}", r % 64);
        match (r >> 8) % 8 {
            0..=3 => {
                let len = ((r >> 16) % 3001) as usize;
                put(&mut t, &key, len, step).unwrap();
            }
            4 => {
                t.put(key.as_bytes(), Put::Set, NEVER, step, |b| {
                    b[..3].copy_from_slice(b"999");
                    Ok((3, Kind::Bytes))
                })
                .unwrap();
                let _ = t.incr(key.as_bytes(), 1, step);
            }
            5 => {
                let to = format!("k{}", (r >> 20) % 64);
                t.rekey(key.as_bytes(), to.as_bytes(), NEVER, step).unwrap();
            }
            6 => {
                t.delete(key.as_bytes(), step).unwrap();
            }
            _ => {
                // Expires at the next step.
                t.put(key.as_bytes(), Put::Set, step + 1, step, |b| {
                    b[..500].fill(0);
                    Ok((500, Kind::Bytes))
                })
                .unwrap();
            }
        }
        assert!(t.bytes() <= budget, "step {step}: {} bytes", t.bytes());
        assert_eq!(t.bytes(), counted(&t), "step {step}");
        let mut n = 0;
        t.for_each_lru(|_, _, _, _| n += 1);
        assert_eq!(n, t.len(), "step {step}");
        most = most.max(t.bytes());
    }
    assert!(t.evictions() > 1000, "{}", t.evictions());
    assert!(most > budget - entry_cost(16, 3000), "{most}");
    t.clear().unwrap();
    assert_eq!((t.len(), t.bytes()), (0, 0));
}

/// An entry limit culls as Django does (the model tests check the details); the budget
/// applies on top.
#[test]
fn entry_limit_and_budget_together() {
    let mut t = HeapTable::new(
        Limits::new(1 << 20)
            .key_max(8)
            .value_max(100)
            .culling(30, 3),
    )
    .unwrap();
    for i in 1..=49 {
        put(&mut t, &format!("cull{i}"), 1, 0).unwrap();
    }
    // Django's cull test: 29 left with frequency 3 ...
    assert_eq!(t.len(), 29);
    assert_eq!(t.bytes(), counted(&t));
    assert_eq!(t.evictions(), 20);
    // ... and 19 with frequency 0, which clears the table at the 31st insert.
    let limits = Limits::new(1 << 20).key_max(8).value_max(100);
    let mut t = HeapTable::new(limits.culling(30, 0)).unwrap();
    for i in 1..=49 {
        put(&mut t, &format!("cull{i}"), 1, 0).unwrap();
    }
    assert_eq!(t.len(), 19);
    assert_eq!(t.bytes(), counted(&t));
    assert_eq!(t.evictions(), 30);
    assert_eq!(ENTRY_OVERHEAD, 80);
}

/// The memcached engine on the heap table: a 1 MiB item, append past the fixed table's
/// sizes, incr on a long item, and the item limit.
#[test]
fn memcached_engine_on_the_heap_table() {
    let item_max = 1 << 20;
    let limits = Limits::new(8 << 20).value_max(item_max + tickcache::memcached::HEADER);
    let mut m: HeapMemcached =
        Memcached::with_scratch(HeapTable::new(limits).unwrap(), item_max, 0, Vec::new());
    assert_eq!(m.item_max(), item_max);
    let now = Now {
        ticks: 0,
        ticks_per_second: 1000,
        unix: 1_700_000_000,
    };
    let run = |m: &mut HeapMemcached, input: &[u8]| -> Vec<u8> {
        let mut parser = Parser::new(item_max, 8192);
        let mut out = Vec::new();
        let mut at = 0;
        while at < input.len() {
            match parser.next(&input[at..]) {
                Step::Command { cmd, used } => {
                    m.execute(&cmd, &now, &mut out);
                    at += used;
                    if matches!(cmd, Command::Quit) {
                        break;
                    }
                }
                Step::Skip(n) => at += n,
                Step::Need => break,
                Step::Close { reply } => {
                    out.extend_from_slice(reply);
                    break;
                }
            }
        }
        out
    };
    let big = vec![b'x'; item_max];
    let mut set = format!("set big 7 0 {}\r\n", big.len()).into_bytes();
    set.extend_from_slice(&big);
    set.extend_from_slice(b"\r\n");
    assert_eq!(run(&mut m, &set), b"STORED\r\n");
    let got = run(&mut m, b"get big\r\n");
    let head = format!("VALUE big 7 {}\r\n", item_max);
    assert!(got.starts_with(head.as_bytes()));
    assert_eq!(got.len(), head.len() + item_max + 2 + 5);
    assert!(m.store().usage().unwrap().bytes >= item_max as u64);

    // One byte over the limit: refused, and the old value is gone.
    let mut over = format!("set big 0 0 {}\r\n", item_max + 1).into_bytes();
    over.extend_from_slice(&vec![b'y'; item_max + 1]);
    over.extend_from_slice(b"\r\n");
    assert_eq!(
        run(&mut m, &over),
        b"SERVER_ERROR object too large for cache\r\n"
    );
    assert_eq!(run(&mut m, b"get big\r\n"), b"END\r\n");
    assert_eq!(m.store().usage().unwrap().bytes, 0);

    // Append grows an item past anything a fixed slot holds.
    let mut set = format!("set a 0 0 {}\r\n", 40_000).into_bytes();
    set.extend_from_slice(&vec![b'1'; 40_000]);
    set.extend_from_slice(b"\r\nappend a 0 0 3\r\nabc\r\n");
    assert_eq!(run(&mut m, &set), b"STORED\r\nSTORED\r\n");
    let got = run(&mut m, b"get a\r\n");
    assert!(got.starts_with(b"VALUE a 0 40003\r\n"));
    assert!(got.ends_with(b"abc\r\nEND\r\n"));
    // incr keeps memcached's in-place padding on a long number.
    assert_eq!(
        run(
            &mut m,
            b"set n 0 0 30\r\n000000000000000000000000000041\r\nincr n 1\r\n"
        ),
        b"STORED\r\n42\r\n"
    );
    let stats = String::from_utf8(run(&mut m, b"stats\r\n")).unwrap();
    assert!(stats.contains("STAT bytes "), "{stats}");
    assert!(stats.contains("STAT evictions 0\r\n"), "{stats}");
}

/// One step of `put_parts_is_put`: a key of a few, a mode, a value's length and where it is
/// cut into parts, an expiry, and whether a reply holds the old value while it is replaced.
#[derive(Clone, Debug)]
struct PartsOp {
    key: u8,
    add: bool,
    len: usize,
    cuts: (usize, usize),
    expires: bool,
    shared: bool,
}

fn parts_op() -> impl proptest::strategy::Strategy<Value = PartsOp> {
    use proptest::prelude::*;
    (
        0u8..6,
        any::<bool>(),
        prop_oneof![0usize..40, 900usize..1100],
        (0usize..1100, 0usize..1100),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(key, add, len, cuts, expires, shared)| PartsOp {
            key,
            add,
            len,
            cuts,
            expires,
            shared,
        })
}

/// Every entry, least recent first: key, value, kind, expiry.
type Entries = Vec<(Vec<u8>, Vec<u8>, Kind, u64)>;

fn entries(t: &HeapTable) -> Entries {
    let mut out = Vec::new();
    t.for_each_lru(|k, v, kind, e| out.push((k.to_vec(), v.to_vec(), kind, e)));
    out
}

proptest::proptest! {
    /// `Store::put_parts` (the value written straight from its parts, the memcached engine's
    /// path) leaves the table exactly as `Backend::put` of the joined value does: the same
    /// answers (stored, not stored, too large with the old value removed), entries, recency,
    /// bytes and evictions, under a budget that evicts. A value shared with a reply keeps
    /// its bytes when its entry is overwritten in place.
    #[test]
    fn put_parts_is_put(ops in proptest::collection::vec(parts_op(), 1..60)) {
        let limits = Limits::new(4 * entry_cost(2, 1000)).key_max(2).value_max(1000);
        let mut joined = HeapTable::new(limits).unwrap();
        let mut parted = HeapTable::new(limits).unwrap();
        for (step, op) in ops.iter().enumerate() {
            let now = step as u64 * 10;
            let key = [b'k', b'0' + op.key];
            let value: Vec<u8> = (0..op.len).map(|i| (i as u8) ^ (step as u8)).collect();
            let (a, b) = (op.cuts.0.min(op.len), op.cuts.1.min(op.len));
            let (a, b) = (a.min(b), a.max(b));
            let mode = if op.add { Put::Add } else { Put::Set };
            let expiry = if op.expires { now + 15 } else { NEVER };
            let held = op.shared.then(|| parted.peek_shared(&key, now)).flatten();
            let before = held.as_ref().map(|v| v.bytes().to_vec());
            let want = joined.put(&key, mode, expiry, now, |dst| {
                let dst = dst.get_mut(..value.len()).ok_or(Error::ValueTooLarge)?;
                dst.copy_from_slice(&value);
                Ok((value.len(), Kind::Item))
            });
            let got = Store::put_parts(
                &mut parted,
                &key,
                mode,
                expiry,
                now,
                &[&value[..a], &value[a..b], &value[b..]],
                Kind::Item,
            );
            proptest::prop_assert_eq!(got, want, "step {}", step);
            proptest::prop_assert_eq!(entries(&parted), entries(&joined), "step {}", step);
            proptest::prop_assert_eq!(parted.bytes(), joined.bytes());
            proptest::prop_assert_eq!(parted.evictions(), joined.evictions());
            if let (Some(v), Some(b)) = (held, before) {
                proptest::prop_assert_eq!(v.bytes(), &b[..]);
            }
        }
    }
}

/// A key longer than the table takes is refused by `put_parts` as by `put`, before the
/// value's size is looked at.
#[test]
fn put_parts_refuses_a_long_key_first() {
    let mut t = HeapTable::new(Limits::new(1 << 20).key_max(4).value_max(10)).unwrap();
    let big = [0u8; 11];
    assert_eq!(
        t.put_parts(b"12345", Put::Set, NEVER, 0, &[&big], Kind::Item),
        Err(Error::Key(tickcache::KeyError::OverCapacity))
    );
    assert_eq!(
        t.put_parts(b"1234", Put::Set, NEVER, 0, &[&big], Kind::Item),
        Err(Error::ValueTooLarge)
    );
    assert_eq!(
        t.put_parts(
            b"1234",
            Put::Set,
            NEVER,
            0,
            &[&big[..4], &big[4..10]],
            Kind::Item
        ),
        Ok(true)
    );
    assert_eq!(t.peek(b"1234", 0), Some((&big[..10], Kind::Item, NEVER)));
}
