//! FIX 4.4 as a [`Client`](crate::Client) wire ([`Encoding::Fix`](crate::Encoding::Fix)):
//! a minimal initiator onto `serve --fix-addr` (`docs/FIX.md`), for load
//! generation and scripts. The same [`Request`]s go in and the same
//! [`Reply`]s come out as over the binary and JSON wires, translated here.
//!
//! It is not a FIX engine: it keeps no message store and checks none of
//! the server's sequence numbers. Every Logon resets both sides' sequence
//! numbers (141=Y), so each connection starts at MsgSeqNum 1; a
//! ResendRequest from the server is answered with one SequenceReset-GapFill
//! over everything asked (nothing is resent).
//!
//! # Session
//!
//! - [`Request::Login`] → Logon (35=A) from `U<user>` (49) to `ME` (56),
//!   98=0, 108=60 ([`HEARTBEAT_INTERVAL`]), 141=Y. The login's key,
//!   `cancel_on_disconnect` and `resume_after` are not sent: the FIX gateway
//!   authenticates by CompIDs (the open development mode maps `U<user>` to
//!   the user). The Logon's answer is [`Reply::LoginAccepted`]; a Logout
//!   instead, or the server closing without an answer (what it does with
//!   CompIDs it does not know), is [`Reply::LoginRejected`] with
//!   [`LoginError::BadCredentials`].
//! - [`Request::Ping`] → TestRequest (35=1); the Heartbeat carrying its
//!   TestReqID (112) → [`Reply::Pong`]. [`Request::Logout`] → Logout (35=5).
//! - The server's TestRequests are answered with a Heartbeat by the read
//!   half (it shares the write half behind a lock, and sends from a task of
//!   its own); other Heartbeats are skipped. A Heartbeat goes out after half
//!   of [`HEARTBEAT_INTERVAL`] of silence when the caller waits in
//!   [`Client::next`](crate::Client::next); a split client that stays
//!   silent longer is kept alive by answering the server's TestRequests.
//! - A Logout from the server → [`Reply::Goodbye`] with its Text (58); the
//!   end of the stream after it → `None`.
//!
//! # Requests
//!
//! | request | FIX |
//! |---|---|
//! | `Command { New(order), cid: Some(cid) }` | NewOrderSingle D: 11=cid, 55, 54 (1 buy, 2 sell), 38, 40 (1 market, 2 limit), 44 (limit), 59 (1 GTC, 3 IOC, 4 FOK), 18=6 if post-only, 20001 (STP 1..3, if any) |
//! | `CancelCid { cid }` | OrderCancelRequest F: 11 a fresh id, 41=cid (55, 54 if known) |
//! | `ModifyCid { cid, price, qty }` | OrderCancelReplaceRequest G: 11 a fresh id, 41=cid, 38 = qty + CumQty, 44 = price if given, 40=2 (55, 54 if known) |
//! | `Command { MassCancel { symbol, side } }` | OrderMassCancelRequest q: 11 a fresh id, 530=1 with 55, or 530=7; 54 if a side |
//!
//! Anything else (a new order without a cid, a cancel or modify by order
//! id, `Orders`, halt, resume) is an [`io::ErrorKind::Unsupported`] error,
//! and nothing of its batch is written. A batch is one write.
//!
//! The fresh ClOrdIDs of cancels, replaces and mass cancels (`#1`, `#2`, …)
//! use a character no cid may contain, so they never clash with the
//! caller's. A cancel or replace always names the order by the cid it was
//! placed with (41), which the gateway keeps for the order's whole life.
//!
//! **One change per order in flight.** A cancel or replace of an order
//! that already has one unanswered is held back and sent when that one is
//! answered (as many FIX venues require). So a held change can go out
//! after requests the caller sent later; its latency counts the wait.
//!
//! **A change answered by nothing.** Should a gateway put a pending
//! change's ClOrdIDs (11, 41) on the Canceled/Expired report of an order
//! that left the book otherwise (self-trade prevention, a mass cancel, an
//! IOC expiry), and so never answer the change (an early build of this
//! server's gateway did; it now answers with an OrderCancelReject), this
//! client answers the change itself right after that report: `Rejected`
//! `unknown_order` with the order id and cid; and it skips
//! BusinessMessageRejects `unknown_cid` without 379, which only such a
//! change got. Without it a load run would wait forever.
//!
//! A replace's OrderQty (38) counts what was filled (FIX); the engine's
//! `modify` takes the new open quantity. So 38 = the requested open
//! quantity + the order's CumQty as the last report of it said, and the
//! gateway subtracts its own CumQty again. A fill the server made and this
//! client has not read yet makes the two differ: the engine then gets
//! less than was asked, by that fill. A modify without a quantity sends
//! the order's OrderQty as last reported (or as placed), i.e. "keep the
//! open quantity"; for an order this client does not know (placed
//! elsewhere, or already gone) it sends 0.
//!
//! # Replies
//!
//! FIX reports carry no engine `seq`: every [`Reply::Event`] from this wire
//! has `seq` 0. Every event about an order carries the cid the *caller*
//! placed it with (OrigClOrdID (41) when the report has one, else the cid
//! the order's acceptance named, else ClOrdID (11)), never a fresh id of
//! this module, so answers match requests by cid as over the other wires.
//!
//! | FIX | reply |
//! |---|---|
//! | ExecutionReport 150=0 New | `Accepted` (37, 1, 55, 54, 40, 59, 38, 44, cid 11) |
//! | 150=F Trade | `Fill` (37, 54, 55, qty 32, price 31, remaining 151, trade id 880) |
//! | 150=4 Canceled | `Cancelled`, reason `user` (58 naming self-trade prevention: `stp`; a mass cancel: `mass`) |
//! | 150=C Expired | `Cancelled`, reason `ioc` (58 starting `fok`: `fok`) |
//! | 150=5 Replaced | `Modified` (37, price 44, qty 151) |
//! | 150=8 Rejected | `Rejected` with the reason 58 names; 58 a gateway word (`duplicate_cid`, …): [`Reply::Rejected`] |
//! | OrderCancelReject 9 | `Rejected` (order id 37 if a number), the reason 58 names, else `unknown_order` if 102=1, else `malformed`; 58 a gateway word (`unknown_cid`, …): [`Reply::Rejected`] |
//! | OrderMassCancelReport r | `MassCancelled` (count 533); refused (no 533): `Rejected` |
//! | BusinessMessageReject j | [`Reply::Rejected`] (58 as a gateway word, else `malformed`; cid 379) |
//! | Reject 3 | [`Reply::Rejected`] `malformed` |
//!
//! A cancel report's `remaining` is what was open when the order left the
//! book: OrderQty (38) − CumQty (14) (its LeavesQty, 151, is 0 by then).
//! Reports of other ExecTypes (Order Status, I) are skipped.
//!
//! `liquidity` of a fill is inferred, as the gateway sends no
//! LastLiquidityInd (851): a market, IOC or FOK order, or a fill at a price
//! (31) other than the order's limit (44), took liquidity; any other fill
//! is reported as `maker` (a GTC limit order that takes at exactly its
//! limit price is reported wrongly).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use matching_core::{Action, CancelReason, NewOrder, OrderId, OrderType, Price, Qty, RejectReason, Side, Stp, Symbol};
use matching_core::{Tif, UserId};
use matching_fix::{Body, Header, Message, encode, frame_len, parse};
use matching_proto::session::{Cid, ClientEvent, GatewayReason, Liquidity, LoginError, Reply, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The server's CompID: our TargetCompID (56).
pub const SERVER_COMP_ID: &str = "ME";

/// HeartBtInt (108) of the Logon.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);

/// The gateway's user-defined tag for self-trade prevention on a
/// NewOrderSingle (1 cancel the incoming order, 2 the resting one, 3 both).
pub const TAG_STP_MODE: u32 = 20001;

/// The longest frame read.
const FRAME_MAX: usize = 64 * 1024;

/// What this client knows of one of its orders, by the cid it was placed with.
struct Known {
    symbol: Symbol,
    side: Side,
    /// OrderQty as FIX counts it: filled plus open.
    total: Qty,
    /// CumQty: filled so far.
    cum: Qty,
    /// The engine took it (an ExecutionReport New came).
    accepted: bool,
}

/// What both halves share besides the socket.
#[derive(Default)]
struct State {
    /// The user of the Logon sent.
    user: Option<UserId>,
    /// A Logon was sent and no answer read yet.
    logon_pending: bool,
    /// Live orders (placed from here, until a report ends them).
    orders: HashMap<Cid, Known>,
    /// The cid each accepted order was placed with, by engine order id.
    cids: HashMap<OrderId, Cid>,
    /// Orders with a cancel or replace sent and not yet answered, and the
    /// changes of them held back meanwhile, in order.
    changing: HashMap<Cid, VecDeque<Outgoing>>,
    /// The number in the next fresh ClOrdID or TestReqID.
    next_id: u64,
}

impl State {
    fn fresh_id(&mut self, prefix: char) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    /// Whether `outgoing` may go now; if it changes an order that already
    /// has a change in flight, it is held back (see [`State::answered`]).
    fn may_send(&mut self, outgoing: Outgoing) -> bool {
        let Some(cid) = outgoing.changes() else { return true };
        match self.changing.entry(cid) {
            Entry::Occupied(mut held) => {
                held.get_mut().push_back(outgoing);
                false
            }
            Entry::Vacant(entry) => {
                entry.insert(VecDeque::new());
                true
            }
        }
    }

    /// The change in flight of the order placed as `cid` is answered: the
    /// next one held back, to send now.
    fn answered(&mut self, cid: Option<Cid>) -> Option<Outgoing> {
        let cid = cid?;
        let held = self.changing.get_mut(&cid)?;
        let next = held.pop_front();
        if next.is_none() {
            self.changing.remove(&cid);
        }
        next
    }

    /// The order is done: forget it.
    fn forget(&mut self, order_id: Option<OrderId>, cid: Option<Cid>) {
        if let Some(id) = order_id {
            self.cids.remove(&id);
        }
        if let Some(cid) = cid {
            self.orders.remove(&cid);
        }
    }
}

/// The write half of the socket and what numbering messages needs.
struct Writer {
    stream: OwnedWriteHalf,
    /// Our SenderCompID (`U<user>`); empty before a Logon is sent.
    comp_id: String,
    next_seq: u64,
    out: Vec<u8>,
    body: Body,
    last_write: Instant,
}

impl Writer {
    /// Appends one message numbered `seq` (a gap fill's is not the next).
    fn put(&mut self, msg_type: &str, seq: u64, poss_dup: bool) {
        let now = SystemTime::now();
        let header = Header {
            sender: &self.comp_id,
            target: SERVER_COMP_ID,
            seq,
            sending_time: now,
            poss_dup: poss_dup.then_some(now),
        };
        encode(&mut self.out, msg_type, &header, self.body.as_bytes());
    }

    /// Writes what [`Writer::put`] appended.
    async fn flush(&mut self) -> io::Result<()> {
        let result = self.stream.write_all(&self.out).await;
        self.out.clear();
        self.last_write = Instant::now();
        result
    }

    /// One message (`self.body`) now, if logged on.
    async fn send_one(&mut self, msg_type: &str) -> io::Result<()> {
        if self.comp_id.is_empty() {
            return Ok(());
        }
        self.out.clear();
        self.put(msg_type, self.next_seq, false);
        self.next_seq += 1;
        self.flush().await
    }
}

struct Shared {
    /// Held across a write, so both halves' messages go out in MsgSeqNum order.
    writer: tokio::sync::Mutex<Writer>,
    /// Never held across an `await`.
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The sending half.
pub(crate) struct FixSender {
    shared: Arc<Shared>,
    local: SocketAddr,
    /// The batch being written, translated.
    outgoing: Vec<Outgoing>,
}

/// The receiving half. What it must send itself (a Heartbeat answering a
/// TestRequest, a gap fill, a change held back until the one before it was
/// answered) it hands to a task that takes the write half's lock, so a
/// reader never waits on a writer that may be waiting on the server.
pub(crate) struct FixReceiver {
    stream: OwnedReadHalf,
    shared: Arc<Shared>,
    input: Vec<u8>,
    start: usize,
    /// The server closed the connection.
    closed: bool,
    /// A reply to hand out before reading on.
    queued: Option<Reply>,
}

/// Both halves of a FIX connection over `stream`.
pub(crate) fn halves(stream: TcpStream) -> io::Result<(FixReceiver, FixSender)> {
    let local = stream.local_addr()?;
    let (read, write) = stream.into_split();
    let writer = Writer {
        stream: write,
        comp_id: String::new(),
        next_seq: 1,
        out: Vec::with_capacity(1 << 16),
        body: Body::with_capacity(256),
        last_write: Instant::now(),
    };
    let shared = Arc::new(Shared { writer: tokio::sync::Mutex::new(writer), state: Mutex::default() });
    let receiver = FixReceiver {
        stream: read,
        shared: Arc::clone(&shared),
        input: Vec::with_capacity(1 << 16),
        start: 0,
        closed: false,
        queued: None,
    };
    Ok((receiver, FixSender { shared, local, outgoing: Vec::new() }))
}

/// A request as this wire sends it.
#[derive(Clone, Copy)]
enum Outgoing {
    Logon(UserId),
    New(NewOrder, Cid),
    Cancel(Cid),
    Replace { cid: Cid, price: Option<Price>, qty: Option<Qty> },
    MassCancel { symbol: Option<Symbol>, side: Option<Side> },
    TestRequest,
    Logout,
}

impl Outgoing {
    /// The cid of the order a cancel or replace changes.
    fn changes(self) -> Option<Cid> {
        match self {
            Outgoing::Cancel(cid) | Outgoing::Replace { cid, .. } => Some(cid),
            _ => None,
        }
    }

    fn of(request: &Request) -> io::Result<Outgoing> {
        Ok(match request {
            Request::Login(login) => Outgoing::Logon(login.user),
            Request::Command { action: Action::New(order), cid: Some(cid) } => Outgoing::New(*order, *cid),
            Request::CancelCid { cid, .. } => Outgoing::Cancel(*cid),
            Request::ModifyCid { cid, price, qty, .. } => Outgoing::Replace { cid: *cid, price: *price, qty: *qty },
            Request::Command { action: Action::MassCancel { symbol, side, .. }, .. } => {
                Outgoing::MassCancel { symbol: *symbol, side: *side }
            }
            Request::Ping => Outgoing::TestRequest,
            Request::Logout => Outgoing::Logout,
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "the FIX client cannot send {other:?} (a new order needs a cid; cancel and modify go by cid)"
                    ),
                ));
            }
        })
    }
}

