//! `GET /api/stream`: ordering, exact resume, replay, filters, resync,
//! restarts, presence and slow consumers.

use std::time::Duration;

use serde_json::{json, Value};
use switchboard::client::sse::SseMessage;

use crate::helpers::{ids, spawn_app, spawn_app_with, stored_ids, SseStream, DEADLINE};

/// How long a stream must stay silent to count as "nothing more".
const QUIET: Duration = Duration::from_millis(300);

fn note(channel: &str, n: usize) -> Value {
    json!({ "channel": channel, "type": "note", "data": { "n": n } })
}

async fn a_subscriber_that_keeps_reconnecting_gets_every_event_exactly_once_in_order() {
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 250;
    const TOTAL: usize = WRITERS * PER_WRITER;
    let app = spawn_app().await;

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let publisher = app.publisher();
            tokio::spawn(async move {
                let session = format!("writer-{w}");
                let mut ids = Vec::with_capacity(PER_WRITER);
                for n in 0..PER_WRITER {
                    let stored = publisher
                        .publish(
                            "load",
                            "tick",
                            json!({ "writer": w, "n": n }),
                            Some(&session),
                        )
                        .await;
                    ids.push(stored["id"].as_i64().unwrap());
                }
                ids
            })
        })
        .collect();

    // Read a few events, hang up, resume from the last id seen; repeat.
    let chunk_sizes = [1, 7, 30, 64, 3, 120, 17, 250, 2, 45];
    let mut received: Vec<Value> = Vec::with_capacity(TOTAL);
    let mut last = 0i64;
    let mut connections = 0usize;
    let mut by_query_param = 0usize;
    let mut while_publishing = 0usize;
    while received.len() < TOTAL {
        if writers.iter().any(|w| !w.is_finished()) {
            while_publishing += 1;
        }
        let cursor = last.to_string();
        let mut stream = if connections % 4 == 2 {
            by_query_param += 1;
            app.stream(&format!("channels=load&last_event_id={cursor}"), &[])
                .await
        } else {
            app.stream("channels=load", &[("Last-Event-ID", &cursor)])
                .await
        };
        let want = chunk_sizes[connections % chunk_sizes.len()].min(TOTAL - received.len());
        for _ in 0..want {
            let event = stream.next_event().await;
            let id = event.id_number().expect("numeric id");
            assert!(
                id > last,
                "connection {connections}: got id {id} after {last} (a duplicate or out of order)"
            );
            assert_eq!(event.event, "tick");
            received.push(event.json().unwrap());
            last = id;
        }
        connections += 1;
    }

    let mut published = Vec::with_capacity(TOTAL);
    for writer in writers {
        published.extend(writer.await.unwrap());
    }
    published.sort_unstable();
    let logged: Vec<Value> = app
        .all_events()
        .await
        .into_iter()
        .filter(|e| e["channel"] == "load")
        .collect();
    assert_eq!(logged.len(), TOTAL);
    assert_eq!(stored_ids(&received), published);
    assert_eq!(stored_ids(&received), stored_ids(&logged));
    assert_eq!(received, logged, "the streamed events are the stored ones");
    assert!(connections >= 10, "only {connections} connections");
    assert!(by_query_param >= 2);
    assert!(
        while_publishing >= 3,
        "only {while_publishing} reconnections happened while the writers ran"
    );

    let mut tail = app
        .stream("channels=load", &[("Last-Event-ID", &last.to_string())])
        .await;
    tail.assert_quiet(QUIET).await;
}

