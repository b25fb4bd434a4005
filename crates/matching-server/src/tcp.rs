//! What the two TCP encodings share: a connection's buffers. Bytes read and
//! not yet parsed, replies encoded and not yet written (one `write` for all
//! of them), and a message read ahead that was not for the driver.

use std::io;

use matching_proto::session::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::session::Incoming;

pub(crate) struct Connection {
    stream: TcpStream,
    /// Bytes read; the unparsed ones start at `start`.
    pub(crate) input: Vec<u8>,
    pub(crate) start: usize,
    /// Encoded replies not yet written.
    pub(crate) output: Vec<u8>,
    /// A message read ahead by `next_buffered` that was not for it.
    pub(crate) peeked: Option<Incoming>,
    /// A write was cut off midway: nothing more may be written.
    abandoned: bool,
}

impl Connection {
    pub(crate) fn new(stream: TcpStream, input_capacity: usize) -> Connection {
        Connection {
            stream,
            input: Vec::with_capacity(input_capacity),
            start: 0,
            output: Vec::with_capacity(1 << 16),
            peeked: None,
            abandoned: false,
        }
    }

    /// Drops the parsed bytes from the front of the buffer; returns how many.
    pub(crate) fn compact(&mut self) -> usize {
        let dropped = self.start;
        if dropped > 0 {
            self.input.drain(..dropped);
            self.start = 0;
        }
        dropped
    }

    /// Reads more bytes; `false` once the peer has closed. Cancel-safe:
    /// either bytes arrived and are kept, or nothing changed.
    pub(crate) async fn read_more(&mut self) -> io::Result<bool> {
        self.input.reserve(8192);
        Ok(self.stream.read_buf(&mut self.input).await? > 0)
    }

    /// Writes what is encoded, in one write.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
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

    pub(crate) fn abandon(&mut self) {
        self.abandoned = true;
        self.output.clear();
    }

    /// `message` if it is a request for the driver; anything else is kept
    /// for the next `recv`.
    pub(crate) fn for_driver(&mut self, message: Incoming) -> Option<Request> {
        match message {
            Incoming::Request(request) if !matches!(request, Request::Login(_) | Request::Logout) => Some(request),
            other => {
                self.peeked = Some(other);
                None
            }
        }
    }
}
