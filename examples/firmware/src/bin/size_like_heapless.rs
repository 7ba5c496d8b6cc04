//! Size probe, the like-for-like peer of `size_like_tickcache`: heapless's `FnvIndexMap`
//! from `heapless::String<24>` keys to postcard-encoded `heapless::Vec<u8, 16>` values,
//! insert, get and remove of a small serde struct, the map in a `static` of its own.
//! Build with `--no-default-features --release`.
#![no_std]
#![no_main]

use heapless::index_map::FnvIndexMap;
use heapless::{String, Vec};

#[path = "../like.rs"]
mod like;
#[path = "../probe.rs"]
mod probe;

type Map = FnvIndexMap<String<24>, Vec<u8, 16>, 16>;

/// Encodes `r` with postcard and stores it under `key`; false when the key is too long,
/// the value too big or the map full.
fn insert(map: &mut Map, key: &str, r: &like::Reading) -> bool {
    let mut k = String::new();
    let mut v = Vec::new();
    if k.push_str(key).is_err() || v.resize(v.capacity(), 0).is_err() {
        return false;
    }
    let Ok(n) = postcard::to_slice(r, &mut v).map(|used| used.len()) else {
        return false;
    };
    v.truncate(n);
    map.insert(k, v).is_ok()
}

#[cortex_m_rt::entry]
fn main() -> ! {
    // The map in a static of its own (zero bytes, so `.bss`).
    let Some(map) = cortex_m::singleton!(: Map = Map::new()) else {
        probe::finish(0xFFFF_FFFF)
    };
    let mut score = u32::from(insert(map, like::key(), &like::reading()));
    if let Some(r) = map
        .get(like::key())
        .and_then(|v| postcard::from_bytes::<like::Reading>(v).ok())
    {
        score = score.wrapping_add(like::score(&r));
    }
    score += u32::from(map.swap_remove(like::key()).is_some());
    probe::finish(score)
}
