//! The FIX 4.4 gateway of `serve`, with QuickFIX (Debian's libquickfix,
//! driven by `tests/quickfix/fixshell.cpp`) as the counterparty: logon and
//! logout, heartbeats and test requests, sequence gaps on each side filled
//! by resends, a restart of the server mid-session, every order flow's
//! execution reports field by field, bad input, a FIX client trading with a
//! binary one, and a drop copy that sees both.

mod common;

use std::path::Path;
use std::time::Duration;

use common::client::{connect, event, new};
use common::quickfix::{FixShell, Line, WAIT};
use common::server::{Server, scratch};
use matching_client::Encoding;
use matching_core::Side;
use matching_proto::session::ClientEvent;

/// A QuickFIX session for user `user` (open development mode: `U<user>` → `ME`).
fn shell(dir: &Path, server: &Server, sender: &str) -> FixShell {
    let addr = server.fix.expect("serve runs FIX");
    FixShell::spawn(&dir.join(format!("qf-{sender}")), addr, sender, "ME", 30, false)
}

/// The next application message of type `msg_type` QuickFIX received.
fn received(fix: &mut FixShell, msg_type: &str) -> Line {
    let msg_type = msg_type.to_string();
    fix.expect(move |l| l.kind == "app" && l.msg_type() == Some(msg_type.as_str()), WAIT)
}

/// The next ExecutionReport, checked field by field against `want`.
fn report(fix: &mut FixShell, want: &[(u32, &str)]) -> Line {
    let line = received(fix, "8");
    for (tag, value) in want {
        assert_eq!(line.get(*tag), Some(*value), "tag {tag} of {line}");
    }
    line
}

fn limit<'a>(clordid: &'a str, side: &'a str, qty: &'a str, price: &'a str) -> Vec<(u32, &'a str)> {
    vec![(11, clordid), (55, "FX"), (54, side), (38, qty), (40, "2"), (44, price), (59, "1")]
}

#[test]
fn logon_heartbeat_test_request_logout() {
    let dir = scratch("fix-session");
    let server = Server::start(&dir.join("data"), &[]);
    let mut fix = FixShell::spawn(&dir.join("qf"), server.fix.unwrap(), "U1", "ME", 1, false);
    fix.logon();
    let logon = fix.seen().iter().find(|l| l.kind == "admin" && l.msg_type() == Some("A")).cloned().unwrap();
    assert_eq!(
        (logon.get(49), logon.get(56), logon.get(108), logon.get(98)),
        (Some("ME"), Some("U1"), Some("1"), Some("0"))
    );
    // A test request is answered with a heartbeat carrying its id.
    fix.cmd("test_request probe-1");
    let beat = fix.expect(|l| l.kind == "admin" && l.msg_type() == Some("0") && l.get(112).is_some(), WAIT);
    assert_eq!(beat.get(112), Some("probe-1"));
    // Silence on our side for a while: the server's heartbeats keep coming
    // (QuickFIX sends its own too, so neither side times out).
    for _ in 0..2 {
        fix.expect(|l| l.kind == "admin" && l.msg_type() == Some("0") && l.get(112).is_none(), Duration::from_secs(5));
    }
    fix.cmd("stop");
    fix.expect(|l| l.kind == "admin" && l.msg_type() == Some("5"), WAIT);
    fix.expect(|l| l.kind == "logout", WAIT);
    assert!(fix.quit().success());
    assert!(server.stop().success());
}

