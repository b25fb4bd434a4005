'use strict';
/*
 * The matching-engine web page: one hand-written file, no dependencies.
 *
 * Market data   mdEngine() owns the public WebSocket (/ws): it subscribes
 *   the `book` channel (depth 50) of the selected symbol, applies book/level
 *   messages to a Map per side, checks md_seq and the CRC-32 checksum after
 *   every one and resyncs (unsubscribe + subscribe) on a mismatch. It runs
 *   in a Web Worker built from its own source (so tens of thousands of
 *   messages a second never hold up the page's frames; in the page if a
 *   worker cannot start) and posts the book to the page at most every
 *   100 ms: updates are conflated there.
 *
 * State (page)
 *   page     window.__page: counters the browser tests read (frames, renders,
 *            resyncs, checksumErrors, mdMessages, lastMdSeq, symbol).
 *   book     the book as last posted: [price, qty] best first, ≤ 50 a side.
 *   market   REST data: the symbol list, the tape (≤ 100), the candles (≤ 120).
 *   acct     the login (credentials kept in memory only), open orders (the
 *            server's `orders` answer is the truth), fills (≤ 100).
 *
 * Sockets   class Conn: a WebSocket that reconnects (after 1 s, backing off
 *   to 5 s). The engine has one; `tradeConn` is order entry: it exists while
 *   logged in and logs in again (then asks for `orders`) after a reconnect.
 *
 * Polls     /api/symbols (1 s), /api/trades (500 ms, incremental with
 *   `after`), /api/candles (1 s). A poll never overlaps itself; failures
 *   are caught and feed the status ("behind").
 *
 * Render    posts and socket events only change state and set dirty flags;
 *   one requestAnimationFrame loop redraws what is dirty, at most every
 *   100 ms (≤ 10 redraws a second). Table rows are keyed (a level, an
 *   order, a trade keeps its element) and updated in place.
 */
