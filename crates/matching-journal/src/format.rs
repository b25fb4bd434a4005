//! The bytes on disk: segment headers, record headers, command payloads,
//! snapshot headers. Every layout is a `#[repr(C)]` struct whose size and
//! field offsets are checked at compile time; the bytes are written and read
//! little-endian at those offsets. `docs/JOURNAL.md` describes the same.

use std::mem::{offset_of, size_of};

use matching_core::{Action, CID_LEN_MAX, Cid, Command, NewOrder, OrderType, Seq, Side, Stp, Symbol, Tif};

/// Opens every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"MXJOURNL";
/// Opens every record: what a scan for records after damage looks for.
pub const RECORD_MAGIC: u32 = 0x4552_584D; // "MXRE" little-endian
/// Opens every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"MXSNAPSH";
/// Format version of segments, records and snapshots.
pub const VERSION: u32 = 1;
/// Records start on this alignment (the payload is padded with zeros).
pub const RECORD_ALIGN: usize = 8;
/// Longest record payload. Commands are far shorter; anything longer is damage.
pub const PAYLOAD_MAX: usize = 4096;

/// The first 32 bytes of a segment file.
#[repr(C)]
pub struct SegmentHeader {
    pub magic: [u8; 8],
    pub version: u32,
    /// The chain value the segment's first record continues from: the last
    /// record's `chain_crc` in the previous segment (0 for the first segment).
    pub chain_in: u32,
    /// The `seq` of the segment's first record.
    pub first_seq: u64,
    pub reserved: u32,
    /// CRC32C of the 28 bytes before it.
    pub header_crc: u32,
}

const _: () = assert!(size_of::<SegmentHeader>() == 32);
const _: () = assert!(offset_of!(SegmentHeader, version) == 8);
const _: () = assert!(offset_of!(SegmentHeader, chain_in) == 12);
const _: () = assert!(offset_of!(SegmentHeader, first_seq) == 16);
const _: () = assert!(offset_of!(SegmentHeader, header_crc) == 28);

/// The 32 bytes before every record's payload.
#[repr(C)]
pub struct RecordHeader {
    pub magic: u32,
    /// Payload bytes (the record then pads to [`RECORD_ALIGN`]).
    pub len: u32,
    pub seq: u64,
    /// [`KIND_COMMAND`] or [`KIND_EXTERNAL`].
    pub kind: u8,
    pub reserved: [u8; 3],
    /// CRC32C of the header's first 20 bytes and the payload.
    pub body_crc: u32,
    /// CRC32C of the previous record's `chain_crc` and this `body_crc` (8
    /// bytes, little-endian): a stale or misplaced block breaks the chain.
    pub chain_crc: u32,
    pub reserved2: u32,
}

const _: () = assert!(size_of::<RecordHeader>() == 32);
const _: () = assert!(offset_of!(RecordHeader, len) == 4);
const _: () = assert!(offset_of!(RecordHeader, seq) == 8);
const _: () = assert!(offset_of!(RecordHeader, kind) == 16);
const _: () = assert!(offset_of!(RecordHeader, body_crc) == 20);
const _: () = assert!(offset_of!(RecordHeader, chain_crc) == 24);

/// The first 48 bytes of a snapshot file; the encoded state follows.
#[repr(C)]
pub struct SnapshotHeader {
    pub magic: [u8; 8],
    pub version: u32,
    /// Bytes of the annex after the body: what the engine's embedder keeps
    /// with the state (the server's client order ids). 0 for none.
    pub annex_len: u32,
    /// Every command up to and including this `seq` is in the state.
    pub seq: u64,
    /// `Exchange::state_hash` of the state.
    pub state_hash: u64,
    pub body_len: u64,
    /// CRC32C of the body.
    pub body_crc: u32,
    /// CRC32C of the 44 bytes before it.
    pub header_crc: u32,
}

