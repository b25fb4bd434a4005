//! `Engine::query` travels through the rings, so its answer reflects every
//! command submitted before it: a query made after a submit returned sees
//! that command and everything before it.
//!
//! One thread submits (one at a time and in batches) and publishes, after
//! each submit returns, the last `seq` it was given; another thread loads
//! that value `k`, queries, and requires the answer to be the state after
//! some prefix `m` of the stream with `k <= m < next_seq` (read after the
//! answer came back): it contains every command up to `k` and nothing not
//! yet sequenced. A third thread drains the reader. The submitter waits
//! (on an atomic, no sleeps) at a few points until the querier has made
//! some queries, so queries are sure to land mid-stream.
//!
//! What each prefix's state is comes from one `Exchange` run over the
//! stream beforehand: per symbol, a fingerprint of its resting orders (an
//! XOR of a mix of `(symbol, id, remaining)`, so updated per event), its
//! best prices and its depth, as they change; and, for the smaller stream
//! with cancels, the state hash after every prefix.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Item, Mix, first_difference, limit, small_exchange, sym, with_timeout};
use matching_core::{
    Action, BookState, Command, Event, EventKind, Exchange, OrderId, Price, RestingOrder, Seq, Side, Stp, Symbol,
    UserId,
};
use matching_pipeline::{Answer, Engine, EngineConfig, Query, WaitStrategy};

const DEPTH_LEVELS: usize = 5;

/// What the query thread checks answers against.
struct Expected {
    symbols: Vec<Symbol>,
    /// Per symbol, its fingerprint from the prefix `m` on: `(m, value)`, `m` increasing.
    fingerprints: Vec<Vec<(Seq, u64)>>,
    /// The fingerprint of all symbols together.
    global: Vec<(Seq, u64)>,
    best: Vec<Vec<(Seq, Answer)>>,
    depth: Vec<Vec<(Seq, Answer)>>,
    /// The state hash after every prefix (index `m`), when computed.
    hashes: Option<Vec<u64>>,
    /// Every order ever submitted: `(symbol index, user, side, price)`.
    orders: HashMap<OrderId, (usize, UserId, Side, Price)>,
    items: Vec<Item>,
    final_hash: u64,
}

fn mix(symbol: usize, id: OrderId, remaining: u64) -> u64 {
    Mix(id ^ (remaining << 24) ^ ((symbol as u64) << 56)).next()
}

