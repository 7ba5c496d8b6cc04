//! `tickcache-server`: a memcached-compatible server (text protocol) on a tickcache table:
//! the heap table under a memory budget by default, the fixed table with `--fixed`.
//!
//! ```text
//! cargo run --release --features server --bin tickcache-server -- --listen 127.0.0.1:11211
//! ```
//!
//! The main thread accepts connections and hands them to `--threads` worker threads
//! (default 4): one worker runs its own tokio event loop (a current-thread runtime); two or
//! more share one work-stealing runtime (tokio's multi-thread scheduler), so a connection
//! whose worker waits for a busy CPU is served by another. The heap table is split into one
//! shard per worker (a [`Memcached`] engine on a `HeapTable` with an equal part of `-m`,
//! behind its own mutex), chosen by a keyed hash of the key; `stats` sums the shards,
//! `flush_all` runs on each. With two or more workers, the workers run under `SCHED_BATCH`
//! (`--no-batch` leaves them normal), so a client's request does not preempt the client. The fixed table (`--fixed`, `--persist`) stays one engine behind one mutex. Each
//! connection is framed by the library's connection driver (`memcached::Driver`: lines,
//! data blocks, too-large items, multi-gets key by key) and owns a read buffer of 16 KiB that grows to hold one large command (a line of
//! up to 64 KiB plus one data block) while it arrives, and an output buffer with a
//! high-water mark of 16 KiB: past it, the replies are sent before another command (or
//! another key of a multi-get) is read, so a client that does not read its replies is not
//! read either, and holds at most 16 KiB plus one reply. Values of 8 KiB and more are sent
//! from the table's memory (shared, reference counted) instead of being copied into the
//! output. Memory freed by closed connections is given back to the system (`malloc_trim`).
//! Run with `--help` for the options.

use std::fmt::Debug;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tickcache::flash::FileFlash;
use tickcache::heap::{HeapTable, Limits, SharedValue};
use tickcache::memcached::embedded_io;
use tickcache::memcached::{
    Buffer, Command, Driver, Event, GrowBuf, Handler, Memcached, Now, Outcome, Reply, Scratch,
    Sink, Store,
};
use tickcache::{Persistent, Policy, Table};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Key capacity of every table: memcached's longest key.
const KEY: usize = tickcache::memcached::MAX_KEY;
/// Longest command line (a multi-get included), newline included: 2,000 Django-made keys
/// fit (memcached reads multi-gets of any length; other lines it limits to 2 KiB).
const LINE_MAX: usize = 64 * 1024;
/// A connection's read buffer between large commands.
const READ_SMALL: usize = 16 * 1024;
/// How long a connection keeps a read buffer grown for a large command once it is idle.
const KEEP_GROWN: Duration = Duration::from_secs(1);
/// The output high-water mark: once a connection's pending replies pass it, they are sent
/// before another command is read or another key of a multi-get is looked up. So a client
/// that does not read its replies stops being read (its socket buffer full, the send waits),
/// and holds at most this much plus one reply.
const OUT_HIGH: usize = 16 * 1024;
/// Values from this size on are sent from the table's memory (shared, not copied into the
/// output), so a reply of a large item costs no copy per connection.
const SHARE_FROM: usize = 8 * 1024;
/// Cache time runs in microseconds.
const TICKS_PER_SECOND: u32 = 1_000_000;
/// Flash page of the persistence image.
const PAGE: usize = 4096;

const USAGE: &str = "\
tickcache-server: memcached's text protocol on a tickcache table