async fn events_published_while_streams_are_connecting_are_delivered_exactly_once() {
    const TOTAL: usize = 300;
    const STREAMS: usize = 24;
    let app = spawn_app().await;
    let (progress, watch_progress) = tokio::sync::watch::channel(0usize);
    let publisher = app.publisher();
    let writer = tokio::spawn(async move {
        for n in 0..TOTAL {
            publisher
                .publish("race", "tick", json!({ "n": n }), None)
                .await;
            progress.send_replace(n + 1);
        }
    });

    // Open streams one after another while the writer publishes, half
    // resuming from 0 and half replaying without a cursor.
    let mut readers = Vec::new();
    for i in 0..STREAMS {
        let mut progress = watch_progress.clone();
        tokio::time::timeout(DEADLINE, progress.wait_for(|n| *n >= i * TOTAL / STREAMS))
            .await
            .expect("the writer makes progress")
            .unwrap();
        let mut stream = if i % 2 == 0 {
            app.stream("channels=race", &[("Last-Event-ID", "0")]).await
        } else {
            app.stream("channels=race&replay=1000", &[]).await
        };
        readers.push(tokio::spawn(async move {
            let events = stream.take_events(TOTAL).await;
            stream.assert_quiet(QUIET).await;
            ids(&events)
        }));
    }
    writer.await.unwrap();

    let expected = app.ids_on("race").await;
    assert_eq!(expected.len(), TOTAL);
    for (i, reader) in readers.into_iter().enumerate() {
        assert_eq!(reader.await.unwrap(), expected, "stream {i}");
    }
}

async fn the_originating_session_never_receives_its_own_events_unless_it_asks_for_them() {
    let app = spawn_app().await;
    let mut alpha = app
        .stream("channels=global", &[("X-Session-ID", "alpha")])
        .await;
    let mut beta = app.stream("channels=global&session_id=beta", &[]).await;
    let mut anyone = app.stream("channels=global", &[]).await;
    let mut alpha_own = app
        .stream(
            "channels=global&include_own=true",
            &[("X-Session-ID", "alpha")],
        )
        .await;
    let mut beta_own = app
        .stream("channels=global&session_id=beta&include_own=true", &[])
        .await;

    let a = app
        .publish("global", "note", json!({"from": "alpha"}), Some("alpha"))
        .await["id"]
        .as_i64()
        .unwrap();
    let b = app
        .publish("global", "note", json!({"from": "beta"}), Some("beta"))
        .await["id"]
        .as_i64()
        .unwrap();
    let c = app
        .publish("global", "note", json!({"from": "nobody"}), None)
        .await["id"]
        .as_i64()
        .unwrap();

    assert_eq!(ids(&alpha.take_events(2).await), vec![b, c]);
    assert_eq!(ids(&beta.take_events(2).await), vec![a, c]);
    assert_eq!(ids(&anyone.take_events(3).await), vec![a, b, c]);
    assert_eq!(ids(&alpha_own.take_events(3).await), vec![a, b, c]);
    assert_eq!(ids(&beta_own.take_events(3).await), vec![a, b, c]);
    alpha.assert_quiet(QUIET).await;
    beta.assert_quiet(QUIET).await;

    // Replay and resume skip the session's own events too.
    let mut replayed = app
        .stream("channels=global", &[("X-Session-ID", "alpha")])
        .await;
    assert_eq!(ids(&replayed.take_events(2).await), vec![b, c]);
    replayed.assert_quiet(QUIET).await;
    let mut resumed = app
        .stream("channels=global&session_id=beta&last_event_id=0", &[])
        .await;
    assert_eq!(ids(&resumed.take_events(2).await), vec![a, c]);
    resumed.assert_quiet(QUIET).await;
    let mut resumed_own = app
        .stream(
            "channels=global&include_own=true",
            &[("X-Session-ID", "alpha"), ("Last-Event-ID", "0")],
        )
        .await;
    assert_eq!(ids(&resumed_own.take_events(3).await), vec![a, b, c]);
}

