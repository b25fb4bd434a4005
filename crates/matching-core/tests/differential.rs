//! Differential tests: the fast core (with both level structures) against
//! the slow reference order book (`common::reference`) on seeded random
//! command streams.
//!
//! Every test prints `seed = N (rerun with PROPTEST_SEED=N)`; the seed
//! decides the whole run, shrinking included. `PROPTEST_CASES` raises (or
//! lowers) the number of cases.
//!
//! A generated case is a list of abstract operations (`Op`). Each is turned
//! into a concrete `Command` just before it runs, against the reference's
//! current state: "cancel a live order" picks one of the ids resting right
//! now, "modify to the same price" reads that order's price, and so on. So
//! streams stay meaningful (most cancels and modifies hit live orders) and
//! still shrink well. A failure prints the concrete commands of the shrunk
//! case, one line each.
//!
//! After every command: the same events from the reference and every core,
//! `validate()` on every core, the reference's own invariants, and the whole
//! state compared (books of every symbol in priority order, depth, best
//! prices, `qty_at`, trade ids, order lookup, `encode_state` byte for byte
//! against the reference's encoding, `state_hash` against FNV-1a of it).
//! At the end of a run each test also checks the generator produced every
//! outcome it is meant to (when the run was long enough to tell).
//!
//! - `core_matches_reference`: default limits, 1-3 symbols.
//! - `core_matches_reference_with_tight_limits`: `orders_max` 1-8,
//!   `symbols_max` 1-3, up to 4 symbols, sometimes a fixed instrument list.
//! - `snapshot_round_trip_mid_stream`: snapshots restored at random points;
//!   originals and restored copies run on side by side.
//! - `decode_state_never_panics_on_corrupt_bytes`: truncated and mutated
//!   encodings decode to `Err` or to a valid, canonical state, never a panic.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};

