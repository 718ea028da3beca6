//! The OpenAPI 3.1 document of the whole HTTP API, served at
//! `GET /openapi.json` (`ops::openapi_json`, handed [`document`] by
//! `http::configure`).
//!
//! Nothing here describes JSON by hand. The paths come from the route table
//! (`routes.rs`): one operation per route, from the `#[utoipa::path]`
//! annotation of its handler (for the work-item routes, one per collection,
//! from `work_items/docs.rs`), with what the gate asks of it. The schemas
//! are the `ToSchema` derives of the very types that serialise the answers
//! (`views`, the handlers' list and page types, `ErrorBody`) and
//! parse the requests. `described.rs` (beside this file) holds what utoipa can only describe
//! through a type: header parameters and the reusable error responses;
//! handlers name them there, so this document is built from them without
//! the handlers importing it back.
//! `tests/api/openapi.rs` checks the document against the router both ways
//! and real answers against their schemas.

use std::sync::OnceLock;

use serde_json::Value;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::described::{
    BadRequest, Forbidden, NotFound, PayloadTooLarge, PreconditionFailed, RateLimited,
    Unauthorized, Unavailable, UnsupportedMediaType, ValidationFailed,
};
use super::routes::{routes, Need, Route};
use super::{conversations, events, files, health, messages, ops, sync, tickets, work_items};
use crate::domain::conversations::{MessageStatus, Role, Usage};
use crate::domain::files::VersionInfo;
use crate::domain::work_items::{LinkType, Priority, Status};
use crate::domain::Event;
use crate::http::error::{ErrorBody, ErrorDetail};
use crate::store::Order;
use crate::views::{
    CommentView, ConversationView, DeletedView, DeltaView, FeatureView, FileMetadataView,
    FileWithContentView, LinkView, LockView, MessageView, SpikeView, TrackView,
};

/// The document without its paths: [`build`] adds one operation per route of
/// the route table (`routes.rs`).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "switchboard",
        description = "A sync service: REST writes, a durable event log, and exact-resume \
            Server-Sent-Events streams.\n\nWithout a tokens file (`--tokens`) the server is open \
            and needs no credential; with one, every route but `/`, `/healthz`, `/readyz` and \
            `/openapi.json` needs a token (`Authorization: Bearer`, or `access_token`/`ticket` \
            in the query, or the `switchboard_token` cookie) → 401 without, 403 outside its \
            scopes. Writes are rate-limited per agent → 429.\n\nEvery error answers \
            `{\"error\": {\"code\", \"message\", \"details\"}}` (`ErrorBody`). Writes accept \
            `Idempotency-Key`; writes to a versioned resource accept `If-Match: \"<version>\"`. \
            Snapshots carry `X-Event-Cursor`: stream from it with `Last-Event-ID` to get every \
            later change exactly once."
    ),
    components(
        schemas(
            ErrorBody,
            ErrorDetail,
            tickets::StreamTicket,
            health::Health,
            health::Readiness,
            ops::Stats,
            ops::ClusterSession,
            ops::Sessions,
            Event,
            events::EventList,
            events::EventsPage,
            events::PublishRequest,
            events::BatchItem,
            events::BatchRequest,
            Order,
            Status,
            Priority,
            LinkType,
            LinkView,
            CommentView,
            FeatureView,
            TrackView,
            SpikeView,
            work_items::FeatureList,
            work_items::TrackList,
            work_items::SpikeList,
            DeletedView,
            work_items::BroadcastView,
            work_items::StatusRequest,
            work_items::LinkRequest,
            work_items::CommentRequest,
            FileMetadataView,
            FileWithContentView,
            files::FileList,
            VersionInfo,
            files::FileVersions,
            files::FileVersion,
            LockView,
            files::LockReleased,
            files::FilesDeleted,
            files::CreateFileRequest,
            files::SaveRequest,
            files::BulkDeleteRequest,
            files::LockBody,
            ConversationView,
            conversations::ConversationList,
            Role,
            MessageStatus,
            Usage,
            MessageView,
            messages::MessagesPage,
            DeltaView,
            conversations::ConversationsSync,
            conversations::CreateRequest,
            conversations::RenameRequest,
            messages::MessageRequest,
            messages::DeltaRequest,
            messages::CompleteRequest,
            sync::Tombstone,
            sync::SyncCollections,
            sync::SyncResponse,
        ),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            PreconditionFailed,
            PayloadTooLarge,
            UnsupportedMediaType,
            ValidationFailed,
            RateLimited,
            Unavailable,
        )
    ),
    tags(
        (name = "operations", description = "Health, readiness, metrics, statistics, sessions, this document and the dashboard"),
        (name = "stream", description = "The Server-Sent-Events stream"),
        (name = "events", description = "Generic publish and the event log"),
        (name = "features", description = "Features (work items)"),
        (name = "tracks", description = "Tracks (work items)"),
        (name = "spikes", description = "Spikes (work items)"),
        (name = "broadcast", description = "The compatibility broadcast API for work items"),
        (name = "files", description = "Shared files and their edit locks"),
        (name = "conversations", description = "Conversations and streaming messages"),
        (name = "sync", description = "Snapshots: every change after an event cursor"),
        (name = "subscriptions", description = "Subscriptions on channels: signed webhooks that wake workers, and pull subscriptions worker pools claim from"),
        (name = "mercure", description = "The Mercure hub (draft-dunglas-mercure-07), on with --mercure-publisher-jwt-key; authorized by its own JWTs, see docs/mercure.md"),
    ),
)]
pub struct ApiDoc;

