//! The binary codec on arbitrary messages and bytes: every message survives
//! encode then decode; a stream of packets cut anywhere is split back into
//! its packets; any bytes decode to a message or an error, never a panic;
//! a packet that decodes encodes back to the same bytes (so no reserved
//! byte, padding or absent value is ignored); a packet of the wrong length
//! is refused.

mod common;

use common::{cid, order_type, side, symbol, text, tif};
use matching_core::{Action, CancelReason, NewOrder, RejectReason, Stp, TradingStatus};
use matching_proto::binary::{
    CLIENT_PACKET_LEN_MAX, ClientMessage, SERVER_PACKET_LEN_MAX, ServerMessage, decode_client, decode_server,
    encode_client, encode_server, frame_len,
};
use matching_proto::session::{ClientEvent, GatewayReason, Liquidity, Login, LoginError, OrderInfo, Reply, Request};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{Index, select};

// ----- strategies -----

fn login() -> impl Strategy<Value = Login> {
    (any::<u64>(), text(16), any::<bool>(), option::of(any::<u64>())).prop_map(
        |(user, key, cancel_on_disconnect, resume_after)| Login { user, key, cancel_on_disconnect, resume_after },
    )
}

fn new_order() -> impl Strategy<Value = NewOrder> {
    let stp = select(vec![Stp::None, Stp::CancelTaker, Stp::CancelMaker, Stp::CancelBoth]);
    (any::<u64>(), symbol(), side(), order_type(), option::of(any::<u64>()), any::<u64>(), tif(), any::<bool>(), stp)
        .prop_map(|(user, symbol, side, order_type, price, qty, tif, post_only, stp)| NewOrder {
            order_id: 0, // not on the wire: the engine assigns it
            user,
            symbol,
            side,
            order_type,
            price,
            qty,
            tif,
            post_only,
            stp,
        })
}

fn request() -> impl Strategy<Value = Request> {
    let command = |action| Request::Command { action, cid: None };
    prop_oneof![
        login().prop_map(Request::Login),
        (new_order(), option::of(cid())).prop_map(|(o, cid)| Request::Command { action: Action::New(o), cid }),
        (any::<u64>(), any::<u64>()).prop_map(move |(user, order_id)| command(Action::Cancel { user, order_id })),
        (any::<u64>(), cid()).prop_map(|(user, cid)| Request::CancelCid { user, cid }),
        (any::<u64>(), any::<u64>(), option::of(any::<u64>()), option::of(any::<u64>()))
            .prop_map(move |(user, order_id, price, qty)| command(Action::Modify { user, order_id, price, qty })),
        (any::<u64>(), cid(), option::of(any::<u64>()), option::of(any::<u64>()))
            .prop_map(|(user, cid, price, qty)| Request::ModifyCid { user, cid, price, qty }),
        (any::<u64>(), option::of(symbol()), option::of(side()))
            .prop_map(move |(user, symbol, side)| command(Action::MassCancel { user, symbol, side })),
        symbol().prop_map(move |symbol| command(Action::Halt { symbol })),
        symbol().prop_map(move |symbol| command(Action::Resume { symbol })),
        Just(Request::Orders),
        Just(Request::Ping),
        Just(Request::Logout),
    ]
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![9 => request().prop_map(ClientMessage::Request), 1 => Just(ClientMessage::Heartbeat)]
}

