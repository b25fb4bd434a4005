//! The vocabulary of the core: typed commands in, typed events out.
//!
//! Nothing here parses text. A command arrives already typed (the JSON and
//! binary codecs live in `matching-proto`); its values may still be out of
//! range, and the core checks them in the order SPEC gives.

use std::fmt;

/// A price in integer ticks, in `[1, VALUE_MAX]`.
pub type Price = u64;
/// A quantity in integer lots, in `[1, VALUE_MAX]`.
pub type Qty = u64;
/// An order id, given by the caller (the sequencer; in `replay` the `seq`).
/// Ids need be neither dense nor increasing, only unique among live orders.
pub type OrderId = u64;
/// A user (account) id, in `[0, VALUE_MAX]`.
pub type UserId = u64;
/// The global sequence number of a command.
pub type Seq = u64;

/// The largest price, quantity, user or order id: `2^53 - 1`, so a JSON
/// client in any language keeps every value exact.
pub const VALUE_MAX: u64 = (1 << 53) - 1;

/// Longest symbol, in bytes.
pub const SYMBOL_LEN_MAX: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderType {
    Limit,
    Market,
}

impl OrderType {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::Limit => "limit",
            OrderType::Market => "market",
        }
    }
}

/// Time in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tif {
    /// Good till cancelled: a limit remainder rests.
    Gtc,
    /// Immediate or cancel: the remainder is cancelled (reason `ioc`).
    Ioc,
    /// Fill or kill: fills completely at once or not at all (reason `fok`).
    Fok,
}

impl Tif {
    pub fn as_str(self) -> &'static str {
        match self {
            Tif::Gtc => "gtc",
            Tif::Ioc => "ioc",
            Tif::Fok => "fok",
        }
    }
}

/// Self-trade prevention mode, applied with the **taker's** mode when the
/// next maker in priority belongs to the same user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Stp {
    /// A user may trade with itself.
    #[default]
    None,
    /// Cancel the taker's remainder and stop.
    CancelTaker,
    /// Cancel the resting order and go on matching.
    CancelMaker,
    /// Cancel the maker, then the taker, and stop.
    CancelBoth,
}

impl Stp {
    pub fn as_str(self) -> &'static str {
        match self {
            Stp::None => "none",
            Stp::CancelTaker => "cancel_taker",
            Stp::CancelMaker => "cancel_maker",
            Stp::CancelBoth => "cancel_both",
        }
    }
}

/// An instrument name matching `^[A-Za-z0-9._/-]{1,32}$`, stored inline
/// (no heap) so commands and events are `Copy` and cross threads freely.
///
/// Invariant: `len` is in `1..=32`, `bytes[..len]` match the pattern and
/// `bytes[len..]` are zero, so derived equality and hashing are exact.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Symbol {
    len: u8,
    bytes: [u8; SYMBOL_LEN_MAX],
}

impl Symbol {
    /// Returns `None` unless `name` matches `^[A-Za-z0-9._/-]{1,32}$`.
    pub fn new(name: &str) -> Option<Symbol> {
        Symbol::from_bytes(name.as_bytes())
    }

    /// As [`Symbol::new`], from bytes.
    pub fn from_bytes(name: &[u8]) -> Option<Symbol> {
        if name.is_empty() || name.len() > SYMBOL_LEN_MAX {
            return None;
        }
        if !name.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-')) {
            return None;
        }
        let mut bytes = [0u8; SYMBOL_LEN_MAX];
        bytes[..name.len()].copy_from_slice(name);
        Some(Symbol { len: name.len() as u8, bytes })
    }

    pub fn as_str(&self) -> &str {
        // The constructor admits ASCII only, so this cannot fail; fall back to
        // "" rather than panic should the invariant ever break.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl Ord for Symbol {
    /// Byte order of the names (what `replay --book` sorts by).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl PartialOrd for Symbol {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Symbol({:?})", self.as_str())
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A new order. `tif` is explicit here: the codecs apply SPEC's defaults
/// (`gtc` for limit, `ioc` for market).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewOrder {
    pub order_id: OrderId,
    pub user: UserId,
    pub symbol: Symbol,
    pub side: Side,
    pub order_type: OrderType,
    /// `Some` for a limit order. A codec that read a price that is not an
    /// integer in range passes `Some(0)`, which the core rejects with
    /// `invalid_price` at the right point of the validation order.
    pub price: Option<Price>,
    /// A codec that read a quantity that is missing or not an integer in
    /// range passes 0 (rejected with `invalid_qty`).
    pub qty: Qty,
    pub tif: Tif,
    pub post_only: bool,
    pub stp: Stp,
}