use common::reference::Reference;
use matching_core::{
    Action, BTreeLevels, CancelReason, Command, Config, Event, EventKind, Exchange, LadderLevels, NewOrder, OrderId,
    OrderType, PriceLevels, RadixLevels, RestingOrder, STATE_VERSION, Side, SortedVecLevels, StateError, Stp, Symbol,
    Tif, VALUE_MAX, state_version,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// The first value above the valid range of prices, quantities, ids, users.
const TOO_BIG: u64 = VALUE_MAX + 1;
/// Prices cluster in a narrow band so books cross and levels are reused:
/// `BAND_LOW` up to `BAND_LOW + width`, the width 10 for most cases and 40
/// (skewed by side, see `Harness::price`) for some, so a side may hold many
/// levels.
const BAND_LOW: u64 = 95;
const BAND_OFFSET_MAX: u64 = 40;

/// The symbols a case may use (the first 1 to 4 of them).
fn symbol_names() -> [Symbol; 4] {
    ["BTC-USD", "eth.usd", "X", "a_b/9"].map(|name| Symbol::new(name).expect("valid test symbol"))
}

// ----- generated operations -----

/// The id of a new order.
#[derive(Clone, Copy, Debug)]
enum IdPick {
    /// Its own seq (what `replay` does).
    Seq,
    /// The id of a live resting order (so: duplicate_order_id).
    Live(usize),
    /// The id of an order accepted earlier (maybe gone by now; reusing a
    /// dead id is allowed).
    Past(usize),
    Raw(u64),
}

/// The order a cancel or modify names.
#[derive(Clone, Copy, Debug)]
enum Target {
    Live(usize),
    Past(usize),
    Raw(u64),
}

/// The user of a cancel or modify.
#[derive(Clone, Copy, Debug)]
enum UserPick {
    /// The owner of the target order (or user 0 if it is not live).
    Owner,
    Raw(u64),
}

/// A price: `Band(offset)` is `BAND_LOW + offset % (width + 1)`.
#[derive(Clone, Copy, Debug)]
enum PriceGen {
    Band(u64),
    Raw(u64),
}

#[derive(Clone, Copy, Debug)]
enum PricePick {
    /// The target's current price.
    Same,
    Other(PriceGen),
}

#[derive(Clone, Copy, Debug)]
enum QtyPick {
    /// The target's current remaining plus this (0 or below gives qty 0).
    Delta(i64),
    Abs(u64),
    Raw(u64),
}

#[derive(Clone, Copy, Debug)]
struct NewSpec {
    id: IdPick,
    user: u64,
    symbol: usize,
    side: Side,
    market: bool,
    limit_price: Option<PriceGen>,
    market_price: Option<PriceGen>,
    qty: u64,
    limit_tif: Tif,
    market_tif: Tif,
    post_only: bool,
    stp: Stp,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    New(NewSpec),
    Cancel {
        target: Target,
        user: UserPick,
    },
    Modify {
        target: Target,
        user: UserPick,
        price: Option<PricePick>,
        qty: Option<QtyPick>,
    },
    /// A mass cancel of `user`, in one of the case's symbols (by index) or
    /// all, on one side or both.
    MassCancel {
        user: u64,
        symbol: Option<usize>,
        side: Option<Side>,
    },
    /// Halts one of the case's symbols (by index).
    Halt(usize),
    /// Resumes a halted symbol (the `n`th of those halted now), or, when
    /// none is, one of the case's symbols.
    Resume(usize),
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

fn band_price() -> impl Strategy<Value = PriceGen> {
    (0..=BAND_OFFSET_MAX).prop_map(PriceGen::Band)
}

fn user() -> impl Strategy<Value = u64> {
    prop_oneof![96 => 0u64..4, 1 => Just(VALUE_MAX), 2 => Just(TOO_BIG), 1 => Just(u64::MAX)]
}

fn qty() -> impl Strategy<Value = u64> {
    prop_oneof![
        86 => 1u64..=10,
        4 => 11u64..=1000,
        2 => Just(0u64),
        2 => Just(TOO_BIG),
        2 => Just(VALUE_MAX),
        2 => Just(VALUE_MAX - 1),
        1 => Just(u64::MAX),
    ]
}

fn new_spec() -> impl Strategy<Value = NewSpec> {
    let id = prop_oneof![
        92 => Just(IdPick::Seq),
        3 => any::<usize>().prop_map(IdPick::Live),
        2 => any::<usize>().prop_map(IdPick::Past),
        1 => Just(IdPick::Raw(0)),
        1 => Just(IdPick::Raw(TOO_BIG)),
        1 => Just(IdPick::Raw(VALUE_MAX)),
    ];
    let limit_price = prop_oneof![
        92 => band_price().prop_map(Some),
        2 => Just(None),
        2 => Just(Some(PriceGen::Raw(0))),
        2 => Just(Some(PriceGen::Raw(TOO_BIG))),
        1 => Just(Some(PriceGen::Raw(1))),
        1 => Just(Some(PriceGen::Raw(VALUE_MAX))),
    ];
    let market_price = prop_oneof![95 => Just(None), 5 => band_price().prop_map(Some)];
    let limit_tif = prop_oneof![6 => Just(Tif::Gtc), 2 => Just(Tif::Ioc), 2 => Just(Tif::Fok)];
    let market_tif = prop_oneof![5 => Just(Tif::Ioc), 4 => Just(Tif::Fok), 1 => Just(Tif::Gtc)];
    let stp = prop_oneof![
        4 => Just(Stp::None),
        2 => Just(Stp::CancelTaker),
        2 => Just(Stp::CancelMaker),
        2 => Just(Stp::CancelBoth),
    ];
    (
        (id, user(), 0usize..4, side(), prop::bool::weighted(0.15)),
        (limit_price, market_price, qty()),
        (limit_tif, market_tif, prop::bool::weighted(0.15), stp),
    )
        .prop_map(
            |(
                (id, user, symbol, side, market),
                (limit_price, market_price, qty),
                (limit_tif, market_tif, post_only, stp),
            )| {
                NewSpec {
                    id,
                    user,
                    symbol,
                    side,
                    market,
                    limit_price,
                    market_price,
                    qty,
                    limit_tif,
                    market_tif,
                    post_only,
                    stp,
                }
            },
        )
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        80 => any::<usize>().prop_map(Target::Live),
        8 => any::<usize>().prop_map(Target::Past),
        3 => Just(Target::Raw(0)),
        2 => Just(Target::Raw(TOO_BIG)),
        1 => Just(Target::Raw(u64::MAX)),
        4 => (1u64 << 40..(1u64 << 40) + 100).prop_map(Target::Raw),
    ]
}

fn user_pick() -> impl Strategy<Value = UserPick> {
    prop_oneof![85 => Just(UserPick::Owner), 13 => (0u64..4).prop_map(UserPick::Raw), 2 => Just(UserPick::Raw(TOO_BIG))]
}

fn op() -> impl Strategy<Value = Op> {
    let price = prop_oneof![
        25 => Just(PricePick::Same),
        70 => band_price().prop_map(PricePick::Other),
        2 => Just(PricePick::Other(PriceGen::Raw(0))),
        2 => Just(PricePick::Other(PriceGen::Raw(TOO_BIG))),
        1 => Just(PricePick::Other(PriceGen::Raw(VALUE_MAX))),
    ];
    let qty = prop_oneof![
        40 => (-3i64..=3).prop_map(QtyPick::Delta),
        55 => (1u64..=10).prop_map(QtyPick::Abs),
        2 => Just(QtyPick::Raw(0)),
        2 => Just(QtyPick::Raw(TOO_BIG)),
        1 => Just(QtyPick::Raw(VALUE_MAX)),
    ];
    // Which fields a modify carries: 3% neither (malformed), else price
    // only, qty only or both.
    let modify = (target(), user_pick(), 0u8..100, price, qty).prop_map(|(target, user, fields, price, qty)| {
        let (price, qty) = match fields {
            0..3 => (None, None),
            3..35 => (Some(price), None),
            35..68 => (None, Some(qty)),
            _ => (Some(price), Some(qty)),
        };
        Op::Modify { target, user, price, qty }
    });
    // Halts are rare and resumes three times as common, so a halt lasts a
    // few dozen commands and trading goes on around it.
    let mass_cancel = (user(), prop::option::of(0usize..4), prop::option::of(side()))
        .prop_map(|(user, symbol, side)| Op::MassCancel { user, symbol, side });
    prop_oneof![
        60 => new_spec().prop_map(Op::New),
        15 => (target(), user_pick()).prop_map(|(target, user)| Op::Cancel { target, user }),
        25 => modify,
        3 => mass_cancel,
        1 => (0usize..4).prop_map(Op::Halt),
        3 => any::<usize>().prop_map(Op::Resume),
    ]
}

// ----- the cores under test -----

enum AnyExchange {
    SortedVec(Exchange<SortedVecLevels>),
    BTree(Exchange<BTreeLevels>),
    Ladder(Exchange<LadderLevels>),
    Radix(Exchange<RadixLevels>),
}

/// Runs `$body` with `$e` bound to the exchange whatever its level structure.
macro_rules! with_exchange {
    ($core:expr, $e:ident => $body:expr) => {
        match $core {
            AnyExchange::SortedVec($e) => $body,
            AnyExchange::BTree($e) => $body,
            AnyExchange::Ladder($e) => $body,
            AnyExchange::Radix($e) => $body,
        }
    };
}

/// One symbol's book as the queries show it.
#[derive(Debug, PartialEq, Eq)]
struct BookDump {
    bids: Vec<RestingOrder>,
    asks: Vec<RestingOrder>,
    bid_depth: Vec<(u64, u128, u32)>,
    ask_depth: Vec<(u64, u128, u32)>,
    best_bid: Option<(u64, u128)>,
    best_ask: Option<(u64, u128)>,
    last_trade_id: u64,
}

fn dump_core<L: PriceLevels>(exchange: &Exchange<L>, symbol: &Symbol) -> Option<BookDump> {
    let book = exchange.book(symbol)?;
    Some(BookDump {
        bids: book.orders(Side::Buy).collect(),
        asks: book.orders(Side::Sell).collect(),
        bid_depth: book.depth(Side::Buy).collect(),
        ask_depth: book.depth(Side::Sell).collect(),
        best_bid: book.best_bid(),
        best_ask: book.best_ask(),
        last_trade_id: book.last_trade_id(),
    })
}

fn dump_reference(reference: &Reference, symbol: &Symbol) -> Option<BookDump> {
    let last_trade_id = reference.last_trade_id(symbol)?;
    let bid_depth = reference.depth(symbol, Side::Buy);
    let ask_depth = reference.depth(symbol, Side::Sell);
    Some(BookDump {
        bids: reference.orders(symbol, Side::Buy),
        asks: reference.orders(symbol, Side::Sell),
        best_bid: bid_depth.first().map(|&(price, total, _)| (price, total)),
        best_ask: ask_depth.first().map(|&(price, total, _)| (price, total)),
        bid_depth,
        ask_depth,
        last_trade_id,
    })
}

struct Core {
    name: String,
    exchange: AnyExchange,
}

impl Core {
    fn new(name: &str, exchange: AnyExchange) -> Core {
        Core { name: name.to_string(), exchange }
    }

    fn process(&mut self, command: &Command) -> Vec<Event> {
        let mut events = Vec::new();
        with_exchange!(&mut self.exchange, e => e.process(command, &mut events));
        events
    }

    fn validate(&self) -> Result<(), String> {
        with_exchange!(&self.exchange, e => e.validate())
    }

    fn encode_state(&self) -> Vec<u8> {
        with_exchange!(&self.exchange, e => e.encode_state())
    }

    fn state_hash(&self) -> u64 {
        with_exchange!(&self.exchange, e => e.state_hash())
    }

    fn symbols(&self) -> Vec<Symbol> {
        with_exchange!(&self.exchange, e => e.symbols())
    }

    fn dump(&self, symbol: &Symbol) -> Option<BookDump> {
        with_exchange!(&self.exchange, e => dump_core(e, symbol))
    }

    fn order_count(&self) -> usize {
        with_exchange!(&self.exchange, e => e.order_count())
    }

    fn order(&self, order_id: OrderId) -> Option<(Symbol, RestingOrder)> {
        with_exchange!(&self.exchange, e => e.order(order_id))
    }

    fn qty_at(&self, symbol: &Symbol, side: Side, price: u64) -> Option<u128> {
        with_exchange!(&self.exchange, e => e.book(symbol).map(|b| b.qty_at(side, price)))
    }
}

/// `decode_state` into the level structure `like` uses, without letting a
/// panic escape.
fn decode_like(like: &AnyExchange, config: &Config, bytes: &[u8]) -> Result<Result<AnyExchange, StateError>, String> {
    let decoded = catch_unwind(AssertUnwindSafe(|| match like {
        AnyExchange::SortedVec(_) => {
            Exchange::<SortedVecLevels>::decode_state(config.clone(), bytes).map(AnyExchange::SortedVec)
        }
        AnyExchange::BTree(_) => Exchange::<BTreeLevels>::decode_state(config.clone(), bytes).map(AnyExchange::BTree),
        AnyExchange::Ladder(_) => {
            Exchange::<LadderLevels>::decode_state(config.clone(), bytes).map(AnyExchange::Ladder)
        }
        AnyExchange::Radix(_) => Exchange::<RadixLevels>::decode_state(config.clone(), bytes).map(AnyExchange::Radix),
    }));
    decoded.map_err(|panic| {
        let message =
            panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
        format!("decode_state panicked: {message:?}")
    })
}

// ----- the harness -----

/// What the run exercised, counted by kind of outcome.
#[derive(Default)]
struct Coverage {
    counts: BTreeMap<String, u64>,
    commands: u64,
}

impl Coverage {
    fn record(&mut self, command: &Command, events: &[Event]) {
        self.commands += 1;
        for event in events {
            let key = match event.kind {
                EventKind::Accepted { order_type, tif, .. } => {
                    format!("accepted {} {}", order_type.as_str(), tif.as_str())
                }
                EventKind::Rejected { reason, .. } => format!("rejected {}", reason.as_str()),
                EventKind::Trade(trade) => {
                    if trade.maker_user == trade.taker_user {
                        "trade (self)".to_string()
                    } else {
                        "trade".to_string()
                    }
                }
                EventKind::Cancelled { reason, .. } => format!("cancelled {}", reason.as_str()),
                EventKind::Modified { .. } => match events.iter().any(|e| matches!(e.kind, EventKind::Trade(_))) {
                    true => "modified, then trades".to_string(),
                    false => "modified".to_string(),
                },
                EventKind::MassCancelled { count: 0, .. } => "mass_cancelled none".to_string(),
                EventKind::MassCancelled { count: 1, .. } => "mass_cancelled one".to_string(),
                EventKind::MassCancelled { .. } => "mass_cancelled several".to_string(),
                EventKind::Status { status, .. } => format!("status {}", status.as_str()),
            };
            *self.counts.entry(key).or_default() += 1;
        }
        if let Action::New(order) = command.action {
            if order.post_only && matches!(events.first().map(|e| e.kind), Some(EventKind::Accepted { .. })) {
                self.count("accepted post_only");
            }
            if events.iter().any(|e| matches!(e.kind, EventKind::Cancelled { reason: CancelReason::Stp, .. })) {
                self.count(&format!("stp {} applied", order.stp.as_str()));
            }
        }
    }

    fn count(&mut self, key: &str) {
        *self.counts.entry(key.to_string()).or_default() += 1;
    }

    fn report(&self, name: &str) {
        let mut text = format!("{name}: {} commands;", self.commands);
        for (key, count) in &self.counts {
            let _ = write!(text, " [{key}: {count}]");
        }
        eprintln!("{text}");
    }

    /// Fails unless every outcome in `expected` happened, once enough
    /// commands ran that missing one means the generator lost coverage.
    fn require(&self, name: &str, expected: &[&str], commands_min: u64) {
        if self.commands < commands_min {
            eprintln!("{name}: only {} commands, coverage not checked (needs {commands_min})", self.commands);
            return;
        }
        let missing: Vec<&&str> = expected.iter().filter(|key| !self.counts.contains_key(**key)).collect();
        assert!(missing.is_empty(), "{name}: the generator never produced {missing:?}");
    }
}

/// 64-bit FNV-1a, written from its definition.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

/// One line per command, for failure reports.
fn describe(command: &Command) -> String {
    let seq = command.seq;
    match command.action {
        Action::New(o) => format!(
            "seq {seq}: new id={} user={} {} {} {} price={:?} qty={} {}{}{}",
            o.order_id,
            o.user,
            o.symbol,
            o.side.as_str(),
            o.order_type.as_str(),
            o.price,
            o.qty,
            o.tif.as_str(),
            if o.post_only { " post_only" } else { "" },
            if o.stp == Stp::None { String::new() } else { format!(" stp={}", o.stp.as_str()) },
        ),
        Action::Cancel { user, order_id } => format!("seq {seq}: cancel id={order_id} user={user}"),
        Action::Modify { user, order_id, price, qty } => {
            format!("seq {seq}: modify id={order_id} user={user} price={price:?} qty={qty:?}")
        }
        Action::MassCancel { user, symbol, side } => {
            format!("seq {seq}: mass_cancel user={user} symbol={symbol:?} side={side:?}")
        }
        Action::Halt { symbol } => format!("seq {seq}: halt {symbol}"),
        Action::Resume { symbol } => format!("seq {seq}: resume {symbol}"),
    }
}

macro_rules! ensure {
    ($harness:expr, $cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($harness.failure(format!($($arg)+)));
        }
    };
}

