//! Django's cache semantics for the memory table (locmem) and the dummy backend, in the
//! spirit of Django's own `BaseCacheTests`, with a `ManualClock` instead of sleeping.
//!
//! Where the crate documents a deliberate difference from Django (see "Where this differs
//! from Django" in the crate documentation), the tests assert the crate's behaviour and say so.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tickcache::backend::Backend;
use tickcache::key::KeyWriter;
use tickcache::{
    Cache, Caches, Config, Dummy, Error, Key, KeyError, KeyPolicy, Kind, ManualClock, MemCache,
    SharedCache, StdClock, Store, SyncStore, Table, Timeout, Wrap32,
};

/// A 1 kHz clock, the usual SysTick rate.
fn clock() -> ManualClock {
    ManualClock::new(1000)
}

type Mem<'c> = MemCache<&'c ManualClock, 64, 64, 64>;

fn mem(clock: &ManualClock) -> Mem<'_> {
    MemCache::new(clock, Table::new(), Config::new())
}

/// A memory cache with Django's `MAX_ENTRIES` / `CULL_FREQUENCY`.
fn culling(clock: &ManualClock, max: usize, freq: u16) -> Mem<'_> {
    MemCache::new(clock, Table::with_culling(max, freq), Config::new())
}

fn text(cache: &mut Mem<'_>, key: &str) -> Option<String> {
    cache.get::<String>(key).unwrap()
}

// ---------------------------------------------------------------------------------------
// Several caches over one store: Django's caches sharing a LOCATION (for prefix, version and
// key-function isolation tests), each a `Cache` over `&Store` with its own `Config`.

type SharedTable = Store<Table<32, 64, 32>>;
type Shared<'a> = Cache<&'a ManualClock, &'a SharedTable, 64>;

fn store() -> SharedTable {
    Store::new(Table::new())
}

fn on<'a>(clock: &'a ManualClock, table: &'a SharedTable, config: Config) -> Shared<'a> {
    Cache::new(clock, table, config)
}

fn v(key: &str, version: i32) -> Key<'_> {
    Key::new(key).version(version)
}

// ---------------------------------------------------------------------------------------
// Basic operations

#[test]
fn simple_set_and_get() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("key", "value", Timeout::Default).unwrap();
    assert_eq!(text(&mut cache, "key").as_deref(), Some("value"));
    cache.set("key", "other", Timeout::Default).unwrap();
    assert_eq!(text(&mut cache, "key").as_deref(), Some("other"));
}

#[test]
fn keys_that_differ_are_different_entries() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("key1", &1u32, 60).unwrap();
    cache.set("key_1", &2u32, 60).unwrap();
    assert_eq!(cache.get::<u32>("key1").unwrap(), Some(1));
    assert_eq!(cache.get::<u32>("key_1").unwrap(), Some(2));
    assert_eq!(cache.get::<u32>("key").unwrap(), None);
    assert_eq!(cache.get::<u32>("key11").unwrap(), None);
}

#[test]
fn stored_none_is_a_hit_not_a_miss() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache
        .set("key_default_none", &None::<u32>, Timeout::Default)
        .unwrap();
    // Django: get(key, default) returns the stored None, not the default.
    let got = cache.get::<Option<u32>>("key_default_none").unwrap();
    assert_eq!(got, Some(None));
    assert_eq!(got.unwrap_or(Some(7)), None);
    // A miss is the outer None, so the caller's default applies.
    let missing = cache.get::<Option<u32>>("missing").unwrap();
    assert_eq!(missing, None);
    assert_eq!(missing.unwrap_or(Some(7)), Some(7));
}

#[test]
fn add_stores_only_when_missing() {
    let clock = clock();
    let mut cache = mem(&clock);
    assert!(cache.add("addkey1", "value", Timeout::Default).unwrap());
    assert!(!cache.add("addkey1", "newvalue", Timeout::Default).unwrap());
    assert_eq!(text(&mut cache, "addkey1").as_deref(), Some("value"));
}

#[test]
fn non_existent_key_misses() {
    let clock = clock();
    let mut cache = mem(&clock);
    assert_eq!(cache.get::<String>("does_not_exist").unwrap(), None);
    let with_default = cache
        .get::<String>("does_not_exist")
        .unwrap()
        .unwrap_or_else(|| "bang!".to_string());
    assert_eq!(with_default, "bang!");
    assert_eq!(cache.len(), 0);
}

#[test]
fn get_many_returns_present_keys_only() {
    let clock = clock();
    let mut cache = mem(&clock);
    for (k, val) in [("a", "a"), ("b", "b"), ("c", "c"), ("d", "d")] {
        cache.set(k, val, Timeout::Default).unwrap();
    }
    let got: HashMap<String, String> = cache.get_many_map(&["a", "c", "d"]).unwrap();
    let want: HashMap<String, String> = ["a", "c", "d"]
        .iter()
        .map(|k| (k.to_string(), k.to_string()))
        .collect();
    assert_eq!(got, want);
    let got: HashMap<String, String> = cache.get_many_map(&["a", "b", "e"]).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got["a"], "a");
    assert_eq!(got["b"], "b");
    // Empty input, and duplicates collapse in the map.
    let got: HashMap<String, String> = cache.get_many_map(&[] as &[&str]).unwrap();
    assert!(got.is_empty());
    let got: HashMap<String, String> = cache.get_many_map(&["a", "a"]).unwrap();
    assert_eq!(got.len(), 1);

    // The heap-free form visits each hit with the key as given.
    let mut seen = Vec::new();
    let found = cache
        .get_many(["d", "zz", "b"], |k, val: String| {
            seen.push((String::from_utf8(k.key.to_vec()).unwrap(), val))
        })
        .unwrap();
    assert_eq!(found, 2);
    assert_eq!(
        seen,
        vec![
            ("d".to_string(), "d".to_string()),
            ("b".to_string(), "b".to_string())
        ]
    );
}

#[test]
fn get_many_includes_stored_none() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("none", &None::<u8>, 60).unwrap();
    cache.set("some", &Some(3u8), 60).unwrap();
    let got: HashMap<String, Option<u8>> = cache.get_many_map(&["none", "some", "gone"]).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got["none"], None);
    assert_eq!(got["some"], Some(3));
}

#[test]
fn delete_reports_whether_something_was_removed() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("key1", "spam", Timeout::Default).unwrap();
    cache.set("key2", "eggs", Timeout::Default).unwrap();
    assert!(cache.delete("key1").unwrap());
    assert_eq!(text(&mut cache, "key1"), None);
    assert!(!cache.delete("key1").unwrap());
    assert_eq!(text(&mut cache, "key2").as_deref(), Some("eggs"));
}

#[test]
fn has_key_and_in() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("hello1", "goodbye1", Timeout::Default).unwrap();
    assert!(cache.has_key("hello1").unwrap());
    assert!(!cache.has_key("goodbye1").unwrap());
    // A stored None counts as present (`key in cache`).
    cache.set("no_expiry", &None::<u8>, Timeout::Never).unwrap();
    assert!(cache.has_key("no_expiry").unwrap());
    cache.set("null", &None::<u8>, Timeout::Default).unwrap();
    assert!(cache.has_key("null").unwrap());
}

#[test]
fn incr_and_decr() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("answer", &41i64, Timeout::Default).unwrap();
    assert_eq!(cache.incr("answer", 1).unwrap(), 42);
    assert_eq!(cache.get::<i64>("answer").unwrap(), Some(42));
    assert_eq!(cache.incr("answer", 10).unwrap(), 52);
    assert_eq!(cache.incr("answer", -10).unwrap(), 42);
    assert_eq!(cache.decr("answer", 1).unwrap(), 41);
    assert_eq!(cache.decr("answer", 10).unwrap(), 31);
    assert_eq!(cache.decr("answer", -10).unwrap(), 41);
    // locmem allows negative results (5 - 10 = -5).
    cache.set("five", &5u8, Timeout::Default).unwrap();
    assert_eq!(cache.decr("five", 10).unwrap(), -5);
    assert_eq!(cache.incr("five", 1).unwrap(), -4);
    assert_eq!(cache.get::<i32>("five").unwrap(), Some(-4));
    // Missing keys are Django's ValueError.
    assert_eq!(cache.incr("does_not_exist", 1), Err(Error::NotFound));
    assert_eq!(cache.decr("does_not_exist", 1), Err(Error::NotFound));
    assert!(!cache.has_key("does_not_exist").unwrap());
    // None is not a number.
    cache.set("null", &None::<i64>, Timeout::Default).unwrap();
    assert_eq!(cache.incr("null", 1), Err(Error::NotInteger));
    assert_eq!(cache.decr("null", 1), Err(Error::NotInteger));
    assert_eq!(cache.get::<Option<i64>>("null").unwrap(), Some(None));
}

#[test]
fn incr_on_expired_key_is_not_found_and_reclaims_it() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("n", &1i64, 1).unwrap();
    clock.advance_secs(1);
    assert_eq!(cache.incr("n", 1), Err(Error::NotFound));
    assert_eq!(cache.len(), 0);
}

#[test]
fn incr_keeps_the_expiry() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("value", &1i64, 50).unwrap();
    clock.advance_secs(10);
    assert_eq!(cache.incr("value", 1).unwrap(), 2);
    assert_eq!(cache.decr("value", 1).unwrap(), 1);
    clock.advance_millis(39_999);
    assert_eq!(cache.get::<i64>("value").unwrap(), Some(1));
    clock.advance_millis(1);
    assert_eq!(cache.get::<i64>("value").unwrap(), None);
}

#[test]
fn incr_keeps_a_forever_key_forever() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("value", &1i64, Timeout::Never).unwrap();
    assert_eq!(cache.incr("value", 5).unwrap(), 6);
    clock.advance_secs(10 * 365 * 24 * 3600);
    assert_eq!(cache.get::<i64>("value").unwrap(), Some(6));
}

#[test]
fn incr_works_on_raw_ascii_decimal() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set_raw("hits", b"41", 60).unwrap();
    assert_eq!(cache.incr("hits", 1).unwrap(), 42);
    let mut buf = [0u8; 8];
    let n = cache.get_raw("hits", &mut buf).unwrap().unwrap();
    assert_eq!(&buf[..n], b"42");
    assert_eq!(cache.decr("hits", 50).unwrap(), -8);
    let n = cache.get_raw("hits", &mut buf).unwrap().unwrap();
    assert_eq!(&buf[..n], b"-8");
}

#[test]
fn integers_read_back_as_decimal_raw_bytes() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("n", &-1234i32, 60).unwrap();
    let mut buf = [0u8; 20];
    let n = cache.get_raw("n", &mut buf).unwrap().unwrap();
    assert_eq!(&buf[..n], b"-1234");
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Circle { r: f32 },
    Square(u16),
    Dot,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stuff {
    string: String,
    int: i32,
    list: Vec<u16>,
    tuple: (bool, char),
    float: f64,
    nothing: Option<u8>,
    shapes: [Shape; 3],
}

#[test]
fn data_types_round_trip() {
    let clock = clock();
    let mut cache: MemCache<_, 8, 32, 256> = MemCache::new(&clock, Table::new(), Config::new());
    let stuff = Stuff {
        string: "this is a string".into(),
        int: 42,
        list: vec![1, 2, 3, 4],
        tuple: (true, 'é'),
        float: 1.5,
        nothing: None,
        shapes: [Shape::Circle { r: 0.5 }, Shape::Square(3), Shape::Dot],
    };
    cache.set("stuff", &stuff, Timeout::Default).unwrap();
    assert_eq!(cache.get::<Stuff>("stuff").unwrap(), Some(stuff.clone()));
    // A fresh copy every read: changing ours does not change the cached one.
    let mut copy = cache.get::<Stuff>("stuff").unwrap().unwrap();
    copy.int = 0;
    assert_eq!(cache.get::<Stuff>("stuff").unwrap().unwrap().int, 42);
    // Scalars of every kind.
    cache.set("f", &1.5f64, 60).unwrap();
    assert_eq!(cache.get::<f64>("f").unwrap(), Some(1.5));
    cache.set("t", &true, 60).unwrap();
    assert_eq!(cache.get::<bool>("t").unwrap(), Some(true));
    cache.set("u64", &u64::MAX, 60).unwrap();
    assert_eq!(cache.get::<u64>("u64").unwrap(), Some(u64::MAX));
    cache.set("i64", &i64::MIN, 60).unwrap();
    assert_eq!(cache.get::<i64>("i64").unwrap(), Some(i64::MIN));
    cache.set("zero", &0u8, 60).unwrap();
    assert_eq!(cache.get::<u8>("zero").unwrap(), Some(0));
    // An integer reads back in any width that holds it.
    cache.set("w", &300u16, 60).unwrap();
    assert_eq!(cache.get::<i64>("w").unwrap(), Some(300));
    assert_eq!(cache.get::<u32>("w").unwrap(), Some(300));
}

