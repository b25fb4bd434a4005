//! An async client for `matching-engine serve`.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use matching_client::{Client, Encoding, login};
//! use matching_core::{Action, NewOrder, Side, Symbol};
//! use matching_proto::session::{Cid, Request};
//!
//! let mut client = Client::connect("127.0.0.1:7700", Encoding::Binary).await?;
//! client.login(login(7, "the key")).await?;
//! let order = NewOrder::limit(0, 7, Symbol::new("BTC-USD").unwrap(), Side::Buy, 100, 5);
//! client.send(&Request::Command { action: Action::New(order), cid: Cid::new("my-1") }).await?;
//! while let Some(reply) = client.next().await? {
//!     println!("{reply:?}");
//! }
//! # Ok(()) }
//! ```
//!
//! [`Client::send_batch`] writes many requests in one write; replies come
//! back in the order the server sends them (each event carries its engine
//! `seq`). [`Client::split`] gives a sending half and a receiving half for
//! two tasks. The binary encoding is the default (and faster); JSON is the
//! same session, one object per line. [`Encoding::Fix`] speaks FIX 4.4 to
//! the FIX gateway with the same requests and replies ([`fix_wire`] says
//! how they are translated, and what FIX cannot say).
//!
//! [`feed::FeedClient`] is the other side of the house: it keeps the book of
//! every symbol from the public market-data feed (MoldUDP64 over UDP, with
//! re-requests and snapshots). [`admin::Admin`] calls the operator console.

#![deny(unsafe_code)]

pub mod admin;
pub mod feed;
pub mod fix_wire;

pub mod public;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use matching_core::UserId;
use matching_proto::binary::{self, ClientMessage, ServerMessage};
use matching_proto::json_session;
use matching_proto::session::{Login, Reply, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

enum WriteWire {
    Tcp(OwnedWriteHalf),
    Ws(SplitSink<Ws, Message>),
    Fix(fix_wire::FixSender),
}

enum ReadWire {
    Tcp(OwnedReadHalf),
    Ws(SplitStream<Ws>),
    Fix(fix_wire::FixReceiver),
}

/// How requests and replies are written on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Encoding {
    /// SoupBinTCP-style packets (`docs/PROTOCOL.md`), on the binary port.
    #[default]
    Binary,
    /// One JSON object per line, on the JSON port.
    Json,
    /// One JSON object per WebSocket text message, at `/ws` on the HTTP port.
    WebSocket,
    /// FIX 4.4 on the FIX port, translated to and from the same requests
    /// and replies (see [`fix_wire`]; events carry `seq` 0).
    Fix,
}

/// A login with no options.
pub fn login(user: UserId, key: &str) -> Login {
    Login { user, key: key.to_string(), cancel_on_disconnect: false, resume_after: None }
}

/// A connection to the server.
pub struct Client {
    sender: Sender,
    receiver: Receiver,
}

/// The sending half of a [`Client`].
pub struct Sender {
    stream: WriteWire,
    encoding: Encoding,
    buffer: Vec<u8>,
}

/// The receiving half of a [`Client`].
pub struct Receiver {
    stream: ReadWire,
    encoding: Encoding,
    input: Vec<u8>,
    start: usize,
    /// Orders of an answer split over several binary packets.
    orders: Vec<matching_proto::session::OrderInfo>,
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl Client {
    /// Connects to `addr` (`host:port`).
    pub async fn connect(addr: impl tokio::net::ToSocketAddrs, encoding: Encoding) -> io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, write) = match encoding {
            Encoding::WebSocket => {
                let url = format!("ws://{}/ws", stream.peer_addr()?);
                let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
                    .await
                    .map_err(io::Error::other)?;
                let (write, read) = ws.split();
                (ReadWire::Ws(read), WriteWire::Ws(write))
            }
            Encoding::Fix => {
                let (read, write) = fix_wire::halves(stream)?;
                (ReadWire::Fix(read), WriteWire::Fix(write))
            }
            Encoding::Binary | Encoding::Json => {
                let (read, write) = stream.into_split();
                (ReadWire::Tcp(read), WriteWire::Tcp(write))
            }
        };
        Ok(Client {
            sender: Sender { stream: write, encoding, buffer: Vec::with_capacity(1 << 16) },
            receiver: Receiver {
                stream: read,
                encoding,
                input: Vec::with_capacity(1 << 16),
                start: 0,
                orders: Vec::new(),
            },
        })
    }

    /// Logs in; `Ok` with the server's answer (accepted or rejected).
    pub async fn login(&mut self, login: Login) -> io::Result<Reply> {
        self.sender.send(&Request::Login(login)).await?;
        loop {
            match self.receiver.next().await? {
                Some(reply @ (Reply::LoginAccepted { .. } | Reply::LoginRejected { .. } | Reply::Goodbye { .. })) => {
                    return Ok(reply);
                }
                Some(_) => continue,
                None => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed during login")),
            }
        }
    }

    pub async fn send(&mut self, request: &Request) -> io::Result<()> {
        self.sender.send(request).await
    }

    pub async fn send_batch(&mut self, requests: &[Request]) -> io::Result<()> {
        self.sender.send_batch(requests).await
    }

    /// The next reply; `None` once the server has closed the connection.
    /// While it waits it sends a heartbeat every second (binary sessions
    /// must say something every 5 s).
    pub async fn next(&mut self) -> io::Result<Option<Reply>> {
        loop {
            match tokio::time::timeout(Duration::from_secs(1), self.receiver.next()).await {
                Ok(reply) => return reply,
                Err(_) => self.sender.heartbeat().await?,
            }
        }
    }

    /// The next reply, or `None` if none came within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> io::Result<Option<Reply>> {
        match tokio::time::timeout(wait, self.next()).await {
            Ok(reply) => reply,
            Err(_) => Ok(None),
        }
    }

    /// The halves, for a task that sends and one that receives.
    pub fn split(self) -> (Sender, Receiver) {
        (self.sender, self.receiver)
    }

    /// The halves [`Client::split`] gave, together again.
    pub fn join(sender: Sender, receiver: Receiver) -> Client {
        Client { sender, receiver }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.sender.stream {
            WriteWire::Tcp(stream) => stream.local_addr(),
            WriteWire::Ws(_) => Err(io::Error::other("a WebSocket client does not expose its address")),
            WriteWire::Fix(fix) => Ok(fix.local_addr()),
        }
    }
}

