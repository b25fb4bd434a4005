//! Defects found in the core while holding it against the reference, each
//! pinned by a test that states the expected behaviour: a failing test
//! while the defect is there, a regression test once it is fixed.

use std::panic::{AssertUnwindSafe, catch_unwind};

use matching_core::{Action, Command, Config, EventKind, Exchange, NewOrder, Side, SortedVecLevels, Symbol, VALUE_MAX};

/// Byte offset of a book's `last trade id` in `encode_state` output when the
/// state holds exactly one book named `symbol`: magic (4), version (4),
/// book count (8), symbol length (1), the symbol's bytes.
fn last_trade_id_offset(symbol: &Symbol) -> usize {
    4 + 4 + 8 + 1 + symbol.as_bytes().len()
}

/// Found: `decode_state` accepted a book whose last trade id was `u64::MAX`
/// (it says it "checks everything it reads"), and the next trade in that
/// book then needed trade id `u64::MAX + 1`: a debug build panicked with
/// "attempt to add with overflow" in `Book::take` (`self.last_trade_id += 1`),
/// a release build (no overflow checks) gave the trade id 0, against SPEC
/// "Trade ids count from 1 per symbol". The core now rejects a last trade id
/// above `2^53 - 1` when decoding.
///
/// Expected: either `decode_state` rejects a trade id from which no further
/// trade id can be given, or the state keeps working and the next trade id
/// is greater than the last.
#[test]
fn decoded_last_trade_id_cannot_overflow() {
    for last_trade_id in [VALUE_MAX, u64::MAX - 1, u64::MAX] {
        check_trade_id_after_decode(last_trade_id);
    }
}

fn check_trade_id_after_decode(last_trade_id: u64) {
    let x = Symbol::new("X").expect("valid symbol");
    let mut exchange: Exchange<SortedVecLevels> = Exchange::with_levels(Config::default());
    let mut events = Vec::new();
    exchange.process(&Command::new(1, Action::New(NewOrder::limit(1, 1, x, Side::Sell, 100, 5))), &mut events);
    let mut bytes = exchange.encode_state();
    let at = last_trade_id_offset(&x);
    assert_eq!(bytes[at..at + 8], 0u64.to_le_bytes(), "layout: the book's last trade id is 0 before any trade");
    bytes[at..at + 8].copy_from_slice(&last_trade_id.to_le_bytes());

    let Ok(mut restored) = Exchange::<SortedVecLevels>::decode_state(Config::default(), &bytes) else {
        return; // Rejected: fine, nothing can overflow.
    };
    restored.validate().expect("decoded state is valid");
    let last = restored.book(&x).expect("book X").last_trade_id();
    assert_eq!(last, last_trade_id, "decode_state keeps the last trade id");
    let crossing_buy = Command::new(2, Action::New(NewOrder::limit(2, 2, x, Side::Buy, 100, 1)));
    let mut events = Vec::new();
    let outcome = catch_unwind(AssertUnwindSafe(|| restored.process(&crossing_buy, &mut events)));
    assert!(
        outcome.is_ok(),
        "decode_state accepted last_trade_id = {last}, and the next trade panicked (trade id overflow)"
    );
    let trades: Vec<u64> = events
        .iter()
        .filter_map(|event| match event.kind {
            EventKind::Trade(trade) => Some(trade.trade_id),
            _ => None,
        })
        .collect();
    assert_eq!(trades.len(), 1, "the buy crosses the resting sell: {events:?}");
    assert!(
        trades[0] > last,
        "decode_state accepted last_trade_id = {last}, and the next trade got trade_id {}",
        trades[0]
    );
}