// ---------------------------------------------------------------------------------------
// Expiry

#[test]
fn expiration() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("expire1", "very quickly", 1).unwrap();
    cache.set("expire2", "very quickly", 1).unwrap();
    cache.set("expire3", "very quickly", 1).unwrap();
    clock.advance_secs(2);
    assert_eq!(text(&mut cache, "expire1"), None);
    // add succeeds over an expired entry.
    assert!(cache.add("expire2", "newvalue", Timeout::Default).unwrap());
    assert_eq!(text(&mut cache, "expire2").as_deref(), Some("newvalue"));
    assert!(!cache.has_key("expire3").unwrap());
}

#[test]
fn thirty_seconds_expire_exactly_at_the_deadline() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("k", &1u8, 30).unwrap();
    clock.advance_millis(29_999);
    assert!(cache.has_key("k").unwrap());
    assert_eq!(cache.get::<u8>("k").unwrap(), Some(1));
    clock.advance_millis(1);
    // expired iff expiry <= now
    assert!(!cache.has_key("k").unwrap());
    assert_eq!(cache.get::<u8>("k").unwrap(), None);
}

#[test]
fn has_key_reclaims_an_expired_entry() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("k", &1u8, 1).unwrap();
    clock.advance_secs(1);
    assert_eq!(cache.len(), 1);
    assert!(!cache.has_key("k").unwrap());
    assert_eq!(cache.len(), 0);
}

#[test]
fn touch_updates_the_timeout() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("expire1", "very quickly", 1).unwrap();
    assert!(cache.touch("expire1", 4).unwrap());
    clock.advance_secs(2);
    assert!(cache.has_key("expire1").unwrap());
    clock.advance_secs(3);
    assert!(!cache.has_key("expire1").unwrap());
    // Without a timeout argument: the default (300 s).
    cache.set("expire1", "very quickly", 1).unwrap();
    assert!(cache.touch("expire1", Timeout::Default).unwrap());
    clock.advance_secs(2);
    assert!(cache.has_key("expire1").unwrap());
    clock.advance_secs(297);
    assert!(cache.has_key("expire1").unwrap());
    clock.advance_secs(1);
    assert!(!cache.has_key("expire1").unwrap());
    assert!(!cache.touch("nonexistent", Timeout::Default).unwrap());
    // Never makes it permanent.
    cache.set("forever", "x", 1).unwrap();
    assert!(cache.touch("forever", Timeout::Never).unwrap());
    clock.advance_secs(1_000_000);
    assert!(cache.has_key("forever").unwrap());
}

#[test]
fn touch_on_expired_entry_is_false_and_leaves_it() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("k", &1u8, 1).unwrap();
    clock.advance_secs(1);
    assert!(!cache.touch("k", 60).unwrap());
    // locmem leaves the stale entry in the store; it still reads as missing.
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.get::<u8>("k").unwrap(), None);
    assert_eq!(cache.len(), 0);
}

#[test]
fn touch_with_zero_expires_a_live_entry() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("key5", "belgian fries", 5).unwrap();
    assert!(cache.touch("key5", 0).unwrap());
    assert_eq!(text(&mut cache, "key5"), None);
    assert!(!cache.touch("key5", 0).unwrap());
}

#[test]
fn delete_of_expired_entry_is_false() {
    // Documented difference: `delete` answers as memcached does, true only for a live entry.
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("k", &1u8, 1).unwrap();
    clock.advance_secs(1);
    assert!(!cache.delete("k").unwrap());
    assert_eq!(cache.len(), 0);
}

#[test]
fn unicode_keys_and_values() {
    let clock = clock();
    let mut cache = mem(&clock);
    let stuff = [
        ("ascii", "ascii_value"),
        ("unicode_ascii", "Iñtërnâtiônàlizætiøn1"),
        ("Iñtërnâtiônàlizætiøn", "Iñtërnâtiônàlizætiøn2"),
        ("清清清", "汉字"),
        ("ключ", "значение"),
    ];
    // set and get
    for (key, value) in stuff {
        cache.set(key, value, Timeout::Default).unwrap();
        assert_eq!(text(&mut cache, key).as_deref(), Some(value));
    }
    // delete
    for (key, _) in stuff {
        assert!(cache.delete(key).unwrap());
        assert_eq!(text(&mut cache, key), None);
    }
    // add
    for (key, value) in stuff {
        assert!(cache.add(key, value, Timeout::Default).unwrap());
        assert_eq!(text(&mut cache, key).as_deref(), Some(value));
    }
    // set_many
    cache.clear().unwrap();
    let failed = cache.set_many(stuff.iter().map(|(k, v)| (*k, *v)), 60, |_, _| {});
    assert_eq!(failed, Ok(0));
    for (key, value) in stuff {
        assert_eq!(text(&mut cache, key).as_deref(), Some(value));
    }
}

#[test]
fn binary_values_round_trip() {
    let clock = clock();
    let mut cache: MemCache<_, 8, 32, 300> = MemCache::new(&clock, Table::new(), Config::new());
    // Every byte value, the way compressed data looks.
    let blob: Vec<u8> = (0..=255u8).rev().collect();
    cache.set_raw("binary1", &blob, Timeout::Default).unwrap();
    let mut buf = [0u8; 300];
    let n = cache.get_raw("binary1", &mut buf).unwrap().unwrap();
    assert_eq!(&buf[..n], &blob[..]);
    let kind_and_len = cache
        .with_raw("binary1", |bytes, kind| (kind, bytes.len()))
        .unwrap();
    assert_eq!(kind_and_len, Some((Kind::Bytes, 256)));
    // add
    assert!(cache.add_raw("binary2", &blob, Timeout::Default).unwrap());
    assert!(!cache
        .add_raw("binary2", b"other", Timeout::Default)
        .unwrap());
    let n = cache.get_raw("binary2", &mut buf).unwrap().unwrap();
    assert_eq!(&buf[..n], &blob[..]);
    // Empty raw values are values, not misses.
    cache.set_raw("empty", b"", 60).unwrap();
    assert_eq!(cache.get_raw("empty", &mut buf).unwrap(), Some(0));
    assert_eq!(cache.get_raw("absent", &mut buf).unwrap(), None);
    // Bytes through serde round-trip too.
    cache.set("serde_bytes", &blob[..100], 60).unwrap();
    assert_eq!(
        cache.get::<Vec<u8>>("serde_bytes").unwrap(),
        Some(blob[..100].to_vec())
    );
}

#[test]
fn set_many_stores_everything_and_reports_no_failure() {
    let clock = clock();
    let mut cache = mem(&clock);
    let items: HashMap<&str, &str> = [("key1", "spam"), ("key2", "eggs")].into();
    assert!(cache
        .set_many_map(&items, Timeout::Default)
        .unwrap()
        .is_empty());
    assert_eq!(text(&mut cache, "key1").as_deref(), Some("spam"));
    assert_eq!(text(&mut cache, "key2").as_deref(), Some("eggs"));
    // Empty data.
    let empty: HashMap<&str, &str> = HashMap::new();
    assert!(cache
        .set_many_map(&empty, Timeout::Default)
        .unwrap()
        .is_empty());
    assert_eq!(
        cache.set_many(std::iter::empty::<(&str, &u8)>(), 60, |_, _| {}),
        Ok(0)
    );
}

#[test]
fn set_many_expiration() {
    let clock = clock();
    let mut cache = mem(&clock);
    let n = cache.set_many([("key1", "spam"), ("key2", "eggs")], 1, |_, _| {});
    assert_eq!(n, Ok(0));
    clock.advance_secs(2);
    assert_eq!(text(&mut cache, "key1"), None);
    assert_eq!(text(&mut cache, "key2"), None);
}

#[test]
fn set_many_map_reports_keys_that_failed_to_store() {
    let clock = clock();
    let mut cache: MemCache<_, 8, 16, 8> = MemCache::new(&clock, Table::new(), Config::new());
    let items: HashMap<&str, &str> = [("good", "1"), ("big", "far too long")].into();
    assert_eq!(
        cache.set_many_map(&items, 60).unwrap(),
        vec!["big".to_string()]
    );
    assert_eq!(cache.get::<String>("good").unwrap().as_deref(), Some("1"));
    assert!(!cache.has_key("big").unwrap());
}

#[test]
fn batch_calls_with_one_invalid_key_change_nothing() {
    // Django's memcached backends make and validate every key before the batch call.
    let clock = clock();
    let mut cache = mem(&clock);
    for k in ["a", "b", "c"] {
        cache.set(k, k, 60).unwrap();
    }
    let bad = Err(Error::Key(KeyError::BadChar));
    // delete_many: the valid keys before and after the bad one stay.
    assert_eq!(cache.delete_many(["a", "bad key", "b"]), bad.map(|()| 0));
    for k in ["a", "b", "c"] {
        assert_eq!(text(&mut cache, k).as_deref(), Some(k), "{k}");
    }
    // set_many: nothing is stored, nothing is overwritten, `failed` is not called.
    let mut failed = Vec::new();
    assert_eq!(
        cache.set_many(
            [("a", "new"), ("d", "new"), ("bad key", "new")],
            60,
            |k, e| failed.push((k, e))
        ),
        bad.map(|()| 0)
    );
    assert!(failed.is_empty());
    assert_eq!(text(&mut cache, "a").as_deref(), Some("a"));
    assert!(!cache.has_key("d").unwrap());
    let items: HashMap<&str, &str> = [("a", "new"), ("bad key", "new")].into();
    assert_eq!(cache.set_many_map(&items, 60), bad.map(|()| Vec::new()));
    assert_eq!(text(&mut cache, "a").as_deref(), Some("a"));
    // get_many: nothing is visited and recency is unchanged.
    let mut seen = Vec::new();
    assert_eq!(
        cache.get_many(["a", "bad key"], |k, v: String| seen.push((k, v))),
        bad.map(|()| 0)
    );
    assert!(seen.is_empty());
    // A key too long anywhere in the batch is found too.
    let long = "x".repeat(300);
    assert_eq!(
        cache.delete_many(["a", long.as_str()]),
        Err(Error::Key(KeyError::TooLong))
    );
    assert_eq!(text(&mut cache, "a").as_deref(), Some("a"));
    assert_eq!(cache.len(), 3);
}

#[test]
fn get_many_with_an_invalid_key_leaves_recency_alone() {
    let clock = clock();
    let mut cache = culling(&clock, 3, 3);
    for k in ["a", "b", "c"] {
        cache.set(k, k, 60).unwrap();
    }
    // Were "a" read before the bad key was found, "b" would be the least recent.
    assert!(cache.get_many(["a", "bad key"], |_, _: String| {}).is_err());
    cache.set("d", "d", 60).unwrap();
    assert!(!cache.has_key("a").unwrap());
    assert!(cache.has_key("b").unwrap());
}

#[test]
fn delete_many() {
    let clock = clock();
    let mut cache = mem(&clock);
    for k in ["key1", "key2", "key3"] {
        cache.set(k, "x", Timeout::Default).unwrap();
    }
    assert_eq!(cache.delete_many(["key1", "key2"]).unwrap(), 2);
    assert_eq!(text(&mut cache, "key1"), None);
    assert_eq!(text(&mut cache, "key2"), None);
    assert_eq!(text(&mut cache, "key3").as_deref(), Some("x"));
    // No keys: no error.
    assert_eq!(cache.delete_many(std::iter::empty::<&str>()).unwrap(), 0);
    assert_eq!(cache.delete_many(["key3", "key3", "nope"]).unwrap(), 1);
}

