//! Differential test: the sharded [`Engine`] against one single-threaded
//! [`Exchange`] (the oracle) on seeded random multi-symbol command streams.
//!
//! Prints `seed = N (rerun with PROPTEST_SEED=N)`; the seed decides the
//! whole run, shrinking included. `PROPTEST_CASES` raises the number of cases.
//!
//! A case is a list of abstract operations ([`Op`]) and an engine layout
//! (1, 2 or 4 shards; rings of 1 to 16 slots, `batch_max` 1 to 64, an
//! external ring of 1 to 4, so every back-pressure path runs; the smallest
//! route window, so cancels and modifies of orders older than 64 seqs are
//! broadcast; a random wait strategy and clock). Operations are made
//! concrete against the oracle's state as it runs ("cancel an order resting
//! for 64 seqs or more" picks one), the oracle recording what the engine
//! must deliver. The engine is then fed the same stream in random pieces
//! (`submit`, `submit_batch`, `try_submit_batch`, `submit_external`) while
//! a reader thread drains it, and at random points the submitting thread
//! asks for the state hash, a book, the best prices and the depth, which
//! must equal the oracle's at that point. Finally the merged stream must
//! equal the oracle's item for item (externals at exactly their `seq`), the
//! final state hash the oracle's, and the books handed back by `shutdown`
//! the oracle's encoded state byte for byte.
//!
//! `broadcast_modify_keeps_the_holders_would_take` is a fixed reproduction
//! of a failure this test found.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Item, external_payload, first_difference, small_exchange, sym, with_id, with_timeout};
use matching_core::{
    Action, Command, Event, EventKind, Exchange, NewOrder, OrderId, OrderType, RejectReason, Seq, Side, Stp, Symbol,
    Tif, TradingStatus, VALUE_MAX,
};
use matching_pipeline::{Answer, Clock, Engine, EngineConfig, Query, WaitStrategy};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestError};

/// The engine's smallest route window: a cancel or modify of an order
/// `ROUTE_WINDOW` or more seqs older than itself is broadcast.
const ROUTE_WINDOW: u64 = 64;
const TOO_BIG: u64 = VALUE_MAX + 1;
/// Prices in `BAND_LOW ..= BAND_LOW + BAND_WIDTH`, so books cross.
const BAND_LOW: u64 = 95;
const BAND_WIDTH: u64 = 10;
const USERS: u64 = 4;
/// The symbols a case may use (the first 2 to 6). Over 4 shards they land
/// on shards 1, 2, 3, 0, 1, 0; over 2 shards on 1, 0, 1, 0, 1, 0.
const SYMBOLS: [&str; 6] = ["B", "C", "D", "A", "BTC-USD", "SOL-USD"];

// ----- generated operations -----

/// A price or quantity: in range, or one of the invalid values.
#[derive(Clone, Copy, Debug)]
enum Value {
    Valid(u8),
    Zero,
    TooBig,
}

impl Value {
    fn price(self) -> u64 {
        match self {
            Value::Valid(offset) => BAND_LOW + offset as u64 % (BAND_WIDTH + 1),
            Value::Zero => 0,
            Value::TooBig => TOO_BIG,
        }
    }

    fn qty(self) -> u64 {
        match self {
            Value::Valid(qty) => 1 + qty as u64 % 12,
            Value::Zero => 0,
            Value::TooBig => TOO_BIG,
        }
    }
}

/// What makes an invalid new order invalid.
#[derive(Clone, Copy, Debug)]
enum Flaw {
    UserTooBig,
    MarketGtc,
    PostOnlyIoc,
    PostOnlyMarket,
    LimitWithoutPrice,
    MarketWithPrice,
    Price(Value),
    Qty(Value),
}

#[derive(Clone, Copy, Debug)]
enum UserPick {
    /// The user of the target order (a random user when it has none).
    Owner,
    /// Another user than the owner.
    Other(u8),
    TooBig,
}

/// The order a cancel or modify names.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// An order resting now.
    Live(u16),
    /// An order resting now that is at least `ROUTE_WINDOW` seqs old, so the
    /// command is broadcast (any live order when there is none).
    OldLive(u16),
    /// An order that was accepted and no longer rests.
    Dead(u16),
    /// A past seq that was not an accepted order (a cancel, an external
    /// item, a rejected order).
    NotAnOrder(u16),
    /// A seq not given yet.
    Future(u8),
    Zero,
    TooBig,
}

#[derive(Clone, Copy, Debug)]
enum PricePick {
    Band(u8),
    /// The price of the best opposite order (a post-only order that moves
    /// there would take: `would_take`).
    Cross,
    Invalid(Value),
}

