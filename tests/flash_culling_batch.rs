//! An insert into a full table culls (Django's cull), and on flash the cull and the put are
//! one batch: the victims' tombstones, then the new value. In a region too small for that
//! batch even when empty, while each of its records fits alone, the insert is refused with
//! `StorageFull` (no panic, no hang) and nothing acknowledged before it is lost: every
//! entry is still read back with its value, before and after a reopen, and the cache goes
//! on culling inserts whose batch fits. The blocking front end under both policies, and
//! the async one.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use embassy_futures::block_on;
use tickcache::flash::{AsyncPersistent, MockFlash, Persistent, Policy};
use tickcache::mutex::NoopRawMutex;
use tickcache::{AsyncSharedCache, Config, Error, ManualClock, Table};

/// Two pages of 256 bytes (228 for records after the page header): one page holds the
/// four entries, and an empty log holds a batch of one page (the other is kept free for
/// compaction).
type Flash = MockFlash<2, 256, 4>;
const RANGE: std::ops::Range<u32> = 0..512;
type P<'f> = Persistent<&'f mut Flash, 8, 48, 128>;
type AP<'f> = AsyncPersistent<&'f mut Flash, 8, 48, 128>;

/// At most 4 entries; an insert into a full table drops 4 / 2 = 2 of them.
const MAX_ENTRIES: usize = 4;
fn table() -> Table<8, 48, 128> {
    Table::with_culling(MAX_ENTRIES, 2)
}

/// Keys of 40 bytes: a tombstone takes 48 bytes of flash, an entry with a one-byte value 52.
fn key(i: usize) -> String {
    format!("{i}{}", "k".repeat(39))
}

/// The value the insert that culls stores: 120 bytes, a record of 172 bytes, which fits a
/// page alone but not beside the cull's two tombstones (2 x 48 + 172 > 228).
const BIG: [u8; 120] = [0xB1; 120];

/// Runs `f` on a thread of its own and fails when it has not returned within a minute: an
/// operation that loops for ever fails the test instead of stalling it.
fn within<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(r) => r,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no answer within a minute"),
        // The thread panicked: its message is printed above.
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

/// Reads `key(i)` for each entry filled: its one-byte value `i`, every one of them.
fn assert_all_held(c: &mut tickcache::Cache<&ManualClock, P<'_>, 48>, ctx: &str) {
    for i in 0..MAX_ENTRIES {
        let mut out = [0u8; 128];
        let got = c.get_raw(key(i).as_str(), &mut out);
        assert_eq!(got, Ok(Some(1)), "{} {ctx}", key(i));
        assert_eq!(out[0], i as u8, "{} {ctx}", key(i));
    }
}

/// Fills the table, inserts one more key whose culling batch cannot fit the region, and
/// checks what a user relies on after that refusal.
fn refused_insert_keeps_every_entry(policy: Policy) {
    let clock = ManualClock::new(1000);
    let new = key(MAX_ENTRIES);
    // Alone, the new value's record fits the region: an empty cache stores it.
    {
        let mut flash = Flash::new();
        let p = P::open(&mut flash, RANGE, table(), policy).unwrap();
        let mut c = p.into_cache(&clock, Config::new());
        c.set_raw(new.as_str(), &BIG[..], 600).unwrap();
        c.close().unwrap();
        let mut out = [0u8; 128];
        assert_eq!(c.get_raw(new.as_str(), &mut out), Ok(Some(BIG.len())));
    }
    let mut flash = Flash::new();
    {
        let p = P::open(&mut flash, RANGE, table(), policy).unwrap();
        let mut c = p.into_cache(&clock, Config::new());
        for i in 0..MAX_ENTRIES {
            c.set_raw(key(i).as_str(), &[i as u8][..], 600).unwrap();
        }
        // The table is at its limit and the new key is not held: the insert culls.
        assert_eq!(c.len(), MAX_ENTRIES, "{policy:?}: the table is full");
        assert_eq!(
            c.set_raw(new.as_str(), &BIG[..], 600),
            Err(Error::StorageFull),
            "{policy:?}: the insert whose culling batch never fits"
        );
        let mut out = [0u8; 128];
        assert_eq!(
            c.get_raw(new.as_str(), &mut out),
            Ok(None),
            "{policy:?}: the refused insert"
        );
        assert_eq!(c.len(), MAX_ENTRIES, "{policy:?}: nothing culled");
        assert_all_held(&mut c, &format!("{policy:?}, after the refused insert"));
        // Under write-back a close writes what is listed; under write-through every
        // acknowledged set is on flash already, so the cache is dropped without one.
        if policy != Policy::WriteThrough {
            c.close().unwrap();
        }
    }
    let p = P::open(&mut flash, RANGE, table(), policy).unwrap();
    let mut c = p.into_cache(&clock, Config::new());
    assert_eq!(c.len(), MAX_ENTRIES, "{policy:?}: after a reopen");
    assert_all_held(&mut c, &format!("{policy:?}, after a reopen"));
    // The cache goes on: an insert whose batch fits culls, and is held after a reopen.
    c.set_raw(new.as_str(), &[0xEE][..], 600).unwrap();
    c.close().unwrap();
    let p = P::open(&mut flash, RANGE, table(), policy).unwrap();
    let mut c = p.into_cache(&clock, Config::new());
    let mut out = [0u8; 128];
    assert_eq!(c.get_raw(new.as_str(), &mut out), Ok(Some(1)), "{policy:?}");
    assert_eq!(out[0], 0xEE, "{policy:?}");
    assert!(c.len() < MAX_ENTRIES, "{policy:?}: the insert culled");
    // Culled or evicted entries are misses, never another value.
    for i in 0..MAX_ENTRIES {
        match c.get_raw(key(i).as_str(), &mut out) {
            Ok(None) => {}
            got => assert_eq!((got, out[0]), (Ok(Some(1)), i as u8), "{policy:?}"),
        }
    }
}

