//! Batch calls as a Django user writes them: `version=` for a whole batch, any iterator of
//! keys, raw bytes, results in a map (heapless without a heap, `HashMap` on the host), and
//! every key validated before anything changes.

use std::collections::{BTreeMap, HashMap};

use tickcache::{Config, Error, Key, KeyError, ManualClock, MemCache, Table, Timeout};

type Mem<'c> = MemCache<&'c ManualClock, 16, 32, 16>;

fn mem(clock: &ManualClock) -> Mem<'_> {
    MemCache::new(clock, Table::new(), Config::new())
}

fn v(key: &str, version: i32) -> Key<'_> {
    Key::new(key).version(version)
}

/// Django's `test_cache_versioning_get_set_many`, third block, with `version=` on the calls.
#[test]
fn batch_version_is_every_keys_version() {
    let clock = ManualClock::new(1000);
    let mut cache = mem(&clock);
    let d = Timeout::Default;
    // cache.set_many({'ford2': 37, 'arthur2': 42}, version=2)
    let failed = cache
        .at_version(2)
        .set_many([("ford2", &37), ("arthur2", &42)], d, |_, _| {})
        .unwrap();
    assert_eq!(failed, 0);
    let keys = ["ford2", "arthur2"];
    assert!(cache.get_many_map::<i32, _>(keys).unwrap().is_empty());
    assert!(cache
        .at_version(1)
        .get_many_map::<i32, _>(keys)
        .unwrap()
        .is_empty());
    let got = cache.at_version(2).get_many_map::<i32, _>(keys).unwrap();
    assert_eq!(got, [("ford2".into(), 37), ("arthur2".into(), 42)].into());
    // A key given with its own version keeps it.
    let mut seen = Vec::new();
    cache
        .at_version(3)
        .get_many([v("ford2", 2), Key::new("ford2")], |k, n: i32| {
            seen.push((k, n))
        })
        .unwrap();
    assert_eq!(seen, [(v("ford2", 2), 37)]);
    // cache.delete_many([...], version=2)
    assert_eq!(cache.delete_many(keys).unwrap(), 0);
    assert_eq!(cache.at_version(2).delete_many(keys).unwrap(), 2);
    assert!(cache.is_empty());
}

#[test]
fn batches_take_any_iterator_of_key_likes() {
    let clock = ManualClock::new(1000);
    let mut cache = mem(&clock);
    let owned: Vec<String> = (0..4).map(|i| format!("k{i}")).collect();
    let values = [10u32, 11, 12, 13];
    // Pairs from two iterators zipped, keys as &String.
    let failed = cache
        .set_many(owned.iter().zip(values.iter()), 60, |_, _| {})
        .unwrap();
    assert_eq!(failed, 0);
    // Keys from a slice of &str, a Vec<String>, a map's keys, a filtered iterator.
    let slice: &[&str] = &["k0", "k1"];
    assert_eq!(cache.get_many_map::<u32, _>(slice).unwrap().len(), 2);
    assert_eq!(cache.get_many_map::<u32, _>(&owned).unwrap().len(), 4);
    let by_name: HashMap<&str, u8> = [("k2", 0), ("k9", 0)].into();
    assert_eq!(
        cache.get_many_map::<u32, _>(by_name.keys()).unwrap().len(),
        1
    );
    let odd = owned.iter().filter(|k| k.ends_with(['1', '3']));
    assert_eq!(cache.delete_many(odd).unwrap(), 2);
    // A HashMap of values stores from its pairs, keys as &String or &&str.
    let posts: HashMap<String, u32> = [("p1".into(), 1), ("p2".into(), 2)].into();
    assert_eq!(
        cache.set_many_map(&posts, 60).unwrap(),
        Vec::<String>::new()
    );
    let tags: HashMap<&str, u32> = [("t1", 1)].into();
    assert_eq!(cache.set_many(&tags, 60, |_, _| {}).unwrap(), 0);
    assert_eq!(cache.get::<u32>("t1").unwrap(), Some(1));
}

