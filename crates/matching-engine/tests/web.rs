//! The web page in a real browser (Debian's headless Chromium, driven over
//! WebDriver by `common::browser`) against a real `serve`:
//!
//! - under `load` traffic it keeps drawing, and once the flow stops its
//!   ladder equals the book from `GET /api/book`, its symbol list and tape
//!   equal `/api/symbols` and `/api/trades`, and no checksum ever failed;
//! - a trader logs in (a wrong key is refused), places orders from the
//!   ticket (limit, market, post-only, STP), sees them in the ladder and in
//!   their open orders, gets filled by a second user, modifies and cancels
//!   from the page, and sees rejections with their reason;
//! - a server that goes away shows as disconnected, and the page recovers
//!   (market data and the login) when it is back.
//!
//! No console errors while the server is up. Screenshots of each view go to
//! `target/tmp/web/`; `docs/images/web.png` in the README is one of them.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::browser::Browser;
use common::lines::Lines;
use common::server::{Server, add_user, free_addr, scratch};
use matching_client::admin::Admin;
use serde_json::{Value, json};

/// One browser at a time: the machine may have two cores.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

const WAIT: Duration = Duration::from_secs(15);

fn screenshot(browser: &Browser, name: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web");
    let path = dir.join(format!("{name}.png"));
    browser.screenshot(&path);
    println!("screenshot: {}", path.display());
}

