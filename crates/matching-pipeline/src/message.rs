//! What travels on the rings.

use matching_core::{BookState, Command, Event, Price, RestingOrder, Symbol, TradingStatus};

/// Sequencer → shard.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ShardInput {
    Command(Command),
    /// A cancel or modify of an order too old for the routing window: every
    /// shard runs it; the shard that holds the order gives the real answer,
    /// the others a rejection that the merger drops.
    Broadcast(Command),
    /// A mass cancel of every symbol: every shard cancels its part (in
    /// order id order, then a `mass_cancelled` with its count); the merger
    /// merges the parts by order id and sums the counts.
    Span(Command),
    Query(Query),
    /// Finish: flush, and hand the books back.
    Shutdown,
    /// Fault injection for tests: the shard panics.
    #[cfg(feature = "fault-injection")]
    Panic,
}

/// How the merger puts a command's answers together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answering {
    /// One shard answers.
    One,
    /// Every shard answers ([`ShardInput::Broadcast`]); one answer is kept.
    Broadcast,
    /// Every shard answers a part ([`ShardInput::Span`]); the parts merge.
    Span,
}

/// Shard → merger: one event, and where it stands in its command's answer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ShardOutput {
    pub(crate) event: Event,
    /// The last event of its command (every command has at least one).
    pub(crate) last: bool,
    pub(crate) answering: Answering,
}

/// A synchronous question about the books. It travels through the same
/// rings as commands, so its answer reflects every command submitted before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query {
    /// The best bid and ask of a symbol, with their total quantities.
    Best(Symbol),
    /// Up to this many price levels a side, best first.
    Depth(Symbol, usize),
    /// Every resting order of a symbol, in priority order.
    Book(Symbol),
    /// Every book's state (what the state hash is computed from).
    State,
}

/// One price level: price, total quantity, number of orders.
pub type DepthLevel = (Price, u128, u32);

/// The answer to a [`Query`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Best {
        bid: Option<(Price, u128)>,
        ask: Option<(Price, u128)>,
    },
    Depth {
        bids: Vec<DepthLevel>,
        asks: Vec<DepthLevel>,
    },
    /// `status`: whether the symbol trades or is halted (a symbol with no book trades).
    Book {
        bids: Vec<RestingOrder>,
        asks: Vec<RestingOrder>,
        status: TradingStatus,
    },
    State(Vec<BookState>),
}