impl Sender {
    pub async fn send(&mut self, request: &Request) -> io::Result<()> {
        self.send_batch(std::slice::from_ref(request)).await
    }

    /// Writes every request in one write (over the WebSocket: one message
    /// each, flushed once).
    pub async fn send_batch(&mut self, requests: &[Request]) -> io::Result<()> {
        self.buffer.clear();
        match &mut self.stream {
            WriteWire::Tcp(stream) => {
                for request in requests {
                    match self.encoding {
                        Encoding::Binary => {
                            binary::encode_client(&ClientMessage::Request(request.clone()), &mut self.buffer)
                        }
                        _ => json_session::write_request(&mut self.buffer, request),
                    }
                }
                stream.write_all(&self.buffer).await
            }
            WriteWire::Ws(sink) => {
                for request in requests {
                    self.buffer.clear();
                    json_session::write_request(&mut self.buffer, request);
                    self.buffer.pop();
                    let text = String::from_utf8_lossy(&self.buffer).into_owned();
                    sink.feed(Message::Text(text.into())).await.map_err(io::Error::other)?;
                }
                sink.flush().await.map_err(io::Error::other)
            }
            WriteWire::Fix(fix) => fix.send_batch(requests).await,
        }
    }

    /// Tells the server the client is alive (binary; FIX once half its
    /// heartbeat interval has passed in silence; JSON has no heartbeat).
    pub async fn heartbeat(&mut self) -> io::Result<()> {
        if let WriteWire::Fix(fix) = &mut self.stream {
            return fix.heartbeat().await;
        }
        if let (Encoding::Binary, WriteWire::Tcp(stream)) = (self.encoding, &mut self.stream) {
            self.buffer.clear();
            binary::encode_client(&ClientMessage::Heartbeat, &mut self.buffer);
            stream.write_all(&self.buffer).await?;
        }
        Ok(())
    }

    /// Writes raw bytes (for tests of what the server does with garbage);
    /// over the WebSocket, as one text message.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.stream {
            WriteWire::Tcp(stream) => stream.write_all(bytes).await,
            WriteWire::Ws(sink) => sink
                .send(Message::Text(String::from_utf8_lossy(bytes).into_owned().into()))
                .await
                .map_err(io::Error::other),
            WriteWire::Fix(fix) => fix.send_raw(bytes).await,
        }
    }
}

impl Receiver {
    /// The next reply (heartbeats skipped); `None` once the server closed.
    pub async fn next(&mut self) -> io::Result<Option<Reply>> {
        if let ReadWire::Fix(fix) = &mut self.stream {
            return fix.next().await;
        }
        loop {
            if let Some(reply) = self.parse()? {
                return Ok(Some(reply));
            }
            if self.start > 0 {
                self.input.drain(..self.start);
                self.start = 0;
            }
            match &mut self.stream {
                ReadWire::Tcp(stream) => {
                    self.input.reserve(8192);
                    if stream.read_buf(&mut self.input).await? == 0 {
                        return Ok(None);
                    }
                }
                ReadWire::Ws(stream) => loop {
                    match stream.next().await {
                        None | Some(Ok(Message::Close(_))) => return Ok(None),
                        Some(Ok(Message::Text(text))) => {
                            // Read on as a line.
                            self.input.extend_from_slice(text.as_bytes());
                            self.input.push(b'\n');
                            break;
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(error)) => return Err(io::Error::other(error)),
                    }
                },
                ReadWire::Fix(_) => return Ok(None),
            }
        }
    }

    /// A reply from the buffer, if a whole one is there.
    fn parse(&mut self) -> io::Result<Option<Reply>> {
        loop {
            let buffer = &self.input[self.start..];
            match self.encoding {
                Encoding::Json | Encoding::WebSocket => {
                    let Some(end) = buffer.iter().position(|&b| b == b'\n') else { return Ok(None) };
                    let line = &buffer[..end];
                    self.start += end + 1;
                    let reply = json_session::parse_reply(line)
                        .ok_or_else(|| invalid(format!("not a reply: {}", String::from_utf8_lossy(line))))?;
                    return Ok(Some(reply));
                }
                // Read and translated by `fix_wire` (see `Receiver::next`).
                Encoding::Fix => return Ok(None),
                Encoding::Binary => {
                    let len =
                        binary::frame_len(buffer, binary::SERVER_PACKET_LEN_MAX).map_err(|e| invalid(e.to_string()))?;
                    let Some(len) = len else { return Ok(None) };
                    let message = binary::decode_server(&buffer[..len]).map_err(|e| invalid(e.to_string()))?;
                    self.start += len;
                    match message {
                        ServerMessage::Heartbeat => continue,
                        ServerMessage::OrdersPart(part) => self.orders.extend(part),
                        ServerMessage::Reply(Reply::Orders(last)) => {
                            let mut orders = std::mem::take(&mut self.orders);
                            orders.extend(last);
                            return Ok(Some(Reply::Orders(orders)));
                        }
                        ServerMessage::Reply(reply) => return Ok(Some(reply)),
                    }
                }
            }
        }
    }
}
