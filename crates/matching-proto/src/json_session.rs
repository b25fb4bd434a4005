//! The network session in JSON: one object per line over TCP, one per
//! WebSocket text message. SPEC's commands and events, plus `login`,
//! `orders`, `ping` and an optional `cid` (see `docs/PROTOCOL.md`).
//!
//! The server reads [`parse_request`] and writes [`write_reply`]; a client
//! writes [`write_request`] and reads [`parse_reply`]. The server's side
//! is the fast one (no allocation but a login's key); the client's reader
//! goes through `serde_json::Value`.

use matching_core::{
    CancelReason, Event, EventKind, OrderType, RejectReason, Side, Symbol, Tif, TradingStatus, UserId, VALUE_MAX,
};
use serde_json::Value;

use crate::json::{
    Field, RawCommand, field_str, field_u64, head, parse_action, read_object, write_command, write_event_fields,
};
use crate::session::{
    Cid, ClientEvent, GatewayReason, Liquidity, Login, LoginError, OrderInfo, Refusal, Reply, Request,
};

fn gateway_reason(reason: RejectReason) -> GatewayReason {
    match reason {
        RejectReason::InvalidSymbol => GatewayReason::InvalidSymbol,
        RejectReason::InvalidTif => GatewayReason::InvalidTif,
        _ => GatewayReason::Malformed,
    }
}

/// Reads one request line (without its newline). `session_user` stands in
/// for a missing `user` on a command (a trader's commands are the
/// session's anyway; the server decides).
pub fn parse_request(line: &[u8], session_user: UserId) -> Result<Request, Refusal> {
    let malformed = Refusal::new(GatewayReason::Malformed);
    let mut raw = read_object(line).ok_or(malformed)?;
    let cid = match raw.cid {
        Field::Absent => None,
        _ => Some(raw.cid.str().and_then(Cid::from_bytes).ok_or(malformed)?),
    };
    let op = raw.op.str().unwrap_or_default();
    match op {
        b"login" => return parse_login(&raw).map(Request::Login).ok_or(malformed),
        b"ping" => return Ok(Request::Ping),
        b"orders" => return Ok(Request::Orders),
        b"logout" => return Ok(Request::Logout),
        b"new" | b"cancel" | b"modify" | b"mass_cancel" | b"halt" | b"resume" => {}
        _ => return Err(Refusal::new(GatewayReason::UnknownOp)),
    }
    if raw.user.is_absent() {
        raw.user = Field::Int(session_user as i128);
    }
    // A cancel or modify may name its order by cid instead of order_id.
    if let (Some(cid), b"cancel" | b"modify", Field::Absent) = (cid, op, raw.order_id) {
        let user = raw.user.int().filter(|u| (0..=VALUE_MAX as i128).contains(u)).map(|u| u as UserId);
        let Some(user) = user else { return Err(Refusal { cid: Some(cid), ..malformed }) };
        if op == b"cancel" {
            return Ok(Request::CancelCid { user, cid });
        }
        if raw.price.is_absent() && raw.qty.is_absent() {
            return Err(Refusal { cid: Some(cid), ..malformed });
        }
        return Ok(Request::ModifyCid { user, cid, price: raw.price.amount(), qty: raw.qty.amount() });
    }
    match parse_action(&raw, 0) {
        Ok(action) => Ok(Request::Command { action, cid: if op == b"new" { cid } else { None } }),
        Err(reject) => Err(Refusal {
            reason: gateway_reason(reject.reason),
            order_id: reject.order_id.and_then(|id| u64::try_from(id).ok()),
            cid,
        }),
    }
}

fn parse_login(raw: &RawCommand) -> Option<Login> {
    let user = raw.user.int().filter(|u| (0..=VALUE_MAX as i128).contains(u))? as UserId;
    let cancel_on_disconnect = match raw.cancel_on_disconnect {
        Field::Absent => false,
        Field::Bool(b) => b,
        _ => return None,
    };
    let resume_after = match raw.resume_after {
        Field::Absent => None,
        Field::Int(seq) if (0..=VALUE_MAX as i128).contains(&seq) => Some(seq as u64),
        _ => return None,
    };
    Some(Login { user, key: raw.key.clone().unwrap_or_default(), cancel_on_disconnect, resume_after })
}

fn field_cid(out: &mut Vec<u8>, cid: Option<Cid>) {
    if let Some(cid) = cid {
        field_str(out, "cid", cid.as_str());
    }
}

/// `{"ev":"name"` (no seq: a session message, not an engine event).
fn open(out: &mut Vec<u8>, ev: &str) {
    out.extend_from_slice(b"{\"ev\":\"");
    out.extend_from_slice(ev.as_bytes());
    out.push(b'"');
}

