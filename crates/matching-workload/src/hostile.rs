//! Hostile and foreign order flow: four scenarios shaped unlike the flow the
//! core was designed around (a few thousand levels near a slowly walking
//! mid, ids that are `seq`s), after a public cross-engine benchmark found
//! the core slow on such flows.
//!
//! - **[`Scenario::Swing`].** A random walk with large steps (uniform in
//!   ±[`SWING_STEP_MAX_TICKS`], pulled back toward its start
//!   [`SWING_START_TICKS`] by 1/[`SWING_REVERSION_STEPS`] of its distance each
//!   step, reflected off [`SWING_FLOOR_TICKS`]) is cut into stretches of
//!   [`SWING_STRETCH`] steps. Each round takes one stretch for buy prices
//!   (walk − [`SWING_GAP_TICKS`]) and the next for sell prices
//!   (walk + [`SWING_GAP_TICKS`]) and shuffles the two together, so
//!   consecutive orders land thousands of ticks apart (tens of thousands
//!   when the side changes) and nearly every order is its own level. New
//!   orders are `gtc` limits at those prices (~13% of them cross and
//!   trade, like any order would), 10% `ioc` limits up to a step through
//!   the opposite touch, 1% market orders; cancels name uniformly random
//!   resting orders, at a rate that holds the book near [`SWING_RESTING`]
//!   orders (also the warm-up). Mid: the walk.
//! - **[`Scenario::ClientIds`].** The `Normal` session's model (the mid a
//!   slow random walk from [`MID_START_TICKS`], power-law distances, short
//!   and long exponential lifetimes, 15% `ioc`, 2% market, 5% post-only, a
//!   few stale cancels; no self-trade prevention), but every new order's id
//!   is the next of a random permutation of `1..=N` (`N` = warm-up orders +
//!   timed commands), not its `seq`, and a modify is a cancel of the
//!   order's id followed, as the next command, by a new `gtc` order with a
//!   fresh id ([`FlowStats::replaces`]). Mid: the walk.
//! - **[`Scenario::DeepBook`].** The warm-up lays [`DEEP_LEVELS_PER_SIDE`]
//!   orders per side, one per price, [`DEEP_SPACING_TICKS`] apart around
//!   [`DEEP_MID_TICKS`] (bids below asks), from the far ends inward. Then
//!   [`DEEP_FAR_SHARE`] of the commands work the two far ends (new `gtc`
//!   orders within ±[`DEEP_FAR_SPREAD_TICKS`] of the deepest warm-up price,
//!   most of them new levels, half beyond the end; cancels of far-end
//!   orders) and the rest the touch (new `gtc` orders within 32 ticks of
//!   the mid, most of them new levels in the gaps; cancels; `ioc` limits
//!   at or just through it; `ioc` limits priced at the other side's far
//!   end; market orders). Mid: the touch's.
//! - **[`Scenario::FlashCrash`].** The warm-up lays [`FC_BID_LEVELS`] bid
//!   levels and [`FC_ASK_LEVELS`] ask levels, one order each,
//!   [`FC_SPACING_TICKS`] apart around [`FC_MID_TICKS`]. Over it runs a
//!   normal flow (the `Normal` session's power-law distances from a walking
//!   mid and short and long lifetimes, 13% `ioc`, 2% market; the warm-up's
//!   levels stay until taken). In the crash window ([`FC_CRASH_FROM`] to
//!   [`FC_CRASH_TO`] of the run) [`FC_SWEEPS`] sells (half market, half
//!   `ioc` limits) each sweep [`FC_SWEEP_LEVELS_MIN`] to
//!   [`FC_SWEEP_LEVELS_MAX`] bid levels, and the mid follows the best bid
//!   down; then it recovers [`FC_RECOVERED`] of its fall by
//!   [`FC_RECOVERY_TO`] of the run, buyers leading, and walks again. Mid:
//!   where the flow quotes.
//!
//! As in `generator.rs`, the generator runs its own [`Exchange`] as it
//! goes (so every cancel it sends is valid except the stale ones it sends on
//! purpose) and [`FlowStats`] is what that run saw. That exchange uses
//! [`BTreeLevels`], O(log n) whatever the shape of the book, so that
//! generating a deep book takes the same time whichever level structure is
//! being measured: the events do not depend on the structure.
//!
//! Determinism: as in `generator.rs`, [`Xoshiro256PlusPlus`] seeded from the
//! seed and the scenario, and `libm` for the logarithm.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use matching_core::{
    Action, BTreeLevels, Command, Config, Exchange, NewOrder, OrderId, Price, Qty, Side, Symbol, Tif, UserId,
};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

#[cfg(doc)]
use crate::MID_START_TICKS;
use crate::generator::{
    DISTANCE_EXPONENT, DISTANCE_MAX_TICKS, HEAVY_SHARE, HEAVY_USERS, IOC_SHARE, IOC_THROUGH_MAX_TICKS,
    LEVELS_SAMPLE_EVERY, MARKET_SHARE, MODIFY_ADD_MAX, MODIFY_SHARE, POST_ONLY_SHARE, PowerLaw, QTY_MAX,
    STALE_SEND_PROBABILITY, Tally, USERS,
};
use crate::{Flow, FlowStats, Scenario};

/// The generator's own exchange (see the module docs for why B-tree levels).
type Core = Exchange<BTreeLevels>;

/// A cancel tries at most this many random pool entries before giving up
/// (an entry whose order is gone is dropped, or sent as a stale cancel).
const POOL_TRIES: usize = 32;

