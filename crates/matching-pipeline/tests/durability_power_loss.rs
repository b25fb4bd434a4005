//! Power loss, simulated: an engine journals into a `SimStorage` and, while
//! it runs, the storage is "crashed" (`SimStorage::crash`: only what was
//! synced survives, maybe with a torn prefix of the rest or junk after it,
//! or any subset of the unsynced pages, as a disk that writes them out of
//! order leaves them).
//! A new engine started on what survived must
//!
//! (a) hold every command whose events were delivered before the crash
//!     (acknowledged means durable: its `seq` <= the recovered `last_seq`);
//! (b) hold exactly the commands `1..=last_seq`: its state hash equals one
//!     `Exchange` fed those commands (a new order's id = its `seq`);
//! (c) continue the sequence: the next command gets `last_seq + 1`, its
//!     events are the oracle's for the whole history, and a later recovery
//!     gives the whole history.
//!
//! The crash comes at a random point: either from the submitting thread
//! between two batches, or from inside the storage at its N-th operation
//! (before a write, a sync, a rename…), which reaches the moments between
//! a write and its sync. Each case also takes random snapshots, runs with
//! small segments (rotation and pruning), 1 or 2 shards, and group commit
//! or a sync per record.
//!
//! Prints `seed = N`; `PROPTEST_SEED=N` reruns it, `PROPTEST_CASES` sets the
//! number of cases. A failure names the case and its parameters.
//!
//! Also here: the recovered state hash equals `Engine::state_hash` taken
//! before the crash at the same `seq`.

mod common;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Item, Mix, external_payload, first_difference, mixed_stream, oracle, small_exchange, sym, with_timeout};
use matching_core::{Action, Seq, Symbol};
use matching_journal::format::{self, SEGMENT_HEADER_LEN};
use matching_journal::storage::{CrashMode, SimStorage, Storage, StorageFile};
use matching_pipeline::{Clock, Durability, Engine, EngineConfig, EventReader, FsyncPolicy, Output, WaitStrategy};

fn symbols() -> Vec<Symbol> {
    ["AAA", "BBB", "CCC", "DDD"].iter().map(|name| sym(name)).collect()
}

// ----- a storage that crashes itself at its N-th operation -----

/// What a crash left, and what had been acknowledged at that moment.
struct Crashed {
    storage: SimStorage,
    /// The highest `seq` whose events the reader had delivered.
    acknowledged: Seq,
    /// Where it happened, for messages.
    at: String,
}

struct CrashPoint {
    sim: SimStorage,
    mode: CrashMode,
    /// Crash just before this operation (counted from 1); 0: never.
    crash_at: u64,
    ops: AtomicU64,
    delivered: Arc<AtomicU64>,
    crashed: Mutex<Option<Crashed>>,
}

impl CrashPoint {
    /// Counts an operation; at the chosen one, takes the crash first.
    fn tick(&self, what: &str) {
        let op = self.ops.fetch_add(1, Ordering::SeqCst) + 1;
        if op == self.crash_at {
            self.crash(&format!("storage operation {op} ({what})"));
        }
    }

    /// Takes the crash now (once).
    fn crash(&self, at: &str) {
        let mut crashed = self.crashed.lock().unwrap();
        if crashed.is_none() {
            // Whatever was delivered before this load was durable before it.
            let acknowledged = self.delivered.load(Ordering::SeqCst);
            *crashed = Some(Crashed { storage: self.sim.crash(self.mode), acknowledged, at: at.to_string() });
        }
    }
}

/// The storage the engine gets: `SimStorage` with a crash point.
#[derive(Clone)]
struct Crashing(Arc<CrashPoint>);

struct CrashingFile {
    inner: Box<dyn StorageFile>,
    point: Arc<CrashPoint>,
}

impl StorageFile for CrashingFile {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.point.tick("write");
        self.inner.write_all(bytes)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.point.tick("sync_data");
        self.inner.sync_data()
    }
}

impl Storage for Crashing {
    fn list(&self) -> io::Result<Vec<String>> {
        self.0.sim.list()
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        self.0.sim.read(name)
    }

    fn create(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        self.0.tick("create");
        Ok(Box::new(CrashingFile { inner: self.0.sim.create(name)?, point: Arc::clone(&self.0) }))
    }