impl FixSender {
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Translates every request, then writes them in one write. An
    /// unsupported request fails the batch before anything is written.
    pub(crate) async fn send_batch(&mut self, requests: &[Request]) -> io::Result<()> {
        self.outgoing.clear();
        for request in requests {
            self.outgoing.push(Outgoing::of(request)?);
        }
        let mut writer = self.shared.writer.lock().await;
        let writer = &mut *writer;
        if writer.comp_id.is_empty() && !matches!(self.outgoing.first(), Some(Outgoing::Logon(_)) | None) {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "log in first"));
        }
        writer.out.clear();
        {
            let mut state = self.shared.state();
            for outgoing in &self.outgoing {
                if let Outgoing::Logon(user) = outgoing {
                    writer.comp_id = format!("U{user}");
                    writer.next_seq = 1;
                    state.user = Some(*user);
                    state.logon_pending = true;
                }
                if !state.may_send(*outgoing) {
                    continue;
                }
                let msg_type = body(*outgoing, &mut state, &mut writer.body);
                writer.put(msg_type, writer.next_seq, false);
                writer.next_seq += 1;
            }
        }
        writer.flush().await
    }

    /// A Heartbeat, if nothing was written for half the heartbeat interval.
    pub(crate) async fn heartbeat(&mut self) -> io::Result<()> {
        let mut writer = self.shared.writer.lock().await;
        if writer.last_write.elapsed() < HEARTBEAT_INTERVAL / 2 {
            return Ok(());
        }
        writer.body.clear();
        writer.send_one("0").await
    }

    /// Raw bytes, as they are (no MsgSeqNum is used).
    pub(crate) async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut writer = self.shared.writer.lock().await;
        writer.stream.write_all(bytes).await
    }
}

