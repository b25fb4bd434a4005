//! Never miss a fill across a reconnect, even across a `kill -9` of the
//! server: a maker's session reads its events while a taker fills it; the
//! server is killed mid-stream and restarted; the maker logs in again with
//! `resume_after` = the last `seq` it saw, and the taker goes on. At the end
//! the maker must have seen exactly the events of user 1 in the journal —
//! the reference is `replay` of the journal's commands — each once, in order.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::server::{Server, scratch};
use matching_client::{Client, Encoding, login};
use matching_core::{Action, NewOrder, Side, Symbol};
use matching_proto::session::{ClientEvent, Login, Reply, Request};

const BINARY: &str = env!("CARGO_BIN_EXE_matching-engine");
const MAKER: u64 = 1;
const TAKER: u64 = 2;

fn order(user: u64, side: Side, price: u64, qty: u64) -> Request {
    let order = NewOrder::limit(0, user, Symbol::new("RK").unwrap(), side, price, qty);
    Request::Command { action: Action::New(order), cid: None }
}

/// What identifies an event for the comparison: `(seq, kind, order id)`.
type Key = (u64, &'static str, u64);

fn key(seq: u64, event: &ClientEvent) -> Option<Key> {
    Some(match *event {
        ClientEvent::Accepted { order_id, .. } => (seq, "accepted", order_id),
        ClientEvent::Fill { order_id, .. } => (seq, "trade", order_id),
        ClientEvent::Cancelled { order_id, .. } => (seq, "cancelled", order_id),
        ClientEvent::Modified { order_id, .. } => (seq, "modified", order_id),
        ClientEvent::Rejected { order_id, .. } => (seq, "rejected", order_id.unwrap_or(0)),
        _ => return None,
    })
}

/// Reads the maker's events until `stop` says so (or the server goes).
async fn read_events(client: &mut Client, seen: &mut Vec<Key>, until: impl Fn(&[Key]) -> bool) {
    while !until(seen) {
        match client.next_within(Duration::from_secs(5)).await {
            Ok(Some(Reply::Event { seq, event })) => seen.extend(key(seq, &event)),
            Ok(Some(_)) => {}
            _ => return,
        }
    }
}

/// The maker's events in the journal: its commands replayed (`journal
/// inspect`, then `replay`), the events that concern its orders.
fn reference(data: &std::path::Path) -> Vec<Key> {
    let inspect = Command::new(BINARY).args(["journal", "inspect", "--data"]).arg(data).output().unwrap();
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stderr));
    let mut commands = String::new();
    for line in String::from_utf8(inspect.stdout).unwrap().lines() {
        if let Some(at) = line.find("\"command\":") {
            let command = &line[at + 10..line.len() - 1];
            commands.push_str(command);
            commands.push('\n');
        }
    }
    let mut replay = Command::new(BINARY)
        .arg("replay")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(replay.stdin.as_mut().unwrap(), commands.as_bytes()).unwrap();
    drop(replay.stdin.take());
    let output = replay.wait_with_output().unwrap();
    let mut makers_orders = std::collections::BTreeSet::new();
    let mut keys = Vec::new();
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let seq = value["seq"].as_u64().unwrap();
        let id = |name: &str| value[name].as_u64().unwrap_or(0);
        match value["ev"].as_str().unwrap() {
            "accepted" if id("user") == MAKER => {
                makers_orders.insert(id("order_id"));
                keys.push((seq, "accepted", id("order_id")));
            }
            "trade" if id("maker_user") == MAKER => keys.push((seq, "trade", id("maker_order_id"))),
            "trade" if id("taker_user") == MAKER => keys.push((seq, "trade", id("taker_order_id"))),
            "cancelled" if makers_orders.contains(&id("order_id")) => keys.push((seq, "cancelled", id("order_id"))),
            _ => {}
        }
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_session_sees_every_event_once_across_a_kill9() {
    let dir = scratch("resume-kill9");
    let data = dir.join("data");
    let server = Server::start(&data, &[]);
    let mut maker = Client::connect(server.binary, Encoding::Binary).await.unwrap();
    maker.login(login(MAKER, "")).await.unwrap();
    // Plenty to fill: 40 sells of 50.
    let sells: Vec<Request> = (0..40).map(|i| order(MAKER, Side::Sell, 100 + i, 50)).collect();
    maker.send_batch(&sells).await.unwrap();
    let mut seen = Vec::new();
    read_events(&mut maker, &mut seen, |s| s.len() >= 40).await;
    assert_eq!(seen.len(), 40, "the sells were accepted");

    // The taker buys one lot at a time; the server dies in the middle of it.
    let taker_addr = server.binary;
    let taker = tokio::spawn(async move {
        let mut taker = Client::connect(taker_addr, Encoding::Binary).await.unwrap();
        taker.login(login(TAKER, "")).await.unwrap();
        for _ in 0..2000 {
            if taker.send(&order(TAKER, Side::Buy, 200, 1)).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
    });
    read_events(&mut maker, &mut seen, |s| s.len() >= 40 + 2 * 150).await;
    server.kill9();
    let _ = taker.await;
    // Whatever was already on the wire is read; then the connection is gone.
    read_events(&mut maker, &mut seen, |_| false).await;

    let server = Server::start(&data, &[]);
    let last = seen.last().unwrap().0;
    let mut back = Client::connect(server.binary, Encoding::Binary).await.unwrap();
    let resume = Login { resume_after: Some(last), ..login(MAKER, "") };
    assert_eq!(back.login(resume).await.unwrap(), Reply::LoginAccepted { user: MAKER });
    let before_resume = seen.len();
    loop {
        match back.next_within(Duration::from_secs(10)).await.unwrap() {
            Some(Reply::Event { seq, event }) => seen.extend(key(seq, &event)),
            Some(Reply::ResumeDone { .. }) => break,
            other => panic!("expected the replay, then resume_done: {other:?}"),
        }
    }
    println!(
        "{before_resume} events seen before the kill (the last at seq {last}), {} replayed",
        seen.len() - before_resume
    );
    // More fills, live, after the restart.
    let mut taker = Client::connect(server.binary, Encoding::Binary).await.unwrap();
    taker.login(login(TAKER, "")).await.unwrap();
    let buys: Vec<Request> = (0..20).map(|_| order(TAKER, Side::Buy, 200, 1)).collect();
    taker.send_batch(&buys).await.unwrap();
    let before = seen.len();
    read_events(&mut back, &mut seen, |s| s.len() >= before + 20).await;
    assert!(server.stop().success());

    let want = reference(&data);
    let mut counts: BTreeMap<Key, usize> = BTreeMap::new();
    for key in &seen {
        *counts.entry(*key).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events seen more than once: {twice:?}");
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "events out of order");
    assert_eq!(seen.len(), want.len(), "saw {} of the journal's {} events of the maker", seen.len(), want.len());
    assert_eq!(seen, want);
}
