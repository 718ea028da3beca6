//! The HTTP surface: one module per resource, plus the stream. Handlers parse
//! and validate into domain types, call the store or the writer once, and turn
//! the result into a response. No SQL here.

mod auth;
mod conversations;
mod dashboard;
mod events;
mod extract;
mod files;
mod health;
pub mod middleware;
mod openapi;
mod ops;
mod stream;
mod sync;
mod work_items;

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};

pub use auth::{authenticate, principal, WriteLimiter};
pub(crate) use extract::query_param;
pub use extract::{Identity, JsonBody};
pub use files::sweep_expired_locks;

use crate::error::ApiError;
use crate::hub::Hub;
use crate::store::{Store, Writer};

/// The path segment naming a work-item collection.
const WORK_ITEMS: &str = "{collection:features|tracks|spikes}";

/// How streams behave (from the command line).
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub replay_count: usize,
    pub replay_window: Duration,
    pub keepalive: Duration,
    pub retry: Duration,
}

/// What every handler can reach.
/// This node, when several share a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node_id: String,
    pub timeout: std::time::Duration,
}

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
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|err, _| {
        ApiError::bad_request(format!("invalid query string: {err}")).into()
    }))
    .app_data(
        web::PathConfig::default()
            .error_handler(|err, _| ApiError::bad_request(format!("invalid path: {err}")).into()),
    )
    .route("/", web::get().to(dashboard::dashboard))
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz))
    .route("/metrics", web::get().to(ops::metrics))
    .route("/openapi.json", web::get().to(openapi::openapi_json))
    .service(
        web::scope("/api")
            .service(
                web::resource("/stats")
                    .get(ops::stats)
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/sessions")
                    .get(ops::sessions)
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/stream-tickets")
                    .post(auth::issue_ticket)
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/stream")
                    .get(stream::open_stream)
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/channels/{channel}/events")
                    .post(events::publish_event)
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/events/batch")
                    .post(events::publish_batch)
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/events")
                    .get(events::list_events)
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/events/{id}")
                    .get(events::get_event)
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/files")
                    .get(files::list_files)
                    .post(files::create_file)
                    .default_service(not_allowed("GET, POST")),
            )
            .service(
                web::resource("/files/delete")
                    .post(files::bulk_delete)
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/files/{id}")
                    .get(files::get_file)
                    .put(files::save_file)
                    .delete(files::delete_file)
                    .default_service(not_allowed("GET, PUT, DELETE")),
            )
            .service(
                web::resource("/files/{id}/lock")
                    .post(files::acquire_lock)
                    .delete(files::release_lock)
                    .default_service(not_allowed("POST, DELETE")),
            )
            .service(
                web::resource("/files/{id}/versions")
                    .get(files::list_versions)
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/files/{id}/versions/{n}")
                    .get(files::get_version)
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/conversations")
                    .get(conversations::list_conversations)
                    .post(conversations::create_conversation)
                    .default_service(not_allowed("GET, POST")),
            )
            .service(
                web::resource("/conversations/sync")
                    .get(conversations::sync_conversations)
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource("/conversations/{id}")
                    .get(conversations::get_conversation)
                    .patch(conversations::rename_conversation)
                    .delete(conversations::delete_conversation)
                    .default_service(not_allowed("GET, PATCH, DELETE")),
            )
            .service(
                web::resource("/conversations/{id}/messages")
                    .get(conversations::list_messages)
                    .post(conversations::create_message)
                    .default_service(not_allowed("GET, POST")),
            )
            .service(
                web::resource("/conversations/{id}/messages/{message_id}/delta")
                    .post(conversations::append_delta)
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/conversations/{id}/messages/{message_id}/complete")
                    .post(conversations::complete_message)
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource("/sync")
                    .get(sync::sync)
                    .default_service(not_allowed("GET")),
            )
            .service(
                web::resource(format!("/broadcast/{WORK_ITEMS}/{{id}}"))
                    .post(work_items::broadcast_update)
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource(format!("/broadcast/{WORK_ITEMS}/{{id}}/status"))
                    .post(work_items::broadcast_status)
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource(format!("/broadcast/{WORK_ITEMS}/{{id}}/links"))
                    .post(work_items::broadcast_link)
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource(format!("/{WORK_ITEMS}"))
                    .get(work_items::list_items)
                    .post(work_items::create_item)
                    .default_service(not_allowed("GET, POST")),
            )
            .service(
                web::resource(format!("/{WORK_ITEMS}/{{id}}"))
                    .get(work_items::get_item)
                    .patch(work_items::patch_item)
                    .delete(work_items::delete_item)
                    .default_service(not_allowed("GET, PATCH, DELETE")),
            )
            .service(
                web::resource(format!("/{WORK_ITEMS}/{{id}}/status"))
                    .post(work_items::set_status)
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource(format!("/{WORK_ITEMS}/{{id}}/links"))
                    .post(work_items::add_link)
                    .default_service(not_allowed("POST")),
            )
            .service(
                web::resource(format!("/{WORK_ITEMS}/{{id}}/links/{{linked_id}}"))
                    .delete(work_items::remove_link)
                    .default_service(not_allowed("DELETE")),
            )
            .service(
                web::resource(format!("/{WORK_ITEMS}/{{id}}/comments"))
                    .post(work_items::add_comment)
                    .default_service(not_allowed("POST")),
            ),
    )
    .default_service(web::to(not_found));
}

async fn not_found(_req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound)
}

/// 405 with the `Allow` header naming the methods the resource answers.
fn not_allowed(allow: &'static str) -> actix_web::Route {
    web::route()
        .to(move || async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow }) })
}
