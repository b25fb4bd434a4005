//! No wait outlives its peer: when a part of the engine goes away (the
//! reader is dropped, a shard or the journal thread panics, the reader's
//! handler panics) every submit fails fast with the reason, the reader stops
//! waiting, and shutting down or dropping the engine ends. And a start that
//! fails leaves no thread behind.
//!
//! Each test runs under `with_timeout`: a hang is a failure, not a stuck CI.
//! The panics these tests provoke print their messages on stderr; that is
//! expected.

mod common;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{limit, small_exchange, sym, with_timeout};
use matching_core::{Action, Side, Symbol};
use matching_journal::storage::{SimStorage, Storage, StorageFile, StorageHooks, Wrapped};
use matching_pipeline::{Durability, Engine, EngineConfig, StartError, Stopped, WaitStrategy};

const LIMIT: Duration = Duration::from_secs(30);

/// Tests that count the engine's threads must not overlap with tests that start engines.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn symbols() -> Vec<Symbol> {
    ["AAA", "BBB", "CCC", "DDD"].map(sym).to_vec()
}

/// Resting orders over every symbol, never crossing (bids below 100, asks above).
fn orders(count: usize) -> Vec<Action> {
    let symbols = symbols();
    (0..count)
        .map(|i| {
            let side = if i % 2 == 0 { Side::Buy } else { Side::Sell };
            let price = if side == Side::Buy { 90 - (i % 7) as u64 } else { 110 + (i % 7) as u64 };
            limit(1 + (i % 3) as u64, symbols[i % symbols.len()], side, price, 1 + (i % 5) as u64)
        })
        .collect()
}

/// Two shards with tiny rings, so a stalled peer is felt at once.
fn config(wait: WaitStrategy) -> EngineConfig {
    EngineConfig {
        shards: 2,
        exchange: small_exchange(),
        input_ring: 8,
        output_ring: 8,
        external_ring: 2,
        batch_max: 4,
        wait,
        ..EngineConfig::default()
    }
}

/// Submits `actions` one at a time until a submit fails; the error, or
/// `None` if every submit succeeded.
fn submit_until_stopped(engine: &Engine<u32>, actions: &[Action]) -> Option<Stopped> {
    actions.iter().find_map(|action| engine.submit(*action).err())
}

/// Names of this process's threads that belong to an engine.
fn engine_threads() -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let comm = entry.expect("a task").path().join("comm");
        if let Ok(name) = std::fs::read_to_string(comm) {
            let name = name.trim().to_string();
            if name.starts_with("shard-") || name == "journal" {
                names.push(name);
            }
        }
    }
    names
}

#[test]
fn dropping_the_reader_first_stops_the_engine_and_shutdown_still_ends() {
    let _serial = serial();
    for wait in [WaitStrategy::SpinYield, WaitStrategy::Park] {
        with_timeout("reader dropped first", LIMIT, move || {
            let (engine, reader) = Engine::<u32>::start(config(wait)).expect("start");
            // Nobody reads: the output rings fill and the shards wait for room.
            let mut taken = 0;
            let actions = orders(400);
            let started = Instant::now();
            while taken < actions.len() && started.elapsed() < Duration::from_millis(300) {
                taken += engine.try_submit_batch(&actions[taken..]).expect("the engine runs").0;
            }
            assert!(taken < actions.len(), "the rings should have filled with nobody reading");
            drop(reader);
            // The shards notice, drop what nobody will read and go on.
            assert_eq!(engine.submit(actions[taken]), Err(Stopped::ReaderGone));
            assert_eq!(engine.stopped(), Some(Stopped::ReaderGone));
            let exchanges = engine.shutdown();
            assert_eq!(exchanges.len(), 2, "both shards hand their books back");
            // Every command taken was matched: the books hold them all.
            let resting: usize = exchanges.iter().map(|e| e.order_count()).sum();
            assert_eq!(resting, taken);
        });
    }
}

