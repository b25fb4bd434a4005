//! The journal thread: appends every sequenced command to the write-ahead
//! journal with group commit, and publishes how far the journal is durable.
//! The merger releases a command's events only once its `seq` is durable;
//! matching runs ahead meanwhile.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use matching_core::Seq;
use matching_journal::{JournalWriter, Record, storage::Storage};
use rtrb::Consumer;

use crate::health::{Health, PanicGuard, Stopped};
use crate::stats::JournalStats;
use crate::wait::{Backoff, Signal, WaitStrategy};

/// When the journal calls `fdatasync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum FsyncPolicy {
    /// Once per group of records (everything that arrived while the last
    /// sync ran, up to `group_bytes_max`): the default.
    #[default]
    Batch,
    /// Once per record: the slow baseline group commit is measured against.
    Always,
    /// Never: records are written but nothing is durable. For benchmarks
    /// only; a crash loses acknowledged commands.
    Off,
}

/// Where and how the engine journals.
#[derive(Clone)]
pub struct Durability {
    pub storage: Arc<dyn Storage>,
    pub fsync: FsyncPolicy,
    /// Records the sequencer → journal ring holds.
    pub journal_ring: usize,
    /// Most bytes written per group (a larger group is split).
    pub group_bytes_max: usize,
    /// How long the journal may wait for more records to join a group
    /// before it syncs (0: sync as soon as the ring is empty).
    pub group_linger: Duration,
    /// How big a segment grows before the next starts.
    pub segment_bytes: u64,
    /// Events of the journal's records replayed on recovery (those after
    /// the snapshot) that the engine keeps, the last ones, for its embedder
    /// ([`crate::Engine::recovered_events`]): 0 keeps none.
    pub recovery_events: usize,
}

impl fmt::Debug for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Durability")
            .field("storage", &self.storage.describe(""))
            .field("fsync", &self.fsync)
            .field("journal_ring", &self.journal_ring)
            .field("group_bytes_max", &self.group_bytes_max)
            .field("group_linger", &self.group_linger)
            .field("segment_bytes", &self.segment_bytes)
            .field("recovery_events", &self.recovery_events)
            .finish()
    }
}

impl Durability {
    pub fn new(storage: Arc<dyn Storage>) -> Durability {
        Durability {
            storage,
            fsync: FsyncPolicy::Batch,
            journal_ring: 1 << 16,
            group_bytes_max: 4 << 20,
            group_linger: Duration::ZERO,
            segment_bytes: matching_journal::SEGMENT_BYTES_DEFAULT,
            recovery_events: 0,
        }
    }
}

/// How long the journal waits, idle, before it writes and syncs a
/// synced-through marker for its last group (under load the next group
/// carries it for free; see `docs/JOURNAL.md`).
const VOUCH_AFTER_IDLE: Duration = Duration::from_millis(1);

/// Sequencer → journal thread.
#[derive(Clone, Copy, Debug)]
pub(crate) enum JournalEntry {
    Record(Record),
    /// Segments wholly at or before this `seq` are covered by snapshots.
    Prune(Seq),
    Shutdown,
}

/// What the journal thread tells everyone else (a failure goes to the
/// engine's [`Health`]: nothing after `durable` will ever be released).
#[derive(Debug, Default)]
pub(crate) struct JournalStatus {
    /// Every record with `seq <= durable` is durable (per the policy).
    pub(crate) durable: AtomicU64,
    /// Its groups, written by the journal thread alone.
    pub(crate) stats: JournalStats,
}

pub(crate) struct JournalThread {
    /// Records a panic of this thread as the reason the engine stopped. The
    /// first field, so that unwinding drops it (and records the reason)
    /// before the ring's end, whose drop the sequencer also notices.
    #[allow(dead_code, reason = "held for its Drop")]
    pub(crate) panic_guard: PanicGuard,
    pub(crate) writer: JournalWriter,
    pub(crate) input: Consumer<JournalEntry>,
    pub(crate) input_signal: Arc<Signal>,
    pub(crate) status: Arc<JournalStatus>,
    /// The merger sleeps on it.
    pub(crate) output_signal: Arc<Signal>,
    pub(crate) policy: FsyncPolicy,
    pub(crate) group_bytes_max: usize,
    pub(crate) group_linger: Duration,
    pub(crate) wait: WaitStrategy,
    pub(crate) health: Arc<Health>,
}

