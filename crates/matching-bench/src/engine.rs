//! `matching-engine bench-engine`: measures the multi-core engine
//! (`matching-pipeline`) end to end, beside the bare core.
//!
//! Every measurement drives the engine from **one client thread** that
//! alternates `try_submit_batch` (never blocks) and `EventReader::poll`
//! (never blocks): every ring is bounded, so the reader must be drained
//! while commands go in, and with one shard this is two threads in all,
//! which fits a 2-core machine. A configuration with `shards` shards runs
//! `shards + 1` busy threads. Every delivered event goes into a checksum
//! (the same fold as `bench`), and the checksum of the merged stream must
//! equal the bare core's on the same commands, or the run is an error, not
//! a number. Engines are started before the clock starts and shut down
//! after it stops; orders and flows are generated before.
//!
//! Three parts (`--part`):
//!
//! - **high-load**: uniform random `gtc` limit orders over N symbols
//!   ([`uniform_orders`]), for each count of orders, symbols and shards;
//!   orders/s from the first submit to the last event delivered, median of
//!   `--runs`, and the scaling against one shard.
//! - **flow**: the realistic multi-symbol flow ([`generate_multi`]) through
//!   1, 2, 4 shards at batch sizes 1, 16, 256, against the bare core (one
//!   `Exchange`, no threads); then wait strategies and pinning at batch 256.
//! - **latency**: open loop, free of coordinated omission: command `i` is
//!   due at `t0 + i / rate`; the client sends it when due (one command per
//!   submit) and polls the reader in between; a command's latency is the
//!   time its last event was delivered minus its *intended* send time, so
//!   a client that falls behind is charged for it. Rates up to saturation
//!   (the closed-loop throughput at batch 1, measured first).
//!
//! Each table is followed by the load other processes put on the machine
//! while it ran (from `/proc/stat`), since the machine is shared.
//! What it shares with `bench` and `bench-durable` is in
//! [`crate::support`].
//!
//! [`generate_multi`]: matching_workload::generate_multi

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure};
use matching_core::{Action, Command, Config, DiscardEvents, NewOrder, Side, Symbol, Tif};
use matching_pipeline::{Engine, EngineConfig, Query, WaitStrategy};
use matching_workload::{MultiFlow, UNIFORM_MID_TICKS, numbered_symbols, uniform_orders};

use crate::support::{
    Checksum, ClientIdle, Latency, LoadBreakdown, LoadMeter, Machine, Prepared, Rates, Report, WARMUP_BATCH,
    bare_rates, bare_run, engine_config, exchange_config, flag_value, grouped, json_string, list, load_average, micros,
    new_histogram, offered_rates, open_loop, prepare, pump, push_flag, wait_name,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Uniform random orders: orders × symbols × shards.
    HighLoad,
    /// The realistic multi-symbol flow: shards × batch sizes against the bare core; wait strategies and pinning.
    Flow,
    /// Open-loop latency at offered rates up to saturation.
    Latency,
    All,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Which part to run.
    #[arg(long, value_enum, default_value_t = Part::All)]
    part: Part,
    /// Runs per configuration (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Seed of the generated orders and flow.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Most commands per submit in the high-load part.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// How engine threads wait (and how the client idles), except in the wait-strategy table.
    #[arg(long, value_enum, default_value_t = WaitStrategy::SpinYield)]
    wait: WaitStrategy,
    /// Pin shard threads to cores (`pin_cores`), except in the pinning table.
    #[arg(long)]
    pin: bool,
    /// High-load part: order counts.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000usize, 10_000, 50_000, 100_000])]
    orders_list: Vec<usize>,
    /// High-load part: symbol counts.
    #[arg(long, value_delimiter = ',', default_values_t = [10usize, 50, 100, 200])]
    symbols_list: Vec<usize>,
    /// High-load part: shard counts (the first is the scaling reference; put 1 first).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2, 4, 8])]
    high_load_shards: Vec<usize>,
    /// Flow and latency parts: symbols of the realistic flow.
    #[arg(long, default_value_t = 50)]
    symbols: usize,
    /// Flow and latency parts: timed commands of the realistic flow (the warm-up comes on top, untimed).
    #[arg(long, default_value_t = 2_000_000)]
    commands: usize,
    /// Flow part: shard counts.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2, 4])]
    shards_list: Vec<usize>,
    /// Flow part: batch sizes (commands per submit).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 256])]
    batch_list: Vec<usize>,
    /// Flow part: skip the table of wait strategies and pinning.
    #[arg(long)]
    no_wait_table: bool,
    /// Latency part: shard counts.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2])]
    latency_shards: Vec<usize>,
    /// Latency part: offered rates, commands/s (those above saturation are skipped; 50%, 80% and 95% of saturation are added).
    #[arg(long, value_delimiter = ',', default_values_t = [100_000u64, 250_000, 500_000, 1_000_000, 2_000_000])]
    rates: Vec<u64>,
    /// Latency part: seconds of flow offered per rate (capped by --commands).
    #[arg(long, default_value_t = 1.0)]
    latency_seconds: f64,
    /// Machine-readable output: one JSON object per line.
    #[arg(long)]
    json: bool,
}

