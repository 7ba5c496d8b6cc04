//! The memory table: Django's locmem in fixed RAM.
//!
//! Layout (`N` entries, `K` key bytes, `V` value bytes per entry), all arrays of the same
//! length, so `size_of::<Table<N, K, V>>()` is `N * (K + V + 19)` plus a few words:
//!
//! | array | bytes per entry | role |
//! |---|---|---|
//! | `buckets` | 2 | head slot + 1 of each hash chain, 0 when empty (`N` chains, Lemire range reduction) |
//! | `chain` | 2 | next slot in the same chain, or in the free list |
//! | `prev`, `next` | 4 | intrusive doubly linked recency list, most recent at the head |
//! | `expiry` | 8 | absolute expiry tick, [`NEVER`](crate::backend::NEVER) for none |
//! | `klen` | 1 | made-key length (`K` ≤ 255) |
//! | `vmeta` | 2 | value length (14 bits, `V` < 16384) and [`Kind`] (2 bits) |
//! | `keys`, `vals` | `K + V` | the made key and the encoded value |
//!
//! Every operation is O(1) on average (one hash, a short chain walk, a few link updates) on
//! every target: the chain comes from a 32-bit hash of the made key that does not depend on
//! the pointer width (see [`crate::hash`]). A unit test checks the chains of a full table of
//! 1,024 entries on the host and on i686, and the firmware's on-target checks the chains
//! the same hash gives 1,024 keys on Cortex-M4 and Cortex-M0.
//! Culling, the one bounded O(N) step, runs only when an insert finds the table at
//! `max_entries`: expired entries are reclaimed first, then, if the table is still at the
//! limit, `len / cull_frequency` least recently used entries go (at least one), exactly as
//! Django's locmem counts them. With frequency 0 the whole table is cleared, live entries
//! included, even when reclaiming expired entries alone would have made room (Django's
//! documented `CULL_FREQUENCY = 0`). A cull of a single entry
//! (`len / cull_frequency <= 1`) skips the sweep and takes the least recent entry, so a
//! one-out-one-in LRU (`with_culling(N, N as u16)`) is O(1) per insert.

use core::convert::Infallible;
use core::hash::BuildHasher;

use crate::backend::{Backend, Put, EXPIRED};
use crate::error::Error;
use crate::hash::{self, DefaultHashBuilder};
use crate::key::KeyError;
use crate::value::{self, Kind};
use crate::words::{self, Aligned};

const NIL: u16 = u16::MAX;

/// True when `key` is the start of `slot`, compared a machine word at a time (4 bytes on
/// Cortex-M, 8 on a 64-bit host): keys are short, and the byte loop behind `memcmp` on
/// Cortex-M costs several instructions a byte.
///
/// Always inlined on ARMv6-M: out of line there, how LLVM allocated its registers moved
/// with unrelated changes elsewhere in the crate (4 more instructions a word, spilled);
/// inlined into the chain walk, every Cortex-M0 figure of `cost.sh` is 8 to 29
/// instructions lower.
#[cfg_attr(not(all(target_arch = "arm", not(target_has_atomic = "32"))), inline)]
#[cfg_attr(
    all(target_arch = "arm", not(target_has_atomic = "32")),
    inline(always)
)]
fn same_bytes(slot: &[u8], key: &[u8]) -> bool {
    const W: usize = core::mem::size_of::<usize>();
    let Some(slot) = slot.get(..key.len()) else {
        return false;
    };
    if crate::words::ARMV6M {
        // ARMv6-M: whole-word loads when both keys are word-aligned (a slot is when `K` is
        // a multiple of 4; the cache's made key always is).
        if let (Some((a, at)), Some((b, bt))) = (words::words(slot), words::words(key)) {
            return same_words(a, at, b, bt);
        }
    }
    let word = |c: &[u8], at: usize| {
        let mut w = [0u8; W];
        w.copy_from_slice(&c[at..at + W]);
        usize::from_ne_bytes(w)
    };
    let n = key.len();
    if n < W {
        let mut diff = 0;
        for (x, y) in slot.iter().zip(key) {
            diff |= x ^ y;
        }
        return diff == 0;
    }
    // Whole words, then the last bytes as one more word overlapping the one before (no
    // byte loop for a length that is not a multiple of a word).
    let mut at = 0;
    while at + W < n {
        if word(slot, at) != word(key, at) {
            return false;
        }
        at += W;
    }
    word(slot, n - W) == word(key, n - W)
}
/// [`same_bytes`] of two word-aligned keys of one length, given as whole words and the
/// bytes after them. XORs rather than `==`, which would call `memcmp`.
#[inline(always)]
fn same_words(a: &[u32], at: &[u8], b: &[u32], bt: &[u8]) -> bool {
    let mut diff = 0;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    for (x, y) in at.iter().zip(bt) {
        diff |= u32::from(x ^ y);
    }
    diff == 0
}

const LEN_MASK: u16 = 0x3fff;

/// What a cull removes. Decided by [`Table::cull_plan`] (Django's rules), walked by
/// [`Table::apply_cull`] and [`Table::for_each_victim`], so the entries a table removes and
/// the entries a persistent backend logs as removed are the same by construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CullPlan {
    /// Nothing (the key is held, or the table is below its limit).
    None,
    /// Every entry (`CULL_FREQUENCY = 0`).
    Clear,
    /// The least recent entry, live or not, without a sweep.
    Tail,
    /// Every expired entry, then, if at least `max_entries` live ones are left,
    /// `live / per` of the least recent live ones (at least one).
    Sweep {
        /// The divisor: Django's `CULL_FREQUENCY`.
        per: u16,
    },
}

#[cfg(test)]
impl CullPlan {
    /// The eviction of a replay ([`Table::restore`]) as a plan: expired entries, then the
    /// least recent live one if the table is still full. Never Django's fraction: a replay
    /// only overflows when entries the log kept did not fit, and it loses as few as it can.
    /// `restore` removes them through its own loop; a test checks it removes these.
    const RESTORE: CullPlan = CullPlan::Sweep { per: u16::MAX };
}

/// The entries a cull plan removes, one at a time, least recent first, removing nothing:
/// [`Table::for_each_victim`]'s walk as a cursor, for a caller that awaits between steps
/// (the async flash core writes a tombstone per live victim). The table must not change
/// during the walk.
pub(crate) struct VictimWalk {
    /// Next slot to look at.
    s: u16,
    /// Expired entries go too.
    sweep: bool,
    /// Least recent entries still to take (live ones when sweeping).
    lru: u16,
}

