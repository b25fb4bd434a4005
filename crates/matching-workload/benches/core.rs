//! Micro-benchmarks of the core's operations against a realistic book.
//!
//! `cargo bench -p matching-workload --bench core` (add `-- --quick` for a
//! fast pass, or a filter such as `-- cancel`).
//!
//! Every benchmark measures steady state: the book holds ~10k resting orders
//! laid by the generator's warm-up shape (`standing_book`), and whatever a
//! timed operation changes is put back, untimed, before it can pile up:
//!
//! - `add_resting`: a chunk of non-crossing `gtc` orders at the book's own
//!   price distribution is timed, then cancelled untimed;
//! - `cancel`: a chunk of resting orders (from anywhere in their FIFOs) is
//!   cancelled, timed, then re-entered untimed;
//! - `modify_in_place`: a chunk of quantity reductions at the same price
//!   (keeps priority), timed; the quantities are restored untimed;
//! - `modify_reprice`: a chunk of one-tick moves away from the mid (out of
//!   one level, into another), timed; moved back untimed;
//! - `sweep_ioc_4_levels`: one `ioc` buy that takes 4 thin levels (8 makers)
//!   in front of the book; the levels are laid again untimed. Each sweep is
//!   timed alone, so one clock read (~20-30 ns) is included;
//! - `normal_flow_10k`: 10,000 commands of the `normal` flow on a clone of
//!   the warmed-up exchange (reported per command).
//!
//! Each runs on every level structure. Then, on the default one:
//!
//! - `mass_cancel_among_1m`: a mass cancel of a user with 100 or 100,000
//!   resting orders among 1,000,000 orders of 5,000 other users over four
//!   symbols (reported per order cancelled); the user's orders are laid
//!   again, untimed, after each.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use matching_core::{
    Action, BTreeLevels, Command, Config, Event, EventSink, Exchange, LadderLevels, NewOrder, PriceLevels, RadixLevels,
    RestingOrder, Side, SortedVecLevels, Tif,
};
use matching_workload::{MID_START_TICKS, Scenario, generate, standing_book, symbol};

const BOOK_ORDERS: usize = 10_000;
/// Operations timed between two clock reads.
const CHUNK: usize = 1_000;
const FLOW_CHUNK: usize = 10_000;
const SEED: u64 = 42;
/// Ids above every standing order's.
const FRESH_ID: u64 = 1 << 40;

/// Consumes events: counts them and folds in their seq.
#[derive(Default)]
struct Fold(u64);

impl EventSink for Fold {
    #[inline]
    fn event(&mut self, event: &Event) {
        self.0 = self.0.wrapping_mul(31).wrapping_add(event.seq);
    }
}

fn config() -> Config {
    Config { orders_preallocated: 4 * BOOK_ORDERS, levels_preallocated: 4096, ..Config::default() }
}

fn exchange_of<L: PriceLevels>(commands: &[Command]) -> Exchange<L> {
    let mut exchange = Exchange::<L>::with_levels(config());
    exchange.process_all(commands, &mut Fold::default());
    exchange
}

fn new_order(id: u64, order: RestingOrder) -> Command {
    let new = NewOrder::limit(id, order.user, symbol(), order.side, order.price, order.qty).with_stp(order.stp);
    Command::new(id, Action::New(new))
}

fn cancel(id: u64, order: &RestingOrder) -> Command {
    Command::new(id, Action::Cancel { user: order.user, order_id: order.order_id })
}

fn modify(id: u64, order: &RestingOrder, price: Option<u64>, qty: Option<u64>) -> Command {
    Command::new(id, Action::Modify { user: order.user, order_id: order.order_id, price, qty })
}

