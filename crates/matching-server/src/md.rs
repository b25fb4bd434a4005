//! Market data: one publisher thread, fed by the driver with every durable
//! event, off the matching path.
//!
//! ```text
//! driver ──ring──▶ md thread ── Publisher ──▶ MoldUDP64 packets ─▶ UDP feed
//!                     │                          └▶ window ◀── re-request server (UDP)
//!                     ├─ the book it describes ◀── snapshot service (TCP)
//!                     ├─ JSON channels ──▶ bounded queue per WebSocket
//!                     └─ tapes (last, volume, trades, candles) ◀── GET /api/...
//! ```
//!
//! The thread never waits for a reader: UDP is sent and forgotten (a lost
//! packet is re-requested from the window), and each WebSocket's queue is
//! bounded: a book or bbo subscriber that falls behind is conflated (its
//! missed updates dropped, a fresh snapshot once there is room), a trades
//! subscriber that falls behind is cut off. The driver waits for the ring
//! only if this thread falls a whole ring behind (it then holds its events
//! back, as it would for a full journal): the feed is a function of every
//! event, so it can skip none.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use matching_core::{Event, RestingOrder, SYMBOL_LEN_MAX, Seq, Side, Symbol, TradingStatus};
use matching_marketdata::{
    FeedBook, FeedWindow, Interval, LevelChange, Publisher, Sink, Tape, TapeTrade, view_updates,
};
use matching_proto::feed::{
    FeedMessage, HEAD_LEN, MoldWriter, PACKET_LEN_MAX, Session, decode_mold_request, decode_snapshot_request,
    encode_framed, framed_len, mold_control, pad_symbol, unpad_symbol,
};
use matching_proto::json_md::{Channel, Level, MdError, MdMessage, MdRequest, write_md};
use rtrb::{Consumer, Producer, RingBuffer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::driver::Kill;
use crate::stats::MdStats;

/// Where market data goes, and its bounds.
#[derive(Clone, Debug)]
pub struct MdConfig {
    /// Where the UDP feed is sent: a multicast group, or listeners (each
    /// gets every packet: a fan-out where there is no multicast).
    pub feed_addrs: Vec<SocketAddr>,
    pub rerequest_addr: SocketAddr,
    pub snapshot_addr: SocketAddr,
    /// A heartbeat goes out when nothing else has for this long.
    pub heartbeat: Duration,
    /// Feed messages kept for re-requests.
    pub window: usize,
    /// Messages waiting for one WebSocket connection.
    pub queue: usize,
    /// Subscriptions one connection may hold.
    pub subscriptions: usize,
}

impl Default for MdConfig {
    fn default() -> MdConfig {
        MdConfig {
            feed_addrs: vec![SocketAddr::from(([127, 0, 0, 1], 7710))],
            rerequest_addr: SocketAddr::from(([127, 0, 0, 1], 7711)),
            snapshot_addr: SocketAddr::from(([127, 0, 0, 1], 7712)),
            heartbeat: Duration::from_secs(1),
            window: 1_000_000,
            queue: 4096,
            subscriptions: 64,
        }
    }
}

/// What the driver hands the md thread, in order.
pub(crate) enum MdInput {
    Event(Event),
    /// Every command before this `seq` has passed.
    Passed(Seq),
}

/// Events in the ring before the driver waits.
const RING: usize = 1 << 16;

/// The driver's end: events go in, in order, every one.
pub(crate) struct MdFeed {
    ring: Producer<MdInput>,
    thread: Thread,
    /// The md thread stopped (it panicked): push nothing more.
    dead: Arc<AtomicBool>,
}

impl MdFeed {
    pub(crate) fn push(&mut self, input: MdInput) {
        let mut input = input;
        loop {
            match self.ring.push(input) {
                Ok(()) => return,
                Err(rtrb::PushError::Full(back)) if !self.dead.load(Ordering::Acquire) => {
                    input = back;
                    self.thread.unpark();
                    std::thread::yield_now();
                }
                Err(_) => return,
            }
        }
    }

    pub(crate) fn wake(&self) {
        self.thread.unpark();
    }
}

/// What WebSocket connections and the snapshot service ask the md thread.
pub(crate) enum MdControl {
    Request {
        conn: u64,
        request: MdRequest,
        out: mpsc::Sender<String>,
        kill: Arc<Kill>,
    },
    Gone {
        conn: u64,
    },
    /// Framed snapshot messages of a symbol (every symbol if `None`).
    Snapshot {
        symbol: Option<Symbol>,
        reply: oneshot::Sender<Vec<u8>>,
    },
    /// A read of `GET /api/...`, answered with its JSON body.
    Query {
        query: MdQuery,
        reply: oneshot::Sender<String>,
    },
    Stop,
}

/// What the REST endpoints read from the md thread (`crate::rest` serves them).
#[derive(Clone, Copy, Debug)]
pub(crate) enum MdQuery {
    /// Every symbol the feed has named, with its top of book and tape.
    Symbols,
    /// The best `depth` levels of each side.
    Book {
        symbol: Symbol,
        depth: usize,
    },
    /// Trades after `after` (a trade id), the newest `limit`.
    Trades {
        symbol: Symbol,
        after: u64,
        limit: usize,
    },
    Candles {
        symbol: Symbol,
        interval: Interval,
        limit: usize,
    },
}

/// The other threads' end of the md thread.
#[derive(Clone)]
pub(crate) struct MdHandle {
    control: std_mpsc::Sender<MdControl>,
    thread: Thread,
}

impl MdHandle {
    pub(crate) fn send(&self, control: MdControl) {
        let _ = self.control.send(control);
        self.thread.unpark();
    }
}

/// The feed's numbering: what a clean restart continues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MdState {
    session: Session,
    next: u64,
    locates: Vec<(u32, Symbol, u64)>,
}

