//! `replay --data` when the journal cannot be written (a full disk): it must
//! exit non-zero with the error, print no event of a command that is not
//! durable, and leave a directory that recovers to a prefix.
//!
//! A full disk without root: the shell limits the file size (`ulimit -f`)
//! and ignores SIGXFSZ, so a write past the limit fails with `EFBIG`.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_matching-engine");

/// Runs the command; kills it after `limit`. Returns its output and whether it was killed.
fn run_bounded(command: &mut Command, limit: Duration) -> (Output, bool) {
    let child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(limit) {
        Ok(output) => (output.unwrap(), false),
        Err(_) => {
            // `exec` in the shell: the pid is matching-engine's.
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            (receiver.recv().unwrap().unwrap(), true)
        }
    }
}

fn scratch(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("mx-crash-write-failure-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    root
}

/// A regression test: the writer thread of `replay` once stopped at the
/// journal failure (`EventReader::run` returned), nobody drained the engine
/// any more, the shards blocked on their full output rings, the submitting
/// thread on their full input rings, and `replay` hung without a message.
/// Reproduction: `sh -c "trap '' XFSZ; ulimit -f 2048; exec matching-engine
/// replay FLOW --data DIR"` with FLOW from `generate --commands 200000`.
#[test]
fn replay_on_a_full_disk_exits_with_the_error() {
    let root = scratch("full");
    let generated = Command::new(BINARY)
        .args(["generate", "--scenario", "volatile", "--commands", "200000", "--seed", "9"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(generated.status.success());
    let input = root.join("input.jsonl");
    std::fs::write(&input, &generated.stdout).unwrap();
    let data = root.join("data");
    let script = "trap '' XFSZ; ulimit -f 2048; exec \"$0\" replay \"$1\" --data \"$2\"";
    let (output, hung) =
        run_bounded(Command::new("sh").args(["-c", script, BINARY]).arg(&input).arg(&data), Duration::from_secs(15));
    // Whatever else happened: nothing printed beyond what recovery finds.
    let verify = Command::new(BINARY).args(["journal", "verify", "--data"]).arg(&data).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    let text = String::from_utf8_lossy(&verify.stdout);
    let at = text.find("\"last_seq\":").unwrap() + "\"last_seq\":".len();
    let last_seq: u64 = text[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
    let printed_max = output
        .stdout
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            std::str::from_utf8(line).ok()?.strip_prefix("{\"seq\":")?.split(',').next()?.parse::<u64>().ok()
        })
        .max()
        .unwrap_or(0);
    assert!(printed_max <= last_seq, "printed seq {printed_max}, durable only through {last_seq}");
    assert!(
        !hung,
        "replay --data on a full disk hung (killed after 15 s); printed through seq {printed_max}, durable through {last_seq}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "replay succeeded on a full disk:\n{stderr}");
    assert!(stderr.contains("the journal failed"), "{stderr}");
    std::fs::remove_dir_all(&root).unwrap();
}
