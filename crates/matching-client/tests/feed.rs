//! The feed client against a fake server on loopback: random order flow
//! through a core `Exchange`, its events through a `Publisher`, the
//! messages as MoldUDP64 packets over UDP, a re-request server answering
//! from a bounded window, and a snapshot service serving the publisher's
//! book. Every test ends with the client's book equal to the publisher's,
//! order by order and by checksum, however it got there: re-requests under
//! loss, a late join, a window miss, a new session, a message that does
//! not apply; packets lost, duplicated, reordered, answers lost.
//!
//! Randomized: each test prints its seed; `FEED_SEED=<seed>` reruns it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use matching_client::feed::{FeedClient, FeedConfig};
use matching_core::{
    Action, Command, Config, Event, Exchange, NewOrder, RestingOrder, Side, Symbol, Tif, TradingStatus,
};
use matching_marketdata::{FeedBook, FeedWindow, LevelChange, Publisher, Sink};
use matching_proto::feed::{
    FeedMessage, MoldWriter, Session, decode_mold_request, decode_snapshot_request, encode_framed, framed_len,
    mold_control,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

const SYMBOLS: [&str; 3] = ["BTC-USD", "ETH-USD", "SOL-USD"];
/// Idle time after which the fake server sends a heartbeat.
const HEARTBEAT: Duration = Duration::from_millis(20);

fn seed() -> u64 {
    let seed = match std::env::var("FEED_SEED") {
        Ok(text) => text.parse().expect("FEED_SEED is a u64"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    };
    eprintln!("seed {seed}");
    seed
}

/// xorshift64*, seeded through SplitMix64 (so that any seed, 0 included, works).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn side(&mut self) -> Side {
        if self.below(2) == 0 { Side::Buy } else { Side::Sell }
    }
}

/// Collects what the publisher writes.
struct Collect(Vec<FeedMessage>);

impl Sink for Collect {
    fn message(&mut self, message: &FeedMessage) {
        self.0.push(*message);
    }

    fn level(&mut self, _book: &FeedBook, _change: &LevelChange) {}
}

/// The fake server's state, shared by the test (which drives the flow)
/// and the tasks answering re-requests, snapshots and heartbeats.
struct Server {
    session: Session,
    sessions: u32,
    exchange: Exchange,
    publisher: Publisher,
    /// The last messages sent, for re-requests.
    window: FeedWindow,
    window_max: usize,
    socket: std::net::UdpSocket,
    feed_addr: SocketAddr,
    /// Nothing reaches the client (a network outage): packets and heartbeats are lost.
    blackout: bool,
    /// A rough network: some packets arrive twice, some after the next one.
    chaos: Option<Rng>,
    /// A packet held back, to be sent after the next one.
    held: Option<Vec<u8>>,
    /// Re-request answers are lost too (one in five): the client must ask again.
    answer_chaos: Option<Rng>,
    last_sent: Instant,
    rng: Rng,
    engine_seq: u64,
    /// Orders that may rest: `(order_id, user)`.
    orders: Vec<(u64, u64)>,
}

impl Server {
    fn next(&self) -> u64 {
        self.window.next()
    }

    fn send(&mut self, bytes: &[u8]) {
        self.last_sent = Instant::now();
        if self.blackout {
            return;
        }
        // Loopback to a port nobody has bound yet (a client not joined):
        // the datagram is lost, as it would be on a network.
        let send = |bytes: &[u8]| {
            let _ = self.socket.send_to(bytes, self.feed_addr);
        };
        match self.chaos.as_mut().map(|rng| rng.below(20)) {
            Some(0) => {
                send(bytes);
                send(bytes);
            }
            Some(1) if self.held.is_none() => self.held = Some(bytes.to_vec()),
            _ => send(bytes),
        }
        if let Some(held) = self.held.take_if(|held| held != bytes) {
            send(&held);
        }
    }

    /// Numbers, keeps and sends `messages` as MoldUDP64 packets.
    fn publish(&mut self, messages: &[FeedMessage]) {
        let mut writer = MoldWriter::new(self.session, self.next());
        for message in messages {
            let mut bytes = Vec::with_capacity(message.len());
            message.encode(&mut bytes);
            if !writer.fits(bytes.len()) {
                let packet = writer.bytes().to_vec();
                self.send(&packet);
                writer = MoldWriter::new(self.session, self.next());
            }
            writer.push(&bytes);
            self.window.push(*message);
        }
        if writer.count() > 0 {
            let packet = writer.bytes().to_vec();
            self.send(&packet);
        }
    }

