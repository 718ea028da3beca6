//! `GET /`: the live dashboard, one HTML page embedded in the binary. It
//! loads nothing from the internet: its script and styles are inline, and it
//! talks to the same API as every other client (a snapshot from `/api/sync`,
//! then one `EventSource` from the snapshot's cursor).

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::HttpResponse;

const PAGE: &str = include_str!("index.html");

/// `GET /`: the live dashboard (event feed, work items, files and locks,
/// sessions), one self-contained HTML page.
#[utoipa::path(
    get,
    path = "/",
    tag = "operations",
    responses((status = 200, description = "The dashboard page", content_type = "text/html; charset=utf-8", body = String)),
)]
pub async fn dashboard() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        .insert_header(("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline' 'self'"))
        .body(PAGE)
}
