//! A slow, obviously-correct reference implementation of SPEC.md.
//!
//! It speaks the core's typed vocabulary (`Command` in, `Event` out) but
//! shares none of its machinery: every side of every book is a
//! `BTreeMap<Price, VecDeque<RestingOrder>>` (price levels, FIFO within a
//! level), and a `HashMap` finds a live order's level by id. Lookups inside a
//! level are linear scans, a fill-or-kill feasibility check is a trial run of
//! the real matching loop on a clone of the book, and nothing is
//! preallocated. Slow on purpose: every step should be checkable by reading
//! it against SPEC.md.
//!
//! Written from SPEC.md (matching semantics and validation order) plus the
//! engine's own documented limits, checked after SPEC's steps in this order:
//! `duplicate_order_id` (a new order whose id is a live resting order's id),
//! `too_many_orders` (a `gtc` limit order arriving when `orders_max` orders
//! rest, before any matching), `too_many_symbols` (a new symbol when
//! `symbols_max` books exist). Like the core, a symbol's book is created by
//! the first accepted order for it (or up front for a configured instrument
//! list) and never goes away.
//!
//! Deterministic: the `HashMap` is only ever used for lookups by key, never
//! iterated where the result reaches output.

use std::collections::{BTreeMap, HashMap, VecDeque};

use matching_core::{
    Action, CancelReason, Command, Config, Event, EventKind, NewOrder, OrderId, OrderType, Price, Qty, RejectReason,
    RestingOrder, Seq, Side, Stp, Symbol, Tif, Trade, TradingStatus, UserId, VALUE_MAX,
};

/// A book's key: the symbol's name.
fn name(symbol: &Symbol) -> String {
    symbol.as_str().to_string()
}

/// Is `value` a valid price, quantity or order id (`[1, 2^53 - 1]`)?
fn in_range(value: u64) -> bool {
    (1..=VALUE_MAX).contains(&value)
}

/// Does a taker on `taker_side` with `limit` (`None`: market) accept a maker
/// resting at `maker_price`? A buy takes asks at or below its limit, a sell
/// takes bids at or above it, a market order takes any price.
fn crosses(taker_side: Side, limit: Option<Price>, maker_price: Price) -> bool {
    match limit {
        None => true,
        Some(limit) => match taker_side {
            Side::Buy => maker_price <= limit,
            Side::Sell => maker_price >= limit,
        },
    }
}

/// One side of a book: price to the FIFO of orders resting there
/// (front = oldest). Invariant: no empty FIFO is kept.
type Levels = BTreeMap<Price, VecDeque<RestingOrder>>;

#[derive(Clone, Debug, Default)]
struct Book {
    bids: Levels,
    asks: Levels,
    /// The last trade id given out in this symbol (0 before the first trade).
    last_trade_id: u64,
    /// `halt` sets it, `resume` clears it.
    halted: bool,
}

