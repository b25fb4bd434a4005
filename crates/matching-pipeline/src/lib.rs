//! The engine across cores: a sequencer, symbol shards on their own
//! threads, bounded lock-free rings between them, and a merger.
//!
//! ```text
//!   submit / submit_batch ──► Sequencer ──► ring ──► shard 0 (its books) ──► ring ──┐
//!   (any thread, in turn)    seq, time,  ──► ring ──► shard 1 (its books) ──► ring ──┼─► EventReader
//!                            route       ──────────── external items ────────► ring ──┘   (global seq order)
//! ```
//!
//! - **Sequencer** ([`Engine::submit`], [`Engine::submit_batch`]): gives
//!   every command the next `seq` (a new order's id is its `seq`), stamps
//!   the time, and routes it: a new order to the shard of its symbol (a
//!   stable hash, or a table in the config), a cancel or modify to the shard
//!   that holds the order (a window of one byte per recent `seq`; orders
//!   older than the window are broadcast). A batch is published to each
//!   shard's ring at once. Submitters take turns on one lock: the sequencer
//!   is the single point of order by design.
//! - **Shards**: one thread each, owning an [`Exchange`] with the books of
//!   its symbols; no locks on the matching path. They drain their ring in
//!   batches and write events to their own output ring in batches.
//! - **[`EventReader`]**: merges the shards' streams back into global `seq`
//!   order; within a symbol the order is exactly the core's.
//! - **Queries** ([`Engine::query`]) travel through the same rings, so an
//!   answer reflects every command submitted before it.
//!
//! Every ring is bounded (sizes in [`EngineConfig`]); a full ring makes its
//! producer wait ([`WaitStrategy`]), never grow, never drop. The engine
//! shuts down cleanly ([`Engine::shutdown`], or on drop): every command
//! submitted is processed, every thread joined.
//!
//! No wait outlives its peer. Every "wait for room or data" asks whether the
//! thread at the other end of the ring is still there; a part that stops for
//! good (the reader dropped, a shard or the journal failed) is recorded as
//! the reason the engine [`Stopped`], every submit fails fast with it from
//! then on, and shutting down (or dropping the engine) still ends: a shard
//! whose reader is gone drops its events, a shard whose input is gone exits.

#![deny(unsafe_code)]

mod durable;
mod health;
mod merger;
mod message;
mod recent;
mod routing;
mod sequencer;
mod shard;
mod stats;
mod wait;

use std::fmt;
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use matching_core::{
    Action, BookState, Cid, Config, DiscardEvents, Event, EventKind, Exchange, NewOrder, RestingOrder, STATE_VERSION,
    Seq, Side, Symbol, UserId, encode_books, hash_books, hash_encoded_state, state_version,
};
use matching_journal::{JournalWriter, Layout, Manifest, Record};
use rtrb::RingBuffer;

pub use durable::{Durability, FsyncPolicy};
pub use health::Stopped;
pub use matching_journal::Note;
pub use matching_journal::{RecoveryError, RecoveryReport, TornTail};
pub use merger::{EventReader, Mark, Output};
pub use message::{Answer, DepthLevel, Query};
pub use recent::Recent;
pub use sequencer::Clock;
pub use stats::{Counter, Histogram, HistogramSnapshot, JournalStats, LATENCY_NS_BOUNDS, Monitor};
pub use wait::WaitStrategy;

use durable::{JournalEntry, JournalStatus, JournalThread};
use health::{Health, PanicGuard};
use message::ShardInput;
use routing::{IdRoutes, SymbolRouter};
use sequencer::Sequencer;
use shard::{OutputSink, Worker};
use wait::Signal;

/// Most shards an engine runs.
pub const SHARDS_MAX: usize = 64;

