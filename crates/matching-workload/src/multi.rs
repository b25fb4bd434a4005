//! Flow over many symbols, for the engine across cores.
//!
//! **The realistic flow** ([`generate_multi`]). Real venues are skewed: a few
//! symbols carry most of the flow. Symbol of rank `k` (from 1) gets a share
//! `k^-ZIPF_EXPONENT / H` of the timed commands (`H` normalises), so with 50
//! symbols the first carries ~22%, the first five ~51% and the last ~0.4%.
//! Each symbol's flow is an ordinary single-symbol [`Flow`] of the scenario
//! ([`generate_for`], its own seed, its own name `SYM001`, `SYM002`, …) with
//! that many timed commands and the scenario's full warm-up, so every book
//! has the standing depth of the scenario and behaves exactly as it would
//! alone. A quiet symbol's lifetimes, counted in its own commands, are
//! longer in wall time: that is how quiet books are.
//!
//! The flows are then interleaved at random (seeded; every interleaving of
//! the counts is equally likely) keeping each symbol's own order, first
//! the warm-ups, then the timed commands. `seq` is renumbered globally from
//! 1 over warm-up then timed commands, a new order's id becomes its global
//! `seq` (what the engine's sequencer gives it), and a cancel or modify is
//! pointed at the global id of its order through a per-symbol table of
//! local `seq` → global `seq`. Books never interact, so replaying the
//! result through one `Exchange` gives, symbol by symbol, the events of
//! the single flows with ids and `seq`s renamed (a test checks it).
//!
//! **The uniform load** ([`uniform_orders`]): `gtc` limit orders on symbols
//! chosen uniformly, side at random, price uniform within
//! [`UNIFORM_SPREAD_TICKS`] of [`UNIFORM_MID_TICKS`] (so about half of the
//! orders cross and trade once books have built), quantity uniform in
//! `1..=100`. No cancels, no skew: the simplest load that spreads evenly
//! over shards.

use std::fmt;

use matching_core::{Action, Command, NewOrder, Seq, Side, Symbol};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::{Flow, FlowStats, Scenario, generate_for};

/// Popularity of the symbol of rank `k` (from 1) is proportional to `k^-ZIPF_EXPONENT`.
pub const ZIPF_EXPONENT: f64 = 1.0;

/// The middle of [`uniform_orders`]' prices, in ticks.
pub const UNIFORM_MID_TICKS: u64 = 10_000;
/// [`uniform_orders`]' prices are uniform in `MID ± SPREAD` ticks.
pub const UNIFORM_SPREAD_TICKS: u64 = 50;
/// [`uniform_orders`]' quantities are uniform in `1..=UNIFORM_QTY_MAX`.
const UNIFORM_QTY_MAX: u64 = 100;
/// [`uniform_orders`]' users are `1..=UNIFORM_USERS`.
const UNIFORM_USERS: u64 = 1000;

/// Salts that give the interleaving and the uniform load their own streams.
const INTERLEAVE_SALT: u64 = 0x6d75_6c74_6920_666c; // "multi fl"
const UNIFORM_SALT: u64 = 0x756e_6966_6f72_6d20; // "uniform "

/// One symbol's part of a [`MultiFlow`].
#[derive(Clone, Debug, PartialEq)]
pub struct SymbolFlow {
    pub symbol: Symbol,
    /// The seed of its single-symbol flow: `generate_for(symbol, scenario,
    /// commands, seed)` reproduces it.
    pub seed: u64,
    /// Its popularity: the share of timed commands it was given.
    pub share: f64,
    /// Warm-up commands.
    pub warmup: usize,
    /// Timed commands.
    pub commands: usize,
    /// What its single-symbol flow's generator saw.
    pub stats: FlowStats,
}

/// A flow over many symbols: apply `warmup` untimed, then time `commands`.
///
/// `seq` runs from 1 without a gap over `warmup` then `commands`, and a new
/// order's `order_id` is its `seq` (as with [`Flow`], and as the engine's
/// sequencer numbers them).
#[derive(Clone, Debug)]
pub struct MultiFlow {
    pub scenario: Scenario,
    pub seed: u64,
    /// By popularity rank: `symbols[0]` carries the most flow.
    pub symbols: Vec<SymbolFlow>,
    pub warmup: Vec<Command>,
    pub commands: Vec<Command>,
    /// The index in `symbols` of each warm-up command's symbol.
    pub warmup_symbols: Vec<u32>,
    /// The index in `symbols` of each timed command's symbol.
    pub command_symbols: Vec<u32>,
}

impl MultiFlow {
    /// The symbols' names, by rank.
    pub fn symbol_names(&self) -> Vec<Symbol> {
        self.symbols.iter().map(|s| s.symbol).collect()
    }

    /// Events of the timed commands, over all symbols.
    pub fn events(&self) -> u64 {
        self.symbols.iter().map(|s| s.stats.events).sum()
    }

    /// Trades in the timed commands, over all symbols.
    pub fn trades(&self) -> u64 {
        self.symbols.iter().map(|s| s.stats.trades).sum()
    }

