//! The async shared cache: tasks racing on one key, re-entrant use answering `Busy`,
//! cancelled calls releasing the lock, and storage work settled before the next call runs.
//! Driven on the host by embassy-futures' `block_on`, `join` and `poll_once`.

use core::cell::Cell;
use core::future::Future;
use std::sync::{Arc, Barrier};
use std::task::Poll;
use std::thread;

use embassy_futures::join::{join, join_array};
use embassy_futures::yield_now;
use embassy_futures::{block_on, poll_once};
use serde::{Serialize, Serializer};
use tickcache::mutex::NoopRawMutex;
use tickcache::{
    AsyncBackend, AsyncSharedCache, Backend, Cache, Config, Error, Kind, ManualClock, MemCache,
    Put, StdClock, Table,
};

type Small = Table<8, 16, 8>;

fn shared(clock: &ManualClock) -> AsyncSharedCache<&ManualClock, Small, 16> {
    AsyncSharedCache::new(MemCache::new(clock, Table::new(), Config::new()))
}

/// A table whose changes need storage work, as a flash backend's would: every change adds
/// one pending unit, and `settle` yields to the executor once before it completes them.
#[derive(Debug, Default)]
struct Slow {
    table: Small,
    pending: u32,
    settled: u32,
}

impl Slow {
    fn changed<T>(&mut self, r: Result<T, Error>) -> Result<T, Error> {
        self.pending += 1;
        r
    }
}

impl Backend for Slow {
    type Error = core::convert::Infallible;

    fn get<R>(
        &mut self,
        key: &[u8],
        now: u64,
        read: impl FnOnce(&[u8], Kind) -> R,
    ) -> Result<Option<R>, Error> {
        self.table.get(key, now, read)
    }
    fn has_key(&mut self, key: &[u8], now: u64) -> Result<bool, Error> {
        self.table.has_key(key, now)
    }
    fn put(
        &mut self,
        key: &[u8],
        mode: Put,
        expiry: u64,
        now: u64,
        fill: impl FnOnce(&mut [u8]) -> Result<(usize, Kind), Error>,
    ) -> Result<bool, Error> {
        let r = self.table.put(key, mode, expiry, now, fill);
        self.changed(r)
    }
    fn touch(&mut self, key: &[u8], expiry: u64, now: u64) -> Result<bool, Error> {
        let r = self.table.touch(key, expiry, now);
        self.changed(r)
    }
    fn delete(&mut self, key: &[u8], now: u64) -> Result<bool, Error> {
        let r = self.table.delete(key, now);
        self.changed(r)
    }
    fn incr(&mut self, key: &[u8], delta: i64, now: u64) -> Result<i64, Error> {
        let r = self.table.incr(key, delta, now);
        self.changed(r)
    }
    fn rekey(&mut self, from: &[u8], to: &[u8], expiry: u64, now: u64) -> Result<bool, Error> {
        let r = self.table.rekey(from, to, expiry, now);
        self.changed(r)
    }
    fn clear(&mut self) -> Result<(), Error> {
        let r = self.table.clear();
        self.changed(r)
    }
    fn flush(&mut self) -> Result<(), Error> {
        Ok(())
    }
    fn len(&self) -> usize {
        self.table.len()
    }
}

impl AsyncBackend for Slow {
    async fn settle(&mut self) -> Result<(), Error> {
        if self.pending > 0 {
            yield_now().await;
            self.settled += self.pending;
            self.pending = 0;
        }
        Ok(())
    }
}

fn slow(clock: &ManualClock) -> AsyncSharedCache<&ManualClock, Slow, 16> {
    AsyncSharedCache::new(Cache::new(clock, Slow::default(), Config::new()))
}

/// (pending, settled) of a `Slow` cache, read without waiting.
fn work<M: tickcache::mutex::RawMutex>(
    cache: &AsyncSharedCache<&ManualClock, Slow, 16, M>,
) -> (u32, u32) {
    cache
        .try_with(|c| Ok((c.backend().pending, c.backend().settled)))
        .unwrap()
}

#[test]
fn two_tasks_that_both_saw_the_key_missing_race_add_and_exactly_one_wins() {
    let clock = ManualClock::new(1000);
    let cache = shared(&clock);
    let task = |value: u32| {
        let cache = &cache;
        async move {
            let missing = cache.get::<u32>("leader").await?.is_none();
            yield_now().await; // the other task runs here
            let won = cache.add("leader", &value, 60).await?;
            Ok::<_, Error>((missing, won))
        }
    };
    let (a, b) = block_on(join(task(1), task(2)));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.0 && b.0, "both tasks saw the key missing");
    assert!(a.1 ^ b.1, "exactly one add stored: {a:?} {b:?}");
    let winner = if a.1 { 1 } else { 2 };
    assert_eq!(block_on(cache.get::<u32>("leader")).unwrap(), Some(winner));
}

