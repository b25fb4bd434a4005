//! A mass cancel costs what it cancels: it walks the owner lists of the user
//! (per book and side), not the books, not every user's orders. Shown by the
//! core's count of the orders mass cancels step through
//! (`Exchange::mass_cancel_visits`), on a book of 1,000,000 other orders.
//! The time it takes is measured in `matching-engine bench` (see
//! `docs/BENCHMARKS.md`), not asserted here.

use matching_core::{Action, CancelReason, Command, Config, Event, EventKind, Exchange, NewOrder, Side, Symbol};

const OTHERS: u64 = 1_000_000;
const MINE: u64 = 100_000;
const USER: u64 = 7;

fn symbols() -> [Symbol; 4] {
    ["AAA", "BBB", "CCC", "DDD"].map(|name| Symbol::new(name).unwrap())
}

/// Resting orders of many users over four symbols, user `USER`'s among
/// them (every `OTHERS / MINE + 1`th order); nothing crosses.
fn build() -> (Exchange, u64) {
    let config = Config { orders_preallocated: (OTHERS + MINE) as usize, ..Config::default() };
    let mut exchange: Exchange = Exchange::new(config);
    let symbols = symbols();
    let mut seq = 0;
    for i in 0..OTHERS + MINE {
        seq += 1;
        let mine = i % (OTHERS / MINE + 1) == 0;
        let user = if mine { USER } else { 100 + i % 5_000 };
        let side = if i % 2 == 0 { Side::Buy } else { Side::Sell };
        let price = if side == Side::Buy { 1_000 - i % 500 } else { 1_001 + i % 500 };
        let order = NewOrder::limit(seq, user, symbols[(i / 2 % 4) as usize], side, price, 1 + i % 9);
        exchange.process(&Command::new(seq, Action::New(order)), &mut |event: &Event| {
            assert!(matches!(event.kind, EventKind::Accepted { .. }), "{event:?}");
        });
    }
    (exchange, seq)
}

fn mass_cancel(exchange: &mut Exchange, seq: u64, symbol: Option<Symbol>, side: Option<Side>) -> Vec<Event> {
    let mut events = Vec::new();
    exchange.process(&Command::new(seq, Action::MassCancel { user: USER, symbol, side }), &mut events);
    events
}

/// The cancels come lowest id first, all of `USER`'s, and the count closes them.
fn check_events(exchange: &Exchange, events: &[Event], want: u64) {
    let (last, cancels) = events.split_last().unwrap();
    assert_eq!(last.kind, EventKind::MassCancelled { user: USER, count: want });
    assert_eq!(cancels.len() as u64, want);
    let mut previous = 0;
    for event in cancels {
        let EventKind::Cancelled { order_id, reason: CancelReason::Mass, .. } = event.kind else {
            panic!("{event:?}");
        };
        assert!(order_id > previous, "cancels out of order id order");
        previous = order_id;
        assert!(exchange.order(order_id).is_none(), "order {order_id} still rests");
    }
}

#[test]
fn a_mass_cancel_visits_only_the_orders_it_cancels() {
    let (mut exchange, mut seq) = build();
    let resting = exchange.order_count() as u64;
    assert_eq!(resting, OTHERS + MINE);

    // One symbol, one side: a quarter of a half of the user's orders.
    seq += 1;
    let events = mass_cancel(&mut exchange, seq, Some(symbols()[1]), Some(Side::Sell));
    let first = events.len() as u64 - 1;
    assert!(first > MINE / 10, "{first}");
    check_events(&exchange, &events, first);
    assert_eq!(exchange.mass_cancel_visits(), first, "visited more than it cancelled");

    // A symbol where the user has nothing on that side any more: nothing visited.
    seq += 1;
    let events = mass_cancel(&mut exchange, seq, Some(symbols()[1]), Some(Side::Sell));
    check_events(&exchange, &events, 0);
    assert_eq!(exchange.mass_cancel_visits(), first);

    // Everything else of the user, in every symbol.
    seq += 1;
    let events = mass_cancel(&mut exchange, seq, None, None);
    check_events(&exchange, &events, MINE - first);
    assert_eq!(exchange.mass_cancel_visits(), MINE, "visited more than it cancelled");
    assert_eq!(exchange.order_count() as u64, OTHERS, "the other users' orders stay");

    // Nothing left: a mass cancel of the user visits nothing.
    seq += 1;
    let events = mass_cancel(&mut exchange, seq, None, None);
    check_events(&exchange, &events, 0);
    assert_eq!(exchange.mass_cancel_visits(), MINE);
    exchange.validate().unwrap();
}