async fn a_new_stream_without_a_cursor_replays_the_last_fifty_matching_events() {
    let app = spawn_app().await;
    // 60 events on `global`, interleaved with 60 on another channel.
    let batch: Vec<Value> = (1..=60)
        .flat_map(|n| [note("global", n), note("elsewhere", n)])
        .collect();
    let stored = app.publish_batch(batch).await;
    let global: Vec<i64> = stored_ids(&stored)
        .into_iter()
        .step_by(2)
        .collect::<Vec<_>>();
    assert_eq!(global.len(), 60);

    let mut stream = app.stream("channels=global", &[]).await;
    let replayed = stream.take_events(50).await;
    assert_eq!(ids(&replayed), global[10..].to_vec());
    let numbers: Vec<i64> = replayed
        .iter()
        .map(|e| e.json().unwrap()["payload"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, (11..=60).collect::<Vec<_>>());
    stream.assert_quiet(QUIET).await;
    let live = app.publish("global", "note", json!({"n": 61}), None).await;
    assert_eq!(stream.next_event().await.id_number(), live["id"].as_i64());

    let mut five = app.stream("channels=global&replay=5", &[]).await;
    let expected: Vec<i64> = global[56..]
        .iter()
        .copied()
        .chain(live["id"].as_i64())
        .collect();
    assert_eq!(ids(&five.take_events(5).await), expected);
    five.assert_quiet(QUIET).await;

    let mut none = app.stream("channels=global&replay=0", &[]).await;
    none.assert_quiet(QUIET).await;
    let next = app.publish("global", "note", json!({"n": 62}), None).await;
    assert_eq!(none.next_event().await.id_number(), next["id"].as_i64());

    let mut all = app.stream("channels=global&replay=1000", &[]).await;
    let every: Vec<i64> = global
        .iter()
        .copied()
        .chain(live["id"].as_i64())
        .chain(next["id"].as_i64())
        .collect();
    assert_eq!(ids(&all.take_events(62).await), every);
    all.assert_quiet(QUIET).await;
}

async fn the_default_replay_count_follows_the_setting() {
    let app = spawn_app_with(|a| a.replay_count = 3).await;
    let stored = stored_ids(
        &app.publish_batch((1..=10).map(|n| note("global", n)).collect())
            .await,
    );
    let mut stream = app.stream("channels=global", &[]).await;
    assert_eq!(ids(&stream.take_events(3).await), stored[7..].to_vec());
    stream.assert_quiet(QUIET).await;
}

async fn events_older_than_the_replay_window_are_not_replayed() {
    let app = spawn_app_with(|a| a.replay_window = Duration::from_secs(1)).await;
    let old = stored_ids(
        &app.publish_batch((1..=3).map(|n| note("global", n)).collect())
            .await,
    );
    // Let the first events age past the window.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let new = stored_ids(
        &app.publish_batch((4..=5).map(|n| note("global", n)).collect())
            .await,
    );

    let mut stream = app.stream("channels=global", &[]).await;
    assert_eq!(ids(&stream.take_events(2).await), new);
    stream.assert_quiet(QUIET).await;

    // The window limits replay only: a cursor still gets everything.
    let mut resumed = app
        .stream("channels=global", &[("Last-Event-ID", "0")])
        .await;
    let everything: Vec<i64> = old.iter().chain(&new).copied().collect();
    assert_eq!(ids(&resumed.take_events(5).await), everything);
    resumed.assert_quiet(QUIET).await;
}

async fn channel_patterns_and_resource_ids_filter_live_replayed_and_resumed_events() {
    let app = spawn_app().await;
    let batch = vec![
        json!({"channel": "chat:1", "type": "note", "resource_id": "doc-1"}),
        json!({"channel": "chat:2", "type": "note", "resource_id": "doc-2"}),
        json!({"channel": "chatter", "type": "note"}),
        json!({"channel": "global", "type": "note", "resource_id": "doc-1"}),
        json!({"channel": "team/a/b", "type": "note", "resource_id": "doc-3"}),
        json!({"channel": "conversation", "type": "note"}),
        json!({"channel": "global", "type": "note", "resource_id": "doc-2"}),
    ];
    // (query, indices of the batch it must receive)
    let cases: Vec<(&str, Vec<usize>)> = vec![
        ("channels=chat:*", vec![0, 1]),
        ("channels=global", vec![3, 6]),
        ("channels=chat:1,global,team/*", vec![0, 3, 4, 6]),
        ("channels=chat*", vec![0, 1, 2]),
        ("channels=chat:*,chat:1", vec![0, 1]),
        ("channels=*", vec![0, 1, 2, 3, 4, 5, 6]),
        ("", vec![0, 1, 2, 3, 4, 5, 6]),
        ("channels=conversation:*", vec![]),
        ("channels=team/a/b", vec![4]),
        ("resource_ids=doc-1,doc-3", vec![0, 3, 4]),
        ("channels=global&resource_ids=doc-2", vec![6]),
        ("channels=chat:*,global&resource_ids=doc-2", vec![1, 6]),
    ];

    let mut live = Vec::new();
    for (query, _) in &cases {
        live.push(app.stream(&format!("{query}&replay=0"), &[]).await);
    }
    let stored = stored_ids(&app.publish_batch(batch).await);
    let expect = |wanted: &[usize]| wanted.iter().map(|&i| stored[i]).collect::<Vec<_>>();

    for ((query, wanted), stream) in cases.iter().zip(live.iter_mut()) {
        let got = ids(&stream.take_events(wanted.len()).await);
        assert_eq!(got, expect(wanted), "live, {query:?}");
    }
    for ((query, _), stream) in cases.iter().zip(live.iter_mut()) {
        if let Some(event) = stream.next_event_within(Duration::from_millis(50)).await {
            panic!("live, {query:?}: unexpected {event:?}");
        }
    }

    for (query, wanted) in &cases {
        let mut replayed = app.stream(query, &[]).await;
        let got = ids(&replayed.take_events(wanted.len()).await);
        assert_eq!(got, expect(wanted), "replay, {query:?}");
        if let Some(event) = replayed.next_event_within(Duration::from_millis(50)).await {
            panic!("replay, {query:?}: unexpected {event:?}");
        }
        let mut resumed = app.stream(query, &[("Last-Event-ID", "0")]).await;
        let got = ids(&resumed.take_events(wanted.len()).await);
        assert_eq!(got, expect(wanted), "resume, {query:?}");
        if let Some(event) = resumed.next_event_within(Duration::from_millis(50)).await {
            panic!("resume, {query:?}: unexpected {event:?}");
        }
    }
}

