//! The dashboard in a real browser (see `browser.rs`). Two pages; a
//! feature created in one appears in the other; the server restarts and the
//! page shows later events without duplicates.

use serde_json::json;

use crate::browser::{require_browser, Driver};
use crate::helpers::spawn_app;

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

    // Presence lists this page's session.
    page.wait_for(
        "this page in presence",
        "return !!document.querySelector(`#sessions tr[data-session-id=\"${window.switchboard.sessionId}\"]`)",
    )
    .await;
    page.close().await;
}
