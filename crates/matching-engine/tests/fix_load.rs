//! `matching_client`'s FIX wire (`Encoding::Fix`) against a real `serve`:
//! `load --wire fix` gets an answer to every command, and a `Client` over
//! FIX sees its orders' events as over the binary wire, each with the cid
//! the caller placed the order with.

mod common;

use common::client::{WAIT, connect, event, new, next, sym};
use common::server::{Server, scratch};
use matching_client::Encoding;
use matching_core::{Action, CancelReason, NewOrder, Side};
use matching_proto::session::{Cid, ClientEvent, GatewayReason, Liquidity, Reply, Request};

fn cid(text: &str) -> Option<Cid> {
    Cid::new(text)
}

#[test]
fn load_over_fix_answers_every_command() {
    let dir = scratch("fix-load");
    let server = Server::start(&dir.join("data"), &[]);
    let addr = server.fix.expect("serve runs FIX").to_string();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_matching-engine"))
        .args(["load", "--wire", "fix", "--addr", &addr, "--connections", "2", "--window", "100"])
        .args(["--commands", "2000", "--json", "--quiet"])
        .output()
        .unwrap();
    assert!(output.status.success(), "load failed: {}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["wire"], "fix", "{summary}");
    assert_eq!(summary["sent"], 2000, "{summary}");
    assert_eq!(summary["answered"], summary["sent"], "{summary}");
    assert!(summary["fills"].as_u64().unwrap() > 0, "the flow trades: {summary}");
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fix_client_sees_its_orders_by_their_cids() {
    let dir = scratch("fix-client");
    let server = Server::start(&dir.join("data"), &[]);
    let addr = server.fix.expect("serve runs FIX");
    let mut one = connect(addr, Encoding::Fix, 1, "").await;
    let mut two = connect(addr, Encoding::Fix, 2, "").await;

    one.send(&Request::Ping).await.unwrap();
    assert_eq!(next(&mut one).await, Reply::Pong);

    // A resting buy, then a sell from the other user that crosses it.
    one.send(&new(1, "FX", Side::Buy, 100, 5, Some("b1"))).await.unwrap();
    let (seq, accepted) = event(&mut one).await;
    assert_eq!(seq, 0, "FIX reports carry no engine seq");
    let ClientEvent::Accepted { order_id: buy, user: 1, side: Side::Buy, qty: 5, price: Some(100), cid: c, .. } =
        accepted
    else {
        panic!("{accepted:?}")
    };
    assert_eq!(c, cid("b1"));
    two.send(&new(2, "FX", Side::Sell, 99, 3, Some("s1"))).await.unwrap();
    let (_, accepted) = event(&mut two).await;
    assert!(matches!(accepted, ClientEvent::Accepted { qty: 3, cid: c, .. } if c == cid("s1")), "{accepted:?}");
    let (_, taker) = event(&mut two).await;
    assert!(
        matches!(taker, ClientEvent::Fill { qty: 3, price: 100, remaining: 0, side: Side::Sell,
            liquidity: Liquidity::Taker, cid: c, .. } if c == cid("s1")),
        "{taker:?}"
    );
    let (_, maker) = event(&mut one).await;
    assert!(
        matches!(maker, ClientEvent::Fill { qty: 3, price: 100, remaining: 2, side: Side::Buy,
            liquidity: Liquidity::Maker, order_id, cid: c, .. } if order_id == buy && c == cid("b1")),
        "{maker:?}"
    );

    // A modify of the partly filled order: 4 open (FIX's OrderQty is 7, the 3 filled included).
    let modify = Request::ModifyCid { user: 1, cid: Cid::new("b1").unwrap(), price: Some(101), qty: Some(4) };
    one.send(&modify).await.unwrap();
    assert_eq!(event(&mut one).await.1, ClientEvent::Modified { order_id: buy, price: 101, qty: 4, cid: cid("b1") });
    // A fill after the replace still names the original cid.
    two.send(&new(2, "FX", Side::Sell, 101, 1, Some("s2"))).await.unwrap();
    assert!(matches!(event(&mut two).await.1, ClientEvent::Accepted { .. }));
    assert!(matches!(event(&mut two).await.1, ClientEvent::Fill { remaining: 0, .. }));
    let (_, fill) = event(&mut one).await;
    assert!(
        matches!(fill, ClientEvent::Fill { qty: 1, remaining: 3, order_id, cid: c, .. } if order_id == buy && c == cid("b1")),
        "{fill:?}"
    );
    // A modify without a quantity keeps the open quantity (3).
    let modify = Request::ModifyCid { user: 1, cid: Cid::new("b1").unwrap(), price: Some(98), qty: None };
    one.send(&modify).await.unwrap();
    assert_eq!(event(&mut one).await.1, ClientEvent::Modified { order_id: buy, price: 98, qty: 3, cid: cid("b1") });

    // A cancel of the resting order: by the cid the caller placed it with.
    one.send(&Request::CancelCid { user: 1, cid: Cid::new("b1").unwrap() }).await.unwrap();
    assert_eq!(
        event(&mut one).await.1,
        ClientEvent::Cancelled { order_id: buy, reason: CancelReason::User, remaining: 3, cid: cid("b1") }
    );
    // A cancel of a cid that names no live order.
    one.send(&Request::CancelCid { user: 1, cid: Cid::new("b1").unwrap() }).await.unwrap();
    assert_eq!(
        next(&mut one).await,
        Reply::Rejected { reason: GatewayReason::UnknownCid, order_id: None, cid: cid("b1") }
    );

    // A mass cancel, in one batch with the order it cancels.
    let mass =
        Request::Command { action: Action::MassCancel { user: 1, symbol: Some(sym("FX")), side: None }, cid: None };
    one.send_batch(&[new(1, "FX", Side::Sell, 200, 2, Some("a1")), mass]).await.unwrap();
    let (_, accepted) = event(&mut one).await;
    assert!(matches!(accepted, ClientEvent::Accepted { cid: c, .. } if c == cid("a1")), "{accepted:?}");
    let (_, cancelled) = event(&mut one).await;
    assert!(
        matches!(cancelled, ClientEvent::Cancelled { reason: CancelReason::Mass, remaining: 2, cid: c, .. } if c == cid("a1")),
        "{cancelled:?}"
    );
    assert_eq!(event(&mut one).await.1, ClientEvent::MassCancelled { user: 1, count: 1 });

    // An engine rejection of a new order, and an IOC's remainder.
    let order = NewOrder::limit(0, 1, sym("FX"), Side::Buy, 0, 1);
    one.send(&Request::Command { action: Action::New(order), cid: cid("z1") }).await.unwrap();
    let (_, rejected) = event(&mut one).await;
    assert!(matches!(rejected, ClientEvent::Rejected { order_id: None, cid: c, .. } if c == cid("z1")), "{rejected:?}");
    let order = NewOrder::limit(0, 1, sym("FX"), Side::Buy, 50, 4).with_tif(matching_core::Tif::Ioc);
    one.send(&Request::Command { action: Action::New(order), cid: cid("i1") }).await.unwrap();
    event(&mut one).await;
    assert!(
        matches!(event(&mut one).await.1, ClientEvent::Cancelled { reason: CancelReason::Ioc, remaining: 4, cid: c, .. }
            if c == cid("i1"))
    );

    // What FIX cannot say is refused before anything is written.
    let error = one.send_batch(&[new(1, "FX", Side::Buy, 1, 1, Some("n1")), Request::Orders]).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::Unsupported);
    assert_eq!(one.next_within(std::time::Duration::from_millis(300)).await.unwrap(), None);

    // The split halves work too (the load tool's way), and join again.
    let (mut sender, mut receiver) = two.split();
    sender.send(&Request::Ping).await.unwrap();
    assert_eq!(tokio::time::timeout(WAIT, receiver.next()).await.unwrap().unwrap(), Some(Reply::Pong));
    let mut two = matching_client::Client::join(sender, receiver);

    // Logout: the server's answer is a goodbye, then the end.
    two.send(&Request::Logout).await.unwrap();
    assert!(matches!(next(&mut two).await, Reply::Goodbye { .. }));
    assert_eq!(two.next_within(WAIT).await.unwrap(), None);
    drop(one);
    assert!(server.stop().success());
}