OPTIONS
  --listen ADDR           address to listen on (default 127.0.0.1:11211)
  -m, --memory-limit MB   memory for items, in megabytes (default 64): least recently used
                          items are evicted to stay within it
  -I, --max-item-size SIZE
                          largest item data, in bytes or with a k or m suffix (default 1m;
                          with --fixed 4096, at most 16371; otherwise at most half of -m);
                          a bigger set gets SERVER_ERROR object too large for cache.
                          --item-size-max BYTES is the same option
  --fixed                 the fixed-size table of the firmware instead of the heap table:
                          every slot is allocated at start for the largest item (see RAM)
  --capacity N            with --fixed: most items held, LRU eviction beyond (default
                          16384, max 65534)
  --threads N             worker threads (default 4, as memcached's -t); two or more share
                          one work-stealing event loop, so a connection is served by
                          whichever worker is free. The heap table is split into N shards by a keyed hash of
                          the key, each with its own lock, LRU and an equal part of -m
                          (fewer shards if a part would hold fewer than two items of -I).
                          --fixed and --persist keep one table behind one lock
  --no-batch              run the worker threads under the normal scheduling policy
                          (default, with two or more: SCHED_BATCH, so a request arriving
                          does not preempt the thread that sent it, and a worker serves
                          the requests that arrived meanwhile in one turn)
  --max-conns N           simultaneous connections (default 1024)
  --idle-timeout SECS     close a connection idle this long between commands (default:
                          never, as memcached; 0 = never)
  --request-timeout SECS  deadline for each command: close a client whose command is not
                          complete SECS after its first byte arrived, or that does not take
                          a reply (16 KiB at a time, or one item) within SECS (default 10)
  --persist FILE          keep the cache in a flash image FILE across restarts; persistence
                          runs on the fixed table, so --persist implies --fixed
  --persist-mb MB         size of a new flash image (default 64)
  --write-back N          with --persist: write changes in batches of N keys (and every
                          second) instead of one by one
  --help                  this text

RAM, heap table (the default): each item takes its key, its data, a 12-byte header and 80
bytes of bookkeeping, counted against -m (stats: bytes, limit_maxbytes, evictions); the
process idles at a few megabytes. Outside -m: a working buffer of one item for append,
prepend and incr (only as far as items fill it); per connection a read buffer of 16 KiB, which grows to 64 KiB + -I
while a large item arrives and shrinks back after a second without commands, and up to 16 KiB of replies (a client
that does not read them is not read; items of 8 KiB and more are sent from the table).
RAM, --fixed: the table is allocated whole at start: slots x (250 + 19 + item slot) bytes.
The slot count is the smallest of 1024, 16384 and 65534 that holds --capacity; the item
slot (data + 12-byte header) is the smallest of 1036, 4108 and 16383 bytes that holds -I.
Defaults: 16384 x 4377 bytes = 72 MB. Connections as above.";

#[derive(Clone, Debug)]
struct Opts {
    listen: SocketAddr,
    /// The fixed table (`--fixed`, or implied by `--persist`).
    fixed: bool,
    /// The heap table's budget in bytes.
    memory: usize,
    capacity: usize,
    item_max: usize,
    threads: usize,
    /// Worker threads under `SCHED_BATCH` (`--no-batch` turns it off).
    batch: bool,
    max_conns: usize,
    idle: Option<Duration>,
    request: Duration,
    persist: Option<PathBuf>,
    persist_mb: usize,
    write_back: Option<u16>,
}

fn parse_opts() -> Result<Option<Opts>, String> {
    let mut o = Opts {
        listen: "127.0.0.1:11211".parse().map_err(|e| format!("{e}"))?,
        fixed: false,
        memory: 64 << 20,
        capacity: 16384,
        item_max: 1 << 20,
        threads: 4,
        batch: true,
        max_conns: 1024,
        idle: None,
        request: Duration::from_secs(10),
        persist: None,
        persist_mb: 64,
        write_back: None,
    };
    let (mut memory, mut capacity, mut item_max) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(None);
        }
        if arg == "--fixed" {
            o.fixed = true;
            continue;
        }
        if arg == "--no-batch" {
            o.batch = false;
            continue;
        }
        // `--name=value` as well as `--name value`.
        let (a, v) = match arg.split_once('=').filter(|_| arg.starts_with("--")) {
            Some((a, v)) => (a.to_string(), v.to_string()),
            None => {
                let v = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
                (arg, v)
            }
        };
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{a}: not a number: {v}"))
        };
        match a.as_str() {
            "--listen" => o.listen = v.parse().map_err(|e| format!("--listen {v}: {e}"))?,
            "-m" | "--memory-limit" => memory = Some(num(&v)?),
            "--capacity" => capacity = Some(num(&v)? as usize),
            "-I" | "--max-item-size" | "--item-size-max" => {
                item_max = Some(size(&v).ok_or_else(|| format!("{a}: not a size: {v}"))?)
            }
            "--threads" => o.threads = num(&v)?.max(1) as usize,
            "--max-conns" => o.max_conns = num(&v)?.max(1) as usize,
            "--idle-timeout" => {
                let s = num(&v)?;
                o.idle = (s > 0).then(|| Duration::from_secs(s));
            }
            "--request-timeout" => o.request = Duration::from_secs(num(&v)?.max(1)),
            "--persist" => o.persist = Some(PathBuf::from(v)),
            "--persist-mb" => o.persist_mb = num(&v)?.max(1) as usize,
            "--write-back" => o.write_back = Some(num(&v)?.clamp(2, 8) as u16),
            _ => return Err(format!("unknown option {a} (see --help)")),
        }
    }
    o.fixed |= o.persist.is_some();
    if o.fixed {
        if memory.is_some() {
            return Err("-m is the heap table's budget; with --fixed, use --capacity".into());
        }
        o.capacity = capacity.unwrap_or(o.capacity);
        o.item_max = item_max.unwrap_or(4096);
        if o.capacity == 0 || o.capacity > 65534 {
            return Err("--capacity must be in 1..=65534".into());
        }
        if o.item_max > 16383 - tickcache::memcached::HEADER {
            return Err("with --fixed, -I must be at most 16371".into());
        }
    } else {
        if capacity.is_some() {
            return Err("--capacity needs --fixed (the heap table is bounded by -m)".into());
        }
        let mb = memory.unwrap_or(64);
        if mb == 0 || mb > (usize::MAX >> 21) as u64 {
            return Err("-m must be a positive number of megabytes".into());
        }
        o.memory = (mb as usize) << 20;
        o.item_max = item_max.unwrap_or(o.item_max);
        // memcached's rule: an item may take at most half of the memory.
        if o.item_max == 0 || o.item_max > o.memory / 2 {
            return Err(format!(
                "-I must be between 1 and half of -m ({} bytes)",
                o.memory / 2
            ));
        }
    }
    Ok(Some(o))
}

