//! Bad input: each one gives its documented error, and nothing else is lost.

use std::cell::Cell;
use std::time::Duration;

use serde::{Serialize, Serializer};
use tickcache::{
    Config, Error, Key, KeyError, KeyPolicy, ManualClock, MemCache, Table, Timeout, Wrap32,
};

/// 16 entries, made keys up to 16 bytes, values up to 8 bytes.
type Small<'c> = MemCache<&'c ManualClock, 16, 16, 8>;

fn small(clock: &ManualClock) -> Small<'_> {
    MemCache::new(clock, Table::new(), Config::new())
}

/// Stores the bystanders every test checks afterwards.
fn seed(cache: &mut Small<'_>) {
    cache.set("int", &7i64, 60).unwrap();
    cache.set("text", "abc", Timeout::Never).unwrap();
    cache.set_raw("raw", b"xyz", 60).unwrap();
}

/// The bystanders are all still there, unchanged.
#[track_caller]
fn intact(cache: &mut Small<'_>) {
    assert_eq!(cache.get::<i64>("int").unwrap(), Some(7));
    assert_eq!(cache.get::<String>("text").unwrap().as_deref(), Some("abc"));
    let mut buf = [0u8; 8];
    let n = cache.get_raw("raw", &mut buf).unwrap().unwrap();
    assert_eq!(&buf[..n], b"xyz");
}

// ---------------------------------------------------------------------------------------
// Keys

#[test]
fn invalid_keys_change_nothing() {
    let clock = ManualClock::new(1000);
    let mut cache = small(&clock);
    seed(&mut cache);
    let bad = Error::Key(KeyError::BadChar);
    for key in ["a b", "a\tb", "\n", "a\u{0}", "a\u{7f}", " "] {
        assert_eq!(cache.set(key, &1u8, 60), Err(bad));
        assert_eq!(cache.add(key, &1u8, 60), Err(bad));
        assert_eq!(cache.set_raw(key, b"1", 60), Err(bad));
        assert_eq!(cache.get::<u8>(key), Err(bad));
        assert_eq!(cache.touch(key, 60), Err(bad));
        assert_eq!(cache.delete(key), Err(bad));
        assert_eq!(cache.has_key(key), Err(bad));
        assert_eq!(cache.incr(key, 1), Err(bad));
        assert_eq!(cache.incr_version(key, 1), Err(bad));
        assert_eq!(cache.decr_version(key, 1), Err(bad));
        let called = Cell::new(false);
        let r = cache.get_or_set(
            key,
            || {
                called.set(true);
                1u8
            },
            60,
        );
        assert_eq!(r, Err(bad));
        assert!(!called.get(), "the default is not computed for a bad key");
        assert_eq!(cache.len(), 3);
        intact(&mut cache);
    }
}

#[test]
fn a_bad_key_in_a_batch() {
    let clock = ManualClock::new(1000);
    let mut cache = small(&clock);
    seed(&mut cache);
    let bad = Error::Key(KeyError::BadChar);
    // set_many refuses the whole batch before storing anything.
    let mut failed = Vec::new();
    let n = cache.set_many([("a", &1u8), ("b c", &2u8), ("d", &3u8)], 60, |k, e| {
        failed.push((k.key.to_vec(), e))
    });
    assert_eq!(n, Err(bad));
    assert!(failed.is_empty());
    assert!(!cache.has_key("a").unwrap());
    assert!(!cache.has_key("d").unwrap());
    cache.set("a", &1u8, 60).unwrap();
    // get_many and delete_many refuse it, even after valid keys.
    assert_eq!(cache.get_many(["a", "b c"], |_, _: u8| {}), Err(bad));
    assert_eq!(cache.delete_many(["a", "b c", "int"]), Err(bad));
    assert_eq!(cache.get::<u8>("a").unwrap(), Some(1));
    intact(&mut cache);
}

