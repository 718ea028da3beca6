//! Logging: a tracing subscriber writing text or JSON lines to stderr, and a
//! `spawn_blocking` that keeps the caller's span (so database work done on a
//! blocking thread is logged under its request). The request log line itself
//! is the HTTP layer's (`http::middleware::RequestSpan`).
//!
//! Malformed request heads are counted, not logged one by one: anyone who
//! can reach the port can send them, and actix-http logs each at `ERROR`
//! (`stream error: request parse error: …`), so a flood of them was a flood
//! of the log. Those lines are dropped here and counted with the stream
//! path's own refusals ([`malformed_head_refused`]); a `WARN` line
//! `malformed request heads refused count=N` sums them up, at most once a
//! second.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber. `RUST_LOG` overrides the default level.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let output = match format {
        LogFormat::Text => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(MalformedHeads)
        .with(output)
        .try_init();
}

pub fn spawn_blocking_in_span<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
}

/// How often at most the summary of malformed heads is logged.
const SUMMARY_EVERY: Duration = Duration::from_secs(1);

/// Malformed heads refused since the last summary.
static MALFORMED_HEADS: AtomicU64 = AtomicU64::new(0);
/// A summary is due (its thread sleeps until then).
static SUMMARY_DUE: AtomicBool = AtomicBool::new(false);

/// Counts one malformed request head, refused with 400 (or 431). The first
/// one after a quiet second starts a summary, logged a second later with
/// every head counted by then; so a flood costs one line a second.
pub fn malformed_head_refused() {
    MALFORMED_HEADS.fetch_add(1, Ordering::Relaxed);
    if SUMMARY_DUE.swap(true, Ordering::AcqRel) {
        return;
    }
    // A thread of its own: this is called from inside the subscriber, on
    // any thread, inside or outside a runtime.
    let started = std::thread::Builder::new()
        .name("log-summary".into())
        .spawn(|| {
            std::thread::sleep(SUMMARY_EVERY);
            // Cleared before the count is taken: a head counted after this
            // either makes this summary or starts the next one.
            SUMMARY_DUE.store(false, Ordering::Release);
            let count = MALFORMED_HEADS.swap(0, Ordering::AcqRel);
            if count > 0 {
                tracing::warn!(count, "malformed request heads refused");
            }
        });
    if started.is_err() {
        SUMMARY_DUE.store(false, Ordering::Release);
    }
}

/// Drops actix-http's `ERROR` line about a request head it could not parse
/// and counts the head instead.
struct MalformedHeads;

impl<S: Subscriber> Layer<S> for MalformedHeads {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        if is_unparsable_head(event) {
            malformed_head_refused();
            return false;
        }
        true
    }
}

/// The dispatcher's `stream error: request parse error: …` line.
fn is_unparsable_head(event: &Event<'_>) -> bool {
    let meta = event.metadata();
    if *meta.level() != Level::ERROR || meta.target() != "actix_http::h1::dispatcher" {
        return false;
    }
    let mut message = Message(String::new());
    event.record(&mut message);
    message.0.starts_with("stream error: request parse error")
}

/// An event's `message` field, formatted.
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}
