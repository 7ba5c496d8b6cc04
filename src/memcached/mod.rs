//! memcached's text protocol over a tickcache backend: `no_std`, no heap.
//!
//! Four parts, all usable on a microcontroller (a UART or TCP stack feeding bytes in):
//! - [`Parser`] turns a connection's bytes into [`Command`]s incrementally: it consumes
//!   nothing until a command (line and data block) is complete, never allocates, and
//!   discards a data block that exceeds the item limit instead of buffering it.
//! - [`Memcached`] executes commands on a [`Store`] (a [`Table`], or a table logged to
//!   flash by the [`flash`](crate::flash) module) and writes memcached's replies into a
//!   [`Sink`].
//! - [`Driver`] is one connection, sans IO: bytes in, replies out to an
//!   [`embedded_io::Write`] sink, in a bounded input buffer, one command (or one key of a
//!   multi-get) per step, with long lines, too-large items, lost bytes and a full sink
//!   handled (see its module). The server, the tests, the fuzz target and the firmware all
//!   run connections through it.
//!
//! # Items
//! An item is one table entry of [`Kind::Item`]: a 12-byte header (client flags `u32`, cas
//! unique `u64`, little-endian) and the data, under the memcached key itself (no prefix or
//! version: clients make their own keys). So a table with values of `V` bytes holds items of
//! up to `V - 12` data bytes ([`Memcached::item_max`]).
//!
//! # Time
//! Expiry is memcached's exptime: 0 never expires, a negative value is already expired, up
//! to 30 days (2 592 000) is seconds from now, above that an absolute Unix time. The caller
//! passes [`Now`]: the cache time in ticks and the wall-clock Unix time, which is only used
//! to turn an absolute exptime into a duration.
//!
//! # Limits and differences from memcached
//! - Keys: 1 to 250 bytes, no control characters (memcached accepts control characters).
//! - `incr`/`decr` read the delta and the stored value, and `cas` its unique, as memcached
//!   does (C's `strtoull`: leading white space, a sign, any number of leading zeros, then
//!   the end, white space or a NUL byte), and keep its in-place rule: a result shorter than
//!   the stored data is padded with spaces to the stored length. Other numbers (flags,
//!   exptime, byte count) are plain digits. A command line ends at its first NUL byte.
//! - `flush_all <delay>` clears the table at the first command at or after the deadline.
//! - `stats` reports the counters of this module; `stats <group>` other than `reset` is
//!   `ERROR`.
//!
//! [`Table`]: crate::Table

pub mod driver;
mod parse;

/// The IO traits of the driver's output, re-exported so a [`Handler`] names the same
/// version.
pub use embedded_io;

#[cfg(feature = "std")]
pub use driver::GrowBuf;
pub use driver::{Buffer, Driver, Event, Handler, LongLines, Reply, WriteError, REPLY_TOO_LARGE};
pub use parse::{Command, Keys, Parser, Step, StoreOp};
pub use parse::{BAD_CHUNK, BAD_FORMAT, ERROR, LINE_TOO_LONG};

use core::hash::BuildHasher;

use crate::backend::{Backend, Put, NEVER};
use crate::error::Error;
use crate::table::Table;
use crate::value::{self, Kind};

/// Longest key memcached accepts, in bytes.
pub const MAX_KEY: usize = 250;
/// Bytes in front of an item's data: client flags (`u32`) and cas unique (`u64`).
pub const HEADER: usize = 12;
/// memcached's limit between a relative exptime (seconds) and an absolute Unix time.
pub const RELATIVE_MAX: i64 = 60 * 60 * 24 * 30;

/// Where replies go. The server's is a `Vec<u8>`; firmware can write to a fixed buffer and
/// send it whenever a command is done.
pub trait Sink {
    /// Appends bytes to the reply.
    fn put(&mut self, bytes: &[u8]);
}

impl<T: Sink + ?Sized> Sink for &mut T {
    fn put(&mut self, bytes: &[u8]) {
        T::put(self, bytes);
    }
}

#[cfg(feature = "std")]
impl Sink for std::vec::Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A backend the protocol can run on: a [`Backend`] that can also read an entry with its
/// expiry without side effects.
pub trait Store: Backend {
    /// The live entry for `key`: bytes, kind and expiry tick, without changing recency.
    fn peek(&self, key: &[u8], now: u64) -> Option<(&[u8], Kind, u64)>;