/// How the engine is laid out. Every queue's bound is here.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Worker threads, each owning the books of its symbols (1..=64).
    pub shards: usize,
    /// Limits and preallocation of each shard's books. The limits apply per
    /// shard (`orders_max` resting orders in each).
    pub exchange: Config,
    /// Commands each shard's input ring holds.
    pub input_ring: usize,
    /// Events each shard's output ring holds.
    pub output_ring: usize,
    /// External items (see [`Engine::submit_external`]) the merger's ring holds.
    pub external_ring: usize,
    /// Most commands published in one go (a larger batch is split).
    pub batch_max: usize,
    /// Recent `seq`s whose order's shard is remembered (one byte each),
    /// rounded up to a power of two (at least 64). A cancel or modify of an
    /// older order is broadcast to every shard.
    pub route_window: usize,
    /// Symbols placed on a given shard; any other goes by hash.
    pub symbol_shards: Vec<(Symbol, usize)>,
    pub wait: WaitStrategy,
    /// Pin shard `i` to CPU core `(i + 1) % cores`, leaving core 0 to the
    /// submitting and reading threads.
    pub pin_cores: bool,
    pub clock: Clock,
    /// Journal every command (and recover on start) when set.
    pub durability: Option<Durability>,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            shards: 1,
            exchange: Config::default(),
            input_ring: 1 << 14,
            output_ring: 1 << 15,
            external_ring: 1 << 12,
            batch_max: 1 << 12,
            route_window: 1 << 22,
            symbol_shards: Vec::new(),
            wait: WaitStrategy::default(),
            pin_cores: false,
            clock: Clock::default(),
            durability: None,
        }
    }
}

