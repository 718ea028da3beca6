//! A request head on a lean connection: whether the first request line
//! opens a stream ([`StreamTargets`], from the route table), and reading
//! the head into an actix-http [`Request`], framed as strictly as
//! actix-http frames it.
//!
//! It must never know which handler serves a stream: the targets are handed
//! in (`startup.rs` takes them from `routes.rs`), so that this module
//! imports no handler module. Nor may it read past the head: the body, if
//! any, is the app's.

use actix_http::body::BoxBody;
use actix_http::{Request, Response};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, Uri, Version};
use actix_web::rt::net::TcpStream;
use actix_web::{HttpResponse, ResponseError};
use tokio::io::AsyncReadExt as _;

use super::{MAX_HEAD, MAX_HEADERS, PEEK, REQUEST_TIMEOUT};
use crate::http::error::ApiError;

/// The request lines that open a stream: one per route the table marks as
/// a stream (`routes.rs`). Built once, before the workers start.
#[derive(Debug, Clone, Default)]
pub struct StreamTargets(Vec<Target>);

#[derive(Debug, Clone)]
struct Target {
    method: Method,
    /// The path, or (`prefix`) what every path it matches starts with.
    path: &'static str,
    prefix: bool,
    /// A `name=value` pair the query must hold, as one of its `&` parts.
    query: Option<&'static str>,
}

impl StreamTargets {
    /// Adds a stream route, declared as in the route table. A path with a
    /// parameter matches by what comes before it, so the parameter must be
    /// the path's last segment (`/v1/stream/{path}`): a request that only
    /// looks like a stream would be served on a lean connection, correctly
    /// but without keep-alive, so the match must not be looser than that.
    ///
    /// # Panics
    /// When the path has a parameter anywhere but at its end.
    pub fn with(mut self, method: Method, path: &'static str, query: Option<&'static str>) -> Self {
        let (path, prefix) = match path.find('{') {
            None => (path, false),
            Some(at) if path.ends_with('}') && path[at + 1..].find(['{', '/']).is_none() => {
                (&path[..at], true)
            }
            Some(_) => panic!("a stream route may have a parameter only at its end: {path}"),
        };
        self.0.push(Target {
            method,
            path,
            prefix,
            query,
        });
        self
    }

    /// Whether the connection's first request (peeked, not consumed) opens
    /// a stream. A request line split across packets falls to actix-http,
    /// which serves it as well, only with more memory.
    pub(super) async fn opened_by(&self, io: &TcpStream) -> bool {
        let mut line = [0u8; PEEK];
        match tokio::time::timeout(REQUEST_TIMEOUT, io.peek(&mut line)).await {
            Ok(Ok(n)) => self.is_stream_request(&line[..n]),
            _ => false,
        }
    }

    /// `<METHOD> <target> ` where the target is a stream endpoint.
    fn is_stream_request(&self, head: &[u8]) -> bool {
        self.0.iter().any(|target| target.matches(head))
    }
}

impl Target {
    fn matches(&self, head: &[u8]) -> bool {
        let Some(rest) = head
            .strip_prefix(self.method.as_str().as_bytes())
            .and_then(|rest| rest.strip_prefix(b" "))
        else {
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
        let path_fits = if self.prefix {
            path.starts_with(self.path.as_bytes())
        } else {
            path == self.path.as_bytes()
        };
        path_fits
            && self.query.is_none_or(|wanted| {
                query
                    .split(|&b| b == b'&')
                    .any(|pair| pair == wanted.as_bytes())
            })
    }
}

/// Why no request came out of the connection.
pub(super) enum Refusal {
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
pub(super) async fn take_request(io: &mut TcpStream) -> Result<Request, Refusal> {
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

#[cfg(test)]
mod tests {
    use super::framing_error;
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
        let targets = crate::http::stream_targets();
        let is_stream_request = |line: &[u8]| targets.is_stream_request(line);
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
