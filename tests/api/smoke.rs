use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_published_event_reaches_another_session_but_not_its_own() {
    let app = spawn_app().await;
    let mut watcher = app
        .stream("channels=global", &[("X-Session-ID", "watcher")])
        .await;
    let mut own = app
        .stream("channels=global", &[("X-Session-ID", "writer")])
        .await;
    let stored = app
        .publish("global", "note", json!({"n": 1}), Some("writer"))
        .await;
    let event = watcher.next_event().await;
    assert_eq!(event.event, "note");
    assert_eq!(event.id_number(), stored["id"].as_i64());
    assert_eq!(event.json().unwrap()["payload"], json!({"n": 1}));
    own.assert_quiet(std::time::Duration::from_millis(300))
        .await;
}
