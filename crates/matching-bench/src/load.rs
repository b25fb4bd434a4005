//! `matching-engine load`: drives a running `serve` with the realistic
//! multi-symbol flow over several connections, and measures what comes back.
//!
//! The flow (`matching-workload::generate_multi`, warm-up then timed
//! commands) is split by user over the connections: connection `i` logs in
//! as user `--first-user + i` and carries every command of the flow's users
//! `u` with `u % connections == i`, as its own (so fills come back to it).
//! Orders are named by client order ids (the flow's order id in base 36), so
//! a cancel or modify names its order whatever `seq` the server gave it.
//!
//! - **Closed loop** (`--rate 0`, the default): each connection keeps
//!   `--window` requests unanswered, sending whatever the window allows in
//!   one write; the throughput is what the server sustains.
//! - **Open loop** (`--rate R`): command `i` of a connection is due at
//!   `t0 + i / (R / connections)`; whatever is due goes out in one write.
//!   Latency counts from the intended send time, so time the client spent
//!   behind schedule counts too (no coordinated omission). Within 2 ms of a
//!   send the client sleeps on its thread's timer, not tokio's (which has
//!   1 ms steps).
//!
//! The latency of a request is from its (intended) send time to its
//! answer: `accepted`/`rejected` for a new order, `modified` for a modify,
//! `cancelled` (reason `user`) for a cancel, or a gateway rejection;
//! answers are matched to requests by cid. Needs the server's open
//! development mode (any user logs in with any key).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use matching_client::{Client, Encoding, login};
use matching_core::{Action, CancelReason, Command, UserId};
use matching_proto::session::{Cid, ClientEvent, Reply, Request};
use matching_workload::generate_multi;
use tokio::sync::Notify;

use crate::support::{grouped, json_string, new_histogram};

/// Which front door to drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Wire {
    Binary,
    Json,
    Websocket,
    /// FIX 4.4 (`matching_client::fix_wire`): user `u` logs on as `U<u>`.
    Fix,
}

#[derive(clap::Args)]
pub struct Args {
    /// The server's address for the chosen wire (default: 127.0.0.1:7700,
    /// :7701, :8080 or :7703 for binary, JSON, WebSocket, FIX).
    #[arg(long)]
    addr: Option<String>,
    #[arg(long, value_enum, default_value_t = Wire::Binary)]
    wire: Wire,
    /// Connections, one user each.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// The user id of the first connection.
    #[arg(long, default_value_t = 1_000_001)]
    first_user: u64,
    /// Symbols in the generated flow.
    #[arg(long, default_value_t = 20)]
    symbols: usize,
    /// Timed commands (the warm-up comes first, untimed).
    #[arg(long, default_value_t = 1_000_000)]
    commands: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Commands a second over all connections, open loop (0: closed loop).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Closed loop: requests a connection keeps unanswered.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Print the summary as one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Send times by cid (several requests may name one order), and of the
/// requests without one, in order.
type SendTimes = (HashMap<Cid, VecDeque<Instant>>, VecDeque<Instant>);

/// What one connection saw.
struct Tally {
    sent: u64,
    answered: u64,
    /// Engine rejections (with a `seq`).
    rejected: u64,
    /// Gateway rejections (no `seq`).
    refused: u64,
    fills: u64,
    latency: Histogram<u64>,
}

fn cid_of(order_id: u64) -> Cid {
    let mut digits = [0u8; 13];
    let mut at = digits.len();
    let mut n = order_id;
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize];
        n /= 36;
        if n == 0 {
            break;
        }
    }
    Cid::from_bytes(&digits[at..]).expect("base 36 digits are a cid")
}

