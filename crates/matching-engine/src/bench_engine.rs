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

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure};
use hdrhistogram::Histogram;
use matching_core::{
    Action, Command, Config, DiscardEvents, Event, EventKind, EventSink, Exchange, NewOrder, Side, Symbol, Tif,
};
use matching_pipeline::{Engine, EngineConfig, EventReader, Output, Query, WaitStrategy};
use matching_workload::{MultiFlow, UNIFORM_MID_TICKS, generate_multi, numbered_symbols, uniform_orders};

use crate::replay::WaitChoice;

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
    #[arg(long, value_enum, default_value_t = WaitChoice::SpinYield)]
    wait: WaitChoice,
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

fn wait_name(wait: WaitStrategy) -> &'static str {
    match wait {
        WaitStrategy::BusySpin => "busy-spin",
        WaitStrategy::SpinYield => "spin-yield",
        WaitStrategy::Park => "park",
    }
}

fn list<T: ToString>(values: &[T]) -> String {
    values.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

impl Args {
    /// The flags as a command line, every value spelled out.
    fn command_line(&self) -> String {
        let part = match self.part {
            Part::HighLoad => "high-load",
            Part::Flow => "flow",
            Part::Latency => "latency",
            Part::All => "all",
        };
        let mut line = format!(
            "matching-engine bench-engine --part {part} --runs {} --seed {} --batch {} --wait {}{} \
             --orders-list {} --symbols-list {} --high-load-shards {} --symbols {} --commands {} \
             --shards-list {} --batch-list {} --latency-shards {} --rates {} --latency-seconds {}",
            self.runs,
            self.seed,
            self.batch,
            wait_name(self.wait.into()),
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
        if self.no_wait_table {
            line.push_str(" --no-wait-table");
        }
        if self.json {
            line.push_str(" --json");
        }
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

// ----- what every part shares -----

/// Folds every event into a count and a hash: the same fold as `bench`'s,
/// so the optimiser must produce every event, and two streams with equal
/// checksums are (but for a 64-bit collision) the same events in the same order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Checksum {
    events: u64,
    hash: u64,
}

impl EventSink for Checksum {
    #[inline]
    fn event(&mut self, event: &Event) {
        let value = match event.kind {
            EventKind::Accepted { order_id, qty, price, .. } => {
                1 ^ order_id << 8 ^ qty.rotate_left(40) ^ price.unwrap_or(0).rotate_left(20)
            }
            EventKind::Rejected { reason, order_id } => 2 ^ (reason as u64) << 4 ^ order_id.unwrap_or(0) << 8,
            EventKind::Trade(t) => {
                3 ^ t.maker_order_id << 8
                    ^ t.taker_order_id.rotate_left(24)
                    ^ t.qty.rotate_left(44)
                    ^ t.price.rotate_left(12)
                    ^ t.maker_remaining.rotate_left(52)
                    ^ t.trade_id.rotate_left(32)
            }
            EventKind::Cancelled { order_id, reason, remaining } => {
                4 ^ (reason as u64) << 4 ^ order_id << 8 ^ remaining.rotate_left(40)
            }
            EventKind::Modified { order_id, price, qty } => {
                5 ^ order_id << 8 ^ price.rotate_left(20) ^ qty.rotate_left(40)
            }
        };
        self.events += 1;
        self.hash = (self.hash ^ value ^ event.seq.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(27);
    }
}

/// How the client thread idles when it could neither submit nor deliver:
/// like the engine's threads, spin, then (unless busy-spinning) yield.
struct Idle {
    strategy: WaitStrategy,
    step: u32,
}

/// Spins before the client yields.
const IDLE_SPINS: u32 = 64;

impl Idle {
    fn new(strategy: WaitStrategy) -> Idle {
        Idle { strategy, step: 0 }
    }

    #[inline]
    fn wait(&mut self) {
        self.step = self.step.saturating_add(1);
        if self.strategy == WaitStrategy::BusySpin || self.step <= IDLE_SPINS {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }

    #[inline]
    fn reset(&mut self) {
        self.step = 0;
    }
}

/// Submits `actions` at most `batch` per call and drains the reader in
/// between, on this one thread, until every event of them is delivered.
/// Allocates nothing.
#[inline(never)]
fn pump<S: EventSink>(
    engine: &Engine,
    reader: &mut EventReader<()>,
    actions: &[Action],
    batch: usize,
    wait: WaitStrategy,
    sink: &mut S,
) {
    let mut idle = Idle::new(wait);
    let mut deliver = |output: Output<'_, ()>| {
        if let Output::Event(event) = output {
            sink.event(event);
        }
    };
    let mut done = 0;
    while done < actions.len() {
        let end = (done + batch).min(actions.len());
        let (taken, _) = engine.try_submit_batch(&actions[done..end]);
        done += taken;
        let delivered = reader.poll(&mut deliver);
        if taken == 0 && delivered == 0 {
            idle.wait();
        } else {
            idle.reset();
        }
    }
    let last = engine.next_seq();
    while reader.next_seq() < last {
        if reader.poll(&mut deliver) == 0 {
            idle.wait();
        } else {
            idle.reset();
        }
    }
}

/// Warm-up commands go in this many at a time (untimed).
const WARMUP_BATCH: usize = 4096;

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
        let defaults = EngineConfig::default();
        EngineConfig {
            shards: self.shards,
            exchange: exchange.clone(),
            batch_max: defaults.batch_max.max(self.batch),
            wait: self.wait,
            pin_cores: self.pin,
            ..defaults
        }
    }

    /// Busy threads: the shards and the client.
    fn threads(&self) -> usize {
        self.shards + 1
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
    pump(&engine, &mut reader, warmup, WARMUP_BATCH, setup.wait, &mut DiscardEvents);
    ensure!(engine.next_seq() == warmup.len() as u64 + 1, "the warm-up took seqs 1..={}", warmup.len());
    if warmup.is_empty() {
        // A round trip through every shard: their threads are up and
        // waiting before the clock starts (the books are empty: cheap).
        engine.query(Query::State);
    }
    let mut sink = Checksum::default();
    let actions = black_box(actions);
    let started = Instant::now();
    pump(&engine, &mut reader, actions, setup.batch, setup.wait, &mut sink);
    let elapsed = started.elapsed();
    engine.shutdown();
    Ok((elapsed, black_box(sink)))
}

/// The bare core: one `Exchange`, no threads; warm-up untimed, then
/// `process` over `commands` with one clock read before and one after.
#[inline(never)]
fn bare_run(exchange: &Config, warmup: &[Command], commands: &[Command]) -> (Duration, Checksum) {
    let mut core: Exchange = Exchange::new(exchange.clone());
    core.process_all(warmup, &mut DiscardEvents);
    let mut sink = Checksum::default();
    let commands = black_box(commands);
    let started = Instant::now();
    for command in commands {
        core.process(command, &mut sink);
    }
    let elapsed = started.elapsed();
    (elapsed, black_box(sink))
}

/// Rates over runs, ascending.
#[derive(Clone, Debug)]
struct Rates(Vec<f64>);

impl Rates {
    fn of(mut rates: Vec<f64>) -> Rates {
        rates.sort_by(f64::total_cmp);
        Rates(rates)
    }

    fn median(&self) -> f64 {
        let n = self.0.len();
        if n % 2 == 1 { self.0[n / 2] } else { (self.0[n / 2 - 1] + self.0[n / 2]) / 2.0 }
    }

    fn min(&self) -> f64 {
        self.0[0]
    }

    fn max(&self) -> f64 {
        self.0[self.0.len() - 1]
    }
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

fn bare_rates(exchange: &Config, warmup: &[Command], commands: &[Command], runs: usize) -> (Rates, Checksum) {
    let mut rates = Vec::with_capacity(runs);
    let mut first = None;
    for _ in 0..runs {
        let (elapsed, checksum) = bare_run(exchange, warmup, commands);
        assert!(first.is_none_or(|f| f == checksum), "Invariant: the core is deterministic");
        first = Some(checksum);
        rates.push(commands.len() as f64 / elapsed.as_secs_f64());
    }
    (Rates::of(rates), first.expect("at least one run"))
}

// ----- the machine and its load -----

/// CPU time counters, to tell how busy other processes kept the machine.
#[derive(Clone, Copy, Debug)]
struct CpuTimes {
    at: Instant,
    /// Busy jiffies of the whole machine (all CPUs), steal excluded.
    busy: u64,
    /// Jiffies the hypervisor gave to others while this VM wanted to run.
    steal: u64,
    /// Jiffies of this process (all its threads, living or joined).
    ours: u64,
}

/// `USER_HZ`: the unit of `/proc/stat`, 100 on every Linux ABI.
const JIFFIES_PER_S: f64 = 100.0;

impl CpuTimes {
    fn now() -> Option<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
        // user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
        let field = |i: usize| cpu.get(i).copied().unwrap_or(0);
        let busy = field(0) + field(1) + field(2) + field(5) + field(6);
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        let after_name = &own[own.rfind(')')? + 1..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // Fields 14 and 15 of the line (utime, stime) are 11 and 12 after the name.
        let ours = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(CpuTimes { at: Instant::now(), busy, steal: field(7), ours })
    }
}

/// What other processes (and the hypervisor) took while a table ran.
#[derive(Clone, Copy, Debug)]
struct Load {
    /// Cores kept busy by other processes, on average.
    others_cores: f64,
    /// Cores taken by the hypervisor (steal), on average.
    steal_cores: f64,
    seconds: f64,
}

struct LoadMeter(Option<CpuTimes>);

impl LoadMeter {
    fn start() -> LoadMeter {
        LoadMeter(CpuTimes::now())
    }

    fn stop(&self) -> Option<Load> {
        let (a, b) = (self.0?, CpuTimes::now()?);
        let seconds = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
        let others = (b.busy - a.busy).saturating_sub(b.ours - a.ours) as f64 / JIFFIES_PER_S;
        Some(Load {
            others_cores: others / seconds,
            steal_cores: (b.steal - a.steal) as f64 / JIFFIES_PER_S / seconds,
            seconds,
        })
    }
}

fn cpu_model() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_string())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Prints the notes that go beside every table: the cores, and the load.
struct Report {
    nproc: usize,
    json: bool,
}

impl Report {
    /// Marks a configuration with more busy threads than cores.
    fn mark(&self, threads: usize) -> &'static str {
        if threads > self.nproc { " †" } else { "" }
    }

    fn cores_note(&self) {
        println!(
            "> This machine has {n} cores (nproc = {n}). The engine runs shards + 1 busy threads (each shard, \
             and the one client thread that submits and reads); a row marked † has more busy threads than \
             cores, so they cannot all run at once: its number measures time-sharing by the scheduler, not \
             parallel scaling, and says nothing about what the same shards do on enough cores.",
            n = self.nproc
        );
    }

    fn load_note(&self, load: Option<Load>) {
        match load {
            Some(l) if l.seconds < 1.0 => println!(
                "> Load while this table ran: not measured (it took {:.2} s; /proc/stat counts in 10 ms ticks).",
                l.seconds
            ),
            Some(l) => println!(
                "> Load while this table ran ({:.0} s): other processes kept {:.2} cores busy on average, \
                 the hypervisor stole {:.2} cores.",
                l.seconds, l.others_cores, l.steal_cores
            ),
            None => println!("> Load while this table ran: unknown (no /proc)."),
        }
        println!();
    }

    fn json_load(&self, table: &str, load: Option<Load>) {
        if let Some(l) = load {
            println!(
                "{{\"kind\":\"load\",\"table\":\"{table}\",\"seconds\":{:.1},\"others_cores\":{:.3},\"steal_cores\":{:.3}}}",
                l.seconds, l.others_cores, l.steal_cores
            );
        }
    }
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

fn exchange_config(orders_preallocated: u64, levels_preallocated: usize) -> Config {
    Config {
        orders_preallocated: (orders_preallocated as usize).max(1 << 16),
        levels_preallocated,
        ..Config::default()
    }
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
    let wait: WaitStrategy = args.wait.into();
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
            let (bare, _) = bare_rates(&exchange, &[], &commands, args.runs);
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
                "{{\"kind\":\"high_load\",\"orders\":{},\"symbols\":{},\"shards\":{},\"threads\":{},\"batch\":{},\"wait\":\"{}\",\"pin\":{},\"runs\":{},\"seed\":{},\"orders_per_s_median\":{:.0},\"orders_per_s_min\":{:.0},\"orders_per_s_max\":{:.0},\"speedup\":{:.3},\"efficiency\":{:.3},\"bare_core_orders_per_s\":{:.0},\"busiest_shard_share\":{:.4}}}",
                row.orders,
                row.symbols,
                row.setup.shards,
                row.setup.threads(),
                row.setup.batch,
                wait_name(row.setup.wait),
                row.setup.pin,
                args.runs,
                args.seed,
                row.rates.median(),
                row.rates.min(),
                row.rates.max(),
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
            "| {} | {} | {} | {}{} | {} | {} | {} | {:.2} | {:.2} | {} | {:.2} | {:.0}% |",
            grouped(row.orders as f64),
            row.symbols,
            row.setup.shards,
            row.setup.threads(),
            report.mark(row.setup.threads()),
            grouped(row.rates.median()),
            grouped(row.rates.min()),
            grouped(row.rates.max()),
            speedup,
            speedup * first_shards as f64 / row.setup.shards as f64,
            grouped(row.bare),
            row.rates.median() / row.bare,
            100.0 * row.busiest_share,
        );
    }
    println!();
    report.cores_note();
    report.load_note(load);
    Ok(())
}

// ----- part b: the realistic flow -----

/// The realistic flow, as the engine and the core take it.
struct Prepared {
    flow: MultiFlow,
    warmup_actions: Vec<Action>,
    actions: Vec<Action>,
    exchange: Config,
}

fn prepare(args: &Args) -> Prepared {
    let started = Instant::now();
    let flow = generate_multi(args.symbols, args.commands, args.seed);
    eprintln!("generated the multi-symbol flow in {:.2?}\n{flow}", started.elapsed());
    let warmup_actions = flow.warmup.iter().map(|c| c.action).collect();
    let actions = flow.commands.iter().map(|c| c.action).collect();
    let exchange = exchange_config(flow.resting_max() + flow.resting_max() / 4, 1024);
    Prepared { flow, warmup_actions, actions, exchange }
}

impl Prepared {
    /// The share of timed commands that go to the busiest of `shards` shards.
    fn busiest_share(&self, shards: usize) -> anyhow::Result<f64> {
        let symbols = self.flow.command_symbols.iter().map(|&k| self.flow.symbols[k as usize].symbol);
        busiest_share(shards, symbols)
    }
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
    let (bare, expected) = bare_rates(exchange, &flow.warmup, &flow.commands, args.runs);
    ensure!(
        expected.events == flow.events(),
        "the core gave {} events, the generator's runs {}",
        expected.events,
        flow.events()
    );
    eprintln!("  bare core: {}/s (median of {})", grouped(bare.median()), args.runs);
    let wait: WaitStrategy = args.wait.into();
    let mut rows = Vec::new();
    for &shards in &args.shards_list {
        let busiest_share = prepared.busiest_share(shards)?;
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
        let busiest_share = prepared.busiest_share(shards)?;
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
                "{{\"kind\":\"{table}\",\"symbols\":{},\"commands\":{},\"warmup\":{},\"shards\":{},\"threads\":{},\"batch\":{},\"wait\":\"{}\",\"pin\":{},\"runs\":{},\"seed\":{},\"events\":{},\"commands_per_s_median\":{:.0},\"commands_per_s_min\":{:.0},\"commands_per_s_max\":{:.0},\"bare_core_commands_per_s\":{:.0},\"engine_over_bare\":{:.3},\"busiest_shard_share\":{:.4}}}",
                flow.symbols.len(),
                flow.commands.len(),
                flow.warmup.len(),
                row.setup.shards,
                row.setup.threads(),
                row.setup.batch,
                wait_name(row.setup.wait),
                row.setup.pin,
                args.runs,
                args.seed,
                expected.events,
                row.rates.median(),
                row.rates.min(),
                row.rates.max(),
                bare.median(),
                row.rates.median() / bare.median(),
                row.busiest_share,
            );
        };
        println!(
            "{{\"kind\":\"flow_bare_core\",\"symbols\":{},\"commands\":{},\"warmup\":{},\"runs\":{},\"seed\":{},\"events\":{},\"commands_per_s_median\":{:.0},\"commands_per_s_min\":{:.0},\"commands_per_s_max\":{:.0}}}",
            flow.symbols.len(),
            flow.commands.len(),
            flow.warmup.len(),
            args.runs,
            args.seed,
            expected.events,
            bare.median(),
            bare.min(),
            bare.max()
        );
        rows.iter().for_each(|row| line("flow", row));
        report.json_load("flow", load);
        if !wait_rows.is_empty() {
            wait_rows.iter().for_each(|row| line("flow_wait", row));
            report.json_load("flow_wait", wait_load);
        }
        return Ok(());
    }

    let top = flow.symbols.first().map_or(0.0, |s| s.commands as f64 / flow.commands.len() as f64);
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
    println!(
        "| bare core | - | 1 | - | {} | {} | {} | 1.00 | - |",
        grouped(bare.median()),
        grouped(bare.min()),
        grouped(bare.max())
    );
    for row in &rows {
        println!(
            "| engine, {}{} | {} | {}{} | {} | {} | {} | {} | {:.2} | {:.0}% |",
            wait_name(row.setup.wait),
            if row.setup.pin { ", pinned" } else { "" },
            row.setup.shards,
            row.setup.threads(),
            report.mark(row.setup.threads()),
            row.setup.batch,
            grouped(row.rates.median()),
            grouped(row.rates.min()),
            grouped(row.rates.max()),
            row.rates.median() / bare.median(),
            100.0 * row.busiest_share,
        );
    }
    println!();
    report.cores_note();
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
            "| {} | {}{} | {} | {} | {} | {} | {} | {:.2} |",
            row.setup.shards,
            row.setup.threads(),
            report.mark(row.setup.threads()),
            wait_name(row.setup.wait),
            if row.setup.pin { "yes" } else { "no" },
            grouped(row.rates.median()),
            grouped(row.rates.min()),
            grouped(row.rates.max()),
            row.rates.median() / bare.median(),
        );
    }
    println!();
    report.cores_note();
    report.load_note(wait_load);
    Ok(())
}

