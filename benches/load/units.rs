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
