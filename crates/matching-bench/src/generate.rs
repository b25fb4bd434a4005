//! `matching-engine generate`: writes a generated flow as SPEC JSON lines,
//! warm-up first, so `replay` (and later the network load generator) can
//! run realistic order flow from a file.

use std::io::{self, Write};

use anyhow::Context;
use matching_proto::json;
use matching_workload::{Scenario, generate};

#[derive(clap::Args)]
pub struct Args {
    /// Market regime: fixed, normal, volatile, crash, swing, deep-book or
    /// flash-crash (not client-ids: `replay` gives new orders their seq as id).
    #[arg(long, default_value = "normal")]
    scenario: Scenario,
    /// Commands after the warm-up.
    #[arg(long, default_value_t = 1_000_000)]
    commands: usize,
    /// Seed of the flow (the same seed always gives the same file).
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !args.scenario.order_ids_are_seqs() {
        anyhow::bail!(
            "scenario {} chooses its own order ids, which SPEC's JSON lines cannot carry (replay gives a new order \
             its seq as id); it exists for `bench` only",
            args.scenario
        );
    }
    let flow = generate(args.scenario, args.commands, args.seed);
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut line = Vec::with_capacity(256);
    for command in flow.warmup.iter().chain(&flow.commands) {
        line.clear();
        json::write_command(&mut line, &command.action);
        out.write_all(&line).context("cannot write the flow")?;
    }
    out.flush().context("cannot write the flow")?;
    eprintln!("{} warm-up + {} commands, seed {}", flow.warmup.len(), flow.commands.len(), args.seed);
    Ok(())
}
