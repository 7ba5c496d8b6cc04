//! memcached text-protocol conformance of the `no_std` front end (parser and engine over a
//! RAM table), without sockets. The expected replies are memcached 1.6's (checked against
//! it with scripts/memcached_compare.py).

use tickcache::memcached::{Driver, Event, Memcached, Now, Parser, Step};
use tickcache::Table;

const ITEM_MAX: usize = 100;
const LINE_MAX: usize = 512;
/// The input buffer: one longest line and one largest data block.
const BUF: usize = LINE_MAX + ITEM_MAX + 2;
type Engine = Memcached<Table<64, 250, 112>, 112>;

/// One connection: the driver with its fixed input buffer, and the engine it talks to.
struct Conn {
    driver: Driver<[u8; BUF]>,
    engine: Box<Engine>,
    now: Now,
    closed: bool,
}

impl Conn {
    fn new() -> Self {
        Conn {
            driver: Driver::new([0; BUF], ITEM_MAX, LINE_MAX),
            engine: Box::new(Memcached::new(Table::new(), ITEM_MAX, 0)),
            now: Now {
                ticks: 1_000,
                ticks_per_second: 1_000,
                unix: 1_700_000_000,
            },
            closed: false,
        }
    }

    /// Feeds bytes and returns everything the server would send.
    fn feed(&mut self, mut bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(!self.closed, "connection already closed");
        loop {
            let n = self.driver.feed(bytes);
            bytes = &bytes[n..];
            loop {
                match self.driver.step(&mut *self.engine, &self.now, &mut out) {
                    Ok(Event::Need) => break,
                    Ok(Event::Progress) => {}
                    Ok(Event::Close) => {
                        self.closed = true;
                        return out;
                    }
                    Err(e) => panic!("a Vec sink cannot fail: {e}"),
                }
            }
            assert!(self.driver.buffered() <= BUF);
            if bytes.is_empty() {
                return out;
            }
        }
    }

    fn ask(&mut self, bytes: &str) -> String {
        String::from_utf8(self.feed(bytes.as_bytes())).unwrap()
    }

    fn advance(&mut self, secs: u64) {
        self.now.ticks += secs * 1_000;
        self.now.unix += secs;
    }
}

/// Masks the cas unique of `gets` replies.
fn no_cas(s: &str) -> String {
    s.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            if f.len() == 5 && f[0] == "VALUE" {
                format!("{} {} {} {} <cas>\r\n", f[0], f[1], f[2], f[3])
            } else {
                format!("{l}\r\n")
            }
        })
        .collect()
}

#[test]
fn storage_commands() {
    let mut c = Conn::new();
    assert_eq!(c.ask("set a 5 0 3\r\nabc\r\n"), "STORED\r\n");
    assert_eq!(c.ask("get a\r\n"), "VALUE a 5 3\r\nabc\r\nEND\r\n");
    assert_eq!(c.ask("add a 0 0 1\r\nx\r\n"), "NOT_STORED\r\n");
    assert_eq!(c.ask("add b 7 0 1\r\nx\r\n"), "STORED\r\n");
    assert_eq!(c.ask("replace zz 0 0 1\r\nx\r\n"), "NOT_STORED\r\n");
    assert_eq!(c.ask("replace b 8 0 2\r\nyy\r\n"), "STORED\r\n");
    assert_eq!(c.ask("append b 1 0 1\r\nz\r\n"), "STORED\r\n");
    assert_eq!(c.ask("prepend b 1 0 1\r\nw\r\n"), "STORED\r\n");
    assert_eq!(c.ask("append nope 0 0 1\r\nz\r\n"), "NOT_STORED\r\n");
    // append/prepend keep the flags.
    assert_eq!(
        c.ask("get b a\r\n"),
        "VALUE b 8 4\r\nwyyz\r\nVALUE a 5 3\r\nabc\r\nEND\r\n"
    );
    assert_eq!(c.ask("get a a nope\r\n").matches("VALUE").count(), 2);
    assert_eq!(
        c.ask("set e 0 0 0\r\n\r\nget e\r\n"),
        "STORED\r\nVALUE e 0 0\r\n\r\nEND\r\n"
    );
    // Binary data, including CR LF inside, is stored as is.
    assert_eq!(
        c.feed(b"set bin 0 0 6\r\n\x00\r\n\xff\r\n\r\nget bin\r\n"),
        b"STORED\r\nVALUE bin 0 6\r\n\x00\r\n\xff\r\n\r\nEND\r\n"
    );
    // Flags are u32.
    assert_eq!(
        c.ask("set f 4294967295 0 1\r\nx\r\nget f\r\n"),
        "STORED\r\nVALUE f 4294967295 1\r\nx\r\nEND\r\n"
    );
}

