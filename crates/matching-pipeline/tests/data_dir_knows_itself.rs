//! A data directory knows its layout and its newest segment (its
//! `MANIFEST`): a run with another layout is refused, naming the setting,
//! and a journal whose newest segment (or every segment) is gone is refused
//! as missing acknowledged commands, not read as a shorter journal.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{drain, mixed_stream, small_exchange, sym, with_timeout};
use matching_core::{Config, Symbol};
use matching_journal::storage::{CrashMode, SimStorage, Storage};
use matching_pipeline::{
    Clock, Durability, Engine, EngineConfig, RecoveryError, StartError, WaitStrategy, recover_books,
};

fn symbols() -> Vec<Symbol> {
    ["AAA", "BBB", "CCC"].iter().map(|name| sym(name)).collect()
}

fn config(storage: &SimStorage, shards: usize, exchange: Config) -> EngineConfig {
    let mut durability = Durability::new(Arc::new(storage.clone()));
    durability.segment_bytes = 4096;
    EngineConfig {
        shards,
        exchange,
        wait: WaitStrategy::Park,
        clock: Clock::Zero,
        durability: Some(durability),
        ..EngineConfig::default()
    }
}

/// A directory holding a stream, in several segments.
fn written(shards: usize, exchange: Config) -> SimStorage {
    let storage = SimStorage::new();
    let (engine, reader) = Engine::<u32>::start(config(&storage, shards, exchange)).expect("start");
    let reader = drain(reader);
    for (i, action) in mixed_stream(600, &symbols(), 5).into_iter().flatten().enumerate() {
        let seq = engine.submit(action).expect("submit");
        // Now and then wait for the journal, so it writes in many groups
        // (a segment only ends between groups).
        if i % 40 == 39 {
            while engine.durable_seq() < Some(seq) {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    }
    engine.shutdown();
    reader.join().expect("the reader");
    storage.crash(CrashMode::LoseUnsynced)
}

fn segments(storage: &SimStorage) -> Vec<String> {
    storage.list().unwrap().into_iter().filter(|name| name.starts_with("journal-")).collect()
}

#[test]
fn a_run_with_another_layout_is_refused_by_name() {
    with_timeout("layout", Duration::from_secs(60), || {
        let limited = Config { orders_max: 50, ..small_exchange() };
        let storage = written(2, limited.clone());
        let refused = |config: EngineConfig, name: &str| match Engine::<u32>::start(config) {
            Err(StartError::Config(reason)) => assert!(reason.contains(name), "{reason}"),
            Err(other) => panic!("refused for another reason: {other}"),
            Ok(_) => panic!("started with another {name}"),
        };
        refused(config(&storage, 2, Config { orders_max: 100, ..limited.clone() }), "orders_max");
        refused(config(&storage, 2, Config { symbols_max: 3, ..limited.clone() }), "symbols_max");
        refused(config(&storage, 3, limited.clone()), "shards");
        refused(EngineConfig { route_window: 1 << 10, ..config(&storage, 2, limited.clone()) }, "route_window");
        let listed = Config { instruments: Some(symbols()), ..limited.clone() };
        refused(config(&storage, 2, listed), "instruments");
        // recover_books is held to the same layout.
        assert!(matches!(recover_books(&config(&storage, 1, limited.clone()), false), Err(StartError::Config(_))));
        // The same layout starts.
        let (engine, reader) = Engine::<u32>::start(config(&storage, 2, limited)).expect("the same layout");
        drop(reader);
        drop(engine);
    });
}

#[test]
fn a_missing_newest_segment_is_refused() {
    with_timeout("newest segment", Duration::from_secs(60), || {
        let storage = written(1, small_exchange());
        let names = segments(&storage);
        assert!(names.len() >= 3, "the stream spans several segments: {names:?}");
        storage.remove(names.last().unwrap()).unwrap();
        match recover_books(&config(&storage, 1, small_exchange()), false) {
            Err(StartError::Recovery(RecoveryError::Gap { reason })) => {
                assert!(reason.contains("acknowledged commands are missing"), "{reason}")
            }
            other => panic!("recovered without its newest segment: {:?}", other.map(|(_, report)| report.last_seq)),
        }
    });
}

#[test]
fn a_journal_with_every_segment_gone_is_refused() {
    with_timeout("every segment", Duration::from_secs(60), || {
        let storage = written(1, small_exchange());
        for name in segments(&storage) {
            storage.remove(&name).unwrap();
        }
        assert!(matches!(
            recover_books(&config(&storage, 1, small_exchange()), false),
            Err(StartError::Recovery(RecoveryError::Gap { .. }))
        ));
        assert!(Engine::<u32>::start(config(&storage, 1, small_exchange())).is_err());
    });
}

#[test]
fn a_damaged_manifest_is_refused() {
    with_timeout("damaged manifest", Duration::from_secs(60), || {
        let storage = written(1, small_exchange());
        let mut bytes = storage.read(matching_journal::MANIFEST_FILE).unwrap();
        bytes[20] ^= 1;
        storage.set_contents(matching_journal::MANIFEST_FILE, bytes);
        assert!(matches!(
            recover_books(&config(&storage, 1, small_exchange()), false),
            Err(StartError::Recovery(RecoveryError::Corruption { .. }))
        ));
    });
}