/// `Swing`: the walk's start, in ticks.
pub(crate) const SWING_START_TICKS: u64 = 10_000_000;
/// `Swing`: the walk is reflected off this floor (prices stay far above 1).
pub(crate) const SWING_FLOOR_TICKS: u64 = 1_000_000;
/// `Swing`: a step of the walk is uniform in `-MAX..=MAX` ticks.
pub(crate) const SWING_STEP_MAX_TICKS: u64 = 1_000;
/// `Swing`: steps per stretch; a round is one buy and one sell stretch.
pub(crate) const SWING_STRETCH: usize = 256;
/// `Swing`: each step pulls the walk back toward its start by
/// 1/`SWING_REVERSION_STEPS` of its distance (an Ornstein-Uhlenbeck walk,
/// stationary spread ~±18,000 ticks), so it wanders but does not drift
/// through the whole book in an order's lifetime.
pub(crate) const SWING_REVERSION_STEPS: i64 = 2_000;
/// `Swing`: buys are priced this far below the walk, sells this far above
/// (about 13% of the `gtc` orders still cross and trade).
pub(crate) const SWING_GAP_TICKS: u64 = 15_000;
/// `Swing`: resting orders laid by the warm-up and held by the cancel rate.
pub(crate) const SWING_RESTING: usize = 20_000;
/// `Swing`: share of timed commands that cancel when `SWING_RESTING` rest.
const SWING_CANCEL_SHARE: f64 = 0.45;
/// `Swing`: shares of new orders that are `ioc` limits and market orders.
const SWING_IOC_SHARE: f64 = 0.10;
const SWING_MARKET_SHARE: f64 = 0.01;

/// The `Normal` session's numbers (see `generator::Params`), for
/// `ClientIds` and `FlashCrash`'s normal flow: the warm-up (`ClientIds`),
/// the lifetimes, the long-lived orders' offset, the mid's walk.
const NORMAL_WARMUP: usize = 9_000;
const NORMAL_LIFE_SHORT_MEAN: f64 = 300.0;
const NORMAL_LIFE_LONG_MEAN: f64 = 200_000.0;
const NORMAL_LIFE_LONG_SHARE: f64 = 0.15;
const NORMAL_LONG_OFFSET_TICKS: u64 = 20;
const NORMAL_WALK_MOVE_PROBABILITY: f64 = 0.01;

/// `DeepBook`: the middle of the book, in ticks.
pub(crate) const DEEP_MID_TICKS: u64 = 4_000_000;
/// `DeepBook`: warm-up levels per side (one order each): 262,144 prices in all.
pub(crate) const DEEP_LEVELS_PER_SIDE: usize = 1 << 17;
/// `DeepBook`: ticks between neighbouring warm-up levels (the best bid and
/// ask are this far apart too).
pub(crate) const DEEP_SPACING_TICKS: u64 = 8;
/// `DeepBook`: share of timed commands at the two far ends.
pub(crate) const DEEP_FAR_SHARE: f64 = 0.40;
/// `DeepBook`: far-end orders are priced within this many ticks of the
/// deepest warm-up price (half of them beyond it).
pub(crate) const DEEP_FAR_SPREAD_TICKS: u64 = 4_096;
/// `DeepBook`: warm-up levels at each end of each side that the timed flow
/// works (cancels them, and holds this many orders there).
const DEEP_END_LEVELS: usize = 1_024;
/// `DeepBook`: new orders near the touch are priced within this many ticks
/// of the mid.
const DEEP_NEAR_TICKS: u64 = 4 * DEEP_SPACING_TICKS;
/// `DeepBook`: near-touch shares of market orders, `ioc` limits at or
/// through the touch, and `ioc` limits priced at the other side's far end.
const DEEP_MARKET_SHARE: f64 = 0.01;
const DEEP_IOC_SHARE: f64 = 0.12;
const DEEP_FAR_LIMIT_IOC_SHARE: f64 = 0.02;
/// `DeepBook`: share of near-touch commands that cancel when the near pool
/// holds its target.
const DEEP_CANCEL_SHARE: f64 = 0.45;

/// `FlashCrash`: the mid before the crash, in ticks.
pub(crate) const FC_MID_TICKS: u64 = 1_000_000;
/// `FlashCrash`: ticks between neighbouring warm-up levels.
pub(crate) const FC_SPACING_TICKS: u64 = 2;
/// `FlashCrash`: warm-up bid levels (one order each).
pub(crate) const FC_BID_LEVELS: usize = 120_000;
/// `FlashCrash`: warm-up ask levels (one order each).
pub(crate) const FC_ASK_LEVELS: usize = 12_000;
/// `FlashCrash`: share of the normal flow's new orders that are `ioc`
/// limits (market orders are `MARKET_SHARE`).
const FC_IOC_SHARE: f64 = 0.13;
/// `FlashCrash`: the crash window opens this far into the timed commands…
pub(crate) const FC_CRASH_FROM: f64 = 0.25;
/// … and closes this far in.
pub(crate) const FC_CRASH_TO: f64 = 0.35;
/// `FlashCrash`: sweeping sells in the crash window.
pub(crate) const FC_SWEEPS: usize = 20;
/// `FlashCrash`: one sweep takes uniformly `MIN..=MAX` bid levels.
pub(crate) const FC_SWEEP_LEVELS_MIN: usize = 1_000;
pub(crate) const FC_SWEEP_LEVELS_MAX: usize = 4_000;
/// `FlashCrash`: share of the fall the mid wins back…
pub(crate) const FC_RECOVERED: f64 = 0.5;
/// … by this far into the timed commands (then it walks, as before the crash).
pub(crate) const FC_RECOVERY_TO: f64 = 0.55;

/// What every hostile scenario shares: the random stream, the exchange,
/// the numbering and the counts.
struct Session {
    rng: Xoshiro256PlusPlus,
    exchange: Core,
    symbol: Symbol,
    next_seq: u64,
    /// `ClientIds`: the ids still to give, taken from the end; empty when
    /// ids are `seq`s.
    client_ids: Vec<OrderId>,
    /// Timed commands generated so far.
    step: u64,
    tally: Tally,
    stats: FlowStats,
}

impl Session {
    fn new(symbol: Symbol, scenario: Scenario, seed: u64, config: Config) -> Session {
        // Each scenario draws from its own stream of the same seed (the
        // same salt as `generator.rs`, whose scenarios are others).
        let salt = (scenario as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Session {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed ^ salt),
            exchange: Core::with_levels(config),
            symbol,
            next_seq: 1,
            client_ids: Vec::new(),
            step: 0,
            tally: Tally::default(),
            stats: FlowStats::default(),
        }
    }

