//! Damage that is not a torn tail: valid history after it, or in a segment
//! that is not the last, or a journal that does not join up. Recovery must
//! return `RecoveryError::Corruption` naming the file and the offset (or
//! `Gap`), and must change nothing on disk, even when asked to repair.

use std::collections::BTreeMap;
use std::sync::Arc;

use matching_core::{Action, Command, NewOrder, Seq, Side, Symbol};
use matching_journal::format::{self, KIND_COMMAND, KIND_EXTERNAL, SEGMENT_HEADER_LEN};
use matching_journal::storage::{CrashMode, SimStorage, Storage};
use matching_journal::{
    JournalState, JournalWriter, Record, RecoveryError, RecoveryReport, recover, segment_name, write_snapshot,
};

const ONE_SEGMENT: u64 = 1 << 30;
const SMALL_SEGMENT: u64 = 4096;

/// Record `seq` of journal `generation` (see `torn_tail.rs`): commands of
/// every kind and external records.
fn record(seq: Seq, generation: u64) -> Record {
    let symbol = Symbol::new(["X", "BTC-USD", "A-LONGER-SYMBOL-NAME"][(seq % 3) as usize]).unwrap();
    let user = generation * 1000 + seq % 7;
    let action = match seq % 6 {
        0 => return Record::External(seq),
        1 | 2 => Action::New(NewOrder::limit(seq, user, symbol, Side::Buy, 100 + seq % 5, 1 + seq % 9)),
        3 => Action::New(NewOrder::market(seq, user, symbol, Side::Sell, 1 + seq % 4)),
        4 => Action::Cancel { user, order_id: seq / 2 + 1 },
        _ => Action::Modify { user, order_id: seq / 2 + 1, price: Some(99), qty: seq.is_multiple_of(2).then_some(3) },
    };
    Record::Command(Command { seq, timestamp_ns: seq * 1_000 + generation, action })
}

/// A journal of `records` (seq from `state.last_seq + 1`), synced and
/// vouched for by a synced-through marker (as the engine's journal leaves
/// it once idle): damage to any of them is damage to synced records.
fn write(storage: &SimStorage, state: &JournalState, segment_bytes: u64, records: &[Record]) {
    let shared: Arc<dyn Storage> = Arc::new(storage.clone());
    let mut writer = JournalWriter::open(shared, state, segment_bytes).unwrap();
    for record in records {
        writer.append(record).unwrap();
        // Written one by one: the writer rotates only between writes.
        writer.write().unwrap();
    }
    writer.sync().unwrap();
    writer.vouch().unwrap();
    writer.write().unwrap();
    writer.sync().unwrap();
}

fn journal(n: Seq, segment_bytes: u64, generation: u64) -> SimStorage {
    let storage = SimStorage::new();
    let records: Vec<Record> = (1..=n).map(|seq| record(seq, generation)).collect();
    write(&storage, &JournalState::default(), segment_bytes, &records);
    storage
}

fn recovered(storage: &dyn Storage, repair: bool) -> Result<(RecoveryReport, Vec<Record>), RecoveryError> {
    let mut applied = Vec::new();
    // Snapshots hold nothing here but are accepted (their hash is the seq).
    let report = recover(
        storage,
        repair,
        |seq, hash, body| if hash == seq && body == b"state" { Ok(()) } else { Err("not a test snapshot".into()) },
        |r| applied.push(*r),
    )?;
    Ok((report, applied))
}

fn files(storage: &dyn Storage) -> BTreeMap<String, Vec<u8>> {
    storage.list().unwrap().into_iter().map(|name| (name.clone(), storage.read(&name).unwrap())).collect()
}

fn record_spans(segment: &[u8]) -> Vec<(usize, usize, Seq)> {
    format::records(segment)
        .map(|(offset, record)| {
            let record = record.expect("an undamaged segment");
            (offset, record.len, record.seq)
        })
        .collect()
}

fn segments(storage: &SimStorage) -> Vec<String> {
    storage.list().unwrap().into_iter().filter(|n| n.starts_with("journal-")).collect()
}