/// The ladder as the page shows it: `(side, price, qty)`, top to bottom.
fn ladder(browser: &Browser) -> Vec<(String, u64, u64)> {
    let rows = browser.execute(
        "return [...document.querySelectorAll('#ladder tr.level')].map(r => [r.dataset.side, r.dataset.price, r.dataset.qty]);",
        vec![],
    );
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                r[1].as_str().unwrap().parse().unwrap(),
                r[2].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// The same, from a REST book answer (asks above bids, best in the middle).
fn ladder_of(book: &Value, depth: usize) -> Vec<(String, u64, u64)> {
    let side = |name: &str| -> Vec<(String, u64, u64)> {
        let levels = book[if name == "buy" { "bids" } else { "asks" }].as_array().unwrap();
        levels
            .iter()
            .take(depth)
            .map(|l| {
                (
                    name.to_string(),
                    l[0].as_u64().unwrap(),
                    l[1].as_str().map_or_else(|| l[1].as_u64().unwrap(), |s| s.parse().unwrap()),
                )
            })
            .collect()
    };
    let mut rows: Vec<_> = side("sell").into_iter().rev().collect();
    rows.extend(side("buy"));
    rows
}

fn page_stats(browser: &Browser) -> Value {
    browser.execute("return window.__page ? Object.assign({}, window.__page) : null;", vec![])
}

fn state(browser: &Browser, css: &str) -> String {
    browser
        .execute("const e = document.querySelector(arguments[0]); return e ? e.dataset.state : null;", vec![json!(css)])
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn wait_state(browser: &Browser, css: &str, want: &str) {
    browser.wait_until(&format!("{css} to be {want}"), WAIT, |b| (state(b, css) == want).then_some(()));
}

/// `data-*` of the rows matching `css`.
fn rows(browser: &Browser, css: &str) -> Vec<Value> {
    let script = "return [...document.querySelectorAll(arguments[0])].map(r => Object.assign({}, r.dataset));";
    browser.execute(script, vec![json!(css)]).as_array().cloned().unwrap_or_default()
}

fn no_console_errors(browser: &Browser, when: &str) {
    let errors = browser.console_errors();
    assert!(errors.is_empty(), "console errors {when}: {errors:#?}");
}

#[test]
fn the_page_follows_the_market_under_load() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let data = scratch("web-load");
    let server = Server::start(&data.join("d"), &["--no-fix"]);
    let http = Admin::new(server.http);
    let browser = Browser::start();
    browser.goto(&format!("http://{}/", server.http));
    wait_state(&browser, "#status", "live");

    // From another process, open loop at a fixed rate, so the flow lasts
    // (about 8 s after its warm-up) whatever the machine's speed; full
    // speed is the benchmark's (`page_under_full_load`).
    let mut load = Command::new(env!("CARGO_BIN_EXE_matching-engine"))
        .args(["load", "--wire", "json", "--addr", &server.json.to_string()])
        .args(["--connections", "2", "--symbols", "5", "--commands", "120000", "--rate", "15000", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The symbols appear; the busiest is chosen by a click on its row.
    let busiest = browser.wait_until("five symbols listed", WAIT, |b| {
        let listed = rows(b, "#symbols tr[data-symbol]");
        (listed.len() == 5).then_some(listed)
    });
    assert!(busiest.iter().all(|r| r["symbol"].as_str().unwrap().starts_with("SYM")), "{busiest:?}");
    let symbol = "SYM001";
    browser.click_css(&format!("#symbols tr[data-symbol='{symbol}']"));
    browser.wait_until("the symbol selected", WAIT, |b| {
        (b.text(&b.get("#symbol-title")) == symbol && page_stats(b)["symbol"] == symbol).then_some(())
    });

    // While the flow runs the page keeps drawing and taking market data.
    let before = page_stats(&browser);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    let after = page_stats(&browser);
    let seconds = started.elapsed().as_secs_f64();
    let frames = after["frames"].as_f64().unwrap() - before["frames"].as_f64().unwrap();
    let messages = after["mdMessages"].as_f64().unwrap() - before["mdMessages"].as_f64().unwrap();
    println!("under load: {:.1} frames/s, {:.0} market-data messages/s, {after}", frames / seconds, messages / seconds);
    assert!(frames > 0.0 && messages > 0.0, "the page stood still under load: {before} -> {after}");
    assert!(load.try_wait().unwrap().is_none(), "the flow ended before the page was sampled");
    screenshot(&browser, "web-load");

    let output = load.wait_with_output().unwrap();
    assert!(output.status.success(), "load failed: {}", String::from_utf8_lossy(&output.stderr));

    // A quiet moment: the page agrees with REST.
    let book = http.get(&format!("/api/book?symbol={symbol}&depth=20")).unwrap().body;
    let want = ladder_of(&book, 20);
    assert!(!want.is_empty(), "the load left {symbol} empty: {book}");
    browser.wait_until("the ladder to equal the REST book", WAIT, |b| (ladder(b) == want).then_some(()));
    let symbols = http.get("/api/symbols").unwrap().body;
    for s in symbols["symbols"].as_array().unwrap() {
        let name = s["symbol"].as_str().unwrap();
        let css = format!("#symbols tr[data-symbol='{name}']");
        browser.wait_until(&format!("{name}'s row to show {s}"), WAIT, |b| {
            let row = b.get(&css);
            let cell = |c: &str| b.text(&b.find_in(&row, c).unwrap()).replace([',', ' '], "");
            let last = s["last"].as_u64().map(|l| l.to_string()).unwrap_or_default();
            let trades = s["trades"].to_string();
            (cell("td.trades") == trades && (last.is_empty() || cell("td.last") == last)).then_some(())
        });
    }
    let trades = http.get(&format!("/api/trades?symbol={symbol}&limit=1")).unwrap().body;
    let newest = trades["trades"][0]["trade_id"].to_string();
    browser.wait_until("the tape to show the newest trade", WAIT, |b| {
        rows(b, "#tape tr[data-trade-id]").first().is_some_and(|r| r["tradeId"] == newest.as_str()).then_some(())
    });
    let stats = page_stats(&browser);
    assert_eq!(stats["checksumErrors"], 0, "{stats}");
    println!("after the load: {stats}");
    // Another symbol, chosen by typing it.
    browser.fill("#symbol-input", "SYM002");
    browser.click_css("#symbol-go");
    let book = http.get("/api/book?symbol=SYM002&depth=20").unwrap().body;
    let want = ladder_of(&book, 20);
    browser.wait_until("SYM002's ladder", WAIT, |b| (ladder(b) == want).then_some(()));
    screenshot(&browser, "web-market");
    no_console_errors(&browser, "while the server was up");
    server.stop();
}

/// What the ticket is filled in with.
#[derive(Clone, Copy)]
struct Ticket<'a> {
    side: &'a str,
    kind: &'a str,
    price: Option<u64>,
    qty: u64,
    tif: &'a str,
    post_only: bool,
    stp: &'a str,
}

impl Default for Ticket<'_> {
    fn default() -> Self {
        Ticket { side: "buy", kind: "limit", price: None, qty: 1, tif: "gtc", post_only: false, stp: "none" }
    }
}

/// Fills in the ticket, then submits it.
fn submit(browser: &Browser, t: Ticket) {
    browser.select("#t-side", t.side);
    browser.select("#t-type", t.kind);
    if let Some(price) = t.price {
        browser.fill("#t-price", &price.to_string());
    }
    browser.fill("#t-qty", &t.qty.to_string());
    browser.select("#t-tif", t.tif);
    let checked = browser.execute("return document.querySelector('#t-post-only').checked;", vec![]) == json!(true);
    if checked != t.post_only {
        browser.click_css("#t-post-only");
    }
    browser.select("#t-stp", t.stp);
    browser.click_css("#t-submit");
}

fn own_orders(browser: &Browser) -> Vec<(String, u64, u64)> {
    rows(browser, "#orders tr[data-order-id]")
        .iter()
        .map(|r| {
            let n = |k: &str| r[k].as_str().unwrap().parse::<u64>().unwrap();
            (r["side"].as_str().unwrap().to_string(), n("price"), n("qty"))
        })
        .collect()
}

fn own_mark(browser: &Browser, side: &str, price: u64) -> Option<String> {
    let css = format!("#ladder tr.level[data-side='{side}'][data-price='{price}']");
    rows(browser, &css).first().and_then(|r| r["own"].as_str().map(str::to_string))
}

#[test]
fn a_trader_places_fills_modifies_and_cancels_from_the_page() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let data = scratch("web-trade");
    let users = data.join("users.txt");
    let key = add_user(&users, 7, "trader");
    let other_key = add_user(&users, 8, "trader");
    let server = Server::start(&data.join("d"), &["--no-fix", "--users", users.to_str().unwrap()]);
    let browser = Browser::start();
    browser.goto(&format!("http://{}/?symbol=BTC-USD", server.http));
    wait_state(&browser, "#status", "live");
    wait_state(&browser, "#account", "logged_out");

    // A wrong key is refused.
    browser.fill("#login-user", "7");
    browser.fill("#login-key", "not-the-key");
    browser.click_css("#login");
    wait_state(&browser, "#account", "refused");
    browser.fill("#login-key", &key);
    browser.click_css("#login");
    wait_state(&browser, "#account", "logged_in");
    assert_eq!(browser.attribute(&browser.get("#account"), "data-user").as_deref(), Some("7"));

    // A limit order from the ticket rests: in the open orders and marked in the ladder.
    submit(&browser, Ticket { price: Some(100), qty: 5, ..Ticket::default() });
    browser.wait_until("the order in the open orders", WAIT, |b| {
        (own_orders(b) == [("buy".into(), 100, 5)]).then_some(())
    });
    browser.wait_until("the order marked in the ladder", WAIT, |b| {
        (own_mark(b, "buy", 100).as_deref() == Some("5")).then_some(())
    });
    assert_eq!(ladder(&browser), vec![("buy".to_string(), 100, 5)]);

    // A second user sells into it: a fill, and what is left.
    let mut other = Lines::login(server.json, 8, &other_key);
    let sold = other.call(&json!({ "op": "new", "symbol": "BTC-USD", "side": "sell", "price": 100, "qty": 2 }));
    assert_eq!(sold["ev"], "accepted");
    browser.wait_until("the fill", WAIT, |b| {
        let fills = rows(b, "#fills tr[data-trade-id]");
        let fill = fills.first()?;
        (fill["price"] == "100" && fill["qty"] == "2" && fill["side"] == "buy" && fill["liquidity"] == "maker")
            .then_some(())
    });
    browser.wait_until("3 left", WAIT, |b| (own_orders(b) == [("buy".into(), 100, 3)]).then_some(()));
    browser.wait_until("the ladder at 3", WAIT, |b| (ladder(b) == [("buy".into(), 100, 3)]).then_some(()));
    screenshot(&browser, "web-trading");

    // Modify from the open orders: a new price.
    let row = browser.get("#orders tr[data-order-id]");
    let price_input = browser.find_in(&row, "input.m-price").unwrap();
    browser.clear(&price_input);
    browser.send_keys(&price_input, "101");
    browser.click(&browser.find_in(&row, "button.modify").unwrap());
    browser.wait_until("the order at 101", WAIT, |b| (own_orders(b) == [("buy".into(), 101, 3)]).then_some(()));
    browser.wait_until("the ladder at 101", WAIT, |b| (own_mark(b, "buy", 101).as_deref() == Some("3")).then_some(()));

    // An ask from the other user; a click on its ladder row prices the ticket.
    assert_eq!(
        other.call(&json!({ "op": "new", "symbol": "BTC-USD", "side": "sell", "price": 110, "qty": 4 }))["ev"],
        "accepted"
    );
    browser.wait_until("the ask in the ladder", WAIT, |b| ladder(b).contains(&("sell".into(), 110, 4)).then_some(()));
    browser.click_css("#ladder tr.level[data-side='sell'][data-price='110']");
    let price = browser.property(&browser.get("#t-price"), "value");
    assert_eq!(price.as_deref(), Some("110"));

    // Post-only at 110 would take: rejected, with its reason on the page.
    submit(&browser, Ticket { price: Some(110), post_only: true, ..Ticket::default() });
    browser.wait_until("the would_take rejection", WAIT, |b| b.find("#messages li.rejected[data-reason='would_take']"));
    // A market order takes 1 at 110: a taker fill.
    submit(&browser, Ticket { kind: "market", tif: "ioc", ..Ticket::default() });
    browser.wait_until("the taker fill", WAIT, |b| {
        let fills = rows(b, "#fills tr[data-trade-id]");
        (fills.first()?["liquidity"] == "taker" && fills[0]["price"] == "110").then_some(())
    });
    // FOK for more than there is: nothing trades, nothing rests.
    submit(&browser, Ticket { price: Some(110), qty: 50, tif: "fok", ..Ticket::default() });
    // STP: a sell into one's own bid with cancel_taker is cancelled, the bid stays.
    submit(&browser, Ticket { side: "sell", price: Some(101), stp: "cancel_taker", ..Ticket::default() });
    let pong = other.call(&json!({ "op": "ping" }));
    assert_eq!(pong["ev"], "pong");
    std::thread::sleep(Duration::from_millis(500));
    browser.wait_until("only the bid and the ask left", WAIT, |b| {
        (own_orders(b) == [("buy".into(), 101, 3)] && ladder(b) == [("sell".into(), 110, 3), ("buy".into(), 101, 3)])
            .then_some(())
    });
    let fills = rows(&browser, "#fills tr[data-trade-id]");
    assert_eq!(fills.len(), 2, "{fills:?}");

    // Cancel from the page.
    let row = browser.get("#orders tr[data-order-id]");
    browser.click(&browser.find_in(&row, "button.cancel").unwrap());
    browser.wait_until("no open orders", WAIT, |b| own_orders(b).is_empty().then_some(()));
    browser
        .wait_until("the bid gone from the ladder", WAIT, |b| (ladder(b) == [("sell".into(), 110, 3)]).then_some(()));
    // The server agrees.
    let orders = Admin::new(server.http).with_credentials(7, &key).get("/api/orders").unwrap().body;
    assert_eq!(orders["orders"], json!([]));
    no_console_errors(&browser, "while trading");

    browser.click_css("#logout");
    wait_state(&browser, "#account", "logged_out");
    server.stop();
}