/// A size in bytes, or in KiB or MiB with a `k` or `m` suffix (memcached's `-I`).
fn size(v: &str) -> Option<usize> {
    let (digits, shift) = match v.as_bytes().last()? {
        b'k' | b'K' => (&v[..v.len() - 1], 10),
        b'm' | b'M' => (&v[..v.len() - 1], 20),
        _ => (v, 0),
    };
    let n: usize = digits.parse().ok()?;
    n.checked_mul(1 << shift)
}

/// A connection's replies waiting to be sent: bytes, and large values shared with the
/// heap table (sent from the table's memory; `shared` holds each with its offset in `buf`).
#[derive(Default)]
struct Out {
    buf: Vec<u8>,
    shared: Vec<(usize, SharedValue)>,
    /// Bytes waiting: `buf` and the shared values.
    queued: usize,
    /// The value of the key being read, when large: `put` of exactly its data shares it
    /// (`gat`, which may delete the item once read, so it is shared beforehand).
    large: Option<SharedValue>,
    /// Set while a `get` reads a store that shares values: `put` does not copy data of
    /// [`SHARE_FROM`] bytes or more but notes where it goes (`deferred`: offset in `buf`
    /// and length), and the caller shares it from the table under the same lock. So a
    /// `get` looks its key up once, not once more to learn whether the value is large.
    share: bool,
    deferred: Option<(usize, usize)>,
    /// A deferred value could not be shared (never expected): the connection closes
    /// rather than send a reply without it.
    broken: bool,
}

impl Sink for Out {
    fn put(&mut self, bytes: &[u8]) {
        self.queued += bytes.len();
        if self.share && bytes.len() >= SHARE_FROM {
            self.deferred = Some((self.buf.len(), bytes.len()));
            return;
        }
        if let Some(v) = self.large.take() {
            let data = v
                .bytes()
                .get(tickcache::memcached::HEADER..)
                .unwrap_or_default();
            if std::ptr::eq(data, bytes) {
                self.shared.push((self.buf.len(), v));
                return;
            }
            self.large = Some(v);
        }
        self.buf.extend_from_slice(bytes);
    }
}

impl Out {
    fn len(&self) -> usize {
        self.queued
    }

