//! The order arena: every resting order of an [`crate::Exchange`] lives in
//! one slab of fixed-size slots, found by id through one hash index.
//!
//! Slots are reused through an intrusive free list, so once the arena has
//! reached its high-water mark, resting and removing orders allocates
//! nothing. The arena never holds more than `orders_max` live orders.
//! Every live slot is also on its owner's list ([`crate::owners`]), or on
//! its way there.

use crate::id_index::IdIndex;
use crate::owners::{Owners, side_index};

/// Orders that came to rest and are not on their owner's list yet, at most.
/// Most orders are short-lived: cancelled or filled within a few hundred
/// commands. One that goes while still waiting here never touches the owner
/// lists at all; one still resting when about this many orders have come
/// after it is put on its list then. A mass cancel first puts every waiting
/// order on its list: a bounded cost on top of what it cancels. Debug
/// builds (the tests) wait only 16 orders, so the short random streams of
/// the differential tests take both paths, with `validate()` after each step.
pub(crate) const OWNER_PENDING_MAX: usize = if cfg!(debug_assertions) { 16 } else { 1024 };
const _: () = assert!(OWNER_PENDING_MAX.is_power_of_two());

use crate::types::*;

/// "No slot" in every `u32` link.
pub(crate) const NIL: u32 = u32::MAX;

/// One order in the arena: one cache line, aligned to one, so touching an
/// order never touches two lines.
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
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
    /// The owner list (user, book) the order is on, and its neighbours there
    /// (`NIL` at the ends); or, while the order waits to join its list,
    /// `owner` is `NIL` and `owner_next` its cell in `Orders::owner_pending`.
    pub(crate) owner: u32,
    pub(crate) owner_next: u32,
    pub(crate) owner_prev: u32,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 64, "a slot is one cache line");

impl Slot {
    /// A slot for an order about to rest in book `book`; its links are set
    /// when it is inserted and linked into its level.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn resting_order(
        id: OrderId,
        user: UserId,
        book: u32,
        side: Side,
        price: Price,
        remaining: Qty,
        stp: Stp,
        post_only: bool,
    ) -> Slot {
        Slot {
            id,
            user,
            price,
            remaining,
            next: NIL,
            prev: NIL,
            level: NIL,
            book,
            side,
            stp,
            post_only,
            live: true,
            owner: NIL,
            owner_next: NIL,
            owner_prev: NIL,
        }
    }

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
    /// Each user's resting orders, per book and side.
    pub(crate) owners: Owners,
    /// A ring of the slots of the last orders that came to rest, not on
    /// their owner list yet; `NIL` in an empty cell. The next order to rest
    /// takes the cell of the oldest, which then joins its list; an order that
    /// goes while it waits empties its cell (so nothing here is stale).
    /// Invariant: a live slot is on its owner list, or `owner` is `NIL` and
    /// cell `owner_next` holds it; every other cell is `NIL`.
    owner_pending: Box<[u32]>,
    /// Orders that came to rest so far: the next to rest takes cell
    /// `owner_pending_next % OWNER_PENDING_MAX`.
    owner_pending_next: usize,
}

impl Orders {
    /// An arena for at most `max` orders (capped below `u32::MAX`), with
    /// room for `preallocated` of them made up front.
    pub(crate) fn new(max: usize, preallocated: usize) -> Orders {
        let max = max.min(NIL as usize - 1);
        let preallocated = preallocated.min(max);
        // Ways for 2.5 ids per preallocated order: the table stays under half
        // full, so an id rarely finds its set full and overflows.
        let index = IdIndex::new(preallocated * 2, preallocated / 16);
        Orders {
            slots: Vec::with_capacity(preallocated),
            free: NIL,
            live: 0,
            max,
            index,
            id_high_water: 0,
            owners: Owners::new(preallocated),
            owner_pending: vec![NIL; OWNER_PENDING_MAX].into_boxed_slice(),
            owner_pending_next: 0,
        }
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
        id <= self.id_high_water && self.find(id).is_some()
    }

    /// The slot of a live order.
    #[inline]
    pub(crate) fn find(&self, id: OrderId) -> Option<u32> {
        let slots = &self.slots;
        self.index.get(id, |oi| slots[oi as usize].id)
    }

