//! Power-cut sweep: a seeded random workload through the `Cache` API on a mock NOR flash
//! that cuts the power again and again; after each cut the image is reopened and checked
//! against a model of the acknowledged state, then the workload goes on.
//!
//! A run cuts the power every `PERIOD` flash events (an event is one byte written or one
//! erase), starting at event `phase`; the sweep runs every phase in `0..PERIOD`, so each
//! byte of a write and each erase is cut in turn. Write sizes 1, 2, 4, 8, 16, 32 and 64 are
//! swept under both policies: 1, 4 (with reads of 64 bytes) and 16 at every phase, the others
//! (with read sizes 4 and 32) at every third phase. `TICKCACHE_SWEEP=full` runs a longer workload, more seeds and a
//! longer period, every phase for every write size.
//!
//! An open writes when it repairs what a cut left (erasing the page a cut compaction was
//! filling, or stray pages; a clear record for a lost head; a free page's header): at each
//! reopen that writes, the sweep also cuts a copy of the image at every event of that open
//! and opens it again, which must find the same side of the interrupted operation as an
//! uncut open could. The stretch between two cuts varies with each reopen by up to a word,
//! so that cuts also land on erases, and right after them, for every write size (a fixed
//! stretch of whole words let them do so only for write size 1), and every sweep, blocking
//! or async, must have cut such opens.
//!
//! Both front ends run the sweep: the blocking `Persistent` through a `Cache`, and
//! `AsyncPersistent` through `AsyncSharedCache` on the async face of the same mock flash
//! (each flash call yielding once), every ninth to twenty-seventh phase of the blocking
//! one's (the log core is the same; the async path is slower to run in debug builds).
//!
//! Capacities keep the table below `MAX_ENTRIES` and the flash below its live capacity, so
//! no culling happens and the expected state never depends on read recency (after a
//! reboot, recency is the write order). Culling across reboots is tested in
//! `flash_persist.rs`.

use std::collections::HashMap;

use tickcache::flash::{FlashError, MockError, MockFlash, Policy};
use tickcache::{Error, Key, ManualClock, Table, Timeout, NEVER};

mod flash_front;
use flash_front::{Front, Kind, Rng};

const N: usize = 40;
const KC: usize = 24;
const VC: usize = 16;
const NAMES: usize = 16;
const RATE: u32 = 1000;
const DEFAULT_TIMEOUT: u64 = 300 * RATE as u64;

#[derive(Clone, Copy, Debug)]
enum Op {
    Set(usize, i32, i64, Option<u64>),
    Delete(usize, i32),
    Incr(usize, i32, i64),
    Touch(usize, i32, Option<u64>),
    Get(usize, i32),
    IncrVersion(usize, i32),
    Clear,
    Flush,
}

fn random_op(rng: &mut Rng) -> Op {
    let name = rng.below(NAMES as u64) as usize;
    let ver = 1 + rng.below(2) as i32;
    let timeout = |rng: &mut Rng| {
        if rng.below(10) < 3 {
            None
        } else {
            Some(1 + rng.below(40))
        }
    };
    match rng.below(100) {
        0..=34 => {
            let v = rng.below(2000) as i64 - 1000;
            Op::Set(name, ver, v, timeout(rng))
        }
        35..=46 => Op::Delete(name, ver),
        47..=58 => Op::Incr(name, ver, rng.below(7) as i64 - 3),
        59..=66 => Op::Touch(name, ver, timeout(rng)),
        67..=82 => Op::Get(name, ver),
        83..=92 => Op::IncrVersion(name, ver),
        93 => Op::Clear,
        _ => Op::Flush,
    }
}

fn made(name: usize, ver: i32) -> Vec<u8> {
    format!(":{ver}:k{name}").into_bytes()
}

fn expiry(now: u64, t: Option<u64>) -> u64 {
    match t {
        None => NEVER,
        Some(s) => now.saturating_add(s * RATE as u64).min(NEVER - 1),
    }
}

/// Made key → (value, expiry tick).
type Model = HashMap<Vec<u8>, (i64, u64)>;

