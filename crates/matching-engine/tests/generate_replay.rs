//! A generated flow written as JSON (`generate`) and run through `replay`
//! gives exactly the events and book of the same flow run in memory: the
//! JSON path (encode, parse, validate, format) adds nothing and loses nothing.

use std::process::{Command, Stdio};

use matching_core::{Config, Event, Exchange};
use matching_proto::json;
use matching_workload::{Scenario, generate};

#[test]
fn replaying_generated_json_matches_the_in_memory_run() {
    let (commands, seed) = (20_000, 11);
    eprintln!("seed = {seed}");
    let binary = env!("CARGO_BIN_EXE_matching-engine");
    let generated = Command::new(binary)
        .args(["generate", "--scenario", "volatile", "--commands", &commands.to_string(), "--seed", &seed.to_string()])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(generated.status.success());

    let dir = std::env::temp_dir().join(format!("me-generate-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (input, book) = (dir.join("flow.jsonl"), dir.join("book.jsonl"));
    std::fs::write(&input, &generated.stdout).unwrap();
    let replayed = Command::new(binary).arg("replay").arg(&input).arg("--book").arg(&book).output().unwrap();
    assert!(replayed.status.success());

    let flow = generate(Scenario::Volatile, commands, seed);
    let mut exchange: Exchange = Exchange::new(Config::default());
    let mut events = Vec::new();
    let mut sink = |event: &Event| json::write_event(&mut events, event);
    exchange.process_all(flow.warmup.iter().chain(&flow.commands), &mut sink);
    let mut want_book = Vec::new();
    json::write_books(&mut want_book, &[&exchange]);

    assert_eq!(replayed.stdout.len(), events.len(), "event bytes differ in length");
    assert!(replayed.stdout == events, "events differ");
    assert!(std::fs::read(&book).unwrap() == want_book, "books differ");
    assert!(flow.stats.trades > 1000, "the flow traded");
    std::fs::remove_dir_all(&dir).ok();
}