impl VictimWalk {
    /// Starts the walk of `plan` at `now` over `t`.
    pub(crate) fn new<const N: usize, const K: usize, const V: usize, S: BuildHasher>(
        t: &Table<N, K, V, S>,
        plan: CullPlan,
        now: u64,
    ) -> Self {
        let (sweep, lru) = match plan {
            _ if !t.ready => (false, 0),
            CullPlan::None => (false, 0),
            CullPlan::Clear => (true, u16::MAX),
            CullPlan::Tail => (false, 1),
            CullPlan::Sweep { per } => {
                let mut live = 0;
                let mut s = t.tail;
                while s != NIL {
                    let i = s as usize;
                    let (Some(&prev), Some(&e)) = (t.prev.get(i), t.expiry.get(i)) else {
                        break;
                    };
                    live += u16::from(e > now);
                    s = prev;
                }
                (true, t.after_sweep(live, per))
            }
        };
        // From the tail whatever the plan: with nothing to take (no sweep, no least recent
        // entry), the walk's first step ends it (an unready table's tail is slot 0).
        VictimWalk {
            s: t.tail,
            sweep,
            lru,
        }
    }

    /// The slot of the next victim (its entry is live when its expiry is after `now`).
    pub(crate) fn next<const N: usize, const K: usize, const V: usize, S: BuildHasher>(
        &mut self,
        t: &Table<N, K, V, S>,
        now: u64,
    ) -> Option<usize> {
        while self.s != NIL {
            let i = self.s as usize;
            // A slot is below `N`: the walk ends there otherwise (no panic path).
            let (Some(&prev), Some(&e)) = (t.prev.get(i), t.expiry.get(i)) else {
                break;
            };
            self.s = prev;
            let live = e > now;
            if self.sweep && !live {
                return Some(i);
            } else if self.lru > 0 {
                self.lru -= 1;
                return Some(i);
            } else if !self.sweep {
                self.s = NIL;
            }
        }
        None
    }
}

/// Why culling limits were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LimitError {
    /// `max_entries` was 0 or above the table's capacity `N`.
    MaxEntries,
}

/// Fixed-capacity LRU table with expiry: `N` entries of at most `K` key bytes and `V`
/// value bytes. See the [module documentation](self) for the layout.
///
/// ```
/// use tickcache::{Cache, Config, ManualClock, Table};
/// let clock = ManualClock::new(1000);
/// // 3 entries at most, cull a third of them when full (Django's defaults scaled down).
/// let table = Table::<8, 24, 16>::with_culling(3, 3);
/// let mut cache: Cache<_, _, 24> = Cache::new(&clock, table, Config::new());
/// for k in ["a", "b", "c"] {
///     cache.set(k, &1u8, 60)?;
/// }
/// cache.get::<u8>("a")?; // "b" is now the least recently used
/// cache.set("d", &1u8, 60)?;
/// assert!(!cache.has_key("b")?);
/// assert_eq!(cache.len(), 3);
/// # Ok::<(), tickcache::Error>(())
/// ```
pub struct Table<const N: usize, const K: usize, const V: usize, S = DefaultHashBuilder> {
    buckets: [u16; N],
    chain: [u16; N],
    prev: [u16; N],
    next: [u16; N],
    expiry: [u64; N],
    klen: [u8; N],
    vmeta: [u16; N],
    /// Word-aligned, so every slot is when `K` is a multiple of 4 (see [`crate::words`]).
    keys: Aligned<[[u8; K]; N]>,
    vals: [[u8; V]; N],
    head: u16,
    tail: u16,
    free: u16,
    fresh: u16,
    len: u16,
    /// `N - max_entries`, so the default limit is stored as zero.
    max_gap: u16,
    /// `cull_frequency ^ 3`, so Django's default 3 is stored as zero.
    freq_x: u16,
    /// False until the first insert sets the recency and free lists: a new table is all
    /// zero bytes (its chains empty), so a `static` one costs no flash for an initial image.
    ready: bool,
    hasher: S,
}

/// What a [`Table`] keeps across a clear ([`Table::kept`]): its culling limits, as it stores
/// them, and its hasher.
pub(crate) struct Kept<S> {
    max_gap: u16,
    freq_x: u16,
    hasher: S,
}

impl<const N: usize, const K: usize, const V: usize, S> core::fmt::Debug for Table<N, K, V, S> {
    /// The entries held and the capacities, not the contents.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Table")
            .field("len", &self.len)
            .field("entries", &N)
            .field("key_bytes", &K)
            .field("value_bytes", &V)
            .finish_non_exhaustive()
    }
}

impl<const N: usize, const K: usize, const V: usize, S: BuildHasher + Default> Default
    for Table<N, K, V, S>
{
    fn default() -> Self {
        Self::with_hasher(S::default())
    }
}

impl<const N: usize, const K: usize, const V: usize> Table<N, K, V> {
    /// An empty table with `max_entries = N`, Django's `cull_frequency = 3` and the default
    /// hasher ([`TickHasher`](crate::hash::TickHasher)).
    pub const fn new() -> Self {
        Self::with_hasher(DefaultHashBuilder::new())
    }

    /// An empty table with Django's `MAX_ENTRIES` and `CULL_FREQUENCY`.
    ///
    /// Panics (at compile time in a `const`) when `max_entries` is 0 or above `N`; see
    /// [`Table::try_with_culling`].
    pub const fn with_culling(max_entries: usize, cull_frequency: u16) -> Self {
        match Self::try_with_culling(max_entries, cull_frequency) {
            Ok(t) => t,
            Err(_) => panic!("max_entries must be in 1..=N"),
        }
    }

    /// Like [`Table::with_culling`], returning an error instead of panicking.
    pub const fn try_with_culling(
        max_entries: usize,
        cull_frequency: u16,
    ) -> Result<Self, LimitError> {
        if max_entries == 0 || max_entries > N {
            return Err(LimitError::MaxEntries);
        }
        let mut t = Self::new();
        t.max_gap = (N - max_entries) as u16;
        t.freq_x = cull_frequency ^ 3;
        Ok(t)
    }
}

