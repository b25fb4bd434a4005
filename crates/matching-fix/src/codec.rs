//! The FIX 4.4 tag=value codec: framing, parsing and encoding.
//!
//! A message on the wire is `8=FIX.4.4<SOH>9=<BodyLength><SOH>35=<MsgType><SOH>…10=<CheckSum><SOH>`:
//! BodyLength counts the bytes after the SOH that ends the `9=` field up to
//! and including the SOH before `10=`; CheckSum is the sum of every byte
//! before `10=`, modulo 256, as three digits.
//!
//! - [`frame_len`] says whether a buffer starts with a complete message and
//!   how long it is, without parsing it; [`resync`] finds the next message
//!   after bytes that cannot be one.
//! - [`parse`] checks one frame and indexes its fields into a [`Message`]; a
//!   frame with a wrong BodyLength or CheckSum, or that is not `tag=value`
//!   fields, is [`ParseError::Garbled`] (the spec: ignore it, do not consume
//!   its sequence number); a readable frame with a field-level problem is
//!   [`ParseError::Invalid`] (the spec: answer with a session Reject, consume
//!   its sequence number).
//! - [`encode`] writes a message with its standard header and trailer around
//!   a pre-encoded body, which [`Body`] builds.
//!
//! There is no data dictionary. What the codec knows of FIX 4.4 is three
//! small tables: the standard header and trailer tags (which may never
//! repeat), the NumInGroup tags (after one of them, body tags may repeat:
//! they may be repeating-group members), and the Length/Data pairs (a Data
//! field's value may contain SOH; its Length field, just before it, says how
//! long it is).

use std::collections::HashSet;
use std::fmt;
use std::io::Write as _;
use std::time::SystemTime;

use crate::timestamp::{TIMESTAMP_LEN, format_utc};

/// The FIX field delimiter.
pub const SOH: u8 = 0x01;

/// The first field of every FIX 4.4 message.
const BEGIN_STRING: &[u8] = b"8=FIX.4.4\x01";

/// `10=NNN<SOH>`.
const TRAILER_LEN: usize = 7;

/// At most this many BodyLength digits (< 1 GB, and no overflow).
const BODY_LENGTH_DIGITS_MAX: usize = 9;

/// SessionRejectReason (373) values used by the session layer (FIX 4.4).
pub mod reject_reason {
    /// Invalid tag number.
    pub const INVALID_TAG_NUMBER: u32 = 0;
    /// Required tag missing.
    pub const REQUIRED_TAG_MISSING: u32 = 1;
    /// Tag specified without a value.
    pub const TAG_WITHOUT_VALUE: u32 = 4;
    /// Value is incorrect (out of range) for this tag.
    pub const VALUE_INCORRECT: u32 = 5;
    /// Incorrect data format for value.
    pub const INCORRECT_DATA_FORMAT: u32 = 6;
    /// CompID problem.
    pub const COMP_ID_PROBLEM: u32 = 9;
    /// Invalid MsgType.
    pub const INVALID_MSG_TYPE: u32 = 11;
    /// Tag appears more than once.
    pub const TAG_APPEARS_MORE_THAN_ONCE: u32 = 13;
    /// Other.
    pub const OTHER: u32 = 99;
}

// ---------------------------------------------------------------------------
// Framing

/// Why bytes cannot be the start of a FIX 4.4 message (see [`frame_len`]).
/// The stream can only continue at the next BeginString: see [`resync`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The bytes do not start with `8=FIX.4.4<SOH>`.
    NotFix,
    /// The second field is not `9=<digits><SOH>` (at most 9 digits).
    BadBodyLength,
    /// BodyLength makes the message longer than the limit.
    TooLong {
        /// The whole message's length in bytes, as BodyLength says.
        len: usize,
        /// The limit.
        max_len: usize,
    },
    /// The bytes where BodyLength says the message ends are not
    /// `10=<3 digits><SOH>`: BodyLength is wrong.
    BadTrailer,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::NotFix => f.write_str("not a FIX 4.4 message: it does not start with 8=FIX.4.4"),
            FrameError::BadBodyLength => f.write_str("the second field is not BodyLength (9=<digits>)"),
            FrameError::TooLong { len, max_len } => {
                write!(f, "message of {len} bytes is longer than the limit of {max_len}")
            }
            FrameError::BadTrailer => f.write_str("BodyLength is wrong: no CheckSum (10=NNN) where it ends"),
        }
    }
}