#[test]
fn dropping_the_engine_after_its_reader_ends() {
    let _serial = serial();
    with_timeout("drop after reader", LIMIT, || {
        let (engine, reader) = Engine::<u32>::start(config(WaitStrategy::SpinYield)).expect("start");
        let actions = orders(100);
        let mut taken = 0;
        let started = Instant::now();
        while taken < actions.len() && started.elapsed() < Duration::from_millis(200) {
            taken += engine.try_submit_batch(&actions[taken..]).expect("the engine runs").0;
        }
        drop(reader);
        drop(engine);
    });
    assert!(engine_threads().is_empty(), "threads left: {:?}", engine_threads());
}

#[test]
fn a_shard_that_panics_stops_the_engine() {
    let _serial = serial();
    with_timeout("shard panic", LIMIT, || {
        let (engine, mut reader) = Engine::<u32>::start(config(WaitStrategy::SpinYield)).expect("start");
        let reader = std::thread::spawn(move || {
            let mut delivered = 0u64;
            reader.run(|_| delivered += 1);
            (delivered, reader.stopped())
        });
        let actions = orders(2_000);
        engine.submit_batch(&actions[..100]).expect("the engine runs");
        engine.inject_shard_panic(1).expect("shard 1 is there to panic");
        let stopped = submit_until_stopped(&engine, &actions[100..]);
        assert_eq!(stopped, Some(Stopped::ShardFailed(1)));
        // The reader stops waiting for events that will never come.
        let (delivered, reader_saw) = reader.join().expect("the reader thread");
        assert_eq!(reader_saw, Some(Stopped::ShardFailed(1)));
        assert!(delivered >= 1, "what came before the failure was delivered");
        let exchanges = engine.shutdown();
        assert_eq!(exchanges.len(), 1, "the live shard hands its books back, the dead one has none");
    });
    assert!(engine_threads().is_empty(), "threads left: {:?}", engine_threads());
}

#[test]
fn a_reader_handler_that_panics_stops_the_engine() {
    let _serial = serial();
    with_timeout("handler panic", LIMIT, || {
        let (engine, mut reader) = Engine::<u32>::start(config(WaitStrategy::Park)).expect("start");
        let reader = std::thread::spawn(move || {
            let mut delivered = 0;
            reader.run(|_| {
                delivered += 1;
                assert!(delivered < 10, "the handler gives up");
            });
        });
        let stopped = submit_until_stopped(&engine, &orders(5_000));
        assert_eq!(stopped, Some(Stopped::ReaderGone));
        assert!(reader.join().is_err(), "the handler panicked");
        drop(engine);
    });
    assert!(engine_threads().is_empty(), "threads left: {:?}", engine_threads());
}

/// File writes that panic once `armed` is set (as a bug in the journal
/// thread would), on a `SimStorage`.
struct PanicWhenArmed {
    armed: Arc<AtomicBool>,
}

struct PanickingFile {
    inner: Box<dyn StorageFile>,
    armed: Arc<AtomicBool>,
}

impl StorageFile for PanickingFile {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        assert!(!self.armed.load(Ordering::SeqCst), "fault injection: the journal thread panics");
        self.inner.write_all(bytes)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.inner.sync_data()
    }
}

impl StorageHooks for PanicWhenArmed {
    fn file(&self, file: Box<dyn StorageFile>) -> Box<dyn StorageFile> {
        Box::new(PanickingFile { inner: file, armed: Arc::clone(&self.armed) })
    }
}

/// [`config`], journaling to `storage`.
fn journaled(storage: Arc<dyn Storage>, wait: WaitStrategy) -> EngineConfig {
    EngineConfig { durability: Some(Durability::new(storage)), ..config(wait) }
}

