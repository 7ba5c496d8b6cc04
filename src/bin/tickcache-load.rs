//! `tickcache-load`: a closed-loop load generator for memcached-protocol servers.
//!
//! ```text
//! tickcache-load --addr 127.0.0.1:11211 [--addr 127.0.0.1:21212] [--conns 50] [--secs 10]
//!                [--keys 10000] [--get-percent 90] [--value-size 32] [--pipeline 1]
//!                [--rounds 1] [--threads 1]
//! ```
//!
//! Each connection sends `--pipeline` requests, waits for their replies, and repeats until
//! the time is up: `get` of a random key (90 %) or `set` of a `--value-size` value (10 %),
//! keys of 16 bytes, all keys stored beforehand so every `get` hits (every reply is
//! checked). With several `--addr` the servers are measured one after the other in the
//! same run, with the same settings and random sequence, `--rounds` times in alternation
//! (so a noisy machine disturbs both alike; every other round takes the servers in reverse
//! order, so none always runs right after another), then totalled, with each server's
//! median round and its ratio to the first server's. One event-loop thread drives every
//! connection, or `--threads` of them share the connections.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const USAGE: &str = "\
tickcache-load: a closed-loop load generator for memcached-protocol servers

Each connection sends --pipeline requests, waits for their replies and repeats until the
time is up: a get of a random key (--get-percent) or a set of a --value-size value,
16-byte keys, all stored beforehand. Several --addr are measured one after the other,
--rounds times in alternation (every other round in reverse order), then totalled; with
several rounds each server's median round (by throughput, and the median p99) is printed
with its ratio to the first server.

OPTIONS
  --addr ADDR          server to measure; repeat to compare (default 127.0.0.1:11211)
  --conns N            connections (default 50)
  --secs N             seconds per measurement (default 10)
  --keys N             keys stored first and requested (default 10000)
  --get-percent P      share of gets, the rest are sets (default 90)
  --value-size N       bytes of each value (default 32)
  --pipeline N         requests in flight per connection (default 1)
  --rounds N           measurements per server, alternating (default 1)
  --threads N          load-generator threads, each an event loop driving its share of
                       the connections (default 1)
  --help               this text";

/// The bytes values are made of, repeated to `--value-size`.
const PATTERN: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
/// Latency histogram: 1 µs buckets up to 100 ms, then one overflow bucket.
const BUCKETS: usize = 100_000;

struct Opts {
    addrs: Vec<SocketAddr>,
    conns: usize,
    secs: u64,
    keys: u64,
    get_percent: u64,
    value: Vec<u8>,
    pipeline: usize,
    rounds: usize,
    threads: usize,
}

