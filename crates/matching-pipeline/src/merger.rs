//! The merger: puts the shards' event streams (and the sequencer's
//! external items) back into global `seq` order.
//!
//! Each shard's stream is already in `seq` order, every command has at
//! least one event, and a command's events are contiguous in one stream
//! with the last one flagged. So the merger needs no routing information:
//! for the next `seq` it looks at the head of each stream, takes the one
//! that starts that `seq`, and streams its events until the flagged one. A
//! broadcast command (a cancel or modify of an order too old to route) has
//! an answer in every stream: every shard that does not hold the order
//! answers `unknown_order` (or the same validation rejection as every
//! other shard), so the merger keeps the answer that is not `unknown_order`
//! (the holder's, whatever it is) and drops the others. A spanning command
//! (a mass cancel of every symbol) has a part in every stream: each shard's
//! `cancelled` events in order id order, then its `mass_cancelled` count;
//! the merger merges the parts by order id (a k-way merge of sorted
//! streams) and ends with one `mass_cancelled` carrying the total, exactly
//! what one exchange holding every book would say.

use std::sync::Arc;

use matching_core::{Event, EventKind, RejectReason, Seq};
use rtrb::Consumer;

use crate::durable::JournalStatus;
use crate::health::{Health, Stopped};
use crate::message::{Answering, ShardOutput};
use crate::wait::{Backoff, Signal, WaitStrategy};
use std::sync::atomic::Ordering;

/// One item of the merged stream.
#[derive(Debug)]
pub enum Output<'a, X> {
    /// An event of a command, in `seq` order.
    Event(&'a Event),
    /// An item sequenced with [`crate::Engine::submit_external`].
    External(Seq, &'a X),
}

/// A note of what an [`EventReader`] had seen (see [`EventReader::mark`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    buffered: usize,
    released: Seq,
}

/// The consumer's end of the engine: every event, in global `seq` order.
///
/// It must be drained (by [`EventReader::poll`] or [`EventReader::run`]) on
/// a thread other than one blocked in a submit: every ring is bounded, so
/// an undrained reader eventually stops the engine. Dropping it stops the
/// engine: submits fail with [`Stopped::ReaderGone`], and the shards drop
/// the events nobody will read rather than wait for room.
pub struct EventReader<X> {
    pub(crate) shards: Vec<Consumer<ShardOutput>>,
    pub(crate) external: Consumer<(Seq, X)>,
    /// The `seq` whose events come next.
    pub(crate) next_seq: Seq,
    /// The shard whose events of `next_seq` are being delivered, if started.
    pub(crate) streaming: Option<usize>,
    /// Where the last command came from: the first place to look next.
    pub(crate) last_source: usize,
    pub(crate) signal: Arc<Signal>,
    pub(crate) wait: WaitStrategy,
    /// With a journal: events of a `seq` go out only once it is durable.
    pub(crate) journal: Option<Arc<JournalStatus>>,
    pub(crate) health: Arc<Health>,
    /// How long [`EventReader::wait_since`] has been waiting (reset by a delivery).
    pub(crate) idle: Backoff,
}

impl<X> Drop for EventReader<X> {
    fn drop(&mut self) {
        if !self.is_finished() {
            self.health.stop(Stopped::ReaderGone);
        }
    }
}

