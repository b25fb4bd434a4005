//! The engine's one thread of control over the network: the data path.
//!
//! Sessions (tokio tasks, one per connection) decode what their clients
//! send and hand it here through one bounded channel. [`Driver::run`]
//! loops: take every request that has arrived, turn each into an engine
//! command (a trader's commands are its own; a cid becomes the order it
//! names), submit whatever gathered as one batch (never waiting for more),
//! then route every event the engine has released, which is to say made
//! durable, to the sessions it concerns. It never waits for a client: each
//! session has a bounded outbox, and one that is full is a session that
//! stopped reading, which is dropped with a reason.
//!
//! Who gets what: the answer to a command (`accepted`, `rejected`,
//! `modified`, `mass_cancelled`, `status`) goes to the session that sent it;
//! a trade to every session of its maker and of its taker, each seeing its
//! own side; a `cancelled` to every session of the order's owner.

use std::collections::{HashMap, VecDeque};

use foldhash::fast::RandomState;
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;

use matching_core::{Action, Event, EventKind, OrderId, Price, Qty, Seq, Side, Symbol, Trade, UserId};
use matching_pipeline::{Engine, EventReader, Output, Recent, RecoveredEvent, RecoveredEvents, Stopped};
use matching_proto::session::{Cid, ClientEvent, GatewayReason, Liquidity, OrderInfo, Reply, Request};
use tokio::sync::{Notify, mpsc};

use crate::Books;
use crate::md::{MdFeed, MdInput};
use crate::users::Role;

pub(crate) type SessionId = u64;

/// How a session is told it is being dropped.
#[derive(Default)]
pub(crate) struct Kill {
    reason: OnceLock<String>,
    notify: Notify,
}

impl Kill {
    /// Drops the session for `reason` (the first reason given stands).
    pub(crate) fn kill(&self, reason: String) {
        let _ = self.reason.set(reason);
        self.notify.notify_one();
    }

    pub(crate) fn reason(&self) -> Option<&str> {
        self.reason.get().map(String::as_str)
    }

    /// Resolves once the session is to be dropped.
    pub(crate) async fn killed(&self) {
        if self.reason.get().is_none() {
            self.notify.notified().await;
        }
    }
}

/// A reply on its way to a session. `answer`: it is the answer to one of
/// the session's requests (each request gets exactly one), which lets the
/// session bound how many of its requests are unanswered.
pub(crate) struct Outgoing {
    pub(crate) reply: Reply,
    pub(crate) answer: bool,
}

/// Where the driver sends a session's replies: a batch per pass of the
/// driver (one wake-up of the session, however many replies), and how many
/// replies are queued in all, which the driver bounds.
pub(crate) struct Outbox {
    pub(crate) replies: mpsc::UnboundedSender<Vec<Outgoing>>,
    /// Replies sent and not yet taken by the session.
    pub(crate) queued: Arc<AtomicUsize>,
    pub(crate) kill: Arc<Kill>,
}

/// What sessions tell the driver.
pub(crate) enum Inbound {
    /// A session logged in.
    Open {
        session: SessionId,
        user: UserId,
        role: Role,
        cancel_on_disconnect: bool,
        /// The login's `resume_after`.
        resume_after: Option<Seq>,
        outbox: Outbox,
    },
    /// Requests of a session, in order (what one read of its socket brought).
    Requests { session: SessionId, requests: Vec<Request> },
    /// A session ended (its client left, or it was dropped).
    Closed { session: SessionId },
    /// Stop taking requests, finish what is queued, snapshot, stop.
    Shutdown,
}

/// The sessions' end of the driver's channel.
#[derive(Clone)]
pub(crate) struct DriverHandle {
    tx: mpsc::Sender<Inbound>,
    thread: Thread,
}

impl DriverHandle {
    pub(crate) fn new(tx: mpsc::Sender<Inbound>, thread: Thread) -> DriverHandle {
        DriverHandle { tx, thread }
    }

    /// Hands `message` to the driver (waiting for room: back-pressure on
    /// the client, never on the engine); `false` once the driver is gone.
    pub(crate) async fn send(&self, message: Inbound) -> bool {
        let sent = self.tx.send(message).await.is_ok();
        self.thread.unpark();
        sent
    }
}

struct Session {
    user: UserId,
    role: Role,
    cancel_on_disconnect: bool,
    outbox: Outbox,
    /// Replies of this pass, sent together at its end.
    staged: Vec<Outgoing>,
}