fn client_event() -> impl Strategy<Value = ClientEvent> {
    let reject_reason = select(RejectReason::ALL.to_vec());
    let cancel_reason = select(CancelReason::ALL.to_vec());
    let cid = || option::of(cid());
    prop_oneof![
        (
            any::<u64>(),
            any::<u64>(),
            symbol(),
            side(),
            order_type(),
            tif(),
            any::<u64>(),
            option::of(any::<u64>()),
            cid()
        )
            .prop_map(|(order_id, user, symbol, side, order_type, tif, qty, price, cid)| {
                ClientEvent::Accepted { order_id, user, symbol, side, order_type, tif, qty, price, cid }
            }),
        (reject_reason, option::of(any::<u64>()), cid()).prop_map(|(reason, order_id, cid)| ClientEvent::Rejected {
            reason,
            order_id,
            cid
        }),
        (
            symbol(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            side(),
            select(vec![Liquidity::Maker, Liquidity::Taker]),
            any::<u64>(),
            cid()
        )
            .prop_map(|(symbol, trade_id, price, qty, order_id, side, liquidity, remaining, cid)| {
                ClientEvent::Fill { symbol, trade_id, price, qty, order_id, side, liquidity, remaining, cid }
            }),
        (any::<u64>(), cancel_reason, any::<u64>(), cid())
            .prop_map(|(order_id, reason, remaining, cid)| ClientEvent::Cancelled { order_id, reason, remaining, cid }),
        (any::<u64>(), any::<u64>(), any::<u64>(), cid())
            .prop_map(|(order_id, price, qty, cid)| ClientEvent::Modified { order_id, price, qty, cid }),
        (any::<u64>(), any::<u64>()).prop_map(|(user, count)| ClientEvent::MassCancelled { user, count }),
        (symbol(), select(vec![TradingStatus::Open, TradingStatus::Halted]))
            .prop_map(|(symbol, status)| ClientEvent::Status { symbol, status }),
    ]
}

fn order_info() -> impl Strategy<Value = OrderInfo> {
    (any::<u64>(), option::of(cid()), symbol(), side(), any::<u64>(), any::<u64>())
        .prop_map(|(order_id, cid, symbol, side, price, qty)| OrderInfo { order_id, cid, symbol, side, price, qty })
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        1 => any::<u64>().prop_map(|user| Reply::LoginAccepted { user }),
        1 => select(vec![LoginError::BadCredentials, LoginError::Malformed, LoginError::Unavailable])
            .prop_map(|reason| Reply::LoginRejected { reason }),
        6 => (any::<u64>(), client_event()).prop_map(|(seq, event)| Reply::Event { seq, event }),
        1 => (select(GatewayReason::ALL.to_vec()), option::of(any::<u64>()), option::of(cid()))
            .prop_map(|(reason, order_id, cid)| Reply::Rejected { reason, order_id, cid }),
        1 => vec(order_info(), 0..3).prop_map(Reply::Orders),
        1 => vec(order_info(), 45..125).prop_map(Reply::Orders),
        1 => Just(Reply::Pong),
        1 => any::<u64>().prop_map(|oldest| Reply::ResumeTooOld { oldest }),
        1 => any::<u64>().prop_map(|last_seq| Reply::ResumeDone { last_seq }),
        1 => text(63).prop_map(|reason| Reply::Goodbye { reason }),
    ]
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        10 => reply().prop_map(ServerMessage::Reply),
        1 => vec(order_info(), 0..3).prop_map(ServerMessage::OrdersPart),
        1 => Just(ServerMessage::Heartbeat),
    ]
}

/// A message that is one packet (an orders answer of more than 50 is several).
fn one_packet_server_message() -> impl Strategy<Value = ServerMessage> {
    server_message().prop_filter("one packet", |m| match m {
        ServerMessage::Reply(Reply::Orders(orders)) | ServerMessage::OrdersPart(orders) => orders.len() <= 50,
        _ => true,
    })
}

/// Bytes with a valid length prefix, a known packet and message type and a
/// body of a layout's length, mostly of the bytes fields hold (zero, flags,
/// small codes, a symbol or cid character), so decoding gets past its first
/// checks and sometimes through.
fn near_packet() -> impl Strategy<Value = Vec<u8>> {
    let types = select(b"LUROAJSHZ".to_vec());
    let messages = select(b"OXxMmCHRQPAJECSTD".to_vec());
    let body_lens = select(vec![0usize, 1, 3, 12, 20, 28, 32, 36, 44, 52, 60, 84, 100, 108, 164]);
    let byte = prop_oneof![6 => Just(0u8), 3 => Just(1u8), 1 => Just(2u8), 2 => Just(b'A'), 1 => any::<u8>()];
    (types, messages, body_lens).prop_flat_map(move |(packet_type, message_type, len)| {
        vec(byte.clone(), len).prop_map(move |body| {
            let declared = (body.len() + 2) as u16;
            let mut packet = declared.to_be_bytes().to_vec();
            packet.extend([packet_type, message_type]);
            packet.extend(body);
            packet
        })
    })
}

// ----- helpers -----

fn encode_clients(msgs: &[ClientMessage]) -> Vec<u8> {
    let mut out = Vec::new();
    msgs.iter().for_each(|m| encode_client(m, &mut out));
    out
}

fn encode_servers(msgs: &[ServerMessage]) -> Vec<u8> {
    let mut out = Vec::new();
    msgs.iter().for_each(|m| encode_server(m, &mut out));
    out
}

/// The packets of `stream`, fed to a reader in pieces ending at `cuts` (as
/// reads from a socket would come).
fn split(stream: &[u8], cuts: &[Index], max_len: usize) -> Vec<Vec<u8>> {
    let mut ends: Vec<usize> = cuts.iter().map(|cut| cut.index(stream.len() + 1)).collect();
    ends.push(stream.len());
    ends.sort_unstable();
    let (mut buf, mut packets, mut fed) = (Vec::new(), Vec::new(), 0);
    for end in ends {
        buf.extend_from_slice(&stream[fed..end]);
        fed = end;
        while let Some(len) = frame_len(&buf, max_len).unwrap() {
            packets.push(buf.drain(..len).collect());
        }
    }
    assert!(buf.is_empty(), "a partial packet is left over");
    packets
}

/// Orders answers in one piece: the parts' orders joined to the answer that
/// ends them (a part left at the end stays a part).
fn join_orders(msgs: impl IntoIterator<Item = ServerMessage>) -> Vec<ServerMessage> {
    let (mut joined, mut pending) = (Vec::new(), None::<Vec<OrderInfo>>);
    for msg in msgs {
        match msg {
            ServerMessage::OrdersPart(orders) => pending.get_or_insert_with(Vec::new).extend(orders),
            ServerMessage::Reply(Reply::Orders(orders)) => {
                let mut all = pending.take().unwrap_or_default();
                all.extend(orders);
                joined.push(ServerMessage::Reply(Reply::Orders(all)));
            }
            other => joined.push(other),
        }
    }
    joined.extend(pending.map(ServerMessage::OrdersPart));
    joined
}

