//! `matching-engine serve`: the engine as a network service.
//!
//! Three front doors, one data path:
//!
//! ```text
//!  binary TCP ─┐                                     ┌─ shard ─┐
//!  JSON TCP ───┼─ sessions ─▶ driver ─▶ sequencer ───┤  shard  ├─▶ merger ─▶ driver ─▶ sessions
//!  WebSocket ──┘  (tokio)     (one thread)  + journal └─ shard ─┘ (durable only)  (routes)
//! ```
//!
//! - [`session`]: a connection, whatever its encoding: login, bounds, batching.
//! - `json_tcp`, `ws`, `binary_tcp`: the encodings.
//! - `driver`: the one thread that submits to the engine and routes its
//!   events; its `Driver::run` is the data path in one function.
//! - [`users`]: the `--users` file: who may log in, as what.
//! - `md`: market data (the feed, re-requests, snapshots, JSON channels).
//! - `ops`: metrics, health and the operator console over HTTP
//!   (`--metrics-addr`); [`stats`]: the counters they read.
//! - [`config`]: the configuration file and its layers (flags, `ME_…`).
//!
//! A reply reaches a client only once the command is durable (the engine's
//! reader releases nothing earlier). On SIGINT or SIGTERM the server stops
//! accepting, finishes what is queued, writes a snapshot and exits 0.

#![deny(unsafe_code)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use std::fmt;
use std::io;

use matching_pipeline::{Answer, Engine, EngineConfig, Query, StartError, Stopped};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};

mod binary_tcp;
pub mod config;
mod driver;
mod fix;
mod json_tcp;
mod md;
mod ops;
mod rest;
pub mod session;
pub mod stats;
mod tcp;
pub mod users;
mod ws;

pub use fix::{FixConfig, OUR_COMP_ID, TAG_STP_MODE};
pub use md::{MdBound, MdConfig};
pub use session::Auth;

pub(crate) use md::Books;

use driver::{Driver, DriverHandle, DriverSetup, Ended, Inbound};
use session::Context;

/// Every bound of the service.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest frame (binary), line (JSON) or message (WebSocket), in bytes.
    pub frame_bytes: usize,
    /// Open connections over all front doors.
    pub connections: usize,
    /// A session's requests awaiting their answer; beyond it the session
    /// stops reading.
    pub in_flight: usize,
    /// Replies queued for a session's client; beyond it the session is dropped.
    pub outbox: usize,
    /// A session's requests a second (and burst).
    pub rate_per_s: u32,
    pub login_timeout: Duration,
    /// Binary sessions: the server's heartbeat interval.
    pub heartbeat: Duration,
    /// Binary sessions: a client silent this long is dropped.
    pub idle_timeout: Duration,
    /// A write that takes longer drops the session.
    pub write_timeout: Duration,
    /// Most commands submitted to the engine in one batch.
    pub batch: usize,
    /// Recent user events kept for a login's `resume_after` (in memory).
    pub resume_events: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            frame_bytes: 4096,
            connections: 1024,
            in_flight: 1024,
            outbox: 16384,
            rate_per_s: 200_000,
            login_timeout: Duration::from_secs(5),
            heartbeat: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            batch: 4096,
            resume_events: 1 << 18,
        }
    }
}

/// What `serve` runs.
pub struct ServerConfig {
    pub engine: EngineConfig,
    pub binary_addr: SocketAddr,
    pub json_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub auth: Auth,
    pub limits: Limits,
    /// Tokio worker threads (the engine's own threads come on top).
    pub io_threads: usize,
    /// Where the web page's files are read from; `None`: the copy built in.
    pub web_dir: Option<std::path::PathBuf>,
    /// `None`: no market data (no feed, the public channels refused).
    pub market_data: Option<MdConfig>,
    /// Metrics (`/metrics`), health (`/health/live`, `/health/ready`) and
    /// the operator console (`/admin/...`), over HTTP.
    pub metrics_addr: SocketAddr,
    /// A snapshot is written this often while serving (besides the one at
    /// a clean stop); `None`: only at a clean stop.
    pub snapshot_interval: Option<Duration>,
    /// Tick and lot sizes of listed symbols: a price or quantity that is not
    /// a multiple is refused at the gateway. (The fixed list of symbols
    /// itself is `engine.exchange.instruments`.)
    pub instruments: Vec<Instrument>,
    /// The FIX 4.4 gateway; `None`: none.
    pub fix: Option<FixConfig>,
}

