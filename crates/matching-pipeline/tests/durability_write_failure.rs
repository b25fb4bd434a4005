//! A journal that cannot write (a full disk): nothing after the last
//! durable `seq` is ever delivered, the failure is reported, the engine
//! still shuts down (even with the journal's ring full), and recovery gives
//! the durable prefix.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Item, first_difference, mixed_stream, oracle, small_exchange, sym, with_timeout};
use matching_core::{Action, Seq, Symbol};
use matching_journal::storage::{CrashMode, SimStorage};
use matching_pipeline::{Clock, Durability, Engine, EngineConfig, EventReader, Output, WaitStrategy, recover_books};

fn symbols() -> Vec<Symbol> {
    ["AAA", "BBB"].iter().map(|name| sym(name)).collect()
}

fn config(storage: &SimStorage, journal_ring: usize, output_ring: usize) -> EngineConfig {
    let mut durability = Durability::new(Arc::new(storage.clone()));
    durability.journal_ring = journal_ring;
    EngineConfig {
        exchange: small_exchange(),
        output_ring,
        wait: WaitStrategy::Park,
        clock: Clock::Zero,
        durability: Some(durability),
        ..EngineConfig::default()
    }
}

/// Drains `reader` with `run` until the engine has shut down or the journal failed.
fn drain(mut reader: EventReader<u32>) -> std::thread::JoinHandle<Vec<Item>> {
    std::thread::spawn(move || {
        let mut items = Vec::new();
        reader.run(|output| {
            items.push(match output {
                Output::Event(event) => Item::Event(*event),
                Output::External(seq, &x) => Item::External(seq, x),
            })
        });
        items
    })
}

fn commands(len: usize) -> Vec<Action> {
    mixed_stream(2 * len, &symbols(), 3).into_iter().flatten().take(len).collect()
}

/// Spins (bounded by the caller's timeout) until `ready`.
fn wait_until(mut ready: impl FnMut() -> bool) {
    while !ready() {
        std::thread::yield_now();
    }
}

/// `before` commands made durable, then every write fails and `after` more
/// are submitted, filling the journal's ring (16) several times over.
#[test]
fn a_failing_journal_releases_nothing_more_and_still_shuts_down() {
    with_timeout("a failing journal", Duration::from_secs(30), || {
        let (before, after) = (200, 300);
        let storage = SimStorage::new();
        let stream = commands(before + after);
        let (engine, reader) = Engine::<u32>::start(config(&storage, 16, 1 << 12)).unwrap();
        let reader = drain(reader);
        engine.submit_batch(&stream[..before]).expect("submit_batch");
        wait_until(|| engine.durable_seq() == Some(before as Seq));
        storage.fail_writes(Some("no space left on device (simulated)"));
        // Blocking submits: a dead journal must not make them wait forever.
        // Once the failure is recorded they return `Err(Stopped::JournalFailed)`.
        for action in &stream[before..] {
            let _ = engine.submit(*action);
        }
        wait_until(|| engine.journal_failure().is_some());
        assert!(engine.journal_failure().unwrap().contains("no space"), "{:?}", engine.journal_failure());
        assert_eq!(engine.durable_seq(), Some(before as Seq), "nothing more became durable");
        engine.shutdown();
        let items = reader.join().unwrap();
        let history: Vec<Option<Action>> = stream.iter().map(|a| Some(*a)).collect();
        let (_, want_items) = oracle(&small_exchange(), &history[..before]);
        assert!(items.iter().all(|item| item.seq() <= before as Seq), "an event of a command that is not durable");
        assert_eq!(first_difference(&items, &want_items[..items.len()]), None);
        storage.fail_writes(None);
        let crashed = storage.crash(CrashMode::LoseUnsynced);
        let (exchanges, report) = recover_books(&config(&crashed, 16, 1 << 12), true).unwrap();
        let (want, _) = oracle(&small_exchange(), &history[..before]);
        assert_eq!(report.last_seq, before as Seq);
        assert_eq!(exchanges[0].state_hash(), want.state_hash());
    });
}

/// When the journal fails, the commands that were durable before it are
/// still delivered: `EventReader::run` stops only once nothing up to the
/// durable `seq` is left (the shards may not have handed it all over yet).
///
/// A regression test: `run` once returned at the first moment nothing was
/// ready once a failure was set, so events of durable commands still in a
/// shard were never delivered, and with nobody reading, a shard blocked on
/// its full output ring then blocked `shutdown` (and a submit): `replay
/// --data` on a full disk hung (see `crates/matching-engine/tests/crash_write_failure.rs`).
/// The shards' output ring is made tiny so that events are still in them.
#[test]
fn a_failing_journal_still_delivers_what_is_durable() {
    with_timeout("a failing journal delivers the durable", Duration::from_secs(30), || {
        let before = 300;
        let storage = SimStorage::new();
        let stream = commands(before + 1);
        let (engine, reader) = Engine::<u32>::start(config(&storage, 1 << 10, 4)).unwrap();
        engine.submit_batch(&stream[..before]).expect("submit_batch");
        wait_until(|| engine.durable_seq() == Some(before as Seq));
        storage.fail_writes(Some("no space left on device (simulated)"));
        engine.submit(stream[before]).expect("submit");
        wait_until(|| engine.journal_failure().is_some());
        // Only now does anyone read: the shard still holds most events.
        let items = drain(reader).join().unwrap();
        let history: Vec<Option<Action>> = stream.iter().map(|a| Some(*a)).collect();
        let (_, want_items) = oracle(&small_exchange(), &history[..before]);
        if let Some(difference) = first_difference(&items, &want_items) {
            // The shard is stuck on its full output ring with nobody reading:
            // shutting down would hang, so the engine is left behind.
            std::mem::forget(engine);
            panic!("{} of {} events of durable commands delivered: {difference}", items.len(), want_items.len());
        }
        engine.shutdown();
    });
}