fn key(i: u64) -> [u8; 16] {
    let mut k = *b"key:000000000000";
    let mut n = i;
    for b in k[4..].iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
    k
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Reads the replies to `replies` requests (`get` of a stored key or `set`), checking each:
/// `STORED`, or one `VALUE` block of `value_len` bytes then `END`.
async fn read_replies(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    mut replies: usize,
    value_len: usize,
) -> io::Result<()> {
    buf.clear();
    let mut at = 0;
    let bad = |what: &[u8]| {
        let what = String::from_utf8_lossy(&what[..what.len().min(80)]).into_owned();
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected reply {what:?}"),
        )
    };
    while replies > 0 {
        // One complete reply at `at`?
        let rest = &buf[at..];
        let used = if rest.starts_with(b"STORED\r\n") {
            Some(8)
        } else if rest.starts_with(b"VALUE ") {
            match rest.iter().position(|&b| b == b'\n') {
                Some(eol) => {
                    let len: Option<usize> = std::str::from_utf8(&rest[..eol - 1])
                        .ok()
                        .and_then(|l| l.rsplit(' ').next()?.parse().ok());
                    if len != Some(value_len) {
                        return Err(bad(rest));
                    }
                    let total = eol + 1 + value_len + 2 + 5;
                    match rest.get(total - 5..total) {
                        Some(b"END\r\n") => Some(total),
                        Some(_) => return Err(bad(rest)),
                        None => None,
                    }
                }
                None => None,
            }
        } else if rest.len() >= 8 || rest.contains(&b'\n') {
            return Err(bad(rest));
        } else {
            None
        };
        if let Some(n) = used {
            at += n;
            replies -= 1;
            continue;
        }
        if buf.capacity() - buf.len() < 16384 {
            buf.reserve(16384);
        }
        let n = s.read_buf(buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

async fn preload(addr: SocketAddr, keys: u64, value: &[u8]) -> io::Result<()> {
    let mut s = TcpStream::connect(addr).await?;
    let mut buf = Vec::new();
    let mut i = 0;
    while i < keys {
        let mut req = Vec::new();
        let batch = (keys - i).min(100);
        for j in i..i + batch {
            set_request(&mut req, &key(j), value);
        }
        s.write_all(&req).await?;
        read_replies(&mut s, &mut buf, batch as usize, value.len()).await?;
        i += batch;
    }
    Ok(())
}

fn set_request(req: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    req.extend_from_slice(b"set ");
    req.extend_from_slice(key);
    req.extend_from_slice(format!(" 0 0 {}\r\n", value.len()).as_bytes());
    req.extend_from_slice(value);
    req.extend_from_slice(b"\r\n");
}

async fn client(
    addr: SocketAddr,
    o: &Opts,
    seed: u64,
    until: Instant,
) -> io::Result<(u64, Vec<u32>)> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut rng = Rng(seed | 1);
    let mut hist = vec![0u32; BUCKETS + 1];
    let mut ops = 0u64;
    let mut req = Vec::with_capacity(128 * o.pipeline);
    let mut buf = Vec::with_capacity(4096);
    while Instant::now() < until {
        req.clear();
        for _ in 0..o.pipeline {
            let r = rng.next();
            let k = key((r >> 8) % o.keys);
            if r % 100 < o.get_percent {
                req.extend_from_slice(b"get ");
                req.extend_from_slice(&k);
                req.extend_from_slice(b"\r\n");
            } else {
                set_request(&mut req, &k, &o.value);
            }
        }
        let t = Instant::now();
        s.write_all(&req).await?;
        read_replies(&mut s, &mut buf, o.pipeline, o.value.len()).await?;
        let us = t.elapsed().as_micros() as usize;
        hist[us.min(BUCKETS)] += o.pipeline as u32;
        ops += o.pipeline as u64;
    }
    Ok((ops, hist))
}

/// The median throughput and the median p99 of some rounds.
fn medians(rounds: &[(f64, usize)]) -> (f64, f64) {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    (
        median(rounds.iter().map(|r| r.0).collect()),
        median(rounds.iter().map(|r| r.1 as f64).collect()),
    )
}

fn percentile(hist: &[u64], total: u64, p: f64) -> usize {
    let want = ((total as f64) * p).ceil() as u64;
    let mut seen = 0;
    for (us, &n) in hist.iter().enumerate() {
        seen += n;
        if seen >= want {
            return us;
        }
    }
    BUCKETS
}

/// Operations, latency histogram and seconds of one measurement.
type Measured = (u64, Vec<u64>, f64);

fn report(label: &str, o: &Opts, (total, hist, secs): &Measured, errors: usize) {
    println!(
        "{label}  conns {}  pipeline {}  ops {total}  throughput {:.0} ops/s  p50 {} us  p99 {} us  p99.9 {} us  errors {errors}",
        o.conns,
        o.pipeline,
        *total as f64 / secs,
        percentile(hist, *total, 0.50),
        percentile(hist, *total, 0.99),
        percentile(hist, *total, 0.999),
    );
}

/// Runs the clients `first, first + step, ...` below `o.conns` on the current thread's
/// event loop until `until`: operations, latency histogram and clients that failed.
async fn clients(
    addr: SocketAddr,
    o: &Opts,
    first: usize,
    step: usize,
    until: Instant,
) -> (u64, Vec<u64>, usize) {
    let mut tasks = Vec::new();
    for c in (first..o.conns).step_by(step) {
        let o2 = Opts {
            addrs: Vec::new(),
            conns: o.conns,
            secs: o.secs,
            keys: o.keys,
            get_percent: o.get_percent,
            value: o.value.clone(),
            pipeline: o.pipeline,
            rounds: 1,
            threads: 1,
        };
        tasks.push(tokio::task::spawn_local(async move {
            client(addr, &o2, 0x9e37_79b9_7f4a_7c15 ^ (c as u64 + 1), until).await
        }));
    }
    let mut total = 0u64;
    let mut hist = vec![0u64; BUCKETS + 1];
    let mut errors = 0;
    for t in tasks {
        match t.await {
            Ok(Ok((ops, h))) => {
                total += ops;
                for (a, b) in hist.iter_mut().zip(h) {
                    *a += u64::from(b);
                }
            }
            _ => errors += 1,
        }
    }
    (total, hist, errors)
}

async fn measure(addr: SocketAddr, o: &Opts) -> io::Result<Measured> {
    let start = Instant::now();
    let until = start + Duration::from_secs(o.secs);
    let (total, hist, errors) = if o.threads <= 1 {
        clients(addr, o, 0, 1, until).await
    } else {
        // Each thread its own event loop with every `threads`-th connection.
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..o.threads)
                .map(|t| {
                    scope.spawn(move || -> io::Result<(u64, Vec<u64>, usize)> {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()?;
                        let local = tokio::task::LocalSet::new();
                        Ok(local.block_on(&rt, clients(addr, o, t, o.threads, until)))
                    })
                })
                .collect();
            let mut sum = (0u64, vec![0u64; BUCKETS + 1], 0usize);
            for h in handles {
                let (ops, hist, errors) = h
                    .join()
                    .map_err(|_| io::Error::other("a load thread panicked"))??;
                sum.0 += ops;
                for (a, b) in sum.1.iter_mut().zip(hist) {
                    *a += b;
                }
                sum.2 += errors;
            }
            Ok::<_, io::Error>(sum)
        })?
    };
    let m = (total, hist, start.elapsed().as_secs_f64());
    report(&addr.to_string(), o, &m, errors);
    Ok(m)
}

