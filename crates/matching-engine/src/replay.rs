//! `matching-engine replay`: SPEC's JSON-line commands in, JSON-line events out.
//!
//! Streams its input: one bounded line buffer, one output buffer flushed as
//! it fills, so memory stays constant apart from the books themselves.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use matching_core::{Command, Event, EventSink, Exchange};
use std::sync::Arc;

use matching_journal::storage::FsStorage;
use matching_pipeline::{
    Clock, Durability, Engine, EngineConfig, FsyncPolicy, Output, RecoveryReport, Stopped, WaitStrategy,
};
use matching_proto::json;

/// Longest command line accepted, in bytes. A longer line is one `malformed`
/// command; the engine reads past it without holding it.
pub const LINE_BYTES_MAX: usize = 64 * 1024;

/// Output is written to the file whenever this much has gathered.
const OUTPUT_FLUSH_BYTES: usize = 256 * 1024;

#[derive(clap::Args)]
pub struct Args {
    /// Commands, one JSON object per line; stdin when absent or `-`.
    input: Option<PathBuf>,
    /// Where events go (one JSON object per line); stdout when absent.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Also write the final book: one line per symbol with resting orders.
    #[arg(long)]
    book: Option<PathBuf>,
    #[command(flatten)]
    layout: crate::data::LayoutFlags,
    /// How engine threads wait (with --shards).
    #[arg(long, value_enum, default_value_t = WaitStrategy::SpinYield)]
    wait: WaitStrategy,
    /// Journal every command in this data directory (recovering what is
    /// already there first; new commands continue its sequence). An event is
    /// written only once its command is durable.
    #[arg(long)]
    data: Option<PathBuf>,
    /// When the journal syncs (with --data). `off` is for benchmarks only:
    /// a crash then loses acknowledged commands.
    #[arg(long, value_enum, default_value_t = FsyncPolicy::Batch)]
    fsync: FsyncPolicy,
    /// Write a snapshot after every this many commands (with --data).
    #[arg(long)]
    snapshot_every: Option<u64>,
}

/// Writes each event as a JSON line into a buffer the caller flushes.
struct JsonLines {
    buffer: Vec<u8>,
}