/// The cores a harness starts with (one per level structure); restored
/// snapshot copies come after them.
const ORIGINAL_CORES: usize = 4;

struct Harness {
    config: Config,
    symbols: Vec<Symbol>,
    /// Band prices run from `BAND_LOW` to `BAND_LOW + band_width`, times `tick`.
    band_width: u64,
    /// A multiplier of band prices: 1, or large enough that a wide band
    /// spans more than a ladder window (so the ladder's window moves).
    tick: u64,
    reference: Reference,
    cores: Vec<Core>,
    /// Ids of every order accepted so far, in order.
    accepted: Vec<OrderId>,
    /// Every command run, for failure reports.
    log: Vec<Command>,
}

impl Harness {
    fn new(config: Config, symbols: Vec<Symbol>, band_width: u64, tick: u64) -> Harness {
        let cores = vec![
            Core::new("core<radix>", AnyExchange::Radix(Exchange::new(config.clone()))),
            Core::new("core<sorted-vec>", AnyExchange::SortedVec(Exchange::with_levels(config.clone()))),
            Core::new("core<btree>", AnyExchange::BTree(Exchange::with_levels(config.clone()))),
            Core::new("core<ladder>", AnyExchange::Ladder(Exchange::with_levels(config.clone()))),
        ];
        Harness {
            reference: Reference::new(&config),
            config,
            symbols,
            band_width,
            tick,
            cores,
            accepted: Vec::new(),
            log: Vec::new(),
        }
    }

