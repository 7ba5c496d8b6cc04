//! The async persistent backend (`AsyncPersistent`) through the Django API of
//! `AsyncSharedCache`, on the async face of `MockFlash` (each call yielding once), driven
//! by `embassy_futures::block_on`: round trips across reopens under both policies, a
//! compacting workload against a model, cancellation at every await point, and two tasks
//! racing `add`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use embassy_futures::block_on;
use embassy_futures::join::join;
use tickcache::flash::{AsyncPersistent, MockFlash, Persistent, Policy};
use tickcache::mutex::NoopRawMutex;
use tickcache::{AsyncSharedCache, Config, ManualClock, Table};

type Mock = MockFlash<6, 512, 4>;
const LEN: u32 = 6 * 512;
type AP<'f> = AsyncPersistent<&'f mut Mock, 32, 24, 16>;
type Shared<'c, 'f> = AsyncSharedCache<&'c ManualClock, AP<'f>, 24, NoopRawMutex>;

fn open<'c, 'f>(flash: &'f mut Mock, clock: &'c ManualClock, policy: Policy) -> Shared<'c, 'f> {
    flash.yield_each_call(true);
    let p = block_on(AP::open(flash, 0..LEN, Table::new(), policy)).expect("open");
    AsyncSharedCache::with_raw_mutex(p.into_cache(clock, Config::new()))
}

/// What the flash holds, read by the blocking front end: key -> value bytes.
fn on_flash(flash: &mut Mock) -> HashMap<Vec<u8>, Vec<u8>> {
    let p =
        Persistent::<_, 32, 24, 16>::open(&mut *flash, 0..LEN, Table::new(), Policy::WriteThrough)
            .expect("reopen");
    let mut out = HashMap::new();
    p.table().for_each_lru(|k, v, _, _| {
        out.insert(k.to_vec(), v.to_vec());
    });
    out
}

#[test]
fn the_django_api_round_trips_across_a_reopen() {
    for policy in [Policy::WriteThrough, Policy::WriteBack { max_dirty: 4 }] {
        let mut flash = Mock::new();
        let clock = ManualClock::new(1000);
        {
            let cache = open(&mut flash, &clock, policy);
            block_on(async {
                cache.set("a", &1u32, 600).await.unwrap();
                cache.set("b", &2u32, None).await.unwrap();
                assert!(cache.add("c", &3i64, None).await.unwrap());
                assert!(!cache.add("c", &4i64, None).await.unwrap());
                assert_eq!(cache.incr("c", 5).await.unwrap(), 8);
                assert!(cache.delete("b").await.unwrap());
                assert!(cache.touch("a", 900).await.unwrap());
                assert_eq!(cache.get::<u32>("a").await.unwrap(), Some(1));
                assert!(cache.has_key("c").await.unwrap());
                assert_eq!(cache.get_or_set("d", || 7u8, None).await.unwrap(), 7);
                cache.close().await.unwrap();
            });
        }
        // The blocking front end reads what the async one wrote: one format, one core.
        let held = on_flash(&mut flash);
        assert_eq!(held.len(), 3, "{policy:?}");
        assert!(held.contains_key(b":1:c".as_slice()));
        let cache = open(&mut flash, &clock, policy);
        block_on(async {
            assert_eq!(cache.get::<u32>("a").await.unwrap(), Some(1), "{policy:?}");
            assert_eq!(cache.get::<u32>("b").await.unwrap(), None);
            assert_eq!(cache.get::<i64>("c").await.unwrap(), Some(8));
            assert_eq!(cache.get::<u8>("d").await.unwrap(), Some(7));
        });
    }
}

/// Polls `fut` at most `k` times with a no-op waker: its output when it completed, `None`
/// when it was dropped unfinished (a cancelled task). Each mock flash call yields once, so
/// `k` counts the await points reached.
fn poll_k<F: Future>(fut: F, k: usize) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..k {
        if let Poll::Ready(r) = fut.as_mut().poll(&mut cx) {
            return Some(r);
        }
    }
    None
}

fn name(i: usize) -> String {
    format!("k{i}")
}

/// `sets` sets rewriting 20 keys; returns the values acknowledged.
fn prefix(cache: &Shared<'_, '_>, sets: usize) -> HashMap<String, u32> {
    let mut acked = HashMap::new();
    block_on(async {
        for i in 0..sets {
            let (k, v) = (name(i % 20), i as u32);
            cache.set(k.as_str(), &v, None).await.expect("set");
            acked.insert(k, v);
        }
    });
    acked
}

