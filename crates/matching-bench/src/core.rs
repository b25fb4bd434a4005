//! `matching-engine bench`: measures the order-book core on generated
//! order flow (`matching-workload`): the four realistic scenarios
//! (`fixed`, `normal`, `volatile`, `crash`) and four hostile or foreign ones
//! the core was not designed around (`--scenario hostile`; `all` runs the
//! eight):
//!
//! - `swing`: buys and sells priced from two stretches of a large-step
//!   random walk, shuffled: consecutive orders thousands of ticks apart, a
//!   sparse book of ~16k orders nearly one level each;
//! - `client-ids`: a normal session with client-assigned order ids (a
//!   random permutation, not the `seq`), a modify being a cancel and a new
//!   order with a fresh id;
//! - `deep-book`: 262,144 levels, one order each, worked at the touch and
//!   at both far ends at once;
//! - `flash-crash`: a 120,000-level bid side swept through thousands of
//!   levels at a time by large sells, then a recovery, over a normal flow.
//!
//! Each flow sizes the exchange: room for twice the most orders that ever
//! rest, and for a quarter more levels per side than the most the flow
//! ever has (at least 4,096), so the deep books do not grow inside the
//! timed loop.
//!
//! For each scenario the flow is generated once. Then, for each level
//! structure, `--runs` throughput runs each build a fresh [`Exchange`],
//! apply the warm-up untimed, and time `process` over every timed command
//! with one clock read before and one after the loop. Every event goes into
//! a checksum (so none can be optimised away), and the checksum, the event
//! count and the final state hash must be the same in every run and for
//! every level structure: a run that disagrees is an error, not a number.
//! A separate latency pass times each `process` call on its own into an HDR
//! histogram; its numbers include one clock read (the overhead is printed).
//!
//! The hot loop is generic over [`PriceLevels`], monomorphised per
//! structure, so the comparison is of the structures and nothing else.
//!
//! [`Exchange`]: matching_core::Exchange

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use hdrhistogram::Histogram;
use matching_core::{BTreeLevels, Config, LadderLevels, PriceLevels, RadixLevels, SortedVecLevels};
use matching_workload::{Flow, Scenario, generate};

