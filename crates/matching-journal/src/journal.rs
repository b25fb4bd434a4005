//! The journal: segment files of chained records, written with group commit,
//! read back by recovery; and snapshots beside it.
//!
//! Files in the data directory:
//! - `journal-<first seq, 20 digits>.log`: a segment, records in `seq` order;
//! - `snapshot-<seq, 20 digits>.snap`: the full state after `seq`;
//! - `*.tmp`: a snapshot being written (removed by recovery).

use std::fmt;
use std::io;

use matching_core::{Cid, Command, Seq, VALUE_MAX};

use crate::format::{
    self, KIND_COMMAND, KIND_EXTERNAL, KIND_SYNCED, RECORD_ALIGN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::manifest::{Manifest, read_manifest, write_manifest};
use crate::storage::{Storage, StorageFile};

/// One journal record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// A sequenced command.
    Command(Command),
    /// A new order with its client order id (journaled with it, so the id
    /// survives a restart; the core never sees it).
    NewWithCid(Command, Cid),
    /// A `seq` a front end used for something that is not a command.
    External(Seq),
    /// A `seq` a front end used for a change of its own state that recovery
    /// must reproduce (an operator's kill switch, say): a few opaque bytes
    /// the core never sees, handed back in [`RecoveryReport::notes`].
    Note(Seq, Note),
}

impl Record {
    pub fn seq(&self) -> Seq {
        match self {
            Record::Command(command) | Record::NewWithCid(command, _) => command.seq,
            Record::External(seq) | Record::Note(seq, _) => *seq,
        }
    }
}

/// Most bytes in a [`Note`].
pub const NOTE_MAX: usize = 24;

/// The payload of a [`Record::Note`]: 1 to [`NOTE_MAX`] bytes, kept inline
/// so a record stays `Copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Note {
    len: u8,
    bytes: [u8; NOTE_MAX],
}

impl Note {
    /// `None` for no bytes (that is an [`Record::External`]) or more than [`NOTE_MAX`].
    pub fn new(bytes: &[u8]) -> Option<Note> {
        if bytes.is_empty() || bytes.len() > NOTE_MAX {
            return None;
        }
        let mut note = Note { len: bytes.len() as u8, bytes: [0; NOTE_MAX] };
        note.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(note)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

pub fn segment_name(first_seq: Seq) -> String {
    format!("journal-{first_seq:020}.log")
}

pub fn snapshot_name(seq: Seq) -> String {
    format!("snapshot-{seq:020}.snap")
}

fn parse_name(name: &str, prefix: &str, suffix: &str) -> Option<Seq> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

/// How big a segment grows before the next one starts.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;

/// Appends records; the caller decides when to write and when to sync
/// (that is the group-commit policy, in the engine).
pub struct JournalWriter {
    storage: std::sync::Arc<dyn Storage>,
    segment_bytes_max: u64,
    file: Box<dyn StorageFile>,
    /// `(first_seq, name)` of every segment on disk, oldest first.
    segments: Vec<(Seq, String)>,
    /// Bytes in the current segment, written or buffered.
    segment_len: u64,
    chain: u32,
    last_seq: Seq,
    /// Encoded records not yet written.
    buffer: Vec<u8>,
    payload: Vec<u8>,
    /// Whether the journal is synced at all (not with `--fsync off`): a
    /// finished segment is synced before the next starts, and synced-through
    /// markers are written.
    synced: bool,
    /// The `seq` of the last record written to the file (not just buffered).
    written_seq: Seq,
    /// Every record up to this `seq` is durable (a sync returned after it was written).
    synced_through: Seq,
    /// The highest synced-through marker appended: once `synced_through`
    /// passes it, the next append (or [`JournalWriter::vouch`]) writes a new one.
    vouched: Seq,
    /// The directory's manifest, kept up to date (its newest segment) once
    /// [`JournalWriter::set_manifest`] gave it.
    manifest: Option<Manifest>,
    /// The first I/O error: from then on every call fails with it. After a
    /// short write the file holds a prefix of the buffer, and after a failed
    /// `fdatasync` the kernel may have dropped the dirty pages and a retry
    /// may report success; no retry can make either right (fail-stop).
    failed: Option<String>,
}

impl fmt::Debug for JournalWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalWriter").field("last_seq", &self.last_seq).field("segments", &self.segments).finish()
    }
}

impl JournalWriter {
    /// Continues the journal recovery found (or starts one after `state.last_seq`).
    pub fn open(
        storage: std::sync::Arc<dyn Storage>,
        state: &JournalState,
        segment_bytes_max: u64,
    ) -> io::Result<JournalWriter> {
        let mut segments = state.segments.clone();
        let (file, segment_len) = match segments.last() {
            Some((_, name)) => (storage.open_append(name)?, state.last_segment_len),
            None => {
                let first_seq = state.last_seq + 1;
                let (file, len) = new_segment(storage.as_ref(), first_seq, state.chain)?;
                segments.push((first_seq, segment_name(first_seq)));
                (file, len)
            }
        };
        Ok(JournalWriter {
            storage,
            segment_bytes_max: segment_bytes_max.max(4096),
            file,
            segments,
            segment_len,
            chain: state.chain,
            last_seq: state.last_seq,
            buffer: Vec::with_capacity(1 << 20),
            payload: Vec::with_capacity(format::COMMAND_PAYLOAD_MAX),
            synced: true,
            written_seq: state.last_seq,
            // What recovery read back had reached the disk.
            synced_through: state.last_seq,
            vouched: state.vouched,
            manifest: None,
            failed: None,
        })
    }

