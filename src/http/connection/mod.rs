//! How a TCP connection is served: by actix-http, or — when its first request
//! opens a stream — by a lean HTTP/1.1 loop of our own.
//!
//! actix-http gives every connection two 8 KiB buffers (read and write) for
//! its whole life, and a stream connection lives for hours doing nothing.
//! With ten thousand idle streams those buffers are most of the server's
//! memory. So the acceptor peeks at a new connection's first bytes:
//!
//! - A request to a route the route table marks as a stream (`routes.rs`:
//!   `GET /api/stream…`, `GET /.well-known/mercure…` and a Durable Streams
//!   `GET /v1/stream/…?…live=sse…`; handed in as [`StreamTargets`]) is
//!   served here (`lean.rs`). The request head is read into a buffer that is
//!   dropped once parsed (`head.rs`, framed as strictly as actix-http frames
//!   it: an ambiguous body length or a missing or repeated `Host` is 400),
//!   the request goes to **the same App service** as every other request
//!   (gate, CORS, metrics, request log, handler), and the answer is written
//!   with chunked framing from a buffer that is freed whenever it drains.
//!   Such a connection serves that one request and is closed after it
//!   (`Connection: close`).
//! - Everything else goes to actix-http, keep-alive included.
//!
//! A stream served here ends when its client closes the connection (a read
//! of zero bytes), when a write fails, or when its body ends.
//!
//! On the actix-http side every request body is watched (`body.rs`: a
//! deadline, a bound on bodies waiting at once), and the socket is wrapped
//! in a `Guarded` connection (`guarded.rs`) that a request whose body was
//! left unfinished can hang up (`hangup.rs`).
//!
//! The App is given actix-web's public default `AppConfig` (not secure,
//! host `localhost:8080`, address `127.0.0.1:8080`): the constructor
//! `HttpServer` uses is private. Only a request that names no host at all
//! (no `Host`, no absolute target, no `Forwarded`/`X-Forwarded-Host`) ever
//! reads that host: actix-http and `head.rs` refuse HTTP/1.1 without
//! `Host`, so only HTTP/1.0 can. Such a request is given a `Host` naming
//! the listener's address ([`name_host`]), which is what `HttpServer` would
//! have configured, so `ConnectionInfo::host()` (Mercure's `Link`, Durable
//! Streams' `Location`) answers as before; a handler reading the `Host`
//! header itself would see it too. What does differ is
//! `HttpRequest::app_config().local_addr()` and `.host()`, which no code
//! here reads.
//!
//! This module must never import a handler module (`mercure`, `stream`,
//! `durable`…): what is a stream comes from the route table, through
//! `startup.rs`.

mod guarded;
mod head;
mod lean;

use std::fmt;
use std::future::ready;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use actix_http::body::MessageBody;
use actix_http::{HttpService, KeepAlive, Protocol, Request};
use actix_server::GracefulShutdownSignal;
use actix_service::{
    fn_factory, fn_service, map_config, IntoServiceFactory, Service, ServiceFactory,
    ServiceFactoryExt as _,
};
use actix_web::dev::{AppConfig, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::rt::net::TcpStream;
use actix_web::HttpResponse;

use super::body;
use crate::http::hangup::Hangup;
use guarded::Guarded;
pub use head::StreamTargets;

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
/// to the lean stream loop (when its first request line is one of
/// `streams`) or to actix-http, both in front of one instance of the App
/// (`app`, built as `HttpServer` would build it).
pub fn serve_connections<I, S, B>(
    app: I,
    local: SocketAddr,
    shutdown: GracefulShutdownSignal,
    streams: StreamTargets,
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
    // Errors become responses, as under `HttpServer`; the host a request
    // names when it names none is the listener's (`name_host`).
    let app = map_config(app, |()| AppConfig::default())
        .map(ServiceResponse::map_into_boxed_body)
        .map_err(|err: actix_web::Error| err.error_response());
    let streams = Rc::new(streams);
    fn_factory(move || {
        // Streams and writer answers reach this worker via its relay (crate::wake).
        crate::wake::install();
        let app = app.new_service(());
        let shutdown = shutdown.clone();
        let streams = Rc::clone(&streams);
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
                        name_host(&mut request, local);
                        let hangup = request.conn_data::<Rc<Hangup>>().cloned();
                        body::watch(&mut request, hangup);
                        app.call(request)
                    })))
                }))
                .new_service(())
                .await?;
            let actix = Rc::new(actix);
            Ok(fn_service(move |io: TcpStream| {
                // Boxed: actix-server's task holds the future it is given
                // twice over (as its capture and as the awaited future), for
                // the connection's whole life.
                Box::pin(serve_one(
                    io,
                    Rc::clone(&app),
                    Rc::clone(&actix),
                    Rc::clone(&streams),
                    local,
                ))
            }))
        }
    })
}

/// One accepted connection, to whichever of the two serves it.
async fn serve_one<A, X>(
    io: TcpStream,
    app: Rc<A>,
    actix: Rc<X>,
    streams: Rc<StreamTargets>,
    local: SocketAddr,
) -> Result<(), ()>
where
    A: Service<Request, Error = HttpResponse>,
    A::Response: Into<actix_http::Response<actix_http::body::BoxBody>>,
    X: Service<(Guarded, Protocol, Option<SocketAddr>)>,
    X::Error: fmt::Display,
{
    // Boxed: the peek buffer is not kept for the stream's life.
    if Box::pin(streams.opened_by(&io)).await {
        lean::serve_stream(io, &*app, local).await;
    } else {
        let peer = io.peer_addr().ok();
        // Boxed, so that a stream connection's task is not sized for
        // actix-http's dispatcher.
        let dispatch = Box::pin(actix.call((Guarded::new(io), Protocol::Http1, peer)));
        if let Err(err) = dispatch.await {
            tracing::debug!(%err, "connection ended with an error");
        }
    }
    Ok(())
}

/// Gives a request that names no host the listener's address as its
/// `Host`: what `HttpServer`'s private `AppConfig` would have answered for
/// it, which the public default cannot (see the module doc). Only an
/// HTTP/1.0 request gets this far without `Host`; a target naming its host
/// already outranks the config's in `ConnectionInfo`, so it is left alone.
fn name_host(request: &mut Request, local: SocketAddr) {
    let head = request.head_mut();
    if head.uri.authority().is_some() || head.headers.contains_key(header::HOST) {
        return;
    }
    if let Ok(host) = HeaderValue::from_str(&local.to_string()) {
        head.headers.insert(header::HOST, host);
    }
}

#[cfg(test)]
mod tests {
    use super::name_host;
    use actix_http::Request;
    use actix_web::http::{header, Uri, Version};

    #[test]
    fn a_request_naming_no_host_is_given_the_listeners() {
        let local = "10.0.0.5:8080".parse().expect("an address");
        let host = |version: Version, target: &str, sent: Option<&str>| {
            let mut request = Request::new();
            let head = request.head_mut();
            head.version = version;
            head.uri = target.parse::<Uri>().expect("a target");
            if let Some(sent) = sent {
                head.headers
                    .insert(header::HOST, sent.parse().expect("a value"));
            }
            name_host(&mut request, local);
            let named = request.head().headers.get(header::HOST);
            named.map(|v| v.to_str().expect("ascii").to_owned())
        };
        let v10 = Version::HTTP_10;
        assert_eq!(host(v10, "/x", None).as_deref(), Some("10.0.0.5:8080"));
        assert_eq!(
            host(v10, "/x", Some("a.example")).as_deref(),
            Some("a.example")
        );
        assert_eq!(host(v10, "http://b.example/x", None), None);
    }
}