#[test]
fn every_order_flow_reports_field_by_field() {
    let dir = scratch("fix-orders");
    let server = Server::start(&dir.join("data"), &[]);
    let mut one = shell(&dir, &server, "U1");
    let mut two = shell(&dir, &server, "U2");
    one.logon();
    two.logon();

    // New: a resting buy.
    one.send("D", &limit("b1", "1", "10", "100"));
    let new = report(&mut one, &[(11, "b1"), (150, "0"), (39, "0"), (55, "FX"), (54, "1"), (38, "10"), (44, "100")]);
    let order_id = new.get(37).unwrap().to_string();
    assert_eq!((new.get(14), new.get(151), new.get(6), new.get(1)), (Some("0"), Some("10"), Some("0"), Some("1")));

    // A partial fill: user 2 sells 4 at 100 (IOC), fills completely.
    two.send("D", &[(11, "s1"), (55, "FX"), (54, "2"), (38, "4"), (40, "2"), (44, "100"), (59, "3")]);
    report(&mut two, &[(11, "s1"), (150, "0"), (39, "0"), (59, "3")]);
    report(&mut two, &[(11, "s1"), (150, "F"), (39, "2"), (32, "4"), (31, "100"), (14, "4"), (151, "0"), (6, "100")]);
    let fill = report(&mut one, &[(11, "b1"), (150, "F"), (39, "1"), (32, "4"), (31, "100"), (14, "4"), (151, "6")]);
    assert_eq!((fill.get(37), fill.get(6)), (Some(order_id.as_str()), Some("100")));
    assert!(fill.get(880).is_some(), "a trade match id: {fill}");

    // Replace: a new total of 20 at 101; 4 were filled, so 16 are open.
    one.send("G", &[(11, "b2"), (41, "b1"), (55, "FX"), (54, "1"), (38, "20"), (40, "2"), (44, "101")]);
    report(&mut one, &[(11, "b2"), (41, "b1"), (150, "5"), (39, "1"), (38, "20"), (44, "101"), (14, "4"), (151, "16")]);

    // A fill at the new price averages: 4 at 100 and 16 at 101.
    two.send("D", &[(11, "s2"), (55, "FX"), (54, "2"), (38, "16"), (40, "2"), (44, "101"), (59, "1")]);
    report(&mut two, &[(11, "s2"), (150, "0")]);
    report(&mut two, &[(11, "s2"), (150, "F"), (39, "2")]);
    report(&mut one, &[(11, "b2"), (150, "F"), (39, "2"), (14, "20"), (151, "0"), (6, "100.8")]);

    // Cancel: a new resting order, then its cancel; a cancel of what is gone.
    one.send("D", &limit("b3", "1", "5", "90"));
    report(&mut one, &[(11, "b3"), (150, "0")]);
    one.send("F", &[(11, "c3"), (41, "b3"), (55, "FX"), (54, "1")]);
    report(&mut one, &[(11, "c3"), (41, "b3"), (150, "4"), (39, "4"), (151, "0"), (14, "0")]);
    one.send("F", &[(11, "c4"), (41, "b3"), (55, "FX"), (54, "1")]);
    let reject = received(&mut one, "9");
    assert_eq!(
        (reject.get(11), reject.get(41), reject.get(434), reject.get(102)),
        (Some("c4"), Some("b3"), Some("1"), Some("1"))
    );

    // Expired: a FOK that cannot fill, an IOC with nothing to meet.
    one.send("D", &[(11, "f1"), (55, "FX"), (54, "1"), (38, "50"), (40, "2"), (44, "200"), (59, "4")]);
    report(&mut one, &[(11, "f1"), (150, "0")]);
    report(&mut one, &[(11, "f1"), (150, "C"), (39, "C"), (151, "0")]);
    one.send("D", &[(11, "i1"), (55, "FX"), (54, "1"), (38, "5"), (40, "2"), (44, "1"), (59, "3")]);
    report(&mut one, &[(11, "i1"), (150, "0")]);
    report(&mut one, &[(11, "i1"), (150, "C"), (39, "C")]);

    // Rejected: a quantity of 0; an unknown symbol is SPEC's invalid_symbol... (any symbol trades here).
    one.send("D", &limit("z1", "1", "0", "100"));
    report(&mut one, &[(11, "z1"), (150, "8"), (39, "8"), (103, "13"), (58, "invalid_qty")]);

    // Order status of a live order.
    one.send("D", &limit("b5", "1", "7", "95"));
    report(&mut one, &[(11, "b5"), (150, "0")]);
    one.send("H", &[(11, "b5"), (55, "FX"), (54, "1")]);
    report(&mut one, &[(11, "b5"), (150, "I"), (39, "0"), (151, "7")]);

    // Mass cancel: the report counts, each order gets its Canceled.
    one.send("D", &limit("b6", "1", "1", "94"));
    report(&mut one, &[(11, "b6"), (150, "0")]);
    one.send("q", &[(11, "m1"), (530, "7")]);
    let mut cancelled = Vec::new();
    for _ in 0..2 {
        cancelled.push(report(&mut one, &[(150, "4"), (39, "4")]).get(11).unwrap().to_string());
    }
    cancelled.sort();
    assert_eq!(cancelled, ["b5", "b6"]);
    let mass = received(&mut one, "r");
    assert_eq!(
        (mass.get(11), mass.get(530), mass.get(531), mass.get(533)),
        (Some("m1"), Some("7"), Some("7"), Some("2"))
    );

    // An unsupported message type: a business reject.
    one.send("R", &[(131, "q1"), (55, "FX")]);
    let business = received(&mut one, "j");
    assert_eq!((business.get(372), business.get(380)), (Some("R"), Some("3")));
    // A new order missing its side: a business reject naming it.
    one.send("D", &[(11, "x1"), (55, "FX"), (38, "1"), (40, "2"), (44, "1")]);
    let business = received(&mut one, "j");
    assert_eq!(business.get(380), Some("5"));
    assert!(business.get(58).unwrap().contains("Side"), "{business}");

    drop((one, two));
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fix_client_trades_with_a_binary_one_and_a_drop_copy_sees_both() {
    let dir = scratch("fix-cross");
    let server = Server::start(&dir.join("data"), &[]);
    let addr = server.fix.unwrap();
    let (mut fix, copy) = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || {
            let mut fix = FixShell::spawn(&dir.join("qf-U1"), addr, "U1", "ME", 30, false);
            let mut copy = FixShell::spawn(&dir.join("qf-DC9"), addr, "DC9", "ME", 30, false);
            fix.logon();
            copy.logon();
            (fix, copy)
        }
    })
    .await
    .unwrap();
    let mut binary = connect(server.binary, Encoding::Binary, 2, "").await;
    binary.send(&new(2, "FX", Side::Sell, 100, 3, Some("bin-1"))).await.unwrap();
    assert!(matches!(event(&mut binary).await.1, ClientEvent::Accepted { .. }));
    let (fix, mut copy) = tokio::task::spawn_blocking(move || {
        fix.send("D", &limit("f1", "1", "5", "100"));
        report(&mut fix, &[(11, "f1"), (150, "0")]);
        report(&mut fix, &[(11, "f1"), (150, "F"), (39, "1"), (32, "3"), (31, "100"), (151, "2")]);
        (fix, copy)
    })
    .await
    .unwrap();
    let ClientEvent::Fill { qty, remaining, .. } = event(&mut binary).await.1 else { panic!() };
    assert_eq!((qty, remaining), (3, 0));
    // The drop copy saw user 2's order, user 1's, and both sides of the trade.
    let copied = tokio::task::spawn_blocking(move || {
        let mut copied = Vec::new();
        for _ in 0..4 {
            let line = received(&mut copy, "8");
            copied.push((line.get(1).unwrap().to_string(), line.get(150).unwrap().to_string()));
        }
        copy.send("D", &limit("no", "1", "1", "1"));
        let refused = report(&mut copy, &[(11, "no"), (150, "8"), (39, "8")]);
        drop(fix);
        (copied, refused)
    })
    .await
    .unwrap();
    let (mut copied, refused) = copied;
    copied.sort();
    assert_eq!(
        copied,
        [("1".into(), "0".into()), ("1".into(), "F".into()), ("2".into(), "0".into()), ("2".into(), "F".into())]
    );
    assert!(refused.get(58).unwrap().contains("not_permitted"), "{refused}");
    assert!(server.stop().success());
}

