//! A symbol's trading since the server started: last price, volume, trade
//! count, the most recent trades, and candles (open, high, low, close,
//! volume) over fixed intervals. What the web page's symbol list, tape and
//! price chart read (`GET /api/...`).
//!
//! Times are given by the caller (milliseconds since the Unix epoch, when
//! the trade was published): they are not part of the deterministic feed.
//! Everything is bounded: the last [`TRADES_KEPT`] trades, the last
//! [`CANDLES_KEPT`] candles of each interval.

use std::collections::VecDeque;

use matching_core::Side;

/// Trades kept per symbol.
pub const TRADES_KEPT: usize = 1000;
/// Candles kept per symbol and interval.
pub const CANDLES_KEPT: usize = 600;

/// One trade, as the tape keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TapeTrade {
    /// The symbol's trade number (the feed's match number; gapless per symbol).
    pub trade_id: u64,
    pub price: u64,
    pub qty: u64,
    pub taker_side: Side,
    pub time_ms: u64,
}

/// One candle: the trades whose time falls in `[start_ms, start_ms + interval)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candle {
    pub start_ms: u64,
    pub open: u64,
    pub high: u64,
    pub low: u64,
    pub close: u64,
    pub volume: u128,
    pub trades: u64,
}

/// The candle intervals kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interval {
    Second,
    Minute,
}

impl Interval {
    pub fn millis(self) -> u64 {
        match self {
            Interval::Second => 1_000,
            Interval::Minute => 60_000,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Interval::Second => "1s",
            Interval::Minute => "1m",
        }
    }

    pub fn parse(text: &str) -> Option<Interval> {
        match text {
            "1s" => Some(Interval::Second),
            "1m" => Some(Interval::Minute),
            _ => None,
        }
    }
}

/// A symbol's tape.
#[derive(Clone, Debug, Default)]
pub struct Tape {
    pub last: Option<u64>,
    /// Quantity traded since start.
    pub volume: u128,
    /// Trades since start.
    pub trades: u64,
    recent: VecDeque<TapeTrade>,
    seconds: VecDeque<Candle>,
    minutes: VecDeque<Candle>,
}

impl Tape {
    pub fn new() -> Tape {
        Tape::default()
    }

    /// A trade. Times that go backwards (a clock step) are taken as the
    /// latest candle's, so candles stay in order.
    pub fn trade(&mut self, trade: TapeTrade) {
        self.last = Some(trade.price);
        self.volume += u128::from(trade.qty);
        self.trades += 1;
        if self.recent.len() == TRADES_KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back(trade);
        add(&mut self.seconds, Interval::Second, &trade);
        add(&mut self.minutes, Interval::Minute, &trade);
    }

    /// The most recent trades with `trade_id > after`, at most `limit`, oldest first.
    pub fn trades_after(&self, after: u64, limit: usize) -> Vec<TapeTrade> {
        let newer = self.recent.iter().rev().take_while(|t| t.trade_id > after).take(limit);
        let mut trades: Vec<TapeTrade> = newer.copied().collect();
        trades.reverse();
        trades
    }

    /// The last `limit` candles of `interval`, oldest first.
    pub fn candles(&self, interval: Interval, limit: usize) -> Vec<Candle> {
        let candles = match interval {
            Interval::Second => &self.seconds,
            Interval::Minute => &self.minutes,
        };
        candles.iter().skip(candles.len().saturating_sub(limit)).copied().collect()
    }
}

fn add(candles: &mut VecDeque<Candle>, interval: Interval, trade: &TapeTrade) {
    let width = interval.millis();
    let start = trade.time_ms - trade.time_ms % width;
    match candles.back_mut() {
        Some(candle) if candle.start_ms >= start => {
            candle.high = candle.high.max(trade.price);
            candle.low = candle.low.min(trade.price);
            candle.close = trade.price;
            candle.volume += u128::from(trade.qty);
            candle.trades += 1;
        }
        _ => {
            if candles.len() == CANDLES_KEPT {
                candles.pop_front();
            }
            let p = trade.price;
            candles.push_back(Candle {
                start_ms: start,
                open: p,
                high: p,
                low: p,
                close: p,
                volume: u128::from(trade.qty),
                trades: 1,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(trade_id: u64, price: u64, qty: u64, time_ms: u64) -> TapeTrade {
        TapeTrade { trade_id, price, qty, taker_side: Side::Buy, time_ms }
    }

    #[test]
    fn candles_follow_the_trades() {
        let mut tape = Tape::new();
        tape.trade(trade(1, 100, 2, 10_100));
        tape.trade(trade(2, 104, 1, 10_900));
        tape.trade(trade(3, 99, 3, 10_999));
        tape.trade(trade(4, 101, 5, 11_000));
        assert_eq!(tape.last, Some(101));
        assert_eq!((tape.volume, tape.trades), (11, 4));
        let seconds = tape.candles(Interval::Second, 10);
        assert_eq!(
            seconds,
            vec![
                Candle { start_ms: 10_000, open: 100, high: 104, low: 99, close: 99, volume: 6, trades: 3 },
                Candle { start_ms: 11_000, open: 101, high: 101, low: 101, close: 101, volume: 5, trades: 1 },
            ]
        );
        let minutes = tape.candles(Interval::Minute, 10);
        assert_eq!(
            minutes,
            vec![Candle { start_ms: 0, open: 100, high: 104, low: 99, close: 101, volume: 11, trades: 4 }]
        );
        assert_eq!(tape.candles(Interval::Second, 1), seconds[1..].to_vec());
    }

    #[test]
    fn a_clock_step_back_stays_in_the_latest_candle() {
        let mut tape = Tape::new();
        tape.trade(trade(1, 100, 1, 5_500));
        tape.trade(trade(2, 90, 1, 3_000));
        let seconds = tape.candles(Interval::Second, 10);
        assert_eq!(seconds.len(), 1);
        assert_eq!((seconds[0].low, seconds[0].close, seconds[0].trades), (90, 90, 2));
    }

    #[test]
    fn the_tape_is_bounded() {
        let mut tape = Tape::new();
        let n = (TRADES_KEPT + CANDLES_KEPT + 5) as u64;
        for i in 1..=n {
            tape.trade(trade(i, 100 + i % 7, 1, i * 1_000));
        }
        assert_eq!(tape.trades, n);
        assert_eq!(tape.trades_after(0, usize::MAX).len(), TRADES_KEPT);
        assert_eq!(tape.candles(Interval::Second, usize::MAX).len(), CANDLES_KEPT);
        let last = tape.trades_after(n - 3, 10);
        assert_eq!(last.iter().map(|t| t.trade_id).collect::<Vec<_>>(), vec![n - 2, n - 1, n]);
        assert_eq!(tape.trades_after(0, 2).iter().map(|t| t.trade_id).collect::<Vec<_>>(), vec![n - 1, n]);
    }
}
