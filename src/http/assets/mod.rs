//! The files a browser loads, embedded in the binary: the dashboard (`GET /`)
//! and the official browser client (`GET /client.js`, its types at
//! `GET /client.d.ts`). Nothing is loaded from the internet. Each answer
//! carries a strong `ETag` (a digest of the content) and `Cache-Control:
//! no-cache`, so a browser keeps its copy and asks again with
//! `If-None-Match` (304) — a new server version is picked up at once.

use std::sync::OnceLock;

use actix_web::http::header::{self, CacheControl, CacheDirective, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

/// One embedded file: its bytes, its MIME type, and its ETag (computed once).
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: OnceLock<String>,
}

impl Asset {
    const fn new(body: &'static str, content_type: &'static str) -> Self {
        Asset {
            body,
            content_type,
            etag: OnceLock::new(),
        }
    }

    fn etag(&self) -> &str {
        self.etag.get_or_init(|| {
            let digest = Sha256::digest(self.body.as_bytes());
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            format!("\"{hex}\"")
        })
    }

    /// 200 with the file, or 304 when the browser's copy is current.
    fn serve(&self, req: &HttpRequest) -> HttpResponse {
        let etag = self.etag();
        let fresh = req
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| {
                tags.split(',')
                    .map(|t| t.trim().trim_start_matches("W/"))
                    .any(|t| t == etag || t == "*")
            });
        let mut response = if fresh {
            HttpResponse::NotModified()
        } else {
            HttpResponse::Ok()
        };
        response
            .insert_header(CacheControl(vec![CacheDirective::NoCache]))
            .insert_header((header::ETAG, HeaderValue::from_str(etag).expect("hex")));
        if fresh {
            return response.finish();
        }
        response.content_type(self.content_type).body(self.body)
    }
}

static DASHBOARD: Asset = Asset::new(include_str!("dashboard.html"), "text/html; charset=utf-8");
static CLIENT: Asset = Asset::new(include_str!("client.js"), "text/javascript; charset=utf-8");
static CLIENT_TYPES: Asset = Asset::new(
    include_str!("client.d.ts"),
    "application/typescript; charset=utf-8",
);

/// What the dashboard may load: itself, `/client.js`, its inline styles and
/// its inline icon; it talks only to its own origin.
const DASHBOARD_POLICY: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'";

/// `GET /`: the live dashboard, built on `/client.js`.
#[utoipa::path(
    get,
    path = "/",
    tag = "operations",
    responses(
        (status = 200, description = "The dashboard page", content_type = "text/html; charset=utf-8", body = String, headers(("ETag" = String))),
        (status = 304, description = "The copy named by `If-None-Match` is current"),
    ),
)]
pub async fn dashboard(req: HttpRequest) -> HttpResponse {
    let mut response = DASHBOARD.serve(&req);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DASHBOARD_POLICY),
    );
    response
}

/// `GET /client.js`: the official browser client, an ES module with no
/// dependencies (`import { Switchboard } from "/client.js"`).
#[utoipa::path(
    get,
    path = "/client.js",
    tag = "operations",
    responses(
        (status = 200, description = "The client module", content_type = "text/javascript; charset=utf-8", body = String, headers(("ETag" = String))),
        (status = 304, description = "The copy named by `If-None-Match` is current"),
    ),
)]
pub async fn client_js(req: HttpRequest) -> HttpResponse {
    CLIENT.serve(&req)
}

/// `GET /client.d.ts`: TypeScript declarations of `/client.js`.
#[utoipa::path(
    get,
    path = "/client.d.ts",
    tag = "operations",
    responses(
        (status = 200, description = "The client's type declarations", content_type = "application/typescript; charset=utf-8", body = String, headers(("ETag" = String))),
        (status = 304, description = "The copy named by `If-None-Match` is current"),
    ),
)]
pub async fn client_types(req: HttpRequest) -> HttpResponse {
    CLIENT_TYPES.serve(&req)
}
