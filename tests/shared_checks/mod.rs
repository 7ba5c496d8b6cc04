//! Django-conformance checks that run both on the host (`tests/on_target_checks.rs`) and on a
//! Cortex-M under QEMU (`examples/firmware`). `no_std`, no allocation: each check builds its
//! own small cache on a `ManualClock` and returns `Err(reason)` on the first wrong answer.

use core::cell::Cell;

use tickcache::hash::{self, DefaultHashBuilder};
use tickcache::{Config, Error, Key, KeyError, ManualClock, MemCache, Table, Timeout, Wrap32};

type Small<'c> = MemCache<&'c ManualClock, 16, 24, 16>;

fn cache(clock: &ManualClock) -> Small<'_> {
    MemCache::new(clock, Table::new(), Config::new())
}

macro_rules! ensure {
    ($cond:expr) => {
        if !$cond {
            return Err(concat!("failed: ", stringify!($cond)));
        }
    };
}

/// A check: its name and the function that runs it.
pub type Check = (&'static str, fn() -> Result<(), &'static str>);

/// Every check, in order.
pub const CHECKS: &[Check] = &[
    ("expiry on the tick clock", expiry),
    ("stored None is not a miss", stored_none),
    ("add, touch, has_key", add_touch_has_key),
    ("incr and decr keep the expiry", incr_decr),
    ("incr errors", incr_errors),
    ("versions and incr_version", versions),
    ("key validation", key_validation),
    ("get_or_set calls the default only on a miss", get_or_set),
    ("cull: 49 into MAX_ENTRIES 30 leaves 29 / 19", cull_numbers),
    ("LRU: get hits refresh recency", lru_get),
    ("zero and negative timeouts", zero_timeouts),
    ("oversized value leaves no stale value", oversized_value),
    ("32-bit counter wrapping during a timeout", wrap32_timeout),
    (
        "hash chains: 1,024 keys of each shape spread evenly",
        chain_lengths,
    ),
];

/// Runs every check, reporting each through `report`; returns the number that failed.
pub fn run_all(mut report: impl FnMut(&'static str, Result<(), &'static str>)) -> usize {
    let mut failed = 0;
    for (name, check) in CHECKS {
        let r = check();
        failed += usize::from(r.is_err());
        report(name, r);
    }
    failed
}

fn ok<T>(r: Result<T, Error>) -> Result<T, &'static str> {
    r.map_err(|_| "unexpected error")
}

fn expiry() -> Result<(), &'static str> {
    let clock = ManualClock::new(1000);
    let mut c = cache(&clock);
    ok(c.set("post", &7u32, 30))?;
    clock.advance_secs(29);
    ensure!(ok(c.get::<u32>("post"))? == Some(7));
    clock.advance_secs(1);
    ensure!(ok(c.get::<u32>("post"))?.is_none());
    ok(c.set("forever", &1u8, Timeout::Never))?;
    clock.advance_secs(10_000_000);
    ensure!(ok(c.get::<u8>("forever"))? == Some(1));
    Ok(())
}

fn stored_none() -> Result<(), &'static str> {
    let clock = ManualClock::new(1000);
    let mut c = cache(&clock);
    ok(c.set("none", &None::<u32>, 60))?;
    ensure!(ok(c.get::<Option<u32>>("none"))? == Some(None));
    ensure!(ok(c.get::<Option<u32>>("missing"))?.is_none());
    ensure!(ok(c.has_key("none"))?);
    Ok(())
}

fn add_touch_has_key() -> Result<(), &'static str> {
    let clock = ManualClock::new(1000);
    let mut c = cache(&clock);
    ensure!(ok(c.add("k", &1u8, 10))?);
    ensure!(!ok(c.add("k", &2u8, 10))?);
    ensure!(ok(c.get::<u8>("k"))? == Some(1));
    ensure!(ok(c.touch("k", 100))?);
    clock.advance_secs(50);
    ensure!(ok(c.has_key("k"))?);
    ensure!(!ok(c.touch("nope", 10))?);
    clock.advance_secs(50);
    ensure!(!ok(c.has_key("k"))?);
    ensure!(ok(c.add("k", &3u8, 10))?); // add over an expired entry stores
    ensure!(ok(c.delete("k"))?);
    ensure!(!ok(c.delete("k"))?);
    Ok(())
}

fn incr_decr() -> Result<(), &'static str> {
    let clock = ManualClock::new(1000);
    let mut c = cache(&clock);
    ok(c.set("n", &41i64, 10))?;
    ensure!(ok(c.incr("n", 1))? == 42);
    ensure!(ok(c.decr("n", 50))? == -8);
    clock.advance_secs(9);
    ensure!(ok(c.incr("n", 8))? == 0);
    clock.advance_secs(1);
    ensure!(c.incr("n", 1) == Err(Error::NotFound)); // expiry kept, not reset
    Ok(())
}

