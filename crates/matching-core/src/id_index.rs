//! Order id → arena slot, built for the ids a sequencer gives (each a little
//! above the last) and correct for any ids.
//!
//! A hash map would do, but it scatters consecutive ids over the table, so
//! the index of the few thousand orders that churn near the touch spans a
//! table's worth of cache lines. Here ids live in a **sliding window**: an
//! array of `window` cells covering ids `[lo, lo + window)`, cell
//! `id % window` holding the slot (4 bytes, 16 ids to a cache line, no key
//! compare: within the window each id has its own cell). When a new id lands
//! past the window's end, the window slides forward and the live ids it
//! leaves behind move to an **overflow** hash map, where long-lived orders
//! and ids far from the window's stream (old, or arbitrary) are kept. Each
//! cell is passed once per slide, so sliding costs O(1) per id on average.
//!
//! Any id pattern is correct; only increasing-ish ids are fast. An id far
//! ahead of the window (more than a window beyond its end) goes to the
//! overflow map rather than forcing a long slide, unless the window is
//! empty, when the window simply restarts at that id. So the overflow map
//! may hold ids that the window later covers: a lookup that finds an empty
//! cell asks the overflow map too (an id is never in both).

use rustc_hash::FxHashMap;

use crate::orders::NIL;
use crate::types::OrderId;

#[derive(Clone)]
pub(crate) struct IdIndex {
    /// `cells[id & mask]` is the slot of `id`, or `NIL`, for ids in
    /// `[lo, lo + cells.len())`. A live id is in a cell or in `overflow`, never both.
    cells: Box<[u32]>,
    mask: u64,
    lo: OrderId,
    /// Live ids held in `cells`.
    in_window: usize,
    /// Every live id not in a cell.
    overflow: FxHashMap<OrderId, u32>,
}

impl IdIndex {
    /// An index whose window holds `window` ids (rounded up to a power of
    /// two) and whose overflow map has room for `overflow_reserved` ids.
    pub(crate) fn new(window: usize, overflow_reserved: usize) -> IdIndex {
        let window = window.max(64).next_power_of_two();
        let mut overflow = FxHashMap::default();
        overflow.reserve(overflow_reserved);
        IdIndex { cells: vec![NIL; window].into_boxed_slice(), mask: window as u64 - 1, lo: 0, in_window: 0, overflow }
    }

    #[inline]
    fn window(&self) -> u64 {
        self.mask + 1
    }

    #[inline]
    fn in_window(&self, id: OrderId) -> bool {
        id.wrapping_sub(self.lo) <= self.mask
    }

    pub(crate) fn len(&self) -> usize {
        self.in_window + self.overflow.len()
    }

    #[inline]
    pub(crate) fn get(&self, id: OrderId) -> Option<u32> {
        if self.in_window(id) {
            let oi = self.cells[(id & self.mask) as usize];
            if oi != NIL {
                return Some(oi);
            }
        }
        if self.overflow.is_empty() { None } else { self.overflow.get(&id).copied() }
    }

    /// Indexes `id` (which must not be indexed yet) at slot `oi`.
    #[inline]
    pub(crate) fn insert(&mut self, id: OrderId, oi: u32) {
        debug_assert!(self.get(id).is_none(), "Invariant: an id is indexed once");
        if !self.in_window(id) {
            let ahead = id.wrapping_sub(self.lo);
            if self.in_window == 0 && ahead > self.mask {
                // Nothing to carry over: restart the window at this id.
                self.lo = id;
            } else if id > self.lo && ahead <= 2 * self.mask + 1 {
                self.slide_to(id - self.mask);
            } else {
                self.overflow.insert(id, oi);
                return;
            }
        }
        let cell = &mut self.cells[(id & self.mask) as usize];
        debug_assert_eq!(*cell, NIL);
        *cell = oi;
        self.in_window += 1;
    }

