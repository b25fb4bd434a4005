//! Tests of the multi-symbol flow and the uniform load. Sizes are small
//! enough for a debug build; every flow is named by its arguments, which
//! reproduce it.

use matching_core::{Action, Command, Config, DiscardEvents, Event, EventKind, Exchange, Symbol, Tif};

use super::*;

const SEED: u64 = 42;
const SYMBOLS: usize = 6;
const COMMANDS: usize = 12_000;

#[test]
fn symbols_are_numbered_with_at_least_three_digits() {
    let names: Vec<String> = numbered_symbols(3).iter().map(|s| s.to_string()).collect();
    assert_eq!(names, ["SYM001", "SYM002", "SYM003"]);
    assert_eq!(numbered_symbols(1200)[1199].as_str(), "SYM1200");
    assert_eq!(numbered_symbols(1200)[0].as_str(), "SYM0001");
}

#[test]
fn zipf_counts_add_up_fall_with_rank_and_skew_like_a_venue() {
    for (symbols, total) in [(1, 10), (3, 0), (7, 5), (50, 2_000_000), (200, 123_457)] {
        let counts = zipf_counts(symbols, total);
        assert_eq!(counts.len(), symbols);
        assert_eq!(counts.iter().sum::<usize>(), total, "{symbols} symbols, {total} commands");
        assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}");
    }
    // With 50 symbols the first carries 1/H(50) = 22.2% and the last 0.44%.
    let counts = zipf_counts(50, 2_000_000);
    let share = |n: usize| n as f64 / 2_000_000.0;
    assert!((0.20..=0.24).contains(&share(counts[0])), "top {}", counts[0]);
    assert!((0.004..=0.005).contains(&share(counts[49])), "last {}", counts[49]);
    // Exponent 1: the k-th carries 1/k of the first.
    assert!((counts[0] as f64 / counts[9] as f64 - 10.0).abs() < 0.01);
}

#[test]
fn same_seed_same_flow_other_seed_other_flow() {
    let a = generate_multi(SYMBOLS, COMMANDS, 7);
    let b = generate_multi(SYMBOLS, COMMANDS, 7);
    assert_eq!(a.warmup, b.warmup, "seed 7");
    assert_eq!(a.commands, b.commands, "seed 7");
    assert_eq!(a.symbols, b.symbols, "seed 7");
    assert_eq!(a.command_symbols, b.command_symbols, "seed 7");
    let c = generate_multi(SYMBOLS, COMMANDS, 8);
    assert_ne!(a.commands, c.commands, "seeds 7 and 8");
    // Every symbol has its own stream.
    assert!(a.symbols.windows(2).all(|w| w[0].seed != w[1].seed));
}

#[test]
fn the_flow_is_skewed_interleaved_and_numbered_globally() {
    let flow = generate_multi(SYMBOLS, COMMANDS, SEED);
    assert_eq!(flow.commands.len(), COMMANDS);
    assert_eq!(flow.command_symbols.len(), COMMANDS);
    assert_eq!(flow.warmup.len(), flow.warmup_symbols.len());
    assert_eq!(flow.warmup.len(), flow.symbols.iter().map(|s| s.warmup).sum::<usize>());
    let counts = zipf_counts(SYMBOLS, COMMANDS);
    for (k, s) in flow.symbols.iter().enumerate() {
        assert_eq!(s.commands, counts[k]);
        assert_eq!(flow.command_symbols.iter().filter(|&&c| c as usize == k).count(), counts[k]);
        assert_eq!(s.symbol, numbered_symbols(SYMBOLS)[k]);
    }
    // 1/H(6) = 40.8% for the first; the shares add up to 1.
    assert!((0.40..=0.42).contains(&(counts[0] as f64 / COMMANDS as f64)));
    assert!((flow.symbols.iter().map(|s| s.share).sum::<f64>() - 1.0).abs() < 1e-9);
    // Interleaved, not concatenated: the first 1000 timed commands touch every symbol.
    let early: std::collections::BTreeSet<u32> = flow.command_symbols[..1000].iter().copied().collect();
    assert_eq!(early.len(), SYMBOLS);
    // seq from 1 over warm-up then timed; a new order's id is its seq; its symbol is the recorded one.
    let symbols = flow.warmup_symbols.iter().chain(&flow.command_symbols);
    for (i, (command, &k)) in flow.warmup.iter().chain(&flow.commands).zip(symbols).enumerate() {
        assert_eq!(command.seq, i as u64 + 1, "seed {SEED}");
        if let Action::New(order) = command.action {
            assert_eq!(order.order_id, command.seq);
            assert_eq!(order.symbol, flow.symbols[k as usize].symbol);
        }
    }
    assert!(flow.warmup.iter().all(|c| matches!(c.action, Action::New(o) if o.tif == Tif::Gtc)));
}

