//! Wire encodings of the engine's commands and events.
//!
//! - [`json`]: SPEC's JSON lines (`replay` and the JSON wire protocol):
//!   [`json::parse_command`] turns one line into a typed [`Action`] or the
//!   rejection SPEC demands, [`json::write_event`] and
//!   [`json::write_book`] write events and book dumps.
//!
//! [`Action`]: matching_core::Action

#![deny(unsafe_code)]

pub mod binary;
pub mod feed;
pub mod json;
pub mod json_md;
pub mod json_session;
pub mod session;
