//! Damaged flash images: logs written by realistic workloads (write-through and write-back),
//! damaged in 17 ways, then opened. For every image: no panic, no hang, no value that was
//! never written, and no stale value (one older than a value acknowledged later, or a key
//! deleted since) when the damage leaves a trace the format can see. Lost keys are allowed
//! (a cache may miss) and counted; stale values after damage that leaves no trace (an
//! erased page or tail looks like a log that ended earlier) are counted apart.
//!
//! After the damaged open, a few writes are made and the image is opened once more: those
//! writes must be there, and nothing dropped at the first open may come back.
//!
//! The logs are written, and the damaged images opened and written again, by each front end
//! in turn: the blocking `Persistent` and `AsyncPersistent` through `AsyncSharedCache`.
//!
//! `cargo test --test flash_damage -- --nocapture` prints the table of lost and stale keys
//! per kind of damage; `TICKCACHE_DAMAGE=full` runs many more images.

use std::collections::{BTreeMap, HashMap};

use tickcache::flash::{FlashError, MockError, MockFlash, Persistent, Policy};
use tickcache::{Backend, Config, Error, Key, ManualClock, Table, Timeout};

mod flash_front;
use flash_front::{Front, Kind, Rng};

const PAGES: usize = 6;
const PS: usize = 512;
const WS: usize = 4;
const LEN: usize = PAGES * PS;
/// Bytes of the longest page header (part A 8 bytes, part B up to 18, each padded to WS).
const HDR_MAX: usize = 8 + 20;
const NAMES: u64 = 20;

type Mock = MockFlash<PAGES, PS, WS>;
type P<'a> = Persistent<&'a mut Mock, 32, 24, 16>;
type Fr<'c, 'f> = Front<'c, 'f, PAGES, PS, WS, 1, 32, 24, 16>;

/// Made key → value bytes.
type State = BTreeMap<Vec<u8>, Vec<u8>>;
/// Made key → every value ever acknowledged under it (values are unique counters).
type History = HashMap<Vec<u8>, Vec<Vec<u8>>>;

struct Image {
    kind: Kind,
    policy: Policy,
    bytes: Vec<u8>,
    history: History,
    /// What the undamaged image opens to: the last acknowledged state (write-through: the
    /// model of acknowledged operations, checked; write-back: the last flush).
    truth: State,
}

fn state(p: &P<'_>) -> State {
    let mut out = State::new();
    p.table().for_each_lru(|k, v, _, _| {
        out.insert(k.to_vec(), v.to_vec());
    });
    out
}

fn fstate(p: &mut Fr<'_, '_>) -> State {
    let mut out = State::new();
    p.for_each(|k, v, _| {
        out.insert(k.to_vec(), v.to_vec());
    });
    out
}

fn open_as<'c, 'f>(
    kind: Kind,
    flash: &'f mut Mock,
    policy: Policy,
    clock: &'c ManualClock,
) -> Result<Fr<'c, 'f>, FlashError<MockError>> {
    Front::open(kind, flash, 0..LEN as u32, Table::new(), policy, clock)
}

fn made(name: &str, version: i32) -> Vec<u8> {
    format!(":{version}:{name}").into_bytes()
}

/// A flash holding `image` (a word that reads all 0xFF is erased, any other written).
fn flash_of(image: &[u8]) -> Mock {
    let mut flash = Mock::new();
    for (w, word) in image.chunks(WS).enumerate() {
        if word.iter().any(|&b| b != 0xff) {
            for (i, &b) in word.iter().enumerate() {
                flash.corrupt(w * WS + i, b);
            }
        }
    }
    flash
}

fn open(flash: &mut Mock, policy: Policy) -> Result<P<'_>, FlashError<MockError>> {
    Persistent::open(flash, 0..LEN as u32, Table::new(), policy)
}

