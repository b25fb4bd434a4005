//! The acceptor's FIX 4.4 session layer as a pure state machine.
//!
//! Frames and time go in ([`Session::on_frame`], [`Session::on_timer`],
//! [`Session::send_app`], [`Session::logout`]); bytes to write accumulate in
//! one output buffer ([`Session::output`]) and what the gateway must do comes
//! out as [`Action`]s. No clock is read and no socket is touched, so a test
//! drives a session frame by frame.
//!
//! ## The gateway's loop
//!
//! 1. Read bytes; cut them with [`crate::frame_len`]`(buf, max_message_len)`:
//!    hand each complete frame to `on_frame`. On a [`crate::FrameError`]
//!    before the Logon, close; after it, drop `buf[..`[`crate::resync`]`(buf)]`
//!    (garbled bytes are ignored, as the spec says) and go on.
//! 2. Act on the actions: [`Action::Send`]: write `output()` then
//!    `clear_output()`; [`Action::App`]: an application message, in
//!    sequence order; [`Action::LoggedOn`] / [`Action::LoggedOut`]: for the
//!    application; [`Action::Disconnect`]: write what `output()` still
//!    holds, then close.
//! 3. Call `on_timer` about once a second.
//! 4. Call [`Store::flush`] (via [`Session::store`]) after each batch read
//!    or written.
//!
//! ## Rules (FIX 4.4, Volume 2, as QuickFIX expects them)
//!
//! - The first message must be a Logon with the configured CompIDs,
//!   EncryptMethod 0 and HeartBtInt > 0; anything else: disconnect without a
//!   reply. ResetSeqNumFlag (141=Y) resets the store (the Logon must then be
//!   MsgSeqNum 1) and is echoed. The answer is a Logon with the same
//!   HeartBtInt. A Logon MsgSeqNum above the expected one is followed by a
//!   ResendRequest; below it (without reset): Logout "MsgSeqNum too low,
//!   expecting X but received Y" and disconnect.
//! - Each later message: wrong CompIDs: Reject (373=9), Logout, disconnect.
//!   MsgSeqNum as expected: processed. Above: queued (at most
//!   [`MAX_QUEUED`]), and one ResendRequest (7=expected, 16=0) per gap,
//!   none while one is outstanding; the queue is processed in order as the
//!   gap fills. Below: ignored if PossDupFlag=Y, else Logout "MsgSeqNum too
//!   low…" and disconnect. Exceptions: a SequenceReset in Reset mode is
//!   applied whatever its MsgSeqNum; a ResendRequest or Logout is served at
//!   once even ahead of a gap.
//! - Garbled frames are ignored (MsgSeqNum not consumed). A readable frame
//!   with a field problem is answered with a Reject and consumes its
//!   MsgSeqNum.
//! - Every message we send with a new MsgSeqNum goes through
//!   [`Store::sent`]; resends (PossDup, same MsgSeqNum) and their gap fills
//!   do not take new numbers and are not recorded.

use std::collections::BTreeMap;
use std::io;
use std::time::{Duration, Instant, SystemTime};

use crate::codec::{Body, Header, Message, ParseError, encode, parse, reject_reason, split_encoded};
use crate::store::Store;
use crate::timestamp::parse_utc_timestamp;

/// At most this many messages wait behind a sequence gap; one more and the
/// session logs out.
pub const MAX_QUEUED: usize = 10_000;

/// After our Logout, how long the peer has to answer with its own.
pub const LOGOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// One session's identity and limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our CompID: the peer's TargetCompID (56), our SenderCompID (49).
    pub our_comp_id: String,
    /// The peer's CompID: its SenderCompID (49), our TargetCompID (56).
    pub their_comp_id: String,
    /// The longest frame accepted from the peer, in bytes (the gateway's
    /// `frame_len` limit; a longer frame reaching the session is ignored as
    /// garbled, or ends it if it is the first). Our own messages are not
    /// limited by it.
    pub max_message_len: usize,
}

