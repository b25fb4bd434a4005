//! `matching-engine bench-durable`: what the write-ahead journal costs the
//! engine (`matching-pipeline` with `EngineConfig::durability`), on the
//! file system of a scratch directory.
//!
//! Five parts (`--part`):
//!
//! - **fsync**: one `fdatasync` on this file system, measured first (write
//!   4 KiB and `sync_data`, `--fsync-samples` times; also appending 256 KiB,
//!   overwriting the same 4 KiB, and appending 4 KiB while other threads keep
//!   the cores busy, yielding or not), since every acknowledgement waits for one.
//! - **throughput**: the realistic multi-symbol flow ([`generate_multi`])
//!   through a one-shard engine with no journal, `--fsync off`, `--fsync
//!   batch` (group commit), at each `--batch-list` size, runs interleaved
//!   (A B C A B C …) so drift hits every variant alike; then `--fsync
//!   always` on a short prefix of the flow (it syncs once per command),
//!   beside no journal and batch on the same prefix. End to end: from the
//!   first submit until the last event is delivered by the reader, which
//!   releases a command's events only once the command is durable. Every
//!   run's events must have the bare core's count and checksum. The journal
//!   writes through a [`CountingStorage`] (this module's wrapper of
//!   `FsStorage`) that counts and times every `write` and `fdatasync`: the
//!   group size is commands ÷ `fdatasync`s.
//! - **latency**: open loop, free of coordinated omission: command `i` is
//!   due at `t0 + i / rate`; one client thread sends it alone (batch 1)
//!   when due and polls the reader in between; its latency is the time its
//!   last event was delivered (it is durable by then) minus its *intended*
//!   send time. `--fsync batch`, offered rates up to the closed-loop batch-1
//!   throughput of the same engine, for each of `--latency-waits` (the
//!   engine's wait strategy; the client idles alike).
//! - **recovery**: a journal of the flow (warm-up and timed commands) is
//!   written with `--fsync off`, with a snapshot taken half way; then
//!   `recover_books` (and `Engine::start`) is timed on it with and without
//!   the snapshot (a second directory holding hard links to the segments only).
//! - **snapshot**: ~`--snapshot-orders` resting orders that never cross over
//!   `--snapshot-symbols` symbols; `engine.snapshot()` timed (state query,
//!   encoding, waiting for durability, write, `fdatasync`, rename, directory
//!   sync), with its parts timed separately; then recovery from it.
//!
//! Everything is written under `--dir` (default: the system's temporary
//! directory) in a directory of its own, `matching-bench-durable-<pid>`,
//! which is removed at the end. Each table is followed by the load other
//! processes put on the machine while it ran (from `/proc/stat`).
//!
//! What it shares with `bench` and `bench-engine` (the event checksum, the
//! bare core, the client loop and the open loop, the load meter, the
//! formatting) is in [`crate::support`].
//!
//! [`generate_multi`]: matching_workload::generate_multi

use std::fs::{self, File, OpenOptions};
use std::hint::black_box;
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail, ensure};
use hdrhistogram::Histogram;
use matching_core::{Action, Command, Config, DiscardEvents, Exchange, NewOrder, Side, encode_books, hash_books};
use matching_journal::storage::{FsStorage, StorageFile, StorageHooks, Wrapped};
use matching_journal::{snapshot_name, write_snapshot};
use matching_pipeline::{Answer, Durability, Engine, EngineConfig, FsyncPolicy, Query, WaitStrategy, recover_books};
use matching_workload::{MID_START_TICKS, numbered_symbols};

use crate::support::{
    self, Checksum, ClientIdle, IDLE_SPINS, JIFFIES_PER_S, Latency, LoadBreakdown, LoadMeter, Machine, Prepared, Rates,
    Report, WARMUP_BATCH, bare_rates, bare_run, exchange_config, flag_value, grouped, json_string, list, load_average,
    micros, new_histogram, offered_rates, open_loop, prepare, pump, push_flag, wait_name,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// One `fdatasync` on the data directory's file system.
    Fsync,
    /// Journaled throughput: no journal vs fsync off / batch / always.
    Throughput,
    /// Open-loop acknowledgement latency (submit → durable) with fsync batch.
    Latency,
    /// Recovery time per million journaled commands, with and without a snapshot.
    Recovery,
    /// Snapshot write time of a ~1M-order book, and recovery from it.
    Snapshot,
    All,
}

/// `--journals`: which engines the throughput part compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum JournalChoice {
    /// No journal.
    None,
    /// Journal, never synced (but for segment rotation).
    Off,
    /// Journal, group commit.
    Batch,
    /// Journal, one sync per command (on the `--always-commands` prefix).
    Always,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Which part to run.
    #[arg(long, value_enum, default_value_t = Part::All)]
    part: Part,
    /// Runs per configuration (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Runs of the `--fsync always` rows.
    #[arg(long, default_value_t = 3)]
    always_runs: usize,
    /// Seed of the generated flow and orders.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Symbols of the realistic flow.
    #[arg(long, default_value_t = 20)]
    symbols: usize,
    /// Timed commands of the realistic flow (its warm-up comes on top, untimed).
    #[arg(long, default_value_t = 2_000_000)]
    commands: usize,
    /// Throughput part: the engines compared (ratios need `none`; `always` runs on the prefix).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [JournalChoice::None, JournalChoice::Off, JournalChoice::Batch, JournalChoice::Always])]
    journals: Vec<JournalChoice>,
    /// Throughput part: commands per submit.
    #[arg(long, value_delimiter = ',', default_values_t = [256usize, 16])]
    batch_list: Vec<usize>,
    /// Throughput part: the prefix of the flow `--fsync always` runs on (one sync per command).
    #[arg(long, default_value_t = 5_000)]
    always_commands: usize,
    /// How engine threads wait (and how the client idles).
    #[arg(long, value_enum, default_value_t = WaitStrategy::SpinYield)]
    wait: WaitStrategy,
    /// Latency part: how engine threads wait, one table block each (the client
    /// idles alike: spin-yield yields; park naps 20 µs once spinning and yielding found nothing).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [WaitStrategy::SpinYield, WaitStrategy::Park])]
    latency_waits: Vec<WaitStrategy>,
    /// Latency part: offered rates, commands/s (those at or above saturation are skipped).
    #[arg(long, value_delimiter = ',', default_values_t = [100_000u64, 500_000, 1_000_000, 2_000_000])]
    rates: Vec<u64>,
    /// Latency part: also offer these fractions of the saturation rate.
    #[arg(long, value_delimiter = ',', default_values_t = [0.5f64, 0.8, 0.95])]
    saturation_fractions: Vec<f64>,
    /// Latency part: seconds of flow offered per rate (capped by --commands).
    #[arg(long, default_value_t = 1.0)]
    latency_seconds: f64,
    /// Snapshot part: resting orders in the book.
    #[arg(long, default_value_t = 1_000_000)]
    snapshot_orders: usize,
    /// Snapshot part: symbols they rest on.
    #[arg(long, default_value_t = 10)]
    snapshot_symbols: usize,
    /// Journal segment size (`Durability::segment_bytes`), MiB: a full segment is synced and the next created.
    #[arg(long, default_value_t = matching_journal::SEGMENT_BYTES_DEFAULT >> 20)]
    segment_mib: u64,
    /// fsync part: syncs timed per measurement.
    #[arg(long, default_value_t = 500)]
    fsync_samples: usize,
    /// Recovery and snapshot parts: also time recovery with the page cache
    /// dropped (`sync`, then `echo 1 > /proc/sys/vm/drop_caches`: needs root,
    /// and drops the clean page cache of the whole machine).
    #[arg(long)]
    cold: bool,
    /// Where to put the scratch directory (default: the system's temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Machine-readable output: one JSON object per line.
    #[arg(long)]
    json: bool,
}

impl Args {
    /// The flags as a command line, every value spelled out.
    fn command_line(&self) -> String {
        let mut line = format!(
            "matching-engine bench-durable --part {} --runs {} --always-runs {} --seed {} --symbols {} \
             --commands {} --journals {} --batch-list {} --always-commands {} --wait {} --latency-waits {} --rates {} --saturation-fractions {} \
             --latency-seconds {} --snapshot-orders {} --snapshot-symbols {} --segment-mib {} --fsync-samples {}",
            flag_value(&self.part),
            self.runs,
            self.always_runs,
            self.seed,
            self.symbols,
            self.commands,
            self.journals.iter().map(|&j| Journal::from(j).key()).collect::<Vec<_>>().join(","),
            list(&self.batch_list),
            self.always_commands,
            wait_name(self.wait),
            self.latency_waits.iter().map(|&w| wait_name(w)).collect::<Vec<_>>().join(","),
            list(&self.rates),
            list(&self.saturation_fractions),
            self.latency_seconds,
            self.snapshot_orders,
            self.snapshot_symbols,
            self.segment_mib,
            self.fsync_samples,
        );
        push_flag(&mut line, self.cold, "--cold");
        if let Some(dir) = &self.dir {
            line.push_str(&format!(" --dir {}", dir.display()));
        }
        push_flag(&mut line, self.json, "--json");
        line
    }

    fn runs(&self, part: Part) -> bool {
        self.part == Part::All || self.part == part
    }

    fn check(&self) -> anyhow::Result<()> {
        ensure!(self.runs >= 1 && self.always_runs >= 1, "--runs and --always-runs must be at least 1");
        ensure!(self.symbols >= 1 && self.commands >= 2, "--symbols must be at least 1 and --commands at least 2");
        ensure!(
            !self.batch_list.is_empty() && self.batch_list.iter().all(|&b| b >= 1),
            "batch sizes must be at least 1"
        );
        ensure!(self.always_commands >= 1, "--always-commands must be at least 1");
        ensure!(!self.journals.is_empty(), "--journals needs at least one engine");
        ensure!(self.rates.iter().all(|&r| r >= 1), "rates must be at least 1/s");
        ensure!(!self.latency_waits.is_empty(), "--latency-waits needs at least one wait strategy");
        ensure!(
            self.saturation_fractions.iter().all(|&f| f > 0.0 && f < 1.0),
            "saturation fractions must be in (0, 1)"
        );
        ensure!(self.latency_seconds > 0.0, "--latency-seconds must be positive");
        ensure!(self.snapshot_orders >= 1 && self.snapshot_symbols >= 1, "--snapshot-orders and -symbols must be >= 1");
        ensure!(self.fsync_samples >= 1, "--fsync-samples must be at least 1");
        ensure!((1..=1 << 20).contains(&self.segment_mib), "--segment-mib must be in 1..=1048576");
        Ok(())
    }
}

