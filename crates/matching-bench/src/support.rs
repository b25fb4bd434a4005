//! What the three benchmark commands share: `bench` ([`crate::bench`]),
//! `bench-engine` ([`crate::bench_engine`]) and `bench-durable`
//! ([`crate::bench_durable`]).
//!
//! - **Events**: [`Checksum`], the fold every run puts its events into, so
//!   that none can be optimised away and two runs can be compared.
//! - **The bare core**: [`warmed_up`], [`timed_process`], [`bare_run`],
//!   [`bare_rates`]: one `Exchange` on this thread, no engine.
//! - **The realistic flow**: [`prepare`] and [`Prepared`], the multi-symbol
//!   flow as the engine and the core take it; [`exchange_config`].
//! - **Driving the engine from one client thread**: [`engine_config`],
//!   [`ClientIdle`], [`pump`] (closed loop) and [`open_loop`] (offered
//!   rate, free of coordinated omission), [`offered_rates`].
//! - **Numbers**: [`Rates`] (values over runs), [`Latency`] (quantiles of a
//!   histogram), [`new_histogram`].
//! - **The machine**: [`Machine`], [`load_average`], and the load other
//!   processes put on it while a table ran ([`LoadMeter`], [`Load`],
//!   [`Report`]).
//! - **Formatting**: [`grouped`], [`micros`], [`list`], [`wait_name`],
//!   [`json_string`].

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure};
use hdrhistogram::Histogram;
use matching_core::{
    Action, Command, Config, DiscardEvents, Event, EventKind, EventSink, Exchange, LadderLevels, PriceLevels,
};
use matching_pipeline::{Engine, EngineConfig, EventReader, Output, WaitStrategy};
use matching_workload::{MultiFlow, generate_multi};

// ----- events -----

/// Folds every event into a count and a hash: cheap, and it depends on
/// every field that says what happened, so the optimiser must produce them
/// all, and two streams with equal checksums are (but for a 64-bit
/// collision) the same events in the same order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checksum {
    pub events: u64,
    pub hash: u64,
}

impl EventSink for Checksum {
    #[inline(always)]
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
            EventKind::Cancelled { order_id, reason, remaining, .. } => {
                4 ^ (reason as u64) << 4 ^ order_id << 8 ^ remaining.rotate_left(40)
            }
            EventKind::Modified { order_id, price, qty, .. } => {
                5 ^ order_id << 8 ^ price.rotate_left(20) ^ qty.rotate_left(40)
            }
            EventKind::MassCancelled { user, count } => 6 ^ user << 8 ^ count.rotate_left(40),
            // Rare (no generated flow halts): the name's length and status are enough.
            EventKind::Status { symbol, status } => 7 ^ (status as u64) << 4 ^ (symbol.as_bytes().len() as u64) << 8,
        };
        self.events += 1;
        self.hash = (self.hash ^ value ^ event.seq.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(27);
    }
}

// ----- the bare core -----

/// A fresh exchange with `warmup` applied (untimed, its events discarded).
pub fn warmed_up<L: PriceLevels>(config: &Config, warmup: &[Command]) -> Exchange<L> {
    let mut exchange = Exchange::<L>::with_levels(config.clone());
    exchange.process_all(warmup, &mut DiscardEvents);
    exchange
}

/// Times `process` over `commands`, every event into a [`Checksum`], with
/// one clock read before the loop and one after. Generic over the level
/// structure, so `bench` compares the structures and nothing else.
#[inline(never)]
pub fn timed_process<L: PriceLevels>(exchange: &mut Exchange<L>, commands: &[Command]) -> (Duration, Checksum) {
    let mut sink = Checksum::default();
    let commands = black_box(commands);
    let started = Instant::now();
    for command in commands {
        exchange.process(command, &mut sink);
    }
    let elapsed = started.elapsed();
    (elapsed, black_box(sink))
}

