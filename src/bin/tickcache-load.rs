//! `tickcache-load`: a closed-loop load generator for memcached-protocol servers.
//!
//! ```text
//! tickcache-load --addr 127.0.0.1:11211 [--addr 127.0.0.1:21212] [--conns 50] [--secs 10]
//!                [--keys 10000] [--get-percent 90] [--pipeline 1] [--rounds 1]
//! ```
//!
//! Each connection sends `--pipeline` requests, waits for their replies, and repeats until
//! the time is up: `get` of a random key (90 %) or `set` of a 32-byte value (10 %), keys of
//! 16 bytes, all keys stored beforehand so every `get` hits. With several `--addr` the
//! servers are measured one after the other in the same run, with the same settings and
//! random sequence, `--rounds` times in alternation (so a noisy machine disturbs both
//! alike), then totalled. One event-loop thread drives every connection.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const USAGE: &str = "\
tickcache-load: a closed-loop load generator for memcached-protocol servers

Each connection sends --pipeline requests, waits for their replies and repeats until the
time is up: a get of a random key (--get-percent) or a set of a 32-byte value, 16-byte
keys, all stored beforehand. Several --addr are measured one after the other, --rounds
times in alternation, then totalled.

OPTIONS
  --addr ADDR          server to measure; repeat to compare (default 127.0.0.1:11211)
  --conns N            connections (default 50)
  --secs N             seconds per measurement (default 10)
  --keys N             keys stored first and requested (default 10000)
  --get-percent P      share of gets, the rest are sets (default 90)
  --pipeline N         requests in flight per connection (default 1)
  --rounds N           measurements per server, alternating (default 1)
  --help               this text";

const VALUE: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
/// Latency histogram: 1 µs buckets up to 100 ms, then one overflow bucket.
const BUCKETS: usize = 100_000;

struct Opts {
    addrs: Vec<SocketAddr>,
    conns: usize,
    secs: u64,
    keys: u64,
    get_percent: u64,
    pipeline: usize,
    rounds: usize,
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

/// Reads until `need` replies ending in `END\r\n`, `STORED\r\n` (or any line for sets) are in.
async fn read_replies(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    gets: usize,
    sets: usize,
) -> io::Result<()> {
    buf.clear();
    let mut chunk = [0u8; 16384];
    loop {
        let ends = buf.windows(5).filter(|w| w == b"END\r\n").count();
        let stored = buf.windows(8).filter(|w| w == b"STORED\r\n").count();
        if ends >= gets && stored >= sets {
            return Ok(());
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn preload(addr: SocketAddr, keys: u64) -> io::Result<()> {
    let mut s = TcpStream::connect(addr).await?;
    let mut buf = Vec::new();
    let mut i = 0;
    while i < keys {
        let mut req = Vec::new();
        let batch = (keys - i).min(100);
        for j in i..i + batch {
            req.extend_from_slice(b"set ");
            req.extend_from_slice(&key(j));
            req.extend_from_slice(b" 0 0 32\r\n");
            req.extend_from_slice(VALUE);
            req.extend_from_slice(b"\r\n");
        }
        s.write_all(&req).await?;
        read_replies(&mut s, &mut buf, 0, batch as usize).await?;
        i += batch;
    }
    Ok(())
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
        let (mut gets, mut sets) = (0, 0);
        for _ in 0..o.pipeline {
            let r = rng.next();
            let k = key((r >> 8) % o.keys);
            if r % 100 < o.get_percent {
                req.extend_from_slice(b"get ");
                req.extend_from_slice(&k);
                req.extend_from_slice(b"\r\n");
                gets += 1;
            } else {
                req.extend_from_slice(b"set ");
                req.extend_from_slice(&k);
                req.extend_from_slice(b" 0 0 32\r\n");
                req.extend_from_slice(VALUE);
                req.extend_from_slice(b"\r\n");
                sets += 1;
            }
        }
        let t = Instant::now();
        s.write_all(&req).await?;
        read_replies(&mut s, &mut buf, gets, sets).await?;
        let us = t.elapsed().as_micros() as usize;
        hist[us.min(BUCKETS)] += o.pipeline as u32;
        ops += o.pipeline as u64;
    }
    Ok((ops, hist))
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

async fn measure(addr: SocketAddr, o: &Opts) -> io::Result<Measured> {
    let start = Instant::now();
    let until = start + Duration::from_secs(o.secs);
    let mut tasks = Vec::new();
    for c in 0..o.conns {
        let o2 = Opts {
            addrs: Vec::new(),
            conns: o.conns,
            secs: o.secs,
            keys: o.keys,
            get_percent: o.get_percent,
            pipeline: o.pipeline,
            rounds: 1,
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
        pipeline: 1,
        rounds: 1,
    };
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
            "--pipeline" => o.pipeline = v.parse().map_err(|e| bad(format!("{e}")))?,
            "--rounds" => o.rounds = v.parse().map_err(|e| bad(format!("{e}")))?,
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
    o.keys = o.keys.max(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        for &addr in &o.addrs {
            preload(addr, o.keys).await?;
        }
        let mut sums: Vec<Measured> = o
            .addrs
            .iter()
            .map(|_| (0, vec![0; BUCKETS + 1], 0.0))
            .collect();
        for _ in 0..o.rounds.max(1) {
            for (i, &addr) in o.addrs.iter().enumerate() {
                let (ops, hist, secs) = measure(addr, &o).await?;
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
        }
        Ok(())
    })
}