#[test]
fn cas_uniques() {
    let mut c = Conn::new();
    c.ask("set a 0 0 1\r\nx\r\n");
    let r = c.ask("gets a\r\n");
    let unique: u64 = r.split_whitespace().nth(4).unwrap().parse().unwrap();
    assert_eq!(no_cas(&r), "VALUE a 0 1 <cas>\r\nx\r\nEND\r\n");
    assert_eq!(
        c.ask(&format!("cas a 3 0 1 {}\r\ny\r\n", unique + 1)),
        "EXISTS\r\n"
    );
    assert_eq!(
        c.ask(&format!("cas a 3 0 1 {unique}\r\ny\r\n")),
        "STORED\r\n"
    );
    assert_eq!(
        c.ask(&format!("cas a 3 0 1 {unique}\r\nz\r\n")),
        "EXISTS\r\n"
    );
    assert_eq!(c.ask("cas nope 0 0 1 1\r\nz\r\n"), "NOT_FOUND\r\n");
    assert_eq!(c.ask("get a\r\n"), "VALUE a 3 1\r\ny\r\nEND\r\n");
    // Every write changes the unique; touch does not.
    let u1 = c.ask("gets a\r\n");
    c.ask("touch a 100\r\n");
    assert_eq!(c.ask("gets a\r\n"), u1);
    c.ask("append a 0 0 1\r\n!\r\n");
    assert_ne!(no_cas(&c.ask("gets a\r\n")), u1);
}

#[test]
fn delete_and_touch() {
    let mut c = Conn::new();
    c.ask("set a 0 10 1\r\nx\r\n");
    assert_eq!(c.ask("touch a 100\r\n"), "TOUCHED\r\n");
    c.advance(50);
    assert_eq!(c.ask("get a\r\n"), "VALUE a 0 1\r\nx\r\nEND\r\n");
    assert_eq!(c.ask("touch nope 1\r\n"), "NOT_FOUND\r\n");
    assert_eq!(c.ask("delete a\r\n"), "DELETED\r\n");
    assert_eq!(c.ask("delete a\r\n"), "NOT_FOUND\r\n");
    assert_eq!(c.ask("delete a 0\r\n"), "NOT_FOUND\r\n");
    assert_eq!(
        c.ask("delete a 5\r\n"),
        "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
    );
    c.ask("set b 0 0 1\r\nx\r\n");
    assert_eq!(c.ask("touch b -1\r\n"), "TOUCHED\r\n");
    assert_eq!(c.ask("get b\r\n"), "END\r\n");
}

#[test]
fn get_and_touch() {
    let mut c = Conn::new();
    c.ask("set a 1 10 1\r\nx\r\n");
    assert_eq!(c.ask("gat 100 a nope\r\n"), "VALUE a 1 1\r\nx\r\nEND\r\n");
    c.advance(50);
    assert_eq!(
        no_cas(&c.ask("gats 0 a\r\n")),
        "VALUE a 1 1 <cas>\r\nx\r\nEND\r\n"
    );
    c.advance(100_000);
    assert_eq!(c.ask("get a\r\n"), "VALUE a 1 1\r\nx\r\nEND\r\n");
    // A negative exptime returns the item once, then it is gone.
    assert_eq!(c.ask("gat -1 a\r\n"), "VALUE a 1 1\r\nx\r\nEND\r\n");
    assert_eq!(c.ask("get a\r\n"), "END\r\n");
    assert_eq!(
        c.ask("gat x a\r\n"),
        "CLIENT_ERROR invalid exptime argument\r\n"
    );
    assert_eq!(c.ask("gat 10\r\n"), "ERROR\r\n");
}

#[test]
fn expiry_rules() {
    let mut c = Conn::new();
    assert_eq!(c.ask("set a 0 -1 1\r\nx\r\nget a\r\n"), "STORED\r\nEND\r\n");
    c.ask("set old 0 0 1\r\nx\r\n");
    assert_eq!(
        c.ask("set old 0 -1 1\r\ny\r\nget old\r\n"),
        "STORED\r\nEND\r\n"
    );
    assert_eq!(c.ask("add n 0 -1 1\r\nx\r\nget n\r\n"), "STORED\r\nEND\r\n");
    c.ask("set t 0 5 1\r\nx\r\nset forever 0 0 1\r\nx\r\n");
    c.advance(4);
    assert!(c.ask("get t\r\n").starts_with("VALUE"));
    c.advance(1);
    assert_eq!(c.ask("get t\r\n"), "END\r\n");
    // Above 30 days an exptime is a Unix time.
    let at = c.now.unix + 100;
    c.ask(&format!("set u 0 {at} 1\r\nx\r\n"));
    let past = c.now.unix - 1;
    assert_eq!(
        c.ask(&format!("set p 0 {past} 1\r\nx\r\nget p\r\n")),
        "STORED\r\nEND\r\n"
    );
    c.advance(99);
    assert!(c.ask("get u\r\n").starts_with("VALUE"));
    c.advance(1);
    assert_eq!(c.ask("get u\r\n"), "END\r\n");
    c.advance(10_000_000);
    assert!(c.ask("get forever\r\n").starts_with("VALUE"));
}