/// A FIX frame from `sender` to `ME`, `|` for SOH in `body`, made right by
/// the gateway's own encoder; `corrupt` then spoils it.
fn frame(msg_type: &str, sender: &str, seq: u64, body: &str, corrupt: impl Fn(&mut Vec<u8>)) -> String {
    let mut body = body.replace('|', "\u{1}").into_bytes();
    if !body.is_empty() && body.last() != Some(&1) {
        body.push(1);
    }
    let header =
        matching_fix::Header { sender, target: "ME", seq, sending_time: std::time::SystemTime::now(), poss_dup: None };
    let mut out = Vec::new();
    matching_fix::encode(&mut out, msg_type, &header, &body);
    corrupt(&mut out);
    String::from_utf8(out).unwrap().replace('\u{1}', "|")
}

/// What the server answered on a fresh connection to `bytes`: its messages,
/// until it closed the connection (or 2 s passed).
fn raw_connection(fix: &mut FixShell, bytes: &str) -> Vec<Line> {
    fix.clear_backlog();
    fix.cmd(&format!("rawconn {bytes}"));
    let mut got = Vec::new();
    loop {
        let line = fix.expect(|l| l.kind == "rawrecv" || l.kind == "rawclosed", WAIT);
        if line.kind == "rawclosed" {
            return got;
        }
        got.push(line);
    }
}

