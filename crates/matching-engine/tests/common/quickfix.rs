//! QuickFIX as the FIX tests' counterparty: `tests/quickfix/fixshell.cpp`, a
//! line-driven QuickFIX initiator (its header comment has the protocol), built
//! once per test process and driven through stdin/stdout.
//!
//! Needs Debian's `libquickfix-dev` (QuickFIX 1.15); without it the tests
//! fail, they do not skip.

#![allow(dead_code)]

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/quickfix/fixshell.cpp");
const QUICKFIX_HEADER: &str = "/usr/include/quickfix/Session.h";

/// How long the helpers below wait for an answer to a command.
pub const WAIT: Duration = Duration::from_secs(10);

/// The fixshell binary, compiled on first use (once per test process; not
/// again while it is newer than its source). Panics if QuickFIX is missing.
pub fn fixshell() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BUILT.get_or_init(build) {
        Ok(path) => path.clone(),
        Err(why) => panic!("{why}"),
    }
}

fn build() -> Result<PathBuf, String> {
    if !Path::new(QUICKFIX_HEADER).exists() {
        return Err(format!(
            "the FIX tests need QuickFIX as their counterparty, and {QUICKFIX_HEADER} is missing: \
             install it with `sudo apt-get install libquickfix-dev`"
        ));
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let binary = dir.join("fixshell");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(built), Some(source)) = (modified(&binary), modified(Path::new(SOURCE)))
        && built > source
    {
        return Ok(binary);
    }
    // Built aside and renamed into place: test processes may build at the same time.
    let partial = dir.join(format!("fixshell.{}.partial", std::process::id()));
    // C++14, not 17: QuickFIX 1.15's headers carry throw(...) specifications, which C++17 rejects.
    let out = Command::new("g++")
        .args(["-std=c++14", "-O1", "-o"])
        .arg(&partial)
        .arg(SOURCE)
        .args(["-lquickfix", "-lpthread"])
        .output()
        .map_err(|e| format!("cannot run g++ to build {SOURCE}: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&partial);
        return Err(format!("g++ failed to build {SOURCE}:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    std::fs::rename(&partial, &binary).map_err(|e| format!("cannot move {} into place: {e}", partial.display()))?;
    Ok(binary)
}

/// One line fixshell printed: `kind` is its first word, `text` the rest, and
/// `fields` the `tag=value` pieces of the rest (split on `|`, SOH on the wire).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub kind: String,
    pub text: String,
    pub fields: Vec<(u32, String)>,
}

impl Line {
    pub fn parse(line: &str) -> Line {
        let (kind, text) = line.split_once(' ').unwrap_or((line, ""));
        let fields = text
            .split('|')
            .filter_map(|piece| {
                let (tag, value) = piece.split_once('=')?;
                Some((tag.parse().ok()?, value.to_string()))
            })
            .collect();
        Line { kind: kind.to_string(), text: text.to_string(), fields }
    }

    /// The first value of `tag`.
    pub fn get(&self, tag: u32) -> Option<&str> {
        self.fields.iter().find(|(t, _)| *t == tag).map(|(_, v)| v.as_str())
    }

    /// MsgType (35).
    pub fn msg_type(&self) -> Option<&str> {
        self.get(35)
    }

    /// MsgSeqNum (34).
    pub fn seq(&self) -> Option<u64> {
        self.get(34)?.parse().ok()
    }

    /// A message of `msg_type` that came from the other side (`app` or `admin`).
    pub fn is_received(&self, msg_type: &str) -> bool {
        (self.kind == "app" || self.kind == "admin") && self.msg_type() == Some(msg_type)
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.is_empty() { write!(f, "{}", self.kind) } else { write!(f, "{} {}", self.kind, self.text) }
    }
}

/// A running fixshell: one QuickFIX FIX.4.4 initiator session. Killed on drop.
pub struct FixShell {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    seen: Vec<Line>,
    /// Lines read that no `expect` has returned yet, oldest first.
    backlog: std::collections::VecDeque<Line>,
}

impl FixShell {
    /// Starts fixshell (not the session: send `start`) for `sender` -> `target`
    /// at `addr`, keeping its message store and log under `store_dir` (reuse the
    /// directory to keep the sequence numbers).
    pub fn spawn(
        store_dir: &Path,
        addr: SocketAddr,
        sender: &str,
        target: &str,
        heartbeat_s: u32,
        reset_on_logon: bool,
    ) -> FixShell {
        std::fs::create_dir_all(store_dir).unwrap();
        let mut child = Command::new(fixshell())
            .arg(store_dir)
            .args([addr.ip().to_string(), addr.port().to_string(), sender.into(), target.into()])
            .args([heartbeat_s.to_string(), if reset_on_logon { "Y" } else { "N" }.into()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fixshell");
        let (tx, lines) = mpsc::channel();
        forward(child.stdout.take().unwrap(), "", tx.clone());
        forward(child.stderr.take().unwrap(), "stderr ", tx);
        let stdin = child.stdin.take().unwrap();
        FixShell { child, stdin, lines, seen: Vec::new(), backlog: Default::default() }
    }

    /// Sends one command line.
    pub fn cmd(&mut self, line: &str) {
        if let Err(e) = writeln!(self.stdin, "{line}").and_then(|()| self.stdin.flush()) {
            panic!("fixshell took no command {line:?} ({e}); it said:\n{}", self.transcript());
        }
    }

    /// The first line that `pred` accepts among those no earlier `expect`
    /// returned (read before, or from now on). Every line read is kept for
    /// `seen`. Panics, with all of them, on timeout.
    pub fn expect(&mut self, pred: impl Fn(&Line) -> bool, within: Duration) -> Line {
        if let Some(at) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(at).expect("Invariant: the position is in range");
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(raw) => {
                    let line = Line::parse(&raw);
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                    self.backlog.push_back(line);
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("fixshell: nothing expected within {within:?}; it said:\n{}", self.transcript())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    panic!("fixshell exited ({status:?}) before the expected line; it said:\n{}", self.transcript())
                }
            }
        }
    }

    /// Every line read so far by `expect`, in order.
    pub fn seen(&self) -> &[Line] {
        &self.seen
    }

    /// Forgets the lines no `expect` returned (before waiting for a second
    /// logon, say, so that the first does not answer for it).
    pub fn clear_backlog(&mut self) {
        self.backlog.clear();
    }

    /// Sends an application (or admin) message: body `fields` in this order.
    /// Returns the MsgSeqNum QuickFIX gave it.
    pub fn send(&mut self, msg_type: &str, fields: &[(u32, &str)]) -> u64 {
        let body: Vec<String> = fields.iter().map(|(tag, value)| format!("{tag}={value}")).collect();
        self.cmd(&format!("send {msg_type} {}", body.join("|")));
        let line = self.expect(|l| l.kind == "sent" || l.kind == "error", WAIT);
        match line.text.parse() {
            Ok(seq) if line.kind == "sent" => seq,
            _ => panic!("fixshell could not send {msg_type}: {line}"),
        }
    }

    /// `start`, then waits for the session to be logged on.
    pub fn logon(&mut self) {
        self.cmd("start");
        self.expect(|l| l.kind == "logon", WAIT);
    }

    /// The next sender and target MsgSeqNums, as QuickFIX's session has them.
    pub fn seqs(&mut self) -> (u64, u64) {
        self.cmd("seqs");
        let line = self.expect(|l| l.kind == "seqs", WAIT);
        let num = |key: &str| {
            line.text.split(' ').find_map(|w| w.strip_prefix(key)?.parse().ok()).unwrap_or_else(|| panic!("{line}"))
        };
        (num("sender="), num("target="))
    }

    /// `quit`: logs out if logged on and waits for fixshell to exit.
    pub fn quit(mut self) -> ExitStatus {
        self.cmd("quit");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "fixshell did not exit after quit; it said:\n{}", self.transcript());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every line seen so far, and whatever has arrived since.
    fn transcript(&mut self) -> String {
        while let Ok(raw) = self.lines.try_recv() {
            self.seen.push(Line::parse(&raw));
        }
        self.seen.iter().map(|l| format!("  {l}\n")).collect()
    }
}

impl Drop for FixShell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards `from`'s lines, each prefixed, until it closes.
fn forward(from: impl Read + Send + 'static, prefix: &'static str, to: Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if to.send(format!("{prefix}{line}")).is_err() {
                break;
            }
        }
    });
}