/// What the gateway must do after a call into the session.
///
/// Bytes to send are not carried by the action: they accumulate in the
/// session's output buffer ([`Session::output`]), so that sending an
/// application message allocates nothing. [`Action::Send`] says the buffer
/// grew; it is pushed at most once in a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The output buffer holds bytes to write to the socket.
    Send,
    /// An application message (any MsgType but 0, 1, 2, 3, 4, 5, A), in
    /// sequence order, each exactly once (a resent one has PossDupFlag=Y
    /// only if the peer resent it before we saw the original).
    App(Message),
    /// The Logon was accepted and answered.
    LoggedOn {
        /// The agreed HeartBtInt.
        heartbeat: Duration,
        /// Whether both sequence numbers were reset (141=Y).
        reset: bool,
    },
    /// The session ended with a Logout exchange (a [`Action::Disconnect`]
    /// follows).
    LoggedOut,
    /// Write what the output buffer holds, then close the connection. The
    /// session is over: it ignores later frames and timers.
    Disconnect(String),
}

/// The header of a message we send under `config`.
fn header(config: &SessionConfig, seq: u64, now: SystemTime, poss_dup: Option<SystemTime>) -> Header<'_> {
    Header { sender: &config.our_comp_id, target: &config.their_comp_id, seq, sending_time: now, poss_dup }
}

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Connected; the first frame must be a Logon.
    AwaitingLogon,
    /// Logged on.
    Active,
    /// We sent a Logout and wait for the peer's (still processing its
    /// messages meanwhile).
    LogoutSent,
    /// Over: a Disconnect was issued.
    Ended,
}

/// The acceptor's side of one FIX session over one connection.
///
/// Invariants: the store's next target seq is the MsgSeqNum expected from
/// the peer, and every key in `queue` is above it once a call returns;
/// `resend_pending_end` is `Some` only while a ResendRequest we sent is
/// unanswered (it is the last seq of the gap it asked for); `out` holds
/// whole frames only.
pub struct Session<S: Store> {
    config: SessionConfig,
    store: S,
    state: State,
    /// HeartBtInt, once logged on.
    heartbeat: Duration,
    /// Frames for the gateway to write.
    out: Vec<u8>,
    /// Scratch for administrative message bodies.
    body: Body,
    /// Scratch for frames recorded but not written (sent while not logged on).
    scratch: Vec<u8>,
    /// The latest `mono` we were given (time for sends that bring none).
    clock: Option<Instant>,
    last_sent: Option<Instant>,
    last_received: Option<Instant>,
    /// When our unanswered TestRequest went out.
    test_request_sent: Option<Instant>,
    test_requests: u64,
    /// When our Logout went out.
    logout_sent_at: Option<Instant>,
    /// While our ResendRequest is outstanding: the last seq of its gap.
    resend_pending_end: Option<u64>,
    /// Messages received ahead of a gap, by MsgSeqNum; `None` marks one
    /// already handled (a Logon, a ResendRequest served, a Rejected frame)
    /// that only consumes its number when reached.
    queue: BTreeMap<u64, Option<Message>>,
}

impl<S: Store> Session<S> {
    /// A session waiting for the peer's Logon, with the sequence numbers the
    /// store holds.
    pub fn new(config: SessionConfig, store: S) -> Session<S> {
        Session {
            config,
            store,
            state: State::AwaitingLogon,
            heartbeat: Duration::ZERO,
            out: Vec::with_capacity(64 << 10),
            body: Body::with_capacity(256),
            scratch: Vec::new(),
            clock: None,
            last_sent: None,
            last_received: None,
            test_request_sent: None,
            test_requests: 0,
            logout_sent_at: None,
            resend_pending_end: None,
            queue: BTreeMap::new(),
        }
    }