/// Recovery of `storage` (with repair) must refuse with `Corruption` in
/// `file` at `offset` (when given), and leave every file as it was.
/// Returns the reason.
fn assert_corruption(storage: &SimStorage, file: &str, offset: Option<u64>, context: &str) -> String {
    let before = files(storage);
    for repair in [false, true] {
        match recovered(storage, repair) {
            Err(RecoveryError::Corruption { file: got_file, offset: got_offset, reason }) => {
                assert_eq!(got_file, storage.describe(file), "{context}: the error names the damaged file ({reason})");
                if let Some(offset) = offset {
                    assert_eq!(got_offset, offset, "{context}: the error names the damaged offset ({reason})");
                }
                let message = RecoveryError::Corruption { file: got_file, offset: got_offset, reason }.to_string();
                assert!(
                    message.contains(&storage.describe(file)) && message.contains("refusing to start"),
                    "{message}"
                );
            }
            Err(other) => panic!("{context}: expected corruption, got {other}"),
            Ok((report, _)) => {
                panic!("{context}: recovered ({} records, torn tail {:?})", report.last_seq, report.torn_tail)
            }
        }
        assert!(files(storage) == before, "{context}: a refused recovery (repair {repair}) changed the files");
    }
    match recovered(storage, true) {
        Err(RecoveryError::Corruption { reason, .. }) => reason,
        _ => unreachable!(),
    }
}

fn assert_gap(storage: &SimStorage, context: &str) -> String {
    let before = files(storage);
    let reason = match recovered(storage, true) {
        Err(RecoveryError::Gap { reason }) => reason,
        Err(other) => panic!("{context}: expected a gap, got {other}"),
        Ok((report, _)) => panic!("{context}: recovered {} records", report.last_seq),
    };
    assert!(files(storage) == before, "{context}: a refused recovery changed the files");
    reason
}

/// Every bit of a record in the middle of the (only, hence last) segment:
/// valid records follow, so it is corruption at that record's offset.
#[test]
fn every_flipped_bit_of_a_middle_record_is_corruption() {
    let whole = journal(40, ONE_SEGMENT, 0);
    let segment = segment_name(1);
    let bytes = whole.contents(&segment).unwrap();
    let spans = record_spans(&bytes);
    // A command with a payload and an external record (header only).
    for index in [19, 29] {
        let (at, len, seq) = spans[index];
        for bit in 0..len * 8 {
            let storage = whole.crash(CrashMode::LoseUnsynced);
            let mut damaged = bytes.clone();
            damaged[at + bit / 8] ^= 1 << (bit % 8);
            storage.set_contents(&segment, damaged);
            assert_corruption(&storage, &segment, Some(at as u64), &format!("record {seq}, bit {bit} flipped"));
        }
    }
}

/// A flipped bit in the last record of a segment that is not the last one
/// is corruption, even with nothing after it in that segment; so is a cut
/// anywhere in it. (Rotation syncs a segment before the next one exists.)
#[test]
fn damage_in_a_segment_that_is_not_the_last_is_corruption() {
    let whole = journal(150, SMALL_SEGMENT, 0);
    let names = segments(&whole);
    assert!(names.len() >= 3, "rotation happened: {names:?}");
    for name in &names[..names.len() - 1] {
        let bytes = whole.contents(name).unwrap();
        let spans = record_spans(&bytes);
        for &(at, len, seq) in [spans[spans.len() / 2], spans[spans.len() - 1]].iter() {
            for bit in (0..len * 8).step_by(3) {
                let storage = whole.crash(CrashMode::LoseUnsynced);
                let mut damaged = bytes.clone();
                damaged[at + bit / 8] ^= 1 << (bit % 8);
                storage.set_contents(name, damaged);
                assert_corruption(&storage, name, Some(at as u64), &format!("{name}: record {seq}, bit {bit}"));
            }
        }
        // Cut inside its last record: corruption there. Cut at a record
        // boundary: the next segment does not continue it.
        let (at, len, _) = spans[spans.len() - 1];
        for cut in at..at + len {
            let storage = whole.crash(CrashMode::LoseUnsynced);
            storage.set_contents(name, bytes[..cut].to_vec());
            let context = format!("{name} cut at byte {cut}");
            if cut == at {
                let next = &names[names.iter().position(|n| n == name).unwrap() + 1];
                let reason = assert_corruption(&storage, next, Some(0), &context);
                assert!(reason.contains("expected"), "{context}: {reason}");
            } else {
                assert_corruption(&storage, name, Some(at as u64), &context);
            }
        }
        // Its header damaged.
        for bit in (0..SEGMENT_HEADER_LEN * 8).step_by(5) {
            let storage = whole.crash(CrashMode::LoseUnsynced);
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            storage.set_contents(name, damaged);
            assert_corruption(&storage, name, Some(0), &format!("{name}: header bit {bit}"));
        }
    }
    // The last segment's header damaged while records follow it: not a
    // half-created segment, so corruption.
    let last = names.last().unwrap();
    let mut damaged = whole.contents(last).unwrap();
    damaged[3] ^= 0x10;
    let storage = whole.crash(CrashMode::LoseUnsynced);
    storage.set_contents(last, damaged);
    assert_corruption(&storage, last, Some(0), "the last segment's header damaged, records after it");
}