#[test]
fn get_many_into_a_heapless_map_without_a_heap() {
    let clock = ManualClock::new(1000);
    let mut cache = mem(&clock);
    for (k, n) in [("a", 1u8), ("b", 2), ("c", 3)] {
        cache.set(k, &n, 60).unwrap();
    }
    let mut got = heapless::LinearMap::<&str, u8, 4>::new();
    let hits = cache.get_many_into(["a", "x", "c", "a"], &mut got).unwrap();
    assert_eq!(
        hits, 3,
        "a duplicate is read twice and collapses in the map"
    );
    assert_eq!(got.len(), 2);
    assert_eq!((got.get("a"), got.get("c")), (Some(&1), Some(&3)));

    // Keyed by Key, so one name at two versions is two entries.
    cache.set(v("a", 2), &20u8, 60).unwrap();
    let mut by_key = heapless::index_map::FnvIndexMap::<Key<'_>, u8, 4>::new();
    cache
        .get_many_into([Key::new("a"), v("a", 2)], &mut by_key)
        .unwrap();
    assert_eq!(by_key.len(), 2);
    assert_eq!(by_key.get(&v("a", 2)), Some(&20));

    // A map too small for the hits: BufferTooSmall, with the hits that fitted.
    let mut small = heapless::LinearMap::<&str, u8, 2>::new();
    assert_eq!(
        cache.get_many_into(["a", "b", "c"], &mut small),
        Err(Error::BufferTooSmall)
    );
    assert_eq!(small.len(), 2);
}

#[test]
fn get_many_into_std_maps_keeps_the_key_type() {
    let clock = ManualClock::new(1000);
    let mut cache = mem(&clock);
    cache.set("a", "alpha", 60).unwrap();
    cache.set("b", "beta", 60).unwrap();
    let names: Vec<String> = vec!["a".into(), "b".into(), "z".into()];
    let mut by_ref: HashMap<&String, String> = HashMap::new();
    cache.get_many_into(&names, &mut by_ref).unwrap();
    assert_eq!(by_ref[&names[1]], "beta");
    let mut sorted: BTreeMap<&str, String> = BTreeMap::new();
    cache
        .get_many_into(["b", "a", "nope"], &mut sorted)
        .unwrap();
    assert_eq!(sorted.keys().copied().collect::<Vec<_>>(), ["a", "b"]);
}

#[test]
fn set_many_raw_stores_bytes_and_reports_failures() {
    let clock = ManualClock::new(1000);
    let mut cache = mem(&clock);
    let big = [7u8; 17]; // over the 16-byte value capacity
    let items: [(&str, &[u8]); 3] = [("a", b"alpha"), ("big", &big), ("n", b"41")];
    let mut failed = Vec::new();
    let n = cache
        .set_many_raw(items, 60, |k, e| failed.push((k, e)))
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(failed, [(Key::new("big"), Error::ValueTooLarge)]);
    let mut buf = [0u8; 16];
    let len = cache.get_raw("a", &mut buf).unwrap().unwrap();
    assert_eq!(&buf[..len], b"alpha");
    assert_eq!(
        cache.incr("n", 1).unwrap(),
        42,
        "raw decimals count, as in memcached"
    );
    // With the batch version.
    cache
        .at_version(5)
        .set_many_raw([("a", &b"five"[..])], 60, |_, _| {})
        .unwrap();
    let len = cache.get_raw(v("a", 5), &mut buf).unwrap().unwrap();
    assert_eq!(&buf[..len], b"five");
}

#[test]
fn one_invalid_key_changes_nothing_in_any_batch() {
    let clock = ManualClock::new(1000);
    let mut cache = mem(&clock);
    cache.set("a", &1u8, 60).unwrap();
    cache.set("b", &2u8, 60).unwrap();
    let bad = Err(Error::Key(KeyError::BadChar));
    assert_eq!(cache.delete_many(["a", "b c", "b"]), bad);
    assert_eq!(
        cache.set_many([("a", &9u8), ("b c", &9)], 60, |_, _| {}),
        bad
    );
    let items: [(&str, &[u8]); 2] = [("b", b"x"), ("\n", b"y")];
    assert_eq!(cache.set_many_raw(items, 60, |_, _| {}), bad);
    let mut map = heapless::LinearMap::<&str, u8, 4>::new();
    assert_eq!(cache.get_many_into(["a", "a b"], &mut map), bad);
    assert!(map.is_empty());
    // The batch version counts toward the made key: version 10^9 pushes this one past 32
    // bytes of key capacity, so the whole batch is refused.
    let long = "k".repeat(19); // ":1:" + 19 = 22 bytes; ":1000000000:" + 19 = 31
    let longer = "k".repeat(21); // 24 bytes; 33 at version 10^9
    cache.set(long.as_str(), &3u8, 60).unwrap();
    assert_eq!(
        cache
            .at_version(1_000_000_000)
            .delete_many([long.as_str(), longer.as_str()]),
        Err(Error::Key(KeyError::OverCapacity))
    );
    assert_eq!(cache.get::<u8>("a").unwrap(), Some(1));
    assert_eq!(cache.get::<u8>("b").unwrap(), Some(2));
    assert_eq!(cache.get::<u8>(long.as_str()).unwrap(), Some(3));
}
