//! `recover` and `journal inspect|verify`: the data directory from outside
//! a running engine.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use matching_core::{Config, Exchange, hash_books};
use matching_journal::format::{self, KIND_COMMAND, KIND_EXTERNAL, KIND_SYNCED};
use matching_journal::storage::{FsStorage, Storage};
use matching_pipeline::{Durability, EngineConfig, recover_books};
use matching_proto::json;

use crate::replay::report_recovery;

/// The data directory, and (for a directory written before manifests) the
/// layout of the run that wrote it; a directory with a manifest knows its
/// own, and a flag that contradicts it is refused.
#[derive(clap::Args)]
pub struct Layout {
    /// The data directory.
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    flags: LayoutFlags,
}

/// The layout flags of every command that runs or reads an engine: what
/// decides the outcome of a command besides the commands. Each defaults to
/// what the data directory was made with (its manifest), else the engine's
/// default; a flag that contradicts the directory is refused, by name.
#[derive(clap::Args)]
pub struct LayoutFlags {
    /// Shard threads, each owning its symbols' books (the limits apply per
    /// shard); default: the directory's, else 1. `replay` given it runs
    /// through the multi-core engine (byte-identical output).
    #[arg(long)]
    pub shards: Option<usize>,
    /// Most resting orders (beyond it: `too_many_orders`); default: the
    /// directory's, else 10,000,000.
    #[arg(long)]
    pub orders_max: Option<usize>,
    /// Most symbols (beyond it: `too_many_symbols`); default: the
    /// directory's, else 100,000.
    #[arg(long)]
    pub symbols_max: Option<usize>,
}

