#![no_main]

use libfuzzer_sys::fuzz_target;
use tickcache_fuzz::flash_image::{run, Input};

fuzz_target!(|input: Input| run(&input));