#[test]
fn garbage_bad_checksums_and_body_lengths_and_wrong_compids() {
    let dir = scratch("fix-bad");
    let server = Server::start(&dir.join("data"), &[]);
    let mut fix = shell(&dir, &server, "U5");
    let logon = |seq| frame("A", "U5", seq, "98=0|108=30", |_| {});
    // Not FIX at all: the connection closes, unanswered.
    assert!(raw_connection(&mut fix, "hello, world").is_empty());
    // A Logon with a wrong checksum is ignored; the good one after it is answered.
    let bad_sum = frame("A", "U5", 1, "98=0|108=30|141=Y", |f| {
        let at = f.len() - 2;
        f[at] = if f[at] == b'9' { b'0' } else { f[at] + 1 };
    });
    let answer = raw_connection(&mut fix, &format!("{bad_sum}{}", frame("A", "U5", 1, "98=0|108=30|141=Y", |_| {})));
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert_eq!((answer[0].msg_type(), answer[0].get(141)), (Some("A"), Some("Y")));
    // A wrong body length cannot be told from a stream out of step: closed, unanswered.
    let bad_length = logon(1).replacen("|9=", "|9=1", 1);
    assert!(raw_connection(&mut fix, &bad_length).is_empty());
    // A Logon from CompIDs nobody configured: closed, unanswered.
    let stranger = frame("A", "NOBODY", 1, "98=0|108=30", |_| {});
    assert!(raw_connection(&mut fix, &stranger).is_empty());

    // On a live QuickFIX session: an empty value is rejected (and consumed);
    // a message to the wrong TargetCompID is rejected and ends the session.
    fix.logon();
    let (next, _) = fix.seqs();
    fix.cmd(&format!("raw {}", frame("D", "U5", next, "11=e1|55=FX|54=1|38=1|58=|40=2|44=1", |_| {})));
    let reject = fix.expect(|l| l.kind == "admin" && l.msg_type() == Some("3"), WAIT);
    assert_eq!((reject.get(45), reject.get(373)), (Some(next.to_string().as_str()), Some("4")), "{reject}");
    fix.cmd(&format!("next_sender_seq {}", next + 1));
    let wrong = frame("D", "U5", next + 1, "11=e2|55=FX|54=1|38=1|40=2|44=1", |f| {
        let text = String::from_utf8(f.clone()).unwrap().replace("\u{1}56=ME\u{1}", "\u{1}56=XX\u{1}");
        // Re-encode with the wrong target, checksum made right again.
        let end = text.rfind("10=").unwrap();
        let sum = text.as_bytes()[..end].iter().map(|b| u32::from(*b)).sum::<u32>() % 256;
        *f = format!("{}10={sum:03}\u{1}", &text[..end]).into_bytes();
    });
    fix.cmd(&format!("raw {wrong}"));
    let reject = fix.expect(|l| l.kind == "admin" && l.msg_type() == Some("3"), WAIT);
    assert_eq!(reject.get(373), Some("9"), "{reject}");
    fix.expect(|l| l.kind == "admin" && l.msg_type() == Some("5"), WAIT);
    fix.cmd("stop");
    drop(fix);
    assert!(server.stop().success());
}