fn incr_errors() -> Result<(), &'static str> {
    let clock = ManualClock::new(1000);
    let mut c = cache(&clock);
    ensure!(c.incr("missing", 1) == Err(Error::NotFound));
    ok(c.set("text", "abc", 10))?;
    ensure!(c.incr("text", 1) == Err(Error::NotInteger));
    ok(c.set("max", &i64::MAX, 10))?;
    ensure!(c.incr("max", 1) == Err(Error::Overflow));
    ensure!(ok(c.get::<i64>("max"))? == Some(i64::MAX));
    Ok(())
}

fn versions() -> Result<(), &'static str> {
    let clock = ManualClock::new(1000);
    let mut c = cache(&clock);
    ok(c.set(Key::new("answer").version(2), &42u8, Timeout::Never))?;
    ensure!(ok(c.get::<u8>("answer"))?.is_none());
    ensure!(ok(c.get::<u8>(Key::new("answer").version(2)))? == Some(42));
    ensure!(ok(c.incr_version(Key::new("answer").version(2), 1))? == 3);
    ensure!(ok(c.get::<u8>(Key::new("answer").version(2)))?.is_none());
    ensure!(ok(c.get::<u8>(Key::new("answer").version(3)))? == Some(42));
    // incr_version gives the default timeout (300 s) even to a forever key.
    clock.advance_secs(300);
    ensure!(ok(c.get::<u8>(Key::new("answer").version(3)))?.is_none());
    ensure!(c.decr_version("nope", 1) == Err(Error::NotFound));
    Ok(())
}

fn key_validation() -> Result<(), &'static str> {
    let clock = ManualClock::new(1000);
    let mut c = cache(&clock);
    ensure!(c.set("key with spaces", &1u8, 1) == Err(Error::Key(KeyError::BadChar)));
    ensure!(c.set("tab\tkey", &1u8, 1) == Err(Error::Key(KeyError::BadChar)));
    ensure!(
        c.get::<u8>("a-key-far-longer-than-24-bytes") == Err(Error::Key(KeyError::OverCapacity))
    );
    ensure!(ok(c.set("key1", &1u8, 10)).is_ok());
    ensure!(ok(c.set("key_1", &2u8, 10)).is_ok());
    ensure!(ok(c.get::<u8>("key1"))? == Some(1));
    Ok(())
}

fn get_or_set() -> Result<(), &'static str> {
    let clock = ManualClock::new(1000);
    let mut c = cache(&clock);
    let calls = Cell::new(0);
    for _ in 0..3 {
        let v = ok(c.get_or_set(
            "lazy",
            || {
                calls.set(calls.get() + 1);
                5u16
            },
            60,
        ))?;
        ensure!(v == 5);
    }
    ensure!(calls.get() == 1);
    ensure!(ok(c.get_or_set("zero", || 9u16, 0))? == 9);
    ensure!(!ok(c.has_key("zero"))?);
    Ok(())
}

fn cull_numbers() -> Result<(), &'static str> {
    let mut key = [0u8; 8];
    for (freq, left) in [(3u16, 29usize), (0, 19)] {
        let clock = ManualClock::new(1000);
        let mut c: MemCache<&ManualClock, 32, 16, 4> =
            MemCache::new(&clock, Table::with_culling(30, freq), Config::new());
        for i in 1..50u8 {
            let n = fmt_key(b"cull", i, &mut key);
            ok(c.set(Key::bytes(&key[..n]), &i, 1000))?;
        }
        ensure!(c.len() == left);
    }
    Ok(())
}

fn lru_get() -> Result<(), &'static str> {
    let clock = ManualClock::new(1000);
    let mut c: MemCache<&ManualClock, 16, 16, 4> =
        MemCache::new(&clock, Table::with_culling(9, 3), Config::new());
    let mut key = [0u8; 8];
    for i in 0..9u8 {
        let n = fmt_key(b"", i, &mut key);
        ok(c.set(Key::bytes(&key[..n]), &i, Timeout::Never))?;
    }
    for i in 0..6u8 {
        let n = fmt_key(b"", i, &mut key);
        ensure!(ok(c.get::<u8>(Key::bytes(&key[..n])))? == Some(i));
    }
    ok(c.set("9", &9u8, Timeout::Never))?;
    for i in 0..9u8 {
        let n = fmt_key(b"", i, &mut key);
        let present = ok(c.has_key(Key::bytes(&key[..n])))?;
        ensure!(present == (i < 6));
    }
    Ok(())
}

fn zero_timeouts() -> Result<(), &'static str> {
    let clock = ManualClock::new(1000);
    let mut c = cache(&clock);
    ok(c.set("k", &1u8, 60))?;
    ok(c.set("k", &2u8, 0))?;
    ensure!(ok(c.get::<u8>("k"))?.is_none());
    ok(c.set("k", &3u8, -5))?;
    ensure!(ok(c.get::<u8>("k"))?.is_none());
    ensure!(ok(c.add("k", &4u8, 0))?);
    ensure!(ok(c.get::<u8>("k"))?.is_none());
    ok(c.set("huge", &5u8, Timeout::Secs(i64::MAX)))?;
    ensure!(ok(c.get::<u8>("huge"))? == Some(5));
    Ok(())
}