/// The bare core: one `Exchange` (the default level structure), no
/// threads; `warmup` untimed, then [`timed_process`] over `commands`.
pub fn bare_run(config: &Config, warmup: &[Command], commands: &[Command]) -> (Duration, Checksum) {
    let mut core = warmed_up::<LadderLevels>(config, warmup);
    timed_process(&mut core, commands)
}

/// `runs` [`bare_run`]s: their commands/s, and the checksum every one of
/// them gave (the core is deterministic, or this is an error).
pub fn bare_rates(
    config: &Config,
    warmup: &[Command],
    commands: &[Command],
    runs: usize,
) -> anyhow::Result<(Rates, Checksum)> {
    let mut rates = Vec::with_capacity(runs);
    let mut first = None;
    for _ in 0..runs {
        let (elapsed, checksum) = bare_run(config, warmup, commands);
        ensure!(first.is_none_or(|f| f == checksum), "Invariant: the core is deterministic");
        first = Some(checksum);
        rates.push(commands.len() as f64 / elapsed.as_secs_f64());
    }
    let checksum = first.ok_or_else(|| anyhow!("no bare-core run (runs = 0)"))?;
    Ok((Rates::of(rates), checksum))
}

/// The core's configuration for about `orders_preallocated` resting orders
/// (at least 65,536) and `levels_preallocated` price levels.
pub fn exchange_config(orders_preallocated: u64, levels_preallocated: usize) -> Config {
    Config {
        orders_preallocated: (orders_preallocated as usize).max(1 << 16),
        levels_preallocated,
        ..Config::default()
    }
}

// ----- the realistic flow -----

/// The realistic multi-symbol flow, as the engine and the core take it.
pub struct Prepared {
    pub flow: MultiFlow,
    pub warmup_actions: Vec<Action>,
    pub actions: Vec<Action>,
    /// Room for a quarter more than the most orders that ever rest.
    pub exchange: Config,
}

/// Generates `generate_multi(symbols, commands, seed)` (before any clock
/// starts) and says so on stderr.
pub fn prepare(symbols: usize, commands: usize, seed: u64) -> Prepared {
    let started = Instant::now();
    let flow = generate_multi(symbols, commands, seed);
    eprintln!("generated the multi-symbol flow in {:.2?}\n{flow}", started.elapsed());
    let warmup_actions = flow.warmup.iter().map(|c| c.action).collect();
    let actions = flow.commands.iter().map(|c| c.action).collect();
    let exchange = exchange_config(flow.resting_max() + flow.resting_max() / 4, 1024);
    Prepared { flow, warmup_actions, actions, exchange }
}

impl Prepared {
    /// The share of the timed commands that go to the most popular symbol.
    pub fn top_symbol_share(&self) -> f64 {
        self.flow.symbols.first().map_or(0.0, |s| s.commands as f64 / self.flow.commands.len() as f64)
    }

    /// The JSON line of the bare core's throughput on the timed commands.
    pub fn print_bare_core_json(&self, kind: &str, runs: usize, seed: u64, events: u64, bare: &Rates) {
        let flow = &self.flow;
        println!(
            "{{\"kind\":\"{kind}\",\"symbols\":{},\"commands\":{},\"warmup\":{},\"runs\":{runs},\"seed\":{seed},\"events\":{events},{}}}",
            flow.symbols.len(),
            flow.commands.len(),
            flow.warmup.len(),
            bare.json("commands_per_s")
        );
    }
}

// ----- driving the engine from one client thread -----

/// Warm-up commands go in this many at a time (untimed).
pub const WARMUP_BATCH: usize = 4096;

/// An engine of `shards` shards on `exchange`, whose threads wait with
/// `wait`, taking batches of up to `batch` commands whole; the rest default.
pub fn engine_config(exchange: &Config, shards: usize, batch: usize, wait: WaitStrategy) -> EngineConfig {
    let defaults = EngineConfig::default();
    EngineConfig { shards, exchange: exchange.clone(), batch_max: defaults.batch_max.max(batch), wait, ..defaults }
}