/// A listed symbol's tick (price increment) and lot (quantity increment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instrument {
    pub symbol: matching_core::Symbol,
    pub tick: u64,
    pub lot: u64,
}

/// Where metrics, health and the operator console listen by default.
pub const METRICS_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7702);

/// Where the server listens (the ports, if 0 was asked for, are the ones given).
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    pub binary: SocketAddr,
    pub json: SocketAddr,
    pub http: SocketAddr,
    /// Metrics, health and the operator console.
    pub metrics: SocketAddr,
    /// The FIX gateway.
    pub fix: Option<SocketAddr>,
    /// Where the feed's re-request server and snapshot service listen.
    pub md: Option<MdBound>,
}

/// Why the server did not start, or stopped other than as asked.
#[derive(Debug)]
pub enum ServeError {
    /// Open development mode (no users file) on an address that is not loopback.
    OpenModeNotLoopback(SocketAddr),
    /// A front door could not listen.
    Listen { what: &'static str, addr: SocketAddr, error: io::Error },
    /// The engine did not start: its configuration, or its data directory.
    Start(StartError),
    /// The engine stopped on its own (a failed disk, a dead shard).
    EngineStopped(Stopped),
    /// The final snapshot could not be written.
    Snapshot(io::Error),
    /// A thread or the runtime could not start, or the driver thread panicked.
    Io(io::Error),
    /// Market data could not start (its sockets).
    MarketData(io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::OpenModeNotLoopback(addr) => {
                write!(f, "without --users the server is open to anyone, so it listens on loopback only: {addr} is not")
            }
            ServeError::Listen { what, addr, error } => write!(f, "cannot listen for {what} on {addr}: {error}"),
            ServeError::Start(error) => write!(f, "{error}"),
            ServeError::EngineStopped(stopped) => write!(f, "{stopped}"),
            ServeError::Snapshot(error) => write!(f, "cannot write the final snapshot: {error}"),
            ServeError::Io(error) => write!(f, "{error}"),
            ServeError::MarketData(error) => write!(f, "cannot start market data: {error}"),
        }
    }
}

impl std::error::Error for ServeError {}

fn bind(addr: SocketAddr, what: &'static str) -> Result<StdListener, ServeError> {
    let listen = |error| ServeError::Listen { what, addr, error };
    let listener = StdListener::bind(addr).map_err(listen)?;
    listener.set_nonblocking(true).map_err(listen)?;
    Ok(listener)
}

/// Starts the engine (recovering its data directory), listens, and serves
/// until SIGINT/SIGTERM; `ready` is told where it listens once it does.
pub fn run(config: ServerConfig, ready: impl FnOnce(Bound)) -> Result<(), ServeError> {
    run_with(config, |_| {}, ready)
}