    fn open_append(&self, name: &str) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(CrashingFile { inner: self.0.sim.open_append(name)?, point: Arc::clone(&self.0) }))
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        self.0.tick("truncate");
        self.0.sim.truncate(name, len)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.0.tick("rename");
        self.0.sim.rename(from, to)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.0.tick("remove");
        self.0.sim.remove(name)
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.0.tick("sync_dir");
        self.0.sim.sync_dir()
    }

    fn describe(&self, name: &str) -> String {
        self.0.sim.describe(name)
    }
}

// ----- engines -----

/// The parameters of one case.
#[derive(Clone, Debug)]
struct Params {
    shards: usize,
    fsync: FsyncPolicy,
    wait: WaitStrategy,
    segment_bytes: u64,
    small_rings: bool,
    commands: usize,
    batch_max: usize,
    /// In 1000ths: the chance of a snapshot after a batch.
    snapshot_per_mille: u64,
    mode: CrashMode,
    /// Crash from inside the storage at this operation (else from the
    /// submitting thread before batch `crash_batch`).
    crash_op: Option<u64>,
    crash_batch: usize,
    continue_commands: usize,
}

impl Params {
    fn draw(mix: &mut Mix) -> Params {
        let commands = 100 + mix.below(900) as usize;
        let fsync = if mix.below(3) == 0 { FsyncPolicy::Always } else { FsyncPolicy::Batch };
        let mode = match mix.below(4) {
            0 => CrashMode::LoseUnsynced,
            1 => CrashMode::KeepPrefix { keep: mix.below(400) as usize },
            2 => CrashMode::RandomPages { page: [512, 4096][mix.below(2) as usize], seed: mix.next() },
            _ => CrashMode::Garbage {
                keep: mix.below(400) as usize,
                garbage: 1 + mix.below(100) as usize,
                seed: mix.next(),
            },
        };
        // About two operations per record with a sync per record, far fewer with group commit.
        let ops_guess = if fsync == FsyncPolicy::Always { 2 * commands } else { commands / 2 };
        Params {
            shards: 1 + mix.below(2) as usize,
            fsync,
            wait: if mix.below(2) == 0 { WaitStrategy::Park } else { WaitStrategy::SpinYield },
            segment_bytes: [4096, 8192, 1 << 20][mix.below(3) as usize],
            small_rings: mix.below(2) == 0,
            commands,
            batch_max: 1 + mix.below(64) as usize,
            snapshot_per_mille: [0, 20, 100][mix.below(3) as usize],
            mode,
            crash_op: (mix.below(3) != 0).then(|| 1 + mix.below(ops_guess as u64 + 8)),
            crash_batch: mix.below(commands as u64 + 1) as usize,
            continue_commands: 20 + mix.below(300) as usize,
        }
    }
}

fn config(params: &Params, storage: Arc<dyn Storage>) -> EngineConfig {
    let mut durability = Durability::new(storage);
    durability.fsync = params.fsync;
    durability.segment_bytes = params.segment_bytes;
    let mut config = EngineConfig {
        shards: params.shards,
        exchange: small_exchange(),
        wait: params.wait,
        clock: Clock::Zero,
        durability: Some(durability),
        ..EngineConfig::default()
    };
    if params.small_rings {
        config.input_ring = 16;
        config.output_ring = 32;
        config.external_ring = 4;
        config.batch_max = 8;
        config.route_window = 64;
        if let Some(durability) = &mut config.durability {
            durability.journal_ring = 16;
            durability.group_bytes_max = 512;
        }
    }
    config
}

/// Drains `reader` on a thread, publishing the highest delivered `seq`.
fn drain(mut reader: EventReader<u32>, delivered: Arc<AtomicU64>) -> JoinHandle<Vec<Item>> {
    std::thread::Builder::new()
        .name("power-loss-reader".into())
        .spawn(move || {
            let mut items = Vec::new();
            reader.run(|output| {
                let item = match output {
                    Output::Event(event) => Item::Event(*event),
                    Output::External(seq, &x) => Item::External(seq, x),
                };
                delivered.fetch_max(item.seq(), Ordering::SeqCst);
                items.push(item);
            });
            if let Some(failure) = reader.journal_failure() {
                panic!("the journal failed: {failure}");
            }
            items
        })
        .expect("spawn the reader")
}

