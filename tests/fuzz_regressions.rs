//! Fuzz findings, replayed under plain `cargo test` (no nightly, no cargo-fuzz).
//!
//! The fuzz targets' checking code lives in `fuzz/src/` and is included here unchanged, so
//! an input replays through exactly the checks the fuzzer ran. Every input saved under
//! `fuzz/regressions/<target>/` (a minimized crash, kept once fixed) and every seed under
//! `fuzz/corpus/<target>/` (files named `seed-*`) is replayed. Findings still open are tests of their own below.
//!
//! To add a crash: `fuzz/run.sh` minimizes it and prints its path; copy it to
//! `fuzz/regressions/<target>/<short-name>` once fixed. An input for a finding still open
//! goes to `fuzz/regressions/open/` and gets a test of its own, which fails until the fix.

use std::fs;
use std::path::Path;

#[allow(dead_code)]
#[path = "../fuzz/src/flash_image.rs"]
mod flash_image;
#[allow(dead_code)]
#[path = "../fuzz/src/key.rs"]
mod key;
#[allow(dead_code)]
#[path = "../fuzz/src/memcached.rs"]
mod memcached;
#[allow(dead_code)]
#[path = "../fuzz/src/ops.rs"]
mod ops;
#[allow(dead_code)]
#[path = "../fuzz/src/persist.rs"]
mod persist;
#[allow(dead_code)]
#[path = "../fuzz/src/value.rs"]
mod value;

/// Replays the files of `fuzz/<dir>/<target>/` whose names start with `prefix`; returns
/// how many.
fn replay(dir: &str, target: &str, prefix: &str, run: fn(&[u8])) -> usize {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(dir)
        .join(target);
    let Ok(entries) = fs::read_dir(&path) else {
        return 0;
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    files.sort();
    for file in &files {
        let data = fs::read(file).expect("readable input");
        let r = std::panic::catch_unwind(|| run(&data));
        assert!(r.is_ok(), "{} fails", file.display());
    }
    files.len()
}

#[test]
fn ops_inputs_replay() {
    replay("regressions", "ops", "", ops::run_bytes);
    // The seeds only: a campaign's own corpus is not kept.
    replay("corpus", "ops", "seed-", ops::run_bytes);
}

#[test]
fn memcached_inputs_replay() {
    replay("regressions", "memcached", "", memcached::run_bytes);
    assert!(replay("corpus", "memcached", "seed-", memcached::run_bytes) > 0);
}

#[test]
fn key_inputs_replay() {
    replay("regressions", "key", "", key::run_bytes);
    // The seeds only: a campaign's own corpus is not kept.
    replay("corpus", "key", "seed-", key::run_bytes);
}

#[test]
fn value_inputs_replay() {
    replay("regressions", "value", "", value::run_bytes);
    // The seeds only: a campaign's own corpus is not kept.
    replay("corpus", "value", "seed-", value::run_bytes);
}

#[test]
fn persist_inputs_replay() {
    replay("regressions", "persist", "", persist::run_bytes);
    // The seeds only: a campaign's own corpus is not kept.
    replay("corpus", "persist", "seed-", persist::run_bytes);
}

#[test]
fn flash_image_inputs_replay() {
    replay("regressions", "flash_image", "", flash_image::run_bytes);
    // The seeds only: a campaign's own corpus is not kept.
    replay("corpus", "flash_image", "seed-", flash_image::run_bytes);
}

/// Open finding (fails until fixed): a stray zero byte in a page's blank part B makes a
/// valid part B with the largest sequence number, and the next page opened wraps to
/// sequence 0, so on the next open the log ends at the stray page and everything written
/// since is lost.
///
/// The input: a blank flash opened once (every page gets its part A), then two bytes of the
/// last page changed: a `0x00` right after the 4 sequence bytes of part B (blank, so the
/// sequence reads `0xFFFF_FFFF`; a zero base time; the CRC field reads `0xFFFF_FFFF`, which
/// is the CRC-32C of `FF FF FF FF 00`: four `0xFF` bytes cancel the CRC's initial value and
/// a zero byte leaves it at zero), and a byte of garbage in its record area (so the page
/// cannot take records). The open takes that page as the whole log. `set_raw("x0", b"")`
/// then needs a page, opens page 0 with sequence `0xFFFF_FFFF + 1`, which wraps to 0; after
/// `close` and a new open, the highest sequence is the stray page again, page 0 is not part
/// of the log, and `x0` was gone. Found by `flash_image`; fixed by starting part B's CRC with
/// a constant byte and never accepting sequence `0xFFFF_FFFF`.
#[test]
fn flash_image_stray_zero_in_part_b_keeps_later_writes() {
    use arbitrary::{Arbitrary, Unstructured};
    let data = include_bytes!("../fuzz/regressions/flash_image/seq-wrap-after-stray-zero");
    // The first four bytes (0x40) pick 4-byte words, the geometry it was found on.
    let input = flash_image::Input::arbitrary_take_rest(Unstructured::new(data)).unwrap();
    assert!(matches!(input.geometry, flash_image::Geometry::W4));
    flash_image::run_bytes(data);
}

/// Fixed finding: an integer entry whose bytes are longer than the minimal encoding (`[0]`
/// for 0, which is stored as no bytes) used to read back as its value, so a typed read did
/// not round-trip to the stored bytes. Such an entry only comes from damaged storage and is
/// now the wrong type. Found by `value`.
#[test]
fn value_int_entry_with_non_minimal_bytes_is_refused() {
    value::run_with(
        &value::Input {
            kind: value::KindSeed::Int,
            delta: 0,
            raw_len: 0,
            bytes: vec![0],
        },
        true,
    );
}

/// The `persist` seeds reach what the target is for: under each policy, an insert that
/// culls with a power cut landing in it, on both front ends (the seeds are replayed through
/// every check by `persist_inputs_replay`; this keeps two of them reaching that far).
#[test]
fn persist_seeds_cut_culling_inserts() {
    use arbitrary::{Arbitrary, Unstructured};
    for (name, write_back) in [
        ("seed-cull-cut-write-through", false),
        ("seed-cull-cut-write-back", true),
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/persist")
            .join(name);
        let data = fs::read(&path).expect("readable seed");
        let input = persist::Input::arbitrary_take_rest(Unstructured::new(&data)).unwrap();
        assert_eq!(
            matches!(input.policy, persist::PolicySeed::WriteBack(_)),
            write_back,
            "{name}: policy"
        );
        for front in persist::FRONTS {
            let reach = persist::run_on(&input, front);
            assert!(reach.cut_culls > 0, "{name} on {front:?}: {reach:?}");
        }
    }
}
