//! The feed against the core: random order flow through an `Exchange`, its
//! events through the `Publisher`, the messages (as bytes) into a client's
//! `FeedBook`, which must equal the exchange's books order by order; and
//! every depth view of the JSON channel rebuilt from its `level` updates
//! must equal the top of those books, checksum included.

use std::collections::BTreeMap;

use matching_core::{
    Action, Command, Config, Event, Exchange, NewOrder, OrderType, Side, Stp, Symbol, Tif, TradingStatus,
};
use matching_proto::feed::FeedMessage;
use matching_proto::json_md::{Level, MdMessage};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

use crate::{FeedBook, LevelBook, LevelChange, Publisher, Sink, view_updates};

/// A client of the feed (it decodes every message from its bytes) and of
/// the JSON views.
struct Client {
    book: FeedBook,
    messages: usize,
    depths: Vec<Option<usize>>,
    /// `(locate, depth index)` → what a subscriber with that depth holds.
    views: BTreeMap<(u32, usize), LevelBook>,
    /// The checksum of the publisher's book before the change in progress,
    /// and the symbol's `md_seq`.
    last: BTreeMap<u32, (u32, u64)>,
}

impl Sink for Client {
    fn message(&mut self, message: &FeedMessage) {
        let mut bytes = Vec::new();
        message.encode(&mut bytes);
        let decoded = FeedMessage::decode(&bytes).expect("a message decodes");
        assert_eq!(&decoded, message);
        self.book.apply(&decoded, |_, _| {}).expect("the feed applies to the client's book");
        self.messages += 1;
    }

