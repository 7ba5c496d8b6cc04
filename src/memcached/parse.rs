//! The incremental parser: bytes in, one [`Command`] (borrowing the input) out.
//!
//! [`Parser::next`] looks at the unconsumed bytes of a connection and either asks for more
//! ([`Step::Need`], consuming nothing), or returns a command and how many bytes it used. A
//! storage command is returned only once its data block is complete, so the caller's read
//! buffer must hold a command line and a data block: [`Parser::buffer_size`] bytes always
//! suffice. A data block larger than the item limit is not buffered: the parser answers
//! [`Command::TooLarge`] and then discards the block as it arrives ([`Step::Skip`]).

use crate::memcached::MAX_KEY;
use crate::value;

/// What a storage command does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StoreOp {
    /// `set`: store unconditionally.
    Set,
    /// `add`: store only when the key is missing.
    Add,
    /// `replace`: store only when the key is present.
    Replace,
    /// `append`: add the data after the stored data (flags and expiry kept).
    Append,
    /// `prepend`: add the data before the stored data (flags and expiry kept).
    Prepend,
    /// `cas`: store only when the item's cas unique still matches.
    Cas,
}

/// The keys of a retrieval command, in order, separated by spaces (all already checked
/// against memcached's key rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keys<'a> {
    rest: &'a [u8],
}

impl<'a> Keys<'a> {
    /// Keys from a space-separated list.
    pub const fn new(list: &'a [u8]) -> Self {
        Keys { rest: list }
    }

    /// The keys not yet returned, as they appear in the command line.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for Keys<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        next_token(&mut self.rest)
    }
}

/// One parsed command. Byte slices borrow the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `get`/`gets <key>*`.
    Get {
        /// The keys, in request order (repeats allowed).
        keys: Keys<'a>,
        /// `gets`: include the cas unique.
        cas: bool,
    },
    /// `gat`/`gats <exptime> <key>*`: get and touch.
    Gat {
        /// The new expiry (memcached exptime).
        exptime: i64,
        /// The keys.
        keys: Keys<'a>,
        /// `gats`: include the cas unique.
        cas: bool,
    },
    /// A storage command with its complete data block.
    Store {
        /// Which one.
        op: StoreOp,
        /// The key.
        key: &'a [u8],
        /// Client flags stored with the item.
        flags: u32,
        /// memcached exptime: 0 never, negative expired, above 30 days a Unix time.
        exptime: i64,
        /// The data (without the trailing `\r\n`).
        data: &'a [u8],
        /// For `cas`, the unique the client read; 0 otherwise.
        unique: u64,
        /// Send no reply.
        noreply: bool,
    },
    /// A storage command whose data block exceeds the item limit; the parser discards the
    /// block. The answer is `SERVER_ERROR object too large for cache`, and a `set` also
    /// removes the key's old value (as memcached does, so no stale value survives).
    TooLarge {
        /// Which one.
        op: StoreOp,
        /// The key.
        key: &'a [u8],
        /// Send no reply.
        noreply: bool,
    },
    /// `delete <key> [0] [noreply]`.
    Delete {
        /// The key.
        key: &'a [u8],
        /// Send no reply.
        noreply: bool,
    },
    /// `incr`/`decr <key> <delta>`: unsigned 64-bit; `incr` wraps, `decr` stops at 0.
    Arith {
        /// The key.
        key: &'a [u8],
        /// The amount.
        delta: u64,
        /// `incr` (true) or `decr`.
        incr: bool,
        /// Send no reply.
        noreply: bool,
    },
    /// `touch <key> <exptime>`.
    Touch {
        /// The key.
        key: &'a [u8],
        /// The new expiry.
        exptime: i64,
        /// Send no reply.
        noreply: bool,
    },
    /// `flush_all [delay]`: invalidate every item now or after `delay` seconds.
    FlushAll {
        /// Seconds to wait (memcached exptime rules; 0 or below is now).
        delay: i64,
        /// Send no reply.
        noreply: bool,
    },
    /// `version`.
    Version,
    /// `stats [reset]`.
    Stats {
        /// `stats reset`: zero the counters.
        reset: bool,
    },
    /// `verbosity <level>`: accepted and ignored.
    Verbosity {
        /// Send no reply.
        noreply: bool,
    },
    /// `quit`: close the connection.
    Quit,
    /// A line that is not a valid command: send `reply` (a complete line) unless `noreply`.
    Invalid {
        /// The error line, `\r\n` included.
        reply: &'static [u8],
        /// Send no reply.
        noreply: bool,
    },
}

