//! The order-by-order book of every symbol, as the feed describes it: what
//! a feed client rebuilds, and what the publisher keeps (it applies every
//! message it sends, so its book is by construction the one its clients
//! rebuild).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fmt;
use std::ops::Bound;

use matching_core::{Side, Symbol};
use matching_proto::feed::FeedMessage;
use matching_proto::json_md::{Level, book_checksum};
use rustc_hash::FxHashMap;

/// A resting order as the feed shows it (anonymous).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedOrder {
    pub order_id: u64,
    pub side: Side,
    pub price: u64,
    pub qty: u64,
}

/// One aggregated level changed: its total went from `before` to `after`
/// (0: the level did not exist, or is gone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelChange {
    pub locate: u32,
    pub side: Side,
    pub price: u64,
    pub before: u128,
    pub after: u128,
}

/// Why a message does not apply to the book (a gap, or a bug): the book is unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedBookError(pub String);

impl fmt::Display for FeedBookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FeedBookError {}

/// An order in its level's FIFO, linked by order id.
#[derive(Clone, Copy, Debug)]
struct Node {
    locate: u32,
    order: FeedOrder,
    prev: Option<u64>,
    next: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default)]
struct LevelFifo {
    qty: u128,
    head: u64,
    tail: u64,
}

#[derive(Clone, Debug, Default)]
struct SideBook {
    levels: BTreeMap<u64, LevelFifo>,
}

/// One symbol's book.
#[derive(Clone, Debug)]
struct SymbolBook {
    symbol: Symbol,
    halted: bool,
    bids: SideBook,
    asks: SideBook,
}

impl SymbolBook {
    fn side(&self, side: Side) -> &SideBook {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut SideBook {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }
}

/// Best first: highest bid, lowest ask.
fn best_first(side: Side, levels: &BTreeMap<u64, LevelFifo>) -> Box<dyn Iterator<Item = (&u64, &LevelFifo)> + '_> {
    match side {
        Side::Buy => Box::new(levels.iter().rev()),
        Side::Sell => Box::new(levels.iter()),
    }
}

/// The books of every symbol the feed has named.
#[derive(Clone, Debug, Default)]
pub struct FeedBook {
    /// By locate (index `locate - 1`; a late joiner may know only some).
    symbols: Vec<Option<SymbolBook>>,
    by_symbol: HashMap<Symbol, u32>,
    orders: FxHashMap<u64, Node>,
}

impl FeedBook {
    pub fn new() -> FeedBook {
        FeedBook::default()
    }

    fn book(&self, locate: u32) -> Option<&SymbolBook> {
        self.symbols.get((locate as usize).checked_sub(1)?)?.as_ref()
    }

    fn book_mut(&mut self, locate: u32) -> Result<&mut SymbolBook, FeedBookError> {
        (locate as usize)
            .checked_sub(1)
            .and_then(|i| self.symbols.get_mut(i))
            .and_then(Option::as_mut)
            .ok_or_else(|| FeedBookError(format!("locate {locate} is not in the directory")))
    }

    pub fn locate(&self, symbol: &Symbol) -> Option<u32> {
        self.by_symbol.get(symbol).copied()
    }

    pub fn symbol(&self, locate: u32) -> Option<Symbol> {
        self.book(locate).map(|b| b.symbol)
    }

