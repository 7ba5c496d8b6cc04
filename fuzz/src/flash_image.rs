//! The `flash_image` target: arbitrary flash contents (raw bytes, or a valid log written by a
//! short workload, possibly cut short by a power cut, then patched byte by byte) opened as a
//! persistent cache, used, closed and opened again.
//!
//! Checked: opening never panics or hangs (a hang is a libFuzzer timeout); when it succeeds,
//! writing through the cache never makes the flash refuse a write (a word written twice
//! without an erase, or out of bounds); after `close` the image opens again, every key
//! written since the first open reads back as last written (or as deleted), and every other
//! live entry was already there, unchanged, at the first open (nothing is invented).
//!
//! When the image is a workload's log and the patches only flip a few bits (at most four
//! bytes, one bit each) away from the newest page and from the last record of each page,
//! the damage always leaves a trace (CRC-32C sees up to five flipped bits in a record, and
//! a damaged header breaks the chain of pages): then no workload key may hold a value other
//! than the one the undamaged image holds (a lost key is fine, a stale one is not).

use std::collections::BTreeMap;

use arbitrary::{Arbitrary, Unstructured};
use tickcache::flash::{FlashError, MockError, MockFlash, Persistent, Policy};
use tickcache::{Cache, Config, Error, Key, Kind, ManualClock, Table, Timeout};

/// Decodes `data` as the target does and checks it (for regression tests).
pub fn run_bytes(data: &[u8]) {
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        run(&input);
    }
}

/// One fuzz case.
#[derive(Arbitrary, Debug, Clone)]
pub struct Input {
    /// The flash's geometry.
    pub geometry: Geometry,
    /// Where the image comes from.
    pub base: Base,
    /// Bytes overwritten afterwards: offset (modulo the flash size) and value.
    pub patches: Vec<(u16, u8)>,
    /// Writes made after opening.
    pub writes: Vec<Write>,
}

/// Flash geometry: 6 pages of 256 bytes (512 for 16- and 32-byte words, 1,024 for 64),
/// written in words of `WRITE_SIZE` bytes and read in units of `READ_SIZE` bytes. Eight
/// variants: the top three bits of an input's fourth byte pick one (the first four bytes are
/// a little-endian `u32` scaled to the variant count; `0x40` picks `W4`).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Geometry {
    /// Written and read a byte at a time.
    W1,
    /// 2-byte words, reads of 4.
    W2R4,
    /// 4-byte words.
    W4,
    /// 4-byte words, reads of 4.
    W4R4,
    /// 8-byte words, reads of 32.
    W8R32,
    /// 16-byte words, 512-byte pages.
    W16,
    /// 32-byte words (STM32H7), reads of 32, 512-byte pages.
    W32R32,
    /// 64-byte words, reads of 4, 1,024-byte pages.
    W64R4,
}

/// The image before patches.
#[derive(Arbitrary, Debug, Clone)]
pub enum Base {
    /// Erased flash.
    Blank,
    /// These bytes from offset 0 (the rest erased).
    Raw(Vec<u8>),
    /// The log a workload writes, cut after `cut` flash events when given.
    Workload {
        /// The workload.
        ops: Vec<Step>,
        /// Power cut after this many events.
        cut: Option<u16>,
    },
}

/// A workload step.
#[derive(Arbitrary, Debug, Clone)]
pub enum Step {
    /// `set_raw` of up to 12 bytes under one of 16 keys.
    Put(u8, Vec<u8>, bool),
    /// `set` of an integer.
    Int(u8, i32),
    /// `delete`.
    Delete(u8),
    /// `clear`.
    Clear,
    /// Moves the clock by this many seconds.
    Advance(u8),
}

/// A write after opening, under one of 4 keys of its own.
#[derive(Arbitrary, Debug, Clone)]
pub enum Write {
    /// `set_raw` of up to 8 bytes, never expiring.
    Put(u8, Vec<u8>),
    /// `delete`.
    Delete(u8),
}

const PAGES: usize = 6;
const N: usize = 16;
const K: usize = 24;
const V: usize = 16;

type Flash<const PS: usize, const WS: usize, const RS: usize> = MockFlash<PAGES, PS, WS, RS>;
type Back<'f, const PS: usize, const WS: usize, const RS: usize> =
    Persistent<&'f mut Flash<PS, WS, RS>, N, K, V>;
type Opened<'f, const PS: usize, const WS: usize, const RS: usize> =
    Cache<&'f ManualClock, Back<'f, PS, WS, RS>, K>;
type Fe = FlashError<MockError>;

fn open<'f, const PS: usize, const WS: usize, const RS: usize>(
    flash: &'f mut Flash<PS, WS, RS>,
    clock: &'f ManualClock,
) -> Result<Opened<'f, PS, WS, RS>, Fe> {
    let p = Persistent::open(
        flash,
        0..(PAGES * PS) as u32,
        Table::new(),
        Policy::WriteThrough,
    )?;
    Ok(p.into_cache(clock, Config::new()))
}

