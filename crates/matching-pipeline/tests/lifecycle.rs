//! Starting, configuring, querying and stopping the engine.
//!
//! The tests of this file take one lock while they run an engine, so that
//! `dropping_an_engine_joins_its_threads` can count the process's shard
//! threads without another test's engine in the count.

mod common;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::{
    Item, encode_shards, first_difference, limit, mixed_stream, oracle, run_engine, small_exchange, sym, with_timeout,
};
use matching_core::{Action, Config, Event, EventKind, Exchange, RejectReason, Seq, Side, Symbol, TradingStatus};
use matching_pipeline::{Answer, Engine, EngineConfig, Output, Query, SHARDS_MAX, StartError, WaitStrategy};

static ENGINES: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    ENGINES.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs a test body on its own thread, failing instead of hanging.
fn guarded(name: &str, body: impl FnOnce() + Send + 'static) {
    with_timeout(name, Duration::from_secs(120), body)
}

fn config(shards: usize) -> EngineConfig {
    EngineConfig {
        shards,
        exchange: small_exchange(),
        input_ring: 8,
        output_ring: 32,
        external_ring: 2,
        batch_max: 16,
        route_window: 64,
        ..EngineConfig::default()
    }
}

fn symbols() -> Vec<Symbol> {
    ["B", "C", "D", "A", "SOL-USD"].iter().map(|name| sym(name)).collect()
}

/// The names of this process's threads that start with `prefix`.
fn threads_named(prefix: &str) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let Ok(entry) = entry else { continue };
        // A thread that exits between the listing and the read is skipped.
        if let Ok(name) = std::fs::read_to_string(entry.path().join("comm")) {
            let name = name.trim_end().to_string();
            if name.starts_with(prefix) {
                names.push(name);
            }
        }
    }
    names.sort();
    names
}

#[test]
fn every_wait_strategy_and_pinning_give_the_same_output() {
    let _engines = exclusive();
    guarded("every_wait_strategy_and_pinning_give_the_same_output", || {
        let stream = mixed_stream(3_000, &symbols(), 1);
        let (want_exchange, want) = oracle(&small_exchange(), &stream);
        assert!(want.len() > 3_000);
        let want_state = want_exchange.encode_state();
        for shards in [1, 3] {
            for wait in [WaitStrategy::SpinYield, WaitStrategy::Park, WaitStrategy::BusySpin] {
                for pin_cores in [false, true] {
                    let config = EngineConfig { wait, pin_cores, ..config(shards) };
                    let stream = stream.clone();
                    let name = format!("{shards} shards, {wait:?}, pin_cores {pin_cores}");
                    let (got, exchanges, hash) =
                        with_timeout(&name, Duration::from_secs(60), move || run_engine(config, &stream));
                    assert_eq!(first_difference(&got, &want), None, "{name}");
                    assert_eq!(hash, want_exchange.state_hash(), "{name}");
                    assert_eq!(encode_shards(&exchanges), want_state, "{name}");
                }
            }
        }
    })
}

