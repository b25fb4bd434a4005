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

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use foldhash::fast::RandomState;
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;

use matching_core::{Action, Event, EventKind, OrderId, Price, Qty, Seq, Side, Symbol, Trade, TradingStatus, UserId};
use matching_pipeline::{Engine, EventReader, Note, Output, Recent, RecoveredEvent, RecoveredEvents, Stopped};
use matching_proto::json_session::write_reply;
use matching_proto::session::{Cid, ClientEvent, GatewayReason, Liquidity, OrderInfo, Reply, Request};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::Books;
use crate::md::{MdFeed, MdInput};
use crate::stats::{Cause, CommandKind, DriverStats, Protocol, SymbolSlots};
use crate::users::Role;

pub(crate) type SessionId = u64;

/// How a session is told it is being dropped.
#[derive(Default)]
pub(crate) struct Kill {
    reason: OnceLock<(Cause, String)>,
    notify: Notify,
}

impl Kill {
    /// Drops the session for `reason` (the first reason given stands).
    pub(crate) fn kill(&self, cause: Cause, reason: String) {
        let _ = self.reason.set((cause, reason));
        self.notify.notify_one();
    }

    /// What the client is told.
    pub(crate) fn reason(&self) -> Option<&str> {
        self.reason.get().map(|(_, reason)| reason.as_str())
    }

    pub(crate) fn cause(&self) -> Option<Cause> {
        self.reason.get().map(|(cause, _)| *cause)
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
        protocol: Protocol,
        peer: IpAddr,
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
    /// An operator's request from the console, and where its answer goes.
    Admin(AdminRequest, oneshot::Sender<AdminAnswer>),
}

/// What the operator console asks the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AdminRequest {
    Sessions,
    Disconnect(SessionId),
    Halt(Symbol),
    Resume(Symbol),
    /// Turn the user's kill switch on: cancel every order of theirs, refuse
    /// their new orders and modifies until released.
    Kill(UserId),
    Release(UserId),
    /// The driver's part of the status: kill switches, halted symbols, seqs.
    Status,
    /// A user's resting orders (`GET /api/orders`; the caller is checked there).
    Orders(UserId),
}

/// The driver's answer to the console: `Ok` JSON, or an error and its
/// HTTP status.
pub(crate) type AdminAnswer = Result<serde_json::Value, (u16, String)>;

/// A note journaled for a change of the driver's own state, so that
/// recovery reproduces it: `K`, 1 (on) or 0 (off), the user (u64 LE).
fn kill_note(user: UserId, on: bool) -> Note {
    let mut bytes = [0u8; 10];
    bytes[0] = b'K';
    bytes[1] = on as u8;
    bytes[2..].copy_from_slice(&user.to_le_bytes());
    Note::new(&bytes).expect("Invariant: 10 bytes fit a note")
}

/// What [`kill_note`] wrote: `(user, on)`; `None` for any other note.
fn read_kill_note(note: &Note) -> Option<(UserId, bool)> {
    match note.as_bytes() {
        [b'K', on @ (0 | 1), user @ ..] => Some((UserId::from_le_bytes(user.try_into().ok()?), *on == 1)),
        _ => None,
    }
}

/// The kill switches that are on, as the annex of a snapshot keeps them:
/// each user id, u64 LE, ascending.
pub(crate) fn encode_killed(killed: &BTreeSet<UserId>) -> Vec<u8> {
    killed.iter().flat_map(|user| user.to_le_bytes()).collect()
}

fn decode_killed(bytes: &[u8]) -> BTreeSet<UserId> {
    bytes.chunks_exact(8).filter_map(|b| b.try_into().ok().map(UserId::from_le_bytes)).collect()
}

