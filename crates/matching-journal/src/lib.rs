//! Durability: a write-ahead journal of sequenced commands, snapshots, and
//! recovery to the identical state. See `docs/JOURNAL.md` for the format.

#![deny(unsafe_code)]

pub mod format;
