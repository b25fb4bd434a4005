//! `matching-engine serve` and `users add`: the command line of the network
//! service (`matching-server`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::ValueEnum;
use matching_journal::storage::{FsStorage, SimStorage};
use matching_pipeline::{Durability, EngineConfig, FsyncPolicy, WaitStrategy};
use matching_server::config::{self, Flags, LogFormat, LogLevel, ServeFile};
use matching_server::users::{Role, Users, add_fix_session, add_user};
use matching_server::{Auth, ServerConfig};
use tracing_subscriber::filter::LevelFilter;

/// Every setting is also a key of the configuration file (`--config`) and
/// an environment variable (`ME_…`); a flag overrides both
/// (docs/OPERATIONS.md). The defaults below are the file's.
#[derive(clap::Args)]
pub struct Args {
    /// A TOML configuration file (docs/OPERATIONS.md); the environment
    /// (`ME_…`) and the flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit, starting nothing.
    #[arg(long)]
    print_config: bool,
    /// The data directory (journal and snapshots): recovered at start,
    /// created if missing. Default: ./data.
    #[arg(long)]
    data: Option<PathBuf>,
    /// The binary protocol (SoupBinTCP-style, docs/PROTOCOL.md). Default: 127.0.0.1:7700.
    #[arg(long)]
    binary_addr: Option<SocketAddr>,
    /// Newline-delimited JSON over TCP. Default: 127.0.0.1:7701.
    #[arg(long)]
    json_addr: Option<SocketAddr>,
    /// HTTP: the web page at /, REST at /api/, the WebSocket JSON API at
    /// /ws. Default: 127.0.0.1:8080.
    #[arg(long)]
    http_addr: Option<SocketAddr>,
    /// Serve the web page from this directory (its index.html, app.js,
    /// style.css) instead of the copy built in: for working on the page.
    #[arg(long)]
    web_dir: Option<PathBuf>,
    /// Who may log in (see `users add`). Without it the server runs in an
    /// open development mode, on loopback addresses only.
    #[arg(long)]
    users: Option<PathBuf>,
    /// When the journal syncs (default: batch). `off` is for benchmarks
    /// only: a crash then loses acknowledged commands.
    #[arg(long, value_enum)]
    fsync: Option<FsyncPolicy>,
    #[command(flatten)]
    layout: crate::data::LayoutFlags,
    /// How engine threads wait for work (`park`, the default, sleeps when idle).
    #[arg(long, value_enum)]
    wait: Option<WaitStrategy>,
    /// Pin each shard thread to its own core.
    #[arg(long)]
    pin_cores: bool,
    /// Threads for the network (the engine's threads come on top). Default: 1.
    #[arg(long)]
    io_threads: Option<usize>,
    /// Longest frame, line or WebSocket message, in bytes. Default: 4096.
    #[arg(long)]
    frame_bytes: Option<usize>,
    /// Most open connections. Default: 1024.
    #[arg(long)]
    max_connections: Option<usize>,
    /// A session's requests awaiting their answer (beyond it, the server
    /// stops reading it). Default: 1024.
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// Replies queued for a session before it is dropped as a slow reader
    /// (at least 16). Default: 16384.
    #[arg(long)]
    max_outbox: Option<usize>,
    /// A session's requests per second (and burst); more are rejected
    /// `rate_limited`. Default: 200000.
    #[arg(long)]
    rate_limit: Option<u32>,
    /// Recent events kept for a login's `resume_after` (about 100 bytes
    /// each). Default: 262144.
    #[arg(long)]
    resume_events: Option<usize>,
    /// Seconds a connection has to log in (0.001 to 3600). Default: 5.
    #[arg(long)]
    login_timeout: Option<f64>,
    /// Where the order-by-order feed (MoldUDP64 over UDP) is sent: a
    /// multicast group, or a listener's address; repeat it to send every
    /// packet to several listeners. Default: 127.0.0.1:7710.
    #[arg(long = "feed-addr")]
    feed_addrs: Vec<SocketAddr>,
    /// The feed's re-request server (UDP). Default: 127.0.0.1:7711.
    #[arg(long)]
    feed_rerequest_addr: Option<SocketAddr>,
    /// The feed's snapshot service (TCP): a symbol's book at a feed
    /// sequence number. Default: 127.0.0.1:7712.
    #[arg(long)]
    feed_snapshot_addr: Option<SocketAddr>,
    /// Milliseconds without a feed packet before a heartbeat goes out (1 to
    /// 60000). Default: 1000.
    #[arg(long)]
    feed_heartbeat_ms: Option<u64>,
    /// Feed messages kept in memory for re-requests (about 48 bytes each).
    /// Default: 1000000.
    #[arg(long)]
    feed_window: Option<usize>,
    /// Market-data messages queued for one WebSocket before it is conflated
    /// or cut off (at least 16). Default: 4096.
    #[arg(long)]
    md_queue: Option<usize>,
    /// Run without market data: no feed, and the public channels are refused.
    #[arg(long)]
    no_market_data: bool,
    /// Metrics (/metrics), health (/health/live, /health/ready) and the
    /// operator console (/admin), over HTTP. Default: 127.0.0.1:7702.
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// The FIX 4.4 gateway (docs/FIX.md). Default: 127.0.0.1:7703.
    #[arg(long)]
    fix_addr: Option<SocketAddr>,
    /// Run without the FIX gateway.
    #[arg(long)]
    no_fix: bool,
    /// Seconds between snapshots while serving (0, the default: only at a clean stop).
    #[arg(long)]
    snapshot_interval_s: Option<u64>,
    /// Log lines as `text` (the default) or `json`, on stderr.
    #[arg(long)]
    log_format: Option<String>,
    /// The most detailed log level: error, warn, info (the default), debug, trace.
    #[arg(long)]
    log_level: Option<String>,
}

