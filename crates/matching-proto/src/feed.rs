//! The market-data feed: order-by-order messages in the spirit of Nasdaq
//! TotalView-ITCH 5.0, framed as MoldUDP64 for UDP, and the framing of the
//! snapshot service (GLIMPSE-like). `docs/PROTOCOL.md` ("Market data") gives
//! every layout as a table.
//!
//! Every integer is **big-endian**, as in ITCH. Every message starts with
//! the same 13 bytes: its type (one ASCII letter), the symbol's `locate`
//! (`u32`, numbered from 1 in the order symbols first appear; 0 for a
//! system event) and the engine `seq` of the command that caused it (`u64`;
//! where ITCH has a timestamp: it makes the feed a deterministic function
//! of the journal, and lets a client match a feed message to its own
//! command's answer).
//!
//! Decoding is total and strict: any bytes give a message or a
//! [`FeedDecodeError`], never a panic, and a message that decodes encodes
//! back to the same bytes.

use std::fmt;

use matching_core::{SYMBOL_LEN_MAX, Seq, Side, Symbol};

/// `S`: what a system event announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SystemCode {
    /// `O`: the first message of a session (the book is empty, or the
    /// session's first messages rebuild it).
    StartOfMessages,
    /// `C`: the last message of a session.
    EndOfMessages,
}

/// One feed message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FeedMessage {
    /// `S`
    SystemEvent { seq: Seq, code: SystemCode },
    /// `R`: a symbol's locate, given before any other message of it.
    SymbolDirectory { locate: u32, seq: Seq, symbol: Symbol },
    /// `H`: the symbol is halted (`true`) or trading.
    TradingStatus { locate: u32, seq: Seq, halted: bool },
    /// `A`: an order rests (anonymous: no user).
    AddOrder { locate: u32, seq: Seq, order_id: u64, side: Side, qty: u64, price: u64 },
    /// `E`: a resting order traded `qty` (at its own price); `match_number`
    /// is the trade id (counted per symbol).
    OrderExecuted { locate: u32, seq: Seq, order_id: u64, qty: u64, match_number: u64 },
    /// `X`: a resting order lost `qty` and keeps its place (a modify down).
    OrderCancel { locate: u32, seq: Seq, order_id: u64, qty: u64 },
    /// `D`: a resting order left the book (cancelled, or a modify that
    /// took it out and did not rest again).
    OrderDelete { locate: u32, seq: Seq, order_id: u64 },
    /// `U`: a resting order was taken out and entered again with a new
    /// price and/or quantity, at the tail of its level (a modify that lost
    /// priority). Our order ids survive a modify, so `new_order_id` equals
    /// `order_id`; the field keeps ITCH's shape.
    OrderReplace { locate: u32, seq: Seq, order_id: u64, new_order_id: u64, qty: u64, price: u64 },
    /// `P`: the print of a trade, for the tape (the book change is its `E`):
    /// the aggressor's side, quantity, price, match number.
    Trade { locate: u32, seq: Seq, taker_side: Side, qty: u64, price: u64, match_number: u64 },
    /// `G`: the end of a snapshot (snapshot service only): the snapshot is
    /// the book after feed message `next - 1`; apply the feed from `next` on.
    EndOfSnapshot { locate: u32, seq: Seq, next: u64 },
}

/// The common head of every message: type, locate, seq.
pub const HEAD_LEN: usize = 1 + 4 + 8;

impl FeedMessage {
    pub fn type_byte(&self) -> u8 {
        match self {
            FeedMessage::SystemEvent { .. } => b'S',
            FeedMessage::SymbolDirectory { .. } => b'R',
            FeedMessage::TradingStatus { .. } => b'H',
            FeedMessage::AddOrder { .. } => b'A',
            FeedMessage::OrderExecuted { .. } => b'E',
            FeedMessage::OrderCancel { .. } => b'X',
            FeedMessage::OrderDelete { .. } => b'D',
            FeedMessage::OrderReplace { .. } => b'U',
            FeedMessage::Trade { .. } => b'P',
            FeedMessage::EndOfSnapshot { .. } => b'G',
        }
    }

    /// The symbol's locate (0 for a system event).
    pub fn locate(&self) -> u32 {
        match *self {
            FeedMessage::SystemEvent { .. } => 0,
            FeedMessage::SymbolDirectory { locate, .. }
            | FeedMessage::TradingStatus { locate, .. }
            | FeedMessage::AddOrder { locate, .. }
            | FeedMessage::OrderExecuted { locate, .. }
            | FeedMessage::OrderCancel { locate, .. }
            | FeedMessage::OrderDelete { locate, .. }
            | FeedMessage::OrderReplace { locate, .. }
            | FeedMessage::Trade { locate, .. }
            | FeedMessage::EndOfSnapshot { locate, .. } => locate,
        }
    }

