//! The route table: every route the server answers, declared once with its
//! method, path, handler and what it needs from a token ([`Need`]). Everything
//! else about routes is derived from it:
//!
//! - the router and the `Allow` header of every 405 ([`register`]);
//! - what the gate demands of a request ([`Routes::demand`], used by
//!   `auth.rs`);
//! - which request lines open a stream, to be served on a lean connection
//!   ([`Routes::stream_routes`], handed to `connection/` by `startup.rs`);
//! - the OpenAPI paths ([`Route::documented`], used by `openapi.rs`): each
//!   operation comes from its handler's `#[utoipa::path]` annotation and is
//!   filed under the method and path declared here.
//!
//! A route exists only as a [`Route`], and a `Route` is built only by
//! `route!` in [`table`], which takes the `Need`: a route without a declared
//! need does not compile. A need that names a channel by a path parameter the
//! path lacks does not compile either. The gate fails closed: a request the
//! router would hand to a resource this table does not declare is refused.
//!
//! This module must never hold handler logic, nor find a channel by splitting
//! the request path: channels come from the parameters the router captures.

use std::collections::HashMap;
use std::sync::LazyLock;

use actix_web::dev::{Path, ResourceDef, Url};
use actix_web::http::{Method, Uri};
use actix_web::{web, HttpRequest, HttpResponse};
use utoipa::openapi::path::{HttpMethod, Operation, PathItem};
use utoipa::openapi::OpenApi;

use super::{
    assets, conversations, ds_subscriptions, durable, events, files, health, mercure, messages,
    ops, stream, subscriptions, sync, tickets, work_items,
};
use crate::http::error::ApiError;

/// The values `{collection}` takes: the work-item collections.
const WORK_ITEM_COLLECTIONS: &str = "features|tracks|spikes";

/// The HTTP methods routes are declared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

impl Verb {
    pub fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Head => Method::HEAD,
            Verb::Options => Method::OPTIONS,
            Verb::Post => Method::POST,
            Verb::Put => Method::PUT,
            Verb::Patch => Method::PATCH,
            Verb::Delete => Method::DELETE,
        }
    }

    pub fn openapi(self) -> HttpMethod {
        match self {
            Verb::Get => HttpMethod::Get,
            Verb::Head => HttpMethod::Head,
            Verb::Options => HttpMethod::Options,
            Verb::Post => HttpMethod::Post,
            Verb::Put => HttpMethod::Put,
            Verb::Patch => HttpMethod::Patch,
            Verb::Delete => HttpMethod::Delete,
        }
    }

    /// Whether a request with this method changes something (the write rate
    /// applies, and the document lists 429).
    pub fn writes(self) -> bool {
        !matches!(self, Verb::Get | Verb::Head | Verb::Options)
    }

    /// Takes this method's operation out of a path item.
    fn take(self, item: &mut PathItem) -> Option<Operation> {
        match self {
            Verb::Get => item.get.take(),
            Verb::Head => item.head.take(),
            Verb::Options => item.options.take(),
            Verb::Post => item.post.take(),
            Verb::Put => item.put.take(),
            Verb::Patch => item.patch.take(),
            Verb::Delete => item.delete.take(),
        }
    }
}

/// Which channel a scoped route reads or writes, derived from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Always this channel: `files`, `conversations`, `presence`.
    Named(&'static str),
    /// The value of this path parameter: `{collection}`, `{channel}`.
    Param(&'static str),
    /// `conversation:{id}` (one conversation's messages), the id being this
    /// path parameter.
    Conversation(&'static str),
}

impl Channel {
    /// The path parameter this channel is taken from, if any.
    const fn param(self) -> Option<&'static str> {
        match self {
            Channel::Named(_) => None,
            Channel::Param(name) | Channel::Conversation(name) => Some(name),
        }
    }

    fn resolve(self, params: &Path<Url>) -> Option<String> {
        match self {
            Channel::Named(name) => Some(name.to_owned()),
            Channel::Param(name) => params.get(name).map(str::to_owned),
            Channel::Conversation(name) => params.get(name).map(|id| format!("conversation:{id}")),
        }
    }
}

/// What a route needs from the caller's token (with a tokens file; an open
/// server needs nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: anyone may call it, also without a token.
    Public,
    /// A token whose `read` patterns allow the channel.
    Read(Channel),
    /// A token whose `write` patterns allow the channel.
    Write(Channel),
    /// Any valid token: the route spans channels, and the handler narrows its
    /// answer to the token's scopes (filters what it lists, hides what it may
    /// not show, refuses a body naming a channel it may not write).
    Narrowing,
    /// A stream: as `Narrowing`, and a stream ticket is also taken — the
    /// one kind of route a ticket opens (`EventSource` cannot send headers).
    Stream,
    /// Any valid token: the answer describes the server (metrics, counters),
    /// not any channel's data.
    AnyToken,
}

