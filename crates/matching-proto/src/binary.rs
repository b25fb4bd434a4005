//! The binary wire protocol: SoupBinTCP 4.1 framing around fixed-layout,
//! little-endian messages. `docs/PROTOCOL.md` ("Binary protocol") gives the
//! same bytes as tables, and says where and why we differ from SoupBinTCP.
//!
//! A packet is a 2-byte **big-endian** length (of what follows it), a packet
//! type byte, then the payload. [`frame_len`] finds where the first packet of
//! a buffer ends; [`decode_client`] and [`decode_server`] read one whole
//! packet; [`encode_client`] and [`encode_server`] append whole packets to a
//! buffer, so many messages go out in one write.
//!
//! Every layout is a `#[repr(C)]` struct whose size and field offsets are
//! checked at compile time; fields are written and read little-endian at
//! those offsets. The structs are never built: they are the layouts' single
//! source of offsets.
//!
//! Decoding is **total**: any bytes give a message or a [`DecodeError`],
//! never a panic (every read goes through a bounds-checked `get`), and it
//! allocates only for what a message owns (a login's key, an orders answer,
//! a goodbye's text). It is also **strict**: a layout of the wrong length, a
//! reserved byte that is not zero, the value of an absent field that is not
//! zero, a flag that is not 0 or 1 are refused, so a packet that decodes
//! encodes back to the same bytes.

use std::fmt;
use std::mem::{offset_of, size_of};

use matching_core::{
    Action, CancelReason, NewOrder, OrderId, OrderType, RejectReason, SYMBOL_LEN_MAX, Side, Stp, Symbol, Tif,
    TradingStatus,
};

use crate::session::{
    CID_LEN_MAX, Cid, ClientEvent, GatewayReason, KEY_LEN_MAX, Liquidity, Login, LoginError, OrderInfo, Refusal, Reply,
    Request,
};

/// The protocol version a login carries; a login with another is refused.
pub const VERSION: u16 = 1;

/// Most orders one orders-answer packet carries; [`encode_server`] splits a
/// longer answer over several packets.
pub const ORDERS_PER_PACKET_MAX: usize = 50;

/// Longest packet a client sends (length prefix included): a login or a new
/// order. A server's `max_len` for [`frame_len`] must be at least this.
pub const CLIENT_PACKET_LEN_MAX: usize = size_of::<LoginRequest>();

/// Longest packet the server sends (length prefix included): a full orders
/// answer packet. A client's `max_len` for [`frame_len`] must be at least this.
pub const SERVER_PACKET_LEN_MAX: usize = size_of::<OrdersHead>() + ORDERS_PER_PACKET_MAX * size_of::<OrderRecord>();

/// What a client sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMessage {
    Request(Request),
    /// `R`: the client is alive (sent when it has sent nothing for a second).
    Heartbeat,
}

/// What the server sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerMessage {
    Reply(Reply),
    /// A packet of an orders answer that more packets follow. The answer is
    /// the orders of its parts, in order, then those of the
    /// [`Reply::Orders`] that ends it; [`encode_server`] splits an answer of
    /// more than [`ORDERS_PER_PACKET_MAX`] orders so.
    OrdersPart(Vec<OrderInfo>),
    /// `H`: the server is alive (sent when it has sent nothing for a second).
    Heartbeat,
}

/// Why [`frame_len`] cannot find a packet: the stream cannot be read on, and
/// the session should end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A declared length of 0 (not even a packet type).
    Empty,
    /// A packet of `len` bytes, length prefix included, over the limit.
    TooLong { len: usize, max_len: usize },
}

impl FrameError {
    /// The reason to give the peer before closing.
    pub fn reason(self) -> GatewayReason {
        match self {
            FrameError::Empty => GatewayReason::Malformed,
            FrameError::TooLong { .. } => GatewayReason::TooLong,
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Empty => f.write_str("a packet of length 0"),
            FrameError::TooLong { len, max_len } => write!(f, "a packet of {len} bytes (at most {max_len})"),
        }
    }
}

impl std::error::Error for FrameError {}

/// A packet that is not a valid message, and what of it could be read.
pub type DecodeError = Refusal;

/// The size of the first complete packet of `buf`, length prefix included;
/// `Ok(None)` when `buf` holds only part of one. `max_len` bounds a whole
/// packet (prefix included), so a buffer of `max_len` bytes always holds
/// one; a longer or empty declared packet is an error at once, before its
/// bytes arrive.
pub fn frame_len(buf: &[u8], max_len: usize) -> Result<Option<usize>, FrameError> {
    let Some(&prefix) = buf.first_chunk::<2>() else { return Ok(None) };
    let len = 2 + usize::from(u16::from_be_bytes(prefix));
    if len == 2 {
        return Err(FrameError::Empty);
    }
    if len > max_len {
        return Err(FrameError::TooLong { len, max_len });
    }
    Ok((buf.len() >= len).then_some(len))
}

// ----- packet and message types -----

/// Packet types (the byte after the length). SoupBinTCP's letters.
mod packet {
    // Client to server.
    pub const LOGIN_REQUEST: u8 = b'L';
    pub const CLIENT_DATA: u8 = b'U';
    pub const CLIENT_HEARTBEAT: u8 = b'R';
    pub const LOGOUT_REQUEST: u8 = b'O';
    // Server to client.
    pub const LOGIN_ACCEPTED: u8 = b'A';
    pub const LOGIN_REJECTED: u8 = b'J';
    pub const SEQUENCED: u8 = b'S';
    pub const SERVER_DATA: u8 = b'U';
    pub const SERVER_HEARTBEAT: u8 = b'H';
    pub const END_OF_SESSION: u8 = b'Z';
}

/// Order-entry messages: the message type of a client `U` packet.
mod entry {
    pub const NEW: u8 = b'O';
    pub const CANCEL: u8 = b'X';
    pub const CANCEL_CID: u8 = b'x';
    pub const MODIFY: u8 = b'M';
    pub const MODIFY_CID: u8 = b'm';
    pub const MASS_CANCEL: u8 = b'C';
    pub const HALT: u8 = b'H';
    pub const RESUME: u8 = b'R';
    pub const ORDERS: u8 = b'Q';
    pub const PING: u8 = b'P';
}

/// Engine events: the message type of an `S` packet.
mod event {
    pub const ACCEPTED: u8 = b'A';
    pub const REJECTED: u8 = b'J';
    pub const FILL: u8 = b'E';
    pub const CANCELLED: u8 = b'C';
    pub const MODIFIED: u8 = b'M';
    pub const MASS_CANCELLED: u8 = b'X';
    pub const STATUS: u8 = b'S';
}

/// Unsequenced replies: the message type of a server `U` packet.
mod reply {
    pub const REJECTED: u8 = b'J';
    pub const ORDERS: u8 = b'Q';
    pub const PONG: u8 = b'P';
    pub const RESUME_TOO_OLD: u8 = b'T';
    pub const RESUME_DONE: u8 = b'D';
}

// ----- enumeration codes -----

/// An enumeration's one-byte code on the wire.
trait Code: Copy {
    fn code(self) -> u8;
    fn from_code(code: u8) -> Option<Self>;
}

/// One table gives both directions, and `code` fails to compile when a
/// variant has none.
macro_rules! codes {
    ($($t:ident { $($variant:ident = $code:expr),+ $(,)? })+) => {$(
        impl Code for $t {
            fn code(self) -> u8 {
                match self { $($t::$variant => $code),+ }
            }
            fn from_code(code: u8) -> Option<$t> {
                match code { $($code => Some($t::$variant),)+ _ => None }
            }
        }
    )+};
}

codes! {
    Side { Buy = 1, Sell = 2 }
    OrderType { Limit = 1, Market = 2 }
    Tif { Gtc = 1, Ioc = 2, Fok = 3 }
    Stp { None = 0, CancelTaker = 1, CancelMaker = 2, CancelBoth = 3 }
    Liquidity { Maker = 1, Taker = 2 }
    TradingStatus { Open = 1, Halted = 2 }
    CancelReason { User = 1, Ioc = 2, Fok = 3, Stp = 4, Mass = 5 }
    RejectReason {
        Malformed = 1, InvalidSymbol = 2, InvalidTif = 3, InvalidPrice = 4, InvalidQty = 5, UnknownOrder = 6,
        Halted = 7, WouldTake = 8, DuplicateOrderId = 9, TooManyOrders = 10, TooManySymbols = 11,
    }
    GatewayReason {
        Malformed = 1, UnknownOp = 2, InvalidSymbol = 3, InvalidTif = 4, NotLoggedIn = 5, NotPermitted = 6,
        DuplicateCid = 7, UnknownCid = 8, RateLimited = 9, TooLong = 11, Unavailable = 12, KillSwitch = 13,
        InvalidTick = 14, InvalidLot = 15,
    }
    // SoupBinTCP's reject reason codes, and one of ours.
    LoginError { BadCredentials = b'A', Unavailable = b'S', Malformed = b'M' }
}

