//! The async persistent backend (`AsyncPersistent`) through the Django API of
//! `AsyncSharedCache`, on the async face of `MockFlash` (each call yielding once), driven
//! by `embassy_futures::block_on`: round trips across reopens under both policies, a
//! compacting workload against a model, cancellation at every await point, and two tasks
//! racing `add`.

use std::collections::HashMap;

use embassy_futures::block_on;
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
