//! Fuzz targets for tickcache. Each module holds one target's input type and its checking
//! code; the binaries in `fuzz_targets/` call them, and the main crate's
//! `tests/fuzz_regressions.rs` includes the same modules to replay saved inputs under plain
//! `cargo test`.

pub mod flash_image;
pub mod key;
pub mod memcached;
pub mod ops;
pub mod persist;
pub mod value;