impl std::error::Error for FrameError {}

/// If `buf` starts with a complete FIX 4.4 message, its length in bytes;
/// `Ok(None)` if more bytes are needed to tell; `Err` if the bytes cannot be
/// the start of a message or BodyLength makes it longer than `max_len`.
///
/// The length is the prefix up to and including the SOH after BodyLength,
/// plus BodyLength, plus 7 (`10=NNN<SOH>`). When that many bytes are there,
/// they must end with `10=`, three digits and SOH, else BodyLength was wrong
/// and this is an error too. Nothing else is checked (that is [`parse`]).
pub fn frame_len(buf: &[u8], max_len: usize) -> Result<Option<usize>, FrameError> {
    let n = buf.len().min(BEGIN_STRING.len());
    if buf[..n] != BEGIN_STRING[..n] {
        return Err(FrameError::NotFix);
    }
    let rest = &buf[n..];
    if rest.len() < 2 {
        return if b"9="[..rest.len()] == *rest { Ok(None) } else { Err(FrameError::BadBodyLength) };
    }
    if &rest[..2] != b"9=" {
        return Err(FrameError::BadBodyLength);
    }
    let mut body_len: usize = 0;
    let mut digit_count = 0;
    let mut i = BEGIN_STRING.len() + 2;
    loop {
        let Some(&b) = buf.get(i) else { return Ok(None) };
        if b == SOH {
            break;
        }
        if !b.is_ascii_digit() || digit_count == BODY_LENGTH_DIGITS_MAX {
            return Err(FrameError::BadBodyLength);
        }
        body_len = body_len * 10 + usize::from(b - b'0');
        digit_count += 1;
        i += 1;
    }
    if digit_count == 0 {
        return Err(FrameError::BadBodyLength);
    }
    let len = i + 1 + body_len + TRAILER_LEN;
    if len > max_len {
        return Err(FrameError::TooLong { len, max_len });
    }
    if buf.len() < len {
        return Ok(None);
    }
    if !is_trailer(&buf[len - TRAILER_LEN..len]) {
        return Err(FrameError::BadTrailer);
    }
    Ok(Some(len))
}

/// The offset of the next `8=FIX.4.4<SOH>` in `buf` after position 0, or of
/// a prefix of it that ends `buf` (the message may continue in the next
/// read), or `buf.len()`. Discarding `buf[..resync(buf)]` after a
/// [`FrameError`] always makes progress.
pub fn resync(buf: &[u8]) -> usize {
    let mut from = 1;
    while from < buf.len() {
        let Some(at) = buf[from..].iter().position(|&b| b == b'8') else { break };
        let start = from + at;
        let rest = &buf[start..];
        let n = rest.len().min(BEGIN_STRING.len());
        if rest[..n] == BEGIN_STRING[..n] {
            return start;
        }
        from = start + 1;
    }
    buf.len()
}

/// Whether `t` (7 bytes) is `10=<3 digits><SOH>`.
fn is_trailer(t: &[u8]) -> bool {
    t.len() == TRAILER_LEN && &t[..3] == b"10=" && t[3..6].iter().all(u8::is_ascii_digit) && t[6] == SOH
}

/// The CheckSum of `bytes`: their sum modulo 256.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b))
}

// ---------------------------------------------------------------------------
// Parsing

/// One parsed message: the frame and, in wire order, where each field's
/// value is in it (BeginString, BodyLength and CheckSum included).
///
/// Invariants (established by [`parse`]): the first three fields are 8, 9
/// and 35, the last is 10; BodyLength and CheckSum are right; every value is
/// non-empty; MsgType is printable ASCII; no header or trailer tag repeats.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    frame: Vec<u8>,
    fields: Vec<FieldAt>,
}

/// A field's tag and the range of its value in [`Message::frame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FieldAt {
    tag: u32,
    start: u32,
    end: u32,
}

impl Message {
    /// The value of the first field with `tag`, if it is there and UTF-8.
    pub fn get(&self, tag: u32) -> Option<&str> {
        std::str::from_utf8(self.get_bytes(tag)?).ok()
    }

    /// The raw value of the first field with `tag`.
    pub fn get_bytes(&self, tag: u32) -> Option<&[u8]> {
        let f = self.fields.iter().find(|f| f.tag == tag)?;
        Some(&self.frame[f.start as usize..f.end as usize])
    }