/// The flow's command as a request of connection `user`.
fn request(command: &Command, user: UserId) -> (Request, Option<Cid>) {
    match command.action {
        Action::New(mut order) => {
            let cid = cid_of(order.order_id);
            order.user = user;
            (Request::Command { action: Action::New(order), cid: Some(cid) }, Some(cid))
        }
        Action::Cancel { order_id, .. } => (Request::CancelCid { user, cid: cid_of(order_id) }, Some(cid_of(order_id))),
        Action::Modify { order_id, price, qty, .. } => {
            (Request::ModifyCid { user, cid: cid_of(order_id), price, qty }, Some(cid_of(order_id)))
        }
        Action::MassCancel { symbol, side, .. } => {
            (Request::Command { action: Action::MassCancel { user, symbol, side }, cid: None }, None)
        }
        action => (Request::Command { action, cid: None }, None),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.connections == 0 || args.window == 0 {
        bail!("--connections and --window must be at least 1");
    }
    let addr = args.addr.clone().unwrap_or_else(|| {
        match args.wire {
            Wire::Binary => "127.0.0.1:7700",
            Wire::Json => "127.0.0.1:7701",
            Wire::Websocket => "127.0.0.1:8080",
            Wire::Fix => "127.0.0.1:7703",
        }
        .to_string()
    });
    let encoding = match args.wire {
        Wire::Binary => Encoding::Binary,
        Wire::Json => Encoding::Json,
        Wire::Websocket => Encoding::WebSocket,
        Wire::Fix => Encoding::Fix,
    };
    let flow = generate_multi(args.symbols, args.commands, args.seed);
    let conns = args.connections as u64;
    let mut warmups: Vec<Vec<(Request, Option<Cid>)>> = vec![Vec::new(); args.connections];
    let mut timed: Vec<Vec<(Request, Option<Cid>)>> = vec![Vec::new(); args.connections];
    for (lists, commands) in [(&mut warmups, &flow.warmup), (&mut timed, &flow.commands)] {
        for command in commands {
            let k = command.action.user().unwrap_or(0) % conns;
            lists[k as usize].push(request(command, args.first_user + k));
        }
    }
    // A sender may hold its thread while it waits the last 2 ms for a send: a
    // thread per sender and per receiver, so none waits for another.
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2 * args.connections).enable_all().build()?;
    let progress = if args.quiet || args.json {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new(flow.commands.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} answered, {per_sec}, eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    };
    let answered_total = Arc::new(AtomicU64::new(0));
    let (elapsed, tallies) = runtime.block_on(async {
        let mut clients = Vec::new();
        for k in 0..conns {
            let mut client =
                Client::connect(&addr, encoding).await.with_context(|| format!("cannot connect to {addr}"))?;
            match client.login(login(args.first_user + k, "")).await? {
                Reply::LoginAccepted { .. } => {}
                other => bail!("login refused ({other:?}): load needs the server's open development mode"),
            }
            clients.push(client);
        }
        // The warm-up, closed loop, untimed.
        let mut warm = Vec::new();
        for (client, requests) in clients.into_iter().zip(warmups) {
            let hidden = indicatif::ProgressBar::hidden();
            warm.push(tokio::spawn(drive(client, requests, 0.0, args.window, hidden, Arc::new(AtomicU64::new(0)))));
        }
        let mut clients = Vec::new();
        for task in warm {
            clients.push(task.await??.0);
        }
        let per_connection_rate = args.rate as f64 / conns as f64;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (client, requests) in clients.into_iter().zip(timed) {
            let task = drive(
                client,
                requests,
                per_connection_rate,
                args.window,
                progress.clone(),
                Arc::clone(&answered_total),
            );
            tasks.push(tokio::spawn(task));
        }
        let mut tallies = Vec::new();
        for task in tasks {
            tallies.push(task.await??.1);
        }
        Ok::<_, anyhow::Error>((started.elapsed(), tallies))
    })?;
    progress.finish_and_clear();
    report(&args, &addr, elapsed, &tallies)
}