/// Login request flags.
const FLAG_CANCEL_ON_DISCONNECT: u8 = 1 << 0;
const FLAG_RESUME_AFTER: u8 = 1 << 1;

// ----- layouts -----
//
// Each `layout!` is a `#[repr(C)]` struct written as a table, one
// `offset field: type` a line, and checked at compile time against the
// table: its size and every offset. Offsets count from the packet's first
// byte (the length prefix), as in SoupBinTCP's tables. `u64`s sit on 8-byte
// offsets; the gaps are `reserved` and must be zero.

macro_rules! layout {
    ($(#[$doc:meta])* $name:ident, $size:literal bytes { $($at:literal $field:ident: $t:ty,)+ }) => {
        $(#[$doc])*
        #[allow(dead_code)] // Never built: its size and offsets are the layout.
        #[repr(C)]
        struct $name { $($field: $t,)+ }
        const _: () = assert!(size_of::<$name>() == $size);
        $(const _: () = assert!(offset_of!($name, $field) == $at);)+
    };
}

layout! {
    /// The head of SoupBinTCP's own packets (login, logout, heartbeats, end of
    /// session). `length` is big-endian: the bytes after it.
    SoupHead, 3 bytes {
        0 length: [u8; 2],
        2 packet_type: u8,
    }
}

layout! {
    /// The head of a data packet (`U`, `S`): one message of `message_type`.
    DataHead, 4 bytes {
        0 length: [u8; 2],
        2 packet_type: u8,
        3 message_type: u8,
    }
}

layout! {
    /// A client order id: its length (0: none), then its bytes zero-padded.
    CidField, 21 bytes {
        0 len: u8,
        1 bytes: [u8; CID_LEN_MAX],
    }
}

// Client to server.

layout! {
    /// `resume_after` is 0 unless `flags` has [`FLAG_RESUME_AFTER`].
    LoginRequest, 88 bytes {
        0 head: SoupHead,
        3 flags: u8,
        4 version: u16,
        6 key_len: u8,
        7 reserved: u8,
        8 user: u64,
        16 resume_after: u64,
        24 key: [u8; KEY_LEN_MAX],
    }
}

layout! {
    NewOrderMessage, 88 bytes {
        0 head: DataHead,
        4 side: u8,
        5 order_type: u8,
        6 tif: u8,
        7 has_price: u8,
        8 user: u64,
        16 price: u64,
        24 qty: u64,
        32 symbol: [u8; SYMBOL_LEN_MAX],
        64 stp: u8,
        65 post_only: u8,
        66 cid: CidField,
        87 reserved: u8,
    }
}

layout! {
    CancelMessage, 24 bytes {
        0 head: DataHead,
        4 reserved: [u8; 4],
        8 user: u64,
        16 order_id: u64,
    }
}

layout! {
    CancelCidMessage, 40 bytes {
        0 head: DataHead,
        4 reserved: [u8; 4],
        8 user: u64,
        16 cid: CidField,
        37 reserved2: [u8; 3],
    }
}

layout! {
    ModifyMessage, 40 bytes {
        0 head: DataHead,
        4 has_price: u8,
        5 has_qty: u8,
        6 reserved: [u8; 2],
        8 user: u64,
        16 order_id: u64,
        24 price: u64,
        32 qty: u64,
    }
}

layout! {
    ModifyCidMessage, 56 bytes {
        0 head: DataHead,
        4 has_price: u8,
        5 has_qty: u8,
        6 reserved: [u8; 2],
        8 user: u64,
        16 price: u64,
        24 qty: u64,
        32 cid: CidField,
        53 reserved2: [u8; 3],
    }
}

layout! {
    /// `side` 0: both sides; `symbol` all zero: every symbol.
    MassCancelMessage, 48 bytes {
        0 head: DataHead,
        4 side: u8,
        5 reserved: [u8; 3],
        8 user: u64,
        16 symbol: [u8; SYMBOL_LEN_MAX],
    }
}

layout! {
    /// Halt and resume.
    SymbolMessage, 36 bytes {
        0 head: DataHead,
        4 symbol: [u8; SYMBOL_LEN_MAX],
    }
}

// Server to client.

layout! {
    LoginAccepted, 16 bytes {
        0 head: SoupHead,
        3 reserved: [u8; 5],
        8 user: u64,
    }
}

layout! {
    LoginRejected, 4 bytes {
        0 head: SoupHead,
        3 reason: u8,
    }
}

layout! {
    /// The reason's `reason_len` bytes (UTF-8) follow.
    EndOfSession, 4 bytes {
        0 head: SoupHead,
        3 reason_len: u8,
    }
}

layout! {
    AcceptedEvent, 104 bytes {
        0 head: DataHead,
        4 side: u8,
        5 order_type: u8,
        6 tif: u8,
        7 has_price: u8,
        8 seq: u64,
        16 order_id: u64,
        24 user: u64,
        32 qty: u64,
        40 price: u64,
        48 symbol: [u8; SYMBOL_LEN_MAX],
        80 cid: CidField,
        101 reserved: [u8; 3],
    }
}

layout! {
    RejectedEvent, 48 bytes {
        0 head: DataHead,
        4 reason: u8,
        5 has_order_id: u8,
        6 reserved: [u8; 2],
        8 seq: u64,
        16 order_id: u64,
        24 cid: CidField,
        45 reserved2: [u8; 3],
    }
}

layout! {
    FillEvent, 112 bytes {
        0 head: DataHead,
        4 side: u8,
        5 liquidity: u8,
        6 reserved: [u8; 2],
        8 seq: u64,
        16 trade_id: u64,
        24 order_id: u64,
        32 price: u64,
        40 qty: u64,
        48 remaining: u64,
        56 symbol: [u8; SYMBOL_LEN_MAX],
        88 cid: CidField,
        109 reserved2: [u8; 3],
    }
}

layout! {
    CancelledEvent, 56 bytes {
        0 head: DataHead,
        4 reason: u8,
        5 reserved: [u8; 3],
        8 seq: u64,
        16 order_id: u64,
        24 remaining: u64,
        32 cid: CidField,
        53 reserved2: [u8; 3],
    }
}

layout! {
    ModifiedEvent, 64 bytes {
        0 head: DataHead,
        4 reserved: [u8; 4],
        8 seq: u64,
        16 order_id: u64,
        24 price: u64,
        32 qty: u64,
        40 cid: CidField,
        61 reserved2: [u8; 3],
    }
}

layout! {
    MassCancelledEvent, 32 bytes {
        0 head: DataHead,
        4 reserved: [u8; 4],
        8 seq: u64,
        16 user: u64,
        24 count: u64,
    }
}

layout! {
    StatusEvent, 48 bytes {
        0 head: DataHead,
        4 status: u8,
        5 reserved: [u8; 3],
        8 seq: u64,
        16 symbol: [u8; SYMBOL_LEN_MAX],
    }
}

/// Where every event layout keeps its `seq`.
const SEQ_AT: usize = 8;
const _: () = assert!(
    offset_of!(AcceptedEvent, seq) == SEQ_AT
        && offset_of!(RejectedEvent, seq) == SEQ_AT
        && offset_of!(FillEvent, seq) == SEQ_AT
        && offset_of!(CancelledEvent, seq) == SEQ_AT
        && offset_of!(ModifiedEvent, seq) == SEQ_AT
        && offset_of!(MassCancelledEvent, seq) == SEQ_AT
        && offset_of!(StatusEvent, seq) == SEQ_AT
);

layout! {
    GatewayRejectedReply, 40 bytes {
        0 head: DataHead,
        4 reason: u8,
        5 has_order_id: u8,
        6 reserved: [u8; 2],
        8 order_id: u64,
        16 cid: CidField,
        37 reserved2: [u8; 3],
    }
}

layout! {
    /// `count` [`OrderRecord`]s follow; `more` 1: more packets of the answer follow.
    OrdersHead, 8 bytes {
        0 head: DataHead,
        4 count: u16,
        6 more: u8,
        7 reserved: u8,
    }
}

layout! {
    /// One resting order of an orders answer (offsets from the record's start).
    OrderRecord, 80 bytes {
        0 order_id: u64,
        8 price: u64,
        16 qty: u64,
        24 symbol: [u8; SYMBOL_LEN_MAX],
        56 side: u8,
        57 cid: CidField,
        78 reserved: [u8; 2],
    }
}

layout! {
    /// Resume too old (`seq`: the oldest it can resume after) and resume
    /// done (`seq`: the last replayed).
    SeqReply, 16 bytes {
        0 head: DataHead,
        4 reserved: [u8; 4],
        8 seq: u64,
    }
}

const _: () = assert!(size_of::<NewOrderMessage>() <= CLIENT_PACKET_LEN_MAX);
const _: () = assert!(SERVER_PACKET_LEN_MAX == 4008 && SERVER_PACKET_LEN_MAX - 2 <= u16::MAX as usize);
const _: () = assert!(size_of::<EndOfSession>() + 255 <= SERVER_PACKET_LEN_MAX);

// ----- reading -----

/// A packet read at its layout's offsets. Every read is bounds-checked (a
/// read out of range, which the length checks rule out, is `Malformed`).
struct Reader<'a> {
    bytes: &'a [u8],
    /// The error of a later check: the order id and cid once read.
    context: DecodeError,
}

impl<'a> Reader<'a> {
    /// `packet` as layout `L`, whose size it must be.
    fn exact<L>(packet: &'a [u8]) -> Result<Reader<'a>, DecodeError> {
        if packet.len() != size_of::<L>() {
            return Err(DecodeError::new(GatewayReason::Malformed));
        }
        Ok(Reader { bytes: packet, context: DecodeError::new(GatewayReason::Malformed) })
    }

    fn fail(&self, reason: GatewayReason) -> DecodeError {
        DecodeError { reason, ..self.context }
    }

    fn array<const N: usize>(&self, at: usize) -> Result<&'a [u8; N], DecodeError> {
        self.bytes.get(at..).and_then(<[u8]>::first_chunk).ok_or(self.fail(GatewayReason::Malformed))
    }

    fn u8(&self, at: usize) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(at)?[0])
    }

    fn u16(&self, at: usize) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(*self.array(at)?))
    }

    fn u64(&self, at: usize) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(*self.array(at)?))
    }

    /// A reserved field of `N` bytes, which must be zero.
    fn reserved<const N: usize>(&self, at: usize) -> Result<(), DecodeError> {
        if self.array::<N>(at)? != &[0; N] {
            return Err(self.fail(GatewayReason::Malformed));
        }
        Ok(())
    }

    fn flag(&self, at: usize) -> Result<bool, DecodeError> {
        match self.u8(at)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.fail(GatewayReason::Malformed)),
        }
    }

    /// A "has" flag and its value, which must be 0 when absent.
    fn option(&self, has_at: usize, value_at: usize) -> Result<Option<u64>, DecodeError> {
        match (self.flag(has_at)?, self.u64(value_at)?) {
            (true, value) => Ok(Some(value)),
            (false, 0) => Ok(None),
            (false, _) => Err(self.fail(GatewayReason::Malformed)),
        }
    }

    /// An enumeration's code; `reason` when it is none of the codes.
    fn code<T: Code>(&self, at: usize, reason: GatewayReason) -> Result<T, DecodeError> {
        T::from_code(self.u8(at)?).ok_or(self.fail(reason))
    }

    /// A symbol zero-padded to 32 bytes; `None` when all 32 are zero.
    fn any_symbol(&self, at: usize) -> Result<Option<Symbol>, DecodeError> {
        let padded = self.array::<SYMBOL_LEN_MAX>(at)?;
        let len = padded.iter().rposition(|&b| b != 0).map_or(0, |last| last + 1);
        match padded.get(..len) {
            Some([]) => Ok(None),
            Some(name) => Symbol::from_bytes(name).map(Some).ok_or(self.fail(GatewayReason::InvalidSymbol)),
            None => Err(self.fail(GatewayReason::Malformed)),
        }
    }

    fn symbol(&self, at: usize) -> Result<Symbol, DecodeError> {
        self.any_symbol(at)?.ok_or(self.fail(GatewayReason::InvalidSymbol))
    }

    /// A [`CidField`], kept for the errors of later checks.
    fn cid(&mut self, at: usize) -> Result<Option<Cid>, DecodeError> {
        let len = self.u8(at)?;
        let padded = self.array::<CID_LEN_MAX>(at + 1)?;
        if len == 0 && padded.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let cid = Cid::from_padded(len, padded);
        self.context.cid = Some(cid.ok_or(self.fail(GatewayReason::Malformed))?);
        Ok(cid)
    }

    /// An order id, kept for the errors of later checks.
    fn order_id(&mut self, at: usize) -> Result<OrderId, DecodeError> {
        let order_id = self.u64(at)?;
        self.context.order_id = Some(order_id);
        Ok(order_id)
    }
}