impl Args {
    /// The flags as a command line, every value spelled out.
    fn command_line(&self) -> String {
        let mut line = format!(
            "matching-engine bench-engine --part {} --runs {} --seed {} --batch {} --wait {}{} \
             --orders-list {} --symbols-list {} --high-load-shards {} --symbols {} --commands {} \
             --shards-list {} --batch-list {} --latency-shards {} --rates {} --latency-seconds {}",
            flag_value(&self.part),
            self.runs,
            self.seed,
            self.batch,
            wait_name(self.wait),
            if self.pin { " --pin" } else { "" },
            list(&self.orders_list),
            list(&self.symbols_list),
            list(&self.high_load_shards),
            self.symbols,
            self.commands,
            list(&self.shards_list),
            list(&self.batch_list),
            list(&self.latency_shards),
            list(&self.rates),
            self.latency_seconds,
        );
        push_flag(&mut line, self.no_wait_table, "--no-wait-table");
        push_flag(&mut line, self.json, "--json");
        line
    }

    fn runs(&self, part: Part) -> bool {
        self.part == Part::All || self.part == part
    }

    fn check(&self) -> anyhow::Result<()> {
        ensure!(self.runs >= 1, "--runs must be at least 1");
        ensure!(self.batch >= 1, "--batch must be at least 1");
        ensure!(self.symbols >= 1 && self.commands >= 1, "--symbols and --commands must be at least 1");
        ensure!(self.latency_seconds > 0.0, "--latency-seconds must be positive");
        let shards = self.high_load_shards.iter().chain(&self.shards_list).chain(&self.latency_shards);
        for &s in shards {
            ensure!((1..=matching_pipeline::SHARDS_MAX).contains(&s), "shard counts must be in 1..=64, not {s}");
        }
        ensure!(self.batch_list.iter().all(|&b| b >= 1), "batch sizes must be at least 1");
        ensure!(self.orders_list.iter().all(|&n| n >= 1), "order counts must be at least 1");
        ensure!(self.symbols_list.iter().all(|&n| n >= 1), "symbol counts must be at least 1");
        ensure!(self.rates.iter().all(|&r| r >= 1), "rates must be at least 1/s");
        Ok(())
    }
}

// ----- what every part shares (the rest is in `bench_support`) -----

/// What one engine configuration is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Setup {
    shards: usize,
    batch: usize,
    wait: WaitStrategy,
    pin: bool,
}

impl Setup {
    fn config(&self, exchange: &Config) -> EngineConfig {
        EngineConfig { pin_cores: self.pin, ..engine_config(exchange, self.shards, self.batch, self.wait) }
    }

    /// Busy threads: the shards and the client.
    fn threads(&self) -> usize {
        self.shards + 1
    }

    /// How the client idles in a closed loop: like the engine's threads
    /// (spin, then yield unless busy-spinning), never napping.
    fn idle(&self) -> ClientIdle {
        ClientIdle::Yield(self.wait)
    }

    /// `"shards":…,"threads":…,"batch":…,"wait":"…","pin":…`.
    fn json(&self) -> String {
        format!(
            "\"shards\":{},\"threads\":{},\"batch\":{},\"wait\":\"{}\",\"pin\":{}",
            self.shards,
            self.threads(),
            self.batch,
            wait_name(self.wait),
            self.pin
        )
    }
}

/// Starts an engine, applies `warmup` (untimed), then times `actions`
/// from the first submit to the last event delivered. The engine is shut
/// down after the clock stops.
fn engine_run(
    setup: Setup,
    exchange: &Config,
    warmup: &[Action],
    actions: &[Action],
) -> anyhow::Result<(Duration, Checksum)> {
    let (engine, mut reader) = Engine::<()>::start(setup.config(exchange))?;
    pump(&engine, &mut reader, warmup, WARMUP_BATCH, setup.idle(), &mut DiscardEvents)?;
    ensure!(engine.next_seq() == warmup.len() as u64 + 1, "the warm-up took seqs 1..={}", warmup.len());
    if warmup.is_empty() {
        // A round trip through every shard: their threads are up and
        // waiting before the clock starts (the books are empty: cheap).
        engine.query(Query::State)?;
    }
    let mut sink = Checksum::default();
    let actions = black_box(actions);
    let started = Instant::now();
    pump(&engine, &mut reader, actions, setup.batch, setup.idle(), &mut sink)?;
    let elapsed = started.elapsed();
    engine.shutdown();
    Ok((elapsed, black_box(sink)))
}