#[test]
fn clear_removes_everything() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("key1", "spam", Timeout::Default).unwrap();
    cache.set("key2", "eggs", Timeout::Never).unwrap();
    cache.clear().unwrap();
    assert_eq!(text(&mut cache, "key1"), None);
    assert_eq!(text(&mut cache, "key2"), None);
    assert_eq!(cache.len(), 0);
    assert!(cache.is_empty());
    // Still usable.
    cache.set("key1", "again", 60).unwrap();
    assert_eq!(text(&mut cache, "key1").as_deref(), Some("again"));
}

#[test]
fn close_keeps_the_cache_usable() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("k", "v", 60).unwrap();
    cache.close().unwrap();
    assert_eq!(text(&mut cache, "k").as_deref(), Some("v"));
    cache.set("k2", "v2", 60).unwrap();
    cache.close().unwrap();
    assert_eq!(text(&mut cache, "k2").as_deref(), Some("v2"));
}

// ---------------------------------------------------------------------------------------
// Timeouts

#[test]
fn long_timeouts_are_relative() {
    let clock = clock();
    let mut cache = mem(&clock);
    // More than 30 days: memcached would read it as a unix time; locmem keeps it relative.
    let thirty_days_and_a_second = 60 * 60 * 24 * 30 + 1;
    cache.set("key1", "eggs", thirty_days_and_a_second).unwrap();
    assert!(cache.add("key2", "ham", thirty_days_and_a_second).unwrap());
    cache
        .set_many([("key3", "sausage")], thirty_days_and_a_second, |_, _| {})
        .unwrap();
    clock.advance_secs(60 * 60 * 24 * 30);
    assert_eq!(text(&mut cache, "key1").as_deref(), Some("eggs"));
    assert_eq!(text(&mut cache, "key2").as_deref(), Some("ham"));
    assert_eq!(text(&mut cache, "key3").as_deref(), Some("sausage"));
    clock.advance_secs(1);
    assert_eq!(text(&mut cache, "key1"), None);
    assert_eq!(text(&mut cache, "key2"), None);
    assert_eq!(text(&mut cache, "key3"), None);
    // A year.
    cache.set("year", "x", 365u32 * 24 * 3600).unwrap();
    clock.advance_secs(364 * 24 * 3600);
    assert!(cache.has_key("year").unwrap());
}

#[test]
fn forever_timeout() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("key1", "eggs", Timeout::Never).unwrap();
    assert!(cache.add("key2", "ham", Timeout::Never).unwrap());
    assert!(!cache.add("key1", "new eggs", Timeout::Never).unwrap());
    cache
        .set_many(
            [("key3", "sausage"), ("key4", "lobster bisque")],
            Timeout::Never,
            |_, _| {},
        )
        .unwrap();
    // `None` from Django's side converts too.
    cache.set("key5", "spam", None::<u32>).unwrap();
    clock.advance_secs(100 * 365 * 24 * 3600);
    assert_eq!(text(&mut cache, "key1").as_deref(), Some("eggs"));
    assert_eq!(text(&mut cache, "key2").as_deref(), Some("ham"));
    assert_eq!(text(&mut cache, "key3").as_deref(), Some("sausage"));
    assert_eq!(text(&mut cache, "key4").as_deref(), Some("lobster bisque"));
    assert_eq!(text(&mut cache, "key5").as_deref(), Some("spam"));
}

#[test]
fn default_timeout_never_expiring() {
    let clock = clock();
    let config = Config::new().timeout(Timeout::Never);
    let mut cache: Mem<'_> = MemCache::new(&clock, Table::new(), config);
    cache.set("infinite_foo", "bar", Timeout::Default).unwrap();
    clock.advance_secs(1_000_000_000);
    assert_eq!(text(&mut cache, "infinite_foo").as_deref(), Some("bar"));
}

#[test]
fn default_far_future_timeout() {
    let clock = clock();
    let year = 60 * 60 * 24 * 365;
    let config = Config::new().timeout(Timeout::Secs(year));
    let mut cache: Mem<'_> = MemCache::new(&clock, Table::new(), config);
    cache.set("future_foo", "bar", Timeout::Default).unwrap();
    clock.advance_secs(year as u64 - 1);
    assert_eq!(text(&mut cache, "future_foo").as_deref(), Some("bar"));
    clock.advance_secs(1);
    assert_eq!(text(&mut cache, "future_foo"), None);
}

#[test]
fn default_timeout_is_300_seconds() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("k", &1u8, Timeout::Default).unwrap();
    clock.advance_millis(299_999);
    assert!(cache.has_key("k").unwrap());
    clock.advance_millis(1);
    assert!(!cache.has_key("k").unwrap());
}

#[test]
fn zero_timeout_stores_nothing() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("key1", "eggs", 0).unwrap();
    assert_eq!(text(&mut cache, "key1"), None);
    assert!(cache.add("key2", "ham", 0).unwrap());
    assert_eq!(text(&mut cache, "key2"), None);
    cache
        .set_many(
            [("key3", "sausage"), ("key4", "lobster bisque")],
            0,
            |_, _| {},
        )
        .unwrap();
    assert_eq!(text(&mut cache, "key3"), None);
    assert_eq!(text(&mut cache, "key4"), None);
    // Documented difference: nothing is held at all, not even an expired entry.
    assert_eq!(cache.len(), 0);
    // Setting with 0 over a live value removes it.
    cache.set("key5", "belgian fries", 60).unwrap();
    cache.set("key5", "waffles", 0).unwrap();
    assert_eq!(text(&mut cache, "key5"), None);
    assert_eq!(cache.len(), 0);
    // add with 0 over a live value changes nothing and says so.
    cache.set("key6", "live", 60).unwrap();
    assert!(!cache.add("key6", "other", 0).unwrap());
    assert_eq!(text(&mut cache, "key6").as_deref(), Some("live"));
}

#[test]
fn negative_timeouts_expire_at_once() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("key1", "eggs", 60).unwrap();
    cache.set("key1", "spam", -1).unwrap();
    assert_eq!(text(&mut cache, "key1"), None);
    assert!(cache.add("key2", "ham", Timeout::Secs(-5)).unwrap());
    assert!(!cache.has_key("key2").unwrap());
    cache.set("key3", "x", Timeout::Millis(-1)).unwrap();
    cache.set("key4", "x", Timeout::Ticks(0)).unwrap();
    assert!(!cache.has_key("key3").unwrap());
    assert!(!cache.has_key("key4").unwrap());
}

#[test]
fn sub_second_timeouts() {
    let clock = clock();
    let mut cache = mem(&clock);
    // Django's float timeouts: 100.2 s.
    cache
        .set("key1", "spam", Duration::from_millis(100_200))
        .unwrap();
    cache
        .set("key2", "eggs", Duration::from_millis(500))
        .unwrap();
    cache.set("key3", "ham", Timeout::Millis(1500)).unwrap();
    cache.set("key4", "jam", Timeout::Ticks(250)).unwrap();
    clock.advance_millis(249);
    assert_eq!(text(&mut cache, "key4").as_deref(), Some("jam"));
    clock.advance_millis(1);
    assert_eq!(text(&mut cache, "key4"), None);
    clock.advance_millis(249);
    assert_eq!(text(&mut cache, "key2").as_deref(), Some("eggs"));
    clock.advance_millis(1);
    assert_eq!(text(&mut cache, "key2"), None);
    clock.advance_millis(999);
    assert_eq!(text(&mut cache, "key3").as_deref(), Some("ham"));
    clock.advance_millis(1);
    assert_eq!(text(&mut cache, "key3"), None);
    clock.advance_millis(100_200 - 1501);
    assert_eq!(text(&mut cache, "key1").as_deref(), Some("spam"));
    clock.advance_millis(1);
    assert_eq!(text(&mut cache, "key1"), None);
}

#[test]
fn a_positive_duration_never_expires_at_once() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("k", "x", Duration::from_nanos(1)).unwrap();
    assert_eq!(text(&mut cache, "k").as_deref(), Some("x"));
    clock.advance(1);
    assert_eq!(text(&mut cache, "k"), None);
}

// ---------------------------------------------------------------------------------------
// Culling and recency

fn count_cull_keys(cache: &mut Mem<'_>) -> Vec<usize> {
    (1..50)
        .filter(|i| cache.has_key(format!("cull{i}").as_str()).unwrap())
        .collect()
}

#[test]
fn cull() {
    let clock = clock();
    let mut cache = culling(&clock, 30, 3);
    for i in 1..50 {
        cache
            .set(format!("cull{i}").as_str(), "value", 1000)
            .unwrap();
    }
    let live = count_cull_keys(&mut cache);
    assert_eq!(live.len(), 29);
    // Culls at the 31st and the 41st insert, ten least recent entries each time.
    assert_eq!(live, (21..50).collect::<Vec<_>>());
    assert_eq!(cache.len(), 29);
}

#[test]
fn zero_cull() {
    let clock = clock();
    let mut cache = culling(&clock, 30, 0);
    for i in 1..50 {
        cache
            .set(format!("cull{i}").as_str(), "value", 1000)
            .unwrap();
    }
    let live = count_cull_keys(&mut cache);
    assert_eq!(live.len(), 19);
    // Everything is cleared at the 31st insert.
    assert_eq!(live, (31..50).collect::<Vec<_>>());
}

#[test]
fn zero_cull_clears_live_entries_even_when_expired_ones_would_make_room() {
    // CULL_FREQUENCY 0 dumps the entire cache when MAX_ENTRIES is reached (Django's docs,
    // locmem): reclaiming the expired entry alone does not save the live ones.
    let clock = clock();
    let mut cache = culling(&clock, 4, 0);
    for k in ["a", "b", "c"] {
        cache.set(k, k, 60).unwrap();
    }
    cache.set("soon", "soon", 1).unwrap();
    clock.advance_secs(1);
    cache.set("d", "d", 60).unwrap();
    assert_eq!(cache.len(), 1);
    for k in ["a", "b", "c", "soon"] {
        assert!(!cache.has_key(k).unwrap(), "{k}");
    }
    assert_eq!(text(&mut cache, "d").as_deref(), Some("d"));
    // Below the limit nothing is cleared; an overwrite at the limit clears nothing either.
    for k in ["e", "f", "g"] {
        cache.set(k, k, 60).unwrap();
    }
    cache.set("d", "d2", 60).unwrap();
    assert_eq!(cache.len(), 4);
    cache.set("h", "h", 60).unwrap();
    assert_eq!(cache.len(), 1);
    assert_eq!(text(&mut cache, "h").as_deref(), Some("h"));
}

#[test]
fn cull_removes_at_least_one_entry() {
    let clock = clock();
    let mut cache = culling(&clock, 2, 3);
    cache.set("a", &1u8, 60).unwrap();
    cache.set("b", &1u8, 60).unwrap();
    // 2 / 3 == 0 in Django's arithmetic; the table still makes room.
    cache.set("c", &1u8, 60).unwrap();
    assert!(!cache.has_key("a").unwrap());
    assert!(cache.has_key("b").unwrap());
    assert!(cache.has_key("c").unwrap());
    assert_eq!(cache.len(), 2);
}

fn lru_cache(clock: &ManualClock) -> Mem<'_> {
    let mut cache = culling(clock, 9, 3);
    for key in 0..9 {
        cache
            .set(key.to_string().as_str(), &key, Timeout::Never)
            .unwrap();
    }
    cache
}

fn lru_value(cache: &mut Mem<'_>, key: i64) -> Option<i64> {
    cache.get::<i64>(key.to_string().as_str()).unwrap()
}

#[test]
fn lru_get() {
    let clock = clock();
    let mut cache = lru_cache(&clock);
    for key in 0..6 {
        assert_eq!(lru_value(&mut cache, key), Some(key));
    }
    cache.set("9", &9i64, Timeout::Never).unwrap();
    for key in 0..6 {
        assert_eq!(lru_value(&mut cache, key), Some(key));
    }
    for key in 6..9 {
        assert_eq!(lru_value(&mut cache, key), None);
    }
    assert_eq!(lru_value(&mut cache, 9), Some(9));
}

