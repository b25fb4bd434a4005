use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;

use super::*;

/// `|` → SOH.
fn soh(s: &str) -> Vec<u8> {
    s.bytes().map(|b| if b == b'|' { SOH } else { b }).collect()
}

/// A frame from `body` (everything after `9=…|` and before `10=`, `|` for
/// SOH) with the right BodyLength and CheckSum.
fn frame(body: &str) -> Vec<u8> {
    let body = soh(body);
    let mut f = format!("8=FIX.4.4\x019={}\x01", body.len()).into_bytes();
    f.extend_from_slice(&body);
    let sum = checksum(&f);
    f.extend_from_slice(format!("10={sum:03}\x01").as_bytes());
    f
}

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
}

fn header(seq: u64) -> Header<'static> {
    Header { sender: "ME", target: "CLIENT", seq, sending_time: t0(), poss_dup: None }
}

#[test]
fn frame_len_partial_then_complete() {
    let f = frame("35=0|49=A|56=B|34=1|52=20240101-00:00:00.000|");
    for n in 0..f.len() {
        assert_eq!(frame_len(&f[..n], 4096), Ok(None), "prefix of {n} bytes");
    }
    assert_eq!(frame_len(&f, 4096), Ok(Some(f.len())));
    // A second message behind the first does not change the first's length.
    let mut two = f.clone();
    two.extend_from_slice(&f[..20]);
    assert_eq!(frame_len(&two, 4096), Ok(Some(f.len())));
}

#[test]
fn frame_len_oversize_is_an_error_as_soon_as_body_length_is_known() {
    let f = frame("35=0|49=A|56=B|34=1|52=20240101-00:00:00.000|");
    assert_eq!(frame_len(&f, f.len()), Ok(Some(f.len())));
    let body_length_end = f.iter().skip(10).position(|&b| b == SOH).unwrap() + 11;
    assert_eq!(
        frame_len(&f[..body_length_end], f.len() - 1),
        Err(FrameError::TooLong { len: f.len(), max_len: f.len() - 1 })
    );
    // Before the SOH ends BodyLength, it is not known yet.
    assert_eq!(frame_len(&f[..body_length_end - 1], 10), Ok(None));
    assert_eq!(frame_len(b"8=FIX.4.4\x019=1234567890", usize::MAX), Err(FrameError::BadBodyLength));
}

#[test]
fn frame_len_garbage() {
    assert_eq!(frame_len(b"GET / HTTP/1.1\r\n", 4096), Err(FrameError::NotFix));
    assert_eq!(frame_len(b"8=FIX.4.2\x019=5\x01", 4096), Err(FrameError::NotFix));
    assert_eq!(frame_len(b"8=FIX.4.4\x0135=A\x01", 4096), Err(FrameError::BadBodyLength));
    assert_eq!(frame_len(b"8=FIX.4.4\x019=\x01", 4096), Err(FrameError::BadBodyLength));
    assert_eq!(frame_len(b"8=FIX.4.4\x019=1x\x01", 4096), Err(FrameError::BadBodyLength));
    assert_eq!(frame_len(b"8=FIX.4.4\x018", 4096), Err(FrameError::BadBodyLength));
    // BodyLength one too small: where it says the message ends there is no 10=NNN.
    let mut f = frame("35=0|49=A|56=B|34=1|");
    assert_eq!(&f[12..14], b"20");
    f[12..14].copy_from_slice(b"19");
    assert_eq!(frame_len(&f, 4096), Err(FrameError::BadTrailer));
}

#[test]
fn resync_finds_the_next_begin_string() {
    let good = frame("35=0|49=A|56=B|34=1|");
    let mut buf = b"8=FIX.4.4\x019=zz garbage 8=FIX 8=".to_vec();
    let at = buf.len();
    buf.extend_from_slice(&good);
    assert_eq!(resync(&buf), at);
    assert_eq!(frame_len(&buf[resync(&buf)..], 4096), Ok(Some(good.len())));
    // A BeginString cut by the end of the buffer: keep it, more may come.
    assert_eq!(resync(b"xx8=FIX.4"), 2);
    assert_eq!(resync(b"xx8"), 2);
    assert_eq!(resync(b"xxx"), 3);
    assert_eq!(resync(b"8=FIX.4.4\x01"), 10);
    assert_eq!(resync(b""), 0);
}