/// `runs` engine runs; each must reproduce `expected` (the bare core's checksum).
fn engine_rates(
    setup: Setup,
    exchange: &Config,
    warmup: &[Action],
    actions: &[Action],
    runs: usize,
    expected: Checksum,
    label: &str,
) -> anyhow::Result<Rates> {
    let mut rates = Vec::with_capacity(runs);
    for run in 1..=runs {
        let (elapsed, checksum) = engine_run(setup, exchange, warmup, actions)?;
        if checksum != expected {
            bail!(
                "{label} run {run}: the engine's merged events differ from the bare core's: \
                 {checksum:?}, the core gave {expected:?}"
            );
        }
        let rate = actions.len() as f64 / elapsed.as_secs_f64();
        eprintln!("  {label} run {run}: {:.4} s, {}/s", elapsed.as_secs_f64(), grouped(rate));
        rates.push(rate);
    }
    Ok(Rates::of(rates))
}

// ----- the machine -----

/// The note beside every table of engine runs: busy threads against cores.
fn cores_note(report: &Report) {
    println!(
        "> This machine has {n} cores (nproc = {n}). The engine runs shards + 1 busy threads (each shard, \
         and the one client thread that submits and reads); a row marked † has more busy threads than \
         cores, so they cannot all run at once: its number measures time-sharing by the scheduler, not \
         parallel scaling, and says nothing about what the same shards do on enough cores.",
        n = report.nproc
    );
}

// ----- part a: high load -----

struct HighLoadRow {
    orders: usize,
    symbols: usize,
    setup: Setup,
    rates: Rates,
    bare: f64,
    busiest_share: f64,
}

/// A warm-up that leaves no trace in the books: for each of `shards`
/// shards, `per_shard` `ioc` orders on a symbol of its own (`WARMUP-n`,
/// picked so the router sends it to that shard) that nothing else trades.
/// On an empty book each is accepted and cancelled: two events, nothing
/// rests. It writes every ring of a fresh engine round once, so the first
/// touch of their memory (page faults) happens before the clock starts.
/// Returns the warm-up symbols and commands (`seq` and ids from 1).
fn ring_warmup(shards: usize, per_shard: usize) -> anyhow::Result<(Vec<Symbol>, Vec<Command>)> {
    let (engine, _reader) = Engine::<()>::start(EngineConfig { shards, ..EngineConfig::default() })?;
    let mut by_shard: Vec<Option<Symbol>> = vec![None; shards];
    for i in 0..100_000 {
        if by_shard.iter().all(Option::is_some) {
            break;
        }
        let symbol = Symbol::new(&format!("WARMUP-{i}")).ok_or_else(|| anyhow!("WARMUP-{i} is not a symbol"))?;
        by_shard[engine.shard_of(&symbol)].get_or_insert(symbol);
    }
    engine.shutdown();
    let symbols: Vec<Symbol> = by_shard.into_iter().flatten().collect();
    ensure!(symbols.len() == shards, "no warm-up symbol found for some of {shards} shards");
    let commands = (0..per_shard * shards)
        .map(|i| {
            let id = i as u64 + 1;
            let order = NewOrder::limit(id, 1, symbols[i % shards], Side::Buy, UNIFORM_MID_TICKS, 1).with_tif(Tif::Ioc);
            Command::new(id, Action::New(order))
        })
        .collect();
    Ok((symbols, commands))
}

/// `commands` with `seq` and new orders' ids moved up by `offset` (what
/// the engine gives them after `offset` earlier commands).
fn shifted(commands: &[Command], offset: u64) -> Vec<Command> {
    commands
        .iter()
        .map(|c| {
            let mut action = c.action;
            if let Action::New(order) = &mut action {
                order.order_id += offset;
            }
            Command { seq: c.seq + offset, action, ..*c }
        })
        .collect()
}

