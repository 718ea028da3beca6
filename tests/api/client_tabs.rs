//! Many tabs of one browser on `/client.js`: one stream for all of them
//! (one tab holds it, the others get its events over a BroadcastChannel),
//! a new holder when that tab closes, each tab's own writes kept from it;
//! and the live views bound to a framework through `subscribe` and
//! `getSnapshot` (a real React page). All in one Chromium profile, driven
//! through WebDriver (see `browser.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::browser::{require_browser, Driver, Page};
use crate::helpers::{spawn_app, TestApp};

/// One browser session (one profile) and the tab it acts on.
struct Browser {
    page: Page,
    current: Mutex<String>,
    fresh: Mutex<bool>,
    _profile: tempfile::TempDir,
    _driver: Driver,
}

impl Browser {
    async fn start() -> Browser {
        let driver = Driver::start().await;
        let profile = tempfile::tempdir().unwrap();
        let page = driver.page(profile.path()).await;
        page.set_timeouts(Duration::from_secs(20), Duration::from_secs(30))
            .await;
        let current = page.window_handle().await;
        Browser {
            page,
            current: Mutex::new(current),
            fresh: Mutex::new(true),
            _profile: profile,
            _driver: driver,
        }
    }

    /// A tab to load a page in: the blank first one, then new ones.
    async fn open_tab(&self) -> String {
        let mut fresh = self.fresh.lock().await;
        if *fresh {
            *fresh = false;
            return self.current.lock().await.clone();
        }
        let handle = self.page.new_tab().await;
        self.on(&handle).await;
        handle
    }

    /// The page, acting on tab `handle`.
    async fn on(&self, handle: &str) -> &Page {
        let mut current = self.current.lock().await;
        if *current != handle {
            self.page.switch_to(handle).await;
            *current = handle.to_owned();
        }
        &self.page
    }

    /// Closes tab `handle` as a user does, and acts on `next` after it.
    async fn close_tab(&self, handle: &str, next: &str) {
        self.on(handle).await.close_window().await;
        let mut current = self.current.lock().await;
        self.page.switch_to(next).await;
        *current = next.to_owned();
    }

    /// Opens an app page in a new tab: `/client.js` imported as
    /// `window.Switchboard`, `window.sb` made with `options`, then `setup`
    /// (the inside of an async function) run.
    async fn app_tab(&self, app: &TestApp, options: &str, setup: &str) -> String {
        let tab = self.open_tab().await;
        let page = self.on(&tab).await;
        page.open(&app.url("/healthz")).await;
        page.run(&format!(
            "const m = await import('/client.js');
             window.Switchboard = m.Switchboard;
             window.sb = new m.Switchboard({options});
             {setup}
             return true;"
        ))
        .await;
        tab
    }

    async fn eval(&self, tab: &str, script: &str) -> Value {
        self.on(tab).await.eval(script).await
    }

    async fn wait_for(&self, tab: &str, what: &str, script: &str) {
        self.on(tab).await.wait_for(what, script).await
    }

    /// Each tab's `sb.streamRole` (`window.switchboard` on a dashboard).
    async fn roles(&self, tabs: &[String]) -> Vec<String> {
        let mut roles = Vec::new();
        for tab in tabs {
            let role = self
                .eval(tab, "return (window.sb || window.switchboard).streamRole")
                .await;
            roles.push(role.as_str().unwrap_or("none").to_owned());
        }
        roles
    }