    /// The engine `seq` of the command that caused it.
    pub fn seq(&self) -> Seq {
        match *self {
            FeedMessage::SystemEvent { seq, .. }
            | FeedMessage::SymbolDirectory { seq, .. }
            | FeedMessage::TradingStatus { seq, .. }
            | FeedMessage::AddOrder { seq, .. }
            | FeedMessage::OrderExecuted { seq, .. }
            | FeedMessage::OrderCancel { seq, .. }
            | FeedMessage::OrderDelete { seq, .. }
            | FeedMessage::OrderReplace { seq, .. }
            | FeedMessage::Trade { seq, .. }
            | FeedMessage::EndOfSnapshot { seq, .. } => seq,
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        HEAD_LEN
            + match self {
                FeedMessage::SystemEvent { .. } | FeedMessage::TradingStatus { .. } => 1,
                FeedMessage::SymbolDirectory { .. } => SYMBOL_LEN_MAX,
                FeedMessage::AddOrder { .. } => 8 + 1 + 8 + 8,
                FeedMessage::OrderExecuted { .. } => 8 + 8 + 8,
                FeedMessage::OrderCancel { .. } => 8 + 8,
                FeedMessage::OrderDelete { .. } | FeedMessage::EndOfSnapshot { .. } => 8,
                FeedMessage::OrderReplace { .. } => 8 + 8 + 8 + 8,
                FeedMessage::Trade { .. } => 1 + 8 + 8 + 8,
            }
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Appends the message's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.type_byte());
        out.extend_from_slice(&self.locate().to_be_bytes());
        out.extend_from_slice(&self.seq().to_be_bytes());
        let u64s = |out: &mut Vec<u8>, values: &[u64]| {
            for value in values {
                out.extend_from_slice(&value.to_be_bytes());
            }
        };
        match *self {
            FeedMessage::SystemEvent { code, .. } => out.push(match code {
                SystemCode::StartOfMessages => b'O',
                SystemCode::EndOfMessages => b'C',
            }),
            FeedMessage::SymbolDirectory { symbol, .. } => out.extend_from_slice(&pad_symbol(Some(&symbol))),
            FeedMessage::TradingStatus { halted, .. } => out.push(if halted { b'H' } else { b'T' }),
            FeedMessage::AddOrder { order_id, side, qty, price, .. } => {
                u64s(out, &[order_id]);
                out.push(side_byte(side));
                u64s(out, &[qty, price]);
            }
            FeedMessage::OrderExecuted { order_id, qty, match_number, .. } => u64s(out, &[order_id, qty, match_number]),
            FeedMessage::OrderCancel { order_id, qty, .. } => u64s(out, &[order_id, qty]),
            FeedMessage::OrderDelete { order_id, .. } => u64s(out, &[order_id]),
            FeedMessage::OrderReplace { order_id, new_order_id, qty, price, .. } => {
                u64s(out, &[order_id, new_order_id, qty, price])
            }
            FeedMessage::Trade { taker_side, qty, price, match_number, .. } => {
                out.push(side_byte(taker_side));
                u64s(out, &[qty, price, match_number]);
            }
            FeedMessage::EndOfSnapshot { next, .. } => u64s(out, &[next]),
        }
    }

    /// Reads one whole message (exactly `bytes`).
    pub fn decode(bytes: &[u8]) -> Result<FeedMessage, FeedDecodeError> {
        let mut r = Reader { bytes, at: 0 };
        let kind = r.u8()?;
        let locate = r.u32()?;
        let seq = r.u64()?;
        let message = match kind {
            b'S' => {
                if locate != 0 {
                    return Err(FeedDecodeError::BadValue("a system event's locate is 0"));
                }
                let code = match r.u8()? {
                    b'O' => SystemCode::StartOfMessages,
                    b'C' => SystemCode::EndOfMessages,
                    _ => return Err(FeedDecodeError::BadValue("system event code")),
                };
                FeedMessage::SystemEvent { seq, code }
            }
            b'R' => {
                let symbol = unpad_symbol(r.take(SYMBOL_LEN_MAX)?)?.ok_or(FeedDecodeError::BadValue("symbol"))?;
                FeedMessage::SymbolDirectory { locate, seq, symbol }
            }
            b'H' => {
                let halted = match r.u8()? {
                    b'H' => true,
                    b'T' => false,
                    _ => return Err(FeedDecodeError::BadValue("trading state")),
                };
                FeedMessage::TradingStatus { locate, seq, halted }
            }
            b'A' => {
                let order_id = r.u64()?;
                let side = r.side()?;
                FeedMessage::AddOrder { locate, seq, order_id, side, qty: r.u64()?, price: r.u64()? }
            }
            b'E' => {
                FeedMessage::OrderExecuted { locate, seq, order_id: r.u64()?, qty: r.u64()?, match_number: r.u64()? }
            }
            b'X' => FeedMessage::OrderCancel { locate, seq, order_id: r.u64()?, qty: r.u64()? },
            b'D' => FeedMessage::OrderDelete { locate, seq, order_id: r.u64()? },
            b'U' => FeedMessage::OrderReplace {
                locate,
                seq,
                order_id: r.u64()?,
                new_order_id: r.u64()?,
                qty: r.u64()?,
                price: r.u64()?,
            },
            b'P' => FeedMessage::Trade {
                locate,
                seq,
                taker_side: r.side()?,
                qty: r.u64()?,
                price: r.u64()?,
                match_number: r.u64()?,
            },
            b'G' => FeedMessage::EndOfSnapshot { locate, seq, next: r.u64()? },
            other => return Err(FeedDecodeError::UnknownType(other)),
        };
        if r.at != bytes.len() {
            return Err(FeedDecodeError::Length { kind, len: bytes.len() });
        }
        Ok(message)
    }
}

fn side_byte(side: Side) -> u8 {
    match side {
        Side::Buy => b'B',
        Side::Sell => b'S',
    }
}

/// Why bytes are not a feed message or packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedDecodeError {
    /// Fewer bytes than the layout.
    Truncated,
    /// More or fewer bytes than the message of this type.
    Length {
        kind: u8,
        len: usize,
    },
    UnknownType(u8),
    BadValue(&'static str),
}

impl fmt::Display for FeedDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeedDecodeError::Truncated => write!(f, "truncated"),
            FeedDecodeError::Length { kind, len } => write!(f, "a {:?} message of {len} bytes", *kind as char),
            FeedDecodeError::UnknownType(kind) => write!(f, "unknown message type {kind:#04x}"),
            FeedDecodeError::BadValue(what) => write!(f, "bad {what}"),
        }
    }
}

