//! Tests of the generated flows. Sizes are small enough for a debug build;
//! every flow is named by its scenario and seed, which reproduce it.

use std::collections::HashMap;

use matching_core::{Action, BTreeLevels, Command, Config, Event, EventKind, Exchange, RejectReason};

use super::*;

const SEED: u64 = 42;

/// Timed commands of a test flow. The crash spreads its 60% fall over the
/// run, so a short one would be a much faster crash than a benchmark's;
/// it gets a benchmark-sized run.
fn commands(scenario: Scenario) -> usize {
    match scenario {
        Scenario::Crash => 1_000_000,
        _ => 100_000,
    }
}

fn flow(scenario: Scenario) -> Flow {
    generate(scenario, commands(scenario), SEED)
}

fn share(part: u64, whole: u64) -> f64 {
    part as f64 / whole as f64
}

#[test]
fn scenario_names_round_trip() {
    for scenario in Scenario::ALL {
        assert_eq!(scenario.to_string().parse::<Scenario>(), Ok(scenario));
    }
    assert!("calm".parse::<Scenario>().is_err());
}

#[test]
fn same_seed_same_flow_other_seed_other_flow() {
    for scenario in [Scenario::Normal, Scenario::Crash] {
        let a = generate(scenario, 20_000, 7);
        let b = generate(scenario, 20_000, 7);
        assert_eq!(a.warmup, b.warmup, "{scenario} seed 7");
        assert_eq!(a.commands, b.commands, "{scenario} seed 7");
        assert_eq!(a.stats, b.stats, "{scenario} seed 7");
        let c = generate(scenario, 20_000, 8);
        assert_ne!(a.commands, c.commands, "{scenario} seeds 7 and 8");
    }
}

#[test]
fn seq_runs_from_one_and_new_order_ids_are_seqs() {
    for scenario in Scenario::ALL {
        let flow = generate(scenario, 20_000, SEED);
        assert_eq!(flow.warmup.len() as u64, flow.stats.warmup_orders);
        assert_eq!(flow.commands.len(), 20_000);
        for (i, command) in flow.warmup.iter().chain(&flow.commands).enumerate() {
            assert_eq!(command.seq, i as u64 + 1, "{scenario} seed {SEED}");
            if let Action::New(order) = command.action {
                assert_eq!(order.order_id, command.seq, "{scenario} seed {SEED}");
                assert_eq!(order.symbol, symbol());
                assert!((1..=100).contains(&order.qty));
            }
        }
        assert!(flow.warmup.iter().all(|c| matches!(c.action, Action::New(o) if o.tif == matching_core::Tif::Gtc)));
    }
}

/// Replays a flow through a fresh exchange of the other level structure and
/// tallies what the generator's own run reports.
fn replay(flow: &Flow) -> (Exchange<BTreeLevels>, Vec<Event>) {
    let mut exchange = Exchange::<BTreeLevels>::with_levels(Config::default());
    let mut warmup_events = Vec::new();
    exchange.process_all(&flow.warmup, &mut warmup_events);
    assert!(warmup_events.iter().all(|e| matches!(e.kind, EventKind::Accepted { .. })));
    assert_eq!(exchange.order_count() as u64, flow.stats.resting_after_warmup);
    let mut events = Vec::new();
    exchange.process_all(&flow.commands, &mut events);
    (exchange, events)
}

#[test]
fn stats_are_what_a_replay_sees_and_only_stale_commands_are_rejected() {
    for scenario in Scenario::ALL {
        let flow = flow(scenario);
        let stats = &flow.stats;
        let (exchange, events) = replay(&flow);
        exchange.validate().expect("the book stays valid");
        assert_eq!(exchange.order_count() as u64, stats.resting_at_end, "{scenario} seed {SEED}");
        assert_eq!(events.len() as u64, stats.events, "{scenario} seed {SEED}");
        let trades = events.iter().filter(|e| matches!(e.kind, EventKind::Trade(_))).count() as u64;
        assert_eq!(trades, stats.trades, "{scenario} seed {SEED}");
        let mut rejected: HashMap<RejectReason, u64> = HashMap::new();
        for event in &events {
            if let EventKind::Rejected { reason, .. } = event.kind {
                *rejected.entry(reason).or_default() += 1;
            }
        }
        let unknown = rejected.remove(&RejectReason::UnknownOrder).unwrap_or(0);
        assert!(rejected.is_empty(), "{scenario} seed {SEED}: unexpected rejections {rejected:?}");
        assert_eq!(unknown, stats.rejected_unknown_order);
        assert_eq!(stats.rejected_other, 0);
        // Every stale command, and nothing else, is an unknown order.
        assert_eq!(unknown, stats.stale(), "{scenario} seed {SEED}");
    }
}