const STATE_MAGIC: &[u8; 4] = b"MDS1";
/// A locate in the state: the locate (u32 LE), the symbol as the feed pads
/// it, the symbol's `md_seq` (u64 LE).
const STATE_ENTRY: usize = 4 + SYMBOL_LEN_MAX + 8;

impl MdState {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 10 + 8 + 4 + self.locates.len() * STATE_ENTRY);
        out.extend_from_slice(STATE_MAGIC);
        out.extend_from_slice(&self.session);
        out.extend_from_slice(&self.next.to_le_bytes());
        out.extend_from_slice(&(self.locates.len() as u32).to_le_bytes());
        for (locate, symbol, md_seq) in &self.locates {
            out.extend_from_slice(&locate.to_le_bytes());
            out.extend_from_slice(&pad_symbol(Some(symbol)));
            out.extend_from_slice(&md_seq.to_le_bytes());
        }
        out
    }

    /// What [`MdState::encode`] wrote; `None` if it does not read (a new session then starts).
    pub(crate) fn decode(bytes: &[u8]) -> Option<MdState> {
        let rest = bytes.strip_prefix(STATE_MAGIC)?;
        let session: Session = rest.get(..10)?.try_into().ok()?;
        let next = u64::from_le_bytes(rest.get(10..18)?.try_into().ok()?);
        let count = u32::from_le_bytes(rest.get(18..22)?.try_into().ok()?) as usize;
        let entries = rest.get(22..)?;
        if entries.len() != count.checked_mul(STATE_ENTRY)? {
            return None;
        }
        let locates = entries
            .chunks_exact(STATE_ENTRY)
            .map(|e| {
                let locate = u32::from_le_bytes(e[..4].try_into().ok()?);
                let symbol = unpad_symbol(&e[4..4 + SYMBOL_LEN_MAX]).ok()??;
                Some((locate, symbol, u64::from_le_bytes(e[4 + SYMBOL_LEN_MAX..].try_into().ok()?)))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(MdState { session, next, locates })
    }
}

/// A fresh session name: 10 hex digits, random.
fn new_session() -> Session {
    let mut random = [0u8; 5];
    let _ = getrandom::fill(&mut random);
    let mut session = [b'0'; 10];
    for (i, byte) in random.iter().enumerate() {
        let hex = format!("{byte:02X}");
        session[2 * i..2 * i + 2].copy_from_slice(hex.as_bytes());
    }
    session
}

fn locked(window: &Mutex<FeedWindow>) -> MutexGuard<'_, FeedWindow> {
    window.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One subscription of a WebSocket connection.
struct Subscription {
    conn: u64,
    channel: Channel,
    depth: Option<usize>,
    /// Missed updates: a snapshot is owed once there is room.
    stale: bool,
}

struct Conn {
    out: mpsc::Sender<String>,
    kill: Arc<Kill>,
    subscriptions: usize,
    /// Cut off (a trades subscriber fell behind): nothing more is sent.
    cut: bool,
}

/// Per symbol: its JSON sequence and who listens.
#[derive(Default)]
struct SymbolMd {
    symbol: Option<Symbol>,
    md_seq: u64,
    subscriptions: Vec<Subscription>,
    /// The checksum of the book now (kept while someone listens to the book).
    checksum: u32,
    bbo: (Option<Level>, Option<Level>),
}

/// The connections' bounded queues, and what a full one did.
#[derive(Default)]
struct Queues {
    conns: HashMap<u64, Conn>,
    /// Locates with a subscription owed a snapshot.
    stale: BTreeSet<u32>,
    /// Conflations, cut-offs, subscriptions (the md thread's counters).
    stats: Arc<MdStats>,
}

impl Queues {
    /// `Ok(false)`: the queue is full; `Err`: the connection is gone or cut off.
    fn send(&self, conn: u64, message: &MdMessage) -> Result<bool, ()> {
        let c = self.conns.get(&conn).filter(|c| !c.cut).ok_or(())?;
        let mut text = Vec::with_capacity(96);
        write_md(&mut text, message);
        match c.out.try_send(String::from_utf8(text).unwrap_or_default()) {
            Ok(()) => Ok(true),
            Err(mpsc::error::TrySendError::Full(_)) => Ok(false),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
        }
    }

    /// Sends `message` to `sub` (of `locate`); a full queue conflates a
    /// book or bbo subscription and cuts off a trades one.
    fn deliver(&mut self, locate: u32, sub: &mut Subscription, message: &MdMessage) {
        if sub.stale || self.send(sub.conn, message) != Ok(false) {
            return;
        }
        if sub.channel == Channel::Trades {
            if let Some(c) = self.conns.get_mut(&sub.conn) {
                let reason = format!("slow market-data reader: {} messages waiting unread", c.out.max_capacity());
                c.kill.kill(crate::stats::Cause::SlowReader, reason);
                c.cut = true;
            }
            self.stats.cut_offs.add(1);
        } else {
            sub.stale = true;
            self.stale.insert(locate);
            self.stats.conflations.add(1);
        }
    }
}

/// The JSON channels: who listens to what.
#[derive(Default)]
struct Hub {
    queues: Queues,
    /// By locate.
    symbols: HashMap<u32, SymbolMd>,
    /// Subscriptions to symbols not named yet, until they are.
    waiting: HashMap<Symbol, Vec<Subscription>>,
}

impl Hub {
    /// Notes how many subscriptions there are now (for metrics).
    fn count_subscriptions(&self) {
        let count = self.queues.conns.values().filter(|c| !c.cut).map(|c| c.subscriptions).sum::<usize>();
        self.queues.stats.subscriptions.set(count as u64);
    }
}

/// What a subscription is owed on (re)joining: the book, top of book, or
/// nothing (trades start from now). `locate`: `None` for a symbol not named yet.
fn snapshot(
    book: &FeedBook,
    locate: Option<u32>,
    symbol: Symbol,
    md_seq: u64,
    sub: &Subscription,
) -> Option<MdMessage> {
    let top = |side, n| locate.map(|l| book.top(l, side, n)).unwrap_or_default();
    match sub.channel {
        Channel::Book => {
            let n = sub.depth.unwrap_or(usize::MAX);
            let (bids, asks) = (top(Side::Buy, n), top(Side::Sell, n));
            let checksum = matching_proto::json_md::book_checksum(&bids, &asks);
            Some(MdMessage::Book { symbol, md_seq, bids, asks, checksum })
        }
        Channel::Bbo => Some(MdMessage::Bbo {
            symbol,
            md_seq,
            bid: top(Side::Buy, 1).first().copied(),
            ask: top(Side::Sell, 1).first().copied(),
        }),
        Channel::Trades => None,
    }
}

fn best(book: &FeedBook, locate: u32) -> (Option<Level>, Option<Level>) {
    (book.top(locate, Side::Buy, 1).first().copied(), book.top(locate, Side::Sell, 1).first().copied())
}

impl Hub {
    fn request(
        &mut self,
        book: &FeedBook,
        conn: u64,
        request: MdRequest,
        out: mpsc::Sender<String>,
        kill: Arc<Kill>,
        max: usize,
    ) {
        let Hub { queues, symbols, waiting } = self;
        let subscriptions =
            queues.conns.entry(conn).or_insert(Conn { out, kill, subscriptions: 0, cut: false }).subscriptions;
        let locate = book.locate(request.symbol());
        let (list, md_seq) = match locate {
            Some(locate) => {
                let state = symbols.entry(locate).or_default();
                (&mut state.subscriptions, state.md_seq)
            }
            None => (waiting.entry(*request.symbol()).or_default(), 0),
        };
        let answer = match request {
            MdRequest::Subscribe { channel, symbol, depth } => {
                if subscriptions >= max {
                    MdMessage::MdRejected { reason: MdError::TooManySubscriptions }
                } else if list.iter().any(|s| s.conn == conn && s.channel == channel) {
                    MdMessage::MdRejected { reason: MdError::AlreadySubscribed }
                } else {
                    let mut sub = Subscription { conn, channel, depth, stale: false };
                    let _ = queues.send(conn, &MdMessage::Subscribed { channel, symbol, depth });
                    if let Some(snapshot) = snapshot(book, locate, symbol, md_seq, &sub)
                        && queues.send(conn, &snapshot) != Ok(true)
                    {
                        sub.stale = true;
                        queues.stale.extend(locate);
                    }
                    list.push(sub);
                    if let Some(c) = queues.conns.get_mut(&conn) {
                        c.subscriptions += 1;
                    }
                    if let Some(state) = locate.and_then(|l| symbols.get_mut(&l).map(|s| (l, s))) {
                        let (locate, state) = state;
                        match channel {
                            Channel::Book => state.checksum = book.checksum(locate),
                            Channel::Bbo => state.bbo = best(book, locate),
                            Channel::Trades => {}
                        }
                    }
                    return;
                }
            }
            MdRequest::Unsubscribe { channel, symbol } => {
                let before = list.len();
                list.retain(|s| !(s.conn == conn && s.channel == channel));
                if list.len() == before {
                    MdMessage::MdRejected { reason: MdError::NotSubscribed }
                } else {
                    if let Some(c) = queues.conns.get_mut(&conn) {
                        c.subscriptions -= 1;
                    }
                    MdMessage::Unsubscribed { channel, symbol }
                }
            }
        };
        // A refused request on a symbol not named yet leaves nothing behind.
        if locate.is_none() && waiting.get(request.symbol()).is_some_and(Vec::is_empty) {
            waiting.remove(request.symbol());
        }
        let _ = queues.send(conn, &answer);
    }

    fn gone(&mut self, conn: u64) {
        self.queues.conns.remove(&conn);
        for state in self.symbols.values_mut() {
            state.subscriptions.retain(|s| s.conn != conn);
        }
        for list in self.waiting.values_mut() {
            list.retain(|s| s.conn != conn);
        }
        self.waiting.retain(|_, list| !list.is_empty());
    }

    /// A symbol was named: its waiting subscriptions become live.
    fn named(&mut self, locate: u32, symbol: Symbol) {
        let state = self.symbols.entry(locate).or_default();
        state.symbol = Some(symbol);
        if let Some(list) = self.waiting.remove(&symbol) {
            if list.iter().any(|s| s.stale) {
                self.queues.stale.insert(locate);
            }
            state.subscriptions.extend(list);
        }
    }

    fn level(&mut self, book: &FeedBook, change: &LevelChange) {
        let Hub { queues, symbols, .. } = self;
        // Counted whoever listens: the numbering is a function of the feed.
        let state = symbols.entry(change.locate).or_default();
        state.md_seq += 1;
        if state.subscriptions.is_empty() {
            return;
        }
        let (md_seq, locate) = (state.md_seq, change.locate);
        let Some(symbol) = state.symbol else { return };
        let listens = |channel| state.subscriptions.iter().any(|s| s.channel == channel);
        let checksum_before = state.checksum;
        if listens(Channel::Book) {
            state.checksum = book.checksum(locate);
        }
        let checksum_now = state.checksum;
        let mut bbo_changed = None;
        if listens(Channel::Bbo) && best(book, locate) != state.bbo {
            state.bbo = best(book, locate);
            bbo_changed = Some(MdMessage::Bbo { symbol, md_seq, bid: state.bbo.0, ask: state.bbo.1 });
        }
        let mut updates = Vec::new();
        for sub in &mut state.subscriptions {
            match sub.channel {
                Channel::Book => {
                    updates.clear();
                    view_updates(book, change, sub.depth, &mut updates);
                    for &(side, price, qty, before) in &updates {
                        let checksum = if before { checksum_before } else { checksum_now };
                        queues.deliver(locate, sub, &MdMessage::Level { symbol, md_seq, side, price, qty, checksum });
                    }
                }
                Channel::Bbo => {
                    if let Some(message) = &bbo_changed {
                        queues.deliver(locate, sub, message);
                    }
                }
                Channel::Trades => {}
            }
        }
    }

    fn print(&mut self, message: &FeedMessage) {
        let FeedMessage::Trade { locate, taker_side, qty, price, match_number, .. } = *message else { return };
        let Hub { queues, symbols, .. } = self;
        let Some(state) = symbols.get_mut(&locate) else { return };
        let Some(symbol) = state.symbol else { return };
        let print = MdMessage::Print { symbol, md_seq: state.md_seq, trade_id: match_number, price, qty, taker_side };
        for sub in state.subscriptions.iter_mut().filter(|s| s.channel == Channel::Trades) {
            queues.deliver(locate, sub, &print);
        }
    }

    /// Owed snapshots go out to subscribers whose queue has room again
    /// (only the symbols that owe one are looked at).
    fn catch_up(&mut self, book: &FeedBook) {
        let Hub { queues, symbols, .. } = self;
        for locate in std::mem::take(&mut queues.stale) {
            let Some(state) = symbols.get_mut(&locate) else { continue };
            let Some(symbol) = state.symbol else { continue };
            for sub in state.subscriptions.iter_mut().filter(|s| s.stale) {
                // Room for the snapshot and what follows it.
                let room = queues.conns.get(&sub.conn).is_some_and(|c| c.out.capacity() >= c.out.max_capacity() / 2);
                if room
                    && let Some(snapshot) = snapshot(book, Some(locate), symbol, state.md_seq, sub)
                    && queues.send(sub.conn, &snapshot) == Ok(true)
                {
                    sub.stale = false;
                }
            }
            if state.subscriptions.iter().any(|s| s.stale && queues.conns.contains_key(&s.conn)) {
                queues.stale.insert(locate);
            }
        }
    }
}

/// The publisher's output: packets to the feed, messages to the window,
/// changes to the JSON channels.
struct Out {
    socket: UdpSocket,
    feed_addrs: Vec<SocketAddr>,
    session: Session,
    next: u64,
    packet: MoldWriter,
    /// The messages of `packet` (to the window when it goes: one lock a packet).
    in_packet: Vec<FeedMessage>,
    window: Arc<Mutex<FeedWindow>>,
    hub: Hub,
    last_sent: Instant,
    scratch: Vec<u8>,
    stats: Arc<MdStats>,
    /// By locate: each symbol's trading since start.
    tapes: HashMap<u32, Tape>,
    /// The wall clock (ms since the Unix epoch), read once a pass of the
    /// thread's loop, not per trade: the tapes' trade times.
    now_ms: u64,
}

/// Milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Out {
    fn flush(&mut self) {
        if self.packet.count() == 0 {
            return;
        }
        self.stats.packets.add(1);
        self.stats.messages.set(self.next - 1);
        for addr in &self.feed_addrs {
            if self.socket.send_to(self.packet.bytes(), addr).is_err() {
                // Nobody listening, or a full socket buffer: the message is
                // in the window, a client re-requests it.
                self.stats.send_errors.add(1);
            }
        }
        let mut window = locked(&self.window);
        for message in self.in_packet.drain(..) {
            window.push(message);
        }
        drop(window);
        self.packet = MoldWriter::new(self.session, self.next);
        self.last_sent = Instant::now();
    }

    fn heartbeat(&mut self) {
        for addr in &self.feed_addrs {
            let _ = self.socket.send_to(&mold_control(self.session, self.next, false), addr);
        }
        self.last_sent = Instant::now();
    }
}

