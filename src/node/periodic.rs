//! Background tasks that run on a timer: retention, the lock sweeper, the
//! WAL checkpointer, the cluster heartbeat. One loop serves them all.
//!
//! A task runs once at start and then every period until the hub shuts down.
//! Runs never overlap: a slow run delays the next tick rather than queueing
//! a burst of them. A failed run is logged and retried at the next tick; it
//! never ends the task.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

/// Spawns `run` now and then every `period` until `shutdown` changes (or its
/// sender is gone). `name` names the task in the log line of a failed run.
pub fn spawn_periodic<F, Fut, E>(
    name: &'static str,
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
    mut run: F,
) where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Display,
{
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            if let Err(err) = run().await {
                tracing::warn!(task = name, error = %err, "{name} failed; will retry");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;
    use tokio::time::timeout;

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_task_repeats_through_failures_and_ends_at_shutdown() {
        let (stop, shutdown) = watch::channel(false);
        let (ran, mut runs) = mpsc::unbounded_channel();
        spawn_periodic("counter", Duration::from_millis(10), shutdown, move || {
            let ran = ran.clone();
            async move {
                let _ = ran.send(());
                Err::<(), _>("a failed run")
            }
        });
        for _ in 0..3 {
            let run = timeout(DEADLINE, runs.recv())
                .await
                .expect("a run within 5 s");
            assert!(run.is_some(), "the task ended before shutdown");
        }
        stop.send(true).unwrap();
        // The task drops its closure (and the sender) when it ends; a run
        // already under way may still report.
        let ended = timeout(DEADLINE, async { while runs.recv().await.is_some() {} }).await;
        assert!(ended.is_ok(), "the task still runs after shutdown");
    }
}