#[derive(Debug, PartialEq)]
enum Answer {
    Unit,
    Bool(bool),
    Int(i64),
    Found(Option<i64>),
    NotFound,
}

/// Applies `op` to the model at cache time `now`; returns the answer the cache must give.
fn apply(m: &mut Model, op: Op, now: u64) -> Answer {
    let live = |m: &Model, k: &[u8]| m.get(k).copied().filter(|&(_, e)| e > now);
    match op {
        Op::Set(n, v, x, t) => {
            m.insert(made(n, v), (x, expiry(now, t)));
            Answer::Unit
        }
        Op::Delete(n, v) => {
            let k = made(n, v);
            let was = live(m, &k).is_some();
            m.remove(&k);
            Answer::Bool(was)
        }
        Op::Incr(n, v, d) => {
            let k = made(n, v);
            match live(m, &k) {
                Some((x, e)) => {
                    m.insert(k, (x + d, e));
                    Answer::Int(x + d)
                }
                None => {
                    m.remove(&k);
                    Answer::NotFound
                }
            }
        }
        Op::Touch(n, v, t) => {
            let k = made(n, v);
            match live(m, &k) {
                Some((x, _)) => {
                    m.insert(k, (x, expiry(now, t)));
                    Answer::Bool(true)
                }
                None => Answer::Bool(false),
            }
        }
        Op::Get(n, v) => {
            let k = made(n, v);
            let r = live(m, &k).map(|(x, _)| x);
            if r.is_none() {
                m.remove(&k);
            }
            Answer::Found(r)
        }
        Op::IncrVersion(n, v) => {
            let to_v = if v == 1 { 2 } else { 1 };
            let (from, to) = (made(n, v), made(n, to_v));
            match live(m, &from) {
                Some((x, _)) => {
                    m.remove(&from);
                    m.insert(to, (x, now + DEFAULT_TIMEOUT));
                    Answer::Int(i64::from(to_v))
                }
                None => {
                    m.remove(&from);
                    Answer::NotFound
                }
            }
        }
        Op::Clear => {
            m.clear();
            Answer::Unit
        }
        Op::Flush => Answer::Unit,
    }
}

fn live_at(m: &Model, now: u64) -> HashMap<Vec<u8>, (i64, u64)> {
    m.iter()
        .filter(|(_, &(_, e))| e > now)
        .map(|(k, &v)| (k.clone(), v))
        .collect()
}

fn decode_int(b: &[u8]) -> i64 {
    let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) {
        0xff
    } else {
        0
    };
    let mut le = [fill; 8];
    le[..b.len()].copy_from_slice(b);
    i64::from_le_bytes(le)
}

type Flash<const PG: usize, const PS: usize, const WS: usize, const RS: usize> =
    MockFlash<PG, PS, WS, RS>;
type Back<'c, 'f, const PG: usize, const PS: usize, const WS: usize, const RS: usize> =
    Front<'c, 'f, PG, PS, WS, RS, N, KC, VC>;

fn contents<const PG: usize, const PS: usize, const WS: usize, const RS: usize>(
    p: &mut Back<'_, '_, PG, PS, WS, RS>,
    now: u64,
) -> HashMap<Vec<u8>, (i64, u64)> {
    let mut out = HashMap::new();
    p.for_each(|k, v, e| {
        if e > now {
            out.insert(k.to_vec(), (decode_int(v), e));
        }
    });
    out
}

fn is_cut<T: std::fmt::Debug>(r: &Result<T, Error<FlashError<MockError>>>) -> bool {
    matches!(
        r,
        Err(Error::Backend(FlashError::Flash(MockError::PowerOff)))
    )
}

struct Stats {
    cuts: u64,
    applied: u64,
    /// Opens cut (at each event of each open that writes).
    open_cuts: u64,
}

