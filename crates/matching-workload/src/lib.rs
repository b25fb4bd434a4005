//! Realistic, seeded order flow, to measure the core and the engine on.
//!
//! [`generate`] builds a [`Flow`] for one symbol; [`generate_multi`] builds
//! a [`MultiFlow`] over many symbols with skewed popularity, out of one
//! single-symbol flow per symbol (see the `multi.rs` module docs);
//! [`uniform_orders`] is the plain random load of the high-load benchmark.
//!
//! A [`Flow`] holds warm-up commands that lay the initial standing book
//! (applied untimed by a benchmark), then the timed commands. The four
//! scenarios of [`Scenario::ALL`] imitate a real venue's flow (see the
//! `generator.rs` module docs for the model and its numbers):
//!
//! - the mid follows a random walk (none in [`Scenario::Fixed`], a slow one
//!   in `Normal`, a faster one with jumps in `Volatile`, a ~60% fall in
//!   `Crash`);
//! - limit orders rest on their own side of the mid at a power-law distance
//!   (`P(d) ~ d^-2.2`, `d >= 1` tick, capped), most are cancelled after a
//!   short exponential lifetime, some live long;
//! - about 15% of new orders are aggressive `ioc` limits priced at or a few
//!   ticks through the opposite touch, a small share are market orders;
//! - about 20% of resting orders are modified during their life;
//! - a few percent of cancels and modifies arrive after their order is gone.
//!
//! The four of [`Scenario::HOSTILE`] are foreign or hostile flows, shapes
//! the core was not designed around (see the `hostile.rs` module docs):
//!
//! - [`Scenario::Swing`]: buys and sells priced from two different
//!   stretches of a random walk with large steps and shuffled together, so
//!   consecutive orders land thousands of ticks apart; a sparse book of
//!   ~16k orders, nearly one level each, spread over ~10^5 ticks;
//! - [`Scenario::ClientIds`]: a normal session, but the client picks the
//!   order ids (a random permutation of `1..=N`, not the `seq`), and a
//!   modify is a cancel and a new order with a fresh id;
//! - [`Scenario::DeepBook`]: a book of 262,144 distinct prices (one order
//!   each), worked at the touch and at both far ends at once;
//! - [`Scenario::FlashCrash`]: a 120,000-level bid side, swept by a score
//!   of market and `ioc` sells of thousands of levels each, then a
//!   recovery, over a normal resting and cancelling flow.
//!
//! The generator runs its own [`Exchange`] while it generates, so it knows
//! which of its orders rest: every cancel and modify it sends is valid
//! except the stale ones it sends on purpose, and [`FlowStats`] is what that
//! internal run saw.
//!
//! Determinism: the random stream is [`rand::rngs::Xoshiro256PlusPlus`]
//! seeded with [`rand::SeedableRng::seed_from_u64`] (a named algorithm, not
//! `StdRng`, which may change between rand versions), and the transcendental
//! functions come from the `libm` crate (a pure-Rust port of musl's libm, not
//! the platform's maths library, whose last bit may differ), so a seed gives
//! the same flow on every machine, for as long as rand's sampling stays
//! value-stable (rand changes values only between 0.x series; this crate is
//! on 0.10).
//!
//! [`Exchange`]: matching_core::Exchange

use std::fmt;
use std::str::FromStr;

use matching_core::{Command, Symbol};

mod generator;
mod hostile;
mod multi;

pub use multi::{
    MultiFlow, SymbolFlow, UNIFORM_MID_TICKS, UNIFORM_SPREAD_TICKS, ZIPF_EXPONENT, generate_multi, generate_multi_of,
    numbered_symbols, uniform_orders, zipf_counts,
};

/// The symbol every generated command trades.
pub const SYMBOL: &str = "BENCH";

/// The mid at the start of every scenario, in ticks: high enough that a 60%
/// crash and the deepest quotes stay far above 1 tick.
pub const MID_START_TICKS: u64 = 100_000;

/// [`SYMBOL`] as a [`Symbol`].
pub fn symbol() -> Symbol {
    Symbol::new(SYMBOL).expect("SYMBOL is a valid symbol")
}

/// A market regime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// The mid never moves; a deep standing book (~50k resting orders) of
    /// long-lived orders, with short-lived ones churning near the touch.
    Fixed,
    /// A normal session: the mid is a slow random walk.
    Normal,
    /// A larger, faster random walk with occasional jumps.
    Volatile,
    /// The mid falls about 60% over the run, with `Volatile`'s noise, and
    /// aggressive flow leans to selling.
    Crash,
    /// Hostile: buys and sells priced from different stretches of a
    /// large-step random walk, shuffled, so consecutive orders jump
    /// thousands of ticks; mostly resting limits, some crossing, cancels
    /// of random live orders.
    Swing,
    /// Foreign: client-assigned order ids (a random permutation of
    /// `1..=N`, not the `seq`); a modify is a cancel then a new order with a
    /// fresh id. Otherwise a normal session. The one scenario whose new
    /// orders' ids are not their `seq`s (see [`Scenario::order_ids_are_seqs`]).
    ClientIds,
    /// Hostile: a book of 262,144 distinct prices laid by the warm-up, with
    /// new orders, cancels and crossing orders at the touch and at both far
    /// ends.
    DeepBook,
    /// Hostile: a 120,000-level bid side swept down through thousands of
    /// levels by large market and `ioc` sells, then a recovery, mixed with a
    /// normal resting and cancelling flow.
    FlashCrash,
}

