//! Operating the service, over HTTP at `--metrics-addr` (loopback by
//! default): Prometheus metrics, health, and the operator console.
//!
//! - `GET /metrics`: every counter, in the Prometheus text format. The
//!   matching threads' counters are plain memory they own; a scrape reads
//!   them and publishes them through the `metrics` facade, whose Prometheus
//!   exporter renders the page; the four histograms (ack latency, fsync
//!   time, journal group records and bytes) are rendered here from the
//!   owning thread's exact buckets and sum.
//! - `GET /health/live`: 200 while the process serves HTTP.
//! - `GET /health/ready`: 200 once recovery is done and orders are taken;
//!   503 while starting, recovering, shutting down, or after the engine
//!   stopped (a journal failure), with the reason in the body.
//! - `/admin/...`: the operator console, JSON. Whatever it changes goes
//!   through the driver, so through the sequencer and the journal like any
//!   command, and recovery reproduces it. With a users file every console
//!   request needs an operator's credentials (`Authorization: Bearer
//!   <user>:<key>`); in open development mode the address is loopback only.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use matching_core::{RejectReason, Symbol};
use matching_journal::storage::Storage;
use matching_pipeline::{HistogramSnapshot, Monitor};
use matching_proto::session::GatewayReason;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::oneshot;

use crate::driver::{AdminAnswer, AdminRequest, Inbound};
use crate::session::Context;
use crate::stats::{Cause, CommandKind, DriverStats, MdStats, Protocol, SYMBOL_LABELS_MAX, SessionStats};
use crate::users::Role;

/// Where the service is in its life, as `/health/ready` tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Starting = 0,
    Recovering = 1,
    Ready = 2,
    ShuttingDown = 3,
    /// The engine stopped on its own (a journal failure, a dead shard).
    Failed = 4,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Recovering => "recovering",
            Phase::Ready => "ready",
            Phase::ShuttingDown => "shutting_down",
            Phase::Failed => "failed",
        }
    }

    fn from_u8(value: u8) -> Phase {
        [Phase::Starting, Phase::Recovering, Phase::Ready, Phase::ShuttingDown, Phase::Failed]
            .get(value as usize)
            .copied()
            .unwrap_or(Phase::Failed)
    }
}

/// The histograms, rendered here (exactly: bucket counts and sum as the
/// owning thread kept them): `(name, help, divisor from the recorded unit)`.
const HISTOGRAMS: [(&str, &str, f64); 4] = [
    ("matching_ack_latency_seconds", "From a request reaching the driver to its answer (the command durable).", 1e9),
    ("matching_journal_fsync_seconds", "Time of each fdatasync of the journal.", 1e9),
    ("matching_journal_group_records", "Records per journal group (group commit).", 1.0),
    ("matching_journal_group_bytes", "Bytes per journal group.", 1.0),
];

/// Everything the console, health and metrics read.
pub(crate) struct Ops {
    phase: AtomicU8,
    /// Why the engine stopped, or what it is doing.
    reason: Mutex<String>,
    prometheus: Option<PrometheusHandle>,
    pub(crate) driver: Arc<DriverStats>,
    pub(crate) sessions: Arc<SessionStats>,
    pub(crate) md: Arc<MdStats>,
    pub(crate) monitor: OnceLock<Arc<Monitor>>,
    /// The sessions' context (the driver's channel, who may log in), once serving.
    pub(crate) context: OnceLock<Arc<Context>>,
    storage: Option<Arc<dyn Storage>>,
    /// `(seconds, records replayed)`, once recovered.
    pub(crate) recovery: OnceLock<(f64, u64)>,
    /// In open development mode the console asks for no credentials.
    open: bool,
}