/// Why the engine did not start.
#[derive(Debug)]
pub enum StartError {
    /// A configuration the engine cannot run.
    Config(String),
    /// The data directory cannot be recovered (corruption, a gap, I/O).
    Recovery(RecoveryError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(reason) => write!(f, "invalid engine configuration: {reason}"),
            StartError::Recovery(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for StartError {}

impl EngineConfig {
    /// What of this configuration decides the outcome of commands: what the
    /// data directory's manifest records and every later run must match.
    pub fn layout(&self) -> Layout {
        Layout {
            shards: self.shards,
            orders_max: self.exchange.orders_max,
            symbols_max: self.exchange.symbols_max,
            route_window: routing::rounded_window(self.route_window),
            symbol_shards: self.symbol_shards.clone(),
            instruments: self.exchange.instruments.clone(),
        }
        .normalized()
    }
}

/// Refuses a configuration that differs from the layout the data directory
/// was made with, naming the setting.
fn check_layout(config: &EngineConfig, manifest: Option<&Manifest>) -> Result<(), StartError> {
    let Some(stored) = manifest else { return Ok(()) };
    match config.layout().difference(&stored.layout) {
        None => Ok(()),
        Some((name, asked, stored)) => Err(StartError::Config(format!(
            "the data directory was made with {name} {stored}, not {asked}: a layout is part of the state and \
             cannot change under it"
        ))),
    }
}

/// An event of a journal record replayed on recovery, with what the record
/// knew and the event does not say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveredEvent {
    pub event: Event,
    /// The user of the command that caused it (none for halt and resume: 0).
    pub user: UserId,
    /// A new order's client order id, as journaled with it.
    pub cid: Option<Cid>,
}

/// The last events of the journal's records applied after the snapshot,
/// in the engine's merged order (a mass cancel over several shards lists
/// its cancels by order id, then one total).
pub type RecoveredEvents = Recent<RecoveredEvent>;

/// Rebuilds the books an engine with `config` would start with from its data
/// directory, without starting it (for `recover` and `journal verify`):
/// one [`Exchange`] per shard, and what recovery found. With `repair` false
/// nothing on disk changes.
pub fn recover_books(config: &EngineConfig, repair: bool) -> Result<(Vec<Exchange>, RecoveryReport), StartError> {
    recover_books_with_events(config, repair).map(|(exchanges, report, _)| (exchanges, report))
}

/// As [`recover_books`], with the last [`Durability::recovery_events`]
/// events of the records replayed.
pub fn recover_books_with_events(
    config: &EngineConfig,
    repair: bool,
) -> Result<(Vec<Exchange>, RecoveryReport, RecoveredEvents), StartError> {
    let Some(durability) = &config.durability else {
        return Err(StartError::Config("no data directory configured".to_string()));
    };
    if config.shards == 0 || config.shards > SHARDS_MAX {
        return Err(StartError::Config(format!("shards must be in 1..={SHARDS_MAX}, not {}", config.shards)));
    }
    let router = SymbolRouter::new(config.shards, &config.symbol_shards);
    // The layout is checked first: books built under another layout would be wrong.
    let manifest = matching_journal::read_manifest(durability.storage.as_ref()).map_err(StartError::Recovery)?;
    check_layout(config, manifest.as_ref())?;
    recover_shards(config, durability, &router, repair).map_err(StartError::Recovery)
}

/// Rebuilds each shard's books from the data directory: the newest snapshot
/// that loads, split by symbol over the shards, then the journal through the
/// same single-threaded code the shards run.
fn recover_shards(
    config: &EngineConfig,
    durability: &Durability,
    router: &SymbolRouter,
    repair: bool,
) -> Result<(Vec<Exchange>, RecoveryReport, RecoveredEvents), RecoveryError> {
    let shard_config = |index: usize| {
        let mut exchange_config = config.exchange.clone();
        if let Some(listed) = &mut exchange_config.instruments {
            listed.retain(|symbol| router.shard_of(symbol) as usize == index);
        }
        exchange_config
    };
    let fresh = || (0..config.shards).map(|i| Exchange::new(shard_config(i))).collect::<Vec<_>>();
    // Both callbacks work on the shards' books, one after the other.
    let exchanges = std::cell::RefCell::new(fresh());
    let tail = std::cell::RefCell::new(RecoveredEvents::new(durability.recovery_events, 0));
    let report = matching_journal::recover(
        durability.storage.as_ref(),
        repair,
        |seq, state_hash, body| {
            let mut loaded = Vec::with_capacity(config.shards);
            for index in 0..config.shards {
                let exchange =
                    Exchange::decode_state_where(shard_config(index), body, |s| router.shard_of(s) as usize == index)
                        .map_err(|e| e.to_string())?;
                loaded.push(exchange);
            }
            // A snapshot of the current version must decode to exactly its
            // state; one of an older version (no trading status) must at
            // least be the bytes that were hashed, and decode.
            let hash = match state_version(body) {
                Some(STATE_VERSION) => {
                    let mut parts: Vec<BookState> = loaded.iter().flat_map(|e| e.book_states()).collect();
                    hash_books(&mut parts)
                }
                _ => hash_encoded_state(body),
            };
            if hash != state_hash {
                *exchanges.borrow_mut() = fresh();
                return Err("the state does not hash to the snapshot's state hash".to_string());
            }
            *exchanges.borrow_mut() = loaded;
            *tail.borrow_mut() = RecoveredEvents::new(durability.recovery_events, seq);
            Ok(())
        },
        |record| {
            let (command, cid) = match record {
                Record::Command(command) => (command, None),
                Record::NewWithCid(command, cid) => (command, Some(*cid)),
                Record::External(_) | Record::Note(..) => return,
            };
            let mut exchanges = exchanges.borrow_mut();
            let keep = durability.recovery_events > 0;
            let user = command.action.user().unwrap_or(0);
            let mut tail = tail.borrow_mut();
            let mut kept = |event: &Event| tail.push(event.seq, RecoveredEvent { event: *event, user, cid });
            let shard = match command.action {
                Action::Cancel { order_id, .. } | Action::Modify { order_id, .. } => {
                    exchanges.iter().position(|e| e.order(order_id).is_some()).unwrap_or(0)
                }
                // A mass cancel of every symbol: each shard cancels its part;
                // merged as the engine merges them (cancels by order id, one total).
                Action::MassCancel { symbol: None, .. } => {
                    let mut parts: Vec<Event> = Vec::new();
                    for exchange in exchanges.iter_mut() {
                        if keep {
                            exchange.process(command, &mut parts);
                        } else {
                            exchange.process(command, &mut DiscardEvents);
                        }
                    }
                    let mut total = None;
                    parts.retain(|event| match event.kind {
                        EventKind::MassCancelled { user, count } => {
                            let (_, sum) = total.get_or_insert((user, 0));
                            *sum += count;
                            false
                        }
                        _ => true,
                    });
                    parts.sort_by_key(|event| match event.kind {
                        EventKind::Cancelled { order_id, .. } => order_id,
                        _ => 0,
                    });
                    if let Some((user, count)) = total {
                        parts.push(Event { seq: command.seq, kind: EventKind::MassCancelled { user, count } });
                    }
                    parts.iter().for_each(&mut kept);
                    return;
                }
                Action::New(NewOrder { symbol, .. })
                | Action::MassCancel { symbol: Some(symbol), .. }
                | Action::Halt { symbol }
                | Action::Resume { symbol } => router.shard_of(&symbol) as usize,
            };
            if keep {
                exchanges[shard].process(command, &mut kept);
            } else {
                exchanges[shard].process(command, &mut DiscardEvents);
            }
        },
    )?;
    Ok((exchanges.into_inner(), report, tail.into_inner()))
}

/// Every resting order of an exchange (to rebuild the routing window).
fn resting_orders(exchange: &Exchange) -> impl Iterator<Item = RestingOrder> + '_ {
    exchange.symbols().into_iter().flat_map(move |symbol| {
        exchange
            .book(&symbol)
            .map(|book| book.orders(Side::Buy).chain(book.orders(Side::Sell)).collect::<Vec<_>>())
            .unwrap_or_default()
    })
}

/// The running engine: submit commands and ask questions from any thread;
/// read events from the [`EventReader`] [`Engine::start`] returns.
///
/// `X` is the type of external items: things a front end wants sequenced
/// among the commands without going to a shard (a line the JSON reader
/// rejected, say). It defaults to `()`.
pub struct Engine<X: Copy + Send + 'static = ()> {
    sequencer: Mutex<Sequencer<X>>,
    /// One answer channel per shard; holding the lock serializes queries.
    answers: Mutex<Vec<Receiver<Answer>>>,
    workers: Vec<JoinHandle<Exchange>>,
    router: SymbolRouter,
    journal: Option<JournalHandle>,
    recovery: Option<RecoveryReport>,
    recovered_events: RecoveredEvents,
    health: Arc<Health>,
    monitor: Arc<Monitor>,
}

