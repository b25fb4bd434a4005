//! The reference order book (`common::reference`) on SPEC's conformance
//! vectors, hand-translated from `/work/shared/conformance/*.jsonl` into
//! typed commands and typed expected events (the JSON codec lives in
//! `matching-proto`, which this crate must not depend on). SPEC's defaults
//! are applied in the translation: `type` limit, `tif` gtc for limit and ioc
//! for market, `post_only` false, `stp` none; a `new` order's id is its seq.
//!
//! The same vectors also run through the fast core with both level
//! structures, so a disagreement shows which side moved away from SPEC.

mod common;

use common::reference::Reference;
use matching_core::OrderType::{Limit, Market};
use matching_core::Side::{Buy, Sell};
use matching_core::Tif::{Fok, Gtc, Ioc};
use matching_core::{
    Action, BTreeLevels, CancelReason, Command, Config, Event, EventKind, Exchange, LadderLevels, NewOrder, OrderId,
    OrderType, PriceLevels, Qty, RejectReason, Seq, Side, SortedVecLevels, Stp, Symbol, Tif, Trade, TradingStatus,
    UserId,
};

/// One conformance vector: commands, expected events, expected final book
/// (per symbol with resting orders: bids then asks as
/// `(order_id, user, price, qty)` in priority order).
struct Vector {
    name: &'static str,
    commands: Vec<Command>,
    events: Vec<Event>,
    book: Vec<(&'static str, Vec<BookEntry>, Vec<BookEntry>)>,
}

type BookEntry = (OrderId, UserId, u64, Qty);

fn sym(name: &str) -> Symbol {
    Symbol::new(name).expect("test symbols are valid")
}

#[allow(clippy::too_many_arguments)]
fn new(
    seq: Seq,
    user: UserId,
    symbol: &str,
    side: Side,
    order_type: OrderType,
    price: Option<u64>,
    qty: Qty,
    tif: Tif,
    post_only: bool,
    stp: Stp,
) -> Command {
    let order =
        NewOrder { order_id: seq, user, symbol: sym(symbol), side, order_type, price, qty, tif, post_only, stp };
    Command::new(seq, Action::New(order))
}

fn cancel(seq: Seq, user: UserId, order_id: OrderId) -> Command {
    Command::new(seq, Action::Cancel { user, order_id })
}

fn modify(seq: Seq, user: UserId, order_id: OrderId, price: Option<u64>, qty: Option<Qty>) -> Command {
    Command::new(seq, Action::Modify { user, order_id, price, qty })
}

#[allow(clippy::too_many_arguments)]
fn accepted(
    seq: Seq,
    order_id: OrderId,
    user: UserId,
    symbol: &str,
    side: Side,
    order_type: OrderType,
    tif: Tif,
    qty: Qty,
    price: Option<u64>,
) -> Event {
    Event { seq, kind: EventKind::Accepted { order_id, user, symbol: sym(symbol), side, order_type, tif, qty, price } }
}

fn rejected(seq: Seq, reason: RejectReason, order_id: Option<OrderId>) -> Event {
    Event { seq, kind: EventKind::Rejected { reason, order_id } }
}

/// `maker` is `(order_id, user)`, `taker` `(order_id, user, side)`,
/// `remaining` `(maker_remaining, taker_remaining)`.
#[allow(clippy::too_many_arguments)]
fn trade(
    seq: Seq,
    symbol: &str,
    trade_id: u64,
    price: u64,
    qty: Qty,
    maker: (OrderId, UserId),
    taker: (OrderId, UserId, Side),
    remaining: (Qty, Qty),
) -> Event {
    Event {
        seq,
        kind: EventKind::Trade(Trade {
            symbol: sym(symbol),
            trade_id,
            price,
            qty,
            maker_order_id: maker.0,
            maker_user: maker.1,
            taker_order_id: taker.0,
            taker_user: taker.1,
            taker_side: taker.2,
            maker_remaining: remaining.0,
            taker_remaining: remaining.1,
        }),
    }
}

/// SPEC's `cancelled` line: the event's other fields (owner, symbol, side,
/// price) are not in the vectors, so [`spec_view`] blanks them on both sides.
fn cancelled(seq: Seq, order_id: OrderId, reason: CancelReason, remaining: Qty) -> Event {
    let (user, symbol, side, price) = blank();
    Event { seq, kind: EventKind::Cancelled { order_id, user, symbol, side, price, reason, remaining } }
}

/// What blanks the fields SPEC's event lines do not carry.
fn blank() -> (UserId, Symbol, Side, Option<u64>) {
    (0, sym("_"), Buy, None)
}

/// `event` as SPEC's line shows it: the extra fields of `cancelled` and
/// `modified` blanked.
fn spec_view(event: &Event) -> Event {
    let (blank_user, blank_symbol, blank_side, blank_price) = blank();
    let kind = match event.kind {
        EventKind::Cancelled { order_id, reason, remaining, .. } => EventKind::Cancelled {
            order_id,
            user: blank_user,
            symbol: blank_symbol,
            side: blank_side,
            price: blank_price,
            reason,
            remaining,
        },
        EventKind::Modified { order_id, price, qty, .. } => {
            EventKind::Modified { order_id, user: blank_user, symbol: blank_symbol, side: blank_side, price, qty }
        }
        other => other,
    };
    Event { seq: event.seq, kind }
}

fn modified(seq: Seq, order_id: OrderId, price: u64, qty: Qty) -> Event {
    let (user, symbol, side, _) = blank();
    Event { seq, kind: EventKind::Modified { order_id, user, symbol, side, price, qty } }
}

fn mass_cancel(seq: Seq, user: UserId, symbol: Option<&str>, side: Option<Side>) -> Command {
    Command::new(seq, Action::MassCancel { user, symbol: symbol.map(sym), side })
}

fn halt(seq: Seq, symbol: &str) -> Command {
    Command::new(seq, Action::Halt { symbol: sym(symbol) })
}

fn resume(seq: Seq, symbol: &str) -> Command {
    Command::new(seq, Action::Resume { symbol: sym(symbol) })
}

fn mass_cancelled(seq: Seq, user: UserId, count: u64) -> Event {
    Event { seq, kind: EventKind::MassCancelled { user, count } }
}

fn status(seq: Seq, symbol: &str, status: TradingStatus) -> Event {
    Event { seq, kind: EventKind::Status { symbol: sym(symbol), status } }
}

/// Fails with the first differing event and its neighbourhood.
fn assert_same_events(engine: &str, vector: &str, got: &[Event], want: &[Event]) {
    let got: Vec<Event> = got.iter().map(spec_view).collect();
    let want: Vec<Event> = want.iter().map(spec_view).collect();
    if got == want {
        return;
    }
    let first = got.iter().zip(&want).position(|(g, w)| g != w).unwrap_or(got.len().min(want.len()));
    let from = first.saturating_sub(2);
    panic!(
        "{engine} on {vector}: events differ at index {first} ({} events, {} expected)\n got:  {:#?}\n want: {:#?}",
        got.len(),
        want.len(),
        &got[from.min(got.len())..(first + 3).min(got.len())],
        &want[from.min(want.len())..(first + 3).min(want.len())],
    );
}

/// Expected book of `symbol`: empty sides when the vector lists no resting orders there.
fn expected_book(v: &Vector, symbol: &Symbol) -> (Vec<BookEntry>, Vec<BookEntry>) {
    v.book.iter().find(|(s, _, _)| sym(s) == *symbol).map(|(_, b, a)| (b.clone(), a.clone())).unwrap_or_default()
}

fn entries(orders: impl IntoIterator<Item = matching_core::RestingOrder>) -> Vec<BookEntry> {
    orders.into_iter().map(|o| (o.order_id, o.user, o.price, o.qty)).collect()
}

fn check_reference(v: &Vector) {
    let mut reference = Reference::new(&Config::default());
    let mut got = Vec::new();
    for command in &v.commands {
        got.extend(reference.process(command));
        reference
            .check()
            .unwrap_or_else(|e| panic!("reference invariant broken on {} after seq {}: {e}", v.name, command.seq));
    }
    assert_same_events("reference", v.name, &got, &v.events);
    for (name, _, _) in &v.book {
        assert!(reference.symbols().contains(&sym(name)), "reference on {}: no book for {name}", v.name);
    }
    for symbol in reference.symbols() {
        let (bids, asks) = expected_book(v, &symbol);
        assert_eq!(entries(reference.orders(&symbol, Buy)), bids, "reference on {}: bids of {symbol}", v.name);
        assert_eq!(entries(reference.orders(&symbol, Sell)), asks, "reference on {}: asks of {symbol}", v.name);
    }
}

fn check_core<L: PriceLevels>(v: &Vector) {
    let engine = format!("core<{}>", L::NAME);
    let mut exchange = Exchange::<L>::with_levels(Config::default());
    let mut got = Vec::new();
    for command in &v.commands {
        exchange.process(command, &mut got);
        exchange
            .validate()
            .unwrap_or_else(|e| panic!("{engine} invariant broken on {} after seq {}: {e}", v.name, command.seq));
    }
    assert_same_events(&engine, v.name, &got, &v.events);
    for (name, _, _) in &v.book {
        assert!(exchange.symbols().contains(&sym(name)), "{engine} on {}: no book for {name}", v.name);
    }
    for symbol in exchange.symbols() {
        let (bids, asks) = expected_book(v, &symbol);
        let book = exchange.book(&symbol).expect("listed symbols have books");
        assert_eq!(entries(book.orders(Buy)), bids, "{engine} on {}: bids of {symbol}", v.name);
        assert_eq!(entries(book.orders(Sell)), asks, "{engine} on {}: asks of {symbol}", v.name);
    }
}

fn check(v: Vector) {
    check_reference(&v);
    check_core::<SortedVecLevels>(&v);
    check_core::<BTreeLevels>(&v);
    check_core::<LadderLevels>(&v);
}

#[test]
fn conformance_03_market_orders() {
    check(v03());
}

#[test]
fn conformance_04_ioc_fok() {
    check(v04());
}

#[test]
fn conformance_05_post_only() {
    check(v05());
}

#[test]
fn conformance_06_self_trade_prevention() {
    check(v06());
}

#[test]
fn conformance_07_modify() {
    check(v07());
}

#[test]
fn conformance_08_cancel() {
    check(v08());
}

#[test]
fn conformance_12_mass_cancel() {
    check(v12());
}

#[test]
fn conformance_13_halt_resume() {
    check(v13());
}

// ----- the vectors, translated line by line -----
//
// The builders take the fields in the order of the JSON objects, so each
// line reads against its `.jsonl` line. (Builders with many arguments on
// purpose: one argument per field of the event or command.)

/// `conformance/03_market_orders`.
fn v03() -> Vector {
    Vector {
        name: "03_market_orders",
        commands: vec![
            new(1, 1, "X", Buy, Market, None, 5, Ioc, false, Stp::None),
            new(2, 2, "X", Sell, Limit, Some(10), 2, Gtc, false, Stp::None),
            new(3, 3, "X", Sell, Limit, Some(12), 2, Gtc, false, Stp::None),
            new(4, 4, "X", Buy, Market, None, 3, Ioc, false, Stp::None),
            new(5, 5, "X", Buy, Market, None, 3, Ioc, false, Stp::None),
            new(6, 6, "X", Buy, Limit, Some(9), 7, Gtc, false, Stp::None),
            new(7, 7, "X", Sell, Market, None, 2, Fok, false, Stp::None),
            new(8, 7, "X", Sell, Market, None, 9, Fok, false, Stp::None),
            new(9, 8, "X", Sell, Market, None, 9, Ioc, false, Stp::None),
        ],
        events: vec![
            accepted(1, 1, 1, "X", Buy, Market, Ioc, 5, None),
            cancelled(1, 1, CancelReason::Ioc, 5),
            accepted(2, 2, 2, "X", Sell, Limit, Gtc, 2, Some(10)),
            accepted(3, 3, 3, "X", Sell, Limit, Gtc, 2, Some(12)),
            accepted(4, 4, 4, "X", Buy, Market, Ioc, 3, None),
            trade(4, "X", 1, 10, 2, (2, 2), (4, 4, Buy), (0, 1)),
            trade(4, "X", 2, 12, 1, (3, 3), (4, 4, Buy), (1, 0)),
            accepted(5, 5, 5, "X", Buy, Market, Ioc, 3, None),
            trade(5, "X", 3, 12, 1, (3, 3), (5, 5, Buy), (0, 2)),
            cancelled(5, 5, CancelReason::Ioc, 2),
            accepted(6, 6, 6, "X", Buy, Limit, Gtc, 7, Some(9)),
            accepted(7, 7, 7, "X", Sell, Market, Fok, 2, None),
            trade(7, "X", 4, 9, 2, (6, 6), (7, 7, Sell), (5, 0)),
            accepted(8, 8, 7, "X", Sell, Market, Fok, 9, None),
            cancelled(8, 8, CancelReason::Fok, 9),
            accepted(9, 9, 8, "X", Sell, Market, Ioc, 9, None),
            trade(9, "X", 5, 9, 5, (6, 6), (9, 8, Sell), (0, 4)),
            cancelled(9, 9, CancelReason::Ioc, 4),
        ],
        book: vec![],
    }
}

/// `conformance/04_ioc_fok`.
fn v04() -> Vector {
    Vector {
        name: "04_ioc_fok",
        commands: vec![
            new(1, 1, "X", Sell, Limit, Some(100), 2, Gtc, false, Stp::None),
            new(2, 2, "X", Sell, Limit, Some(101), 3, Gtc, false, Stp::None),
            new(3, 3, "X", Buy, Limit, Some(100), 5, Ioc, false, Stp::None),
            new(4, 4, "X", Buy, Limit, Some(101), 4, Fok, false, Stp::None),
            new(5, 5, "X", Buy, Limit, Some(101), 3, Fok, false, Stp::None),
            new(6, 6, "X", Buy, Limit, Some(99), 1, Ioc, false, Stp::None),
            new(7, 7, "X", Sell, Limit, Some(100), 1, Gtc, false, Stp::None),
            new(8, 7, "X", Sell, Limit, Some(100), 1, Gtc, false, Stp::None),
            new(9, 8, "X", Buy, Limit, Some(100), 2, Fok, false, Stp::None),
        ],
        events: vec![
            accepted(1, 1, 1, "X", Sell, Limit, Gtc, 2, Some(100)),
            accepted(2, 2, 2, "X", Sell, Limit, Gtc, 3, Some(101)),
            accepted(3, 3, 3, "X", Buy, Limit, Ioc, 5, Some(100)),
            trade(3, "X", 1, 100, 2, (1, 1), (3, 3, Buy), (0, 3)),
            cancelled(3, 3, CancelReason::Ioc, 3),
            accepted(4, 4, 4, "X", Buy, Limit, Fok, 4, Some(101)),
            cancelled(4, 4, CancelReason::Fok, 4),
            accepted(5, 5, 5, "X", Buy, Limit, Fok, 3, Some(101)),
            trade(5, "X", 2, 101, 3, (2, 2), (5, 5, Buy), (0, 0)),
            accepted(6, 6, 6, "X", Buy, Limit, Ioc, 1, Some(99)),
            cancelled(6, 6, CancelReason::Ioc, 1),
            accepted(7, 7, 7, "X", Sell, Limit, Gtc, 1, Some(100)),
            accepted(8, 8, 7, "X", Sell, Limit, Gtc, 1, Some(100)),
            accepted(9, 9, 8, "X", Buy, Limit, Fok, 2, Some(100)),
            trade(9, "X", 3, 100, 1, (7, 7), (9, 8, Buy), (0, 1)),
            trade(9, "X", 4, 100, 1, (8, 7), (9, 8, Buy), (0, 0)),
        ],
        book: vec![],
    }
}

/// `conformance/05_post_only`.
fn v05() -> Vector {
    Vector {
        name: "05_post_only",
        commands: vec![
            new(1, 1, "X", Sell, Limit, Some(100), 2, Gtc, false, Stp::None),
            new(2, 2, "X", Buy, Limit, Some(100), 1, Gtc, true, Stp::None),
            new(3, 2, "X", Buy, Limit, Some(99), 1, Gtc, true, Stp::None),
            new(4, 3, "X", Sell, Limit, Some(101), 1, Gtc, true, Stp::None),
            modify(5, 2, 3, Some(100), None),
            modify(6, 2, 3, Some(98), Some(4)),
            new(7, 4, "X", Sell, Limit, Some(98), 1, Ioc, true, Stp::None),
            new(8, 4, "X", Sell, Market, None, 1, Ioc, true, Stp::None),
            new(9, 5, "X", Sell, Limit, Some(98), 5, Gtc, false, Stp::None),
        ],
        events: vec![
            accepted(1, 1, 1, "X", Sell, Limit, Gtc, 2, Some(100)),
            rejected(2, RejectReason::WouldTake, None),
            accepted(3, 3, 2, "X", Buy, Limit, Gtc, 1, Some(99)),
            accepted(4, 4, 3, "X", Sell, Limit, Gtc, 1, Some(101)),
            rejected(5, RejectReason::WouldTake, Some(3)),
            modified(6, 3, 98, 4),
            rejected(7, RejectReason::InvalidTif, None),
            rejected(8, RejectReason::InvalidTif, None),
            accepted(9, 9, 5, "X", Sell, Limit, Gtc, 5, Some(98)),
            trade(9, "X", 1, 98, 4, (3, 2), (9, 5, Sell), (0, 1)),
        ],
        book: vec![("X", vec![], vec![(9, 5, 98, 1), (1, 1, 100, 2), (4, 3, 101, 1)])],
    }
}

/// `conformance/06_self_trade_prevention`.
fn v06() -> Vector {
    Vector {
        name: "06_self_trade_prevention",
        commands: vec![
            new(1, 1, "X", Sell, Limit, Some(100), 2, Gtc, false, Stp::None),
            new(2, 2, "X", Sell, Limit, Some(100), 2, Gtc, false, Stp::None),
            new(3, 1, "X", Sell, Limit, Some(101), 2, Gtc, false, Stp::None),
            new(4, 1, "X", Buy, Limit, Some(101), 3, Gtc, false, Stp::CancelTaker),
            new(5, 1, "X", Buy, Limit, Some(100), 3, Gtc, false, Stp::CancelMaker),
            new(6, 3, "X", Sell, Limit, Some(100), 1, Gtc, false, Stp::None),
            new(7, 3, "X", Sell, Limit, Some(100), 1, Gtc, false, Stp::None),
            new(8, 4, "X", Sell, Limit, Some(100), 1, Gtc, false, Stp::None),
            new(9, 3, "X", Buy, Limit, Some(100), 5, Gtc, false, Stp::CancelBoth),
            new(10, 4, "X", Buy, Limit, Some(101), 5, Gtc, false, Stp::None),
            new(11, 4, "X", Buy, Limit, Some(101), 1, Gtc, false, Stp::None),
            new(12, 5, "Y", Sell, Limit, Some(10), 1, Gtc, false, Stp::None),
            new(13, 6, "Y", Sell, Limit, Some(10), 1, Gtc, false, Stp::None),
            new(14, 5, "Y", Buy, Limit, Some(10), 1, Fok, false, Stp::CancelTaker),
            new(15, 5, "Y", Buy, Limit, Some(10), 1, Fok, false, Stp::CancelMaker),
        ],
        events: vec![
            accepted(1, 1, 1, "X", Sell, Limit, Gtc, 2, Some(100)),
            accepted(2, 2, 2, "X", Sell, Limit, Gtc, 2, Some(100)),
            accepted(3, 3, 1, "X", Sell, Limit, Gtc, 2, Some(101)),
            accepted(4, 4, 1, "X", Buy, Limit, Gtc, 3, Some(101)),
            cancelled(4, 4, CancelReason::Stp, 3),
            accepted(5, 5, 1, "X", Buy, Limit, Gtc, 3, Some(100)),
            cancelled(5, 1, CancelReason::Stp, 2),
            trade(5, "X", 1, 100, 2, (2, 2), (5, 1, Buy), (0, 1)),
            accepted(6, 6, 3, "X", Sell, Limit, Gtc, 1, Some(100)),
            trade(6, "X", 2, 100, 1, (5, 1), (6, 3, Sell), (0, 0)),
            accepted(7, 7, 3, "X", Sell, Limit, Gtc, 1, Some(100)),
            accepted(8, 8, 4, "X", Sell, Limit, Gtc, 1, Some(100)),
            accepted(9, 9, 3, "X", Buy, Limit, Gtc, 5, Some(100)),
            cancelled(9, 7, CancelReason::Stp, 1),
            cancelled(9, 9, CancelReason::Stp, 5),
            accepted(10, 10, 4, "X", Buy, Limit, Gtc, 5, Some(101)),
            trade(10, "X", 3, 100, 1, (8, 4), (10, 4, Buy), (0, 4)),
            trade(10, "X", 4, 101, 2, (3, 1), (10, 4, Buy), (0, 2)),
            accepted(11, 11, 4, "X", Buy, Limit, Gtc, 1, Some(101)),
            accepted(12, 12, 5, "Y", Sell, Limit, Gtc, 1, Some(10)),
            accepted(13, 13, 6, "Y", Sell, Limit, Gtc, 1, Some(10)),
            accepted(14, 14, 5, "Y", Buy, Limit, Fok, 1, Some(10)),
            cancelled(14, 14, CancelReason::Fok, 1),
            accepted(15, 15, 5, "Y", Buy, Limit, Fok, 1, Some(10)),
            cancelled(15, 12, CancelReason::Stp, 1),
            trade(15, "Y", 1, 10, 1, (13, 6), (15, 5, Buy), (0, 0)),
        ],
        book: vec![("X", vec![(10, 4, 101, 2), (11, 4, 101, 1)], vec![])],
    }
}

/// `conformance/07_modify`.
fn v07() -> Vector {
    Vector {
        name: "07_modify",
        commands: vec![
            new(1, 1, "X", Buy, Limit, Some(100), 5, Gtc, false, Stp::None),
            new(2, 2, "X", Buy, Limit, Some(100), 5, Gtc, false, Stp::None),
            new(3, 3, "X", Buy, Limit, Some(100), 5, Gtc, false, Stp::None),
            modify(4, 1, 1, None, Some(3)),
            modify(5, 2, 2, None, Some(6)),
            new(6, 4, "X", Sell, Limit, Some(100), 4, Gtc, false, Stp::None),
            new(7, 5, "X", Sell, Limit, Some(105), 2, Gtc, false, Stp::None),
            modify(8, 3, 3, Some(106), None),
            modify(9, 3, 3, Some(101), Some(1)),
            modify(10, 9, 2, None, Some(1)),
            modify(11, 2, 2, None, Some(0)),
            modify(12, 2, 2, None, None),
            modify(13, 2, 2, Some(101), None),
            new(14, 6, "X", Sell, Limit, Some(100), 10, Gtc, false, Stp::None),
        ],
        events: vec![
            accepted(1, 1, 1, "X", Buy, Limit, Gtc, 5, Some(100)),
            accepted(2, 2, 2, "X", Buy, Limit, Gtc, 5, Some(100)),
            accepted(3, 3, 3, "X", Buy, Limit, Gtc, 5, Some(100)),
            modified(4, 1, 100, 3),
            modified(5, 2, 100, 6),
            accepted(6, 6, 4, "X", Sell, Limit, Gtc, 4, Some(100)),
            trade(6, "X", 1, 100, 3, (1, 1), (6, 4, Sell), (0, 1)),
            trade(6, "X", 2, 100, 1, (3, 3), (6, 4, Sell), (4, 0)),
            accepted(7, 7, 5, "X", Sell, Limit, Gtc, 2, Some(105)),
            modified(8, 3, 106, 4),
            trade(8, "X", 3, 105, 2, (7, 5), (3, 3, Buy), (0, 2)),
            modified(9, 3, 101, 1),
            rejected(10, RejectReason::UnknownOrder, Some(2)),
            rejected(11, RejectReason::InvalidQty, Some(2)),
            rejected(12, RejectReason::Malformed, Some(2)),
            modified(13, 2, 101, 6),
            accepted(14, 14, 6, "X", Sell, Limit, Gtc, 10, Some(100)),
            trade(14, "X", 4, 101, 1, (3, 3), (14, 6, Sell), (0, 9)),
            trade(14, "X", 5, 101, 6, (2, 2), (14, 6, Sell), (0, 3)),
        ],
        book: vec![("X", vec![], vec![(14, 6, 100, 3)])],
    }
}

/// `conformance/08_cancel`.
fn v08() -> Vector {
    Vector {
        name: "08_cancel",
        commands: vec![
            new(1, 1, "X", Buy, Limit, Some(100), 5, Gtc, false, Stp::None),
            new(2, 2, "X", Sell, Limit, Some(100), 2, Gtc, false, Stp::None),
            cancel(3, 2, 1),
            cancel(4, 1, 1),
            cancel(5, 1, 1),
            cancel(6, 2, 2),
            cancel(7, 1, 77),
            new(8, 3, "X", Sell, Limit, Some(90), 1, Gtc, false, Stp::None),
        ],
        events: vec![
            accepted(1, 1, 1, "X", Buy, Limit, Gtc, 5, Some(100)),
            accepted(2, 2, 2, "X", Sell, Limit, Gtc, 2, Some(100)),
            trade(2, "X", 1, 100, 2, (1, 1), (2, 2, Sell), (3, 0)),
            rejected(3, RejectReason::UnknownOrder, Some(1)),
            cancelled(4, 1, CancelReason::User, 3),
            rejected(5, RejectReason::UnknownOrder, Some(1)),
            rejected(6, RejectReason::UnknownOrder, Some(2)),
            rejected(7, RejectReason::UnknownOrder, Some(77)),
            accepted(8, 8, 3, "X", Sell, Limit, Gtc, 1, Some(90)),
        ],
        book: vec![("X", vec![], vec![(8, 3, 90, 1)])],
    }
}

/// `conformance/12_mass_cancel`. Lines 14-16 are refused by the JSON reader
/// (no user, side "both", a bad symbol) and never reach the core as typed
/// commands, so their seqs are skipped here.
fn v12() -> Vector {
    use CancelReason::Mass;
    Vector {
        name: "12_mass_cancel",
        commands: vec![
            new(1, 1, "BTC-USD", Buy, Limit, Some(100), 5, Gtc, false, Stp::None),
            new(2, 1, "BTC-USD", Sell, Limit, Some(110), 2, Gtc, false, Stp::None),
            new(3, 2, "BTC-USD", Buy, Limit, Some(101), 3, Gtc, false, Stp::None),
            new(4, 1, "ETH-USD", Buy, Limit, Some(50), 7, Gtc, false, Stp::None),
            new(5, 1, "ETH-USD", Sell, Limit, Some(55), 1, Gtc, false, Stp::None),
            new(6, 1, "BTC-USD", Buy, Limit, Some(99), 4, Gtc, false, Stp::None),
            mass_cancel(7, 1, Some("BTC-USD"), Some(Buy)),
            mass_cancel(8, 3, None, None),
            mass_cancel(9, 1, Some("XRP-USD"), None),
            new(10, 2, "BTC-USD", Sell, Limit, Some(101), 1, Gtc, false, Stp::None),
            mass_cancel(11, 2, None, Some(Buy)),
            mass_cancel(12, 1, None, None),
            mass_cancel(13, 1, None, None),
            cancel(17, 1, 4),
        ],
        events: vec![
            accepted(1, 1, 1, "BTC-USD", Buy, Limit, Gtc, 5, Some(100)),
            accepted(2, 2, 1, "BTC-USD", Sell, Limit, Gtc, 2, Some(110)),
            accepted(3, 3, 2, "BTC-USD", Buy, Limit, Gtc, 3, Some(101)),
            accepted(4, 4, 1, "ETH-USD", Buy, Limit, Gtc, 7, Some(50)),
            accepted(5, 5, 1, "ETH-USD", Sell, Limit, Gtc, 1, Some(55)),
            accepted(6, 6, 1, "BTC-USD", Buy, Limit, Gtc, 4, Some(99)),
            cancelled(7, 1, Mass, 5),
            cancelled(7, 6, Mass, 4),
            mass_cancelled(7, 1, 2),
            mass_cancelled(8, 3, 0),
            mass_cancelled(9, 1, 0),
            accepted(10, 10, 2, "BTC-USD", Sell, Limit, Gtc, 1, Some(101)),
            trade(10, "BTC-USD", 1, 101, 1, (3, 2), (10, 2, Sell), (2, 0)),
            cancelled(11, 3, Mass, 2),
            mass_cancelled(11, 2, 1),
            cancelled(12, 2, Mass, 2),
            cancelled(12, 4, Mass, 7),
            cancelled(12, 5, Mass, 1),
            mass_cancelled(12, 1, 3),
            mass_cancelled(13, 1, 0),
            rejected(17, RejectReason::UnknownOrder, Some(4)),
        ],
        book: vec![],
    }
}

/// `conformance/13_halt_resume`. Lines 19 and 20 (`halt` without a symbol,
/// `resume` of "bad!") are refused by the JSON reader; line 7's price 0
/// reaches the core as `Some(0)`, as the reader passes it.
fn v13() -> Vector {
    use TradingStatus::{Halted, Open};
    Vector {
        name: "13_halt_resume",
        commands: vec![
            new(1, 1, "BTC-USD", Sell, Limit, Some(100), 5, Gtc, false, Stp::None),
            new(2, 2, "BTC-USD", Buy, Limit, Some(90), 5, Gtc, true, Stp::None),
            new(3, 3, "ETH-USD", Sell, Limit, Some(20), 5, Gtc, false, Stp::None),
            halt(4, "BTC-USD"),
            new(5, 2, "BTC-USD", Buy, Limit, Some(100), 1, Gtc, false, Stp::None),
            new(6, 2, "BTC-USD", Buy, Market, None, 1, Ioc, false, Stp::None),
            new(7, 2, "BTC-USD", Buy, Limit, Some(0), 1, Gtc, false, Stp::None),
            new(8, 2, "ETH-USD", Buy, Limit, Some(20), 2, Gtc, false, Stp::None),
            modify(9, 2, 2, None, Some(3)),
            modify(10, 2, 99, None, Some(3)),
            cancel(11, 1, 1),
            halt(12, "BTC-USD"),
            halt(13, "NEW-SYM"),
            new(14, 4, "NEW-SYM", Buy, Limit, Some(5), 1, Gtc, false, Stp::None),
            resume(15, "BTC-USD"),
            new(16, 2, "BTC-USD", Sell, Limit, Some(95), 1, Gtc, true, Stp::None),
            modify(17, 2, 2, Some(95), None),
            new(18, 5, "BTC-USD", Sell, Limit, Some(95), 2, Gtc, false, Stp::None),
            resume(21, "NEW-SYM"),
            new(22, 4, "NEW-SYM", Buy, Limit, Some(5), 1, Gtc, false, Stp::None),
        ],
        events: vec![
            accepted(1, 1, 1, "BTC-USD", Sell, Limit, Gtc, 5, Some(100)),
            accepted(2, 2, 2, "BTC-USD", Buy, Limit, Gtc, 5, Some(90)),
            accepted(3, 3, 3, "ETH-USD", Sell, Limit, Gtc, 5, Some(20)),
            status(4, "BTC-USD", Halted),
            rejected(5, RejectReason::Halted, None),
            rejected(6, RejectReason::Halted, None),
            rejected(7, RejectReason::InvalidPrice, None),
            accepted(8, 8, 2, "ETH-USD", Buy, Limit, Gtc, 2, Some(20)),
            trade(8, "ETH-USD", 1, 20, 2, (3, 3), (8, 2, Buy), (3, 0)),
            rejected(9, RejectReason::Halted, Some(2)),
            rejected(10, RejectReason::UnknownOrder, Some(99)),
            cancelled(11, 1, CancelReason::User, 5),
            status(12, "BTC-USD", Halted),
            status(13, "NEW-SYM", Halted),
            rejected(14, RejectReason::Halted, None),
            status(15, "BTC-USD", Open),
            accepted(16, 16, 2, "BTC-USD", Sell, Limit, Gtc, 1, Some(95)),
            rejected(17, RejectReason::WouldTake, Some(2)),
            accepted(18, 18, 5, "BTC-USD", Sell, Limit, Gtc, 2, Some(95)),
            status(21, "NEW-SYM", Open),
            accepted(22, 22, 4, "NEW-SYM", Buy, Limit, Gtc, 1, Some(5)),
        ],
        book: vec![
            ("BTC-USD", vec![(2, 2, 90, 5)], vec![(16, 2, 95, 1), (18, 5, 95, 2)]),
            ("ETH-USD", vec![], vec![(3, 3, 20, 3)]),
            ("NEW-SYM", vec![(22, 4, 5, 1)], vec![]),
        ],
    }
}