/// Renames the seq and every order id of an event.
fn renamed(event: &Event, global: impl Fn(u64) -> u64) -> Event {
    let kind = match event.kind {
        EventKind::Accepted { order_id, user, symbol, side, order_type, tif, qty, price } => {
            EventKind::Accepted { order_id: global(order_id), user, symbol, side, order_type, tif, qty, price }
        }
        EventKind::Rejected { reason, order_id } => EventKind::Rejected { reason, order_id: order_id.map(&global) },
        EventKind::Trade(mut trade) => {
            trade.maker_order_id = global(trade.maker_order_id);
            trade.taker_order_id = global(trade.taker_order_id);
            EventKind::Trade(trade)
        }
        EventKind::Cancelled { order_id, user, symbol, side, price, reason, remaining } => {
            EventKind::Cancelled { order_id: global(order_id), user, symbol, side, price, reason, remaining }
        }
        EventKind::Modified { order_id, user, symbol, side, price, qty } => {
            EventKind::Modified { order_id: global(order_id), user, symbol, side, price, qty }
        }
        other @ (EventKind::MassCancelled { .. } | EventKind::Status { .. }) => other,
    };
    Event { seq: global(event.seq), kind }
}

/// Renames the seq and the order id of a command.
fn renamed_command(command: &Command, global: impl Fn(u64) -> u64) -> Command {
    let action = match command.action {
        Action::New(mut order) => {
            order.order_id = global(order.order_id);
            Action::New(order)
        }
        Action::Cancel { user, order_id } => Action::Cancel { user, order_id: global(order_id) },
        Action::Modify { user, order_id, price, qty } => {
            Action::Modify { user, order_id: global(order_id), price, qty }
        }
        other @ (Action::MassCancel { .. } | Action::Halt { .. } | Action::Resume { .. }) => other,
    };
    Command { seq: global(command.seq), timestamp_ns: command.timestamp_ns, action }
}

