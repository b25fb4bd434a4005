//! `matching-engine admin`: the operator console of a running `serve`
//! (`matching_client::admin`), from the command line. Prints the server's
//! JSON answer; exits non-zero if the server refused.

use std::net::SocketAddr;

use anyhow::bail;
use matching_client::admin::{Admin, Answer};

#[derive(clap::Args)]
pub struct Args {
    /// Where `serve` has its metrics, health and console (`--metrics-addr`).
    #[arg(long, default_value_t = matching_server::METRICS_ADDR)]
    addr: SocketAddr,
    /// An operator's user id (a server with a users file asks for one).
    #[arg(long, requires = "key")]
    user: Option<u64>,
    /// That operator's API key.
    #[arg(long, requires = "user")]
    key: Option<String>,
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Health, shards, journal, market data, kill switches, halted symbols.
    Status,
    /// Whether the server is ready (`/health/ready`).
    Ready,
    /// The sessions logged in.
    Sessions,
    /// Drops a session (its cancel-on-disconnect applies).
    Disconnect { session: u64 },
    /// Halts trading in a symbol (journaled: survives a restart).
    Halt { symbol: String },
    /// Resumes trading in a halted symbol.
    Resume { symbol: String },
    /// Kill switch: cancels every order of the user and refuses their new
    /// orders and modifies until released (journaled).
    Kill { user: u64 },
    /// Releases a user's kill switch.
    Release { user: u64 },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut admin = Admin::new(args.addr);
    if let (Some(user), Some(key)) = (args.user, &args.key) {
        admin = admin.with_credentials(user, key);
    }
    let answer: Answer = match args.action {
        Action::Status => admin.status(),
        Action::Ready => admin.ready(),
        Action::Sessions => admin.sessions(),
        Action::Disconnect { session } => admin.disconnect(session),
        Action::Halt { symbol } => admin.halt(&symbol),
        Action::Resume { symbol } => admin.resume(&symbol),
        Action::Kill { user } => admin.kill(user),
        Action::Release { user } => admin.release(user),
    }?;
    println!("{}", serde_json::to_string_pretty(&answer.body)?);
    if !answer.ok() {
        bail!("the server answered {}", answer.status);
    }
    Ok(())
}