/// Sends `requests` over `client` (closed loop when `rate` is 0) and waits
/// for every answer.
async fn drive(
    client: Client,
    requests: Vec<(Request, Option<Cid>)>,
    rate: f64,
    window: usize,
    progress: indicatif::ProgressBar,
    answered_total: Arc<AtomicU64>,
) -> anyhow::Result<(Client, Tally)> {
    let (mut sender, mut receiver) = client.split();
    let total = requests.len() as u64;
    let answered = Arc::new(AtomicU64::new(0));
    let room = Arc::new(Notify::new());
    let times: Arc<std::sync::Mutex<SendTimes>> = Arc::default();
    let send = {
        let (answered, room, times) = (Arc::clone(&answered), Arc::clone(&room), Arc::clone(&times));
        async move {
            let start = Instant::now();
            let mut next = 0usize;
            let mut batch = Vec::with_capacity(window);
            while next < requests.len() {
                let end = if rate > 0.0 {
                    let due = (start.elapsed().as_secs_f64() * rate) as usize + 1;
                    if due <= next {
                        // Tokio's timer has millisecond steps: sleep to 2 ms
                        // before, then the rest on the thread's own timer
                        // (tens of µs), so a light load is not measured in
                        // timer ticks. (It holds a runtime thread meanwhile.)
                        let at = start + Duration::from_secs_f64(next as f64 / rate);
                        if let Some(early) = at.checked_sub(Duration::from_millis(2))
                            && early > Instant::now()
                        {
                            tokio::time::sleep_until(early.into()).await;
                        }
                        std::thread::sleep(at.saturating_duration_since(Instant::now()));
                        continue;
                    }
                    due.min(requests.len())
                } else {
                    let outstanding = next as u64 - answered.load(Ordering::Acquire);
                    if outstanding as usize >= window {
                        let notified = room.notified();
                        if next as u64 - answered.load(Ordering::Acquire) >= window as u64 {
                            notified.await;
                        }
                        continue;
                    }
                    (next + window - outstanding as usize).min(requests.len())
                };
                batch.clear();
                {
                    let mut times = times.lock().unwrap_or_else(|p| p.into_inner());
                    for (i, (request, cid)) in requests[next..end].iter().enumerate() {
                        let at = if rate > 0.0 {
                            start + Duration::from_secs_f64((next + i) as f64 / rate)
                        } else {
                            Instant::now()
                        };
                        match cid {
                            Some(cid) => times.0.entry(*cid).or_default().push_back(at),
                            None => times.1.push_back(at),
                        }
                        batch.push(request.clone());
                    }
                }
                sender.send_batch(&batch).await?;
                next = end;
            }
            Ok::<_, std::io::Error>(sender)
        }
    };
    let receive = async {
        let mut tally = Tally {
            sent: total,
            answered: 0,
            rejected: 0,
            refused: 0,
            fills: 0,
            latency: new_histogram().map_err(std::io::Error::other)?,
        };
        while tally.answered < total {
            let Some(reply) = receiver.next().await? else {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the server closed the connection"));
            };
            let key = match reply {
                Reply::Event { event, .. } => match event {
                    ClientEvent::Fill { .. } => {
                        tally.fills += 1;
                        continue;
                    }
                    ClientEvent::Accepted { cid, .. } | ClientEvent::Modified { cid, .. } => cid,
                    ClientEvent::Rejected { cid, .. } => {
                        tally.rejected += 1;
                        cid
                    }
                    ClientEvent::Cancelled { cid, reason: CancelReason::User, .. } => cid,
                    ClientEvent::Cancelled { .. } => continue,
                    ClientEvent::MassCancelled { .. } | ClientEvent::Status { .. } => None,
                },
                Reply::Rejected { cid, .. } => {
                    tally.refused += 1;
                    cid
                }
                Reply::Goodbye { reason } => {
                    return Err(std::io::Error::other(format!("the server said goodbye: {reason}")));
                }
                _ => continue,
            };
            let sent_at = {
                let mut times = times.lock().unwrap_or_else(|p| p.into_inner());
                match key {
                    Some(cid) => {
                        let queue = times.0.get_mut(&cid);
                        let at = queue.and_then(|q| q.pop_front());
                        if times.0.get(&cid).is_some_and(VecDeque::is_empty) {
                            times.0.remove(&cid);
                        }
                        at
                    }
                    None => times.1.pop_front(),
                }
            };
            if let Some(at) = sent_at {
                let _ = tally.latency.record(at.elapsed().as_nanos() as u64);
            }
            tally.answered += 1;
            answered.store(tally.answered, Ordering::Release);
            room.notify_one();
            progress.inc(1);
            answered_total.fetch_add(1, Ordering::Relaxed);
        }
        Ok::<_, std::io::Error>((receiver, tally))
    };
    // Two tasks, so that a sender waiting on its thread's timer never holds up the receiver.
    let sending = tokio::spawn(send);
    let received = receive.await;
    let sender = sending.await.map_err(|e| anyhow::anyhow!("the sender failed: {e}"))??;
    let (receiver, tally) = received?;
    Ok((Client::join(sender, receiver), tally))
}

fn report(args: &Args, addr: &str, elapsed: Duration, tallies: &[Tally]) -> anyhow::Result<()> {
    let mut latency = new_histogram()?;
    let (mut sent, mut answered, mut rejected, mut refused, mut fills) = (0, 0, 0, 0, 0);
    for tally in tallies {
        latency.add(&tally.latency)?;
        sent += tally.sent;
        answered += tally.answered;
        rejected += tally.rejected;
        refused += tally.refused;
        fills += tally.fills;
    }
    let per_s = answered as f64 / elapsed.as_secs_f64();
    let us = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let mode = if args.rate == 0 {
        format!("closed loop, window {}", args.window)
    } else {
        format!("open loop at {}/s", args.rate)
    };
    if args.json {
        println!(
            "{{\"wire\":{},\"addr\":{},\"connections\":{},\"mode\":{},\"sent\":{sent},\"answered\":{answered},\"rejected\":{rejected},\"refused\":{refused},\"fills\":{fills},\"seconds\":{:.3},\"answered_per_s\":{per_s:.0},\"latency_us\":{{\"p50\":{:.1},\"p90\":{:.1},\"p99\":{:.1},\"p99.9\":{:.1},\"max\":{:.1}}}}}",
            json_string(&format!("{:?}", args.wire).to_lowercase()),
            json_string(addr),
            args.connections,
            json_string(&mode),
            elapsed.as_secs_f64(),
            us(0.5),
            us(0.9),
            us(0.99),
            us(0.999),
            latency.max() as f64 / 1000.0,
        );
        return Ok(());
    }
    println!(
        "load: {:?} to {addr}, {} connections, {mode}; {} symbols, seed {}",
        args.wire, args.connections, args.symbols, args.seed
    );
    println!();
    println!(
        "| sent | answered | rejected (engine) | refused (gateway) | fills | seconds | answered/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {} | {} | {} | {:.3} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
        grouped(sent as f64),
        grouped(answered as f64),
        grouped(rejected as f64),
        grouped(refused as f64),
        grouped(fills as f64),
        elapsed.as_secs_f64(),
        grouped(per_s),
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
        latency.max() as f64 / 1000.0,
    );
    Ok(())
}
