//! Write-back in regions barely larger than one batch: an operation that lists a key
//! checks that the flush it leads to fits the region whatever order the flush writes its
//! records in (tombstones first, and the list's order changes as keys come and go), so no
//! operation answers `StorageFull` while each of its records fits the flash alone, and
//! nothing read back, before or after a reopen, is older than what was acknowledged.

use std::collections::HashMap;

use tickcache::flash::{MockFlash, Persistent, Policy};
use tickcache::{Config, Error, ManualClock, Table};

mod flash_front;
use flash_front::Rng;

/// Seeded runs of 200 sets and deletes of keys 1 to 19 bytes long (tombstones as long as
/// values, or longer) with values of 0 to 11 bytes, on `PG` pages of `PS` bytes.
fn run<const PG: usize, const PS: usize, const WS: usize>(policy: Policy, seeds: u64) {
    for seed in 1..=seeds {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut flash = MockFlash::<PG, PS, WS>::new();
        let range = 0..(PG * PS) as u32;
        // The last acknowledged value length of each key; `None` once deleted.
        let mut acked: HashMap<String, Option<usize>> = HashMap::new();
        {
            let clock = ManualClock::new(1000);
            let p = Persistent::<_, 16, 24, 16, 8>::open(
                &mut flash,
                range.clone(),
                Table::new(),
                policy,
            )
            .unwrap();
            let mut c = p.into_cache(&clock, Config::new().key_prefix(""));
            for op in 0..200 {
                let klen = 1 + (rng.next() % 19) as usize;
                let key = char::from(b'a' + (rng.next() % 6) as u8)
                    .to_string()
                    .repeat(klen);
                let ctx = format!("{policy:?} {PG} x {PS} B, WS {WS}, seed {seed}, op {op}");
                if rng.next() % 2 == 0 {
                    let vlen = (rng.next() % 12) as usize;
                    match c.set_raw(key.as_str(), &vec![7u8; vlen][..], 600) {
                        Ok(()) => {
                            acked.insert(key.clone(), Some(vlen));
                        }
                        Err(e) => panic!("set: {e:?} at {ctx}"),
                    }
                } else {
                    match c.delete(key.as_str()) {
                        Ok(_) => {
                            acked.insert(key.clone(), None);
                        }
                        Err(e) => panic!("delete: {e:?} at {ctx}"),
                    }
                }
                let mut out = [0u8; 16];
                match c.get_raw(key.as_str(), &mut out) {
                    // Culling or flash pressure may drop a key: a miss, never another value.
                    Ok(Some(n)) => assert_eq!(acked[&key], Some(n), "read back at {ctx}"),
                    Ok(None) => {}
                    Err(Error::StorageFull) => panic!("get: StorageFull at {ctx}"),
                    Err(e) => panic!("get: {e:?} at {ctx}"),
                }
            }
            c.close().unwrap();
        }
        let clock = ManualClock::new(1000);
        let p =
            Persistent::<_, 16, 24, 16, 8>::open(&mut flash, range, Table::new(), policy).unwrap();
        let mut c = p.into_cache(&clock, Config::new().key_prefix(""));
        for (key, want) in &acked {
            let mut out = [0u8; 16];
            if let Some(n) = c.get_raw(key.as_str(), &mut out).unwrap() {
                assert_eq!(
                    *want,
                    Some(n),
                    "{key} after reopen, {policy:?} {PG} x {PS} B, seed {seed}"
                );
            }
        }
    }
}

const WB: Policy = Policy::WriteBack { max_dirty: 8 };

#[test]
fn write_back_in_small_regions_never_answers_storage_full() {
    run::<4, 128, 4>(WB, 400);
    run::<3, 128, 1>(WB, 300);
    run::<3, 256, 8>(WB, 300);
    run::<5, 128, 16>(WB, 300);
    run::<3, 512, 32>(WB, 200);
}

#[test]
fn write_through_in_small_regions_never_answers_storage_full() {
    run::<4, 128, 4>(Policy::WriteThrough, 200);
    run::<3, 256, 8>(Policy::WriteThrough, 200);
}