impl<const N: usize, const K: usize, const V: usize, S: BuildHasher> Table<N, K, V, S> {
    /// An empty table with `max_entries = N`, Django's `cull_frequency = 3`, hashing made
    /// keys with `hasher` (for example a keyed hasher when keys come from the network).
    ///
    /// `N` must be below 65,535 (slots are `u16` indices), `K` at most 255 and `V` below
    /// 16,384: anything else fails to compile.
    pub const fn with_hasher(hasher: S) -> Self {
        const {
            assert!(N >= 1 && N < NIL as usize, "N must be in 1..65535");
            assert!(K >= 1 && K <= 255, "K must be in 1..=255");
            assert!(V <= LEN_MASK as usize, "V must be below 16384");
        }
        Table {
            buckets: [0; N],
            chain: [0; N],
            prev: [0; N],
            next: [0; N],
            expiry: [0; N],
            klen: [0; N],
            vmeta: [0; N],
            keys: Aligned([[0; K]; N]),
            vals: [[0; V]; N],
            head: 0,
            tail: 0,
            free: 0,
            fresh: 0,
            len: 0,
            max_gap: 0,
            freq_x: 0,
            ready: false,
            hasher,
        }
    }

    /// [`Table::try_with_culling`] with a hasher of the caller's choice.
    pub fn try_with_culling_and_hasher(
        max_entries: usize,
        cull_frequency: u16,
        hasher: S,
    ) -> Result<Self, LimitError> {
        if max_entries == 0 || max_entries > N {
            return Err(LimitError::MaxEntries);
        }
        let mut t = Self::with_hasher(hasher);
        t.max_gap = (N - max_entries) as u16;
        t.freq_x = cull_frequency ^ 3;
        Ok(t)
    }

    /// What the table keeps across a clear: its culling limits and its hasher. A backend
    /// that clears the table it is given builds the cleared table from them where it lives
    /// ([`Table::emptied`]) rather than moving the whole table there and clearing it.
    #[inline(always)]
    pub(crate) fn kept(self) -> Kept<S> {
        Kept {
            max_gap: self.max_gap,
            freq_x: self.freq_x,
            hasher: self.hasher,
        }
    }

    /// The table that gave `kept` ([`Table::kept`]), cleared: empty as [`Table::reset`]
    /// leaves it, with its culling limits and hasher.
    #[inline(always)]
    pub(crate) fn emptied(kept: Kept<S>) -> Self {
        let mut t = Self::with_hasher(kept.hasher);
        t.max_gap = kept.max_gap;
        t.freq_x = kept.freq_x;
        // `reset` on the new table: its buckets are zero already.
        t.ready = true;
        t.head = NIL;
        t.tail = NIL;
        t.free = NIL;
        t
    }

    /// The compile-time capacity `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Django's `MAX_ENTRIES`.
    pub const fn max_entries(&self) -> usize {
        self.limit() as usize
    }

    #[inline]
    const fn limit(&self) -> u16 {
        N as u16 - self.max_gap
    }

    #[inline]
    const fn freq(&self) -> u16 {
        self.freq_x ^ 3
    }

    /// Django's `CULL_FREQUENCY` (0 clears the table when full).
    pub const fn cull_frequency(&self) -> u16 {
        self.freq()
    }

    /// Visits every entry held (live or not yet reclaimed) from least to most recent:
    /// made key, value bytes, kind and expiry tick. Persistence uses it to compact.
    pub fn for_each_lru(&self, mut f: impl FnMut(&[u8], &[u8], Kind, u64)) {
        let mut s = self.older(None);
        while let Some(i) = s {
            let (k, v, kind, e) = self.slot(i);
            f(k, v, kind, e);
            s = self.older(Some(i));
        }
    }

    /// Walks the slots held, least recent first: the least recent slot (`None`), or the one
    /// held just before slot `i`. A slot stays its entry's while the entry is held
    /// (persistence keeps where each slot's latest record lies on flash), and removing
    /// slot `i` leaves the slot before it valid.
    pub(crate) fn older(&self, i: Option<usize>) -> Option<usize> {
        let s = match i {
            None if self.ready => self.tail,
            None => NIL,
            // A slot is below `N`: the walk ends there otherwise (no panic path).
            Some(i) => self.prev.get(i).copied().unwrap_or(NIL),
        };
        // The links are slots and `NIL` lies past them: comparing with `N` ends the walk at
        // the same place and proves the caller's index of the slot.
        (usize::from(s) < N).then_some(s as usize)
    }

    /// The made key, value, kind and expiry tick of the entry in slot `i` (held).
    pub(crate) fn slot(&self, i: usize) -> (&[u8], &[u8], Kind, u64) {
        // A held slot is below `N`: the clamp is one compare where the indexes below would
        // carry a panic path.
        let i = i.min(N - 1);
        let (len, kind) = self.value_meta(i);
        let val = &self.vals[i];
        (
            self.slot_key(i),
            val.get(..len).unwrap_or(val),
            kind,
            self.expiry[i],
        )
    }

    /// The slot holding `key` (see [`Table::older`]).
    pub(crate) fn slot_of(&self, key: &[u8]) -> Option<usize> {
        self.locate(key).1
    }

    /// The chain of `key`: its 32-bit hash (the same on every pointer width) mapped onto
    /// `0..N` from the high bits.
    #[inline]
    fn bucket_of(&self, key: &[u8]) -> usize {
        hash::reduce(hash::hash32(&self.hasher, key), N as u32)
    }

    /// The length and kind of slot `i`'s value. The length is clamped to `V` (it never
    /// exceeds it): every `[..len]` of a value then compiles without a panic path.
    #[inline]
    fn value_meta(&self, i: usize) -> (usize, Kind) {
        let m = self.vmeta[i];
        let kind = match m >> 14 {
            0 => Kind::Bytes,
            1 => Kind::Serde,
            2 => Kind::Int,
            _ => Kind::Item,
        };
        (usize::from(m & LEN_MASK).min(V), kind)
    }

    /// The slot of `key` in chain `b`, or a value of `N` or above (`NIL`) when it is not
    /// held.
    #[inline]
    fn find(&self, b: usize, key: &[u8]) -> u16 {
        // An empty chain's head is 0 (a new table's too, so no test of `ready`): less one,
        // past every slot.
        let mut s = usize::from(self.buckets.get(b).copied().unwrap_or(0)).wrapping_sub(1);
        // A chain's links are slots and `NIL` (past them) ends it: comparing with `N`
        // ends the walk at the same place and proves every index below (no panic path).
        while s < N {
            if usize::from(self.klen[s]) == key.len() && same_bytes(&self.keys.0[s], key) {
                break;
            }
            s = usize::from(self.chain[s]);
        }
        // A miss is `NIL` or past `N`.
        s as u16
    }

