//! What a FIX session must remember: both sequence numbers, and the
//! application messages it sent (for the peer's ResendRequest).
//!
//! [`MemoryStore`] forgets everything with the process (tests, or sessions
//! that reset every logon). [`FileStore`] survives a restart, `kill -9`
//! included.
//!
//! Both keep only the last `capacity` application messages: older ones, and
//! administrative messages (never kept), are answered with a
//! SequenceReset-GapFill on a resend, so memory and disk stay bounded.
//!
//! ## The file format of [`FileStore`]
//!
//! One file per session, `<our>@<their>.fixstore` in the store directory,
//! the CompIDs sanitized (bytes outside `[A-Za-z0-9_.-]` become `%XX`). It
//! is an 8-byte magic `MEFIXST1` followed by records, all integers little
//! endian:
//!
//! ```text
//! len: u32 | kind: u8 | payload: len - 1 bytes | crc32: u32 (IEEE, of kind and payload)
//! kind 1, App:  seq: u64 | the whole encoded frame      (next sender seq := seq + 1)
//! kind 2, Seqs: next_sender_seq: u64 | next_target_seq: u64
//! ```
//!
//! Replaying the records in order gives the state. Records are appended in
//! memory and written (one `write` per batch) by [`Store::flush`]. When the
//! file holds more than 2 × `capacity` App records, `flush` rewrites it
//! (compaction): the kept messages and a Seqs record go to
//! `<name>.fixstore.tmp`, which is renamed over the file.
//!
//! On open, a leftover `.tmp` (a compaction cut short) is deleted, and the
//! log is read up to the first record that is incomplete, fails its CRC or
//! makes no sense; the file is cut there. Only the tail can be torn by a
//! crash, so anything after a bad record is treated as that tail, never
//! trusted.
//!
//! Durability: `flush` hands the bytes to the kernel (`write`, no `fsync`),
//! so everything flushed survives the process being killed. A power loss or
//! kernel crash may lose the last flushed batches (or, if it comes between
//! a compaction's rename and the kernel writing the new file, leave an
//! empty store); the counterparty then sees sequence numbers that are too
//! low, and the recovery is a Logon with ResetSeqNumFlag (141=Y).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write as _};
use std::path::{Path, PathBuf};

/// Sequence numbers and sent messages of one FIX session.
///
/// Invariant: `sent` is called with `seq == next_sender_seq()`, every time a
/// message is given a sequence number (resends reuse old numbers and are not
/// recorded).
pub trait Store: Send {
    /// The MsgSeqNum of the next message we send.
    fn next_sender_seq(&self) -> u64;
    /// The MsgSeqNum we expect next from the peer.
    fn next_target_seq(&self) -> u64;
    /// Sets the MsgSeqNum we expect next from the peer.
    fn set_next_target_seq(&mut self, seq: u64);
    /// Records an outgoing message (the whole encoded frame) under its seq;
    /// `app`: an application message (resent on request), else
    /// administrative (gap-filled). Advances next_sender_seq to seq + 1.
    fn sent(&mut self, seq: u64, app: bool, frame: &[u8]) -> io::Result<()>;
    /// The application messages kept with seq in begin..=end, in order.
    fn resend_range(&self, begin: u64, end: u64) -> Vec<(u64, Vec<u8>)>;
    /// Both sequence numbers back to 1, the messages forgotten
    /// (ResetSeqNumFlag).
    fn reset(&mut self) -> io::Result<()>;
    /// Makes what was recorded survive a restart of the process (called by
    /// the gateway after each batch it writes or reads).
    fn flush(&mut self) -> io::Result<()>;
}

impl<S: Store + ?Sized> Store for Box<S> {
    fn next_sender_seq(&self) -> u64 {
        (**self).next_sender_seq()
    }
    fn next_target_seq(&self) -> u64 {
        (**self).next_target_seq()
    }
    fn set_next_target_seq(&mut self, seq: u64) {
        (**self).set_next_target_seq(seq)
    }
    fn sent(&mut self, seq: u64, app: bool, frame: &[u8]) -> io::Result<()> {
        (**self).sent(seq, app, frame)
    }
    fn resend_range(&self, begin: u64, end: u64) -> Vec<(u64, Vec<u8>)> {
        (**self).resend_range(begin, end)
    }
    fn reset(&mut self) -> io::Result<()> {
        (**self).reset()
    }
    fn flush(&mut self) -> io::Result<()> {
        (**self).flush()
    }
}

