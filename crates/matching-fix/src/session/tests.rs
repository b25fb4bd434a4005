use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::*;
use crate::codec::{SOH, frame_len};
use crate::store::{FileStore, MemoryStore};

const HB: u64 = 30;

/// `|` → SOH.
fn soh(s: &str) -> Vec<u8> {
    s.bytes().map(|b| if b == b'|' { SOH } else { b }).collect()
}

/// A message as the tests compare it: every field but 8, 9, 49, 56, 52,
/// 122 and 10, as `tag=value` joined by `|`.
fn show(m: &Message) -> String {
    m.fields()
        .filter(|(t, _)| !matches!(t, 8 | 9 | 49 | 56 | 52 | 122 | 10))
        .map(|(t, v)| format!("{t}={}", String::from_utf8_lossy(v)))
        .collect::<Vec<_>>()
        .join("|")
}

/// Splits an output buffer into parsed messages.
fn messages(mut bytes: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let n = frame_len(bytes, 1 << 20).unwrap().expect("output holds whole frames");
        out.push(parse(&bytes[..n]).unwrap());
        bytes = &bytes[n..];
    }
    out
}

/// A session under test, with a simulated clock and the peer's side.
struct Harness<S: Store = MemoryStore> {
    session: Session<S>,
    mono0: Instant,
    wall0: SystemTime,
    elapsed: Duration,
}

impl Harness<MemoryStore> {
    fn new() -> Harness<MemoryStore> {
        Harness::with_store(MemoryStore::new(100))
    }

    /// Logged on (the peer's Logon was MsgSeqNum 1), output drained.
    fn logged_on() -> Harness<MemoryStore> {
        let mut h = Harness::new();
        h.logon();
        h
    }
}

impl<S: Store> Harness<S> {
    fn with_store(store: S) -> Harness<S> {
        let config = SessionConfig { our_comp_id: "ME".into(), their_comp_id: "CLIENT".into(), max_message_len: 8192 };
        Harness {
            session: Session::new(config, store),
            mono0: Instant::now(),
            wall0: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            elapsed: Duration::ZERO,
        }
    }

    fn mono(&self) -> Instant {
        self.mono0 + self.elapsed
    }

    fn wall(&self) -> SystemTime {
        self.wall0 + self.elapsed
    }

    fn advance(&mut self, d: Duration) {
        self.elapsed += d;
    }

    /// A frame from the peer (`body` with `|` for SOH).
    fn frame(&self, msg_type: &str, seq: u64, body: &str) -> Vec<u8> {
        self.frame_from("CLIENT", "ME", msg_type, seq, None, body)
    }

    /// A PossDup frame from the peer.
    fn resent(&self, msg_type: &str, seq: u64, body: &str) -> Vec<u8> {
        self.frame_from("CLIENT", "ME", msg_type, seq, Some(self.wall0), body)
    }

    fn frame_from(
        &self,
        sender: &str,
        target: &str,
        msg_type: &str,
        seq: u64,
        poss_dup: Option<SystemTime>,
        body: &str,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let header = Header { sender, target, seq, sending_time: self.wall(), poss_dup };
        encode(&mut out, msg_type, &header, &soh(body));
        out
    }

    fn deliver(&mut self, frame: &[u8]) -> Vec<Action> {
        let mut actions = Vec::new();
        let (wall, mono) = (self.wall(), self.mono());
        self.session.on_frame(frame, wall, mono, &mut actions);
        actions
    }

    fn send(&mut self, msg_type: &str, seq: u64, body: &str) -> Vec<Action> {
        let f = self.frame(msg_type, seq, body);
        self.deliver(&f)
    }

    fn tick(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        let (wall, mono) = (self.wall(), self.mono());
        self.session.on_timer(wall, mono, &mut actions);
        actions
    }

