//! A minimal HTTP/1.1 client over raw TCP, lighter than a full client when
//! the benchmark holds thousands of streams: keep-alive requests with a JSON
//! body, and event streams whose chunked body is decoded here and whose SSE
//! frames are parsed by [`SseParser`]. It speaks only to 127.0.0.1.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use switchboard::client::sse::{SseMessage, SseParser};

/// The largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// The status line and the headers that decide how the body is framed.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: u16,
    pub content_type: Option<String>,
    pub chunked: bool,
    pub content_length: Option<usize>,
    pub close: bool,
    /// The Durable Streams headers a reader follows.
    pub next_offset: Option<String>,
    pub up_to_date: bool,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses a complete head (without the blank line).
pub fn parse_head(bytes: &[u8]) -> io::Result<ResponseHead> {
    let text = std::str::from_utf8(bytes).map_err(|_| invalid("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("not an HTTP/1 response: {status_line:?}")));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line: {status_line:?}")))?;
    let mut head = ResponseHead {
        status,
        content_type: None,
        chunked: false,
        content_length: None,
        close: version == "HTTP/1.0",
        next_offset: None,
        up_to_date: false,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                head.content_length =
                    Some(value.parse().map_err(|_| invalid("bad Content-Length"))?)
            }
            "transfer-encoding" => {
                head.chunked = value.to_ascii_lowercase().contains("chunked");
            }
            "connection" => head.close = value.eq_ignore_ascii_case("close"),
            "content-type" => head.content_type = Some(value.to_owned()),
            "stream-next-offset" => head.next_offset = Some(value.to_owned()),
            "stream-up-to-date" => head.up_to_date = value.eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    Ok(head)
}

/// Decodes `Transfer-Encoding: chunked` as bytes arrive.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy)]
enum ChunkState {
    #[default]
    Size,
    Data(usize),
    DataEnd,
    Trailer,
    Done,
}

impl ChunkedDecoder {
    /// Moves the body bytes decodable from `input` to `out` and consumes
    /// them. Returns true once the last chunk and the trailer were read.
    pub fn decode(&mut self, input: &mut BytesMut, out: &mut Vec<u8>) -> io::Result<bool> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(end) = find(input, b"\r\n") else {
                        if input.len() > 1024 {
                            return Err(invalid("chunk size line too long"));
                        }
                        return Ok(false);
                    };
                    let line = std::str::from_utf8(&input[..end])
                        .map_err(|_| invalid("bad chunk size"))?;
                    let digits = line.split(';').next().unwrap_or_default().trim();
                    let size = usize::from_str_radix(digits, 16)
                        .map_err(|_| invalid(format!("bad chunk size {digits:?}")))?;
                    input.advance(end + 2);
                    self.state = if size == 0 {
                        ChunkState::Trailer
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if input.is_empty() {
                        return Ok(false);
                    }
                    let take = left.min(input.len());
                    out.extend_from_slice(&input[..take]);
                    input.advance(take);
                    self.state = if take == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - take)
                    };
                }
                ChunkState::DataEnd => {
                    if input.len() < 2 {
                        return Ok(false);
                    }
                    if &input[..2] != b"\r\n" {
                        return Err(invalid("chunk not followed by CRLF"));
                    }
                    input.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    let Some(end) = find(input, b"\r\n") else {
                        return Ok(false);
                    };
                    input.advance(end + 2);
                    if end == 0 {
                        self.state = ChunkState::Done;
                    }
                }
                ChunkState::Done => return Ok(true),
            }
        }
    }
}

/// Reads once into `buf` (growing it by at least `reserve`); EOF is an error.
async fn read_into(stream: &mut TcpStream, buf: &mut BytesMut, reserve: usize) -> io::Result<()> {
    buf.reserve(reserve);
    if stream.read_buf(buf).await? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    Ok(())
}

/// Reads until a whole response head is in `buf`, and consumes it.
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    reserve: usize,
) -> io::Result<ResponseHead> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = parse_head(&buf[..end])?;
            buf.advance(end + 4);
            return Ok(head);
        }
        if buf.len() > MAX_HEAD {
            return Err(invalid("response head too large"));
        }
        read_into(stream, buf, reserve).await?;
    }
}

async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A response read in full.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    pub next_offset: Option<String>,
    pub up_to_date: bool,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// One keep-alive connection for sequential requests.
pub struct HttpConn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: BytesMut,
    request: Vec<u8>,
    /// Header lines sent with every request (each ending in CRLF); empty
    /// unless a credential is set, so plain requests pay nothing for it.
    headers: Vec<u8>,
}

