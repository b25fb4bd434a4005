//! The HTTP front door: the WebSocket JSON API at `/ws` (one JSON object
//! per text message each way, the same requests and replies as JSON over TCP).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::get;
use matching_core::UserId;
use matching_proto::json_session::{parse_request, write_reply};
use matching_proto::session::{GatewayReason, Refusal, Reply};

use crate::session::{self, Context, Incoming, Transport};

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
        let transport = WsJson { socket, output: Vec::new(), user: 0 };
        session::run(transport, context, peer.ip()).await;
    })
}

struct WsJson {
    socket: WebSocket,
    /// Encoded replies, one message each.
    output: Vec<String>,
    user: UserId,
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
        for text in self.output.drain(..) {
            self.socket.send(Message::Text(text.into())).await.map_err(io::Error::other)?;
        }
        Ok(())
    }

    fn logged_in(&mut self, user: UserId) {
        self.user = user;
    }

    fn abandon(&mut self) {
        // A WebSocket message is sent whole or not at all.
        self.output.clear();
    }
}