#[test]
fn sequence_gaps_on_each_side_are_filled_by_resends() {
    let dir = scratch("fix-gaps");
    let server = Server::start(&dir.join("data"), &[]);
    let mut fix = shell(&dir, &server, "U3");
    fix.logon();
    fix.send("D", &limit("g1", "1", "1", "10"));
    report(&mut fix, &[(11, "g1"), (150, "0")]);
    // Our gap: QuickFIX skips five numbers; the server asks for them, QuickFIX
    // gap-fills, and the order after the gap is processed.
    let (next, _) = fix.seqs();
    fix.cmd(&format!("next_sender_seq {}", next + 5));
    fix.send("D", &limit("g2", "1", "1", "11"));
    let resend = fix.expect(|l| l.kind == "admin" && l.msg_type() == Some("2"), WAIT);
    assert_eq!((resend.get(7), resend.get(16)), (Some(next.to_string().as_str()), Some("0")), "{resend}");
    fix.expect(|l| l.kind == "toadmin" && l.msg_type() == Some("4") && l.get(123) == Some("Y"), WAIT);
    report(&mut fix, &[(11, "g2"), (150, "0")]);
    // The server's gap: QuickFIX forgets what it received after the Logon;
    // the next message shows the gap, QuickFIX asks, and the server resends
    // its execution reports (PossDupFlag) and gap-fills its admin messages.
    fix.cmd("next_target_seq 2");
    fix.cmd("test_request gap");
    fix.expect(|l| l.kind == "toadmin" && l.msg_type() == Some("2") && l.get(7) == Some("2"), WAIT);
    let resent = report(&mut fix, &[(11, "g1"), (150, "0"), (43, "Y")]);
    assert!(resent.get(122).is_some(), "OrigSendingTime: {resent}");
    report(&mut fix, &[(11, "g2"), (150, "0"), (43, "Y")]);
    fix.expect(|l| l.kind == "admin" && l.msg_type() == Some("4") && l.get(123) == Some("Y"), WAIT);
    // And the session goes on.
    fix.send("D", &limit("g3", "1", "1", "12"));
    report(&mut fix, &[(11, "g3"), (150, "0")]);
    drop(fix);
    assert!(server.stop().success());
}

#[test]
fn a_restart_of_either_side_keeps_the_sequence_numbers() {
    let dir = scratch("fix-restart");
    let data = dir.join("data");
    let addr = common::server::free_addr().to_string();
    let server = Server::start(&data, &["--fix-addr", &addr]);
    let mut fix = shell(&dir, &server, "U4");
    fix.logon();
    fix.send("D", &limit("r1", "1", "3", "50"));
    report(&mut fix, &[(11, "r1"), (150, "0")]);
    // The server stops (a Logout), comes back; QuickFIX reconnects by itself.
    assert!(server.stop().success());
    fix.expect(|l| l.kind == "logout", WAIT);
    let server = Server::start(&data, &["--fix-addr", &addr]);
    fix.clear_backlog();
    fix.expect(|l| l.kind == "logon", Duration::from_secs(20));
    let logon = fix.seen().iter().rev().find(|l| l.kind == "admin" && l.msg_type() == Some("A")).unwrap().clone();
    assert!(logon.seq().unwrap() > 2, "the server's numbers go on: {logon}");
    assert_eq!(logon.get(141), None, "no reset");
    // The order is still known by its ClOrdID: a cancel of it.
    fix.send("F", &[(11, "r2"), (41, "r1"), (55, "FX"), (54, "1")]);
    report(&mut fix, &[(11, "r2"), (41, "r1"), (150, "4"), (39, "4")]);
    let (sender, target) = fix.seqs();
    // Now QuickFIX restarts (its store kept): it logs on where it was.
    assert!(fix.quit().success());
    let mut fix = shell(&dir, &server, "U4");
    let (sender_after, target_after) = fix.seqs();
    // (The Logouts of the quit took one number each way.)
    assert!(sender_after >= sender && target_after >= target, "{sender_after} {target_after}");
    fix.logon();
    let logon = fix.seen().iter().rev().find(|l| l.kind == "admin" && l.msg_type() == Some("A")).unwrap().clone();
    assert_eq!(logon.seq(), Some(target_after), "the server's numbers go on: {logon}");
    fix.send("D", &limit("r3", "1", "1", "50"));
    report(&mut fix, &[(11, "r3"), (150, "0")]);
    drop(fix);
    assert!(server.stop().success());
}