/// What a command was, as far as its answer goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Answered by its `cancelled` (or `rejected`).
    Cancel,
    /// Answered by `mass_cancelled` (its `cancelled`s come first).
    MassCancel,
    /// Answered by its first event.
    Other,
}

/// A command submitted (or about to be) whose events have not all passed.
struct Pending {
    seq: Seq,
    /// `None`: the driver's own (a cancel-on-disconnect).
    session: Option<SessionId>,
    /// Whose command it is (its answer is that user's event).
    user: UserId,
    /// A new order's owner and cid.
    cid: Option<(UserId, Cid)>,
    kind: Kind,
    /// Whether its answer went out.
    answered: bool,
}

/// A resting order, as the events told it.
struct Live {
    user: UserId,
    symbol: Symbol,
    side: Side,
    /// `None` while a market order is in flight.
    price: Option<Price>,
    qty: Qty,
    cid: Option<Cid>,
}

/// The last events of every user, in `seq` order, within a bound: what a
/// login's `resume_after` replays (in memory; after a restart, rebuilt from
/// what recovery replayed).
type History = Recent<(UserId, ClientEvent)>;

/// A trade as each side sees it: `(maker's user, maker's fill)`, then the taker's.
fn fills(trade: &Trade, maker_cid: Option<Cid>, taker_cid: Option<Cid>) -> [(UserId, ClientEvent); 2] {
    let fill = |order_id, side, liquidity, remaining, cid| ClientEvent::Fill {
        symbol: trade.symbol,
        trade_id: trade.trade_id,
        price: trade.price,
        qty: trade.qty,
        order_id,
        side,
        liquidity,
        remaining,
        cid,
    };
    [
        (
            trade.maker_user,
            fill(trade.maker_order_id, trade.taker_side.opposite(), Liquidity::Maker, trade.maker_remaining, maker_cid),
        ),
        (
            trade.taker_user,
            fill(trade.taker_order_id, trade.taker_side, Liquidity::Taker, trade.taker_remaining, taker_cid),
        ),
    ]
}

/// What a restart can still replay for `resume_after`: the events of the
/// journal's records after the snapshot (as the engine kept them), each as
/// its owner saw it, with the cids of the orders (`kept`: those of the
/// orders resting at the snapshot).
fn recovered_history(recovered: &RecoveredEvents, kept: &[(OrderId, UserId, Cid)], capacity: usize) -> History {
    let mut history = History::new(capacity, recovered.complete_after());
    let mut cid_of: FxHashMap<OrderId, Cid> = kept.iter().map(|&(order_id, _, cid)| (order_id, cid)).collect();
    for &(_, RecoveredEvent { event, user: commander, cid }) in recovered.iter() {
        let seq = event.seq;
        match event.kind {
            EventKind::Accepted { order_id, user, symbol, side, order_type, tif, qty, price } => {
                if let Some(cid) = cid {
                    cid_of.insert(order_id, cid);
                }
                let accepted = ClientEvent::Accepted { order_id, user, symbol, side, order_type, tif, qty, price, cid };
                history.push(seq, (user, accepted));
            }
            EventKind::Rejected { reason, order_id } => {
                let cid = match order_id {
                    Some(order_id) => cid_of.get(&order_id).copied(),
                    None => cid,
                };
                history.push(seq, (commander, ClientEvent::Rejected { reason, order_id, cid }));
            }
            EventKind::Trade(trade) => {
                let sides = fills(
                    &trade,
                    cid_of.get(&trade.maker_order_id).copied(),
                    cid_of.get(&trade.taker_order_id).copied(),
                );
                for (user, fill) in sides {
                    if let ClientEvent::Fill { order_id, remaining: 0, .. } = fill {
                        cid_of.remove(&order_id);
                    }
                    history.push(seq, (user, fill));
                }
            }
            EventKind::Cancelled { order_id, user, reason, remaining, .. } => {
                let cid = cid_of.remove(&order_id);
                history.push(seq, (user, ClientEvent::Cancelled { order_id, reason, remaining, cid }));
            }
            EventKind::Modified { order_id, user, price, qty, .. } => {
                let cid = cid_of.get(&order_id).copied();
                history.push(seq, (user, ClientEvent::Modified { order_id, price, qty, cid }));
            }
            EventKind::MassCancelled { user, count } => {
                history.push(seq, (commander, ClientEvent::MassCancelled { user, count }));
            }
            EventKind::Status { symbol, status } => {
                history.push(seq, (commander, ClientEvent::Status { symbol, status }))
            }
        }
    }
    history
}

