//! Logs in, rests a sell, crosses it with a buy from a second session, and
//! prints what each session hears.
//!
//! ```sh
//! cargo run --release -- serve &          # open development mode, ./data
//! cargo run -p matching-client --example trade
//! cargo run -p matching-client --example trade -- 127.0.0.1:7701 json
//! ```

use std::time::Duration;

use matching_client::{Client, Encoding, login};
use matching_core::{Action, NewOrder, Side, Symbol};
use matching_proto::session::{Cid, Reply, Request};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7700".to_string());
    let encoding = if args.next().as_deref() == Some("json") { Encoding::Json } else { Encoding::Binary };
    let symbol = Symbol::new("DEMO-USD").expect("a symbol");

    let mut seller = Client::connect(&addr, encoding).await?;
    let mut buyer = Client::connect(&addr, encoding).await?;
    println!("seller: {:?}", seller.login(login(1, "")).await?);
    println!("buyer:  {:?}", buyer.login(login(2, "")).await?);

    let sell = NewOrder::limit(0, 1, symbol, Side::Sell, 100, 10);
    seller.send(&Request::Command { action: Action::New(sell), cid: Cid::new("ask-1") }).await?;
    let buy = NewOrder::limit(0, 2, symbol, Side::Buy, 100, 4);
    buyer.send(&Request::Command { action: Action::New(buy), cid: Cid::new("bid-1") }).await?;
    seller.send(&Request::Orders).await?;

    for (name, client) in [("seller", &mut seller), ("buyer", &mut buyer)] {
        while let Some(reply) = client.next_within(Duration::from_millis(500)).await? {
            println!("{name}: {reply:?}");
            if let Reply::Orders(_) = reply {
                break;
            }
        }
    }
    Ok(())
}