// ----- the machine -----

/// The file system a path is on, from `/proc/mounts`: "ext4 on /dev/vda (rw,…)".
fn file_system(path: &Path) -> String {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let Ok(mounts) = fs::read_to_string("/proc/mounts") else { return "unknown".to_string() };
    mounts
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() >= 4 && path.starts_with(f[1])).then(|| (f[1].len(), format!("{} on {} ({})", f[2], f[0], f[3])))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".to_string(), |(_, text)| text)
}

/// Now in UTC, `YYYY-MM-DD HH:MM:SS UTC`.
fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Days to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rest / 3600, rest / 60 % 60, rest % 60)
}

// ----- the scratch directory -----

/// `<parent>/matching-bench-durable-<pid>`, removed when dropped.
struct Scratch {
    root: PathBuf,
}

impl Scratch {
    fn create(parent: Option<&Path>) -> anyhow::Result<Scratch> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let root = parent.join(format!("matching-bench-durable-{}", std::process::id()));
        if root.exists() {
            fs::remove_dir_all(&root).with_context(|| format!("cannot empty {}", root.display()))?;
        }
        fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
        Ok(Scratch { root })
    }

    /// An empty directory `name` inside (emptied if it exists).
    fn fresh(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.root.join(name);
        self.remove(name)?;
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(dir)
    }

    /// Removes directory `name`, and makes the removal durable: the file
    /// system's journal commits it now (with `-o discard`, discarding the
    /// freed blocks) rather than inside the next run's first `fdatasync`.
    fn remove(&self, name: &str) -> anyhow::Result<()> {
        let dir = self.root.join(name);
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
            File::open(&self.root)?.sync_all()?;
        }
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(error) = fs::remove_dir_all(&self.root) {
            eprintln!("warning: cannot remove {}: {error}", self.root.display());
        }
    }
}

/// Files of `dir` whose names start with `prefix`, sorted, with their sizes.
fn files(dir: &Path, prefix: &str) -> anyhow::Result<Vec<(PathBuf, u64)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            out.push((entry.path(), entry.metadata()?.len()));
        }
    }
    out.sort();
    Ok(out)
}

/// Hard links in `to` to the files of `from` whose names start with `prefix`.
fn link_files(from: &Path, to: &Path, prefix: &str) -> anyhow::Result<u64> {
    let mut bytes = 0;
    for (path, len) in files(from, prefix)? {
        let name = path.file_name().ok_or_else(|| anyhow!("{} has no name", path.display()))?;
        fs::hard_link(&path, to.join(name)).with_context(|| format!("cannot link {}", path.display()))?;
        bytes += len;
    }
    Ok(bytes)
}

/// Copies every file of `from` into `to`, durably (so that the copy is not
/// written back inside a timed `fdatasync`).
fn copy_files(from: &Path, to: &Path) -> anyhow::Result<()> {
    for (path, _) in files(from, "")? {
        let name = path.file_name().ok_or_else(|| anyhow!("{} has no name", path.display()))?;
        fs::copy(&path, to.join(name)).with_context(|| format!("cannot copy {}", path.display()))?;
        File::open(to.join(name))?.sync_all()?;
    }
    File::open(to)?.sync_all()?;
    Ok(())
}

/// Writes dirty pages back, then drops the clean page cache (root only).
fn drop_caches() -> anyhow::Result<()> {
    let status = std::process::Command::new("sync").status().context("cannot run sync")?;
    ensure!(status.success(), "sync failed");
    fs::write("/proc/sys/vm/drop_caches", "1").context("cannot write /proc/sys/vm/drop_caches (--cold needs root)")
}

// ----- a storage that counts and times its writes and syncs -----

/// What the journal did to its files.
struct IoStats {
    writes: AtomicU64,
    write_bytes: AtomicU64,
    write_ns: AtomicU64,
    syncs: AtomicU64,
    sync_ns: AtomicU64,
    dir_syncs: AtomicU64,
    /// Duration of each `fdatasync`, ns.
    sync_histogram: Mutex<Histogram<u64>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct IoCounts {
    writes: u64,
    write_bytes: u64,
    write_ns: u64,
    syncs: u64,
    sync_ns: u64,
    dir_syncs: u64,
}

impl IoCounts {
    fn since(self, earlier: IoCounts) -> IoCounts {
        IoCounts {
            writes: self.writes - earlier.writes,
            write_bytes: self.write_bytes - earlier.write_bytes,
            write_ns: self.write_ns - earlier.write_ns,
            syncs: self.syncs - earlier.syncs,
            sync_ns: self.sync_ns - earlier.sync_ns,
            dir_syncs: self.dir_syncs - earlier.dir_syncs,
        }
    }

    fn mean_sync_ns(&self) -> f64 {
        self.sync_ns as f64 / self.syncs.max(1) as f64
    }
}

impl IoStats {
    fn new() -> anyhow::Result<IoStats> {
        Ok(IoStats {
            writes: AtomicU64::new(0),
            write_bytes: AtomicU64::new(0),
            write_ns: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            sync_ns: AtomicU64::new(0),
            dir_syncs: AtomicU64::new(0),
            sync_histogram: Mutex::new(new_histogram()?),
        })
    }

    fn counts(&self) -> IoCounts {
        IoCounts {
            writes: self.writes.load(Ordering::Acquire),
            write_bytes: self.write_bytes.load(Ordering::Acquire),
            write_ns: self.write_ns.load(Ordering::Acquire),
            syncs: self.syncs.load(Ordering::Acquire),
            sync_ns: self.sync_ns.load(Ordering::Acquire),
            dir_syncs: self.dir_syncs.load(Ordering::Acquire),
        }
    }

    fn histogram(&self) -> std::sync::MutexGuard<'_, Histogram<u64>> {
        self.sync_histogram.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every `fdatasync` through a [`CountingStorage`] in this process (to
/// compare with `strace -c -f -e trace=fdatasync` of a `--part throughput` run).
static SYNCS_ALL: AtomicU64 = AtomicU64::new(0);

/// `FsStorage` with every `write` and `fdatasync` counted and timed (an
/// atomic add or two and a clock read per call: nothing beside a sync).
type CountingStorage = Wrapped<FsStorage, Counting>;

/// The hooks of a [`CountingStorage`].
struct Counting {
    stats: Arc<IoStats>,
}

struct CountingFile {
    inner: Box<dyn StorageFile>,
    stats: Arc<IoStats>,
}

impl StorageFile for CountingFile {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let started = Instant::now();
        let result = self.inner.write_all(bytes);
        let ns = started.elapsed().as_nanos() as u64;
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        self.stats.write_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.stats.write_ns.fetch_add(ns, Ordering::Release);
        result
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let started = Instant::now();
        let result = self.inner.sync_data();
        let ns = started.elapsed().as_nanos() as u64;
        self.stats.histogram().saturating_record(ns.max(1));
        self.stats.sync_ns.fetch_add(ns, Ordering::Relaxed);
        self.stats.syncs.fetch_add(1, Ordering::Release);
        SYNCS_ALL.fetch_add(1, Ordering::Relaxed);
        result
    }
}

impl StorageHooks for Counting {
    fn file(&self, file: Box<dyn StorageFile>) -> Box<dyn StorageFile> {
        Box::new(CountingFile { inner: file, stats: Arc::clone(&self.stats) })
    }

    fn on_sync_dir(&self) {
        self.stats.dir_syncs.fetch_add(1, Ordering::Relaxed);
    }
}

/// `--segment-mib`, in bytes: set once at the start of [`run`] (a process-wide
/// setting rather than a parameter of every function that starts an engine).
static SEGMENT_BYTES: AtomicU64 = AtomicU64::new(matching_journal::SEGMENT_BYTES_DEFAULT);

/// A journal in `dir` with `policy`, through a [`CountingStorage`].
fn durability(dir: &Path, policy: FsyncPolicy) -> anyhow::Result<(Durability, Arc<IoStats>)> {
    let stats = Arc::new(IoStats::new()?);
    let inner = FsStorage::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    let storage: CountingStorage = Wrapped { inner, hooks: Counting { stats: Arc::clone(&stats) } };
    let mut durability = Durability::new(Arc::new(storage));
    durability.fsync = policy;
    durability.segment_bytes = SEGMENT_BYTES.load(Ordering::Relaxed);
    Ok((durability, stats))
}

/// A plain journal in `dir` (recovery only reads).
fn plain_durability(dir: &Path) -> anyhow::Result<Durability> {
    let storage = FsStorage::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    Ok(Durability::new(Arc::new(storage)))
}

/// A one-shard engine, journaled when `durability` is given.
fn one_shard_config(
    exchange: &Config,
    wait: WaitStrategy,
    batch: usize,
    durability: Option<Durability>,
) -> EngineConfig {
    EngineConfig { durability, ..support::engine_config(exchange, 1, batch, wait) }
}

/// p50, p99, max of a histogram of ns.
fn quantiles(h: &Histogram<u64>) -> (u64, u64, u64) {
    if h.is_empty() {
        return (0, 0, 0);
    }
    (h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max())
}

// ----- part 0: one fdatasync -----

struct FsyncRow {
    what: &'static str,
    bytes: usize,
    /// Threads kept busy meanwhile, and whether they yield.
    busy: usize,
    yielding: bool,
    samples: Rates,
}

/// Runs `f` while `threads` threads keep the cores busy: spinning, and
/// with `yielding` calling `yield` every 64 spins (as an idle engine thread
/// under spin-yield does); without, as a thread busy matching or sending does.
fn with_busy_threads<T>(threads: usize, yielding: bool, f: impl FnOnce() -> T) -> T {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..IDLE_SPINS {
                        std::hint::spin_loop();
                    }
                    if yielding {
                        std::thread::yield_now();
                    }
                }
            });
        }
        let result = f();
        stop.store(true, Ordering::Relaxed);
        result
    })
}