/// The serialised document, built once.
pub fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| build().to_json().expect("the OpenAPI document serialises"))
}

/// The document: every route of the table, documented by its handler's
/// annotation under the method and path the table declares, with what the
/// gate asks of it; then the work-item paths expanded and optional bodies
/// marked.
fn build() -> utoipa::openapi::OpenApi {
    let mut openapi = ApiDoc::openapi();
    add_security_schemes(&mut openapi);
    for route in routes().routes() {
        let (operations, rest) = route.documented();
        for (path, mut operation) in operations {
            document_gate(&mut operation, route);
            openapi
                .paths
                .add_path_operation(path, vec![route.verb().openapi()], operation);
        }
        openapi.merge(rest);
    }
    OptionalBodies.modify(&mut openapi);
    openapi
}

/// A body the handler takes as `Option<T>` (`JsonBody<Option<T>>`: empty or
/// `null` means the defaults) comes out of utoipa as a required
/// `oneOf: [null, T]`; this documents it the usual way, as `T` with
/// `required: false`, which client generators handle.
struct OptionalBodies;

impl Modify for OptionalBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let null = serde_json::json!({"type": "null"});
        for item in openapi.paths.paths.values_mut() {
            for operation in operations(item) {
                let Some(body) = operation.request_body.take() else {
                    continue;
                };
                let mut value = serde_json::to_value(&body).expect("a request body serialises");
                let mut optional = false;
                if let Some(contents) = value["content"].as_object_mut() {
                    for content in contents.values_mut() {
                        let branches = content["schema"]["oneOf"].as_array().cloned();
                        if let Some([first, second]) = branches.as_deref() {
                            let inner = match (first == &null, second == &null) {
                                (true, false) => second.clone(),
                                (false, true) => first.clone(),
                                _ => continue,
                            };
                            content["schema"] = inner;
                            optional = true;
                        }
                    }
                }
                if optional {
                    value["required"] = Value::Bool(false);
                }
                operation.request_body =
                    Some(serde_json::from_value(value).expect("still a request body"));
            }
        }
    }
}

// ----- the gate: authentication, scopes, the write rate -----

/// The credentials the gate takes.
fn add_security_schemes(openapi: &mut utoipa::openapi::OpenApi) {
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("token or JWT")
                .description(Some(
                    "`Authorization: Bearer <credential>`: a token of the tokens file, or a JWT \
                     from the app's identity provider (`--jwt-*`); with an authorize callback, \
                     the app's session cookie may stand in (docs/security.md)",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        "access_token",
        SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
            "access_token",
            "The token as a query parameter, for `EventSource`",
        ))),
    );
    components.add_security_scheme(
        "cookie",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            "switchboard_token",
            "The token as a cookie",
        ))),
    );
    components.add_security_scheme(
        "ticket",
        SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
            "ticket",
            "A single-use stream ticket from `POST /api/stream-tickets`, for `EventSource`",
        ))),
    );
}

/// Documents what the gate does in front of a route, from its declared
/// [`Need`]: no credential for a public route; otherwise the credentials it
/// takes, 401 and 403, and 429 on a write.
fn document_gate(operation: &mut Operation, route: &Route) {
    let open = SecurityRequirement::default();
    if route.need() == Need::Public {
        operation.security = Some(vec![open]);
        return;
    }
    let scheme = |name: &str| SecurityRequirement::new::<_, _, &str>(name, []);
    // `{}` first: without a tokens file no credential is needed.
    let mut security = vec![
        open,
        scheme("bearer"),
        scheme("access_token"),
        scheme("cookie"),
    ];
    if route.need() == Need::Stream {
        security.push(scheme("ticket"));
    }
    operation.security = Some(security);
    let mut gate = vec![("401", "Unauthorized"), ("403", "Forbidden")];
    if route.verb().writes() {
        gate.push(("429", "RateLimited"));
    }
    let responses = &mut operation.responses.responses;
    for (status, response) in gate {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/responses/{response}"))));
    }
}

/// The operations of a path item.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.head.as_mut(),
        item.post.as_mut(),
        item.put.as_mut(),
        item.patch.as_mut(),
        item.delete.as_mut(),
    ]
    .into_iter()
    .flatten()
}
