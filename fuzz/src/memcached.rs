//! The `memcached` target: arbitrary bytes as a client's stream to the memcached connection
//! driver and engine (over a RAM table), delivered in arbitrary pieces, replies drained
//! through a small fixed sink (a `heapless::Vec`) as firmware does.
//!
//! Asserts, beyond "no panic":
//! - the replies and the point where the connection closes do not depend on how the stream
//!   is cut into reads (the same bytes fed at once, and fed in the fuzzer's pieces, give the
//!   same output), with long lines closing the connection and with long lines skipped;
//! - bounded work and output per input: a step handles at most one command or one key, so
//!   the steps of a read are at most twice the bytes it can act on (the new ones and those
//!   buffered, plus two), and each step's reply is at most [`UNIT_MAX`] bytes; the driver
//!   never buffers more than its fixed buffer;
//! - replies are well-formed: nothing for a `noreply` command; otherwise one known line,
//!   or `STAT` lines and `END`; each key of a retrieval answers nothing or one `VALUE`
//!   block with its own key, a length matching its data, and a cas unique exactly for
//!   `gets`/`gats`; a reply larger than the sink is reported with the bytes it had written,
//!   and the next step sends one `SERVER_ERROR` line;
//! - the cache agrees with a model for the commands it checks: after `set` (or a `STORED`
//!   `add`/`replace`) with exptime 0, a hit returns exactly those flags and data (a miss
//!   is allowed: the table of 8 evicts); after `delete`, a negative exptime or a too-large
//!   `set`, the key misses; other commands make the key unknown;
//! - the table never holds more than its capacity.

use std::collections::HashMap;

use arbitrary::{Arbitrary, Unstructured};
use tickcache::memcached::{
    Command, Driver, Event, Handler, LongLines, Memcached, Now, Outcome, Reply, Sink, StoreOp,
    REPLY_TOO_LARGE,
};
use tickcache::{Backend, Table};

const ITEM_MAX: usize = 64;
const LINE_MAX: usize = 128;
const BUF: usize = LINE_MAX + ITEM_MAX + 2;
/// The reply sink: smaller than a `stats` reply and than a `VALUE` block with a long key.
const SINK: usize = 192;
/// The most one step may write: a `stats` reply (about 600 bytes), or one `VALUE` block
/// (at most 359 bytes here) and `END`.
const UNIT_MAX: usize = 1024;
type Engine = Memcached<Table<8, 250, 80>, 80>;

/// Decodes `data` as the target does and checks it (for regression tests).
pub fn run_bytes(data: &[u8]) {
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        run(&input);
    }
}

/// One fuzz case.
#[derive(Arbitrary, Debug, Clone)]
pub struct Input {
    /// Read sizes: the stream is cut into pieces of these lengths (cycled; 0 means 1).
    pub cuts: Vec<u8>,
    /// Seconds the clock moves between reads.
    pub tick: u8,
    /// The client's bytes.
    pub stream: Vec<u8>,
}

/// What the model knows of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Known {
    /// Stored with these flags and data (and no expiry), unless evicted since.
    Item(u32, Vec<u8>),
    /// Not in the cache.
    Absent,
    /// Changed in a way the model does not follow.
    Unknown,
}

#[derive(Default)]
struct Model {
    keys: HashMap<Vec<u8>, Known>,
    /// After a `flush_all` (perhaps delayed) every key the map does not name is unknown.
    flushed: bool,
}

impl Model {
    fn get(&self, key: &[u8]) -> Known {
        match self.keys.get(key) {
            Some(k) => k.clone(),
            None if self.flushed => Known::Unknown,
            None => Known::Absent,
        }
    }

    fn set(&mut self, key: &[u8], k: Known) {
        self.keys.insert(key.to_vec(), k);
    }

    /// Updates the model after `cmd` was answered `reply`.
    fn apply(&mut self, cmd: &Command<'_>, reply: &[u8]) {
        match *cmd {
            Command::Store {
                op,
                key,
                flags,
                exptime,
                data,
                ..
            } => {
                let stored = reply == b"STORED\r\n";
                let k = match op {
                    StoreOp::Set | StoreOp::Add | StoreOp::Replace if stored && exptime == 0 => {
                        Known::Item(flags, data.to_vec())
                    }
                    StoreOp::Set if stored && exptime < 0 => Known::Absent,
                    StoreOp::Add | StoreOp::Replace if reply == b"NOT_STORED\r\n" => return,
                    _ => Known::Unknown,
                };
                self.set(key, k);
            }
            Command::TooLarge {
                op: StoreOp::Set,
                key,
                ..
            } => self.set(key, Known::Absent),
            Command::Delete { key, .. } => self.set(key, Known::Absent),
            Command::Arith { key, .. } | Command::Touch { key, .. } => {
                self.set(key, Known::Unknown)
            }
            Command::FlushAll { .. } => {
                self.keys.clear();
                self.flushed = true;
            }
            _ => {}
        }
    }
}