/// Appends one reply as a JSON object and a newline.
pub fn write_reply(out: &mut Vec<u8>, reply: &Reply) {
    match reply {
        Reply::LoginAccepted { user } => {
            open(out, "login");
            out.extend_from_slice(b",\"ok\":true");
            field_u64(out, "user", *user);
        }
        Reply::LoginRejected { reason } => {
            open(out, "login");
            out.extend_from_slice(b",\"ok\":false");
            field_str(out, "reason", reason.as_str());
        }
        Reply::Event { seq, event } => write_client_event(out, *seq, event),
        Reply::Rejected { reason, order_id, cid } => {
            open(out, "rejected");
            field_str(out, "reason", reason.as_str());
            if let Some(order_id) = order_id {
                field_u64(out, "order_id", *order_id);
            }
            field_cid(out, *cid);
        }
        Reply::Orders(orders) => {
            open(out, "orders");
            out.extend_from_slice(b",\"orders\":[");
            for (i, order) in orders.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"order_id\":");
                crate::json::put_u64(out, order.order_id);
                match order.cid {
                    Some(cid) => field_str(out, "cid", cid.as_str()),
                    None => out.extend_from_slice(b",\"cid\":null"),
                }
                field_str(out, "symbol", order.symbol.as_str());
                field_str(out, "side", order.side.as_str());
                field_u64(out, "price", order.price);
                field_u64(out, "qty", order.qty);
                out.push(b'}');
            }
            out.push(b']');
        }
        Reply::Pong => open(out, "pong"),
        Reply::ResumeTooOld { oldest } => {
            open(out, "resume_too_old");
            field_u64(out, "oldest", *oldest);
        }
        Reply::ResumeDone { last_seq } => {
            open(out, "resume_done");
            field_u64(out, "last_seq", *last_seq);
        }
        Reply::Goodbye { reason } => {
            open(out, "goodbye");
            out.extend_from_slice(b",\"reason\":");
            // Free text: escaped by the JSON writer.
            out.extend_from_slice(serde_json::to_string(reason).unwrap_or_default().as_bytes());
        }
    }
    out.extend_from_slice(b"}\n");
}

fn write_client_event(out: &mut Vec<u8>, seq: u64, event: &ClientEvent) {
    match *event {
        // SPEC's events, as `replay` writes them, and the cid.
        ClientEvent::Accepted { order_id, user, symbol, side, order_type, tif, qty, price, cid } => {
            let kind = EventKind::Accepted { order_id, user, symbol, side, order_type, tif, qty, price };
            write_event_fields(out, &Event { seq, kind });
            field_cid(out, cid);
        }
        ClientEvent::Rejected { reason, order_id, cid } => {
            write_event_fields(out, &Event { seq, kind: EventKind::Rejected { reason, order_id } });
            field_cid(out, cid);
        }
        ClientEvent::Fill { symbol, trade_id, price, qty, order_id, side, liquidity, remaining, cid } => {
            head(out, seq, "trade");
            field_str(out, "symbol", symbol.as_str());
            field_u64(out, "trade_id", trade_id);
            field_u64(out, "price", price);
            field_u64(out, "qty", qty);
            field_u64(out, "order_id", order_id);
            field_str(out, "side", side.as_str());
            field_str(out, "liquidity", liquidity.as_str());
            field_u64(out, "remaining", remaining);
            field_cid(out, cid);
        }
        ClientEvent::Cancelled { order_id, reason, remaining, cid } => {
            head(out, seq, "cancelled");
            field_u64(out, "order_id", order_id);
            field_str(out, "reason", reason.as_str());
            field_u64(out, "remaining", remaining);
            field_cid(out, cid);
        }
        ClientEvent::Modified { order_id, price, qty, cid } => {
            head(out, seq, "modified");
            field_u64(out, "order_id", order_id);
            field_u64(out, "price", price);
            field_u64(out, "qty", qty);
            field_cid(out, cid);
        }
        ClientEvent::MassCancelled { user, count } => {
            write_event_fields(out, &Event { seq, kind: EventKind::MassCancelled { user, count } });
        }
        ClientEvent::Status { symbol, status } => {
            write_event_fields(out, &Event { seq, kind: EventKind::Status { symbol, status } });
        }
    }
}

/// Appends one request as a JSON line (a client's side).
pub fn write_request(out: &mut Vec<u8>, request: &Request) {
    match request {
        Request::Login(login) => {
            out.extend_from_slice(b"{\"op\":\"login\"");
            field_u64(out, "user", login.user);
            out.extend_from_slice(b",\"key\":");
            out.extend_from_slice(serde_json::to_string(&login.key).unwrap_or_default().as_bytes());
            if login.cancel_on_disconnect {
                out.extend_from_slice(b",\"cancel_on_disconnect\":true");
            }
            if let Some(seq) = login.resume_after {
                field_u64(out, "resume_after", seq);
            }
            out.extend_from_slice(b"}\n");
        }
        Request::Command { action, cid } => {
            write_command(out, action);
            if let Some(cid) = cid {
                // Reopen the object the command writer closed.
                out.truncate(out.len() - 2);
                field_cid(out, Some(*cid));
                out.extend_from_slice(b"}\n");
            }
        }
        Request::CancelCid { user, cid } => {
            out.extend_from_slice(b"{\"op\":\"cancel\"");
            field_u64(out, "user", *user);
            field_cid(out, Some(*cid));
            out.extend_from_slice(b"}\n");
        }
        Request::ModifyCid { user, cid, price, qty } => {
            out.extend_from_slice(b"{\"op\":\"modify\"");
            field_u64(out, "user", *user);
            field_cid(out, Some(*cid));
            if let Some(price) = price {
                field_u64(out, "price", *price);
            }
            if let Some(qty) = qty {
                field_u64(out, "qty", *qty);
            }
            out.extend_from_slice(b"}\n");
        }
        Request::Orders => out.extend_from_slice(b"{\"op\":\"orders\"}\n"),
        Request::Ping => out.extend_from_slice(b"{\"op\":\"ping\"}\n"),
        Request::Logout => out.extend_from_slice(b"{\"op\":\"logout\"}\n"),
    }
}