#[test]
fn lru_set() {
    let clock = clock();
    let mut cache = lru_cache(&clock);
    for key in 3..9 {
        cache
            .set(key.to_string().as_str(), &key, Timeout::Never)
            .unwrap();
    }
    cache.set("9", &9i64, Timeout::Never).unwrap();
    for key in 3..10 {
        assert_eq!(lru_value(&mut cache, key), Some(key));
    }
    for key in 0..3 {
        assert_eq!(lru_value(&mut cache, key), None);
    }
}

#[test]
fn lru_incr() {
    let clock = clock();
    let mut cache = lru_cache(&clock);
    for key in 0..6 {
        assert_eq!(cache.incr(key.to_string().as_str(), 1).unwrap(), key + 1);
    }
    cache.set("9", &9i64, Timeout::Never).unwrap();
    for key in 0..6 {
        assert_eq!(lru_value(&mut cache, key), Some(key + 1));
    }
    for key in 6..9 {
        assert_eq!(lru_value(&mut cache, key), None);
    }
    assert_eq!(lru_value(&mut cache, 9), Some(9));
}

#[test]
fn lru_successful_add_moves_but_refused_add_has_key_and_touch_do_not() {
    let clock = clock();
    let mut cache = lru_cache(&clock);
    // None of these change recency: 0, 1, 2 stay the least recent.
    for key in 0..3 {
        let k = key.to_string();
        assert!(cache.has_key(k.as_str()).unwrap());
        assert!(cache.touch(k.as_str(), Timeout::Never).unwrap());
        assert!(!cache.add(k.as_str(), &100i64, Timeout::Never).unwrap());
    }
    cache.set("9", &9i64, Timeout::Never).unwrap();
    for key in 0..3 {
        assert_eq!(lru_value(&mut cache, key), None);
    }
    for key in 3..9 {
        assert_eq!(lru_value(&mut cache, key), Some(key));
    }
}

#[test]
fn max_three_get_a_then_set_d_evicts_b() {
    let clock = clock();
    let mut cache = culling(&clock, 3, 3);
    for k in ["a", "b", "c"] {
        cache.set(k, k, 60).unwrap();
    }
    assert_eq!(text(&mut cache, "a").as_deref(), Some("a"));
    cache.set("d", "d", 60).unwrap();
    assert!(!cache.has_key("b").unwrap());
    for k in ["a", "c", "d"] {
        assert_eq!(text(&mut cache, k).as_deref(), Some(k));
    }
    assert_eq!(cache.len(), 3);
}

#[test]
fn overwriting_in_a_full_table_never_culls() {
    // Documented difference: Django's locmem culls on every set into a full table, even an
    // overwrite; here an overwrite takes no new slot and culls nothing.
    let clock = clock();
    let mut cache = culling(&clock, 3, 3);
    for k in ["a", "b", "c"] {
        cache.set(k, k, 60).unwrap();
    }
    cache.set("c", "C", 60).unwrap();
    cache.set("a", "A", 60).unwrap();
    assert_eq!(text(&mut cache, "a").as_deref(), Some("A"));
    assert_eq!(text(&mut cache, "b").as_deref(), Some("b"));
    assert_eq!(text(&mut cache, "c").as_deref(), Some("C"));
    assert_eq!(cache.len(), 3);
}

#[test]
fn culling_reclaims_expired_entries_first() {
    // Documented difference: a cull of more than one entry first reclaims expired entries,
    // and culls live ones only if the table is still at its limit.
    let clock = clock();
    let mut cache = culling(&clock, 6, 3);
    for k in ["b1", "b2", "b3", "b4", "b5"] {
        cache.set(k, k, 60).unwrap();
    }
    cache.set("a", "a", 1).unwrap(); // most recent, but about to expire
    clock.advance_secs(1);
    cache.set("d", "d", 60).unwrap();
    assert_eq!(cache.len(), 6);
    for k in ["b1", "b2", "b3", "b4", "b5", "d"] {
        assert_eq!(text(&mut cache, k).as_deref(), Some(k));
    }
    assert_eq!(text(&mut cache, "a"), None);
}

#[test]
fn a_single_entry_cull_takes_the_least_recent_entry() {
    // Documented: when len / CULL_FREQUENCY <= 1 the cull skips the sweep for expired
    // entries and removes the least recent one.
    let clock = clock();
    let mut cache = culling(&clock, 3, 3);
    cache.set("b", "b", 60).unwrap();
    cache.set("c", "c", 60).unwrap();
    cache.set("a", "a", 1).unwrap();
    clock.advance_secs(1);
    cache.set("d", "d", 60).unwrap();
    // "a" is expired but still held; "b" was the least recent.
    assert_eq!(cache.len(), 3);
    assert!(!cache.has_key("b").unwrap());
    assert!(!cache.has_key("a").unwrap());
    assert_eq!(cache.len(), 2);
    for k in ["c", "d"] {
        assert_eq!(text(&mut cache, k).as_deref(), Some(k));
    }
}

#[test]
fn incr_never_culls() {
    let clock = clock();
    let mut cache = culling(&clock, 3, 3);
    for k in ["a", "b", "c"] {
        cache.set(k, &1i64, 60).unwrap();
    }
    for _ in 0..10 {
        cache.incr("a", 1).unwrap();
    }
    assert_eq!(cache.len(), 3);
    assert!(cache.has_key("b").unwrap());
    assert!(cache.has_key("c").unwrap());
}

// ---------------------------------------------------------------------------------------
// Key prefix, versions, key function

#[test]
fn made_keys_follow_prefix_version_key() {
    let clock = clock();
    let cache = mem(&clock);
    let mut out = [0u8; 64];
    let n = cache.make_key("foo", &mut out).unwrap();
    assert_eq!(&out[..n], b":1:foo");
    let n = cache.make_key(v("foo", 0), &mut out).unwrap();
    assert_eq!(&out[..n], b":0:foo");
    let n = cache.make_key(v("foo", -3), &mut out).unwrap();
    assert_eq!(&out[..n], b":-3:foo");
    let config = Config::new().key_prefix("site").version(7);
    let prefixed: Mem<'_> = MemCache::new(&clock, Table::new(), config);
    let n = prefixed.make_key("foo", &mut out).unwrap();
    assert_eq!(&out[..n], b"site:7:foo");
}

#[test]
fn prefix_isolates_caches_sharing_a_table() {
    let clock = clock();
    let table = store();
    let mut cache = on(&clock, &table, Config::new());
    let mut prefixed = on(&clock, &table, Config::new().key_prefix("cacheprefix"));
    cache.set("somekey", "value", Timeout::Default).unwrap();
    assert!(!prefixed.has_key("somekey").unwrap());
    prefixed.set("somekey", "value2", Timeout::Default).unwrap();
    assert_eq!(
        cache.get::<String>("somekey").unwrap().as_deref(),
        Some("value")
    );
    assert_eq!(
        prefixed.get::<String>("somekey").unwrap().as_deref(),
        Some("value2")
    );
    assert_eq!(table.try_lock(|t| t.len()), Some(2));
}

#[test]
fn versioning_get_set() {
    let clock = clock();
    let table = store();
    let mut cache = on(&clock, &table, Config::new());
    let mut v2 = on(&clock, &table, Config::new().version(2));
    let get = |c: &mut Shared<'_>, k: Key<'_>| c.get::<i32>(k).unwrap();

    // set, using default version = 1
    cache.set("answer1", &42, Timeout::Default).unwrap();
    assert_eq!(get(&mut cache, "answer1".into()), Some(42));
    assert_eq!(get(&mut cache, v("answer1", 1)), Some(42));
    assert_eq!(get(&mut cache, v("answer1", 2)), None);
    assert_eq!(get(&mut v2, "answer1".into()), None);
    assert_eq!(get(&mut v2, v("answer1", 1)), Some(42));
    assert_eq!(get(&mut v2, v("answer1", 2)), None);

    // set, default version = 1, but manually override version = 2
    cache.set(v("answer2", 2), &42, Timeout::Default).unwrap();
    assert_eq!(get(&mut cache, "answer2".into()), None);
    assert_eq!(get(&mut cache, v("answer2", 1)), None);
    assert_eq!(get(&mut cache, v("answer2", 2)), Some(42));
    assert_eq!(get(&mut v2, "answer2".into()), Some(42));
    assert_eq!(get(&mut v2, v("answer2", 1)), None);
    assert_eq!(get(&mut v2, v("answer2", 2)), Some(42));

    // v2 set, using default version = 2
    v2.set("answer3", &42, Timeout::Default).unwrap();
    assert_eq!(get(&mut cache, "answer3".into()), None);
    assert_eq!(get(&mut cache, v("answer3", 1)), None);
    assert_eq!(get(&mut cache, v("answer3", 2)), Some(42));
    assert_eq!(get(&mut v2, "answer3".into()), Some(42));
    assert_eq!(get(&mut v2, v("answer3", 1)), None);
    assert_eq!(get(&mut v2, v("answer3", 2)), Some(42));

    // v2 set, default version = 2, but manually override version = 1
    v2.set(v("answer4", 1), &42, Timeout::Default).unwrap();
    assert_eq!(get(&mut cache, "answer4".into()), Some(42));
    assert_eq!(get(&mut cache, v("answer4", 1)), Some(42));
    assert_eq!(get(&mut cache, v("answer4", 2)), None);
    assert_eq!(get(&mut v2, "answer4".into()), None);
    assert_eq!(get(&mut v2, v("answer4", 1)), Some(42));
    assert_eq!(get(&mut v2, v("answer4", 2)), None);
}

#[test]
fn versioning_add() {
    let clock = clock();
    let table = store();
    let mut cache = on(&clock, &table, Config::new());
    let mut v2 = on(&clock, &table, Config::new().version(2));
    let d = Timeout::Default;

    // add, default version = 1, but manually override version = 2
    assert!(cache.add(v("answer1", 2), &42, d).unwrap());
    assert_eq!(cache.get::<i32>(v("answer1", 1)).unwrap(), None);
    assert_eq!(cache.get::<i32>(v("answer1", 2)).unwrap(), Some(42));
    assert!(!cache.add(v("answer1", 2), &37, d).unwrap());
    assert_eq!(cache.get::<i32>(v("answer1", 1)).unwrap(), None);
    assert_eq!(cache.get::<i32>(v("answer1", 2)).unwrap(), Some(42));
    assert!(cache.add(v("answer1", 1), &37, d).unwrap());
    assert_eq!(cache.get::<i32>(v("answer1", 1)).unwrap(), Some(37));
    assert_eq!(cache.get::<i32>(v("answer1", 2)).unwrap(), Some(42));

    // v2 add, using default version = 2
    assert!(v2.add("answer2", &42, d).unwrap());
    assert_eq!(cache.get::<i32>(v("answer2", 1)).unwrap(), None);
    assert_eq!(cache.get::<i32>(v("answer2", 2)).unwrap(), Some(42));
    assert!(!v2.add("answer2", &37, d).unwrap());
    assert_eq!(cache.get::<i32>(v("answer2", 1)).unwrap(), None);
    assert_eq!(cache.get::<i32>(v("answer2", 2)).unwrap(), Some(42));
    assert!(v2.add(v("answer2", 1), &37, d).unwrap());
    assert_eq!(cache.get::<i32>(v("answer2", 1)).unwrap(), Some(37));
    assert_eq!(cache.get::<i32>(v("answer2", 2)).unwrap(), Some(42));

    // v2 add, default version = 2, but manually override version = 1
    assert!(v2.add(v("answer3", 1), &42, d).unwrap());
    assert_eq!(cache.get::<i32>(v("answer3", 1)).unwrap(), Some(42));
    assert_eq!(cache.get::<i32>(v("answer3", 2)).unwrap(), None);
    assert!(!v2.add(v("answer3", 1), &37, d).unwrap());
    assert_eq!(cache.get::<i32>(v("answer3", 1)).unwrap(), Some(42));
    assert!(v2.add("answer3", &37, d).unwrap());
    assert_eq!(cache.get::<i32>(v("answer3", 1)).unwrap(), Some(42));
    assert_eq!(cache.get::<i32>(v("answer3", 2)).unwrap(), Some(37));
}

