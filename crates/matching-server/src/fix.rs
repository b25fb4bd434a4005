//! FIX 4.4 order entry over TCP (`--fix-addr`, `docs/FIX.md`): a
//! translation layer onto the same session as every other front door, not
//! a second engine. `matching-fix` keeps the FIX session (sequence numbers,
//! heartbeats, resends, the message store); this transport turns its
//! application messages into [`Request`]s and the driver's [`Reply`]s into
//! ExecutionReports, OrderCancelRejects, mass-cancel reports and
//! BusinessMessageRejects.
//!
//! - **Who is it.** The Logon's CompIDs name the session: a `fix` line of the
//!   users file, or in the open development mode `U<user id>` → `ME`
//!   (`DC<user id>` → `ME` for a drop copy). The transport authenticates it
//!   itself ([`Transport::authenticated`]).
//! - **ClOrdID is the cid.** A new order's ClOrdID (11) is its client order
//!   id; a cancel or replace names the order by OrigClOrdID (41). After a
//!   replace the order answers to its new ClOrdID too (the engine keeps the
//!   first as its cid): the transport remembers each ClOrdID's order.
//! - **Execution reports are built from the events**, which the driver
//!   releases only once durable, and the order state this transport keeps:
//!   CumQty, LeavesQty, AvgPx. Orders resting when the session logs on are
//!   learned from an `orders` query at logon (their CumQty from before is not
//!   known: it starts at 0).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use matching_core::{
    Action, CancelReason, Cid, NewOrder, OrderId, OrderType, Price, Qty, RejectReason, Side, Stp, Symbol, Tif, UserId,
};
use matching_fix::{
    Action as FixAction, Body, FileStore, Message, ParseError, Session, SessionConfig, Store, frame_len,
};
use matching_proto::session::{ClientEvent, GatewayReason, Login, OrderInfo, Reply, Request};
use rustc_hash::FxHashMap;
use tokio::net::TcpStream;

use crate::session::{Auth, Context, Incoming, Transport};
use crate::stats::Protocol;
use crate::tcp::Connection;
use crate::users::Role;

/// Our CompID: a client's TargetCompID.
pub const OUR_COMP_ID: &str = "ME";

/// The user-defined tag for self-trade prevention on a NewOrderSingle:
/// 0 none, 1 cancel the incoming order, 2 cancel the resting one, 3 both.
pub const TAG_STP_MODE: u32 = 20001;

/// Where FIX sessions are served and kept.
#[derive(Clone, Debug)]
pub struct FixConfig {
    pub addr: std::net::SocketAddr,
    /// Each session's message store and sequence numbers (in the data directory).
    pub store_dir: PathBuf,
    /// Application messages each session keeps for resend requests.
    pub store_capacity: usize,
}

/// What the transport knows of an order, to report on it.
struct FixOrder {
    user: UserId,
    /// The ClOrdID it answers to now.
    clordid: String,
    /// The ClOrdIDs it had before, replace by replace (it still answers to them).
    former: Vec<String>,
    symbol: Symbol,
    side: Side,
    order_type: OrderType,
    tif: Tif,
    price: Option<Price>,
    /// OrderQty as FIX counts it: filled plus open.
    order_qty: Qty,
    cum_qty: Qty,
    /// Σ price × qty of the fills, for AvgPx.
    notional: u128,
    leaves: Qty,
}

impl FixOrder {
    fn status(&self) -> char {
        match (self.cum_qty, self.leaves) {
            (_, 0) if self.cum_qty > 0 => '2',
            (0, _) => '0',
            _ => '1',
        }
    }
}

/// A new order sent and not yet answered.
struct NewPending {
    clordid: String,
    symbol: Symbol,
    side: Side,
    order_type: OrderType,
    tif: Tif,
    price: Option<Price>,
    qty: Qty,
}

/// A cancel or replace sent and not yet answered.
struct ChangePending {
    clordid: String,
    orig_clordid: String,
    /// `Some(total OrderQty, price)` for a replace.
    replace: Option<(Qty, Option<Price>)>,
}

/// The FIX sessions logged on now (`sender → target`): a session is one
/// connection at a time, so its store has one writer.
pub(crate) type Active = Arc<std::sync::Mutex<std::collections::HashSet<String>>>;