    fn failure(&self, message: String) -> TestCaseError {
        let mut text = format!("{message}\nconfig: {:?}\ncommands ({}):\n", self.config, self.log.len());
        for command in &self.log {
            let _ = writeln!(text, "  {}", describe(command));
        }
        TestCaseError::fail(text)
    }

    fn live_id(&self, i: usize) -> Option<OrderId> {
        let live = self.reference.live_ids();
        (!live.is_empty()).then(|| live[i % live.len()])
    }

    /// A concrete price for an order on `side`. In a wide band, buys are
    /// shifted down and sells up by a third of the width, so books grow
    /// deep on both sides and still cross in the middle.
    fn price(&self, side: Option<Side>, price: PriceGen) -> u64 {
        let skew = if self.band_width > 10 { self.band_width / 3 } else { 0 };
        match (price, side) {
            (PriceGen::Band(offset), Some(Side::Buy)) => (BAND_LOW + offset % (self.band_width + 1) - skew) * self.tick,
            (PriceGen::Band(offset), Some(Side::Sell)) => {
                (BAND_LOW + offset % (self.band_width + 1) + skew) * self.tick
            }
            (PriceGen::Band(offset), None) => (BAND_LOW + offset % (self.band_width + 1)) * self.tick,
            (PriceGen::Raw(price), _) => price,
        }
    }

