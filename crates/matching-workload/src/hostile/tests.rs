//! Tests of the hostile flows. Each flow is generated once (they share a
//! cache) at a size a debug build runs in seconds: the deep books whole,
//! with few timed commands. Every flow is named by its scenario and seed,
//! which reproduce it.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use matching_core::{Action, Command, Config, Event, EventKind, Exchange, RejectReason, Side, Tif};

use super::*;
use crate::{generate, symbol};

const SEED: u64 = 42;

/// Timed commands of a test flow.
fn commands(scenario: Scenario) -> usize {
    match scenario {
        Scenario::Swing | Scenario::ClientIds => 40_000,
        Scenario::DeepBook => 5_000,
        Scenario::FlashCrash => 20_000,
        _ => unreachable!("only the hostile scenarios"),
    }
}

fn flow(scenario: Scenario) -> &'static Flow {
    static FLOWS: [OnceLock<Flow>; 4] = [OnceLock::new(), OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let i = Scenario::HOSTILE.iter().position(|&s| s == scenario).expect("a hostile scenario");
    FLOWS[i].get_or_init(|| generate(scenario, commands(scenario), SEED))
}

/// A fresh exchange (the default level structure) with the warm-up applied;
/// checks that every warm-up order rested without trading.
fn warmed_up(flow: &Flow) -> Exchange {
    let config = Config { orders_preallocated: flow.warmup.len() + (1 << 16), ..Config::default() };
    let mut exchange: Exchange = Exchange::new(config);
    let mut events = Vec::new();
    exchange.process_all(&flow.warmup, &mut events);
    assert_eq!(events.len(), flow.warmup.len(), "{} seed {SEED}", flow.scenario);
    assert!(events.iter().all(|e| matches!(e.kind, EventKind::Accepted { .. })));
    assert_eq!(exchange.order_count(), flow.warmup.len(), "{} seed {SEED}: every warm-up order rests", flow.scenario);
    exchange
}

fn levels(exchange: &Exchange) -> usize {
    let book = exchange.book(&symbol()).expect("the book exists");
    book.depth(Side::Buy).count() + book.depth(Side::Sell).count()
}

fn best(exchange: &Exchange, side: Side) -> Option<u64> {
    let book = exchange.book(&symbol())?;
    match side {
        Side::Buy => book.best_bid(),
        Side::Sell => book.best_ask(),
    }
    .map(|(price, _)| price)
}

#[test]
fn names_round_trip_and_all_stays_the_realistic_four() {
    for scenario in Scenario::EVERY {
        assert_eq!(scenario.to_string().parse::<Scenario>(), Ok(scenario));
    }
    let names: Vec<&str> = Scenario::HOSTILE.iter().map(|s| s.as_str()).collect();
    assert_eq!(names, ["swing", "client-ids", "deep-book", "flash-crash"]);
    assert!(Scenario::ALL.iter().all(|s| !s.is_hostile() && s.order_ids_are_seqs()));
    assert!(Scenario::HOSTILE.iter().all(|s| s.is_hostile()));
    assert_eq!(&Scenario::EVERY[..4], &Scenario::ALL);
    assert_eq!(&Scenario::EVERY[4..], &Scenario::HOSTILE);
    assert!(!Scenario::ClientIds.order_ids_are_seqs());
}

#[test]
fn same_seed_same_flow_other_seed_other_flow() {
    for scenario in Scenario::HOSTILE {
        let a = flow(scenario);
        let b = generate(scenario, commands(scenario), SEED);
        assert_eq!(a.warmup, b.warmup, "{scenario} seed {SEED}");
        assert_eq!(a.commands, b.commands, "{scenario} seed {SEED}");
        assert_eq!(a.stats, b.stats, "{scenario} seed {SEED}");
    }
    for scenario in [Scenario::Swing, Scenario::ClientIds] {
        let a = generate(scenario, 5_000, 7);
        let c = generate(scenario, 5_000, 8);
        assert_ne!(a.commands, c.commands, "{scenario} seeds 7 and 8");
    }
}

#[test]
fn seqs_run_from_one_and_ids_are_seqs_but_for_client_ids() {
    for scenario in Scenario::HOSTILE {
        let flow = flow(scenario);
        assert_eq!(flow.warmup.len() as u64, flow.stats.warmup_orders);
        assert_eq!(flow.commands.len(), commands(scenario));
        let mut ids = HashSet::new();
        for (i, command) in flow.warmup.iter().chain(&flow.commands).enumerate() {
            assert_eq!(command.seq, i as u64 + 1, "{scenario} seed {SEED}");
            match command.action {
                Action::New(order) => {
                    assert!(ids.insert(order.order_id), "{scenario} seed {SEED}: id {} twice", order.order_id);
                    if scenario.order_ids_are_seqs() {
                        assert_eq!(order.order_id, command.seq, "{scenario} seed {SEED}");
                    }
                    assert_eq!(order.symbol, symbol());
                    assert!(order.qty >= 1);
                    // Far above 1 tick, far below 2^53.
                    assert!(order.price.is_none_or(|p| (1000..1 << 40).contains(&p)), "{scenario}: {order:?}");
                }
                // A cancel names an order sent before.
                Action::Cancel { order_id, .. } => assert!(ids.contains(&order_id), "{scenario} seed {SEED}"),
                other => panic!("{scenario} seed {SEED}: unexpected {other:?}"),
            }
        }
        assert!(flow.warmup.iter().all(|c| matches!(c.action, Action::New(o) if o.tif == Tif::Gtc)));
    }
}

