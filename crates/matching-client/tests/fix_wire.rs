//! The FIX wire's session behaviour against a scripted acceptor (the real
//! gateway is exercised in `matching-engine/tests/fix_load.rs`): the Logon
//! it sends, TestRequests answered by the read half alone, a gap fill for a
//! ResendRequest, a Logon closed without an answer, and a change of an
//! order that the gateway cannot answer.

use std::time::{Duration, SystemTime};

use matching_client::{Client, Encoding, login};
use matching_core::{Action, CancelReason, NewOrder, RejectReason, Side, Symbol};
use matching_fix::{Body, Header, Message, encode, frame_len, parse};
use matching_proto::session::{Cid, ClientEvent, LoginError, Reply, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(5);

/// The acceptor's side of one connection.
struct Acceptor {
    stream: TcpStream,
    input: Vec<u8>,
    seq: u64,
}

impl Acceptor {
    async fn accept(listener: &TcpListener) -> Acceptor {
        let (stream, _) = listener.accept().await.unwrap();
        Acceptor { stream, input: Vec::new(), seq: 1 }
    }

    /// The next message the client sent.
    async fn read(&mut self) -> Message {
        loop {
            if let Some(len) = frame_len(&self.input, 1 << 16).unwrap() {
                let message = parse(&self.input[..len]).unwrap();
                self.input.drain(..len);
                return message;
            }
            let n = tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.input)).await.unwrap().unwrap();
            assert!(n > 0, "the client closed");
        }
    }

    async fn send(&mut self, msg_type: &str, fields: &[(u32, &str)]) {
        let mut body = Body::new();
        for (tag, value) in fields {
            body.field_str(*tag, value);
        }
        let header =
            Header { sender: "ME", target: "U7", seq: self.seq, sending_time: SystemTime::now(), poss_dup: None };
        self.seq += 1;
        let mut out = Vec::new();
        encode(&mut out, msg_type, &header, body.as_bytes());
        self.stream.write_all(&out).await.unwrap();
    }

    /// Reads the Logon and answers it.
    async fn logon(&mut self) -> Message {
        let logon = self.read().await;
        self.send("A", &[(98, "0"), (108, "60"), (141, "Y")]).await;
        logon
    }
}

async fn pair() -> (Client, Acceptor, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = Client::connect(listener.local_addr().unwrap(), Encoding::Fix).await.unwrap();
    let acceptor = Acceptor::accept(&listener).await;
    (client, acceptor, listener)
}