impl Scenario {
    /// The realistic scenarios (what the multi-symbol flows and the
    /// zero-allocation test use).
    pub const ALL: [Scenario; 4] = [Scenario::Fixed, Scenario::Normal, Scenario::Volatile, Scenario::Crash];

    /// The hostile and foreign scenarios.
    pub const HOSTILE: [Scenario; 4] = [Scenario::Swing, Scenario::ClientIds, Scenario::DeepBook, Scenario::FlashCrash];

    /// Every scenario: [`Scenario::ALL`] then [`Scenario::HOSTILE`].
    pub const EVERY: [Scenario; 8] = [
        Scenario::Fixed,
        Scenario::Normal,
        Scenario::Volatile,
        Scenario::Crash,
        Scenario::Swing,
        Scenario::ClientIds,
        Scenario::DeepBook,
        Scenario::FlashCrash,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Fixed => "fixed",
            Scenario::Normal => "normal",
            Scenario::Volatile => "volatile",
            Scenario::Crash => "crash",
            Scenario::Swing => "swing",
            Scenario::ClientIds => "client-ids",
            Scenario::DeepBook => "deep-book",
            Scenario::FlashCrash => "flash-crash",
        }
    }

    /// One of [`Scenario::HOSTILE`].
    pub fn is_hostile(self) -> bool {
        Scenario::HOSTILE.contains(&self)
    }

    /// Whether a new order's `order_id` is its `seq` (as an engine's
    /// sequencer would number it): true of every scenario but
    /// [`Scenario::ClientIds`]. Whatever renumbers flows or relies on ids
    /// being `seq`s ([`generate_multi_of`], SPEC JSON lines, which carry no
    /// id for a new order) must not be fed a scenario where it is false.
    pub fn order_ids_are_seqs(self) -> bool {
        self != Scenario::ClientIds
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown scenario name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownScenario(pub String);

impl fmt::Display for UnknownScenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Scenario::EVERY.iter().map(|s| s.as_str()).collect();
        write!(f, "unknown scenario {:?} (expected one of {})", self.0, names.join(", "))
    }
}

impl std::error::Error for UnknownScenario {}

impl FromStr for Scenario {
    type Err = UnknownScenario;

    fn from_str(name: &str) -> Result<Scenario, UnknownScenario> {
        Scenario::EVERY.into_iter().find(|s| s.as_str() == name).ok_or_else(|| UnknownScenario(name.to_string()))
    }
}

/// A generated flow: apply `warmup` untimed, then time `commands`.
///
/// `seq` runs from 1 without a gap over `warmup` then `commands`, and a new
/// order's `order_id` is its `seq`, **except** in [`Scenario::ClientIds`],
/// where the ids of new orders are distinct but client-assigned (a random
/// permutation of `1..=N`, `N` = warm-up orders + timed commands) and a
/// cancel names that id ([`Scenario::order_ids_are_seqs`] says which).
#[derive(Clone, Debug)]
pub struct Flow {
    pub scenario: Scenario,
    pub seed: u64,
    /// Resting `gtc` limit orders that lay the initial book; none crosses.
    pub warmup: Vec<Command>,
    pub commands: Vec<Command>,
    pub stats: FlowStats,
}

