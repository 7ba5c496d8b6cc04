//! The heap table (feature `std`): Django's locmem on the host, under a budget in bytes.
//!
//! [`Table`](crate::Table) reserves `N` slots of the largest key and value up front, which
//! suits firmware and wastes a host's memory when items range from a few bytes to a
//! megabyte. `HeapTable` allocates each entry at its own size and evicts least recently
//! used entries when the next one would pass [`Limits::max_bytes`] (memcached's `-m`). It
//! keeps the [`Backend`] contract of the fixed table exactly: expiry, recency, Django's
//! `MAX_ENTRIES`/`CULL_FREQUENCY` culling (optional here), `add`, `incr`, `rekey`, and a
//! failed `put` that leaves its key absent. The property tests run it against the same
//! model as the fixed table.
//!
//! Layout:
//!
//! | part | role |
//! |---|---|
//! | `slots: Vec<Slot>` | one per entry: one allocation holding the key then the value, expiry, kind, the key's hash, and `prev`/`next` slot numbers of the recency list (most recent at the head) |
//! | `index: hashbrown::HashTable<u32>` | slot numbers, found by the key's hash and compared with the slot's key, so a key is stored once |
//! | `free: Vec<u32>` | slot numbers to reuse |
//! | `staging: Vec<u8>` | where `put`'s `fill` writes (the value's length is known only after), allocated zeroed at the first `put` so untouched pages cost no RAM; [`HeapTable::put_parts`] (a value already in memory, the memcached engine's writes) does without it |
//!
//! Every operation is O(1) on average: one hash, one probe, a few link updates, and for a
//! write one allocation and one copy of the value. Eviction for the byte budget takes
//! entries from the tail of the recency list, one O(1) step each. Django's cull, when an
//! entry limit is set, is the fixed table's (the same bounded sweep for expired entries).
//!
//! The hasher is std's `RandomState` (SipHash with random keys) by default, because the
//! server's keys come from the network: nobody can choose keys that collide.
//!
//! # Accounting
//! An entry counts as its key, its value and [`ENTRY_OVERHEAD`] bytes (slot, index and
//! allocator bookkeeping), so [`HeapTable::bytes`] follows the memory the entries really
//! take. The staging buffer (up to [`Limits::value_max`] bytes, touched only as far as the
//! largest value written) is outside the budget.
//!
//! ```
//! use tickcache::heap::{HeapTable, Limits};
//! use tickcache::{Cache, Config, ManualClock};
//!
//! let clock = ManualClock::new(1000);
//! // 64 KiB for entries, values up to 4 KiB, made keys up to 250 bytes.
//! let table = HeapTable::new(Limits::new(64 << 10).value_max(4096)).unwrap();
//! let mut cache: Cache<_, _, 250> = Cache::new(&clock, table, Config::new());
//! for i in 0..100 {
//!     cache.set_raw(i.to_string().as_str(), &[7u8; 1000], 60)?;
//! }
//! // The oldest entries were evicted to stay within 64 KiB.
//! assert!(cache.backend().bytes() <= 64 << 10);
//! assert!(!cache.has_key("0")?);
//! assert!(cache.has_key("99")?);
//! # Ok::<(), tickcache::Error>(())
//! ```

use core::convert::Infallible;
use core::hash::{BuildHasher, Hasher};
use std::collections::hash_map::RandomState;
use std::sync::Arc;
use std::vec;
use std::vec::Vec;

use hashbrown::HashTable;

use crate::backend::{Backend, Put, EXPIRED};
use crate::error::Error;
use crate::key::KeyError;
use crate::value::{self, Kind};

const NIL: u32 = u32::MAX;

/// Bytes an entry counts beyond its key and value: its slot (48 bytes), its index entry, the
/// reference counts of its shared buffer (16 bytes) and the allocator's header.
pub const ENTRY_OVERHEAD: usize = 80;

/// The bytes an entry with a key of `key` bytes and a value of `value` bytes counts.
pub const fn entry_cost(key: usize, value: usize) -> usize {
    key.saturating_add(value).saturating_add(ENTRY_OVERHEAD)
}

/// The limits of a [`HeapTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Budget for the entries, in bytes as [`entry_cost`] counts them (memcached's `-m`).
    pub max_bytes: usize,
    /// Longest made key, in bytes (at most 65,535).
    pub key_max: usize,
    /// Largest encoded value, in bytes (a memcached item: data plus its 12-byte header).
    pub value_max: usize,
    /// Django's `MAX_ENTRIES`: `usize::MAX` for no limit but the budget.
    pub max_entries: usize,
    /// Django's `CULL_FREQUENCY` (0 clears the table when `max_entries` is reached).
    pub cull_frequency: u16,
}