const _: () = assert!(size_of::<SnapshotHeader>() == 48);
const _: () = assert!(offset_of!(SnapshotHeader, seq) == 16);
const _: () = assert!(offset_of!(SnapshotHeader, state_hash) == 24);
const _: () = assert!(offset_of!(SnapshotHeader, body_len) == 32);
const _: () = assert!(offset_of!(SnapshotHeader, body_crc) == 40);
const _: () = assert!(offset_of!(SnapshotHeader, header_crc) == 44);

pub const SEGMENT_HEADER_LEN: usize = size_of::<SegmentHeader>();
pub const RECORD_HEADER_LEN: usize = size_of::<RecordHeader>();
pub const SNAPSHOT_HEADER_LEN: usize = size_of::<SnapshotHeader>();

/// A sequenced command.
pub const KIND_COMMAND: u8 = 1;
/// A `seq` a front end used for something that is not a command (a line it
/// rejected): nothing to apply, but the sequence stays gap-free.
pub const KIND_EXTERNAL: u8 = 2;
/// A synced-through marker: its `seq` field says every record up to that
/// `seq` had been made durable (`fdatasync` returned) before this record was
/// written. It takes no `seq` of its own and has no payload; it is chained
/// like any record. Recovery allows a hole (a power cut that persisted a
/// later page of a group and lost an earlier one) only beyond the last
/// marker, and refuses damage a marker vouches for.
pub const KIND_SYNCED: u8 = 3;

fn put_u32(out: &mut [u8], at: usize, value: u32) {
    out[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut [u8], at: usize, value: u64) {
    out[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

pub(crate) fn get_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

pub(crate) fn get_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// The chain value after a record whose body checks to `body_crc`.
pub fn chain(previous: u32, body_crc: u32) -> u32 {
    let mut bytes = [0u8; 8];
    bytes[..4].copy_from_slice(&previous.to_le_bytes());
    bytes[4..].copy_from_slice(&body_crc.to_le_bytes());
    crc32c::crc32c(&bytes)
}

pub fn segment_header(first_seq: Seq, chain_in: u32) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    put_u32(&mut h, offset_of!(SegmentHeader, version), VERSION);
    put_u32(&mut h, offset_of!(SegmentHeader, chain_in), chain_in);
    put_u64(&mut h, offset_of!(SegmentHeader, first_seq), first_seq);
    let crc = crc32c::crc32c(&h[..offset_of!(SegmentHeader, header_crc)]);
    put_u32(&mut h, offset_of!(SegmentHeader, header_crc), crc);
    h
}

/// A segment header's `(first_seq, chain_in)`, or why it is not one.
pub fn parse_segment_header(bytes: &[u8]) -> Result<(Seq, u32), &'static str> {
    if bytes.len() < SEGMENT_HEADER_LEN {
        return Err("segment header is truncated");
    }
    if bytes[0..8] != SEGMENT_MAGIC {
        return Err("not a journal segment (bad magic)");
    }
    let at = offset_of!(SegmentHeader, header_crc);
    if crc32c::crc32c(&bytes[..at]) != get_u32(bytes, at) {
        return Err("segment header checksum mismatch");
    }
    if get_u32(bytes, offset_of!(SegmentHeader, version)) != VERSION {
        return Err("unsupported segment version");
    }
    Ok((get_u64(bytes, offset_of!(SegmentHeader, first_seq)), get_u32(bytes, offset_of!(SegmentHeader, chain_in))))
}

/// Bytes a record with `payload_len` payload bytes takes, padding included.
pub fn record_len(payload_len: usize) -> usize {
    (RECORD_HEADER_LEN + payload_len).div_ceil(RECORD_ALIGN) * RECORD_ALIGN
}

/// Appends a record to `out`; returns its `chain_crc`.
pub fn append_record(out: &mut Vec<u8>, seq: Seq, kind: u8, payload: &[u8], chain_in: u32) -> u32 {
    debug_assert!(payload.len() <= PAYLOAD_MAX);
    let start = out.len();
    out.resize(start + record_len(payload.len()), 0);
    let record = &mut out[start..];
    put_u32(record, 0, RECORD_MAGIC);
    put_u32(record, offset_of!(RecordHeader, len), payload.len() as u32);
    put_u64(record, offset_of!(RecordHeader, seq), seq);
    record[offset_of!(RecordHeader, kind)] = kind;
    record[RECORD_HEADER_LEN..RECORD_HEADER_LEN + payload.len()].copy_from_slice(payload);
    let body_crc = body_crc(record, payload.len());
    let chain_crc = chain(chain_in, body_crc);
    put_u32(record, offset_of!(RecordHeader, body_crc), body_crc);
    put_u32(record, offset_of!(RecordHeader, chain_crc), chain_crc);
    chain_crc
}

fn body_crc(record: &[u8], payload_len: usize) -> u32 {
    let head = crc32c::crc32c(&record[..offset_of!(RecordHeader, body_crc)]);
    crc32c::crc32c_append(head, &record[RECORD_HEADER_LEN..RECORD_HEADER_LEN + payload_len])
}

/// A record read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub seq: Seq,
    pub kind: u8,
    pub payload: &'a [u8],
    pub body_crc: u32,
    pub chain_crc: u32,
    /// Bytes the record takes, padding included.
    pub len: usize,
}

