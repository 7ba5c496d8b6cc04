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