    /// Every symbol named: `(locate, symbol)`, by locate.
    pub fn symbols(&self) -> impl Iterator<Item = (u32, Symbol)> + '_ {
        self.symbols.iter().enumerate().filter_map(|(i, b)| Some((i as u32 + 1, b.as_ref()?.symbol)))
    }

    pub fn halted(&self, locate: u32) -> bool {
        self.book(locate).is_some_and(|b| b.halted)
    }

    pub fn order(&self, order_id: u64) -> Option<(u32, FeedOrder)> {
        self.orders.get(&order_id).map(|n| (n.locate, n.order))
    }

    /// Resting orders in the whole book.
    pub fn order_count(&self) -> usize {
        self.orders.len()
    }

    /// A side's levels, best first.
    pub fn levels(&self, locate: u32, side: Side) -> Vec<Level> {
        self.top(locate, side, usize::MAX)
    }

    /// A side's best `n` levels, best first.
    pub fn top(&self, locate: u32, side: Side, n: usize) -> Vec<Level> {
        let Some(book) = self.book(locate) else { return Vec::new() };
        best_first(side, &book.side(side).levels).take(n).map(|(&p, l)| (p, l.qty)).collect()
    }

    /// How many levels a side has.
    pub fn level_count(&self, locate: u32, side: Side) -> usize {
        self.book(locate).map_or(0, |b| b.side(side).levels.len())
    }

    /// The total at `price` (0: no level).
    pub fn level_qty(&self, locate: u32, side: Side, price: u64) -> u128 {
        self.book(locate).and_then(|b| b.side(side).levels.get(&price)).map_or(0, |l| l.qty)
    }

    /// Levels strictly better than `price`, counting at most `limit`.
    pub fn rank(&self, locate: u32, side: Side, price: u64, limit: usize) -> usize {
        let Some(book) = self.book(locate) else { return 0 };
        let levels = &book.side(side).levels;
        match side {
            Side::Buy => levels.range((Bound::Excluded(price), Bound::Unbounded)).take(limit).count(),
            Side::Sell => levels.range(..price).take(limit).count(),
        }
    }

    /// The `index`-th best level of a side (0: the best).
    pub fn nth_level(&self, locate: u32, side: Side, index: usize) -> Option<Level> {
        let book = self.book(locate)?;
        best_first(side, &book.side(side).levels).nth(index).map(|(&p, l)| (p, l.qty))
    }

    /// A side's resting orders in priority order: best price first, oldest first.
    pub fn orders(&self, locate: u32, side: Side) -> Vec<FeedOrder> {
        let Some(book) = self.book(locate) else { return Vec::new() };
        let mut out = Vec::new();
        for (_, level) in best_first(side, &book.side(side).levels) {
            let mut at = Some(level.head);
            while let Some(id) = at {
                let Some(node) = self.orders.get(&id) else { break };
                out.push(node.order);
                at = node.next;
            }
        }
        out
    }

    /// The checksum of a symbol's book (`json_md::book_checksum`: its best 10 levels a side).
    pub fn checksum(&self, locate: u32) -> u32 {
        let n = matching_proto::json_md::CHECKSUM_LEVELS;
        book_checksum(&self.top(locate, Side::Buy, n), &self.top(locate, Side::Sell, n))
    }

    /// The messages that give a late joiner a book: for `symbol` (every
    /// symbol if `None`, by locate) `R`, `H`, and `A` for every resting
    /// order in priority order (bids, then asks); then `G` saying the next
    /// feed message is `next`. An unknown symbol gives `G` alone (locate 0).
    pub fn snapshot(&self, symbol: Option<&Symbol>, seq: u64, next: u64) -> Vec<FeedMessage> {
        let locates: Vec<u32> = match symbol {
            Some(symbol) => self.locate(symbol).into_iter().collect(),
            None => self.symbols().map(|(locate, _)| locate).collect(),
        };
        let mut out = Vec::new();
        for &locate in &locates {
            let Some(symbol) = self.symbol(locate) else { continue };
            out.push(FeedMessage::SymbolDirectory { locate, seq, symbol });
            out.push(FeedMessage::TradingStatus { locate, seq, halted: self.halted(locate) });
            for side in [Side::Buy, Side::Sell] {
                for order in self.orders(locate, side) {
                    out.push(FeedMessage::AddOrder {
                        locate,
                        seq,
                        order_id: order.order_id,
                        side,
                        qty: order.qty,
                        price: order.price,
                    });
                }
            }
        }
        let locate = if symbol.is_some() { locates.first().copied().unwrap_or(0) } else { 0 };
        out.push(FeedMessage::EndOfSnapshot { locate, seq, next });
        out
    }

    /// Applies one message; `changed` hears each level change as it is
    /// made, with the book as it is right after it (a replace makes two).
    pub fn apply(
        &mut self,
        message: &FeedMessage,
        mut changed: impl FnMut(&FeedBook, LevelChange),
    ) -> Result<(), FeedBookError> {
        match *message {
            FeedMessage::SystemEvent { .. } | FeedMessage::Trade { .. } | FeedMessage::EndOfSnapshot { .. } => Ok(()),
            FeedMessage::SymbolDirectory { locate, symbol, .. } => {
                let Some(index) = (locate as usize).checked_sub(1) else {
                    return Err(FeedBookError("locate 0 in a symbol directory".into()));
                };
                if let Some(known) = self.by_symbol.get(&symbol)
                    && *known != locate
                {
                    return Err(FeedBookError(format!("{} is locate {known}, not {locate}", symbol.as_str())));
                }
                match self.symbols.get(index).and_then(Option::as_ref) {
                    Some(book) if book.symbol == symbol => return Ok(()),
                    Some(book) => {
                        return Err(FeedBookError(format!("locate {locate} is {}", book.symbol.as_str())));
                    }
                    None => {}
                }
                if self.symbols.len() <= index {
                    self.symbols.resize(index + 1, None);
                }
                self.symbols[index] =
                    Some(SymbolBook { symbol, halted: false, bids: SideBook::default(), asks: SideBook::default() });
                self.by_symbol.insert(symbol, locate);
                Ok(())
            }
            FeedMessage::TradingStatus { locate, halted, .. } => {
                self.book_mut(locate)?.halted = halted;
                Ok(())
            }
            FeedMessage::AddOrder { locate, order_id, side, qty, price, .. } => {
                let change = self.add(locate, FeedOrder { order_id, side, price, qty })?;
                changed(self, change);
                Ok(())
            }
            FeedMessage::OrderExecuted { order_id, qty, .. } | FeedMessage::OrderCancel { order_id, qty, .. } => {
                let change = self.reduce(order_id, qty)?;
                changed(self, change);
                Ok(())
            }
            FeedMessage::OrderDelete { order_id, .. } => {
                let (_, order) = self.order(order_id).ok_or_else(|| unknown(order_id))?;
                let change = self.reduce(order_id, order.qty)?;
                changed(self, change);
                Ok(())
            }
            FeedMessage::OrderReplace { locate, order_id, new_order_id, qty, price, .. } => {
                let (at, order) = self.order(order_id).ok_or_else(|| unknown(order_id))?;
                if at != locate {
                    return Err(FeedBookError(format!("order {order_id} is not in locate {locate}")));
                }
                if new_order_id != order_id && self.orders.contains_key(&new_order_id) {
                    return Err(FeedBookError(format!("order {new_order_id} is already resting")));
                }
                if qty == 0 {
                    return Err(FeedBookError(format!("order {order_id} replaced with no quantity")));
                }
                let change = self.reduce(order_id, order.qty)?;
                changed(self, change);
                let change = self.add(locate, FeedOrder { order_id: new_order_id, side: order.side, price, qty })?;
                changed(self, change);
                Ok(())
            }
        }
    }

    fn add(&mut self, locate: u32, order: FeedOrder) -> Result<LevelChange, FeedBookError> {
        if order.qty == 0 {
            return Err(FeedBookError(format!("order {} added with no quantity", order.order_id)));
        }
        if self.orders.contains_key(&order.order_id) {
            return Err(FeedBookError(format!("order {} is already resting", order.order_id)));
        }
        let book = self.book_mut(locate)?;
        let levels = &mut book.side_mut(order.side).levels;
        let level = levels.entry(order.price).or_insert(LevelFifo { qty: 0, head: order.order_id, tail: 0 });
        let before = level.qty;
        let prev = (before > 0).then_some(level.tail);
        level.qty += u128::from(order.qty);
        level.tail = order.order_id;
        let after = level.qty;
        if let Some(prev) = prev
            && let Some(node) = self.orders.get_mut(&prev)
        {
            node.next = Some(order.order_id);
        }
        self.orders.insert(order.order_id, Node { locate, order, prev, next: None });
        Ok(LevelChange { locate, side: order.side, price: order.price, before, after })
    }

    /// Takes `qty` off a resting order (all of it: the order leaves).
    fn reduce(&mut self, order_id: u64, qty: u64) -> Result<LevelChange, FeedBookError> {
        let node = *self.orders.get(&order_id).ok_or_else(|| unknown(order_id))?;
        if qty == 0 || qty > node.order.qty {
            return Err(FeedBookError(format!("order {order_id} has {} left, not {qty}", node.order.qty)));
        }
        let FeedOrder { side, price, .. } = node.order;
        let gone = qty == node.order.qty;
        if gone {
            self.orders.remove(&order_id);
            if let Some(prev) = node.prev.and_then(|p| self.orders.get_mut(&p)) {
                prev.next = node.next;
            }
            if let Some(next) = node.next.and_then(|n| self.orders.get_mut(&n)) {
                next.prev = node.prev;
            }
        } else if let Some(node) = self.orders.get_mut(&order_id) {
            node.order.qty -= qty;
        }
        let book = self.book_mut(node.locate)?;
        let levels = &mut book.side_mut(side).levels;
        let level = levels.get_mut(&price).ok_or_else(|| FeedBookError(format!("no level {price}")))?;
        let before = level.qty;
        level.qty -= u128::from(qty);
        let after = level.qty;
        if gone {
            if level.head == order_id
                && let Some(next) = node.next
            {
                level.head = next;
            }
            if level.tail == order_id
                && let Some(prev) = node.prev
            {
                level.tail = prev;
            }
        }
        if after == 0 {
            levels.remove(&price);
        }
        Ok(LevelChange { locate: node.locate, side, price, before, after })
    }
}