impl Args {
    /// The flags given, each as the configuration key it sets.
    fn flags(&self) -> Flags {
        let layout = &self.layout;
        let mut flags = Flags::default();
        flags
            .set("data_dir", "--data", self.data.as_ref())
            .set("users", "--users", self.users.as_ref())
            .set("network.binary_addr", "--binary-addr", self.binary_addr)
            .set("network.json_addr", "--json-addr", self.json_addr)
            .set("network.http_addr", "--http-addr", self.http_addr)
            .set("network.metrics_addr", "--metrics-addr", self.metrics_addr)
            .set("network.io_threads", "--io-threads", self.io_threads)
            .set("network.web_dir", "--web-dir", self.web_dir.as_ref())
            .set("journal.fsync", "--fsync", self.fsync.map(value_name))
            .set("journal.snapshot_interval_s", "--snapshot-interval-s", self.snapshot_interval_s)
            .set("engine.shards", "--shards", layout.shards)
            .set("engine.orders_max", "--orders-max", layout.orders_max)
            .set("engine.symbols_max", "--symbols-max", layout.symbols_max)
            .set("engine.wait", "--wait", self.wait.map(value_name))
            .set("engine.pin_cores", "--pin-cores", self.pin_cores.then_some(true))
            .set("limits.frame_bytes", "--frame-bytes", self.frame_bytes)
            .set("limits.connections", "--max-connections", self.max_connections)
            .set("limits.in_flight", "--max-in-flight", self.max_in_flight)
            .set("limits.outbox", "--max-outbox", self.max_outbox)
            .set("limits.rate_per_s", "--rate-limit", self.rate_limit)
            .set("limits.resume_events", "--resume-events", self.resume_events)
            .set("limits.login_timeout_s", "--login-timeout", self.login_timeout)
            .set("market_data.enabled", "--no-market-data", self.no_market_data.then_some(false))
            .set("fix.enabled", "--no-fix", self.no_fix.then_some(false))
            .set("fix.addr", "--fix-addr", self.fix_addr)
            .set("market_data.feed_addrs", "--feed-addr", (!self.feed_addrs.is_empty()).then_some(&self.feed_addrs))
            .set("market_data.rerequest_addr", "--feed-rerequest-addr", self.feed_rerequest_addr)
            .set("market_data.snapshot_addr", "--feed-snapshot-addr", self.feed_snapshot_addr)
            .set("market_data.heartbeat_ms", "--feed-heartbeat-ms", self.feed_heartbeat_ms)
            .set("market_data.window", "--feed-window", self.feed_window)
            .set("market_data.queue", "--md-queue", self.md_queue)
            .set("log.format", "--log-format", self.log_format.as_ref())
            .set("log.level", "--log-level", self.log_level.as_ref());
        flags
    }
}

/// A value's name on the command line, which the configuration file uses too.
fn value_name(value: impl ValueEnum) -> String {
    value.to_possible_value().expect("no value is skipped").get_name().to_string()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut file = config::resolve(args.config.as_deref(), std::env::vars_os(), args.flags())?;
    // The journal settings left unset are the engine's own defaults; they
    // are filled in here, where those are known, so that the printed
    // configuration shows them too.
    let engine_defaults = Durability::new(Arc::new(SimStorage::new()));
    file.journal.group_bytes_max.get_or_insert(engine_defaults.group_bytes_max);
    file.journal.group_linger_us.get_or_insert(engine_defaults.group_linger.as_micros() as u64);
    file.journal.segment_bytes.get_or_insert(engine_defaults.segment_bytes);
    if args.print_config {
        let mut out = std::io::stdout().lock();
        return out.write_all(file.to_toml()?.as_bytes()).context("cannot print the configuration");
    }
    init_logging(&file);
    serve(file)
}

