//! The flow model.
//!
//! Time is counted in timed commands (one "step" per command). Each step the
//! mid moves (or not) by the scenario's random walk; then, if a resting
//! order's scheduled cancel or modify is due, that is the step's command,
//! otherwise a new order arrives. So cancels and modifies take the share of
//! the flow their orders' lifetimes give them, and the rest is new orders.
//!
//! - **New orders.** [`MARKET_SHARE`] market, [`IOC_SHARE`] `ioc` limits priced
//!   at the opposite touch or up to [`IOC_THROUGH_MAX_TICKS`] through it, the
//!   rest `gtc` limits at `mid - d` (buy) or `mid + d` (sell), where the
//!   distance `d >= 1` tick is drawn from `P(d) ~ d^-DISTANCE_EXPONENT`, capped
//!   at [`DISTANCE_MAX_TICKS`]. A `gtc` order may cross orders the moving mid
//!   left on the wrong side, and trades through them like a real one would.
//!   Quantities are uniform in `1..=QTY_MAX`.
//! - **Lifetimes.** A `gtc` order that rests gets a cancel after an
//!   exponential lifetime: most ([`Params::life_long_share`] aside) with a
//!   short mean (hundreds of commands), the others with a long one (10^5
//!   and more). Long-lived orders are patient liquidity and sit
//!   [`Params::long_offset_ticks`] deeper, else the walking mid would trade
//!   through nearly all of them and no standing book could build up.
//!   [`MODIFY_SHARE`] of resting orders also get
//!   a modify at a uniform point of their life: mostly a one-tick reprice
//!   (toward or away from the mid, sometimes with more quantity), else more
//!   quantity, else a reduction in place.
//! - **Stale commands.** When a scheduled cancel or modify falls due and its
//!   order is gone (filled, or cancelled by self-trade prevention), the
//!   client still sends it with probability [`STALE_SEND_PROBABILITY`]
//!   (the race between a fill report and the client); and
//!   [`CANCEL_RETRY_PROBABILITY`] of cancels are sent a second time shortly
//!   after. Those, and only those, are rejected `unknown_order`.
//! - **Users.** [`USERS`] users; [`HEAVY_USERS`] market makers send
//!   [`HEAVY_SHARE`] of the orders and use self-trade prevention on
//!   [`STP_SHARE_HEAVY`] of them (others on [`STP_SHARE_OTHER`]); a few
//!   `gtc` orders are post-only (never sent when they would take).
//! - **Warm-up.** `warmup_orders` `gtc` orders around the start mid, none
//!   crossing, each with the *residual* lifetime of an order found resting
//!   (the long class weighted by its mean; exponentials are memoryless), so
//!   the timed part starts near the steady state. Each scenario's
//!   `warmup_orders` is the resting count its dynamics settle at (measured
//!   with `examples/flow_stats.rs`), except `Fixed`, whose 50k book is the
//!   point and whose lifetimes are chosen to hold it.
//!
//! The generator applies every command to its own [`Exchange`] as it goes
//! and asks it whether an order still rests: that is how it knows a cancel
//! is stale, what a modify should change, and where the touch is.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use matching_core::{
    Action, CancelReason, Command, Config, Event, EventKind, EventSink, Exchange, NewOrder, Price, Qty, RejectReason,
    RestingOrder, Side, Stp, Symbol, Tif, UserId,
};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::{Flow, FlowStats, MID_START_TICKS, Scenario};

