//! Keys: the user's key, its version, the made key `prefix:version:key` and its validation.
//!
//! As in Django, every operation turns the user's key into a *made key* with the key
//! function (by default `prefix:version:key`) and validates the made key, so the prefix and
//! the version count toward the limits.
//!
//! The rules, checked in this order (the first that fails is the [`KeyError`]):
//! 1. memcached's length rule: at most 250 characters ([`KeyError::TooLong`]).
//!    Characters, not bytes, as Python's `len(str)`: 250 bytes of ASCII, but up to 1,000
//!    bytes of other UTF-8 text (which a memcached server itself refuses over 250 bytes).
//! 2. memcached's character rule: none of the bytes `0x00`–`0x20` or `0x7f`
//!    ([`KeyError::BadChar`]).
//! 3. Under every policy, the cache's key capacity `K`, in bytes
//!    ([`KeyError::OverCapacity`]); a made key is refused, never truncated.
//!
//! The [`KeyPolicy`] says what breaking rule 1 or 2 does: an error ([`KeyPolicy::Strict`],
//! the default, as Django's memcached backends raise `InvalidCacheKey`), a call of a hook
//! before the key is used ([`KeyPolicy::Warn`], Django's `CacheKeyWarning` from locmem), or
//! nothing ([`KeyPolicy::Lenient`]).
//!
//! | limit | in bytes |
//! |---|---|
//! | made key, memcached's length rule | 250 (ASCII) to 1,000 (250 characters of 4 bytes) |
//! | made key, the cache's capacity | `K` |
//! | made key, any [`Table`](crate::Table) | 255: `K` is at most 255 (the key length is one byte) |
//! | default head `prefix:version:` | prefix + digits of the version + 2 (`:1:` is 3) |
//!
//! No table holds a made key over 255 bytes. A key of 251 to 255 bytes fits a table with
//! `K` = 255 only when it has at most 250 characters (non-ASCII text), or under a policy
//! other than strict.

/// Longest made key memcached accepts, in characters.
pub const MEMCACHED_MAX_KEY: usize = 250;

/// A key as the caller names it, with an optional version.
///
/// `&str`, `&[u8]`, `&heapless::String<N>`, (feature `std`) `&String`, and any of these
/// paired with a version convert into a `Key`; single-key calls take anything that is
/// [`AsKey`], owned `String`s included:
///
/// ```
/// use tickcache::Key;
/// let k: Key = "post_1".into();
/// assert_eq!(k.version, None);
/// let k = Key::new("post_1").version(2);
/// assert_eq!(k.version, Some(2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Key<'a> {
    /// The key's bytes (normally UTF-8 text).
    pub key: &'a [u8],
    /// The version; `None` takes the cache's default version.
    pub version: Option<i32>,
}

impl<'a> Key<'a> {
    /// A key with the default version.
    pub const fn new(key: &'a str) -> Self {
        Key {
            key: key.as_bytes(),
            version: None,
        }
    }

    /// A key given as raw bytes (for example a memcached key off the wire).
    pub const fn bytes(key: &'a [u8]) -> Self {
        Key { key, version: None }
    }

    /// The same key at `version` (Django's `version=` argument).
    pub const fn version(self, version: i32) -> Self {
        Key {
            key: self.key,
            version: Some(version),
        }
    }
}

/// Anything a single-key cache call takes as its key, borrowed for the call: `&str`,
/// `String` (owned, as `format!` gives it) and `&String`, `&[u8]` and byte arrays,
/// `heapless::String`, a [`Key`], and any of these paired with a version, Django's
/// `version=`.
///
/// ```
/// use tickcache::{Config, Key, ManualClock, MemCache, Table};
/// let clock = ManualClock::new(1000);
/// let mut cache: MemCache<_, 8, 32, 8> = MemCache::new(&clock, Table::new(), Config::new());
/// let id = 7;
/// cache.set(format!("post:{id}"), &1u8, 60)?; // an owned String
/// cache.set(("post:7", 2), &2u8, 60)?; // version=2
/// assert_eq!(cache.get::<u8>(Key::new("post:7").version(2))?, Some(2));
/// let name = String::from("post:7");
/// assert_eq!(cache.get::<u8>(&name)?, Some(1));
/// assert_eq!(cache.get::<u8>((name, 2))?, Some(2));
/// # Ok::<(), tickcache::Error>(())
/// ```
pub trait AsKey {
    /// The key, borrowed from `self`.
    fn as_key(&self) -> Key<'_>;
}