impl<X> EventReader<X> {
    /// Delivers every item that is ready, in order, and returns how many.
    /// Never blocks.
    pub fn poll(&mut self, handler: impl FnMut(Output<'_, X>)) -> usize {
        let delivered = self.poll_ready(handler);
        if delivered > 0 {
            self.idle.reset();
        }
        delivered
    }

    fn poll_ready(&mut self, mut handler: impl FnMut(Output<'_, X>)) -> usize {
        let mut delivered = 0;
        let released = self.released();
        loop {
            if let Some(shard) = self.streaming {
                match self.stream_from(shard, released, &mut handler) {
                    0 => return delivered,
                    n => delivered += n,
                }
                continue;
            }
            if self.next_seq > released {
                return delivered;
            }
            if let Ok((seq, _)) = self.external.peek()
                && *seq == self.next_seq
            {
                if let Ok((seq, item)) = self.external.pop() {
                    handler(Output::External(seq, &item));
                    delivered += 1;
                }
                self.next_seq += 1;
                continue;
            }
            match self.find_next() {
                Some((shard, Answering::One)) => {
                    self.last_source = shard;
                    self.streaming = Some(shard);
                }
                Some((_, Answering::Broadcast)) => match self.resolve_broadcast() {
                    Some(shard) => self.streaming = Some(shard),
                    None => return delivered,
                },
                Some((_, Answering::Span)) => {
                    let (n, complete) = self.merge_span(&mut handler);
                    delivered += n;
                    if !complete {
                        return delivered;
                    }
                }
                None => return delivered,
            }
        }
    }

    /// Delivers the events of `shard` that come next in `seq` order: the
    /// rest of `next_seq`'s, and the commands after it as long as they are
    /// this shard's too. Reads and releases ring slots a run at a time.
    /// Returns how many were delivered; stops streaming at a command that
    /// is not this shard's to give next.
    fn stream_from(&mut self, shard: usize, released: Seq, handler: &mut impl FnMut(Output<'_, X>)) -> usize {
        let stream = &mut self.shards[shard];
        let available = stream.slots();
        let Ok(chunk) = stream.read_chunk(available) else {
            return 0;
        };
        let (first, second) = chunk.as_slices();
        let mut taken = 0;
        let mut in_command = true;
        for out in first.iter().chain(second) {
            if !in_command
                && (out.event.seq != self.next_seq || out.answering != Answering::One || out.event.seq > released)
            {
                self.streaming = None;
                break;
            }
            handler(Output::Event(&out.event));
            taken += 1;
            in_command = !out.last;
            if out.last {
                self.next_seq += 1;
            }
        }
        chunk.commit(taken);
        if !in_command {
            self.streaming = None;
        }
        taken
    }

    /// The shard whose stream starts `next_seq`, and how its command is answered.
    fn find_next(&self) -> Option<(usize, Answering)> {
        let count = self.shards.len();
        (0..count).map(|i| (self.last_source + i) % count).find_map(|shard| match self.shards[shard].peek() {
            Ok(out) if out.event.seq == self.next_seq => Some((shard, out.answering)),
            _ => None,
        })
    }

    /// Delivers what can be delivered of the spanning command `next_seq`:
    /// while every shard's next event is known, the `cancelled` event with
    /// the lowest order id; once every shard is at its last event, one
    /// `mass_cancelled` with the sum of their counts (or, for a command every
    /// shard rejected, one of their identical rejections). Returns how many
    /// it delivered and whether the command is complete.
    fn merge_span(&mut self, handler: &mut impl FnMut(Output<'_, X>)) -> (usize, bool) {
        let seq = self.next_seq;
        let mut delivered = 0;
        loop {
            let mut lowest: Option<(u64, usize)> = None;
            for (shard, stream) in self.shards.iter().enumerate() {
                let Ok(out) = stream.peek() else {
                    return (delivered, false); // this shard's part is not here yet
                };
                debug_assert_eq!(out.event.seq, seq, "Invariant: every shard answers a spanning command");
                if out.last {
                    continue;
                }
                let EventKind::Cancelled { order_id, .. } = out.event.kind else {
                    debug_assert!(false, "Invariant: a spanning command's part is cancels, then its last event");
                    continue;
                };
                if lowest.is_none_or(|(lowest_id, _)| order_id < lowest_id) {
                    lowest = Some((order_id, shard));
                }
            }
            if let Some((_, shard)) = lowest {
                if let Ok(out) = self.shards[shard].pop() {
                    handler(Output::Event(&out.event));
                    delivered += 1;
                }
                continue;
            }
            let mut total = 0;
            let mut last: Option<Event> = None;
            for stream in &mut self.shards {
                if let Ok(out) = stream.pop() {
                    if let EventKind::MassCancelled { count, .. } = out.event.kind {
                        total += count;
                    }
                    last.get_or_insert(out.event);
                }
            }
            if let Some(mut event) = last {
                if let EventKind::MassCancelled { count, .. } = &mut event.kind {
                    *count = total;
                }
                handler(Output::Event(&event));
                delivered += 1;
            }
            self.next_seq += 1;
            return (delivered, true);
        }
    }

    /// Once every shard has answered the broadcast `next_seq`: drops every
    /// answer but the one to keep, and returns the shard that gave it.
    fn resolve_broadcast(&mut self) -> Option<usize> {
        let mut holder = None;
        for (shard, stream) in self.shards.iter().enumerate() {
            match stream.peek() {
                Ok(out) if out.event.seq == self.next_seq => {
                    let unknown =
                        matches!(out.event.kind, EventKind::Rejected { reason: RejectReason::UnknownOrder, .. });
                    if !unknown && holder.is_none() {
                        holder = Some(shard);
                    }
                }
                _ => return None,
            }
        }
        let keep = holder.unwrap_or(0);
        for (shard, stream) in self.shards.iter_mut().enumerate() {
            if shard != keep {
                // A shard without the order answers with one rejection.
                let dropped = stream.pop();
                debug_assert!(dropped.is_ok_and(|out| out.last), "Invariant: a non-holder answers with one event");
            }
        }
        Some(keep)
    }

    /// The last `seq` whose events may go out (everything, without a journal).
    fn released(&self) -> Seq {
        self.journal.as_ref().map_or(Seq::MAX, |status| status.durable.load(Ordering::Acquire))
    }

    /// Why the journal stopped, if it did: no event after the last durable
    /// `seq` will ever be delivered.
    pub fn journal_failure(&self) -> Option<String> {
        match self.health.stopped() {
            Some(Stopped::JournalFailed(reason)) => Some(reason.clone()),
            _ => None,
        }
    }

    /// Why the engine stopped, if it did.
    pub fn stopped(&self) -> Option<Stopped> {
        self.health.stopped().cloned()
    }

    /// Whether nothing more will ever be delivered: the engine has shut down
    /// and everything is delivered; or the journal failed and everything
    /// durable is delivered; or a shard failed (what the others had ready
    /// was delivered by the last poll; the dead shard's part never comes).
    pub fn is_done(&self) -> bool {
        self.is_finished()
            || match self.health.stopped() {
                Some(Stopped::JournalFailed(_)) => self.next_seq > self.released(),
                Some(Stopped::ShardFailed(_)) => true,
                _ => false,
            }
    }

    /// Whether the engine has shut down and everything it sent is delivered.
    pub fn is_finished(&self) -> bool {
        self.shards.iter().all(|s| s.is_abandoned() && s.is_empty())
            && self.external.is_abandoned()
            && self.external.is_empty()
    }

    /// Delivers items as they come until nothing more will be (see
    /// [`EventReader::is_done`]). Waits with the engine's wait strategy.
    pub fn run(&mut self, mut handler: impl FnMut(Output<'_, X>)) {
        loop {
            let mark = self.mark();
            if self.poll(&mut handler) > 0 {
                continue;
            }
            if self.is_done() {
                return;
            }
            self.wait_since(mark, || false);
        }
    }

    /// What the reader has seen: take it *before* a [`EventReader::poll`]
    /// that delivers nothing, then [`EventReader::wait_since`] it.
    pub fn mark(&self) -> Mark {
        Mark { buffered: self.buffered(), released: self.released() }
    }

    /// Waits a little (the engine's wait strategy: spin, yield, or sleep
    /// until woken) for anything new since `mark`: items in the rings, a
    /// later durable `seq`, the end of the engine, or `also_ready()` (a
    /// caller's other source of work; whoever makes it true must unpark
    /// this thread). Returns at once if something already changed. Items
    /// that arrive between `mark` and the poll after it count as new, so
    /// none is slept past.
    pub fn wait_since(&mut self, mark: Mark, also_ready: impl Fn() -> bool) {
        let signal = Arc::clone(&self.signal);
        let mut idle = std::mem::replace(&mut self.idle, Backoff::new(self.wait));
        idle.wait_until(&signal, || {
            self.buffered() != mark.buffered || self.released() != mark.released || self.is_done() || also_ready()
        });
        self.idle = idle;
    }

    /// Items in the rings, delivered or not yet.
    fn buffered(&self) -> usize {
        self.external.slots() + self.shards.iter().map(|s| s.slots()).sum::<usize>()
    }

    /// The `seq` whose events come next (everything before it is delivered).
    pub fn next_seq(&self) -> Seq {
        self.next_seq
    }
}
