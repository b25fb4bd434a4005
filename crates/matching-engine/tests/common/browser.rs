//! A small, blocking W3C WebDriver client, for tests that drive Debian's
//! headless Chromium through Debian's chromedriver.
//!
//! [`Browser::start`] runs one chromedriver on a free loopback port and opens
//! one session in it; dropping the [`Browser`] ends the session and stops
//! chromedriver, and with it Chromium. Every command blocks; a WebDriver error
//! panics with the command, the error name and its message (the `try_*`
//! methods return it as a [`WebDriverError`] instead).
//!
//! Needs Debian's `chromium` and `chromium-driver` (the binaries default to
//! `/usr/bin/chromium` and `/usr/bin/chromedriver`, overridden by the
//! `CHROMIUM` and `CHROMEDRIVER` environment variables); without them the
//! tests fail, they do not skip.
//!
//! Console errors come from chromedriver's legacy log endpoint
//! (`POST /session/{id}/se/log`, type `browser`), which still works in W3C
//! mode with Chromium 148; see [`Browser::console_errors`].

#![allow(dead_code)]

use std::fmt;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key under which W3C WebDriver sends an element reference (the web
/// element identifier of the spec; `element-6066-11e4-a5b4-9f4c9d17ab8d`,
/// sometimes quoted, is not it and chromedriver ignores it).
pub const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long [`Browser::wait_for`] and the like wait by default.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long one HTTP request to chromedriver may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long chromedriver may take to answer `/status` with `ready`.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Page loads and async scripts give up before an HTTP request does.
const PAGE_LOAD_TIMEOUT: Duration = Duration::from_secs(20);
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(20);
/// How often [`Browser::wait_until`] polls.
const POLL: Duration = Duration::from_millis(50);

const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
const DEFAULT_CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const INSTALL: &str = "install them with `sudo apt-get install chromium chromium-driver`";

/// A failed WebDriver command: `error` is the W3C error name (`no such
/// element`, `javascript error`, ...), or `http` when chromedriver could not
/// be reached or answered something that is not WebDriver JSON.
#[derive(Clone, Debug)]
pub struct WebDriverError {
    pub command: String,
    pub error: String,
    pub message: String,
}

impl fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebDriver {} failed: {}: {}", self.command, self.error, self.message)
    }
}

impl std::error::Error for WebDriverError {}

/// A reference to an element of the current page (its W3C element id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub id: String,
}

impl Element {
    /// The element as a script argument for [`Browser::execute`].
    pub fn to_json(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }

    /// The element a script returned, if `value` is one.
    pub fn from_json(value: &Value) -> Option<Element> {
        value.get(ELEMENT_KEY)?.as_str().map(|id| Element { id: id.to_string() })
    }
}

/// A running chromedriver; killed when dropped.
struct Driver {
    child: Child,
    log: PathBuf,
}

impl Driver {
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The end of chromedriver's log, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!("chromedriver log {}:\n{tail}", self.log.display())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One headless Chromium, driven through its own chromedriver.
pub struct Browser {
    agent: ureq::Agent,
    /// `http://127.0.0.1:PORT`
    base: String,
    session: String,
    /// Chromium's browser process, killed on drop if the session did not take it down.
    browser_pid: Option<u32>,
    driver: Driver,
}

impl Browser {
    /// Starts chromedriver and opens a session with headless Chromium.
    /// Panics (with the end of chromedriver's log) if either fails, or if
    /// the binaries are missing.
    pub fn start() -> Browser {
        let chromium = binary("CHROMIUM", DEFAULT_CHROMIUM);
        let chromedriver = binary("CHROMEDRIVER", DEFAULT_CHROMEDRIVER);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(HTTP_TIMEOUT))
            .proxy(None)
            .build()
            .into();