impl AsKey for Key<'_> {
    #[inline]
    fn as_key(&self) -> Key<'_> {
        *self
    }
}

impl AsKey for str {
    #[inline]
    fn as_key(&self) -> Key<'_> {
        Key::new(self)
    }
}

impl AsKey for [u8] {
    #[inline]
    fn as_key(&self) -> Key<'_> {
        Key::bytes(self)
    }
}

impl<const N: usize> AsKey for [u8; N] {
    #[inline]
    fn as_key(&self) -> Key<'_> {
        Key::bytes(self)
    }
}

impl<L: heapless::LenType, const N: usize> AsKey for heapless::String<N, L> {
    #[inline]
    fn as_key(&self) -> Key<'_> {
        Key::new(self.as_str())
    }
}

#[cfg(feature = "std")]
impl AsKey for std::string::String {
    #[inline]
    fn as_key(&self) -> Key<'_> {
        Key::new(self.as_str())
    }
}

impl<T: AsKey + ?Sized> AsKey for &T {
    #[inline]
    fn as_key(&self) -> Key<'_> {
        (**self).as_key()
    }
}

impl<S: AsKey> AsKey for (S, i32) {
    /// The key at this version (Django's `version=`).
    #[inline]
    fn as_key(&self) -> Key<'_> {
        self.0.as_key().version(self.1)
    }
}

impl<'a, S: Into<Key<'a>>> From<(S, i32)> for Key<'a> {
    /// A key and its version, as in `[("a", 2), ("b", 2)]` for a batch.
    fn from((key, version): (S, i32)) -> Self {
        key.into().version(version)
    }
}

impl<'a> From<&'a str> for Key<'a> {
    fn from(key: &'a str) -> Self {
        Key::new(key)
    }
}

impl<'a> From<&&'a str> for Key<'a> {
    /// A key from an iterator over `&[&str]` or the keys of a `HashMap<&str, _>`.
    fn from(key: &&'a str) -> Self {
        Key::new(key)
    }
}

impl<'a> From<&'a [u8]> for Key<'a> {
    fn from(key: &'a [u8]) -> Self {
        Key::bytes(key)
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for Key<'a> {
    fn from(key: &'a [u8; N]) -> Self {
        Key::bytes(key)
    }
}

impl<'a, L: heapless::LenType, const N: usize> From<&'a heapless::String<N, L>> for Key<'a> {
    /// A bounded string built at run time, such as a key formatted with `write!`.
    fn from(key: &'a heapless::String<N, L>) -> Self {
        Key::new(key.as_str())
    }
}

#[cfg(feature = "std")]
impl<'a> From<&'a std::string::String> for Key<'a> {
    /// A `String` key (feature `std`). A `Key` borrows, so an owned `String` does not
    /// convert into one; single-key calls take it all the same, through [`AsKey`].
    fn from(key: &'a std::string::String) -> Self {
        Key::new(key.as_str())
    }
}

/// Why a key was refused, or what [`KeyPolicy::Warn`]'s hook is told: which rule the made
/// key broke (see the [module documentation](self) for the rules, their order and the
/// limits in bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum KeyError {
    /// memcached's length rule: the made key is longer than 250 characters. An error under
    /// the strict policy, checked first, before the key capacity; news for the hook under
    /// the warning policy.
    TooLong,
    /// memcached's character rule: the made key contains a control character, a space or
    /// DEL. An error under the strict policy; news for the hook under the warning policy.
    BadChar,
    /// The cache's key capacity: the made key is longer than `K` bytes (either policy;
    /// never truncated). No table holds more than 255 bytes.
    OverCapacity,
}

impl core::fmt::Display for KeyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            KeyError::TooLong => "memcached key length rule: made key longer than 250 characters",
            KeyError::BadChar => {
                "memcached key character rule: made key contains a control character, space or DEL"
            }
            KeyError::OverCapacity => {
                "key capacity: made key longer than the cache's key capacity in bytes"
            }
        })
    }
}