/// Live entries: made key → bytes, kind, expiry.
type Contents = BTreeMap<Vec<u8>, (Vec<u8>, Kind, u64)>;

fn contents<const PS: usize, const WS: usize, const RS: usize>(
    cache: &Opened<'_, PS, WS, RS>,
) -> Contents {
    let now = cache.now();
    let mut out = Contents::new();
    cache.backend().table().for_each_lru(|k, v, kind, e| {
        if e > now {
            out.insert(k.to_vec(), (v.to_vec(), kind, e));
        }
    });
    out
}

/// A flash error the engine must never cause: the mock refusing a write.
fn misuse(e: &Error<Fe>) -> bool {
    matches!(
        e,
        Error::Backend(FlashError::Flash(
            MockError::DoubleWrite | MockError::NotAligned | MockError::OutOfBounds
        ))
    )
}

/// The image before patches.
fn build<const PS: usize, const WS: usize, const RS: usize>(base: &Base) -> Vec<u8> {
    match base {
        Base::Blank => vec![0xff; PAGES * PS],
        Base::Raw(bytes) => {
            let mut image = vec![0xff; PAGES * PS];
            let n = bytes.len().min(image.len());
            image[..n].copy_from_slice(&bytes[..n]);
            image
        }
        Base::Workload { ops, cut } => {
            let mut flash = Flash::<PS, WS, RS>::new();
            let clock = ManualClock::new(1000);
            let Ok(mut cache) = open(&mut flash, &clock) else {
                panic!("a blank flash opens");
            };
            if let Some(n) = cut {
                cache.backend_mut().flash_mut().cut_after(u64::from(*n));
            }
            for step in ops.iter().take(64) {
                let name = |n: &u8| format!("w{}", n % 16);
                let r = match step {
                    Step::Put(n, b, never) => {
                        let t = if *never {
                            Timeout::Never
                        } else {
                            Timeout::Secs(30)
                        };
                        let b: Vec<u8> = b.iter().copied().take(12).collect();
                        cache.set_raw(name(n).as_str(), &b, t)
                    }
                    Step::Int(n, i) => cache.set(name(n).as_str(), i, Timeout::Never),
                    Step::Delete(n) => cache.delete(name(n).as_str()).map(drop),
                    Step::Clear => cache.clear(),
                    Step::Advance(s) => {
                        clock.advance_secs(u64::from(*s));
                        Ok(())
                    }
                };
                match r {
                    Err(Error::Backend(FlashError::Flash(MockError::PowerOff))) => break,
                    Err(e) => panic!("workload {step:?}: {e:?}"),
                    Ok(()) => {}
                }
            }
            flash.bytes().to_vec()
        }
    }
}

/// A flash holding `image`: a word that reads all 0xFF is erased, any other is written
/// (the state a real part is in: it cannot tell an erased word from one programmed with
/// ones, and the engine never programs a whole word of ones where it could be taken for
/// free space).
fn flash_of<const PS: usize, const WS: usize, const RS: usize>(image: &[u8]) -> Flash<PS, WS, RS> {
    let mut flash = Flash::new();
    for (w, word) in image.chunks(WS).enumerate() {
        if word.iter().any(|&b| b != 0xff) {
            for (i, &b) in word.iter().enumerate() {
                flash.corrupt(w * WS + i, b);
            }
        }
    }
    flash
}

/// Runs one case.
pub fn run(input: &Input) {
    match input.geometry {
        Geometry::W1 => run_with::<256, 1, 1>(input),
        Geometry::W2R4 => run_with::<256, 2, 4>(input),
        Geometry::W4 => run_with::<256, 4, 1>(input),
        Geometry::W4R4 => run_with::<256, 4, 4>(input),
        Geometry::W8R32 => run_with::<256, 8, 32>(input),
        Geometry::W16 => run_with::<512, 16, 1>(input),
        Geometry::W32R32 => run_with::<512, 32, 32>(input),
        Geometry::W64R4 => run_with::<1024, 64, 4>(input),
    }
}

/// Every entry held, expired or not: made key → bytes and kind.
fn held<const PS: usize, const WS: usize, const RS: usize>(
    cache: &Opened<'_, PS, WS, RS>,
) -> BTreeMap<Vec<u8>, (Vec<u8>, Kind)> {
    let mut out = BTreeMap::new();
    cache.backend().table().for_each_lru(|k, v, kind, _| {
        out.insert(k.to_vec(), (v.to_vec(), kind));
    });
    out
}

