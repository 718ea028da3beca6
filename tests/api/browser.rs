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
    /// Sends one WebDriver command (`POST <session>/<path>` with `body`)
    /// and answers its `value`, whatever its status.
    async fn query(&self, path: &str, body: Value) -> Value {
        let answer: Value = self
            .client
            .post(format!("{}/{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["value"].clone()
    }

    /// Sends one WebDriver command that must succeed (the test fails with
    /// `what` and the driver's answer otherwise) and answers its `value`.
    async fn command(&self, what: &str, path: &str, body: Value) -> Value {
        let r = self
            .client
            .post(format!("{}/{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let answer: Value = r.json().await.unwrap_or_default();
        assert!(status.is_success(), "{what}: {answer}");
        answer["value"].clone()
    }

    pub async fn open(&self, url: &str) {
        self.command("navigate", "url", json!({ "url": url })).await;
    }

    pub async fn eval(&self, script: &str) -> Value {
        self.query("execute/sync", json!({ "script": script, "args": [] }))
            .await
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
        let value = self
            .query("execute/async", json!({ "script": script, "args": args }))
            .await;
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

/// Keys for `Page::press` and `Page::type_into` (W3C WebDriver code points).
pub const ENTER: &str = "\u{E007}";
pub const ESCAPE: &str = "\u{E00C}";
pub const TAB: &str = "\u{E004}";

/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Page {
    /// Resizes the window so that the page is `width` CSS pixels wide (the
    /// headless browser has no window frame) and checks that it is.
    pub async fn set_width(&self, width: u32) {
        self.command(
            "resize",
            "window/rect",
            json!({ "width": width, "height": 900 }),
        )
        .await;
        assert_eq!(
            self.eval("return innerWidth").await,
            json!(width),
            "the page is {width} px wide"
        );
    }

    async fn element(&self, css: &str) -> String {
        let answer = self
            .query("element", json!({ "using": "css selector", "value": css }))
            .await;
        answer[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {answer}"))
            .to_owned()
    }

    /// Types `text` into the element, as a user does: it gets the focus
    /// first. `text` may hold keys such as `ENTER`.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css).await;
        self.command(
            &format!("typing into {css}"),
            &format!("element/{element}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// Presses and releases one key where the focus is.
    pub async fn press(&self, key: &str) {
        self.command(
            "key",
            "actions",
            json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": [
                { "type": "keyDown", "value": key }, { "type": "keyUp", "value": key }
            ]}]}),
        )
        .await;
    }

    /// Saves PNGs of the whole page, beyond the window's height too (laid
    /// out without a scroll bar, as tall as the page, so `innerWidth` wide): one
    /// per `height` CSS pixels from the top (`stem-1.png`, `stem-2.png`…), so
    /// that each can be looked at in full.
    pub async fn screenshots(&self, dir: &Path, stem: &str, height: u64) {
        use base64::Engine as _;
        let size = self
            .eval("return [innerWidth, document.documentElement.scrollHeight]")
            .await;
        let (width, total) = (size[0].as_u64().unwrap(), size[1].as_u64().unwrap());
        for (n, top) in (0..total).step_by(height as usize).enumerate() {
            let answer = self
                .cdp(
                    "Page.captureScreenshot",
                    json!({
                        "format": "png", "captureBeyondViewport": true,
                        "clip": { "x": 0, "y": top, "width": width, "height": height.min(total - top), "scale": 1 }
                    }),
                )
                .await;
            let png = base64::engine::general_purpose::STANDARD
                .decode(answer["data"].as_str().unwrap_or_default())
                .unwrap_or_else(|e| panic!("no screenshot ({e}): {answer}"));
            std::fs::write(dir.join(format!("{stem}-{}.png", n + 1)), png).unwrap();
        }
    }
}

impl Page {
    /// Runs a Chrome DevTools Protocol command through chromedriver.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.command(
            cmd,
            "goog/cdp/execute",
            json!({ "cmd": cmd, "params": params }),
        )
        .await
    }

    /// How long a navigation and an async script may take before WebDriver
    /// answers with an error (chromedriver's default page load is 300 s).
    pub async fn set_timeouts(&self, page_load: Duration, script: Duration) {
        self.command(
            "timeouts",
            "timeouts",
            json!({
                "pageLoad": page_load.as_millis() as u64,
                "script": script.as_millis() as u64,
            }),
        )
        .await;
    }

    /// The handle of the window (tab) that commands go to.
    pub async fn window(&self) -> String {
        let answer: Value = self
            .client
            .get(format!("{}/window", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["value"].as_str().unwrap().to_owned()
    }

    /// Opens a new tab in the same browser (same profile) and answers its
    /// handle; commands still go to the current one until `switch_to`.
    pub async fn new_tab(&self) -> String {
        let answer = self
            .command("new tab", "window/new", json!({ "type": "tab" }))
            .await;
        answer["handle"].as_str().unwrap().to_owned()
    }

    /// Sends the next commands (and `cdp`) to the tab `handle`.
    pub async fn switch_to(&self, handle: &str) {
        self.command("switch", "window", json!({ "handle": handle }))
            .await;
    }

    /// Takes the page offline or back online, as DevTools' "Offline" and
    /// Playwright's `setOffline` do: requests fail on the network and
    /// `navigator.onLine` follows, across navigations.
    pub async fn set_offline(&self, offline: bool) {
        self.cdp("Network.enable", json!({})).await;
        self.cdp(
            "Network.emulateNetworkConditions",
            json!({ "offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1 }),
        )
        .await;
    }
}
