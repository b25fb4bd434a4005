//! Test support shared by the integration tests of `matching-pipeline`.
//!
//! Each integration test is its own crate and uses only part of this module,
//! so unused items are expected here.
#![allow(dead_code)]

use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use matching_core::{Action, Command, Config, Event, Exchange, NewOrder, Seq, Side, Symbol};
use matching_pipeline::{Engine, EngineConfig, EventReader, Output};
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, TestRng, TestRunner};

// ----- seeds (the pattern of crates/matching-core/tests/common/mod.rs) -----

/// The seed of a randomized test: `PROPTEST_SEED` (a `u64`) when set, else
/// taken from the clock.
pub fn seed() -> u64 {
    match std::env::var("PROPTEST_SEED") {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("PROPTEST_SEED={text:?} is not a u64")),
        Err(_) => SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
    }
}

/// Number of cases: `PROPTEST_CASES` when set, else `default_cases`.
pub fn cases(default_cases: u32) -> u32 {
    match std::env::var("PROPTEST_CASES") {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("PROPTEST_CASES={text:?} is not a u32")),
        Err(_) => default_cases,
    }
}

/// A proptest runner whose whole run (generation and shrinking) is a
/// function of `seed`. No failure persistence: the seed is the reproduction.
pub fn runner(seed: u64, cases: u32, max_shrink_time_ms: u32) -> TestRunner {
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_time: max_shrink_time_ms,
        ..ProptestConfig::default()
    };
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes))
}

// ----- no hangs -----

/// Runs `body` on its own thread and returns its result; fails the test
/// (instead of hanging it) when no result comes within `limit`. A panic in
/// `body` is passed on.
pub fn with_timeout<T: Send + 'static>(name: &str, limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = channel();
    let handle = std::thread::Builder::new()
        .name(format!("guarded-{name}"))
        .spawn(move || {
            // The receiver may be gone after a timeout; nothing to do then.
            let _ = sender.send(body());
        })
        .expect("spawn the guarded test body");
    match receiver.recv_timeout(limit) {
        Ok(value) => {
            handle.join().expect("the guarded body finished");
            value
        }
        Err(RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the body sends its result before it returns"),
        },
        Err(RecvTimeoutError::Timeout) => {
            panic!("{name}: no result after {limit:?}: the engine is stuck (deadlock?)")
        }
    }
}

// ----- the merged stream -----

/// One item of the engine's merged stream, owned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item {
    Event(Event),
    External(Seq, u32),
}

impl Item {
    pub fn seq(&self) -> Seq {
        match self {
            Item::Event(event) => event.seq,
            Item::External(seq, _) => *seq,
        }
    }
}

/// Drains `reader` with `run` on a new thread until the engine has shut
/// down; the handle gives back everything delivered.
pub fn drain(mut reader: EventReader<u32>) -> std::thread::JoinHandle<Vec<Item>> {
    std::thread::Builder::new()
        .name("test-reader".to_string())
        .spawn(move || {
            let mut items = Vec::new();
            reader.run(|output| {
                items.push(match output {
                    Output::Event(event) => Item::Event(*event),
                    Output::External(seq, &x) => Item::External(seq, x),
                })
            });
            assert!(reader.is_finished(), "run returned before the reader finished");
            assert_eq!(reader.poll(|_| panic!("an item after run returned")), 0);
            items
        })
        .expect("spawn the reader")
}

/// What the engine should deliver for `actions` (`None` is an external
/// item with that payload): one `Exchange` fed the same commands with
/// `seq` = position (from 1), a new order's id = its `seq`, time 0.
pub fn oracle(config: &Config, stream: &[Option<Action>]) -> (Exchange, Vec<Item>) {
    let mut exchange: Exchange = Exchange::new(config.clone());
    let mut items = Vec::new();
    for (i, action) in stream.iter().enumerate() {
        let seq = i as Seq + 1;
        match action {
            Some(action) => {
                let command = Command::new(seq, with_id(*action, seq));
                let mut sink = |event: &Event| items.push(Item::Event(*event));
                exchange.process(&command, &mut sink);
            }
            None => items.push(Item::External(seq, external_payload(seq))),
        }
    }
    (exchange, items)
}

/// The payload the tests give the external item of `seq`.
pub fn external_payload(seq: Seq) -> u32 {
    (seq as u32).wrapping_mul(2_654_435_761)
}

/// `action` with a new order's id set to `seq`, as the sequencer does.
pub fn with_id(mut action: Action, seq: Seq) -> Action {
    if let Action::New(order) = &mut action {
        order.order_id = seq;
    }
    action
}

/// Submits the whole stream one command (or external item) at a time,
/// checking each returned `seq`.
pub fn submit_all(engine: &Engine<u32>, stream: &[Option<Action>]) {
    for (i, action) in stream.iter().enumerate() {
        let seq = i as Seq + 1;
        let got = match action {
            Some(action) => engine.submit(*action).expect("submit"),
            None => engine.submit_external(external_payload(seq)).expect("submit_external"),
        };
        assert_eq!(got, seq, "the sequencer gave a different seq");
    }
}

