//! A cache kept in a flash image file across process runs.
//!
//! ```text
//! cargo run --example persist     # first run: stores entries
//! cargo run --example persist     # second run: restored, the short-lived one is gone
//! ```
//!
//! The image is `target/tickcache-persist.img` (or the path in `TICKCACHE_IMAGE`): 8 pages
//! of 4 KiB, written in 4-byte words, like a small NOR part. Time is `StdClock`, which
//! starts at zero in each process; cache time continues from the latest time in the image,
//! so it only counts time while the program runs (powered-on time).

use std::time::Duration;

use tickcache::flash::{FileFlash, Persistent, Policy};
use tickcache::{Config, StdClock, Table, Timeout};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::var("TICKCACHE_IMAGE")
        .unwrap_or_else(|_| "target/tickcache-persist.img".to_string());
    if let Some(dir) = std::path::Path::new(&path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    let flash = FileFlash::<4096, 4>::open(&path, 8)?;
    let backend =
        Persistent::<_, 64, 32, 32>::open(flash, 0..8 * 4096, Table::new(), Policy::WriteThrough)
            .map_err(|e| format!("{e}"))?;
    let clock = StdClock::new();
    let mut cache = backend.into_cache(&clock, Config::new());
    let secs = |t: u64| t as f64 / 1e6;
    println!("image {path}");
    println!("cache time resumes at {:.3} s", secs(cache.now()));
    let now = cache.now();
    let mut restored = 0;
    cache.backend().table().for_each_lru(|key, _, _, expiry| {
        restored += 1;
        let key = String::from_utf8_lossy(key);
        if expiry == tickcache::NEVER {
            println!("  restored {key:<16} never expires");
        } else if expiry > now {
            println!("  restored {key:<16} {:.3} s left", secs(expiry - now));
        } else {
            println!("  restored {key:<16} (expired, reclaimed on access)");
        }
    });
    if restored == 0 {
        println!("  nothing restored: a fresh image");
    }
    let runs = match cache.incr("runs", 1) {
        Ok(n) => n,
        Err(tickcache::Error::NotFound) => {
            cache
                .set("runs", &1i64, Timeout::Never)
                .map_err(|e| format!("{e}"))?;
            1
        }
        Err(e) => return Err(format!("{e}").into()),
    };
    println!("run number {runs}");
    println!(
        "short_lived from the last run: {:?}",
        cache
            .get::<i64>("short_lived")
            .map_err(|e| format!("{e}"))?
    );
    println!(
        "long_lived from the last run:  {:?}",
        cache.get::<i64>("long_lived").map_err(|e| format!("{e}"))?
    );
    cache
        .set("short_lived", &runs, Timeout::Millis(500))
        .map_err(|e| format!("{e}"))?;
    cache
        .set("long_lived", &runs, Timeout::Secs(3600))
        .map_err(|e| format!("{e}"))?;
    // Run for a while: "short_lived" expires before we stop.
    std::thread::sleep(Duration::from_millis(700));
    let alive = cache.has_key("short_lived").map_err(|e| format!("{e}"))?;
    println!("after 0.7 s, short_lived present: {alive}");
    cache.close().map_err(|e| format!("{e}"))?;
    println!("closed at cache time {:.3} s", secs(cache.now()));
    Ok(())
}
