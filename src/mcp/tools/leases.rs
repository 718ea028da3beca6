//! The locks an agent took through `lock_file`: renewed at half term while
//! the MCP server runs, released when it exits.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use super::Tools;
use crate::mcp::api::{segment, ApiFailure, Call};

impl Tools {
    pub(super) async fn lock_once(&self, stable_id: &str, ttl: u32) -> Result<Value, ApiFailure> {
        let path = format!("/api/files/{}/lock", segment(stable_id));
        let call = Call::new(Method::POST, path).body(json!({ "ttl_seconds": ttl }));
        Ok(self.api.send(call).await?.body)
    }

    /// Renews the lock at half term until released, refused or the end.
    pub(super) async fn keep_renewed(&self, stable_id: &str, ttl: u32) {
        let me = self.clone();
        let id = stable_id.to_owned();
        let half = Duration::from_millis(u64::from(ttl.max(1)) * 500);
        let renewal = tokio::spawn(async move {
            let mut wait = half;
            loop {
                tokio::time::sleep(wait).await;
                match me.lock_once(&id, ttl).await {
                    Ok(_) => wait = half,
                    // Gone for good: someone else holds it, or the file is gone.
                    Err(f) if f.status == 404 || f.status == 409 => break,
                    Err(_) => wait = Duration::from_secs(1).min(half),
                }
            }
            me.leases.lock().await.remove(&id);
        });
        if let Some(previous) = self
            .leases
            .lock()
            .await
            .insert(stable_id.to_owned(), renewal)
        {
            previous.abort();
        }
    }

    /// Releases every lock this process still holds (at exit).
    pub async fn release_all(&self) {
        let held: Vec<(String, tokio::task::JoinHandle<()>)> =
            self.leases.lock().await.drain().collect();
        for (id, renewal) in held {
            renewal.abort();
            let path = format!("/api/files/{}/lock", segment(&id));
            let _ = self.api.send(Call::new(Method::DELETE, path)).await;
        }
    }
}