impl Limits {
    /// A budget of `max_bytes`, keys up to memcached's 250 bytes, values up to 1 MiB, and no
    /// entry limit.
    pub const fn new(max_bytes: usize) -> Self {
        Limits {
            max_bytes,
            key_max: crate::memcached::MAX_KEY,
            value_max: 1 << 20,
            max_entries: usize::MAX,
            cull_frequency: 3,
        }
    }

    /// Sets the longest made key.
    pub const fn key_max(mut self, bytes: usize) -> Self {
        self.key_max = bytes;
        self
    }

    /// Sets the largest encoded value.
    pub const fn value_max(mut self, bytes: usize) -> Self {
        self.value_max = bytes;
        self
    }

    /// Sets Django's `MAX_ENTRIES` and `CULL_FREQUENCY`.
    pub const fn culling(mut self, max_entries: usize, cull_frequency: u16) -> Self {
        self.max_entries = max_entries;
        self.cull_frequency = cull_frequency;
        self
    }
}

/// Why [`Limits`] were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeapLimitError {
    /// `max_entries` was 0.
    MaxEntries,
    /// `key_max` was 0 or above 65,535.
    KeyMax,
    /// An entry with the longest key and the largest value would not fit `max_bytes`.
    Budget,
}

impl core::fmt::Display for HeapLimitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            HeapLimitError::MaxEntries => "max_entries must be at least 1",
            HeapLimitError::KeyMax => "key_max must be in 1..=65535",
            HeapLimitError::Budget => "max_bytes must hold an entry of the largest key and value",
        })
    }
}

struct Slot {
    /// The key, then the value. Empty while the slot is free. Reference counted so a reply
    /// can send a large value without copying it ([`HeapTable::peek_shared`]); a value
    /// still being sent is replaced, never changed in place.
    data: Arc<[u8]>,
    expiry: u64,
    hash: u64,
    prev: u32,
    next: u32,
    klen: u16,
    kind: Kind,
}

impl Slot {
    fn key(&self) -> &[u8] {
        &self.data[..usize::from(self.klen)]
    }

    fn value(&self) -> &[u8] {
        &self.data[usize::from(self.klen)..]
    }

    fn cost(&self) -> usize {
        entry_cost(
            usize::from(self.klen),
            self.data.len() - usize::from(self.klen),
        )
    }
}

/// One key and value in one allocation, the value given in `parts` written one after the
/// other.
fn joined(key: &[u8], parts: &[&[u8]]) -> Arc<[u8]> {
    // Zeroed (a fill the compiler turns into memset), then plain copies: 16 us for a
    // 100 KiB value where collecting `key.iter().chain(value)` copied byte by byte (190 us).
    let len = key.len() + parts_len(parts);
    let mut data: Arc<[u8]> = core::iter::repeat_n(0, len).collect();
    if let Some(d) = Arc::get_mut(&mut data) {
        let (k, value) = d.split_at_mut(key.len());
        k.copy_from_slice(key);
        write_parts(value, parts);
    }
    data
}

/// The length of a value given in parts.
fn parts_len(parts: &[&[u8]]) -> usize {
    parts.iter().map(|p| p.len()).sum()
}

/// Copies `parts`, one after the other, to the start of `dst` (which holds them all).
fn write_parts(mut dst: &mut [u8], parts: &[&[u8]]) {
    for part in parts {
        let (d, rest) = dst.split_at_mut(part.len());
        d.copy_from_slice(part);
        dst = rest;
    }
}

/// A value of a [`HeapTable`] entry, shared with the table (see
/// [`HeapTable::peek_shared`]): the entry's encoded value bytes.
#[derive(Clone)]
pub struct SharedValue {
    data: Arc<[u8]>,
    start: usize,
}

impl SharedValue {
    /// The value bytes (for a memcached item: the 12-byte header, then the data).
    pub fn bytes(&self) -> &[u8] {
        &self.data[self.start..]
    }
}

impl core::fmt::Debug for SharedValue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SharedValue")
            .field("len", &self.bytes().len())
            .finish()
    }
}

