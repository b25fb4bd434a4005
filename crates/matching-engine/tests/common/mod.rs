pub mod browser;
pub mod client;
pub mod quickfix;
pub mod server;