/// Submits `stream` (its first element gets `first_seq`) in batches of up
/// to `batch_max`, an external item alone; calls `between(batch index)`
/// before each batch.
fn submit(
    engine: &Engine<u32>,
    stream: &[Option<Action>],
    first_seq: Seq,
    batch_max: usize,
    mut between: impl FnMut(usize, &Engine<u32>),
) {
    let mut at = 0;
    let mut batch = 0;
    while at < stream.len() {
        between(batch, engine);
        batch += 1;
        let seq = first_seq + at as Seq;
        match stream[at] {
            None => {
                assert_eq!(engine.submit_external(external_payload(seq)).expect("submit_external"), seq);
                at += 1;
            }
            Some(_) => {
                let len = stream[at..].iter().take(batch_max).take_while(|a| a.is_some()).count();
                let actions: Vec<Action> = stream[at..at + len].iter().map(|a| a.unwrap()).collect();
                assert_eq!(
                    engine.submit_batch(&actions).expect("submit_batch"),
                    seq,
                    "the sequencer gave a different seq"
                );
                at += len;
            }
        }
    }
}

/// What one case saw.
struct Outcome {
    torn_tail: bool,
    from_snapshot: bool,
    crash_in_storage: bool,
    acknowledged: u64,
    /// Commands recovered beyond the acknowledged ones (durable, not yet released).
    beyond_acknowledged: u64,
    /// Commands submitted and lost (never acknowledged).
    unacknowledged_lost: u64,
}

/// What the cases saw, over all of them.
#[derive(Debug, Default)]
struct Summary {
    cases: u64,
    torn_tails: u64,
    from_snapshot: u64,
    crashes_in_storage: u64,
    acknowledged_some: u64,
    recovered_beyond_acknowledged: u64,
    lost_unacknowledged: u64,
}

impl Summary {
    fn add(&mut self, outcome: &Outcome) {
        self.cases += 1;
        self.torn_tails += outcome.torn_tail as u64;
        self.from_snapshot += outcome.from_snapshot as u64;
        self.crashes_in_storage += outcome.crash_in_storage as u64;
        self.acknowledged_some += (outcome.acknowledged > 0) as u64;
        self.recovered_beyond_acknowledged += (outcome.beyond_acknowledged > 0) as u64;
        self.lost_unacknowledged += (outcome.unacknowledged_lost > 0) as u64;
    }
}