/// How the client thread idles when it could neither submit nor deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientIdle {
    /// Never: it polls flat out (`bench-engine`'s open loop).
    Poll,
    /// Like the engine's threads: spin [`IDLE_SPINS`] times, then (unless
    /// the engine busy-spins) yield; beside a parking engine too, it keeps
    /// yielding (`bench-engine`).
    Yield(WaitStrategy),
    /// As [`ClientIdle::Yield`], but beside a parking engine, after
    /// [`IDLE_YIELDS`] yields it naps [`IDLE_NAP`] at a time (the engine's
    /// threads park; the client has nobody to wake it, so it naps), leaving
    /// the cores to the engine (`bench-durable`).
    Nap(WaitStrategy),
}

/// Spins before an idle client (or a busy thread of `bench-durable`'s fsync
/// part) yields.
pub const IDLE_SPINS: u32 = 64;
/// Yields before a [`ClientIdle::Nap`] client beside a parking engine naps.
const IDLE_YIELDS: u32 = 16;
/// That client's nap (the timer slack adds ~50 µs more).
const IDLE_NAP: Duration = Duration::from_micros(20);

/// Idle waits between looks at whether the journal failed (a failed
/// journal releases nothing more: without the look the client would wait
/// forever). Without a journal the look finds nothing.
const FAILURE_CHECK_EVERY: u32 = 1 << 14;

/// The client's idling, step by step.
struct Idle {
    how: ClientIdle,
    /// Idle waits since the client last made progress.
    step: u32,
    /// Idle waits in all (wrapping), to look at the journal now and then.
    waits: u32,
}

impl Idle {
    fn new(how: ClientIdle) -> Idle {
        Idle { how, step: 0, waits: 0 }
    }

    /// Waits once, and every [`FAILURE_CHECK_EVERY`] waits looks at
    /// whether the engine's journal failed.
    #[inline]
    fn wait(&mut self, reader: &EventReader<()>) -> anyhow::Result<()> {
        self.step = self.step.saturating_add(1);
        match self.how {
            ClientIdle::Poll => {}
            ClientIdle::Yield(WaitStrategy::BusySpin) | ClientIdle::Nap(WaitStrategy::BusySpin) => {
                std::hint::spin_loop()
            }
            _ if self.step <= IDLE_SPINS => std::hint::spin_loop(),
            ClientIdle::Nap(WaitStrategy::Park) if self.step > IDLE_SPINS + IDLE_YIELDS => std::thread::sleep(IDLE_NAP),
            ClientIdle::Yield(_) | ClientIdle::Nap(_) => std::thread::yield_now(),
        }
        self.waits = self.waits.wrapping_add(1);
        if !self.waits.is_multiple_of(FAILURE_CHECK_EVERY) {
            return Ok(());
        }
        match reader.journal_failure() {
            Some(failure) => bail!("the journal failed: {failure}"),
            None => Ok(()),
        }
    }

    /// The client made progress: the next idle wait spins again.
    #[inline]
    fn reset(&mut self) {
        self.step = 0;
    }
}

