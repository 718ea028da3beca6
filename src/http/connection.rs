//! How a TCP connection is served: by actix-http, or — when its first request
//! opens a stream — by a lean HTTP/1.1 loop of our own.
//!
//! actix-http gives every connection two 8 KiB buffers (read and write) for
//! its whole life, and a stream connection lives for hours doing nothing.
//! With ten thousand idle streams those buffers are most of the server's
//! memory. So the acceptor peeks at a new connection's first bytes:
//!
//! - `GET /api/stream…`, `GET /.well-known/mercure…` and a Durable Streams
//!   `GET /v1/stream/…?…live=sse…` are served here. The request head is read
//!   into a buffer that is dropped once parsed (and framed as strictly as
//!   actix-http frames it: an ambiguous body length or a missing or repeated
//!   `Host` is 400), the request goes to **the same
//!   App service** as every other request (gate, CORS, metrics, request log,
//!   handler), and the answer is written with chunked framing from a buffer
//!   that is freed whenever it drains. Such a connection serves that one
//!   request and is closed after it (`Connection: close`).
//! - Everything else goes to actix-http, keep-alive included.
//!
//! A stream served here ends when its client closes the connection (a read
//! of zero bytes), when a write fails, or when its body ends.
//!
//! On the actix-http side every request body is watched (`body.rs`: a
//! deadline, a bound on bodies waiting at once), and the socket is wrapped
//! in a [`Guarded`] connection that a request whose body was left
//! unfinished can hang up ([`Hangup`]).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::{poll_fn, ready, Future as _};
use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::{HttpService, KeepAlive, Protocol, Request, Response};
use actix_server::GracefulShutdownSignal;
use actix_service::{
    fn_factory, fn_service, map_config, IntoServiceFactory, Service, ServiceFactory,
    ServiceFactoryExt as _,
};
use actix_web::dev::{AppConfig, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue, HttpDate};
use actix_web::http::{Method, StatusCode, Uri, Version};
use actix_web::rt::net::TcpStream;
use actix_web::{HttpResponse, ResponseError};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::time::{sleep_until, Instant, Sleep};

use super::body;
use super::mercure::HUB_PATH;
use crate::http::error::ApiError;

/// actix-web's defaults, which the API's clients have relied on.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a closing stream connection drains what its client still sends.
const LINGER: Duration = DISCONNECT_TIMEOUT;

/// Bytes peeked to recognise a stream request: its request line.
const PEEK: usize = 512;
/// The largest request head served here (actix-http's limit is 32 KiB, but
/// stream requests carry little beyond a cookie or a token).
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// Stop taking frames from the body while this much waits for the socket;
/// the stream's own queue then applies its lag rule.
const HIGH_WATER: usize = 64 * 1024;

/// The per-worker service a listener runs: each accepted connection goes
/// to the lean stream loop or to actix-http, both in front of one instance
/// of the App (`app`, built as `HttpServer` would build it).
pub fn serve_connections<I, S, B>(
    app: I,
    local: SocketAddr,
    shutdown: GracefulShutdownSignal,
) -> impl ServiceFactory<TcpStream, Config = (), Response = (), Error = (), InitError = ()>
where
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<
            Request,
            Config = AppConfig,
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
        > + 'static,
    S::InitError: fmt::Debug,
    S::Service: 'static,
    S::Future: 'static,
    <S::Service as Service<Request>>::Future: 'static,
    B: MessageBody + 'static,
{
    // What `HttpServer::listen` does: the App sees its listener's address
    // as the host when a request names none, and errors become responses.
    let app = map_config(app, move |()| {
        AppConfig::__priv_test_new(false, local.to_string(), local)
    })
    .map(ServiceResponse::map_into_boxed_body)
    .map_err(|err: actix_web::Error| err.error_response());
    fn_factory(move || {
        let app = app.new_service(());
        let shutdown = shutdown.clone();
        async move {
            let app = Rc::new(
                app.await
                    .map_err(|err| tracing::error!(?err, "the app did not start"))?,
            );
            let shared = Rc::clone(&app);
            let actix = HttpService::build()
                .keep_alive(KeepAlive::Timeout(KEEP_ALIVE))
                .client_request_timeout(REQUEST_TIMEOUT)
                .client_disconnect_timeout(DISCONNECT_TIMEOUT)
                .h1_allow_half_closed(true)
                .local_addr(local)
                // Idle keep-alive connections close when the server stops.
                .graceful_shutdown_signal(move || {
                    let shutdown = shutdown.clone();
                    async move { shutdown.notified().await }
                })
                // A request's body reaches its connection's hang-up.
                .on_connect_ext(|io: &Guarded, data| {
                    data.insert(Rc::clone(&io.hangup));
                })
                .finish(fn_factory(move || {
                    let app = Rc::clone(&shared);
                    ready(Ok::<_, ()>(fn_service(move |mut request: Request| {
                        let hangup = request.conn_data::<Rc<Hangup>>().cloned();
                        body::watch(&mut request, hangup);
                        app.call(request)
                    })))
                }))
                .new_service(())
                .await?;
            let actix = Rc::new(actix);
            Ok(fn_service(move |io: TcpStream| {
                let app = Rc::clone(&app);
                let actix = Rc::clone(&actix);
                async move {
                    // Boxed: the peek buffer is not kept for the stream's life.
                    if Box::pin(opens_stream(&io)).await {
                        serve_stream(io, &*app).await;
                    } else {
                        let peer = io.peer_addr().ok();
                        let io = Guarded {
                            io,
                            hangup: Rc::new(Hangup::default()),
                            timer: None,
                        };
                        // Boxed, so that a stream connection's task is not
                        // sized for actix-http's dispatcher.
                        let dispatch = Box::pin(actix.call((io, Protocol::Http1, peer)));
                        if let Err(err) = dispatch.await {
                            tracing::debug!(%err, "connection ended with an error");
                        }
                    }
                    Ok::<_, ()>(())
                }
            }))
        }
    })
}

