//! The REST endpoints under `/api/` on a real `serve`, over real sockets:
//! known trades in, the symbol list, book, trades, candles and a user's
//! orders out; the book as the WebSocket `book` channel gives it; bad
//! requests and credentials refused.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::lines::Lines;
use common::server::{Server, add_user, scratch};
use futures_util::{SinkExt, StreamExt};
use matching_client::admin::Admin;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn order(symbol: &str, side: &str, price: u64, qty: u64) -> Value {
    json!({ "op": "new", "symbol": symbol, "side": side, "price": price, "qty": qty })
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

#[test]
fn the_api_answers_from_what_was_traded() {
    let data = scratch("rest-api");
    let server = Server::start(&data.join("d"), &[]);
    let http = Admin::new(server.http);

    // Before anything: no symbols, an empty book with md_seq 0.
    assert_eq!(http.get("/api/symbols").unwrap().body, json!({ "symbols": [] }));
    let empty = http.get("/api/book?symbol=BTC-USD").unwrap();
    assert_eq!(empty.status, 200);
    assert_eq!(empty.body["md_seq"], 0);
    assert_eq!(empty.body["bids"], json!([]));

    let mut a = Lines::login(server.json, 7, "");
    let mut b = Lines::login(server.json, 8, "");
    let started = now_ms();
    // A book of BTC-USD: bids 100x5 (7), 99x4 (7); asks 103x2 (8), 104x6 (8).
    for (who, side, price, qty) in [(7, "buy", 100, 5), (7, "buy", 99, 4), (8, "sell", 103, 2), (8, "sell", 104, 6)] {
        let session = if who == 7 { &mut a } else { &mut b };
        assert_eq!(session.call(&order("BTC-USD", side, price, qty))["ev"], "accepted");
    }
    // Two trades: 8 sells 3 at 100 (hits 7's bid), 7 buys 1 at 103.
    assert_eq!(b.call(&order("BTC-USD", "sell", 100, 3))["ev"], "accepted");
    assert_eq!(a.call(&order("BTC-USD", "buy", 103, 1))["ev"], "accepted");
    // Another symbol, no trades.
    assert_eq!(b.call(&order("ETH-USD", "sell", 50, 1))["ev"], "accepted");
    assert_eq!(a.call(&json!({ "op": "ping" }))["ev"], "pong");
    let ended = now_ms();

    let symbols = http.get("/api/symbols").unwrap();
    assert_eq!(symbols.status, 200, "{:?}", symbols.body);
    let list = symbols.body["symbols"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let btc = &list[0];
    assert_eq!(btc["symbol"], "BTC-USD");
    assert_eq!(btc["status"], "open");
    assert_eq!(btc["last"], 103);
    assert_eq!(btc["bid"], json!([100, 2]));
    assert_eq!(btc["ask"], json!([103, 1]));
    assert_eq!((btc["volume"].as_u64(), btc["trades"].as_u64()), (Some(4), Some(2)));
    let eth = &list[1];
    assert_eq!(
        (eth["symbol"].as_str(), eth["last"].is_null(), eth["trades"].as_u64()),
        (Some("ETH-USD"), true, Some(0))
    );
    assert_eq!(eth["ask"], json!([50, 1]));

    let book = http.get("/api/book?symbol=BTC-USD&depth=1").unwrap().body;
    assert_eq!((book["bids"].clone(), book["asks"].clone()), (json!([[100, 2]]), json!([[103, 1]])));
    let book = http.get("/api/book?symbol=BTC-USD").unwrap().body;
    assert_eq!(book["bids"], json!([[100, 2], [99, 4]]));
    assert_eq!(book["asks"], json!([[103, 1], [104, 6]]));
    assert_eq!(book["md_seq"], btc["md_seq"]);

    // The book channel on the WebSocket starts from the same message.
    let ws_book = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.http)).await.unwrap();
        let subscribe = json!({ "op": "subscribe", "channel": "book", "symbol": "BTC-USD" }).to_string();
        ws.send(Message::Text(subscribe.into())).await.unwrap();
        loop {
            let Some(Ok(Message::Text(text))) = ws.next().await else { panic!("the WebSocket closed") };
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["ev"] == "book" {
                return message;
            }
        }
    });
    assert_eq!(ws_book, book);

    let trades = http.get("/api/trades?symbol=BTC-USD").unwrap().body;
    let trades = trades["trades"].as_array().unwrap();
    let fields = |t: &Value| (t["trade_id"].as_u64(), t["price"].as_u64(), t["qty"].as_u64(), t["taker_side"].clone());
    assert_eq!(fields(&trades[0]), (Some(1), Some(100), Some(3), json!("sell")));
    assert_eq!(fields(&trades[1]), (Some(2), Some(103), Some(1), json!("buy")));
    for t in trades {
        let time = t["time_ms"].as_u64().unwrap();
        assert!((started..=ended + 1000).contains(&time), "{time} not in {started}..={ended}");
    }
    let after = http.get("/api/trades?symbol=BTC-USD&after=1").unwrap().body;
    assert_eq!(after["trades"].as_array().unwrap().len(), 1);
    assert_eq!(after["trades"][0]["trade_id"], 2);
    let newest = http.get("/api/trades?symbol=BTC-USD&limit=1").unwrap().body;
    assert_eq!(newest["trades"][0]["trade_id"], 2);

    // Candles: every trade in one (or, across a second boundary, two) 1 s
    // candles, and one 1 min candle (or two across a minute).
    for (interval, width) in [("1s", 1000), ("1m", 60_000)] {
        let body = http.get(&format!("/api/candles?symbol=BTC-USD&interval={interval}")).unwrap().body;
        assert_eq!(body["interval"], interval);
        let candles = body["candles"].as_array().unwrap();
        assert!(!candles.is_empty() && candles.len() <= 2, "{candles:?}");
        let sum = |k: &str| candles.iter().map(|c| c[k].as_u64().unwrap()).sum::<u64>();
        assert_eq!((sum("v"), sum("n")), (4, 2));
        assert_eq!(candles[0]["o"], 100);
        assert_eq!(candles.last().unwrap()["c"], 103);
        let high = candles.iter().map(|c| c["h"].as_u64().unwrap()).max();
        let low = candles.iter().map(|c| c["l"].as_u64().unwrap()).min();
        assert_eq!((low, high), (Some(100), Some(103)));
        for c in candles {
            assert_eq!(c["t"].as_u64().unwrap() % width, 0);
        }
    }

    // A user's orders, with credentials (any key in open development mode).
    let orders = Admin::new(server.http).with_credentials(7, "anything").get("/api/orders").unwrap();
    assert_eq!(orders.status, 200, "{:?}", orders.body);
    assert_eq!(orders.body["user"], 7);
    let prices: Vec<(u64, u64)> = orders.body["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["price"].as_u64().unwrap(), o["qty"].as_u64().unwrap()))
        .collect();
    assert_eq!(prices, vec![(100, 2), (99, 4)]);

    // Bad requests change nothing and say why.
    for path in [
        "/api/book",
        "/api/book?symbol=",
        "/api/book?symbol=BTC-USD&depth=0",
        "/api/book?symbol=BTC-USD&depth=1001",
        "/api/book?symbol=BTC-USD&depth=x",
        "/api/book?symbol=BTC-USD&depth=all",
        "/api/trades?symbol=BTC-USD&after=-1",
        "/api/trades?symbol=BTC-USD&limit=1001",
        "/api/candles?symbol=BTC-USD&interval=5m",
        "/api/candles?symbol=a%20b",
        "/api/trades?symbol=%ZZ",
    ] {
        let answer = http.get(path).unwrap();
        assert_eq!(answer.status, 400, "{path}: {:?}", answer.body);
        assert!(answer.body["error"].as_str().is_some_and(|e| !e.is_empty()), "{path}: {:?}", answer.body);
    }
    assert_eq!(http.get("/api/nothing").unwrap().status, 404);
    assert_eq!(http.get("/api/orders").unwrap().status, 401);
    assert_eq!(http.get("/api/symbols").unwrap().body, symbols.body);

    // The page's files.
    for (path, kind) in [("/", "text/html"), ("/app.js", "text/javascript"), ("/style.css", "text/css")] {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut response = agent.get(&format!("http://{}{path}", server.http)).call().unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let content_type = response.headers().get("content-type").unwrap().to_str().unwrap().to_string();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        assert!(!response.body_mut().read_to_string().unwrap().is_empty(), "{path} is empty");
    }
    server.stop();
}

