//! The dashboard in a real browser: headless Chromium driven through
//! chromedriver (W3C WebDriver over plain HTTP). Two pages; a feature created
//! in one appears in the other; the server restarts and the page shows later
//! events without duplicates.
//!
//! The test is `#[ignore]`d, so a plain `cargo test` reports it as ignored:
//! it needs Debian's `chromium` and `chromium-driver`. It runs with
//! `--include-ignored` (as `.ci/run` does), and then fails, naming what is
//! missing, when either is not installed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::spawn_app;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

struct Driver {
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Driver {
    async fn start() -> Driver {
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

    async fn page(&self, profile: &Path) -> Page {
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
        }
    }
}

struct Page {
    base: String,
    client: reqwest::Client,
}

impl Page {
    async fn open(&self, url: &str) {
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

    async fn eval(&self, script: &str) -> Value {
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
    async fn wait_for(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.eval(script).await != Value::Bool(true) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn close(self) {
        let _ = self.client.delete(&self.base).send().await;
    }
}

const LIVE: &str = "return document.getElementById('status-text').textContent === 'live'";

fn feed_ids_script() -> &'static str {
    "return [...document.querySelectorAll('#feed li')].map(li => Number(li.dataset.id))"
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn two_dashboards_see_each_others_changes_and_survive_a_restart_without_duplicates() {
    for program in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(program).exists(),
            "this browser test was asked to run but {program} is missing: install Debian's \
             chromium and chromium-driver, or leave out --include-ignored / --ignored"
        );
    }
    let app = spawn_app().await;
    let port = app.port;
    let driver = Driver::start().await;
    let profiles = tempfile::tempdir().unwrap();
    let one = driver.page(&profiles.path().join("one")).await;
    let two = driver.page(&profiles.path().join("two")).await;
    for page in [&one, &two] {
        page.open(&app.url("/")).await;
        page.wait_for("the stream to go live", LIVE).await;
    }

    // A feature created through the form of page one appears on page two.
    one.eval(
        "document.getElementById('feature-title').value = 'Made in page one';
         document.getElementById('feature-status').value = 'in_progress';
         document.getElementById('feature-form').requestSubmit(); return true;",
    )
    .await;
    two.wait_for(
        "the feature on page two",
        "return [...document.querySelectorAll('.column[data-status=in_progress] .card')]
                  .some(c => c.textContent.includes('Made in page one'))",
    )
    .await;

    // Restart the server on the same port; the pages reconnect by themselves.
    let app = app
        .restart_with(|args| args.bind = format!("127.0.0.1:{port}"))
        .await;
    two.wait_for("the stream to go live again", LIVE).await;
    let mut published = Vec::new();
    for i in 0..3 {
        let event = app
            .publish("global", "after_restart", json!({ "i": i }), Some("script"))
            .await;
        published.push(event["id"].as_i64().unwrap());
    }
    let last = *published.last().unwrap();
    two.wait_for(
        "the events published after the restart",
        &format!("return !!document.querySelector('#feed li[data-id=\"{last}\"]')"),
    )
    .await;
    for page in [&one, &two] {
        page.wait_for(
            "page one too",
            &format!("return !!document.querySelector('#feed li[data-id=\"{last}\"]')"),
        )
        .await;
        let ids: Vec<i64> = serde_json::from_value(page.eval(feed_ids_script()).await).unwrap();
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "no event shown twice: {ids:?}");
        for id in &published {
            assert_eq!(
                ids.iter().filter(|x| *x == id).count(),
                1,
                "event {id} shown once"
            );
        }
    }
    one.close().await;
    two.close().await;
}