/// Runs the stream through one exchange, recording how each symbol's
/// state changes. Every new order must rest (the streams do not cross).
fn expected(symbols: &[Symbol], stream: &[Action], with_hashes: bool) -> Expected {
    let mut exchange: Exchange = Exchange::new(small_exchange());
    let answers = |exchange: &Exchange, symbol: &Symbol| match exchange.book(symbol) {
        Some(book) => (
            Answer::Best { bid: book.best_bid(), ask: book.best_ask() },
            Answer::Depth {
                bids: book.depth(Side::Buy).take(DEPTH_LEVELS).collect(),
                asks: book.depth(Side::Sell).take(DEPTH_LEVELS).collect(),
            },
        ),
        None => (Answer::Best { bid: None, ask: None }, Answer::Depth { bids: Vec::new(), asks: Vec::new() }),
    };
    let mut expect = Expected {
        symbols: symbols.to_vec(),
        fingerprints: vec![vec![(0, 0)]; symbols.len()],
        global: vec![(0, 0)],
        best: symbols.iter().map(|s| vec![(0, answers(&exchange, s).0)]).collect(),
        depth: symbols.iter().map(|s| vec![(0, answers(&exchange, s).1)]).collect(),
        hashes: with_hashes.then(|| vec![exchange.state_hash()]),
        orders: HashMap::new(),
        items: Vec::new(),
        final_hash: 0,
    };
    let index_of = |symbol: &Symbol| symbols.iter().position(|s| s == symbol).expect("a test symbol");
    // Resting orders: id -> (symbol index, remaining).
    let mut resting: HashMap<OrderId, (usize, u64)> = HashMap::new();
    let (mut global, mut fingerprints) = (0u64, vec![0u64; symbols.len()]);
    for (i, action) in stream.iter().enumerate() {
        let seq = i as Seq + 1;
        let action = common::with_id(*action, seq);
        if let Action::New(order) = action {
            expect.orders.insert(seq, (index_of(&order.symbol), order.user, order.side, order.price.unwrap_or(0)));
        }
        let mut events = Vec::new();
        exchange.process(&Command::new(seq, action), &mut events);
        let mut touched = None;
        for event in &events {
            let mut change = |s: usize, id, old: Option<u64>, new: Option<u64>| {
                let delta = old.map_or(0, |q| mix(s, id, q)) ^ new.map_or(0, |q| mix(s, id, q));
                fingerprints[s] ^= delta;
                global ^= delta;
                touched = Some(s);
            };
            match event.kind {
                EventKind::Accepted { order_id, symbol, qty, .. } => {
                    let s = index_of(&symbol);
                    resting.insert(order_id, (s, qty));
                    change(s, order_id, None, Some(qty));
                }
                EventKind::Cancelled { order_id, .. } => {
                    let (s, remaining) = resting.remove(&order_id).expect("a cancelled order rested");
                    change(s, order_id, Some(remaining), None);
                }
                EventKind::Modified { order_id, qty, .. } => {
                    let (s, remaining) = resting.get_mut(&order_id).expect("a modified order rests");
                    let (s, old) = (*s, *remaining);
                    *remaining = qty;
                    change(s, order_id, Some(old), Some(qty));
                }
                EventKind::Rejected { .. } => {}
                // No resting order changes: a mass cancel's orders have had their
                // own `Cancelled` events, and a status change leaves the book as is.
                EventKind::MassCancelled { .. } | EventKind::Status { .. } => {}
                EventKind::Trade(_) => panic!("the test streams do not cross: {event:?}"),
            }
            expect.items.push(Item::Event(*event));
        }
        if let Some(s) = touched {
            expect.fingerprints[s].push((seq, fingerprints[s]));
            expect.global.push((seq, global));
            let (best, depth) = answers(&exchange, &symbols[s]);
            expect.best[s].push((seq, best));
            expect.depth[s].push((seq, depth));
        }
        if let Some(hashes) = &mut expect.hashes {
            hashes.push(exchange.state_hash());
        }
    }
    exchange.validate().expect("the oracle's invariants");
    for (s, symbol) in symbols.iter().enumerate() {
        let orders: Vec<RestingOrder> = exchange
            .book(symbol)
            .map(|book| book.orders(Side::Buy).chain(book.orders(Side::Sell)).collect())
            .unwrap_or_default();
        let recomputed = orders.iter().fold(0, |fp, o| fp ^ mix(s, o.order_id, o.qty));
        assert_eq!(recomputed, fingerprints[s], "the incremental fingerprint of {symbol} is right");
    }
    expect.final_hash = exchange.state_hash();
    expect
}

/// The values in effect at some prefix in `lo..=hi`.
fn in_effect<T>(changes: &[(Seq, T)], lo: Seq, hi: Seq) -> impl Iterator<Item = &T> {
    let first = changes.partition_point(|&(m, _)| m <= lo).saturating_sub(1);
    changes[first..].iter().take_while(move |&&(m, _)| m <= hi).map(|(_, value)| value)
}

/// Checks the orders of one side of a book answer against what was
/// submitted (priority order: best price first, then oldest; there are no
/// price changes in these streams) and returns their fingerprint.
fn side_fingerprint(expect: &Expected, s: usize, side: Side, orders: &[RestingOrder]) -> Result<u64, String> {
    let mut fp = 0;
    for (i, order) in orders.iter().enumerate() {
        let Some(&(symbol, user, order_side, price)) = expect.orders.get(&order.order_id) else {
            return Err(format!("order {} was never submitted", order.order_id));
        };
        if symbol != s || user != order.user || order_side != side || order.side != side || price != order.price {
            return Err(format!("order {order:?} is not what was submitted"));
        }
        if order.post_only || order.stp != Stp::None || order.qty == 0 {
            return Err(format!("order {order:?} has wrong flags or quantity"));
        }
        if let Some(next) = orders.get(i + 1) {
            let better = match side {
                Side::Buy => order.price > next.price,
                Side::Sell => order.price < next.price,
            };
            if !(better || (order.price == next.price && order.order_id < next.order_id)) {
                return Err(format!("{side:?} orders out of priority order: {order:?} before {next:?}"));
            }
        }
        fp ^= mix(s, order.order_id, order.qty);
    }
    Ok(fp)
}

