use std::time::Instant;

use matching_core::{Action, Config, DiscardEvents, Exchange};
use matching_pipeline::{Engine, EngineConfig, Output, WaitStrategy};
use matching_workload::{Scenario, generate};

fn main() {
    let flow = generate(Scenario::Normal, 2_000_000, 42);
    let actions: Vec<Action> = flow.warmup.iter().chain(&flow.commands).map(|c| c.action).collect();
    let batch: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(256);
    let wait = match std::env::args().nth(2).as_deref() {
        Some("spin") => WaitStrategy::BusySpin,
        Some("park") => WaitStrategy::Park,
        _ => WaitStrategy::SpinYield,
    };
    // bare core
    let mut ex: Exchange = Exchange::new(Config { orders_preallocated: 1 << 16, ..Config::default() });
    let t = Instant::now();
    ex.process_all(flow.warmup.iter().chain(&flow.commands), &mut DiscardEvents);
    let bare = actions.len() as f64 / t.elapsed().as_secs_f64();
    let runs: usize = std::env::args().nth(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut piped = 0.0;
    let mut events = 0u64;
    for _ in 0..runs {
        let config = EngineConfig {
            wait,
            exchange: Config { orders_preallocated: 1 << 16, ..Config::default() },
            ..EngineConfig::default()
        };
        let (engine, mut reader) = Engine::<()>::start(config).unwrap();
        events = 0;
        let t = Instant::now();
        let mut done = 0;
        while done < actions.len() {
            let end = (done + batch).min(actions.len());
            let (taken, _) = engine.try_submit_batch(&actions[done..end]);
            done += taken;
            reader.poll(|o| {
                if let Output::Event(_) = o {
                    events += 1
                }
            });
        }
        let last = engine.next_seq();
        while reader.next_seq() < last {
            reader.poll(|o| {
                if let Output::Event(_) = o {
                    events += 1
                }
            });
        }
        piped = actions.len() as f64 / t.elapsed().as_secs_f64();
        drop(engine);
    }
    println!(
        "batch {batch} {wait:?}: bare {:.1}M/s engine(1 shard, submit+poll on one thread) {:.1}M/s ratio {:.2} events {events}",
        bare / 1e6,
        piped / 1e6,
        piped / bare
    );
}
