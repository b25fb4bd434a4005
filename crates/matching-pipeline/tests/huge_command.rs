//! One command whose answer is far larger than every ring: an `ioc` that
//! sweeps 5,000 resting orders (5,002 events) through an output ring of a
//! few slots, then a broadcast `modify` (of an order far older than the
//! route window) that sweeps 5,000 more. Neither may deadlock: the shard
//! writes its events as the reader drains them, the reader streams a
//! command's events before its last one exists, and a query or an external
//! item right behind the sweep waits its turn. The output must equal one
//! `Exchange`'s.

mod common;

use std::time::Duration;

use common::{Item, first_difference, limit, oracle, small_exchange, sym, with_timeout};
use matching_core::{Action, Event, EventKind, NewOrder, Seq, Side, Tif};
use matching_pipeline::{Answer, Engine, EngineConfig, Query, WaitStrategy};

const SWEPT: u64 = 5_000;

/// The stream, and the seqs of the `ioc` sweep and of the broadcast modify.
fn stream() -> (Vec<Option<Action>>, Seq, Seq) {
    let b = sym("B");
    // Seq 1: a buy far below the asks, to be modified (broadcast) later.
    let mut stream = vec![Some(limit(9, b, Side::Buy, 50, 1))];
    let sells = |stream: &mut Vec<Option<Action>>| {
        for i in 0..SWEPT {
            stream.push(Some(limit(1 + i % 3, b, Side::Sell, 100 + i % 50, 1 + i % 3)));
        }
    };
    let total: u64 = (0..SWEPT).map(|i| 1 + i % 3).sum();
    sells(&mut stream);
    stream.push(Some(Action::New(NewOrder::limit(0, 7, b, Side::Buy, 1_000, total + 1).with_tif(Tif::Ioc))));
    let ioc = stream.len() as Seq;
    // Right behind the sweep: an external item.
    stream.push(None);
    sells(&mut stream);
    stream.push(Some(Action::Modify { user: 9, order_id: 1, price: Some(1_000), qty: Some(total + 10) }));
    let modify = stream.len() as Seq;
    stream.push(None);
    stream.push(Some(Action::Cancel { user: 9, order_id: 1 }));
    (stream, ioc, modify)
}

fn trades_of(items: &[Item], seq: Seq) -> u64 {
    items
        .iter()
        .filter(|item| matches!(item, Item::Event(Event { seq: s, kind: EventKind::Trade(_) }) if *s == seq))
        .count() as u64
}

fn sweep(shards: usize, wait: WaitStrategy, output_ring: usize, input_ring: usize) {
    let (stream, ioc, modify) = stream();
    let (want_exchange, want) = oracle(&small_exchange(), &stream);
    assert_eq!(trades_of(&want, ioc), SWEPT);
    assert_eq!(trades_of(&want, modify), SWEPT);
    assert!(modify - 1 > 64, "the modified order is older than the route window");
    let config = EngineConfig {
        shards,
        exchange: small_exchange(),
        input_ring,
        output_ring,
        external_ring: 1,
        batch_max: 64,
        route_window: 64,
        wait,
        ..EngineConfig::default()
    };
    assert!((SWEPT as usize) > 100 * output_ring);
    let name = format!("{shards} shards, {wait:?}, output ring {output_ring}, input ring {input_ring}");
    let (got, state, best) = with_timeout(&name, Duration::from_secs(60), move || {
        let (engine, reader) = Engine::<u32>::start(config).expect("start");
        assert_eq!(engine.shard_of(&sym("B")), shards - 1, "B is off shard 0 when there are 2 shards");
        let reader = common::drain(reader);
        let mut best = Vec::new();
        // The resting orders in one batch, each big command alone, a query
        // right behind each sweep.
        let mut pos = 0;
        while pos < stream.len() {
            let seq = pos as Seq + 1;
            match stream[pos] {
                None => {
                    assert_eq!(engine.submit_external(common::external_payload(seq)).expect("submit_external"), seq);
                    pos += 1;
                }
                Some(action) if seq == ioc || seq == modify => {
                    assert_eq!(engine.submit(action).expect("submit"), seq);
                    best.push(engine.query(Query::Best(sym("B"))).expect("query"));
                    pos += 1;
                }
                Some(_) => {
                    let end = (pos..stream.len())
                        .find(|&i| stream[i].is_none() || i as Seq + 1 == ioc || i as Seq + 1 == modify)
                        .unwrap_or(stream.len());
                    let actions: Vec<Action> = stream[pos..end].iter().flatten().copied().collect();
                    assert_eq!(engine.submit_batch(&actions).expect("submit_batch"), seq);
                    pos = end;
                }
            }
        }
        let exchanges = engine.shutdown();
        (reader.join().expect("the reader"), common::encode_shards(&exchanges), best)
    });
    assert_eq!(first_difference(&got, &want), None, "{name}");
    assert_eq!(state, want_exchange.encode_state(), "{name}");
    assert_eq!(
        best,
        vec![
            // After the ioc: the book is empty but for the old buy.
            Answer::Best { bid: Some((50, 1)), ask: None },
            // After the modify: its remainder rests at 1,000.
            Answer::Best { bid: Some((1_000, 10)), ask: None },
        ],
        "{name}"
    );
}

#[test]
fn a_sweep_through_a_one_slot_output_ring() {
    sweep(1, WaitStrategy::SpinYield, 1, 1);
}

#[test]
fn a_sweep_and_a_broadcast_sweep_through_tiny_rings_on_two_shards() {
    sweep(2, WaitStrategy::SpinYield, 2, 2);
    sweep(2, WaitStrategy::Park, 1, 4);
}

/// Busy spinning wants a core per thread; this machine may have 2 for 3
/// threads, so progress leans on preemption: one shard, a roomier input.
#[test]
fn a_sweep_with_busy_spinning() {
    sweep(1, WaitStrategy::BusySpin, 4, 64);
}
