//! Memory comes back after streams close.
//!
//! Ten thousand streams open and closed leave their memory with the
//! allocator: glibc's malloc keeps freed chunks in its arenas (one per busy
//! thread), and the hub's maps keep the room they grew to. The resident size
//! would stay at its high-water mark for the process's life. So a task looks
//! at the number of open streams every [`PERIOD`]; once it has fallen by
//! [`MIN_DROP`] or more from its highest since the last time, it shrinks the
//! hub's maps and asks malloc to hand every wholly free page back to the
//! kernel (`malloc_trim(0)`, on a blocking thread: it walks every arena).
//! Nothing is trimmed while streams only open, so a steady server pays
//! nothing but a counter read every few seconds.

use std::sync::Arc;
use std::time::Duration;

use crate::hub::Hub;
use crate::node::periodic::spawn_periodic;
use crate::telemetry::spawn_blocking_in_span;

/// How often the open streams are counted.
pub const PERIOD: Duration = Duration::from_secs(2);
/// How many streams must have closed (from the highest count since the
/// last return) before memory is given back.
pub const MIN_DROP: usize = 500;

/// Starts the task; it ends when the hub shuts down.
pub fn spawn_memory_return(hub: Arc<Hub>) {
    let shutdown = hub.shutdown_signal();
    let mut highest = 0usize;
    spawn_periodic("memory return", PERIOD, shutdown, move || {
        let open = hub.stream_count();
        highest = highest.max(open);
        // The hub, when enough streams closed to give memory back.
        let due = (highest - open >= MIN_DROP).then(|| {
            tracing::debug!(highest, open, "streams closed: giving memory back");
            highest = open;
            Arc::clone(&hub)
        });
        async move {
            if let Some(hub) = due {
                hub.shrink_to_fit();
                spawn_blocking_in_span(trim)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        }
    });
}

/// Hands the allocator's wholly free pages back to the kernel.
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and releases the allocator's own free
    // memory; it takes no pointer and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