use crate::support::{
    Checksum, Latency, Machine, Rates, exchange_config, flag_value, grouped, json_string, new_histogram, push_flag,
    timed_process, warmed_up,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioChoice {
    /// Every scenario, the realistic four then the hostile four.
    All,
    /// The hostile and foreign four: swing, client-ids, deep-book, flash-crash.
    Hostile,
    Fixed,
    Normal,
    Volatile,
    Crash,
    Swing,
    ClientIds,
    DeepBook,
    FlashCrash,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LevelsChoice {
    /// `SortedVecLevels`.
    SortedVec,
    /// `BTreeLevels`.
    Btree,
    /// `LadderLevels`, the default before the radix trie.
    Ladder,
    /// `RadixLevels`, the default structure.
    Radix,
    /// Every structure, on the same flows.
    All,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Scenario to run.
    #[arg(long, value_enum, default_value_t = ScenarioChoice::All)]
    scenario: ScenarioChoice,
    /// Timed commands per scenario (the warm-up comes on top, untimed).
    #[arg(long, default_value_t = 2_000_000)]
    commands: usize,
    /// Throughput runs per scenario and level structure.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Seed of the generated flows.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Price-level structure(s) to measure.
    #[arg(long, value_enum, default_value_t = LevelsChoice::Radix)]
    levels: LevelsChoice,
    /// Machine-readable output: one JSON object per line.
    #[arg(long)]
    json: bool,
    /// Skip the per-command latency pass.
    #[arg(long)]
    no_latency: bool,
}

impl Args {
    fn scenarios(&self) -> Vec<Scenario> {
        match self.scenario {
            ScenarioChoice::All => Scenario::EVERY.to_vec(),
            ScenarioChoice::Hostile => Scenario::HOSTILE.to_vec(),
            ScenarioChoice::Fixed => vec![Scenario::Fixed],
            ScenarioChoice::Normal => vec![Scenario::Normal],
            ScenarioChoice::Volatile => vec![Scenario::Volatile],
            ScenarioChoice::Crash => vec![Scenario::Crash],
            ScenarioChoice::Swing => vec![Scenario::Swing],
            ScenarioChoice::ClientIds => vec![Scenario::ClientIds],
            ScenarioChoice::DeepBook => vec![Scenario::DeepBook],
            ScenarioChoice::FlashCrash => vec![Scenario::FlashCrash],
        }
    }

    fn levels(&self) -> Vec<Levels> {
        match self.levels {
            LevelsChoice::SortedVec => vec![Levels::SortedVec],
            LevelsChoice::Btree => vec![Levels::BTree],
            LevelsChoice::Ladder => vec![Levels::Ladder],
            LevelsChoice::Radix => vec![Levels::Radix],
            LevelsChoice::All => vec![Levels::Radix, Levels::Ladder, Levels::SortedVec, Levels::BTree],
        }
    }

    /// The flags as a command line, every value spelled out.
    fn command_line(&self) -> String {
        let mut line = format!(
            "matching-engine bench --scenario {} --commands {} --runs {} --seed {} --levels {}",
            flag_value(&self.scenario),
            self.commands,
            self.runs,
            self.seed,
            flag_value(&self.levels)
        );
        push_flag(&mut line, self.json, "--json");
        push_flag(&mut line, self.no_latency, "--no-latency");
        line
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Levels {
    SortedVec,
    BTree,
    Ladder,
    Radix,
}

impl Levels {
    fn name(self) -> &'static str {
        match self {
            Levels::SortedVec => SortedVecLevels::NAME,
            Levels::BTree => BTreeLevels::NAME,
            Levels::Ladder => LadderLevels::NAME,
            Levels::Radix => RadixLevels::NAME,
        }
    }
}

/// The exchange for `flow`: room for twice the most orders that ever
/// rest, and per side for a quarter more levels than the flow's most (both
/// sides counted, so an upper bound for one), at least 4,096.
fn flow_config(flow: &Flow) -> Config {
    let levels = flow.stats.levels_max as usize;
    exchange_config(flow.stats.resting_max * 2, (levels + levels / 4).max(4096))
}

/// What one throughput run measured and produced.
struct Run {
    elapsed: Duration,
    checksum: Checksum,
    state_hash: u64,
}

/// A fresh exchange, the warm-up applied untimed, then every timed command.
#[inline(never)]
fn throughput_run<L: PriceLevels>(flow: &Flow, config: &Config) -> Run {
    let mut exchange = warmed_up::<L>(config, &flow.warmup);
    let (elapsed, checksum) = timed_process(&mut exchange, &flow.commands);
    Run { elapsed, checksum, state_hash: exchange.state_hash() }
}

#[inline(never)]
fn latency_run<L: PriceLevels>(flow: &Flow, config: &Config) -> anyhow::Result<(Histogram<u64>, Checksum)> {
    let mut histogram = new_histogram()?;
    let mut exchange = warmed_up::<L>(config, &flow.warmup);
    let mut sink = Checksum::default();
    for command in black_box(flow.commands.as_slice()) {
        let started = Instant::now();
        exchange.process(command, &mut sink);
        let ns = started.elapsed().as_nanos() as u64;
        histogram.saturating_record(ns);
    }
    Ok((histogram, black_box(sink)))
}

/// What one clock read around nothing costs (the floor under every
/// latency-pass number).
fn timer_overhead() -> anyhow::Result<Histogram<u64>> {
    let mut histogram = new_histogram()?;
    for _ in 0..1_000_000 {
        let started = Instant::now();
        let ns = black_box(started).elapsed().as_nanos() as u64;
        histogram.saturating_record(ns);
    }
    Ok(histogram)
}

/// One line of the table.
struct Row {
    scenario: Scenario,
    levels: Levels,
    commands: usize,
    warmup: usize,
    events: u64,
    /// Commands per second over the runs.
    rates: Rates,
    latency: Option<Latency>,
}

impl Row {
    fn events_per_s(&self) -> f64 {
        self.rates.median() * self.events as f64 / self.commands as f64
    }
}

/// The results of one flow that every run and every level structure must reproduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Outcome {
    checksum: Checksum,
    state_hash: u64,
}

fn measure<L: PriceLevels>(
    flow: &Flow,
    config: &Config,
    args: &Args,
    levels: Levels,
    expected: &mut Option<Outcome>,
) -> anyhow::Result<Row> {
    let scenario = flow.scenario;
    let mut rates = Vec::with_capacity(args.runs);
    for run in 1..=args.runs {
        let Run { elapsed, checksum, state_hash } = throughput_run::<L>(flow, config);
        let outcome = Outcome { checksum, state_hash };
        match expected {
            None => {
                ensure!(
                    checksum.events == flow.stats.events,
                    "{scenario}/{}: {} events, but the generator's run saw {}",
                    levels.name(),
                    checksum.events,
                    flow.stats.events
                );
                *expected = Some(outcome);
            }
            Some(first) if *first != outcome => bail!(
                "{scenario}/{} run {run}: not deterministic: {outcome:?}, an earlier run gave {first:?}",
                levels.name()
            ),
            Some(_) => {}
        }
        let rate = flow.commands.len() as f64 / elapsed.as_secs_f64();
        eprintln!(
            "  {scenario}/{} run {run}: {:.3} s, {} commands/s",
            levels.name(),
            elapsed.as_secs_f64(),
            grouped(rate)
        );
        rates.push(rate);
    }
    let latency = if args.no_latency {
        None
    } else {
        let (histogram, checksum) = latency_run::<L>(flow, config)?;
        ensure!(
            Some(checksum) == expected.map(|e| e.checksum),
            "{scenario}/{}: the latency pass produced other events",
            levels.name()
        );
        let latency = Latency::of(&histogram);
        eprintln!(
            "  {scenario}/{} latency: p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
            levels.name(),
            latency.p50_ns,
            latency.p99_ns,
            latency.p999_ns,
            latency.max_ns
        );
        Some(latency)
    };
    Ok(Row {
        scenario,
        levels,
        commands: flow.commands.len(),
        warmup: flow.warmup.len(),
        events: flow.stats.events,
        rates: Rates::of(rates),
        latency,
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    ensure!(args.runs >= 1, "--runs must be at least 1");
    ensure!(args.commands >= 1, "--commands must be at least 1");
    let wall = Instant::now();
    let Machine { nproc, cpu, invoked } = Machine::probe();
    let overhead = Latency::of(&timer_overhead()?);

    let mut rows = Vec::new();
    for scenario in args.scenarios() {
        let started = Instant::now();
        let flow = generate(scenario, args.commands, args.seed);
        eprintln!(
            "{scenario}: generated {} warm-up + {} timed commands (seed {}) in {:.2?}\n{}",
            flow.warmup.len(),
            flow.commands.len(),
            args.seed,
            started.elapsed(),
            flow.stats
        );
        let config = flow_config(&flow);
        let mut expected = None;
        for levels in args.levels() {
            let row = match levels {
                Levels::SortedVec => measure::<SortedVecLevels>(&flow, &config, &args, levels, &mut expected),
                Levels::BTree => measure::<BTreeLevels>(&flow, &config, &args, levels, &mut expected),
                Levels::Ladder => measure::<LadderLevels>(&flow, &config, &args, levels, &mut expected),
                Levels::Radix => measure::<RadixLevels>(&flow, &config, &args, levels, &mut expected),
            }
            .with_context(|| format!("scenario {scenario}"))?;
            rows.push(row);
        }
    }

    if args.json {
        println!(
            "{{\"kind\":\"machine\",\"nproc\":{nproc},\"cpu\":{},\"flags\":{},\"invoked\":{},\"timer_overhead_p50_ns\":{}}}",
            json_string(&cpu),
            json_string(&args.command_line()),
            json_string(&invoked),
            overhead.p50_ns
        );
        for row in &rows {
            let latency = match row.latency {
                Some(l) => l.json(),
                None => "\"p50_ns\":null,\"p99_ns\":null,\"p999_ns\":null,\"max_ns\":null".to_string(),
            };
            println!(
                "{{\"kind\":\"result\",\"scenario\":\"{}\",\"levels\":\"{}\",\"commands\":{},\"warmup\":{},\"runs\":{},\"seed\":{},\"events\":{},{},\"events_per_s\":{:.0},{latency}}}",
                row.scenario,
                row.levels.name(),
                row.commands,
                row.warmup,
                row.rates.len(),
                args.seed,
                row.events,
                row.rates.json("commands_per_s"),
                row.events_per_s(),
            );
        }
    } else {
        println!("machine: {nproc} cpus, {cpu}");
        println!("flags: {}", args.command_line());
        println!("invoked as: {invoked}");
        println!(
            "latency includes one clock read: {} ns at p50 on this machine; commands/s is the median of {} runs, min and max beside it",
            overhead.p50_ns, args.runs
        );
        println!();
        println!(
            "| scenario | levels | commands/s (median of {}) | min | max | events/s | p50 ns | p99 ns | p99.9 ns | max ns |",
            args.runs
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for row in &rows {
            let latency = match row.latency {
                Some(l) => format!("{} | {} | {} | {}", l.p50_ns, l.p99_ns, l.p999_ns, grouped(l.max_ns as f64)),
                None => "- | - | - | -".to_string(),
            };
            println!(
                "| {} | {} | {} | {} | {latency} |",
                row.scenario,
                row.levels.name(),
                row.rates.grouped_cells(),
                grouped(row.events_per_s()),
            );
        }
    }
    eprintln!("wall time {:.1?}", wall.elapsed());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_bench_runs_and_agrees_across_structures() {
        let flow = generate(Scenario::Normal, 5_000, 1);
        let config = Config::default();
        let args = Args {
            scenario: ScenarioChoice::Normal,
            commands: 5_000,
            runs: 2,
            seed: 1,
            levels: LevelsChoice::All,
            json: false,
            no_latency: false,
        };
        let mut expected = None;
        let a = measure::<SortedVecLevels>(&flow, &config, &args, Levels::SortedVec, &mut expected).unwrap();
        let b = measure::<BTreeLevels>(&flow, &config, &args, Levels::BTree, &mut expected).unwrap();
        assert_eq!(a.rates.len(), 2);
        assert_eq!(a.events, b.events);
        assert!(a.latency.is_some() && b.latency.is_some());
    }

    #[test]
    fn all_is_every_scenario_and_hostile_the_new_four() {
        let args = |scenario| Args {
            scenario,
            commands: 1,
            runs: 1,
            seed: 1,
            levels: LevelsChoice::Ladder,
            json: false,
            no_latency: true,
        };
        assert_eq!(args(ScenarioChoice::All).scenarios(), Scenario::EVERY);
        assert_eq!(args(ScenarioChoice::Hostile).scenarios(), Scenario::HOSTILE);
        assert_eq!(args(ScenarioChoice::ClientIds).scenarios(), [Scenario::ClientIds]);
        for scenario in Scenario::EVERY {
            let choice = <ScenarioChoice as clap::ValueEnum>::from_str(scenario.as_str(), false).unwrap();
            assert_eq!(args(choice).scenarios(), [scenario]);
        }
    }

    #[test]
    fn a_small_hostile_bench_agrees_with_its_generator() {
        for scenario in [Scenario::Swing, Scenario::ClientIds] {
            let flow = generate(scenario, 3_000, 1);
            let config = flow_config(&flow);
            let args = Args {
                scenario: ScenarioChoice::Hostile,
                commands: 3_000,
                runs: 1,
                seed: 1,
                levels: LevelsChoice::All,
                json: false,
                no_latency: true,
            };
            let mut expected = None;
            measure::<RadixLevels>(&flow, &config, &args, Levels::Radix, &mut expected).unwrap();
            measure::<LadderLevels>(&flow, &config, &args, Levels::Ladder, &mut expected).unwrap();
            measure::<SortedVecLevels>(&flow, &config, &args, Levels::SortedVec, &mut expected).unwrap();
        }
    }
}