/// What to do with a made key that memcached would refuse.
#[derive(Clone, Copy, Debug)]
pub enum KeyPolicy {
    /// Refuse it with [`KeyError`] (Django's memcached backends). The default.
    Strict,
    /// Accept any key that fits the key capacity, silently.
    Lenient,
    /// Accept any key that fits the key capacity, and call the hook once for each of
    /// memcached's rules the made key breaks (Django's locmem, which emits a
    /// `CacheKeyWarning` and goes on). The hook gets the key as given, with the version it
    /// was made with, and the rule ([`KeyError::TooLong`] or [`KeyError::BadChar`]). A key
    /// over the key capacity is still refused, with [`KeyError::OverCapacity`], after the
    /// hook has heard of the first rule it breaks.
    ///
    /// The hook runs each time the key is made: once per call, and twice per key in the
    /// batch calls, which check every key before they use any. It runs inside the call
    /// (inside the lock of a shared cache), so it should only record or log.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use tickcache::{Config, Key, KeyError, KeyPolicy, ManualClock, MemCache, Table};
    ///
    /// static WARNINGS: AtomicUsize = AtomicUsize::new(0);
    /// fn cache_key_warning(key: Key<'_>, rule: KeyError) {
    ///     // On firmware, say, defmt::warn!("{}: {}", key, rule).
    ///     eprintln!("CacheKeyWarning: {:?} v{:?}: {rule}", key.key, key.version);
    ///     WARNINGS.fetch_add(1, Ordering::Relaxed);
    /// }
    ///
    /// const CONFIG: Config = Config::new().key_policy(KeyPolicy::Warn(cache_key_warning));
    /// let clock = ManualClock::new(1000);
    /// let mut cache: MemCache<_, 8, 32, 8> = MemCache::new(&clock, Table::new(), CONFIG);
    /// cache.set("key with spaces", &1u8, 60)?; // warns, and stores
    /// assert_eq!(cache.get::<u8>("key with spaces")?, Some(1)); // warns again
    /// assert_eq!(WARNINGS.load(Ordering::Relaxed), 2);
    /// # Ok::<(), tickcache::Error>(())
    /// ```
    Warn(KeyWarning),
}

/// The hook of [`KeyPolicy::Warn`]: the key as given (with the version it was made with)
/// and the memcached rule its made key breaks. A plain `fn`, so a [`Config`](crate::Config)
/// holding it stays `const`.
pub type KeyWarning = fn(key: Key<'_>, rule: KeyError);

impl PartialEq for KeyPolicy {
    /// Two warning policies are equal when their hooks are the same function.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (KeyPolicy::Strict, KeyPolicy::Strict) | (KeyPolicy::Lenient, KeyPolicy::Lenient) => {
                true
            }
            (KeyPolicy::Warn(a), KeyPolicy::Warn(b)) => core::ptr::fn_addr_eq(*a, *b),
            _ => false,
        }
    }
}

impl Eq for KeyPolicy {}

#[cfg(feature = "defmt")]
impl defmt::Format for KeyPolicy {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            KeyPolicy::Strict => defmt::write!(f, "Strict"),
            KeyPolicy::Lenient => defmt::write!(f, "Lenient"),
            KeyPolicy::Warn(_) => defmt::write!(f, "Warn"),
        }
    }
}

/// A bounded buffer that a key function writes the made key into.
///
/// A key function should only append: when a made key overflows the key capacity under the
/// strict policy, the key function runs a second time on a writer that keeps nothing and
/// only measures, to tell memcached's rules from the capacity (see [`KeyError`]).
#[derive(Debug)]
pub struct KeyWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    /// Set on the measuring writer: pushes past the buffer are counted, not refused.
    measure: Option<Measure>,
}

/// What a measuring [`KeyWriter`] saw.
#[derive(Debug, Default, Clone, Copy)]
struct Measure {
    chars: usize,
    bad: bool,
}

impl<'b> KeyWriter<'b> {
    /// A writer over `buf`, empty.
    pub fn new(buf: &'b mut [u8]) -> Self {
        KeyWriter {
            buf,
            len: 0,
            measure: None,
        }
    }

