//! Strategies both codecs' property tests draw from.

#![allow(dead_code)]

use matching_core::{Cid, OrderType, Side, Symbol, Tif};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

pub fn symbol() -> impl Strategy<Value = Symbol> {
    "[A-Za-z0-9._/-]{1,32}".prop_map(|name| Symbol::new(&name).unwrap())
}

pub fn cid() -> impl Strategy<Value = Cid> {
    "[A-Za-z0-9._:-]{1,20}".prop_map(|text| Cid::new(&text).unwrap())
}

pub fn side() -> impl Strategy<Value = Side> {
    select(vec![Side::Buy, Side::Sell])
}

pub fn order_type() -> impl Strategy<Value = OrderType> {
    select(vec![OrderType::Limit, OrderType::Market])
}

pub fn tif() -> impl Strategy<Value = Tif> {
    select(vec![Tif::Gtc, Tif::Ioc, Tif::Fok])
}

/// Any text of at most `chars` characters (up to 4 bytes each).
pub fn text(chars: usize) -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..=chars).prop_map(String::from_iter)
}