    /// Stores `slot` and indexes it by id; it joins its owner's list later
    /// (see [`OWNER_PENDING_MAX`]). `None` when the arena is full.
    #[inline(always)]
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
        // One in, one out: the oldest waiting order, if it still rests (most
        // have gone), joins its list now.
        let cell = self.owner_pending_next & (OWNER_PENDING_MAX - 1);
        self.owner_pending_next += 1;
        let oldest = std::mem::replace(&mut self.owner_pending[cell], oi);
        let slot = &mut self.slots[oi as usize];
        slot.owner = NIL;
        slot.owner_next = cell as u32;
        if oldest != NIL {
            self.link_owner(oldest);
        }
        Some(oi)
    }

    /// Puts every waiting order on its owner list (before a mass cancel).
    pub(crate) fn link_pending_owners(&mut self) {
        for cell in 0..OWNER_PENDING_MAX {
            let oi = std::mem::replace(&mut self.owner_pending[cell], NIL);
            if oi != NIL {
                self.link_owner(oi);
            }
        }
    }

    /// Puts slot `oi`, which waited in the pending ring, at the head of its
    /// owner list (user, book, side).
    #[inline(never)]
    fn link_owner(&mut self, oi: u32) {
        let Slot { user, book, side, live, owner, .. } = self.slots[oi as usize];
        debug_assert!(live && owner == NIL, "Invariant: only a waiting live order joins its list");
        let li = self.owners.list_for(user, book);
        let list = &mut self.owners.lists[li as usize];
        let head = std::mem::replace(&mut list.heads[side_index(side)], oi);
        list.count += 1;
        if head != NIL {
            self.slots[head as usize].owner_prev = oi;
        }
        let slot = &mut self.slots[oi as usize];
        slot.owner = li;
        slot.owner_next = head;
        slot.owner_prev = NIL;
    }

    /// Takes slot `oi` off its owner list (a list that empties goes idle),
    /// or out of the pending ring if it is still waiting there.
    #[inline(always)]
    fn unlink_owner(&mut self, oi: u32) {
        let Slot { owner: li, owner_next: cell, .. } = self.slots[oi as usize];
        if li == NIL {
            debug_assert_eq!(self.owner_pending[cell as usize], oi, "Invariant: a waiting slot knows its cell");
            self.owner_pending[cell as usize] = NIL;
        } else {
            self.unlink_listed(oi);
        }
    }

    #[inline(never)]
    fn unlink_listed(&mut self, oi: u32) {
        let Slot { owner: li, owner_next: next, owner_prev: prev, side, .. } = self.slots[oi as usize];
        if prev == NIL {
            self.owners.lists[li as usize].heads[side_index(side)] = next;
        } else {
            self.slots[prev as usize].owner_next = next;
        }
        if next != NIL {
            self.slots[next as usize].owner_prev = prev;
        }
        let list = &mut self.owners.lists[li as usize];
        list.count -= 1;
        if list.count == 0 {
            self.owners.emptied(li);
        }
    }

    /// Appends `(order id, slot)` of each of `user`'s resting orders in
    /// book `book` (any book when `None`) on `side` (both when `None`) to
    /// `out`, in no particular order. Returns how many slots it stepped
    /// through to find them (exactly those, by construction of the lists).
    /// Every waiting order must be on its list first ([`Orders::link_pending_owners`]).
    pub(crate) fn collect_owned(
        &self,
        user: UserId,
        book: Option<u32>,
        side: Option<Side>,
        out: &mut Vec<(OrderId, u32)>,
    ) -> u64 {
        debug_assert!(self.owner_pending.iter().all(|&oi| oi == NIL), "Invariant: no order waits to join its list");
        let mut visited = 0u64;
        let mut collect_list = |li: u32| {
            for s in [Side::Buy, Side::Sell] {
                if side.is_some_and(|wanted| wanted != s) {
                    continue;
                }
                let mut oi = self.owners.lists[li as usize].heads[side_index(s)];
                while oi != NIL {
                    let slot = &self.slots[oi as usize];
                    visited += 1;
                    out.push((slot.id, oi));
                    oi = slot.owner_next;
                }
            }
        };
        match book {
            Some(book) => self.owners.find(user, book).into_iter().for_each(&mut collect_list),
            None => self.owners.lists_of(user).for_each(&mut collect_list),
        }
        visited
    }

    /// Frees slot `oi` and forgets its id. The caller has unlinked it from its book.
    #[inline]
    pub(crate) fn release(&mut self, oi: u32) {
        let slots = &self.slots;
        let removed = self.index.remove(slots[oi as usize].id, |oi| slots[oi as usize].id);
        debug_assert_eq!(removed, Some(oi), "Invariant: the id index points at the slot");
        self.free_slot(oi);
    }

    /// Takes order `id` out of the index if it is live and belongs to
    /// `user`, returning its slot (still linked in its book, still live):
    /// one hash operation for the usual cancel.
    #[inline]
    pub(crate) fn unindex_owned(&mut self, id: OrderId, user: UserId) -> Option<u32> {
        let slots = &self.slots;
        let oi = self.index.remove(id, |oi| slots[oi as usize].id)?;
        if self.slots[oi as usize].user != user {
            self.index.insert(id, oi);
            return None;
        }
        Some(oi)
    }

    /// Puts slot `oi`, already out of the index and out of its book, on the
    /// free list (and takes it off its owner's list).
    #[inline]
    pub(crate) fn free_slot(&mut self, oi: u32) {
        self.unlink_owner(oi);
        let slot = &mut self.slots[oi as usize];
        debug_assert!(slot.live, "Invariant: only a live slot is released");
        slot.live = false;
        slot.owner = NIL;
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
        let id_of = |oi: u32| self.slots.get(oi as usize).map_or(u64::MAX, |slot| slot.id);
        self.index.validate(id_of)?;
        for (id, oi) in self.index.entries(id_of) {
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
        self.validate_owners()
    }

    /// Every live slot is on the owner list of its user, book and side,
    /// exactly once, with consistent links and counts.
    fn validate_owners(&self) -> Result<(), String> {
        self.owners.validate()?;
        let mut on_lists = 0usize;
        for (li, list) in self.owners.lists.iter().enumerate() {
            if self.owners.find(list.user, list.book) != Some(li as u32) {
                // A free entry: it holds nothing.
                if !list.is_empty() {
                    return Err(format!("owners: free list {li} holds orders"));
                }
                continue;
            }
            let mut count = 0u32;
            for side in [Side::Buy, Side::Sell] {
                let (mut prev, mut oi) = (NIL, list.heads[side_index(side)]);
                while oi != NIL {
                    let slot = self.slots.get(oi as usize).ok_or_else(|| format!("owners: slot {oi} out of range"))?;
                    if !slot.live || slot.owner != li as u32 || slot.owner_prev != prev {
                        return Err(format!("owners: order {} has broken owner links", slot.id));
                    }
                    if slot.user != list.user || slot.book != list.book || slot.side != side {
                        return Err(format!("owners: order {} is on another owner's list", slot.id));
                    }
                    count += 1;
                    if count as usize > self.live {
                        return Err(format!("owners: list {li} has a cycle"));
                    }
                    prev = oi;
                    oi = slot.owner_next;
                }
            }
            if count != list.count {
                return Err(format!("owners: list {li} counts {} orders, holds {count}", list.count));
            }
            on_lists += count as usize;
        }
        let mut waiting = 0;
        for (cell, &oi) in self.owner_pending.iter().enumerate() {
            if oi == NIL {
                continue;
            }
            let slot = self.slots.get(oi as usize).ok_or_else(|| format!("owners: pending slot {oi} out of range"))?;
            if !slot.live || slot.owner != NIL || slot.owner_next != cell as u32 {
                return Err(format!("owners: pending cell {cell} holds slot {oi}, which does not wait there"));
            }
            waiting += 1;
        }
        if on_lists + waiting != self.live {
            return Err(format!("owners: {on_lists} orders on owner lists, {waiting} waiting, {} live", self.live));
        }
        Ok(())
    }
}