    /// One frame (as [`crate::frame_len`] cut it) from the peer, received at
    /// `now` (wall clock, for SendingTime) and `mono` (for timers).
    pub fn on_frame(&mut self, frame: &[u8], now: SystemTime, mono: Instant, actions: &mut Vec<Action>) {
        self.clock = Some(mono);
        match self.state {
            State::Ended => return,
            State::AwaitingLogon => return self.on_logon(frame, now, mono, actions),
            State::Active | State::LogoutSent => {}
        }
        // Any bytes from the peer show it is alive.
        self.last_received = Some(mono);
        self.test_request_sent = None;
        if frame.len() > self.config.max_message_len {
            return;
        }
        match parse(frame) {
            Ok(msg) => self.on_message(msg, now, actions),
            // Garbled, or too broken to name its MsgSeqNum: ignored.
            Err(ParseError::Garbled { .. } | ParseError::Invalid { seq: None, .. }) => {}
            Err(ParseError::Invalid { seq: Some(seq), ref_tag, reason_code, text }) => {
                self.on_invalid(seq, ref_tag, reason_code, &text, now, actions)
            }
        }
    }

    /// Timers: a Heartbeat when nothing was sent for HeartBtInt; a
    /// TestRequest when nothing was received for 1.2 × HeartBtInt; a
    /// disconnect when it stays unanswered for another HeartBtInt, or when a
    /// Logout we sent is not answered within [`LOGOUT_TIMEOUT`].
    pub fn on_timer(&mut self, now: SystemTime, mono: Instant, actions: &mut Vec<Action>) {
        self.clock = Some(mono);
        if !matches!(self.state, State::Active | State::LogoutSent) {
            return;
        }
        if self.logout_sent_at.is_some_and(|at| mono.saturating_duration_since(at) >= LOGOUT_TIMEOUT) {
            return self.end("the peer did not answer our Logout".into(), actions);
        }
        let hb = self.heartbeat;
        let silent_for = mono.saturating_duration_since(self.last_received.unwrap_or(mono));
        if let Some(at) = self.test_request_sent {
            if mono.saturating_duration_since(at) >= hb {
                let secs = silent_for.as_secs();
                return self
                    .end(format!("no heartbeat: nothing received for {secs} s, TestRequest unanswered"), actions);
            }
        } else if silent_for >= hb.saturating_add(hb / 5) {
            self.test_requests += 1;
            self.body.clear();
            self.body.field(112, format_args!("TEST{}", self.test_requests));
            self.send_admin("1", now, actions);
            self.test_request_sent = Some(mono);
        }
        if mono.saturating_duration_since(self.last_sent.unwrap_or(mono)) >= hb {
            self.body.clear();
            self.send_admin("0", now, actions);
        }
    }

    /// An application message from the gateway (e.g. an ExecutionReport);
    /// `body` is pre-encoded `tag=value<SOH>` fields (see [`Body`]). Returns
    /// its MsgSeqNum.
    ///
    /// Logged on, it is appended to the output buffer (no allocation once
    /// the buffers are warm) and recorded in the store. Otherwise (before
    /// the Logon, after our Logout, after a disconnect) it is only recorded:
    /// it takes its MsgSeqNum and the peer gets it by ResendRequest when it
    /// sees the gap. An error is the store's; the session then ends.
    pub fn send_app(
        &mut self,
        msg_type: &str,
        body: &[u8],
        now: SystemTime,
        actions: &mut Vec<Action>,
    ) -> io::Result<u64> {
        debug_assert!(!is_admin(msg_type), "{msg_type} is a session message");
        let seq = self.store.next_sender_seq();
        let header = header(&self.config, seq, now, None);
        let written = self.state == State::Active;
        let start = if written { self.out.len() } else { 0 };
        let buf = if written { &mut self.out } else { &mut self.scratch };
        buf.truncate(start);
        encode(buf, msg_type, &header, body);
        if let Err(e) = self.store.sent(seq, true, &buf[start..]) {
            buf.truncate(start);
            if self.state != State::Ended {
                self.end(format!("message store failed: {e}"), actions);
            }
            return Err(e);
        }
        if written {
            self.last_sent = self.clock;
            note_send(actions);
        }
        Ok(seq)
    }

