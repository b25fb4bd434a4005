//! `matching-engine md SYMBOL`: a live ladder of one symbol, read from the
//! market-data feed of a running `serve` (`matching_client::feed`): the
//! best asks and bids with their totals, the last trades, and the state of
//! the feed (session, next message, gaps, re-requests).
//!
//! It is a feed client like any other (it joins with a snapshot, fills
//! gaps by re-request), so it shows what a trader's tool would see. The
//! drawing is a pure function of the book and the client's counters
//! ([`Ladder::render`]), tested without a terminal.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use matching_client::feed::{FeedClient, FeedConfig, FeedStats};
use matching_core::{Side, Symbol};
use matching_marketdata::FeedBook;
use matching_proto::feed::{FeedMessage, Session, session_name};
use tokio::time::MissedTickBehavior;

#[derive(clap::Args)]
pub struct Args {
    /// The symbol to watch.
    symbol: String,
    /// Where the feed arrives: the address `serve` sends it to (bound
    /// here), or a multicast group (joined).
    #[arg(long, default_value = "127.0.0.1:7710")]
    feed_addr: SocketAddr,
    /// The feed's re-request server (UDP).
    #[arg(long, default_value = "127.0.0.1:7711")]
    rerequest_addr: SocketAddr,
    /// The feed's snapshot service (TCP).
    #[arg(long, default_value = "127.0.0.1:7712")]
    snapshot_addr: SocketAddr,
    /// Levels shown on each side (1 to 1000).
    #[arg(long, default_value_t = 10)]
    levels: usize,
}

/// How often the screen is redrawn.
const REDRAW: Duration = Duration::from_millis(200);
/// How long to wait before joining again when the snapshot service is not there.
const JOIN_RETRY: Duration = Duration::from_secs(1);
/// Most levels a side may show (a terminal is not taller).
const LEVELS_MAX: usize = 1000;
/// Trades listed.
const TRADES_SHOWN: usize = 10;
/// Width of the longest quantity bar, in characters.
const BAR_WIDTH: usize = 30;
/// Clear the screen, cursor home.
const CLEAR: &str = "\x1b[2J\x1b[H";

pub fn run(args: Args) -> anyhow::Result<()> {
    let Some(symbol) = Symbol::new(&args.symbol) else {
        bail!("{:?} is not a symbol (1 to 32 printable ASCII characters)", args.symbol);
    };
    if !(1..=LEVELS_MAX).contains(&args.levels) {
        bail!("--levels must be between 1 and {LEVELS_MAX}");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start tokio")?;
    runtime.block_on(watch(args, symbol))
}

/// Joins the feed (retrying while the snapshot service is away), then
/// polls it and redraws every [`REDRAW`] until Ctrl-C or stdout closes.
async fn watch(args: Args, symbol: Symbol) -> anyhow::Result<()> {
    let config = FeedConfig::new(args.feed_addr, args.rerequest_addr, args.snapshot_addr);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut client = loop {
        let joined = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            joined = FeedClient::join(config.clone()) => joined,
        };
        match joined {
            Ok(client) => break client,
            // Another listener on the address, or a bad address: waiting will not help.
            Err(error) if fatal(&error) => {
                return Err(error).with_context(|| format!("cannot listen to the feed at {}", args.feed_addr));
            }
            Err(error) => {
                let frame = format!(
                    "{CLEAR}{}: waiting for the feed's snapshot service at {} ({error})\n",
                    symbol.as_str(),
                    args.snapshot_addr
                );
                if !show(&frame)? {
                    return Ok(());
                }
            }
        }
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            () = tokio::time::sleep(JOIN_RETRY) => {}
        }
    };
    let mut ladder = Ladder::new(symbol, args.levels);
    let mut redraw = tokio::time::interval(REDRAW);
    redraw.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            polled = client.poll() => {
                polled.context("the feed's socket failed")?;
                // Taken after every step, so that a trade is matched to
                // the locate of its own session.
                let applied = client.take_applied();
                ladder.record(client.book(), client.session(), &applied);
            }
            _ = redraw.tick() => {
                let state = FeedState {
                    session: client.session(),
                    next: client.next_seq(),
                    synced: client.synced(),
                    stats: client.stats(),
                };
                if !show(&ladder.render(client.book(), &state))? {
                    return Ok(());
                }
            }
        }
    }
}

