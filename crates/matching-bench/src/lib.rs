//! The benchmark harnesses behind `matching-engine bench`, `bench-engine`
//! and `bench-durable`, and `generate`, which writes the order flow they
//! run as JSON lines. Each prints Markdown tables with the exact command,
//! the machine and the date; `docs/BENCHMARKS.md` records them.
//!
//! - [`core`]: the order-book core on one thread, every scenario and level structure.
//! - [`engine`]: the multi-core engine beside the bare core.
//! - [`durable`]: the journal: fsync cost, throughput, ack latency, recovery, snapshots.
//! - [`generate`]: the generated flow as JSON lines.
//! - [`load`]: drives a running `serve` over the network.
//!
//! They share their helpers (event checksum, client loops, load meter,
//! formatting) in `support`.

pub mod core;
pub mod durable;
pub mod engine;
pub mod generate;
pub mod load;
mod support;