/// An operator's request the driver has taken on, answered once the
/// reader has passed `seq` (its command or note is durable).
struct AdminWaiter {
    seq: Seq,
    reply: oneshot::Sender<AdminAnswer>,
    what: AdminRequest,
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
    protocol: Protocol,
    peer: IpAddr,
    /// When it logged in, in seconds since the Unix epoch.
    since_s: u64,
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
    /// When the driver took it (its answer's latency counts from here).
    taken: Instant,
    /// The cid a cancel or modify named its order by (echoed in its
    /// rejection, even once the order is gone).
    named: Option<Cid>,
    /// An operator's command (its answer goes to the console).
    admin: bool,
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

/// The answer event of an operator's command, for the console.
fn admin_event(kind: &EventKind) -> serde_json::Value {
    match *kind {
        EventKind::Status { symbol, status } => {
            serde_json::json!({ "status": status.as_str(), "symbol": symbol.as_str() })
        }
        EventKind::MassCancelled { user, count } => serde_json::json!({ "mass_cancelled": count, "user": user }),
        EventKind::Rejected { reason, .. } => serde_json::json!({ "rejected": reason.as_str() }),
        _ => serde_json::Value::Null,
    }
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
    /// Drop-copy sessions: every user's events go to each (read-only).
    drop_copies: Vec<SessionId>,
    /// In `seq` order.
    pending: VecDeque<Pending>,
    /// Keyed by engine-assigned ids and user ids: a fast hash is safe. Cids
    /// are the clients' choice: their map has a keyed hash (a random key per process).
    orders: FxHashMap<OrderId, Live>,
    user_orders: FxHashMap<UserId, FxHashSet<OrderId>>,
    cids: HashMap<(UserId, Cid), OrderId, RandomState>,
    /// Replies a session's outbox holds.
    outbox: usize,
    /// Sessions to drop once the current pass is over: `(session, why,
    /// what the client is told)` (no reason: the client left).
    dropped: Vec<(SessionId, Cause, String)>,
    /// Sessions with staged replies.
    staged: Vec<SessionId>,
    /// Recent events of each user, for a login's `resume_after`.
    history: History,
    /// `orders` and `ping` wait for every command before them to pass, so
    /// an answer reflects them: `(the seq after them, session, query)`.
    queries: VecDeque<(Seq, SessionId, Request)>,
    /// Users whose kill switch is on (an operator's): their new orders and
    /// modifies are refused. Journaled as notes, kept in the snapshot's annex.
    killed: BTreeSet<UserId>,
    /// Symbols halted now (as the events told it).
    halted: BTreeSet<Symbol>,
    /// Tick and lot of the listed symbols that have them.
    increments: FxHashMap<Symbol, (u64, u64)>,
    /// Operators' requests waiting for their command to pass, in `seq` order.
    admin: VecDeque<AdminWaiter>,
    /// The answer events of operators' commands, until their waiter takes them.
    admin_events: Vec<(Seq, serde_json::Value)>,
    stats: Arc<DriverStats>,
    symbol_slots: SymbolSlots,
    /// This pass's clock reading: when requests were taken, or events routed.
    now: Instant,
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
    /// Operators' requests that change state, in order; each waits until
    /// everything taken before it is submitted (so it is sequenced in its
    /// place), and no request is taken while one waits.
    admin_queue: VecDeque<(AdminRequest, oneshot::Sender<AdminAnswer>)>,
    /// A snapshot is due this often (`None`: only at a clean stop).
    snapshot_interval: Option<Duration>,
    last_snapshot: Instant,
    /// The `seq` the last snapshot this run wrote is at.
    snapshot_seq: Option<Seq>,
}

/// How the driver ended.
pub(crate) enum Ended {
    /// Shut down as asked: the engine, for its final snapshot and join, and
    /// the driver's part of that snapshot's annex.
    Shutdown(Engine, DriverAnnex),
    /// The engine stopped on its own (a failed disk, a dead shard).
    EngineStopped(Stopped, Engine),
}

/// What the driver keeps in a snapshot's annex: the resting orders' cids
/// and the kill switches that are on.
pub(crate) struct DriverAnnex {
    pub(crate) cids: Vec<u8>,
    pub(crate) killed: Vec<u8>,
}

/// What the driver is started with besides the engine.
pub(crate) struct DriverSetup<'a> {
    pub(crate) limits: &'a crate::Limits,
    pub(crate) books: &'a Books,
    pub(crate) md: Option<MdFeed>,
    pub(crate) stats: Arc<DriverStats>,
    pub(crate) instruments: &'a [crate::Instrument],
    pub(crate) snapshot_interval: Option<Duration>,
}

