//! The reference model (internal feature `_model`, not covered by semver).
//!
//! A deliberately simple executable specification of the memory cache, written with std
//! collections and no cleverness: a `Vec` in recency order (least recent first), linear
//! searches, Django's locmem rules as the crate documents them. Property tests and fuzz
//! targets run random operation sequences on a real cache and on this model and compare
//! every answer and the final contents. It shares no code with the engine: key making,
//! validation, timeout conversion and integer sizes are written again here, plainly.

use std::string::String;
use std::vec::Vec;

use crate::{Error, KeyError, Timeout};

/// A value as the model sees it: one variant per type the harnesses store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// An integer (`incr` works on it).
    Int(i64),
    /// A string, stored with postcard.
    Text(String),
    /// An optional byte, stored with postcard (`None` is a value, not a miss).
    OptU8(Option<u8>),
    /// Raw bytes from the raw API (`incr` works on ASCII decimal).
    Raw(Vec<u8>),
}

impl Value {
    /// Bytes the engine needs to store the value.
    pub fn encoded_len(&self) -> usize {
        match self {
            Value::Int(0) => 0,
            Value::Int(i) => (1..=8usize)
                .find(|&n| {
                    let shift = 64 - 8 * n as u32;
                    (i << shift) >> shift == *i
                })
                .unwrap_or(8),
            Value::Text(s) => varint_len(s.len()) + s.len(),
            Value::OptU8(None) => 1,
            Value::OptU8(Some(_)) => 2,
            Value::Raw(b) => b.len(),
        }
    }
}

fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

#[derive(Clone, Debug)]
struct Entry {
    key: Vec<u8>,
    value: Value,
    expiry: Option<u64>,
}

/// The model's error: the engine's [`Error`] without a backend.
pub type ModelError = Error;

/// The model cache. Fields mirror the engine's configuration.
#[derive(Clone, Debug)]
pub struct Model {
    /// Least recently used first.
    entries: Vec<Entry>,
    /// Current time in ticks (the harness moves it together with the engine's clock).
    pub now: u64,
    /// Ticks per second.
    pub rate: u32,
    /// Key capacity `K` in bytes.
    pub key_cap: usize,
    /// Value capacity `V` in bytes.
    pub value_cap: usize,
    /// `MAX_ENTRIES`.
    pub max_entries: usize,
    /// `CULL_FREQUENCY`.
    pub cull_frequency: usize,
    /// `KEY_PREFIX`.
    pub prefix: String,
    /// `VERSION`.
    pub version: i32,
    /// Default timeout.
    pub timeout: Timeout,
    /// Strict key validation.
    pub strict: bool,
}

/// The integer an entry of kind `Kind::Int` holds, from its stored bytes (the engine's
/// little-endian minimal form); `None` when the bytes are not that form. For checks that
/// read an engine's entries back as the model's values.
pub fn stored_int(bytes: &[u8]) -> Option<i64> {
    crate::value::decode_int(bytes)
}

impl Model {
    /// A model with Django's defaults and the given capacities.
    pub fn new(
        rate: u32,
        key_cap: usize,
        value_cap: usize,
        max_entries: usize,
        cull_frequency: usize,
    ) -> Self {
        Model {
            entries: Vec::new(),
            now: 0,
            rate,
            key_cap,
            value_cap,
            max_entries,
            cull_frequency,
            prefix: String::new(),
            version: 1,
            timeout: Timeout::Secs(300),
            strict: true,
        }
    }

    /// The made key for `key` at `version` (default when `None`), or why it is refused.
    pub fn make_key(&self, key: &[u8], version: Option<i32>) -> Result<Vec<u8>, KeyError> {
        let version = version.unwrap_or(self.version);
        let mut made = format!("{}:{}:", self.prefix, version).into_bytes();
        made.extend_from_slice(key);
        // memcached's rules (strict only), length before characters, then the capacity.
        if self.strict {
            let chars = made.iter().filter(|&&b| (b & 0xc0) != 0x80).count();
            if chars > 250 {
                return Err(KeyError::TooLong);
            }
            if made.iter().any(|&b| b <= 0x20 || b == 0x7f) {
                return Err(KeyError::BadChar);
            }
        }
        if made.len() > self.key_cap {
            return Err(KeyError::OverCapacity);
        }
        Ok(made)
    }