/// An open writes when it repairs what a cut left (an erase of the page a cut compaction
/// was filling or of stray pages, a clear record for a lost head, the first part of a
/// free page's header). Opens a copy of `flash` to count those events, then, for each one,
/// cuts a fresh copy's open there and opens it again: the second open must find the state
/// of one side of the interrupted operation (`acked` or `pending`), as an uncut open does.
/// With `depth` 2 each image a cut open leaves goes through the same before it is opened:
/// the power cut twice in a row while the flash is repaired.
#[allow(clippy::too_many_arguments)]
fn cut_each_open_write<const PG: usize, const PS: usize, const WS: usize, const RS: usize>(
    kind: Kind,
    policy: Policy,
    depth: u32,
    flash: &Flash<PG, PS, WS, RS>,
    acked: &Model,
    pending: Option<&Model>,
    stats: &mut Stats,
    ctx: &str,
) {
    let range = 0..(PG * PS) as u32;
    let mut probe = flash.clone();
    let before = probe.events();
    let clock = ManualClock::new(RATE);
    drop(
        Front::<'_, '_, PG, PS, WS, RS, N, KC, VC>::open(
            kind,
            &mut probe,
            range.clone(),
            Table::new(),
            policy,
            &clock,
        )
        .expect("open"),
    );
    let writes = probe.events() - before;
    for cut in 0..writes {
        let mut f = flash.clone();
        f.cut_after(cut);
        let clock = ManualClock::new(RATE);
        let opened: Result<Back<'_, '_, PG, PS, WS, RS>, _> =
            Front::open(kind, &mut f, range.clone(), Table::new(), policy, &clock);
        let e = opened.err();
        assert_eq!(
            e,
            Some(FlashError::Flash(MockError::PowerOff)),
            "cut open {cut} at {ctx}"
        );
        f.power_on();
        if depth > 1 {
            let ctx = format!("{ctx}, after open cut {cut}");
            cut_each_open_write(kind, policy, depth - 1, &f, acked, pending, stats, &ctx);
        }
        let clock = ManualClock::new(RATE);
        let mut cache: Back<'_, '_, PG, PS, WS, RS> =
            Front::open(kind, &mut f, range.clone(), Table::new(), policy, &clock)
                .unwrap_or_else(|e| panic!("open after open cut {cut}: {e:?} at {ctx}"));
        let t = cache.now();
        let found = contents(&mut cache, t);
        assert!(
            found == live_at(acked, t) || pending.is_some_and(|p| found == live_at(p, t)),
            "open cut at event {cut} of {writes}, at {ctx}:\n found {found:?}\n before {:?}",
            live_at(acked, t)
        );
        stats.open_cuts += 1;
    }
}