impl std::error::Error for FeedDecodeError {}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FeedDecodeError> {
        let end = self.at.checked_add(n).ok_or(FeedDecodeError::Truncated)?;
        let bytes = self.bytes.get(self.at..end).ok_or(FeedDecodeError::Truncated)?;
        self.at = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FeedDecodeError> {
        self.take(N)?.try_into().map_err(|_| FeedDecodeError::Truncated)
    }

    fn u8(&mut self) -> Result<u8, FeedDecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, FeedDecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, FeedDecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, FeedDecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn side(&mut self) -> Result<Side, FeedDecodeError> {
        match self.u8()? {
            b'B' => Ok(Side::Buy),
            b'S' => Ok(Side::Sell),
            _ => Err(FeedDecodeError::BadValue("side")),
        }
    }
}

// ---------------------------------------------------------------------------
// MoldUDP64

/// A MoldUDP64 session name: 10 ASCII bytes.
pub type Session = [u8; 10];

/// The MoldUDP64 header: session, sequence number, message count.
pub const MOLD_HEADER_LEN: usize = 10 + 8 + 2;
/// A re-request: session, first sequence number, count.
pub const MOLD_REQUEST_LEN: usize = 10 + 8 + 2;
/// The message count that marks the end of a session.
pub const END_OF_SESSION: u16 = 0xFFFF;
/// Largest UDP payload the feed sends (fits an Ethernet MTU with IP and UDP headers).
pub const PACKET_LEN_MAX: usize = 1400;

/// What a MoldUDP64 packet is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MoldPacket<'a> {
    /// Messages `seq`, `seq + 1`, …: each a byte slice (undecoded).
    Messages { session: Session, seq: u64, messages: Vec<&'a [u8]> },
    /// Nothing new: the next message will be `next`.
    Heartbeat { session: Session, next: u64 },
    /// The session has ended; `next` is one past its last message.
    EndOfSession { session: Session, next: u64 },
}

/// Builds MoldUDP64 packets: a header, then each message with its 2-byte length.
pub struct MoldWriter {
    buf: Vec<u8>,
    count: u16,
}