/// `CHUNK` resting orders spread evenly over the book (both sides, every depth).
fn sample_orders<L: PriceLevels>(exchange: &Exchange<L>, keep: impl Fn(&RestingOrder) -> bool) -> Vec<RestingOrder> {
    let book = exchange.book(&symbol()).expect("the book exists");
    let all: Vec<RestingOrder> = book.orders(Side::Buy).chain(book.orders(Side::Sell)).filter(|o| keep(o)).collect();
    assert!(all.len() >= CHUNK, "the book has {} eligible orders", all.len());
    let stride = all.len() / CHUNK;
    all.iter().step_by(stride).take(CHUNK).copied().collect()
}

/// Runs `iters` timed commands in chunks: the first `n` of `timed`, then
/// (untimed) the first `n` of `restore`, which put the book back.
fn chunked<L: PriceLevels>(exchange: &mut Exchange<L>, iters: u64, timed: &[Command], restore: &[Command]) -> Duration {
    let mut sink = Fold::default();
    let mut total = Duration::ZERO;
    let mut done = 0u64;
    while done < iters {
        let n = (iters - done).min(CHUNK as u64) as usize;
        let started = Instant::now();
        timed[..n].iter().for_each(|c| exchange.process(c, &mut sink));
        total += started.elapsed();
        restore[..n].iter().for_each(|c| exchange.process(c, &mut sink));
        done += n as u64;
    }
    black_box(sink.0);
    total
}

/// Benchmarks `timed` commands on a copy of `base`, each chunk undone by
/// the matching `restore` commands, so every iteration sees the same book.
fn bench_pair<L: PriceLevels>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    base: &Exchange<L>,
    timed: &[Command],
    restore: &[Command],
) {
    group.bench_function(L::NAME, |b| b.iter_custom(|iters| chunked(&mut base.clone(), iters, timed, restore)));
}

fn add_resting<L: PriceLevels>(group: &mut BenchmarkGroup<'_, WallTime>, base: &Exchange<L>) {
    // New orders at the prices, sides and sizes of a sample of the book:
    // the book's own (power-law) distribution; none crosses.
    let adds: Vec<Command> =
        sample_orders(base, |_| true).iter().enumerate().map(|(i, o)| new_order(FRESH_ID + i as u64, *o)).collect();
    let cancels: Vec<Command> = adds
        .iter()
        .map(|c| match c.action {
            Action::New(o) => Command::new(c.seq, Action::Cancel { user: o.user, order_id: o.order_id }),
            _ => unreachable!(),
        })
        .collect();
    bench_pair(group, base, &adds, &cancels);
}

fn cancel_resting<L: PriceLevels>(group: &mut BenchmarkGroup<'_, WallTime>, base: &Exchange<L>) {
    let orders = sample_orders(base, |_| true);
    let cancels: Vec<Command> = orders.iter().map(|o| cancel(FRESH_ID, o)).collect();
    // The same ids again, at the tail of their levels.
    let readds: Vec<Command> = orders.iter().map(|o| new_order(o.order_id, *o)).collect();
    bench_pair(group, base, &cancels, &readds);
}

fn modify_in_place<L: PriceLevels>(group: &mut BenchmarkGroup<'_, WallTime>, base: &Exchange<L>) {
    let orders = sample_orders(base, |o| o.qty >= 2);
    let reduce: Vec<Command> = orders.iter().map(|o| modify(FRESH_ID, o, None, Some(o.qty - 1))).collect();
    let restore: Vec<Command> = orders.iter().map(|o| modify(FRESH_ID, o, None, Some(o.qty))).collect();
    bench_pair(group, base, &reduce, &restore);
}

fn modify_reprice<L: PriceLevels>(group: &mut BenchmarkGroup<'_, WallTime>, base: &Exchange<L>) {
    let orders = sample_orders(base, |_| true);
    let away = |o: &RestingOrder| match o.side {
        Side::Buy => o.price - 1,
        Side::Sell => o.price + 1,
    };
    let moves: Vec<Command> = orders.iter().map(|o| modify(FRESH_ID, o, Some(away(o)), None)).collect();
    let back: Vec<Command> = orders.iter().map(|o| modify(FRESH_ID, o, Some(o.price), None)).collect();
    bench_pair(group, base, &moves, &back);
}

