//! [`Exchange`]: the books of many symbols over one order arena, driven by
//! typed commands. This is the unit a shard owns; it is single-threaded and
//! deterministic: the same commands always give the same events and state.

use rustc_hash::FxHashMap;

use crate::book::{Book, TakeOutcome, Taker};
use crate::levels::PriceLevels;
use crate::orders::{Orders, Slot};
use crate::radix::RadixLevels;
use crate::types::*;

/// Limits and preallocation. Every limit is enforced with a rejection, never
/// an unbounded allocation.
#[derive(Clone, Debug)]
pub struct Config {
    /// Most resting orders over all books. A `gtc` limit order that arrives
    /// when this many rest is rejected with `too_many_orders`.
    pub orders_max: usize,
    /// Order slots (and id index entries) allocated up front.
    pub orders_preallocated: usize,
    /// Most symbols (books). An order for a new symbol beyond it is rejected
    /// with `too_many_symbols`.
    pub symbols_max: usize,
    /// Level slots reserved per side when a book is created.
    pub levels_preallocated: usize,
    /// `Some(list)`: the only symbols traded; their books exist from the
    /// start and any other symbol is rejected with `invalid_symbol` (an
    /// empty list trades nothing). `None`: a symbol's book is created by its
    /// first order.
    pub instruments: Option<Vec<Symbol>>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            orders_max: 10_000_000,
            orders_preallocated: 1 << 16,
            symbols_max: 100_000,
            levels_preallocated: 0,
            instruments: None,
        }
    }
}

/// The order books of many symbols. Generic over the level structure
/// (see [`crate::levels`]); the default is the measured winner.
#[derive(Clone)]
pub struct Exchange<L: PriceLevels = RadixLevels> {
    pub(crate) config: Config,
    pub(crate) orders: Orders,
    pub(crate) books: Vec<Book<L>>,
    pub(crate) book_by_symbol: FxHashMap<Symbol, u32>,
    /// The book most recently looked up by symbol: flow is skewed to a few
    /// symbols, and a 33-byte compare is cheaper than hashing the name.
    recent_book: Option<(Symbol, u32)>,
    /// The orders a mass cancel collects, to sort by id. Kept between
    /// commands so that, once grown, a mass cancel allocates nothing.
    mass_scratch: Vec<(OrderId, u32)>,
    /// Resting orders mass cancels have stepped through so far: how a test
    /// shows that a mass cancel costs what it cancels.
    mass_visited: u64,
}

#[inline]
fn in_range(value: u64) -> bool {
    (1..=VALUE_MAX).contains(&value)
}

impl<L: PriceLevels> Default for Exchange<L> {
    fn default() -> Self {
        Exchange::with_levels(Config::default())
    }
}

impl Exchange {
    /// An exchange with the default level structure ([`RadixLevels`]): the
    /// type needs no annotation. [`Exchange::with_levels`] picks another.
    pub fn new(config: Config) -> Exchange {
        Exchange::with_levels(config)
    }
}

impl<L: PriceLevels> Exchange<L> {
    /// An exchange whose books keep their price levels in `L`
    /// (`Exchange::<BTreeLevels>::with_levels(config)`).
    pub fn with_levels(config: Config) -> Self {
        let mut exchange = Exchange {
            orders: Orders::new(config.orders_max, config.orders_preallocated),
            books: Vec::new(),
            book_by_symbol: FxHashMap::default(),
            recent_book: None,
            mass_scratch: Vec::new(),
            mass_visited: 0,
            config,
        };
        for symbol in exchange.config.instruments.clone().unwrap_or_default() {
            if !exchange.book_by_symbol.contains_key(&symbol) {
                exchange.create_book(symbol);
            }
        }
        exchange
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn create_book(&mut self, symbol: Symbol) -> u32 {
        let index = self.books.len() as u32;
        self.books.push(Book::new(symbol, self.config.levels_preallocated));
        self.book_by_symbol.insert(symbol, index);
        index
    }

    /// Applies one command, writing its events to `sink` in order.
    ///
    /// A rejected command produces exactly one `rejected` event and changes nothing.
    #[inline]
    pub fn process<S: EventSink + ?Sized>(&mut self, command: &Command, sink: &mut S) {
        let seq = command.seq;
        match command.action {
            Action::New(ref order) => self.new_order(seq, order, sink),
            Action::Cancel { user, order_id } => self.cancel(seq, user, order_id, sink),
            Action::Modify { user, order_id, price, qty } => self.modify(seq, user, order_id, price, qty, sink),
            Action::MassCancel { user, symbol, side } => self.mass_cancel(seq, user, symbol, side, sink),
            Action::Halt { symbol } => self.set_status(seq, symbol, TradingStatus::Halted, sink),
            Action::Resume { symbol } => self.set_status(seq, symbol, TradingStatus::Open, sink),
        }
    }

    /// Applies commands in order.
    pub fn process_all<'a, S: EventSink + ?Sized>(
        &mut self,
        commands: impl IntoIterator<Item = &'a Command>,
        sink: &mut S,
    ) {
        for command in commands {
            self.process(command, sink);
        }
    }