fn high_load(args: &Args, report: &Report) -> anyhow::Result<()> {
    let meter = LoadMeter::start();
    let wait: WaitStrategy = args.wait;
    let rings = EngineConfig::default();
    // Enough to write each input ring, and each output ring (two events an order), round once.
    let warmup_per_shard = rings.input_ring.max(rings.output_ring / 2) + 1024;
    let mut rows = Vec::new();
    for &orders in &args.orders_list {
        for &symbols in &args.symbols_list {
            let names = numbered_symbols(symbols);
            let commands = uniform_orders(&names, orders, args.seed);
            let actions: Vec<Action> = commands.iter().map(|c| c.action).collect();
            // The books exist before the clock starts, as on a venue.
            let exchange = Config { instruments: Some(names.clone()), ..exchange_config(orders as u64, 256) };
            let (bare, _) = bare_rates(&exchange, &[], &commands, args.runs)?;
            for &shards in &args.high_load_shards {
                let (warmup_symbols, warmup) = ring_warmup(shards, warmup_per_shard)?;
                let exchange = Config {
                    instruments: Some(names.iter().chain(&warmup_symbols).copied().collect()),
                    ..exchange.clone()
                };
                let (_, expected) = bare_run(&exchange, &warmup, &shifted(&commands, warmup.len() as u64));
                let warmup_actions: Vec<Action> = warmup.iter().map(|c| c.action).collect();
                let order_symbols = commands.iter().filter_map(|c| match c.action {
                    Action::New(order) => Some(order.symbol),
                    _ => None,
                });
                let busiest_share = busiest_share(shards, order_symbols)?;
                let setup = Setup { shards, batch: args.batch, wait, pin: args.pin };
                let label = format!("high-load {orders} orders, {symbols} symbols, {shards} shards");
                let rates = engine_rates(setup, &exchange, &warmup_actions, &actions, args.runs, expected, &label)?;
                rows.push(HighLoadRow { orders, symbols, setup, rates, bare: bare.median(), busiest_share });
            }
        }
    }
    let load = meter.stop();
    // Throughput with the first shard count of the same orders and symbols.
    let reference = |row: &HighLoadRow| {
        rows.iter().find(|r| r.orders == row.orders && r.symbols == row.symbols).map_or(f64::NAN, |r| r.rates.median())
    };
    let first_shards = args.high_load_shards[0];
    if args.json {
        for row in &rows {
            let speedup = row.rates.median() / reference(row);
            println!(
                "{{\"kind\":\"high_load\",\"orders\":{},\"symbols\":{},{},\"runs\":{},\"seed\":{},{},\"speedup\":{:.3},\"efficiency\":{:.3},\"bare_core_orders_per_s\":{:.0},\"busiest_shard_share\":{:.4}}}",
                row.orders,
                row.symbols,
                row.setup.json(),
                args.runs,
                args.seed,
                row.rates.json("orders_per_s"),
                speedup,
                speedup * first_shards as f64 / row.setup.shards as f64,
                row.bare,
                row.busiest_share,
            );
        }
        report.json_load("high_load", load);
        return Ok(());
    }
    println!("## High load: uniform random orders");
    println!();
    println!(
        "`gtc` limit orders on uniformly chosen symbols, random side, price {}±{} ticks (about half cross \
         and trade), qty 1..=100, pregenerated (seed {}). The symbols' books exist from the start \
         (`Config::instruments`). Fresh engine per run; before the clock starts it takes a warm-up that \
         leaves no trace in the books ({} `ioc` orders per shard on a symbol of the shard's own: accepted, \
         cancelled), which writes every ring round once, so the first-touch page faults of a fresh engine's \
         rings are not timed. Timed from the first submit to the last event delivered; batch {}, wait {}, pin {}. orders/s is the median of {} \
         runs. speedup = throughput(P) / throughput({first_shards} shard), efficiency = speedup × \
         {first_shards} / P. Bare core = one `Exchange` on this thread, same orders, no engine. \
         busiest shard = share of the orders whose symbol hashes to the most loaded shard.",
        matching_workload::UNIFORM_MID_TICKS,
        matching_workload::UNIFORM_SPREAD_TICKS,
        args.seed,
        grouped(warmup_per_shard as f64),
        args.batch,
        wait_name(wait),
        args.pin,
        args.runs
    );
    println!();
    println!(
        "| orders | symbols | shards | threads | orders/s (median of {}) | min | max | speedup | efficiency | bare core orders/s | engine / bare | busiest shard |",
        args.runs
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        let speedup = row.rates.median() / reference(row);
        println!(
            "| {} | {} | {} | {}{} | {} | {:.2} | {:.2} | {} | {:.2} | {:.0}% |",
            grouped(row.orders as f64),
            row.symbols,
            row.setup.shards,
            row.setup.threads(),
            report.mark(row.setup.threads()),
            row.rates.grouped_cells(),
            speedup,
            speedup * first_shards as f64 / row.setup.shards as f64,
            grouped(row.bare),
            row.rates.median() / row.bare,
            100.0 * row.busiest_share,
        );
    }
    println!();
    cores_note(report);
    report.load_note(load);
    Ok(())
}

// ----- part b: the realistic flow -----

/// The share of the flow's timed commands that go to the busiest of `shards` shards.
fn flow_busiest_share(flow: &MultiFlow, shards: usize) -> anyhow::Result<f64> {
    busiest_share(shards, flow.command_symbols.iter().map(|&k| flow.symbols[k as usize].symbol))
}

/// The share of commands (given by their symbols) that the engine's
/// router sends to the busiest of `shards` shards.
fn busiest_share(shards: usize, symbols: impl Iterator<Item = Symbol>) -> anyhow::Result<f64> {
    let (engine, _reader) = Engine::<()>::start(EngineConfig { shards, ..EngineConfig::default() })?;
    let mut per_shard = vec![0usize; shards];
    for symbol in symbols {
        per_shard[engine.shard_of(&symbol)] += 1;
    }
    engine.shutdown();
    let total: usize = per_shard.iter().sum();
    Ok(per_shard.iter().copied().max().unwrap_or(0) as f64 / total.max(1) as f64)
}

struct FlowRow {
    setup: Setup,
    rates: Rates,
    busiest_share: f64,
}

