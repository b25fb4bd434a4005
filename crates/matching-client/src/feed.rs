//! A client of the market-data feed (`docs/PROTOCOL.md`, "Market data"):
//! MoldUDP64 packets over UDP, re-requests of what was lost, and the
//! snapshot service to start from (or to recover what the re-request
//! window no longer holds).
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use std::time::Duration;
//! use matching_client::feed::{FeedClient, FeedConfig};
//!
//! let config = FeedConfig::new(
//!     "127.0.0.1:7710".parse().unwrap(),
//!     "127.0.0.1:7711".parse().unwrap(),
//!     "127.0.0.1:7712".parse().unwrap(),
//! );
//! let mut feed = FeedClient::join(config).await?;
//! feed.catch_up(Duration::from_secs(5)).await?;
//! for (locate, symbol) in feed.book().symbols() {
//!     println!("{}: {} bids", symbol.as_str(), feed.book().level_count(locate, matching_core::Side::Buy));
//! }
//! # Ok(()) }
//! ```
//!
//! The client is a state machine around one [`FeedBook`]:
//!
//! - **Live**: messages are applied strictly in order from `next`, the
//!   number of the next message wanted. A message numbered below `next` is
//!   a duplicate and ignored; one above it waits in a bounded buffer while
//!   the missing ones are asked for again, from `next`, as long as any are
//!   missing (an answer holds at most one packet's worth).
//! - **Snapshot**: the book of every symbol is read from the snapshot
//!   service while the feed is buffered; at its end (`G`, "the snapshot
//!   reflects every message before `next`") the buffered messages below
//!   `next` are dropped and the rest applied. The client starts here, and
//!   comes back here when the re-request server no longer holds what is
//!   missing, when the buffer is full, or when a message does not apply
//!   (the book is wrong: better rebuilt than trusted).
//!
//! A packet of a session never seen means the server restarted uncleanly:
//! the book is discarded and the new session read from message 1 (its
//! first messages rebuild the book). Packets of sessions already left are
//! ignored.
//!
//! [`FeedClient::poll`] waits for one thing (a packet, a snapshot's bytes,
//! a timer) and handles it; it is cancel-safe (its only await is the wait,
//! everything after it is synchronous and re-requests go out with
//! `try_send_to`), so it can sit in a `select!` beside a redraw timer.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use matching_marketdata::FeedBook;
use matching_proto::feed::{
    FeedMessage, MoldPacket, Session, SystemCode, decode_mold, encode_mold_request, encode_snapshot_request, framed_len,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

/// Longest datagram read: MoldUDP64 packets are at most 1,400 bytes
/// (`PACKET_LEN_MAX`); anything longer is cut, fails to decode and is
/// counted as malformed.
const DATAGRAM_LEN_MAX: usize = 2048;
/// Longest framed message the snapshot service may send (the longest
/// message, `R` or `U`, is 45 bytes); a longer frame is a broken stream.
const SNAPSHOT_MESSAGE_LEN_MAX: usize = 64;
/// Sessions left behind that are remembered, so that a late packet of one
/// of them is ignored instead of taken for yet another new session.
const RETIRED_SESSIONS_MAX: usize = 8;

/// Where the feed is and how the client behaves.
#[derive(Clone, Debug)]
pub struct FeedConfig {
    /// Where the feed arrives: the unicast address to bind (the server
    /// sends to it), or a multicast group to join (its port is bound on
    /// every interface).
    pub feed: SocketAddr,
    /// The re-request server (UDP).
    pub rerequest: SocketAddr,
    /// The snapshot service (TCP).
    pub snapshot: SocketAddr,
    /// For tests: the fraction (0 to 1) of received feed packets to drop,
    /// as a lossy network would. Re-request answers are never dropped (the
    /// loss must stay recoverable).
    pub drop_rate: f64,
    /// The seed of the simulated loss: the same seed drops the same packets
    /// of the same arrival order.
    pub seed: u64,
    /// A re-request not answered in this time is sent again.
    pub rerequest_timeout: Duration,
    /// A snapshot not read to its end in this time is abandoned (and asked
    /// again); [`FeedClient::join`] fails after it.
    pub snapshot_timeout: Duration,
    /// How long to wait before asking again after a snapshot failed (the
    /// service refused the connection, closed it, or sent garbage).
    pub snapshot_retry: Duration,
    /// Most messages held out of order (ahead of a gap, or while a snapshot
    /// is read). Beyond it the client resyncs from a snapshot: a gap that
    /// large is cheaper to skip than to fill.
    pub pending_max: usize,
    /// Most applied messages kept for [`FeedClient::take_applied`]; when
    /// full, the oldest go first. 0 keeps none.
    pub applied_max: usize,
}

impl FeedConfig {
    /// The feed at `feed`, with no simulated loss, re-requests resent after
    /// 50 ms, snapshots given 10 s, a buffer of 1,000,000 messages.
    pub fn new(feed: SocketAddr, rerequest: SocketAddr, snapshot: SocketAddr) -> FeedConfig {
        FeedConfig {
            feed,
            rerequest,
            snapshot,
            drop_rate: 0.0,
            seed: 0,
            rerequest_timeout: Duration::from_millis(50),
            snapshot_timeout: Duration::from_secs(10),
            snapshot_retry: Duration::from_millis(500),
            pending_max: 1_000_000,
            applied_max: 65_536,
        }
    }

    fn check(&self) -> io::Result<()> {
        let invalid = |what: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, what.to_string()));
        if !(0.0..=1.0).contains(&self.drop_rate) {
            return invalid("drop_rate must be between 0 and 1");
        }
        if self.pending_max == 0 {
            return invalid("pending_max must be at least 1");
        }
        if self.rerequest_timeout.is_zero() || self.snapshot_timeout.is_zero() {
            return invalid("timeouts must not be zero");
        }
        Ok(())
    }
}

