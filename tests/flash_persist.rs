//! Persistence on flash: reboots and time, culling across reboots (with power cuts), full
//! flash, corrupt images, wear, and the mock flash's own rules.

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use tickcache::flash::{FlashError, MockError, MockFlash, Persistent, Policy};
use tickcache::{Backend, Config, Error, ManualClock, Table, Timeout};

type Mock = MockFlash<4, 1024, 4>;
type P<'a> = Persistent<&'a mut Mock, 16, 24, 16>;

fn open(flash: &mut Mock, policy: Policy) -> P<'_> {
    Persistent::open(flash, 0..4096, Table::new(), policy).expect("open")
}

#[test]
fn entries_and_time_survive_reboots() {
    let mut flash = Mock::new();
    {
        let clock = ManualClock::new(1000);
        let mut cache = open(&mut flash, Policy::WriteThrough).into_cache(&clock, Config::new());
        cache.set("short", &1u8, 10).unwrap(); // expires at 10 s
        cache.set("long", &2u8, 100).unwrap(); // expires at 100 s
        cache.set("never", &3u8, Timeout::Never).unwrap();
        clock.advance_secs(8);
        // `close` persists the current time (8 s).
        assert!(cache.has_key("short").unwrap());
        cache.close().unwrap();
    }
    {
        // Power-on: the clock starts at zero again, cache time resumes at 8 s.
        let clock = ManualClock::new(1000);
        let mut cache = open(&mut flash, Policy::WriteThrough).into_cache(&clock, Config::new());
        assert_eq!(cache.now(), 8000);
        assert_eq!(cache.get::<u8>("short").unwrap(), Some(1));
        clock.advance_secs(5); // 13 s: "short" is over
        assert_eq!(cache.get::<u8>("short").unwrap(), None); // the expiry is logged
    }
    for _ in 0..3 {
        let clock = ManualClock::new(1000);
        let mut cache = open(&mut flash, Policy::WriteThrough).into_cache(&clock, Config::new());
        assert!(cache.now() >= 13_000);
        assert_eq!(
            cache.get::<u8>("short").unwrap(),
            None,
            "an expired entry came back"
        );
        assert_eq!(cache.get::<u8>("long").unwrap(), Some(2));
        assert_eq!(cache.get::<u8>("never").unwrap(), Some(3));
        clock.advance_secs(30);
        cache.touch("never", Timeout::Never).unwrap();
    }
    // 13 + 3 * 30 = 103 s of powered-on time: "long" (100 s) is over, "never" stays.
    let clock = ManualClock::new(1000);
    let mut cache = open(&mut flash, Policy::WriteThrough).into_cache(&clock, Config::new());
    assert_eq!(cache.get::<u8>("long").unwrap(), None);
    assert_eq!(cache.get::<u8>("never").unwrap(), Some(3));
}

#[test]
fn write_back_keeps_the_last_flush() {
    let mut flash = Mock::new();
    let policy = Policy::WriteBack { max_dirty: 4 };
    {
        let clock = ManualClock::new(1000);
        let mut cache = open(&mut flash, policy).into_cache(&clock, Config::new());
        cache.set("a", &1u8, 60).unwrap();
        cache.set("b", &2u8, 60).unwrap();
        assert_eq!(cache.backend().dirty(), 2);
        cache.close().unwrap();
        cache.set("c", &3u8, 60).unwrap(); // never flushed
        cache.delete("a").unwrap(); // never flushed
    }
    let clock = ManualClock::new(1000);
    let mut cache = open(&mut flash, policy).into_cache(&clock, Config::new());
    assert_eq!(cache.get::<u8>("a").unwrap(), Some(1));
    assert_eq!(cache.get::<u8>("b").unwrap(), Some(2));
    assert_eq!(cache.get::<u8>("c").unwrap(), None);
    // Four changed keys trigger a flush on their own.
    for k in ["w", "x", "y", "z"] {
        cache.set(k, &9u8, 60).unwrap();
    }
    assert_eq!(cache.backend().dirty(), 0);
}

/// Django's cull (MAX_ENTRIES 6, CULL_FREQUENCY 3) across reboots: culled entries never come
/// back, and an insert that culls is all-or-nothing under a power cut at every event.
#[test]
fn culling_is_persistent_and_atomic() {
    let keys = ["k0", "k1", "k2", "k3", "k4", "k5"];
    for policy in [Policy::WriteThrough, Policy::WriteBack { max_dirty: 1 }] {
        // Count the events of the culling insert.
        let fill = |flash: &mut Mock| {
            let clock = ManualClock::new(1000);
            let p = Persistent::<_, 16, 24, 16>::open(
                flash,
                0..4096,
                Table::with_culling(6, 3),
                policy,
            )
            .unwrap();
            let mut cache = p.into_cache(&clock, Config::new());
            for k in keys {
                cache.set(k, &1u8, Timeout::Never).unwrap();
            }
        };
        let mut probe = Mock::new();
        fill(&mut probe);
        let before = probe.events();
        {
            let clock = ManualClock::new(1000);
            let p = Persistent::<_, 16, 24, 16>::open(
                &mut probe,
                0..4096,
                Table::with_culling(6, 3),
                policy,
            )
            .unwrap();
            let mut cache = p.into_cache(&clock, Config::new());
            cache.set("new", &2u8, Timeout::Never).unwrap();
            // 6 / 3 = 2 least recent (write order after a reboot: k0, k1) went.
            assert!(!cache.has_key("k0").unwrap() && !cache.has_key("k1").unwrap());
            assert_eq!(cache.len(), 5);
        }
        let cost = probe.events() - before;
        for cut in 0..=cost {
            let mut flash = Mock::new();
            fill(&mut flash);
            {
                let clock = ManualClock::new(1000);
                let p = Persistent::<_, 16, 24, 16>::open(
                    &mut flash,
                    0..4096,
                    Table::with_culling(6, 3),
                    policy,
                )
                .unwrap();
                let mut cache = p.into_cache(&clock, Config::new());
                cache.backend_mut().flash_mut().cut_after(cut);
                let _ = cache.set("new", &2u8, Timeout::Never);
            }
            flash.power_on();
            let clock = ManualClock::new(1000);
            let p = Persistent::<_, 16, 24, 16>::open(
                &mut flash,
                0..4096,
                Table::with_culling(6, 3),
                policy,
            )
            .unwrap();
            let mut cache = p.into_cache(&clock, Config::new());
            let has: Vec<bool> = keys.iter().map(|k| cache.has_key(*k).unwrap()).collect();
            let new = cache.has_key("new").unwrap();
            if new {
                assert_eq!(has, [false, false, true, true, true, true], "cut {cut}");
            } else {
                assert_eq!(has, [true; 6], "cut {cut}: culled without the insert");
            }
        }
    }
}