// ----- part c: latency -----

/// Most due commands sent before the client polls the reader again, so a
/// client that is behind still notices deliveries promptly.
const SEND_BURST_MAX: usize = 16;

/// The intended send time of command `i` at `period_ns` per command.
#[inline]
fn intended_ns(i: usize, period_ns: f64) -> u64 {
    (i as f64 * period_ns) as u64
}

/// Offers `actions` open loop at `rate` commands/s, one command per
/// submit, polling the reader between sends; records each command's
/// (delivery of its last event − intended send time). Allocates nothing.
/// Returns the time from the first intended send to the last delivery.
#[inline(never)]
fn open_loop<S: EventSink>(
    engine: &Engine,
    reader: &mut EventReader<()>,
    actions: &[Action],
    rate: f64,
    histogram: &mut Histogram<u64>,
    sink: &mut S,
) -> Duration {
    let period_ns = 1e9 / rate;
    let first_seq = reader.next_seq();
    debug_assert_eq!(first_seq, engine.next_seq(), "Invariant: nothing is in flight before the clock starts");
    let n = actions.len();
    let mut deliver = |output: Output<'_, ()>| {
        if let Output::Event(event) = output {
            sink.event(event);
        }
    };
    let (mut sent, mut done) = (0usize, 0usize);
    let t0 = Instant::now();
    while done < n {
        let now_ns = t0.elapsed().as_nanos() as u64;
        let mut burst = 0;
        while sent < n && burst < SEND_BURST_MAX && intended_ns(sent, period_ns) <= now_ns {
            let (taken, _) = engine.try_submit_batch(&actions[sent..sent + 1]);
            if taken == 0 {
                break;
            }
            sent += 1;
            burst += 1;
        }
        if reader.poll(&mut deliver) > 0 {
            let completed = (reader.next_seq() - first_seq) as usize;
            if completed > done {
                let delivered_ns = t0.elapsed().as_nanos() as u64;
                for i in done..completed {
                    histogram.saturating_record(delivered_ns.saturating_sub(intended_ns(i, period_ns)).max(1));
                }
                done = completed;
            }
        }
    }
    t0.elapsed()
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    // 1 ns to 60 s at 3 significant digits; allocated once, before the clock starts.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| anyhow!("histogram: {e:?}"))
}