        // The port is free when picked but may be taken before chromedriver
        // binds it (tests run in parallel): then try another.
        let mut attempt = 0;
        let (driver, base) = loop {
            attempt += 1;
            let (mut driver, port) = spawn_driver(&chromedriver);
            let base = format!("http://127.0.0.1:{port}");
            match wait_ready(&agent, &base, &mut driver) {
                Ok(()) => break (driver, base),
                Err(why) if attempt < 3 => eprintln!("chromedriver did not start ({why}), retrying"),
                Err(why) => panic!("chromedriver did not start: {why}\n{}", driver.log_tail()),
            }
        };

        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--window-size=1440,1000",
                        ],
                    },
                    "goog:loggingPrefs": { "browser": "ALL" },
                }
            }
        });
        let created = match request(&agent, "POST", &format!("{base}/session"), Some(&capabilities)) {
            Ok(value) => value,
            Err(e) => panic!("cannot open a Chromium session ({}): {e}\n{}", chromium.display(), driver.log_tail()),
        };
        let session = match created["sessionId"].as_str() {
            Some(id) => id.to_string(),
            None => panic!("POST /session answered no sessionId: {created}\n{}", driver.log_tail()),
        };
        let browser_pid = created["capabilities"]["goog:processID"].as_u64().map(|pid| pid as u32);
        let browser = Browser { agent, base, session, browser_pid, driver };
        browser.cmd(
            "POST",
            "/timeouts",
            Some(json!({
                "pageLoad": PAGE_LOAD_TIMEOUT.as_millis() as u64,
                "script": SCRIPT_TIMEOUT.as_millis() as u64,
            })),
        );
        browser
    }

    /// Where chromedriver writes its log.
    pub fn driver_log(&self) -> &Path {
        &self.driver.log
    }

    /// Chromium's browser process, as chromedriver reported it.
    pub fn browser_pid(&self) -> Option<u32> {
        self.browser_pid
    }

    /// The processes chromedriver started (Chromium and its helpers) that
    /// run now; dropping the browser ends them.
    pub fn processes(&self) -> Vec<u32> {
        descendants(self.driver.child.id()).into_iter().filter(|pid| process_alive(*pid)).collect()
    }

    // --- raw commands -----------------------------------------------------

    /// Sends a command of this session: `path` is relative to
    /// `/session/{id}` (`""` or starting with `/`). Returns the answer's `value`.
    pub fn try_cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, WebDriverError> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        request(&self.agent, method, &url, body.as_ref())
    }

    /// [`Browser::try_cmd`], panicking on an error.
    pub fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_cmd(method, path, body).unwrap_or_else(|e| panic!("{e}"))
    }

    // --- navigation -------------------------------------------------------

    /// Loads `url` and waits for the page to load.
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn refresh(&self) {
        self.cmd("POST", "/refresh", Some(json!({})));
    }

    pub fn title(&self) -> String {
        string(self.cmd("GET", "/title", None))
    }

    pub fn current_url(&self) -> String {
        string(self.cmd("GET", "/url", None))
    }

    // --- elements ---------------------------------------------------------

    /// The first element matching the CSS selector, if any.
    pub fn find(&self, css: &str) -> Option<Element> {
        let by = json!({ "using": "css selector", "value": css });
        match self.try_cmd("POST", "/element", Some(by)) {
            Ok(value) => Some(element(&value, css)),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("{e}"),
        }
    }

    /// All elements matching the CSS selector, in document order.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let by = json!({ "using": "css selector", "value": css });
        match self.cmd("POST", "/elements", Some(by)) {
            Value::Array(found) => found.iter().map(|v| element(v, css)).collect(),
            other => panic!("POST /elements {css:?} answered {other}"),
        }
    }

    /// The first element under `parent` matching the CSS selector, if any.
    pub fn find_in(&self, parent: &Element, css: &str) -> Option<Element> {
        let by = json!({ "using": "css selector", "value": css });
        match self.try_cmd("POST", &format!("/element/{}/element", parent.id), Some(by)) {
            Ok(value) => Some(element(&value, css)),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`Browser::find`], panicking if nothing matches.
    pub fn get(&self, css: &str) -> Element {
        self.find(css).unwrap_or_else(|| panic!("no element matches {css:?} on {}", self.current_url()))
    }

    /// Waits (up to `timeout`) for an element matching `css` to exist.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> Element {
        self.wait_until(&format!("an element matching {css:?}"), timeout, |b| b.find(css))
    }

    /// Clicks the element (scrolled into view; fails if something covers it).
    pub fn click(&self, el: &Element) {
        self.cmd("POST", &format!("/element/{}/click", el.id), Some(json!({})));
    }

    /// Empties an input or textarea.
    pub fn clear(&self, el: &Element) {
        self.cmd("POST", &format!("/element/{}/clear", el.id), Some(json!({})));
    }

    /// Types `text` into the element, as keystrokes.
    pub fn send_keys(&self, el: &Element, text: &str) {
        self.cmd("POST", &format!("/element/{}/value", el.id), Some(json!({ "text": text })));
    }

    /// The element's rendered text (`innerText`-like; empty when hidden).
    pub fn text(&self, el: &Element) -> String {
        string(self.cmd("GET", &format!("/element/{}/text", el.id), None))
    }

    /// The element's HTML attribute as in the markup (an input's `value`
    /// attribute stays what the page set; read typed text with
    /// [`Browser::property`]), `None` if it has none.
    pub fn attribute(&self, el: &Element, name: &str) -> Option<String> {
        match self.cmd("GET", &format!("/element/{}/attribute/{name}", el.id), None) {
            Value::Null => None,
            Value::String(s) => Some(s),
            other => Some(other.to_string()),
        }
    }

    /// The element's DOM property (`value`, `checked`, ...): `None` if it is
    /// null or undefined, a string as is, anything else as JSON text
    /// (`true`, `3`).
    pub fn property(&self, el: &Element, name: &str) -> Option<String> {
        match self.cmd("GET", &format!("/element/{}/property/{name}", el.id), None) {
            Value::Null => None,
            Value::String(s) => Some(s),
            other => Some(other.to_string()),
        }
    }

    pub fn is_displayed(&self, el: &Element) -> bool {
        match self.cmd("GET", &format!("/element/{}/displayed", el.id), None) {
            Value::Bool(shown) => shown,
            other => panic!("GET /element/displayed answered {other}"),
        }
    }

    /// Clicks the first element matching `css`; panics if there is none.
    pub fn click_css(&self, css: &str) {
        let el = self.get(css);
        self.click(&el);
    }

    /// Empties the first input matching `css`, then types `text` into it.
    pub fn fill(&self, css: &str, text: &str) {
        let el = self.get(css);
        self.clear(&el);
        self.send_keys(&el, text);
    }

    /// Sets the value of the `<select>` matching `css` (by script) and
    /// dispatches a bubbling `change` event. Panics if there is no such
    /// select or it has no option with that value.
    pub fn select(&self, css: &str, value: &str) {
        let script = "const [css, value] = arguments;
            const el = document.querySelector(css);
            if (!el) return 'no element matches';
            el.value = value;
            if (el.value !== value) return 'no option has that value';
            el.dispatchEvent(new Event('change', { bubbles: true }));
            return null;";
        if let Value::String(why) = self.execute(script, vec![json!(css), json!(value)]) {
            panic!("cannot select {value:?} in {css:?}: {why}");
        }
    }

    // --- scripts ----------------------------------------------------------

    /// Runs `script` as the body of a function (so `return` it, and read
    /// `arguments`); elements pass in and out as [`Element::to_json`] /
    /// [`Element::from_json`]. A thrown exception panics.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({ "script": script, "args": args })))
    }

    /// Runs `script` as the body of an async function whose last argument is
    /// a callback: the value passed to it is the result (up to 20 s).
    pub fn execute_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.cmd("POST", "/execute/async", Some(json!({ "script": script, "args": args })))
    }

    // --- waiting ----------------------------------------------------------

    /// Calls `f` every 50 ms until it returns `Some`, for up to `timeout`.
    /// On timeout panics with `what` and the page's console errors, and
    /// leaves a screenshot in the test target's temporary directory.
    pub fn wait_until<T>(&self, what: &str, timeout: Duration, mut f: impl FnMut(&Browser) -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(done) = f(self) {
                return done;
            }
            if Instant::now() >= deadline {
                break;
            }
            thread::sleep(POLL);
        }
        let errors = self.console_errors();
        let shot = scratch_path("timeout", "png");
        let shot = match self.try_screenshot(&shot) {
            Ok(()) => format!("screenshot: {}", shot.display()),
            Err(e) => format!("no screenshot: {e}"),
        };
        panic!(
            "timed out after {timeout:?} waiting for {what} on {}\npage errors: {errors:#?}\n{shot}",
            self.try_cmd("GET", "/url", None).map(string).unwrap_or_default(),
        );
    }

    // --- screenshots and logs ---------------------------------------------

    /// Writes a PNG of the viewport to `path`, creating its directory.
    pub fn screenshot(&self, path: &Path) {
        self.try_screenshot(path).unwrap_or_else(|e| panic!("screenshot {}: {e}", path.display()));
    }

    fn try_screenshot(&self, path: &Path) -> Result<(), String> {
        let encoded = string(self.try_cmd("GET", "/screenshot", None).map_err(|e| e.to_string())?);
        let png = decode_base64(&encoded)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(path, png).map_err(|e| e.to_string())
    }

    /// The `SEVERE` entries of the browser log (console.error, uncaught
    /// exceptions, failed resource loads) logged since the previous call:
    /// chromedriver hands each entry out once, so a call drains the log.
    ///
    /// Read through chromedriver's legacy `POST /session/{id}/se/log`
    /// (type `browser`, enabled by `goog:loggingPrefs`). A message reads
    /// like `http://127.0.0.1:PORT/ 18:58 "boom"` (the script's URL,
    /// line:column, then the logged values as JSON), or for an uncaught
    /// exception `http://... 3:9 Uncaught Error: bad` (`javascript 2:49 ...`
    /// when it came from a script run by [`Browser::execute`]).
    pub fn console_errors(&self) -> Vec<String> {
        self.console_log().into_iter().filter(|(level, _)| level == "SEVERE").map(|(_, message)| message).collect()
    }

    /// Every browser log entry since the previous call (of this or of
    /// [`Browser::console_errors`]), as `(level, message)`; levels are
    /// `SEVERE`, `WARNING`, `INFO`, `DEBUG`.
    pub fn console_log(&self) -> Vec<(String, String)> {
        match self.cmd("POST", "/se/log", Some(json!({ "type": "browser" }))) {
            Value::Array(entries) => entries
                .iter()
                .map(|e| {
                    let field = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                    (field("level"), field("message"))
                })
                .collect(),
            other => panic!("POST /se/log answered {other}"),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Everything chromedriver started: Chromium and its helpers.
        let started: Vec<(u32, String)> =
            descendants(self.driver.child.id()).into_iter().filter_map(|pid| Some((pid, comm(pid)?))).collect();
        // Ends the session: chromedriver closes Chromium and removes its profile.
        let _ = self.try_cmd("DELETE", "", None);
        self.driver.stop();
        // Should the session not have ended (chromedriver hung or died),
        // whatever is left (and still the same program) is killed.
        let left: Vec<String> = started
            .iter()
            .filter(|(pid, name)| process_alive(*pid) && comm(*pid).as_ref() == Some(name))
            .map(|(pid, _)| pid.to_string())
            .collect();
        if !left.is_empty() {
            let _ = Command::new("kill").arg("-KILL").args(&left).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

/// The processes under `root` (children, their children, ...), from `/proc`.
pub fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(parents.iter().filter(|(_, ppid)| *ppid == parent).map(|(pid, _)| *pid));
        i += 1;
    }
    found.remove(0);
    found
}

/// Whether `pid` runs (exists and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next().map(|s| s != "Z")))
        .unwrap_or(false)
}

fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|c| c.trim_end().to_string())
}

// --- helpers --------------------------------------------------------------

/// The binary named by `var`, or `default`; panics if it is missing.
fn binary(var: &str, default: &str) -> PathBuf {
    let name = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default));
    let found = if name.components().count() > 1 {
        Some(name.clone()).filter(|p| p.is_file())
    } else {
        std::env::var_os("PATH")
            .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(&name)).find(|p| p.is_file()))
    };
    found.unwrap_or_else(|| {
        panic!(
            "the browser tests need headless Chromium and chromedriver, and {} (${var}) is missing: {INSTALL}",
            name.display()
        )
    })
}

/// A fresh file name in the test target's temporary directory.
fn scratch_path(what: &str, ext: &str) -> PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("browser-{what}-{}-{n}.{ext}", std::process::id()))
}

/// Starts chromedriver on a port that was free a moment ago.
fn spawn_driver(chromedriver: &Path) -> (Driver, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("cannot pick a free port: {e}"))
        .port();
    let log = scratch_path("chromedriver", "log");
    let out = File::create(&log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
    let err = out.try_clone().unwrap_or_else(|e| panic!("cannot share {}: {e}", log.display()));
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}: {INSTALL}", chromedriver.display()));
    (Driver { child, log }, port)
}