/// Whether a route's answer is a long-lived stream, which the acceptor
/// serves on a lean connection of its own (`connection/`) to spare an idle
/// stream actix-http's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opens {
    /// An answer: the route is served by actix-http, keep-alive included.
    Answer,
    /// A stream, whatever the query.
    Stream,
    /// A stream only when the query holds this `name=value` pair (Durable
    /// Streams' read is a stream with `live=sse` and an answer without).
    StreamWith(&'static str),
}

impl Need {
    /// The path parameter this need takes its channel from, if any.
    const fn param(self) -> Option<&'static str> {
        match self {
            Need::Read(channel) | Need::Write(channel) => channel.param(),
            Need::Public | Need::Narrowing | Need::Stream | Need::AnyToken => None,
        }
    }
}

/// Whether `path` has the parameter `{name}`; `route!` checks it at compile
/// time.
const fn has_param(path: &str, name: &str) -> bool {
    let (path, name) = (path.as_bytes(), name.as_bytes());
    let mut start = 0;
    while start + name.len() + 2 <= path.len() {
        if path[start] == b'{' && path[start + name.len() + 1] == b'}' {
            let mut i = 0;
            while i < name.len() && path[start + 1 + i] == name[i] {
                i += 1;
            }
            if i == name.len() {
                return true;
            }
        }
        start += 1;
    }
    false
}

/// Whether `need` takes its channel only from parameters `path` has.
const fn declares(path: &str, need: Need) -> bool {
    match need.param() {
        Some(name) => has_param(path, name),
        None => true,
    }
}

/// One route: a method and path, its handler, and what it needs.
pub struct Route {
    verb: Verb,
    /// The path as documented: `{collection}` for the work-item collections.
    path: &'static str,
    need: Need,
    /// Set with [`Route::opens`] on the few routes that stream.
    opens: Opens,
    /// The handler, without its method guard.
    handler: fn() -> actix_web::Route,
    /// The `#[utoipa::path]` annotations documenting it (the handler's own,
    /// or one per work-item collection), as a document.
    annotation: fn() -> OpenApi,
}

/// Declares a route: `route!(Get "/api/files", files::list_files, need)`.
/// The only way to build a [`Route`].
macro_rules! route {
    ($verb:ident $path:literal, $($handler:ident)::+, $need:expr) => {
        route!($verb $path, $($handler)::+, $need, docs($($handler)::+))
    };
    ($verb:ident $path:literal, $($handler:ident)::+, $need:expr, docs($($($doc:ident)::+),+)) => {{
        const _: () = assert!(
            declares($path, $need),
            "this route's need names a path parameter its path lacks",
        );
        Route {
            verb: Verb::$verb,
            path: $path,
            need: $need,
            opens: Opens::Answer,
            handler: || web::route().to($($handler)::+),
            annotation: || {
                #[derive(utoipa::OpenApi)]
                #[openapi(paths($($($doc)::+),+))]
                struct Annotation;
                <Annotation as utoipa::OpenApi>::openapi()
            },
        }
    }};
}