    /// The internal exchange's configuration for about `resting` orders
    /// and `levels` levels per side over `commands` commands in all.
    fn config(resting: usize, levels: usize, commands: usize) -> Config {
        let default = Config::default();
        Config {
            orders_max: default.orders_max.max(resting + commands),
            orders_preallocated: resting + (1 << 12),
            levels_preallocated: levels + (1 << 10),
            ..default
        }
    }

    /// Applies `action` as the next command and appends it to `out`.
    fn emit(&mut self, action: Action, out: &mut Vec<Command>) {
        let command = Command::new(self.next_seq, action);
        self.next_seq += 1;
        self.exchange.process(&command, &mut self.tally);
        self.stats.resting_max = self.stats.resting_max.max(self.exchange.order_count() as u64);
        out.push(command);
    }

    /// The id of the next new order.
    fn new_id(&mut self) -> OrderId {
        if self.client_ids.is_empty() { self.next_seq } else { self.client_ids.pop().expect("Invariant: not empty") }
    }

    fn uniform(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    fn chance(&mut self, probability: f64) -> bool {
        self.rng.random_bool(probability.clamp(0.0, 1.0))
    }

    fn side(&mut self) -> Side {
        if self.chance(0.5) { Side::Buy } else { Side::Sell }
    }

    fn qty(&mut self) -> Qty {
        self.rng.random_range(1..=QTY_MAX)
    }

    fn user(&mut self) -> UserId {
        if self.chance(HEAVY_SHARE) {
            self.rng.random_range(1..=HEAVY_USERS)
        } else {
            self.rng.random_range(HEAVY_USERS + 1..=USERS)
        }
    }

    /// An exponential draw with this mean, at least 1.
    fn exponential(&mut self, mean: f64) -> u64 {
        let u = 1.0 - self.uniform();
        ((-mean * libm::log(u)).ceil() as u64).max(1)
    }

    fn best(&self, side: Side) -> Option<Price> {
        let book = self.exchange.book(&self.symbol)?;
        let best = match side {
            Side::Buy => book.best_bid(),
            Side::Sell => book.best_ask(),
        };
        best.map(|(price, _)| price)
    }

    /// Would a `side` order at `price` take liquidity now?
    fn would_take(&self, side: Side, price: Price) -> bool {
        match (side, self.best(side.opposite())) {
            (Side::Buy, Some(ask)) => price >= ask,
            (Side::Sell, Some(bid)) => price <= bid,
            (_, None) => false,
        }
    }

    /// (best bid + best ask) / 2, when both sides rest.
    fn touch_mid(&self) -> Option<u64> {
        Some((self.best(Side::Buy)? + self.best(Side::Sell)?) / 2)
    }

    /// Sends a limit order; returns its id and whether it rests afterwards.
    fn limit(
        &mut self,
        user: UserId,
        side: Side,
        price: Price,
        qty: Qty,
        tif: Tif,
        out: &mut Vec<Command>,
    ) -> (OrderId, bool) {
        let id = self.new_id();
        let order = NewOrder::limit(id, user, self.symbol, side, price, qty).with_tif(tif);
        self.send(order, out)
    }

    /// Sends a new order (its id already given); returns its id and
    /// whether it rests afterwards.
    fn send(&mut self, order: NewOrder, out: &mut Vec<Command>) -> (OrderId, bool) {
        match (order.price, order.tif) {
            (None, _) => self.stats.new_market += 1,
            (Some(_), Tif::Gtc) => self.stats.new_gtc += 1,
            (Some(_), _) => self.stats.new_ioc += 1,
        }
        self.stats.new_post_only += order.post_only as u64;
        self.emit(Action::New(order), out);
        let rests = order.tif == Tif::Gtc && self.exchange.order(order.order_id).is_some();
        (order.order_id, rests)
    }

    /// A warm-up order: a resting `gtc` limit that crosses nothing.
    fn rest(&mut self, user: UserId, side: Side, price: Price, qty: Qty, out: &mut Vec<Command>) -> OrderId {
        debug_assert!(!self.would_take(side, price), "Invariant: a warm-up order crosses nothing");
        let (id, rests) = self.limit(user, side, price, qty, Tif::Gtc, out);
        assert!(rests, "Invariant: a warm-up order rests");
        id
    }

    fn market(&mut self, user: UserId, side: Side, qty: Qty, out: &mut Vec<Command>) {
        let id = self.new_id();
        self.send(NewOrder::market(id, user, self.symbol, side, qty), out);
    }

    /// An `ioc` limit at (or up to `through_max` ticks through) the
    /// opposite touch, or a market order when that side is empty.
    fn take_at_touch(&mut self, side: Side, through_max: u64, out: &mut Vec<Command>) {
        let (user, qty) = (self.user(), self.qty());
        let through = self.rng.random_range(0..=through_max);
        match (side, self.best(side.opposite())) {
            (Side::Buy, Some(ask)) => {
                self.limit(user, side, ask + through, qty, Tif::Ioc, out);
            }
            (Side::Sell, Some(bid)) => {
                self.limit(user, side, bid.saturating_sub(through).max(1), qty, Tif::Ioc, out);
            }
            (_, None) => self.market(user, side, qty, out),
        }
    }

    fn cancel(&mut self, user: UserId, order_id: OrderId, stale: bool, out: &mut Vec<Command>) {
        self.stats.cancels += 1;
        self.stats.stale_cancels += stale as u64;
        self.emit(Action::Cancel { user, order_id }, out);
    }

    /// Cancels a random order of `pool`. Entries whose orders are gone
    /// (filled) leave the pool as they are drawn; the first one drawn is
    /// sent as a stale cancel with [`STALE_SEND_PROBABILITY`] (a client that
    /// has not seen the fill yet). False when no cancel was sent.
    fn cancel_from(&mut self, pool: &mut Pool, out: &mut Vec<Command>) -> bool {
        let mut first_gone = true;
        for _ in 0..POOL_TRIES {
            if pool.orders.is_empty() {
                return false;
            }
            let i = self.rng.random_range(0..pool.orders.len() as u64) as usize;
            let (order_id, user) = pool.orders.swap_remove(i);
            if self.exchange.order(order_id).is_some() {
                self.cancel(user, order_id, false, out);
                return true;
            }
            if first_gone && self.chance(STALE_SEND_PROBABILITY) {
                self.cancel(user, order_id, true, out);
                return true;
            }
            first_gone = false;
        }
        false
    }

    /// Price levels, both sides.
    fn levels(&self) -> u64 {
        let book = self.exchange.book(&self.symbol);
        book.map_or(0, |b| b.depth(Side::Buy).count() + b.depth(Side::Sell).count()) as u64
    }

    fn sample_levels(&mut self) {
        self.stats.levels_max = self.stats.levels_max.max(self.levels());
    }

    fn observe_mid(&mut self, mid: u64) {
        self.stats.mid_end_ticks = mid;
        self.stats.mid_min_ticks = self.stats.mid_min_ticks.min(mid);
        self.stats.mid_max_ticks = self.stats.mid_max_ticks.max(mid);
    }
}

/// Resting orders (id and owner) a scenario may cancel; entries of orders
/// since filled stay until drawn.
#[derive(Default)]
struct Pool {
    orders: Vec<(OrderId, UserId)>,
}

impl Pool {
    fn push(&mut self, order_id: OrderId, user: UserId) {
        self.orders.push((order_id, user));
    }