    /// The index of a symbol's book, if it has one.
    #[inline(always)]
    fn find_book(&mut self, symbol: &Symbol) -> Option<u32> {
        if let Some((recent, index)) = self.recent_book
            && recent == *symbol
        {
            return Some(index);
        }
        let index = self.book_by_symbol.get(symbol).copied()?;
        self.recent_book = Some((*symbol, index));
        Some(index)
    }

    /// SPEC's validation steps 1 to 5 for a new order, plus this engine's
    /// own limits; `Ok` carries the book index when the book exists.
    #[inline]
    fn check_new(&mut self, order: &NewOrder) -> Result<Option<u32>, RejectReason> {
        if order.user > VALUE_MAX || !in_range(order.order_id) {
            return Err(RejectReason::Malformed);
        }
        let book = self.find_book(&order.symbol);
        if book.is_none() && self.config.instruments.is_some() {
            return Err(RejectReason::InvalidSymbol);
        }
        let limit = order.order_type == OrderType::Limit;
        let limit_gtc = limit && order.tif == Tif::Gtc;
        let market_gtc = !limit && order.tif == Tif::Gtc;
        if market_gtc || (order.post_only && !limit_gtc) {
            return Err(RejectReason::InvalidTif);
        }
        match (limit, order.price) {
            (true, Some(price)) if in_range(price) => {}
            (false, None) => {}
            _ => return Err(RejectReason::InvalidPrice),
        }
        if !in_range(order.qty) {
            return Err(RejectReason::InvalidQty);
        }
        if let Some(b) = book
            && self.books[b as usize].status == TradingStatus::Halted
        {
            return Err(RejectReason::Halted);
        }
        if order.post_only
            && let (Some(b), Some(price)) = (book, order.price)
            && self.books[b as usize].would_take(order.side, price)
        {
            return Err(RejectReason::WouldTake);
        }
        if self.orders.contains(order.order_id) {
            return Err(RejectReason::DuplicateOrderId);
        }
        if limit_gtc && self.orders.is_full() {
            return Err(RejectReason::TooManyOrders);
        }
        if book.is_none() && self.books.len() >= self.config.symbols_max {
            return Err(RejectReason::TooManySymbols);
        }
        Ok(book)
    }

    fn new_order<S: EventSink + ?Sized>(&mut self, seq: Seq, order: &NewOrder, sink: &mut S) {
        let book_ix = match self.check_new(order) {
            Ok(Some(book_ix)) => book_ix,
            Ok(None) => self.create_book(order.symbol),
            Err(reason) => {
                sink.event(&Event::rejected(seq, reason, None));
                return;
            }
        };
        sink.event(&Event {
            seq,
            kind: EventKind::Accepted {
                order_id: order.order_id,
                user: order.user,
                symbol: order.symbol,
                side: order.side,
                order_type: order.order_type,
                tif: order.tif,
                qty: order.qty,
                price: order.price,
            },
        });
        let book = &mut self.books[book_ix as usize];
        let taker =
            Taker { order_id: order.order_id, user: order.user, side: order.side, limit: order.price, stp: order.stp };
        let mut remaining = order.qty;
        if order.tif == Tif::Fok && !book.can_fill(&self.orders, &taker, remaining) {
            sink.event(&book.taker_cancelled(seq, &taker, CancelReason::Fok, remaining));
            return;
        }
        if book.take(&mut self.orders, seq, &taker, &mut remaining, sink) == TakeOutcome::TakerCancelled
            || remaining == 0
        {
            return;
        }
        match (order.tif, order.price) {
            (Tif::Gtc, Some(price)) => {
                let slot = Slot::resting_order(
                    order.order_id,
                    order.user,
                    book_ix,
                    order.side,
                    price,
                    remaining,
                    order.stp,
                    order.post_only,
                );
                // check_new made sure there is room for a gtc order.
                let Some(oi) = self.orders.insert(slot) else {
                    unreachable!("Invariant: check_new reserved a slot for a gtc order")
                };
                book.link_tail(&mut self.orders, oi);
            }
            (tif, _) => {
                debug_assert!(tif != Tif::Fok, "Invariant: a feasible fok order fills completely");
                sink.event(&book.taker_cancelled(seq, &taker, CancelReason::Ioc, remaining));
            }
        }
    }

    /// The slot of `order_id` if it is resting and belongs to `user`.
    #[inline]
    fn owned(&self, user: UserId, order_id: OrderId) -> Option<u32> {
        self.orders.find(order_id).filter(|&oi| self.orders.slots[oi as usize].user == user)
    }

