//! A shard: one thread that owns the books of its symbols and nothing else.
//! It drains its input ring in batches, matches, and writes events to its
//! output ring in batches. No locks, no allocation per command.
//!
//! It never waits on a peer that is gone: when the engine's end of its input
//! ring is dropped it stops, and when the reader's end of its output ring is
//! dropped it goes on matching (so its books stay what the journal says) and
//! drops the events nobody will read.

use std::sync::Arc;
use std::sync::mpsc::SyncSender;

use matching_core::{Event, EventSink, Exchange, Side, TradingStatus};
use rtrb::{Consumer, Producer};

use crate::message::{Answer, Answering, Query, ShardInput, ShardOutput};
use crate::wait::{Backoff, Signal, WaitStrategy};

/// Commands taken from the input ring at a time.
const INPUT_BATCH: usize = 256;
/// Events gathered before they are written to the output ring.
const OUTPUT_BATCH: usize = 512;

pub(crate) struct Worker {
    pub(crate) exchange: Exchange,
    pub(crate) input: Consumer<ShardInput>,
    /// This shard sleeps on it (with [`WaitStrategy::Park`]).
    pub(crate) input_signal: Arc<Signal>,
    pub(crate) sink: OutputSink,
    pub(crate) answers: SyncSender<Answer>,
    pub(crate) wait: WaitStrategy,
}

/// Gathers a command's events and writes them to the output ring.
pub(crate) struct OutputSink {
    pub(crate) output: Producer<ShardOutput>,
    /// Events not yet written. Invariant: at most `OUTPUT_BATCH`.
    pub(crate) pending: Vec<ShardOutput>,
    /// How the merger combines the answers of the command being processed.
    pub(crate) answering: Answering,
    /// The reader is gone: events are dropped instead of written.
    pub(crate) reader_gone: bool,
    /// The merger sleeps on it.
    pub(crate) output_signal: Arc<Signal>,
    pub(crate) wait: WaitStrategy,
}

impl EventSink for OutputSink {
    #[inline]
    fn event(&mut self, event: &Event) {
        if self.pending.len() == OUTPUT_BATCH {
            // Keep the newest: it may be its command's last, flagged later.
            self.write_pending(OUTPUT_BATCH - 1);
        }
        self.pending.push(ShardOutput { event: *event, last: false, answering: self.answering });
    }
}

impl OutputSink {
    /// Writes the first `n` pending events to the ring, waiting for room
    /// while the reader is there; drops them once it is gone.
    fn write_pending(&mut self, n: usize) {
        let mut written = 0;
        let mut backoff = Backoff::new(self.wait);
        while written < n && !self.reader_gone {
            let (done, _) = self.output.push_partial_slice(&self.pending[written..n]);
            if done.is_empty() {
                self.reader_gone = backoff.wait_for_room(&self.output).is_err();
                continue;
            }
            written += done.len();
            backoff.reset();
            if self.wait == WaitStrategy::Park {
                self.output_signal.wake();
            }
        }
        self.pending.drain(..n);
    }

    pub(crate) fn flush(&mut self) {
        self.write_pending(self.pending.len());
    }

    /// Flags the last pending event as its command's last.
    #[inline]
    fn end_command(&mut self) {
        match self.pending.last_mut() {
            Some(last) => last.last = true,
            None => debug_assert!(false, "Invariant: every command has at least one event"),
        }
    }
}

impl Worker {
    /// Runs until `Shutdown` (or until the engine's end of the input ring
    /// is dropped), then hands back the books.
    pub(crate) fn run(self) -> Exchange {
        let Worker { mut exchange, mut input, input_signal, mut sink, answers, wait } = self;
        let mut backoff = Backoff::new(wait);
        loop {
            let available = input.slots();
            if available == 0 {
                sink.flush();
                if backoff.wait_for_data(&input_signal, &input).is_err() {
                    return exchange;
                }
                continue;
            }
            backoff.reset();
            let Ok(chunk) = input.read_chunk(available.min(INPUT_BATCH)) else {
                continue;
            };
            let (first, second) = chunk.as_slices();
            let mut shutdown = false;
            for item in first.iter().chain(second) {
                match item {
                    ShardInput::Command(command) | ShardInput::Broadcast(command) | ShardInput::Span(command) => {
                        sink.answering = match item {
                            ShardInput::Broadcast(_) => Answering::Broadcast,
                            ShardInput::Span(_) => Answering::Span,
                            _ => Answering::One,
                        };
                        exchange.process(command, &mut sink);
                        sink.end_command();
                    }
                    ShardInput::Query(query) => {
                        sink.flush();
                        // The engine waits for this answer; if it is gone, so is the engine.
                        let _ = answers.send(answer(&exchange, query));
                    }
                    ShardInput::Shutdown => shutdown = true,
                    #[cfg(feature = "fault-injection")]
                    ShardInput::Panic => panic!("fault injection: shard panics"),
                }
            }
            chunk.commit_all();
            sink.flush();
            if shutdown {
                return exchange;
            }
        }
    }
}

fn answer(exchange: &Exchange, query: &Query) -> Answer {
    match *query {
        Query::Best(symbol) => match exchange.book(&symbol) {
            Some(book) => Answer::Best { bid: book.best_bid(), ask: book.best_ask() },
            None => Answer::Best { bid: None, ask: None },
        },
        Query::Depth(symbol, levels) => match exchange.book(&symbol) {
            Some(book) => Answer::Depth {
                bids: book.depth(Side::Buy).take(levels).collect(),
                asks: book.depth(Side::Sell).take(levels).collect(),
            },
            None => Answer::Depth { bids: Vec::new(), asks: Vec::new() },
        },
        Query::Book(symbol) => match exchange.book(&symbol) {
            Some(book) => Answer::Book {
                bids: book.orders(Side::Buy).collect(),
                asks: book.orders(Side::Sell).collect(),
                status: book.status(),
            },
            None => Answer::Book { bids: Vec::new(), asks: Vec::new(), status: TradingStatus::Open },
        },
        Query::State => Answer::State(exchange.book_states()),
    }
}