/// The record at the start of `bytes`, if it is whole and its body checks.
/// (Whether it continues the chain is the caller's to check.)
pub fn parse_record(bytes: &[u8]) -> Result<RecordView<'_>, &'static str> {
    if bytes.len() < RECORD_HEADER_LEN {
        return Err("record header is truncated");
    }
    if get_u32(bytes, 0) != RECORD_MAGIC {
        return Err("no record here (bad magic)");
    }
    let payload_len = get_u32(bytes, offset_of!(RecordHeader, len)) as usize;
    if payload_len > PAYLOAD_MAX {
        return Err("record length out of range");
    }
    let len = record_len(payload_len);
    if bytes.len() < len {
        return Err("record is truncated");
    }
    let stored = get_u32(bytes, offset_of!(RecordHeader, body_crc));
    if body_crc(bytes, payload_len) != stored {
        return Err("record checksum mismatch");
    }
    // Bytes outside the checksum must be zero, so that no bit goes unchecked.
    if get_u32(bytes, offset_of!(RecordHeader, reserved2)) != 0
        || bytes[RECORD_HEADER_LEN + payload_len..len].iter().any(|&b| b != 0)
    {
        return Err("record padding is not zero");
    }
    Ok(RecordView {
        seq: get_u64(bytes, offset_of!(RecordHeader, seq)),
        kind: bytes[offset_of!(RecordHeader, kind)],
        payload: &bytes[RECORD_HEADER_LEN..RECORD_HEADER_LEN + payload_len],
        body_crc: stored,
        chain_crc: get_u32(bytes, offset_of!(RecordHeader, chain_crc)),
        len,
    })
}

/// The records of a segment file, in order: `(offset, record)` for each
/// whole record after the header, then `(offset, Err(reason))` once at the
/// first place that is not one (if the file does not end cleanly). Checks
/// each record's body, not the chain or the `seq`s (recovery does that).
pub fn records(segment: &[u8]) -> impl Iterator<Item = (usize, Result<RecordView<'_>, &'static str>)> {
    let mut offset = SEGMENT_HEADER_LEN.min(segment.len());
    let mut done = false;
    std::iter::from_fn(move || {
        if done || offset >= segment.len() {
            return None;
        }
        let at = offset;
        let parsed = parse_record(&segment[at..]);
        match &parsed {
            Ok(record) => offset += record.len,
            Err(_) => done = true,
        }
        Some((at, parsed))
    })
}

pub fn snapshot_header(seq: Seq, state_hash: u64, body: &[u8]) -> [u8; SNAPSHOT_HEADER_LEN] {
    snapshot_header_with(seq, state_hash, body, &[])
}