/// A record overwritten by a valid record of another position (a stale or
/// misplaced block): its checksum holds, but its seq and the chain do not.
#[test]
fn a_stale_block_is_corruption() {
    let whole = journal(60, ONE_SEGMENT, 0);
    let segment = segment_name(1);
    let bytes = whole.contents(&segment).unwrap();
    let spans = record_spans(&bytes);
    // Another position's record of the same length.
    let (at, len, seq) = spans[25];
    let &(other_at, _, other_seq) = spans
        .iter()
        .find(|&&(o, l, s)| l == len && s != seq && s + 6 != seq && o != at)
        .expect("a record of the same length");
    let mut damaged = bytes.clone();
    damaged.copy_within(other_at..other_at + len, at);
    let storage = whole.crash(CrashMode::LoseUnsynced);
    storage.set_contents(&segment, damaged);
    let reason =
        assert_corruption(&storage, &segment, Some(at as u64), &format!("record {seq} replaced by {other_seq}"));
    assert!(reason.contains(&format!("seq {other_seq}")), "{reason}");

    // The same record (same seq, same bytes) from another history: a journal
    // that differed at record 2. Only the chain tells them apart, in the
    // middle and as the last record.
    let mut other_records: Vec<Record> = (1..=60).map(|s| record(s, 0)).collect();
    other_records[1] = record(2, 7);
    let other_storage = SimStorage::new();
    write(&other_storage, &JournalState::default(), ONE_SEGMENT, &other_records);
    let other_bytes = other_storage.contents(&segment).unwrap();
    assert_eq!(other_bytes.len(), bytes.len(), "the histories have the same layout");
    for index in [25, 59] {
        let (at, len, seq) = spans[index];
        assert_eq!(bytes[at..at + 24], other_bytes[at..at + 24], "the record's header up to the chain is the same");
        assert_ne!(bytes[at + 24..at + 28], other_bytes[at + 24..at + 28], "its chain differs");
        let mut damaged = bytes.clone();
        damaged[at..at + len].copy_from_slice(&other_bytes[at..at + len]);
        let storage = whole.crash(CrashMode::LoseUnsynced);
        storage.set_contents(&segment, damaged);
        let reason =
            assert_corruption(&storage, &segment, Some(at as u64), &format!("record {seq} from another history"));
        assert!(reason.contains("chain"), "{reason}");
    }
}

/// A record whose checksums hold but whose payload is not a command (or
/// whose kind is unknown) is corruption, not a torn tail, even at the end.
#[test]
fn a_checksummed_record_that_is_not_a_command_is_corruption() {
    let n = 10;
    let whole = journal(n, ONE_SEGMENT, 0);
    let segment = segment_name(1);
    let bytes = whole.contents(&segment).unwrap();
    let spans = record_spans(&bytes);
    let last = format::parse_record(&bytes[spans[spans.len() - 1].0..]).unwrap();
    // An external record carries no payload, or a note of at most NOTE_MAX bytes.
    let long_note = [7u8; matching_journal::NOTE_MAX + 1];
    for (kind, payload) in
        [(KIND_COMMAND, &b"not a command"[..]), (KIND_COMMAND, &[][..]), (9, &[][..]), (KIND_EXTERNAL, &long_note[..])]
    {
        let mut damaged = bytes.clone();
        format::append_record(&mut damaged, n + 1, kind, payload, last.chain_crc);
        let storage = whole.crash(CrashMode::LoseUnsynced);
        storage.set_contents(&segment, damaged);
        assert_corruption(&storage, &segment, Some(bytes.len() as u64), &format!("kind {kind}, payload {payload:?}"));
    }
}

