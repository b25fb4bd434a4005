//! `kill -9` of `matching-engine replay --data DIR` at random moments loses
//! no acknowledged command, and what survives is exactly a prefix.
//!
//! An episode is a fresh data directory and one to three runs of
//! `replay INPUT --data DIR` on it, each killed (SIGKILL) after a random
//! delay, or let finish when the delay outlasts it. A run after a crash
//! recovers the directory and continues its sequence with the input from
//! its first line again (as `seq` `L(k-1) + 1`), so the journal holds, run
//! after run, the part of the input each run got durable: the *history* is
//! `input[..L1]`, then `input[..L2 - L1]`, then `input[..L3 - L2]`, … where
//! `Lk` is the `last_seq` recovered after run `k` (`L0 = 0`). Line `i` of the
//! history is `seq` `i`; a new order's id is its `seq` there too, so a
//! cancel in a later run names an order of the history by its number, as
//! it would in one long input. The test keeps that history in an in-memory
//! `Exchange` (the oracle: the same parsing and `seq` = position rule as
//! `replay` without `--data`), fed incrementally since the history only
//! grows, and after every run requires:
//!
//! - `journal verify --data DIR` succeeds (it changes nothing) and reports
//!   `L` with `L(k-1) <= L <= L(k-1) + input lines`: what was recovered
//!   before is never lost, and nothing is invented;
//! - (a) every complete event line the run printed has `seq <= L`: an
//!   acknowledged command is durable. More: the printed lines are exactly a
//!   prefix of the oracle's event lines for `seq`s `L(k-1)+1..=L`; a run that
//!   finished printed all of them and made all of them durable;
//! - (b) the state hash recovered equals the oracle's after exactly the
//!   first `L` history lines, and (after some runs, and after the last of
//!   each episode) `recover --data DIR --book BOOK` gives the same `L` and
//!   hash and a book byte-identical to the oracle's.
//!
//! Some episodes use `--shards 2` (all their runs: a data directory keeps
//! its layout); some runs `--snapshot-every N` or `--fsync always`.
//! The next run sometimes starts on the directory as the kill left it
//! (so `replay` itself cuts the torn tail) and sometimes after `recover`
//! repaired it.
//!
//! Prints `seed = N`; `CRASH_KILL9_SEED=N` reruns the same choices. The
//! kill delays are fractions of a whole run's time measured at the start
//! (so they land inside runs on any machine); a rerun kills at the same
//! fractions, not at the same bytes.
//! `CRASH_KILL9_EPISODES` sets the number of episodes (CI can raise it);
//! none starts after `CRASH_KILL9_BUDGET_S` seconds (40).

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use matching_core::{Command as Sequenced, Config, Event, Exchange, Seq};
use matching_proto::json;
use matching_workload::{Scenario, generate_multi_of};

const BINARY: &str = env!("CARGO_BIN_EXE_matching-engine");

/// Longest a `recover` or `journal verify` may take before the test fails.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

fn seed() -> u64 {
    match std::env::var("CRASH_KILL9_SEED") {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("CRASH_KILL9_SEED={text:?} is not a u64")),
        Err(_) => SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
    }
}

/// No episode starts after this much time (a slow or busy machine runs fewer).
fn budget() -> Duration {
    Duration::from_secs(
        std::env::var("CRASH_KILL9_BUDGET_S").map_or(40, |t| t.trim().parse().expect("a number of seconds")),
    )
}

fn episodes() -> usize {
    std::env::var("CRASH_KILL9_EPISODES")
        .map_or(30, |text| text.trim().parse().expect("CRASH_KILL9_EPISODES is a count"))
}