#[test]
fn oversized_made_keys_are_refused_never_truncated() {
    let clock = ManualClock::new(1000);
    let mut cache = small(&clock);
    seed(&mut cache);
    let over = Err(Error::Key(KeyError::OverCapacity));
    // ":1:" + 13 = 16 bytes fits exactly.
    let fits = "k".repeat(13);
    let longer = "k".repeat(14);
    cache.set(fits.as_str(), &1u8, 60).unwrap();
    assert_eq!(cache.set(longer.as_str(), &2u8, 60), over);
    assert_eq!(cache.add(longer.as_str(), &2u8, 60), over.map(|()| false));
    assert_eq!(cache.set_raw(longer.as_str(), b"2", 60), over);
    assert_eq!(cache.get::<u8>(longer.as_str()), over.map(|()| None));
    assert_eq!(cache.has_key(longer.as_str()), over.map(|()| false));
    assert_eq!(cache.delete(longer.as_str()), over.map(|()| false));
    assert_eq!(cache.incr(longer.as_str(), 1), over.map(|()| 0));
    assert_eq!(cache.touch(longer.as_str(), 1), over.map(|()| false));
    // Were the key truncated, these would have hit or replaced the 13-byte key.
    assert_eq!(cache.get::<u8>(fits.as_str()).unwrap(), Some(1));
    // The version counts toward the limit.
    assert_eq!(cache.set(Key::new(&fits).version(10), &3u8, 60), over);
    assert_eq!(cache.get::<u8>(fits.as_str()).unwrap(), Some(1));
    assert_eq!(cache.len(), 4);
    intact(&mut cache);
}

#[test]
fn oversized_keys_under_the_lenient_policy() {
    let clock = ManualClock::new(1000);
    let config = Config::new().key_policy(KeyPolicy::Lenient);
    let mut cache: Small<'_> = MemCache::new(&clock, Table::new(), config);
    seed(&mut cache);
    assert_eq!(
        cache.set("with space and more", &1u8, 60),
        Err(Error::Key(KeyError::OverCapacity))
    );
    cache.set("with space", &1u8, 60).unwrap();
    assert_eq!(cache.get::<u8>("with space").unwrap(), Some(1));
    intact(&mut cache);
}

#[test]
fn the_prefix_counts_toward_the_capacity() {
    let clock = ManualClock::new(1000);
    let config = Config::new().key_prefix("site");
    let mut cache: Small<'_> = MemCache::new(&clock, Table::new(), config);
    // "site:1:" + 9 = 16 fits; 10 does not.
    cache.set("k".repeat(9).as_str(), &1u8, 60).unwrap();
    assert_eq!(
        cache.set("k".repeat(10).as_str(), &1u8, 60),
        Err(Error::Key(KeyError::OverCapacity))
    );
    assert_eq!(cache.len(), 1);
}

#[test]
fn incr_version_into_an_oversized_key_leaves_the_entry() {
    let clock = ManualClock::new(1000);
    let mut cache = small(&clock);
    seed(&mut cache);
    // ":9:" + 13 = 16 bytes; version 10 would need 17.
    let key = "k".repeat(13);
    cache.set(Key::new(&key).version(9), &5u8, 60).unwrap();
    assert_eq!(
        cache.incr_version(Key::new(&key).version(9), 1),
        Err(Error::Key(KeyError::OverCapacity))
    );
    assert_eq!(cache.get::<u8>(Key::new(&key).version(9)).unwrap(), Some(5));
    intact(&mut cache);
}

#[test]
fn version_overflow_is_an_error() {
    let clock = ManualClock::new(1000);
    let mut cache: MemCache<_, 8, 32, 8> = MemCache::new(&clock, Table::new(), Config::new());
    cache
        .set(Key::new("k").version(i32::MAX), &1u8, 60)
        .unwrap();
    assert_eq!(
        cache.incr_version(Key::new("k").version(i32::MAX), 1),
        Err(Error::Overflow)
    );
    assert_eq!(
        cache.get::<u8>(Key::new("k").version(i32::MAX)).unwrap(),
        Some(1)
    );
    cache
        .set(Key::new("m").version(i32::MIN), &2u8, 60)
        .unwrap();
    assert_eq!(
        cache.decr_version(Key::new("m").version(i32::MIN), 1),
        Err(Error::Overflow)
    );
    assert_eq!(
        cache.get::<u8>(Key::new("m").version(i32::MIN)).unwrap(),
        Some(2)
    );
}

// ---------------------------------------------------------------------------------------
// Values