/// CULL_FREQUENCY 0 clears the whole table on an insert at the limit, live entries included
/// even when an expired entry would have made room, and the log records exactly that: after
/// a reboot the cache holds what it held before, under every policy (a dirty list too short
/// for the clear, and one long enough to list every removed key).
#[test]
fn zero_cull_frequency_clears_and_the_log_agrees() {
    fn run<const D: usize>(policy: Policy) {
        let mut flash = Mock::new();
        fn open<const D: usize>(
            flash: &mut Mock,
            policy: Policy,
        ) -> Persistent<&mut Mock, 16, 24, 16, D> {
            Persistent::open(flash, 0..4096, Table::with_culling(4, 0), policy).unwrap()
        }
        let clock = ManualClock::new(1000);
        {
            let mut cache = open::<D>(&mut flash, policy).into_cache(&clock, Config::new());
            for k in ["a", "b", "c"] {
                cache.set(k, &1u8, Timeout::Never).unwrap();
            }
            cache.set("soon", &1u8, 1).unwrap();
            clock.advance_secs(1);
            cache.set("d", &2u8, Timeout::Never).unwrap();
            assert_eq!(cache.len(), 1, "{policy:?}");
            assert!(!cache.has_key("a").unwrap());
            cache.set("e", &3u8, Timeout::Never).unwrap();
            cache.close().unwrap();
        }
        let clock = ManualClock::new(1000);
        let mut cache = open::<D>(&mut flash, policy).into_cache(&clock, Config::new());
        for k in ["a", "b", "c", "soon"] {
            assert!(!cache.has_key(k).unwrap(), "{policy:?}: {k} came back");
        }
        assert_eq!(cache.get::<u8>("d").unwrap(), Some(2));
        assert_eq!(cache.get::<u8>("e").unwrap(), Some(3));
        assert_eq!(cache.len(), 2, "{policy:?}");
    }
    run::<8>(Policy::WriteThrough);
    run::<8>(Policy::WriteBack { max_dirty: 8 });
    run::<32>(Policy::WriteBack { max_dirty: 32 });
}

#[test]
fn incr_version_moves_the_key_across_reboots() {
    let mut flash = Mock::new();
    {
        let clock = ManualClock::new(1000);
        let mut cache = open(&mut flash, Policy::WriteThrough).into_cache(&clock, Config::new());
        cache.set("v", &5i64, Timeout::Never).unwrap();
        assert_eq!(cache.incr_version("v", 1).unwrap(), 2);
    }
    let clock = ManualClock::new(1000);
    let mut cache = open(&mut flash, Policy::WriteThrough).into_cache(&clock, Config::new());
    assert_eq!(cache.get::<i64>("v").unwrap(), None);
    assert_eq!(
        cache
            .get::<i64>(tickcache::Key::new("v").version(2))
            .unwrap(),
        Some(5)
    );
}

#[test]
fn full_flash_compacts_and_spreads_wear() {
    let mut flash = Mock::new();
    let clock = ManualClock::new(1000);
    let mut cache = open(&mut flash, Policy::WriteThrough).into_cache(&clock, Config::new());
    for i in 0..5000u32 {
        let k = format!("k{}", i % 12);
        cache.set(k.as_str(), &i, Timeout::Never).unwrap();
    }
    for i in 0..12u32 {
        let k = format!("k{i}");
        assert!(cache.get::<u32>(k.as_str()).unwrap().is_some());
    }
    let wear = cache.backend_mut().wear().unwrap();
    assert_eq!(wear.unknown, 0);
    assert!(wear.max - wear.min <= 2, "{wear:?}");
    assert!(wear.total > 50, "{wear:?}");
}

#[test]
fn entry_too_large_for_the_flash_is_storage_full_and_nothing_is_lost() {
    // Three pages of 128 bytes (96 for records): two pages of records, one spare.
    let mut flash = MockFlash::<3, 128, 4>::new();
    let clock = ManualClock::new(1000);
    let p =
        Persistent::<_, 8, 24, 120>::open(&mut flash, 0..384, Table::new(), Policy::WriteThrough)
            .unwrap();
    let mut cache = p.into_cache(&clock, Config::new());
    cache.set("small", &1u8, Timeout::Never).unwrap();
    cache.set("big", &[7u8; 40][..], Timeout::Never).unwrap();
    let huge = [1u8; 110];
    assert_eq!(
        cache.set_raw("huge", &huge, Timeout::Never),
        Err(Error::StorageFull)
    );
    assert_eq!(cache.get::<u8>("small").unwrap(), Some(1));
    assert!(cache.has_key("big").unwrap());
}