    /// Keeps the directory's manifest from now on: writes it now (with this
    /// journal's newest segment) and again whenever a segment starts.
    pub fn set_manifest(&mut self, mut manifest: Manifest) -> io::Result<()> {
        self.check()?;
        manifest.newest_segment = self.segments.last().map(|(first_seq, _)| *first_seq);
        let written = write_manifest(self.storage.as_ref(), &manifest);
        self.stop_on_error(written)?;
        self.manifest = Some(manifest);
        Ok(())
    }

    /// `Err` with the first failure, once there has been one.
    fn check(&self) -> io::Result<()> {
        match &self.failed {
            None => Ok(()),
            Some(reason) => Err(io::Error::other(format!("the journal stopped after an I/O error: {reason}"))),
        }
    }

    /// Records the first I/O error of `result`: every later call fails.
    fn stop_on_error<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if let Err(error) = &result
            && self.failed.is_none()
        {
            self.failed = Some(error.to_string());
        }
        result
    }

    /// Why the writer stopped, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Whether the journal is ever synced (default yes; no with
    /// `--fsync off`, which then neither syncs a finished segment nor writes
    /// synced-through markers: nothing is ever durable to vouch for).
    pub fn set_synced(&mut self, synced: bool) {
        self.synced = synced;
        if !synced {
            self.synced_through = self.vouched;
        }
    }

    /// Whether records were synced since the last synced-through marker:
    /// [`JournalWriter::vouch`] would write one.
    pub fn unvouched(&self) -> bool {
        self.synced && self.synced_through > self.vouched
    }

    /// Appends a synced-through marker if records were synced since the
    /// last one (every append does this first, so under load each group
    /// vouches for the one before it; an idle journal calls it, then writes
    /// and syncs, so that its last group is vouched for too).
    pub fn vouch(&mut self) -> io::Result<()> {
        self.check()?;
        if self.unvouched() {
            self.chain = format::append_record(&mut self.buffer, self.synced_through, KIND_SYNCED, &[], self.chain);
            self.vouched = self.synced_through;
        }
        Ok(())
    }

    /// The `seq` of the last record appended.
    pub fn last_seq(&self) -> Seq {
        self.last_seq
    }

    /// Bytes appended and not yet written.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Appends a record to the buffer. Records must come in `seq` order, without a gap.
    pub fn append(&mut self, record: &Record) -> io::Result<()> {
        self.check()?;
        if Some(record.seq()) != self.last_seq.checked_add(1) {
            return Err(io::Error::other(format!(
                "journal: record seq {} does not follow {}",
                record.seq(),
                self.last_seq
            )));
        }
        self.payload.clear();
        let kind = match record {
            Record::Command(command) => {
                format::encode_command(&mut self.payload, command);
                KIND_COMMAND
            }
            Record::NewWithCid(command, cid) => {
                format::encode_command_with(&mut self.payload, command, Some(*cid));
                KIND_COMMAND
            }
            Record::External(_) => KIND_EXTERNAL,
            Record::Note(_, note) => {
                self.payload.extend_from_slice(note.as_bytes());
                KIND_EXTERNAL
            }
        };
        if self.segment_len + self.buffer.len() as u64 >= self.segment_bytes_max
            && self.segment_len > SEGMENT_HEADER_LEN as u64
        {
            let rotated = self.rotate();
            self.stop_on_error(rotated)?;
        }
        self.vouch()?;
        self.chain = format::append_record(&mut self.buffer, record.seq(), kind, &self.payload, self.chain);
        self.last_seq = record.seq();
        Ok(())
    }

    /// Writes the buffer to the current segment (not yet durable).
    pub fn write(&mut self) -> io::Result<()> {
        self.check()?;
        if self.buffer.is_empty() {
            return Ok(());
        }
        let written = self.file.write_all(&self.buffer);
        self.stop_on_error(written)?;
        self.segment_len += self.buffer.len() as u64;
        self.buffer.clear();
        self.written_seq = self.last_seq;
        Ok(())
    }

    /// Makes everything written durable (`fdatasync`).
    pub fn sync(&mut self) -> io::Result<()> {
        self.check()?;
        let synced = self.file.sync_data();
        self.stop_on_error(synced)?;
        self.synced_through = self.written_seq;
        Ok(())
    }

    /// Ends the current segment (durably) and starts the next, after
    /// writing what is buffered.
    fn rotate(&mut self) -> io::Result<()> {
        self.write()?;
        if self.synced {
            self.file.sync_data()?;
            self.synced_through = self.written_seq;
        }
        let first_seq = self.last_seq + 1;
        let (file, len) = new_segment(self.storage.as_ref(), first_seq, self.chain)?;
        self.file = file;
        self.segment_len = len;
        self.segments.push((first_seq, segment_name(first_seq)));
        // The segment exists (durably) before the manifest names it, so a
        // crash between the two leaves a manifest naming a segment that is there.
        if let Some(manifest) = &mut self.manifest {
            manifest.newest_segment = Some(first_seq);
            write_manifest(self.storage.as_ref(), manifest)?;
        }
        Ok(())
    }

    /// Deletes every segment whose records all have `seq <= through`
    /// (they are covered by a snapshot). Returns how many were deleted.
    pub fn prune_through(&mut self, through: Seq) -> io::Result<usize> {
        self.check()?;
        let pruned = self.prune(through);
        self.stop_on_error(pruned)
    }

    fn prune(&mut self, through: Seq) -> io::Result<usize> {
        let mut deleted = 0;
        // A segment ends where the next begins; the current one is never deleted.
        while self.segments.len() > 1 && self.segments[1].0 <= through + 1 {
            let (_, name) = self.segments.remove(0);
            self.storage.remove(&name)?;
            deleted += 1;
        }
        if deleted > 0 {
            self.storage.sync_dir()?;
        }
        Ok(deleted)
    }
}