#[test]
fn write_through_insert_whose_culling_batch_never_fits_is_refused_and_loses_nothing() {
    within("write-through", || {
        refused_insert_keeps_every_entry(Policy::WriteThrough)
    });
}

#[test]
fn write_back_insert_whose_culling_batch_never_fits_is_refused_and_loses_nothing() {
    // The entries flushed before the insert (max_dirty 4), and still listed when it comes
    // (max_dirty 8: the insert flushes them first).
    for max_dirty in [4, 8] {
        within("write-back", move || {
            refused_insert_keeps_every_entry(Policy::WriteBack { max_dirty })
        });
    }
}

/// The async front end, each flash call yielding once: the same refusal, and a reopen by
/// the blocking front end reads every entry back.
#[test]
fn async_insert_whose_culling_batch_never_fits_is_refused_and_loses_nothing() {
    for policy in [Policy::WriteThrough, Policy::WriteBack { max_dirty: 8 }] {
        within("async", move || {
            let clock = ManualClock::new(1000);
            let mut flash = Flash::new();
            flash.yield_each_call(true);
            let p = block_on(AP::open(&mut flash, RANGE, table(), policy)).unwrap();
            let cache = AsyncSharedCache::<_, _, 48, NoopRawMutex>::with_raw_mutex(
                p.into_cache(&clock, Config::new()),
            );
            let new = key(MAX_ENTRIES);
            block_on(async {
                for i in 0..MAX_ENTRIES {
                    let k = key(i);
                    cache
                        .with(|c| c.set_raw(k.as_str(), &[i as u8][..], 600))
                        .await
                        .unwrap();
                }
                assert_eq!(cache.with(|c| Ok(c.len())).await, Ok(MAX_ENTRIES), "full");
                assert_eq!(
                    cache.with(|c| c.set_raw(new.as_str(), &BIG[..], 600)).await,
                    Err(Error::StorageFull),
                    "{policy:?}"
                );
                let mut out = [0u8; 128];
                assert_eq!(
                    cache.with(|c| c.get_raw(new.as_str(), &mut out)).await,
                    Ok(None),
                    "{policy:?}: the refused insert"
                );
                assert_eq!(
                    cache.with(|c| Ok(c.len())).await,
                    Ok(MAX_ENTRIES),
                    "{policy:?}: nothing culled"
                );
                cache.close().await.unwrap();
            });
            drop(cache);
            let p = P::open(&mut flash, RANGE, table(), policy).unwrap();
            let mut c = p.into_cache(&clock, Config::new());
            assert_eq!(c.len(), MAX_ENTRIES, "{policy:?}: after a reopen");
            assert_all_held(&mut c, &format!("async {policy:?}, after a reopen"));
        });
    }
}