/// What the client has seen and done, since it joined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedStats {
    /// Feed packets received (the simulated drops included; re-request
    /// answers not).
    pub packets: u64,
    /// Feed messages applied to the book.
    pub messages: u64,
    /// Feed packets dropped by the simulated loss.
    pub dropped: u64,
    /// Packets received from the re-request server.
    pub answers: u64,
    /// Re-requests sent (resends included).
    pub rerequests: u64,
    /// Snapshots asked for (the first, at join, included; retries too).
    pub snapshots: u64,
    /// Snapshots that failed (refused, closed, timed out, garbage).
    pub snapshot_failures: u64,
    /// Times a gap opened: the client had every message up to the last it
    /// knew of, then learned of missing ones.
    pub gaps: u64,
    /// Messages that did not decode or did not apply to the book (each
    /// sends the client to the snapshot service).
    pub book_errors: u64,
    /// New sessions followed (the server restarted uncleanly).
    pub sessions: u64,
    /// Datagrams that were not MoldUDP64 packets (ignored).
    pub malformed: u64,
}

/// A re-request in flight: its first message, when it went out.
#[derive(Clone, Copy, Debug)]
struct Request {
    first: u64,
    sent: Instant,
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// Where the client stands with the snapshot service.
enum Sync {
    /// The book is current up to `next - 1`: the feed is applied.
    Live,
    /// A snapshot failed; the next is asked for at `at`. The feed is buffered.
    Waiting { at: Instant },
    /// Connecting and sending the request. The feed is buffered.
    Connecting { connecting: Connecting, deadline: Instant },
    /// Reading the snapshot into `book`. The feed is buffered.
    Reading { stream: TcpStream, input: Vec<u8>, book: FeedBook, deadline: Instant },
}

/// What woke [`FeedClient::poll`].
enum Wake {
    Feed(io::Result<usize>),
    Answer(io::Result<usize>),
    Connected(io::Result<TcpStream>),
    SnapshotRead(io::Result<usize>),
    Timer,
}

/// SplitMix64: the simulated loss's generator (small, seeded, and good
/// enough to pick packets).
#[derive(Clone, Copy, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A feed client: the book of every symbol, kept current from the feed.
pub struct FeedClient {
    config: FeedConfig,
    feed_socket: UdpSocket,
    /// Sends re-requests and receives their answers (an ephemeral port).
    answer_socket: UdpSocket,
    feed_input: Box<[u8]>,
    answer_input: Box<[u8]>,
    book: FeedBook,
    /// The session followed (`None` until a packet names it).
    session: Option<Session>,
    /// Sessions left behind, most recent last.
    retired: VecDeque<Session>,
    /// The number of the next message to apply (meaningful once live).
    next: u64,
    /// One past the highest message number known to exist (from packets
    /// and heartbeats of the session).
    known_end: u64,
    /// Messages received ahead of `next` (or during a snapshot), by number.
    /// Invariant: at most `config.pending_max` entries.
    pending: BTreeMap<u64, FeedMessage>,
    request: Option<Request>,
    /// Whether messages are known to be missing (for `stats.gaps`).
    in_gap: bool,
    /// The `next` of the last heartbeat (or end of session) of the session.
    last_heartbeat: Option<u64>,
    /// Heartbeats heard, for [`FeedClient::catch_up`].
    heartbeats: u64,
    /// The session's end was announced (and nothing came since).
    ended: bool,
    sync: Sync,
    /// Why the last snapshot failed, for [`FeedClient::join`].
    snapshot_error: Option<io::Error>,
    /// Applied messages not yet taken. Invariant: at most `config.applied_max`.
    applied: VecDeque<(u64, FeedMessage)>,
    loss: SplitMix64,
    stats: FeedStats,
}

impl FeedClient {
    /// Binds the feed's address first (so that nothing sent from now on is
    /// missed), then a socket for re-requests, and takes a snapshot of every
    /// symbol to start from, buffering the feed meanwhile. Returns once the
    /// book is live; fails if the snapshot service cannot be reached, or
    /// gives no snapshot within `config.snapshot_timeout`.
    pub async fn join(config: FeedConfig) -> io::Result<FeedClient> {
        config.check()?;
        let feed_socket = bind_feed(config.feed).await?;
        let any: IpAddr = match config.rerequest {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let answer_socket = UdpSocket::bind((any, 0)).await?;
        let now = Instant::now();
        let mut client = FeedClient {
            feed_socket,
            answer_socket,
            feed_input: vec![0; DATAGRAM_LEN_MAX].into_boxed_slice(),
            answer_input: vec![0; DATAGRAM_LEN_MAX].into_boxed_slice(),
            book: FeedBook::new(),
            session: None,
            retired: VecDeque::new(),
            next: 0,
            known_end: 0,
            pending: BTreeMap::new(),
            request: None,
            in_gap: false,
            last_heartbeat: None,
            heartbeats: 0,
            ended: false,
            sync: Sync::Live,
            snapshot_error: None,
            applied: VecDeque::new(),
            loss: SplitMix64(config.seed),
            stats: FeedStats::default(),
            config,
        };
        client.start_snapshot(now);
        let deadline = now + client.config.snapshot_timeout;
        while !client.synced() {
            if let Some(error) = client.snapshot_error.take() {
                return Err(error);
            }
            match tokio::time::timeout_at(deadline, client.poll()).await {
                Ok(polled) => polled?,
                Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "no snapshot from the snapshot service")),
            }
        }
        Ok(client)
    }