/// True when `damaged` differs from `image` by at most four bytes, each in one bit, none in
/// the page holding the highest sequence number nor within the last 128 bytes written in
/// its page (where the last record is, which a flip can make look torn).
fn traced_flips<const PS: usize, const WS: usize>(image: &[u8], damaged: &[u8]) -> bool {
    let a_len = WS.max(8);
    let seq = |p: usize| {
        let at = p * PS + a_len;
        let b = &image[at..at + 4];
        let s = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        (image[p * PS] == b'T' && s != u32::MAX).then_some(s)
    };
    let head = (0..PAGES)
        .filter_map(|p| seq(p).map(|s| (s, p)))
        .max()
        .map(|(_, p)| p);
    let end = |p: usize| {
        image[p * PS..(p + 1) * PS]
            .iter()
            .rposition(|&b| b != 0xff)
            .map_or(0, |i| i + 1)
    };
    let diff: Vec<usize> = (0..image.len())
        .filter(|&i| image[i] != damaged[i])
        .collect();
    !diff.is_empty()
        && diff.len() <= 4
        && diff.iter().all(|&i| {
            let p = i / PS;
            (image[i] ^ damaged[i]).count_ones() == 1 && Some(p) != head && i % PS + 128 < end(p)
        })
}

fn run_with<const PS: usize, const WS: usize, const RS: usize>(input: &Input) {
    let built = build::<PS, WS, RS>(&input.base);
    let mut image = built.clone();
    for &(at, byte) in input.patches.iter().take(64) {
        image[usize::from(at) % (PAGES * PS)] = byte;
    }
    let truth = match input.base {
        Base::Workload { .. } if traced_flips::<PS, WS>(&built, &image) => {
            let mut flash = flash_of::<PS, WS, RS>(&built);
            let clock = ManualClock::new(1000);
            open(&mut flash, &clock).ok().map(|c| held(&c))
        }
        _ => None,
    };
    let mut flash = flash_of::<PS, WS, RS>(&image);
    let clock = ManualClock::new(1000);
    let Ok(mut cache) = open(&mut flash, &clock) else {
        return;
    };
    if let Some(truth) = &truth {
        for (made, entry) in held(&cache) {
            assert_eq!(
                truth.get(&made),
                Some(&entry),
                "{:?}: a stale value after bit flips that leave a trace",
                String::from_utf8_lossy(&made)
            );
        }
    }
    let before = contents(&cache);
    // Expected state of the keys written here: Some(bytes), or None when deleted.
    let mut written: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    let mut unsure: Vec<Vec<u8>> = Vec::new();
    for w in input.writes.iter().take(16) {
        let (n, r, expect) = match w {
            Write::Put(n, b) => {
                let b: Vec<u8> = b.iter().copied().take(8).collect();
                let name = format!("x{}", n % 4);
                let r = cache.set_raw(name.as_str(), &b, Timeout::Never);
                (name, r, Some(b))
            }
            Write::Delete(n) => {
                let name = format!("x{}", n % 4);
                let r = cache.delete(name.as_str()).map(drop);
                (name, r, None)
            }
        };
        let made = format!(":1:{n}").into_bytes();
        match r {
            Ok(()) => {
                written.insert(made.clone(), expect);
                unsure.retain(|k| *k != made);
            }
            Err(e) => {
                assert!(!misuse(&e), "{w:?} on an opened image: {e:?}");
                // Refused (the image is corrupt or full): the key's state is unknown.
                written.remove(&made);
                unsure.push(made);
            }
        }
    }
    if let Err(e) = cache.close() {
        assert!(!misuse(&e), "close: {e:?}");
    }

    let clock = ManualClock::new(1000);
    let cache = match open(&mut flash, &clock) {
        Ok(c) => c,
        Err(e) => panic!("an image that opened and was written to no longer opens: {e:?}"),
    };
    let after = contents(&cache);
    for (made, want) in &written {
        let got = after.get(made).map(|(b, kind, _)| (b.clone(), *kind));
        let want = want.clone().map(|b| (b, Kind::Bytes));
        assert_eq!(
            got,
            want,
            "{:?} after reopening",
            String::from_utf8_lossy(made)
        );
    }
    for (made, entry) in &after {
        if written.contains_key(made) || unsure.contains(made) {
            continue;
        }
        assert_eq!(
            before.get(made),
            Some(entry),
            "{:?} appeared or changed without being written",
            String::from_utf8_lossy(made)
        );
    }
    // The keys read through the API agree with the table.
    let mut cache = cache;
    for made in written.keys() {
        let name = &made[3..];
        let got = cache
            .with_raw(Key::bytes(name), |b, _| b.to_vec())
            .unwrap_or_else(|e| panic!("read of {name:?}: {e:?}"));
        assert_eq!(got, after.get(made).map(|(b, _, _)| b.clone()));
    }
}