/// Every route, in the order the router tries them (a fixed segment such as
/// `/api/files/delete` before the parameter that would also match it) and
/// the order of the OpenAPI document. Within one path, the order of the
/// methods is the order of `Allow`.
fn table() -> Vec<Route> {
    use Channel::{Conversation, Named, Param};
    use Need::{AnyToken, Narrowing, Public, Read, Stream, Write};
    use Opens::StreamWith;
    const COLLECTION: Channel = Param("collection");
    const FILES: Channel = Named("files");
    const DURABLE: Channel = Named("durable-streams");
    const CONVERSATIONS: Channel = Named("conversations");
    const MESSAGES: Channel = Conversation("id");
    vec![
        route!(Get "/", assets::dashboard, Public),
        route!(Get "/client.js", assets::client_js, Public),
        route!(Get "/client.d.ts", assets::client_types, Public),
        // Mercure authorizes with its own JWTs (mercure/auth.rs), not tokens.
        route!(Get "/.well-known/mercure", mercure::subscribe, Public).opens(Opens::Stream),
        route!(Post "/.well-known/mercure", mercure::publish, Public),
        route!(Get "/.well-known/mercure/subscriptions", mercure::subscriptions, Public),
        route!(Get "/.well-known/mercure/subscriptions/{topic}", mercure::topic_subscriptions, Public),
        route!(Get "/.well-known/mercure/subscriptions/{topic}/{subscriber}", mercure::subscription, Public),
        route!(Get "/healthz", health::healthz, Public),
        // Durable Streams: a token's scopes name the channel `durable-streams`.
        // Durable Streams subscriptions, before the streams' catch-all. A
        // callback, ack or release carries its wake's token instead.
        route!(Get "/v1/stream/__ds/jwks.json", ds_subscriptions::get_jwks, Public),
        route!(Put "/v1/stream/__ds/subscriptions/{id}", ds_subscriptions::put_subscription, Write(DURABLE)),
        route!(Get "/v1/stream/__ds/subscriptions/{id}", ds_subscriptions::get_subscription, Read(DURABLE)),
        route!(Delete "/v1/stream/__ds/subscriptions/{id}", ds_subscriptions::delete_subscription, Write(DURABLE)),
        route!(Post "/v1/stream/__ds/subscriptions/{id}/streams", ds_subscriptions::add_subscription_streams, Write(DURABLE)),
        route!(Delete "/v1/stream/__ds/subscriptions/{id}/streams/{stream}", ds_subscriptions::remove_subscription_stream, Write(DURABLE)),
        route!(Post "/v1/stream/__ds/subscriptions/{id}/claim", ds_subscriptions::claim_subscription, Write(DURABLE)),
        route!(Post "/v1/stream/__ds/subscriptions/{id}/callback", ds_subscriptions::subscription_callback, Public),
        route!(Post "/v1/stream/__ds/subscriptions/{id}/ack", ds_subscriptions::ack_subscription, Public),
        route!(Post "/v1/stream/__ds/subscriptions/{id}/release", ds_subscriptions::release_subscription, Public),
        route!(Get "/v1/stream/{path}", durable::read, Read(DURABLE)).opens(StreamWith("live=sse")),
        route!(Head "/v1/stream/{path}", durable::head, Read(DURABLE)),
        route!(Put "/v1/stream/{path}", durable::create, Write(DURABLE)),
        route!(Post "/v1/stream/{path}", durable::append, Write(DURABLE)),
        route!(Delete "/v1/stream/{path}", durable::delete, Write(DURABLE)),
        route!(Options "/v1/stream/{path}", durable::options, Public),
        route!(Get "/readyz", health::readyz, Public),
        route!(Get "/metrics", ops::metrics, AnyToken),
        route!(Get "/openapi.json", ops::openapi_json, Public),
        route!(Get "/api/stats", ops::stats, AnyToken),
        route!(Get "/api/sessions", ops::sessions, Read(Named("presence"))),
        route!(Post "/api/stream-tickets", tickets::issue_ticket, Narrowing),
        route!(Get "/api/stream", stream::open_stream, Stream).opens(Opens::Stream),
        route!(Post "/api/channels/{channel}/events", events::publish_event, Write(Param("channel"))),
        route!(Post "/api/events/batch", events::publish_batch, Narrowing),
        route!(Get "/api/events", events::list_events, Narrowing),
        route!(Get "/api/events/{id}", events::get_event, Narrowing),
        route!(Get "/api/files", files::list_files, Read(FILES)),
        route!(Post "/api/files", files::create_file, Write(FILES)),
        route!(Post "/api/files/delete", files::bulk_delete, Write(FILES)),
        route!(Get "/api/files/{id}", files::get_file, Read(FILES)),
        route!(Put "/api/files/{id}", files::save_file, Write(FILES)),
        route!(Delete "/api/files/{id}", files::delete_file, Write(FILES)),
        route!(Post "/api/files/{id}/lock", files::acquire_lock, Write(FILES)),
        route!(Delete "/api/files/{id}/lock", files::release_lock, Write(FILES)),
        route!(Get "/api/files/{id}/versions", files::list_versions, Read(FILES)),
        route!(Get "/api/files/{id}/versions/{n}", files::get_version, Read(FILES)),
        route!(Get "/api/conversations", conversations::list_conversations, Read(CONVERSATIONS)),
        route!(Post "/api/conversations", conversations::create_conversation, Write(CONVERSATIONS)),
        route!(Get "/api/conversations/sync", conversations::sync_conversations, Read(CONVERSATIONS)),
        route!(Get "/api/conversations/{id}", conversations::get_conversation, Read(CONVERSATIONS)),
        route!(Patch "/api/conversations/{id}", conversations::rename_conversation, Write(CONVERSATIONS)),
        route!(Delete "/api/conversations/{id}", conversations::delete_conversation, Write(CONVERSATIONS)),
        route!(Get "/api/conversations/{id}/messages", messages::list_messages, Read(MESSAGES)),
        route!(Post "/api/conversations/{id}/messages", messages::create_message, Write(MESSAGES)),
        route!(Post "/api/conversations/{id}/messages/{message_id}/delta", messages::append_delta, Write(MESSAGES)),
        route!(Post "/api/conversations/{id}/messages/{message_id}/complete", messages::complete_message, Write(MESSAGES)),
        route!(Get "/api/sync", sync::sync, Narrowing),
        // Subscriptions on channels: the handlers check the caller may read
        // every channel a subscription takes.
        route!(Get "/api/subscriptions", subscriptions::list_subscriptions, Narrowing),
        route!(Get "/api/subscriptions/{id}", subscriptions::get_subscription, Narrowing),
        route!(Put "/api/subscriptions/{id}", subscriptions::put_subscription, Narrowing),
        route!(Delete "/api/subscriptions/{id}", subscriptions::delete_subscription, Narrowing),
        route!(Post "/api/subscriptions/{id}/retry", subscriptions::retry_subscription, Narrowing),
        route!(Post "/api/subscriptions/{id}/claims", subscriptions::claim_events, Narrowing),
        route!(Post "/api/subscriptions/{id}/claims/{claim}/ack", subscriptions::ack_claim, Narrowing),
        route!(Post "/api/subscriptions/{id}/claims/{claim}/release", subscriptions::release_claim, Narrowing),
        route!(Get "/api/webhook-keys", subscriptions::webhook_keys, Public),
        route!(Post "/api/broadcast/{collection}/{id}", work_items::broadcast_update, Write(COLLECTION),
            docs(work_items::docs::features::broadcast_feature_update, work_items::docs::tracks::broadcast_track_update, work_items::docs::spikes::broadcast_spike_update)),
        route!(Post "/api/broadcast/{collection}/{id}/status", work_items::broadcast_status, Write(COLLECTION),
            docs(work_items::docs::features::broadcast_feature_status, work_items::docs::tracks::broadcast_track_status, work_items::docs::spikes::broadcast_spike_status)),
        route!(Post "/api/broadcast/{collection}/{id}/links", work_items::broadcast_link, Write(COLLECTION),
            docs(work_items::docs::features::broadcast_feature_link, work_items::docs::tracks::broadcast_track_link, work_items::docs::spikes::broadcast_spike_link)),
        route!(Get "/api/{collection}", work_items::list_items, Read(COLLECTION),
            docs(work_items::docs::features::list_features, work_items::docs::tracks::list_tracks, work_items::docs::spikes::list_spikes)),
        route!(Post "/api/{collection}", work_items::create_item, Write(COLLECTION),
            docs(work_items::docs::features::create_feature, work_items::docs::tracks::create_track, work_items::docs::spikes::create_spike)),
        route!(Get "/api/{collection}/{id}", work_items::get_item, Read(COLLECTION),
            docs(work_items::docs::features::get_feature, work_items::docs::tracks::get_track, work_items::docs::spikes::get_spike)),
        route!(Patch "/api/{collection}/{id}", work_items::patch_item, Write(COLLECTION),
            docs(work_items::docs::features::update_feature, work_items::docs::tracks::update_track, work_items::docs::spikes::update_spike)),
        route!(Delete "/api/{collection}/{id}", work_items::delete_item, Write(COLLECTION),
            docs(work_items::docs::features::delete_feature, work_items::docs::tracks::delete_track, work_items::docs::spikes::delete_spike)),
        route!(Post "/api/{collection}/{id}/status", work_items::set_status, Write(COLLECTION),
            docs(work_items::docs::features::set_feature_status, work_items::docs::tracks::set_track_status, work_items::docs::spikes::set_spike_status)),
        route!(Post "/api/{collection}/{id}/links", work_items::add_link, Write(COLLECTION),
            docs(work_items::docs::features::add_feature_link, work_items::docs::tracks::add_track_link, work_items::docs::spikes::add_spike_link)),
        route!(Delete "/api/{collection}/{id}/links/{linked_id}", work_items::remove_link, Write(COLLECTION),
            docs(work_items::docs::features::remove_feature_link, work_items::docs::tracks::remove_track_link, work_items::docs::spikes::remove_spike_link)),
        route!(Post "/api/{collection}/{id}/comments", work_items::add_comment, Write(COLLECTION),
            docs(work_items::docs::features::add_feature_comment, work_items::docs::tracks::add_track_comment, work_items::docs::spikes::add_spike_comment)),
    ]
}

