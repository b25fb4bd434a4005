//! The binary protocol over TCP (`docs/PROTOCOL.md`): SoupBinTCP-style
//! packets, many read per `read` and written per `write`.

use std::io;

use matching_proto::binary::{ClientMessage, ServerMessage, decode_client, encode_server, frame_len};
use matching_proto::session::{Refusal, Reply, Request};
use tokio::net::TcpStream;

use crate::session::{Incoming, Transport};
use crate::tcp::Connection;

pub(crate) struct Binary {
    io: Connection,
    frame_max: usize,
    /// The stream is out of step (a bad length): nothing more can be read.
    broken: bool,
}

impl Binary {
    pub(crate) fn new(stream: TcpStream, frame_max: usize) -> Binary {
        let frame_max = frame_max.max(matching_proto::binary::CLIENT_PACKET_LEN_MAX);
        Binary { io: Connection::new(stream, 64 * 1024), frame_max, broken: false }
    }

    /// The next message already read, if a whole packet is there.
    fn parse_buffered(&mut self) -> Option<Incoming> {
        if let Some(message) = self.io.peeked.take() {
            return Some(message);
        }
        if self.broken {
            return None;
        }
        let io = &mut self.io;
        match frame_len(&io.input[io.start..], self.frame_max) {
            Ok(Some(len)) => {
                let packet = &io.input[io.start..io.start + len];
                io.start += len;
                Some(match decode_client(packet) {
                    Ok(ClientMessage::Request(request)) => Incoming::Request(request),
                    Ok(ClientMessage::Heartbeat) => Incoming::Heartbeat,
                    Err(refusal) => Incoming::Refused(refusal),
                })
            }
            Ok(None) => None,
            Err(error) => {
                // The length cannot be trusted, so neither can anything after it.
                self.broken = true;
                Some(Incoming::Refused(Refusal::new(error.reason())))
            }
        }
    }
}

impl Transport for Binary {
    fn next_buffered(&mut self) -> Option<Request> {
        let message = self.parse_buffered()?;
        self.io.for_driver(message)
    }

    async fn recv(&mut self) -> io::Result<Option<Incoming>> {
        loop {
            if let Some(message) = self.parse_buffered() {
                return Ok(Some(message));
            }
            if self.broken {
                return Ok(None);
            }
            self.io.compact();
            if !self.io.read_more().await? {
                return Ok(None);
            }
        }
    }

    fn encode(&mut self, reply: &Reply) {
        encode_server(&ServerMessage::Reply(reply.clone()), &mut self.io.output);
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.io.flush().await
    }

    fn protocol(&self) -> crate::stats::Protocol {
        crate::stats::Protocol::Binary
    }

    fn abandon(&mut self) {
        self.io.abandon();
    }

    fn heartbeats(&self) -> bool {
        true
    }

    fn encode_heartbeat(&mut self) {
        encode_server(&ServerMessage::Heartbeat, &mut self.io.output);
    }
}