    /// Starts a logout (e.g. server shutdown): sends a Logout with `text`
    /// (if not empty); the peer's Logout then ends the session, or
    /// [`LOGOUT_TIMEOUT`] does. Before the Logon, ends the session at once.
    pub fn logout(&mut self, text: &str, now: SystemTime, actions: &mut Vec<Action>) {
        match self.state {
            State::Active => {
                self.body.clear();
                if !text.is_empty() {
                    self.body.field_str(58, &text.replace('\x01', " "));
                }
                self.send_admin("5", now, actions);
                if self.state == State::Active {
                    self.state = State::LogoutSent;
                    self.logout_sent_at = self.clock;
                }
            }
            State::AwaitingLogon => self.end(format!("logout before logon: {text}"), actions),
            State::LogoutSent | State::Ended => {}
        }
    }

    /// The bytes to write to the socket, in order (whole frames).
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Forgets the output once written (keeps the buffer).
    pub fn clear_output(&mut self) {
        self.out.clear();
    }

    /// Takes the output (the session starts a new buffer).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Whether the session is logged on: from our Logon answer until it
    /// ends (a Logout we sent included).
    pub fn logged_on(&self) -> bool {
        matches!(self.state, State::Active | State::LogoutSent)
    }

    /// Whether the session is over (a Disconnect was issued).
    pub fn ended(&self) -> bool {
        self.state == State::Ended
    }

    /// The agreed HeartBtInt, once logged on.
    pub fn heartbeat(&self) -> Option<Duration> {
        (self.heartbeat > Duration::ZERO).then_some(self.heartbeat)
    }

    /// The session's configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The store (to flush it, or read the sequence numbers).
    pub fn store(&mut self) -> &mut S {
        &mut self.store
    }

    /// The store back, for the next connection's session.
    pub fn into_store(self) -> S {
        self.store
    }

    // -----------------------------------------------------------------------
    // Receiving

    /// The first frame: it must be an acceptable Logon.
    fn on_logon(&mut self, frame: &[u8], now: SystemTime, mono: Instant, actions: &mut Vec<Action>) {
        self.last_received = Some(mono);
        if frame.len() > self.config.max_message_len {
            return self.end("first message is longer than the limit".into(), actions);
        }
        let msg = match parse(frame) {
            Ok(msg) => msg,
            Err(e) => return self.end(format!("first message is not a valid Logon: {e}"), actions),
        };
        if msg.msg_type() != "A" {
            return self.end(format!("first message is not a Logon but 35={}", msg.msg_type()), actions);
        }
        if !self.comp_ids_match(&msg) {
            return self.end("Logon CompIDs are not this session's".into(), actions);
        }
        if msg.get_bytes(98) != Some(b"0") {
            return self.end("Logon EncryptMethod (98) is not 0".into(), actions);
        }
        let Some(heartbeat_secs) = msg.get_u64(108).filter(|&h| h > 0) else {
            return self.end("Logon HeartBtInt (108) is not a positive number".into(), actions);
        };
        let Some(seq) = msg.seq_num() else {
            return self.end("Logon has no MsgSeqNum (34)".into(), actions);
        };
        let reset = msg.get_bytes(141) == Some(b"Y");
        if reset {
            if seq != 1 {
                return self.end(format!("Logon with ResetSeqNumFlag=Y has MsgSeqNum {seq}, not 1"), actions);
            }
            if let Err(e) = self.store.reset() {
                return self.end(format!("message store failed: {e}"), actions);
            }
        }
        let expected = self.store.next_target_seq();
        if seq < expected {
            return self.too_low(seq, expected, now, actions);
        }
        self.state = State::Active;
        self.heartbeat = Duration::from_secs(heartbeat_secs);
        self.body.clear();
        self.body.field_str(98, "0").field_u64(108, heartbeat_secs);
        if reset {
            self.body.field_str(141, "Y");
        }
        self.send_admin("A", now, actions);
        if self.state == State::Ended {
            return;
        }
        actions.push(Action::LoggedOn { heartbeat: self.heartbeat, reset });
        if seq > expected {
            self.too_high(seq, None, now, actions);
        } else {
            self.store.set_next_target_seq(seq + 1);
        }
    }

