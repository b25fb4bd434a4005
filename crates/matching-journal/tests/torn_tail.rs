//! Torn tails: whatever a crash leaves at the end of the last segment (a
//! record cut at any byte, zeros or junk after the last record, a segment
//! whose header was being written) is cut off and reported, every record
//! before the damage is recovered and nothing after it, and a writer on the
//! recovered state continues cleanly.
//!
//! Randomized parts use a fixed, printed seed (`TORN_TAIL_SEED` overrides it).

use std::collections::BTreeMap;
use std::sync::Arc;

use matching_core::{Action, Command, NewOrder, Seq, Side, Symbol};
use matching_journal::format::{self, RECORD_MAGIC, SEGMENT_HEADER_LEN};
use matching_journal::storage::{CrashMode, FsStorage, SimStorage, Storage};
use matching_journal::{JournalState, JournalWriter, Record, RecoveryReport, recover, segment_name};

/// Large enough that the journal is one segment.
const ONE_SEGMENT: u64 = 1 << 30;
/// The smallest segment the writer allows: rotation every ~40 records.
const SMALL_SEGMENT: u64 = 4096;

/// The record of `seq` in the journal of generation `generation`: every
/// command kind and external records, payloads of several lengths, and a
/// different record per generation (so that records written after recovery
/// cannot be confused with the ones before).
fn record(seq: Seq, generation: u64) -> Record {
    let symbols = ["X", "BTC-USD", "A-LONGER-SYMBOL-NAME"];
    let symbol = Symbol::new(symbols[(seq % 3) as usize]).unwrap();
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

fn records(seqs: std::ops::RangeInclusive<Seq>, generation: u64) -> Vec<Record> {
    seqs.map(|seq| record(seq, generation)).collect()
}

/// Appends `records` with a writer continuing `state`, syncing every few
/// records and at the end.
fn append(storage: &SimStorage, state: &JournalState, segment_bytes: u64, records: &[Record]) {
    let shared: Arc<dyn Storage> = Arc::new(storage.clone());
    let mut writer = JournalWriter::open(shared, state, segment_bytes).unwrap();
    for (i, record) in records.iter().enumerate() {
        writer.append(record).unwrap();
        if i % 5 == 4 {
            writer.write().unwrap();
            writer.sync().unwrap();
        }
    }
    writer.write().unwrap();
    writer.sync().unwrap();
}

/// A fresh journal of records `1..=n` (generation 0).
fn journal(n: Seq, segment_bytes: u64) -> SimStorage {
    let storage = SimStorage::new();
    append(&storage, &JournalState::default(), segment_bytes, &records(1..=n, 0));
    storage
}

fn recovered(
    storage: &dyn Storage,
    repair: bool,
) -> Result<(RecoveryReport, Vec<Record>), matching_journal::RecoveryError> {
    let mut applied = Vec::new();
    let report =
        recover(storage, repair, |_, _, _| Err("no snapshots in these tests".to_string()), |r| applied.push(*r))?;
    Ok((report, applied))
}

/// Every file and its bytes.
fn files(storage: &dyn Storage) -> BTreeMap<String, Vec<u8>> {
    storage.list().unwrap().into_iter().map(|name| (name.clone(), storage.read(&name).unwrap())).collect()
}

/// `(offset, bytes, seq)` of every record of a segment file.
fn record_spans(segment: &[u8]) -> Vec<(usize, usize, Seq)> {
    format::records(segment)
        .map(|(offset, record)| {
            let record = record.expect("an undamaged segment");
            (offset, record.len, record.seq)
        })
        .collect()
}

fn last_segment(storage: &SimStorage) -> String {
    storage.list().unwrap().into_iter().rfind(|n| n.starts_with("journal-")).expect("a segment")
}

/// After a crash left `storage` as it is: recovery must report
/// `want_torn` (offset and bytes dropped in `segment`, or none), recover
/// exactly `want_last` records of generation 0, change nothing when not
/// repairing, and, repaired, let a writer continue so that the next
/// recovery gives the old prefix and the new records, with no torn tail.
fn check_recovery(
    storage: &SimStorage,
    segment_bytes: u64,
    segment: &str,
    want_last: Seq,
    want_torn: Option<(u64, u64)>,
    context: &str,
) {
    let before = files(storage);
    let (report, applied) = recovered(storage, false).unwrap_or_else(|e| panic!("{context}: refused: {e}"));
    assert!(files(storage) == before, "{context}: recovery without repair changed the files");
    let (repaired, applied_repaired) = recovered(storage, true).unwrap_or_else(|e| panic!("{context}: refused: {e}"));
    assert_eq!((&report, &applied), (&repaired, &applied_repaired), "{context}: repair changed the outcome");

    assert_eq!(applied, records(1..=want_last, 0), "{context}: not exactly the records before the damage");
    assert_eq!((report.last_seq, report.records_applied), (want_last, want_last), "{context}");
    let torn = report.torn_tail.as_ref().map(|t| (t.offset, t.bytes_dropped));
    assert_eq!(torn, want_torn, "{context}: torn tail {:?}", report.torn_tail);
    if let Some(tail) = &report.torn_tail {
        assert_eq!(tail.file, storage.describe(segment), "{context}: the torn tail names its file");
        assert!(!tail.reason.is_empty());
        // Repaired: cut there (or, at offset 0, the half-created segment removed).
        match storage.contents(segment) {
            Some(bytes) => assert_eq!(bytes.len() as u64, tail.offset, "{context}: the tail was not cut"),
            None => assert_eq!(tail.offset, 0, "{context}: a segment with a valid header was removed"),
        }
    }

    let new = records(want_last + 1..=want_last + 60, 1);
    append(storage, &repaired.journal, segment_bytes, &new);
    let (again, applied) =
        recovered(storage, true).unwrap_or_else(|e| panic!("{context}: refused after continuing: {e}"));
    let mut want = records(1..=want_last, 0);
    want.extend(new);
    assert!(applied == want, "{context}: after continuing, recovery did not give the old prefix and the new records");
    assert_eq!((again.last_seq, again.torn_tail), (want_last + 60, None), "{context}: after continuing");
}

/// A journal cut at every byte of its last few records (in one segment, and
/// in the last of several): the records before the cut one survive.
#[test]
fn a_cut_at_every_byte_of_the_last_records_is_a_torn_tail() {
    for (segment_bytes, n) in [(ONE_SEGMENT, 40), (SMALL_SEGMENT, 150)] {
        let whole = journal(n, segment_bytes);
        let segment = last_segment(&whole);
        let bytes = whole.contents(&segment).unwrap();
        let spans = record_spans(&bytes);
        assert!(spans.len() >= 4, "the last segment holds a few records");
        let (from, _, _) = spans[spans.len() - 4];
        for cut in from..=bytes.len() {
            let storage = whole.crash(CrashMode::LoseUnsynced);
            storage.set_contents(&segment, bytes[..cut].to_vec());
            // The last record that ends at or before the cut survives; the
            // one the cut is inside is the torn tail.
            let whole_records = spans.iter().filter(|(at, len, _)| at + len <= cut).count();
            let last = spans[..whole_records].last().map_or(spans[0].2 - 1, |&(_, _, seq)| seq);
            let torn = spans
                .get(whole_records)
                .filter(|(at, _, _)| *at < cut)
                .map(|&(at, _, _)| (at as u64, (cut - at) as u64));
            let context = format!("segment_bytes {segment_bytes}, {segment} cut at byte {cut} of {}", bytes.len());
            check_recovery(&storage, segment_bytes, &segment, last, torn, &context);
        }
    }
}

/// Zeros after the last record (a file extended but never written):
/// every record recovered, the zeros reported and cut.
#[test]
fn zeros_after_the_last_record_are_a_torn_tail() {
    let n = 30;
    let whole = journal(n, ONE_SEGMENT);
    let segment = segment_name(1);
    let bytes = whole.contents(&segment).unwrap();
    for zeros in [1usize, 2, 3, 7, 8, 9, 16, 31, 32, 33, 40, 64, 100, 511, 512, 4096, 65_536] {
        let storage = whole.crash(CrashMode::LoseUnsynced);
        let mut damaged = bytes.clone();
        damaged.resize(bytes.len() + zeros, 0);
        storage.set_contents(&segment, damaged);
        let torn = Some((bytes.len() as u64, zeros as u64));
        check_recovery(&storage, ONE_SEGMENT, &segment, n, torn, &format!("{zeros} zeros appended"));
    }
}

/// xorshift64: the junk of these tests.
struct Junk(u64);

impl Junk {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn seed() -> u64 {
    std::env::var("TORN_TAIL_SEED").map_or(0x5eed_7041, |s| s.trim().parse().expect("TORN_TAIL_SEED is a u64"))
}

/// Junk after the last record, including junk that starts like a record
/// (the record magic, a plausible length, the next seq): recovered and cut.
#[test]
fn garbage_after_the_last_record_is_a_torn_tail() {
    let seed = seed();
    eprintln!("seed = {seed} (TORN_TAIL_SEED={seed} reruns it)");
    let mut junk = Junk(seed | 1);
    let n = 30;
    let whole = journal(n, ONE_SEGMENT);
    let segment = segment_name(1);
    let bytes = whole.contents(&segment).unwrap();
    for case in 0..200 {
        let len = match case % 4 {
            0 => 1 + (junk.next() % 32) as usize,
            1 => 32 + (junk.next() % 200) as usize,
            _ => 1 + (junk.next() % 5000) as usize,
        };
        let mut tail = junk.bytes(len);
        if case % 2 == 1 && len >= 16 {
            // A record header's start: magic, a small length, the next seq.
            tail[..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
            tail[4..8].copy_from_slice(&(junk.next() % 80).to_le_bytes()[..4]);
            tail[8..16].copy_from_slice(&(n + 1).to_le_bytes());
        }
        let storage = whole.crash(CrashMode::LoseUnsynced);
        storage.set_contents(&segment, [bytes.as_slice(), &tail].concat());
        let torn = Some((bytes.len() as u64, len as u64));
        check_recovery(&storage, ONE_SEGMENT, &segment, n, torn, &format!("seed {seed} case {case}: {len} junk bytes"));
    }
    // The next record written whole, then part of the one after it and junk.
    let mut next = Vec::new();
    let last = format::parse_record(&bytes[record_spans(&bytes).last().unwrap().0..]).unwrap();
    let mut payload = Vec::new();
    let Record::Command(command) = record(n + 2, 0) else { panic!("seq n + 2 is a command") };
    format::encode_command(&mut payload, &command);
    let link = format::append_record(&mut next, n + 1, format::KIND_EXTERNAL, &[], last.chain_crc);
    format::append_record(&mut next, n + 2, format::KIND_COMMAND, &payload, link);
    for cut in 33..next.len() {
        let storage = whole.crash(CrashMode::LoseUnsynced);
        let mut damaged = [bytes.as_slice(), &next[..cut]].concat();
        let junk_len = 1 + (junk.next() % 40) as usize;
        damaged.extend(junk.bytes(junk_len));
        let dropped = damaged.len() - bytes.len() - 32;
        storage.set_contents(&segment, damaged);
        // Record n + 1 (an external record, 32 bytes) is whole and chained: it is recovered.
        let storage_records = recovered(&storage, false).unwrap().1;
        assert_eq!(storage_records.last(), Some(&Record::External(n + 1)), "seed {seed}: cut {cut}");
        let report = recovered(&storage, true).unwrap().0;
        let torn = report.torn_tail.map(|t| (t.offset, t.bytes_dropped));
        assert_eq!(torn, Some((bytes.len() as u64 + 32, dropped as u64)), "seed {seed}: cut {cut}");
    }
}

/// A crash while a segment was being created leaves it empty or with part
/// of its header (or a damaged one): the segment is dropped, every record of
/// the earlier segments recovered, and the writer continues (re-creating it).
#[test]
fn a_torn_header_of_a_new_segment_is_a_torn_tail() {
    let n = 150;
    let whole = journal(n, SMALL_SEGMENT);
    let segments: Vec<String> = whole.list().unwrap();
    assert!(segments.len() >= 3, "rotation happened: {segments:?}");
    let last = segments.last().unwrap().clone();
    let last_bytes = whole.contents(&last).unwrap();
    // The journal as it was just before the last rotation: the last segment
    // is the one being created.
    let first_seq: Seq = last.trim_start_matches("journal-").trim_end_matches(".log").parse().unwrap();
    let header = &last_bytes[..SEGMENT_HEADER_LEN];
    let mut damaged_headers: Vec<Vec<u8>> = (0..SEGMENT_HEADER_LEN).map(|len| header[..len].to_vec()).collect();
    damaged_headers.push(vec![0; SEGMENT_HEADER_LEN]);
    damaged_headers.push(vec![0; SEGMENT_HEADER_LEN + 100]);
    for bit in (0..SEGMENT_HEADER_LEN * 8).step_by(7) {
        let mut flipped = header.to_vec();
        flipped[bit / 8] ^= 1 << (bit % 8);
        damaged_headers.push(flipped);
    }
    let mut junk = Junk(seed() | 1);
    damaged_headers.push([&header[..20], &junk.bytes(50)[..]].concat());
    for damaged in damaged_headers {
        let storage = whole.crash(CrashMode::LoseUnsynced);
        storage.set_contents(&last, damaged.clone());
        // Records before the last segment survive; the earlier ones may not
        // be removed.
        let context = format!("{last} holding {} bytes of damaged header", damaged.len());
        check_recovery(&storage, SMALL_SEGMENT, &last, first_seq - 1, Some((0, damaged.len() as u64)), &context);
    }
}

/// The power-cut model: records written but not synced reach the disk in
/// part (any prefix) and maybe junk follows. Recovery keeps the synced
/// records and the whole records of the prefix, and cuts the rest.
#[test]
fn a_power_cut_during_a_write_leaves_a_torn_tail() {
    let seed = seed();
    eprintln!("seed = {seed} (TORN_TAIL_SEED={seed} reruns it)");
    let mut junk = Junk(seed | 1);
    let (synced, unsynced) = (25, 6);
    let storage = journal(synced, ONE_SEGMENT);
    let segment = segment_name(1);
    let synced_len = storage.contents(&segment).unwrap().len();
    let state = recovered(&storage, false).unwrap().0.journal;
    let shared: Arc<dyn Storage> = Arc::new(storage.clone());
    let mut writer = JournalWriter::open(shared, &state, ONE_SEGMENT).unwrap();
    for record in records(synced + 1..=synced + unsynced, 0) {
        writer.append(&record).unwrap();
    }
    writer.write().unwrap();
    let bytes = storage.contents(&segment).unwrap();
    let spans = record_spans(&bytes);
    for keep in 0..=bytes.len() - synced_len {
        let cut = synced_len + keep;
        // (A writer continuing a journal first vouches for what it found: a
        // synced-through marker repeating seq 25, not a record of its own.)
        let whole_records = spans.iter().filter(|(at, len, _)| at + len <= cut).map(|&(_, _, seq)| seq).max().unwrap();
        let at_boundary = spans.iter().any(|(at, len, _)| at + len == cut) || keep == 0;
        let garbage = 1 + (junk.next() % 64) as usize;
        for mode in [CrashMode::KeepPrefix { keep }, CrashMode::Garbage { keep, garbage, seed: junk.next() }] {
            let crashed = storage.crash(mode);
            let torn_from = spans.iter().map(|(at, len, _)| at + len).filter(|&end| end <= cut).max().unwrap();
            let want_torn = match mode {
                CrashMode::KeepPrefix { .. } if at_boundary => None,
                CrashMode::KeepPrefix { .. } => Some((torn_from as u64, (cut - torn_from) as u64)),
                _ => Some((torn_from as u64, (cut + garbage - torn_from) as u64)),
            };
            let context = format!("seed {seed}: {mode:?}");
            check_recovery(&crashed, ONE_SEGMENT, &segment, whole_records, want_torn, &context);
        }
    }
    // Nothing of the unsynced bytes reached the disk: the synced records.
    let crashed = storage.crash(CrashMode::LoseUnsynced);
    check_recovery(&crashed, ONE_SEGMENT, &segment, synced, None, "LoseUnsynced");
}

/// The same with real files: a segment cut with `set_len` at every byte of
/// its last record, recovered, continued.
#[test]
fn a_torn_tail_in_a_real_file_is_cut_and_continued() {
    let dir = std::env::temp_dir().join(format!("mx-torn-tail-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let n: Seq = 12;
    let source = journal(n, ONE_SEGMENT);
    let segment = segment_name(1);
    let bytes = source.contents(&segment).unwrap();
    let (from, _, _) = *record_spans(&bytes).last().unwrap();
    for cut in from..=bytes.len() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(&segment), &bytes[..cut]).unwrap();
        let storage = FsStorage::open(&dir).unwrap();
        let (report, applied) = recovered(&storage, true).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        let want_last = if cut == bytes.len() { n } else { n - 1 };
        assert_eq!(applied, records(1..=want_last, 0), "cut {cut}");
        let want_torn = (from < cut && cut < bytes.len()).then_some((from as u64, (cut - from) as u64));
        assert_eq!(report.torn_tail.as_ref().map(|t| (t.offset, t.bytes_dropped)), want_torn, "cut {cut}");
        if let Some(torn) = &report.torn_tail {
            assert_eq!(torn.file, dir.join(&segment).display().to_string());
        }
        assert_eq!(std::fs::metadata(dir.join(&segment)).unwrap().len(), report.journal.last_segment_len);
        let shared: Arc<dyn Storage> = Arc::new(storage.clone());
        let mut writer = JournalWriter::open(shared, &report.journal, ONE_SEGMENT).unwrap();
        let new = records(want_last + 1..=want_last + 5, 1);
        for record in &new {
            writer.append(record).unwrap();
        }
        writer.write().unwrap();
        writer.sync().unwrap();
        drop(writer);
        let (again, applied) = recovered(&storage, true).unwrap();
        let mut want = records(1..=want_last, 0);
        want.extend(new);
        assert_eq!((applied, again.torn_tail), (want, None), "cut {cut}: after continuing");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// A torn write in place: the file reached its full length, but the last
/// sector of the last record was never written (it reads as zeros). For an
/// external record (32 bytes, no payload) whose header straddles a sector
/// boundary at byte 24, that zeroes exactly its `chain_crc` (and the zero
/// `reserved2`): the body still checks, only the chain does not. Nothing
/// valid follows, so by the torn-tail rule this is a torn tail, and the
/// records before it must be recovered.
///
/// A regression test: recovery once classified any chain mismatch as
/// corruption, wherever it was, and refused to start after this power cut.
#[test]
fn a_last_record_whose_chain_was_not_written_is_a_torn_tail() {
    let n: Seq = 30; // record 30 is an external record (seq % 6 == 0)
    assert_eq!(record(n, 0), Record::External(n));
    let whole = journal(n, ONE_SEGMENT);
    let segment = segment_name(1);
    let bytes = whole.contents(&segment).unwrap();
    let (at, len, _) = *record_spans(&bytes).last().unwrap();
    assert_eq!(len, 32);
    let storage = whole.crash(CrashMode::LoseUnsynced);
    let mut damaged = bytes.clone();
    damaged[at + 24..at + 32].fill(0);
    storage.set_contents(&segment, damaged);
    check_recovery(
        &storage,
        ONE_SEGMENT,
        &segment,
        n - 1,
        Some((at as u64, 32)),
        "chain_crc of the last record zeroed",
    );
}