#[test]
fn parse_reads_fields_in_order() {
    let m = parse(&frame("35=D|49=CLIENT|56=ME|34=12|52=20240101-00:00:00.000|11=abc|55=BTC-USD|38=5|")).unwrap();
    assert_eq!(m.msg_type(), "D");
    assert_eq!(m.seq_num(), Some(12));
    assert_eq!(m.get(11), Some("abc"));
    assert_eq!(m.get_u64(38), Some(5));
    assert_eq!(m.get_u64(11), None);
    assert_eq!(m.get(99), None);
    assert!(!m.poss_dup());
    let tags: Vec<u32> = m.fields().map(|(t, _)| t).collect();
    assert_eq!(tags, [8, 9, 35, 49, 56, 34, 52, 11, 55, 38, 10]);
}

#[test]
fn parse_rejects_wrong_checksum_as_garbled() {
    let mut f = frame("35=0|49=A|56=B|34=1|");
    let n = f.len();
    f[n - 2] = if f[n - 2] == b'9' { b'0' } else { f[n - 2] + 1 };
    assert_eq!(parse(&f), Err(ParseError::Garbled { reason: "wrong CheckSum (10)" }));
}

#[test]
fn parse_rejects_wrong_body_length_as_garbled() {
    let mut f = frame("35=0|49=A|56=B|34=1|");
    f[12..14].copy_from_slice(b"22");
    // Keep the CheckSum right for the changed byte, so only the length is wrong.
    let n = f.len();
    let sum = checksum(&f[..n - 7]);
    f[n - 4..n - 1].copy_from_slice(format!("{sum:03}").as_bytes());
    assert_eq!(parse(&f), Err(ParseError::Garbled { reason: "wrong BodyLength (9)" }));
}

#[test]
fn parse_garbled_shapes() {
    let cases: [(&str, &str); 4] = [
        ("49=A|35=0|56=B|34=1|", "MsgType (35) is not the third field"),
        ("35=0|49=A|56B|34=1|", "a field is not tag=value"),
        ("35=0|49=A|=B|34=1|", "a field is not tag=value"),
        ("35=0|49=A|56=B|95=10|96=short|", "a Data field is not as long as its Length field says"),
    ];
    for (body, reason) in cases {
        assert_eq!(parse(&frame(body)), Err(ParseError::Garbled { reason }), "{body}");
    }
    assert!(matches!(parse(b"8=FIX.4.2\x019=5\x0135=0\x0110=000\x01"), Err(ParseError::Garbled { .. })));
}

#[test]
fn parse_duplicate_tag_is_invalid_13() {
    let err = parse(&frame("35=D|49=A|56=B|34=7|11=x|11=y|")).unwrap_err();
    assert_eq!(
        err,
        ParseError::Invalid {
            seq: Some(7),
            ref_tag: Some(11),
            reason_code: reject_reason::TAG_APPEARS_MORE_THAN_ONCE,
            text: "Tag appears more than once".into()
        }
    );
    // A header tag may not repeat even after a group started.
    let err = parse(&frame("35=D|49=A|56=B|34=7|453=1|448=P|49=C|")).unwrap_err();
    assert!(matches!(err, ParseError::Invalid { ref_tag: Some(49), reason_code: 13, .. }), "{err}");
    // A large tag repeated (searched, not in the bitset).
    let err = parse(&frame("35=D|49=A|56=B|34=7|5000=1|5000=2|")).unwrap_err();
    assert!(matches!(err, ParseError::Invalid { ref_tag: Some(5000), reason_code: 13, .. }), "{err}");
}