/// The parser's answer for the bytes it was shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// No complete command yet: read more and call again with the same bytes and more.
    Need,
    /// The first `n` bytes belong to a discarded data block: drop them.
    Skip(usize),
    /// A command, using the first `used` bytes.
    Command {
        /// The command.
        cmd: Command<'a>,
        /// Bytes consumed.
        used: usize,
    },
    /// A command line longer than the limit: send `reply`, then close the connection.
    Close {
        /// The error line.
        reply: &'static [u8],
    },
}

/// The error line memcached sends for an unknown command.
pub const ERROR: &[u8] = b"ERROR\r\n";
/// A malformed command line.
pub const BAD_FORMAT: &[u8] = b"CLIENT_ERROR bad command line format\r\n";
/// A data block not followed by `\r\n`.
pub const BAD_CHUNK: &[u8] = b"CLIENT_ERROR bad data chunk\r\n";
/// A line longer than the parser's limit.
pub const LINE_TOO_LONG: &[u8] = b"CLIENT_ERROR line too long\r\n";
const BAD_DELTA: &[u8] = b"CLIENT_ERROR invalid numeric delta argument\r\n";
const BAD_EXPTIME: &[u8] = b"CLIENT_ERROR invalid exptime argument\r\n";
const BAD_DELETE: &[u8] =
    b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n";

/// The incremental parser of one connection (its only state is a data block being
/// discarded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parser {
    item_max: usize,
    line_max: usize,
    skip: u64,
}

impl Parser {
    /// A parser accepting data blocks up to `item_max` bytes and command lines up to
    /// `line_max` bytes (newline included).
    pub const fn new(item_max: usize, line_max: usize) -> Self {
        Parser {
            item_max,
            line_max,
            skip: 0,
        }
    }

    /// A read buffer of this many bytes always holds a whole command.
    pub const fn buffer_size(&self) -> usize {
        self.line_max + self.item_max + 2
    }

    /// The item limit in data bytes.
    pub const fn item_max(&self) -> usize {
        self.item_max
    }

    /// The line limit in bytes, newline included.
    pub const fn line_max(&self) -> usize {
        self.line_max
    }

    /// Forgets a too-large data block being discarded: the next bytes start a command.
    pub fn reset(&mut self) {
        self.skip = 0;
    }

    /// True while a too-large data block is being discarded.
    pub const fn skipping(&self) -> bool {
        self.skip > 0
    }

