//! The OpenAPI operations of the work-item routes: one set per collection
//! (`/api/features`, `/api/tracks`, `/api/spikes`), each with its own
//! schemas (`Feature`, `FeatureCreate`, `FeatureList`, …), which is what a
//! generated client wants. The router serves the three with one handler per
//! operation (`{collection}` in the path); the route table files these
//! operations under those routes (`routes.rs`).
//!
//! The functions below only carry documentation: utoipa describes an
//! operation by annotating a function, and the three collections share
//! their handlers. The request bodies are parsed per kind by
//! `ItemFields::parse` (which tells `null` from a missing field); the
//! `*Create`/`*Patch` types here describe them.

// Documentation carriers: never called, never built.
#![allow(dead_code)]

use serde::Deserialize;
use utoipa::ToSchema;

use super::super::described::{
    BodyErrors, Errors, IdempotencyHeader, IdentityHeaders, IfMatchHeader, NotFound,
    PreconditionFailed,
};
use super::{
    BroadcastView, CommentRequest, FeatureList, LinkRequest, ListQuery, RemoveLinkQuery, SpikeList,
    StatusRequest, TrackList,
};
use crate::domain::work_items::{Priority, Status};
use crate::http::error::ErrorBody;
use crate::views::{DeletedView, FeatureView, SpikeView, TrackView};