#[test]
fn the_page_shows_a_lost_server_and_recovers_when_it_is_back() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let data = scratch("web-disconnect");
    let http_addr = free_addr().to_string();
    let dir = data.join("d");
    let server = Server::start(&dir, &["--no-fix", "--http-addr", &http_addr]);
    let browser = Browser::start();
    browser.goto(&format!("http://{http_addr}/?symbol=BTC-USD"));
    wait_state(&browser, "#status", "live");
    browser.fill("#login-user", "7");
    browser.fill("#login-key", "any");
    browser.click_css("#login");
    wait_state(&browser, "#account", "logged_in");
    submit(&browser, Ticket { side: "sell", price: Some(120), qty: 2, ..Ticket::default() });
    browser.wait_until("the order", WAIT, |b| (own_orders(b) == [("sell".into(), 120, 2)]).then_some(()));
    no_console_errors(&browser, "before the server went");

    assert!(server.stop().success());
    wait_state(&browser, "#status", "disconnected");
    screenshot(&browser, "web-disconnected");

    // Back on the same address, from its data directory: the page
    // reconnects, subscribes again and logs in again.
    let server = Server::start(&dir, &["--no-fix", "--http-addr", &http_addr]);
    wait_state(&browser, "#status", "live");
    wait_state(&browser, "#account", "logged_in");
    browser.wait_until("the order again", WAIT, |b| (own_orders(b) == [("sell".into(), 120, 2)]).then_some(()));
    browser.wait_until("the ladder again", WAIT, |b| (ladder(b) == [("sell".into(), 120, 2)]).then_some(()));
    // The outage logged the refused connections; from now on nothing.
    let _ = browser.console_errors();
    let mut other = Lines::login(server.json, 8, "");
    assert_eq!(
        other.call(&json!({ "op": "new", "symbol": "BTC-USD", "side": "buy", "price": 120, "qty": 1 }))["ev"],
        "accepted"
    );
    browser.wait_until("the fill after the restart", WAIT, |b| {
        (rows(b, "#fills tr[data-trade-id]").first()?["qty"] == "1").then_some(())
    });
    browser.wait_until("1 left", WAIT, |b| (own_orders(b) == [("sell".into(), 120, 1)]).then_some(()));
    no_console_errors(&browser, "after the server came back");
    server.stop();
}