    fn send_app(&mut self, body: &str) -> u64 {
        let mut actions = Vec::new();
        let wall = self.wall();
        let seq = self.session.send_app("8", &soh(body), wall, &mut actions).unwrap();
        assert!(actions.is_empty() || actions == [Action::Send], "{actions:?}");
        seq
    }

    /// The output since the last call, shown.
    fn out(&mut self) -> Vec<String> {
        let shown = messages(self.session.output()).iter().map(show).collect();
        self.session.clear_output();
        shown
    }

    fn expected(&mut self) -> u64 {
        self.session.store().next_target_seq()
    }

    fn logon(&mut self) {
        let actions = self.send("A", 1, "98=0|108=30|");
        assert_eq!(actions, [Action::Send, Action::LoggedOn { heartbeat: Duration::from_secs(HB), reset: false }]);
        self.out();
    }
}

/// The ClOrdIDs (11) of the App actions.
fn apps(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::App(m) => Some(m.get(11).unwrap_or("?").to_owned()),
            _ => None,
        })
        .collect()
}

fn disconnected(actions: &[Action]) -> bool {
    matches!(actions.last(), Some(Action::Disconnect(_)))
}

// ---------------------------------------------------------------------------
// Logon

#[test]
fn logon_is_answered_with_the_same_heartbeat() {
    let mut h = Harness::new();
    assert!(!h.session.logged_on());
    let actions = h.send("A", 1, "98=0|108=30|");
    assert_eq!(actions, [Action::Send, Action::LoggedOn { heartbeat: Duration::from_secs(30), reset: false }]);
    assert_eq!(h.out(), ["35=A|34=1|98=0|108=30"]);
    assert!(h.session.logged_on());
    assert_eq!(h.session.heartbeat(), Some(Duration::from_secs(30)));
    assert_eq!(h.expected(), 2);
    assert_eq!(h.session.store().next_sender_seq(), 2);
}

#[test]
fn logon_with_reset_seq_num_flag_resets_both_numbers() {
    let mut store = MemoryStore::new(10);
    for seq in 1..=4 {
        store.sent(seq, true, b"old").unwrap();
    }
    store.set_next_target_seq(7);
    let mut h = Harness::with_store(store);
    let actions = h.send("A", 1, "98=0|108=30|141=Y|");
    assert_eq!(actions, [Action::Send, Action::LoggedOn { heartbeat: Duration::from_secs(30), reset: true }]);
    assert_eq!(h.out(), ["35=A|34=1|98=0|108=30|141=Y"]);
    assert_eq!(h.expected(), 2);
    assert!(h.session.store().resend_range(1, 10).is_empty());

    // ResetSeqNumFlag with MsgSeqNum other than 1: refused, no answer.
    let mut h = Harness::new();
    assert!(disconnected(&h.send("A", 2, "98=0|108=30|141=Y|")));
    assert!(h.out().is_empty());
}

#[test]
fn logon_ahead_of_the_expected_seq_is_answered_then_the_gap_requested() {
    let mut h = Harness::new();
    let actions = h.send("A", 5, "98=0|108=30|");
    assert_eq!(
        actions,
        [Action::Send, Action::LoggedOn { heartbeat: Duration::from_secs(30), reset: false }, Action::Send]
    );
    assert_eq!(h.out(), ["35=A|34=1|98=0|108=30", "35=2|34=2|7=1|16=0"]);
    assert_eq!(h.expected(), 1);
    // The peer resends 1..4 (its old orders), then its Logon (5) is gap-filled.
    let mut delivered = Vec::new();
    for seq in 1..=3 {
        let f = h.resent("D", seq, &format!("11=o{seq}|"));
        delivered.extend(apps(&h.deliver(&f)));
    }
    let f = h.resent("4", 4, "123=Y|36=6|");
    assert!(h.deliver(&f).is_empty());
    assert_eq!(h.expected(), 6);
    delivered.extend(apps(&h.send("D", 6, "11=o6|")));
    assert_eq!(delivered, ["o1", "o2", "o3", "o6"]);
    assert!(h.out().is_empty(), "no second ResendRequest");
}