#[test]
fn incr_decr() {
    let mut c = Conn::new();
    c.ask("set n 9 100 2\r\n10\r\n");
    assert_eq!(c.ask("incr n 5\r\n"), "15\r\n");
    assert_eq!(c.ask("decr n 6\r\n"), "9\r\n");
    // Shorter results are padded in place, as memcached does; flags are kept.
    assert_eq!(c.ask("get n\r\n"), "VALUE n 9 2\r\n9 \r\nEND\r\n");
    assert_eq!(c.ask("decr n 100\r\n"), "0\r\n");
    assert_eq!(
        c.ask("set m 0 0 20\r\n18446744073709551615\r\nincr m 2\r\n"),
        "STORED\r\n1\r\n"
    );
    assert_eq!(c.ask("incr nope 1\r\n"), "NOT_FOUND\r\n");
    for bad in ["abc", "-5", "1.5", "12x"] {
        c.ask(&format!("set s 0 0 {}\r\n{bad}\r\n", bad.len()));
        assert_eq!(
            c.ask("incr s 1\r\n"),
            "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
            "{bad}"
        );
    }
    assert_eq!(
        c.ask("incr n -1\r\n"),
        "CLIENT_ERROR invalid numeric delta argument\r\n"
    );
    assert_eq!(
        c.ask("incr n 18446744073709551616\r\n"),
        "CLIENT_ERROR invalid numeric delta argument\r\n"
    );
    // The expiry is kept.
    c.advance(99);
    assert_eq!(c.ask("incr n 1\r\n"), "1\r\n");
    c.advance(1);
    assert_eq!(c.ask("incr n 1\r\n"), "NOT_FOUND\r\n");
}

/// Stores `data` under `n`, runs `op n delta`, and returns the reply and what `get n`
/// shows afterwards.
fn arith_on(data: &[u8], op: &str, delta: &[u8]) -> (String, String) {
    let mut c = Conn::new();
    let mut set = format!("set n 0 0 {}\r\n", data.len()).into_bytes();
    set.extend_from_slice(data);
    set.extend_from_slice(b"\r\n");
    assert_eq!(c.feed(&set), b"STORED\r\n");
    let mut cmd = format!("{op} n ").into_bytes();
    cmd.extend_from_slice(delta);
    cmd.extend_from_slice(b"\r\n");
    let reply = String::from_utf8_lossy(&c.feed(&cmd)).into_owned();
    let after = String::from_utf8_lossy(&c.feed(b"get n\r\n")).into_owned();
    (reply, after)
}

const NON_NUMERIC: &str = "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";
const BAD_DELTA: &str = "CLIENT_ERROR invalid numeric delta argument\r\n";

#[test]
fn incr_reads_the_stored_value_like_memcached() {
    // (stored data, reply to `incr n 1`, data afterwards), as memcached 1.6.18 answers.
    let zeros30 = format!("{}7", "0".repeat(30));
    let cases: Vec<(Vec<u8>, &str, Vec<u8>)> = vec![
        (b"5".to_vec(), "6", b"6".to_vec()),
        (b" 5".to_vec(), "6", b"6 ".to_vec()),
        (b"\t5".to_vec(), "6", b"6 ".to_vec()),
        (b"\x0b5".to_vec(), "6", b"6 ".to_vec()),
        (b"\x0c5".to_vec(), "6", b"6 ".to_vec()),
        (b"\r\n5".to_vec(), "6", b"6  ".to_vec()),
        (b"+5".to_vec(), "6", b"6 ".to_vec()),
        (b" +5".to_vec(), "6", b"6  ".to_vec()),
        (b"-0".to_vec(), "1", b"1 ".to_vec()),
        (b"5\0".to_vec(), "6", b"6 ".to_vec()),
        (b"5\0abc".to_vec(), "6", b"6    ".to_vec()),
        (b"5 abc".to_vec(), "6", b"6    ".to_vec()),
        (b"5\x0bx".to_vec(), "6", b"6  ".to_vec()),
        (b"5\rx".to_vec(), "6", b"6  ".to_vec()),
        (b"5\nx".to_vec(), "6", b"6  ".to_vec()),
        (
            zeros30.into_bytes(),
            "8",
            format!("8{}", " ".repeat(30)).into_bytes(),
        ),
        (
            vec![b'0'; 40],
            "1",
            format!("1{}", " ".repeat(39)).into_bytes(),
        ),
        (
            b"00000000000000000000018446744073709551615".to_vec(),
            "0",
            format!("0{}", " ".repeat(40)).into_bytes(),
        ),
        (
            b"-18446744073709551615".to_vec(),
            "2",
            format!("2{}", " ".repeat(20)).into_bytes(),
        ),
        (
            b"-9223372036854775809".to_vec(),
            "9223372036854775808",
            b"9223372036854775808 ".to_vec(),
        ),
    ];
    for (data, reply, after) in cases {
        let (got, shown) = arith_on(&data, "incr", b"1");
        assert_eq!(got, format!("{reply}\r\n"), "{data:?}");
        let mut want = format!("VALUE n 0 {}\r\n", after.len()).into_bytes();
        want.extend_from_slice(&after);
        want.extend_from_slice(b"\r\nEND\r\n");
        assert_eq!(shown.as_bytes(), &want[..], "{data:?}");
    }
    for data in [
        &b"-5"[..],
        b"+-5",
        b"++5",
        b"+ 5",
        b"5x",
        b"0x5",
        b"\x005",
        b"",
        b"18446744073709551616",
        b"99999999999999999999999",
        b"-9223372036854775808",
        b"\xa05",
    ] {
        let (got, shown) = arith_on(data, "incr", b"1");
        assert_eq!(got, NON_NUMERIC, "{data:?}");
        assert!(
            shown.starts_with(&format!("VALUE n 0 {}\r\n", data.len())),
            "{data:?}"
        );
    }
}