async fn a_stream_starts_with_retry_sends_keep_alives_when_idle_and_is_never_cached() {
    let app = spawn_app_with(|a| a.keepalive = Duration::from_millis(200)).await;
    let stored = app.publish("global", "note", json!({}), None).await;

    let response = app.stream_response("channels=global", &[]).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");
    let mut stream = SseStream::new(response);

    assert_eq!(
        stream.next_message(DEADLINE).await,
        Some(SseMessage::Retry(2000)),
        "the first message announces the reconnection delay"
    );
    match stream.next_message(DEADLINE).await {
        Some(SseMessage::Event(event)) => assert_eq!(event.id_number(), stored["id"].as_i64()),
        other => panic!("expected the replayed event, got {other:?}"),
    }
    // Idle for ~1 s: about five keep-alives, nothing else.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1100);
    let mut keep_alives = 0;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match stream.next_message(left).await {
            None => break,
            Some(SseMessage::Comment(text)) => {
                assert_eq!(text, "keep-alive");
                keep_alives += 1;
            }
            Some(other) => panic!("expected only keep-alives, got {other:?}"),
        }
    }
    assert!(!stream.ended, "the stream stays open");
    assert!(
        (3..=7).contains(&keep_alives),
        "{keep_alives} keep-alives in 1.1 s at one per 200 ms"
    );
    // Still live after the keep-alives.
    let later = app.publish("global", "note", json!({}), None).await;
    assert_eq!(stream.next_event().await.id_number(), later["id"].as_i64());
}

async fn the_announced_retry_delay_follows_the_setting() {
    let app = spawn_app_with(|a| a.retry = Duration::from_millis(750)).await;
    let mut stream = app.stream("", &[]).await;
    assert_eq!(
        stream.next_message(DEADLINE).await,
        Some(SseMessage::Retry(750))
    );
}

fn assert_resync(event: &switchboard::client::sse::SseEvent, reason: &str, head: i64, oldest: i64) {
    assert_eq!(event.event, "resync", "{event:?}");
    assert_eq!(
        event.id_number(),
        Some(head),
        "a resync carries the head id"
    );
    assert_eq!(
        event.json().unwrap(),
        json!({ "reason": reason, "head_id": head, "oldest_id": oldest })
    );
}

async fn a_cursor_ahead_of_the_head_gets_a_resync_and_then_live_events() {
    let app = spawn_app().await;
    let stored = stored_ids(
        &app.publish_batch((1..=3).map(|n| note("global", n)).collect())
            .await,
    );
    let (oldest, head) = (stored[0], stored[2]);

    let mut header = app
        .stream("channels=global", &[("Last-Event-ID", "999999")])
        .await;
    let mut query = app
        .stream("channels=global&last_event_id=999999", &[])
        .await;
    assert_resync(&header.next_event().await, "cursor_ahead", head, oldest);
    assert_resync(&query.next_event().await, "cursor_ahead", head, oldest);
    header.assert_quiet(QUIET).await;

    let live = app.publish("global", "note", json!({}), None).await;
    assert_eq!(header.next_event().await.id_number(), live["id"].as_i64());
    assert_eq!(query.next_event().await.id_number(), live["id"].as_i64());
    header.assert_quiet(QUIET).await;
}