#[test]
fn logon_below_the_expected_seq_is_logged_out() {
    let mut store = MemoryStore::new(10);
    store.set_next_target_seq(10);
    let mut h = Harness::with_store(store);
    let actions = h.send("A", 3, "98=0|108=30|");
    assert_eq!(actions[0], Action::Send);
    assert_eq!(actions[1], Action::Disconnect("MsgSeqNum too low, expecting 10 but received 3".into()));
    assert_eq!(h.out(), ["35=5|34=1|58=MsgSeqNum too low, expecting 10 but received 3"]);
    assert!(!h.session.logged_on());
    // Over: later frames are ignored.
    assert!(h.send("0", 10, "").is_empty());
}

#[test]
fn anything_but_an_acceptable_logon_first_is_disconnected_without_a_reply() {
    let cases: [(&str, &str, &str, &str); 6] = [
        ("CLIENT", "ME", "0", ""),
        ("OTHER", "ME", "A", "98=0|108=30|"),
        ("CLIENT", "YOU", "A", "98=0|108=30|"),
        ("CLIENT", "ME", "A", "98=1|108=30|"),
        ("CLIENT", "ME", "A", "98=0|108=0|"),
        ("CLIENT", "ME", "A", "98=0|"),
    ];
    for (sender, target, msg_type, body) in cases {
        let mut h = Harness::new();
        let f = h.frame_from(sender, target, msg_type, 1, None, body);
        let actions = h.deliver(&f);
        assert!(matches!(actions[..], [Action::Disconnect(_)]), "{sender} {target} {msg_type} {body}: {actions:?}");
        assert!(h.out().is_empty());
        assert_eq!(h.session.store().next_sender_seq(), 1);
    }
    let mut h = Harness::new();
    let mut f = h.frame("A", 1, "98=0|108=30|");
    let n = f.len();
    f[n - 2] ^= 1;
    assert!(disconnected(&h.deliver(&f)), "a garbled Logon");
}

// ---------------------------------------------------------------------------
// Sequence numbers in session

#[test]
fn a_gap_is_requested_once_and_queued_messages_follow_a_gap_fill() {
    let mut h = Harness::logged_on();
    assert_eq!(apps(&h.send("D", 2, "11=a|")), ["a"]);
    // 3 is lost; 4 and 5 wait.
    assert!(apps(&h.send("D", 4, "11=c|")).is_empty());
    assert_eq!(h.out(), ["35=2|34=2|7=3|16=0"]);
    assert!(apps(&h.send("D", 5, "11=d|")).is_empty());
    assert!(h.out().is_empty(), "not again while the gap is pending");
    // 3 was administrative: the peer gap-fills it; 4 and 5 follow at once.
    let f = h.resent("4", 3, "123=Y|36=4|");
    let actions = h.deliver(&f);
    assert_eq!(apps(&actions), ["c", "d"]);
    assert_eq!(h.expected(), 6);
    // The peer's resends of 4 and 5 (it resends everything from 3): duplicates, ignored.
    let f = h.resent("D", 4, "11=c|");
    assert!(h.deliver(&f).is_empty());
    assert!(h.out().is_empty());
    assert_eq!(apps(&h.send("D", 6, "11=e|")), ["e"]);
}

#[test]
fn a_gap_filled_by_poss_dup_resends_delivers_each_message_once_in_order() {
    let mut h = Harness::logged_on();
    // 2 is lost.
    assert!(apps(&h.send("D", 3, "11=b|")).is_empty());
    assert!(apps(&h.send("D", 4, "11=c|")).is_empty());
    assert_eq!(h.out(), ["35=2|34=2|7=2|16=0"]);
    let mut delivered = Vec::new();
    for (seq, id) in [(2, "a"), (3, "b"), (4, "c")] {
        let f = h.resent("D", seq, &format!("11={id}|"));
        delivered.extend(apps(&h.deliver(&f)));
    }
    assert_eq!(delivered, ["a", "b", "c"]);
    assert_eq!(h.expected(), 5);
    // A second gap after the first is filled is requested again.
    assert!(apps(&h.send("D", 7, "11=f|")).is_empty());
    assert_eq!(h.out(), ["35=2|34=3|7=5|16=0"]);
}