fn flow_part(args: &Args, report: &Report, prepared: &Prepared) -> anyhow::Result<()> {
    let Prepared { flow, warmup_actions, actions, exchange } = prepared;
    let meter = LoadMeter::start();
    let (bare, expected) = bare_rates(exchange, &flow.warmup, &flow.commands, args.runs)?;
    ensure!(
        expected.events == flow.events(),
        "the core gave {} events, the generator's runs {}",
        expected.events,
        flow.events()
    );
    eprintln!("  bare core: {}/s (median of {})", grouped(bare.median()), args.runs);
    let wait: WaitStrategy = args.wait;
    let mut rows = Vec::new();
    for &shards in &args.shards_list {
        let busiest_share = flow_busiest_share(flow, shards)?;
        for &batch in &args.batch_list {
            let setup = Setup { shards, batch, wait, pin: args.pin };
            let label = format!("flow {shards} shards, batch {batch}");
            let rates = engine_rates(setup, exchange, warmup_actions, actions, args.runs, expected, &label)?;
            rows.push(FlowRow { setup, rates, busiest_share });
        }
    }
    let load = meter.stop();

    let meter = LoadMeter::start();
    let mut wait_rows = Vec::new();
    let wait_shards: &[usize] = if args.no_wait_table { &[] } else { &args.shards_list };
    for &shards in wait_shards {
        let busiest_share = flow_busiest_share(flow, shards)?;
        for wait in [WaitStrategy::BusySpin, WaitStrategy::SpinYield, WaitStrategy::Park] {
            for pin in [false, true] {
                let setup = Setup { shards, batch: 256, wait, pin };
                let label = format!("flow {shards} shards, {}, pin {pin}", wait_name(wait));
                let rates = engine_rates(setup, exchange, warmup_actions, actions, args.runs, expected, &label)?;
                wait_rows.push(FlowRow { setup, rates, busiest_share });
            }
        }
    }
    let wait_load = meter.stop();

    if args.json {
        let line = |table: &str, row: &FlowRow| {
            println!(
                "{{\"kind\":\"{table}\",\"symbols\":{},\"commands\":{},\"warmup\":{},{},\"runs\":{},\"seed\":{},\"events\":{},{},\"bare_core_commands_per_s\":{:.0},\"engine_over_bare\":{:.3},\"busiest_shard_share\":{:.4}}}",
                flow.symbols.len(),
                flow.commands.len(),
                flow.warmup.len(),
                row.setup.json(),
                args.runs,
                args.seed,
                expected.events,
                row.rates.json("commands_per_s"),
                bare.median(),
                row.rates.median() / bare.median(),
                row.busiest_share,
            );
        };
        prepared.print_bare_core_json("flow_bare_core", args.runs, args.seed, expected.events, &bare);
        rows.iter().for_each(|row| line("flow", row));
        report.json_load("flow", load);
        if !wait_rows.is_empty() {
            wait_rows.iter().for_each(|row| line("flow_wait", row));
            report.json_load("flow_wait", wait_load);
        }
        return Ok(());
    }

    let top = prepared.top_symbol_share();
    println!("## Realistic multi-symbol flow");
    println!();
    println!(
        "`generate_multi({}, {}, {})`: {} symbols with Zipf popularity (the top one {:.1}% of commands), \
         each a `normal` session; {} warm-up commands (untimed) then {} timed commands, {} events. Fresh \
         engine per run, warm-up submitted and drained before the clock starts; timed from the first submit \
         to the last event delivered. Every run's merged events have the bare core's count and checksum \
         ({} events, checksum {:016x}). Bare core = one `Exchange` on this thread, no engine, events into \
         the same checksum. \"busiest shard\" = share of timed commands whose symbol hashes to the most \
         loaded shard (the bound on what sharding can spread).",
        args.symbols,
        args.commands,
        args.seed,
        flow.symbols.len(),
        100.0 * top,
        flow.warmup.len(),
        flow.commands.len(),
        expected.events,
        expected.events,
        expected.hash,
    );
    println!();
    println!(
        "| what | shards | threads | batch | commands/s (median of {}) | min | max | engine / bare | busiest shard |",
        args.runs
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!("| bare core | - | 1 | - | {} | 1.00 | - |", bare.grouped_cells());
    for row in &rows {
        println!(
            "| engine, {}{} | {} | {}{} | {} | {} | {:.2} | {:.0}% |",
            wait_name(row.setup.wait),
            if row.setup.pin { ", pinned" } else { "" },
            row.setup.shards,
            row.setup.threads(),
            report.mark(row.setup.threads()),
            row.setup.batch,
            row.rates.grouped_cells(),
            row.rates.median() / bare.median(),
            100.0 * row.busiest_share,
        );
    }
    println!();
    cores_note(report);
    report.load_note(load);
    if wait_rows.is_empty() {
        return Ok(());
    }

    println!("### Wait strategies and pinning (batch 256, same flow)");
    println!();
    println!(
        "busy-spin: idle threads spin (a core each); spin-yield: spin, then yield to the scheduler; park: \
         spin, yield, then sleep until woken. The client idles like the engine's threads (spin, then yield \
         unless busy-spin). pinned: `pin_cores`, shard i on core (i + 1) mod {}; the client thread is not \
         pinned. Bare core: {}/s.",
        report.nproc,
        grouped(bare.median())
    );
    println!();
    println!("| shards | threads | wait | pinned | commands/s (median of {}) | min | max | engine / bare |", args.runs);
    println!("|---:|---:|---|---|---:|---:|---:|---:|");
    for row in &wait_rows {
        println!(
            "| {} | {}{} | {} | {} | {} | {:.2} |",
            row.setup.shards,
            row.setup.threads(),
            report.mark(row.setup.threads()),
            wait_name(row.setup.wait),
            if row.setup.pin { "yes" } else { "no" },
            row.rates.grouped_cells(),
            row.rates.median() / bare.median(),
        );
    }
    println!();
    cores_note(report);
    report.load_note(wait_load);
    Ok(())
}

// ----- part c: latency -----

struct LatencyRow {
    shards: usize,
    offered: f64,
    saturation: f64,
    commands: usize,
    achieved: f64,
    latency: Latency,
}

/// Besides the given rates (those below saturation), these fractions of
/// saturation are offered.
const SATURATION_FRACTIONS: [f64; 3] = [0.5, 0.8, 0.95];

/// What the machine alone does to threads that do nothing but read the
/// clock: how often consecutive reads are far apart (the thread was not
/// running: an interrupt, the host descheduling the VM's CPU, another
/// thread). No latency measured on the machine can be better than this.
#[derive(Clone, Copy, Debug, Default)]
struct Jitter {
    threads: usize,
    seconds: f64,
    /// Gaps longer than 10 µs, 100 µs and 1 ms, per second per thread.
    over_10us_per_s: f64,
    over_100us_per_s: f64,
    over_1ms_per_s: f64,
    /// The longest gap seen.
    max_ns: u64,
    /// Share of the time lost in gaps longer than 1 µs.
    lost: f64,
}

/// Runs `threads` threads that read the clock for `seconds` each (at the same time).
fn machine_jitter(threads: usize, seconds: f64) -> Jitter {
    let one = || {
        let (mut counts, mut max_ns, mut lost_ns) = ([0u64; 3], 0u64, 0u64);
        let start = Instant::now();
        let mut last = start;
        loop {
            let now = Instant::now();
            let gap = now.duration_since(last).as_nanos() as u64;
            last = now;
            if gap > 1_000 {
                lost_ns += gap;
                for (count, bound) in counts.iter_mut().zip([10_000, 100_000, 1_000_000]) {
                    *count += (gap > bound) as u64;
                }
                max_ns = max_ns.max(gap);
            }
            if now.duration_since(start).as_secs_f64() >= seconds {
                return (counts, max_ns, lost_ns);
            }
        }
    };
    let results: Vec<([u64; 3], u64, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(one)).collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let per_s = |i: usize| results.iter().map(|r| r.0[i]).sum::<u64>() as f64 / (threads as f64 * seconds);
    Jitter {
        threads,
        seconds,
        over_10us_per_s: per_s(0),
        over_100us_per_s: per_s(1),
        over_1ms_per_s: per_s(2),
        max_ns: results.iter().map(|r| r.1).max().unwrap_or(0),
        lost: results.iter().map(|r| r.2).sum::<u64>() as f64 / (threads as f64 * seconds * 1e9),
    }
}

fn latency_part(args: &Args, report: &Report, prepared: &Prepared) -> anyhow::Result<()> {
    let Prepared { flow, warmup_actions, actions, exchange } = prepared;
    let wait: WaitStrategy = args.wait;
    let meter = LoadMeter::start();
    let jitter = machine_jitter(report.nproc.max(1), args.latency_seconds.min(1.0));
    let mut saturations = Vec::new();
    let mut rows = Vec::new();
    for &shards in &args.latency_shards {
        let setup = Setup { shards, batch: 1, wait, pin: args.pin };
        let (_, expected) = bare_run(exchange, &flow.warmup, &flow.commands);
        let label = format!("saturation {shards} shards, batch 1");
        let saturation = engine_rates(setup, exchange, warmup_actions, actions, args.runs, expected, &label)?;
        let saturation = saturation.median();
        saturations.push((setup, saturation));
        for offered in offered_rates(&args.rates, &SATURATION_FRACTIONS, saturation) {
            let n = ((offered * args.latency_seconds) as usize).clamp(1, actions.len());
            let (_, expected) = bare_run(exchange, &flow.warmup, &flow.commands[..n]);
            let mut histogram = new_histogram()?;
            let (engine, mut reader) = Engine::<()>::start(setup.config(exchange))?;
            pump(&engine, &mut reader, warmup_actions, WARMUP_BATCH, setup.idle(), &mut DiscardEvents)?;
            let mut sink = Checksum::default();
            // The client never idles in the open loop: it polls flat out.
            let idle = ClientIdle::Poll;
            let elapsed = open_loop(&engine, &mut reader, &actions[..n], offered, idle, &mut histogram, &mut sink)?;
            engine.shutdown();
            ensure!(
                sink == expected,
                "latency {shards} shards at {offered}/s: the merged events differ from the bare core's"
            );
            let row = LatencyRow {
                shards,
                offered,
                saturation,
                commands: n,
                achieved: n as f64 / elapsed.as_secs_f64(),
                latency: Latency::of(&histogram),
            };
            eprintln!(
                "  latency {shards} shards at {}/s: achieved {}/s, {}",
                grouped(offered),
                grouped(row.achieved),
                row.latency.micros_text()
            );
            rows.push(row);
        }
    }
    let load = meter.stop();

    // The target: p99 under 10 µs at half of saturation.
    let target = |shards: usize| {
        rows.iter()
            .find(|r| r.shards == shards && (r.offered / r.saturation - 0.5).abs() < 0.01)
            .map(|r| r.latency.p99_ns)
    };
    if args.json {
        for (setup, saturation) in &saturations {
            println!(
                "{{\"kind\":\"saturation\",{},\"runs\":{},\"commands_per_s_median\":{saturation:.0},\"p99_at_half_ns\":{},\"target_met\":{}}}",
                setup.json(),
                args.runs,
                target(setup.shards).map_or("null".to_string(), |p| p.to_string()),
                target(setup.shards).is_some_and(|p| p < 10_000),
            );
        }
        for r in &rows {
            println!(
                "{{\"kind\":\"latency\",\"shards\":{},\"threads\":{},\"wait\":\"{}\",\"pin\":{},\"offered_per_s\":{:.0},\"saturation_per_s\":{:.0},\"commands\":{},\"achieved_per_s\":{:.0},{}}}",
                r.shards,
                r.shards + 1,
                wait_name(wait),
                args.pin,
                r.offered,
                r.saturation,
                r.commands,
                r.achieved,
                r.latency.json()
            );
        }
        println!(
            "{{\"kind\":\"jitter\",\"threads\":{},\"seconds\":{:.1},\"gaps_over_10us_per_s\":{:.1},\"gaps_over_100us_per_s\":{:.1},\"gaps_over_1ms_per_s\":{:.2},\"gap_max_ns\":{},\"time_lost\":{:.4}}}",
            jitter.threads,
            jitter.seconds,
            jitter.over_10us_per_s,
            jitter.over_100us_per_s,
            jitter.over_1ms_per_s,
            jitter.max_ns,
            jitter.lost
        );
        report.json_load("latency", load);
        return Ok(());
    }
    println!("## Latency through the engine (open loop)");
    println!();
    println!(
        "The realistic flow above; fresh engine per rate, warm-up drained first. Command i is due at \
         t0 + i / rate; the one client thread sends each command when due, alone (batch 1), and polls the \
         reader between sends. Latency = time the command's last event was delivered by the reader − its \
         intended send time (so time the client spent behind schedule counts: no coordinated omission); \
         it includes the client's own sending and polling. {} s of flow per rate (at most {} commands). \
         Saturation = closed-loop throughput at batch 1 (median of {} runs). wait {}, pin {}.",
        args.latency_seconds,
        grouped(actions.len() as f64),
        args.runs,
        wait_name(wait),
        args.pin
    );
    println!();
    println!(
        "| shards | threads | offered/s | of saturation | commands | achieved/s | p50 µs | p99 µs | p99.9 µs | max µs |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {}{} | {} | {:.0}% | {} | {} | {} |",
            r.shards,
            r.shards + 1,
            report.mark(r.shards + 1),
            grouped(r.offered),
            100.0 * r.offered / r.saturation,
            grouped(r.commands as f64),
            grouped(r.achieved),
            r.latency.micros_cells(),
        );
    }
    println!();
    println!(
        "- The machine's own floor: {} threads that only read the clock for {:.0} s saw gaps > 10 µs {:.0} \
         times a second each, > 100 µs {:.1}/s, > 1 ms {:.2}/s, the longest {} µs ({:.2}% of the time lost \
         in gaps > 1 µs). A command in flight during such a gap waits it out, whatever the engine does.",
        jitter.threads,
        jitter.seconds,
        jitter.over_10us_per_s,
        jitter.over_100us_per_s,
        jitter.over_1ms_per_s,
        micros(jitter.max_ns),
        100.0 * jitter.lost
    );
    for &(Setup { shards, .. }, saturation) in &saturations {
        let verdict = match target(shards) {
            Some(p99) if p99 < 10_000 => format!("met (p99 {} µs)", micros(p99)),
            Some(p99) => format!("NOT met (p99 {} µs)", micros(p99)),
            None => "not measured".to_string(),
        };
        println!(
            "- {shards} shard(s): saturation {}/s at batch 1; target p99 < 10 µs at half of saturation ({}/s): {verdict}",
            grouped(saturation),
            grouped(saturation / 2.0),
        );
    }
    println!();
    cores_note(report);
    report.load_note(load);
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    args.check()?;
    let wall = Instant::now();
    let Machine { nproc, cpu, invoked } = Machine::probe();
    let report = Report { nproc, json: args.json, breakdown: LoadBreakdown::Busy };
    if args.json {
        println!(
            "{{\"kind\":\"machine\",\"nproc\":{nproc},\"cpu\":{},\"flags\":{},\"invoked\":{},\"load_average\":{}}}",
            json_string(&cpu),
            json_string(&args.command_line()),
            json_string(&invoked),
            json_string(&load_average()),
        );
    } else {
        println!("# bench-engine");
        println!();
        println!("- machine: nproc = {nproc}, {cpu}");
        println!("- flags: `{}`", args.command_line());
        println!("- invoked as: `{invoked}`");
        println!("- load average at start: {}", load_average());
        println!();
    }
    if args.runs(Part::HighLoad) {
        high_load(&args, &report)?;
    }
    if args.runs(Part::Flow) || args.runs(Part::Latency) {
        let prepared = prepare(args.symbols, args.commands, args.seed);
        if args.runs(Part::Flow) {
            flow_part(&args, &report, &prepared)?;
        }
        if args.runs(Part::Latency) {
            latency_part(&args, &report, &prepared)?;
        }
    }
    let wall = wall.elapsed();
    if report.json {
        println!("{{\"kind\":\"wall_time\",\"seconds\":{:.1}}}", wall.as_secs_f64());
    } else {
        println!("wall time {:.1} s", wall.as_secs_f64());
    }
    eprintln!("wall time {:.1?}", wall);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::intended_ns;

    fn small_args() -> Args {
        Args {
            part: Part::All,
            runs: 1,
            seed: 3,
            batch: 16,
            wait: WaitStrategy::SpinYield,
            pin: false,
            orders_list: vec![500],
            symbols_list: vec![4],
            high_load_shards: vec![1, 2],
            symbols: 4,
            commands: 3_000,
            shards_list: vec![1, 2],
            batch_list: vec![1, 64],
            latency_shards: vec![2],
            rates: vec![50_000],
            latency_seconds: 0.01,
            no_wait_table: false,
            json: false,
        }
    }

    #[test]
    fn the_engine_delivers_the_core_s_events_at_every_batch_and_shard_count() {
        let args = small_args();
        let prepared = prepare(args.symbols, args.commands, args.seed);
        let (_, expected) = bare_run(&prepared.exchange, &prepared.flow.warmup, &prepared.flow.commands);
        for shards in [1, 3] {
            for batch in [1, 7, 300] {
                for wait in [WaitStrategy::SpinYield, WaitStrategy::Park] {
                    let setup = Setup { shards, batch, wait, pin: false };
                    let (_, checksum) =
                        engine_run(setup, &prepared.exchange, &prepared.warmup_actions, &prepared.actions).unwrap();
                    assert_eq!(checksum, expected, "{setup:?} (seed {})", args.seed);
                }
            }
        }
    }

    #[test]
    fn the_open_loop_records_every_command_once() {
        let args = small_args();
        let prepared = prepare(args.symbols, args.commands, args.seed);
        let setup = Setup { shards: 2, batch: 1, wait: WaitStrategy::SpinYield, pin: false };
        let (engine, mut reader) = Engine::<()>::start(setup.config(&prepared.exchange)).unwrap();
        pump(&engine, &mut reader, &prepared.warmup_actions, WARMUP_BATCH, setup.idle(), &mut DiscardEvents).unwrap();
        let mut histogram = new_histogram().unwrap();
        let mut sink = Checksum::default();
        let (actions, idle) = (&prepared.actions, ClientIdle::Poll);
        let elapsed = open_loop(&engine, &mut reader, actions, 1e6, idle, &mut histogram, &mut sink).unwrap();
        engine.shutdown();
        assert_eq!(histogram.len(), prepared.actions.len() as u64);
        let (_, expected) = bare_run(&prepared.exchange, &prepared.flow.warmup, &prepared.flow.commands);
        assert_eq!(sink, expected);
        // 3,000 commands offered at 1M/s cannot finish before the last is due.
        assert!(elapsed >= Duration::from_nanos(intended_ns(2_999, 1e3)));
    }

    #[test]
    fn offered_rates_stay_below_saturation_and_add_fractions() {
        let rates = offered_rates(&[100_000, 1_000_000, 5_000_000], &SATURATION_FRACTIONS, 2_000_000.0);
        assert_eq!(rates, vec![100_000.0, 1_000_000.0, 1_600_000.0, 1_900_000.0]);
    }

    #[test]
    fn every_part_runs_small() {
        run(small_args()).unwrap();
        run(Args { json: true, ..small_args() }).unwrap();
    }
}