fn oversized_value() -> Result<(), &'static str> {
    let clock = ManualClock::new(1000);
    let mut c = cache(&clock);
    ok(c.set("other", &1u8, 60))?;
    ok(c.set("k", &1u8, 60))?;
    ensure!(c.set("k", &[7u8; 17], 60) == Err(Error::ValueTooLarge));
    ensure!(ok(c.get::<u8>("k"))?.is_none());
    ensure!(ok(c.get::<u8>("other"))? == Some(1));
    Ok(())
}

fn wrap32_timeout() -> Result<(), &'static str> {
    let hw = Cell::new(u32::MAX - 4_999); // 5 s before the 1 kHz counter wraps
    let clock = Wrap32::new(1000, || hw.get());
    let mut c: MemCache<_, 4, 16, 4> = MemCache::new(&clock, Table::new(), Config::new());
    ok(c.set("k", &1u8, 10))?;
    hw.set(hw.get().wrapping_add(9_999)); // wrapped, 9.999 s later
    ensure!(ok(c.get::<u8>("k"))? == Some(1));
    hw.set(hw.get().wrapping_add(1));
    ensure!(ok(c.get::<u8>("k"))?.is_none());
    Ok(())
}

/// Writes `prefix` and `i` in decimal into `out`; returns the length.
fn fmt_key(prefix: &[u8], i: u8, out: &mut [u8; 8]) -> usize {
    out[..prefix.len()].copy_from_slice(prefix);
    let mut n = prefix.len();
    if i >= 10 {
        out[n] = b'0' + i / 10;
        n += 1;
    }
    out[n] = b'0' + i % 10;
    n + 1
}

/// Chains a table of 1,024 entries would build from 1,024 keys, bucketed exactly as `Table`
/// does (`hash::hash32` with the default hasher, then `hash::reduce`): the longest chain
/// and the total number of key comparisons to find every key once.
///
/// The bounds are those of a uniformly random hash, 1,024 keys into 1,024 chains: a lookup
/// compares 1 + (n - 1) / 2m = 1.5 keys on average (standard deviation of the mean about
/// 0.07), so at most 1,792 comparisons (1.75 each, almost four deviations above); a chain of
/// 9 or more has a probability near 0.1%. A hash that ignored part of the key, or kept only
/// zero bits on a 32-bit target, fails both by far (one chain: 524,800 comparisons).
pub fn chain_stats(mut key: impl FnMut(usize, &mut [u8; 48]) -> usize) -> (u8, u32) {
    const N: usize = 1024;
    let mut chains = [0u8; N];
    let mut buf = [0u8; 48];
    for i in 0..N {
        let n = key(i, &mut buf);
        let b = hash::reduce(
            hash::hash32(&DefaultHashBuilder::default(), &buf[..n]),
            N as u32,
        );
        chains[b] = chains[b].saturating_add(1);
    }
    let longest = chains.iter().copied().max().unwrap_or(0);
    let compares = chains
        .iter()
        .map(|&c| u32::from(c) * (u32::from(c) + 1) / 2)
        .sum();
    (longest, compares)
}

/// Appends `v` in decimal at `out[at..]`; returns the new end.
fn put_decimal(out: &mut [u8; 48], mut at: usize, v: usize) -> usize {
    let mut digits = [0u8; 10];
    let mut n = 0;
    let mut v = v;
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    while n > 0 {
        n -= 1;
        out[at] = digits[n];
        at += 1;
    }
    at
}

fn put(out: &mut [u8; 48], at: usize, bytes: &[u8]) -> usize {
    out[at..at + bytes.len()].copy_from_slice(bytes);
    at + bytes.len()
}

/// Django-made keys `:1:post_1`..., sensor keys `:1:sensor:17:temp`... and random bytes.
fn chain_lengths() -> Result<(), &'static str> {
    const UNITS: [&[u8]; 8] = [
        b"temp", b"hum", b"pres", b"volt", b"curr", b"lux", b"co2", b"pm25",
    ];
    let posts = chain_stats(|i, out| {
        let at = put(out, 0, b":1:post_");
        put_decimal(out, at, i + 1)
    });
    let sensors = chain_stats(|i, out| {
        let at = put(out, 0, b":1:sensor:");
        let at = put_decimal(out, at, i / 8);
        let at = put(out, at, b":");
        put(out, at, UNITS[i % 8])
    });
    let mut x = 0x2545_f491_u32;
    let random = chain_stats(|_, out| {
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let n = 1 + (next() % 40) as usize;
        for b in &mut out[..n] {
            *b = next() as u8;
        }
        n
    });
    // The same hash on every target (the value the host's unit test pins).
    ensure!(hash::hash32(&DefaultHashBuilder::default(), b":1:post_1") == 0x39d7_e715);
    for (longest, compares) in [posts, sensors, random] {
        ensure!(longest <= 8);
        ensure!(compares <= 1792);
    }
    Ok(())
}