#[test]
fn versioning_has_key() {
    let clock = clock();
    let table = store();
    let mut cache = on(&clock, &table, Config::new());
    let mut v2 = on(&clock, &table, Config::new().version(2));
    cache.set("answer1", &42, Timeout::Default).unwrap();
    assert!(cache.has_key("answer1").unwrap());
    assert!(cache.has_key(v("answer1", 1)).unwrap());
    assert!(!cache.has_key(v("answer1", 2)).unwrap());
    assert!(!v2.has_key("answer1").unwrap());
    assert!(v2.has_key(v("answer1", 1)).unwrap());
    assert!(!v2.has_key(v("answer1", 2)).unwrap());
}

#[test]
fn versioning_delete() {
    let clock = clock();
    let table = store();
    let mut cache = on(&clock, &table, Config::new());
    let mut v2 = on(&clock, &table, Config::new().version(2));
    let d = Timeout::Default;
    let both = |c: &mut Shared<'_>, k: &str| {
        (
            c.get::<i32>(v(k, 1)).unwrap(),
            c.get::<i32>(v(k, 2)).unwrap(),
        )
    };

    cache.set(v("answer1", 1), &37, d).unwrap();
    cache.set(v("answer1", 2), &42, d).unwrap();
    assert!(cache.delete("answer1").unwrap());
    assert_eq!(both(&mut cache, "answer1"), (None, Some(42)));

    cache.set(v("answer2", 1), &37, d).unwrap();
    cache.set(v("answer2", 2), &42, d).unwrap();
    assert!(cache.delete(v("answer2", 2)).unwrap());
    assert_eq!(both(&mut cache, "answer2"), (Some(37), None));

    cache.set(v("answer3", 1), &37, d).unwrap();
    cache.set(v("answer3", 2), &42, d).unwrap();
    assert!(v2.delete("answer3").unwrap());
    assert_eq!(both(&mut cache, "answer3"), (Some(37), None));

    cache.set(v("answer4", 1), &37, d).unwrap();
    cache.set(v("answer4", 2), &42, d).unwrap();
    assert!(v2.delete(v("answer4", 1)).unwrap());
    assert_eq!(both(&mut cache, "answer4"), (None, Some(42)));
}

#[test]
fn versioning_incr_decr() {
    let clock = clock();
    let table = store();
    let mut cache = on(&clock, &table, Config::new());
    let mut v2 = on(&clock, &table, Config::new().version(2));
    let d = Timeout::Default;
    let both = |c: &mut Shared<'_>, k: &str| {
        (
            c.get::<i64>(v(k, 1)).unwrap(),
            c.get::<i64>(v(k, 2)).unwrap(),
        )
    };

    cache.set(v("answer1", 1), &37, d).unwrap();
    cache.set(v("answer1", 2), &42, d).unwrap();
    assert_eq!(cache.incr("answer1", 1).unwrap(), 38);
    assert_eq!(both(&mut cache, "answer1"), (Some(38), Some(42)));
    assert_eq!(cache.decr("answer1", 1).unwrap(), 37);
    assert_eq!(both(&mut cache, "answer1"), (Some(37), Some(42)));

    cache.set(v("answer2", 1), &37, d).unwrap();
    cache.set(v("answer2", 2), &42, d).unwrap();
    assert_eq!(cache.incr(v("answer2", 2), 1).unwrap(), 43);
    assert_eq!(both(&mut cache, "answer2"), (Some(37), Some(43)));
    assert_eq!(cache.decr(v("answer2", 2), 1).unwrap(), 42);
    assert_eq!(both(&mut cache, "answer2"), (Some(37), Some(42)));

    cache.set(v("answer3", 1), &37, d).unwrap();
    cache.set(v("answer3", 2), &42, d).unwrap();
    assert_eq!(v2.incr("answer3", 1).unwrap(), 43);
    assert_eq!(both(&mut cache, "answer3"), (Some(37), Some(43)));
    assert_eq!(v2.decr("answer3", 1).unwrap(), 42);
    assert_eq!(both(&mut cache, "answer3"), (Some(37), Some(42)));

    cache.set(v("answer4", 1), &37, d).unwrap();
    cache.set(v("answer4", 2), &42, d).unwrap();
    assert_eq!(v2.incr(v("answer4", 1), 1).unwrap(), 38);
    assert_eq!(both(&mut cache, "answer4"), (Some(38), Some(42)));
    assert_eq!(v2.decr(v("answer4", 1), 1).unwrap(), 37);
    assert_eq!(both(&mut cache, "answer4"), (Some(37), Some(42)));
}

/// Django's `cache.get_many(keys)` or `cache.get_many(keys, version=v)`.
fn many(cache: &mut Shared<'_>, keys: &[&str], version: Option<i32>) -> HashMap<String, i32> {
    match version {
        None => cache.get_many_map(keys),
        Some(version) => cache.at_version(version).get_many_map(keys),
    }
    .unwrap()
}

#[test]
fn versioning_get_set_many() {
    let clock = clock();
    let table = store();
    let mut cache = on(&clock, &table, Config::new());
    let mut v2 = on(&clock, &table, Config::new().version(2));
    let d = Timeout::Default;
    let full = |a: &str, b: &str| -> HashMap<String, i32> {
        [(a.to_string(), 37), (b.to_string(), 42)].into()
    };
    let none = HashMap::new();

    // set, using default version = 1
    let k1 = ["ford1", "arthur1"];
    assert_eq!(
        cache.set_many([("ford1", &37), ("arthur1", &42)], d, |_, _| {}),
        Ok(0)
    );
    assert_eq!(many(&mut cache, &k1, None), full("ford1", "arthur1"));
    assert_eq!(many(&mut cache, &k1, Some(1)), full("ford1", "arthur1"));
    assert_eq!(many(&mut cache, &k1, Some(2)), none);
    assert_eq!(many(&mut v2, &k1, None), none);
    assert_eq!(many(&mut v2, &k1, Some(1)), full("ford1", "arthur1"));
    assert_eq!(many(&mut v2, &k1, Some(2)), none);

    // set, default version = 1, but manually override version = 2
    let k2 = ["ford2", "arthur2"];
    // cache.set_many({...}, version=2)
    cache
        .at_version(2)
        .set_many([("ford2", &37), ("arthur2", &42)], d, |_, _| {})
        .unwrap();
    assert_eq!(many(&mut cache, &k2, None), none);
    assert_eq!(many(&mut cache, &k2, Some(1)), none);
    assert_eq!(many(&mut cache, &k2, Some(2)), full("ford2", "arthur2"));
    assert_eq!(many(&mut v2, &k2, None), full("ford2", "arthur2"));
    assert_eq!(many(&mut v2, &k2, Some(1)), none);
    assert_eq!(many(&mut v2, &k2, Some(2)), full("ford2", "arthur2"));

    // v2 set, using default version = 2
    let k3 = ["ford3", "arthur3"];
    v2.set_many([("ford3", &37), ("arthur3", &42)], d, |_, _| {})
        .unwrap();
    assert_eq!(many(&mut cache, &k3, None), none);
    assert_eq!(many(&mut cache, &k3, Some(2)), full("ford3", "arthur3"));
    assert_eq!(many(&mut v2, &k3, None), full("ford3", "arthur3"));
    assert_eq!(many(&mut v2, &k3, Some(1)), none);

    // v2 set, default version = 2, but manually override version = 1
    let k4 = ["ford4", "arthur4"];
    v2.at_version(1)
        .set_many([("ford4", &37), ("arthur4", &42)], d, |_, _| {})
        .unwrap();
    assert_eq!(many(&mut cache, &k4, None), full("ford4", "arthur4"));
    assert_eq!(many(&mut cache, &k4, Some(2)), none);
    assert_eq!(many(&mut v2, &k4, None), none);
    assert_eq!(many(&mut v2, &k4, Some(1)), full("ford4", "arthur4"));
}

#[test]
fn incr_version_moves_the_value() {
    let clock = clock();
    let table = store();
    let mut cache = on(&clock, &table, Config::new());
    let mut v2 = on(&clock, &table, Config::new().version(2));
    let d = Timeout::Default;
    let at = |c: &mut Shared<'_>, k: &str| {
        (
            c.get::<i32>(k).unwrap(),
            c.get::<i32>(v(k, 1)).unwrap(),
            c.get::<i32>(v(k, 2)).unwrap(),
            c.get::<i32>(v(k, 3)).unwrap(),
        )
    };

    cache.set(v("answer", 2), &42, d).unwrap();
    assert_eq!(at(&mut cache, "answer"), (None, None, Some(42), None));
    assert_eq!(cache.incr_version(v("answer", 2), 1).unwrap(), 3);
    assert_eq!(at(&mut cache, "answer"), (None, None, None, Some(42)));

    v2.set("answer2", &42, d).unwrap();
    assert_eq!(at(&mut v2, "answer2"), (Some(42), None, Some(42), None));
    assert_eq!(v2.incr_version("answer2", 1).unwrap(), 3);
    assert_eq!(at(&mut v2, "answer2"), (None, None, None, Some(42)));

    assert_eq!(
        cache.incr_version("does_not_exist", 1),
        Err(Error::NotFound)
    );

    cache.set("null", &None::<u8>, d).unwrap();
    assert_eq!(cache.incr_version("null", 1).unwrap(), 2);
    assert_eq!(cache.get::<Option<u8>>(v("null", 2)).unwrap(), Some(None));
    assert_eq!(cache.get::<Option<u8>>("null").unwrap(), None);

    // A larger delta, and one that replaces what the target version held.
    cache.set("jump", &1, d).unwrap();
    cache.set(v("jump", 5), &5, d).unwrap();
    assert_eq!(cache.incr_version("jump", 4).unwrap(), 5);
    assert_eq!(cache.get::<i32>(v("jump", 5)).unwrap(), Some(1));
    assert_eq!(cache.get::<i32>("jump").unwrap(), None);
}

#[test]
fn decr_version_moves_the_value_back() {
    let clock = clock();
    let table = store();
    let mut cache = on(&clock, &table, Config::new());
    let mut v2 = on(&clock, &table, Config::new().version(2));
    let d = Timeout::Default;

    cache.set(v("answer", 2), &42, d).unwrap();
    assert_eq!(cache.decr_version(v("answer", 2), 1).unwrap(), 1);
    assert_eq!(cache.get::<i32>("answer").unwrap(), Some(42));
    assert_eq!(cache.get::<i32>(v("answer", 1)).unwrap(), Some(42));
    assert_eq!(cache.get::<i32>(v("answer", 2)).unwrap(), None);

    v2.set("answer2", &42, d).unwrap();
    assert_eq!(v2.decr_version("answer2", 1).unwrap(), 1);
    assert_eq!(v2.get::<i32>("answer2").unwrap(), None);
    assert_eq!(v2.get::<i32>(v("answer2", 1)).unwrap(), Some(42));
    assert_eq!(v2.get::<i32>(v("answer2", 2)).unwrap(), None);

    assert_eq!(
        cache.decr_version(v("does_not_exist", 2), 1),
        Err(Error::NotFound)
    );

    cache.set(v("null", 2), &None::<u8>, d).unwrap();
    assert_eq!(cache.decr_version(v("null", 2), 1).unwrap(), 1);
    assert_eq!(cache.get::<Option<u8>>(v("null", 1)).unwrap(), Some(None));

    // Versions may go to zero and below.
    cache.set("low", &7, d).unwrap();
    assert_eq!(cache.decr_version("low", 1).unwrap(), 0);
    assert_eq!(cache.decr_version(v("low", 0), 2).unwrap(), -2);
    assert_eq!(cache.get::<i32>(v("low", -2)).unwrap(), Some(7));
}

