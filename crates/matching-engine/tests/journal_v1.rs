//! A data directory written before `mass_cancel`, `halt` and `resume`
//! existed (state encoding version 1: no trading status) still recovers,
//! and the engine carries on from it. The directory was written by an
//! earlier build (see `tests/fixtures/journal-v1/README.md`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BINARY: &str = env!("CARGO_BIN_EXE_matching-engine");

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal-v1")
}

/// A copy of the fixture's data directory (recovery may repair and locks it).
fn copy_of_data(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("mx-journal-v1-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    for entry in std::fs::read_dir(fixture().join("data")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), root.join(entry.file_name())).unwrap();
    }
    root
}

fn run(args: &[&str]) -> Output {
    let output = Command::new(BINARY).args(args).output().unwrap();
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

#[test]
fn a_version_1_directory_recovers_to_the_book_it_was_written_with() {
    let data = copy_of_data("recover");
    let book = data.join("..").join(format!("v1-book-{}.jsonl", std::process::id()));
    let verify = run(&["journal", "verify", "--data", data.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&verify.stdout).contains("\"last_seq\":600"));
    let recovered = run(&["recover", "--data", data.to_str().unwrap(), "--book", book.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&recovered.stderr);
    assert!(stderr.contains("loaded the snapshot at seq 224"), "the version 1 snapshot was not used: {stderr}");
    assert!(String::from_utf8_lossy(&recovered.stdout).contains("\"last_seq\":600"));
    assert_eq!(std::fs::read(&book).unwrap(), std::fs::read(fixture().join("book.jsonl")).unwrap());
    std::fs::remove_file(book).unwrap();
    std::fs::remove_dir_all(data).unwrap();
}

#[test]
fn the_engine_continues_a_version_1_directory_as_one_run_would() {
    // Lines 601..=700 of vector 11, and the commands halt, mass cancel and resume.
    let vector = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/11_random_mix.in.jsonl");
    let all: Vec<String> = std::fs::read_to_string(vector).unwrap().lines().map(str::to_string).collect();
    let mut more: Vec<String> = all[600..700].to_vec();
    more.extend([
        r#"{"op":"halt","symbol":"BTC-USD"}"#.to_string(),
        r#"{"op":"mass_cancel","user":1}"#.to_string(),
        r#"{"op":"new","user":1,"symbol":"BTC-USD","side":"buy","price":500,"qty":1}"#.to_string(),
    ]);
    let scratch = copy_of_data("continue");
    let dir = scratch.parent().unwrap().join(format!("mx-journal-v1-continue-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (more_path, whole_path) = (dir.join("more.jsonl"), dir.join("whole.jsonl"));
    std::fs::write(&more_path, more.join("\n") + "\n").unwrap();
    let mut whole = all[..600].to_vec();
    whole.extend(more.iter().cloned());
    std::fs::write(&whole_path, whole.join("\n") + "\n").unwrap();

    for shards in ["1", "2"] {
        let data = copy_of_data(&format!("continue-{shards}"));
        let (book_a, book_b) = (dir.join(format!("a-{shards}.jsonl")), dir.join(format!("b-{shards}.jsonl")));
        let continued = run(&[
            "replay",
            more_path.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--shards",
            shards,
            "--book",
            book_a.to_str().unwrap(),
        ]);
        let once = run(&["replay", whole_path.to_str().unwrap(), "--book", book_b.to_str().unwrap()]);
        // The events of seq 601 onwards are those of one run over everything.
        let tail: Vec<&[u8]> = once
            .stdout
            .split_inclusive(|&b| b == b'\n')
            .filter(|line| {
                let text = std::str::from_utf8(line).unwrap();
                let seq: u64 = text["{\"seq\":".len()..].split(',').next().unwrap().parse().unwrap();
                seq > 600
            })
            .collect();
        assert_eq!(String::from_utf8_lossy(&continued.stdout), String::from_utf8_lossy(&tail.concat()));
        assert!(String::from_utf8_lossy(&continued.stdout).contains("\"ev\":\"mass_cancelled\""));
        assert_eq!(std::fs::read(&book_a).unwrap(), std::fs::read(&book_b).unwrap());
        // And the directory, now holding new commands and the old, recovers to it.
        let recovered = run(&["recover", "--data", data.to_str().unwrap(), "--book", book_a.to_str().unwrap()]);
        assert!(String::from_utf8_lossy(&recovered.stdout).contains("\"last_seq\":703"));
        assert_eq!(std::fs::read(&book_a).unwrap(), std::fs::read(&book_b).unwrap());
        std::fs::remove_dir_all(data).unwrap();
    }
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_dir_all(scratch).unwrap();
}
