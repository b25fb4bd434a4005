pub mod browser;
pub mod client;
pub mod lines;
pub mod quickfix;
pub mod server;
