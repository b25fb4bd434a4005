//! The web page and the read-only REST endpoints, on the HTTP address
//! (beside `/ws`):
//!
//! - `GET /`, `/app.js`, `/style.css`: the page (`crates/matching-server/web/`,
//!   built into the binary; `--web-dir` reads them from disk instead).
//! - `GET /api/symbols`, `/api/book`, `/api/trades`, `/api/candles`: public,
//!   answered by the md thread from what it has published (so they agree
//!   with the WebSocket channels).
//! - `GET /api/orders`: a user's resting orders, with the user's key
//!   (`Authorization: Bearer <user>:<key>`), answered by the driver.
//!
//! Every answer is JSON; an error is `{"error": "..."}` with its status.
//! The layouts are in docs/PROTOCOL.md ("REST").

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use matching_core::{Symbol, UserId};
use matching_marketdata::{CANDLES_KEPT, Candle, Interval, TRADES_KEPT, TapeTrade};
use matching_proto::json_md::Level;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::driver::AdminRequest;
use crate::md::{MdControl, MdQuery};
use crate::ops::Refused;
use crate::session::Context;
use crate::users::Role;

/// The page's files, as built in.
const PAGE: [(&str, &str, &str); 3] = [
    ("index.html", "text/html; charset=utf-8", include_str!("../web/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("../web/app.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("../web/style.css")),
];

/// Levels a book answer gives a side when `depth` is not asked.
const BOOK_DEPTH: usize = 100;
const BOOK_DEPTH_MAX: usize = 1000;
const TRADES_DEFAULT: usize = 100;
const CANDLES_DEFAULT: usize = 300;

/// Market-data reads waiting for the md thread at once; more are refused
/// (503) rather than queued: the md thread also publishes the feed, and
/// the driver waits for it if it falls a whole ring behind.
const MD_QUERIES_MAX: usize = 8;

struct Rest {
    context: Arc<Context>,
    web_dir: Option<PathBuf>,
    md_queries: Arc<tokio::sync::Semaphore>,
}

pub(crate) fn router(context: Arc<Context>, web_dir: Option<PathBuf>) -> Router {
    Router::new()
        .route("/", get(|state| page(state, "index.html")))
        .route("/index.html", get(|state| page(state, "index.html")))
        .route("/app.js", get(|state| page(state, "app.js")))
        .route("/style.css", get(|state| page(state, "style.css")))
        .route("/api/symbols", get(symbols))
        .route("/api/book", get(book))
        .route("/api/trades", get(trades))
        .route("/api/candles", get(candles))
        .route("/api/orders", get(orders))
        .fallback(|| async { error((404, "no such page".to_string())) })
        .with_state(Arc::new(Rest {
            context,
            web_dir,
            md_queries: Arc::new(tokio::sync::Semaphore::new(MD_QUERIES_MAX)),
        }))
}

async fn page(State(rest): State<Arc<Rest>>, name: &'static str) -> Response {
    let Some(&(_, content_type, built_in)) = PAGE.iter().find(|(file, _, _)| *file == name) else {
        return error((404, "no such page".to_string()));
    };
    let body = match &rest.web_dir {
        None => built_in.to_string(),
        Some(dir) => {
            let path = dir.join(name);
            let read = tokio::task::spawn_blocking({
                let path = path.clone();
                move || std::fs::read_to_string(path)
            });
            match read.await.map_err(std::io::Error::other).and_then(|r| r) {
                Ok(text) => text,
                Err(e) => return error((500, format!("cannot read {}: {e}", path.display()))),
            }
        }
    };
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

fn error((code, message): Refused) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = [(header::CACHE_CONTROL, "no-store")];
    (code, headers, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

fn json_body(body: String) -> Response {
    let headers = [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")];
    (headers, body).into_response()
}

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// The query's parameters, or a 400.
fn params(params: Params) -> Result<HashMap<String, String>, Refused> {
    params.map(|Query(p)| p).map_err(|e| (400, format!("the query does not read: {e}")))
}

fn symbol(params: &HashMap<String, String>) -> Result<Symbol, Refused> {
    let text = params.get("symbol").ok_or((400, "symbol is missing".to_string()))?;
    Symbol::new(text).ok_or_else(|| (400, format!("not a symbol: {text:?}")))
}

/// An integer parameter in `1..=max`, or `default` when absent.
fn count(params: &HashMap<String, String>, name: &str, default: usize, max: usize) -> Result<usize, Refused> {
    match params.get(name) {
        None => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err((400, format!("{name} must be an integer from 1 to {max}, not {text:?}"))),
        },
    }
}

/// Asks the md thread.
async fn ask_md(rest: &Rest, query: Result<MdQuery, Refused>) -> Response {
    let query = match query {
        Ok(query) => query,
        Err(refused) => return error(refused),
    };
    let Some(md) = &rest.context.md else {
        return error((503, "the server runs without market data".to_string()));
    };
    let Ok(_permit) = Arc::clone(&rest.md_queries).try_acquire_owned() else {
        return error((503, format!("busy: {MD_QUERIES_MAX} market-data reads are being answered; try again")));
    };
    let (reply, answer) = oneshot::channel();
    md.send(MdControl::Query { query, reply });
    match tokio::time::timeout(Duration::from_secs(10), answer).await {
        Ok(Ok(body)) => json_body(body),
        Ok(Err(_)) => error((503, "the server is stopping".to_string())),
        Err(_) => error((504, "market data did not answer within 10 s".to_string())),
    }
}

async fn symbols(State(rest): State<Arc<Rest>>) -> Response {
    ask_md(&rest, Ok(MdQuery::Symbols)).await
}

async fn book(State(rest): State<Arc<Rest>>, query: Params) -> Response {
    let query = params(query).and_then(|p| {
        Ok(MdQuery::Book { symbol: symbol(&p)?, depth: count(&p, "depth", BOOK_DEPTH, BOOK_DEPTH_MAX)? })
    });
    ask_md(&rest, query).await
}

async fn trades(State(rest): State<Arc<Rest>>, query: Params) -> Response {
    let query = params(query).and_then(|p| {
        let after = match p.get("after") {
            None => 0,
            Some(text) => text.parse().map_err(|_| (400, format!("after must be a trade id, not {text:?}")))?,
        };
        Ok(MdQuery::Trades { symbol: symbol(&p)?, after, limit: count(&p, "limit", TRADES_DEFAULT, TRADES_KEPT)? })
    });
    ask_md(&rest, query).await
}

async fn candles(State(rest): State<Arc<Rest>>, query: Params) -> Response {
    let query = params(query).and_then(|p| {
        let text = p.get("interval").map_or("1s", String::as_str);
        let interval =
            Interval::parse(text).ok_or_else(|| (400, format!("interval must be 1s or 1m, not {text:?}")))?;
        Ok(MdQuery::Candles {
            symbol: symbol(&p)?,
            interval,
            limit: count(&p, "limit", CANDLES_DEFAULT, CANDLES_KEPT)?,
        })
    });
    ask_md(&rest, query).await
}

/// A user's resting orders: the caller's own, or (an operator) `user`'s.
async fn orders(State(rest): State<Arc<Rest>>, headers: HeaderMap, query: Params) -> Response {
    let answer = async {
        let p = params(query)?;
        let Some((caller, role)) = crate::ops::bearer(&headers, &rest.context.auth) else {
            return Err((401, "a user's credentials are needed: Authorization: Bearer <user>:<key>".to_string()));
        };
        let user = match p.get("user") {
            None => caller,
            Some(text) => text.parse::<UserId>().map_err(|_| (400, format!("not a user id: {text:?}")))?,
        };
        if user != caller && role != Role::Operator {
            return Err((403, "a trader sees only their own orders".to_string()));
        }
        crate::ops::ask_driver(&rest.context, AdminRequest::Orders(user)).await
    };
    match answer.await {
        Ok(value) => json_body(value.to_string()),
        Err(refused) => error(refused),
    }
}

/// A symbol in `GET /api/symbols`.
#[derive(Serialize)]
pub(crate) struct SymbolJson {
    pub(crate) symbol: String,
    /// `open` or `halted`.
    pub(crate) status: &'static str,
    /// The last trade's price; `null` before the first.
    pub(crate) last: Option<u64>,
    pub(crate) bid: Option<Level>,
    pub(crate) ask: Option<Level>,
    /// Quantity traded since the server started.
    pub(crate) volume: u128,
    /// Trades since the server started.
    pub(crate) trades: u64,
    /// The book's `md_seq` (as the WebSocket `book` channel numbers it).
    pub(crate) md_seq: u64,
}

#[derive(Serialize)]
pub(crate) struct SymbolsJson {
    pub(crate) symbols: Vec<SymbolJson>,
}

/// A trade in `GET /api/trades`.
#[derive(Serialize)]
pub(crate) struct TradeJson {
    trade_id: u64,
    price: u64,
    qty: u64,
    taker_side: &'static str,
    /// When it was published, in milliseconds since the Unix epoch.
    time_ms: u64,
}

impl From<TapeTrade> for TradeJson {
    fn from(t: TapeTrade) -> TradeJson {
        TradeJson {
            trade_id: t.trade_id,
            price: t.price,
            qty: t.qty,
            taker_side: t.taker_side.as_str(),
            time_ms: t.time_ms,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct TradesJson {
    pub(crate) symbol: String,
    pub(crate) trades: Vec<TradeJson>,
}

/// A candle in `GET /api/candles`: `t` its start (ms since the Unix epoch).
#[derive(Serialize)]
pub(crate) struct CandleJson {
    t: u64,
    o: u64,
    h: u64,
    l: u64,
    c: u64,
    v: u128,
    n: u64,
}

impl From<Candle> for CandleJson {
    fn from(c: Candle) -> CandleJson {
        CandleJson { t: c.start_ms, o: c.open, h: c.high, l: c.low, c: c.close, v: c.volume, n: c.trades }
    }
}

#[derive(Serialize)]
pub(crate) struct CandlesJson {
    pub(crate) symbol: String,
    pub(crate) interval: &'static str,
    pub(crate) candles: Vec<CandleJson>,
}
