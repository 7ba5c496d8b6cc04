//! `get_or_set` on the shared caches: the default runs outside the lock (it may use the same
//! cache), and the value is read again after the `add`, as Django does.

use std::sync::Arc;
use std::thread;

use tickcache::{Config, ManualClock, MemCache, SharedCache, StdClock, SyncCache, Table};

type Small<'c> = MemCache<&'c ManualClock, 8, 16, 8>;

fn shared(clock: &ManualClock) -> SharedCache<&ManualClock, Table<8, 16, 8>, 16> {
    SharedCache::new(Small::new(clock, Table::new(), Config::new()))
}

#[test]
fn shared_default_may_read_and_write_the_same_cache() {
    let clock = ManualClock::new(1000);
    let cache = shared(&clock);
    cache.lock(|c| c.set("base", &40u32, 60)).unwrap();
    let v = cache
        .get_or_set(
            "answer",
            || {
                let base = cache.lock(|c| c.get::<u32>("base")).unwrap().unwrap();
                cache.lock(|c| c.set("seen", &1u8, 60)).unwrap();
                base + 2
            },
            60,
        )
        .unwrap();
    assert_eq!(v, 42);
    assert_eq!(cache.lock(|c| c.get::<u32>("answer")).unwrap(), Some(42));
    assert_eq!(cache.lock(|c| c.get::<u8>("seen")).unwrap(), Some(1));
    // A hit does not call the default.
    let again = cache.get_or_set("answer", || -> u32 { panic!("called on a hit") }, 60);
    assert_eq!(again.unwrap(), 42);
}

#[test]
fn shared_value_stored_meanwhile_wins_over_the_default() {
    let clock = ManualClock::new(1000);
    let cache = shared(&clock);
    // Another context (an interrupt, say) stores the key while the default is computed.
    let v = cache
        .get_or_set(
            "k",
            || {
                cache.lock(|c| c.set("k", &7u32, 60)).unwrap();
                3u32
            },
            60,
        )
        .unwrap();
    assert_eq!(v, 7);
    assert_eq!(cache.lock(|c| c.get::<u32>("k")).unwrap(), Some(7));
}

#[test]
fn shared_zero_timeout_returns_the_default_and_stores_nothing() {
    let clock = ManualClock::new(1000);
    let cache = shared(&clock);
    assert_eq!(cache.get_or_set("k", || 5u32, 0).unwrap(), 5);
    assert!(!cache.lock(|c| c.has_key("k")).unwrap());
}

#[test]
fn sync_default_may_use_the_same_cache_and_other_threads_go_on() {
    let cache = Arc::new(SyncCache::new(MemCache::<_, 8, 16, 8>::new(
        StdClock::new(),
        Table::new(),
        Config::new(),
    )));
    let v = cache
        .get_or_set(
            "k",
            || {
                // Would deadlock if the lock were held: another thread uses the cache too.
                let other = Arc::clone(&cache);
                thread::spawn(move || other.lock().set("other", &1u8, 60).unwrap())
                    .join()
                    .unwrap();
                cache.lock().set("k", &9u32, 60).unwrap();
                4u32
            },
            60,
        )
        .unwrap();
    assert_eq!(v, 9, "the value stored meanwhile wins, as in Django");
    assert_eq!(cache.lock().get::<u8>("other").unwrap(), Some(1));
}

// ---------------------------------------------------------------------------------------
// Re-entrancy: a value's `Serialize` (or a closure) that uses the same shared cache from
// inside one of its calls gets `Error::Busy`, never a panic or a deadlock.

use serde::{Serialize, Serializer};
use tickcache::Error;

/// A value whose encoding reads a counter from a cache: through `probe`, which reports what
/// the inner call returned.
struct Nosy<F: Fn() -> Result<Option<u32>, Error>>(F);

impl<F: Fn() -> Result<Option<u32>, Error>> Serialize for Nosy<F> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.0)() {
            Ok(n) => s.serialize_u32(n.unwrap_or(0)),
            Err(e) => Err(serde::ser::Error::custom(e)),
        }
    }
}

#[test]
fn shared_serialize_that_reads_the_same_cache_is_busy() {
    let clock = ManualClock::new(1000);
    let cache = shared(&clock);
    cache.with(|c| c.set("n", &5u32, 60)).unwrap();
    let inner = std::cell::Cell::new(None);
    let nosy = Nosy(|| {
        let r = cache.with(|c| c.get::<u32>("n"));
        inner.set(Some(r));
        r
    });
    // The inner call is refused; the encoding fails with it; the old value is removed,
    // as for any failed set.
    assert_eq!(cache.with(|c| c.set("k", &nosy, 60)), Err(Error::Serialize));
    assert_eq!(inner.get(), Some(Err(Error::Busy)));
    assert_eq!(cache.with(|c| c.get::<u32>("k")), Ok(None));
    // Outside any call the same value encodes.
    let mut buf = [0u8; 8];
    assert_eq!(postcard::to_slice(&nosy, &mut buf).map(|b| b.len()), Ok(1));
    // get_or_set called from inside a call: Busy, not a panic.
    let nested: Result<_, Error> = cache.with(|_| Ok(cache.get_or_set("x", || 1u32, 60)));
    assert_eq!(nested, Ok(Err(Error::Busy)));
    // try_lock and with say the same thing; lock is for straight-line code.
    let nested: Result<_, Error> = cache.with(|_| Ok(cache.try_lock(|_| ())));
    assert_eq!(nested, Ok(None));
}