#[test]
fn geometry_is_checked() {
    let mut flash = Mock::new();
    let bad = |r: std::ops::Range<u32>, f: &mut Mock| {
        Persistent::<_, 4, 8, 8>::open(f, r, Table::new(), Policy::WriteThrough).map(drop)
    };
    assert_eq!(bad(0..1024, &mut flash), Err(FlashError::BadRange)); // one page
    assert_eq!(bad(100..2148, &mut flash), Err(FlashError::BadRange)); // not aligned
    assert_eq!(bad(0..8192, &mut flash), Err(FlashError::BadRange)); // beyond the flash
    assert!(bad(1024..3072, &mut flash).is_ok());
}

/// Random bytes and bit flips anywhere: open returns what is intact or `Corrupted`, never
/// panics or hangs, and the cache keeps working.
#[test]
fn corrupt_images_never_panic() {
    let mut base = Mock::new();
    {
        let clock = ManualClock::new(1000);
        let mut cache = open(&mut base, Policy::WriteThrough).into_cache(&clock, Config::new());
        for i in 0..300u32 {
            let k = format!("k{}", i % 14);
            cache.set(k.as_str(), &i, Timeout::Never).unwrap();
            if i % 7 == 0 {
                cache.delete(format!("k{}", i % 5).as_str()).unwrap();
            }
        }
    }
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..600 {
        let mut flash = base.clone();
        let n = 1 + rnd() % 8;
        for _ in 0..n {
            let at = (rnd() % 4096) as usize;
            let byte = flash.bytes()[at];
            let new = if round % 2 == 0 {
                byte ^ (1 << (rnd() % 8))
            } else {
                rnd() as u8
            };
            flash.corrupt(at, new);
        }
        match Persistent::<_, 16, 24, 16>::open(
            &mut flash,
            0..4096,
            Table::new(),
            Policy::WriteThrough,
        ) {
            Ok(p) => {
                let clock = ManualClock::new(1000);
                let mut cache = p.into_cache(&clock, Config::new());
                for i in 0..40u32 {
                    let k = format!("k{}", i % 14);
                    match cache.set(k.as_str(), &i, Timeout::Never) {
                        Ok(()) => {}
                        Err(Error::Backend(FlashError::Corrupted)) => break,
                        Err(Error::Backend(FlashError::Flash(MockError::DoubleWrite))) => {
                            panic!("round {round}: wrote over a written word")
                        }
                        Err(e) => panic!("round {round}: {e:?}"),
                    }
                }
            }
            Err(FlashError::Corrupted) => {}
            Err(e) => panic!("round {round}: {e:?}"),
        }
    }
    // A fully random image.
    for _ in 0..50 {
        let mut flash = Mock::new();
        for at in 0..4096 {
            flash.corrupt(at, rnd() as u8);
        }
        if let Ok(p) = Persistent::<_, 16, 24, 16>::open(
            &mut flash,
            0..4096,
            Table::new(),
            Policy::WriteThrough,
        ) {
            let clock = ManualClock::new(1000);
            let mut cache = p.into_cache(&clock, Config::new());
            cache.set("k", &1u8, 60).unwrap();
            assert_eq!(cache.get::<u8>("k").unwrap(), Some(1));
        }
    }
}

#[test]
fn mock_flash_enforces_nor_rules() {
    let mut f = MockFlash::<2, 64, 4>::new();
    assert_eq!(f.write(1, &[0; 4]), Err(MockError::NotAligned));
    assert_eq!(f.write(0, &[0; 3]), Err(MockError::NotAligned));
    f.write(0, &[0x0f; 4]).unwrap();
    assert_eq!(f.write(0, &[0x0f; 4]), Err(MockError::DoubleWrite));
    assert_eq!(f.write(128, &[0; 4]), Err(MockError::OutOfBounds));
    f.erase(0, 64).unwrap();
    assert_eq!(f.bytes()[0], 0xff);
    f.write(0, &[1; 4]).unwrap();
    f.cut_after(2);
    assert_eq!(f.write(4, &[0; 4]), Err(MockError::PowerOff));
    assert_eq!(&f.bytes()[4..8], &[0, 0, 0xff, 0xff]);
    f.power_on();
    f.cut_after(0);
    assert_eq!(f.erase(64, 128), Err(MockError::PowerOff));
    f.power_on();
    assert_eq!(f.erases(0), 1);
    assert_eq!(f.writes(), 3);
}

#[test]
fn backend_is_usable_directly() {
    let mut flash = Mock::new();
    let mut p = open(&mut flash, Policy::WriteThrough);
    assert!(p.is_empty());
    p.put(b"k", tickcache::Put::Set, u64::MAX, 0, |dst| {
        dst[0] = 1;
        Ok((1, tickcache::Kind::Bytes))
    })
    .unwrap();
    assert_eq!(p.len(), 1);
}

/// A record with multi-byte varints (time delta, expiry, value length) cut at every byte,
/// for each write size: the reopened cache holds the entry whole or not at all, and the
/// entry before it.
fn torn_varints<const WS: usize>() {
    for cut in 0u64.. {
        let mut flash = MockFlash::<4, 1024, WS>::new();
        let clock = ManualClock::new(1000);
        let done = {
            let p = Persistent::<_, 16, 24, 200>::open(
                &mut flash,
                0..4096,
                Table::new(),
                Policy::WriteThrough,
            )
            .unwrap();
            let mut cache = p.into_cache(&clock, Config::new());
            cache.set_raw("a", b"first", Timeout::Never).unwrap();
            clock.advance(5_000_000);
            cache.backend_mut().flash_mut().cut_after(cut);
            cache
                .set_raw("b", &[0x80; 150], Timeout::Secs(1_000_000))
                .is_ok()
        };
        flash.power_on();
        let p = Persistent::<_, 16, 24, 200>::open(
            &mut flash,
            0..4096,
            Table::new(),
            Policy::WriteThrough,
        )
        .unwrap();
        let clock = ManualClock::new(1000);
        let mut cache = p.into_cache(&clock, Config::new());
        let mut out = [0u8; 200];
        assert_eq!(cache.get_raw("a", &mut out).unwrap(), Some(5), "cut {cut}");
        match cache.get_raw("b", &mut out).unwrap() {
            Some(n) => assert_eq!(&out[..n], &[0x80; 150][..], "cut {cut}"),
            None => assert!(!done, "cut {cut}: acknowledged entry lost"),
        }
        if done {
            assert!(cut > 150, "the record was written whole");
            break;
        }
    }
}