    /// The chain of `key` and its slot, if held: [`Table::locate_out`]'s one word taken
    /// apart, the slot compared with `N` where the caller sees it, so the slot's arrays are
    /// then indexed with no panic call at each use.
    #[inline(always)]
    fn locate(&self, key: &[u8]) -> (usize, Option<usize>) {
        let at = self.locate_out(key);
        let i = (at & 0xffff) as usize;
        ((at >> 16) as usize, (i < N).then_some(i))
    }

    /// The chain of `key` in the high half-word and its slot in the low one (`N` or above
    /// when it is not held): one word, returned in a register where a pair with an
    /// `Option` goes through memory on 32-bit cores. Not inlined: every operation starts
    /// here, and one copy of the hash and the chain walk keeps firmware small.
    #[inline(never)]
    fn locate_out(&self, key: &[u8]) -> u32 {
        let b = self.bucket_of(key);
        (b as u32) << 16 | u32::from(self.find(b, key))
    }

    #[inline]
    fn unlink_lru(&mut self, i: usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        // The links of a listed slot are slots: the `get_mut`s always hit (no panic path).
        if p == NIL {
            self.head = n;
        } else if let Some(next) = self.next.get_mut(p as usize) {
            *next = n;
        }
        if n == NIL {
            self.tail = p;
        } else if let Some(prev) = self.prev.get_mut(n as usize) {
            *prev = p;
        }
    }

    #[inline]
    fn push_front(&mut self, i: usize) {
        self.prev[i] = NIL;
        self.next[i] = self.head;
        if self.head == NIL {
            self.tail = i as u16;
        } else if let Some(prev) = self.prev.get_mut(self.head as usize) {
            *prev = i as u16;
        }
        self.head = i as u16;
    }

    /// Makes held slot `i` the most recent: `unlink_lru` and `push_front` merged for an
    /// entry that is not the head, which therefore has an entry before it, in a list that
    /// is not empty (fewer tests on every hit).
    #[inline(never)]
    fn touch_lru(&mut self, i: usize) {
        let head = self.head;
        if head == i as u16 {
            return;
        }
        let (p, n) = (self.prev[i], self.next[i]);
        // The links of a listed slot are slots: the `get_mut`s always hit (no panic path).
        if let Some(next) = self.next.get_mut(p as usize) {
            *next = n;
        }
        if n == NIL {
            self.tail = p;
        } else if let Some(prev) = self.prev.get_mut(n as usize) {
            *prev = p;
        }
        self.prev[i] = NIL;
        self.next[i] = head;
        if let Some(prev) = self.prev.get_mut(head as usize) {
            *prev = i as u16;
        }
        self.head = i as u16;
    }

    fn unlink_chain(&mut self, b: usize, i: usize) {
        // `b` is a bucket and the chain's links are slots (`NIL` is past them), so every
        // `get` hits until the chain's end: no panic path.
        let after = self.chain.get(i).copied().unwrap_or(NIL);
        let Some(head) = self.buckets.get_mut(b) else {
            return;
        };
        if *head as usize == i + 1 {
            *head = after.wrapping_add(1);
            return;
        }
        let mut s = usize::from(*head).wrapping_sub(1);
        while let Some(next) = self.chain.get_mut(s) {
            if *next as usize == i {
                *next = after;
                return;
            }
            s = *next as usize;
        }
    }

    /// Removes slot `i` (in bucket `b`) from every list and frees it.
    fn remove(&mut self, b: usize, i: usize) {
        self.unlink_chain(b, i);
        self.unlink_lru(i);
        self.chain[i] = self.free;
        self.free = i as u16;
        self.len -= 1;
    }

    /// Removes the entry of held slot `i`, its chain found by hashing its key here: the
    /// removal of a cull, on the memory cache's evicting path.
    fn remove_hashed(&mut self, i: usize) {
        // A held slot is below `N`: one compare where the key's read would carry a panic path.
        if i >= N {
            return;
        }
        let b = self.bucket_of(self.slot_key(i));
        self.remove(b, i);
    }

    /// Removes the entry of held slot `i` (compaction dropping an entry it cannot copy, a
    /// persistent backend's delete of the slot it found, a replay). Its chain is found by
    /// the out-of-line lookup of its key ([`Table::locate_out`]): persistence links no
    /// second copy of the hash.
    pub(crate) fn remove_slot(&mut self, i: usize) {
        // A held slot is below `N`: one compare where the key's read would carry a panic path.
        if i >= N {
            return;
        }
        let b = (self.locate_out(self.slot_key(i)) >> 16) as usize;
        self.remove(b, i);
    }

    fn alloc(&mut self) -> Option<usize> {
        // The free list's links are slots and `NIL` (past them) ends it: comparing with `N`
        // proves the indexes below and the caller's (no panic path).
        let i = self.free as usize;
        if i < N {
            self.free = self.chain[i];
            Some(i)
        } else if (self.fresh as usize) < N {
            self.fresh += 1;
            Some(self.fresh as usize - 1)
        } else {
            None
        }
    }

    fn release(&mut self, i: usize) {
        self.chain[i] = self.free;
        self.free = i as u16;
    }

    /// Django's cull (see [`Table::cull_plan`]), applied.
    fn cull(&mut self, now: u64) {
        match self.full_plan() {
            // Nothing to report: no walk.
            CullPlan::Clear => self.reset(),
            plan => self.apply_cull(plan, now, &mut |_, _| {}),
        }
    }

    /// Empties the table. Out of line: the first insert, `clear` and a cull of everything
    /// share one copy.
    #[inline(never)]
    fn reset(&mut self) {
        self.ready = true;
        // A loop the compiler cannot turn into a `memset` call: the value is hidden from
        // it, so firmware that links no other `memset` saves compiler-builtins' (about
        // 180 bytes on Cortex-M4). A reset runs at the first insert and on `clear`.
        let empty = core::hint::black_box(0);
        for b in &mut self.buckets {
            *b = empty;
        }
        self.head = NIL;
        self.tail = NIL;
        self.free = NIL;
        self.fresh = 0;
        self.len = 0;
    }