#[test]
fn a_gap_left_in_the_queue_after_a_fill_is_requested_again() {
    let mut h = Harness::logged_on();
    h.send("D", 4, "11=c|"); // asks 2.. (gap 2-3)
    h.send("D", 6, "11=e|"); // queued, no new request
    assert_eq!(h.out(), ["35=2|34=2|7=2|16=0"]);
    let f = h.resent("4", 2, "123=Y|36=4|");
    assert_eq!(apps(&h.deliver(&f)), ["c"]);
    // 5 is still missing and the first request is satisfied: ask again.
    assert_eq!(h.out(), ["35=2|34=3|7=5|16=0"]);
    let f = h.resent("D", 5, "11=d|");
    assert_eq!(apps(&h.deliver(&f)), ["d", "e"]);
}

#[test]
fn sequence_reset_in_reset_mode_ignores_its_own_seq_and_never_goes_back() {
    let mut h = Harness::logged_on();
    h.send("D", 4, "11=x|"); // a gap 2-3, 4 queued
    h.out();
    // Reset mode: MsgSeqNum ignored, NewSeqNo 10; the queued 4 is jumped over.
    assert!(h.send("4", 99, "36=10|").is_empty());
    assert_eq!(h.expected(), 10);
    assert!(h.out().is_empty());
    // Back: Rejected, nothing changes.
    assert_eq!(h.send("4", 10, "36=5|"), [Action::Send]);
    assert_eq!(
        h.out(),
        [
            "35=3|34=3|45=10|371=36|372=4|373=5|58=Value is incorrect (out of range) for this tag: NewSeqNo is below the expected MsgSeqNum"
        ]
    );
    assert_eq!(h.expected(), 10);
    assert_eq!(apps(&h.send("D", 10, "11=y|")), ["y"]);
}

#[test]
fn gap_fill_that_does_not_move_forward_is_rejected_and_consumed() {
    let mut h = Harness::logged_on();
    h.send("4", 2, "123=Y|36=2|");
    assert_eq!(
        h.out(),
        [
            "35=3|34=2|45=2|371=36|372=4|373=5|58=Value is incorrect (out of range) for this tag: NewSeqNo must exceed MsgSeqNum"
        ]
    );
    assert_eq!(h.expected(), 3);
}

#[test]
fn below_the_expected_seq_poss_dup_is_ignored_else_logged_out() {
    let mut h = Harness::logged_on();
    h.send("D", 2, "11=a|");
    let f = h.resent("D", 2, "11=a|");
    assert!(h.deliver(&f).is_empty());
    let actions = h.send("D", 2, "11=a|");
    assert!(disconnected(&actions));
    assert_eq!(h.out(), ["35=5|34=2|58=MsgSeqNum too low, expecting 3 but received 2"]);
}

#[test]
fn too_many_queued_messages_end_the_session() {
    let mut h = Harness::logged_on();
    for seq in 3..3 + MAX_QUEUED as u64 {
        assert!(!disconnected(&h.send("0", seq, "")), "{seq}");
    }
    let actions = h.send("0", 3 + MAX_QUEUED as u64, "");
    assert!(disconnected(&actions), "{actions:?}");
    let out = h.out();
    assert_eq!(out.len(), 2, "the ResendRequest, then the Logout");
    assert!(out[1].starts_with("35=5|34=3|58=more than 10000 messages queued"), "{}", out[1]);
}

// ---------------------------------------------------------------------------
// Other session messages