/// A connection's reading side, to be ended a little later: set by a
/// request whose body will not be read whole (`body.rs`), so that
/// actix-http, which would go on reading what is left of that body, sees
/// the end of the connection instead, sends its answer, and closes.
#[derive(Default)]
pub(crate) struct Hangup {
    at: Cell<Option<Instant>>,
    /// The connection's task, woken to notice the hang-up.
    reader: RefCell<Option<Waker>>,
}

impl Hangup {
    /// Ends the reading side `delay` from now (or sooner, if already set).
    pub(crate) fn after(&self, delay: Duration) {
        let at = Instant::now() + delay;
        if self.at.get().is_some_and(|set| set <= at) {
            return;
        }
        self.at.set(Some(at));
        if let Some(reader) = self.reader.borrow_mut().take() {
            reader.wake();
        }
    }
}

/// An actix-http connection's socket: reads end (as at the client's close)
/// once its [`Hangup`] time has come; writes pass through.
pub(crate) struct Guarded {
    io: TcpStream,
    hangup: Rc<Hangup>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match this.hangup.at.get() {
            Some(at) => {
                let timer = this.timer.get_or_insert_with(|| Box::pin(sleep_until(at)));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Ok(()));
                }
            }
            None => {
                let mut reader = this.hangup.reader.borrow_mut();
                if !reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *reader = Some(cx.waker().clone());
                }
            }
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Whether the connection's first request (peeked, not consumed) opens a
/// stream. A request line split across packets falls to actix-http, which
/// serves it as well, only with more memory.
async fn opens_stream(io: &TcpStream) -> bool {
    let mut line = [0u8; PEEK];
    match tokio::time::timeout(REQUEST_TIMEOUT, io.peek(&mut line)).await {
        Ok(Ok(n)) => is_stream_request(&line[..n]),
        _ => false,
    }
}

/// `GET <target> ` where the target is a stream endpoint.
fn is_stream_request(head: &[u8]) -> bool {
    let Some(rest) = head.strip_prefix(b"GET ") else {
        return false;
    };
    let Some(end) = rest.iter().position(|&b| b == b' ') else {
        return false;
    };
    let target = &rest[..end];
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(at) => (&target[..at], &target[at + 1..]),
        None => (target, &b""[..]),
    };
    path == b"/api/stream"
        || path == HUB_PATH.as_bytes()
        || (path.starts_with(b"/v1/stream/")
            && query.split(|&b| b == b'&').any(|pair| pair == b"live=sse"))
}