    fn past_id(&self, i: usize) -> Option<OrderId> {
        (!self.accepted.is_empty()).then(|| self.accepted[i % self.accepted.len()])
    }

    /// The concrete command for `op`, given the reference's current state.
    fn resolve(&self, op: &Op) -> Command {
        let seq = self.log.len() as u64 + 1;
        let target = |target: &Target| match *target {
            Target::Live(i) => self.live_id(i).or(self.past_id(i)).unwrap_or(1 << 40),
            Target::Past(i) => self.past_id(i).unwrap_or(1 << 40),
            Target::Raw(id) => id,
        };
        let user = |pick: &UserPick, id: OrderId| match *pick {
            UserPick::Owner => self.reference.order(id).map_or(0, |(_, o)| o.user),
            UserPick::Raw(user) => user,
        };
        let action = match op {
            Op::New(spec) => {
                let order_id = match spec.id {
                    IdPick::Seq => seq,
                    IdPick::Live(i) => self.live_id(i).unwrap_or(seq),
                    IdPick::Past(i) => self.past_id(i).unwrap_or(seq),
                    IdPick::Raw(id) => id,
                };
                let price = |price: Option<PriceGen>| price.map(|p| self.price(Some(spec.side), p));
                let (order_type, price, tif) = match spec.market {
                    true => (OrderType::Market, price(spec.market_price), spec.market_tif),
                    false => (OrderType::Limit, price(spec.limit_price), spec.limit_tif),
                };
                Action::New(NewOrder {
                    order_id,
                    user: spec.user,
                    symbol: self.symbols[spec.symbol % self.symbols.len()],
                    side: spec.side,
                    order_type,
                    price,
                    qty: spec.qty,
                    tif,
                    post_only: spec.post_only,
                    stp: spec.stp,
                })
            }
            Op::Cancel { target: t, user: u } => {
                let order_id = target(t);
                Action::Cancel { user: user(u, order_id), order_id }
            }
            Op::Modify { target: t, user: u, price, qty } => {
                let order_id = target(t);
                let current = self.reference.order(order_id).map(|(_, o)| o);
                let price = price.map(|pick| match pick {
                    PricePick::Same => current.map_or(100, |o| o.price),
                    PricePick::Other(price) => self.price(current.map(|o| o.side), price),
                });
                let qty = qty.map(|pick| match pick {
                    QtyPick::Delta(delta) => (current.map_or(5, |o| o.qty) as i64 + delta).max(0) as u64,
                    QtyPick::Abs(qty) | QtyPick::Raw(qty) => qty,
                });
                Action::Modify { user: user(u, order_id), order_id, price, qty }
            }
            Op::MassCancel { user, symbol, side } => Action::MassCancel {
                user: *user,
                symbol: symbol.map(|i| self.symbols[i % self.symbols.len()]),
                side: *side,
            },
            Op::Halt(i) => Action::Halt { symbol: self.symbols[i % self.symbols.len()] },
            Op::Resume(i) => {
                let halted: Vec<Symbol> =
                    self.symbols.iter().copied().filter(|s| self.reference.halted(s) == Some(true)).collect();
                let symbol =
                    if halted.is_empty() { self.symbols[i % self.symbols.len()] } else { halted[i % halted.len()] };
                Action::Resume { symbol }
            }
        };
        Command::new(seq, action)
    }

    /// Runs one operation on the reference and every core and checks they agree.
    fn step(&mut self, op: &Op, coverage: &mut Coverage) -> Result<(), TestCaseError> {
        let command = self.resolve(op);
        self.log.push(command);
        let want = self.reference.process(&command);
        coverage.record(&command, &want);
        for event in &want {
            if let EventKind::Accepted { order_id, .. } = event.kind {
                self.accepted.push(order_id);
            }
        }
        for i in 0..self.cores.len() {
            let got = self.cores[i].process(&command);
            let name = &self.cores[i].name;
            ensure!(
                self,
                got == want,
                "{name} disagrees with the reference on seq {}:\n{name}: {got:#?}\nreference: {want:#?}",
                command.seq
            );
            let valid = self.cores[i].validate();
            ensure!(self, valid.is_ok(), "{name}: validate() failed after seq {}: {valid:?}", command.seq);
        }
        // The sorted-vec levels binary-search beyond 8 levels from the touch.
        let deep = |symbol: &Symbol| {
            [Side::Buy, Side::Sell].into_iter().any(|side| self.reference.depth(symbol, side).len() > 8)
        };
        if self.reference.symbols().iter().any(deep) {
            coverage.count("book side deeper than 8 levels");
        }
        let checked = self.reference.check();
        ensure!(self, checked.is_ok(), "reference invariant broken after seq {}: {checked:?}", command.seq);
        self.compare_state(command.seq)
    }