/// Runs `stream` through an engine started with `config` and returns what
/// the reader delivered and the shards' books after `shutdown`.
pub fn run_engine(config: EngineConfig, stream: &[Option<Action>]) -> (Vec<Item>, Vec<Exchange>, u64) {
    let (engine, reader) = Engine::<u32>::start(config).expect("a valid engine configuration");
    let reader = drain(reader);
    submit_all(&engine, stream);
    let hash = engine.state_hash().expect("state_hash");
    let exchanges = engine.shutdown();
    let items = reader.join().expect("the reader thread");
    (items, exchanges, hash)
}

/// The first difference between two merged streams, with context, or `None`.
pub fn first_difference(got: &[Item], want: &[Item]) -> Option<String> {
    let at = got
        .iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .or((got.len() != want.len()).then(|| got.len().min(want.len())))?;
    let from = at.saturating_sub(3);
    let mut text = format!("merged stream differs at item {at} (engine gave {}, oracle {}):\n", got.len(), want.len());
    for i in from..(at + 3) {
        let mark = if i == at { ">>" } else { "  " };
        text.push_str(&format!("{mark} engine: {:?}\n{mark} oracle: {:?}\n", got.get(i), want.get(i)));
    }
    Some(text)
}

/// The encoded books of every shard, as one exchange would encode them.
pub fn encode_shards(exchanges: &[Exchange]) -> Vec<u8> {
    let mut parts: Vec<_> = exchanges.iter().flat_map(|e| e.book_states()).collect();
    matching_core::encode_books(&mut parts)
}

/// A small exchange configuration: cheap to start, default limits.
pub fn small_exchange() -> Config {
    Config { orders_preallocated: 64, levels_preallocated: 8, ..Config::default() }
}

pub fn sym(name: &str) -> Symbol {
    Symbol::new(name).expect("a valid test symbol")
}

/// A `gtc` limit order (its id is set by the sequencer).
pub fn limit(user: u64, symbol: Symbol, side: Side, price: u64, qty: u64) -> Action {
    Action::New(NewOrder::limit(0, user, symbol, side, price, qty))
}

/// A small deterministic generator (SplitMix64) for fixed test streams.
pub struct Mix(pub u64);

impl Mix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A fixed multi-symbol stream of every command kind (about `len` commands,
/// some external items, a few mass cancels, halts and resumes), for the
/// tests that compare configurations.
pub fn mixed_stream(len: usize, symbols: &[Symbol], seed: u64) -> Vec<Option<Action>> {
    use matching_core::{Stp, Tif};
    let mut mix = Mix(seed);
    let mut stream = Vec::with_capacity(len);
    for i in 0..len {
        let seq = i as u64 + 1;
        let roll = mix.below(100);
        let user = mix.below(4);
        let symbol = symbols[mix.below(symbols.len() as u64) as usize];
        let side = if mix.below(2) == 0 { Side::Buy } else { Side::Sell };
        let price = 95 + mix.below(11);
        let qty = 1 + mix.below(9);
        // Targets: mostly recent seqs, sometimes old ones (beyond any small route window).
        let target = if mix.below(4) == 0 { 1 + mix.below(seq) } else { seq.saturating_sub(1 + mix.below(40)).max(1) };
        let action = match roll {
            0..=4 => None,
            5..=49 => {
                let mut order = NewOrder::limit(0, user, symbol, side, price, qty);
                order.post_only = mix.below(6) == 0;
                order.tif = match mix.below(8) {
                    0 if !order.post_only => Tif::Ioc,
                    1 if !order.post_only => Tif::Fok,
                    _ => Tif::Gtc,
                };
                order.stp = [Stp::None, Stp::CancelTaker, Stp::CancelMaker, Stp::CancelBoth][mix.below(4) as usize];
                Some(Action::New(order))
            }
            50..=57 => Some(Action::New(NewOrder::market(0, user, symbol, side, qty).with_tif(if mix.below(3) == 0 {
                Tif::Fok
            } else {
                Tif::Ioc
            }))),
            58..=79 => Some(Action::Cancel { user, order_id: target }),
            80..=94 => Some(Action::Modify {
                user,
                order_id: target,
                price: (mix.below(2) == 0).then_some(price),
                qty: (mix.below(3) != 0).then_some(qty),
            }),
            // Of every symbol (spanning the shards) or of one, both sides or one.
            95..=96 => Some(Action::MassCancel {
                user,
                symbol: (mix.below(2) == 0).then_some(symbol),
                side: (mix.below(2) == 0).then_some(side),
            }),
            // Resumes twice as often as halts, so trading goes on.
            97 => Some(Action::Halt { symbol }),
            _ => Some(Action::Resume { symbol }),
        };
        stream.push(action);
    }
    stream
}
