//! The order arena: every resting order of an [`crate::Exchange`] lives in
//! one slab of fixed-size slots, found by id through one hash index.
//!
//! Slots are reused through an intrusive free list, so once the arena has
//! reached its high-water mark, resting and removing orders allocates
//! nothing. The arena never holds more than `orders_max` live orders.

use crate::id_index::IdIndex;

use crate::types::*;

/// "No slot" in every `u32` link.
pub(crate) const NIL: u32 = u32::MAX;

/// One order in the arena.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    pub(crate) id: OrderId,
    pub(crate) user: UserId,
    pub(crate) price: Price,
    /// Remaining quantity; at least 1 while the order rests.
    pub(crate) remaining: Qty,
    /// Next (younger) order at the same level, or `NIL`. In a free slot: the next free slot.
    pub(crate) next: u32,
    /// Previous (older) order at the same level, or `NIL`.
    pub(crate) prev: u32,
    /// Index of the level in the book's level arena.
    pub(crate) level: u32,
    /// Index of the book in the exchange.
    pub(crate) book: u32,
    pub(crate) side: Side,
    pub(crate) stp: Stp,
    pub(crate) post_only: bool,
    /// False once the slot is on the free list.
    pub(crate) live: bool,
}

impl Slot {
    pub(crate) fn resting(&self) -> RestingOrder {
        RestingOrder {
            order_id: self.id,
            user: self.user,
            side: self.side,
            price: self.price,
            qty: self.remaining,
            post_only: self.post_only,
            stp: self.stp,
        }
    }
}

#[derive(Clone)]
pub struct Orders {
    pub(crate) slots: Vec<Slot>,
    /// First free slot, chained through `next`; `NIL` when none.
    free: u32,
    live: usize,
    max: usize,
    /// Order id to slot, for every live slot (and nothing else).
    pub(crate) index: IdIndex,
    /// The greatest id ever inserted: no live order has a greater one.
    id_high_water: OrderId,
}

impl Orders {
    /// An arena for at most `max` orders (capped below `u32::MAX`), with
    /// room for `preallocated` of them made up front.
    pub(crate) fn new(max: usize, preallocated: usize) -> Orders {
        let max = max.min(NIL as usize - 1);
        let preallocated = preallocated.min(max);
        // A window of 4 ids per slot covers the ids of orders that churn;
        // longer-lived ones move to the overflow map, sized for them all.
        let index = IdIndex::new((preallocated * 4).clamp(1 << 12, 1 << 22), preallocated);
        Orders { slots: Vec::with_capacity(preallocated), free: NIL, live: 0, max, index, id_high_water: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    pub(crate) fn is_full(&self) -> bool {
        self.live >= self.max
    }

    /// Is `id` the id of a live order? Free of a hash lookup for an id above
    /// every id seen so far (the usual case: a sequencer's ids increase).
    #[inline]
    pub(crate) fn contains(&self, id: OrderId) -> bool {
        id <= self.id_high_water && self.index.get(id).is_some()
    }

    /// The slot of a live order.
    #[inline]
    pub(crate) fn find(&self, id: OrderId) -> Option<u32> {
        self.index.get(id)
    }

    /// Stores `slot` and indexes it by id. `None` when the arena is full.
    #[inline]
    pub(crate) fn insert(&mut self, slot: Slot) -> Option<u32> {
        if self.is_full() {
            return None;
        }
        let oi = if self.free != NIL {
            let oi = self.free;
            self.free = self.slots[oi as usize].next;
            self.slots[oi as usize] = slot;
            oi
        } else {
            self.slots.push(slot);
            (self.slots.len() - 1) as u32
        };
        self.live += 1;
        self.id_high_water = self.id_high_water.max(slot.id);
        self.index.insert(slot.id, oi);
        Some(oi)
    }

    /// Frees slot `oi` and forgets its id. The caller has unlinked it from its book.
    #[inline]
    pub(crate) fn release(&mut self, oi: u32) {
        let removed = self.index.remove(self.slots[oi as usize].id);
        debug_assert_eq!(removed, Some(oi), "Invariant: the id index points at the slot");
        self.free_slot(oi);
    }

    /// Takes order `id` out of the index if it is live and belongs to
    /// `user`, returning its slot (still linked in its book, still live):
    /// one hash operation for the usual cancel.
    #[inline]
    pub(crate) fn unindex_owned(&mut self, id: OrderId, user: UserId) -> Option<u32> {
        let oi = self.index.remove(id)?;
        if self.slots[oi as usize].user != user {
            self.index.insert(id, oi);
            return None;
        }
        Some(oi)
    }

    /// Puts slot `oi`, already out of the index and out of its book, on the free list.
    #[inline]
    pub(crate) fn free_slot(&mut self, oi: u32) {
        let slot = &mut self.slots[oi as usize];
        debug_assert!(slot.live, "Invariant: only a live slot is released");
        slot.live = false;
        slot.next = self.free;
        self.free = oi;
        self.live -= 1;
    }

    /// Checks the arena against its index: every live slot is indexed, the
    /// free list holds exactly the other slots.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let live = self.slots.iter().filter(|s| s.live).count();
        if live != self.live || self.index.len() != self.live {
            return Err(format!("arena: {live} live slots, counter {}, index {}", self.live, self.index.len()));
        }
        self.index.validate()?;
        for (id, oi) in self.index.entries() {
            match self.slots.get(oi as usize) {
                Some(slot) if slot.live && slot.id == id => {}
                _ => return Err(format!("arena: index entry for order {id} points at a wrong slot {oi}")),
            }
        }
        let (mut free, mut oi) = (0usize, self.free);
        while oi != NIL {
            let slot = self.slots.get(oi as usize).ok_or_else(|| format!("arena: free link {oi} out of range"))?;
            if slot.live {
                return Err(format!("arena: live slot {oi} on the free list"));
            }
            free += 1;
            if free > self.slots.len() {
                return Err("arena: free list has a cycle".to_string());
            }
            oi = slot.next;
        }
        if free + live != self.slots.len() {
            return Err(format!("arena: {free} free + {live} live != {} slots", self.slots.len()));
        }
        Ok(())
    }
}