    /// Appends bytes; fails with [`KeyError::OverCapacity`] rather than truncating.
    #[inline]
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), KeyError> {
        let end = self.len + bytes.len();
        let Some(dst) = self.buf.get_mut(self.len..end) else {
            return self.overflow(bytes);
        };
        crate::words::copy(dst, bytes);
        self.len = end;
        Ok(())
    }

    #[cold]
    fn overflow(&mut self, bytes: &[u8]) -> Result<(), KeyError> {
        let m = self.measure.as_mut().ok_or(KeyError::OverCapacity)?;
        // One bytewise pass: an error path, kept small rather than fast.
        for &b in bytes {
            m.chars += usize::from((b as i8) >= -0x40);
            m.bad |= b <= 0x20 || b == 0x7f;
        }
        Ok(())
    }

    /// Appends a decimal integer.
    #[inline]
    pub fn push_int(&mut self, v: i32) -> Result<(), KeyError> {
        let mut tmp = [0u8; 11];
        let s = fmt_i32(v, &mut tmp);
        self.push(s)
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Number of bytes written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A key function: writes the made key for `(prefix, version, key)` (Django's `KEY_FUNCTION`).
pub type KeyFn =
    fn(prefix: &str, version: i32, key: &[u8], out: &mut KeyWriter<'_>) -> Result<(), KeyError>;

/// Django's default key function: `prefix:version:key`.
pub fn default_key_fn(
    prefix: &str,
    version: i32,
    key: &[u8],
    out: &mut KeyWriter<'_>,
) -> Result<(), KeyError> {
    out.push(prefix.as_bytes())?;
    out.push(b":")?;
    out.push_int(version)?;
    out.push(b":")?;
    out.push(key)
}

/// Makes the key with the configuration's key function into `out` and checks it under its
/// policy: the rules in the module documentation's order, memcached's first under the
/// strict policy; under [`KeyPolicy::Warn`], see [`warn`].
pub(crate) fn make(
    config: &crate::Config,
    version: i32,
    key: &[u8],
    out: &mut [u8],
) -> Result<usize, KeyError> {
    // Through the configuration's pointer, so a firmware that never asks for the warning
    // policy or a key function links none of their code.
    (config.general)(config, version, key, out)
}

/// [`default_key_fn`]'s made key, at any version and with any prefix, checked: one pass
/// over the parts scans them for memcached's rules, measures them and copies them while
/// they fit, so no second pass tells the rules from the capacity.
///
/// The prefix and the policy are read from `config` here, not passed: fewer arguments for
/// the caller ([`Cache::prepare`](crate::Cache), inlining [`make`]) to set up.
#[inline(never)]
pub(crate) fn make_default(
    config: &crate::Config,
    version: i32,
    key: &[u8],
    out: &mut [u8],
) -> Result<usize, KeyError> {
    let (prefix, strict) = (config.prefix, matches!(config.policy, KeyPolicy::Strict));
    // `:version:` as one part: the digits are written into the middle eleven bytes of
    // `tail`, and the byte before the first digit is still a colon.
    let mut tail = [b':'; 13];
    let mut start = 0;
    if let Some(digits) = tail[1..].first_chunk_mut::<11>() {
        start = fmt_i32_start(version, digits);
    }
    let parts: [&[u8]; 3] = [prefix.as_bytes(), &tail[start..], key];
    let mut n = 0;
    let mut chars = 0;
    let mut bad = false;
    for part in parts {
        let (c, b) = scan(part);
        chars += c;
        bad |= b;
        // Copied while it fits; a key that does not fit is refused below.
        if let Some(dst) = out.get_mut(n..n + part.len()) {
            crate::words::copy(dst, part);
        }
        n += part.len();
    }
    if strict {
        if chars > MEMCACHED_MAX_KEY {
            return Err(KeyError::TooLong);
        }
        if bad {
            return Err(KeyError::BadChar);
        }
    }
    if n > out.len() {
        return Err(KeyError::OverCapacity);
    }
    Ok(n)
}

/// The general path of a custom key function (Django's `KEY_FUNCTION`): the key function
/// writes the made key, which is then checked under the policy.
pub(crate) fn make_custom(
    config: &crate::Config,
    version: i32,
    key: &[u8],
    out: &mut [u8],
) -> Result<usize, KeyError> {
    let key_fn = config.key_fn.unwrap_or(default_key_fn);
    let strict = matches!(config.policy, KeyPolicy::Strict);
    let mut w = KeyWriter::new(out);
    match key_fn(config.prefix, version, key, &mut w) {
        Ok(()) => {
            let n = w.len();
            if strict {
                validate(&out[..n])?;
            }
            Ok(n)
        }
        Err(KeyError::OverCapacity) if strict => {
            Err(explain_overflow(key_fn, config.prefix, version, key))
        }
        Err(e) => Err(e),
    }
}

/// A path of key making: [`make_default`], [`warn`] or [`make_custom`].
pub(crate) type General =
    fn(config: &crate::Config, version: i32, key: &[u8], out: &mut [u8]) -> Result<usize, KeyError>;

/// [`KeyPolicy::Warn`]: makes the key without memcached's rules and tells the hook every
/// rule it breaks (Django warns for each). A key over the capacity is still refused, after
/// the hook has heard of the first rule it breaks.
pub(crate) fn warn(
    config: &crate::Config,
    version: i32,
    key: &[u8],
    out: &mut [u8],
) -> Result<usize, KeyError> {
    let KeyPolicy::Warn(hook) = config.policy else {
        return Err(KeyError::OverCapacity);
    };
    let given = Key {
        key,
        version: Some(version),
    };
    let key_fn = config.key_fn.unwrap_or(default_key_fn);
    let mut w = KeyWriter::new(out);
    if let Err(e) = key_fn(config.prefix, version, key, &mut w) {
        if e == KeyError::OverCapacity {
            let rule = explain_overflow(key_fn, config.prefix, version, key);
            if rule != KeyError::OverCapacity {
                hook(given, rule);
            }
        }
        return Err(e);
    }
    let n = w.len();
    for rule in broken_rules(&out[..n]).into_iter().flatten() {
        hook(given, rule);
    }
    Ok(n)
}

/// The error for a made key too long for its buffer under the strict policy: the key
/// function runs again on a writer that only measures, and memcached's rules come first.
#[cold]
#[inline(never)]
fn explain_overflow(key_fn: KeyFn, prefix: &str, version: i32, key: &[u8]) -> KeyError {
    let mut m = KeyWriter {
        buf: &mut [],
        len: 0,
        measure: Some(Measure::default()),
    };
    if let Err(e) = key_fn(prefix, version, key, &mut m) {
        return e;
    }
    let seen = m.measure.unwrap_or_default();
    if seen.chars > MEMCACHED_MAX_KEY {
        KeyError::TooLong
    } else if seen.bad {
        KeyError::BadChar
    } else {
        KeyError::OverCapacity
    }
}

/// Formats `v` in decimal into `buf`, returning the digits.
pub(crate) fn fmt_i32(v: i32, buf: &mut [u8; 11]) -> &[u8] {
    let start = fmt_i32_start(v, buf);
    &buf[start..]
}

/// The made key's head `prefix:version:` for the configured version, built once by `const fn`
/// so the common call only copies it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Head {
    bytes: [u8; 16],
    /// Length, or 0 for no head: it does not fit in 16 bytes, or the prefix holds a byte
    /// memcached refuses (rare enough to leave to the general path).
    len: u8,
    /// Characters in the head.
    chars: u8,
}

impl Head {
    /// No head: every key takes the general path.
    pub(crate) const NONE: Head = Head {
        bytes: [0; 16],
        len: 0,
        chars: 0,
    };

    pub(crate) const fn new(prefix: &str, version: i32) -> Head {
        let mut bytes = [0u8; 16];
        let p = prefix.as_bytes();
        let mut digits = [0u8; 11];
        let start = fmt_i32_start(version, &mut digits);
        let n = p.len() + (11 - start) + 2;
        let prefix_chars = const_chars(p);
        // A head that does not fit, or a prefix holding a byte memcached refuses: no head,
        // and every key takes the general path, which tells the rule.
        if n > 16 || prefix_chars == usize::MAX {
            return Head::NONE;
        }
        let mut i = 0;
        while i < p.len() {
            bytes[i] = p[i];
            i += 1;
        }
        bytes[i] = b':';
        i += 1;
        let mut d = start;
        while d < 11 {
            bytes[i] = digits[d];
            i += 1;
            d += 1;
        }
        bytes[i] = b':';
        Head {
            bytes,
            len: n as u8,
            chars: (prefix_chars + (11 - start) + 2) as u8,
        }
    }
}

/// Formats `v` in decimal at the end of `buf`; returns where the text starts.
const fn fmt_i32_start(v: i32, buf: &mut [u8; 11]) -> usize {
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    // Ten digits and a sign at most: the `i > 0` tests never stop the writes, they only
    // bound the index so that no bounds-check panic is linked.
    while i > 0 {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 && i > 0 {
        i -= 1;
        buf[i] = b'-';
    }
    i
}

/// The default key function's fastest path, for the configured version: the prebuilt head,
/// then the key. `None` when there is no head ([`Head`]: it did not fit its buffer, or the
/// prefix holds a byte memcached refuses), or when the made key does not fit `out` under
/// the strict policy (the general path, [`make`], then tells memcached's rules from the
/// capacity).
#[inline(always)]
pub(crate) fn make_with_head(
    head: &Head,
    key: &[u8],
    out: &mut [u8],
    strict: bool,
) -> Option<Result<usize, KeyError>> {
    let h = usize::from(head.len);
    if h == 0 {
        return None;
    }
    let n = h + key.len();
    if n > out.len() {
        // Under the strict policy the general path says which rule the key breaks.
        return (!strict).then_some(Err(KeyError::OverCapacity));
    }
    if let Some(dst) = out.first_chunk_mut::<16>() {
        // The head in whole words (no `memcpy` call, which on Cortex-M0 copies a byte at a
        // time); the key then overwrites the last word's unused bytes. Cortex-M0 copies only
        // the words the head fills (one for `:1:`); other cores copy all 16 bytes as one
        // array, four words loaded and stored together.
        if crate::words::ARMV6M {
            let words = dst.chunks_exact_mut(4).zip(head.bytes.chunks_exact(4));
            for (d, s) in words.take(h.div_ceil(4)) {
                let w = u32::from_ne_bytes([s[0], s[1], s[2], s[3]]);
                d.copy_from_slice(&w.to_ne_bytes());
            }
        } else {
            *dst = head.bytes;
        }
    } else {
        crate::words::copy(out, &head.bytes[..h]);
    }
    let refused = if crate::words::ARMV6M {
        copy_checked_bytes(key, &mut out[h..n])
    } else {
        copy_checked(key, &mut out[h..n])
    };
    if strict {
        if n > MEMCACHED_MAX_KEY && usize::from(head.chars) + chars(key) > MEMCACHED_MAX_KEY {
            return Some(Err(KeyError::TooLong));
        }
        if refused {
            return Some(Err(KeyError::BadChar));
        }
    }
    Some(Ok(n))
}

/// Characters in `bytes` (UTF-8 leading bytes), or `usize::MAX` if any byte is refused by
/// memcached's rules. A `const fn` so a configured prefix is checked once, at build time.
pub(crate) const fn const_chars(bytes: &[u8]) -> usize {
    let mut i = 0;
    let mut chars = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b <= 0x20 || b == 0x7f {
            return usize::MAX;
        }
        if (b & 0xc0) != 0x80 {
            chars += 1;
        }
        i += 1;
    }
    chars
}

/// Copies `key` into `dst` (of the same length) a machine word at a time, and tells whether any
/// byte is a control character, a space or DEL: in a word, a byte below 0x21 or equal to
/// 0x7f sets its high bit in one of two masks. One pass, and no `memcpy` call, which on
/// Cortex-M copies short keys a byte at a time.
#[inline]
fn copy_checked(key: &[u8], dst: &mut [u8]) -> bool {
    const W: usize = core::mem::size_of::<usize>();
    const ONES: usize = usize::MAX / 0xff;
    const HIGHS: usize = ONES * 0x80;
    #[inline(always)]
    fn word(d: &mut [u8], s: &[u8]) -> usize {
        d.copy_from_slice(s);
        let mut w = [0u8; W];
        w.copy_from_slice(s);
        let x = usize::from_ne_bytes(w);
        let below = x.wrapping_sub(ONES * 0x21) & !x;
        let del = x ^ (ONES * 0x7f);
        (below | (del.wrapping_sub(ONES) & !del)) & HIGHS
    }
    let n = key.len().min(dst.len());
    let (key, dst) = (&key[..n], &mut dst[..n]);
    let mut refused = 0;
    if n >= W {
        for (d, s) in dst.chunks_exact_mut(W).zip(key.chunks_exact(W)) {
            refused |= word(d, s);
        }
        // The last bytes as one more word, overlapping the one before: no byte loop (which
        // compiles to a `memcpy` call) for a key whose length is not a multiple of a word.
        if n % W != 0 {
            refused |= word(&mut dst[n - W..], &key[n - W..]);
        }
    } else {
        // The copy apart from the check: in one loop, the optimizer splits the copy out
        // into a `memcpy` call.
        crate::words::copy(dst, key);
        for &b in key {
            refused |= usize::from(b <= 0x20 || b == 0x7f);
        }
    }
    refused != 0
}

/// 1 for each byte value memcached's character rule refuses (0x00 to 0x20, 0x7f).
static REFUSED: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b <= 0x20 || b == 0x7f) as u8;
        b += 1;
    }
    table
};

