//! Snapshots and recovery: only the newest two are kept and the journal
//! segments neither needs are deleted; a damaged newest snapshot makes
//! recovery fall back to the previous one and replay the journal from
//! there, to the same state; with both damaged it replays the whole journal
//! if it still starts at seq 1, and refuses (a gap) if not.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    Item, drain, external_payload, first_difference, mixed_stream, oracle, small_exchange, sym, with_timeout,
};
use matching_core::{Action, Exchange, Seq, Symbol, hash_books};
use matching_journal::format::{self, SEGMENT_HEADER_LEN, SNAPSHOT_HEADER_LEN};
use matching_journal::storage::{CrashMode, SimStorage, Storage};
use matching_journal::{RecoveryReport, snapshot_name};
use matching_pipeline::{
    Clock, Durability, Engine, EngineConfig, FsyncPolicy, RecoveryError, StartError, WaitStrategy, recover_books,
};

fn symbols() -> Vec<Symbol> {
    ["AAA", "BBB", "CCC"].iter().map(|name| sym(name)).collect()
}

fn config(storage: &SimStorage, shards: usize, segment_bytes: u64) -> EngineConfig {
    let mut durability = Durability::new(Arc::new(storage.clone()));
    durability.segment_bytes = segment_bytes;
    durability.fsync = FsyncPolicy::Batch;
    EngineConfig {
        shards,
        exchange: small_exchange(),
        wait: WaitStrategy::Park,
        clock: Clock::Zero,
        durability: Some(durability),
        ..EngineConfig::default()
    }
}

/// A data directory: `stream` run through an engine in `chunks` parts,
/// a snapshot after each part but the last. Returns the storage and the
/// snapshots' seqs.
fn run(stream: &[Option<Action>], chunks: usize, shards: usize, segment_bytes: u64) -> (SimStorage, Vec<Seq>) {
    let storage = SimStorage::new();
    let (engine, reader) = Engine::<u32>::start(config(&storage, shards, segment_bytes)).unwrap();
    let reader = drain(reader);
    let mut snapshots = Vec::new();
    let chunk = stream.len().div_ceil(chunks);
    for (index, part) in stream.chunks(chunk).enumerate() {
        for action in part {
            let seq = engine.next_seq();
            match action {
                Some(action) => assert_eq!(engine.submit(*action).expect("submit"), seq),
                None => assert_eq!(engine.submit_external(external_payload(seq)).expect("submit_external"), seq),
            }
        }
        if index + 1 < chunks {
            snapshots.push(engine.snapshot().unwrap());
        }
    }
    engine.shutdown();
    let (_, want) = oracle(&small_exchange(), stream);
    let items: Vec<Item> = reader.join().unwrap();
    assert_eq!(first_difference(&items, &want), None);
    (storage, snapshots)
}

/// A copy of a data directory (everything in it is durable).
fn copy(storage: &SimStorage) -> SimStorage {
    storage.crash(CrashMode::LoseUnsynced)
}

fn names(storage: &SimStorage, prefix: &str) -> Vec<String> {
    storage.list().unwrap().into_iter().filter(|n| n.starts_with(prefix)).collect()
}

/// `first_seq` of every segment.
fn segment_starts(storage: &SimStorage) -> Vec<Seq> {
    names(storage, "journal-")
        .iter()
        .map(|n| n.trim_start_matches("journal-").trim_end_matches(".log").parse().unwrap())
        .collect()
}

/// Recovery's books and report; the state hash of the books.
fn recovered(storage: &SimStorage, shards: usize) -> Result<(Vec<Exchange>, RecoveryReport, u64), StartError> {
    let (exchanges, report) = recover_books(&config(storage, shards, 4096), true)?;
    let mut parts: Vec<_> = exchanges.iter().flat_map(|e| e.book_states()).collect();
    let hash = hash_books(&mut parts);
    Ok((exchanges, report, hash))
}

fn guarded(name: &str, body: impl FnOnce() + Send + 'static) {
    with_timeout(name, Duration::from_secs(120), body)
}

