//! `replay` through the engine (`--shards`, `--data`) answers a command as
//! soon as it is read: what is there is a batch, never something to fill.
//! One line goes in, its event comes out while stdin stays open.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_matching-engine");

fn answers_one_line_at_a_time(args: &[&str]) {
    let mut child = Command::new(BINARY)
        .arg("replay")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    for i in 1..=3 {
        let command =
            format!("{{\"op\":\"new\",\"user\":1,\"symbol\":\"L\",\"side\":\"buy\",\"price\":{i},\"qty\":1}}\n");
        stdin.write_all(command.as_bytes()).unwrap();
        stdin.flush().unwrap();
        // Generous for a slow machine; a command held for a batch never comes.
        let event = received.recv_timeout(Duration::from_secs(10));
        let event = event.unwrap_or_else(|_| panic!("{args:?}: no event for command {i} while stdin stays open"));
        assert!(event.starts_with(&format!("{{\"seq\":{i},\"ev\":\"accepted\"")), "{event}");
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn through_shards_a_lone_command_is_answered_at_once() {
    answers_one_line_at_a_time(&["--shards", "2"]);
}

#[test]
fn journaled_a_lone_command_is_answered_at_once() {
    let dir = std::env::temp_dir().join(format!("mx-lone-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    answers_one_line_at_a_time(&["--data", dir.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
}