    /// Runs `commands` random commands and sends their messages.
    fn step(&mut self, commands: usize) {
        let mut out = Collect(Vec::new());
        for _ in 0..commands {
            self.engine_seq += 1;
            let action = self.action();
            let mut events: Vec<Event> = Vec::new();
            self.exchange.process(&Command::new(self.engine_seq, action), &mut events);
            for event in &events {
                self.publisher.on_event(event, &mut out);
            }
            self.publisher.end_command(&mut out);
        }
        self.publish(&out.0);
    }

    fn action(&mut self) -> Action {
        let symbol = Symbol::new(SYMBOLS[self.rng.below(SYMBOLS.len() as u64) as usize]).unwrap();
        let user = 1 + self.rng.below(4);
        let pick = |rng: &mut Rng, orders: &Vec<(u64, u64)>| {
            let recent = orders.len().min(200);
            (recent > 0).then(|| orders[orders.len() - 1 - rng.below(recent as u64) as usize])
        };
        match self.rng.below(100) {
            0..60 => {
                let order_id = self.engine_seq;
                let price = 95 + self.rng.below(11);
                let qty = 1 + self.rng.below(20);
                let side = self.rng.side();
                let order = match self.rng.below(20) {
                    0 => NewOrder::market(order_id, user, symbol, side, qty),
                    1 | 2 => NewOrder::limit(order_id, user, symbol, side, price, qty).with_tif(Tif::Ioc),
                    _ => NewOrder::limit(order_id, user, symbol, side, price, qty),
                };
                self.orders.push((order_id, user));
                Action::New(order)
            }
            60..82 => match pick(&mut self.rng, &self.orders) {
                Some((order_id, user)) => Action::Cancel { user, order_id },
                None => Action::Resume { symbol },
            },
            82..97 => match pick(&mut self.rng, &self.orders) {
                Some((order_id, user)) => {
                    let price = (self.rng.below(2) == 0).then(|| 94 + self.rng.below(13));
                    let qty = (self.rng.below(2) == 0).then(|| 1 + self.rng.below(25));
                    Action::Modify { user, order_id, price, qty }
                }
                None => Action::Resume { symbol },
            },
            97 => Action::MassCancel { user, symbol: Some(symbol), side: None },
            98 => Action::Halt { symbol },
            _ => Action::Resume { symbol },
        }
    }

    /// An unclean restart: a new session, numbered from 1, whose first
    /// messages rebuild the books (the exchange's, as they stand).
    fn restart(&mut self) {
        self.sessions += 1;
        self.session = session_name(self.sessions);
        self.window = FeedWindow::new(self.session, 1, self.window_max);
        self.publisher = Publisher::new();
        let books: Vec<(Symbol, TradingStatus, Vec<RestingOrder>)> = self
            .exchange
            .symbols()
            .into_iter()
            .filter_map(|symbol| {
                let book = self.exchange.book(&symbol)?;
                let orders = book.orders(Side::Buy).chain(book.orders(Side::Sell)).collect();
                Some((symbol, book.status(), orders))
            })
            .collect();
        let mut out = Collect(Vec::new());
        self.publisher.start_session(
            self.engine_seq,
            books.iter().map(|(symbol, status, orders)| (*symbol, *status, &orders[..])),
            &mut out,
        );
        self.publish(&out.0);
    }
}

fn session_name(n: u32) -> Session {
    let mut session = [b' '; 10];
    let name = format!("TEST{n:06}");
    session.copy_from_slice(name.as_bytes());
    session
}

fn lock(server: &Mutex<Server>) -> MutexGuard<'_, Server> {
    server.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fake server and its addresses.
struct Fake {
    server: Arc<Mutex<Server>>,
    config: FeedConfig,
}

