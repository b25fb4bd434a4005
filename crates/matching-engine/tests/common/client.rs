//! Talking to `serve` as a trader, for tests: connect and log in, send an
//! order, wait for the next reply or event, or for the connection to close.

#![allow(dead_code)]

use std::time::Duration;

use matching_client::{Client, Encoding, login};
use matching_core::{Action, NewOrder, Side, Symbol};
use matching_proto::session::{Cid, ClientEvent, Reply, Request};

pub const WAIT: Duration = Duration::from_secs(10);

pub fn sym(name: &str) -> Symbol {
    Symbol::new(name).unwrap()
}

pub fn new(user: u64, symbol: &str, side: Side, price: u64, qty: u64, cid: Option<&str>) -> Request {
    let order = NewOrder::limit(0, user, sym(symbol), side, price, qty);
    Request::Command { action: Action::New(order), cid: cid.and_then(Cid::new) }
}

pub async fn connect(addr: std::net::SocketAddr, encoding: Encoding, user: u64, key: &str) -> Client {
    let mut client = Client::connect(addr, encoding).await.unwrap();
    assert_eq!(client.login(login(user, key)).await.unwrap(), Reply::LoginAccepted { user });
    client
}

/// The next reply, failing the test if none comes.
pub async fn next(client: &mut Client) -> Reply {
    match client.next_within(WAIT).await {
        Ok(Some(reply)) => reply,
        other => panic!("no reply: {other:?}"),
    }
}

/// The next engine event (skipping nothing: the test knows what comes).
pub async fn event(client: &mut Client) -> (u64, ClientEvent) {
    match next(client).await {
        Reply::Event { seq, event } => (seq, event),
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Nothing arrives for a little while.
pub async fn quiet(client: &mut Client) {
    if let Ok(Some(reply)) = client.next_within(Duration::from_millis(300)).await {
        panic!("expected nothing, got {reply:?}");
    }
}

/// The server closes the connection (after a goodbye, if it sends one).
pub async fn closed(client: &mut Client) -> Option<String> {
    let mut goodbye = None;
    loop {
        match client.next_within(WAIT).await {
            Ok(Some(Reply::Goodbye { reason })) => goodbye = Some(reason),
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return goodbye,
        }
    }
}