/// The reader's callback: every delivered event into `sink`.
fn deliver_to<S: EventSink>(sink: &mut S) -> impl FnMut(Output<'_, ()>) + '_ {
    |output| {
        if let Output::Event(event) = output {
            sink.event(event);
        }
    }
}

/// Submits `actions` at most `batch` per call and drains the reader in
/// between, on this one thread, until every event of them is delivered
/// (with a journal: until all of them are durable; an error if the journal
/// fails). Allocates nothing.
#[inline(never)]
pub fn pump<S: EventSink>(
    engine: &Engine,
    reader: &mut EventReader<()>,
    actions: &[Action],
    batch: usize,
    idle: ClientIdle,
    sink: &mut S,
) -> anyhow::Result<()> {
    let mut idle = Idle::new(idle);
    let mut deliver = deliver_to(sink);
    let mut done = 0;
    let last = engine.next_seq() + actions.len() as u64;
    while done < actions.len() || reader.next_seq() < last {
        let taken = if done < actions.len() {
            let end = (done + batch).min(actions.len());
            engine.try_submit_batch(&actions[done..end])?.0
        } else {
            0
        };
        done += taken;
        let delivered = reader.poll(&mut deliver);
        if taken == 0 && delivered == 0 {
            idle.wait(reader)?;
        } else {
            idle.reset();
        }
    }
    Ok(())
}

/// Most due commands sent before the client polls the reader again, so a
/// client that is behind still notices deliveries promptly.
const SEND_BURST_MAX: usize = 16;

/// The intended send time of command `i` at `period_ns` per command.
#[inline]
pub fn intended_ns(i: usize, period_ns: f64) -> u64 {
    (i as f64 * period_ns) as u64
}

/// Offers `actions` open loop at `rate` commands/s, one command per
/// submit, polling the reader between sends; records each command's
/// (delivery of its last event − intended send time) into `histogram`, so
/// time the client spends behind schedule counts (no coordinated
/// omission). When there is nothing to send yet and nothing was delivered,
/// the client idles as `idle` says. Allocates nothing. Returns the time
/// from the first intended send to the last delivery.
#[inline(never)]
pub fn open_loop<S: EventSink>(
    engine: &Engine,
    reader: &mut EventReader<()>,
    actions: &[Action],
    rate: f64,
    idle: ClientIdle,
    histogram: &mut Histogram<u64>,
    sink: &mut S,
) -> anyhow::Result<Duration> {
    let period_ns = 1e9 / rate;
    let first_seq = reader.next_seq();
    ensure!(first_seq == engine.next_seq(), "Invariant: nothing is in flight before the clock starts");
    let n = actions.len();
    let mut deliver = deliver_to(sink);
    let (mut sent, mut done) = (0usize, 0usize);
    let mut idle = Idle::new(idle);
    let t0 = Instant::now();
    while done < n {
        let now_ns = t0.elapsed().as_nanos() as u64;
        let mut burst = 0;
        while sent < n && burst < SEND_BURST_MAX && intended_ns(sent, period_ns) <= now_ns {
            let (taken, _) = engine.try_submit_batch(&actions[sent..sent + 1])?;
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
        } else if burst == 0 {
            // Nothing to send yet and nothing delivered: idle (with a
            // journal, so the journal thread woken by its finished
            // fdatasync can get a core).
            idle.wait(reader)?;
            continue;
        }
        idle.reset();
    }
    Ok(t0.elapsed())
}

/// The offered rates for a `saturation` rate: the `given` ones below it,
/// and the `fractions` of it (rounded to 1,000/s, at least 1/s); ascending,
/// without repeats.
pub fn offered_rates(given: &[u64], fractions: &[f64], saturation: f64) -> Vec<f64> {
    let mut rates: Vec<f64> = given.iter().map(|&r| r as f64).filter(|&r| r < saturation).collect();
    rates.extend(fractions.iter().map(|f| ((f * saturation / 1000.0).round() * 1000.0).max(1.0)));
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    rates
}

// ----- numbers -----

/// Values over runs (commands/s, or seconds), ascending.
#[derive(Clone, Debug)]
pub struct Rates(Vec<f64>);

impl Rates {
    pub fn of(mut rates: Vec<f64>) -> Rates {
        rates.sort_by(f64::total_cmp);
        Rates(rates)
    }

    /// Every value, ascending.
    pub fn values(&self) -> &[f64] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn median(&self) -> f64 {
        let n = self.0.len();
        if n % 2 == 1 { self.0[n / 2] } else { (self.0[n / 2 - 1] + self.0[n / 2]) / 2.0 }
    }

    pub fn min(&self) -> f64 {
        self.0[0]
    }

    pub fn max(&self) -> f64 {
        self.0[self.0.len() - 1]
    }

    /// `"<name>_median":…,"<name>_min":…,"<name>_max":…`, whole numbers.
    pub fn json(&self, name: &str) -> String {
        format!(
            "\"{name}_median\":{:.0},\"{name}_min\":{:.0},\"{name}_max\":{:.0}",
            self.median(),
            self.min(),
            self.max()
        )
    }

    /// The median, min and max as three table cells, `1,234 | 1,200 | 1,300`.
    pub fn grouped_cells(&self) -> String {
        format!("{} | {} | {}", grouped(self.median()), grouped(self.min()), grouped(self.max()))
    }
}

/// A histogram of ns: 1 ns to 60 s at 3 significant digits (allocated once,
/// before any clock starts).
pub fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| anyhow!("histogram: {e:?}"))
}