/// `packet` with `len` body bytes instead of its own: cut, or zero-extended;
/// the length prefix says the new length.
fn resized(packet: &[u8], len: usize) -> Vec<u8> {
    let mut bytes = packet.to_vec();
    bytes.resize(len, 0);
    if let Some(prefix) = bytes.get_mut(..2) {
        prefix.copy_from_slice(&(len.saturating_sub(2) as u16).to_be_bytes());
    }
    bytes
}

/// `packet` with bytes after its length prefix set to other values.
fn changed(packet: &[u8], changes: &[(Index, u8)]) -> Vec<u8> {
    let mut bytes = packet.to_vec();
    for (at, value) in changes {
        bytes[2 + at.index(packet.len() - 2)] = *value;
    }
    bytes
}

// ----- properties -----

proptest! {
    #[test]
    fn client_messages_round_trip(msg in client_message()) {
        let bytes = encode_clients(std::slice::from_ref(&msg));
        prop_assert!(bytes.len() <= CLIENT_PACKET_LEN_MAX);
        prop_assert_eq!(frame_len(&bytes, CLIENT_PACKET_LEN_MAX), Ok(Some(bytes.len())));
        prop_assert_eq!(decode_client(&bytes), Ok(msg));
    }

    #[test]
    fn server_messages_round_trip(msg in server_message()) {
        let bytes = encode_servers(std::slice::from_ref(&msg));
        let decoded: Vec<ServerMessage> = split(&bytes, &[], SERVER_PACKET_LEN_MAX)
            .iter()
            .map(|packet| decode_server(packet).unwrap())
            .collect();
        prop_assert_eq!(join_orders(decoded), join_orders([msg]));
    }

    #[test]
    fn client_streams_split_anywhere(msgs in vec(client_message(), 1..8), cuts in vec(any::<Index>(), 0..8)) {
        let packets = split(&encode_clients(&msgs), &cuts, CLIENT_PACKET_LEN_MAX);
        let decoded: Vec<ClientMessage> = packets.iter().map(|p| decode_client(p).unwrap()).collect();
        prop_assert_eq!(decoded, msgs);
    }

    #[test]
    fn server_streams_split_anywhere(msgs in vec(server_message(), 1..8), cuts in vec(any::<Index>(), 0..8)) {
        let packets = split(&encode_servers(&msgs), &cuts, SERVER_PACKET_LEN_MAX);
        let decoded: Vec<ServerMessage> = packets.iter().map(|p| decode_server(p).unwrap()).collect();
        prop_assert_eq!(join_orders(decoded), join_orders(msgs));
    }

    #[test]
    fn any_bytes_decode_or_fail_without_panic(bytes in vec(any::<u8>(), 0..300), max_len in 0usize..5000) {
        let _ = frame_len(&bytes, max_len);
        let _ = decode_client(&bytes);
        let _ = decode_server(&bytes);
    }

    #[test]
    fn near_packets_decode_canonically(packet in near_packet()) {
        prop_assert_eq!(frame_len(&packet, 4096), Ok(Some(packet.len())));
        if let Ok(msg) = decode_client(&packet) {
            prop_assert_eq!(encode_clients(&[msg]), packet.clone());
        }
        if let Ok(msg) = decode_server(&packet) {
            prop_assert_eq!(encode_servers(&[msg]), packet);
        }
    }

    /// Bytes changed anywhere after the length prefix are refused or are the
    /// fields of another message: no reserved byte, padding or absent value
    /// is ever ignored.
    #[test]
    fn changed_client_bytes_are_refused_or_meant(msg in client_message(), changes in vec(any::<(Index, u8)>(), 1..4)) {
        let bytes = changed(&encode_clients(&[msg]), &changes);
        if let Ok(decoded) = decode_client(&bytes) {
            prop_assert_eq!(encode_clients(&[decoded]), bytes);
        }
    }

    #[test]
    fn changed_server_bytes_are_refused_or_meant(
        msg in one_packet_server_message(),
        changes in vec(any::<(Index, u8)>(), 1..4),
    ) {
        let bytes = changed(&encode_servers(&[msg]), &changes);
        if let Ok(decoded) = decode_server(&bytes) {
            prop_assert_eq!(encode_servers(&[decoded]), bytes);
        }
    }

    #[test]
    fn a_wrong_length_is_refused(msg in client_message(), reply in one_packet_server_message(), delta in 1usize..100) {
        let packet = encode_clients(&[msg]);
        prop_assert!(decode_client(&resized(&packet, packet.len() + delta)).is_err());
        prop_assert!(decode_client(&resized(&packet, packet.len().saturating_sub(delta))).is_err());
        let packet = encode_servers(&[reply]);
        prop_assert!(decode_server(&resized(&packet, packet.len() + delta)).is_err());
        prop_assert!(decode_server(&resized(&packet, packet.len().saturating_sub(delta))).is_err());
    }
}