/// Creates a segment with its header, durably (file and directory entry).
fn new_segment(storage: &dyn Storage, first_seq: Seq, chain_in: u32) -> io::Result<(Box<dyn StorageFile>, u64)> {
    let mut file = storage.create(&segment_name(first_seq))?;
    file.write_all(&format::segment_header(first_seq, chain_in))?;
    file.sync_data()?;
    storage.sync_dir()?;
    Ok((file, SEGMENT_HEADER_LEN as u64))
}

/// Where the journal stands after recovery: what the writer continues from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalState {
    pub segments: Vec<(Seq, String)>,
    /// Bytes of the last segment (after any torn tail was cut).
    pub last_segment_len: u64,
    pub last_seq: Seq,
    pub chain: u32,
    /// The highest synced-through marker read (the writer continues from it).
    pub vouched: Seq,
}

/// A torn tail recovery cut off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub file: String,
    pub offset: u64,
    pub bytes_dropped: u64,
    pub reason: String,
}

/// What recovery found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The snapshot the state was loaded from: `(seq, state_hash)`.
    pub snapshot: Option<(Seq, u64)>,
    /// Snapshots passed over, newest first, and why.
    pub skipped_snapshots: Vec<(String, String)>,
    /// Records applied on top of the snapshot.
    pub records_applied: u64,
    /// The last `seq` in the recovered state.
    pub last_seq: Seq,
    pub torn_tail: Option<TornTail>,
    pub journal: JournalState,
    /// The directory's manifest (`None`: a new directory, or one written
    /// before manifests).
    pub manifest: Option<Manifest>,
    /// The annex of the snapshot loaded (empty if none): what the embedder
    /// kept with the state.
    pub snapshot_annex: Vec<u8>,
    /// The client order ids of the new orders applied after the snapshot:
    /// `(order id, user, cid)`.
    pub new_order_cids: Vec<(matching_core::OrderId, matching_core::UserId, Cid)>,
    /// The notes ([`Record::Note`]) applied after the snapshot, in `seq` order.
    pub notes: Vec<(Seq, Note)>,
}

/// Why the engine must not start.
#[derive(Debug)]
pub enum RecoveryError {
    /// Damage that is not a torn tail: valid history after it, or in a
    /// segment that is not the last. Never silently dropped.
    Corruption {
        file: String,
        offset: u64,
        reason: String,
    },
    /// The journal and the snapshots do not join up.
    Gap {
        reason: String,
    },
    Io(io::Error),
}

impl fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryError::Corruption { file, offset, reason } => {
                write!(f, "journal corrupted in {file} at byte {offset}: {reason}; refusing to start")
            }
            RecoveryError::Gap { reason } => write!(f, "journal does not join up: {reason}; refusing to start"),
            RecoveryError::Io(error) => write!(f, "cannot read the data directory: {error}"),
        }
    }
}

impl std::error::Error for RecoveryError {}

impl From<io::Error> for RecoveryError {
    fn from(error: io::Error) -> RecoveryError {
        RecoveryError::Io(error)
    }
}