    /// Sends everything waiting, within `limit`. A reply that fits in the socket's buffer
    /// (nearly all of them) leaves in one system call, without arming a timer.
    async fn send(&mut self, stream: &mut TcpStream, limit: Duration) -> io::Result<()> {
        if self.queued == 0 {
            return Ok(());
        }
        let mut done = match self.try_send(stream, 0) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        if done < self.queued {
            within(Some(limit), async {
                while done < self.queued {
                    stream.writable().await?;
                    match self.try_send(stream, done) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => done += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            })
            .await?;
        }
        self.buf.clear();
        self.shared.clear();
        self.queued = 0;
        if self.buf.capacity() > 4 * OUT_HIGH {
            self.buf = Vec::with_capacity(OUT_HIGH);
        }
        Ok(())
    }

    /// Writes what is waiting from byte `done` on, as far as the socket takes it without
    /// waiting (`WouldBlock` if it takes nothing): one `write`, or one `writev` of the
    /// bytes and the shared values between them.
    fn try_send(&self, stream: &TcpStream, done: usize) -> io::Result<usize> {
        if self.shared.is_empty() {
            return stream.try_write(&self.buf[done..]);
        }
        if let [(off, ref v)] = self.shared[..] {
            // One large value (a `get`): three slices on the stack.
            let mut slices = [
                IoSlice::new(&self.buf[..off]),
                IoSlice::new(shared_data(v)),
                IoSlice::new(&self.buf[off..]),
            ];
            let mut rest = &mut slices[..];
            IoSlice::advance_slices(&mut rest, done);
            return stream.try_write_vectored(rest);
        }
        let mut slices = Vec::with_capacity(2 * self.shared.len() + 1);
        let mut at = 0;
        for (off, v) in &self.shared {
            slices.push(IoSlice::new(&self.buf[at..*off]));
            slices.push(IoSlice::new(shared_data(v)));
            at = *off;
        }
        slices.push(IoSlice::new(&self.buf[at..]));
        let mut rest = &mut slices[..];
        IoSlice::advance_slices(&mut rest, done);
        stream.try_write_vectored(rest)
    }
}

/// The data of a shared item (after its header).
fn shared_data(v: &SharedValue) -> &[u8] {
    v.bytes()
        .get(tickcache::memcached::HEADER..)
        .unwrap_or_default()
}

/// A store whose large values can be shared with a reply instead of copied.
trait Shares {
    /// Whether it shares values at all.
    const SHARES: bool = false;
    /// The value of `key` when it is live and at least [`SHARE_FROM`] bytes.
    fn large(&self, _key: &[u8], _now: u64) -> Option<SharedValue> {
        None
    }
    /// The value of `key` when it is live.
    fn shared(&self, _key: &[u8], _now: u64) -> Option<SharedValue> {
        None
    }
}

impl Shares for HeapTable<Keyed> {
    const SHARES: bool = true;
    fn large(&self, key: &[u8], now: u64) -> Option<SharedValue> {
        self.peek(key, now)
            .filter(|(v, _, _)| v.len() >= SHARE_FROM)
            .and_then(|_| self.peek_shared(key, now))
    }
    fn shared(&self, key: &[u8], now: u64) -> Option<SharedValue> {
        self.peek_shared(key, now)
    }
}

impl<const N: usize, const V: usize> Shares for Table<N, KEY, V, Keyed> {}
impl<const N: usize, const V: usize> Shares
    for Persistent<FileFlash<PAGE, 4>, N, KEY, V, 8, Keyed>
{
}

/// The engine with its store type erased, so the connection code is compiled once.
trait Service: Send {
    fn execute(&mut self, cmd: &Command<'_>, now: &Now, out: &mut Out) -> Outcome;
    fn get_one(&mut self, key: &[u8], cas: bool, touch: Option<i64>, now: &Now, out: &mut Out);
    fn tick(&mut self, now: &Now);
    fn write_stats(&self, out: &mut Out);
    fn flush(&mut self) -> Result<(), String>;
    fn len(&self) -> usize;
}

impl<S, const V: usize, B> Service for Memcached<S, V, B>
where
    S: Store + Shares + Send,
    S::Error: Debug,
    B: Scratch + Send,
{
    fn execute(&mut self, cmd: &Command<'_>, now: &Now, out: &mut Out) -> Outcome {
        Memcached::execute(self, cmd, now, out)
    }
    fn get_one(&mut self, key: &[u8], cas: bool, touch: Option<i64>, now: &Now, out: &mut Out) {
        if touch.is_some() {
            // `gat` may delete the item after reading it: a large value is shared first.
            out.large = self.store().large(key, now.ticks);
            Memcached::get_one(self, key, cas, touch, now, out);
            out.large = None;
            return;
        }
        out.share = S::SHARES;
        Memcached::get_one(self, key, cas, touch, now, out);
        out.share = false;
        if let Some((at, len)) = out.deferred.take() {
            // The shard is still locked: the value just read is the one shared.
            match self.store().shared(key, now.ticks) {
                Some(v) if shared_data(&v).len() == len => out.shared.push((at, v)),
                _ => out.broken = true,
            }
        }
    }
    fn tick(&mut self, now: &Now) {
        Memcached::tick(self, now)
    }
    fn write_stats(&self, out: &mut Out) {
        Memcached::write_stats(self, out)
    }
    fn flush(&mut self) -> Result<(), String> {
        self.store_mut().flush().map_err(|e| format!("{e:?}"))
    }
    fn len(&self) -> usize {
        self.store().len()
    }
}

struct Built {
    /// The shards: one engine each (one for the fixed table).
    services: Vec<Box<dyn Service>>,
    resume_ticks: u64,
    ram: usize,
}

/// Builds the engine: the heap table, or the fixed table (with its persistence).
fn build(o: &Opts) -> Result<Built, String> {
    if o.fixed {
        return build_fixed(o);
    }
    let n = shards(o);
    let limits = Limits::new(o.memory / n).value_max(o.item_max + tickcache::memcached::HEADER);
    let mut services: Vec<Box<dyn Service>> = Vec::with_capacity(n);
    for _ in 0..n {
        // Keys come from the network: a randomly keyed hasher.
        let table =
            HeapTable::with_hasher(limits, Keyed::new()).map_err(|e| format!("-m/-I: {e}"))?;
        let engine = Memcached::<_, 0, Vec<u8>>::with_scratch(table, o.item_max, 0, Vec::new());
        services.push(Box::new(engine));
    }
    Ok(Built {
        services,
        resume_ticks: 0,
        ram: limits.max_bytes * n,
    })
}

/// How many shards the heap table is split into: one per worker thread, each with an equal
/// part of `-m`, but never so many that a shard holds fewer than two of the largest items
/// (memcached's rule for `-I` against `-m`).
fn shards(o: &Opts) -> usize {
    o.threads.min(o.memory / (2 * o.item_max)).max(1)
}

/// Builds the fixed table's engine on a thread whose stack can hold the table while it is
/// moved into its box (the table is one value of up to hundreds of megabytes).
fn build_fixed(o: &Opts) -> Result<Built, String> {
    let n = [1024usize, 16384, 65534]
        .into_iter()
        .find(|&n| n >= o.capacity)
        .unwrap_or(65534);
    let v = [1036usize, 4108, 16383]
        .into_iter()
        .find(|&v| v >= o.item_max + 12)
        .unwrap_or(16383);
    match (n, v) {
        (1024, 1036) => make::<1024, 1036>(o),
        (1024, 4108) => make::<1024, 4108>(o),
        (1024, _) => make::<1024, 16383>(o),
        (16384, 1036) => make::<16384, 1036>(o),
        (16384, 4108) => make::<16384, 4108>(o),
        (16384, _) => make::<16384, 16383>(o),
        (_, 1036) => make::<65534, 1036>(o),
        (_, 4108) => make::<65534, 4108>(o),
        _ => make::<65534, 16383>(o),
    }
}

/// The server's table hasher: SipHash with random keys.
type Keyed = std::collections::hash_map::RandomState;

fn make<const N: usize, const V: usize>(o: &Opts) -> Result<Built, String> {
    let ram = std::mem::size_of::<Memcached<Table<N, KEY, V, Keyed>, V>>();
    let o = o.clone();
    // Unoptimised builds keep several copies of the table on the stack while it is built.
    let stack = 12 * ram + (64 << 20);
    std::thread::Builder::new()
        .name("build".into())
        .stack_size(stack)
        .spawn(move || -> Result<Built, String> {
            // Keys come from the network: a randomly keyed hasher, so no client can choose
            // keys that pile up in one chain.
            let table = Table::<N, KEY, V, Keyed>::try_with_culling_and_hasher(
                o.capacity,
                o.capacity as u16,
                Keyed::new(),
            )
            .map_err(|e| format!("capacity: {e:?}"))?;
            match &o.persist {
                None => Ok(Built {
                    services: vec![Box::new(Memcached::<_, V>::new(table, o.item_max, 0))],
                    resume_ticks: 0,
                    ram,
                }),
                Some(path) => {
                    let pages = (o.persist_mb << 20) / PAGE;
                    let flash = FileFlash::<PAGE, 4>::open(path, pages)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    let policy = match o.write_back {
                        Some(max_dirty) => Policy::WriteBack { max_dirty },
                        None => Policy::WriteThrough,
                    };
                    let end = u32::try_from(pages * PAGE).map_err(|_| "image too large")?;
                    let p =
                        Persistent::<_, N, KEY, V, 8, Keyed>::open(flash, 0..end, table, policy)
                            .map_err(|e| format!("{}: {e}", path.display()))?;
                    let resume_ticks = p.latest_time();
                    let first_cas = Memcached::<Table<N, KEY, V, Keyed>, V>::max_cas(p.table());
                    Ok(Built {
                        services: vec![Box::new(Memcached::<_, V>::new(p, o.item_max, first_cas))],
                        resume_ticks,
                        ram,
                    })
                }
            }
        })
        .map_err(|e| format!("cannot start: {e}"))?
        .join()
        .map_err(|_| "building the table failed".to_string())?
}

struct Shared {
    /// The table's shards, each behind its own lock; a key's shard is chosen by `router`.
    shards: Box<[Mutex<Box<dyn Service>>]>,
    router: Keyed,
    /// Ticks of the table's clock before this process started (a restored image's time).
    offset: u64,
    /// The process's start: cache time counts microseconds from it.
    started: Instant,
    /// Unix time (seconds) at `started`.
    unix_started: u64,
    conns: AtomicUsize,
    total_conns: AtomicU64,
    /// Connections closed so far.
    closed: AtomicU64,
    opts: Opts,
    ram: usize,
}

/// Locks a shard; a thread that panicked while holding it left the table consistent (the
/// engine's operations do not unwind midway), so the lock is taken anyway.
fn lock(shard: &Mutex<Box<dyn Service>>) -> MutexGuard<'_, Box<dyn Service>> {
    shard.lock().unwrap_or_else(|p| p.into_inner())
}

/// The key a command works on, which chooses its shard.
fn key_of<'a>(cmd: &Command<'a>) -> Option<&'a [u8]> {
    match *cmd {
        Command::Store { key, .. }
        | Command::TooLarge { key, .. }
        | Command::Delete { key, .. }
        | Command::Arith { key, .. }
        | Command::Touch { key, .. } => Some(key),
        _ => None,
    }
}