#[test]
fn incr_decr_read_the_delta_like_memcached() {
    // Stored "10": (delta, reply to incr, reply to decr), as memcached 1.6.18 answers.
    let cases: [(&[u8], &str, &str); 14] = [
        (b"+1", "11", "9"),
        (b"-0", "10", "10"),
        (b"\x0b1", "11", "9"),
        (b"\t1", "11", "9"),
        (b"\x0c1", "11", "9"),
        (b"\r1", "11", "9"),
        (b"1\t", "11", "9"),
        (b"1\x0b", "11", "9"),
        (b"1\0", "11", "9"),
        (b"1\0x", "11", "9"),
        (b"1\rx", "11", "9"),
        (b"0000000000000000000000000000003", "13", "7"),
        (b"-18446744073709551615", "11", "9"),
        (b"-9223372036854775809", "9223372036854775817", "0"),
    ];
    for (delta, up, down) in cases {
        assert_eq!(
            arith_on(b"10", "incr", delta).0,
            format!("{up}\r\n"),
            "{delta:?}"
        );
        assert_eq!(
            arith_on(b"10", "decr", delta).0,
            format!("{down}\r\n"),
            "{delta:?}"
        );
    }
    for delta in [
        &b"-1"[..],
        b"-5",
        b"1x",
        b"-9223372036854775808",
        b"18446744073709551616",
        b"+",
        b"-",
        b"+-1",
        b"0x1",
    ] {
        for op in ["incr", "decr"] {
            let (got, shown) = arith_on(b"10", op, delta);
            assert_eq!(got, BAD_DELTA, "{op} {delta:?}");
            assert_eq!(shown, "VALUE n 0 2\r\n10\r\nEND\r\n");
        }
    }
    // A line ends at its first NUL: `incr n \01` has no delta.
    assert_eq!(arith_on(b"10", "incr", b"\x001").0, "ERROR\r\n");
}

#[test]
fn incr_decr_pad_results_to_any_stored_length() {
    let mut c = Conn::new();
    let wide = format!("9{}", " ".repeat(40));
    c.ask(&format!("set n 3 0 {}\r\n{wide}\r\n", wide.len()));
    // A longer result than the digits, still within the stored length: padded in place.
    assert_eq!(c.ask("incr n 1\r\n"), "10\r\n");
    assert_eq!(
        c.ask("get n\r\n"),
        format!("VALUE n 3 41\r\n10{}\r\nEND\r\n", " ".repeat(39))
    );
    let long = format!("{}{}", "1".repeat(19), " ".repeat(30));
    c.ask(&format!("set m 0 0 {}\r\n{long}\r\n", long.len()));
    assert_eq!(c.ask("incr m 1\r\n"), "1111111111111111112\r\n");
    assert_eq!(
        c.ask("get m\r\n"),
        format!(
            "VALUE m 0 49\r\n1111111111111111112{}\r\nEND\r\n",
            " ".repeat(30)
        )
    );
    // The full item size: 100 bytes of zeros and a 1.
    let big = format!("{}1", "0".repeat(ITEM_MAX - 1));
    c.ask(&format!("set b 0 0 {ITEM_MAX}\r\n{big}\r\n"));
    assert_eq!(c.ask("decr b 1\r\n"), "0\r\n");
    assert_eq!(
        c.ask("get b\r\n"),
        format!(
            "VALUE b 0 {ITEM_MAX}\r\n0{}\r\nEND\r\n",
            " ".repeat(ITEM_MAX - 1)
        )
    );
    // A result longer than the stored data makes the item longer.
    assert_eq!(
        c.ask("set s 0 0 1\r\n9\r\nincr s 1\r\nget s\r\n"),
        "STORED\r\n10\r\nVALUE s 0 2\r\n10\r\nEND\r\n"
    );
}