    /// The value of the first field with `tag` as a non-negative integer
    /// (digits only, no sign, no overflow).
    pub fn get_u64(&self, tag: u32) -> Option<u64> {
        parse_u64(self.get_bytes(tag)?)
    }

    /// MsgType (35).
    pub fn msg_type(&self) -> &str {
        // Invariant: parse checked that field 2 is 35 and is printable ASCII.
        let f = self.fields[2];
        std::str::from_utf8(&self.frame[f.start as usize..f.end as usize]).unwrap_or_default()
    }

    /// MsgSeqNum (34), if present and a number.
    pub fn seq_num(&self) -> Option<u64> {
        self.get_u64(34)
    }

    /// Whether PossDupFlag (43) is `Y`.
    pub fn poss_dup(&self) -> bool {
        self.get_bytes(43) == Some(b"Y")
    }

    /// Every field in wire order as (tag, value), BeginString (8),
    /// BodyLength (9) and CheckSum (10) included.
    pub fn fields(&self) -> impl Iterator<Item = (u32, &[u8])> + '_ {
        self.fields.iter().map(|f| (f.tag, &self.frame[f.start as usize..f.end as usize]))
    }

    /// The whole frame as received.
    pub fn as_bytes(&self) -> &[u8] {
        &self.frame
    }
}

impl fmt::Debug for Message {
    /// The frame with `|` for SOH.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text: String = self.frame.iter().map(|&b| if b == SOH { '|' } else { char::from(b) }).collect();
        f.debug_tuple("Message").field(&text).finish()
    }
}

/// Why [`parse`] refused a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Wrong CheckSum or BodyLength, 8/9/35 not the first three fields, or
    /// not `tag=value` fields. The spec: ignore the message (log it), do not
    /// advance the expected sequence number, do not answer.
    Garbled {
        /// What is wrong, for the log.
        reason: &'static str,
    },
    /// A readable frame with a session-level problem, to answer with a
    /// Reject (35=3) that consumes its sequence number.
    Invalid {
        /// The frame's MsgSeqNum (34), if it has a readable one.
        seq: Option<u64>,
        /// RefTagID (371): the tag at fault, if one is.
        ref_tag: Option<u32>,
        /// SessionRejectReason (373), see [`reject_reason`].
        reason_code: u32,
        /// Text (58).
        text: String,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Garbled { reason } => write!(f, "garbled message: {reason}"),
            ParseError::Invalid { seq, ref_tag, reason_code, text } => {
                write!(f, "invalid message")?;
                if let Some(seq) = seq {
                    write!(f, " {seq}")?;
                }
                write!(f, ": {text} (SessionRejectReason {reason_code}")?;
                if let Some(tag) = ref_tag {
                    write!(f, ", tag {tag}")?;
                }
                f.write_str(")")
            }
        }
    }
}

impl std::error::Error for ParseError {}

fn garbled(reason: &'static str) -> ParseError {
    ParseError::Garbled { reason }
}