#[test]
fn a_value_at_the_capacity_fits_one_byte_more_does_not() {
    let clock = ManualClock::new(1000);
    let mut cache = small(&clock);
    // Raw bytes: V = 8.
    cache.set_raw("r", &[1u8; 8], 60).unwrap();
    assert_eq!(
        cache.set_raw("r2", &[1u8; 9], 60),
        Err(Error::ValueTooLarge)
    );
    // A string: one length byte plus 7 bytes.
    cache.set("s", "1234567", 60).unwrap();
    assert_eq!(cache.set("s2", "12345678", 60), Err(Error::ValueTooLarge));
    assert_eq!(cache.len(), 2);
}

#[test]
fn an_oversized_set_removes_the_old_value_only() {
    let clock = ManualClock::new(1000);
    let mut cache = small(&clock);
    seed(&mut cache);
    cache.set("victim", "old", 60).unwrap();
    assert_eq!(
        cache.set("victim", "much too long", 60),
        Err(Error::ValueTooLarge)
    );
    // memcached's rule: no stale value stays readable.
    assert_eq!(cache.get::<String>("victim").unwrap(), None);
    assert!(!cache.has_key("victim").unwrap());
    assert_eq!(cache.len(), 3);
    intact(&mut cache);

    cache.set_raw("victim", b"old", 60).unwrap();
    assert_eq!(
        cache.set_raw("victim", &[0u8; 9], 60),
        Err(Error::ValueTooLarge)
    );
    let mut buf = [0u8; 16];
    assert_eq!(cache.get_raw("victim", &mut buf).unwrap(), None);
    assert_eq!(cache.len(), 3);
    intact(&mut cache);

    // A new key that does not fit is simply not stored.
    assert_eq!(
        cache.set("fresh", "much too long", 60),
        Err(Error::ValueTooLarge)
    );
    assert!(!cache.has_key("fresh").unwrap());
    intact(&mut cache);
}

#[test]
fn an_oversized_add_of_a_live_key_is_refused_and_keeps_it() {
    let clock = ManualClock::new(1000);
    let mut cache = small(&clock);
    seed(&mut cache);
    // The key is live, so add refuses before looking at the value.
    assert_eq!(cache.add("text", "much too long", 60), Ok(false));
    // A missing key: the value does not fit.
    assert_eq!(
        cache.add("new", "much too long", 60),
        Err(Error::ValueTooLarge)
    );
    assert!(!cache.has_key("new").unwrap());
    // An expired key: the stale entry is gone too.
    cache.set("stale", "old", 1).unwrap();
    clock.advance_secs(1);
    assert_eq!(
        cache.add("stale", "much too long", 60),
        Err(Error::ValueTooLarge)
    );
    assert!(!cache.has_key("stale").unwrap());
    assert_eq!(cache.len(), 3);
    intact(&mut cache);
}

#[test]
fn an_oversized_insert_into_a_full_table_culls_nothing() {
    let clock = ManualClock::new(1000);
    for freq in [0u16, 1, 3] {
        let mut cache: Small<'_> =
            MemCache::new(&clock, Table::with_culling(4, freq), Config::new());
        seed(&mut cache);
        cache.set("fourth", &4u8, 60).unwrap();
        assert_eq!(cache.len(), 4);
        assert_eq!(
            cache.set("fifth", "much too long", 60),
            Err(Error::ValueTooLarge)
        );
        assert_eq!(
            cache.set_raw("fifth", &[0u8; 9], 60),
            Err(Error::ValueTooLarge)
        );
        assert_eq!(
            cache.add("fifth", "much too long", 60),
            Err(Error::ValueTooLarge)
        );
        assert_eq!(cache.len(), 4, "cull frequency {freq}");
        assert_eq!(cache.get::<u8>("fourth").unwrap(), Some(4));
        intact(&mut cache);
    }
}

struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("cannot serialize"))
    }
}

#[test]
fn a_value_that_fails_to_serialize() {
    // Django's test_set_fail_on_pickleerror: the error comes out and nothing stale stays.
    let clock = ManualClock::new(1000);
    let mut cache = small(&clock);
    seed(&mut cache);
    cache.set("victim", &1u8, 60).unwrap();
    assert_eq!(
        cache.set("victim", &Unserializable, 60),
        Err(Error::Serialize)
    );
    assert_eq!(cache.get::<u8>("victim").unwrap(), None);
    assert_eq!(
        cache.add("other", &Unserializable, 60),
        Err(Error::Serialize)
    );
    assert!(!cache.has_key("other").unwrap());
    assert_eq!(cache.len(), 3);
    intact(&mut cache);
}