#[test]
fn cuts_inside_varints_every_write_size() {
    torn_varints::<1>();
    torn_varints::<2>();
    torn_varints::<4>();
    torn_varints::<8>();
    torn_varints::<16>();
    torn_varints::<32>();
    torn_varints::<64>();
}

#[test]
fn version_1_images_open_empty() {
    // A version-1 page: part A "TKCH", version 1, erase count 3, then a part B and records.
    let mut flash = Mock::new();
    for page in 0..4 {
        let at = page * 1024;
        for (i, b) in b"TKCH\x01\0\0\0\x03\0\0\0".iter().enumerate() {
            flash.corrupt(at + i, *b);
        }
        for i in 16..200 {
            flash.corrupt(at + i, (i * 7 + page) as u8);
        }
    }
    let p = open(&mut flash, Policy::WriteThrough);
    assert_eq!(p.len(), 0);
    let clock = ManualClock::new(1000);
    let mut cache = p.into_cache(&clock, Config::new());
    for i in 0..200u32 {
        cache
            .set(format!("k{}", i % 9).as_str(), &i, Timeout::Never)
            .unwrap();
    }
    assert_eq!(cache.get::<u32>("k2").unwrap(), Some(191));
}

/// CRC-32C, to build an old image by hand.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn version_2_images_open_empty() {
    // A valid version-2 log page (4-byte words): part A ('T', version 2, erase count 5,
    // CRC-16), part B (sequence 1, base time 0, CRC-32C over 'B' and the fields), then a
    // put of ":1:a" = "old" with version 2's one-byte key length.
    let mut page = vec![b'T', 2, 5, 0, 0, 0];
    let crc = crc32c(&page) as u16;
    page.extend(crc.to_le_bytes());
    let fields = [1u8, 0, 0, 0, 0];
    page.extend(fields);
    page.extend(crc32c(&[&b"B"[..], &fields].concat()).to_le_bytes());
    page.resize(20, 0xff);
    let mut rec = vec![0b0011_0000, 4, 3];
    rec.extend(b":1:aold");
    let crc = crc32c(&rec);
    rec.extend(crc.to_le_bytes());
    page.extend(&rec);
    let mut flash = Mock::new();
    for (i, &b) in page.iter().enumerate() {
        flash.corrupt(i, b);
    }
    // Nothing of it is read as this version's: the cache opens empty and works.
    let clock = ManualClock::new(1000);
    {
        let p = open(&mut flash, Policy::WriteThrough);
        assert_eq!(p.len(), 0);
        let mut cache = p.into_cache(&clock, Config::new());
        assert_eq!(cache.get_raw("a", &mut [0u8; 8]).unwrap(), None);
        for i in 0..200u32 {
            cache
                .set(format!("k{}", i % 9).as_str(), &i, Timeout::Never)
                .unwrap();
        }
    }
    let p = open(&mut flash, Policy::WriteThrough);
    let mut cache = p.into_cache(&clock, Config::new());
    assert_eq!(cache.get::<u32>("k2").unwrap(), Some(191));
    assert_eq!(cache.get_raw("a", &mut [0u8; 8]).unwrap(), None);
}

/// Entries round-trip across reopen on one geometry: `PG` pages of `PS` bytes, written in
/// `WS`-byte words, read in `RS`-byte units (the mock refuses any other read or write).
/// Enough sets to cycle every page, so compaction runs too.
fn round_trip<const PG: usize, const PS: usize, const WS: usize, const RS: usize>() {
    let mut flash = MockFlash::<PG, PS, WS, RS>::new();
    let region = 0..(PG * PS) as u32;
    let geometry = format!("{PG} x {PS} B, WRITE_SIZE {WS}, READ_SIZE {RS}");
    let sets = 3 * PG * PS / WS.max(24) + 20;
    {
        let p = Persistent::<_, 16, 24, 16>::open(
            &mut flash,
            region.clone(),
            Table::new(),
            Policy::WriteThrough,
        )
        .unwrap_or_else(|e| panic!("{geometry}: open {e:?}"));
        let clock = ManualClock::new(1000);
        let mut cache = p.into_cache(&clock, Config::new());
        for i in 0..sets as u32 {
            let k = format!("k{}", i % 5);
            cache.set(k.as_str(), &i, Timeout::Never).unwrap();
        }
        cache
            .set_raw("bytes", b"0123456789", Timeout::Never)
            .unwrap();
        cache.set("gone", &1u8, Timeout::Never).unwrap();
        assert!(cache.delete("gone").unwrap());
        cache.close().unwrap();
    }
    for round in 0..2 {
        let p = Persistent::<_, 16, 24, 16>::open(
            &mut flash,
            region.clone(),
            Table::new(),
            Policy::WriteThrough,
        )
        .unwrap_or_else(|e| panic!("{geometry}: reopen {e:?}"));
        assert_eq!(p.len(), 6, "{geometry}, round {round}");
        let clock = ManualClock::new(1000);
        let mut cache = p.into_cache(&clock, Config::new());
        for k in 0..5u32 {
            // The last value set under `k{k}`.
            let last = (0..sets as u32).rev().find(|i| i % 5 == k).unwrap();
            let key = format!("k{k}");
            let got = cache.get::<u32>(key.as_str()).unwrap();
            assert_eq!(got, Some(last), "{geometry}, round {round}, {key}");
        }
        let mut out = [0u8; 16];
        assert_eq!(cache.get_raw("bytes", &mut out).unwrap(), Some(10));
        assert_eq!(&out[..10], b"0123456789", "{geometry}");
        assert_eq!(cache.get::<u8>("gone").unwrap(), None, "{geometry}");
        // Writes after the reopen land after the restored log (the second one is what the
        // next round expects).
        let last = (0..sets as u32).rev().find(|i| i % 5 == 0).unwrap();
        cache.set("k0", &7u32, Timeout::Never).unwrap();
        cache.set("k0", &last, Timeout::Never).unwrap();
    }
}