/// Parses one frame, as [`frame_len`] cut it.
///
/// Checks, in order (the first failure decides): the frame starts with
/// `8=FIX.4.4<SOH>9=<digits><SOH>` and ends with `10=NNN<SOH>`; BodyLength
/// is exact; CheckSum is right; every field is `digits=value<SOH>` and 35 is
/// the third ([`ParseError::Garbled`] otherwise); then every tag is a number
/// from 1 up, every value non-empty, no tag repeats where it may not, MsgType
/// is printable ASCII ([`ParseError::Invalid`] otherwise, reporting the first
/// problem in wire order).
///
/// Repeats: a standard header or trailer tag may never repeat; a body tag
/// may not repeat before the first NumInGroup field of the message (after
/// one, repeats may be group members, which only the application's
/// dictionary can judge).
pub fn parse(frame: &[u8]) -> Result<Message, ParseError> {
    if frame.len() > u32::MAX as usize {
        return Err(garbled("longer than 4 GB"));
    }
    let Some(rest) = frame.strip_prefix(BEGIN_STRING) else {
        return Err(garbled("BeginString (8) is not the first field or not FIX.4.4"));
    };
    let Some(rest) = rest.strip_prefix(b"9=") else {
        return Err(garbled("BodyLength (9) is not the second field"));
    };
    let Some(digits_len) = rest.iter().position(|&b| b == SOH) else {
        return Err(garbled("BodyLength (9) is not terminated"));
    };
    let Some(body_len) = parse_u64(&rest[..digits_len]) else {
        return Err(garbled("BodyLength (9) is not a number"));
    };
    let body_start = BEGIN_STRING.len() + 2 + digits_len + 1;
    if frame.len() < body_start + TRAILER_LEN || !is_trailer(&frame[frame.len() - TRAILER_LEN..]) {
        return Err(garbled("CheckSum (10=NNN) is not the last field"));
    }
    let trailer_at = frame.len() - TRAILER_LEN;
    if body_len != (trailer_at - body_start) as u64 {
        return Err(garbled("wrong BodyLength (9)"));
    }
    let declared = parse_u64(&frame[trailer_at + 3..trailer_at + 6]).unwrap_or(u64::MAX);
    if declared != u64::from(checksum(&frame[..trailer_at])) {
        return Err(garbled("wrong CheckSum (10)"));
    }
    if body_start == trailer_at || frame[trailer_at - 1] != SOH {
        return Err(garbled("MsgType (35) is not the third field"));
    }

    let mut fields = Vec::with_capacity(16);
    fields.push(FieldAt { tag: 8, start: 2, end: (BEGIN_STRING.len() - 1) as u32 });
    fields.push(FieldAt {
        tag: 9,
        start: (BEGIN_STRING.len() + 2) as u32,
        end: (BEGIN_STRING.len() + 2 + digits_len) as u32,
    });
    // The first field-level problem: (RefTagID, SessionRejectReason, Text).
    let mut problem: Option<(Option<u32>, u32, &'static str)> = None;
    let mut note = |p: (Option<u32>, u32, &'static str)| {
        problem.get_or_insert(p);
    };
    let mut seen = TagSet::default();
    let mut high_seen: Option<HashSet<u32>> = None;
    seen.insert(8);
    seen.insert(9);
    let mut in_groups = false;
    // A Length field just read: (the Data tag it announces, the length).
    let mut data_len: Option<(u32, usize)> = None;
    let mut pos = body_start;
    while pos < trailer_at {
        let Some(eq) = frame[pos..trailer_at].iter().position(|&b| b == b'=' || b == SOH) else {
            return Err(garbled("a field is not tag=value"));
        };
        let eq = pos + eq;
        if frame[eq] != b'=' || eq == pos {
            return Err(garbled("a field is not tag=value"));
        }
        let tag = match parse_u64(&frame[pos..eq]) {
            Some(t @ 1..=0xFFFF_FFFF) => t as u32,
            _ => {
                note((None, reject_reason::INVALID_TAG_NUMBER, "Invalid tag number"));
                0
            }
        };
        let start = eq + 1;
        let end = match data_len.take() {
            Some((data_tag, len)) if data_tag == tag => {
                let end = start.saturating_add(len);
                if end >= trailer_at || frame[end] != SOH {
                    return Err(garbled("a Data field is not as long as its Length field says"));
                }
                end
            }
            _ => match frame[start..trailer_at].iter().position(|&b| b == SOH) {
                Some(n) => start + n,
                None => return Err(garbled("a field is not tag=value")),
            },
        };
        if fields.len() == 2 && tag != 35 {
            return Err(garbled("MsgType (35) is not the third field"));
        }
        let value = &frame[start..end];
        if value.is_empty() {
            note((Some(tag), reject_reason::TAG_WITHOUT_VALUE, "Tag specified without a value"));
        }
        if let Some(data_tag) = data_tag_of(tag) {
            match parse_u64(value) {
                Some(len) => data_len = Some((data_tag, len.min(usize::MAX as u64) as usize)),
                None if !value.is_empty() => {
                    note((Some(tag), reject_reason::INCORRECT_DATA_FORMAT, "Incorrect data format for value"))
                }
                None => {}
            }
        }
        if tag != 0 {
            // Header and trailer tags are all below TagSet::DIRECT; a larger
            // tag only matters before the first group.
            let repeated = if tag < TagSet::DIRECT {
                seen.insert(tag)
            } else {
                !in_groups && !high_seen.get_or_insert_with(HashSet::new).insert(tag)
            };
            if repeated && (has_tag(&HEADER_AND_TRAILER_TAGS, tag) || !in_groups) {
                note((Some(tag), reject_reason::TAG_APPEARS_MORE_THAN_ONCE, "Tag appears more than once"));
            }
            in_groups |= has_tag(&NUM_IN_GROUP_TAGS, tag);
        }
        if tag == 35 && fields.len() == 2 && !value.is_empty() && !value.iter().all(|b| b.is_ascii_graphic()) {
            note((Some(35), reject_reason::INVALID_MSG_TYPE, "Invalid MsgType"));
        }
        fields.push(FieldAt { tag, start: start as u32, end: end as u32 });
        pos = end + 1;
    }
    fields.push(FieldAt { tag: 10, start: (trailer_at + 3) as u32, end: (trailer_at + 6) as u32 });
    let message = Message { frame: frame.to_vec(), fields };
    match problem {
        None => Ok(message),
        Some((ref_tag, reason_code, text)) => {
            Err(ParseError::Invalid { seq: message.seq_num(), ref_tag, reason_code, text: text.to_owned() })
        }
    }
}

/// The value of an all-digit slice: `None` if empty, not digits, or over
/// `u64::MAX`.
pub(crate) fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() { acc.checked_mul(10)?.checked_add(u64::from(b - b'0')) } else { None }
    })
}