/// Share of new orders that are market orders.
pub(crate) const MARKET_SHARE: f64 = 0.02;
/// Share of new orders that are aggressive `ioc` limit orders.
pub(crate) const IOC_SHARE: f64 = 0.15;
/// An `ioc` order is priced this many ticks through the opposite touch at most.
pub(crate) const IOC_THROUGH_MAX_TICKS: u64 = 4;
/// `P(d) ~ d^-DISTANCE_EXPONENT` for a `gtc` order's distance from the mid.
pub(crate) const DISTANCE_EXPONENT: f64 = 2.2;
/// The deepest a `gtc` order is placed from the mid, in ticks.
pub(crate) const DISTANCE_MAX_TICKS: u64 = 1000;
/// Quantities are uniform in `1..=QTY_MAX` lots.
pub(crate) const QTY_MAX: Qty = 100;
/// Share of resting orders that get one modify during their life.
pub(crate) const MODIFY_SHARE: f64 = 0.20;
/// A modify adds at most this many lots when it adds quantity.
pub(crate) const MODIFY_ADD_MAX: Qty = 20;
/// Probability that a cancel or modify whose order is already gone is sent anyway.
pub(crate) const STALE_SEND_PROBABILITY: f64 = 0.06;
/// Probability that a cancel is sent again (a client retry) shortly after.
const CANCEL_RETRY_PROBABILITY: f64 = 0.01;
/// A retried cancel follows the first within this many commands.
const CANCEL_RETRY_DELAY_MAX: u64 = 50;
/// Users are `1..=USERS`.
pub(crate) const USERS: UserId = 1000;
/// Users `1..=HEAVY_USERS` are market makers.
pub(crate) const HEAVY_USERS: UserId = 10;
/// Share of orders sent by the market makers.
pub(crate) const HEAVY_SHARE: f64 = 0.30;
/// Share of a market maker's orders that use self-trade prevention.
const STP_SHARE_HEAVY: f64 = 0.15;
/// Share of other users' orders that use self-trade prevention.
const STP_SHARE_OTHER: f64 = 0.01;
/// Share of `gtc` orders that are post-only.
pub(crate) const POST_ONLY_SHARE: f64 = 0.05;
/// The mid is kept in fixed point with this many fractional bits, so a
/// drift of a fraction of a tick per command accumulates exactly.
const MID_FRACTION_BITS: u32 = 16;
/// [`FlowStats::levels_max`] is sampled every this many timed commands.
pub(crate) const LEVELS_SAMPLE_EVERY: u64 = 1 << 14;

/// One scenario's numbers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    /// Resting orders laid by the warm-up.
    pub(crate) warmup_orders: usize,
    /// Mean lifetime of a short-lived resting order, in commands.
    pub(crate) life_short_mean: f64,
    /// Mean lifetime of a long-lived resting order, in commands.
    pub(crate) life_long_mean: f64,
    /// Share of new `gtc` orders that are long-lived.
    pub(crate) life_long_share: f64,
    /// A long-lived order sits this many ticks deeper than a short-lived
    /// one: patient liquidity that the walking mid does not reach at once.
    pub(crate) long_offset_ticks: u64,
    /// Probability that a command moves the mid, by `1..=walk_step_max_ticks`.
    pub(crate) walk_move_probability: f64,
    pub(crate) walk_step_max_ticks: u64,
    /// Probability that a command makes the mid jump, by `1..=walk_jump_max_ticks`.
    pub(crate) walk_jump_probability: f64,
    pub(crate) walk_jump_max_ticks: u64,
    /// The trend's total change over the run, as a fraction of the start mid.
    pub(crate) trend_fraction: f64,
    /// Share of aggressive (`ioc` and market) orders that buy.
    pub(crate) aggressive_buy_share: f64,
}

