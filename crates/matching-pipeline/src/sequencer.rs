//! The sequencer: the single point of order. It gives every command the
//! next `seq` (and a new order its id), stamps the time, and routes it to a
//! shard, publishing each shard's part of a batch at once.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use matching_core::{Action, Cid, Command, Seq};
use rtrb::Producer;

use crate::durable::JournalEntry;
use crate::health::{Health, Stopped};
use crate::message::ShardInput;
use crate::routing::{IdRoutes, OrderRoute, SymbolRouter};
use crate::wait::{Backoff, Signal, WaitStrategy};
use matching_journal::{Note, Record};

/// Where timestamps come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Clock {
    /// Nanoseconds since the Unix epoch, read once per batch.
    #[default]
    Wall,
    /// Always 0: for `replay`, whose output must not depend on when it ran.
    Zero,
}

/// The route of a command that goes to every shard, one of which answers.
const BROADCAST: u8 = u8::MAX;
/// The route of a command that every shard answers a part of.
const SPAN: u8 = u8::MAX - 1;

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
    pub(crate) health: Arc<Health>,
    /// Where each shard's ring fill is noted, once per batch.
    pub(crate) monitor: Arc<crate::stats::Monitor>,
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
    /// Returns how many were taken and the `seq` of the first; `Err` (and
    /// nothing taken) once the engine has stopped.
    ///
    /// A `seq` is given only to a command that is published at once, so the
    /// merger never waits for a `seq` that is stuck behind a full ring.
    /// First every command is routed and counted against the room in its
    /// shard's ring; then each shard's commands are written straight into
    /// its ring and published with one release.
    /// `cids[i]` is the client order id of `actions[i]` (a new order), journaled with it.
    pub(crate) fn try_submit(&mut self, actions: &[Action], cids: &[Option<Cid>]) -> Result<(usize, Seq), Stopped> {
        self.health.check()?;
        let first_seq = self.next_seq;
        let shards = self.inputs.len();
        for (shard, room) in self.room.iter_mut().enumerate() {
            *room = self.inputs[shard].slots();
            self.monitor.ring_fill[shard].set((self.monitor.ring_capacity - *room) as u64);
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
                Action::MassCancel { symbol: None, .. } => (OrderRoute::Span, None),
                Action::MassCancel { symbol: Some(symbol), .. }
                | Action::Halt { symbol }
                | Action::Resume { symbol } => (OrderRoute::Shard(self.symbols.shard_of(symbol)), None),
            };
            match route {
                OrderRoute::Shard(shard) if self.room[shard as usize] > 0 => {
                    self.room[shard as usize] -= 1;
                    self.routes.push(shard);
                }
                OrderRoute::Broadcast | OrderRoute::Span if self.room.iter().all(|&room| room > 0) => {
                    self.room.iter_mut().for_each(|room| *room -= 1);
                    self.routes.push(if route == OrderRoute::Span { SPAN } else { BROADCAST });
                }
                _ => break,
            }
            self.ids.record(seq, new_order_shard);
        }
        let taken = self.routes.len();
        if taken == 0 {
            return Ok((0, first_seq));
        }
        let timestamp_ns = self.now();
        for shard in 0..shards {
            let count = self.routes.iter().filter(|&&r| r == shard as u8 || r >= SPAN).count();
            if count == 0 {
                continue;
            }
            let Ok(chunk) = self.inputs[shard].write_chunk_uninit(count) else {
                unreachable!("Invariant: the room in shard {shard}'s ring was counted before publishing");
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
                    SPAN => Some(ShardInput::Span(command)),
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
        if let Some(journal) = &mut self.journal {
            // A batch that is not journaled must never be released: a failure
            // here is a bug, and loud.
            let Ok(chunk) = journal.write_chunk_uninit(taken) else {
                unreachable!("Invariant: the room in the journal's ring was counted before publishing");
            };
            let records = actions[..taken].iter().enumerate().map(|(i, action)| {
                let seq = first_seq + i as u64;
                let mut action = *action;
                if let Action::New(order) = &mut action {
                    order.order_id = seq;
                }
                let command = Command { seq, timestamp_ns, action };
                match cids.get(i).copied().flatten() {
                    Some(cid) if matches!(action, Action::New(_)) => {
                        JournalEntry::Record(Record::NewWithCid(command, cid))
                    }
                    _ => JournalEntry::Record(Record::Command(command)),
                }
            });
            let written = chunk.fill_from_iter(records);
            debug_assert_eq!(written, taken, "Invariant: the journal's room was counted");
            if self.wait == WaitStrategy::Park {
                self.journal_signal.wake();
            }
        }
        self.next_seq += taken as u64;
        Ok((taken, first_seq))
    }

    /// Sequences and publishes every action, waiting for room as needed.
    /// `Err` once the engine has stopped (what was taken before stays taken).
    pub(crate) fn submit(&mut self, actions: &[Action]) -> Result<Seq, Stopped> {
        let first_seq = self.next_seq;
        let mut done = 0;
        let mut backoff = Backoff::new(self.wait);
        while done < actions.len() {
            let (taken, _) = self.try_submit(&actions[done..], &[])?;
            if taken == 0 {
                self.wait_for_room(&mut backoff)?;
            } else {
                backoff.reset();
                done += taken;
            }
        }
        Ok(first_seq)
    }

    /// Waits a little for room in the rings, or fails once the engine has
    /// stopped or a ring's consumer (a shard, the journal) is gone: then no
    /// room will ever come.
    fn wait_for_room(&self, backoff: &mut Backoff) -> Result<(), Stopped> {
        self.health.check()?;
        if let Some(shard) = self.inputs.iter().position(|input| input.is_abandoned()) {
            return Err(self.health.stop(Stopped::ShardFailed(shard)));
        }
        if self.journal.as_ref().is_some_and(|journal| journal.is_abandoned()) {
            return Err(self.health.stop(Stopped::JournalFailed("the journal thread is gone".to_string())));
        }
        backoff.pause();
        Ok(())
    }

    /// Gives `payload` the next `seq` and hands it to the merger.
    pub(crate) fn submit_external(&mut self, payload: X) -> Result<Seq, Stopped> {
        let mut backoff = Backoff::new(self.wait);
        loop {
            if let Some(seq) = self.try_submit_external(payload)? {
                return Ok(seq);
            }
            self.wait_for_room(&mut backoff)?;
        }
    }

    /// As [`Sequencer::submit_external`], or `None` (and no `seq` taken)
    /// when the external ring or the journal's is full.
    pub(crate) fn try_submit_external(&mut self, payload: X) -> Result<Option<Seq>, Stopped> {
        self.try_submit_noted(payload, None)
    }

    /// As [`Sequencer::try_submit_external`], journaling `note` with the
    /// `seq` (recovery hands it back).
    pub(crate) fn try_submit_noted(&mut self, payload: X, note: Option<Note>) -> Result<Option<Seq>, Stopped> {
        self.health.check()?;
        let seq = self.next_seq;
        if self.journal.as_ref().is_some_and(|j| j.slots() == 0) || self.external.slots() == 0 {
            return Ok(None);
        }
        if let Some(journal) = &mut self.journal {
            let record = match note {
                Some(note) => Record::Note(seq, note),
                None => Record::External(seq),
            };
            let pushed = journal.push(JournalEntry::Record(record));
            debug_assert!(pushed.is_ok(), "Invariant: the journal's room was counted");
            if self.wait == WaitStrategy::Park {
                self.journal_signal.wake();
            }
        }
        let pushed = self.external.push((seq, payload));
        debug_assert!(pushed.is_ok(), "Invariant: the external ring's room was counted");
        if self.wait == WaitStrategy::Park {
            self.output_signal.wake();
        }
        self.ids.record(seq, None);
        self.next_seq += 1;
        Ok(Some(seq))
    }

    /// Puts an entry on the journal ring (if the engine journals), waiting
    /// for room; `Err` once the journal thread is gone.
    pub(crate) fn push_journal(&mut self, entry: JournalEntry) -> Result<(), Stopped> {
        let Some(journal) = &mut self.journal else { return Ok(()) };
        let mut backoff = Backoff::new(self.wait);
        while journal.push(entry).is_err() {
            if backoff.wait_for_room(journal).is_err() {
                return Err(self.health.stop(Stopped::JournalFailed("the journal thread is gone".to_string())));
            }
        }
        if self.wait == WaitStrategy::Park {
            self.journal_signal.wake();
        }
        Ok(())
    }

    /// Puts a control message (query, shutdown) on one shard's ring, after
    /// everything submitted so far; `Err` once that shard is gone.
    pub(crate) fn push_control(&mut self, shard: usize, message: ShardInput) -> Result<(), Stopped> {
        let mut backoff = Backoff::new(self.wait);
        while self.inputs[shard].push(message).is_err() {
            if backoff.wait_for_room(&self.inputs[shard]).is_err() {
                return Err(self.health.stop(Stopped::ShardFailed(shard)));
            }
        }
        if self.wait == WaitStrategy::Park {
            self.input_signals[shard].wake();
        }
        Ok(())
    }
}