impl Ops {
    pub(crate) fn new(storage: Option<Arc<dyn Storage>>, open: bool) -> Ops {
        let prometheus = match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => Some(handle),
            Err(error) => {
                tracing::warn!(%error, "metrics: cannot install the Prometheus recorder; /metrics stays empty");
                None
            }
        };
        Ops {
            phase: AtomicU8::new(Phase::Starting as u8),
            reason: Mutex::new(String::new()),
            prometheus,
            driver: Arc::default(),
            sessions: Arc::default(),
            md: Arc::default(),
            monitor: OnceLock::new(),
            context: OnceLock::new(),
            storage,
            recovery: OnceLock::new(),
            open,
        }
    }

    pub(crate) fn set_phase(&self, phase: Phase, reason: &str) {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = reason.to_string();
        self.phase.store(phase as u8, Ordering::Release);
        tracing::info!(phase = phase.label(), reason, "health");
    }

    pub(crate) fn phase(&self) -> Phase {
        let phase = Phase::from_u8(self.phase.load(Ordering::Acquire));
        // The engine may have stopped since the driver last looked.
        match (phase, self.monitor.get().and_then(|m| m.stopped())) {
            (Phase::Ready, Some(_)) => Phase::Failed,
            _ => phase,
        }
    }

    fn reason(&self) -> String {
        if let Some(stopped) = self.monitor.get().and_then(|m| m.stopped()) {
            return stopped.to_string();
        }
        self.reason.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The routes at `--metrics-addr`.
pub(crate) fn router(ops: Arc<Ops>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(|| async { "live\n" }))
        .route("/health/ready", get(ready))
        .route("/admin/status", get(status))
        .route("/admin/sessions", get(sessions))
        .route("/admin/sessions/{id}/disconnect", post(disconnect))
        .route("/admin/symbols/{symbol}/halt", post(halt))
        .route("/admin/symbols/{symbol}/resume", post(resume))
        .route("/admin/users/{user}/kill", post(kill))
        .route("/admin/users/{user}/release", post(release))
        .with_state(ops)
}

/// Serves the routes on `listener` until `stop` resolves.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    ops: Arc<Ops>,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let app = router(ops).into_make_service_with_connect_info::<SocketAddr>();
    if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
        tracing::error!(%error, "the operations server failed");
    }
}

async fn ready(State(ops): State<Arc<Ops>>) -> Response {
    let phase = ops.phase();
    let body = serde_json::json!({ "status": phase.label(), "reason": ops.reason() });
    let code = if phase == Phase::Ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(body)).into_response()
}

async fn metrics(State(ops): State<Arc<Ops>>) -> Response {
    let Some(prometheus) = &ops.prometheus else {
        return (StatusCode::SERVICE_UNAVAILABLE, "metrics recorder unavailable\n").into_response();
    };
    let histograms = publish(&ops);
    prometheus.run_upkeep();
    let mut page = prometheus.render();
    for (snapshot, (name, help, divisor)) in histograms.iter().zip(HISTOGRAMS) {
        render_histogram(&mut page, name, help, snapshot, divisor);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], page).into_response()
}