    /// Parses the next command at the start of `buf` (the connection's unconsumed bytes).
    pub fn next<'a>(&mut self, buf: &'a [u8]) -> Step<'a> {
        if self.skip > 0 {
            if buf.is_empty() {
                return Step::Need;
            }
            let n = usize::try_from(self.skip)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            self.skip -= n as u64;
            return Step::Skip(n);
        }
        let window = &buf[..buf.len().min(self.line_max)];
        // The newline, and a NUL byte before it if there is one: one pass over the line.
        let mut nul = None;
        let mut nl = find_either(window, b'\n', 0);
        if let Some(i) = nl.filter(|&i| window[i] == 0) {
            nul = Some(i);
            nl = find_byte(&window[i..], b'\n').map(|j| i + j);
        }
        let Some(nl) = nl else {
            return if buf.len() >= self.line_max {
                Step::Close {
                    reply: LINE_TOO_LONG,
                }
            } else {
                Step::Need
            };
        };
        let mut line = &buf[..nl];
        if let [head @ .., b'\r'] = line {
            line = head;
        }
        // memcached reads the line as a C string: it ends at the first NUL byte.
        if let Some(nul) = nul {
            line = &line[..nul.min(line.len())];
        }
        let used = nl + 1;
        let invalid = |reply, noreply| Step::Command {
            cmd: Command::Invalid { reply, noreply },
            used,
        };
        let mut rest = line;
        let Some(name) = next_token(&mut rest) else {
            return invalid(ERROR, false);
        };
        match name {
            b"get" | b"gets" => match check_keys(rest) {
                Some(Ok(())) => Step::Command {
                    cmd: Command::Get {
                        keys: Keys::new(rest),
                        cas: name == b"gets",
                    },
                    used,
                },
                Some(Err(e)) => invalid(e, false),
                None => invalid(ERROR, false),
            },
            b"gat" | b"gats" => {
                let Some(exp) = next_token(&mut rest) else {
                    return invalid(ERROR, false);
                };
                match check_keys(rest) {
                    None => invalid(ERROR, false),
                    Some(Err(e)) => invalid(e, false),
                    Some(Ok(())) => match parse_i64(exp) {
                        None => invalid(BAD_EXPTIME, false),
                        Some(exptime) => Step::Command {
                            cmd: Command::Gat {
                                exptime,
                                keys: Keys::new(rest),
                                cas: name == b"gats",
                            },
                            used,
                        },
                    },
                }
            }
            _ => self.parse_other(name, rest, buf, used),
        }
    }

    fn parse_other<'a>(
        &mut self,
        name: &'a [u8],
        mut rest: &'a [u8],
        buf: &'a [u8],
        used: usize,
    ) -> Step<'a> {
        // Every other command has at most 7 arguments; one more means "not this command".
        let mut args: [&[u8]; 8] = [&[]; 8];
        let mut n = 0;
        while let Some(t) = next_token(&mut rest) {
            if n == args.len() {
                n += 1;
                break;
            }
            args[n] = t;
            n += 1;
        }
        let args = &args[..n.min(8)];
        let noreply = args.last() == Some(&&b"noreply"[..]);
        let done = |cmd| Step::Command { cmd, used };
        let invalid = |reply, noreply| done(Command::Invalid { reply, noreply });
        let op = match name {
            b"set" => Some(StoreOp::Set),
            b"add" => Some(StoreOp::Add),
            b"replace" => Some(StoreOp::Replace),
            b"append" => Some(StoreOp::Append),
            b"prepend" => Some(StoreOp::Prepend),
            b"cas" => Some(StoreOp::Cas),
            _ => None,
        };
        if let Some(op) = op {
            let base = if op == StoreOp::Cas { 5 } else { 4 };
            if n != base && n != base + 1 {
                return invalid(ERROR, false);
            }
            let key = args[0];
            let (Some(flags), Some(exptime), Some(len)) =
                (parse_u32(args[1]), parse_i64(args[2]), parse_i64(args[3]))
            else {
                return invalid(BAD_FORMAT, noreply);
            };
            let unique = if op == StoreOp::Cas {
                // memcached reads the cas unique as it reads an incr delta.
                match parse_number(args[4]) {
                    Some(u) => u,
                    None => return invalid(BAD_FORMAT, noreply),
                }
            } else {
                0
            };
            if !key_ok(key) || !(0..=i64::from(i32::MAX) - 2).contains(&len) {
                return invalid(BAD_FORMAT, noreply);
            }
            let len = len as u64;
            if len > self.item_max as u64 {
                self.skip = len + 2;
                return done(Command::TooLarge { op, key, noreply });
            }
            let len = len as usize;
            let end = used + len + 2;
            if buf.len() < end {
                return Step::Need;
            }
            if &buf[used + len..end] != b"\r\n" {
                return Step::Command {
                    cmd: Command::Invalid {
                        reply: BAD_CHUNK,
                        noreply,
                    },
                    used: end,
                };
            }
            return Step::Command {
                cmd: Command::Store {
                    op,
                    key,
                    flags,
                    exptime,
                    data: &buf[used..used + len],
                    unique,
                    noreply,
                },
                used: end,
            };
        }
        match name {
            b"delete" => {
                if !(1..=3).contains(&n) {
                    return invalid(ERROR, false);
                }
                if n > 1 {
                    let zero = args[1] == b"0";
                    let ok = (n == 2 && (zero || noreply)) || (n == 3 && zero && noreply);
                    if !ok {
                        return invalid(BAD_DELETE, false);
                    }
                }
                if !key_ok(args[0]) {
                    return invalid(BAD_FORMAT, noreply);
                }
                done(Command::Delete {
                    key: args[0],
                    noreply,
                })
            }
            b"incr" | b"decr" => {
                if n != 2 && n != 3 {
                    return invalid(ERROR, false);
                }
                if !key_ok(args[0]) {
                    return invalid(BAD_FORMAT, noreply);
                }
                match parse_number(args[1]) {
                    Some(delta) => done(Command::Arith {
                        key: args[0],
                        delta,
                        incr: name == b"incr",
                        noreply,
                    }),
                    None => invalid(BAD_DELTA, noreply),
                }
            }
            b"touch" => {
                if n != 2 && n != 3 {
                    return invalid(ERROR, false);
                }
                if !key_ok(args[0]) {
                    return invalid(BAD_FORMAT, noreply);
                }
                match parse_i64(args[1]) {
                    Some(exptime) => done(Command::Touch {
                        key: args[0],
                        exptime,
                        noreply,
                    }),
                    None => invalid(BAD_EXPTIME, noreply),
                }
            }
            b"flush_all" => {
                if n > 2 {
                    return invalid(ERROR, false);
                }
                let delay = match args.first() {
                    Some(&t) if t != b"noreply" => match parse_i64(t) {
                        Some(d) => d,
                        None => return invalid(BAD_EXPTIME, noreply),
                    },
                    _ => 0,
                };
                done(Command::FlushAll { delay, noreply })
            }
            b"version" if n == 0 => done(Command::Version),
            b"quit" if n == 0 => done(Command::Quit),
            b"stats" => match args {
                [] => done(Command::Stats { reset: false }),
                [b"reset"] => done(Command::Stats { reset: true }),
                _ => invalid(ERROR, false),
            },
            b"verbosity" if (1..=2).contains(&n) => done(Command::Verbosity { noreply }),
            _ => invalid(ERROR, false),
        }
    }
}

