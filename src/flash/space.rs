//! Space on flash: placing a batch's records into pages to tell whether it fits, making
//! room for it, and compaction (copying the oldest page's live records to the head).

use core::hash::BuildHasher;

use embedded_storage::nor_flash::NorFlash;

use super::format::{record_size, varint_len, RecHead, T_CLEAR, T_PUT, T_TOMB};
use super::log::{Committed, Pos};
use super::{Persistent, Res};
use crate::backend::Backend;
use crate::error::Error;

/// Places records into the free space, page by page, to tell whether a batch fits.
pub(super) struct Placer {
    rem: u32,
    spare: u32,
    cap: u32,
    ws: usize,
    /// Bytes of the time delta in the page being filled (0 in a fresh page).
    dlen: usize,
    pub(super) ok: bool,
}

/// Expiry bytes of a record whose expiry is not known yet (the longest).
pub(super) const XLEN_ANY: usize = 10;

/// Bytes of the expiry varint of a put written at `time`.
pub(super) fn xlen(expiry: u64, time: u64) -> usize {
    if expiry == crate::NEVER {
        0
    } else {
        varint_len(expiry.saturating_sub(time))
    }
}

impl Placer {
    /// Places a record: `klen` key bytes (0 for clear and time records), `vlen` value
    /// bytes, `xlen` expiry bytes.
    pub(super) fn place(&mut self, klen: usize, vlen: usize, xlen: usize) {
        let size = record_size(klen, vlen, self.dlen, xlen, self.ws) as u32;
        if size <= self.rem {
            self.rem -= size;
            return;
        }
        let fresh = record_size(klen, vlen, 0, xlen, self.ws) as u32;
        if self.spare == 0 || fresh > self.cap {
            self.ok = false;
            return;
        }
        self.spare -= 1;
        self.dlen = 0;
        self.rem = self.cap - fresh;
    }
}

impl<
        F: NorFlash,
        const N: usize,
        const K: usize,
        const V: usize,
        const D: usize,
        S: BuildHasher,
    > Persistent<F, N, K, V, D, S>
{
    /// A placer over an empty log (does a batch fit at all?).
    pub(super) fn empty_placer(&self) -> Placer {
        Placer {
            rem: 0,
            spare: self.log.pages - 1,
            cap: self.log.cap(),
            ws: F::WRITE_SIZE,
            dlen: 0,
            ok: true,
        }
    }

    /// A placer over the current free space, keeping one page spare for compaction.
    pub(super) fn placer(&self) -> Placer {
        let rem = if self.log.used == 0 {
            0
        } else {
            self.log.page_size - self.log.head_off
        };
        Placer {
            rem,
            spare: self.log.free().saturating_sub(1),
            cap: self.log.cap(),
            ws: F::WRITE_SIZE,
            dlen: self.log.delta_len(self.time),
            ok: true,
        }
    }

    /// Makes room for the batch `sizes` describes: compacts the oldest pages, then, when
    /// the flash holds only live records, drops the oldest page's entries.
    pub(super) fn reserve(&mut self, sizes: &dyn Fn(&Self, &mut Placer)) -> Res<(), F> {
        let mut pl = self.empty_placer();
        sizes(self, &mut pl);
        if !pl.ok {
            return Err(Error::StorageFull);
        }
        let pages = self.log.pages;
        for round in 0..(3 * pages + 4) {
            if self.log.free() > 0 {
                let mut pl = self.placer();
                sizes(self, &mut pl);
                if pl.ok {
                    return Ok(());
                }
            }
            if self.log.used <= 1 {
                self.log.open_page(self.time).map_err(Error::Backend)?;
                continue;
            }
            self.reclaim_tail(round >= 2 * pages)?;
        }
        Err(Error::StorageFull)
    }

    /// Compacts the oldest page: copies its live records to the head (or, with `evict`,
    /// drops their entries), then erases it.
    pub(super) fn reclaim_tail(&mut self, evict: bool) -> Res<(), F> {
        // Only a time already on flash may expire entries here: after a power cut, time
        // resumes from what the flash holds, where a later expiry would still be live.
        let now = self.log.written_time;
        let ws = F::WRITE_SIZE;
        let mut it = Committed::new(&self.log, Pos::START);
        let mut key = [0u8; K];
        let mut val = [0u8; V];
        // Records before the damage found at open are never copied: they were not restored.
        let trusted = self.log.trust_from == 0;
        while let Some((at, r)) = it.next(&mut self.log).map_err(Error::Backend)? {
            if at.li != 0 {
                break;
            }
            if !trusted || r.ty() != T_PUT || r.expiry <= now {
                continue;
            }
            if !self
                .log
                .read_body(at, &r, &mut key, &mut val)
                .map_err(Error::Backend)?
            {
                continue;
            }
            let (k, v) = (&key[..usize::from(r.klen)], &val[..r.vlen as usize]);
            let dirty = self.is_dirty(k);
            let matches = matches!(self.table.peek_any(k),
                Some((rv, rk, re)) if rv == v && rk as u8 == r.kind() && re == r.expiry);
            if !dirty && !matches {
                continue;
            }
            // The table may hold the same value again, written later: only the latest
            // record of a key is copied.
            let after = Pos {
                li: at.li,
                off: at.off + r.size(ws) as u32,
            };
            if self.newer_exists(k, after)? {
                continue;
            }
            let copy = RecHead::new(
                T_PUT,
                true,
                true,
                r.kind(),
                k.len(),
                v.len(),
                r.time,
                r.expiry,
                self.log.head_base,
            );
            let size = copy.size(ws) as u32;
            let no_room = self.log.free() == 0 && self.log.head_off + size > self.log.page_size;
            if evict || no_room {
                if !dirty {
                    let _ = self.table.delete(k, now);
                }
                continue;
            }
            self.log
                .append(T_PUT, true, true, r.kind(), k, v, r.time, r.expiry)
                .map_err(Error::Backend)?;
        }
        let tail = self.log.tail;
        self.log.erase_page(tail, None).map_err(Error::Backend)?;
        self.log.tail = (tail + 1) % self.log.pages;
        self.log.used -= 1;
        self.log.trust_from = self.log.trust_from.saturating_sub(1);
        // The erased page is now the last free page in the cycle.
        if self.log.ready + 1 == self.log.free() {
            self.log.ready += 1;
        }
        Ok(())
    }

    /// True when a committed record after `from` changes `key` (or clears everything).
    pub(super) fn newer_exists(&mut self, key: &[u8], from: Pos) -> Res<bool, F> {
        let mut it = Committed::new(&self.log, from);
        let mut k = [0u8; K];
        while let Some((at, r)) = it.next(&mut self.log).map_err(Error::Backend)? {
            match r.ty() {
                T_CLEAR => return Ok(true),
                T_PUT | T_TOMB if usize::from(r.klen) == key.len() => {
                    let mut none = [0u8; 0];
                    let mut r0 = r;
                    r0.vlen = 0;
                    if self
                        .log
                        .read_body(at, &r0, &mut k, &mut none)
                        .map_err(Error::Backend)?
                        && &k[..key.len()] == key
                    {
                        return Ok(true);
                    }
                }
                _ => {}
            }
        }
        Ok(false)
    }

    /// True when one put record of this size fits the flash at all.
    pub(super) fn fits_alone(&self, klen: usize, vlen: usize) -> bool {
        let mut pl = self.empty_placer();
        pl.place(klen, vlen, XLEN_ANY);
        pl.ok
    }
}
