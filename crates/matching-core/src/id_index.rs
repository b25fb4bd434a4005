//! Order id → arena slot, fast for ids in any order.
//!
//! A **set-associative table**: a set is one 64-byte cache line holding
//! [`WAYS`] `(id, slot)` pairs; an id may sit in any way of its set. The set
//! of an id is `(id / 4) ^ scramble(high bits)` modulo the number of sets:
//!
//! - ids that come in increasing runs (a sequencer's, or a client's counter)
//!   fill a set four at a time, so the ids of the orders that churn near the
//!   touch share a few cache lines, as the sliding window of the earlier
//!   design did;
//! - random ids (a permutation, client-chosen 64-bit ids) land in random sets:
//!   one line per lookup, no slide, no scan;
//! - ids with a stride that is a multiple of the table size (timestamps,
//!   say) differ in their high bits, which the scramble spreads over the
//!   sets instead of piling them into one.
//!
//! A set whose ways are all taken sends the id to an **overflow** hash map
//! (SipHash with a random key, so ids a client chooses cannot be crafted to
//! collide there). The table has room for twice the orders the arena
//! preallocates, so overflow is rare; it only grows if more orders rest
//! than that. Every operation costs one cache line, plus a hash operation
//! only for an id that overflowed; nothing depends on the distance between
//! ids.

use std::collections::HashMap;

use crate::orders::NIL;
use crate::types::OrderId;

/// Ways per set: five `(u64, u32)` pairs and a spare word make a 64-byte line.
const WAYS: usize = 5;
/// An empty way's id (no order id is this large).
const EMPTY: OrderId = u64::MAX;

#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Set {
    ids: [OrderId; WAYS],
    slots: [u32; WAYS],
}

const _: () = assert!(std::mem::size_of::<Set>() == 64);

const EMPTY_SET: Set = Set { ids: [EMPTY; WAYS], slots: [NIL; WAYS] };

#[derive(Clone)]
pub(crate) struct IdIndex {
    sets: Box<[Set]>,
    /// `log2` of the number of sets.
    set_bits: u32,
    /// Ids held in `sets`.
    in_table: usize,
    /// Every live id not in a set (its set was full).
    overflow: HashMap<OrderId, u32>,
}

impl IdIndex {
    /// An index whose table has `WAYS` ways for every 4 of `capacity` ids
    /// (a power of two of sets, at least 256), and an overflow map with room
    /// for `overflow_reserved`.
    pub(crate) fn new(capacity: usize, overflow_reserved: usize) -> IdIndex {
        let sets = (capacity / 4).max(256).next_power_of_two();
        IdIndex {
            sets: vec![EMPTY_SET; sets].into_boxed_slice(),
            set_bits: sets.trailing_zeros(),
            in_table: 0,
            overflow: HashMap::with_capacity(overflow_reserved),
        }
    }

    /// The set of `id`: consecutive ids share a set four at a time; the bits
    /// above the set number are scrambled into it.
    #[inline]
    fn set_of(&self, id: OrderId) -> usize {
        let block = id >> 2;
        let high = block >> self.set_bits;
        let scrambled = high.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - self.set_bits.max(1));
        ((block ^ scrambled) & ((1 << self.set_bits) - 1)) as usize
    }

    pub(crate) fn len(&self) -> usize {
        self.in_table + self.overflow.len()
    }

    #[inline]
    pub(crate) fn get(&self, id: OrderId) -> Option<u32> {
        if id == EMPTY {
            return None; // never indexed: it marks empty ways
        }
        let set = &self.sets[self.set_of(id)];
        if let Some(way) = set.ids.iter().position(|&held| held == id) {
            return Some(set.slots[way]);
        }
        if self.overflow.is_empty() { None } else { self.overflow.get(&id).copied() }
    }

    /// Indexes `id` (which must not be indexed yet) at slot `oi`.
    #[inline]
    pub(crate) fn insert(&mut self, id: OrderId, oi: u32) {
        debug_assert!(id != EMPTY && self.get(id).is_none(), "Invariant: an id is indexed once");
        let s = self.set_of(id);
        let set = &mut self.sets[s];
        match set.ids.iter().position(|&held| held == EMPTY) {
            Some(way) => {
                set.ids[way] = id;
                set.slots[way] = oi;
                self.in_table += 1;
            }
            None => {
                self.overflow.insert(id, oi);
            }
        }
    }

    /// Forgets `id`; returns its slot if it was indexed.
    #[inline]
    pub(crate) fn remove(&mut self, id: OrderId) -> Option<u32> {
        if id == EMPTY {
            return None;
        }
        let s = self.set_of(id);
        let set = &mut self.sets[s];
        if let Some(way) = set.ids.iter().position(|&held| held == id) {
            set.ids[way] = EMPTY;
            self.in_table -= 1;
            return Some(set.slots[way]);
        }
        if self.overflow.is_empty() { None } else { self.overflow.remove(&id) }
    }

    /// Every `(id, slot)`, in no particular order (for invariant checks only).
    pub(crate) fn entries(&self) -> impl Iterator<Item = (OrderId, u32)> + '_ {
        let table = self
            .sets
            .iter()
            .flat_map(|set| set.ids.iter().zip(&set.slots).filter(|(id, _)| **id != EMPTY).map(|(&id, &oi)| (id, oi)));
        table.chain(self.overflow.iter().map(|(&id, &oi)| (id, oi)))
    }

    /// Checks the table's count, that every id is in its own set, and that
    /// no id is both in the table and in the overflow map.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let mut held = 0;
        for (s, set) in self.sets.iter().enumerate() {
            for &id in set.ids.iter().filter(|&&id| id != EMPTY) {
                held += 1;
                if self.set_of(id) != s {
                    return Err(format!("id index: id {id} is in set {s}, not its own"));
                }
                if self.overflow.contains_key(&id) {
                    return Err(format!("id index: id {id} is both in the table and in the overflow map"));
                }
            }
        }
        if held != self.in_table {
            return Err(format!("id index: {held} ids in the table, counter {}", self.in_table));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Random inserts and removes of ids drawn from a pattern, checked
    /// against a plain map.
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

    #[test]
    fn strided_ids() {
        exercise(|step| 1 + step * 196_608);
    }

    #[test]
    fn the_largest_ids() {
        exercise(|step| (1 << 53) - 1 - step * 7);
    }

    #[test]
    fn the_empty_marker_is_never_found() {
        let mut index = IdIndex::new(64, 0);
        assert_eq!(index.get(EMPTY), None);
        assert_eq!(index.remove(EMPTY), None);
        index.insert(5, 1);
        assert_eq!(index.get(EMPTY), None);
        assert_eq!(index.get(5), Some(1));
    }
}