/// One case: run, crash, recover, check (a), (b), (c). `Err` describes a failure.
fn power_loss_case(case_seed: u64) -> Result<Outcome, String> {
    let mut mix = Mix(case_seed);
    let params = Params::draw(&mut mix);
    let stream = mixed_stream(params.commands, &symbols(), mix.next());
    let delivered = Arc::new(AtomicU64::new(0));
    let point = Arc::new(CrashPoint {
        sim: SimStorage::new(),
        mode: params.mode,
        crash_at: params.crash_op.unwrap_or(0),
        ops: AtomicU64::new(0),
        delivered: Arc::clone(&delivered),
        crashed: Mutex::new(None),
    });

    // The engine that loses power.
    let (engine, reader) = Engine::<u32>::start(config(&params, Arc::new(Crashing(Arc::clone(&point)))))
        .map_err(|e| format!("the first engine did not start: {e}"))?;
    let reader = drain(reader, Arc::clone(&delivered));
    let mut snapshots = Vec::new();
    submit(&engine, &stream, 1, params.batch_max, |batch, engine| {
        if params.crash_op.is_none() && batch == params.crash_batch {
            point.crash(&format!("before batch {batch}"));
        }
        if mix.below(1000) < params.snapshot_per_mille {
            snapshots.push(engine.snapshot().expect("a snapshot"));
        }
    });
    // A crash that has not come yet comes now, with everything submitted
    // (but the engine still running).
    point.crash("after the last batch");
    let (want_all, want_items) = oracle(&small_exchange(), &stream);
    let hash_all = engine.state_hash().expect("state_hash");
    engine.shutdown();
    let items = reader.join().map_err(|_| "the first reader panicked".to_string())?;
    // The engine, journaling, delivers exactly what one exchange would.
    if let Some(difference) = first_difference(&items, &want_items) {
        return Err(format!("the first engine's events: {difference}"));
    }
    if hash_all != want_all.state_hash() {
        return Err("the first engine's state hash differs from the oracle's".into());
    }
    let Crashed { storage, acknowledged, at } = point.crashed.lock().unwrap().take().expect("the crash was taken");
    let describe = format!("{params:?}, crash {at}, acknowledged {acknowledged}, snapshots {snapshots:?}");

    // The engine after the power cut.
    let storage = Arc::new(storage);
    let (engine, reader) = Engine::<u32>::start(config(&params, storage.clone()))
        .map_err(|e| format!("{describe}: recovery refused: {e}"))?;
    let first_report = engine.recovery().expect("a journaling engine reports its recovery").clone();
    let last_seq = first_report.last_seq;
    let describe = format!(
        "{describe}, recovered last_seq {last_seq}, snapshot {:?}, torn tail {:?}",
        first_report.snapshot, first_report.torn_tail
    );
    // (a) Nothing acknowledged was lost.
    if last_seq < acknowledged {
        return Err(format!("{describe}: LOST acknowledged commands {}..={acknowledged}", last_seq + 1));
    }
    if last_seq > stream.len() as Seq {
        return Err(format!("{describe}: recovered more than was submitted"));
    }
    if engine.next_seq() != last_seq + 1 {
        return Err(format!("{describe}: the next seq is {}", engine.next_seq()));
    }
    // (b) Exactly the commands 1..=last_seq.
    let (want, _) = oracle(&small_exchange(), &stream[..last_seq as usize]);
    let delivered_again = Arc::new(AtomicU64::new(0));
    let reader = drain(reader, Arc::clone(&delivered_again));
    if engine.state_hash().expect("state_hash") != want.state_hash() {
        return Err(format!("{describe}: the recovered state differs from the oracle's for 1..={last_seq}"));
    }
    // (c) It continues the sequence.
    let more = mixed_stream(params.continue_commands, &symbols(), mix.next());
    submit(&engine, &more, last_seq + 1, params.batch_max, |_, _| {});
    let mut history = stream[..last_seq as usize].to_vec();
    history.extend_from_slice(&more);
    let (want, want_items) = oracle(&small_exchange(), &history);
    let hash = engine.state_hash().expect("state_hash");
    engine.shutdown();
    let items = reader.join().map_err(|_| "the second reader panicked".to_string())?;
    let want_new: Vec<Item> = want_items.into_iter().filter(|item| item.seq() > last_seq).collect();
    if let Some(difference) = first_difference(&items, &want_new) {
        return Err(format!("{describe}: after recovery, the events: {difference}"));
    }
    if hash != want.state_hash() {
        return Err(format!("{describe}: after continuing, the state differs from the oracle's"));
    }
    // And what it journaled is recovered.
    let (exchanges, report) = matching_pipeline::recover_books(&config(&params, storage), true)
        .map_err(|e| format!("{describe}: the second recovery refused: {e}"))?;
    let mut parts: Vec<_> = exchanges.iter().flat_map(|e| e.book_states()).collect();
    if report.last_seq != history.len() as Seq || matching_core::hash_books(&mut parts) != want.state_hash() {
        return Err(format!("{describe}: the second recovery gave last_seq {} or another state", report.last_seq));
    }
    let _ = describe;
    Ok(Outcome {
        torn_tail: first_report.torn_tail.is_some(),
        from_snapshot: first_report.snapshot.is_some(),
        crash_in_storage: at.starts_with("storage"),
        acknowledged,
        beyond_acknowledged: last_seq - acknowledged,
        unacknowledged_lost: stream.len() as Seq - last_seq,
    })
}

#[test]
fn power_loss_loses_nothing_acknowledged_and_recovers_a_prefix() {
    let seed = common::seed();
    let cases = common::cases(400);
    eprintln!("power_loss: seed = {seed} (rerun with PROPTEST_SEED={seed}), {cases} cases");
    let started = Instant::now();
    let mut mix = Mix(seed);
    let mut summary = Summary::default();
    for case in 0..cases {
        let case_seed = mix.next();
        let outcome =
            with_timeout(&format!("case {case}"), Duration::from_secs(60), move || power_loss_case(case_seed));
        match outcome {
            Ok(outcome) => summary.add(&outcome),
            Err(failure) => panic!(
                "power_loss: case {case} (case seed {case_seed}) FAILED (seed = {seed}, rerun with PROPTEST_SEED={seed}):\n{failure}"
            ),
        }
    }
    eprintln!("power_loss: {cases} cases in {:.1} s: {summary:?}", started.elapsed().as_secs_f64());
}

// ----- the state hash before the crash is the state hash after -----