/// The operations of one collection, in a module named after it.
macro_rules! work_item_operations {
    (
        $collection:ident, $tag:literal,
        item: $item:ty, list: $list:ty, create: $create:ty, patch: $patch:ty,
        paths: [$list_path:literal, $item_path:literal, $status_path:literal, $links_path:literal,
            $link_path:literal, $comments_path:literal, $bc_path:literal, $bc_status_path:literal,
            $bc_links_path:literal $(,)?],
        ids: [$list_id:ident, $create_id:ident, $get_id:ident, $update_id:ident, $delete_id:ident,
            $status_id:ident, $link_id:ident, $unlink_id:ident, $comment_id:ident,
            $bc_update_id:ident, $bc_status_id:ident, $bc_link_id:ident $(,)?] $(,)?
    ) => {
        pub mod $collection {
            use super::*;

            /// The live items of this collection, oldest first, filtered by the query; `X-Event-Cursor` is the newest event the list includes.
            #[utoipa::path(
                get,
                path = $list_path,
                tag = $tag,
                params(ListQuery, IdentityHeaders),
                responses(
                (status = 200, description = "The live items", body = $list, headers(("X-Event-Cursor" = i64, description = "The newest event the list includes"))),
                Errors,
                ),
            )]
            pub fn $list_id() {}

            /// Creates an item (201) and publishes `<kind>_created` on the collection's channel.
            #[utoipa::path(
                post,
                path = $list_path,
                tag = $tag,
                params(IdentityHeaders, IdempotencyHeader),
                request_body = $create,
                responses(
                (status = 201, description = "The new item", body = $item, headers(("ETag" = String, description = "`\"<version>\"`"))),
                (status = 409, description = "`already_exists`: a live work item has this id", body = ErrorBody),
                Errors,
                BodyErrors,
                ),
            )]
            pub fn $create_id() {}

            /// The item, with `ETag` and `X-Event-Cursor`.
            #[utoipa::path(
                get,
                path = $item_path,
                tag = $tag,
                params(("id" = String, Path, description = "The item's id"), IdentityHeaders),
                responses(
                (status = 200, description = "The item", body = $item, headers(("ETag" = String, description = "`\"<version>\"`"), ("X-Event-Cursor" = i64, description = "The newest event the answer includes"))),
                (status = 404, response = NotFound),
                Errors,
                ),
            )]
            pub fn $get_id() {}

            /// A partial update: the fields given change (`<kind>_updated`, and `status_changed` with a new status). Nothing is published when nothing changed.
            #[utoipa::path(
                patch,
                path = $item_path,
                tag = $tag,
                params(("id" = String, Path, description = "The item's id"), IdentityHeaders, IfMatchHeader, IdempotencyHeader),
                request_body = $patch,
                responses(
                (status = 200, description = "The item as it is now", body = $item, headers(("ETag" = String, description = "`\"<version>\"`"))),
                (status = 404, response = NotFound),
                (status = 412, response = PreconditionFailed),
                Errors,
                BodyErrors,
                ),
            )]
            pub fn $update_id() {}

            /// Deletes the item (`<kind>_deleted`); a tombstone stays for `/api/sync`.
            #[utoipa::path(
                delete,
                path = $item_path,
                tag = $tag,
                params(("id" = String, Path, description = "The item's id"), IdentityHeaders, IfMatchHeader, IdempotencyHeader),
                responses(
                (status = 200, description = "The tombstone", body = DeletedView, headers(("ETag" = String, description = "`\"<version>\"`"))),
                (status = 404, response = NotFound),
                (status = 412, response = PreconditionFailed),
                Errors,
                ),
            )]
            pub fn $delete_id() {}

            /// Sets the status (`status_changed`; nothing when unchanged).
            #[utoipa::path(
                post,
                path = $status_path,
                tag = $tag,
                params(("id" = String, Path, description = "The item's id"), IdentityHeaders, IfMatchHeader, IdempotencyHeader),
                request_body = StatusRequest,
                responses(
                (status = 200, description = "The item as it is now", body = $item, headers(("ETag" = String, description = "`\"<version>\"`"))),
                (status = 404, response = NotFound),
                (status = 412, response = PreconditionFailed),
                Errors,
                BodyErrors,
                ),
            )]
            pub fn $status_id() {}

            /// Links the item to another live work item of any collection (`link_added`; nothing when the link exists).
            #[utoipa::path(
                post,
                path = $links_path,
                tag = $tag,
                params(("id" = String, Path, description = "The item's id"), IdentityHeaders, IfMatchHeader, IdempotencyHeader),
                request_body = LinkRequest,
                responses(
                (status = 201, description = "The item with the link (also when it already had it)", body = $item, headers(("ETag" = String, description = "`\"<version>\"`"))),
                (status = 404, response = NotFound),
                (status = 412, response = PreconditionFailed),
                Errors,
                BodyErrors,
                ),
            )]
            pub fn $link_id() {}

            /// Removes the links to `linked_id` (of `link_type` when given): `link_removed` for each.
            #[utoipa::path(
                delete,
                path = $link_path,
                tag = $tag,
                params(("id" = String, Path, description = "The item's id"), ("linked_id" = String, Path, description = "The linked item's id"), RemoveLinkQuery, IdentityHeaders, IfMatchHeader, IdempotencyHeader),
                responses(
                (status = 200, description = "The item without the link", body = $item, headers(("ETag" = String, description = "`\"<version>\"`"))),
                (status = 404, response = NotFound),
                (status = 412, response = PreconditionFailed),
                Errors,
                ),
            )]
            pub fn $unlink_id() {}

            /// Adds a comment by the caller's agent (201, `comment_added`).
            #[utoipa::path(
                post,
                path = $comments_path,
                tag = $tag,
                params(("id" = String, Path, description = "The item's id"), IdentityHeaders, IfMatchHeader, IdempotencyHeader),
                request_body = CommentRequest,
                responses(
                (status = 201, description = "The item with the comment", body = $item, headers(("ETag" = String, description = "`\"<version>\"`"))),
                (status = 404, response = NotFound),
                (status = 412, response = PreconditionFailed),
                Errors,
                BodyErrors,
                ),
            )]
            pub fn $comment_id() {}

            /// Compatibility API: like `PATCH` of the item, but creates it (title = its id) when it does not exist, takes no `If-Match`, and answers `{success, event_id, clients_notified, timestamp}`. An `id` field in the body is ignored.
            #[utoipa::path(
                post,
                path = $bc_path,
                tag = "broadcast",
                params(("id" = String, Path, description = "The item's id"), IdentityHeaders, IdempotencyHeader),
                request_body = $patch,
                responses(
                (status = 200, description = "Done; the item was created first when it did not exist", body = BroadcastView),
                (status = 409, description = "`conflict`: the id belongs to a live item of another collection", body = ErrorBody),
                Errors,
                BodyErrors,
                ),
            )]
            pub fn $bc_update_id() {}

            /// Compatibility API: sets the status (`status_changed`); creates the item when it does not exist.
            #[utoipa::path(
                post,
                path = $bc_status_path,
                tag = "broadcast",
                params(("id" = String, Path, description = "The item's id"), IdentityHeaders, IdempotencyHeader),
                request_body = StatusRequest,
                responses(
                (status = 200, description = "Done; the item was created first when it did not exist", body = BroadcastView),
                (status = 409, description = "`conflict`: the id belongs to a live item of another collection", body = ErrorBody),
                Errors,
                BodyErrors,
                ),
            )]
            pub fn $bc_status_id() {}

            /// Compatibility API: adds a link (`link_added`); creates the item when it does not exist.
            #[utoipa::path(
                post,
                path = $bc_links_path,
                tag = "broadcast",
                params(("id" = String, Path, description = "The item's id"), IdentityHeaders, IdempotencyHeader),
                request_body = LinkRequest,
                responses(
                (status = 200, description = "Done; the item was created first when it did not exist", body = BroadcastView),
                (status = 409, description = "`conflict`: the id belongs to a live item of another collection", body = ErrorBody),
                Errors,
                BodyErrors,
                ),
            )]
            pub fn $bc_link_id() {}
        }
    };
}

