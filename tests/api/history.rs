//! `GET /api/events` and `GET /api/events/{id}`.

use serde_json::{json, Value};

use crate::helpers::{expect_error, spawn_app, stored_ids, TestApp};

/// One page: the events' ids, `next_cursor`, and `X-Event-Cursor`.
async fn page(app: &TestApp, query: &str) -> (Vec<i64>, Option<i64>, i64) {
    let response = app
        .get(&format!("/api/events?{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{query}");
    let cursor: i64 = response.headers()["x-event-cursor"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    let next = match &body["next_cursor"] {
        Value::Null => None,
        other => Some(other.as_i64().expect("next_cursor is an id or null")),
    };
    (stored_ids(body["events"].as_array().unwrap()), next, cursor)
}

async fn publish_many(app: &TestApp, count: usize) -> Vec<i64> {
    let batch = (0..count)
        .map(|n| {
            let channel = if n % 2 == 0 { "even" } else { "odd" };
            json!({"channel": channel, "type": "tick", "data": {"n": n}})
        })
        .collect();
    stored_ids(&app.publish_batch(batch).await)
}

async fn pages_after_a_cursor_walk_every_event_exactly_once() {
    let app = spawn_app().await;
    let all = publish_many(&app, 250).await;

    let (first, next, _) = page(&app, "").await;
    assert_eq!(
        first,
        all[..100].to_vec(),
        "default limit is 100, oldest first"
    );
    assert_eq!(next, Some(all[99]));

    let mut walked = Vec::new();
    let mut sizes = Vec::new();
    let mut after = 0;
    loop {
        let (ids, next, _) = page(&app, &format!("after={after}&limit=100")).await;
        sizes.push(ids.len());
        if let Some(next) = next {
            assert_eq!(Some(&next), ids.last(), "next_cursor is the page's last id");
        }
        walked.extend(ids);
        match next {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(sizes, vec![100, 100, 50]);
    assert_eq!(walked, all);

    // A last page that is exactly full is followed by an empty one.
    let (second, next, _) = page(&app, &format!("after={}&limit=125", all[124])).await;
    assert_eq!(second, all[125..].to_vec());
    assert_eq!(next, Some(all[249]));
    let (empty, next, _) = page(&app, &format!("after={}&limit=125", all[249])).await;
    assert!(empty.is_empty());
    assert_eq!(next, None);

    // Both bounds together.
    let (between, _, _) = page(&app, &format!("after={}&before={}", all[9], all[20])).await;
    assert_eq!(between, all[10..20].to_vec());
}

async fn pages_in_descending_order_walk_back_with_before() {
    let app = spawn_app().await;
    let all = publish_many(&app, 130).await;

    let mut walked = Vec::new();
    let mut query = "order=desc&limit=50".to_owned();
    loop {
        let (ids, next, _) = page(&app, &query).await;
        walked.extend(ids);
        match next {
            Some(next) => query = format!("order=desc&limit=50&before={next}"),
            None => break,
        }
    }
    let mut newest_first = all.clone();
    newest_first.reverse();
    assert_eq!(walked, newest_first);

    let (ids, _, _) = page(&app, &format!("order=desc&before={}&limit=3", all[10])).await;
    assert_eq!(ids, vec![all[9], all[8], all[7]]);
    let (ids, _, _) = page(&app, &format!("order=asc&before={}&limit=3", all[10])).await;
    assert_eq!(ids, vec![all[0], all[1], all[2]]);
}

async fn history_filters_by_channel_pattern_type_resource_agent_and_session() {
    let app = spawn_app().await;
    let specs = [
        ("chat:1", "a", Some("r1"), Some("ag1"), Some("s1")),
        ("chat:2", "b", Some("r2"), Some("ag2"), Some("s2")),
        ("global", "a", Some("r1"), Some("ag2"), None),
        ("chatter", "b", None, Some("ag1"), Some("s1")),
        ("team/x", "c", Some("r2"), None, None),
    ];
    let mut e = Vec::new();
    for (channel, event_type, resource, agent, session) in specs {
        let mut body = json!({"type": event_type});
        if let Some(resource) = resource {
            body["resource_id"] = json!(resource);
        }
        // A `/` in a channel name may be sent as is or percent-encoded.
        let path_channel = if event_type == "c" {
            channel.to_owned()
        } else {
            channel.replace('/', "%2F")
        };
        let mut request = app
            .post(&format!("/api/channels/{path_channel}/events"))
            .json(&body);
        if let Some(agent) = agent {
            request = request.header("X-Agent-ID", agent);
        }
        if let Some(session) = session {
            request = request.header("X-Session-ID", session);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 201);
        let stored: Value = response.json().await.unwrap();
        e.push(stored["id"].as_i64().unwrap());
    }
    let head = e[4];

    let cases: Vec<(&str, Vec<i64>)> = vec![
        ("channels=chat:*", vec![e[0], e[1]]),
        ("channels=chat:1,global", vec![e[0], e[2]]),
        ("channels=chat*", vec![e[0], e[1], e[3]]),
        ("channels=*", e.clone()),
        ("channels=team/x", vec![e[4]]),
        ("channels=nothing-here", vec![]),
        ("type=a", vec![e[0], e[2]]),
        ("resource_id=r2", vec![e[1], e[4]]),
        ("agent_id=ag1", vec![e[0], e[3]]),
        ("agent_id=anonymous", vec![e[4]]),
        ("session_id=s1", vec![e[0], e[3]]),
        ("channels=chat:*&type=a&agent_id=ag1", vec![e[0]]),
        ("channels=chat*&session_id=s1&order=desc", vec![e[3], e[0]]),
    ];
    for (query, expected) in cases {
        let (ids, next, cursor) = page(&app, query).await;
        assert_eq!(ids, expected, "{query}");
        assert_eq!(next, None, "{query}");
        assert_eq!(
            cursor, head,
            "X-Event-Cursor is the head id, whatever the filter"
        );
    }

    // Filters and pagination together.
    let (ids, next, _) = page(&app, "type=b&limit=1").await;
    assert_eq!((ids, next), (vec![e[1]], Some(e[1])));
    let (ids, next, _) = page(&app, &format!("type=b&limit=1&after={}", e[1])).await;
    assert_eq!((ids, next), (vec![e[3]], Some(e[3])));
    let (ids, next, _) = page(&app, &format!("type=b&limit=1&after={}", e[3])).await;
    assert_eq!((ids, next), (vec![], None));
}

async fn x_event_cursor_is_the_head_id_also_when_the_log_is_empty_or_pruned() {
    let app = spawn_app().await;
    let (ids, next, cursor) = page(&app, "").await;
    assert_eq!((ids, next, cursor), (vec![], None, 0));

    let all = publish_many(&app, 5).await;
    let (_, _, cursor) = page(&app, &format!("after={}", all[4])).await;
    assert_eq!(cursor, all[4]);

    app.prune_with_cli("0s").await;
    let (ids, _, cursor) = page(&app, "").await;
    assert!(ids.is_empty());
    assert_eq!(cursor, all[4], "the head survives pruning");
}

async fn one_event_is_fetched_by_id_and_an_unknown_id_is_not_found() {
    let app = spawn_app().await;
    let stored = app
        .publish("global", "note", json!({"n": 1}), Some("s"))
        .await;
    let id = stored["id"].as_i64().unwrap();
    let response = app.get(&format!("/api/events/{id}")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), stored);

    for unknown in [id + 1, 0, 999_999] {
        let response = app
            .get(&format!("/api/events/{unknown}"))
            .send()
            .await
            .unwrap();
        expect_error(response, 404, "not_found").await;
    }
    let response = app.get("/api/events/abc").send().await.unwrap();
    expect_error(response, 400, "bad_request").await;
}

async fn a_page_limit_outside_one_to_a_thousand_is_refused() {
    let app = spawn_app().await;
    publish_many(&app, 3).await;
    for limit in ["0", "1001", "-5"] {
        let response = app
            .get(&format!("/api/events?limit={limit}"))
            .send()
            .await
            .unwrap();
        let body = expect_error(response, 422, "validation_failed").await;
        assert_eq!(body["error"]["details"]["field"], "limit");
    }
    let (ids, next, _) = page(&app, "limit=1000").await;
    assert_eq!((ids.len(), next), (3, None));
    let (ids, _, _) = page(&app, "limit=1").await;
    assert_eq!(ids.len(), 1);

    for (query, status, code) in [
        ("limit=abc", 400, "bad_request"),
        ("after=x", 400, "bad_request"),
        ("order=sideways", 400, "bad_request"),
        ("channels=bad%20name", 422, "validation_failed"),
        ("type=bad%21", 422, "validation_failed"),
    ] {
        let response = app
            .get(&format!("/api/events?{query}"))
            .send()
            .await
            .unwrap();
        expect_error(response, status, code).await;
    }
}

crate::on_both_backends!(
    pages_after_a_cursor_walk_every_event_exactly_once,
    pages_in_descending_order_walk_back_with_before,
    history_filters_by_channel_pattern_type_resource_agent_and_session,
    x_event_cursor_is_the_head_id_also_when_the_log_is_empty_or_pruned,
    one_event_is_fetched_by_id_and_an_unknown_id_is_not_found,
    a_page_limit_outside_one_to_a_thousand_is_refused,
);
