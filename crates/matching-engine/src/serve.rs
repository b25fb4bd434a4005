//! `matching-engine serve` and `users add`: the command line of the network
//! service (`matching-server`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use matching_journal::storage::FsStorage;
use matching_pipeline::{Durability, EngineConfig, FsyncPolicy, WaitStrategy};
use matching_server::users::{Role, Users, add_user};
use matching_server::{Auth, Limits, MdConfig, ServerConfig};

#[derive(clap::Args)]
pub struct Args {
    /// The data directory (journal and snapshots): recovered at start, created if missing.
    #[arg(long, default_value = "./data")]
    data: PathBuf,
    /// The binary protocol (SoupBinTCP-style, docs/PROTOCOL.md).
    #[arg(long, default_value = "127.0.0.1:7700")]
    binary_addr: SocketAddr,
    /// Newline-delimited JSON over TCP.
    #[arg(long, default_value = "127.0.0.1:7701")]
    json_addr: SocketAddr,
    /// HTTP: the WebSocket JSON API at /ws.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// Who may log in (see `users add`). Without it the server runs in an
    /// open development mode, on loopback addresses only.
    #[arg(long)]
    users: Option<PathBuf>,
    /// When the journal syncs. `off` is for benchmarks only: a crash then
    /// loses acknowledged commands.
    #[arg(long, value_enum, default_value_t = FsyncPolicy::Batch)]
    fsync: FsyncPolicy,
    #[command(flatten)]
    layout: crate::data::LayoutFlags,
    /// How engine threads wait for work (`park` sleeps when idle).
    #[arg(long, value_enum, default_value_t = WaitStrategy::Park)]
    wait: WaitStrategy,
    /// Threads for the network (the engine's threads come on top).
    #[arg(long, default_value_t = 1)]
    io_threads: usize,
    /// Longest frame, line or WebSocket message, in bytes.
    #[arg(long, default_value_t = Limits::default().frame_bytes)]
    frame_bytes: usize,
    /// Most open connections.
    #[arg(long, default_value_t = Limits::default().connections)]
    max_connections: usize,
    /// A session's requests awaiting their answer (beyond it, the server stops reading it).
    #[arg(long, default_value_t = Limits::default().in_flight)]
    max_in_flight: usize,
    /// Replies queued for a session before it is dropped as a slow reader.
    #[arg(long, default_value_t = Limits::default().outbox)]
    max_outbox: usize,
    /// A session's requests per second (and burst); more are rejected `rate_limited`.
    #[arg(long, default_value_t = Limits::default().rate_per_s)]
    rate_limit: u32,
    /// Recent events kept for a login's `resume_after` (about 100 bytes each).
    #[arg(long, default_value_t = Limits::default().resume_events)]
    resume_events: usize,
    /// Seconds a connection has to log in.
    #[arg(long, default_value_t = Limits::default().login_timeout.as_secs_f64())]
    login_timeout: f64,
    /// Where the order-by-order feed (MoldUDP64 over UDP) is sent: a
    /// multicast group, or a listener's address; repeat it to send every
    /// packet to several listeners.
    #[arg(long = "feed-addr", default_value = "127.0.0.1:7710")]
    feed_addrs: Vec<SocketAddr>,
    /// The feed's re-request server (UDP).
    #[arg(long, default_value_t = MdConfig::default().rerequest_addr)]
    feed_rerequest_addr: SocketAddr,
    /// The feed's snapshot service (TCP): a symbol's book at a feed sequence number.
    #[arg(long, default_value_t = MdConfig::default().snapshot_addr)]
    feed_snapshot_addr: SocketAddr,
    /// Milliseconds without a feed packet before a heartbeat goes out.
    #[arg(long, default_value_t = MdConfig::default().heartbeat.as_millis() as u64)]
    feed_heartbeat_ms: u64,
    /// Feed messages kept in memory for re-requests (about 48 bytes each).
    #[arg(long, default_value_t = MdConfig::default().window)]
    feed_window: usize,
    /// Market-data messages queued for one WebSocket before it is conflated or cut off.
    #[arg(long, default_value_t = MdConfig::default().queue)]
    md_queue: usize,
    /// Run without market data: no feed, and the public channels are refused.
    #[arg(long)]
    no_market_data: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let layout = args.layout.config(Some(&args.data))?;
    let storage = FsStorage::open(&args.data).with_context(|| format!("cannot open {}", args.data.display()))?;
    if args.fsync == FsyncPolicy::Off {
        tracing::warn!("--fsync off: a crash loses acknowledged commands (benchmarks only)");
    }
    let engine = EngineConfig {
        wait: args.wait,
        durability: Some(Durability {
            fsync: args.fsync,
            // What a restart can still replay for `resume_after`.
            recovery_events: args.resume_events,
            ..Durability::new(Arc::new(storage))
        }),
        ..layout
    };
    let auth = match &args.users {
        Some(path) => {
            let users = Users::load(path)?;
            tracing::info!(users = users.len(), file = %path.display(), "users loaded");
            Auth::Users(users)
        }
        None => Auth::Open,
    };
    let limits = Limits {
        frame_bytes: args.frame_bytes,
        connections: args.max_connections.max(1),
        in_flight: args.max_in_flight.max(1),
        outbox: args.max_outbox.max(16),
        rate_per_s: args.rate_limit.max(1),
        login_timeout: std::time::Duration::from_secs_f64(args.login_timeout.clamp(0.001, 3600.0)),
        resume_events: args.resume_events,
        ..Limits::default()
    };
    let config = ServerConfig {
        engine,
        binary_addr: args.binary_addr,
        json_addr: args.json_addr,
        http_addr: args.http_addr,
        auth,
        limits,
        io_threads: args.io_threads,
        market_data: (!args.no_market_data).then_some(MdConfig {
            feed_addrs: args.feed_addrs,
            rerequest_addr: args.feed_rerequest_addr,
            snapshot_addr: args.feed_snapshot_addr,
            heartbeat: std::time::Duration::from_millis(args.feed_heartbeat_ms.clamp(1, 60_000)),
            window: args.feed_window,
            queue: args.md_queue.max(16),
            ..MdConfig::default()
        }),
    };
    matching_server::run(config, |bound| {
        // One line on stdout for whoever started us (tests, scripts): where we listen.
        let mut line = format!("listening binary={} json={} http={}", bound.binary, bound.json, bound.http);
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
        /// `trader` or `operator`.
        #[arg(long, default_value = "trader")]
        role: String,
    },
}

pub fn users(command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Add { file, user, role } => {
            let role = Role::parse(&role).ok_or_else(|| anyhow::anyhow!("role is trader or operator, not {role:?}"))?;
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