/// Cuts the journal of `storage` right after record `seq`: later segments
/// removed, the one holding `seq` truncated after it.
fn cut_after(storage: &SimStorage, seq: Seq) {
    for name in storage.list().unwrap() {
        let Some(first_seq) = name.strip_prefix("journal-").and_then(|n| n.strip_suffix(".log")) else { continue };
        let first_seq: Seq = first_seq.parse().unwrap();
        if first_seq > seq {
            storage.remove(&name).unwrap();
            continue;
        }
        let bytes = storage.read(&name).unwrap();
        let mut offset = SEGMENT_HEADER_LEN;
        while offset < bytes.len() {
            let record = format::parse_record(&bytes[offset..]).unwrap();
            if record.seq > seq {
                break;
            }
            offset += record.len;
        }
        storage.truncate(&name, offset as u64).unwrap();
    }
    // The directory as it was then: its manifest named the newest segment
    // that is left (a later one did not exist yet).
    if let Some(mut manifest) = matching_journal::read_manifest(storage).unwrap() {
        manifest.newest_segment = storage
            .list()
            .unwrap()
            .iter()
            .filter_map(|n| n.strip_prefix("journal-").and_then(|n| n.strip_suffix(".log"))?.parse::<Seq>().ok())
            .max();
        matching_journal::write_manifest(storage, &manifest).unwrap();
    }
    storage.sync_dir().unwrap();
}

/// `Engine::state_hash` taken at several points while commands stream in
/// equals the state hash recovered from the journal cut right after that
/// point, and the final one equals the one recovered from everything (with
/// snapshots and pruning in the way).
#[test]
fn the_recovered_state_hash_is_the_hash_before_the_crash() {
    let seed = common::seed();
    eprintln!("state hash: seed = {seed} (rerun with PROPTEST_SEED={seed})");
    with_timeout("state hash", Duration::from_secs(120), move || {
        let mut mix = Mix(seed);
        for shards in [1, 2] {
            for snapshots in [false, true] {
                let sim = SimStorage::new();
                let params = Params {
                    shards,
                    fsync: FsyncPolicy::Batch,
                    wait: WaitStrategy::Park,
                    segment_bytes: 4096,
                    small_rings: false,
                    ..Params::draw(&mut mix)
                };
                let (engine, reader) = Engine::<u32>::start(config(&params, Arc::new(sim.clone()))).unwrap();
                let reader = drain(reader, Arc::new(AtomicU64::new(0)));
                let stream = mixed_stream(1_500, &symbols(), mix.next());
                let mut hashes: Vec<(Seq, u64)> = Vec::new();
                submit(&engine, &stream, 1, 1 + mix.below(40) as usize, |_, engine| {
                    if mix.below(10) == 0 {
                        hashes.push((engine.next_seq() - 1, engine.state_hash().expect("state_hash")));
                    }
                    if snapshots && mix.below(20) == 0 {
                        engine.snapshot().unwrap();
                    }
                });
                hashes.push((engine.next_seq() - 1, engine.state_hash().expect("state_hash")));
                engine.shutdown();
                reader.join().unwrap();
                let context = format!("seed {seed}, {shards} shards, snapshots {snapshots}");
                assert!(hashes.len() > 5, "{context}: a few points");
                let (last_seq, last_hash) = *hashes.last().unwrap();
                // With everything: snapshots, pruned segments, the journal after them.
                let (engine, reader) = Engine::<u32>::start(config(&params, Arc::new(sim.clone()))).unwrap();
                let reader = drain(reader, Arc::new(AtomicU64::new(0)));
                assert_eq!(engine.recovery().unwrap().last_seq, last_seq, "{context}");
                assert_eq!(engine.state_hash().expect("state_hash"), last_hash, "{context}: recovered from everything");
                engine.shutdown();
                reader.join().unwrap();
                if snapshots {
                    assert!(
                        sim.list().unwrap().iter().any(|n| n.starts_with("snapshot-")),
                        "{context}: snapshots taken"
                    );
                    continue;
                }
                // Cut after each point.
                for &(seq, hash) in &hashes {
                    let storage = sim.crash(CrashMode::LoseUnsynced);
                    cut_after(&storage, seq);
                    let (exchanges, report) =
                        matching_pipeline::recover_books(&config(&params, Arc::new(storage)), true).unwrap();
                    let mut parts: Vec<_> = exchanges.iter().flat_map(|e| e.book_states()).collect();
                    assert_eq!(report.last_seq, seq, "{context}: cut after {seq}");
                    assert_eq!(report.torn_tail, None, "{context}: a clean cut is not a torn tail");
                    assert_eq!(matching_core::hash_books(&mut parts), hash, "{context}: the hash at seq {seq}");
                }
            }
        }
    });
}
