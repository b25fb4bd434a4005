//! A symbol's aggregated book as a subscriber of the JSON `book` channel
//! keeps it, checking every message against its `md_seq` and checksum.

use std::collections::BTreeMap;

use matching_core::Side;
use matching_proto::json_md::{Level, MdMessage, book_checksum};

/// Why a [`LevelBook`] is out of sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncError {
    /// A `level` whose `md_seq` is not the one after the last (whole book only).
    Gap { expected: u64, got: u64 },
    /// The book after a message does not hash to its checksum.
    Checksum { md_seq: u64, expected: u32, computed: u32 },
    /// An update before any snapshot.
    NoSnapshot,
}

/// A symbol's aggregated book as a subscriber keeps it.
#[derive(Clone, Debug, Default)]
pub struct LevelBook {
    pub bids: BTreeMap<u64, u128>,
    pub asks: BTreeMap<u64, u128>,
    /// The `md_seq` of the last message applied.
    pub md_seq: Option<u64>,
    /// The best levels kept (`None`: all).
    pub depth: Option<usize>,
}

impl LevelBook {
    pub fn new(depth: Option<usize>) -> LevelBook {
        LevelBook { depth, ..LevelBook::default() }
    }

    /// A side, best first.
    pub fn side(&self, side: Side) -> Vec<Level> {
        match side {
            Side::Buy => self.bids.iter().rev().map(|(&p, &q)| (p, q)).collect(),
            Side::Sell => self.asks.iter().map(|(&p, &q)| (p, q)).collect(),
        }
    }

    pub fn checksum(&self) -> u32 {
        book_checksum(&self.side(Side::Buy), &self.side(Side::Sell))
    }

    /// Applies a `book` or `level` message of this symbol (others are
    /// ignored) and checks it.
    pub fn apply(&mut self, message: &MdMessage) -> Result<(), SyncError> {
        match message {
            MdMessage::Book { md_seq, bids, asks, checksum, .. } => {
                self.bids = bids.iter().copied().collect();
                self.asks = asks.iter().copied().collect();
                self.md_seq = Some(*md_seq);
                self.check(*md_seq, *checksum)
            }
            MdMessage::Level { md_seq, side, price, qty, checksum, .. } => {
                let Some(last) = self.md_seq else { return Err(SyncError::NoSnapshot) };
                if self.depth.is_none() && *md_seq != last + 1 {
                    return Err(SyncError::Gap { expected: last + 1, got: *md_seq });
                }
                let levels = match side {
                    Side::Buy => &mut self.bids,
                    Side::Sell => &mut self.asks,
                };
                if *qty == 0 {
                    levels.remove(price);
                } else {
                    levels.insert(*price, *qty);
                }
                self.md_seq = Some(*md_seq);
                self.check(*md_seq, *checksum)
            }
            _ => Ok(()),
        }
    }

    fn check(&self, md_seq: u64, expected: u32) -> Result<(), SyncError> {
        let computed = self.checksum();
        if computed != expected {
            return Err(SyncError::Checksum { md_seq, expected, computed });
        }
        Ok(())
    }
}