#[test]
fn test_request_is_answered_with_its_id() {
    let mut h = Harness::logged_on();
    assert_eq!(h.send("1", 2, "112=ping 7|"), [Action::Send]);
    assert_eq!(h.out(), ["35=0|34=2|112=ping 7"]);
    // Without an id: Rejected.
    h.send("1", 3, "");
    assert_eq!(h.out(), ["35=3|34=3|45=3|371=112|372=1|373=1|58=Required tag missing"]);
    assert_eq!(h.expected(), 4);
}

#[test]
fn heartbeat_and_reject_from_the_peer_need_nothing() {
    let mut h = Harness::logged_on();
    assert!(h.send("0", 2, "").is_empty());
    assert!(h.send("3", 3, "45=1|").is_empty());
    assert!(h.out().is_empty());
    assert_eq!(h.expected(), 4);
}

#[test]
fn a_second_logon_is_rejected() {
    let mut h = Harness::logged_on();
    h.send("A", 2, "98=0|108=30|");
    assert_eq!(h.out(), ["35=3|34=2|45=2|372=A|373=99|58=Logon already received"]);
    assert!(h.session.logged_on());
    assert_eq!(h.expected(), 3);
}

#[test]
fn wrong_comp_id_is_rejected_then_logged_out() {
    let mut h = Harness::logged_on();
    let f = h.frame_from("INTRUDER", "ME", "D", 2, None, "11=x|");
    let actions = h.deliver(&f);
    assert_eq!(actions, [Action::Send, Action::Disconnect("Incorrect SenderCompID or TargetCompID".into())]);
    assert_eq!(
        h.out(),
        ["35=3|34=2|45=2|371=49|372=D|373=9|58=CompID problem", "35=5|34=3|58=Incorrect SenderCompID or TargetCompID"]
    );
}

#[test]
fn a_garbled_frame_is_ignored_and_consumes_nothing() {
    let mut h = Harness::logged_on();
    let mut f = h.frame("D", 2, "11=a|");
    let n = f.len();
    f[n - 3] = if f[n - 3] == b'9' { b'0' } else { f[n - 3] + 1 };
    assert!(h.deliver(&f).is_empty());
    assert!(h.out().is_empty());
    assert_eq!(h.expected(), 2);
    assert_eq!(apps(&h.send("D", 2, "11=a|")), ["a"]);
}

#[test]
fn an_invalid_frame_is_rejected_and_consumes_its_seq() {
    let mut h = Harness::logged_on();
    h.send("D", 2, "11=a|11=b|");
    assert_eq!(h.out(), ["35=3|34=2|45=2|371=11|373=13|58=Tag appears more than once"]);
    assert_eq!(h.expected(), 3);
    h.send("D", 3, "11=|");
    assert_eq!(h.out(), ["35=3|34=3|45=3|371=11|373=4|58=Tag specified without a value"]);
    assert_eq!(h.expected(), 4);
    // Ahead of a gap: Rejected now, its number consumed when reached.
    h.send("D", 6, "11=|");
    assert_eq!(h.out(), ["35=3|34=4|45=6|371=11|373=4|58=Tag specified without a value", "35=2|34=5|7=4|16=0"]);
    let f = h.resent("4", 4, "123=Y|36=6|");
    assert!(h.deliver(&f).is_empty());
    assert_eq!(h.expected(), 7);
}

#[test]
fn peer_logout_is_answered_then_disconnected() {
    let mut h = Harness::logged_on();
    let actions = h.send("5", 2, "58=bye|");
    assert_eq!(actions, [Action::Send, Action::LoggedOut, Action::Disconnect("logged out".into())]);
    assert_eq!(h.out(), ["35=5|34=2"]);
    assert!(!h.session.logged_on());
}

