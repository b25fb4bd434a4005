//! Where a command goes: a new order (or anything else naming a symbol) to
//! the shard of its symbol, a cancel or modify to the shard that holds its
//! order, a mass cancel of every symbol to every shard.

use rustc_hash::FxHashMap;

use matching_core::{OrderId, Seq, Symbol};

/// Sends every symbol to one shard: an explicit table first, then a stable
/// hash of the name (FNV-1a, the same on every machine and run).
#[derive(Clone, Debug)]
pub(crate) struct SymbolRouter {
    shards: usize,
    table: FxHashMap<Symbol, u8>,
}

impl SymbolRouter {
    pub(crate) fn new(shards: usize, table: &[(Symbol, usize)]) -> SymbolRouter {
        let table = table.iter().map(|&(symbol, shard)| (symbol, (shard % shards) as u8)).collect();
        SymbolRouter { shards, table }
    }

    #[inline(always)]
    pub(crate) fn shard_of(&self, symbol: &Symbol) -> u8 {
        if self.shards == 1 {
            return 0;
        }
        self.shard_of_many(symbol)
    }

    fn shard_of_many(&self, symbol: &Symbol) -> u8 {
        if !self.table.is_empty()
            && let Some(&shard) = self.table.get(symbol)
        {
            return shard;
        }
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in symbol.as_bytes() {
            hash = (hash ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
        (hash % self.shards as u64) as u8
    }
}

/// Where a cancel or modify must go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OrderRoute {
    /// The shard that received the order.
    Shard(u8),
    /// To every shard: the order is older than the window remembers; the
    /// shard that holds it answers, and the merger keeps that answer.
    Broadcast,
    /// To every shard, each answering its part (a mass cancel of every symbol).
    Span,
}

/// The shard of every recent order id, in a ring of one byte per `seq`.
///
/// Order ids are `seq`s (the sequencer gives them), so the shard of order
/// `id` is the byte at `id % window`, written when `id` was sequenced, for
/// as long as `id` is within the last `window` seqs. Older orders are rare
/// (long-lived resting orders) and cost a broadcast; memory stays at
/// `window` bytes however long the engine runs.
pub(crate) struct IdRoutes {
    cells: Box<[u8]>,
    mask: u64,
}

/// How many seqs a window asked to remember `window` remembers: the size
/// rounded up to a power of two, at least 64.
pub(crate) fn rounded_window(window: usize) -> usize {
    window.max(64).next_power_of_two()
}

/// The cell of a `seq` that was not a new order.
const NOT_AN_ORDER: u8 = u8::MAX;

impl IdRoutes {
    pub(crate) fn new(window: usize) -> IdRoutes {
        let window = rounded_window(window);
        IdRoutes { cells: vec![NOT_AN_ORDER; window].into_boxed_slice(), mask: window as u64 - 1 }
    }

    /// Records what `seq` was: a new order for `shard`, or (`None`) anything else.
    #[inline]
    pub(crate) fn record(&mut self, seq: Seq, shard: Option<u8>) {
        self.cells[(seq & self.mask) as usize] = shard.unwrap_or(NOT_AN_ORDER);
    }

    /// Whether the window still remembers the shard of `order_id` when the
    /// next seq to be given is `next_seq`: what recovery must rebuild, and
    /// exactly what [`IdRoutes::route`] relies on.
    #[inline]
    pub(crate) fn remembers(&self, order_id: OrderId, next_seq: Seq) -> bool {
        order_id != 0 && order_id < next_seq && next_seq - order_id <= self.mask
    }

    /// Where a cancel or modify of `order_id` goes, when the next seq to be
    /// given is `next_seq`.
    #[inline]
    pub(crate) fn route(&self, order_id: OrderId, next_seq: Seq) -> OrderRoute {
        if order_id == 0 || order_id >= next_seq {
            // No such order: any shard gives the same rejection.
            return OrderRoute::Shard(0);
        }
        if !self.remembers(order_id, next_seq) {
            return OrderRoute::Broadcast;
        }
        match self.cells[(order_id & self.mask) as usize] {
            NOT_AN_ORDER => OrderRoute::Shard(0),
            shard => OrderRoute::Shard(shard),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_spread_and_stay_put() {
        let router = SymbolRouter::new(4, &[]);
        let names = ["BTC-USD", "ETH-USD", "SOL-USD", "A", "B", "C", "D", "E", "F", "G"];
        let shards: Vec<u8> = names.iter().map(|n| router.shard_of(&Symbol::new(n).unwrap())).collect();
        assert!(shards.iter().all(|&s| s < 4));
        let used: std::collections::BTreeSet<u8> = shards.iter().copied().collect();
        assert!(used.len() >= 3, "{shards:?}");
        let again: Vec<u8> =
            names.iter().map(|n| SymbolRouter::new(4, &[]).shard_of(&Symbol::new(n).unwrap())).collect();
        assert_eq!(shards, again);
        let pinned = SymbolRouter::new(4, &[(Symbol::new("BTC-USD").unwrap(), 3)]);
        assert_eq!(pinned.shard_of(&Symbol::new("BTC-USD").unwrap()), 3);
    }

    #[test]
    fn ids_route_to_their_shard_until_they_age_out() {
        let mut routes = IdRoutes::new(64);
        for seq in 1..=200u64 {
            routes.record(seq, (seq % 3 != 0).then_some((seq % 5) as u8));
        }
        let next = 201;
        assert_eq!(routes.route(199, next), OrderRoute::Shard(4));
        assert_eq!(routes.route(198, next), OrderRoute::Shard(0)); // not an order
        assert_eq!(routes.route(201, next), OrderRoute::Shard(0)); // not yet given
        assert_eq!(routes.route(0, next), OrderRoute::Shard(0));
        assert_eq!(routes.route(next - 62, next), OrderRoute::Shard(((next - 62) % 5) as u8));
        assert_eq!(routes.route(next - 64, next), OrderRoute::Broadcast);
        assert_eq!(routes.route(1, next), OrderRoute::Broadcast);
    }
}