fn side_code(side: Side) -> &'static str {
    match side {
        Side::Buy => "1",
        Side::Sell => "2",
    }
}

/// Fills `body` with the fields of `outgoing`; its MsgType.
fn body(outgoing: Outgoing, state: &mut State, body: &mut Body) -> &'static str {
    body.clear();
    match outgoing {
        Outgoing::Logon(_) => {
            body.field_str(98, "0").field_u64(108, HEARTBEAT_INTERVAL.as_secs()).field_str(141, "Y");
            "A"
        }
        Outgoing::New(order, cid) => {
            body.field_str(11, cid.as_str()).field_str(55, order.symbol.as_str());
            body.field_str(54, side_code(order.side)).field_u64(38, order.qty);
            match order.order_type {
                OrderType::Limit => {
                    body.field_str(40, "2");
                    if let Some(price) = order.price {
                        body.field_u64(44, price);
                    }
                }
                OrderType::Market => {
                    body.field_str(40, "1");
                }
            }
            body.field_str(
                59,
                match order.tif {
                    Tif::Gtc => "1",
                    Tif::Ioc => "3",
                    Tif::Fok => "4",
                },
            );
            if order.post_only {
                body.field_str(18, "6");
            }
            let stp = match order.stp {
                Stp::None => None,
                Stp::CancelTaker => Some(1),
                Stp::CancelMaker => Some(2),
                Stp::CancelBoth => Some(3),
            };
            if let Some(stp) = stp {
                body.field_u64(TAG_STP_MODE, stp);
            }
            // A cid of a live order stays that order's (the new one will be refused `duplicate_cid`).
            let known = Known { symbol: order.symbol, side: order.side, total: order.qty, cum: 0, accepted: false };
            state.orders.entry(cid).or_insert(known);
            "D"
        }
        Outgoing::Cancel(cid) => {
            body.field_str(11, &state.fresh_id('#')).field_str(41, cid.as_str());
            if let Some(known) = state.orders.get(&cid) {
                body.field_str(55, known.symbol.as_str()).field_str(54, side_code(known.side));
            }
            "F"
        }
        Outgoing::Replace { cid, price, qty } => {
            body.field_str(11, &state.fresh_id('#')).field_str(41, cid.as_str());
            let known = state.orders.get(&cid);
            // FIX's OrderQty counts what was filled; the gateway subtracts it again.
            let total = match (qty, known) {
                (Some(qty), known) => qty + known.map_or(0, |k| k.cum),
                (None, Some(known)) => known.total,
                (None, None) => 0,
            };
            body.field_u64(38, total).field_str(40, "2");
            if let Some(price) = price {
                body.field_u64(44, price);
            }
            if let Some(known) = known {
                body.field_str(55, known.symbol.as_str()).field_str(54, side_code(known.side));
            }
            "G"
        }
        Outgoing::MassCancel { symbol, side } => {
            body.field_str(11, &state.fresh_id('#'));
            match symbol {
                Some(symbol) => body.field_str(530, "1").field_str(55, symbol.as_str()),
                None => body.field_str(530, "7"),
            };
            if let Some(side) = side {
                body.field_str(54, side_code(side));
            }
            "q"
        }
        Outgoing::TestRequest => {
            body.field_str(112, &state.fresh_id('T'));
            "1"
        }
        Outgoing::Logout => "5",
    }
}

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("FIX: {what}"))
}

