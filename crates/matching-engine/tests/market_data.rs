//! Market data from a real `serve` process over real loopback sockets:
//! random flow over many symbols and every command kind, then the book
//! rebuilt from the UDP feed (with 5% of its packets dropped and
//! re-requested, and by a client that joins late from a snapshot) and the
//! one kept from the WebSocket's JSON snapshot and updates (every message
//! checked against its checksum) must equal the engine's final book, as
//! `replay` of the journal computes it. Also: a clean restart continues
//! the feed's numbering, an unclean one starts a new session; a WebSocket
//! subscriber that reads nothing is conflated or cut off while trading goes on.

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::server::{Server, scratch};
use matching_client::feed::{FeedClient, FeedConfig};
use matching_client::public::{LevelBook, PublicClient};
use matching_client::{Client, Encoding, login};
use matching_core::{Action, NewOrder, OrderType, Side, Stp, Symbol, Tif};
use matching_proto::json_md::{Channel, MdMessage};
use matching_proto::session::{Cid, Reply, Request};

const BINARY: &str = env!("CARGO_BIN_EXE_matching-engine");
const SYMBOLS: [&str; 6] = ["BTC-USD", "ETH-USD", "SOL-USD", "ADA-USD", "XRP-USD", "DOT-USD"];
const WAIT: Duration = Duration::from_secs(20);

fn sym(name: &str) -> Symbol {
    Symbol::new(name).unwrap()
}