#[test]
fn reading_the_wrong_type() {
    let clock = ManualClock::new(1000);
    let mut cache = small(&clock);
    seed(&mut cache);
    // A string read as a number.
    assert_eq!(cache.get::<u32>("text"), Err(Error::WrongType));
    // An integer that does not fit the type asked for.
    cache.set("big", &300i64, 60).unwrap();
    assert_eq!(cache.get::<u8>("big"), Err(Error::WrongType));
    assert_eq!(cache.get::<i8>("big"), Err(Error::WrongType));
    assert_eq!(cache.get::<u16>("big").unwrap(), Some(300));
    cache.set("neg", &-1i64, 60).unwrap();
    assert_eq!(cache.get::<u64>("neg"), Err(Error::WrongType));
    assert_eq!(cache.get::<u32>("neg"), Err(Error::WrongType));
    // An integer read as text, raw bytes read as anything typed.
    assert_eq!(cache.get::<String>("int"), Err(Error::WrongType));
    assert_eq!(cache.get::<u32>("raw"), Err(Error::WrongType));
    assert_eq!(cache.get::<String>("raw"), Err(Error::WrongType));
    // The values are still there, readable with the right type.
    assert_eq!(cache.get::<i64>("big").unwrap(), Some(300));
    assert_eq!(cache.get::<i64>("neg").unwrap(), Some(-1));
    assert_eq!(cache.len(), 5);
    intact(&mut cache);
}

#[test]
fn a_raw_read_into_a_small_buffer() {
    let clock = ManualClock::new(1000);
    let mut cache = small(&clock);
    seed(&mut cache);
    let mut two = [0u8; 2];
    assert_eq!(cache.get_raw("raw", &mut two), Err(Error::BufferTooSmall));
    // Integers read as decimal text: "-12345" needs 6 bytes.
    cache.set("n", &-12345i32, 60).unwrap();
    let mut five = [0u8; 5];
    assert_eq!(cache.get_raw("n", &mut five), Err(Error::BufferTooSmall));
    let mut six = [0u8; 6];
    assert_eq!(cache.get_raw("n", &mut six).unwrap(), Some(6));
    assert_eq!(&six, b"-12345");
    // An exact fit works; a miss is not an error whatever the buffer.
    let mut three = [0u8; 3];
    assert_eq!(cache.get_raw("raw", &mut three).unwrap(), Some(3));
    assert_eq!(cache.get_raw("missing", &mut []).unwrap(), None);
    assert_eq!(cache.get::<i32>("n").unwrap(), Some(-12345));
    intact(&mut cache);
}

// ---------------------------------------------------------------------------------------
// incr / decr

#[test]
fn incr_on_a_non_integer() {
    #[derive(Serialize)]
    struct Point {
        x: i32,
        y: i32,
    }
    let clock = ManualClock::new(1000);
    let mut cache = small(&clock);
    seed(&mut cache);
    cache.set("none", &None::<i64>, 60).unwrap();
    cache.set("some", &Some(5i64), 60).unwrap();
    cache.set("float", &1.5f32, 60).unwrap();
    cache.set("bool", &true, 60).unwrap();
    cache.set("point", &Point { x: 1, y: 2 }, 60).unwrap();
    cache.set_raw("letters", b"12a", 60).unwrap();
    cache.set_raw("spaced", b" 12", 60).unwrap();
    cache.set_raw("plus", b"+12", 60).unwrap();
    cache.set_raw("empty", b"", 60).unwrap();
    for key in [
        "text", "none", "some", "float", "bool", "point", "raw", "letters", "spaced", "plus",
        "empty",
    ] {
        assert_eq!(cache.incr(key, 1), Err(Error::NotInteger), "{key}");
        assert_eq!(cache.decr(key, 1), Err(Error::NotInteger), "{key}");
    }
    assert_eq!(cache.get::<Option<i64>>("some").unwrap(), Some(Some(5)));
    assert_eq!(cache.get::<bool>("bool").unwrap(), Some(true));
    let mut buf = [0u8; 8];
    let n = cache.get_raw("letters", &mut buf).unwrap().unwrap();
    assert_eq!(&buf[..n], b"12a");
    intact(&mut cache);
}