#[test]
fn parse_allows_repeating_groups() {
    let m = parse(&frame("35=D|49=A|56=B|34=7|11=x|453=2|448=P1|447=D|452=1|448=P2|447=D|452=3|55=X|")).unwrap();
    let parties: Vec<&[u8]> = m.fields().filter(|(t, _)| *t == 448).map(|(_, v)| v).collect();
    assert_eq!(parties, [&b"P1"[..], b"P2"]);
    assert_eq!(m.get(448), Some("P1"), "get returns the first occurrence");
}

#[test]
fn parse_empty_value_is_invalid_4() {
    let err = parse(&frame("35=D|49=A|56=B|34=9|11=|55=X|")).unwrap_err();
    assert_eq!(
        err,
        ParseError::Invalid {
            seq: Some(9),
            ref_tag: Some(11),
            reason_code: reject_reason::TAG_WITHOUT_VALUE,
            text: "Tag specified without a value".into()
        }
    );
    // The first problem in wire order wins; an unreadable MsgSeqNum gives no seq.
    let err = parse(&frame("35=D|49=A|56=B|34=|11=|")).unwrap_err();
    assert!(matches!(err, ParseError::Invalid { seq: None, ref_tag: Some(34), reason_code: 4, .. }), "{err}");
}

#[test]
fn parse_non_numeric_tag_is_invalid_0() {
    let err = parse(&frame("35=D|49=A|56=B|34=3|1x=5|")).unwrap_err();
    assert!(matches!(err, ParseError::Invalid { seq: Some(3), ref_tag: None, reason_code: 0, .. }), "{err}");
    let err = parse(&frame("35=D|49=A|56=B|34=3|0=5|")).unwrap_err();
    assert!(matches!(err, ParseError::Invalid { reason_code: 0, .. }), "{err}");
}

#[test]
fn parse_data_field_may_contain_soh_and_equals() {
    let m = parse(&frame("35=B|49=A|56=B|34=3|95=7|96=a|b=c|d|58=t|")).unwrap();
    assert_eq!(m.get_bytes(96), Some(&b"a\x01b=c\x01d"[..]));
    assert_eq!(m.get(58), Some("t"));
}

#[test]
fn encode_then_parse_round_trip() {
    let mut body = Body::new();
    body.field_str(37, "O-1").field_u64(38, 100).field_i64(44, -5).field(6, 1.5).field_time(60, t0());
    let mut out = Vec::new();
    encode(&mut out, "8", &header(42), body.as_bytes());
    assert_eq!(frame_len(&out, 4096), Ok(Some(out.len())));
    let m = parse(&out).unwrap();
    assert_eq!(m.msg_type(), "8");
    assert_eq!(m.seq_num(), Some(42));
    assert_eq!(m.get(49), Some("ME"));
    assert_eq!(m.get(56), Some("CLIENT"));
    assert_eq!(m.get(52), Some("20231114-22:13:20.123"));
    assert_eq!(m.get(37), Some("O-1"));
    assert_eq!(m.get(44), Some("-5"));
    assert_eq!(m.get(6), Some("1.5"));
    assert_eq!(m.get(60), Some("20231114-22:13:20.123"));
    assert!(!m.poss_dup());
    let text = String::from_utf8(out.iter().map(|&b| if b == SOH { b'|' } else { b }).collect()).unwrap();
    assert!(text.starts_with("8=FIX.4.4|9="), "{text}");
    assert!(text.contains("|35=8|49=ME|56=CLIENT|34=42|52=20231114-22:13:20.123|37=O-1|"), "{text}");

    // PossDup: 43=Y and OrigSendingTime in the header; appending keeps what was there.
    let orig = t0() - Duration::from_secs(60);
    let hdr = Header { poss_dup: Some(orig), ..header(7) };
    encode(&mut out, "8", &hdr, body.as_bytes());
    let first = frame_len(&out, 4096).unwrap().unwrap();
    let second = &out[first..];
    let m = parse(second).unwrap();
    assert!(m.poss_dup());
    assert_eq!(m.get(122), Some("20231114-22:12:20.123"));
    let tags: Vec<u32> = m.fields().map(|(t, _)| t).take(9).collect();
    assert_eq!(tags, [8, 9, 35, 49, 56, 34, 52, 43, 122]);
    // An empty body.
    out.clear();
    encode(&mut out, "0", &header(1), &[]);
    assert_eq!(parse(&out).unwrap().msg_type(), "0");
}