#[test]
fn cas_unique_is_read_like_an_incr_delta() {
    fn unique(c: &mut Conn) -> u64 {
        let r = c.ask("gets n\r\n");
        r.split_whitespace().nth(4).unwrap().parse().unwrap()
    }
    let mut c = Conn::new();
    c.ask("set n 0 0 1\r\nx\r\n");
    // Each spelling memcached 1.6.18 accepts for the unique, each matching it.
    for spelling in [
        |u: u64| format!("+{u}"),
        |u: u64| format!("\x0b\t{u}"),
        |u: u64| format!("{u}\x0b"),
        |u: u64| format!("{u:0>30}"),
        |u: u64| format!("-{}", u.wrapping_neg()),
    ] {
        let u = unique(&mut c);
        let cmd = format!("cas n 0 0 1 {}\r\ny\r\n", spelling(u));
        assert_eq!(c.ask(&cmd), "STORED\r\n", "{cmd:?}");
    }
    // `-0` is 0, which no item has.
    assert_eq!(c.ask("cas n 0 0 1 -0\r\ny\r\n"), "EXISTS\r\n");
    // Refused spellings: the line is a bad command line, its data block a line of its own.
    for bad in ["-1", "1x", "+-1", "18446744073709551616"] {
        assert_eq!(
            c.ask(&format!("cas n 0 0 1 {bad}\r\ny\r\n")),
            "CLIENT_ERROR bad command line format\r\nERROR\r\n",
            "{bad}"
        );
    }
}

#[test]
fn a_command_line_ends_at_its_first_nul() {
    let mut c = Conn::new();
    c.ask("set n 0 0 2\r\n10\r\n");
    assert_eq!(c.feed(b"get n\0 zz\r\n"), b"VALUE n 0 2\r\n10\r\nEND\r\n");
    assert_eq!(c.feed(b"incr n\0 1\r\n"), b"ERROR\r\n");
    assert_eq!(c.feed(b"incr n 1 noreply\0 junk\r\n"), b"");
    assert_eq!(c.feed(b"touch n 0\0x\r\n"), b"TOUCHED\r\n");
    assert_eq!(c.feed(b"\0get n\r\n"), b"ERROR\r\n");
    // The data block is not a line: a NUL in it is data.
    assert_eq!(
        c.feed(b"set n 0 0 1 noreply\0\r\nx\r\nset z 0 0 3\r\na\0b\r\nget n z\r\n"),
        b"STORED\r\nVALUE n 0 1\r\nx\r\nVALUE z 0 3\r\na\0b\r\nEND\r\n"
    );
}

#[test]
fn flush_version_stats_verbosity_quit() {
    let mut c = Conn::new();
    c.ask("set a 0 0 1\r\nx\r\n");
    assert_eq!(c.ask("flush_all\r\nget a\r\n"), "OK\r\nEND\r\n");
    c.ask("set a 0 0 1\r\nx\r\n");
    assert_eq!(c.ask("flush_all 10\r\n"), "OK\r\n");
    assert!(c.ask("get a\r\n").starts_with("VALUE"));
    c.advance(10);
    assert_eq!(c.ask("get a\r\n"), "END\r\n");
    assert_eq!(
        c.ask("flush_all x\r\n"),
        "CLIENT_ERROR invalid exptime argument\r\n"
    );
    assert!(c.ask("version\r\n").starts_with("VERSION "));
    let stats = c.ask("stats\r\n");
    assert!(
        stats.contains("STAT cmd_get ") && stats.ends_with("END\r\n"),
        "{stats}"
    );
    assert_eq!(c.ask("stats reset\r\n"), "RESET\r\n");
    assert_eq!(c.ask("stats items please\r\n"), "ERROR\r\n");
    assert_eq!(c.ask("verbosity 1\r\n"), "OK\r\n");
    assert_eq!(c.ask("verbosity\r\n"), "ERROR\r\n");
    assert_eq!(c.ask("quit\r\nget a\r\n"), "");
    assert!(c.closed);
}

#[test]
fn noreply_silences_every_reply() {
    let mut c = Conn::new();
    let all =
        "set a 0 0 1 noreply\r\n1\r\nadd a 0 0 1 noreply\r\nx\r\nreplace a 0 0 1 noreply\r\n2\r\n\
               append a 0 0 1 noreply\r\n3\r\nprepend a 0 0 1 noreply\r\n0\r\nincr a 1 noreply\r\n\
               decr a 1 noreply\r\ntouch a 100 noreply\r\ncas a 0 0 1 1 noreply\r\nx\r\n\
               delete nope noreply\r\nverbosity 1 noreply\r\nincr a x noreply\r\n\
               set big 0 0 1000 noreply\r\n";
    assert_eq!(c.ask(all), "");
    assert_eq!(c.ask(&"z".repeat(1002)), "");
    assert_eq!(c.ask("get a\r\n"), "VALUE a 0 3\r\n23 \r\nEND\r\n");
    assert_eq!(
        c.ask("flush_all noreply\r\nflush_all 0 noreply\r\nget a\r\n"),
        "END\r\n"
    );
}