/// SplitMix64.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The input: a generated flow over three symbols (warm-up and timed
/// commands), one JSON command a line, no blank line (line number = seq);
/// now and then a line the parser rejects instead (a journal record with no
/// command), a mass cancel of one of the market makers (of every symbol, so
/// with `--shards 2` it spans both shards, or of one), and a halt of a
/// symbol that a resume lifts 40 lines later.
fn input_lines(seed: u64) -> Vec<Vec<u8>> {
    let flow = generate_multi_of(Scenario::Volatile, 3, 24_000, seed);
    let symbols = flow.symbol_names();
    let mut lines = Vec::new();
    for (i, command) in flow.warmup.iter().chain(&flow.commands).enumerate() {
        let mut line = Vec::new();
        let (round, halted) = (i / 613, symbols[(i / 1499) % symbols.len()]);
        if i % 997 == 500 {
            line.extend_from_slice(b"{\"op\":\"cancel\",\"user\":1}");
        } else if i % 613 == 300 {
            let user = 1 + round % 10;
            let only = if round % 3 == 0 {
                format!(",\"symbol\":\"{}\"", symbols[round % symbols.len()])
            } else {
                String::new()
            };
            line.extend_from_slice(format!("{{\"op\":\"mass_cancel\",\"user\":{user}{only}}}").as_bytes());
        } else if i % 1499 == 700 {
            line.extend_from_slice(format!("{{\"op\":\"halt\",\"symbol\":\"{halted}\"}}").as_bytes());
        } else if i % 1499 == 740 {
            line.extend_from_slice(format!("{{\"op\":\"resume\",\"symbol\":\"{halted}\"}}").as_bytes());
        } else {
            json::write_command(&mut line, &command.action);
            assert_eq!(line.pop(), Some(b'\n'));
        }
        lines.push(line);
    }
    lines
}

/// What `replay` without `--data` would do with the history, line by line.
struct Oracle {
    exchange: Exchange,
    seq: Seq,
}

impl Oracle {
    fn new() -> Oracle {
        Oracle { exchange: Exchange::new(Config::default()), seq: 0 }
    }

    /// Runs one more line; appends its event lines to `out`.
    fn feed(&mut self, line: &[u8], out: &mut Vec<u8>) {
        self.seq += 1;
        let seq = self.seq;
        match json::parse_command(line, seq) {
            Ok(action) => {
                let mut sink = |event: &Event| json::write_event(out, event);
                self.exchange.process(&Sequenced { seq, timestamp_ns: 0, action }, &mut sink);
            }
            Err(reject) => json::write_parse_reject(out, seq, &reject),
        }
    }

    fn state_hash(&self) -> String {
        format!("{:016x}", self.exchange.state_hash())
    }

    fn book(&self) -> Vec<u8> {
        let mut out = Vec::new();
        json::write_books(&mut out, &[&self.exchange]);
        out
    }
}