#[test]
fn our_logout_is_ended_by_the_peers_logout_or_a_timeout() {
    let mut h = Harness::logged_on();
    let mut actions = Vec::new();
    let wall = h.wall();
    h.session.logout("server shutting down", wall, &mut actions);
    assert_eq!(actions, [Action::Send]);
    assert_eq!(h.out(), ["35=5|34=2|58=server shutting down"]);
    // Application messages meanwhile are recorded, not sent.
    assert_eq!(h.send_app("37=late|"), 3);
    assert!(h.out().is_empty());
    // The peer may still send before answering.
    assert_eq!(apps(&h.send("D", 2, "11=a|")), ["a"]);
    let actions = h.send("5", 3, "");
    assert_eq!(actions, [Action::LoggedOut, Action::Disconnect("logged out".into())]);
    assert!(h.out().is_empty(), "no second Logout");

    let mut h = Harness::logged_on();
    let mut actions = Vec::new();
    let wall = h.wall();
    h.session.logout("", wall, &mut actions);
    assert_eq!(h.out(), ["35=5|34=2"]);
    h.advance(LOGOUT_TIMEOUT - Duration::from_millis(1));
    assert!(h.tick().is_empty());
    h.advance(Duration::from_millis(1));
    assert_eq!(h.tick(), [Action::Disconnect("the peer did not answer our Logout".into())]);
}

// ---------------------------------------------------------------------------
// Serving the peer's ResendRequest

#[test]
fn resend_request_is_answered_with_poss_dup_resends_and_gap_fills() {
    let mut h = Harness::logged_on(); // our Logon answer is 1
    let mut sent_at = Vec::new();
    for (i, body) in ["37=o2|", "37=o3|"].iter().enumerate() {
        h.advance(Duration::from_secs(1));
        sent_at.push(h.wall());
        assert_eq!(h.send_app(body), 2 + i as u64);
    }
    h.advance(Duration::from_secs(1));
    h.send("1", 2, "112=t|"); // our Heartbeat is 4
    h.advance(Duration::from_secs(1));
    assert_eq!(h.send_app("37=o5|"), 5);
    h.out();
    h.advance(Duration::from_secs(10));
    h.send("2", 3, "7=1|16=0|");
    let out = messages(h.session.output());
    let shown: Vec<String> = out.iter().map(show).collect();
    assert_eq!(
        shown,
        [
            "35=4|34=1|43=Y|123=Y|36=2",
            "35=8|34=2|43=Y|37=o2",
            "35=8|34=3|43=Y|37=o3",
            "35=4|34=4|43=Y|123=Y|36=5",
            "35=8|34=5|43=Y|37=o5",
        ]
    );
    // OrigSendingTime is the original SendingTime; SendingTime is now.
    let ts = |t: SystemTime| {
        let mut v = Vec::new();
        crate::write_utc_timestamp(&mut v, t);
        String::from_utf8(v).unwrap()
    };
    assert_eq!(out[1].get(122), Some(ts(sent_at[0]).as_str()));
    assert_eq!(out[2].get(122), Some(ts(sent_at[1]).as_str()));
    assert_eq!(out[1].get(52), Some(ts(h.wall()).as_str()));
    h.session.clear_output();
    // Resends take no new numbers.
    assert_eq!(h.session.store().next_sender_seq(), 6);
    // A bounded range.
    h.send("2", 4, "7=3|16=4|");
    assert_eq!(h.out(), ["35=8|34=3|43=Y|37=o3", "35=4|34=4|43=Y|123=Y|36=5"]);
    // A range beyond what we sent: clamped; nothing at all: no answer.
    h.send("2", 5, "7=5|16=99|");
    assert_eq!(h.out(), ["35=8|34=5|43=Y|37=o5"]);
    h.send("2", 6, "7=50|16=0|");
    assert!(h.out().is_empty());
    // Malformed.
    h.send("2", 7, "7=0|16=0|");
    assert_eq!(
        h.out(),
        ["35=3|34=6|45=7|371=7|372=2|373=5|58=Value is incorrect (out of range) for this tag: BeginSeqNo is 0"]
    );
    h.send("2", 8, "7=1|");
    assert_eq!(h.out(), ["35=3|34=7|45=8|371=16|372=2|373=1|58=Required tag missing"]);
}

