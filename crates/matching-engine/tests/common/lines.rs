//! A blocking JSON-over-TCP session (one object per line), for tests that
//! play a second trader beside a browser or a REST caller.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Lines {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Lines {
    /// Connects and logs in as `user` with `key`; panics if refused.
    pub fn login(addr: SocketAddr, user: u64, key: &str) -> Lines {
        let stream = TcpStream::connect(addr).expect("connect to JSON over TCP");
        stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let mut lines = Lines { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream };
        lines.send(&serde_json::json!({ "op": "login", "user": user, "key": key }));
        let answer = lines.until(|v| v["ev"] == "login");
        assert_eq!(answer["ok"], true, "login of {user} refused: {answer}");
        lines
    }

    pub fn send(&mut self, request: &Value) {
        let mut line = request.to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes()).expect("send a request");
    }

    /// The next line, or `None` after `wait` with nothing.
    pub fn next(&mut self, wait: Duration) -> Option<Value> {
        let start = Instant::now();
        let mut line = String::new();
        loop {
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) if line.ends_with('\n') => {
                    return Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}")));
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => panic!("reading the session: {e}"),
            }
            if start.elapsed() > wait {
                return None;
            }
        }
    }

    /// Reads until a message satisfies `want` (10 s at most), and returns it.
    pub fn until(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Some(message) = self.next(Duration::from_millis(200))
                && want(&message)
            {
                return message;
            }
        }
        panic!("no awaited message within 10 s");
    }

    /// Sends `request` and returns its answer (skipping other events, such
    /// as fills of resting orders).
    pub fn call(&mut self, request: &Value) -> Value {
        self.send(request);
        let answers: &[&str] = match request["op"].as_str() {
            Some("new") => &["accepted"],
            Some("cancel") => &["cancelled"],
            Some("modify") => &["modified"],
            Some("mass_cancel") => &["mass_cancelled"],
            Some("halt" | "resume") => &["status"],
            Some("orders") => &["orders"],
            _ => &["pong"],
        };
        self.until(|v| v["ev"] == "rejected" || v["ev"].as_str().is_some_and(|ev| answers.contains(&ev)))
    }
}