/// The engine's side of the journal thread.
struct JournalHandle {
    status: Arc<JournalStatus>,
    thread: Option<JoinHandle<()>>,
    storage: Arc<dyn matching_journal::storage::Storage>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the sequencer half-updated
    // in a way that matters more than stopping would; keep going.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Threads started so far by [`Engine::start`]: if a later step fails, the
/// ends of their rings are dropped (so they stop) and they are joined, so a
/// failed start leaves nothing running.
#[derive(Default)]
struct Started {
    inputs: Vec<rtrb::Producer<ShardInput>>,
    shards: Vec<JoinHandle<Exchange>>,
}

impl Started {
    fn abandon(self) {
        drop(self.inputs);
        for handle in self.shards {
            let _ = handle.join();
        }
    }
}

impl<X: Copy + Send + 'static> Engine<X> {
    /// Starts the shard threads. With [`EngineConfig::durability`], first
    /// recovers the data directory (and refuses to start on corruption),
    /// then journals every command from where the journal ended.
    ///
    /// Everything that can fail (the configuration, recovery, opening the
    /// journal) is done before any thread starts; should starting a thread
    /// fail, the threads already started are stopped and joined.
    pub fn start(config: EngineConfig) -> Result<(Engine<X>, EventReader<X>), StartError> {
        if config.shards == 0 || config.shards > SHARDS_MAX {
            return Err(StartError::Config(format!("shards must be in 1..={SHARDS_MAX}, not {}", config.shards)));
        }
        for (name, size) in [
            ("input_ring", config.input_ring),
            ("output_ring", config.output_ring),
            ("external_ring", config.external_ring),
            ("batch_max", config.batch_max),
        ] {
            if size == 0 {
                return Err(StartError::Config(format!("{name} must be at least 1")));
            }
        }
        let router = SymbolRouter::new(config.shards, &config.symbol_shards);
        let mut recovered_events = RecoveredEvents::default();
        let (mut exchanges, recovery) = match &config.durability {
            Some(durability) => {
                if durability.journal_ring == 0 {
                    return Err(StartError::Config("journal_ring must be at least 1".to_string()));
                }
                let (exchanges, report, events) = recover_books_with_events(&config, true)?;
                recovered_events = events;
                (exchanges.into_iter().map(Some).collect::<Vec<_>>(), Some(report))
            }
            None => ((0..config.shards).map(|_| None).collect(), None),
        };
        let journal_writer = match (&config.durability, &recovery) {
            (Some(durability), Some(report)) => {
                let mut writer =
                    JournalWriter::open(Arc::clone(&durability.storage), &report.journal, durability.segment_bytes)
                        .map_err(|e| StartError::Recovery(RecoveryError::Io(e)))?;
                writer.set_synced(durability.fsync != FsyncPolicy::Off);
                // A new directory (or one from before manifests) gets one now.
                writer
                    .set_manifest(Manifest { layout: config.layout(), newest_segment: None })
                    .map_err(|e| StartError::Recovery(RecoveryError::Io(e)))?;
                Some((durability, writer, report.last_seq))
            }
            _ => None,
        };
        let next_seq = recovery.as_ref().map_or(1, |report| report.last_seq + 1);
        let mut ids = IdRoutes::new(config.route_window);
        for (shard, exchange) in exchanges.iter().enumerate() {
            for order in exchange.iter().flat_map(resting_orders) {
                // Exactly the orders the window routes by (it rounds its
                // size up to a power of two): the rest are broadcast, live or
                // recovered alike.
                if ids.remembers(order.order_id, next_seq) {
                    ids.record(order.order_id, Some(shard as u8));
                }
            }
        }
        let health = Arc::new(Health::default());
        let cores = if config.pin_cores { core_affinity::get_core_ids().unwrap_or_default() } else { Vec::new() };
        let output_signal = Arc::new(Signal::default());
        let (external_producer, external_consumer) = RingBuffer::new(config.external_ring);
        let mut started = Started::default();
        let mut input_signals = Vec::new();
        let mut outputs = Vec::new();
        let mut answers = Vec::new();
        for index in 0..config.shards {
            let (input_producer, input_consumer) = RingBuffer::new(config.input_ring);
            let (output_producer, output_consumer) = RingBuffer::new(config.output_ring);
            let (answer_sender, answer_receiver) = sync_channel(1);
            let input_signal = Arc::new(Signal::default());
            // With a list, each shard trades only its own part of it (maybe none).
            let mut exchange_config = config.exchange.clone();
            if let Some(listed) = &mut exchange_config.instruments {
                listed.retain(|symbol| router.shard_of(symbol) as usize == index);
            }
            let worker = Worker {
                exchange: exchanges[index].take().unwrap_or_else(|| Exchange::new(exchange_config)),
                input: input_consumer,
                input_signal: Arc::clone(&input_signal),
                sink: OutputSink {
                    output: output_producer,
                    pending: Vec::with_capacity(1024),
                    answering: message::Answering::One,
                    reader_gone: false,
                    output_signal: Arc::clone(&output_signal),
                    wait: config.wait,
                },
                answers: answer_sender,
                wait: config.wait,
            };
            let core = (!cores.is_empty()).then(|| cores[(index + 1) % cores.len()]);
            let guard = PanicGuard { health: Arc::clone(&health), why: Some(Stopped::ShardFailed(index)) };
            let spawned = std::thread::Builder::new().name(format!("shard-{index}")).spawn(move || {
                let _guard = guard;
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                worker.run()
            });
            let handle = match spawned {
                Ok(handle) => handle,
                Err(e) => {
                    started.abandon();
                    return Err(StartError::Config(format!("cannot start shard thread: {e}")));
                }
            };
            started.inputs.push(input_producer);
            started.shards.push(handle);
            input_signals.push(input_signal);
            outputs.push(output_consumer);
            answers.push(answer_receiver);
        }
        let journal_signal = Arc::new(Signal::default());
        let (journal_producer, journal) = match journal_writer {
            Some((durability, writer, durable_seq)) => {
                let status = Arc::new(JournalStatus::default());
                status.durable.store(durable_seq, std::sync::atomic::Ordering::Release);
                let (producer, consumer) = RingBuffer::new(durability.journal_ring);
                let thread = JournalThread {
                    panic_guard: PanicGuard {
                        health: Arc::clone(&health),
                        why: Some(Stopped::JournalFailed("the journal thread panicked".to_string())),
                    },
                    writer,
                    input: consumer,
                    input_signal: Arc::clone(&journal_signal),
                    status: Arc::clone(&status),
                    output_signal: Arc::clone(&output_signal),
                    policy: durability.fsync,
                    group_bytes_max: durability.group_bytes_max,
                    group_linger: durability.group_linger,
                    wait: config.wait,
                    health: Arc::clone(&health),
                };
                let spawned = std::thread::Builder::new().name("journal".into()).spawn(move || thread.run());
                let handle = match spawned {
                    Ok(handle) => handle,
                    Err(e) => {
                        started.abandon();
                        return Err(StartError::Config(format!("cannot start journal thread: {e}")));
                    }
                };
                let journal = JournalHandle { status, thread: Some(handle), storage: Arc::clone(&durability.storage) };
                (Some(producer), Some(journal))
            }
            None => (None, None),
        };
        let Started { inputs, shards: workers } = started;
        let monitor = Arc::new(Monitor {
            ring_fill: (0..config.shards).map(|_| Counter::default()).collect(),
            ring_capacity: config.input_ring,
            journal: journal.as_ref().map(|j| Arc::clone(&j.status)),
            health: Arc::clone(&health),
        });
        let sequencer = Sequencer {
            next_seq,
            inputs,
            input_signals,
            external: external_producer,
            output_signal: Arc::clone(&output_signal),
            symbols: router.clone(),
            ids,
            clock: config.clock,
            wait: config.wait,
            batch_max: config.batch_max,
            routes: Vec::with_capacity(config.batch_max),
            room: vec![0; config.shards],
            journal: journal_producer,
            journal_signal,
            health: Arc::clone(&health),
            monitor: Arc::clone(&monitor),
        };
        let reader = EventReader {
            shards: outputs,
            external: external_consumer,
            next_seq,
            streaming: None,
            last_source: 0,
            signal: output_signal,
            wait: config.wait,
            journal: journal.as_ref().map(|j| Arc::clone(&j.status)),
            health: Arc::clone(&health),
            idle: wait::Backoff::new(config.wait),
        };
        let engine = Engine {
            sequencer: Mutex::new(sequencer),
            answers: Mutex::new(answers),
            workers,
            router,
            journal,
            recovery,
            recovered_events,
            health,
            monitor,
        };
        Ok((engine, reader))
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.workers.len()
    }

