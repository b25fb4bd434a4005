//! FIX 4.4 for the matching engine's FIX gateway: the tag=value codec and the
//! acceptor's session layer, with no network I/O.
//!
//! What is here:
//! - [`codec`] (re-exported at the root): [`frame_len`] cuts a byte stream
//!   into messages (and [`resync`] finds the next one after garbage),
//!   [`parse`] checks one frame (BodyLength, CheckSum, field syntax, duplicate
//!   tags) into a [`Message`], [`encode`] writes a message with its standard
//!   header and trailer, [`Body`] builds pre-encoded `tag=value<SOH>` bodies.
//! - [`store`]: the [`Store`] of sequence numbers and sent application
//!   messages that a resend needs: [`MemoryStore`] for tests, [`FileStore`]
//!   (an append-only, checksummed, compacted log) to survive a restart.
//! - [`session`]: [`Session`], the acceptor's state machine (Logon, sequence
//!   checks, gap queueing and ResendRequest, serving the peer's
//!   ResendRequest with PossDup resends and gap fills, TestRequest and
//!   heartbeats, Logout). It is pure: frames and time go in, bytes to write
//!   and [`Action`]s come out, so a test drives it without a socket.
//!
//! What is not here: sockets, TLS, threads, timers that fire by themselves,
//! logging, authentication (Username/Password), the mapping of application
//! messages (NewOrderSingle, ExecutionReport, …) onto the engine, and a data
//! dictionary. The gateway in `matching-server` owns the connection: it reads
//! bytes, cuts them with [`frame_len`], hands each frame to
//! [`Session::on_frame`], calls [`Session::on_timer`] about once a second,
//! writes [`Session::output`] to the socket and calls [`Store::flush`] after
//! each batch, and closes the socket on [`Action::Disconnect`].
//!
//! Limits (see each item): a frame is at most
//! [`SessionConfig::max_message_len`] bytes; at most [`MAX_QUEUED`] messages
//! wait behind a sequence gap; a store keeps its last `capacity` application
//! messages (older ones are gap-filled on a resend).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
pub mod session;
pub mod store;
mod timestamp;

pub use codec::{
    Body, FrameError, Header, Message, ParseError, SOH, checksum, encode, frame_len, parse, reject_reason, resync,
};
pub use session::{Action, LOGOUT_TIMEOUT, MAX_QUEUED, Session, SessionConfig};
pub use store::{FileStore, MemoryStore, Store};
pub use timestamp::{parse_utc_timestamp, write_utc_timestamp};