/// Dropping an engine without `shutdown` processes every command submitted
/// and joins the shard threads before `drop` returns. The rings are large
/// enough to hold every event, so the reader is not drained until after
/// the drop: then one `poll` must find everything, and the reader must
/// already be finished.
#[test]
fn dropping_an_engine_joins_its_threads() {
    let _engines = exclusive();
    guarded("dropping_an_engine_joins_its_threads", || {
        let before = threads_named("shard-");
        assert!(before.is_empty(), "no engine runs yet: {before:?}");
        let stream = mixed_stream(2_000, &symbols(), 2);
        let (_, want) = oracle(&small_exchange(), &stream);
        let config = EngineConfig { output_ring: 1 << 16, external_ring: 1 << 12, ..config(4) };
        let (engine, mut reader) = Engine::<u32>::start(config).expect("start");
        common::submit_all(&engine, &stream[..1_000]);
        // A query answered by every shard: each shard thread is running (and named).
        let _ = engine.state_hash().expect("state_hash");
        assert_eq!(threads_named("shard-"), vec!["shard-0", "shard-1", "shard-2", "shard-3"]);
        // Submitted, and most not processed yet when the engine is dropped.
        for (i, action) in stream[1_000..].iter().enumerate() {
            match action {
                Some(action) => engine.submit(*action).expect("submit"),
                None => engine.submit_external(common::external_payload(1_001 + i as Seq)).expect("submit_external"),
            };
        }
        drop(engine);
        let mut got = Vec::new();
        reader.poll(|output| {
            got.push(match output {
                Output::Event(event) => Item::Event(*event),
                Output::External(seq, &x) => Item::External(seq, x),
            })
        });
        assert!(reader.is_finished(), "the shards still ran after drop returned");
        assert_eq!(first_difference(&got, &want), None, "every command submitted before the drop is processed");
        // Joined threads are gone from the process (the kernel may take a
        // moment to remove an exited thread's entry: bounded re-reads).
        let mut rereads = 0;
        while !threads_named("shard-").is_empty() {
            rereads += 1;
            assert!(rereads < 100_000, "shard threads still running after drop: {:?}", threads_named("shard-"));
            std::thread::yield_now();
        }
    })
}

/// The reader's `run` returns once the engine has shut down and every item
/// is delivered; before that, `is_finished` is false. The first half of
/// the stream is submitted with `try_submit_batch` by a thread that also
/// drains the reader with `poll` (never blocking); the second half with
/// `submit` while another thread is in `run`.
#[test]
fn reader_run_returns_after_shutdown() {
    let _engines = exclusive();
    guarded("reader_run_returns_after_shutdown", || {
        let (engine, mut reader) = Engine::<u32>::start(config(2)).expect("start");
        let stream = mixed_stream(1_000, &symbols(), 3);
        let (want_exchange, want) = oracle(&small_exchange(), &stream);
        let to_item = |output: Output<'_, u32>| match output {
            Output::Event(event) => Item::Event(*event),
            Output::External(seq, &x) => Item::External(seq, x),
        };
        let mut got = Vec::new();
        let half = stream.len() / 2;
        for (i, action) in stream[..half].iter().enumerate() {
            let seq = i as Seq + 1;
            loop {
                let taken = match action {
                    Some(action) => {
                        let (taken, first) =
                            engine.try_submit_batch(std::slice::from_ref(action)).expect("try_submit_batch");
                        assert_eq!(first, seq);
                        taken
                    }
                    None => {
                        // `submit_external` waits while the external ring is
                        // full, and only this thread empties it: first let the
                        // reader deliver everything before this seq.
                        while reader.next_seq() < seq {
                            reader.poll(|output| got.push(to_item(output)));
                        }
                        assert_eq!(
                            engine.submit_external(common::external_payload(seq)).expect("submit_external"),
                            seq
                        );
                        1
                    }
                };
                reader.poll(|output| got.push(to_item(output)));
                if taken == 1 {
                    break;
                }
            }
        }
        assert!(!reader.is_finished(), "the engine still runs");
        let running = std::thread::spawn(move || {
            reader.run(|output| got.push(to_item(output)));
            let finished = reader.is_finished();
            let after = reader.poll(|_| {});
            (got, finished, after)
        });
        for (i, action) in stream[half..].iter().enumerate() {
            let seq = (half + i) as Seq + 1;
            match action {
                Some(action) => assert_eq!(engine.submit(*action).expect("submit"), seq),
                None => {
                    assert_eq!(engine.submit_external(common::external_payload(seq)).expect("submit_external"), seq)
                }
            }
        }
        let exchanges = engine.shutdown();
        let (got, finished, after) =
            with_timeout("reader-run", Duration::from_secs(60), move || running.join().expect("the reader thread"));
        assert!(finished, "run returned before the reader finished");
        assert_eq!(after, 0, "nothing after run returned");
        assert_eq!(first_difference(&got, &want), None);
        assert_eq!(encode_shards(&exchanges), want_exchange.encode_state());
    })
}

