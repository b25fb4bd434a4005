//! A client for the operator console and health of `serve` (HTTP at
//! `--metrics-addr`, 127.0.0.1:7702 by default). Blocking: it is for
//! scripts, the `admin` subcommand and tests, not the trading path.
//!
//! ```no_run
//! use matching_client::admin::Admin;
//! let admin = Admin::new("127.0.0.1:7702".parse().unwrap());
//! let answer = admin.kill(7).unwrap(); // user 7's orders cancelled, new ones refused
//! println!("{}", answer.body);
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use matching_core::UserId;

/// What the server answered: the HTTP status and the body as JSON (or, for
/// a body that is not JSON, as a JSON string).
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The request did not reach the server, or its answer did not come back.
#[derive(Debug)]
pub struct AdminError(String);

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AdminError {}

/// The console of one server.
pub struct Admin {
    base: String,
    agent: ureq::Agent,
    /// `user:key` of an operator, for a server with a users file.
    credentials: Option<String>,
}

impl Admin {
    pub fn new(addr: SocketAddr) -> Admin {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(15)))
            .build()
            .into();
        Admin { base: format!("http://{addr}"), agent, credentials: None }
    }

    /// Sends an operator's credentials with every request.
    pub fn with_credentials(mut self, user: UserId, key: &str) -> Admin {
        self.credentials = Some(format!("{user}:{key}"));
        self
    }

    fn call(&self, post: bool, path: &str) -> Result<(u16, String), AdminError> {
        let url = format!("{}{path}", self.base);
        let failed = |e: ureq::Error| AdminError(format!("{url}: {e}"));
        let response = if post {
            let mut request = self.agent.post(&url);
            if let Some(credentials) = &self.credentials {
                request = request.header("Authorization", &format!("Bearer {credentials}"));
            }
            request.send_empty()
        } else {
            let mut request = self.agent.get(&url);
            if let Some(credentials) = &self.credentials {
                request = request.header("Authorization", &format!("Bearer {credentials}"));
            }
            request.call()
        };
        let mut response = response.map_err(failed)?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().map_err(failed)?;
        Ok((status, text))
    }

    /// `GET path`, the body read as JSON.
    pub fn get(&self, path: &str) -> Result<Answer, AdminError> {
        self.call(false, path).map(json)
    }

    /// `POST path` (no body), the answer read as JSON.
    pub fn post(&self, path: &str) -> Result<Answer, AdminError> {
        self.call(true, path).map(json)
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> Result<String, AdminError> {
        match self.call(false, "/metrics")? {
            (200, text) => Ok(text),
            (status, text) => Err(AdminError(format!("/metrics answered {status}: {text}"))),
        }
    }

    /// `/health/ready`: 200 when ready, 503 with `status` and `reason` when not.
    pub fn ready(&self) -> Result<Answer, AdminError> {
        self.get("/health/ready")
    }

    pub fn status(&self) -> Result<Answer, AdminError> {
        self.get("/admin/status")
    }

    pub fn sessions(&self) -> Result<Answer, AdminError> {
        self.get("/admin/sessions")
    }

    pub fn disconnect(&self, session: u64) -> Result<Answer, AdminError> {
        self.post(&format!("/admin/sessions/{session}/disconnect"))
    }

    pub fn halt(&self, symbol: &str) -> Result<Answer, AdminError> {
        self.post(&format!("/admin/symbols/{symbol}/halt"))
    }

    pub fn resume(&self, symbol: &str) -> Result<Answer, AdminError> {
        self.post(&format!("/admin/symbols/{symbol}/resume"))
    }

    /// Turns the user's kill switch on: their orders are cancelled, their
    /// new orders and modifies refused until [`Admin::release`].
    pub fn kill(&self, user: UserId) -> Result<Answer, AdminError> {
        self.post(&format!("/admin/users/{user}/kill"))
    }

    pub fn release(&self, user: UserId) -> Result<Answer, AdminError> {
        self.post(&format!("/admin/users/{user}/release"))
    }
}

fn json((status, text): (u16, String)) -> Answer {
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Answer { status, body }
}