    /// Rejections of the timed commands, over all symbols (the stale
    /// cancels and modifies).
    pub fn rejections(&self) -> u64 {
        self.symbols.iter().map(|s| s.stats.rejected_unknown_order + s.stats.rejected_other).sum()
    }

    /// An upper bound on the orders resting at once over all symbols (the
    /// sum of each symbol's most): size an arena with it.
    pub fn resting_max(&self) -> u64 {
        self.symbols.iter().map(|s| s.stats.resting_max).sum()
    }
}

impl fmt::Display for MultiFlow {
    /// A few human-readable lines (for a benchmark's stderr).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let top = |n: usize| self.symbols.iter().take(n).map(|s| s.commands).sum::<usize>();
        let share = |n: usize| 100.0 * top(n) as f64 / self.commands.len().max(1) as f64;
        writeln!(
            f,
            "{} symbols, scenario {}, seed {}: warm-up {} commands, timed {} commands, {} events, {} trades, {} rejections",
            self.symbols.len(),
            self.scenario,
            self.seed,
            self.warmup.len(),
            self.commands.len(),
            self.events(),
            self.trades(),
            self.rejections(),
        )?;
        write!(
            f,
            "skew (Zipf exponent {ZIPF_EXPONENT}): top symbol {:.1}% of timed commands, top 5 {:.1}%, top 10 {:.1}%, last {:.2}%",
            share(1),
            share(5),
            share(10),
            100.0 * self.symbols.last().map_or(0, |s| s.commands) as f64 / self.commands.len().max(1) as f64,
        )
    }
}

/// `SYM001`, `SYM002`, …: `count` symbol names, numbered from 1 with at
/// least three digits.
pub fn numbered_symbols(count: usize) -> Vec<Symbol> {
    let width = count.to_string().len().max(3);
    (1..=count)
        .map(|i| Symbol::new(&format!("SYM{i:0width$}")).expect("Invariant: SYM and digits make a valid symbol"))
        .collect()
}

/// How `total` commands split over `symbols` symbols by Zipf popularity
/// (rank `k` from 1 gets a share `∝ k^-ZIPF_EXPONENT`): the exact shares
/// rounded down, the remainder given to the largest fractions (ties to the
/// more popular). The counts add up to `total` and never increase with rank.
pub fn zipf_counts(symbols: usize, total: usize) -> Vec<usize> {
    let weights = zipf_weights(symbols);
    let exact: Vec<f64> = weights.iter().map(|w| total as f64 * w).collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    // Rounding can leave the floors a unit over `total` only in theory;
    // take any excess from the least popular symbols.
    while counts.iter().sum::<usize>() > total {
        let last = counts.iter().rposition(|&c| c > 0).expect("Invariant: a positive sum has a positive count");
        counts[last] -= 1;
    }
    let left = total - counts.iter().sum::<usize>();
    let mut by_fraction: Vec<usize> = (0..symbols).collect();
    by_fraction
        .sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())).then(a.cmp(&b)));
    for &k in by_fraction.iter().take(left) {
        counts[k] += 1;
    }
    debug_assert_eq!(counts.iter().sum::<usize>(), total, "Invariant: the counts add up");
    counts
}

/// The Zipf shares of `symbols` ranks, adding up to 1.
fn zipf_weights(symbols: usize) -> Vec<f64> {
    let raw: Vec<f64> = (1..=symbols).map(|k| libm::pow(k as f64, -ZIPF_EXPONENT)).collect();
    let sum: f64 = raw.iter().sum();
    raw.iter().map(|w| w / sum).collect()
}

/// SplitMix64's output function: spreads related seeds far apart.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// [`generate_multi_of`] with the [`Scenario::Normal`] session for every symbol.
pub fn generate_multi(symbols: usize, commands: usize, seed: u64) -> MultiFlow {
    generate_multi_of(Scenario::Normal, symbols, commands, seed)
}