/// As [`run`]; `operating` is told where metrics, health and the console
/// listen as soon as they do, before recovery (which `/health/ready` then
/// reports as `recovering`).
pub fn run_with(
    config: ServerConfig,
    operating: impl FnOnce(SocketAddr),
    ready: impl FnOnce(Bound),
) -> Result<(), ServeError> {
    let open = matches!(config.auth, Auth::Open);
    if open {
        let fix = config.fix.as_ref().map(|fix| fix.addr);
        for addr in [config.binary_addr, config.json_addr, config.http_addr, config.metrics_addr].into_iter().chain(fix)
        {
            if !addr.ip().is_loopback() {
                return Err(ServeError::OpenModeNotLoopback(addr));
            }
        }
        tracing::warn!("no --users file: OPEN DEVELOPMENT MODE, any user id logs in with any key, as an operator");
    }
    let listeners = [
        bind(config.binary_addr, "the binary protocol")?,
        bind(config.json_addr, "JSON over TCP")?,
        bind(config.http_addr, "HTTP")?,
        bind(config.metrics_addr, "metrics, health and the console")?,
    ];
    let fix_listener = match &config.fix {
        Some(fix) => Some(bind(fix.addr, "FIX")?),
        None => None,
    };
    let snapshot_listener = match &config.market_data {
        Some(md) => Some(StdListener::bind(md.snapshot_addr).map_err(|error| ServeError::Listen {
            what: "the market-data snapshot service",
            addr: md.snapshot_addr,
            error,
        })?),
        None => None,
    };
    let mut bound = Bound {
        binary: listeners[0].local_addr().map_err(ServeError::Io)?,
        json: listeners[1].local_addr().map_err(ServeError::Io)?,
        http: listeners[2].local_addr().map_err(ServeError::Io)?,
        metrics: listeners[3].local_addr().map_err(ServeError::Io)?,
        fix: fix_listener.as_ref().map(|l| l.local_addr()).transpose().map_err(ServeError::Io)?,
        md: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.io_threads.max(1))
        .thread_name("io")
        .enable_all()
        .build()
        .map_err(ServeError::Io)?;
    let [binary, json, http, metrics] = listeners;
    // Health, metrics and the console answer from now on, recovery included.
    let storage = config.engine.durability.as_ref().map(|d| Arc::clone(&d.storage));
    let ops = Arc::new(ops::Ops::new(storage, open));
    let (ops_stop_tx, mut ops_stop) = watch::channel(false);
    {
        let _entered = runtime.enter();
        let metrics = TcpListener::from_std(metrics).map_err(ServeError::Io)?;
        let stop = async move {
            let _ = ops_stop.wait_for(|stop| *stop).await;
        };
        runtime.spawn(ops::serve(metrics, Arc::clone(&ops), stop));
    }
    operating(bound.metrics);
    let listeners = Listeners { doors: [binary, json, http], fix: fix_listener, snapshot: snapshot_listener };
    let result = serve(config, &runtime, &ops, listeners, &mut bound, ready);
    if let Err(error) = &result {
        ops.set_phase(ops::Phase::Failed, &error.to_string());
    }
    let _ = ops_stop_tx.send(true);
    runtime.shutdown_timeout(Duration::from_secs(2));
    result
}

/// The sockets `serve` listens on, bound before recovery.
struct Listeners {
    /// Binary, JSON over TCP, HTTP.
    doors: [StdListener; 3],
    fix: Option<StdListener>,
    /// The market-data snapshot service.
    snapshot: Option<StdListener>,
}