#[test]
fn start_rejects_bad_configurations() {
    let _engines = exclusive();
    guarded("start_rejects_bad_configurations", || {
        let cases: [(&str, EngineConfig); 6] = [
            ("shards", EngineConfig { shards: 0, ..config(1) }),
            ("shards", EngineConfig { shards: SHARDS_MAX + 1, ..config(1) }),
            ("input_ring", EngineConfig { input_ring: 0, ..config(2) }),
            ("output_ring", EngineConfig { output_ring: 0, ..config(2) }),
            ("external_ring", EngineConfig { external_ring: 0, ..config(2) }),
            ("batch_max", EngineConfig { batch_max: 0, ..config(2) }),
        ];
        assert_eq!(SHARDS_MAX, 64);
        for (field, config) in cases {
            match Engine::<u32>::start(config.clone()) {
                Err(StartError::Config(message)) => {
                    assert!(message.contains(field), "{field}: {message}");
                    assert!(StartError::Config(message).to_string().starts_with("invalid engine configuration"));
                }
                Err(other) => panic!("{field}: unexpected {other}"),
                Ok(_) => panic!("start accepted {field} in {config:?}"),
            }
        }
        // The largest valid layout starts and stops.
        let (engine, reader) = Engine::<u32>::start(config(SHARDS_MAX)).expect("64 shards");
        let reader = common::drain(reader);
        assert_eq!(engine.shards(), SHARDS_MAX);
        assert!(engine.shard_of(&sym("BTC-USD")) < SHARDS_MAX);
        assert_eq!(engine.shutdown().len(), SHARDS_MAX);
        assert!(reader.join().expect("reader").is_empty());
    })
}

#[test]
fn queries_on_an_unknown_symbol_answer_empty() {
    let _engines = exclusive();
    guarded("queries_on_an_unknown_symbol_answer_empty", || {
        let (engine, reader) = Engine::<u32>::start(config(4)).expect("start");
        let reader = common::drain(reader);
        let empty_book = Answer::Book { bids: Vec::new(), asks: Vec::new(), status: TradingStatus::Open };
        let empty_best = Answer::Best { bid: None, ask: None };
        let empty_depth = Answer::Depth { bids: Vec::new(), asks: Vec::new() };
        // A fresh engine: no books at all, the state of an empty exchange.
        assert_eq!(engine.query(Query::State).expect("query"), Answer::State(Vec::new()));
        let empty: Exchange = Exchange::new(small_exchange());
        assert_eq!(engine.state_hash().expect("state_hash"), empty.state_hash());
        let traded = sym("B");
        engine.submit(limit(1, traded, Side::Buy, 100, 5)).expect("submit");
        let cancelled = sym("C");
        let id = engine.submit(limit(1, cancelled, Side::Sell, 100, 5)).expect("submit");
        engine.submit(Action::Cancel { user: 1, order_id: id }).expect("submit");
        for name in ["NEVER", "X", "eth.usd", "a_b/9", "Z9", "SOL-USD"] {
            let unknown = sym(name);
            assert_eq!(engine.query(Query::Book(unknown)).expect("query"), empty_book, "{name}");
            assert_eq!(engine.query(Query::Best(unknown)).expect("query"), empty_best, "{name}");
            assert_eq!(engine.query(Query::Depth(unknown, 10)).expect("query"), empty_depth, "{name}");
        }
        // A book that exists but is empty answers the same.
        assert_eq!(engine.query(Query::Book(cancelled)).expect("query"), empty_book);
        assert_eq!(engine.query(Query::Best(cancelled)).expect("query"), empty_best);
        assert_eq!(engine.query(Query::Depth(cancelled, 10)).expect("query"), empty_depth);
        assert_eq!(engine.query(Query::Best(traded)).expect("query"), Answer::Best { bid: Some((100, 5)), ask: None });
        assert_eq!(engine.query(Query::Depth(traded, 0)).expect("query"), empty_depth);
        engine.shutdown();
        reader.join().expect("reader");
    })
}

