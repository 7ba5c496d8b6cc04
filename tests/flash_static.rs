//! A persistent cache whose table lives in a `static` of its own, lent to the backend with
//! `Persistent::open_in`; and `close()` recording the time by itself.

use std::sync::Mutex;

use tickcache::flash::{MockFlash, Persistent, Policy};
use tickcache::{Cache, Config, ManualClock, Table};

type Mock = MockFlash<4, 1024, 4>;
type T = Table<16, 24, 16>;

/// The table firmware would keep in `.bss` (`StaticCell`, `cortex_m::singleton!`); a mutex
/// here, so the tests can share the one static.
static TABLE: Mutex<T> = Mutex::new(Table::new());

const POLICIES: [Policy; 2] = [Policy::WriteThrough, Policy::WriteBack { max_dirty: 4 }];

/// Live keys and values of a table, sorted.
fn contents(t: &T) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    t.for_each_lru(|k, v, _, _| out.push((k.to_vec(), v.to_vec())));
    out.sort();
    out
}

#[test]
fn a_static_table_reopened_holds_exactly_what_the_flash_holds() {
    for policy in POLICIES {
        let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
        let mut flash = Mock::new();
        let clock = ManualClock::new(1000);
        {
            let p = Persistent::<_, 16, 24, 16>::open_in(&mut flash, 0..4096, &mut *table, policy)
                .unwrap();
            let mut cache = p.into_cache(&clock, Config::new());
            for (i, k) in ["a", "b", "c", "d"].into_iter().enumerate() {
                cache.set(k, &(i as u32), 60).unwrap();
            }
            cache.delete("b").unwrap();
            cache.incr("d", 10).unwrap();
            cache.close().unwrap();
            // Changed after the close: under write-back only in RAM, lost at the reset.
            cache.set("late", &7u32, 60).unwrap();
        }
        // The reset leaves the static table as it was, and more: stale entries of every
        // kind, including a value of a key the flash has under another value.
        {
            let mut stale = Cache::<_, _, 24>::new(&clock, &mut *table, Config::new());
            stale.set("a", &99u32, 60).unwrap();
            stale.set("b", &1u32, 60).unwrap();
            stale.set("stale", &5u32, 60).unwrap();
        }
        assert_eq!(contents(&table).len(), 6);
        // What the flash says, read into a fresh table.
        let fresh = contents(
            Persistent::<_, 16, 24, 16>::open(&mut flash, 0..4096, T::new(), policy)
                .unwrap()
                .table(),
        );
        let p =
            Persistent::<_, 16, 24, 16>::open_in(&mut flash, 0..4096, &mut *table, policy).unwrap();
        assert_eq!(contents(p.table()), fresh, "{policy:?}");
        let clock = ManualClock::new(1000);
        let mut cache = p.into_cache(&clock, Config::new());
        assert_eq!(cache.get::<u32>("a").unwrap(), Some(0));
        assert_eq!(cache.get::<u32>("b").unwrap(), None);
        assert_eq!(cache.get::<u32>("c").unwrap(), Some(2));
        assert_eq!(cache.get::<u32>("stale").unwrap(), None);
        let late = cache.get::<u32>("late").unwrap();
        assert_eq!(late, (policy == Policy::WriteThrough).then_some(7));
        assert!(cache.has_key("d").unwrap());
        assert_eq!(cache.len(), if late.is_some() { 4 } else { 3 });
        // The table is left as it is for the next user of the static: the next open
        // clears it too.
    }
}

#[test]
fn close_alone_records_the_time() {
    for policy in POLICIES {
        let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
        let mut flash = Mock::new();
        {
            let clock = ManualClock::new(1000);
            let p = Persistent::<_, 16, 24, 16>::open_in(&mut flash, 0..4096, &mut *table, policy)
                .unwrap();
            let mut cache = p.into_cache(&clock, Config::new());
            cache.set("k", &1u8, 10).unwrap(); // expires at 10 s
            clock.advance_secs(8);
            cache.close().unwrap(); // nothing else since the set
        }
        // Power-on: the clock starts at zero, cache time resumes from the close (8 s), so
        // "k" has 2 s left, not 10 s (measured from the set).
        let clock = ManualClock::new(1000);
        let p =
            Persistent::<_, 16, 24, 16>::open_in(&mut flash, 0..4096, &mut *table, policy).unwrap();
        assert_eq!(p.latest_time(), 8000, "{policy:?}");
        let mut cache = p.into_cache(&clock, Config::new());
        assert_eq!(cache.now(), 8000);
        clock.advance(1999);
        assert_eq!(cache.get::<u8>("k").unwrap(), Some(1));
        clock.advance(1);
        assert_eq!(cache.get::<u8>("k").unwrap(), None, "{policy:?}");
    }
}

/// The owned table still works as before, and a closed cache's time survives with it too.
#[test]
fn the_owned_table_opens_as_before() {
    let mut flash = Mock::new();
    let clock = ManualClock::new(1000);
    let p = Persistent::<_, 16, 24, 16>::open(&mut flash, 0..4096, T::new(), Policy::WriteThrough)
        .unwrap();
    let mut cache = p.into_cache(&clock, Config::new());
    cache.set("x", &3u8, 60).unwrap();
    clock.advance_secs(5);
    cache.close().unwrap();
    let p =
        Persistent::<_, 16, 24, 16>::open_in(&mut flash, 0..4096, T::new(), Policy::WriteThrough)
            .unwrap();
    assert_eq!(p.latest_time(), 5000);
    assert_eq!(contents(p.table()), vec![(b":1:x".to_vec(), vec![3])]);
}
