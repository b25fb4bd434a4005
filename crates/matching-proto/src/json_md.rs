//! Public market data in JSON (over the WebSocket at `/ws`; no login):
//! aggregated book levels, trade prints and top of book, each a snapshot
//! then sequenced updates. `docs/PROTOCOL.md` ("Market data over
//! WebSocket") is the reference.
//!
//! - A client sends [`MdRequest`]s (`{"op":"subscribe","channel":"book",
//!   "symbol":"BTC-USD","depth":10}`, `unsubscribe`), read by
//!   [`parse_md_request`].
//! - The server writes [`MdMessage`]s with [`write_md`]; a client reads them
//!   with [`parse_md`].
//! - Every book message carries [`book_checksum`] of the top 10 levels of
//!   each side, as the client's book should be after applying it.

use std::fmt::Write as _;

use matching_core::{Side, Symbol};
use serde_json::Value;

/// One aggregated price level: price, total quantity resting at it.
pub type Level = (u64, u128);

/// Levels on each side the checksum covers.
pub const CHECKSUM_LEVELS: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// Aggregated levels: a snapshot, then every change of a level.
    Book,
    /// Public prints of trades.
    Trades,
    /// The best bid and ask.
    Bbo,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Book, Channel::Trades, Channel::Bbo];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Book => "book",
            Channel::Trades => "trades",
            Channel::Bbo => "bbo",
        }
    }

    pub fn parse(text: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// Depths a book subscription may ask for (none: the whole book).
pub const DEPTH_MIN: usize = CHECKSUM_LEVELS;
pub const DEPTH_MAX: usize = 1000;

/// What a client asks of the public channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MdRequest {
    /// `depth` (book only): the best `depth` levels of each side; `None`: all.
    Subscribe {
        channel: Channel,
        symbol: Symbol,
        depth: Option<usize>,
    },
    Unsubscribe {
        channel: Channel,
        symbol: Symbol,
    },
}

impl MdRequest {
    pub fn symbol(&self) -> &Symbol {
        match self {
            MdRequest::Subscribe { symbol, .. } | MdRequest::Unsubscribe { symbol, .. } => symbol,
        }
    }
}

/// Why a market-data request is refused (the text of `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MdError {
    Malformed,
    UnknownChannel,
    InvalidSymbol,
    /// `depth` not in `DEPTH_MIN..=DEPTH_MAX`.
    InvalidDepth,
    /// Already subscribed to this channel and symbol.
    AlreadySubscribed,
    NotSubscribed,
    /// The connection has as many subscriptions as it may.
    TooManySubscriptions,
    /// The server runs without market data.
    Unavailable,
}

