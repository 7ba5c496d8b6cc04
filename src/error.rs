//! The API's error type.

use core::convert::Infallible;
use core::fmt;

use crate::key::KeyError;

/// Everything a cache call can refuse.
///
/// `E` is the backend's own error (a flash error for a persistent cache); the memory table
/// never fails, so its caches use `Error<Infallible>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error<E = Infallible> {
    /// The key was refused; nothing was read or changed.
    Key(KeyError),
    /// The encoded value does not fit the value capacity. A `set` that fails this way also
    /// removes the key's old value, so no stale value stays readable (memcached's rule).
    ValueTooLarge,
    /// The value's `Serialize` implementation failed.
    Serialize,
    /// The stored value is not of the type asked for (or a raw buffer is too small).
    WrongType,
    /// The key is missing or expired (Django's `ValueError` from `incr`/`incr_version`).
    NotFound,
    /// The caller's buffer is too small for the stored value (raw API), or a map too
    /// small for a batch's hits ([`Cache::get_many_into`](crate::Cache::get_many_into)).
    BufferTooSmall,
    /// `incr`/`decr` on a value that is not an integer.
    NotInteger,
    /// `incr`/`decr` would leave the `i64` range; the value is unchanged.
    Overflow,
    /// The entry cannot be stored at all, even in an empty cache (persistent backends).
    StorageFull,
    /// The cache or store is in use by a call further up this stack: a value's
    /// `Serialize`, or a closure run inside a call, used the same shared cache or store.
    /// Nothing was read or changed by the inner call. (A plain `RefCell` would panic here.)
    Busy,
    /// The backend failed (for example a flash read, write or erase).
    Backend(E),
    /// The backend must finish storage work before this call can run (an async persistent
    /// backend: a flush or a compaction it cannot do inside a synchronous call). The call
    /// changed nothing. [`AsyncSharedCache`](crate::AsyncSharedCache) awaits the work
    /// ([`AsyncBackend::settle`](crate::AsyncBackend::settle)) and runs the call again, so
    /// it never returns this; a cache used directly over such a backend does the same
    /// itself.
    Settle,
}

impl<E> From<KeyError> for Error<E> {
    fn from(e: KeyError) -> Self {
        Error::Key(e)
    }
}

impl<E: fmt::Debug> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Key(k) => write!(f, "invalid key: {k}"),
            Error::ValueTooLarge => f.write_str("value larger than the cache's value capacity"),
            Error::Serialize => f.write_str("value could not be serialized"),
            Error::WrongType => f.write_str("stored value is not of the requested type"),
            Error::NotFound => f.write_str("key not found"),
            Error::BufferTooSmall => f.write_str("buffer too small for the value"),
            Error::NotInteger => f.write_str("value is not an integer"),
            Error::Overflow => f.write_str("integer overflow"),
            Error::StorageFull => f.write_str("entry does not fit in storage"),
            Error::Busy => f.write_str("cache in use by a call further up this stack"),
            Error::Backend(e) => write!(f, "backend error: {e:?}"),
            Error::Settle => f.write_str("storage work must be awaited before this call"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for Error<E> {}

impl Error<Infallible> {
    /// Widens an infallible-backend error into any backend's error type.
    pub fn widen<E>(self) -> Error<E> {
        match self {
            Error::Key(k) => Error::Key(k),
            Error::ValueTooLarge => Error::ValueTooLarge,
            Error::Serialize => Error::Serialize,
            Error::WrongType => Error::WrongType,
            Error::NotFound => Error::NotFound,
            Error::BufferTooSmall => Error::BufferTooSmall,
            Error::NotInteger => Error::NotInteger,
            Error::Overflow => Error::Overflow,
            Error::StorageFull => Error::StorageFull,
            Error::Busy => Error::Busy,
            Error::Backend(never) => match never {},
            Error::Settle => Error::Settle,
        }
    }
}