impl Route {
    /// Marks a route as opening a stream; only [`table`] calls it.
    fn opens(mut self, opens: Opens) -> Route {
        self.opens = opens;
        self
    }

    pub fn verb(&self) -> Verb {
        self.verb
    }

    pub fn need(&self) -> Need {
        self.need
    }

    /// The concrete paths this route serves: itself, or one per work-item
    /// collection for a `{collection}` path.
    pub fn documented_paths(&self) -> Vec<String> {
        if self.path.contains("{collection}") {
            WORK_ITEM_COLLECTIONS
                .split('|')
                .map(|collection| self.path.replace("{collection}", collection))
                .collect()
        } else {
            vec![self.path.to_owned()]
        }
    }

    /// The operations the annotations document, one per documented path (in
    /// the order of `documented_paths`), and the rest of their document (the
    /// schemas they refer to).
    ///
    /// # Panics
    /// When the annotations name another method or other paths than the
    /// table: the document would then describe a route the server does not
    /// have.
    pub fn documented(&self) -> (Vec<(String, Operation)>, OpenApi) {
        let mut annotation = (self.annotation)();
        let mut paths = std::mem::take(&mut annotation.paths.paths);
        let wanted = self.documented_paths();
        let operations: Option<Vec<(String, Operation)>> = wanted
            .into_iter()
            .map(|path| {
                let operation = paths.get_mut(&path).and_then(|item| self.verb.take(item))?;
                Some((path, operation))
            })
            .collect();
        match operations {
            Some(operations) if operations.len() == paths.len() => (operations, annotation),
            _ => panic!(
                "the #[utoipa::path] annotations of {:?} {} document other routes",
                self.verb, self.path
            ),
        }
    }
}