/// Rebuilds the state from `storage`: the newest snapshot that loads (the
/// previous one if it is damaged), then every journal record after it.
///
/// `load_snapshot(seq, state_hash, body)` restores the state from a
/// snapshot body, returning `Err` if it cannot (it is then asked for the
/// previous snapshot, with the state reset by the caller). `apply` gets every
/// record after the snapshot, in order. A torn tail (damage with nothing valid
/// after it, in the last segment) is cut off and reported; any other damage
/// is a [`RecoveryError`]. With `repair` false nothing is changed on disk
/// (the torn tail is only reported): for `journal verify`.
pub fn recover(
    storage: &dyn Storage,
    repair: bool,
    mut load_snapshot: impl FnMut(Seq, u64, &[u8]) -> Result<(), String>,
    mut apply: impl FnMut(&Record),
) -> Result<RecoveryReport, RecoveryError> {
    let names = storage.list()?;
    // Changes to the directory are gathered and made only once recovery has
    // succeeded: a refused recovery leaves everything as it found it.
    let mut repairs: Vec<Repair> = names.iter().filter(|n| n.ends_with(".tmp")).cloned().map(Repair::Remove).collect();
    let mut report = RecoveryReport { manifest: read_manifest(storage)?, ..RecoveryReport::default() };
    if let Some(newest) = report.manifest.as_ref().and_then(|m| m.newest_segment)
        && !names.contains(&segment_name(newest))
    {
        return Err(RecoveryError::Gap {
            reason: format!(
                "the manifest names {} as the journal's newest segment and it is gone: acknowledged commands \
                 are missing",
                storage.describe(&segment_name(newest))
            ),
        });
    }
    let mut snapshots: Vec<(Seq, &String)> =
        names.iter().filter_map(|n| parse_name(n, "snapshot-", ".snap").map(|seq| (seq, n))).collect();
    snapshots.sort_unstable_by_key(|&(seq, _)| std::cmp::Reverse(seq));
    for (seq, name) in snapshots {
        let bytes = storage.read(name)?;
        let mut annex = &[][..];
        let loaded =
            format::parse_snapshot_with(&bytes).map_err(str::to_string).and_then(|(header_seq, hash, body, with)| {
                annex = with;
                if header_seq != seq {
                    return Err(format!("header says seq {header_seq}"));
                }
                // A seq is an order id: at most 2^53 - 1, so seq + 1 is never an overflow.
                if seq >= VALUE_MAX {
                    return Err(format!("seq {seq} is out of range"));
                }
                load_snapshot(seq, hash, body).map(|()| hash)
            });
        match loaded {
            Ok(hash) => {
                report.snapshot = Some((seq, hash));
                report.snapshot_annex = annex.to_vec();
                break;
            }
            Err(reason) => {
                report.skipped_snapshots.push((storage.describe(name), reason));
                // Set aside, so that it is never counted as one of the two kept.
                repairs.push(Repair::SetAside(name.clone()));
            }
        }
    }
    let start_seq = report.snapshot.map_or(1, |(seq, _)| seq + 1);
    report.last_seq = start_seq - 1;

    let mut segments: Vec<(Seq, &String)> =
        names.iter().filter_map(|n| parse_name(n, "journal-", ".log").map(|seq| (seq, n))).collect();
    segments.sort_unstable();
    let mut expected: Option<Seq> = None;
    let mut chain: Option<u32> = None;
    // The highest synced-through marker so far: damage at or before it is
    // damage to synced records.
    let mut vouched: Seq = 0;
    let count = segments.len();
    for (index, (named_seq, name)) in segments.into_iter().enumerate() {
        let last_segment = index + 1 == count;
        let bytes = storage.read(name)?;
        let file = storage.describe(name);
        let corruption = |offset: usize, reason: &str| RecoveryError::Corruption {
            file: file.clone(),
            offset: offset as u64,
            reason: reason.to_string(),
        };
        let (first_seq, chain_in) = match format::parse_segment_header(&bytes) {
            Ok(header) => header,
            Err(reason)
                if last_segment && later_valid_record(&bytes, SEGMENT_HEADER_LEN.min(bytes.len()), 0).is_none() =>
            {
                // A crash while the segment was being created: nothing in it.
                repairs.push(Repair::Remove(name.clone()));
                report.torn_tail =
                    Some(TornTail { file, offset: 0, bytes_dropped: bytes.len() as u64, reason: reason.to_string() });
                break;
            }
            Err(reason) => return Err(corruption(0, reason)),
        };
        if first_seq != named_seq {
            return Err(corruption(0, "segment header and file name disagree on the first seq"));
        }
        if first_seq == 0 || first_seq > VALUE_MAX {
            return Err(corruption(0, "segment's first seq is out of range"));
        }
        match expected {
            None if first_seq > start_seq => {
                return Err(RecoveryError::Gap {
                    reason: format!(
                        "the state needs records from seq {start_seq}, the oldest segment {file} starts at {first_seq}"
                    ),
                });
            }
            Some(next) if first_seq != next => {
                return Err(corruption(0, &format!("segment starts at seq {first_seq}, expected {next}")));
            }
            _ => {}
        }
        if let Some(previous) = chain
            && previous != chain_in
        {
            return Err(corruption(0, "segment does not continue the previous segment's chain"));
        }
        let mut next_seq = first_seq;
        let mut link = chain_in;
        let mut offset = SEGMENT_HEADER_LEN;
        while offset < bytes.len() {
            let parsed = format::parse_record(&bytes[offset..]).and_then(|record| {
                // A record whose body checks but whose chain field was never
                // written (zeros past a sector boundary) is torn, not stale.
                let unwritten_chain = record.chain_crc == 0
                    && record.chain_crc != format::chain(link, record.body_crc)
                    && format::get_u32(&bytes[offset..], 28) == 0;
                if unwritten_chain { Err("record's chain field was not written") } else { Ok(record) }
            });
            let record = match parsed {
                Ok(record) => record,
                Err(reason) => {
                    // Every segment but the last was synced whole before the next began.
                    if !last_segment {
                        return Err(corruption(offset, reason));
                    }
                    let after = after_damage(&bytes, offset + RECORD_ALIGN, next_seq);
                    if let Some((at, through)) = after.vouching_marker {
                        return Err(corruption(
                            offset,
                            &format!(
                                "{reason}, and a marker at byte {at} says the journal was synced through seq \
                                 {through}: damage to synced records"
                            ),
                        ));
                    }
                    // Nothing vouches for the damaged record or anything after
                    // it: they were written in the last group, which a power cut
                    // interrupted before its sync returned (a torn write, or a
                    // disk that persisted a later page and lost an earlier one),
                    // so none of it was acknowledged.
                    let reason = match after.first_record {
                        None => reason.to_string(),
                        Some(at) => format!(
                            "{reason}; whole records follow from byte {at}, but no marker says they were \
                             synced (pages of an unfinished sync reached the disk out of order)"
                        ),
                    };
                    repairs.push(Repair::Truncate(name.clone(), offset as u64));
                    report.torn_tail = Some(TornTail {
                        file: file.clone(),
                        offset: offset as u64,
                        bytes_dropped: (bytes.len() - offset) as u64,
                        reason,
                    });
                    break;
                }
            };
            if record.kind != KIND_SYNCED && (record.seq != next_seq || record.seq > VALUE_MAX) {
                return Err(corruption(offset, &format!("record has seq {}, expected {next_seq}", record.seq)));
            }
            if record.chain_crc != format::chain(link, record.body_crc) {
                return Err(corruption(offset, "record does not continue the chain (stale or misplaced block)"));
            }
            if record.kind == KIND_SYNCED {
                // It vouches for records before it, never for one to come,
                // and markers only move forward.
                if !record.payload.is_empty() || record.seq >= next_seq || record.seq < vouched {
                    return Err(corruption(
                        offset,
                        &format!("synced-through marker for seq {} does not fit here", record.seq),
                    ));
                }
                vouched = record.seq;
                link = record.chain_crc;
                offset += record.len;
                continue;
            }
            if record.seq >= start_seq {
                let parsed = match record.kind {
                    KIND_COMMAND => {
                        format::decode_command_with(record.seq, record.payload).map(|decoded| match decoded {
                            (command, None) => Record::Command(command),
                            (command, Some(cid)) => Record::NewWithCid(command, cid),
                        })
                    }
                    KIND_EXTERNAL if record.payload.is_empty() => Some(Record::External(record.seq)),
                    KIND_EXTERNAL => Note::new(record.payload).map(|note| Record::Note(record.seq, note)),
                    _ => None,
                };
                let Some(parsed) = parsed else {
                    return Err(corruption(offset, "record checks but its payload is not a command"));
                };
                if let Record::NewWithCid(Command { action: matching_core::Action::New(order), .. }, cid) = parsed {
                    report.new_order_cids.push((order.order_id, order.user, cid));
                }
                if let Record::Note(seq, note) = parsed {
                    report.notes.push((seq, note));
                }
                apply(&parsed);
                report.records_applied += 1;
                report.last_seq = record.seq;
            }
            link = record.chain_crc;
            next_seq += 1;
            offset += record.len;
        }
        expected = Some(next_seq);
        chain = Some(link);
        report.journal.segments.push((first_seq, name.clone()));
        // `offset` stops at the end of the last whole record (a torn tail was cut there).
        report.journal.last_segment_len = offset.min(bytes.len()) as u64;
        report.journal.chain = link;
    }
    // The journal must reach the snapshot, or the writer could not continue it.
    if let Some(next) = expected
        && next < start_seq
    {
        return Err(RecoveryError::Gap {
            reason: format!("the snapshot is at seq {}, the journal ends at {}", start_seq - 1, next - 1),
        });
    }
    report.journal.last_seq = report.last_seq;
    report.journal.vouched = vouched;
    if repair {
        for change in repairs {
            match change {
                Repair::Remove(name) => storage.remove(&name)?,
                Repair::Truncate(name, len) => storage.truncate(&name, len)?,
                Repair::SetAside(name) => storage.rename(&name, &format!("{name}.damaged"))?,
            }
        }
        storage.sync_dir()?;
    }
    Ok(report)
}