#[test]
fn one_exchange_gives_each_symbol_the_events_of_its_single_flow() {
    let flow = generate_multi(SYMBOLS, COMMANDS, SEED);
    // The multi flow through one exchange, timed events split by symbol.
    let mut exchange: Exchange = Exchange::new(Config::default());
    let mut events = Vec::new();
    exchange.process_all(&flow.warmup, &mut events);
    assert!(events.iter().all(|e| matches!(e.kind, EventKind::Accepted { .. })), "the warm-up only rests");
    let mut by_symbol: Vec<Vec<Event>> = vec![Vec::new(); SYMBOLS];
    for (command, &k) in flow.commands.iter().zip(&flow.command_symbols) {
        events.clear();
        exchange.process(command, &mut events);
        by_symbol[k as usize].extend_from_slice(&events);
    }
    exchange.validate().expect("the books stay valid");
    // Each symbol's local seq -> global seq, read off the interleaving alone.
    let mut global_of: Vec<Vec<u64>> = vec![vec![0]; SYMBOLS];
    let symbols = flow.warmup_symbols.iter().chain(&flow.command_symbols);
    for (command, &k) in flow.warmup.iter().chain(&flow.commands).zip(symbols) {
        global_of[k as usize].push(command.seq);
    }
    let (mut trades, mut rejections) = (0u64, 0u64);
    for (k, s) in flow.symbols.iter().enumerate() {
        let single = generate_for(s.symbol, flow.scenario, s.commands, s.seed);
        let context = format!("symbol {} (seed {SEED}, its seed {})", s.symbol, s.seed);
        assert_eq!(single.warmup.len(), s.warmup, "{context}");
        assert_eq!(single.stats, s.stats, "{context}");
        let global = |local: u64| global_of[k][local as usize];
        // The same commands, renamed...
        let mine = flow.warmup.iter().chain(&flow.commands).filter(|c| global_of[k].binary_search(&c.seq).is_ok());
        for (a, b) in single.warmup.iter().chain(&single.commands).zip(mine) {
            assert_eq!(renamed_command(a, global), *b, "{context}");
        }
        // ...give the same events, renamed.
        let mut alone: Exchange = Exchange::new(Config::default());
        alone.process_all(&single.warmup, &mut DiscardEvents);
        let mut expected = Vec::new();
        alone.process_all(&single.commands, &mut expected);
        let expected: Vec<Event> = expected.iter().map(|e| renamed(e, global)).collect();
        assert_eq!(expected.len() as u64, s.stats.events, "{context}");
        assert!(expected == by_symbol[k], "{context}: the events differ");
        trades += s.stats.trades;
        rejections += s.stats.rejected_unknown_order + s.stats.rejected_other;
    }
    let all: Vec<&Event> = by_symbol.iter().flatten().collect();
    assert_eq!(all.iter().filter(|e| matches!(e.kind, EventKind::Trade(_))).count() as u64, trades);
    assert_eq!(all.iter().filter(|e| matches!(e.kind, EventKind::Rejected { .. })).count() as u64, rejections);
    assert_eq!((flow.trades(), flow.rejections()), (trades, rejections));
    assert!(trades > 0 && rejections > 0);
}

#[test]
fn generate_for_changes_only_the_symbol() {
    let other = Symbol::new("OTHER").unwrap();
    let a = crate::generate(Scenario::Volatile, 5_000, SEED);
    let b = generate_for(other, Scenario::Volatile, 5_000, SEED);
    assert_eq!(a.stats, b.stats);
    let with_symbol = |c: &Command, symbol| match c.action {
        Action::New(mut order) => {
            order.symbol = symbol;
            Command { action: Action::New(order), ..*c }
        }
        _ => *c,
    };
    for (x, y) in a.warmup.iter().chain(&a.commands).zip(b.warmup.iter().chain(&b.commands)) {
        assert_eq!(with_symbol(x, other), *y);
    }
}

#[test]
fn uniform_orders_spread_evenly_and_about_half_trade() {
    let symbols = numbered_symbols(10);
    let orders = uniform_orders(&symbols, 20_000, SEED);
    assert_eq!(orders, uniform_orders(&symbols, 20_000, SEED));
    assert_ne!(orders, uniform_orders(&symbols, 20_000, SEED + 1));
    let mut per_symbol = vec![0usize; symbols.len()];
    let mut exchange: Exchange = Exchange::new(Config::default());
    let mut events = Vec::new();
    let mut trading = 0;
    for (i, command) in orders.iter().enumerate() {
        assert_eq!(command.seq, i as u64 + 1);
        let Action::New(order) = command.action else { panic!("only new orders") };
        assert_eq!(order.order_id, command.seq);
        assert!(order.price.is_some_and(|p| p.abs_diff(UNIFORM_MID_TICKS) <= UNIFORM_SPREAD_TICKS));
        assert!((1..=100).contains(&order.qty));
        per_symbol[symbols.iter().position(|&s| s == order.symbol).unwrap()] += 1;
        events.clear();
        exchange.process(command, &mut events);
        trading += events.iter().any(|e| matches!(e.kind, EventKind::Trade(_))) as usize;
    }
    assert!(per_symbol.iter().all(|&n| (1_700..=2_300).contains(&n)), "{per_symbol:?}");
    let share = trading as f64 / orders.len() as f64;
    assert!((0.35..=0.65).contains(&share), "{share} of orders traded (seed {SEED})");
}