/// Cortex-M0's [`copy_checked`]: a byte at a time with a table lookup for the rule (a byte
/// load, a byte store, a table load and an OR), where ARMv6-M, with no unaligned word
/// loads and eight low registers, spends about 33 instructions on each word of the word
/// form. The 256-byte table is linked only in ARMv6-M builds. Always inlined into the one
/// caller: out of line it cost 6 instructions a call on Cortex-M0.
#[inline(always)]
fn copy_checked_bytes(key: &[u8], dst: &mut [u8]) -> bool {
    #[inline(always)]
    fn four(d: &mut [u8], s: &[u8]) -> u8 {
        let (a, b, c, e) = (s[0], s[1], s[2], s[3]);
        d.copy_from_slice(&[a, b, c, e]);
        REFUSED[usize::from(a)]
            | REFUSED[usize::from(b)]
            | REFUSED[usize::from(c)]
            | REFUSED[usize::from(e)]
    }
    let n = key.len().min(dst.len());
    let (key, dst) = (&key[..n], &mut dst[..n]);
    let mut refused = 0;
    if n >= 4 {
        for (d, s) in dst.chunks_exact_mut(4).zip(key.chunks_exact(4)) {
            refused |= four(d, s);
        }
        // The last bytes as one more, overlapping, group of four: a byte loop here would
        // compile to a `memcpy` call.
        if n % 4 != 0 {
            refused |= four(&mut dst[n - 4..], &key[n - 4..]);
        }
    } else {
        for (d, &b) in dst.iter_mut().zip(key) {
            *d = b;
            refused |= REFUSED[usize::from(b)];
        }
    }
    refused != 0
}

