//! SPEC's JSON lines: one command object per line in, one event object per line out.
//!
//! Parsing goes field by field through a serde visitor into fixed-size
//! values, so a line is parsed without allocating (an escaped string may
//! allocate inside serde_json; nothing else does). The checks that need the
//! JSON text (is it an object, is `side` one of its words, is `price` an
//! integer) happen here in SPEC's order; the range and combination checks
//! that a typed command can still fail (a market order with `gtc`, a price
//! of 0) are left to the core, which applies them in the same order. A
//! price or quantity that is present but not an integer in range is passed
//! to the core as 0, which it rejects with the same reason SPEC gives.

use std::fmt;

use matching_core::*;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

/// A command line the parser rejects before it reaches the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseReject {
    pub reason: RejectReason,
    /// For a `cancel` or `modify` whose `order_id` is a JSON integer: that
    /// integer, echoed even when out of range (so `i128`: it may be negative).
    pub order_id: Option<i128>,
}

/// One JSON value, reduced to what validation needs. Strings longer than a
/// symbol can be are kept only as "long"; nested values only as "other".
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) enum Field {
    #[default]
    Absent,
    Str(ShortStr),
    LongStr,
    Int(i128),
    /// A number that is not an integer JSON can give exactly (fraction,
    /// exponent, or beyond 64 bits).
    Float,
    Bool(bool),
    Null,
    /// An array or an object.
    Other,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShortStr {
    len: u8,
    bytes: [u8; SYMBOL_LEN_MAX],
}

impl ShortStr {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl fmt::Debug for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl Field {
    pub(crate) fn str(&self) -> Option<&[u8]> {
        match self {
            Field::Str(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    pub(crate) fn int(&self) -> Option<i128> {
        match *self {
            Field::Int(i) => Some(i),
            _ => None,
        }
    }

    pub(crate) fn is_absent(&self) -> bool {
        *self == Field::Absent
    }

    /// A price or quantity: `Some(v)` when present, with out-of-range or
    /// non-integer values mapped to 0 (which the core rejects).
    pub(crate) fn amount(&self) -> Option<u64> {
        match *self {
            Field::Absent => None,
            Field::Int(i) if (1..=VALUE_MAX as i128).contains(&i) => Some(i as u64),
            _ => Some(0),
        }
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Field, E> {
        Ok(Field::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Field, E> {
        Ok(Field::Int(v as i128))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Field, E> {
        Ok(Field::Int(v as i128))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Field, E> {
        // The reader hands `-0` (an integer in JSON's grammar) over as the
        // float -0.0, to keep its sign: it is the integer 0. (So is `-0.0`,
        // which the reader cannot tell from it.)
        if v == 0.0 && v.is_sign_negative() {
            return Ok(Field::Int(0));
        }
        Ok(Field::Float)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
        if v.len() > SYMBOL_LEN_MAX {
            return Ok(Field::LongStr);
        }
        let mut bytes = [0u8; SYMBOL_LEN_MAX];
        bytes[..v.len()].copy_from_slice(v.as_bytes());
        Ok(Field::Str(ShortStr { len: v.len() as u8, bytes }))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Field, E> {
        Ok(Field::Null)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Field, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Field::Other)
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Field, D::Error> {
        deserializer.deserialize_any(FieldVisitor)
    }
}

/// The fields SPEC knows; any other key is ignored.
enum Key {
    Op,
    User,
    Symbol,
    Side,
    Type,
    Price,
    Qty,
    Tif,
    PostOnly,
    Stp,
    OrderId,
    // The network session's extras (`json_session`).
    Cid,
    Secret,
    CancelOnDisconnect,
    ResumeAfter,
    Unknown,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "op" => Key::Op,
                    "user" => Key::User,
                    "symbol" => Key::Symbol,
                    "side" => Key::Side,
                    "type" => Key::Type,
                    "price" => Key::Price,
                    "qty" => Key::Qty,
                    "tif" => Key::Tif,
                    "post_only" => Key::PostOnly,
                    "stp" => Key::Stp,
                    "order_id" => Key::OrderId,
                    "cid" => Key::Cid,
                    "key" => Key::Secret,
                    "cancel_on_disconnect" => Key::CancelOnDisconnect,
                    "resume_after" => Key::ResumeAfter,
                    _ => Key::Unknown,
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// A command object, field by field. A key given twice keeps its last value.
#[derive(Default)]
pub(crate) struct RawCommand {
    pub(crate) op: Field,
    pub(crate) user: Field,
    pub(crate) symbol: Field,
    pub(crate) side: Field,
    pub(crate) order_type: Field,
    pub(crate) price: Field,
    pub(crate) qty: Field,
    pub(crate) tif: Field,
    pub(crate) post_only: Field,
    pub(crate) stp: Field,
    pub(crate) order_id: Field,
    pub(crate) cid: Field,
    /// A login's API key: the one field kept as a string (only if short).
    pub(crate) key: Option<String>,
    pub(crate) cancel_on_disconnect: Field,
    pub(crate) resume_after: Field,
}

/// A string field of up to [`crate::session::KEY_LEN_MAX`] bytes (`None`
/// for anything else).
struct KeyText(Option<String>);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<KeyText, D::Error> {
        struct TextVisitor;
        impl<'v> Visitor<'v> for TextVisitor {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText((v.len() <= crate::session::KEY_LEN_MAX).then(|| v.to_string())))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText(None))
            }
            fn visit_seq<A: de::SeqAccess<'v>>(self, mut seq: A) -> Result<KeyText, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(KeyText(None))
            }
            fn visit_map<A: MapAccess<'v>>(self, mut map: A) -> Result<KeyText, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(KeyText(None))
            }
        }
        deserializer.deserialize_any(TextVisitor)
    }
}

impl<'de> Deserialize<'de> for RawCommand {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawCommand, D::Error> {
        struct CommandVisitor;
        impl<'de> Visitor<'de> for CommandVisitor {
            type Value = RawCommand;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawCommand, A::Error> {
                let mut raw = RawCommand::default();
                while let Some(key) = map.next_key::<Key>()? {
                    let slot = match key {
                        Key::Op => &mut raw.op,
                        Key::User => &mut raw.user,
                        Key::Symbol => &mut raw.symbol,
                        Key::Side => &mut raw.side,
                        Key::Type => &mut raw.order_type,
                        Key::Price => &mut raw.price,
                        Key::Qty => &mut raw.qty,
                        Key::Tif => &mut raw.tif,
                        Key::PostOnly => &mut raw.post_only,
                        Key::Stp => &mut raw.stp,
                        Key::OrderId => &mut raw.order_id,
                        Key::Cid => &mut raw.cid,
                        Key::CancelOnDisconnect => &mut raw.cancel_on_disconnect,
                        Key::ResumeAfter => &mut raw.resume_after,
                        Key::Secret => {
                            raw.key = map.next_value::<KeyText>()?.0;
                            continue;
                        }
                        Key::Unknown => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = map.next_value::<Field>()?;
                }
                Ok(raw)
            }
        }
        deserializer.deserialize_map(CommandVisitor)
    }
}

/// The rejection of a line longer than the reader's limit.
pub const TOO_LONG: ParseReject = ParseReject { reason: RejectReason::Malformed, order_id: None };

/// Parses one command line (without its newline).
///
/// A `new` order gets `new_order_id` as its id (in `replay`, its `seq`).
/// Returns the typed action, or the rejection for a line that fails a check
/// only the text can decide (SPEC's `malformed`, `invalid_symbol`, and a
/// `tif` that is not one of its words).
pub fn parse_command(line: &[u8], new_order_id: OrderId) -> Result<Action, ParseReject> {
    let malformed = ParseReject { reason: RejectReason::Malformed, order_id: None };
    let raw = read_object(line).ok_or(malformed)?;
    parse_action(&raw, new_order_id)
}

/// The fields of a JSON object line, or `None` if it is not one.
pub(crate) fn read_object(line: &[u8]) -> Option<RawCommand> {
    match serde_json::from_slice(line) {
        Ok(raw) => Some(raw),
        // The reader refuses a number a float cannot hold (`1e400`); it is
        // still a number that is not an integer, like `2.5`.
        Err(_) => serde_json::from_slice(&tame_huge_numbers(line)?).ok(),
    }
}

/// SPEC's command in `raw`, validated as far as the text decides.
pub(crate) fn parse_action(raw: &RawCommand, new_order_id: OrderId) -> Result<Action, ParseReject> {
    let malformed = ParseReject { reason: RejectReason::Malformed, order_id: None };
    match raw.op.str() {
        Some(b"new") => parse_new(raw, new_order_id),
        Some(b"cancel") => {
            let (user, order_id) = user_and_order_id(raw)?;
            Ok(Action::Cancel { user, order_id })
        }
        Some(b"modify") => {
            let (user, order_id) = user_and_order_id(raw)?;
            if raw.price.is_absent() && raw.qty.is_absent() {
                return Err(ParseReject { reason: RejectReason::Malformed, order_id: Some(order_id as i128) });
            }
            Ok(Action::Modify { user, order_id, price: raw.price.amount(), qty: raw.qty.amount() })
        }
        Some(b"mass_cancel") => {
            let user = user(raw).ok_or(malformed)?;
            let side = match (&raw.side, raw.side.str()) {
                (Field::Absent, _) => None,
                (_, Some(b"buy")) => Some(Side::Buy),
                (_, Some(b"sell")) => Some(Side::Sell),
                _ => return Err(malformed),
            };
            let symbol = match raw.symbol {
                Field::Absent => None,
                _ => Some(symbol(raw)?),
            };
            Ok(Action::MassCancel { user, symbol, side })
        }
        // `user` is not read: over the network only an operator may send these.
        Some(b"halt") => Ok(Action::Halt { symbol: symbol(raw)? }),
        Some(b"resume") => Ok(Action::Resume { symbol: symbol(raw)? }),
        _ => Err(malformed),
    }
}

/// The `symbol` field, or `invalid_symbol` when it is missing or does not
/// match SPEC's pattern.
/// `line` with every number too large for a float (`1e400`, `-1e999`, a
/// 400-digit integer) outside strings replaced by `0.5`, which reads as a
/// number that is not an integer; `None` if it has none. (The rare path of a
/// line the JSON reader refused: one pass, bounded by the line.)
fn tame_huge_numbers(line: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(line.len());
    let mut tamed = false;
    let mut in_string = false;
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if in_string {
            out.push(b);
            match b {
                b'\\' if i + 1 < line.len() => {
                    out.push(line[i + 1]);
                    i += 1;
                }
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            let end = line[i..]
                .iter()
                .position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                .map_or(line.len(), |n| i + n);
            let token = &line[i..end];
            let huge =
                std::str::from_utf8(token).ok().and_then(|t| t.parse::<f64>().ok()).is_some_and(f64::is_infinite);
            if huge {
                out.extend_from_slice(b"0.5");
                tamed = true;
            } else {
                out.extend_from_slice(token);
            }
            i = end;
            continue;
        }
        in_string = b == b'"';
        out.push(b);
        i += 1;
    }
    tamed.then_some(out)
}

fn symbol(raw: &RawCommand) -> Result<Symbol, ParseReject> {
    raw.symbol
        .str()
        .and_then(Symbol::from_bytes)
        .ok_or(ParseReject { reason: RejectReason::InvalidSymbol, order_id: None })
}

fn user(raw: &RawCommand) -> Option<UserId> {
    raw.user.int().filter(|u| (0..=VALUE_MAX as i128).contains(u)).map(|u| u as u64)
}

/// `user` and `order_id` of a cancel or modify; a rejection echoes the
/// `order_id` whenever it is an integer.
fn user_and_order_id(raw: &RawCommand) -> Result<(UserId, OrderId), ParseReject> {
    let echo = raw.order_id.int();
    let malformed = ParseReject { reason: RejectReason::Malformed, order_id: echo };
    let user = user(raw).ok_or(malformed)?;
    let order_id = echo.filter(|id| (1..=VALUE_MAX as i128).contains(id)).ok_or(malformed)?;
    Ok((user, order_id as u64))
}

fn parse_new(raw: &RawCommand, order_id: OrderId) -> Result<Action, ParseReject> {
    let reject = |reason| ParseReject { reason, order_id: None };
    let malformed = reject(RejectReason::Malformed);
    let user = user(raw).ok_or(malformed)?;
    let side = match raw.side.str() {
        Some(b"buy") => Side::Buy,
        Some(b"sell") => Side::Sell,
        _ => return Err(malformed),
    };
    let order_type = match (&raw.order_type, raw.order_type.str()) {
        (Field::Absent, _) => OrderType::Limit,
        (_, Some(b"limit")) => OrderType::Limit,
        (_, Some(b"market")) => OrderType::Market,
        _ => return Err(malformed),
    };
    let stp = match (&raw.stp, raw.stp.str()) {
        (Field::Absent, _) => Stp::None,
        (_, Some(b"none")) => Stp::None,
        (_, Some(b"cancel_taker")) => Stp::CancelTaker,
        (_, Some(b"cancel_maker")) => Stp::CancelMaker,
        (_, Some(b"cancel_both")) => Stp::CancelBoth,
        _ => return Err(malformed),
    };
    let post_only = match raw.post_only {
        Field::Absent => false,
        Field::Bool(b) => b,
        _ => return Err(malformed),
    };
    let symbol = symbol(raw)?;
    let tif = match (&raw.tif, raw.tif.str()) {
        (Field::Absent, _) if order_type == OrderType::Market => Tif::Ioc,
        (Field::Absent, _) => Tif::Gtc,
        (_, Some(b"gtc")) => Tif::Gtc,
        (_, Some(b"ioc")) => Tif::Ioc,
        (_, Some(b"fok")) => Tif::Fok,
        _ => return Err(reject(RejectReason::InvalidTif)),
    };
    Ok(Action::New(NewOrder {
        order_id,
        user,
        symbol,
        side,
        order_type,
        price: raw.price.amount(),
        qty: raw.qty.amount().unwrap_or(0),
        tif,
        post_only,
        stp,
    }))
}

// ----- output -----

pub(crate) fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// `,"name":` then the value.
pub(crate) fn field_u64(out: &mut Vec<u8>, name: &str, value: u64) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    put_u64(out, value);
}

/// `,"name":"value"`; the value must need no escaping (our names and symbols don't).
pub(crate) fn field_str(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":\"");
    out.extend_from_slice(value.as_bytes());
    out.push(b'"');
}

pub(crate) fn head(out: &mut Vec<u8>, seq: Seq, ev: &str) {
    out.extend_from_slice(b"{\"seq\":");
    put_u64(out, seq);
    out.extend_from_slice(b",\"ev\":\"");
    out.extend_from_slice(ev.as_bytes());
    out.push(b'"');
}

/// Appends one event as a JSON line (with its newline), fields in SPEC's order.
pub fn write_event(out: &mut Vec<u8>, event: &Event) {
    write_event_fields(out, event);
    out.extend_from_slice(b"}\n");
}

/// An event's object without its closing brace (the network session adds
/// its `cid` there).
pub(crate) fn write_event_fields(out: &mut Vec<u8>, event: &Event) {
    match event.kind {
        EventKind::Accepted { order_id, user, symbol, side, order_type, tif, qty, price } => {
            head(out, event.seq, "accepted");
            field_u64(out, "order_id", order_id);
            field_u64(out, "user", user);
            field_str(out, "symbol", symbol.as_str());
            field_str(out, "side", side.as_str());
            field_str(out, "type", order_type.as_str());
            field_str(out, "tif", tif.as_str());
            field_u64(out, "qty", qty);
            if let Some(price) = price {
                field_u64(out, "price", price);
            }
        }
        EventKind::Rejected { reason, order_id } => {
            head(out, event.seq, "rejected");
            field_str(out, "reason", reason.as_str());
            if let Some(order_id) = order_id {
                field_u64(out, "order_id", order_id);
            }
        }
        EventKind::Trade(ref t) => {
            head(out, event.seq, "trade");
            field_str(out, "symbol", t.symbol.as_str());
            field_u64(out, "trade_id", t.trade_id);
            field_u64(out, "price", t.price);
            field_u64(out, "qty", t.qty);
            field_u64(out, "maker_order_id", t.maker_order_id);
            field_u64(out, "maker_user", t.maker_user);
            field_u64(out, "taker_order_id", t.taker_order_id);
            field_u64(out, "taker_user", t.taker_user);
            field_str(out, "taker_side", t.taker_side.as_str());
            field_u64(out, "maker_remaining", t.maker_remaining);
            field_u64(out, "taker_remaining", t.taker_remaining);
        }
        EventKind::Cancelled { order_id, reason, remaining, .. } => {
            head(out, event.seq, "cancelled");
            field_u64(out, "order_id", order_id);
            field_str(out, "reason", reason.as_str());
            field_u64(out, "remaining", remaining);
        }
        EventKind::Modified { order_id, price, qty, .. } => {
            head(out, event.seq, "modified");
            field_u64(out, "order_id", order_id);
            field_u64(out, "price", price);
            field_u64(out, "qty", qty);
        }
        EventKind::MassCancelled { user, count } => {
            head(out, event.seq, "mass_cancelled");
            field_u64(out, "user", user);
            field_u64(out, "count", count);
        }
        EventKind::Status { symbol, status } => {
            head(out, event.seq, "status");
            field_str(out, "symbol", symbol.as_str());
            field_str(out, "status", status.as_str());
        }
    }
}

/// Appends one command as a SPEC JSON line (with its newline). A new order's
/// id is not written: in `replay` it is the line's `seq`. Defaults are
/// written out, so the line does not depend on them.
pub fn write_command(out: &mut Vec<u8>, action: &Action) {
    match *action {
        Action::New(ref o) => {
            out.extend_from_slice(b"{\"op\":\"new\"");
            field_u64(out, "user", o.user);
            field_str(out, "symbol", o.symbol.as_str());
            field_str(out, "side", o.side.as_str());
            field_str(out, "type", o.order_type.as_str());
            if let Some(price) = o.price {
                field_u64(out, "price", price);
            }
            field_u64(out, "qty", o.qty);
            field_str(out, "tif", o.tif.as_str());
            if o.post_only {
                out.extend_from_slice(b",\"post_only\":true");
            }
            if o.stp != Stp::None {
                field_str(out, "stp", o.stp.as_str());
            }
        }
        Action::Cancel { user, order_id } => {
            out.extend_from_slice(b"{\"op\":\"cancel\"");
            field_u64(out, "user", user);
            field_u64(out, "order_id", order_id);
        }
        Action::Modify { user, order_id, price, qty } => {
            out.extend_from_slice(b"{\"op\":\"modify\"");
            field_u64(out, "user", user);
            field_u64(out, "order_id", order_id);
            if let Some(price) = price {
                field_u64(out, "price", price);
            }
            if let Some(qty) = qty {
                field_u64(out, "qty", qty);
            }
        }
        Action::MassCancel { user, symbol, side } => {
            out.extend_from_slice(b"{\"op\":\"mass_cancel\"");
            field_u64(out, "user", user);
            if let Some(symbol) = symbol {
                field_str(out, "symbol", symbol.as_str());
            }
            if let Some(side) = side {
                field_str(out, "side", side.as_str());
            }
        }
        Action::Halt { symbol } => {
            out.extend_from_slice(b"{\"op\":\"halt\"");
            field_str(out, "symbol", symbol.as_str());
        }
        Action::Resume { symbol } => {
            out.extend_from_slice(b"{\"op\":\"resume\"");
            field_str(out, "symbol", symbol.as_str());
        }
    }
    out.extend_from_slice(b"}\n");
}

/// Appends the `rejected` event of a line the parser refused.
pub fn write_parse_reject(out: &mut Vec<u8>, seq: Seq, reject: &ParseReject) {
    head(out, seq, "rejected");
    field_str(out, "reason", reject.reason.as_str());
    if let Some(order_id) = reject.order_id {
        out.extend_from_slice(b",\"order_id\":");
        out.extend_from_slice(itoa::Buffer::new().format(order_id).as_bytes());
    }
    out.extend_from_slice(b"}\n");
}

/// Appends one symbol's book as SPEC's dump line:
/// `{"symbol":S,"bids":[{"order_id","user","price","qty"},...],"asks":[...]}`,
/// each side best price first, oldest first within a price.
pub fn write_book<L: PriceLevels>(out: &mut Vec<u8>, book: &BookView<'_, L>) {
    out.extend_from_slice(b"{\"symbol\":\"");
    out.extend_from_slice(book.symbol().as_bytes());
    out.push(b'"');
    for (name, side) in [("bids", Side::Buy), ("asks", Side::Sell)] {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":[");
        for (i, order) in book.orders(side).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"order_id\":");
            put_u64(out, order.order_id);
            field_u64(out, "user", order.user);
            field_u64(out, "price", order.price);
            field_u64(out, "qty", order.qty);
            out.push(b'}');
        }
        out.push(b']');
    }
    out.extend_from_slice(b"}\n");
}

/// Appends the book dump of every symbol that has resting orders, sorted by
/// symbol, over one exchange or the shards of one engine (each symbol lives
/// in one of them).
pub fn write_books<L: PriceLevels>(out: &mut Vec<u8>, exchanges: &[&Exchange<L>]) {
    let mut books: Vec<BookView<'_, L>> = exchanges
        .iter()
        .flat_map(|exchange| exchange.symbols().into_iter().filter_map(|s| exchange.book(&s)))
        .collect();
    books.sort_unstable_by_key(|book| book.symbol());
    for book in books {
        if book.best_bid().is_some() || book.best_ask().is_some() {
            write_book(out, &book);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Action, ParseReject> {
        parse_command(line.as_bytes(), 7)
    }

    fn reason(line: &str) -> RejectReason {
        match parse(line) {
            Err(r) => r.reason,
            Ok(action) => panic!("{line} parsed as {action:?}"),
        }
    }

    #[test]
    fn defaults_follow_spec() {
        let Ok(Action::New(order)) = parse(r#"{"op":"new","user":3,"symbol":"X","side":"buy","price":5,"qty":2}"#)
        else {
            panic!()
        };
        assert_eq!(order, NewOrder::limit(7, 3, Symbol::new("X").unwrap(), Side::Buy, 5, 2));
        let Ok(Action::New(order)) =
            parse(r#"{"op":"new","user":3,"symbol":"X","side":"sell","type":"market","qty":2}"#)
        else {
            panic!()
        };
        assert_eq!(order, NewOrder::market(7, 3, Symbol::new("X").unwrap(), Side::Sell, 2));
    }

    #[test]
    fn structural_problems_are_malformed() {
        for line in [
            "not json",
            "[1,2]",
            "{}",
            r#"{"op":"new","user":1,"symbol":"X","side":"buy","price":1,"qty":1} trailing"#,
            r#"{"op":"launch","user":1}"#,
            r#"{"op":"new","user":-1,"symbol":"X","side":"buy","price":1,"qty":1}"#,
            r#"{"op":"new","user":9007199254740992,"symbol":"X","side":"buy","price":1,"qty":1}"#,
            r#"{"op":"new","user":1,"symbol":"X","side":"buy","price":1,"qty":1,"post_only":"true"}"#,
            r#"{"op":"new","user":1,"symbol":"X","side":"buy","price":1,"qty":1,"type":null}"#,
        ] {
            assert_eq!(reason(line), RejectReason::Malformed, "{line}");
        }
    }

    #[test]
    fn minus_zero_is_the_integer_zero() {
        let Ok(Action::New(order)) = parse(r#"{"op":"new","user":-0,"symbol":"X","side":"buy","price":5,"qty":2}"#)
        else {
            panic!()
        };
        assert_eq!(order.user, 0);
        assert_eq!(
            reason(r#"{"op":"new","user":0.0,"symbol":"X","side":"buy","price":5,"qty":2}"#),
            RejectReason::Malformed
        );
    }

    #[test]
    fn cancel_echoes_integer_order_ids_only() {
        let echo = |line: &str| parse(line).unwrap_err().order_id;
        assert_eq!(echo(r#"{"op":"cancel","user":1,"order_id":-4}"#), Some(-4));
        assert_eq!(echo(r#"{"op":"cancel","order_id":12}"#), Some(12));
        assert_eq!(echo(r#"{"op":"cancel","user":1,"order_id":"12"}"#), None);
        assert_eq!(echo(r#"{"op":"cancel","user":1,"order_id":1.5}"#), None);
        assert_eq!(parse(r#"{"op":"cancel","user":1,"order_id":12}"#), Ok(Action::Cancel { user: 1, order_id: 12 }));
    }

    #[test]
    fn mass_cancel_halt_and_resume_follow_spec_validation() {
        let x = Symbol::new("X").unwrap();
        assert_eq!(reason(r#"{"op":"mass_cancel"}"#), RejectReason::Malformed);
        assert_eq!(reason(r#"{"op":"mass_cancel","user":1,"side":"both"}"#), RejectReason::Malformed);
        assert_eq!(reason(r#"{"op":"mass_cancel","user":1,"side":null}"#), RejectReason::Malformed);
        // malformed comes before invalid_symbol
        assert_eq!(reason(r#"{"op":"mass_cancel","user":-1,"symbol":"bad symbol"}"#), RejectReason::Malformed);
        assert_eq!(reason(r#"{"op":"mass_cancel","user":1,"symbol":"bad symbol"}"#), RejectReason::InvalidSymbol);
        assert_eq!(reason(r#"{"op":"mass_cancel","user":1,"symbol":null}"#), RejectReason::InvalidSymbol);
        assert_eq!(
            parse(r#"{"op":"mass_cancel","user":1,"side":"sell","symbol":"X"}"#),
            Ok(Action::MassCancel { user: 1, symbol: Some(x), side: Some(Side::Sell) })
        );
        assert_eq!(reason(r#"{"op":"halt"}"#), RejectReason::InvalidSymbol);
        assert_eq!(reason(r#"{"op":"resume","symbol":"bad!"}"#), RejectReason::InvalidSymbol);
        // user is not read: any value, or none, is fine
        assert_eq!(parse(r#"{"op":"halt","symbol":"X","user":"who"}"#), Ok(Action::Halt { symbol: x }));
        assert_eq!(parse(r#"{"op":"resume","symbol":"X"}"#), Ok(Action::Resume { symbol: x }));
    }

    /// Numbers too large for a float are numbers that are not integers, like
    /// `2.5`: not a reason to refuse the line as `malformed`.
    #[test]
    fn numbers_beyond_a_float_are_not_integers() {
        let new = |field: &str| format!(r#"{{"op":"new","user":1,"symbol":"X","side":"buy",{field}}}"#);
        let Ok(Action::New(order)) = parse(&new(r#""price":1e400,"qty":2"#)) else { panic!() };
        assert_eq!((order.price, order.qty), (Some(0), 2), "invalid_price in the core");
        let Ok(Action::New(order)) = parse(&new(r#""price":5,"qty":-1E+999"#)) else { panic!() };
        assert_eq!(order.qty, 0, "invalid_qty in the core");
        let digits = "9".repeat(400);
        let Ok(Action::New(order)) = parse(&new(&format!(r#""price":{digits},"qty":2"#))) else { panic!() };
        assert_eq!(order.price, Some(0));
        // A modify keeps its order id echo.
        assert_eq!(
            parse(r#"{"op":"modify","user":1,"order_id":3,"qty":1e400}"#),
            Ok(Action::Modify { user: 1, order_id: 3, price: None, qty: Some(0) })
        );
        // A user that is not an integer is malformed, whatever its size.
        assert_eq!(reason(&new(r#""user":1e400,"price":5,"qty":2"#)), RejectReason::Malformed);
        // Inside a string it is text; a line broken elsewhere stays malformed.
        assert_eq!(
            reason(r#"{"op":"new","user":1,"symbol":"1e400","side":"buy","price":1e400,"qty":2"#),
            RejectReason::Malformed
        );
        let Ok(Action::New(order)) = parse(&new(r#""price":1e400,"qty":2,"note":"a \"1e400\" b""#)) else { panic!() };
        assert_eq!(order.price, Some(0));
    }

    #[test]
    fn bad_amounts_reach_the_core_as_zero() {
        let Ok(Action::New(order)) = parse(r#"{"op":"new","user":1,"symbol":"X","side":"buy","price":2.5,"qty":"3"}"#)
        else {
            panic!()
        };
        assert_eq!((order.price, order.qty), (Some(0), 0));
        assert_eq!(
            parse(r#"{"op":"modify","user":1,"order_id":3,"price":null}"#),
            Ok(Action::Modify { user: 1, order_id: 3, price: Some(0), qty: None })
        );
    }

    #[test]
    fn escaped_keys_and_values_are_read() {
        let Ok(Action::New(order)) =
            parse(r#"{"\u006fp":"new","user":1,"symbol":"B\u0054C","side":"buy","price":1,"qty":1}"#)
        else {
            panic!()
        };
        assert_eq!(order.symbol.as_str(), "BTC");
    }

    #[test]
    fn written_commands_parse_back_to_themselves() {
        let x = Symbol::new("X.Y").unwrap();
        let actions = [
            Action::New(NewOrder::limit(7, 1, x, Side::Buy, 10, 5)),
            Action::New(NewOrder::limit(7, 0, x, Side::Sell, 10, 5).with_post_only(true).with_stp(Stp::CancelBoth)),
            Action::New(NewOrder::market(7, 3, x, Side::Sell, 2).with_tif(Tif::Fok)),
            Action::Cancel { user: 4, order_id: 99 },
            Action::Modify { user: 4, order_id: 99, price: None, qty: Some(3) },
            Action::Modify { user: 4, order_id: 99, price: Some(11), qty: Some(VALUE_MAX) },
            Action::MassCancel { user: 4, symbol: None, side: None },
            Action::MassCancel { user: 0, symbol: Some(x), side: Some(Side::Sell) },
            Action::MassCancel { user: VALUE_MAX, symbol: None, side: Some(Side::Buy) },
            Action::Halt { symbol: x },
            Action::Resume { symbol: x },
        ];
        for action in actions {
            let mut line = Vec::new();
            write_command(&mut line, &action);
            assert_eq!(line.pop(), Some(b'\n'));
            assert_eq!(parse_command(&line, 7), Ok(action), "{}", String::from_utf8_lossy(&line));
        }
    }

    #[test]
    fn events_are_written_in_spec_field_order() {
        let mut out = Vec::new();
        let symbol = Symbol::new("BTC-USD").unwrap();
        write_event(
            &mut out,
            &Event {
                seq: 2,
                kind: EventKind::Trade(Trade {
                    symbol,
                    trade_id: 1,
                    price: 100,
                    qty: 3,
                    maker_order_id: 1,
                    maker_user: 2,
                    taker_order_id: 2,
                    taker_user: 4,
                    taker_side: Side::Buy,
                    maker_remaining: 0,
                    taker_remaining: 2,
                }),
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"seq\":2,\"ev\":\"trade\",\"symbol\":\"BTC-USD\",\"trade_id\":1,\"price\":100,\"qty\":3,\"maker_order_id\":1,\"maker_user\":2,\"taker_order_id\":2,\"taker_user\":4,\"taker_side\":\"buy\",\"maker_remaining\":0,\"taker_remaining\":2}\n"
        );
    }
}