/// Tags below [`TagSet::DIRECT`] as a bitset (a field of them is checked for
/// repeats in O(1) without allocating; larger tags are rare and go to a
/// `HashSet`).
#[derive(Default)]
struct TagSet([u64; (TagSet::DIRECT / 64) as usize]);

impl TagSet {
    const DIRECT: u32 = 1024;

    /// Adds `tag` (< DIRECT); whether it was already there.
    fn insert(&mut self, tag: u32) -> bool {
        let (word, bit) = ((tag / 64) as usize, 1u64 << (tag % 64));
        let was = self.0[word] & bit != 0;
        self.0[word] |= bit;
        was
    }
}

/// A set of tags below 1024, built at compile time.
type TagBits = [u64; 16];

const fn tag_bits(tags: &[u32]) -> TagBits {
    let mut bits = [0u64; 16];
    let mut i = 0;
    while i < tags.len() {
        assert!(tags[i] < 1024, "a TagBits tag is below 1024");
        bits[(tags[i] / 64) as usize] |= 1 << (tags[i] % 64);
        i += 1;
    }
    bits
}

fn has_tag(bits: &TagBits, tag: u32) -> bool {
    tag < 1024 && bits[(tag / 64) as usize] & (1 << (tag % 64)) != 0
}

/// The FIX 4.4 standard header and trailer tags (NoHops' members, 628-630,
/// are a group and not listed).
const HEADER_AND_TRAILER_TAGS: TagBits = tag_bits(&[
    8, 9, 35, 49, 56, 115, 128, 90, 91, 34, 50, 142, 57, 143, 116, 144, 129, 145, 43, 97, 52, 122, 212, 213, 347, 369,
    627, 93, 89, 10,
]);

/// The FIX 4.4 tags that count a repeating group: those of type NUMINGROUP,
/// plus NoAffectedOrders (534), NoDates (580) and NoLegSecurityAltID (604),
/// typed otherwise but used as group counters.
const NUM_IN_GROUP_TAGS: TagBits = tag_bits(&[
    33, 73, 78, 85, 124, 136, 146, 199, 215, 232, 267, 268, 295, 296, 382, 384, 386, 398, 420, 428, 453, 454, 457, 473,
    510, 518, 534, 539, 552, 555, 558, 576, 580, 604, 627, 670, 683, 702, 711, 735, 753, 756, 768, 778, 781, 801, 802,
    804, 806, 816, 862, 864, 870, 887, 897, 936, 938, 948, 952,
]);

