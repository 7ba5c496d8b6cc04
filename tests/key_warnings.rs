//! `KeyPolicy::Warn`, Django's `CacheKeyWarning`: a key that breaks memcached's rules is
//! reported to a hook and used, as locmem warns and goes on; the key capacity still refuses.

use std::sync::Mutex;

use tickcache::key::KeyWriter;
use tickcache::{
    Cache, Config, Dummy, Error, Key, KeyError, KeyPolicy, ManualClock, MemCache, Table,
};

/// What the hooks heard: (key, version, rule), per test (each test has its own hook).
type Heard = Mutex<Vec<(String, Option<i32>, KeyError)>>;

fn record(heard: &Heard, key: Key<'_>, rule: KeyError) {
    let name = String::from_utf8_lossy(key.key).into_owned();
    heard.lock().unwrap().push((name, key.version, rule));
}

fn take(heard: &Heard) -> Vec<(String, Option<i32>, KeyError)> {
    std::mem::take(&mut *heard.lock().unwrap())
}

static SPACES: Heard = Mutex::new(Vec::new());
fn spaces_hook(key: Key<'_>, rule: KeyError) {
    record(&SPACES, key, rule);
}

/// Django's `test_invalid_key_characters`: `cache.set('key with spaces', 'value')` warns
/// once, and the value is stored and read back.
#[test]
fn a_key_with_spaces_warns_and_is_used() {
    let clock = ManualClock::new(1000);
    let config = Config::new().key_policy(KeyPolicy::Warn(spaces_hook));
    let mut cache: MemCache<_, 8, 64, 16> = MemCache::new(&clock, Table::new(), config);
    cache.set("key with spaces", "value", 60).unwrap();
    assert_eq!(
        take(&SPACES),
        [("key with spaces".into(), Some(1), KeyError::BadChar)]
    );
    assert_eq!(
        cache.get::<String>("key with spaces").unwrap().as_deref(),
        Some("value")
    );
    assert_eq!(take(&SPACES).len(), 1, "every use warns, as in Django");
    // A valid key says nothing.
    cache.set("fine", &1u8, 60).unwrap();
    assert_eq!(cache.incr("fine", 1).unwrap(), 2);
    assert!(take(&SPACES).is_empty());
    // The version the key was made with is reported.
    cache.set(Key::new("a b").version(7), &1u8, 60).unwrap();
    assert_eq!(take(&SPACES), [("a b".into(), Some(7), KeyError::BadChar)]);
    // The same key under the strict policy is an error.
    let mut strict: MemCache<_, 8, 64, 16> = MemCache::new(&clock, Table::new(), Config::new());
    assert_eq!(
        strict.set("key with spaces", "value", 60),
        Err(Error::Key(KeyError::BadChar))
    );
}

static LONG: Heard = Mutex::new(Vec::new());
fn long_hook(key: Key<'_>, rule: KeyError) {
    record(&LONG, key, rule);
}

/// Django's `test_invalid_key_length` and a key that breaks both rules: one warning per
/// rule, in Django's order; the key is used when it fits the capacity.
#[test]
fn a_long_key_warns_once_per_rule() {
    let clock = ManualClock::new(1000);
    let config = Config::new().key_policy(KeyPolicy::Warn(long_hook));
    let mut cache: Cache<_, Table<4, 255, 8>, 255> = Cache::new(&clock, Table::new(), config);
    let long = "a".repeat(248); // made key 251 characters
    cache.set(long.as_str(), &1u8, 60).unwrap();
    assert_eq!(take(&LONG), [(long.clone(), Some(1), KeyError::TooLong)]);
    assert_eq!(cache.get::<u8>(long.as_str()).unwrap(), Some(1));
    take(&LONG);

    let both = format!("{} x", "a".repeat(247));
    cache.set(both.as_str(), &2u8, 60).unwrap();
    assert_eq!(
        take(&LONG),
        [
            (both.clone(), Some(1), KeyError::TooLong),
            (both.clone(), Some(1), KeyError::BadChar)
        ]
    );

    // Over the capacity too (256 bytes): the hook hears of the first memcached rule, and
    // the capacity refuses the key.
    let over = "a".repeat(253);
    assert_eq!(
        cache.set(over.as_str(), &3u8, 60),
        Err(Error::Key(KeyError::OverCapacity))
    );
    assert_eq!(take(&LONG), [(over, Some(1), KeyError::TooLong)]);
    assert_eq!(cache.len(), 2);
}

static CUSTOM: Heard = Mutex::new(Vec::new());
fn custom_hook(key: Key<'_>, rule: KeyError) {
    record(&CUSTOM, key, rule);
}