fn many_symbols() -> Vec<Symbol> {
    (0..60).map(|i| sym(&format!("S{i}-{}", i * 7919 % 101))).collect()
}

/// `shard_of` is a function of the symbol and the shard count: the same on
/// every call and every engine, in range, spreading symbols, and it is
/// where a symbol's book ends up.
#[test]
fn shard_of_is_stable_and_is_where_books_live() {
    let _engines = exclusive();
    guarded("shard_of_is_stable_and_is_where_books_live", || {
        let symbols = many_symbols();
        for shards in [1, 2, 3, 4] {
            let (first, reader_1) = Engine::<u32>::start(config(shards)).expect("start");
            let (second, reader_2) = Engine::<u32>::start(config(shards)).expect("start");
            let (reader_1, reader_2) = (common::drain(reader_1), common::drain(reader_2));
            let placed: Vec<usize> = symbols.iter().map(|s| first.shard_of(s)).collect();
            assert!(placed.iter().all(|&shard| shard < shards));
            assert_eq!(placed, symbols.iter().map(|s| first.shard_of(s)).collect::<Vec<_>>());
            assert_eq!(placed, symbols.iter().map(|s| second.shard_of(s)).collect::<Vec<_>>());
            let used: std::collections::BTreeSet<usize> = placed.iter().copied().collect();
            assert_eq!(used.len(), shards, "{shards} shards: 60 symbols use every shard");
            for &symbol in &symbols {
                first.submit(limit(0, symbol, Side::Buy, 10, 1)).expect("submit");
            }
            second.shutdown();
            let exchanges = first.shutdown();
            for (symbol, &shard) in symbols.iter().zip(&placed) {
                for (index, exchange) in exchanges.iter().enumerate() {
                    assert_eq!(
                        exchange.book(symbol).is_some(),
                        index == shard,
                        "{symbol} on shard {index} of {shards}"
                    );
                }
            }
            reader_1.join().expect("reader");
            reader_2.join().expect("reader");
        }
    })
}

#[test]
fn symbol_shards_places_a_symbol_where_told() {
    let _engines = exclusive();
    guarded("symbol_shards_places_a_symbol_where_told", || {
        // By hash over 4 shards: B 1, C 2, D 3, A 0, SOL-USD 0.
        let table = vec![(sym("A"), 3), (sym("B"), 3), (sym("SOL-USD"), 2), (sym("C"), 1)];
        let (engine, reader) =
            Engine::<u32>::start(EngineConfig { symbol_shards: table.clone(), ..config(4) }).expect("start");
        let reader = common::drain(reader);
        for &(symbol, shard) in &table {
            assert_eq!(engine.shard_of(&symbol), shard, "{symbol}");
        }
        assert_eq!(engine.shard_of(&sym("D")), 3, "a symbol not in the table goes by hash");
        let stream: Vec<Option<Action>> =
            symbols().iter().map(|&symbol| Some(limit(0, symbol, Side::Sell, 10, 1))).collect();
        common::submit_all(&engine, &stream);
        let exchanges = engine.shutdown();
        let books: Vec<Vec<Symbol>> = exchanges.iter().map(Exchange::symbols).collect();
        assert_eq!(books, vec![vec![], vec![sym("C")], vec![sym("SOL-USD")], vec![sym("A"), sym("B"), sym("D")]]);
        reader.join().expect("reader");
    })
}