/// One resting order's cid in a snapshot's annex: order id, user (u64 LE
/// each), the cid's length, the cid zero-padded to 20 bytes.
const ANNEX_ENTRY: usize = 8 + 8 + 1 + matching_core::CID_LEN_MAX;

/// The annex of the shutdown snapshot: every resting order's cid.
fn encode_cids(routes: &Routes) -> Vec<u8> {
    let mut entries: Vec<(OrderId, UserId, Cid)> =
        routes.orders.iter().filter_map(|(&id, order)| Some((id, order.user, order.cid?))).collect();
    entries.sort_unstable_by_key(|&(id, _, _)| id);
    let mut out = Vec::with_capacity(entries.len() * ANNEX_ENTRY);
    for (order_id, user, cid) in entries {
        out.extend_from_slice(&order_id.to_le_bytes());
        out.extend_from_slice(&user.to_le_bytes());
        let (len, padded) = cid.padded();
        out.push(len);
        out.extend_from_slice(&padded);
    }
    out
}

/// What [`encode_cids`] wrote; an entry that does not read is skipped (the
/// annex is checksummed with the snapshot, so that is a bug, not damage).
fn decode_cids(annex: &[u8]) -> Vec<(OrderId, UserId, Cid)> {
    annex
        .chunks_exact(ANNEX_ENTRY)
        .filter_map(|entry| {
            let order_id = u64::from_le_bytes(entry[0..8].try_into().ok()?);
            let user = u64::from_le_bytes(entry[8..16].try_into().ok()?);
            let cid = Cid::from_padded(entry[16], entry[17..].try_into().ok()?)?;
            Some((order_id, user, cid))
        })
        .collect()
}

/// Everything the driver knows besides the engine.
struct Routes {
    sessions: HashMap<SessionId, Session>,
    by_user: HashMap<UserId, Vec<SessionId>>,
    /// In `seq` order.
    pending: VecDeque<Pending>,
    /// Keyed by engine-assigned ids and user ids: a fast hash is safe. Cids
    /// are the clients' choice: their map has a keyed hash (a random key per process).
    orders: FxHashMap<OrderId, Live>,
    user_orders: FxHashMap<UserId, FxHashSet<OrderId>>,
    cids: HashMap<(UserId, Cid), OrderId, RandomState>,
    /// Replies a session's outbox holds.
    outbox: usize,
    /// Sessions to drop once the current pass is over: `(session, reason)`.
    dropped: Vec<(SessionId, String)>,
    /// Sessions with staged replies.
    staged: Vec<SessionId>,
    /// Recent events of each user, for a login's `resume_after`.
    history: History,
    /// `orders` and `ping` wait for every command before them to pass, so
    /// an answer reflects them: `(the seq after them, session, query)`.
    queries: VecDeque<(Seq, SessionId, Request)>,
}

pub(crate) struct Driver {
    engine: Engine,
    reader: EventReader<()>,
    inbound: mpsc::Receiver<Inbound>,
    routes: Routes,
    /// Commands not yet taken by the engine, in order, and the client order
    /// id of each (journaled with it).
    batch: Vec<Action>,
    batch_cids: Vec<Option<Cid>>,
    /// Most commands submitted in one go.
    batch_max: usize,
    shutting_down: bool,
    /// Market data: every released event goes to its thread too.
    md: Option<MdFeed>,
}

/// How the driver ended.
pub(crate) enum Ended {
    /// Shut down as asked: the engine, for its final snapshot and join, and
    /// the annex that snapshot keeps (the resting orders' cids).
    Shutdown(Engine, Vec<u8>),
    /// The engine stopped on its own (a failed disk, a dead shard).
    EngineStopped(Stopped, Engine),
}