#[test]
fn sync_serialize_that_reads_the_same_cache_is_busy_not_a_deadlock() {
    let cache = Arc::new(SyncCache::new(MemCache::<_, 8, 16, 8>::new(
        StdClock::new(),
        Table::new(),
        Config::new(),
    )));
    cache.with(|c| c.set("n", &5u32, 60)).unwrap();
    let nosy = Nosy(|| cache.with(|c| c.get::<u32>("n")));
    assert_eq!(cache.with(|c| c.set("k", &nosy, 60)), Err(Error::Serialize));
    // Through lock() on the outside too: the holder is known whichever way it locked.
    let guard = cache.lock();
    assert_eq!(cache.with(|c| c.get::<u32>("n")), Err(Error::Busy));
    assert!(cache.try_lock().is_none());
    // Another thread is not refused: it waits for the lock.
    let other = Arc::clone(&cache);
    let waiter = thread::spawn(move || other.with(|c| c.get::<u32>("n")));
    thread::sleep(std::time::Duration::from_millis(20));
    drop(guard);
    assert_eq!(waiter.join().unwrap(), Ok(Some(5)));
    // The closure of get_or_set may use the cache with `with` or `lock`.
    let v = cache
        .get_or_set(
            "k",
            || cache.with(|c| c.get::<u32>("n")).unwrap().unwrap() + 1,
            60,
        )
        .unwrap();
    assert_eq!(v, 6);
    // A panic while holding the lock leaves it usable, and this thread no longer its holder.
    let c2 = Arc::clone(&cache);
    let _ = thread::spawn(move || {
        let _g = c2.lock();
        panic!("poison it");
    })
    .join();
    assert_eq!(cache.with(|c| c.get::<u32>("k")), Ok(Some(6)));
}

#[test]
#[should_panic(expected = "SyncCache::lock by the thread that holds it")]
fn sync_lock_again_on_the_same_thread_panics_clearly_instead_of_deadlocking() {
    let cache = SyncCache::new(MemCache::<_, 8, 16, 8>::new(
        StdClock::new(),
        Table::new(),
        Config::new(),
    ));
    let _outer = cache.lock();
    let _inner = cache.lock();
}

// ---------------------------------------------------------------------------------------
// The blocking shared cache over another raw mutex: the same calls, the same `Busy`.

#[test]
fn shared_over_a_noop_mutex_behaves_as_over_a_critical_section() {
    use tickcache::mutex::NoopRawMutex;
    let clock = ManualClock::new(1000);
    let cache: SharedCache<_, Table<8, 16, 8>, 16, NoopRawMutex> =
        SharedCache::with_raw_mutex(Small::new(&clock, Table::new(), Config::new()));
    cache.with(|c| c.set("n", &5u32, 60)).unwrap();
    assert_eq!(cache.lock(|c| c.incr("n", 1)), Ok(6));
    let nested: Result<_, Error> = cache.with(|_| Ok(cache.with(|c| c.get::<u32>("n"))));
    assert_eq!(nested, Ok(Err(Error::Busy)));
    assert!(format!("{cache:?}").contains("len: 1"));
    assert_eq!(cache.get_or_set("m", || 3u32, 60), Ok(3));
    assert_eq!(cache.into_inner().len(), 2);
}

#[test]
fn a_store_over_a_noop_mutex_serves_several_caches_and_answers_busy() {
    use tickcache::mutex::NoopRawMutex;
    use tickcache::{Backend, Cache, Store};
    let clock = ManualClock::new(1000);
    let store: Store<Table<8, 16, 8>, NoopRawMutex> = Store::with_raw_mutex(Table::new());
    let mut a = Cache::<_, _, 16>::new(&clock, &store, Config::new().key_prefix("a"));
    let mut b = Cache::<_, _, 16>::new(&clock, &store, Config::new().key_prefix("b"));
    a.set("k", &1u8, 60).unwrap();
    b.set("k", &2u8, 60).unwrap();
    assert_eq!(
        (a.get::<u8>("k"), b.get::<u8>("k")),
        (Ok(Some(1)), Ok(Some(2)))
    );
    assert_eq!(store.try_lock(|_| store.try_lock(|_| ())), Some(None));
    let nested = store.try_lock(|_| a.get::<u8>("k"));
    assert_eq!(nested, Some(Err(Error::Busy)));
    assert!(format!("{store:?}").contains("len: 2"));
    assert_eq!(store.into_inner().len(), 2);
}