#[test]
fn checksum_and_body_length_match_a_known_message() {
    // The FIX 4.4 specification's style of example, computed independently.
    let mut out = Vec::new();
    encode(&mut out, "0", &header(1), &[]);
    let sum: u32 = out[..out.len() - 7].iter().map(|&b| u32::from(b)).sum();
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(text.ends_with(&format!("10={:03}\x01", sum % 256)), "{text}");
    let body_start = text.find("35=").unwrap();
    let declared: usize = text[12..body_start - 1].parse().unwrap();
    assert_eq!(declared, out.len() - 7 - body_start);
}

/// Field values: printable, no SOH, non-empty.
fn value() -> impl Strategy<Value = String> {
    "[ -~]{1,24}"
}

proptest! {
    #[test]
    fn prop_encode_parse_round_trip(
        msg_type in "[0-9A-Za-z]{1,2}",
        seq in 1u64..=u64::MAX,
        millis in 0u64..4_000_000_000_000,
        poss_dup in any::<bool>(),
        // Tags from a range with no header, group or Length tags, each once.
        fields in proptest::collection::btree_map(1000u32..1020, value(), 0..12),
    ) {
        let mut body = Body::new();
        for (tag, v) in &fields {
            body.field_str(*tag, v);
        }
        let time = UNIX_EPOCH + Duration::from_millis(millis);
        let hdr = Header { sender: "S", target: "T", seq, sending_time: time, poss_dup: poss_dup.then_some(time) };
        let mut out = Vec::new();
        encode(&mut out, &msg_type, &hdr, body.as_bytes());
        prop_assert_eq!(frame_len(&out, usize::MAX), Ok(Some(out.len())));
        let m = parse(&out).unwrap();
        prop_assert_eq!(m.msg_type(), msg_type.as_str());
        prop_assert_eq!(m.seq_num(), Some(seq));
        prop_assert_eq!(m.poss_dup(), poss_dup);
        let got: Vec<(u32, String)> = m
            .fields()
            .filter(|(t, _)| *t >= 1000 && *t < 1020)
            .map(|(t, v)| (t, String::from_utf8(v.to_vec()).unwrap()))
            .collect();
        let want: Vec<(u32, String)> = fields.into_iter().collect();
        prop_assert_eq!(got, want);
    }

    /// Arbitrary bytes never panic the framer, the parser or resync, and
    /// resync always makes progress.
    #[test]
    fn prop_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), prefix in any::<bool>()) {
        let mut buf = if prefix { b"8=FIX.4.4\x019=".to_vec() } else { Vec::new() };
        buf.extend_from_slice(&bytes);
        let _ = frame_len(&buf, 1000);
        let _ = parse(&buf);
        let r = resync(&buf);
        prop_assert!(r >= 1.min(buf.len()) && r <= buf.len());
    }

    /// A stream of valid messages with garbage between them: framing plus
    /// resync recovers every message whose bytes are intact.
    #[test]
    fn prop_resync_recovers_messages_after_garbage(
        garbage in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..6),
    ) {
        let mut stream = Vec::new();
        for (i, g) in garbage.iter().enumerate() {
            // Garbage without the letter '8' cannot fake or hide a BeginString.
            stream.extend(g.iter().map(|&b| if b == b'8' { b'x' } else { b }));
            encode(&mut stream, "0", &header(i as u64 + 1), &[]);
        }
        let mut seqs = Vec::new();
        let mut buf = &stream[..];
        while !buf.is_empty() {
            match frame_len(buf, 4096) {
                Ok(Some(n)) => {
                    seqs.push(parse(&buf[..n]).unwrap().seq_num().unwrap());
                    buf = &buf[n..];
                }
                Ok(None) => break,
                Err(_) => buf = &buf[resync(buf)..],
            }
        }
        prop_assert_eq!(seqs, (1..=garbage.len() as u64).collect::<Vec<_>>());
    }
}