/// The header of a snapshot whose body is followed by `annex` (at most
/// 4 GiB - 1). `body_crc` covers both.
pub fn snapshot_header_with(seq: Seq, state_hash: u64, body: &[u8], annex: &[u8]) -> [u8; SNAPSHOT_HEADER_LEN] {
    let mut h = [0u8; SNAPSHOT_HEADER_LEN];
    h[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    put_u32(&mut h, offset_of!(SnapshotHeader, version), VERSION);
    put_u32(&mut h, offset_of!(SnapshotHeader, annex_len), annex.len() as u32);
    put_u64(&mut h, offset_of!(SnapshotHeader, seq), seq);
    put_u64(&mut h, offset_of!(SnapshotHeader, state_hash), state_hash);
    put_u64(&mut h, offset_of!(SnapshotHeader, body_len), body.len() as u64);
    put_u32(&mut h, offset_of!(SnapshotHeader, body_crc), crc32c::crc32c_append(crc32c::crc32c(body), annex));
    let crc = crc32c::crc32c(&h[..offset_of!(SnapshotHeader, header_crc)]);
    put_u32(&mut h, offset_of!(SnapshotHeader, header_crc), crc);
    h
}

/// A snapshot file's `(seq, state_hash, body)`, or why it is not a whole one.
pub fn parse_snapshot(bytes: &[u8]) -> Result<(Seq, u64, &[u8]), &'static str> {
    parse_snapshot_with(bytes).map(|(seq, hash, body, _)| (seq, hash, body))
}

/// A snapshot file read back: `(seq, state_hash, body, annex)`.
pub type SnapshotParts<'a> = (Seq, u64, &'a [u8], &'a [u8]);

/// A snapshot file's parts, or why it is not a whole one.
pub fn parse_snapshot_with(bytes: &[u8]) -> Result<SnapshotParts<'_>, &'static str> {
    if bytes.len() < SNAPSHOT_HEADER_LEN {
        return Err("snapshot header is truncated");
    }
    if bytes[0..8] != SNAPSHOT_MAGIC {
        return Err("not a snapshot (bad magic)");
    }
    let at = offset_of!(SnapshotHeader, header_crc);
    if crc32c::crc32c(&bytes[..at]) != get_u32(bytes, at) {
        return Err("snapshot header checksum mismatch");
    }
    if get_u32(bytes, offset_of!(SnapshotHeader, version)) != VERSION {
        return Err("unsupported snapshot version");
    }
    let body_len = get_u64(bytes, offset_of!(SnapshotHeader, body_len));
    let annex_len = get_u32(bytes, offset_of!(SnapshotHeader, annex_len)) as u64;
    let rest = bytes
        .get(SNAPSHOT_HEADER_LEN..)
        .filter(|b| Some(b.len() as u64) == body_len.checked_add(annex_len))
        .ok_or("snapshot body is truncated")?;
    if crc32c::crc32c(rest) != get_u32(bytes, offset_of!(SnapshotHeader, body_crc)) {
        return Err("snapshot body checksum mismatch");
    }
    let (body, annex) = rest.split_at(body_len as usize);
    let seq = get_u64(bytes, offset_of!(SnapshotHeader, seq));
    Ok((seq, get_u64(bytes, offset_of!(SnapshotHeader, state_hash)), body, annex))
}

// ----- command payloads -----

const ACTION_NEW: u8 = 1;
const ACTION_CANCEL: u8 = 2;
const ACTION_MODIFY: u8 = 3;
const ACTION_MASS_CANCEL: u8 = 4;
const ACTION_HALT: u8 = 5;
const ACTION_RESUME: u8 = 6;
/// Not an action: a new order's client order id, then the new order.
const CLIENT_ORDER_ID: u8 = 7;

/// A symbol as commands carry it: its length, then its bytes zero-padded to 32.
fn put_symbol(out: &mut Vec<u8>, symbol: &Symbol) {
    let name = symbol.as_bytes();
    out.push(name.len() as u8);
    let mut padded = [0u8; 32];
    padded[..name.len()].copy_from_slice(name);
    out.extend_from_slice(&padded);
}

/// Longest command payload (a new order with a client order id).
pub const COMMAND_PAYLOAD_MAX: usize = 8 + (1 + 1 + CID_LEN_MAX) + 1 + 8 + 8 + 1 + 32 + 1 + 1 + 1 + 8 + 8 + 1 + 1 + 1;

/// Appends a command's payload (its `seq` is in the record header).
pub fn encode_command(out: &mut Vec<u8>, command: &Command) {
    encode_command_with(out, command, None);
}

