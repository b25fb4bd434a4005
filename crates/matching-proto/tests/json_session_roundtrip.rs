//! The JSON session on arbitrary messages: every request a client writes
//! reads back as itself on the server, every reply the server writes reads
//! back as itself on the client, and any bytes parse to a request or a
//! rejection, never a panic.

mod common;

use common::{cid, side, symbol, text, tif};
use matching_core::{Action, CancelReason, NewOrder, OrderType, RejectReason, Stp, TradingStatus, VALUE_MAX};
use matching_proto::json_session::{parse_reply, parse_request, write_reply, write_request};
use matching_proto::session::{ClientEvent, GatewayReason, Liquidity, Login, LoginError, OrderInfo, Reply, Request};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

/// What a JSON integer field of SPEC's holds: `[1, 2^53 - 1]`.
fn amount() -> impl Strategy<Value = u64> {
    1..=VALUE_MAX
}

fn user() -> impl Strategy<Value = u64> {
    0..=VALUE_MAX
}

fn new_order() -> impl Strategy<Value = NewOrder> {
    let stp = select(vec![Stp::None, Stp::CancelTaker, Stp::CancelMaker, Stp::CancelBoth]);
    let kind = prop_oneof![amount().prop_map(Some), Just(None)];
    (user(), symbol(), side(), kind, amount(), tif(), any::<bool>(), stp).prop_map(
        |(user, symbol, side, price, qty, tif, post_only, stp)| NewOrder {
            order_id: 0,
            user,
            symbol,
            side,
            order_type: if price.is_some() { OrderType::Limit } else { OrderType::Market },
            price,
            qty,
            tif,
            post_only,
            stp,
        },
    )
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (user(), text(16), any::<bool>(), option::of(0..=VALUE_MAX)).prop_map(
            |(user, key, cancel_on_disconnect, resume_after)| {
                Request::Login(Login { user, key, cancel_on_disconnect, resume_after })
            }
        ),
        (new_order(), option::of(cid())).prop_map(|(order, cid)| Request::Command { action: Action::New(order), cid }),
        (user(), amount())
            .prop_map(|(user, order_id)| Request::Command { action: Action::Cancel { user, order_id }, cid: None }),
        (user(), amount(), option::of(amount()), option::of(amount()))
            .prop_filter("a modify changes something", |(_, _, price, qty)| price.is_some() || qty.is_some())
            .prop_map(|(user, order_id, price, qty)| Request::Command {
                action: Action::Modify { user, order_id, price, qty },
                cid: None
            }),
        (user(), option::of(symbol()), option::of(side())).prop_map(|(user, symbol, side)| Request::Command {
            action: Action::MassCancel { user, symbol, side },
            cid: None
        }),
        symbol().prop_map(|symbol| Request::Command { action: Action::Halt { symbol }, cid: None }),
        symbol().prop_map(|symbol| Request::Command { action: Action::Resume { symbol }, cid: None }),
        (user(), cid()).prop_map(|(user, cid)| Request::CancelCid { user, cid }),
        (user(), cid(), option::of(amount()), option::of(amount()))
            .prop_filter("a modify changes something", |(_, _, price, qty)| price.is_some() || qty.is_some())
            .prop_map(|(user, cid, price, qty)| Request::ModifyCid { user, cid, price, qty }),
        Just(Request::Orders),
        Just(Request::Ping),
        Just(Request::Logout),
    ]
}

fn client_event() -> impl Strategy<Value = ClientEvent> {
    let order_type = select(vec![OrderType::Limit, OrderType::Market]);
    let reject = select(RejectReason::ALL.to_vec());
    let cancel = select(CancelReason::ALL.to_vec());
    let status = select(vec![TradingStatus::Open, TradingStatus::Halted]);
    let liquidity = select(vec![Liquidity::Maker, Liquidity::Taker]);
    prop_oneof![
        (
            any::<u64>(),
            any::<u64>(),
            symbol(),
            side(),
            order_type,
            tif(),
            any::<u64>(),
            option::of(any::<u64>()),
            option::of(cid())
        )
            .prop_map(|(order_id, user, symbol, side, order_type, tif, qty, price, cid)| {
                ClientEvent::Accepted { order_id, user, symbol, side, order_type, tif, qty, price, cid }
            }),
        (reject, option::of(any::<u64>()), option::of(cid()))
            .prop_map(|(reason, order_id, cid)| ClientEvent::Rejected { reason, order_id, cid }),
        (
            symbol(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            side(),
            liquidity,
            any::<u64>(),
            option::of(cid())
        )
            .prop_map(|(symbol, trade_id, price, qty, order_id, side, liquidity, remaining, cid)| {
                ClientEvent::Fill { symbol, trade_id, price, qty, order_id, side, liquidity, remaining, cid }
            }),
        (any::<u64>(), cancel, any::<u64>(), option::of(cid()))
            .prop_map(|(order_id, reason, remaining, cid)| ClientEvent::Cancelled { order_id, reason, remaining, cid }),
        (any::<u64>(), any::<u64>(), any::<u64>(), option::of(cid()))
            .prop_map(|(order_id, price, qty, cid)| ClientEvent::Modified { order_id, price, qty, cid }),
        (any::<u64>(), any::<u64>()).prop_map(|(user, count)| ClientEvent::MassCancelled { user, count }),
        (symbol(), status).prop_map(|(symbol, status)| ClientEvent::Status { symbol, status }),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    let order = (any::<u64>(), option::of(cid()), symbol(), side(), any::<u64>(), any::<u64>())
        .prop_map(|(order_id, cid, symbol, side, price, qty)| OrderInfo { order_id, cid, symbol, side, price, qty });
    prop_oneof![
        any::<u64>().prop_map(|user| Reply::LoginAccepted { user }),
        select(vec![LoginError::BadCredentials, LoginError::Malformed, LoginError::Unavailable])
            .prop_map(|reason| Reply::LoginRejected { reason }),
        (any::<u64>(), client_event()).prop_map(|(seq, event)| Reply::Event { seq, event }),
        (select(GatewayReason::ALL.to_vec()), option::of(any::<u64>()), option::of(cid()))
            .prop_map(|(reason, order_id, cid)| Reply::Rejected { reason, order_id, cid }),
        vec(order, 0..8).prop_map(Reply::Orders),
        Just(Reply::Pong),
        any::<u64>().prop_map(|oldest| Reply::ResumeTooOld { oldest }),
        any::<u64>().prop_map(|last_seq| Reply::ResumeDone { last_seq }),
        text(40).prop_map(|reason| Reply::Goodbye { reason }),
    ]
}

proptest! {
    #[test]
    fn a_request_reads_back_as_itself(request in request(), session_user in user()) {
        let mut line = Vec::new();
        write_request(&mut line, &request);
        prop_assert_eq!(line.pop(), Some(b'\n'));
        prop_assert!(!line.contains(&b'\n'), "one line");
        prop_assert_eq!(parse_request(&line, session_user), Ok(request));
    }

    #[test]
    fn a_reply_reads_back_as_itself(reply in reply()) {
        let mut line = Vec::new();
        write_reply(&mut line, &reply);
        prop_assert_eq!(line.pop(), Some(b'\n'));
        prop_assert!(!line.contains(&b'\n'), "one line");
        prop_assert_eq!(parse_reply(&line), Some(reply));
    }

    #[test]
    fn any_bytes_are_a_request_or_a_rejection(bytes in vec(any::<u8>(), 0..300)) {
        let _ = parse_request(&bytes, 7);
        let _ = parse_reply(&bytes);
    }
}