/// Several snapshots with small segments: two snapshot files remain, the
/// segments wholly before the older one are gone, and recovery (from the
/// newest snapshot and the journal after it) equals the in-memory state,
/// in a recovered engine that then continues.
#[test]
fn two_snapshots_are_kept_and_old_segments_pruned() {
    guarded("two_snapshots_are_kept_and_old_segments_pruned", || {
        for shards in [1, 2] {
            let stream = mixed_stream(2_400, &symbols(), 7);
            let (storage, snapshots) = run(&stream, 6, shards, 4096);
            assert_eq!(snapshots.len(), 5);
            let (want, _) = oracle(&small_exchange(), &stream);
            let kept: Vec<String> = snapshots[3..].iter().map(|&s| snapshot_name(s)).collect();
            assert_eq!(names(&storage, "snapshot-"), kept, "only the newest two snapshots remain");
            assert!(names(&storage, "").iter().all(|n| !n.ends_with(".tmp")));
            let older = snapshots[3];
            let starts = segment_starts(&storage);
            // The oldest segment holds the record after the older snapshot; none before it is left.
            assert!(starts[0] <= older + 1, "the journal reaches back to the older snapshot: {starts:?}");
            assert!(
                starts.get(1).is_none_or(|&s| s > older + 1),
                "a segment wholly before {older} remains: {starts:?}"
            );
            assert!(starts[0] > 1, "segments were pruned: {starts:?}");

            let (_, report, hash) = recovered(&storage, shards).unwrap();
            assert_eq!(report.snapshot.map(|(seq, _)| seq), Some(snapshots[4]));
            assert_eq!(report.records_applied, stream.len() as u64 - snapshots[4]);
            assert_eq!((report.last_seq, report.torn_tail), (stream.len() as Seq, None));
            assert_eq!(hash, want.state_hash(), "{shards} shards: recovered from the newest snapshot");

            // A recovered engine continues from there.
            let (engine, reader) = Engine::<u32>::start(config(&storage, shards, 4096)).unwrap();
            let reader = drain(reader);
            assert_eq!(engine.state_hash().expect("state_hash"), want.state_hash());
            let more = mixed_stream(300, &symbols(), 8);
            for (i, action) in more.iter().enumerate() {
                let seq = stream.len() as Seq + 1 + i as Seq;
                match action {
                    Some(action) => assert_eq!(engine.submit(*action).expect("submit"), seq),
                    None => assert_eq!(engine.submit_external(external_payload(seq)).expect("submit_external"), seq),
                }
            }
            engine.snapshot().unwrap();
            engine.shutdown();
            let items = reader.join().unwrap();
            let history: Vec<Option<Action>> = stream.iter().chain(&more).copied().collect();
            let (want, want_items) = oracle(&small_exchange(), &history);
            let want_items: Vec<Item> = want_items.into_iter().filter(|i| i.seq() > stream.len() as Seq).collect();
            assert_eq!(first_difference(&items, &want_items), None);
            assert_eq!(names(&storage, "snapshot-").len(), 2);
            let (_, report, hash) = recovered(&storage, shards).unwrap();
            assert_eq!((report.last_seq, report.records_applied, hash), (history.len() as Seq, 0, want.state_hash()));
        }
    });
}

/// The ways a snapshot file can be damaged, each with a name.
fn damages(bytes: &[u8], seq: Seq) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for at in [SNAPSHOT_HEADER_LEN, SNAPSHOT_HEADER_LEN + 17, bytes.len() - 1] {
        let mut flipped = bytes.to_vec();
        flipped[at] ^= 0x20;
        out.push((format!("a bit flipped in the body at byte {at}"), flipped));
    }
    for at in [0, 9, 16, 24, 33, 41, 46] {
        let mut flipped = bytes.to_vec();
        flipped[at] ^= 0x01;
        out.push((format!("a bit flipped in the header at byte {at}"), flipped));
    }
    for len in [0, 10, SNAPSHOT_HEADER_LEN - 1, SNAPSHOT_HEADER_LEN, bytes.len() / 2, bytes.len() - 1] {
        out.push((format!("truncated to {len} bytes"), bytes[..len].to_vec()));
    }
    out.push(("a byte appended".to_string(), [bytes, &[0]].concat()));
    // Checksums that hold, and still not the state: a header whose hash is
    // not the body's state hash, a header for another seq, a body that is
    // not a state at all.
    let (header_seq, hash, body) = format::parse_snapshot(bytes).unwrap();
    assert_eq!(header_seq, seq);
    let wrong_hash = [&format::snapshot_header(seq, hash ^ 1, body)[..], body].concat();
    out.push(("a header with another state hash".to_string(), wrong_hash));
    let other_seq = [&format::snapshot_header(seq - 1, hash, body)[..], body].concat();
    out.push(("a header for another seq".to_string(), other_seq));
    let junk = b"not a state at all";
    out.push((
        "a body that is not a state".to_string(),
        [&format::snapshot_header(seq, hash, junk)[..], junk].concat(),
    ));
    out
}