fn fatal(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::AddrInUse
            | io::ErrorKind::AddrNotAvailable
            | io::ErrorKind::PermissionDenied
            | io::ErrorKind::InvalidInput
    )
}

/// Writes a frame; `Ok(false)` once stdout is closed (a closed pipe is the
/// reader going away, not a failure: said on stderr, then a clean exit).
fn show(frame: &str) -> anyhow::Result<bool> {
    let mut out = io::stdout().lock();
    match out.write_all(frame.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
            let _ = writeln!(io::stderr(), "md: stdout was closed; stopping");
            Ok(false)
        }
        Err(error) => Err(error).context("cannot write to stdout"),
    }
}

/// What the ladder shows of the feed client itself.
struct FeedState {
    session: Option<Session>,
    next: u64,
    synced: bool,
    stats: FeedStats,
}

/// A print, as the tape shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Print {
    price: u64,
    qty: u64,
    taker_side: Side,
}

/// One symbol's ladder: its last trades (the book is the client's).
struct Ladder {
    symbol: Symbol,
    levels: usize,
    /// Newest last. Invariant: at most [`TRADES_SHOWN`].
    trades: VecDeque<Print>,
    /// The session the trades are of: a new one starts a new tape.
    session: Option<Session>,
}

impl Ladder {
    fn new(symbol: Symbol, levels: usize) -> Ladder {
        Ladder { symbol, levels, trades: VecDeque::with_capacity(TRADES_SHOWN), session: None }
    }

    /// Keeps the symbol's trades among messages just applied.
    fn record(&mut self, book: &FeedBook, session: Option<Session>, applied: &[(u64, FeedMessage)]) {
        if session != self.session {
            self.session = session;
            self.trades.clear();
        }
        let Some(locate) = book.locate(&self.symbol) else { return };
        for (_, message) in applied {
            if let FeedMessage::Trade { locate: at, taker_side, qty, price, .. } = *message
                && at == locate
            {
                if self.trades.len() == TRADES_SHOWN {
                    self.trades.pop_front();
                }
                self.trades.push_back(Print { price, qty, taker_side });
            }
        }
    }

    fn render(&self, book: &FeedBook, feed: &FeedState) -> String {
        let mut out = String::from(CLEAR);
        let name = self.symbol.as_str();
        let session = feed.session.map_or_else(|| "-".to_string(), |s| session_name(&s));
        let locate = book.locate(&self.symbol);
        let status = match locate {
            None => "unknown",
            Some(locate) if book.halted(locate) => "HALTED",
            Some(_) => "trading",
        };
        let sync = if feed.synced { "" } else { "  (resyncing from a snapshot)" };
        let s = &feed.stats;
        let _ = writeln!(out, "{name}  {status}   session {session}  next {}{sync}", feed.next);
        let _ = writeln!(
            out,
            "packets {}  gaps {}  re-requests {}  snapshots {}  dropped {}",
            s.packets, s.gaps, s.rerequests, s.snapshots, s.dropped
        );
        let _ = writeln!(out);
        let Some(locate) = locate else {
            let _ = writeln!(out, "waiting for {name}");
            return out;
        };
        let mut asks = book.top(locate, Side::Sell, self.levels);
        asks.reverse();
        let bids = book.top(locate, Side::Buy, self.levels);
        let widest = asks.iter().chain(&bids).map(|&(_, qty)| qty).max().unwrap_or(0);
        let _ = writeln!(out, "      {:>12} {:>12}", "price", "qty");
        for &(price, qty) in &asks {
            let _ = writeln!(out, "ask   {price:>12} {qty:>12}  {}", bar(qty, widest));
        }
        match (bids.first(), asks.last()) {
            (Some(&(bid, _)), Some(&(ask, _))) => {
                let _ = writeln!(out, "      {:-^25}", format!(" spread {} ", ask.saturating_sub(bid)));
            }
            _ => {
                let _ = writeln!(out, "      {:-^25}", "");
            }
        }
        for &(price, qty) in &bids {
            let _ = writeln!(out, "bid   {price:>12} {qty:>12}  {}", bar(qty, widest));
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "last trades");
        let _ = writeln!(out, "      {:>12} {:>12}  aggressor", "price", "qty");
        for print in self.trades.iter().rev() {
            let _ = writeln!(out, "      {:>12} {:>12}  {}", print.price, print.qty, print.taker_side.as_str());
        }
        out
    }
}

