//! `matching-engine`: the command-line front of the engine.
//!
//! - `serve`: the engine as a network service (`matching-server`).
//! - `users add`: a user for `serve --users`.
//! - `admin`: the operator console of a running `serve` (status, sessions,
//!   halt/resume, kill switch).
//! - `replay`: runs a file of JSON-line commands through the core (SPEC.md).
//! - `bench`: measures the core on generated, realistic order flow.
//! - `bench-engine`: measures the multi-core engine end to end, beside the core.
//! - `bench-durable`: measures the journal: throughput, ack latency, recovery, snapshots.
//! - `generate`: writes such a flow as JSON lines, for `replay`.
//! - `load`: drives a running `serve` over the network.
//! - `md`: a live ladder of one symbol from `serve`'s market-data feed.
//! - `recover`, `journal inspect|verify`: the data directory of `replay --data`.
//!
//! The benchmarks and `generate` live in `matching-bench`; this crate only
//! parses the command line and hands each subcommand to its crate.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod admin;
mod data;
mod md;
mod replay;
mod serve;

use matching_bench as bench;

#[derive(Parser)]
#[command(name = "matching-engine", version, about = "An exchange matching engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine as a network service: binary, JSON over TCP, WebSocket.
    Serve(Box<serve::Args>),
    /// The operator console of a running `serve`: status, sessions, halt, resume, kill switch.
    Admin(admin::Args),
    /// Manage the users file of `serve --users`.
    #[command(subcommand)]
    Users(serve::UsersCommand),
    /// Run JSON-line commands through the engine and write JSON-line events (see SPEC.md).
    Replay(replay::Args),
    /// Measure the order-book core on generated order flow.
    Bench(bench::core::Args),
    /// Measure the multi-core engine: high load, realistic multi-symbol flow, open-loop latency.
    BenchEngine(bench::engine::Args),
    /// Measure durability: journaled throughput, ack latency, recovery and snapshot times.
    BenchDurable(bench::durable::Args),
    /// Drive a running `serve` with generated order flow; report throughput and ack latency.
    Load(bench::load::Args),
    /// Watch one symbol live from the market-data feed: ladder, last trades, feed state.
    Md(md::Args),
    /// Write generated order flow as JSON-line commands (stdout).
    Generate(bench::generate::Args),
    /// Rebuild the state from a data directory and print its last seq and state hash.
    Recover(data::RecoverArgs),
    /// Look at a data directory's journal and snapshots.
    #[command(subcommand)]
    Journal(data::JournalCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        // Logs as its configuration says, once that is resolved.
        Command::Serve(args) => serve::run(*args),
        Command::Users(command) => serve::users(command),
        Command::Admin(args) => admin::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Bench(args) => bench::core::run(args),
        Command::BenchEngine(args) => bench::engine::run(args),
        Command::BenchDurable(args) => bench::durable::run(args),
        Command::Generate(args) => bench::generate::run(args),
        Command::Load(args) => bench::load::run(args),
        Command::Md(args) => md::run(args),
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
