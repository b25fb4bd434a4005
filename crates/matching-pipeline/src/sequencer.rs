//! The sequencer: the single point of order. It gives every command the
//! next `seq` (and a new order its id), stamps the time, and routes it to a
//! shard, publishing each shard's part of a batch at once.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use matching_core::{Action, Command, Seq};
use rtrb::Producer;

use crate::durable::JournalEntry;
use crate::message::ShardInput;
use crate::routing::{IdRoutes, OrderRoute, SymbolRouter};
use crate::wait::{Backoff, Signal, WaitStrategy};
use matching_journal::Record;

/// Where timestamps come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Clock {
    /// Nanoseconds since the Unix epoch, read once per batch.
    #[default]
    Wall,
    /// Always 0: for `replay`, whose output must not depend on when it ran.
    Zero,
}

/// The route of a command that goes to every shard.
const BROADCAST: u8 = u8::MAX;

pub(crate) struct Sequencer<X> {
    pub(crate) next_seq: Seq,
    pub(crate) inputs: Vec<Producer<ShardInput>>,
    pub(crate) input_signals: Vec<Arc<Signal>>,
    pub(crate) external: Producer<(Seq, X)>,
    pub(crate) output_signal: Arc<Signal>,
    pub(crate) symbols: SymbolRouter,
    pub(crate) ids: IdRoutes,
    pub(crate) clock: Clock,
    pub(crate) wait: WaitStrategy,
    /// Most commands taken in one `try_submit`.
    pub(crate) batch_max: usize,
    /// The route of each command of the batch being published (a shard, or
    /// `BROADCAST`). Preallocated to `batch_max`, so a batch allocates nothing.
    pub(crate) routes: Vec<u8>,
    /// Per shard, free input slots seen at the start of the batch.
    pub(crate) room: Vec<usize>,
    /// Sequencer → journal thread, when the engine journals.
    pub(crate) journal: Option<Producer<JournalEntry>>,
    pub(crate) journal_signal: Arc<Signal>,
}

impl<X: Copy> Sequencer<X> {
    fn now(&self) -> u64 {
        match self.clock {
            Clock::Zero => 0,
            Clock::Wall => SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
        }
    }

    /// Sequences and publishes the longest prefix of `actions` that fits in
    /// the shards' rings right now (at most `batch_max`), without waiting.
    /// Returns how many were taken and the `seq` of the first.
    ///
    /// A `seq` is given only to a command that is published at once, so the
    /// merger never waits for a `seq` that is stuck behind a full ring.
    /// First every command is routed and counted against the room in its
    /// shard's ring; then each shard's commands are written straight into
    /// its ring and published with one release.
    pub(crate) fn try_submit(&mut self, actions: &[Action]) -> (usize, Seq) {
        let first_seq = self.next_seq;
        let shards = self.inputs.len();
        for (shard, room) in self.room.iter_mut().enumerate() {
            *room = self.inputs[shard].slots();
        }
        let journal_room = self.journal.as_ref().map_or(usize::MAX, |j| j.slots());
        self.routes.clear();
        for (i, action) in actions.iter().take(self.batch_max.min(journal_room)).enumerate() {
            let seq = first_seq + i as u64;
            let (route, new_order_shard) = match action {
                Action::New(order) => {
                    let shard = self.symbols.shard_of(&order.symbol);
                    (OrderRoute::Shard(shard), Some(shard))
                }
                Action::Cancel { order_id, .. } | Action::Modify { order_id, .. } => {
                    (self.ids.route(*order_id, seq), None)
                }
            };
            match route {
                OrderRoute::Shard(shard) if self.room[shard as usize] > 0 => {
                    self.room[shard as usize] -= 1;
                    self.routes.push(shard);
                }
                OrderRoute::Broadcast if self.room.iter().all(|&room| room > 0) => {
                    self.room.iter_mut().for_each(|room| *room -= 1);
                    self.routes.push(BROADCAST);
                }
                _ => break,
            }
            self.ids.record(seq, new_order_shard);
        }
        let taken = self.routes.len();
        if taken == 0 {
            return (0, first_seq);
        }
        let timestamp_ns = self.now();
        for shard in 0..shards {
            let count = self.routes.iter().filter(|&&r| r == shard as u8 || r == BROADCAST).count();
            if count == 0 {
                continue;
            }
            let Ok(chunk) = self.inputs[shard].write_chunk_uninit(count) else {
                debug_assert!(false, "Invariant: the room was counted before publishing");
                continue;
            };
            let items = actions.iter().zip(&self.routes).enumerate().filter_map(|(i, (action, &route))| {
                let seq = first_seq + i as u64;
                let mut action = *action;
                if let Action::New(order) = &mut action {
                    order.order_id = seq;
                }
                let command = Command { seq, timestamp_ns, action };
                match route {
                    BROADCAST => Some(ShardInput::Broadcast(command)),
                    r if r == shard as u8 => Some(ShardInput::Command(command)),
                    _ => None,
                }
            });
            let written = chunk.fill_from_iter(items);
            debug_assert_eq!(written, count);
            if self.wait == WaitStrategy::Park {
                self.input_signals[shard].wake();
            }
        }
        if let Some(journal) = &mut self.journal
            && let Ok(chunk) = journal.write_chunk_uninit(taken)
        {
            let records = actions[..taken].iter().enumerate().map(|(i, action)| {
                let seq = first_seq + i as u64;
                let mut action = *action;
                if let Action::New(order) = &mut action {
                    order.order_id = seq;
                }
                JournalEntry::Record(Record::Command(Command { seq, timestamp_ns, action }))
            });
            let written = chunk.fill_from_iter(records);
            debug_assert_eq!(written, taken, "Invariant: the journal's room was counted");
            if self.wait == WaitStrategy::Park {
                self.journal_signal.wake();
            }
        }
        self.next_seq += taken as u64;
        (taken, first_seq)
    }

