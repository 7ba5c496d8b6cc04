//! Keys: the user's key, its version, the made key `prefix:version:key` and its validation.
//!
//! As in Django, every operation turns the user's key into a *made key* with the key
//! function (by default `prefix:version:key`) and validates the made key, so the prefix and
//! the version count toward the limits. Validation follows memcached's rules: at most 250
//! characters, and none of `\x00`–`\x20` or `\x7f`.

/// Longest made key memcached accepts, in characters.
pub const MEMCACHED_MAX_KEY: usize = 250;

/// A key as the caller names it, with an optional version.
///
/// `&str` and `&[u8]` convert into a `Key` with the cache's default version:
///
/// ```
/// use tickcache::Key;
/// let k: Key = "post_1".into();
/// assert_eq!(k.version, None);
/// let k = Key::new("post_1").version(2);
/// assert_eq!(k.version, Some(2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

impl<'a> From<&'a str> for Key<'a> {
    fn from(key: &'a str) -> Self {
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

/// Why a key was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum KeyError {
    /// The made key is longer than 250 characters (memcached's limit; strict policy only).
    TooLong,
    /// The made key contains a control character, a space or DEL (strict policy only).
    BadChar,
    /// The made key does not fit the cache's key capacity `K` (either policy; never truncated).
    OverCapacity,
}

impl core::fmt::Display for KeyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            KeyError::TooLong => "key longer than 250 characters",
            KeyError::BadChar => "key contains a control character, space or DEL",
            KeyError::OverCapacity => "key longer than the cache's key capacity",
        })
    }
}

/// What to do with a made key that memcached would refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KeyPolicy {
    /// Refuse it with [`KeyError`] (Django's memcached backends). The default.
    Strict,
    /// Accept any key that fits the key capacity (Django's locmem only warns).
    Lenient,
}

/// A bounded buffer that a key function writes the made key into.
#[derive(Debug)]
pub struct KeyWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> KeyWriter<'b> {
    /// A writer over `buf`, empty.
    pub fn new(buf: &'b mut [u8]) -> Self {
        KeyWriter { buf, len: 0 }
    }

    /// Appends bytes; fails with [`KeyError::OverCapacity`] rather than truncating.
    #[inline]
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), KeyError> {
        let end = self.len + bytes.len();
        let dst = self
            .buf
            .get_mut(self.len..end)
            .ok_or(KeyError::OverCapacity)?;
        dst.copy_from_slice(bytes);
        self.len = end;
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

/// Formats `v` in decimal into `buf`, returning the digits.
pub(crate) fn fmt_i32(v: i32, buf: &mut [u8; 11]) -> &[u8] {
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// Checks a made key against memcached's rules (Django's `memcache_key_warnings`).
///
/// Length counts characters, not bytes, as Python's `len(str)` does: `清` is one character.
pub fn validate(made: &[u8]) -> Result<(), KeyError> {
    let mut chars = 0usize;
    for &b in made {
        if b <= 0x20 || b == 0x7f {
            return Err(KeyError::BadChar);
        }
        // Count every byte that does not continue a UTF-8 sequence.
        chars += usize::from((b as i8) >= -0x40);
    }
    if chars > MEMCACHED_MAX_KEY {
        return Err(KeyError::TooLong);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
