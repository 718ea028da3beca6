//! How connections are served, seen from a raw socket: a connection whose
//! first request opens a stream gets the lean loop (`connection: close`,
//! chunked for HTTP/1.1, close-delimited for HTTP/1.0, ended as soon as the
//! client leaves); every other connection keeps actix-http's keep-alive.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard::client::sse::{SseEvent, SseMessage, SseParser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{assert_leaks_nothing, spawn_app, spawn_app_with, TestApp, DEADLINE};

/// A raw client connection and the bytes read from it but not yet consumed.
struct Raw {
    socket: TcpStream,
    buf: Vec<u8>,
}

/// A response's status line and headers (names lower-cased).
#[derive(Debug)]
struct Head {
    status_line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn status(&self) -> u16 {
        self.status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {:?}", self.status_line))
    }

    /// The value of the one header named `name`.
    fn get(&self, name: &str) -> Option<&str> {
        let mut values = self.headers.iter().filter(|(n, _)| n == name);
        let value = values.next().map(|(_, v)| v.as_str());
        assert!(values.next().is_none(), "{name} appears twice: {self:?}");
        value
    }

    fn content_length(&self) -> usize {
        self.get("content-length")
            .unwrap_or_else(|| panic!("a content-length: {self:?}"))
            .parse()
            .expect("content-length is a number")
    }
}

