//! Whatever a line holds, parsing it gives a command or a rejection, never a
//! panic; and a parsed command always survives the core (it is answered,
//! not with a trade first, and `validate()` holds after).

use matching_core::{Command, Config, EventKind, Exchange};
use matching_proto::json::{parse_command, write_command};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestRng, TestRunner};

fn seed() -> u64 {
    let seed = std::env::var("PROPTEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!("seed = {seed} (rerun with PROPTEST_SEED={seed})");
    seed
}

fn runner() -> TestRunner {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed().to_le_bytes());
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    TestRunner::new_with_rng(
        RunnerConfig { cases, failure_persistence: None, ..RunnerConfig::default() },
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    )
}

/// Pieces that make lines look almost right, so parsing gets past its first checks.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("\"op\":\"new\"".to_string()),
        Just("\"op\":\"cancel\"".to_string()),
        Just("\"op\":\"modify\"".to_string()),
        Just("\"user\":1".to_string()),
        Just("\"symbol\":\"X\"".to_string()),
        Just("\"side\":\"buy\"".to_string()),
        Just("\"side\":\"sell\"".to_string()),
        Just("\"type\":\"market\"".to_string()),
        Just("\"tif\":\"fok\"".to_string()),
        Just("\"post_only\":true".to_string()),
        Just("\"stp\":\"cancel_both\"".to_string()),
        any::<i64>().prop_map(|v| format!("\"price\":{v}")),
        any::<u64>().prop_map(|v| format!("\"qty\":{v}")),
        any::<i64>().prop_map(|v| format!("\"order_id\":{v}")),
        any::<f64>().prop_map(|v| format!("\"price\":{v:e}")),
        "\\PC{0,12}",
        Just("\"\\u0000\\ud800\"".to_string()),
        Just("[[[[[[[[[[]]]]]]]]]]".to_string()),
    ]
}

#[test]
fn any_line_parses_or_is_rejected_and_the_core_takes_it() {
    let line = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        prop::collection::vec(fragment(), 0..14).prop_map(|parts| parts.concat().into_bytes()),
    ];
    runner()
        .run(&prop::collection::vec(line, 1..40), |lines| {
            let mut exchange: Exchange = Exchange::new(Config { orders_preallocated: 64, ..Config::default() });
            for (i, line) in lines.iter().enumerate() {
                let seq = i as u64 + 1;
                if let Ok(action) = parse_command(line, seq) {
                    let mut events = Vec::new();
                    exchange.process(&Command::new(seq, action), &mut events);
                    // Every command answers, and never with a trade first.
                    let answered = events.first().is_some_and(|e| !matches!(e.kind, EventKind::Trade(_)));
                    prop_assert!(answered, "line {} gave events {:?}", seq, events);
                    // What parsed writes back as a line that parses to the same action.
                    let mut written = Vec::new();
                    write_command(&mut written, &action);
                    written.pop();
                    prop_assert_eq!(parse_command(&written, seq), Ok(action));
                }
            }
            prop_assert!(exchange.validate().is_ok());
            Ok(())
        })
        .unwrap();
}
