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
mod driver;
mod json_tcp;
mod md;
pub mod session;
mod tcp;
pub mod users;
mod ws;

pub use md::{MdBound, MdConfig};
pub use session::Auth;

pub(crate) use md::Books;

use driver::{Driver, DriverHandle, Ended, Inbound};
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
    /// `None`: no market data (no feed, the public channels refused).
    pub market_data: Option<MdConfig>,
}

/// Where the server listens (the ports, if 0 was asked for, are the ones given).
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    pub binary: SocketAddr,
    pub json: SocketAddr,
    pub http: SocketAddr,
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
    if matches!(config.auth, Auth::Open) {
        for addr in [config.binary_addr, config.json_addr, config.http_addr] {
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
    ];
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
        md: None,
    };
    let durable = config.engine.durability.is_some();
    let (engine, reader) = Engine::start(config.engine).map_err(ServeError::Start)?;
    if let Some(report) = engine.recovery() {
        tracing::info!(last_seq = report.last_seq, records = report.records_applied, "recovered the data directory");
    }
    let limits = config.limits;
    let books = resting_books(&engine).map_err(ServeError::EngineStopped)?;
    // The feed continues its session only if nothing was replayed after the
    // snapshot that kept its state (a clean stop).
    let md_state = engine
        .recovery()
        .filter(|report| report.records_applied == 0)
        .and_then(|report| md::MdState::decode(split_annex(&report.snapshot_annex).1));
    let md_queue = config.market_data.as_ref().map_or(0, |md| md.queue);
    let (market_data, md_feed, snapshot_listener) = match (config.market_data, snapshot_listener) {
        (Some(md_config), Some(listener)) => {
            let (market_data, feed, listener) =
                md::start(md_config, &books, md_state, listener).map_err(ServeError::MarketData)?;
            bound.md = Some(market_data.bound);
            (Some(market_data), Some(feed), Some(listener))
        }
        _ => (None, None, None),
    };
    // Room for every session's whole allowance, so a session never waits on it.
    let (inbound_tx, inbound_rx) = mpsc::channel(limits.connections * (limits.in_flight + 2));
    let driver =
        Driver::new(engine, reader, inbound_rx, &limits, &books, md_feed).map_err(ServeError::EngineStopped)?;
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
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.io_threads.max(1))
        .thread_name("io")
        .enable_all()
        .build()
        .map_err(ServeError::Io)?;
    let result = runtime.block_on(async {
        let [binary, json, http] = listeners;
        let connections = Arc::new(Semaphore::new(limits.connections));
        let binary = TcpListener::from_std(binary).map_err(ServeError::Io)?;
        let json = TcpListener::from_std(json).map_err(ServeError::Io)?;
        let http = TcpListener::from_std(http).map_err(ServeError::Io)?;
        tokio::spawn(accept(binary, Arc::clone(&context), Arc::clone(&connections), Door::Binary));
        tokio::spawn(accept(json, Arc::clone(&context), Arc::clone(&connections), Door::Json));
        if let (Some(listener), Some(md)) = (snapshot_listener, &context.md) {
            tokio::spawn(md::serve_snapshots(listener, md.clone(), context.shutdown.clone()));
        }
        let mut http_shutdown = context.shutdown.clone();
        let app = ws::router(Arc::clone(&context)).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move {
            let stop = async move {
                let _ = http_shutdown.wait_for(|stop| *stop).await;
            };
            if let Err(error) = axum::serve(http, app).with_graceful_shutdown(stop).await {
                tracing::error!(%error, "HTTP server failed");
            }
        });
        ready(bound);
        tracing::info!(binary = %bound.binary, json = %bound.json, http = %bound.http, durable, "serving");
        // Until asked to stop, or the engine stops on its own.
        let driver_done = tokio::task::spawn_blocking(move || driver_thread.join());
        tokio::pin!(driver_done);
        let ended = tokio::select! {
            () = stop_signal() => {
                tracing::info!("stopping: finishing what is queued");
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
    runtime.shutdown_timeout(Duration::from_secs(2));
    // Market data publishes what the driver handed it, then stops.
    let md_state = market_data.and_then(md::MarketData::stop);
    match result? {
        Ended::Shutdown(engine, cids) => {
            if durable {
                let annex = join_annex(&cids, &md_state.map(|s| s.encode()).unwrap_or_default());
                let seq = engine.snapshot_with(&annex).map_err(ServeError::Snapshot)?;
                tracing::info!(seq, "snapshot written");
            }
            engine.shutdown();
            tracing::info!("stopped");
            Ok(())
        }
        Ended::EngineStopped(stopped, engine) => {
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

/// The annex of `serve`'s snapshots: `ANX2`, the length of the first part
/// (u32 LE), the resting orders' cids (the driver's), then the feed's state.
/// An annex without the tag (an older build's) is all cids.
const ANNEX_TAG: &[u8; 4] = b"ANX2";

fn join_annex(cids: &[u8], md: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + cids.len() + md.len());
    out.extend_from_slice(ANNEX_TAG);
    out.extend_from_slice(&(cids.len() as u32).to_le_bytes());
    out.extend_from_slice(cids);
    out.extend_from_slice(md);
    out
}

/// `(cids, market data)` of an annex.
pub(crate) fn split_annex(annex: &[u8]) -> (&[u8], &[u8]) {
    let Some(rest) = annex.strip_prefix(ANNEX_TAG) else { return (annex, &[]) };
    let Some(len) = rest.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize) else {
        return (annex, &[]);
    };
    match (rest.get(4..4 + len), rest.get(4 + len..)) {
        (Some(cids), Some(md)) => (cids, md),
        _ => (annex, &[]),
    }
}

#[derive(Clone, Copy)]
enum Door {
    Binary,
    Json,
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
        tokio::spawn(async move {
            match door {
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