    /// [`Backend::put`] of a value given in `parts`, written one after the other (an
    /// item's header, then its data in one or two pieces). By default the parts are copied
    /// into `put`'s buffer; a store that can size an entry before writing it
    /// (`HeapTable`, feature `std`) writes them straight into the entry, one
    /// copy instead of two.
    fn put_parts(
        &mut self,
        key: &[u8],
        mode: Put,
        expiry: u64,
        now: u64,
        parts: &[&[u8]],
        kind: Kind,
    ) -> Result<bool, Error<Self::Error>> {
        self.put(key, mode, expiry, now, |dst| {
            let len = parts.iter().map(|p| p.len()).sum();
            let mut rest = dst.get_mut(..len).ok_or(Error::ValueTooLarge)?;
            for part in parts {
                let (d, r) = rest.split_at_mut(part.len());
                d.copy_from_slice(part);
                rest = r;
            }
            Ok((len, kind))
        })
    }

    /// The memory the store accounts for, if it keeps a budget in bytes (`stats` then
    /// reports `bytes`, `limit_maxbytes` and `evictions`).
    fn usage(&self) -> Option<Usage> {
        None
    }
}

/// A store's memory accounting, reported by `stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Usage {
    /// Bytes the items count (memcached's `bytes`).
    pub bytes: u64,
    /// The budget (memcached's `limit_maxbytes`).
    pub limit: u64,
    /// Live items removed to make room (memcached's `evictions`).
    pub evictions: u64,
}

/// The engine's working buffer for `append`, `prepend` and `incr`: room for one item.
///
/// A fixed table's engine uses `[u8; V]` (the table's value size, no heap); an engine on a
/// `HeapTable` (feature `std`) uses a `Vec<u8>` that grows to the largest item
/// such a command has rewritten.
pub trait Scratch {
    /// Largest item (header included) the buffer can hold.
    fn capacity(&self) -> usize;
    /// The first `len` bytes of the buffer; `None` above [`Scratch::capacity`].
    fn room(&mut self, len: usize) -> Option<&mut [u8]>;
}

impl<const V: usize> Scratch for [u8; V] {
    fn capacity(&self) -> usize {
        V
    }
    fn room(&mut self, len: usize) -> Option<&mut [u8]> {
        self.get_mut(..len)
    }
}

#[cfg(feature = "std")]
impl Scratch for std::vec::Vec<u8> {
    fn capacity(&self) -> usize {
        usize::MAX
    }
    fn room(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.len() < len {
            self.resize(len, 0);
        }
        self.get_mut(..len)
    }
}

/// The engine on a [`HeapTable`](crate::heap::HeapTable), with a growable working buffer;
/// build it with [`Memcached::with_scratch`] and `Vec::new()`.
#[cfg(feature = "std")]
pub type HeapMemcached<H = std::collections::hash_map::RandomState> =
    Memcached<crate::heap::HeapTable<H>, 0, std::vec::Vec<u8>>;

impl<const N: usize, const K: usize, const V: usize, H: BuildHasher> Store for Table<N, K, V, H> {
    fn peek(&self, key: &[u8], now: u64) -> Option<(&[u8], Kind, u64)> {
        Table::peek(self, key, now)
    }
}

/// The time of a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Now {
    /// Cache time in ticks (the backend's clock).
    pub ticks: u64,
    /// Ticks per second.
    pub ticks_per_second: u32,
    /// Wall-clock Unix time in seconds (for absolute exptimes; 0 if unknown).
    pub unix: u64,
}

impl Now {
    /// The expiry tick for a memcached exptime; `None` when it is already over.
    pub fn expiry(&self, exptime: i64) -> Option<u64> {
        if exptime == 0 {
            return Some(NEVER);
        }
        if exptime < 0 {
            return None;
        }
        let secs = if exptime > RELATIVE_MAX {
            let at = exptime as u64;
            if at <= self.unix {
                return None;
            }
            at - self.unix
        } else {
            exptime as u64
        };
        let ticks = secs.saturating_mul(u64::from(self.ticks_per_second));
        Some(self.ticks.saturating_add(ticks).min(NEVER - 1))
    }
}

/// What the connection does after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Outcome {
    /// Keep reading commands.
    Continue,
    /// Close the connection (after sending what was written).
    Close,
}