async fn a_pruned_cursor_gets_a_resync_and_a_cursor_still_held_resumes_exactly() {
    let app = spawn_app().await;
    let mut watching = app
        .stream("channels=global", &[("Last-Event-ID", "0")])
        .await;
    let old = stored_ids(
        &app.publish_batch((1..=5).map(|n| note("global", n)).collect())
            .await,
    );
    assert_eq!(ids(&watching.take_events(5).await), old);

    app.prune_with_cli("0s").await;
    assert!(
        app.all_events().await.is_empty(),
        "prune deleted everything"
    );
    let kept = stored_ids(
        &app.publish_batch((6..=8).map(|n| note("global", n)).collect())
            .await,
    );
    assert!(kept[0] > old[4], "ids are never reused after pruning");
    let head = kept[2];
    // A stream that was live through the prune is not disturbed.
    assert_eq!(ids(&watching.take_events(3).await), kept);

    // Events after the cursor were pruned: resync, then live from the head.
    let mut expired = app
        .stream("channels=global", &[("Last-Event-ID", &old[1].to_string())])
        .await;
    let mut expired_query = app
        .stream(&format!("channels=global&last_event_id={}", old[1]), &[])
        .await;
    assert_resync(&expired.next_event().await, "cursor_expired", head, kept[0]);
    assert_resync(
        &expired_query.next_event().await,
        "cursor_expired",
        head,
        kept[0],
    );
    expired.assert_quiet(QUIET).await;

    // The newest pruned id is still an exact cursor, as is one in the log.
    let mut at_watermark = app
        .stream("channels=global", &[("Last-Event-ID", &old[4].to_string())])
        .await;
    let mut in_log = app
        .stream(
            "channels=global",
            &[("Last-Event-ID", &kept[0].to_string())],
        )
        .await;
    assert_eq!(ids(&at_watermark.take_events(3).await), kept);
    assert_eq!(ids(&in_log.take_events(2).await), kept[1..].to_vec());

    let live = app.publish("global", "note", json!({"n": 9}), None).await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(expired.next_event().await.id_number(), Some(live));
    assert_eq!(expired_query.next_event().await.id_number(), Some(live));
    assert_eq!(at_watermark.next_event().await.id_number(), Some(live));
    assert_eq!(in_log.next_event().await.id_number(), Some(live));
    assert_eq!(watching.next_event().await.id_number(), Some(live));
    for stream in [&mut expired, &mut at_watermark, &mut in_log] {
        stream.assert_quiet(QUIET).await;
    }
}

async fn resume_works_across_restarts_and_ids_are_never_reused() {
    let app = spawn_app().await;
    let before = stored_ids(
        &app.publish_batch((1..=5).map(|n| note("global", n)).collect())
            .await,
    );
    let mut first = app
        .stream("channels=global", &[("Last-Event-ID", "0")])
        .await;
    assert_eq!(ids(&first.take_events(3).await), before[..3].to_vec());
    drop(first);
    let mut open_during_restart = app.stream("channels=global&replay=0", &[]).await;

    let app = app.restart().await;
    assert!(
        open_during_restart
            .next_event_within(DEADLINE)
            .await
            .is_none()
            && open_during_restart.ended,
        "a stream ends when its server stops"
    );
    assert_eq!(app.head_id().await, before[4]);
    let after = stored_ids(
        &app.publish_batch((6..=8).map(|n| note("global", n)).collect())
            .await,
    );
    assert!(after[0] > before[4], "ids keep increasing after a restart");

    let mut resumed = app
        .stream(
            "channels=global",
            &[("Last-Event-ID", &before[2].to_string())],
        )
        .await;
    let missing: Vec<i64> = before[3..].iter().chain(&after).copied().collect();
    assert_eq!(ids(&resumed.take_events(5).await), missing);
    resumed.assert_quiet(QUIET).await;
    drop(resumed);

    // Prune everything, restart: the head survives and ids still grow.
    app.prune_with_cli("0s").await;
    assert!(app.all_events().await.is_empty());
    let app = app.restart().await;
    assert_eq!(app.head_id().await, after[2]);
    let mut resumed = app
        .stream(
            "channels=global",
            &[("Last-Event-ID", &after[2].to_string())],
        )
        .await;
    let next = app.publish("global", "note", json!({}), None).await["id"]
        .as_i64()
        .unwrap();
    assert!(next > after[2], "id {next} reuses an id up to {}", after[2]);
    assert_eq!(ids(&resumed.take_events(1).await), vec![next]);
    resumed.assert_quiet(QUIET).await;
}