/// For a FIX 4.4 Length tag, the Data tag whose length it gives.
fn data_tag_of(length_tag: u32) -> Option<u32> {
    Some(match length_tag {
        90 => 91,
        93 => 89,
        95 => 96,
        212 => 213,
        348 => 349,
        350 => 351,
        352 => 353,
        354 => 355,
        356 => 357,
        358 => 359,
        360 => 361,
        362 => 363,
        364 => 365,
        445 => 446,
        618 => 619,
        621 => 622,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// Encoding

/// The standard header of an outgoing message (besides BeginString,
/// BodyLength and MsgType).
#[derive(Clone, Copy, Debug)]
pub struct Header<'a> {
    /// SenderCompID (49): ours.
    pub sender: &'a str,
    /// TargetCompID (56): the peer's.
    pub target: &'a str,
    /// MsgSeqNum (34).
    pub seq: u64,
    /// SendingTime (52).
    pub sending_time: SystemTime,
    /// For a resend: PossDupFlag (43=Y) with this OrigSendingTime (122).
    pub poss_dup: Option<SystemTime>,
}

/// Appends one message to `out`:
/// `8=FIX.4.4|9=…|35=msg_type|49=…|56=…|34=…|52=…|[43=Y|122=…|]<body>10=NNN|`
/// with BodyLength and CheckSum computed. `body` is pre-encoded
/// `tag=value<SOH>` fields (see [`Body`]), possibly empty.
///
/// Allocation-free when `out` has room; one pass over the bytes for the
/// CheckSum.
pub fn encode(out: &mut Vec<u8>, msg_type: &str, header: &Header<'_>, body: &[u8]) {
    debug_assert!(is_value(msg_type.as_bytes()) && is_value(header.sender.as_bytes()));
    debug_assert!(is_value(header.target.as_bytes()));
    debug_assert!(body.is_empty() || body.last() == Some(&SOH), "a body is whole tag=value<SOH> fields");
    let mut seq_digits = [0u8; 20];
    let seq = u64_digits(header.seq, &mut seq_digits);
    // Each header field is "TT=" + value + SOH; 43=Y<SOH> is 5, 122=…<SOH> is 4 + 21 + 1.
    let body_len = (4 + msg_type.len())
        + (4 + header.sender.len())
        + (4 + header.target.len())
        + (4 + seq.len())
        + (4 + TIMESTAMP_LEN)
        + if header.poss_dup.is_some() { 5 + 5 + TIMESTAMP_LEN } else { 0 }
        + body.len();
    let mut len_digits = [0u8; 20];
    let len_text = u64_digits(body_len as u64, &mut len_digits);
    let start = out.len();
    out.reserve(BEGIN_STRING.len() + 3 + len_text.len() + body_len + TRAILER_LEN);
    out.extend_from_slice(BEGIN_STRING);
    out.extend_from_slice(b"9=");
    out.extend_from_slice(len_text);
    out.push(SOH);
    let body_start = out.len();
    put_field(out, b"35=", msg_type.as_bytes());
    put_field(out, b"49=", header.sender.as_bytes());
    put_field(out, b"56=", header.target.as_bytes());
    put_field(out, b"34=", seq);
    put_field(out, b"52=", &format_utc(header.sending_time));
    if let Some(orig) = header.poss_dup {
        out.extend_from_slice(b"43=Y\x01");
        put_field(out, b"122=", &format_utc(orig));
    }
    out.extend_from_slice(body);
    debug_assert_eq!(out.len() - body_start, body_len, "Invariant: BodyLength counts what was written");
    let sum = checksum(&out[start..]);
    out.extend_from_slice(&[b'1', b'0', b'=', b'0' + sum / 100, b'0' + sum / 10 % 10, b'0' + sum % 10, SOH]);
}

/// Splits a frame that [`encode`] wrote (a stored message, for a resend)
/// into its MsgType, its SendingTime's value and its body (the bytes after
/// the header fields `encode` writes, before the trailer). `None` if it is
/// not such a frame.
pub(crate) fn split_encoded(frame: &[u8]) -> Option<(&str, &[u8], &[u8])> {
    let rest = frame.strip_prefix(BEGIN_STRING)?.strip_prefix(b"9=")?;
    let mut pos = BEGIN_STRING.len() + 2 + rest.iter().position(|&b| b == SOH)? + 1;
    let trailer_at = frame.len().checked_sub(TRAILER_LEN)?;
    let (mut msg_type, mut sending_time) = (None, None);
    while pos < trailer_at {
        let end = pos + frame[pos..trailer_at].iter().position(|&b| b == SOH)?;
        let eq = pos + frame[pos..end].iter().position(|&b| b == b'=')?;
        let value = &frame[eq + 1..end];
        match &frame[pos..eq] {
            b"35" => msg_type = Some(std::str::from_utf8(value).ok()?),
            b"52" => sending_time = Some(value),
            b"49" | b"56" | b"34" | b"43" | b"122" => {}
            _ => break,
        }
        pos = end + 1;
    }
    Some((msg_type?, sending_time?, &frame[pos.min(trailer_at)..trailer_at]))
}

/// `prefix` (`"TT="`), `value`, SOH.
#[inline]
fn put_field(out: &mut Vec<u8>, prefix: &[u8], value: &[u8]) {
    out.extend_from_slice(prefix);
    out.extend_from_slice(value);
    out.push(SOH);
}

/// `v` in decimal, written at the end of `buf`; the digits' slice.
#[inline]
fn u64_digits(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

/// Whether `v` can be a field value: non-empty, no SOH.
fn is_value(v: &[u8]) -> bool {
    !v.is_empty() && !v.contains(&SOH)
}

/// A message body being built: `tag=value<SOH>` fields appended to one
/// buffer, to hand to [`encode`] or [`crate::Session::send_app`]. Reuse one
/// ([`Body::clear`]) to build bodies without allocating.
///
/// Values must be non-empty and contain no SOH (checked in debug builds):
/// FIX has no escaping; use a Length/Data pair for binary data.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Body(Vec<u8>);

impl Body {
    /// An empty body.
    pub fn new() -> Body {
        Body(Vec::new())
    }

    /// An empty body with room for `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Body {
        Body(Vec::with_capacity(bytes))
    }

    /// Appends `tag=value<SOH>`, the value as `Display` writes it.
    pub fn field(&mut self, tag: u32, value: impl fmt::Display) -> &mut Body {
        self.tag(tag);
        let start = self.0.len();
        // Writing to a Vec cannot fail.
        let _ = write!(self.0, "{value}");
        debug_assert!(is_value(&self.0[start..]), "tag {tag}: a value is non-empty, without SOH");
        self.0.push(SOH);
        self
    }

    /// Appends `tag=value<SOH>`.
    pub fn field_str(&mut self, tag: u32, value: &str) -> &mut Body {
        self.field_bytes(tag, value.as_bytes())
    }

    /// Appends `tag=value<SOH>` with raw bytes (for a Data field, after its
    /// Length field, the value may contain SOH).
    pub fn field_bytes(&mut self, tag: u32, value: &[u8]) -> &mut Body {
        debug_assert!(!value.is_empty(), "tag {tag}: a value is non-empty");
        self.tag(tag);
        self.0.extend_from_slice(value);
        self.0.push(SOH);
        self
    }

    /// Appends `tag=value<SOH>` for an unsigned integer (no formatting
    /// machinery).
    pub fn field_u64(&mut self, tag: u32, value: u64) -> &mut Body {
        let mut buf = [0u8; 20];
        let digits = u64_digits(value, &mut buf);
        self.tag(tag);
        self.0.extend_from_slice(digits);
        self.0.push(SOH);
        self
    }

    /// Appends `tag=value<SOH>` for a signed integer.
    pub fn field_i64(&mut self, tag: u32, value: i64) -> &mut Body {
        let mut buf = [0u8; 20];
        let digits = u64_digits(value.unsigned_abs(), &mut buf);
        self.tag(tag);
        if value < 0 {
            self.0.push(b'-');
        }
        self.0.extend_from_slice(digits);
        self.0.push(SOH);
        self
    }

    /// Appends `tag=YYYYMMDD-HH:MM:SS.sss<SOH>` (a UTCTimestamp).
    pub fn field_time(&mut self, tag: u32, t: SystemTime) -> &mut Body {
        self.field_bytes(tag, &format_utc(t))
    }

    /// Removes every field, keeping the buffer.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// The encoded fields.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no field.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The buffer.
    pub fn into_inner(self) -> Vec<u8> {
        self.0
    }

    fn tag(&mut self, tag: u32) {
        let mut buf = [0u8; 20];
        self.0.extend_from_slice(u64_digits(u64::from(tag), &mut buf));
        self.0.push(b'=');
    }
}

impl AsRef<[u8]> for Body {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Body {
    /// The fields with `|` for SOH.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text: String = self.0.iter().map(|&b| if b == SOH { '|' } else { char::from(b) }).collect();
        f.debug_tuple("Body").field(&text).finish()
    }
}

#[cfg(test)]
mod tests;