/// The reported panic: `open` on a flash with 32- or 64-byte words (STM32H7's 256-bit flash
/// word) indexed past a fixed buffer while reading page headers.
#[test]
fn wide_write_words_open_and_round_trip() {
    round_trip::<4, 1024, 32, 1>();
    round_trip::<4, 1024, 64, 1>();
    round_trip::<4, 1024, 32, 32>();
    round_trip::<4, 1024, 64, 4>();
    round_trip::<4, 2048, 64, 64>();
}

/// Every write size from 1 to 64 with read sizes 1, 4 and 32.
#[test]
fn every_write_and_read_size_round_trips() {
    round_trip::<4, 512, 1, 1>();
    round_trip::<4, 512, 1, 4>();
    round_trip::<4, 512, 2, 1>();
    round_trip::<4, 512, 2, 32>();
    round_trip::<4, 512, 4, 4>();
    round_trip::<4, 512, 8, 1>();
    round_trip::<4, 512, 8, 32>();
    round_trip::<4, 512, 16, 4>();
    round_trip::<4, 512, 16, 32>();
    round_trip::<4, 512, 32, 4>();
    round_trip::<4, 512, 64, 32>();
    // Reads of 64 bytes beneath smaller words: a record's header can cross the end of the
    // one aligned read window that holds its start.
    round_trip::<4, 512, 1, 64>();
    round_trip::<4, 512, 4, 64>();
    round_trip::<4, 512, 16, 64>();
}

/// Erase sizes from 128 B to 128 KiB.
#[test]
fn small_and_large_pages_round_trip() {
    round_trip::<6, 128, 1, 1>();
    round_trip::<6, 128, 4, 4>();
    round_trip::<6, 128, 16, 1>();
    round_trip::<8, 128, 32, 32>();
    round_trip::<4, 4096, 4, 1>();
    round_trip::<4, 4096, 32, 32>();
    round_trip::<3, 131_072, 8, 4>();
    round_trip::<3, 131_072, 64, 32>();
}

#[test]
fn mock_flash_enforces_read_alignment() {
    let mut f = MockFlash::<2, 64, 4, 32>::new();
    let mut buf = [0u8; 32];
    assert_eq!(f.read(4, &mut buf), Err(MockError::NotAligned));
    assert_eq!(f.read(0, &mut buf[..16]), Err(MockError::NotAligned));
    assert_eq!(f.read(64, &mut buf), Ok(()));
    assert_eq!(f.read(128, &mut buf), Err(MockError::OutOfBounds));
}

/// The region of the tight figures: 4 pages of 256 B, written byte by byte.
type Tight = MockFlash<4, 256, 1>;

/// 24 keys, each round a new value of 1 to 12 bytes.
fn tight_value(k: usize, round: usize) -> Vec<u8> {
    vec![(k * 16 + round) as u8; 1 + k % 12]
}

/// Opens `flash` under write-back, sets round `round`'s values and flushes them, the power
/// cut after `cut` events when given. Whether the flush returned, and the events it took.
fn tight_flush(flash: &mut Tight, round: usize, cut: Option<u64>) -> (bool, u64) {
    let clock = ManualClock::new(1000);
    let p = Persistent::<_, 32, 8, 16, 32>::open(
        flash,
        0..1024,
        Table::new(),
        Policy::WriteBack { max_dirty: 32 },
    )
    .expect("open");
    let mut cache = p.into_cache(&clock, Config::new());
    for k in 0..24 {
        let name = format!("k{k}");
        cache
            .set_raw(name.as_str(), &tight_value(k, round), Timeout::Never)
            .expect("set");
    }
    let before = cache.backend().flash().events();
    if let Some(cut) = cut {
        cache.backend_mut().flash_mut().cut_after(cut);
    }
    let flushed = cache.close().is_ok();
    (flushed, cache.backend().flash().events() - before)
}

/// What a reopened `flash` holds for each key.
fn tight_contents(flash: &mut Tight) -> Vec<Option<Vec<u8>>> {
    let clock = ManualClock::new(1000);
    let p = Persistent::<_, 32, 8, 16, 32>::open(
        flash,
        0..1024,
        Table::new(),
        Policy::WriteBack { max_dirty: 32 },
    )
    .expect("reopen");
    let mut cache = p.into_cache(&clock, Config::new());
    (0..24)
        .map(|k| {
            let name = format!("k{k}");
            cache
                .with_raw(name.as_str(), |b, _| b.to_vec())
                .expect("get")
        })
        .collect()
}