#[test]
fn adds_racing_while_the_lock_is_held_across_storage_awaits_store_once() {
    let clock = ManualClock::new(1000);
    let cache = slow(&clock);
    // Each add holds the lock across the backend's await; the others wait on the lock.
    let results = block_on(join_array([1u32, 2, 3, 4].map(|v| {
        let cache = &cache;
        async move { cache.add("k", &v, 60).await }
    })));
    let won: Vec<usize> = (0..4).filter(|&i| results[i] == Ok(true)).collect();
    assert_eq!(won.len(), 1, "{results:?}");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let value = block_on(cache.get::<u32>("k")).unwrap();
    assert_eq!(value, Some(won[0] as u32 + 1));
    // Every change was settled before its call returned.
    assert_eq!(work(&cache).0, 0);
}

#[test]
fn threads_racing_add_on_one_key_store_once() {
    static CACHE: AsyncSharedCache<StdClock, Small, 16> =
        AsyncSharedCache::new(MemCache::new(StdClock::new(), Table::new(), Config::new()));
    const THREADS: usize = 8;
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                block_on(CACHE.add("once", &(i as u32), 60)).unwrap()
            })
        })
        .collect();
    let wins: Vec<usize> = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .enumerate()
        .filter_map(|(i, won)| won.then_some(i))
        .collect();
    assert_eq!(wins.len(), 1, "{wins:?}");
    assert_eq!(
        block_on(CACHE.get::<u32>("once")).unwrap(),
        Some(wins[0] as u32)
    );
}

#[test]
fn the_same_cache_inside_a_call_is_busy_not_a_panic_or_a_deadlock() {
    let clock = ManualClock::new(1000);
    let cache = shared(&clock);
    block_on(cache.set("k", &1u8, 60)).unwrap();
    let (inner_get, inner_set, shown) = block_on(cache.with(|c| {
        c.set("k", &2u8, 60)?;
        Ok((
            cache.try_with(|c| c.get::<u8>("k")),
            cache.try_with(|c| c.set("k", &3u8, 60)),
            format!("{cache:?}"),
        ))
    }))
    .unwrap();
    assert_eq!(inner_get, Err(Error::Busy));
    assert_eq!(inner_set, Err(Error::Busy));
    assert!(shown.contains("<busy>"), "{shown}");
    // The inner calls changed nothing, and the lock was released.
    assert_eq!(block_on(cache.get::<u8>("k")).unwrap(), Some(2));
    assert_eq!(cache.try_with(|c| c.get::<u8>("k")), Ok(Some(2)));
    assert!(format!("{cache:?}").contains("len: 1"));
}

/// A value whose `Serialize` reads the cache it is being stored in.
struct Nosy<'a> {
    cache: &'a AsyncSharedCache<&'a ManualClock, Small, 16>,
    seen: Cell<Option<Result<Option<u8>, Error>>>,
}

impl Serialize for Nosy<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.seen
            .set(Some(self.cache.try_with(|c| c.get::<u8>("k"))));
        s.serialize_u8(7)
    }
}

#[test]
fn a_value_whose_serialize_uses_the_cache_sees_busy_and_the_set_succeeds() {
    let clock = ManualClock::new(1000);
    let cache = shared(&clock);
    let nosy = Nosy {
        cache: &cache,
        seen: Cell::new(None),
    };
    block_on(cache.set("n", &nosy, 60)).unwrap();
    assert_eq!(nosy.seen.take(), Some(Err(Error::Busy)));
    assert_eq!(block_on(cache.get::<u8>("n")).unwrap(), Some(7));
}

#[test]
fn get_or_set_default_may_use_the_same_cache() {
    let clock = ManualClock::new(1000);
    let cache = shared(&clock);
    block_on(async {
        cache.set("base", &40u32, 60).await?;
        let base = cache.get::<u32>("base").await?.unwrap();
        // The default runs outside the lock: the cache answers inside it.
        let v = cache
            .get_or_set(
                "answer",
                || cache.try_with(|c| c.get::<u32>("base")).unwrap().unwrap() + 2,
                60,
            )
            .await?;
        assert_eq!(v, base + 2);
        let again = cache
            .get_or_set("answer", || -> u32 { panic!("called on a hit") }, 60)
            .await?;
        assert_eq!(again, 42);
        Ok::<(), Error>(())
    })
    .unwrap();
}