/// Times `samples` × (write `bytes`, `sync_data`): appending to a growing
/// file (as the journal does), or overwriting its first bytes.
fn time_syncs(dir: &Path, bytes: usize, append: bool, samples: usize) -> anyhow::Result<Rates> {
    let path = dir.join(format!("fsync-probe-{bytes}-{append}"));
    let mut file = OpenOptions::new().create(true).write(true).truncate(true).open(&path)?;
    let block = vec![0xA5u8; bytes];
    if !append {
        file.write_all(&block)?;
        file.sync_all()?;
    }
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        if append {
            file.write_all(&block)?;
        } else {
            file.write_all_at(&block, 0)?;
        }
        file.sync_data()?;
        times.push(started.elapsed().as_nanos() as f64);
    }
    drop(file);
    fs::remove_file(&path)?;
    Ok(Rates::of(times))
}

fn fsync_part(args: &Args, report: &Report, scratch: &Scratch) -> anyhow::Result<f64> {
    let dir = scratch.fresh("fsync")?;
    let meter = LoadMeter::start();
    let mut rows = Vec::new();
    let busy_some = report.nproc.saturating_sub(1);
    for (what, bytes, append, busy, yielding) in [
        ("append 4 KiB", 4096, true, 0, false),
        ("append 256 KiB", 256 << 10, true, 0, false),
        ("overwrite 4 KiB", 4096, false, 0, false),
        ("append 4 KiB", 4096, true, report.nproc, true),
        ("append 4 KiB", 4096, true, busy_some, false),
        ("append 4 KiB", 4096, true, report.nproc, false),
    ] {
        if busy > 0 && rows.iter().any(|r: &FsyncRow| r.what == what && r.busy == busy && r.yielding == yielding) {
            continue;
        }
        let samples = with_busy_threads(busy, yielding, || time_syncs(&dir, bytes, append, args.fsync_samples))?;
        eprintln!("  fsync {what}, {busy} busy threads (yielding {yielding}): median {:.3} ms", samples.median() / 1e6);
        rows.push(FsyncRow { what, bytes, busy, yielding, samples });
    }
    let load = meter.stop();
    scratch.remove("fsync")?;
    let one = rows[0].samples.median();
    let mean = |r: &Rates| r.values().iter().sum::<f64>() / r.len() as f64;
    let quantile = |r: &Rates, q: f64| r.values()[((r.len() as f64 * q) as usize).min(r.len() - 1)];
    if report.json {
        for r in &rows {
            println!(
                "{{\"kind\":\"fsync\",\"what\":{},\"bytes\":{},\"busy_threads\":{},\"busy_threads_yield\":{},\"samples\":{},\"median_ns\":{:.0},\"mean_ns\":{:.0},\"p90_ns\":{:.0},\"p99_ns\":{:.0},\"min_ns\":{:.0},\"max_ns\":{:.0}}}",
                json_string(r.what),
                r.bytes,
                r.busy,
                r.yielding,
                r.samples.len(),
                r.samples.median(),
                mean(&r.samples),
                quantile(&r.samples, 0.9),
                quantile(&r.samples, 0.99),
                r.samples.min(),
                r.samples.max()
            );
        }
        report.json_load("fsync", load);
        return Ok(one);
    }
    println!("## One fdatasync on this file system");
    println!();
    println!(
        "`write` then `File::sync_data` (`fdatasync`), {} times each, in the scratch directory. Appending \
         grows the file, so each sync also commits the new size through the file system's journal (the \
         engine's journal always appends); overwriting the same block is the floor. \"busy threads\": meanwhile \
         that many threads spin, calling `yield` every 64 spins (\"yield\": what an idle engine thread does \
         under spin-yield) or never (\"spin\": a thread busy matching, or a client sending): the time then \
         includes waiting for a core once the device has finished.",
        args.fsync_samples
    );
    println!();
    println!("| write, then fdatasync | busy threads | median ms | mean ms | p90 ms | p99 ms | min ms | max ms |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.what,
            match (r.busy, r.yielding) {
                (0, _) => "none".to_string(),
                (n, true) => format!("{n}, yield"),
                (n, false) => format!("{n}, spin"),
            },
            millis(r.samples.median()),
            millis(mean(&r.samples)),
            millis(quantile(&r.samples, 0.9)),
            millis(quantile(&r.samples, 0.99)),
            millis(r.samples.min()),
            millis(r.samples.max()),
        );
    }
    println!();
    println!(
        "- One durable append here: **{} ms** (median), i.e. at most {} synced groups a second on one thread.",
        millis(one),
        grouped(1e9 / one)
    );
    println!();
    report.load_note(load);
    Ok(one)
}

// ----- part 1: journaled throughput -----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Journal {
    None,
    Off,
    Batch,
    Always,
}

impl From<JournalChoice> for Journal {
    fn from(choice: JournalChoice) -> Journal {
        match choice {
            JournalChoice::None => Journal::None,
            JournalChoice::Off => Journal::Off,
            JournalChoice::Batch => Journal::Batch,
            JournalChoice::Always => Journal::Always,
        }
    }
}