/// Counters reported by `stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// Keys asked for by `get`, `gets`, `gat` and `gats`.
    pub cmd_get: u64,
    /// Storage commands.
    pub cmd_set: u64,
    /// `flush_all` commands.
    pub cmd_flush: u64,
    /// `touch`, `gat` and `gats` keys.
    pub cmd_touch: u64,
    /// Keys found by a retrieval.
    pub get_hits: u64,
    /// Keys missed by a retrieval.
    pub get_misses: u64,
    /// `delete`s that removed an item.
    pub delete_hits: u64,
    /// `delete`s of a missing key.
    pub delete_misses: u64,
    /// `incr`s that found the key.
    pub incr_hits: u64,
    /// `incr`s of a missing key.
    pub incr_misses: u64,
    /// `decr`s that found the key.
    pub decr_hits: u64,
    /// `decr`s of a missing key.
    pub decr_misses: u64,
    /// `cas` that stored.
    pub cas_hits: u64,
    /// `cas` of a missing key.
    pub cas_misses: u64,
    /// `cas` refused because the item changed.
    pub cas_badval: u64,
    /// `touch`es that found the key.
    pub touch_hits: u64,
    /// `touch`es of a missing key.
    pub touch_misses: u64,
    /// Items stored.
    pub total_items: u64,
}

/// The memcached engine over store `S` whose values hold `V` bytes (the table's `V`).
///
/// It keeps the cas counter, the `stats` counters, a pending delayed flush, and a scratch
/// buffer `B` for `append`/`prepend`/`incr`: by default `V` bytes, so its RAM cost is the
/// store plus `V` bytes and a few words. On the heap table `B` is a `Vec<u8>` and `V` is
/// unused (`HeapMemcached`, feature `std`).
pub struct Memcached<S, const V: usize, B = [u8; V]> {
    store: S,
    item_max: usize,
    cas: u64,
    flush_at: Option<u64>,
    stats: Stats,
    scratch: B,
}

const STORED: &[u8] = b"STORED\r\n";
const NOT_STORED: &[u8] = b"NOT_STORED\r\n";
const NOT_FOUND: &[u8] = b"NOT_FOUND\r\n";
const EXISTS: &[u8] = b"EXISTS\r\n";
const DELETED: &[u8] = b"DELETED\r\n";
const TOUCHED: &[u8] = b"TOUCHED\r\n";
const END: &[u8] = b"END\r\n";
const OK: &[u8] = b"OK\r\n";
/// The reply to an item over the size limit.
pub const TOO_LARGE: &[u8] = b"SERVER_ERROR object too large for cache\r\n";
const NO_MEMORY: &[u8] = b"SERVER_ERROR out of memory storing object\r\n";
const BACKEND: &[u8] = b"SERVER_ERROR storage failure\r\n";
const NON_NUMERIC: &[u8] = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";

impl<S: Store, const V: usize, B: Scratch> Memcached<S, V, B> {
    /// An engine over `store` with the working buffer `scratch`, accepting items of up to
    /// `item_max` data bytes (capped by the buffer's capacity less the 12-byte header; the
    /// store may refuse less). Cas uniques start after `first_cas`.
    pub fn with_scratch(store: S, item_max: usize, first_cas: u64, scratch: B) -> Self {
        let cap = scratch.capacity().saturating_sub(HEADER);
        Memcached {
            store,
            item_max: item_max.min(cap),
            cas: first_cas,
            flush_at: None,
            stats: Stats::default(),
            scratch,
        }
    }
}

impl<S: Store, const V: usize> Memcached<S, V> {
    /// An engine over `store`, accepting items of up to `item_max` data bytes (capped at
    /// `V - 12`). Cas uniques start after `first_cas` (pass the largest unique a
    /// persistent store holds, see [`Memcached::max_cas`]).
    pub const fn new(store: S, item_max: usize, first_cas: u64) -> Self {
        const { assert!(V > HEADER, "V must exceed the 12-byte item header") };
        let cap = V - HEADER;
        Memcached {
            store,
            item_max: if item_max < cap { item_max } else { cap },
            cas: first_cas,
            flush_at: None,
            stats: Stats {
                cmd_get: 0,
                cmd_set: 0,
                cmd_flush: 0,
                cmd_touch: 0,
                get_hits: 0,
                get_misses: 0,
                delete_hits: 0,
                delete_misses: 0,
                incr_hits: 0,
                incr_misses: 0,
                decr_hits: 0,
                decr_misses: 0,
                cas_hits: 0,
                cas_misses: 0,
                cas_badval: 0,
                touch_hits: 0,
                touch_misses: 0,
                total_items: 0,
            },
            scratch: [0; V],
        }
    }
}