/// A free UDP port on loopback for the feed (the test listens there).
fn feed_addr() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn seed() -> u64 {
    let seed = std::env::var("MD_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("seed {seed} (MD_SEED={seed} repeats it)");
    seed
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One random request of `user` (open mode: every session may halt).
fn random_request(rng: &mut Rng, user: u64, n: u64) -> Request {
    let symbol = sym(SYMBOLS[rng.below(SYMBOLS.len() as u64) as usize]);
    let side = if rng.below(2) == 0 { Side::Buy } else { Side::Sell };
    let cid = |k: u64| Cid::new(&format!("c{k}"));
    match rng.below(100) {
        0..60 => {
            let mut order = NewOrder::limit(0, user, symbol, side, 90 + rng.below(21), 1 + rng.below(20));
            match rng.below(20) {
                0 => {
                    order.order_type = OrderType::Market;
                    order.price = None;
                    order.tif = Tif::Ioc;
                }
                1 => order.tif = Tif::Ioc,
                2 => order.tif = Tif::Fok,
                3 => order.post_only = true,
                _ => {}
            }
            order.stp =
                [Stp::None, Stp::None, Stp::CancelTaker, Stp::CancelMaker, Stp::CancelBoth][rng.below(5) as usize];
            Request::Command { action: Action::New(order), cid: cid(n) }
        }
        60..78 => Request::CancelCid { user, cid: cid(rng.below(n.max(1))).unwrap() },
        78..94 => {
            let price = (rng.below(2) == 0).then(|| 93 + rng.below(15));
            let qty = (rng.below(3) > 0).then(|| 1 + rng.below(25));
            Request::ModifyCid { user, cid: cid(rng.below(n.max(1))).unwrap(), price, qty }
        }
        94..95 => Request::Command {
            action: Action::MassCancel { user, symbol: (rng.below(2) == 0).then_some(symbol), side: None },
            cid: None,
        },
        95..97 => Request::Command { action: Action::Halt { symbol }, cid: None },
        _ => Request::Command { action: Action::Resume { symbol }, cid: None },
    }
}

/// Sends `count` random requests from each of `users` sessions (in
/// batches), and waits until every one is answered.
async fn trade(server: &Server, rng: &mut Rng, users: &[u64], count: u64, first: u64) {
    let mut tasks = Vec::new();
    for &user in users {
        let mut client = Client::connect(server.binary, Encoding::Binary).await.unwrap();
        assert_eq!(client.login(login(user, "")).await.unwrap(), Reply::LoginAccepted { user });
        let requests: Vec<Request> = (first..first + count).map(|n| random_request(rng, user, n)).collect();
        tasks.push(tokio::spawn(async move {
            for chunk in requests.chunks(100) {
                client.send_batch(chunk).await.unwrap();
                client.send(&Request::Ping).await.unwrap();
                // Everything before the ping is answered before its pong.
                loop {
                    match client.next_within(WAIT).await.unwrap() {
                        Some(Reply::Pong) => break,
                        Some(_) => {}
                        None => panic!("no pong"),
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// The engine's final books (`replay --book` of the journal's commands):
/// symbol → (bids, asks) as `(order_id, price, qty)` in priority order.
type Books = BTreeMap<String, [Vec<(u64, u64, u64)>; 2]>;

fn reference_books(data: &std::path::Path) -> Books {
    let inspect = Command::new(BINARY).args(["journal", "inspect", "--data"]).arg(data).output().unwrap();
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stderr));
    let mut commands = String::new();
    for line in String::from_utf8(inspect.stdout).unwrap().lines() {
        if let Some(at) = line.find("\"command\":") {
            commands.push_str(&line[at + 10..line.len() - 1]);
            commands.push('\n');
        }
    }
    let dir = data.with_extension("ref");
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("commands.jsonl");
    let book = dir.join("book.jsonl");
    std::fs::write(&input, commands).unwrap();
    let replay = Command::new(BINARY)
        .arg("replay")
        .arg(&input)
        .args(["--output", "/dev/null", "--book"])
        .arg(&book)
        .output()
        .unwrap();
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    let mut books = Books::new();
    for line in std::fs::read_to_string(&book).unwrap().lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let side = |name: &str| -> Vec<(u64, u64, u64)> {
            value[name]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| (o["order_id"].as_u64().unwrap(), o["price"].as_u64().unwrap(), o["qty"].as_u64().unwrap()))
                .collect()
        };
        books.insert(value["symbol"].as_str().unwrap().to_string(), [side("bids"), side("asks")]);
    }
    books
}

/// What a feed client's book says, in the reference's shape.
fn feed_books(client: &FeedClient) -> Books {
    let book = client.book();
    let mut books = Books::new();
    for (locate, symbol) in book.symbols() {
        let side = |side| book.orders(locate, side).iter().map(|o| (o.order_id, o.price, o.qty)).collect::<Vec<_>>();
        let sides = [side(Side::Buy), side(Side::Sell)];
        if !sides[0].is_empty() || !sides[1].is_empty() {
            books.insert(symbol.as_str().to_string(), sides);
        }
    }
    books
}

/// Aggregated levels of a side of the reference, best first.
fn levels(orders: &[(u64, u64, u64)]) -> Vec<(u64, u128)> {
    let mut out: Vec<(u64, u128)> = Vec::new();
    for &(_, price, qty) in orders {
        match out.last_mut() {
            Some((p, q)) if *p == price => *q += u128::from(qty),
            _ => out.push((price, u128::from(qty))),
        }
    }
    out
}

/// Reads the WebSocket until it is quiet, applying and checking every book message.
async fn drain_public(
    public: &mut PublicClient,
    books: &mut BTreeMap<String, LevelBook>,
    prints: &mut BTreeMap<String, u64>,
) {
    while let Some(message) = public.next_within(Duration::from_millis(500)).await.unwrap() {
        match &message {
            MdMessage::Book { symbol, .. } | MdMessage::Level { symbol, .. } => {
                let book = books.get_mut(symbol.as_str()).expect("a book message of a subscribed symbol");
                book.apply(&message).unwrap_or_else(|e| panic!("{}: {e:?}", symbol.as_str()));
            }
            MdMessage::Print { symbol, trade_id, .. } => {
                let last = prints.entry(symbol.as_str().to_string()).or_insert(0);
                assert_eq!(*trade_id, *last + 1, "prints of {} are numbered without gaps", symbol.as_str());
                *last = *trade_id;
            }
            _ => {}
        }
    }
}

/// A feed client polled by its own task until told to stop.
struct Running {
    stop: std::sync::Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<FeedClient>,
}

fn run_feed(mut client: FeedClient) -> Running {
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let told = std::sync::Arc::clone(&stop);
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                () = told.notified() => return client,
                polled = client.poll() => polled.expect("the feed client failed"),
            }
        }
    });
    Running { stop, task }
}

impl Running {
    /// Stops polling, then polls until caught up with the feed.
    async fn caught_up(self, name: &str) -> FeedClient {
        self.stop.notify_one();
        let mut client = self.task.await.unwrap();
        assert!(client.catch_up(WAIT).await.unwrap(), "{name}: the feed client did not catch up: {:?}", client.stats());
        client
    }
}

fn assert_books(name: &str, got: &Books, want: &Books) {
    for (symbol, sides) in want {
        assert_eq!(got.get(symbol), Some(sides), "{name}: {symbol}");
    }
    assert_eq!(got.len(), want.len(), "{name}: symbols with resting orders");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_and_the_json_channels_rebuild_the_engine_book() {
    let mut rng = Rng(seed());
    let data = scratch("md-consistency");
    let (early, late) = (feed_addr(), feed_addr());
    let server = Server::start(
        &data,
        &["--feed-addr", &early.to_string(), "--feed-addr", &late.to_string(), "--feed-heartbeat-ms", "50"],
    );
    let config = |feed, drop_rate: f64, seed: u64| FeedConfig {
        drop_rate,
        seed,
        ..FeedConfig::new(feed, server.rerequest.unwrap(), server.snapshot.unwrap())
    };
    // A client from the start that drops 5% of the packets it receives.
    let lossy = run_feed(FeedClient::join(config(early, 0.05, rng.next())).await.unwrap());
    // JSON: the whole book and the prints of every symbol, and the best 10 of one.
    let mut public = PublicClient::connect(server.http).await.unwrap();
    let mut public_books = BTreeMap::new();
    for name in SYMBOLS {
        public.subscribe(Channel::Book, sym(name), None).await.unwrap();
        public.subscribe(Channel::Trades, sym(name), None).await.unwrap();
        public_books.insert(name.to_string(), LevelBook::new(None));
    }
    let mut top10 = PublicClient::connect(server.http).await.unwrap();
    top10.subscribe(Channel::Book, sym("BTC-USD"), Some(10)).await.unwrap();
    let mut top10_book = BTreeMap::from([("BTC-USD".to_string(), LevelBook::new(Some(10)))]);
    let mut prints = BTreeMap::new();

    trade(&server, &mut rng, &[1, 2, 3], 700, 0).await;
    drain_public(&mut public, &mut public_books, &mut prints).await;
    // A client that joins now starts from a snapshot, without loss.
    let late = run_feed(FeedClient::join(config(late, 0.0, 0)).await.unwrap());
    trade(&server, &mut rng, &[1, 2, 3, 4], 700, 700).await;
    drain_public(&mut public, &mut public_books, &mut prints).await;
    drain_public(&mut top10, &mut top10_book, &mut BTreeMap::new()).await;
    let lossy = lossy.caught_up("lossy").await;
    let late = late.caught_up("late").await;
    eprintln!("lossy: {:?}\nlate: {:?}", lossy.stats(), late.stats());
    assert!(lossy.stats().dropped > 0 && lossy.stats().rerequests > 0, "the lossy client lost and re-requested");
    assert!(late.stats().snapshots > 0, "the late client started from a snapshot");
    assert!(!prints.is_empty(), "some trades printed");

    assert_eq!(server.stop().code(), Some(0));
    let want = reference_books(&data);
    assert!(want.values().map(|[b, a]| b.len() + a.len()).sum::<usize>() >= 20, "a book worth checking: {want:?}");
    assert_books("lossy feed client", &feed_books(&lossy), &want);
    assert_books("late feed client", &feed_books(&late), &want);
    for name in SYMBOLS {
        let [bids, asks] = want.get(name).cloned().unwrap_or_default();
        let book = &public_books[name];
        assert_eq!(book.side(Side::Buy), levels(&bids), "JSON book of {name}: bids");
        assert_eq!(book.side(Side::Sell), levels(&asks), "JSON book of {name}: asks");
    }
    let [bids, asks] = want.get("BTC-USD").cloned().unwrap_or_default();
    let top = &top10_book["BTC-USD"];
    assert_eq!(top.side(Side::Buy), levels(&bids).into_iter().take(10).collect::<Vec<_>>());
    assert_eq!(top.side(Side::Sell), levels(&asks).into_iter().take(10).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_restart_continues_the_numbering_and_a_kill9_starts_a_new_session() {
    let mut rng = Rng(seed());
    let data = scratch("md-restart");
    let feed = feed_addr();
    let args = ["--feed-addr".to_string(), feed.to_string(), "--feed-heartbeat-ms".into(), "50".into()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let join = |server: &Server| FeedConfig::new(feed, server.rerequest.unwrap(), server.snapshot.unwrap());

    let server = Server::start(&data, &args);
    let running = run_feed(FeedClient::join(join(&server)).await.unwrap());
    trade(&server, &mut rng, &[1, 2], 300, 0).await;
    let first = running.caught_up("first run").await;
    let (session, next) = (first.session().unwrap(), first.next_seq());
    drop(first);
    assert_eq!(server.stop().code(), Some(0));

    // A clean restart: the same session, numbered on from where it stopped.
    let server = Server::start(&data, &args);
    let running = run_feed(FeedClient::join(join(&server)).await.unwrap());
    trade(&server, &mut rng, &[1, 2], 300, 300).await;
    let second = running.caught_up("after a clean restart").await;
    assert_eq!(second.session(), Some(session), "a clean restart keeps the session");
    assert!(second.next_seq() > next, "numbering continues: {} after {next}", second.next_seq());
    drop(second);
    let books = reference_after_kill(server, &data);

    // An unclean stop: a new session, whose first messages rebuild the book.
    let server = Server::start(&data, &args);
    let third = run_feed(FeedClient::join(join(&server)).await.unwrap()).caught_up("after kill -9").await;
    assert_ne!(third.session(), Some(session), "an unclean restart starts a new session");
    assert_books("after kill -9", &feed_books(&third), &books);
    drop(server);
}

/// Kills the server and returns the journal's books.
fn reference_after_kill(server: Server, data: &std::path::Path) -> Books {
    server.kill9();
    reference_books(data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_reads_nothing_never_holds_up_trading() {
    let mut rng = Rng(seed());
    let data = scratch("md-slow");
    let server = Server::start(&data, &["--feed-addr", &feed_addr().to_string(), "--md-queue", "32"]);
    // Two public connections that read nothing: one on the book (it will be
    // conflated), one on the trades (it will be cut off).
    // Small receive buffers, so that what they leave unread backs up soon.
    let mut book_reader = PublicClient::connect_with_buffer(server.http, Some(4096)).await.unwrap();
    let mut trades_reader = PublicClient::connect_with_buffer(server.http, Some(4096)).await.unwrap();
    for name in SYMBOLS {
        book_reader.subscribe(Channel::Book, sym(name), None).await.unwrap();
        trades_reader.subscribe(Channel::Trades, sym(name), None).await.unwrap();
    }
    let started = Instant::now();
    trade(&server, &mut rng, &[1, 2, 3, 4], 4000, 0).await;
    eprintln!("16,000 commands answered in {:?} with two stalled subscribers", started.elapsed());
    // The trades reader was cut off with a reason, the book reader was
    // conflated: reading now, it gets a fresh snapshot and is in sync.
    let mut cut = None;
    loop {
        match trades_reader.next_within(Duration::from_secs(5)).await {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(error) => {
                cut = Some(error.to_string());
                break;
            }
        }
    }
    let cut = cut.expect("the trades reader got a goodbye");
    assert!(cut.contains("slow market-data reader"), "{cut}");
    let mut books: BTreeMap<String, LevelBook> =
        SYMBOLS.iter().map(|s| (s.to_string(), LevelBook::new(None))).collect();
    let mut snapshots = 0;
    while let Some(message) = book_reader.next_within(Duration::from_millis(800)).await.unwrap() {
        if let MdMessage::Book { symbol, .. } | MdMessage::Level { symbol, .. } = &message {
            snapshots += usize::from(matches!(message, MdMessage::Book { .. }));
            books.get_mut(symbol.as_str()).unwrap().apply(&message).unwrap();
        }
    }
    assert!(snapshots > SYMBOLS.len(), "the stalled book reader was sent fresh snapshots ({snapshots})");
    assert_eq!(server.stop().code(), Some(0));
    let want = reference_books(&data);
    for name in SYMBOLS {
        let [bids, asks] = want.get(name).cloned().unwrap_or_default();
        assert_eq!(books[name].side(Side::Buy), levels(&bids), "{name}");
        assert_eq!(books[name].side(Side::Sell), levels(&asks), "{name}");
    }
}
