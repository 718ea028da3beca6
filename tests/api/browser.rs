//! A real browser for the tests: headless Chromium driven through
//! chromedriver (W3C WebDriver over plain HTTP). The browser tests are
//! `#[ignore]`d, so a plain `cargo test` reports them as ignored: they need
//! Debian's `chromium` and `chromium-driver`. They run with
//! `--include-ignored` (as `.ci/run` does), and then fail, naming what is
//! missing, when either is not installed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Fails the test, naming the package, when the browser is not installed.
pub fn require_browser() {
    for program in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(program).exists(),
            "this browser test was asked to run but {program} is missing: install Debian's \
             chromium and chromium-driver, or leave out --include-ignored / --ignored"
        );
    }
}

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

pub struct Driver {
    process: Child,
    url: String,
    client: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Driver {
    pub async fn start() -> Driver {
        let port = free_port();
        let process = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--log-path=/tmp/chromedriver-test.log")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver {
            process,
            url: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = driver
                .client
                .get(format!("{}/status", driver.url))
                .send()
                .await
            {
                let body: Value = r.json().await.unwrap_or_default();
                if body["value"]["ready"] == true {
                    return driver;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn page(&self, profile: &Path) -> Page {
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                        format!("--user-data-dir={}", profile.display()),
                    ]
                }
            }}
        });
        let answer: Value = self
            .client
            .post(format!("{}/session", self.url))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {answer}"))
            .to_owned();
        Page {
            base: format!("{}/session/{id}", self.url),
            client: self.client.clone(),
            closed: false,
        }
    }
}

pub struct Page {
    base: String,
    client: reqwest::Client,
    closed: bool,
}

/// A test that ends without `close` (a failed assertion, or none written)
/// still ends its browser: chromedriver killed alone leaves Chromium
/// running, its pages reconnecting to whatever server takes their port next.
impl Drop for Page {
    fn drop(&mut self) {
        if !self.closed {
            delete_session(&self.base);
        }
    }
}

/// `DELETE {session}`, blocking (from `drop`), over a plain TCP connection;
/// chromedriver answers once the browser has quit.
fn delete_session(session: &str) {
    use std::io::{Read, Write};
    let Some((host, path)) = session
        .strip_prefix("http://")
        .and_then(|rest| rest.split_once('/'))
    else {
        return;
    };
    let Ok(mut connection) = std::net::TcpStream::connect(host) else {
        return;
    };
    let _ = connection.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if connection.write_all(request.as_bytes()).is_ok() {
        let _ = connection.read_to_end(&mut Vec::new());
    }
}

impl Page {
    pub async fn open(&self, url: &str) {
        let r = self
            .client
            .post(format!("{}/url", self.base))
            .json(&json!({ "url": url }))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "navigate: {}",
            r.text().await.unwrap()
        );
    }

    pub async fn eval(&self, script: &str) -> Value {
        let answer: Value = self
            .client
            .post(format!("{}/execute/sync", self.base))
            .json(&json!({ "script": script, "args": [] }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["value"].clone()
    }

    /// Waits until `script` returns true.
    pub async fn wait_for(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.eval(script).await != Value::Bool(true) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn close(mut self) {
        let _ = self.client.delete(&self.base).send().await;
        self.closed = true;
    }
}

impl Page {
    /// Runs `body` (the inside of an async function) and returns what it
    /// returns; a thrown error comes back as `{"thrown": "…"}`.
    pub async fn run(&self, body: &str) -> Value {
        self.run_with(body, json!([])).await
    }

    /// `run`, with `args` (a JSON list) as `arguments[0]`, `arguments[1]`, ….
    pub async fn run_with(&self, body: &str, args: Value) -> Value {
        let script = format!(
            "const done = arguments[arguments.length - 1];
             (async () => {{ {body} }})().then(done, (e) => done({{ thrown: String(e && e.stack || e) }}));"
        );
        let answer: Value = self
            .client
            .post(format!("{}/execute/async", self.base))
            .json(&json!({ "script": script, "args": args }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let value = answer["value"].clone();
        assert!(
            value.get("thrown").is_none() && value.get("error").is_none(),
            "the page's script failed: {value}"
        );
        value
    }

    /// Closes the page's window the way a user closes a tab.
    pub async fn close_window(&self) {
        let _ = self
            .client
            .delete(format!("{}/window", self.base))
            .send()
            .await;
    }
}

/// Tabs of one browser session, so of one profile: they share an origin's
/// storage, Web Locks and BroadcastChannels, and its six connections.
impl Page {
    /// How long a navigation and an async script may take before WebDriver
    /// answers with an error (chromedriver's default page load is 300 s).
    pub async fn set_timeouts(&self, page_load: Duration, script: Duration) {
        let r = self
            .client
            .post(format!("{}/timeouts", self.base))
            .json(&json!({
                "pageLoad": page_load.as_millis() as u64,
                "script": script.as_millis() as u64,
            }))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "timeouts: {}",
            r.text().await.unwrap()
        );
    }

    /// The handle of the tab the session acts on.
    pub async fn window_handle(&self) -> String {
        let answer: Value = self
            .client
            .get(format!("{}/window", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["value"]
            .as_str()
            .expect("a window handle")
            .to_owned()
    }

    /// Opens a new tab (blank) and answers its handle; the session keeps
    /// acting on the tab it was on.
    pub async fn new_tab(&self) -> String {
        let answer: Value = self
            .client
            .post(format!("{}/window/new", self.base))
            .json(&json!({ "type": "tab" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["value"]["handle"]
            .as_str()
            .unwrap_or_else(|| panic!("no new tab: {answer}"))
            .to_owned()
    }

    /// Makes the session act on the tab `handle`.
    pub async fn switch_to(&self, handle: &str) {
        let r = self
            .client
            .post(format!("{}/window", self.base))
            .json(&json!({ "handle": handle }))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "switch to {handle}: {}",
            r.text().await.unwrap()
        );
    }
}
