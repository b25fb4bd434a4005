//! The public market-data channels over the WebSocket (no login):
//! [`PublicClient`] subscribes and reads [`MdMessage`]s; [`LevelBook`]
//! (from `matching-marketdata`) keeps a symbol's aggregated book from a
//! `book` snapshot and its `level` updates, and proves each one against its
//! checksum and `md_seq`.

use std::io;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use matching_core::Symbol;
pub use matching_marketdata::{LevelBook, SyncError};
use matching_proto::json_md::{Channel, MdMessage, MdRequest, parse_md, write_md_request};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A WebSocket on `/ws` used for public channels.
pub struct PublicClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl PublicClient {
    /// Connects to `ws://{addr}/ws`.
    pub async fn connect(addr: std::net::SocketAddr) -> io::Result<PublicClient> {
        PublicClient::connect_with_buffer(addr, None).await
    }

    /// As [`PublicClient::connect`], with the socket's receive buffer set
    /// to `bytes` (a small one makes a client that reads slowly show soon).
    pub async fn connect_with_buffer(addr: std::net::SocketAddr, bytes: Option<u32>) -> io::Result<PublicClient> {
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        if let Some(bytes) = bytes {
            socket.set_recv_buffer_size(bytes)?;
        }
        let stream = socket.connect(addr).await?;
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), MaybeTlsStream::Plain(stream))
            .await
            .map_err(io::Error::other)?;
        Ok(PublicClient { ws })
    }

    pub async fn send(&mut self, request: &MdRequest) -> io::Result<()> {
        let mut text = Vec::new();
        write_md_request(&mut text, request);
        let text = String::from_utf8(text).map_err(io::Error::other)?;
        self.ws.send(Message::Text(text.into())).await.map_err(io::Error::other)
    }

    pub async fn subscribe(&mut self, channel: Channel, symbol: Symbol, depth: Option<usize>) -> io::Result<()> {
        self.send(&MdRequest::Subscribe { channel, symbol, depth }).await
    }

    /// The next text message as it came (`Ok(None)`: the server closed).
    pub async fn next_text(&mut self) -> io::Result<Option<String>> {
        loop {
            match self.ws.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Text(text))) => return Ok(Some(text.to_string())),
                Some(Ok(_)) => continue,
                Some(Err(error)) => return Err(io::Error::other(error)),
            }
        }
    }

    /// The next market-data message within `wait` (`Ok(None)`: none came,
    /// or the server closed). Other messages (a goodbye) are an error with their text.
    pub async fn next_within(&mut self, wait: Duration) -> io::Result<Option<MdMessage>> {
        match tokio::time::timeout(wait, self.next_text()).await {
            Err(_) | Ok(Ok(None)) => Ok(None),
            Ok(Err(error)) => Err(error),
            Ok(Ok(Some(text))) => match parse_md(text.as_bytes()) {
                Some(message) => Ok(Some(message)),
                None => Err(io::Error::other(text)),
            },
        }
    }
}