/// The next space-separated token (runs of spaces count as one separator).
fn next_token<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let start = rest.iter().position(|&b| b != b' ')?;
    let tail = &rest[start..];
    let end = find_byte(tail, b' ').unwrap_or(tail.len());
    let (tok, after) = tail.split_at(end);
    *rest = after;
    Some(tok)
}

/// memcached's key rules: 1 to 250 bytes, no control character (spaces separate keys).
pub fn key_ok(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY && !has_control(key)
}

// Scanning a word at a time (8 bytes on 64-bit hosts, 4 on Cortex-M), in safe code: a
// command line is searched for its newline and a key checked for control characters with
// a few instructions per word instead of per byte. The bit tricks are the classic "has a
// zero byte" / "has a byte less than n" tests (n at most 128): the top bit of a byte is set
// where the byte matches, and of some bytes after a match (a borrow carries upwards), so
// the lowest set bit of a little-endian word marks the first match exactly.

/// Bytes per word.
const WORD: usize = core::mem::size_of::<usize>();
/// `0x0101..01`: one in every byte.
const ONES: usize = usize::MAX / 255;
/// `0x8080..80`: the top bit of every byte.
const HIGHS: usize = ONES << 7;

/// The word of `chunk` (exactly [`WORD`] bytes), its first byte lowest.
#[inline]
fn word(chunk: &[u8]) -> usize {
    let mut w = [0u8; WORD];
    w.copy_from_slice(chunk);
    usize::from_le_bytes(w)
}