    /// Links a filled slot `i` as `key` (at most `K` bytes) in bucket `b`, most recent. Out
    /// of line: inserts and `rekey` share one copy.
    #[inline(never)]
    fn link(&mut self, b: usize, i: usize, key: &[u8], len: usize, kind: Kind, expiry: u64) {
        // A slot and a bucket are below `N`: one compare each where every index below would
        // carry a panic path.
        if i >= N || b >= N {
            return;
        }
        words::copy(&mut self.keys.0[i], key);
        self.klen[i] = key.len() as u8;
        self.set_meta(i, len, kind, expiry);
        self.chain[i] = self.buckets[b].wrapping_sub(1);
        self.buckets[b] = i as u16 + 1;
        self.push_front(i);
        self.len += 1;
    }

    #[inline]
    fn set_meta(&mut self, i: usize, len: usize, kind: Kind, expiry: u64) {
        self.vmeta[i] = (len as u16 & LEN_MASK) | ((kind as u16) << 14);
        self.expiry[i] = expiry;
    }

    /// Checks `fill`'s answer against the buffer it was given.
    fn checked<E>(r: Result<(usize, Kind), Error<E>>) -> Result<(usize, Kind), Error<E>> {
        match r {
            Ok((len, _)) if len > V => Err(Error::ValueTooLarge),
            other => other,
        }
    }

    /// Stores into a brand-new slot, culling first when the table is at its limit.
    fn insert<E>(
        &mut self,
        b: usize,
        key: &[u8],
        expiry: u64,
        now: u64,
        fill: impl FnOnce(&mut [u8]) -> Result<(usize, Kind), Error<E>>,
    ) -> Result<bool, Error<E>> {
        if key.len() > K {
            return Err(Error::Key(KeyError::OverCapacity));
        }
        if !self.ready {
            self.reset();
        }
        // Below the limit the value is encoded into a fresh slot; at the limit it is encoded
        // aside first, so a value that fails costs no culled entry. One call of `fill` for
        // both: it is inlined here, so a second call site would be a second copy.
        let room = self.len < self.limit();
        let fresh = if room {
            Some(self.alloc().ok_or(Error::StorageFull)?)
        } else {
            None
        };
        let mut staged = [0u8; V];
        let dst: &mut [u8] = match fresh {
            Some(i) => &mut self.vals[i],
            None => &mut staged,
        };
        let (len, kind) = match Self::checked(fill(dst)) {
            Ok(answer) => answer,
            Err(e) => {
                if let Some(i) = fresh {
                    self.release(i);
                }
                return Err(e);
            }
        };
        let i = match fresh {
            Some(i) => i,
            None => {
                self.cull(now);
                let i = self.alloc().ok_or(Error::StorageFull)?;
                words::copy(&mut self.vals[i][..len], &staged[..len]);
                i
            }
        };
        self.link(b, i, key, len, kind, expiry);
        Ok(true)
    }

    /// Reads a live entry without changing recency (for wrappers such as persistence).
    pub fn peek(&self, key: &[u8], now: u64) -> Option<(&[u8], Kind, u64)> {
        let i = self.locate(key).1?;
        if self.expiry[i] <= now {
            return None;
        }
        let (len, kind) = self.value_meta(i);
        Some((&self.vals[i][..len], kind, self.expiry[i]))
    }
}

/// Hooks for persistence: a persistent backend must log every change the table makes,
/// including the entries an insert culls, and must restore entries without culling.
impl<const N: usize, const K: usize, const V: usize, S: BuildHasher> Table<N, K, V, S> {
    /// Reads the entry of `key` whether or not it has expired, making it most recent: a
    /// persistent backend's read, once it has dropped the key if expired.
    #[inline]
    pub(crate) fn read_any<R>(
        &mut self,
        key: &[u8],
        read: impl FnOnce(&[u8], Kind) -> R,
    ) -> Option<R> {
        let i = self.locate(key).1?;
        self.touch_lru(i);
        let (len, kind) = self.value_meta(i);
        Some(read(&self.vals[i][..len], kind))
    }

    /// Gives the entry in slot `i` (from [`Table::peek_any`]) expiry tick `expiry`, without
    /// changing recency: a persistent backend's `touch`, once it has found the entry live
    /// (the slot it found then, so the key is not looked up again).
    pub(crate) fn set_expiry(&mut self, i: usize, expiry: u64) {
        // A slot is below `N`: `get_mut` always hits (no panic path).
        if let Some(e) = self.expiry.get_mut(i) {
            *e = expiry;
        }
    }

    /// Reads an entry whether or not it has expired, without changing recency, with its
    /// slot (see [`Table::slot_of`]): a persistent backend's later steps take the slot
    /// instead of looking the key up again.
    pub(crate) fn peek_any(&self, key: &[u8]) -> Option<(usize, &[u8], Kind, u64)> {
        let i = self.locate(key).1?;
        let (len, kind) = self.value_meta(i);
        Some((i, &self.vals[i][..len], kind, self.expiry[i]))
    }

    /// Adds `delta` to the integer in held slot `i` (from [`Table::slot_of`]) at `now`,
    /// as [`Backend::incr`] does once it has found the key: a persistent backend's `incr`,
    /// which looked the key up already (the slot it found then, so the key is not looked up
    /// again). An expired entry is dropped and is [`Error::NotFound`].
    pub(crate) fn incr_slot(&mut self, i: usize, delta: i64, now: u64) -> Result<i64, Error> {
        // A held slot is below `N`: one compare where the indexes would carry a panic path.
        if i >= N {
            return Err(Error::NotFound);
        }
        if self.expiry[i] <= now {
            self.remove_slot(i);
            return Err(Error::NotFound);
        }
        self.add_to(i, delta)
    }

    /// [`Backend::incr`] of the live entry in slot `i` (below `N`): one body for the memory
    /// table's `incr` and [`Table::incr_slot`], inlined into each.
    #[inline(always)]
    fn add_to(&mut self, i: usize, delta: i64) -> Result<i64, Error> {
        let (len, kind) = self.value_meta(i);
        let bytes = &self.vals[i][..len];
        let old = match kind {
            Kind::Int => value::decode_int(bytes),
            Kind::Bytes => value::parse_decimal(bytes),
            // The memcached front end does memcached's unsigned incr on items itself.
            Kind::Serde | Kind::Item => None,
        }
        .ok_or(Error::NotInteger)?;
        let new = old.checked_add(delta).ok_or(Error::Overflow)?;
        let written = match kind {
            Kind::Int => value::encode_int(new, &mut self.vals[i]),
            _ => value::write_decimal(new, &mut self.vals[i]),
        };
        // Both encoders check the room before writing a byte, so on failure the old value
        // is intact.
        let Ok(len) = written else {
            return Err(Error::ValueTooLarge);
        };
        let expiry = self.expiry[i];
        self.set_meta(i, len, kind, expiry);
        self.touch_lru(i);
        Ok(new)
    }

