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
use crate::client::jwt;
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
        let current = page.window().await;
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
    wait_for_streams_as(app, n, None).await
}

/// The same, asking with `token` (when the server needs one). Chromium
/// keeps the socket of an `EventSource` it closed (a reconnect) open until
/// it needs the slot or about 30 s have passed, and the server counts it
/// until then: hence the long deadline.
async fn wait_for_streams_as(app: &TestApp, n: u64, token: Option<&str>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let mut request = app.get("/api/stats");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let stats: Value = request.send().await.unwrap().json().await.unwrap();
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

/// The React page of `tests/api/react`: its packages installed (`npm ci`,
/// once per lockfile, into Cargo's temporary directory for tests) and
/// bundled with esbuild, `/client.js` left as an import of the page's
/// origin. React's development build, for its warnings.
async fn react_bundle() -> String {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/react");
    let work = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("react-page");
    std::fs::create_dir_all(&work).unwrap();
    for file in ["package.json", "package-lock.json", "page.jsx"] {
        std::fs::copy(source.join(file), work.join(file)).unwrap();
    }
    let lock = std::fs::read(source.join("package-lock.json")).unwrap();
    let installed = work.join("node_modules/.installed-lock.json");
    if std::fs::read(&installed).ok().as_deref() != Some(&lock[..]) {
        run(
            &work,
            "npm",
            &["ci", "--no-audit", "--no-fund", "--loglevel=error"],
        )
        .await;
        std::fs::write(&installed, &lock).unwrap();
    }
    run(
        &work,
        "node_modules/.bin/esbuild",
        &[
            "page.jsx",
            "--bundle",
            "--format=esm",
            "--jsx=automatic",
            "--external:/client.js",
            "--define:process.env.NODE_ENV=\"development\"",
            "--outfile=page.js",
            "--log-level=error",
        ],
    )
    .await;
    std::fs::read_to_string(work.join("page.js")).unwrap()
}

/// Runs `program` in `dir` (at most 5 minutes); fails the test with its
/// output unless it succeeds.
async fn run(dir: &std::path::Path, program: &str, args: &[&str]) {
    let program_path = if program.contains('/') {
        dir.join(program).into_os_string()
    } else {
        program.into()
    };
    let output = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(&program_path)
            .args(args)
            .current_dir(dir)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{program} {args:?} took more than 5 minutes"))
    .unwrap_or_else(|e| panic!("{program} does not run (Node.js and npm are needed): {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The features as the page's board shows them: `[id, version, title]`.
const BOARD: &str = "return [...document.querySelectorAll('#board li')]
     .map((li) => [li.dataset.id, Number(li.dataset.version), li.textContent])";

/// The features as the server lists them, in the board's order.
async fn server_board(app: &TestApp) -> Value {
    let list = app.get_json("/api/features").await;
    let mut rows: Vec<Value> = list["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| json!([f["id"], f["version"], f["title"]]))
        .collect();
    rows.sort_by(|a, b| a[0].as_str().cmp(&b[0].as_str()));
    Value::Array(rows)
}

#[tokio::test]
#[ignore = "needs Chromium (Debian's chromium and chromium-driver) and Node.js with npm; run with --include-ignored"]
async fn a_react_page_bound_through_use_sync_external_store_rerenders_on_remote_changes_without_tearing(
) {
    require_browser();
    let bundle = react_bundle().await;
    let app = spawn_app().await;
    let create = |id: String, title: String| {
        app.post("/api/features")
            .header("X-Agent-ID", "script")
            .json(&json!({ "id": id, "title": title }))
            .send()
    };
    for i in 0..3 {
        let r = create(format!("feat-{i:02}"), format!("before {i}"))
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let browser = Browser::start().await;
    let tab = browser.open_tab().await;
    let page = browser.on(&tab).await;
    page.open(&app.url("/healthz")).await;
    page.run_with(
        "const script = document.createElement('script');
         script.type = 'module';
         script.textContent = arguments[0];
         document.head.append(script);
         return true;",
        json!([bundle]),
    )
    .await;
    page.wait_for(
        "the first snapshot rendered",
        "return document.getElementById('count')?.textContent === '3 features'",
    )
    .await;
    page.wait_for("the stream", LIVE).await;
    assert_eq!(page.eval(BOARD).await, server_board(&app).await);

    // Remote changes, each waited for on the page: a burst of twelve
    // creates, a rename, a status change, a delete; then a write of the
    // page itself (its answer and its own event).
    let burst: Vec<_> = (3..15)
        .map(|i| create(format!("feat-{i:02}"), format!("burst {i}")))
        .collect();
    for r in futures_util::future::join_all(burst).await {
        assert_eq!(r.unwrap().status(), 201);
    }
    page.wait_for(
        "the burst",
        "return document.getElementById('count').textContent === '15 features'",
    )
    .await;
    let r = app
        .client
        .patch(app.url("/api/features/feat-00"))
        .header("X-Agent-ID", "script")
        .json(&json!({ "title": "renamed remotely" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    page.wait_for(
        "the rename",
        "return document.querySelector('#board li[data-id=\"feat-00\"]').textContent === 'renamed remotely'",
    )
    .await;
    let r = app
        .post("/api/features/feat-01/status")
        .header("X-Agent-ID", "script")
        .json(&json!({ "new_status": "done" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    page.wait_for(
        "the status change",
        "return document.querySelector('#board li[data-id=\"feat-01\"]').dataset.version === '2'",
    )
    .await;
    let r = app
        .client
        .delete(app.url("/api/features/feat-02"))
        .header("X-Agent-ID", "script")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    page.wait_for(
        "the delete",
        "return !document.querySelector('#board li[data-id=\"feat-02\"]')",
    )
    .await;
    page.run(
        "await sb.features.create({ id: 'feat-page', title: 'made on the page' }); return true;",
    )
    .await;
    page.wait_for(
        "the page's own feature",
        "return !!document.querySelector('#board li[data-id=\"feat-page\"]')",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(page.eval(BOARD).await, server_board(&app).await);

    let log = page
        .eval(
            "const l = window.reactLog;
             return { renders: l.renders, commits: l.commits, torn: l.torn, errors: l.errors,
                      handedOut: l.handedOut, snapshots: [...l.snapshots] };",
        )
        .await;
    assert_eq!(log["errors"], json!([]), "React warned: {log}");
    assert_eq!(log["torn"], json!([]), "a commit showed two states");
    let snapshots: Vec<&str> = log["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let commits = log["commits"].as_array().unwrap();
    for commit in commits {
        let key = commit["key"].as_str().unwrap();
        assert!(
            snapshots.contains(&key),
            "a commit showed a state the store never had: {commit}"
        );
    }
    let handed_out = log["handedOut"].as_u64().unwrap();
    let renders = log["renders"].as_u64().unwrap();
    // One commit per snapshot at most (React may fold several into one),
    // plus StrictMode's second mount; at least one per change waited for.
    assert!(
        commits.len() as u64 <= handed_out + 2,
        "{} commits for {handed_out} snapshots",
        commits.len()
    );
    assert!(commits.len() >= 6, "{} commits", commits.len());
    // StrictMode renders twice in development.
    assert!(
        renders <= 2 * commits.len() as u64 + 2,
        "{renders} renders for {} commits",
        commits.len()
    );
    let last = commits.last().unwrap();
    assert_eq!(last["items"], 15, "{last}");
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn live_views_hand_out_frozen_snapshots_that_change_only_with_their_state() {
    require_browser();
    let app = spawn_app().await;
    for (path, body) in [
        (
            "/api/features",
            json!({ "id": "feat-1", "title": "one", "tags": ["a"] }),
        ),
        (
            "/api/conversations",
            json!({ "id": "chat", "title": "Chat" }),
        ),
        (
            "/api/conversations/chat/messages",
            json!({ "id": "m1", "role": "user", "content": "hello" }),
        ),
    ] {
        let r = app.post(path).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 201, "{path}");
    }
    let browser = Browser::start().await;
    let tab = browser
        .app_tab(
            &app,
            "{ agentId: 'alice' }",
            "window.features = sb.live('features'); window.chat = sb.conversation('chat');
             window.presence = sb.presence();
             await features.ready; await chat.ready; await presence.ready;",
        )
        .await;
    browser.wait_for(&tab, "the stream", LIVE).await;
    let page = browser.on(&tab).await;
    let first = page
        .run(
            "const s = features.getSnapshot();
             window.first = s;
             window.calls = []; window.twice = 0;
             window.stop = features.subscribe((snapshot) => calls.push(snapshot));
             // The same function twice (React's StrictMode): called at once
             // by each; one unsubscribe leaves the other.
             const counted = () => { twice++; };
             const once = features.subscribe(counted); features.subscribe(counted); once();
             const { getSnapshot, subscribe } = features;
             const refused = !Reflect.set(s.items[0], 'title', 'changed in place') && s.items[0].title === 'one';
             return {
               same: getSnapshot() === s && typeof subscribe === 'function',
               atOnce: calls.length === 1 && calls[0] === s,
               frozen: [s, s.items, s.byId, s.items[0], s.items[0].tags].every(Object.isFrozen),
               refused, title: s.byId['feat-1'].title, count: s.items.length, loaded: s.loaded,
               cursor: s.cursor === features.cursor,
             };",
        )
        .await;
    assert_eq!(
        first,
        json!({ "same": true, "atOnce": true, "frozen": true, "refused": true, "title": "one",
                "count": 1, "loaded": true, "cursor": true })
    );

    // A remote change: one new snapshot, handed to the listener; the old one
    // is untouched.
    let r = app
        .post("/api/features")
        .json(&json!({ "id": "feat-2", "title": "two" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    browser
        .wait_for(&tab, "the new snapshot", "return calls.length === 2")
        .await;
    let second = page
        .eval(
            "const s = calls[1];
             return { fresh: s !== first, current: features.getSnapshot() === s, stable: features.getSnapshot() === features.getSnapshot(),
                      before: first.items.map((f) => f.id), after: s.items.map((f) => f.id), twice,
                      cursor: s.cursor === features.cursor && s.cursor > first.cursor };",
        )
        .await;
    assert_eq!(
        second,
        json!({ "fresh": true, "current": true, "stable": true, "before": ["feat-1"],
                "after": ["feat-1", "feat-2"], "twice": 3, "cursor": true })
    );
    // Unsubscribed: no more calls, while the snapshot still follows.
    page.eval("stop(); return true;").await;
    let r = app
        .post("/api/features")
        .json(&json!({ "id": "feat-3", "title": "three" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    browser
        .wait_for(
            &tab,
            "the third feature",
            "return features.getSnapshot().items.length === 3",
        )
        .await;
    assert_eq!(
        page.eval("return [calls.length, twice]").await,
        json!([2, 4])
    );

    // A conversation and presence hand out snapshots the same way.
    let chat = page
        .eval(
            "window.chatFirst = chat.getSnapshot();
             return { same: chat.getSnapshot() === chatFirst, frozen: [chatFirst, chatFirst.messages, chatFirst.messages[0], chatFirst.conversation].every(Object.isFrozen),
                      messages: chatFirst.messages.map((m) => m.content), title: chatFirst.conversation.title };",
        )
        .await;
    assert_eq!(
        chat,
        json!({ "same": true, "frozen": true, "messages": ["hello"], "title": "Chat" })
    );
    let r = app
        .post("/api/conversations/chat/messages")
        .json(&json!({ "id": "m2", "role": "assistant", "content": "hi" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    browser
        .wait_for(
            &tab,
            "the second message",
            "return chat.getSnapshot().messages.length === 2",
        )
        .await;
    assert_eq!(
        page.eval(
            "return [chatFirst.messages.length, chat.getSnapshot().messages.map((m) => m.content)]"
        )
        .await,
        json!([1, ["hello", "hi"]])
    );
    let presence = page
        .eval(
            "const s = presence.getSnapshot();
             return { same: presence.getSnapshot() === s, frozen: Object.isFrozen(s) && Object.isFrozen(s.sessions),
                      sessions: s.sessions.map((x) => x.session_id), mine: sb.streamSessionId, loaded: s.loaded };",
        )
        .await;
    assert_eq!(presence["same"], true);
    assert_eq!(presence["frozen"], true);
    assert_eq!(presence["loaded"], true);
    assert_eq!(
        presence["sessions"],
        json!([presence["mine"]]),
        "{presence}"
    );
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn every_tab_follows_the_shared_streams_jwt_expiry_and_a_server_restart_without_loss() {
    require_browser();
    const SECRET: &str = "a-supabase-like-project-jwt-secret-0123456789";
    let configure = |a: &mut switchboard::config::ServeArgs| {
        a.identity.jwt_secret = Some(SECRET.to_owned());
        a.identity.jwt_audiences = vec!["authenticated".into()];
        a.identity.jwt_leeway = Duration::ZERO;
        a.identity.jwt_read = vec!["news".into()];
    };
    let app = crate::helpers::spawn_app_with(configure).await;
    let port = app.port;
    let writer = jwt(
        SECRET,
        "script",
        600,
        json!({ "switchboard": { "write": ["news"] } }),
    );
    // Every tab's token is a JWT of the same subject, asked for each time,
    // as a page on a provider's SDK does; the test plays the SDK.
    let long = jwt(SECRET, "reader", 600, json!({}));
    let setup = format!(
        "window.jwt = '{long}'; window.got = []; window.errors = []; window.statuses = [];
         sb.on('error', (e) => errors.push(`${{e.status}} ${{e.code}} ${{e.message}}`));
         sb.on('status', (s) => statuses.push(s));
         const sub = sb.subscribe({{ channels: 'news' }}, (e) => got.push(e.type === 'resync' ? 'resync' : e.payload.n));
         await sub.ready;"
    );
    let browser = Browser::start().await;
    let mut tabs = Vec::new();
    for _ in 0..3 {
        tabs.push(
            browser
                .app_tab(
                    &app,
                    "{ token: async () => { window.tokenCalls = (window.tokenCalls || 0) + 1; return window.jwt; } }",
                    &setup,
                )
                .await,
        );
    }
    for tab in &tabs {
        browser.wait_for(tab, "the tab to go live", LIVE).await;
    }
    wait_for_streams_as(&app, 1, Some(&writer)).await;
    let leader = browser.leader(&tabs).await;
    let follower = tabs.iter().find(|t| **t != leader).unwrap().clone();
    // The shared stream reopens with a JWT that expires in 5 s: a follower's
    // subscription from an older position makes the leader reconnect.
    let r = app
        .post("/api/channels/news/events")
        .bearer_auth(&writer)
        .json(&json!({ "type": "story", "data": { "n": -1 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for tab in &tabs {
        browser
            .wait_for(tab, "the first story", "return window.got.length === 1")
            .await;
    }
    let short = jwt(SECRET, "reader", 5, json!({}));
    for tab in &tabs {
        browser
            .eval(tab, &format!("window.jwt = '{short}'; return true;"))
            .await;
    }
    let calls_before = browser.eval(&leader, "return window.tokenCalls").await;
    browser
        .on(&follower)
        .await
        .run("const s = sb.subscribe({ channels: 'news', lastEventId: 0 }, () => {}); await s.ready; return true;")
        .await;
    browser
        .wait_for(
            &leader,
            "the leader to reconnect with the short JWT",
            &format!("return window.tokenCalls > {calls_before} && sb.status === 'live'"),
        )
        .await;
    let calls_before = browser.eval(&leader, "return window.tokenCalls").await;
    let fresh = jwt(SECRET, "reader", 600, json!({}));
    for tab in &tabs {
        browser
            .eval(tab, &format!("window.jwt = '{fresh}'; return true;"))
            .await;
    }
    // Publish before, through and after the shared stream's JWT's expiry.
    let publish = |app: &TestApp, n: i64| {
        app.post("/api/channels/news/events")
            .bearer_auth(&writer)
            .json(&json!({ "type": "story", "data": { "n": n } }))
            .send()
    };
    let started = Instant::now();
    let mut published = 0;
    while started.elapsed() < Duration::from_secs(7) {
        assert_eq!(publish(&app, published).await.unwrap().status(), 201);
        published += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let expected: Vec<i64> = (-1..published).collect();
    for tab in &tabs {
        browser
            .wait_for(
                tab,
                "every event",
                &format!("return window.got.length >= {}", published + 1),
            )
            .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for tab in &tabs {
        assert_eq!(
            browser.eval(tab, "return window.got").await,
            json!(expected)
        );
        let errors = browser.eval(tab, "return window.errors").await;
        assert_eq!(errors, json!([]), "no error in any tab: {errors}");
    }
    let calls_after = browser.eval(&leader, "return window.tokenCalls").await;
    assert!(
        calls_after.as_i64() > calls_before.as_i64(),
        "the leader reconnected with a fresh token: {calls_before} → {calls_after}"
    );

    // The server restarts on the same port: every tab says so, and goes on.
    for tab in &tabs {
        browser
            .eval(tab, "window.statuses = []; return true;")
            .await;
    }
    let app = app
        .restart_with(|a| {
            configure(a);
            a.bind = format!("127.0.0.1:{port}");
        })
        .await;
    for tab in &tabs {
        browser
            .wait_for(
                tab,
                "reconnecting, then live",
                "const i = statuses.indexOf('reconnecting');
                 return i >= 0 && statuses.indexOf('live', i) > i && sb.status === 'live'",
            )
            .await;
    }
    for n in published..published + 3 {
        assert_eq!(publish(&app, n).await.unwrap().status(), 201);
    }
    let expected: Vec<i64> = (-1..published + 3).collect();
    for tab in &tabs {
        browser
            .wait_for(
                tab,
                "the events after the restart",
                &format!("return window.got.length >= {}", published + 4),
            )
            .await;
        assert_eq!(
            browser.eval(tab, "return window.got").await,
            json!(expected)
        );
    }
    wait_for_streams_as(&app, 1, Some(&writer)).await;
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn a_resync_reaches_only_the_tab_whose_position_the_log_lost() {
    require_browser();
    let app = spawn_app().await;
    let browser = Browser::start().await;
    let mut tabs = Vec::new();
    for _ in 0..3 {
        tabs.push(
            browser
                .app_tab(
                    &app,
                    "{ agentId: 'alice' }",
                    "window.got = [];
                     const sub = sb.subscribe({ channels: 'news' }, (e) => got.push(e.type === 'resync' ? 'resync' : e.payload.n));
                     await sub.ready;",
                )
                .await,
        );
    }
    for tab in &tabs {
        browser.wait_for(tab, "the tab to go live", LIVE).await;
    }
    let leader = browser.leader(&tabs).await;
    let follower = tabs.iter().find(|t| **t != leader).unwrap().clone();
    for n in -5..0 {
        app.publish("news", "story", json!({ "n": n }), None).await;
    }
    let head = app.head_id().await;
    for tab in &tabs {
        browser
            .wait_for(tab, "the first stories", "return window.got.length >= 5")
            .await;
    }
    app.prune_with_cli("0s").await;
    let stats = app.get_json("/api/stats").await;
    assert_eq!(stats["pruned_through"], head, "{stats}");

    // A follower subscribes from an id the log no longer holds.
    browser
        .on(&follower)
        .await
        .run(
            "window.late = [];
             const sub = sb.subscribe({ channels: 'news', lastEventId: 1 }, (e) =>
               late.push(e.type === 'resync' ? `resync ${e.payload.reason} ${e.payload.head_id}` : e.payload.n));
             await sub.ready; return true;",
        )
        .await;
    browser
        .wait_for(&follower, "the resync", "return window.late.length >= 1")
        .await;
    for n in 0..3 {
        app.publish("news", "story", json!({ "n": n }), None).await;
    }
    for tab in &tabs {
        browser
            .wait_for(tab, "three stories", "return window.got.length >= 3")
            .await;
    }
    browser
        .wait_for(
            &follower,
            "three late stories",
            "return window.late.length >= 4",
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for tab in &tabs {
        assert_eq!(
            browser.eval(tab, "return window.got").await,
            json!([-5, -4, -3, -2, -1, 0, 1, 2]),
            "a subscription whose position is in the log is not told"
        );
    }
    let resync = browser.eval(&follower, "return window.late").await;
    let told = resync[0].as_str().unwrap();
    assert!(told.starts_with("resync cursor_expired "), "{resync}");
    assert!(
        told.split(' ').nth(2).unwrap().parse::<i64>().unwrap() >= head,
        "{resync}"
    );
    assert_eq!(
        resync.as_array().unwrap()[1..],
        [json!(0), json!(1), json!(2)]
    );
    wait_for_streams(&app, 1).await;
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn a_leader_that_closes_its_switchboard_hands_the_stream_over_and_can_subscribe_again() {
    require_browser();
    let app = spawn_app().await;
    let browser = Browser::start().await;
    let setup = "window.got = [];
         const sub = sb.subscribe({ channels: 'news' }, (e) => got.push(e.payload.n));
         await sub.ready;";
    let mut tabs = Vec::new();
    for _ in 0..3 {
        tabs.push(browser.app_tab(&app, "{ agentId: 'alice' }", setup).await);
    }
    for tab in &tabs {
        browser.wait_for(tab, "the tab to go live", LIVE).await;
    }
    let leader = browser.leader(&tabs).await;
    let others: Vec<String> = tabs.iter().filter(|t| **t != leader).cloned().collect();
    browser
        .on(&leader)
        .await
        .run("await sb.close(); return sb.status;")
        .await;
    let next = browser.leader(&others).await;
    assert_ne!(next, leader);
    app.publish("news", "story", json!({ "n": 1 }), None).await;
    for tab in &others {
        browser
            .wait_for(tab, "the story", "return window.got.length >= 1")
            .await;
    }
    // The closed tab subscribes again: it follows the new leader.
    browser.on(&leader).await.run(setup).await;
    browser
        .wait_for(&leader, "the closed tab live again", LIVE)
        .await;
    assert_eq!(
        browser.eval(&leader, "return sb.streamRole").await,
        "follower"
    );
    app.publish("news", "story", json!({ "n": 2 }), None).await;
    for tab in &others {
        browser
            .wait_for(tab, "the second story", "return window.got.length >= 2")
            .await;
        assert_eq!(browser.eval(tab, "return window.got").await, json!([1, 2]));
    }
    browser
        .wait_for(&leader, "the second story", "return window.got.length >= 1")
        .await;
    assert_eq!(browser.eval(&leader, "return window.got").await, json!([2]));
    wait_for_streams(&app, 1).await;
}