(() => {
  // ---------------------------------------------------------------- constants
  const LADDER_LEVELS = 20;      // levels a side the ladder shows
  const TAPE_MAX = 100, FILLS_MAX = 100, MESSAGES_MAX = 50, CANDLES_MAX = 120;
  const REDRAW_MS = 100;         // at most 10 redraws a second
  const REST_LATE_MS = 2000;     // a poll failing/unanswered this long: "behind"
  const FETCH_TIMEOUT_MS = 5000;
  const ORDERS_EVERY_MS = 200;   // at most one `orders` request this often
  const SYMBOL_RE = /^[A-Za-z0-9._/-]{1,32}$/;
  const WS_URL = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;

  // ------------------------------------------------------------------ helpers
  const $ = (sel) => document.querySelector(sel);
  const now = () => performance.now();

  /** Creates an element: el('td', {class: 'x', 'data-a': 1}, 'text'). */
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    if (attrs) for (const [k, v] of Object.entries(attrs)) if (v != null) e.setAttribute(k, String(v));
    if (text != null) e.textContent = String(text);
    return e;
  }
  function setText(e, text) {
    const s = String(text);
    if (e.textContent !== s) e.textContent = s;
  }
  function setAttr(e, name, value) {
    if (value == null) { if (e.hasAttribute(name)) e.removeAttribute(name); return; }
    const s = String(value);
    if (e.getAttribute(name) !== s) e.setAttribute(name, s);
  }
  const pad2 = (n) => (n < 10 ? '0' : '') + n;
  /** HH:MM:SS local (by hand: toLocaleTimeString is slow for 100 rows). */
  function clock(ms) {
    const d = new Date(ms);
    return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  }

  /**
   * Puts `rows` (elements) into `tbody` in that order, moving rather than
   * recreating, and removes every other row.
   */
  function reconcile(tbody, rows) {
    let cur = tbody.firstChild;
    for (const row of rows) {
      if (row === cur) cur = cur.nextSibling;
      else tbody.insertBefore(row, cur);
    }
    while (cur) { const next = cur.nextSibling; tbody.removeChild(cur); cur = next; }
  }

  /** A keyed row cache: get(key, create) reuses, sweep() drops the unused. */
  class RowCache {
    constructor() { this.rows = new Map(); this.used = new Set(); }
    get(key, create) {
      let row = this.rows.get(key);
      if (!row) { row = create(); this.rows.set(key, row); }
      this.used.add(key);
      return row;
    }
    sweep() {
      for (const key of this.rows.keys()) if (!this.used.has(key)) this.rows.delete(key);
      this.used.clear();
    }
  }

  // ------------------------------------------------ sockets (self-contained)
  // Conn and mdEngine use nothing from the page's scope: the market-data
  // worker is built from their source text.

  /** A WebSocket that reconnects (after 1 s, doubling to at most 5 s) while wanted. */
  class Conn {
    constructor(url, handlers) {
      this.url = url; this.h = handlers; this.ws = null; this.wanted = false;
      this.delay = 1000; this.timer = 0;
      this.dropped = false; // closed unintentionally and not yet back
    }
    get open() { return this.ws !== null && this.ws.readyState === WebSocket.OPEN; }
    start() {
      this.wanted = true; this.dropped = false; this.delay = 1000;
      if (!this.ws && !this.timer) this.connect();
    }
    stop() {
      this.wanted = false; this.dropped = false;
      clearTimeout(this.timer); this.timer = 0;
      const ws = this.ws;
      this.ws = null;
      if (ws) { try { ws.close(); } catch (_) { /* already closed */ } }
    }
    connect() {
      this.timer = 0;
      let ws;
      try { ws = new WebSocket(this.url); } catch (_) { this.retry(); return; }
      this.ws = ws;
      ws.onopen = () => {
        if (this.ws !== ws) return;
        this.delay = 1000; this.dropped = false;
        this.h.open();
      };
      ws.onmessage = (e) => {
        if (this.ws !== ws || typeof e.data !== 'string') return;
        let m;
        try { m = JSON.parse(e.data); } catch (_) { return; }
        this.h.message(m);
      };
      ws.onerror = () => { /* onclose follows */ };
      ws.onclose = () => {
        if (this.ws !== ws) return;
        this.ws = null; this.dropped = true;
        if (this.wanted) this.retry();
        this.h.close();
      };
    }
    retry() {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 5000);
    }
    send(obj) {
      if (!this.open) return false;
      this.ws.send(JSON.stringify(obj));
      return true;
    }
  }

  /**
   * The market-data engine: the public WebSocket, the selected symbol's book
   * and its checks. It runs in a Web Worker (so a flood of `level` messages
   * never holds up the page's frames) or, failing that, in the page.
   * `io.listen(fn)` hands it the page's commands ({type: 'start', url},
   * {type: 'symbol', symbol}); `io.post(msg)` answers with {type: 'state'}
   * (connection, sync, counters, and the book when it changed; at most every
   * 100 ms except for connection and sync changes), {type: 'opened'} and
   * {type: 'info', text}.
   */
  function mdEngine(io) {
    const DEPTH = 50, POST_MS = 100, SNAPSHOT_TIMEOUT_MS = 5000;

    // CRC-32 (IEEE, as zlib's crc32), fed piece by piece.
    const TABLE = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      TABLE[n] = c >>> 0;
    }
    const feed = (c, s) => {
      for (let i = 0; i < s.length; i++) c = TABLE[(c ^ s.charCodeAt(i)) & 0xff] ^ (c >>> 8);
      return c;
    };
    // docs/PROTOCOL.md's worked example: "101:5:103:2:100:7" gives 2750968402.
    if (((feed(0xffffffff, '101:5:103:2:100:7') ^ 0xffffffff) >>> 0) !== 2750968402) console.warn('crc32 self-check failed');

    // The book: a Map price→qty per side and its prices sorted best first;
    // `sum` caches the checksum (null once a change touches the best 10).
    const book = { bids: new Map(), asks: new Map(), bidPx: [], askPx: [], sum: null };
    const stats = { mdMessages: 0, resyncs: 0, checksumErrors: 0, lastMdSeq: null, conflations: 0 };
    let symbol = null;     // the page's selected symbol
    let subscribed = null; // the symbol our last subscribe on this connection named
    let awaitAck = false;  // ignore book/level until `subscribed` for the symbol
    let synced = false;    // a snapshot arrived and every checksum since matched
    let resyncing = false, since = 0, conn = null;
    let bookChanged = true, postTimer = 0, lastPost = 0, postedMessages = -1;

    function clear() {
      book.bids.clear(); book.asks.clear(); book.bidPx.length = 0; book.askPx.length = 0;
      book.sum = null; bookChanged = true;
    }

    /** Sets one level's total (0: gone), keeping the prices sorted best first. */
    function apply(side, price, qty) {
      const buy = side === 'buy';
      const map = buy ? book.bids : book.asks, px = buy ? book.bidPx : book.askPx;
      let lo = 0, hi = px.length; // the first index not better than `price`
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (buy ? px[mid] > price : px[mid] < price) lo = mid + 1; else hi = mid;
      }
      const found = lo < px.length && px[lo] === price;
      if (lo < 10) book.sum = null; // the checksum's levels changed (or shifted)
      bookChanged = true;
      if (!(qty > 0)) {
        if (found) { px.splice(lo, 1); map.delete(price); }
        return;
      }
      if (!found) px.splice(lo, 0, price);
      map.set(price, qty);
      // The server keeps us at DEPTH levels by construction; this is a backstop.
      if (px.length > DEPTH + 10) map.delete(px.pop());
    }

    /**
     * CRC-32 of the best 10 bids and asks interleaved (bid, ask, bid, ...)
     * as price:qty joined by ':'; null if a qty is beyond 2^53 (inexact in JS).
     */
    function checksum() {
      if (book.sum !== null) return book.sum;
      let c = 0xffffffff, first = true;
      for (let i = 0; i < 10; i++) {
        for (const buy of [true, false]) {
          const px = buy ? book.bidPx : book.askPx;
          if (i >= px.length) continue;
          const q = (buy ? book.bids : book.asks).get(px[i]);
          if (!Number.isSafeInteger(q)) return null;
          if (!first) c = TABLE[(c ^ 58) & 0xff] ^ (c >>> 8); // ':'
          first = false;
          c = feed(c, `${px[i]}:${q}`);
        }
      }
      return (book.sum = (c ^ 0xffffffff) >>> 0);
    }

    function post() {
      clearTimeout(postTimer); postTimer = 0; lastPost = Date.now();
      const levels = (px, map) => px.map((p) => [p, map.get(p)]);
      io.post({
        type: 'state', symbol, open: !!conn && conn.open, dropped: !!conn && conn.dropped, synced, resyncing, stats: { ...stats },
        book: bookChanged ? { bids: levels(book.bidPx, book.bids), asks: levels(book.askPx, book.asks) } : null,
      });
      bookChanged = false; postedMessages = stats.mdMessages;
    }
    /** Posts within POST_MS: many changes make one post (conflation). */
    function postSoon() {
      if (!postTimer) postTimer = setTimeout(post, Math.max(0, lastPost + POST_MS - Date.now()));
    }

    /** (Re)subscribes the selected symbol's book. */
    function subscribe() {
      if (!conn || !conn.open || !symbol) return;
      if (subscribed) conn.send({ op: 'unsubscribe', channel: 'book', symbol: subscribed });
      subscribed = symbol; awaitAck = true; synced = false; since = Date.now();
      conn.send({ op: 'subscribe', channel: 'book', symbol, depth: DEPTH });
    }

    function resync(why) {
      stats.resyncs++;
      resyncing = true;
      console.info(`resync ${symbol}: ${why}`);
      subscribe();
      post();
    }

    function verify(m) {
      const sum = checksum();
      if (sum === null || sum === m.checksum) return true;
      stats.checksumErrors++;
      resync(`checksum ${sum} != ${m.checksum} at md_seq ${m.md_seq}`);
      return false;
    }

    function onMessage(m) {
      stats.mdMessages++;
      switch (m.ev) {
        case 'subscribed':
          if (m.channel === 'book' && m.symbol === symbol && m.symbol === subscribed) awaitAck = false;
          break;
        case 'book': {
          if (awaitAck || m.symbol !== symbol) break;
          // A snapshot mid-stream: the server conflated us; it replaces our state.
          if (synced) {
            stats.conflations++;
            if (m.md_seq < stats.lastMdSeq) { resync('md_seq went back'); return; }
          }
          clear();
          for (const [p, q] of m.bids || []) apply('buy', p, q);
          for (const [p, q] of m.asks || []) apply('sell', p, q);
          stats.lastMdSeq = m.md_seq;
          const wasLive = synced && !resyncing;
          synced = true; resyncing = false;
          if (verify(m) && !wasLive) { post(); return; } // in sync: tell the page now
          break;
        }
        case 'level':
          if (awaitAck || !synced || m.symbol !== symbol) break;
          if (m.md_seq < stats.lastMdSeq) { resync('md_seq went back'); return; }
          stats.lastMdSeq = m.md_seq;
          apply(m.side, m.price, m.qty);
          verify(m);
          break;
        case 'md_rejected':
          io.post({ type: 'info', text: `market data refused: ${m.reason}` });
          subscribed = null; awaitAck = false;
          break;
        case 'goodbye':
          io.post({ type: 'info', text: `market data: goodbye (${m.reason})` });
          break;
        default:
      }
      postSoon();
    }

    function setSymbol(next) {
      if (next === symbol) return;
      symbol = next; synced = false; resyncing = false; stats.lastMdSeq = null;
      clear();
      subscribe();
      post();
    }

    io.listen((cmd) => {
      if (cmd.type === 'symbol') { setSymbol(cmd.symbol); return; }
      if (cmd.type !== 'start' || conn) return;
      conn = new Conn(cmd.url, {
        open() { subscribed = null; subscribe(); io.post({ type: 'opened' }); post(); },
        message: onMessage,
        close() { subscribed = null; awaitAck = false; synced = false; resyncing = false; post(); },
      });
      conn.start();
      // A (re)subscribe that got no snapshot is tried again; counters reach the page.
      setInterval(() => {
        if (conn.open && symbol && !synced && Date.now() - since > SNAPSHOT_TIMEOUT_MS) resync('no snapshot');
        else if (stats.mdMessages !== postedMessages) postSoon();
      }, 250);
    });
  }

  // -------------------------------------------------------------------- state
  const page = (window.__page = {
    frames: 0, renders: 0, resyncs: 0, checksumErrors: 0, mdMessages: 0, lastMdSeq: null, symbol: null,
    conflations: 0,
  });
  const state = { symbol: null };
  // The selected symbol's book as the engine last posted it: [price, qty] best first.
  const book = { bids: [], asks: [] };
  const md = { open: false, dropped: false, synced: false, resyncing: false, openTimer: 0 };
  const market = {
    symbols: [], tape: [], lastTradeId: null, candles: [], interval: '1s',
    gen: 0,            // bumped when the tape/candles restart (stale answers dropped)
  };
  const acct = {
    state: 'logged_out', creds: null, user: null, orders: [], fills: [],
    ordersInFlight: false, ordersWanted: false, ordersSentAt: 0, ordersTimer: 0,
    cidPrefix: 'w' + Math.floor(Math.random() * 36 ** 4).toString(36).padStart(4, '0'), cidCount: 0,
  };
  const dirty = { ladder: true, depth: true, candles: true, symbols: true, tape: true, orders: true, fills: true };
  const markBook = () => { dirty.ladder = true; dirty.depth = true; };

  // -------------------------------------------------------------- market data
  /** Starts the engine in a Worker (from its own source text), or in the page if that fails. */
  function startEngine() {
    const sent = {}; // the last command of each type, replayed if we fall back to the page
    let send = null;
    const local = () => {
      let listener = null;
      mdEngine({ post: (m) => setTimeout(onEngine, 0, m), listen: (fn) => { listener = fn; } });
      send = (cmd) => listener(cmd);
      for (const type of ['start', 'symbol']) if (sent[type]) send(sent[type]);
    };
    try {
      const src = `'use strict';\n${Conn}\n(${mdEngine})({ post: (m) => self.postMessage(m), listen: (fn) => { self.onmessage = (e) => fn(e.data); } });\n`;
      const url = URL.createObjectURL(new Blob([src], { type: 'text/javascript' }));
      const worker = new Worker(url);
      worker.onmessage = (e) => onEngine(e.data);
      worker.onerror = (e) => { // could not run there: run in the page
        e.preventDefault();
        console.warn('market-data worker failed, running it in the page:', e.message);
        worker.terminate();
        local();
      };
      send = (cmd) => worker.postMessage(cmd);
    } catch (err) {
      console.warn('no market-data worker, running it in the page:', err);
      local();
    }
    return (cmd) => { sent[cmd.type] = cmd; send(cmd); };
  }

  function onEngine(m) {
    if (m.type === 'state') {
      Object.assign(page, m.stats);
      md.open = m.open; md.dropped = m.dropped;
      const current = m.symbol === state.symbol;
      md.synced = current && m.synced; md.resyncing = current && m.resyncing;
      if (m.book && current) { book.bids = m.book.bids; book.asks = m.book.asks; markBook(); }
      updateStatus();
    } else if (m.type === 'opened') {
      resetTrades(); // a new connection may be a new server: read the tape again
      clearTimeout(md.openTimer);
      if (!state.symbol) md.openTimer = setTimeout(() => { if (!state.symbol) selectSymbol(firstSymbol()); }, 1500);
    } else if (m.type === 'info') {
      addMessage('info', m.text);
    }
  }
  const toEngine = startEngine();

  // ------------------------------------------------------------------- status
  const polls = {
    symbols: { busy: false, sentAt: 0, lastOk: now(), failed: false },
    trades: { busy: false, sentAt: 0, lastOk: now(), failed: false },
    candles: { busy: false, sentAt: 0, lastOk: now(), failed: false },
  };

  function restLate(t) {
    for (const p of Object.values(polls)) {
      if ((p.failed || p.busy) && t - Math.max(p.lastOk, p.failed ? 0 : p.sentAt) > REST_LATE_MS) return true;
    }
    return false;
  }

  function computeStatus() {
    if (md.dropped || (tradeConn.wanted && tradeConn.dropped)) return ['disconnected', 'disconnected · reconnecting…'];
    if (md.resyncing) return ['behind', 'behind · resyncing'];
    if (!md.open || !md.synced) return ['connecting', 'connecting…'];
    if (restLate(now())) return ['behind', 'behind · polls late'];
    return ['live', 'live'];
  }

  function updateStatus() {
    const [st, text] = computeStatus();
    const e = $('#status');
    setAttr(e, 'data-state', st);
    setText(e, text);
    setAttr(document.body, 'data-status', st); // the stylesheet dims stale data
  }

  // --------------------------------------------------------------------- REST
  async function getJson(url) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    try {
      const r = await fetch(url, { cache: 'no-store', signal: ctl.signal });
      const body = await r.json().catch(() => null);
      if (!r.ok) {
        const err = new Error((body && body.error) || `HTTP ${r.status}`);
        err.status = r.status;
        throw err;
      }
      return body;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Runs one poll unless it is already in flight; onData gets the JSON. */
  function runPoll(p, url, onData, onError) {
    if (p.busy) return;
    p.busy = true; p.sentAt = now();
    getJson(url)
      .then(
        (data) => { p.failed = false; p.lastOk = now(); onData(data); },
        (err) => { p.failed = true; if (onError) onError(err); },
      )
      .catch((err) => console.warn('poll handler failed', err))
      .finally(() => { p.busy = false; });
  }

  const firstSymbol = () => (market.symbols.length ? market.symbols[0].symbol : 'BTC-USD');

  function pollSymbols() {
    runPoll(polls.symbols, '/api/symbols', (d) => {
      market.symbols = Array.isArray(d.symbols) ? d.symbols : [];
      dirty.symbols = true;
      if (!state.symbol) selectSymbol(firstSymbol());
    }, (err) => {
      // The server answered but has no symbol list (no market data): pick a default.
      if (!state.symbol && err.status) selectSymbol('BTC-USD');
    });
  }

  function resetTrades() {
    market.gen++;
    market.tape = []; market.lastTradeId = null; market.candles = [];
    dirty.tape = true; dirty.candles = true;
  }

  function pollTrades() {
    const sym = state.symbol, gen = market.gen;
    if (!sym) return;
    const after = market.lastTradeId;
    const url = `/api/trades?symbol=${encodeURIComponent(sym)}&limit=${TAPE_MAX}` + (after != null ? `&after=${after}` : '');
    runPoll(polls.trades, url, (d) => {
      if (sym !== state.symbol || gen !== market.gen) return; // stale
      const trades = Array.isArray(d.trades) ? d.trades : [];
      let last = market.lastTradeId == null ? 0 : market.lastTradeId;
      for (const t of trades) { // oldest first
        if (t.trade_id > last) { market.tape.unshift(t); last = t.trade_id; }
      }
      market.lastTradeId = last;
      if (market.tape.length > TAPE_MAX) market.tape.length = TAPE_MAX;
      if (trades.length) dirty.tape = true;
    });
  }

  function pollCandles() {
    const sym = state.symbol, iv = market.interval, gen = market.gen;
    if (!sym) return;
    const url = `/api/candles?symbol=${encodeURIComponent(sym)}&interval=${iv}&limit=${CANDLES_MAX}`;
    runPoll(polls.candles, url, (d) => {
      if (sym !== state.symbol || iv !== market.interval || gen !== market.gen) return;
      market.candles = (Array.isArray(d.candles) ? d.candles : []).slice(-CANDLES_MAX);
      dirty.candles = true;
    });
  }

  // ----------------------------------------------------------- symbol choice
  function selectSymbol(sym) {
    sym = String(sym || '').trim();
    if (!SYMBOL_RE.test(sym)) { addMessage('info', `not a symbol: "${sym}"`); return; }
    if (sym === state.symbol) return;
    state.symbol = sym; page.symbol = sym;
    const q = new URLSearchParams(location.search);
    q.set('symbol', sym);
    history.replaceState(null, '', `${location.pathname}?${q}`);
    setText($('#symbol-title'), sym);
    setText($('#ticket-symbol'), sym);
    document.title = `${sym} · matching-engine`;
    book.bids = []; book.asks = []; markBook();
    md.synced = false; md.resyncing = false; page.lastMdSeq = null;
    resetTrades();
    dirty.symbols = true; dirty.orders = true;
    toEngine({ type: 'symbol', symbol: sym });
    pollTrades(); pollCandles();
    updateStatus();
  }

  // ------------------------------------------------------------------ trading
  const tradeConn = new Conn(WS_URL, {
    open() {
      setAccount('logging_in');
      tradeConn.send({ op: 'login', user: acct.creds.user, key: acct.creds.key });
    },
    message: onTradeMessage,
    close() {
      acct.ordersInFlight = false;
      if (acct.state === 'logged_in') setAccount('logging_in'); // reconnecting
      updateStatus();
    },
  });

  function setAccount(st, text) {
    acct.state = st;
    const e = $('#account');
    setAttr(e, 'data-state', st);
    setAttr(e, 'data-user', st === 'logged_in' ? acct.user : null);
    const label = { logged_out: 'not logged in', logging_in: 'logging in…', logged_in: `user ${acct.user}`, refused: 'refused' };
    setText(e, text || label[st]);
    $('#ticket').classList.toggle('off', st !== 'logged_in');
  }

  /** A number typed in a field: an integer if it reads as one, else the text (the server judges). */
  function numberField(text) {
    const s = String(text).trim();
    if (s === '') return undefined;
    return /^-?\d+(\.\d+)?$/.test(s) ? Number(s) : s;
  }

  function login() {
    const userText = $('#login-user').value;
    const user = numberField(userText);
    acct.creds = { user: user === undefined ? userText : user, key: $('#login-key').value };
    acct.user = null;
    acct.orders = []; acct.fills = [];
    dirty.orders = true; dirty.fills = true; markBook();
    tradeConn.stop();
    setAccount('logging_in');
    tradeConn.start();
    updateStatus();
  }

  function logout() {
    tradeConn.send({ op: 'logout' });
    tradeConn.stop();
    acct.creds = null; acct.user = null; acct.orders = []; acct.fills = [];
    dirty.orders = true; dirty.fills = true; markBook();
    setAccount('logged_out');
    updateStatus();
  }

  /** Asks for `orders`: at most one in flight and one every 200 ms. */
  function requestOrders() {
    acct.ordersWanted = true;
    if (acct.ordersInFlight || acct.ordersTimer || acct.state !== 'logged_in') return;
    const wait = acct.ordersSentAt + ORDERS_EVERY_MS - now();
    if (wait > 0) {
      acct.ordersTimer = setTimeout(() => { acct.ordersTimer = 0; if (acct.ordersWanted) requestOrders(); }, wait);
      return;
    }
    if (tradeConn.send({ op: 'orders' })) {
      acct.ordersWanted = false; acct.ordersInFlight = true; acct.ordersSentAt = now();
    }
  }

  /** " (cid w1, order 12)": what an event is about. */
  function describe(m) {
    const bits = [m.cid && `cid ${m.cid}`, m.order_id != null && `order ${m.order_id}`].filter(Boolean);
    return bits.length ? ` (${bits.join(', ')})` : '';
  }

  function onTradeMessage(m) {
    switch (m.ev) {
      case 'login':
        if (m.ok) {
          acct.user = m.user;
          setAccount('logged_in');
          acct.ordersInFlight = false; acct.ordersSentAt = 0;
          requestOrders();
        } else {
          acct.creds = null;
          tradeConn.stop(); // the server closes a refused session; do not retry
          setAccount('refused', `refused: ${m.reason}`);
          addMessage('rejected', `login refused: ${m.reason}`, m.reason);
        }
        updateStatus();
        return;
      case 'orders':
        acct.ordersInFlight = false;
        acct.orders = Array.isArray(m.orders) ? m.orders : [];
        dirty.orders = true; dirty.ladder = true;
        if (acct.ordersWanted) requestOrders();
        return;
      case 'trade':
        acct.fills.unshift({ ...m, time_ms: Date.now() });
        if (acct.fills.length > FILLS_MAX) acct.fills.length = FILLS_MAX;
        dirty.fills = true;
        break;
      case 'accepted':
        addMessage('info', `accepted ${m.side} ${m.qty} ${m.symbol}${m.price != null ? ' @ ' + m.price : ''}${describe(m)}`);
        break;
      case 'rejected':
        addMessage('rejected', `rejected: ${m.reason}${describe(m)}`, m.reason);
        break;
      case 'cancelled':
        addMessage('info', `cancelled (${m.reason}), ${m.remaining} left${describe(m)}`);
        break;
      case 'modified':
        addMessage('info', `modified to ${m.qty} @ ${m.price}${describe(m)}`);
        break;
      case 'mass_cancelled':
        addMessage('info', `mass cancel: ${m.count} cancelled`);
        break;
      case 'status':
        addMessage('info', `${m.symbol} is ${m.status}`);
        return;
      case 'goodbye':
        addMessage('info', `trading: goodbye (${m.reason})`);
        return;
      default:
        return;
    }
    requestOrders(); // the server's answer is the truth for open orders
  }

  function submitTicket() {
    if (acct.state !== 'logged_in') { addMessage('info', 'log in to trade'); return; }
    if (!state.symbol) return;
    const type = $('#t-type').value;
    const order = {
      op: 'new', symbol: state.symbol, side: $('#t-side').value, type,
      qty: numberField($('#t-qty').value), tif: $('#t-tif').value,
      post_only: $('#t-post-only').checked, stp: $('#t-stp').value,
      cid: `${acct.cidPrefix}${++acct.cidCount}`,
    };
    if (type === 'limit') order.price = numberField($('#t-price').value); // market: no price
    if (!tradeConn.send(order)) addMessage('info', 'not connected: order not sent');
  }

  function modifyOrder(row) {
    const id = Number(row.dataset.orderId);
    const price = row.querySelector('input.m-price').value.trim();
    const qty = row.querySelector('input.m-qty').value.trim();
    const cmd = { op: 'modify', order_id: id };
    if (price !== '' && price !== row.dataset.price) cmd.price = numberField(price);
    if (qty !== '' && qty !== row.dataset.qty) cmd.qty = numberField(qty);
    if (!('price' in cmd) && !('qty' in cmd)) { addMessage('info', `order ${id}: nothing to modify`); return; }
    if (!tradeConn.send(cmd)) addMessage('info', 'not connected: modify not sent');
  }

  function cancelOrder(row) {
    if (!tradeConn.send({ op: 'cancel', order_id: Number(row.dataset.orderId) })) {
      addMessage('info', 'not connected: cancel not sent');
    }
  }

  // ----------------------------------------------------------------- messages
  function addMessage(kind, text, reason) {
    const list = $('#messages');
    const li = el('li', { class: kind, 'data-reason': reason }, `${clock(Date.now())} ${text}`);
    list.insertBefore(li, list.firstChild);
    while (list.children.length > MESSAGES_MAX) list.removeChild(list.lastChild);
  }

  // ---------------------------------------------------------------- rendering
  const ladderRows = new RowCache();
  let spreadRow = null;

  function ownLevels() {
    const own = new Map();
    for (const o of acct.orders) {
      if (o.symbol !== state.symbol) continue;
      const key = `${o.side}:${o.price}`;
      own.set(key, (own.get(key) || 0) + o.qty);
    }
    return own;
  }

  function renderLadder() {
    const asks = book.asks.slice(0, LADDER_LEVELS), bids = book.bids.slice(0, LADDER_LEVELS);
    let max = 1;
    for (const [, q] of asks) max = Math.max(max, q);
    for (const [, q] of bids) max = Math.max(max, q);
    const own = ownLevels();
    const rows = [];
    const level = (side, price, qty) => {
      const row = ladderRows.get(`${side}:${price}`, () => {
        const tr = el('tr', { class: `level ${side}`, 'data-side': side, 'data-price': price });
        const bar = el('span', { class: 'bar' });
        const q = el('td', { class: 'qty' });
        q.append(bar, el('span', { class: 'num' }));
        tr.append(el('td', { class: 'own' }), el('td', { class: 'price' }, price), q);
        return tr;
      });
      const mine = own.get(`${side}:${price}`);
      setAttr(row, 'data-qty', qty);
      setAttr(row, 'data-own', mine);
      setText(row.cells[0], mine ? `● ${mine}` : '');
      setText(row.cells[2].lastChild, qty);
      row.cells[2].firstChild.style.width = `${Math.max(1, Math.round((100 * qty) / max))}%`;
      rows.push(row);
    };
    for (let i = asks.length - 1; i >= 0; i--) level('sell', asks[i][0], asks[i][1]);
    if (!spreadRow) { spreadRow = el('tr', { class: 'spread' }); spreadRow.append(el('td', { colspan: 3 })); }
    const spread = asks.length && bids.length ? asks[0][0] - bids[0][0] : null;
    setText(spreadRow.cells[0], !asks.length && !bids.length ? 'empty book' : spread == null ? '' : `spread ${spread}`);
    rows.push(spreadRow);
    for (const [p, q] of bids) level('buy', p, q);
    ladderRows.sweep();
    reconcile($('#ladder tbody'), rows);
    setText($('#spread'), bids.length && asks.length ? `${bids[0][0]} / ${asks[0][0]}` : '');
  }

  const symbolRows = new RowCache();
  function renderSymbols() {
    const rows = market.symbols.map((s) => {
      const row = symbolRows.get(s.symbol, () => {
        const tr = el('tr', { 'data-symbol': s.symbol });
        tr.append(el('td', { class: 'sym l' }, s.symbol), el('td', { class: 'last' }), el('td', { class: 'bid' }),
          el('td', { class: 'ask' }), el('td', { class: 'volume' }), el('td', { class: 'trades' }));
        return tr;
      });
      row.classList.toggle('selected', s.symbol === state.symbol);
      row.classList.toggle('halted', s.status === 'halted');
      setAttr(row, 'title', s.status === 'halted' ? `${s.symbol}: halted` : null);
      setText(row.cells[1], s.last ?? '');
      setText(row.cells[2], s.bid ? s.bid[0] : '');
      setText(row.cells[3], s.ask ? s.ask[0] : '');
      setAttr(row.cells[2], 'title', s.bid ? `${s.bid[1]} @ ${s.bid[0]}` : null);
      setAttr(row.cells[3], 'title', s.ask ? `${s.ask[1]} @ ${s.ask[0]}` : null);
      setText(row.cells[4], s.volume ?? '');
      setText(row.cells[5], s.trades ?? '');
      return row;
    });
    symbolRows.sweep();
    reconcile($('#symbols tbody'), rows);
  }

  const tapeRows = new RowCache();
  function renderTape() {
    const rows = market.tape.map((t) => tapeRows.get(t.trade_id, () => {
      const side = t.taker_side;
      const tr = el('tr', { class: side, 'data-trade-id': t.trade_id, 'data-price': t.price, 'data-qty': t.qty, 'data-side': side });
      tr.append(el('td', { class: 'l muted' }, clock(t.time_ms)), el('td', { class: 'price' }, t.price),
        el('td', null, t.qty), el('td', { class: 'l side' }, side));
      return tr;
    }));
    tapeRows.sweep();
    reconcile($('#tape tbody'), rows);
  }

  const fillRows = new RowCache();
  function renderFills() {
    const rows = acct.fills.map((f) => fillRows.get(`${f.symbol}:${f.trade_id}:${f.order_id}`, () => {
      const tr = el('tr', {
        class: f.side, 'data-trade-id': f.trade_id, 'data-order-id': f.order_id, 'data-price': f.price,
        'data-qty': f.qty, 'data-side': f.side, 'data-liquidity': f.liquidity, title: `order ${f.order_id}, ${f.remaining} left`,
      });
      tr.append(el('td', { class: 'l muted' }, clock(f.time_ms)), el('td', { class: 'l' }, f.symbol),
        el('td', { class: 'l side' }, f.side), el('td', { class: 'price' }, f.price), el('td', null, f.qty),
        el('td', null, f.liquidity === 'maker' ? 'M' : 'T'));
      return tr;
    }));
    fillRows.sweep();
    reconcile($('#fills tbody'), rows);
  }

  const orderRows = new RowCache();
  /** Refreshes an input unless the user has typed something else into it. */
  function refreshInput(input, value) {
    const v = String(value);
    if (input.dataset.orig === undefined || input.value === input.dataset.orig) input.value = v;
    input.dataset.orig = v;
  }
  function renderOrders() {
    const rows = acct.orders.map((o) => {
      const row = orderRows.get(o.order_id, () => {
        const tr = el('tr', { class: o.side, 'data-order-id': o.order_id, 'data-symbol': o.symbol, 'data-side': o.side });
        const actions = el('td', { class: 'actions' });
        actions.append(el('button', { class: 'modify', type: 'button', title: 'modify' }, 'mod'),
          el('button', { class: 'cancel', type: 'button', title: 'cancel' }, '✕'));
        const inPrice = el('input', { class: 'm-price', type: 'text', inputmode: 'numeric', 'aria-label': 'price' });
        const inQty = el('input', { class: 'm-qty', type: 'text', inputmode: 'numeric', 'aria-label': 'qty' });
        const tdPrice = el('td'), tdQty = el('td');
        tdPrice.append(inPrice); tdQty.append(inQty);
        tr.append(el('td', { class: 'muted' }, o.order_id), el('td', { class: 'l' }, o.symbol),
          el('td', { class: 'l side' }, o.side), tdPrice, tdQty, actions);
        return tr;
      });
      setAttr(row, 'data-cid', o.cid == null ? '' : o.cid);
      setAttr(row, 'data-price', o.price);
      setAttr(row, 'data-qty', o.qty);
      setAttr(row, 'title', o.cid ? `cid ${o.cid}` : null);
      refreshInput(row.querySelector('input.m-price'), o.price);
      refreshInput(row.querySelector('input.m-qty'), o.qty);
      return row;
    });
    orderRows.sweep();
    reconcile($('#orders tbody'), rows);
    setText($('#orders-count'), acct.state === 'logged_in' ? `${acct.orders.length}` : '');
  }

  // ------------------------------------------------------------------ canvases
  const CSS = getComputedStyle(document.documentElement);
  const color = (name, fallback) => (CSS.getPropertyValue(name).trim() || fallback);
  const C = {
    bid: color('--bid', '#26a269'), ask: color('--ask', '#e5534b'), grid: color('--grid', '#242b36'),
    text: color('--muted', '#8b95a5'), fg: color('--fg', '#d7dde8'),
  };
  const FONT = '11px ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace';

  // Canvas box sizes, kept by a ResizeObserver: reading clientWidth while
  // drawing would force a layout right after the tables changed.
  const boxes = new Map();
  const resizer = new ResizeObserver((entries) => {
    for (const e of entries) {
      boxes.set(e.target, { w: e.contentRect.width, h: e.contentRect.height });
      if (e.target.id === 'depth') dirty.depth = true; else dirty.candles = true;
    }
  });

  /** Sizes a canvas to its box (device pixels) and returns a context in CSS pixels. */
  function prepCanvas(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const box = boxes.get(canvas) || { w: canvas.clientWidth, h: canvas.clientHeight };
    const w = box.w, h = box.h;
    const W = Math.max(1, Math.round(w * dpr)), H = Math.max(1, Math.round(h * dpr));
    if (canvas.width !== W || canvas.height !== H) { canvas.width = W; canvas.height = H; }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = FONT;
    return { ctx, w, h };
  }

  /** About n round integers (prices are ticks, sizes lots) covering [lo, hi]. */
  function ticks(lo, hi, n) {
    const raw = Math.max(1, (hi - lo) / n), mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((k) => k * mag).find((s) => s >= raw) || raw;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) out.push(v);
    return out;
  }
  function shortQty(q) {
    if (q >= 1e9) return `${(q / 1e9).toFixed(1)}G`;
    if (q >= 1e6) return `${(q / 1e6).toFixed(1)}M`;
    if (q >= 1e4) return `${(q / 1e3).toFixed(0)}k`;
    return String(Math.round(q));
  }

  function drawDepth() {
    const { ctx, w, h } = prepCanvas($('#depth'));
    const padL = 8, padR = 8, padT = 18, padB = 18;
    const bids = book.bids.map(([p]) => p), asks = book.asks.map(([p]) => p);
    if (!bids.length && !asks.length) {
      ctx.fillStyle = C.text; ctx.fillText('empty book', w / 2 - 30, h / 2);
      return;
    }
    const cum = (levels) => { let s = 0; return levels.map(([p, q]) => [p, (s += q)]); };
    const cb = cum(book.bids), ca = cum(book.asks);
    const mid = bids.length && asks.length ? (bids[0] + asks[0]) / 2 : bids.length ? bids[0] : asks[0];
    const half = Math.max(bids.length ? mid - bids[bids.length - 1] : 0, asks.length ? asks[asks.length - 1] - mid : 0, 1);
    const x0 = mid - half * 1.12, x1 = mid + half * 1.12; // a margin: the outer steps stay visible
    const ymax = Math.max(cb.length ? cb[cb.length - 1][1] : 0, ca.length ? ca[ca.length - 1][1] : 0, 1) * 1.08;
    const X = (p) => padL + ((p - x0) / (x1 - x0)) * (w - padL - padR);
    const Y = (q) => h - padB - (q / ymax) * (h - padT - padB);
    ctx.strokeStyle = C.grid; ctx.lineWidth = 1; ctx.fillStyle = C.text;
    for (const q of ticks(0, ymax, 4)) {
      if (q === 0) continue;
      ctx.beginPath(); ctx.moveTo(padL, Y(q) + 0.5); ctx.lineTo(w - padR, Y(q) + 0.5); ctx.stroke();
      ctx.fillText(shortQty(q), padL + 2, Y(q) - 2);
    }
    for (const p of ticks(x0, x1, 6)) {
      const label = String(p), lw = ctx.measureText(label).width;
      ctx.fillText(label, Math.min(Math.max(X(p) - lw / 2, 2), w - lw - 2), h - 4);
    }
    // A step area per side: from the best price outwards, cumulative size.
    const side = (levels, sign, stroke) => {
      if (!levels.length) return;
      ctx.beginPath();
      ctx.moveTo(X(levels[0][0]), Y(0));
      let prev = 0;
      for (const [p, c] of levels) { ctx.lineTo(X(p), Y(prev)); ctx.lineTo(X(p), Y(c)); prev = c; }
      ctx.lineTo(sign < 0 ? padL : w - padR, Y(prev));
      ctx.lineTo(sign < 0 ? padL : w - padR, Y(0));
      ctx.closePath();
      ctx.globalAlpha = 0.22; ctx.fillStyle = stroke; ctx.fill();
      ctx.globalAlpha = 1; ctx.strokeStyle = stroke; ctx.lineWidth = 1.5; ctx.stroke();
    };
    side(cb, -1, C.bid);
    side(ca, 1, C.ask);
    ctx.strokeStyle = C.text; ctx.setLineDash([3, 3]); ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(X(mid) + 0.5, padT); ctx.lineTo(X(mid) + 0.5, h - padB); ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = C.fg;
    const label = bids.length && asks.length ? `mid ${Number.isInteger(mid) ? mid : mid.toFixed(1)}`
      : `${bids.length ? 'best bid' : 'best ask'} ${mid}`;
    ctx.fillText(label, X(mid) - ctx.measureText(label).width / 2, 12);
  }

  function drawCandles() {
    const { ctx, w, h } = prepCanvas($('#candles'));
    const cs = market.candles;
    if (!cs.length) {
      ctx.fillStyle = C.text; ctx.fillText('no trades yet', w / 2 - 40, h / 2);
      return;
    }
    const ivMs = market.interval === '1m' ? 60000 : 1000;
    const padL = 6, padR = 62, padT = 10, padB = 18;
    // Slots: the data's span (at least 30, at most 120), newest on the right.
    const end = cs[cs.length - 1].t;
    const slots = Math.min(CANDLES_MAX, Math.max(30, Math.round((end - cs[0].t) / ivMs) + 1));
    const start = end - (slots - 1) * ivMs;
    const vis = cs.filter((c) => c.t >= start);
    let lo = Infinity, hi = -Infinity, vmax = 1;
    for (const c of vis) { lo = Math.min(lo, c.l); hi = Math.max(hi, c.h); vmax = Math.max(vmax, c.v); }
    if (hi === lo) { hi += 1; lo -= 1; }
    const pad = (hi - lo) * 0.06; hi += pad; lo -= pad;
    const plotH = h - padT - padB, volH = plotH * 0.18, priceH = plotH - volH - 6;
    const slotW = (w - padL - padR) / slots;
    const X = (t) => padL + ((t - start) / ivMs + 0.5) * slotW;
    const Y = (p) => padT + ((hi - p) / (hi - lo)) * priceH;
    ctx.lineWidth = 1; ctx.strokeStyle = C.grid; ctx.fillStyle = C.text;
    const lastY = Y(cs[cs.length - 1].c);
    for (const p of ticks(lo, hi, 5)) {
      ctx.beginPath(); ctx.moveTo(padL, Math.round(Y(p)) + 0.5); ctx.lineTo(w - padR, Math.round(Y(p)) + 0.5); ctx.stroke();
      if (Math.abs(Y(p) - lastY) > 14) ctx.fillText(String(p), w - padR + 4, Y(p) + 4); // not under the last-price tag
    }
    const every = Math.max(1, Math.ceil(70 / slotW)); // a time label per ~70 px
    for (let i = 0; i < slots; i += every) {
      const t = start + i * ivMs;
      const label = market.interval === '1m' ? clock(t).slice(0, 5) : clock(t);
      const lw = ctx.measureText(label).width;
      if (X(t) - lw / 2 >= padL && X(t) + lw / 2 <= w - padR) ctx.fillText(label, X(t) - lw / 2, h - 4);
    }
    const bw = Math.max(1, slotW * 0.7);
    for (const c of vis) {
      const x = X(c.t), up = c.c >= c.o;
      ctx.strokeStyle = ctx.fillStyle = up ? C.bid : C.ask;
      ctx.beginPath(); ctx.moveTo(Math.round(x) + 0.5, Y(c.h)); ctx.lineTo(Math.round(x) + 0.5, Y(c.l)); ctx.stroke();
      const top = Y(Math.max(c.o, c.c)), bot = Y(Math.min(c.o, c.c));
      ctx.fillRect(x - bw / 2, top, bw, Math.max(1, bot - top));
      ctx.globalAlpha = 0.35;
      const vh = (c.v / vmax) * volH;
      ctx.fillRect(x - bw / 2, h - padB - vh, bw, vh);
      ctx.globalAlpha = 1;
    }
    const last = cs[cs.length - 1].c, ly = Math.round(Y(last)) + 0.5;
    ctx.strokeStyle = C.fg; ctx.setLineDash([2, 3]);
    ctx.beginPath(); ctx.moveTo(padL, ly); ctx.lineTo(w - padR, ly); ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = C.fg; ctx.fillRect(w - padR + 1, ly - 8, padR - 2, 16);
    ctx.fillStyle = '#0d1117'; ctx.fillText(String(last), w - padR + 4, ly + 4);
  }

  // ---------------------------------------------------------------- the loop
  let lastDraw = 0;
  function frame(t) {
    requestAnimationFrame(frame);
    page.frames++;
    if (t - lastDraw < REDRAW_MS - 8) return; // (frames come in ~16.7 ms steps)
    let drew = false;
    const run = (flag, fn) => { if (dirty[flag]) { dirty[flag] = false; fn(); drew = true; } };
    run('ladder', renderLadder);
    run('depth', drawDepth);
    run('candles', drawCandles);
    run('symbols', renderSymbols);
    run('tape', renderTape);
    run('orders', renderOrders);
    run('fills', renderFills);
    if (drew) { lastDraw = t; page.renders++; }
  }

  // The feed panel and header stats, once a second.
  let lastStats = { t: now(), frames: 0, md: 0 };
  function renderStats() {
    const t = now(), dt = (t - lastStats.t) / 1000 || 1;
    const fps = (page.frames - lastStats.frames) / dt, rate = (page.mdMessages - lastStats.md) / dt;
    lastStats = { t, frames: page.frames, md: page.mdMessages };
    setText($('#stats'), `${fps.toFixed(0)} fps · ${rate.toFixed(0)} md msg/s`);
    const rows = [
      ['symbol', state.symbol || '–'], ['md_seq', page.lastMdSeq ?? '–'], ['md msg/s', rate.toFixed(0)],
      ['levels', `${book.bids.length} bid / ${book.asks.length} ask`], ['resyncs', page.resyncs],
      ['checksum errors', page.checksumErrors], ['conflated', page.conflations], ['frames/s', fps.toFixed(0)],
      ['REST', restLate(t) ? 'late' : 'ok'],
    ];
    const dl = $('#feed');
    if (dl.children.length !== rows.length * 2) {
      dl.textContent = '';
      for (const [k] of rows) dl.append(el('dt', null, k), el('dd'));
    }
    rows.forEach(([, v], i) => setText(dl.children[i * 2 + 1], v));
  }

  // ------------------------------------------------------------------- wiring
  function onTypeChange() {
    const isMarket = $('#t-type').value === 'market';
    $('#t-price').classList.toggle('ignored', isMarket); // kept editable; not sent
    if (isMarket && $('#t-tif').value === 'gtc') $('#t-tif').value = 'ioc'; // gtc is not for market orders
  }
  function onSideChange() {
    const side = $('#t-side').value;
    setText($('#t-submit'), side === 'buy' ? 'Buy' : 'Sell');
    $('#t-submit').className = side;
  }

  function init() {
    $('#login-form').addEventListener('submit', (e) => { e.preventDefault(); login(); });
    $('#logout').addEventListener('click', logout);
    $('#symbol-form').addEventListener('submit', (e) => { e.preventDefault(); selectSymbol($('#symbol-input').value); });
    $('#symbols').addEventListener('click', (e) => {
      const row = e.target.closest('tr[data-symbol]');
      if (row) selectSymbol(row.dataset.symbol);
    });
    $('#ladder').addEventListener('click', (e) => {
      const row = e.target.closest('tr.level');
      if (row) { $('#t-price').value = row.dataset.price; $('#t-price').classList.add('flash'); }
    });
    $('#t-price').addEventListener('animationend', (e) => e.target.classList.remove('flash'));
    $('#orders').addEventListener('click', (e) => {
      const button = e.target.closest('button');
      const row = e.target.closest('tr[data-order-id]');
      if (!button || !row) return;
      if (button.classList.contains('modify')) modifyOrder(row);
      else if (button.classList.contains('cancel')) cancelOrder(row);
    });
    $('#orders').addEventListener('keydown', (e) => {
      const row = e.target.closest('tr[data-order-id]');
      if (e.key === 'Enter' && row && e.target.tagName === 'INPUT') modifyOrder(row);
    });
    $('#ticket').addEventListener('submit', (e) => { e.preventDefault(); submitTicket(); });
    $('#t-type').addEventListener('change', onTypeChange);
    $('#t-side').addEventListener('change', onSideChange);
    $('#interval').addEventListener('change', (e) => {
      market.interval = e.target.value === '1m' ? '1m' : '1s';
      market.candles = []; dirty.candles = true;
      pollCandles();
    });
    resizer.observe($('#depth'));
    resizer.observe($('#candles'));
    onSideChange(); onTypeChange();
    setAccount('logged_out');

    toEngine({ type: 'start', url: WS_URL });
    const wanted = new URLSearchParams(location.search).get('symbol');
    if (wanted && SYMBOL_RE.test(wanted)) selectSymbol(wanted);
    pollSymbols();
    setInterval(pollSymbols, 1000);
    setInterval(pollTrades, 500);
    setInterval(pollCandles, 1000);
    setInterval(updateStatus, 250);
    setInterval(renderStats, 1000);
    requestAnimationFrame(frame);
  }

  init();
})();