#[test]
fn orders_need_the_users_key_and_only_an_operator_sees_anothers() {
    let data = scratch("rest-orders");
    let users = data.join("users.txt");
    let trader = add_user(&users, 7, "trader");
    let other = add_user(&users, 8, "trader");
    let operator = add_user(&users, 1, "operator");
    let server = Server::start(&data.join("d"), &["--users", users.to_str().unwrap()]);
    let mut seven = Lines::login(server.json, 7, &trader);
    assert_eq!(seven.call(&order("BTC-USD", "buy", 100, 5))["ev"], "accepted");
    let mut eight = Lines::login(server.json, 8, &other);
    assert_eq!(eight.call(&order("BTC-USD", "sell", 110, 1))["ev"], "accepted");

    let get = |user: u64, key: &str, path: &str| Admin::new(server.http).with_credentials(user, key).get(path).unwrap();
    let own = get(7, &trader, "/api/orders");
    assert_eq!(own.status, 200);
    assert_eq!(own.body["orders"].as_array().unwrap().len(), 1);
    assert_eq!(own.body["orders"][0]["price"], 100);
    assert_eq!(get(7, "wrong", "/api/orders").status, 401);
    assert_eq!(get(9, &trader, "/api/orders").status, 401);
    assert_eq!(Admin::new(server.http).get("/api/orders").unwrap().status, 401);
    assert_eq!(get(7, &trader, "/api/orders?user=8").status, 403);
    assert_eq!(get(7, &trader, "/api/orders?user=7").status, 200);
    let seen = get(1, &operator, "/api/orders?user=8");
    assert_eq!(seen.status, 200);
    assert_eq!((seen.body["user"].as_u64(), seen.body["orders"][0]["price"].as_u64()), (Some(8), Some(110)));
    assert_eq!(get(1, &operator, "/api/orders?user=x").status, 400);
    // Market data is public, as on the WebSocket.
    assert_eq!(Admin::new(server.http).get("/api/symbols").unwrap().status, 200);
    server.stop();
}