impl<S: Store, const V: usize, B: Scratch> Memcached<S, V, B> {
    /// The item limit in data bytes.
    pub const fn item_max(&self) -> usize {
        self.item_max
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, mutably (to flush a persistent store, for example).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The largest cas unique among the items of a table (to continue after a restart).
    pub fn max_cas<const N: usize, const K: usize, const W: usize, H: BuildHasher>(
        table: &Table<N, K, W, H>,
    ) -> u64 {
        let mut max = 0;
        table.for_each_lru(|_, bytes, kind, _| {
            if let (Kind::Item, Some(h)) = (kind, bytes.get(..HEADER)) {
                let mut c = [0u8; 8];
                c.copy_from_slice(&h[4..HEADER]);
                max = max.max(u64::from_le_bytes(c));
            }
        });
        max
    }

    fn next_cas(&mut self) -> u64 {
        self.cas = self.cas.wrapping_add(1).max(1);
        self.cas
    }

    /// Runs a pending delayed `flush_all` whose time has come.
    pub fn tick(&mut self, now: &Now) {
        if let Some(at) = self.flush_at {
            if now.ticks >= at {
                self.flush_at = None;
                // A RAM table cannot fail; a persistent one reports at its next write.
                let _ = self.store.clear();
            }
        }
    }

    /// Executes one command, writing its reply into `out`.
    pub fn execute(&mut self, cmd: &Command<'_>, now: &Now, out: &mut impl Sink) -> Outcome {
        self.tick(now);
        match *cmd {
            Command::Get { keys, cas } => {
                for key in keys {
                    self.get_one(key, cas, None, now, out);
                }
                out.put(END);
            }
            Command::Gat { exptime, keys, cas } => {
                for key in keys {
                    self.get_one(key, cas, Some(exptime), now, out);
                }
                out.put(END);
            }
            Command::Store {
                op,
                key,
                flags,
                exptime,
                data,
                unique,
                noreply,
            } => {
                let r = self.store_item(op, key, flags, exptime, data, unique, now);
                reply(out, noreply, r);
            }
            Command::TooLarge { op, key, noreply } => {
                self.stats.cmd_set += 1;
                if op == StoreOp::Set {
                    let _ = self.store.delete(key, now.ticks);
                }
                reply(out, noreply, TOO_LARGE);
            }
            Command::Delete { key, noreply } => {
                let r = match self.store.delete(key, now.ticks) {
                    Ok(true) => {
                        self.stats.delete_hits += 1;
                        DELETED
                    }
                    Ok(false) => {
                        self.stats.delete_misses += 1;
                        NOT_FOUND
                    }
                    Err(_) => BACKEND,
                };
                reply(out, noreply, r);
            }
            Command::Arith {
                key,
                delta,
                incr,
                noreply,
            } => self.arith(key, delta, incr, noreply, now, out),
            Command::Touch {
                key,
                exptime,
                noreply,
            } => {
                self.stats.cmd_touch += 1;
                let r = match self.touch(key, exptime, now) {
                    Ok(true) => {
                        self.stats.touch_hits += 1;
                        TOUCHED
                    }
                    Ok(false) => {
                        self.stats.touch_misses += 1;
                        NOT_FOUND
                    }
                    Err(()) => BACKEND,
                };
                reply(out, noreply, r);
            }
            Command::FlushAll { delay, noreply } => {
                self.stats.cmd_flush += 1;
                let r = if delay <= 0 {
                    self.flush_at = None;
                    match self.store.clear() {
                        Ok(()) => OK,
                        Err(_) => BACKEND,
                    }
                } else {
                    self.flush_at = now.expiry(delay);
                    OK
                };
                reply(out, noreply, r);
            }
            Command::Version => {
                out.put(b"VERSION ");
                out.put(env!("CARGO_PKG_VERSION").as_bytes());
                out.put(b"-tickcache\r\n");
            }
            Command::Stats { reset } => {
                if reset {
                    self.stats = Stats::default();
                    out.put(b"RESET\r\n");
                } else {
                    self.write_stats(out);
                    out.put(END);
                }
            }
            Command::Verbosity { noreply } => reply(out, noreply, OK),
            Command::Quit => return Outcome::Close,
            Command::Invalid { reply: r, noreply } => reply(out, noreply, r),
        }
        Outcome::Continue
    }

    /// Writes the `STAT` lines of the counters (without the final `END`).
    pub fn write_stats(&self, out: &mut impl Sink) {
        let s = &self.stats;
        if let Some(u) = self.store.usage() {
            stat(out, "bytes", u.bytes);
            stat(out, "evictions", u.evictions);
        }
        let lines: [(&str, u64); 20] = [
            ("curr_items", self.store.len() as u64),
            ("total_items", s.total_items),
            ("cmd_get", s.cmd_get),
            ("cmd_set", s.cmd_set),
            ("cmd_flush", s.cmd_flush),
            ("cmd_touch", s.cmd_touch),
            ("get_hits", s.get_hits),
            ("get_misses", s.get_misses),
            ("delete_hits", s.delete_hits),
            ("delete_misses", s.delete_misses),
            ("incr_hits", s.incr_hits),
            ("incr_misses", s.incr_misses),
            ("decr_hits", s.decr_hits),
            ("decr_misses", s.decr_misses),
            ("cas_hits", s.cas_hits),
            ("cas_misses", s.cas_misses),
            ("cas_badval", s.cas_badval),
            ("touch_hits", s.touch_hits),
            ("touch_misses", s.touch_misses),
            ("item_size_max", self.item_max as u64),
        ];
        for (name, v) in lines {
            stat(out, name, v);
        }
    }

    /// One key of a retrieval: writes its `VALUE` block on a hit (`touch` is `gat`'s new
    /// exptime). The caller writes the final `END` after the last key, so a server can send
    /// the reply of a long multi-get in parts.
    pub fn get_one(
        &mut self,
        key: &[u8],
        cas: bool,
        touch: Option<i64>,
        now: &Now,
        out: &mut impl Sink,
    ) {
        self.stats.cmd_get += 1;
        let expiry = touch.map(|t| now.expiry(t));
        if touch.is_some() {
            self.stats.cmd_touch += 1;
        }
        if let Some(Some(e)) = expiry {
            let _ = self.store.touch(key, e, now.ticks);
        }
        let hit = self.store.get(key, now.ticks, |bytes, kind| {
            let (flags, unique, data) = split_item(bytes, kind);
            // The numbers after the key are gathered on the stack and written at once.
            let mut tail = Line::new();
            tail.put(b" ");
            tail.put_u64(u64::from(flags));
            tail.put(b" ");
            tail.put_u64(data.len() as u64);
            if cas {
                tail.put(b" ");
                tail.put_u64(unique);
            }
            tail.put(b"\r\n");
            out.put(b"VALUE ");
            out.put(key);
            out.put(tail.bytes());
            out.put(data);
            out.put(b"\r\n");
        });
        match hit {
            Ok(Some(())) => {
                self.stats.get_hits += 1;
                if touch.is_some() {
                    self.stats.touch_hits += 1;
                }
                if let Some(None) = expiry {
                    let _ = self.store.delete(key, now.ticks);
                }
            }
            _ => {
                self.stats.get_misses += 1;
                if touch.is_some() {
                    self.stats.touch_misses += 1;
                }
            }
        }
    }

    fn touch(&mut self, key: &[u8], exptime: i64, now: &Now) -> Result<bool, ()> {
        match now.expiry(exptime) {
            Some(e) => self.store.touch(key, e, now.ticks).map_err(drop),
            None => self.store.delete(key, now.ticks).map_err(drop),
        }
    }

    /// Writes an item with a fresh cas unique.
    fn write(
        &mut self,
        key: &[u8],
        mode: Put,
        flags: u32,
        expiry: u64,
        parts: [&[u8]; 2],
        now: &Now,
    ) -> &'static [u8] {
        let unique = self.next_cas();
        let r = write_item(
            &mut self.store,
            key,
            mode,
            flags,
            unique,
            expiry,
            parts,
            now,
        );
        if r == STORED {
            self.stats.total_items += 1;
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn store_item(
        &mut self,
        op: StoreOp,
        key: &[u8],
        flags: u32,
        exptime: i64,
        data: &[u8],
        unique: u64,
        now: &Now,
    ) -> &'static [u8] {
        self.stats.cmd_set += 1;
        if data.len() > self.item_max {
            if op == StoreOp::Set {
                let _ = self.store.delete(key, now.ticks);
            }
            return TOO_LARGE;
        }
        let expiry = now.expiry(exptime);
        match op {
            StoreOp::Set => match expiry {
                Some(e) => self.write(key, Put::Set, flags, e, [data, &[]], now),
                None => self.remove(key, now, STORED),
            },
            StoreOp::Add => match expiry {
                Some(e) => self.write(key, Put::Add, flags, e, [data, &[]], now),
                None => match self.store.has_key(key, now.ticks) {
                    Ok(true) => NOT_STORED,
                    Ok(false) => STORED,
                    Err(_) => BACKEND,
                },
            },
            StoreOp::Replace => {
                if self.store.peek(key, now.ticks).is_none() {
                    return NOT_STORED;
                }
                match expiry {
                    Some(e) => self.write(key, Put::Set, flags, e, [data, &[]], now),
                    None => self.remove(key, now, STORED),
                }
            }
            StoreOp::Cas => {
                let Some((bytes, kind, _)) = self.store.peek(key, now.ticks) else {
                    self.stats.cas_misses += 1;
                    return NOT_FOUND;
                };
                if split_item(bytes, kind).1 != unique {
                    self.stats.cas_badval += 1;
                    return EXISTS;
                }
                self.stats.cas_hits += 1;
                match expiry {
                    Some(e) => self.write(key, Put::Set, flags, e, [data, &[]], now),
                    None => self.remove(key, now, STORED),
                }
            }
            StoreOp::Append | StoreOp::Prepend => {
                let Some((bytes, kind, old_expiry)) = self.store.peek(key, now.ticks) else {
                    return NOT_STORED;
                };
                let (old_flags, _, old) = split_item(bytes, kind);
                let n = old.len();
                if n + data.len() > self.item_max {
                    return TOO_LARGE;
                }
                let Some(held) = self.scratch.room(n) else {
                    return TOO_LARGE;
                };
                held.copy_from_slice(old);
                let held: &[u8] = held;
                let parts: [&[u8]; 2] = if op == StoreOp::Append {
                    [held, data]
                } else {
                    [data, held]
                };
                self.cas = self.cas.wrapping_add(1).max(1);
                let r = write_item(
                    &mut self.store,
                    key,
                    Put::Set,
                    old_flags,
                    self.cas,
                    old_expiry,
                    parts,
                    now,
                );
                if r == STORED {
                    self.stats.total_items += 1;
                }
                r
            }
        }
    }

    fn remove(&mut self, key: &[u8], now: &Now, ok: &'static [u8]) -> &'static [u8] {
        match self.store.delete(key, now.ticks) {
            Ok(_) => ok,
            Err(_) => BACKEND,
        }
    }

    fn arith(
        &mut self,
        key: &[u8],
        delta: u64,
        incr: bool,
        noreply: bool,
        now: &Now,
        out: &mut impl Sink,
    ) {
        let Some((bytes, kind, expiry)) = self.store.peek(key, now.ticks) else {
            if incr {
                self.stats.incr_misses += 1;
            } else {
                self.stats.decr_misses += 1;
            }
            return reply(out, noreply, NOT_FOUND);
        };
        let (flags, _, data) = split_item(bytes, kind);
        // memcached reads the stored data followed by its `\r\n`, so the end of the data
        // ends the number like white space does. (Data of white space only is refused;
        // memcached would read on past the item.)
        let Some(old) = parse::parse_number(data) else {
            return reply(out, noreply, NON_NUMERIC);
        };
        if incr {
            self.stats.incr_hits += 1;
        } else {
            self.stats.decr_hits += 1;
        }
        let new = if incr {
            old.wrapping_add(delta)
        } else {
            old.saturating_sub(delta)
        };
        let mut digits = [0u8; 20];
        let n = value::write_u64(new, &mut digits);
        // memcached rewrites the item in place when the result is not longer than the
        // stored data, padding it with spaces to the stored length (whatever that length).
        let len = n.max(data.len());
        let Some(buf) = self.scratch.room(len) else {
            // Only a table with values below 20 bytes: the number does not fit.
            return reply(out, noreply, TOO_LARGE);
        };
        buf[..n].copy_from_slice(&digits[..n]);
        buf[n..].fill(b' ');
        self.cas = self.cas.wrapping_add(1).max(1);
        let unique = self.cas;
        let r = write_item(
            &mut self.store,
            key,
            Put::Set,
            flags,
            unique,
            expiry,
            [&*buf, &[]],
            now,
        );
        if r == STORED {
            self.stats.total_items += 1;
            if !noreply {
                out.put(&digits[..n]);
                out.put(b"\r\n");
            }
        } else {
            reply(out, noreply, r);
        }
    }
}

impl<S, const V: usize, B> core::fmt::Debug for Memcached<S, V, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Memcached")
            .field("item_max", &self.item_max)
            .field("cas", &self.cas)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Stores `parts` (concatenated) as an item with `flags` and `unique`.
#[allow(clippy::too_many_arguments)]
fn write_item<S: Store>(
    store: &mut S,
    key: &[u8],
    mode: Put,
    flags: u32,
    unique: u64,
    expiry: u64,
    parts: [&[u8]; 2],
    now: &Now,
) -> &'static [u8] {
    let mut head = [0; HEADER];
    head[..4].copy_from_slice(&flags.to_le_bytes());
    head[4..].copy_from_slice(&unique.to_le_bytes());
    let r = store.put_parts(
        key,
        mode,
        expiry,
        now.ticks,
        &[&head, parts[0], parts[1]],
        Kind::Item,
    );
    match r {
        Ok(true) => STORED,
        Ok(false) => NOT_STORED,
        Err(Error::ValueTooLarge) => TOO_LARGE,
        Err(Error::StorageFull) => NO_MEMORY,
        Err(_) => BACKEND,
    }
}

fn reply(out: &mut impl Sink, noreply: bool, line: &[u8]) {
    if !noreply {
        out.put(line);
    }
}

fn stat(out: &mut impl Sink, name: &str, v: u64) {
    out.put(b"STAT ");
    out.put(name.as_bytes());
    out.put(b" ");
    put_u64(out, v);
    out.put(b"\r\n");
}

/// Writes `STAT name value\r\n` (for a server's own statistics).
pub fn write_stat(out: &mut impl Sink, name: &str, value: u64) {
    stat(out, name, value);
}

/// Flags, cas unique and data of a stored entry. Entries written by other APIs read as
/// flags 0, unique 0 and their raw bytes.
fn split_item(bytes: &[u8], kind: Kind) -> (u32, u64, &[u8]) {
    match (kind, bytes.get(..HEADER)) {
        (Kind::Item, Some(h)) => {
            let mut f = [0u8; 4];
            f.copy_from_slice(&h[..4]);
            let mut c = [0u8; 8];
            c.copy_from_slice(&h[4..HEADER]);
            (
                u32::from_le_bytes(f),
                u64::from_le_bytes(c),
                &bytes[HEADER..],
            )
        }
        _ => (0, 0, bytes),
    }
}

/// The end of a `VALUE` line (` <flags> <bytes> [<cas unique>]\r\n`), built on the stack.
struct Line {
    buf: [u8; 64],
    len: usize,
}

impl Line {
    const fn new() -> Self {
        Line {
            buf: [0; 64],
            len: 0,
        }
    }