    /// Waits for the next packet, snapshot bytes or timer, and handles it:
    /// one step. Cancel-safe. Errors only when a socket fails for good (a
    /// snapshot that fails is retried, a bad packet ignored).
    pub async fn poll(&mut self) -> io::Result<()> {
        let wake = self.wait().await;
        let now = Instant::now();
        match wake {
            Wake::Feed(received) => {
                if let Some(len) = transient(received)? {
                    self.on_feed_datagram(len, now);
                }
            }
            Wake::Answer(received) => {
                if let Some(len) = transient(received)? {
                    let input = std::mem::take(&mut self.answer_input);
                    if let Some(bytes) = input.get(..len) {
                        self.stats.answers += 1;
                        self.on_packet(bytes, true, now);
                    }
                    self.answer_input = input;
                }
            }
            Wake::Connected(connected) => self.on_connected(connected, now),
            Wake::SnapshotRead(read) => self.on_snapshot_read(read, now),
            Wake::Timer => {}
        }
        self.on_timers(now);
        self.check_gap(now);
        Ok(())
    }

    /// Polls until the client is [caught up](FeedClient::caught_up) as of a
    /// heartbeat heard after this call, or `timeout` passes (`Ok(false)`).
    pub async fn catch_up(&mut self, timeout: Duration) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        let heard = self.heartbeats;
        loop {
            if self.heartbeats > heard && self.caught_up() {
                return Ok(true);
            }
            match tokio::time::timeout_at(deadline, self.poll()).await {
                Ok(polled) => polled?,
                Err(_) => return Ok(false),
            }
        }
    }

    /// The book of every symbol, as of message `next_seq() - 1`. While a
    /// snapshot is read ([`FeedClient::synced`] is false) it is the last
    /// book the client had, stale.
    pub fn book(&self) -> &FeedBook {
        &self.book
    }

    /// The number of the next message the client will apply.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// The session followed, once a packet has named it.
    pub fn session(&self) -> Option<Session> {
        self.session
    }

    /// Whether the book is live (not waiting for a snapshot).
    pub fn synced(&self) -> bool {
        matches!(self.sync, Sync::Live)
    }

    /// Live, no message known to be missing, and the last heartbeat's
    /// `next` is ours: the server had sent nothing more when it spoke last.
    pub fn caught_up(&self) -> bool {
        self.synced() && !self.missing() && self.last_heartbeat == Some(self.next)
    }

    /// The server announced the end of the session (and nothing came since).
    pub fn ended(&self) -> bool {
        self.ended
    }

    pub fn stats(&self) -> FeedStats {
        self.stats
    }

    /// The messages applied since the last call, with their feed numbers,
    /// oldest first (at most `config.applied_max`: older ones were dropped).
    /// Snapshots are not in it: they replace the book without messages.
    pub fn take_applied(&mut self) -> Vec<(u64, FeedMessage)> {
        self.applied.drain(..).collect()
    }

    /// The feed socket's address (the port bound, for a multicast group).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.feed_socket.local_addr()
    }

    // -----------------------------------------------------------------
    // Waiting

    /// The earliest timer: a re-request to resend, a snapshot to ask for
    /// again or to give up on.
    fn deadline(&self) -> Option<Instant> {
        let resend = self.request.filter(|_| self.synced()).map(|r| r.sent + self.config.rerequest_timeout);
        let snapshot = match &self.sync {
            Sync::Live => None,
            Sync::Waiting { at } => Some(*at),
            Sync::Connecting { deadline, .. } | Sync::Reading { deadline, .. } => Some(*deadline),
        };
        match (resend, snapshot) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn wait(&mut self) -> Wake {
        let deadline = self.deadline();
        let FeedClient { feed_socket, answer_socket, feed_input, answer_input, sync, .. } = self;
        let snapshot = async move {
            match sync {
                Sync::Connecting { connecting, .. } => Wake::Connected(connecting.as_mut().await),
                Sync::Reading { stream, input, .. } => {
                    input.reserve(8192);
                    Wake::SnapshotRead(stream.read_buf(input).await)
                }
                Sync::Live | Sync::Waiting { .. } => std::future::pending().await,
            }
        };
        let timer = async move {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = feed_socket.recv_from(feed_input) => Wake::Feed(received.map(|(len, _)| len)),
            received = answer_socket.recv_from(answer_input) => Wake::Answer(received.map(|(len, _)| len)),
            wake = snapshot => wake,
            () = timer => Wake::Timer,
        }
    }

    fn on_timers(&mut self, now: Instant) {
        match &self.sync {
            Sync::Waiting { at } if now >= *at => self.start_snapshot(now),
            Sync::Connecting { deadline, .. } | Sync::Reading { deadline, .. } if now >= *deadline => {
                self.snapshot_failed(io::Error::new(io::ErrorKind::TimedOut, "the snapshot took too long"), now);
            }
            _ => {}
        }
    }

    // -----------------------------------------------------------------
    // Packets

    fn on_feed_datagram(&mut self, len: usize, now: Instant) {
        self.stats.packets += 1;
        if self.config.drop_rate > 0.0 && self.loss.next_f64() < self.config.drop_rate {
            self.stats.dropped += 1;
            return;
        }
        let input = std::mem::take(&mut self.feed_input);
        if let Some(bytes) = input.get(..len) {
            self.on_packet(bytes, false, now);
        }
        self.feed_input = input;
    }

    /// A datagram from the feed, or (`answer`) from the re-request server.
    fn on_packet(&mut self, bytes: &[u8], answer: bool, now: Instant) {
        let Ok(packet) = decode_mold(bytes) else {
            self.stats.malformed += 1;
            return;
        };
        let session = match &packet {
            MoldPacket::Messages { session, .. }
            | MoldPacket::Heartbeat { session, .. }
            | MoldPacket::EndOfSession { session, .. } => *session,
        };
        if !self.follow(session) {
            return;
        }
        match packet {
            MoldPacket::Messages { seq, messages, .. } => self.on_messages(seq, &messages, now),
            // From the re-request server a heartbeat is a refusal: too old
            // (it names the oldest message held) or not sent yet.
            MoldPacket::Heartbeat { next, .. } if answer => {
                if self.synced() && self.missing() && next > self.next {
                    self.resync(now);
                }
            }
            MoldPacket::Heartbeat { next, .. } => self.on_heartbeat(next, false),
            MoldPacket::EndOfSession { next, .. } => self.on_heartbeat(next, true),
        }
    }

    /// Whether to handle a packet of `session`: the one followed, or a new
    /// one (then followed from its message 1); not one left behind.
    fn follow(&mut self, session: Session) -> bool {
        match self.session {
            None => {
                self.session = Some(session);
                true
            }
            Some(current) if current == session => true,
            Some(_) if self.retired.contains(&session) => false,
            Some(current) => {
                if self.retired.len() == RETIRED_SESSIONS_MAX {
                    self.retired.pop_front();
                }
                self.retired.push_back(current);
                self.new_session(session);
                true
            }
        }
    }

    /// The server restarted uncleanly: its new session rebuilds the book
    /// from message 1, so the old book (and its locates) goes, as does any
    /// snapshot in progress (it may be of either session).
    fn new_session(&mut self, session: Session) {
        self.stats.sessions += 1;
        self.session = Some(session);
        self.book = FeedBook::new();
        self.next = 1;
        self.known_end = 1;
        self.pending.clear();
        self.request = None;
        self.in_gap = false;
        self.last_heartbeat = None;
        self.ended = false;
        self.sync = Sync::Live;
    }

    fn on_heartbeat(&mut self, next: u64, end: bool) {
        self.heartbeats += 1;
        self.last_heartbeat = Some(next);
        self.known_end = self.known_end.max(next);
        self.ended = end;
    }

    fn on_messages(&mut self, seq: u64, messages: &[&[u8]], now: Instant) {
        let Some(end) = seq.checked_add(messages.len() as u64).filter(|_| seq > 0) else {
            self.stats.malformed += 1;
            return;
        };
        self.known_end = self.known_end.max(end);
        self.ended = false;
        for (number, bytes) in (seq..end).zip(messages) {
            // Already applied (during a snapshot too: the snapshot reflects
            // every message received before it was asked for).
            if number < self.next {
                continue;
            }
            match FeedMessage::decode(bytes) {
                Ok(message) => self.accept(number, message, now),
                Err(_) => {
                    self.stats.book_errors += 1;
                    self.resync(now);
                }
            }
        }
    }

    /// Message `number`: applied if it is the next, kept if it is ahead (or
    /// a snapshot is coming), ignored if already applied.
    fn accept(&mut self, number: u64, message: FeedMessage, now: Instant) {
        if self.synced() {
            if number < self.next {
                return;
            }
            if number == self.next {
                self.apply(number, message, now);
                self.drain(now);
                return;
            }
        }
        if self.pending.len() >= self.config.pending_max && !self.pending.contains_key(&number) {
            // Too far behind to fill message by message: start over from a
            // snapshot (or let the one coming say what is still missing),
            // buffering from here.
            self.pending.clear();
            self.resync(now);
        }
        self.pending.insert(number, message);
    }

    /// Applies what the buffer holds from `next` on.
    fn drain(&mut self, now: Instant) {
        while self.synced() {
            let Some(entry) = self.pending.first_entry() else { break };
            let number = *entry.key();
            if number > self.next {
                break;
            }
            let message = entry.remove();
            if number == self.next {
                self.apply(number, message, now);
            }
        }
    }

    fn apply(&mut self, number: u64, message: FeedMessage, now: Instant) {
        debug_assert_eq!(number, self.next, "Invariant: messages are applied in order");
        if self.book.apply(&message, |_, _| {}).is_err() {
            // The book is not the server's: rebuild it rather than trust it.
            self.stats.book_errors += 1;
            self.resync(now);
            return;
        }
        self.next = number + 1;
        self.stats.messages += 1;
        if let FeedMessage::SystemEvent { code: SystemCode::EndOfMessages, .. } = message {
            self.ended = true;
        }
        if self.config.applied_max > 0 {
            if self.applied.len() >= self.config.applied_max {
                self.applied.pop_front();
            }
            self.applied.push_back((number, message));
        }
    }

    // -----------------------------------------------------------------
    // Gaps

    /// Whether messages are known to be missing: the first one buffered
    /// (or the last one known to exist) is beyond `next`.
    fn missing(&self) -> bool {
        self.missing_end() > self.next
    }

    /// One past the missing run that starts at `next`.
    fn missing_end(&self) -> u64 {
        self.pending.keys().next().copied().unwrap_or(self.known_end)
    }

    /// Asks for the missing run from `next`, unless a request for it is
    /// in flight and not yet overdue.
    fn check_gap(&mut self, now: Instant) {
        if !self.synced() {
            return;
        }
        let missing_end = self.missing_end();
        if missing_end <= self.next {
            self.in_gap = false;
            self.request = None;
            return;
        }
        if !self.in_gap {
            self.in_gap = true;
            self.stats.gaps += 1;
        }
        let Some(session) = self.session else { return };
        if let Some(request) = self.request
            && request.first == self.next
            && now < request.sent + self.config.rerequest_timeout
        {
            return;
        }
        let count = (missing_end - self.next).min(u64::from(u16::MAX)) as u16;
        let bytes = encode_mold_request(session, self.next, count);
        // A send that fails (a full socket buffer) is retried by the timer.
        if self.answer_socket.try_send_to(&bytes, self.config.rerequest).is_ok() {
            self.stats.rerequests += 1;
        }
        self.request = Some(Request { first: self.next, sent: now });
    }

    // -----------------------------------------------------------------
    // Snapshots

    /// The book cannot be kept current message by message: read a snapshot
    /// of every symbol, buffering the feed meanwhile. What is buffered is
    /// kept: the snapshot's `next` says which of it is still needed.
    fn resync(&mut self, now: Instant) {
        if !self.synced() {
            // A snapshot is already coming.
            return;
        }
        self.request = None;
        self.in_gap = false;
        self.start_snapshot(now);
    }

    fn start_snapshot(&mut self, now: Instant) {
        self.stats.snapshots += 1;
        let addr = self.config.snapshot;
        let request = encode_snapshot_request(None);
        let connecting: Connecting = Box::pin(async move {
            let mut stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            stream.write_all(&request).await?;
            Ok(stream)
        });
        self.sync = Sync::Connecting { connecting, deadline: now + self.config.snapshot_timeout };
    }

    fn snapshot_failed(&mut self, error: io::Error, now: Instant) {
        self.stats.snapshot_failures += 1;
        self.snapshot_error = Some(error);
        self.sync = Sync::Waiting { at: now + self.config.snapshot_retry };
    }

    fn on_connected(&mut self, connected: io::Result<TcpStream>, now: Instant) {
        let Sync::Connecting { deadline, .. } = self.sync else { return };
        match connected {
            Ok(stream) => {
                self.sync = Sync::Reading { stream, input: Vec::with_capacity(8192), book: FeedBook::new(), deadline };
            }
            Err(error) => self.snapshot_failed(error, now),
        }
    }

    fn on_snapshot_read(&mut self, read: io::Result<usize>, now: Instant) {
        let Sync::Reading { stream, mut input, mut book, deadline } = std::mem::replace(&mut self.sync, Sync::Live)
        else {
            return;
        };
        match read {
            Ok(0) => {
                let eof = "the snapshot service closed the connection before the end of the snapshot";
                return self.snapshot_failed(io::Error::new(io::ErrorKind::UnexpectedEof, eof), now);
            }
            Ok(_) => {}
            Err(error) => return self.snapshot_failed(error, now),
        }
        let mut at = 0;
        let outcome = loop {
            let rest = &input[at..];
            if let Some(prefix) = rest.get(..2)
                && usize::from(u16::from_be_bytes([prefix[0], prefix[1]])) > SNAPSHOT_MESSAGE_LEN_MAX
            {
                break Err("a snapshot frame longer than any message".to_string());
            }
            let Some(len) = framed_len(rest) else { break Ok(None) };
            at += len;
            let message = match FeedMessage::decode(&rest[2..len]) {
                Ok(message) => message,
                Err(error) => break Err(format!("a snapshot message did not decode: {error}")),
            };
            if let FeedMessage::EndOfSnapshot { next, .. } = message {
                break Ok(Some(next));
            }
            if let Err(error) = book.apply(&message, |_, _| {}) {
                break Err(format!("a snapshot message did not apply: {error}"));
            }
        };
        match outcome {
            Ok(Some(next)) if next > 0 => self.finish_snapshot(book, next, now),
            Ok(Some(_)) => {
                let zero = "a snapshot ending at message 0";
                self.snapshot_failed(io::Error::new(io::ErrorKind::InvalidData, zero), now);
            }
            Ok(None) => {
                input.drain(..at);
                self.sync = Sync::Reading { stream, input, book, deadline };
            }
            Err(error) => self.snapshot_failed(io::Error::new(io::ErrorKind::InvalidData, error), now),
        }
    }

    /// The snapshot is the book before message `next`: what was buffered
    /// below it is already in, the rest is applied.
    fn finish_snapshot(&mut self, book: FeedBook, next: u64, now: Instant) {
        self.book = book;
        self.next = next;
        self.known_end = self.known_end.max(next);
        self.request = None;
        self.in_gap = false;
        self.snapshot_error = None;
        self.sync = Sync::Live;
        self.drain(now);
    }
}