/// Polls `GET /status` until chromedriver says it is ready.
fn wait_ready(agent: &ureq::Agent, base: &str, driver: &mut Driver) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = driver.child.try_wait() {
            return Err(format!("chromedriver exited with {status}"));
        }
        let last = match request(agent, "GET", &format!("{base}/status"), None) {
            Ok(value) if value["ready"] == json!(true) => return Ok(()),
            Ok(value) => value.to_string(),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!("not ready after {START_TIMEOUT:?}: {last}"));
        }
        thread::sleep(POLL);
    }
}

/// One HTTP request to chromedriver; returns the answer's `value`, or its
/// WebDriver error.
fn request(agent: &ureq::Agent, method: &str, url: &str, body: Option<&Value>) -> Result<Value, WebDriverError> {
    let command = format!("{method} {}", url.split_once("/session/").map_or(url, |(_, rest)| rest));
    let failed =
        |error: &str, message: String| WebDriverError { command: command.clone(), error: error.into(), message };
    let sent = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        ("DELETE", _) => agent.delete(url).call(),
        ("POST", body) => agent
            .post(url)
            .header("Content-Type", "application/json; charset=utf-8")
            .send(body.unwrap_or(&json!({})).to_string()),
        _ => return Err(failed("http", format!("unsupported method {method}"))),
    };
    let mut response = sent.map_err(|e| failed("http", e.to_string()))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_string()
        .map_err(|e| failed("http", e.to_string()))?;
    let mut answer: Value = serde_json::from_str(&text)
        .map_err(|e| failed("http", format!("HTTP {status}, not JSON ({e}): {}", truncate(&text))))?;
    let value = answer.get_mut("value").map(Value::take).unwrap_or(Value::Null);
    if let Some(error) = value.get("error").and_then(Value::as_str) {
        let message = value["message"].as_str().unwrap_or_default();
        return Err(failed(error, message.to_string()));
    }
    if status != 200 {
        return Err(failed("http", format!("HTTP {status}: {}", truncate(&text))));
    }
    Ok(value)
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(500) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

fn string(value: Value) -> String {
    match value {
        Value::String(s) => s,
        other => panic!("expected a string from WebDriver, got {other}"),
    }
}

fn element(value: &Value, css: &str) -> Element {
    Element::from_json(value).unwrap_or_else(|| panic!("finding {css:?} answered {value}, not an element"))
}

/// Standard base64 (with or without padding; whitespace ignored).
fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for byte in text.bytes() {
        let sextet = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return Err(format!("not base64: byte {byte:#04x}")),
        };
        acc = (acc << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}
