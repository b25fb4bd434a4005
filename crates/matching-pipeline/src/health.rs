//! Whether the engine can go on. Every part that the others cannot run
//! without (the reader, each shard, the journal) reports here when it
//! stops for good; the sequencer refuses new commands from then on, and the
//! reader stops waiting for events that will never come. The first reason
//! is kept.

use std::fmt;
use std::sync::{Arc, OnceLock};

/// Why the engine stopped taking commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The [`crate::EventReader`] was dropped: no event would reach anyone.
    ReaderGone,
    /// A shard thread panicked; its books are lost to this run.
    ShardFailed(usize),
    /// The journal cannot write (the reason) or its thread panicked: nothing
    /// more can be made durable, so nothing more is released.
    JournalFailed(String),
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stopped::ReaderGone => f.write_str("the engine stopped: its event reader was dropped"),
            Stopped::ShardFailed(shard) => write!(f, "the engine stopped: shard {shard} failed"),
            Stopped::JournalFailed(reason) => write!(f, "the engine stopped: the journal failed: {reason}"),
        }
    }
}

impl std::error::Error for Stopped {}

#[derive(Default, Debug)]
pub(crate) struct Health {
    stopped: OnceLock<Stopped>,
}

impl Health {
    /// Records why the engine stops, unless a reason is already recorded;
    /// returns the reason that stands (the first).
    pub(crate) fn stop(&self, why: Stopped) -> Stopped {
        self.stopped.get_or_init(|| why).clone()
    }

    /// `Err` once the engine has stopped. One atomic load when it runs.
    #[inline]
    pub(crate) fn check(&self) -> Result<(), Stopped> {
        match self.stopped.get() {
            None => Ok(()),
            Some(why) => Err(why.clone()),
        }
    }

    pub(crate) fn stopped(&self) -> Option<&Stopped> {
        self.stopped.get()
    }
}

/// Lives on a thread's stack; if the thread unwinds from a panic, records
/// `why` (under `panic = "abort"` the process ends instead).
pub(crate) struct PanicGuard {
    pub(crate) health: Arc<Health>,
    pub(crate) why: Option<Stopped>,
}

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(why) = self.why.take()
        {
            self.health.stop(why);
        }
    }
}
