#![no_main]

use libfuzzer_sys::fuzz_target;
use tickcache_fuzz::memcached::{run, Input};

fuzz_target!(|input: Input| run(&input));