/// Recovers, serves until asked to stop (or the engine stops), and writes
/// the final snapshot.
fn serve(
    config: ServerConfig,
    runtime: &tokio::runtime::Runtime,
    ops: &Arc<ops::Ops>,
    listeners: Listeners,
    bound: &mut Bound,
    ready: impl FnOnce(Bound),
) -> Result<(), ServeError> {
    let Listeners { doors, fix: fix_listener, snapshot: snapshot_listener } = listeners;
    let durable = config.engine.durability.is_some();
    ops.set_phase(ops::Phase::Recovering, if durable { "recovering the data directory" } else { "starting" });
    let started = std::time::Instant::now();
    let (engine, reader) = Engine::start(config.engine).map_err(ServeError::Start)?;
    if let Some(report) = engine.recovery() {
        let seconds = started.elapsed().as_secs_f64();
        let _ = ops.recovery.set((seconds, report.records_applied));
        tracing::info!(
            last_seq = report.last_seq,
            snapshot_seq = report.snapshot.map(|(seq, _)| seq),
            records = report.records_applied,
            torn_tail = report.torn_tail.as_ref().map(|t| t.reason.as_str()),
            seconds,
            "recovered the data directory"
        );
    }
    let _ = ops.monitor.set(engine.monitor());
    let limits = config.limits;
    let books = resting_books(&engine).map_err(ServeError::EngineStopped)?;
    // The feed continues its session only if nothing was replayed after the
    // snapshot that kept its state (a clean stop).
    let md_state = engine
        .recovery()
        .filter(|report| report.records_applied == 0)
        .and_then(|report| md::MdState::decode(Annex::split(&report.snapshot_annex).md));
    let md_queue = config.market_data.as_ref().map_or(0, |md| md.queue);
    let (market_data, md_feed, snapshot_listener) = match (config.market_data, snapshot_listener) {
        (Some(md_config), Some(listener)) => {
            let (market_data, feed, listener) = md::start(md_config, &books, md_state, listener, Arc::clone(&ops.md))
                .map_err(ServeError::MarketData)?;
            bound.md = Some(market_data.bound);
            (Some(market_data), Some(feed), Some(listener))
        }
        _ => (None, None, None),
    };
    // Room for every session's whole allowance, so a session never waits on it.
    let (inbound_tx, inbound_rx) = mpsc::channel(limits.connections * (limits.in_flight + 2));
    let setup = DriverSetup {
        limits: &limits,
        books: &books,
        md: md_feed,
        stats: Arc::clone(&ops.driver),
        instruments: &config.instruments,
        snapshot_interval: config.snapshot_interval,
    };
    let driver = Driver::new(engine, reader, inbound_rx, setup).map_err(ServeError::EngineStopped)?;
    drop(books);
    let driver_thread =
        std::thread::Builder::new().name("driver".into()).spawn(move || driver.run()).map_err(ServeError::Io)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let context = Arc::new(Context {
        driver: DriverHandle::new(inbound_tx, driver_thread.thread().clone()),
        auth: config.auth,
        limits,
        next_session: AtomicU64::new(1),
        shutdown: shutdown_rx,
        md: market_data.as_ref().map(|md| md.handle.clone()),
        md_queue,
        stats: Arc::clone(&ops.sessions),
    });
    let _ = ops.context.set(Arc::clone(&context));
    let bound = *bound;
    let result = runtime.block_on(async {
        let [binary, json, http] = doors;
        let connections = Arc::new(Semaphore::new(limits.connections));
        let binary = TcpListener::from_std(binary).map_err(ServeError::Io)?;
        let json = TcpListener::from_std(json).map_err(ServeError::Io)?;
        let http = TcpListener::from_std(http).map_err(ServeError::Io)?;
        tokio::spawn(accept(binary, Arc::clone(&context), Arc::clone(&connections), Door::Binary));
        tokio::spawn(accept(json, Arc::clone(&context), Arc::clone(&connections), Door::Json));
        if let (Some(listener), Some(fix)) = (fix_listener, &config.fix) {
            let listener = TcpListener::from_std(listener).map_err(ServeError::Io)?;
            let door = Door::Fix(Arc::new(fix.clone()), fix::Active::default());
            tokio::spawn(accept(listener, Arc::clone(&context), Arc::clone(&connections), door));
        }
        if let (Some(listener), Some(md)) = (snapshot_listener, &context.md) {
            tokio::spawn(md::serve_snapshots(listener, md.clone(), context.shutdown.clone()));
        }
        let mut http_shutdown = context.shutdown.clone();
        let app = ws::router(Arc::clone(&context))
            .merge(rest::router(Arc::clone(&context), config.web_dir.clone()))
            .into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move {
            let stop = async move {
                let _ = http_shutdown.wait_for(|stop| *stop).await;
            };
            if let Err(error) = axum::serve(http, app).with_graceful_shutdown(stop).await {
                tracing::error!(%error, "HTTP server failed");
            }
        });
        ready(bound);
        ops.set_phase(ops::Phase::Ready, "");
        tracing::info!(
            binary = %bound.binary,
            json = %bound.json,
            http = %bound.http,
            metrics = %bound.metrics,
            durable,
            "serving"
        );
        // Until asked to stop, or the engine stops on its own.
        let driver_done = tokio::task::spawn_blocking(move || driver_thread.join());
        tokio::pin!(driver_done);
        let ended = tokio::select! {
            () = stop_signal() => {
                ops.set_phase(ops::Phase::ShuttingDown, "finishing what is queued");
                let _ = shutdown_tx.send(true);
                context.driver.send(Inbound::Shutdown).await;
                driver_done.await
            }
            ended = &mut driver_done => ended,
        };
        let _ = shutdown_tx.send(true);
        let panicked = || ServeError::Io(io::Error::other("the driver thread panicked"));
        let ended = ended.map_err(|_| panicked())?.map_err(|_| panicked())?;
        // Let sessions write their last replies and goodbyes.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok::<_, ServeError>(ended)
    });
    // Market data publishes what the driver handed it, then stops.
    let md_state = market_data.and_then(md::MarketData::stop);
    match result? {
        Ended::Shutdown(engine, annex) => {
            if durable {
                ops.set_phase(ops::Phase::ShuttingDown, "writing the final snapshot");
                let md = md_state.map(|s| s.encode()).unwrap_or_default();
                let seq = engine
                    .snapshot_with(&Annex::join(&annex.cids, &md, &annex.killed))
                    .map_err(ServeError::Snapshot)?;
                tracing::info!(seq, "snapshot written");
            }
            engine.shutdown();
            tracing::info!("stopped");
            Ok(())
        }
        Ended::EngineStopped(stopped, engine) => {
            tracing::error!(%stopped, "the engine stopped; exiting");
            ops.set_phase(ops::Phase::Failed, &stopped.to_string());
            engine.shutdown();
            Err(ServeError::EngineStopped(stopped))
        }
    }
}

