//! JSON over TCP: one object per line each way (`nc 127.0.0.1 7701` is a client).

use std::io;

use matching_core::UserId;
use matching_proto::json_session::{parse_request, write_reply};
use matching_proto::session::{GatewayReason, Reply, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::session::{Incoming, Transport};

pub(crate) struct JsonLines {
    stream: TcpStream,
    /// Bytes read and not yet consumed, from `start`.
    input: Vec<u8>,
    start: usize,
    /// Where the search for the next newline resumes.
    scanned: usize,
    /// Inside a line longer than the limit: skipped up to its newline.
    skipping: bool,
    line_max: usize,
    output: Vec<u8>,
    /// A message read ahead by `next_buffered` that was not for it.
    peeked: Option<Incoming>,
    /// A write was cut off midway: nothing more may be written.
    abandoned: bool,
    user: UserId,
}

impl JsonLines {
    pub(crate) fn new(stream: TcpStream, line_max: usize) -> JsonLines {
        JsonLines {
            stream,
            input: Vec::with_capacity(2 * line_max + 4096),
            start: 0,
            scanned: 0,
            skipping: false,
            line_max,
            abandoned: false,
            peeked: None,
            output: Vec::with_capacity(1 << 16),
            user: 0,
        }
    }

    /// The next whole line in the buffer, if any (a too-long one as `Err`).
    fn next_line(&mut self) -> Option<Result<(usize, usize), ()>> {
        loop {
            let newline = self.input[self.scanned..].iter().position(|&b| b == b'\n').map(|i| self.scanned + i);
            let Some(end) = newline else {
                self.scanned = self.input.len();
                if self.input.len() - self.start > self.line_max {
                    // Too long: drop what there is, skip to its newline.
                    self.skipping = true;
                    self.input.clear();
                    (self.start, self.scanned) = (0, 0);
                }
                return None;
            };
            let line = (self.start, end);
            self.start = end + 1;
            self.scanned = self.start;
            if std::mem::take(&mut self.skipping) {
                return Some(Err(()));
            }
            if end - line.0 > self.line_max {
                return Some(Err(()));
            }
            // Blank lines are nothing.
            if self.input[line.0..end].iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(Ok(line));
        }
    }
}

impl JsonLines {
    /// The next message already read, if a whole line is there.
    fn parse_buffered(&mut self) -> Option<Incoming> {
        if let Some(message) = self.peeked.take() {
            return Some(message);
        }
        Some(match self.next_line()? {
            Err(()) => Incoming::Refused { reason: GatewayReason::TooLong, order_id: None, cid: None },
            Ok((from, to)) => {
                let line = self.input[from..to].strip_suffix(b"\r").unwrap_or(&self.input[from..to]);
                match parse_request(line, self.user) {
                    Ok(request) => Incoming::Request(request),
                    Err(reject) => {
                        Incoming::Refused { reason: reject.reason, order_id: reject.order_id, cid: reject.cid }
                    }
                }
            }
        })
    }
}

impl Transport for JsonLines {
    fn next_buffered(&mut self) -> Option<Request> {
        match self.parse_buffered()? {
            Incoming::Request(request) if !matches!(request, Request::Login(_) | Request::Logout) => Some(request),
            other => {
                self.peeked = Some(other);
                None
            }
        }
    }

    async fn recv(&mut self) -> io::Result<Option<Incoming>> {
        loop {
            if let Some(message) = self.parse_buffered() {
                return Ok(Some(message));
            }
            // Keep the buffer from growing: move the unread part to the front.
            if self.start > 0 {
                self.input.drain(..self.start);
                self.scanned -= self.start;
                self.start = 0;
            }
            self.input.reserve(8192);
            // Cancel-safe: either bytes arrived and are kept, or nothing happened.
            let n = self.stream.read_buf(&mut self.input).await?;
            if n == 0 {
                return Ok(None);
            }
        }
    }

    fn encode(&mut self, reply: &Reply) {
        write_reply(&mut self.output, reply);
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.abandoned {
            self.output.clear();
            return Err(io::Error::other("a write was cut off"));
        }
        if !self.output.is_empty() {
            self.stream.write_all(&self.output).await?;
            self.output.clear();
        }
        Ok(())
    }

    fn abandon(&mut self) {
        self.abandoned = true;
        self.output.clear();
    }

    fn logged_in(&mut self, user: UserId) {
        self.user = user;
    }
}