/// Reads a child's pipe to the end on a thread.
fn collect(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        // A pipe of a killed child ends; an error here only shortens the output.
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Runs a command to completion, failing the test (and killing the child)
/// if it takes longer than `CHILD_TIMEOUT`.
fn run_bounded(command: &mut Command, what: &str) -> Output {
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn matching-engine");
    let pid = child.id();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(CHILD_TIMEOUT) {
        Ok(output) => output.expect("wait for matching-engine"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{what}: no exit after {CHILD_TIMEOUT:?}");
        }
    }
}

/// `{"last_seq":N,"state_hash":"H"…}` → (N, H).
fn last_seq_and_hash(stdout: &[u8], what: &str) -> (Seq, String) {
    let text = String::from_utf8_lossy(stdout);
    let field = |name: &str| {
        let at = text.find(name).unwrap_or_else(|| panic!("{what}: no {name} in {text:?}")) + name.len();
        text[at..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect::<String>()
    };
    let last_seq = field("\"last_seq\":").parse().unwrap_or_else(|_| panic!("{what}: bad last_seq in {text:?}"));
    (last_seq, field("\"state_hash\":\""))
}

/// The `seq` of an event line.
fn event_seq(line: &[u8]) -> Seq {
    let text = std::str::from_utf8(line).expect("event lines are UTF-8");
    let digits = text.strip_prefix("{\"seq\":").unwrap_or_else(|| panic!("not an event line: {text:?}"));
    digits.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().expect("a seq")
}

/// The complete lines of a byte stream (a last line without its newline,
/// cut by the kill, is left out).
fn complete_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    lines.pop(); // after the last newline: empty, or a cut line
    lines
}

/// One run's options.
#[derive(Clone, Debug)]
struct RunOptions {
    shards: Option<usize>,
    fsync: &'static str,
    snapshot_every: Option<u64>,
    kill_after: Duration,
    /// Repair with `recover` before the next run (else the next `replay` does).
    recover_after: bool,
}

impl RunOptions {
    /// `full_run`: how long a whole run takes on this machine.
    fn draw(mix: &mut Mix, full_run: Duration) -> RunOptions {
        let full_run_us = full_run.as_micros() as u64;
        let kill_after = match mix.below(8) {
            // During start-up and recovery.
            0 => Duration::from_micros(mix.below(30_000)),
            // Anywhere, and sometimes after the end.
            _ => Duration::from_micros(mix.below(full_run_us + full_run_us / 5 + 1)),
        };
        RunOptions {
            shards: None,
            fsync: if mix.below(6) == 0 { "always" } else { "batch" },
            snapshot_every: (mix.below(3) == 0).then(|| 1_000 + mix.below(12_000)),
            kill_after,
            recover_after: mix.below(2) == 0,
        }
    }

    fn layout_args(&self) -> Vec<String> {
        self.shards.map_or(Vec::new(), |n| vec!["--shards".to_string(), n.to_string()])
    }
}

/// What the runs saw, over all of them.
#[derive(Debug, Default)]
struct Summary {
    runs: u64,
    killed: u64,
    finished: u64,
    killed_before_any_output: u64,
    torn_tails_seen_by_verify: u64,
    torn_tails_cut_by_replay: u64,
    snapshots_loaded: u64,
    acknowledged_lines: u64,
    durable_beyond_acknowledged: u64,
}

/// Starts `replay` and kills it after `options.kill_after` (unless it
/// finished before). Returns how it ended, its stdout and stderr.
fn replay_and_kill(input: &Path, dir: &Path, options: &RunOptions) -> (ExitStatus, Vec<u8>, String, bool) {
    let mut command = Command::new(BINARY);
    command.arg("replay").arg(input).arg("--data").arg(dir).args(["--fsync", options.fsync]);
    command.args(options.layout_args());
    if let Some(every) = options.snapshot_every {
        command.args(["--snapshot-every", &every.to_string()]);
    }
    let mut child: Child =
        command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn matching-engine replay");
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    // The one deliberate sleep: the random moment of the kill.
    std::thread::sleep(options.kill_after);
    let finished_before_kill = matches!(child.try_wait(), Ok(Some(_)));
    // SIGKILL (harmless if it has exited: it is not reaped yet).
    let _ = child.kill();
    let status = child.wait().expect("wait for replay");
    let stdout = stdout.join().expect("the stdout reader");
    let stderr = String::from_utf8_lossy(&stderr.join().expect("the stderr reader")).into_owned();
    (status, stdout, stderr, finished_before_kill)
}

#[test]
fn kill_9_loses_no_acknowledged_command() {
    let seed = seed();
    let episodes = episodes();
    eprintln!("kill -9: seed = {seed} (rerun with CRASH_KILL9_SEED={seed}), {episodes} episodes");
    let started = Instant::now();
    let mut mix = Mix(seed);
    let lines = input_lines(mix.next());
    let work = std::env::temp_dir().join(format!("mx-crash-kill9-{}-{seed}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let input = work.join("input.jsonl");
    std::fs::write(&input, lines.iter().flat_map(|l| l.iter().chain(b"\n")).copied().collect::<Vec<u8>>()).unwrap();
    let mut summary = Summary::default();
    // How long a whole run takes here: the kills are spread over it.
    let calibration = Instant::now();
    let full = run_bounded(
        Command::new(BINARY).arg("replay").arg(&input).arg("--data").arg(work.join("calibration")),
        "a whole replay",
    );
    assert!(full.status.success(), "a whole replay failed: {}", String::from_utf8_lossy(&full.stderr));
    let full_run = calibration.elapsed();
    eprintln!("kill -9: {} input lines, a whole run takes {full_run:?}", lines.len());

    for episode in 0..episodes {
        if started.elapsed() > budget() {
            eprintln!("kill -9: time budget spent after {episode} of {episodes} episodes");
            break;
        }
        let dir: PathBuf = work.join(format!("data-{episode}"));
        let mut oracle = Oracle::new();
        let mut base: Seq = 0;
        let runs = 1 + mix.below(3);
        // A data directory keeps the layout it was made with: every run of
        // an episode uses the same shard count.
        let shards = (mix.below(3) == 0).then_some(2);
        for run in 0..runs {
            let options = RunOptions { shards, ..RunOptions::draw(&mut mix, full_run) };
            let context =
                format!("seed {seed}, episode {episode}, run {run} (recovered before it: {base}), {options:?}");
            let (status, stdout, stderr, finished) = replay_and_kill(&input, &dir, &options);
            let killed = status.signal() == Some(9) && !finished;
            assert!(status.success() || status.signal() == Some(9), "{context}: replay failed ({status}):\n{stderr}");
            summary.runs += 1;
            summary.killed += killed as u64;
            summary.finished += status.success() as u64;
            summary.torn_tails_cut_by_replay += stderr.contains("torn tail") as u64;
            summary.snapshots_loaded += stderr.contains("loaded the snapshot") as u64;

            if !dir.exists() {
                // Killed before it created the directory: nothing happened.
                assert!(killed && base == 0 && stdout.is_empty(), "{context}: no data directory");
                summary.killed_before_any_output += 1;
                continue;
            }
            // What survived, without touching it.
            let verify = run_bounded(
                Command::new(BINARY).args(["journal", "verify", "--data"]).arg(&dir).args(options.layout_args()),
                "journal verify",
            );
            let verify_stderr = String::from_utf8_lossy(&verify.stderr);
            assert!(verify.status.success(), "{context}: journal verify failed:\n{verify_stderr}");
            let (last_seq, hash) = last_seq_and_hash(&verify.stdout, "journal verify");
            summary.torn_tails_seen_by_verify += String::from_utf8_lossy(&verify.stdout).contains("torn_tail") as u64;
            let context = format!("{context}, recovered last_seq {last_seq}");
            assert!(last_seq >= base, "{context}: LOST what an earlier recovery had");
            assert!(last_seq <= base + lines.len() as Seq, "{context}: more than the input");

            // The oracle runs the history on to last_seq.
            let mut want = Vec::new();
            for line in &lines[..(last_seq - base) as usize] {
                oracle.feed(line, &mut want);
            }
            let want_lines = complete_lines(&want);

            // (a) Printed means durable, and the printed lines are the oracle's.
            let printed = complete_lines(&stdout);
            if let Some(beyond) = printed.iter().map(|line| event_seq(line)).find(|&seq| seq > last_seq) {
                panic!(
                    "{context}: LOST an acknowledged command: seq {beyond} was printed, recovery ends at {last_seq}"
                );
            }
            if let Some(at) = printed.iter().zip(&want_lines).position(|(got, want)| got != want) {
                panic!(
                    "{context}: printed line {at} differs:\n  printed {}\n  oracle  {}",
                    String::from_utf8_lossy(printed[at]),
                    String::from_utf8_lossy(want_lines[at])
                );
            }
            assert!(printed.len() <= want_lines.len(), "{context}: printed more lines than the oracle has");
            if status.success() {
                assert_eq!(last_seq, base + lines.len() as Seq, "{context}: a finished run left commands out");
                assert_eq!(printed.len(), want_lines.len(), "{context}: a finished run did not print everything");
                assert!(stdout.ends_with(b"\n"), "{context}: a finished run cut its last line");
            }
            summary.acknowledged_lines += printed.len() as u64;
            summary.killed_before_any_output += (killed && printed.is_empty()) as u64;
            let acknowledged = printed.last().map_or(base, |line| event_seq(line));
            summary.durable_beyond_acknowledged += (last_seq > acknowledged) as u64;

            // (b) The recovered state is the oracle's after last_seq lines.
            assert_eq!(hash, oracle.state_hash(), "{context}: journal verify's state hash is not the oracle's");
            if options.recover_after || run + 1 == runs {
                let book = work.join("book.jsonl");
                let recover = run_bounded(
                    Command::new(BINARY)
                        .args(["recover", "--data"])
                        .arg(&dir)
                        .arg("--book")
                        .arg(&book)
                        .args(options.layout_args()),
                    "recover",
                );
                let recover_stderr = String::from_utf8_lossy(&recover.stderr);
                assert!(recover.status.success(), "{context}: recover failed:\n{recover_stderr}");
                assert_eq!(
                    last_seq_and_hash(&recover.stdout, "recover"),
                    (last_seq, oracle.state_hash()),
                    "{context}: recover disagrees"
                );
                assert!(
                    std::fs::read(&book).unwrap() == oracle.book(),
                    "{context}: the recovered book is not the oracle's"
                );
            }
            base = last_seq;
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    std::fs::remove_dir_all(&work).unwrap();
    eprintln!("kill -9: {:.1} s, {summary:?}", started.elapsed().as_secs_f64());
    assert!(summary.killed > 0, "no run was killed: the delays are too long for this machine");
}
