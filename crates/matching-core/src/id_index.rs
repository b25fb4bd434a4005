//! Order id → arena slot, fast for ids in any order.
//!
//! A **set-associative table**: a set is one 64-byte cache line of eight
//! ways, each a 32-bit fingerprint of an id and the id's arena slot. The set
//! of an id is `id / 8` with the bits above the table scrambled in:
//!
//! - ids that come in increasing runs (a sequencer's, a client's counter)
//!   fill a set eight at a time, so the ids of the orders that churn near the
//!   touch share a few cache lines;
//! - random ids (a permutation, client-chosen 64-bit ids) land in random
//!   sets: one line a lookup, no slide, no scan;
//! - ids with a stride that is a multiple of the table's span (timestamps,
//!   say) differ in their high bits, which the scramble spreads over the
//!   sets instead of piling them into one.
//!
//! A fingerprint only narrows the search: a way is the id's when its slot
//! holds that id, which the caller's `id_of` reads (the caller reads that
//! slot next anyway). A set whose ways are all taken sends the id to an
//! **overflow** hash map keyed with a random SipHash key (so ids a client
//! chooses cannot be crafted to collide there). The table has eight ways for
//! every four preallocated orders, so overflow is rare. Every operation costs
//! one cache line (plus the slot it finds), and a hash operation only for an
//! id that overflowed; nothing depends on the distance between ids.

use std::collections::HashMap;

use crate::orders::NIL;
use crate::types::OrderId;

/// Ways per set: eight `(u32, u32)` make a 64-byte line.
const WAYS: usize = 8;

#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Set {
    fingerprints: [u32; WAYS],
    /// `NIL` in an empty way.
    slots: [u32; WAYS],
}

const _: () = assert!(std::mem::size_of::<Set>() == 64);

const EMPTY_SET: Set = Set { fingerprints: [0; WAYS], slots: [NIL; WAYS] };

#[inline]
fn fingerprint(id: OrderId) -> u32 {
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
}

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
    /// An index whose table has [`WAYS`] ways for every 4 of `capacity` ids
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

    /// The set of `id`: consecutive ids share a set eight at a time; the bits
    /// above the set number are scrambled into it.
    #[inline]
    fn set_of(&self, id: OrderId) -> usize {
        let block = id >> 3;
        let high = block >> self.set_bits;
        let scrambled = high.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - self.set_bits);
        ((block ^ scrambled) & ((1 << self.set_bits) - 1)) as usize
    }

    /// The way of `id` in set `s`, if it is there.
    #[inline]
    fn way_of(&self, s: usize, id: OrderId, id_of: impl Fn(u32) -> OrderId) -> Option<usize> {
        let set = &self.sets[s];
        let fp = fingerprint(id);
        (0..WAYS).find(|&w| set.fingerprints[w] == fp && set.slots[w] != NIL && id_of(set.slots[w]) == id)
    }

    pub(crate) fn len(&self) -> usize {
        self.in_table + self.overflow.len()
    }

    /// The slot of `id`; `id_of` reads the id an indexed slot holds.
    #[inline]
    pub(crate) fn get(&self, id: OrderId, id_of: impl Fn(u32) -> OrderId) -> Option<u32> {
        let s = self.set_of(id);
        if let Some(w) = self.way_of(s, id, id_of) {
            return Some(self.sets[s].slots[w]);
        }
        if self.overflow.is_empty() { None } else { self.overflow.get(&id).copied() }
    }

    /// Indexes `id` (which must not be indexed yet) at slot `oi`.
    #[inline]
    pub(crate) fn insert(&mut self, id: OrderId, oi: u32) {
        let s = self.set_of(id);
        let set = &mut self.sets[s];
        match set.slots.iter().position(|&slot| slot == NIL) {
            Some(w) => {
                set.fingerprints[w] = fingerprint(id);
                set.slots[w] = oi;
                self.in_table += 1;
            }
            None => {
                self.overflow.insert(id, oi);
            }
        }
    }

    /// Forgets `id`; returns its slot if it was indexed.
    #[inline]
    pub(crate) fn remove(&mut self, id: OrderId, id_of: impl Fn(u32) -> OrderId) -> Option<u32> {
        let s = self.set_of(id);
        if let Some(w) = self.way_of(s, id, id_of) {
            self.in_table -= 1;
            return Some(std::mem::replace(&mut self.sets[s].slots[w], NIL));
        }
        if self.overflow.is_empty() { None } else { self.overflow.remove(&id) }
    }

    /// Every `(id, slot)`, in no particular order (for invariant checks only).
    pub(crate) fn entries(&self, id_of: impl Fn(u32) -> OrderId) -> impl Iterator<Item = (OrderId, u32)> + '_ {
        let table: Vec<(OrderId, u32)> = self
            .sets
            .iter()
            .flat_map(|set| set.slots.iter().filter(|&&oi| oi != NIL).map(|&oi| (id_of(oi), oi)))
            .collect();
        table.into_iter().chain(self.overflow.iter().map(|(&id, &oi)| (id, oi)))
    }

    /// Checks the table's count, that every id is in its own set under its
    /// fingerprint, and that no id is both in the table and in the overflow map.
    pub(crate) fn validate(&self, id_of: impl Fn(u32) -> OrderId) -> Result<(), String> {
        let mut held = 0;
        for (s, set) in self.sets.iter().enumerate() {
            for w in (0..WAYS).filter(|&w| set.slots[w] != NIL) {
                let id = id_of(set.slots[w]);
                held += 1;
                if self.set_of(id) != s || set.fingerprints[w] != fingerprint(id) {
                    return Err(format!("id index: id {id} is in set {s} way {w}, not where it belongs"));
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
    /// against a plain map. Slot `oi` holds the id `ids[oi]`.
    fn exercise(mut next_id: impl FnMut(u64) -> u64) {
        let mut index = IdIndex::new(64, 0);
        let mut ids: Vec<u64> = Vec::new();
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
                let oi = ids.len() as u32;
                ids.push(id);
                index.insert(id, oi);
                model.insert(id, oi);
                live.push(id);
            } else {
                let id = live.swap_remove((x >> 8) as usize % live.len());
                assert_eq!(index.remove(id, |oi| ids[oi as usize]), model.remove(&id));
                assert_eq!(index.remove(id, |oi| ids[oi as usize]), None);
            }
            if step % 997 == 0 {
                index.validate(|oi| ids[oi as usize]).unwrap();
                assert_eq!(index.len(), model.len());
                let mut entries: Vec<_> = index.entries(|oi| ids[oi as usize]).collect();
                entries.sort_unstable();
                let mut want: Vec<_> = model.iter().map(|(&k, &v)| (k, v)).collect();
                want.sort_unstable();
                assert_eq!(entries, want);
            }
            let probe = next_id(step) ^ (x & 3);
            assert_eq!(index.get(probe, |oi| ids[oi as usize]), model.get(&probe).copied());
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
        exercise(|step| u64::MAX - step * 7);
    }
}