pub(crate) struct Fix {
    io: Connection,
    active: Active,
    /// This connection's entry in `active`, once its Logon took it.
    holds: Option<String>,
    frame_max: usize,
    config: Arc<FixConfig>,
    context: Arc<Context>,
    session: Option<Session<FileStore>>,
    identity: Option<(UserId, Role)>,
    actions: Vec<FixAction>,
    /// What `recv` hands out next.
    ready: VecDeque<Incoming>,
    /// The session ends once what is written is flushed.
    ending: bool,
    orders: FxHashMap<OrderId, FixOrder>,
    /// Every ClOrdID an order has had → the order's engine cid.
    engine_cid: HashMap<String, Cid>,
    /// An order's engine cid → the order.
    order_of: HashMap<Cid, OrderId>,
    pending_new: HashMap<Cid, NewPending>,
    /// Cancels and replaces sent and not yet answered, per order (by its
    /// cid), in the order they were sent: the engine answers them in that order.
    pending_change: HashMap<Cid, VecDeque<ChangePending>>,
    /// Mass cancels sent: ClOrdID and MassCancelRequestType, in order.
    pending_mass: VecDeque<(String, String)>,
    /// Reports sent this run (the ExecID's tail).
    reports: u64,
    body: Body,
}

impl Fix {
    pub(crate) fn new(
        stream: TcpStream,
        frame_max: usize,
        config: Arc<FixConfig>,
        active: Active,
        context: Arc<Context>,
    ) -> Fix {
        Fix {
            io: Connection::new(stream, 64 * 1024),
            active,
            holds: None,
            frame_max: frame_max.max(4096),
            config,
            context,
            session: None,
            identity: None,
            actions: Vec::new(),
            ready: VecDeque::new(),
            ending: false,
            orders: FxHashMap::default(),
            engine_cid: HashMap::new(),
            order_of: HashMap::new(),
            pending_new: HashMap::new(),
            pending_change: HashMap::new(),
            pending_mass: VecDeque::new(),
            reports: 0,
            body: Body::new(),
        }
    }

    /// Who a Logon from `sender` to `target` is.
    fn identify(&self, sender: &str, target: &str) -> Option<(UserId, Role)> {
        match &self.context.auth {
            Auth::Users(users) => users.fix_session(sender, target),
            Auth::Open if target == OUR_COMP_ID => {
                if let Some(user) = sender.strip_prefix("DC") {
                    return Some((user.parse().ok()?, Role::DropCopy));
                }
                Some((sender.strip_prefix('U')?.parse().ok()?, Role::Operator))
            }
            Auth::Open => None,
        }
    }

    /// Parses every whole frame buffered, into `ready`; `false` if there is none.
    fn parse_buffered(&mut self) -> bool {
        let mut any = false;
        loop {
            let io = &mut self.io;
            let len = match frame_len(&io.input[io.start..], self.frame_max) {
                Ok(Some(len)) => len,
                Ok(None) => return any,
                Err(_) => {
                    // Not a FIX message: the stream cannot be trusted further.
                    tracing::info!("fix: a frame that is not FIX 4.4; closing");
                    self.ending = true;
                    return true;
                }
            };
            let (start, input) = (io.start, std::mem::take(&mut io.input));
            self.io.start += len;
            any = true;
            // The frame is read in place (the input is lent out meanwhile).
            self.on_frame(&input[start..start + len]);
            self.io.input = input;
            if self.ending {
                return true;
            }
        }
    }

    /// Records how far the client's messages were read before they go to
    /// the engine: a crash then loses those not yet journaled (no report was
    /// sent for them), never processes one twice.
    fn note_read(&mut self) {
        if let Some(session) = self.session.as_mut()
            && let Err(error) = session.store().flush()
        {
            tracing::error!(%error, "fix: the session's store failed; closing");
            self.ending = true;
        }
    }

    fn on_frame(&mut self, frame: &[u8]) {
        let now = SystemTime::now();
        if self.session.is_none() {
            return self.logon(frame, now);
        }
        let Some(session) = self.session.as_mut() else { return };
        session.on_frame(frame, now, Instant::now(), &mut self.actions);
        self.take_actions();
    }