async fn a_session_joins_with_its_first_stream_and_leaves_with_its_last() {
    // Short keep-alives, so the server notices closed streams at once (see
    // `a_closed_stream_is_noticed_without_waiting_for_a_keep_alive`).
    let app = spawn_app_with(|a| a.keepalive = Duration::from_millis(100)).await;
    let mut watcher = app
        .stream("channels=presence", &[("X-Session-ID", "watcher")])
        .await;
    let identity = [("X-Session-ID", "s-1"), ("X-Agent-ID", "agent-7")];
    let first = app.stream("channels=global", &identity).await;

    let joined = watcher
        .next_event_within(DEADLINE)
        .await
        .expect("session_joined when the first stream opens");
    assert_eq!(joined.event, "session_joined");
    let event = joined.json().unwrap();
    assert_eq!(event["channel"], "presence");
    assert_eq!(event["type"], "session_joined");
    assert_eq!(event["session_id"], "s-1");
    assert_eq!(event["agent_id"], "agent-7");
    assert_eq!(
        event["payload"],
        json!({"session_id": "s-1", "agent_id": "agent-7", "connections": 1})
    );

    let second = app.stream("channels=global", &identity).await;
    watcher.assert_quiet(QUIET).await;
    drop(first);
    watcher.assert_quiet(Duration::from_millis(500)).await;
    drop(second);

    let left = watcher
        .next_event_within(DEADLINE)
        .await
        .expect("session_left when the last stream closes");
    assert_eq!(left.event, "session_left");
    let event = left.json().unwrap();
    assert_eq!(event["channel"], "presence");
    assert_eq!(event["session_id"], "s-1");
    assert_eq!(
        event["payload"],
        json!({"session_id": "s-1", "agent_id": "agent-7", "connections": 0})
    );
    watcher.assert_quiet(Duration::from_millis(500)).await;

    let presence_of_s1: Vec<Value> = app
        .all_events()
        .await
        .into_iter()
        .filter(|e| e["channel"] == "presence" && e["session_id"] == "s-1")
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(presence_of_s1, vec!["session_joined", "session_left"]);
}

async fn presence_uses_the_query_parameters_and_skips_the_sessions_own_streams() {
    let app = spawn_app_with(|a| a.keepalive = Duration::from_millis(100)).await;
    let mut watcher = app
        .stream("channels=presence", &[("X-Session-ID", "watcher")])
        .await;
    // A stream without a session is nobody's presence.
    let _anonymous = app.stream("channels=global", &[]).await;
    watcher.assert_quiet(QUIET).await;

    let mut own = app
        .stream(
            "channels=presence&session_id=q-1&agent_id=browser&replay=0",
            &[],
        )
        .await;
    let joined = watcher.next_event().await;
    assert_eq!(joined.event, "session_joined");
    assert_eq!(
        joined.json().unwrap()["payload"],
        json!({"session_id": "q-1", "agent_id": "browser", "connections": 1})
    );
    own.assert_quiet(QUIET).await;
    drop(own);
    let left = watcher.next_event().await;
    assert_eq!(left.event, "session_left");
    assert_eq!(left.json().unwrap()["session_id"], "q-1");
}