    /// Expiry tick for a timeout: `Ok(None)` never, `Err(())` already over.
    fn expiry(&self, timeout: Timeout) -> Result<Option<u64>, ()> {
        let timeout = if timeout == Timeout::Default {
            self.timeout
        } else {
            timeout
        };
        let rate = i128::from(self.rate);
        let (given, ticks): (i128, i128) = match timeout {
            Timeout::Never => return Ok(None),
            Timeout::Default => (300, 300 * rate),
            Timeout::Secs(s) => (i128::from(s), i128::from(s) * rate),
            Timeout::Millis(ms) => (i128::from(ms), i128::from(ms) * rate / 1000),
            Timeout::Ticks(t) => (i128::from(t), i128::from(t)),
        };
        if given <= 0 {
            return Err(());
        }
        // A positive timeout lasts at least one tick.
        let ticks = ticks.max(1);
        let exp = (i128::from(self.now) + ticks).min(i128::from(u64::MAX - 1));
        Ok(Some(exp as u64))
    }

    fn pos(&self, made: &[u8]) -> Option<usize> {
        self.entries.iter().position(|e| e.key == made)
    }

    fn live(&self, e: &Entry) -> bool {
        e.expiry.is_none_or(|x| x > self.now)
    }

    fn live_pos(&mut self, made: &[u8]) -> Option<usize> {
        let i = self.pos(made)?;
        if self.live(&self.entries[i]) {
            Some(i)
        } else {
            self.entries.remove(i);
            None
        }
    }

    fn make_mru(&mut self, i: usize) {
        let e = self.entries.remove(i);
        self.entries.push(e);
    }

    /// Django's cull: frequency 0 clears everything; a cull of one entry takes the least
    /// recent; otherwise expired entries go first, then, if still at the limit,
    /// `len / cull_frequency` least recent ones.
    fn cull(&mut self) {
        if self.cull_frequency == 0 {
            self.entries.clear();
            return;
        }
        if self.entries.len() / self.cull_frequency <= 1 {
            self.entries.remove(0);
            return;
        }
        let now = self.now;
        self.entries.retain(|e| e.expiry.is_none_or(|x| x > now));
        if self.entries.len() < self.max_entries {
            return;
        }
        let n = (self.entries.len() / self.cull_frequency).max(1);
        self.entries.drain(..n);
    }

    fn store(
        &mut self,
        made: Vec<u8>,
        value: Value,
        add: bool,
        timeout: Timeout,
    ) -> Result<bool, ModelError> {
        let Ok(expiry) = self.expiry(timeout) else {
            if add && self.live_pos(&made).is_some() {
                return Ok(false);
            }
            if let Some(i) = self.pos(&made) {
                self.entries.remove(i);
            }
            return Ok(true);
        };
        let too_large = value.encoded_len() > self.value_cap;
        match self.pos(&made) {
            Some(i) => {
                if add && self.live(&self.entries[i]) {
                    return Ok(false);
                }
                if too_large {
                    self.entries.remove(i);
                    return Err(Error::ValueTooLarge);
                }
                self.entries[i].value = value;
                self.entries[i].expiry = expiry;
                self.make_mru(i);
            }
            None => {
                if too_large {
                    return Err(Error::ValueTooLarge);
                }
                if self.entries.len() >= self.max_entries {
                    self.cull();
                }
                self.entries.push(Entry {
                    key: made,
                    value,
                    expiry,
                });
            }
        }
        Ok(true)
    }

    /// `get`: the value on a hit (made most recent), `None` on a miss.
    pub fn get(&mut self, key: &[u8], version: Option<i32>) -> Result<Option<Value>, ModelError> {
        let made = self.make_key(key, version)?;
        let Some(i) = self.live_pos(&made) else {
            return Ok(None);
        };
        self.make_mru(i);
        Ok(Some(
            self.entries
                .last()
                .map(|e| e.value.clone())
                .unwrap_or(Value::Int(0)),
        ))
    }

    /// `set` (raw values through the raw API).
    pub fn set(
        &mut self,
        key: &[u8],
        version: Option<i32>,
        value: Value,
        timeout: Timeout,
    ) -> Result<(), ModelError> {
        let made = self.make_key(key, version)?;
        self.store(made, value, false, timeout).map(drop)
    }

    /// `add`.
    pub fn add(
        &mut self,
        key: &[u8],
        version: Option<i32>,
        value: Value,
        timeout: Timeout,
    ) -> Result<bool, ModelError> {
        let made = self.make_key(key, version)?;
        self.store(made, value, true, timeout)
    }

    /// `touch`.
    pub fn touch(
        &mut self,
        key: &[u8],
        version: Option<i32>,
        timeout: Timeout,
    ) -> Result<bool, ModelError> {
        let made = self.make_key(key, version)?;
        match self.expiry(timeout) {
            Err(()) => self.delete_made(&made),
            Ok(expiry) => match self.pos(&made) {
                Some(i) if self.live(&self.entries[i]) => {
                    self.entries[i].expiry = expiry;
                    Ok(true)
                }
                _ => Ok(false),
            },
        }
    }

    fn delete_made(&mut self, made: &[u8]) -> Result<bool, ModelError> {
        match self.pos(made) {
            Some(i) => {
                let live = self.live(&self.entries[i]);
                self.entries.remove(i);
                Ok(live)
            }
            None => Ok(false),
        }
    }

