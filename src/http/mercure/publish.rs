//! Publishing to the Mercure hub: `POST /.well-known/mercure`, a form
//! (`topic`, `data`, `private`, `id`, `type`, `retry`) authorized by a
//! publisher JWT (header, or the cookie from the same origin), stored as an
//! event in the log through `app::mercure`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::{Grant, Source};
use super::{all, hub, link, pairs, Mercure};
use crate::app;
use crate::app::Actor;
use crate::domain::mercure::{any_matches, new_update_id, Update};
use crate::domain::{AgentId, DomainError};
use crate::http::error::ApiError;
use crate::http::AppState;

/// `POST /.well-known/mercure`: publishes an update (a form: `topic`
/// repeated, `data`, `private`, `id`, `type`, `retry`); answers its id.
#[utoipa::path(
    post,
    path = "/.well-known/mercure",
    tag = "mercure",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`topic` (repeated: the first is canonical), `data`, `private`, `id`, `type`, `retry`"),
    responses(
        (status = 200, description = "The update's id", content_type = "text/plain", body = String),
        (status = 400, response = crate::http::described::BadRequest),
        (status = 401, response = crate::http::described::Unauthorized),
        (status = 403, response = crate::http::described::Forbidden),
        (status = 404, response = crate::http::described::NotFound),
        (status = 409, description = "The update id was used before", body = crate::http::error::ErrorBody),
        crate::http::described::BodyErrors,
    ),
)]
pub async fn publish(
    req: HttpRequest,
    state: web::Data<AppState>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let mercure = hub(&state)?;
    require_form(&req)?;
    let grant = publisher_grant(mercure, &req, &state)?;
    let fields = read_form(&req, &state, &mut payload).await?;
    let update = update_of(&fields)?;
    update.check()?;
    may_publish(&grant, &update)?;
    let actor = Actor::new(publisher(&grant), None);
    let id = update.id.clone();
    state
        .writer
        .write(move |tx| app::mercure::publish(tx, &actor, &update))
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(link(&req))
        .content_type("text/plain; charset=utf-8")
        .body(id))
}

/// Refuses a body that is not `application/x-www-form-urlencoded`.
fn require_form(req: &HttpRequest) -> Result<(), ApiError> {
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
        .unwrap_or(false);
    if !form {
        return Err(ApiError::UnsupportedMediaType {
            expected: "application/x-www-form-urlencoded",
        });
    }
    Ok(())
}

/// The publisher's token's grant; one from a cookie only for a request
/// from this origin (`same_origin`).
fn publisher_grant(
    mercure: &Mercure,
    req: &HttpRequest,
    state: &AppState,
) -> Result<Grant, ApiError> {
    let grant = mercure.keys.publisher(req)?.ok_or_else(|| {
        ApiError::Unauthorized(
            "a publisher JWT is required (Authorization: Bearer <JWT>, or the mercureAuthorization cookie)".into(),
        )
    })?;
    if grant.source == Some(Source::Cookie) {
        same_origin(req, state)?;
    }
    Ok(grant)
}

/// The form's fields, read within the body limit.
async fn read_form(
    req: &HttpRequest,
    state: &AppState,
    payload: &mut web::Payload,
) -> Result<Vec<(String, String)>, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = crate::http::extract::read_body(payload, state.max_body, declared).await?;
    Ok(pairs(&body))
}

/// The update a publish form describes (not checked yet): a new id when it
/// gives none, and the first value of every field but `topic`.
fn update_of(fields: &[(String, String)]) -> Result<Update, DomainError> {
    let retry =
        match all(fields, "retry").into_iter().next() {
            None => None,
            Some(text) => Some(text.trim().parse::<u64>().map_err(|_| {
                DomainError::validation("retry", "must be a number of milliseconds")
            })?),
        };
    Ok(Update {
        topics: all(fields, "topic"),
        data: all(fields, "data").into_iter().next().unwrap_or_default(),
        private: fields.iter().any(|(k, _)| k == "private"),
        id: all(fields, "id")
            .into_iter()
            .next()
            .unwrap_or_else(new_update_id),
        event_type: all(fields, "type")
            .into_iter()
            .next()
            .filter(|t| !t.is_empty()),
        retry,
    })
}

/// Refuses the update unless the grant's `mercure.publish` covers every
/// one of its topics.
fn may_publish(grant: &Grant, update: &Update) -> Result<(), DomainError> {
    if grant.publish.is_empty() {
        return Err(DomainError::Forbidden(
            "the JWT has no mercure.publish claim: it may not publish".into(),
        ));
    }
    if let Some(topic) = update
        .topics
        .iter()
        .find(|t| !any_matches(&grant.publish, std::slice::from_ref(t)))
    {
        return Err(DomainError::Forbidden(format!(
            "mercure.publish of the JWT does not cover the topic {topic}; nothing was published"
        )));
    }
    Ok(())
}

/// The agent an update is published as: the token's `sub` when it is a
/// valid agent id, else `mercure`.
fn publisher(grant: &Grant) -> AgentId {
    grant
        .subject
        .as_deref()
        .and_then(|s| AgentId::parse("sub", s).ok())
        .unwrap_or_else(|| AgentId::parse("sub", "mercure").expect("valid"))
}

/// A publish authorized by a cookie must come from this origin (or one
/// allowed with `--cors-origin`): the spec's CSRF rule.
fn same_origin(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let claimed = req
        .headers()
        .get(header::ORIGIN)
        .or_else(|| req.headers().get(header::REFERER))
        .and_then(|v| v.to_str().ok())
        .and_then(url_origin);
    let info = req.connection_info();
    let own = format!("{}://{}", info.scheme(), info.host());
    match claimed {
        Some(origin) if origin == own || state.cors_origins.contains(&origin) => Ok(()),
        Some(origin) => Err(DomainError::Forbidden(format!(
            "a publish authorized by cookie must come from this hub's origin, not {origin}"
        ))
        .into()),
        None => Err(DomainError::Forbidden(
            "a publish authorized by cookie needs an Origin or Referer header".into(),
        )
        .into()),
    }
}

/// `scheme://host[:port]` of a URL.
fn url_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    Some(format!("{scheme}://{host}"))
}
