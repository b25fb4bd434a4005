//! Test support shared by the integration tests of `matching-core`.
//!
//! Each integration test is its own crate and uses only part of this module,
//! so unused items are expected here.
#![allow(dead_code)]

pub mod reference;

use std::time::{SystemTime, UNIX_EPOCH};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

/// The seed of a randomized test: `PROPTEST_SEED` (a `u64`) when set, else
/// taken from the clock.
pub fn seed() -> u64 {
    match std::env::var("PROPTEST_SEED") {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("PROPTEST_SEED={text:?} is not a u64")),
        Err(_) => SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
    }
}

/// Number of cases: `PROPTEST_CASES` when set, else `default_cases`.
pub fn cases(default_cases: u32) -> u32 {
    match std::env::var("PROPTEST_CASES") {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("PROPTEST_CASES={text:?} is not a u32")),
        Err(_) => default_cases,
    }
}

/// A proptest runner whose whole run (generation and shrinking) is a
/// function of `seed`. No failure persistence: the seed is the reproduction.
pub fn runner(seed: u64, cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        // Shrinking replays whole command streams; bound it.
        max_shrink_time: 120_000,
        ..Config::default()
    };
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes))
}

/// Runs `test` on `cases` values of `strategy` with a printed, replayable
/// seed; on failure panics with the seed, the reason (for the shrunk input)
/// and the shrunk input.
pub fn check<S: Strategy>(
    name: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let seed = seed();
    let cases = cases(default_cases);
    eprintln!("{name}: seed = {seed} (rerun with PROPTEST_SEED={seed}), {cases} cases");
    let mut runner = runner(seed, cases);
    match runner.run(&strategy, test) {
        Ok(()) => {}
        Err(TestError::Abort(reason)) => {
            panic!("{name}: aborted: {reason} (seed = {seed}, rerun with PROPTEST_SEED={seed})")
        }
        Err(TestError::Fail(reason, value)) => panic!(
            "{name}: FAILED with seed = {seed} (rerun with PROPTEST_SEED={seed})\n{reason}\nshrunk input: {value:?}\n\
             (seed = {seed}, rerun with PROPTEST_SEED={seed})"
        ),
    }
}