impl Shared {
    /// The shard of `key`, locked.
    fn lock(&self, key: &[u8]) -> MutexGuard<'_, Box<dyn Service>> {
        let i = match self.shards.len() {
            1 => 0,
            n => {
                let mut h = self.router.build_hasher();
                h.write(key);
                (h.finish() % n as u64) as usize
            }
        };
        lock(&self.shards[i])
    }

    /// Runs `cmd` on the shard of its key; a command without a key (`flush_all`,
    /// `stats reset`) on every shard, with the first shard's reply.
    fn execute(&self, cmd: &Command<'_>, now: &Now, out: &mut Out) -> Outcome {
        if let Some(key) = key_of(cmd) {
            return self.lock(key).execute(cmd, now, out);
        }
        let (first, rest) = self.shards.split_first().expect("at least one shard");
        if matches!(
            cmd,
            Command::FlushAll { .. } | Command::Stats { reset: true }
        ) {
            for shard in rest {
                lock(shard).execute(cmd, now, &mut Out::default());
            }
        }
        lock(first).execute(cmd, now, out)
    }

    /// The engines' `STAT` lines, summed over the shards.
    fn engine_stats(&self, now: &Now, out: &mut Out) {
        let mut lines: Vec<(String, u64)> = Vec::new();
        for shard in self.shards.iter() {
            let mut one = Out::default();
            {
                let mut svc = lock(shard);
                svc.tick(now);
                svc.write_stats(&mut one);
            }
            let text = String::from_utf8_lossy(&one.buf);
            for line in text.lines() {
                let mut words = line.split(' ').skip(1);
                let (Some(name), Some(v)) = (words.next(), words.next()) else {
                    continue;
                };
                let v: u64 = v.parse().unwrap_or(0);
                match lines.iter_mut().find(|l| l.0 == name) {
                    // The item limit is every shard's; a flush_all ran on every shard.
                    Some(l) if matches!(name, "item_size_max" | "cmd_flush") => l.1 = l.1.max(v),
                    Some(l) => l.1 += v,
                    None => lines.push((name.to_string(), v)),
                }
            }
        }
        for (name, v) in lines {
            tickcache::memcached::write_stat(out, &name, v);
        }
    }

    /// Items held, over the shards.
    fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Flushes every shard (a persistent store writes its pending changes).
    fn flush(&self) -> Result<(), String> {
        self.shards.iter().try_for_each(|s| lock(s).flush())
    }

    /// The time of a command at `at` (one read of the monotonic clock). Unix time is
    /// counted from the process's start on the same clock, as memcached does
    /// (`process_started` plus its monotonic `current_time`), so a change of the system
    /// clock does not move expiries.
    fn now_at(&self, at: Instant) -> Now {
        let since = at.saturating_duration_since(self.started);
        Now {
            ticks: u64::try_from(since.as_micros())
                .unwrap_or(u64::MAX)
                .saturating_add(self.offset),
            ticks_per_second: TICKS_PER_SECOND,
            unix: self.unix_started.saturating_add(since.as_secs()),
        }
    }

    fn server_stats(&self, out: &mut Out, now: &Now) {
        use tickcache::memcached::write_stat as stat;
        stat(out, "pid", u64::from(std::process::id()));
        stat(out, "uptime", self.started.elapsed().as_secs());
        stat(out, "time", now.unix);
        out.put(format!("STAT version {}-tickcache\r\n", env!("CARGO_PKG_VERSION")).as_bytes());
        stat(out, "threads", self.opts.threads as u64);
        stat(
            out,
            "curr_connections",
            self.conns.load(Ordering::Relaxed) as u64,
        );
        stat(
            out,
            "total_connections",
            self.total_conns.load(Ordering::Relaxed),
        );
        stat(out, "max_connections", self.opts.max_conns as u64);
        stat(out, "limit_maxbytes", self.ram as u64);
        if self.opts.fixed {
            stat(out, "limit_items", self.opts.capacity as u64);
        }
    }
}

