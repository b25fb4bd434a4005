//! Engine events in, feed messages out: a deterministic function of the
//! event stream (the same journal gives the same messages).
//!
//! The one subtlety is the incoming order. ITCH shows only resting
//! orders: an aggressor is not added, its trades show as executions of the
//! orders it hit, and only a remainder that rests is added, once matching is
//! over. Which is why a command's messages are complete only at its end:
//! [`Publisher::end_command`] (or the first event of the next command)
//! decides whether the incoming order rests.

use matching_core::{Event, RestingOrder};
use matching_core::{EventKind, OrderType, Seq, Side, Symbol, Tif, TradingStatus};
use matching_proto::feed::{FeedMessage, SystemCode};

use crate::book::{FeedBook, LevelChange};

/// Where the publisher's output goes.
pub trait Sink {
    /// The next feed message (its level changes follow).
    fn message(&mut self, message: &FeedMessage);
    /// A level changed (called after the message that changed it, with the
    /// book as it is right after the change).
    fn level(&mut self, book: &FeedBook, change: &LevelChange);
}

/// The order of the command in progress that may come to rest.
#[derive(Clone, Copy, Debug)]
struct Incoming {
    order_id: u64,
    symbol: Symbol,
    side: Side,
    price: Option<u64>,
    remaining: u64,
    /// A gtc limit order not cancelled (yet).
    may_rest: bool,
    /// A modify that took a resting order out: it is replaced (`U`) if it
    /// rests again, deleted (`D`) if not.
    replacing: bool,
}

/// Turns events into feed messages and keeps the book they describe.
#[derive(Debug, Default)]
pub struct Publisher {
    book: FeedBook,
    next_locate: u32,
    /// The command whose events are coming in.
    current: Option<Seq>,
    incoming: Option<Incoming>,
}

impl Publisher {
    /// An empty book: a new session of a new venue.
    pub fn new() -> Publisher {
        Publisher { next_locate: 1, ..Publisher::default() }
    }

    pub fn book(&self) -> &FeedBook {
        &self.book
    }

    /// Emits `message`: tells `sink`, applies it to the book, and tells
    /// `sink` each level change as the book stands right after it.
    fn emit(&mut self, message: FeedMessage, sink: &mut impl Sink) {
        sink.message(&message);
        let applied = self.book.apply(&message, |book, change| sink.level(book, &change));
        debug_assert!(applied.is_ok(), "Invariant: the publisher's own messages apply: {applied:?} {message:?}");
    }

    /// The symbol's locate, naming it first (`R`) if it is new.
    fn locate(&mut self, symbol: Symbol, seq: Seq, sink: &mut impl Sink) -> u32 {
        if let Some(locate) = self.book.locate(&symbol) {
            return locate;
        }
        let locate = self.next_locate;
        self.next_locate += 1;
        self.emit(FeedMessage::SymbolDirectory { locate, seq, symbol }, sink);
        locate
    }

    /// Starts a session: `S O`, then every book given (`R`, `H` if
    /// halted, `A` for each resting order in priority order) in the order
    /// given. For a new venue there are none; after an unclean restart,
    /// the recovered books, so that the session rebuilds them.
    pub fn start_session<'a>(
        &mut self,
        seq: Seq,
        books: impl IntoIterator<Item = (Symbol, TradingStatus, &'a [RestingOrder])>,
        sink: &mut impl Sink,
    ) {
        self.emit(FeedMessage::SystemEvent { seq, code: SystemCode::StartOfMessages }, sink);
        for (symbol, status, orders) in books {
            let locate = self.locate(symbol, seq, sink);
            for message in book_messages(locate, seq, status, orders) {
                self.emit(message, sink);
            }
        }
    }

    /// Continues a session after a clean restart: the books as they were
    /// when it stopped, under the locates it had given, without a message.
    pub fn restore<'a>(
        &mut self,
        books: impl IntoIterator<Item = (u32, Symbol, TradingStatus, &'a [RestingOrder])>,
    ) -> Result<(), crate::book::FeedBookError> {
        for (locate, symbol, status, orders) in books {
            self.book.apply(&FeedMessage::SymbolDirectory { locate, seq: 0, symbol }, |_, _| {})?;
            for message in book_messages(locate, 0, status, orders) {
                self.book.apply(&message, |_, _| {})?;
            }
            self.next_locate = self.next_locate.max(locate + 1);
        }
        self.next_locate = self.next_locate.max(1);
        Ok(())
    }

