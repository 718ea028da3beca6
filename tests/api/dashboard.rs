//! The dashboard in a real browser (see `browser.rs`). Two pages; a
//! feature created in one appears in the other; the server restarts and the
//! page shows later events without duplicates. Then the page at 1400, 768,
//! 390 and 360 px (no sideways scroll, readable columns, no overlap), the
//! form's new and edit modes, the feed without presence events, relative
//! times, the keyboard alone, and an axe-core audit (from npm, pinned).

use serde_json::json;

use crate::browser::{require_browser, Driver, Page, ENTER, ESCAPE, TAB};
use crate::helpers::{spawn_app, spawn_app_with};

const LIVE: &str = "return document.getElementById('status-text').textContent === 'live'";

fn feed_ids_script() -> &'static str {
    "return [...document.querySelectorAll('#feed li')].map(li => Number(li.dataset.id))"
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn two_dashboards_see_each_others_changes_and_survive_a_restart_without_duplicates() {
    require_browser();
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

/// Runs `script` in the page and returns its text result.
async fn text(page: &crate::browser::Page, script: &str) -> String {
    page.eval(script)
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn the_dashboard_shows_content_live_tracks_spikes_events_files_conversations_presence() {
    require_browser();
    let app = spawn_app().await;
    let driver = Driver::start().await;
    let profiles = tempfile::tempdir().unwrap();
    let page = driver.page(&profiles.path().join("one")).await;
    page.open(&app.url("/")).await;
    page.wait_for("the stream to go live", LIVE).await;

    // Empty panels say so.
    for panel in ["files", "conversations"] {
        assert_eq!(
            text(
                &page,
                &format!("return document.querySelector('#{panel} .empty')?.textContent")
            )
            .await,
            "nothing yet",
            "{panel}"
        );
    }
    // A form error is shown as an error, with the API's code.
    page.eval(
        "document.getElementById('feature-title').value = '';
         document.getElementById('feature-form').requestSubmit(); return true;",
    )
    .await;
    page.wait_for(
        "the form error",
        "const e = document.getElementById('form-error');
         return e.getAttribute('role') === 'alert' && e.textContent.startsWith('validation_failed')
                && getComputedStyle(e).display !== 'none'",
    )
    .await;

    // Tracks and spikes are on the board, each kind under its tab.
    let as_agent = |r: reqwest::RequestBuilder| {
        r.header("X-Agent-ID", "claude-1")
            .header("X-Session-ID", "agent-1")
    };
    for (collection, id) in [("tracks", "trk-auth"), ("spikes", "spk-oauth")] {
        let r = as_agent(app.post(&format!("/api/{collection}")))
            .json(&json!({ "id": id, "title": format!("{collection} item") }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        page.eval(&format!(
            "document.querySelector('#kinds button[data-kind={collection}]').click(); return true;"
        ))
        .await;
        page.wait_for(
            &format!("the {collection} card"),
            &format!("return !!document.querySelector('.column[data-status=todo] .card[data-feature-id=\"{id}\"]')"),
        )
        .await;
    }

    // A feed line opens to the full event.
    let event = app
        .publish(
            "global",
            "deploy_started",
            json!({ "build": "b-417" }),
            Some("ci"),
        )
        .await;
    let id = event["id"].as_i64().unwrap();
    page.wait_for(
        "the feed line",
        &format!("return !!document.querySelector('#feed li[data-id=\"{id}\"]')"),
    )
    .await;
    page.eval(&format!(
        "document.querySelector('#feed li[data-id=\"{id}\"] summary').click(); return true;"
    ))
    .await;
    let shown = text(&page, &format!("return document.querySelector('#feed li[data-id=\"{id}\"] details[open] pre')?.textContent")).await;
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("the full event as JSON");
    assert_eq!(shown["payload"]["build"], "b-417");
    assert_eq!(shown["timestamp"], event["timestamp"]);

    // Files: content, versions and the live lock holder.
    let r = as_agent(app.post("/api/files"))
        .json(&json!({ "stable_id": "readme", "name": "README.md", "content": "first text" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = as_agent(app.post("/api/files/readme/lock"))
        .json(&json!({ "ttl_seconds": 60 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    page.wait_for(
        "the lock holder",
        "return document.querySelector('tr[data-file-id=readme] .lock-holder')?.textContent.includes('claude-1')",
    )
    .await;
    page.eval("document.querySelector('tr[data-file-id=readme]').click(); return true;")
        .await;
    page.wait_for(
        "the content",
        "return document.getElementById('file-content')?.textContent === 'first text'",
    )
    .await;
    let r = as_agent(app.client.put(app.url("/api/files/readme")))
        .json(&json!({ "content": "second text" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    page.wait_for(
        "the new content",
        "return document.getElementById('file-content')?.textContent === 'second text'",
    )
    .await;
    page.eval(
        "document.querySelector('#file-pane button[data-version=\"1\"]').click(); return true;",
    )
    .await;
    page.wait_for(
        "version 1",
        "return document.getElementById('file-content')?.textContent === 'first text'",
    )
    .await;
    let r = as_agent(app.client.delete(app.url("/api/files/readme/lock")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    page.wait_for(
        "the lock released",
        "return document.querySelector('tr[data-file-id=readme] .lock-holder')?.textContent === '—'",
    )
    .await;

    // A conversation shows a streaming message growing.
    let r = as_agent(app.post("/api/conversations"))
        .json(&json!({ "id": "chat", "title": "Planning" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = as_agent(app.post("/api/conversations/chat/messages"))
        .json(&json!({ "id": "m1", "role": "assistant", "status": "streaming" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    page.wait_for(
        "the conversation row",
        "return !!document.querySelector('tr[data-conversation-id=chat]')",
    )
    .await;
    page.eval("document.querySelector('tr[data-conversation-id=chat]').click(); return true;")
        .await;
    let message = "document.querySelector('.message[data-message-id=m1]')";
    for (delta, so_far) in [
        ("Step one, ", "Step one, "),
        ("then two ✓", "Step one, then two ✓"),
    ] {
        let r = as_agent(app.post("/api/conversations/chat/messages/m1/delta"))
            .json(&json!({ "text": delta }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        page.wait_for(
            "the message to grow",
            &format!("const m = {message}; return !!m && m.classList.contains('streaming') && m.querySelector('.text').textContent === {so_far:?}"),
        )
        .await;
    }
    let r = as_agent(app.post("/api/conversations/chat/messages/m1/complete"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    page.wait_for(
        "the message complete",
        &format!("const m = {message}; return !!m && !m.classList.contains('streaming')"),
    )
    .await;

    // Presence lists this browser's session (the shared stream's, see
    // docs/client.md).
    page.wait_for(
        "this browser in presence",
        "return !!document.querySelector(`#sessions tr[data-session-id=\"${window.switchboard.streamSessionId}\"]`)",
    )
    .await;
    let marked = page
        .eval("return document.querySelector(`#sessions tr[data-session-id=\"${window.switchboard.streamSessionId}\"]`).textContent")
        .await;
    assert!(
        marked.as_str().unwrap_or("").contains("(this browser)"),
        "the browser's own session is marked: {marked}"
    );
    page.close().await;
}

// ---- every screen, the form's modes, the feed, the keyboard, axe ------------

const AGENT: [(&str, &str); 2] = [("X-Agent-ID", "claude-1"), ("X-Session-ID", "agent-1")];

/// Sends a JSON request as the agent `claude-1` and checks its status.
async fn as_agent(
    app: &crate::helpers::TestApp,
    method: reqwest::Method,
    path: &str,
    body: serde_json::Value,
    status: u16,
) -> serde_json::Value {
    let mut request = app.client.request(method, app.url(path)).json(&body);
    for (name, value) in AGENT {
        request = request.header(name, value);
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), status, "{path}");
    r.json().await.unwrap()
}

/// Work items of every kind with tags, a track and priorities, a file
/// locked for an hour, a conversation with a message still streaming.
async fn seed(app: &crate::helpers::TestApp) {
    use reqwest::Method;
    let items = [
        (
            "tracks",
            json!({ "id": "trk-auth", "title": "Auth rewrite" }),
        ),
        (
            "features",
            json!({ "id": "feat-login", "title": "Log in with GitHub and keep the session across restarts",
                    "priority": "high", "tags": ["auth", "oauth"], "track_id": "trk-auth" }),
        ),
        (
            "features",
            json!({ "id": "feat-darkmode", "title": "Dark mode", "status": "in_progress", "priority": "low" }),
        ),
        (
            "spikes",
            json!({ "id": "spk-oauth", "title": "Which OAuth flow?", "priority": "critical", "tags": ["auth"] }),
        ),
    ];
    for (collection, body) in items {
        as_agent(app, Method::POST, &format!("/api/{collection}"), body, 201).await;
    }
    let file = json!({ "stable_id": "readme", "name": "README.md", "content": "first text" });
    as_agent(app, Method::POST, "/api/files", file, 201).await;
    let lock = json!({ "ttl_seconds": 3600 });
    as_agent(app, Method::POST, "/api/files/readme/lock", lock, 200).await;
    let workers = json!({ "channels": ["jobs/*"], "kind": "pull", "description": "build workers" });
    as_agent(app, Method::PUT, "/api/subscriptions/workers", workers, 201).await;
    let chat = json!({ "id": "chat", "title": "Planning" });
    as_agent(app, Method::POST, "/api/conversations", chat, 201).await;
    let message = json!({ "id": "m1", "role": "assistant", "status": "streaming", "content": "Thinking about it" });
    as_agent(
        app,
        Method::POST,
        "/api/conversations/chat/messages",
        message,
        201,
    )
    .await;
}

/// Opens the dashboard live with the seeded content shown, a card selected
/// and the file and the conversation opened.
async fn open_seeded(page: &Page, app: &crate::helpers::TestApp) {
    page.open(&app.url("/")).await;
    page.wait_for("the stream to go live", LIVE).await;
    page.wait_for(
        "the seeded content",
        "return !!document.querySelector('.card[data-feature-id=feat-login]')
             && !!document.querySelector('tr[data-file-id=readme] .lock-holder time')
             && !!document.querySelector('tr[data-conversation-id=chat]')",
    )
    .await;
    page.eval(
        "document.querySelector('.card[data-feature-id=feat-login]').click();
         document.querySelector('tr[data-file-id=readme]').click();
         document.querySelector('tr[data-conversation-id=chat]').click(); return true;",
    )
    .await;
    page.wait_for(
        "the details, the file and the conversation",
        "return document.getElementById('item-title')?.textContent.startsWith('Log in with GitHub')
             && document.getElementById('file-content')?.textContent === 'first text'
             && !!document.querySelector('.message[data-message-id=m1]')",
    )
    .await;
}

/// Saves screenshots when SWITCHBOARD_SCREENSHOTS names a folder (to look at
/// the layout by eye).
async fn maybe_screenshot(page: &Page, name: &str) {
    if let Ok(dir) = std::env::var("SWITCHBOARD_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).unwrap();
        page.screenshots(std::path::Path::new(&dir), name, 1000)
            .await;
    }
}

/// What the layout test measures, in CSS pixels.
const LAYOUT: &str = "
    const box = (el) => { const b = el.getBoundingClientRect(); return { left: b.left, right: b.right, top: b.top, bottom: b.bottom, width: b.width }; };
    const at = (css) => box(document.querySelector(css));
    const overlap = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
    const clipped = (el) => { for (let p = el.parentElement; p; p = p.parentElement) if (getComputedStyle(p).overflowX !== 'visible') return true; return false; };
    const board = at('#board');
    return {
      scroll: document.documentElement.scrollWidth,
      columns: [...document.querySelectorAll('#board .column')].map((c) => box(c)),
      board,
      pane_overlaps_board: overlap(board, at('#item-pane')),
      form_overlaps_board: overlap(board, at('#feature-form')),
      sections: Object.fromEntries(['events', 'presence', 'files', 'conversations']
        .map((name) => [name, at(`section[aria-labelledby=${name}-heading]`)])),
      sticking_out: [...document.querySelectorAll('body *')]
        .filter((el) => { const b = el.getBoundingClientRect(); return b.width > 0 && b.right > innerWidth + 0.5 && !clipped(el); })
        .map((el) => el.tagName + (el.id ? '#' + el.id : '') + (el.className ? '.' + el.className : '')),
      wrapped_times: [...document.querySelectorAll('#sessions time, #feed time, #files time')].filter((t) => t.getClientRects().length > 1).length,
    };";

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn the_dashboard_fits_1400_768_390_and_360_px_without_sideways_scroll_slivers_or_overlap() {
    require_browser();
    let app = spawn_app().await;
    seed(&app).await;
    let driver = Driver::start().await;
    let profiles = tempfile::tempdir().unwrap();
    let page = driver.page(&profiles.path().join("one")).await;
    page.set_width(1400).await;
    open_seeded(&page, &app).await;

    for width in [1400_u32, 768, 390, 360] {
        page.set_width(width).await;
        let layout = page.eval(LAYOUT).await;
        maybe_screenshot(&page, &format!("dashboard-{width}")).await;
        let f = |v: &serde_json::Value| v.as_f64().unwrap();
        assert!(
            f(&layout["scroll"]) <= f64::from(width),
            "at {width} px the page is {} px wide: no sideways scroll",
            layout["scroll"]
        );
        assert_eq!(
            layout["sticking_out"],
            json!([]),
            "at {width} px nothing sticks out of the window"
        );
        let columns = layout["columns"].as_array().unwrap();
        assert_eq!(columns.len(), 5, "one column per status");
        for column in columns {
            assert!(
                f(&column["width"]) >= 120.0,
                "at {width} px every board column is readable: {layout}"
            );
        }
        assert_eq!(
            layout["pane_overlaps_board"], false,
            "at {width} px the details do not cover the board"
        );
        assert_eq!(layout["form_overlaps_board"], false, "nor does the form");
        assert_eq!(
            layout["wrapped_times"], 0,
            "at {width} px no time wraps over two lines"
        );
        let s = &layout["sections"];
        let stacked = |a: &str, b: &str| f(&s[b]["top"]) >= f(&s[a]["bottom"]);
        let beside = |a: &str, b: &str| f(&s[b]["left"]) >= f(&s[a]["right"]);
        if width >= 900 {
            assert!(beside("events", "presence"), "at {width} px: {s}");
            assert!(beside("files", "conversations"), "at {width} px: {s}");
        } else {
            assert!(stacked("events", "presence"), "at {width} px: {s}");
            assert!(stacked("files", "conversations"), "at {width} px: {s}");
            assert!(stacked("presence", "files"), "at {width} px: {s}");
        }
        if width < 720 {
            // One column: the statuses one under another, as wide as the board.
            for column in columns {
                assert!(f(&column["width"]) >= f(&layout["board"]["width"]) - 1.0);
            }
        }
    }
    page.close().await;
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn selecting_a_card_leaves_the_create_form_alone_and_switching_collection_clears_the_selection(
) {
    require_browser();
    let app = spawn_app().await;
    as_agent(
        &app,
        reqwest::Method::POST,
        "/api/features",
        json!({ "id": "feat-darkmode", "title": "Dark mode" }),
        201,
    )
    .await;
    let driver = Driver::start().await;
    let profiles = tempfile::tempdir().unwrap();
    let page = driver.page(&profiles.path().join("one")).await;
    page.open(&app.url("/")).await;
    page.wait_for("the stream to go live", LIVE).await;
    page.wait_for(
        "the card",
        "return !!document.querySelector('.card[data-feature-id=feat-darkmode]')",
    )
    .await;

    // Select the card, then type a title into the form and submit it.
    page.eval(
        "document.querySelector('.card[data-feature-id=feat-darkmode]').click(); return true;",
    )
    .await;
    page.wait_for(
        "the selection",
        "return document.querySelector('.card[data-feature-id=feat-darkmode]').getAttribute('aria-current') === 'true'",
    )
    .await;
    assert_eq!(
        text(&page, "return document.getElementById('feature-form').dataset.mode + ' / ' + document.getElementById('form-mode').textContent + ' / ' + document.getElementById('feature-save').textContent").await,
        "new / New feature / Create feature",
        "selecting a card does not turn the form into an edit form"
    );
    page.type_into("#feature-title", "Offline outbox").await;
    page.type_into("#feature-title", ENTER).await;
    page.wait_for(
        "the new card",
        "return [...document.querySelectorAll('.card')].some((c) => c.textContent.includes('Offline outbox'))",
    )
    .await;
    let features = app.get_json("/api/features").await;
    let mut titles: Vec<(String, String)> = features["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_owned(),
                f["title"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    titles.sort();
    assert_eq!(titles.len(), 2, "a second feature was created: {titles:?}");
    assert!(
        titles.contains(&("feat-darkmode".into(), "Dark mode".into())),
        "the selected one keeps its title: {titles:?}"
    );
    assert!(
        titles.iter().any(|(_, title)| title == "Offline outbox"),
        "{titles:?}"
    );

    // Editing is asked for, and the form then names the item it edits.
    page.eval(
        "document.querySelector('.card[data-feature-id=feat-darkmode]').click(); return true;",
    )
    .await;
    page.wait_for(
        "the details",
        "return document.getElementById('item-title')?.textContent === 'Dark mode'",
    )
    .await;
    page.eval("document.getElementById('item-edit').click(); return true;")
        .await;
    assert_eq!(
        text(&page, "return document.getElementById('feature-form').dataset.mode + ' / ' + document.getElementById('form-mode').textContent + ' / ' + document.getElementById('form-target').textContent + ' / ' + document.getElementById('feature-save').textContent").await,
        "edit / Edit feature “Dark mode” / feat-darkmode · v1 / Save feature",
    );
    maybe_screenshot(&page, "dashboard-edit-mode").await;
    page.eval(
        "const title = document.getElementById('feature-title'); title.value = 'Dark mode everywhere';
         document.getElementById('feature-priority').value = 'high';
         document.getElementById('feature-form').requestSubmit(); return true;",
    )
    .await;
    page.wait_for(
        "the form back in new mode",
        "return document.getElementById('feature-form').dataset.mode === 'new'
             && document.getElementById('form-result').textContent === 'saved feat-darkmode v2'",
    )
    .await;
    let saved = app.get_json("/api/features/feat-darkmode").await;
    assert_eq!(saved["title"], "Dark mode everywhere");
    assert_eq!(saved["priority"], "high");
    assert_eq!(saved["version"], 2);
    assert_eq!(
        app.get_json("/api/features").await["features"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "an edit creates nothing"
    );

    // Switching collection in edit mode clears the selection and the edit;
    // the form then creates a spike, with a priority and tags.
    page.eval("document.getElementById('item-edit').click(); return true;")
        .await;
    page.eval("document.querySelector('#kinds button[data-kind=spikes]').click(); return true;")
        .await;
    page.wait_for(
        "the spikes board",
        "return document.querySelector('#kinds button[data-kind=spikes]').getAttribute('aria-pressed') === 'true'",
    )
    .await;
    assert_eq!(
        page.eval("return [!!document.querySelector('.card.selected'), document.getElementById('item-empty').hidden, document.getElementById('form-mode').textContent, document.querySelector('[data-field=priority]').hidden]").await,
        json!([false, false, "New spike", false]),
        "nothing selected, no edit, a spike has a priority"
    );
    page.eval(
        "document.getElementById('feature-title').value = 'Which OAuth flow?';
         document.getElementById('feature-priority').value = 'critical';
         document.getElementById('feature-tags').value = 'auth, oauth, auth';
         document.getElementById('feature-form').requestSubmit(); return true;",
    )
    .await;
    page.wait_for(
        "the spike card",
        "return [...document.querySelectorAll('.card')].some((c) => c.textContent.includes('Which OAuth flow?'))",
    )
    .await;
    assert_eq!(
        text(
            &page,
            "return document.getElementById('form-error').textContent"
        )
        .await,
        ""
    );
    let spikes = app.get_json("/api/spikes").await;
    let spikes = spikes["spikes"].as_array().unwrap();
    assert_eq!(spikes.len(), 1);
    assert_eq!(spikes[0]["title"], "Which OAuth flow?");
    assert_eq!(spikes[0]["priority"], "critical");
    assert_eq!(spikes[0]["tags"], json!(["auth", "oauth"]));
    assert_eq!(
        app.get_json("/api/features/feat-darkmode").await["version"],
        2,
        "the feature edited before the switch is untouched"
    );
    page.close().await;
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn an_edit_does_not_overwrite_a_change_made_meanwhile_without_saying_so() {
    require_browser();
    let app = spawn_app().await;
    let body = json!({ "id": "feat-login", "title": "Log in" });
    as_agent(&app, reqwest::Method::POST, "/api/features", body, 201).await;
    let driver = Driver::start().await;
    let profiles = tempfile::tempdir().unwrap();
    let page = driver.page(&profiles.path().join("one")).await;
    page.open(&app.url("/")).await;
    page.wait_for("the stream to go live", LIVE).await;
    page.wait_for(
        "the card",
        "return !!document.querySelector('.card[data-feature-id=feat-login]')",
    )
    .await;
    page.eval("document.querySelector('.card[data-feature-id=feat-login]').click(); return true;")
        .await;
    page.wait_for(
        "the details",
        "return !!document.getElementById('item-title')",
    )
    .await;
    page.eval("document.getElementById('item-edit').click(); return true;")
        .await;

    // Someone else changes the description meanwhile; the form says so.
    let patch = json!({ "description": "Use the device flow" });
    as_agent(
        &app,
        reqwest::Method::PATCH,
        "/api/features/feat-login",
        patch,
        200,
    )
    .await;
    page.wait_for(
        "the form to say the item changed",
        "return document.getElementById('form-target').textContent === 'feat-login · v1 · changed by claude-1 since (now v2)'",
    )
    .await;
    page.eval(
        "document.getElementById('feature-title').value = 'Log in with GitHub';
         document.getElementById('feature-form').requestSubmit(); return true;",
    )
    .await;
    page.wait_for(
        "the conflict",
        "return document.getElementById('form-error').textContent.startsWith('claude-1 changed feat-login since you began editing (now v2)')",
    )
    .await;
    let current = app.get_json("/api/features/feat-login").await;
    assert_eq!(current["title"], "Log in", "nothing was overwritten");
    assert_eq!(current["version"], 2);

    // Saving again applies the change made in the form over the new version.
    page.eval("document.getElementById('feature-form').requestSubmit(); return true;")
        .await;
    page.wait_for(
        "the save",
        "return document.getElementById('form-result').textContent === 'saved feat-login v3'",
    )
    .await;
    let current = app.get_json("/api/features/feat-login").await;
    assert_eq!(current["title"], "Log in with GitHub");
    assert_eq!(
        current["description"], "Use the device flow",
        "the form left alone what it did not change"
    );
    page.close().await;
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn the_feed_hides_presence_events_unless_asked_and_times_read_relative_with_the_full_date() {
    require_browser();
    let app = spawn_app().await;
    seed(&app).await;
    let driver = Driver::start().await;
    let profiles = tempfile::tempdir().unwrap();
    let page = driver.page(&profiles.path().join("one")).await;
    open_seeded(&page, &app).await;

    // Another session joins; then an event of a channel of our own.
    let _watcher = app
        .stream("channels=global", &[("X-Session-ID", "watcher-1")])
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let joined =
        loop {
            let events = app
                .get_json("/api/events?channels=presence&type=session_joined")
                .await;
            if let Some(e) = events["events"].as_array().unwrap().iter().find(|e| {
                e["session_id"] == "watcher-1" || e["payload"]["session_id"] == "watcher-1"
            }) {
                break e["id"].as_i64().unwrap();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the watcher's session_joined"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
    let marker = app
        .publish("global", "deploy_started", json!({}), Some("ci"))
        .await;
    let marker_id = marker["id"].as_i64().unwrap();
    page.wait_for(
        "the marker in the feed",
        &format!("return !!document.querySelector('#feed li[data-id=\"{marker_id}\"]')"),
    )
    .await;
    assert_eq!(
        page.eval("return document.querySelectorAll('#feed li[data-channel=presence]').length")
            .await,
        json!(0),
        "no presence event is shown by default"
    );
    assert!(
        text(
            &page,
            "return document.getElementById('feed-hidden').textContent"
        )
        .await
        .contains("presence events (sessions joining and leaving) hidden"),
        "the feed says what it hides"
    );
    page.eval("document.getElementById('feed-presence').click(); return true;")
        .await;
    page.wait_for(
        "the presence events",
        &format!("return document.querySelector('#feed li[data-id=\"{joined}\"]')?.dataset.type === 'session_joined'"),
    )
    .await;

    // Times read "just now" / "N s ago", with the full date on hover.
    let time = page
        .eval(&format!(
            "const t = document.querySelector('#feed li[data-id=\"{marker_id}\"] summary time');
             return [t.getAttribute('datetime'), t.title, t.textContent]"
        ))
        .await;
    assert_eq!(time[0], marker["timestamp"]);
    let year = &marker["timestamp"].as_str().unwrap()[..4];
    assert!(
        time[1].as_str().unwrap().contains(year),
        "the full date: {time}"
    );
    let relative = time[2].as_str().unwrap();
    assert!(
        relative == "just now" || relative.ends_with(" s ago"),
        "relative: {relative}"
    );
    let since = page
        .eval("const t = document.querySelector(`#sessions tr[data-session-id=\"${window.switchboard.streamSessionId}\"] time`); return [t.textContent, t.title, t.getClientRects().length]")
        .await;
    assert!(
        since[0] == "just now" || since[0].as_str().unwrap().ends_with(" s ago"),
        "presence: {since}"
    );
    assert!(
        since[1].as_str().unwrap().contains(year),
        "presence: {since}"
    );
    assert_eq!(since[2], 1, "on one line");

    // A lock taken for an hour expires "in 59 min".
    assert!(text(
        &page,
        "return document.querySelector('tr[data-file-id=readme] .lock-holder').textContent"
    )
    .await
    .contains("expires in 59 min"),);
    // Cards show priority, track and tags; a streaming message says so.
    let card = text(
        &page,
        "return document.querySelector('.card[data-feature-id=feat-login]').textContent",
    )
    .await;
    for shown in ["high", "track: Auth rewrite", "auth", "oauth"] {
        assert!(card.contains(shown), "{shown} on the card: {card}");
    }
    assert_eq!(
        page.eval("const m = document.querySelector('.message[data-message-id=m1]'); return [m.getAttribute('aria-busy'), m.querySelector('.badge')?.textContent]").await,
        json!(["true", "still streaming…"])
    );
    page.close().await;
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn a_lock_renewed_silently_shows_its_renewed_expiry_not_a_passed_one() {
    require_browser();
    let app = spawn_app().await;
    let file = json!({ "stable_id": "notes", "name": "notes.md", "content": "x" });
    as_agent(&app, reqwest::Method::POST, "/api/files", file, 201).await;
    let driver = Driver::start().await;
    let profiles = tempfile::tempdir().unwrap();
    let page = driver.page(&profiles.path().join("one")).await;
    page.open(&app.url("/")).await;
    page.wait_for("the stream to go live", LIVE).await;
    page.wait_for(
        "the file",
        "return !!document.querySelector('tr[data-file-id=notes]')",
    )
    .await;

    // The holder takes the lock for 3 s and renews it every second: the
    // renewals publish nothing, so the announced expiry passes.
    let lock = json!({ "ttl_seconds": 3 });
    let first = as_agent(
        &app,
        reqwest::Method::POST,
        "/api/files/notes/lock",
        lock.clone(),
        200,
    )
    .await;
    let announced = first["expires_at"].as_str().unwrap().to_owned();
    let renewing = {
        let (client, url) = (app.client.clone(), app.url("/api/files/notes/lock"));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let mut request = client.post(&url).json(&lock);
                for (name, value) in AGENT {
                    request = request.header(name, value);
                }
                assert_eq!(request.send().await.unwrap().status(), 200);
            }
        })
    };
    page.wait_for(
        "the lock",
        "return !!document.querySelector('tr[data-file-id=notes] .lock-holder time')",
    )
    .await;
    page.wait_for(
        "a renewed expiry, read from the server",
        &format!(
            "const t = document.querySelector('tr[data-file-id=notes] .lock-holder time');
             return !!t && t.getAttribute('datetime') > {announced:?} && t.textContent.startsWith('in ')"
        ),
    )
    .await;
    renewing.abort();
    page.close().await;
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn the_board_is_usable_with_the_keyboard_alone() {
    require_browser();
    let app = spawn_app().await;
    seed(&app).await;
    let driver = Driver::start().await;
    let profiles = tempfile::tempdir().unwrap();
    let page = driver.page(&profiles.path().join("one")).await;
    page.open(&app.url("/")).await;
    page.wait_for("the stream to go live", LIVE).await;
    page.wait_for(
        "the cards",
        "return !!document.querySelector('.card[data-feature-id=feat-darkmode]')",
    )
    .await;

    // Tab from "New feature" reaches the first card, with a visible focus.
    page.eval("document.getElementById('new-item').focus(); return true;")
        .await;
    page.press(TAB).await;
    assert_eq!(
        page.eval("const a = document.activeElement; return [a.dataset.featureId, a.matches(':focus-visible'), getComputedStyle(a).outlineStyle]").await,
        json!(["feat-login", true, "solid"])
    );
    // A change that redraws the board keeps the focus on that card.
    let patch = json!({ "title": "Dark mode, redrawn" });
    as_agent(
        &app,
        reqwest::Method::PATCH,
        "/api/features/feat-darkmode",
        patch,
        200,
    )
    .await;
    page.wait_for(
        "the redrawn board",
        "return document.querySelector('.card[data-feature-id=feat-darkmode]').textContent.includes('Dark mode, redrawn')",
    )
    .await;
    assert_eq!(
        page.eval("return document.activeElement.dataset.featureId")
            .await,
        "feat-login"
    );
    // Enter selects it, Escape clears the selection and keeps the focus on it.
    page.press(ENTER).await;
    page.wait_for(
        "the details",
        "return document.getElementById('item-title')?.textContent.startsWith('Log in with GitHub')",
    )
    .await;
    // The edit: Enter on "Edit", type, Escape cancels and nothing is saved.
    page.type_into("#item-edit", ENTER).await;
    page.wait_for(
        "the edit mode",
        "return document.getElementById('feature-form').dataset.mode === 'edit' && document.activeElement.id === 'feature-title'",
    )
    .await;
    page.type_into("#feature-title", " sooner").await;
    page.press(ESCAPE).await;
    page.wait_for(
        "the new mode",
        "return document.getElementById('feature-form').dataset.mode === 'new' && document.activeElement.id === 'item-edit'",
    )
    .await;
    assert_eq!(
        text(
            &page,
            "return document.getElementById('feature-title').value"
        )
        .await,
        ""
    );
    page.press(ESCAPE).await;
    page.wait_for(
        "the selection cleared, the focus back on the card",
        "return !document.querySelector('.card.selected') && document.activeElement.dataset.featureId === 'feat-login'",
    )
    .await;
    // Create from the keyboard: type a title and press Enter.
    page.type_into("#feature-title", "Typed only").await;
    page.type_into("#feature-title", ENTER).await;
    page.wait_for(
        "the created card",
        "return [...document.querySelectorAll('.card')].some((c) => c.textContent.includes('Typed only'))",
    )
    .await;
    let login = app.get_json("/api/features/feat-login").await;
    assert_eq!(
        login["version"], 1,
        "the edit left with Escape saved nothing"
    );
    page.close().await;
}

/// axe-core, pinned: installed with npm into the target folder once.
const AXE_CORE: &str = "4.14.1";

fn axe_core_source() -> String {
    let dir =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("axe-core-{AXE_CORE}"));
    let script = dir.join("node_modules/axe-core/axe.min.js");
    if !script.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("package.json"), "{\"private\": true}\n").unwrap();
        let status = std::process::Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",
                "--prefix",
            ])
            .arg(&dir)
            .arg(format!("axe-core@{AXE_CORE}"))
            .status()
            .expect("npm runs (the accessibility audit needs Node.js and npm)");
        assert!(status.success(), "npm install axe-core@{AXE_CORE} failed");
    }
    std::fs::read_to_string(script).unwrap()
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn axe_finds_no_serious_or_critical_accessibility_violation_at_1400_and_390_px() {
    require_browser();
    let axe = axe_core_source();
    let app = spawn_app().await;
    seed(&app).await;
    let driver = Driver::start().await;
    let profiles = tempfile::tempdir().unwrap();
    let page = driver.page(&profiles.path().join("one")).await;
    page.set_width(1400).await;
    open_seeded(&page, &app).await;
    page.eval(&format!("{axe}\nreturn true;")).await;
    assert_eq!(page.eval("return typeof window.axe?.run").await, "function");
    // The edit mode and an opened feed line are audited too.
    page.eval(
        "document.getElementById('item-edit').click();
         document.querySelector('#feed li summary')?.click(); return true;",
    )
    .await;
    for width in [1400, 390] {
        page.set_width(width).await;
        let violations = page
            .run(
                "const results = await axe.run(document, { resultTypes: ['violations'] });
                 return results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
                   .map((v) => `${v.impact} ${v.id}: ${v.help} — ` + v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', '));",
            )
            .await;
        assert_eq!(violations, json!([]), "at {width} px");
    }
    page.close().await;
}

/// A webhook receiver on 127.0.0.1 answering `status` (changeable) to
/// every POST; the count of 2xx answers it gave.
async fn switchable_receiver() -> (
    String,
    std::sync::Arc<std::sync::atomic::AtomicU16>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let status = Arc::new(AtomicU16::new(500));
    let accepted = Arc::new(AtomicUsize::new(0));
    let (answer, count) = (status.clone(), accepted.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (answer, count) = (answer.clone(), count.clone());
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&data).to_ascii_lowercase();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let length: usize = text[..end]
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if data.len() >= end + 4 + length {
                        break;
                    }
                }
                let code = answer.load(Ordering::SeqCst);
                if code < 300 {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                let reply =
                    format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    (url, status, accepted)
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn the_dashboard_shows_each_subscription_and_retries_a_failing_webhook_at_once() {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    require_browser();
    let app = spawn_app_with(|args| args.webhooks_allow_loopback = true).await;
    let (url, status, accepted) = switchable_receiver().await;
    let ci = json!({ "channels": ["jobs/*"], "webhook": { "url": url } });
    as_agent(&app, reqwest::Method::PUT, "/api/subscriptions/ci", ci, 201).await;
    let workers = json!({ "channels": ["jobs/*"], "kind": "pull" });
    as_agent(
        &app,
        reqwest::Method::PUT,
        "/api/subscriptions/workers",
        workers,
        201,
    )
    .await;
    let queued = json!({ "type": "queued", "data": { "job": 7 } });
    let event = as_agent(
        &app,
        reqwest::Method::POST,
        "/api/channels/jobs%2Fbuild/events",
        queued,
        201,
    )
    .await;

    // The receiver answers 500 until the webhook has failed 4 times: its
    // next attempt is then 4–8 s away.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = app.get_json("/api/subscriptions/ci").await;
        if s["failures"].as_i64().unwrap() >= 4 {
            assert_eq!(s["state"], "retrying");
            assert_eq!(
                s["last_error"],
                "the receiver answered 500 Internal Server Error"
            );
            assert_eq!(s["acked_through"], 0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the webhook did not fail 4 times: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let driver = Driver::start().await;
    let profiles = tempfile::tempdir().unwrap();
    let page = driver.page(&profiles.path().join("one")).await;
    page.open(&app.url("/")).await;
    page.wait_for("the stream to go live", LIVE).await;
    page.wait_for(
        "both subscriptions, the webhook retrying with its error",
        "const ci = document.querySelector('tr[data-subscription-id=ci]')?.textContent ?? '';
         const workers = document.querySelector('tr[data-subscription-id=workers]')?.textContent ?? '';
         return ci.includes('retrying') && ci.includes('answered 500') && ci.includes('jobs/*')
             && workers.includes('pull') && workers.includes('claimable');",
    )
    .await;

    // Fixed: the receiver answers 200; "Retry now" delivers well before the
    // 4 s the backoff would have waited.
    status.store(200, Ordering::SeqCst);
    let clicked = Instant::now();
    page.eval("document.querySelector('[data-retry=ci]').click(); return true;")
        .await;
    while accepted.load(Ordering::SeqCst) == 0 {
        assert!(
            clicked.elapsed() < Duration::from_millis(2500),
            "Retry now did not deliver at once"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = app.get_json("/api/subscriptions/ci").await;
    // Past the event, and past the dashboard's presence events too: the
    // cursor moves over events that do not match.
    assert!(s["acked_through"].as_i64() >= event["id"].as_i64(), "{s}");
    assert_eq!(s["failures"], 0, "{s}");
    assert_eq!(s["delivered"], 1, "{s} {event}");
    page.wait_for(
        "the webhook delivering again",
        "const ci = document.querySelector('tr[data-subscription-id=ci]')?.textContent ?? '';
         return ci.includes('delivering') && ci.includes('1 delivered');",
    )
    .await;
    page.close().await;
}