/// One run: `ops` operations, the power cut every `period` events from `phase` on.
fn run<const PG: usize, const PS: usize, const WS: usize, const RS: usize>(
    kind: Kind,
    policy: Policy,
    seed: u64,
    ops: usize,
    period: u64,
    phase: u64,
    stats: &mut Stats,
) {
    let mut flash = Flash::<PG, PS, WS, RS>::new();
    let mut rng = Rng(seed | 1);
    let mut acked = Model::new();
    let mut pending: Option<Model> = None;
    let mut t_floor = 0u64;
    let mut t_ceiling = 0u64;
    let mut done = 0usize;
    let mut first = true;
    let mut reopens = 0u64;
    let ctx = |done: usize| {
        format!(
            "{kind:?} seed {seed} phase {phase} op {done} {policy:?} {PG} x {PS} B, WS {WS}, RS {RS}"
        )
    };
    while done < ops {
        flash.power_on();
        let clock = ManualClock::new(RATE);
        let range = 0..(PG * PS) as u32;
        if !first {
            cut_each_open_write(
                kind,
                policy,
                2,
                &flash,
                &acked,
                pending.as_ref(),
                stats,
                &ctx(done),
            );
        }
        let mut cache: Back<'_, '_, PG, PS, WS, RS> =
            Front::open(kind, &mut flash, range, Table::new(), policy, &clock)
                .unwrap_or_else(|e| panic!("open failed: {e:?} at {}", ctx(done)));
        let t = cache.now();
        if std::env::var("TC_TRACE").is_ok() {
            eprintln!("reopen at {t}, used {}", cache.pages_used());
        }
        assert!(
            t >= t_floor && t <= t_ceiling,
            "time {t} outside {t_floor}..={t_ceiling} at {}",
            ctx(done)
        );
        let found = contents(&mut cache, t);
        if found == live_at(&acked, t) {
            // The interrupted operation left no trace.
        } else if pending
            .as_ref()
            .is_some_and(|after| found == live_at(after, t))
        {
            acked = pending.take().unwrap_or_default();
            stats.applied += 1;
            if std::env::var("TC_TRACE").is_ok() {
                eprintln!("applied: {}", ctx(done));
            }
        } else {
            panic!(
                "recovered state matches neither side of the cut at {}:\n found {found:?}\n before {:?}\n after {:?}",
                ctx(done),
                live_at(&acked, t),
                pending.as_ref().map(|a| live_at(a, t))
            );
        }
        pending = None;
        t_floor = t;
        let mut current = acked.clone();
        let mut commits = cache.commits();
        // After a reopen the next cut comes `period` events later, plus an offset that
        // changes from one reopen to the next: events between two cuts are whole words
        // written plus erases, so with a fixed period a cut could only land on an erase,
        // or right after one, when the erases before it in that stretch have one residue
        // modulo `WS` (for `WS` 4, three of them).
        let next = period.saturating_add((phase + reopens) % WS as u64);
        cache
            .flash_mut()
            .cut_after(if first { phase } else { next });
        reopens += 1;
        first = false;
        // Run until the power goes.
        loop {
            if done >= ops {
                cache.flash_mut().power_on();
                call!(cache, |c| c.close()).expect("final close");
                acked = current.clone();
                break;
            }
            clock.advance(rng.below(2500));
            let op = random_op(&mut rng);
            let now = cache.now();
            t_ceiling = now;
            let mut after = current.clone();
            let expected = apply(&mut after, op, now);
            let key = |n: usize, _v: i32| format!("k{n}");
            let answer = match op {
                Op::Set(n, v, x, t) => {
                    let to = t.map_or(Timeout::Never, |s| Timeout::Secs(s as i64));
                    let name = key(n, v);
                    let r = call!(cache, |c| c.set(Key::new(&name).version(v), &x, to));
                    if is_cut(&r) {
                        Err(())
                    } else {
                        r.map(|_| Answer::Unit).map_err(|e| panic!("{e:?}"))
                    }
                }
                Op::Delete(n, v) => {
                    let name = key(n, v);
                    let r = call!(cache, |c| c.delete(Key::new(&name).version(v)));
                    if is_cut(&r) {
                        Err(())
                    } else {
                        Ok(Answer::Bool(r.expect("delete")))
                    }
                }
                Op::Incr(n, v, d) => {
                    let name = key(n, v);
                    let r = call!(cache, |c| c.incr(Key::new(&name).version(v), d));
                    match r {
                        _ if is_cut(&r) => Err(()),
                        Ok(x) => Ok(Answer::Int(x)),
                        Err(Error::NotFound) => Ok(Answer::NotFound),
                        Err(e) => panic!("incr: {e:?}"),
                    }
                }
                Op::Touch(n, v, t) => {
                    let to = t.map_or(Timeout::Never, |s| Timeout::Secs(s as i64));
                    let name = key(n, v);
                    let r = call!(cache, |c| c.touch(Key::new(&name).version(v), to));
                    if is_cut(&r) {
                        Err(())
                    } else {
                        Ok(Answer::Bool(r.expect("touch")))
                    }
                }
                Op::Get(n, v) => {
                    let name = key(n, v);
                    let r = call!(cache, |c| c.get::<i64>(Key::new(&name).version(v)));
                    if is_cut(&r) {
                        Err(())
                    } else {
                        Ok(Answer::Found(r.expect("get")))
                    }
                }
                Op::IncrVersion(n, v) => {
                    let name = key(n, v);
                    let delta = if v == 1 { 1 } else { -1 };
                    let r = call!(cache, |c| c.incr_version(Key::new(&name).version(v), delta));
                    match r {
                        _ if is_cut(&r) => Err(()),
                        Ok(x) => Ok(Answer::Int(i64::from(x))),
                        Err(Error::NotFound) => Ok(Answer::NotFound),
                        Err(e) => panic!("incr_version: {e:?}"),
                    }
                }
                Op::Clear => {
                    let r = call!(cache, |c| c.clear());
                    if is_cut(&r) {
                        Err(())
                    } else {
                        r.map(|_| Answer::Unit).map_err(|e| panic!("{e:?}"))
                    }
                }
                Op::Flush => {
                    let r = call!(cache, |c| c.close());
                    if is_cut(&r) {
                        Err(())
                    } else {
                        r.map(|_| Answer::Unit).map_err(|e| panic!("{e:?}"))
                    }
                }
            };
            done += 1;
            if std::env::var("TC_TRACE").is_ok() {
                eprintln!(
                    "op {done} at {now}: {op:?} -> {answer:?} commits {}",
                    cache.commits()
                );
            }
            match answer {
                Ok(a) => {
                    assert_eq!(a, expected, "{op:?} at {}", ctx(done));
                    current = after;
                    let c = cache.commits();
                    if policy == Policy::WriteThrough || c != commits {
                        acked = current.clone();
                    }
                    // `clear` and `close` carry no time: their records bear the latest
                    // time the backend saw.
                    if c != commits && !matches!(op, Op::Clear | Op::Flush) {
                        t_floor = t_floor.max(now);
                    }
                    commits = c;
                }
                Err(()) => {
                    stats.cuts += 1;
                    pending = Some(after);
                    break;
                }
            }
        }
    }
    // Last check after a clean close (or the last cut).
    flash.power_on();
    let clock = ManualClock::new(RATE);
    let range = 0..(PG * PS) as u32;
    let mut cache: Back<'_, '_, PG, PS, WS, RS> =
        Front::open(kind, &mut flash, range, Table::new(), policy, &clock).expect("reopen");
    let t = cache.latest_time();
    let found = contents(&mut cache, t);
    assert!(
        found == live_at(&acked, t) || pending.is_some_and(|a| found == live_at(&a, t)),
        "after close, {}",
        ctx(ops)
    );
}