impl Driver {
    /// A driver over a started engine; learns the resting orders from it.
    pub(crate) fn new(
        engine: Engine,
        reader: EventReader<()>,
        inbound: mpsc::Receiver<Inbound>,
        limits: &crate::Limits,
        books: &Books,
        md: Option<MdFeed>,
    ) -> Result<Driver, Stopped> {
        let (outbox, batch_max, history) = (limits.outbox, limits.batch, limits.resume_events);
        let mut routes = Routes {
            sessions: HashMap::new(),
            by_user: HashMap::new(),
            pending: VecDeque::new(),
            orders: FxHashMap::default(),
            user_orders: FxHashMap::default(),
            cids: HashMap::default(),
            outbox,
            dropped: Vec::new(),
            staged: Vec::new(),
            queries: VecDeque::new(),
            history: History::new(history, engine.next_seq() - 1),
        };
        for (symbol, _, orders) in books {
            for order in orders {
                let live = Live {
                    user: order.user,
                    symbol: *symbol,
                    side: order.side,
                    price: Some(order.price),
                    qty: order.qty,
                    cid: None,
                };
                routes.rest(order.order_id, live);
            }
        }
        // The cids of the resting orders: those the last snapshot kept, and
        // those of the new orders journaled after it.
        if let Some(report) = engine.recovery() {
            let kept = decode_cids(crate::split_annex(&report.snapshot_annex).0);
            routes.history = recovered_history(engine.recovered_events(), &kept, history);
            for (order_id, user, cid) in kept.into_iter().chain(report.new_order_cids.iter().copied()) {
                if let Some(order) = routes.orders.get_mut(&order_id).filter(|o| o.user == user) {
                    order.cid = Some(cid);
                    routes.cids.insert((user, cid), order_id);
                }
            }
        }
        Ok(Driver {
            engine,
            reader,
            inbound,
            routes,
            batch: Vec::new(),
            batch_cids: Vec::new(),
            batch_max,
            shutting_down: false,
            md,
        })
    }

    /// The data path: requests in, batches to the engine, events out.
    pub(crate) fn run(mut self) -> Ended {
        loop {
            let mark = self.reader.mark();
            let took = self.take_requests();
            if let Err(stopped) = self.submit() {
                return self.engine_stopped(stopped);
            }
            let Driver { reader, routes, md, .. } = &mut self;
            let delivered = reader.poll(|output| {
                if let Output::Event(event) = output {
                    routes.route(event);
                    if let Some(md) = md.as_mut() {
                        md.push(MdInput::Event(*event));
                    }
                }
            });
            if delivered > 0
                && let Some(md) = self.md.as_mut()
            {
                md.push(MdInput::Passed(self.reader.next_seq()));
                md.wake();
            }
            self.routes.answer_queries(self.reader.next_seq());
            self.routes.flush();
            self.routes.drop_sessions(&mut self.batch, &mut self.batch_cids, self.engine.next_seq());
            if let Some(stopped) = self.reader.stopped() {
                return self.engine_stopped(stopped);
            }
            if self.shutting_down && self.batch.is_empty() && self.reader.next_seq() == self.engine.next_seq() {
                self.routes.goodbye_all("the server is shutting down");
                let annex = encode_cids(&self.routes);
                return Ended::Shutdown(self.engine, annex);
            }
            if took == 0 && delivered == 0 {
                let Driver { reader, inbound, .. } = &mut self;
                reader.wait_since(mark, || !inbound.is_empty());
            }
        }
    }

    /// Takes what the sessions sent, up to a batch; returns how many messages.
    fn take_requests(&mut self) -> usize {
        let mut taken = 0;
        while self.batch.len() < self.batch_max {
            let Ok(message) = self.inbound.try_recv() else { break };
            taken += 1;
            match message {
                Inbound::Open { session, user, role, cancel_on_disconnect, resume_after, outbox } => {
                    self.routes.by_user.entry(user).or_default().push(session);
                    self.routes
                        .sessions
                        .insert(session, Session { user, role, cancel_on_disconnect, outbox, staged: Vec::new() });
                    if let Some(after) = resume_after {
                        self.routes.resume(session, user, after, self.reader.next_seq() - 1);
                    }
                }
                Inbound::Requests { session, requests } => {
                    for request in requests {
                        let next_seq = self.engine.next_seq() + self.batch.len() as Seq;
                        if self.shutting_down {
                            self.routes.reject(session, GatewayReason::Unavailable, None, None);
                        } else if let Some((action, cid)) = self.routes.request(session, request, next_seq) {
                            self.batch.push(action);
                            self.batch_cids.push(cid);
                        }
                    }
                }
                Inbound::Closed { session } => self.routes.dropped.push((session, String::new())),
                Inbound::Shutdown => self.shutting_down = true,
            }
        }
        taken
    }

