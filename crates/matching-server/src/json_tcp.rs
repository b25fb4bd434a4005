//! JSON over TCP: one object per line each way (`nc 127.0.0.1 7701` is a client).

use std::io;

use matching_core::UserId;
use matching_proto::json_session::{parse_request, write_reply};
use matching_proto::session::{GatewayReason, Refusal, Reply, Request};
use tokio::net::TcpStream;

use crate::session::{Incoming, Transport};
use crate::tcp::Connection;

pub(crate) struct JsonLines {
    io: Connection,
    /// Where the search for the next newline resumes.
    scanned: usize,
    /// Inside a line longer than the limit: skipped up to its newline.
    skipping: bool,
    line_max: usize,
    user: UserId,
}

impl JsonLines {
    pub(crate) fn new(stream: TcpStream, line_max: usize) -> JsonLines {
        JsonLines { io: Connection::new(stream, 2 * line_max + 4096), scanned: 0, skipping: false, line_max, user: 0 }
    }

    /// The next whole line in the buffer, if any (a too-long one as `Err`).
    fn next_line(&mut self) -> Option<Result<(usize, usize), ()>> {
        let io = &mut self.io;
        loop {
            let newline = io.input[self.scanned..].iter().position(|&b| b == b'\n').map(|i| self.scanned + i);
            let Some(end) = newline else {
                self.scanned = io.input.len();
                if io.input.len() - io.start > self.line_max {
                    // Too long: drop what there is, skip to its newline.
                    self.skipping = true;
                    io.input.clear();
                    (io.start, self.scanned) = (0, 0);
                }
                return None;
            };
            let line = (io.start, end);
            io.start = end + 1;
            self.scanned = io.start;
            if std::mem::take(&mut self.skipping) || end - line.0 > self.line_max {
                return Some(Err(()));
            }
            // Blank lines are nothing.
            if io.input[line.0..end].iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(Ok(line));
        }
    }

    /// The next message already read, if a whole line is there.
    fn parse_buffered(&mut self) -> Option<Incoming> {
        if let Some(message) = self.io.peeked.take() {
            return Some(message);
        }
        Some(match self.next_line()? {
            Err(()) => Incoming::Refused(Refusal::new(GatewayReason::TooLong)),
            Ok((from, to)) => {
                let line = &self.io.input[from..to];
                match parse_request(line.strip_suffix(b"\r").unwrap_or(line), self.user) {
                    Ok(request) => Incoming::Request(request),
                    Err(refusal) => Incoming::Refused(refusal),
                }
            }
        })
    }
}

impl Transport for JsonLines {
    fn next_buffered(&mut self) -> Option<Request> {
        let message = self.parse_buffered()?;
        self.io.for_driver(message)
    }

    async fn recv(&mut self) -> io::Result<Option<Incoming>> {
        loop {
            if let Some(message) = self.parse_buffered() {
                return Ok(Some(message));
            }
            // Nothing changes across the await but what `read_more` reads:
            // the buffer is compacted (and `scanned` with it) before.
            self.scanned -= self.io.compact();
            if !self.io.read_more().await? {
                return Ok(None);
            }
        }
    }

    fn encode(&mut self, reply: &Reply) {
        write_reply(&mut self.io.output, reply);
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.io.flush().await
    }

    fn protocol(&self) -> crate::stats::Protocol {
        crate::stats::Protocol::Json
    }

    fn abandon(&mut self) {
        self.io.abandon();
    }

    fn logged_in(&mut self, user: UserId) {
        self.user = user;
    }
}
