//! The CLI on a damaged data directory: on corruption or a gap, `replay
//! --data` and `recover` refuse to start (non-zero exit, a message naming
//! the file and the offset, nothing printed, nothing changed) and `journal
//! verify` exits non-zero; on a torn tail, `journal verify` reports it and
//! changes nothing, and `replay --data` cuts it and continues.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use matching_core::{Config, Event, Exchange, Seq};
use matching_journal::format;
use matching_journal::storage::{FsStorage, Storage};
use matching_journal::{JournalState, JournalWriter, Record, segment_name};
use matching_proto::json;

const BINARY: &str = env!("CARGO_BIN_EXE_matching-engine");

fn run(args: &[&str], dir: &Path) -> Output {
    let child = Command::new(BINARY)
        .args(args)
        .args(["--data".as_ref(), dir.as_os_str()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(Duration::from_secs(60)) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("matching-engine {args:?}: no exit after 60 s");
        }
    }
}

/// A scratch directory holding `input.jsonl` (a generated flow) and `data/`.
struct Scratch {
    root: PathBuf,
    input: PathBuf,
    lines: Vec<Vec<u8>>,
}

impl Scratch {
    fn new(name: &str, commands: usize) -> Scratch {
        let root = std::env::temp_dir().join(format!("mx-crash-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let generated = Command::new(BINARY)
            .args(["generate", "--scenario", "volatile", "--commands", &commands.to_string(), "--seed", "5"])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        assert!(generated.status.success());
        let input = root.join("input.jsonl");
        std::fs::write(&input, &generated.stdout).unwrap();
        let lines = generated.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
        Scratch { root, input, lines }
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    /// `replay INPUT --data data/ ARGS…`.
    fn replay(&self, args: &[&str]) -> Output {
        let mut all = vec!["replay", self.input.to_str().unwrap()];
        all.extend_from_slice(args);
        run(&all, &self.data())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// `(offset, bytes, seq)` of every record of a segment file (not the
/// synced-through markers between them).
fn record_spans(segment: &[u8]) -> Vec<(usize, usize, Seq)> {
    format::records(segment)
        .map(|(offset, record)| (offset, record.expect("an undamaged segment")))
        .filter(|(_, record)| record.kind != format::KIND_SYNCED)
        .map(|(offset, record)| (offset, record.len, record.seq))
        .collect()
}

/// Every command of the CLI that reads `dir` must refuse: non-zero exit,
/// every message in `want` on stderr, no event printed, nothing changed.
fn assert_refused(scratch: &Scratch, want: &[&str]) {
    let dir = scratch.data();
    let before = files(&dir);
    let replay = scratch.replay(&[]);
    let recover = run(&["recover"], &dir);
    let verify = run(&["journal", "verify"], &dir);
    for (name, output) in [("replay --data", &replay), ("recover", &recover), ("journal verify", &verify)] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name} did not refuse:\n{stderr}");
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        for text in want {
            assert!(stderr.contains(text), "{name}: stderr does not say {text:?}:\n{stderr}");
        }
        assert!(output.stdout.is_empty(), "{name} printed: {}", String::from_utf8_lossy(&output.stdout));
        assert!(files(&dir) == before, "{name} changed the data directory");
    }
}

/// The oracle: `replay` without `--data` of these lines, as one exchange.
fn oracle(lines: &[Vec<u8>]) -> Exchange {
    let mut exchange = Exchange::new(Config::default());
    for (i, line) in lines.iter().enumerate() {
        let seq = i as Seq + 1;
        if let Ok(action) = json::parse_command(line, seq) {
            let command = matching_core::Command { seq, timestamp_ns: 0, action };
            exchange.process(&command, &mut |_: &Event| {});
        }
    }
    exchange
}

fn last_seq_and_hash(output: &Output) -> (Seq, String) {
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| {
        let at = text.find(name).unwrap_or_else(|| panic!("no {name} in {text:?}")) + name.len();
        text[at..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect::<String>()
    };
    (field("\"last_seq\":").parse().unwrap(), field("\"state_hash\":\""))
}

#[test]
fn corruption_in_the_middle_makes_every_command_refuse() {
    let scratch = Scratch::new("corruption", 3_000);
    assert!(scratch.replay(&[]).status.success());
    let segment = segment_name(1);
    let path = scratch.data().join(&segment);
    let bytes = std::fs::read(&path).unwrap();
    let spans = record_spans(&bytes);
    assert_eq!(spans.len(), scratch.lines.len());
    let (at, _, _) = spans[spans.len() / 2];
    for byte in [at, at + 9, at + 20, at + 26, at + 40] {
        let mut damaged = bytes.clone();
        damaged[byte] ^= 0x08;
        std::fs::write(&path, &damaged).unwrap();
        let offset = format!("at byte {at}");
        assert_refused(&scratch, &["corrupted", &path.display().to_string(), &offset, "refusing to start"]);
    }
    // A record replaced by another one of the same length (a stale block).
    let (other, _, _) = *spans
        .iter()
        .find(|&&(o, l, _)| o != at && l == spans[spans.len() / 2].1)
        .expect("a record of the same length");
    let mut damaged = bytes.clone();
    damaged.copy_within(other..other + spans[spans.len() / 2].1, at);
    std::fs::write(&path, &damaged).unwrap();
    assert_refused(&scratch, &["corrupted", &format!("at byte {at}")]);
}

#[test]
fn a_journal_that_does_not_join_its_snapshot_makes_every_command_refuse() {
    let scratch = Scratch::new("gap", 3_000);
    assert!(scratch.replay(&["--snapshot-every", "1000"]).status.success());
    let dir = scratch.data();
    let snapshots: Vec<String> = files(&dir).into_keys().filter(|n| n.starts_with("snapshot-")).collect();
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
    // The journal cut (cleanly, at a record) before the newest snapshot's seq,
    // and the older snapshot removed: the snapshot is ahead of the journal.
    let newest: Seq = snapshots[1].trim_start_matches("snapshot-").trim_end_matches(".snap").parse().unwrap();
    std::fs::remove_file(dir.join(&snapshots[0])).unwrap();
    let path = dir.join(segment_name(1));
    let bytes = std::fs::read(&path).unwrap();
    let spans = record_spans(&bytes);
    let (end, _, _) = spans[newest as usize - 10];
    std::fs::write(&path, &bytes[..end]).unwrap();
    assert_refused(&scratch, &["does not join up", "refusing to start"]);

    // No snapshot, and the journal starts at seq 5.
    std::fs::remove_dir_all(&dir).unwrap();
    let storage = FsStorage::open(&dir).unwrap();
    let state = JournalState { last_seq: 4, ..JournalState::default() };
    let mut writer = JournalWriter::open(Arc::new(storage.clone()), &state, 1 << 20).unwrap();
    for seq in 5..=9 {
        writer.append(&Record::External(seq)).unwrap();
    }
    writer.write().unwrap();
    writer.sync().unwrap();
    drop(writer);
    assert!(storage.read(&segment_name(5)).is_ok());
    let segment = storage.describe(&segment_name(5));
    // Release the directory's lock before the CLI opens it.
    drop(storage);
    assert_refused(&scratch, &["does not join up", "from seq 1", &segment]);
}

#[test]
fn a_torn_tail_is_reported_by_verify_and_cut_by_replay() {
    let scratch = Scratch::new("torn", 2_000);
    let first = scratch.replay(&[]);
    assert!(first.status.success());
    let dir = scratch.data();
    let path = dir.join(segment_name(1));
    let bytes = std::fs::read(&path).unwrap();
    let spans = record_spans(&bytes);
    let (at, len, _) = *spans.last().unwrap();
    // The last record cut in the middle.
    std::fs::write(&path, &bytes[..at + len / 2]).unwrap();
    let before = files(&dir);
    let verify = run(&["journal", "verify"], &dir);
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    assert!(stdout.contains("\"torn_tail\"") && stdout.contains(&format!("\"offset\":{at}")), "{stdout}");
    let survived = scratch.lines.len() as Seq - 1;
    let want = oracle(&scratch.lines[..survived as usize]);
    assert_eq!(last_seq_and_hash(&verify), (survived, format!("{:016x}", want.state_hash())));
    assert!(files(&dir) == before, "journal verify changed the data directory");

    // replay cuts the tail, says so, and continues the sequence after it.
    let second = scratch.replay(&[]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert!(stderr.contains("torn tail") && stderr.contains(&format!("at byte {at}")), "{stderr}");
    let first_event = second.stdout.split(|&b| b == b'\n').next().unwrap();
    assert!(first_event.starts_with(format!("{{\"seq\":{},", survived + 1).as_bytes()));
    let mut history = scratch.lines[..survived as usize].to_vec();
    history.extend(scratch.lines.iter().cloned());
    let want = oracle(&history);
    let recover = run(&["recover"], &dir);
    assert!(recover.status.success());
    assert_eq!(last_seq_and_hash(&recover), (history.len() as Seq, format!("{:016x}", want.state_hash())));
}