/// The publisher thread's sink.
struct PublisherSink<'a> {
    out: &'a mut Out,
}

impl Sink for PublisherSink<'_> {
    fn message(&mut self, message: &FeedMessage) {
        let out = &mut *self.out;
        out.scratch.clear();
        message.encode(&mut out.scratch);
        if !out.packet.fits(out.scratch.len()) {
            out.flush();
        }
        out.packet.push(&out.scratch);
        out.in_packet.push(*message);
        out.next += 1;
        match *message {
            // Before any other message of the symbol: its waiting subscribers hear all of them.
            FeedMessage::SymbolDirectory { locate, symbol, .. } => out.hub.named(locate, symbol),
            FeedMessage::Trade { locate, taker_side, qty, price, match_number, .. } => {
                let trade = TapeTrade { trade_id: match_number, price, qty, taker_side, time_ms: out.now_ms };
                out.tapes.entry(locate).or_default().trade(trade);
                out.hub.print(message);
            }
            _ => {}
        }
    }

    fn level(&mut self, book: &FeedBook, change: &LevelChange) {
        self.out.hub.level(book, change);
    }
}

/// The running market data: its threads and tasks.
pub(crate) struct MarketData {
    pub(crate) handle: MdHandle,
    thread: JoinHandle<MdState>,
    rerequest: JoinHandle<()>,
    stop_rerequest: Arc<AtomicBool>,
    pub(crate) bound: MdBound,
}