/// The engine, with every reply checked and the model kept.
struct Checked<'a> {
    engine: &'a mut Engine,
    model: &'a mut Model,
    /// Bytes written by the handler in the current step.
    unit: usize,
    /// Set by `quit`.
    quit: &'a mut bool,
}

impl<W: tickcache::memcached::embedded_io::Write> Handler<W> for Checked<'_> {
    fn tick(&mut self, now: &Now) {
        Memcached::tick(self.engine, now);
    }

    fn execute(&mut self, cmd: &Command<'_>, now: &Now, out: &mut Reply<'_, W>) -> Outcome {
        let mut reply = Vec::new();
        let outcome = self.engine.execute(cmd, now, &mut reply);
        *self.quit |= outcome == Outcome::Close;
        check_reply(cmd, &reply);
        assert!(self.engine.store().len() <= 8, "table over capacity");
        self.model.apply(cmd, &reply);
        self.unit += reply.len();
        out.put(&reply);
        outcome
    }

    fn get_one(
        &mut self,
        key: &[u8],
        cas: bool,
        touch: Option<i64>,
        now: &Now,
        out: &mut Reply<'_, W>,
    ) {
        let mut reply = Vec::new();
        self.engine.get_one(key, cas, touch, now, &mut reply);
        if let Some((flags, data)) = check_value(key, cas, &reply) {
            match self.model.get(key) {
                Known::Item(f, d) => assert!(
                    f == flags && d == data,
                    "{:?} holds flags {flags} {:?}, the model {f} {:?}",
                    String::from_utf8_lossy(key),
                    String::from_utf8_lossy(data),
                    String::from_utf8_lossy(&d)
                ),
                Known::Absent => panic!("{:?} hit, the model has it absent", key),
                Known::Unknown => {}
            }
        }
        if touch.is_some() {
            self.model.set(key, Known::Unknown);
        }
        self.unit += reply.len();
        out.put(&reply);
    }
}

/// Checks the reply of a command other than a retrieval.
fn check_reply(cmd: &Command<'_>, reply: &[u8]) {
    let noreply = match *cmd {
        Command::Store { noreply, .. }
        | Command::TooLarge { noreply, .. }
        | Command::Delete { noreply, .. }
        | Command::Arith { noreply, .. }
        | Command::Touch { noreply, .. }
        | Command::FlushAll { noreply, .. }
        | Command::Verbosity { noreply }
        | Command::Invalid { noreply, .. } => noreply,
        Command::Quit => true,
        _ => false,
    };
    if noreply {
        assert!(reply.is_empty(), "a reply to {cmd:?}: {reply:?}");
        return;
    }
    let text = String::from_utf8_lossy(reply);
    assert!(text.ends_with("\r\n"), "{cmd:?}: {text:?}");
    let lines: Vec<&str> = text[..text.len() - 2].split("\r\n").collect();
    if let Command::Stats { reset: false } = cmd {
        let (last, stats) = lines.split_last().expect("a line");
        assert_eq!(*last, "END");
        for l in stats {
            let f: Vec<&str> = l.split(' ').collect();
            assert!(
                f.len() == 3 && f[0] == "STAT" && f[2].parse::<u64>().is_ok(),
                "{l:?}"
            );
        }
        return;
    }
    assert_eq!(lines.len(), 1, "{cmd:?}: {text:?}");
    let line = lines[0];
    assert!(!line.contains('\n'), "{cmd:?}: {text:?}");
    let ok = match cmd {
        Command::Arith { .. } => {
            line.parse::<u64>().is_ok()
                || line == "NOT_FOUND"
                || line.starts_with("CLIENT_ERROR ")
                || line.starts_with("SERVER_ERROR ")
        }
        Command::Version => line.starts_with("VERSION "),
        Command::Stats { reset: true } => line == "RESET",
        _ => {
            matches!(
                line,
                "STORED"
                    | "NOT_STORED"
                    | "EXISTS"
                    | "NOT_FOUND"
                    | "DELETED"
                    | "TOUCHED"
                    | "OK"
                    | "ERROR"
            ) || line.starts_with("CLIENT_ERROR ")
                || line.starts_with("SERVER_ERROR ")
        }
    };
    assert!(ok, "{cmd:?}: {text:?}");
}

/// Checks one key's answer: nothing, or its `VALUE` block. Returns the flags and data.
fn check_value<'r>(key: &[u8], cas: bool, reply: &'r [u8]) -> Option<(u32, &'r [u8])> {
    if reply.is_empty() {
        return None;
    }
    let nl = reply
        .windows(2)
        .position(|w| w == b"\r\n")
        .expect("a header line");
    let header = std::str::from_utf8(&reply[..nl]).expect("an ASCII header");
    let rest = &reply[nl + 2..];
    // The key may hold any byte above 0x1f; the header ends with the numbers.
    let head = format!("VALUE {} ", String::from_utf8_lossy(key));
    let head_bytes = [b"VALUE ", key, b" "].concat();
    assert!(reply.starts_with(&head_bytes), "{header:?} for {head:?}");
    let nums: Vec<&str> = std::str::from_utf8(&reply[head_bytes.len()..nl])
        .expect("digits")
        .split(' ')
        .collect();
    assert_eq!(nums.len(), if cas { 3 } else { 2 }, "{header:?}");
    let flags: u32 = nums[0].parse().expect("flags");
    let len: usize = nums[1].parse().expect("length");
    if cas {
        nums[2].parse::<u64>().expect("cas unique");
    }
    assert_eq!(rest.len(), len + 2, "{header:?}");
    assert_eq!(&rest[len..], b"\r\n");
    Some((flags, &rest[..len]))
}

