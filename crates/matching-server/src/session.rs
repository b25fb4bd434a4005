//! One client connection, whatever its encoding: the login, then requests
//! to the driver and replies back, within the session's bounds.
//!
//! A [`Transport`] reads and writes one encoding (JSON lines, WebSocket
//! messages, binary frames); [`run`] is the session itself:
//!
//! - the first message must be a login, within the login timeout; a wrong
//!   key is refused and the connection closed;
//! - at most `in_flight` requests await their answer: beyond it the
//!   session stops reading (the client's sends back up in TCP), never the
//!   engine;
//! - a token bucket refuses requests over the rate (`rate_limited`), and a
//!   run of messages it cannot read ends the session;
//! - replies are written in batches: everything queued goes out in one write;
//! - the driver may drop the session (its outbox filled: a client that
//!   stopped reading); the client is told why, and the connection closed.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use matching_core::UserId;
use matching_proto::session::{GatewayReason, LoginError, Refusal, Reply, Request};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

use crate::Limits;
use crate::driver::{DriverHandle, Inbound, Kill, Outbox, Outgoing, SessionId};
use crate::stats::{Cause, Protocol, SessionStats};
use crate::users::{Role, Users};

/// What a transport read.
pub(crate) enum Incoming {
    Request(Request),
    /// A binary heartbeat: the client is alive.
    Heartbeat,
    /// Handled by the transport, which has output to write.
    Flush,
    /// Something that is not a request, and why (echoing what it could read).
    Refused(Refusal),
}