    fn len(&self) -> usize {
        self.orders.len()
    }
}

/// One hostile scenario's model.
trait Model {
    fn session(&mut self) -> &mut Session;
    fn warmup(&mut self, out: &mut Vec<Command>);
    /// One timed command: appends exactly one to `out`.
    fn step(&mut self, out: &mut Vec<Command>);
    /// The mid for [`FlowStats`] (see the module docs).
    fn mid(&self) -> u64;
}

pub(crate) fn generate(symbol: Symbol, scenario: Scenario, commands: usize, seed: u64) -> Flow {
    match scenario {
        Scenario::Swing => run(Swing::new(symbol, seed), scenario, seed, commands),
        Scenario::ClientIds => run(ClientIds::new(symbol, seed, commands), scenario, seed, commands),
        Scenario::DeepBook => run(DeepBook::new(symbol, seed, commands), scenario, seed, commands),
        Scenario::FlashCrash => run(FlashCrash::new(symbol, seed, commands), scenario, seed, commands),
        Scenario::Fixed | Scenario::Normal | Scenario::Volatile | Scenario::Crash => {
            unreachable!("Invariant: generate_for sends only the hostile scenarios here")
        }
    }
}

fn run<M: Model>(mut model: M, scenario: Scenario, seed: u64, commands: usize) -> Flow {
    let mut warmup = Vec::new();
    model.warmup(&mut warmup);
    let mid = model.mid();
    let s = model.session();
    // Count the timed part only (but the most resting and levels over all).
    s.stats = FlowStats {
        warmup_orders: warmup.len() as u64,
        resting_after_warmup: s.exchange.order_count() as u64,
        resting_max: s.stats.resting_max,
        mid_start_ticks: mid,
        mid_end_ticks: mid,
        mid_min_ticks: mid,
        mid_max_ticks: mid,
        ..FlowStats::default()
    };
    s.sample_levels();
    s.tally = Tally::default();
    let mut timed = Vec::with_capacity(commands);
    for step in 0..commands as u64 {
        if step.is_multiple_of(LEVELS_SAMPLE_EVERY) {
            model.session().sample_levels();
        }
        model.step(&mut timed);
        debug_assert_eq!(timed.len() as u64, step + 1, "Invariant: a step is one command");
        let mid = model.mid();
        let s = model.session();
        s.step += 1;
        s.observe_mid(mid);
    }
    let s = model.session();
    let Tally { events, trades, stp_cancels, rejected_unknown_order, rejected_other } = s.tally;
    let levels = s.levels();
    let stats = FlowStats {
        events,
        trades,
        stp_cancels,
        rejected_unknown_order,
        rejected_other,
        resting_at_end: s.exchange.order_count() as u64,
        levels_at_end: levels,
        levels_max: s.stats.levels_max.max(levels),
        ..s.stats.clone()
    };
    Flow { scenario, seed, warmup, commands: timed, stats }
}

// ----- Swing -----

struct Swing {
    s: Session,
    /// The walk's position, in ticks.
    walk: u64,
    /// The round's quotes still to send, taken from the end.
    round: Vec<(Side, Price)>,
    live: Pool,
}

impl Swing {
    fn new(symbol: Symbol, seed: u64) -> Swing {
        let config = Session::config(2 * SWING_RESTING, 2 * SWING_RESTING, 0);
        Swing {
            s: Session::new(symbol, Scenario::Swing, seed, config),
            walk: SWING_START_TICKS,
            round: Vec::with_capacity(2 * SWING_STRETCH),
            live: Pool::default(),
        }
    }

    /// The walk's next position.
    fn walk_next(&mut self) -> u64 {
        let max = SWING_STEP_MAX_TICKS as i64;
        let pull = (self.walk as i64 - SWING_START_TICKS as i64) / SWING_REVERSION_STEPS;
        let step = self.s.rng.random_range(-max..=max) - pull;
        let next = self.walk.saturating_add_signed(step);
        self.walk = if next < SWING_FLOOR_TICKS { 2 * SWING_FLOOR_TICKS - next } else { next };
        self.walk
    }

