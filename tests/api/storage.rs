//! The embedded SQLite database under steady writes: its write-ahead log
//! must start over while the writes go on, or the `-wal` file grows by
//! every commit for as long as they last.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::spawn_app_with;

/// The WAL header's checkpoint sequence number (bytes 12..16, big-endian):
/// SQLite adds one each time the log starts over from its beginning.
fn wal_restarts(db: &Path) -> Option<u32> {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let header = std::fs::read(Path::new(&wal)).ok()?;
    Some(u32::from_be_bytes(header.get(12..16)?.try_into().ok()?))
}

#[tokio::test]
async fn the_wal_starts_over_while_writes_never_pause() {
    let app = spawn_app_with(|a| a.rate_limit = 0).await;
    // Eight publishers that never pause: there is always a commit in
    // flight, so a checkpoint that only copies (never holds writes back)
    // is never done when the next commit begins.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let mut publishers = Vec::new();
    for p in 0..8 {
        let (publisher, stop, accepted) = (app.publisher(), stop.clone(), accepted.clone());
        publishers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                publisher
                    .publish("load", "tick", json!({ "p": p, "n": n }), None)
                    .await;
                accepted.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    let started = Instant::now();
    let mut first = None;
    let mut last = None;
    while started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(restarts) = wal_restarts(&app.db_path) {
            first.get_or_insert(restarts);
            last = Some(restarts);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let accepted = accepted.load(Ordering::Relaxed);
    let (first, last) = (first.expect("a WAL file"), last.unwrap());
    assert!(
        last >= first + 2,
        "the WAL started over {} times in 5 s of steady writes ({accepted} publishes)",
        last - first
    );
    // Nothing was lost on the way.
    assert_eq!(app.head_id().await as u64, accepted);
}