    /// The one tab of `tabs` that holds the stream (fails unless exactly one).
    async fn leader(&self, tabs: &[String]) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let roles = self.roles(tabs).await;
            let leaders: Vec<&String> = tabs
                .iter()
                .zip(&roles)
                .filter(|(_, r)| *r == "leader")
                .map(|(t, _)| t)
                .collect();
            if leaders.len() == 1 && roles.iter().all(|r| r == "leader" || r == "follower") {
                return leaders[0].clone();
            }
            assert!(
                Instant::now() < deadline,
                "exactly one tab should hold the stream: {roles:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits until `/api/stats` counts `n` open streams, and answers the stats.
async fn wait_for_streams(app: &TestApp, n: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = app.get_json("/api/stats").await;
        if stats["connected_clients"] == n {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "the server should count {n} streams: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const LIVE: &str = "return sb.status === 'live'";

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn ten_app_tabs_and_ten_dashboards_of_one_browser_share_one_stream_and_all_show_a_new_feature(
) {
    require_browser();
    let app = spawn_app().await;
    let browser = Browser::start().await;
    let started = Instant::now();
    let mut apps = Vec::new();
    for _ in 0..10 {
        let tab = browser
            .app_tab(
                &app,
                "{ agentId: 'alice' }",
                "window.features = sb.live('features'); await features.ready;",
            )
            .await;
        apps.push(tab);
    }
    let mut dashboards = Vec::new();
    for _ in 0..10 {
        // Each navigation waits for the page's load: a tab that a stream per
        // tab had starved of connections fails here.
        let tab = browser.open_tab().await;
        browser.on(&tab).await.open(&app.url("/?agent=alice")).await;
        dashboards.push(tab);
    }
    for tab in &apps {
        browser.wait_for(tab, "the app tab to go live", LIVE).await;
    }
    for tab in &dashboards {
        browser
            .wait_for(
                tab,
                "the dashboard to go live",
                "return window.switchboard?.status === 'live'
                        && document.getElementById('status-text').textContent === 'live'",
            )
            .await;
    }
    let loaded = started.elapsed();

    // One stream for twenty tabs, opened as the browser's session.
    let stats = wait_for_streams(&app, 1).await;
    assert_eq!(stats["active_sessions"], 1, "{stats}");
    let tabs: Vec<String> = apps.iter().chain(&dashboards).cloned().collect();
    let leader = browser.leader(&tabs).await;
    let roles = browser.roles(&tabs).await;
    assert_eq!(
        roles.iter().filter(|r| *r == "follower").count(),
        19,
        "{roles:?}"
    );
    let sessions = app.get_json("/api/sessions").await;
    let listed = sessions["sessions"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{sessions}");
    let stream_session = listed[0]["session_id"].as_str().unwrap().to_owned();
    assert!(stream_session.starts_with("browser-"), "{sessions}");
    assert_eq!(listed[0]["agent_id"], "alice");
    assert_eq!(listed[0]["connections"], 1);
    let mut tab_sessions = std::collections::HashSet::new();
    for tab in &tabs {
        let ids = browser
            .eval(
                tab,
                "const s = window.sb || window.switchboard; return [s.sessionId, s.streamSessionId];",
            )
            .await;
        assert_eq!(
            ids[1],
            stream_session.as_str(),
            "every tab names the stream's session"
        );
        tab_sessions.insert(ids[0].as_str().unwrap().to_owned());
    }
    assert_eq!(tab_sessions.len(), 20, "each tab keeps its own session id");

    // A feature created over REST appears in every tab.
    let r = app
        .post("/api/features")
        .header("X-Agent-ID", "script")
        .json(&json!({ "id": "feat-everywhere", "title": "Seen in every tab" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    for tab in &apps {
        browser
            .wait_for(
                tab,
                "the feature in the app tab",
                "return features.items.get('feat-everywhere')?.title === 'Seen in every tab'",
            )
            .await;
        assert_eq!(
            browser
                .eval(tab, "return features.items.get('feat-everywhere')")
                .await,
            created
        );
    }
    for tab in &dashboards {
        browser
            .wait_for(
                tab,
                "the feature's card on the dashboard",
                "const card = document.querySelector('.card[data-feature-id=\"feat-everywhere\"]');
                 return !!card && card.textContent.includes('Seen in every tab')",
            )
            .await;
    }
    let stats = wait_for_streams(&app, 1).await;
    assert_eq!(stats["active_sessions"], 1, "{stats}");
    assert_eq!(browser.leader(&tabs).await, leader, "no takeover meanwhile");
    eprintln!("20 tabs loaded and live in {loaded:?}");
}

/// A tab that collects the `n` of every `tick` on `ticks`.
const TICKS: &str = "window.got = [];
     const sub = sb.subscribe({ channels: 'ticks' }, (e) => got.push(e.type === 'resync' ? 'resync' : e.payload.n));
     await sub.ready;";

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn closing_the_tab_that_holds_the_stream_mid_flow_leaves_every_other_tab_with_all_200_events_once_in_order(
) {
    require_browser();
    let app = spawn_app().await;
    let browser = Browser::start().await;
    let mut tabs = Vec::new();
    for _ in 0..5 {
        tabs.push(browser.app_tab(&app, "{ agentId: 'alice' }", TICKS).await);
    }
    for tab in &tabs {
        browser.wait_for(tab, "the tab to go live", LIVE).await;
    }
    wait_for_streams(&app, 1).await;

    // 200 events at a steady pace; the tab holding the stream is closed
    // after 60, and the tab that took over after 130.
    let published = Arc::new(AtomicUsize::new(0));
    let publisher = app.publisher();
    let counter = published.clone();
    let flow = tokio::spawn(async move {
        let mut ids = Vec::new();
        for n in 0..200 {
            let event = publisher
                .publish("ticks", "tick", json!({ "n": n }), None)
                .await;
            ids.push(event["id"].as_i64().unwrap());
            counter.store(n + 1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        ids
    });
    let mut leaders = Vec::new();
    for after in [60, 130] {
        let deadline = Instant::now() + Duration::from_secs(20);
        while published.load(Ordering::SeqCst) < after {
            assert!(Instant::now() < deadline, "the flow stalled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let leader = browser.leader(&tabs).await;
        tabs.retain(|t| *t != leader);
        browser.close_tab(&leader, &tabs[0]).await;
        leaders.push(leader);
    }
    let ids = flow.await.unwrap();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "the log's ids grow: {ids:?}"
    );
    assert!(published.load(Ordering::SeqCst) == 200, "all 200 published");

    let expected: Vec<i64> = (0..200).collect();
    for tab in &tabs {
        browser
            .wait_for(tab, "all 200 events", "return window.got.length >= 200")
            .await;
    }
    // Nothing more arrives later either.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for tab in &tabs {
        assert_eq!(
            browser.eval(tab, "return window.got").await,
            json!(expected)
        );
        assert_eq!(browser.eval(tab, LIVE).await, true);
    }
    let leader = browser.leader(&tabs).await;
    assert!(!leaders.contains(&leader));
    wait_for_streams(&app, 1).await;
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn a_tabs_own_write_reaches_the_other_tabs_but_not_its_own_subscriptions() {
    require_browser();
    let app = spawn_app().await;
    let browser = Browser::start().await;
    let setup = "window.others = []; window.everything = [];
         const a = sb.subscribe({ channels: 'notes' }, (e) => others.push(e.id));
         const b = sb.subscribe({ channels: 'notes', includeOwn: true }, (e) => everything.push(e.id));
         await a.ready; await b.ready;";
    let mut tabs = Vec::new();
    for _ in 0..3 {
        tabs.push(browser.app_tab(&app, "{ agentId: 'alice' }", setup).await);
    }
    for tab in &tabs {
        browser.wait_for(tab, "the tab to go live", LIVE).await;
    }
    wait_for_streams(&app, 1).await;
    let leader = browser.leader(&tabs).await;
    let followers: Vec<String> = tabs.iter().filter(|t| **t != leader).cloned().collect();
    let (writer, bystander) = (&followers[0], &followers[1]);

    // The tab holding the stream writes, then a follower.
    let mut written = Vec::new();
    for tab in [&leader, writer] {
        let answer = browser
            .on(tab)
            .await
            .run(
                "const e = await sb.publish('notes', 'note', { by: sb.sessionId });
                 return { id: e.id, session: e.session_id, mine: sb.sessionId, stream: sb.streamSessionId };",
            )
            .await;
        assert_eq!(
            answer["session"], answer["mine"],
            "written as the tab's session"
        );
        assert_ne!(answer["mine"], answer["stream"]);
        written.push(answer["id"].as_i64().unwrap());
    }
    for tab in &tabs {
        browser
            .wait_for(tab, "both notes", "return window.everything.length >= 2")
            .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for tab in &tabs {
        assert_eq!(
            browser.eval(tab, "return window.everything").await,
            json!(written),
            "with includeOwn, every note once"
        );
    }
    assert_eq!(
        browser.eval(&leader, "return window.others").await,
        json!([written[1]]),
        "the leader's own note is not delivered to it"
    );
    assert_eq!(
        browser.eval(writer, "return window.others").await,
        json!([written[0]]),
        "the follower's own note is not delivered to it"
    );
    assert_eq!(
        browser.eval(bystander, "return window.others").await,
        json!(written),
        "a third tab gets both"
    );
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn a_page_that_opts_out_or_lacks_web_locks_keeps_a_stream_of_its_own() {
    require_browser();
    let app = spawn_app().await;
    let browser = Browser::start().await;
    let setup = "window.got = [];
         const sub = sb.subscribe({ channels: 'news' }, (e) => got.push(e.payload.n));
         await sub.ready;";
    let shared_one = browser.app_tab(&app, "{ agentId: 'alice' }", setup).await;
    let shared_two = browser.app_tab(&app, "{ agentId: 'alice' }", setup).await;
    let opted_out = browser
        .app_tab(&app, "{ agentId: 'alice', sharedStream: false }", setup)
        .await;
    // A browser without Web Locks (an insecure origin has none).
    let no_locks = browser.open_tab().await;
    let page = browser.on(&no_locks).await;
    page.open(&app.url("/healthz")).await;
    page.run(&format!(
        "Object.defineProperty(Navigator.prototype, 'locks', {{ get: () => undefined }});
         const m = await import('/client.js');
         window.sb = new m.Switchboard({{ agentId: 'alice' }});
         {setup}
         return true;"
    ))
    .await;
    let tabs = [shared_one, shared_two, opted_out, no_locks];
    for tab in &tabs {
        browser.wait_for(tab, "the tab to go live", LIVE).await;
    }
    assert_eq!(
        browser.roles(&tabs).await[2..],
        ["own".to_owned(), "own".to_owned()]
    );
    browser.leader(&tabs[..2]).await;
    let stats = wait_for_streams(&app, 3).await;
    assert_eq!(stats["active_sessions"], 3, "{stats}");
    for n in 0..3 {
        app.publish("news", "story", json!({ "n": n }), None).await;
    }
    for tab in &tabs {
        browser
            .wait_for(tab, "three stories", "return window.got.length >= 3")
            .await;
        assert_eq!(
            browser.eval(tab, "return window.got").await,
            json!([0, 1, 2])
        );
    }
}