#[test]
fn malformed_lines() {
    let mut c = Conn::new();
    let cases: &[(&str, &str)] = &[
        ("\r\n", "ERROR\r\n"),
        ("bogus\r\n", "ERROR\r\n"),
        ("GET a\r\n", "ERROR\r\n"),
        ("get\r\n", "ERROR\r\n"),
        ("set a 0 0\r\n", "ERROR\r\n"),
        ("set a 0 0 1 noreply extra\r\n", "ERROR\r\n"),
        (
            "set a x 0 1\r\n",
            "CLIENT_ERROR bad command line format\r\nERROR\r\n",
        ),
        (
            "set a 0 x 1\r\n",
            "CLIENT_ERROR bad command line format\r\nERROR\r\n",
        ),
        (
            "set a 0 0 -1\r\n",
            "CLIENT_ERROR bad command line format\r\nERROR\r\n",
        ),
        (
            "set a -1 0 1\r\n",
            "CLIENT_ERROR bad command line format\r\nERROR\r\n",
        ),
        (
            "set a 4294967296 0 1\r\n",
            "CLIENT_ERROR bad command line format\r\nERROR\r\n",
        ),
        (
            "cas a 0 0 1 x\r\n",
            "CLIENT_ERROR bad command line format\r\nERROR\r\n",
        ),
        ("incr\r\n", "ERROR\r\n"),
        ("incr a\r\n", "ERROR\r\n"),
        ("touch a\r\n", "ERROR\r\n"),
        ("touch a x\r\n", "CLIENT_ERROR invalid exptime argument\r\n"),
        ("delete\r\n", "ERROR\r\n"),
        ("version now\r\n", "ERROR\r\n"),
        ("flush_all 1 2 3\r\n", "ERROR\r\n"),
    ];
    for (line, want) in cases {
        // The data line "x" of a refused storage command is read as a command.
        let input = if line.starts_with("set") || line.starts_with("cas") {
            format!("{line}x\r\n")
        } else {
            line.to_string()
        };
        let want = if input.ends_with("x\r\n")
            && want.ends_with("ERROR\r\n")
            && !want.contains("ERROR\r\nERROR")
            && want.starts_with("ERROR")
        {
            "ERROR\r\nERROR\r\n".to_string()
        } else {
            want.to_string()
        };
        assert_eq!(c.ask(&input), want, "{line:?}");
    }
}

#[test]
fn key_rules() {
    let mut c = Conn::new();
    let k250 = "k".repeat(250);
    assert_eq!(c.ask(&format!("set {k250} 0 0 1\r\nx\r\n")), "STORED\r\n");
    assert!(c.ask(&format!("get {k250}\r\n")).starts_with("VALUE"));
    let k251 = "k".repeat(251);
    assert_eq!(
        c.ask(&format!("set {k251} 0 0 1\r\nx\r\n")),
        "CLIENT_ERROR bad command line format\r\nERROR\r\n"
    );
    assert_eq!(
        c.ask(&format!("get a {k251}\r\n")),
        "CLIENT_ERROR bad command line format\r\n"
    );
    assert_eq!(
        c.feed(b"get a\x01b\r\n"),
        b"CLIENT_ERROR bad command line format\r\n"
    );
    assert_eq!(
        c.feed(b"delete a\x7f\r\n"),
        b"CLIENT_ERROR bad command line format\r\n"
    );
    // UTF-8 keys are bytes.
    assert_eq!(
        c.ask("set :1:Iñtërnâtiônàlizætiøn 16 0 1\r\nx\r\n"),
        "STORED\r\n"
    );
}

#[test]
fn wrong_byte_counts() {
    let mut c = Conn::new();
    // Too many bytes: the block is refused and the rest is read as a line.
    assert_eq!(
        c.ask("set a 0 0 2\r\nxyz\r\n"),
        "CLIENT_ERROR bad data chunk\r\nERROR\r\n"
    );
    // Too few: the next line is taken as data.
    assert_eq!(
        c.ask("set a 0 0 5\r\nxy\r\nget a\r\n"),
        "CLIENT_ERROR bad data chunk\r\nERROR\r\n"
    );
    assert_eq!(c.ask("get a\r\n"), "END\r\n");
}

#[test]
fn giant_lengths_and_oversized_items() {
    let mut c = Conn::new();
    c.ask("set a 0 0 1\r\nx\r\nset keep 0 0 1\r\nk\r\n");
    // Beyond i32: refused at once, nothing is swallowed.
    assert_eq!(
        c.ask("set a 0 0 99999999999999999999\r\n"),
        "CLIENT_ERROR bad command line format\r\n"
    );
    assert_eq!(
        c.ask("set a 0 0 2147483645\r\n"),
        "SERVER_ERROR object too large for cache\r\n"
    );
    // The announced block is discarded as it arrives, in bounded memory.
    for _ in 0..1000 {
        assert_eq!(c.feed(&[b'z'; 4096]), b"");
    }
    assert!(c.driver.partial());
    let mut c = Conn::new();
    c.ask("set a 0 0 1\r\nx\r\nset keep 0 0 1\r\nk\r\n");
    let big = "b".repeat(ITEM_MAX + 1);
    // A too-large set removes the old value; add and others do not.
    assert_eq!(
        c.ask(&format!("set a 0 0 {}\r\n{big}\r\nget a\r\n", big.len())),
        "SERVER_ERROR object too large for cache\r\nEND\r\n"
    );
    assert_eq!(
        c.ask(&format!(
            "add keep 0 0 {}\r\n{big}\r\nget keep\r\n",
            big.len()
        )),
        "SERVER_ERROR object too large for cache\r\nVALUE keep 0 1\r\nk\r\nEND\r\n"
    );
    let fits = "f".repeat(ITEM_MAX);
    assert_eq!(
        c.ask(&format!("set a 0 0 {ITEM_MAX}\r\n{fits}\r\n")),
        "STORED\r\n"
    );
    assert_eq!(
        c.ask("append a 0 0 1\r\n!\r\n"),
        "SERVER_ERROR object too large for cache\r\n"
    );
    assert!(c.ask("get a\r\n").contains(&fits));
}