/// Log lines on stderr, as the configuration says.
fn init_logging(file: &ServeFile) {
    let level = match file.log.level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    };
    let logger = tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).with_max_level(level);
    match file.log.format {
        LogFormat::Text => logger.init(),
        LogFormat::Json => logger.json().init(),
    }
}

fn serve(file: ServeFile) -> anyhow::Result<()> {
    let data = &file.data_dir;
    let asked = &file.engine;
    let flags =
        crate::data::LayoutFlags { shards: asked.shards, orders_max: asked.orders_max, symbols_max: asked.symbols_max };
    let mut layout = flags.config(Some(data))?;
    // As the three above: when the configuration does not say, the data
    // directory's (a contradiction is refused by the engine, naming it).
    if let Some(placement) = &asked.symbol_shards {
        layout.symbol_shards = placement.iter().map(|entry| (entry.symbol, entry.shard)).collect();
    }
    if let Some(listed) = &file.instruments {
        layout.exchange.instruments = Some(listed.iter().map(|instrument| instrument.symbol).collect());
    }
    let storage = FsStorage::open(data).with_context(|| format!("cannot open {}", data.display()))?;
    if file.journal.fsync == FsyncPolicy::Off {
        tracing::warn!("journal.fsync is off: a crash loses acknowledged commands (benchmarks only)");
    }
    let durability = Durability {
        // What a restart can still replay for `resume_after`.
        recovery_events: file.limits.resume_events,
        ..file.journal.durability(Durability::new(Arc::new(storage)))
    };
    let engine = EngineConfig { wait: asked.wait, pin_cores: asked.pin_cores, durability: Some(durability), ..layout };
    let auth = match &file.users {
        Some(path) => {
            let users = Users::load(path)?;
            tracing::info!(users = users.len(), file = %path.display(), "users loaded");
            Auth::Users(users)
        }
        None => Auth::Open,
    };
    let config = ServerConfig {
        engine,
        binary_addr: file.network.binary_addr,
        json_addr: file.network.json_addr,
        http_addr: file.network.http_addr,
        auth,
        limits: file.limits.limits(),
        io_threads: file.network.io_threads,
        web_dir: file.network.web_dir.clone(),
        market_data: file.market_data.config(),
        metrics_addr: file.network.metrics_addr,
        snapshot_interval: file.journal.snapshot_interval(),
        instruments: file.instruments(),
        fix: file.fix.config(data),
    };
    // Lines on stdout for whoever started us (tests, scripts): first where
    // metrics, health and the console answer (before recovery), then where
    // everything listens.
    let operating = |metrics| println!("operating metrics={metrics}");
    matching_server::run_with(config, operating, |bound| {
        let mut line = format!(
            "listening binary={} json={} http={} metrics={}",
            bound.binary, bound.json, bound.http, bound.metrics
        );
        if let Some(fix) = bound.fix {
            line.push_str(&format!(" fix={fix}"));
        }
        if let Some(md) = bound.md {
            line.push_str(&format!(" rerequest={} snapshot={}", md.rerequest, md.snapshot));
        }
        println!("{line}");
    })?;
    Ok(())
}

#[derive(clap::Subcommand)]
pub enum UsersCommand {
    /// Add a user to a users file and print its new API key (shown once, stored hashed).
    Add {
        /// The users file (created if missing).
        #[arg(long)]
        file: PathBuf,
        /// The user id.
        #[arg(long)]
        user: u64,
        /// `trader`, `operator` or `drop_copy`.
        #[arg(long, default_value = "trader")]
        role: String,
    },
    /// Add a FIX session to a users file: a Logon from SENDER to TARGET is USER in ROLE (docs/FIX.md).
    AddFix {
        /// The users file (created if missing).
        #[arg(long)]
        file: PathBuf,
        /// The client's SenderCompID.
        #[arg(long)]
        sender: String,
        /// The client's TargetCompID: ours.
        #[arg(long, default_value = matching_server::OUR_COMP_ID)]
        target: String,
        /// The user id it trades as.
        #[arg(long)]
        user: u64,
        /// `trader`, `operator` or `drop_copy`.
        #[arg(long, default_value = "trader")]
        role: String,
    },
}

fn role(text: &str) -> anyhow::Result<Role> {
    Role::parse(text).ok_or_else(|| anyhow::anyhow!("role is trader, operator or drop_copy, not {text:?}"))
}

pub fn users(command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::AddFix { file, sender, target, user, role: name } => {
            let role = role(&name)?;
            add_fix_session(&file, &sender, &target, user, role)?;
            eprintln!("FIX session {sender} → {target} added to {}: user {user} ({})", file.display(), role.as_str());
            Ok(())
        }
        UsersCommand::Add { file, user, role: name } => {
            let role = role(&name)?;
            let key = add_user(&file, user, role)?;
            println!("{key}");
            eprintln!(
                "user {user} ({}) added to {}; the key above is not stored anywhere",
                role.as_str(),
                file.display()
            );
            Ok(())
        }
    }
}