/// A change recovery makes to the directory once it has succeeded.
enum Repair {
    Remove(String),
    Truncate(String, u64),
    /// A snapshot that did not load: renamed `….damaged`, kept for inspection.
    SetAside(String),
}

/// The whole, self-consistent records after damage (whose chain cannot be
/// checked: it runs through the damaged record).
#[derive(Default)]
struct AfterDamage {
    /// The offset of the first record with a `seq` of at least the damaged one.
    first_record: Option<usize>,
    /// The first synced-through marker that covers the damaged `seq`:
    /// `(offset, its seq)`.
    vouching_marker: Option<(usize, Seq)>,
}

/// Scans `bytes` from `from` for whole records at or after `damaged_seq`.
fn after_damage(bytes: &[u8], from: usize, damaged_seq: Seq) -> AfterDamage {
    let mut found = AfterDamage::default();
    let mut offset = from.div_ceil(RECORD_ALIGN) * RECORD_ALIGN;
    while offset + RECORD_HEADER_LEN <= bytes.len() {
        if format::get_u32(bytes, offset) == format::RECORD_MAGIC
            && let Ok(record) = format::parse_record(&bytes[offset..])
            && record.seq >= damaged_seq
        {
            found.first_record.get_or_insert(offset);
            if record.kind == KIND_SYNCED {
                found.vouching_marker = Some((offset, record.seq));
                return found;
            }
        }
        offset += RECORD_ALIGN;
    }
    found
}

/// The offset of a whole, self-consistent record after `from` with a seq
/// of at least `min_seq`, if there is one.
fn later_valid_record(bytes: &[u8], from: usize, min_seq: Seq) -> Option<usize> {
    after_damage(bytes, from, min_seq).first_record
}

