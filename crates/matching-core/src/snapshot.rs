//! The core's state as bytes: a canonical encoding used for snapshots and
//! for the state hash.
//!
//! Layout (all integers little-endian; each book's part is also what
//! [`BookState`] holds, so a sharded engine can assemble the whole):
//!
//! ```text
//! magic    4 bytes  "MXST"
//! version  u32      2
//! books    u64      number of books, then per book in byte order of the symbol:
//!   len      u8       symbol length (1..=32), then the symbol's bytes
//!   trade    u64      last trade id
//!   status   u8       0 open, 1 halted (absent in version 1: open)
//!   bids     u64      count, then that many orders, best first
//!   asks     u64      count, then that many orders, best first
//! order:   id u64, user u64, price u64, remaining u64, stp u8, post_only u8
//! ```
//!
//! Version 1 (before `halt`/`resume`) had no status byte; it still decodes,
//! every book open. Only what decides future behaviour is encoded (no arena slot numbers, no
//! capacities), so two exchanges that behave the same encode the same, and
//! the state hash is stable across runs, machines and level structures.

use std::fmt;

use crate::exchange::{Config, Exchange};
use crate::levels::PriceLevels;
use crate::orders::{NIL, Slot};
use crate::types::*;

const MAGIC: &[u8; 4] = b"MXST";
/// The version [`Exchange::encode_state`] writes.
pub const STATE_VERSION: u32 = 2;
/// The oldest version [`Exchange::decode_state`] still reads.
const VERSION_OLDEST: u32 = 1;
const ORDER_BYTES: usize = 8 * 4 + 2;

/// Why bytes could not be decoded into an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateError {
    /// Byte offset where decoding stopped.
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid state at byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for StateError {}

/// Where encoded state goes: a buffer, or a hasher.
trait Output {
    fn put(&mut self, bytes: &[u8]);
}

impl Output for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// 64-bit FNV-1a: simple, stable, specified (unlike std's `DefaultHasher`).
struct Fnv64(u64);