/// Runs the sweep on `PG` pages of `PS` bytes written in `WS`-byte words and read in
/// `RS`-byte units. `stride` 1 cuts at every phase of the period (each byte of each write in
/// turn); a larger stride (odd, so that cuts still fall on every byte of a word over the
/// run) runs every `stride`-th phase only. `TICKCACHE_SWEEP=full` always runs every phase.
fn sweep<const PG: usize, const PS: usize, const WS: usize, const RS: usize>(
    kind: Kind,
    policy: Policy,
    stride: u64,
) {
    let full = std::env::var("TICKCACHE_SWEEP").is_ok_and(|v| v == "full");
    let (ops, period, seeds, stride): (usize, u64, u64, u64) = if full {
        (3000, 1499, 3, 1)
    } else {
        (1000, 499, 1, stride)
    };
    let mut stats = Stats {
        cuts: 0,
        applied: 0,
        open_cuts: 0,
    };
    for seed in 0..seeds {
        for phase in (0..period).step_by(stride as usize) {
            let seed = 0x5eed + seed * 7919;
            run::<PG, PS, WS, RS>(kind, policy, seed, ops, period, phase, &mut stats);
        }
    }
    assert!(stats.cuts > 0);
    // Every sweep cuts opens that repair: without it the repairs of every write size but 1
    // went uncut (the cuts fell in step with the words; see `run`). A stride is chosen so
    // that its phases reach such opens (the async write-back sweep at write size 16 cut
    // none at stride 9).
    assert!(stats.open_cuts > 0, "no open that repairs was cut");
    println!(
        "{kind:?} {policy:?} {PG} x {PS} B, WRITE_SIZE {WS}, READ_SIZE {RS}, phase stride {stride}: \
         {} cuts, {} interrupted operations found applied, {} opens cut",
        stats.cuts, stats.applied, stats.open_cuts
    );
}

const WB: Policy = Policy::WriteBack { max_dirty: 6 };

// Every phase (every byte of every write cut) for write sizes 1, 4 and 16; the other write
// sizes, with read sizes above 1, every 3rd phase. Pages hold the same number of records
// for every write size up to 32 (1,024 bytes for 64), so the live data fits the same way.

