//! The workload the like-for-like size probes share (`size_like_heapless`,
//! `size_like_tickcache`): insert, get and remove of one small serde struct under a string
//! key, with inputs the compiler cannot see.

use core::hint::black_box;

use serde::{Deserialize, Serialize};

/// The value both probes store (postcard-encoded: 5 to 9 bytes).
#[derive(Serialize, Deserialize)]
pub struct Reading {
    pub id: u16,
    pub value: i32,
    pub ok: bool,
}

/// The key, opaque to the compiler.
pub fn key() -> &'static str {
    black_box("sensor_0001")
}

/// The value to store, opaque to the compiler.
pub fn reading() -> Reading {
    Reading {
        id: black_box(7),
        value: black_box(-40),
        ok: black_box(true),
    }
}

/// Folds a value read back into the score, so every field is used.
pub fn score(r: &Reading) -> u32 {
    u32::from(r.id)
        .wrapping_add(r.value as u32)
        .wrapping_add(u32::from(r.ok))
}