impl Driver {
    /// A driver over a started engine; learns the resting orders from it.
    pub(crate) fn new(
        engine: Engine,
        reader: EventReader<()>,
        inbound: mpsc::Receiver<Inbound>,
        setup: DriverSetup<'_>,
    ) -> Result<Driver, Stopped> {
        let DriverSetup { limits, books, md, stats, instruments, snapshot_interval } = setup;
        let engine_snapshot_seq = engine.recovery().and_then(|r| r.snapshot).map(|(seq, _)| seq);
        let (outbox, batch_max, history) = (limits.outbox, limits.batch, limits.resume_events);
        let mut routes = Routes {
            sessions: HashMap::new(),
            by_user: HashMap::new(),
            drop_copies: Vec::new(),
            pending: VecDeque::new(),
            orders: FxHashMap::default(),
            user_orders: FxHashMap::default(),
            cids: HashMap::default(),
            outbox,
            dropped: Vec::new(),
            staged: Vec::new(),
            queries: VecDeque::new(),
            history: History::new(history, engine.next_seq() - 1),
            killed: BTreeSet::new(),
            halted: books.iter().filter(|(_, status, _)| *status == TradingStatus::Halted).map(|b| b.0).collect(),
            increments: instruments.iter().map(|i| (i.symbol, (i.tick.max(1), i.lot.max(1)))).collect(),
            admin: VecDeque::new(),
            admin_events: Vec::new(),
            stats,
            symbol_slots: SymbolSlots::default(),
            now: Instant::now(),
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
            let annex = crate::Annex::split(&report.snapshot_annex);
            // The kill switches: the snapshot's, then the notes after it.
            routes.killed = decode_killed(annex.killed);
            for (user, on) in report.notes.iter().filter_map(|(_, note)| read_kill_note(note)) {
                if on {
                    routes.killed.insert(user);
                } else {
                    routes.killed.remove(&user);
                }
            }
            routes.stats.kill_switches.set(routes.killed.len() as u64);
            let kept = decode_cids(annex.cids);
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
            admin_queue: VecDeque::new(),
            snapshot_interval,
            last_snapshot: Instant::now(),
            snapshot_seq: engine_snapshot_seq,
        })
    }

    /// The data path: requests in, batches to the engine, events out.
    pub(crate) fn run(mut self) -> Ended {
        loop {
            let mark = self.reader.mark();
            self.routes.now = Instant::now();
            let took = self.take_requests();
            if let Err(stopped) = self.submit() {
                return self.engine_stopped(stopped);
            }
            self.routes.now = Instant::now();
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
            self.routes.answer_admin(self.reader.next_seq());
            self.routes.flush();
            self.routes.drop_sessions(&mut self.batch, &mut self.batch_cids, self.engine.next_seq());
            if let Some(stopped) = self.reader.stopped() {
                return self.engine_stopped(stopped);
            }
            let snapshot_due = self.snapshot_due();
            let idle = || self.batch.is_empty() && self.reader.next_seq() == self.engine.next_seq();
            if self.shutting_down && idle() {
                self.routes.goodbye_all(Cause::Shutdown, "the server is shutting down");
                let annex = self.routes.annex();
                return Ended::Shutdown(self.engine, annex);
            }
            if snapshot_due && idle() {
                self.snapshot();
            }
            if took == 0 && delivered == 0 {
                let Driver { reader, inbound, .. } = &mut self;
                reader.wait_since(mark, || !inbound.is_empty());
            }
        }
    }

    /// Whether a periodic snapshot is due: then nothing more is taken
    /// until everything taken has passed, and the snapshot is written.
    fn snapshot_due(&self) -> bool {
        self.snapshot_interval.is_some_and(|every| self.last_snapshot.elapsed() >= every) && !self.shutting_down
    }

    /// Writes a snapshot while everything submitted has passed (so the
    /// annex is the driver's state at its `seq`). Trading waits meanwhile.
    fn snapshot(&mut self) {
        self.last_snapshot = Instant::now();
        // Nothing new since the last one: nothing to write.
        let seq = self.engine.next_seq() - 1;
        if self.snapshot_seq == Some(seq) {
            return;
        }
        self.snapshot_seq = Some(seq);
        let annex = self.routes.annex();
        // No market-data state: a restart from this snapshot starts a new feed session.
        match self.engine.snapshot_with(&crate::Annex::join(&annex.cids, &[], &annex.killed)) {
            Ok(seq) => tracing::info!(
                seq,
                took_ms = self.last_snapshot.elapsed().as_secs_f64() * 1e3,
                "periodic snapshot written"
            ),
            Err(error) => tracing::error!(%error, "periodic snapshot failed (the journal still has everything)"),
        }
    }

    /// Takes what the sessions sent, up to a batch; returns how many messages.
    fn take_requests(&mut self) -> usize {
        let mut taken = 0;
        // A snapshot due waits for what is in flight, so nothing more is taken.
        let snapshot_due = self.snapshot_due();
        while self.batch.len() < self.batch_max && self.admin_queue.is_empty() && !snapshot_due {
            let Ok(message) = self.inbound.try_recv() else { break };
            taken += 1;
            match message {
                Inbound::Open { session, user, role, protocol, peer, cancel_on_disconnect, resume_after, outbox } => {
                    if role == Role::DropCopy {
                        self.routes.drop_copies.push(session);
                    } else {
                        self.routes.by_user.entry(user).or_default().push(session);
                    }
                    let since_s = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                    let state = Session {
                        user,
                        role,
                        protocol,
                        peer,
                        since_s,
                        cancel_on_disconnect,
                        outbox,
                        staged: Vec::new(),
                    };
                    self.routes.sessions.insert(session, state);
                    self.routes.stats.sessions[protocol as usize].add(1);
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
                Inbound::Closed { session } => self.routes.dropped.push((session, Cause::ClientLeft, String::new())),
                Inbound::Shutdown => self.shutting_down = true,
                Inbound::Admin(request, reply) => match request {
                    AdminRequest::Sessions => {
                        let _ = reply.send(Ok(self.routes.sessions_json()));
                    }
                    AdminRequest::Status => {
                        let status = self.routes.status_json(self.engine.next_seq(), self.reader.next_seq());
                        let _ = reply.send(Ok(status));
                    }
                    AdminRequest::Orders(user) => {
                        // As the session's `orders` reply writes them.
                        let mut text = Vec::new();
                        write_reply(&mut text, &Reply::Orders(self.routes.orders_of(user)));
                        let mut answer: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
                        if let Some(object) = answer.as_object_mut() {
                            object.remove("ev");
                            object.insert("user".to_string(), user.into());
                        }
                        let _ = reply.send(Ok(answer));
                    }
                    AdminRequest::Disconnect(session) => {
                        let answer = match self.routes.sessions.get(&session) {
                            Some(state) => {
                                let user = state.user;
                                let reason = "disconnected by an operator".to_string();
                                self.routes.dropped.push((session, Cause::Operator, reason));
                                tracing::info!(session, user, "an operator disconnects a session");
                                Ok(serde_json::json!({ "disconnected": session, "user": user }))
                            }
                            None => Err((404, format!("no session {session}"))),
                        };
                        let _ = reply.send(answer);
                    }
                    // Changes of state wait their turn (see `run_admin`).
                    _ => self.admin_queue.push_back((request, reply)),
                },
            }
        }
        taken
    }

    /// Submits what has gathered, as much as the engine takes now; then
    /// the operators' requests whose turn it is.
    fn submit(&mut self) -> Result<(), Stopped> {
        if !self.batch.is_empty() {
            let (taken, _) = self.engine.try_submit_batch_with_cids(&self.batch, &self.batch_cids)?;
            self.batch.drain(..taken);
            self.batch_cids.drain(..taken);
        }
        while self.batch.is_empty() && !self.admin_queue.is_empty() {
            if !self.run_admin()? {
                break;
            }
        }
        Ok(())
    }

    /// The first operator's request that changes state, now that all taken
    /// before it is submitted: a kill switch is journaled as a note (and the
    /// user's orders mass-cancelled), a halt or resume is a command. Returns
    /// `false` if the engine had no room (it is tried again next pass).
    fn run_admin(&mut self) -> Result<bool, Stopped> {
        let Some((request, reply)) = self.admin_queue.pop_front() else { return Ok(true) };
        let action = match request {
            AdminRequest::Halt(symbol) => Action::Halt { symbol },
            AdminRequest::Resume(symbol) => Action::Resume { symbol },
            AdminRequest::Kill(user) | AdminRequest::Release(user) => {
                let on = matches!(request, AdminRequest::Kill(_));
                if self.routes.killed.contains(&user) == on {
                    let note = if on { "already on" } else { "not on" };
                    let answer = serde_json::json!({ "user": user, "kill_switch": on, "changed": false, "note": note });
                    let _ = reply.send(Ok(answer));
                    return Ok(true);
                }
                let Some(seq) = self.engine.try_submit_note((), kill_note(user, on))? else {
                    self.admin_queue.push_front((request, reply));
                    return Ok(false);
                };
                tracing::warn!(user, seq, "an operator turns a user's kill switch {}", if on { "on" } else { "off" });
                if on {
                    self.routes.killed.insert(user);
                } else {
                    self.routes.killed.remove(&user);
                }
                self.routes.stats.kill_switches.set(self.routes.killed.len() as u64);
                if !on {
                    self.routes.admin.push_back(AdminWaiter { seq, reply, what: request });
                    return Ok(true);
                }
                // Every order of theirs goes, in every symbol.
                Action::MassCancel { user, symbol: None, side: None }
            }
            // Answered as they were taken.
            AdminRequest::Sessions | AdminRequest::Status | AdminRequest::Disconnect(_) | AdminRequest::Orders(_) => {
                return Ok(true);
            }
        };
        // The batch is empty: the command's seq is the engine's next.
        let seq = self.engine.next_seq();
        let kind = if matches!(action, Action::MassCancel { .. }) { Kind::MassCancel } else { Kind::Other };
        self.routes.pending.push_back(Pending {
            seq,
            session: None,
            user: action.user().unwrap_or(0),
            cid: None,
            kind,
            answered: false,
            taken: self.routes.now,
            admin: true,
            named: None,
        });
        self.routes.admin.push_back(AdminWaiter { seq, reply, what: request });
        self.batch.push(action);
        self.batch_cids.push(None);
        Ok(true)
    }

    fn engine_stopped(mut self, stopped: Stopped) -> Ended {
        self.routes.goodbye_all(Cause::Shutdown, &stopped.to_string());
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
                let reason = format!("slow reader: {} replies waiting unread", self.outbox);
                self.dropped.push((session, Cause::SlowReader, reason));
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

    /// Sends `event` to every drop-copy session.
    fn copy(&mut self, seq: Seq, event: ClientEvent) {
        for at in 0..self.drop_copies.len() {
            self.send(self.drop_copies[at], Reply::Event { seq, event }, false);
        }
    }

    fn reject(&mut self, session: SessionId, reason: GatewayReason, order_id: Option<OrderId>, cid: Option<Cid>) {
        self.stats.refused[reason as usize].add(1);
        self.reply(session, Reply::Rejected { reason, order_id, cid });
    }

    /// Why a trader's new order or modify is refused here: their kill
    /// switch, or a price or quantity off the symbol's tick or lot.
    fn refusal(
        &self,
        user: UserId,
        symbol: Option<Symbol>,
        price: Option<Price>,
        qty: Option<Qty>,
    ) -> Option<GatewayReason> {
        if self.killed.contains(&user) {
            return Some(GatewayReason::KillSwitch);
        }
        let &(tick, lot) = self.increments.get(&symbol?)?;
        if price.is_some_and(|p| p % tick != 0) {
            return Some(GatewayReason::InvalidTick);
        }
        if qty.is_some_and(|q| q % lot != 0) {
            return Some(GatewayReason::InvalidLot);
        }
        None
    }

    /// The engine command for `request` from `session`, with its `seq` to
    /// be `seq`; or `None` (answered here, or refused).
    fn request(&mut self, session: SessionId, request: Request, seq: Seq) -> Option<(Action, Option<Cid>)> {
        let state = self.sessions.get(&session)?;
        let (me, role) = (state.user, state.role);
        let kind = match &request {
            Request::Command { action, .. } => match action {
                Action::New(_) => CommandKind::New,
                Action::Cancel { .. } => CommandKind::Cancel,
                Action::Modify { .. } => CommandKind::Modify,
                Action::MassCancel { .. } => CommandKind::MassCancel,
                Action::Halt { .. } => CommandKind::Halt,
                Action::Resume { .. } => CommandKind::Resume,
            },
            Request::CancelCid { .. } => CommandKind::Cancel,
            Request::ModifyCid { .. } => CommandKind::Modify,
            _ => CommandKind::Query,
        };
        self.stats.commands[state.protocol as usize][kind as usize].add(1);
        // A trader acts as itself, whatever `user` it wrote.
        let as_user = |user: UserId| if role == Role::Operator { user } else { me };
        // The cid a cancel or modify names its order by.
        let named = match &request {
            Request::CancelCid { cid, .. } | Request::ModifyCid { cid, .. } => Some(*cid),
            _ => None,
        };
        let (action, cid) = match request {
            Request::Ping | Request::Orders => {
                self.queries.push_back((seq, session, request));
                return None;
            }
            // The session answers these itself.
            Request::Login(_) | Request::Logout => return None,
            // A drop copy only listens.
            _ if role == Role::DropCopy => {
                let cid = match request {
                    Request::Command { cid, .. } => cid,
                    Request::CancelCid { cid, .. } | Request::ModifyCid { cid, .. } => Some(cid),
                    _ => None,
                };
                self.reject(session, GatewayReason::NotPermitted, None, cid);
                return None;
            }
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
                if let Some(reason) = self.refusal(order.user, Some(order.symbol), order.price, Some(order.qty)) {
                    self.reject(session, reason, None, cid);
                    return None;
                }
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
                let user = as_user(user);
                let symbol = self.orders.get(&order_id).filter(|o| o.user == user).map(|o| o.symbol);
                if let Some(reason) = self.refusal(user, symbol, price, qty) {
                    let cid = self.orders.get(&order_id).filter(|o| o.user == user).and_then(|o| o.cid);
                    self.reject(session, reason, Some(order_id), cid);
                    return None;
                }
                Action::Modify { user, order_id, price, qty }
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
        let taken = self.now;
        self.pending.push_back(Pending {
            seq,
            session: Some(session),
            user,
            cid: new_cid,
            kind,
            answered: false,
            taken,
            admin: false,
            named,
        });
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
        let now = self.now;
        let (origin, new_order, answering, admin, acked) = match self.origin(seq) {
            Some(pending) => {
                let answers = !pending.answered
                    && match pending.kind {
                        Kind::Cancel => matches!(event.kind, EventKind::Cancelled { .. } | EventKind::Rejected { .. }),
                        Kind::MassCancel => matches!(event.kind, EventKind::MassCancelled { .. }),
                        Kind::Other => true,
                    };
                pending.answered |= answers;
                let acked = pending.session.filter(|_| answers).map(|_| pending.taken);
                (pending.session, pending.cid, pending.session.filter(|_| answers), answers && pending.admin, acked)
            }
            None => (None, None, None, false, None),
        };
        if let Some(taken) = acked {
            self.stats.ack_ns.record(now.saturating_duration_since(taken).as_nanos() as u64);
        }
        if admin {
            self.admin_events.push((seq, admin_event(&event.kind)));
        }
        let new_cid = new_order.map(|(_, cid)| cid);
        let owner = self.pending.front().filter(|p| p.seq == seq).map(|p| p.user);
        let named = self.pending.front().filter(|p| p.seq == seq).and_then(|p| p.named);
        let answer = |routes: &mut Routes, event: ClientEvent| {
            if let Some(user) = owner {
                routes.history.push(seq, (user, event));
            }
            if let Some(session) = origin {
                routes.send(session, Reply::Event { seq, event }, answering.is_some());
            }
            routes.copy(seq, event);
        };
        match event.kind {
            EventKind::Accepted { order_id, user, symbol, side, order_type, tif, qty, price } => {
                self.rest(order_id, Live { user, symbol, side, price, qty, cid: new_cid });
                let event =
                    ClientEvent::Accepted { order_id, user, symbol, side, order_type, tif, qty, price, cid: new_cid };
                answer(self, event);
            }
            EventKind::Rejected { reason, order_id } => {
                self.stats.rejected[reason as usize].add(1);
                // A refused new order frees its cid.
                let cid = match (order_id, new_order) {
                    (Some(id), _) => self.orders.get(&id).and_then(|o| o.cid).or(named),
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
                let slot = self.symbol_slots.slot(trade.symbol, &self.stats);
                self.stats.trades[slot].add(1);
                self.stats.traded_qty[slot].add(trade.qty);
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
                    self.copy(seq, fill);
                }
            }
            EventKind::Cancelled { order_id, user, reason, remaining, .. } => {
                let cid = self.forget(order_id);
                let event = ClientEvent::Cancelled { order_id, reason, remaining, cid };
                self.history.push(seq, (user, event));
                self.send_user(user, answering, || Reply::Event { seq, event });
                self.copy(seq, event);
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
            EventKind::Status { symbol, status } => {
                match status {
                    TradingStatus::Halted => self.halted.insert(symbol),
                    TradingStatus::Open => self.halted.remove(&symbol),
                };
                answer(self, ClientEvent::Status { symbol, status })
            }
        }
    }

    /// Answers the operators' requests whose command or note has passed
    /// (the reader is at `next_seq`).
    fn answer_admin(&mut self, next_seq: Seq) {
        while self.admin.front().is_some_and(|waiter| waiter.seq < next_seq) {
            let Some(AdminWaiter { seq, reply, what }) = self.admin.pop_front() else { break };
            let event =
                self.admin_events.iter().position(|(s, _)| *s == seq).map(|at| self.admin_events.swap_remove(at).1);
            let answer = match what {
                AdminRequest::Kill(user) | AdminRequest::Release(user) => serde_json::json!({
                    "user": user,
                    "kill_switch": matches!(what, AdminRequest::Kill(_)),
                    "changed": true,
                    "seq": seq,
                    "event": event,
                }),
                _ => serde_json::json!({ "seq": seq, "event": event }),
            };
            let _ = reply.send(Ok(answer));
        }
        // An answer event whose waiter is gone (none should be) is not kept.
        self.admin_events.retain(|(seq, _)| *seq >= next_seq);
    }

    /// Every session, for the console.
    fn sessions_json(&self) -> serde_json::Value {
        let mut ids: Vec<&SessionId> = self.sessions.keys().collect();
        ids.sort_unstable();
        let sessions: Vec<serde_json::Value> = ids
            .into_iter()
            .map(|id| {
                let s = &self.sessions[id];
                serde_json::json!({
                    "session": id,
                    "user": s.user,
                    "role": s.role.as_str(),
                    "protocol": s.protocol.label(),
                    "peer": s.peer.to_string(),
                    "since_unix_s": s.since_s,
                    "cancel_on_disconnect": s.cancel_on_disconnect,
                    "outbox": s.outbox.queued.load(Ordering::Relaxed),
                })
            })
            .collect();
        serde_json::json!({ "sessions": sessions })
    }

    /// The driver's part of the console's status.
    fn status_json(&self, next_seq: Seq, released_seq: Seq) -> serde_json::Value {
        serde_json::json!({
            "next_seq": next_seq,
            "released_through": released_seq - 1,
            "sessions": self.sessions.len(),
            "resting_orders": self.orders.len(),
            "kill_switches": self.killed.iter().collect::<Vec<_>>(),
            "halted": self.halted.iter().map(|s| s.as_str().to_string()).collect::<Vec<_>>(),
        })
    }

    /// The driver's part of a snapshot's annex, as its state stands now.
    fn annex(&self) -> DriverAnnex {
        DriverAnnex { cids: encode_cids(self), killed: encode_killed(&self.killed) }
    }

    /// Drops the sessions that ended or must go; a user's last session that
    /// asked for cancel-on-disconnect leaves a mass cancel of its orders.
    fn drop_sessions(&mut self, batch: &mut Vec<Action>, batch_cids: &mut Vec<Option<Cid>>, next_seq: Seq) {
        for (session, cause, reason) in std::mem::take(&mut self.dropped) {
            let Some(state) = self.sessions.remove(&session) else { continue };
            let gauge = &self.stats.sessions[state.protocol as usize];
            gauge.set(gauge.get().saturating_sub(1));
            if !reason.is_empty() {
                state.outbox.kill.kill(cause, reason);
            }
            if state.role == Role::DropCopy {
                self.drop_copies.retain(|s| *s != session);
                continue;
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
                    taken: self.now,
                    admin: false,
                    named: None,
                });
                batch.push(Action::MassCancel { user: state.user, symbol: None, side: None });
                batch_cids.push(None);
            }
        }
    }

    fn goodbye_all(&mut self, cause: Cause, reason: &str) {
        self.flush();
        for state in self.sessions.values() {
            state.outbox.kill.kill(cause, reason.to_string());
        }
        // Operators waiting for a change to pass hear why it never will.
        for waiter in self.admin.drain(..) {
            let _ = waiter.reply.send(Err((503, reason.to_string())));
        }
    }
}