    /// The shard that trades `symbol`.
    pub fn shard_of(&self, symbol: &Symbol) -> usize {
        self.router.shard_of(symbol) as usize
    }

    /// Sequences one command and returns its `seq` (a new order's id).
    /// Waits while its shard's ring is full; `Err` once the engine has stopped.
    pub fn submit(&self, action: Action) -> Result<Seq, Stopped> {
        locked(&self.sequencer).submit(std::slice::from_ref(&action))
    }

    /// Sequences the commands in order, giving them consecutive `seq`s, and
    /// returns the first. Each shard's part is published at once (in pieces
    /// of at most `batch_max`). Waits while rings are full; `Err` once the
    /// engine has stopped (the commands taken before that stay taken).
    pub fn submit_batch(&self, actions: &[Action]) -> Result<Seq, Stopped> {
        locked(&self.sequencer).submit(actions)
    }

    /// Sequences the longest prefix of `actions` that fits in the rings now,
    /// without waiting: returns how many were taken (possibly 0) and the
    /// `seq` of the first. For a thread that also drains the reader.
    pub fn try_submit_batch(&self, actions: &[Action]) -> Result<(usize, Seq), Stopped> {
        locked(&self.sequencer).try_submit(actions, &[])
    }

    /// As [`Engine::try_submit_batch`], with the client order id of each new
    /// order (`cids[i]` for `actions[i]`; missing or `None`: none). A cid is
    /// journaled with its order, and never reaches the core.
    pub fn try_submit_batch_with_cids(
        &self,
        actions: &[Action],
        cids: &[Option<Cid>],
    ) -> Result<(usize, Seq), Stopped> {
        locked(&self.sequencer).try_submit(actions, cids)
    }

