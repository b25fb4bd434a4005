//! One symbol's order book: two sides of price levels, each level a FIFO of
//! orders linked through the shared order arena ([`Orders`]).
//!
//! The book holds no orders itself: it holds levels (price, total, head and
//! tail of the FIFO), and orders live in the arena, linked by slot index.
//! That keeps every cancel and modify O(1) once the id is looked up, and
//! makes matching a walk along `next` links.

use crate::levels::PriceLevels;
use crate::orders::{NIL, Orders, Slot};
use crate::types::*;

/// A price level: the FIFO of resting orders at one price.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Level {
    pub(crate) price: Price,
    /// Sum of the remaining quantity of the level's orders. `u128` because
    /// many orders of up to `2^53 - 1` lots each can rest at one price.
    pub(crate) total: u128,
    /// Oldest order (first to match), or `NIL`. In a free level: the next free level.
    pub(crate) head: u32,
    /// Newest order, or `NIL`.
    pub(crate) tail: u32,
    /// Number of orders in the FIFO.
    pub(crate) count: u32,
}

/// Storage for levels, reused through a free list so that a level that
/// empties and reappears costs no allocation.
#[derive(Clone, Default)]
pub(crate) struct LevelArena {
    levels: Vec<Level>,
    /// First free level, chained through `head`; `NIL` when none.
    free: u32,
}

impl LevelArena {
    fn with_capacity(capacity: usize) -> Self {
        LevelArena { levels: Vec::with_capacity(capacity), free: NIL }
    }

    fn alloc(&mut self, price: Price) -> u32 {
        let level = Level { price, total: 0, head: NIL, tail: NIL, count: 0 };
        if self.free != NIL {
            let li = self.free;
            self.free = self.levels[li as usize].head;
            self.levels[li as usize] = level;
            li
        } else {
            if self.levels.is_empty() {
                // Most books are thin: room for two levels first, not Vec's four.
                self.levels.reserve_exact(2);
            }
            self.levels.push(level);
            (self.levels.len() - 1) as u32
        }
    }

    fn free(&mut self, li: u32) {
        debug_assert_eq!(self.levels[li as usize].count, 0, "Invariant: only an empty level is freed");
        self.levels[li as usize].head = self.free;
        self.free = li;
    }

    pub(crate) fn get(&self, li: u32) -> Option<&Level> {
        self.levels.get(li as usize)
    }
}

impl std::ops::Index<u32> for LevelArena {
    type Output = Level;
    #[inline]
    fn index(&self, li: u32) -> &Level {
        &self.levels[li as usize]
    }
}

impl std::ops::IndexMut<u32> for LevelArena {
    #[inline]
    fn index_mut(&mut self, li: u32) -> &mut Level {
        &mut self.levels[li as usize]
    }
}

/// The order entering the book as a taker (a new order, or a modified one
/// that re-enters).
pub(crate) struct Taker {
    pub(crate) order_id: OrderId,
    pub(crate) user: UserId,
    pub(crate) side: Side,
    /// `None` for a market order.
    pub(crate) limit: Option<Price>,
    pub(crate) stp: Stp,
}

/// How a taker's pass through the book ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TakeOutcome {
    /// Matching ran out of quantity or of crossing liquidity.
    Done,
    /// Self-trade prevention cancelled the taker (the event is already out).
    TakerCancelled,
}

#[derive(Clone)]
pub struct Book<L> {
    pub(crate) symbol: Symbol,
    pub(crate) bids: L,
    pub(crate) asks: L,
    /// Level storage for both sides.
    pub(crate) levels: LevelArena,
    /// The last trade id given out (trade ids count from 1 per symbol).
    pub(crate) last_trade_id: u64,
    /// Whether the symbol trades (`halt`/`resume`).
    pub(crate) status: TradingStatus,
}

/// The level-map key of a price on a side: greater is better on both sides.
#[inline]
pub(crate) fn level_key(side: Side, price: Price) -> u64 {
    match side {
        Side::Buy => price,
        Side::Sell => u64::MAX - price,
    }
}

/// Does a taker on `side` with `limit` cross a maker resting at `maker_price`?
#[inline]
pub(crate) fn crosses(side: Side, limit: Option<Price>, maker_price: Price) -> bool {
    match (side, limit) {
        (_, None) => true,
        (Side::Buy, Some(limit)) => maker_price <= limit,
        (Side::Sell, Some(limit)) => maker_price >= limit,
    }
}