impl EventSink for JsonLines {
    fn event(&mut self, event: &Event) {
        json::write_event(&mut self.buffer, event);
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let input: BufReader<Box<dyn Read>> = match &args.input {
        None => BufReader::with_capacity(1 << 16, Box::new(io::stdin().lock())),
        Some(path) if path.as_os_str() == "-" => BufReader::with_capacity(1 << 16, Box::new(io::stdin().lock())),
        Some(path) => {
            let file = File::open(path).with_context(|| format!("cannot open input {}", path.display()))?;
            BufReader::with_capacity(1 << 16, Box::new(file))
        }
    };
    let output: Box<dyn Write + Send> = match &args.output {
        None => Box::new(io::stdout()),
        Some(path) => Box::new(File::create(path).with_context(|| format!("cannot create output {}", path.display()))?),
    };
    let layout = args.layout.config(args.data.as_deref())?;
    let exchanges = match (args.layout.shards, &args.data) {
        (None, None) => {
            let mut exchange: Exchange = Exchange::new(layout.exchange);
            replay(input, output, &mut exchange)?;
            vec![exchange]
        }
        (_, data) => {
            let durability = match data {
                Some(dir) => {
                    if args.fsync == FsyncPolicy::Off {
                        eprintln!(
                            "warning: --fsync off: the journal is never synced; a crash loses acknowledged commands"
                        );
                    }
                    let storage = FsStorage::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
                    let mut durability = Durability::new(Arc::new(storage));
                    durability.fsync = args.fsync;
                    Some(durability)
                }
                None => None,
            };
            let config = EngineConfig { wait: args.wait, clock: Clock::Zero, durability, ..layout };
            replay_sharded(input, output, config, args.snapshot_every)?
        }
    };
    if let Some(path) = &args.book {
        let mut out = Vec::new();
        json::write_books(&mut out, &exchanges.iter().collect::<Vec<_>>());
        std::fs::write(path, out).with_context(|| format!("cannot write book {}", path.display()))?;
    }
    Ok(())
}

/// Most commands gathered before they are submitted to the engine as one
/// batch (fewer when the input has no more for now: a lone command goes at once).
const SUBMIT_BATCH: usize = 256;

/// As [`replay`], through the multi-core engine: this thread reads, parses
/// and submits in batches; a writer thread drains the engine's merged
/// events (and the lines the parser rejected, sequenced among them) into
/// `output`. Returns the shards' books.
pub fn replay_sharded<R: Read>(
    mut input: BufReader<R>,
    output: impl Write + Send + 'static,
    config: EngineConfig,
    snapshot_every: Option<u64>,
) -> anyhow::Result<Vec<Exchange>> {
    let (engine, mut reader) = Engine::<json::ParseReject>::start(config)?;
    if let Some(report) = engine.recovery() {
        report_recovery(report);
    }
    let mut next_snapshot = snapshot_every.map(|every| engine.next_seq() + every.max(1));
    let writer = std::thread::Builder::new().name("replay-writer".into()).spawn(move || -> io::Result<()> {
        // Returning (on an error, or once nothing more will come) drops the
        // reader, which tells the engine nobody reads its events any more.
        let mut output = output;
        let mut buffer = Vec::with_capacity(OUTPUT_FLUSH_BYTES + 4096);
        let mut idle = 0u32;
        loop {
            let delivered = reader.poll(|item| match item {
                Output::Event(event) => json::write_event(&mut buffer, event),
                Output::External(seq, reject) => json::write_parse_reject(&mut buffer, seq, reject),
            });
            // Write when the buffer is full, and whenever the engine has
            // nothing more for now: with a journal, what is released is
            // durable, and its lines should not wait for the next burst.
            if buffer.len() >= OUTPUT_FLUSH_BYTES || (delivered == 0 && !buffer.is_empty()) {
                output.write_all(&buffer)?;
                output.flush()?;
                buffer.clear();
            }
            if delivered > 0 {
                idle = 0;
                continue;
            }
            if reader.is_done() {
                return Ok(());
            }
            idle += 1;
            if idle < 64 {
                std::hint::spin_loop();
            } else if idle < 128 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(std::time::Duration::from_micros(20));
            }
        }
    })?;
    let mut line = Vec::with_capacity(1024);
    let mut batch = Vec::with_capacity(SUBMIT_BATCH);
    // Reads until the input ends, fails, or the engine stops (the writer
    // gone, the journal failed): then nothing more is read.
    let read = loop {
        // Whatever has gathered goes before a read that may wait for more
        // input: a batch is what is there, never something to fill.
        if !batch.is_empty() && !input.buffer().contains(&b'\n') && submit_all(&engine, &mut batch).is_err() {
            break Ok(());
        }
        let parsed = match next_command(&mut input, &mut line, 0) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => break Ok(()),
            Err(error) => break Err(error),
        };
        let submitted = match parsed {
            Ok(action) => {
                batch.push(action);
                if batch.len() == SUBMIT_BATCH { submit_all(&engine, &mut batch) } else { Ok(()) }
            }
            // Keep the order: what came before goes first.
            Err(reject) => submit_all(&engine, &mut batch).and_then(|()| submit_external(&engine, reject)),
        };
        if submitted.is_err() {
            break Ok(());
        }
        if let Some(at) = next_snapshot
            && engine.next_seq() >= at
        {
            if submit_all(&engine, &mut batch).is_err() {
                break Ok(());
            }
            engine.snapshot().context("cannot write a snapshot")?;
            next_snapshot = snapshot_every.map(|every| engine.next_seq() + every.max(1));
        }
    };
    let _ = submit_all(&engine, &mut batch);
    let stopped = engine.stopped();
    let exchanges = engine.shutdown();
    let written = writer.join().map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
    read.context("cannot read input")?;
    written.context("cannot write events")?;
    match stopped {
        Some(Stopped::JournalFailed(failure)) => anyhow::bail!("the journal failed: {failure}"),
        Some(stopped) => Err(stopped.into()),
        None => Ok(exchanges),
    }
}

