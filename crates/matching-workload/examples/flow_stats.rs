//! Prints what a generated flow is made of.
//!
//! `cargo run --release -p matching-workload --example flow_stats -- [SCENARIO|all] [COMMANDS] [SEED]`

use std::time::Instant;

use matching_workload::{Scenario, generate};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenarios = match args.first().map(String::as_str) {
        None | Some("all") => Scenario::ALL.to_vec(),
        Some(name) => match name.parse() {
            Ok(scenario) => vec![scenario],
            Err(error) => {
                eprintln!("{error}");
                std::process::exit(2);
            }
        },
    };
    let commands = args.get(1).and_then(|a| a.replace('_', "").parse().ok()).unwrap_or(1_000_000);
    let seed = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(42);
    for scenario in scenarios {
        let started = Instant::now();
        let flow = generate(scenario, commands, seed);
        println!("{scenario} ({commands} commands, seed {seed}, generated in {:.2?}):", started.elapsed());
        println!("{}\n", flow.stats);
    }
}