/// What watches the market while `page_under_full_load` runs.
#[derive(Clone, Copy, Debug)]
enum Watcher {
    Nobody,
    /// The page in headless Chromium (on the same two cores as the server).
    Page,
    /// A plain WebSocket client subscribed to the same `book` channel as
    /// the page (depth 50): what one such subscriber costs the server.
    Subscriber,
}

/// A `book` subscriber that counts what it gets, until `stop`.
fn subscriber(
    http: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws")).await.unwrap();
            let subscribe = json!({ "op": "subscribe", "channel": "book", "symbol": "SYM001", "depth": 50 });
            ws.send(Message::Text(subscribe.to_string().into())).await.unwrap();
            let mut count = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(100), ws.next()).await {
                    Ok(Some(Ok(_))) => count += 1,
                    Ok(_) => break,
                    Err(_) => {}
                }
            }
            count
        })
    })
}

/// Not a check: a measurement for docs/BENCHMARKS.md ("The web page"). Runs
/// `load` at full speed against a fresh server, in turn with nobody
/// watching, with the page open on the busiest symbol, and with a plain
/// WebSocket subscriber of the same channel; prints the page's frames a
/// second and the market-data messages it took, and the load's summary.
///
/// `cargo test --release -p matching-engine --test web -- --ignored --nocapture page_under_full_load`
/// (`ROUNDS`, `COMMANDS` to change the defaults 3 and 1,000,000).
#[test]
#[ignore]
fn page_under_full_load() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let commands = std::env::var("COMMANDS").unwrap_or_else(|_| "1000000".to_string());
    let watchers = [Watcher::Nobody, Watcher::Page, Watcher::Subscriber];
    for round in 0..rounds {
        for k in 0..watchers.len() {
            let watcher = watchers[(round + k) % watchers.len()];
            let data = scratch(&format!("web-bench-{round}-{k}"));
            let server = Server::start(&data.join("d"), &["--no-fix"]);
            let browser = matches!(watcher, Watcher::Page).then(|| {
                let browser = Browser::start();
                browser.goto(&format!("http://{}/?symbol=SYM001", server.http));
                wait_state(&browser, "#status", "live");
                browser
            });
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let counter = matches!(watcher, Watcher::Subscriber).then(|| subscriber(server.http, stop.clone()));
            let started = Instant::now();
            let load = Command::new(env!("CARGO_BIN_EXE_matching-engine"))
                .args(["load", "--wire", "binary", "--addr", &server.binary.to_string(), "--json", "--quiet"])
                .args(["--connections", "4", "--window", "1000", "--commands", &commands])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // The page, sampled over two seconds in the middle of the run.
            std::thread::sleep(Duration::from_secs(1));
            let sample = browser.as_ref().map(|b| {
                let before = page_stats(b);
                let at = Instant::now();
                std::thread::sleep(Duration::from_secs(2));
                let after = page_stats(b);
                let seconds = at.elapsed().as_secs_f64();
                let delta = |k: &str| (after[k].as_f64().unwrap_or(0.0) - before[k].as_f64().unwrap_or(0.0)) / seconds;
                let heap = b.execute("return performance.memory ? performance.memory.usedJSHeapSize : null;", vec![]);
                format!(
                    "{:.1} frames/s, {:.1} renders/s, {:.0} md messages/s, resyncs {}, checksum errors {}, conflated {}, JS heap {heap} B",
                    delta("frames"),
                    delta("renders"),
                    delta("mdMessages"),
                    after["resyncs"],
                    after["checksumErrors"],
                    after["conflations"]
                )
            });
            let output = load.wait_with_output().unwrap();
            let seconds = started.elapsed().as_secs_f64();
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let received = counter.map(|c| format!("{:.0} md messages/s", c.join().unwrap() as f64 / seconds));
            let summary: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
            println!(
                "round {round} {watcher:?}: load {} commands/s, p50 {} us, p99 {} us; {}",
                summary["answered_per_s"],
                summary["latency_us"]["p50"],
                summary["latency_us"]["p99"],
                sample.or(received).unwrap_or_default()
            );
            drop(browser);
            server.stop();
        }
    }
}