fn unknown(order_id: u64) -> FeedBookError {
    FeedBookError(format!("order {order_id} is not resting"))
}

/// The `level` updates a subscriber of the best `depth` levels (`None`:
/// all) hears for `change`, with the book as it is right after it:
/// `(side, price, qty, checksum_before)`, where `checksum_before` says the
/// message's checksum is that of the book *before* the change (a level
/// entering the view, sent before the one that left it; see
/// `docs/PROTOCOL.md`).
pub fn view_updates(
    book: &FeedBook,
    change: &LevelChange,
    depth: Option<usize>,
    out: &mut Vec<(Side, u64, u128, bool)>,
) {
    let LevelChange { locate, side, price, before, after } = *change;
    let Some(depth) = depth else {
        out.push((side, price, after, false));
        return;
    };
    // Levels better than this one, as the book stands now.
    if book.rank(locate, side, price, depth) >= depth {
        return;
    }
    match (before > 0, after > 0) {
        (true, true) => out.push((side, price, after, false)),
        (false, true) => {
            out.push((side, price, after, false));
            // The level that was last in view is pushed out.
            if let Some((out_price, _)) = book.nth_level(locate, side, depth) {
                out.push((side, out_price, 0, false));
            }
        }
        (true, false) => {
            // The level that comes into view, then the one that left it.
            if let Some((in_price, in_qty)) = book.nth_level(locate, side, depth - 1) {
                out.push((side, in_price, in_qty, true));
            }
            out.push((side, price, 0, false));
        }
        (false, false) => {}
    }
}