impl Params {
    pub(crate) fn of(scenario: Scenario) -> Params {
        let normal = Params {
            warmup_orders: 9_000,
            life_short_mean: 300.0,
            life_long_mean: 200_000.0,
            life_long_share: 0.15,
            long_offset_ticks: 20,
            walk_move_probability: 0.01,
            walk_step_max_ticks: 1,
            walk_jump_probability: 0.0,
            walk_jump_max_ticks: 0,
            trend_fraction: 0.0,
            aggressive_buy_share: 0.5,
        };
        let volatile = Params {
            warmup_orders: 3_000,
            life_short_mean: 200.0,
            life_long_mean: 100_000.0,
            long_offset_ticks: 50,
            walk_move_probability: 0.03,
            walk_step_max_ticks: 2,
            walk_jump_probability: 0.0005,
            walk_jump_max_ticks: 20,
            ..normal
        };
        match scenario {
            Scenario::Fixed => Params {
                warmup_orders: 50_000,
                life_short_mean: 1_000.0,
                life_long_mean: 500_000.0,
                life_long_share: 0.20,
                long_offset_ticks: 3,
                walk_move_probability: 0.0,
                walk_step_max_ticks: 0,
                ..normal
            },
            Scenario::Normal => normal,
            Scenario::Volatile => volatile,
            Scenario::Crash => Params { trend_fraction: -0.60, aggressive_buy_share: 0.35, ..volatile },
            Scenario::Swing | Scenario::ClientIds | Scenario::DeepBook | Scenario::FlashCrash => {
                unreachable!("Invariant: the hostile scenarios have their own model (hostile.rs)")
            }
        }
    }
}

/// A discrete power law on `1..=max`: `P(d) ~ d^-exponent`, sampled by
/// binary search over integer cumulative weights.
pub(crate) struct PowerLaw {
    /// `cumulative[i]` = sum of the weights of `1..=i+1`.
    cumulative: Vec<u64>,
}

impl PowerLaw {
    pub(crate) fn new(exponent: f64, max: u64) -> PowerLaw {
        assert!(max >= 1 && exponent > 1.0);
        let mut total = 0u64;
        let cumulative = (1..=max)
            .map(|d| {
                // Scaled so the weight of 1 is 2^40: integers from here on.
                let weight = (libm::exp(-exponent * libm::log(d as f64)) * (1u64 << 40) as f64).round() as u64;
                total += weight.max(1);
                total
            })
            .collect();
        PowerLaw { cumulative }
    }

    pub(crate) fn sample(&self, rng: &mut Xoshiro256PlusPlus) -> u64 {
        let total = *self.cumulative.last().expect("a power law has at least one value");
        let r = rng.random_range(0..total);
        self.cumulative.partition_point(|&c| c <= r) as u64 + 1
    }
}

/// What falls due for a resting order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    /// Sorts first, so a modify due at the same step as its cancel goes first.
    Modify,
    Cancel,
    /// A client's second cancel of an order it has already cancelled.
    CancelRetry,
}

/// A scheduled command, ordered by due step (then id, for determinism).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    due_step: u64,
    order_id: u64,
    due: Due,
    user: UserId,
}

/// Counts the internal run's events (the hostile scenarios' too).
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) events: u64,
    pub(crate) trades: u64,
    pub(crate) stp_cancels: u64,
    pub(crate) rejected_unknown_order: u64,
    pub(crate) rejected_other: u64,
}

impl EventSink for Tally {
    fn event(&mut self, event: &Event) {
        self.events += 1;
        match event.kind {
            EventKind::Trade(_) => self.trades += 1,
            EventKind::Cancelled { reason: CancelReason::Stp, .. } => self.stp_cancels += 1,
            EventKind::Rejected { reason: RejectReason::UnknownOrder, .. } => self.rejected_unknown_order += 1,
            EventKind::Rejected { .. } => self.rejected_other += 1,
            _ => {}
        }
    }
}

struct Generator {
    params: Params,
    rng: Xoshiro256PlusPlus,
    exchange: Exchange,
    symbol: Symbol,
    distance: PowerLaw,
    pending: BinaryHeap<Reverse<Pending>>,
    /// Timed commands generated so far.
    step: u64,
    /// Timed commands to generate (the trend is spread over them).
    steps_total: u64,
    next_seq: u64,
    /// The random walk's displacement from the trend, in fixed point.
    walk_fp: i64,
    /// The current mid, in ticks.
    mid: u64,
    tally: Tally,
    stats: FlowStats,
}

