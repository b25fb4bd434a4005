//! What a client and the server say to each other, whatever the encoding:
//! [`Request`]s in, [`Reply`]s out. `json` and `binary` encode these same
//! types, so a session behaves alike over every front door.
//!
//! Engine events reach a client as its owner sees them ([`ClientEvent`]):
//! a trade shows the receiver's own side of it (its order, side and
//! remaining quantity, and whether it made or took liquidity), never the
//! counterparty; every event about an order carries the order's client id
//! (`cid`) when it has one.

use matching_core::{
    Action, CancelReason, OrderId, OrderType, Price, Qty, RejectReason, Seq, Side, Symbol, Tif, TradingStatus, UserId,
};

pub use matching_core::{CID_LEN_MAX, Cid};

/// Longest API key a login may carry, in bytes.
pub const KEY_LEN_MAX: usize = 64;

/// The first message of every session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    pub user: UserId,
    /// The user's API key (at most [`KEY_LEN_MAX`] bytes; empty in the
    /// open development mode).
    pub key: String,
    /// Cancel every order of the user when its last session that asked for
    /// this drops.
    pub cancel_on_disconnect: bool,
    /// Replay the user's events after this `seq` before live ones.
    pub resume_after: Option<Seq>,
}

/// A client's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Login(Login),
    /// One of SPEC's commands. A `new` order's `order_id` is assigned by the
    /// engine (whatever the client put there); `user` is the session's for
    /// a trader, and for an operator the one given. `cid` names a new order.
    Command {
        action: Action,
        cid: Option<Cid>,
    },
    /// A cancel that names the order by its client id.
    CancelCid {
        user: UserId,
        cid: Cid,
    },
    /// A modify that names the order by its client id.
    ModifyCid {
        user: UserId,
        cid: Cid,
        price: Option<Price>,
        qty: Option<Qty>,
    },
    /// The user's resting orders.
    Orders,
    Ping,
    Logout,
}

/// Why the server refused a message before it reached the engine. Such a
/// rejection carries no `seq` and is not journaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GatewayReason {
    /// Not a message: bad JSON, a bad frame, a missing or ill-typed field.
    Malformed,
    /// An `op` (or message type) the server does not know.
    UnknownOp,
    /// A symbol that is not one.
    InvalidSymbol,
    /// A `tif` that is not one of its words.
    InvalidTif,
    /// Anything before a login, or a second login.
    NotLoggedIn,
    /// A trader sent what only an operator may (`halt`, `resume`).
    NotPermitted,
    /// A `new` whose cid names a live order of the user.
    DuplicateCid,
    /// A cancel or modify by a cid that names no live order of the user.
    UnknownCid,
    /// Over the session's rate limit.
    RateLimited,
    /// A frame or line over the size limit.
    TooLong,
    /// The engine has stopped (a failed disk, say): nothing more is taken.
    Unavailable,
    /// The user's kill switch is on (an operator's): no new order or
    /// modify until it is released; cancels are still taken.
    KillSwitch,
    /// A price that is not a multiple of the symbol's tick.
    InvalidTick,
    /// A quantity that is not a multiple of the symbol's lot.
    InvalidLot,
}

impl GatewayReason {
    pub const ALL: [GatewayReason; 14] = [
        GatewayReason::Malformed,
        GatewayReason::UnknownOp,
        GatewayReason::InvalidSymbol,
        GatewayReason::InvalidTif,
        GatewayReason::NotLoggedIn,
        GatewayReason::NotPermitted,
        GatewayReason::DuplicateCid,
        GatewayReason::UnknownCid,
        GatewayReason::RateLimited,
        GatewayReason::TooLong,
        GatewayReason::Unavailable,
        GatewayReason::KillSwitch,
        GatewayReason::InvalidTick,
        GatewayReason::InvalidLot,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GatewayReason::Malformed => "malformed",
            GatewayReason::UnknownOp => "unknown_op",
            GatewayReason::InvalidSymbol => "invalid_symbol",
            GatewayReason::InvalidTif => "invalid_tif",
            GatewayReason::NotLoggedIn => "not_logged_in",
            GatewayReason::NotPermitted => "not_permitted",
            GatewayReason::DuplicateCid => "duplicate_cid",
            GatewayReason::UnknownCid => "unknown_cid",
            GatewayReason::RateLimited => "rate_limited",
            GatewayReason::TooLong => "too_long",
            GatewayReason::Unavailable => "unavailable",
            GatewayReason::KillSwitch => "kill_switch",
            GatewayReason::InvalidTick => "invalid_tick",
            GatewayReason::InvalidLot => "invalid_lot",
        }
    }

    pub fn parse(text: &str) -> Option<GatewayReason> {
        GatewayReason::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// A message refused before the engine, and what of it could be read, so
/// that the rejection can echo it: the order id of a cancel or modify, the
/// cid of a new order or of the order a cancel or modify names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: GatewayReason,
    pub order_id: Option<OrderId>,
    pub cid: Option<Cid>,
}

