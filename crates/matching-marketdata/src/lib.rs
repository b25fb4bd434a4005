//! Market data: the order-by-order feed derived from the engine's events.
//!
//! - [`Publisher`] turns the engine's events (in `seq` order, durable) into
//!   feed messages (`matching_proto::feed`), deterministically, and keeps
//!   the book they describe.
//! - [`FeedBook`] is that book: applying the feed's messages rebuilds it
//!   (a feed client does exactly that), with its aggregated levels and
//!   their checksum; [`view_updates`] turns a level change into the
//!   JSON `level` updates a subscriber of the best N levels hears.
//! - [`LevelBook`] is a JSON `book` subscriber's book, checked as it goes.
//! - [`FeedWindow`] keeps the last messages sent and answers re-requests.
//! - [`Tape`] is a symbol's trading since start: last, volume, recent
//!   trades and candles (what the web page and `/api/` read).
//!
//! No I/O here: the server sends what the publisher writes, the client
//! feeds what it receives to a [`FeedBook`].

#![deny(unsafe_code)]

mod book;
mod levels;
mod publisher;
mod tape;
mod window;

pub use book::{FeedBook, FeedBookError, FeedOrder, LevelChange, view_updates};
pub use levels::{LevelBook, SyncError};
pub use publisher::{Publisher, Sink};
pub use tape::{CANDLES_KEPT, Candle, Interval, TRADES_KEPT, Tape, TapeTrade};
pub use window::FeedWindow;

#[cfg(test)]
mod tests;