    /// Django's cull for an insert of `key` at `now`: [`CullPlan::None`] when `key` is held
    /// or the table is below `max_entries`. This is the one place that decides what a cull
    /// removes; the table applies the plan ([`Table::apply_cull`]) and a persistent backend
    /// walks the same plan ([`Table::for_each_victim`]) to size and log it.
    pub(crate) fn cull_plan(&self, key: &[u8]) -> CullPlan {
        if self.len < self.limit() || self.locate(key).1.is_some() {
            CullPlan::None
        } else {
            self.full_plan()
        }
    }

    /// True when an insert of a key that is not held clears the table ([`Table::cull_plan`]
    /// is [`CullPlan::Clear`] for it): no lookup of the key, where the caller knows it is
    /// not held (an insert that culls). Read from [`Table::full_plan`], the one place that
    /// decides a cull.
    #[inline]
    pub(crate) fn insert_clears(&self) -> bool {
        self.len >= self.limit() && self.full_plan() == CullPlan::Clear
    }

    /// Django's cull of a table at `max_entries`: frequency 0 clears it; a cull of one
    /// entry (`len / cull_frequency <= 1`) takes the least recent one in O(1) without the
    /// sweep, so a one-out-one-in LRU (`cull_frequency == max_entries`) stays O(1) per
    /// insert; otherwise expired entries go, then, if the live ones still reach the limit,
    /// `live / cull_frequency` least recent live ones (at least one).
    fn full_plan(&self) -> CullPlan {
        match self.freq() {
            0 => CullPlan::Clear,
            f if self.len / f <= 1 => CullPlan::Tail,
            f => CullPlan::Sweep { per: f },
        }
    }

    /// How many least recent live entries a sweep cull removes after the expired ones, when
    /// `live` entries are left: none below the limit, else `live / per` (at least one).
    fn after_sweep(&self, live: u16, per: u16) -> u16 {
        if live < self.limit() {
            0
        } else {
            // `per` is never 0 (frequency 0 plans a clear, not a sweep): `max` is one compare
            // where the division would carry a panic path.
            (live / per.max(1)).max(1)
        }
    }

    /// Slot `i`'s made key. A length past `K` (never stored) reads as the whole slot, with
    /// no panic path, so a cull whose callback ignores the key (the memory table's own)
    /// compiles to no call at all.
    #[inline]
    fn slot_key(&self, i: usize) -> &[u8] {
        let key = &self.keys.0[i];
        key.get(..self.klen[i] as usize).unwrap_or(key)
    }

    /// Calls `f` with the made key of each entry `plan` would remove at `now` and whether
    /// it is live, removing nothing: the same entries [`Table::apply_cull`] removes.
    pub(crate) fn for_each_victim(&self, plan: CullPlan, now: u64, f: &mut dyn FnMut(&[u8], bool)) {
        let mut walk = VictimWalk::new(self, plan, now);
        while let Some(i) = walk.next(self, now) {
            f(self.slot_key(i), self.expiry[i] > now);
        }
    }

    /// Removes what `plan` removes at `now`, calling `f` with each entry's made key and
    /// whether it was live just before removing it.
    pub(crate) fn apply_cull(&mut self, plan: CullPlan, now: u64, f: &mut dyn FnMut(&[u8], bool)) {
        if !self.ready {
            return;
        }
        let lru = match plan {
            CullPlan::None => return,
            CullPlan::Clear => {
                self.for_each_victim(plan, now, f);
                self.reset();
                return;
            }
            CullPlan::Tail => 1,
            CullPlan::Sweep { per } => {
                let mut s = self.tail;
                // The recency links are slots and `NIL` ends them (no panic path).
                while (s as usize) < N {
                    let i = s as usize;
                    s = self.prev[i];
                    if self.expiry[i] <= now {
                        f(self.slot_key(i), false);
                        self.remove_hashed(i);
                    }
                }
                // Only live entries are left.
                self.after_sweep(self.len, per)
            }
        };
        // The least recent entries go.
        for _ in 0..lru {
            let t = self.tail as usize;
            if t >= N {
                break;
            }
            f(self.slot_key(t), self.expiry[t] > now);
            self.remove_hashed(t);
        }
    }

    /// Puts an entry back as it was stored (replaying a log) and makes it most recent.
    /// `key` is not held: the replay drops its older value first, so a full table makes
    /// room without looking the key up. Never runs Django's cull: when the table is at
    /// `max_entries` it reclaims entries expired at `now`, then, if still full, drops the
    /// least recent entry. Returns the entry's slot, or `None` (and stores nothing) when
    /// `key` or `bytes` exceed `K` or `V`.
    pub(crate) fn restore(
        &mut self,
        key: &[u8],
        bytes: &[u8],
        kind: Kind,
        expiry: u64,
        now: u64,
    ) -> Option<usize> {
        if key.len() > K || bytes.len() > V {
            return None;
        }
        if self.len >= self.limit() {
            // Expired entries, then the least recent if the table is still full, each
            // removed through `remove_slot`, whose lookup is linked anyway: a persistent
            // firmware links no cull (`apply_cull`) and no second copy of the hash.
            let mut s = self.tail;
            // The recency links are slots and `NIL` ends them (no panic path).
            while (s as usize) < N {
                let i = s as usize;
                s = self.prev[i];
                if self.expiry[i] <= now {
                    self.remove_slot(i);
                }
            }
            if self.len >= self.limit() {
                self.remove_slot(usize::from(self.tail));
            }
        }
        // Below the limit now: the insert needs no cull.
        self.put_bytes(kind, key, bytes, expiry).ok()?;
        self.newest()
    }

    /// The slot of the most recent entry: after a successful put, the put's (no second
    /// lookup of its key).
    pub(crate) fn newest(&self) -> Option<usize> {
        Some(usize::from(self.head)).filter(|&i| i < N)
    }