work_item_operations!(
    features, "features",
    item: FeatureView, list: FeatureList, create: FeatureCreate, patch: FeaturePatch,
    paths: [
        "/api/features", "/api/features/{id}", "/api/features/{id}/status",
        "/api/features/{id}/links", "/api/features/{id}/links/{linked_id}",
        "/api/features/{id}/comments", "/api/broadcast/features/{id}",
        "/api/broadcast/features/{id}/status", "/api/broadcast/features/{id}/links",
    ],
    ids: [
        list_features, create_feature, get_feature, update_feature, delete_feature,
        set_feature_status, add_feature_link, remove_feature_link, add_feature_comment,
        broadcast_feature_update, broadcast_feature_status, broadcast_feature_link,
    ],
);

work_item_operations!(
    tracks, "tracks",
    item: TrackView, list: TrackList, create: TrackCreate, patch: TrackPatch,
    paths: [
        "/api/tracks", "/api/tracks/{id}", "/api/tracks/{id}/status",
        "/api/tracks/{id}/links", "/api/tracks/{id}/links/{linked_id}",
        "/api/tracks/{id}/comments", "/api/broadcast/tracks/{id}",
        "/api/broadcast/tracks/{id}/status", "/api/broadcast/tracks/{id}/links",
    ],
    ids: [
        list_tracks, create_track, get_track, update_track, delete_track,
        set_track_status, add_track_link, remove_track_link, add_track_comment,
        broadcast_track_update, broadcast_track_status, broadcast_track_link,
    ],
);

work_item_operations!(
    spikes, "spikes",
    item: SpikeView, list: SpikeList, create: SpikeCreate, patch: SpikePatch,
    paths: [
        "/api/spikes", "/api/spikes/{id}", "/api/spikes/{id}/status",
        "/api/spikes/{id}/links", "/api/spikes/{id}/links/{linked_id}",
        "/api/spikes/{id}/comments", "/api/broadcast/spikes/{id}",
        "/api/broadcast/spikes/{id}/status", "/api/broadcast/spikes/{id}/links",
    ],
    ids: [
        list_spikes, create_spike, get_spike, update_spike, delete_spike,
        set_spike_status, add_spike_link, remove_spike_link, add_spike_comment,
        broadcast_spike_update, broadcast_spike_status, broadcast_spike_link,
    ],
);