fn main() -> io::Result<()> {
    let mut o = Opts {
        addrs: Vec::new(),
        conns: 50,
        secs: 10,
        keys: 10_000,
        get_percent: 90,
        value: Vec::new(),
        pipeline: 1,
        rounds: 1,
        threads: 1,
    };
    let mut value_size = 32usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--help" || a == "-h" {
            println!("{USAGE}");
            return Ok(());
        }
        let v = args.next().unwrap_or_default();
        let bad = |e: String| io::Error::new(io::ErrorKind::InvalidInput, format!("{a} {v}: {e}"));
        match a.as_str() {
            "--addr" => o.addrs.push(v.parse().map_err(|e| bad(format!("{e}")))?),
            "--conns" => o.conns = v.parse().map_err(|e| bad(format!("{e}")))?,
            "--secs" => o.secs = v.parse().map_err(|e| bad(format!("{e}")))?,
            "--keys" => o.keys = v.parse().map_err(|e| bad(format!("{e}")))?,
            "--get-percent" => o.get_percent = v.parse().map_err(|e| bad(format!("{e}")))?,
            "--value-size" => value_size = v.parse().map_err(|e| bad(format!("{e}")))?,
            "--pipeline" => o.pipeline = v.parse().map_err(|e| bad(format!("{e}")))?,
            "--rounds" => o.rounds = v.parse().map_err(|e| bad(format!("{e}")))?,
            "--threads" => o.threads = v.parse().map_err(|e| bad(format!("{e}")))?,
            _ => {
                let e = format!("unknown option {a} (see --help)");
                return Err(io::Error::new(io::ErrorKind::InvalidInput, e));
            }
        }
    }
    if o.addrs.is_empty() {
        o.addrs.push(SocketAddr::from(([127, 0, 0, 1], 11211)));
    }
    o.pipeline = o.pipeline.max(1);
    o.threads = o.threads.max(1);
    o.keys = o.keys.max(1);
    o.value = PATTERN.iter().copied().cycle().take(value_size).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        for &addr in &o.addrs {
            preload(addr, o.keys, &o.value).await?;
        }
        let mut sums: Vec<Measured> = o
            .addrs
            .iter()
            .map(|_| (0, vec![0; BUCKETS + 1], 0.0))
            .collect();
        // Per server, each round's throughput and p99.
        let mut rounds: Vec<Vec<(f64, usize)>> = o.addrs.iter().map(|_| Vec::new()).collect();
        for round in 0..o.rounds.max(1) {
            // Every other round in reverse order, so that no server always runs right after
            // another one (a machine whose load drifts would favour one place in the order).
            let mut order: Vec<usize> = (0..o.addrs.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let addr = o.addrs[i];
                let (ops, hist, secs) = measure(addr, &o).await?;
                rounds[i].push((ops as f64 / secs, percentile(&hist, ops, 0.99)));
                let sum = &mut sums[i];
                sum.0 += ops;
                sum.2 += secs;
                for (a, b) in sum.1.iter_mut().zip(hist) {
                    *a += b;
                }
            }
        }
        if o.rounds > 1 {
            for (addr, m) in o.addrs.iter().zip(&sums) {
                report(&format!("TOTAL {addr}"), &o, m, 0);
            }
            let medians: Vec<(f64, f64)> = rounds.iter().map(|r| medians(r)).collect();
            for (addr, &(ops, p99)) in o.addrs.iter().zip(&medians) {
                let (ops0, p990) = medians[0];
                println!(
                    "MEDIAN {addr}  rounds {}  throughput {ops:.0} ops/s  p99 {p99:.0} us  \
                     throughput ratio {:.2}  p99 ratio {:.2}",
                    o.rounds,
                    ops / ops0,
                    p99 / p990
                );
            }
        }
        Ok(())
    })
}