#[test]
fn incr_version_gives_the_default_timeout() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("forever", &1u8, Timeout::Never).unwrap();
    cache.set("short", &1u8, 5).unwrap();
    assert_eq!(cache.incr_version("forever", 1).unwrap(), 2);
    assert_eq!(cache.incr_version("short", 1).unwrap(), 2);
    clock.advance_millis(299_999);
    assert!(cache.has_key(v("forever", 2)).unwrap());
    assert!(cache.has_key(v("short", 2)).unwrap());
    clock.advance_millis(1);
    assert!(!cache.has_key(v("forever", 2)).unwrap());
    assert!(!cache.has_key(v("short", 2)).unwrap());

    // With a configured default timeout, that one.
    let config = Config::new().timeout(Timeout::Secs(60));
    let mut cache: Mem<'_> = MemCache::new(&clock, Table::new(), config);
    cache.set("forever", &1u8, Timeout::Never).unwrap();
    assert_eq!(cache.decr_version("forever", 1).unwrap(), 0);
    clock.advance_secs(59);
    assert!(cache.has_key(v("forever", 0)).unwrap());
    clock.advance_secs(1);
    assert!(!cache.has_key(v("forever", 0)).unwrap());
}

#[test]
fn incr_version_of_expired_key_is_not_found() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.set("k", &1u8, 1).unwrap();
    clock.advance_secs(1);
    assert_eq!(cache.incr_version("k", 1), Err(Error::NotFound));
    assert_eq!(cache.len(), 0);
}

#[test]
fn incr_version_never_culls() {
    // Documented difference: the entry moves in place.
    let clock = clock();
    let mut cache = culling(&clock, 3, 3);
    for k in ["a", "b", "c"] {
        cache.set(k, &1u8, 60).unwrap();
    }
    assert_eq!(cache.incr_version("a", 1).unwrap(), 2);
    assert_eq!(cache.len(), 3);
    assert!(cache.has_key("b").unwrap());
    assert!(cache.has_key("c").unwrap());
    assert!(cache.has_key(v("a", 2)).unwrap());
}

fn custom_key_func(
    prefix: &str,
    version: i32,
    key: &[u8],
    out: &mut KeyWriter<'_>,
) -> Result<(), KeyError> {
    out.push(b"CUSTOM-")?;
    out.push(prefix.as_bytes())?;
    out.push(b"-")?;
    out.push_int(version)?;
    out.push(b"-")?;
    out.push(key)
}

#[test]
fn custom_key_function() {
    let clock = clock();
    let table = store();
    let mut cache = on(&clock, &table, Config::new());
    let mut custom = on(&clock, &table, Config::new().key_function(custom_key_func));
    let mut custom2 = on(&clock, &table, Config::new().key_function(custom_key_func));
    let d = Timeout::Default;

    cache.set("answer1", &42, d).unwrap();
    assert_eq!(cache.get::<i32>("answer1").unwrap(), Some(42));
    assert_eq!(custom.get::<i32>("answer1").unwrap(), None);
    assert_eq!(custom2.get::<i32>("answer1").unwrap(), None);

    custom.set("answer2", &42, d).unwrap();
    assert_eq!(cache.get::<i32>("answer2").unwrap(), None);
    assert_eq!(custom.get::<i32>("answer2").unwrap(), Some(42));
    assert_eq!(custom2.get::<i32>("answer2").unwrap(), Some(42));

    let mut out = [0u8; 64];
    let n = custom.make_key(v("k", 3), &mut out).unwrap();
    assert_eq!(&out[..n], b"CUSTOM--3-k");
}

// Django's test settings give every alias the same LOCATION: `default`, `prefix`
// (KEY_PREFIX "cacheprefix"), `v2` (VERSION 2), `custom_key` and `custom_key2` (a
// KEY_FUNCTION, given as a callable and as a dotted path in Django). On the host, the same
// registry: aliases over one `SyncStore`.

type Location = Arc<SyncStore<Table<32, 64, 32>>>;

fn django_test_caches(location: &Location) -> Caches<StdClock, Location, 64> {
    let mut caches = Caches::new();
    for (alias, config) in [
        ("default", Config::new()),
        ("prefix", Config::new().key_prefix("cacheprefix")),
        ("v2", Config::new().version(2)),
        ("custom_key", Config::new().key_function(custom_key_func)),
        ("custom_key2", Config::new().key_function(custom_key_func)),
        ("short", Config::new().timeout(Timeout::Secs(1))),
    ] {
        caches.insert(
            alias,
            Cache::new(StdClock::new(), Arc::clone(location), config),
        );
    }
    caches
}

#[test]
fn django_aliases_over_one_location() {
    let location: Location = Arc::new(SyncStore::new(Table::new()));
    let caches = django_test_caches(&location);
    let cache = caches.default_cache().unwrap();
    let alias = |name: &str| caches.get(name).unwrap();
    let d = Timeout::Default;

    // test_prefix
    cache.lock().set("somekey", "value", d).unwrap();
    assert!(!alias("prefix").lock().has_key("somekey").unwrap());
    alias("prefix").lock().set("somekey", "value2", d).unwrap();
    assert_eq!(
        cache.lock().get::<String>("somekey").unwrap().as_deref(),
        Some("value")
    );
    assert_eq!(
        alias("prefix")
            .lock()
            .get::<String>("somekey")
            .unwrap()
            .as_deref(),
        Some("value2")
    );

    // test_cache_versioning_get_set, first two blocks
    cache.lock().set("answer1", &42, d).unwrap();
    assert_eq!(cache.lock().get::<i32>("answer1").unwrap(), Some(42));
    assert_eq!(alias("v2").lock().get::<i32>("answer1").unwrap(), None);
    assert_eq!(
        alias("v2").lock().get::<i32>(v("answer1", 1)).unwrap(),
        Some(42)
    );
    alias("v2").lock().set("answer3", &42, d).unwrap();
    assert_eq!(cache.lock().get::<i32>("answer3").unwrap(), None);
    assert_eq!(cache.lock().get::<i32>(v("answer3", 2)).unwrap(), Some(42));

    // test_custom_key_func
    assert_eq!(
        alias("custom_key").lock().get::<i32>("answer1").unwrap(),
        None
    );
    alias("custom_key").lock().set("answer2", &42, d).unwrap();
    assert_eq!(cache.lock().get::<i32>("answer2").unwrap(), None);
    assert_eq!(
        alias("custom_key2").lock().get::<i32>("answer2").unwrap(),
        Some(42)
    );

    // The default timeout is per cache, the store one.
    alias("short").lock().set("brief", &1u8, d).unwrap();
    assert!(cache.lock().has_key(v("brief", 1)).unwrap());

    // One store under every alias: its entries are everyone's.
    assert_eq!(location.try_lock(|t| t.len()), Some(6));
    assert_eq!(alias("v2").lock().len(), 6);
    alias("prefix").lock().clear().unwrap();
    assert_eq!(cache.lock().get::<i32>("answer1").unwrap(), None);
}