/// One request on a lean connection, then close.
async fn serve_stream<S>(mut io: TcpStream, app: &S)
where
    S: Service<Request, Error = HttpResponse>,
    S::Response: Into<Response<BoxBody>>,
{
    let _ = io.set_nodelay(true);
    // The request phase and the app's call are boxed: their states are
    // large and short-lived, and the stream's task would otherwise be sized
    // for them for its whole life.
    let (answer, chunked) = match Box::pin(take_request(&mut io)).await {
        Ok(request) => {
            // Chunked framing is HTTP/1.1's; an HTTP/1.0 client reads to
            // the close.
            let chunked = request.version() == Version::HTTP_11;
            match Box::pin(app.call(request)).await {
                Ok(answer) => (answer.into(), chunked),
                Err(answer) => (answer.into(), chunked),
            }
        }
        Err(Refusal::Gone) => return,
        Err(Refusal::Answer(answer)) => (answer, false),
    };
    let _ = write_response(&mut io, answer, chunked).await;
    Box::pin(linger_close(io)).await;
}

/// Ends a connection after its answer: FIN first, then whatever the client
/// still sends (the rest of an oversized head, say) is read and dropped for
/// a moment, so that closing with unread bytes does not send a reset that
/// can discard the answer before the client reads it.
async fn linger_close(mut io: TcpStream) {
    use tokio::io::AsyncWriteExt as _;
    if io.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut scratch = [0u8; 1024];
        while let Ok(1..) = io.read(&mut scratch).await {}
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Why no request came out of the connection.
enum Refusal {
    /// The client left (or the socket failed) before a whole head arrived.
    Gone,
    /// A malformed, oversized or late head: this answer, then the close.
    Answer(Response<BoxBody>),
}

impl From<ApiError> for Refusal {
    fn from(err: ApiError) -> Self {
        Refusal::Answer(err.error_response().map_into_boxed_body().into())
    }
}

/// The request head, within the request timeout, with the peer's address.
async fn take_request(io: &mut TcpStream) -> Result<Request, Refusal> {
    let peer = io.peer_addr().ok();
    match tokio::time::timeout(REQUEST_TIMEOUT, read_request(io)).await {
        Ok(Ok(mut request)) => {
            request.head_mut().peer_addr = peer;
            Ok(request)
        }
        Ok(Err(refusal)) => {
            if matches!(refusal, Refusal::Answer(_)) {
                // Counted with actix-http's, not logged one by one.
                crate::telemetry::malformed_head_refused();
            }
            Err(refusal)
        }
        Err(_elapsed) => Err(Refusal::Answer(
            HttpResponse::RequestTimeout().finish().into(),
        )),
    }
}

/// Reads and parses the request head. The buffer is dropped on return.
async fn read_request(io: &mut TcpStream) -> Result<Request, Refusal> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 1024];
        let n = io.read(&mut chunk).await.map_err(|_| Refusal::Gone)?;
        if n == 0 {
            return Err(Refusal::Gone);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => return to_request(&parsed),
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => {
                return Err(ApiError::bad_request(format!(
                    "the request head is larger than {MAX_HEAD} bytes"
                ))
                .into())
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ApiError::bad_request(format!(
                    "the request has more than {MAX_HEADERS} headers"
                ))
                .into())
            }
            Err(err) => {
                return Err(ApiError::bad_request(format!("malformed HTTP request: {err}")).into())
            }
        }
    }
}

fn to_request(parsed: &httparse::Request<'_, '_>) -> Result<Request, Refusal> {
    let malformed = |what: &str| Refusal::from(ApiError::bad_request(format!("malformed {what}")));
    let mut request = Request::new();
    let head = request.head_mut();
    head.method = Method::from_bytes(parsed.method.unwrap_or_default().as_bytes())
        .map_err(|_| malformed("method"))?;
    head.uri = parsed
        .path
        .unwrap_or_default()
        .parse::<Uri>()
        .map_err(|_| malformed("request target"))?;
    head.version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    if let Some(why) = framing_error(parsed.headers, head.version) {
        return Err(ApiError::bad_request(why).into());
    }
    for h in parsed.headers.iter() {
        let name =
            HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| malformed("header name"))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| malformed("header value"))?;
        head.headers.append(name, value);
    }
    Ok(request)
}