    fn cancel<S: EventSink + ?Sized>(&mut self, seq: Seq, user: UserId, order_id: OrderId, sink: &mut S) {
        let reject = |reason| Event::rejected(seq, reason, Some(order_id));
        if user > VALUE_MAX || !in_range(order_id) {
            return sink.event(&reject(RejectReason::Malformed));
        }
        let Some(oi) = self.orders.unindex_owned(order_id, user) else {
            return sink.event(&reject(RejectReason::UnknownOrder));
        };
        let slot = self.orders.slots[oi as usize];
        self.books[slot.book as usize].remove(&mut self.orders, oi);
        self.orders.free_slot(oi);
        sink.event(&self.books[slot.book as usize].resting_cancelled(seq, &slot, CancelReason::User));
    }

    fn modify<S: EventSink + ?Sized>(
        &mut self,
        seq: Seq,
        user: UserId,
        order_id: OrderId,
        price: Option<Price>,
        qty: Option<Qty>,
        sink: &mut S,
    ) {
        let reject = |reason| Event::rejected(seq, reason, Some(order_id));
        if user > VALUE_MAX || !in_range(order_id) || (price.is_none() && qty.is_none()) {
            return sink.event(&reject(RejectReason::Malformed));
        }
        if price.is_some_and(|p| !in_range(p)) {
            return sink.event(&reject(RejectReason::InvalidPrice));
        }
        if qty.is_some_and(|q| !in_range(q)) {
            return sink.event(&reject(RejectReason::InvalidQty));
        }
        let Some(oi) = self.owned(user, order_id) else {
            return sink.event(&reject(RejectReason::UnknownOrder));
        };
        let slot = self.orders.slots[oi as usize];
        let new_price = price.unwrap_or(slot.price);
        let new_qty = qty.unwrap_or(slot.remaining);
        let book = &mut self.books[slot.book as usize];
        if book.status == TradingStatus::Halted {
            return sink.event(&reject(RejectReason::Halted));
        }
        if slot.post_only && book.would_take(slot.side, new_price) {
            return sink.event(&reject(RejectReason::WouldTake));
        }
        let (symbol, side) = (book.symbol, slot.side);
        sink.event(&Event {
            seq,
            kind: EventKind::Modified { order_id, user, symbol, side, price: new_price, qty: new_qty },
        });
        if new_price == slot.price && new_qty <= slot.remaining {
            book.reduce(&mut self.orders, oi, new_qty);
            return;
        }
        // Out of the book, then in again like a new gtc order of the same id.
        // The slot and its id stay reserved while it matches as a taker.
        book.remove(&mut self.orders, oi);
        let taker = Taker { order_id, user, side: slot.side, limit: Some(new_price), stp: slot.stp };
        let mut remaining = new_qty;
        let outcome = book.take(&mut self.orders, seq, &taker, &mut remaining, sink);
        if outcome == TakeOutcome::Done && remaining > 0 {
            let s = &mut self.orders.slots[oi as usize];
            s.price = new_price;
            s.remaining = remaining;
            book.link_tail(&mut self.orders, oi);
        } else {
            self.orders.release(oi);
        }
    }

    /// Cancels `user`'s resting orders (in `symbol`, on `side`, when given),
    /// lowest order id first, then reports how many. Visits only the
    /// orders it cancels (the user's owner lists), then sorts them by id.
    /// Kept out of line: rare, and inlined it would crowd the hot commands
    /// out of `process`.
    #[inline(never)]
    fn mass_cancel<S: EventSink + ?Sized>(
        &mut self,
        seq: Seq,
        user: UserId,
        symbol: Option<Symbol>,
        side: Option<Side>,
        sink: &mut S,
    ) {
        if user > VALUE_MAX {
            return sink.event(&Event::rejected(seq, RejectReason::Malformed, None));
        }
        let book = match symbol {
            None => None,
            Some(symbol) => match self.find_book(&symbol) {
                Some(book) => Some(book),
                None if self.config.instruments.is_some() => {
                    return sink.event(&Event::rejected(seq, RejectReason::InvalidSymbol, None));
                }
                // A valid symbol with no book: nothing rests there.
                None => return sink.event(&Event { seq, kind: EventKind::MassCancelled { user, count: 0 } }),
            },
        };
        self.orders.link_pending_owners();
        let mut victims = std::mem::take(&mut self.mass_scratch);
        victims.clear();
        self.mass_visited += self.orders.collect_owned(user, book, side, &mut victims);
        victims.sort_unstable_by_key(|&(order_id, _)| order_id);
        for &(_, oi) in &victims {
            let slot = self.orders.slots[oi as usize];
            self.books[slot.book as usize].remove(&mut self.orders, oi);
            self.orders.release(oi);
            sink.event(&self.books[slot.book as usize].resting_cancelled(seq, &slot, CancelReason::Mass));
        }
        let count = victims.len() as u64;
        self.mass_scratch = victims;
        sink.event(&Event { seq, kind: EventKind::MassCancelled { user, count } });
    }