#[derive(Clone, Copy, Debug)]
enum QtyPick {
    Valid(u8),
    /// At or below the remaining quantity (reduced in place).
    Reduce(u8),
    Invalid(Value),
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Limit {
        user: u8,
        symbol: u8,
        side: Side,
        price: u8,
        qty: u8,
        tif: Tif,
        post_only: bool,
        stp: Stp,
    },
    Market {
        user: u8,
        symbol: u8,
        side: Side,
        qty: u8,
        tif: Tif,
        stp: Stp,
    },
    Invalid {
        user: u8,
        symbol: u8,
        side: Side,
        flaw: Flaw,
    },
    Cancel {
        user: UserPick,
        target: Target,
    },
    Modify {
        user: UserPick,
        target: Target,
        price: Option<PricePick>,
        qty: Option<QtyPick>,
    },
    External,
    /// A mass cancel of `user` (`None`: a user out of range), in one symbol
    /// or all (spanning every shard), on one side or both.
    MassCancel {
        user: Option<u8>,
        symbol: Option<u8>,
        side: Option<Side>,
    },
    Halt(u8),
    /// Resumes a halted symbol when there is one (else any symbol).
    Resume(u8),
}

/// How a piece of the stream is handed to the engine.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Submit,
    Batch,
    TryBatch,
}

/// A mid-stream check after `at` items: the state hash, and the book, best
/// prices and depth (`levels`) of one symbol.
#[derive(Clone, Copy, Debug)]
struct CheckSpec {
    at: u16,
    symbol: u8,
    levels: u8,
}

#[derive(Clone, Debug)]
struct Layout {
    shards: usize,
    input_ring: usize,
    output_ring: usize,
    external_ring: usize,
    batch_max: usize,
    wait: WaitStrategy,
    clock: Clock,
}