/// The last `capacity` application messages, oldest first, each as an
/// entry (the frame for [`MemoryStore`], the whole log record for
/// [`FileStore`]).
///
/// Invariants: seqs strictly increase; `len() <= capacity`. An evicted
/// entry's buffer is reused for the next one, so keeping a message
/// allocates nothing once the ring is full.
#[derive(Debug)]
struct Kept {
    entries: VecDeque<(u64, Vec<u8>)>,
    capacity: usize,
}

impl Kept {
    fn new(capacity: usize) -> Kept {
        assert!(capacity > 0, "a store keeps at least one message");
        Kept { entries: VecDeque::with_capacity(capacity.min(1 << 16)), capacity }
    }

    /// Keeps `seq`, its entry written by `fill` into an empty buffer; the entry.
    fn push(&mut self, seq: u64, fill: impl FnOnce(&mut Vec<u8>)) -> &[u8] {
        // Keep seqs increasing even if a log went back (it cannot, unless damaged).
        while self.entries.back().is_some_and(|(last, _)| *last >= seq) {
            self.entries.pop_back();
        }
        let mut buf = if self.entries.len() == self.capacity {
            self.entries.pop_front().map(|(_, b)| b).unwrap_or_default()
        } else {
            Vec::new()
        };
        buf.clear();
        fill(&mut buf);
        self.entries.push_back((seq, buf));
        self.entries.back().map(|(_, b)| b.as_slice()).unwrap_or_default()
    }

