//! The binary protocol over TCP (`docs/PROTOCOL.md`): SoupBinTCP-style
//! packets, many read per `read` and written per `write`.

use std::io;

use matching_proto::binary::{ClientMessage, ServerMessage, decode_client, encode_server, frame_len};
use matching_proto::session::{Reply, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::session::{Incoming, Transport};

pub(crate) struct Binary {
    stream: TcpStream,
    input: Vec<u8>,
    /// Unread bytes start here.
    start: usize,
    frame_max: usize,
    output: Vec<u8>,
    /// A write was cut off midway: nothing more may be written.
    abandoned: bool,
    /// The stream is out of step (a bad length): nothing more can be read.
    broken: bool,
    /// A message read ahead by `next_buffered` that was not for it.
    peeked: Option<Incoming>,
}

impl Binary {
    pub(crate) fn new(stream: TcpStream, frame_max: usize) -> Binary {
        let frame_max = frame_max.max(matching_proto::binary::CLIENT_PACKET_LEN_MAX);
        Binary {
            stream,
            input: Vec::with_capacity(64 * 1024),
            start: 0,
            frame_max,
            abandoned: false,
            output: Vec::with_capacity(64 * 1024),
            broken: false,
            peeked: None,
        }
    }
}

impl Binary {
    /// The next message already read, if a whole packet is there.
    fn parse_buffered(&mut self) -> Option<Incoming> {
        if let Some(message) = self.peeked.take() {
            return Some(message);
        }
        if self.broken {
            return None;
        }
        match frame_len(&self.input[self.start..], self.frame_max) {
            Ok(Some(len)) => {
                let packet = &self.input[self.start..self.start + len];
                self.start += len;
                Some(match decode_client(packet) {
                    Ok(ClientMessage::Request(request)) => Incoming::Request(request),
                    Ok(ClientMessage::Heartbeat) => Incoming::Heartbeat,
                    Err(error) => Incoming::Refused { reason: error.reason, order_id: error.order_id, cid: error.cid },
                })
            }
            Ok(None) => None,
            Err(error) => {
                // The length cannot be trusted, so neither can anything after it.
                self.broken = true;
                Some(Incoming::Refused { reason: error.reason(), order_id: None, cid: None })
            }
        }
    }
}

impl Transport for Binary {
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
            if self.broken {
                return Ok(None);
            }
            if self.start > 0 {
                self.input.drain(..self.start);
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
        encode_server(&ServerMessage::Reply(reply.clone()), &mut self.output);
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

    fn heartbeats(&self) -> bool {
        true
    }

    fn encode_heartbeat(&mut self) {
        encode_server(&ServerMessage::Heartbeat, &mut self.output);
    }
}