#[test]
fn stats_are_what_an_independent_run_sees() {
    for scenario in Scenario::HOSTILE {
        let flow = flow(scenario);
        let s = &flow.stats;
        let context = format!("{scenario} seed {SEED}: {s}");
        let mut exchange = warmed_up(flow);
        assert_eq!(exchange.order_count() as u64, s.resting_after_warmup, "{context}");
        let mut events: Vec<Event> = Vec::new();
        exchange.process_all(&flow.commands, &mut events);
        exchange.validate().expect("the book stays valid");
        assert_eq!(events.len() as u64, s.events, "{context}");
        let trades = events.iter().filter(|e| matches!(e.kind, EventKind::Trade(_))).count() as u64;
        assert_eq!(trades, s.trades, "{context}");
        assert_eq!(exchange.order_count() as u64, s.resting_at_end, "{context}");
        assert_eq!(levels(&exchange) as u64, s.levels_at_end, "{context}");
        assert!(s.levels_max >= s.levels_at_end && s.resting_max >= s.resting_at_end, "{context}");
        let mut rejected: HashMap<RejectReason, u64> = HashMap::new();
        for event in &events {
            if let EventKind::Rejected { reason, .. } = event.kind {
                *rejected.entry(reason).or_default() += 1;
            }
        }
        let unknown = rejected.remove(&RejectReason::UnknownOrder).unwrap_or(0);
        assert!(rejected.is_empty(), "{context}: unexpected rejections {rejected:?}");
        assert_eq!((unknown, s.rejected_other), (s.rejected_unknown_order, 0), "{context}");
        assert_eq!(unknown, s.stale(), "{context}: only the stale cancels are unknown orders");
        // The counts add up to the commands and say what they are.
        let count = |f: fn(&Command) -> bool| flow.commands.iter().filter(|c| f(c)).count() as u64;
        assert_eq!(s.new_orders() + s.cancels + s.modifies, flow.commands.len() as u64, "{context}");
        assert_eq!(count(|c| matches!(c.action, Action::Cancel { .. })), s.cancels, "{context}");
        assert_eq!(count(|c| matches!(c.action, Action::New(o) if o.price.is_none())), s.new_market, "{context}");
        assert_eq!(count(|c| matches!(c.action, Action::New(o) if o.tif == Tif::Ioc && o.price.is_some())), s.new_ioc);
        assert!(s.cancels > 0 && s.new_gtc > 0 && s.new_ioc > 0 && s.trades > 0, "{context}");
    }
}

#[test]
fn swing_orders_jump_thousands_of_ticks_and_mostly_rest() {
    let flow = flow(Scenario::Swing);
    let s = &flow.stats;
    let prices: Vec<u64> = flow
        .commands
        .iter()
        .filter_map(|c| match c.action {
            Action::New(o) if o.tif == Tif::Gtc => o.price,
            _ => None,
        })
        .collect();
    let mut jumps: Vec<u64> = prices.windows(2).map(|w| w[0].abs_diff(w[1])).collect();
    jumps.sort_unstable();
    let median = jumps[jumps.len() / 2];
    assert!(median > 1_000, "median jump {median} ticks; {s}");
    // Most new orders are gtc and most of those rest; the book is wide and sparse.
    assert!(s.new_gtc as f64 > 0.85 * s.new_orders() as f64, "{s}");
    assert!(s.trades < s.new_gtc, "{s}");
    assert!(s.levels_at_end as f64 > 0.8 * s.resting_at_end as f64 && s.resting_at_end > 10_000, "{s}");
}