#[test]
fn sweep_write_through_ws1() {
    sweep::<6, 512, 1, 1>(Kind::Blocking, Policy::WriteThrough, 1);
    sweep::<6, 512, 1, 1>(Kind::Async, Policy::WriteThrough, 9);
}

#[test]
fn sweep_write_through_ws2_rs4() {
    sweep::<6, 512, 2, 4>(Kind::Blocking, Policy::WriteThrough, 3);
    sweep::<6, 512, 2, 4>(Kind::Async, Policy::WriteThrough, 27);
}

#[test]
fn sweep_write_through_ws4_rs64() {
    sweep::<6, 512, 4, 64>(Kind::Blocking, Policy::WriteThrough, 1);
    sweep::<6, 512, 4, 64>(Kind::Async, Policy::WriteThrough, 9);
}

#[test]
fn sweep_write_through_ws8_rs32() {
    sweep::<6, 512, 8, 32>(Kind::Blocking, Policy::WriteThrough, 3);
    sweep::<6, 512, 8, 32>(Kind::Async, Policy::WriteThrough, 27);
}

#[test]
fn sweep_write_through_ws16() {
    sweep::<6, 512, 16, 1>(Kind::Blocking, Policy::WriteThrough, 1);
    sweep::<6, 512, 16, 1>(Kind::Async, Policy::WriteThrough, 9);
}

#[test]
fn sweep_write_through_ws32_rs32() {
    sweep::<6, 512, 32, 32>(Kind::Blocking, Policy::WriteThrough, 3);
    sweep::<6, 512, 32, 32>(Kind::Async, Policy::WriteThrough, 27);
}

#[test]
fn sweep_write_through_ws64_rs4() {
    sweep::<6, 1024, 64, 4>(Kind::Blocking, Policy::WriteThrough, 3);
    sweep::<6, 1024, 64, 4>(Kind::Async, Policy::WriteThrough, 27);
}

#[test]
fn sweep_write_back_ws1() {
    sweep::<6, 512, 1, 1>(Kind::Blocking, WB, 1);
    sweep::<6, 512, 1, 1>(Kind::Async, WB, 9);
}

#[test]
fn sweep_write_back_ws2_rs4() {
    sweep::<6, 512, 2, 4>(Kind::Blocking, WB, 3);
    sweep::<6, 512, 2, 4>(Kind::Async, WB, 27);
}

#[test]
fn sweep_write_back_ws4_rs64() {
    sweep::<6, 512, 4, 64>(Kind::Blocking, WB, 1);
    sweep::<6, 512, 4, 64>(Kind::Async, WB, 9);
}

#[test]
fn sweep_write_back_ws8_rs32() {
    sweep::<6, 512, 8, 32>(Kind::Blocking, WB, 3);
    sweep::<6, 512, 8, 32>(Kind::Async, WB, 27);
}

#[test]
fn sweep_write_back_ws16() {
    sweep::<6, 512, 16, 1>(Kind::Blocking, WB, 1);
    sweep::<6, 512, 16, 1>(Kind::Async, WB, 11);
}

#[test]
fn sweep_write_back_ws32_rs32() {
    sweep::<6, 512, 32, 32>(Kind::Blocking, WB, 3);
    sweep::<6, 512, 32, 32>(Kind::Async, WB, 27);
}

#[test]
fn sweep_write_back_ws64_rs4() {
    sweep::<6, 1024, 64, 4>(Kind::Blocking, WB, 3);
    sweep::<6, 1024, 64, 4>(Kind::Async, WB, 27);
}

/// The same workload without cuts: every answer matches the model.
#[test]
fn workload_without_cuts_matches_model() {
    let mut stats = Stats {
        cuts: 0,
        applied: 0,
        open_cuts: 0,
    };
    for kind in flash_front::BOTH {
        let wt = Policy::WriteThrough;
        run::<6, 512, 4, 1>(kind, wt, 1, 3000, u64::MAX, u64::MAX, &mut stats);
        run::<6, 512, 4, 1>(kind, WB, 1, 3000, u64::MAX, u64::MAX, &mut stats);
        run::<6, 1024, 64, 32>(kind, WB, 1, 3000, u64::MAX, u64::MAX, &mut stats);
    }
    assert_eq!(stats.cuts, 0);
}