/// A write-back flush of every key of a region too small to hold it beside the values it
/// replaces: compaction drops those instead of copying them. Cut at every byte of such a
/// flush, a reopen finds each key with the value of the last flush, of this one, or not at
/// all: never an older value. Once the flush returns, every key has its new value.
#[test]
fn a_flush_too_large_to_keep_the_old_values_never_brings_back_older_ones() {
    // Rounds 0 to 2 flushed, then round 3 flushed with a cut after `cut` events.
    let mut base = Tight::new();
    for round in 0..3 {
        assert!(tight_flush(&mut base, round, None).0);
        assert_eq!(
            tight_contents(&mut base.clone()),
            (0..24)
                .map(|k| Some(tight_value(k, round)))
                .collect::<Vec<_>>(),
            "round {round}"
        );
    }
    let (_, events) = tight_flush(&mut base.clone(), 3, None);
    assert!(events > 300, "the flush writes every key: {events} events");
    let mut lost = 0;
    for cut in 0..events {
        let mut flash = base.clone();
        let (flushed, _) = tight_flush(&mut flash, 3, Some(cut));
        flash.power_on();
        for (k, v) in tight_contents(&mut flash).iter().enumerate() {
            match v {
                None => lost += 1,
                Some(v) if *v == tight_value(k, 3) => {}
                Some(v) => assert!(
                    !flushed && *v == tight_value(k, 2),
                    "cut {cut}: k{k} = {v:?}"
                ),
            }
        }
    }
    // Some cuts do lose keys (the price of a flush that does not fit beside the old
    // values), and none loses them all.
    assert!(lost > 0 && lost < 24 * events as usize, "{lost} keys lost");
}

/// Write-through does not write a `set` that leaves a key as its latest record has it (a
/// firmware storing the same setting at every boot wears nothing): unchanged values write no
/// byte, a changed value or a new expiry is written, and a reopen reads them all back.
#[test]
fn write_through_skips_a_set_that_changes_nothing() {
    let mut flash = Mock::new();
    let clock = ManualClock::new(1000);
    {
        let mut cache = open(&mut flash, Policy::WriteThrough).into_cache(&clock, Config::new());
        let written = |c: &tickcache::Cache<_, P<'_>, 24>| c.backend().flash().bytes_written();
        for k in ["a", "b", "c"] {
            cache.set(k, &7u32, Timeout::Never).unwrap();
        }
        cache.set("t", &1u32, Timeout::Secs(60)).unwrap();
        let before = written(&cache);
        clock.advance(5);
        for k in ["a", "b", "c"] {
            cache.set(k, &7u32, Timeout::Never).unwrap();
        }
        assert_eq!(
            written(&cache),
            before,
            "unchanged values are not written again"
        );
        cache.set("b", &8u32, Timeout::Never).unwrap();
        let changed = written(&cache);
        assert!(changed > before, "a changed value is written");
        // The same value with a timeout counted from now: a new expiry, written.
        cache.set("t", &1u32, Timeout::Secs(60)).unwrap();
        assert!(written(&cache) > changed, "a new expiry is written");
    }
    let mut cache = open(&mut flash, Policy::WriteThrough).into_cache(&clock, Config::new());
    assert_eq!(cache.get::<u32>("a").unwrap(), Some(7));
    assert_eq!(cache.get::<u32>("b").unwrap(), Some(8));
    assert_eq!(cache.get::<u32>("c").unwrap(), Some(7));
    assert_eq!(cache.get::<u32>("t").unwrap(), Some(1));
}

/// Write-back writes what changed since the last flush, once: a `set` of the value a key
/// already has on flash writes nothing, and ten sets of one key between two flushes write
/// one record, the last value.
#[test]
fn write_back_writes_only_what_changed() {
    let mut flash = Mock::new();
    let clock = ManualClock::new(1000);
    {
        let mut cache =
            open(&mut flash, Policy::WriteBack { max_dirty: 8 }).into_cache(&clock, Config::new());
        for k in ["a", "b", "c"] {
            cache.set(k, &7u32, Timeout::Never).unwrap();
        }
        cache.close().unwrap();
        let written = |c: &tickcache::Cache<_, P<'_>, 24>| c.backend().flash().bytes_written();
        let flushed = written(&cache);
        for k in ["a", "b", "c"] {
            cache.set(k, &7u32, Timeout::Never).unwrap();
        }
        assert_eq!(cache.backend().dirty(), 0);
        cache.close().unwrap();
        assert_eq!(
            written(&cache),
            flushed,
            "unchanged values are not written again"
        );
        // One record for ten sets: the same bytes as a single set of the last value.
        for i in 0..10u32 {
            cache.set("a", &(100 + i), Timeout::Never).unwrap();
        }
        cache.close().unwrap();
        let ten = written(&cache) - flushed;
        cache.set("b", &109u32, Timeout::Never).unwrap();
        cache.close().unwrap();
        assert_eq!(written(&cache) - flushed - ten, ten);
    }
    let mut cache = open(&mut flash, Policy::WriteThrough).into_cache(&clock, Config::new());
    assert_eq!(cache.get::<u32>("a").unwrap(), Some(109));
    assert_eq!(cache.get::<u32>("b").unwrap(), Some(109));
    assert_eq!(cache.get::<u32>("c").unwrap(), Some(7));
}

/// Compaction tells a live record from RAM, without reading the log: thousands of
/// write-through sets on a small region, where every compaction copies the entries set
/// once at the start, read only erase counts (8 bytes a page), and every entry survives.
#[test]
fn compaction_reads_no_record_of_an_unchanged_entry() {
    let mut flash = Tight::new();
    let clock = ManualClock::new(1000);
    {
        let p = Persistent::<_, 32, 8, 16, 32>::open(
            &mut flash,
            0..1024,
            Table::new(),
            Policy::WriteThrough,
        )
        .expect("open");
        let mut cache = p.into_cache(&clock, Config::new());
        for k in 0..6 {
            let name = format!("s{k}");
            cache
                .set(name.as_str(), &(k as u32), Timeout::Never)
                .unwrap();
        }
        cache.backend_mut().flash_mut().reset_counters();
        for i in 0..3000u32 {
            let name = format!("k{}", i % 6);
            cache.set(name.as_str(), &i, Timeout::Never).unwrap();
        }
        let f = cache.backend().flash();
        assert!(f.total_erases() > 100, "{} erases", f.total_erases());
        assert!(
            f.bytes_read() <= 16 * f.total_erases(),
            "{} bytes read for {} erases",
            f.bytes_read(),
            f.total_erases()
        );
    }
    let p = Persistent::<_, 32, 8, 16, 32>::open(
        &mut flash,
        0..1024,
        Table::new(),
        Policy::WriteThrough,
    )
    .expect("reopen");
    let mut cache = p.into_cache(&clock, Config::new());
    for k in 0..6u32 {
        let name = format!("s{k}");
        assert_eq!(cache.get::<u32>(name.as_str()).unwrap(), Some(k));
        let name = format!("k{k}");
        assert_eq!(cache.get::<u32>(name.as_str()).unwrap(), Some(2994 + k));
    }
}