    /// Gives `item` the next `seq` and passes it to the reader in order,
    /// without going to a shard.
    pub fn submit_external(&self, item: X) -> Result<Seq, Stopped> {
        locked(&self.sequencer).submit_external(item)
    }

    /// As [`Engine::submit_external`] without waiting: `None` (and no `seq`
    /// taken) when the external ring is full. For a thread that also drains
    /// the reader.
    pub fn try_submit_external(&self, item: X) -> Result<Option<Seq>, Stopped> {
        locked(&self.sequencer).try_submit_external(item)
    }

    /// As [`Engine::try_submit_external`], journaling `note` with it:
    /// recovery hands the note back ([`RecoveryReport::notes`]), so a front
    /// end's own state changes (an operator's kill switch) survive a restart.
    pub fn try_submit_note(&self, item: X, note: Note) -> Result<Option<Seq>, Stopped> {
        locked(&self.sequencer).try_submit_noted(item, Some(note))
    }

    /// What any thread may watch of the engine while it runs: ring fill,
    /// the journal's groups and durable `seq`, whether it stopped.
    pub fn monitor(&self) -> Arc<Monitor> {
        Arc::clone(&self.monitor)
    }

    /// The `seq` the next command will get.
    pub fn next_seq(&self) -> Seq {
        locked(&self.sequencer).next_seq
    }