/// Decodes one book's part of the state encoding (layout in
/// `matching_core::snapshot`): the bids and asks.
fn decode_part(part: &BookState) -> Result<(Vec<RestingOrder>, Vec<RestingOrder>), String> {
    let bytes = &part.bytes;
    let mut at = 0;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let slice = bytes.get(at..at + n).ok_or_else(|| format!("part of {} is truncated", part.symbol))?;
        at += n;
        Ok(slice)
    };
    let u64_at = |slice: &[u8]| u64::from_le_bytes(slice.try_into().expect("8 bytes"));
    let len = take(1)?[0] as usize;
    if take(len)? != part.symbol.as_bytes() {
        return Err(format!("part of {} names another symbol", part.symbol));
    }
    let _last_trade_id = take(8)?;
    let _status = take(1)?;
    let mut sides = Vec::new();
    for side in [Side::Buy, Side::Sell] {
        let count = u64_at(take(8)?);
        let mut orders = Vec::new();
        for _ in 0..count {
            let (id, user, price, remaining) = (u64_at(take(8)?), u64_at(take(8)?), u64_at(take(8)?), u64_at(take(8)?));
            let (stp, post_only) = (take(1)?[0], take(1)?[0]);
            let stp = match stp {
                0 => Stp::None,
                1 => Stp::CancelTaker,
                2 => Stp::CancelMaker,
                3 => Stp::CancelBoth,
                code => return Err(format!("stp code {code}")),
            };
            orders.push(RestingOrder {
                order_id: id,
                user,
                side,
                price,
                qty: remaining,
                post_only: post_only != 0,
                stp,
            });
        }
        sides.push(orders);
    }
    if at != bytes.len() {
        return Err(format!("part of {} has {} bytes left over", part.symbol, bytes.len() - at));
    }
    let asks = sides.pop().expect("two sides");
    Ok((sides.pop().expect("two sides"), asks))
}

/// Counts of what the query thread did.
#[derive(Default, Debug)]
struct QueryStats {
    queries: u64,
    /// Queries whose `k` was before the last command.
    mid_stream: u64,
}

/// Asks one question (chosen by `round`) and checks the answer reflects
/// every command up to `k`.
fn query_and_check(engine: &Engine<u32>, expect: &Expected, round: u64, k: Seq) -> Result<(), String> {
    let s = (round / 5) as usize % expect.symbols.len();
    let symbol = expect.symbols[s];
    let kind = round % 5;
    let (answer, hash) = match kind {
        0 => (Some(engine.query(Query::Book(symbol)).expect("query")), None),
        1 => (Some(engine.query(Query::Best(symbol)).expect("query")), None),
        2 => (Some(engine.query(Query::Depth(symbol, DEPTH_LEVELS)).expect("query")), None),
        3 => (Some(engine.query(Query::State).expect("query")), None),
        _ => match &expect.hashes {
            Some(_) => (None, Some(engine.state_hash().expect("state_hash"))),
            None => (Some(engine.query(Query::Book(symbol)).expect("query")), None),
        },
    };
    // Nothing sequenced after this can be in the answer.
    let hi = engine.next_seq() - 1;
    let context = || format!("query {round} with k = {k}, next_seq - 1 = {hi}");
    if let Some(hash) = hash {
        let hashes = expect.hashes.as_ref().expect("hashes");
        if !hashes[k as usize..=hi as usize].contains(&hash) {
            return Err(format!("{}: state_hash {hash:#x} is the hash of no prefix in k..=hi", context()));
        }
        return Ok(());
    }
    match answer.expect("an answer") {
        Answer::Book { bids, asks, .. } => {
            let fp = side_fingerprint(expect, s, Side::Buy, &bids)? ^ side_fingerprint(expect, s, Side::Sell, &asks)?;
            if !in_effect(&expect.fingerprints[s], k, hi).any(|&want| want == fp) {
                return Err(format!(
                    "{}: the book of {symbol} ({} bids, {} asks) is the state of no prefix in k..=hi",
                    context(),
                    bids.len(),
                    asks.len()
                ));
            }
        }
        answer @ Answer::Best { .. } => {
            if !in_effect(&expect.best[s], k, hi).any(|want| *want == answer) {
                return Err(format!("{}: {answer:?} of {symbol} is the best of no prefix in k..=hi", context()));
            }
        }
        answer @ Answer::Depth { .. } => {
            if !in_effect(&expect.depth[s], k, hi).any(|want| *want == answer) {
                return Err(format!("{}: {answer:?} of {symbol} is the depth of no prefix in k..=hi", context()));
            }
        }
        Answer::State(parts) => {
            let mut fp = 0;
            for part in &parts {
                let s = expect.symbols.iter().position(|x| *x == part.symbol).ok_or("state of an unknown symbol")?;
                let (bids, asks) = decode_part(part)?;
                fp ^= side_fingerprint(expect, s, Side::Buy, &bids)? ^ side_fingerprint(expect, s, Side::Sell, &asks)?;
            }
            if !in_effect(&expect.global, k, hi).any(|&want| want == fp) {
                return Err(format!(
                    "{}: the state ({} books) is the state of no prefix in k..=hi",
                    context(),
                    parts.len()
                ));
            }
        }
    }
    Ok(())
}

