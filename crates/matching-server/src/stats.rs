//! The service's counters. The driver and the md thread each own theirs
//! (plain one-writer counters: an increment is a load and a store on memory
//! the thread owns); the sessions share theirs (atomic adds, off the
//! matching path). [`crate::ops`] reads them all when `/metrics` is scraped
//! and publishes them through the `metrics` facade.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use matching_core::{RejectReason, Symbol};
use matching_pipeline::{Counter, Histogram, LATENCY_NS_BOUNDS};
use matching_proto::session::GatewayReason;
use rustc_hash::FxHashMap;

/// A front door.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Binary,
    Json,
    WebSocket,
    Fix,
}

impl Protocol {
    pub const ALL: [Protocol; 4] = [Protocol::Binary, Protocol::Json, Protocol::WebSocket, Protocol::Fix];

    pub fn label(self) -> &'static str {
        match self {
            Protocol::Binary => "binary",
            Protocol::Json => "json",
            Protocol::WebSocket => "websocket",
            Protocol::Fix => "fix",
        }
    }
}

/// What a command was, for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CommandKind {
    New,
    Cancel,
    Modify,
    MassCancel,
    Halt,
    Resume,
    /// `orders` and `ping`: answered by the driver, not the engine.
    Query,
}

impl CommandKind {
    pub(crate) const ALL: [CommandKind; 7] = [
        CommandKind::New,
        CommandKind::Cancel,
        CommandKind::Modify,
        CommandKind::MassCancel,
        CommandKind::Halt,
        CommandKind::Resume,
        CommandKind::Query,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            CommandKind::New => "new",
            CommandKind::Cancel => "cancel",
            CommandKind::Modify => "modify",
            CommandKind::MassCancel => "mass_cancel",
            CommandKind::Halt => "halt",
            CommandKind::Resume => "resume",
            CommandKind::Query => "query",
        }
    }
}

/// Symbols that get their own label on the trade counters (the first to
/// trade); every later one is counted as `other`, so the label set stays bounded.
pub const SYMBOL_LABELS_MAX: usize = 32;

/// Why a session ended, as a bounded label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The client closed the connection (or it broke).
    ClientLeft,
    Logout,
    /// The driver dropped it: its outbox was full.
    SlowReader,
    /// A write did not finish in time.
    WriteTimeout,
    /// A binary client went silent.
    IdleTimeout,
    /// Messages in a row that were not requests.
    Garbage,
    /// No login in time.
    LoginTimeout,
    BadCredentials,
    /// An operator disconnected it (the console).
    Operator,
    /// The server is stopping, or the engine stopped.
    Shutdown,
}

impl Cause {
    pub const ALL: [Cause; 10] = [
        Cause::ClientLeft,
        Cause::Logout,
        Cause::SlowReader,
        Cause::WriteTimeout,
        Cause::IdleTimeout,
        Cause::Garbage,
        Cause::LoginTimeout,
        Cause::BadCredentials,
        Cause::Operator,
        Cause::Shutdown,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Cause::ClientLeft => "client_left",
            Cause::Logout => "logout",
            Cause::SlowReader => "slow_reader",
            Cause::WriteTimeout => "write_timeout",
            Cause::IdleTimeout => "idle_timeout",
            Cause::Garbage => "garbage",
            Cause::LoginTimeout => "login_timeout",
            Cause::BadCredentials => "bad_credentials",
            Cause::Operator => "operator",
            Cause::Shutdown => "shutdown",
        }
    }
}

/// The driver's counters (it alone writes them).
#[derive(Debug)]
pub(crate) struct DriverStats {
    /// `[protocol][kind]`: requests taken from sessions.
    pub(crate) commands: [[Counter; CommandKind::ALL.len()]; Protocol::ALL.len()],
    /// The engine's rejections, by reason (`RejectReason` order).
    pub(crate) rejected: [Counter; RejectReason::ALL.len()],
    /// The driver's own refusals (`GatewayReason` order).
    pub(crate) refused: [Counter; GatewayReason::ALL.len()],
    /// Trades and quantity traded by symbol label (the last slot is `other`).
    pub(crate) trades: [Counter; SYMBOL_LABELS_MAX + 1],
    pub(crate) traded_qty: [Counter; SYMBOL_LABELS_MAX + 1],
    /// The symbols with a label, in slot order (written when one is added).
    pub(crate) symbol_labels: Mutex<Vec<Symbol>>,
    /// From a request reaching the driver to its answer going to the
    /// session (the command durable), in nanoseconds.
    pub(crate) ack_ns: Histogram,
    /// Users whose kill switch is on.
    pub(crate) kill_switches: Counter,
    /// Sessions logged in, by protocol.
    pub(crate) sessions: [Counter; Protocol::ALL.len()],
}

impl Default for DriverStats {
    fn default() -> DriverStats {
        DriverStats {
            commands: Default::default(),
            rejected: Default::default(),
            refused: Default::default(),
            trades: std::array::from_fn(|_| Counter::default()),
            traded_qty: std::array::from_fn(|_| Counter::default()),
            symbol_labels: Mutex::new(Vec::new()),
            ack_ns: Histogram::new(LATENCY_NS_BOUNDS),
            kill_switches: Counter::default(),
            sessions: Default::default(),
        }
    }
}

/// The driver's map from symbol to trade-counter slot.
#[derive(Default)]
pub(crate) struct SymbolSlots {
    slots: FxHashMap<Symbol, usize>,
}

impl SymbolSlots {
    /// The slot of `symbol`: its own while there is room, else `other`.
    pub(crate) fn slot(&mut self, symbol: Symbol, stats: &DriverStats) -> usize {
        if let Some(&slot) = self.slots.get(&symbol) {
            return slot;
        }
        if self.slots.len() >= SYMBOL_LABELS_MAX {
            return SYMBOL_LABELS_MAX;
        }
        let slot = self.slots.len();
        self.slots.insert(symbol, slot);
        stats.symbol_labels.lock().unwrap_or_else(|p| p.into_inner()).push(symbol);
        slot
    }
}

/// What sessions count (many writers: atomic adds).
#[derive(Debug, Default)]
pub(crate) struct SessionStats {
    /// `[protocol][cause]`.
    pub(crate) ended: [[AtomicU64; Cause::ALL.len()]; Protocol::ALL.len()],
    /// Refused in a session before the driver (`GatewayReason` order).
    pub(crate) refused: [AtomicU64; GatewayReason::ALL.len()],
    /// Connections open now, logged in or not, by protocol.
    pub(crate) connections: [AtomicI64; Protocol::ALL.len()],
}

impl SessionStats {
    pub(crate) fn ended(&self, protocol: Protocol, cause: Cause) {
        let cause = Cause::ALL.iter().position(|c| *c == cause).unwrap_or(0);
        self.ended[protocol as usize][cause].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refused(&self, reason: GatewayReason) {
        self.refused[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// The md thread's counters (it alone writes them).
#[derive(Debug, Default)]
pub(crate) struct MdStats {
    /// Feed messages published.
    pub(crate) messages: Counter,
    /// Feed packets sent (to each address).
    pub(crate) packets: Counter,
    /// Packets a socket refused (nobody listening, a full buffer).
    pub(crate) send_errors: Counter,
    /// JSON subscriptions now.
    pub(crate) subscriptions: Counter,
    /// Book and bbo subscribers conflated (updates dropped, a snapshot owed).
    pub(crate) conflations: Counter,
    /// Trades subscribers cut off.
    pub(crate) cut_offs: Counter,
}