/// A damaged newest snapshot: recovery falls back to the previous one and
/// replays the journal from there, to the same state. The damaged one is
/// set aside (renamed `….damaged`), not deleted.
#[test]
fn a_damaged_newest_snapshot_falls_back_to_the_previous_one() {
    guarded("a_damaged_newest_snapshot_falls_back_to_the_previous_one", || {
        for shards in [1, 2] {
            let stream = mixed_stream(1_500, &symbols(), 11);
            let (storage, snapshots) = run(&stream, 4, shards, 4096);
            let (want, _) = oracle(&small_exchange(), &stream);
            let (newest, previous) = (snapshots[2], snapshots[1]);
            let name = snapshot_name(newest);
            let bytes = storage.read(&name).unwrap();
            for (damage, damaged) in damages(&bytes, newest) {
                let context = format!("{shards} shards, newest snapshot: {damage}");
                let dir = copy(&storage);
                dir.set_contents(&name, damaged.clone());
                let (_, report, hash) = recovered(&dir, shards).unwrap_or_else(|e| panic!("{context}: refused: {e}"));
                assert_eq!(report.snapshot.map(|(seq, _)| seq), Some(previous), "{context}");
                assert_eq!(report.skipped_snapshots.len(), 1, "{context}");
                assert!(report.skipped_snapshots[0].0.contains(&name), "{context}: {:?}", report.skipped_snapshots);
                assert_eq!(report.records_applied, stream.len() as u64 - previous, "{context}");
                assert_eq!(report.last_seq, stream.len() as Seq, "{context}");
                assert_eq!(hash, want.state_hash(), "{context}: not the same state");
                // Set aside, unchanged, so it is never counted as one of the two kept.
                assert!(dir.read(&name).is_err(), "{context}: the damaged snapshot is still in place");
                let aside = format!("{name}.damaged");
                assert_eq!(dir.read(&aside).unwrap(), damaged, "{context}: the damaged snapshot was changed");
                // The engine starts on it too, to the same state.
                let (engine, reader) = Engine::<u32>::start(config(&dir, shards, 4096)).unwrap();
                let reader = drain(reader);
                assert_eq!(
                    engine.state_hash().expect("state_hash"),
                    want.state_hash(),
                    "{context}: the engine's state"
                );
                engine.shutdown();
                reader.join().unwrap();
            }
        }
    });
}

/// Both snapshots damaged: the whole journal is replayed when it still
/// starts at seq 1 (big segments: nothing was prunable); with the early
/// segments pruned, recovery refuses with a gap.
#[test]
fn both_snapshots_damaged_fall_back_to_the_journal_or_refuse() {
    guarded("both_snapshots_damaged_fall_back_to_the_journal_or_refuse", || {
        let stream = mixed_stream(1_200, &symbols(), 13);
        let (want, _) = oracle(&small_exchange(), &stream);
        for (segment_bytes, journal_from_one) in [(1 << 30, true), (4096, false)] {
            let (storage, snapshots) = run(&stream, 4, 2, segment_bytes);
            assert_eq!(segment_starts(&storage)[0] == 1, journal_from_one, "{:?}", segment_starts(&storage));
            {
                let damage = "a bit flipped in the last byte of each body";
                let dir = copy(&storage);
                for &seq in &snapshots[1..] {
                    let name = snapshot_name(seq);
                    let mut bytes = dir.read(&name).unwrap();
                    let last = bytes.len() - 1;
                    bytes[last] ^= 0x40;
                    dir.set_contents(&name, bytes);
                }
                let before: Vec<(String, Vec<u8>)> =
                    dir.list().unwrap().into_iter().map(|n| (n.clone(), dir.read(&n).unwrap())).collect();
                let context = format!("segment_bytes {segment_bytes}, both snapshots: {damage}");
                match recovered(&dir, 2) {
                    Ok((_, report, hash)) => {
                        assert!(journal_from_one, "{context}: recovered without the journal's start");
                        assert_eq!(report.snapshot, None, "{context}");
                        assert_eq!(report.skipped_snapshots.len(), 2, "{context}");
                        assert_eq!(report.records_applied, stream.len() as u64, "{context}");
                        assert_eq!(hash, want.state_hash(), "{context}: journal only");
                    }
                    Err(StartError::Recovery(RecoveryError::Gap { reason })) => {
                        assert!(!journal_from_one, "{context}: refused: {reason}");
                        assert!(reason.contains("from seq 1"), "{context}: {reason}");
                        let after: Vec<(String, Vec<u8>)> =
                            dir.list().unwrap().into_iter().map(|n| (n.clone(), dir.read(&n).unwrap())).collect();
                        assert!(before == after, "{context}: the refused recovery changed the directory");
                        // The engine refuses too.
                        match Engine::<u32>::start(config(&dir, 2, segment_bytes)) {
                            Err(StartError::Recovery(RecoveryError::Gap { .. })) => {}
                            Err(other) => panic!("{context}: the engine refused otherwise: {other}"),
                            Ok(_) => panic!("{context}: the engine started"),
                        }
                    }
                    Err(other) => panic!("{context}: {other}"),
                }
            }
        }
    });
}

