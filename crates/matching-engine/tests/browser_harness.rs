//! A self-test of `tests/common/browser.rs`, the WebDriver client: drives
//! headless Chromium over a small page served from this test.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use common::browser::{Browser, Element, WAIT, process_alive};
use serde_json::json;

const PAGE: &str = r#"<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>harness</title>
<link rel="icon" href="data:,">
</head>
<body>
<input id="name" value="old">
<button id="add">Add</button>
<div id="out" data-kind="log"></div>
<select id="side">
  <option value="buy">Buy</option>
  <option value="sell">Sell</option>
</select>
<span id="chosen"></span>
<div id="late"></div>
<div id="hidden" style="display: none">hidden</div>
<button id="fail" onclick="console.error('boom')">Fail</button>
<script>
  document.getElementById('add').addEventListener('click', () => {
    const line = document.createElement('p');
    line.className = 'line';
    line.textContent = document.getElementById('name').value;
    document.getElementById('out').appendChild(line);
  });
  document.getElementById('side').addEventListener('change', (e) => {
    document.getElementById('chosen').textContent = 'chose ' + e.target.value;
  });
  setTimeout(() => { document.getElementById('late').textContent = 'late'; }, 300);
</script>
</body>
</html>
"#;

/// Serves `PAGE` for every request, one thread per connection.
fn serve() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || answer(stream));
        }
    });
    addr
}

fn answer(mut stream: TcpStream) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        PAGE.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(PAGE.as_bytes());
}

fn scratch(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser_harness").join(name)
}

#[test]
fn the_webdriver_client_drives_headless_chromium() {
    let started = Instant::now();
    let addr = serve();
    let url = format!("http://{addr}/");
    let browser = Browser::start();
    eprintln!("browser started in {:?}", started.elapsed());

    browser.goto(&url);
    assert_eq!(browser.title(), "harness");
    assert_eq!(browser.current_url(), url);
    assert_eq!(browser.console_errors(), Vec::<String>::new(), "no errors before the error button");

    // Finding.
    assert!(browser.find("#nope").is_none());
    assert!(browser.find_all(".line").is_empty());
    let out = browser.get("#out");
    assert_eq!(browser.attribute(&out, "data-kind").as_deref(), Some("log"));
    assert_eq!(browser.attribute(&out, "data-nope"), None);
    assert!(!browser.is_displayed(&out), "an empty div has no size, so it is not displayed");
    assert!(browser.is_displayed(&browser.get("#name")));
    assert!(!browser.is_displayed(&browser.get("#hidden")));
    assert_eq!(browser.text(&browser.get("#hidden")), "", "hidden text is not rendered");

    // Typing and clicking change the DOM.
    browser.fill("#name", "hello");
    let name = browser.get("#name");
    assert_eq!(browser.property(&name, "value").as_deref(), Some("hello"));
    assert_eq!(
        browser.attribute(&name, "value").as_deref(),
        Some("old"),
        "the attribute is the markup's, not the property"
    );
    browser.click_css("#add");
    browser.send_keys(&name, " world");
    browser.click(&browser.get("#add"));
    let lines: Vec<String> = browser.find_all("#out .line").iter().map(|l| browser.text(l)).collect();
    assert_eq!(lines, ["hello", "hello world"]);
    let first = browser.find_in(&out, ".line").unwrap();
    assert_eq!(browser.text(&first), "hello");
    assert!(browser.find_in(&out, "select").is_none());

    // A select, and its change event.
    browser.select("#side", "sell");
    assert_eq!(browser.property(&browser.get("#side"), "value").as_deref(), Some("sell"));
    assert_eq!(browser.text(&browser.get("#chosen")), "chose sell");
    let wrong = catch_unwind(AssertUnwindSafe(|| browser.select("#side", "short")));
    assert!(wrong.is_err(), "selecting a missing option panics");

    // Scripts.
    assert_eq!(browser.execute("return arguments[0] + 1", vec![json!(41)]), json!(42));
    assert_eq!(
        browser.execute("return {a: [1, 'x', null], b: document.title}", vec![]),
        json!({"a": [1, "x", null], "b": "harness"})
    );
    let found = browser.execute("return document.querySelector('#out .line')", vec![]);
    assert_eq!(Element::from_json(&found), Some(first.clone()));
    assert_eq!(browser.execute("return arguments[0].textContent", vec![first.to_json()]), json!("hello"));
    let later = browser.execute_async("const done = arguments[0]; setTimeout(() => done(7), 50);", vec![]);
    assert_eq!(later, json!(7));
    let thrown =
        browser.try_cmd("POST", "/execute/sync", Some(json!({"script": "throw new Error('bad')", "args": []})));
    let thrown = thrown.unwrap_err();
    assert_eq!(thrown.error, "javascript error");
    assert!(thrown.message.contains("bad"), "{thrown}");
    assert!(thrown.to_string().contains("POST"), "{thrown}");

    // Waiting.
    let late = browser.wait_until("the late text", WAIT, |b| {
        let text = b.text(&b.get("#late"));
        (!text.is_empty()).then_some(text)
    });
    assert_eq!(late, "late");
    let timed_out = catch_unwind(AssertUnwindSafe(|| {
        browser.wait_until("something that never happens", Duration::from_millis(200), |_| None::<()>)
    }));
    let why = timed_out.unwrap_err();
    let why = why.downcast_ref::<String>().unwrap();
    assert!(why.contains("something that never happens"), "{why}");

    // Screenshots.
    let shot = scratch("page.png");
    let _ = std::fs::remove_file(&shot);
    browser.screenshot(&shot);
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG: {:?}", &png[..png.len().min(16)]);
    assert!(png.len() > 1000, "a tiny PNG: {} bytes", png.len());

    // Console errors: none until the button logs one, then drained.
    assert_eq!(browser.console_errors(), Vec::<String>::new());
    browser.click_css("#fail");
    let errors = browser.wait_until("console.error to reach the log", WAIT, |b| {
        let errors = b.console_errors();
        (!errors.is_empty()).then_some(errors)
    });
    eprintln!("console errors: {errors:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("\"boom\""), "{errors:?}");
    assert_eq!(browser.console_errors(), Vec::<String>::new(), "the log is drained");
    let _ = browser.execute("setTimeout(() => { throw new Error('uncaught') }, 0)", vec![]);
    let errors = browser.wait_until("an uncaught exception to reach the log", WAIT, |b| {
        let errors = b.console_errors();
        (!errors.is_empty()).then_some(errors)
    });
    eprintln!("console errors: {errors:?}");
    assert!(errors[0].contains("Uncaught Error: uncaught"), "{errors:?}");

    // Refreshing reloads the page.
    browser.refresh();
    assert!(browser.find_all("#out .line").is_empty());
    assert_eq!(browser.text(&browser.get("#chosen")), "");

    // Dropping ends Chromium and its helpers too.
    let pid = browser.browser_pid().expect("chromedriver reports Chromium's pid");
    let processes = browser.processes();
    eprintln!("chromedriver runs {} processes", processes.len());
    assert!(processes.contains(&pid), "Chromium {pid} is not among chromedriver's processes {processes:?}");
    drop(browser);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<u32> = processes.iter().copied().filter(|p| process_alive(*p)).collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "processes {left:?} of Chromium still run after the drop");
        thread::sleep(Duration::from_millis(50));
    }
    eprintln!("self-test took {:?}", started.elapsed());
}
