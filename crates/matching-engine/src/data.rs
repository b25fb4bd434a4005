//! `recover` and `journal inspect|verify`: the data directory from outside
//! a running engine.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use matching_core::{Config, Exchange, hash_books};
use matching_journal::format::{self, KIND_COMMAND, KIND_EXTERNAL};
use matching_journal::storage::{FsStorage, Storage};
use matching_pipeline::{Durability, EngineConfig, recover_books};
use matching_proto::json;

use crate::replay::report_recovery;

/// The engine layout recovery must match (the same as the run that wrote it).
#[derive(clap::Args)]
pub struct Layout {
    /// The data directory.
    #[arg(long)]
    data: PathBuf,
    /// Shards of the run that wrote it (limits are per shard).
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// `--orders-max` of that run.
    #[arg(long, default_value_t = Config::default().orders_max)]
    orders_max: usize,
    /// `--symbols-max` of that run.
    #[arg(long, default_value_t = Config::default().symbols_max)]
    symbols_max: usize,
}

impl Layout {
    fn storage(&self) -> anyhow::Result<FsStorage> {
        if !self.data.is_dir() {
            anyhow::bail!("{} is not a directory", self.data.display());
        }
        FsStorage::open(&self.data).with_context(|| format!("cannot open {}", self.data.display()))
    }

    fn config(&self) -> anyhow::Result<EngineConfig> {
        Ok(EngineConfig {
            shards: self.shards,
            exchange: Config { orders_max: self.orders_max, symbols_max: self.symbols_max, ..Config::default() },
            durability: Some(Durability::new(Arc::new(self.storage()?))),
            ..EngineConfig::default()
        })
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
    /// Print every segment, record and snapshot, one JSON object a line.
    Inspect {
        /// The data directory.
        dir: PathBuf,
    },
    /// Check every checksum, the chain and the join with the snapshots,
    /// without changing anything; exit 1 on corruption.
    Verify {
        #[command(flatten)]
        layout: Layout,
    },
}

pub fn journal(command: JournalCommand) -> anyhow::Result<()> {
    match command {
        JournalCommand::Inspect { dir } => {
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
            println!(
                "{{\"ok\":true,\"last_seq\":{},\"state_hash\":\"{:016x}\",\"records\":{}{torn}}}",
                report.last_seq,
                hash_books(&mut parts),
                report.records_applied
            );
            Ok(())
        }
    }
}

fn inspect(storage: &FsStorage, out: &mut impl Write) -> std::io::Result<()> {
    for name in storage.list()? {
        let bytes = storage.read(&name)?;
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
            let mut line = format!("{{\"seq\":{},\"offset\":{offset},\"chained\":{chained}", record.seq);
            match (record.kind, format::decode_command(record.seq, record.payload)) {
                (KIND_COMMAND, Some(command)) => {
                    let mut text = Vec::new();
                    json::write_command(&mut text, &command.action);
                    text.pop();
                    line.push_str(&format!(
                        ",\"timestamp_ns\":{},\"command\":{}",
                        command.timestamp_ns,
                        String::from_utf8_lossy(&text)
                    ));
                }
                (KIND_EXTERNAL, _) => line.push_str(",\"external\":true"),
                _ => line.push_str(",\"undecodable\":true"),
            }
            writeln!(out, "{line}}}")?;
            link = record.chain_crc;
        }
    }
    Ok(())
}