#[test]
fn binary_garbage_never_panics_and_stays_bounded() {
    let mut c = Conn::new();
    let mut x: u64 = 0x1234_5678_9abc_def0;
    for _ in 0..2000 {
        let mut chunk = [0u8; 97];
        for b in chunk.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        if c.closed {
            c = Conn::new();
        }
        let _ = c.feed(&chunk);
    }
    // A line longer than the limit closes the connection.
    let mut c = Conn::new();
    assert_eq!(c.ask(&"x".repeat(600)), "CLIENT_ERROR line too long\r\n");
    assert!(c.closed);
}

#[test]
fn commands_split_at_every_byte() {
    let script = "set a 1 0 3\r\nabc\r\nget a\r\nappend a 0 0 2\r\nde\r\nincr n 1\r\n\
                  set n 0 0 1\r\n7\r\nincr n 5\r\ngets a b\r\ndelete a\r\ntouch n 10\r\n\
                  set big 0 0 150\r\n"
        .to_string()
        + &"q".repeat(150)
        + "\r\nget big n\r\nset x 0 0 2 noreply\r\nhi\r\nget x\r\n";
    let mut whole = Conn::new();
    let want = no_cas(&String::from_utf8(whole.feed(script.as_bytes())).unwrap());
    assert!(want.contains("SERVER_ERROR object too large"));
    let bytes = script.as_bytes();
    for cut in 0..=bytes.len() {
        let mut c = Conn::new();
        let mut got = c.feed(&bytes[..cut]);
        got.extend(c.feed(&bytes[cut..]));
        assert_eq!(
            no_cas(&String::from_utf8(got).unwrap()),
            want,
            "cut at {cut}"
        );
    }
    // And one byte at a time.
    let mut c = Conn::new();
    let mut got = Vec::new();
    for b in bytes {
        got.extend(c.feed(&[*b]));
    }
    assert_eq!(no_cas(&String::from_utf8(got).unwrap()), want);
}

#[test]
fn need_more_consumes_nothing() {
    let mut p = Parser::new(10, 64);
    for partial in [
        &b"get a"[..],
        b"set a 0 0 5\r\nab",
        b"set a 0 0 5\r\nabcde\r",
        b"",
    ] {
        assert_eq!(p.next(partial), Step::Need);
    }
}

#[test]
fn lru_eviction_when_full() {
    let mut c = Conn::new();
    for i in 0..64 {
        c.ask(&format!("set k{i} 0 0 1\r\nx\r\n"));
    }
    c.ask("get k0\r\n");
    c.ask("set new 0 0 1\r\nx\r\n");
    assert!(c.ask("get k0\r\n").starts_with("VALUE"));
    assert!(c.ask("get new\r\n").starts_with("VALUE"));
}

/// Runs `input` through a driver with a `heapless::Vec` sink of `SINK` bytes drained after
/// every step, as firmware does; returns the replies, and for each step that overflowed
/// the sink the bytes it had written (which are dropped).
fn through_small_sink<const SINK: usize>(
    driver: &mut Driver<[u8; BUF]>,
    engine: &mut Engine,
    now: &Now,
    mut input: &[u8],
) -> (Vec<u8>, Vec<usize>) {
    let mut sent = Vec::new();
    let mut overflows = Vec::new();
    let mut out: heapless::Vec<u8, SINK> = heapless::Vec::new();
    loop {
        let n = driver.feed(input);
        input = &input[n..];
        loop {
            match driver.step(&mut *engine, now, &mut out) {
                Ok(Event::Need) => break,
                Ok(_) => sent.extend_from_slice(&out),
                Err(e) => {
                    assert!(e.error.is_some(), "a heapless::Vec reports its error");
                    assert_eq!(e.written, out.len());
                    overflows.push(e.written);
                }
            }
            out.clear();
        }
        if input.is_empty() {
            return (sent, overflows);
        }
    }
}