impl Journal {
    fn key(self) -> &'static str {
        match self {
            Journal::None => "none",
            Journal::Off => "off",
            Journal::Batch => "batch",
            Journal::Always => "always",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Journal::None => "no journal",
            Journal::Off => "journal, fsync off",
            Journal::Batch => "journal, fsync batch",
            Journal::Always => "journal, fsync always",
        }
    }

    fn policy(self) -> Option<FsyncPolicy> {
        match self {
            Journal::None => None,
            Journal::Off => Some(FsyncPolicy::Off),
            Journal::Batch => Some(FsyncPolicy::Batch),
            Journal::Always => Some(FsyncPolicy::Always),
        }
    }

    /// Busy threads: the client and the shard, and the journal thread.
    fn threads(self) -> usize {
        if self == Journal::None { 2 } else { 3 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Variant {
    journal: Journal,
    batch: usize,
    /// Timed commands (the whole flow, or a prefix).
    commands: usize,
    /// Warm-up state recovered from a copy of a warm-up journal instead of submitted.
    recovered_warmup: bool,
}

struct RunOutcome {
    elapsed: Duration,
    checksum: Checksum,
    io: IoCounts,
    /// CPU time of the client, shard and journal threads in the timed window.
    cpu: ThreadCpu,
}

/// CPU seconds by thread role, from `/proc/self/task/*/stat` (10 ms ticks).
#[derive(Clone, Copy, Debug, Default)]
struct ThreadCpu {
    client: f64,
    shard: f64,
    journal: f64,
}

/// Each living thread of this process: (tid, name, user + system ticks).
fn thread_ticks() -> Vec<(u64, String, u64)> {
    let Ok(tasks) = fs::read_dir("/proc/self/task") else { return Vec::new() };
    tasks
        .filter_map(|task| {
            let task = task.ok()?;
            let tid = task.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(task.path().join("stat")).ok()?;
            let (open, close) = (stat.find('(')?, stat.rfind(')')?);
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
            Some((tid, stat[open + 1..close].to_string(), ticks))
        })
        .collect()
}

impl ThreadCpu {
    /// The CPU time each role's threads (alive at both reads) used between them.
    fn between(before: &[(u64, String, u64)], after: &[(u64, String, u64)], client_tid: u64) -> ThreadCpu {
        let mut cpu = ThreadCpu::default();
        for (tid, name, ticks) in after {
            let Some((_, _, earlier)) = before.iter().find(|(t, _, _)| t == tid) else { continue };
            let seconds = ticks.saturating_sub(*earlier) as f64 / JIFFIES_PER_S;
            if *tid == client_tid {
                cpu.client += seconds;
            } else if name.starts_with("shard-") {
                cpu.shard += seconds;
            } else if name == "journal" {
                cpu.journal += seconds;
            }
        }
        cpu
    }

    fn add(&mut self, other: ThreadCpu) {
        self.client += other.client;
        self.shard += other.shard;
        self.journal += other.journal;
    }
}

/// This thread's id (the client's).
fn own_tid() -> u64 {
    fs::read_link("/proc/thread-self").ok().and_then(|p| p.file_name()?.to_str()?.parse().ok()).unwrap_or(0)
}

/// One timed run in the empty directory `dir`: start the engine, bring it
/// to the warm-up state (submitted and drained, or recovered from a copy of
/// `warm_journal`), then time `actions` from the first submit to the last
/// event delivered. The engine is shut down after the clock stops.
fn throughput_run(
    prepared: &Prepared,
    wait: WaitStrategy,
    variant: Variant,
    dir: &Path,
    warm_journal: Option<&Path>,
) -> anyhow::Result<RunOutcome> {
    let actions = &prepared.actions[..variant.commands];
    let (durability, stats) = match variant.journal.policy() {
        Some(policy) => {
            if variant.recovered_warmup {
                copy_files(warm_journal.ok_or_else(|| anyhow!("no warm-up journal"))?, dir)?;
            }
            let (durability, stats) = durability(dir, policy)?;
            (Some(durability), Some(stats))
        }
        None => (None, None),
    };
    let (engine, mut reader) =
        Engine::<()>::start(one_shard_config(&prepared.exchange, wait, variant.batch, durability))?;
    let warmed = prepared.warmup_actions.len() as u64 + 1;
    if engine.next_seq() == 1 {
        pump(&engine, &mut reader, &prepared.warmup_actions, WARMUP_BATCH, ClientIdle::Nap(wait), &mut DiscardEvents)?;
    }
    ensure!(engine.next_seq() == warmed, "the engine starts the timed commands at seq {}", engine.next_seq());
    ensure!(reader.next_seq() == warmed, "the reader starts at seq {}", reader.next_seq());
    let before = stats.as_ref().map(|s| s.counts()).unwrap_or_default();
    let (client_tid, ticks_before) = (own_tid(), thread_ticks());
    let mut sink = Checksum::default();
    let actions = black_box(actions);
    let started = Instant::now();
    pump(&engine, &mut reader, actions, variant.batch, ClientIdle::Nap(wait), &mut sink)?;
    let elapsed = started.elapsed();
    let cpu = ThreadCpu::between(&ticks_before, &thread_ticks(), client_tid);
    let io = stats.as_ref().map(|s| s.counts().since(before)).unwrap_or_default();
    engine.shutdown();
    Ok(RunOutcome { elapsed, checksum: black_box(sink), io, cpu })
}

struct ThroughputRow {
    variant: Variant,
    runs: usize,
    rates: Rates,
    /// The I/O of the run with the median rate.
    io: IoCounts,
    /// Its elapsed time.
    elapsed: Duration,
    /// CPU cores each role used on average over all runs (CPU time ÷ elapsed time, summed over
    /// runs); `None` when the runs were too short for 10 ms ticks (under half a second in all).
    cores: Option<ThreadCpu>,
}

/// Runs every variant `runs` times, interleaved, each against `expected`.
fn throughput_rows(
    prepared: &Prepared,
    wait: WaitStrategy,
    scratch: &Scratch,
    variants: &[Variant],
    runs: usize,
    expected: Checksum,
    warm_journal: Option<&Path>,
) -> anyhow::Result<Vec<ThroughputRow>> {
    let mut outcomes: Vec<Vec<RunOutcome>> = variants.iter().map(|_| Vec::new()).collect();
    for run in 1..=runs {
        for (variant, outcomes) in variants.iter().zip(&mut outcomes) {
            let dir = scratch.fresh("run")?;
            let outcome = throughput_run(prepared, wait, *variant, &dir, warm_journal)?;
            scratch.remove("run")?;
            let label = format!("{}, batch {}, {} commands", variant.journal.label(), variant.batch, variant.commands);
            ensure!(
                outcome.checksum == expected,
                "{label} run {run}: the engine's events differ from the bare core's: {:?}, the core gave {expected:?}",
                outcome.checksum
            );
            let rate = variant.commands as f64 / outcome.elapsed.as_secs_f64();
            eprintln!(
                "  {label} run {run}: {:.4} s, {}/s, {} fdatasyncs",
                outcome.elapsed.as_secs_f64(),
                grouped(rate),
                outcome.io.syncs
            );
            outcomes.push(outcome);
        }
    }
    Ok(variants
        .iter()
        .zip(outcomes)
        .map(|(&variant, mut outcomes)| {
            outcomes.sort_by_key(|o| std::cmp::Reverse(o.elapsed));
            let rates = Rates::of(outcomes.iter().map(|o| variant.commands as f64 / o.elapsed.as_secs_f64()).collect());
            let median = &outcomes[outcomes.len() / 2];
            let mut cpu = ThreadCpu::default();
            outcomes.iter().for_each(|o| cpu.add(o.cpu));
            let wall: f64 = outcomes.iter().map(|o| o.elapsed.as_secs_f64()).sum();
            let cores = (wall >= 0.5).then(|| ThreadCpu {
                client: cpu.client / wall,
                shard: cpu.shard / wall,
                journal: cpu.journal / wall,
            });
            ThroughputRow { variant, runs, rates, io: median.io, elapsed: median.elapsed, cores }
        })
        .collect())
}

/// What the throughput part found, for the targets.
#[derive(Default)]
struct ThroughputSummary {
    /// (batch, batch-fsync commands/s, unjournaled commands/s), whole flow.
    batch_vs_none: Vec<(usize, f64, f64)>,
}

fn throughput_part(
    args: &Args,
    report: &Report,
    scratch: &Scratch,
    prepared: &Prepared,
) -> anyhow::Result<ThroughputSummary> {
    let Prepared { flow, exchange, .. } = prepared;
    let wait: WaitStrategy = args.wait;
    let meter = LoadMeter::start();
    let (bare, expected) = bare_rates(exchange, &flow.warmup, &flow.commands, args.runs)?;
    eprintln!("  bare core: {}/s (median of {})", grouped(bare.median()), args.runs);
    let whole = flow.commands.len();
    let wanted = |journal: Journal| args.journals.iter().any(|&j| Journal::from(j) == journal);
    let variants: Vec<Variant> = args
        .batch_list
        .iter()
        .flat_map(|&batch| {
            [Journal::None, Journal::Off, Journal::Batch]
                .into_iter()
                .filter(|&j| wanted(j))
                .map(move |journal| Variant { journal, batch, commands: whole, recovered_warmup: false })
        })
        .collect();
    let rows = throughput_rows(prepared, wait, scratch, &variants, args.runs, expected, None)?;
    let load = meter.stop();

    // fsync always, on a prefix; beside no journal and batch on the same prefix.
    let meter = LoadMeter::start();
    let prefix = args.always_commands.min(whole);
    let mut short_rows = Vec::new();
    if wanted(Journal::Always) {
        let (_, prefix_expected) = bare_run(exchange, &flow.warmup, &flow.commands[..prefix]);
        let warm = scratch.fresh("warmup-journal")?;
        {
            let (durability, _) = durability(&warm, FsyncPolicy::Batch)?;
            let config = one_shard_config(exchange, wait, WARMUP_BATCH, Some(durability));
            let (engine, mut reader) = Engine::<()>::start(config)?;
            pump(
                &engine,
                &mut reader,
                &prepared.warmup_actions,
                WARMUP_BATCH,
                ClientIdle::Nap(wait),
                &mut DiscardEvents,
            )?;
            engine.shutdown();
        }
        let short =
            |journal, batch| Variant { journal, batch, commands: prefix, recovered_warmup: journal != Journal::None };
        let quick: Vec<Variant> = args
            .batch_list
            .iter()
            .flat_map(|&b| [short(Journal::None, b), short(Journal::Batch, b)])
            .filter(|v| wanted(v.journal))
            .collect();
        short_rows = throughput_rows(prepared, wait, scratch, &quick, args.runs, prefix_expected, Some(&warm))?;
        let slow: Vec<Variant> = args.batch_list.iter().map(|&b| short(Journal::Always, b)).collect();
        short_rows.extend(throughput_rows(
            prepared,
            wait,
            scratch,
            &slow,
            args.always_runs,
            prefix_expected,
            Some(&warm),
        )?);
        scratch.remove("warmup-journal")?;
    }
    let short_load = meter.stop();

    let unjournaled = |rows: &[ThroughputRow], batch: usize| {
        rows.iter()
            .find(|r| r.variant.journal == Journal::None && r.variant.batch == batch)
            .map_or(f64::NAN, |r| r.rates.median())
    };
    let summary = ThroughputSummary {
        batch_vs_none: rows
            .iter()
            .filter(|r| r.variant.journal == Journal::Batch)
            .map(|r| (r.variant.batch, r.rates.median(), unjournaled(&rows, r.variant.batch)))
            .collect(),
    };
    let all_rows = || rows.iter().map(|r| (r, &rows)).chain(short_rows.iter().map(|r| (r, &short_rows)));
    if report.json {
        prepared.print_bare_core_json("throughput_bare_core", args.runs, args.seed, expected.events, &bare);
        for (r, table) in all_rows() {
            let none = unjournaled(table, r.variant.batch);
            println!(
                "{{\"kind\":\"throughput\",\"journal\":\"{}\",\"shards\":1,\"threads\":{},\"batch\":{},\"commands\":{},\"warmup_recovered\":{},\"wait\":\"{}\",\"runs\":{},{},\"over_unjournaled\":{},\"fdatasyncs\":{},\"commands_per_fdatasync\":{:.1},\"fdatasyncs_per_s\":{:.1},\"fdatasync_mean_ns\":{:.0},\"time_in_fdatasync\":{:.4},\"writes\":{},\"bytes_written\":{},\"time_in_write\":{:.4},\"cpu_cores_client\":{},\"cpu_cores_shard\":{},\"cpu_cores_journal\":{}}}",
                r.variant.journal.key(),
                r.variant.journal.threads(),
                r.variant.batch,
                r.variant.commands,
                r.variant.recovered_warmup,
                wait_name(wait),
                r.runs,
                r.rates.json("commands_per_s"),
                if none.is_nan() { "null".to_string() } else { format!("{:.3}", r.rates.median() / none) },
                r.io.syncs,
                r.variant.commands as f64 / r.io.syncs.max(1) as f64,
                r.io.syncs as f64 / r.elapsed.as_secs_f64(),
                r.io.mean_sync_ns(),
                r.io.sync_ns as f64 / r.elapsed.as_nanos() as f64,
                r.io.writes,
                r.io.write_bytes,
                r.io.write_ns as f64 / r.elapsed.as_nanos() as f64,
                r.cores.map_or_else(|| "null".to_string(), |c| format!("{:.3}", c.client)),
                r.cores.map_or_else(|| "null".to_string(), |c| format!("{:.3}", c.shard)),
                r.cores.map_or_else(|| "null".to_string(), |c| format!("{:.3}", c.journal)),
            );
        }
        report.json_load("throughput", load);
        if !short_rows.is_empty() {
            report.json_load("throughput_always", short_load);
        }
        return Ok(summary);
    }
    let top = prepared.top_symbol_share();
    println!("## Journaled throughput");
    println!();
    println!(
        "`generate_multi({}, {}, {})`: {} symbols with Zipf popularity (the top one {:.1}% of commands), each a \
         `normal` session; {} warm-up commands (submitted and drained before the clock starts, journaled too) \
         then {} timed commands, {} events. One shard. Fresh engine and fresh, empty data directory per run; \
         runs of the variants interleaved. Timed from the first submit until the reader has delivered the last \
         event — with a journal the reader releases a command's events only once the command is durable, so \
         this is *submitted → durable → delivered*. Every run's events have the bare core's count and checksum \
         ({} events, {:016x}). wait {}. Threads: the client (submits and reads), the shard, and with a journal \
         the journal thread († = more busy threads than the {} cores). fdatasyncs are counted in the timed \
         window by the bench's storage wrapper (the final sync at shutdown is not in it); a group = the \
         records one fdatasync made durable. CPU cores = each thread's CPU time in the timed windows (from \
         `/proc/self/task/*/stat`, 10 ms ticks) ÷ their elapsed time, over all runs of the row (shown when \
         those add up to 0.5 s or more); the three together can use at most {} here.",
        args.symbols,
        args.commands,
        args.seed,
        flow.symbols.len(),
        100.0 * top,
        grouped(flow.warmup.len() as f64),
        grouped(whole as f64),
        grouped(expected.events as f64),
        grouped(expected.events as f64),
        expected.hash,
        wait_name(wait),
        report.nproc,
        report.nproc
    );
    println!();
    print_throughput_table(report, &rows, Some(&bare));
    println!();
    println!(
        "- fsync off still calls fdatasync: when a segment reaches {mib} MiB (`--segment-mib`) the writer \
         syncs it whole before starting the next (`JournalWriter::rotate`), and syncs the new segment's header \
         and the directory; under fsync off the whole segment is still dirty then, so each rotation writes \
         {mib} MiB back while the engine waits. Under fsync batch the same rotations find almost nothing left \
         to write.",
        mib = args.segment_mib,
    );
    println!();
    report.load_note(load);
    if short_rows.is_empty() {
        return Ok(summary);
    }

    println!("### fsync always, on the first {} commands", grouped(prefix as f64));
    println!();
    println!(
        "`--fsync always` syncs once per command, so it runs on the first {} timed commands of the same flow \
         ({} runs; the others {}), beside no journal and batch on the same prefix. The journaled engines here \
         start from the warm-up state recovered from a copy of a journal of the warm-up (written once with \
         fsync batch), not from submitting it: submitting {} warm-up commands one sync each would take minutes. \
         Ratios are against no journal on the same prefix.",
        grouped(prefix as f64),
        args.always_runs,
        args.runs,
        grouped(flow.warmup.len() as f64)
    );
    println!();
    print_throughput_table(report, &short_rows, None);
    println!();
    report.load_note(short_load);
    Ok(summary)
}

fn print_throughput_table(report: &Report, rows: &[ThroughputRow], bare: Option<&Rates>) {
    println!(
        "| engine | threads | batch | commands | runs | commands/s (median) | min | max | / no journal | fdatasyncs | commands per fdatasync | fdatasyncs/s | mean fdatasync ms | time in fdatasync | write() calls | MB written | CPU cores: client | shard | journal |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    if let Some(bare) = bare {
        println!(
            "| bare core (no engine) | 1 | - | {} | {} | {} | - | - | - | - | - | - | - | - | - | - | - |",
            grouped(rows.first().map_or(0, |r| r.variant.commands) as f64),
            bare.len(),
            bare.grouped_cells()
        );
    }
    for r in rows {
        let none = rows
            .iter()
            .find(|n| n.variant.journal == Journal::None && n.variant.batch == r.variant.batch)
            .map_or(f64::NAN, |n| n.rates.median());
        let journaled = r.variant.journal != Journal::None;
        let dash = || "-".to_string();
        let syncing = journaled;
        println!(
            "| {} | {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.variant.journal.label(),
            r.variant.journal.threads(),
            report.mark(r.variant.journal.threads()),
            r.variant.batch,
            grouped(r.variant.commands as f64),
            r.runs,
            r.rates.grouped_cells(),
            if none.is_nan() { "-".to_string() } else { format!("{:.2}", r.rates.median() / none) },
            if syncing { grouped(r.io.syncs as f64) } else { dash() },
            if syncing && r.io.syncs > 0 {
                format!("{:.1}", r.variant.commands as f64 / r.io.syncs as f64)
            } else {
                dash()
            },
            if syncing { grouped(r.io.syncs as f64 / r.elapsed.as_secs_f64()) } else { dash() },
            if syncing { millis(r.io.mean_sync_ns()) } else { dash() },
            if syncing { format!("{:.0}%", 100.0 * r.io.sync_ns as f64 / r.elapsed.as_nanos() as f64) } else { dash() },
            if journaled { grouped(r.io.writes as f64) } else { dash() },
            if journaled { format!("{:.1}", r.io.write_bytes as f64 / 1e6) } else { dash() },
            r.cores.map_or_else(dash, |c| format!("{:.2}", c.client)),
            r.cores.map_or_else(dash, |c| format!("{:.2}", c.shard)),
            r.cores.filter(|_| journaled).map_or_else(dash, |c| format!("{:.2}", c.journal)),
        );
    }
}

// ----- part 2: acknowledgement latency -----

struct LatencyRow {
    wait: WaitStrategy,
    saturation: f64,
    offered: f64,
    commands: usize,
    achieved: f64,
    latency: Latency,
    syncs: u64,
    sync_p50_ns: u64,
    sync_p99_ns: u64,
    sync_max_ns: u64,
}

#[derive(Default)]
struct LatencySummary {
    /// (wait, offered/s, saturation/s, p99 ns) of every row.
    p99s: Vec<(WaitStrategy, f64, f64, u64)>,
}

/// One open-loop run at `offered`/s on a fresh engine and data directory.
fn latency_row(
    args: &Args,
    scratch: &Scratch,
    prepared: &Prepared,
    wait: WaitStrategy,
    saturation: f64,
    offered: f64,
) -> anyhow::Result<LatencyRow> {
    let Prepared { flow, warmup_actions, actions, exchange } = prepared;
    let n = ((offered * args.latency_seconds) as usize).clamp(1, actions.len());
    let (_, expected) = bare_run(exchange, &flow.warmup, &flow.commands[..n]);
    let mut histogram = new_histogram()?;
    let dir = scratch.fresh("latency")?;
    let (durability, stats) = durability(&dir, FsyncPolicy::Batch)?;
    let (engine, mut reader) = Engine::<()>::start(one_shard_config(exchange, wait, 1, Some(durability)))?;
    pump(&engine, &mut reader, warmup_actions, WARMUP_BATCH, ClientIdle::Nap(wait), &mut DiscardEvents)?;
    stats.histogram().reset();
    let before = stats.counts();
    let mut sink = Checksum::default();
    let idle = ClientIdle::Nap(wait);
    let elapsed = open_loop(&engine, &mut reader, &actions[..n], offered, idle, &mut histogram, &mut sink)?;
    let io = stats.counts().since(before);
    let (sync_p50_ns, sync_p99_ns, sync_max_ns) = quantiles(&stats.histogram());
    engine.shutdown();
    scratch.remove("latency")?;
    ensure!(sink == expected, "latency at {offered}/s: the events differ from the bare core's");
    let row = LatencyRow {
        wait,
        saturation,
        offered,
        commands: n,
        achieved: n as f64 / elapsed.as_secs_f64(),
        latency: Latency::of(&histogram),
        syncs: io.syncs,
        sync_p50_ns,
        sync_p99_ns,
        sync_max_ns,
    };
    eprintln!(
        "  latency {} at {}/s: achieved {}/s, {} µs; {} fdatasyncs (p50 {} p99 {} µs)",
        wait_name(wait),
        grouped(offered),
        grouped(row.achieved),
        row.latency.micros_text(),
        row.syncs,
        micros(row.sync_p50_ns),
        micros(row.sync_p99_ns)
    );
    Ok(row)
}

fn latency_part(
    args: &Args,
    report: &Report,
    scratch: &Scratch,
    prepared: &Prepared,
) -> anyhow::Result<LatencySummary> {
    let Prepared { flow, actions, exchange, .. } = prepared;
    let meter = LoadMeter::start();
    let (_, expected) = bare_run(exchange, &flow.warmup, &flow.commands);
    let mut rows = Vec::new();
    for &choice in &args.latency_waits {
        let wait: WaitStrategy = choice;
        let variant = Variant { journal: Journal::Batch, batch: 1, commands: actions.len(), recovered_warmup: false };
        let saturation = throughput_rows(prepared, wait, scratch, &[variant], args.runs, expected, None)?;
        let saturation = saturation[0].rates.median();
        for offered in offered_rates(&args.rates, &args.saturation_fractions, saturation) {
            rows.push(latency_row(args, scratch, prepared, wait, saturation, offered)?);
        }
    }
    let load = meter.stop();
    let summary =
        LatencySummary { p99s: rows.iter().map(|r| (r.wait, r.offered, r.saturation, r.latency.p99_ns)).collect() };
    if report.json {
        for r in &rows {
            println!(
                "{{\"kind\":\"latency\",\"journal\":\"batch\",\"wait\":\"{}\",\"offered_per_s\":{:.0},\"saturation_per_s\":{:.0},\"saturation_runs\":{},\"commands\":{},\"achieved_per_s\":{:.0},{},\"fdatasyncs\":{},\"commands_per_fdatasync\":{:.1},\"fdatasync_p50_ns\":{},\"fdatasync_p99_ns\":{},\"fdatasync_max_ns\":{}}}",
                wait_name(r.wait),
                r.offered,
                r.saturation,
                args.runs,
                r.commands,
                r.achieved,
                r.latency.json(),
                r.syncs,
                r.commands as f64 / r.syncs.max(1) as f64,
                r.sync_p50_ns,
                r.sync_p99_ns,
                r.sync_max_ns
            );
        }
        report.json_load("latency", load);
        return Ok(summary);
    }
    println!("## Acknowledgement latency (submit → durable), fsync batch");
    println!();
    println!(
        "The flow above, one shard, journal with `--fsync batch`; fresh engine and data directory per rate, \
         warm-up submitted and drained first. Open loop: command i is due at t0 + i / rate; the one client \
         thread sends each command alone (batch 1) when due and polls the reader between sends. Latency = \
         the time the reader delivered the command's last event (so it is durable) − its intended send time: \
         time the client spent behind schedule counts (no coordinated omission). {} s of flow per rate (at \
         most {} commands). Saturation = closed-loop throughput of the same engine at batch 1 (median of {} \
         runs). The fdatasync columns are the journal's syncs during the run (count, and the duration of \
         each as the journal thread saw it: the device, plus any wait for a core after it completed). \
         Threads: client, shard, journal (3 on {} cores). wait: how the engine's threads idle; the client \
         idles alike (spin-yield: spin, then `yield`; park: spin, yield, then nap 20 µs, so a delivery may \
         be seen up to ~70 µs late, which counts in its latency).",
        args.latency_seconds,
        grouped(actions.len() as f64),
        args.runs,
        report.nproc,
    );
    println!();
    println!(
        "| wait | saturation/s | offered/s | of saturation | commands | achieved/s | p50 µs | p99 µs | p99.9 µs | max µs | fdatasyncs | commands per fdatasync | fdatasync p50 µs | p99 µs | max µs |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.0}% | {} | {} | {} | {} | {:.1} | {} | {} | {} |",
            wait_name(r.wait),
            grouped(r.saturation),
            grouped(r.offered),
            100.0 * r.offered / r.saturation,
            grouped(r.commands as f64),
            grouped(r.achieved),
            r.latency.micros_cells(),
            grouped(r.syncs as f64),
            r.commands as f64 / r.syncs.max(1) as f64,
            micros(r.sync_p50_ns),
            micros(r.sync_p99_ns),
            micros(r.sync_max_ns),
        );
    }
    println!();
    report.load_note(load);
    Ok(summary)
}

// ----- recovery timing, shared by parts 3 and 4 -----

/// What one recovery gave.
struct Recovered {
    elapsed: Duration,
    state_hash: u64,
    orders: usize,
    records_applied: u64,
    last_seq: u64,
}

fn time_recover_books(exchange: &Config, dir: &Path) -> anyhow::Result<Recovered> {
    let config = one_shard_config(exchange, WaitStrategy::default(), 1, Some(plain_durability(dir)?));
    let started = Instant::now();
    let (exchanges, report) = recover_books(&config, false)?;
    let elapsed = started.elapsed();
    let mut parts: Vec<_> = exchanges.iter().flat_map(Exchange::book_states).collect();
    Ok(Recovered {
        elapsed,
        state_hash: hash_books(&mut parts),
        orders: exchanges.iter().map(Exchange::order_count).sum(),
        records_applied: report.records_applied,
        last_seq: report.last_seq,
    })
}

/// Time of `Engine::start` on `dir` (recovery, then threads and journal
/// opened); the engine is shut down untimed.
fn time_engine_start(exchange: &Config, wait: WaitStrategy, dir: &Path) -> anyhow::Result<Duration> {
    let config = one_shard_config(exchange, wait, 1, Some(plain_durability(dir)?));
    let started = Instant::now();
    let (engine, _reader) = Engine::<()>::start(config)?;
    let elapsed = started.elapsed();
    engine.shutdown();
    Ok(elapsed)
}

/// Time to read every file of `dir` into memory.
fn time_read(dir: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut bytes = 0usize;
    for (path, _) in files(dir, "")? {
        bytes += black_box(fs::read(&path)?).len();
    }
    black_box(bytes);
    Ok(started.elapsed())
}

/// A directory recovered, and how.
struct RecoveryCase {
    label: &'static str,
    dir: PathBuf,
    cold: bool,
}

struct RecoveryRow {
    label: &'static str,
    cold: bool,
    journal_records: u64,
    records_applied: u64,
    /// Resting orders in the recovered state.
    orders: usize,
    journal_bytes: u64,
    snapshot_bytes: u64,
    recover: Rates,
    start: Rates,
    read: Rates,
}

impl RecoveryRow {
    /// Journal records recovered per second of `recover_books` (median).
    fn per_s(&self) -> f64 {
        self.journal_records as f64 / self.recover.median()
    }

    /// The rate and seconds per million, or dashes without a journal.
    fn rate_cells(&self) -> (String, String) {
        if self.journal_records == 0 {
            return ("-".to_string(), "-".to_string());
        }
        (grouped(self.per_s()), format!("{:.3}", 1e6 / self.per_s()))
    }
}

/// Times `recover_books`, `Engine::start` and reading the files, `runs`
/// times per case, cases interleaved; every recovery must give `state_hash`.
fn recovery_rows(
    cases: &[RecoveryCase],
    exchange: &Config,
    wait: WaitStrategy,
    runs: usize,
    state_hash: u64,
) -> anyhow::Result<Vec<RecoveryRow>> {
    let mut times: Vec<[Vec<f64>; 3]> = cases.iter().map(|_| Default::default()).collect();
    let mut shapes = vec![(0u64, 0u64, 0usize); cases.len()];
    // What each directory holds before anything runs on it.
    let mut contents = Vec::new();
    for case in cases {
        contents.push((files(&case.dir, "")?, files(&case.dir, "journal-")?, files(&case.dir, "snapshot-")?));
    }
    for run in 1..=runs {
        for (i, case) in cases.iter().enumerate() {
            if case.cold {
                drop_caches()?;
            }
            let recovered = time_recover_books(exchange, &case.dir)?;
            ensure!(
                recovered.state_hash == state_hash,
                "{}: recovery gave state {:016x}, the engine had {state_hash:016x}",
                case.label,
                recovered.state_hash
            );
            if case.cold {
                drop_caches()?;
            }
            let start = time_engine_start(exchange, wait, &case.dir)?;
            // Starting on a snapshot alone creates an empty segment to continue from: remove it.
            for (path, _) in files(&case.dir, "")? {
                if !contents[i].0.iter().any(|(p, _)| *p == path) {
                    fs::remove_file(&path)?;
                }
            }
            if case.cold {
                drop_caches()?;
            }
            let read = time_read(&case.dir)?;
            eprintln!(
                "  recovery {}{} run {run}: recover_books {:.3} s ({} orders resting, {} records applied), \
                 Engine::start {:.3} s, read {:.3} s",
                case.label,
                if case.cold { " (cold)" } else { "" },
                recovered.elapsed.as_secs_f64(),
                grouped(recovered.orders as f64),
                grouped(recovered.records_applied as f64),
                start.as_secs_f64(),
                read.as_secs_f64()
            );
            times[i][0].push(recovered.elapsed.as_secs_f64());
            times[i][1].push(start.as_secs_f64());
            times[i][2].push(read.as_secs_f64());
            shapes[i] = (recovered.records_applied, recovered.last_seq, recovered.orders);
        }
    }
    let mut rows = Vec::new();
    for (((case, [recover, start, read]), (records_applied, last_seq, orders)), (_, journal, snapshots)) in
        cases.iter().zip(times).zip(shapes).zip(contents)
    {
        let journal_bytes = journal.iter().map(|f| f.1).sum();
        let snapshot_bytes = snapshots.iter().map(|f| f.1).sum();
        rows.push(RecoveryRow {
            label: case.label,
            cold: case.cold,
            // Every journal here starts at seq 1 (nothing was pruned).
            journal_records: if journal_bytes > 0 { last_seq } else { 0 },
            records_applied,
            orders,
            journal_bytes,
            snapshot_bytes,
            recover: Rates::of(recover),
            start: Rates::of(start),
            read: Rates::of(read),
        });
    }
    Ok(rows)
}

fn print_recovery_rows(report: &Report, table: &str, rows: &[RecoveryRow], runs: usize) {
    if report.json {
        for r in rows {
            println!(
                "{{\"kind\":\"{table}\",\"state_from\":{},\"cold_cache\":{},\"journal_records\":{},\"records_applied\":{},\"orders_resting\":{},\"journal_bytes\":{},\"snapshot_bytes\":{},\"runs\":{runs},\"recover_books_s_median\":{:.4},\"recover_books_s_min\":{:.4},\"recover_books_s_max\":{:.4},\"journal_records_per_s\":{},\"s_per_million_journaled\":{},\"engine_start_s_median\":{:.4},\"read_files_s_median\":{:.4}}}",
                json_string(r.label),
                r.cold,
                r.journal_records,
                r.records_applied,
                r.orders,
                r.journal_bytes,
                r.snapshot_bytes,
                r.recover.median(),
                r.recover.min(),
                r.recover.max(),
                if r.journal_records > 0 { format!("{:.0}", r.per_s()) } else { "null".to_string() },
                if r.journal_records > 0 { format!("{:.4}", 1e6 / r.per_s()) } else { "null".to_string() },
                r.start.median(),
                r.read.median()
            );
        }
        return;
    }
    println!(
        "| state from | page cache | commands in journal | records applied | orders resting after | journal MB | snapshot MB | recover_books s (median of {runs}) | min | max | journaled commands/s | s per million | Engine::start s | reading the files s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let (rate, per_million) = r.rate_cells();
        println!(
            "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.3} | {:.3} | {:.3} | {rate} | {per_million} | {:.3} | {:.3} |",
            r.label,
            if r.cold { "dropped" } else { "warm" },
            grouped(r.journal_records as f64),
            grouped(r.records_applied as f64),
            grouped(r.orders as f64),
            r.journal_bytes as f64 / 1e6,
            r.snapshot_bytes as f64 / 1e6,
            r.recover.median(),
            r.recover.min(),
            r.recover.max(),
            r.start.median(),
            r.read.median(),
        );
    }
}

/// Adds the cold-cache twin of every case when `--cold`.
fn with_cold(args: &Args, cases: Vec<RecoveryCase>) -> Vec<RecoveryCase> {
    let mut out = Vec::new();
    for case in cases {
        if args.cold {
            out.push(RecoveryCase { label: case.label, dir: case.dir.clone(), cold: true });
        }
        out.push(case);
    }
    out
}

// ----- part 3: recovery per million journaled commands -----

#[derive(Default)]
struct RecoverySummary {
    /// (label, journaled commands/s) of every warm row.
    rates: Vec<(&'static str, f64)>,
}

fn recovery_part(
    args: &Args,
    report: &Report,
    scratch: &Scratch,
    prepared: &Prepared,
) -> anyhow::Result<RecoverySummary> {
    let Prepared { flow, warmup_actions, actions, exchange } = prepared;
    let wait: WaitStrategy = args.wait;
    let meter = LoadMeter::start();
    // The journal: warm-up and the whole flow, fsync off (durability does not change the bytes), a snapshot half way.
    let full = scratch.fresh("recovery-with-snapshot")?;
    let (durability, _) = durability(&full, FsyncPolicy::Off)?;
    let (engine, mut reader) = Engine::<()>::start(one_shard_config(exchange, wait, 256, Some(durability)))?;
    let written = Instant::now();
    pump(&engine, &mut reader, warmup_actions, WARMUP_BATCH, ClientIdle::Nap(wait), &mut DiscardEvents)?;
    let half = actions.len() / 2;
    pump(&engine, &mut reader, &actions[..half], 256, ClientIdle::Nap(wait), &mut DiscardEvents)?;
    let snapshot_started = Instant::now();
    let snapshot_seq = engine.snapshot()?;
    let snapshot_time = snapshot_started.elapsed();
    pump(&engine, &mut reader, &actions[half..], 256, ClientIdle::Nap(wait), &mut DiscardEvents)?;
    let state_hash = engine.state_hash()?;
    let last_seq = engine.next_seq() - 1;
    engine.shutdown();
    let written = written.elapsed();
    let mut core: Exchange = Exchange::new(exchange.clone());
    core.process_all(&flow.warmup, &mut DiscardEvents);
    core.process_all(&flow.commands, &mut DiscardEvents);
    ensure!(core.state_hash() == state_hash, "the journaled engine's state differs from the bare core's");
    let plain = scratch.fresh("recovery-journal-only")?;
    link_files(&full, &plain, "journal-")?;
    let cases = with_cold(
        args,
        vec![
            RecoveryCase { label: "journal only", dir: plain, cold: false },
            RecoveryCase { label: "snapshot at half + journal", dir: full, cold: false },
        ],
    );
    let rows = recovery_rows(&cases, exchange, wait, args.runs, state_hash)?;
    let load = meter.stop();
    scratch.remove("recovery-journal-only")?;
    scratch.remove("recovery-with-snapshot")?;
    let summary = RecoverySummary { rates: rows.iter().filter(|r| !r.cold).map(|r| (r.label, r.per_s())).collect() };
    if report.json {
        println!(
            "{{\"kind\":\"recovery_setup\",\"journal_records\":{last_seq},\"snapshot_seq\":{snapshot_seq},\"snapshot_s\":{:.4},\"write_s\":{:.3}}}",
            snapshot_time.as_secs_f64(),
            written.as_secs_f64()
        );
        print_recovery_rows(report, "recovery", &rows, args.runs);
        report.json_load("recovery", load);
        return Ok(summary);
    }
    println!("## Recovery per million journaled commands");
    println!();
    println!(
        "A journal of the flow above: {} commands ({} warm-up + {} timed; seq 1..={last_seq}), written by a \
         one-shard engine with fsync off (the bytes are the same under any policy) in {:.1} s, with \
         `engine.snapshot()` taken after seq {snapshot_seq} (half way; it took {:.3} s). \"journal only\" is a \
         second directory holding hard links to the same segments and no snapshot. Timed: \
         `recover_books(config, repair = false)` (read every segment, check every record's CRC and the chain, \
         apply the records after the snapshot through the single-threaded core; with the snapshot, load and \
         hash-check it first), and `Engine::start` on the directory (the same recovery with repair, then the \
         routing window, the shard and journal threads). Every recovery's state hash equals the engine's \
         ({state_hash:016x}), and the bare core's. commands/s = commands in the journal ÷ recover_books time, \
         whatever part of them was applied. \"reading the files\" = `fs::read` of every file alone. Warm page \
         cache: the files were just written{}.",
        grouped(last_seq as f64),
        grouped(flow.warmup.len() as f64),
        grouped(actions.len() as f64),
        written.as_secs_f64(),
        snapshot_time.as_secs_f64(),
        if args.cold { "; the \"dropped\" rows ran after `sync` and `echo 1 > /proc/sys/vm/drop_caches`" } else { "" }
    );
    println!();
    print_recovery_rows(report, "recovery", &rows, args.runs);
    println!();
    report.load_note(load);
    Ok(summary)
}

// ----- part 4: a snapshot of ~1M resting orders -----

/// `orders` `gtc` limit orders that never cross, spread over `symbols`
/// books: bids below the mid, asks above it, each at one of 1,000 levels
/// per side, quantities 1..=100, users 1..=1000. `seq` and id are `i + 1`.
fn resting_book(symbols: usize, orders: usize, seed: u64) -> Vec<Command> {
    const LEVELS: u64 = 1000;
    let names = numbered_symbols(symbols);
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..orders)
        .map(|i| {
            let id = i as u64 + 1;
            let r = next();
            let level = 1 + r % LEVELS;
            let side = if (r >> 20) & 1 == 0 { Side::Buy } else { Side::Sell };
            let price = match side {
                Side::Buy => MID_START_TICKS - level,
                Side::Sell => MID_START_TICKS + level,
            };
            let order = NewOrder::limit(id, 1 + (r >> 32) % 1000, names[i % symbols], side, price, 1 + (r >> 48) % 100);
            Command::new(id, Action::New(order))
        })
        .collect()
}

struct SnapshotTimes {
    total: Rates,
    query: Rates,
    encode: Rates,
    write: Rates,
}

fn snapshot_part(args: &Args, report: &Report, scratch: &Scratch) -> anyhow::Result<()> {
    let wait: WaitStrategy = args.wait;
    let meter = LoadMeter::start();
    let commands = resting_book(args.snapshot_symbols, args.snapshot_orders, args.seed);
    let actions: Vec<Action> = commands.iter().map(|c| c.action).collect();
    let exchange = exchange_config(args.snapshot_orders as u64, 1024);
    let mut core: Exchange = Exchange::new(exchange.clone());
    core.process_all(&commands, &mut DiscardEvents);
    let state_hash = core.state_hash();
    let resting = core.order_count();
    ensure!(resting == args.snapshot_orders, "{resting} of {} orders rest: some crossed", args.snapshot_orders);
    drop(core);

    let dir = scratch.fresh("snapshot")?;
    let side = scratch.fresh("snapshot-write-only")?;
    let side_storage = FsStorage::open(&side)?;
    let (durability, _) = durability(&dir, FsyncPolicy::Batch)?;
    let (engine, mut reader) = Engine::<()>::start(one_shard_config(&exchange, wait, WARMUP_BATCH, Some(durability)))?;
    let built = Instant::now();
    pump(&engine, &mut reader, &actions, WARMUP_BATCH, ClientIdle::Nap(wait), &mut DiscardEvents)?;
    let built = built.elapsed();
    ensure!(engine.state_hash()? == state_hash, "the engine's book differs from the bare core's");
    let (mut total, mut query, mut encode, mut write) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut seq = 0;
    let mut body_bytes = 0;
    for run in 1..=args.runs {
        let started = Instant::now();
        seq = engine.snapshot()?;
        total.push(started.elapsed().as_secs_f64());
        // The same steps one at a time: the state query, hashing and
        // encoding, and writing (to another directory, the same file system).
        let started = Instant::now();
        let Answer::State(mut parts) = engine.query(Query::State)? else { bail!("a State query gave no state") };
        query.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        let hash = hash_books(&mut parts);
        let body = encode_books(&mut parts);
        encode.push(started.elapsed().as_secs_f64());
        ensure!(hash == state_hash, "the snapshot's state hash differs from the bare core's");
        let started = Instant::now();
        write_snapshot(&side_storage, seq, hash, &body)?;
        write.push(started.elapsed().as_secs_f64());
        body_bytes = body.len();
        eprintln!(
            "  snapshot run {run}: {:.3} s (query {:.3}, hash+encode {:.3}, write+fsync+rename {:.3})",
            total[run - 1],
            query[run - 1],
            encode[run - 1],
            write[run - 1]
        );
    }
    engine.shutdown();
    let times = SnapshotTimes {
        total: Rates::of(total),
        query: Rates::of(query),
        encode: Rates::of(encode),
        write: Rates::of(write),
    };
    let file_bytes = fs::metadata(dir.join(snapshot_name(seq)))?.len();
    scratch.remove("snapshot-write-only")?;
    let load = meter.stop();

    let meter = LoadMeter::start();
    let snapshot_only = scratch.fresh("snapshot-only")?;
    link_files(&dir, &snapshot_only, "snapshot-")?;
    let journal_only = scratch.fresh("snapshot-journal-only")?;
    link_files(&dir, &journal_only, "journal-")?;
    let cases = with_cold(
        args,
        vec![
            RecoveryCase { label: "snapshot only", dir: snapshot_only, cold: false },
            RecoveryCase { label: "snapshot + journal (scanned, not applied)", dir: dir.clone(), cold: false },
            RecoveryCase { label: "journal only (replayed)", dir: journal_only, cold: false },
        ],
    );
    let rows = recovery_rows(&cases, &exchange, wait, args.runs, state_hash)?;
    let recovery_load = meter.stop();
    for name in ["snapshot-only", "snapshot-journal-only", "snapshot"] {
        scratch.remove(name)?;
    }
    let mb = file_bytes as f64 / 1e6;
    if report.json {
        println!(
            "{{\"kind\":\"snapshot\",\"orders\":{resting},\"symbols\":{},\"seq\":{seq},\"file_bytes\":{file_bytes},\"body_bytes\":{body_bytes},\"runs\":{},\"snapshot_s_median\":{:.4},\"snapshot_s_min\":{:.4},\"snapshot_s_max\":{:.4},\"mb_per_s\":{:.1},\"query_s_median\":{:.4},\"hash_encode_s_median\":{:.4},\"write_fsync_rename_s_median\":{:.4},\"build_s\":{:.3}}}",
            args.snapshot_symbols,
            args.runs,
            times.total.median(),
            times.total.min(),
            times.total.max(),
            mb / times.total.median(),
            times.query.median(),
            times.encode.median(),
            times.write.median(),
            built.as_secs_f64()
        );
        report.json_load("snapshot", load);
        print_recovery_rows(report, "snapshot_recovery", &rows, args.runs);
        report.json_load("snapshot_recovery", recovery_load);
        return Ok(());
    }
    println!("## Snapshot of a {}-order book", grouped(resting as f64));
    println!();
    println!(
        "{} `gtc` limit orders that never cross (bids 1..=1000 ticks below {MID_START_TICKS}, asks above, \
         qty 1..=100) over {} symbols, submitted to a one-shard engine with fsync batch in {:.2} s and drained \
         (the book's state hash equals the bare core's). Then `engine.snapshot()` {} times at the same seq \
         ({seq}): state query through the shard, state hash and encoding, wait until the journal is durable \
         through the seq (already), write to a temporary file, fdatasync, rename, directory sync. After each, \
         the same steps separately: `engine.query(Query::State)`, `hash_books` + `encode_books`, and \
         `write_snapshot` into another directory on the same file system.",
        grouped(resting as f64),
        args.snapshot_symbols,
        built.as_secs_f64(),
        args.runs
    );
    println!();
    println!("| step | median s | min s | max s |");
    println!("|---|---:|---:|---:|");
    for (step, r) in [
        ("`engine.snapshot()`, all of it", &times.total),
        ("state query (shard encodes its books)", &times.query),
        ("state hash + encoding", &times.encode),
        ("write + fdatasync + rename + dir sync", &times.write),
    ] {
        println!("| {step} | {:.4} | {:.4} | {:.4} |", r.median(), r.min(), r.max());
    }
    println!();
    println!(
        "- Snapshot file: {} bytes ({:.1} MB, {:.1} bytes per order); `engine.snapshot()` writes it at \
         **{:.0} MB/s** end to end ({} orders/s).",
        grouped(file_bytes as f64),
        mb,
        file_bytes as f64 / resting as f64,
        mb / times.total.median(),
        grouped(resting as f64 / times.total.median())
    );
    println!();
    report.load_note(load);
    println!("### Recovery from that snapshot");
    println!();
    println!(
        "`recover_books` on: the snapshot alone (hard link in an empty directory: decode and hash-check {} \
         orders), the engine's directory (the snapshot, then every journal record before it CRC- and \
         chain-checked but not applied), and its journal alone (replay {} new orders through the core). \
         commands/s = commands in the journal ÷ recover_books time.",
        grouped(resting as f64),
        grouped(resting as f64)
    );
    println!();
    print_recovery_rows(report, "snapshot_recovery", &rows, args.runs);
    println!();
    report.load_note(recovery_load);
    Ok(())
}

// ----- targets -----

fn targets(
    report: &Report,
    fsync_ns: Option<f64>,
    throughput: Option<&ThroughputSummary>,
    latency: Option<&LatencySummary>,
    recovery: Option<&RecoverySummary>,
) {
    let mut lines: Vec<(String, String, bool)> = Vec::new();
    if let Some(t) = throughput {
        for &(batch, journaled, none) in &t.batch_vs_none {
            let ratio = journaled / none;
            if !ratio.is_nan() {
                lines.push((
                    format!("fsync batch ≥ 50% of the unjournaled engine (batch {batch})"),
                    format!("{ratio:.2} ({}/s vs {}/s)", grouped(journaled), grouped(none)),
                    ratio >= 0.5,
                ));
            }
            lines.push((
                format!("fsync batch ≥ 2,000,000 commands/s (batch {batch})"),
                format!("{}/s", grouped(journaled)),
                journaled >= 2e6,
            ));
        }
    }
    if let Some(l) = latency {
        for &(wait, offered, saturation, p99) in &l.p99s {
            lines.push((
                format!(
                    "ack p99 < 3 ms at {}/s ({:.0}% of saturation), {}",
                    grouped(offered),
                    100.0 * offered / saturation,
                    wait_name(wait)
                ),
                format!("{} ms", millis(p99 as f64)),
                p99 < 3_000_000,
            ));
        }
    }
    if let Some(r) = recovery {
        for &(label, rate) in &r.rates {
            lines.push((format!("recovery ≥ 5M commands/s ({label})"), format!("{}/s", grouped(rate)), rate >= 5e6));
        }
    }
    if report.json {
        if let Some(ns) = fsync_ns {
            println!("{{\"kind\":\"fdatasync_median_ns\",\"value\":{ns:.0}}}");
        }
        for (target, result, met) in &lines {
            println!(
                "{{\"kind\":\"target\",\"target\":{},\"result\":{},\"met\":{met}}}",
                json_string(target),
                json_string(result)
            );
        }
        return;
    }
    if lines.is_empty() {
        return;
    }
    println!("## Targets");
    println!();
    if let Some(ns) = fsync_ns {
        println!("One fdatasync (4 KiB append) here: {} ms median.", millis(ns));
        println!();
    }
    println!("| target | result | met |");
    println!("|---|---|---|");
    for (target, result, met) in &lines {
        println!("| {target} | {result} | {} |", if *met { "yes" } else { "**no**" });
    }
    println!();
}

// ----- formatting -----

/// Nanoseconds as milliseconds, 3 decimals.
fn millis(ns: f64) -> String {
    format!("{:.3}", ns / 1e6)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    args.check()?;
    SEGMENT_BYTES.store(args.segment_mib << 20, Ordering::Relaxed);
    let wall = Instant::now();
    let Machine { nproc, cpu, invoked } = Machine::probe();
    let kernel =
        fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| "unknown".into(), |k| k.trim().to_string());
    let report = Report { nproc, json: args.json, breakdown: LoadBreakdown::UserAndKernel };
    let scratch = Scratch::create(args.dir.as_deref())?;
    let fs_text = file_system(&scratch.root);
    if args.json {
        println!(
            "{{\"kind\":\"machine\",\"nproc\":{nproc},\"cpu\":{},\"kernel\":{},\"date\":{},\"flags\":{},\"invoked\":{},\"load_average\":{},\"scratch_dir\":{},\"file_system\":{}}}",
            json_string(&cpu),
            json_string(&kernel),
            json_string(&utc_now()),
            json_string(&args.command_line()),
            json_string(&invoked),
            json_string(&load_average()),
            json_string(&scratch.root.display().to_string()),
            json_string(&fs_text),
        );
    } else {
        println!("# bench-durable");
        println!();
        println!("- machine: nproc = {nproc}, {cpu}, Linux {kernel}");
        println!("- date: {}", utc_now());
        println!("- flags: `{}`", args.command_line());
        println!("- invoked as: `{invoked}`");
        println!("- scratch directory: `{}` on {fs_text} (removed at the end)", scratch.root.display());
        println!("- load average at start: {}", load_average());
        println!();
    }
    std::io::stdout().flush()?;
    let fsync_ns = if args.runs(Part::Fsync) { Some(fsync_part(&args, &report, &scratch)?) } else { None };
    let (mut throughput, mut latency, mut recovery) = (None, None, None);
    if args.runs(Part::Throughput) || args.runs(Part::Latency) || args.runs(Part::Recovery) {
        let prepared = prepare(args.symbols, args.commands, args.seed);
        if args.runs(Part::Throughput) {
            throughput = Some(throughput_part(&args, &report, &scratch, &prepared)?);
        }
        if args.runs(Part::Latency) {
            latency = Some(latency_part(&args, &report, &scratch, &prepared)?);
        }
        if args.runs(Part::Recovery) {
            recovery = Some(recovery_part(&args, &report, &scratch, &prepared)?);
        }
    }
    if args.runs(Part::Snapshot) {
        snapshot_part(&args, &report, &scratch)?;
    }
    targets(&report, fsync_ns, throughput.as_ref(), latency.as_ref(), recovery.as_ref());
    drop(scratch);
    let wall = wall.elapsed();
    if report.json {
        println!(
            "{{\"kind\":\"wall_time\",\"seconds\":{:.1},\"load_average\":{}}}",
            wall.as_secs_f64(),
            json_string(&load_average())
        );
    } else {
        println!("wall time {:.1} s; load average at the end: {}", wall.as_secs_f64(), load_average());
    }
    eprintln!("wall time {:.1?}", wall);
    eprintln!(
        "fdatasync calls through the journal storage wrapper, whole run: {} (with --part throughput, every \
         fdatasync of the process)",
        SYNCS_ALL.load(Ordering::Relaxed)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_args() -> Args {
        Args {
            part: Part::All,
            runs: 1,
            always_runs: 1,
            seed: 3,
            symbols: 4,
            commands: 3_000,
            batch_list: vec![64, 5],
            always_commands: 20,
            journals: vec![JournalChoice::None, JournalChoice::Off, JournalChoice::Batch, JournalChoice::Always],
            wait: WaitStrategy::SpinYield,
            latency_waits: vec![WaitStrategy::SpinYield, WaitStrategy::Park],
            rates: vec![50_000],
            saturation_fractions: vec![0.5],
            latency_seconds: 0.01,
            snapshot_orders: 3_000,
            snapshot_symbols: 3,
            segment_mib: 64,
            fsync_samples: 2,
            cold: false,
            dir: None,
            json: false,
        }
    }

    #[test]
    fn every_part_runs_small_and_cleans_up() {
        let parent = std::env::temp_dir().join(format!("mx-bench-durable-test-{}", std::process::id()));
        fs::create_dir_all(&parent).unwrap();
        run(Args { dir: Some(parent.clone()), ..small_args() }).unwrap();
        run(Args { dir: Some(parent.clone()), json: true, ..small_args() }).unwrap();
        // The scratch directory is gone; only the parent given is left.
        assert_eq!(fs::read_dir(&parent).unwrap().count(), 0);
        fs::remove_dir_all(&parent).unwrap();
    }

    #[test]
    fn the_resting_book_never_crosses() {
        let commands = resting_book(3, 5_000, 7);
        let mut core: Exchange = Exchange::new(Config::default());
        core.process_all(&commands, &mut DiscardEvents);
        assert_eq!(core.order_count(), 5_000);
    }

    #[test]
    fn the_counting_storage_counts_syncs() {
        let scratch = Scratch::create(None).unwrap();
        let dir = scratch.fresh("count").unwrap();
        let (durability, stats) = durability(&dir, FsyncPolicy::Always).unwrap();
        let mut file = durability.storage.create("x").unwrap();
        file.write_all(b"abc").unwrap();
        file.sync_data().unwrap();
        let counts = stats.counts();
        assert_eq!((counts.writes, counts.write_bytes, counts.syncs), (1, 3, 1));
        assert_eq!(stats.histogram().len(), 1);
    }

    #[test]
    fn offered_rates_and_formatting() {
        assert_eq!(offered_rates(&[100_000, 5_000_000], &[0.5], 2_000_000.0), vec![100_000.0, 1_000_000.0]);
        assert_eq!(grouped(1_234_567.8), "1,234,568");
        assert_eq!(json_string("a\"b\n"), "\"a\\\"b\\u000a\"");
        assert!(utc_now().ends_with(" UTC") && utc_now().len() == 23);
    }
}
