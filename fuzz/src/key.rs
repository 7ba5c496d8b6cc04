//! The `key` target: arbitrary key bytes, prefix, versions, buffer capacity, key policy and
//! key function through `Cache::make_key`, compared with the model's `make_key`: the same
//! answer and the same made bytes, never a panic. A strict cache's made key must pass
//! `key::validate`, and the same key used in a real `set_raw`/`with_raw` on a table with
//! 255-byte keys must be refused or stored exactly as the model says, under the made key.

use std::collections::HashSet;
use std::sync::Mutex;

use arbitrary::{Arbitrary, Unstructured};
use tickcache::model::Model;
use tickcache::{Cache, Config, Error, Key, KeyPolicy, ManualClock, Table, Timeout};

/// Decodes `data` as the target does and checks it (for regression tests).
pub fn run_bytes(data: &[u8]) {
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        run(&input);
    }
}

/// One fuzz case.
#[derive(Arbitrary, Debug, Clone)]
pub struct Input {
    /// The user's key.
    pub key: Shape,
    /// `KEY_PREFIX`.
    pub prefix: Prefix,
    /// `VERSION`.
    pub config_version: i32,
    /// The call's version argument (`None`: the default).
    pub version: Option<i32>,
    /// The output buffer's length, modulo 300.
    pub cap: u16,
    /// Lenient key policy instead of strict.
    pub lenient: bool,
    /// Make keys with `default_key_fn` as a custom key function (the slow path).
    pub key_fn: bool,
}

/// A key's bytes, with shapes that reach the limits arbitrary bytes seldom reach.
#[derive(Arbitrary, Debug, Clone)]
pub enum Shape {
    /// These bytes.
    Bytes(Vec<u8>),
    /// `count` (modulo 300) copies of `byte`, then `tail`.
    Repeat {
        /// The repeated byte.
        byte: u8,
        /// How many.
        count: u16,
        /// What follows.
        tail: Vec<u8>,
    },
    /// `count` (modulo 100) CJK characters (3 bytes, 1 character each), then `tail`.
    Cjk {
        /// How many.
        count: u8,
        /// What follows.
        tail: Vec<u8>,
    },
}

impl Shape {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Shape::Bytes(b) => b.clone(),
            Shape::Repeat { byte, count, tail } => {
                let mut v = vec![*byte; usize::from(*count % 300)];
                v.extend_from_slice(tail);
                v
            }
            Shape::Cjk { count, tail } => {
                let mut v = "清".repeat(usize::from(*count % 100)).into_bytes();
                v.extend_from_slice(tail);
                v
            }
        }
    }
}

/// The prefix: one of a list, or any string.
#[derive(Arbitrary, Debug, Clone)]
pub enum Prefix {
    /// Index into a list of prefixes.
    Listed(u8),
    /// Any string (kept for the life of the process, up to a bound).
    Any(String),
}

const LISTED: [&str; 9] = [
    "",
    "p",
    "site",
    "清",
    "a b",
    "x\u{7f}",
    "0123456789abc",
    "0123456789abcdef",
    "\u{0}",
];

/// A `&'static str` for `s`: prefixes are configured as static strings. Distinct strings
/// are kept in a bounded set (so memory stays bounded over a long campaign); past the
/// bound, `None`.
fn intern(s: &str) -> Option<&'static str> {
    static SEEN: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut guard = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let seen = guard.get_or_insert_with(HashSet::new);
    if let Some(&p) = seen.get(s) {
        return Some(p);
    }
    if seen.len() >= 4096 || s.len() > 300 {
        return None;
    }
    let p: &'static str = Box::leak(s.to_owned().into_boxed_str());
    seen.insert(p);
    Some(p)
}

/// Runs one case.
pub fn run(input: &Input) {
    let key = input.key.bytes();
    let prefix = match &input.prefix {
        Prefix::Listed(i) => LISTED[usize::from(*i) % LISTED.len()],
        Prefix::Any(s) => intern(s).unwrap_or(""),
    };
    let mut config = Config::new()
        .key_prefix(prefix)
        .version(input.config_version)
        .key_policy(if input.lenient {
            KeyPolicy::Lenient
        } else {
            KeyPolicy::Strict
        });
    if input.key_fn {
        config = config.key_function(tickcache::key::default_key_fn);
    }
    let cap = usize::from(input.cap % 300);
    let mut model = Model::new(1000, cap, 4, 2, 3);
    model.prefix = prefix.to_string();
    model.version = input.config_version;
    model.strict = !input.lenient;

    let clock = ManualClock::new(1000);
    let mut cache: Cache<_, Table<2, 255, 4>, 255> = Cache::new(&clock, Table::new(), config);
    let k = Key {
        key: &key,
        version: input.version,
    };

    // make_key into a buffer of `cap` bytes, with a guard byte after it.
    let mut buf = vec![0xa5u8; cap + 1];
    let engine = cache
        .make_key(k, &mut buf[..cap])
        .map(|n| buf[..n].to_vec());
    let expected = model.make_key(&key, input.version);
    assert_eq!(engine, expected, "make_key of {key:?} into {cap} bytes");
    assert_eq!(buf[cap], 0xa5, "make_key wrote past its buffer");
    if let Ok(made) = &engine {
        if !input.lenient {
            assert_eq!(tickcache::key::validate(made), Ok(()), "strict made key");
        }
    }

    // The same key through a real call on a table with 255-byte keys.
    model.key_cap = 255;
    let expected = model.make_key(&key, input.version);
    let stored = cache.set_raw(k, b"v", Timeout::Never);
    match &expected {
        Ok(made) => {
            assert_eq!(stored, Ok(()), "set_raw of {key:?}");
            let mut held = Vec::new();
            cache
                .backend()
                .for_each_lru(|m, v, _, _| held.push((m.to_vec(), v.to_vec())));
            assert_eq!(held, vec![(made.clone(), b"v".to_vec())], "table contents");
            let read = cache.with_raw(k, |v, _| v.to_vec());
            assert_eq!(read, Ok(Some(b"v".to_vec())), "read back of {key:?}");
            assert_eq!(cache.delete(k), Ok(true));
        }
        Err(e) => {
            assert_eq!(stored, Err(Error::Key(*e)), "set_raw of {key:?}");
            assert_eq!(cache.len(), 0);
            assert_eq!(cache.has_key(k), Err(Error::Key(*e)));
        }
    }
    assert!(cache.is_empty());
}