    /// Stores `bytes` of `kind` under `key` as `set` does, except that it never culls: the
    /// one non-generic store for wrappers that encode a value aside and make room
    /// themselves (a persistent backend removes, and logs, the entries a cull takes before
    /// the insert; a replay reclaims before it restores), so the table's insert is compiled
    /// once for all of them. An insert with no free slot is [`Error::StorageFull`]; a value
    /// longer than `V` is [`Error::ValueTooLarge`] before anything changes. An update keeps
    /// its entry's slot (a persistent backend keeps where each slot's record lies).
    ///
    /// Written out rather than as `put` with a copying `fill`: the value is already aside
    /// and its length is checked first, so nothing fails once an insert starts, and it is
    /// copied once (`insert` stages a value in a buffer on the stack so that a failing
    /// encoder costs no culled entry). The kind comes first and the expiry last: on 32-bit
    /// cores the kind and the key then travel in registers, where a `u64` after the key
    /// left a register unused and every argument after it on the stack.
    #[inline(never)]
    pub(crate) fn put_bytes(
        &mut self,
        kind: Kind,
        key: &[u8],
        bytes: &[u8],
        expiry: u64,
    ) -> Result<(), Error> {
        let len = bytes.len();
        // Its callers check the length first: nothing changes here.
        if len > V {
            return Err(Error::ValueTooLarge);
        }
        let (b, found) = self.locate(key);
        if let Some(i) = found {
            // An update: the slot leaves its chain and the recency list through the one
            // removal, and is taken back below from the head of the free list, where the
            // removal put it: one path links it again, most recent, as an insert does.
            self.remove(b, i);
        } else if key.len() > K {
            return Err(Error::Key(KeyError::OverCapacity));
        }
        if !self.ready {
            self.reset();
        }
        let i = self.alloc().ok_or(Error::StorageFull)?;
        // A slot is below `N` and `len` at most `V`: the `get_mut`s always hit.
        if let Some(dst) = self.vals.get_mut(i).and_then(|v| v.get_mut(..len)) {
            words::copy(dst, bytes);
        }
        self.link(b, i, key, len, kind, expiry);
        Ok(())
    }
}

impl<const N: usize, const K: usize, const V: usize, S: BuildHasher> Backend for Table<N, K, V, S> {
    type Error = Infallible;

    #[inline]
    fn get<R>(
        &mut self,
        key: &[u8],
        now: u64,
        read: impl FnOnce(&[u8], Kind) -> R,
    ) -> Result<Option<R>, Error> {
        let (b, found) = self.locate(key);
        let Some(i) = found else {
            return Ok(None);
        };
        if self.expiry[i] <= now {
            self.remove(b, i);
            return Ok(None);
        }
        self.touch_lru(i);
        let (len, kind) = self.value_meta(i);
        Ok(Some(read(&self.vals[i][..len], kind)))
    }