impl Generator {
    fn new(symbol: Symbol, scenario: Scenario, params: Params, steps_total: u64, seed: u64) -> Generator {
        // Each scenario draws from its own stream of the same seed.
        let salt = (scenario as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let config = Config {
            orders_preallocated: params.warmup_orders * 2 + 1024,
            levels_preallocated: 4096,
            ..Config::default()
        };
        Generator {
            params,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed ^ salt),
            exchange: Exchange::new(config),
            symbol,
            distance: PowerLaw::new(DISTANCE_EXPONENT, DISTANCE_MAX_TICKS),
            pending: BinaryHeap::new(),
            step: 0,
            steps_total,
            next_seq: 1,
            walk_fp: 0,
            mid: MID_START_TICKS,
            tally: Tally::default(),
            stats: FlowStats {
                mid_start_ticks: MID_START_TICKS,
                mid_min_ticks: MID_START_TICKS,
                mid_max_ticks: MID_START_TICKS,
                ..FlowStats::default()
            },
        }
    }

    /// Applies `action` as the next command and appends it to `out`.
    fn emit(&mut self, action: Action, out: &mut Vec<Command>) -> Command {
        let command = Command::new(self.next_seq, action);
        self.next_seq += 1;
        self.exchange.process(&command, &mut self.tally);
        self.stats.resting_max = self.stats.resting_max.max(self.exchange.order_count() as u64);
        out.push(command);
        command
    }