    /// Submits what has gathered, as much as the engine takes now.
    fn submit(&mut self) -> Result<(), Stopped> {
        if !self.batch.is_empty() {
            let (taken, _) = self.engine.try_submit_batch_with_cids(&self.batch, &self.batch_cids)?;
            self.batch.drain(..taken);
            self.batch_cids.drain(..taken);
        }
        Ok(())
    }

    fn engine_stopped(mut self, stopped: Stopped) -> Ended {
        self.routes.goodbye_all(&stopped.to_string());
        Ended::EngineStopped(stopped, self.engine)
    }
}

impl Routes {
    /// Stages `reply` for `session`, if it is still there.
    fn send(&mut self, session: SessionId, reply: Reply, answer: bool) {
        let Some(state) = self.sessions.get_mut(&session) else { return };
        if state.staged.is_empty() {
            self.staged.push(session);
        }
        state.staged.push(Outgoing { reply, answer });
    }

    /// Sends each session the replies of this pass, in one batch; a session
    /// whose client has not taken `outbox` replies is dropped.
    fn flush(&mut self) {
        for session in std::mem::take(&mut self.staged) {
            let Some(state) = self.sessions.get_mut(&session) else { continue };
            let batch = std::mem::take(&mut state.staged);
            let queued = state.outbox.queued.fetch_add(batch.len(), Ordering::AcqRel) + batch.len();
            if queued > self.outbox {
                self.dropped.push((session, format!("slow reader: {} replies waiting unread", self.outbox)));
                continue;
            }
            // An error: the session is ending, its `Closed` is on the way.
            let _ = state.outbox.replies.send(batch);
        }
    }

    /// The answer to a request of `session`.
    fn reply(&mut self, session: SessionId, reply: Reply) {
        self.send(session, reply, true);
    }

    /// Sends `reply` to every session of `user`; to `answering` as its
    /// answer (whether or not it is one of them).
    fn send_user(&mut self, user: UserId, answering: Option<SessionId>, reply: impl Fn() -> Reply) {
        let sessions = self.by_user.get(&user).cloned().unwrap_or_default();
        for &session in &sessions {
            self.send(session, reply(), Some(session) == answering);
        }
        if let Some(session) = answering.filter(|s| !sessions.contains(s)) {
            self.send(session, reply(), true);
        }
    }

    fn reject(&mut self, session: SessionId, reason: GatewayReason, order_id: Option<OrderId>, cid: Option<Cid>) {
        self.reply(session, Reply::Rejected { reason, order_id, cid });
    }

    /// The engine command for `request` from `session`, with its `seq` to
    /// be `seq`; or `None` (answered here, or refused).
    fn request(&mut self, session: SessionId, request: Request, seq: Seq) -> Option<(Action, Option<Cid>)> {
        let state = self.sessions.get(&session)?;
        let (me, role) = (state.user, state.role);
        // A trader acts as itself, whatever `user` it wrote.
        let as_user = |user: UserId| if role == Role::Operator { user } else { me };
        let (action, cid) = match request {
            Request::Ping | Request::Orders => {
                self.queries.push_back((seq, session, request));
                return None;
            }
            // The session answers these itself.
            Request::Login(_) | Request::Logout => return None,
            Request::Command { action, cid } => (action, cid),
            Request::CancelCid { user, cid } => match self.cids.get(&(as_user(user), cid)) {
                Some(&order_id) => (Action::Cancel { user: as_user(user), order_id }, None),
                None => {
                    self.reject(session, GatewayReason::UnknownCid, None, Some(cid));
                    return None;
                }
            },
            Request::ModifyCid { user, cid, price, qty } => match self.cids.get(&(as_user(user), cid)) {
                Some(&order_id) => (Action::Modify { user: as_user(user), order_id, price, qty }, None),
                None => {
                    self.reject(session, GatewayReason::UnknownCid, None, Some(cid));
                    return None;
                }
            },
        };
        let action = match action {
            Action::New(mut order) => {
                order.user = as_user(order.user);
                order.order_id = seq;
                if let Some(cid) = cid {
                    if self.cids.contains_key(&(order.user, cid)) {
                        self.reject(session, GatewayReason::DuplicateCid, None, Some(cid));
                        return None;
                    }
                    self.cids.insert((order.user, cid), seq);
                }
                Action::New(order)
            }
            Action::Cancel { user, order_id } => Action::Cancel { user: as_user(user), order_id },
            Action::Modify { user, order_id, price, qty } => {
                Action::Modify { user: as_user(user), order_id, price, qty }
            }
            Action::MassCancel { user, symbol, side } => Action::MassCancel { user: as_user(user), symbol, side },
            Action::Halt { .. } | Action::Resume { .. } if role != Role::Operator => {
                self.reject(session, GatewayReason::NotPermitted, None, None);
                return None;
            }
            other => other,
        };
        let new_cid = match (&action, cid) {
            (Action::New(order), Some(cid)) => Some((order.user, cid)),
            _ => None,
        };
        let kind = match action {
            Action::Cancel { .. } => Kind::Cancel,
            Action::MassCancel { .. } => Kind::MassCancel,
            _ => Kind::Other,
        };
        let user = action.user().unwrap_or(me);
        self.pending.push_back(Pending { seq, session: Some(session), user, cid: new_cid, kind, answered: false });
        Some((action, new_cid.map(|(_, cid)| cid)))
    }