/// The quantiles of a latency histogram, ns.
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
}

impl Latency {
    pub fn of(histogram: &Histogram<u64>) -> Latency {
        Latency {
            p50_ns: histogram.value_at_quantile(0.50),
            p99_ns: histogram.value_at_quantile(0.99),
            p999_ns: histogram.value_at_quantile(0.999),
            max_ns: histogram.max(),
        }
    }

    /// `"p50_ns":…,"p99_ns":…,"p999_ns":…,"max_ns":…`.
    pub fn json(&self) -> String {
        format!(
            "\"p50_ns\":{},\"p99_ns\":{},\"p999_ns\":{},\"max_ns\":{}",
            self.p50_ns, self.p99_ns, self.p999_ns, self.max_ns
        )
    }

    /// p50, p99, p99.9 and max in µs as four table cells.
    pub fn micros_cells(&self) -> String {
        format!(
            "{} | {} | {} | {}",
            micros(self.p50_ns),
            micros(self.p99_ns),
            micros(self.p999_ns),
            micros(self.max_ns)
        )
    }

    /// `p50 … p99 … p99.9 … max …`, in µs (for progress lines).
    pub fn micros_text(&self) -> String {
        format!(
            "p50 {} p99 {} p99.9 {} max {}",
            micros(self.p50_ns),
            micros(self.p99_ns),
            micros(self.p999_ns),
            micros(self.max_ns)
        )
    }
}

// ----- the machine and its load -----

/// What a benchmark says first about where it ran.
pub struct Machine {
    /// Cores this process may use.
    pub nproc: usize,
    /// The CPU's model name, or "unknown".
    pub cpu: String,
    /// The command line as invoked.
    pub invoked: String,
}

impl Machine {
    pub fn probe() -> Machine {
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu: cpu_model().unwrap_or_else(|| "unknown".to_string()),
            invoked: std::env::args().collect::<Vec<_>>().join(" "),
        }
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

/// The 1, 5 and 15 minute load averages, "0.12 0.34 0.56", or "unknown".
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_string())
}

/// `USER_HZ`: the unit of `/proc/stat`, 100 on every Linux ABI.
pub const JIFFIES_PER_S: f64 = 100.0;

/// CPU time counters of the machine and of this process, in jiffies.
#[derive(Clone, Copy, Debug)]
struct CpuTimes {
    at: Instant,
    /// User-mode time of the machine (user + nice; guest is inside user).
    user: u64,
    /// Kernel time of the machine (system + irq + softirq): kernel threads
    /// (the file system's journal, writeback, block completions) count here.
    system: u64,
    /// Time the hypervisor gave to others while this VM wanted to run.
    steal: u64,
    /// This process's user and kernel time (all its threads, living or joined).
    ours_user: u64,
    ours_system: u64,
}

impl CpuTimes {
    fn now() -> Option<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
        // user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
        let field = |i: usize| cpu.get(i).copied().unwrap_or(0);
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        let after_name = &own[own.rfind(')')? + 1..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // Fields 14 and 15 of the line (utime, stime) are 11 and 12 after the name.
        Some(CpuTimes {
            at: Instant::now(),
            user: field(0) + field(1),
            system: field(2) + field(5) + field(6),
            steal: field(7),
            ours_user: fields.get(11)?.parse().ok()?,
            ours_system: fields.get(12)?.parse().ok()?,
        })
    }
}

/// What others took while a table ran: jiffies between two reads of
/// [`CpuTimes`], shown in cores on average.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub seconds: f64,
    user: u64,
    system: u64,
    steal: u64,
    ours_user: u64,
    ours_system: u64,
}

impl Load {
    fn cores(&self, jiffies: u64) -> f64 {
        jiffies as f64 / JIFFIES_PER_S / self.seconds
    }