/// A bar of `qty` against the widest level shown (at least one character
/// for any quantity, so that no level looks empty).
fn bar(qty: u128, widest: u128) -> String {
    if qty == 0 || widest == 0 {
        return String::new();
    }
    // In floating point: totals are u128, and a bar needs no exactness.
    let width = (qty as f64 / widest as f64 * BAR_WIDTH as f64).round().clamp(1.0, BAR_WIDTH as f64) as usize;
    "█".repeat(width)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> FeedState {
        FeedState { session: Some(*b"ME00000001"), next: 42, synced: true, stats: FeedStats::default() }
    }

    #[test]
    fn an_unknown_symbol_is_waited_for() {
        let ladder = Ladder::new(Symbol::new("BTC-USD").unwrap(), 10);
        let frame = ladder.render(&FeedBook::new(), &state());
        assert!(frame.starts_with(CLEAR));
        assert!(frame.contains("waiting for BTC-USD"), "{frame}");
        assert!(frame.contains("session ME00000001") && frame.contains("next 42"), "{frame}");
    }

    #[test]
    fn asks_highest_first_then_bids_best_first_and_the_last_trades() {
        let symbol = Symbol::new("BTC-USD").unwrap();
        let mut book = FeedBook::new();
        let mut apply = |message: FeedMessage| book.apply(&message, |_, _| {}).unwrap();
        apply(FeedMessage::SymbolDirectory { locate: 1, seq: 1, symbol });
        let orders = [(1, Side::Sell, 103, 4), (2, Side::Sell, 101, 2), (3, Side::Buy, 99, 8), (4, Side::Buy, 100, 1)];
        for (order_id, side, price, qty) in orders {
            apply(FeedMessage::AddOrder { locate: 1, seq: order_id, order_id, side, qty, price });
        }
        let mut ladder = Ladder::new(symbol, 1);
        let trade = |price, match_number| {
            let message = FeedMessage::Trade { locate: 1, seq: 9, taker_side: Side::Buy, qty: 3, price, match_number };
            (match_number, message)
        };
        let applied: Vec<_> = (1..=12).map(|i| trade(200 + i, i)).collect();
        ladder.record(&book, Some(*b"ME00000001"), &applied);
        assert_eq!(ladder.trades.len(), TRADES_SHOWN);
        assert_eq!(ladder.trades.back().map(|p| p.price), Some(212));

        let frame = ladder.render(&book, &state());
        // One level a side: the best ask (101) and the best bid (100).
        assert!(frame.contains("ask            101            2"), "{frame}");
        assert!(frame.contains("bid            100            1"), "{frame}");
        assert!(!frame.contains("103") && !frame.contains(" 99 "), "{frame}");
        assert!(frame.contains("spread 1"), "{frame}");
        // Newest trade first.
        let first = frame.find("212").unwrap();
        assert!(first < frame.find("211").unwrap(), "{frame}");
        assert!(!frame.contains("202"), "only the last {TRADES_SHOWN}: {frame}");

        let mut ladder = Ladder::new(symbol, 10);
        ladder.record(&book, Some(*b"ME00000001"), &applied);
        let frame = ladder.render(&book, &state());
        let rows: Vec<&str> = frame.lines().filter(|l| l.starts_with("ask") || l.starts_with("bid")).collect();
        assert_eq!(rows.len(), 4);
        assert!(rows[0].contains("103") && rows[1].contains("101"), "{frame}");
        assert!(rows[2].contains("100") && rows[3].contains("99"), "{frame}");
        // A new session starts a new tape.
        ladder.record(&book, Some(*b"ME00000002"), &[]);
        assert!(ladder.trades.is_empty());
    }

    #[test]
    fn bars_scale_to_the_widest_level() {
        assert_eq!(bar(0, 10), "");
        assert_eq!(bar(10, 10).chars().count(), BAR_WIDTH);
        assert_eq!(bar(1, 1_000_000).chars().count(), 1);
        assert_eq!(bar(u128::MAX, u128::MAX).chars().count(), BAR_WIDTH);
    }
}