/// The top bit of each byte of `x` below `n` (`n` at most 128) is set, and maybe of bytes
/// after one (never before the first).
#[inline]
const fn less(x: usize, n: u8) -> usize {
    x.wrapping_sub(ONES * n as usize) & !x & HIGHS
}

/// The same for the bytes of `x` equal to `b`.
#[inline]
const fn equal(x: usize, b: u8) -> usize {
    less(x ^ (ONES * b as usize), 1)
}

/// The index of the first byte of `bytes` that is `a` or `b`.
fn find_either(bytes: &[u8], a: u8, b: u8) -> Option<usize> {
    let mut chunks = bytes.chunks_exact(WORD);
    let mut at = 0;
    for chunk in &mut chunks {
        let x = word(chunk);
        let m = equal(x, a) | equal(x, b);
        if m != 0 {
            return Some(at + m.trailing_zeros() as usize / 8);
        }
        at += WORD;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| c == a || c == b)
        .map(|i| at + i)
}

/// The index of the first `b` in `bytes`.
fn find_byte(bytes: &[u8], b: u8) -> Option<usize> {
    find_either(bytes, b, b)
}

/// Whether `bytes` holds a control character (below 0x20, or DEL).
fn has_control(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(WORD);
    for chunk in &mut chunks {
        let x = word(chunk);
        if less(x, 0x20) | equal(x, 0x7f) != 0 {
            return true;
        }
    }
    chunks.remainder().iter().any(|&c| c < 0x20 || c == 0x7f)
}

/// `None` when there is no key; the error line for an invalid key.
fn check_keys(list: &[u8]) -> Option<Result<(), &'static [u8]>> {
    let mut keys = Keys::new(list);
    let mut any = false;
    for k in &mut keys {
        any = true;
        if !key_ok(k) {
            return Some(Err(BAD_FORMAT));
        }
    }
    any.then_some(Ok(()))
}

fn parse_u64(t: &[u8]) -> Option<u64> {
    value::parse_u64(t)
}

fn parse_u32(t: &[u8]) -> Option<u32> {
    parse_u64(t).and_then(|v| u32::try_from(v).ok())
}

fn parse_i64(t: &[u8]) -> Option<i64> {
    value::parse_decimal(t)
}

/// memcached's reading of an unsigned 64-bit number (an `incr`/`decr` delta, the stored
/// value it applies to, a `cas` unique), which is C's `strtoull` checked by memcached:
/// - leading white space (space, `\t`, `\n`, `\v`, `\f`, `\r`) is skipped;
/// - one optional sign, `+` or `-`; then one or more decimal digits (any number of leading
///   zeros), whose value must fit in `u64`;
/// - the digits end the input or are followed by white space or a NUL byte (anything may
///   come after that);
/// - a `-` negates modulo 2^64, and the result is refused when it is then at or above 2^63
///   (so `-0` is 0, `-1` is refused, and `-18446744073709551615` is 1, as in memcached).
pub(crate) fn parse_number(bytes: &[u8]) -> Option<u64> {
    let start = bytes.iter().position(|&b| !is_space(b))?;
    let rest = &bytes[start..];
    let (neg, rest) = match rest.split_first() {
        Some((b'-', r)) => (true, r),
        Some((b'+', r)) => (false, r),
        _ => (false, rest),
    };
    let (n, v) = value::leading_digits(rest);
    if n == 0 || rest.get(n).is_some_and(|&b| b != 0 && !is_space(b)) {
        return None;
    }
    let v = v?;
    if !neg {
        return Some(v);
    }
    let v = v.wrapping_neg();
    (v < 1 << 63).then_some(v)
}