    /// Asks the shards a question; the answer reflects every command
    /// submitted before the call, and (with a journal) is given only once
    /// all of them are durable, so it never shows an order a crash could
    /// take back. Blocks until then, so the reader must be drained meanwhile
    /// (by another thread). `Err` if a shard it asks is gone (a partial
    /// answer is never given) or the journal failed.
    pub fn query(&self, query: Query) -> Result<Answer, Stopped> {
        let answers = locked(&self.answers);
        let targets: Vec<usize> = match query {
            Query::Best(symbol) | Query::Depth(symbol, _) | Query::Book(symbol) => vec![self.shard_of(&symbol)],
            Query::State => (0..self.shards()).collect(),
        };
        let seq = {
            let mut sequencer = locked(&self.sequencer);
            for &shard in &targets {
                sequencer.push_control(shard, ShardInput::Query(query))?;
            }
            sequencer.next_seq - 1
        };
        let mut state = Vec::new();
        let mut last = None;
        for &shard in &targets {
            // A shard that died drops its sender.
            match answers[shard].recv() {
                Ok(Answer::State(parts)) => state.extend(parts),
                Ok(answer) => last = Some(answer),
                Err(_) => return Err(self.health.stop(Stopped::ShardFailed(shard))),
            }
        }
        drop(answers);
        self.wait_durable(seq)?;
        Ok(match query {
            Query::State => Answer::State(state),
            _ => last.unwrap_or(Answer::Best { bid: None, ask: None }),
        })
    }

    /// Waits until every command through `seq` is durable (at once without
    /// a journal); `Err` once the journal has failed.
    fn wait_durable(&self, seq: Seq) -> Result<(), Stopped> {
        let Some(journal) = &self.journal else { return Ok(()) };
        let mut pause = std::time::Duration::from_micros(1);
        while journal.status.durable.load(std::sync::atomic::Ordering::Acquire) < seq {
            if let Some(Stopped::JournalFailed(reason)) = self.health.stopped() {
                return Err(Stopped::JournalFailed(reason.clone()));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_micros(100));
        }
        Ok(())
    }

    /// The state hash of all the books, equal to what one [`Exchange`]
    /// given the same commands would report.
    pub fn state_hash(&self) -> Result<u64, Stopped> {
        match self.query(Query::State)? {
            Answer::State(mut parts) => Ok(hash_books(&mut parts)),
            _ => unreachable!("a State query is answered with State"),
        }
    }

    /// What recovery found, when the engine journals.
    /// The last events of the journal replayed at start (see
    /// [`Durability::recovery_events`]).
    pub fn recovered_events(&self) -> &RecoveredEvents {
        &self.recovered_events
    }

    pub fn recovery(&self) -> Option<&RecoveryReport> {
        self.recovery.as_ref()
    }

    /// The last `seq` known durable (with a journal), or `None`.
    pub fn durable_seq(&self) -> Option<Seq> {
        self.journal.as_ref().map(|j| j.status.durable.load(std::sync::atomic::Ordering::Acquire))
    }