/// Appends a command's payload, with the client order id of a new order
/// (`cid` is ignored on any other command).
pub fn encode_command_with(out: &mut Vec<u8>, command: &Command, cid: Option<Cid>) {
    out.extend_from_slice(&command.timestamp_ns.to_le_bytes());
    if let (Action::New(_), Some(cid)) = (&command.action, cid) {
        let (len, padded) = cid.padded();
        out.push(CLIENT_ORDER_ID);
        out.push(len);
        out.extend_from_slice(&padded);
    }
    match command.action {
        Action::New(o) => {
            out.push(ACTION_NEW);
            out.extend_from_slice(&o.user.to_le_bytes());
            out.extend_from_slice(&o.order_id.to_le_bytes());
            put_symbol(out, &o.symbol);
            out.push(match o.side {
                Side::Buy => 0,
                Side::Sell => 1,
            });
            out.push(match o.order_type {
                OrderType::Limit => 0,
                OrderType::Market => 1,
            });
            out.push(o.price.is_some() as u8);
            out.extend_from_slice(&o.price.unwrap_or(0).to_le_bytes());
            out.extend_from_slice(&o.qty.to_le_bytes());
            out.push(match o.tif {
                Tif::Gtc => 0,
                Tif::Ioc => 1,
                Tif::Fok => 2,
            });
            out.push(o.post_only as u8);
            out.push(match o.stp {
                Stp::None => 0,
                Stp::CancelTaker => 1,
                Stp::CancelMaker => 2,
                Stp::CancelBoth => 3,
            });
        }
        Action::Cancel { user, order_id } => {
            out.push(ACTION_CANCEL);
            out.extend_from_slice(&user.to_le_bytes());
            out.extend_from_slice(&order_id.to_le_bytes());
        }
        Action::Modify { user, order_id, price, qty } => {
            out.push(ACTION_MODIFY);
            out.extend_from_slice(&user.to_le_bytes());
            out.extend_from_slice(&order_id.to_le_bytes());
            out.push(price.is_some() as u8);
            out.extend_from_slice(&price.unwrap_or(0).to_le_bytes());
            out.push(qty.is_some() as u8);
            out.extend_from_slice(&qty.unwrap_or(0).to_le_bytes());
        }
        Action::MassCancel { user, symbol, side } => {
            out.push(ACTION_MASS_CANCEL);
            out.extend_from_slice(&user.to_le_bytes());
            out.push(symbol.is_some() as u8);
            match symbol {
                Some(symbol) => put_symbol(out, &symbol),
                None => out.extend_from_slice(&[0u8; 33]),
            }
            out.push(match side {
                Some(Side::Buy) => 0,
                Some(Side::Sell) => 1,
                None => 2,
            });
        }
        Action::Halt { symbol } => {
            out.push(ACTION_HALT);
            put_symbol(out, &symbol);
        }
        Action::Resume { symbol } => {
            out.push(ACTION_RESUME);
            put_symbol(out, &symbol);
        }
    }
}

/// Reads a payload written by [`encode_command`]. `None` for bytes that
/// are not one (a checksum only proves the bytes are what was written).
pub fn decode_command(seq: Seq, payload: &[u8]) -> Option<Command> {
    decode_command_with(seq, payload).map(|(command, _)| command)
}

