//! The lean stream loop: one request on a connection of its own, its
//! answer written with chunked framing from a buffer that is freed whenever
//! it drains, then the close.
//!
//! An idle stream here holds no read or write buffer, which is the point of
//! this module: it must never keep a buffer, a request head or the app's
//! call state for the stream's life, and never serve a second request on
//! the connection (`Connection: close`).

use std::future::poll_fn;
use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::{Request, Response};
use actix_service::Service;
use actix_web::http::header::{self, HttpDate};
use actix_web::http::{StatusCode, Version};
use actix_web::rt::net::TcpStream;
use actix_web::HttpResponse;
use tokio::io::{AsyncRead as _, AsyncReadExt as _, AsyncWrite, ReadBuf};

use super::head::{take_request, Refusal};
use super::{HIGH_WATER, LINGER};

/// One request on a lean connection, then close.
///
/// This future lives as long as the stream, in the connection's task, so
/// its size is per-stream memory: the request phase and the app's call are
/// boxed (their states are large and short-lived), and what the stream
/// keeps while it sends is the socket and a [`Pump`].
pub(super) async fn serve_stream<S>(mut io: TcpStream, app: &S, local: SocketAddr)
where
    S: Service<Request, Error = HttpResponse>,
    S::Response: Into<Response<BoxBody>>,
{
    let _ = io.set_nodelay(true);
    let Some(mut pump) = Box::pin(answer(&mut io, app, local)).await else {
        return;
    };
    let _ = poll_fn(|cx| pump.poll(&mut io, cx)).await;
    // The body (and with it the stream's hub registration) goes before the
    // linger.
    drop(pump);
    Box::pin(linger_close(io)).await;
}

/// Reads the request and calls the app: the answer, ready to be written,
/// or `None` when the client left before asking anything.
async fn answer<S>(io: &mut TcpStream, app: &S, local: SocketAddr) -> Option<Pump>
where
    S: Service<Request, Error = HttpResponse>,
    S::Response: Into<Response<BoxBody>>,
{
    let (answer, chunked) = match take_request(io).await {
        Ok(mut request) => {
            super::name_host(&mut request, local);
            // Chunked framing is HTTP/1.1's; an HTTP/1.0 client reads to
            // the close.
            let chunked = request.version() == Version::HTTP_11;
            match app.call(request).await {
                Ok(answer) => (answer.into(), chunked),
                Err(answer) => (answer.into(), chunked),
            }
        }
        Err(Refusal::Gone) => return None,
        Err(Refusal::Answer(answer)) => (answer, false),
    };
    Some(Pump::new(answer, chunked))
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

/// An answer on its way to the socket: the head, then the body's frames.
struct Pump {
    /// `None` once the body has ended (its last chunk is in `out`).
    body: Option<BoxBody>,
    chunked: bool,
    /// Bytes not yet written, from `written` on. Freed whenever it drains,
    /// so an idle stream holds no buffer.
    out: Vec<u8>,
    written: usize,
}

impl Pump {
    /// The status line and headers in the buffer, then the body: chunked
    /// when its length is unknown and the client speaks HTTP/1.1 (`may_chunk`),
    /// else up to the close.
    fn new(answer: Response<BoxBody>, may_chunk: bool) -> Pump {
        let (head, body) = answer.into_parts();
        let status = head.status();
        let size = if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            BodySize::None
        } else {
            body.size()
        };
        let mut out = Vec::with_capacity(512);
        let reason = status.canonical_reason().unwrap_or("");
        let _ = write!(out, "HTTP/1.1 {} {reason}\r\n", status.as_str());
        for (name, value) in head.headers().iter() {
            if matches!(
                *name,
                header::CONNECTION
                    | header::CONTENT_LENGTH
                    | header::TRANSFER_ENCODING
                    | header::DATE
            ) {
                continue;
            }
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let _ = write!(out, "date: {}\r\n", HttpDate::from(SystemTime::now()));
        out.extend_from_slice(b"connection: close\r\n");
        let chunked = match size {
            BodySize::None => false,
            BodySize::Sized(n) => {
                let _ = write!(out, "content-length: {n}\r\n");
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
        Pump {
            body: (!matches!(size, BodySize::None)).then_some(body),
            chunked,
            out,
            written: 0,
        }
    }

    /// Writes until the body ends, the client closes or a write fails.
    fn poll(&mut self, io: &mut TcpStream, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
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
                match Pin::new(&mut *io).poll_write(cx, &self.out[self.written..]) {
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
            if peer_closed(io, cx) {
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
}

/// Reads (and drops) anything the client sends after its request; true at
/// end of file or on a read error.
fn peer_closed(io: &mut TcpStream, cx: &mut Context<'_>) -> bool {
    let mut scratch = [0u8; 256];
    loop {
        let mut read = ReadBuf::new(&mut scratch);
        match Pin::new(&mut *io).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) if read.filled().is_empty() => return true,
            Poll::Ready(Ok(())) => continue,
            Poll::Ready(Err(_)) => return true,
            Poll::Pending => return false,
        }
    }
}