#[derive(Clone, Copy, Debug)]
pub struct MdBound {
    pub rerequest: SocketAddr,
    pub snapshot: SocketAddr,
}

/// The books to start from, in symbol order: `(symbol, status, resting orders)`.
pub(crate) type Books = Vec<(Symbol, TradingStatus, Vec<RestingOrder>)>;

/// Starts market data over `books` (the engine's, after recovery): the
/// session `state` continues if it is the one those books were published
/// under (a clean restart), else a new session rebuilds them. Returns the
/// driver's end of the ring too.
pub(crate) fn start(
    config: MdConfig,
    books: &Books,
    state: Option<MdState>,
    snapshot_listener: std::net::TcpListener,
    stats: Arc<MdStats>,
) -> io::Result<(MarketData, MdFeed, std::net::TcpListener)> {
    let v4 = config.feed_addrs.first().is_none_or(SocketAddr::is_ipv4);
    let socket = UdpSocket::bind(if v4 { "0.0.0.0:0" } else { "[::]:0" })?;
    if config.feed_addrs.iter().any(|a| a.ip().is_multicast()) {
        let _ = socket.set_multicast_loop_v4(true);
    }
    socket.set_nonblocking(true)?;
    let rerequest_socket = UdpSocket::bind(config.rerequest_addr)?;
    rerequest_socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let bound = MdBound { rerequest: rerequest_socket.local_addr()?, snapshot: snapshot_listener.local_addr()? };
    let mut publisher = Publisher::new();
    let continued = state.and_then(|state| {
        let by_symbol: HashMap<Symbol, &(Symbol, TradingStatus, Vec<RestingOrder>)> =
            books.iter().map(|b| (b.0, b)).collect();
        let restored = publisher.restore(state.locates.iter().map(|&(locate, symbol, _)| {
            let (status, orders) = by_symbol.get(&symbol).map_or((TradingStatus::Open, &[][..]), |b| (b.1, &b.2[..]));
            (locate, symbol, status, orders)
        }));
        // Every resting order must be under a locate the session gave.
        let covered =
            books.iter().all(|(symbol, _, orders)| orders.is_empty() || publisher.book().locate(symbol).is_some());
        (restored.is_ok() && covered).then_some(state)
    });
    if continued.is_none() {
        publisher = Publisher::new();
    }
    let session = continued.as_ref().map_or_else(new_session, |s| s.session);
    let next = continued.as_ref().map_or(1, |s| s.next);
    let window = Arc::new(Mutex::new(FeedWindow::new(session, next, config.window)));
    let mut hub = Hub::default();
    hub.queues.stats = Arc::clone(&stats);
    if let Some(state) = &continued {
        for &(locate, symbol, md_seq) in &state.locates {
            let entry = hub.symbols.entry(locate).or_default();
            entry.md_seq = md_seq;
            entry.symbol = Some(symbol);
        }
    }
    let mut out = Out {
        socket,
        feed_addrs: config.feed_addrs.clone(),
        session,
        next,
        packet: MoldWriter::new(session, next),
        in_packet: Vec::with_capacity(PACKET_LEN_MAX / HEAD_LEN),
        window: Arc::clone(&window),
        hub,
        last_sent: Instant::now(),
        scratch: Vec::with_capacity(64),
        stats,
        tapes: HashMap::new(),
        now_ms: unix_ms(),
    };
    if continued.is_none() {
        let seq = 0;
        let books = books.iter().map(|(symbol, status, orders)| (*symbol, *status, &orders[..]));
        publisher.start_session(seq, books, &mut PublisherSink { out: &mut out });
        out.flush();
        tracing::info!(session = %matching_proto::feed::session_name(&session), "market data: a new feed session");
    } else {
        tracing::info!(session = %matching_proto::feed::session_name(&session), next, "market data: the feed session continues");
    }
    let (ring, inputs) = RingBuffer::new(RING);
    let (control_tx, control_rx) = std_mpsc::channel();
    let dead = Arc::new(AtomicBool::new(false));
    let thread_dead = Arc::clone(&dead);
    let heartbeat = config.heartbeat;
    let subscriptions = config.subscriptions;
    let thread = std::thread::Builder::new().name("md".into()).spawn(move || {
        struct Dead(Arc<AtomicBool>);
        impl Drop for Dead {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let _dead = Dead(thread_dead);
        run(publisher, out, inputs, control_rx, heartbeat, subscriptions)
    })?;
    let stop_rerequest = Arc::new(AtomicBool::new(false));
    let stop = Arc::clone(&stop_rerequest);
    let rerequest = std::thread::Builder::new()
        .name("md-rerequest".into())
        .spawn(move || serve_rerequests(rerequest_socket, window, stop))?;
    let handle = MdHandle { control: control_tx, thread: thread.thread().clone() };
    let feed = MdFeed { ring, thread: thread.thread().clone(), dead };
    snapshot_listener.set_nonblocking(true)?;
    Ok((MarketData { handle, thread, rerequest, stop_rerequest, bound }, feed, snapshot_listener))
}

impl MarketData {
    /// Publishes what is left in the ring, stops, and returns the state a
    /// clean restart continues from.
    pub(crate) fn stop(self) -> Option<MdState> {
        self.handle.send(MdControl::Stop);
        let state = self.thread.join().ok();
        self.stop_rerequest.store(true, Ordering::Release);
        let _ = self.rerequest.join();
        state
    }
}

/// The md thread.
fn run(
    mut publisher: Publisher,
    mut out: Out,
    mut inputs: Consumer<MdInput>,
    control: std_mpsc::Receiver<MdControl>,
    heartbeat: Duration,
    subscriptions: usize,
) -> MdState {
    let mut stopping = false;
    loop {
        let mut worked = false;
        while let Ok(control) = control.try_recv() {
            worked = true;
            match control {
                MdControl::Request { conn, request, out: tx, kill } => {
                    out.hub.request(publisher.book(), conn, request, tx, kill, subscriptions);
                    out.hub.count_subscriptions();
                }
                MdControl::Gone { conn } => {
                    out.hub.gone(conn);
                    out.hub.count_subscriptions();
                }
                MdControl::Snapshot { symbol, reply } => {
                    // Everything published so far is in the book; the
                    // messages still in the packet are sent first.
                    out.flush();
                    let mut bytes = Vec::new();
                    for message in publisher.book().snapshot(symbol.as_ref(), 0, out.next) {
                        encode_framed(&message, &mut bytes);
                    }
                    let _ = reply.send(bytes);
                }
                MdControl::Query { query, reply } => {
                    let _ = reply.send(answer(query, publisher.book(), &out));
                }
                MdControl::Stop => stopping = true,
            }
        }
        let mut taken = 0;
        out.now_ms = unix_ms();
        while let Ok(input) = inputs.pop() {
            taken += 1;
            let mut sink = PublisherSink { out: &mut out };
            match input {
                MdInput::Event(event) => publisher.on_event(&event, &mut sink),
                MdInput::Passed(next_seq) => {
                    if publisher.in_progress().is_some_and(|seq| seq < next_seq) {
                        publisher.end_command(&mut sink);
                    }
                }
            }
            if taken % 4096 == 0 {
                break;
            }
        }
        if taken > 0 {
            worked = true;
            out.flush();
            out.hub.catch_up(publisher.book());
        } else if !out.hub.queues.stale.is_empty() {
            out.hub.catch_up(publisher.book());
        }
        if stopping && inputs.is_empty() {
            let mut sink = PublisherSink { out: &mut out };
            publisher.end_command(&mut sink);
            out.flush();
            out.heartbeat();
            let locates = publisher
                .locates()
                .into_iter()
                .map(|(locate, symbol)| (locate, symbol, out.hub.symbols.get(&locate).map_or(0, |s| s.md_seq)))
                .collect();
            return MdState { session: out.session, next: out.next, locates };
        }
        if out.last_sent.elapsed() >= heartbeat {
            out.heartbeat();
        }
        if !worked {
            std::thread::park_timeout(heartbeat.min(Duration::from_millis(50)));
        }
    }
}

/// The JSON body answering `query`, from the book published so far.
fn answer(query: MdQuery, book: &FeedBook, out: &Out) -> String {
    use crate::rest::{CandleJson, CandlesJson, SymbolJson, SymbolsJson, TradeJson, TradesJson};
    let md_seq = |locate: Option<u32>| locate.and_then(|l| out.hub.symbols.get(&l)).map_or(0, |s| s.md_seq);
    let tape = |locate: Option<u32>| locate.and_then(|l| out.tapes.get(&l));
    let json = |value: serde_json::Result<String>| value.unwrap_or_else(|_| "{}".to_string());
    match query {
        MdQuery::Symbols => {
            let mut symbols: Vec<(u32, Symbol)> = book.symbols().collect();
            symbols.sort_unstable_by_key(|(_, symbol)| *symbol);
            let symbols: Vec<SymbolJson> = symbols
                .into_iter()
                .map(|(locate, symbol)| {
                    let (bid, ask) = best(book, locate);
                    let tape = tape(Some(locate));
                    SymbolJson {
                        symbol: symbol.as_str().to_string(),
                        status: if book.halted(locate) { "halted" } else { "open" },
                        last: tape.and_then(|t| t.last),
                        bid,
                        ask,
                        volume: tape.map_or(0, |t| t.volume),
                        trades: tape.map_or(0, |t| t.trades),
                        md_seq: md_seq(Some(locate)),
                    }
                })
                .collect();
            json(serde_json::to_string(&SymbolsJson { symbols }))
        }
        MdQuery::Book { symbol, depth } => {
            // The same message a `book` subscription starts with.
            let locate = book.locate(&symbol);
            let sub = Subscription { conn: 0, channel: Channel::Book, depth: Some(depth), stale: false };
            let mut text = Vec::new();
            if let Some(message) = snapshot(book, locate, symbol, md_seq(locate), &sub) {
                write_md(&mut text, &message);
            }
            String::from_utf8(text).unwrap_or_default()
        }
        MdQuery::Trades { symbol, after, limit } => {
            let trades: Vec<TradeJson> = tape(book.locate(&symbol))
                .map(|t| t.trades_after(after, limit))
                .unwrap_or_default()
                .into_iter()
                .map(TradeJson::from)
                .collect();
            json(serde_json::to_string(&TradesJson { symbol: symbol.as_str().to_string(), trades }))
        }
        MdQuery::Candles { symbol, interval, limit } => {
            let candles: Vec<CandleJson> = tape(book.locate(&symbol))
                .map(|t| t.candles(interval, limit))
                .unwrap_or_default()
                .into_iter()
                .map(CandleJson::from)
                .collect();
            let symbol = symbol.as_str().to_string();
            json(serde_json::to_string(&CandlesJson { symbol, interval: interval.label(), candles }))
        }
    }
}

/// The re-request server: a request in, one packet back to its sender.
fn serve_rerequests(socket: UdpSocket, window: Arc<Mutex<FeedWindow>>, stop: Arc<AtomicBool>) {
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Acquire) {
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
            Err(error) => {
                tracing::warn!(%error, "market data: the re-request socket failed");
                return;
            }
        };
        // A request that does not read is ignored (UDP: no one to tell reliably).
        let Ok((session, seq, count)) = decode_mold_request(&buf[..len]) else { continue };
        let answer = locked(&window).answer(session, seq, count);
        let _ = socket.send_to(&answer, from);
    }
}

