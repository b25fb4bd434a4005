//! What a thread does while a ring it needs is empty (consumer) or full
//! (producer): spin, yield, or sleep until woken; and, every time, whether
//! the thread at the other end is still there. A peer that is gone (its end
//! of the ring dropped: it returned, panicked or was dropped) will never make
//! room or send data, so every wait fails fast with [`PeerGone`] instead of
//! spinning forever.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::thread::{self, Thread};
use std::time::Duration;

use rtrb::{Consumer, Producer};

/// How a waiting thread spends its time. Measured in `docs/BENCHMARKS.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum WaitStrategy {
    /// Spin on the ring forever: the lowest latency, and a whole core per
    /// waiting thread. Only for machines with a core for every thread.
    BusySpin,
    /// Spin briefly, then `yield` to the scheduler between checks: low
    /// latency while busy, and other threads on the core still run.
    #[default]
    SpinYield,
    /// Spin briefly, yield a little, then sleep until the producer wakes
    /// the thread (or a timeout passes): no CPU at all when idle.
    Park,
}

/// Spins before yielding, in checks.
const SPINS: u32 = 64;
/// Yields before parking (with [`WaitStrategy::Park`]).
const YIELDS: u32 = 16;
/// The longest a parked thread sleeps without being woken: a bound on the
/// cost of any missed wake-up, never the normal path.
pub(crate) const PARK_TIMEOUT: Duration = Duration::from_millis(1);
/// A producer waiting for room in a full ring (back-pressure) sleeps this
/// long at a time once spinning and yielding have not helped.
const FULL_RING_SLEEP: Duration = Duration::from_micros(20);

/// One wait, escalating with each unsuccessful check.
pub(crate) struct Backoff {
    strategy: WaitStrategy,
    step: u32,
}

impl Backoff {
    pub(crate) fn new(strategy: WaitStrategy) -> Backoff {
        Backoff { strategy, step: 0 }
    }

    pub(crate) fn reset(&mut self) {
        self.step = 0;
    }

    /// Waits a little for room in `ring`, which was full (nobody wakes a
    /// producer); fails once its consumer is gone, as it will never make room.
    pub(crate) fn wait_for_room<T>(&mut self, ring: &Producer<T>) -> Result<(), PeerGone> {
        if ring.is_abandoned() {
            return Err(PeerGone);
        }
        self.pause();
        Ok(())
    }

    /// Waits a little for data in `ring`, which was empty; fails once it is
    /// empty and its producer is gone, as nothing more will ever come.
    pub(crate) fn wait_for_data<T>(&mut self, signal: &Signal, ring: &Consumer<T>) -> Result<(), PeerGone> {
        if ring.is_abandoned() && ring.is_empty() {
            return Err(PeerGone);
        }
        self.wait_until(signal, || !ring.is_empty() || ring.is_abandoned());
        Ok(())
    }

    /// Spins, yields or sleeps a little, escalating with each call.
    pub(crate) fn pause(&mut self) {
        self.step = self.step.saturating_add(1);
        match self.strategy {
            WaitStrategy::BusySpin => std::hint::spin_loop(),
            _ if self.step <= SPINS => std::hint::spin_loop(),
            WaitStrategy::SpinYield => thread::yield_now(),
            WaitStrategy::Park if self.step <= SPINS + YIELDS => thread::yield_now(),
            WaitStrategy::Park => thread::sleep(FULL_RING_SLEEP),
        }
    }

    /// Waits a little for something `ready` checks (data in one of several
    /// rings, say): it re-checks after the thread has announced it may
    /// sleep, so a producer that publishes at that moment either sees the
    /// announcement or is seen. The caller checks its peers.
    pub(crate) fn wait_until(&mut self, signal: &Signal, ready: impl Fn() -> bool) {
        self.step = self.step.saturating_add(1);
        match self.strategy {
            WaitStrategy::BusySpin => std::hint::spin_loop(),
            _ if self.step <= SPINS => std::hint::spin_loop(),
            WaitStrategy::SpinYield => thread::yield_now(),
            WaitStrategy::Park if self.step <= SPINS + YIELDS => thread::yield_now(),
            WaitStrategy::Park => signal.park(ready),
        }
    }
}

/// The thread at the other end of a ring is gone: it will never make room or
/// send anything again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PeerGone;

/// Lets a consumer sleep and a producer wake it. Used only with
/// [`WaitStrategy::Park`]; with the others producers never look at it.
#[derive(Default)]
pub(crate) struct Signal {
    sleeping: AtomicBool,
    thread: Mutex<Option<Thread>>,
}

impl Signal {
    fn park(&self, ready: impl Fn() -> bool) {
        // The thread that sleeps now is the one to wake (a reader may move
        // between threads: remembering only the first would wake nobody).
        if let Ok(mut slot) = self.thread.lock() {
            let current = thread::current();
            if slot.as_ref().is_none_or(|t| t.id() != current.id()) {
                *slot = Some(current);
            }
        }
        self.sleeping.store(true, Ordering::SeqCst);
        // Pairs with the fence in `wake`: either the producer sees
        // `sleeping`, or this check sees what it published.
        fence(Ordering::SeqCst);
        if !ready() {
            thread::park_timeout(PARK_TIMEOUT);
        }
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// Called by a producer after it published: wakes the consumer if it sleeps.
    #[inline]
    pub(crate) fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed)
            && let Ok(slot) = self.thread.lock()
            && let Some(thread) = slot.as_ref()
        {
            thread.unpark();
        }
    }
}
