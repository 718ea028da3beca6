//! The Mercure hub (draft-dunglas-mercure-07) over real HTTP: every MUST of
//! subscribing, publishing, authorization, reconciliation and active
//! subscriptions, and updates as events of the log.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, spawn_node_with, PgDatabase, SseStream, TestApp, DEADLINE};

pub const KEY: &str = "!ChangeThisMercureHubJWTSecretKey!";
const HUB: &str = "/.well-known/mercure";

pub fn jwt(claims: Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(KEY.as_bytes()),
    )
    .unwrap()
}

pub fn publisher() -> String {
    jwt(json!({ "mercure": { "publish": ["*"] } }))
}

fn subscriber(selectors: &[&str]) -> String {
    jwt(json!({ "mercure": { "subscribe": selectors } }))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn mercure_args(args: &mut switchboard::config::ServeArgs) {
    args.mercure.mercure_publisher_jwt_key = Some(KEY.into());
    args.mercure.mercure_subscriptions = true;
}

async fn hub_app() -> TestApp {
    spawn_app_with(mercure_args).await
}

/// Publishes a form; answers (status, body).
async fn post(app: &TestApp, token: Option<&str>, form: &[(&str, &str)]) -> (u16, String) {
    let mut request = app.client.post(app.url(HUB)).form(form);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn publish(app: &TestApp, form: &[(&str, &str)]) -> String {
    let (status, body) = post(app, Some(&publisher()), form).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// `GET /.well-known/mercure` with the query pairs and headers given.
async fn open(
    app: &TestApp,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = app.client.get(app.url(HUB)).query(query);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

async fn subscribe(app: &TestApp, query: &[(&str, &str)], headers: &[(&str, &str)]) -> SseStream {
    let response = open(app, query, headers).await;
    assert_eq!(response.status(), 200, "{:?}", response.headers());
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    SseStream::new(response)
}

async fn error(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status().as_u16(), status);
    let body: Value = response.json().await.unwrap();
    body["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn selectors_match_exact_star_templates_and_alternates_and_nothing_else() {
    let app = hub_app().await;
    let token = subscriber(&[]);
    let auth = format!("Bearer {token}");
    let headers = [("Authorization", auth.as_str())];
    let mut exact = subscribe(&app, &[("topic", "https://example.com/books/1")], &headers).await;
    let mut star = subscribe(&app, &[("topic", "*")], &headers).await;
    let mut template = subscribe(
        &app,
        &[("topic", "https://example.com/books/{id}")],
        &headers,
    )
    .await;
    let mut alternate =
        subscribe(&app, &[("topic", "https://example.com/alt/{x}")], &headers).await;
    let mut nothing = subscribe(
        &app,
        &[("topic", "https://example.com/authors/{id}")],
        &headers,
    )
    .await;

    let one = publish(
        &app,
        &[
            ("topic", "https://example.com/books/1"),
            ("topic", "https://example.com/alt/b1"),
            ("data", "book one"),
        ],
    )
    .await;
    let two = publish(
        &app,
        &[
            ("topic", "https://example.com/books/2"),
            ("data", "book two"),
        ],
    )
    .await;
    let deep = publish(
        &app,
        &[
            ("topic", "https://example.com/books/2/chapters/1"),
            ("data", "a chapter"),
        ],
    )
    .await;

    let ids = |events: Vec<switchboard::client::sse::SseEvent>| {
        events
            .into_iter()
            .map(|e| (e.id.unwrap(), e.data))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(exact.take_events(1).await),
        [(one.clone(), "book one".to_owned())]
    );
    exact.assert_quiet(Duration::from_millis(300)).await;
    assert_eq!(
        ids(star.take_events(3).await),
        [
            (one.clone(), "book one".into()),
            (two.clone(), "book two".into()),
            (deep, "a chapter".into())
        ]
    );
    assert_eq!(
        ids(template.take_events(2).await),
        [(one.clone(), "book one".into()), (two, "book two".into())]
    );
    template.assert_quiet(Duration::from_millis(300)).await;
    assert_eq!(
        ids(alternate.take_events(1).await),
        [(one, "book one".into())],
        "an alternate topic matches"
    );
    nothing.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn every_sse_field_and_multi_line_data_and_the_headers_at_once() {
    let app = hub_app().await;
    let token = format!("Bearer {}", subscriber(&[]));
    let response = open(&app, &[("topic", "t")], &[("Authorization", &token)]).await;
    // Headers come before any update: the response is here already.
    assert_eq!(response.status(), 200);
    assert!(response.headers()["link"]
        .to_str()
        .unwrap()
        .contains("/.well-known/mercure>; rel=\"mercure\""));
    let mut stream = SseStream::new(response);
    let id = publish(
        &app,
        &[
            ("topic", "t"),
            ("data", "first line\nsecond line\r\nthird"),
            ("id", "urn:isbn:123"),
            ("type", "book.updated"),
            ("retry", "2500"),
        ],
    )
    .await;
    assert_eq!(id, "urn:isbn:123", "the publisher's id is honoured");
    let mut saw_retry = false;
    let event = loop {
        match stream.next_message(DEADLINE).await.expect("a message") {
            switchboard::client::sse::SseMessage::Retry(2500) => saw_retry = true,
            switchboard::client::sse::SseMessage::Event(event) => break event,
            _ => {}
        }
    };
    assert!(saw_retry, "retry is sent");
    assert_eq!(event.id.as_deref(), Some("urn:isbn:123"));
    assert_eq!(event.event, "book.updated");
    assert_eq!(event.data, "first line\nsecond line\nthird");

    // A generated id is an IRI; `#…` ids are the hub's, refused.
    let made = publish(&app, &[("topic", "t"), ("data", "x")]).await;
    assert!(made.starts_with("urn:uuid:"), "{made}");
    let (status, body) = post(&app, Some(&publisher()), &[("topic", "t"), ("id", "#1")]).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = post(&app, Some(&publisher()), &[("data", "no topic")]).await;
    assert_eq!(status, 400);
    let (status, _) = post(
        &app,
        Some(&publisher()),
        &[("topic", "t"), ("id", "earliest")],
    )
    .await;
    assert_eq!(status, 400, "earliest is reserved");
    let (status, body) = post(
        &app,
        Some(&publisher()),
        &[("topic", "t"), ("id", "urn:isbn:123")],
    )
    .await;
    assert_eq!(status, 409, "an id used before: {body}");
    // Updates are events of the log, on the `mercure` channel.
    let log: Value = app
        .get("/api/events?channels=mercure")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored = &log["events"][0];
    assert_eq!(stored["type"], "mercure_update");
    assert_eq!(stored["payload"]["id"], "urn:isbn:123");
    assert_eq!(stored["payload"]["topics"], json!(["t"]));
}

#[tokio::test]
async fn private_updates_reach_only_subscribers_allowed_one_of_their_topics() {
    let app = hub_app().await;
    let allowed = format!(
        "Bearer {}",
        subscriber(&["https://example.com/users/foo/{?topic}"])
    );
    let other = format!(
        "Bearer {}",
        subscriber(&["https://example.com/users/bar/{?topic}"])
    );
    let none = format!("Bearer {}", jwt(json!({})));
    let topic = [("topic", "https://example.com/books/{id}")];
    let mut yes = subscribe(&app, &topic, &[("Authorization", &allowed)]).await;
    let mut no = subscribe(&app, &topic, &[("Authorization", &other)]).await;
    let mut anonymous_like = subscribe(&app, &topic, &[("Authorization", &none)]).await;
    let secret = publish(
        &app,
        &[
            ("topic", "https://example.com/books/1"),
            (
                "topic",
                "https://example.com/users/foo/?topic=https%3A%2F%2Fexample.com%2Fbooks%2F1",
            ),
            ("data", "secret"),
            ("private", "on"),
        ],
    )
    .await;
    let public = publish(
        &app,
        &[("topic", "https://example.com/books/2"), ("data", "public")],
    )
    .await;
    assert_eq!(yes.next_event().await.id.as_deref(), Some(secret.as_str()));
    assert_eq!(yes.next_event().await.id.as_deref(), Some(public.as_str()));
    for stream in [&mut no, &mut anonymous_like] {
        assert_eq!(
            stream.next_event().await.id.as_deref(),
            Some(public.as_str()),
            "the private one is skipped"
        );
    }
    // On the native side private updates are on their own channel.
    let log: Value = app
        .get("/api/events?channels=mercure:private")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secrets: Vec<&Value> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["payload"]["data"] == "secret")
        .collect();
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0]["payload"]["private"], true);
    // Native clients cannot write to the Mercure channels.
    let r = app
        .post("/api/channels/mercure/events")
        .json(&json!({ "type": "x", "data": {} }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn unauthorized_and_forbidden_say_why_and_dispatch_nothing() {
    let app = hub_app().await;
    let topic = [("topic", "t")];
    let cases = [
        (None, "a subscriber JWT is required"),
        (Some("not-a-jwt".to_owned()), "is malformed"),
        (
            Some(
                encode(
                    &Header::default(),
                    &json!({"mercure": {"subscribe": ["*"]}}),
                    &EncodingKey::from_secret(b"another key"),
                )
                .unwrap(),
            ),
            "bad signature",
        ),
        (
            Some(jwt(
                json!({ "mercure": { "subscribe": ["*"] }, "exp": now() - 30 }),
            )),
            "has expired",
        ),
    ];
    for (token, why) in cases {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let response = open(&app, &topic, &headers).await;
        assert!(response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        let message = error(response, 401).await;
        assert!(message.contains(why), "{message}");
        assert!(!message.contains(KEY), "the key never shows");
    }
    let count = || async {
        let log: Value = app
            .get("/api/events?channels=mercure*")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        log["events"].as_array().unwrap().len()
    };
    let (status, body) = post(&app, None, &[("topic", "t"), ("data", "x")]).await;
    assert_eq!(status, 401, "{body}");
    let no_claim = jwt(json!({ "mercure": { "subscribe": ["*"] } }));
    let (status, _) = post(&app, Some(&no_claim), &[("topic", "t")]).await;
    assert_eq!(status, 403);
    let partial = jwt(json!({ "mercure": { "publish": ["https://example.com/books/{id}"] } }));
    let (status, body) = post(
        &app,
        Some(&partial),
        &[
            ("topic", "https://example.com/books/1"),
            ("topic", "https://example.com/secret"),
        ],
    )
    .await;
    assert_eq!(status, 403, "one topic not covered: {body}");
    assert!(body.contains("https://example.com/secret"));
    assert_eq!(count().await, 0, "nothing was dispatched");
    let (status, _) = post(
        &app,
        Some(&partial),
        &[("topic", "https://example.com/books/1")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(count().await, 1);
    let r = app
        .client
        .post(app.url(HUB))
        .bearer_auth(publisher())
        .body("topic=t")
        .header("Content-Type", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
}

#[tokio::test]
async fn the_jwt_is_taken_from_header_then_query_then_cookie() {
    let app = hub_app().await;
    let good = subscriber(&["*"]);
    let topic = ("topic", "t");
    // A fractional exp, as Symfony's cookies carry, is a valid time.
    let symfony = jwt(json!({ "mercure": { "subscribe": ["*"] }, "exp": now() as f64 + 60.5 }));
    let r = open(
        &app,
        &[topic],
        &[("Authorization", &format!("Bearer {symfony}"))],
    )
    .await;
    assert_eq!(r.status(), 200);
    // Query parameter alone, cookie alone.
    let r = open(&app, &[topic, ("authorization", &good)], &[]).await;
    assert_eq!(r.status(), 200);
    let cookie = format!("mercureAuthorization={good}");
    let r = open(&app, &[topic], &[("Cookie", &cookie)]).await;
    assert_eq!(r.status(), 200);
    // The header wins over the query and the cookie; the query over the cookie.
    let bad = format!("Bearer {}", "broken.token.here");
    let r = open(
        &app,
        &[topic, ("authorization", &good)],
        &[("Authorization", &bad), ("Cookie", &cookie)],
    )
    .await;
    let message = error(r, 401).await;
    assert!(message.contains("Authorization header"), "{message}");
    let r = open(
        &app,
        &[topic, ("authorization", "broken")],
        &[("Cookie", &cookie)],
    )
    .await;
    let message = error(r, 401).await;
    assert!(message.contains("query parameter"), "{message}");

    // A publish by cookie must come from this origin.
    let publish_cookie = format!("mercureAuthorization={}", publisher());
    let form = [("topic", "t"), ("data", "by cookie")];
    let r = app
        .client
        .post(app.url(HUB))
        .form(&form)
        .header("Cookie", &publish_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "no Origin: refused");
    let r = app
        .client
        .post(app.url(HUB))
        .form(&form)
        .header("Cookie", &publish_cookie)
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = app
        .client
        .post(app.url(HUB))
        .form(&form)
        .header("Cookie", &publish_cookie)
        .header("Origin", app.url(""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn reconciliation_header_wins_earliest_unknown_ids_and_the_response_header() {
    let app = hub_app().await;
    let auth = format!("Bearer {}", subscriber(&[]));
    let a = publish(&app, &[("topic", "t"), ("data", "a")]).await;
    let b = publish(&app, &[("topic", "t"), ("data", "b")]).await;
    let c = publish(&app, &[("topic", "t"), ("data", "c")]).await;
    let ids = |events: Vec<switchboard::client::sse::SseEvent>| {
        events
            .into_iter()
            .map(|e| e.id.unwrap())
            .collect::<Vec<_>>()
    };

    let r = open(
        &app,
        &[("topic", "t"), ("lastEventID", &a)],
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(r.headers()["last-event-id"], a.as_str());
    let mut s = SseStream::new(r);
    assert_eq!(ids(s.take_events(2).await), [b.clone(), c.clone()]);

    // The header wins over the query parameter.
    let r = open(
        &app,
        &[("topic", "t"), ("lastEventID", &a)],
        &[("Authorization", &auth), ("Last-Event-ID", &b)],
    )
    .await;
    assert_eq!(r.headers()["last-event-id"], b.as_str());
    let mut s = SseStream::new(r);
    assert_eq!(ids(s.take_events(1).await), std::slice::from_ref(&c));
    s.assert_quiet(Duration::from_millis(300)).await;

    for asked in ["earliest", "urn:never:published"] {
        let r = open(
            &app,
            &[("topic", "t"), ("lastEventID", asked)],
            &[("Authorization", &auth)],
        )
        .await;
        assert_eq!(
            r.headers()["last-event-id"],
            "earliest",
            "{asked}: says it starts from the beginning"
        );
        let mut s = SseStream::new(r);
        assert_eq!(
            ids(s.take_events(3).await),
            [a.clone(), b.clone(), c.clone()],
            "{asked}"
        );
    }
    // Without a cursor: live only, no header.
    let r = open(&app, &[("topic", "t")], &[("Authorization", &auth)]).await;
    assert!(r.headers().get("last-event-id").is_none());
    let mut s = SseStream::new(r);
    s.assert_quiet(Duration::from_millis(300)).await;

    // Across a restart, by the publisher's id.
    let app = app.restart_with(mercure_args).await;
    let d = publish(&app, &[("topic", "t"), ("data", "d")]).await;
    let r = open(
        &app,
        &[("topic", "t")],
        &[("Authorization", &auth), ("Last-Event-ID", &b)],
    )
    .await;
    let mut s = SseStream::new(r);
    assert_eq!(ids(s.take_events(2).await), [c, d]);
}

#[tokio::test]
async fn a_stream_ends_when_its_token_expires() {
    let app = hub_app().await;
    let token = jwt(json!({ "mercure": { "subscribe": ["*"] }, "exp": now() + 2 }));
    let started = Instant::now();
    let mut s = subscribe(
        &app,
        &[("topic", "t")],
        &[("Authorization", &format!("Bearer {token}"))],
    )
    .await;
    let id = publish(&app, &[("topic", "t"), ("data", "before")]).await;
    assert_eq!(s.next_event().await.id.unwrap(), id);
    while s.next_message(Duration::from_secs(5)).await.is_some() {}
    assert!(s.ended, "the hub closed the stream");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn subscription_events_and_the_subscriptions_api() {
    // A closed connection is noticed at the next write: keep-alives are short.
    let app = spawn_app_with(|a| {
        mercure_args(a);
        a.keepalive = Duration::from_millis(300);
    })
    .await;
    let watcher = format!(
        "Bearer {}",
        subscriber(&["/.well-known/mercure/subscriptions{/topic}{/subscriber}"])
    );
    let mut events = subscribe(
        &app,
        &[(
            "topic",
            "/.well-known/mercure/subscriptions{/topic}{/subscriber}",
        )],
        &[("Authorization", &watcher)],
    )
    .await;
    // The watcher's own subscription is announced first.
    let own: Value = serde_json::from_str(&events.next_event().await.data).unwrap();
    assert_eq!(own["type"], "Subscription");

    let payload_token = jwt(
        json!({ "mercure": { "subscribe": ["https://example.com/{x}"], "payload": { "user": "alice" } } }),
    );
    let response = open(
        &app,
        &[("topic", "https://example.com/{x}")],
        &[("Authorization", &format!("Bearer {payload_token}"))],
    )
    .await;
    let joined: Value = serde_json::from_str(&events.next_event().await.data).unwrap();
    assert_eq!(joined["@context"], "https://mercure.rocks/");
    assert_eq!(joined["type"], "Subscription");
    assert_eq!(joined["topic"], "https://example.com/{x}");
    assert_eq!(joined["active"], true);
    assert_eq!(joined["payload"], json!({ "user": "alice" }));
    let subscriber_id = joined["subscriber"].as_str().unwrap().to_owned();
    let id = joined["id"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with(
            "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2F%7Bx%7D/urn%3Auuid%3A"
        ),
        "{id}"
    );

    let api = |path: String| {
        let app = &app;
        let watcher = watcher.clone();
        async move {
            app.client
                .get(app.url(&path))
                .header("Authorization", watcher)
                .send()
                .await
                .unwrap()
        }
    };
    let r = api("/.well-known/mercure/subscriptions".into()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/ld+json");
    let all: Value = r.json().await.unwrap();
    assert_eq!(all["type"], "Subscriptions");
    assert_eq!(all["id"], "/.well-known/mercure/subscriptions");
    assert!(all["lastEventID"]
        .as_str()
        .unwrap()
        .starts_with("urn:uuid:"));
    assert_eq!(all["subscriptions"].as_array().unwrap().len(), 2);
    let one: Value = api(id.clone()).await.json().await.unwrap();
    assert_eq!(one["subscriber"], subscriber_id.as_str());
    assert_eq!(one["payload"]["user"], "alice");
    assert!(one["lastEventID"].is_string());
    let by_topic: Value =
        api("/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2F%7Bx%7D".into())
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(by_topic["subscriptions"].as_array().unwrap().len(), 1);
    let r = api("/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2F%7Bx%7D/urn%3Auuid%3Anobody".into()).await;
    assert_eq!(r.status(), 404);
    // A token whose mercure.subscribe does not cover the API: 403.
    let r = app
        .client
        .get(app.url("/.well-known/mercure/subscriptions"))
        .bearer_auth(subscriber(&["https://example.com/{x}"]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Closing the subscription announces it inactive.
    drop(response);
    let left: Value = serde_json::from_str(&events.next_event().await.data).unwrap();
    assert_eq!(left["subscriber"], subscriber_id.as_str());
    assert_eq!(left["active"], false);
    let all: Value = api("/.well-known/mercure/subscriptions".into())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["subscriptions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn anonymous_subscribers_only_when_allowed_and_the_hub_is_off_without_a_key() {
    let off = crate::helpers::spawn_app().await;
    let r = off.get(HUB).query(&[("topic", "t")]).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let app = spawn_app_with(|a| {
        mercure_args(a);
        a.mercure.mercure_anonymous = true;
    })
    .await;
    let mut s = subscribe(&app, &[("topic", "t")], &[]).await;
    publish(
        &app,
        &[("topic", "t"), ("data", "secret"), ("private", "on")],
    )
    .await;
    let public = publish(&app, &[("topic", "t"), ("data", "public")]).await;
    assert_eq!(
        s.next_event().await.id.unwrap(),
        public,
        "anonymous: public updates only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set SWITCHBOARD_TEST_POSTGRES=postgres://… and run with --include-ignored"]
async fn two_nodes_on_postgresql_share_updates_and_resume_on_either() {
    let database = Arc::new(PgDatabase::create().await);
    let one = spawn_node_with(&database, mercure_args).await;
    let two = spawn_node_with(&database, mercure_args).await;
    let auth = format!("Bearer {}", subscriber(&[]));
    let mut on_one = subscribe(&one, &[("topic", "t")], &[("Authorization", &auth)]).await;
    let a = publish(&two, &[("topic", "t"), ("data", "from two")]).await;
    let event = on_one.next_event().await;
    assert_eq!(
        (event.id.unwrap(), event.data),
        (a.clone(), "from two".to_owned())
    );
    let b = publish(&one, &[("topic", "t"), ("data", "from one")]).await;
    assert_eq!(on_one.next_event().await.id.unwrap(), b);
    // Resume on the other node from the first update.
    let mut on_two = subscribe(
        &two,
        &[("topic", "t")],
        &[("Authorization", &auth), ("Last-Event-ID", &a)],
    )
    .await;
    assert_eq!(on_two.next_event().await.id.unwrap(), b);
}

#[tokio::test]
async fn rs256_tokens_verified_with_a_pem_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("private.pem");
    let public = dir.path().join("public.pem");
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl is installed");
        assert!(status.success(), "openssl {args:?}");
    };
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        private.to_str().unwrap(),
    ]);
    run(&[
        "pkey",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    let key = EncodingKey::from_rsa_pem(&std::fs::read(&private).unwrap()).unwrap();
    let sign = |claims: Value| {
        encode(&Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key).unwrap()
    };
    let public_path = public.to_str().unwrap().to_owned();
    let app = spawn_app_with(|a| {
        a.mercure.mercure_publisher_jwt_key = Some(public_path);
        a.mercure.mercure_jwt_algorithm = switchboard::config::MercureAlgorithm::Rs256;
    })
    .await;
    let auth = format!(
        "Bearer {}",
        sign(json!({ "mercure": { "subscribe": ["*"] } }))
    );
    let mut s = subscribe(&app, &[("topic", "t")], &[("Authorization", &auth)]).await;
    let token = sign(json!({ "mercure": { "publish": ["t"] } }));
    let (status, id) = post(
        &app,
        Some(&token),
        &[("topic", "t"), ("data", "signed with RSA")],
    )
    .await;
    assert_eq!(status, 200, "{id}");
    assert_eq!(s.next_event().await.id.unwrap(), id);
    // An HS256 token (the hub's algorithm is RS256) is refused, saying why.
    let (status, body) = post(&app, Some(&publisher()), &[("topic", "t")]).await;
    assert_eq!(status, 401);
    assert!(body.contains("another algorithm"), "{body}");
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn a_browser_eventsource_receives_updates_published_with_fetch_across_a_restart() {
    crate::browser::require_browser();
    let anonymous = |a: &mut switchboard::config::ServeArgs| {
        mercure_args(a);
        a.mercure.mercure_anonymous = true;
    };
    let app = spawn_app_with(anonymous).await;
    let port = app.port;
    let driver = crate::browser::Driver::start().await;
    let profiles = tempfile::tempdir().unwrap();
    let reader = driver.page(&profiles.path().join("reader")).await;
    let writer = driver.page(&profiles.path().join("writer")).await;
    for page in [&reader, &writer] {
        page.open(&app.url("/healthz")).await;
    }
    reader
        .run(
            "window.got = [];
             const url = new URL('/.well-known/mercure', location.origin);
             url.searchParams.append('topic', 'https://example.com/books/{id}');
             window.source = new EventSource(url);
             source.onmessage = (e) => got.push({ id: e.lastEventId, data: e.data });
             await new Promise((r) => { source.onopen = r; });
             return true;",
        )
        .await;
    let publish_script = |topic: &str, data: &str, private: bool| {
        format!(
            "const body = new URLSearchParams([['topic', {topic:?}], ['data', {data:?}]]);
             if ({private}) body.append('private', 'on');
             const r = await fetch('/.well-known/mercure', {{ method: 'POST', body,
               headers: {{ Authorization: 'Bearer {token}' }} }});
             return {{ status: r.status, id: await r.text() }};",
            token = publisher()
        )
    };
    let first = writer
        .run(&publish_script(
            "https://example.com/books/1",
            "{\"title\": \"Dune\"}\nsecond line",
            false,
        ))
        .await;
    assert_eq!(first["status"], 200);
    let hidden = writer
        .run(&publish_script(
            "https://example.com/books/2",
            "private",
            true,
        ))
        .await;
    assert_eq!(hidden["status"], 200);
    let other = writer
        .run(&publish_script(
            "https://example.com/authors/1",
            "no match",
            false,
        ))
        .await;
    assert_eq!(other["status"], 200);
    reader
        .wait_for("the first update", "return window.got.length >= 1")
        .await;
    assert_eq!(
        reader.eval("return window.got").await,
        json!([{ "id": first["id"], "data": "{\"title\": \"Dune\"}\nsecond line" }])
    );

    // The server restarts; updates published before the page reconnects
    // reach it through Last-Event-ID.
    let app = app
        .restart_with(|a| {
            anonymous(a);
            a.bind = format!("127.0.0.1:{port}");
        })
        .await;
    let mut ids = vec![first["id"].clone()];
    for n in 0..2 {
        let r = app
            .client
            .post(app.url(HUB))
            .bearer_auth(publisher())
            .form(&[
                ("topic", format!("https://example.com/books/{n}")),
                ("data", format!("after {n}")),
            ])
            .send()
            .await
            .unwrap();
        ids.push(json!(r.text().await.unwrap()));
    }
    reader
        .wait_for(
            "the updates after the restart",
            "return window.got.length >= 3",
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got: Vec<Value> = serde_json::from_value(reader.eval("return window.got").await).unwrap();
    let got_ids: Vec<Value> = got.iter().map(|g| g["id"].clone()).collect();
    assert_eq!(
        got_ids, ids,
        "each once, in order; never the private or the other topic"
    );
    reader.close().await;
    writer.close().await;
}