/// The value of `all` whose name is `text`.
fn word<T: Copy>(text: &str, all: &[T], name: fn(T) -> &'static str) -> Option<T> {
    all.iter().copied().find(|&value| name(value) == text)
}

/// Reads one reply line (a client's side); `None` if it is not one.
pub fn parse_reply(line: &[u8]) -> Option<Reply> {
    let value: Value = serde_json::from_slice(line).ok()?;
    let object = value.as_object()?;
    let text = |key: &str| object.get(key).and_then(Value::as_str);
    let int = |key: &str| object.get(key).and_then(Value::as_u64);
    let symbol = |key: &str| text(key).and_then(Symbol::new);
    let cid = || text("cid").and_then(Cid::new);
    let side = |key: &str| word(text(key)?, &[Side::Buy, Side::Sell], Side::as_str);
    let ev = text("ev")?;
    let Some(seq) = int("seq") else {
        return Some(match ev {
            "login" if object.get("ok")?.as_bool()? => Reply::LoginAccepted { user: int("user")? },
            "login" => Reply::LoginRejected { reason: LoginError::parse(text("reason")?)? },
            "rejected" => Reply::Rejected {
                reason: GatewayReason::parse(text("reason")?)?,
                order_id: int("order_id"),
                cid: cid(),
            },
            "orders" => Reply::Orders(
                object
                    .get("orders")?
                    .as_array()?
                    .iter()
                    .map(|o| {
                        let o = o.as_object()?;
                        Some(OrderInfo {
                            order_id: o.get("order_id")?.as_u64()?,
                            cid: o.get("cid").and_then(Value::as_str).and_then(Cid::new),
                            symbol: Symbol::new(o.get("symbol")?.as_str()?)?,
                            side: word(o.get("side")?.as_str()?, &[Side::Buy, Side::Sell], Side::as_str)?,
                            price: o.get("price")?.as_u64()?,
                            qty: o.get("qty")?.as_u64()?,
                        })
                    })
                    .collect::<Option<Vec<_>>>()?,
            ),
            "pong" => Reply::Pong,
            "resume_too_old" => Reply::ResumeTooOld { oldest: int("oldest")? },
            "resume_done" => Reply::ResumeDone { last_seq: int("last_seq")? },
            "goodbye" => Reply::Goodbye { reason: text("reason")?.to_string() },
            _ => return None,
        });
    };
    let event = match ev {
        "accepted" => ClientEvent::Accepted {
            order_id: int("order_id")?,
            user: int("user")?,
            symbol: symbol("symbol")?,
            side: side("side")?,
            order_type: word(text("type")?, &[OrderType::Limit, OrderType::Market], OrderType::as_str)?,
            tif: word(text("tif")?, &[Tif::Gtc, Tif::Ioc, Tif::Fok], Tif::as_str)?,
            qty: int("qty")?,
            price: int("price"),
            cid: cid(),
        },
        "rejected" => ClientEvent::Rejected {
            reason: word(text("reason")?, &RejectReason::ALL, RejectReason::as_str)?,
            order_id: int("order_id"),
            cid: cid(),
        },
        "trade" => ClientEvent::Fill {
            symbol: symbol("symbol")?,
            trade_id: int("trade_id")?,
            price: int("price")?,
            qty: int("qty")?,
            order_id: int("order_id")?,
            side: side("side")?,
            liquidity: word(text("liquidity")?, &[Liquidity::Maker, Liquidity::Taker], Liquidity::as_str)?,
            remaining: int("remaining")?,
            cid: cid(),
        },
        "cancelled" => ClientEvent::Cancelled {
            order_id: int("order_id")?,
            reason: word(text("reason")?, &CancelReason::ALL, CancelReason::as_str)?,
            remaining: int("remaining")?,
            cid: cid(),
        },
        "modified" => {
            ClientEvent::Modified { order_id: int("order_id")?, price: int("price")?, qty: int("qty")?, cid: cid() }
        }
        "mass_cancelled" => ClientEvent::MassCancelled { user: int("user")?, count: int("count")? },
        "status" => ClientEvent::Status {
            symbol: symbol("symbol")?,
            status: word(text("status")?, &[TradingStatus::Open, TradingStatus::Halted], TradingStatus::as_str)?,
        },
        _ => return None,
    };
    Some(Reply::Event { seq, event })
}
