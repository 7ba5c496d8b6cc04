//! A host simulation of a small blog ("blango") using tickcache the way a Django view uses
//! its cache. Time is simulated with a `ManualClock`, so the walk-through is instant and
//! always prints the same thing.
//!
//! Run it with `cargo run --example blango`.

use serde::{Deserialize, Serialize};
use tickcache::{Cache, Config, Error, Key, ManualClock, MemCache, Store, Table, Timeout};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Post {
    id: u32,
    title: heapless::String<32>,
    likes: u32,
}

/// The "database": what a query would return.
struct Db {
    posts: [Post; 3],
    queries: u32,
}

impl Db {
    fn post(&mut self, id: u32) -> Post {
        self.queries += 1;
        self.posts[id as usize - 1].clone()
    }
    fn post_count(&mut self) -> i64 {
        self.queries += 1;
        self.posts.len() as i64
    }
}

fn title(s: &str) -> heapless::String<32> {
    heapless::String::try_from(s).unwrap_or_default()
}

fn text(s: &str) -> heapless::String<16> {
    heapless::String::try_from(s).unwrap_or_default()
}

/// Made keys up to 32 bytes, values up to 64 bytes, 64 entries: the whole cache is one value.
type BlogCache<'c> = MemCache<&'c ManualClock, 64, 32, 64>;

fn show(clock: &ManualClock, what: &str) {
    println!("[t={:>5.1}s] {what}", clock.now_secs());
}

trait Secs {
    fn now_secs(&self) -> f64;
}
impl Secs for ManualClock {
    fn now_secs(&self) -> f64 {
        use tickcache::Clock;
        self.now() as f64 / f64::from(self.ticks_per_second())
    }
}

/// The view: a post from the cache, or from the database and then cached for 30 s.
fn post_detail(cache: &mut BlogCache<'_>, db: &mut Db, id: u32) -> Result<Post, Error> {
    let mut key = heapless::String::<16>::new();
    let _ = core::fmt::write(&mut key, format_args!("post_{id}"));
    if let Some(post) = cache.get::<Post>(key.as_str())? {
        return Ok(post);
    }
    let post = db.post(id);
    cache.set(key.as_str(), &post, 30)?;
    Ok(post)
}