/// Reads a payload written by [`encode_command_with`]: the command and its
/// client order id, if it has one.
pub fn decode_command_with(seq: Seq, payload: &[u8]) -> Option<(Command, Option<Cid>)> {
    let mut r = Cursor { bytes: payload, at: 0 };
    let timestamp_ns = r.u64()?;
    let mut tag = r.u8()?;
    let mut cid = None;
    if tag == CLIENT_ORDER_ID {
        let len = r.u8()?;
        // The padding is zero, like every byte the format fixes.
        cid = Some(Cid::from_padded(len, r.take(CID_LEN_MAX)?.try_into().ok()?)?);
        tag = r.u8()?;
        if tag != ACTION_NEW {
            return None;
        }
    }
    let action = match tag {
        ACTION_NEW => {
            let user = r.u64()?;
            let order_id = r.u64()?;
            let symbol = r.symbol()?;
            let side = match r.u8()? {
                0 => Side::Buy,
                1 => Side::Sell,
                _ => return None,
            };
            let order_type = match r.u8()? {
                0 => OrderType::Limit,
                1 => OrderType::Market,
                _ => return None,
            };
            let has_price = r.flag()?;
            let price = r.u64()?;
            let qty = r.u64()?;
            let tif = match r.u8()? {
                0 => Tif::Gtc,
                1 => Tif::Ioc,
                2 => Tif::Fok,
                _ => return None,
            };
            let post_only = r.flag()?;
            let stp = match r.u8()? {
                0 => Stp::None,
                1 => Stp::CancelTaker,
                2 => Stp::CancelMaker,
                3 => Stp::CancelBoth,
                _ => return None,
            };
            let price = has_price.then_some(price);
            Action::New(NewOrder { order_id, user, symbol, side, order_type, price, qty, tif, post_only, stp })
        }
        ACTION_CANCEL => Action::Cancel { user: r.u64()?, order_id: r.u64()? },
        ACTION_MODIFY => {
            let user = r.u64()?;
            let order_id = r.u64()?;
            let has_price = r.flag()?;
            let price = r.u64()?;
            let has_qty = r.flag()?;
            let qty = r.u64()?;
            Action::Modify { user, order_id, price: has_price.then_some(price), qty: has_qty.then_some(qty) }
        }
        ACTION_MASS_CANCEL => {
            let user = r.u64()?;
            let symbol = match r.flag()? {
                true => Some(r.symbol()?),
                false => (r.take(33)? == [0u8; 33]).then_some(None)?,
            };
            let side = match r.u8()? {
                0 => Some(Side::Buy),
                1 => Some(Side::Sell),
                2 => None,
                _ => return None,
            };
            Action::MassCancel { user, symbol, side }
        }
        ACTION_HALT => Action::Halt { symbol: r.symbol()? },
        ACTION_RESUME => Action::Resume { symbol: r.symbol()? },
        _ => return None,
    };
    (r.at == payload.len()).then_some((Command { seq, timestamp_ns, action }, cid))
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn flag(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    fn u64(&mut self) -> Option<u64> {
        Some(get_u64(self.take(8)?, 0))
    }

    /// A symbol written by `put_symbol`; its padding must be zero.
    fn symbol(&mut self) -> Option<Symbol> {
        let len = self.u8()? as usize;
        let padded = self.take(32)?;
        if padded.get(len..)?.iter().any(|&b| b != 0) {
            return None;
        }
        Symbol::from_bytes(&padded[..len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commands() -> Vec<Command> {
        let x = Symbol::new("BTC-USD").unwrap();
        vec![
            Command { seq: 1, timestamp_ns: 7, action: Action::New(NewOrder::limit(1, 2, x, Side::Sell, 100, 3)) },
            Command {
                seq: 2,
                timestamp_ns: u64::MAX,
                action: Action::New(
                    NewOrder::market(2, 9, x, Side::Buy, 5).with_tif(Tif::Fok).with_stp(Stp::CancelBoth),
                ),
            },
            Command {
                seq: 3,
                timestamp_ns: 0,
                action: Action::New(NewOrder::limit(3, 0, x, Side::Buy, 0, 0).with_post_only(true)),
            },
            Command { seq: 4, timestamp_ns: 1, action: Action::Cancel { user: 4, order_id: 1 } },
            Command {
                seq: 5,
                timestamp_ns: 1,
                action: Action::Modify { user: 4, order_id: 1, price: None, qty: Some(2) },
            },
            Command {
                seq: 6,
                timestamp_ns: 1,
                action: Action::Modify { user: 4, order_id: 1, price: Some(9), qty: None },
            },
            Command { seq: 7, timestamp_ns: 2, action: Action::MassCancel { user: 4, symbol: None, side: None } },
            Command {
                seq: 8,
                timestamp_ns: 2,
                action: Action::MassCancel { user: 0, symbol: Some(x), side: Some(Side::Sell) },
            },
            Command {
                seq: 9,
                timestamp_ns: 2,
                action: Action::MassCancel { user: 5, symbol: None, side: Some(Side::Buy) },
            },
            Command { seq: 10, timestamp_ns: 3, action: Action::Halt { symbol: x } },
            Command { seq: 11, timestamp_ns: 3, action: Action::Resume { symbol: Symbol::new("A").unwrap() } },
        ]
    }

    #[test]
    fn commands_round_trip() {
        for command in commands() {
            let mut payload = Vec::new();
            encode_command(&mut payload, &command);
            assert!(payload.len() <= COMMAND_PAYLOAD_MAX);
            assert_eq!(decode_command(command.seq, &payload), Some(command));
            // Any truncation is refused, not misread.
            for cut in 0..payload.len() {
                assert_eq!(decode_command(command.seq, &payload[..cut]), None);
            }
        }
    }

    #[test]
    fn records_round_trip_and_chain() {
        let mut out = Vec::new();
        let mut chain_crc = 0;
        for command in commands() {
            let mut payload = Vec::new();
            encode_command(&mut payload, &command);
            chain_crc = append_record(&mut out, command.seq, KIND_COMMAND, &payload, chain_crc);
        }
        assert_eq!(out.len() % RECORD_ALIGN, 0);
        let (mut at, mut chained) = (0, 0);
        for command in commands() {
            let record = parse_record(&out[at..]).unwrap();
            assert_eq!(record.seq, command.seq);
            assert_eq!(record.chain_crc, chain(chained, record.body_crc));
            assert_eq!(decode_command(record.seq, record.payload), Some(command));
            chained = record.chain_crc;
            at += record.len;
        }
        assert_eq!((at, chained), (out.len(), chain_crc));
        // Every flipped bit of the first record is caught: by the body
        // checksum, by the zero check of the bytes outside it, or (in the
        // chain field) by the chain.
        let first_len = parse_record(&out).unwrap().len;
        for bit in 0..first_len * 8 {
            let mut damaged = out.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            if let Ok(record) = parse_record(&damaged) {
                assert_ne!(record.chain_crc, chain(0, record.body_crc), "bit {bit} went unnoticed");
            }
        }
    }

    #[test]
    fn records_walks_a_segment_and_stops_at_damage() {
        let mut segment = segment_header(1, 0).to_vec();
        let mut chain_crc = 0;
        for command in commands() {
            let mut payload = Vec::new();
            encode_command(&mut payload, &command);
            chain_crc = append_record(&mut segment, command.seq, KIND_COMMAND, &payload, chain_crc);
        }
        let seqs: Vec<Seq> = records(&segment).map(|(_, r)| r.unwrap().seq).collect();
        assert_eq!(seqs, (1..=commands().len() as Seq).collect::<Vec<_>>());
        let cut = &segment[..segment.len() - 3];
        let walked: Vec<_> = records(cut).collect();
        assert_eq!(walked.len(), commands().len());
        assert!(walked.last().unwrap().1.is_err());
        assert!(walked[..walked.len() - 1].iter().all(|(_, r)| r.is_ok()));
    }

    #[test]
    fn headers_round_trip_and_reject_damage() {
        let header = segment_header(42, 0xDEAD_BEEF);
        assert_eq!(parse_segment_header(&header), Ok((42, 0xDEAD_BEEF)));
        for bit in 0..SEGMENT_HEADER_LEN * 8 {
            let mut damaged = header;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(parse_segment_header(&damaged).is_err(), "bit {bit} went unnoticed");
        }
        let body = b"state bytes";
        let mut file = snapshot_header(9, 77, body).to_vec();
        file.extend_from_slice(body);
        assert_eq!(parse_snapshot(&file), Ok((9, 77, &body[..])));
        file[SNAPSHOT_HEADER_LEN + 2] ^= 1;
        assert!(parse_snapshot(&file).is_err());
        assert!(parse_snapshot(&file[..SNAPSHOT_HEADER_LEN + 3]).is_err());
    }
}