    /// Why the journal stopped, if it did (the engine then releases nothing more).
    pub fn journal_failure(&self) -> Option<String> {
        match self.health.stopped() {
            Some(Stopped::JournalFailed(reason)) => Some(reason.clone()),
            _ => None,
        }
    }

    /// Why the engine stopped taking commands, if it did.
    pub fn stopped(&self) -> Option<Stopped> {
        self.health.stopped().cloned()
    }

    /// Writes a snapshot of every book at the current `seq`, once the
    /// journal is durable through it; keeps the newest two snapshots and
    /// lets the journal delete the segments neither needs. Returns the
    /// snapshot's `seq`. The reader must be drained meanwhile.
    pub fn snapshot(&self) -> std::io::Result<Seq> {
        self.snapshot_with(&[])
    }

    /// As [`Engine::snapshot`], keeping `annex` with the state: what the
    /// embedder needs back on recovery ([`RecoveryReport::snapshot_annex`]),
    /// as it stood at the snapshot's `seq` (the caller makes sure of that).
    pub fn snapshot_with(&self, annex: &[u8]) -> std::io::Result<Seq> {
        let Some(journal) = &self.journal else {
            return Err(std::io::Error::other("the engine has no data directory"));
        };
        let answers = locked(&self.answers);
        let seq = {
            let mut sequencer = locked(&self.sequencer);
            for shard in 0..self.shards() {
                sequencer.push_control(shard, ShardInput::Query(Query::State)).map_err(std::io::Error::other)?;
            }
            sequencer.next_seq - 1
        };
        let mut parts = Vec::new();
        for (shard, receiver) in answers.iter().enumerate() {
            match receiver.recv() {
                Ok(Answer::State(state)) => parts.extend(state),
                _ => return Err(std::io::Error::other(self.health.stop(Stopped::ShardFailed(shard)))),
            }
        }
        drop(answers);
        let state_hash = hash_books(&mut parts);
        let body = encode_books(&mut parts);
        // A snapshot must not get ahead of the journal it is joined to.
        self.wait_durable(seq).map_err(std::io::Error::other)?;
        let prunable = matching_journal::write_snapshot_with(journal.storage.as_ref(), seq, state_hash, &body, annex)?;
        if let Some(through) = prunable {
            locked(&self.sequencer).push_journal(JournalEntry::Prune(through)).map_err(std::io::Error::other)?;
        }
        Ok(seq)
    }

    /// Fault injection for tests: makes `shard` panic once it reaches this
    /// point of its input (as a bug in it would).
    #[cfg(feature = "fault-injection")]
    pub fn inject_shard_panic(&self, shard: usize) -> Result<(), Stopped> {
        locked(&self.sequencer).push_control(shard, ShardInput::Panic)
    }

    /// Queues a stop behind everything submitted and joins every thread. A
    /// thread that is already gone is not waited for; a shard whose reader
    /// is gone drops its events, so this ends unless a live reader is never
    /// drained.
    fn stop(&mut self) -> Vec<Exchange> {
        {
            let mut sequencer = locked(&self.sequencer);
            for shard in 0..self.workers.len() {
                // A shard that is gone has nothing left to stop.
                let _ = sequencer.push_control(shard, ShardInput::Shutdown);
            }
            let _ = sequencer.push_journal(JournalEntry::Shutdown);
        }
        let mut exchanges = Vec::new();
        for handle in self.workers.drain(..) {
            if let Ok(exchange) = handle.join() {
                exchanges.push(exchange);
            }
        }
        if let Some(thread) = self.journal.as_mut().and_then(|j| j.thread.take()) {
            let _ = thread.join();
        }
        exchanges
    }

    /// Processes everything submitted, stops the shard threads, and hands
    /// back each shard's books (in shard order; a shard that failed has none
    /// to give). The reader then delivers what is left and reports itself finished.
    pub fn shutdown(mut self) -> Vec<Exchange> {
        self.stop()
    }
}

impl<X: Copy + Send + 'static> Drop for Engine<X> {
    fn drop(&mut self) {
        if !self.workers.is_empty() {
            self.stop();
        }
    }
}