/// The resting orders of every book, in priority order, and its status.
fn resting_books(engine: &Engine) -> Result<Books, Stopped> {
    let mut books = Vec::new();
    if let Answer::State(states) = engine.query(Query::State)? {
        for state in states {
            if let Answer::Book { bids, asks, status } = engine.query(Query::Book(state.symbol))? {
                books.push((state.symbol, status, bids.into_iter().chain(asks).collect()));
            }
        }
    }
    Ok(books)
}

/// What `serve` keeps with a snapshot (its annex): the resting orders'
/// cids (the driver's), the feed's state (the md thread's), the users
/// whose kill switch is on (the driver's).
///
/// Layout: `ANX3`, then each part as its length (u32 LE) and its bytes. An
/// annex tagged `ANX2` has the first two parts only; one without a tag (an
/// older build's) is all cids.
pub(crate) struct Annex<'a> {
    pub(crate) cids: &'a [u8],
    pub(crate) md: &'a [u8],
    pub(crate) killed: &'a [u8],
}

const ANNEX_TAG: &[u8; 4] = b"ANX3";
const ANNEX_TAG_V2: &[u8; 4] = b"ANX2";

impl<'a> Annex<'a> {
    pub(crate) fn join(cids: &[u8], md: &[u8], killed: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + cids.len() + md.len() + killed.len());
        out.extend_from_slice(ANNEX_TAG);
        for part in [cids, md, killed] {
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    pub(crate) fn split(annex: &'a [u8]) -> Annex<'a> {
        let untagged = Annex { cids: annex, md: &[], killed: &[] };
        let (rest, parts) = if let Some(rest) = annex.strip_prefix(ANNEX_TAG) {
            (rest, 3)
        } else if let Some(rest) = annex.strip_prefix(ANNEX_TAG_V2) {
            // The feed's state runs to the end.
            let Some(len) = rest.first_chunk::<4>().map(|b| u32::from_le_bytes(*b) as usize) else { return untagged };
            return match (rest.get(4..4 + len), rest.get(4 + len..)) {
                (Some(cids), Some(md)) => Annex { cids, md, killed: &[] },
                _ => untagged,
            };
        } else {
            return untagged;
        };
        let mut parts_read: [&[u8]; 3] = [&[]; 3];
        let mut at = 0;
        for part in parts_read.iter_mut().take(parts) {
            let Some(len) = rest.get(at..).and_then(|r| r.first_chunk::<4>()).map(|b| u32::from_le_bytes(*b) as usize)
            else {
                return untagged;
            };
            let Some(bytes) = rest.get(at + 4..at + 4 + len) else { return untagged };
            *part = bytes;
            at += 4 + len;
        }
        let [cids, md, killed] = parts_read;
        Annex { cids, md, killed }
    }
}

#[derive(Clone)]
enum Door {
    Binary,
    Json,
    /// The FIX gateway, and which of its sessions are logged on.
    Fix(Arc<FixConfig>, fix::Active),
}

/// Accepts connections until shutdown; each gets a session task.
async fn accept(listener: TcpListener, context: Arc<Context>, connections: Arc<Semaphore>, door: Door) {
    let mut shutdown = context.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, say: back off a little.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            tracing::warn!(%peer, "connection refused: at the connection limit");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let context = Arc::clone(&context);
        let frame_max = context.limits.frame_bytes;
        let door = door.clone();
        tokio::spawn(async move {
            match door {
                Door::Fix(config, active) => {
                    let fix = fix::Fix::new(stream, frame_max, config, active, Arc::clone(&context));
                    session::run(fix, context, peer.ip()).await
                }
                Door::Binary => session::run(binary_tcp::Binary::new(stream, frame_max), context, peer.ip()).await,
                Door::Json => session::run(json_tcp::JsonLines::new(stream, frame_max), context, peer.ip()).await,
            }
            drop(permit);
        });
    }
}

/// SIGINT or SIGTERM.
async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