/// actix notices a vanished client only when a write to it fails (actix-web
/// #1313), so a closed stream is noticed at its next keep-alive at the
/// latest: the keep-alive period bounds how late `session_left` comes.
async fn a_closed_stream_is_noticed_within_a_keep_alive_period() {
    let keepalive = Duration::from_millis(300);
    let app = spawn_app_with(|a| a.keepalive = keepalive).await;
    let mut watcher = app
        .stream("channels=presence", &[("X-Session-ID", "watcher")])
        .await;
    let stream = app
        .stream("channels=global", &[("X-Session-ID", "short-lived")])
        .await;
    let joined = watcher.next_event().await;
    assert_eq!(joined.event, "session_joined");
    let closed_at = std::time::Instant::now();
    drop(stream);
    let left = watcher.next_event().await;
    let waited = closed_at.elapsed();
    assert_eq!(left.event, "session_left");
    assert_eq!(left.json().unwrap()["payload"]["session_id"], "short-lived");
    assert!(
        waited <= keepalive * 3,
        "session_left came {waited:?} after the close"
    );
    let stats: serde_json::Value = app
        .get("/api/stats")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["connected_clients"], 1, "only the watcher is left");
}

async fn a_stalled_stream_catches_up_from_the_log_without_slowing_anyone() {
    const SINGLES: usize = 200;
    const TOTAL: usize = 1000 + 800 + SINGLES;
    let app = spawn_app_with(|a| a.stream_queue = 4).await;
    let pad = "x".repeat(400);

    // Opened and then not read until every event is published.
    let mut stalled = app.stream("channels=load", &[("Last-Event-ID", "0")]).await;
    let mut steady = app.stream("channels=load", &[("Last-Event-ID", "0")]).await;
    let steady_reader = tokio::spawn(async move {
        let events = steady.take_events(TOTAL).await;
        steady.assert_quiet(QUIET).await;
        ids(&events)
    });

    let publishing = async {
        let publisher = app.publisher();
        let pad_for_singles = pad.clone();
        let singles = tokio::spawn(async move {
            for n in 0..SINGLES {
                publisher
                    .publish(
                        "load",
                        "single",
                        json!({ "n": n, "pad": pad_for_singles }),
                        None,
                    )
                    .await;
            }
        });
        for size in [1000, 800] {
            let batch = (0..size)
                .map(
                    |n| json!({"channel": "load", "type": "batched", "data": {"n": n, "pad": pad}}),
                )
                .collect();
            app.publish_batch(batch).await;
        }
        singles.await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(60), publishing)
        .await
        .expect("publishers are never held up by a stalled stream");

    let expected = app.ids_on("load").await;
    assert_eq!(expected.len(), TOTAL);
    let stats: Value = app
        .get("/api/stats")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        stats["lagging_streams"].as_u64() >= Some(1),
        "the tiny queue overflowed, so the catch-up path is what is tested: {stats}"
    );
    let got = stalled.take_events(TOTAL).await;
    assert_eq!(
        ids(&got),
        expected,
        "the stalled stream lost or repeated events"
    );
    stalled.assert_quiet(QUIET).await;
    assert_eq!(steady_reader.await.unwrap(), expected);
}

crate::on_both_backends!(
    a_subscriber_that_keeps_reconnecting_gets_every_event_exactly_once_in_order,
    events_published_while_streams_are_connecting_are_delivered_exactly_once,
    the_originating_session_never_receives_its_own_events_unless_it_asks_for_them,
    a_new_stream_without_a_cursor_replays_the_last_fifty_matching_events,
    the_default_replay_count_follows_the_setting,
    events_older_than_the_replay_window_are_not_replayed,
    channel_patterns_and_resource_ids_filter_live_replayed_and_resumed_events,
    a_stream_starts_with_retry_sends_keep_alives_when_idle_and_is_never_cached,
    the_announced_retry_delay_follows_the_setting,
    a_cursor_ahead_of_the_head_gets_a_resync_and_then_live_events,
    a_pruned_cursor_gets_a_resync_and_a_cursor_still_held_resumes_exactly,
    resume_works_across_restarts_and_ids_are_never_reused,
    a_session_joins_with_its_first_stream_and_leaves_with_its_last,
    presence_uses_the_query_parameters_and_skips_the_sessions_own_streams,
    a_closed_stream_is_noticed_within_a_keep_alive_period,
    a_stalled_stream_catches_up_from_the_log_without_slowing_anyone,
);