/// A snapshot being written when the power went (`*.tmp`, any part of it)
/// is ignored and removed; the previous snapshots and the journal recover.
#[test]
fn a_half_written_snapshot_is_ignored() {
    guarded("a_half_written_snapshot_is_ignored", || {
        let stream = mixed_stream(900, &symbols(), 17);
        let (want, _) = oracle(&small_exchange(), &stream);
        let (storage, snapshots) = run(&stream, 3, 1, 4096);
        let bytes = storage.read(&snapshot_name(snapshots[1])).unwrap();
        for len in [0, 7, SNAPSHOT_HEADER_LEN, bytes.len() - 3, bytes.len()] {
            let dir = copy(&storage);
            let temporary = format!("{}.tmp", snapshot_name(stream.len() as Seq));
            dir.set_contents(&temporary, bytes[..len].to_vec());
            let (_, report, hash) = recovered(&dir, 1).unwrap();
            assert_eq!(report.snapshot.map(|(s, _)| s), Some(snapshots[1]), "{len} bytes");
            assert_eq!(hash, want.state_hash(), "{len} bytes");
            assert!(dir.read(&temporary).is_err(), "{len} bytes: the temporary file was removed");
        }
        // The segments are where they should be: nothing of the snapshot in them.
        let first = &names(&storage, "journal-")[0];
        assert!(format::parse_segment_header(&storage.read(first).unwrap()[..SEGMENT_HEADER_LEN]).is_ok());
    });
}

/// After a fall-back, the damaged snapshot must not count as one of the
/// two kept: the engine recovers from the previous snapshot, continues, and
/// takes a new snapshot; if that one is then damaged too, recovery must
/// still find a good snapshot (or the journal) to start from.
///
/// A regression test: `write_snapshot` once kept the newest two files
/// whatever they held, so it deleted the good previous snapshot, kept the
/// damaged one, and pruned the journal through the damaged one's seq: one
/// good snapshot was left, and when it was damaged recovery refused (a gap).
#[test]
fn a_damaged_snapshot_is_not_kept_in_place_of_a_good_one() {
    guarded("a_damaged_snapshot_is_not_kept_in_place_of_a_good_one", || {
        let stream = mixed_stream(1_500, &symbols(), 19);
        let (storage, snapshots) = run(&stream, 4, 1, 4096);
        // The newest snapshot rots.
        let newest = snapshot_name(snapshots[2]);
        let mut bytes = storage.read(&newest).unwrap();
        bytes[SNAPSHOT_HEADER_LEN + 3] ^= 1;
        storage.set_contents(&newest, bytes);
        // The engine recovers from the previous one, continues, snapshots.
        let (engine, reader) = Engine::<u32>::start(config(&storage, 1, 4096)).unwrap();
        let reader = drain(reader);
        assert_eq!(engine.recovery().unwrap().snapshot.map(|(s, _)| s), Some(snapshots[1]));
        let more = mixed_stream(600, &symbols(), 20);
        for (i, action) in more.iter().enumerate() {
            let seq = stream.len() as Seq + 1 + i as Seq;
            match action {
                Some(action) => assert_eq!(engine.submit(*action).expect("submit"), seq),
                None => assert_eq!(engine.submit_external(external_payload(seq)).expect("submit_external"), seq),
            }
        }
        let latest = engine.snapshot().unwrap();
        let extra = mixed_stream(100, &symbols(), 21);
        for (i, action) in extra.iter().enumerate() {
            let seq = latest + 1 + i as Seq;
            match action {
                Some(action) => assert_eq!(engine.submit(*action).expect("submit"), seq),
                None => assert_eq!(engine.submit_external(external_payload(seq)).expect("submit_external"), seq),
            }
        }
        engine.shutdown();
        reader.join().unwrap();
        eprintln!("files after the new snapshot: {:?}", storage.list().unwrap());
        // Now the new snapshot rots as well.
        let name = snapshot_name(latest);
        let mut bytes = storage.read(&name).unwrap();
        bytes[SNAPSHOT_HEADER_LEN + 3] ^= 1;
        storage.set_contents(&name, bytes);
        let history: Vec<Option<Action>> = stream.iter().chain(&more).chain(&extra).copied().collect();
        let (want, _) = oracle(&small_exchange(), &history);
        match recovered(&storage, 1) {
            Ok((_, report, hash)) => {
                assert_eq!(report.last_seq, history.len() as Seq);
                assert_eq!(hash, want.state_hash());
            }
            Err(error) => panic!("one damaged snapshot after another made recovery refuse: {error}"),
        }
    });
}