/// Starts the fake server: the session begins (`S O`), the re-request,
/// snapshot and heartbeat tasks run. Nothing listens on the feed address
/// until a client joins.
async fn start(seed: u64, window_max: usize) -> Fake {
    // A free port for the feed: the client binds it later.
    let feed_addr = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let rerequest = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let snapshot = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = FeedConfig {
        drop_rate: 0.0,
        seed,
        ..FeedConfig::new(feed_addr, rerequest.local_addr().unwrap(), snapshot.local_addr().unwrap())
    };
    let mut server = Server {
        session: session_name(1),
        sessions: 1,
        exchange: Exchange::new(Config::default()),
        publisher: Publisher::new(),
        window: FeedWindow::new(session_name(1), 1, window_max),
        window_max,
        socket: std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
        feed_addr,
        blackout: false,
        chaos: None,
        held: None,
        answer_chaos: None,
        last_sent: Instant::now(),
        rng: Rng::new(seed),
        engine_seq: 0,
        orders: Vec::new(),
    };
    let mut out = Collect(Vec::new());
    server.publisher.start_session(0, [], &mut out);
    server.publish(&out.0);
    let server = Arc::new(Mutex::new(server));

    let shared = Arc::clone(&server);
    tokio::spawn(async move {
        let mut buf = [0u8; 64];
        loop {
            let Ok((len, from)) = rerequest.recv_from(&mut buf).await else { continue };
            let Ok((session, seq, count)) = decode_mold_request(&buf[..len]) else { continue };
            let answer = {
                let mut server = lock(&shared);
                let lost = server.answer_chaos.as_mut().is_some_and(|rng| rng.below(5) == 0);
                (!lost).then(|| server.window.answer(session, seq, count))
            };
            if let Some(answer) = answer {
                let _ = rerequest.send_to(&answer, from).await;
            }
        }
    });

    let shared = Arc::clone(&server);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = snapshot.accept().await else { continue };
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let mut stream = stream;
                let mut input = Vec::new();
                let mut chunk = [0u8; 256];
                loop {
                    while let Some(len) = framed_len(&input) {
                        let Ok(symbol) = decode_snapshot_request(&input[2..len]) else { return };
                        input.drain(..len);
                        let mut out = Vec::new();
                        {
                            let server = lock(&shared);
                            for message in server.publisher.book().snapshot(symbol.as_ref(), 0, server.next()) {
                                encode_framed(&message, &mut out);
                            }
                        }
                        if stream.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => input.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });

    let shared = Arc::clone(&server);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(HEARTBEAT / 2).await;
            let mut server = lock(&shared);
            if server.last_sent.elapsed() >= HEARTBEAT {
                let heartbeat = mold_control(server.session, server.next(), false);
                server.send(&heartbeat);
            }
        }
    });

    Fake { server, config }
}

impl Fake {
    fn step(&self, commands: usize) {
        lock(&self.server).step(commands);
    }

    /// Runs `commands` commands in small batches while `client` polls in its own task.
    async fn flow(&self, client: FeedClient, commands: usize) -> FeedClient {
        self.flow_in(client, commands, 20).await
    }

    /// Runs `commands` commands, `batch` at a time (a batch's messages go
    /// out back to back), while `client` polls in its own task.
    async fn flow_in(&self, client: FeedClient, commands: usize, batch: usize) -> FeedClient {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut client = client;
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    polled = client.poll() => polled.expect("the feed client polls"),
                }
            }
            client
        });
        for done in (0..commands).step_by(batch) {
            self.step(batch.min(commands - done));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let _ = stop.send(());
        task.await.expect("the client task")
    }

    /// Waits for `client` to catch up, then holds its book against the publisher's.
    async fn check(&self, client: &mut FeedClient) {
        assert!(client.catch_up(Duration::from_secs(30)).await.unwrap(), "caught up: {:?}", client.stats());
        let server = lock(&self.server);
        assert_eq!(client.session(), Some(server.session));
        assert_eq!(client.next_seq(), server.next());
        same_book(client.book(), server.publisher.book());
    }
}