#[test]
fn composition_is_that_of_a_venue() {
    for scenario in Scenario::ALL {
        let s = flow(scenario).stats;
        let context = format!("{scenario} seed {SEED}: {s}");
        let new = s.new_orders();
        let commands = commands(scenario) as u64;
        assert_eq!(new + s.cancels + s.modifies, commands, "{context}");
        assert!((0.10..=0.20).contains(&share(s.new_ioc, new)), "ioc share; {context}");
        assert!((0.005..=0.04).contains(&share(s.new_market, new)), "market share; {context}");
        assert!((0.40..=0.80).contains(&share(new, commands)), "new order share; {context}");
        assert!((0.01..=0.08).contains(&share(s.stale(), s.cancels + s.modifies)), "stale share; {context}");
        assert!(s.stale_cancels > 0 && s.stale_modifies > 0, "{context}");
        // About a fifth of resting orders are modified, so modifies run at
        // roughly a fifth of cancels.
        assert!((0.10..=0.35).contains(&share(s.modifies, s.cancels)), "modify/cancel; {context}");
        assert!((0.005..=0.10).contains(&share(s.new_with_stp, new)), "stp share; {context}");
        assert!(s.stp_cancels > 0, "{context}");
        assert!(s.new_post_only > 0, "{context}");
        assert!(share(s.trades, new) > 0.05, "trades; {context}");
        // The warm-up lays about the steady-state book: the end is within a
        // factor of two of it.
        let (start, end) = (s.resting_after_warmup as f64, s.resting_at_end as f64);
        assert!(end > start / 2.0 && end < start * 2.0, "resting drifted; {context}");
    }
}

#[test]
fn the_fixed_book_is_deep_and_its_mid_never_moves() {
    let s = flow(Scenario::Fixed).stats;
    assert!(s.resting_after_warmup >= 40_000, "{s}");
    assert_eq!((s.mid_min_ticks, s.mid_max_ticks), (MID_START_TICKS, MID_START_TICKS), "{s}");
}

#[test]
fn the_mid_walks_more_when_volatile() {
    let range = |s: &FlowStats| s.mid_max_ticks - s.mid_min_ticks;
    let normal = flow(Scenario::Normal).stats;
    let volatile = flow(Scenario::Volatile).stats;
    assert!(range(&normal) > 0, "{normal}");
    assert!(range(&volatile) > 2 * range(&normal), "normal {normal}\nvolatile {volatile}");
}

#[test]
fn the_crash_takes_the_mid_down_about_sixty_percent() {
    for seed in [SEED, 43] {
        let s = generate(Scenario::Crash, commands(Scenario::Crash), seed).stats;
        let fall = 1.0 - s.mid_end_ticks as f64 / s.mid_start_ticks as f64;
        assert!((0.50..=0.70).contains(&fall), "seed {seed}: fall {fall:.3}; {s}");
    }
}

#[test]
fn most_cancelled_orders_lived_briefly() {
    let flow = flow(Scenario::Normal);
    let sent_at: HashMap<u64, u64> = flow
        .commands
        .iter()
        .filter_map(|c| match c.action {
            Action::New(o) => Some((o.order_id, c.seq)),
            _ => None,
        })
        .collect();
    let mut lifetimes: Vec<u64> = flow
        .commands
        .iter()
        .filter_map(|c: &Command| match c.action {
            Action::Cancel { order_id, .. } => sent_at.get(&order_id).map(|&at| c.seq - at),
            _ => None,
        })
        .collect();
    lifetimes.sort_unstable();
    let short_mean = crate::generator::Params::of(Scenario::Normal).life_short_mean;
    let median = lifetimes[lifetimes.len() / 2] as f64;
    let brief = lifetimes.iter().filter(|&&l| (l as f64) < 5.0 * short_mean).count();
    // An exponential's median is ln 2 = 0.69 of its mean; the long-lived
    // class (and orders filled before their cancel) pull it about.
    assert!(lifetimes.len() > 10_000, "{} cancels", lifetimes.len());
    assert!(
        (0.3 * short_mean..=1.5 * short_mean).contains(&median),
        "median lifetime {median}, short mean {short_mean}"
    );
    assert!(
        share(brief as u64, lifetimes.len() as u64) > 0.7,
        "{brief} of {} cancelled orders lived briefly",
        lifetimes.len()
    );
}

#[test]
fn aggressive_orders_sit_at_or_through_the_touch() {
    let flow = flow(Scenario::Normal);
    let mut exchange: Exchange = Exchange::new(Config::default());
    let mut sink = Vec::new();
    exchange.process_all(&flow.warmup, &mut sink);
    let (mut at_touch, mut ioc) = (0u64, 0u64);
    for command in &flow.commands {
        if let Action::New(o) = command.action
            && o.tif == matching_core::Tif::Ioc
            && let Some(price) = o.price
        {
            let book = exchange.book(&symbol()).expect("the book exists");
            let touch = match o.side {
                matching_core::Side::Buy => book.best_ask().map(|(p, _)| p),
                matching_core::Side::Sell => book.best_bid().map(|(p, _)| p),
            };
            if let Some(touch) = touch {
                ioc += 1;
                let through = price.abs_diff(touch);
                let crosses = match o.side {
                    matching_core::Side::Buy => price >= touch,
                    matching_core::Side::Sell => price <= touch,
                };
                assert!(crosses && through <= 4, "seq {}: ioc at {price}, touch {touch}", command.seq);
                at_touch += (through == 0) as u64;
            }
        }
        exchange.process(command, &mut sink);
        sink.clear();
    }
    assert!((0.35..=0.65).contains(&share(at_touch, ioc)), "{at_touch} of {ioc} at the touch");
}

#[test]
fn standing_book_rests_whole() {
    let commands = standing_book(5_000, SEED);
    let mut exchange: Exchange = Exchange::new(Config::default());
    let mut events = Vec::new();
    exchange.process_all(&commands, &mut events);
    assert_eq!(exchange.order_count(), 5_000);
    let book = exchange.book(&symbol()).expect("the book exists");
    let (bid, _) = book.best_bid().expect("bids");
    let (ask, _) = book.best_ask().expect("asks");
    assert!(bid < MID_START_TICKS && ask > MID_START_TICKS);
}