    /// A parsed message after the Logon.
    fn on_message(&mut self, msg: Message, now: SystemTime, actions: &mut Vec<Action>) {
        let expected = self.store.next_target_seq();
        if !self.comp_ids_match(&msg) {
            if let Some(seq) = msg.seq_num() {
                let tag = if msg.get_bytes(49) == Some(self.config.their_comp_id.as_bytes()) { 56 } else { 49 };
                let text = "CompID problem";
                self.send_reject(
                    seq,
                    Some(tag),
                    Some(msg.msg_type()),
                    reject_reason::COMP_ID_PROBLEM,
                    text,
                    now,
                    actions,
                );
                if seq == expected {
                    self.store.set_next_target_seq(seq + 1);
                }
            }
            return self.logout_and_end("Incorrect SenderCompID or TargetCompID", now, actions);
        }
        let Some(seq) = msg.seq_num() else {
            return self.logout_and_end("MsgSeqNum (34) missing", now, actions);
        };
        match msg.msg_type() {
            // Reset mode: MsgSeqNum is ignored.
            "4" if !is_gap_fill(&msg) => return self.on_sequence_reset(&msg, seq, expected, now, actions),
            "5" if seq >= expected => {
                if seq == expected {
                    self.store.set_next_target_seq(seq + 1);
                }
                return self.on_peer_logout(now, actions);
            }
            // Served at once, even ahead of a gap (the peer may need it to fill ours).
            "2" if seq >= expected => {
                self.serve_resend(&msg, seq, now, actions);
                if seq == expected {
                    self.store.set_next_target_seq(seq + 1);
                    self.drain_queue(now, actions);
                } else {
                    self.too_high(seq, None, now, actions);
                }
                return;
            }
            _ => {}
        }
        if seq < expected {
            if !msg.poss_dup() {
                self.too_low(seq, expected, now, actions);
            }
            return;
        }
        if seq > expected {
            return self.too_high(seq, Some(msg), now, actions);
        }
        self.process(msg, seq, now, actions);
        self.drain_queue(now, actions);
    }

    /// A readable frame with a field-level problem: Rejected, its MsgSeqNum
    /// consumed (when reached, if it is ahead of a gap).
    fn on_invalid(
        &mut self,
        seq: u64,
        ref_tag: Option<u32>,
        reason: u32,
        text: &str,
        now: SystemTime,
        actions: &mut Vec<Action>,
    ) {
        let expected = self.store.next_target_seq();
        if seq < expected {
            // A copy of something already consumed.
            return;
        }
        self.send_reject(seq, ref_tag, None, reason, text, now, actions);
        if seq == expected {
            self.store.set_next_target_seq(seq + 1);
            self.drain_queue(now, actions);
        } else {
            self.too_high(seq, None, now, actions);
        }
    }