    /// One event, in `seq` order.
    pub fn on_event(&mut self, event: &Event, sink: &mut impl Sink) {
        let seq = event.seq;
        if self.current != Some(seq) {
            self.end_command(sink);
            self.current = Some(seq);
        }
        match event.kind {
            EventKind::Accepted { order_id, symbol, side, order_type, tif, qty, price, .. } => {
                self.incoming = Some(Incoming {
                    order_id,
                    symbol,
                    side,
                    price,
                    remaining: qty,
                    may_rest: order_type == OrderType::Limit && tif == Tif::Gtc,
                    replacing: false,
                });
            }
            EventKind::Rejected { .. } | EventKind::MassCancelled { .. } => {}
            EventKind::Trade(trade) => {
                let locate = self.locate(trade.symbol, seq, sink);
                let executed = FeedMessage::OrderExecuted {
                    locate,
                    seq,
                    order_id: trade.maker_order_id,
                    qty: trade.qty,
                    match_number: trade.trade_id,
                };
                self.emit(executed, sink);
                let print = FeedMessage::Trade {
                    locate,
                    seq,
                    taker_side: trade.taker_side,
                    qty: trade.qty,
                    price: trade.price,
                    match_number: trade.trade_id,
                };
                self.emit(print, sink);
                if let Some(incoming) = self.incoming.as_mut().filter(|i| i.order_id == trade.taker_order_id) {
                    incoming.remaining = trade.taker_remaining;
                }
            }
            EventKind::Cancelled { order_id, .. } => {
                if let Some(incoming) = self.incoming.as_mut().filter(|i| i.order_id == order_id) {
                    incoming.may_rest = false;
                } else if let Some((locate, _)) = self.book.order(order_id) {
                    self.emit(FeedMessage::OrderDelete { locate, seq, order_id }, sink);
                }
            }
            EventKind::Modified { order_id, symbol, side, price, qty, .. } => {
                let Some((locate, order)) = self.book.order(order_id) else { return };
                if price == order.price && qty <= order.qty {
                    // Reduced in place: it keeps its priority.
                    if qty < order.qty {
                        self.emit(FeedMessage::OrderCancel { locate, seq, order_id, qty: order.qty - qty }, sink);
                    }
                } else {
                    self.incoming = Some(Incoming {
                        order_id,
                        symbol,
                        side,
                        price: Some(price),
                        remaining: qty,
                        may_rest: true,
                        replacing: true,
                    });
                }
            }
            EventKind::Status { symbol, status } => {
                let locate = self.locate(symbol, seq, sink);
                let halted = status == TradingStatus::Halted;
                self.emit(FeedMessage::TradingStatus { locate, seq, halted }, sink);
            }
        }
    }

    /// The command in progress is over: its incoming order rests or not.
    pub fn end_command(&mut self, sink: &mut impl Sink) {
        let (Some(seq), Some(incoming)) = (self.current, self.incoming.take()) else { return };
        let rests = incoming.may_rest && incoming.remaining > 0;
        let price = incoming.price.unwrap_or(0);
        if incoming.replacing {
            let Some((locate, _)) = self.book.order(incoming.order_id) else { return };
            let order_id = incoming.order_id;
            let message = if rests {
                FeedMessage::OrderReplace {
                    locate,
                    seq,
                    order_id,
                    new_order_id: order_id,
                    qty: incoming.remaining,
                    price,
                }
            } else {
                FeedMessage::OrderDelete { locate, seq, order_id }
            };
            self.emit(message, sink);
        } else if rests {
            let locate = self.locate(incoming.symbol, seq, sink);
            let add = FeedMessage::AddOrder {
                locate,
                seq,
                order_id: incoming.order_id,
                side: incoming.side,
                qty: incoming.remaining,
                price,
            };
            self.emit(add, sink);
        }
    }

    /// The command whose events are coming in (its messages may not all be out).
    pub fn in_progress(&self) -> Option<Seq> {
        self.current
    }

    /// `(locate, symbol)` of every symbol named in this session.
    pub fn locates(&self) -> Vec<(u32, Symbol)> {
        self.book.symbols().collect()
    }
}

/// A named symbol's book as messages: `H` if it is halted, then `A` for
/// each resting order, in the order given (priority order).
fn book_messages(
    locate: u32,
    seq: Seq,
    status: TradingStatus,
    orders: &[RestingOrder],
) -> impl Iterator<Item = FeedMessage> + '_ {
    let halted = (status == TradingStatus::Halted).then_some(FeedMessage::TradingStatus { locate, seq, halted: true });
    halted.into_iter().chain(orders.iter().map(move |order| FeedMessage::AddOrder {
        locate,
        seq,
        order_id: order.order_id,
        side: order.side,
        qty: order.qty,
        price: order.price,
    }))
}