#[test]
fn messages_past_the_store_capacity_are_gap_filled_as_one_run() {
    let mut h = Harness::with_store(MemoryStore::new(2));
    h.logon(); // 1
    for i in 2..=6 {
        assert_eq!(h.send_app(&format!("37=o{i}|")), i);
    }
    h.out();
    h.send("2", 2, "7=1|16=0|");
    assert_eq!(h.out(), ["35=4|34=1|43=Y|123=Y|36=5", "35=8|34=5|43=Y|37=o5", "35=8|34=6|43=Y|37=o6"]);
}

#[test]
fn a_resend_request_ahead_of_a_gap_is_served_at_once() {
    let mut h = Harness::logged_on();
    h.send_app("37=o2|");
    h.out();
    // The peer's ResendRequest is 3; its 2 was lost.
    h.send("2", 3, "7=2|16=0|");
    assert_eq!(h.out(), ["35=8|34=2|43=Y|37=o2", "35=2|34=3|7=2|16=0"]);
    // Its gap fill covers 2 and the ResendRequest's own 3.
    let f = h.resent("4", 2, "123=Y|36=4|");
    assert!(h.deliver(&f).is_empty());
    assert_eq!(h.expected(), 4);
    assert_eq!(apps(&h.send("D", 4, "11=a|")), ["a"]);
}

// ---------------------------------------------------------------------------
// Timers

#[test]
fn timers_send_heartbeats_then_a_test_request_then_disconnect() {
    let mut h = Harness::logged_on(); // at t = 0, HeartBtInt 30
    let mut events = Vec::new();
    for second in 1..=80 {
        h.advance(Duration::from_secs(1));
        let actions = h.tick();
        for m in messages(h.session.output()) {
            events.push(format!("{second}: {}", show(&m)));
        }
        h.session.clear_output();
        if let Some(Action::Disconnect(reason)) = actions.last() {
            events.push(format!("{second}: disconnect: {reason}"));
            break;
        }
    }
    assert_eq!(
        events,
        [
            "30: 35=0|34=2",
            "36: 35=1|34=3|112=TEST1",
            "66: disconnect: no heartbeat: nothing received for 66 s, TestRequest unanswered",
        ]
    );
}

#[test]
fn an_answered_test_request_keeps_the_session() {
    let mut h = Harness::logged_on();
    h.advance(Duration::from_secs(36));
    h.tick();
    assert_eq!(h.out(), ["35=1|34=2|112=TEST1"], "the TestRequest counts as sent: no Heartbeat too");
    h.advance(Duration::from_secs(1));
    h.send("0", 2, "112=TEST1|");
    for _ in 0..40 {
        h.advance(Duration::from_secs(1));
        assert!(!disconnected(&h.tick()));
    }
    // Our traffic counts as sending: no heartbeat while we send.
    let mut h = Harness::logged_on();
    for _ in 0..20 {
        h.advance(Duration::from_secs(2));
        h.send_app("37=x|");
        let seq = h.expected();
        h.send("0", seq, "");
        h.tick();
    }
    assert!(h.out().iter().all(|m| m.starts_with("35=8")));
}

// ---------------------------------------------------------------------------
// Sending and the store

#[test]
fn application_messages_before_logon_are_recorded_and_resent_on_request() {
    let mut h = Harness::new();
    assert_eq!(h.send_app("37=early|"), 1);
    assert!(h.session.output().is_empty());
    h.send("A", 1, "98=0|108=30|");
    // Our Logon is 2: the peer sees a gap and asks.
    assert_eq!(h.out(), ["35=A|34=2|98=0|108=30"]);
    h.send("2", 2, "7=1|16=0|");
    assert_eq!(h.out(), ["35=8|34=1|43=Y|37=early", "35=4|34=2|43=Y|123=Y|36=3"]);
}