    /// Processes the message whose MsgSeqNum is the expected one, and
    /// advances the expected one past it.
    fn process(&mut self, msg: Message, seq: u64, now: SystemTime, actions: &mut Vec<Action>) {
        debug_assert_eq!(seq, self.store.next_target_seq(), "Invariant: processed in sequence");
        let mut next = seq + 1;
        match msg.msg_type() {
            "0" | "3" => {}
            "1" => match msg.get_bytes(112) {
                Some(id) => {
                    self.body.clear();
                    self.body.field_bytes(112, id);
                    self.send_admin("0", now, actions);
                }
                None => {
                    let text = "Required tag missing";
                    self.send_reject(seq, Some(112), Some("1"), reject_reason::REQUIRED_TAG_MISSING, text, now, actions)
                }
            },
            "2" => self.serve_resend(&msg, seq, now, actions),
            "4" => match msg.get_u64(36) {
                Some(new_seq) if new_seq > seq => next = new_seq,
                Some(_) => {
                    let text = "Value is incorrect (out of range) for this tag: NewSeqNo must exceed MsgSeqNum";
                    self.send_reject(seq, Some(36), Some("4"), reject_reason::VALUE_INCORRECT, text, now, actions)
                }
                None => self.reject_missing_or_malformed(&msg, seq, 36, now, actions),
            },
            "5" => {
                self.store.set_next_target_seq(next);
                return self.on_peer_logout(now, actions);
            }
            "A" => {
                let text = "Logon already received";
                self.send_reject(seq, None, Some("A"), reject_reason::OTHER, text, now, actions)
            }
            _ => {
                self.store.set_next_target_seq(next);
                actions.push(Action::App(msg));
                return;
            }
        }
        self.store.set_next_target_seq(next);
    }

    /// Processes the queued messages that are now in sequence; then, if a
    /// gap remains and no ResendRequest is outstanding, asks for it.
    fn drain_queue(&mut self, now: SystemTime, actions: &mut Vec<Action>) {
        while self.state != State::Ended {
            let expected = self.store.next_target_seq();
            // Messages a gap fill or a reset jumped over are dropped.
            while self.queue.first_key_value().is_some_and(|(&seq, _)| seq < expected) {
                self.queue.pop_first();
            }
            if self.queue.first_key_value().is_none_or(|(&seq, _)| seq != expected) {
                break;
            }
            match self.queue.pop_first() {
                Some((seq, Some(msg))) => self.process(msg, seq, now, actions),
                Some((seq, None)) => self.store.set_next_target_seq(seq + 1),
                None => break,
            }
        }
        let expected = self.store.next_target_seq();
        if self.resend_pending_end.is_some_and(|end| expected > end) {
            self.resend_pending_end = None;
        }
        if self.state == State::Ended || self.resend_pending_end.is_some() {
            return;
        }
        if let Some(&first) = self.queue.keys().next() {
            self.send_resend_request(expected, now, actions);
            self.resend_pending_end = Some(first - 1);
        }
    }

    /// A message ahead of the expected MsgSeqNum: queued (`None`: only its
    /// number), and the gap asked for unless a request is outstanding.
    fn too_high(&mut self, seq: u64, msg: Option<Message>, now: SystemTime, actions: &mut Vec<Action>) {
        if self.queue.len() >= MAX_QUEUED && !self.queue.contains_key(&seq) {
            let text = format!("more than {MAX_QUEUED} messages queued behind a sequence gap");
            return self.logout_and_end(&text, now, actions);
        }
        self.queue.entry(seq).or_insert(msg);
        if self.resend_pending_end.is_none() {
            let expected = self.store.next_target_seq();
            self.send_resend_request(expected, now, actions);
            self.resend_pending_end = Some(seq - 1);
        }
    }

    /// A message below the expected MsgSeqNum without PossDupFlag: the
    /// sequence is broken beyond repair.
    fn too_low(&mut self, seq: u64, expected: u64, now: SystemTime, actions: &mut Vec<Action>) {
        self.logout_and_end(&format!("MsgSeqNum too low, expecting {expected} but received {seq}"), now, actions);
    }

    /// SequenceReset in Reset mode (123 absent or N): NewSeqNo becomes the
    /// expected MsgSeqNum, whatever this message's own; going back is
    /// Rejected.
    fn on_sequence_reset(
        &mut self,
        msg: &Message,
        seq: u64,
        expected: u64,
        now: SystemTime,
        actions: &mut Vec<Action>,
    ) {
        match msg.get_u64(36) {
            None => self.reject_missing_or_malformed(msg, seq, 36, now, actions),
            Some(new_seq) if new_seq < expected => {
                let text = "Value is incorrect (out of range) for this tag: NewSeqNo is below the expected MsgSeqNum";
                self.send_reject(seq, Some(36), Some("4"), reject_reason::VALUE_INCORRECT, text, now, actions)
            }
            Some(new_seq) if new_seq == expected => {}
            Some(new_seq) => {
                self.store.set_next_target_seq(new_seq);
                self.drain_queue(now, actions);
            }
        }
    }