    /// Sends `session` the events of `user` after `after`, then
    /// `resume_done`; or `resume_too_old` if some are no longer kept. Live
    /// events follow, so each event reaches it exactly once.
    fn resume(&mut self, session: SessionId, user: UserId, after: Seq, last_seq: Seq) {
        if after < self.history.complete_after() {
            let oldest = self.history.complete_after();
            return self.send(session, Reply::ResumeTooOld { oldest }, false);
        }
        let missed: Vec<(Seq, ClientEvent)> =
            self.history.after(after).filter(|(_, (u, _))| *u == user).map(|&(seq, (_, event))| (seq, event)).collect();
        for (seq, event) in missed {
            self.send(session, Reply::Event { seq, event }, false);
        }
        self.send(session, Reply::ResumeDone { last_seq }, false);
    }

    /// Answers the queries whose earlier commands have all passed (the
    /// reader is at `next_seq`).
    fn answer_queries(&mut self, next_seq: Seq) {
        while self.queries.front().is_some_and(|(after, _, _)| *after <= next_seq) {
            let Some((_, session, query)) = self.queries.pop_front() else { break };
            let Some(user) = self.sessions.get(&session).map(|s| s.user) else { continue };
            let reply = match query {
                Request::Orders => Reply::Orders(self.orders_of(user)),
                _ => Reply::Pong,
            };
            self.reply(session, reply);
        }
    }

    fn orders_of(&self, user: UserId) -> Vec<OrderInfo> {
        let Some(ids) = self.user_orders.get(&user) else { return Vec::new() };
        let mut ids: Vec<OrderId> = ids.iter().copied().collect();
        ids.sort_unstable();
        ids.iter()
            .filter_map(|id| {
                let order = self.orders.get(id)?;
                Some(OrderInfo {
                    order_id: *id,
                    cid: order.cid,
                    symbol: order.symbol,
                    side: order.side,
                    price: order.price?,
                    qty: order.qty,
                })
            })
            .collect()
    }

    /// An order accepted (its cid, if any, was taken when it was submitted).
    fn rest(&mut self, order_id: OrderId, order: Live) {
        self.user_orders.entry(order.user).or_default().insert(order_id);
        self.orders.insert(order_id, order);
    }

    /// The order is gone (filled or cancelled): its cid is free again.
    fn forget(&mut self, order_id: OrderId) -> Option<Cid> {
        let order = self.orders.remove(&order_id)?;
        if let Some(ids) = self.user_orders.get_mut(&order.user) {
            ids.remove(&order_id);
            if ids.is_empty() {
                self.user_orders.remove(&order.user);
            }
        }
        if let Some(cid) = order.cid {
            self.cids.remove(&(order.user, cid));
        }
        order.cid
    }

    /// The command `seq` came from (every earlier command has passed).
    fn origin(&mut self, seq: Seq) -> Option<&mut Pending> {
        while self.pending.front().is_some_and(|front| front.seq < seq) {
            self.pending.pop_front();
        }
        self.pending.front_mut().filter(|p| p.seq == seq)
    }