/// The routes of one path: one actix resource.
struct Resource {
    /// As routed, with the values `{collection}` takes.
    def: ResourceDef,
    /// As declared and documented (`/api/channels/{channel}/events`): what
    /// the request log and the metrics name it by.
    path: &'static str,
    /// Indices into [`Routes::routes`], in declaration order.
    routes: Vec<usize>,
    /// The declared methods, as `Allow` names them.
    allow: String,
}

/// The table, grouped into resources.
pub struct Routes {
    routes: Vec<Route>,
    resources: Vec<Resource>,
    /// Resource index by routed pattern (what `HttpRequest::match_pattern`
    /// answers).
    by_pattern: HashMap<String, usize>,
}

/// What the gate demands of one request, from the route the router will
/// give it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Demand {
    /// Nothing: a public route (or a method a public path lacks: 405).
    Nothing,
    /// A valid token, whatever its scopes: a narrowing or server-wide route,
    /// a method the path lacks (405) or a path no route has (404).
    Token,
    /// A valid token or a stream ticket: a route that opens a stream.
    Stream,
    Read(String),
    Write(String),
    /// The router knows the path but the table declares no need for it (or
    /// the need's channel cannot be found): refused, whoever asks.
    Refused,
}

/// The routed pattern of a documented path.
fn pattern(path: &str) -> String {
    path.replace(
        "{collection}",
        &format!("{{collection:{WORK_ITEM_COLLECTIONS}}}"),
    )
    .replace("/v1/stream/{path}", "/v1/stream/{path:.+}")
    .replace("/streams/{stream}", "/streams/{stream:.+}")
    // A channel may hold `/` (`agents/review`): as is, or as `%2F`.
    .replace("/api/channels/{channel}/", "/api/channels/{channel:.+}/")
}