/// The type of a packet whose length prefix matches its size.
fn packet_type(packet: &[u8]) -> Result<u8, DecodeError> {
    match packet {
        [hi, lo, packet_type, ..] if usize::from(u16::from_be_bytes([*hi, *lo])) + 2 == packet.len() => {
            Ok(*packet_type)
        }
        _ => Err(DecodeError::new(GatewayReason::Malformed)),
    }
}

/// The message type of a data packet.
fn message_type(packet: &[u8]) -> Result<u8, DecodeError> {
    packet.get(offset_of!(DataHead, message_type)).copied().ok_or(DecodeError::new(GatewayReason::Malformed))
}

// ----- writing -----

/// A packet being filled in at its layout's offsets.
struct Writer<'a>(&'a mut [u8]);

impl<'a> Writer<'a> {
    /// Appends a zeroed packet of `len` bytes (prefix included) to `out`.
    fn soup(out: &'a mut Vec<u8>, len: usize, packet_type: u8) -> Writer<'a> {
        let declared = u16::try_from(len - 2).expect("Invariant: every layout fits a packet");
        let start = out.len();
        out.resize(start + len, 0);
        let packet = &mut out[start..];
        packet[..2].copy_from_slice(&declared.to_be_bytes());
        packet[offset_of!(SoupHead, packet_type)] = packet_type;
        Writer(packet)
    }

    /// Appends a zeroed data packet of layout `L` to `out`.
    fn data<L>(out: &'a mut Vec<u8>, packet_type: u8, message_type: u8) -> Writer<'a> {
        Writer::data_len(out, size_of::<L>(), packet_type, message_type)
    }

    fn data_len(out: &'a mut Vec<u8>, len: usize, packet_type: u8, message_type: u8) -> Writer<'a> {
        let mut w = Writer::soup(out, len, packet_type);
        w.u8(offset_of!(DataHead, message_type), message_type);
        w
    }

    fn bytes(&mut self, at: usize, bytes: &[u8]) {
        self.0[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn u8(&mut self, at: usize, value: u8) {
        self.0[at] = value;
    }

    fn u16(&mut self, at: usize, value: u16) {
        self.bytes(at, &value.to_le_bytes());
    }

    fn u64(&mut self, at: usize, value: u64) {
        self.bytes(at, &value.to_le_bytes());
    }

    fn option(&mut self, has_at: usize, value_at: usize, value: Option<u64>) {
        self.u8(has_at, value.is_some() as u8);
        self.u64(value_at, value.unwrap_or(0));
    }

    fn code(&mut self, at: usize, value: impl Code) {
        self.u8(at, value.code());
    }

    fn symbol(&mut self, at: usize, symbol: Option<&Symbol>) {
        self.bytes(at, symbol.map_or(&[][..], Symbol::as_bytes));
    }

    fn cid(&mut self, at: usize, cid: Option<&Cid>) {
        let text = cid.map_or(&[][..], Cid::as_bytes);
        self.u8(at, text.len() as u8);
        self.bytes(at + 1, text);
    }
}

// ----- client messages -----

/// Reads one whole packet (as [`frame_len`] delimits it) from a client.
pub fn decode_client(packet: &[u8]) -> Result<ClientMessage, DecodeError> {
    let request = match packet_type(packet)? {
        packet::LOGIN_REQUEST => Request::Login(decode_login(packet)?),
        packet::CLIENT_DATA => decode_entry(packet)?,
        packet::CLIENT_HEARTBEAT => return Reader::exact::<SoupHead>(packet).map(|_| ClientMessage::Heartbeat),
        packet::LOGOUT_REQUEST => Reader::exact::<SoupHead>(packet).map(|_| Request::Logout)?,
        _ => return Err(DecodeError::new(GatewayReason::UnknownOp)),
    };
    Ok(ClientMessage::Request(request))
}

/// Appends `msg` as one packet. A request's `cid` is carried by a new order
/// only; a key over [`KEY_LEN_MAX`] bytes is cut to that (the server will
/// refuse it).
pub fn encode_client(msg: &ClientMessage, out: &mut Vec<u8>) {
    match msg {
        ClientMessage::Heartbeat => {
            Writer::soup(out, size_of::<SoupHead>(), packet::CLIENT_HEARTBEAT);
        }
        ClientMessage::Request(Request::Login(login)) => encode_login(login, out),
        ClientMessage::Request(Request::Logout) => {
            Writer::soup(out, size_of::<SoupHead>(), packet::LOGOUT_REQUEST);
        }
        ClientMessage::Request(request) => encode_entry(request, out),
    }
}

fn decode_login(packet: &[u8]) -> Result<Login, DecodeError> {
    type L = LoginRequest;
    let r = Reader::exact::<L>(packet)?;
    let malformed = || r.fail(GatewayReason::Malformed);
    if r.u16(offset_of!(L, version))? != VERSION {
        return Err(malformed());
    }
    r.reserved::<1>(offset_of!(L, reserved))?;
    let flags = r.u8(offset_of!(L, flags))?;
    if flags & !(FLAG_CANCEL_ON_DISCONNECT | FLAG_RESUME_AFTER) != 0 {
        return Err(malformed());
    }
    let resume_after = r.u64(offset_of!(L, resume_after))?;
    if flags & FLAG_RESUME_AFTER == 0 && resume_after != 0 {
        return Err(malformed());
    }
    let key_len = usize::from(r.u8(offset_of!(L, key_len))?);
    let key = match r.array::<KEY_LEN_MAX>(offset_of!(L, key))?.split_at_checked(key_len) {
        Some((key, padding)) if padding.iter().all(|&b| b == 0) => std::str::from_utf8(key).map_err(|_| malformed())?,
        _ => return Err(malformed()),
    };
    Ok(Login {
        user: r.u64(offset_of!(L, user))?,
        key: key.to_string(),
        cancel_on_disconnect: flags & FLAG_CANCEL_ON_DISCONNECT != 0,
        resume_after: (flags & FLAG_RESUME_AFTER != 0).then_some(resume_after),
    })
}

fn encode_login(login: &Login, out: &mut Vec<u8>) {
    type L = LoginRequest;
    let mut key_len = login.key.len().min(KEY_LEN_MAX);
    while !login.key.is_char_boundary(key_len) {
        key_len -= 1;
    }
    let flags = (login.cancel_on_disconnect as u8 * FLAG_CANCEL_ON_DISCONNECT)
        | (login.resume_after.is_some() as u8 * FLAG_RESUME_AFTER);
    let mut w = Writer::soup(out, size_of::<L>(), packet::LOGIN_REQUEST);
    w.u8(offset_of!(L, flags), flags);
    w.u16(offset_of!(L, version), VERSION);
    w.u8(offset_of!(L, key_len), key_len as u8);
    w.u64(offset_of!(L, user), login.user);
    w.u64(offset_of!(L, resume_after), login.resume_after.unwrap_or(0));
    w.bytes(offset_of!(L, key), &login.key.as_bytes()[..key_len]);
}

/// An order-entry message (a client `U` packet). The checks go in SPEC's
/// order: the shape (`Malformed`), then the symbol, then the tif.
fn decode_entry(packet: &[u8]) -> Result<Request, DecodeError> {
    let command = |action| Request::Command { action, cid: None };
    match message_type(packet)? {
        entry::NEW => {
            type L = NewOrderMessage;
            let mut r = Reader::exact::<L>(packet)?;
            let cid = r.cid(offset_of!(L, cid))?;
            r.reserved::<1>(offset_of!(L, reserved))?;
            let side = r.code(offset_of!(L, side), GatewayReason::Malformed)?;
            let order_type = r.code(offset_of!(L, order_type), GatewayReason::Malformed)?;
            let price = r.option(offset_of!(L, has_price), offset_of!(L, price))?;
            let post_only = r.flag(offset_of!(L, post_only))?;
            let stp = r.code(offset_of!(L, stp), GatewayReason::Malformed)?;
            let symbol = r.symbol(offset_of!(L, symbol))?;
            let tif = r.code(offset_of!(L, tif), GatewayReason::InvalidTif)?;
            let order = NewOrder {
                order_id: 0,
                user: r.u64(offset_of!(L, user))?,
                symbol,
                side,
                order_type,
                price,
                qty: r.u64(offset_of!(L, qty))?,
                tif,
                post_only,
                stp,
            };
            Ok(Request::Command { action: Action::New(order), cid })
        }
        entry::CANCEL => {
            type L = CancelMessage;
            let mut r = Reader::exact::<L>(packet)?;
            let order_id = r.order_id(offset_of!(L, order_id))?;
            r.reserved::<4>(offset_of!(L, reserved))?;
            Ok(command(Action::Cancel { user: r.u64(offset_of!(L, user))?, order_id }))
        }
        entry::CANCEL_CID => {
            type L = CancelCidMessage;
            let mut r = Reader::exact::<L>(packet)?;
            let cid = r.cid(offset_of!(L, cid))?;
            r.reserved::<4>(offset_of!(L, reserved))?;
            r.reserved::<3>(offset_of!(L, reserved2))?;
            let cid = cid.ok_or(r.fail(GatewayReason::Malformed))?;
            Ok(Request::CancelCid { user: r.u64(offset_of!(L, user))?, cid })
        }
        entry::MODIFY => {
            type L = ModifyMessage;
            let mut r = Reader::exact::<L>(packet)?;
            let order_id = r.order_id(offset_of!(L, order_id))?;
            r.reserved::<2>(offset_of!(L, reserved))?;
            Ok(command(Action::Modify {
                user: r.u64(offset_of!(L, user))?,
                order_id,
                price: r.option(offset_of!(L, has_price), offset_of!(L, price))?,
                qty: r.option(offset_of!(L, has_qty), offset_of!(L, qty))?,
            }))
        }
        entry::MODIFY_CID => {
            type L = ModifyCidMessage;
            let mut r = Reader::exact::<L>(packet)?;
            let cid = r.cid(offset_of!(L, cid))?;
            r.reserved::<2>(offset_of!(L, reserved))?;
            r.reserved::<3>(offset_of!(L, reserved2))?;
            Ok(Request::ModifyCid {
                user: r.u64(offset_of!(L, user))?,
                cid: cid.ok_or(r.fail(GatewayReason::Malformed))?,
                price: r.option(offset_of!(L, has_price), offset_of!(L, price))?,
                qty: r.option(offset_of!(L, has_qty), offset_of!(L, qty))?,
            })
        }
        entry::MASS_CANCEL => {
            type L = MassCancelMessage;
            let r = Reader::exact::<L>(packet)?;
            r.reserved::<3>(offset_of!(L, reserved))?;
            let side = match r.u8(offset_of!(L, side))? {
                0 => None,
                _ => Some(r.code(offset_of!(L, side), GatewayReason::Malformed)?),
            };
            let symbol = r.any_symbol(offset_of!(L, symbol))?;
            Ok(command(Action::MassCancel { user: r.u64(offset_of!(L, user))?, symbol, side }))
        }
        entry::HALT => {
            let r = Reader::exact::<SymbolMessage>(packet)?;
            Ok(command(Action::Halt { symbol: r.symbol(offset_of!(SymbolMessage, symbol))? }))
        }
        entry::RESUME => {
            let r = Reader::exact::<SymbolMessage>(packet)?;
            Ok(command(Action::Resume { symbol: r.symbol(offset_of!(SymbolMessage, symbol))? }))
        }
        entry::ORDERS => Reader::exact::<DataHead>(packet).map(|_| Request::Orders),
        entry::PING => Reader::exact::<DataHead>(packet).map(|_| Request::Ping),
        _ => Err(DecodeError::new(GatewayReason::UnknownOp)),
    }
}

fn encode_entry(request: &Request, out: &mut Vec<u8>) {
    const U: u8 = packet::CLIENT_DATA;
    match request {
        Request::Command { action: Action::New(o), cid } => {
            type L = NewOrderMessage;
            let mut w = Writer::data::<L>(out, U, entry::NEW);
            w.code(offset_of!(L, side), o.side);
            w.code(offset_of!(L, order_type), o.order_type);
            w.code(offset_of!(L, tif), o.tif);
            w.option(offset_of!(L, has_price), offset_of!(L, price), o.price);
            w.u64(offset_of!(L, user), o.user);
            w.u64(offset_of!(L, qty), o.qty);
            w.symbol(offset_of!(L, symbol), Some(&o.symbol));
            w.code(offset_of!(L, stp), o.stp);
            w.u8(offset_of!(L, post_only), o.post_only as u8);
            w.cid(offset_of!(L, cid), cid.as_ref());
        }
        Request::Command { action: Action::Cancel { user, order_id }, .. } => {
            type L = CancelMessage;
            let mut w = Writer::data::<L>(out, U, entry::CANCEL);
            w.u64(offset_of!(L, user), *user);
            w.u64(offset_of!(L, order_id), *order_id);
        }
        Request::CancelCid { user, cid } => {
            type L = CancelCidMessage;
            let mut w = Writer::data::<L>(out, U, entry::CANCEL_CID);
            w.u64(offset_of!(L, user), *user);
            w.cid(offset_of!(L, cid), Some(cid));
        }
        Request::Command { action: Action::Modify { user, order_id, price, qty }, .. } => {
            type L = ModifyMessage;
            let mut w = Writer::data::<L>(out, U, entry::MODIFY);
            w.u64(offset_of!(L, user), *user);
            w.u64(offset_of!(L, order_id), *order_id);
            w.option(offset_of!(L, has_price), offset_of!(L, price), *price);
            w.option(offset_of!(L, has_qty), offset_of!(L, qty), *qty);
        }
        Request::ModifyCid { user, cid, price, qty } => {
            type L = ModifyCidMessage;
            let mut w = Writer::data::<L>(out, U, entry::MODIFY_CID);
            w.u64(offset_of!(L, user), *user);
            w.option(offset_of!(L, has_price), offset_of!(L, price), *price);
            w.option(offset_of!(L, has_qty), offset_of!(L, qty), *qty);
            w.cid(offset_of!(L, cid), Some(cid));
        }
        Request::Command { action: Action::MassCancel { user, symbol, side }, .. } => {
            type L = MassCancelMessage;
            let mut w = Writer::data::<L>(out, U, entry::MASS_CANCEL);
            w.u8(offset_of!(L, side), side.map_or(0, Side::code));
            w.u64(offset_of!(L, user), *user);
            w.symbol(offset_of!(L, symbol), symbol.as_ref());
        }
        Request::Command { action: Action::Halt { symbol }, .. } => {
            Writer::data::<SymbolMessage>(out, U, entry::HALT).symbol(offset_of!(SymbolMessage, symbol), Some(symbol));
        }
        Request::Command { action: Action::Resume { symbol }, .. } => {
            Writer::data::<SymbolMessage>(out, U, entry::RESUME)
                .symbol(offset_of!(SymbolMessage, symbol), Some(symbol));
        }
        Request::Orders => {
            Writer::data::<DataHead>(out, U, entry::ORDERS);
        }
        Request::Ping => {
            Writer::data::<DataHead>(out, U, entry::PING);
        }
        Request::Login(_) | Request::Logout => unreachable!("Invariant: encode_client writes logins and logouts"),
    }
}

// ----- server messages -----

/// Reads one whole packet (as [`frame_len`] delimits it) from the server.
pub fn decode_server(packet: &[u8]) -> Result<ServerMessage, DecodeError> {
    let reply = match packet_type(packet)? {
        packet::LOGIN_ACCEPTED => {
            type L = LoginAccepted;
            let r = Reader::exact::<L>(packet)?;
            r.reserved::<5>(offset_of!(L, reserved))?;
            Reply::LoginAccepted { user: r.u64(offset_of!(L, user))? }
        }
        packet::LOGIN_REJECTED => {
            let r = Reader::exact::<LoginRejected>(packet)?;
            Reply::LoginRejected { reason: r.code(offset_of!(LoginRejected, reason), GatewayReason::Malformed)? }
        }
        packet::SEQUENCED => decode_event(packet)?,
        packet::SERVER_DATA if message_type(packet)? == reply::ORDERS => return decode_orders(packet),
        packet::SERVER_DATA => decode_reply(packet)?,
        packet::SERVER_HEARTBEAT => return Reader::exact::<SoupHead>(packet).map(|_| ServerMessage::Heartbeat),
        packet::END_OF_SESSION => {
            let text = packet.get(size_of::<EndOfSession>()..).unwrap_or_default();
            let reason_len = packet.get(offset_of!(EndOfSession, reason_len)).copied();
            if reason_len.is_none() || reason_len != u8::try_from(text.len()).ok() {
                return Err(DecodeError::new(GatewayReason::Malformed));
            }
            let reason = std::str::from_utf8(text).map_err(|_| DecodeError::new(GatewayReason::Malformed))?;
            Reply::Goodbye { reason: reason.to_string() }
        }
        _ => return Err(DecodeError::new(GatewayReason::UnknownOp)),
    };
    Ok(ServerMessage::Reply(reply))
}

/// Appends `msg` as packets: one, but for an orders answer of more than
/// [`ORDERS_PER_PACKET_MAX`] orders. A goodbye's reason is cut to its first
/// 255 bytes (at a character boundary).
pub fn encode_server(msg: &ServerMessage, out: &mut Vec<u8>) {
    match msg {
        ServerMessage::Heartbeat => {
            Writer::soup(out, size_of::<SoupHead>(), packet::SERVER_HEARTBEAT);
        }
        ServerMessage::OrdersPart(orders) => encode_orders(orders, true, out),
        ServerMessage::Reply(Reply::Orders(orders)) => encode_orders(orders, false, out),
        ServerMessage::Reply(Reply::LoginAccepted { user }) => {
            type L = LoginAccepted;
            Writer::soup(out, size_of::<L>(), packet::LOGIN_ACCEPTED).u64(offset_of!(L, user), *user);
        }
        ServerMessage::Reply(Reply::LoginRejected { reason }) => {
            type L = LoginRejected;
            Writer::soup(out, size_of::<L>(), packet::LOGIN_REJECTED).code(offset_of!(L, reason), *reason);
        }
        ServerMessage::Reply(Reply::Event { seq, event }) => encode_event(*seq, event, out),
        ServerMessage::Reply(Reply::Goodbye { reason }) => {
            let mut len = reason.len().min(255);
            while !reason.is_char_boundary(len) {
                len -= 1;
            }
            let mut w = Writer::soup(out, size_of::<EndOfSession>() + len, packet::END_OF_SESSION);
            w.u8(offset_of!(EndOfSession, reason_len), len as u8);
            w.bytes(size_of::<EndOfSession>(), &reason.as_bytes()[..len]);
        }
        ServerMessage::Reply(reply) => encode_reply(reply, out),
    }
}

/// An engine event (an `S` packet).
fn decode_event(packet: &[u8]) -> Result<Reply, DecodeError> {
    const MALFORMED: GatewayReason = GatewayReason::Malformed;
    let (seq, event) = match message_type(packet)? {
        event::ACCEPTED => {
            type L = AcceptedEvent;
            let mut r = Reader::exact::<L>(packet)?;
            r.reserved::<3>(offset_of!(L, reserved))?;
            let event = ClientEvent::Accepted {
                order_id: r.u64(offset_of!(L, order_id))?,
                user: r.u64(offset_of!(L, user))?,
                symbol: r.symbol(offset_of!(L, symbol))?,
                side: r.code(offset_of!(L, side), MALFORMED)?,
                order_type: r.code(offset_of!(L, order_type), MALFORMED)?,
                tif: r.code(offset_of!(L, tif), GatewayReason::InvalidTif)?,
                qty: r.u64(offset_of!(L, qty))?,
                price: r.option(offset_of!(L, has_price), offset_of!(L, price))?,
                cid: r.cid(offset_of!(L, cid))?,
            };
            (r.u64(offset_of!(L, seq))?, event)
        }
        event::REJECTED => {
            type L = RejectedEvent;
            let mut r = Reader::exact::<L>(packet)?;
            r.reserved::<2>(offset_of!(L, reserved))?;
            r.reserved::<3>(offset_of!(L, reserved2))?;
            let event = ClientEvent::Rejected {
                reason: r.code(offset_of!(L, reason), MALFORMED)?,
                order_id: r.option(offset_of!(L, has_order_id), offset_of!(L, order_id))?,
                cid: r.cid(offset_of!(L, cid))?,
            };
            (r.u64(offset_of!(L, seq))?, event)
        }
        event::FILL => {
            type L = FillEvent;
            let mut r = Reader::exact::<L>(packet)?;
            r.reserved::<2>(offset_of!(L, reserved))?;
            r.reserved::<3>(offset_of!(L, reserved2))?;
            let event = ClientEvent::Fill {
                symbol: r.symbol(offset_of!(L, symbol))?,
                trade_id: r.u64(offset_of!(L, trade_id))?,
                price: r.u64(offset_of!(L, price))?,
                qty: r.u64(offset_of!(L, qty))?,
                order_id: r.u64(offset_of!(L, order_id))?,
                side: r.code(offset_of!(L, side), MALFORMED)?,
                liquidity: r.code(offset_of!(L, liquidity), MALFORMED)?,
                remaining: r.u64(offset_of!(L, remaining))?,
                cid: r.cid(offset_of!(L, cid))?,
            };
            (r.u64(offset_of!(L, seq))?, event)
        }
        event::CANCELLED => {
            type L = CancelledEvent;
            let mut r = Reader::exact::<L>(packet)?;
            r.reserved::<3>(offset_of!(L, reserved))?;
            r.reserved::<3>(offset_of!(L, reserved2))?;
            let event = ClientEvent::Cancelled {
                order_id: r.u64(offset_of!(L, order_id))?,
                reason: r.code(offset_of!(L, reason), MALFORMED)?,
                remaining: r.u64(offset_of!(L, remaining))?,
                cid: r.cid(offset_of!(L, cid))?,
            };
            (r.u64(offset_of!(L, seq))?, event)
        }
        event::MODIFIED => {
            type L = ModifiedEvent;
            let mut r = Reader::exact::<L>(packet)?;
            r.reserved::<4>(offset_of!(L, reserved))?;
            r.reserved::<3>(offset_of!(L, reserved2))?;
            let event = ClientEvent::Modified {
                order_id: r.u64(offset_of!(L, order_id))?,
                price: r.u64(offset_of!(L, price))?,
                qty: r.u64(offset_of!(L, qty))?,
                cid: r.cid(offset_of!(L, cid))?,
            };
            (r.u64(offset_of!(L, seq))?, event)
        }
        event::MASS_CANCELLED => {
            type L = MassCancelledEvent;
            let r = Reader::exact::<L>(packet)?;
            r.reserved::<4>(offset_of!(L, reserved))?;
            let event =
                ClientEvent::MassCancelled { user: r.u64(offset_of!(L, user))?, count: r.u64(offset_of!(L, count))? };
            (r.u64(offset_of!(L, seq))?, event)
        }
        event::STATUS => {
            type L = StatusEvent;
            let r = Reader::exact::<L>(packet)?;
            r.reserved::<3>(offset_of!(L, reserved))?;
            let event = ClientEvent::Status {
                symbol: r.symbol(offset_of!(L, symbol))?,
                status: r.code(offset_of!(L, status), MALFORMED)?,
            };
            (r.u64(offset_of!(L, seq))?, event)
        }
        _ => return Err(DecodeError::new(GatewayReason::UnknownOp)),
    };
    Ok(Reply::Event { seq, event })
}

fn encode_event(seq: u64, e: &ClientEvent, out: &mut Vec<u8>) {
    const S: u8 = packet::SEQUENCED;
    // Every event layout has `seq` at 8 (checked with each layout).
    let mut w = match *e {
        ClientEvent::Accepted { order_id, user, symbol, side, order_type, tif, qty, price, cid } => {
            type L = AcceptedEvent;
            let mut w = Writer::data::<L>(out, S, event::ACCEPTED);
            w.code(offset_of!(L, side), side);
            w.code(offset_of!(L, order_type), order_type);
            w.code(offset_of!(L, tif), tif);
            w.option(offset_of!(L, has_price), offset_of!(L, price), price);
            w.u64(offset_of!(L, order_id), order_id);
            w.u64(offset_of!(L, user), user);
            w.u64(offset_of!(L, qty), qty);
            w.symbol(offset_of!(L, symbol), Some(&symbol));
            w.cid(offset_of!(L, cid), cid.as_ref());
            w
        }
        ClientEvent::Rejected { reason, order_id, cid } => {
            type L = RejectedEvent;
            let mut w = Writer::data::<L>(out, S, event::REJECTED);
            w.code(offset_of!(L, reason), reason);
            w.option(offset_of!(L, has_order_id), offset_of!(L, order_id), order_id);
            w.cid(offset_of!(L, cid), cid.as_ref());
            w
        }
        ClientEvent::Fill { symbol, trade_id, price, qty, order_id, side, liquidity, remaining, cid } => {
            type L = FillEvent;
            let mut w = Writer::data::<L>(out, S, event::FILL);
            w.code(offset_of!(L, side), side);
            w.code(offset_of!(L, liquidity), liquidity);
            w.u64(offset_of!(L, trade_id), trade_id);
            w.u64(offset_of!(L, order_id), order_id);
            w.u64(offset_of!(L, price), price);
            w.u64(offset_of!(L, qty), qty);
            w.u64(offset_of!(L, remaining), remaining);
            w.symbol(offset_of!(L, symbol), Some(&symbol));
            w.cid(offset_of!(L, cid), cid.as_ref());
            w
        }
        ClientEvent::Cancelled { order_id, reason, remaining, cid } => {
            type L = CancelledEvent;
            let mut w = Writer::data::<L>(out, S, event::CANCELLED);
            w.code(offset_of!(L, reason), reason);
            w.u64(offset_of!(L, order_id), order_id);
            w.u64(offset_of!(L, remaining), remaining);
            w.cid(offset_of!(L, cid), cid.as_ref());
            w
        }
        ClientEvent::Modified { order_id, price, qty, cid } => {
            type L = ModifiedEvent;
            let mut w = Writer::data::<L>(out, S, event::MODIFIED);
            w.u64(offset_of!(L, order_id), order_id);
            w.u64(offset_of!(L, price), price);
            w.u64(offset_of!(L, qty), qty);
            w.cid(offset_of!(L, cid), cid.as_ref());
            w
        }
        ClientEvent::MassCancelled { user, count } => {
            type L = MassCancelledEvent;
            let mut w = Writer::data::<L>(out, S, event::MASS_CANCELLED);
            w.u64(offset_of!(L, user), user);
            w.u64(offset_of!(L, count), count);
            w
        }
        ClientEvent::Status { symbol, status } => {
            type L = StatusEvent;
            let mut w = Writer::data::<L>(out, S, event::STATUS);
            w.code(offset_of!(L, status), status);
            w.symbol(offset_of!(L, symbol), Some(&symbol));
            w
        }
    };
    w.u64(SEQ_AT, seq);
}

/// An unsequenced reply (a server `U` packet) other than an orders answer.
fn decode_reply(packet: &[u8]) -> Result<Reply, DecodeError> {
    match message_type(packet)? {
        reply::REJECTED => {
            type L = GatewayRejectedReply;
            let mut r = Reader::exact::<L>(packet)?;
            r.reserved::<2>(offset_of!(L, reserved))?;
            r.reserved::<3>(offset_of!(L, reserved2))?;
            Ok(Reply::Rejected {
                reason: r.code(offset_of!(L, reason), GatewayReason::Malformed)?,
                order_id: r.option(offset_of!(L, has_order_id), offset_of!(L, order_id))?,
                cid: r.cid(offset_of!(L, cid))?,
            })
        }
        reply::PONG => Reader::exact::<DataHead>(packet).map(|_| Reply::Pong),
        kind @ (reply::RESUME_TOO_OLD | reply::RESUME_DONE) => {
            let r = Reader::exact::<SeqReply>(packet)?;
            r.reserved::<4>(offset_of!(SeqReply, reserved))?;
            let seq = r.u64(offset_of!(SeqReply, seq))?;
            Ok(match kind {
                reply::RESUME_TOO_OLD => Reply::ResumeTooOld { oldest: seq },
                _ => Reply::ResumeDone { last_seq: seq },
            })
        }
        _ => Err(DecodeError::new(GatewayReason::UnknownOp)),
    }
}

fn encode_reply(r: &Reply, out: &mut Vec<u8>) {
    const U: u8 = packet::SERVER_DATA;
    match *r {
        Reply::Rejected { reason, order_id, cid } => {
            type L = GatewayRejectedReply;
            let mut w = Writer::data::<L>(out, U, reply::REJECTED);
            w.code(offset_of!(L, reason), reason);
            w.option(offset_of!(L, has_order_id), offset_of!(L, order_id), order_id);
            w.cid(offset_of!(L, cid), cid.as_ref());
        }
        Reply::Pong => {
            Writer::data::<DataHead>(out, U, reply::PONG);
        }
        Reply::ResumeTooOld { oldest } => {
            Writer::data::<SeqReply>(out, U, reply::RESUME_TOO_OLD).u64(offset_of!(SeqReply, seq), oldest);
        }
        Reply::ResumeDone { last_seq } => {
            Writer::data::<SeqReply>(out, U, reply::RESUME_DONE).u64(offset_of!(SeqReply, seq), last_seq);
        }
        Reply::LoginAccepted { .. }
        | Reply::LoginRejected { .. }
        | Reply::Event { .. }
        | Reply::Orders(_)
        | Reply::Goodbye { .. } => unreachable!("Invariant: encode_server writes these"),
    }
}

/// One packet of an orders answer.
fn decode_orders(packet: &[u8]) -> Result<ServerMessage, DecodeError> {
    let malformed = DecodeError::new(GatewayReason::Malformed);
    let (head, records) = packet.split_at_checked(size_of::<OrdersHead>()).ok_or(malformed)?;
    let head = Reader::exact::<OrdersHead>(head)?;
    let count = usize::from(head.u16(offset_of!(OrdersHead, count))?);
    let more = head.flag(offset_of!(OrdersHead, more))?;
    head.reserved::<1>(offset_of!(OrdersHead, reserved))?;
    if count > ORDERS_PER_PACKET_MAX || records.len() != count * size_of::<OrderRecord>() {
        return Err(malformed);
    }
    let mut orders = Vec::with_capacity(count);
    for record in records.chunks_exact(size_of::<OrderRecord>()) {
        type L = OrderRecord;
        let mut r = Reader::exact::<L>(record)?;
        r.reserved::<2>(offset_of!(L, reserved))?;
        orders.push(OrderInfo {
            order_id: r.u64(offset_of!(L, order_id))?,
            cid: r.cid(offset_of!(L, cid))?,
            symbol: r.symbol(offset_of!(L, symbol))?,
            side: r.code(offset_of!(L, side), GatewayReason::Malformed)?,
            price: r.u64(offset_of!(L, price))?,
            qty: r.u64(offset_of!(L, qty))?,
        });
    }
    Ok(match more {
        true => ServerMessage::OrdersPart(orders),
        false => ServerMessage::Reply(Reply::Orders(orders)),
    })
}

/// An orders answer in packets of at most [`ORDERS_PER_PACKET_MAX`]; `more`
/// marks the last packet too (a part of an answer).
fn encode_orders(orders: &[OrderInfo], more: bool, out: &mut Vec<u8>) {
    let packets = orders.len().div_ceil(ORDERS_PER_PACKET_MAX).max(1);
    // An empty answer is one packet of no orders.
    let empty = orders.is_empty().then_some(&[][..]);
    for (i, chunk) in orders.chunks(ORDERS_PER_PACKET_MAX).chain(empty).enumerate() {
        let len = size_of::<OrdersHead>() + chunk.len() * size_of::<OrderRecord>();
        let mut w = Writer::data_len(out, len, packet::SERVER_DATA, reply::ORDERS);
        w.u16(offset_of!(OrdersHead, count), chunk.len() as u16);
        w.u8(offset_of!(OrdersHead, more), (more || i + 1 < packets) as u8);
        for (j, o) in chunk.iter().enumerate() {
            type L = OrderRecord;
            let at = size_of::<OrdersHead>() + j * size_of::<L>();
            w.u64(at + offset_of!(L, order_id), o.order_id);
            w.u64(at + offset_of!(L, price), o.price);
            w.u64(at + offset_of!(L, qty), o.qty);
            w.symbol(at + offset_of!(L, symbol), Some(&o.symbol));
            w.code(at + offset_of!(L, side), o.side);
            w.cid(at + offset_of!(L, cid), o.cid.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(msg: ClientMessage) -> Vec<u8> {
        let mut out = Vec::new();
        encode_client(&msg, &mut out);
        out
    }

    fn server(msg: ServerMessage) -> Vec<u8> {
        let mut out = Vec::new();
        encode_server(&msg, &mut out);
        out
    }

    fn request(request: Request) -> ClientMessage {
        ClientMessage::Request(request)
    }

    fn event(event: ClientEvent) -> ServerMessage {
        ServerMessage::Reply(Reply::Event { seq: 77, event })
    }

    fn hex(text: &str) -> Vec<u8> {
        text.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
    }

    fn btc() -> Symbol {
        Symbol::new("BTC-USD").unwrap()
    }

    fn error(reason: GatewayReason) -> DecodeError {
        DecodeError::new(reason)
    }

    fn codes<T: Code + fmt::Debug + PartialEq>(all: &[T]) {
        for &value in all {
            assert_eq!(T::from_code(value.code()), Some(value));
        }
        assert_eq!((0..=255).filter_map(T::from_code).count(), all.len());
    }

    #[test]
    fn codes_are_one_to_one() {
        codes(&[Side::Buy, Side::Sell]);
        codes(&[OrderType::Limit, OrderType::Market]);
        codes(&[Tif::Gtc, Tif::Ioc, Tif::Fok]);
        codes(&[Stp::None, Stp::CancelTaker, Stp::CancelMaker, Stp::CancelBoth]);
        codes(&[Liquidity::Maker, Liquidity::Taker]);
        codes(&[TradingStatus::Open, TradingStatus::Halted]);
        codes(&CancelReason::ALL);
        codes(&RejectReason::ALL);
        codes(&GatewayReason::ALL);
        codes(&[LoginError::BadCredentials, LoginError::Malformed, LoginError::Unavailable]);
    }

    /// The examples of `docs/PROTOCOL.md`, byte for byte.
    #[test]
    fn the_documented_examples() {
        let login = request(Request::Login(Login {
            user: 42,
            key: "s3cret".into(),
            cancel_on_disconnect: true,
            resume_after: Some(1000),
        }));
        let bytes = hex("00 56 4c 03 01 00 06 00 2a 00 00 00 00 00 00 00
                         e8 03 00 00 00 00 00 00 73 33 63 72 65 74")
        .into_iter()
        .chain([0; 58])
        .collect::<Vec<_>>();
        assert_eq!(client(login.clone()), bytes);
        assert_eq!(decode_client(&bytes), Ok(login));

        let order = NewOrder::limit(0, 42, btc(), Side::Buy, 30000, 5);
        let new = request(Request::Command { action: Action::New(order), cid: Cid::new("a1") });
        let bytes = hex("00 56 55 4f 01 01 01 01 2a 00 00 00 00 00 00 00
                         30 75 00 00 00 00 00 00 05 00 00 00 00 00 00 00
                         42 54 43 2d 55 53 44 00 00 00 00 00 00 00 00 00
                         00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
                         00 00 02 61 31 00 00 00 00 00 00 00 00 00 00 00
                         00 00 00 00 00 00 00 00");
        assert_eq!(client(new.clone()), bytes);
        assert_eq!(decode_client(&bytes), Ok(new));
    }

    /// Every reserved byte of every layout, set, makes the packet `Malformed`.
    #[test]
    fn reserved_bytes_must_be_zero() {
        let cid = Cid::new("c-1");
        let client_cases: Vec<(ClientMessage, Vec<usize>)> = vec![
            (
                request(Request::Login(Login {
                    user: 1,
                    key: "k".into(),
                    cancel_on_disconnect: false,
                    resume_after: None,
                })),
                vec![offset_of!(LoginRequest, reserved)],
            ),
            (
                request(Request::Command { action: Action::New(NewOrder::limit(0, 1, btc(), Side::Sell, 2, 3)), cid }),
                vec![offset_of!(NewOrderMessage, reserved)],
            ),
            (
                request(Request::Command { action: Action::Cancel { user: 1, order_id: 2 }, cid: None }),
                (4..8).collect(),
            ),
            (request(Request::CancelCid { user: 1, cid: cid.unwrap() }), (4..8).chain(37..40).collect()),
            (
                request(Request::Command {
                    action: Action::Modify { user: 1, order_id: 2, price: Some(3), qty: None },
                    cid: None,
                }),
                (6..8).collect(),
            ),
            (
                request(Request::ModifyCid { user: 1, cid: cid.unwrap(), price: None, qty: Some(4) }),
                (6..8).chain(53..56).collect(),
            ),
            (
                request(Request::Command {
                    action: Action::MassCancel { user: 1, symbol: None, side: Some(Side::Buy) },
                    cid: None,
                }),
                (5..8).collect(),
            ),
        ];
        for (msg, reserved) in client_cases {
            let bytes = client(msg);
            for at in reserved {
                let mut damaged = bytes.clone();
                damaged[at] = 0x80;
                assert_eq!(decode_client(&damaged).map_err(|e| e.reason), Err(GatewayReason::Malformed), "byte {at}");
            }
        }

        let record = OrderInfo { order_id: 1, cid, symbol: btc(), side: Side::Buy, price: 2, qty: 3 };
        let server_cases: Vec<(ServerMessage, Vec<usize>)> = vec![
            (ServerMessage::Reply(Reply::LoginAccepted { user: 3 }), (3..8).collect()),
            (
                event(ClientEvent::Accepted {
                    order_id: 1,
                    user: 2,
                    symbol: btc(),
                    side: Side::Buy,
                    order_type: OrderType::Market,
                    tif: Tif::Ioc,
                    qty: 3,
                    price: None,
                    cid,
                }),
                (101..104).collect(),
            ),
            (
                event(ClientEvent::Rejected { reason: RejectReason::Halted, order_id: Some(1), cid }),
                (6..8).chain(45..48).collect(),
            ),
            (
                event(ClientEvent::Fill {
                    symbol: btc(),
                    trade_id: 1,
                    price: 2,
                    qty: 3,
                    order_id: 4,
                    side: Side::Sell,
                    liquidity: Liquidity::Maker,
                    remaining: 5,
                    cid,
                }),
                (6..8).chain(109..112).collect(),
            ),
            (
                event(ClientEvent::Cancelled { order_id: 1, reason: CancelReason::Stp, remaining: 2, cid }),
                (5..8).chain(53..56).collect(),
            ),
            (event(ClientEvent::Modified { order_id: 1, price: 2, qty: 3, cid }), (4..8).chain(61..64).collect()),
            (event(ClientEvent::MassCancelled { user: 1, count: 2 }), (4..8).collect()),
            (event(ClientEvent::Status { symbol: btc(), status: TradingStatus::Halted }), (5..8).collect()),
            (
                ServerMessage::Reply(Reply::Rejected { reason: GatewayReason::UnknownCid, order_id: None, cid }),
                (6..8).chain(37..40).collect(),
            ),
            (ServerMessage::Reply(Reply::Orders(vec![record])), vec![7, 8 + 78, 8 + 79]),
            (ServerMessage::Reply(Reply::ResumeTooOld { oldest: 9 }), (4..8).collect()),
            (ServerMessage::Reply(Reply::ResumeDone { last_seq: 9 }), (4..8).collect()),
        ];
        for (msg, reserved) in server_cases {
            let bytes = server(msg);
            for at in reserved {
                let mut damaged = bytes.clone();
                damaged[at] = 1;
                assert_eq!(decode_server(&damaged).map_err(|e| e.reason), Err(GatewayReason::Malformed), "byte {at}");
            }
        }
    }

    #[test]
    fn absent_values_and_padding_must_be_zero() {
        let login = client(request(Request::Login(Login {
            user: 1,
            key: "key".into(),
            cancel_on_disconnect: false,
            resume_after: None,
        })));
        let order = client(request(Request::Command {
            action: Action::New(NewOrder::market(0, 1, btc(), Side::Buy, 5)),
            cid: Cid::new("abc"),
        }));
        let cases: [(&[u8], usize, u8); 9] = [
            (&login, offset_of!(LoginRequest, key) + 3, b'x'),   // key padding
            (&login, offset_of!(LoginRequest, resume_after), 1), // resume_after without its flag
            (&login, offset_of!(LoginRequest, flags), 4),        // an unknown flag
            (&login, offset_of!(LoginRequest, key_len), 65),
            (&order, offset_of!(NewOrderMessage, price), 1), // the price of a market order
            (&order, offset_of!(NewOrderMessage, post_only), 2),
            (&order, offset_of!(NewOrderMessage, cid) + 1 + 3, b'd'), // cid padding
            (&order, offset_of!(NewOrderMessage, cid), 21),
            (&order, offset_of!(NewOrderMessage, cid) + 1, b'!'), // not a cid character
        ];
        for (bytes, at, value) in cases {
            let mut damaged = bytes.to_vec();
            damaged[at] = value;
            assert_eq!(decode_client(&damaged).map_err(|e| e.reason), Err(GatewayReason::Malformed), "byte {at}");
        }
    }

    #[test]
    fn checks_go_in_spec_order_and_echo_what_was_read() {
        let cid = Cid::new("mine");
        let order = client(request(Request::Command {
            action: Action::New(NewOrder::limit(0, 1, btc(), Side::Buy, 10, 5)),
            cid,
        }));
        let with = |changes: &[(usize, u8)]| {
            let mut bytes = order.clone();
            for &(at, value) in changes {
                bytes[at] = value;
            }
            decode_client(&bytes)
        };
        let symbol_at = offset_of!(NewOrderMessage, symbol);
        let (tif_at, side_at) = (offset_of!(NewOrderMessage, tif), offset_of!(NewOrderMessage, side));
        let reject = |reason| Err(DecodeError { reason, order_id: None, cid });
        assert_eq!(with(&[(tif_at, 0)]), reject(GatewayReason::InvalidTif));
        assert_eq!(with(&[(symbol_at + 3, b'!')]), reject(GatewayReason::InvalidSymbol));
        assert_eq!(with(&[(symbol_at + 1, 0)]), reject(GatewayReason::InvalidSymbol)); // "B\0C-USD"
        assert_eq!(with(&[(symbol_at + 3, b'!'), (tif_at, 9)]), reject(GatewayReason::InvalidSymbol));
        assert_eq!(with(&[(symbol_at + 3, b'!'), (side_at, 3)]), reject(GatewayReason::Malformed));
        let mut no_symbol = order.clone();
        no_symbol[symbol_at..symbol_at + 32].fill(0);
        assert_eq!(decode_client(&no_symbol), reject(GatewayReason::InvalidSymbol));

        let mut cancel =
            client(request(Request::Command { action: Action::Cancel { user: 1, order_id: 99 }, cid: None }));
        cancel[offset_of!(CancelMessage, reserved)] = 1;
        assert_eq!(
            decode_client(&cancel),
            Err(DecodeError { reason: GatewayReason::Malformed, order_id: Some(99), cid: None })
        );
        let mut modify = client(request(Request::ModifyCid { user: 1, cid: cid.unwrap(), price: None, qty: None }));
        modify[offset_of!(ModifyCidMessage, has_qty)] = 7;
        assert_eq!(decode_client(&modify), Err(DecodeError { reason: GatewayReason::Malformed, order_id: None, cid }));
        let mut cancel_cid = client(request(Request::CancelCid { user: 1, cid: cid.unwrap() }));
        cancel_cid[offset_of!(CancelCidMessage, cid)] = 0; // no cid: not a cancel by cid
        assert_eq!(decode_client(&cancel_cid), Err(error(GatewayReason::Malformed)));
    }

    #[test]
    fn mass_cancel_and_operator_messages() {
        for (symbol, side) in [(None, None), (Some(btc()), Some(Side::Sell))] {
            let msg = request(Request::Command { action: Action::MassCancel { user: 5, symbol, side }, cid: None });
            assert_eq!(decode_client(&client(msg.clone())), Ok(msg));
        }
        let mut halt = client(request(Request::Command { action: Action::Halt { symbol: btc() }, cid: None }));
        assert_eq!(halt.len(), 36);
        halt[offset_of!(SymbolMessage, symbol)..].fill(0);
        assert_eq!(decode_client(&halt), Err(error(GatewayReason::InvalidSymbol)));
    }

    #[test]
    fn unknown_types_and_bad_lengths() {
        assert_eq!(decode_client(&[0, 2, b'U', b'Z']), Err(error(GatewayReason::UnknownOp)));
        assert_eq!(decode_client(&[0, 1, b'+']), Err(error(GatewayReason::UnknownOp)));
        assert_eq!(decode_client(&[0, 1, b'U']), Err(error(GatewayReason::Malformed)));
        assert_eq!(decode_client(&[0, 1, b'R']), Ok(ClientMessage::Heartbeat));
        assert_eq!(decode_client(&[0, 2, b'R', 0]), Err(error(GatewayReason::Malformed)));
        assert_eq!(decode_client(&[0, 2, b'R']), Err(error(GatewayReason::Malformed))); // prefix says more
        assert_eq!(decode_client(&[0, 0]), Err(error(GatewayReason::Malformed)));
        assert_eq!(decode_client(&[]), Err(error(GatewayReason::Malformed)));
        assert_eq!(decode_server(&[0, 2, b'S', b'Q']), Err(error(GatewayReason::UnknownOp)));
        assert_eq!(decode_server(&[0, 1, b'L']), Err(error(GatewayReason::UnknownOp)));
        assert_eq!(decode_server(&[0, 1, b'H']), Ok(ServerMessage::Heartbeat));
    }

    #[test]
    fn a_login_of_another_version_is_refused() {
        let mut login = client(request(Request::Login(Login {
            user: 1,
            key: String::new(),
            cancel_on_disconnect: true,
            resume_after: Some(0),
        })));
        assert!(decode_client(&login).is_ok());
        login[offset_of!(LoginRequest, version)] = 2;
        assert_eq!(decode_client(&login), Err(error(GatewayReason::Malformed)));
    }

    #[test]
    fn frame_len_finds_the_first_packet_or_refuses_at_once() {
        assert_eq!(frame_len(&[], 4096), Ok(None));
        assert_eq!(frame_len(&[0], 4096), Ok(None));
        assert_eq!(frame_len(&[0, 0], 4096), Err(FrameError::Empty));
        assert_eq!(frame_len(&[0, 1], 4096), Ok(None));
        assert_eq!(frame_len(&[0, 1, b'R', 0, 1], 4096), Ok(Some(3)));
        // Refused from the prefix alone, before the bytes arrive.
        assert_eq!(frame_len(&[0x10, 0], 4096), Err(FrameError::TooLong { len: 4098, max_len: 4096 }));
        assert_eq!(frame_len(&[0x0f, 0xfe], 4096), Ok(None));
        assert_eq!(frame_len(&[0xff, 0xff], usize::MAX), Ok(None));
        assert_eq!(FrameError::TooLong { len: 9, max_len: 8 }.reason(), GatewayReason::TooLong);
    }

    #[test]
    fn a_goodbye_is_cut_at_a_character_boundary() {
        let long = "a".repeat(254) + "é";
        let bytes = server(ServerMessage::Reply(Reply::Goodbye { reason: long }));
        assert_eq!(bytes.len(), 4 + 254);
        assert_eq!(decode_server(&bytes), Ok(ServerMessage::Reply(Reply::Goodbye { reason: "a".repeat(254) })));
        let mut bad = server(ServerMessage::Reply(Reply::Goodbye { reason: "é".into() }));
        bad[4] = 0xff;
        assert_eq!(decode_server(&bad), Err(error(GatewayReason::Malformed)));
    }

    #[test]
    fn a_long_orders_answer_is_split() {
        let order = |i| OrderInfo { order_id: i, cid: None, symbol: btc(), side: Side::Buy, price: i, qty: 1 };
        let orders: Vec<OrderInfo> = (0..120).map(order).collect();
        let bytes = server(ServerMessage::Reply(Reply::Orders(orders.clone())));
        let mut decoded = Vec::new();
        let mut rest = &bytes[..];
        while let Some(len) = frame_len(rest, SERVER_PACKET_LEN_MAX).unwrap() {
            decoded.push(decode_server(&rest[..len]).unwrap());
            rest = &rest[len..];
        }
        assert!(rest.is_empty());
        assert_eq!(
            decoded,
            [
                ServerMessage::OrdersPart(orders[..50].to_vec()),
                ServerMessage::OrdersPart(orders[50..100].to_vec()),
                ServerMessage::Reply(Reply::Orders(orders[100..].to_vec())),
            ]
        );
        assert_eq!(server(ServerMessage::Reply(Reply::Orders(vec![]))), [0, 6, b'U', b'Q', 0, 0, 0, 0]);
        // More than a packet may carry is refused.
        let mut full = server(ServerMessage::Reply(Reply::Orders(orders[..50].to_vec())));
        assert_eq!(full.len(), SERVER_PACKET_LEN_MAX);
        let record = full[8..88].to_vec();
        full.extend_from_slice(&record);
        let declared = (full.len() - 2) as u16;
        full[..2].copy_from_slice(&declared.to_be_bytes());
        full[offset_of!(OrdersHead, count)] = 51;
        assert_eq!(decode_server(&full), Err(error(GatewayReason::Malformed)));
    }
}