/// Runs every command of `input` through `exchange`, writing events to `output`.
pub fn replay(mut input: impl BufRead, mut output: impl Write, exchange: &mut Exchange) -> anyhow::Result<()> {
    let mut line = Vec::with_capacity(1024);
    let mut sink = JsonLines { buffer: Vec::with_capacity(OUTPUT_FLUSH_BYTES + 4096) };
    let mut seq = 0u64;
    while let Some(parsed) = next_command(&mut input, &mut line, seq + 1).context("cannot read input")? {
        seq += 1;
        match parsed {
            Ok(action) => exchange.process(&Command { seq, timestamp_ns: 0, action }, &mut sink),
            Err(reject) => json::write_parse_reject(&mut sink.buffer, seq, &reject),
        }
        if sink.buffer.len() >= OUTPUT_FLUSH_BYTES {
            output.write_all(&sink.buffer).context("cannot write events")?;
            sink.buffer.clear();
        }
    }
    output.write_all(&sink.buffer).context("cannot write events")?;
    output.flush().context("cannot write events")?;
    Ok(())
}

/// Submits and empties `batch`, waiting for room; `Err` once the engine
/// has stopped (the journal failed, or the writer is gone).
fn submit_all(engine: &Engine<json::ParseReject>, batch: &mut Vec<matching_core::Action>) -> Result<(), Stopped> {
    engine.submit_batch(batch)?;
    batch.clear();
    Ok(())
}

/// Submits one rejected line in order, waiting for room; `Err` once the engine has stopped.
fn submit_external(engine: &Engine<json::ParseReject>, reject: json::ParseReject) -> Result<(), Stopped> {
    engine.submit_external(reject).map(|_| ())
}

/// Logs what recovery found, on stderr.
pub fn report_recovery(report: &RecoveryReport) {
    if let Some((seq, _)) = report.snapshot {
        eprintln!("recovery: loaded the snapshot at seq {seq}");
    }
    for (file, reason) in &report.skipped_snapshots {
        eprintln!("recovery: passed over snapshot {file}: {reason}");
    }
    if let Some(torn) = &report.torn_tail {
        eprintln!(
            "recovery: cut a torn tail off {} at byte {} ({} bytes dropped: {})",
            torn.file, torn.offset, torn.bytes_dropped, torn.reason
        );
    }
    eprintln!("recovery: {} journal records applied, last seq {}", report.records_applied, report.last_seq);
}

/// The next command line of `input`, parsed (blank lines are skipped and
/// take no `seq`; a line over [`LINE_BYTES_MAX`] is `malformed`). A new
/// order gets `new_order_id`. `None` at the end of input.
fn next_command(
    input: &mut impl BufRead,
    line: &mut Vec<u8>,
    new_order_id: matching_core::OrderId,
) -> io::Result<Option<Result<matching_core::Action, json::ParseReject>>> {
    while let Some(read) = read_line_bounded(input, line, LINE_BYTES_MAX)? {
        match read {
            // Blank, however long: skipped, no seq.
            Line::Blank => {}
            Line::TooLong => return Ok(Some(Err(json::TOO_LONG))),
            Line::Complete => return Ok(Some(json::parse_command(line, new_order_id))),
        }
    }
    Ok(None)
}

/// What [`read_line_bounded`] read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    /// A line within the limit, in the buffer.
    Complete,
    /// A line over the limit that is not all whitespace (not kept).
    TooLong,
    /// A line of whitespace only, of any length (not kept).
    Blank,
}

