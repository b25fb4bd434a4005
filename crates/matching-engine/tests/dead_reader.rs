//! `replay` whose output goes away: a reader that closes the pipe after one
//! line, or a full disk under `--output`. Single-threaded or through the
//! engine (`--shards`, `--data`), it must exit non-zero within seconds with
//! the error, never spin on, never hang.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_matching-engine");
/// Long enough for any machine; a hang is what this catches.
const EXIT_WITHIN: Duration = Duration::from_secs(20);

fn scratch(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("mx-dead-reader-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    root
}

/// A flow long enough that `replay` is still running when its reader goes.
fn flow() -> &'static Path {
    static FLOW: OnceLock<PathBuf> = OnceLock::new();
    FLOW.get_or_init(|| {
        let path = scratch("flow").join("flow.jsonl");
        let generated = Command::new(BINARY)
            .args(["generate", "--scenario", "normal", "--commands", "400000", "--seed", "5"])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        assert!(generated.status.success());
        std::fs::write(&path, &generated.stdout).unwrap();
        path
    })
}

/// Waits for `child` to exit; kills it and fails after [`EXIT_WITHIN`].
fn exit_of(mut child: Child, what: &str) -> (ExitStatus, String) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                std::io::Read::read_to_string(&mut pipe, &mut stderr).unwrap();
            }
            return (status, stderr);
        }
        if started.elapsed() > EXIT_WITHIN {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running {EXIT_WITHIN:?} after its reader went away");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `replay FLOW ARGS | head -1`: reads one line, closes the pipe.
fn closed_after_one_line(args: &[&str]) {
    let what = format!("replay {}", args.join(" "));
    let mut child = Command::new(BINARY)
        .arg("replay")
        .arg(flow())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with("{\"seq\":1,"), "{what}: first line {first:?}");
    // The reader is dropped here: the pipe closes.
    let (status, stderr) = exit_of(child, &what);
    assert!(!status.success(), "{what}: exited successfully after its reader went away");
    assert!(stderr.contains("cannot write events"), "{what}: {stderr}");
}

#[test]
fn replay_whose_reader_closes_after_one_line_exits() {
    closed_after_one_line(&[]);
}

#[test]
fn replay_through_shards_whose_reader_closes_after_one_line_exits() {
    closed_after_one_line(&["--shards", "2"]);
}

#[test]
fn journaled_replay_whose_reader_closes_after_one_line_exits() {
    let data = scratch("journaled").join("data");
    closed_after_one_line(&["--shards", "2", "--data", data.to_str().unwrap(), "--fsync", "off"]);
}

/// `--output /dev/full`: every write fails with ENOSPC.
fn full_disk(args: &[&str]) {
    let what = format!("replay {} --output /dev/full", args.join(" "));
    let child = Command::new(BINARY)
        .arg("replay")
        .arg(flow())
        .args(["--output", "/dev/full"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, stderr) = exit_of(child, &what);
    assert!(!status.success(), "{what}: exited successfully");
    assert!(stderr.contains("No space left on device"), "{what}: {stderr}");
}

#[test]
fn replay_into_a_full_disk_exits() {
    full_disk(&[]);
}

#[test]
fn replay_through_shards_into_a_full_disk_exits() {
    full_disk(&["--shards", "2"]);
}
