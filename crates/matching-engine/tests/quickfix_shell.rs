//! The FIX tests' counterparty, QuickFIX driven by `tests/quickfix/fixshell.cpp`,
//! builds and starts: against a bare TCP listener it connects and sends a
//! well-formed FIX.4.4 Logon.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::quickfix::{FixShell, WAIT};
use common::server::scratch;

/// Accepts one connection within `WAIT`.
fn accept(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("QuickFIX did not connect: {e}"),
        }
    }
}

/// Reads until one whole FIX message (up to `10=NNN<SOH>`) has arrived.
fn read_message(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = Vec::new();
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\x0110=")
            && buf.len() >= at + 8
        {
            assert_eq!(buf.len(), at + 8, "more than one message: {}", show(&buf));
            assert_eq!(buf[at + 7], 1, "checksum field not 3 digits: {}", show(&buf));
            return buf;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).unwrap_or_else(|e| panic!("reading the Logon: {e}; so far {}", show(&buf)));
        assert!(n > 0, "QuickFIX closed the connection; so far {}", show(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\x01', "|")
}

#[test]
fn fixshell_builds_connects_and_sends_a_logon() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = scratch("fixshell");
    let mut shell = FixShell::spawn(&dir, addr, "CLIENT1", "EXCH", 7, false);
    shell.expect(|l| l.kind == "create", WAIT);
    shell.cmd("start");

    let mut stream = accept(&listener);
    let wire = read_message(&mut stream);
    let text = show(&wire);
    let fields: Vec<(&str, &str)> =
        text.trim_end_matches('|').split('|').map(|f| f.split_once('=').expect(&text)).collect();
    let tags: Vec<&str> = fields.iter().map(|(t, _)| *t).collect();
    assert_eq!(&tags[..3], ["8", "9", "35"], "{text}");
    assert_eq!(tags.last(), Some(&"10"), "{text}");
    let get = |tag: &str| fields.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v);
    assert_eq!(get("8"), Some("FIX.4.4"), "{text}");
    assert_eq!(get("35"), Some("A"), "{text}");
    assert_eq!(get("49"), Some("CLIENT1"), "{text}");
    assert_eq!(get("56"), Some("EXCH"), "{text}");
    assert_eq!(get("108"), Some("7"), "{text}");
    assert_eq!(get("34"), Some("1"), "{text}");

    // CheckSum: every byte before `10=`, mod 256, three digits.
    let trailer = wire.len() - 7;
    let sum = wire[..trailer].iter().map(|&b| u32::from(b)).sum::<u32>() % 256;
    assert_eq!(get("10"), Some(format!("{sum:03}").as_str()), "{text}");
    // BodyLength: the bytes after the `9=` field up to and including the SOH before `10=`.
    let body_start = wire.iter().enumerate().filter(|&(_, &b)| b == 1).nth(1).unwrap().0 + 1;
    assert_eq!(get("9"), Some((trailer - body_start).to_string().as_str()), "{text}");

    // The shell reports the Logon it sent, byte for byte.
    let sent = shell.expect(|l| l.kind == "toadmin", WAIT);
    assert_eq!(sent.text, text.trim_end_matches('|'));
    assert_eq!(sent.msg_type(), Some("A"));
    if !shell.seen().iter().any(|l| l.kind == "ok") {
        shell.expect(|l| l.kind == "ok", WAIT); // `start`'s answer may come after the Logon went out
    }

    assert!(shell.quit().success());
}