    fn level(&mut self, book: &FeedBook, change: &LevelChange) {
        let checksum_now = book.checksum(change.locate);
        let symbol = book.symbol(change.locate).expect("a named symbol");
        let (checksum_before, md_seq) = self.last.get(&change.locate).copied().unwrap_or((0, 0));
        self.last.insert(change.locate, (checksum_now, md_seq + 1));
        for (index, depth) in self.depths.clone().into_iter().enumerate() {
            let mut updates = Vec::new();
            view_updates(book, change, depth, &mut updates);
            let view = self.views.entry((change.locate, index)).or_insert_with(|| {
                // Subscribed before the symbol's first change: an empty book.
                let mut view = LevelBook::new(depth);
                let empty = MdMessage::Book { symbol, md_seq: 0, bids: vec![], asks: vec![], checksum: 0 };
                view.apply(&empty).expect("an empty book");
                view
            });
            for (side, price, qty, before) in updates {
                if qty == 0 {
                    assert!(
                        view.side(side).iter().any(|&(p, _)| p == price),
                        "a level removed that the view did not have"
                    );
                }
                let checksum = if before { checksum_before } else { checksum_now };
                let level = MdMessage::Level { symbol, md_seq: md_seq + 1, side, price, qty, checksum };
                // Checks the checksum after the update (and md_seq for the whole book).
                if let Err(error) = view.apply(&level) {
                    panic!("depth {depth:?}: {error:?}");
                }
            }
            if let Some(depth) = depth {
                assert!(view.bids.len() <= depth && view.asks.len() <= depth);
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    New {
        user: u64,
        symbol: usize,
        side: Side,
        market: bool,
        price: u64,
        qty: u64,
        tif: Tif,
        post_only: bool,
        stp: Stp,
    },
    Cancel {
        user: u64,
        pick: usize,
    },
    Modify {
        user: u64,
        pick: usize,
        price: Option<u64>,
        qty: Option<u64>,
    },
    MassCancel {
        user: u64,
        symbol: Option<usize>,
        side: Option<Side>,
    },
    Halt(usize),
    Resume(usize),
}

const SYMBOLS: [&str; 3] = ["BTC-USD", "ETH-USD", "SOL-USD"];

fn op() -> impl Strategy<Value = Op> {
    let side = prop_oneof![Just(Side::Buy), Just(Side::Sell)];
    let tif = prop_oneof![6 => Just(Tif::Gtc), 1 => Just(Tif::Ioc), 1 => Just(Tif::Fok)];
    let stp = prop_oneof![
        3 => Just(Stp::None),
        1 => Just(Stp::CancelTaker),
        1 => Just(Stp::CancelMaker),
        1 => Just(Stp::CancelBoth)
    ];
    prop_oneof![
        12 => (1..4u64, 0..3usize, side.clone(), prop::bool::weighted(0.05), 90..110u64, 1..20u64, tif, prop::bool::weighted(0.1), stp)
            .prop_map(|(user, symbol, side, market, price, qty, tif, post_only, stp)| Op::New {
                user, symbol, side, market, price, qty, tif, post_only, stp
            }),
        3 => (1..4u64, any::<usize>()).prop_map(|(user, pick)| Op::Cancel { user, pick }),
        3 => (1..4u64, any::<usize>(), prop::option::of(88..112u64), prop::option::of(1..25u64))
            .prop_map(|(user, pick, price, qty)| Op::Modify { user, pick, price, qty }),
        1 => (1..4u64, prop::option::of(0..3usize), prop::option::of(side))
            .prop_map(|(user, symbol, side)| Op::MassCancel { user, symbol, side }),
        1 => (0..3usize).prop_map(Op::Halt),
        1 => (0..3usize).prop_map(Op::Resume),
    ]
}

fn symbol(i: usize) -> Symbol {
    Symbol::new(SYMBOLS[i]).unwrap()
}

/// Runs `ops` and checks the client's book after every command.
fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut exchange = Exchange::new(Config::default());
    let mut publisher = Publisher::new();
    let mut client = Client {
        book: FeedBook::new(),
        messages: 0,
        depths: vec![None, Some(10), Some(12)],
        views: BTreeMap::new(),
        last: BTreeMap::new(),
    };
    publisher.start_session(0, [], &mut client);
    let mut ids: Vec<u64> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let seq = i as u64 + 1;
        let pick = |pick: usize| if ids.is_empty() { 1 } else { ids[pick % ids.len()] };
        let action = match *op {
            Op::New { user, symbol: s, side, market, price, qty, tif, post_only, stp } => {
                ids.push(seq);
                Action::New(NewOrder {
                    order_id: seq,
                    user,
                    symbol: symbol(s),
                    side,
                    order_type: if market { OrderType::Market } else { OrderType::Limit },
                    price: (!market).then_some(price),
                    qty,
                    tif: if market { Tif::Ioc } else { tif },
                    post_only: post_only && !market,
                    stp,
                })
            }
            Op::Cancel { user, pick: p } => Action::Cancel { user, order_id: pick(p) },
            Op::Modify { user, pick: p, price, qty } => Action::Modify { user, order_id: pick(p), price, qty },
            Op::MassCancel { user, symbol: s, side } => Action::MassCancel { user, symbol: s.map(symbol), side },
            Op::Halt(s) => Action::Halt { symbol: symbol(s) },
            Op::Resume(s) => Action::Resume { symbol: symbol(s) },
        };
        let mut events: Vec<Event> = Vec::new();
        exchange.process(&Command::new(seq, action), &mut events);
        for event in &events {
            publisher.on_event(event, &mut client);
        }
        publisher.end_command(&mut client);
        check(&exchange, &client, publisher.book())?;
    }
    Ok(())
}

fn check(exchange: &Exchange, client: &Client, published: &FeedBook) -> Result<(), TestCaseError> {
    for name in SYMBOLS {
        let symbol = Symbol::new(name).unwrap();
        let Some(book) = exchange.book(&symbol) else {
            let resting = |l| client.book.orders(l, Side::Buy).len() + client.book.orders(l, Side::Sell).len();
            prop_assert_eq!(client.book.locate(&symbol).map_or(0, resting), 0);
            continue;
        };
        let Some(locate) = client.book.locate(&symbol) else {
            prop_assert!(book.orders(Side::Buy).next().is_none() && book.orders(Side::Sell).next().is_none());
            prop_assert_eq!(book.status(), TradingStatus::Open);
            continue;
        };
        prop_assert_eq!(client.book.halted(locate), book.status() == TradingStatus::Halted);
        for side in [Side::Buy, Side::Sell] {
            let expected: Vec<(u64, u64, u64)> = book.orders(side).map(|o| (o.order_id, o.price, o.qty)).collect();
            let rebuilt: Vec<(u64, u64, u64)> =
                client.book.orders(locate, side).iter().map(|o| (o.order_id, o.price, o.qty)).collect();
            prop_assert_eq!(&rebuilt, &expected, "{} {:?}", name, side);
            let levels = client.book.levels(locate, side);
            for (index, depth) in client.depths.iter().enumerate() {
                let view = client.views.get(&(locate, index)).map(|v| v.side(side)).unwrap_or_default();
                let want: Vec<Level> = levels.iter().copied().take(depth.unwrap_or(usize::MAX)).collect();
                prop_assert_eq!(view, want, "{} {:?} depth {:?}", name, side, depth);
            }
        }
        prop_assert_eq!(client.book.checksum(locate), published.checksum(locate));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_feed_rebuilds_the_exchange_book(ops in prop::collection::vec(op(), 1..400)) {
        run(&ops)?;
    }
}

#[test]
fn a_long_stream_rebuilds_exactly() {
    // One long deterministic stream too (deep books: many levels per view).
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let ops = prop::collection::vec(op(), 5000).new_tree(&mut runner).unwrap().current();
    run(&ops).unwrap();
}

#[test]
fn a_corrupted_book_fails_its_checksum() {
    let mut book = FeedBook::new();
    let symbol = Symbol::new("BTC-USD").unwrap();
    book.apply(&FeedMessage::SymbolDirectory { locate: 1, seq: 1, symbol }, |_, _| {}).unwrap();
    for (id, price) in [(1, 100), (2, 101), (3, 99)] {
        let add = FeedMessage::AddOrder { locate: 1, seq: id, order_id: id, side: Side::Buy, qty: 5, price };
        book.apply(&add, |_, _| {}).unwrap();
    }
    let good = book.checksum(1);
    let mut corrupted = book.clone();
    corrupted.apply(&FeedMessage::OrderCancel { locate: 1, seq: 9, order_id: 2, qty: 1 }, |_, _| {}).unwrap();
    assert_ne!(corrupted.checksum(1), good);
    // A message for an unknown order is refused and changes nothing.
    let before = book.levels(1, Side::Buy);
    assert!(book.apply(&FeedMessage::OrderDelete { locate: 1, seq: 9, order_id: 77 }, |_, _| {}).is_err());
    assert_eq!(book.levels(1, Side::Buy), before);
}

#[test]
fn a_restored_publisher_continues_as_if_it_never_stopped() {
    let mut exchange = Exchange::new(Config::default());
    let mut a = Publisher::new();
    let mut sink = Client {
        book: FeedBook::new(),
        messages: 0,
        depths: vec![None],
        views: BTreeMap::new(),
        last: BTreeMap::new(),
    };
    a.start_session(0, [], &mut sink);
    let sym = symbol(0);
    let new = |seq: u64, side, price, qty| {
        Command::new(
            seq,
            Action::New(NewOrder {
                order_id: seq,
                user: seq,
                symbol: sym,
                side,
                order_type: OrderType::Limit,
                price: Some(price),
                qty,
                tif: Tif::Gtc,
                post_only: false,
                stp: Stp::None,
            }),
        )
    };
    for command in [new(1, Side::Buy, 100, 5), new(2, Side::Buy, 100, 3), new(3, Side::Sell, 105, 2)] {
        let mut events: Vec<Event> = Vec::new();
        exchange.process(&command, &mut events);
        events.iter().for_each(|e| a.on_event(e, &mut sink));
        a.end_command(&mut sink);
    }
    let view = exchange.book(&sym).unwrap();
    let (bids, asks): (Vec<_>, Vec<_>) = (view.orders(Side::Buy).collect(), view.orders(Side::Sell).collect());
    let orders: Vec<_> = bids.into_iter().chain(asks).collect();
    let mut b = Publisher::new();
    b.restore([(1, sym, TradingStatus::Open, &orders[..])]).unwrap();
    assert_eq!(b.book().orders(1, Side::Buy), a.book().orders(1, Side::Buy));
    assert_eq!(b.locates(), a.locates());
}