/// Variable-size entries on the heap under a byte budget, with expiry and LRU eviction. See
/// the [module documentation](self).
pub struct HeapTable<S = RandomState> {
    index: HashTable<u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
    len: usize,
    bytes: usize,
    evictions: u64,
    limits: Limits,
    staging: Vec<u8>,
    hasher: S,
}

impl HeapTable {
    /// An empty table with `limits`, hashing keys with std's randomly keyed SipHash.
    pub fn new(limits: Limits) -> Result<Self, HeapLimitError> {
        Self::with_hasher(limits, RandomState::new())
    }
}

impl<S: BuildHasher> HeapTable<S> {
    /// An empty table with `limits`, hashing keys with `hasher`.
    pub fn with_hasher(limits: Limits, hasher: S) -> Result<Self, HeapLimitError> {
        if limits.max_entries == 0 {
            return Err(HeapLimitError::MaxEntries);
        }
        if limits.key_max == 0 || limits.key_max > usize::from(u16::MAX) {
            return Err(HeapLimitError::KeyMax);
        }
        if entry_cost(limits.key_max, limits.value_max) > limits.max_bytes {
            return Err(HeapLimitError::Budget);
        }
        Ok(HeapTable {
            index: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            len: 0,
            bytes: 0,
            evictions: 0,
            limits,
            staging: Vec::new(),
            hasher,
        })
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Bytes the entries count (see [`entry_cost`]); never above [`Limits::max_bytes`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Live entries removed to make room (for the budget or by Django's cull).
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Visits every entry held (live or not yet reclaimed) from least to most recent:
    /// made key, value bytes, kind and expiry tick.
    pub fn for_each_lru(&self, mut f: impl FnMut(&[u8], &[u8], Kind, u64)) {
        let mut s = self.tail;
        while s != NIL {
            let slot = &self.slots[s as usize];
            f(slot.key(), slot.value(), slot.kind, slot.expiry);
            s = slot.prev;
        }
    }

    /// Reads a live entry without changing recency: bytes, kind and expiry tick.
    pub fn peek(&self, key: &[u8], now: u64) -> Option<(&[u8], Kind, u64)> {
        let slot = &self.slots[self.locate(key).1? as usize];
        (slot.expiry > now).then(|| (slot.value(), slot.kind, slot.expiry))
    }

    /// Like [`HeapTable::peek`], but the value is shared rather than borrowed, so it can be
    /// sent after the table is unlocked without copying it (the server does so for large
    /// values). The entry's memory stays allocated while the [`SharedValue`] lives, even if
    /// the entry is replaced or evicted meanwhile.
    pub fn peek_shared(&self, key: &[u8], now: u64) -> Option<SharedValue> {
        let slot = &self.slots[self.locate(key).1? as usize];
        (slot.expiry > now).then(|| SharedValue {
            data: Arc::clone(&slot.data),
            start: usize::from(slot.klen),
        })
    }

    fn locate(&self, key: &[u8]) -> (u64, Option<u32>) {
        // The bytes alone (`hash_one` would hash the length first): one key is hashed at a
        // time, so no prefix is needed to tell keys apart, and SipHash has a block less.
        let mut hasher = self.hasher.build_hasher();
        hasher.write(key);
        let hash = hasher.finish();
        let slots = &self.slots;
        let found = self
            .index
            .find(hash, |&i| slots[i as usize].key() == key)
            .copied();
        (hash, found)
    }

    fn unlink_lru(&mut self, i: u32) {
        let (p, n) = {
            let s = &self.slots[i as usize];
            (s.prev, s.next)
        };
        if p == NIL {
            self.head = n;
        } else {
            self.slots[p as usize].next = n;
        }
        if n == NIL {
            self.tail = p;
        } else {
            self.slots[n as usize].prev = p;
        }
    }

    fn push_front(&mut self, i: u32) {
        let head = self.head;
        {
            let s = &mut self.slots[i as usize];
            s.prev = NIL;
            s.next = head;
        }
        if head == NIL {
            self.tail = i;
        } else {
            self.slots[head as usize].prev = i;
        }
        self.head = i;
    }

    fn touch_lru(&mut self, i: u32) {
        if self.head != i {
            self.unlink_lru(i);
            self.push_front(i);
        }
    }

    fn unindex(&mut self, i: u32) {
        let hash = self.slots[i as usize].hash;
        if let Ok(entry) = self.index.find_entry(hash, |&j| j == i) {
            entry.remove();
        }
    }

    fn reindex(&mut self, i: u32) {
        let hash = self.slots[i as usize].hash;
        let slots = &self.slots;
        self.index
            .insert_unique(hash, i, |&j| slots[j as usize].hash);
    }

    /// Removes slot `i` from the index and the recency list and frees its memory.
    fn remove(&mut self, i: u32) {
        self.unindex(i);
        self.unlink_lru(i);
        let slot = &mut self.slots[i as usize];
        self.bytes -= slot.cost();
        slot.data = Arc::default();
        self.free.push(i);
        self.len -= 1;
    }

    /// Removes the least recent entry, counting it as evicted when live.
    fn evict_tail(&mut self, now: u64) {
        let t = self.tail;
        if t != NIL {
            self.evictions += u64::from(self.slots[t as usize].expiry > now);
            self.remove(t);
        }
    }

    /// Evicts least recent entries until `need` more bytes fit the budget.
    fn make_room(&mut self, need: usize, now: u64) {
        while self.bytes + need > self.limits.max_bytes && self.tail != NIL {
            self.evict_tail(now);
        }
    }

    fn freq(&self) -> usize {
        usize::from(self.limits.cull_frequency)
    }

    /// Django's cull, exactly as the fixed table runs it: frequency 0 clears the table, live
    /// entries included; a cull of one entry takes the least recent one; otherwise expired
    /// entries are reclaimed first, then, if the table is still at `max_entries`,
    /// `len / cull_frequency` least recent entries go (at least one).
    fn cull(&mut self, now: u64) {
        let freq = self.freq();
        if freq == 0 {
            let mut s = self.tail;
            while s != NIL {
                let slot = &self.slots[s as usize];
                self.evictions += u64::from(slot.expiry > now);
                s = slot.prev;
            }
            self.reset();
            return;
        }
        if self.len / freq <= 1 {
            self.evict_tail(now);
            return;
        }
        let mut s = self.tail;
        while s != NIL {
            let slot = &self.slots[s as usize];
            let (i, expired) = (s, slot.expiry <= now);
            s = slot.prev;
            if expired {
                self.remove(i);
            }
        }
        if self.len < self.limits.max_entries {
            return;
        }
        for _ in 0..(self.len / freq).max(1) {
            self.evict_tail(now);
        }
    }

    fn reset(&mut self) {
        self.index = HashTable::new();
        self.slots = Vec::new();
        self.free = Vec::new();
        self.head = NIL;
        self.tail = NIL;
        self.len = 0;
        self.bytes = 0;
    }

    /// Runs `fill` on the staging buffer; checks its answer against the value limit.
    fn stage<E>(
        &mut self,
        fill: impl FnOnce(&mut [u8]) -> Result<(usize, Kind), Error<E>>,
    ) -> Result<(usize, Kind), Error<E>> {
        let max = self.limits.value_max;
        if self.staging.len() < max {
            // Zeroed by the allocator (fresh pages), so only what values touch is resident.
            self.staging = vec![0; max];
        }
        match fill(&mut self.staging[..max]) {
            Ok((len, _)) if len > max => Err(Error::ValueTooLarge),
            other => other,
        }
    }

    /// Gives slot `i` (held, unlinked from the recency list, its cost already taken off
    /// `bytes`) the contents `key` + `parts` (the value's parts one after the other), then
    /// links it as most recent.
    fn refill(
        &mut self,
        i: u32,
        key_from: Option<&[u8]>,
        parts: &[&[u8]],
        kind: Kind,
        expiry: u64,
    ) {
        let slot = &mut self.slots[i as usize];
        let klen = usize::from(slot.klen);
        match key_from {
            None => {
                // In place when the size is unchanged and no reply is sending the value.
                let same = slot.data.len() == klen + parts_len(parts);
                match Arc::get_mut(&mut slot.data).filter(|_| same) {
                    Some(data) => write_parts(&mut data[klen..], parts),
                    None => slot.data = joined(&slot.data[..klen], parts),
                }
            }
            Some(key) => {
                slot.klen = key.len() as u16;
                slot.data = joined(key, parts);
            }
        }
        slot.kind = kind;
        slot.expiry = expiry;
        self.bytes += slot.cost();
        self.push_front(i);
    }

    /// Replaces the value of held slot `i` with `parts` (one after the other), evicting
    /// others if it grows past the budget.
    fn replace(&mut self, i: u32, parts: &[&[u8]], kind: Kind, expiry: u64, now: u64) {
        self.unlink_lru(i);
        let slot = &self.slots[i as usize];
        self.bytes -= slot.cost();
        self.make_room(entry_cost(usize::from(slot.klen), parts_len(parts)), now);
        self.refill(i, None, parts, kind, expiry);
    }

    /// Adds a new entry of value `parts` (one after the other), culling and evicting first
    /// as needed, most recent.
    fn insert(
        &mut self,
        hash: u64,
        key: &[u8],
        parts: &[&[u8]],
        kind: Kind,
        expiry: u64,
        now: u64,
    ) {
        if self.len >= self.limits.max_entries {
            self.cull(now);
        }
        self.make_room(entry_cost(key.len(), parts_len(parts)), now);
        let slot = Slot {
            data: joined(key, parts),
            expiry,
            hash,
            prev: NIL,
            next: NIL,
            klen: key.len() as u16,
            kind,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.bytes += self.slots[i as usize].cost();
        self.len += 1;
        self.reindex(i);
        self.push_front(i);
    }

    /// Stores `key` with a value given in `parts`, written one after the other straight
    /// into the entry: [`Backend::put`] without the staging buffer, so a value already in
    /// memory (a memcached item's header and data) is copied once, not twice. The same
    /// contract as `put`: with [`Put::Add`] and a live key, `Ok(false)`; a value above
    /// [`Limits::value_max`] is [`Error::ValueTooLarge`] and leaves the key absent.
    pub fn put_parts(
        &mut self,
        key: &[u8],
        mode: Put,
        expiry: u64,
        now: u64,
        parts: &[&[u8]],
        kind: Kind,
    ) -> Result<bool, Error> {
        let (hash, found) = self.locate(key);
        let too_large = parts_len(parts) > self.limits.value_max;
        match found {
            Some(i) => {
                if mode == Put::Add && self.slots[i as usize].expiry > now {
                    return Ok(false);
                }
                if too_large {
                    self.remove(i);
                    return Err(Error::ValueTooLarge);
                }
                self.replace(i, parts, kind, expiry, now);
                Ok(true)
            }
            None => {
                if key.len() > self.limits.key_max {
                    return Err(Error::Key(KeyError::OverCapacity));
                }
                if too_large {
                    return Err(Error::ValueTooLarge);
                }
                self.insert(hash, key, parts, kind, expiry, now);
                Ok(true)
            }
        }
    }
}

impl<S: BuildHasher> Backend for HeapTable<S> {
    type Error = Infallible;

    fn get<R>(
        &mut self,
        key: &[u8],
        now: u64,
        read: impl FnOnce(&[u8], Kind) -> R,
    ) -> Result<Option<R>, Error> {
        let Some(i) = self.locate(key).1 else {
            return Ok(None);
        };
        if self.slots[i as usize].expiry <= now {
            self.remove(i);
            return Ok(None);
        }
        self.touch_lru(i);
        let slot = &self.slots[i as usize];
        Ok(Some(read(slot.value(), slot.kind)))
    }

    fn has_key(&mut self, key: &[u8], now: u64) -> Result<bool, Error> {
        match self.locate(key).1 {
            Some(i) if self.slots[i as usize].expiry <= now => {
                self.remove(i);
                Ok(false)
            }
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }

    fn put(
        &mut self,
        key: &[u8],
        mode: Put,
        expiry: u64,
        now: u64,
        fill: impl FnOnce(&mut [u8]) -> Result<(usize, Kind), Error>,
    ) -> Result<bool, Error> {
        let (hash, found) = self.locate(key);
        match found {
            Some(i) => {
                if mode == Put::Add && self.slots[i as usize].expiry > now {
                    return Ok(false);
                }
                match self.stage(fill) {
                    Ok((len, kind)) => {
                        // Moved out for the copy: `replace` borrows the table.
                        let staged = core::mem::take(&mut self.staging);
                        self.replace(i, &[&staged[..len]], kind, expiry, now);
                        self.staging = staged;
                        Ok(true)
                    }
                    Err(e) => {
                        self.remove(i);
                        Err(e)
                    }
                }
            }
            None => {
                if key.len() > self.limits.key_max {
                    return Err(Error::Key(KeyError::OverCapacity));
                }
                // Encoded before anything is culled, so a value that fails costs no entry.
                let (len, kind) = self.stage(fill)?;
                let staged = core::mem::take(&mut self.staging);
                self.insert(hash, key, &[&staged[..len]], kind, expiry, now);
                self.staging = staged;
                Ok(true)
            }
        }
    }

    fn touch(&mut self, key: &[u8], expiry: u64, now: u64) -> Result<bool, Error> {
        if expiry == EXPIRED {
            return self.delete(key, now);
        }
        match self.locate(key).1 {
            Some(i) if self.slots[i as usize].expiry > now => {
                self.slots[i as usize].expiry = expiry;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn delete(&mut self, key: &[u8], now: u64) -> Result<bool, Error> {
        match self.locate(key).1 {
            Some(i) => {
                let live = self.slots[i as usize].expiry > now;
                self.remove(i);
                Ok(live)
            }
            None => Ok(false),
        }
    }

    fn incr(&mut self, key: &[u8], delta: i64, now: u64) -> Result<i64, Error> {
        let i = self.locate(key).1.ok_or(Error::NotFound)?;
        let slot = &self.slots[i as usize];
        if slot.expiry <= now {
            self.remove(i);
            return Err(Error::NotFound);
        }
        let (kind, expiry) = (slot.kind, slot.expiry);
        let old = match kind {
            Kind::Int => value::decode_int(slot.value()),
            Kind::Bytes => value::parse_decimal(slot.value()),
            // The memcached front end does memcached's unsigned incr on items itself.
            Kind::Serde | Kind::Item => None,
        }
        .ok_or(Error::NotInteger)?;
        let new = old.checked_add(delta).ok_or(Error::Overflow)?;
        // The longest integer is 20 bytes of decimal; the value limit may be shorter.
        let mut buf = [0u8; 20];
        let room = &mut buf[..self.limits.value_max.min(20)];
        let written = match kind {
            Kind::Int => value::encode_int(new, room),
            _ => value::write_decimal(new, room),
        };
        let Ok(len) = written else {
            return Err(Error::ValueTooLarge);
        };
        self.replace(i, &[&buf[..len]], kind, expiry, now);
        Ok(new)
    }

    fn rekey(&mut self, from: &[u8], to: &[u8], expiry: u64, now: u64) -> Result<bool, Error> {
        if to.len() > self.limits.key_max {
            return Err(Error::Key(KeyError::OverCapacity));
        }
        let Some(i) = self.locate(from).1 else {
            return Ok(false);
        };
        if self.slots[i as usize].expiry <= now {
            self.remove(i);
            return Ok(false);
        }
        if from == to {
            self.slots[i as usize].expiry = expiry;
            self.touch_lru(i);
            return Ok(true);
        }
        let (hash, found) = self.locate(to);
        if let Some(j) = found {
            self.remove(j);
        }
        self.unindex(i);
        self.unlink_lru(i);
        let slot = &mut self.slots[i as usize];
        self.bytes -= slot.cost();
        slot.hash = hash;
        let value = core::mem::take(&mut slot.data);
        let klen = usize::from(slot.klen);
        self.make_room(entry_cost(to.len(), value.len() - klen), now);
        let kind = self.slots[i as usize].kind;
        self.refill(i, Some(to), &[&value[klen..]], kind, expiry);
        self.reindex(i);
        Ok(true)
    }

    fn clear(&mut self) -> Result<(), Error> {
        self.reset();
        self.staging = Vec::new();
        Ok(())
    }

    fn len(&self) -> usize {
        self.len
    }
}

impl<S: BuildHasher> crate::memcached::Store for HeapTable<S> {
    fn peek(&self, key: &[u8], now: u64) -> Option<(&[u8], Kind, u64)> {
        HeapTable::peek(self, key, now)
    }

    fn put_parts(
        &mut self,
        key: &[u8],
        mode: Put,
        expiry: u64,
        now: u64,
        parts: &[&[u8]],
        kind: Kind,
    ) -> Result<bool, Error> {
        HeapTable::put_parts(self, key, mode, expiry, now, parts, kind)
    }

    fn usage(&self) -> Option<crate::memcached::Usage> {
        Some(crate::memcached::Usage {
            bytes: self.bytes as u64,
            limit: self.limits.max_bytes as u64,
            evictions: self.evictions,
        })
    }
}

impl<S> core::fmt::Debug for HeapTable<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HeapTable")
            .field("len", &self.len)
            .field("bytes", &self.bytes)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`ENTRY_OVERHEAD`] counts a 48-byte slot; on 64-bit hosts that is what a slot is.
    #[test]
    fn slot_is_48_bytes_on_64_bit() {
        if cfg!(target_pointer_width = "64") {
            assert_eq!(core::mem::size_of::<Slot>(), 48);
        }
        assert!(core::mem::size_of::<Slot>() <= 48);
    }
}