#[test]
fn incr_overflow_leaves_the_value() {
    let clock = ManualClock::new(1000);
    let mut cache = small(&clock);
    seed(&mut cache);
    cache.set("max", &i64::MAX, 60).unwrap();
    assert_eq!(cache.incr("max", 1), Err(Error::Overflow));
    assert_eq!(cache.decr("max", -1), Err(Error::Overflow));
    assert_eq!(cache.get::<i64>("max").unwrap(), Some(i64::MAX));
    cache.set("min", &i64::MIN, 60).unwrap();
    assert_eq!(cache.decr("min", 1), Err(Error::Overflow));
    assert_eq!(cache.incr("min", -1), Err(Error::Overflow));
    assert_eq!(cache.incr("min", i64::MIN), Err(Error::Overflow));
    assert_eq!(cache.get::<i64>("min").unwrap(), Some(i64::MIN));
    // Right at the edge is fine.
    assert_eq!(cache.incr("max", 0).unwrap(), i64::MAX);
    assert_eq!(cache.incr("min", i64::MAX).unwrap(), -1);
    intact(&mut cache);
}

#[test]
fn decr_by_i64_min() {
    let clock = ManualClock::new(1000);
    let mut cache = small(&clock);
    seed(&mut cache);
    cache.set("n", &5i64, 60).unwrap();
    // 5 - i64::MIN is past i64::MAX.
    assert_eq!(cache.decr("n", i64::MIN), Err(Error::Overflow));
    assert_eq!(cache.get::<i64>("n").unwrap(), Some(5));
    cache.set("zero", &0i64, 60).unwrap();
    assert_eq!(cache.decr("zero", i64::MIN), Err(Error::Overflow));
    assert_eq!(cache.get::<i64>("zero").unwrap(), Some(0));
    // incr by i64::MIN is fine where the result is in range.
    assert_eq!(cache.incr("n", i64::MIN).unwrap(), i64::MIN + 5);
    intact(&mut cache);
}

#[test]
fn raw_decimal_overflow_and_growth() {
    let clock = ManualClock::new(1000);
    let mut cache: MemCache<_, 8, 16, 20> = MemCache::new(&clock, Table::new(), Config::new());
    cache.set_raw("max", b"9223372036854775807", 60).unwrap();
    assert_eq!(cache.incr("max", 1), Err(Error::Overflow));
    let mut buf = [0u8; 20];
    let n = cache.get_raw("max", &mut buf).unwrap().unwrap();
    assert_eq!(&buf[..n], b"9223372036854775807");
    // Past i64: not an integer this crate can count with.
    cache.set_raw("huge", b"9223372036854775808", 60).unwrap();
    assert_eq!(cache.incr("huge", 1), Err(Error::NotInteger));
}

#[test]
fn incr_that_outgrows_the_value_capacity() {
    let clock = ManualClock::new(1000);
    // Values up to 4 bytes: "9999" + 1 needs 5.
    let mut cache: MemCache<_, 8, 16, 4> = MemCache::new(&clock, Table::new(), Config::new());
    cache.set_raw("digits", b"9999", 60).unwrap();
    assert_eq!(cache.incr("digits", 1), Err(Error::ValueTooLarge));
    let mut buf = [0u8; 8];
    let n = cache.get_raw("digits", &mut buf).unwrap().unwrap();
    assert_eq!(&buf[..n], b"9999");
    assert_eq!(cache.decr("digits", 1).unwrap(), 9998);
    // Decimal text that is not in canonical form stays exactly as stored.
    for text in [&b"007"[..], b"-0", b"0001"] {
        cache.set_raw("text", text, 60).unwrap();
        assert_eq!(cache.incr("text", 99_999), Err(Error::ValueTooLarge));
        let n = cache.get_raw("text", &mut buf).unwrap().unwrap();
        assert_eq!(&buf[..n], text);
    }
    cache.delete("text").unwrap();
    // An integer stored in 4 bytes that needs 5 after the add.
    cache.set("int", &i32::MAX, 60).unwrap();
    assert_eq!(cache.incr("int", 1), Err(Error::ValueTooLarge));
    assert_eq!(cache.get::<i32>("int").unwrap(), Some(i32::MAX));
    assert_eq!(cache.len(), 2);
}

// ---------------------------------------------------------------------------------------
// Timeouts and clocks

