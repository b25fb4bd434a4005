//! The core allocates nothing per command in steady state.
//!
//! A counting global allocator (per thread, so the test harness's own
//! threads do not disturb the count) watches the second half of each
//! scenario's flow, after the first half has taken the arena, the id index
//! and the level maps to their high-water marks within the configured
//! preallocation. Every event goes to a sink that only folds it into a sum.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use matching_core::{
    BTreeLevels, Config, DiscardEvents, Event, EventKind, Exchange, LadderLevels, PriceLevels, SortedVecLevels,
};
use matching_workload::{Scenario, generate};

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// Bytes allocated and not yet freed by this thread.
    static LIVE_BYTES: Cell<i64> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: the thread-local may be gone while a thread shuts down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

fn count_bytes(delta: i64) {
    let _ = LIVE_BYTES.try_with(|n| n.set(n.get() + delta));
}

fn live_bytes() -> i64 {
    LIVE_BYTES.with(Cell::get)
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counting only touches a const-initialised thread-local `Cell`.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        count_bytes(layout.size() as i64);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        count_bytes(layout.size() as i64);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        count_bytes(new_size as i64 - layout.size() as i64);
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count_bytes(-(layout.size() as i64));
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Allocations made by the second half of `scenario`'s flow, and the
/// number of trades in that half.
fn steady_state_allocations<L: PriceLevels>(scenario: Scenario, seed: u64) -> (u64, u64) {
    let flow = generate(scenario, 200_000, seed);
    let config = Config {
        orders_preallocated: flow.stats.resting_max as usize * 2,
        levels_preallocated: 8192,
        ..Config::default()
    };
    let mut exchange: Exchange<L> = Exchange::with_levels(config);
    let (warm, measured) = flow.commands.split_at(flow.commands.len() / 2);
    exchange.process_all(flow.warmup.iter().chain(warm), &mut DiscardEvents);

    let mut trades = 0u64;
    let mut sink = |event: &Event| trades += matches!(event.kind, EventKind::Trade(_)) as u64;
    let before = allocations();
    exchange.process_all(measured, &mut sink);
    let allocated = allocations() - before;
    exchange.validate().unwrap();
    (allocated, trades)
}

#[test]
fn steady_state_matching_allocates_nothing() {
    let seed = 7;
    eprintln!("seed = {seed}");
    for scenario in Scenario::ALL {
        for (levels, (allocated, trades)) in [
            (LadderLevels::NAME, steady_state_allocations::<LadderLevels>(scenario, seed)),
            (SortedVecLevels::NAME, steady_state_allocations::<SortedVecLevels>(scenario, seed)),
        ] {
            assert_eq!(
                allocated, 0,
                "{scenario}, {levels}: {allocated} allocations over 100,000 steady-state commands"
            );
            // The measured half really matched: orders rested, traded and left.
            assert!(trades > 1000, "{scenario}, {levels}: only {trades} trades");
        }
    }
}

/// The count has teeth: the B-tree level map allocates a node now and then
/// as levels come and go (one reason it lost to the sorted vector).
#[test]
fn btree_levels_do_allocate() {
    let (allocated, _) = steady_state_allocations::<BTreeLevels>(Scenario::Volatile, 7);
    assert!(allocated > 0);
}

#[test]
fn the_counter_sees_allocations() {
    let before = allocations();
    let v: Vec<u64> = std::hint::black_box(Vec::with_capacity(10));
    assert_eq!(allocations() - before, 1);
    drop(v);
}

/// Memory per book: an empty book (a halted symbol) and a sparse one (one
/// order on each side) cost well under a kilobyte each, everything they
/// hold on the heap and their share of the exchange's tables included.
#[test]
fn empty_and_sparse_books_cost_under_a_kilobyte() {
    use matching_core::{Action, Command, NewOrder, Side, Symbol};
    const BOOKS: u64 = 10_000;
    let name = |i: u64| Symbol::new(&format!("S{i}")).unwrap();
    let mut exchange = Exchange::new(Config { orders_preallocated: 0, ..Config::default() });
    let before = live_bytes();
    for i in 0..BOOKS {
        exchange.process(&Command::new(i + 1, Action::Halt { symbol: name(i) }), &mut DiscardEvents);
    }
    let empty = (live_bytes() - before) as f64 / BOOKS as f64;
    let before = live_bytes();
    let mut seq = BOOKS;
    for i in BOOKS..2 * BOOKS {
        for (side, price) in [(Side::Buy, 99), (Side::Sell, 101)] {
            seq += 1;
            let order = NewOrder::limit(seq, 1 + i % 7, name(i), side, price, 5);
            exchange.process(&Command::new(seq, Action::New(order)), &mut DiscardEvents);
        }
    }
    let sparse = (live_bytes() - before) as f64 / BOOKS as f64;
    eprintln!("bytes per book: empty {empty:.0}, with one order a side {sparse:.0} (the two orders included)");
    assert_eq!(exchange.order_count() as u64, 2 * BOOKS);
    assert!(empty < 512.0, "an empty book costs {empty:.0} bytes");
    assert!(sparse < 1024.0, "a sparse book costs {sparse:.0} bytes");
}