    /// The next (side, price) of the shuffled rounds.
    fn quote(&mut self) -> (Side, Price) {
        if self.round.is_empty() {
            for _ in 0..SWING_STRETCH {
                let price = self.walk_next() - SWING_GAP_TICKS;
                self.round.push((Side::Buy, price));
            }
            for _ in 0..SWING_STRETCH {
                let price = self.walk_next() + SWING_GAP_TICKS;
                self.round.push((Side::Sell, price));
            }
            for i in (1..self.round.len()).rev() {
                let j = self.s.rng.random_range(0..=i as u64) as usize;
                self.round.swap(i, j);
            }
        }
        self.round.pop().expect("Invariant: a round was just drawn")
    }
}

impl Model for Swing {
    fn session(&mut self) -> &mut Session {
        &mut self.s
    }

    fn warmup(&mut self, out: &mut Vec<Command>) {
        for _ in 0..SWING_RESTING {
            let (side, mut price) = self.quote();
            // A quote that would cross goes behind the opposite touch.
            let behind = self.s.rng.random_range(1..=SWING_STEP_MAX_TICKS);
            match (side, self.s.best(side.opposite())) {
                (Side::Buy, Some(ask)) if price >= ask => price = ask - behind,
                (Side::Sell, Some(bid)) if price <= bid => price = bid + behind,
                _ => {}
            }
            let (user, qty) = (self.s.user(), self.s.qty());
            let id = self.s.rest(user, side, price, qty, out);
            self.live.push(id, user);
        }
    }

    fn step(&mut self, out: &mut Vec<Command>) {
        let resting = self.s.exchange.order_count() as f64;
        let cancel = SWING_CANCEL_SHARE * resting / SWING_RESTING as f64;
        if self.s.chance(cancel.min(0.9)) && self.s.cancel_from(&mut self.live, out) {
            return;
        }
        let roll = self.s.uniform();
        if roll < SWING_MARKET_SHARE {
            let (user, side, qty) = (self.s.user(), self.s.side(), self.s.qty());
            self.s.market(user, side, qty, out);
        } else if roll < SWING_MARKET_SHARE + SWING_IOC_SHARE {
            let side = self.s.side();
            self.s.take_at_touch(side, SWING_STEP_MAX_TICKS, out);
        } else {
            let (side, price) = self.quote();
            let (user, qty) = (self.s.user(), self.s.qty());
            let (id, rests) = self.s.limit(user, side, price, qty, Tif::Gtc, out);
            if rests {
                self.live.push(id, user);
            }
        }
    }

    fn mid(&self) -> u64 {
        self.walk
    }
}

// ----- Lifetimes (ClientIds, FlashCrash) -----

/// What falls due for a tracked order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    /// Sorts first, so a replace due at the same step as its cancel goes first.
    Replace,
    Cancel,
}

/// A scheduled command, ordered by due step (then handle, for determinism).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    due_step: u64,
    handle: u32,
    due: Due,
}

/// The `Normal` session's lifetimes: each tracked resting order gets a
/// cancel after an exponential lifetime, short or long, and perhaps a
/// replace at a uniform point of it. An order is tracked by a handle,
/// which a cancel-and-replace points at the new id.
#[derive(Default)]
struct Lifetimes {
    pending: BinaryHeap<Reverse<Pending>>,
    /// By handle: the order's current id and owner.
    handles: Vec<(OrderId, UserId)>,
}

impl Lifetimes {
    /// Tracks a resting order; `replace_share` of them also get a replace.
    fn track(&mut self, s: &mut Session, order_id: OrderId, user: UserId, long_lived: bool, replace_share: f64) {
        let handle = u32::try_from(self.handles.len()).expect("Invariant: fewer than 2^32 orders");
        self.handles.push((order_id, user));
        let mean = if long_lived { NORMAL_LIFE_LONG_MEAN } else { NORMAL_LIFE_SHORT_MEAN };
        let life = s.exponential(mean);
        self.pending.push(Reverse(Pending { due_step: s.step + life, handle, due: Due::Cancel }));
        if replace_share > 0.0 && s.chance(replace_share) {
            let at = ((s.uniform() * life as f64) as u64).max(1);
            self.pending.push(Reverse(Pending { due_step: s.step + at, handle, due: Due::Replace }));
        }
    }

    /// The next entry due at `step` or before.
    fn next_due(&mut self, step: u64) -> Option<Pending> {
        let &Reverse(pending) = self.pending.peek()?;
        if pending.due_step > step {
            return None;
        }
        self.pending.pop();
        Some(pending)
    }
}

impl Session {
    /// Cancels a tracked order if it still rests; if it is gone (filled),
    /// sends the cancel anyway, stale, with [`STALE_SEND_PROBABILITY`].
    /// False when nothing was sent.
    fn cancel_tracked(&mut self, order_id: OrderId, user: UserId, out: &mut Vec<Command>) -> bool {
        let stale = self.exchange.order(order_id).is_none();
        if stale && !self.chance(STALE_SEND_PROBABILITY) {
            return false;
        }
        self.cancel(user, order_id, stale, out);
        true
    }
}

// ----- ClientIds -----

struct ClientIds {
    s: Session,
    distance: PowerLaw,
    lifetimes: Lifetimes,
    /// The new-order half of a cancel-and-replace, sent as the next
    /// command (its id is given then).
    replacement: Option<(u32, NewOrder)>,
    mid: u64,
}

impl ClientIds {
    fn new(symbol: Symbol, seed: u64, commands: usize) -> ClientIds {
        let config = Session::config(2 * NORMAL_WARMUP, 4096, commands);
        let mut s = Session::new(symbol, Scenario::ClientIds, seed, config);
        // A random permutation of 1..=N (Fisher-Yates), handed out from the end.
        let n = (NORMAL_WARMUP + commands) as u64;
        let mut ids: Vec<OrderId> = (1..=n).collect();
        for i in (1..ids.len()).rev() {
            let j = s.rng.random_range(0..=i as u64) as usize;
            ids.swap(i, j);
        }
        s.client_ids = ids;
        ClientIds {
            s,
            distance: PowerLaw::new(DISTANCE_EXPONENT, DISTANCE_MAX_TICKS),
            lifetimes: Lifetimes::default(),
            replacement: None,
            mid: crate::MID_START_TICKS,
        }
    }