/// Runs `f` within `limit`; a timeout is an error.
async fn within<T>(
    limit: Option<Duration>,
    f: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match limit {
        None => f.await,
        Some(d) => tokio::time::timeout(d, f)
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into())),
    }
}

/// Runs `f` until `deadline`; passing it is an error.
async fn until<T>(
    deadline: Instant,
    f: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout_at(deadline.into(), f)
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

/// The server's side of a connection's driver: commands on the shards of [`Shared`], into
/// the connection's [`Out`].
struct Conn<'a> {
    shared: &'a Shared,
}

impl Handler<Out> for Conn<'_> {
    fn tick(&mut self, _now: &Now) {
        // Each shard runs what is due when a key of a multi-get locks it (`get_one`).
    }

    fn execute(&mut self, cmd: &Command<'_>, now: &Now, out: &mut Reply<'_, Out>) -> Outcome {
        let out = out.sink();
        if let Command::Stats { reset: false } = cmd {
            self.shared.server_stats(out, now);
            self.shared.engine_stats(now, out);
            out.put(b"END\r\n");
            return Outcome::Continue;
        }
        self.shared.execute(cmd, now, out)
    }

    fn get_one(
        &mut self,
        key: &[u8],
        cas: bool,
        touch: Option<i64>,
        now: &Now,
        out: &mut Reply<'_, Out>,
    ) {
        let mut svc = self.shared.lock(key);
        svc.tick(now);
        svc.get_one(key, cas, touch, now, out.sink());
    }
}

/// `Out` collects replies in memory: its writes cannot fail.
impl embedded_io::ErrorType for Out {
    type Error = std::convert::Infallible;
}