/// Submits `stream` in pieces while a query thread checks answers; the
/// submitter waits at `gates` points until the querier has made that many
/// more queries.
fn run(stream: Vec<Action>, expect: Expected, config: EngineConfig, gates: usize) -> QueryStats {
    let expect = Arc::new(expect);
    let (engine, reader) = Engine::<u32>::start(config).expect("a valid engine configuration");
    let engine = Arc::new(engine);
    let reader = common::drain(reader);
    let published = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let queries = Arc::new(AtomicU64::new(0));
    let querier_gone = Arc::new(AtomicBool::new(false));

    let querier = {
        let (engine, expect, published, done, queries, querier_gone) = (
            Arc::clone(&engine),
            Arc::clone(&expect),
            Arc::clone(&published),
            Arc::clone(&done),
            Arc::clone(&queries),
            Arc::clone(&querier_gone),
        );
        std::thread::spawn(move || {
            /// Tells the submitter the querier stopped, however it stops.
            struct Gone(Arc<AtomicBool>);
            impl Drop for Gone {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Release);
                }
            }
            let _gone = Gone(querier_gone);
            let last = stream_len_of(&expect);
            let mut stats = QueryStats::default();
            let mut round = 0;
            loop {
                // Load `done` first: once it is set, one more round sees the end.
                let finished = done.load(Ordering::Acquire);
                let k = published.load(Ordering::Acquire);
                if let Err(reason) = query_and_check(&engine, &expect, round, k) {
                    panic!("{reason}");
                }
                round += 1;
                stats.queries += 1;
                stats.mid_stream += u64::from(k < last);
                queries.store(stats.queries, Ordering::Release);
                if finished {
                    return stats;
                }
            }
        })
    };

    let mut mix = Mix(7);
    let mut pos = 0;
    let gate_every = stream.len() / (gates + 1);
    let mut next_gate = gate_every;
    while pos < stream.len() {
        if gates > 0 && pos >= next_gate {
            // Let the querier make a few queries at this point of the stream.
            let target = queries.load(Ordering::Acquire) + 3;
            while queries.load(Ordering::Acquire) < target && !querier_gone.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            next_gate += gate_every;
        }
        let last = if mix.below(3) == 0 {
            engine.submit(stream[pos]).expect("submit");
            pos += 1;
            pos
        } else {
            // A piece ends at the next gate, so every gate is passed.
            let end = (pos + 1 + mix.below(300) as usize).min(stream.len()).min(next_gate.max(pos + 1));
            let first = engine.submit_batch(&stream[pos..end]).expect("submit_batch");
            assert_eq!(first, pos as Seq + 1);
            pos = end;
            pos
        };
        published.store(last as Seq, Ordering::Release);
    }
    done.store(true, Ordering::Release);
    let stats = match querier.join() {
        Ok(stats) => stats,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    assert_eq!(engine.state_hash().expect("state_hash"), expect.final_hash, "final state hash");
    let engine = Arc::into_inner(engine).expect("the querier is done with the engine");
    let exchanges = engine.shutdown();
    let mut parts: Vec<_> = exchanges.iter().flat_map(|e| e.book_states()).collect();
    assert_eq!(matching_core::hash_books(&mut parts), expect.final_hash);
    let items = reader.join().expect("the reader thread");
    assert_eq!(first_difference(&items, &expect.items), None);
    stats
}

fn stream_len_of(expect: &Expected) -> Seq {
    expect.items.iter().map(Item::seq).max().unwrap_or(0)
}

fn symbols() -> Vec<Symbol> {
    ["B", "C", "D", "A"].iter().map(|name| sym(name)).collect()
}