/// With a fixed instrument list, an order for an unlisted symbol is
/// rejected `invalid_symbol` through the engine exactly as one `Exchange`
/// with the same configuration rejects it, however many shards.
#[test]
fn instruments_reject_unlisted_symbols_as_one_exchange_does() {
    let _engines = exclusive();
    guarded("instruments_reject_unlisted_symbols_as_one_exchange_does", || {
        let listed = [sym("A"), sym("C")];
        let exchange_config = Config { instruments: Some(listed.to_vec()), ..small_exchange() };
        // Orders on listed and unlisted symbols (B, D, SOL-USD, X), crossing
        // ones, cancels and modifies of them.
        let stream = mixed_stream(600, &[sym("A"), sym("B"), sym("C"), sym("D"), sym("SOL-USD"), sym("X")], 4);
        let (want_exchange, want) = oracle(&exchange_config, &stream);
        let unlisted_rejected = want
            .iter()
            .filter(|item| {
                matches!(
                    item,
                    Item::Event(Event { kind: EventKind::Rejected { reason: RejectReason::InvalidSymbol, .. }, .. })
                )
            })
            .count();
        assert!(unlisted_rejected > 100, "the stream sends unlisted symbols: {unlisted_rejected}");
        let mut failures = Vec::new();
        for shards in [1, 2, 4] {
            let config = EngineConfig { exchange: exchange_config.clone(), ..config(shards) };
            let stream = stream.clone();
            let (got, exchanges, hash) =
                with_timeout("instruments", Duration::from_secs(60), move || run_engine(config, &stream));
            if let Some(difference) = first_difference(&got, &want) {
                let wrongly_accepted: Vec<Symbol> = got
                    .iter()
                    .filter_map(|item| match item {
                        Item::Event(Event { kind: EventKind::Accepted { symbol, .. }, .. }) => Some(*symbol),
                        _ => None,
                    })
                    .filter(|symbol| !listed.contains(symbol))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                failures.push(format!(
                    "{shards} shards: unlisted symbols accepted: {wrongly_accepted:?} (books per shard: {:?})\n{difference}",
                    exchanges.iter().map(Exchange::symbols).collect::<Vec<_>>()
                ));
                continue;
            }
            assert_eq!(hash, want_exchange.state_hash(), "{shards} shards");
            assert_eq!(encode_shards(&exchanges), want_exchange.encode_state(), "{shards} shards");
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    })
}

/// The smallest case of the one above: one listed instrument over two
/// shards; an order for an unlisted symbol that hashes to the other shard.
#[test]
fn an_unlisted_symbol_is_rejected_on_a_shard_without_instruments() {
    let _engines = exclusive();
    guarded("an_unlisted_symbol_is_rejected_on_a_shard_without_instruments", || {
        let exchange_config = Config { instruments: Some(vec![sym("A")]), ..small_exchange() };
        let stream = vec![Some(limit(1, sym("B"), Side::Buy, 100, 5))];
        let (_, want) = oracle(&exchange_config, &stream);
        assert_eq!(want, vec![Item::Event(Event::rejected(1, RejectReason::InvalidSymbol, None))]);
        let config = EngineConfig { exchange: exchange_config, ..config(2) };
        let (engine, reader) = Engine::<u32>::start(config).expect("start");
        assert_eq!((engine.shard_of(&sym("A")), engine.shard_of(&sym("B"))), (0, 1));
        let reader = common::drain(reader);
        common::submit_all(&engine, &stream);
        engine.shutdown();
        let got = reader.join().expect("reader");
        assert_eq!(got, want, "an order for B, not listed, through a 2-shard engine listing only A");
    })
}

/// An empty batch takes no `seq`; `next_seq` counts commands and external
/// items alike.
#[test]
fn empty_batches_take_no_seq() {
    let _engines = exclusive();
    guarded("empty_batches_take_no_seq", || {
        let (engine, reader) = Engine::<u32>::start(config(2)).expect("start");
        let reader = common::drain(reader);
        assert_eq!(engine.next_seq(), 1);
        assert_eq!(engine.submit_batch(&[]).expect("submit_batch"), 1);
        assert_eq!(engine.try_submit_batch(&[]).expect("try_submit_batch"), (0, 1));
        assert_eq!(engine.submit(limit(1, sym("B"), Side::Buy, 10, 1)).expect("submit"), 1);
        assert_eq!(engine.submit_external(common::external_payload(2)).expect("submit_external"), 2);
        assert_eq!(engine.submit_batch(&[]).expect("submit_batch"), 3);
        assert_eq!(engine.next_seq(), 3);
        engine.shutdown();
        let got = reader.join().expect("reader");
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], Item::External(2, common::external_payload(2)));
    })
}