#[test]
fn a_reply_larger_than_the_sink_is_an_error_line() {
    let mut c = Conn::new();
    let v = "v".repeat(60);
    c.ask(&format!(
        "set a 0 0 2\r\naa\r\nset big 0 0 60\r\n{v}\r\nset b 0 0 2\r\nbb\r\n"
    ));
    // 64 bytes hold `VALUE a 0 2\r\naa\r\n` but not the big item's block, nor `stats`.
    let (sent, overflows) = through_small_sink::<64>(
        &mut c.driver,
        &mut c.engine,
        &c.now,
        b"get a big b\r\nget b\r\nstats\r\nversion\r\n",
    );
    let sent = String::from_utf8(sent).unwrap();
    assert_eq!(
        sent.replace(env!("CARGO_PKG_VERSION"), "x"),
        "VALUE a 0 2\r\naa\r\n\
         SERVER_ERROR reply larger than the output buffer\r\n\
         VALUE b 0 2\r\nbb\r\nEND\r\n\
         SERVER_ERROR reply larger than the output buffer\r\n\
         VERSION x-tickcache\r\n"
    );
    assert_eq!(overflows.len(), 2);
    // The connection goes on as usual.
    assert_eq!(c.ask("get b\r\n"), "VALUE b 0 2\r\nbb\r\nEND\r\n");
}

#[test]
fn multi_gets_stream_key_by_key() {
    let mut c = Conn::new();
    for i in 0..40 {
        c.ask(&format!("set k{i} {i} 0 40\r\n{}\r\n", "x".repeat(40)));
    }
    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    let line = format!("get {}\r\n", keys.join(" "));
    let want = c.ask(&line);
    assert_eq!(want.matches("VALUE").count(), 40);
    // Each step's output fits a sink of one block (about 60 bytes), never the whole reply
    // of about 2,400.
    let (sent, overflows) =
        through_small_sink::<64>(&mut c.driver, &mut c.engine, &c.now, line.as_bytes());
    assert!(overflows.is_empty());
    assert_eq!(String::from_utf8(sent).unwrap(), want);
}

#[test]
fn two_thousand_keys_in_one_get_with_a_growable_buffer() {
    use tickcache::memcached::GrowBuf;
    let mut engine = Box::new(Engine::new(Table::new(), ITEM_MAX, 0));
    let now = Conn::new().now;
    let mut d = Driver::new(
        GrowBuf::new(256, 64 * 1024 + ITEM_MAX + 2),
        ITEM_MAX,
        64 * 1024,
    );
    let mut out = Vec::new();
    d.feed(b"set k7 0 0 1\r\nx\r\n");
    while d.step(&mut *engine, &now, &mut out).unwrap() != Event::Need {}
    assert_eq!(out, b"STORED\r\n");
    let keys: Vec<String> = (0..2000).map(|i| format!("k{}", i % 10)).collect();
    let line = format!("get {}\r\n", keys.join(" "));
    let mut input = line.as_bytes();
    let (mut steps, mut largest) = (0, 0);
    out.clear();
    while !input.is_empty() {
        let n = d.feed(input);
        input = &input[n..];
        loop {
            let before = out.len();
            let e = d.step(&mut *engine, &now, &mut out).unwrap();
            largest = largest.max(out.len() - before);
            if e == Event::Need {
                break;
            }
            steps += 1;
        }
    }
    assert_eq!(steps, 2000);
    assert!(largest <= "VALUE k7 0 1\r\nx\r\nEND\r\n".len());
    assert_eq!(
        String::from_utf8(out)
            .unwrap()
            .matches("VALUE k7 0 1\r\nx\r\n")
            .count(),
        200
    );
}

#[test]
fn a_long_line_resynchronises_at_the_next_line() {
    use tickcache::memcached::LongLines;
    let mut c = Conn::new();
    c.driver = Driver::new([0; BUF], ITEM_MAX, LINE_MAX).long_lines(LongLines::Resync);
    c.ask("set a 0 0 1\r\nx\r\n");
    let long = format!("get {}\r\nget a\r\n", "k".repeat(3 * BUF));
    assert_eq!(
        c.ask(&long),
        "CLIENT_ERROR line too long\r\nVALUE a 0 1\r\nx\r\nEND\r\n"
    );
    assert!(!c.closed);
    // The same, one byte at a time.
    let mut got = Vec::new();
    for b in long.as_bytes() {
        got.extend(c.feed(&[*b]));
    }
    assert_eq!(
        got,
        b"CLIENT_ERROR line too long\r\nVALUE a 0 1\r\nx\r\nEND\r\n"
    );
}

#[test]
fn a_byte_lost_in_a_value() {
    let mut c = Conn::new();
    // memcached's rule: the block is taken by its length, found not to end in CR LF, and
    // refused; the next line is read from where the block ended.
    assert_eq!(
        c.ask("set a 0 0 10\r\n123456789\r\nget a\r\nget a\r\n"),
        "CLIENT_ERROR bad data chunk\r\nERROR\r\nEND\r\n"
    );
    // A command that never completes is dropped by a reset, and the next one is served.
    assert_eq!(c.ask("set a 0 0 10\r\n123456789\r\n"), "");
    assert!(c.driver.partial());
    assert!(c.driver.reset());
    assert!(!c.driver.reset());
    assert_eq!(c.ask("get a\r\n"), "END\r\n");
    // A reset also ends the discarding of a too-large block.
    assert_eq!(
        c.ask("set a 0 0 1000\r\nxx"),
        "SERVER_ERROR object too large for cache\r\n"
    );
    assert!(c.driver.reset());
    assert_eq!(c.ask("get a\r\n"), "END\r\n");
}