#[test]
fn a_journal_thread_that_panics_stops_the_engine() {
    let _serial = serial();
    with_timeout("journal panic", LIMIT, || {
        let armed = Arc::new(AtomicBool::new(false));
        let storage = Wrapped { inner: SimStorage::new(), hooks: PanicWhenArmed { armed: Arc::clone(&armed) } };
        let mut config = journaled(Arc::new(storage), WaitStrategy::SpinYield);
        if let Some(durability) = &mut config.durability {
            durability.journal_ring = 16;
        }
        let (engine, mut reader) = Engine::<u32>::start(config).expect("start");
        let reader = std::thread::spawn(move || {
            let mut delivered = 0u64;
            reader.run(|_| delivered += 1);
            delivered
        });
        let actions = orders(2_000);
        engine.submit_batch(&actions[..50]).expect("the engine runs");
        while engine.durable_seq() < Some(50) {
            std::thread::sleep(Duration::from_millis(1));
        }
        armed.store(true, Ordering::SeqCst);
        let stopped = submit_until_stopped(&engine, &actions[50..]);
        let Some(Stopped::JournalFailed(reason)) = stopped else { panic!("stopped with {stopped:?}") };
        assert!(reason.contains("panicked"), "{reason}");
        // Everything durable before the panic was delivered, nothing after.
        let delivered = reader.join().expect("the reader thread");
        assert!(delivered >= 50, "the 50 durable commands' events were delivered ({delivered})");
        assert_eq!(engine.durable_seq(), Some(50));
        drop(engine);
    });
    assert!(engine_threads().is_empty(), "threads left: {:?}", engine_threads());
}

#[test]
fn a_start_that_fails_leaves_no_thread_behind() {
    let _serial = serial();
    with_timeout("failed starts", LIMIT, || {
        for _ in 0..3 {
            // Recovery succeeds on an empty directory, then the journal
            // cannot open its first segment.
            let storage = SimStorage::new();
            storage.fail_writes(Some("disk full"));
            let config = journaled(Arc::new(storage), WaitStrategy::SpinYield);
            match Engine::<u32>::start(config) {
                Err(StartError::Recovery(error)) => assert!(error.to_string().contains("disk full"), "{error}"),
                Err(other) => panic!("failed for another reason: {other}"),
                Ok(_) => panic!("started on a storage that cannot write"),
            }
        }
    });
    assert!(engine_threads().is_empty(), "threads left: {:?}", engine_threads());
}

/// A shard that died takes its books with it: a snapshot or a state query
/// then fails, rather than writing or answering a state without them (a
/// snapshot without them would let the journal that holds them be pruned).
#[test]
fn a_dead_shard_makes_snapshots_and_state_queries_fail() {
    let _serial = serial();
    with_timeout("dead shard snapshot", LIMIT, || {
        let storage = SimStorage::new();
        let config = journaled(Arc::new(storage.clone()), WaitStrategy::SpinYield);
        let (engine, mut reader) = Engine::<u32>::start(config).expect("start");
        let reader = std::thread::spawn(move || reader.run(|_| {}));
        engine.submit_batch(&orders(200)).expect("the engine runs");
        engine.snapshot().expect("a snapshot while every shard lives");
        let snapshots = |storage: &SimStorage| storage.list().unwrap().iter().filter(|n| n.ends_with(".snap")).count();
        assert_eq!(snapshots(&storage), 1);
        engine.inject_shard_panic(1).expect("shard 1 is there to panic");
        while engine.stopped().is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(engine.snapshot().is_err(), "a snapshot without shard 1's books");
        assert_eq!(snapshots(&storage), 1, "no snapshot was written");
        assert_eq!(engine.state_hash(), Err(Stopped::ShardFailed(1)));
        reader.join().expect("the reader thread");
        drop(engine);
    });
}

/// A query answers only once what it shows is durable: when the journal
/// cannot write, it fails instead of showing orders a crash would take back.
#[test]
fn a_query_never_shows_what_is_not_durable() {
    let _serial = serial();
    with_timeout("query durability", LIMIT, || {
        let storage = SimStorage::new();
        let config = journaled(Arc::new(storage.clone()), WaitStrategy::SpinYield);
        let (engine, mut reader) = Engine::<u32>::start(config).expect("start");
        let reader = std::thread::spawn(move || reader.run(|_| {}));
        let actions = orders(100);
        engine.submit_batch(&actions[..50]).expect("the engine runs");
        let durable_book = engine.query(matching_pipeline::Query::State).expect("a durable state");
        storage.fail_writes(Some("disk full"));
        let _ = engine.submit_batch(&actions[50..]);
        match engine.query(matching_pipeline::Query::State) {
            Err(Stopped::JournalFailed(reason)) => assert!(reason.contains("disk full"), "{reason}"),
            Ok(answer) => assert_eq!(answer, durable_book, "a state showing orders that are not durable"),
            Err(other) => panic!("{other}"),
        }
        reader.join().expect("the reader thread");
        drop(engine);
    });
}