impl NewOrder {
    /// A `gtc` limit order with no post-only and no STP.
    pub fn limit(order_id: OrderId, user: UserId, symbol: Symbol, side: Side, price: Price, qty: Qty) -> NewOrder {
        NewOrder {
            order_id,
            user,
            symbol,
            side,
            order_type: OrderType::Limit,
            price: Some(price),
            qty,
            tif: Tif::Gtc,
            post_only: false,
            stp: Stp::None,
        }
    }

    /// An `ioc` market order with no STP.
    pub fn market(order_id: OrderId, user: UserId, symbol: Symbol, side: Side, qty: Qty) -> NewOrder {
        NewOrder {
            order_id,
            user,
            symbol,
            side,
            order_type: OrderType::Market,
            price: None,
            qty,
            tif: Tif::Ioc,
            post_only: false,
            stp: Stp::None,
        }
    }

    pub fn with_tif(mut self, tif: Tif) -> NewOrder {
        self.tif = tif;
        self
    }

    pub fn with_post_only(mut self, post_only: bool) -> NewOrder {
        self.post_only = post_only;
        self
    }

    pub fn with_stp(mut self, stp: Stp) -> NewOrder {
        self.stp = stp;
        self
    }
}

/// What a command asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    New(NewOrder),
    Cancel {
        user: UserId,
        order_id: OrderId,
    },
    /// `price` and `qty`: `None` keeps the order's value; `qty` is the new
    /// **remaining** quantity.
    Modify {
        user: UserId,
        order_id: OrderId,
        price: Option<Price>,
        qty: Option<Qty>,
    },
    /// Cancels every resting order of `user` (only in `symbol` and only on
    /// `side` when given), lowest order id first, then answers with one
    /// `mass_cancelled` carrying the count.
    MassCancel {
        user: UserId,
        symbol: Option<Symbol>,
        side: Option<Side>,
    },
    /// Stops trading in `symbol` until a [`Action::Resume`]: new orders and
    /// modifies are rejected `halted`; cancels still work, resting orders stay.
    Halt {
        symbol: Symbol,
    },
    /// Opens a halted symbol for trading again.
    Resume {
        symbol: Symbol,
    },
}

impl Action {
    /// The symbol the action names, if it names one (a cancel or modify
    /// names only an order; a mass cancel may name none).
    pub fn symbol(&self) -> Option<&Symbol> {
        match self {
            Action::New(order) => Some(&order.symbol),
            Action::MassCancel { symbol, .. } => symbol.as_ref(),
            Action::Halt { symbol } | Action::Resume { symbol } => Some(symbol),
            Action::Cancel { .. } | Action::Modify { .. } => None,
        }
    }

    /// The user the action acts for (`None` for halt and resume, which read none).
    pub fn user(&self) -> Option<UserId> {
        match *self {
            Action::New(order) => Some(order.user),
            Action::Cancel { user, .. } | Action::Modify { user, .. } | Action::MassCancel { user, .. } => Some(user),
            Action::Halt { .. } | Action::Resume { .. } => None,
        }
    }
}

/// A sequenced command: what the sequencer hands the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command {
    pub seq: Seq,
    /// Time as an input (nanoseconds, the sequencer's clock; 0 in `replay`).
    /// The core never reads a clock; it only carries this value.
    pub timestamp_ns: u64,
    pub action: Action,
}

impl Command {
    pub fn new(seq: Seq, action: Action) -> Command {
        Command { seq, timestamp_ns: 0, action }
    }
}