/// One encoding over one connection.
pub(crate) trait Transport: Send {
    /// The next message; `Ok(None)` once the client has closed. Must be
    /// cancel-safe (it races the outbox in a `select!`).
    async fn recv(&mut self) -> io::Result<Option<Incoming>>;
    /// The next request already read (no waiting), if the next message is
    /// one that goes to the driver; anything else stays for
    /// [`Transport::recv`]. Lets a session hand the driver everything one
    /// read brought in one go.
    fn next_buffered(&mut self) -> Option<Request> {
        None
    }
    /// Appends `reply` to what the next [`Transport::flush`] writes.
    fn encode(&mut self, reply: &Reply);
    /// Writes what was encoded.
    async fn flush(&mut self) -> io::Result<()>;
    /// Whether the encoding has heartbeats (the client must send something
    /// every `heartbeat`, or be dropped after `idle_timeout`).
    fn heartbeats(&self) -> bool {
        false
    }
    /// Appends a server heartbeat.
    fn encode_heartbeat(&mut self) {}
    /// The session's user (a JSON command without `user` is its).
    fn logged_in(&mut self, _user: UserId) {}
    /// A write was cut off midway: drop what is encoded, write nothing more
    /// (a reply after half a reply would be garbage).
    fn abandon(&mut self);
    /// Appends a market-data message (already encoded) to what the next
    /// flush writes (encodings with public channels only).
    fn encode_public(&mut self, _text: String) {}
    /// Whether the connection subscribed to a public channel: it may then
    /// stay without a login, and requests before one are refused, not fatal.
    fn public(&self) -> bool {
        false
    }
    /// Which front door this is (for metrics and the console).
    fn protocol(&self) -> Protocol;
    /// The role of a login the transport authenticated itself (FIX: by its
    /// CompIDs); `None`: the login's key is checked.
    fn authenticated(&self) -> Option<Role> {
        None
    }
    /// Called about once a second (`limits.heartbeat`) while logged in: the
    /// transport's own timers; `Err` ends the session with that reason.
    fn on_tick(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// What a connection with public channels receives from the md thread: its
/// bounded queue, and how it is told it is cut off.
pub(crate) struct MdInbox {
    pub(crate) rx: mpsc::Receiver<String>,
    pub(crate) kill: Arc<Kill>,
}

/// The next market-data message; never, without an inbox.
async fn next_public(inbox: &mut Option<MdInbox>) -> Option<String> {
    match inbox {
        Some(inbox) => inbox.rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Encodes what else is queued for the connection, up to a write's worth.
fn encode_public<T: Transport>(transport: &mut T, first: String, inbox: &mut Option<MdInbox>) {
    transport.encode_public(first);
    let Some(inbox) = inbox else { return };
    for _ in 1..WRITE_BATCH {
        let Ok(text) = inbox.rx.try_recv() else { break };
        transport.encode_public(text);
    }
}

/// Who may log in.
pub enum Auth {
    /// No `--users`: anyone, as any user, with operator rights (loopback only).
    Open,
    Users(Users),
}

impl Auth {
    pub(crate) fn check(&self, user: UserId, key: &str) -> Option<Role> {
        match self {
            Auth::Open => Some(Role::Operator),
            Auth::Users(users) => users.check(user, key),
        }
    }
}

/// What every session shares.
pub(crate) struct Context {
    pub(crate) driver: DriverHandle,
    pub(crate) auth: Auth,
    pub(crate) limits: Limits,
    pub(crate) next_session: AtomicU64,
    /// Turns true when the server shuts down.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Market data (public channels), if the server runs it.
    pub(crate) md: Option<crate::md::MdHandle>,
    /// Market-data messages queued for one connection.
    pub(crate) md_queue: usize,
    /// What sessions count: connections, refusals, how they ended.
    pub(crate) stats: Arc<SessionStats>,
}

/// Counts a connection open while it lives, and how it ended.
struct Counted<'a> {
    stats: &'a SessionStats,
    protocol: Protocol,
    cause: Cause,
}

impl Counted<'_> {
    fn new(stats: &SessionStats, protocol: Protocol) -> Counted<'_> {
        stats.connections[protocol as usize].fetch_add(1, Ordering::Relaxed);
        Counted { stats, protocol, cause: Cause::ClientLeft }
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.stats.connections[self.protocol as usize].fetch_sub(1, Ordering::Relaxed);
        self.stats.ended(self.protocol, self.cause);
    }
}

/// A token bucket: `rate` a second, as many at once.
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u32) -> Bucket {
        Bucket { rate: rate as f64, tokens: rate as f64, at: Instant::now() }
    }

    /// Adds what has accrued since the last refill (one clock read for a batch).
    fn refill(&mut self) {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.rate.max(1.0));
        self.at = now;
    }

    fn take(&mut self) -> bool {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The session's end of its outbox: batches from the driver, taken a reply
/// at a time (each taken reply is one fewer queued).
pub(crate) struct Replies {
    batches: mpsc::UnboundedReceiver<Vec<Outgoing>>,
    queued: Arc<AtomicUsize>,
    batch: std::vec::IntoIter<Outgoing>,
}

impl Replies {
    /// The next reply, waiting for one; `None` once the driver let go.
    /// Cancel-safe: a batch received is kept whole.
    async fn next(&mut self) -> Option<Outgoing> {
        if let Some(reply) = self.take() {
            return Some(reply);
        }
        self.batch = self.batches.recv().await?.into_iter();
        self.take()
    }

    /// The next reply if one is there.
    fn try_next(&mut self) -> Option<Outgoing> {
        if let Some(reply) = self.take() {
            return Some(reply);
        }
        self.batch = self.batches.try_recv().ok()?.into_iter();
        self.take()
    }

    fn take(&mut self) -> Option<Outgoing> {
        let reply = self.batch.next()?;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        Some(reply)
    }
}

/// Messages a session may send in a row that cannot be read before it is dropped.
const REFUSED_IN_A_ROW_MAX: u32 = 16;
/// Replies encoded before a write.
const WRITE_BATCH: usize = 1024;

async fn say_goodbye<T: Transport>(transport: &mut T, reply: Reply) {
    transport.encode(&reply);
    let _ = timeout(Duration::from_secs(1), transport.flush()).await;
}

/// Serves one connection until it ends.
pub(crate) async fn run<T: Transport>(transport: T, context: Arc<Context>, peer: IpAddr) {
    run_with_public(transport, context, peer, None).await
}

/// Serves one connection that may also subscribe to public channels
/// (`inbox`): until it logs in, it may only subscribe, and need not log in.
pub(crate) async fn run_with_public<T: Transport>(
    mut transport: T,
    context: Arc<Context>,
    peer: IpAddr,
    mut inbox: Option<MdInbox>,
) {
    let limits = context.limits;
    let protocol = transport.protocol();
    let mut counted = Counted::new(&context.stats, protocol);
    let kill = inbox.as_ref().map_or_else(|| Arc::new(Kill::default()), |inbox| Arc::clone(&inbox.kill));
    let deadline = tokio::time::Instant::now() + limits.login_timeout;
    let mut refused_in_a_row = 0;
    let login = loop {
        tokio::select! {
            biased;
            () = kill.killed() => {
                counted.cause = kill.cause().unwrap_or(Cause::Shutdown);
                let reason = kill.reason().unwrap_or_default().to_string();
                return say_goodbye(&mut transport, Reply::Goodbye { reason }).await;
            }
            text = next_public(&mut inbox) => {
                let Some(text) = text else { return };
                encode_public(&mut transport, text, &mut inbox);
                if !matches!(timeout(limits.write_timeout, transport.flush()).await, Ok(Ok(()))) {
                    return;
                }
            }
            incoming = transport.recv() => match incoming {
                Ok(Some(Incoming::Request(Request::Login(login)))) => break login,
                Ok(Some(Incoming::Flush)) => {
                    if transport.flush().await.is_err() {
                        return;
                    }
                }
                Ok(Some(other)) if transport.public() => {
                    refused_in_a_row += 1;
                    if refused_in_a_row >= REFUSED_IN_A_ROW_MAX {
                        counted.cause = Cause::Garbage;
                        let reason = format!("{refused_in_a_row} messages in a row that are not requests");
                        return say_goodbye(&mut transport, Reply::Goodbye { reason }).await;
                    }
                    let refusal = match other {
                        Incoming::Refused(refusal) => refusal,
                        _ => Refusal::new(GatewayReason::NotLoggedIn),
                    };
                    context.stats.refused(refusal.reason);
                    let reply = refusal.into();
                    transport.encode(&reply);
                    if transport.flush().await.is_err() {
                        return;
                    }
                }
                Ok(Some(_)) => {
                    counted.cause = Cause::Garbage;
                    return say_goodbye(&mut transport, Reply::LoginRejected { reason: LoginError::Malformed }).await;
                }
                Ok(None) | Err(_) => return,
            },
            () = tokio::time::sleep_until(deadline), if !transport.public() => {
                counted.cause = Cause::LoginTimeout;
                let reason = format!("no login within {} s", limits.login_timeout.as_secs_f64());
                return say_goodbye(&mut transport, Reply::Goodbye { reason }).await;
            }
        }
    };
    let Some(role) = transport.authenticated().or_else(|| context.auth.check(login.user, &login.key)) else {
        counted.cause = Cause::BadCredentials;
        tracing::info!(user = login.user, %peer, protocol = protocol.label(), "login refused: bad credentials");
        return say_goodbye(&mut transport, Reply::LoginRejected { reason: LoginError::BadCredentials }).await;
    };
    if *context.shutdown.borrow() {
        counted.cause = Cause::Shutdown;
        return say_goodbye(&mut transport, Reply::LoginRejected { reason: LoginError::Unavailable }).await;
    }
    let session: SessionId = context.next_session.fetch_add(1, Ordering::Relaxed);
    let (replies, outbox) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let mut outbox = Replies { batches: outbox, queued: Arc::clone(&queued), batch: Vec::new().into_iter() };
    let open = Inbound::Open {
        session,
        user: login.user,
        role,
        protocol,
        peer,
        cancel_on_disconnect: login.cancel_on_disconnect,
        resume_after: login.resume_after,
        outbox: Outbox { replies, queued, kill: Arc::clone(&kill) },
    };
    if !context.driver.send(open).await {
        counted.cause = Cause::Shutdown;
        return say_goodbye(&mut transport, Reply::LoginRejected { reason: LoginError::Unavailable }).await;
    }
    tracing::info!(session, user = login.user, role = role.as_str(), protocol = protocol.label(), %peer, "session started");
    transport.logged_in(login.user);
    transport.encode(&Reply::LoginAccepted { user: login.user });
    let mut shutdown = context.shutdown.clone();
    let (cause, reason) = serve(&mut transport, &context, session, &mut outbox, &kill, &mut shutdown, &mut inbox).await;
    counted.cause = cause;
    context.driver.send(Inbound::Closed { session }).await;
    // What the driver queued before it let go goes out first.
    while let Some(Outgoing { reply, .. }) = outbox.try_next() {
        transport.encode(&reply);
    }
    tracing::info!(
        session,
        user = login.user,
        protocol = protocol.label(),
        cause = cause.label(),
        reason = reason.as_deref().unwrap_or("the client left"),
        "session ended"
    );
    match reason {
        Some(reason) => say_goodbye(&mut transport, Reply::Goodbye { reason }).await,
        None => {
            let _ = timeout(Duration::from_secs(1), transport.flush()).await;
        }
    }
}

/// The logged-in session; returns why it ended, and what the client is
/// told (`None`: the client left, nothing to tell).
async fn serve<T: Transport>(
    transport: &mut T,
    context: &Context,
    session: SessionId,
    outbox: &mut Replies,
    kill: &Kill,
    shutdown: &mut watch::Receiver<bool>,
    inbox: &mut Option<MdInbox>,
) -> (Cause, Option<String>) {
    let killed = |kill: &Kill| (kill.cause().unwrap_or(Cause::Shutdown), kill.reason().map(str::to_string));
    let left = (Cause::ClientLeft, None);
    let write_timed_out = || (Cause::WriteTimeout, Some("write timed out: the client is not reading".to_string()));
    let limits = context.limits;
    let mut bucket = Bucket::new(limits.rate_per_s);
    let mut refused_in_a_row = 0;
    let mut unanswered = 0usize;
    let mut last_heard = Instant::now();
    let mut last_sent = Instant::now();
    let mut tick = tokio::time::interval(limits.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let heartbeats = transport.heartbeats();
    let mut reading = !*shutdown.borrow();
    // The login's answer.
    if transport.flush().await.is_err() {
        return left;
    }
    loop {
        tokio::select! {
            biased;
            () = kill.killed() => return killed(kill),
            _ = shutdown.changed(), if reading => {
                // Stop reading; the driver says goodbye once what is queued is done.
                reading = false;
            }
            first = outbox.next() => {
                let Some(first) = first else { return killed(kill) };
                let mut next = Some(first);
                let mut encoded = 0;
                while let Some(Outgoing { reply, answer }) = next {
                    transport.encode(&reply);
                    unanswered -= usize::from(answer && unanswered > 0);
                    encoded += 1;
                    next = if encoded < WRITE_BATCH { outbox.try_next() } else { None };
                }
                // A client that stopped reading blocks this write; the driver
                // then drops the session, which ends the wait.
                tokio::select! {
                    written = timeout(limits.write_timeout, transport.flush()) => match written {
                        Ok(Ok(())) => last_sent = Instant::now(),
                        Ok(Err(_)) => return left,
                        Err(_) => return write_timed_out(),
                    },
                    () = kill.killed() => {
                        transport.abandon();
                        return killed(kill);
                    }
                }
            }
            text = next_public(inbox) => {
                let Some(text) = text else { return killed(kill) };
                encode_public(transport, text, inbox);
                match timeout(limits.write_timeout, transport.flush()).await {
                    Ok(Ok(())) => last_sent = Instant::now(),
                    Ok(Err(_)) => return left,
                    Err(_) => return write_timed_out(),
                }
            }
            incoming = transport.recv(), if reading && unanswered < limits.in_flight => {
                last_heard = Instant::now();
                let request = match incoming {
                    Ok(None) | Err(_) => return left,
                    Ok(Some(Incoming::Heartbeat)) => continue,
                    Ok(Some(Incoming::Flush)) => {
                        if transport.flush().await.is_err() {
                            return left;
                        }
                        continue;
                    }
                    Ok(Some(Incoming::Refused(refusal))) => {
                        refused_in_a_row += 1;
                        if refused_in_a_row >= REFUSED_IN_A_ROW_MAX {
                            let reason = format!("{refused_in_a_row} messages in a row that are not requests");
                            return (Cause::Garbage, Some(reason));
                        }
                        context.stats.refused(refusal.reason);
                        transport.encode(&refusal.into());
                        if transport.flush().await.is_err() {
                            return left;
                        }
                        continue;
                    }
                    Ok(Some(Incoming::Request(request))) => request,
                };
                refused_in_a_row = 0;
                match request {
                    Request::Logout => return (Cause::Logout, Some("logout".to_string())),
                    Request::Login(_) => {
                        context.stats.refused(GatewayReason::NotLoggedIn);
                        transport.encode(&Reply::Rejected { reason: GatewayReason::NotLoggedIn, order_id: None, cid: None });
                        if transport.flush().await.is_err() {
                            return left;
                        }
                        continue;
                    }
                    _ => {}
                }
                // This request and every one already read after it go to the
                // driver together; those over the rate are refused here.
                bucket.refill();
                let mut requests = Vec::new();
                let mut next = Some(request);
                while let Some(request) = next {
                    if bucket.take() {
                        requests.push(request);
                    } else {
                        context.stats.refused(GatewayReason::RateLimited);
                        transport.encode(&Reply::Rejected { reason: GatewayReason::RateLimited, order_id: None, cid: None });
                    }
                    next = if unanswered + requests.len() < limits.in_flight { transport.next_buffered() } else { None };
                }
                if transport.flush().await.is_err() {
                    return left;
                }
                if requests.is_empty() {
                    continue;
                }
                unanswered += requests.len();
                if !context.driver.send(Inbound::Requests { session, requests }).await {
                    // The driver is gone; it said why before it went (the engine stopped, say).
                    if kill.reason().is_some() {
                        return killed(kill);
                    }
                    return (Cause::Shutdown, Some("the server is stopping".to_string()));
                }
            }
            _ = tick.tick(), if reading => {
                if let Err(reason) = transport.on_tick() {
                    return (Cause::IdleTimeout, Some(reason));
                }
                if heartbeats && last_heard.elapsed() >= limits.idle_timeout {
                    return (Cause::IdleTimeout, Some(format!("nothing heard for {} s", limits.idle_timeout.as_secs_f64())));
                }
                let beat = heartbeats && last_sent.elapsed() >= limits.heartbeat;
                if beat {
                    transport.encode_heartbeat();
                }
                // What the transport's timers wrote, and the heartbeat.
                if transport.flush().await.is_err() {
                    return left;
                }
                if beat {
                    last_sent = Instant::now();
                }
            }
        }
    }
}
