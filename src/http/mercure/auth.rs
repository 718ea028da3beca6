//! Mercure's authorization: a JWS from the `Authorization: Bearer` header,
//! else the `authorization` query parameter, else the `mercureAuthorization`
//! cookie (the spec's precedence), verified with the publisher's or the
//! subscriber's key (HS256 secret or RS256 PEM public key). A 401 says what
//! was wrong — missing, malformed, bad signature, expired, wrong algorithm —
//! and never shows the key.

use actix_web::HttpRequest;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::config::{MercureAlgorithm, MercureArgs};
use crate::domain::mercure::Selector;
use crate::http::error::ApiError;

/// Where a token came from; a cookie makes a publish check its origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Header,
    Query,
    Cookie,
}

/// A verified token's Mercure claim.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    pub publish: Vec<Selector>,
    pub subscribe: Vec<Selector>,
    pub payload: Option<Value>,
    /// `exp`, seconds since the epoch.
    pub expires: Option<u64>,
    /// `sub`, shown as the publisher's agent when it is a valid agent id.
    pub subject: Option<String>,
    pub source: Option<Source>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    mercure: Option<MercureClaim>,
    /// Seconds since the epoch; Symfony's tokens carry a fraction.
    exp: Option<f64>,
    sub: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MercureClaim {
    publish: Option<Vec<String>>,
    subscribe: Option<Vec<String>>,
    payload: Option<Value>,
}

/// The two verification keys and their algorithm.
pub struct Keys {
    publisher: DecodingKey,
    subscriber: DecodingKey,
    algorithm: Algorithm,
}

impl Keys {
    /// From the command line; `None` when no publisher key turns the hub on.
    pub fn from_args(args: &MercureArgs) -> anyhow::Result<Option<Keys>> {
        let Some(publisher) = &args.mercure_publisher_jwt_key else {
            return Ok(None);
        };
        if publisher.is_empty() || args.mercure_subscriber_jwt_key.as_deref() == Some("") {
            anyhow::bail!("the Mercure JWT keys must not be empty: anyone could sign tokens");
        }
        let subscriber = args
            .mercure_subscriber_jwt_key
            .as_ref()
            .unwrap_or(publisher);
        let (algorithm, publisher, subscriber) = match args.mercure_jwt_algorithm {
            MercureAlgorithm::Hs256 => (
                Algorithm::HS256,
                DecodingKey::from_secret(publisher.as_bytes()),
                DecodingKey::from_secret(subscriber.as_bytes()),
            ),
            MercureAlgorithm::Rs256 => (
                Algorithm::RS256,
                rsa_key("--mercure-publisher-jwt-key", publisher)?,
                rsa_key("--mercure-subscriber-jwt-key", subscriber)?,
            ),
        };
        Ok(Some(Keys {
            publisher,
            subscriber,
            algorithm,
        }))
    }

    pub fn publisher(&self, req: &HttpRequest) -> Result<Option<Grant>, ApiError> {
        self.verify(req, &self.publisher)
    }

    pub fn subscriber(&self, req: &HttpRequest) -> Result<Option<Grant>, ApiError> {
        self.verify(req, &self.subscriber)
    }

    /// The request's token, verified; `None` when it presents none.
    fn verify(&self, req: &HttpRequest, key: &DecodingKey) -> Result<Option<Grant>, ApiError> {
        let Some((token, source)) = token(req)? else {
            return Ok(None);
        };
        let mut validation = Validation::new(self.algorithm);
        validation.required_spec_claims.clear();
        validation.validate_aud = false;
        // `exp` is checked here: jsonwebtoken refuses a fractional one.
        validation.validate_exp = false;
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<Claims>(&token, key, &validation)
            .map_err(|e| ApiError::Unauthorized(why(e.kind(), source)))?
            .claims;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        if claims.exp.is_some_and(|exp| exp <= now) {
            return Err(ApiError::Unauthorized(why(
                &ErrorKind::ExpiredSignature,
                source,
            )));
        }
        let mercure = claims.mercure;
        let selectors = |list: Option<&Vec<String>>| {
            list.map(|l| l.iter().map(|s| Selector::new(s)).collect())
                .unwrap_or_default()
        };
        Ok(Some(Grant {
            publish: selectors(mercure.as_ref().and_then(|m| m.publish.as_ref())),
            subscribe: selectors(mercure.as_ref().and_then(|m| m.subscribe.as_ref())),
            payload: mercure.and_then(|m| m.payload),
            expires: claims.exp.map(|exp| exp.max(0.0).ceil() as u64),
            subject: claims.sub,
            source: Some(source),
        }))
    }
}

fn rsa_key(flag: &str, value: &str) -> anyhow::Result<DecodingKey> {
    let pem = if value.trim_start().starts_with("-----BEGIN") {
        value.to_owned()
    } else {
        std::fs::read_to_string(value)
            .map_err(|e| anyhow::anyhow!("{flag}: neither a PEM key nor a readable file ({e})"))?
    };
    DecodingKey::from_rsa_pem(pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("{flag}: not an RSA public key in PEM ({e})"))
}

/// What was wrong with a token, in words (never the key).
fn why(kind: &ErrorKind, source: Source) -> String {
    let place = match source {
        Source::Header => "the Authorization header",
        Source::Query => "the authorization query parameter",
        Source::Cookie => "the mercureAuthorization cookie",
    };
    let what = match kind {
        ErrorKind::ExpiredSignature => "has expired (exp is past)",
        ErrorKind::ImmatureSignature => "is not valid yet (nbf is in the future)",
        ErrorKind::InvalidSignature => "has a bad signature: it was not signed with this hub's key",
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            "is signed with another algorithm than the hub's (--mercure-jwt-algorithm)"
        }
        ErrorKind::Json(_) | ErrorKind::InvalidClaimFormat(_) => {
            "has claims that do not parse (mercure.publish and mercure.subscribe are arrays of strings)"
        }
        _ => "is malformed: not a JWS in compact serialization (header.payload.signature)",
    };
    format!("the JWT in {place} {what}")
}

/// The token and where it came from, in the spec's order of precedence.
fn token(req: &HttpRequest) -> Result<Option<(String, Source)>, ApiError> {
    if let Some(value) = req.headers().get("Authorization") {
        let value = value.to_str().unwrap_or("");
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("the Authorization header must be `Bearer <JWT>`".to_owned())
            })?;
        return Ok(Some((token.to_owned(), Source::Header)));
    }
    let query = form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.into_owned());
    if let Some(token) = query {
        return Ok(Some((token, Source::Query)));
    }
    if let Some(cookie) = req.cookie("mercureAuthorization") {
        return Ok(Some((cookie.value().to_owned(), Source::Cookie)));
    }
    Ok(None)
}