#[test]
fn extreme_timeouts_never_panic() {
    let timeouts = [
        Timeout::Secs(i64::MAX),
        Timeout::Secs(i64::MIN),
        Timeout::Millis(i64::MAX),
        Timeout::Millis(i64::MIN),
        Timeout::Ticks(i64::MAX),
        Timeout::Ticks(i64::MIN),
        Timeout::from(Duration::MAX),
        Timeout::from(u64::MAX),
        Timeout::from(usize::MAX),
        Timeout::Never,
        Timeout::Default,
    ];
    for rate in [1u32, 1000, 32_768, u32::MAX] {
        for start in [0u64, 1 << 40, u64::MAX - 10] {
            let clock = ManualClock::new(rate);
            clock.set(start);
            let mut cache = small(&clock);
            for t in timeouts {
                cache.set("k", &1u8, t).unwrap();
                let _ = cache.add("a", &1u8, t).unwrap();
                let _ = cache.touch("k", t).unwrap();
                let _ = cache.get::<u8>("k").unwrap();
                let _ = cache.get_or_set("g", || 1u8, t).unwrap();
            }
            clock.advance(u64::MAX);
            let _ = cache.has_key("k").unwrap();
        }
    }
}

#[test]
fn huge_timeouts_last_for_ages() {
    let clock = ManualClock::new(1000);
    let mut cache = small(&clock);
    cache.set("secs", &1u8, Timeout::Secs(i64::MAX)).unwrap();
    cache.set("dur", &1u8, Duration::MAX).unwrap();
    cache.set("ms", &1u8, Timeout::Millis(i64::MAX)).unwrap();
    // i64::MAX milliseconds at 1 kHz: 2^63 - 1 ticks, about 292 million years.
    clock.advance(u64::MAX / 4);
    assert!(cache.has_key("secs").unwrap());
    assert!(cache.has_key("dur").unwrap());
    assert!(cache.has_key("ms").unwrap());
    // They end at tick i64::MAX; the seconds one saturates near the end of time.
    clock.set(i64::MAX as u64 - 1);
    assert!(cache.has_key("dur").unwrap());
    assert!(cache.has_key("ms").unwrap());
    clock.set(i64::MAX as u64);
    assert!(cache.has_key("secs").unwrap());
    assert!(!cache.has_key("dur").unwrap());
    assert!(!cache.has_key("ms").unwrap());
}

#[test]
fn never_expiring_entries_survive_the_last_tick() {
    // `Timeout::Never` never expires, even once a saturating clock has reached u64::MAX.
    let clock = ManualClock::new(1000);
    let mut cache = small(&clock);
    cache.set("forever", &1u8, Timeout::Never).unwrap();
    clock.set(u64::MAX - 1);
    assert!(cache.has_key("forever").unwrap());
    clock.advance(u64::MAX);
    assert_eq!(cache.get::<u8>("forever").unwrap(), Some(1));
    assert!(cache.has_key("forever").unwrap());
}

#[test]
fn negative_extremes_expire_at_once() {
    let clock = ManualClock::new(1000);
    let mut cache = small(&clock);
    seed(&mut cache);
    for t in [
        Timeout::Secs(i64::MIN),
        Timeout::Millis(i64::MIN),
        Timeout::Ticks(i64::MIN),
        Timeout::Secs(-1),
    ] {
        cache.set("k", &1u8, t).unwrap();
        assert!(!cache.has_key("k").unwrap());
        assert!(cache.add("k", &1u8, t).unwrap());
        assert!(!cache.has_key("k").unwrap());
    }
    // Zero milliseconds is already over.
    cache.set("k", &1u8, Timeout::Millis(0)).unwrap();
    assert!(!cache.has_key("k").unwrap());
    assert_eq!(cache.len(), 3);
    intact(&mut cache);
}

#[test]
fn a_32_bit_counter_wrapping_during_a_timeout() {
    // A 1 kHz counter 3 s before it wraps.
    let hw = Cell::new(u32::MAX - 2_999);
    let clock = Wrap32::new(1000, || hw.get());
    let mut cache: MemCache<_, 8, 16, 8> = MemCache::new(&clock, Table::new(), Config::new());
    cache.set("k", &1u8, 10).unwrap();
    cache.set("short", &1u8, 2).unwrap();
    // 2 s later, before the wrap.
    hw.set(hw.get().wrapping_add(2_000));
    assert!(!cache.has_key("short").unwrap());
    // 5 s after the wrap, 8 s after the set: still live.
    hw.set(hw.get().wrapping_add(6_000));
    assert!(hw.get() < 10_000, "the counter wrapped");
    assert_eq!(cache.get::<u8>("k").unwrap(), Some(1));
    // 11 s after the set: expired.
    hw.set(hw.get().wrapping_add(3_000));
    assert_eq!(cache.get::<u8>("k").unwrap(), None);
}