fn chars(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| (b & 0xc0) != 0x80).count()
}

/// Every memcached rule a made key breaks, in Django's order (both may).
pub(crate) fn broken_rules(made: &[u8]) -> [Option<KeyError>; 2] {
    let (chars, bad) = scan(made);
    [
        (chars > MEMCACHED_MAX_KEY).then_some(KeyError::TooLong),
        bad.then_some(KeyError::BadChar),
    ]
}

/// Characters in a made key, and whether it holds a byte memcached refuses.
#[inline]
fn scan(made: &[u8]) -> (usize, bool) {
    let mut chars = 0usize;
    let mut bad = false;
    for &b in made {
        bad |= b <= 0x20 || b == 0x7f;
        // Count every byte that does not continue a UTF-8 sequence.
        chars += usize::from((b as i8) >= -0x40);
    }
    (chars, bad)
}

/// Checks a made key against memcached's rules (Django's `memcache_key_warnings`), in
/// Django's order: the length rule first, then the character rule.
///
/// Length counts characters, not bytes, as Python's `len(str)` does: `清` is one character.
pub fn validate(made: &[u8]) -> Result<(), KeyError> {
    let (chars, bad) = scan(made);
    if chars > MEMCACHED_MAX_KEY {
        return Err(KeyError::TooLong);
    }
    if bad {
        return Err(KeyError::BadChar);
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    /// Every byte value at every position of keys of 1 to 13 bytes: the word-at-a-time
    /// check and Cortex-M0's table lookup refuse exactly the bytes memcached refuses, and
    /// the copy is exact.
    #[test]
    fn copy_checked_matches_the_byte_rule() {
        for len in 1..=13 {
            for pos in 0..len {
                for b in 0..=255u8 {
                    let mut key = [b'k'; 13];
                    key[pos] = b;
                    for copy in [copy_checked, copy_checked_bytes] {
                        let mut dst = [0u8; 13];
                        let refused = copy(&key[..len], &mut dst[..len]);
                        assert_eq!(refused, b <= 0x20 || b == 0x7f, "{len} {pos} {b}");
                        assert_eq!(dst[..len], key[..len]);
                    }
                }
            }
        }
    }

    use super::*;

    fn made(prefix: &str, version: i32, key: &str) -> heapless::Vec<u8, 64> {
        let mut buf = [0u8; 64];
        let mut w = KeyWriter::new(&mut buf);
        default_key_fn(prefix, version, key.as_bytes(), &mut w).unwrap();
        heapless::Vec::from_slice(w.as_bytes()).unwrap()
    }

    #[test]
    fn made_key_shape() {
        assert_eq!(&made("", 1, "foo")[..], b":1:foo");
        assert_eq!(&made("site", -12, "k")[..], b"site:-12:k");
        assert_eq!(&made("", i32::MIN, "k")[..], b":-2147483648:k");
    }

    /// A configuration with a prefix that lives long enough for the test.
    fn config(prefix: &str, version: i32, strict: bool) -> crate::Config {
        let prefix: &'static str = std::boxed::Box::leak(prefix.into());
        let policy = if strict {
            KeyPolicy::Strict
        } else {
            KeyPolicy::Lenient
        };
        crate::Config::new()
            .key_prefix(prefix)
            .version(version)
            .key_policy(policy)
    }

    #[test]
    fn fast_path_agrees_with_key_fn_and_validate() {
        let samples: &[&[u8]] = &[
            b"",
            b"a",
            b"post_00000001234",
            b"with space",
            b"tab\there",
            b"del\x7f",
            b"\x00",
            "清清清".as_bytes(),
            b"exactly8",
            b"exactly8bytes+16",
            b"abcdefgh\x1f",
            b"abcdefgh\x20ijklmnop",
            b"~~~~~~~~\x7f",
        ];
        let long_ok = [b'x'; 247];
        let long_bad = [b'x'; 248];
        let cjk = "清".repeat(247);
        let mut all: heapless::Vec<&[u8], 32> = heapless::Vec::new();
        all.extend_from_slice(samples).unwrap();
        all.extend_from_slice(&[&long_ok[..], &long_bad[..], cjk.as_bytes()])
            .unwrap();
        for prefix in ["", "site", "bad prefix", "清"] {
            for version in [1, -3, 12345] {
                for &key in &all {
                    for cap in [8usize, 40, 255, 1024] {
                        for strict in [true, false] {
                            let mut a = [0u8; 1024];
                            let slow = make(
                                &config(prefix, version, strict),
                                version,
                                key,
                                &mut a[..cap],
                            );
                            // The rules straight from their definition.
                            let mut full = [0u8; 2048];
                            let mut w = KeyWriter::new(&mut full);
                            default_key_fn(prefix, version, key, &mut w).unwrap();
                            let n = w.len();
                            let expected = match validate(&full[..n]) {
                                Err(e) if strict => Err(e),
                                _ if n > cap => Err(KeyError::OverCapacity),
                                _ => Ok(n),
                            };
                            let what = format!("{prefix:?} {version} {key:?} {cap} {strict}");
                            assert_eq!(slow, expected, "key fn {what}");
                            let mut h = [0u8; 1024];
                            let head = Head::new(prefix, version);
                            if let Some(via_head) =
                                make_with_head(&head, key, &mut h[..cap], strict)
                            {
                                assert_eq!(via_head, slow, "head {what}");
                                if let Ok(n) = via_head {
                                    assert_eq!(a[..n], h[..n]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// A prefix holding a byte memcached refuses leaves the configuration without a head:
    /// every key takes the general path, which refuses it under the strict policy only.
    #[test]
    fn a_refused_prefix_takes_the_general_path() {
        assert_eq!(Head::new("bad prefix", 1).len, 0);
        assert_eq!(Head::new("site", 12).len, 8);
        let clock = crate::ManualClock::new(1000);
        let strict = crate::Config::new().key_prefix("bad prefix");
        let mut c: crate::MemCache<_, 4, 32, 8> =
            crate::MemCache::new(&clock, crate::Table::new(), strict);
        assert_eq!(
            c.set("k", &1u8, 60),
            Err(crate::Error::Key(KeyError::BadChar))
        );
        let lenient = strict.key_policy(KeyPolicy::Lenient);
        let mut c: crate::MemCache<_, 4, 32, 8> =
            crate::MemCache::new(&clock, crate::Table::new(), lenient);
        assert_eq!(c.set("k", &1u8, 60), Ok(()));
        assert_eq!(c.get::<u8>("k"), Ok(Some(1)));
        assert_eq!(c.get::<u8>(Key::new("k").version(1)), Ok(Some(1)));
    }

    #[test]
    fn writer_refuses_instead_of_truncating() {
        let mut buf = [0u8; 4];
        let mut w = KeyWriter::new(&mut buf);
        assert_eq!(w.push(b"abcde"), Err(KeyError::OverCapacity));
        assert!(w.is_empty());
    }

    #[test]
    fn validation_counts_characters() {
        let cjk = "清".repeat(250);
        assert_eq!(validate(cjk.as_bytes()), Ok(()));
        let cjk = "清".repeat(251);
        assert_eq!(validate(cjk.as_bytes()), Err(KeyError::TooLong));
        for bad in [0u8, b' ', b'\t', b'\n', 0x7f] {
            assert_eq!(validate(&[b'a', bad]), Err(KeyError::BadChar));
        }
    }
}
