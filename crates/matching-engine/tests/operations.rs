//! Operating `serve`, over real sockets and real processes: `/metrics`
//! after known traffic, `/health/ready` through recovery, serving and
//! shutdown, and every console action, including that what it changes
//! survives a clean restart and a `kill -9`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::client::{closed, connect, event, new, next};
use common::server::{Server, add_user, scratch};
use matching_client::Encoding;
use matching_client::admin::Admin;
use matching_core::{Action, RejectReason, Side};
use matching_proto::session::{ClientEvent, GatewayReason, Reply, Request};

/// One sample of a Prometheus text page: its labels and value.
type Samples = Vec<(BTreeMap<String, String>, f64)>;

/// Every sample of `name` on the page.
fn samples(page: &str, name: &str) -> Samples {
    let mut found = Vec::new();
    for line in page.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (metric, labels) = series.split_once('{').unwrap_or((series, "}"));
        if metric != name {
            continue;
        }
        let labels = labels.trim_end_matches('}');
        let labels = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap();
                (k.to_string(), v.trim_matches('"').to_string())
            })
            .collect();
        found.push((labels, value.parse().unwrap()));
    }
    found
}

/// The value of `name` whose labels include `labels` (0 if there is none).
fn value(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(page, name)
        .into_iter()
        .filter(|(have, _)| labels.iter().all(|(k, v)| have.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_known_traffic() {
    let dir = scratch("ops-metrics");
    let server = Server::start(&dir.join("data"), &[]);
    let admin = Admin::new(server.metrics);
    let mut maker = connect(server.binary, Encoding::Binary, 1, "").await;
    let mut taker = connect(server.json, Encoding::Json, 2, "").await;
    // Two new orders over binary (one rests, one is refused by the engine),
    // one over JSON that trades 60, a cancel of an unknown order over JSON.
    maker.send(&new(1, "MX", Side::Buy, 10, 100, None)).await.unwrap();
    assert!(matches!(event(&mut maker).await.1, ClientEvent::Accepted { .. }));
    maker.send(&new(1, "MX", Side::Buy, 0, 5, None)).await.unwrap();
    let ClientEvent::Rejected { reason, .. } = event(&mut maker).await.1 else { panic!() };
    assert_eq!(reason, RejectReason::InvalidPrice);
    taker.send(&new(2, "MX", Side::Sell, 10, 60, None)).await.unwrap();
    assert!(matches!(event(&mut taker).await.1, ClientEvent::Accepted { .. }));
    assert!(matches!(event(&mut taker).await.1, ClientEvent::Fill { qty: 60, .. }));
    assert!(matches!(event(&mut maker).await.1, ClientEvent::Fill { qty: 60, .. }));
    taker.send(&Request::Command { action: Action::Cancel { user: 2, order_id: 999 }, cid: None }).await.unwrap();
    let ClientEvent::Rejected { reason, .. } = event(&mut taker).await.1 else { panic!() };
    assert_eq!(reason, RejectReason::UnknownOrder);
    // A gateway refusal: a cancel by a cid that names nothing.
    taker
        .send(&Request::CancelCid { user: 2, cid: matching_proto::session::Cid::new("nothing").unwrap() })
        .await
        .unwrap();
    assert!(matches!(next(&mut taker).await, Reply::Rejected { reason: GatewayReason::UnknownCid, .. }));

    let page = tokio::task::spawn_blocking(move || admin.metrics().unwrap()).await.unwrap();
    let commands = |protocol, kind| value(&page, "matching_commands_total", &[("protocol", protocol), ("kind", kind)]);
    assert_eq!(commands("binary", "new"), 2.0, "{page}");
    assert_eq!(commands("json", "new"), 1.0);
    assert_eq!(commands("json", "cancel"), 2.0);
    assert_eq!(commands("websocket", "new"), 0.0);
    assert_eq!(value(&page, "matching_trades_total", &[("symbol", "MX")]), 1.0);
    assert_eq!(value(&page, "matching_traded_quantity_total", &[("symbol", "MX")]), 60.0);
    let rejections =
        |source, reason| value(&page, "matching_rejections_total", &[("source", source), ("reason", reason)]);
    assert_eq!(rejections("engine", "invalid_price"), 1.0);
    assert_eq!(rejections("engine", "unknown_order"), 1.0);
    assert_eq!(rejections("gateway", "unknown_cid"), 1.0);
    assert_eq!(value(&page, "matching_sessions", &[("protocol", "binary")]), 1.0);
    assert_eq!(value(&page, "matching_sessions", &[("protocol", "json")]), 1.0);
    // Every command the engine answered has its latency (the cid refusal never reached it).
    assert_eq!(value(&page, "matching_ack_latency_seconds_count", &[]), 4.0, "{page}");
    assert_eq!(value(&page, "matching_ack_latency_seconds_bucket", &[("le", "+Inf")]), 4.0);
    // The journal wrote those 4 commands in groups, each synced.
    assert_eq!(value(&page, "matching_journal_group_records_sum", &[]), 4.0);
    assert!(value(&page, "matching_journal_fsync_seconds_count", &[]) >= 1.0);
    assert_eq!(value(&page, "matching_journal_durable_seq", &[]), 4.0);
    assert_eq!(value(&page, "matching_ring_capacity", &[("shard", "0")]), 16384.0);
    assert_eq!(value(&page, "matching_ready", &[]), 1.0);
    assert_eq!(value(&page, "matching_recovery_replayed_commands", &[]), 0.0);
    assert_eq!(samples(&page, "matching_recovery_seconds").len(), 1);
    // The Grafana dashboard names only metrics the page has.
    let dashboard = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/grafana-dashboard.json"));
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard.unwrap()).unwrap();
    let mut named = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            for (at, _) in expr.match_indices("matching_") {
                let name: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                    .collect();
                assert!(page.lines().any(|l| l.starts_with(&name)), "the dashboard's {name} is not on /metrics");
                named += 1;
            }
        }
    }
    assert!(named >= 20, "{named} metrics named by the dashboard");

    // A client that leaves is counted by cause.
    drop(taker);
    let admin = Admin::new(server.metrics);
    let page = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let page = admin.metrics().unwrap();
            let left = value(&page, "matching_disconnects_total", &[("protocol", "json"), ("cause", "client_left")]);
            if left == 1.0 || Instant::now() > deadline {
                return page;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    assert_eq!(value(&page, "matching_disconnects_total", &[("protocol", "json"), ("cause", "client_left")]), 1.0);
    assert_eq!(value(&page, "matching_sessions", &[("protocol", "json")]), 0.0);
    assert_eq!(value(&page, "matching_sessions", &[("protocol", "binary")]), 1.0);
    drop(maker);
    assert!(server.stop().success());
}

/// Writes `commands` generated commands into the data directory `data`
/// (through `replay --data`), so that recovering it takes a while.
fn journal_of(data: &std::path::Path, commands: u64) {
    let bin = env!("CARGO_BIN_EXE_matching-engine");
    let mut generate = Command::new(bin)
        .args(["generate", "--commands", &commands.to_string(), "--seed", "7"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let replay = Command::new(bin)
        .args(["replay", "--fsync", "off", "--data"])
        .arg(data)
        .stdin(generate.stdout.take().unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(replay.success() && generate.wait().unwrap().success());
}

#[test]
fn health_goes_recovering_ready_shutting_down() {
    let dir = scratch("ops-health");
    let data = dir.join("data");
    journal_of(&data, 300_000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_matching-engine"))
        .args(["serve", "--data"])
        .arg(&data)
        .args(["--binary-addr", "127.0.0.1:0", "--json-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .args(["--metrics-addr", "127.0.0.1:0", "--no-market-data", "--no-fix"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("operating metrics=").unwrap_or_else(|| panic!("{line:?}")).parse().unwrap();
    let admin = Admin::new(addr);
    // Watch readiness on another thread while this one waits for `listening`.
    let watcher = std::thread::spawn(move || {
        let mut seen: Vec<(u16, String)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            let Ok(answer) = admin.ready() else { break };
            let status = answer.body["status"].as_str().unwrap_or_default().to_string();
            if seen.last() != Some(&(answer.status, status.clone())) {
                seen.push((answer.status, status.clone()));
            }
            if status == "shutting_down" {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        seen
    });
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("listening "), "{line:?}");
    let live = Admin::new(addr).get("/health/live").unwrap();
    assert_eq!(live.status, 200);
    std::thread::sleep(Duration::from_millis(100));
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let seen = watcher.join().unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(
        seen,
        vec![(503, "recovering".to_string()), (200, "ready".to_string()), (503, "shutting_down".to_string())],
        "readiness as it was seen"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_actions_change_state_and_survive_restarts() {
    let dir = scratch("ops-console");
    let data = dir.join("data");
    let server = Server::start(&data, &["--log-format", "json"]);
    let mut one = connect(server.binary, Encoding::Binary, 1, "").await;
    let mut two = connect(server.json, Encoding::Json, 2, "").await;
    for symbol in ["CA", "CB"] {
        one.send(&new(1, symbol, Side::Buy, 10, 5, None)).await.unwrap();
        assert!(matches!(event(&mut one).await.1, ClientEvent::Accepted { .. }));
    }
    let call = |f: fn(&Admin) -> matching_client::admin::Answer, addr| {
        tokio::task::spawn_blocking(move || f(&Admin::new(addr)))
    };
    let addr = server.metrics;
    let sessions = call(|a| a.sessions().unwrap(), addr).await.unwrap();
    let list = sessions.body["sessions"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2, "{sessions:?}");
    assert_eq!((list[0]["user"].as_u64(), list[0]["protocol"].as_str()), (Some(1), Some("binary")));
    assert_eq!((list[1]["user"].as_u64(), list[1]["protocol"].as_str()), (Some(2), Some("json")));

    // Halt: a command like any other; the symbol refuses new orders.
    let halted = call(|a| a.halt("CA").unwrap(), addr).await.unwrap();
    assert!(halted.ok(), "{halted:?}");
    assert_eq!(halted.body["event"]["status"], "halted");
    two.send(&new(2, "CA", Side::Sell, 10, 1, None)).await.unwrap();
    let ClientEvent::Rejected { reason, .. } = event(&mut two).await.1 else { panic!() };
    assert_eq!(reason, RejectReason::Halted);

    // Kill switch: user 1's two orders go, and new ones are refused; a
    // cancel still goes through.
    let killed = call(|a| a.kill(1).unwrap(), addr).await.unwrap();
    assert!(killed.ok(), "{killed:?}");
    assert_eq!(killed.body["event"]["mass_cancelled"], 2);
    for _ in 0..2 {
        assert!(matches!(event(&mut one).await.1, ClientEvent::Cancelled { .. }));
    }
    one.send(&new(1, "CB", Side::Buy, 10, 5, None)).await.unwrap();
    assert!(matches!(next(&mut one).await, Reply::Rejected { reason: GatewayReason::KillSwitch, .. }));
    one.send(&Request::Command { action: Action::Cancel { user: 1, order_id: 1 }, cid: None }).await.unwrap();
    let ClientEvent::Rejected { reason, .. } = event(&mut one).await.1 else { panic!() };
    assert_eq!(reason, RejectReason::UnknownOrder, "a cancel reaches the engine");
    let again = call(|a| a.kill(1).unwrap(), addr).await.unwrap();
    assert_eq!(again.body["changed"], false);
    // A kill switch on a user with no session, who then logs in: refused too.
    let _ = call(|a| a.kill(3).unwrap(), addr).await.unwrap();

    // Disconnect: the client is told, the others keep trading.
    let session_two = list[1]["session"].as_u64().unwrap();
    let dropped = tokio::task::spawn_blocking(move || Admin::new(addr).disconnect(session_two).unwrap()).await.unwrap();
    assert!(dropped.ok(), "{dropped:?}");
    assert_eq!(closed(&mut two).await.as_deref(), Some("disconnected by an operator"));
    // The log is JSON lines; the session's end names its cause.
    let log = server.log();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ended = |line: &serde_json::Value| {
        line["fields"]["message"] == "session ended" && line["fields"]["session"].as_u64() == Some(session_two)
    };
    let ended = lines.iter().find(|l| ended(l)).unwrap_or_else(|| panic!("{log}"));
    assert_eq!(
        (ended["fields"]["cause"].as_str(), ended["fields"]["protocol"].as_str()),
        (Some("operator"), Some("json"))
    );
    assert!(lines.iter().any(|l| l["fields"]["message"] == "session started"), "{log}");
    let missing = call(|a| a.disconnect(999_999).unwrap(), addr).await.unwrap();
    assert_eq!(missing.status, 404);
    let bad = call(|a| a.halt(&"X".repeat(40)).unwrap(), addr).await.unwrap();
    assert_eq!(bad.status, 400);

    let status = call(|a| a.status().unwrap(), addr).await.unwrap();
    assert_eq!(status.body["engine"]["kill_switches"], serde_json::json!([1, 3]), "{status:?}");
    assert_eq!(status.body["engine"]["halted"], serde_json::json!(["CA"]));
    assert_eq!(status.body["health"]["status"], "ready");
    assert!(status.body["journal"]["durable_seq"].as_u64().unwrap() >= 7);
    assert!(status.body["journal"]["segments"].as_u64().unwrap() >= 1);
    assert!(status.body["journal"]["disk_bytes"].as_u64().unwrap() > 0);
    assert_eq!(status.body["shards"][0]["ring_capacity"], 16384);
    drop(one);

    // A clean restart: the halt and the kill switches are still there.
    assert!(server.stop().success());
    let server = Server::start(&data, &[]);
    let addr = server.metrics;
    let status = call(|a| a.status().unwrap(), addr).await.unwrap();
    assert_eq!(status.body["engine"]["kill_switches"], serde_json::json!([1, 3]), "{status:?}");
    assert_eq!(status.body["engine"]["halted"], serde_json::json!(["CA"]));
    let mut three = connect(server.json, Encoding::Json, 3, "").await;
    three.send(&new(3, "CB", Side::Buy, 10, 5, None)).await.unwrap();
    assert!(matches!(next(&mut three).await, Reply::Rejected { reason: GatewayReason::KillSwitch, .. }));

    // Released and resumed, then a kill -9: recovery replays the notes and
    // commands after the snapshot.
    assert!(call(|a| a.release(1).unwrap(), addr).await.unwrap().ok());
    let resumed = call(|a| a.resume("CA").unwrap(), addr).await.unwrap();
    assert_eq!(resumed.body["event"]["status"], "open");
    let _ = call(|a| a.kill(4).unwrap(), addr).await.unwrap();
    server.kill9();
    let server = Server::start(&data, &[]);
    let addr = server.metrics;
    let status = call(|a| a.status().unwrap(), addr).await.unwrap();
    assert_eq!(status.body["engine"]["kill_switches"], serde_json::json!([3, 4]), "{status:?}");
    assert_eq!(status.body["engine"]["halted"], serde_json::json!([]));
    let mut one = connect(server.binary, Encoding::Binary, 1, "").await;
    one.send(&new(1, "CA", Side::Buy, 10, 5, None)).await.unwrap();
    let (_, accepted) = event(&mut one).await;
    assert!(matches!(accepted, ClientEvent::Accepted { .. }), "{accepted:?}");
    server.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_users_file_the_console_is_for_operators() {
    let dir = scratch("ops-auth");
    let users = dir.join("users.toml");
    let trader_key = add_user(&users, 5, "trader");
    let operator_key = add_user(&users, 9, "operator");
    let server = Server::start(&dir.join("data"), &["--users", users.to_str().unwrap()]);
    let addr = server.metrics;
    let answers = tokio::task::spawn_blocking(move || {
        [
            Admin::new(addr).status().unwrap().status,
            Admin::new(addr).with_credentials(5, &trader_key).status().unwrap().status,
            Admin::new(addr).with_credentials(9, "wrong").status().unwrap().status,
            Admin::new(addr).with_credentials(9, &operator_key).status().unwrap().status,
            // Metrics and health need no credentials.
            Admin::new(addr).ready().unwrap().status,
        ]
    })
    .await
    .unwrap();
    assert_eq!(answers, [401, 403, 401, 200, 200]);
    server.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_snapshots_keep_recovery_short() {
    let dir = scratch("ops-snapshots");
    let data = dir.join("data");
    let server = Server::start(&data, &["--snapshot-interval-s", "1"]);
    let mut one = connect(server.binary, Encoding::Binary, 1, "").await;
    for price in 1..=20 {
        one.send(&new(1, "PS", Side::Buy, price, 1, Some(&format!("c{price}")))).await.unwrap();
        assert!(matches!(event(&mut one).await.1, ClientEvent::Accepted { .. }));
    }
    let addr = server.metrics;
    let _ = tokio::task::spawn_blocking(move || Admin::new(addr).kill(2).unwrap()).await.unwrap();
    // A snapshot at seq 21 (20 orders and the note; no order of user 2 to cancel
    // is still a mass cancel: seq 22) comes within the interval.
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = Admin::new(addr).status().unwrap();
            if status.body["journal"]["last_snapshot_seq"].as_u64() == Some(22) || Instant::now() > deadline {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    assert_eq!(status.body["journal"]["last_snapshot_seq"], 22, "{status:?}");
    assert!(server.log().contains("periodic snapshot written"));
    // Two more orders, then a crash: recovery replays only those two.
    for price in [30, 31] {
        one.send(&new(1, "PS", Side::Buy, price, 1, None)).await.unwrap();
        assert!(matches!(event(&mut one).await.1, ClientEvent::Accepted { .. }));
    }
    server.kill9();
    // Recovery replays only what came after the newest snapshot (the one
    // at 22, unless another was due before the crash).
    let newest = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_prefix("snapshot-")?.strip_suffix(".snap")?.parse().ok())
        .max()
        .unwrap_or(0u64);
    assert!(newest >= 22);
    let server = Server::start(&data, &[]);
    let addr = server.metrics;
    let page = tokio::task::spawn_blocking(move || Admin::new(addr).metrics().unwrap()).await.unwrap();
    assert_eq!(value(&page, "matching_recovery_replayed_commands", &[]), (24 - newest) as f64, "{page}");
    // The snapshot's annex kept the cids and the kill switch.
    let status = tokio::task::spawn_blocking(move || Admin::new(addr).status().unwrap()).await.unwrap();
    assert_eq!(status.body["engine"]["kill_switches"], serde_json::json!([2]));
    assert_eq!(status.body["engine"]["resting_orders"], 22);
    let mut one = connect(server.json, Encoding::Json, 1, "").await;
    one.send(&Request::Orders).await.unwrap();
    let Reply::Orders(orders) = next(&mut one).await else { panic!() };
    assert_eq!(orders.iter().filter(|o| o.cid.is_some()).count(), 20);
    server.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_instruments_have_ticks_and_lots() {
    let dir = scratch("ops-instruments");
    let config = dir.join("serve.toml");
    let text = "[[instruments]]\nsymbol = \"TL\"\ntick = 5\nlot = 10\n\n[[instruments]]\nsymbol = \"ANY\"\n";
    std::fs::write(&config, text).unwrap();
    let server = Server::start(&dir.join("data"), &["--config", config.to_str().unwrap()]);
    let mut one = connect(server.binary, Encoding::Binary, 1, "").await;
    let refused = |reply: Reply| match reply {
        Reply::Rejected { reason, .. } => reason,
        other => panic!("expected a refusal, got {other:?}"),
    };
    one.send(&new(1, "TL", Side::Buy, 12, 10, None)).await.unwrap();
    assert_eq!(refused(next(&mut one).await), GatewayReason::InvalidTick);
    one.send(&new(1, "TL", Side::Buy, 15, 15, None)).await.unwrap();
    assert_eq!(refused(next(&mut one).await), GatewayReason::InvalidLot);
    one.send(&new(1, "TL", Side::Buy, 15, 20, Some("t1"))).await.unwrap();
    assert!(matches!(event(&mut one).await.1, ClientEvent::Accepted { .. }));
    // A modify is held to them too.
    let modify = |price, qty| Request::ModifyCid {
        user: 1,
        cid: matching_proto::session::Cid::new("t1").unwrap(),
        price: Some(price),
        qty: Some(qty),
    };
    one.send(&modify(16, 20)).await.unwrap();
    assert_eq!(refused(next(&mut one).await), GatewayReason::InvalidTick);
    one.send(&modify(20, 30)).await.unwrap();
    assert!(matches!(event(&mut one).await.1, ClientEvent::Modified { price: 20, qty: 30, .. }));
    // Tick and lot 1 when left out; an unlisted symbol is the engine's `invalid_symbol`.
    one.send(&new(1, "ANY", Side::Sell, 7, 3, None)).await.unwrap();
    assert!(matches!(event(&mut one).await.1, ClientEvent::Accepted { .. }));
    one.send(&new(1, "OTHER", Side::Sell, 7, 3, None)).await.unwrap();
    let ClientEvent::Rejected { reason, .. } = event(&mut one).await.1 else { panic!() };
    assert_eq!(reason, RejectReason::InvalidSymbol);
    server.kill9();
}

/// A full disk (the shell limits the file size and ignores SIGXFSZ, so a
/// write past it fails): the journal fails, `/health/ready` says `failed`
/// with the error, clients are told, and `serve` exits non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_failure_turns_health_failed_and_ends_the_server() {
    let dir = scratch("ops-full");
    let script = "trap '' XFSZ; ulimit -f 1024; exec \"$0\" serve --data \"$1\" --binary-addr 127.0.0.1:0 \
                  --json-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 --no-market-data --no-fix";
    let mut child = Command::new("sh")
        .args(["-c", script, env!("CARGO_BIN_EXE_matching-engine")])
        .arg(dir.join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = [String::new(), String::new()];
    for line in &mut lines {
        stdout.read_line(line).unwrap();
    }
    let field = |name: &str| -> std::net::SocketAddr {
        let at = lines[1].find(&format!(" {name}=")).unwrap() + name.len() + 2;
        lines[1][at..].split_whitespace().next().unwrap().parse().unwrap()
    };
    let (binary, metrics) = (field("binary"), field("metrics"));
    let watcher = std::thread::spawn(move || {
        let admin = Admin::new(metrics);
        let mut last = None;
        // Until the server is gone: the last readiness it gave.
        while let Ok(answer) = admin.ready() {
            last = Some(answer);
            std::thread::sleep(Duration::from_millis(2));
        }
        last
    });
    let mut client = connect(binary, Encoding::Binary, 1, "").await;
    // A batch at a time, each answered before the next goes (so the server
    // has read all it was sent when it fails, and its goodbye is not lost
    // to a reset).
    let batch: Vec<Request> = (0..200).map(|i| new(1, "FULL", Side::Buy, 1 + i % 50, 1, None)).collect();
    let goodbye = 'sending: loop {
        client.send_batch(&batch).await.unwrap();
        let mut answered = 0;
        while answered < batch.len() {
            match client.next_within(Duration::from_secs(10)).await {
                Ok(Some(Reply::Goodbye { reason })) => break 'sending Some(reason),
                Ok(Some(_)) => answered += 1,
                other => {
                    eprintln!("the connection ended: {other:?}");
                    break 'sending None;
                }
            }
        }
    };
    let Some(reason) = goodbye else {
        let output = child.wait_with_output().unwrap();
        panic!("the client is told why; the server said: {}", String::from_utf8_lossy(&output.stderr))
    };
    assert!(reason.contains("journal"), "{reason}");
    let last = tokio::task::spawn_blocking(move || watcher.join().unwrap()).await.unwrap().unwrap();
    assert_eq!((last.status, last.body["status"].as_str()), (503, Some("failed")), "{last:?}");
    assert!(last.body["reason"].as_str().unwrap().contains("journal"), "{last:?}");
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("error:") && stderr.contains("journal"), "{stderr}");
}
