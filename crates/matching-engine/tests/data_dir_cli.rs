//! The data directory from the command line: it keeps its layout (limits,
//! shards) and refuses a flag that contradicts it; `journal verify` fails on
//! a snapshot it had to pass over; bad flags are errors, not panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BINARY: &str = env!("CARGO_BIN_EXE_matching-engine");

fn scratch(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("mx-data-dir-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    root
}

fn run(args: &[&str]) -> Output {
    Command::new(BINARY).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `n` resting buys at distinct prices.
fn orders(dir: &Path, n: u64) -> PathBuf {
    let input = dir.join("in.jsonl");
    let lines: Vec<String> =
        (1..=n).map(|i| format!(r#"{{"op":"new","user":1,"symbol":"X","side":"buy","price":{i},"qty":1}}"#)).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    input
}

#[test]
fn a_data_directory_keeps_its_limits_and_refuses_others() {
    let root = scratch("limits");
    let input = orders(&root, 100);
    let data = root.join("data");
    let (data_arg, input_arg) = (data.to_str().unwrap(), input.to_str().unwrap());
    let first = run(&["replay", input_arg, "--data", data_arg, "--orders-max", "50"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert_eq!(text(&first.stdout).matches("too_many_orders").count(), 50);
    // Recovery without the flag rebuilds the 50 that rested, not 100.
    let book = root.join("book.jsonl");
    let recovered = run(&["recover", "--data", data_arg, "--book", book.to_str().unwrap()]);
    assert!(recovered.status.success(), "{}", text(&recovered.stderr));
    assert_eq!(std::fs::read_to_string(&book).unwrap().matches("order_id").count(), 50);
    // A flag that contradicts the directory is refused, by name.
    for (args, name) in [
        (vec!["recover", "--data", data_arg, "--orders-max", "100"], "orders_max"),
        (vec!["recover", "--data", data_arg, "--symbols-max", "7"], "symbols_max"),
        (vec!["replay", input_arg, "--data", data_arg, "--shards", "2"], "shards"),
        (vec!["journal", "verify", "--data", data_arg, "--orders-max", "51"], "orders_max"),
    ] {
        let refused = run(&args);
        assert!(!refused.status.success(), "{args:?} was accepted");
        assert!(text(&refused.stderr).contains(name), "{args:?}: {}", text(&refused.stderr));
    }
    // A later replay without flags continues under the directory's limits.
    let again = run(&["replay", input_arg, "--data", data_arg]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout).matches("too_many_orders").count(), 100);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn journal_verify_fails_on_a_snapshot_it_passes_over() {
    let root = scratch("verify");
    let input = orders(&root, 2_000);
    let data = root.join("data");
    let data_arg = data.to_str().unwrap();
    let made = run(&["replay", input.to_str().unwrap(), "--data", data_arg, "--snapshot-every", "500"]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    let ok = run(&["journal", "verify", "--data", data_arg]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let newest = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "snap"))
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&newest, bytes).unwrap();
    let verified = run(&["journal", "verify", "--data", data_arg]);
    assert!(!verified.status.success(), "verify passed over a damaged snapshot and said ok");
    assert!(text(&verified.stdout).contains("\"ok\":false"), "{}", text(&verified.stdout));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn shard_counts_out_of_range_are_errors() {
    let root = scratch("shards");
    for args in [
        vec!["recover", "--data", root.to_str().unwrap(), "--shards", "0"],
        vec!["journal", "verify", "--data", root.to_str().unwrap(), "--shards", "65"],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("shards must be in 1..=64"), "{}", text(&out.stderr));
    }
    std::fs::remove_dir_all(&root).unwrap();
}