/// `commands` timed commands (plus every symbol's warm-up) over `symbols`
/// symbols named by [`numbered_symbols`], each symbol's flow of `scenario`,
/// split by [`zipf_counts`] and interleaved at random (see the module docs).
/// The same arguments always give the same flow. `scenario`'s ids must be
/// `seq`s ([`Scenario::order_ids_are_seqs`]): they are renumbered as such.
pub fn generate_multi_of(scenario: Scenario, symbols: usize, commands: usize, seed: u64) -> MultiFlow {
    assert!(symbols >= 1 && symbols <= u32::MAX as usize, "symbols must be in 1..=2^32-1, not {symbols}");
    assert!(scenario.order_ids_are_seqs(), "{scenario}: its order ids are not seqs, which a multi-symbol flow needs");
    let names = numbered_symbols(symbols);
    let shares = zipf_weights(symbols);
    let counts = zipf_counts(symbols, commands);
    let flows: Vec<Flow> = names
        .iter()
        .zip(&counts)
        .enumerate()
        .map(|(k, (&symbol, &count))| generate_for(symbol, scenario, count, symbol_seed(seed, k)))
        .collect();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix(seed ^ INTERLEAVE_SALT));
    let warmup_symbols = interleaving(flows.iter().map(|f| f.warmup.len()), &mut rng);
    let command_symbols = interleaving(flows.iter().map(|f| f.commands.len()), &mut rng);

    let mut renumber = Renumber {
        next_seq: 1,
        global_of: flows.iter().map(|f| vec![0; 1 + f.warmup.len() + f.commands.len()]).collect(),
        local_next: vec![1; symbols],
    };
    let mut cursors = vec![0usize; symbols];
    let warmup: Vec<Command> = warmup_symbols
        .iter()
        .map(|&k| {
            let k = k as usize;
            let command = flows[k].warmup[cursors[k]];
            cursors[k] += 1;
            renumber.next(k, &command)
        })
        .collect();
    cursors.iter_mut().for_each(|c| *c = 0);
    let timed: Vec<Command> = command_symbols
        .iter()
        .map(|&k| {
            let k = k as usize;
            let command = flows[k].commands[cursors[k]];
            cursors[k] += 1;
            renumber.next(k, &command)
        })
        .collect();

    let symbols = flows
        .into_iter()
        .zip(names)
        .zip(shares)
        .enumerate()
        .map(|(k, ((flow, symbol), share))| SymbolFlow {
            symbol,
            seed: symbol_seed(seed, k),
            share,
            warmup: flow.warmup.len(),
            commands: flow.commands.len(),
            stats: flow.stats,
        })
        .collect();
    MultiFlow { scenario, seed, symbols, warmup, commands: timed, warmup_symbols, command_symbols }
}

/// The seed of the symbol of index `k`.
fn symbol_seed(seed: u64, k: usize) -> u64 {
    mix(seed ^ mix(k as u64 + 1))
}

/// A uniformly random sequence holding symbol `k` `counts[k]` times
/// (Fisher–Yates over the sorted multiset).
fn interleaving(counts: impl Iterator<Item = usize>, rng: &mut Xoshiro256PlusPlus) -> Vec<u32> {
    let mut order: Vec<u32> = counts.enumerate().flat_map(|(k, n)| std::iter::repeat_n(k as u32, n)).collect();
    for i in (1..order.len()).rev() {
        // u64, not usize: the same values on every platform.
        let j = rng.random_range(0..=i as u64) as usize;
        order.swap(i, j);
    }
    order
}

/// Gives the interleaved commands global `seq`s and ids.
struct Renumber {
    next_seq: Seq,
    /// Per symbol, `global_of[k][local seq]` (index 0 unused).
    global_of: Vec<Vec<Seq>>,
    /// Per symbol, the local `seq` of its next command.
    local_next: Vec<Seq>,
}

impl Renumber {
    fn next(&mut self, k: usize, command: &Command) -> Command {
        let local = command.seq;
        assert_eq!(local, self.local_next[k], "Invariant: a single flow's seqs run from 1 without a gap");
        let seq = self.next_seq;
        self.next_seq += 1;
        self.local_next[k] += 1;
        let map = &mut self.global_of[k];
        map[local as usize] = seq;
        let global = |order_id: u64| {
            // A single flow only cancels or modifies orders it sent before.
            assert!(order_id >= 1 && order_id < local, "Invariant: a cancel or modify names an earlier order");
            map[order_id as usize]
        };
        let action = match command.action {
            Action::New(order) => {
                assert_eq!(order.order_id, local, "Invariant: a new order's id is its seq");
                Action::New(NewOrder { order_id: seq, ..order })
            }
            Action::Cancel { user, order_id } => Action::Cancel { user, order_id: global(order_id) },
            Action::Modify { user, order_id, price, qty } => {
                Action::Modify { user, order_id: global(order_id), price, qty }
            }
            other @ (Action::MassCancel { .. } | Action::Halt { .. } | Action::Resume { .. }) => other,
        };
        Command { seq, timestamp_ns: command.timestamp_ns, action }
    }
}

/// `orders` new `gtc` limit orders over `symbols` (chosen uniformly), side
/// at random, price uniform in [`UNIFORM_MID_TICKS`] ±
/// [`UNIFORM_SPREAD_TICKS`], quantity uniform in `1..=100`, user in
/// `1..=1000`, no post-only, no self-trade prevention. `seq` and order id
/// run from 1. The same arguments always give the same orders.
pub fn uniform_orders(symbols: &[Symbol], orders: usize, seed: u64) -> Vec<Command> {
    assert!(!symbols.is_empty(), "uniform_orders needs at least one symbol");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix(seed ^ UNIFORM_SALT));
    (1..=orders as u64)
        .map(|id| {
            let symbol = symbols[rng.random_range(0..symbols.len() as u64) as usize];
            let side = if rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
            let price =
                rng.random_range(UNIFORM_MID_TICKS - UNIFORM_SPREAD_TICKS..=UNIFORM_MID_TICKS + UNIFORM_SPREAD_TICKS);
            let qty = rng.random_range(1..=UNIFORM_QTY_MAX);
            let user = rng.random_range(1..=UNIFORM_USERS);
            Command::new(id, Action::New(NewOrder::limit(id, user, symbol, side, price, qty)))
        })
        .collect()
}

#[cfg(test)]
mod tests;