    /// Sequences and publishes every action, waiting for room as needed.
    pub(crate) fn submit(&mut self, actions: &[Action]) -> Seq {
        let first_seq = self.next_seq;
        let mut done = 0;
        let mut backoff = Backoff::new(self.wait);
        while done < actions.len() {
            let (taken, _) = self.try_submit(&actions[done..]);
            if taken == 0 {
                backoff.wait_for_room();
            } else {
                backoff.reset();
                done += taken;
            }
        }
        first_seq
    }

    /// Gives `payload` the next `seq` and hands it to the merger.
    pub(crate) fn submit_external(&mut self, payload: X) -> Seq {
        let seq = self.next_seq;
        self.ids.record(seq, None);
        self.push_journal(JournalEntry::Record(Record::External(seq)));
        self.push_waiting_external((seq, payload));
        self.next_seq += 1;
        seq
    }

    /// As [`Sequencer::submit_external`], or `None` (and no `seq` taken)
    /// when the external ring is full.
    pub(crate) fn try_submit_external(&mut self, payload: X) -> Option<Seq> {
        let seq = self.next_seq;
        if self.journal.as_ref().is_some_and(|j| j.slots() == 0) || self.external.slots() == 0 {
            return None;
        }
        self.push_journal(JournalEntry::Record(Record::External(seq)));
        self.external.push((seq, payload)).ok()?;
        if self.wait == WaitStrategy::Park {
            self.output_signal.wake();
        }
        self.ids.record(seq, None);
        self.next_seq += 1;
        Some(seq)
    }

    fn push_waiting_external(&mut self, item: (Seq, X)) {
        let mut backoff = Backoff::new(self.wait);
        while self.external.push(item).is_err() {
            backoff.wait_for_room();
        }
        if self.wait == WaitStrategy::Park {
            self.output_signal.wake();
        }
    }

    /// Puts an entry on the journal ring (if the engine journals), waiting for room.
    pub(crate) fn push_journal(&mut self, entry: JournalEntry) {
        let Some(journal) = &mut self.journal else { return };
        let mut backoff = Backoff::new(self.wait);
        while journal.push(entry).is_err() {
            backoff.wait_for_room();
        }
        if self.wait == WaitStrategy::Park {
            self.journal_signal.wake();
        }
    }

    /// Puts a control message (query, shutdown) on one shard's ring, after
    /// everything submitted so far.
    pub(crate) fn push_control(&mut self, shard: usize, message: ShardInput) {
        let mut backoff = Backoff::new(self.wait);
        while self.inputs[shard].push(message).is_err() {
            backoff.wait_for_room();
        }
        if self.wait == WaitStrategy::Park {
            self.input_signals[shard].wake();
        }
    }
}