    /// The peer's Logout: answered (unless it answers ours), then the end.
    fn on_peer_logout(&mut self, now: SystemTime, actions: &mut Vec<Action>) {
        if self.state == State::Active {
            self.body.clear();
            self.send_admin("5", now, actions);
        }
        if self.state != State::Ended {
            actions.push(Action::LoggedOut);
            self.end("logged out".into(), actions);
        }
    }

    /// Answers the peer's ResendRequest: each kept application message in
    /// the range again (PossDupFlag=Y, OrigSendingTime = its SendingTime,
    /// same MsgSeqNum and body), each run of other numbers as one
    /// SequenceReset-GapFill. Nothing takes a new MsgSeqNum.
    fn serve_resend(&mut self, msg: &Message, seq: u64, now: SystemTime, actions: &mut Vec<Action>) {
        let (Some(begin), Some(end)) = (msg.get_u64(7), msg.get_u64(16)) else {
            let tag = if msg.get_u64(7).is_none() { 7 } else { 16 };
            return self.reject_missing_or_malformed(msg, seq, tag, now, actions);
        };
        if begin == 0 {
            let text = "Value is incorrect (out of range) for this tag: BeginSeqNo is 0";
            return self.send_reject(seq, Some(7), Some("2"), reject_reason::VALUE_INCORRECT, text, now, actions);
        }
        let last_sent = self.store.next_sender_seq() - 1;
        let end = if end == 0 || end > last_sent { last_sent } else { end };
        if begin > end {
            // Nothing we sent is in the range.
            return;
        }
        let kept = self.store.resend_range(begin, end);
        let mut gap_from = begin;
        for (kept_seq, frame) in &kept {
            let Some((msg_type, sending_time, body)) = split_encoded(frame) else { continue };
            let orig = parse_utc_timestamp(sending_time).unwrap_or(now);
            if gap_from < *kept_seq {
                self.write_gap_fill(gap_from, *kept_seq, now);
            }
            let header = header(&self.config, *kept_seq, now, Some(orig));
            encode(&mut self.out, msg_type, &header, body);
            gap_from = kept_seq + 1;
        }
        if gap_from <= end {
            self.write_gap_fill(gap_from, end + 1, now);
        }
        self.last_sent = self.clock;
        note_send(actions);
    }

    // -----------------------------------------------------------------------
    // Sending

    /// Sends an administrative message with the body in `self.body`, under
    /// the next MsgSeqNum (recorded in the store; if the store fails, the
    /// message is not sent and the session ends).
    fn send_admin(&mut self, msg_type: &str, now: SystemTime, actions: &mut Vec<Action>) {
        if self.state == State::Ended {
            return;
        }
        let seq = self.store.next_sender_seq();
        let header = header(&self.config, seq, now, None);
        let start = self.out.len();
        encode(&mut self.out, msg_type, &header, self.body.as_bytes());
        if let Err(e) = self.store.sent(seq, false, &self.out[start..]) {
            self.out.truncate(start);
            return self.end(format!("message store failed: {e}"), actions);
        }
        self.last_sent = self.clock;
        note_send(actions);
    }

    /// A SequenceReset-GapFill from `from` to `to` (NewSeqNo) in a resend:
    /// MsgSeqNum `from`, PossDupFlag=Y, not recorded.
    fn write_gap_fill(&mut self, from: u64, to: u64, now: SystemTime) {
        debug_assert!(from < to, "Invariant: a gap fill covers at least one MsgSeqNum");
        self.body.clear();
        self.body.field_str(123, "Y").field_u64(36, to);
        let header = header(&self.config, from, now, Some(now));
        encode(&mut self.out, "4", &header, self.body.as_bytes());
    }

