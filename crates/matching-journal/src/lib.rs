//! Durability: a write-ahead journal of sequenced commands, snapshots, and
//! recovery to the identical state. See `docs/JOURNAL.md` for the format.

#![deny(unsafe_code)]

pub mod format;
mod journal;
pub mod manifest;
pub mod storage;

pub use manifest::{Layout, MANIFEST_FILE, Manifest, read_manifest, write_manifest};

pub use journal::{
    JournalState, JournalWriter, NOTE_MAX, Note, Record, RecoveryError, RecoveryReport, SEGMENT_BYTES_DEFAULT,
    TornTail, recover, segment_name, snapshot_name, write_snapshot, write_snapshot_with,
};