impl HttpConn {
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        Ok(HttpConn {
            addr,
            stream: Some(connect(addr).await?),
            buf: BytesMut::with_capacity(16 * 1024),
            request: Vec::with_capacity(1024),
            headers: Vec::new(),
        })
    }

    /// Sends `Authorization: Bearer <token>` with every request from now on
    /// (none with `None`). Reuses its buffer: setting a new token before
    /// each request allocates nothing once the buffer has grown.
    pub fn set_bearer(&mut self, token: Option<&str>) {
        self.headers.clear();
        if let Some(token) = token {
            self.headers.extend_from_slice(b"Authorization: Bearer ");
            self.headers.extend_from_slice(token.as_bytes());
            self.headers.extend_from_slice(b"\r\n");
        }
    }

    /// Drops the connection (after a timeout its state is unknown); the
    /// next request opens a new one.
    pub fn reset(&mut self) {
        self.stream = None;
        self.buf.clear();
    }

    /// Sends one request (a JSON body when `body` is given) and reads the
    /// whole answer. After an error the connection is reopened on next use.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> io::Result<Response> {
        self.send_typed(method, path, "application/json", body)
            .await
    }

    /// The same, with a body of `content_type` (also sent with no body).
    pub async fn send_typed(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&[u8]>,
    ) -> io::Result<Response> {
        let result = self.exchange(method, path, content_type, body).await;
        if result.is_err() {
            self.reset();
        }
        result
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&[u8]>,
    ) -> io::Result<Response> {
        if self.stream.is_none() {
            self.stream = Some(connect(self.addr).await?);
        }
        let stream = self.stream.as_mut().expect("connected above");
        self.request.clear();
        self.request.extend_from_slice(
            format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr).as_bytes(),
        );
        self.request.extend_from_slice(&self.headers);
        if let Some(body) = body {
            self.request.extend_from_slice(
                format!(
                    "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            self.request.extend_from_slice(body);
        } else if method == "PUT" {
            self.request.extend_from_slice(
                format!("Content-Type: {content_type}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
            );
        } else {
            self.request.extend_from_slice(b"\r\n");
        }
        stream.write_all(&self.request).await?;

        let head = read_head(stream, &mut self.buf, 16 * 1024).await?;
        let mut body = Vec::new();
        if head.chunked {
            let mut decoder = ChunkedDecoder::default();
            while !decoder.decode(&mut self.buf, &mut body)? {
                read_into(stream, &mut self.buf, 64 * 1024).await?;
            }
        } else if let Some(length) = head.content_length {
            while self.buf.len() < length {
                let missing = length - self.buf.len();
                read_into(stream, &mut self.buf, missing.max(4096)).await?;
            }
            body.extend_from_slice(&self.buf[..length]);
            self.buf.advance(length);
        } else if head.status != 204 && head.status != 304 {
            return Err(invalid(
                "response without length on a keep-alive connection",
            ));
        }
        if head.close {
            self.stream = None;
            self.buf.clear();
        }
        Ok(Response {
            status: head.status,
            next_offset: head.next_offset,
            up_to_date: head.up_to_date,
            body,
        })
    }
}

/// An open `text/event-stream` response, parsed frame by frame.
pub struct SseConn {
    stream: TcpStream,
    raw: BytesMut,
    decoder: Option<ChunkedDecoder>,
    body: Vec<u8>,
    parser: SseParser,
    read_size: usize,
}

impl SseConn {
    /// Sends `GET path` (plus `extra_headers`, each ending in CRLF) and reads
    /// the head; anything but `200 text/event-stream` is an error.
    /// `read_size` is how much each read may take at once.
    pub async fn open(
        addr: SocketAddr,
        path: &str,
        extra_headers: &str,
        read_size: usize,
    ) -> io::Result<Self> {
        let mut stream = connect(addr).await?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{extra_headers}\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = BytesMut::with_capacity(read_size);
        let head = read_head(&mut stream, &mut raw, read_size).await?;
        let is_sse = head
            .content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("text/event-stream"));
        if head.status != 200 || !is_sse {
            return Err(invalid(format!(
                "GET {path}: status {} content-type {:?}",
                head.status, head.content_type
            )));
        }
        Ok(SseConn {
            stream,
            raw,
            decoder: head.chunked.then(ChunkedDecoder::default),
            body: Vec::new(),
            parser: SseParser::new(),
            read_size,
        })
    }

    /// Parses what is buffered, then, if that gave nothing, reads once from
    /// the socket and parses that. Appends the complete messages to `out`.
    /// Cancel-safe: a cancelled call loses no bytes.
    pub async fn read_some(&mut self, out: &mut Vec<SseMessage>) -> io::Result<()> {
        let before = out.len();
        self.parse(out)?;
        if out.len() > before {
            return Ok(());
        }
        read_into(&mut self.stream, &mut self.raw, self.read_size).await?;
        self.parse(out)
    }

    /// The next messages into `out` (cleared first), looking at `stop`
    /// every 200 ms while none arrive; false once `stop` is set or the
    /// stream ended.
    pub async fn read_until(&mut self, stop: &AtomicBool, out: &mut Vec<SseMessage>) -> bool {
        while !stop.load(Ordering::Relaxed) {
            out.clear();
            match tokio::time::timeout(Duration::from_millis(200), self.read_some(out)).await {
                Ok(Ok(())) => return true,
                Ok(Err(_)) => return false,
                Err(_) => continue,
            }
        }
        false
    }

    fn parse(&mut self, out: &mut Vec<SseMessage>) -> io::Result<()> {
        if self.raw.is_empty() {
            return Ok(());
        }
        match &mut self.decoder {
            Some(decoder) => {
                self.body.clear();
                let done = decoder.decode(&mut self.raw, &mut self.body)?;
                self.parser.feed(&self.body, out);
                if done {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server ended the stream",
                    ));
                }
            }
            None => {
                self.parser.feed(&self.raw, out);
                self.raw.clear();
            }
        }
        Ok(())
    }

    /// Keeps only the socket (for streams held open but never read again).
    pub fn into_socket(self) -> TcpStream {
        self.stream
    }
}