    /// The first frame: it must be a Logon from a known session.
    fn logon(&mut self, frame: &[u8], now: SystemTime) {
        let message = match matching_fix::parse(frame) {
            Ok(message) if message.msg_type() == "A" => message,
            // Garbled (a wrong CheckSum, say): ignored, as the spec says; the next may be good.
            Err(ParseError::Garbled { reason }) => {
                tracing::info!(reason, "fix: a garbled message before the Logon, ignored");
                return;
            }
            Ok(_) | Err(ParseError::Invalid { .. }) => {
                tracing::info!("fix: the first message is not a Logon; closing");
                self.ending = true;
                return;
            }
        };
        let (sender, target) = (message.get(49).unwrap_or_default(), message.get(56).unwrap_or_default());
        let Some(identity) = self.identify(sender, target) else {
            tracing::info!(sender, target, "fix: a Logon from an unknown session; closing");
            self.ending = true;
            return;
        };
        let key = format!("{sender} → {target}");
        if !self.active.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone()) {
            tracing::info!(sender, target, "fix: a second Logon of a session already logged on; closing");
            self.ending = true;
            return;
        }
        self.holds = Some(key);
        let store = match FileStore::open(&self.config.store_dir, target, sender, self.config.store_capacity) {
            Ok(store) => store,
            Err(error) => {
                tracing::error!(%error, sender, "fix: cannot open the session's store; closing");
                self.ending = true;
                return;
            }
        };
        let config = SessionConfig {
            our_comp_id: target.to_string(),
            their_comp_id: sender.to_string(),
            max_message_len: self.frame_max,
        };
        let mut session = Session::new(config, store);
        session.on_frame(frame, now, Instant::now(), &mut self.actions);
        self.session = Some(session);
        self.identity = Some(identity);
        self.take_actions();
    }

    /// What the session decided: application messages become requests.
    fn take_actions(&mut self) {
        for action in std::mem::take(&mut self.actions) {
            match action {
                FixAction::LoggedOn { .. } => {
                    let Some((user, _)) = self.identity else { continue };
                    let login = Login { user, key: String::new(), cancel_on_disconnect: false, resume_after: None };
                    self.ready.push_back(Incoming::Request(Request::Login(login)));
                    // The orders resting now, to report on them.
                    self.ready.push_back(Incoming::Request(Request::Orders));
                }
                FixAction::App(message) => self.application(&message),
                FixAction::LoggedOut | FixAction::Disconnect(_) => self.ending = true,
                FixAction::Send => {}
            }
        }
    }

    /// One application message from the client.
    fn application(&mut self, message: &Message) {
        let Some((user, _)) = self.identity else { return };
        let request = match message.msg_type() {
            "D" => self.new_order(user, message),
            "F" => self.change(user, message, None),
            "G" => {
                let qty = message.get(38).and_then(parse_qty);
                let price = message.get(44).and_then(parse_qty);
                match qty {
                    Some(qty) => self.change(user, message, Some((qty, price))),
                    None => Err(("OrderQty (38) missing or not a whole number", 5)),
                }
            }
            "q" => self.mass_cancel(user, message),
            "H" => {
                self.order_status(message);
                return;
            }
            other => {
                let text = format!("unsupported MsgType {other}");
                self.business_reject(message, 3, &text);
                return;
            }
        };
        match request {
            Ok(request) => self.ready.push_back(Incoming::Request(request)),
            Err((text, reason)) => self.business_reject(message, reason, text),
        }
    }

    fn new_order(&mut self, user: UserId, message: &Message) -> Result<Request, (&'static str, u32)> {
        let clordid = message.get(11).ok_or(("ClOrdID (11) missing", 5))?;
        let cid = Cid::new(clordid).ok_or(("ClOrdID (11) must be 1 to 20 printable characters", 5))?;
        let symbol = message.get(55).and_then(Symbol::new).ok_or(("Symbol (55) missing or not a symbol", 5))?;
        let side = match message.get(54) {
            Some("1") => Side::Buy,
            Some("2") => Side::Sell,
            _ => return Err(("Side (54) must be 1 (buy) or 2 (sell)", 5)),
        };
        let order_type = match message.get(40) {
            Some("1") => OrderType::Market,
            Some("2") | None => OrderType::Limit,
            _ => return Err(("OrdType (40) must be 1 (market) or 2 (limit)", 5)),
        };
        let tif = match message.get(59) {
            Some("1") | None => Tif::Gtc,
            Some("3") => Tif::Ioc,
            Some("4") => Tif::Fok,
            _ => return Err(("TimeInForce (59) must be 1 (GTC), 3 (IOC) or 4 (FOK)", 5)),
        };
        // An unreadable price or quantity reaches the engine as 0: its rejection, in SPEC's order.
        let price = match order_type {
            OrderType::Limit => Some(message.get(44).and_then(parse_qty).unwrap_or(0)),
            OrderType::Market => None,
        };
        let qty = message.get(38).and_then(parse_qty).unwrap_or(0);
        let post_only = message.get(18).is_some_and(|inst| inst.split(' ').any(|i| i == "6"));
        let stp = match message.get(TAG_STP_MODE) {
            None | Some("0") => Stp::None,
            Some("1") => Stp::CancelTaker,
            Some("2") => Stp::CancelMaker,
            Some("3") => Stp::CancelBoth,
            Some(_) => return Err(("STPMode (20001) must be 0 to 3", 5)),
        };
        let order = NewOrder { order_id: 0, user, symbol, side, order_type, price, qty, tif, post_only, stp };
        let pending = NewPending { clordid: clordid.to_string(), symbol, side, order_type, tif, price, qty };
        self.pending_new.insert(cid, pending);
        Ok(Request::Command { action: Action::New(order), cid: Some(cid) })
    }

    /// A cancel (`replace` none) or a cancel/replace of the order OrigClOrdID names.
    fn change(
        &mut self,
        user: UserId,
        message: &Message,
        replace: Option<(Qty, Option<Price>)>,
    ) -> Result<Request, (&'static str, u32)> {
        let clordid = message.get(11).ok_or(("ClOrdID (11) missing", 5))?;
        let orig = message.get(41).ok_or(("OrigClOrdID (41) missing", 5))?;
        let cid = match self.engine_cid.get(orig) {
            Some(cid) => *cid,
            None => Cid::new(orig).ok_or(("OrigClOrdID (41) names no order", 5))?,
        };
        let pending = ChangePending { clordid: clordid.to_string(), orig_clordid: orig.to_string(), replace };
        self.pending_change.entry(cid).or_default().push_back(pending);
        Ok(match replace {
            None => Request::CancelCid { user, cid },
            Some((total, price)) => {
                // FIX's OrderQty counts what was filled; the engine's, what is open.
                let filled = self.order_by_cid(&cid).map_or(0, |o| o.cum_qty);
                let qty = Some(total.saturating_sub(filled));
                Request::ModifyCid { user, cid, price, qty }
            }
        })
    }

    fn mass_cancel(&mut self, user: UserId, message: &Message) -> Result<Request, (&'static str, u32)> {
        let clordid = message.get(11).ok_or(("ClOrdID (11) missing", 5))?.to_string();
        let kind = message.get(530).unwrap_or_default().to_string();
        let symbol = match kind.as_str() {
            "1" => Some(message.get(55).and_then(Symbol::new).ok_or(("Symbol (55) missing", 5))?),
            "7" => None,
            _ => return Err(("MassCancelRequestType (530) must be 1 (symbol) or 7 (all)", 5)),
        };
        let side = match message.get(54) {
            Some("1") => Some(Side::Buy),
            Some("2") => Some(Side::Sell),
            _ => None,
        };
        self.pending_mass.push_back((clordid, kind));
        Ok(Request::Command { action: Action::MassCancel { user, symbol, side }, cid: None })
    }

    /// The oldest change pending on the order `cid` names.
    fn take_change(&mut self, cid: Cid) -> Option<ChangePending> {
        let queue = self.pending_change.get_mut(&cid)?;
        let change = queue.pop_front();
        if queue.is_empty() {
            self.pending_change.remove(&cid);
        }
        change
    }

    fn order_by_cid(&self, cid: &Cid) -> Option<&FixOrder> {
        self.orders.get(self.order_of.get(cid)?)
    }

    /// The order is known: by its id, and by its cid if it has one.
    fn know(&mut self, order_id: OrderId, cid: Option<Cid>, order: FixOrder) {
        if let Some(cid) = cid {
            self.engine_cid.insert(order.clordid.clone(), cid);
            self.order_of.insert(cid, order_id);
        }
        self.orders.entry(order_id).or_insert(order);
    }

    /// OrderStatusRequest: an ExecutionReport (ExecType I) of what is known now.
    fn order_status(&mut self, message: &Message) {
        let clordid = message.get(11).unwrap_or_default().to_string();
        let cid = self.engine_cid.get(&clordid).copied().or_else(|| Cid::new(&clordid));
        let found = cid.and_then(|cid| self.order_of.get(&cid).copied());
        match found {
            Some(order_id) => self.report(order_id, 'I', None, None, None),
            None => {
                let body = &mut self.body;
                body.clear();
                body.field(37, "NONE").field(11, &clordid).field(17, ExecId(0, self.reports));
                body.field(150, "I").field(39, "8").field(55, message.get(55).unwrap_or("NA"));
                body.field(54, message.get(54).unwrap_or("1")).field(151, "0").field(14, "0").field(6, "0");
                body.field(58, "unknown order");
                self.reports += 1;
                self.send("8");
            }
        }
    }

    /// A BusinessMessageReject (j) of `message`.
    fn business_reject(&mut self, message: &Message, reason: u32, text: &str) {
        let body = &mut self.body;
        body.clear();
        body.field(45, message.seq_num().unwrap_or(0)).field(372, message.msg_type());
        if let Some(id) = message.get(11) {
            body.field(379, id);
        }
        body.field(380, reason).field(58, text);
        self.send("j");
    }

    /// Sends what `self.body` holds as an application message.
    fn send(&mut self, msg_type: &str) {
        let Some(session) = self.session.as_mut() else { return };
        if let Err(error) = session.send_app(msg_type, self.body.as_bytes(), SystemTime::now(), &mut self.actions) {
            tracing::error!(%error, "fix: the session's store failed; closing");
            self.ending = true;
        }
        self.take_actions();
    }

    /// An ExecutionReport of `order_id` as it stands, of `exec_type`, with
    /// the last fill and the ClOrdIDs of a cancel or replace.
    fn report(
        &mut self,
        order_id: OrderId,
        exec_type: char,
        last: Option<(Qty, Price, u64)>,
        change: Option<&ChangePending>,
        text: Option<&str>,
    ) {
        let Some(order) = self.orders.get(&order_id) else { return };
        let status = match exec_type {
            '4' => '4',
            'C' => 'C',
            _ => order.status(),
        };
        let body = &mut self.body;
        body.clear();
        body.field(37, order_id);
        match change {
            Some(change) => body.field(11, &change.clordid).field(41, &change.orig_clordid),
            None => body.field(11, &order.clordid),
        };
        body.field(17, ExecId(order_id, self.reports));
        body.field(150, exec_type).field(39, status).field(1, order.user).field(55, order.symbol.as_str());
        body.field(54, side_code(order.side)).field(38, order.order_qty);
        match order.order_type {
            OrderType::Limit => body.field(40, '2'),
            OrderType::Market => body.field(40, '1'),
        };
        if let Some(price) = order.price {
            body.field(44, price);
        }
        body.field(59, tif_code(order.tif));
        if let Some((qty, price, trade_id)) = last {
            body.field(32, qty).field(31, price).field(880, trade_id);
        }
        body.field(151, if matches!(status, '4' | 'C') { 0 } else { order.leaves });
        body.field(14, order.cum_qty).field(6, AvgPx(order.notional, order.cum_qty));
        if let Some(text) = text {
            body.field(58, text);
        }
        self.reports += 1;
        self.send("8");
    }

    /// An ExecutionReport of a new order the engine or the gateway refused.
    fn rejected_new(&mut self, pending: NewPending, reason: u32, text: &str) {
        let user = self.identity.map_or(0, |(user, _)| user);
        let body = &mut self.body;
        body.clear();
        body.field(37, "NONE").field(11, &pending.clordid).field(17, ExecId(0, self.reports));
        body.field(150, '8').field(39, '8').field(1, user).field(55, pending.symbol.as_str());
        body.field(54, side_code(pending.side)).field(38, pending.qty);
        body.field(40, if pending.order_type == OrderType::Market { '1' } else { '2' });
        if let Some(price) = pending.price {
            body.field(44, price);
        }
        body.field(59, tif_code(pending.tif)).field(151, 0).field(14, 0).field(6, 0);
        body.field(103, reason).field(58, text);
        self.reports += 1;
        self.send("8");
    }

    /// An OrderCancelReject (9) of a cancel or replace.
    fn cancel_rejected(&mut self, change: ChangePending, order_id: Option<OrderId>, reason: u32, text: &str) {
        let status = order_id.and_then(|id| self.orders.get(&id)).map_or('8', FixOrder::status);
        let body = &mut self.body;
        body.clear();
        match order_id {
            Some(id) => body.field(37, id),
            None => body.field(37, "NONE"),
        };
        body.field(11, &change.clordid).field(41, &change.orig_clordid).field(39, status);
        body.field(434, if change.replace.is_some() { '2' } else { '1' }).field(102, reason).field(58, text);
        self.send("9");
    }

    /// A driver's event, as FIX messages.
    fn event(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::Accepted { order_id, user, symbol, side, order_type, tif, qty, price, cid } => {
                let pending = cid.and_then(|cid| self.pending_new.remove(&cid));
                let clordid = match (&pending, cid) {
                    (Some(p), _) => p.clordid.clone(),
                    (None, Some(cid)) => cid.as_str().to_string(),
                    (None, None) => order_id.to_string(),
                };
                let order = FixOrder {
                    user,
                    clordid,
                    former: Vec::new(),
                    symbol,
                    side,
                    order_type,
                    tif,
                    price,
                    order_qty: qty,
                    cum_qty: 0,
                    notional: 0,
                    leaves: qty,
                };
                self.know(order_id, cid, order);
                self.report(order_id, '0', None, None, None);
            }
            ClientEvent::Rejected { reason, order_id, cid } => {
                let text = reason.as_str();
                match (order_id, cid) {
                    (None, Some(cid)) if self.pending_new.contains_key(&cid) => {
                        let pending = self.pending_new.remove(&cid).expect("Invariant: just looked up");
                        self.rejected_new(pending, ord_rej_reason(reason), text);
                    }
                    (Some(id), Some(cid)) if self.pending_change.contains_key(&cid) => {
                        let change = self.take_change(cid).expect("Invariant: a pending change is there");
                        let code = if reason == RejectReason::UnknownOrder { 1 } else { 99 };
                        self.cancel_rejected(change, Some(id), code, text);
                    }
                    _ => {
                        // A mass cancel, halt or resume refused, or a command of another session.
                        if let Some((clordid, kind)) = self.pending_mass.pop_front() {
                            self.mass_report(&clordid, &kind, None, Some(text));
                        }
                    }
                }
            }
            ClientEvent::Fill { symbol, trade_id, price, qty, order_id, side, remaining, cid, .. } => {
                if !self.orders.contains_key(&order_id) {
                    // First heard of here (entered through another door).
                    let order = FixOrder {
                        user: 0,
                        clordid: cid.map_or_else(|| order_id.to_string(), |c| c.as_str().to_string()),
                        former: Vec::new(),
                        symbol,
                        side,
                        order_type: OrderType::Limit,
                        tif: Tif::Gtc,
                        price: Some(price),
                        order_qty: qty + remaining,
                        cum_qty: 0,
                        notional: 0,
                        leaves: qty + remaining,
                    };
                    self.know(order_id, cid, order);
                }
                let Some(order) = self.orders.get_mut(&order_id) else { return };
                order.cum_qty += qty;
                order.notional += u128::from(price) * u128::from(qty);
                order.leaves = remaining;
                order.order_qty = order.order_qty.max(order.cum_qty + remaining);
                self.report(order_id, 'F', Some((qty, price, trade_id)), None, None);
                if remaining == 0 {
                    self.forget(order_id);
                }
            }
            ClientEvent::Cancelled { order_id, reason, remaining, cid } => {
                // Only a cancel answers a pending cancel (an expiry, a self-trade
                // or a mass cancel does not; the cancel is then refused, later).
                let change = cid.filter(|_| reason == CancelReason::User).and_then(|cid| self.take_change(cid));
                if let Some(order) = self.orders.get_mut(&order_id) {
                    order.leaves = remaining;
                }
                let (exec_type, text) = match reason {
                    CancelReason::User => ('4', None),
                    CancelReason::Ioc => ('C', Some("ioc: the rest expired")),
                    CancelReason::Fok => ('C', Some("fok: could not fill completely")),
                    CancelReason::Stp => ('4', Some("self-trade prevention")),
                    CancelReason::Mass => ('4', Some("mass cancel")),
                };
                self.report(order_id, exec_type, None, change.as_ref(), text);
                self.forget(order_id);
            }
            ClientEvent::Modified { order_id, price, qty, cid } => {
                let change = cid.and_then(|cid| self.take_change(cid));
                if let Some(order) = self.orders.get_mut(&order_id) {
                    order.price = Some(price);
                    order.leaves = qty;
                    order.order_qty = order.cum_qty + qty;
                    if let (Some(change), Some(cid)) = (&change, cid) {
                        let former = std::mem::replace(&mut order.clordid, change.clordid.clone());
                        order.former.push(former);
                        self.engine_cid.insert(change.clordid.clone(), cid);
                    }
                }
                self.report(order_id, '5', None, change.as_ref(), None);
            }
            ClientEvent::MassCancelled { count, .. } => {
                if let Some((clordid, kind)) = self.pending_mass.pop_front() {
                    self.mass_report(&clordid, &kind, Some(count), None);
                }
            }
            ClientEvent::Status { .. } => {}
        }
    }

    /// An OrderMassCancelReport (r): `count` cancelled, or refused with `text`.
    fn mass_report(&mut self, clordid: &str, kind: &str, count: Option<u64>, text: Option<&str>) {
        let body = &mut self.body;
        body.clear();
        body.field(37, "MASS").field(11, clordid).field(530, kind);
        match count {
            Some(count) => body.field(531, kind).field(533, count),
            None => body.field(531, '0').field(532, 99),
        };
        if let Some(text) = text {
            body.field(58, text);
        }
        self.send("r");
    }

    /// The order is gone: forget it and the ClOrdIDs that named it.
    fn forget(&mut self, order_id: OrderId) {
        let Some(order) = self.orders.remove(&order_id) else { return };
        for clordid in order.former.iter().chain([&order.clordid]) {
            if let Some(cid) = self.engine_cid.remove(clordid) {
                self.order_of.remove(&cid);
            }
        }
    }

    /// The driver refused a request before the engine.
    fn refused(&mut self, reason: GatewayReason, order_id: Option<OrderId>, cid: Option<Cid>) {
        let text = reason.as_str();
        if let Some(cid) = cid {
            if let Some(change) = self.take_change(cid) {
                let code = if reason == GatewayReason::UnknownCid { 1 } else { 99 };
                return self.cancel_rejected(change, order_id, code, text);
            }
            if let Some(pending) = self.pending_new.remove(&cid) {
                return self.rejected_new(pending, gateway_rej_reason(reason), text);
            }
        }
        // Nothing names the request (over the rate, say): a business reject.
        let body = &mut self.body;
        body.clear();
        body.field(45, 0).field(372, "D").field(380, 0).field(58, text);
        self.send("j");
    }

    /// Orders resting at logon, from the `orders` answer.
    fn learn(&mut self, orders: Vec<OrderInfo>) {
        let user = self.identity.map_or(0, |(user, _)| user);
        for info in orders {
            let clordid = info.cid.map_or_else(|| info.order_id.to_string(), |c| c.as_str().to_string());
            let order = FixOrder {
                user,
                clordid,
                former: Vec::new(),
                symbol: info.symbol,
                side: info.side,
                order_type: OrderType::Limit,
                tif: Tif::Gtc,
                price: Some(info.price),
                order_qty: info.qty,
                cum_qty: 0,
                notional: 0,
                leaves: info.qty,
            };
            self.know(info.order_id, info.cid, order);
        }
    }
}

