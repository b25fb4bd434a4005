//! `matching-engine`: the command-line front of the engine.
//!
//! - `replay`: runs a file of JSON-line commands through the core (SPEC.md).
//! - `bench`: measures the core on generated, realistic order flow.
//! - `bench-engine`: measures the multi-core engine end to end, beside the core.
//! - `bench-durable`: measures the journal: throughput, ack latency, recovery, snapshots.
//! - `generate`: writes such a flow as JSON lines, for `replay`.
//! - `recover`, `journal inspect|verify`: the data directory of `replay --data`.
//!
//! The three benchmarks share their helpers (event checksum, client loops,
//! load meter, formatting) in `bench_support`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod bench_durable;
mod bench_engine;
mod bench_support;
mod data;
mod generate;
mod replay;

#[derive(Parser)]
#[command(name = "matching-engine", version, about = "An exchange matching engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run JSON-line commands through the engine and write JSON-line events (see SPEC.md).
    Replay(replay::Args),
    /// Measure the order-book core on generated order flow.
    Bench(bench::Args),
    /// Measure the multi-core engine: high load, realistic multi-symbol flow, open-loop latency.
    BenchEngine(bench_engine::Args),
    /// Measure durability: journaled throughput, ack latency, recovery and snapshot times.
    BenchDurable(bench_durable::Args),
    /// Write generated order flow as JSON-line commands (stdout).
    Generate(generate::Args),
    /// Rebuild the state from a data directory and print its last seq and state hash.
    Recover(data::RecoverArgs),
    /// Look at a data directory's journal and snapshots.
    #[command(subcommand)]
    Journal(data::JournalCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => replay::run(args),
        Command::Bench(args) => bench::run(args),
        Command::BenchEngine(args) => bench_engine::run(args),
        Command::BenchDurable(args) => bench_durable::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Recover(args) => data::recover(args),
        Command::Journal(command) => data::journal(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