/// The standing book with its asks moved 8 ticks out, so that thin levels
/// can be laid in front of them.
fn gapped_book() -> Vec<Command> {
    let mut commands = standing_book(BOOK_ORDERS, SEED);
    for command in &mut commands {
        if let Action::New(order) = &mut command.action
            && order.side == Side::Sell
        {
            order.price = order.price.map(|p| p + 8);
        }
    }
    commands
}

fn sweep<L: PriceLevels>(group: &mut BenchmarkGroup<'_, WallTime>, commands: &[Command]) {
    const LEVELS: u64 = 4;
    const MAKERS_PER_LEVEL: u64 = 2;
    const MAKER_QTY: u64 = 10;
    let base = exchange_of::<L>(commands);
    let best_ask = base.book(&symbol()).and_then(|b| b.best_ask()).map(|(p, _)| p).expect("asks");
    assert!(best_ask > MID_START_TICKS + LEVELS, "room in front of the asks");
    let ladder: Vec<Command> = (0..LEVELS * MAKERS_PER_LEVEL)
        .map(|i| {
            let price = MID_START_TICKS + 1 + i / MAKERS_PER_LEVEL;
            let order = NewOrder::limit(FRESH_ID + i, 5_000 + i, symbol(), Side::Sell, price, MAKER_QTY);
            Command::new(FRESH_ID + i, Action::New(order))
        })
        .collect();
    let taker_id = FRESH_ID + 1_000;
    let taker = NewOrder::limit(
        taker_id,
        6_000,
        symbol(),
        Side::Buy,
        MID_START_TICKS + LEVELS,
        LEVELS * MAKERS_PER_LEVEL * MAKER_QTY,
    )
    .with_tif(Tif::Ioc);
    let taker = Command::new(taker_id, Action::New(taker));
    group.bench_function(L::NAME, |b| {
        b.iter_custom(|iters| {
            let mut exchange = base.clone();
            let mut sink = Fold::default();
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                ladder.iter().for_each(|c| exchange.process(c, &mut sink));
                let started = Instant::now();
                exchange.process(&taker, &mut sink);
                total += started.elapsed();
            }
            debug_assert_eq!(exchange.order_count(), BOOK_ORDERS, "the sweep took exactly the ladder");
            black_box(sink.0);
            total
        })
    });
}

fn normal_flow<L: PriceLevels>(group: &mut BenchmarkGroup<'_, WallTime>, warmup: &[Command], chunk: &[Command]) {
    let base = exchange_of::<L>(warmup);
    group.bench_function(L::NAME, |b| {
        b.iter_batched(
            || base.clone(),
            |mut exchange| {
                let mut sink = Fold::default();
                chunk.iter().for_each(|c| exchange.process(c, &mut sink));
                black_box(sink.0);
                exchange
            },
            BatchSize::LargeInput,
        )
    });
}

/// One benchmark group named `$name`, measuring `$body` once per level
/// structure with `$levels` naming the structure.
macro_rules! per_structure {
    ($c:expr, $name:expr, $elements:expr, |$group:ident, $levels:ident| $body:expr) => {{
        let mut $group = $c.benchmark_group($name);
        $group.throughput(Throughput::Elements($elements));
        {
            type $levels = SortedVecLevels;
            $body;
        }
        {
            type $levels = BTreeLevels;
            $body;
        }
        {
            type $levels = LadderLevels;
            $body;
        }
        {
            type $levels = RadixLevels;
            $body;
        }
        $group.finish();
    }};
}