/// Opens `flash` under write-through and sets `sets` values; then, when
/// `cut` is given, clears with the power cut after that many events. The events the clear
/// took.
fn tight_clear(flash: &mut Tight, sets: usize, cut: Option<u64>) -> u64 {
    let clock = ManualClock::new(1000);
    let p =
        Persistent::<_, 32, 8, 16, 32>::open(flash, 0..1024, Table::new(), Policy::WriteThrough)
            .expect("open");
    let mut cache = p.into_cache(&clock, Config::new());
    // Keys 0 to 7 once (their records stay live in the oldest pages), then 8 to 23 in turn.
    for i in 0..sets {
        let k = if i < 8 { i } else { 8 + (i - 8) % 16 };
        let name = format!("k{k}");
        cache
            .set_raw(name.as_str(), &tight_value(k, i / 24), Timeout::Never)
            .expect("set");
    }
    let Some(cut) = cut else { return 0 };
    let before = cache.backend().flash().events();
    cache.backend_mut().flash_mut().cut_after(cut);
    let _ = cache.clear();
    cache.backend().flash().events() - before
}

/// A `clear` is all or nothing under a power cut at every event, also when making room
/// for its record compacts the log first: the compaction still copies the live entries.
#[test]
fn a_clear_cut_anywhere_keeps_everything_or_nothing() {
    let mut compacted = 0;
    for sets in 24..96 {
        let mut base = Tight::new();
        tight_clear(&mut base, sets, None);
        let full = tight_contents(&mut base.clone());
        assert!(full.iter().all(Option::is_some), "{sets} sets");
        let events = tight_clear(&mut base.clone(), 0, Some(u64::MAX));
        compacted += usize::from(events > 4);
        for cut in 0..events {
            let mut flash = base.clone();
            tight_clear(&mut flash, 0, Some(cut));
            flash.power_on();
            let got = tight_contents(&mut flash);
            assert!(
                got == full || got.iter().all(Option::is_none),
                "{sets} sets, cut {cut}: {got:?}"
            );
        }
    }
    assert!(compacted > 0, "no clear had to compact");
}

/// CULL_FREQUENCY 1 culls every entry (Django: `len // 1` of them) on an insert at the
/// limit, under every policy, also when the victims outnumber the write-back list.
#[test]
fn cull_frequency_one_culls_every_entry() {
    fn run<const D: usize>(policy: Policy) {
        let mut flash = Mock::new();
        fn open<const D: usize>(
            flash: &mut Mock,
            policy: Policy,
        ) -> Persistent<&mut Mock, 16, 24, 16, D> {
            Persistent::open(flash, 0..4096, Table::with_culling(8, 1), policy).unwrap()
        }
        let clock = ManualClock::new(1000);
        {
            let mut cache = open::<D>(&mut flash, policy).into_cache(&clock, Config::new());
            for i in 0..8u8 {
                cache
                    .set(format!("k{i}").as_str(), &i, Timeout::Never)
                    .unwrap();
            }
            assert_eq!(cache.len(), 8, "{policy:?}");
            cache.set("new", &9u8, Timeout::Never).unwrap();
            assert_eq!(cache.len(), 1, "{policy:?}: after the culling insert");
            cache.close().unwrap();
        }
        let clock = ManualClock::new(1000);
        let mut cache = open::<D>(&mut flash, policy).into_cache(&clock, Config::new());
        assert_eq!(cache.get::<u8>("new").unwrap(), Some(9), "{policy:?}");
        assert_eq!(cache.len(), 1, "{policy:?}: after reopen");
    }
    run::<8>(Policy::WriteThrough);
    run::<8>(Policy::WriteBack { max_dirty: 8 });
    run::<32>(Policy::WriteBack { max_dirty: 32 });
}

/// A write-back insert that culls more entries than the list holds, on a flash with room
/// for the entries and the cull's batch but not for the changed keys' values as well: the
/// insert culls what Django culls (here every entry, `CULL_FREQUENCY` 1) and nothing is
/// dropped for room first; a reopen after `close` holds the same. Keys of 22 bytes made
/// (`:1:` and 19), values of 12; seven of the eight entries changed since the last flush.
#[test]
fn write_back_culling_insert_culls_what_django_culls() {
    type Small = MockFlash<6, 128, 4, 4>;
    fn open(flash: &mut Small) -> Persistent<&mut Small, 8, 24, 16> {
        let table = Table::with_culling(8, 1);
        Persistent::open(flash, 0..768, table, Policy::WriteBack { max_dirty: 8 }).unwrap()
    }
    let name = |i: u8| format!("key-{i:02}-xxxxxxxxxxxx");
    let mut flash = Small::new();
    let clock = ManualClock::new(1000);
    {
        let mut cache = open(&mut flash).into_cache(&clock, Config::new());
        for round in 0..2u8 {
            // Round 0 fills the list (a flush); round 1 changes seven entries again.
            for i in 0..(8 - round) {
                let value = [round * 16 + i; 12];
                cache.set(name(i).as_str(), &value, Timeout::Never).unwrap();
            }
        }
        assert_eq!(cache.backend().dirty(), 7);
        cache
            .set(name(8).as_str(), &[99u8; 12], Timeout::Never)
            .unwrap();
        assert_eq!(cache.len(), 1, "the insert culls every entry");
        assert_eq!(
            cache.get::<[u8; 12]>(name(8).as_str()).unwrap(),
            Some([99; 12])
        );
        cache.close().unwrap();
    }
    let mut cache = open(&mut flash).into_cache(&clock, Config::new());
    assert_eq!(cache.len(), 1, "after reopen");
    assert_eq!(
        cache.get::<[u8; 12]>(name(8).as_str()).unwrap(),
        Some([99; 12])
    );
    for i in 0..8 {
        assert_eq!(
            cache.get::<[u8; 12]>(name(i).as_str()).unwrap(),
            None,
            "key {i}"
        );
    }
}