    /// The entries with seq in begin..=end.
    fn range(&self, begin: u64, end: u64) -> impl Iterator<Item = &(u64, Vec<u8>)> {
        let from = self.entries.partition_point(|(seq, _)| *seq < begin);
        self.entries.range(from..).take_while(move |(seq, _)| *seq <= end)
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn clear(&mut self) {
        self.entries.clear();
    }
}

/// A [`Store`] in memory: forgotten when dropped.
#[derive(Debug)]
pub struct MemoryStore {
    next_sender: u64,
    next_target: u64,
    kept: Kept,
}

impl MemoryStore {
    /// A store at sequence numbers 1 that keeps the last `capacity`
    /// application messages (`capacity` ≥ 1).
    pub fn new(capacity: usize) -> MemoryStore {
        MemoryStore { next_sender: 1, next_target: 1, kept: Kept::new(capacity) }
    }
}

impl Store for MemoryStore {
    fn next_sender_seq(&self) -> u64 {
        self.next_sender
    }
    fn next_target_seq(&self) -> u64 {
        self.next_target
    }
    fn set_next_target_seq(&mut self, seq: u64) {
        self.next_target = seq;
    }
    fn sent(&mut self, seq: u64, app: bool, frame: &[u8]) -> io::Result<()> {
        assert_eq!(seq, self.next_sender, "Invariant: messages are recorded in sequence");
        self.next_sender = seq + 1;
        if app {
            self.kept.push(seq, |buf| buf.extend_from_slice(frame));
        }
        Ok(())
    }
    fn resend_range(&self, begin: u64, end: u64) -> Vec<(u64, Vec<u8>)> {
        self.kept.range(begin, end).map(|(seq, frame)| (*seq, frame.clone())).collect()
    }
    fn reset(&mut self) -> io::Result<()> {
        self.next_sender = 1;
        self.next_target = 1;
        self.kept.clear();
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The magic at the start of a store file (format version 1).
const MAGIC: &[u8; 8] = b"MEFIXST1";
const KIND_APP: u8 = 1;
const KIND_SEQS: u8 = 2;
/// A record longer than this is damage, not a message.
const RECORD_MAX: usize = 64 << 20;
/// Records waiting for `flush` are written anyway past this many bytes.
const PENDING_MAX: usize = 1 << 20;

/// A [`Store`] in an append-only file that survives a restart (format,
/// compaction, recovery and durability: see the [module docs](self)).
///
/// Invariants: replaying the file, then `pending`, gives `logged_sender`,
/// `logged_target` and the messages in `kept`; `app_records` counts the App
/// records in the file and in `pending`; after a failed write `failed` is
/// set and every later call fails (the file may end in a torn record, which
/// the next open cuts).
pub struct FileStore {
    path: PathBuf,
    tmp_path: PathBuf,
    file: File,
    next_sender: u64,
    next_target: u64,
    kept: Kept,
    /// Encoded records not yet written.
    pending: Vec<u8>,
    logged_sender: u64,
    logged_target: u64,
    app_records: usize,
    failed: bool,
    /// Bytes of damaged tail cut when the file was opened.
    cut_on_open: u64,
}

impl FileStore {
    /// Opens (or creates) the store of the session between `our_comp_id` and
    /// `their_comp_id` in `dir` (created if missing), keeping the last
    /// `capacity` application messages (≥ 1).
    ///
    /// Errors: I/O, `capacity` 0, or a file that is not a store (wrong
    /// magic: it is left alone). A damaged tail is cut, not an error
    /// ([`FileStore::cut_on_open`] says how much).
    pub fn open(dir: &Path, our_comp_id: &str, their_comp_id: &str, capacity: usize) -> io::Result<FileStore> {
        if capacity == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a FIX store keeps at least one message"));
        }
        fs::create_dir_all(dir)?;
        let name = format!("{}@{}.fixstore", sanitize(our_comp_id), sanitize(their_comp_id));
        let path = dir.join(&name);
        let tmp_path = dir.join(format!("{name}.tmp"));
        match fs::remove_file(&tmp_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut kept = Kept::new(capacity);
        let (file, replay, cut_on_open) = if bytes.len() < MAGIC.len() && MAGIC.starts_with(&bytes) {
            // New, or torn while being created: start empty.
            let replay = Replay { next_sender: 1, next_target: 1, app_records: 0, good_len: MAGIC.len() };
            let file = write_whole(&path, &tmp_path, &kept, 1, 1)?;
            (file, replay, 0)
        } else if !bytes.starts_with(MAGIC) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a FIX session store (wrong magic)", path.display()),
            ));
        } else {
            let replay = replay(&bytes, &mut kept);
            let file = OpenOptions::new().append(true).open(&path)?;
            let cut = (bytes.len() - replay.good_len) as u64;
            if cut > 0 {
                file.set_len(replay.good_len as u64)?;
            }
            (file, replay, cut)
        };
        Ok(FileStore {
            path,
            tmp_path,
            file,
            next_sender: replay.next_sender,
            next_target: replay.next_target,
            kept,
            pending: Vec::with_capacity(64 << 10),
            logged_sender: replay.next_sender,
            logged_target: replay.next_target,
            app_records: replay.app_records,
            failed: false,
            cut_on_open,
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many bytes of damaged or torn tail were cut when the file was
    /// opened (0 normally): worth a log line.
    pub fn cut_on_open(&self) -> u64 {
        self.cut_on_open
    }

    fn check(&self) -> io::Result<()> {
        if self.failed {
            Err(io::Error::other(format!("FIX store {} failed earlier", self.path.display())))
        } else {
            Ok(())
        }
    }

    /// Rewrites the file with only the kept messages and the sequence
    /// numbers, dropping `pending` (which it includes).
    fn compact(&mut self) -> io::Result<()> {
        match write_whole(&self.path, &self.tmp_path, &self.kept, self.next_sender, self.next_target) {
            Ok(file) => {
                self.file = file;
                self.pending.clear();
                self.app_records = self.kept.len();
                self.logged_sender = self.next_sender;
                self.logged_target = self.next_target;
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                let _ = fs::remove_file(&self.tmp_path);
                Err(e)
            }
        }
    }
}

impl Store for FileStore {
    fn next_sender_seq(&self) -> u64 {
        self.next_sender
    }

    fn next_target_seq(&self) -> u64 {
        self.next_target
    }

    fn set_next_target_seq(&mut self, seq: u64) {
        self.next_target = seq;
    }

    fn sent(&mut self, seq: u64, app: bool, frame: &[u8]) -> io::Result<()> {
        self.check()?;
        assert_eq!(seq, self.next_sender, "Invariant: messages are recorded in sequence");
        self.next_sender = seq + 1;
        if app {
            let record = self.kept.push(seq, |buf| push_app_record(buf, seq, frame));
            self.pending.extend_from_slice(record);
            self.logged_sender = seq + 1;
            self.app_records += 1;
        }
        if self.pending.len() >= PENDING_MAX { self.flush() } else { Ok(()) }
    }

    fn resend_range(&self, begin: u64, end: u64) -> Vec<(u64, Vec<u8>)> {
        self.kept.range(begin, end).map(|(seq, record)| (*seq, app_record_frame(record).to_vec())).collect()
    }

    fn reset(&mut self) -> io::Result<()> {
        self.check()?;
        self.kept.clear();
        self.next_sender = 1;
        self.next_target = 1;
        self.compact()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.check()?;
        if self.logged_sender != self.next_sender || self.logged_target != self.next_target {
            push_seqs_record(&mut self.pending, self.next_sender, self.next_target);
            self.logged_sender = self.next_sender;
            self.logged_target = self.next_target;
        }
        if self.app_records > 2 * self.kept.capacity {
            return self.compact();
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let written = self.file.write_all(&self.pending);
        self.pending.clear();
        written.inspect_err(|_| self.failed = true)
    }
}

impl Drop for FileStore {
    /// Flushes what is pending (best effort: an error here has no one to go to).
    fn drop(&mut self) {
        if !self.failed {
            let _ = self.flush();
        }
    }
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("path", &self.path)
            .field("next_sender", &self.next_sender)
            .field("next_target", &self.next_target)
            .field("kept", &self.kept.len())
            .field("failed", &self.failed)
            .finish()
    }
}

/// A CompID as a file name part: `[A-Za-z0-9_.-]` kept, other bytes `%XX`.
fn sanitize(comp_id: &str) -> String {
    let mut out = String::with_capacity(comp_id.len());
    for b in comp_id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Writes a whole store (magic, the kept App records, the sequence
/// numbers) to `tmp_path` and renames it over `path`; the file, positioned
/// at its end. The kept records are copied as they are (no re-encoding).
fn write_whole(path: &Path, tmp_path: &Path, kept: &Kept, next_sender: u64, next_target: u64) -> io::Result<File> {
    let mut out = BufWriter::with_capacity(1 << 16, File::create(tmp_path)?);
    out.write_all(MAGIC)?;
    for (_, record) in &kept.entries {
        out.write_all(record)?;
    }
    let mut seqs = Vec::with_capacity(32);
    push_seqs_record(&mut seqs, next_sender, next_target);
    out.write_all(&seqs)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    fs::rename(tmp_path, path)?;
    Ok(file)
}

/// Where the frame is in an App record: after len (4), kind (1) and seq
/// (8), before the CRC (4).
const APP_FRAME_AT: usize = 13;

fn app_record_frame(record: &[u8]) -> &[u8] {
    &record[APP_FRAME_AT..record.len() - 4]
}

fn push_app_record(buf: &mut Vec<u8>, seq: u64, frame: &[u8]) {
    push_record(buf, KIND_APP, &seq.to_le_bytes(), frame);
}

fn push_seqs_record(buf: &mut Vec<u8>, next_sender: u64, next_target: u64) {
    push_record(buf, KIND_SEQS, &next_sender.to_le_bytes(), &next_target.to_le_bytes());
}

/// `len | kind | a | b | crc32(kind | a | b)`.
fn push_record(buf: &mut Vec<u8>, kind: u8, a: &[u8], b: &[u8]) {
    let len = 1 + a.len() + b.len();
    assert!(len <= RECORD_MAX, "a store record is at most {RECORD_MAX} bytes");
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    let start = buf.len();
    buf.push(kind);
    buf.extend_from_slice(a);
    buf.extend_from_slice(b);
    let crc = crc32(&buf[start..]);
    buf.extend_from_slice(&crc.to_le_bytes());
}

/// What replaying a store file gave.
struct Replay {
    next_sender: u64,
    next_target: u64,
    app_records: usize,
    /// Bytes up to the end of the last good record.
    good_len: usize,
}

/// Replays the records after the magic into `kept`, stopping at the first
/// one that is incomplete, fails its CRC, or makes no sense.
fn replay(bytes: &[u8], kept: &mut Kept) -> Replay {
    let mut r = Replay { next_sender: 1, next_target: 1, app_records: 0, good_len: MAGIC.len() };
    let mut pos = MAGIC.len();
    while let Some(len_bytes) = bytes.get(pos..pos + 4) {
        let len = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
        if len == 0 || len > RECORD_MAX {
            break;
        }
        let Some(record) = bytes.get(pos + 4..pos + 4 + len) else { break };
        let Some(crc) = bytes.get(pos + 4 + len..pos + 8 + len) else { break };
        if crc32(record) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            break;
        }
        let u64_at = |at: usize| u64::from_le_bytes(record[at..at + 8].try_into().expect("8 bytes"));
        match record[0] {
            KIND_APP if len > 9 && u64_at(1) > 0 => {
                let seq = u64_at(1);
                let whole = &bytes[pos..pos + len + 8];
                kept.push(seq, |buf| buf.extend_from_slice(whole));
                r.next_sender = seq + 1;
                r.app_records += 1;
            }
            KIND_SEQS if len == 17 && u64_at(1) > 0 && u64_at(9) > 0 => {
                r.next_sender = u64_at(1);
                r.next_target = u64_at(9);
            }
            _ => break,
        }
        pos += len + 8;
        r.good_len = pos;
    }
    r
}

/// CRC-32 (IEEE 802.3, reflected, as zlib), slicing by 8 bytes.
fn crc32(bytes: &[u8]) -> u32 {
    /// `TABLES[0]` is the bytewise table; `TABLES[k][i]` is the CRC of byte
    /// `i` followed by `k` zero bytes.
    const TABLES: [[u32; 256]; 8] = {
        let mut t = [[0u32; 256]; 8];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            t[0][i] = c;
            i += 1;
        }
        let mut i = 0;
        while i < 256 {
            let mut k = 1;
            while k < 8 {
                t[k][i] = (t[k - 1][i] >> 8) ^ t[0][(t[k - 1][i] & 0xFF) as usize];
                k += 1;
            }
            i += 1;
        }
        t
    };
    let t = &TABLES;
    let mut c = !0u32;
    let mut chunks = bytes.chunks_exact(8);
    for ch in &mut chunks {
        let lo = u32::from_le_bytes([ch[0], ch[1], ch[2], ch[3]]) ^ c;
        let hi = u32::from_le_bytes([ch[4], ch[5], ch[6], ch[7]]);
        c = t[7][(lo & 0xFF) as usize]
            ^ t[6][(lo >> 8 & 0xFF) as usize]
            ^ t[5][(lo >> 16 & 0xFF) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xFF) as usize]
            ^ t[2][(hi >> 8 & 0xFF) as usize]
            ^ t[1][(hi >> 16 & 0xFF) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        c = t[0][((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("matching-fix-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn frame(seq: u64) -> Vec<u8> {
        format!("8=FIX.4.4\x01…message {seq}\x01").into_bytes()
    }

    /// Sends `count` messages: every third is administrative.
    fn send(store: &mut impl Store, count: u64) {
        for _ in 0..count {
            let seq = store.next_sender_seq();
            store.sent(seq, !seq.is_multiple_of(3), &frame(seq)).unwrap();
        }
    }

    fn seqs(range: Vec<(u64, Vec<u8>)>) -> Vec<u64> {
        range
            .into_iter()
            .map(|(seq, f)| {
                assert_eq!(f, frame(seq));
                seq
            })
            .collect()
    }

    #[test]
    fn crc32_matches_the_standard_check_value_and_a_bitwise_reference() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        let bitwise = |bytes: &[u8]| {
            let mut c = !0u32;
            for &b in bytes {
                c ^= u32::from(b);
                for _ in 0..8 {
                    c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                }
            }
            !c
        };
        let data: Vec<u8> = (0..300u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for len in 0..data.len() {
            assert_eq!(crc32(&data[..len]), bitwise(&data[..len]), "{len} bytes");
        }
    }

    #[test]
    fn memory_store_keeps_the_last_capacity_app_messages() {
        let mut s = MemoryStore::new(3);
        assert_eq!((s.next_sender_seq(), s.next_target_seq()), (1, 1));
        send(&mut s, 10);
        assert_eq!(s.next_sender_seq(), 11);
        // App messages: 1 2 4 5 7 8 10; the last three kept.
        assert_eq!(seqs(s.resend_range(1, 100)), [7, 8, 10]);
        assert_eq!(seqs(s.resend_range(8, 9)), [8]);
        assert_eq!(seqs(s.resend_range(11, 20)), Vec::<u64>::new());
        s.set_next_target_seq(5);
        s.reset().unwrap();
        assert_eq!((s.next_sender_seq(), s.next_target_seq()), (1, 1));
        assert!(s.resend_range(1, 100).is_empty());
    }

    #[test]
    fn file_store_survives_reopen() {
        let dir = TempDir::new("reopen");
        {
            let mut s = FileStore::open(&dir.0, "ME", "CLIENT/1", 100).unwrap();
            send(&mut s, 10);
            s.set_next_target_seq(7);
            s.flush().unwrap();
            // Not flushed, but dropping flushes.
            send(&mut s, 2);
        }
        let mut s = FileStore::open(&dir.0, "ME", "CLIENT/1", 100).unwrap();
        assert_eq!(s.cut_on_open(), 0);
        assert_eq!((s.next_sender_seq(), s.next_target_seq()), (13, 7));
        assert_eq!(seqs(s.resend_range(1, 100)), [1, 2, 4, 5, 7, 8, 10, 11]);
        assert!(s.path().ends_with("ME@CLIENT%2F1.fixstore"), "{}", s.path().display());
        // The flush after only a target seq change is recorded too.
        s.set_next_target_seq(9);
        s.flush().unwrap();
        drop(s);
        let s = FileStore::open(&dir.0, "ME", "CLIENT/1", 100).unwrap();
        assert_eq!((s.next_sender_seq(), s.next_target_seq()), (13, 9));
        // Another session's store is another file.
        let other = FileStore::open(&dir.0, "ME", "CLIENT-1", 100).unwrap();
        assert_eq!((other.next_sender_seq(), other.next_target_seq()), (1, 1));
    }

    #[test]
    fn file_store_without_flush_or_drop_loses_only_the_unflushed() {
        let dir = TempDir::new("kill");
        let mut s = FileStore::open(&dir.0, "ME", "C", 100).unwrap();
        send(&mut s, 5);
        s.set_next_target_seq(3);
        s.flush().unwrap();
        send(&mut s, 5);
        // `kill -9`: no Drop runs.
        std::mem::forget(s);
        let s = FileStore::open(&dir.0, "ME", "C", 100).unwrap();
        assert_eq!((s.next_sender_seq(), s.next_target_seq()), (6, 3));
        assert_eq!(seqs(s.resend_range(1, 100)), [1, 2, 4, 5]);
    }

    #[test]
    fn compaction_keeps_the_last_capacity_and_bounds_the_file() {
        let dir = TempDir::new("compact");
        let capacity = 10;
        let mut s = FileStore::open(&dir.0, "ME", "C", capacity).unwrap();
        let mut max_len = 0;
        for _ in 0..100 {
            send(&mut s, 7);
            s.flush().unwrap();
            max_len = max_len.max(fs::metadata(s.path()).unwrap().len());
            assert!(s.app_records <= 2 * capacity + 5, "{} records", s.app_records);
        }
        let record = (frame(100).len() + 17) as u64;
        assert!(max_len <= MAGIC.len() as u64 + (2 * capacity as u64 + 5) * record + 100, "{max_len} bytes");
        let kept = seqs(s.resend_range(1, 1000));
        assert_eq!(kept.len(), capacity);
        assert_eq!(*kept.last().unwrap(), 700, "700 is an application message (700 % 3 != 0)");
        drop(s);
        let s = FileStore::open(&dir.0, "ME", "C", capacity).unwrap();
        assert_eq!(s.next_sender_seq(), 701);
        assert_eq!(seqs(s.resend_range(1, 1000)), kept);
        assert!(!dir.0.join("ME@C.fixstore.tmp").exists());
    }

    #[test]
    fn a_truncated_or_damaged_tail_is_cut() {
        let dir = TempDir::new("torn");
        let path;
        let good_len;
        {
            let mut s = FileStore::open(&dir.0, "ME", "C", 100).unwrap();
            send(&mut s, 4);
            s.set_next_target_seq(4);
            s.flush().unwrap();
            path = s.path().to_path_buf();
            good_len = fs::metadata(&path).unwrap().len();
            send(&mut s, 3);
            s.flush().unwrap();
            std::mem::forget(s);
        }
        let full = fs::read(&path).unwrap();
        // Cut at every byte of the second batch: always back to the first batch or better, no panic.
        for cut in good_len as usize..full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            let s = FileStore::open(&dir.0, "ME", "C", 100).unwrap();
            assert!(s.next_sender_seq() >= 5 && s.next_sender_seq() <= 8, "cut at {cut}");
            assert_eq!(s.next_target_seq(), 4);
            let len_after = fs::metadata(&path).unwrap().len();
            assert_eq!(len_after + s.cut_on_open(), cut as u64);
            drop(s);
        }
        // A flipped byte in the middle: the log ends before that record.
        let mut damaged = full.clone();
        damaged[good_len as usize + 10] ^= 0xFF;
        fs::write(&path, &damaged).unwrap();
        let s = FileStore::open(&dir.0, "ME", "C", 100).unwrap();
        assert_eq!((s.next_sender_seq(), s.next_target_seq()), (5, 4));
        assert_eq!(s.cut_on_open(), full.len() as u64 - good_len);
        assert_eq!(seqs(s.resend_range(1, 100)), [1, 2, 4]);
        drop(s);
        // Garbage appended.
        let mut garbage = fs::read(&path).unwrap();
        garbage.extend_from_slice(&[0xFF; 13]);
        fs::write(&path, &garbage).unwrap();
        let s = FileStore::open(&dir.0, "ME", "C", 100).unwrap();
        assert_eq!((s.next_sender_seq(), s.cut_on_open()), (5, 13));
    }

    #[test]
    fn reset_forgets_everything_durably() {
        let dir = TempDir::new("reset");
        let mut s = FileStore::open(&dir.0, "ME", "C", 100).unwrap();
        send(&mut s, 5);
        s.set_next_target_seq(9);
        s.flush().unwrap();
        s.reset().unwrap();
        assert_eq!((s.next_sender_seq(), s.next_target_seq()), (1, 1));
        send(&mut s, 2);
        s.flush().unwrap();
        drop(s);
        let s = FileStore::open(&dir.0, "ME", "C", 100).unwrap();
        assert_eq!((s.next_sender_seq(), s.next_target_seq()), (3, 1));
        assert_eq!(seqs(s.resend_range(1, 100)), [1, 2]);
    }

    #[test]
    fn open_refuses_a_foreign_file_and_zero_capacity_and_cleans_a_tmp() {
        let dir = TempDir::new("foreign");
        fs::write(dir.0.join("ME@C.fixstore"), b"hello, not a store").unwrap();
        let err = FileStore::open(&dir.0, "ME", "C", 10).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(fs::read(dir.0.join("ME@C.fixstore")).unwrap(), b"hello, not a store");
        assert_eq!(FileStore::open(&dir.0, "ME", "D", 0).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        // A magic torn at creation, and a compaction's leftover tmp.
        fs::write(dir.0.join("ME@E.fixstore"), &MAGIC[..3]).unwrap();
        fs::write(dir.0.join("ME@E.fixstore.tmp"), b"half a compaction").unwrap();
        let s = FileStore::open(&dir.0, "ME", "E", 10).unwrap();
        assert_eq!(s.next_sender_seq(), 1);
        assert!(!dir.0.join("ME@E.fixstore.tmp").exists());
    }

    #[test]
    fn sanitize_keeps_safe_bytes_and_escapes_the_rest() {
        assert_eq!(sanitize("ME_1.a-b"), "ME_1.a-b");
        assert_eq!(sanitize("../x y@z"), "..%2Fx%20y%40z");
        assert_eq!(sanitize("é"), "%C3%A9");
    }
}