fn spaced_key_func(
    _prefix: &str,
    version: i32,
    key: &[u8],
    out: &mut KeyWriter<'_>,
) -> Result<(), KeyError> {
    out.push(b"v ")?;
    out.push_int(version)?;
    out.push(b"-")?;
    out.push(key)
}

/// The rules apply to the made key: a key function that adds a space warns for every key,
/// prefixes and versions included; batch calls go on too.
#[test]
fn warnings_are_about_the_made_key() {
    let clock = ManualClock::new(1000);
    let config = Config::new()
        .key_prefix("p")
        .version(3)
        .key_function(spaced_key_func)
        .key_policy(KeyPolicy::Warn(custom_hook));
    let mut cache: MemCache<_, 8, 32, 8> = MemCache::new(&clock, Table::new(), config);
    cache.set("k", &1u8, 60).unwrap();
    assert_eq!(take(&CUSTOM), [("k".into(), Some(3), KeyError::BadChar)]);
    let mut out = [0u8; 32];
    let n = cache.make_key("k", &mut out).unwrap();
    assert_eq!(&out[..n], b"v 3-k");
    take(&CUSTOM);

    // A batch checks every key first, then uses each: the hook hears of each twice.
    let failed = cache
        .set_many([("a", &1u8), ("b", &2)], 60, |_, _| {})
        .unwrap();
    assert_eq!(failed, 0);
    let heard: Vec<String> = take(&CUSTOM).into_iter().map(|h| h.0).collect();
    assert_eq!(heard, ["a", "b", "a", "b"]);
    assert_eq!(cache.delete_many(["a", "b", "k"]).unwrap(), 3);
    // Config equality sees the hook.
    assert_eq!(config.policy(), KeyPolicy::Warn(custom_hook));
    assert_ne!(config.policy(), KeyPolicy::Lenient);
}

static DUMMY: Heard = Mutex::new(Vec::new());
fn dummy_hook(key: Key<'_>, rule: KeyError) {
    record(&DUMMY, key, rule);
}

/// Django's dummy cache validates keys too.
#[test]
fn the_dummy_backend_warns_too() {
    let clock = ManualClock::new(1000);
    let config = Config::new().key_policy(KeyPolicy::Warn(dummy_hook));
    let mut cache: Cache<_, Dummy, 64> = Cache::new(&clock, Dummy, config);
    cache.set("tab\there", &1u8, 60).unwrap();
    assert_eq!(cache.get::<u8>("tab\there").unwrap(), None);
    assert_eq!(take(&DUMMY).len(), 2);
}

static PROP: Heard = Mutex::new(Vec::new());
fn prop_hook(key: Key<'_>, rule: KeyError) {
    record(&PROP, key, rule);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// Keys of every shape: ASCII, refused bytes, multi-byte text, up to 300 bytes.
    fn keys() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            4 => 0x21u8..0x7f,
            1 => Just(b' '),
            1 => Just(0x7fu8),
            1 => 0u8..0x20,
        ];
        prop_oneof![
            prop::collection::vec(byte, 0..300),
            "[a-z清é]{0,260}".prop_map(String::into_bytes),
        ]
    }

    proptest! {
        /// Under the warning policy a call answers as under the lenient one, and the hook
        /// hears of exactly the rules the made key breaks, in Django's order.
        #[test]
        fn warn_is_lenient_plus_the_rules_broken(key in keys(), version in -3i32..1000) {
            let clock = ManualClock::new(1000);
            let warn = Config::new().key_policy(KeyPolicy::Warn(prop_hook));
            let lenient = Config::new().key_policy(KeyPolicy::Lenient);
            let mut w: Cache<_, Table<4, 255, 8>, 255> = Cache::new(&clock, Table::new(), warn);
            let mut l: Cache<_, Table<4, 255, 8>, 255> = Cache::new(&clock, Table::new(), lenient);
            let k = Key::bytes(&key).version(version);
            take(&PROP);
            let got = w.set(k, &1u8, 60);
            prop_assert_eq!(got, l.set(k, &1u8, 60));
            let heard: Vec<KeyError> = take(&PROP).into_iter().map(|h| h.2).collect();
            // The rules, from the made key in full.
            let mut full = Vec::from(format!(":{version}:").as_bytes());
            full.extend_from_slice(&key);
            let chars = full.iter().filter(|&&b| (b & 0xc0) != 0x80).count();
            let bad = full.iter().any(|&b| b <= 0x20 || b == 0x7f);
            let mut want = Vec::new();
            if chars > 250 {
                want.push(KeyError::TooLong);
            }
            if bad && (full.len() <= 255 || want.is_empty()) {
                want.push(KeyError::BadChar);
            }
            prop_assert_eq!(heard, want, "{:?}", got);
        }
    }
}
