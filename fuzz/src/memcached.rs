//! The `memcached` target: arbitrary bytes as a client's stream to the memcached front end
//! (parser and engine over a RAM table), delivered in arbitrary pieces.
//!
//! Asserts, beyond "no panic": the replies and the point where the connection closes do not
//! depend on how the stream is cut into reads (the same bytes fed at once, and fed in the
//! fuzzer's pieces, give the same output); every step consumes no more than it was shown;
//! the unconsumed bytes a connection keeps between reads stay below the parser's buffer
//! size (bounded memory per connection); the engine's table never holds more than its
//! capacity; and parsing always makes progress (a bounded number of steps per read).

use arbitrary::{Arbitrary, Unstructured};
use tickcache::memcached::{Memcached, Now, Outcome, Parser, Step};
use tickcache::{Backend, Table};

const ITEM_MAX: usize = 64;
const LINE_MAX: usize = 128;
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

/// One connection: a parser, its unconsumed bytes and the engine it talks to.
struct Conn {
    parser: Parser,
    engine: Box<Engine>,
    pending: Vec<u8>,
    now: Now,
    closed: bool,
}

impl Conn {
    fn new() -> Self {
        Conn {
            parser: Parser::new(ITEM_MAX, LINE_MAX),
            engine: Box::new(Memcached::new(Table::new(), ITEM_MAX, 0)),
            pending: Vec::new(),
            now: Now {
                ticks: 1_000,
                ticks_per_second: 1_000,
                unix: 1_700_000_000,
            },
            closed: false,
        }
    }

    /// Feeds one read; appends what the server sends to `out`.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        // Every step but `Need` consumes a byte or closes, so this bound is never reached.
        let mut steps = 0usize;
        loop {
            steps += 1;
            assert!(steps <= self.pending.len() + 2, "parsing made no progress");
            let rest = &self.pending[start..];
            match self.parser.next(rest) {
                Step::Need => break,
                Step::Skip(n) => {
                    assert!(n > 0 && n <= rest.len(), "skip {n} of {}", rest.len());
                    start += n;
                }
                Step::Close { reply } => {
                    out.extend_from_slice(reply);
                    self.closed = true;
                    break;
                }
                Step::Command { cmd, used } => {
                    assert!(
                        used > 0 && used <= rest.len(),
                        "used {used} of {}",
                        rest.len()
                    );
                    start += used;
                    if self.engine.execute(&cmd, &self.now, out) == Outcome::Close {
                        self.closed = true;
                        break;
                    }
                    assert!(self.engine.store().len() <= 8, "table over capacity");
                }
            }
        }
        self.pending.drain(..start);
        if !self.closed {
            assert!(
                self.pending.len() < self.parser.buffer_size(),
                "{} unconsumed bytes kept, buffer is {}",
                self.pending.len(),
                self.parser.buffer_size()
            );
        }
    }
}

/// Checks one case.
pub fn run(input: &Input) {
    // The whole stream in one read (the clock does not move).
    let mut whole = Conn::new();
    let mut whole_out = Vec::new();
    whole.feed(&input.stream, &mut whole_out);

    // The same stream in the fuzzer's pieces.
    let mut pieces = Conn::new();
    let mut pieces_out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < input.stream.len() {
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
        pieces.closed, whole.closed,
        "closing depends on how the stream was cut"
    );
    assert!(
        pieces_out == whole_out,
        "replies depend on how the stream was cut:\n whole: {:?}\npieces: {:?}",
        String::from_utf8_lossy(&whole_out),
        String::from_utf8_lossy(&pieces_out)
    );

    // Time moving between reads must not break anything either (no comparison: expiry
    // legitimately changes answers).
    let mut timed = Conn::new();
    let mut out = Vec::new();
    for (n, chunk) in input.stream.chunks(17).enumerate() {
        timed.now.ticks += u64::from(input.tick) * 1_000 * n as u64;
        timed.now.unix += u64::from(input.tick) * n as u64;
        timed.feed(chunk, &mut out);
    }
}
