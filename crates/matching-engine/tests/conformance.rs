//! Runs the `replay` binary over SPEC's conformance vectors and requires
//! byte-identical events and books.
//!
//! The vectors are vendored in `tests/vectors` (a copy of
//! `../shared/conformance`) so the suite stands on its own; when the shared
//! folder is beside the checkout, its vectors run too.

use std::path::{Path, PathBuf};
use std::process::Command;

fn vectors(dir: &Path) -> Vec<PathBuf> {
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".in.jsonl"))
        .collect();
    inputs.sort();
    inputs
}

/// Runs `replay` (with `extra` arguments) over every vector in `dir`.
fn check_dir(dir: &Path, label: &str, extra: &[&str]) -> usize {
    let scratch = std::env::temp_dir().join(format!("me-conformance-{label}-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let inputs = vectors(dir);
    for input in &inputs {
        let name = input.file_name().unwrap().to_string_lossy().trim_end_matches(".in.jsonl").to_string();
        let (events, book) = (scratch.join(format!("{name}.ev")), scratch.join(format!("{name}.book")));
        let status = Command::new(env!("CARGO_BIN_EXE_matching-engine"))
            .arg("replay")
            .args(extra)
            .arg(input)
            .arg("--output")
            .arg(&events)
            .arg("--book")
            .arg(&book)
            .status()
            .unwrap();
        assert!(status.success(), "{name} ({label}): replay exited with {status}");
        for (got, want) in [(&events, "out"), (&book, "book")] {
            let want_path = dir.join(format!("{name}.{want}.jsonl"));
            let got = std::fs::read_to_string(got).unwrap();
            let want = std::fs::read_to_string(&want_path).unwrap();
            if got != want {
                let line = got.lines().zip(want.lines()).position(|(g, w)| g != w).unwrap_or(0);
                panic!(
                    "{name} ({label}) {}: first difference at line {}\n  got  {:?}\n  want {:?}",
                    want_path.display(),
                    line + 1,
                    got.lines().nth(line),
                    want.lines().nth(line)
                );
            }
        }
    }
    std::fs::remove_dir_all(&scratch).ok();
    inputs.len()
}

#[test]
fn vendored_vectors_are_byte_identical() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    assert!(check_dir(&dir, "vendored", &[]) >= 11, "expected the vendored conformance vectors");
}

#[test]
fn vendored_vectors_through_the_sharded_engine_are_byte_identical() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    for shards in ["1", "2", "4"] {
        for wait in ["spin-yield", "park"] {
            let label = format!("shards-{shards}-{wait}");
            assert!(check_dir(&dir, &label, &["--shards", shards, "--wait", wait]) >= 11);
        }
    }
}

#[test]
fn shared_vectors_are_byte_identical_when_present() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance");
    if dir.is_dir() {
        check_dir(&dir, "shared", &[]);
        check_dir(&dir, "shared-shards-2", &["--shards", "2"]);
    } else {
        eprintln!("{} not found; the vendored copy covers it", dir.display());
    }
}