impl Book {
    fn levels(&self, side: Side) -> &Levels {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn levels_mut(&mut self, side: Side) -> &mut Levels {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    /// The best price of a side: the highest bid, the lowest ask.
    fn best_price(&self, side: Side) -> Option<Price> {
        match side {
            Side::Buy => self.bids.keys().next_back().copied(),
            Side::Sell => self.asks.keys().next().copied(),
        }
    }

    /// Orders of a side in priority order: best price first, oldest first.
    fn orders(&self, side: Side) -> Vec<RestingOrder> {
        let fifo_of_levels: Vec<&VecDeque<RestingOrder>> = match side {
            Side::Buy => self.bids.values().rev().collect(),
            Side::Sell => self.asks.values().collect(),
        };
        fifo_of_levels.into_iter().flat_map(|fifo| fifo.iter().copied()).collect()
    }

    /// Appends an order at the tail of its price level.
    fn push_tail(&mut self, order: RestingOrder) {
        self.levels_mut(order.side).entry(order.price).or_default().push_back(order);
    }

    /// Takes order `id` out of the level at `price` on `side`, dropping the
    /// level if it empties.
    fn take_out(&mut self, side: Side, price: Price, id: OrderId) -> RestingOrder {
        let levels = self.levels_mut(side);
        let fifo = levels.get_mut(&price).expect("reference: indexed order has a level");
        let position = fifo.iter().position(|o| o.order_id == id).expect("reference: indexed order is in its level");
        let order = fifo.remove(position).expect("reference: position is in range");
        if fifo.is_empty() {
            levels.remove(&price);
        }
        order
    }

    fn find(&self, side: Side, price: Price, id: OrderId) -> &RestingOrder {
        let fifo = self.levels(side).get(&price).expect("reference: indexed order has a level");
        fifo.iter().find(|o| o.order_id == id).expect("reference: indexed order is in its level")
    }

    fn find_mut(&mut self, side: Side, price: Price, id: OrderId) -> &mut RestingOrder {
        let fifo = self.levels_mut(side).get_mut(&price).expect("reference: indexed order has a level");
        fifo.iter_mut().find(|o| o.order_id == id).expect("reference: indexed order is in its level")
    }
}

/// The order entering the book as a taker.
struct Taker {
    order_id: OrderId,
    user: UserId,
    side: Side,
    /// `None` for a market order.
    limit: Option<Price>,
    stp: Stp,
}

/// The `cancelled` event of (what is left of) `taker` in `symbol`.
fn taker_cancelled(seq: Seq, symbol: Symbol, taker: &Taker, reason: CancelReason, remaining: Qty) -> Event {
    let (order_id, user, side, price) = (taker.order_id, taker.user, taker.side, taker.limit);
    Event { seq, kind: EventKind::Cancelled { order_id, user, symbol, side, price, reason, remaining } }
}

/// How a taker's pass through the book ended.
#[derive(Debug, PartialEq, Eq)]
enum Pass {
    /// Out of quantity, or out of crossing makers.
    Done,
    /// Self-trade prevention cancelled the taker's remainder.
    TakerCancelled,
}

/// SPEC "Matching": take from the best maker, one at a time, at the maker's
/// price, applying the taker's self-trade prevention. `remaining` ends at
/// the unfilled quantity. Makers that leave the book (filled or STP
/// cancelled) are listed in `gone` so the caller can forget their ids.
fn match_taker(
    book: &mut Book,
    symbol: Symbol,
    seq: Seq,
    taker: &Taker,
    remaining: &mut Qty,
    events: &mut Vec<Event>,
    gone: &mut Vec<OrderId>,
) -> Pass {
    let maker_side = taker.side.opposite();
    while *remaining > 0 {
        let Some(price) = book.best_price(maker_side) else {
            return Pass::Done;
        };
        if !crosses(taker.side, taker.limit, price) {
            return Pass::Done;
        }
        let maker = *book.levels(maker_side)[&price].front().expect("reference: no empty level is kept");
        if maker.user == taker.user && taker.stp != Stp::None {
            let cancel_taker = |remaining: Qty| taker_cancelled(seq, symbol, taker, CancelReason::Stp, remaining);
            if taker.stp == Stp::CancelTaker {
                events.push(cancel_taker(*remaining));
                return Pass::TakerCancelled;
            }
            // cancel_maker and cancel_both cancel the resting order first.
            book.take_out(maker_side, price, maker.order_id);
            gone.push(maker.order_id);
            events.push(Event {
                seq,
                kind: EventKind::Cancelled {
                    order_id: maker.order_id,
                    user: maker.user,
                    symbol,
                    side: maker.side,
                    price: Some(maker.price),
                    reason: CancelReason::Stp,
                    remaining: maker.qty,
                },
            });
            if taker.stp == Stp::CancelBoth {
                events.push(cancel_taker(*remaining));
                return Pass::TakerCancelled;
            }
            continue;
        }
        let fill = (*remaining).min(maker.qty);
        *remaining -= fill;
        let maker_remaining = maker.qty - fill;
        if maker_remaining == 0 {
            book.take_out(maker_side, price, maker.order_id);
            gone.push(maker.order_id);
        } else {
            book.find_mut(maker_side, price, maker.order_id).qty = maker_remaining;
        }
        book.last_trade_id += 1;
        events.push(Event {
            seq,
            kind: EventKind::Trade(Trade {
                symbol,
                trade_id: book.last_trade_id,
                price,
                qty: fill,
                maker_order_id: maker.order_id,
                maker_user: maker.user,
                taker_order_id: taker.order_id,
                taker_user: taker.user,
                taker_side: taker.side,
                maker_remaining,
                taker_remaining: *remaining,
            }),
        });
    }
    Pass::Done
}

/// Where a live order rests.
#[derive(Clone, Copy, Debug)]
struct Location {
    symbol: Symbol,
    side: Side,
    price: Price,
}

/// The reference exchange: books by symbol plus an id index.
#[derive(Clone, Debug)]
pub struct Reference {
    orders_max: usize,
    symbols_max: usize,
    instruments: Option<Vec<Symbol>>,
    /// Keyed by the symbol's name, so books sort in byte order of the
    /// names without relying on `Symbol`'s own ordering.
    books: BTreeMap<String, Book>,
    live: HashMap<OrderId, Location>,
}

impl Reference {
    /// A reference with the limits (and instrument list) of a core `Config`.
    pub fn new(config: &Config) -> Reference {
        let mut books = BTreeMap::new();
        for &symbol in config.instruments.iter().flatten() {
            books.insert(name(&symbol), Book::default());
        }
        Reference {
            orders_max: config.orders_max,
            symbols_max: config.symbols_max,
            instruments: config.instruments.clone(),
            books,
            live: HashMap::new(),
        }
    }

    /// Applies one command and returns its events, in order.
    pub fn process(&mut self, command: &Command) -> Vec<Event> {
        let seq = command.seq;
        let mut events = Vec::new();
        match command.action {
            Action::New(order) => self.new_order(seq, &order, &mut events),
            Action::Cancel { user, order_id } => self.cancel(seq, user, order_id, &mut events),
            Action::Modify { user, order_id, price, qty } => self.modify(seq, user, order_id, price, qty, &mut events),
            Action::MassCancel { user, symbol, side } => self.mass_cancel(seq, user, symbol, side, &mut events),
            Action::Halt { symbol } => self.set_halted(seq, symbol, true, &mut events),
            Action::Resume { symbol } => self.set_halted(seq, symbol, false, &mut events),
        }
        events
    }

    /// SPEC "Mass cancel": every resting order of `user` (in `symbol`, on
    /// `side`, when given), lowest id first, then the count.
    fn mass_cancel(
        &mut self,
        seq: Seq,
        user: UserId,
        symbol: Option<Symbol>,
        side: Option<Side>,
        events: &mut Vec<Event>,
    ) {
        if user > VALUE_MAX {
            return events
                .push(Event { seq, kind: EventKind::Rejected { reason: RejectReason::Malformed, order_id: None } });
        }
        if let Some(symbol) = symbol
            && self.instruments.as_ref().is_some_and(|listed| !listed.contains(&symbol))
        {
            let reason = RejectReason::InvalidSymbol;
            return events.push(Event { seq, kind: EventKind::Rejected { reason, order_id: None } });
        }
        let mut doomed: Vec<(OrderId, String, Side, Price)> = Vec::new();
        for (book_name, book) in &self.books {
            if symbol.is_some_and(|s| name(&s) != *book_name) {
                continue;
            }
            for s in [Side::Buy, Side::Sell] {
                if side.is_some_and(|wanted| wanted != s) {
                    continue;
                }
                for order in book.orders(s) {
                    if order.user == user {
                        doomed.push((order.order_id, book_name.clone(), s, order.price));
                    }
                }
            }
        }
        doomed.sort_unstable_by_key(|&(id, ..)| id);
        for (order_id, book_name, s, price) in &doomed {
            let order = self.books.get_mut(book_name).expect("reference: found book").take_out(*s, *price, *order_id);
            self.live.remove(order_id);
            events.push(Event {
                seq,
                kind: EventKind::Cancelled {
                    order_id: *order_id,
                    user,
                    symbol: Symbol::new(book_name).expect("reference: book names are valid symbols"),
                    side: *s,
                    price: Some(*price),
                    reason: CancelReason::Mass,
                    remaining: order.qty,
                },
            });
        }
        events.push(Event { seq, kind: EventKind::MassCancelled { user, count: doomed.len() as u64 } });
    }

    /// SPEC "trading status": `halt`/`resume`, answered with the status even
    /// when it does not change; a symbol with no book gets one.
    fn set_halted(&mut self, seq: Seq, symbol: Symbol, halted: bool, events: &mut Vec<Event>) {
        let reject = |reason| Event { seq, kind: EventKind::Rejected { reason, order_id: None } };
        if self.instruments.as_ref().is_some_and(|listed| !listed.contains(&symbol)) {
            return events.push(reject(RejectReason::InvalidSymbol));
        }
        if !self.books.contains_key(&name(&symbol)) && self.books.len() >= self.symbols_max {
            return events.push(reject(RejectReason::TooManySymbols));
        }
        self.books.entry(name(&symbol)).or_default().halted = halted;
        let status = if halted { TradingStatus::Halted } else { TradingStatus::Open };
        events.push(Event { seq, kind: EventKind::Status { symbol, status } });
    }

    /// SPEC "Validation" for a new order, then the engine's limits.
    fn check_new(&self, o: &NewOrder) -> Result<(), RejectReason> {
        // 1. malformed
        if o.user > VALUE_MAX || !in_range(o.order_id) {
            return Err(RejectReason::Malformed);
        }
        // 2. invalid_symbol (only with a fixed instrument list; typed symbols
        //    always match the pattern)
        if self.instruments.as_ref().is_some_and(|listed| !listed.contains(&o.symbol)) {
            return Err(RejectReason::InvalidSymbol);
        }
        // 3. invalid_tif
        let is_limit = o.order_type == OrderType::Limit;
        if o.order_type == OrderType::Market && o.tif == Tif::Gtc {
            return Err(RejectReason::InvalidTif);
        }
        if o.post_only && !(is_limit && o.tif == Tif::Gtc) {
            return Err(RejectReason::InvalidTif);
        }
        // 4. invalid_price
        let price_ok = match o.order_type {
            OrderType::Limit => o.price.is_some_and(in_range),
            OrderType::Market => o.price.is_none(),
        };
        if !price_ok {
            return Err(RejectReason::InvalidPrice);
        }
        // 5. invalid_qty
        if !in_range(o.qty) {
            return Err(RejectReason::InvalidQty);
        }
        // 7. halted (6 is for cancel/modify only)
        if self.books.get(&name(&o.symbol)).is_some_and(|book| book.halted) {
            return Err(RejectReason::Halted);
        }
        // 8. would_take
        if o.post_only
            && let (Some(book), Some(price)) = (self.books.get(&name(&o.symbol)), o.price)
            && book.best_price(o.side.opposite()).is_some_and(|best| crosses(o.side, Some(price), best))
        {
            return Err(RejectReason::WouldTake);
        }
        // The engine's limits.
        if self.live.contains_key(&o.order_id) {
            return Err(RejectReason::DuplicateOrderId);
        }
        if is_limit && o.tif == Tif::Gtc && self.live.len() >= self.orders_max {
            return Err(RejectReason::TooManyOrders);
        }
        if !self.books.contains_key(&name(&o.symbol)) && self.books.len() >= self.symbols_max {
            return Err(RejectReason::TooManySymbols);
        }
        Ok(())
    }

    fn new_order(&mut self, seq: Seq, o: &NewOrder, events: &mut Vec<Event>) {
        if let Err(reason) = self.check_new(o) {
            events.push(Event { seq, kind: EventKind::Rejected { reason, order_id: None } });
            return;
        }
        events.push(Event {
            seq,
            kind: EventKind::Accepted {
                order_id: o.order_id,
                user: o.user,
                symbol: o.symbol,
                side: o.side,
                order_type: o.order_type,
                tif: o.tif,
                qty: o.qty,
                price: o.price,
            },
        });
        let book = self.books.entry(name(&o.symbol)).or_default();
        let taker = Taker { order_id: o.order_id, user: o.user, side: o.side, limit: o.price, stp: o.stp };
        if o.tif == Tif::Fok {
            // Feasibility: run the very matching loop on a throw-away copy.
            let mut trial = book.clone();
            let mut trial_remaining = o.qty;
            let pass =
                match_taker(&mut trial, o.symbol, seq, &taker, &mut trial_remaining, &mut Vec::new(), &mut Vec::new());
            if pass == Pass::TakerCancelled || trial_remaining > 0 {
                events.push(taker_cancelled(seq, o.symbol, &taker, CancelReason::Fok, o.qty));
                return;
            }
        }
        let mut remaining = o.qty;
        let mut gone = Vec::new();
        let pass = match_taker(book, o.symbol, seq, &taker, &mut remaining, events, &mut gone);
        for id in gone {
            self.live.remove(&id);
        }
        if pass == Pass::TakerCancelled || remaining == 0 {
            return;
        }
        match (o.tif, o.price) {
            (Tif::Gtc, Some(price)) => {
                book.push_tail(RestingOrder {
                    order_id: o.order_id,
                    user: o.user,
                    side: o.side,
                    price,
                    qty: remaining,
                    post_only: o.post_only,
                    stp: o.stp,
                });
                self.live.insert(o.order_id, Location { symbol: o.symbol, side: o.side, price });
            }
            (tif, _) => {
                assert_ne!(tif, Tif::Fok, "reference: a feasible fok order fills completely");
                events.push(taker_cancelled(seq, o.symbol, &taker, CancelReason::Ioc, remaining));
            }
        }
    }

    /// The location of a live order of `user` (SPEC step 6: another user's
    /// order is as unknown as one that never existed).
    fn owned(&self, user: UserId, order_id: OrderId) -> Option<Location> {
        let location = *self.live.get(&order_id)?;
        let order = self.books[&name(&location.symbol)].find(location.side, location.price, order_id);
        (order.user == user).then_some(location)
    }

    fn cancel(&mut self, seq: Seq, user: UserId, order_id: OrderId, events: &mut Vec<Event>) {
        let reject = |reason| Event { seq, kind: EventKind::Rejected { reason, order_id: Some(order_id) } };
        if user > VALUE_MAX || !in_range(order_id) {
            return events.push(reject(RejectReason::Malformed));
        }
        let Some(at) = self.owned(user, order_id) else {
            return events.push(reject(RejectReason::UnknownOrder));
        };
        let order = self
            .books
            .get_mut(&name(&at.symbol))
            .expect("reference: located book")
            .take_out(at.side, at.price, order_id);
        self.live.remove(&order_id);
        events.push(Event {
            seq,
            kind: EventKind::Cancelled {
                order_id,
                user,
                symbol: at.symbol,
                side: at.side,
                price: Some(at.price),
                reason: CancelReason::User,
                remaining: order.qty,
            },
        });
    }

    fn modify(
        &mut self,
        seq: Seq,
        user: UserId,
        order_id: OrderId,
        price: Option<Price>,
        qty: Option<Qty>,
        events: &mut Vec<Event>,
    ) {
        let reject = |reason| Event { seq, kind: EventKind::Rejected { reason, order_id: Some(order_id) } };
        if user > VALUE_MAX || !in_range(order_id) || (price.is_none() && qty.is_none()) {
            return events.push(reject(RejectReason::Malformed));
        }
        if price.is_some_and(|p| !in_range(p)) {
            return events.push(reject(RejectReason::InvalidPrice));
        }
        if qty.is_some_and(|q| !in_range(q)) {
            return events.push(reject(RejectReason::InvalidQty));
        }
        let Some(at) = self.owned(user, order_id) else {
            return events.push(reject(RejectReason::UnknownOrder));
        };
        let book = self.books.get_mut(&name(&at.symbol)).expect("reference: located book");
        let order = *book.find(at.side, at.price, order_id);
        let new_price = price.unwrap_or(order.price);
        let new_qty = qty.unwrap_or(order.qty);
        if book.halted {
            return events.push(reject(RejectReason::Halted));
        }
        if order.post_only
            && book.best_price(order.side.opposite()).is_some_and(|best| crosses(order.side, Some(new_price), best))
        {
            return events.push(reject(RejectReason::WouldTake));
        }
        let (symbol, side) = (at.symbol, order.side);
        events.push(Event {
            seq,
            kind: EventKind::Modified { order_id, user, symbol, side, price: new_price, qty: new_qty },
        });
        if new_price == order.price && new_qty <= order.qty {
            // Reduced in place: keeps its place in the queue.
            book.find_mut(at.side, at.price, order_id).qty = new_qty;
            return;
        }
        // Out, then in again like a new gtc order of the same id.
        book.take_out(at.side, at.price, order_id);
        self.live.remove(&order_id);
        let taker = Taker { order_id, user, side: order.side, limit: Some(new_price), stp: order.stp };
        let mut remaining = new_qty;
        let mut gone = Vec::new();
        let pass = match_taker(book, at.symbol, seq, &taker, &mut remaining, events, &mut gone);
        for id in gone {
            self.live.remove(&id);
        }
        if pass == Pass::Done && remaining > 0 {
            book.push_tail(RestingOrder { price: new_price, qty: remaining, ..order });
            self.live.insert(order_id, Location { symbol: at.symbol, side: order.side, price: new_price });
        }
    }

    // ----- queries -----

    /// Every symbol with a book, in byte order of the names.
    pub fn symbols(&self) -> Vec<Symbol> {
        self.books.keys().map(|n| Symbol::new(n).expect("reference: book names are valid symbols")).collect()
    }

    /// Resting orders of a side in priority order (empty for an unknown symbol).
    pub fn orders(&self, symbol: &Symbol, side: Side) -> Vec<RestingOrder> {
        self.books.get(&name(symbol)).map(|b| b.orders(side)).unwrap_or_default()
    }

    /// Levels of a side, best first: `(price, total quantity, order count)`.
    pub fn depth(&self, symbol: &Symbol, side: Side) -> Vec<(Price, u128, u32)> {
        let Some(book) = self.books.get(&name(symbol)) else {
            return Vec::new();
        };
        let level = |(&price, fifo): (&Price, &VecDeque<RestingOrder>)| {
            (price, fifo.iter().map(|o| o.qty as u128).sum::<u128>(), fifo.len() as u32)
        };
        match side {
            Side::Buy => book.bids.iter().rev().map(level).collect(),
            Side::Sell => book.asks.iter().map(level).collect(),
        }
    }

    pub fn last_trade_id(&self, symbol: &Symbol) -> Option<u64> {
        self.books.get(&name(symbol)).map(|b| b.last_trade_id)
    }

    /// Whether a symbol is halted (`None`: it has no book).
    pub fn halted(&self, symbol: &Symbol) -> Option<bool> {
        self.books.get(&name(symbol)).map(|b| b.halted)
    }

    /// Number of resting orders over all books.
    pub fn order_count(&self) -> usize {
        self.live.len()
    }

    /// A live order by id, with its symbol.
    pub fn order(&self, order_id: OrderId) -> Option<(Symbol, RestingOrder)> {
        let at = self.live.get(&order_id)?;
        Some((at.symbol, *self.books[&name(&at.symbol)].find(at.side, at.price, order_id)))
    }

    /// Ids of every live order, ascending.
    pub fn live_ids(&self) -> Vec<OrderId> {
        let mut ids: Vec<OrderId> = self.live.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The reference's own invariants: no empty level, every order on the
    /// side and at the price of its level with a quantity in range, the id
    /// index exactly the resting orders, no crossed book.
    pub fn check(&self) -> Result<(), String> {
        let mut resting = 0;
        for (symbol, book) in &self.books {
            for side in [Side::Buy, Side::Sell] {
                for (&price, fifo) in book.levels(side) {
                    if fifo.is_empty() {
                        return Err(format!("{symbol} {side:?}: empty level {price}"));
                    }
                    for o in fifo {
                        if o.side != side || o.price != price || !in_range(o.qty) {
                            return Err(format!("{symbol}: order {} misplaced: {o:?}", o.order_id));
                        }
                        match self.live.get(&o.order_id) {
                            Some(at) if name(&at.symbol) == *symbol && at.side == side && at.price == price => {}
                            other => return Err(format!("{symbol}: order {} indexed as {other:?}", o.order_id)),
                        }
                        resting += 1;
                    }
                }
            }
            if let (Some(bid), Some(ask)) = (book.best_price(Side::Buy), book.best_price(Side::Sell))
                && bid >= ask
            {
                return Err(format!("{symbol}: crossed, bid {bid} >= ask {ask}"));
            }
        }
        if resting != self.live.len() {
            return Err(format!("{resting} orders in books, {} indexed", self.live.len()));
        }
        Ok(())
    }

    /// The state in the layout `matching_core`'s snapshot module documents
    /// ("MXST", version 2, books in symbol byte order, each with its last
    /// trade id, its trading status and its bids then asks in priority
    /// order), written here from that description so the core's encoding
    /// can be checked byte for byte.
    pub fn encode_state(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"MXST");
        out.extend_from_slice(&2u32.to_le_bytes());
        out.extend_from_slice(&(self.books.len() as u64).to_le_bytes());
        for (symbol, book) in &self.books {
            out.push(symbol.len() as u8);
            out.extend_from_slice(symbol.as_bytes());
            out.extend_from_slice(&book.last_trade_id.to_le_bytes());
            out.push(book.halted as u8);
            for side in [Side::Buy, Side::Sell] {
                let orders = book.orders(side);
                out.extend_from_slice(&(orders.len() as u64).to_le_bytes());
                for o in orders {
                    out.extend_from_slice(&o.order_id.to_le_bytes());
                    out.extend_from_slice(&o.user.to_le_bytes());
                    out.extend_from_slice(&o.price.to_le_bytes());
                    out.extend_from_slice(&o.qty.to_le_bytes());
                    out.push(match o.stp {
                        Stp::None => 0,
                        Stp::CancelTaker => 1,
                        Stp::CancelMaker => 2,
                        Stp::CancelBoth => 3,
                    });
                    out.push(o.post_only as u8);
                }
            }
        }
        out
    }
}