/// A workload of sets, deletes, `incr_version`, clears and closes on a blank flash.
fn workload(kind: Kind, policy: Policy, seed: u64) -> Image {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut flash = Mock::new();
    let mut model = State::new();
    let mut history = History::new();
    let mut counter = 0u32;
    let held;
    {
        let clock = ManualClock::new(1000);
        let mut cache = open_as(kind, &mut flash, policy, &clock).expect("blank flash opens");
        let ops = 40 + rng.below(360);
        for _ in 0..ops {
            clock.advance(1 + rng.below(20));
            let name = format!("k{}", rng.below(NAMES));
            let version = if rng.below(4) == 0 { 2 } else { 1 };
            let key = made(&name, version);
            match rng.below(100) {
                0..=59 => {
                    counter += 1;
                    let v = counter.to_le_bytes().to_vec();
                    call!(cache, |c| c.set_raw(
                        Key::new(&name).version(version),
                        &v,
                        Timeout::Never
                    ))
                    .expect("set");
                    history.entry(key.clone()).or_default().push(v.clone());
                    model.insert(key, v);
                }
                60..=74 => {
                    call!(cache, |c| c.delete(Key::new(&name).version(version))).expect("delete");
                    model.remove(&key);
                }
                75..=84 => {
                    let to = made(&name, 2);
                    match call!(cache, |c| c.incr_version(Key::new(&name).version(1), 1)) {
                        Ok(_) => {
                            let v = model.remove(&made(&name, 1)).expect("moved a held key");
                            history.entry(to.clone()).or_default().push(v.clone());
                            model.insert(to, v);
                        }
                        Err(Error::NotFound) => {
                            model.remove(&made(&name, 1));
                        }
                        Err(e) => panic!("incr_version: {e:?}"),
                    }
                }
                85..=86 => {
                    call!(cache, |c| c.clear()).expect("clear");
                    model.clear();
                }
                _ => call!(cache, |c| c.close()).expect("close"),
            }
        }
        if rng.below(3) != 0 {
            call!(cache, |c| c.close()).expect("close");
        }
        // Flash-pressure eviction (documented, durable) may have dropped entries: what
        // the cache holds is the model less those.
        held = fstate(&mut cache);
        for (k, v) in &held {
            assert_eq!(
                model.get(k),
                Some(v),
                "seed {seed}: the cache disagrees with the model"
            );
        }
    }
    let bytes = flash.bytes().to_vec();
    let mut again = flash_of(&bytes);
    let clock = ManualClock::new(1000);
    let truth =
        fstate(&mut open_as(kind, &mut again, policy, &clock).expect("undamaged image opens"));
    if policy == Policy::WriteThrough {
        assert_eq!(truth, held, "undamaged write-through image, seed {seed}");
    }
    for (k, v) in &truth {
        assert!(history.get(k).is_some_and(|h| h.contains(v)));
    }
    Image {
        kind,
        policy,
        bytes,
        history,
        truth,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Damage {
    BitFlips,
    RandomBytes,
    ZeroedPage,
    ErasedPage,
    RandomPage,
    AllZero,
    AllRandom,
    GarbageHeader,
    RandomBody,
    PageCopied,
    PagesSwapped,
    ErasedTail,
    ZeroedTail,
    BitDecay,
    PartBFlip,
    PartAFlip,
    ErasedHole,
}

const KINDS: [Damage; 17] = [
    Damage::BitFlips,
    Damage::RandomBytes,
    Damage::ZeroedPage,
    Damage::ErasedPage,
    Damage::RandomPage,
    Damage::AllZero,
    Damage::AllRandom,
    Damage::GarbageHeader,
    Damage::RandomBody,
    Damage::PageCopied,
    Damage::PagesSwapped,
    Damage::ErasedTail,
    Damage::ZeroedTail,
    Damage::BitDecay,
    Damage::PartBFlip,
    Damage::PartAFlip,
    Damage::ErasedHole,
];

/// Pages whose header reads as a log page ('T', version 3, a sequence number): physical
/// index and sequence. Only to aim the damage; the engine's own checks are stricter.
fn log_pages(image: &[u8]) -> Vec<(usize, u32)> {
    (0..PAGES)
        .filter_map(|p| {
            let pg = &image[p * PS..(p + 1) * PS];
            let seq = u32::from_le_bytes([pg[8], pg[9], pg[10], pg[11]]);
            (pg[0] == b'T' && pg[1] == 3 && seq != u32::MAX).then_some((p, seq))
        })
        .collect()
}

/// End of the written bytes of page `p` (one past its last byte that is not 0xFF).
fn written_end(image: &[u8], p: usize) -> usize {
    let pg = &image[p * PS..(p + 1) * PS];
    pg.iter().rposition(|&b| b != 0xff).map_or(0, |i| i + 1)
}

/// Damages `image`; true when the damage leaves a trace the format can see. Damage that
/// leaves none: erased flash where the log's newest part was (a page, the end of the newest
/// page), and the newest page replaced by zeros or garbage (what a page erase cut short
/// leaves, as on the page after the head). Small damage to the last record of a page is
/// told apart by [`may_read_torn`].
fn damage(kind: Damage, image: &mut [u8], rng: &mut Rng) -> bool {
    let logs = log_pages(image);
    let head = logs.iter().max_by_key(|(_, s)| *s).map(|&(p, _)| p);
    let any_log = |rng: &mut Rng| match logs.len() {
        0 => rng.below(PAGES as u64) as usize,
        n => logs[rng.below(n as u64) as usize].0,
    };
    let written: Vec<usize> = (0..LEN).filter(|&i| image[i] != 0xff).collect();
    let any_written = |rng: &mut Rng| match written.len() {
        0 => rng.below(LEN as u64) as usize,
        n => written[rng.below(n as u64) as usize],
    };
    match kind {
        Damage::BitFlips => {
            for _ in 0..1 + rng.below(3) {
                let at = any_written(rng);
                image[at] ^= 1 << rng.below(8);
            }
            true
        }
        Damage::RandomBytes => {
            for _ in 0..1 + rng.below(4) {
                let at = any_written(rng);
                image[at] = rng.byte();
            }
            true
        }
        Damage::ZeroedPage | Damage::ErasedPage | Damage::RandomPage => {
            let p = rng.below(PAGES as u64) as usize;
            for b in &mut image[p * PS..(p + 1) * PS] {
                *b = match kind {
                    Damage::ZeroedPage => 0,
                    Damage::ErasedPage => 0xff,
                    _ => rng.byte(),
                };
            }
            kind != Damage::ErasedPage && Some(p) != head
        }
        Damage::AllZero => {
            image.fill(0);
            true
        }
        Damage::AllRandom => {
            image.iter_mut().for_each(|b| *b = rng.byte());
            true
        }
        Damage::GarbageHeader => {
            let mut traced = true;
            for _ in 0..1 + rng.below(2) {
                let p = any_log(rng);
                // The newest page's header in garbage is seen through its records; with
                // at most one (the first is hit too), it reads as a page whose erase was
                // cut short.
                traced &= Some(p) != head || written_end(image, p) > HDR_MAX + 48;
                for b in &mut image[p * PS..p * PS + HDR_MAX] {
                    *b = rng.byte();
                }
            }
            traced
        }
        Damage::RandomBody => {
            let p = any_log(rng);
            for b in &mut image[p * PS + HDR_MAX..(p + 1) * PS] {
                *b = rng.byte();
            }
            true
        }
        Damage::PageCopied => {
            let from = rng.below(PAGES as u64) as usize;
            let to = (from + 1 + rng.below(PAGES as u64 - 1) as usize) % PAGES;
            let src = image[from * PS..(from + 1) * PS].to_vec();
            image[to * PS..(to + 1) * PS].copy_from_slice(&src);
            // A free page copied over the newest one looks like a page never opened.
            logs.iter().any(|&(p, _)| p == from) || Some(to) != head
        }
        Damage::PagesSwapped => {
            let a = rng.below(PAGES as u64) as usize;
            let b = (a + 1 + rng.below(PAGES as u64 - 1) as usize) % PAGES;
            for i in 0..PS {
                image.swap(a * PS + i, b * PS + i);
            }
            true
        }
        Damage::ErasedTail | Damage::ZeroedTail => {
            let Some(h) = head else { return true };
            let end = written_end(image, h);
            let from = HDR_MAX + rng.below(end.saturating_sub(HDR_MAX) as u64) as usize;
            let fill = if kind == Damage::ErasedTail { 0xff } else { 0 };
            image[h * PS + from..(h + 1) * PS].fill(fill);
            kind == Damage::ZeroedTail
        }
        Damage::BitDecay => {
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(LEN as u64) as usize;
                image[at] &= !(1 << rng.below(8));
            }
            true
        }
        Damage::PartBFlip | Damage::PartAFlip => {
            let p = any_log(rng);
            let (from, len) = if kind == Damage::PartAFlip {
                (0, 8)
            } else {
                (8, 9)
            };
            let at = p * PS + from + rng.below(len) as usize;
            image[at] ^= 1 << rng.below(8);
            true
        }
        Damage::ErasedHole => {
            let p = any_log(rng);
            let end = written_end(image, p);
            let at = HDR_MAX + rng.below(end.saturating_sub(HDR_MAX) as u64) as usize;
            let at = at / WS * WS;
            let hole_end = (at + 8).min(PS);
            image[p * PS + at..p * PS + hole_end].fill(0xff);
            // A hole that reaches the page's last written byte is an erased tail.
            hole_end < end
        }
    }
}

/// LEB128 varint at `at`: value and length (0 when it does not end in 10 bytes).
fn varint(b: &[u8], at: usize) -> (u64, usize) {
    let mut v = 0u64;
    for i in 0..10 {
        let Some(&x) = b.get(at + i) else { break };
        v |= u64::from(x & 0x7f) << (7 * i);
        if x & 0x80 == 0 {
            return (v, i + 1);
        }
    }
    (0, 0)
}

/// Where the last record of page `p` lies (start, end), walking its records as the format
/// lays them out (test-side, on the undamaged image).
fn last_record(image: &[u8], p: usize) -> Option<(usize, usize)> {
    let pg = &image[p * PS..(p + 1) * PS];
    if pg[0] != b'T' || pg[1] != 3 {
        return None;
    }
    let (_, tl) = varint(pg, 12);
    let mut off = 8 + (4 + tl + 4).div_ceil(WS) * WS;
    let mut last = None;
    while off + 5 <= PS && pg[off] != 0xff {
        let tag = pg[off];
        let ty = tag >> 6;
        let mut n = 1;
        let (mut klen, mut vlen) = (0, 0);
        if ty <= 1 {
            // Key varint: length of the key's rest << 1 | the `:1:` bit.
            let (k, l) = varint(pg, off + n);
            klen = (k >> 1) as usize;
            n += l;
        }
        if ty == 0 {
            let (v, l) = varint(pg, off + n);
            vlen = v as usize;
            n += l;
        }
        for bit in [0x08, 0x04] {
            if tag & bit != 0 {
                n += varint(pg, off + n).1;
            }
        }
        let size = (n + klen + vlen + 4).div_ceil(WS) * WS;
        if off + size > PS {
            break;
        }
        last = Some((off, off + size));
        off += size;
    }
    last
}

/// True when small damage (a few bytes) touches the last record of a page: a length field
/// made longer, or a hole in it, then reads as a record a power cut tore (nothing follows
/// it to tell), so the older value of its keys may come back without a trace.
fn may_read_torn(before: &[u8], after: &[u8]) -> bool {
    let diff: Vec<usize> = (0..LEN).filter(|&i| before[i] != after[i]).collect();
    diff.len() <= 8
        && diff.iter().any(|&i| {
            let p = i / PS;
            last_record(before, p).is_some_and(|(s, e)| (s..e).contains(&(i % PS)))
        })
}

#[derive(Default, Clone)]
struct Row {
    images: u64,
    traced: u64,
    refused: u64,
    keys: u64,
    lost: u64,
    stale: u64,
    stale_untraced: u64,
    lost_after_writes: u64,
    invented: u64,
    resurrected: u64,
    first_failure: Option<String>,
}

/// Opens a damaged image, checks it and returns what it found.
fn check(img: &Image, kind: Damage, seed: u64, row: &mut Row) {
    let mut rng = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
    let mut bytes = img.bytes.clone();
    let traced = damage(kind, &mut bytes, &mut rng) && !may_read_torn(&img.bytes, &bytes);
    let ctx = format!("{kind:?} seed {seed} {:?} {:?}", img.kind, img.policy);
    let debug = std::env::var("TICKCACHE_DAMAGE_ONLY").is_ok();
    if debug {
        let changed: Vec<usize> = (0..LEN).filter(|&i| bytes[i] != img.bytes[i]).collect();
        eprintln!(
            "pages before {:?} after {:?}",
            log_pages(&img.bytes),
            log_pages(&bytes)
        );
        eprintln!(
            "changed {} bytes, first {:?}",
            changed.len(),
            &changed[..changed.len().min(8)]
        );
        for p in 0..PAGES {
            eprintln!("page {p} written to {}", written_end(&img.bytes, p));
        }
    }
    row.images += 1;
    row.traced += u64::from(traced);
    let mut flash = flash_of(&bytes);
    let clock = ManualClock::new(1000);
    let first = match open_as(img.kind, &mut flash, img.policy, &clock) {
        Ok(mut p) => fstate(&mut p),
        Err(FlashError::Corrupted) => {
            row.refused += 1;
            return;
        }
        Err(e) => panic!("{ctx}: open: {e:?}"),
    };
    let mut keys: Vec<&Vec<u8>> = img.truth.keys().chain(first.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        row.keys += 1;
        let (want, got) = (img.truth.get(k), first.get(k));
        if want == got {
            continue;
        }
        let Some(got) = got else {
            row.lost += 1;
            continue;
        };
        if !img.history.get(k).is_some_and(|h| h.contains(got)) {
            row.invented += 1;
            row.first_failure.get_or_insert_with(|| {
                format!(
                    "{ctx}: {:?} = {got:?}, never written",
                    String::from_utf8_lossy(k)
                )
            });
        } else if traced {
            row.stale += 1;
            row.first_failure.get_or_insert_with(|| {
                format!(
                    "{ctx}: {:?} = {got:?}, stale (latest acknowledged {want:?})",
                    String::from_utf8_lossy(k)
                )
            });
        } else {
            row.stale_untraced += 1;
        }
    }

    // Writes after the damaged open are kept, and nothing dropped comes back.
    let mut expect = first.clone();
    let mut fresh = Vec::new();
    {
        let mut cache = open_as(img.kind, &mut flash, img.policy, &clock)
            .unwrap_or_else(|e| panic!("{ctx}: reopen: {e:?}"));
        assert_eq!(fstate(&mut cache), first, "{ctx}: a second open differs");
        for i in 0..3u32 {
            let name = format!("k{}", rng.below(NAMES));
            let v = (0x8000_0000u32 + i).to_le_bytes().to_vec();
            match call!(cache, |c| c.set_raw(name.as_str(), &v, Timeout::Never)) {
                Ok(()) => {
                    expect.insert(made(&name, 1), v.clone());
                    fresh.retain(|(k, _)| *k != made(&name, 1));
                    fresh.push((made(&name, 1), v));
                }
                Err(Error::StorageFull) => {
                    expect.remove(&made(&name, 1));
                    fresh.retain(|(k, _)| *k != made(&name, 1));
                }
                Err(e) => panic!("{ctx}: write after a damaged open: {e:?}"),
            }
        }
        if rng.below(2) == 0 {
            let name = format!("k{}", rng.below(NAMES));
            call!(cache, |c| c.delete(name.as_str())).expect("delete");
            expect.remove(&made(&name, 1));
            fresh.retain(|(k, _)| *k != made(&name, 1));
        }
        call!(cache, |c| c.close()).unwrap_or_else(|e| panic!("{ctx}: close: {e:?}"));
    }
    let again = fstate(
        &mut open_as(img.kind, &mut flash, img.policy, &clock)
            .unwrap_or_else(|e| panic!("{ctx}: {e:?}")),
    );
    if debug {
        eprintln!(
            "truth {:?}\nfirst {:?}\nfresh {:?}\nagain {:?}",
            img.truth, first, fresh, again
        );
        eprintln!("pages at the end {:?}", log_pages(flash.bytes()));
    }
    for (k, v) in &again {
        if expect.get(k) != Some(v) {
            row.resurrected += 1;
            row.first_failure.get_or_insert_with(|| {
                format!(
                    "{ctx}: {:?} = {v:?} came back or changed after writes",
                    String::from_utf8_lossy(k)
                )
            });
        }
    }
    for (k, v) in &fresh {
        assert_eq!(
            again.get(k),
            Some(v),
            "{ctx}: a write after the damaged open was lost"
        );
    }
    row.lost_after_writes += expect.keys().filter(|k| !again.contains_key(*k)).count() as u64;
}

#[test]
fn damaged_images_never_serve_stale_or_invented_values() {
    for front in flash_front::BOTH {
        damaged_images(front);
    }
}

fn damaged_images(front: Kind) {
    let full = std::env::var("TICKCACHE_DAMAGE").is_ok_and(|v| v == "full");
    let (bases, per_kind) = if full { (64, 2000) } else { (8, 100) };
    let mut images = Vec::new();
    for seed in 0..bases {
        images.push(workload(front, Policy::WriteThrough, seed));
        images.push(workload(
            front,
            Policy::WriteBack { max_dirty: 4 },
            seed + 1000,
        ));
    }
    let mut rows = Vec::new();
    for (ki, &kind) in KINDS.iter().enumerate() {
        let mut row = Row::default();
        for i in 0..per_kind {
            let seed = (ki as u64) << 32 | i as u64;
            if std::env::var("TICKCACHE_DAMAGE_ONLY").is_ok_and(|s| s != seed.to_string()) {
                continue;
            }
            let img = &images[i % images.len()];
            check(img, kind, seed, &mut row);
        }
        rows.push((kind, row));
    }
    println!();
    println!("{front:?} front end:");
    println!(
        "| damage | images | with a trace | opens refused | keys checked | lost | stale | stale, no trace | lost after writes |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (kind, r) in &rows {
        println!(
            "| {kind:?} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.images,
            r.traced,
            r.refused,
            r.keys,
            r.lost,
            r.stale,
            r.stale_untraced,
            r.lost_after_writes
        );
    }
    for (_, r) in &rows {
        if let Some(f) = &r.first_failure {
            println!("first failure: {f}");
        }
    }
    for (kind, r) in &rows {
        assert_eq!(
            (r.invented, r.stale, r.resurrected),
            (0, 0, 0),
            "{kind:?}: values never written, stale values after damage with a trace, values \
             back after writes; first: {}",
            r.first_failure.as_deref().unwrap_or("")
        );
    }
}

type Small = MockFlash<4, 1024, 4>;

fn set_all(flash: &mut Small, pairs: &[(&str, &[u8])]) {
    let clock = ManualClock::new(1000);
    let p =
        Persistent::<_, 16, 24, 16>::open(&mut *flash, 0..4096, Table::new(), Policy::WriteThrough)
            .expect("open");
    let mut cache = p.into_cache(&clock, Config::new());
    for (k, v) in pairs {
        cache.set_raw(*k, v, Timeout::Never).expect("set");
    }
}

#[test]
fn erase_all_formats_the_region() {
    let mut flash = Small::new();
    set_all(&mut flash, &[("a", b"1"), ("b", b"22"), ("a", b"333")]);
    let counts: Vec<u32> = (0..4).map(|p| flash.erases(p)).collect();
    {
        let clock = ManualClock::new(1000);
        let mut p = Persistent::<_, 16, 24, 16>::open(
            &mut flash,
            0..4096,
            Table::new(),
            Policy::WriteThrough,
        )
        .expect("open");
        let before = p.wear().expect("wear");
        p.erase_all().expect("erase_all");
        assert_eq!(p.len(), 0);
        assert_eq!(p.pages_used(), 0);
        let after = p.wear().expect("wear");
        assert_eq!(after.unknown, 0);
        assert!(
            after.min > before.min || before.unknown > 0,
            "{before:?} {after:?}"
        );
        let mut cache = p.into_cache(&clock, Config::new());
        assert_eq!(cache.with_raw("a", |b, _| b.to_vec()).unwrap(), None);
        cache.set_raw("c", b"4", Timeout::Never).unwrap();
    }
    for (p, c) in counts.iter().enumerate() {
        assert_eq!(flash.erases(p), c + 1, "page {p} erased once");
    }
    let p =
        Persistent::<_, 16, 24, 16>::open(&mut flash, 0..4096, Table::new(), Policy::WriteThrough)
            .expect("open");
    let s: Vec<(Vec<u8>, Vec<u8>)> = {
        let mut v = Vec::new();
        p.table()
            .for_each_lru(|k, val, _, _| v.push((k.to_vec(), val.to_vec())));
        v
    };
    assert_eq!(s, vec![(b":1:c".to_vec(), b"4".to_vec())]);
}

/// A power cut at every event of `erase_all` never brings back an older value.
#[test]
fn erase_all_cut_anywhere_serves_no_stale_value() {
    let mut base = Small::new();
    let mut latest: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    {
        let clock = ManualClock::new(1000);
        let p = Persistent::<_, 16, 24, 16>::open(
            &mut base,
            0..4096,
            Table::new(),
            Policy::WriteThrough,
        )
        .expect("open");
        let mut cache = p.into_cache(&clock, Config::new());
        // Several rounds over 10 keys: the log spans pages and compacts.
        for round in 0..30u32 {
            for k in 0..10u32 {
                let v = (round * 10 + k).to_le_bytes();
                cache
                    .set_raw(format!("k{k}").as_str(), &v, Timeout::Never)
                    .unwrap();
                latest.insert(format!(":1:k{k}").into_bytes(), v.to_vec());
            }
        }
    }
    let mut events = 0;
    loop {
        let mut flash = base.clone();
        let mut p = Persistent::<_, 16, 24, 16>::open(
            &mut flash,
            0..4096,
            Table::new(),
            Policy::WriteThrough,
        )
        .expect("open");
        p.flash_mut().cut_after(events);
        let done = p.erase_all().is_ok();
        flash.power_on();
        let p = Persistent::<_, 16, 24, 16>::open(
            &mut flash,
            0..4096,
            Table::new(),
            Policy::WriteThrough,
        )
        .expect("open after a cut erase_all");
        p.table().for_each_lru(|k, v, _, _| {
            assert_eq!(
                latest.get(k).map(Vec::as_slice),
                Some(v),
                "cut after {events} events"
            );
        });
        if done {
            assert_eq!(p.len(), 0);
            break;
        }
        events += 1;
    }
    assert!(events >= 4);
}

/// CRC-32C, to build headers by hand.
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

/// A log page header (4-byte words): part A with erase count 1, part B with `seq` and base
/// time 0.
fn header(seq: u32) -> Vec<u8> {
    let mut a = vec![b'T', 3, 1, 0, 0, 0];
    let crc = crc32c(&a) as u16;
    a.extend_from_slice(&crc.to_le_bytes());
    let mut b = seq.to_le_bytes().to_vec();
    b.push(0);
    let mut with_tag = b"B".to_vec();
    with_tag.extend_from_slice(&b);
    b.extend_from_slice(&crc32c(&with_tag).to_le_bytes());
    a.extend_from_slice(&b);
    a
}

#[test]
fn open_or_format_formats_a_log_that_cannot_continue() {
    // The head's sequence number is the last usable one, the head is sealed (damaged after
    // its header) and a copy of it follows: the drop must be written in a new page, which
    // would need the next sequence number.
    let mut flash = Small::new();
    let mut page = header(u32::MAX - 1);
    page.resize(20, 0xff); // part B padded to the 4-byte word
    page.push(0); // where the first record would start
    for p in 0..2 {
        for (i, &b) in page.iter().enumerate() {
            flash.corrupt(p * 1024 + i, b);
        }
    }
    let mut copy = flash.clone();
    let r =
        Persistent::<_, 16, 24, 16>::open(&mut copy, 0..4096, Table::new(), Policy::WriteThrough);
    assert_eq!(r.err(), Some(FlashError::Corrupted));
    let clock = ManualClock::new(1000);
    let p = Persistent::<_, 16, 24, 16>::open_or_format(
        &mut flash,
        0..4096,
        Table::new(),
        Policy::WriteThrough,
    )
    .expect("open_or_format");
    assert_eq!(p.len(), 0);
    let mut cache = p.into_cache(&clock, Config::new());
    cache.set_raw("a", b"1", Timeout::Never).unwrap();
    let p =
        Persistent::<_, 16, 24, 16>::open(&mut flash, 0..4096, Table::new(), Policy::WriteThrough)
            .expect("open after format");
    assert_eq!(p.len(), 1);
}

#[test]
fn records_a_smaller_configuration_cannot_hold_are_dropped() {
    let mut flash = Small::new();
    set_all(
        &mut flash,
        &[
            ("a", b"12"),        // fits V = 4
            ("a", b"123456789"), // does not: "a" must not come back as "12"
            ("b", b"1"),
            ("longer-key-name", b"1"), // key does not fit K = 8
            ("c", b"123456789"),
            ("c", b"3"), // the latest fits
        ],
    );
    let p =
        Persistent::<_, 16, 8, 4>::open(&mut flash, 0..4096, Table::new(), Policy::WriteThrough)
            .expect("a smaller configuration opens");
    let mut got = Vec::new();
    p.table()
        .for_each_lru(|k, v, _, _| got.push((k.to_vec(), v.to_vec())));
    got.sort();
    assert_eq!(
        got,
        vec![
            (b":1:b".to_vec(), b"1".to_vec()),
            (b":1:c".to_vec(), b"3".to_vec())
        ]
    );
    // Writing and compacting with the smaller configuration keeps working.
    let clock = ManualClock::new(1000);
    let mut cache = p.into_cache(&clock, Config::new());
    for i in 0..200u32 {
        cache
            .set_raw("b", &i.to_le_bytes(), Timeout::Never)
            .unwrap();
    }
    assert_eq!(cache.with_raw("a", |b, _| b.to_vec()).unwrap(), None);
    assert_eq!(
        cache.with_raw("c", |b, _| b.to_vec()).unwrap(),
        Some(b"3".to_vec())
    );
}

/// One bit flipped in the length of a page's last record makes it claim more bytes than
/// were written, as a record a power cut tore would: flipping each header bit back finds
/// the whole record, so the damage is seen and the key's older value does not come back.
#[test]
fn a_flipped_length_bit_in_the_last_record_is_damage() {
    for bit in 0..7 {
        let mut flash = Mock::new();
        {
            let clock = ManualClock::new(1000);
            let p = open(&mut flash, Policy::WriteThrough).expect("open");
            let mut cache = p.into_cache(&clock, Config::new());
            cache.set_raw("a", b"old", Timeout::Never).unwrap();
            cache.set_raw("a", b"new", Timeout::Never).unwrap();
        }
        let mut image = flash.bytes().to_vec();
        let (start, _) = last_record(&image, 0).expect("a record");
        // Tag, key (one byte for ":1:a"), value length: the third byte.
        let at = start + 2;
        if image[at] & (1 << bit) != 0 {
            continue; // only flips that lengthen the record
        }
        image[at] ^= 1 << bit;
        let mut damaged = flash_of(&image);
        let p = open(&mut damaged, Policy::WriteThrough).expect("open");
        let got = state(&p).get(&made("a", 1)).cloned();
        assert!(got.is_none(), "bit {bit}: {got:?}");
    }
}