impl Refusal {
    pub fn new(reason: GatewayReason) -> Refusal {
        Refusal { reason, order_id: None, cid: None }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason.as_str())
    }
}

impl std::error::Error for Refusal {}

impl From<Refusal> for Reply {
    fn from(refusal: Refusal) -> Reply {
        Reply::Rejected { reason: refusal.reason, order_id: refusal.order_id, cid: refusal.cid }
    }
}

/// Which side of a trade the receiver was on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Liquidity {
    /// Its order rested and was hit.
    Maker,
    /// Its order came in and hit.
    Taker,
}

impl Liquidity {
    pub fn as_str(self) -> &'static str {
        match self {
            Liquidity::Maker => "maker",
            Liquidity::Taker => "taker",
        }
    }
}

/// An engine event as the client it goes to sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    Accepted {
        order_id: OrderId,
        user: UserId,
        symbol: Symbol,
        side: Side,
        order_type: OrderType,
        tif: Tif,
        qty: Qty,
        price: Option<Price>,
        cid: Option<Cid>,
    },
    Rejected {
        reason: RejectReason,
        order_id: Option<OrderId>,
        cid: Option<Cid>,
    },
    /// The receiver's side of a trade.
    Fill {
        symbol: Symbol,
        trade_id: u64,
        price: Price,
        qty: Qty,
        order_id: OrderId,
        side: Side,
        liquidity: Liquidity,
        /// The receiver's order's quantity left after the fill.
        remaining: Qty,
        cid: Option<Cid>,
    },
    Cancelled {
        order_id: OrderId,
        reason: CancelReason,
        remaining: Qty,
        cid: Option<Cid>,
    },
    Modified {
        order_id: OrderId,
        price: Price,
        qty: Qty,
        cid: Option<Cid>,
    },
    MassCancelled {
        user: UserId,
        count: u64,
    },
    Status {
        symbol: Symbol,
        status: TradingStatus,
    },
}

/// One resting order in an `orders` answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderInfo {
    pub order_id: OrderId,
    pub cid: Option<Cid>,
    pub symbol: Symbol,
    pub side: Side,
    pub price: Price,
    /// Remaining quantity.
    pub qty: Qty,
}

/// Why a login was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoginError {
    /// Unknown user, or the wrong key.
    BadCredentials,
    /// The first message was not a login (or had a bad field).
    Malformed,
    /// The server is at its connection limit or shutting down.
    Unavailable,
}

impl LoginError {
    pub fn as_str(self) -> &'static str {
        match self {
            LoginError::BadCredentials => "bad_credentials",
            LoginError::Malformed => "malformed",
            LoginError::Unavailable => "unavailable",
        }
    }

    pub fn parse(text: &str) -> Option<LoginError> {
        [LoginError::BadCredentials, LoginError::Malformed, LoginError::Unavailable]
            .into_iter()
            .find(|e| e.as_str() == text)
    }
}

/// A server's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    LoginAccepted {
        user: UserId,
    },
    LoginRejected {
        reason: LoginError,
    },
    /// An engine event, with the `seq` of the command that caused it.
    Event {
        seq: Seq,
        event: ClientEvent,
    },
    /// A message refused before the engine (no `seq`).
    Rejected {
        reason: GatewayReason,
        /// The order id of a refused cancel/modify, when the client gave one.
        order_id: Option<OrderId>,
        cid: Option<Cid>,
    },
    Orders(Vec<OrderInfo>),
    Pong,
    /// `resume_after` asked for events older than the server keeps: the
    /// client should ask for `orders` instead. `oldest` is the first `seq`
    /// the server can still replay after.
    ResumeTooOld {
        oldest: Seq,
    },
    /// The end of the replay `resume_after` asked for: live events follow.
    ResumeDone {
        last_seq: Seq,
    },
    /// The server closes the session, and why.
    Goodbye {
        reason: String,
    },
}