    /// Appends `bytes`; the callers append at most 3 numbers of 20 digits, 3 spaces and a
    /// line end, which fit (anything beyond would be dropped, never a panic).
    fn put(&mut self, bytes: &[u8]) {
        if let Some(room) = self.buf.get_mut(self.len..self.len + bytes.len()) {
            room.copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }

    fn put_u64(&mut self, v: u64) {
        let mut digits = [0u8; 20];
        let n = value::write_u64(v, &mut digits);
        self.put(&digits[..n]);
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn put_u64(out: &mut impl Sink, v: u64) {
    let mut buf = [0u8; 20];
    let n = value::write_u64(v, &mut buf);
    out.put(&buf[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exptime_rules() {
        let now = Now {
            ticks: 1000,
            ticks_per_second: 10,
            unix: 1_700_000_000,
        };
        assert_eq!(now.expiry(0), Some(NEVER));
        assert_eq!(now.expiry(-1), None);
        assert_eq!(now.expiry(5), Some(1050));
        assert_eq!(
            now.expiry(RELATIVE_MAX),
            Some(1000 + 10 * RELATIVE_MAX as u64)
        );
        assert_eq!(now.expiry(1_700_000_010), Some(1100));
        assert_eq!(now.expiry(1_699_999_999), None);
    }
}