/// Why a command was rejected: a stable code, in SPEC's validation order,
/// then the limits of this engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    Malformed,
    InvalidSymbol,
    InvalidTif,
    InvalidPrice,
    InvalidQty,
    UnknownOrder,
    /// A new order for a halted symbol, or a modify of an order resting in one.
    Halted,
    WouldTake,
    /// A new order's id is the id of an order that is still resting.
    DuplicateOrderId,
    /// The order could rest but the configured `orders_max` is reached.
    TooManyOrders,
    /// The order names a new symbol but the configured `symbols_max` is reached.
    TooManySymbols,
}

impl RejectReason {
    /// Every reason, in SPEC's validation order then the engine's limits.
    pub const ALL: [RejectReason; 11] = [
        RejectReason::Malformed,
        RejectReason::InvalidSymbol,
        RejectReason::InvalidTif,
        RejectReason::InvalidPrice,
        RejectReason::InvalidQty,
        RejectReason::UnknownOrder,
        RejectReason::Halted,
        RejectReason::WouldTake,
        RejectReason::DuplicateOrderId,
        RejectReason::TooManyOrders,
        RejectReason::TooManySymbols,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::InvalidSymbol => "invalid_symbol",
            RejectReason::InvalidTif => "invalid_tif",
            RejectReason::InvalidPrice => "invalid_price",
            RejectReason::InvalidQty => "invalid_qty",
            RejectReason::UnknownOrder => "unknown_order",
            RejectReason::Halted => "halted",
            RejectReason::WouldTake => "would_take",
            RejectReason::DuplicateOrderId => "duplicate_order_id",
            RejectReason::TooManyOrders => "too_many_orders",
            RejectReason::TooManySymbols => "too_many_symbols",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CancelReason {
    /// A `cancel` command.
    User,
    /// The remainder of an `ioc` or market order.
    Ioc,
    /// A `fok` order that could not fill completely.
    Fok,
    /// Self-trade prevention.
    Stp,
    /// A `mass_cancel`.
    Mass,
}

impl CancelReason {
    pub const ALL: [CancelReason; 5] =
        [CancelReason::User, CancelReason::Ioc, CancelReason::Fok, CancelReason::Stp, CancelReason::Mass];

    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::User => "user",
            CancelReason::Ioc => "ioc",
            CancelReason::Fok => "fok",
            CancelReason::Stp => "stp",
            CancelReason::Mass => "mass",
        }
    }
}

/// One thing that happened, tagged with the `seq` of the command that caused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub seq: Seq,
    pub kind: EventKind,
}

impl Event {
    /// A `cancelled` event of order `order_id` of `user`, resting (or
    /// entering) in `symbol` on `side` at `price` (`None`: a market order).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn cancelled(
        seq: Seq,
        order_id: OrderId,
        user: UserId,
        symbol: Symbol,
        side: Side,
        price: Option<Price>,
        reason: CancelReason,
        remaining: Qty,
    ) -> Event {
        Event { seq, kind: EventKind::Cancelled { order_id, user, symbol, side, price, reason, remaining } }
    }

    /// A `rejected` event.
    #[inline]
    pub fn rejected(seq: Seq, reason: RejectReason, order_id: Option<OrderId>) -> Event {
        Event { seq, kind: EventKind::Rejected { reason, order_id } }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Accepted {
        order_id: OrderId,
        user: UserId,
        symbol: Symbol,
        side: Side,
        order_type: OrderType,
        tif: Tif,
        qty: Qty,
        /// `Some` for a limit order.
        price: Option<Price>,
    },
    Rejected {
        reason: RejectReason,
        /// The order id of a rejected cancel or modify.
        order_id: Option<OrderId>,
    },
    Trade(Trade),
    /// An order left the book (or never rested), unfilled by `remaining`.
    /// It carries the order's owner, symbol, side and price, so that nobody
    /// needs to look the order up again (SPEC's line shows only `order_id`,
    /// `reason` and `remaining`).
    Cancelled {
        order_id: OrderId,
        user: UserId,
        symbol: Symbol,
        side: Side,
        /// `None` for a market order.
        price: Option<Price>,
        reason: CancelReason,
        /// Quantity left unfilled.
        remaining: Qty,
    },
    /// A resting order took a new price and/or remaining quantity. It
    /// carries the order's owner, symbol and side as `Cancelled` does.
    Modified {
        order_id: OrderId,
        user: UserId,
        symbol: Symbol,
        side: Side,
        price: Price,
        /// The new remaining quantity.
        qty: Qty,
    },
    /// The end of a mass cancel: how many orders it cancelled (each has had
    /// its `cancelled` event, reason `mass`, just before).
    MassCancelled {
        user: UserId,
        count: u64,
    },
    /// The answer to a `halt` or `resume`: the symbol's trading status now.
    Status {
        symbol: Symbol,
        status: TradingStatus,
    },
}