/// A field's value as a whole number (`100`, or `100.0` with zeros after the point).
fn number(message: &Message, tag: u32) -> Option<u64> {
    let text = message.get(tag)?;
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b == b'0') {
        return None;
    }
    whole.parse().ok()
}

/// A field the message must have, as a whole number.
fn need(message: &Message, tag: u32) -> io::Result<u64> {
    number(message, tag).ok_or_else(|| invalid(format_args!("35={} without a number in {tag}", message.msg_type())))
}

fn need_symbol(message: &Message) -> io::Result<Symbol> {
    message.get(55).and_then(Symbol::new).ok_or_else(|| invalid("a report without a Symbol (55)"))
}

fn need_side(message: &Message) -> io::Result<Side> {
    match message.get(54) {
        Some("1") => Ok(Side::Buy),
        Some("2") => Ok(Side::Sell),
        _ => Err(invalid("a report without a Side (54) of 1 or 2")),
    }
}

fn cid_in(message: &Message, tag: u32) -> Option<Cid> {
    message.get(tag).and_then(Cid::new)
}

/// The engine's reason a Text (58) names, if it names one.
fn engine_reason(text: Option<&str>) -> Option<RejectReason> {
    RejectReason::ALL.into_iter().find(|r| Some(r.as_str()) == text)
}