    /// Every core's whole state equals the reference's: symbols, both sides
    /// of every book in priority order, depth, best prices, trade ids, the
    /// id lookup, and the state encoding byte for byte (so the hash too).
    fn compare_state(&self, seq: u64) -> Result<(), TestCaseError> {
        let symbols = self.reference.symbols();
        let encoding = self.reference.encode_state();
        let live = self.reference.live_ids();
        for core in &self.cores {
            let name = &core.name;
            ensure!(
                self,
                core.symbols() == symbols,
                "{name}: symbols {:?} vs reference {symbols:?} after seq {seq}",
                core.symbols()
            );
            for symbol in self.symbols.iter().chain(&symbols) {
                let (got, want) = (core.dump(symbol), dump_reference(&self.reference, symbol));
                ensure!(
                    self,
                    got == want,
                    "{name}: book {symbol} after seq {seq}:\n{name}: {got:#?}\nreference: {want:#?}"
                );
                if let Some(want) = want {
                    for side in [Side::Buy, Side::Sell] {
                        let depth = if side == Side::Buy { &want.bid_depth } else { &want.ask_depth };
                        for price in [0, 1, BAND_LOW / 2, BAND_LOW + 5, BAND_LOW * 2, VALUE_MAX]
                            .into_iter()
                            .chain(depth.iter().map(|l| l.0))
                        {
                            let want_qty = depth.iter().find(|l| l.0 == price).map_or(0, |l| l.1);
                            let got_qty = core.qty_at(symbol, side, price);
                            ensure!(
                                self,
                                got_qty == Some(want_qty),
                                "{name}: qty_at({symbol}, {side:?}, {price}) = {got_qty:?}, reference {want_qty} after seq {seq}"
                            );
                        }
                    }
                }
            }
            ensure!(
                self,
                core.order_count() == live.len(),
                "{name}: order_count {} vs reference {} after seq {seq}",
                core.order_count(),
                live.len()
            );
            for &id in &live {
                let (got, want) = (core.order(id), self.reference.order(id));
                ensure!(self, got == want, "{name}: order({id}) = {got:?}, reference {want:?} after seq {seq}");
            }
            // The id the last command named, when it is not resting (an ioc
            // order, a filled or cancelled one), must not be found either.
            let named = self.log.last().and_then(|command| match command.action {
                Action::New(order) => Some(order.order_id),
                Action::Cancel { order_id, .. } | Action::Modify { order_id, .. } => Some(order_id),
                Action::MassCancel { .. } | Action::Halt { .. } | Action::Resume { .. } => None,
            });
            if let Some(id) = named
                && !live.contains(&id)
            {
                ensure!(self, core.order(id).is_none(), "{name}: order({id}) found but not resting after seq {seq}");
            }
            let got = core.encode_state();
            ensure!(
                self,
                got == encoding,
                "{name}: encode_state differs from the reference's encoding after seq {seq}"
            );
        }
        // state_hash is documented as 64-bit FNV-1a of encode_state.
        let want_hash = fnv1a(&encoding);
        let hashes: Vec<u64> = self.cores.iter().map(Core::state_hash).collect();
        ensure!(
            self,
            hashes.iter().all(|&h| h == want_hash),
            "state hashes {hashes:?}, FNV-1a of the reference's encoding {want_hash} after seq {seq}"
        );
        Ok(())
    }

    /// Snapshot round trip: each original core (one per level structure) is
    /// encoded, and `decode_state` of the next one's bytes gives a restored
    /// copy of it (all the bytes must be the same anyway). From here on the
    /// originals and the restored copies (replacing those of an earlier
    /// round trip) all run side by side against the reference.
    fn snapshot_round_trip(&mut self) -> Result<(), TestCaseError> {
        let seq = self.log.len();
        self.cores.truncate(ORIGINAL_CORES);
        let encodings: Vec<Vec<u8>> = self.cores.iter().map(Core::encode_state).collect();
        let hash = self.cores[0].state_hash();
        for i in 0..ORIGINAL_CORES {
            let bytes = &encodings[(i + 1) % ORIGINAL_CORES];
            let name = format!("{} restored after seq {seq}", self.cores[i].name);
            let restored = match decode_like(&self.cores[i].exchange, &self.config, bytes) {
                Ok(Ok(decoded)) => Core::new(&name, decoded),
                other => {
                    return Err(self.failure(format!("{name}: decode_state of a snapshot failed: {:?}", other.err())));
                }
            };
            let valid = restored.validate();
            ensure!(self, valid.is_ok(), "{name}: validate() after decode_state: {valid:?}");
            ensure!(self, restored.encode_state() == *bytes, "{name}: restored state encodes differently");
            ensure!(self, restored.state_hash() == hash, "{name}: restored state hashes differently");
            self.cores.push(restored);
        }
        self.compare_state(seq as u64)
    }
}

// ----- tests -----