/// The snapshot service: requests in, framed snapshots out, one connection
/// a task. A request that does not read ends the connection.
pub(crate) async fn serve_snapshots(
    listener: std::net::TcpListener,
    md: MdHandle,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => return tracing::error!(%error, "market data: the snapshot service cannot listen"),
    };
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let Ok((mut stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let md = md.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(64);
            loop {
                let mut chunk = [0u8; 64];
                let n = match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk)).await {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => return,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Some(len) = framed_len(&buf) {
                    let Ok(symbol) = decode_snapshot_request(&buf[2..len]) else { return };
                    buf.drain(..len);
                    let (reply, answer) = oneshot::channel();
                    md.send(MdControl::Snapshot { symbol, reply });
                    let Ok(bytes) = answer.await else { return };
                    if stream.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                if buf.len() > 64 {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feed_state_reads_back() {
        let state = MdState {
            session: *b"0123456789",
            next: 42,
            locates: vec![(1, Symbol::new("BTC-USD").unwrap(), 7), (2, Symbol::new("a/b.c_d-1").unwrap(), 0)],
        };
        assert_eq!(MdState::decode(&state.encode()), Some(state.clone()));
        let bytes = state.encode();
        assert_eq!(MdState::decode(&bytes[..bytes.len() - 1]), None);
    }
}