fn event(event: ClientEvent) -> Option<Reply> {
    // FIX reports carry no engine seq.
    Some(Reply::Event { seq: 0, event })
}

impl FixReceiver {
    /// The next reply; `None` once the server has closed the connection.
    pub(crate) async fn next(&mut self) -> io::Result<Option<Reply>> {
        if let Some(reply) = self.queued.take() {
            return Ok(Some(reply));
        }
        loop {
            while let Some(len) = frame_len(&self.input[self.start..], FRAME_MAX).map_err(invalid)? {
                let message = parse(&self.input[self.start..self.start + len]).map_err(invalid)?;
                self.start += len;
                if let Some(reply) = self.translate(&message)? {
                    return Ok(Some(reply));
                }
            }
            if self.closed {
                return Ok(None);
            }
            if self.start > 0 {
                self.input.drain(..self.start);
                self.start = 0;
            }
            self.input.reserve(8192);
            if self.stream.read_buf(&mut self.input).await? == 0 {
                self.closed = true;
                // The gateway closes without a word on a Logon it does not know.
                if std::mem::take(&mut self.shared.state().logon_pending) {
                    return Ok(Some(Reply::LoginRejected { reason: LoginError::BadCredentials }));
                }
                return Ok(None);
            }
        }
    }

    /// What one message from the server means to the caller, if anything.
    fn translate(&mut self, message: &Message) -> io::Result<Option<Reply>> {
        let text = message.get(58);
        // The answer to a cancel or replace (it names the order by 41): the
        // next change of that order held back may go.
        if matches!((message.msg_type(), message.get(150)), ("9", _) | ("8", Some("4" | "5" | "C"))) {
            let cid = cid_in(message, 41);
            let (in_flight, next) = {
                let mut state = self.shared.state();
                (cid.is_some_and(|cid| state.changing.contains_key(&cid)), state.answered(cid))
            };
            if let Some(next) = next {
                self.answer(move |writer, shared| body(next, &mut shared.state(), &mut writer.body));
            }
            // The order left the book otherwise (self-trade prevention, a
            // mass cancel, an expiry) with a change of ours in flight: the
            // gateway put the change's ClOrdIDs on that report and will not
            // answer the change itself (see the module's docs). It can only
            // fail, the order being gone: say so, after the report.
            if in_flight && matches!(message.get(150), Some("4" | "C")) && text.is_some() {
                let order_id = message.get_u64(37);
                self.queued = event(ClientEvent::Rejected { reason: RejectReason::UnknownOrder, order_id, cid });
            }
        }
        Ok(match message.msg_type() {
            "A" => {
                let mut state = self.shared.state();
                state.logon_pending = false;
                Some(Reply::LoginAccepted { user: state.user.unwrap_or_default() })
            }
            "5" => {
                if std::mem::take(&mut self.shared.state().logon_pending) {
                    Some(Reply::LoginRejected { reason: LoginError::BadCredentials })
                } else {
                    Some(Reply::Goodbye { reason: text.unwrap_or("logout").to_string() })
                }
            }
            "0" => message.get(112).map(|_| Reply::Pong),
            "1" => {
                let id = message.get(112).unwrap_or("TEST").to_string();
                self.answer(move |writer, _| {
                    writer.body.clear();
                    writer.body.field_str(112, &id);
                    "0"
                });
                None
            }
            "2" => {
                // Nothing is kept to resend: one gap fill over all of it.
                let begin = need(message, 7)?;
                self.answer(move |writer, _| {
                    let next = writer.next_seq;
                    writer.body.clear();
                    writer.body.field_str(123, "Y").field_u64(36, next);
                    writer.out.clear();
                    writer.put("4", begin, true);
                    ""
                });
                None
            }
            "3" => Some(Reply::Rejected { reason: GatewayReason::Malformed, order_id: None, cid: None }),
            "8" => self.execution_report(message)?,
            "9" => {
                let order_id = message.get_u64(37);
                let cid = cid_in(message, 41);
                match (engine_reason(text), text.and_then(GatewayReason::parse)) {
                    (Some(reason), _) => event(ClientEvent::Rejected { reason, order_id, cid }),
                    (None, Some(reason)) => Some(Reply::Rejected { reason, order_id, cid }),
                    (None, None) => {
                        let reason = if message.get(102) == Some("1") {
                            RejectReason::UnknownOrder
                        } else {
                            RejectReason::Malformed
                        };
                        event(ClientEvent::Rejected { reason, order_id, cid })
                    }
                }
            }
            "r" => match number(message, 533) {
                Some(count) => {
                    let user = self.shared.state().user.unwrap_or_default();
                    event(ClientEvent::MassCancelled { user, count })
                }
                None => {
                    let reason = engine_reason(text).unwrap_or(RejectReason::Malformed);
                    event(ClientEvent::Rejected { reason, order_id: None, cid: None })
                }
            },
            // The gateway's answer to a change whose ClOrdIDs it had already
            // spent (see above): answered then.
            "j" if text == Some(GatewayReason::UnknownCid.as_str()) && message.get(379).is_none() => None,
            "j" => {
                let reason = text.and_then(GatewayReason::parse).unwrap_or(GatewayReason::Malformed);
                Some(Reply::Rejected { reason, order_id: None, cid: cid_in(message, 379) })
            }
            _ => None,
        })
    }