#[derive(Clone, Debug)]
struct Case {
    config: Config,
    symbol_count: usize,
    band_width: u64,
    tick: u64,
    /// Each operation, and whether to take and restore a snapshot before it.
    ops: Vec<(Op, bool)>,
}

fn symbols_of(case: &Case) -> Vec<Symbol> {
    symbol_names()[..case.symbol_count].to_vec()
}

/// A case: a config from `config`, 1 to `symbols_max` symbols, up to
/// `ops_max` operations each preceded by a snapshot round trip with
/// probability `snapshot`.
fn case(
    config: impl Strategy<Value = Config>,
    symbols_max: usize,
    ops_max: usize,
    snapshot: f64,
) -> impl Strategy<Value = Case> {
    let band_width = prop_oneof![3 => Just(10u64), 1 => Just(BAND_OFFSET_MAX)];
    let tick = prop_oneof![3 => Just(1u64), 1 => Just(97u64)];
    let ops = vec((op(), prop::bool::weighted(snapshot)), 0..ops_max);
    (config, 1..=symbols_max, band_width, tick, ops).prop_map(|(config, symbol_count, band_width, tick, ops)| Case {
        config,
        symbol_count,
        band_width,
        tick,
        ops,
    })
}

/// Unlimited (default) limits, with little or no preallocation so growth
/// paths run.
fn roomy_config() -> impl Strategy<Value = Config> {
    (0usize..8, 0usize..3).prop_map(|(orders_preallocated, levels_preallocated)| Config {
        orders_preallocated,
        levels_preallocated,
        ..Config::default()
    })
}

/// Small `orders_max` and `symbols_max` (so `too_many_orders` and
/// `too_many_symbols` happen), sometimes a fixed instrument list (so
/// `invalid_symbol` happens).
fn tight_config() -> impl Strategy<Value = Config> {
    (1usize..=8, 0usize..4, 1usize..=3, 0usize..3, prop::bool::weighted(0.25), 1usize..=2).prop_map(
        |(orders_max, orders_preallocated, symbols_max, levels_preallocated, listed, instruments)| Config {
            orders_max,
            orders_preallocated,
            symbols_max,
            levels_preallocated,
            instruments: listed.then(|| symbol_names()[..instruments].to_vec()),
        },
    )
}

/// Runs a case's operations on a fresh harness, with a snapshot round trip
/// before every operation flagged for one (and at the end when
/// `final_snapshot`).
fn run_case(case: &Case, coverage: &RefCell<Coverage>, final_snapshot: bool) -> Result<Harness, TestCaseError> {
    let mut harness = Harness::new(case.config.clone(), symbols_of(case), case.band_width, case.tick);
    let mut coverage = coverage.borrow_mut();
    for (op, snapshot) in &case.ops {
        if *snapshot {
            harness.snapshot_round_trip()?;
            coverage.count("snapshot round trip");
        }
        harness.step(op, &mut coverage)?;
    }
    if final_snapshot {
        harness.snapshot_round_trip()?;
    }
    Ok(harness)
}

/// Outcomes every long enough run with default limits must have produced.
const COVERAGE_ROOMY: &[&str] = &[
    "accepted limit gtc",
    "accepted limit ioc",
    "accepted limit fok",
    "accepted market ioc",
    "accepted market fok",
    "accepted post_only",
    "trade",
    "trade (self)",
    "modified",
    "modified, then trades",
    "cancelled user",
    "cancelled ioc",
    "cancelled fok",
    "cancelled stp",
    "stp cancel_taker applied",
    "stp cancel_maker applied",
    "stp cancel_both applied",
    "rejected malformed",
    "rejected invalid_tif",
    "rejected invalid_price",
    "rejected invalid_qty",
    "rejected unknown_order",
    "rejected would_take",
    "rejected duplicate_order_id",
    "rejected halted",
    "cancelled mass",
    "mass_cancelled none",
    "mass_cancelled one",
    "mass_cancelled several",
    "status halted",
    "status open",
    "book side deeper than 8 levels",
];

#[test]
fn core_matches_reference() {
    let name = "core_matches_reference";
    let coverage = RefCell::new(Coverage::default());
    let strategy = case(roomy_config(), 3, 400, 0.0);
    common::check(name, 384, strategy, |case| run_case(&case, &coverage, false).map(drop));
    coverage.borrow().report(name);
    coverage.borrow().require(name, COVERAGE_ROOMY, 20_000);
}

#[test]
fn core_matches_reference_with_tight_limits() {
    let name = "core_matches_reference_with_tight_limits";
    let coverage = RefCell::new(Coverage::default());
    let strategy = case(tight_config(), 4, 200, 0.0);
    common::check(name, 256, strategy, |case| run_case(&case, &coverage, false).map(drop));
    coverage.borrow().report(name);
    let expected = [
        "rejected too_many_orders",
        "rejected too_many_symbols",
        "rejected invalid_symbol",
        "trade",
        "cancelled stp",
        "cancelled mass",
        "rejected halted",
    ];
    coverage.borrow().require(name, &expected, 10_000);
}

#[test]
fn snapshot_round_trip_mid_stream() {
    let name = "snapshot_round_trip_mid_stream";
    let coverage = RefCell::new(Coverage::default());
    let strategy = case(prop_oneof![roomy_config(), tight_config()], 3, 200, 0.05);
    // A last round trip at the end, so the final state is covered too.
    common::check(name, 256, strategy, |case| run_case(&case, &coverage, true).map(drop));
    coverage.borrow().report(name);
    coverage.borrow().require(name, &["snapshot round trip", "trade", "rejected too_many_orders"], 10_000);
}