impl Fnv64 {
    fn new() -> Fnv64 {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Output for Fnv64 {
    fn put(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

fn stp_code(stp: Stp) -> u8 {
    match stp {
        Stp::None => 0,
        Stp::CancelTaker => 1,
        Stp::CancelMaker => 2,
        Stp::CancelBoth => 3,
    }
}

fn stp_from_code(code: u8) -> Option<Stp> {
    Some(match code {
        0 => Stp::None,
        1 => Stp::CancelTaker,
        2 => Stp::CancelMaker,
        3 => Stp::CancelBoth,
        _ => return None,
    })
}

/// One book's part of the state encoding: what a sharded engine gathers
/// from its shards to encode or hash the state of all of them as one
/// exchange would ([`encode_books`], [`hash_books`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookState {
    pub symbol: Symbol,
    /// The book's bytes as `encode_state` lays them out (symbol included).
    pub bytes: Vec<u8>,
}

/// The version of a state encoding, if `bytes` start like one.
pub fn state_version(bytes: &[u8]) -> Option<u32> {
    let version = bytes.get(4..8)?;
    (bytes[..4] == *MAGIC).then(|| u32::from_le_bytes([version[0], version[1], version[2], version[3]]))
}

/// The state hash of an encoding as it stands, of any version: for a
/// snapshot written by an older version, whose bytes a fresh encoding of
/// the same state no longer reproduces.
pub fn hash_encoded_state(bytes: &[u8]) -> u64 {
    let mut hasher = Fnv64::new();
    hasher.put(bytes);
    hasher.0
}

fn status_code(status: TradingStatus) -> u8 {
    match status {
        TradingStatus::Open => 0,
        TradingStatus::Halted => 1,
    }
}

fn write_header(out: &mut impl Output, books: usize) {
    out.put(MAGIC);
    out.put(&STATE_VERSION.to_le_bytes());
    out.put(&(books as u64).to_le_bytes());
}

/// The state encoding of the union of `books` (sorted here by symbol):
/// byte for byte what one exchange holding all of them would encode.
pub fn encode_books(books: &mut [BookState]) -> Vec<u8> {
    books.sort_unstable_by_key(|book| book.symbol);
    let mut out = Vec::with_capacity(16 + books.iter().map(|b| b.bytes.len()).sum::<usize>());
    write_header(&mut out, books.len());
    books.iter().for_each(|book| out.put(&book.bytes));
    out
}

/// The state hash of the union of `books`: what one exchange holding all
/// of them would give from [`Exchange::state_hash`].
pub fn hash_books(books: &mut [BookState]) -> u64 {
    books.sort_unstable_by_key(|book| book.symbol);
    let mut hasher = Fnv64::new();
    write_header(&mut hasher, books.len());
    books.iter().for_each(|book| hasher.put(&book.bytes));
    hasher.0
}

impl<L: PriceLevels> Exchange<L> {
    fn write_book(&self, book: &crate::book::Book<L>, out: &mut impl Output) {
        let name = book.symbol.as_bytes();
        out.put(&[name.len() as u8]);
        out.put(name);
        out.put(&book.last_trade_id.to_le_bytes());
        out.put(&[status_code(book.status)]);
        for side in [Side::Buy, Side::Sell] {
            let count: u64 = book.side(side).iter_best_first().map(|(_, li)| book.levels[li].count as u64).sum();
            out.put(&count.to_le_bytes());
            for order in book.orders(&self.orders, side) {
                let mut bytes = [0u8; ORDER_BYTES];
                bytes[0..8].copy_from_slice(&order.order_id.to_le_bytes());
                bytes[8..16].copy_from_slice(&order.user.to_le_bytes());
                bytes[16..24].copy_from_slice(&order.price.to_le_bytes());
                bytes[24..32].copy_from_slice(&order.qty.to_le_bytes());
                bytes[32] = stp_code(order.stp);
                bytes[33] = order.post_only as u8;
                out.put(&bytes);
            }
        }
    }

    fn write_state(&self, out: &mut impl Output) {
        let mut books: Vec<&crate::book::Book<L>> = self.books.iter().collect();
        books.sort_unstable_by_key(|book| book.symbol);
        write_header(out, books.len());
        for book in books {
            self.write_book(book, out);
        }
    }

    /// The full state, canonically encoded (see the module docs).
    pub fn encode_state(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.orders.len() * ORDER_BYTES);
        self.write_state(&mut out);
        out
    }

    /// A 64-bit FNV-1a hash of [`Exchange::encode_state`]: equal states
    /// hash equal, whatever the level structure or the history that led there.
    pub fn state_hash(&self) -> u64 {
        let mut hasher = Fnv64::new();
        self.write_state(&mut hasher);
        hasher.0
    }

    /// Every book's part of the state encoding, in no particular order.
    pub fn book_states(&self) -> Vec<BookState> {
        self.books
            .iter()
            .map(|book| {
                let mut bytes = Vec::new();
                self.write_book(book, &mut bytes);
                BookState { symbol: book.symbol, bytes }
            })
            .collect()
    }

    /// Rebuilds an exchange from [`Exchange::encode_state`] output. Checks
    /// everything it reads (ranges, priority order, unique ids, an uncrossed
    /// book, the limits of `config`) and never panics on bad bytes.
    pub fn decode_state(config: Config, bytes: &[u8]) -> Result<Self, StateError> {
        Exchange::decode_state_where(config, bytes, |_| true)
    }

    /// As [`Exchange::decode_state`], keeping only the books whose symbol
    /// `keep` accepts (the others are read and checked, then passed over):
    /// how each shard of an engine takes its part of one snapshot.
    pub fn decode_state_where(
        config: Config,
        bytes: &[u8],
        keep: impl Fn(&Symbol) -> bool,
    ) -> Result<Self, StateError> {
        let mut exchange = Exchange::<L>::with_levels(config);
        let mut r = Reader { bytes, offset: 0 };
        if r.take(4)? != MAGIC {
            return Err(r.error("not a state encoding (bad magic)"));
        }
        let version = r.u32()?;
        if !(VERSION_OLDEST..=STATE_VERSION).contains(&version) {
            return Err(r.error(&format!("unsupported version {version}")));
        }
        let read_status = |r: &mut Reader<'_>| -> Result<TradingStatus, StateError> {
            if version < 2 {
                return Ok(TradingStatus::Open);
            }
            match r.u8()? {
                0 => Ok(TradingStatus::Open),
                1 => Ok(TradingStatus::Halted),
                _ => Err(r.error("invalid trading status")),
            }
        };
        let book_count = r.u64()?;
        let mut previous: Option<Symbol> = None;
        for _ in 0..book_count {
            let len = r.u8()? as usize;
            let symbol = Symbol::from_bytes(r.take(len)?).ok_or_else(|| r.error("invalid symbol"))?;
            if previous.is_some_and(|p| p >= symbol) {
                return Err(r.error("books not in symbol order"));
            }
            previous = Some(symbol);
            if !keep(&symbol) {
                r.u64()?;
                read_status(&mut r)?;
                for side in [Side::Buy, Side::Sell] {
                    for _ in 0..r.u64()? {
                        r.order(side)?;
                    }
                }
                continue;
            }
            let book_ix = match exchange.book_by_symbol.get(&symbol) {
                Some(&ix) => ix,
                None if exchange.config.instruments.is_some() => {
                    return Err(r.error(&format!("symbol {symbol} is not a configured instrument")));
                }
                None if exchange.books.len() >= exchange.config.symbols_max => {
                    return Err(r.error("more books than symbols_max"));
                }
                None => exchange.create_book(symbol),
            };
            let last_trade_id = r.u64()?;
            // Trade ids are JSON integers like every other value: at most
            // 2^53 - 1, and the book must be able to give the next one.
            if last_trade_id >= VALUE_MAX {
                return Err(r.error(&format!("last trade id {last_trade_id} out of range")));
            }
            let status = read_status(&mut r)?;
            let book = &mut exchange.books[book_ix as usize];
            book.last_trade_id = last_trade_id;
            book.status = status;
            for side in [Side::Buy, Side::Sell] {
                let count = r.u64()?;
                let mut last_price: Option<Price> = None;
                for _ in 0..count {
                    let order = r.order(side)?;
                    if last_price.is_some_and(|p| match side {
                        Side::Buy => order.price > p,
                        Side::Sell => order.price < p,
                    }) {
                        return Err(r.error("orders not in priority order"));
                    }
                    last_price = Some(order.price);
                    if exchange.orders.contains(order.id) {
                        return Err(r.error(&format!("order id {} appears twice", order.id)));
                    }
                    let Some(oi) = exchange.orders.insert(Slot { book: book_ix, ..order }) else {
                        return Err(r.error("more orders than orders_max"));
                    };
                    let book = &mut exchange.books[book_ix as usize];
                    book.link_tail(&mut exchange.orders, oi);
                }
            }
            let book = &exchange.books[book_ix as usize];
            if let (Some((bid, _)), Some((ask, _))) = (book.best(Side::Buy), book.best(Side::Sell))
                && bid >= ask
            {
                return Err(r.error(&format!("book {symbol} is crossed")));
            }
        }
        if r.offset != bytes.len() {
            return Err(r.error("trailing bytes"));
        }
        Ok(exchange)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn error(&self, message: &str) -> StateError {
        StateError { offset: self.offset, message: message.to_string() }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        let end = self.offset.checked_add(n).filter(|&end| end <= self.bytes.len());
        let end = end.ok_or_else(|| self.error("truncated"))?;
        let slice = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, StateError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, StateError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, StateError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn order(&mut self, side: Side) -> Result<Slot, StateError> {
        let (id, user, price, remaining) = (self.u64()?, self.u64()?, self.u64()?, self.u64()?);
        let stp = stp_from_code(self.u8()?).ok_or_else(|| self.error("invalid stp code"))?;
        let post_only = match self.u8()? {
            0 => false,
            1 => true,
            _ => return Err(self.error("invalid post_only flag")),
        };
        let valid = |v: u64| (1..=VALUE_MAX).contains(&v);
        if !valid(id) || user > VALUE_MAX || !valid(price) || !valid(remaining) {
            return Err(self.error(&format!("order {id} has a value out of range")));
        }
        Ok(Slot::resting_order(id, user, NIL, side, price, remaining, stp, post_only))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, Command, NewOrder};

    #[test]
    fn book_states_of_split_exchanges_assemble_into_the_whole() {
        let (a, b, c) = (Symbol::new("A").unwrap(), Symbol::new("B").unwrap(), Symbol::new("C").unwrap());
        let orders =
            [(a, Side::Buy, 10), (b, Side::Sell, 12), (c, Side::Buy, 9), (a, Side::Sell, 10), (b, Side::Sell, 13)];
        let mut whole: Exchange = Exchange::default();
        let (mut left, mut right): (Exchange, Exchange) = (Exchange::default(), Exchange::default());
        for (i, &(symbol, side, price)) in orders.iter().enumerate() {
            let command =
                Command::new(i as u64 + 1, Action::New(NewOrder::limit(i as u64 + 1, 1, symbol, side, price, 3)));
            whole.process(&command, &mut crate::DiscardEvents);
            let part = if symbol == b { &mut right } else { &mut left };
            part.process(&command, &mut crate::DiscardEvents);
        }
        let mut parts = left.book_states();
        parts.extend(right.book_states());
        assert_eq!(encode_books(&mut parts), whole.encode_state());
        assert_eq!(hash_books(&mut parts), whole.state_hash());
        assert_ne!(hash_books(&mut left.book_states()), whole.state_hash());
    }
}