impl JournalThread {
    /// Journals until `Shutdown` or until the engine's end of the ring is
    /// dropped; on a failure, reports it and drains until then.
    pub(crate) fn run(mut self) {
        if let Err(error) = self.serve() {
            self.health.stop(Stopped::JournalFailed(error.to_string()));
            // Wake the merger so a waiting reader notices.
            self.output_signal.wake();
            self.discard_until_shutdown();
        }
    }

    /// After a failure: nothing more can be made durable, so nothing more is
    /// released; keep taking entries so the sequencer never blocks on a full
    /// ring, until the engine shuts down.
    fn discard_until_shutdown(&mut self) {
        let mut backoff = Backoff::new(self.wait);
        loop {
            match self.input.pop() {
                Ok(JournalEntry::Shutdown) => return,
                Ok(_) => backoff.reset(),
                Err(_) => {
                    if backoff.wait_for_data(&self.input_signal, &self.input).is_err() {
                        return;
                    }
                }
            }
        }
    }

    fn serve(&mut self) -> io::Result<()> {
        let JournalThread {
            writer,
            input,
            input_signal,
            status,
            output_signal,
            policy,
            group_bytes_max,
            group_linger,
            wait,
            health: _,
            panic_guard: _,
        } = self;
        let commit = |writer: &mut JournalWriter| -> io::Result<()> {
            let bytes = writer.buffered() as u64;
            writer.write()?;
            if *policy != FsyncPolicy::Off {
                let started = Instant::now();
                writer.sync()?;
                status.stats.fsync_ns.record(started.elapsed().as_nanos() as u64);
            }
            let records = writer.last_seq() - status.durable.load(Ordering::Relaxed);
            if records > 0 {
                status.stats.group_records.record(records);
                status.stats.group_bytes.record(bytes);
            }
            status.durable.store(writer.last_seq(), Ordering::Release);
            if *wait == WaitStrategy::Park {
                output_signal.wake();
            }
            Ok(())
        };
        let mut backoff = Backoff::new(*wait);
        let mut group_started: Option<Instant> = None;
        let mut idle_since = Instant::now();
        loop {
            let available = input.slots();
            if available == 0 {
                if writer.buffered() > 0 {
                    if group_started.is_some_and(|t| t.elapsed() < *group_linger) {
                        std::hint::spin_loop();
                    } else {
                        commit(writer)?;
                        group_started = None;
                        idle_since = Instant::now();
                    }
                    continue;
                }
                if writer.unvouched() && idle_since.elapsed() >= VOUCH_AFTER_IDLE {
                    writer.vouch()?;
                    commit(writer)?;
                }
                if backoff.wait_for_data(input_signal, input).is_err() {
                    // The engine is gone without a shutdown: nothing more comes.
                    return Ok(());
                }
                continue;
            }
            backoff.reset();
            let Ok(chunk) = input.read_chunk(available) else { continue };
            let mut shutdown = false;
            let mut prune = None;
            for entry in chunk {
                match entry {
                    JournalEntry::Record(record) => {
                        writer.append(&record)?;
                        group_started.get_or_insert_with(Instant::now);
                        if *policy == FsyncPolicy::Always || writer.buffered() >= *group_bytes_max {
                            commit(writer)?;
                            group_started = None;
                        }
                    }
                    JournalEntry::Prune(seq) => prune = Some(seq),
                    JournalEntry::Shutdown => shutdown = true,
                }
            }
            if let Some(seq) = prune {
                commit(writer)?;
                writer.prune_through(seq)?;
            }
            if shutdown {
                // Synced, then vouched for: a clean stop leaves nothing a
                // power cut could pass off as a hole.
                commit(writer)?;
                writer.vouch()?;
                return commit(writer);
            }
            // Group commit: everything that arrived while the last sync ran is
            // this group; it goes now, not when the ring happens to be empty
            // (under a steady trickle it never is, and nothing would be
            // released until `group_bytes_max` had gathered).
            if writer.buffered() > 0 && group_started.is_none_or(|t| t.elapsed() >= *group_linger) {
                commit(writer)?;
                group_started = None;
                idle_since = Instant::now();
            }
        }
    }
}