/// The number of prefix sets after which the next set compacts (write-through).
fn sets_before_a_compaction() -> usize {
    let mut flash = Mock::new();
    let clock = ManualClock::new(1000);
    let cache = open(&mut flash, &clock, Policy::WriteThrough);
    let mut sets = 0;
    block_on(async {
        loop {
            let before = cache.with(|c| Ok(c.backend().flash().total_erases())).await;
            let before = before.unwrap();
            let (k, v) = (name(sets % 20), sets as u32);
            cache.set(k.as_str(), &v, None).await.expect("set");
            let after = cache.with(|c| Ok(c.backend().flash().total_erases())).await;
            let after = after.unwrap();
            if sets > 100 && after > before {
                return;
            }
            sets += 1;
        }
    });
    sets
}

fn held(flash: &mut Mock) -> HashMap<String, u32> {
    let clock = ManualClock::new(1000);
    let p =
        Persistent::<_, 32, 24, 16>::open(&mut *flash, 0..LEN, Table::new(), Policy::WriteThrough)
            .expect("reopen");
    let mut cache = p.into_cache(&clock, Config::new());
    let mut out = HashMap::new();
    for i in 0..21 {
        let k = if i == 20 { "t".to_string() } else { name(i) };
        if let Some(v) = cache.get::<u32>(k.as_str()).expect("get") {
            out.insert(k, v);
        }
    }
    if let Some(v) = cache.get::<u32>("after").expect("get") {
        out.insert("after".into(), v);
    }
    out
}

/// A write-through `set` that compacts, its future dropped after `k` polls for every `k`
/// until it completes: the next call succeeds, and a power cut right after (a reopen) loses
/// nothing acknowledged; the interrupted set is there whole or not at all.
#[test]
fn a_set_cancelled_at_every_await_point_loses_nothing_acknowledged() {
    let sets = sets_before_a_compaction();
    let mut completed = false;
    let mut k = 0;
    while !completed {
        k += 1;
        let mut flash = Mock::new();
        let clock = ManualClock::new(1000);
        let acked;
        {
            let cache = open(&mut flash, &clock, Policy::WriteThrough);
            acked = prefix(&cache, sets);
            let (tk, tv) = (name(sets % 20), 1_000_000u32);
            let done = poll_k(cache.set(tk.as_str(), &tv, None), k);
            completed = done.is_some();
            if let Some(r) = done {
                r.expect("the uncancelled set succeeds");
            }
            block_on(cache.set("after", &7u32, None)).expect("the next call succeeds");
            assert_eq!(block_on(cache.get::<u32>("after")).unwrap(), Some(7));
            // The cache agrees with the flash.
            let seen = block_on(cache.get::<u32>(tk.as_str())).unwrap();
            assert!(
                seen == Some(tv) || seen == acked.get(&tk).copied(),
                "k {k}: {seen:?}"
            );
        }
        let found = held(&mut flash);
        let (tk, tv) = (name(sets % 20), 1_000_000u32);
        for (key, v) in &acked {
            let got = found.get(key).copied();
            if *key == tk {
                assert!(got == Some(*v) || got == Some(tv), "k {k}: {key} = {got:?}");
            } else {
                assert_eq!(got, Some(*v), "k {k}: {key} lost after the cancelled set");
            }
        }
        if completed {
            assert_eq!(found.get(&tk), Some(&tv));
        }
        assert_eq!(found.get("after"), Some(&7), "k {k}");
        assert!(k < 10_000);
    }
    assert!(k > 3, "the set compacted over {k} polls");
}

/// Under write-back a `close` (the flush) cancelled at every await point: what an earlier
/// close acknowledged survives a power cut, the interrupted flush is whole or absent per
/// key, and the next close succeeds.
#[test]
fn a_write_back_flush_cancelled_at_every_await_point_loses_nothing_acknowledged() {
    let policy = Policy::WriteBack { max_dirty: 8 };
    let mut completed = false;
    let mut k = 0;
    while !completed {
        k += 1;
        let mut flash = Mock::new();
        let clock = ManualClock::new(1000);
        let mut acked = HashMap::new();
        let mut pending = HashMap::new();
        {
            let cache = open(&mut flash, &clock, policy);
            block_on(async {
                for i in 0..120 {
                    let (key, v) = (name(i % 20), i as u32);
                    cache.set(key.as_str(), &v, None).await.expect("set");
                    pending.insert(key, v);
                    if i % 17 == 16 {
                        cache.close().await.expect("close");
                        acked.extend(pending.drain());
                    }
                }
            });
            completed = poll_k(cache.close(), k).is_some();
            block_on(async {
                cache.set("after", &7u32, None).await?;
                cache.close().await
            })
            .expect("the next calls succeed");
        }
        let found = held(&mut flash);
        for (key, v) in &acked {
            let got = found.get(key).copied();
            let newer = pending.get(key).copied();
            assert!(
                got == Some(*v) || (newer.is_some() && got == newer),
                "k {k}: {key} = {got:?}, acknowledged {v}"
            );
        }
        if completed {
            for (key, v) in &pending {
                assert_eq!(found.get(key), Some(v), "k {k}: flushed {key}");
            }
        }
        assert_eq!(found.get("after"), Some(&7), "k {k}");
        assert!(k < 10_000);
    }
}