/// What is wrong with a head's framing, by the rules actix-http applies on
/// every other connection (RFC 9112 §3.2, §6.1, §6.3): a head whose body
/// length two parsers could read differently is refused, never guessed at.
/// Such a connection serves one request and closes, so nothing could be
/// smuggled after it; the rules are kept the same as actix-http's so that
/// the two paths never read one head two ways (a proxy in front relies on
/// that).
fn framing_error(headers: &[httparse::Header<'_>], version: Version) -> Option<&'static str> {
    let named = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
    };
    let lengths: Vec<&[u8]> = named("content-length").map(|h| h.value).collect();
    let encodings: Vec<&[u8]> = named("transfer-encoding").map(|h| h.value).collect();
    let hosts = named("host").count();
    if lengths.len() > 1 {
        return Some("the request has more than one Content-Length header");
    }
    if lengths.first().is_some_and(|v| {
        v.trim_ascii().is_empty() || !v.trim_ascii().iter().all(u8::is_ascii_digit)
    }) {
        return Some("Content-Length must be a decimal number of bytes");
    }
    if !encodings.is_empty() {
        if !lengths.is_empty() {
            return Some("the request has both Content-Length and Transfer-Encoding");
        }
        if encodings.len() > 1
            || version != Version::HTTP_11
            || !encodings[0].trim_ascii().eq_ignore_ascii_case(b"chunked")
        {
            return Some("Transfer-Encoding must be given once, be chunked, and only in HTTP/1.1");
        }
    }
    if hosts > 1 {
        return Some("the request has more than one Host header");
    }
    if hosts == 0 && version == Version::HTTP_11 {
        return Some("an HTTP/1.1 request needs a Host header");
    }
    None
}

/// Writes the status line and headers, then the body: chunked when its
/// length is unknown and the client speaks HTTP/1.1, else up to the close. Returns when the body ends, the client closes or a
/// write fails.
async fn write_response(
    io: &mut TcpStream,
    answer: Response<BoxBody>,
    may_chunk: bool,
) -> std::io::Result<()> {
    let (head, body) = answer.into_parts();
    let status = head.status();
    let size = if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        BodySize::None
    } else {
        body.size()
    };
    let mut out = Vec::with_capacity(512);
    write!(
        out,
        "HTTP/1.1 {} {}\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    )?;
    for (name, value) in head.headers().iter() {
        if matches!(
            *name,
            header::CONNECTION | header::CONTENT_LENGTH | header::TRANSFER_ENCODING | header::DATE
        ) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    write!(out, "date: {}\r\n", HttpDate::from(SystemTime::now()))?;
    out.extend_from_slice(b"connection: close\r\n");
    let chunked = match size {
        BodySize::None => false,
        BodySize::Sized(n) => {
            write!(out, "content-length: {n}\r\n")?;
            false
        }
        BodySize::Stream if may_chunk => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            true
        }
        BodySize::Stream => false,
    };
    out.extend_from_slice(b"\r\n");
    // The head (its header map alone is ~3 KiB) is not kept for the
    // stream's life.
    drop(head);
    let body = if matches!(size, BodySize::None) {
        None
    } else {
        Some(body)
    };
    let mut pump = Pump {
        io,
        body,
        chunked,
        out,
        written: 0,
    };
    poll_fn(|cx| pump.poll(cx)).await
}

/// The body's frames on their way to the socket.
struct Pump<'a> {
    io: &'a mut TcpStream,
    /// `None` once the body has ended (its last chunk is in `out`).
    body: Option<BoxBody>,
    chunked: bool,
    /// Bytes not yet written, from `written` on. Freed whenever it drains,
    /// so an idle stream holds no buffer.
    out: Vec<u8>,
    written: usize,
}