/// An ExecutionReport of order 11 (`o1`, a buy of 5 at 100), with `extra` fields (in place of
/// its own of those tags).
fn report<'a>(exec_type: &'a str, extra: &[(u32, &'a str)]) -> Vec<(u32, &'a str)> {
    let mut fields = vec![(37, "11"), (11, "o1"), (17, "x"), (150, exec_type), (39, "0"), (1, "7"), (55, "FX")];
    fields.extend([(54, "1"), (38, "5"), (40, "2"), (44, "100"), (59, "1"), (151, "5"), (14, "0"), (6, "0")]);
    fields.retain(|(tag, _)| extra.iter().all(|(t, _)| t != tag));
    fields.extend_from_slice(extra);
    fields
}

async fn next(client: &mut Client) -> Reply {
    client.next_within(WAIT).await.unwrap().expect("a reply")
}

#[tokio::test]
async fn logon_test_request_and_resend_request() {
    let (client, mut acceptor, _listener) = pair().await;
    let mut client = client;
    let (login_result, logon) = tokio::join!(client.login(login(7, "ignored")), acceptor.logon());
    assert_eq!(login_result.unwrap(), Reply::LoginAccepted { user: 7 });
    let fields = [49, 56, 34, 98, 108, 141].map(|tag| logon.get(tag).unwrap().to_string());
    assert_eq!(fields, ["U7", "ME", "1", "0", "60", "Y"].map(String::from));
    assert_eq!(logon.msg_type(), "A");

    // The read half answers a TestRequest by itself, while nothing is sent.
    let (sender, mut receiver) = client.split();
    let reading = tokio::spawn(async move {
        let reply = tokio::time::timeout(WAIT, receiver.next()).await.unwrap().unwrap();
        (reply, receiver)
    });
    acceptor.send("1", &[(112, "probe-1")]).await;
    let beat = acceptor.read().await;
    assert_eq!((beat.msg_type(), beat.get(112), beat.seq_num()), ("0", Some("probe-1"), Some(2)));

    // A ResendRequest: one gap fill over everything, numbered as asked.
    acceptor.send("2", &[(7, "1"), (16, "0")]).await;
    let fill = acceptor.read().await;
    assert_eq!(fill.msg_type(), "4");
    assert_eq!((fill.get(123), fill.get(36), fill.seq_num(), fill.poss_dup()), (Some("Y"), Some("3"), Some(1), true));

    // A Heartbeat answering our TestRequest is the Pong.
    acceptor.send("0", &[(112, "T1")]).await;
    let (reply, receiver) = reading.await.unwrap();
    assert_eq!(reply, Some(Reply::Pong));
    let mut client = Client::join(sender, receiver);

    // The server's Logout: a goodbye, then the end.
    acceptor.send("5", &[(58, "bye")]).await;
    assert_eq!(next(&mut client).await, Reply::Goodbye { reason: "bye".into() });
    drop(acceptor);
    assert_eq!(client.next_within(WAIT).await.unwrap(), None);
}

#[tokio::test]
async fn a_logon_closed_without_an_answer_is_refused() {
    let (mut client, mut acceptor, _listener) = pair().await;
    let refuse = async {
        acceptor.read().await;
        drop(acceptor);
    };
    let (reply, ()) = tokio::join!(client.login(login(7, "")), refuse);
    assert_eq!(reply.unwrap(), Reply::LoginRejected { reason: LoginError::BadCredentials });
}

#[tokio::test]
async fn changes_of_one_order_go_one_at_a_time_and_are_always_answered() {
    let (mut client, mut acceptor, _listener) = pair().await;
    let (reply, _) = tokio::join!(client.login(login(7, "")), acceptor.logon());
    assert_eq!(reply.unwrap(), Reply::LoginAccepted { user: 7 });
    let cid = Cid::new("o1").unwrap();

    // Nothing is written for a batch with a request FIX cannot carry.
    let error = client.send_batch(&[Request::Ping, Request::Orders]).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::Unsupported);

    let order = NewOrder::limit(0, 7, Symbol::new("FX").unwrap(), Side::Buy, 100, 5);
    let modify = Request::ModifyCid { user: 7, cid, price: Some(99), qty: Some(4) };
    let cancel = Request::CancelCid { user: 7, cid };
    client
        .send_batch(&[Request::Command { action: Action::New(order), cid: Some(cid) }, modify, cancel])
        .await
        .unwrap();
    let new = acceptor.read().await;
    assert_eq!((new.msg_type(), new.seq_num(), new.get(11), new.get(44)), ("D", Some(2), Some("o1"), Some("100")));
    let replace = acceptor.read().await;
    assert_eq!((replace.msg_type(), replace.get(41), replace.get(38)), ("G", Some("o1"), Some("4")));
    acceptor.send("8", &report("0", &[])).await;
    assert!(matches!(
        next(&mut client).await,
        Reply::Event { seq: 0, event: ClientEvent::Accepted { order_id: 11, .. } }
    ));

    // The cancel waits for the replace's answer; self-trade prevention takes
    // the order meanwhile, and the gateway spends the replace's ClOrdIDs on it.
    let stp = [(11, replace.get(11).unwrap()), (41, "o1"), (58, "self-trade prevention")];
    acceptor.send("8", &report("4", &stp)).await;
    let cancelled = ClientEvent::Cancelled { order_id: 11, reason: CancelReason::Stp, remaining: 5, cid: Some(cid) };
    assert_eq!(next(&mut client).await, Reply::Event { seq: 0, event: cancelled });
    let rejected = ClientEvent::Rejected { reason: RejectReason::UnknownOrder, order_id: Some(11), cid: Some(cid) };
    assert_eq!(next(&mut client).await, Reply::Event { seq: 0, event: rejected });
    // Now the held cancel goes; the gateway's nameless unknown_cid is skipped.
    let cancel = acceptor.read().await;
    assert_eq!((cancel.msg_type(), cancel.get(41)), ("F", Some("o1")));
    acceptor.send("j", &[(45, "0"), (372, "D"), (380, "0"), (58, "unknown_cid")]).await;
    acceptor
        .send("9", &[(37, "NONE"), (11, "#9"), (41, "o1"), (39, "8"), (434, "1"), (102, "1"), (58, "unknown_cid")])
        .await;
    let refused =
        Reply::Rejected { reason: matching_proto::session::GatewayReason::UnknownCid, order_id: None, cid: Some(cid) };
    assert_eq!(next(&mut client).await, refused);
}