#[derive(Clone, Debug)]
struct Case {
    layout: Layout,
    symbols: usize,
    ops: Vec<Op>,
    /// Cycled: each piece of the stream takes the next `(mode, size)`.
    plan: Vec<(Mode, u8)>,
    checks: Vec<CheckSpec>,
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

fn stp() -> impl Strategy<Value = Stp> {
    prop_oneof![
        4 => Just(Stp::None),
        2 => Just(Stp::CancelTaker),
        2 => Just(Stp::CancelMaker),
        2 => Just(Stp::CancelBoth),
    ]
}

fn invalid_value() -> impl Strategy<Value = Value> {
    prop_oneof![Just(Value::Zero), Just(Value::TooBig)]
}

fn user_pick() -> impl Strategy<Value = UserPick> {
    prop_oneof![85 => Just(UserPick::Owner), 12 => any::<u8>().prop_map(UserPick::Other), 3 => Just(UserPick::TooBig)]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        40 => any::<u16>().prop_map(Target::Live),
        40 => any::<u16>().prop_map(Target::OldLive),
        8 => any::<u16>().prop_map(Target::Dead),
        5 => any::<u16>().prop_map(Target::NotAnOrder),
        3 => any::<u8>().prop_map(Target::Future),
        2 => Just(Target::Zero),
        2 => Just(Target::TooBig),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let limit_tif = prop_oneof![6 => Just(Tif::Gtc), 2 => Just(Tif::Ioc), 2 => Just(Tif::Fok)];
    let limit = (0u8..4, any::<u8>(), side(), any::<u8>(), any::<u8>(), limit_tif, prop::bool::weighted(0.3), stp())
        .prop_map(|(user, symbol, side, price, qty, tif, post_only, stp)| Op::Limit {
            user,
            symbol,
            side,
            price,
            qty,
            tif,
            // Post-only on anything but gtc is an `Invalid` op.
            post_only: post_only && tif == Tif::Gtc,
            stp,
        });
    let market_tif = prop_oneof![Just(Tif::Ioc), Just(Tif::Fok)];
    let market = (0u8..4, any::<u8>(), side(), any::<u8>(), market_tif, stp())
        .prop_map(|(user, symbol, side, qty, tif, stp)| Op::Market { user, symbol, side, qty, tif, stp });
    let flaw = prop_oneof![
        Just(Flaw::UserTooBig),
        Just(Flaw::MarketGtc),
        Just(Flaw::PostOnlyIoc),
        Just(Flaw::PostOnlyMarket),
        Just(Flaw::LimitWithoutPrice),
        Just(Flaw::MarketWithPrice),
        invalid_value().prop_map(Flaw::Price),
        invalid_value().prop_map(Flaw::Qty),
    ];
    let invalid = (0u8..4, any::<u8>(), side(), flaw).prop_map(|(user, symbol, side, flaw)| Op::Invalid {
        user,
        symbol,
        side,
        flaw,
    });
    let cancel = (user_pick(), target()).prop_map(|(user, target)| Op::Cancel { user, target });
    let price_pick = prop_oneof![
        6 => any::<u8>().prop_map(PricePick::Band),
        3 => Just(PricePick::Cross),
        1 => invalid_value().prop_map(PricePick::Invalid),
    ];
    let qty_pick = prop_oneof![
        5 => any::<u8>().prop_map(QtyPick::Valid),
        4 => any::<u8>().prop_map(QtyPick::Reduce),
        1 => invalid_value().prop_map(QtyPick::Invalid),
    ];
    let modify =
        (user_pick(), target(), prop::option::weighted(0.6, price_pick), prop::option::weighted(0.7, qty_pick))
            .prop_map(|(user, target, price, qty)| Op::Modify { user, target, price, qty });
    let mass_cancel = (prop::option::weighted(0.95, 0u8..4), prop::option::of(any::<u8>()), prop::option::of(side()))
        .prop_map(|(user, symbol, side)| Op::MassCancel { user, symbol, side });
    prop_oneof![
        40 => limit,
        6 => market,
        4 => invalid,
        20 => cancel,
        22 => modify,
        4 => Just(Op::External),
        4 => mass_cancel,
        1 => any::<u8>().prop_map(Op::Halt),
        3 => any::<u8>().prop_map(Op::Resume),
    ]
}

fn layout() -> impl Strategy<Value = Layout> {
    let shards = prop_oneof![Just(1usize), Just(2), Just(4)];
    // Busy spinning on 2 cores with up to 6 threads only makes progress
    // when the scheduler preempts, so it is drawn rarely (and last, as
    // shrinking moves towards the first alternative).
    let wait = prop_oneof![
        4 => Just(WaitStrategy::SpinYield),
        4 => Just(WaitStrategy::Park),
        1 => Just(WaitStrategy::BusySpin),
    ];
    let clock = prop_oneof![Just(Clock::Zero), Just(Clock::Wall)];
    (shards, 1usize..=16, 1usize..=16, 1usize..=4, 1usize..=64, wait, clock).prop_map(
        |(shards, input_ring, output_ring, external_ring, batch_max, wait, clock)| Layout {
            shards,
            input_ring,
            output_ring,
            external_ring,
            batch_max,
            wait,
            clock,
        },
    )
}

fn case() -> impl Strategy<Value = Case> {
    let mode = prop_oneof![Just(Mode::Submit), Just(Mode::Batch), Just(Mode::TryBatch)];
    let plan = vec((mode, 1u8..=64), 1..16);
    (layout(), 2usize..=6, vec(op(), 20..450), plan, vec((any::<u16>(), any::<u8>(), any::<u8>()), 0..6)).prop_map(
        |(layout, symbols, ops, plan, checks)| {
            let len = ops.len() as u16;
            let checks = checks
                .into_iter()
                .map(|(at, symbol, levels)| CheckSpec { at: at % (len + 1), symbol, levels })
                .collect();
            Case { layout, symbols, ops, plan, checks }
        },
    )
}

// ----- making operations concrete, with the oracle -----

/// What the oracle expects at a mid-stream check.
#[derive(Debug)]
struct Expected {
    at: usize,
    state_hash: u64,
    symbol: Symbol,
    levels: usize,
    book: Answer,
    best: Answer,
    depth: Answer,
}

/// A case made concrete: the stream (`None` an external item), what the
/// engine must deliver, and what it must answer.
struct Concrete {
    stream: Vec<Option<Action>>,
    items: Vec<Item>,
    checks: Vec<Expected>,
    final_hash: u64,
    final_state: Vec<u8>,
    /// Cancels and modifies the engine broadcasts (their order is
    /// `ROUTE_WINDOW` or more seqs older), and of those, the ones that
    /// reached a resting order of their own user, with its symbol.
    broadcasts: u64,
    broadcast_hits: Vec<Symbol>,
    /// For each mass cancel of every symbol, the symbols of the orders it
    /// cancelled (to count those that spanned several shards).
    mass_spans: Vec<Vec<Symbol>>,
}

fn answers(exchange: &Exchange, symbol: Symbol, levels: usize) -> (Answer, Answer, Answer) {
    match exchange.book(&symbol) {
        Some(book) => (
            Answer::Book {
                bids: book.orders(Side::Buy).collect(),
                asks: book.orders(Side::Sell).collect(),
                status: book.status(),
            },
            Answer::Best { bid: book.best_bid(), ask: book.best_ask() },
            Answer::Depth {
                bids: book.depth(Side::Buy).take(levels).collect(),
                asks: book.depth(Side::Sell).take(levels).collect(),
            },
        ),
        None => (
            Answer::Book { bids: Vec::new(), asks: Vec::new(), status: TradingStatus::Open },
            Answer::Best { bid: None, ask: None },
            Answer::Depth { bids: Vec::new(), asks: Vec::new() },
        ),
    }
}

fn pick<T: Copy>(pool: &[T], index: u16) -> Option<T> {
    (!pool.is_empty()).then(|| pool[index as usize % pool.len()])
}

fn concretize(case: &Case) -> Concrete {
    let symbols: Vec<Symbol> = SYMBOLS[..case.symbols].iter().map(|name| sym(name)).collect();
    let mut exchange: Exchange = Exchange::new(small_exchange());
    // The user of every accepted order, by id (= seq).
    let mut accepted: Vec<(OrderId, u64)> = Vec::new();
    let mut not_orders: Vec<Seq> = Vec::new();
    let mut concrete = Concrete {
        stream: Vec::with_capacity(case.ops.len()),
        items: Vec::new(),
        checks: Vec::new(),
        final_hash: 0,
        final_state: Vec::new(),
        broadcasts: 0,
        broadcast_hits: Vec::new(),
        mass_spans: Vec::new(),
    };
    let mut checks: Vec<CheckSpec> = case.checks.clone();
    checks.sort_by_key(|c| c.at);
    let mut next_check = 0;
    let record_checks = |at: usize, exchange: &Exchange, next_check: &mut usize, out: &mut Vec<Expected>| {
        while *next_check < checks.len() && checks[*next_check].at as usize == at {
            let spec = checks[*next_check];
            let symbol = symbols[spec.symbol as usize % symbols.len()];
            let levels = match spec.levels % 4 {
                0 => usize::MAX,
                _ => 1 + spec.levels as usize % 5,
            };
            let (book, best, depth) = answers(exchange, symbol, levels);
            out.push(Expected { at, state_hash: exchange.state_hash(), symbol, levels, book, best, depth });
            *next_check += 1;
        }
    };
    for (i, op) in case.ops.iter().enumerate() {
        record_checks(i, &exchange, &mut next_check, &mut concrete.checks);
        let seq = i as Seq + 1;
        let live: Vec<(OrderId, u64)> =
            accepted.iter().copied().filter(|&(id, _)| exchange.order(id).is_some()).collect();
        let old_live: Vec<(OrderId, u64)> = live.iter().copied().filter(|&(id, _)| seq - id >= ROUTE_WINDOW).collect();
        let dead: Vec<(OrderId, u64)> =
            accepted.iter().copied().filter(|&(id, _)| exchange.order(id).is_none()).collect();
        let resolve_target = |target: Target| -> (OrderId, Option<u64>) {
            let known = |pool: &[(OrderId, u64)], index| pick(pool, index).map(|(id, user)| (id, Some(user)));
            let chosen = match target {
                Target::Live(index) => known(&live, index),
                Target::OldLive(index) => known(&old_live, index).or_else(|| known(&live, index)),
                Target::Dead(index) => known(&dead, index),
                Target::NotAnOrder(index) => pick(&not_orders, index).map(|id| (id, None)),
                Target::Future(ahead) => Some((seq + ahead as u64, None)),
                Target::Zero => Some((0, None)),
                Target::TooBig => Some((TOO_BIG, None)),
            };
            chosen.unwrap_or((seq + 1, None))
        };
        let resolve_user = |pick: UserPick, owner: Option<u64>| -> u64 {
            let owner = owner.unwrap_or(seq % USERS);
            match pick {
                UserPick::Owner => owner,
                UserPick::Other(n) => (owner + 1 + n as u64 % (USERS - 1)) % USERS,
                UserPick::TooBig => TOO_BIG,
            }
        };
        let symbol_of = |index: u8| symbols[index as usize % symbols.len()];
        let action = match *op {
            Op::Limit { user, symbol, side, price, qty, tif, post_only, stp } => {
                let price = Value::Valid(price).price();
                let order = NewOrder::limit(0, user as u64, symbol_of(symbol), side, price, Value::Valid(qty).qty());
                Some(Action::New(order.with_tif(tif).with_post_only(post_only).with_stp(stp)))
            }
            Op::Market { user, symbol, side, qty, tif, stp } => {
                let order = NewOrder::market(0, user as u64, symbol_of(symbol), side, 1 + qty as u64 % 30);
                Some(Action::New(order.with_tif(tif).with_stp(stp)))
            }
            Op::Invalid { user, symbol, side, flaw } => {
                let mut order = NewOrder::limit(0, user as u64, symbol_of(symbol), side, BAND_LOW + 5, 3);
                match flaw {
                    Flaw::UserTooBig => order.user = TOO_BIG,
                    Flaw::MarketGtc => {
                        order = NewOrder::market(0, user as u64, order.symbol, side, 3).with_tif(Tif::Gtc);
                    }
                    Flaw::PostOnlyIoc => order = order.with_tif(Tif::Ioc).with_post_only(true),
                    Flaw::PostOnlyMarket => {
                        order = NewOrder::market(0, user as u64, order.symbol, side, 3).with_post_only(true);
                    }
                    Flaw::LimitWithoutPrice => order.price = None,
                    Flaw::MarketWithPrice => {
                        order.order_type = OrderType::Market;
                        order.tif = Tif::Ioc;
                    }
                    Flaw::Price(value) => order.price = Some(value.price()),
                    Flaw::Qty(value) => order.qty = value.qty(),
                }
                Some(Action::New(order))
            }
            Op::Cancel { user, target } => {
                let (order_id, owner) = resolve_target(target);
                Some(Action::Cancel { user: resolve_user(user, owner), order_id })
            }
            Op::Modify { user, target, price, qty } => {
                let (order_id, owner) = resolve_target(target);
                let resting = exchange.order(order_id);
                let price = price.map(|pick| match (pick, resting) {
                    (PricePick::Band(offset), _) => Value::Valid(offset).price(),
                    (PricePick::Cross, Some((symbol, order))) => {
                        let book = exchange.book(&symbol).expect("a resting order's book");
                        let opposite = match order.side {
                            Side::Buy => book.best_ask(),
                            Side::Sell => book.best_bid(),
                        };
                        opposite.map_or(order.price, |(price, _)| price)
                    }
                    (PricePick::Cross, None) => BAND_LOW + BAND_WIDTH / 2,
                    (PricePick::Invalid(value), _) => value.price(),
                });
                let qty = qty.map(|pick| match (pick, resting) {
                    (QtyPick::Valid(qty), _) => Value::Valid(qty).qty(),
                    (QtyPick::Reduce(n), Some((_, order))) => order.qty - (n as u64 % order.qty),
                    (QtyPick::Reduce(n), None) => 1 + n as u64 % 5,
                    (QtyPick::Invalid(value), _) => value.qty(),
                });
                Some(Action::Modify { user: resolve_user(user, owner), order_id, price, qty })
            }
            Op::External => None,
            Op::MassCancel { user, symbol, side } => Some(Action::MassCancel {
                user: user.map_or(TOO_BIG, |user| user as u64),
                symbol: symbol.map(symbol_of),
                side,
            }),
            Op::Halt(symbol) => Some(Action::Halt { symbol: symbol_of(symbol) }),
            Op::Resume(index) => {
                let halted: Vec<Symbol> = symbols
                    .iter()
                    .copied()
                    .filter(|s| exchange.book(s).is_some_and(|b| b.status() == TradingStatus::Halted))
                    .collect();
                let symbol = pick(&halted, index as u16).unwrap_or(symbol_of(index));
                Some(Action::Resume { symbol })
            }
        };
        if let Some(Action::MassCancel { user, symbol: None, side }) = action {
            let spanned = live
                .iter()
                .filter_map(|&(id, _)| exchange.order(id))
                .filter(|(_, order)| order.user == user && side.is_none_or(|s| s == order.side))
                .map(|(symbol, _)| symbol)
                .collect();
            concrete.mass_spans.push(spanned);
        }
        // Broadcasts, as the sequencer decides them.
        if let Some(Action::Cancel { user, order_id } | Action::Modify { user, order_id, .. }) = action
            && (1..seq).contains(&order_id)
            && seq - order_id >= ROUTE_WINDOW
        {
            concrete.broadcasts += 1;
            if let Some((symbol, order)) = exchange.order(order_id)
                && order.user == user
            {
                concrete.broadcast_hits.push(symbol);
            }
        }
        match action {
            Some(action) => {
                let command = Command::new(seq, with_id(action, seq));
                let before = concrete.items.len();
                let mut sink = |event: &Event| concrete.items.push(Item::Event(*event));
                exchange.process(&command, &mut sink);
                let was_accepted = concrete.items[before..]
                    .iter()
                    .any(|item| matches!(item, Item::Event(Event { kind: EventKind::Accepted { .. }, .. })));
                match action {
                    Action::New(order) if was_accepted => accepted.push((seq, order.user)),
                    _ => not_orders.push(seq),
                }
            }
            None => {
                concrete.items.push(Item::External(seq, external_payload(seq)));
                not_orders.push(seq);
            }
        }
        // Submitted with a wrong id: the sequencer must overwrite it.
        concrete.stream.push(action.map(|action| with_id(action, 0)));
    }
    record_checks(case.ops.len(), &exchange, &mut next_check, &mut concrete.checks);
    concrete.final_hash = exchange.state_hash();
    concrete.final_state = exchange.encode_state();
    exchange.validate().expect("the oracle's invariants");
    concrete
}

// ----- running the engine -----

/// Statistics over the whole run, to show the test exercised what it claims.
static CASES_RUN: AtomicU64 = AtomicU64::new(0);
static BROADCASTS: AtomicU64 = AtomicU64::new(0);
static BROADCAST_HITS: AtomicU64 = AtomicU64::new(0);
/// Broadcast hits whose order is on a shard other than 0 of several.
static BROADCAST_HITS_OFF_SHARD_0: AtomicU64 = AtomicU64::new(0);
static MID_STREAM_CHECKS: AtomicU64 = AtomicU64::new(0);
/// Mass cancels of every symbol, and of those the ones whose cancels came
/// from two shards or more.
static MASS_SPANS: AtomicU64 = AtomicU64::new(0);
static MASS_SPANS_MULTI_SHARD: AtomicU64 = AtomicU64::new(0);
static EXTERNALS: AtomicU64 = AtomicU64::new(0);

/// The next place the stream must be cut: an external item or a check.
fn cut_after(stream: &[Option<Action>], checks: &[Expected], from: usize) -> usize {
    let external = stream[from..].iter().position(Option::is_none).map_or(stream.len(), |n| from + n);
    let check = checks.iter().map(|c| c.at).find(|&at| at > from).unwrap_or(stream.len());
    external.min(check)
}

fn run_case(case: &Case, concrete: &Concrete) -> Result<(), String> {
    let layout = &case.layout;
    let config = EngineConfig {
        shards: layout.shards,
        exchange: small_exchange(),
        input_ring: layout.input_ring,
        output_ring: layout.output_ring,
        external_ring: layout.external_ring,
        batch_max: layout.batch_max,
        route_window: ROUTE_WINDOW as usize,
        wait: layout.wait,
        clock: layout.clock,
        ..EngineConfig::default()
    };
    let (engine, reader) = Engine::<u32>::start(config).map_err(|e| e.to_string())?;
    let reader = common::drain(reader);
    let stream = &concrete.stream;
    let mut checks = concrete.checks.iter().peekable();
    let mut pos = 0;
    let mut piece = 0;
    loop {
        while let Some(check) = checks.next_if(|c| c.at == pos) {
            MID_STREAM_CHECKS.fetch_add(1, Ordering::Relaxed);
            let at = check.at;
            if engine.next_seq() != at as Seq + 1 {
                return Err(format!("after {at} items next_seq is {}", engine.next_seq()));
            }
            let hash = engine.state_hash().expect("state_hash");
            if hash != check.state_hash {
                return Err(format!("after {at} items: engine state hash {hash:#x}, oracle {:#x}", check.state_hash));
            }
            for (query, want) in [
                (Query::Book(check.symbol), &check.book),
                (Query::Best(check.symbol), &check.best),
                (Query::Depth(check.symbol, check.levels), &check.depth),
            ] {
                let got = engine.query(query).expect("query");
                if &got != want {
                    return Err(format!("after {at} items {query:?}: engine {got:?}\noracle {want:?}"));
                }
            }
        }
        if pos == stream.len() {
            break;
        }
        let seq = pos as Seq + 1;
        let Some(action) = stream[pos] else {
            let got = engine.submit_external(external_payload(seq)).expect("submit_external");
            if got != seq {
                return Err(format!("submit_external gave seq {got}, expected {seq}"));
            }
            pos += 1;
            continue;
        };
        let (mode, size) = case.plan[piece % case.plan.len()];
        piece += 1;
        let end = cut_after(stream, &concrete.checks, pos).min(pos + size as usize);
        let actions: Vec<Action> = stream[pos..end].iter().map(|a| a.expect("no external in a piece")).collect();
        match mode {
            Mode::Submit => {
                let got = engine.submit(action).expect("submit");
                if got != seq {
                    return Err(format!("submit gave seq {got}, expected {seq}"));
                }
                pos += 1;
            }
            Mode::Batch => {
                let got = engine.submit_batch(&actions).expect("submit_batch");
                if got != seq {
                    return Err(format!("submit_batch gave first seq {got}, expected {seq}"));
                }
                pos = end;
            }
            Mode::TryBatch => {
                let mut done = 0;
                while done < actions.len() {
                    let (taken, first) = engine.try_submit_batch(&actions[done..]).expect("try_submit_batch");
                    if first != seq + done as Seq {
                        return Err(format!("try_submit_batch gave first seq {first}, expected {}", seq + done as Seq));
                    }
                    if taken > layout.batch_max || taken > actions.len() - done {
                        return Err(format!("try_submit_batch took {taken} of {}", actions.len() - done));
                    }
                    if taken == 0 {
                        // The rings are full: the reader thread is draining them.
                        std::thread::yield_now();
                    }
                    done += taken;
                }
                pos = end;
            }
        }
    }
    let hash = engine.state_hash().expect("state_hash");
    let shard_of: Vec<usize> = concrete.broadcast_hits.iter().map(|symbol| engine.shard_of(symbol)).collect();
    let multi_shard_spans = concrete
        .mass_spans
        .iter()
        .filter(|symbols| {
            let shards: BTreeSet<usize> = symbols.iter().map(|s| engine.shard_of(s)).collect();
            shards.len() > 1
        })
        .count();
    let symbols_of_shard: Vec<Vec<Symbol>> = {
        let names: Vec<Symbol> = SYMBOLS.iter().map(|name| sym(name)).collect();
        (0..layout.shards).map(|s| names.iter().copied().filter(|n| engine.shard_of(n) == s).collect()).collect()
    };
    let exchanges = engine.shutdown();
    let items = reader.join().map_err(|_| "the reader thread panicked".to_string())?;

    if let Some(difference) = first_difference(&items, &concrete.items) {
        let seq = items.iter().zip(&concrete.items).find(|(g, w)| g != w).map_or(0, |(_, w)| w.seq());
        let command = seq.checked_sub(1).and_then(|i| concrete.stream.get(i as usize)).copied().flatten();
        return Err(format!("{difference}the command of seq {seq}: {command:?}"));
    }
    if hash != concrete.final_hash {
        return Err(format!("final state hash: engine {hash:#x}, oracle {:#x}", concrete.final_hash));
    }
    if exchanges.len() != layout.shards {
        return Err(format!("shutdown gave {} exchanges for {} shards", exchanges.len(), layout.shards));
    }
    for (index, exchange) in exchanges.iter().enumerate() {
        exchange.validate().map_err(|e| format!("shard {index}: {e}"))?;
        for symbol in exchange.symbols() {
            if !symbols_of_shard[index].contains(&symbol) {
                return Err(format!("shard {index} holds the book of {symbol}, which is not its symbol"));
            }
        }
    }
    if common::encode_shards(&exchanges) != concrete.final_state {
        return Err("encode_books over the shards differs from the oracle's encode_state".to_string());
    }
    CASES_RUN.fetch_add(1, Ordering::Relaxed);
    BROADCASTS.fetch_add(concrete.broadcasts, Ordering::Relaxed);
    BROADCAST_HITS.fetch_add(concrete.broadcast_hits.len() as u64, Ordering::Relaxed);
    let off_zero = shard_of.iter().filter(|&&s| layout.shards > 1 && s != 0).count();
    BROADCAST_HITS_OFF_SHARD_0.fetch_add(off_zero as u64, Ordering::Relaxed);
    EXTERNALS.fetch_add(concrete.stream.iter().filter(|a| a.is_none()).count() as u64, Ordering::Relaxed);
    MASS_SPANS.fetch_add(concrete.mass_spans.len() as u64, Ordering::Relaxed);
    MASS_SPANS_MULTI_SHARD.fetch_add(multi_shard_spans as u64, Ordering::Relaxed);
    Ok(())
}

fn check_case(case: Case) -> Result<(), TestCaseError> {
    let concrete = concretize(&case);
    let summary = format!("{:?}, {} ops", case.layout, case.ops.len());
    let result = with_timeout("differential-case", Duration::from_secs(30), move || run_case(&case, &concrete));
    result.map_err(|reason| TestCaseError::fail(format!("{reason}\n(layout: {summary})")))
}

#[test]
fn engine_matches_one_exchange() {
    let seed = common::seed();
    let cases = common::cases(256);
    eprintln!("engine_matches_one_exchange: seed = {seed} (rerun with PROPTEST_SEED={seed}), {cases} cases");
    let mut runner = common::runner(seed, cases, 60_000);
    match runner.run(&case(), check_case) {
        Ok(()) => {}
        Err(TestError::Abort(reason)) => panic!("aborted: {reason} (seed = {seed}, rerun with PROPTEST_SEED={seed})"),
        Err(TestError::Fail(reason, case)) => {
            let concrete = concretize(&case);
            let mut commands = String::new();
            for (i, action) in concrete.stream.iter().enumerate() {
                commands.push_str(&format!("  seq {}: {action:?}\n", i + 1));
            }
            panic!(
                "FAILED with seed = {seed} (rerun with PROPTEST_SEED={seed})\n{reason}\nshrunk layout: {:?}, \
                 {} symbols, plan {:?}, checks {:?}\nshrunk commands (None = external item):\n{commands}\
                 (seed = {seed}, rerun with PROPTEST_SEED={seed})",
                case.layout, case.symbols, case.plan, case.checks
            )
        }
    }
    let run = CASES_RUN.load(Ordering::Relaxed);
    let broadcasts = BROADCASTS.load(Ordering::Relaxed);
    let hits = BROADCAST_HITS.load(Ordering::Relaxed);
    let off_zero = BROADCAST_HITS_OFF_SHARD_0.load(Ordering::Relaxed);
    let checks = MID_STREAM_CHECKS.load(Ordering::Relaxed);
    let externals = EXTERNALS.load(Ordering::Relaxed);
    let spans = MASS_SPANS.load(Ordering::Relaxed);
    let spans_multi = MASS_SPANS_MULTI_SHARD.load(Ordering::Relaxed);
    eprintln!(
        "engine_matches_one_exchange: {run} cases, {broadcasts} broadcast cancels/modifies ({hits} of them on a \
         resting order of their user, {off_zero} on a shard other than 0), {checks} mid-stream checks, \
         {externals} external items, {spans} mass cancels of every symbol ({spans_multi} cancelling on 2+ shards)"
    );
    if run >= 16 {
        assert!(broadcasts > 0 && hits > 0 && off_zero > 0, "the run did not exercise broadcasts of old ids");
        assert!(checks > 0 && externals > 0, "the run did not check mid-stream or did not send external items");
        assert!(spans_multi > 0, "the run did not exercise a mass cancel spanning shards");
    }
}

// ----- a fixed reproduction -----

/// A post-only order rests on shard 1 of 2; 64 seqs later (so the modify
/// is broadcast) its owner moves it to a price that crosses the best ask.
/// One exchange rejects the modify `would_take`; the holder shard answers
/// the same, the other shard `unknown_order`, and the merger must keep the
/// holder's answer.
#[test]
fn broadcast_modify_keeps_the_holders_would_take() {
    let b = sym("B");
    assert_eq!(SYMBOLS[0], "B");
    let mut stream = vec![
        Some(Action::New(NewOrder::limit(0, 1, b, Side::Buy, 100, 5).with_post_only(true))),
        Some(Action::New(NewOrder::limit(0, 2, b, Side::Sell, 101, 5))),
    ];
    // Filler: cancels of nothing, so the post-only order ages past the window.
    stream.extend((0..ROUTE_WINDOW).map(|_| Some(Action::Cancel { user: 3, order_id: TOO_BIG })));
    stream.push(Some(Action::Modify { user: 1, order_id: 1, price: Some(101), qty: None }));
    let config = small_exchange();
    let (_, want) = common::oracle(&config, &stream);
    let last_seq = stream.len() as Seq;
    assert_eq!(
        want.last(),
        Some(&Item::Event(Event::rejected(last_seq, RejectReason::WouldTake, Some(1)))),
        "one exchange rejects the modify with would_take"
    );
    let engine_config = EngineConfig {
        shards: 2,
        exchange: config,
        route_window: ROUTE_WINDOW as usize,
        input_ring: 16,
        output_ring: 16,
        ..EngineConfig::default()
    };
    let (got, exchanges, _) = with_timeout("broadcast-would-take", Duration::from_secs(30), move || {
        common::run_engine(engine_config, &stream)
    });
    assert!(exchanges[1].order(1).is_some(), "the post-only order rests on shard 1");
    assert_eq!(first_difference(&got, &want), None, "last item: engine {:?}, oracle {:?}", got.last(), want.last());
}

/// The set of `SYMBOLS` is what the comments above say it is.
#[test]
fn symbols_spread_over_shards_as_documented() {
    let shards_of = |shards: usize| -> Vec<usize> {
        let (engine, reader) =
            Engine::<u32>::start(EngineConfig { shards, exchange: small_exchange(), ..EngineConfig::default() })
                .expect("start");
        let placed = SYMBOLS.iter().map(|name| engine.shard_of(&sym(name))).collect();
        let reader = common::drain(reader);
        engine.shutdown();
        reader.join().expect("reader");
        placed
    };
    assert_eq!(shards_of(4), vec![1, 2, 3, 0, 1, 0]);
    assert_eq!(shards_of(2), vec![1, 0, 1, 0, 1, 0]);
    let distinct: BTreeSet<usize> = shards_of(4).into_iter().collect();
    assert_eq!(distinct.len(), 4);
}