    fn has_key(&mut self, key: &[u8], now: u64) -> Result<bool, Error> {
        let (b, found) = self.locate(key);
        match found {
            Some(i) if self.expiry[i] <= now => {
                self.remove(b, i);
                Ok(false)
            }
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }

    #[inline]
    fn put(
        &mut self,
        key: &[u8],
        mode: Put,
        expiry: u64,
        now: u64,
        fill: impl FnOnce(&mut [u8]) -> Result<(usize, Kind), Error>,
    ) -> Result<bool, Error> {
        let (b, found) = self.locate(key);
        let Some(i) = found else {
            return self.insert(b, key, expiry, now, fill);
        };
        if mode == Put::Add && self.expiry[i] > now {
            return Ok(false);
        }
        match Self::checked(fill(&mut self.vals[i])) {
            Ok((len, kind)) => {
                self.set_meta(i, len, kind, expiry);
                self.touch_lru(i);
                Ok(true)
            }
            Err(e) => {
                self.remove(b, i);
                Err(e)
            }
        }
    }

    fn touch(&mut self, key: &[u8], expiry: u64, now: u64) -> Result<bool, Error> {
        if expiry == EXPIRED {
            return self.delete(key, now);
        }
        match self.locate(key).1 {
            Some(i) if self.expiry[i] > now => {
                self.expiry[i] = expiry;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn delete(&mut self, key: &[u8], now: u64) -> Result<bool, Error> {
        let (b, found) = self.locate(key);
        match found {
            Some(i) => {
                let live = self.expiry[i] > now;
                self.remove(b, i);
                Ok(live)
            }
            None => Ok(false),
        }
    }

    fn incr(&mut self, key: &[u8], delta: i64, now: u64) -> Result<i64, Error> {
        let (b, found) = self.locate(key);
        let i = found.ok_or(Error::NotFound)?;
        if self.expiry[i] <= now {
            self.remove(b, i);
            return Err(Error::NotFound);
        }
        self.add_to(i, delta)
    }

    fn rekey(&mut self, from: &[u8], to: &[u8], expiry: u64, now: u64) -> Result<bool, Error> {
        if to.len() > K {
            return Err(Error::Key(KeyError::OverCapacity));
        }
        let (bf, found) = self.locate(from);
        let Some(i) = found else {
            return Ok(false);
        };
        if self.expiry[i] <= now {
            self.remove(bf, i);
            return Ok(false);
        }
        // `to` found in slot `i` is `from` itself: the lookup that `to` needs anyway
        // answers that, where comparing the keys was a second, inlined compare loop (116
        // bytes of the persistent firmware probe).
        let (bt, found) = self.locate(to);
        match found {
            Some(j) if j == i => {
                self.expiry[i] = expiry;
                self.touch_lru(i);
                return Ok(true);
            }
            Some(j) => self.remove(bt, j),
            None => {}
        }
        let (len, kind) = self.value_meta(i);
        // Slot `i` leaves its chain and the recency list through the one removal, then is
        // taken back from the head of the free list, where the removal put it.
        self.remove(bf, i);
        self.free = self.chain[i];
        self.link(bt, i, to, len, kind, expiry);
        Ok(true)
    }

    fn clear(&mut self) -> Result<(), Error> {
        self.reset();
        Ok(())
    }

    fn len(&self) -> usize {
        usize::from(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A xorshift32 sequence from `seed`: the cull tests' inputs, the same on every run.
    fn xorshift(mut seed: u32) -> impl FnMut() -> u32 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        }
    }

    /// The made keys `t` holds, most recent first.
    fn held(t: &Table<12, 4, 1>) -> std::vec::Vec<std::vec::Vec<u8>> {
        let mut keys = std::vec::Vec::new();
        t.for_each_lru(|k, _, _, _| keys.push(k.to_vec()));
        keys
    }

    /// The entries a cull plan lists (what a persistent backend logs) are exactly the ones
    /// applying it removes, for every plan: Django's at every frequency, and a replay's.
    #[test]
    fn a_cull_removes_exactly_the_victims_it_lists() {
        let mut next = xorshift(0x2545_f491);
        for freq in [0u16, 1, 2, 3, 4, 10] {
            for round in 0..200 {
                let mut t = Table::<12, 4, 1>::with_culling(10, freq);
                let now = 100;
                for i in 0..10u8 {
                    let e = if next() % 3 == 0 { now - 1 } else { now + 1 };
                    let _ = t.put(&[b'k', i], Put::Set, e, 0, |_| {
                        Ok::<_, Error>((0, Kind::Bytes))
                    });
                    if next() % 4 == 0 {
                        let _ = t.get(&[b'k', next() as u8 % (i + 1)], 0, |_, _| ());
                    }
                }
                let plan = if round % 5 == 0 {
                    CullPlan::RESTORE
                } else {
                    t.cull_plan(b"new")
                };
                let mut listed = std::vec::Vec::new();
                t.for_each_victim(plan, now, &mut |k, live| listed.push((k.to_vec(), live)));
                let before = held(&t);
                let mut reported = std::vec::Vec::new();
                t.apply_cull(plan, now, &mut |k, live| reported.push((k.to_vec(), live)));
                let after = held(&t);
                let mut removed: std::vec::Vec<_> = before
                    .iter()
                    .filter(|k| !after.contains(k))
                    .map(|k| (k.clone(), listed.iter().any(|(l, live)| l == k && *live)))
                    .collect();
                listed.sort();
                reported.sort();
                removed.sort();
                assert_eq!(listed, reported, "freq {freq}, {plan:?}");
                assert_eq!(listed, removed, "freq {freq}, {plan:?}");
                assert!(!listed.is_empty() || plan == CullPlan::RESTORE);
            }
        }
    }

    /// A replay's restore into a full table removes exactly the entries the replay's plan
    /// ([`CullPlan::RESTORE`]) lists, and keeps the restored entry.
    #[test]
    fn restore_removes_what_its_plan_lists() {
        let mut next = xorshift(0x9e37_79b9);
        let held = |t: &Table<12, 4, 1>| {
            let mut keys = held(t);
            keys.sort();
            keys
        };
        for round in 0..400 {
            let max = 1 + round % 12;
            let mut t = Table::<12, 4, 1>::with_culling(max, 3);
            let now = 100;
            for i in 0..max as u8 {
                let e = if next() % 3 == 0 { now - 1 } else { now + 1 };
                assert!(t.restore(&[b'k', i], &[i], Kind::Bytes, e, 0).is_some());
                if next() % 4 == 0 {
                    let _ = t.get(&[b'k', next() as u8 % (i + 1)], 0, |_, _| ());
                }
            }
            let mut listed = std::vec::Vec::new();
            t.for_each_victim(CullPlan::RESTORE, now, &mut |k, _| listed.push(k.to_vec()));
            let before = held(&t);
            let slot = t.restore(b"new", &[7], Kind::Bytes, now + 5, now);
            assert_eq!(slot, t.slot_of(b"new"), "round {round}");
            let after = held(&t);
            let mut removed: std::vec::Vec<_> = before
                .iter()
                .filter(|k| !after.contains(k))
                .cloned()
                .collect();
            listed.sort();
            removed.sort();
            assert_eq!(listed, removed, "round {round}");
            assert!(!listed.is_empty());
            assert_eq!(after.len(), before.len() - listed.len() + 1);
        }
    }

    /// ARMv6-M's word compare (run here on the host) agrees with the bytewise one for
    /// keys of every length up to 24 bytes differing in any one byte, or not at all.
    #[test]
    fn word_compare_matches_byte_compare() {
        let mut a = crate::words::Aligned([0u8; 24]);
        let mut b = a;
        for (i, (x, y)) in a.0.iter_mut().zip(b.0.iter_mut()).enumerate() {
            *x = i as u8 + 1;
            *y = i as u8 + 1;
        }
        for len in 0..=24 {
            for flip in (0..len).map(Some).chain([None]) {
                let mut b = b;
                if let Some(k) = flip {
                    b.0[k] ^= 0x40;
                }
                let (x, y) = (&a.0[..len], &b.0[..len]);
                let ((wa, ta), (wb, tb)) = (words::words(x).unwrap(), words::words(y).unwrap());
                assert_eq!(same_words(wa, ta, wb, tb), x == y, "{len} {flip:?}");
                assert_eq!(same_bytes(x, y), x == y, "{len} {flip:?}");
            }
        }
    }

    /// The RAM cost documented in the module: `N * (K + V + 19)` plus 16 bytes of list heads,
    /// counters and limits.
    #[test]
    fn size_is_documented_formula() {
        fn check<const N: usize, const K: usize, const V: usize>() {
            let per_entry = K + V + 19;
            let size = core::mem::size_of::<Table<N, K, V>>();
            assert!(
                size >= N * per_entry && size <= N * per_entry + 16 + 7,
                "{N} {K} {V}: {size}"
            );
        }
        check::<16, 24, 16>();
        check::<64, 32, 64>();
        check::<1024, 24, 32>();
        check::<3, 1, 0>();
    }

    /// The chains a full table of 1,024 entries really builds (on this target's `usize`,
    /// so the i686 lane checks 32-bit targets): the same bounds as the on-target check in
    /// `tests/shared_checks` (a uniformly random hash compares 1.5 keys per lookup on
    /// average; at most 1.75 and no chain over 8 are allowed).
    #[test]
    fn full_table_chains_are_short() {
        fn stats<S: BuildHasher>(t: &Table<1024, 24, 0, S>) -> (usize, usize) {
            let (mut longest, mut compares) = (0, 0);
            for &head in &t.buckets {
                let (mut s, mut len) = (head.wrapping_sub(1), 0);
                while s != NIL {
                    len += 1;
                    compares += len;
                    s = t.chain[s as usize];
                }
                longest = longest.max(len);
            }
            (longest, compares)
        }
        let mut t = Table::<1024, 24, 0>::new();
        for i in 0..1024 {
            let key = std::format!(":1:sensor_{i:04}");
            t.put(key.as_bytes(), Put::Set, crate::NEVER, 0, |_| {
                Ok((0, Kind::Bytes))
            })
            .unwrap();
        }
        assert_eq!(t.len(), 1024);
        let (longest, compares) = stats(&t);
        assert!(longest <= 8 && compares <= 1792, "{longest} {compares}");
    }
}