impl Pump<'_> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        loop {
            // Frames into the buffer, as many as are ready and fit.
            let mut body_pending = false;
            while let Some(body) = self.body.as_mut() {
                if self.out.len() - self.written >= HIGH_WATER {
                    break;
                }
                match Pin::new(body).poll_next(cx) {
                    Poll::Ready(Some(Ok(bytes))) => self.frame(&bytes),
                    Poll::Ready(Some(Err(err))) => {
                        tracing::debug!(%err, "stream body failed");
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Ready(None) => {
                        if self.chunked {
                            self.out.extend_from_slice(b"0\r\n\r\n");
                        }
                        self.body = None;
                    }
                    Poll::Pending => {
                        body_pending = true;
                        break;
                    }
                }
            }
            // The buffer onto the socket.
            let mut write_pending = false;
            while self.written < self.out.len() {
                match Pin::new(&mut *self.io).poll_write(cx, &self.out[self.written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                    Poll::Ready(Ok(n)) => self.written += n,
                    Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                    Poll::Pending => {
                        write_pending = true;
                        break;
                    }
                }
            }
            if self.written == self.out.len() {
                self.out = Vec::new();
                self.written = 0;
                if self.body.is_none() {
                    return Poll::Ready(Ok(()));
                }
            } else if self.written >= HIGH_WATER {
                // A slow reader: keep the buffer from growing at its front.
                self.out.drain(..self.written);
                self.written = 0;
            }
            // A client that closes its side has left: end the stream now
            // rather than at the next failed write.
            if self.peer_closed(cx) {
                return Poll::Ready(Ok(()));
            }
            // Wait only when the body or the socket will wake this task;
            // otherwise (the buffer drained while the body was not polled)
            // go round again.
            if body_pending || write_pending {
                return Poll::Pending;
            }
        }
    }

    /// Appends one body chunk, framed.
    fn frame(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            // An empty chunk would read as the end of a chunked body.
            return;
        }
        if self.chunked {
            // One allocation for the size line, the frame and its CRLF
            // (the buffer starts empty after every drain).
            self.out.reserve(bytes.len() + 20);
            let _ = write!(self.out, "{:x}\r\n", bytes.len());
            self.out.extend_from_slice(bytes);
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.out.extend_from_slice(bytes);
        }
    }

    /// Reads (and drops) anything the client sends after its request;
    /// true at end of file or on a read error.
    fn peer_closed(&mut self, cx: &mut Context<'_>) -> bool {
        let mut scratch = [0u8; 256];
        loop {
            let mut read = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *self.io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => return true,
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(_)) => return true,
                Poll::Pending => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{framing_error, is_stream_request};
    use actix_web::http::Version;

    #[test]
    fn a_head_whose_body_length_is_ambiguous_is_refused() {
        let verdict = |head: &str, version: Version| {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let fields: Vec<(&str, &str)> = head
                .split("\r\n")
                .filter(|l| !l.is_empty())
                .map(|l| l.split_once(": ").expect("name: value"))
                .collect();
            for (slot, (name, value)) in headers.iter_mut().zip(&fields) {
                *slot = httparse::Header {
                    name,
                    value: value.as_bytes(),
                };
            }
            framing_error(&headers[..fields.len()], version)
        };
        let v11 = Version::HTTP_11;
        for fine in [
            "Host: x",
            "Host: x\r\nContent-Length: 0",
            "Host: x\r\ncontent-length:  12 ",
            "Host: x\r\nTransfer-Encoding: chunked",
        ] {
            assert_eq!(verdict(fine, v11), None, "{fine}");
        }
        assert_eq!(verdict("Content-Length: 5", Version::HTTP_10), None);
        for refused in [
            "Host: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked",
            "Host: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 0",
            "Host: x\r\nContent-Length: 5\r\nContent-Length: 6",
            "Host: x\r\nContent-Length: 5\r\nContent-Length: 5",
            "Host: x\r\nContent-Length: +5",
            "Host: x\r\nContent-Length: 5, 5",
            "Host: x\r\nContent-Length: ",
            "Host: x\r\nTransfer-Encoding: gzip",
            "Host: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            "Host: x\r\nHost: y",
            "Accept: text/event-stream",
        ] {
            assert!(verdict(refused, v11).is_some(), "{refused}");
        }
        assert!(verdict("Transfer-Encoding: chunked", Version::HTTP_10).is_some());
    }

    #[test]
    fn recognises_stream_requests_by_their_request_line() {
        for line in [
            "GET /api/stream HTTP/1.1\r\n",
            "GET /api/stream?channels=a&replay=0 HTTP/1.1\r\n",
            "GET /.well-known/mercure?topic=x HTTP/1.1\r\n",
            "GET /v1/stream/a/b?offset=-1&live=sse HTTP/1.1\r\n",
        ] {
            assert!(is_stream_request(line.as_bytes()), "{line}");
        }
        for line in [
            "GET /api/streams HTTP/1.1\r\n",
            "GET /api/stream-tickets HTTP/1.1\r\n",
            "POST /api/stream HTTP/1.1\r\n",
            "POST /.well-known/mercure HTTP/1.1\r\n",
            "GET /v1/stream/a?offset=-1 HTTP/1.1\r\n",
            "GET /v1/stream/a?live=long-poll HTTP/1.1\r\n",
            "GET /v1/stream/a?xlive=sse HTTP/1.1\r\n",
            "GET /api/features HTTP/1.1\r\n",
            // The request line is not whole yet: actix-http serves it.
            "GET /api/stream",
            "GE",
            "",
        ] {
            assert!(!is_stream_request(line.as_bytes()), "{line}");
        }
    }
}
