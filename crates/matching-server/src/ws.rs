//! The HTTP front door: the WebSocket JSON API at `/ws` (one JSON object
//! per text message each way, the same requests and replies as JSON over
//! TCP), and the public market-data channels on the same socket
//! (`subscribe`/`unsubscribe`, no login needed; handed to the md thread).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::get;
use futures_util::SinkExt;
use matching_core::UserId;
use matching_proto::json_md::{MdError, MdMessage, parse_md_request, write_md};
use matching_proto::json_session::{parse_request, write_reply};
use matching_proto::session::{GatewayReason, Refusal, Reply};
use tokio::sync::mpsc;

use crate::driver::Kill;
use crate::md::{MdControl, MdHandle};
use crate::session::{self, Context, Incoming, MdInbox, Transport};

pub(crate) fn router(context: Arc<Context>) -> Router {
    Router::new().route("/ws", get(upgrade)).with_state(context)
}

async fn upgrade(
    ws: WebSocketUpgrade,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(context): State<Arc<Context>>,
) -> Response {
    let frame_max = context.limits.frame_bytes;
    ws.max_message_size(frame_max).max_frame_size(frame_max).on_upgrade(move |socket| async move {
        let (public, inbox) = match &context.md {
            Some(md) => {
                let (tx, rx) = mpsc::channel(md_queue(&context));
                let kill = Arc::new(Kill::default());
                let conn = context.next_session.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let public = Public { md: md.clone(), conn, out: tx, kill: Arc::clone(&kill), subscribed: false };
                (Some(public), Some(MdInbox { rx, kill }))
            }
            None => (None, None),
        };
        let transport = WsJson { socket, output: Vec::new(), user: 0, public };
        session::run_with_public(transport, context, peer.ip(), inbox).await;
    })
}

fn md_queue(context: &Context) -> usize {
    context.md_queue.max(16)
}

/// A connection's end of the public channels.
struct Public {
    md: MdHandle,
    conn: u64,
    /// The connection's bounded queue (the md thread sends on it).
    out: mpsc::Sender<String>,
    kill: Arc<Kill>,
    subscribed: bool,
}

impl Drop for Public {
    fn drop(&mut self) {
        self.md.send(MdControl::Gone { conn: self.conn });
    }
}

struct WsJson {
    socket: WebSocket,
    /// Encoded replies, one message each.
    output: Vec<String>,
    user: UserId,
    /// `None`: the server runs without market data.
    public: Option<Public>,
}

impl WsJson {
    /// A `subscribe`/`unsubscribe`: to the md thread, which answers on the
    /// connection's queue (the answer, then the snapshot, in order).
    fn market_data(&mut self, text: &[u8]) -> Option<()> {
        let request = parse_md_request(text)?;
        match (request, &mut self.public) {
            (Ok(request), Some(public)) => {
                public.subscribed = true;
                public.md.send(MdControl::Request {
                    conn: public.conn,
                    request,
                    out: public.out.clone(),
                    kill: Arc::clone(&public.kill),
                });
            }
            (refused, _) => {
                let reason = refused.err().unwrap_or(MdError::Unavailable);
                let mut out = Vec::new();
                write_md(&mut out, &MdMessage::MdRejected { reason });
                self.output.push(String::from_utf8(out).unwrap_or_default());
            }
        }
        Some(())
    }
}

impl Transport for WsJson {
    async fn recv(&mut self) -> io::Result<Option<Incoming>> {
        loop {
            let Some(message) = self.socket.recv().await else { return Ok(None) };
            let message = message.map_err(io::Error::other)?;
            let text = match message {
                Message::Text(text) => text,
                Message::Close(_) => return Ok(None),
                // Answered by the WebSocket layer.
                Message::Ping(_) | Message::Pong(_) => continue,
                Message::Binary(_) => {
                    return Ok(Some(Incoming::Refused(Refusal::new(GatewayReason::Malformed))));
                }
            };
            return Ok(Some(match parse_request(text.as_bytes(), self.user) {
                Ok(request) => Incoming::Request(request),
                Err(refusal) if refusal.reason == GatewayReason::UnknownOp => {
                    if self.market_data(text.as_bytes()).is_some() {
                        // Answered by the md thread, or refused here (written by the session's flush).
                        if self.output.is_empty() {
                            continue;
                        }
                        return Ok(Some(Incoming::Flush));
                    }
                    Incoming::Refused(refusal)
                }
                Err(refusal) => Incoming::Refused(refusal),
            }));
        }
    }

    fn encode(&mut self, reply: &Reply) {
        let mut line = Vec::with_capacity(128);
        write_reply(&mut line, reply);
        line.pop(); // the newline
        self.output.push(String::from_utf8(line).unwrap_or_default());
    }

    async fn flush(&mut self) -> io::Result<()> {
        // Every message queued, then one flush: one write for the batch,
        // not one per message (a book subscriber gets thousands a second).
        for text in self.output.drain(..) {
            self.socket.feed(Message::Text(text.into())).await.map_err(io::Error::other)?;
        }
        self.socket.flush().await.map_err(io::Error::other)
    }

    fn logged_in(&mut self, user: UserId) {
        self.user = user;
    }

    fn protocol(&self) -> crate::stats::Protocol {
        crate::stats::Protocol::WebSocket
    }

    fn abandon(&mut self) {
        // A WebSocket message is sent whole or not at all.
        self.output.clear();
    }

    fn encode_public(&mut self, text: String) {
        self.output.push(text);
    }

    fn public(&self) -> bool {
        self.public.as_ref().is_some_and(|p| p.subscribed)
    }
}