    /// Cores kept busy (user or kernel time) by other processes.
    pub fn others_busy_cores(&self) -> f64 {
        self.cores((self.user + self.system).saturating_sub(self.ours_user + self.ours_system))
    }

    /// User-mode time of other processes: they competed for the cores.
    pub fn others_user_cores(&self) -> f64 {
        self.cores(self.user.saturating_sub(self.ours_user))
    }

    /// Kernel time not charged to this process: mostly kernel threads doing
    /// this benchmark's I/O (file-system journal commits, writeback,
    /// discards), plus other processes' system calls.
    pub fn others_system_cores(&self) -> f64 {
        self.cores(self.system.saturating_sub(self.ours_system))
    }

    /// Cores taken by the hypervisor (steal).
    pub fn steal_cores(&self) -> f64 {
        self.cores(self.steal)
    }
}

/// Measures the [`Load`] from its start to each [`LoadMeter::stop`].
pub struct LoadMeter(Option<CpuTimes>);

impl LoadMeter {
    pub fn start() -> LoadMeter {
        LoadMeter(CpuTimes::now())
    }

    /// `None` without `/proc`.
    pub fn stop(&self) -> Option<Load> {
        let (a, b) = (self.0?, CpuTimes::now()?);
        Some(Load {
            seconds: b.at.duration_since(a.at).as_secs_f64().max(1e-3),
            user: b.user - a.user,
            system: b.system - a.system,
            steal: b.steal - a.steal,
            ours_user: b.ours_user - a.ours_user,
            ours_system: b.ours_system - a.ours_system,
        })
    }
}

/// How a [`Report`] tells what other processes took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadBreakdown {
    /// Their busy time, user and kernel together (`bench-engine`).
    Busy,
    /// Their user time apart from the kernel time not charged to this
    /// process, which is mostly the benchmark's own I/O (`bench-durable`).
    UserAndKernel,
}

/// Prints the notes that go beside every table.
pub struct Report {
    pub nproc: usize,
    pub json: bool,
    pub breakdown: LoadBreakdown,
}

impl Report {
    /// Marks a configuration with more busy threads than cores.
    pub fn mark(&self, threads: usize) -> &'static str {
        if threads > self.nproc { " †" } else { "" }
    }

    /// The load while the table above ran, and a blank line.
    pub fn load_note(&self, load: Option<Load>) {
        match load {
            Some(l) if l.seconds < 1.0 => println!(
                "> Load while this table ran: not measured (it took {:.2} s; /proc/stat counts in 10 ms ticks).",
                l.seconds
            ),
            Some(l) => match self.breakdown {
                LoadBreakdown::Busy => println!(
                    "> Load while this table ran ({:.0} s): other processes kept {:.2} cores busy on average, \
                     the hypervisor stole {:.2} cores.",
                    l.seconds,
                    l.others_busy_cores(),
                    l.steal_cores()
                ),
                LoadBreakdown::UserAndKernel => println!(
                    "> Load while this table ran ({:.0} s): other processes' user time {:.2} cores; kernel time \
                     not charged to this process {:.2} cores (mostly the kernel threads doing this benchmark's \
                     I/O: file-system journal, writeback, discards); hypervisor steal {:.2} cores.",
                    l.seconds,
                    l.others_user_cores(),
                    l.others_system_cores(),
                    l.steal_cores()
                ),
            },
            None => println!("> Load while this table ran: unknown (no /proc)."),
        }
        println!();
    }

    /// The load while `table` ran, as a JSON line (none without `/proc`).
    pub fn json_load(&self, table: &str, load: Option<Load>) {
        let Some(l) = load else { return };
        let cores = match self.breakdown {
            LoadBreakdown::Busy => format!("\"others_cores\":{:.3}", l.others_busy_cores()),
            LoadBreakdown::UserAndKernel => format!(
                "\"others_user_cores\":{:.3},\"others_system_cores\":{:.3}",
                l.others_user_cores(),
                l.others_system_cores()
            ),
        };
        println!(
            "{{\"kind\":\"load\",\"table\":\"{table}\",\"seconds\":{:.1},{cores},\"steal_cores\":{:.3}}}",
            l.seconds,
            l.steal_cores()
        );
    }
}