    /// Forgets `id`; returns its slot if it was indexed.
    #[inline]
    pub(crate) fn remove(&mut self, id: OrderId) -> Option<u32> {
        if self.in_window(id) {
            let cell = &mut self.cells[(id & self.mask) as usize];
            if *cell != NIL {
                self.in_window -= 1;
                return Some(std::mem::replace(cell, NIL));
            }
        }
        if self.overflow.is_empty() { None } else { self.overflow.remove(&id) }
    }

    /// Moves the window's start forward to `new_lo`, carrying the live ids
    /// it leaves behind into the overflow map.
    #[cold]
    fn slide_to(&mut self, new_lo: OrderId) {
        debug_assert!(new_lo > self.lo && new_lo - self.lo <= self.window());
        for id in self.lo..new_lo {
            if self.in_window == 0 {
                break;
            }
            let cell = &mut self.cells[(id & self.mask) as usize];
            if *cell != NIL {
                self.overflow.insert(id, std::mem::replace(cell, NIL));
                self.in_window -= 1;
            }
        }
        self.lo = new_lo;
    }

    /// Every `(id, slot)`, in no particular order (for invariant checks only).
    pub(crate) fn entries(&self) -> impl Iterator<Item = (OrderId, u32)> + '_ {
        let window = (0..self.window()).filter_map(move |offset| {
            let id = self.lo.wrapping_add(offset);
            let oi = self.cells[(id & self.mask) as usize];
            (oi != NIL).then_some((id, oi))
        });
        window.chain(self.overflow.iter().map(|(&id, &oi)| (id, oi)))
    }

    /// Checks the window's count and that no id is both in a cell and in the overflow map.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let cells = self.cells.iter().filter(|&&oi| oi != NIL).count();
        if cells != self.in_window {
            return Err(format!("id index: {cells} window cells in use, counter {}", self.in_window));
        }
        let twice =
            self.overflow.keys().find(|&&id| self.in_window(id) && self.cells[(id & self.mask) as usize] != NIL);
        if let Some(id) = twice {
            return Err(format!("id index: id {id} is both in the window and in the overflow map"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Random inserts and removes of ids drawn from a mix of patterns,
    /// checked against a plain map.
    fn exercise(mut next_id: impl FnMut(u64) -> u64) {
        let mut index = IdIndex::new(64, 0);
        let mut model: HashMap<u64, u32> = HashMap::new();
        let mut live: Vec<u64> = Vec::new();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for step in 0..50_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if !x.is_multiple_of(3) || live.is_empty() {
                let id = next_id(step);
                if model.contains_key(&id) {
                    continue;
                }
                let oi = (step % 1000) as u32;
                index.insert(id, oi);
                model.insert(id, oi);
                live.push(id);
            } else {
                let id = live.swap_remove((x >> 8) as usize % live.len());
                assert_eq!(index.remove(id), model.remove(&id));
                assert_eq!(index.remove(id), None);
            }
            if step % 997 == 0 {
                index.validate().unwrap();
                assert_eq!(index.len(), model.len());
                let mut entries: Vec<_> = index.entries().collect();
                entries.sort_unstable();
                let mut want: Vec<_> = model.iter().map(|(&k, &v)| (k, v)).collect();
                want.sort_unstable();
                assert_eq!(entries, want);
            }
            let probe = next_id(step) ^ (x & 3);
            assert_eq!(index.get(probe), model.get(&probe).copied());
        }
    }

    #[test]
    fn sequential_ids() {
        exercise(|step| step + 1);
    }

    #[test]
    fn ids_with_gaps_and_jumps() {
        exercise(|step| if step % 5000 < 10 { step * 1_000 + 7 } else { step * 3 + 1 });
    }

    #[test]
    fn arbitrary_ids() {
        exercise(|step| step.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11);
    }

    #[test]
    fn ids_going_backwards() {
        exercise(|step| 1_000_000 - step);
    }
}