/// Two tasks racing `add` on one key, each add needing flash work: exactly one wins, and
/// the flash holds the winner's value.
#[test]
fn two_tasks_racing_add_on_one_key_one_wins() {
    for policy in [Policy::WriteThrough, Policy::WriteBack { max_dirty: 4 }] {
        let mut flash = Mock::new();
        let clock = ManualClock::new(1000);
        {
            let cache = open(&mut flash, &clock, policy);
            prefix(&cache, 90);
            let (a, b) = block_on(join(
                cache.add("t", &1u32, None),
                cache.add("t", &2u32, None),
            ));
            let (a, b) = (a.unwrap(), b.unwrap());
            assert!(a ^ b, "{policy:?}: exactly one add wins ({a}, {b})");
            let winner = if a { 1 } else { 2 };
            assert_eq!(block_on(cache.get::<u32>("t")).unwrap(), Some(winner));
            block_on(cache.close()).unwrap();
            assert_eq!(held(&mut flash).get("t"), Some(&winner));
        }
    }
}

/// An insert whose cull removes more entries than the list holds is written with them as
/// one batch by the settle, and the re-run call answers as the blocking backend does
/// (`add` reports that it stored): the same answers and the same image as `Persistent`.
#[test]
fn a_culling_add_answers_and_writes_as_the_blocking_backend() {
    let run_async = || {
        let mut flash = Mock::new();
        let clock = ManualClock::new(1000);
        let mut answers = Vec::new();
        {
            flash.yield_each_call(true);
            let p = block_on(AP::open(
                &mut flash,
                0..LEN,
                Table::with_culling(6, 0),
                Policy::WriteThrough,
            ))
            .unwrap();
            let cache: Shared<'_, '_> =
                AsyncSharedCache::with_raw_mutex(p.into_cache(&clock, Config::new()));
            block_on(async {
                for i in 0..20u32 {
                    answers.push(
                        cache
                            .add(name(i as usize).as_str(), &i, None)
                            .await
                            .unwrap(),
                    );
                    answers.push(
                        cache
                            .add(name(i as usize).as_str(), &i, None)
                            .await
                            .unwrap(),
                    );
                }
            });
        }
        (answers, flash.bytes().to_vec())
    };
    let run_blocking = || {
        let mut flash = Mock::new();
        let clock = ManualClock::new(1000);
        let mut answers = Vec::new();
        {
            let p = Persistent::<_, 32, 24, 16>::open(
                &mut flash,
                0..LEN,
                Table::with_culling(6, 0),
                Policy::WriteThrough,
            )
            .unwrap();
            let mut cache = p.into_cache(&clock, Config::new());
            for i in 0..20u32 {
                answers.push(cache.add(name(i as usize).as_str(), &i, None).unwrap());
                answers.push(cache.add(name(i as usize).as_str(), &i, None).unwrap());
            }
        }
        (answers, flash.bytes().to_vec())
    };
    let (a, image_a) = run_async();
    let (b, image_b) = run_blocking();
    assert_eq!(a, b);
    assert_eq!(a.iter().filter(|&&x| x).count(), 20);
    assert!(
        image_a == image_b,
        "the two front ends wrote different images"
    );
}