/// Whether a symbol trades.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TradingStatus {
    /// New orders and modifies are accepted.
    #[default]
    Open,
    /// New orders and modifies are rejected `halted`; cancels still work.
    Halted,
}

impl TradingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TradingStatus::Open => "open",
            TradingStatus::Halted => "halted",
        }
    }
}

/// A fill, at the maker's price.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trade {
    pub symbol: Symbol,
    /// Counts from 1 per symbol.
    pub trade_id: u64,
    pub price: Price,
    pub qty: Qty,
    pub maker_order_id: OrderId,
    pub maker_user: UserId,
    pub taker_order_id: OrderId,
    pub taker_user: UserId,
    pub taker_side: Side,
    pub maker_remaining: Qty,
    pub taker_remaining: Qty,
}

/// Where the core writes events. Implement it on whatever the caller wants
/// to feed (a buffer, a ring, an encoder); the core calls it synchronously,
/// in order, and never allocates to do so.
pub trait EventSink {
    fn event(&mut self, event: &Event);
}

impl EventSink for Vec<Event> {
    fn event(&mut self, event: &Event) {
        self.push(*event);
    }
}

impl<F: FnMut(&Event)> EventSink for F {
    fn event(&mut self, event: &Event) {
        self(event)
    }
}

/// A sink that drops events (for callers that only query state, e.g. recovery).
#[derive(Debug)]
pub struct DiscardEvents;

impl EventSink for DiscardEvents {
    fn event(&mut self, _event: &Event) {}
}

/// A resting order, as queries and book dumps see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestingOrder {
    pub order_id: OrderId,
    pub user: UserId,
    pub side: Side,
    pub price: Price,
    /// Remaining quantity.
    pub qty: Qty,
    pub post_only: bool,
    pub stp: Stp,
}

/// Longest client order id, in bytes.
pub const CID_LEN_MAX: usize = 20;

/// A client order id: 1 to 20 characters of `[A-Za-z0-9._:-]`, chosen by
/// the client, unique among the user's live orders.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cid {
    len: u8,
    bytes: [u8; CID_LEN_MAX],
}

impl Cid {
    /// The cid `text` spells, if it is one.
    pub fn new(text: &str) -> Option<Cid> {
        Cid::from_bytes(text.as_bytes())
    }

    pub fn from_bytes(text: &[u8]) -> Option<Cid> {
        let valid = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-');
        if text.is_empty() || text.len() > CID_LEN_MAX || !text.iter().all(valid) {
            return None;
        }
        let mut bytes = [0u8; CID_LEN_MAX];
        bytes[..text.len()].copy_from_slice(text);
        Some(Cid { len: text.len() as u8, bytes })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII ever gets in.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// As fixed layouts carry it (the journal, the snapshot annex, the
    /// binary protocol): its length, and its bytes zero-padded to 20.
    pub fn padded(&self) -> (u8, [u8; CID_LEN_MAX]) {
        (self.len, self.bytes)
    }

    /// The cid of a fixed layout's `len` and `padded` bytes; `None` if the
    /// length is out of range, the padding is not zero, or the text is not a cid.
    pub fn from_padded(len: u8, padded: &[u8; CID_LEN_MAX]) -> Option<Cid> {
        let (text, padding) = padded.split_at_checked(usize::from(len))?;
        if padding.iter().any(|&b| b != 0) {
            return None;
        }
        Cid::from_bytes(text)
    }
}

impl std::fmt::Debug for Cid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl std::fmt::Display for Cid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