/// Appends a histogram in the Prometheus text format: cumulative buckets,
/// sum and count, in the rendered unit (`divisor` from the recorded one).
fn render_histogram(page: &mut String, name: &str, help: &str, snapshot: &HistogramSnapshot, divisor: f64) {
    use std::fmt::Write;
    let _ = writeln!(page, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cumulative = 0;
    for (bucket, count) in snapshot.counts.iter().enumerate() {
        cumulative += count;
        match snapshot.bounds.get(bucket) {
            Some(&bound) => writeln!(page, "{name}_bucket{{le=\"{}\"}} {cumulative}", bound as f64 / divisor),
            None => writeln!(page, "{name}_bucket{{le=\"+Inf\"}} {cumulative}"),
        }
        .unwrap_or(());
    }
    let _ = writeln!(page, "{name}_sum {}\n{name}_count {cumulative}\n", snapshot.sum as f64 / divisor);
}

/// Copies every counter and gauge into the `metrics` facade; returns the
/// histograms (as [`HISTOGRAMS`] lists them) to render.
fn publish(ops: &Ops) -> Vec<HistogramSnapshot> {
    use metrics::{counter, gauge};
    let driver = &ops.driver;
    for protocol in Protocol::ALL {
        let p = protocol.label();
        for kind in CommandKind::ALL {
            let value = driver.commands[protocol as usize][kind as usize].get();
            counter!("matching_commands_total", "protocol" => p, "kind" => kind.label()).absolute(value);
        }
        gauge!("matching_sessions", "protocol" => p).set(driver.sessions[protocol as usize].get() as f64);
        let open = ops.sessions.connections[protocol as usize].load(Ordering::Relaxed);
        gauge!("matching_connections", "protocol" => p).set(open as f64);
        for (at, cause) in Cause::ALL.into_iter().enumerate() {
            let value = ops.sessions.ended[protocol as usize][at].load(Ordering::Relaxed);
            counter!("matching_disconnects_total", "protocol" => p, "cause" => cause.label()).absolute(value);
        }
    }
    for reason in RejectReason::ALL {
        let value = driver.rejected[reason as usize].get();
        counter!("matching_rejections_total", "source" => "engine", "reason" => reason.as_str()).absolute(value);
    }
    for reason in GatewayReason::ALL {
        let value =
            driver.refused[reason as usize].get() + ops.sessions.refused[reason as usize].load(Ordering::Relaxed);
        counter!("matching_rejections_total", "source" => "gateway", "reason" => reason.as_str()).absolute(value);
    }
    let labels: Vec<Symbol> = driver.symbol_labels.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let named = labels.iter().enumerate().map(|(slot, symbol)| (slot, symbol.as_str().to_string()));
    for (slot, symbol) in named.chain([(SYMBOL_LABELS_MAX, "other".to_string())]) {
        counter!("matching_trades_total", "symbol" => symbol.clone()).absolute(driver.trades[slot].get());
        counter!("matching_traded_quantity_total", "symbol" => symbol).absolute(driver.traded_qty[slot].get());
    }
    gauge!("matching_kill_switches").set(driver.kill_switches.get() as f64);
    let md = &ops.md;
    counter!("matching_md_feed_messages_total").absolute(md.messages.get());
    counter!("matching_md_feed_packets_total").absolute(md.packets.get());
    counter!("matching_md_feed_send_errors_total").absolute(md.send_errors.get());
    counter!("matching_md_conflations_total").absolute(md.conflations.get());
    counter!("matching_md_cutoffs_total").absolute(md.cut_offs.get());
    gauge!("matching_md_subscriptions").set(md.subscriptions.get() as f64);
    gauge!("matching_ready").set(f64::from(u8::from(ops.phase() == Phase::Ready)));
    if let Some(&(seconds, records)) = ops.recovery.get() {
        gauge!("matching_recovery_seconds").set(seconds);
        gauge!("matching_recovery_replayed_commands").set(records as f64);
    }
    let mut histograms = vec![driver.ack_ns.snapshot()];
    if let Some(monitor) = ops.monitor.get() {
        for (shard, (fill, capacity)) in monitor.rings().into_iter().enumerate() {
            gauge!("matching_ring_fill", "shard" => shard.to_string()).set(fill as f64);
            gauge!("matching_ring_capacity", "shard" => shard.to_string()).set(capacity as f64);
        }
        if let Some(seq) = monitor.durable_seq() {
            gauge!("matching_journal_durable_seq").set(seq as f64);
        }
        if let Some(journal) = monitor.journal() {
            histograms.extend([
                journal.fsync_ns.snapshot(),
                journal.group_records.snapshot(),
                journal.group_bytes.snapshot(),
            ]);
        }
    }
    if let Some(disk) = disk(ops) {
        gauge!("matching_journal_segments").set(disk.segments as f64);
        gauge!("matching_data_bytes").set(disk.bytes as f64);
    }
    histograms
}

/// The data directory's journal segments, snapshots and bytes.
struct Disk {
    segments: usize,
    bytes: u64,
    newest_snapshot: Option<u64>,
    snapshots: usize,
}

fn disk(ops: &Ops) -> Option<Disk> {
    let storage = ops.storage.as_ref()?;
    let names = storage.list().ok()?;
    let mut disk = Disk { segments: 0, bytes: 0, newest_snapshot: None, snapshots: 0 };
    for name in names {
        disk.bytes += storage.size(&name).unwrap_or(0);
        if name.starts_with("journal-") && name.ends_with(".log") {
            disk.segments += 1;
        }
        if let Some(seq) = name.strip_prefix("snapshot-").and_then(|n| n.strip_suffix(".snap")) {
            disk.snapshots += 1;
            disk.newest_snapshot = disk.newest_snapshot.max(seq.parse().ok());
        }
    }
    Some(disk)
}

/// A console (or REST) error: its HTTP status and what to say.
pub(crate) type Refused = (u16, String);

fn error_response((code, message): Refused) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

fn respond(result: Result<serde_json::Value, Refused>) -> Response {
    match result {
        Ok(value) => axum::Json(value).into_response(),
        Err(refused) => error_response(refused),
    }
}

/// Asks the driver, once the caller is known to be an operator.
async fn ask(ops: &Ops, headers: &HeaderMap, request: AdminRequest) -> Result<serde_json::Value, Refused> {
    let Some(context) = ops.context.get() else {
        return Err((503, format!("not ready: {}", ops.phase().label())));
    };
    if !ops.open {
        match bearer(headers, &context.auth).map(|(_, role)| role) {
            Some(Role::Operator) => {}
            Some(_) => return Err((403, "the console is for operators".to_string())),
            None => {
                let needed = "an operator's credentials are needed: Authorization: Bearer <user>:<key>";
                return Err((401, needed.to_string()));
            }
        }
    }
    ask_driver(context, request).await
}

/// Hands `request` to the driver and waits (10 s at most) for its answer.
pub(crate) async fn ask_driver(context: &Context, request: AdminRequest) -> Result<serde_json::Value, Refused> {
    let (tx, rx) = oneshot::channel::<AdminAnswer>();
    if !context.driver.send(Inbound::Admin(request, tx)).await {
        return Err((503, "the server is stopping".to_string()));
    }
    match tokio::time::timeout(Duration::from_secs(10), rx).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err((503, "the server is stopping".to_string())),
        Err(_) => Err((504, "the engine did not answer within 10 s".to_string())),
    }
}