    /// Sends a message from a task of its own (the reader never waits for
    /// the writer): `fill` puts its body in the writer and returns its
    /// MsgType (or writes the whole message to the writer's output itself
    /// and returns `""`).
    fn answer(&self, fill: impl FnOnce(&mut Writer, &Shared) -> &'static str + Send + 'static) {
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            let mut writer = shared.writer.lock().await;
            let msg_type = fill(&mut writer, &shared);
            // A failed write shows as the end of the stream to the reader.
            let _ = if msg_type.is_empty() { writer.flush().await } else { writer.send_one(msg_type).await };
        });
    }

    fn execution_report(&mut self, message: &Message) -> io::Result<Option<Reply>> {
        let order_id = message.get_u64(37);
        let text = message.get(58);
        let mut state = self.shared.state();
        // The cid the caller placed the order with.
        let placed_with = |state: &State| {
            cid_in(message, 41)
                .or_else(|| order_id.and_then(|id| state.cids.get(&id).copied()))
                .or_else(|| cid_in(message, 11))
        };
        let need_id = || order_id.ok_or_else(|| invalid("an ExecutionReport without a numeric OrderID (37)"));
        Ok(match message.get(150) {
            Some("0") => {
                let order_id = need_id()?;
                let (symbol, side, qty) = (need_symbol(message)?, need_side(message)?, need(message, 38)?);
                let order_type = if message.get(40) == Some("1") { OrderType::Market } else { OrderType::Limit };
                let tif = match message.get(59) {
                    Some("3") => Tif::Ioc,
                    Some("4") => Tif::Fok,
                    _ => Tif::Gtc,
                };
                let price = if order_type == OrderType::Limit { number(message, 44) } else { None };
                let cid = cid_in(message, 11);
                if let Some(cid) = cid {
                    state.cids.insert(order_id, cid);
                    let known = Known { symbol, side, total: qty, cum: 0, accepted: true };
                    state.orders.insert(cid, known);
                }
                let user = number(message, 1).or(state.user).unwrap_or_default();
                event(ClientEvent::Accepted { order_id, user, symbol, side, order_type, tif, qty, price, cid })
            }
            Some("F") => {
                let order_id = need_id()?;
                let (qty, price, remaining) = (need(message, 32)?, need(message, 31)?, need(message, 151)?);
                let cid = placed_with(&state);
                let takes = message.get(40) == Some("1")
                    || matches!(message.get(59), Some("3" | "4"))
                    || number(message, 44).is_some_and(|limit| limit != price);
                let liquidity = if takes { Liquidity::Taker } else { Liquidity::Maker };
                if remaining == 0 {
                    state.forget(Some(order_id), cid);
                } else if let Some(known) = cid.and_then(|cid| state.orders.get_mut(&cid)) {
                    known.cum = number(message, 14).unwrap_or(known.cum + qty);
                    known.total = number(message, 38).unwrap_or(known.total);
                }
                event(ClientEvent::Fill {
                    symbol: need_symbol(message)?,
                    trade_id: need(message, 880)?,
                    price,
                    qty,
                    order_id,
                    side: need_side(message)?,
                    liquidity,
                    remaining,
                    cid,
                })
            }
            Some(exec_type @ ("4" | "C")) => {
                let order_id = need_id()?;
                let cid = placed_with(&state);
                let reason = match (exec_type, text) {
                    ("C", Some(text)) if text.starts_with("fok") => CancelReason::Fok,
                    ("C", _) => CancelReason::Ioc,
                    (_, Some(text)) if text.contains("self-trade") => CancelReason::Stp,
                    (_, Some(text)) if text.contains("mass") => CancelReason::Mass,
                    _ => CancelReason::User,
                };
                let remaining = need(message, 38)?.saturating_sub(number(message, 14).unwrap_or(0));
                state.forget(Some(order_id), cid);
                event(ClientEvent::Cancelled { order_id, reason, remaining, cid })
            }
            Some("5") => {
                let order_id = need_id()?;
                let cid = placed_with(&state);
                if let Some(known) = cid.and_then(|cid| state.orders.get_mut(&cid)) {
                    known.total = number(message, 38).unwrap_or(known.total);
                    known.cum = number(message, 14).unwrap_or(known.cum);
                }
                let (price, qty) = (need(message, 44)?, need(message, 151)?);
                event(ClientEvent::Modified { order_id, price, qty, cid })
            }
            Some("8") => {
                let cid = cid_in(message, 11);
                // A new order the engine never took: forget it (not a live one of the same cid).
                if let Some(cid) = cid
                    && state.orders.get(&cid).is_some_and(|known| !known.accepted)
                {
                    state.orders.remove(&cid);
                }
                match (engine_reason(text), text.and_then(GatewayReason::parse)) {
                    (Some(reason), _) => event(ClientEvent::Rejected { reason, order_id: None, cid }),
                    (None, Some(reason)) => Some(Reply::Rejected { reason, order_id: None, cid }),
                    (None, None) => {
                        event(ClientEvent::Rejected { reason: RejectReason::Malformed, order_id: None, cid })
                    }
                }
            }
            // Order Status (I), and anything else: not an event.
            _ => None,
        })
    }
}