// ----- corrupted snapshots -----

#[derive(Clone, Copy, Debug)]
enum Mutation {
    Truncate(usize),
    FlipBit(usize, u8),
    SetByte(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    /// Overwrite 8 bytes (little-endian) at an offset.
    PutU64(usize, u64),
    /// Swap two 34-byte windows (the size of an encoded order).
    Swap(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let value = prop_oneof![
        Just(0u64),
        Just(1u64),
        Just(2u64),
        Just(VALUE_MAX),
        Just(TOO_BIG),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        0u64..200,
        any::<u64>(),
    ];
    prop_oneof![
        2 => any::<usize>().prop_map(Mutation::Truncate),
        4 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        3 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::SetByte(at, byte)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        1 => any::<usize>().prop_map(Mutation::Remove),
        3 => (any::<usize>(), value).prop_map(|(at, value)| Mutation::PutU64(at, value)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutation: Mutation) {
    let len = bytes.len();
    match mutation {
        Mutation::Truncate(at) => bytes.truncate(at % (len + 1)),
        Mutation::FlipBit(at, bit) if len > 0 => bytes[at % len] ^= 1 << bit,
        Mutation::SetByte(at, byte) if len > 0 => bytes[at % len] = byte,
        Mutation::Insert(at, byte) => bytes.insert(at % (len + 1), byte),
        Mutation::Remove(at) if len > 0 => {
            bytes.remove(at % len);
        }
        Mutation::PutU64(at, value) if len >= 8 => {
            let at = at % (len - 7);
            bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }
        Mutation::Swap(a, b) if len >= 68 => {
            let (a, b) = (a % (len - 33), b % (len - 33));
            let (a, b) = (a.min(b), a.max(b));
            if b - a >= 34 {
                let (left, right) = bytes.split_at_mut(b);
                left[a..a + 34].swap_with_slice(&mut right[..34]);
            }
        }
        _ => {}
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[test]
fn decode_state_never_panics_on_corrupt_bytes() {
    let name = "decode_state_never_panics_on_corrupt_bytes";
    // (accepted, rejected) decodes of mutated bytes.
    let outcomes = RefCell::new((0u64, 0u64));
    let strategy =
        (case(prop_oneof![roomy_config(), tight_config()], 3, 60, 0.0), vec(mutation(), 1..4), any::<bool>());
    common::check(name, 256, strategy, |(case, mutations, strict)| {
        let harness = run_case(&case, &RefCell::new(Coverage::default()), false)?;
        let original = harness.cores[0].encode_state();
        // Every strict prefix of a valid encoding is invalid (decoding is
        // deterministic and rejects trailing bytes).
        for end in 0..original.len() {
            for core in &harness.cores {
                let decoded = decode_like(&core.exchange, &case.config, &original[..end]);
                ensure!(
                    harness,
                    matches!(decoded, Ok(Err(_))),
                    "{}: prefix of {end} of {} bytes: {:?}",
                    core.name,
                    original.len(),
                    decoded.as_ref().map(|r| r.as_ref().err())
                );
            }
        }
        let mut bytes = original.clone();
        for &m in &mutations {
            mutate(&mut bytes, m);
        }
        // Sometimes decode under tighter limits than the state was made with.
        let decode_config =
            if strict { Config { orders_max: 3, symbols_max: 1, ..case.config.clone() } } else { case.config.clone() };
        let mut results = Vec::new();
        for core in &harness.cores {
            match decode_like(&core.exchange, &decode_config, &bytes) {
                Err(panic) => {
                    return Err(harness.failure(format!(
                        "{}: {panic}\nconfig: {decode_config:?}\nbytes: {}",
                        core.name,
                        hex(&bytes)
                    )));
                }
                Ok(Err(error)) => results.push(Err(error)),
                Ok(Ok(exchange)) => {
                    let decoded = Core::new(&core.name, exchange);
                    let valid = decoded.validate();
                    ensure!(
                        harness,
                        valid.is_ok(),
                        "{}: decode_state accepted bytes that fail validate(): {valid:?}\nbytes: {}",
                        core.name,
                        hex(&bytes)
                    );
                    // The encoding is canonical: what decodes re-encodes to the
                    // same bytes (an older version's bytes, to the current version's).
                    ensure!(
                        harness,
                        state_version(&bytes) != Some(STATE_VERSION) || decoded.encode_state() == bytes,
                        "{}: accepted bytes re-encode differently\nbytes: {}",
                        core.name,
                        hex(&bytes)
                    );
                    results.push(Ok(decoded.state_hash()));
                }
            }
        }
        ensure!(
            harness,
            results.windows(2).all(|w| w[0] == w[1]),
            "level structures decode differently: {results:?}\nbytes: {}",
            hex(&bytes)
        );
        let mut outcomes = outcomes.borrow_mut();
        match results[0] {
            Ok(_) => outcomes.0 += 1,
            Err(_) => outcomes.1 += 1,
        }
        Ok(())
    });
    let (accepted, rejected) = *outcomes.borrow();
    eprintln!("{name}: {accepted} mutated encodings accepted, {rejected} rejected");
    if accepted + rejected >= 200 {
        assert!(accepted > 0 && rejected > 0, "{name}: mutations should both keep some states valid and break others");
    }
}