/// Writes a snapshot durably (a temporary file, `fdatasync`, rename,
/// directory sync), then keeps only the newest two. Returns the `seq` of the
/// older snapshot kept, if any: journal segments wholly at or before it are
/// no longer needed, even for a fall-back.
pub fn write_snapshot(storage: &dyn Storage, seq: Seq, state_hash: u64, body: &[u8]) -> io::Result<Option<Seq>> {
    write_snapshot_with(storage, seq, state_hash, body, &[])
}

/// As [`write_snapshot`], with `annex` after the body (see [`format::SnapshotHeader`]).
pub fn write_snapshot_with(
    storage: &dyn Storage,
    seq: Seq,
    state_hash: u64,
    body: &[u8],
    annex: &[u8],
) -> io::Result<Option<Seq>> {
    if annex.len() > u32::MAX as usize {
        return Err(io::Error::other("a snapshot annex is at most 4 GiB"));
    }
    let name = snapshot_name(seq);
    let temporary = format!("{name}.tmp");
    let mut file = storage.create(&temporary)?;
    file.write_all(&format::snapshot_header_with(seq, state_hash, body, annex))?;
    file.write_all(body)?;
    file.write_all(annex)?;
    file.sync_data()?;
    drop(file);
    storage.rename(&temporary, &name)?;
    storage.sync_dir()?;
    let mut kept: Vec<Seq> = storage.list()?.iter().filter_map(|n| parse_name(n, "snapshot-", ".snap")).collect();
    kept.sort_unstable_by_key(|&seq| std::cmp::Reverse(seq));
    for old in kept.iter().skip(2) {
        storage.remove(&snapshot_name(*old))?;
    }
    if kept.len() > 2 {
        storage.sync_dir()?;
    }
    Ok(kept.get(1).copied())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use matching_core::{Action, NewOrder, Side, Symbol};

    use super::*;
    use crate::storage::{CrashMode, SimStorage};

    fn command(seq: Seq) -> Record {
        let x = Symbol::new("X").unwrap();
        if seq.is_multiple_of(7) {
            return Record::External(seq);
        }
        Record::Command(Command {
            seq,
            timestamp_ns: seq * 10,
            action: Action::New(NewOrder::limit(seq, seq % 5, x, Side::Buy, 100 + seq % 3, 1 + seq % 9)),
        })
    }

    fn recovered(storage: &SimStorage) -> Result<(RecoveryReport, Vec<Record>), RecoveryError> {
        let mut records = Vec::new();
        let report = recover(storage, true, |_, _, _| Ok(()), |r| records.push(*r))?;
        Ok((report, records))
    }

    /// After a short write (part of a group reached the file, then ENOSPC)
    /// every later call fails, so a retry never appends the whole group
    /// after its own prefix; what reached the disk is a torn tail behind
    /// the last synced group, which recovery cuts.
    #[test]
    fn a_short_write_stops_the_writer_for_good() {
        let storage = SimStorage::new();
        let shared: Arc<dyn Storage> = Arc::new(storage.clone());
        let mut writer = JournalWriter::open(shared, &JournalState::default(), 1 << 20).unwrap();
        for seq in 1..=20 {
            writer.append(&command(seq)).unwrap();
        }
        writer.write().unwrap();
        writer.sync().unwrap();
        for seq in 21..=40 {
            writer.append(&command(seq)).unwrap();
        }
        storage.fail_writes_after(100);
        assert!(writer.write().is_err(), "the short write fails");
        storage.fail_writes(None); // the disk has room again: too late
        assert!(writer.write().is_err(), "a retry must not append the group after its prefix");
        assert!(writer.sync().is_err());
        assert!(writer.append(&command(41)).is_err());
        assert!(writer.failure().unwrap().contains("no space left"), "{:?}", writer.failure());
        // Whole records of the prefix are kept (they were journaled, if never
        // acknowledged); the partial one after them is a torn tail.
        let (report, records) = recovered(&storage).unwrap();
        assert!((20..40).contains(&report.last_seq), "{}", report.last_seq);
        assert!(report.torn_tail.is_some(), "the short write's prefix is a torn tail");
        assert_eq!(records, (1..=report.last_seq).map(command).collect::<Vec<_>>());
    }

    /// A failed `fdatasync` may have dropped the pages it was to write, and
    /// a second `fdatasync` may then report success: the writer must not
    /// let it, so nothing after the failure is ever reported durable.
    #[test]
    fn a_failed_sync_is_never_followed_by_a_success() {
        let storage = SimStorage::new();
        let shared: Arc<dyn Storage> = Arc::new(storage.clone());
        let mut writer = JournalWriter::open(shared, &JournalState::default(), 1 << 20).unwrap();
        for seq in 1..=10 {
            writer.append(&command(seq)).unwrap();
        }
        writer.write().unwrap();
        storage.fail_next_sync();
        assert!(writer.sync().is_err());
        assert!(writer.sync().is_err(), "a second sync after a failed one reported success");
        assert!(writer.write().is_err());
    }

    #[test]
    fn records_survive_rotation_and_recovery_continues_them() {
        let storage = SimStorage::new();
        let shared: Arc<dyn Storage> = Arc::new(storage.clone());
        let mut writer = JournalWriter::open(shared.clone(), &JournalState::default(), 4096).unwrap();
        for seq in 1..=500 {
            writer.append(&command(seq)).unwrap();
            if seq.is_multiple_of(10) {
                writer.write().unwrap();
                writer.sync().unwrap();
            }
        }
        writer.write().unwrap();
        writer.sync().unwrap();
        let (report, records) = recovered(&storage).unwrap();
        assert!(report.journal.segments.len() > 3, "rotation happened: {:?}", report.journal.segments);
        assert_eq!(records, (1..=500).map(command).collect::<Vec<_>>());
        assert_eq!((report.last_seq, report.torn_tail.clone()), (500, None));
        // A writer on the recovered state continues the chain.
        let mut writer = JournalWriter::open(shared, &report.journal, 4096).unwrap();
        for seq in 501..=520 {
            writer.append(&command(seq)).unwrap();
        }
        writer.write().unwrap();
        writer.sync().unwrap();
        let (report, records) = recovered(&storage).unwrap();
        assert_eq!((report.last_seq, records.len()), (520, 520));
    }

    #[test]
    fn a_torn_tail_is_cut_and_mid_log_damage_refused() {
        let storage = SimStorage::new();
        let shared: Arc<dyn Storage> = Arc::new(storage.clone());
        let mut writer = JournalWriter::open(shared, &JournalState::default(), 1 << 20).unwrap();
        for seq in 1..=50 {
            writer.append(&command(seq)).unwrap();
        }
        writer.write().unwrap();
        writer.sync().unwrap();
        let name = segment_name(1);
        let unvouched = storage.contents(&name).unwrap();
        // The idle journal vouches for its last group.
        assert!(writer.unvouched());
        writer.vouch().unwrap();
        writer.write().unwrap();
        writer.sync().unwrap();
        assert!(!writer.unvouched());
        let whole = storage.contents(&name).unwrap();
        assert_eq!(whole.len(), unvouched.len() + RECORD_HEADER_LEN, "one marker, no payload");
        // Cut in the marker: torn, the 50 records before it survive.
        storage.set_contents(&name, whole[..whole.len() - 5].to_vec());
        let (report, records) = recovered(&storage).unwrap();
        assert_eq!(records.len(), 50);
        assert!(report.torn_tail.is_some());
        // Flip a bit in record 10: the marker after it vouches for it, so it is corruption.
        let mut damaged = whole.clone();
        damaged[SEGMENT_HEADER_LEN + 9 * 80 + 40] ^= 1;
        storage.set_contents(&name, damaged);
        let error = recovered(&storage).unwrap_err();
        assert!(matches!(error, RecoveryError::Corruption { .. }), "{error}");
        assert!(error.to_string().contains(&name) && error.to_string().contains("synced through seq 50"), "{error}");
        // Without the marker, the same damage is a hole in a group whose sync
        // never returned, as far as the disk can tell: cut, nothing after it kept.
        let mut damaged = unvouched.clone();
        damaged[SEGMENT_HEADER_LEN + 9 * 80 + 40] ^= 1;
        storage.set_contents(&name, damaged);
        let (report, records) = recovered(&storage).unwrap();
        assert!((5..10).contains(&report.last_seq), "cut at the damage: {}", report.last_seq);
        assert_eq!(records, (1..=report.last_seq).map(command).collect::<Vec<_>>());
        let torn = report.torn_tail.unwrap();
        assert!(torn.reason.contains("out of order"), "{}", torn.reason);
    }

    /// A power cut while a group's `fdatasync` runs keeps any subset of its
    /// pages. Whatever subset survives, recovery starts, keeps every record
    /// a sync had returned for, and continues; damage a marker vouches for is
    /// refused. Prints its seed.
    #[test]
    fn pages_of_an_unfinished_sync_may_persist_in_any_order() {
        let seed = std::env::var("JOURNAL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        });
        println!("seed = {seed} (JOURNAL_SEED reruns it)");
        let mut x = seed | 1;
        let mut draw = |below: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % below
        };
        let mut holes = 0;
        for case in 0..300 {
            let storage = SimStorage::new();
            let shared: Arc<dyn Storage> = Arc::new(storage.clone());
            let segment_bytes = [4096, 16384, 1 << 20][draw(3) as usize];
            let mut writer = JournalWriter::open(shared.clone(), &JournalState::default(), segment_bytes).unwrap();
            let mut seq = 0;
            let mut synced = 0;
            let groups = 1 + draw(12);
            for group in 0..groups {
                for _ in 0..1 + draw(120) {
                    seq += 1;
                    writer.append(&command(seq)).unwrap();
                }
                writer.write().unwrap();
                // The last group's sync is the one the power cut interrupts.
                if group + 1 < groups {
                    writer.sync().unwrap();
                    synced = seq;
                    if draw(3) == 0 {
                        writer.vouch().unwrap();
                    }
                }
            }
            let page = [512, 4096][draw(2) as usize];
            let crashed = storage.crash(CrashMode::RandomPages { page, seed: draw(u64::MAX) });
            let context = format!("seed {seed} case {case}: {groups} groups, {seq} records, {synced} synced");
            let (report, records) = recovered(&crashed).unwrap_or_else(|e| panic!("{context}: {e}"));
            assert!(report.last_seq >= synced, "{context}: recovered only through {}", report.last_seq);
            holes += report.torn_tail.as_ref().is_some_and(|t| t.reason.contains("out of order")) as u32;
            assert_eq!(records, (1..=report.last_seq).map(command).collect::<Vec<_>>(), "{context}");
            // The recovered journal continues, and a second recovery agrees.
            let mut writer = JournalWriter::open(Arc::new(crashed.clone()), &report.journal, segment_bytes).unwrap();
            let next = report.last_seq + 1;
            writer.append(&command(next)).unwrap();
            writer.write().unwrap();
            writer.sync().unwrap();
            let (again, records) = recovered(&crashed).unwrap_or_else(|e| panic!("{context}, continued: {e}"));
            assert_eq!((again.last_seq, records.len() as u64), (next, next), "{context}");
        }
        assert!(holes >= 10, "seed {seed}: only {holes} crashes left a hole with records after it");
        println!("{holes} of 300 crashes left a hole with whole records after it");
    }

    /// A new order's client order id is journaled with it and comes back
    /// from recovery; a snapshot keeps its annex.
    #[test]
    fn client_order_ids_and_the_snapshot_annex_survive() {
        let storage = SimStorage::new();
        let shared: Arc<dyn Storage> = Arc::new(storage.clone());
        let mut writer = JournalWriter::open(shared, &JournalState::default(), 1 << 20).unwrap();
        let Record::Command(new) = command(1) else { unreachable!() };
        let cid = Cid::new("abc:1").unwrap();
        writer.append(&Record::NewWithCid(new, cid)).unwrap();
        for seq in 2..=5 {
            writer.append(&command(seq)).unwrap();
        }
        writer.write().unwrap();
        writer.sync().unwrap();
        let (report, records) = recovered(&storage).unwrap();
        assert_eq!(records[0], Record::NewWithCid(new, cid));
        assert_eq!(report.new_order_cids, vec![(1, new_user(&new), cid)]);
        write_snapshot_with(&storage, 3, 3, b"state", b"annex bytes").unwrap();
        let mut loaded = None;
        let report = recover(
            &storage,
            false,
            |seq, _, body| {
                loaded = Some((seq, body.to_vec()));
                Ok(())
            },
            |_| {},
        )
        .unwrap();
        assert_eq!(loaded, Some((3, b"state".to_vec())));
        assert_eq!(report.snapshot_annex, b"annex bytes");
        assert!(report.new_order_cids.is_empty(), "the tagged order is before the snapshot");
    }

    /// A note is journaled as an external record with its bytes, comes back
    /// from recovery in `seq` order, and only those after the snapshot are reported.
    #[test]
    fn notes_are_journaled_and_recovered_after_the_snapshot() {
        let storage = SimStorage::new();
        let shared: Arc<dyn Storage> = Arc::new(storage.clone());
        let mut writer = JournalWriter::open(shared, &JournalState::default(), 1 << 20).unwrap();
        let first = Note::new(b"K\x01user-7").unwrap();
        let second = Note::new(&[9; NOTE_MAX]).unwrap();
        assert!(Note::new(&[]).is_none() && Note::new(&[0; NOTE_MAX + 1]).is_none());
        for seq in 1..=6 {
            let record = match seq {
                2 => Record::Note(seq, first),
                5 => Record::Note(seq, second),
                _ => command(seq),
            };
            writer.append(&record).unwrap();
        }
        writer.write().unwrap();
        writer.sync().unwrap();
        let (report, records) = recovered(&storage).unwrap();
        assert_eq!((records[1], records[4]), (Record::Note(2, first), Record::Note(5, second)));
        assert_eq!(report.notes, vec![(2, first), (5, second)]);
        write_snapshot_with(&storage, 3, 3, b"state", b"").unwrap();
        let report = recover(&storage, false, |_, _, _| Ok(()), |_| {}).unwrap();
        assert_eq!(report.notes, vec![(5, second)], "the first note is in the snapshot");
    }

    fn new_user(command: &Command) -> u64 {
        match command.action {
            Action::New(order) => order.user,
            _ => unreachable!(),
        }
    }

    /// A marker records that the journal was synced through a seq; one that
    /// claims a record not yet written, or goes backwards, is damage.
    #[test]
    fn a_marker_that_does_not_fit_is_refused() {
        let storage = SimStorage::new();
        let mut bytes = format::segment_header(1, 0).to_vec();
        let mut link = 0;
        for seq in 1..=3 {
            let Record::Command(c) = command(seq) else { unreachable!() };
            let mut payload = Vec::new();
            format::encode_command(&mut payload, &c);
            link = format::append_record(&mut bytes, seq, KIND_COMMAND, &payload, link);
        }
        let good = bytes.clone();
        format::append_record(&mut bytes, 4, KIND_SYNCED, &[], link);
        storage.set_contents(&segment_name(1), bytes);
        let error = recovered(&storage).unwrap_err();
        assert!(error.to_string().contains("marker for seq 4 does not fit"), "{error}");
        let mut bytes = good;
        format::append_record(&mut bytes, 3, KIND_SYNCED, &[], link);
        storage.set_contents(&segment_name(1), bytes);
        let (report, records) = recovered(&storage).unwrap();
        assert_eq!((records.len(), report.journal.vouched), (3, 3));
    }
}