/// C's `isspace` in the "C" locale.
const fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word-at-a-time scans answer as the byte-by-byte ones, wherever the bytes sought
    /// lie within or across words, next to the bytes just above and below them.
    #[test]
    fn word_scans_match_byte_scans() {
        let fillers = [b'a', b' ', 0x1f, 0x20, 0x7e, 0x7f, 0x80, 0xff, b'\n' + 1, 1];
        for len in 0..40 {
            for &fill in &fillers {
                for at in 0..=len {
                    for &put in &[b'\n', 0, 0x1f, 0x7f, b' ', b'\r', 0x80] {
                        let mut v = std::vec![fill; len];
                        if at < len {
                            v[at] = put;
                        }
                        let by_byte = |f: &dyn Fn(u8) -> bool| v.iter().position(|&c| f(c));
                        assert_eq!(
                            find_either(&v, b'\n', 0),
                            by_byte(&|c| c == b'\n' || c == 0)
                        );
                        assert_eq!(find_byte(&v, b' '), by_byte(&|c| c == b' '));
                        assert_eq!(
                            has_control(&v),
                            v.iter().any(|&c| c < 0x20 || c == 0x7f),
                            "{v:?}"
                        );
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// Against byte-by-byte scans on any bytes, drawn mostly from those the scans look
        /// for and their neighbours (so several matches share a word).
        #[test]
        fn word_scans_match_byte_scans_anywhere(
            v in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(std::vec![0u8, 1, b'\n', 11, 0x1f, b' ', 0x21, 0x7f, 0x80, 0xff]),
                    proptest::num::u8::ANY,
                ],
                0..64,
            )
        ) {
            proptest::prop_assert_eq!(
                find_either(&v, b'\n', 0),
                v.iter().position(|&c| c == b'\n' || c == 0)
            );
            proptest::prop_assert_eq!(find_byte(&v, b' '), v.iter().position(|&c| c == b' '));
            proptest::prop_assert_eq!(has_control(&v), v.iter().any(|&c| c < 0x20 || c == 0x7f));
        }
    }

    #[test]
    fn tokens_skip_runs_of_spaces() {
        let mut r = &b"  a  bb c "[..];
        assert_eq!(next_token(&mut r), Some(&b"a"[..]));
        assert_eq!(next_token(&mut r), Some(&b"bb"[..]));
        assert_eq!(next_token(&mut r), Some(&b"c"[..]));
        assert_eq!(next_token(&mut r), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"-"), None);
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u64(b"000000000000000000000000007"), Some(7));
    }

    #[test]
    fn numbers_read_like_memcached() {
        let ok: [(&[u8], u64); 12] = [
            (b"5", 5),
            (b" \t\n\x0b\x0c\r5", 5),
            (b"+5", 5),
            (b"-0", 0),
            (b"5\0junk", 5),
            (b"5 junk", 5),
            (b"5\x0b", 5),
            (
                b"0000000000000000000000000000018446744073709551615",
                u64::MAX,
            ),
            (b"-18446744073709551615", 1),
            (b"-9223372036854775809", (1 << 63) - 1),
            (b" +5\r", 5),
            (b"007", 7),
        ];
        for (t, v) in ok {
            assert_eq!(parse_number(t), Some(v), "{t:?}");
        }
        let bad: [&[u8]; 14] = [
            b"",
            b" ",
            b"+",
            b"-",
            b"-1",
            b"-9223372036854775808",
            b"+-1",
            b"++1",
            b"+ 1",
            b"\x001",
            b"1x",
            b"0x1",
            b"18446744073709551616",
            b"\xa01",
        ];
        for t in bad {
            assert_eq!(parse_number(t), None, "{t:?}");
        }
    }
}