/// Reads one line (without its `\n`) into `line`, keeping at most `max`
/// bytes of it. `Ok(None)` at end of input; a line over `max` bytes is
/// read to its end and dropped: `TooLong`, or `Blank` if it held only
/// whitespace (so a blank line never takes a seq, whatever its length).
fn read_line_bounded(input: &mut impl BufRead, line: &mut Vec<u8>, max: usize) -> io::Result<Option<Line>> {
    line.clear();
    let mut complete = true;
    let mut blank = true;
    let mut read_any = false;
    loop {
        let available = match input.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(read_any.then(|| classify(complete, blank)));
        }
        read_any = true;
        let (chunk, found) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        blank = blank && chunk.iter().all(u8::is_ascii_whitespace);
        if complete {
            if line.len() + chunk.len() <= max {
                line.extend_from_slice(chunk);
            } else {
                complete = false;
                line.clear();
            }
        }
        let used = found.unwrap_or(available.len());
        input.consume(used);
        if found.is_some() {
            return Ok(Some(classify(complete, blank)));
        }
    }
}

fn classify(complete: bool, blank: bool) -> Line {
    match (complete, blank) {
        (_, true) => Line::Blank,
        (false, false) => Line::TooLong,
        (true, false) => Line::Complete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<(Vec<u8>, Line)> {
        let mut reader = BufReader::with_capacity(4, input);
        let mut line = Vec::new();
        let mut out = Vec::new();
        while let Some(read) = read_line_bounded(&mut reader, &mut line, max).unwrap() {
            out.push((line.clone(), read));
        }
        out
    }

    #[test]
    fn bounded_lines_split_and_cap() {
        assert_eq!(
            lines(b"ab\n\nabcdefgh\n          \nxyz", 5),
            vec![
                (b"ab".to_vec(), Line::Complete),
                (vec![], Line::Blank),
                (vec![], Line::TooLong),
                (vec![], Line::Blank),
                (b"xyz".to_vec(), Line::Complete)
            ]
        );
    }

    fn run_replay(input: &str) -> String {
        let mut exchange = Exchange::new(matching_core::Config::default());
        let mut out = Vec::new();
        replay(input.as_bytes(), &mut out, &mut exchange).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn blank_lines_do_not_count_and_long_lines_are_malformed() {
        let long =
            format!("{{\"op\":\"cancel\",\"user\":1,\"order_id\":1,\"pad\":\"{}\"}}", "x".repeat(LINE_BYTES_MAX));
        let blank_but_long = " ".repeat(LINE_BYTES_MAX + 10);
        let input = format!("\n  \n{blank_but_long}\n{long}\n{{\"op\":\"cancel\",\"user\":1,\"order_id\":1}}\n");
        assert_eq!(
            run_replay(&input),
            "{\"seq\":1,\"ev\":\"rejected\",\"reason\":\"malformed\"}\n\
             {\"seq\":2,\"ev\":\"rejected\",\"reason\":\"unknown_order\",\"order_id\":1}\n"
        );
    }

    #[test]
    fn spec_example() {
        let input = "{\"op\":\"new\",\"user\":2,\"symbol\":\"BTC-USD\",\"side\":\"sell\",\"price\":100,\"qty\":3}\n\
                     {\"op\":\"new\",\"user\":4,\"symbol\":\"BTC-USD\",\"side\":\"buy\",\"price\":101,\"qty\":5,\"tif\":\"ioc\"}\n";
        assert_eq!(
            run_replay(input),
            "{\"seq\":1,\"ev\":\"accepted\",\"order_id\":1,\"user\":2,\"symbol\":\"BTC-USD\",\"side\":\"sell\",\"type\":\"limit\",\"tif\":\"gtc\",\"qty\":3,\"price\":100}\n\
             {\"seq\":2,\"ev\":\"accepted\",\"order_id\":2,\"user\":4,\"symbol\":\"BTC-USD\",\"side\":\"buy\",\"type\":\"limit\",\"tif\":\"ioc\",\"qty\":5,\"price\":101}\n\
             {\"seq\":2,\"ev\":\"trade\",\"symbol\":\"BTC-USD\",\"trade_id\":1,\"price\":100,\"qty\":3,\"maker_order_id\":1,\"maker_user\":2,\"taker_order_id\":2,\"taker_user\":4,\"taker_side\":\"buy\",\"maker_remaining\":0,\"taker_remaining\":2}\n\
             {\"seq\":2,\"ev\":\"cancelled\",\"order_id\":2,\"reason\":\"ioc\",\"remaining\":2}\n"
        );
    }
}
