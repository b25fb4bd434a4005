//! The live engine and the engine recovered from its journal are the same
//! engine: for routing windows of any size (the window is rounded up to a
//! power of two, and recovery must rebuild exactly what routing relies on),
//! a stream cut by restarts gives the events and the state of one
//! uninterrupted exchange, and `recover_books` gives that state too.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    Item, drain, external_payload, first_difference, mixed_stream, oracle, small_exchange, sym, with_timeout,
};
use matching_core::{Action, Symbol, hash_books};
use matching_journal::storage::SimStorage;
use matching_pipeline::{Clock, Durability, Engine, EngineConfig, WaitStrategy, recover_books};

fn symbols() -> Vec<Symbol> {
    ["AAA", "BBB", "CCC", "DDD"].iter().map(|name| sym(name)).collect()
}

fn config(storage: &SimStorage, shards: usize, route_window: usize) -> EngineConfig {
    EngineConfig {
        shards,
        exchange: small_exchange(),
        route_window,
        wait: WaitStrategy::Park,
        clock: Clock::Zero,
        durability: Some(Durability::new(Arc::new(storage.clone()))),
        ..EngineConfig::default()
    }
}

/// Runs `stream` through engines on one data directory, restarting after
/// each of `cuts` (positions in the stream); returns every item delivered
/// and the last engine's state hash.
fn run_with_restarts(
    stream: &[Option<Action>],
    cuts: &[usize],
    shards: usize,
    window: usize,
) -> (Vec<Item>, u64, SimStorage) {
    let storage = SimStorage::new();
    let mut items = Vec::new();
    let mut from = 0;
    let mut hash = 0;
    for &to in cuts.iter().chain(std::iter::once(&stream.len())) {
        let (engine, reader) = Engine::<u32>::start(config(&storage, shards, window)).expect("start");
        let reader = drain(reader);
        for action in &stream[from..to] {
            let seq = engine.next_seq();
            match action {
                Some(action) => assert_eq!(engine.submit(*action).expect("submit"), seq),
                None => assert_eq!(engine.submit_external(external_payload(seq)).expect("submit_external"), seq),
            }
        }
        hash = engine.state_hash().expect("state_hash");
        engine.shutdown();
        items.extend(reader.join().expect("the reader"));
        from = to;
    }
    (items, hash, storage)
}

#[test]
fn odd_route_windows_route_the_same_live_and_recovered() {
    for window in [1, 33, 64, 100, 200, 1000] {
        for shards in [2, 3] {
            with_timeout("odd windows", Duration::from_secs(60), move || {
                let stream = mixed_stream(2_000, &symbols(), 17 + window as u64);
                let (got, hash, storage) = run_with_restarts(&stream, &[500, 1_200, 1_300], shards, window);
                let (exchange, want) = oracle(&small_exchange(), &stream);
                assert_eq!(first_difference(&got, &want), None, "window {window}, {shards} shards");
                assert_eq!(hash, exchange.state_hash(), "window {window}, {shards} shards: live state");
                let (recovered, _) = recover_books(&config(&storage, shards, window), false).expect("recover");
                let mut parts: Vec<_> = recovered.iter().flat_map(|e| e.book_states()).collect();
                assert_eq!(hash_books(&mut parts), hash, "window {window}, {shards} shards: recovered state");
            });
        }
    }
}

/// The reproduction: a window of 100 routes by a 128-seq ring. An order on
/// shard 1, cancelled after a restart when it is between 100 and 127 seqs
/// old, must be cancelled, as it is without the restart.
#[test]
fn an_order_older_than_the_window_but_within_its_ring_survives_a_restart() {
    with_timeout("window 100", Duration::from_secs(60), || {
        let (shards, window) = (2, 100);
        let probe = Engine::<u32>::start(EngineConfig { shards, ..EngineConfig::default() }).expect("start").0;
        let on_shard_1 = ["AAA", "BBB", "CCC", "DDD", "EEE"].iter().map(|n| sym(n)).find(|s| probe.shard_of(s) == 1);
        let on_shard_0 = ["AAA", "BBB", "CCC", "DDD", "EEE"].iter().map(|n| sym(n)).find(|s| probe.shard_of(s) == 0);
        drop(probe);
        let (far, near) = (on_shard_1.expect("a symbol on shard 1"), on_shard_0.expect("a symbol on shard 0"));
        for age in [99usize, 100, 101, 110, 127, 128, 129] {
            let mut stream = vec![Some(common::limit(7, far, matching_core::Side::Buy, 100, 5))];
            stream.extend((1..age).map(|i| Some(common::limit(8, near, matching_core::Side::Sell, 200 + i as u64, 1))));
            let cut = stream.len();
            stream.push(Some(Action::Cancel { user: 7, order_id: 1 }));
            let (got, hash, _) = run_with_restarts(&stream, &[cut], shards, window);
            let (exchange, want) = oracle(&small_exchange(), &stream);
            assert_eq!(first_difference(&got, &want), None, "cancel of an order {age} seqs old after a restart");
            assert_eq!(hash, exchange.state_hash());
        }
    });
}