impl Routes {
    fn new(routes: Vec<Route>) -> Routes {
        let mut resources: Vec<Resource> = Vec::new();
        let mut by_pattern = HashMap::new();
        for (index, route) in routes.iter().enumerate() {
            let pattern = pattern(route.path);
            let at = *by_pattern.entry(pattern.clone()).or_insert_with(|| {
                resources.push(Resource {
                    def: ResourceDef::new(pattern),
                    path: route.path,
                    routes: Vec::new(),
                    allow: String::new(),
                });
                resources.len() - 1
            });
            let resource = &mut resources[at];
            assert!(
                resource
                    .routes
                    .iter()
                    .all(|&other| routes[other].verb != route.verb),
                "{:?} {} is declared twice",
                route.verb,
                route.path
            );
            if !resource.allow.is_empty() {
                resource.allow.push_str(", ");
            }
            resource.allow.push_str(route.verb.method().as_str());
            resource.routes.push(index);
        }
        Routes {
            routes,
            resources,
            by_pattern,
        }
    }

    /// Every route, in declaration order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The routes that open a stream, as method, declared path and the
    /// `name=value` pair the query must hold, if any.
    pub fn stream_routes(
        &self,
    ) -> impl Iterator<Item = (Method, &'static str, Option<&'static str>)> + '_ {
        self.routes.iter().filter_map(|route| match route.opens {
            Opens::Answer => None,
            Opens::Stream => Some((route.verb.method(), route.path, None)),
            Opens::StreamWith(pair) => Some((route.verb.method(), route.path, Some(pair))),
        })
    }

    /// The declared path of the resource the router matched by `pattern`
    /// (`/api/{collection}` for `/api/{collection:features|tracks|spikes}`).
    pub fn declared_path(&self, pattern: &str) -> Option<&'static str> {
        self.by_pattern
            .get(pattern)
            .map(|&at| self.resources[at].path)
    }

    /// What the gate demands of a request with this method and URI, which the
    /// router matches to the resource with this pattern (`None`: no resource,
    /// 404).
    pub fn demand(&self, method: &Method, pattern: Option<&str>, uri: &Uri) -> Demand {
        let Some(pattern) = pattern else {
            return Demand::Token;
        };
        let Some(resource) = self.by_pattern.get(pattern).map(|&at| &self.resources[at]) else {
            return Demand::Refused;
        };
        let mut routes = resource.routes.iter().map(|&index| &self.routes[index]);
        let Some(route) = routes.clone().find(|route| route.verb.method() == method) else {
            return if routes.all(|route| route.need == Need::Public) {
                Demand::Nothing
            } else {
                Demand::Token
            };
        };
        let mut params = Path::new(Url::new(uri.clone()));
        if !resource.def.capture_match_info(&mut params) {
            return Demand::Refused;
        }
        let channel = |channel: Channel| channel.resolve(&params);
        match route.need {
            Need::Public => Demand::Nothing,
            Need::Narrowing | Need::AnyToken => Demand::Token,
            Need::Stream => Demand::Stream,
            Need::Read(of) => channel(of).map_or(Demand::Refused, Demand::Read),
            Need::Write(of) => channel(of).map_or(Demand::Refused, Demand::Write),
        }
    }
}

/// The route table, built once.
pub fn routes() -> &'static Routes {
    static ROUTES: LazyLock<Routes> = LazyLock::new(|| Routes::new(table()));
    &ROUTES
}

/// Registers every resource of the table, each answering a method it lacks
/// with 405 and `Allow`, and 404 `route_not_found` for any other path.
pub fn register(cfg: &mut web::ServiceConfig) {
    let routes = routes();
    for resource in &routes.resources {
        let pattern = resource.def.pattern().unwrap_or_default();
        let service = resource.routes.iter().fold(
            web::resource(pattern).default_service(not_allowed(&resource.allow)),
            |service, &index| {
                let route = &routes.routes[index];
                service.route((route.handler)().method(route.verb.method()))
            },
        );
        cfg.service(service);
    }
    cfg.default_service(web::to(not_found));
}

async fn not_found(_req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound)
}

/// 405 with the `Allow` header naming the methods the resource answers.
fn not_allowed(allow: &'static str) -> actix_web::Route {
    web::route()
        .to(move || async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow }) })
}

#[cfg(test)]
mod tests;
