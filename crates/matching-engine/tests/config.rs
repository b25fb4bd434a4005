//! `serve`'s configuration through the binary: the file, the environment and
//! the flags layered (`--print-config`), and what is refused before anything
//! starts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BINARY: &str = env!("CARGO_BIN_EXE_matching-engine");

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("me-config-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `matching-engine serve ARGS` with the environment `vars` (and no other `ME_` variable).
fn serve(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BINARY);
    command.arg("serve").args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|name| name.starts_with("ME_")) {
            command.env_remove(name);
        }
    }
    command.envs(vars.iter().copied()).output().expect("run matching-engine")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn printed(output: &Output) -> toml::Table {
    assert!(output.status.success(), "{}", stderr(output));
    String::from_utf8(output.stdout.clone()).unwrap().parse().expect("the printed configuration is TOML")
}

fn write(dir: &Path, text: &str) -> String {
    let path = dir.join("serve.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn print_config_layers_file_env_and_flags() {
    let dir = scratch("layers");
    let data = dir.join("data");
    let file = write(
        &dir,
        &format!(
            "data_dir = {:?}\n[network]\nio_threads = 3\nbinary_addr = \"127.0.0.1:1111\"\n\
             [limits]\nframe_bytes = 1000\nconnections = 10\n",
            data.to_str().unwrap()
        ),
    );
    let vars = [
        ("ME_LIMITS_FRAME_BYTES", "2000"),
        ("ME_NETWORK_BINARY_ADDR", "127.0.0.1:2222"),
        ("ME_MARKET_DATA_QUEUE", "64"),
    ];
    let flags = ["--config", &file, "--print-config", "--frame-bytes", "3000", "--max-in-flight", "5"];
    let output = serve(&[&flags[..], &["--fsync", "always", "--wait", "busy-spin"]].concat(), &vars);
    let config = printed(&output);
    let get = |section: &str, key: &str| config[section][key].clone();
    // Each key from the highest layer that sets it.
    assert_eq!(config["data_dir"].as_str(), data.to_str(), "file");
    assert_eq!(get("network", "io_threads").as_integer(), Some(3), "file");
    assert_eq!(get("limits", "connections").as_integer(), Some(10), "file");
    assert_eq!(get("network", "binary_addr").as_str(), Some("127.0.0.1:2222"), "environment over file");
    assert_eq!(get("market_data", "queue").as_integer(), Some(64), "environment");
    assert_eq!(get("limits", "frame_bytes").as_integer(), Some(3000), "flag over environment over file");
    assert_eq!(get("limits", "in_flight").as_integer(), Some(5), "flag");
    assert_eq!(get("journal", "fsync").as_str(), Some("always"), "flag");
    assert_eq!(get("engine", "wait").as_str(), Some("busy-spin"), "flag");
    assert_eq!(get("limits", "outbox").as_integer(), Some(16384), "default");
    assert_eq!(get("network", "json_addr").as_str(), Some("127.0.0.1:7701"), "default");
    assert!(!data.exists(), "--print-config touches no data directory");

    // The printed configuration, as a file, is the same configuration.
    let again = write(&dir, &String::from_utf8(output.stdout.clone()).unwrap());
    assert_eq!(printed(&serve(&["--config", &again, "--print-config"], &[])), config);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn print_config_defaults_without_a_file() {
    let config = printed(&serve(&["--print-config"], &[]));
    assert_eq!(config["data_dir"].as_str(), Some("./data"));
    assert_eq!(config["network"]["binary_addr"].as_str(), Some("127.0.0.1:7700"));
    assert_eq!(config["journal"]["fsync"].as_str(), Some("batch"));
    assert_eq!(config["engine"]["wait"].as_str(), Some("park"));
    assert_eq!(config["market_data"]["feed_addrs"].as_array().map(Vec::len), Some(1));
    assert!(config.get("users").is_none(), "absent: open mode");
}

#[test]
fn unknown_key_in_file_refused_naming_it() {
    let dir = scratch("unknown-key");
    let file = write(&dir, "[limits]\nframe_byte = 1000\n");
    let output = serve(&["--config", &file, "--print-config"], &[]);
    let error = stderr(&output);
    assert!(!output.status.success());
    assert!(error.contains("limits.frame_byte") && error.contains(&file), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn syntax_error_in_file_names_file_and_line() {
    let dir = scratch("syntax");
    let file = write(&dir, "[network]\nio_threads = \n");
    let output = serve(&["--config", &file, "--print-config"], &[]);
    let error = stderr(&output);
    assert!(!output.status.success());
    assert!(error.contains(&file) && error.contains("line 2"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_or_unknown_environment_variable_refused_naming_it() {
    let output = serve(&["--print-config"], &[("ME_LIMITS_CONNECTIONS", "many")]);
    let error = stderr(&output);
    assert!(!output.status.success());
    assert!(error.contains("limits.connections") && error.contains("ME_LIMITS_CONNECTIONS"), "{error}");

    let output = serve(&["--print-config"], &[("ME_LIMITS_CONECTIONS", "5")]);
    let error = stderr(&output);
    assert!(!output.status.success());
    assert!(error.contains("ME_LIMITS_CONECTIONS"), "{error}");
}

#[test]
fn bad_address_in_file_refused_before_anything_starts() {
    let dir = scratch("bad-address");
    let data = dir.join("data");
    let file =
        write(&dir, &format!("data_dir = {:?}\n[network]\njson_addr = \"127.0.0.1:99999\"\n", data.to_str().unwrap()));
    let output = serve(&["--config", &file, "--binary-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"], &[]);
    let error = stderr(&output);
    assert!(!output.status.success());
    assert!(error.starts_with("error: network.json_addr: ") && error.contains(&file), "{error}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("listening"));
    assert!(!data.exists(), "refused before the data directory is opened");
    std::fs::remove_dir_all(&dir).unwrap();
}