/// Segments missing, misnamed, or not joining the snapshot.
#[test]
fn a_journal_that_does_not_join_up_is_refused() {
    let whole = journal(150, SMALL_SEGMENT, 0);
    let names = segments(&whole);
    assert!(names.len() >= 4, "rotation happened: {names:?}");

    // A missing middle segment: the next one does not continue the journal.
    let storage = whole.crash(CrashMode::LoseUnsynced);
    storage.remove(&names[1]).unwrap();
    storage.sync_dir().unwrap();
    let reason = assert_corruption(&storage, &names[2], Some(0), "a missing middle segment");
    assert!(reason.contains("expected"), "{reason}");

    // The first segment missing, no snapshot: the state needs seq 1.
    let storage = whole.crash(CrashMode::LoseUnsynced);
    storage.remove(&names[0]).unwrap();
    storage.sync_dir().unwrap();
    let reason = assert_gap(&storage, "no snapshot and no first segment");
    assert!(reason.contains("from seq 1"), "{reason}");

    // A segment renamed: its header and its name disagree.
    let storage = whole.crash(CrashMode::LoseUnsynced);
    let first_of_1: Seq = names[1].trim_start_matches("journal-").trim_end_matches(".log").parse().unwrap();
    let renamed = segment_name(first_of_1 + 1);
    storage.rename(&names[1], &renamed).unwrap();
    storage.sync_dir().unwrap();
    assert_corruption(&storage, &renamed, Some(0), "a segment under another name");

    // A snapshot at S, and the oldest segment starts after S + 1.
    let first_of_2: Seq = names[2].trim_start_matches("journal-").trim_end_matches(".log").parse().unwrap();
    let storage = whole.crash(CrashMode::LoseUnsynced);
    write_snapshot(&storage, first_of_2 - 3, first_of_2 - 3, b"state").unwrap();
    storage.remove(&names[0]).unwrap();
    storage.remove(&names[1]).unwrap();
    storage.sync_dir().unwrap();
    let reason = assert_gap(&storage, "the journal starts after the snapshot");
    assert!(reason.contains(&format!("from seq {}", first_of_2 - 2)), "{reason}");
    // With the segment the snapshot needs, it joins up.
    let joined = whole.crash(CrashMode::LoseUnsynced);
    write_snapshot(&joined, first_of_2 - 3, first_of_2 - 3, b"state").unwrap();
    joined.remove(&names[0]).unwrap();
    let (report, applied) = recovered(&joined, true).unwrap();
    assert_eq!(report.snapshot, Some((first_of_2 - 3, first_of_2 - 3)));
    assert_eq!(applied.first().map(Record::seq), Some(first_of_2 - 2));
    assert_eq!(report.last_seq, 150);

    // A snapshot beyond the end of the journal.
    let storage = whole.crash(CrashMode::LoseUnsynced);
    write_snapshot(&storage, 200, 200, b"state").unwrap();
    let reason = assert_gap(&storage, "the snapshot is ahead of the journal");
    assert!(reason.contains("200"), "{reason}");
}

/// Refusing to start leaves the directory exactly as it was for the
/// operator to look at, including a snapshot that was being written
/// (`*.tmp`: possibly the newest state there is).
///
/// A regression test: recovery once deleted `*.tmp` files before it read
/// the journal, so a refused recovery (with repair) had changed the directory.
#[test]
fn a_refused_recovery_keeps_temporary_files() {
    let whole = journal(40, ONE_SEGMENT, 0);
    let segment = segment_name(1);
    let mut damaged = whole.contents(&segment).unwrap();
    let (at, _, _) = record_spans(&damaged)[10];
    damaged[at + 9] ^= 4;
    let storage = whole.crash(CrashMode::LoseUnsynced);
    storage.set_contents(&segment, damaged);
    storage.set_contents("snapshot-00000000000000000035.snap.tmp", b"a snapshot being written".to_vec());
    assert_corruption(&storage, &segment, Some(at as u64), "corruption beside a temporary snapshot");
}

/// The same for a torn tail: when recovery then refuses (the journal does
/// not reach the snapshot), the tail must still be there.
///
/// A regression test: the torn tail was once cut while the last segment
/// was read, and the join with the snapshot checked only afterwards.
#[test]
fn a_refused_recovery_does_not_cut_a_torn_tail() {
    let whole = journal(40, ONE_SEGMENT, 0);
    let segment = segment_name(1);
    let mut bytes = whole.contents(&segment).unwrap();
    bytes.extend_from_slice(&[0; 16]);
    let storage = whole.crash(CrashMode::LoseUnsynced);
    storage.set_contents(&segment, bytes);
    write_snapshot(&storage, 50, 50, b"state").unwrap();
    assert_gap(&storage, "a torn tail, and a snapshot beyond the journal");
}