    fn uniform(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    fn chance(&mut self, probability: f64) -> bool {
        self.rng.random_bool(probability)
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

    fn stp(&mut self, user: UserId) -> Stp {
        let share = if user <= HEAVY_USERS { STP_SHARE_HEAVY } else { STP_SHARE_OTHER };
        if !self.chance(share) {
            return Stp::None;
        }
        match self.rng.random_range(0..3) {
            0 => Stp::CancelTaker,
            1 => Stp::CancelMaker,
            _ => Stp::CancelBoth,
        }
    }

    /// An exponential draw with this mean, at least 1.
    fn exponential(&mut self, mean: f64) -> u64 {
        // 1 - [0, 1) is (0, 1]: ln is finite.
        let u = 1.0 - self.uniform();
        ((-mean * libm::log(u)).ceil() as u64).max(1)
    }

    /// A `gtc` price `d` ticks from the mid on `side`'s own side (plus the
    /// long-lived offset).
    fn passive_price(&mut self, side: Side, long_lived: bool) -> Price {
        let offset = if long_lived { self.params.long_offset_ticks } else { 0 };
        let d = self.distance.sample(&mut self.rng) + offset;
        match side {
            Side::Buy => self.mid.saturating_sub(d).max(1),
            Side::Sell => self.mid + d,
        }
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

    /// Schedules the cancel (and perhaps a modify) of a resting order.
    fn schedule(&mut self, order_id: u64, user: UserId, long_lived: bool) {
        let mean = if long_lived { self.params.life_long_mean } else { self.params.life_short_mean };
        let life = self.exponential(mean);
        let cancel_step = self.step + life;
        self.pending.push(Reverse(Pending { due_step: cancel_step, order_id, due: Due::Cancel, user }));
        if self.chance(MODIFY_SHARE) {
            let at = ((self.uniform() * life as f64) as u64).max(1);
            self.pending.push(Reverse(Pending { due_step: self.step + at, order_id, due: Due::Modify, user }));
        }
    }

    /// One warm-up order: a resting `gtc` limit that crosses nothing.
    fn warmup_order(&mut self, out: &mut Vec<Command>) {
        // An order found resting is long-lived in proportion to the time
        // the long class spends in the book; its remaining life has the
        // same exponential law as a fresh one.
        let p = &self.params;
        let long_time = p.life_long_share * p.life_long_mean;
        let residual_long_share = long_time / (long_time + (1.0 - p.life_long_share) * p.life_short_mean);
        let long_lived = self.chance(residual_long_share);
        let side = if self.chance(0.5) { Side::Buy } else { Side::Sell };
        let price = self.passive_price(side, long_lived);
        let (user, qty) = (self.user(), self.qty());
        let stp = self.stp(user);
        let post_only = self.chance(POST_ONLY_SHARE);
        let id = self.next_seq;
        let order = NewOrder::limit(id, user, self.symbol, side, price, qty).with_stp(stp).with_post_only(post_only);
        self.emit(Action::New(order), out);
        assert!(self.exchange.order(id).is_some(), "Invariant: a warm-up order rests");
        self.schedule(id, user, long_lived);
    }

    /// Moves the mid: trend plus random walk.
    fn advance_mid(&mut self) {
        let p = self.params;
        let unit = 1i64 << MID_FRACTION_BITS;
        if p.walk_move_probability > 0.0 && self.chance(p.walk_move_probability) {
            let ticks = self.rng.random_range(1..=p.walk_step_max_ticks) as i64;
            self.walk_fp += if self.chance(0.5) { ticks * unit } else { -ticks * unit };
        }
        if p.walk_jump_probability > 0.0 && self.chance(p.walk_jump_probability) {
            let ticks = self.rng.random_range(1..=p.walk_jump_max_ticks) as i64;
            self.walk_fp += if self.chance(0.5) { ticks * unit } else { -ticks * unit };
        }
        // The trend follows a smoothstep: a slow start, the bulk of the
        // move in the middle, a slow end.
        let x = if self.steps_total == 0 { 0.0 } else { self.step as f64 / self.steps_total as f64 };
        let shape = x * x * (3.0 - 2.0 * x);
        let trend_fp = ((MID_START_TICKS as f64) * (1.0 + p.trend_fraction * shape) * unit as f64) as i64;
        let mid = ((trend_fp + self.walk_fp) >> MID_FRACTION_BITS).max(2 * DISTANCE_MAX_TICKS as i64);
        self.mid = mid as u64;
        self.stats.mid_min_ticks = self.stats.mid_min_ticks.min(self.mid);
        self.stats.mid_max_ticks = self.stats.mid_max_ticks.max(self.mid);
    }

    /// Price levels, both sides.
    fn levels(&self) -> u64 {
        let book = self.exchange.book(&self.symbol);
        book.map_or(0, |b| b.depth(Side::Buy).count() + b.depth(Side::Sell).count()) as u64
    }

    /// Samples [`FlowStats::levels_max`] (draws nothing from the random stream).
    fn sample_levels(&mut self) {
        self.stats.levels_max = self.stats.levels_max.max(self.levels());
    }

    /// One timed command.
    fn step(&mut self, out: &mut Vec<Command>) {
        if self.step.is_multiple_of(LEVELS_SAMPLE_EVERY) {
            self.sample_levels();
        }
        self.advance_mid();
        while let Some(&Reverse(pending)) = self.pending.peek() {
            if pending.due_step > self.step {
                break;
            }
            self.pending.pop();
            if let Some(action) = self.due_action(pending) {
                self.emit(action, out);
                self.step += 1;
                return;
            }
        }
        self.new_order(out);
        self.step += 1;
    }

    /// The command a due entry turns into, if it is sent at all.
    fn due_action(&mut self, pending: Pending) -> Option<Action> {
        let Pending { order_id, user, due, .. } = pending;
        let live = self.exchange.order(order_id).map(|(_, order)| order);
        debug_assert!(live.is_none_or(|o| o.user == user), "Invariant: the schedule knows the owner");
        let stale = match (live, due) {
            (Some(_), Due::CancelRetry) => unreachable!("Invariant: a retried cancel follows a sent cancel"),
            (Some(_), _) => false,
            (None, Due::CancelRetry) => true,
            (None, _) if self.chance(STALE_SEND_PROBABILITY) => true,
            (None, _) => return None,
        };
        match (due, live) {
            (Due::Modify, Some(order)) => {
                self.stats.modifies += 1;
                Some(self.modify_of(order))
            }
            (Due::Modify, None) => {
                self.stats.modifies += 1;
                self.stats.stale_modifies += 1;
                let qty = self.qty();
                Some(Action::Modify { user, order_id, price: None, qty: Some(qty) })
            }
            (Due::Cancel | Due::CancelRetry, _) => {
                self.stats.cancels += 1;
                if stale {
                    self.stats.stale_cancels += 1;
                } else if self.chance(CANCEL_RETRY_PROBABILITY) {
                    let delay = self.rng.random_range(1..=CANCEL_RETRY_DELAY_MAX);
                    self.pending.push(Reverse(Pending {
                        due_step: self.step + delay,
                        order_id,
                        due: Due::CancelRetry,
                        user,
                    }));
                }
                Some(Action::Cancel { user, order_id })
            }
        }
    }

    /// A modify of a resting order: a one-tick reprice (55%), more
    /// quantity at the same price (30%) or a reduction in place (15%).
    fn modify_of(&mut self, order: RestingOrder) -> Action {
        let RestingOrder { order_id, user, side, price, qty, post_only, .. } = order;
        let roll = self.uniform();
        if roll < 0.55 {
            let toward_mid = self.chance(0.5);
            let up = (side == Side::Buy) == toward_mid;
            let away = match side {
                Side::Buy => price - 1,
                Side::Sell => price + 1,
            };
            let mut new_price = if up { price + 1 } else { price - 1 };
            if new_price == 0 || (post_only && self.would_take(side, new_price)) {
                new_price = away;
            }
            let new_qty = if self.chance(0.5) { None } else { Some(qty + self.rng.random_range(1..=MODIFY_ADD_MAX)) };
            if new_price >= 1 {
                return Action::Modify { user, order_id, price: Some(new_price), qty: new_qty };
            }
            // A buy at 1 tick has nowhere lower to go (the mid's floor makes
            // that all but impossible): add quantity instead.
            let new_qty = qty + self.rng.random_range(1..=MODIFY_ADD_MAX);
            Action::Modify { user, order_id, price: None, qty: Some(new_qty) }
        } else if roll < 0.85 || qty < 2 {
            let new_qty = qty + self.rng.random_range(1..=MODIFY_ADD_MAX);
            Action::Modify { user, order_id, price: None, qty: Some(new_qty) }
        } else {
            let new_qty = self.rng.random_range(1..qty);
            Action::Modify { user, order_id, price: None, qty: Some(new_qty) }
        }
    }

    /// A new order of the scenario's mix.
    fn new_order(&mut self, out: &mut Vec<Command>) {
        let id = self.next_seq;
        let user = self.user();
        let qty = self.qty();
        let stp = self.stp(user);
        let roll = self.uniform();
        let mut long_lived = false;
        let order = if roll < MARKET_SHARE + IOC_SHARE {
            let side = if self.chance(self.params.aggressive_buy_share) { Side::Buy } else { Side::Sell };
            if roll < MARKET_SHARE {
                self.stats.new_market += 1;
                NewOrder::market(id, user, self.symbol, side, qty)
            } else {
                self.stats.new_ioc += 1;
                // At the touch half the time, else 1 tick through it, else up to the max.
                let through = if self.chance(0.5) {
                    0
                } else if self.chance(0.5) {
                    1
                } else {
                    self.rng.random_range(2..=IOC_THROUGH_MAX_TICKS)
                };
                let price = match side {
                    Side::Buy => self.best(Side::Sell).unwrap_or(self.mid + 1) + through,
                    Side::Sell => self.best(Side::Buy).unwrap_or(self.mid - 1).saturating_sub(through).max(1),
                };
                NewOrder::limit(id, user, self.symbol, side, price, qty).with_tif(Tif::Ioc)
            }
        } else {
            self.stats.new_gtc += 1;
            let side = if self.chance(0.5) { Side::Buy } else { Side::Sell };
            long_lived = self.chance(self.params.life_long_share);
            let price = self.passive_price(side, long_lived);
            // A post-only order that would take is not sent as one.
            let post_only = self.chance(POST_ONLY_SHARE) && !self.would_take(side, price);
            self.stats.new_post_only += post_only as u64;
            NewOrder::limit(id, user, self.symbol, side, price, qty).with_post_only(post_only)
        };
        let order = order.with_stp(stp);
        self.stats.new_with_stp += (stp != Stp::None) as u64;
        self.emit(Action::New(order), out);
        if order.tif == Tif::Gtc && self.exchange.order(id).is_some() {
            self.schedule(id, user, long_lived);
        }
    }

    fn finish(mut self) -> FlowStats {
        let Tally { events, trades, stp_cancels, rejected_unknown_order, rejected_other } = self.tally;
        let levels = self.levels();
        self.stats = FlowStats {
            events,
            trades,
            stp_cancels,
            rejected_unknown_order,
            rejected_other,
            resting_at_end: self.exchange.order_count() as u64,
            levels_at_end: levels,
            levels_max: self.stats.levels_max.max(levels),
            mid_end_ticks: self.mid,
            ..self.stats
        };
        self.stats
    }
}

pub(crate) fn generate(symbol: Symbol, scenario: Scenario, commands: usize, seed: u64) -> Flow {
    let params = Params::of(scenario);
    let mut generator = Generator::new(symbol, scenario, params, commands as u64, seed);
    let mut warmup = Vec::with_capacity(params.warmup_orders);
    for _ in 0..params.warmup_orders {
        generator.warmup_order(&mut warmup);
    }
    generator.stats.warmup_orders = warmup.len() as u64;
    generator.stats.resting_after_warmup = generator.exchange.order_count() as u64;
    generator.sample_levels();
    // Count the timed part's events only.
    generator.tally = Tally::default();
    let mut timed = Vec::with_capacity(commands);
    for _ in 0..commands {
        generator.step(&mut timed);
    }
    let stats = generator.finish();
    Flow { scenario, seed, warmup, commands: timed, stats }
}

pub(crate) fn standing_book(resting_orders: usize, seed: u64) -> Vec<Command> {
    let params = Params { warmup_orders: resting_orders, ..Params::of(Scenario::Normal) };
    let mut generator = Generator::new(crate::symbol(), Scenario::Normal, params, 0, seed);
    let mut out = Vec::with_capacity(resting_orders);
    for _ in 0..resting_orders {
        generator.warmup_order(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_follow_the_power_law() {
        let law = PowerLaw::new(DISTANCE_EXPONENT, DISTANCE_MAX_TICKS);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(42);
        let mut counts = vec![0u64; DISTANCE_MAX_TICKS as usize + 1];
        let draws = 400_000;
        for _ in 0..draws {
            let d = law.sample(&mut rng);
            assert!((1..=DISTANCE_MAX_TICKS).contains(&d));
            counts[d as usize] += 1;
        }
        // P(1) / P(d) = d^2.2.
        for (d, ratio_expected) in [(2usize, 4.595), (4, 21.11)] {
            let ratio = counts[1] as f64 / counts[d] as f64;
            assert!((ratio / ratio_expected - 1.0).abs() < 0.08, "P(1)/P({d}) = {ratio}, expected {ratio_expected}");
        }
        // P(d > 10) = sum over d > 10 of d^-2.2 / zeta(2.2) ~ 0.034.
        let tail = counts[11..].iter().sum::<u64>() as f64 / draws as f64;
        assert!((0.025..0.045).contains(&tail), "P(d > 10) = {tail}");
    }
}