fn benches(c: &mut Criterion) {
    let book = standing_book(BOOK_ORDERS, SEED);
    assert_eq!(exchange_of::<LadderLevels>(&book).order_count(), BOOK_ORDERS);
    per_structure!(c, "add_resting_10k", 1, |group, L| add_resting(&mut group, &exchange_of::<L>(&book)));
    per_structure!(c, "cancel_10k", 1, |group, L| cancel_resting(&mut group, &exchange_of::<L>(&book)));
    per_structure!(c, "modify_in_place_10k", 1, |group, L| modify_in_place(&mut group, &exchange_of::<L>(&book)));
    per_structure!(c, "modify_reprice_10k", 1, |group, L| modify_reprice(&mut group, &exchange_of::<L>(&book)));

    let gapped = gapped_book();
    per_structure!(c, "sweep_ioc_4_levels_10k", 1, |group, L| sweep::<L>(&mut group, &gapped));

    let flow = generate(Scenario::Normal, FLOW_CHUNK, SEED);
    per_structure!(c, "normal_flow_10k", FLOW_CHUNK as u64, |group, L| {
        group.sample_size(30);
        normal_flow::<L>(&mut group, &flow.warmup, &flow.commands)
    });
}

/// A mass cancel of a user with `mine` resting orders among `OTHERS` others.
fn mass_cancel(c: &mut Criterion) {
    const OTHERS: u64 = 1_000_000;
    const USER: u64 = 7;
    let symbols = ["AAA", "BBB", "CCC", "DDD"].map(|name| matching_core::Symbol::new(name).unwrap());
    let order = |id: u64, user: u64, i: u64| {
        let side = if i.is_multiple_of(2) { Side::Buy } else { Side::Sell };
        let price = if side == Side::Buy { 1_000 - i % 500 } else { 1_001 + i % 500 };
        Command::new(id, Action::New(NewOrder::limit(id, user, symbols[(i / 2 % 4) as usize], side, price, 1 + i % 9)))
    };
    let config = Config { orders_preallocated: 1 << 21, ..Config::default() };
    let mut others: Exchange = Exchange::new(config);
    for i in 0..OTHERS {
        others.process(&order(i + 1, 100 + i % 5_000, i), &mut Fold::default());
    }
    let mut group = c.benchmark_group("mass_cancel_among_1m");
    group.sample_size(10);
    for mine in [100u64, 100_000] {
        group.throughput(Throughput::Elements(mine));
        group.bench_function(format!("user_with_{mine}"), |b| {
            b.iter_custom(|iters| {
                let mut exchange = others.clone();
                let mut next_id = FRESH_ID;
                let mut sink = Fold::default();
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    for i in 0..mine {
                        next_id += 1;
                        exchange.process(&order(next_id, USER, i * 7), &mut sink);
                    }
                    next_id += 1;
                    let command = Command::new(next_id, Action::MassCancel { user: USER, symbol: None, side: None });
                    let started = Instant::now();
                    exchange.process(&command, &mut sink);
                    total += started.elapsed();
                }
                black_box(sink.0);
                total
            })
        });
    }
    group.finish();
}

/// `n` resting buys, each a tick below the last (every one a new level at
/// the far end of the book), into an empty book: time per order.
fn far_prices(c: &mut Criterion) {
    fn lay<L: PriceLevels>(n: u64) -> Duration {
        let config = Config { orders_preallocated: n as usize, ..Config::default() };
        let mut exchange = Exchange::<L>::with_levels(config);
        let mut sink = Fold::default();
        let started = Instant::now();
        for i in 1..=n {
            let order = NewOrder::limit(i, 1, symbol(), Side::Buy, 10_000_000 - i, 1);
            exchange.process(&Command::new(i, Action::New(order)), &mut sink);
        }
        let elapsed = started.elapsed();
        black_box(sink.0);
        elapsed
    }
    let mut group = c.benchmark_group("far_prices");
    group.sample_size(10);
    for n in [20_000u64, 200_000] {
        group.throughput(Throughput::Elements(n));
        group.bench_function(format!("radix_{n}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| lay::<RadixLevels>(n)).sum())
        });
        group.bench_function(format!("btree_{n}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| lay::<BTreeLevels>(n)).sum())
        });
    }
    // The window and the sorted vector move every level below the touch: quadratic, so only the small book.
    group.bench_function("ladder_20000", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| lay::<LadderLevels>(20_000)).sum())
    });
    group.bench_function("sorted-vec_20000", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| lay::<SortedVecLevels>(20_000)).sum())
    });
    group.finish();
}