/// Binds the feed's address, joining the group if it is a multicast one.
async fn bind_feed(addr: SocketAddr) -> io::Result<UdpSocket> {
    match addr.ip() {
        IpAddr::V4(group) if group.is_multicast() => {
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, addr.port())).await?;
            socket.join_multicast_v4(group, Ipv4Addr::UNSPECIFIED)?;
            Ok(socket)
        }
        IpAddr::V6(group) if group.is_multicast() => {
            let socket = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, addr.port())).await?;
            socket.join_multicast_v6(&group, 0)?;
            Ok(socket)
        }
        _ => UdpSocket::bind(addr).await,
    }
}

/// A datagram's length, `None` for the errors a UDP socket reports for an
/// earlier datagram (an ICMP "port unreachable" on some systems): those
/// say nothing about the socket.
fn transient(received: io::Result<usize>) -> io::Result<Option<usize>> {
    match received {
        Ok(len) => Ok(Some(len)),
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loss_generator_is_uniform_enough() {
        let mut loss = SplitMix64(7);
        let hits = (0..100_000).filter(|_| loss.next_f64() < 0.05).count();
        assert!((4_000..6_000).contains(&hits), "{hits}");
        let mut again = SplitMix64(7);
        let mut first = SplitMix64(7);
        assert_eq!(again.next_u64(), first.next_u64());
    }
}