    /// ResendRequest for everything from `begin` on (16=0).
    fn send_resend_request(&mut self, begin: u64, now: SystemTime, actions: &mut Vec<Action>) {
        self.body.clear();
        self.body.field_u64(7, begin).field_u64(16, 0);
        self.send_admin("2", now, actions);
    }

    /// Reject (35=3): RefSeqNum (45), RefTagID (371), RefMsgType (372),
    /// SessionRejectReason (373), Text (58).
    #[allow(clippy::too_many_arguments)]
    fn send_reject(
        &mut self,
        ref_seq: u64,
        ref_tag: Option<u32>,
        ref_msg_type: Option<&str>,
        reason: u32,
        text: &str,
        now: SystemTime,
        actions: &mut Vec<Action>,
    ) {
        self.body.clear();
        self.body.field_u64(45, ref_seq);
        if let Some(tag) = ref_tag {
            self.body.field_u64(371, u64::from(tag));
        }
        if let Some(msg_type) = ref_msg_type {
            self.body.field_str(372, msg_type);
        }
        self.body.field_u64(373, u64::from(reason)).field_str(58, text);
        self.send_admin("3", now, actions);
    }

    /// Rejects `msg` for `tag`: missing (373=1) or not a number (373=6).
    fn reject_missing_or_malformed(
        &mut self,
        msg: &Message,
        seq: u64,
        tag: u32,
        now: SystemTime,
        actions: &mut Vec<Action>,
    ) {
        let (reason, text) = if msg.get_bytes(tag).is_none() {
            (reject_reason::REQUIRED_TAG_MISSING, "Required tag missing")
        } else {
            (reject_reason::INCORRECT_DATA_FORMAT, "Incorrect data format for value")
        };
        self.send_reject(seq, Some(tag), Some(msg.msg_type()), reason, text, now, actions);
    }

    /// Logout with `text`, then disconnect (without waiting for an answer).
    fn logout_and_end(&mut self, text: &str, now: SystemTime, actions: &mut Vec<Action>) {
        self.body.clear();
        self.body.field_str(58, text);
        self.send_admin("5", now, actions);
        if self.state != State::Ended {
            self.end(text.to_owned(), actions);
        }
    }

    /// The end: nothing more is received or sent on this connection.
    fn end(&mut self, reason: String, actions: &mut Vec<Action>) {
        self.state = State::Ended;
        self.queue.clear();
        self.resend_pending_end = None;
        actions.push(Action::Disconnect(reason));
    }

    fn comp_ids_match(&self, msg: &Message) -> bool {
        msg.get_bytes(49) == Some(self.config.their_comp_id.as_bytes())
            && msg.get_bytes(56) == Some(self.config.our_comp_id.as_bytes())
    }
}

impl<S: Store + std::fmt::Debug> std::fmt::Debug for Session<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("config", &self.config)
            .field("state", &self.state)
            .field("store", &self.store)
            .field("queued", &self.queue.len())
            .field("resend_pending_end", &self.resend_pending_end)
            .field("output_bytes", &self.out.len())
            .finish()
    }
}

/// Pushes [`Action::Send`] unless it is already the last action.
fn note_send(actions: &mut Vec<Action>) {
    if actions.last() != Some(&Action::Send) {
        actions.push(Action::Send);
    }
}

/// Whether `msg_type` is a session-level (administrative) message.
fn is_admin(msg_type: &str) -> bool {
    matches!(msg_type, "0" | "1" | "2" | "3" | "4" | "5" | "A")
}

/// Whether a SequenceReset is in GapFill mode (123=Y).
fn is_gap_fill(msg: &Message) -> bool {
    msg.get_bytes(123) == Some(b"Y")
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod model;