/// Resting orders added and cancelled with ids in three orders: increasing
/// (a sequencer's), a random permutation (client-chosen), and a stride of
/// 196,608 (timestamps): time per add + cancel, on a book of 10,000 others.
fn id_orders(c: &mut Criterion) {
    const N: u64 = 10_000;
    type IdOf = Box<dyn Fn(u64) -> u64>;
    let patterns: [(&str, IdOf); 3] = [
        ("increasing", Box::new(|i| FRESH_ID + i)),
        ("random", Box::new(|i| FRESH_ID + (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 24))),
        ("stride_196608", Box::new(|i| FRESH_ID + i * 196_608)),
    ];
    let book = standing_book(BOOK_ORDERS, SEED);
    // Reported per order: one add and one cancel.
    let mut group = c.benchmark_group("ids_in_any_order");
    group.throughput(Throughput::Elements(1));
    for (name, id) in &patterns {
        let adds: Vec<Command> = (0..N)
            .map(|i| {
                let side = if i % 2 == 0 { Side::Buy } else { Side::Sell };
                let price = if side == Side::Buy { MID_START_TICKS - 1 - i % 50 } else { MID_START_TICKS + 1 + i % 50 };
                Command::new(id(i), Action::New(NewOrder::limit(id(i), 3, symbol(), side, price, 1)))
            })
            .collect();
        let cancels: Vec<Command> =
            (0..N).map(|i| Command::new(id(i), Action::Cancel { user: 3, order_id: id(i) })).collect();
        let base = exchange_of::<RadixLevels>(&book);
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                let mut exchange = base.clone();
                let mut sink = Fold::default();
                let started = Instant::now();
                for _ in 0..iters.div_ceil(N) {
                    adds.iter().for_each(|c| exchange.process(c, &mut sink));
                    cancels.iter().for_each(|c| exchange.process(c, &mut sink));
                }
                black_box(sink.0);
                started.elapsed().mul_f64(iters as f64 / (iters.div_ceil(N) * N) as f64)
            })
        });
    }
    group.finish();
}

/// `decode_state` of a book of `levels` levels a side (one order each):
/// linear in the book for the trie and the B-tree.
fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_state");
    group.sample_size(10);
    for levels in [20_000u64, 80_000] {
        let mut exchange = Exchange::new(Config { orders_preallocated: 2 * levels as usize, ..Config::default() });
        for i in 1..=levels {
            for (k, side, price) in [(0, Side::Buy, 1_000_000 - i), (1, Side::Sell, 1_000_000 + i)] {
                let id = 2 * i + k;
                exchange.process(
                    &Command::new(id, Action::New(NewOrder::limit(id, 1, symbol(), side, price, 1))),
                    &mut Fold::default(),
                );
            }
        }
        let bytes = exchange.encode_state();
        let config = Config { orders_preallocated: 2 * levels as usize, ..Config::default() };
        group.throughput(Throughput::Elements(2 * levels));
        group.bench_function(format!("radix_{levels}"), |b| {
            b.iter(|| black_box(Exchange::<RadixLevels>::decode_state(config.clone(), &bytes).map(|e| e.order_count())))
        });
        group.bench_function(format!("btree_{levels}"), |b| {
            b.iter(|| black_box(Exchange::<BTreeLevels>::decode_state(config.clone(), &bytes).map(|e| e.order_count())))
        });
    }
    group.finish();
}

criterion_group!(core, benches, mass_cancel, far_prices, id_orders, decode);
criterion_main!(core);