/// A line of the conversation with what varies from run to run (SendingTime,
/// OrigSendingTime, CheckSum, TransactTime) masked.
fn normalized(line: &Line) -> String {
    let fields: Vec<String> = line
        .fields
        .iter()
        .map(|(tag, value)| match tag {
            10 | 52 | 60 | 122 => format!("{tag}=*"),
            _ => format!("{tag}={value}"),
        })
        .collect();
    fields.join("|")
}

/// A message of the recorded conversation: its type, its fields, how many
/// application messages answer it.
type Step<'a> = (&'a str, &'a [(u32, &'a str)], usize);

/// One conversation, from the Logon to the Logout, recorded: what QuickFIX
/// sent (its application messages as the test gave them, its session
/// messages as it wrote them) and everything the server answered. It must
/// stay what `tests/fixtures/fix_conversation.txt` holds (`FIX_GOLDEN=write`
/// rewrites the file after a deliberate change).
#[test]
fn a_recorded_conversation_matches_the_golden_file() {
    let dir = scratch("fix-golden");
    let server = Server::start(&dir.join("data"), &[]);
    let mut fix = FixShell::spawn(&dir.join("qf"), server.fix.unwrap(), "U8", "ME", 30, false);
    let mut transcript = Vec::new();
    fix.logon();
    // Each message QuickFIX sends, and how many answers it gets.
    let script: [Step; 7] = [
        ("D", &[(11, "o1"), (55, "GLD"), (54, "1"), (38, "10"), (40, "2"), (44, "100"), (59, "1")], 1),
        ("D", &[(11, "o2"), (55, "GLD"), (54, "2"), (38, "4"), (40, "2"), (44, "100"), (59, "3")], 3),
        ("G", &[(11, "o3"), (41, "o1"), (55, "GLD"), (54, "1"), (38, "12"), (44, "99")], 1),
        ("H", &[(11, "o3"), (55, "GLD"), (54, "1")], 1),
        ("F", &[(11, "o4"), (41, "o3"), (55, "GLD"), (54, "1")], 1),
        ("F", &[(11, "o5"), (41, "o3"), (55, "GLD"), (54, "1")], 1),
        ("R", &[(131, "q1"), (55, "GLD")], 1),
    ];
    for (msg_type, fields, answers) in script {
        let body: Vec<String> = fields.iter().map(|(t, v)| format!("{t}={v}")).collect();
        transcript.push(format!("> 35={msg_type}|{}", body.join("|")));
        fix.send(msg_type, fields);
        for _ in 0..answers {
            let line = fix.expect(|l| l.kind == "app", WAIT);
            transcript.push(format!("< {}", normalized(&line)));
        }
    }
    fix.cmd("stop");
    fix.expect(|l| l.kind == "logout", WAIT);
    // The session messages, in the order they went, both ways.
    let session: Vec<String> = fix
        .seen()
        .iter()
        .filter(|l| matches!(l.kind.as_str(), "admin" | "toadmin"))
        .map(|l| format!("{} {}", if l.kind == "admin" { "<" } else { ">" }, normalized(l)))
        .collect();
    let recorded = format!("# application\n{}\n# session\n{}\n", transcript.join("\n"), session.join("\n"));
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fix_conversation.txt");
    if std::env::var("FIX_GOLDEN").as_deref() == Ok("write") {
        std::fs::write(golden, &recorded).unwrap();
    }
    let want = std::fs::read_to_string(golden).expect("the golden file (FIX_GOLDEN=write makes it)");
    assert_eq!(recorded, want, "the conversation differs from {golden}");
    drop(fix);
    assert!(server.stop().success());
}

#[test]
fn a_session_is_one_connection_at_a_time() {
    let dir = scratch("fix-twice");
    let server = Server::start(&dir.join("data"), &[]);
    let mut fix = shell(&dir, &server, "U6");
    fix.logon();
    // A second Logon of the same session, on another connection: closed, unanswered.
    let logon = frame("A", "U6", 1, "98=0|108=30|141=Y", |_| {});
    assert!(raw_connection(&mut fix, &logon).is_empty());
    // The first goes on.
    fix.send("D", &limit("t1", "1", "1", "10"));
    report(&mut fix, &[(11, "t1"), (150, "0")]);
    drop(fix);
    assert!(server.stop().success());
}