#[test]
fn django_aliases_over_one_location_from_many_threads() {
    let location: Location = Arc::new(SyncStore::new(Table::new()));
    let caches = Arc::new(django_test_caches(&location));
    caches
        .default_cache()
        .unwrap()
        .lock()
        .set("n", &0i64, Timeout::Never)
        .unwrap();
    let threads: Vec<_> = ["default", "v2", "prefix", "custom_key"]
        .into_iter()
        .map(|name| {
            let caches = Arc::clone(&caches);
            std::thread::spawn(move || {
                let cache = caches.get(name).unwrap();
                for _ in 0..100 {
                    // `default` and `v2` name the same entry `:1:n` (version 1 given); the
                    // other two make keys of their own, where there is no counter.
                    let counted = cache.lock().incr(v("n", 1), 1);
                    match name {
                        "default" | "v2" => assert!(counted.is_ok()),
                        _ => assert_eq!(counted, Err(Error::NotFound)),
                    }
                    cache.lock().set(name, &1u8, 60).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let cache = caches.default_cache().unwrap();
    assert_eq!(cache.lock().get::<i64>(v("n", 1)).unwrap(), Some(200));
    // The counter and one key per alias, in one store.
    assert_eq!(location.try_lock(|t| t.len()), Some(5));
}

/// On firmware: the store in a `static`, and a `SharedCache` per configuration over it.
static LOCATION: Store<Table<16, 32, 16>> = Store::new(Table::new());
static DEFAULT: SharedCache<TickClock, &Store<Table<16, 32, 16>>, 32> =
    SharedCache::new(Cache::new(
        Wrap32::new(1000, ticks as fn() -> u32),
        &LOCATION,
        Config::new(),
    ));
static V2: SharedCache<TickClock, &Store<Table<16, 32, 16>>, 32> = SharedCache::new(Cache::new(
    Wrap32::new(1000, ticks as fn() -> u32),
    &LOCATION,
    Config::new().version(2),
));

#[test]
fn static_caches_over_one_static_store() {
    DEFAULT.lock(|c| c.set("answer", &42u32, 60)).unwrap();
    assert_eq!(V2.lock(|c| c.get::<u32>("answer")).unwrap(), None);
    assert_eq!(V2.lock(|c| c.get::<u32>(v("answer", 1))).unwrap(), Some(42));
    assert_eq!(V2.lock(|c| c.incr_version(v("answer", 1), 1)).unwrap(), 2);
    assert_eq!(V2.lock(|c| c.get::<u32>("answer")).unwrap(), Some(42));
    assert_eq!(DEFAULT.lock(|c| c.get::<u32>("answer")).unwrap(), None);
}

/// A value whose `Serialize` reads a cache over the same store.
struct Nosy<'a>(&'a RefCell<Shared<'a>>);

impl Serialize for Nosy<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let inner = self.0.borrow_mut().get::<u8>("other");
        assert_eq!(inner, Err(Error::Busy));
        s.serialize_u8(1)
    }
}

#[test]
fn a_store_used_from_inside_its_own_call_is_busy_not_a_panic() {
    let clock = clock();
    let table = store();
    let mut cache = on(&clock, &table, Config::new());
    let other = RefCell::new(on(&clock, &table, Config::new().version(2)));
    cache.set("k", &Nosy(&other), 60).unwrap();
    assert_eq!(cache.get::<u8>("k").unwrap(), Some(1));
    assert_eq!(table.try_lock(|_| table.try_lock(|t| t.len())), Some(None));
    assert!(format!("{table:?}").contains("len: 1"));

    let sync = SyncStore::new(Table::<4, 16, 8>::new());
    assert_eq!(sync.try_lock(|_| sync.try_lock(|t| t.len())), Some(None));
    let shown = sync.try_lock(|_| format!("{sync:?}")).unwrap();
    assert!(shown.contains("<locked>"), "{shown}");
}

fn spaced_key_func(
    _prefix: &str,
    _version: i32,
    key: &[u8],
    out: &mut KeyWriter<'_>,
) -> Result<(), KeyError> {
    out.push(b"a ")?;
    out.push(key)
}

#[test]
fn custom_key_function_output_is_validated() {
    let clock = clock();
    let config = Config::new().key_function(spaced_key_func);
    let mut cache: Mem<'_> = MemCache::new(&clock, Table::new(), config);
    assert_eq!(cache.set("k", &1u8, 60), Err(Error::Key(KeyError::BadChar)));
    let lenient = config.key_policy(KeyPolicy::Lenient);
    let mut cache: Mem<'_> = MemCache::new(&clock, Table::new(), lenient);
    cache.set("k", &1u8, 60).unwrap();
    assert_eq!(cache.get::<u8>("k").unwrap(), Some(1));
}

// ---------------------------------------------------------------------------------------
// Key validation (memcached's rules, strict by default)

type Wide<'c> = MemCache<&'c ManualClock, 8, 255, 8>;

fn wide(clock: &ManualClock, policy: KeyPolicy) -> Wide<'_> {
    MemCache::new(clock, Table::new(), Config::new().key_policy(policy))
}

const BAD_CHAR_KEYS: [&str; 8] = [
    "key with spaces",
    "key\twith\ttab",
    "key\nnewline",
    "key\rreturn",
    "key\u{0}nul",
    "key\u{7f}del",
    "key\u{1f}unit",
    "清 space",
];

#[test]
fn invalid_key_characters_are_refused_by_every_operation() {
    let clock = clock();
    let mut cache = wide(&clock, KeyPolicy::Strict);
    let bad = Err(Error::Key(KeyError::BadChar));
    for key in BAD_CHAR_KEYS {
        assert_eq!(cache.set(key, &1u8, 60), bad, "{key:?}");
        assert_eq!(cache.add(key, &1u8, 60), bad.map(|()| false));
        assert_eq!(cache.get::<u8>(key), bad.map(|()| None));
        assert_eq!(cache.has_key(key), bad.map(|()| false));
        assert_eq!(cache.touch(key, 60), bad.map(|()| false));
        assert_eq!(cache.delete(key), bad.map(|()| false));
        assert_eq!(cache.incr(key, 1), bad.map(|()| 0));
        assert_eq!(cache.decr(key, 1), bad.map(|()| 0));
        assert_eq!(cache.incr_version(key, 1), bad.map(|()| 0));
        assert_eq!(cache.get_or_set(key, || 1u8, 60), bad.map(|()| 0));
        assert_eq!(cache.set_raw(key, b"x", 60), bad);
        assert_eq!(cache.get_many([key], |_, _: u8| {}), bad.map(|()| 0));
        assert_eq!(cache.delete_many([key]), bad.map(|()| 0));
        let mut errors = Vec::new();
        assert_eq!(
            cache.set_many([(key, &1u8)], 60, |_, e| errors.push(e)),
            bad.map(|()| 0)
        );
        assert!(errors.is_empty());
    }
    assert_eq!(cache.len(), 0);
}

#[test]
fn key_length_counts_the_made_key_in_characters() {
    let clock = clock();
    let mut cache = wide(&clock, KeyPolicy::Strict);
    // ":1:" + 247 = 250 characters: accepted; 248 gives 251: refused.
    let ok = "a".repeat(247);
    let long = "a".repeat(248);
    cache.set(ok.as_str(), &1u8, 60).unwrap();
    assert_eq!(cache.get::<u8>(ok.as_str()).unwrap(), Some(1));
    assert_eq!(
        cache.set(long.as_str(), &1u8, 60),
        Err(Error::Key(KeyError::TooLong))
    );
    assert_eq!(
        cache.get::<u8>(long.as_str()),
        Err(Error::Key(KeyError::TooLong))
    );
    // The version counts: ":10:" + 247 = 251.
    assert_eq!(
        cache.set(v(&ok, 10), &1u8, 60),
        Err(Error::Key(KeyError::TooLong))
    );
    let mut out = [0u8; 255];
    assert_eq!(cache.make_key(ok.as_str(), &mut out), Ok(250));

    // The prefix counts: "p:1:" + 247 = 251.
    let config = Config::new().key_prefix("p");
    let mut prefixed: Wide<'_> = MemCache::new(&clock, Table::new(), config);
    assert_eq!(
        prefixed.set(ok.as_str(), &1u8, 60),
        Err(Error::Key(KeyError::TooLong))
    );
    prefixed.set(&ok[1..], &1u8, 60).unwrap();
}

#[test]
fn non_ascii_characters_count_once() {
    let clock = clock();
    let mut cache = wide(&clock, KeyPolicy::Strict);
    // 250 characters in 252 bytes: accepted although longer than 250 bytes.
    let key = format!("{}清", "a".repeat(246));
    assert_eq!(key.len() + 3, 252);
    cache.set(key.as_str(), &1u8, 60).unwrap();
    assert_eq!(cache.get::<u8>(key.as_str()).unwrap(), Some(1));
    // 251 characters: refused.
    let key = format!("{}清清", "a".repeat(246));
    assert_eq!(
        cache.set(key.as_str(), &1u8, 60),
        Err(Error::Key(KeyError::TooLong))
    );
    // CJK keys are fine.
    let cjk = "清".repeat(80);
    cache.set(cjk.as_str(), &2u8, 60).unwrap();
    assert_eq!(cache.get::<u8>(cjk.as_str()).unwrap(), Some(2));
}

#[test]
fn the_length_rule_is_reported_before_the_key_capacity() {
    // A 64-byte key capacity: a made key over 250 characters breaks memcached's length
    // rule, and says so, rather than only "too long for this cache".
    let clock = clock();
    let mut cache = mem(&clock);
    let long = "a".repeat(248); // ":1:" + 248 = 251 characters
    let too_long = Err(Error::Key(KeyError::TooLong));
    assert_eq!(cache.set(long.as_str(), &1u8, 60), too_long);
    assert_eq!(cache.get::<u8>(long.as_str()), too_long.map(|()| None));
    assert_eq!(cache.delete(long.as_str()), too_long.map(|()| false));
    // Through a non-default version and a custom key function too (the general path).
    assert_eq!(cache.set(v(&long, 7), &1u8, 60), too_long);
    let custom = Config::new().key_function(tickcache::key::default_key_fn);
    let mut custom: Mem<'_> = MemCache::new(&clock, Table::new(), custom);
    assert_eq!(custom.set(long.as_str(), &1u8, 60), too_long);
    // Length first, then characters, then capacity (Django's order for the first two).
    let spaced_and_long = format!("a b{}", "c".repeat(300));
    let spaced = format!("a b{}", "c".repeat(100));
    let plain = "c".repeat(100);
    for cache in [&mut cache, &mut custom] {
        assert_eq!(cache.set(spaced_and_long.as_str(), &1u8, 60), too_long);
        assert_eq!(
            cache.set(spaced.as_str(), &1u8, 60),
            Err(Error::Key(KeyError::BadChar))
        );
        assert_eq!(
            cache.set(plain.as_str(), &1u8, 60),
            Err(Error::Key(KeyError::OverCapacity))
        );
    }
    let mut out = [0u8; 64];
    assert_eq!(
        cache.make_key(long.as_str(), &mut out),
        Err(KeyError::TooLong)
    );
    // 251 characters of non-ASCII text that fit no table (over 255 bytes) are TooLong; 250
    // of them are only over the capacity.
    let cjk = "清".repeat(248);
    assert_eq!(cache.set(cjk.as_str(), &1u8, 60), too_long);
    let cjk = "清".repeat(247);
    assert_eq!(
        cache.set(cjk.as_str(), &1u8, 60),
        Err(Error::Key(KeyError::OverCapacity))
    );
    // Lenient: only the capacity applies.
    let lenient = Config::new().key_policy(KeyPolicy::Lenient);
    let mut lenient: Mem<'_> = MemCache::new(&clock, Table::new(), lenient);
    assert_eq!(
        lenient.set(long.as_str(), &1u8, 60),
        Err(Error::Key(KeyError::OverCapacity))
    );
    assert_eq!(cache.len(), 0);
}

#[test]
fn key_errors_say_which_rule_failed() {
    let too_long = KeyError::TooLong.to_string();
    assert!(
        too_long.contains("length rule") && too_long.contains("250"),
        "{too_long}"
    );
    let bad = KeyError::BadChar.to_string();
    assert!(
        bad.contains("character rule") && bad.contains("space"),
        "{bad}"
    );
    let over = KeyError::OverCapacity.to_string();
    assert!(over.contains("capacity"), "{over}");
    assert_eq!(
        Error::<Infallible>::Key(KeyError::TooLong).to_string(),
        format!("invalid key: {too_long}")
    );
}

#[test]
fn lenient_policy_accepts_what_memcached_would_refuse() {
    // Django's locmem only warns; a liberal backend round-trips such keys.
    let clock = clock();
    let mut cache = wide(&clock, KeyPolicy::Lenient);
    for (i, key) in BAD_CHAR_KEYS.iter().enumerate() {
        cache.set(*key, &(i as u8), 60).unwrap();
    }
    for (i, key) in BAD_CHAR_KEYS.iter().enumerate() {
        assert_eq!(cache.get::<u8>(*key).unwrap(), Some(i as u8), "{key:?}");
    }
    let long_with_spaces = format!("key with spaces {}", "x".repeat(236));
    assert!(long_with_spaces.len() + 3 > 250);
    cache.set(long_with_spaces.as_str(), &9u8, 60).unwrap();
    assert_eq!(cache.get::<u8>(long_with_spaces.as_str()).unwrap(), Some(9));
    // Capacity still applies under either policy.
    let too_big = "x".repeat(253);
    assert_eq!(
        cache.set(too_big.as_str(), &1u8, 60),
        Err(Error::Key(KeyError::OverCapacity))
    );
}

// ---------------------------------------------------------------------------------------
// get_or_set

#[test]
fn get_or_set() {
    let clock = clock();
    let mut cache = mem(&clock);
    assert_eq!(cache.get::<String>("projector").unwrap(), None);
    assert_eq!(
        cache
            .get_or_set("projector", || "4".to_string(), Timeout::Default)
            .unwrap(),
        "4"
    );
    assert_eq!(text(&mut cache, "projector").as_deref(), Some("4"));
    // A hit returns what is stored, not the default.
    assert_eq!(
        cache
            .get_or_set("projector", || "5".to_string(), Timeout::Default)
            .unwrap(),
        "4"
    );
}

#[test]
fn get_or_set_calls_the_default_only_on_a_miss() {
    let clock = clock();
    let mut cache = mem(&clock);
    let calls = Cell::new(0);
    let make = || {
        calls.set(calls.get() + 1);
        7i64
    };
    assert_eq!(cache.get_or_set("mykey", make, 60).unwrap(), 7);
    assert_eq!(calls.get(), 1);
    assert_eq!(cache.get_or_set("mykey", make, 60).unwrap(), 7);
    assert_eq!(calls.get(), 1);
    clock.advance_secs(60);
    assert_eq!(cache.get_or_set("mykey", make, 60).unwrap(), 7);
    assert_eq!(calls.get(), 2);
}

#[test]
fn get_or_set_stores_none() {
    let clock = clock();
    let mut cache = mem(&clock);
    assert_eq!(
        cache
            .get_or_set::<Option<u32>, _>("null", || None, Timeout::Default)
            .unwrap(),
        None
    );
    // Later reads see the stored None, not a miss.
    assert_eq!(cache.get::<Option<u32>>("null").unwrap(), Some(None));
    assert!(cache.has_key("null").unwrap());
    let calls = Cell::new(0);
    let again = cache
        .get_or_set::<Option<u32>, _>(
            "null",
            || {
                calls.set(1);
                Some(5)
            },
            Timeout::Default,
        )
        .unwrap();
    assert_eq!(again, None);
    assert_eq!(calls.get(), 0);
}

#[test]
fn get_or_set_with_zero_timeout_returns_the_default_and_stores_nothing() {
    let clock = clock();
    let mut cache = mem(&clock);
    assert_eq!(
        cache
            .get_or_set("key", || "default".to_string(), 0)
            .unwrap(),
        "default"
    );
    assert_eq!(text(&mut cache, "key"), None);
    assert!(!cache.has_key("key").unwrap());
    assert_eq!(cache.len(), 0);
}

#[test]
fn get_or_set_version() {
    let clock = clock();
    let mut cache = mem(&clock);
    assert_eq!(
        cache
            .get_or_set(v("brian", 2), || 1979i32, Timeout::Default)
            .unwrap(),
        1979
    );
    assert_eq!(cache.get::<i32>("brian").unwrap(), None);
    assert_eq!(cache.get::<i32>(v("brian", 1)).unwrap(), None);
    assert_eq!(cache.get::<i32>(v("brian", 2)).unwrap(), Some(1979));
    assert_eq!(
        cache
            .get_or_set(v("brian", 3), || 1980i32, Timeout::Default)
            .unwrap(),
        1980
    );
}

#[test]
fn get_or_set_keeps_the_timeout() {
    let clock = clock();
    let mut cache = mem(&clock);
    cache.get_or_set("k", || 1u8, 10).unwrap();
    clock.advance_secs(9);
    assert!(cache.has_key("k").unwrap());
    clock.advance_secs(1);
    assert!(!cache.has_key("k").unwrap());
}

// ---------------------------------------------------------------------------------------
// The dummy backend (Django's DummyCache)

type DummyCache<'c> = Cache<&'c ManualClock, Dummy, 64>;

#[test]
fn dummy_backend_stores_nothing() {
    let clock = clock();
    let mut cache: DummyCache<'_> = Cache::new(&clock, Dummy, Config::new());
    let d = Timeout::Default;
    cache.set("key", "value", d).unwrap();
    assert_eq!(cache.get::<String>("key").unwrap(), None);
    assert!(cache.add("addkey1", "value", d).unwrap());
    assert!(cache.add("addkey1", "newvalue", d).unwrap());
    assert_eq!(cache.get::<String>("addkey1").unwrap(), None);
    assert_eq!(cache.get::<String>("does_not_exist").unwrap(), None);
    let got: HashMap<String, String> = cache.get_many_map(&["a", "c", "d"]).unwrap();
    assert!(got.is_empty());
    assert_eq!(cache.get_many(["a", "b"], |_, _: u8| {}).unwrap(), 0);
    assert!(!cache.delete("key").unwrap());
    assert!(!cache.has_key("key").unwrap());
    assert!(!cache.touch("key", 60).unwrap());
    assert_eq!(cache.incr("answer", 1), Err(Error::NotFound));
    assert_eq!(cache.decr("answer", 1), Err(Error::NotFound));
    assert_eq!(cache.incr_version("answer", 1), Err(Error::NotFound));
    assert_eq!(cache.decr_version("answer", 1), Err(Error::NotFound));
    assert_eq!(
        cache.set_many([("a", &1u8), ("b", &2u8)], d, |_, _| {}),
        Ok(0)
    );
    let items: HashMap<&str, u8> = [("a", 1), ("b", 2)].into();
    assert!(cache.set_many_map(&items, d).unwrap().is_empty());
    assert_eq!(cache.delete_many(["a", "b"]).unwrap(), 0);
    assert_eq!(cache.delete_many(std::iter::empty::<&str>()).unwrap(), 0);
    cache.set_raw("raw", b"bytes", d).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(cache.get_raw("raw", &mut buf).unwrap(), None);
    cache.clear().unwrap();
    cache.close().unwrap();
    assert_eq!(cache.len(), 0);
    assert!(cache.is_empty());
}

#[test]
fn dummy_backend_get_or_set_returns_the_default() {
    let clock = clock();
    let mut cache: DummyCache<'_> = Cache::new(&clock, Dummy, Config::new());
    let calls = Cell::new(0);
    let make = || {
        calls.set(calls.get() + 1);
        "default".to_string()
    };
    assert_eq!(cache.get_or_set("mykey", make, 60).unwrap(), "default");
    assert_eq!(cache.get_or_set("mykey", make, 60).unwrap(), "default");
    assert_eq!(calls.get(), 2);
    assert_eq!(
        cache
            .get_or_set::<Option<u8>, _>("null", || None, 60)
            .unwrap(),
        None
    );
}

#[test]
fn dummy_backend_still_validates_keys() {
    let clock = clock();
    let mut cache: DummyCache<'_> = Cache::new(&clock, Dummy, Config::new());
    let bad = Error::Key(KeyError::BadChar);
    assert_eq!(cache.set("key with spaces", &1u8, 60), Err(bad));
    assert_eq!(cache.get::<u8>("key with spaces"), Err(bad));
    assert_eq!(cache.add("key\u{7f}", &1u8, 60), Err(bad));
    assert_eq!(cache.incr("key\n", 1), Err(bad));
    let long = "a".repeat(62);
    assert_eq!(
        cache.set(long.as_str(), &1u8, 60),
        Err(Error::Key(KeyError::OverCapacity))
    );
    let mut wide: Cache<&ManualClock, Dummy, 255> = Cache::new(&clock, Dummy, Config::new());
    let long = "a".repeat(248);
    assert_eq!(
        wide.set(long.as_str(), &1u8, 60),
        Err(Error::Key(KeyError::TooLong))
    );
}

// ---------------------------------------------------------------------------------------
// Sharing: critical sections, threads, and the registry of caches by alias

#[test]
fn shared_cache_runs_calls_in_a_critical_section() {
    let clock = clock();
    let shared = SharedCache::new(mem(&clock));
    shared.lock(|c| c.set("boots", &1u32, 60)).unwrap();
    assert_eq!(shared.lock(|c| c.incr("boots", 1)).unwrap(), 2);
    assert_eq!(shared.lock(|c| c.get::<u32>("boots")).unwrap(), Some(2));
    // A re-entrant call is refused instead of panicking.
    let nested = shared.lock(|_| shared.try_lock(|c| c.len()));
    assert_eq!(nested, None);
    assert_eq!(shared.try_lock(|c| c.len()), Some(1));
    clock.advance_secs(60);
    assert_eq!(shared.lock(|c| c.get::<u32>("boots")).unwrap(), None);
}

static TICKS: AtomicU32 = AtomicU32::new(0);

fn ticks() -> u32 {
    TICKS.load(Ordering::Relaxed)
}

type TickClock = Wrap32<fn() -> u32>;
static COUNTERS: SharedCache<TickClock, Table<8, 16, 8>, 16> = SharedCache::new(MemCache::new(
    Wrap32::new(1000, ticks as fn() -> u32),
    Table::new(),
    Config::new(),
));

#[test]
fn static_shared_cache_from_many_threads() {
    COUNTERS
        .lock(|c| c.set("hits", &0i64, Timeout::Never))
        .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                for _ in 0..250 {
                    COUNTERS.lock(|c| c.incr("hits", 1)).unwrap();
                    TICKS.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(COUNTERS.lock(|c| c.get::<i64>("hits")).unwrap(), Some(1000));
}

type HostCache = Cache<StdClock, Table<16, 32, 32>, 32>;

fn host(config: Config) -> HostCache {
    Cache::new(StdClock::new(), Table::new(), config)
}

#[test]
fn sync_cache_is_shared_between_threads() {
    let mut caches: Caches<StdClock, Table<16, 32, 32>, 32> = Caches::new();
    let cache = caches.insert("default", host(Config::new()));
    cache.lock().set("n", &0i64, Timeout::Never).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let cache = Arc::clone(&cache);
            std::thread::spawn(move || {
                for _ in 0..100 {
                    cache.lock().incr("n", 1).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(cache.lock().get::<i64>("n").unwrap(), Some(400));
}

#[test]
fn caches_registry_by_alias() {
    let mut caches: Caches<StdClock, Table<16, 32, 32>, 32> = Caches::new();
    caches.insert("default", host(Config::new()));
    caches.insert("other", host(Config::new().key_prefix("other")));

    // The same instance every time.
    let a = caches.get("default").unwrap();
    let b = caches.get("default").unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert!(Arc::ptr_eq(&a, &caches.default_cache().unwrap()));
    a.lock().set("k", "v", 60).unwrap();
    assert_eq!(b.lock().get::<String>("k").unwrap().as_deref(), Some("v"));
    // Different aliases are different caches.
    let other = caches.get("other").unwrap();
    assert!(!Arc::ptr_eq(&a, &other));
    assert_eq!(other.lock().get::<String>("k").unwrap(), None);

    // An unknown alias, with Django's message.
    let err = caches.get("x").unwrap_err();
    assert_eq!(err.to_string(), "The connection 'x' doesn't exist.");
    assert_eq!(err.0, "x");

    let mut aliases: Vec<&str> = caches.aliases().collect();
    aliases.sort_unstable();
    assert_eq!(aliases, ["default", "other"]);
    caches.close_all().unwrap();
    assert_eq!(a.lock().get::<String>("k").unwrap().as_deref(), Some("v"));
}

#[test]
fn caches_registry_without_default_alias() {
    let caches: Caches<StdClock, Table<16, 32, 32>, 32> = Caches::new();
    let err = caches.default_cache().unwrap_err();
    assert_eq!(err.to_string(), "The connection 'default' doesn't exist.");
}

#[test]
fn shared_caches_are_debug() {
    let mut caches: Caches<StdClock, Table<16, 32, 32>, 32> = Caches::new();
    let cache = caches.insert("default", host(Config::new()));
    cache.lock().set("k", "v", 60).unwrap();
    let shown = format!("{cache:?}");
    assert!(shown.starts_with("SyncCache"), "{shown}");
    assert!(shown.contains("len: 1"), "{shown}");
    // While another holder has the lock, Debug neither blocks nor panics.
    let guard = cache.lock();
    assert!(format!("{cache:?}").contains("<locked>"));
    drop(guard);
    assert!(format!("{caches:?}").contains("\"default\""));
}

#[test]
fn string_keys_convert() {
    let clock = clock();
    let mut cache = mem(&clock);
    let owned = String::from("post_1");
    cache.set(&owned, "a post", 60).unwrap();
    assert_eq!(text(&mut cache, "post_1").as_deref(), Some("a post"));
    let mut bounded = heapless::String::<16>::new();
    bounded.push_str("post_").unwrap();
    bounded.push('1').unwrap();
    assert!(cache.has_key(&bounded).unwrap());
    assert_eq!(
        cache.get::<String>(Key::from(&owned).version(2)).unwrap(),
        None
    );
    assert_eq!(cache.delete_many([&owned, &owned]).unwrap(), 1);
}

#[test]
fn owned_strings_and_versioned_pairs_are_keys() {
    let clock = clock();
    let mut cache = mem(&clock);
    for id in 0..3 {
        cache.set(format!("post:{id}"), &id, 60).unwrap();
        cache
            .set((format!("post:{id}"), 2), &(id * 10), 60)
            .unwrap();
    }
    assert_eq!(cache.get::<i32>("post:1").unwrap(), Some(1));
    assert_eq!(cache.get::<i32>(("post:1", 2)).unwrap(), Some(10));
    assert_eq!(cache.get::<i32>(v("post:2", 2)).unwrap(), Some(20));
    assert!(cache.delete(String::from("post:0")).unwrap());
    assert_eq!(cache.incr_version(("post:2", 2), 1).unwrap(), 3);
    // Pairs in batches: `Key::from((key, version))`.
    let mut sum = 0;
    cache
        .get_many(
            [("post:1", 1), ("post:1", 2), ("post:2", 3)],
            |_, n: i32| sum += n,
        )
        .unwrap();
    assert_eq!(sum, 1 + 10 + 20);
    assert_eq!(Key::from(("k", 4)), v("k", 4));
    assert_eq!(
        cache.delete_many([("post:1", 2), ("post:2", 3)]).unwrap(),
        2
    );
}

#[test]
fn shorthands_use_django_defaults() {
    let clock = clock();
    let config = Config::new().timeout(Timeout::Secs(10));
    let mut cache: Mem<'_> = MemCache::new(&clock, Table::new(), config);
    cache.set_default("n", &1i64).unwrap();
    assert!(!cache.add_default("n", &5i64).unwrap());
    assert_eq!(cache.incr_one("n").unwrap(), 2);
    assert_eq!(cache.decr_one("n").unwrap(), 1);
    assert_eq!(cache.decr_one("missing"), Err(Error::NotFound));
    clock.advance_secs(9);
    assert!(cache.has_key("n").unwrap());
    clock.advance_secs(1);
    assert!(
        !cache.has_key("n").unwrap(),
        "the configured default timeout"
    );
    assert!(cache.add_default("n", &5i64).unwrap());
}

#[test]
fn every_public_type_is_debug() {
    let clock = clock();
    let shared = SharedCache::new(mem(&clock));
    shared.with(|c| c.set("k", &1u8, 60)).unwrap();
    let shown = format!("{shared:?}");
    assert!(
        shown.contains("SharedCache") && shown.contains("len: 1"),
        "{shown}"
    );
    let busy = shared.lock(|_| format!("{shared:?}"));
    assert!(busy.contains("<busy>"), "{busy}");
    let table = Table::<4, 8, 8>::new();
    assert_eq!(
        format!("{table:?}"),
        "Table { len: 0, entries: 4, key_bytes: 8, value_bytes: 8, .. }"
    );
    let store = Store::new(Table::<4, 8, 8>::new());
    assert!(format!("{store:?}").contains("len: 0"));
    let policy = KeyPolicy::Warn(|_, _| {});
    assert!(format!("{policy:?}").starts_with("Warn("));
    let sync = SyncStore::new(Table::<4, 8, 8>::new());
    assert!(format!("{sync:?}").contains("SyncStore"));
}