/// One connection: the driver with its fixed buffer, the engine and the model.
struct Conn {
    driver: Driver<[u8; BUF]>,
    engine: Box<Engine>,
    model: Model,
    now: Now,
    quit: bool,
}

impl Conn {
    fn new(long_lines: LongLines) -> Self {
        Conn {
            driver: Driver::new([0; BUF], ITEM_MAX, LINE_MAX).long_lines(long_lines),
            engine: Box::new(Memcached::new(Table::new(), ITEM_MAX, 0)),
            model: Model::default(),
            quit: false,
            now: Now {
                ticks: 1_000,
                ticks_per_second: 1_000,
                unix: 1_700_000_000,
            },
        }
    }

    /// Feeds one read; appends what the server sends to `sent`.
    fn feed(&mut self, mut bytes: &[u8], sent: &mut Vec<u8>) {
        let mut out: heapless::Vec<u8, SINK> = heapless::Vec::new();
        let mut owed = false;
        // The bytes this read can act on: the new ones and those still buffered.
        let avail = bytes.len() + self.driver.buffered();
        let mut steps = 0usize;
        while !self.driver.closed() {
            let n = self.driver.feed(bytes);
            bytes = &bytes[n..];
            loop {
                let mut h = Checked {
                    engine: &mut self.engine,
                    model: &mut self.model,
                    unit: 0,
                    quit: &mut self.quit,
                };
                let r = self.driver.step(&mut h, &self.now, &mut out);
                assert!(h.unit <= UNIT_MAX, "one step wrote {} bytes", h.unit);
                assert!(self.driver.buffered() <= BUF);
                match r {
                    Ok(e) => {
                        if owed {
                            assert_eq!(&out[..], REPLY_TOO_LARGE, "the error line first");
                            owed = false;
                        }
                        sent.extend_from_slice(&out);
                        out.clear();
                        match e {
                            Event::Need => break,
                            Event::Close => return,
                            Event::Progress => {}
                        }
                    }
                    Err(e) => {
                        assert!(e.error.is_some(), "heapless reports its error");
                        assert_eq!(e.written, out.len(), "the bytes of the unfinished reply");
                        // Only a reply longer than the sink fails (the sink was empty).
                        assert!(h.unit + b"END\r\n".len() > SINK, "{} bytes failed", h.unit);
                        out.clear();
                        owed = true;
                    }
                }
                steps += 1;
                assert!(steps <= 2 * avail + 2, "{steps} steps for {avail} bytes");
            }
            if bytes.is_empty() {
                break;
            }
        }
    }
}

/// Checks one case.
pub fn run(input: &Input) {
    for long_lines in [LongLines::Close, LongLines::Resync] {
        // The whole stream in one read (the clock does not move).
        let mut whole = Conn::new(long_lines);
        let mut whole_out = Vec::new();
        whole.feed(&input.stream, &mut whole_out);

        // The same stream in the fuzzer's pieces.
        let mut pieces = Conn::new(long_lines);
        let mut pieces_out = Vec::new();
        let mut at = 0;
        let mut i = 0;
        while at < input.stream.len() && !pieces.driver.closed() {
            let len = input
                .cuts
                .get(i % input.cuts.len().max(1))
                .map_or(1, |&c| usize::from(c.max(1)));
            let end = (at + len).min(input.stream.len());
            pieces.feed(&input.stream[at..end], &mut pieces_out);
            at = end;
            i += 1;
        }
        assert_eq!(
            pieces.driver.closed(),
            whole.driver.closed(),
            "closing depends on how the stream was cut"
        );
        assert!(
            pieces_out == whole_out,
            "replies depend on how the stream was cut:\n whole: {:?}\npieces: {:?}",
            String::from_utf8_lossy(&whole_out),
            String::from_utf8_lossy(&pieces_out)
        );
        if long_lines == LongLines::Resync {
            assert!(
                !whole.driver.closed() || whole.quit,
                "closed without quit while skipping long lines"
            );
        }
    }

    // Time moving between reads must not break anything either (no comparison: expiry
    // legitimately changes answers).
    let mut timed = Conn::new(LongLines::Resync);
    let mut out = Vec::new();
    for (n, chunk) in input.stream.chunks(17).enumerate() {
        let secs = u64::from(input.tick) * n as u64;
        timed.now.ticks += secs * 1_000;
        timed.now.unix += secs;
        // Expiry makes stored items unknown.
        if secs > 0 {
            timed.model.keys.clear();
            timed.model.flushed = true;
        }
        timed.feed(chunk, &mut out);
    }
}