impl embedded_io::Write for Out {
    fn write(&mut self, bytes: &[u8]) -> Result<usize, Self::Error> {
        self.put(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// A connection's read buffer: it starts small, doubles while one command does not fit (up
/// to the largest command) and, unlike the library's `GrowBuf` it wraps, goes back to its
/// small size only once the connection has been idle for [`KEEP_GROWN`] (`may_rest`, set by the
/// connection), so a client storing large items does not regrow it for each one.
struct ReadBuf {
    buf: GrowBuf,
    may_rest: Arc<AtomicBool>,
}

impl ReadBuf {
    fn new(small: usize, max: usize, may_rest: Arc<AtomicBool>) -> Self {
        ReadBuf {
            buf: GrowBuf::new(small, max),
            may_rest,
        }
    }
}

impl Buffer for ReadBuf {
    fn bytes(&self) -> &[u8] {
        self.buf.bytes()
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.buf.bytes_mut()
    }
    fn capacity(&self) -> usize {
        self.buf.capacity()
    }
    fn grow(&mut self) {
        self.may_rest.store(false, Ordering::Relaxed);
        self.buf.grow();
    }
    fn rest(&mut self) {
        if self.may_rest.load(Ordering::Relaxed) {
            self.buf.rest();
        }
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let o = &shared.opts;
    // The read buffer starts at 16 KiB and grows (doubling) only while a command's data
    // block does not fit, up to a whole command; it shrinks back after a second without
    // commands. So an idle connection costs 16 KiB, not 1 MiB.
    let full = LINE_MAX + o.item_max + 2;
    let small = READ_SMALL.min(full);
    let may_rest = Arc::new(AtomicBool::new(false));
    let buf = ReadBuf::new(small, full, Arc::clone(&may_rest));
    let mut driver = Driver::new(buf, o.item_max, LINE_MAX);
    let mut out = Out::default();
    // When the first byte of the unfinished command arrived (its deadline runs from there).
    let mut began: Option<Instant> = None;
    loop {
        let mut close = false;
        // One time for the commands of one read (memcached's clock ticks once a second),
        // taken when the read returned.
        let read_at = Instant::now();
        let now = shared.now_at(read_at);
        // Replies past the high-water mark are sent before the next command (or the next
        // key of a multi-get) is handled.
        while out.len() < OUT_HIGH {
            let skipping = driver.skipping();
            match driver.step(&mut Conn { shared: &shared }, &now, &mut out) {
                Ok(Event::Need) => {
                    // A discarded block belongs to its command: the deadline runs on until
                    // the block is gone.
                    if skipping && !driver.skipping() {
                        began = None;
                    }
                    break;
                }
                Ok(Event::Progress) => {
                    if !driver.skipping() {
                        began = None;
                    }
                }
                Ok(Event::Close) => {
                    close = true;
                    break;
                }
                Err(e) => match e.error {
                    Some(never) => match never {},
                    // `Out::write` takes every byte; were it not to, the connection ends.
                    None => return Err(io::ErrorKind::WriteZero.into()),
                },
            }
        }
        if out.broken {
            return Err(io::ErrorKind::InvalidData.into());
        }
        let backlog = out.len() >= OUT_HIGH;
        out.send(&mut stream, o.request).await?;
        if close {
            return Ok(());
        }
        if backlog {
            // Commands may be waiting in the buffer: answer them before reading more.
            continue;
        }
        let partial = driver.partial();
        let space = driver.space();
        let n = if partial {
            // Part of a command is here. When the command before it was completed by the
            // last read, this part arrived with that read too.
            let b = *began.get_or_insert(read_at);
            until(b + o.request, stream.read(space)).await?
        } else {
            began = None;
            if space.len() > small {
                // A buffer grown for a large command is kept while commands keep coming
                // (a client storing large items does not regrow it, page by page, for each
                // one) and given back after a second without any.
                match tokio::time::timeout(KEEP_GROWN, stream.read(space)).await {
                    Ok(n) => n?,
                    Err(_) => {
                        may_rest.store(true, Ordering::Relaxed);
                        within(o.idle, stream.read(driver.space())).await?
                    }
                }
            } else {
                within(o.idle, stream.read(space)).await?
            }
        };
        if n == 0 {
            return Ok(());
        }
        driver.fill(n);
    }
}

/// Starts the `n` worker threads and returns the handle connections are spawned on. One
/// worker runs its own event loop (a current-thread runtime): it rarely blocks, finding the
/// next requests waiting. Two or more share one work-stealing runtime (tokio's multi-thread
/// scheduler): a worker that runs out of connections to serve takes ready ones from the
/// others' queues, and whichever worker is parked on the event queue picks up every
/// connection that becomes ready, so a connection does not wait for its own worker's CPU.
/// With four workers and the load generator on two CPUs, one event loop per worker left a
/// worker's connections waiting up to a scheduler tick behind the load generator (p99 4.2 ms,
/// 1.35x memcached's); shared, p99 fell to 1.1 ms (0.36x) with more throughput (MEMCACHED.md,
/// "Threads and shards"). With `batch`, each worker runs under `SCHED_BATCH` (see
/// [`sched_policy::batch_current_thread`]).
fn start_workers(n: usize, batch: bool) -> io::Result<tokio::runtime::Handle> {
    let rt = if n >= 2 {
        let next = AtomicUsize::new(0);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .thread_name_fn(move || format!("worker {}", next.fetch_add(1, Ordering::Relaxed)))
            .on_thread_start(move || {
                if batch {
                    // Refused, the worker runs under the normal policy.
                    let _ = sched_policy::batch_current_thread();
                }
            })
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    };
    let handle = rt.handle().clone();
    if n >= 2 {
        // The runtime's own threads drive it; it lives as long as the process.
        std::mem::forget(rt);
    } else {
        std::thread::Builder::new()
            .name("worker 0".to_string())
            .spawn(move || rt.block_on(std::future::pending::<()>()))?;
    }
    Ok(handle)
}

/// Scheduling policy of the worker threads (Linux's `sched_setscheduler`).
mod sched_policy {
    /// Puts the calling thread under Linux's `SCHED_BATCH` policy (no privilege needed);
    /// `false` if the system refused (or has no such policy).
    ///
    /// Why: with two or more workers, a worker blocks in `epoll_wait` after every few
    /// requests, and a client's write to it wakes it. Under the normal policy the woken
    /// worker preempts the writer (the load generator, on loopback) at once, serves the
    /// one request that arrived, and blocks again: a context switch each way for every
    /// request or two. A `SCHED_BATCH` thread does not preempt on wakeup: it runs when the
    /// running thread blocks or its turn ends, and then serves every request that arrived
    /// meanwhile. Measured per request at four workers (MEMCACHED.md, "Cost per request"):
    /// fewer context switches and less CPU time, for the server and for its client.
    pub fn batch_current_thread() -> bool {
        #[cfg(target_os = "linux")]
        {
            /// Linux's `SCHED_BATCH`.
            const SCHED_BATCH: core::ffi::c_int = 3;
            let param = SchedParam { priority: 0 };
            // SAFETY: `param` is a valid `struct sched_param` (one int, 0 as SCHED_BATCH
            // requires) that outlives the call; pid 0 is the calling thread.
            unsafe { sched_setscheduler(0, SCHED_BATCH, &param) == 0 }
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
    }

    /// glibc's `struct sched_param`.
    #[cfg(target_os = "linux")]
    #[repr(C)]
    struct SchedParam {
        priority: core::ffi::c_int,
    }

    #[cfg(target_os = "linux")]
    extern "C" {
        fn sched_setscheduler(
            pid: i32,
            policy: core::ffi::c_int,
            param: *const SchedParam,
        ) -> core::ffi::c_int;
    }
}

/// Accepts connections and hands them to the workers.
async fn run(listener: TcpListener, shared: Arc<Shared>, workers: tokio::runtime::Handle) {
    loop {
        let (mut stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        shared.total_conns.fetch_add(1, Ordering::Relaxed);
        if shared.conns.load(Ordering::Relaxed) >= shared.opts.max_conns {
            tokio::spawn(async move {
                let msg = b"SERVER_ERROR too many open connections\r\n";
                let _ = within(Some(Duration::from_secs(1)), stream.write_all(msg)).await;
            });
            continue;
        }
        // Moved to the workers' event loop: registered there, served there.
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        shared.conns.fetch_add(1, Ordering::Relaxed);
        let sh = Arc::clone(&shared);
        workers.spawn(async move {
            if let Ok(stream) = TcpStream::from_std(stream) {
                let _ = serve(stream, Arc::clone(&sh)).await;
            }
            sh.conns.fetch_sub(1, Ordering::Relaxed);
            sh.closed.fetch_add(1, Ordering::Relaxed);
        });
    }
}

/// Gives the memory of closed connections back to the system. glibc's allocator returns
/// freed memory only from the top of its heap; the buffers of connections that closed lie
/// anywhere below live items and live connections, so without this the process keeps its
/// peak RSS (18 MiB after 1,000 pipelining connections closed; see MEMCACHED.md).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: glibc's malloc_trim takes no pointers and is thread-safe (it locks each
        // arena); it only releases free pages of the allocator's own heap.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Once a second, after connections have closed, releases their memory.
async fn trim_after_closes(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut seen = 0;
    loop {
        every.tick().await;
        let closed = shared.closed.load(Ordering::Relaxed);
        if closed != seen {
            seen = closed;
            release_freed_memory();
        }
    }
}

async fn shutdown_signal() -> io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

fn main() -> ExitCode {
    let o = match parse_opts() {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("tickcache-server: {e}");
            return ExitCode::from(2);
        }
    };
    let built = match build(&o) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("tickcache-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let unix_started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let shared = Arc::new(Shared {
        shards: built.services.into_iter().map(Mutex::new).collect(),
        router: Keyed::new(),
        offset: built.resume_ticks,
        started: Instant::now(),
        unix_started,
        conns: AtomicUsize::new(0),
        total_conns: AtomicU64::new(0),
        closed: AtomicU64::new(0),
        opts: o.clone(),
        ram: built.ram,
    });
    let items = shared.len();
    // The main thread accepts connections (and handles signals and timers); the workers
    // serve them.
    // One worker rarely blocks (it finds the next requests waiting), so the policy would
    // change nothing but its standing against other processes on a busy CPU.
    let batch = o.batch && o.threads >= 2;
    let workers = match start_workers(o.threads, batch) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("tickcache-server: worker threads: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tickcache-server: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async {
        let listener = match TcpListener::bind(o.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("tickcache-server: {}: {e}", o.listen);
                return ExitCode::FAILURE;
            }
        };
        let addr = listener.local_addr().map_or(o.listen, |a| a);
        if o.fixed {
            eprintln!(
                "tickcache-server: listening on {addr}; fixed table: {} items max of {} bytes; \
                 table {} bytes; {items} items restored",
                o.capacity, o.item_max, shared.ram
            );
        } else {
            eprintln!(
                "tickcache-server: listening on {addr}; heap table: {} MiB for items of up to {} \
                 bytes",
                o.memory >> 20,
                o.item_max
            );
        }
        tokio::spawn(trim_after_closes(Arc::clone(&shared)));
        if o.persist.is_some() && o.write_back.is_some() {
            let sh = Arc::clone(&shared);
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(1));
                loop {
                    every.tick().await;
                    if let Err(e) = sh.flush() {
                        eprintln!("tickcache-server: flush: {e}");
                    }
                }
            });
        }
        tokio::select! {
            () = run(listener, Arc::clone(&shared), workers) => ExitCode::SUCCESS,
            sig = shutdown_signal() => {
                let sig = sig.unwrap_or("signal setup failure");
                // Every shard locked, then flushed; the locks are never released, so no
                // worker writes after the final flush (the process exits next).
                let mut held: Vec<_> = shared.shards.iter().map(lock).collect();
                let flushed = held.iter_mut().try_for_each(|svc| svc.flush());
                let items: usize = held.iter().map(|svc| svc.len()).sum();
                std::mem::forget(held);
                match flushed {
                    Ok(()) => {
                        eprintln!("tickcache-server: {sig}: {items} items, flushed; bye");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("tickcache-server: {sig}: flush failed: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
        }
    });
    rt.shutdown_timeout(Duration::from_millis(100));
    code
}