    /// One released (durable) event to the sessions it concerns.
    fn route(&mut self, event: &Event) {
        let seq = event.seq;
        // Who sent the command, and whether this event is its answer.
        let (origin, new_order, answering) = match self.origin(seq) {
            Some(pending) => {
                let answers = !pending.answered
                    && match pending.kind {
                        Kind::Cancel => matches!(event.kind, EventKind::Cancelled { .. } | EventKind::Rejected { .. }),
                        Kind::MassCancel => matches!(event.kind, EventKind::MassCancelled { .. }),
                        Kind::Other => true,
                    };
                pending.answered |= answers;
                (pending.session, pending.cid, pending.session.filter(|_| answers))
            }
            None => (None, None, None),
        };
        let new_cid = new_order.map(|(_, cid)| cid);
        let owner = self.pending.front().filter(|p| p.seq == seq).map(|p| p.user);
        let answer = |routes: &mut Routes, event: ClientEvent| {
            if let Some(user) = owner {
                routes.history.push(seq, (user, event));
            }
            if let Some(session) = origin {
                routes.send(session, Reply::Event { seq, event }, answering.is_some());
            }
        };
        match event.kind {
            EventKind::Accepted { order_id, user, symbol, side, order_type, tif, qty, price } => {
                self.rest(order_id, Live { user, symbol, side, price, qty, cid: new_cid });
                let event =
                    ClientEvent::Accepted { order_id, user, symbol, side, order_type, tif, qty, price, cid: new_cid };
                answer(self, event);
            }
            EventKind::Rejected { reason, order_id } => {
                // A refused new order frees its cid.
                let cid = match (order_id, new_order) {
                    (Some(id), _) => self.orders.get(&id).and_then(|o| o.cid),
                    (None, Some(key)) => {
                        if self.cids.get(&key) == Some(&seq) {
                            self.cids.remove(&key);
                        }
                        new_cid
                    }
                    (None, None) => None,
                };
                answer(self, ClientEvent::Rejected { reason, order_id, cid });
            }
            EventKind::Trade(trade) => {
                let cid_of = |order_id| self.orders.get(&order_id).and_then(|o| o.cid);
                let sides = fills(&trade, cid_of(trade.maker_order_id), cid_of(trade.taker_order_id));
                for (user, fill) in sides {
                    let ClientEvent::Fill { order_id, remaining, .. } = fill else { continue };
                    if let Some(order) = self.orders.get_mut(&order_id) {
                        order.qty = remaining;
                    }
                    if remaining == 0 {
                        self.forget(order_id);
                    }
                    self.history.push(seq, (user, fill));
                    self.send_user(user, None, || Reply::Event { seq, event: fill });
                }
            }
            EventKind::Cancelled { order_id, user, reason, remaining, .. } => {
                let cid = self.forget(order_id);
                let event = ClientEvent::Cancelled { order_id, reason, remaining, cid };
                self.history.push(seq, (user, event));
                self.send_user(user, answering, || Reply::Event { seq, event });
            }
            EventKind::Modified { order_id, price, qty, .. } => {
                let cid = self.orders.get_mut(&order_id).and_then(|order| {
                    order.price = Some(price);
                    order.qty = qty;
                    order.cid
                });
                answer(self, ClientEvent::Modified { order_id, price, qty, cid });
            }
            EventKind::MassCancelled { user, count } => answer(self, ClientEvent::MassCancelled { user, count }),
            EventKind::Status { symbol, status } => answer(self, ClientEvent::Status { symbol, status }),
        }
    }

    /// Drops the sessions that ended or must go; a user's last session that
    /// asked for cancel-on-disconnect leaves a mass cancel of its orders.
    fn drop_sessions(&mut self, batch: &mut Vec<Action>, batch_cids: &mut Vec<Option<Cid>>, next_seq: Seq) {
        for (session, reason) in std::mem::take(&mut self.dropped) {
            let Some(state) = self.sessions.remove(&session) else { continue };
            if !reason.is_empty() {
                state.outbox.kill.kill(reason);
            }
            let sessions = self.by_user.entry(state.user).or_default();
            sessions.retain(|s| *s != session);
            let others_cancel = sessions.iter().any(|s| self.sessions.get(s).is_some_and(|o| o.cancel_on_disconnect));
            if sessions.is_empty() {
                self.by_user.remove(&state.user);
            }
            if state.cancel_on_disconnect && !others_cancel {
                let seq = next_seq + batch.len() as Seq;
                self.pending.push_back(Pending {
                    user: state.user,
                    seq,
                    session: None,
                    cid: None,
                    kind: Kind::MassCancel,
                    answered: false,
                });
                batch.push(Action::MassCancel { user: state.user, symbol: None, side: None });
                batch_cids.push(None);
            }
        }
    }

    fn goodbye_all(&mut self, reason: &str) {
        self.flush();
        for state in self.sessions.values() {
            state.outbox.kill.kill(reason.to_string());
        }
    }
}
