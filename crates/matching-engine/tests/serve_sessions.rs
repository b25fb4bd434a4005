//! `matching-engine serve` over real loopback sockets, as a real process:
//! logins and roles, ownership, who hears what, client order ids,
//! cancel-on-disconnect, the three front doors, bad input, a slow reader,
//! and a clean stop that a restart recovers.

mod common;

use std::time::{Duration, Instant};

use common::client::{closed, connect, event, new, next, quiet, sym};
use common::server::{Server, add_user, scratch};
use futures_util::{SinkExt, StreamExt};
use matching_client::{Client, Encoding, login};
use matching_core::{Action, CancelReason, RejectReason, Side, TradingStatus};
use matching_proto::session::{Cid, ClientEvent, GatewayReason, Liquidity, Login, LoginError, Reply, Request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_keys_and_roles() {
    let dir = scratch("roles");
    let users = dir.join("users");
    let seven = add_user(&users, 7, "trader");
    let eight = add_user(&users, 8, "trader");
    let operator = add_user(&users, 1, "operator");
    let users_flag = users.to_str().unwrap();
    let server = Server::start(&dir.join("data"), &["--users", users_flag, "--login-timeout", "0.5"]);

    // A wrong key, an unknown user, an empty key: refused, then closed.
    for (user, key) in [(7, eight.as_str()), (9, seven.as_str()), (7, "")] {
        for (addr, encoding) in [(server.binary, Encoding::Binary), (server.json, Encoding::Json)] {
            let mut client = Client::connect(addr, encoding).await.unwrap();
            let reply = client.login(login(user, key)).await.unwrap();
            assert_eq!(reply, Reply::LoginRejected { reason: LoginError::BadCredentials });
            assert_eq!(closed(&mut client).await, None);
        }
    }
    // No login in time: a goodbye, then closed.
    let mut silent = Client::connect(server.binary, Encoding::Binary).await.unwrap();
    let reason = closed(&mut silent).await.expect("a goodbye");
    assert!(reason.contains("no login"), "{reason}");
    // Anything but a login first: refused.
    let mut eager = Client::connect(server.json, Encoding::Json).await.unwrap();
    eager.send(&Request::Ping).await.unwrap();
    assert_eq!(next(&mut eager).await, Reply::LoginRejected { reason: LoginError::Malformed });

    // A trader acts as itself whatever `user` it writes, and may not halt.
    let mut trader = connect(server.binary, Encoding::Binary, 7, &seven).await;
    trader.send(&new(8, "X", Side::Sell, 100, 5, None)).await.unwrap();
    let (seq, accepted) = event(&mut trader).await;
    let ClientEvent::Accepted { order_id, user, .. } = accepted else { panic!("{accepted:?}") };
    assert_eq!((order_id, user), (seq, 7), "the order is the trader's own");
    trader.send(&Request::Command { action: Action::Halt { symbol: sym("X") }, cid: None }).await.unwrap();
    assert_eq!(
        next(&mut trader).await,
        Reply::Rejected { reason: GatewayReason::NotPermitted, order_id: None, cid: None }
    );

    // Another trader cannot cancel it, even naming its owner.
    let mut other = connect(server.json, Encoding::Json, 8, &eight).await;
    other.send(&Request::Command { action: Action::Cancel { user: 7, order_id }, cid: None }).await.unwrap();
    let (_, refused) = event(&mut other).await;
    assert_eq!(
        refused,
        ClientEvent::Rejected { reason: RejectReason::UnknownOrder, order_id: Some(order_id), cid: None }
    );
    quiet(&mut trader).await;

    // An operator halts, and mass-cancels another user's orders (the kill switch).
    let mut op = connect(server.binary, Encoding::Binary, 1, &operator).await;
    op.send(&Request::Command { action: Action::Halt { symbol: sym("X") }, cid: None }).await.unwrap();
    let (_, status) = event(&mut op).await;
    assert_eq!(status, ClientEvent::Status { symbol: sym("X"), status: TradingStatus::Halted });
    op.send(&Request::Command { action: Action::MassCancel { user: 7, symbol: None, side: None }, cid: None })
        .await
        .unwrap();
    assert_eq!(event(&mut op).await.1, ClientEvent::MassCancelled { user: 7, count: 1 });
    let (_, cancelled) = event(&mut trader).await;
    assert_eq!(cancelled, ClientEvent::Cancelled { order_id, reason: CancelReason::Mass, remaining: 5, cid: None });
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_users_the_server_keeps_to_loopback() {
    let dir = scratch("open");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_matching-engine"))
        .args(["serve", "--json-addr", "0.0.0.0:0", "--binary-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .arg("--data")
        .arg(dir.join("data"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("loopback") && stderr.contains("0.0.0.0"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_go_to_maker_and_taker_and_nobody_else() {
    let dir = scratch("routing");
    let server = Server::start(&dir.join("data"), &[]);
    let mut maker = connect(server.binary, Encoding::Binary, 1, "").await;
    let mut taker = connect(server.json, Encoding::Json, 2, "").await;
    let mut bystander = connect(server.binary, Encoding::Binary, 3, "").await;
    let mut maker_too = connect(server.json, Encoding::Json, 1, "").await;

    maker.send(&new(1, "R", Side::Sell, 100, 10, Some("m1"))).await.unwrap();
    let (_, accepted) = event(&mut maker).await;
    let ClientEvent::Accepted { order_id: maker_id, cid, .. } = accepted else { panic!() };
    assert_eq!(cid, Cid::new("m1"));
    taker.send(&new(2, "R", Side::Buy, 101, 4, Some("t1"))).await.unwrap();
    let (seq, accepted) = event(&mut taker).await;
    let ClientEvent::Accepted { order_id: taker_id, .. } = accepted else { panic!() };
    let (fill_seq, fill) = event(&mut taker).await;
    assert_eq!(fill_seq, seq);
    assert_eq!(
        fill,
        ClientEvent::Fill {
            symbol: sym("R"),
            trade_id: 1,
            price: 100,
            qty: 4,
            order_id: taker_id,
            side: Side::Buy,
            liquidity: Liquidity::Taker,
            remaining: 0,
            cid: Cid::new("t1"),
        }
    );
    // Both of the maker's sessions see its side, with its cid.
    for session in [&mut maker, &mut maker_too] {
        assert_eq!(
            event(session).await,
            (
                seq,
                ClientEvent::Fill {
                    symbol: sym("R"),
                    trade_id: 1,
                    price: 100,
                    qty: 4,
                    order_id: maker_id,
                    side: Side::Sell,
                    liquidity: Liquidity::Maker,
                    remaining: 6,
                    cid: Cid::new("m1"),
                }
            )
        );
    }
    quiet(&mut bystander).await;
    // The maker's orders: what rests, with its cid; the taker has none.
    maker.send(&Request::Orders).await.unwrap();
    let Reply::Orders(orders) = next(&mut maker).await else { panic!() };
    assert_eq!(orders.len(), 1);
    assert_eq!((orders[0].order_id, orders[0].cid, orders[0].qty, orders[0].price), (maker_id, Cid::new("m1"), 6, 100));
    taker.send(&Request::Orders).await.unwrap();
    assert_eq!(next(&mut taker).await, Reply::Orders(Vec::new()));
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_order_ids() {
    let dir = scratch("cids");
    let server = Server::start(&dir.join("data"), &[]);
    for encoding in [Encoding::Binary, Encoding::Json] {
        let addr = if encoding == Encoding::Binary { server.binary } else { server.json };
        let user = if encoding == Encoding::Binary { 10 } else { 11 };
        let mut client = connect(addr, encoding, user, "").await;
        client.send(&new(user, "C", Side::Buy, 50, 3, Some("a.1"))).await.unwrap();
        let (_, accepted) = event(&mut client).await;
        let ClientEvent::Accepted { order_id, .. } = accepted else { panic!("{accepted:?}") };
        // A live cid cannot be used again.
        client.send(&new(user, "C", Side::Buy, 51, 3, Some("a.1"))).await.unwrap();
        assert_eq!(
            next(&mut client).await,
            Reply::Rejected { reason: GatewayReason::DuplicateCid, order_id: None, cid: Cid::new("a.1") }
        );
        // Modify and cancel by cid; the events echo it.
        client
            .send(&Request::ModifyCid { user, cid: Cid::new("a.1").unwrap(), price: Some(49), qty: None })
            .await
            .unwrap();
        assert_eq!(
            event(&mut client).await.1,
            ClientEvent::Modified { order_id, price: 49, qty: 3, cid: Cid::new("a.1") }
        );
        client.send(&Request::CancelCid { user, cid: Cid::new("a.1").unwrap() }).await.unwrap();
        assert_eq!(
            event(&mut client).await.1,
            ClientEvent::Cancelled { order_id, reason: CancelReason::User, remaining: 3, cid: Cid::new("a.1") }
        );
        // Gone: its cid names nothing, and is free again.
        client.send(&Request::CancelCid { user, cid: Cid::new("a.1").unwrap() }).await.unwrap();
        assert_eq!(
            next(&mut client).await,
            Reply::Rejected { reason: GatewayReason::UnknownCid, order_id: None, cid: Cid::new("a.1") }
        );
        client.send(&new(user, "C", Side::Buy, 50, 1, Some("a.1"))).await.unwrap();
        assert!(matches!(event(&mut client).await.1, ClientEvent::Accepted { cid: Some(_), .. }));
    }
    // A cid is per user: another user may use the same one, and cannot cancel by it.
    let mut other = connect(server.json, Encoding::Json, 12, "").await;
    other.send(&Request::CancelCid { user: 12, cid: Cid::new("a.1").unwrap() }).await.unwrap();
    assert!(matches!(next(&mut other).await, Reply::Rejected { reason: GatewayReason::UnknownCid, .. }));
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_on_disconnect_when_the_last_such_session_drops() {
    let dir = scratch("cod");
    let server = Server::start(&dir.join("data"), &[]);
    let cod = Login { cancel_on_disconnect: true, ..login(5, "") };
    let mut first = Client::connect(server.binary, Encoding::Binary).await.unwrap();
    first.login(cod.clone()).await.unwrap();
    let mut second = Client::connect(server.json, Encoding::Json).await.unwrap();
    second.login(cod).await.unwrap();
    let mut watcher = connect(server.json, Encoding::Json, 5, "").await;
    first.send(&new(5, "D", Side::Sell, 10, 2, None)).await.unwrap();
    let ClientEvent::Accepted { order_id, .. } = event(&mut first).await.1 else { panic!() };
    drop(first);
    // Another session that asked for it is still there: nothing is cancelled.
    quiet(&mut watcher).await;
    drop(second);
    let (_, cancelled) = event(&mut watcher).await;
    assert_eq!(cancelled, ClientEvent::Cancelled { order_id, reason: CancelReason::Mass, remaining: 2, cid: None });
    watcher.send(&Request::Orders).await.unwrap();
    assert_eq!(next(&mut watcher).await, Reply::Orders(Vec::new()));
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_api_is_the_json_session() {
    let dir = scratch("ws");
    let server = Server::start(&dir.join("data"), &[]);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.http)).await.unwrap();
    use tokio_tungstenite::tungstenite::Message;
    let text = |message: Option<Result<Message, _>>| match message {
        Some(Ok(Message::Text(text))) => text.to_string(),
        other => panic!("{other:?}"),
    };
    ws.send(Message::Text(r#"{"op":"login","user":4}"#.into())).await.unwrap();
    assert_eq!(text(ws.next().await), r#"{"ev":"login","ok":true,"user":4}"#);
    ws.send(Message::Text(r#"{"op":"new","symbol":"W","side":"buy","price":7,"qty":1,"cid":"w1"}"#.into()))
        .await
        .unwrap();
    let accepted = text(ws.next().await);
    assert!(accepted.starts_with(r#"{"seq":1,"ev":"accepted","order_id":1,"user":4"#), "{accepted}");
    assert!(accepted.ends_with(r#""cid":"w1"}"#), "{accepted}");
    ws.send(Message::Text("nonsense".into())).await.unwrap();
    assert_eq!(text(ws.next().await), r#"{"ev":"rejected","reason":"malformed"}"#);
    ws.send(Message::Text(r#"{"op":"ping"}"#.into())).await.unwrap();
    assert_eq!(text(ws.next().await), r#"{"ev":"pong"}"#);
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_touches_nothing() {
    let dir = scratch("garbage");
    let server = Server::start(&dir.join("data"), &[]);
    let mut victim = connect(server.binary, Encoding::Binary, 1, "").await;
    victim.send(&new(1, "G", Side::Buy, 10, 1, None)).await.unwrap();
    let ClientEvent::Accepted { order_id, .. } = event(&mut victim).await.1 else { panic!() };

    // JSON: a line over the limit is refused and the session goes on;
    // an unknown op, a bad cid, garbage: each refused.
    let json = connect(server.json, Encoding::Json, 2, "").await;
    let long = format!("{{\"op\":\"ping\",\"pad\":\"{}\"}}\n", "x".repeat(5000));
    let (mut sender, mut receiver) = json.split();
    sender.send_raw(long.as_bytes()).await.unwrap();
    assert!(matches!(receiver.next().await.unwrap(), Some(Reply::Rejected { reason: GatewayReason::TooLong, .. })));
    for (line, reason) in [
        ("{\"op\":\"launch\"}\n", GatewayReason::UnknownOp),
        (
            "{\"op\":\"new\",\"symbol\":\"G\",\"side\":\"buy\",\"price\":1,\"qty\":1,\"cid\":\"no spaces\"}\n",
            GatewayReason::Malformed,
        ),
        ("\u{1}\u{2}garbage\n", GatewayReason::Malformed),
        ("{\"op\":\"cancel\",\"order_id\":\"x\"}\n", GatewayReason::Malformed),
    ] {
        sender.send_raw(line.as_bytes()).await.unwrap();
        let reply = receiver.next().await.unwrap().unwrap();
        assert!(matches!(reply, Reply::Rejected { reason: r, .. } if r == reason), "{line}: {reply:?}");
    }
    // Sixteen in a row end the session.
    sender.send_raw("junk\n".repeat(16).as_bytes()).await.unwrap();
    let mut goodbye = None;
    while let Ok(Some(reply)) = receiver.next().await {
        if let Reply::Goodbye { reason } = reply {
            goodbye = Some(reason);
        }
    }
    assert!(goodbye.is_some_and(|r| r.contains("in a row")));

    // Binary: an unknown message type, a truncated packet, a length over the limit.
    let (mut sender, mut receiver) = connect(server.binary, Encoding::Binary, 3, "").await.split();
    sender.send_raw(&[0, 2, b'U', b'?']).await.unwrap();
    assert!(matches!(receiver.next().await.unwrap(), Some(Reply::Rejected { reason: GatewayReason::UnknownOp, .. })));
    sender.send_raw(&[0, 1, b'U']).await.unwrap();
    assert!(matches!(receiver.next().await.unwrap(), Some(Reply::Rejected { reason: GatewayReason::Malformed, .. })));
    sender.send_raw(&[0xff, 0xff, b'U']).await.unwrap();
    assert!(matches!(receiver.next().await.unwrap(), Some(Reply::Rejected { reason: GatewayReason::TooLong, .. })));
    assert!(receiver.next().await.map(|r| r.is_none() || matches!(r, Some(Reply::Goodbye { .. }))).unwrap_or(true));
    // Half a packet, then gone.
    let (mut sender, _) = connect(server.binary, Encoding::Binary, 3, "").await.split();
    sender.send_raw(&[0, 60, b'U', b'O', 1, 2]).await.unwrap();
    drop(sender);

    // The first user's order is untouched, and the server still serves.
    victim.send(&Request::Orders).await.unwrap();
    let Reply::Orders(orders) = next(&mut victim).await else { panic!() };
    assert_eq!(orders.iter().map(|o| o.order_id).collect::<Vec<_>>(), vec![order_id]);
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_dropped_and_others_keep_trading() {
    let dir = scratch("slow");
    let server = Server::start(&dir.join("data"), &["--max-outbox", "256", "--fsync", "off"]);
    // The slow one sends orders and never reads its answers.
    let (mut slow_tx, mut slow_rx) = connect(server.binary, Encoding::Binary, 1, "").await.split();
    let flood = tokio::spawn(async move {
        let batch: Vec<Request> = (0..500).map(|i| new(1, "S", Side::Buy, 1 + i % 100, 1, None)).collect();
        for _ in 0..400 {
            if slow_tx.send_batch(&batch).await.is_err() {
                break;
            }
        }
    });
    // Meanwhile another client trades, one round trip at a time.
    let mut busy = connect(server.binary, Encoding::Binary, 2, "").await;
    let started = Instant::now();
    for i in 0..300 {
        busy.send(&new(2, "B", Side::Sell, 1000 + i, 1, None)).await.unwrap();
        assert!(matches!(event(&mut busy).await.1, ClientEvent::Accepted { .. }));
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(30), "300 round trips took {elapsed:?}");
    // The slow one was cut off: reading now, it finds the end.
    let cut = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match slow_rx.next().await {
                Ok(Some(_)) => continue,
                _ => return,
            }
        }
    })
    .await;
    assert!(cut.is_ok(), "the slow reader was never disconnected");
    let log = server.log();
    assert!(log.contains("slow reader"), "the server says why it dropped the session:\n{log}");
    flood.abort();
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_snapshots_and_a_restart_recovers() {
    let dir = scratch("restart");
    let data = dir.join("data");
    let server = Server::start(&data, &[]);
    let mut client = connect(server.json, Encoding::Json, 6, "").await;
    let mut ids = Vec::new();
    for price in [10, 11, 12] {
        let cid = format!("k{price}");
        client.send(&new(6, "K", Side::Sell, price, 2, Some(&cid))).await.unwrap();
        let ClientEvent::Accepted { order_id, .. } = event(&mut client).await.1 else { panic!() };
        ids.push(order_id);
    }
    let stop = tokio::task::spawn_blocking(move || server.stop());
    let reason = closed(&mut client).await;
    assert!(reason.is_some_and(|r| r.contains("shutting down")));
    assert!(stop.await.unwrap().success(), "a clean stop exits 0");
    assert!(
        std::fs::read_dir(&data).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with("snapshot-"))
    );

    let server = Server::start(&data, &[]);
    let mut client = connect(server.binary, Encoding::Binary, 6, "").await;
    client.send(&Request::Orders).await.unwrap();
    let Reply::Orders(orders) = next(&mut client).await else { panic!() };
    assert_eq!(orders.iter().map(|o| o.order_id).collect::<Vec<_>>(), ids);
    // Their cids were kept with the snapshot.
    let cids: Vec<String> = orders.iter().map(|o| o.cid.map(|c| c.to_string()).unwrap_or_default()).collect();
    assert_eq!(cids, vec!["k10", "k11", "k12"]);
    // The sequence goes on.
    client.send(&new(6, "K", Side::Buy, 10, 1, None)).await.unwrap();
    let (seq, _) = event(&mut client).await;
    assert_eq!(seq, ids[2] + 1);
    // (It trades with itself: both fills come to it.)
    for _ in 0..2 {
        assert!(matches!(event(&mut client).await.1, ClientEvent::Fill { .. }));
    }
    // After a kill -9 the cids come back from the journal: those after the
    // snapshot too.
    client.send(&new(6, "K", Side::Sell, 20, 1, Some("after"))).await.unwrap();
    let ClientEvent::Accepted { order_id: after, .. } = event(&mut client).await.1 else { panic!() };
    server.kill9();
    let server = Server::start(&data, &[]);
    let mut client = connect(server.json, Encoding::Json, 6, "").await;
    client.send(&Request::Orders).await.unwrap();
    let Reply::Orders(orders) = next(&mut client).await else { panic!() };
    let cids: Vec<(u64, String)> =
        orders.iter().map(|o| (o.order_id, o.cid.map(|c| c.to_string()).unwrap_or_default())).collect();
    assert_eq!(
        cids,
        vec![(ids[0], "k10".into()), (ids[1], "k11".into()), (ids[2], "k12".into()), (after, "after".into())]
    );
    // A cid still names its order, and a live one still cannot be reused.
    client.send(&Request::CancelCid { user: 6, cid: Cid::new("after").unwrap() }).await.unwrap();
    assert!(matches!(event(&mut client).await.1, ClientEvent::Cancelled { order_id, .. } if order_id == after));
    client.send(&new(6, "K", Side::Sell, 30, 1, Some("k11"))).await.unwrap();
    assert!(matches!(next(&mut client).await, Reply::Rejected { reason: GatewayReason::DuplicateCid, .. }));
    server.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_replays_what_a_session_missed_exactly_once() {
    let dir = scratch("resume");
    let data = dir.join("data");
    let server = Server::start(&data, &[]);
    let resume = |after: u64| Login { resume_after: Some(after), ..login(1, "") };
    let mut maker = connect(server.binary, Encoding::Binary, 1, "").await;
    maker.send(&new(1, "Z", Side::Sell, 100, 10, Some("m"))).await.unwrap();
    let (seen, _) = event(&mut maker).await;
    drop(maker);

    // While the maker is away, it is filled twice.
    let mut taker = connect(server.json, Encoding::Json, 2, "").await;
    let mut fills = Vec::new();
    for qty in [3, 2] {
        taker.send(&new(2, "Z", Side::Buy, 100, qty, None)).await.unwrap();
        let (seq, _) = event(&mut taker).await;
        assert!(matches!(event(&mut taker).await.1, ClientEvent::Fill { .. }));
        fills.push(seq);
    }
    // Back: exactly what it missed, in order, then the end of the replay, then live events.
    let mut back = Client::connect(server.binary, Encoding::Binary).await.unwrap();
    assert_eq!(back.login(resume(seen)).await.unwrap(), Reply::LoginAccepted { user: 1 });
    for (seq, remaining) in [(fills[0], 7), (fills[1], 5)] {
        let (got, fill) = event(&mut back).await;
        assert_eq!(got, seq);
        assert!(
            matches!(fill, ClientEvent::Fill { remaining: r, liquidity: Liquidity::Maker, cid: Some(_), .. } if r == remaining),
            "{fill:?}"
        );
    }
    assert_eq!(next(&mut back).await, Reply::ResumeDone { last_seq: fills[1] });
    taker.send(&new(2, "Z", Side::Buy, 100, 1, None)).await.unwrap();
    let (live, fill) = event(&mut back).await;
    assert!(live > fills[1] && matches!(fill, ClientEvent::Fill { remaining: 4, .. }), "{live} {fill:?}");
    quiet(&mut back).await;
    // From the start: its own accepted too.
    let mut all = Client::connect(server.json, Encoding::Json).await.unwrap();
    all.login(resume(0)).await.unwrap();
    let replayed: Vec<u64> =
        [event(&mut all).await, event(&mut all).await, event(&mut all).await, event(&mut all).await]
            .iter()
            .map(|(seq, _)| *seq)
            .collect();
    assert_eq!(replayed, vec![seen, fills[0], fills[1], live]);
    assert_eq!(next(&mut all).await, Reply::ResumeDone { last_seq: live });

    // The history is memory: after a restart, anything older is "too old".
    assert!(server.stop().success());
    let server = Server::start(&data, &[]);
    let mut late = Client::connect(server.binary, Encoding::Binary).await.unwrap();
    late.login(resume(seen)).await.unwrap();
    let Reply::ResumeTooOld { oldest } = next(&mut late).await else { panic!("expected too old") };
    assert!(oldest >= live, "{oldest}");
    let mut current = Client::connect(server.binary, Encoding::Binary).await.unwrap();
    current.login(resume(oldest)).await.unwrap();
    assert!(matches!(next(&mut current).await, Reply::ResumeDone { .. }));
    server.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_and_the_connection_limit() {
    let dir = scratch("heartbeats");
    let server = Server::start(&dir.join("data"), &["--max-connections", "2"]);
    // A binary client that says nothing after its login hears the server's
    // heartbeats (the client skips them), then is dropped after 5 s.
    let (_quiet_sender, mut silent) = connect(server.binary, Encoding::Binary, 1, "").await.split();
    let started = Instant::now();
    let goodbye = match tokio::time::timeout(Duration::from_secs(20), silent.next()).await {
        Ok(Ok(Some(Reply::Goodbye { reason }))) => reason,
        other => panic!("expected a goodbye: {other:?}"),
    };
    assert!(goodbye.contains("nothing heard"), "{goodbye}");
    assert!(started.elapsed() >= Duration::from_secs(4), "dropped after {:?}", started.elapsed());
    // One that sends heartbeats stays (Client::next sends one a second while it waits).
    let mut alive = connect(server.binary, Encoding::Binary, 2, "").await;
    assert!(alive.next_within(Duration::from_secs(7)).await.unwrap().is_none(), "still there, nothing to say");
    // Two connections at most: a third is closed at once.
    let _second = connect(server.json, Encoding::Json, 3, "").await;
    let mut third = Client::connect(server.json, Encoding::Json).await.unwrap();
    let refused = third.login(login(4, "")).await;
    assert!(refused.is_err() || matches!(refused, Ok(Reply::LoginRejected { .. })), "{refused:?}");
    alive.send(&Request::Ping).await.unwrap();
    assert_eq!(next(&mut alive).await, Reply::Pong);
    assert!(server.stop().success());
}