#[test]
fn a_32_bit_counter_wrapping_between_two_reads() {
    // The only read after the set comes after the wrap.
    let hw = Cell::new(u32::MAX - 999);
    let clock = Wrap32::new(1000, || hw.get());
    let mut cache: MemCache<_, 8, 16, 8> = MemCache::new(&clock, Table::new(), Config::new());
    cache.set("k", &1u8, 10).unwrap();
    hw.set(hw.get().wrapping_add(9_999));
    assert!(cache.has_key("k").unwrap());
    hw.set(hw.get().wrapping_add(1));
    assert!(!cache.has_key("k").unwrap());
}

#[test]
fn a_slow_clock_rounds_sub_tick_timeouts_down_but_never_to_zero() {
    // 10 Hz: 150 ms is one tick, 250 ms two; 99 ms is under a tick but positive, so it
    // also lasts one tick instead of removing the key.
    let clock = ManualClock::new(10);
    let mut cache = small(&clock);
    cache.set("a", &1u8, Timeout::Millis(150)).unwrap();
    cache.set("b", &1u8, Timeout::Millis(99)).unwrap();
    cache.set("c", &1u8, Timeout::Millis(250)).unwrap();
    assert!(cache.has_key("a").unwrap());
    assert!(cache.has_key("b").unwrap());
    clock.advance(1);
    assert!(!cache.has_key("a").unwrap());
    assert!(!cache.has_key("b").unwrap());
    assert!(cache.has_key("c").unwrap());
    clock.advance(1);
    assert!(!cache.has_key("c").unwrap());
}

#[test]
fn a_positive_timeout_shorter_than_a_tick_keeps_the_value_for_one_tick() {
    // A 100 Hz clock: one tick is 10 ms.
    let clock = ManualClock::new(100);
    let mut cache = small(&clock);
    cache.set("k", &1u8, 60).unwrap();
    // Overwriting with a 5 ms timeout must store the new value, not remove the key.
    cache.set("k", &2u8, Duration::from_millis(5)).unwrap();
    assert_eq!(cache.get::<u8>("k").unwrap(), Some(2));
    cache.set("m", &3u8, Timeout::Millis(5)).unwrap();
    assert!(cache.add("n", &4u8, Duration::from_nanos(1)).unwrap());
    assert!(cache.touch("n", Timeout::Millis(1)).unwrap());
    assert_eq!(cache.get::<u8>("m").unwrap(), Some(3));
    assert_eq!(cache.get::<u8>("n").unwrap(), Some(4));
    assert_eq!(
        cache.get_or_set("o", || 5u8, Timeout::Millis(9)).unwrap(),
        5
    );
    assert_eq!(cache.get::<u8>("o").unwrap(), Some(5));
    // One tick later they have all expired.
    clock.advance(1);
    for key in ["k", "m", "n", "o"] {
        assert!(!cache.has_key(key).unwrap(), "{key}");
    }
    // A 1 Hz clock: half a second (Django's `timeout=0.5`) is under a tick, and still stores.
    let slow = ManualClock::new(1);
    let mut slow_cache = small(&slow);
    slow_cache
        .set("s", &1u8, Duration::from_millis(500))
        .unwrap();
    assert_eq!(slow_cache.get::<u8>("s").unwrap(), Some(1));
    slow.advance(1);
    assert!(!slow_cache.has_key("s").unwrap());
    // Zero and negative timeouts still remove the key at once.
    cache.set("z", &1u8, 60).unwrap();
    cache.set("z", &1u8, Duration::ZERO).unwrap();
    assert!(!cache.has_key("z").unwrap());
    cache.set("z", &1u8, 60).unwrap();
    cache.set("z", &1u8, Timeout::Millis(-5)).unwrap();
    assert!(!cache.has_key("z").unwrap());
}