    /// `delete`.
    pub fn delete(&mut self, key: &[u8], version: Option<i32>) -> Result<bool, ModelError> {
        let made = self.make_key(key, version)?;
        self.delete_made(&made)
    }

    /// `has_key`.
    pub fn has_key(&mut self, key: &[u8], version: Option<i32>) -> Result<bool, ModelError> {
        let made = self.make_key(key, version)?;
        Ok(self.live_pos(&made).is_some())
    }

    /// `incr` (and `decr` with the delta negated by the caller).
    pub fn incr(
        &mut self,
        key: &[u8],
        version: Option<i32>,
        delta: i64,
    ) -> Result<i64, ModelError> {
        let made = self.make_key(key, version)?;
        let i = self.live_pos(&made).ok_or(Error::NotFound)?;
        let old = match &self.entries[i].value {
            Value::Int(v) => *v,
            // ASCII decimal: an optional `-`, then digits (leading zeros of any length, as
            // memcached's strtoull reads them), the value within i64.
            Value::Raw(b) => std::str::from_utf8(b)
                .ok()
                .filter(|s| {
                    let digits = s.strip_prefix('-').unwrap_or(s);
                    !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit())
                })
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or(Error::NotInteger)?,
            _ => return Err(Error::NotInteger),
        };
        let new = old.checked_add(delta).ok_or(Error::Overflow)?;
        let value = match self.entries[i].value {
            Value::Int(_) => Value::Int(new),
            _ => Value::Raw(new.to_string().into_bytes()),
        };
        if value.encoded_len() > self.value_cap {
            return Err(Error::ValueTooLarge);
        }
        self.entries[i].value = value;
        self.make_mru(i);
        Ok(new)
    }

    /// `decr`.
    pub fn decr(
        &mut self,
        key: &[u8],
        version: Option<i32>,
        delta: i64,
    ) -> Result<i64, ModelError> {
        let delta = delta.checked_neg().ok_or(Error::Overflow)?;
        self.incr(key, version, delta)
    }

    /// `incr_version`; `decr_version` is this with the delta negated by the caller.
    pub fn incr_version(
        &mut self,
        key: &[u8],
        version: Option<i32>,
        delta: i32,
    ) -> Result<i32, ModelError> {
        let from_v = version.unwrap_or(self.version);
        let to_v = from_v.checked_add(delta).ok_or(Error::Overflow)?;
        let from = self.make_key(key, Some(from_v))?;
        let to = self.make_key(key, Some(to_v))?;
        let Ok(expiry) = self.expiry(Timeout::Default) else {
            let live = self.delete_made(&from)?;
            if live {
                self.delete_made(&to)?;
                return Ok(to_v);
            }
            return Err(Error::NotFound);
        };
        let i = self.live_pos(&from).ok_or(Error::NotFound)?;
        let mut e = self.entries.remove(i);
        if let Some(j) = self.pos(&to) {
            self.entries.remove(j);
        }
        e.key = to;
        e.expiry = expiry;
        self.entries.push(e);
        Ok(to_v)
    }

    /// `get_or_set` with a default value.
    pub fn get_or_set(
        &mut self,
        key: &[u8],
        version: Option<i32>,
        default: Value,
        timeout: Timeout,
    ) -> Result<Value, ModelError> {
        if let Some(v) = self.get(key, version)? {
            return Ok(v);
        }
        self.add(key, version, default.clone(), timeout)?;
        Ok(default)
    }

    /// `clear`.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Entries held, expired ones included until reclaimed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Replaces the contents with `entries`, least recent first (made key, value, expiry;
    /// `None` = never): what a cache reopened from storage holds, whose recency is the
    /// order it replayed its log in, not the order of earlier reads.
    pub fn restore(&mut self, entries: impl IntoIterator<Item = (Vec<u8>, Value, Option<u64>)>) {
        self.entries = entries
            .into_iter()
            .map(|(key, value, expiry)| Entry { key, value, expiry })
            .collect();
    }

    /// Every entry held, expired ones included until reclaimed, least recent first: made
    /// key, value, expiry (`None` = never).
    pub fn entries(&self) -> Vec<(Vec<u8>, Value, Option<u64>)> {
        self.entries
            .iter()
            .map(|e| (e.key.clone(), e.value.clone(), e.expiry))
            .collect()
    }

    /// Live entries, least recent first: made key, value, expiry (`None` = never).
    pub fn live_entries(&self) -> Vec<(Vec<u8>, Value, Option<u64>)> {
        self.entries
            .iter()
            .filter(|e| self.live(e))
            .map(|e| (e.key.clone(), e.value.clone(), e.expiry))
            .collect()
    }
}