impl Raw {
    async fn open(app: &TestApp) -> Raw {
        let socket = TcpStream::connect(("127.0.0.1", app.port))
            .await
            .expect("connect");
        Raw {
            socket,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.socket.write_all(bytes).await.expect("request sent");
    }

    /// Reads more bytes into the buffer; 0 at end of file. Fails the test if
    /// nothing comes within `within`.
    async fn fill(&mut self, within: Duration) -> usize {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(within, self.socket.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("nothing read within {within:?}"))
            .expect("read");
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// The next response head.
    async fn head(&mut self) -> Head {
        let end = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at;
            }
            let n = self.fill(DEADLINE).await;
            assert!(
                n > 0,
                "the connection closed before a whole head: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).expect("an ASCII head");
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap().to_owned();
        let headers = lines
            .map(|line| {
                let (name, value) = line
                    .split_once(':')
                    .unwrap_or_else(|| panic!("a header line: {line:?}"));
                (name.trim().to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        Head {
            status_line,
            headers,
        }
    }

    /// Exactly `n` body bytes.
    async fn body(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            let read = self.fill(DEADLINE).await;
            assert!(read > 0, "the connection closed inside a body");
        }
        self.buf.drain(..n).collect()
    }

    /// Everything up to the server's close, which must come within `within`.
    async fn read_to_close(&mut self, within: Duration) -> Vec<u8> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.fill(left).await == 0 {
                return std::mem::take(&mut self.buf);
            }
        }
    }

    /// Reads `framing`d body bytes until an SSE event arrives; fails the test
    /// if none does before the deadline.
    async fn next_event(&mut self, framing: &mut Framing) -> SseEvent {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let raw = std::mem::take(&mut self.buf);
            if let Some(event) = framing.feed(&raw) {
                return event;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let n = self.fill(left).await;
            assert!(n > 0, "the stream ended before an event");
        }
    }
}

/// How a stream's body is framed on the wire, decoded as it arrives.
enum Framing {
    /// HTTP/1.1 chunked: `<hex size>\r\n<data>\r\n`, …, `0\r\n\r\n`.
    Chunked {
        raw: Vec<u8>,
        parser: SseParser,
        events: Vec<SseEvent>,
    },
    /// Raw SSE text up to the close; every byte kept to check its lines.
    Plain {
        text: Vec<u8>,
        parser: SseParser,
        events: Vec<SseEvent>,
    },
}

impl Framing {
    fn chunked() -> Self {
        Framing::Chunked {
            raw: Vec::new(),
            parser: SseParser::new(),
            events: Vec::new(),
        }
    }

    fn plain() -> Self {
        Framing::Plain {
            text: Vec::new(),
            parser: SseParser::new(),
            events: Vec::new(),
        }
    }

    /// Takes wire bytes; returns the first event not yet returned.
    fn feed(&mut self, bytes: &[u8]) -> Option<SseEvent> {
        let (parser, events, decoded) = match self {
            Framing::Chunked {
                raw,
                parser,
                events,
            } => {
                raw.extend_from_slice(bytes);
                (parser, events, decode_chunks(raw))
            }
            Framing::Plain {
                text,
                parser,
                events,
            } => {
                text.extend_from_slice(bytes);
                (parser, events, bytes.to_vec())
            }
        };
        let mut messages = Vec::new();
        parser.feed(&decoded, &mut messages);
        events.extend(messages.into_iter().filter_map(|m| match m {
            SseMessage::Event(event) => Some(event),
            _ => None,
        }));
        if events.is_empty() {
            None
        } else {
            Some(events.remove(0))
        }
    }
}

/// Takes every whole chunk off the front of `raw` and returns their data;
/// a partial chunk stays. Fails the test on anything but chunked framing.
fn decode_chunks(raw: &mut Vec<u8>) -> Vec<u8> {
    let mut data = Vec::new();
    loop {
        // A size line is hex digits (the server sends no chunk extension):
        // anything else fails now, whole line or not.
        let line_end = find(raw, b"\r\n");
        let line = &raw[..line_end.unwrap_or(raw.len())];
        assert!(
            line.len() <= 16 && line.iter().all(u8::is_ascii_hexdigit),
            "not a chunk size line: {:?}",
            String::from_utf8_lossy(raw)
        );
        let Some(line_end) = line_end else {
            return data;
        };
        let line = std::str::from_utf8(line).expect("ASCII hex");
        let size = usize::from_str_radix(line, 16).expect("a hex chunk size");
        assert!(size > 0, "the stream's body ended (last chunk)");
        let start = line_end + 2;
        if raw.len() < start + size + 2 {
            return data;
        }
        assert_eq!(
            &raw[start + size..start + size + 2],
            b"\r\n",
            "a chunk's data ends with CRLF"
        );
        data.extend_from_slice(&raw[start..start + size]);
        raw.drain(..start + size + 2);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The head of a stream's answer, with what every stream answer carries.
fn assert_stream_head(head: &Head) {
    assert!(
        head.status_line.starts_with("HTTP/1.1 200"),
        "status line: {head:?}"
    );
    assert_eq!(
        head.get("content-type"),
        Some("text/event-stream"),
        "{head:?}"
    );
    assert_eq!(head.get("connection"), Some("close"), "{head:?}");
    assert_eq!(head.get("content-length"), None, "{head:?}");
    let date = head
        .get("date")
        .unwrap_or_else(|| panic!("a date header: {head:?}"));
    // An IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
    assert!(
        date.len() == 29 && date.ends_with(" GMT") && date.as_bytes()[3] == b',',
        "date: {date:?}"
    );
}

/// Publishes a `note` with `data` on `channel` (as another session) and
/// asserts that it arrives on `raw` as one SSE event, read with `framing`.
/// Returns its id.
async fn publish_and_read(
    app: &TestApp,
    raw: &mut Raw,
    framing: &mut Framing,
    channel: &str,
    data: Value,
) -> i64 {
    let published = app
        .publish(channel, "note", data.clone(), Some("writer"))
        .await;
    let id = published["id"].as_i64().unwrap();
    let event = raw.next_event(framing).await;
    assert_eq!(event.id_number(), Some(id), "{event:?}");
    assert_eq!(event.event, "note", "{event:?}");
    let json = event.json().expect("the data line is JSON");
    assert_eq!(json["id"], id, "{json}");
    assert_eq!(json["payload"], data, "{json}");
    id
}

/// `connected_clients` in `/api/stats`.
async fn connected_clients(app: &TestApp) -> u64 {
    let stats = app.get_json("/api/stats").await;
    stats["connected_clients"]
        .as_u64()
        .unwrap_or_else(|| panic!("connected_clients in {stats}"))
}

/// The answer is the app's JSON error with `code`, framed by its length.
fn assert_json_error(head: &Head, body: &[u8], code: &str) {
    assert_eq!(
        head.get("content-type"),
        Some("application/json"),
        "{head:?}"
    );
    assert_eq!(head.content_length(), body.len(), "{head:?}");
    let text = std::str::from_utf8(body).expect("a UTF-8 body");
    let body: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("the error body is not JSON ({e}): {text:?}"));
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        !body["error"]["message"].as_str().unwrap_or("").is_empty(),
        "{body}"
    );
    assert!(body["error"]["details"].is_object(), "{body}");
    assert_leaks_nothing(text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_1_stream_is_chunked_and_closed_after_it() {
    let app = spawn_app().await;
    let mut raw = Raw::open(&app).await;
    raw.send(
        b"GET /api/stream?channels=raw11&replay=0 HTTP/1.1\r\n\
          Host: x\r\nX-Session-ID: reader\r\nAccept: text/event-stream\r\n\r\n",
    )
    .await;
    let head = raw.head().await;
    assert_stream_head(&head);
    assert_eq!(head.get("transfer-encoding"), Some("chunked"), "{head:?}");

    let mut framing = Framing::chunked();
    let data = json!({"text": "over a raw socket", "n": 11});
    publish_and_read(&app, &mut raw, &mut framing, "raw11", data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_0_stream_is_raw_sse_up_to_the_close() {
    let app = spawn_app().await;
    let mut raw = Raw::open(&app).await;
    raw.send(b"GET /api/stream?channels=raw10&replay=0 HTTP/1.0\r\nHost: x\r\n\r\n")
        .await;
    let head = raw.head().await;
    assert_stream_head(&head);
    assert_eq!(head.get("transfer-encoding"), None, "{head:?}");

    let mut framing = Framing::plain();
    let data = json!({"text": "no chunks", "n": 10});
    let id = publish_and_read(&app, &mut raw, &mut framing, "raw10", data).await;

    // Every byte of the body is SSE: no chunk-size line, no chunk CRLF.
    let Framing::Plain { text, .. } = &framing else {
        unreachable!()
    };
    let text = std::str::from_utf8(text).expect("UTF-8 SSE");
    assert!(
        text.starts_with("retry: "),
        "the body opens with retry: {text:?}"
    );
    assert!(!text.contains('\r'), "SSE lines end with LF only: {text:?}");
    for line in text.split('\n') {
        assert!(
            line.is_empty()
                || ["retry: ", "id: ", "event: ", "data: ", ":"]
                    .iter()
                    .any(|field| line.starts_with(field)),
            "not an SSE line: {line:?} in {text:?}"
        );
    }
    assert!(
        text.contains(&format!("id: {id}\nevent: note\ndata: {{")),
        "{text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_stream_is_the_apps_json_error_then_the_close() {
    let app = spawn_app().await;
    let mut raw = Raw::open(&app).await;
    raw.send(b"GET /api/stream?last_event_id=notanumber HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let head = raw.head().await;
    assert!(
        head.status_line.starts_with("HTTP/1.1 400"),
        "status line: {head:?}"
    );
    assert_eq!(head.get("connection"), Some("close"), "{head:?}");
    assert_eq!(head.get("transfer-encoding"), None, "{head:?}");
    // The body is exactly content-length bytes, then the server closes
    // (long before actix-http's 5 s keep-alive would).
    let body = raw.read_to_close(Duration::from_secs(2)).await;
    assert_json_error(&head, &body, "bad_request");
    assert_eq!(connected_clients(&app).await, 0, "no stream was opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_stream_request_head_is_a_json_400_and_harms_nothing() {
    let app = spawn_app().await;
    let mut raw = Raw::open(&app).await;
    raw.send(b"GET /api/stream HTTP/1.1\r\nHost: x\r\nthis is not a header\r\n\r\n")
        .await;
    let head = raw.head().await;
    assert_eq!(head.status(), 400, "{head:?}");
    assert_eq!(head.get("connection"), Some("close"), "{head:?}");
    let body = raw.read_to_close(Duration::from_secs(2)).await;
    assert_json_error(&head, &body, "bad_request");

    // The server is as it was: it answers, and streams still open.
    let response = app.get("/healthz").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(connected_clients(&app).await, 0);
    let mut raw = Raw::open(&app).await;
    raw.send(b"GET /api/stream?channels=after&replay=0 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert_stream_head(&raw.head().await);
}

/// The server stops reading an oversized head at 16 KiB and answers; the
/// client, which is still sending, must get that answer whole, not a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_stream_request_head_is_answered_whole_before_the_close() {
    let app = spawn_app().await;
    for _ in 0..5 {
        let mut raw = Raw::open(&app).await;
        let mut request = b"GET /api/stream?channels=big HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
        request.extend(std::iter::repeat_n(b'y', 64 * 1024));
        request.extend_from_slice(b"\r\n\r\n");
        raw.send(&request).await;
        let head = raw.head().await;
        assert_eq!(head.status(), 400, "{head:?}");
        assert_eq!(head.get("connection"), Some("close"), "{head:?}");
        let body = raw.read_to_close(Duration::from_secs(3)).await;
        assert_json_error(&head, &body, "bad_request");
        let error: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("16384 bytes"),
            "{error}"
        );
    }
    assert_eq!(connected_clients(&app).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_socket_ends_the_stream_at_once() {
    // Keep-alive comments far away: only noticing the close can end it.
    let app = spawn_app_with(|a| a.keepalive = Duration::from_secs(120)).await;
    assert_eq!(connected_clients(&app).await, 0);
    let mut raw = Raw::open(&app).await;
    raw.send(
        b"GET /api/stream?channels=leaving&replay=0 HTTP/1.1\r\n\
          Host: x\r\nX-Session-ID: leaver\r\n\r\n",
    )
    .await;
    assert_stream_head(&raw.head().await);
    assert_eq!(connected_clients(&app).await, 1, "the stream is counted");

    drop(raw);
    let closed = Instant::now();
    loop {
        if connected_clients(&app).await == 0 {
            break;
        }
        assert!(
            closed.elapsed() < Duration::from_secs(2),
            "the stream outlived its client's close by 2 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_requests_keep_their_connection_alive() {
    let app = spawn_app().await;
    let mut raw = Raw::open(&app).await;
    for path in ["/healthz", "/api/stats", "/healthz"] {
        raw.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await;
        let head = raw.head().await;
        assert_eq!(head.status(), 200, "{path}: {head:?}");
        assert_ne!(head.get("connection"), Some("close"), "{path}: {head:?}");
        let body = raw.body(head.content_length()).await;
        let body: Value = serde_json::from_slice(&body).expect("a JSON body");
        assert!(body.is_object(), "{path}: {body}");
    }
}

/// An HTTP/1.0 request may name no host at all: links the server builds for
/// it name the listener's address, as under actix-web's `HttpServer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_naming_no_host_gets_links_to_the_listeners_address() {
    let app = spawn_app().await;
    let mut raw = Raw::open(&app).await;
    raw.send(b"PUT /v1/stream/hostless HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
        .await;
    let head = raw.head().await;
    assert_eq!(head.status(), 201, "{head:?}");
    let expected = format!("http://127.0.0.1:{}/v1/stream/hostless", app.port);
    assert_eq!(head.get("location"), Some(expected.as_str()), "{head:?}");
}