/// The user and role of `Authorization: Bearer <user>:<key>`, if they check.
pub(crate) fn bearer(headers: &HeaderMap, auth: &crate::session::Auth) -> Option<(matching_core::UserId, Role)> {
    let token = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (user, key) = token.strip_prefix("Bearer ")?.split_once(':')?;
    let user = user.parse().ok()?;
    Some((user, auth.check(user, key)?))
}

fn parse<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, Refused> {
    text.parse().map_err(|_| (400, format!("not a {what}: {text:?}")))
}

fn symbol(text: &str) -> Result<Symbol, Refused> {
    Symbol::new(text).ok_or_else(|| (400, format!("not a symbol: {text:?}")))
}

async fn sessions(State(ops): State<Arc<Ops>>, headers: HeaderMap) -> Response {
    respond(ask(&ops, &headers, AdminRequest::Sessions).await)
}

async fn disconnect(State(ops): State<Arc<Ops>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    respond(async { ask(&ops, &headers, AdminRequest::Disconnect(parse(&id, "session id")?)).await }.await)
}

async fn halt(State(ops): State<Arc<Ops>>, headers: HeaderMap, Path(text): Path<String>) -> Response {
    respond(async { ask(&ops, &headers, AdminRequest::Halt(symbol(&text)?)).await }.await)
}

async fn resume(State(ops): State<Arc<Ops>>, headers: HeaderMap, Path(text): Path<String>) -> Response {
    respond(async { ask(&ops, &headers, AdminRequest::Resume(symbol(&text)?)).await }.await)
}

async fn kill(State(ops): State<Arc<Ops>>, headers: HeaderMap, Path(user): Path<String>) -> Response {
    respond(async { ask(&ops, &headers, AdminRequest::Kill(parse(&user, "user id")?)).await }.await)
}

async fn release(State(ops): State<Arc<Ops>>, headers: HeaderMap, Path(user): Path<String>) -> Response {
    respond(async { ask(&ops, &headers, AdminRequest::Release(parse(&user, "user id")?)).await }.await)
}

/// Shards, journal, market data, and the driver's part.
async fn status(State(ops): State<Arc<Ops>>, headers: HeaderMap) -> Response {
    let driver = match ask(&ops, &headers, AdminRequest::Status).await {
        Ok(value) => value,
        Err(refused) => return error_response(refused),
    };
    let monitor = ops.monitor.get();
    let shards: Vec<serde_json::Value> = monitor
        .map(|m| m.rings())
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(shard, (fill, capacity))| serde_json::json!({ "shard": shard, "ring_fill": fill, "ring_capacity": capacity }))
        .collect();
    let disk = disk(&ops);
    let journal = serde_json::json!({
        "durable_seq": monitor.and_then(|m| m.durable_seq()),
        "last_snapshot_seq": disk.as_ref().and_then(|d| d.newest_snapshot),
        "snapshots": disk.as_ref().map(|d| d.snapshots),
        "segments": disk.as_ref().map(|d| d.segments),
        "disk_bytes": disk.as_ref().map(|d| d.bytes),
    });
    let md = &ops.md;
    let market_data = serde_json::json!({
        "enabled": ops.context.get().is_some_and(|c| c.md.is_some()),
        "feed_messages": md.messages.get(),
        "feed_packets": md.packets.get(),
        "send_errors": md.send_errors.get(),
        "subscriptions": md.subscriptions.get(),
        "conflations": md.conflations.get(),
        "cut_offs": md.cut_offs.get(),
    });
    axum::Json(serde_json::json!({
        "health": { "status": ops.phase().label(), "reason": ops.reason() },
        "engine": driver,
        "shards": shards,
        "journal": journal,
        "market_data": market_data,
    }))
    .into_response()
}