#[test]
fn every_message_with_a_new_seq_goes_through_the_store() {
    let mut h = Harness::logged_on(); // Logon answer: 1
    h.send("1", 2, "112=a|"); // Heartbeat: 2
    h.send_app("37=x|"); // 3
    h.send("D", 4, "11=gap|"); // ResendRequest: 4
    h.send("D", 3, "11=a|11=b|"); // Reject: 5
    h.out();
    assert_eq!(h.session.store().next_sender_seq(), 6);
    let kept: Vec<u64> = h.session.store().resend_range(1, 10).into_iter().map(|(s, _)| s).collect();
    assert_eq!(kept, [3], "only application messages are kept");
}

#[test]
fn the_session_survives_a_restart_with_a_file_store() {
    let dir = std::env::temp_dir().join(format!("matching-fix-{}-session-restart", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let mut h = Harness::with_store(FileStore::open(&dir, "ME", "CLIENT", 100).unwrap());
        h.logon();
        h.send_app("37=o2|");
        h.send("D", 2, "11=a|");
        h.session.store().flush().unwrap();
        std::mem::forget(h); // kill -9
    }
    let mut h = Harness::with_store(FileStore::open(&dir, "ME", "CLIENT", 100).unwrap());
    h.send("A", 3, "98=0|108=30|");
    assert_eq!(h.out(), ["35=A|34=3|98=0|108=30"]);
    h.send("2", 4, "7=2|16=0|");
    assert_eq!(h.out(), ["35=8|34=2|43=Y|37=o2", "35=4|34=3|43=Y|123=Y|36=4"]);
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------
// Speed

/// Not a pass/fail test: prints what sending an ExecutionReport (15 body
/// fields, ~240 bytes) through `send_app` costs, store included, with the
/// output drained and the store flushed every 64 messages
/// (`cargo test -p matching-fix encode_speed -- --nocapture`). A debug build
/// is over ten times slower than an optimized one.
#[test]
fn encode_speed() {
    fn run<S: Store>(name: &str, mut h: Harness<S>, count: u64) {
        h.logon();
        let mut body = Body::with_capacity(512);
        let mut actions = Vec::with_capacity(16);
        let wall = h.wall();
        let start = Instant::now();
        for i in 0..count {
            body.clear();
            body.field_str(37, "O-123456789")
                .field_str(11, "client-order-000042")
                .field_u64(17, 1_000_000 + i)
                .field_str(150, "F")
                .field_str(39, "1")
                .field_str(55, "BTC-USD")
                .field_str(54, "1")
                .field_u64(38, 100)
                .field_u64(44, 1_000_050)
                .field_u64(32, 10)
                .field_u64(31, 1_000_050)
                .field_u64(151, 90)
                .field_u64(14, 10)
                .field_u64(6, 1_000_050)
                .field_time(60, wall);
            h.session.send_app("8", body.as_bytes(), wall, &mut actions).unwrap();
            if i % 64 == 63 {
                h.session.clear_output();
                h.session.store().flush().unwrap();
                actions.clear();
            }
        }
        let elapsed = start.elapsed();
        let mode = if cfg!(debug_assertions) { "debug build" } else { "release build" };
        println!(
            "encode_speed {name}: {count} ExecutionReports in {elapsed:?}: {} ns/message ({mode})",
            elapsed.as_nanos() / u128::from(count)
        );
    }
    run("MemoryStore", Harness::with_store(MemoryStore::new(10_000)), 100_000);
    let dir = std::env::temp_dir().join(format!("matching-fix-{}-speed", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    run("FileStore", Harness::with_store(FileStore::open(&dir, "ME", "CLIENT", 10_000).unwrap()), 100_000);
    let _ = std::fs::remove_dir_all(&dir);
}