    /// A `gtc` price `d` ticks from the mid on `side`'s own side.
    fn passive_price(&mut self, side: Side, long_lived: bool) -> Price {
        let offset = if long_lived { NORMAL_LONG_OFFSET_TICKS } else { 0 };
        let d = self.distance.sample(&mut self.s.rng) + offset;
        match side {
            Side::Buy => self.mid.saturating_sub(d).max(1),
            Side::Sell => self.mid + d,
        }
    }

    /// Sends what falls due, if anything is sent.
    fn due(&mut self, pending: Pending, out: &mut Vec<Command>) -> bool {
        let (order_id, user) = self.lifetimes.handles[pending.handle as usize];
        let Some((_, order)) = self.s.exchange.order(order_id) else {
            return self.s.cancel_tracked(order_id, user, out);
        };
        if pending.due == Due::Replace {
            let (side, price, qty, post_only) = (order.side, order.price, order.qty, order.post_only);
            let roll = self.s.uniform();
            let (new_price, new_qty) = if roll < 0.55 {
                // A one-tick reprice, toward or away from the mid.
                let toward_mid = self.s.chance(0.5);
                let up = (side == Side::Buy) == toward_mid;
                let away = match side {
                    Side::Buy => price - 1,
                    Side::Sell => price + 1,
                };
                let mut new_price = if up { price + 1 } else { price - 1 };
                if post_only && self.s.would_take(side, new_price) {
                    new_price = away;
                }
                if new_price == 0 {
                    new_price = price;
                }
                let more = self.s.rng.random_range(1..=MODIFY_ADD_MAX);
                (new_price, if self.s.chance(0.5) { qty } else { qty + more })
            } else if roll < 0.85 || qty < 2 {
                (price, qty + self.s.rng.random_range(1..=MODIFY_ADD_MAX))
            } else {
                (price, self.s.rng.random_range(1..qty))
            };
            let replacement =
                NewOrder::limit(0, user, self.s.symbol, side, new_price, new_qty).with_post_only(post_only);
            self.replacement = Some((pending.handle, replacement));
        }
        self.s.cancel(user, order_id, false, out);
        true
    }

    fn new_order(&mut self, out: &mut Vec<Command>) {
        let user = self.s.user();
        let roll = self.s.uniform();
        if roll < MARKET_SHARE {
            let (side, qty) = (self.s.side(), self.s.qty());
            self.s.market(user, side, qty, out);
        } else if roll < MARKET_SHARE + IOC_SHARE {
            let side = self.s.side();
            // At the touch half the time, else up to the max through it.
            let through = if self.s.chance(0.5) { 0 } else { IOC_THROUGH_MAX_TICKS };
            self.s.take_at_touch(side, through, out);
        } else {
            let side = self.s.side();
            let long_lived = self.s.chance(NORMAL_LIFE_LONG_SHARE);
            let price = self.passive_price(side, long_lived);
            let qty = self.s.qty();
            let post_only = self.s.chance(POST_ONLY_SHARE) && !self.s.would_take(side, price);
            let id = self.s.new_id();
            let order = NewOrder::limit(id, user, self.s.symbol, side, price, qty).with_post_only(post_only);
            if self.s.send(order, out).1 {
                self.lifetimes.track(&mut self.s, id, user, long_lived, MODIFY_SHARE);
            }
        }
    }
}

impl Model for ClientIds {
    fn session(&mut self) -> &mut Session {
        &mut self.s
    }

    fn warmup(&mut self, out: &mut Vec<Command>) {
        // The long class in proportion to its time in the book (as in
        // `generator.rs`: the residual life of an order found resting).
        let long_time = NORMAL_LIFE_LONG_SHARE * NORMAL_LIFE_LONG_MEAN;
        let long_share = long_time / (long_time + (1.0 - NORMAL_LIFE_LONG_SHARE) * NORMAL_LIFE_SHORT_MEAN);
        for _ in 0..NORMAL_WARMUP {
            let long_lived = self.s.chance(long_share);
            let side = self.s.side();
            let price = self.passive_price(side, long_lived);
            let (user, qty) = (self.s.user(), self.s.qty());
            let id = self.s.rest(user, side, price, qty, out);
            self.lifetimes.track(&mut self.s, id, user, long_lived, MODIFY_SHARE);
        }
    }

    fn step(&mut self, out: &mut Vec<Command>) {
        if let Some((handle, order)) = self.replacement.take() {
            let order = NewOrder { order_id: self.s.new_id(), ..order };
            self.s.stats.replaces += 1;
            self.s.send(order, out);
            // Its scheduled cancel now names the new id (stale if it filled).
            self.lifetimes.handles[handle as usize].0 = order.order_id;
            return;
        }
        if self.s.chance(NORMAL_WALK_MOVE_PROBABILITY) {
            self.mid = if self.s.chance(0.5) { self.mid + 1 } else { self.mid - 1 };
        }
        while let Some(pending) = self.lifetimes.next_due(self.s.step) {
            if self.due(pending, out) {
                return;
            }
        }
        self.new_order(out);
    }

    fn mid(&self) -> u64 {
        self.mid
    }
}

// ----- DeepBook -----

struct DeepBook {
    s: Session,
    /// Orders near the touch (both sides).
    near: Pool,
    /// Orders at the far end of the bids (0) and of the asks (1).
    far: [Pool; 2],
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Buy => 0,
        Side::Sell => 1,
    }
}

impl DeepBook {
    fn new(symbol: Symbol, seed: u64, commands: usize) -> DeepBook {
        let resting = 2 * DEEP_LEVELS_PER_SIDE + 4 * DEEP_END_LEVELS;
        let config = Session::config(resting, DEEP_LEVELS_PER_SIDE + DEEP_END_LEVELS, commands);
        DeepBook {
            s: Session::new(symbol, Scenario::DeepBook, seed, config),
            near: Pool::default(),
            far: [Pool::default(), Pool::default()],
        }
    }