impl MoldWriter {
    /// An empty packet of `session` whose first message is `seq`.
    pub fn new(session: Session, seq: u64) -> MoldWriter {
        let mut buf = Vec::with_capacity(PACKET_LEN_MAX);
        buf.extend_from_slice(&session);
        buf.extend_from_slice(&seq.to_be_bytes());
        buf.extend_from_slice(&0u16.to_be_bytes());
        MoldWriter { buf, count: 0 }
    }

    /// Whether a message of `len` bytes still fits.
    pub fn fits(&self, len: usize) -> bool {
        self.buf.len() + 2 + len <= PACKET_LEN_MAX && self.count < END_OF_SESSION - 1
    }

    /// Appends an encoded message (the caller checked [`MoldWriter::fits`]).
    pub fn push(&mut self, message: &[u8]) {
        self.buf.extend_from_slice(&(message.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(message);
        self.count += 1;
        self.buf[18..20].copy_from_slice(&self.count.to_be_bytes());
    }

    pub fn count(&self) -> u16 {
        self.count
    }

    /// The packet's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// A heartbeat (count 0) or end-of-session (count 0xFFFF) packet.
pub fn mold_control(session: Session, next: u64, end: bool) -> [u8; MOLD_HEADER_LEN] {
    let mut out = [0u8; MOLD_HEADER_LEN];
    out[..10].copy_from_slice(&session);
    out[10..18].copy_from_slice(&next.to_be_bytes());
    let count = if end { END_OF_SESSION } else { 0 };
    out[18..20].copy_from_slice(&count.to_be_bytes());
    out
}

/// Reads a MoldUDP64 packet (the messages stay undecoded).
pub fn decode_mold(bytes: &[u8]) -> Result<MoldPacket<'_>, FeedDecodeError> {
    let mut r = Reader { bytes, at: 0 };
    let session: Session = r.array()?;
    let seq = r.u64()?;
    let count = r.u16()?;
    if count == 0 || count == END_OF_SESSION {
        if r.at != bytes.len() {
            return Err(FeedDecodeError::BadValue("bytes after a heartbeat"));
        }
        return Ok(if count == 0 {
            MoldPacket::Heartbeat { session, next: seq }
        } else {
            MoldPacket::EndOfSession { session, next: seq }
        });
    }
    let mut messages = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = r.u16()? as usize;
        messages.push(r.take(len)?);
    }
    if r.at != bytes.len() {
        return Err(FeedDecodeError::BadValue("bytes after the last message"));
    }
    Ok(MoldPacket::Messages { session, seq, messages })
}

/// A re-request: messages `seq .. seq + count` of `session`.
pub fn encode_mold_request(session: Session, seq: u64, count: u16) -> [u8; MOLD_REQUEST_LEN] {
    let mut out = [0u8; MOLD_REQUEST_LEN];
    out[..10].copy_from_slice(&session);
    out[10..18].copy_from_slice(&seq.to_be_bytes());
    out[18..20].copy_from_slice(&count.to_be_bytes());
    out
}

/// Reads a re-request: `(session, seq, count)`.
pub fn decode_mold_request(bytes: &[u8]) -> Result<(Session, u64, u16), FeedDecodeError> {
    if bytes.len() != MOLD_REQUEST_LEN {
        return Err(FeedDecodeError::Length { kind: b'?', len: bytes.len() });
    }
    let mut r = Reader { bytes, at: 0 };
    Ok((r.array()?, r.u64()?, r.u16()?))
}

// ---------------------------------------------------------------------------
// The snapshot service (TCP)

/// The snapshot request a client sends: a 2-byte big-endian length (33),
/// `Q`, then the symbol space-padded to 32 bytes; all spaces (`None`) asks
/// for every symbol.
pub fn encode_snapshot_request(symbol: Option<&Symbol>) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 1 + SYMBOL_LEN_MAX);
    out.extend_from_slice(&((1 + SYMBOL_LEN_MAX) as u16).to_be_bytes());
    out.push(b'Q');
    out.extend_from_slice(&pad_symbol(symbol));
    out
}

/// Reads a snapshot request's body (after its length): the symbol, or
/// `None` for every symbol.
pub fn decode_snapshot_request(body: &[u8]) -> Result<Option<Symbol>, FeedDecodeError> {
    let mut r = Reader { bytes: body, at: 0 };
    if r.u8()? != b'Q' {
        return Err(FeedDecodeError::BadValue("a snapshot request starts with Q"));
    }
    let padded = r.take(SYMBOL_LEN_MAX)?;
    if r.at != body.len() {
        return Err(FeedDecodeError::Length { kind: b'Q', len: body.len() });
    }
    unpad_symbol(padded)
}

