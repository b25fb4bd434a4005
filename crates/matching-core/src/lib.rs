//! The order-book core of the matching engine.
//!
//! A pure, deterministic library: typed [`Command`]s go into an
//! [`Exchange`] (the books of many symbols), and [`Event`]s come out through
//! an [`EventSink`] the caller provides. No I/O, no clock, no randomness,
//! no threads; the same commands always produce the same events, byte for
//! byte, and the same [`Exchange::state_hash`].
//!
//! ```
//! use matching_core::*;
//!
//! let btc = Symbol::new("BTC-USD").unwrap();
//! let mut exchange = Exchange::new(Config::default());
//! let mut events = Vec::new();
//! exchange.process(&Command::new(1, Action::New(NewOrder::limit(1, 2, btc, Side::Sell, 100, 3))), &mut events);
//! exchange.process(&Command::new(2, Action::New(NewOrder::limit(2, 4, btc, Side::Buy, 101, 5).with_tif(Tif::Ioc))), &mut events);
//! assert!(matches!(events[2].kind, EventKind::Trade(Trade { price: 100, qty: 3, .. })));
//! assert_eq!(exchange.book(&btc).unwrap().best_ask(), None);
//! ```
//!
//! Semantics are those of `SPEC.md` (price-time priority, limit and market
//! orders, `gtc`/`ioc`/`fok`, post-only, self-trade prevention, cancel,
//! modify, mass cancel, halt and resume); `docs/SEMANTICS.md` records the choices made where it is silent.

#![deny(unsafe_code)]

mod book;
mod exchange;
mod id_index;
pub mod levels;
mod orders;
mod owners;
mod radix;
mod snapshot;
mod types;

pub use exchange::{BookView, Config, Exchange};
pub use levels::{BTreeLevels, LadderLevels, PriceLevels, SortedVecLevels};
pub use radix::RadixLevels;
pub use snapshot::{BookState, STATE_VERSION, StateError, encode_books, hash_books, hash_encoded_state, state_version};
pub use types::*;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
