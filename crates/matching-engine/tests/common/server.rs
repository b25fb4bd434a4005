//! A `matching-engine serve` process for tests: started on free loopback
//! ports in a scratch data directory, stopped (SIGTERM) or killed at the end.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_matching-engine");

pub struct Server {
    child: Option<Child>,
    pub binary: SocketAddr,
    pub json: SocketAddr,
    pub http: SocketAddr,
    /// Metrics, health and the operator console.
    pub metrics: SocketAddr,
    /// The FIX gateway (unless `--no-fix`).
    pub fix: Option<SocketAddr>,
    /// The feed's re-request server and snapshot service (market data on).
    pub rerequest: Option<SocketAddr>,
    pub snapshot: Option<SocketAddr>,
    pub data: PathBuf,
}

/// Where the server's log (its stderr) goes: beside its data directory.
fn log_path(data: &Path) -> PathBuf {
    data.with_extension("log")
}

/// A fresh scratch directory named for the test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mx-serve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Server {
    /// Starts `serve` on `data` with `extra` flags; waits until it listens.
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(BINARY)
            .arg("serve")
            .arg("--data")
            .arg(data)
            .args(["--binary-addr", "127.0.0.1:0", "--json-addr", "127.0.0.1:0"])
            // A test that needs the HTTP port to stay across a restart (a browser on it) names it.
            .args(if extra.contains(&"--http-addr") { &[][..] } else { &["--http-addr", "127.0.0.1:0"][..] })
            .args(["--feed-rerequest-addr", "127.0.0.1:0", "--feed-snapshot-addr", "127.0.0.1:0"])
            .args(["--metrics-addr", "127.0.0.1:0"])
            // A test that needs the FIX port to stay across a restart names it.
            .args(if extra.contains(&"--fix-addr") { &[][..] } else { &["--fix-addr", "127.0.0.1:0"][..] })
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log_path(data)).unwrap())
            .spawn()
            .expect("start serve");
        // `operating metrics=…` comes first (before recovery), then `listening …`.
        let mut stdout = BufReader::new(child.stdout.as_mut().unwrap());
        let mut line = String::new();
        while {
            line.clear();
            stdout.read_line(&mut line).unwrap() > 0 && line.starts_with("operating ")
        } {}
        if !line.starts_with("listening ") {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve did not start: {line:?}\n{}", std::fs::read_to_string(log_path(data)).unwrap_or_default());
        }
        let find = |name: &str| -> Option<SocketAddr> {
            let at = line.find(&format!(" {name}="))? + name.len() + 2;
            line[at..].split_whitespace().next()?.parse().ok()
        };
        let addr = |name: &str| find(name).unwrap();
        Server {
            binary: addr("binary"),
            json: addr("json"),
            http: addr("http"),
            metrics: addr("metrics"),
            fix: find("fix"),
            rerequest: find("rerequest"),
            snapshot: find("snapshot"),
            data: data.to_path_buf(),
            child: Some(child),
        }
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(log_path(&self.data)).unwrap_or_default()
    }

    /// SIGTERM, then waits for the exit.
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        wait(&mut child, Duration::from_secs(30))
    }

    /// SIGKILL.
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

fn wait(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("serve did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback address with a port free now (for a server that must come
/// back on the same one).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// Runs `users add` and returns the key.
pub fn add_user(file: &Path, user: u64, role: &str) -> String {
    let output = Command::new(BINARY)
        .args(["users", "add", "--file"])
        .arg(file)
        .args(["--user", &user.to_string(), "--role", role])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}