/// A symbol as the feed writes it: ASCII, padded with spaces to 32 bytes
/// (`None`: all spaces).
pub fn pad_symbol(symbol: Option<&Symbol>) -> [u8; SYMBOL_LEN_MAX] {
    let mut padded = [b' '; SYMBOL_LEN_MAX];
    if let Some(symbol) = symbol {
        padded[..symbol.as_bytes().len()].copy_from_slice(symbol.as_bytes());
    }
    padded
}

/// What [`pad_symbol`] wrote: `None` for all spaces. Spaces may only pad
/// the end, so a name that reads encodes back the same.
pub fn unpad_symbol(padded: &[u8]) -> Result<Option<Symbol>, FeedDecodeError> {
    let len = padded.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    if len == 0 {
        return Ok(None);
    }
    Symbol::from_bytes(&padded[..len]).map(Some).ok_or(FeedDecodeError::BadValue("symbol"))
}

/// Appends `message` to a snapshot stream: a 2-byte big-endian length, then the message.
pub fn encode_framed(message: &FeedMessage, out: &mut Vec<u8>) {
    out.extend_from_slice(&(message.len() as u16).to_be_bytes());
    message.encode(out);
}

/// The length of the first framed message in `buf` (prefix included), if whole.
pub fn framed_len(buf: &[u8]) -> Option<usize> {
    let len = u16::from_be_bytes(buf.get(..2)?.try_into().ok()?) as usize;
    (buf.len() >= 2 + len).then_some(2 + len)
}

/// The text of a session name: its bytes, space-padded ASCII.
pub fn session_name(session: &Session) -> String {
    String::from_utf8_lossy(session).trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_encodes_to_its_length_and_back() {
        let symbol = Symbol::new("BTC-USD").unwrap();
        let messages = [
            FeedMessage::SystemEvent { seq: 1, code: SystemCode::StartOfMessages },
            FeedMessage::SymbolDirectory { locate: 7, seq: 2, symbol },
            FeedMessage::TradingStatus { locate: 7, seq: 3, halted: true },
            FeedMessage::AddOrder { locate: 7, seq: 4, order_id: 9, side: Side::Sell, qty: 5, price: 100 },
            FeedMessage::OrderExecuted { locate: 7, seq: 5, order_id: 9, qty: 2, match_number: 1 },
            FeedMessage::OrderCancel { locate: 7, seq: 6, order_id: 9, qty: 1 },
            FeedMessage::OrderDelete { locate: 7, seq: 7, order_id: 9 },
            FeedMessage::OrderReplace { locate: 7, seq: 8, order_id: 9, new_order_id: 9, qty: 3, price: 99 },
            FeedMessage::Trade { locate: 7, seq: 9, taker_side: Side::Buy, qty: 2, price: 100, match_number: 1 },
            FeedMessage::EndOfSnapshot { locate: 7, seq: 9, next: 42 },
        ];
        for message in messages {
            let mut bytes = Vec::new();
            message.encode(&mut bytes);
            assert_eq!(bytes.len(), message.len(), "{message:?}");
            assert_eq!(FeedMessage::decode(&bytes), Ok(message));
            for cut in 0..bytes.len() {
                assert!(FeedMessage::decode(&bytes[..cut]).is_err());
            }
        }
    }

    #[test]
    fn mold_packets_round_trip() {
        let session = *b"ME00000001";
        let mut writer = MoldWriter::new(session, 41);
        let mut one = Vec::new();
        FeedMessage::OrderDelete { locate: 1, seq: 2, order_id: 3 }.encode(&mut one);
        writer.push(&one);
        writer.push(&one);
        match decode_mold(writer.bytes()).unwrap() {
            MoldPacket::Messages { session: s, seq, messages } => {
                assert_eq!((s, seq, messages.len()), (session, 41, 2));
                assert_eq!(messages[1], &one[..]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(decode_mold(&mold_control(session, 43, false)), Ok(MoldPacket::Heartbeat { session, next: 43 }));
        assert_eq!(decode_mold(&mold_control(session, 43, true)), Ok(MoldPacket::EndOfSession { session, next: 43 }));
        assert_eq!(decode_mold_request(&encode_mold_request(session, 5, 9)), Ok((session, 5, 9)));
        let request = encode_snapshot_request(Some(&Symbol::new("ETH/USD").unwrap()));
        assert_eq!(framed_len(&request), Some(request.len()));
        assert_eq!(decode_snapshot_request(&request[2..]).unwrap().unwrap().as_str(), "ETH/USD");
        assert_eq!(decode_snapshot_request(&encode_snapshot_request(None)[2..]), Ok(None));
    }
}