/// What the generator's internal run of the flow saw. Every count is of the
/// timed `commands` only, except those named `warmup`/`after_warmup`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Commands in the warm-up (all new resting `gtc` limit orders).
    pub warmup_orders: u64,
    /// New `gtc` limit orders.
    pub new_gtc: u64,
    /// New `ioc` limit orders.
    pub new_ioc: u64,
    /// New market orders.
    pub new_market: u64,
    /// New orders that carry a self-trade-prevention mode other than `none`.
    pub new_with_stp: u64,
    /// New orders that are post-only.
    pub new_post_only: u64,
    /// Cancel commands, stale ones included.
    pub cancels: u64,
    /// Modify commands, stale ones included.
    pub modifies: u64,
    /// Cancel-and-replace pairs ([`Scenario::ClientIds`]' modifies): each is
    /// a cancel, counted in `cancels`, then a new `gtc` order with a fresh
    /// id, counted in `new_gtc`.
    pub replaces: u64,
    /// Cancels sent after their order was gone (filled or cancelled).
    pub stale_cancels: u64,
    /// Modifies sent after their order was gone.
    pub stale_modifies: u64,
    /// `trade` events.
    pub trades: u64,
    /// `cancelled` events with reason `stp`.
    pub stp_cancels: u64,
    /// `rejected` events with reason `unknown_order` (the stale commands).
    pub rejected_unknown_order: u64,
    /// `rejected` events with any other reason (the generator aims at 0).
    pub rejected_other: u64,
    /// All events.
    pub events: u64,
    /// Resting orders once the warm-up is applied.
    pub resting_after_warmup: u64,
    /// Resting orders at the end.
    pub resting_at_end: u64,
    /// Most resting orders at any point (size an arena with it).
    pub resting_max: u64,
    /// Price levels (both sides) at the end.
    pub levels_at_end: u64,
    /// Most price levels (both sides) seen, sampled after the warm-up,
    /// every few thousand timed commands and at the end (size a level
    /// arena with it, with some headroom).
    pub levels_max: u64,
    /// The mid: in [`Scenario::ALL`] the random walk the flow quotes
    /// around; in [`Scenario::HOSTILE`] the price the flow quotes around
    /// (see the `hostile.rs` module docs).
    pub mid_start_ticks: u64,
    pub mid_end_ticks: u64,
    pub mid_min_ticks: u64,
    pub mid_max_ticks: u64,
}

impl FlowStats {
    /// New orders of every kind.
    pub fn new_orders(&self) -> u64 {
        self.new_gtc + self.new_ioc + self.new_market
    }

    /// Stale cancels and modifies.
    pub fn stale(&self) -> u64 {
        self.stale_cancels + self.stale_modifies
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { 100.0 * part as f64 / whole as f64 }
}

impl fmt::Display for FlowStats {
    /// A few human-readable lines (for a benchmark's stderr).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let new = self.new_orders();
        let commands = new + self.cancels + self.modifies;
        writeln!(
            f,
            "warm-up: {} orders resting; timed: {commands} commands, {} events, {} trades",
            self.resting_after_warmup, self.events, self.trades
        )?;
        writeln!(
            f,
            "new {new} ({:.1}% of commands): gtc {:.1}%, ioc {:.1}%, market {:.1}%; stp {:.1}%, post-only {:.1}%",
            percent(new, commands),
            percent(self.new_gtc, new),
            percent(self.new_ioc, new),
            percent(self.new_market, new),
            percent(self.new_with_stp, new),
            percent(self.new_post_only, new),
        )?;
        writeln!(
            f,
            "cancels {} ({:.1}%), modifies {} ({:.1}%), stale {} ({:.1}% of cancels+modifies; {} cancels, {} modifies)",
            self.cancels,
            percent(self.cancels, commands),
            self.modifies,
            percent(self.modifies, commands),
            self.stale(),
            percent(self.stale(), self.cancels + self.modifies),
            self.stale_cancels,
            self.stale_modifies,
        )?;
        if self.replaces > 0 {
            writeln!(f, "cancel-and-replace pairs {} (in the cancels and new gtc orders)", self.replaces)?;
        }
        writeln!(
            f,
            "stp cancels {}; rejected: unknown_order {}, other {}",
            self.stp_cancels, self.rejected_unknown_order, self.rejected_other
        )?;
        write!(
            f,
            "resting at end {} (max {}), levels at end {} (max {}); mid {} -> {} ticks (min {}, max {})",
            self.resting_at_end,
            self.resting_max,
            self.levels_at_end,
            self.levels_max,
            self.mid_start_ticks,
            self.mid_end_ticks,
            self.mid_min_ticks,
            self.mid_max_ticks
        )
    }
}

/// Generates `commands` timed commands of `scenario` (plus the scenario's
/// warm-up) from `seed`. The same arguments always give the same flow.
pub fn generate(scenario: Scenario, commands: usize, seed: u64) -> Flow {
    generate_for(symbol(), scenario, commands, seed)
}

/// As [`generate`], for the symbol `symbol` instead of [`SYMBOL`]: the same
/// arguments give the same flow as [`generate`] but for the symbol name.
pub fn generate_for(symbol: Symbol, scenario: Scenario, commands: usize, seed: u64) -> Flow {
    if scenario.is_hostile() {
        hostile::generate(symbol, scenario, commands, seed)
    } else {
        generator::generate(symbol, scenario, commands, seed)
    }
}

/// Commands that lay a standing book of `resting_orders` `gtc` limit orders
/// around [`MID_START_TICKS`], shaped like a warm-up (the power-law distance
/// from the mid; none crosses). `seq`/`order_id` run from 1. For
/// micro-benchmarks that need a realistic book to work against.
pub fn standing_book(resting_orders: usize, seed: u64) -> Vec<Command> {
    generator::standing_book(resting_orders, seed)
}

#[cfg(test)]
mod tests;