/// The layout recorded in the manifest of the data directory `dir`, if it
/// has one.
pub fn stored_layout(dir: &Path) -> anyhow::Result<Option<matching_journal::Layout>> {
    let path = dir.join(matching_journal::MANIFEST_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => matching_journal::Manifest::decode(&bytes)
            .map(|manifest| Some(manifest.layout))
            .map_err(|reason| anyhow::anyhow!("{} is damaged: {reason}; refusing to start", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

impl LayoutFlags {
    /// An engine configuration with the layout a run asks for: each setting
    /// from its flag when given, else from the manifest of the data
    /// directory `dir`, else the default. (A flag that contradicts the
    /// manifest is then refused by the engine, naming it.)
    pub fn config(&self, dir: Option<&Path>) -> anyhow::Result<EngineConfig> {
        layout_config(dir, self.shards, self.orders_max, self.symbols_max)
    }
}

fn layout_config(
    dir: Option<&Path>,
    shards: Option<usize>,
    orders_max: Option<usize>,
    symbols_max: Option<usize>,
) -> anyhow::Result<EngineConfig> {
    let stored = match dir {
        Some(dir) => stored_layout(dir)?,
        None => None,
    };
    let defaults = EngineConfig::default();
    let stored_or = |get: fn(&matching_journal::Layout) -> usize, default: usize| stored.as_ref().map_or(default, get);
    Ok(EngineConfig {
        shards: shards.unwrap_or(stored_or(|l| l.shards, 1)),
        exchange: Config {
            orders_max: orders_max.unwrap_or(stored_or(|l| l.orders_max, defaults.exchange.orders_max)),
            symbols_max: symbols_max.unwrap_or(stored_or(|l| l.symbols_max, defaults.exchange.symbols_max)),
            instruments: stored.as_ref().and_then(|l| l.instruments.clone()),
            ..Config::default()
        },
        route_window: stored_or(|l| l.route_window, defaults.route_window),
        symbol_shards: stored.as_ref().map(|l| l.symbol_shards.clone()).unwrap_or_default(),
        ..defaults
    })
}

impl Layout {
    fn storage(&self) -> anyhow::Result<FsStorage> {
        if !self.data.is_dir() {
            anyhow::bail!("{} is not a directory", self.data.display());
        }
        FsStorage::open(&self.data).with_context(|| format!("cannot open {}", self.data.display()))
    }

    fn config(&self) -> anyhow::Result<EngineConfig> {
        let config = self.flags.config(Some(&self.data))?;
        Ok(EngineConfig { durability: Some(Durability::new(Arc::new(self.storage()?))), ..config })
    }
}

#[derive(clap::Args)]
pub struct RecoverArgs {
    #[command(flatten)]
    layout: Layout,
    /// Also write the recovered book, as `replay --book` does.
    #[arg(long)]
    book: Option<PathBuf>,
}

/// Rebuilds the state (cutting a torn tail), prints
/// `{"last_seq":N,"state_hash":"…"}`, and dumps the book if asked.
pub fn recover(args: RecoverArgs) -> anyhow::Result<()> {
    let (exchanges, report) = recover_books(&args.layout.config()?, true)?;
    report_recovery(&report);
    let mut parts: Vec<_> = exchanges.iter().flat_map(Exchange::book_states).collect();
    println!("{{\"last_seq\":{},\"state_hash\":\"{:016x}\"}}", report.last_seq, hash_books(&mut parts));
    if let Some(path) = &args.book {
        let mut out = Vec::new();
        json::write_books(&mut out, &exchanges.iter().collect::<Vec<_>>());
        std::fs::write(path, out).with_context(|| format!("cannot write book {}", path.display()))?;
    }
    Ok(())
}

#[derive(clap::Subcommand)]
pub enum JournalCommand {
    /// Print the manifest, every segment, record and snapshot, one JSON
    /// object a line; flag damage and a gap between segments.
    Inspect {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Check every checksum, the chain, the manifest and the join with the
    /// snapshots, without changing anything; exit 1 on corruption, a gap,
    /// or a snapshot it had to pass over.
    Verify {
        #[command(flatten)]
        layout: Layout,
    },
}

pub fn journal(command: JournalCommand) -> anyhow::Result<()> {
    match command {
        JournalCommand::Inspect { data: dir } => {
            if !dir.is_dir() {
                anyhow::bail!("{} is not a directory", dir.display());
            }
            let storage = FsStorage::open(&dir).with_context(|| format!("cannot open {}", dir.display()))?;
            match inspect(&storage, &mut std::io::stdout().lock()) {
                // A reader that stopped early (`| head`) is not an error.
                Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                result => result.context("cannot inspect the data directory"),
            }
        }
        JournalCommand::Verify { layout } => {
            let (exchanges, report) = recover_books(&layout.config()?, false)?;
            report_recovery(&report);
            let mut parts: Vec<_> = exchanges.iter().flat_map(Exchange::book_states).collect();
            let torn = report
                .torn_tail
                .as_ref()
                .map_or(String::new(), |t| format!(",\"torn_tail\":{{\"file\":{:?},\"offset\":{}}}", t.file, t.offset));
            let skipped = &report.skipped_snapshots;
            let passed_over = if skipped.is_empty() {
                String::new()
            } else {
                let list: Vec<String> = skipped.iter().map(|(file, why)| format!("[{file:?},{why:?}]")).collect();
                format!(",\"snapshots_passed_over\":[{}]", list.join(","))
            };
            println!(
                "{{\"ok\":{},\"last_seq\":{},\"state_hash\":\"{:016x}\",\"records\":{}{torn}{passed_over}}}",
                skipped.is_empty(),
                report.last_seq,
                hash_books(&mut parts),
                report.records_applied
            );
            if !skipped.is_empty() {
                anyhow::bail!("{} damaged snapshot(s): recovery would fall back past them", skipped.len());
            }
            Ok(())
        }
    }
}

fn inspect(storage: &FsStorage, out: &mut impl Write) -> std::io::Result<()> {
    // The seq the next segment should start at, from the last one read.
    let mut next_first_seq: Option<u64> = None;
    for name in storage.list()? {
        let bytes = storage.read(&name)?;
        if name == matching_journal::MANIFEST_FILE {
            match matching_journal::Manifest::decode(&bytes) {
                Ok(manifest) => {
                    let layout = &manifest.layout;
                    writeln!(
                        out,
                        "{{\"manifest\":{name:?},\"shards\":{},\"orders_max\":{},\"symbols_max\":{},\"route_window\":{},\"newest_segment\":{}}}",
                        layout.shards,
                        layout.orders_max,
                        layout.symbols_max,
                        layout.route_window,
                        manifest.newest_segment.map_or("null".to_string(), |seq| seq.to_string())
                    )?;
                    if let Some(seq) = manifest.newest_segment
                        && !storage.list()?.contains(&matching_journal::segment_name(seq))
                    {
                        writeln!(
                            out,
                            "{{\"missing\":{:?},\"newest_segment\":true}}",
                            matching_journal::segment_name(seq)
                        )?;
                    }
                }
                Err(reason) => writeln!(out, "{{\"manifest\":{name:?},\"damaged\":{reason:?}}}")?,
            }
            continue;
        }
        if name.starts_with("snapshot-") {
            match format::parse_snapshot(&bytes) {
                Ok((seq, hash, body)) => writeln!(
                    out,
                    "{{\"snapshot\":{name:?},\"seq\":{seq},\"state_hash\":\"{hash:016x}\",\"bytes\":{}}}",
                    body.len()
                )?,
                Err(reason) => writeln!(out, "{{\"snapshot\":{name:?},\"damaged\":{reason:?}}}")?,
            }
            continue;
        }
        if !name.starts_with("journal-") {
            continue;
        }
        let (first_seq, chain_in) = match format::parse_segment_header(&bytes) {
            Ok(header) => header,
            Err(reason) => {
                writeln!(out, "{{\"segment\":{name:?},\"damaged\":{reason:?},\"offset\":0}}")?;
                continue;
            }
        };
        if let Some(expected) = next_first_seq
            && expected != first_seq
        {
            writeln!(
                out,
                "{{\"gap\":{{\"expected_first_seq\":{expected},\"segment\":{name:?},\"first_seq\":{first_seq}}}}}"
            )?;
        }
        next_first_seq = Some(first_seq);
        writeln!(
            out,
            "{{\"segment\":{name:?},\"first_seq\":{first_seq},\"chain_in\":{chain_in},\"bytes\":{}}}",
            bytes.len()
        )?;
        let mut link = chain_in;
        for (offset, record) in format::records(&bytes) {
            let record = match record {
                Ok(record) => record,
                Err(reason) => {
                    writeln!(out, "{{\"segment\":{name:?},\"damaged\":{reason:?},\"offset\":{offset}}}")?;
                    break;
                }
            };
            let chained = record.chain_crc == format::chain(link, record.body_crc);
            link = record.chain_crc;
            if record.kind == KIND_SYNCED {
                writeln!(out, "{{\"synced_through\":{},\"offset\":{offset},\"chained\":{chained}}}", record.seq)?;
                continue;
            }
            let mut line = format!("{{\"seq\":{},\"offset\":{offset},\"chained\":{chained}", record.seq);
            match (record.kind, format::decode_command_with(record.seq, record.payload)) {
                (KIND_COMMAND, Some((command, cid))) => {
                    if let Some(cid) = cid {
                        line.push_str(&format!(",\"cid\":\"{cid}\""));
                    }
                    let mut text = Vec::new();
                    json::write_command(&mut text, &command.action);
                    text.pop();
                    line.push_str(&format!(
                        ",\"timestamp_ns\":{},\"command\":{}",
                        command.timestamp_ns,
                        String::from_utf8_lossy(&text)
                    ));
                }
                (KIND_EXTERNAL, _) if record.payload.is_empty() => line.push_str(",\"external\":true"),
                (KIND_EXTERNAL, _) => {
                    let hex: String = record.payload.iter().map(|b| format!("{b:02x}")).collect();
                    line.push_str(&format!(",\"note\":\"{hex}\""));
                }
                _ => line.push_str(",\"undecodable\":true"),
            }
            writeln!(out, "{line}}}")?;
            next_first_seq = record.seq.checked_add(1);
        }
    }
    Ok(())
}