fn main() -> Result<(), Error> {
    let clock = ManualClock::new(1000); // a 1 kHz tick, like a SysTick
    let mut cache: BlogCache<'_> = MemCache::new(&clock, Table::new(), Config::new());
    let mut db = Db {
        posts: [
            Post {
                id: 1,
                title: title("Hello, blango"),
                likes: 3,
            },
            Post {
                id: 2,
                title: title("Caching on a tick clock"),
                likes: 5,
            },
            Post {
                id: 3,
                title: title("No heap, no problem"),
                likes: 8,
            },
        ],
        queries: 0,
    };
    println!(
        "blango: a {}-byte cache of 64 entries (keys <= 32 B, values <= 64 B)\n",
        core::mem::size_of::<BlogCache<'_>>()
    );

    // 1. A post cached for 30 seconds.
    let p = post_detail(&mut cache, &mut db, 1)?;
    show(
        &clock,
        &format!(
            "post 1 from the database: {:?} ({} queries)",
            p.title, db.queries
        ),
    );
    clock.advance_secs(10);
    let p = post_detail(&mut cache, &mut db, 1)?;
    show(
        &clock,
        &format!(
            "post 1 again, from the cache: {:?} ({} queries)",
            p.title, db.queries
        ),
    );
    clock.advance_secs(20);
    let _ = post_detail(&mut cache, &mut db, 1)?;
    show(
        &clock,
        &format!(
            "30 s after caching it expired: read again ({} queries)",
            db.queries
        ),
    );
    assert_eq!(db.queries, 2);

    // 2. Saving a post invalidates its cache entry.
    db.posts[0].likes += 1;
    let deleted = cache.delete("post_1")?;
    show(
        &clock,
        &format!("post 1 saved, cache entry deleted: {deleted}"),
    );
    let p = post_detail(&mut cache, &mut db, 1)?;
    show(
        &clock,
        &format!("post 1 now has {} likes ({} queries)", p.likes, db.queries),
    );

    // 3. The post count, cached for 300 s (Django's default timeout).
    let count = db.post_count();
    cache.set_default("post_count", &count)?;
    show(
        &clock,
        &format!("post_count = {count}, cached for the default 300 s"),
    );
    clock.advance_secs(299);
    show(
        &clock,
        &format!("299 s later: {:?}", cache.get::<i64>("post_count")?),
    );
    clock.advance_secs(1);
    show(
        &clock,
        &format!("300 s later: {:?}", cache.get::<i64>("post_count")?),
    );

    // 4. A stored None is not a miss.
    cache.set("featured_post", &None::<u32>, Timeout::Never)?;
    show(
        &clock,
        &format!(
            "stored None reads as {:?}",
            cache.get::<Option<u32>>("featured_post")?
        ),
    );
    show(
        &clock,
        &format!(
            "a missing key reads as {:?}",
            cache.get::<Option<u32>>("missing")?
        ),
    );

    // 5. The reading question, asked and answered.
    println!();
    println!("Question: after");
    println!("    cache.set(\"key1\", \"Calvin\")");
    println!("what does");
    println!("    cache.get_or_set(\"key_1\", \"Hobbes\")");
    println!("return?");
    cache.set_default("key1", "Calvin")?;
    let answer: heapless::String<16> =
        cache.get_or_set("key_1", || text("Hobbes"), Timeout::Default)?;
    println!("Answer: {answer:?}. \"key1\" and \"key_1\" are different keys, so \"key_1\" is");
    println!("a miss: get_or_set stores the default \"Hobbes\" under \"key_1\" and returns it.");
    assert_eq!(answer, "Hobbes");
    show(
        &clock,
        &format!(
            "key1 = {:?}, key_1 = {:?}",
            cache.get::<heapless::String<16>>("key1")?,
            cache.get::<heapless::String<16>>("key_1")?
        ),
    );
    println!();

    // 6. set_many / get_many.
    let failed = cache.set_many([("a", &1u32), ("b", &2), ("c", &3)], 60, |_, _| {})?;
    let mut found = Vec::new();
    cache.get_many(["a", "b", "c", "d"], |k: Key<'_>, v: u32| {
        found.push((String::from_utf8_lossy(k.key).into_owned(), v));
    })?;
    show(
        &clock,
        &format!("set_many failed on {failed} keys; get_many found {found:?}"),
    );

    // 7. get_or_set with a function: called only on a miss.
    let mut calls = 0;
    for _ in 0..3 {
        let p = cache.get_or_set(
            "latest_post",
            || {
                calls += 1;
                db.post(3)
            },
            Timeout::Secs(60),
        )?;
        assert_eq!(p.id, 3);
    }
    show(
        &clock,
        &format!("get_or_set three times: the function ran {calls} time(s)"),
    );

    // 8. add, touch, incr, decr, has_key.
    show(
        &clock,
        &format!("add visits=0: {}", cache.add("visits", &0i64, 60)?),
    );
    show(
        &clock,
        &format!("add visits=5 again: {}", cache.add("visits", &5i64, 60)?),
    );
    show(
        &clock,
        &format!("incr visits: {}", cache.incr("visits", 1)?),
    );
    show(
        &clock,
        &format!("incr visits by 10: {}", cache.incr("visits", 10)?),
    );
    show(
        &clock,
        &format!("decr visits by 2: {}", cache.decr("visits", 2)?),
    );
    show(
        &clock,
        &format!("incr a missing key: {:?}", cache.incr("nope", 1)),
    );
    show(
        &clock,
        &format!("touch visits for 5 s: {}", cache.touch("visits", 5)?),
    );
    clock.advance_secs(5);
    show(
        &clock,
        &format!("5 s later, has_key visits: {}", cache.has_key("visits")?),
    );

    // 9. Versions: bump a key's version when its format changes.
    cache.set(Key::new("schema").version(1), &"v1 layout", Timeout::Never)?;
    let v = cache.incr_version("schema", 1)?;
    show(
        &clock,
        &format!(
            "incr_version moved schema to version {v}: {:?}",
            cache.get::<heapless::String<16>>(Key::new("schema").version(v))?
        ),
    );

    // 10. A batch at a version (Django's `version=`): the draft posts live at version 2.
    cache
        .at_version(2)
        .set_many([("draft_1", &1u32), ("draft_2", &2)], 60, |_, _| {})?;
    let mut drafts = 0;
    let found = cache
        .at_version(2)
        .get_many(["draft_1", "draft_2"], |_, n: u32| drafts += n)?;
    show(
        &clock,
        &format!(
            "version=2 batch: {found} found (sum {drafts}); at version 1: {}",
            cache.get_many(["draft_1", "draft_2"], |_, _: u32| {})?
        ),
    );

    // 11. clear.
    show(&clock, &format!("{} entries before clear", cache.len()));
    cache.clear()?;
    show(&clock, &format!("{} entries after clear", cache.len()));
    cache.close()?;

    // 12. Two caches sharing one store (one LOCATION), with different prefixes: the site's
    //     pages and the API's answers never see each other's keys.
    let location = Store::new(Table::<16, 32, 32>::new());
    let mut pages: MemCacheOver<'_> =
        Cache::new(&clock, &location, Config::new().key_prefix("pages"));
    let mut api: MemCacheOver<'_> = Cache::new(&clock, &location, Config::new().key_prefix("api"));
    pages.set_default("post_1", "<h1>Hello</h1>")?;
    api.set_default("post_1", "{\"id\": 1}")?;
    show(
        &clock,
        &format!(
            "one store, two prefixes: pages {:?}, api {:?}, {} entries in the store",
            pages.get::<String>("post_1")?,
            api.get::<String>("post_1")?,
            pages.len()
        ),
    );
    Ok(())
}

/// A cache over a shared [`Store`], as for Django's caches sharing a `LOCATION`.
type MemCacheOver<'a> = Cache<&'a ManualClock, &'a Store<Table<16, 32, 32>>, 32>;
