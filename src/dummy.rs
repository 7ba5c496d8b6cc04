//! The dummy backend: Django's `DummyCache`. It validates keys and stores nothing.

use core::convert::Infallible;

use crate::backend::{Backend, Put};
use crate::error::Error;
use crate::value::Kind;

/// Stores nothing: `get` misses, `add` reports success, `touch`/`delete`/`has_key` report
/// `false`, `incr` and `incr_version` fail with [`Error::NotFound`]. Keys are still made and
/// validated, so a dummy cache in development catches the key errors production would hit.
///
/// ```
/// use tickcache::{Cache, Config, Dummy, ManualClock};
/// let clock = ManualClock::new(1000);
/// let mut cache: Cache<_, _, 32> = Cache::new(&clock, Dummy, Config::new());
/// assert!(cache.add("k", &1u8, 60)?);
/// assert_eq!(cache.get::<u8>("k")?, None);
/// assert!(cache.set("bad key", &1u8, 60).is_err());
/// # Ok::<(), tickcache::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Dummy;

impl Backend for Dummy {
    type Error = Infallible;

    fn get<R>(
        &mut self,
        _: &[u8],
        _: u64,
        _: impl FnOnce(&[u8], Kind) -> R,
    ) -> Result<Option<R>, Error> {
        Ok(None)
    }

    fn has_key(&mut self, _: &[u8], _: u64) -> Result<bool, Error> {
        Ok(false)
    }

    fn put(
        &mut self,
        _: &[u8],
        _: Put,
        _: u64,
        _: u64,
        _: impl FnOnce(&mut [u8]) -> Result<(usize, Kind), Error>,
    ) -> Result<bool, Error> {
        Ok(true)
    }

    fn touch(&mut self, _: &[u8], _: u64, _: u64) -> Result<bool, Error> {
        Ok(false)
    }

    fn delete(&mut self, _: &[u8], _: u64) -> Result<bool, Error> {
        Ok(false)
    }

    fn incr(&mut self, _: &[u8], _: i64, _: u64) -> Result<i64, Error> {
        Err(Error::NotFound)
    }

    fn rekey(&mut self, _: &[u8], _: &[u8], _: u64, _: u64) -> Result<bool, Error> {
        Ok(false)
    }

    fn clear(&mut self) -> Result<(), Error> {
        Ok(())
    }

    fn len(&self) -> usize {
        0
    }
}
