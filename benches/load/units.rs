//! The load benchmark's own unit tests: its HTTP/1.1 response parsing and
//! its statistics. They are a test target of their own because the bench
//! (`harness = false`) has no test runner; `cargo test` runs them.

// Only the parsing and the statistics are exercised here; the rest of these
// modules serves the bench.
#![allow(dead_code)]

mod http;
mod stats;

mod http_tests {
    use bytes::BytesMut;

    use super::http::*;

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for split in 0..wire.len() {
            let mut decoder = ChunkedDecoder::default();
            let mut input = BytesMut::from(&wire[..split]);
            let mut out = Vec::new();
            let first = decoder.decode(&mut input, &mut out).unwrap();
            assert!(!first || split == wire.len());
            input.extend_from_slice(&wire[split..]);
            assert!(
                decoder.decode(&mut input, &mut out).unwrap(),
                "split {split}"
            );
            assert_eq!(out, b"hello, world", "split {split}");
            assert!(input.is_empty());
        }
    }

    #[test]
    fn heads_parse() {
        let head = parse_head(
            b"HTTP/1.1 201 Created\r\ncontent-length: 12\r\ncontent-type: application/json",
        )
        .unwrap();
        assert_eq!(head.status, 201);
        assert_eq!(head.content_length, Some(12));
        assert!(!head.chunked && !head.close);
        assert!(parse_head(b"SSH-2.0 nope").is_err());
    }

    /// Reads one request head from `socket` and answers it 204.
    async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            socket.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        socket
            .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8(head).unwrap()
    }

    #[tokio::test]
    async fn a_bearer_is_sent_with_every_request_until_it_is_changed_or_cleared() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut heads = Vec::new();
            for _ in 0..4 {
                heads.push(read_request(&mut socket).await);
            }
            heads
        });
        let mut conn = HttpConn::connect(addr).await.unwrap();
        conn.send("GET", "/plain", None).await.unwrap();
        conn.set_bearer(Some("first"));
        conn.send("GET", "/a", None).await.unwrap();
        conn.set_bearer(Some("second"));
        conn.send("GET", "/b", None).await.unwrap();
        conn.set_bearer(None);
        conn.send("GET", "/c", None).await.unwrap();
        let heads = server.await.unwrap();
        let bearer = |head: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix("Authorization: "))
                .map(str::to_owned)
        };
        assert_eq!(bearer(&heads[0]), None);
        assert_eq!(bearer(&heads[1]).as_deref(), Some("Bearer first"));
        assert_eq!(bearer(&heads[2]).as_deref(), Some("Bearer second"));
        assert_eq!(bearer(&heads[3]), None);
        assert!(heads[1].starts_with("GET /a HTTP/1.1\r\nHost: "));
    }
}

mod stats_tests {
    use super::stats::*;

    #[test]
    fn seq_sets_count_missing_and_duplicates() {
        let mut expected = SeqSet::default();
        let mut got = SeqSet::default();
        for seq in 0..200 {
            expected.insert(seq);
        }
        for seq in (0..200).filter(|s| s % 10 != 0) {
            assert!(got.insert(seq));
        }
        assert!(!got.insert(5));
        assert_eq!(expected.missing_from(&got), 20);
        assert_eq!(got.extra_over(&expected), 0);
        got.insert(500);
        assert_eq!(got.extra_over(&expected), 1);
        let mut union = SeqSet::default();
        union.union_with(&got);
        union.union_with(&expected);
        assert_eq!(union.len(), 201);
    }

    #[test]
    fn percentiles_and_medians() {
        let mut values: Vec<u32> = (1..=1000).rev().collect();
        let summary = summarise(&mut values);
        assert_eq!(summary.p50_ms, 0.5);
        assert_eq!(summary.p99_ms, 0.99);
        assert_eq!(summary.max_ms, 1.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(format_number(1234567.891, 1), "1,234,567.9");
        assert_eq!(format_number(0.0, 0), "0");
    }
}