#[test]
fn client_ids_are_a_permutation_not_the_seqs() {
    let flow = flow(Scenario::ClientIds);
    let s = &flow.stats;
    let n = (flow.warmup.len() + flow.commands.len()) as u64;
    let ids: Vec<u64> = flow
        .warmup
        .iter()
        .chain(&flow.commands)
        .filter_map(|c| match c.action {
            Action::New(o) => Some(o.order_id),
            _ => None,
        })
        .collect();
    assert!(ids.iter().all(|id| (1..=n).contains(id)));
    // Distinct (checked above too), and not increasing: about half of the
    // steps go down.
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
    let down = ids.windows(2).filter(|w| w[1] < w[0]).count();
    assert!((0.4..0.6).contains(&(down as f64 / ids.len() as f64)), "{down} of {} steps go down", ids.len());
    let equal_seq =
        flow.warmup.iter().chain(&flow.commands).filter(|c| matches!(c.action, Action::New(o) if o.order_id == c.seq));
    assert!(equal_seq.count() < ids.len() / 100);
    // A modify is a cancel, then a new gtc order of the same owner and side with a fresh id.
    assert_eq!(s.modifies, 0);
    assert!(s.replaces as f64 > 0.05 * s.cancels as f64, "{s}");
    let mut sides: HashMap<u64, (u64, Side)> = HashMap::new();
    let mut pairs = 0u64;
    let all: Vec<&Command> = flow.warmup.iter().chain(&flow.commands).collect();
    for (i, command) in all.iter().enumerate() {
        match command.action {
            Action::New(o) => {
                sides.insert(o.order_id, (o.user, o.side));
            }
            Action::Cancel { user, order_id } => {
                if let Some(Action::New(next)) = all.get(i + 1).map(|c| c.action)
                    && next.tif == Tif::Gtc
                    && (next.user, next.side) == (user, sides[&order_id].1)
                    && sides[&order_id].0 == user
                {
                    pairs += 1;
                }
            }
            _ => {}
        }
    }
    assert!(pairs >= s.replaces, "{pairs} cancel-then-new pairs, {} replaces", s.replaces);
    // Otherwise a normal session.
    assert!((0.4..0.8).contains(&(s.new_orders() as f64 / flow.commands.len() as f64)), "{s}");
}

#[test]
fn the_deep_book_spans_200k_prices_and_is_worked_at_both_ends() {
    let flow = flow(Scenario::DeepBook);
    let exchange = warmed_up(flow);
    assert!(levels(&exchange) >= 200_000, "{} levels after the warm-up", levels(&exchange));
    let (bid, ask) = (best(&exchange, Side::Buy).unwrap(), best(&exchange, Side::Sell).unwrap());
    assert!(bid < ask);
    let far_bid = DeepBook::far_end(Side::Buy);
    let far_ask = DeepBook::far_end(Side::Sell);
    assert!(ask - bid < 100 && far_ask - far_bid > 2_000_000);
    // Where each timed new order or cancel lands: near the touch, or
    // within 8,192 ticks of either far end.
    let mut price_of: HashMap<u64, u64> = HashMap::new();
    let (mut near, mut low, mut high) = (0usize, 0usize, 0usize);
    for command in flow.warmup.iter().chain(&flow.commands) {
        let price = match command.action {
            Action::New(o) => {
                if let Some(p) = o.price {
                    price_of.insert(o.order_id, p);
                }
                o.price
            }
            Action::Cancel { order_id, .. } => price_of.get(&order_id).copied(),
            _ => None,
        };
        if command.seq <= flow.warmup.len() as u64 {
            continue;
        }
        match price {
            Some(p) if p.abs_diff(DEEP_MID_TICKS) < 1_000 => near += 1,
            Some(p) if p < far_bid + 8_192 => low += 1,
            Some(p) if p > far_ask - 8_192 => high += 1,
            _ => {}
        }
    }
    let n = flow.commands.len();
    for (what, count) in [("near the touch", near), ("at the far bids", low), ("at the far asks", high)] {
        assert!(count > n / 8, "{count} of {n} timed commands {what}");
    }
}

#[test]
fn the_flash_crash_sweeps_thousands_of_levels_then_recovers() {
    let flow = flow(Scenario::FlashCrash);
    let mut exchange = warmed_up(flow);
    let bids = exchange.book(&symbol()).unwrap().depth(Side::Buy).count();
    assert!(bids >= 100_000, "{bids} bid levels");
    // The warm-up's bid prices, ascending: how many levels lie between two prices.
    let mut grid: Vec<u64> = exchange.book(&symbol()).unwrap().depth(Side::Buy).map(|(p, _, _)| p).collect();
    grid.reverse();
    let levels_between = |lo: u64, hi: u64| grid.partition_point(|&p| p <= hi) - grid.partition_point(|&p| p <= lo);
    let start = best(&exchange, Side::Buy).unwrap();
    let (mut low, mut biggest_drop) = (start, 0);
    let mut sink = Vec::new();
    for command in &flow.commands {
        let before = best(&exchange, Side::Buy).unwrap();
        exchange.process(command, &mut sink);
        sink.clear();
        let after = best(&exchange, Side::Buy).unwrap();
        biggest_drop = biggest_drop.max(levels_between(after.min(before), before));
        low = low.min(after);
    }
    let fall = levels_between(low, start);
    assert!(biggest_drop >= FC_SWEEP_LEVELS_MIN, "one command took at most {biggest_drop} levels");
    assert!(fall >= 10 * FC_SWEEP_LEVELS_MIN, "the best bid fell {fall} levels");
    let end = best(&exchange, Side::Buy).unwrap();
    let fallen = start - low;
    assert!(end > low + fallen / 4, "start {start}, low {low}, end {end}: no recovery");
    assert!(exchange.book(&symbol()).unwrap().depth(Side::Buy).count() > 50_000, "the deep book stays deep");
}

#[test]
#[should_panic(expected = "not seqs")]
fn a_multi_symbol_flow_refuses_client_ids() {
    crate::generate_multi_of(Scenario::ClientIds, 2, 100, SEED);
}