impl MdError {
    pub const ALL: [MdError; 8] = [
        MdError::Malformed,
        MdError::UnknownChannel,
        MdError::InvalidSymbol,
        MdError::InvalidDepth,
        MdError::AlreadySubscribed,
        MdError::NotSubscribed,
        MdError::TooManySubscriptions,
        MdError::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MdError::Malformed => "malformed",
            MdError::UnknownChannel => "unknown_channel",
            MdError::InvalidSymbol => "invalid_symbol",
            MdError::InvalidDepth => "invalid_depth",
            MdError::AlreadySubscribed => "already_subscribed",
            MdError::NotSubscribed => "not_subscribed",
            MdError::TooManySubscriptions => "too_many_subscriptions",
            MdError::Unavailable => "unavailable",
        }
    }

    pub fn parse(text: &str) -> Option<MdError> {
        MdError::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

/// Reads a text message as a market-data request: `None` if its `op` is
/// not `subscribe` or `unsubscribe` (it is then an order-entry request).
pub fn parse_md_request(text: &[u8]) -> Option<Result<MdRequest, MdError>> {
    let value: Value = serde_json::from_slice(text).ok()?;
    let object = value.as_object()?;
    let op = object.get("op")?.as_str()?;
    if op != "subscribe" && op != "unsubscribe" {
        return None;
    }
    Some((|| {
        let channel = object.get("channel").and_then(Value::as_str).ok_or(MdError::Malformed)?;
        let channel = Channel::parse(channel).ok_or(MdError::UnknownChannel)?;
        let symbol =
            object.get("symbol").and_then(Value::as_str).and_then(Symbol::new).ok_or(MdError::InvalidSymbol)?;
        if op == "unsubscribe" {
            return Ok(MdRequest::Unsubscribe { channel, symbol });
        }
        let depth = match object.get("depth") {
            None | Some(Value::Null) => None,
            Some(depth) => {
                let depth = depth.as_u64().ok_or(MdError::InvalidDepth)? as usize;
                if channel != Channel::Book || !(DEPTH_MIN..=DEPTH_MAX).contains(&depth) {
                    return Err(MdError::InvalidDepth);
                }
                Some(depth)
            }
        };
        Ok(MdRequest::Subscribe { channel, symbol, depth })
    })())
}

/// Writes a request (a client's side), without a newline.
pub fn write_md_request(out: &mut Vec<u8>, request: &MdRequest) {
    let (op, channel, symbol, depth) = match *request {
        MdRequest::Subscribe { channel, symbol, depth } => ("subscribe", channel, symbol, depth),
        MdRequest::Unsubscribe { channel, symbol } => ("unsubscribe", channel, symbol, None),
    };
    let mut text = format!(r#"{{"op":"{op}","channel":"{}","symbol":"{}""#, channel.as_str(), symbol.as_str());
    if let Some(depth) = depth {
        let _ = write!(text, r#","depth":{depth}"#);
    }
    text.push('}');
    out.extend_from_slice(text.as_bytes());
}

/// What the server sends on the public channels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MdMessage {
    Subscribed {
        channel: Channel,
        symbol: Symbol,
        depth: Option<usize>,
    },
    Unsubscribed {
        channel: Channel,
        symbol: Symbol,
    },
    /// A request refused; it changed nothing.
    MdRejected {
        reason: MdError,
    },
    /// `book`: the best levels of each side (best first) after the
    /// symbol's change `md_seq`. Also sent, unasked, to a subscriber whose
    /// queue overflowed (conflation): it replaces the client's book.
    Book {
        symbol: Symbol,
        md_seq: u64,
        bids: Vec<Level>,
        asks: Vec<Level>,
        checksum: u32,
    },
    /// `level`: the new total at `price` (0: the level is gone).
    Level {
        symbol: Symbol,
        md_seq: u64,
        side: Side,
        price: u64,
        qty: u128,
        checksum: u32,
    },
    /// `print`: a trade.
    Print {
        symbol: Symbol,
        md_seq: u64,
        trade_id: u64,
        price: u64,
        qty: u64,
        taker_side: Side,
    },
    /// `bbo`: the best bid and ask (`None`: that side is empty).
    Bbo {
        symbol: Symbol,
        md_seq: u64,
        bid: Option<Level>,
        ask: Option<Level>,
    },
}

fn levels_json(text: &mut String, levels: &[Level]) {
    text.push('[');
    for (i, (price, qty)) in levels.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        let _ = write!(text, "[{price},{qty}]");
    }
    text.push(']');
}

fn level_or_null(text: &mut String, level: Option<Level>) {
    match level {
        Some((price, qty)) => {
            let _ = write!(text, "[{price},{qty}]");
        }
        None => text.push_str("null"),
    }
}

/// Appends `message` as one JSON object (no newline).
pub fn write_md(out: &mut Vec<u8>, message: &MdMessage) {
    let mut text = String::with_capacity(128);
    match message {
        MdMessage::Subscribed { channel, symbol, depth } => {
            let _ =
                write!(text, r#"{{"ev":"subscribed","channel":"{}","symbol":"{}""#, channel.as_str(), symbol.as_str());
            if let Some(depth) = depth {
                let _ = write!(text, r#","depth":{depth}"#);
            }
        }
        MdMessage::Unsubscribed { channel, symbol } => {
            let _ = write!(
                text,
                r#"{{"ev":"unsubscribed","channel":"{}","symbol":"{}""#,
                channel.as_str(),
                symbol.as_str()
            );
        }
        MdMessage::MdRejected { reason } => {
            let _ = write!(text, r#"{{"ev":"md_rejected","reason":"{}""#, reason.as_str());
        }
        MdMessage::Book { symbol, md_seq, bids, asks, checksum } => {
            let _ = write!(text, r#"{{"ev":"book","symbol":"{}","md_seq":{md_seq},"bids":"#, symbol.as_str());
            levels_json(&mut text, bids);
            text.push_str(r#","asks":"#);
            levels_json(&mut text, asks);
            let _ = write!(text, r#","checksum":{checksum}"#);
        }
        MdMessage::Level { symbol, md_seq, side, price, qty, checksum } => {
            let _ = write!(
                text,
                r#"{{"ev":"level","symbol":"{}","md_seq":{md_seq},"side":"{}","price":{price},"qty":{qty},"checksum":{checksum}"#,
                symbol.as_str(),
                side.as_str()
            );
        }
        MdMessage::Print { symbol, md_seq, trade_id, price, qty, taker_side } => {
            let _ = write!(
                text,
                r#"{{"ev":"print","symbol":"{}","md_seq":{md_seq},"trade_id":{trade_id},"price":{price},"qty":{qty},"taker_side":"{}""#,
                symbol.as_str(),
                taker_side.as_str()
            );
        }
        MdMessage::Bbo { symbol, md_seq, bid, ask } => {
            let _ = write!(text, r#"{{"ev":"bbo","symbol":"{}","md_seq":{md_seq},"bid":"#, symbol.as_str());
            level_or_null(&mut text, *bid);
            text.push_str(r#","ask":"#);
            level_or_null(&mut text, *ask);
        }
    }
    text.push('}');
    out.extend_from_slice(text.as_bytes());
}

fn parse_level(value: &Value) -> Option<Level> {
    let pair = value.as_array()?;
    if pair.len() != 2 {
        return None;
    }
    Some((pair[0].as_u64()?, parse_u128(&pair[1])?))
}

/// A level's total (the reader here takes up to `u64::MAX`; a level above
/// it, thousands of maximal orders at one price, reads as `None`).
fn parse_u128(value: &Value) -> Option<u128> {
    value.as_u64().map(u128::from)
}

/// Reads a server message (a client's side); `None` if it is not a
/// market-data message.
pub fn parse_md(text: &[u8]) -> Option<MdMessage> {
    let value: Value = serde_json::from_slice(text).ok()?;
    let object = value.as_object()?;
    let text = |key: &str| object.get(key).and_then(Value::as_str);
    let int = |key: &str| object.get(key).and_then(Value::as_u64);
    let symbol = || Symbol::new(text("symbol")?);
    let channel = || Channel::parse(text("channel")?);
    let side = |key: &str| match text(key)? {
        "buy" => Some(Side::Buy),
        "sell" => Some(Side::Sell),
        _ => None,
    };
    let levels = |key: &str| object.get(key)?.as_array()?.iter().map(parse_level).collect::<Option<Vec<_>>>();
    let checksum = || u32::try_from(int("checksum")?).ok();
    let optional_level = |key: &str| match object.get(key)? {
        Value::Null => Some(None),
        level => parse_level(level).map(Some),
    };
    Some(match text("ev")? {
        "subscribed" => {
            MdMessage::Subscribed { channel: channel()?, symbol: symbol()?, depth: int("depth").map(|d| d as usize) }
        }
        "unsubscribed" => MdMessage::Unsubscribed { channel: channel()?, symbol: symbol()? },
        "md_rejected" => MdMessage::MdRejected { reason: MdError::parse(text("reason")?)? },
        "book" => MdMessage::Book {
            symbol: symbol()?,
            md_seq: int("md_seq")?,
            bids: levels("bids")?,
            asks: levels("asks")?,
            checksum: checksum()?,
        },
        "level" => MdMessage::Level {
            symbol: symbol()?,
            md_seq: int("md_seq")?,
            side: side("side")?,
            price: int("price")?,
            qty: parse_u128(object.get("qty")?)?,
            checksum: checksum()?,
        },
        "print" => MdMessage::Print {
            symbol: symbol()?,
            md_seq: int("md_seq")?,
            trade_id: int("trade_id")?,
            price: int("price")?,
            qty: int("qty")?,
            taker_side: side("taker_side")?,
        },
        "bbo" => MdMessage::Bbo {
            symbol: symbol()?,
            md_seq: int("md_seq")?,
            bid: optional_level("bid")?,
            ask: optional_level("ask")?,
        },
        _ => return None,
    })
}

/// The checksum of a book: CRC-32 (IEEE 802.3, as zlib's `crc32`) of the
/// ASCII text that lists, for `i` from 0 to 9, the `i`-th best bid then the
/// `i`-th best ask as `price:qty` (decimal, no leading zeros), skipping a
/// side that has fewer levels, all joined by `:`. Bids `[[101,5],[100,7]]`
/// and asks `[[103,2]]` give `101:5:103:2:100:7`; an empty book gives the
/// CRC of the empty text, 0.
pub fn book_checksum<'a>(bids: impl IntoIterator<Item = &'a Level>, asks: impl IntoIterator<Item = &'a Level>) -> u32 {
    let mut bids = bids.into_iter().take(CHECKSUM_LEVELS);
    let mut asks = asks.into_iter().take(CHECKSUM_LEVELS);
    let mut text = String::with_capacity(CHECKSUM_LEVELS * 2 * 24);
    let put = |text: &mut String, (price, qty): &Level| {
        if !text.is_empty() {
            text.push(':');
        }
        let _ = write!(text, "{price}:{qty}");
    };
    loop {
        let bid = bids.next();
        let ask = asks.next();
        if bid.is_none() && ask.is_none() {
            break;
        }
        if let Some(bid) = bid {
            put(&mut text, bid);
        }
        if let Some(ask) = ask {
            put(&mut text, ask);
        }
    }
    crc32fast::hash(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_text_is_the_documented_one() {
        let bids = [(101, 5), (100, 7)];
        let asks = [(103, 2)];
        assert_eq!(book_checksum(&bids, &asks), crc32fast::hash(b"101:5:103:2:100:7"));
        assert_eq!(book_checksum(&[], &[]), 0);
        // Only the best ten of a side count.
        let deep: Vec<Level> = (0..20).map(|i| (100 - i, 1)).collect();
        assert_eq!(book_checksum(&deep, &[]), book_checksum(&deep[..10], &[]));
    }

    #[test]
    fn messages_and_requests_round_trip() {
        let symbol = Symbol::new("BTC-USD").unwrap();
        let messages = [
            MdMessage::Subscribed { channel: Channel::Book, symbol, depth: Some(10) },
            MdMessage::Subscribed { channel: Channel::Trades, symbol, depth: None },
            MdMessage::Unsubscribed { channel: Channel::Bbo, symbol },
            MdMessage::MdRejected { reason: MdError::InvalidDepth },
            MdMessage::Book { symbol, md_seq: 3, bids: vec![(10, u128::from(u64::MAX))], asks: vec![], checksum: 7 },
            MdMessage::Level { symbol, md_seq: 4, side: Side::Sell, price: 11, qty: 0, checksum: 1 },
            MdMessage::Print { symbol, md_seq: 5, trade_id: 1, price: 11, qty: 2, taker_side: Side::Buy },
            MdMessage::Bbo { symbol, md_seq: 6, bid: None, ask: Some((11, 3)) },
        ];
        for message in messages {
            let mut out = Vec::new();
            write_md(&mut out, &message);
            assert_eq!(parse_md(&out), Some(message.clone()), "{}", String::from_utf8_lossy(&out));
        }
        for request in [
            MdRequest::Subscribe { channel: Channel::Book, symbol, depth: Some(25) },
            MdRequest::Subscribe { channel: Channel::Bbo, symbol, depth: None },
            MdRequest::Unsubscribe { channel: Channel::Trades, symbol },
        ] {
            let mut out = Vec::new();
            write_md_request(&mut out, &request);
            assert_eq!(parse_md_request(&out), Some(Ok(request)));
        }
        assert_eq!(parse_md_request(br#"{"op":"new"}"#), None);
        assert_eq!(
            parse_md_request(br#"{"op":"subscribe","channel":"book","symbol":"X","depth":5}"#),
            Some(Err(MdError::InvalidDepth))
        );
        assert_eq!(
            parse_md_request(br#"{"op":"subscribe","channel":"nope","symbol":"X"}"#),
            Some(Err(MdError::UnknownChannel))
        );
    }
}