struct LatencyRow {
    shards: usize,
    offered: f64,
    saturation: f64,
    commands: usize,
    achieved: f64,
    p50_ns: u64,
    p99_ns: u64,
    p999_ns: u64,
    max_ns: u64,
}

/// The offered rates for a saturation: the given ones below it, and 50%,
/// 80% and 95% of it; ascending.
fn offered_rates(given: &[u64], saturation: f64) -> Vec<f64> {
    let mut rates: Vec<f64> = given.iter().map(|&r| r as f64).filter(|&r| r < saturation).collect();
    rates.extend([0.5, 0.8, 0.95].map(|f| (f * saturation / 1000.0).round() * 1000.0));
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    rates
}

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
    let wait: WaitStrategy = args.wait.into();
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
        saturations.push((shards, saturation));
        for offered in offered_rates(&args.rates, saturation) {
            let n = ((offered * args.latency_seconds) as usize).clamp(1, actions.len());
            let (_, expected) = bare_run(exchange, &flow.warmup, &flow.commands[..n]);
            let mut histogram = new_histogram()?;
            let (engine, mut reader) = Engine::<()>::start(setup.config(exchange))?;
            pump(&engine, &mut reader, warmup_actions, WARMUP_BATCH, wait, &mut DiscardEvents);
            let mut sink = Checksum::default();
            let elapsed = open_loop(&engine, &mut reader, &actions[..n], offered, &mut histogram, &mut sink);
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
                p50_ns: histogram.value_at_quantile(0.50),
                p99_ns: histogram.value_at_quantile(0.99),
                p999_ns: histogram.value_at_quantile(0.999),
                max_ns: histogram.max(),
            };
            eprintln!(
                "  latency {shards} shards at {}/s: achieved {}/s, p50 {} p99 {} p99.9 {} max {}",
                grouped(offered),
                grouped(row.achieved),
                micros(row.p50_ns),
                micros(row.p99_ns),
                micros(row.p999_ns),
                micros(row.max_ns)
            );
            rows.push(row);
        }
    }
    let load = meter.stop();

    // The target: p99 under 10 µs at half of saturation.
    let target = |shards: usize| {
        rows.iter().find(|r| r.shards == shards && (r.offered / r.saturation - 0.5).abs() < 0.01).map(|r| r.p99_ns)
    };
    if args.json {
        for &(shards, saturation) in &saturations {
            println!(
                "{{\"kind\":\"saturation\",\"shards\":{shards},\"threads\":{},\"batch\":1,\"wait\":\"{}\",\"pin\":{},\"runs\":{},\"commands_per_s_median\":{saturation:.0},\"p99_at_half_ns\":{},\"target_met\":{}}}",
                shards + 1,
                wait_name(wait),
                args.pin,
                args.runs,
                target(shards).map_or("null".to_string(), |p| p.to_string()),
                target(shards).is_some_and(|p| p < 10_000),
            );
        }
        for r in &rows {
            println!(
                "{{\"kind\":\"latency\",\"shards\":{},\"threads\":{},\"wait\":\"{}\",\"pin\":{},\"offered_per_s\":{:.0},\"saturation_per_s\":{:.0},\"commands\":{},\"achieved_per_s\":{:.0},\"p50_ns\":{},\"p99_ns\":{},\"p999_ns\":{},\"max_ns\":{}}}",
                r.shards,
                r.shards + 1,
                wait_name(wait),
                args.pin,
                r.offered,
                r.saturation,
                r.commands,
                r.achieved,
                r.p50_ns,
                r.p99_ns,
                r.p999_ns,
                r.max_ns
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
            "| {} | {}{} | {} | {:.0}% | {} | {} | {} | {} | {} | {} |",
            r.shards,
            r.shards + 1,
            report.mark(r.shards + 1),
            grouped(r.offered),
            100.0 * r.offered / r.saturation,
            grouped(r.commands as f64),
            grouped(r.achieved),
            micros(r.p50_ns),
            micros(r.p99_ns),
            micros(r.p999_ns),
            micros(r.max_ns),
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
    for &(shards, saturation) in &saturations {
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
    report.cores_note();
    report.load_note(load);
    Ok(())
}

// ----- formatting -----

/// Nanoseconds as microseconds, 2 decimals.
fn micros(ns: u64) -> String {
    format!("{:.2}", ns as f64 / 1000.0)
}

/// `1234567.8` as `1,234,568`.
fn grouped(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn run(args: Args) -> anyhow::Result<()> {
    args.check()?;
    let wall = Instant::now();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = cpu_model().unwrap_or_else(|| "unknown".to_string());
    let invoked = std::env::args().collect::<Vec<_>>().join(" ");
    let report = Report { nproc, json: args.json };
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
        let prepared = prepare(&args);
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

    fn small_args() -> Args {
        Args {
            part: Part::All,
            runs: 1,
            seed: 3,
            batch: 16,
            wait: WaitChoice::SpinYield,
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
        let prepared = prepare(&args);
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
        let prepared = prepare(&args);
        let setup = Setup { shards: 2, batch: 1, wait: WaitStrategy::SpinYield, pin: false };
        let (engine, mut reader) = Engine::<()>::start(setup.config(&prepared.exchange)).unwrap();
        pump(&engine, &mut reader, &prepared.warmup_actions, WARMUP_BATCH, setup.wait, &mut DiscardEvents);
        let mut histogram = new_histogram().unwrap();
        let mut sink = Checksum::default();
        let elapsed = open_loop(&engine, &mut reader, &prepared.actions, 1e6, &mut histogram, &mut sink);
        engine.shutdown();
        assert_eq!(histogram.len(), prepared.actions.len() as u64);
        let (_, expected) = bare_run(&prepared.exchange, &prepared.flow.warmup, &prepared.flow.commands);
        assert_eq!(sink, expected);
        // 3,000 commands offered at 1M/s cannot finish before the last is due.
        assert!(elapsed >= Duration::from_nanos(intended_ns(2_999, 1e3)));
    }

    #[test]
    fn offered_rates_stay_below_saturation_and_add_fractions() {
        let rates = offered_rates(&[100_000, 1_000_000, 5_000_000], 2_000_000.0);
        assert_eq!(rates, vec![100_000.0, 1_000_000.0, 1_600_000.0, 1_900_000.0]);
    }

    #[test]
    fn every_part_runs_small() {
        run(small_args()).unwrap();
        run(Args { json: true, ..small_args() }).unwrap();
    }

    #[test]
    fn grouped_and_json_strings() {
        assert_eq!(grouped(1_234_567.8), "1,234,568");
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        assert_eq!(micros(12_345), "12.35");
    }
}