    /// The warm-up price of level `i` (0 at the touch) of `side`.
    fn level_price(side: Side, i: usize) -> Price {
        let offset = DEEP_SPACING_TICKS / 2 + DEEP_SPACING_TICKS * i as u64;
        match side {
            Side::Buy => DEEP_MID_TICKS - offset,
            Side::Sell => DEEP_MID_TICKS + offset,
        }
    }

    /// The deepest warm-up price of `side`.
    fn far_end(side: Side) -> Price {
        DeepBook::level_price(side, DEEP_LEVELS_PER_SIDE - 1)
    }

    /// A new `gtc` order or a cancel at the far end of `side`.
    fn far_step(&mut self, side: Side, out: &mut Vec<Command>) {
        let pool = &mut self.far[side_index(side)];
        let cancel = 0.5 * pool.len() as f64 / DEEP_END_LEVELS as f64;
        if self.s.chance(cancel.min(0.95)) && self.s.cancel_from(pool, out) {
            return;
        }
        let spread = DEEP_FAR_SPREAD_TICKS as i64;
        let price = DeepBook::far_end(side).saturating_add_signed(self.s.rng.random_range(-spread..=spread));
        let (user, qty) = (self.s.user(), self.s.qty());
        let (id, rests) = self.s.limit(user, side, price, qty, Tif::Gtc, out);
        if rests {
            self.far[side_index(side)].push(id, user);
        }
    }

    /// A new `gtc` order near the touch of `side`, within
    /// [`DEEP_NEAR_TICKS`] of the mid (most in the gaps between levels, so
    /// new levels), never crossing.
    fn near_order(&mut self, side: Side, out: &mut Vec<Command>) {
        let mid = self.s.touch_mid().unwrap_or(DEEP_MID_TICKS);
        let d = self.s.rng.random_range(1..=DEEP_NEAR_TICKS);
        let price = match side {
            // mid < best ask and mid + 1 > best bid: neither crosses.
            Side::Buy => mid + 1 - d,
            Side::Sell => mid + d,
        };
        let (user, qty) = (self.s.user(), self.s.qty());
        let (id, rests) = self.s.limit(user, side, price, qty, Tif::Gtc, out);
        if rests {
            self.near.push(id, user);
        }
    }
}

impl Model for DeepBook {
    fn session(&mut self) -> &mut Session {
        &mut self.s
    }

    fn warmup(&mut self, out: &mut Vec<Command>) {
        // From the far ends inward: each side's levels arrive worst first.
        for i in (0..DEEP_LEVELS_PER_SIDE).rev() {
            for side in [Side::Buy, Side::Sell] {
                let (user, qty) = (self.s.user(), self.s.qty());
                let id = self.s.rest(user, side, DeepBook::level_price(side, i), qty, out);
                if i < DEEP_END_LEVELS {
                    self.near.push(id, user);
                } else if i >= DEEP_LEVELS_PER_SIDE - DEEP_END_LEVELS {
                    self.far[side_index(side)].push(id, user);
                }
            }
        }
    }

    fn step(&mut self, out: &mut Vec<Command>) {
        if self.s.chance(DEEP_FAR_SHARE) {
            let side = self.s.side();
            self.far_step(side, out);
            return;
        }
        let side = self.s.side();
        let roll = self.s.uniform();
        if roll < DEEP_MARKET_SHARE {
            let (user, qty) = (self.s.user(), self.s.qty());
            self.s.market(user, side, qty, out);
        } else if roll < DEEP_MARKET_SHARE + DEEP_IOC_SHARE {
            self.s.take_at_touch(side, 2 * DEEP_SPACING_TICKS, out);
        } else if roll < DEEP_MARKET_SHARE + DEEP_IOC_SHARE + DEEP_FAR_LIMIT_IOC_SHARE {
            // Takes at the touch, but its limit lies at the far end of the book.
            let limit = match side {
                Side::Buy => DeepBook::far_end(Side::Sell) + DEEP_FAR_SPREAD_TICKS,
                Side::Sell => DeepBook::far_end(Side::Buy) - DEEP_FAR_SPREAD_TICKS,
            };
            let (user, qty) = (self.s.user(), self.s.qty());
            self.s.limit(user, side, limit, qty, Tif::Ioc, out);
        } else {
            let cancel = DEEP_CANCEL_SHARE * self.near.len() as f64 / (2 * DEEP_END_LEVELS) as f64;
            if self.s.chance(cancel.min(0.9)) && self.s.cancel_from(&mut self.near, out) {
                return;
            }
            self.near_order(side, out);
        }
    }

    fn mid(&self) -> u64 {
        self.s.touch_mid().unwrap_or(DEEP_MID_TICKS)
    }
}

// ----- FlashCrash -----

struct FlashCrash {
    s: Session,
    distance: PowerLaw,
    /// The normal flow's own orders.
    lifetimes: Lifetimes,
    /// Steps at which a sweep is due, latest first.
    sweeps: Vec<u64>,
    crash_from: u64,
    crash_to: u64,
    recovery_to: u64,
    /// Where the mid's trend stands; the walk is added to it.
    anchor: u64,
    walk: i64,
    /// The recovery's start and end (set when the crash window closes).
    recovery: Option<(u64, u64)>,
    mid: u64,
}

impl FlashCrash {
    fn new(symbol: Symbol, seed: u64, commands: usize) -> FlashCrash {
        let resting = FC_BID_LEVELS + FC_ASK_LEVELS + 2 * NORMAL_WARMUP;
        let config = Session::config(resting, FC_BID_LEVELS + NORMAL_WARMUP, commands);
        let mut s = Session::new(symbol, Scenario::FlashCrash, seed, config);
        let steps_total = commands as u64;
        let crash_from = (FC_CRASH_FROM * steps_total as f64) as u64;
        let crash_to = ((FC_CRASH_TO * steps_total as f64) as u64).max(crash_from + 1);
        let recovery_to = ((FC_RECOVERY_TO * steps_total as f64) as u64).max(crash_to + 1);
        let mut sweeps: Vec<u64> = (0..FC_SWEEPS).map(|_| s.rng.random_range(crash_from..crash_to)).collect();
        sweeps.sort_unstable_by(|a, b| b.cmp(a));
        FlashCrash {
            s,
            distance: PowerLaw::new(DISTANCE_EXPONENT, DISTANCE_MAX_TICKS),
            lifetimes: Lifetimes::default(),
            sweeps,
            crash_from,
            crash_to,
            recovery_to,
            anchor: FC_MID_TICKS,
            walk: 0,
            recovery: None,
            mid: FC_MID_TICKS,
        }
    }