/// Not a check: a measurement for docs/BENCHMARKS.md ("The web page"). On a
/// quiet server, a second user's order rests at a new best bid; the time
/// from its `accepted` (durable) reaching that user to the page's ladder
/// showing the level, polled over WebDriver every few milliseconds.
///
/// `GAP_MS=150 cargo test --release -p matching-engine --test web -- --ignored --nocapture page_latency`
#[test]
#[ignore]
fn page_latency() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let data = scratch("web-latency");
    let server = Server::start(&data.join("d"), &["--no-fix"]);
    let browser = Browser::start();
    browser.goto(&format!("http://{}/?symbol=BTC-USD", server.http));
    wait_state(&browser, "#status", "live");
    let mut trader = Lines::login(server.json, 8, "");
    let shows =
        "return document.querySelector(`#ladder tr.level[data-side='buy'][data-price='${arguments[0]}']`) !== null;";
    // The pause between orders (`GAP_MS`, default 150: each its own redraw).
    let gap = Duration::from_millis(std::env::var("GAP_MS").ok().and_then(|g| g.parse().ok()).unwrap_or(150));
    let mut samples = Vec::new();
    for i in 0..40u64 {
        let price = 1000 + i;
        let answer = trader.call(&json!({ "op": "new", "symbol": "BTC-USD", "side": "buy", "price": price, "qty": 1 }));
        assert_eq!(answer["ev"], "accepted");
        let accepted = Instant::now();
        while browser.execute(shows, vec![json!(price)]) != json!(true) {
            assert!(accepted.elapsed() < WAIT, "the ladder never showed {price}");
        }
        samples.push(accepted.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(gap);
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "accepted -> ladder over {} orders {gap:?} apart: min {:.1} ms, p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        samples.len(),
        at(0.0),
        at(0.5),
        at(0.9),
        at(1.0)
    );
    server.stop();
}
