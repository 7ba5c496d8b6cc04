//! Every method of the API, called with inputs the compiler cannot see: what the
//! whole-API size probes link in, whatever the backend.

use core::hint::black_box;

use tickcache::{Backend, Cache, Clock, Key, Timeout};

/// Calls each method once and folds the answers into a number, so none is dead code.
#[inline(always)]
pub fn exercise<C: Clock, B: Backend, const K: usize>(c: &mut Cache<C, B, K>) -> u32 {
    let key: &str = black_box("key");
    let other: &str = black_box("other");
    let t = Timeout::Secs(black_box(60));
    let mut score = 0u32;
    let mut buf = [0u8; 16];
    score += u32::from(c.set(key, &black_box(5u32), t).is_ok());
    score += c.get::<u32>(key).ok().flatten().unwrap_or(0);
    score += u32::from(c.set_raw(other, black_box(&b"raw"[..]), t).is_ok());
    score += c.get_raw(other, &mut buf).ok().flatten().unwrap_or(0) as u32;
    score += u32::from(
        c.add(key, &black_box([1u8; 4]), Timeout::Never)
            .unwrap_or(false),
    );
    score += u32::from(c.touch(key, t).unwrap_or(false));
    score += u32::from(
        c.has_key(Key::new(key).version(black_box(2)))
            .unwrap_or(false),
    );
    score += c
        .get_many([key, other], |_, v: u32| {
            black_box(v);
        })
        .unwrap_or(0) as u32;
    score += c
        .set_many([(key, &1u32), (other, &2u32)], t, |_, _| {})
        .unwrap_or(0) as u32;
    score += c.get_or_set(other, || black_box(3u32), t).unwrap_or(0);
    score += c.incr(key, black_box(2)).unwrap_or(0) as u32;
    score += c.decr(key, black_box(1)).unwrap_or(0) as u32;
    score += c.incr_version(key, black_box(1)).unwrap_or(0) as u32;
    score += c.decr_version(key, black_box(1)).unwrap_or(0) as u32;
    score += u32::from(c.delete(key).unwrap_or(false));
    score += c.delete_many([key, other]).unwrap_or(0) as u32;
    score += u32::from(c.clear().is_ok());
    score += u32::from(c.close().is_ok());
    score
}
