//! The HTTP surface: the route table (`routes.rs`), the gate, and one module
//! per resource plus the stream. A handler parses the request into typed
//! values, reads through the store or runs one use case of `app/` through
//! the writer, and renders a typed view (`answer.rs`). No rule of a resource
//! and no SQL here.

mod answer;
mod assets;
mod auth;
mod body;
mod connection;
mod conversations;
mod described;
mod ds_subscriptions;
mod durable;
pub mod error;
mod events;
mod extract;
mod files;
mod hangup;
mod health;
mod mercure;
mod messages;
pub mod middleware;
mod openapi;
mod ops;
mod routes;
mod stream;
mod subscriptions;
mod sync;
mod tickets;
mod work_items;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;

pub use auth::{authenticate, WriteLimiter};
pub use connection::{serve_connections, StreamTargets};
pub(crate) use extract::query_param;
pub use extract::{principal, Identity, JsonBody, Query};

use crate::hub::Hub;
use crate::store::{Store, Writer};

/// How streams behave (from the command line).
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub replay_count: usize,
    pub replay_window: Duration,
    pub keepalive: Duration,
    pub retry: Duration,
}

/// This node, when several share a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node_id: String,
    pub timeout: std::time::Duration,
}

/// What every handler can reach.
pub struct AppState {
    pub store: Store,
    pub writer: Writer,
    pub hub: Arc<Hub>,
    pub streams: StreamSettings,
    pub max_body: usize,
    /// Default lease of a file lock.
    pub lock_ttl: Duration,
    pub started: std::time::Instant,
    pub auth: std::sync::Arc<crate::auth::Auth>,
    pub limiter: WriteLimiter,
    /// Open streams accepted before 503.
    pub max_streams: usize,
    /// The SQLite file, for the size metric.
    pub database: crate::store::DatabaseUrl,
    /// With PostgreSQL: this node's id and the node timeout.
    pub node: Option<NodeInfo>,
    /// The Mercure hub, when a publisher key turns it on.
    pub mercure: Option<Arc<mercure::Mercure>>,
    /// Durable Streams: settings and per-node read times.
    pub durable: Arc<durable::Durable>,
    /// Durable Streams subscriptions: the signer, public URLs, delivery.
    pub subscriptions: Arc<crate::app::ds_wakes::Wakes>,
    /// Webhook subscriptions on channels: poked when one changes here.
    pub deliveries: Arc<crate::app::deliveries::Deliveries>,
    /// `--cors-origin`: also the origins a cookie-authorized Mercure publish may come from.
    pub cors_origins: Vec<String>,
}

pub use durable::Durable;
pub use mercure::Mercure;

/// The app's routes (all declared in `routes.rs`), how a malformed query
/// or path parameter is answered, and the OpenAPI document.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(extract::query_error))
        .app_data(web::PathConfig::default().error_handler(extract::path_error))
        .app_data(web::Data::new(ops::ApiDocument(openapi::document)));
    routes::register(cfg);
}

/// The request lines the acceptor serves on a lean stream connection: the
/// routes the route table marks as streams.
pub fn stream_targets() -> StreamTargets {
    routes::routes().stream_routes().fold(
        StreamTargets::default(),
        |targets, (method, path, query)| targets.with(method, path, query),
    )
}