#[test]
fn a_call_dropped_while_it_awaits_storage_releases_the_lock_and_its_work_is_settled_next() {
    let clock = ManualClock::new(1000);
    let cache = slow(&clock);
    // Dropped at its await on the storage: the change is applied, its work still pending.
    assert!(poll_once(cache.set("k", &5u8, 60)).is_pending());
    assert_eq!(work(&cache), (1, 0));
    // The lock was released: the next call runs, settling the leftover work first.
    assert_eq!(block_on(cache.get::<u8>("k")).unwrap(), Some(5));
    assert_eq!(work(&cache), (0, 1));
    // Dropping at every await point of a call leaves the cache usable and consistent.
    for polls in 0..4 {
        let mut call = core::pin::pin!(cache.incr("k", 1));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        for _ in 0..polls {
            if let Poll::Ready(r) = call.as_mut().poll(&mut cx) {
                r.unwrap();
                break;
            }
        }
    }
    let n = block_on(cache.get::<u8>("k")).unwrap().unwrap();
    // Every incr that was polled at least once applied its change (the table is RAM; the
    // storage work is what waits): 3 of them.
    assert_eq!(n, 5 + 3);
    assert_eq!(work(&cache).0, 0);
}

#[test]
fn a_task_waiting_for_the_lock_can_be_dropped_without_harm() {
    let clock = ManualClock::new(1000);
    let cache = slow(&clock);
    block_on(async {
        let mut holder = core::pin::pin!(cache.set("k", &1u8, 60));
        // The holder is now at its storage await, lock held.
        assert!(poll_once(holder.as_mut()).is_pending());
        // A second task finds the lock held, waits, and is dropped.
        assert!(poll_once(cache.get::<u8>("k")).is_pending());
        assert_eq!(cache.try_with(|c| c.get::<u8>("k")), Err(Error::Busy));
        holder.await.unwrap();
        assert_eq!(cache.get::<u8>("k").await.unwrap(), Some(1));
    });
}

#[test]
fn a_noop_mutex_cache_for_one_executor() {
    let clock = ManualClock::new(1000);
    let cache: AsyncSharedCache<_, Small, 16, NoopRawMutex> =
        AsyncSharedCache::with_raw_mutex(MemCache::new(&clock, Table::new(), Config::new()));
    let (a, b) = block_on(join(cache.add("hits", &0i64, None), async {
        yield_now().await;
        cache.incr("hits", 1).await
    }));
    assert_eq!((a, b), (Ok(true), Ok(1)));
    assert_eq!(block_on(cache.decr("hits", 1)), Ok(0));
    assert_eq!(block_on(cache.touch("hits", 0)), Ok(true));
    assert_eq!(block_on(cache.has_key("hits")), Ok(false));
    block_on(cache.set("x", &1u8, 60)).unwrap();
    assert_eq!(block_on(cache.delete("x")), Ok(true));
    block_on(cache.set("y", &1u8, 60)).unwrap();
    block_on(cache.clear()).unwrap();
    block_on(cache.close()).unwrap();
    assert!(cache.into_inner().is_empty());
}

#[test]
fn expiry_follows_the_cache_clock() {
    let clock = ManualClock::new(1000);
    let cache = shared(&clock);
    block_on(cache.set("reading", &21u16, 2)).unwrap();
    clock.advance_millis(1999);
    assert_eq!(block_on(cache.get::<u16>("reading")).unwrap(), Some(21));
    clock.advance_millis(1);
    assert_eq!(block_on(cache.get::<u16>("reading")).unwrap(), None);
}

#[test]
fn calls_on_a_static_cache_are_send_futures_for_multithreaded_executors() {
    static CACHE: AsyncSharedCache<StdClock, Small, 16> =
        AsyncSharedCache::new(MemCache::new(StdClock::new(), Table::new(), Config::new()));
    fn send<F: Future + Send>(f: F) -> F {
        f
    }
    let handle = thread::spawn(|| {
        block_on(send(async {
            CACHE.set("k", &1u8, 60).await?;
            CACHE.incr("n", 1).await.err();
            CACHE.get::<u8>("k").await
        }))
    });
    assert_eq!(handle.join().unwrap(), Ok(Some(1)));
}
