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