/// A write-back flush whose batch holds a new key's value and a culled key's tombstone:
/// replayed value first, the table (at its limit) would cull an entry the batch never
/// removed. Batches write their tombstones first, so a reopen holds what RAM held.
/// `MAX_ENTRIES` 3, `CULL_FREQUENCY` 2 (each cull takes the least recent entry).
#[test]
fn write_back_replay_never_culls_what_the_batch_keeps() {
    type P<'a> = Persistent<&'a mut Mock, 8, 24, 16>;
    fn open(flash: &mut Mock) -> P<'_> {
        let table = Table::with_culling(3, 2);
        Persistent::open(flash, 0..4096, table, Policy::WriteBack { max_dirty: 3 }).unwrap()
    }
    let mut flash = Mock::new();
    let clock = ManualClock::new(1000);
    {
        let mut cache = open(&mut flash).into_cache(&clock, Config::new());
        for (k, v) in [("a", 1u8), ("b", 2), ("c", 3)] {
            cache.set(k, &v, Timeout::Never).unwrap();
        }
        assert_eq!(cache.backend().dirty(), 0, "three changes flushed");
        // Culls "a" (least recent); its tombstone waits in the list beside "d".
        cache.set("d", &4u8, Timeout::Never).unwrap();
        assert_eq!(cache.get::<u8>("b").unwrap(), Some(2));
        // Culls "c"; "a" comes back: the list (a, d, c) is flushed.
        cache.set("a", &5u8, Timeout::Never).unwrap();
        assert_eq!(cache.backend().dirty(), 0);
        cache.close().unwrap();
    }
    let mut cache = open(&mut flash).into_cache(&clock, Config::new());
    assert_eq!(cache.len(), 3);
    for (k, want) in [
        ("a", Some(5u8)),
        ("b", Some(2)),
        ("c", None),
        ("d", Some(4)),
    ] {
        assert_eq!(cache.get::<u8>(k).unwrap(), want, "{k} after reopen");
    }
}

/// Entries dropped for room are counted: a region with room for about a third of 16
/// entries (3 pages of 128 B, one kept spare) keeps the newest and counts every other one
/// as evicted; the table (16 slots) never culls, so each missing entry is an eviction.
#[test]
fn entries_dropped_for_room_are_counted() {
    type Tiny = MockFlash<3, 128, 4, 4>;
    let mut flash = Tiny::new();
    let clock = ManualClock::new(1000);
    let p: Persistent<&mut Tiny, 16, 24, 16> =
        Persistent::open(&mut flash, 0..384, Table::new(), Policy::WriteThrough).unwrap();
    let mut cache = p.into_cache(&clock, Config::new());
    assert_eq!(cache.backend().evictions(), 0);
    for i in 0..16u8 {
        cache
            .set_raw(format!("key-{i:02}").as_str(), &[i; 12], Timeout::Never)
            .unwrap();
    }
    let evicted = cache.backend().evictions();
    assert!(evicted > 0, "the region cannot hold 16 entries");
    assert_eq!(cache.len() + evicted as usize, 16);
    let last = cache.with_raw("key-15", |b, _| b.to_vec()).unwrap();
    assert_eq!(last, Some(vec![15; 12]), "the newest entry stays");
}

/// A region that ends beyond 2 GiB is refused with `BadRange` (the top bit of a flash
/// address marks a culling insert's victims), before any flash access.
#[test]
fn a_region_beyond_2_gib_is_refused() {
    /// A flash of 4 GiB - 4 KiB that is never accessed.
    struct Huge;
    impl embedded_storage::nor_flash::ErrorType for Huge {
        type Error = MockError;
    }
    impl ReadNorFlash for Huge {
        const READ_SIZE: usize = 1;
        fn read(&mut self, _: u32, _: &mut [u8]) -> Result<(), MockError> {
            unreachable!("a refused region is never read")
        }
        fn capacity(&self) -> usize {
            (u32::MAX - 4095) as usize
        }
    }
    impl NorFlash for Huge {
        const WRITE_SIZE: usize = 4;
        const ERASE_SIZE: usize = 4096;
        fn erase(&mut self, _: u32, _: u32) -> Result<(), MockError> {
            unreachable!("a refused region is never erased")
        }
        fn write(&mut self, _: u32, _: &[u8]) -> Result<(), MockError> {
            unreachable!("a refused region is never written")
        }
    }
    let top = 1u32 << 31;
    for range in [top - 4096..top + 4096, top..top + 8192] {
        let r = Persistent::<_, 16, 24, 16>::open(
            Huge,
            range.clone(),
            Table::new(),
            Policy::WriteThrough,
        );
        assert!(matches!(r, Err(FlashError::BadRange)), "{range:?}");
    }
}