/// Every symbol, locate, status, resting order (in priority order) and checksum.
fn same_book(client: &FeedBook, published: &FeedBook) {
    let symbols: Vec<(u32, Symbol)> = published.symbols().collect();
    assert_eq!(client.symbols().collect::<Vec<_>>(), symbols);
    assert_eq!(client.order_count(), published.order_count());
    for (locate, symbol) in symbols {
        assert_eq!(client.halted(locate), published.halted(locate), "{}", symbol.as_str());
        for side in [Side::Buy, Side::Sell] {
            assert_eq!(client.orders(locate, side), published.orders(locate, side), "{} {side:?}", symbol.as_str());
        }
        assert_eq!(client.checksum(locate), published.checksum(locate), "{}", symbol.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_percent_loss_is_filled_by_rerequests() {
    let seed = seed();
    let fake = start(seed, 1_000_000).await;
    let config = FeedConfig { drop_rate: 0.05, ..fake.config.clone() };
    let client = FeedClient::join(config).await.unwrap();
    let mut client = fake.flow(client, 20_000).await;
    fake.check(&mut client).await;
    let stats = client.stats();
    eprintln!("{stats:?}");
    assert!(stats.dropped > 0 && stats.gaps > 0 && stats.rerequests > 0, "{stats:?}");
    assert!(stats.answers > 0);
    // The window holds everything: no snapshot beyond the one at join.
    assert_eq!(stats.snapshots, 1, "{stats:?}");
    assert_eq!((stats.book_errors, stats.sessions, stats.malformed), (0, 0, 0));
    // Every message applied is reported, in order, and trades among them.
    let applied = client.take_applied();
    assert!(applied.windows(2).all(|w| w[1].0 == w[0].0 + 1));
    assert!(applied.iter().any(|(_, m)| matches!(m, FeedMessage::Trade { .. })));
    assert!(client.take_applied().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_loss_duplicates_and_reordering() {
    let seed = seed();
    let fake = start(seed, 1_000_000).await;
    lock(&fake.server).chaos = Some(Rng::new(seed ^ 0xC4A0));
    lock(&fake.server).answer_chaos = Some(Rng::new(seed ^ 0xA45));
    let config = FeedConfig { drop_rate: 0.3, ..fake.config.clone() };
    let client = FeedClient::join(config).await.unwrap();
    // Large batches: runs of lost packets, gaps that take several answers.
    let mut client = fake.flow_in(client, 20_000, 400).await;
    fake.check(&mut client).await;
    let stats = client.stats();
    eprintln!("{stats:?}");
    assert!(stats.rerequests > stats.gaps, "some gaps took several answers: {stats:?}");
    assert!(stats.rerequests > stats.answers, "lost answers were asked again: {stats:?}");
    assert_eq!((stats.snapshots, stats.book_errors), (1, 0), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_starts_from_a_snapshot() {
    let seed = seed();
    let fake = start(seed, 500).await;
    // Long before the client: far more messages than the window holds.
    fake.step(5_000);
    let history = lock(&fake.server).next();
    assert!(history > 2_000, "{history}");
    let config = FeedConfig { drop_rate: 0.05, ..fake.config.clone() };
    let client = FeedClient::join(config).await.unwrap();
    assert!(client.synced());
    let joined_at = client.next_seq();
    assert!(joined_at >= history, "the snapshot reflects the history: {joined_at} < {history}");
    same_book(client.book(), lock(&fake.server).publisher.book());
    let mut client = fake.flow(client, 5_000).await;
    fake.check(&mut client).await;
    let stats = client.stats();
    eprintln!("{stats:?}");
    assert!(client.take_applied().first().is_some_and(|(n, _)| *n >= joined_at));
    assert_eq!(stats.book_errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_miss_goes_to_the_snapshot_service() {
    let seed = seed();
    let fake = start(seed, 300).await;
    let client = FeedClient::join(fake.config.clone()).await.unwrap();
    let client = fake.flow(client, 1_000).await;
    let snapshots = client.stats().snapshots;
    // An outage longer than the window: the re-request server answers
    // "too old", the client must take a snapshot.
    lock(&fake.server).blackout = true;
    let client = fake.flow(client, 2_000).await;
    lock(&fake.server).blackout = false;
    let mut client = fake.flow(client, 500).await;
    fake.check(&mut client).await;
    let stats = client.stats();
    eprintln!("{stats:?}");
    assert!(stats.snapshots > snapshots, "{stats:?}");
    assert!(stats.gaps > 0 && stats.rerequests > 0, "{stats:?}");
    assert_eq!(stats.book_errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_session_resets_the_book() {
    let seed = seed();
    let fake = start(seed, 1_000_000).await;
    let config = FeedConfig { drop_rate: 0.05, ..fake.config.clone() };
    let client = FeedClient::join(config).await.unwrap();
    let client = fake.flow(client, 2_000).await;
    lock(&fake.server).restart();
    let mut client = fake.flow(client, 2_000).await;
    fake.check(&mut client).await;
    let stats = client.stats();
    eprintln!("{stats:?}");
    assert_eq!(stats.sessions, 1, "{stats:?}");
    assert_eq!(client.session(), Some(session_name(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_does_not_apply_forces_a_snapshot() {
    let seed = seed();
    let fake = start(seed, 1_000_000).await;
    let client = FeedClient::join(fake.config.clone()).await.unwrap();
    let client = fake.flow(client, 1_000).await;
    // A delete of an order that never rested: the client's book cannot
    // take it, so it cannot be trusted any more.
    lock(&fake.server).publish(&[FeedMessage::OrderDelete { locate: 1, seq: 0, order_id: u64::MAX }]);
    let mut client = fake.flow(client, 1_000).await;
    fake.check(&mut client).await;
    let stats = client.stats();
    eprintln!("{stats:?}");
    assert_eq!((stats.book_errors, stats.snapshots), (1, 2), "{stats:?}");
}

#[tokio::test]
async fn join_fails_when_the_snapshot_service_is_down() {
    let feed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    // A port that refuses connections: bound, then closed.
    let snapshot = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = FeedConfig::new(feed, "127.0.0.1:9".parse().unwrap(), snapshot);
    assert!(FeedClient::join(config).await.is_err());
    let bad = FeedConfig { drop_rate: 1.5, ..FeedConfig::new(feed, feed, snapshot) };
    assert_eq!(FeedClient::join(bad).await.err().map(|e| e.kind()), Some(std::io::ErrorKind::InvalidInput));
}