fn engine_config(shards: usize, wait: WaitStrategy) -> EngineConfig {
    EngineConfig {
        shards,
        exchange: small_exchange(),
        input_ring: 64,
        output_ring: 256,
        batch_max: 128,
        route_window: 64,
        wait,
        ..EngineConfig::default()
    }
}

/// 20,000 resting orders over 4 symbols, no two crossing: the checks are
/// of an ever-growing book.
#[test]
fn queries_see_every_earlier_order() {
    let symbols = symbols();
    let stream: Vec<Action> = (0..20_000u64)
        .map(|i| {
            let symbol = symbols[i as usize % symbols.len()];
            let j = i / symbols.len() as u64;
            // Bids climb below 50,000, asks fall above it; a few share a price.
            let (side, price) = match j % 2 {
                0 => (Side::Buy, 10_000 + j / 3),
                _ => (Side::Sell, 90_000 - j / 3),
            };
            limit(i % 3, symbol, side, price, 1 + i % 7)
        })
        .collect();
    let expect = expected(&symbols, &stream, false);
    let stats = with_timeout("queries-see-every-earlier-order", Duration::from_secs(120), move || {
        run(stream, expect, engine_config(2, WaitStrategy::SpinYield), 40)
    });
    eprintln!("queries_see_every_earlier_order: {stats:?}");
    assert!(stats.mid_stream >= 40 * 3, "too few queries landed mid-stream: {stats:?}");
}

/// New orders, cancels (of live orders, some long-lived; of dead ones; of
/// other users' orders) and in-place quantity reductions over 3 symbols:
/// the books grow and shrink, and every answer, the state hash included,
/// must be the state of a prefix no older than the last submit returned.
#[test]
fn queries_see_every_earlier_cancel() {
    let symbols: Vec<Symbol> = symbols().into_iter().take(3).collect();
    let mut mix = Mix(99);
    let mut stream: Vec<Action> = Vec::new();
    // (id, user, qty) of the orders that should be resting.
    let mut live: Vec<(OrderId, UserId, u64)> = Vec::new();
    let mut gone: Vec<OrderId> = Vec::new();
    for i in 0..3_000u64 {
        let seq = i + 1;
        let roll = mix.below(100);
        let action = if roll < 50 || live.len() < 8 {
            let symbol = symbols[mix.below(3) as usize];
            let (side, price) =
                if mix.below(2) == 0 { (Side::Buy, 100 + mix.below(20)) } else { (Side::Sell, 200 + mix.below(20)) };
            let (user, qty) = (mix.below(3), 1 + mix.below(9));
            live.push((seq, user, qty));
            limit(user, symbol, side, price, qty)
        } else if roll < 80 {
            // Old orders as often as new ones.
            let index =
                if mix.below(2) == 0 { mix.below(live.len() as u64 / 4 + 1) } else { mix.below(live.len() as u64) };
            let (id, user, _) = live.remove(index as usize);
            gone.push(id);
            Action::Cancel { user, order_id: id }
        } else if roll < 90 {
            let index = mix.below(live.len() as u64) as usize;
            let (id, user, qty) = live[index];
            let new_qty = 1 + mix.below(qty);
            live[index].2 = new_qty;
            Action::Modify { user, order_id: id, price: None, qty: Some(new_qty) }
        } else if roll < 95 && !gone.is_empty() {
            Action::Cancel { user: 0, order_id: gone[mix.below(gone.len() as u64) as usize] }
        } else {
            let (id, user, _) = live[mix.below(live.len() as u64) as usize];
            Action::Cancel { user: (user + 1) % 3, order_id: id }
        };
        stream.push(action);
    }
    let expect = expected(&symbols, &stream, true);
    let cancelled = expect
        .items
        .iter()
        .filter(|item| matches!(item, Item::Event(Event { kind: EventKind::Cancelled { .. }, .. })))
        .count();
    assert!(cancelled > 600, "the stream cancels: {cancelled}");
    let stats = with_timeout("queries-see-every-earlier-cancel", Duration::from_secs(120), move || {
        run(stream, expect, engine_config(3, WaitStrategy::Park), 30)
    });
    eprintln!("queries_see_every_earlier_cancel: {stats:?}");
    assert!(stats.mid_stream >= 30 * 3, "too few queries landed mid-stream: {stats:?}");
}