    /// Share of aggressive orders that buy: even before the crash and
    /// after the recovery, sellers in the crash, buyers in the recovery.
    fn aggressive_buy_share(&self) -> f64 {
        match self.s.step {
            step if step < self.crash_from => 0.5,
            step if step < self.crash_to => 0.3,
            step if step < self.recovery_to => 0.6,
            _ => 0.5,
        }
    }

    fn advance_mid(&mut self) {
        if self.s.chance(NORMAL_WALK_MOVE_PROBABILITY) {
            self.walk += if self.s.chance(0.5) { 1 } else { -1 };
        }
        if self.s.step >= self.crash_to {
            let (low, high) = match self.recovery {
                Some(recovery) => recovery,
                None => {
                    // The recovery starts from where the crash left the mid.
                    let low = self.anchor.saturating_add_signed(self.walk);
                    let high = low + (FC_RECOVERED * FC_MID_TICKS.saturating_sub(low) as f64) as u64;
                    self.walk = 0;
                    *self.recovery.insert((low, high))
                }
            };
            // A smoothstep from low to high, then high.
            let span = (self.recovery_to - self.crash_to) as f64;
            let x = ((self.s.step - self.crash_to) as f64 / span).min(1.0);
            self.anchor = low + ((high - low) as f64 * x * x * (3.0 - 2.0 * x)) as u64;
        }
        self.mid = self.anchor.saturating_add_signed(self.walk).max(2 * DISTANCE_MAX_TICKS);
    }

    /// A sell that takes the best `levels` bid levels whole: a market
    /// order for exactly their quantity, or an `ioc` limit at the last of
    /// their prices for a little more. False when there are no bids.
    fn sweep(&mut self, out: &mut Vec<Command>) -> bool {
        let levels = self.s.rng.random_range(FC_SWEEP_LEVELS_MIN..=FC_SWEEP_LEVELS_MAX);
        let Some(book) = self.s.exchange.book(&self.s.symbol) else { return false };
        let (mut total, mut last) = (0u128, None);
        for (price, qty, _) in book.depth(Side::Buy).take(levels) {
            total += qty;
            last = Some(price);
        }
        let Some(last) = last else { return false };
        let qty = Qty::try_from(total).expect("Invariant: a few thousand levels hold far less than 2^64");
        let user = self.s.user();
        if self.s.chance(0.5) {
            self.s.market(user, Side::Sell, qty, out);
        } else {
            let more = self.s.qty();
            self.s.limit(user, Side::Sell, last, qty + more, Tif::Ioc, out);
        }
        // The flow now quotes around the new best bid.
        let bid = self.s.best(Side::Buy).unwrap_or(last);
        (self.anchor, self.walk, self.mid) = (bid + 1, 0, bid + 1);
        true
    }

    /// A command of the normal flow: a cancel that falls due, else a new order.
    fn normal(&mut self, out: &mut Vec<Command>) {
        while let Some(pending) = self.lifetimes.next_due(self.s.step) {
            let (order_id, user) = self.lifetimes.handles[pending.handle as usize];
            if self.s.cancel_tracked(order_id, user, out) {
                return;
            }
        }
        let roll = self.s.uniform();
        if roll < MARKET_SHARE + FC_IOC_SHARE {
            let buy_share = self.aggressive_buy_share();
            let side = if self.s.chance(buy_share) { Side::Buy } else { Side::Sell };
            if roll < MARKET_SHARE {
                let (user, qty) = (self.s.user(), self.s.qty());
                self.s.market(user, side, qty, out);
            } else {
                self.s.take_at_touch(side, IOC_THROUGH_MAX_TICKS, out);
            }
            return;
        }
        let side = self.s.side();
        let long_lived = self.s.chance(NORMAL_LIFE_LONG_SHARE);
        let offset = if long_lived { NORMAL_LONG_OFFSET_TICKS } else { 0 };
        let d = self.distance.sample(&mut self.s.rng) + offset;
        let price = match side {
            Side::Buy => self.mid - d,
            Side::Sell => self.mid + d,
        };
        let (user, qty) = (self.s.user(), self.s.qty());
        let (id, rests) = self.s.limit(user, side, price, qty, Tif::Gtc, out);
        if rests {
            self.lifetimes.track(&mut self.s, id, user, long_lived, 0.0);
        }
    }
}

impl Model for FlashCrash {
    fn session(&mut self) -> &mut Session {
        &mut self.s
    }

    fn warmup(&mut self, out: &mut Vec<Command>) {
        // From the far ends inward: each side's levels arrive worst first.
        for i in (0..FC_BID_LEVELS.max(FC_ASK_LEVELS)).rev() {
            let offset = 1 + FC_SPACING_TICKS * i as u64;
            for (side, levels) in [(Side::Buy, FC_BID_LEVELS), (Side::Sell, FC_ASK_LEVELS)] {
                if i >= levels {
                    continue;
                }
                let price = match side {
                    Side::Buy => FC_MID_TICKS - offset,
                    Side::Sell => FC_MID_TICKS + offset,
                };
                let (user, qty) = (self.s.user(), self.s.qty());
                self.s.rest(user, side, price, qty, out);
            }
        }
    }

    fn step(&mut self, out: &mut Vec<Command>) {
        self.advance_mid();
        if self.sweeps.last().is_some_and(|&at| at <= self.s.step) {
            self.sweeps.pop();
            if self.sweep(out) {
                return;
            }
        }
        self.normal(out);
    }

    fn mid(&self) -> u64 {
        self.mid
    }
}

#[cfg(test)]
mod tests;
