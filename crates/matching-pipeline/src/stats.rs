//! What a running engine lets any thread watch: plain counters that the
//! thread owning each one writes (a load and a store, no locked
//! instruction: one writer) and any thread reads, for metrics and status.
//!
//! Nothing here is on the per-command path of a shard: the sequencer notes
//! its rings' fill once per batch, the journal thread its groups once per
//! commit. Readers (a metrics scrape) see values a moment old, never torn.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use matching_core::Seq;

use crate::health::{Health, Stopped};

/// A counter with one writer: `add` is a plain load and store.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the one thread that owns the counter may call it.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    #[inline]
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A histogram with one writer: a count per bucket (bucket `i` holds values
/// `<= bounds[i]`, the last one everything above), and the sum of values.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    counts: Box<[Counter]>,
    sum: Counter,
}

/// What a [`Histogram`] holds at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Each bucket's upper bound (the last, unbounded bucket has none).
    pub bounds: &'static [u64],
    /// `bounds.len() + 1` counts, not cumulative.
    pub counts: Vec<u64>,
    pub sum: u64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl Histogram {
    pub fn new(bounds: &'static [u64]) -> Histogram {
        debug_assert!(bounds.is_sorted(), "Invariant: bucket bounds ascend");
        Histogram { bounds, counts: (0..=bounds.len()).map(|_| Counter::default()).collect(), sum: Counter::default() }
    }

    /// Counts `value`. Only the one thread that owns the histogram may call it.
    #[inline]
    pub fn record(&self, value: u64) {
        let bucket = self.bounds.partition_point(|&bound| bound < value);
        self.counts[bucket].add(1);
        self.sum.add(value);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            counts: self.counts.iter().map(Counter::get).collect(),
            sum: self.sum.get(),
        }
    }
}

/// Bounds for durations in nanoseconds: 10 µs to 1 s.
pub const LATENCY_NS_BOUNDS: &[u64] = &[
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
];

/// Bounds for records in a journal group.
pub const GROUP_RECORDS_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384];

/// Bounds for bytes in a journal group.
pub const GROUP_BYTES_BOUNDS: &[u64] = &[256, 1024, 4096, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20];

/// The journal thread's account of its groups.
#[derive(Debug)]
pub struct JournalStats {
    /// Records per group written.
    pub group_records: Histogram,
    /// Bytes per group written.
    pub group_bytes: Histogram,
    /// How long each `fdatasync` took, in nanoseconds.
    pub fsync_ns: Histogram,
}

impl Default for JournalStats {
    fn default() -> JournalStats {
        JournalStats {
            group_records: Histogram::new(GROUP_RECORDS_BOUNDS),
            group_bytes: Histogram::new(GROUP_BYTES_BOUNDS),
            fsync_ns: Histogram::new(LATENCY_NS_BOUNDS),
        }
    }
}

/// What any thread may watch of a running engine ([`crate::Engine::monitor`]).
#[derive(Debug)]
pub struct Monitor {
    /// Per shard: commands in its input ring, as the sequencer last saw it
    /// (once per batch).
    pub(crate) ring_fill: Box<[Counter]>,
    pub(crate) ring_capacity: usize,
    /// With a journal: its groups, and how far it is durable.
    pub(crate) journal: Option<Arc<crate::durable::JournalStatus>>,
    pub(crate) health: Arc<Health>,
}

impl Monitor {
    /// Per shard: `(commands waiting in its input ring, the ring's capacity)`.
    pub fn rings(&self) -> Vec<(u64, usize)> {
        self.ring_fill.iter().map(|fill| (fill.get(), self.ring_capacity)).collect()
    }

    /// The journal's groups (with a journal).
    pub fn journal(&self) -> Option<&JournalStats> {
        self.journal.as_ref().map(|status| &status.stats)
    }

    /// The last `seq` known durable (with a journal).
    pub fn durable_seq(&self) -> Option<Seq> {
        self.journal.as_ref().map(|status| status.durable.load(Ordering::Acquire))
    }

    /// Why the engine stopped, if it did.
    pub fn stopped(&self) -> Option<Stopped> {
        self.health.stopped().cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_value_in_the_first_bucket_that_holds_it() {
        let histogram = Histogram::new(&[10, 100]);
        for value in [0, 10, 11, 100, 101, 5_000] {
            histogram.record(value);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.counts, vec![2, 2, 2]);
        assert_eq!((snapshot.count(), snapshot.sum), (6, 5_222));
    }
}