/// `POST /api/features`. Any other field → 422.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureCreate {
    /// 1–64 characters of `[A-Za-z0-9._:-]`; missing → `feat-` and random hex.
    id: Option<String>,
    #[schema(min_length = 1, max_length = 500)]
    title: String,
    /// Default `todo`.
    #[schema(value_type = Status, required = false)]
    status: Option<Status>,
    #[schema(max_length = 100000)]
    description: Option<String>,
    #[schema(value_type = Priority, required = false)]
    priority: Option<Priority>,
    /// At most 50 tags of 1–64 characters.
    #[schema(value_type = Vec<String>, required = false, max_items = 50)]
    tags: Option<Vec<String>>,
    /// An existing track.
    track_id: Option<String>,
}

/// `POST /api/tracks`. Any other field → 422.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackCreate {
    /// 1–64 characters of `[A-Za-z0-9._:-]`; missing → `trk-` and random hex.
    id: Option<String>,
    #[schema(min_length = 1, max_length = 500)]
    title: String,
    /// Default `todo`.
    #[schema(value_type = Status, required = false)]
    status: Option<Status>,
    #[schema(max_length = 100000)]
    description: Option<String>,
}

/// `POST /api/spikes`. Any other field → 422.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpikeCreate {
    /// 1–64 characters of `[A-Za-z0-9._:-]`; missing → `spk-` and random hex.
    id: Option<String>,
    #[schema(min_length = 1, max_length = 500)]
    title: String,
    /// Default `todo`.
    #[schema(value_type = Status, required = false)]
    status: Option<Status>,
    #[schema(max_length = 100000)]
    description: Option<String>,
    #[schema(value_type = Priority, required = false)]
    priority: Option<Priority>,
    /// At most 50 tags of 1–64 characters.
    #[schema(value_type = Vec<String>, required = false, max_items = 50)]
    tags: Option<Vec<String>>,
    /// An existing track.
    track_id: Option<String>,
    #[schema(max_length = 100000)]
    findings: Option<String>,
}

/// A partial update of a feature: the fields given change. Any other field → 422.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturePatch {
    #[schema(value_type = String, required = false, min_length = 1, max_length = 500)]
    title: Option<String>,
    #[schema(value_type = Status, required = false)]
    status: Option<Status>,
    #[schema(max_length = 100000)]
    description: Option<String>,
    #[schema(value_type = Priority, required = false)]
    priority: Option<Priority>,
    #[schema(value_type = Vec<String>, required = false, max_items = 50)]
    tags: Option<Vec<String>>,
    /// An existing track; `null` detaches.
    track_id: Option<String>,
}

/// A partial update of a track: the fields given change. Any other field → 422.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackPatch {
    #[schema(value_type = String, required = false, min_length = 1, max_length = 500)]
    title: Option<String>,
    #[schema(value_type = Status, required = false)]
    status: Option<Status>,
    #[schema(max_length = 100000)]
    description: Option<String>,
}

/// A partial update of a spike: the fields given change. Any other field → 422.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpikePatch {
    #[schema(value_type = String, required = false, min_length = 1, max_length = 500)]
    title: Option<String>,
    #[schema(value_type = Status, required = false)]
    status: Option<Status>,
    #[schema(max_length = 100000)]
    description: Option<String>,
    #[schema(value_type = Priority, required = false)]
    priority: Option<Priority>,
    #[schema(value_type = Vec<String>, required = false, max_items = 50)]
    tags: Option<Vec<String>>,
    /// An existing track; `null` detaches.
    track_id: Option<String>,
    #[schema(max_length = 100000)]
    findings: Option<String>,
}