impl<L: PriceLevels> Book<L> {
    pub(crate) fn new(symbol: Symbol, levels_reserved: usize) -> Self {
        let mut book = Book {
            symbol,
            bids: L::default(),
            asks: L::default(),
            levels: LevelArena::with_capacity(levels_reserved * 2),
            last_trade_id: 0,
            status: TradingStatus::Open,
        };
        book.bids.reserve(levels_reserved);
        book.asks.reserve(levels_reserved);
        book
    }

    #[inline]
    pub(crate) fn side(&self, side: Side) -> &L {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    #[inline]
    fn side_mut(&mut self, side: Side) -> &mut L {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    /// Best price and total quantity on a side.
    #[inline]
    pub fn best(&self, side: Side) -> Option<(Price, u128)> {
        self.side(side).best().map(|(_, li)| {
            let level = &self.levels[li];
            (level.price, level.total)
        })
    }

    /// Total resting quantity at a price on a side (0 if no level).
    pub fn qty_at(&self, side: Side, price: Price) -> u128 {
        self.side(side).get(level_key(side, price)).map_or(0, |li| self.levels[li].total)
    }

    /// Levels of a side, best first: `(price, total quantity, order count)`.
    pub fn depth(&self, side: Side) -> impl Iterator<Item = (Price, u128, u32)> + '_ {
        self.side(side).iter_best_first().map(|(_, li)| {
            let level = &self.levels[li];
            (level.price, level.total, level.count)
        })
    }

    /// Would a post-only order at `price` on `side` take liquidity?
    #[inline]
    pub(crate) fn would_take(&self, side: Side, price: Price) -> bool {
        self.best(side.opposite()).is_some_and(|(best, _)| crosses(side, Some(price), best))
    }

    /// Appends slot `oi` (its side, price and remaining already set) at the
    /// tail of its price level, creating the level if needed.
    pub(crate) fn link_tail(&mut self, orders: &mut Orders, oi: u32) {
        let (side, price, remaining) = {
            let s = &orders.slots[oi as usize];
            (s.side, s.price, s.remaining)
        };
        let key = level_key(side, price);
        // Borrow the level arena and the side map separately.
        let Book { bids, asks, levels, .. } = self;
        let map = match side {
            Side::Buy => bids,
            Side::Sell => asks,
        };
        let li = map.get_or_insert_with(key, || levels.alloc(price));
        let level = &mut self.levels[li];
        debug_assert_eq!(level.price, price, "Invariant: a level's key matches its price");
        let tail = level.tail;
        level.tail = oi;
        if tail == NIL {
            level.head = oi;
        } else {
            orders.slots[tail as usize].next = oi;
        }
        level.total += remaining as u128;
        level.count += 1;
        let slot = &mut orders.slots[oi as usize];
        slot.level = li;
        slot.prev = tail;
        slot.next = NIL;
    }

    /// Takes slot `oi` out of its level's FIFO and totals. Returns the level
    /// index; the level stays in the side map even when it becomes empty.
    #[inline]
    fn unlink(&mut self, orders: &mut Orders, oi: u32) -> u32 {
        let Slot { prev, next, level: li, remaining, .. } = orders.slots[oi as usize];
        if prev == NIL {
            self.levels[li].head = next;
        } else {
            orders.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.levels[li].tail = prev;
        } else {
            orders.slots[next as usize].prev = prev;
        }
        let level = &mut self.levels[li];
        level.total -= remaining as u128;
        level.count -= 1;
        li
    }

    /// Takes slot `oi` out of the book (not out of the arena), dropping its
    /// level if it was the last order there.
    pub(crate) fn remove(&mut self, orders: &mut Orders, oi: u32) {
        let li = self.unlink(orders, oi);
        if self.levels[li].count == 0 {
            let slot = &orders.slots[oi as usize];
            let key = level_key(slot.side, slot.price);
            let removed = self.side_mut(slot.side).remove(key);
            debug_assert_eq!(removed, Some(li), "Invariant: the side map holds every live level");
            self.levels.free(li);
        }
    }

    /// Reduces a resting order's remaining quantity in place (it keeps its priority).
    pub(crate) fn reduce(&mut self, orders: &mut Orders, oi: u32, new_remaining: Qty) {
        let slot = &mut orders.slots[oi as usize];
        debug_assert!(new_remaining >= 1 && new_remaining <= slot.remaining);
        let level = &mut self.levels[slot.level];
        level.total -= (slot.remaining - new_remaining) as u128;
        slot.remaining = new_remaining;
    }

    /// Could `taker` fill `qty` completely right now? Walks the book exactly
    /// as [`Book::take`] would, self-trade prevention included, and changes nothing.
    pub(crate) fn can_fill(&self, orders: &Orders, taker: &Taker, qty: Qty) -> bool {
        let mut needed = qty as u128;
        for (_, li) in self.side(taker.side.opposite()).iter_best_first() {
            let level = &self.levels[li];
            if !crosses(taker.side, taker.limit, level.price) {
                return false;
            }
            if taker.stp == Stp::None {
                if level.total >= needed {
                    return true;
                }
                needed -= level.total;
                continue;
            }
            let mut oi = level.head;
            while oi != NIL {
                let maker = &orders.slots[oi as usize];
                if maker.user == taker.user {
                    match taker.stp {
                        Stp::CancelMaker => {
                            oi = maker.next;
                            continue;
                        }
                        // cancel_taker and cancel_both stop the taker here.
                        _ => return false,
                    }
                }
                if maker.remaining as u128 >= needed {
                    return true;
                }
                needed -= maker.remaining as u128;
                oi = maker.next;
            }
        }
        false
    }

    /// Matches `taker` against the opposite side, best price first and
    /// oldest first within a price, at the makers' prices, applying the
    /// taker's self-trade prevention. `remaining` is the taker's quantity
    /// and is left at what is unfilled.
    #[inline]
    pub(crate) fn take<S: EventSink + ?Sized>(
        &mut self,
        orders: &mut Orders,
        seq: Seq,
        taker: &Taker,
        remaining: &mut Qty,
        sink: &mut S,
    ) -> TakeOutcome {
        let maker_side = taker.side.opposite();
        while *remaining > 0 {
            let Some((_, li)) = self.side(maker_side).best() else {
                break;
            };
            if !crosses(taker.side, taker.limit, self.levels[li].price) {
                break;
            }
            let mut oi = self.levels[li].head;
            while oi != NIL && *remaining > 0 {
                let maker = orders.slots[oi as usize];
                let next = maker.next;
                if maker.user == taker.user && taker.stp != Stp::None {
                    if taker.stp == Stp::CancelTaker {
                        sink.event(&self.taker_cancelled(seq, taker, CancelReason::Stp, *remaining));
                        return TakeOutcome::TakerCancelled;
                    }
                    // cancel_maker and cancel_both: the maker goes first.
                    sink.event(&Event::cancelled(
                        seq,
                        maker.id,
                        maker.user,
                        self.symbol,
                        maker.side,
                        Some(maker.price),
                        CancelReason::Stp,
                        maker.remaining,
                    ));
                    self.unlink(orders, oi);
                    orders.release(oi);
                    if taker.stp == Stp::CancelBoth {
                        self.drop_best_if_empty(maker_side, li);
                        sink.event(&self.taker_cancelled(seq, taker, CancelReason::Stp, *remaining));
                        return TakeOutcome::TakerCancelled;
                    }
                    oi = next;
                    continue;
                }
                let fill = (*remaining).min(maker.remaining);
                let maker_remaining = maker.remaining - fill;
                *remaining -= fill;
                self.last_trade_id += 1;
                sink.event(&Event {
                    seq,
                    kind: EventKind::Trade(Trade {
                        symbol: self.symbol,
                        trade_id: self.last_trade_id,
                        price: maker.price,
                        qty: fill,
                        maker_order_id: maker.id,
                        maker_user: maker.user,
                        taker_order_id: taker.order_id,
                        taker_user: taker.user,
                        taker_side: taker.side,
                        maker_remaining,
                        taker_remaining: *remaining,
                    }),
                });
                if maker_remaining == 0 {
                    self.unlink(orders, oi);
                    orders.release(oi);
                } else {
                    orders.slots[oi as usize].remaining = maker_remaining;
                    self.levels[li].total -= fill as u128;
                }
                oi = next;
            }
            self.drop_best_if_empty(maker_side, li);
        }
        TakeOutcome::Done
    }

    /// The `cancelled` event of a taker's remainder.
    #[inline]
    pub(crate) fn taker_cancelled(&self, seq: Seq, taker: &Taker, reason: CancelReason, remaining: Qty) -> Event {
        Event::cancelled(seq, taker.order_id, taker.user, self.symbol, taker.side, taker.limit, reason, remaining)
    }

    /// The `cancelled` event of resting order `slot`.
    #[inline]
    pub(crate) fn resting_cancelled(&self, seq: Seq, slot: &Slot, reason: CancelReason) -> Event {
        Event::cancelled(seq, slot.id, slot.user, self.symbol, slot.side, Some(slot.price), reason, slot.remaining)
    }

    /// Drops the best level of `side`, `li`, if it has no orders left.
    #[inline]
    fn drop_best_if_empty(&mut self, side: Side, li: u32) {
        if self.levels[li].count == 0 {
            let removed = self.side_mut(side).remove_best();
            debug_assert_eq!(removed, Some(li), "Invariant: the level being matched is the best");
            self.levels.free(li);
        }
    }

    /// Resting orders of a side in priority order.
    pub fn orders<'a>(&'a self, orders: &'a Orders, side: Side) -> impl Iterator<Item = RestingOrder> + 'a {
        self.side(side).iter_best_first().flat_map(move |(_, li)| {
            let mut oi = self.levels[li].head;
            std::iter::from_fn(move || {
                if oi == NIL {
                    return None;
                }
                let slot = &orders.slots[oi as usize];
                oi = slot.next;
                Some(slot.resting())
            })
        })
    }

    /// Checks this book's invariants against the arena; see [`crate::Exchange::validate`].
    pub(crate) fn validate(&self, book_index: u32, orders: &Orders) -> Result<usize, String> {
        let name = self.symbol.as_str();
        let mut seen = 0usize;
        for side in [Side::Buy, Side::Sell] {
            let mut previous_key: Option<u64> = None;
            for (key, li) in self.side(side).iter_best_first() {
                if let Some(p) = previous_key
                    && key >= p
                {
                    return Err(format!("{name} {side:?}: level keys not strictly descending"));
                }
                previous_key = Some(key);
                let level = self.levels.get(li).ok_or_else(|| format!("{name}: level {li} out of range"))?;
                if level_key(side, level.price) != key {
                    return Err(format!("{name} {side:?}: level {li} price {} does not match its key", level.price));
                }
                if level.count == 0 {
                    return Err(format!("{name} {side:?}: empty level at {}", level.price));
                }
                let (mut total, mut count, mut prev, mut oi) = (0u128, 0u32, NIL, level.head);
                while oi != NIL {
                    let slot =
                        orders.slots.get(oi as usize).ok_or_else(|| format!("{name}: slot {oi} out of range"))?;
                    if !slot.live {
                        return Err(format!("{name}: free slot {oi} linked in level {}", level.price));
                    }
                    if slot.prev != prev || slot.level != li || slot.book != book_index {
                        return Err(format!("{name}: order {} has broken links", slot.id));
                    }
                    if slot.side != side || slot.price != level.price || slot.remaining == 0 {
                        return Err(format!("{name}: order {} disagrees with its level", slot.id));
                    }
                    if orders.find(slot.id) != Some(oi) {
                        return Err(format!("{name}: order {} is not in the id index", slot.id));
                    }
                    total += slot.remaining as u128;
                    count += 1;
                    if count > level.count {
                        return Err(format!("{name}: level {} has more orders than its count", level.price));
                    }
                    prev = oi;
                    oi = slot.next;
                }
                if level.tail != prev || count != level.count || total != level.total {
                    return Err(format!(
                        "{name}: level {} totals disagree (count {count} vs {}, qty {total} vs {})",
                        level.price, level.count, level.total
                    ));
                }
                seen += count as usize;
            }
        }
        if let (Some((bid, _)), Some((ask, _))) = (self.best(Side::Buy), self.best(Side::Sell))
            && bid >= ask
        {
            return Err(format!("{name}: book crossed, bid {bid} >= ask {ask}"));
        }
        Ok(seen)
    }
}