// ----- formatting -----

/// `1234567.8` as `1,234,568`.
pub fn grouped(value: f64) -> String {
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

/// Nanoseconds as microseconds, 2 decimals.
pub fn micros(ns: u64) -> String {
    format!("{:.2}", ns as f64 / 1000.0)
}

/// Values as a flag takes them: `1,2,4`.
pub fn list<T: ToString>(values: &[T]) -> String {
    values.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

/// A value of a flag as the command line spells it (`--part high-load`).
pub fn flag_value<T: clap::ValueEnum>(value: &T) -> String {
    value.to_possible_value().map_or_else(String::new, |v| v.get_name().to_string())
}

/// Appends ` <flag>` to a spelled-out command line when the flag is `set`.
pub fn push_flag(line: &mut String, set: bool, flag: &str) {
    if set {
        line.push(' ');
        line.push_str(flag);
    }
}

/// A wait strategy as `--wait` spells it.
pub fn wait_name(wait: WaitStrategy) -> &'static str {
    match wait {
        WaitStrategy::BusySpin => "busy-spin",
        WaitStrategy::SpinYield => "spin-yield",
        WaitStrategy::Park => "park",
    }
}

/// A JSON string literal.
pub fn json_string(text: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_puts_commas_between_thousands() {
        assert_eq!(grouped(0.0), "0");
        assert_eq!(grouped(999.4), "999");
        assert_eq!(grouped(1000.0), "1,000");
        assert_eq!(grouped(1_234_567.8), "1,234,568");
    }

    #[test]
    fn formatting() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        assert_eq!(micros(12_345), "12.35");
        assert_eq!(list(&[1, 2, 4]), "1,2,4");
        assert_eq!(wait_name(WaitStrategy::SpinYield), "spin-yield");
        assert_eq!(flag_value(&matching_pipeline::WaitStrategy::BusySpin), "busy-spin");
        let mut line = "x".to_string();
        push_flag(&mut line, false, "--no");
        push_flag(&mut line, true, "--yes");
        assert_eq!(line, "x --yes");
    }

    #[test]
    fn rates_are_sorted_and_summarised() {
        let rates = Rates::of(vec![3.0, 1.0, 2.0, 10.0]);
        assert_eq!(rates.values(), &[1.0, 2.0, 3.0, 10.0]);
        assert_eq!((rates.median(), rates.min(), rates.max(), rates.len()), (2.5, 1.0, 10.0, 4));
        assert_eq!(Rates::of(vec![3.0, 1.0, 10.0]).json("x"), "\"x_median\":3,\"x_min\":1,\"x_max\":10");
        assert_eq!(Rates::of(vec![1500.0, 999.0, 2e6]).grouped_cells(), "1,500 | 999 | 2,000,000");
    }

    #[test]
    fn offered_rates_stay_below_saturation_and_add_fractions() {
        let rates = offered_rates(&[100_000, 1_000_000, 5_000_000], &[0.5, 0.8, 0.95], 2_000_000.0);
        assert_eq!(rates, vec![100_000.0, 1_000_000.0, 1_600_000.0, 1_900_000.0]);
        assert_eq!(offered_rates(&[100_000, 5_000_000], &[0.5], 2_000_000.0), vec![100_000.0, 1_000_000.0]);
        // A fraction of a tiny saturation is still a rate.
        assert_eq!(offered_rates(&[], &[0.5], 100.0), vec![1.0]);
    }

    #[test]
    fn the_bare_core_is_deterministic() {
        let prepared = prepare(3, 2_000, 5);
        let (rates, checksum) =
            bare_rates(&prepared.exchange, &prepared.flow.warmup, &prepared.flow.commands, 2).unwrap();
        assert_eq!(rates.len(), 2);
        assert_eq!(checksum.events, prepared.flow.events());
    }
}