fn side_code(side: Side) -> char {
    match side {
        Side::Buy => '1',
        Side::Sell => '2',
    }
}

fn tif_code(tif: Tif) -> char {
    match tif {
        Tif::Gtc => '1',
        Tif::Ioc => '3',
        Tif::Fok => '4',
    }
}

/// A whole number (`100`, or `100.0` with zeros after the point).
fn parse_qty(text: &str) -> Option<u64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b == b'0') {
        return None;
    }
    whole.parse().ok()
}

/// ExecID (17): the order's id and the report's number in this session
/// (unique in the session; 0 for an order the engine never took).
struct ExecId(OrderId, u64);

impl std::fmt::Display for ExecId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// AvgPx (6): Σ price × qty / CumQty, to at most 8 decimals, without float error.
struct AvgPx(u128, Qty);

impl std::fmt::Display for AvgPx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (notional, cum) = (self.0, u128::from(self.1));
        if cum == 0 {
            return f.write_str("0");
        }
        let (whole, mut rest) = (notional / cum, notional % cum);
        write!(f, "{whole}")?;
        if rest > 0 {
            f.write_str(".")?;
            for _ in 0..8 {
                rest *= 10;
                write!(f, "{}", rest / cum)?;
                rest %= cum;
                if rest == 0 {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// OrdRejReason (103) of an engine rejection.
fn ord_rej_reason(reason: RejectReason) -> u32 {
    match reason {
        RejectReason::InvalidSymbol => 1,
        RejectReason::Halted => 2,
        RejectReason::TooManyOrders => 3,
        RejectReason::UnknownOrder => 5,
        RejectReason::DuplicateOrderId => 6,
        RejectReason::InvalidTif | RejectReason::WouldTake => 11,
        RejectReason::InvalidQty => 13,
        RejectReason::Malformed | RejectReason::InvalidPrice | RejectReason::TooManySymbols => 99,
    }
}

/// OrdRejReason (103) of a gateway refusal.
fn gateway_rej_reason(reason: GatewayReason) -> u32 {
    match reason {
        GatewayReason::KillSwitch => 0,
        GatewayReason::InvalidSymbol => 1,
        GatewayReason::Unavailable => 2,
        GatewayReason::DuplicateCid => 6,
        GatewayReason::InvalidTif => 11,
        GatewayReason::InvalidLot => 13,
        GatewayReason::InvalidTick => 18,
        _ => 99,
    }
}

impl Transport for Fix {
    async fn recv(&mut self) -> io::Result<Option<Incoming>> {
        loop {
            if let Some(incoming) = self.ready.pop_front() {
                return Ok(Some(incoming));
            }
            if !self.io.output.is_empty() {
                return Ok(Some(Incoming::Flush));
            }
            if self.ending {
                return Ok(None);
            }
            if self.parse_buffered() {
                self.note_read();
                continue;
            }
            self.io.compact();
            if !self.io.read_more().await? {
                return Ok(None);
            }
        }
    }

    fn next_buffered(&mut self) -> Option<Request> {
        if self.ready.is_empty() && !self.ending {
            self.parse_buffered();
        }
        match self.ready.front()? {
            Incoming::Request(Request::Login(_) | Request::Logout) => None,
            Incoming::Request(_) => match self.ready.pop_front() {
                Some(Incoming::Request(request)) => Some(request),
                _ => None,
            },
            _ => None,
        }
    }

    fn encode(&mut self, reply: &Reply) {
        match reply {
            // The Logon was answered when it came: the transport had checked who it is.
            Reply::LoginAccepted { .. } | Reply::Pong | Reply::ResumeDone { .. } | Reply::ResumeTooOld { .. } => {}
            Reply::LoginRejected { reason } => self.goodbye(&format!("logon refused: {}", reason.as_str())),
            Reply::Goodbye { reason } => self.goodbye(reason),
            Reply::Event { event, .. } => self.event(*event),
            Reply::Rejected { reason, order_id, cid } => self.refused(*reason, *order_id, *cid),
            Reply::Orders(orders) => self.learn(orders.clone()),
        }
        self.drain_output();
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.drain_output();
        self.io.flush().await?;
        if let Some(session) = self.session.as_mut() {
            session.store().flush()?;
        }
        Ok(())
    }

    fn abandon(&mut self) {
        self.io.abandon();
    }

    fn protocol(&self) -> Protocol {
        Protocol::Fix
    }

    fn authenticated(&self) -> Option<Role> {
        self.identity.map(|(_, role)| role)
    }

    fn on_tick(&mut self) -> Result<(), String> {
        let Some(session) = self.session.as_mut() else { return Ok(()) };
        session.on_timer(SystemTime::now(), Instant::now(), &mut self.actions);
        let ended = self.actions.iter().find_map(|a| match a {
            FixAction::Disconnect(reason) => Some(reason.clone()),
            _ => None,
        });
        self.take_actions();
        self.drain_output();
        match ended {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }
}

impl Drop for Fix {
    fn drop(&mut self) {
        // The store is closed (flushed) before another connection may open it.
        drop(self.session.take());
        if let Some(key) = self.holds.take() {
            self.active.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        }
    }
}

impl Fix {
    /// Moves what the session wrote to the connection's output.
    fn drain_output(&mut self) {
        if let Some(session) = self.session.as_mut() {
            let output = session.output();
            if !output.is_empty() {
                self.io.output.extend_from_slice(output);
                session.clear_output();
            }
        }
    }

    /// A Logout with `text`; the session ends once it is written.
    fn goodbye(&mut self, text: &str) {
        if let Some(session) = self.session.as_mut() {
            session.logout(text, SystemTime::now(), &mut self.actions);
            self.actions.clear();
        }
    }
}