    /// `halt` / `resume`: sets the symbol's trading status (creating its
    /// book if it has none, so that its first orders meet the status) and
    /// answers with a `status` event, even when nothing changed.
    #[inline(never)]
    fn set_status<S: EventSink + ?Sized>(&mut self, seq: Seq, symbol: Symbol, status: TradingStatus, sink: &mut S) {
        let book = match self.find_book(&symbol) {
            Some(book) => book,
            None if self.config.instruments.is_some() => {
                return sink.event(&Event::rejected(seq, RejectReason::InvalidSymbol, None));
            }
            None if self.books.len() >= self.config.symbols_max => {
                return sink.event(&Event::rejected(seq, RejectReason::TooManySymbols, None));
            }
            None => self.create_book(symbol),
        };
        self.books[book as usize].status = status;
        sink.event(&Event { seq, kind: EventKind::Status { symbol, status } });
    }

    // ----- queries -----

    /// Resting orders that mass cancels have stepped through so far: a test
    /// compares it with what they cancelled.
    pub fn mass_cancel_visits(&self) -> u64 {
        self.mass_visited
    }

    /// A read-only view of one symbol's book.
    pub fn book(&self, symbol: &Symbol) -> Option<BookView<'_, L>> {
        let index = *self.book_by_symbol.get(symbol)?;
        Some(BookView { book: &self.books[index as usize], orders: &self.orders })
    }

    /// Every symbol that has a book, in byte order of the names.
    pub fn symbols(&self) -> Vec<Symbol> {
        let mut symbols: Vec<Symbol> = self.books.iter().map(|b| b.symbol).collect();
        symbols.sort_unstable();
        symbols
    }

    /// A resting order by id, with its symbol.
    pub fn order(&self, order_id: OrderId) -> Option<(Symbol, RestingOrder)> {
        let slot = &self.orders.slots[self.orders.find(order_id)? as usize];
        Some((self.books[slot.book as usize].symbol, slot.resting()))
    }

    /// Number of resting orders over all books.
    pub fn order_count(&self) -> usize {
        self.orders.len()
    }

    /// Checks every invariant of the books and the arena: levels ordered and
    /// non-empty, level totals and counts equal to their orders, FIFO links
    /// consistent, no book crossed, the id index and the books agree.
    /// Meant for tests (it walks everything); returns the first violation.
    pub fn validate(&self) -> Result<(), String> {
        self.orders.validate()?;
        if self.book_by_symbol.len() != self.books.len() {
            return Err("symbol index and books differ in size".to_string());
        }
        let mut resting = 0;
        for (i, book) in self.books.iter().enumerate() {
            if self.book_by_symbol.get(&book.symbol) != Some(&(i as u32)) {
                return Err(format!("symbol index does not point at book {}", book.symbol));
            }
            resting += book.validate(i as u32, &self.orders)?;
        }
        if resting != self.orders.len() {
            return Err(format!("{resting} orders in books, {} in the arena", self.orders.len()));
        }
        Ok(())
    }
}

/// A read-only view of one symbol's book.
pub struct BookView<'a, L: PriceLevels> {
    book: &'a Book<L>,
    orders: &'a Orders,
}

impl<'a, L: PriceLevels> BookView<'a, L> {
    pub fn symbol(&self) -> Symbol {
        self.book.symbol
    }

    /// Highest bid price and the total quantity there.
    pub fn best_bid(&self) -> Option<(Price, u128)> {
        self.book.best(Side::Buy)
    }

    /// Lowest ask price and the total quantity there.
    pub fn best_ask(&self) -> Option<(Price, u128)> {
        self.book.best(Side::Sell)
    }

    /// Total resting quantity at `price` on `side`.
    pub fn qty_at(&self, side: Side, price: Price) -> u128 {
        self.book.qty_at(side, price)
    }

    /// Price levels of a side, best first: `(price, total quantity, order count)`.
    pub fn depth(&self, side: Side) -> impl Iterator<Item = (Price, u128, u32)> + 'a {
        self.book.depth(side)
    }

    /// Resting orders of a side in priority order: best price first, oldest first within a price.
    pub fn orders(&self, side: Side) -> impl Iterator<Item = RestingOrder> + 'a {
        self.book.orders(self.orders, side)
    }

    /// The last trade id given out in this symbol (0 before the first trade).
    pub fn last_trade_id(&self) -> u64 {
        self.book.last_trade_id
    }

    /// Whether the symbol trades or is halted.
    pub fn status(&self) -> TradingStatus {
        self.book.status
    }
}