/// A closure whose second call is a culling put the settle writes whole: run again, the
/// first call and the culling put both answer as they did (`add` stored each key).
#[test]
fn a_culling_put_run_again_after_other_calls_answers_as_it_did() {
    let mut flash = Mock::new();
    let clock = ManualClock::new(1000);
    flash.yield_each_call(true);
    let p = block_on(AP::open(
        &mut flash,
        0..LEN,
        Table::with_culling(6, 0),
        Policy::WriteThrough,
    ))
    .unwrap();
    let cache: Shared<'_, '_> =
        AsyncSharedCache::with_raw_mutex(p.into_cache(&clock, Config::new()));
    block_on(async {
        for i in 0..5u32 {
            assert!(cache
                .add(name(i as usize).as_str(), &i, None)
                .await
                .unwrap());
        }
        let both = cache
            .with(|c| Ok((c.add("x1", &1u32, None)?, c.add("x2", &2u32, None)?)))
            .await
            .unwrap();
        assert_eq!(both, (true, true));
        assert_eq!(cache.get::<u32>("x2").await.unwrap(), Some(2));
        assert!(!cache.add("x2", &3u32, None).await.unwrap());
    });
}

/// `AsyncSharedCache::set_many` sets item by item: a batch of more new keys than the
/// table's `MAX_ENTRIES` completes (each insert culls the one before, as Django's cull
/// does), where one closure over `Cache::set_many` would run again from its first item
/// after each culling insert's storage work, for ever.
#[test]
fn set_many_of_more_keys_than_max_entries_completes() {
    for policy in [Policy::WriteThrough, Policy::WriteBack { max_dirty: 4 }] {
        let mut flash = Mock::new();
        flash.yield_each_call(true);
        let clock = ManualClock::new(1000);
        let p = block_on(AP::open(
            &mut flash,
            0..LEN,
            Table::with_culling(1, 3),
            policy,
        ))
        .expect("open");
        let cache: Shared<'_, '_> =
            AsyncSharedCache::with_raw_mutex(p.into_cache(&clock, Config::new()));
        let items = [("a", &1u32), ("b", &2), ("c", &3)];
        let mut reported = 0;
        let stored = poll_k(cache.set_many(items, 600, |_, _| reported += 1), 100_000);
        assert_eq!(stored.map(|r| r.unwrap()), Some(0), "{policy:?}");
        assert_eq!(reported, 0);
        block_on(async {
            assert_eq!(cache.get::<u32>("a").await.unwrap(), None, "{policy:?}");
            assert_eq!(cache.get::<u32>("b").await.unwrap(), None);
            assert_eq!(cache.get::<u32>("c").await.unwrap(), Some(3));
            cache.close().await.unwrap();
        });
        drop(cache);
        let held = on_flash(&mut flash);
        assert_eq!(
            held.keys().collect::<Vec<_>>(),
            [b":1:c".as_slice()],
            "{policy:?}"
        );
    }
}

/// `incr_version` with a default timeout of 0 removes both versions and answers the new
/// version. Its deletes run through `AsyncSharedCache::with`: when the second one needs
/// storage work first (the write-back list full) the closure runs again, and the answer must
/// still be the one of the first run (it was "not found": the first delete had removed the
/// key the second run looked for).
#[test]
fn incr_version_run_again_after_storage_work_answers_as_it_did() {
    use tickcache::{Key, Timeout};
    type Small<'f> = AsyncPersistent<&'f mut Mock, 32, 24, 16, 2>;
    let mut flash = Mock::new();
    flash.yield_each_call(true);
    let clock = ManualClock::new(1000);
    let p = block_on(Small::open(
        &mut flash,
        0..LEN,
        Table::new(),
        Policy::WriteBack { max_dirty: 2 },
    ))
    .expect("open");
    let config = Config::new().timeout(Timeout::Secs(0));
    let cache: AsyncSharedCache<_, Small<'_>, 24, NoopRawMutex> =
        AsyncSharedCache::with_raw_mutex(p.into_cache(&clock, config));
    block_on(async {
        cache.set("k", &1u32, None).await.unwrap();
        cache
            .set(Key::new("k").version(2), &2u32, None)
            .await
            .unwrap();
        // The two listed keys were flushed; one more waits in the list of two.
        cache.set("other", &3u32, None).await.unwrap();
        // The first delete fills the list, the second asks for a flush first.
        let moved = cache.with(|c| c.incr_version("k", 1)).await;
        assert_eq!(moved.unwrap(), 2);
        assert!(!cache.has_key("k").await.unwrap());
        assert!(!cache.has_key(Key::new("k").version(2)).await.unwrap());
        assert_eq!(cache.get::<u32>("other").await.unwrap(), Some(3));
        // A miss is still a miss.
        assert!(matches!(
            cache.with(|c| c.incr_version("gone", 1)).await,
            Err(tickcache::Error::NotFound)
        ));
    });
}
