//! JWTs from the app's identity provider: keys given inline, as files or as
//! a JWKS URL; the checks (signature, algorithm against the key's kind,
//! `exp`/`nbf` with a leeway, issuer, audience); and the claims that make a
//! principal (the agent from `sub` or another claim, scopes from a claim or
//! from defaults, templates filled in).
//!
//! Algorithm confusion is refused by construction: a key answers only the
//! algorithms of its own kind (an HMAC secret HS256/384/512, an RSA key
//! RS*/PS*, an EC key ES256/384, an Ed25519 key EdDSA), and a JWK that names
//! its `alg` answers only that one. `alg: none` is not an algorithm here.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::scope::ScopeTemplate;
use super::{AuthError, Principal, Source};
use crate::domain::AgentId;
use crate::sync::{LockExt, RwLockExt};

/// What the operator configured (`--jwt-*`, docs/security.md).
#[derive(Debug, Clone, Default)]
pub struct JwtSettings {
    /// An HMAC secret (HS256/384/512), used as its UTF-8 bytes.
    pub secret: Option<String>,
    /// Public keys: each a PEM, a JWK or a JWK set, inline or a file path.
    pub keys: Vec<String>,
    /// The provider's JWKS URL.
    pub jwks_url: Option<String>,
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    pub leeway: Duration,
    /// The claim that names the agent (`sub`, `email`, …).
    pub agent_claim: String,
    /// The claim holding `{"read": [...], "write": [...]}`.
    pub scopes_claim: String,
    /// Patterns for a JWT without the scopes claim.
    pub default_read: Vec<String>,
    pub default_write: Vec<String>,
}

impl JwtSettings {
    pub fn is_configured(&self) -> bool {
        self.secret.is_some() || !self.keys.is_empty() || self.jwks_url.is_some()
    }
}

/// One key JWTs may be signed with.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    /// The one algorithm a JWK names, if it names one.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

impl Key {
    fn answers(&self, alg: Algorithm, kid: Option<&str>) -> bool {
        self.key.family() == alg.family()
            && self.alg.is_none_or(|own| own == alg)
            && match (kid, &self.kid) {
                (Some(wanted), Some(own)) => wanted == own,
                // A key without an id (a PEM, the secret) answers any JWT of
                // its kind; a JWT without `kid` tries every key of its kind.
                _ => true,
            }
    }

    fn from_jwk(jwk: &Jwk) -> Result<Key, String> {
        let alg = jwk
            .common
            .key_algorithm
            .map(|alg| {
                Algorithm::from_str(&alg.to_string())
                    .map_err(|_| format!("the JWK's alg {alg} is not one switchboard verifies"))
            })
            .transpose()?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("a JWK is not usable: {e}"))?;
        Ok(Key {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        })
    }
}

/// Keys from `--jwt-key`: a PEM, a JWK or a JWK set, inline or a file.
fn parse_keys(value: &str) -> Result<Vec<Key>, String> {
    let text = value.trim();
    let text = if text.starts_with("-----BEGIN") || text.starts_with('{') {
        text.to_owned()
    } else {
        std::fs::read_to_string(text).map_err(|e| format!("cannot read {text}: {e}"))?
    };
    let text = text.trim();
    if text.starts_with('{') {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("not a JWK or JWK set: {e}"))?;
        let jwks: Vec<Jwk> = if value.get("keys").is_some() {
            serde_json::from_value::<JwkSet>(value)
                .map_err(|e| format!("not a JWK set: {e}"))?
                .keys
        } else {
            vec![serde_json::from_value(value).map_err(|e| format!("not a JWK: {e}"))?]
        };
        return jwks.iter().map(Key::from_jwk).collect();
    }
    let pem = text.as_bytes();
    let key = DecodingKey::from_rsa_pem(pem)
        .or_else(|_| DecodingKey::from_ec_pem(pem))
        .or_else(|_| DecodingKey::from_ed_pem(pem))
        .map_err(|_| {
            "not a PEM public key of RSA, EC (P-256, P-384) or Ed25519, nor a JWK".to_owned()
        })?;
    Ok(vec![Key {
        kid: None,
        alg: None,
        key,
    }])
}

/// The keys of a JWKS URL: fetched at start, again when its `Cache-Control`
/// says they are stale (in the background; the old keys serve meanwhile),
/// and at once for a `kid` it does not have — at most once per
/// [`REFETCH_EVERY`], so that made-up `kid`s cannot hammer the provider.
/// A failed fetch keeps the last good set.
struct Jwks {
    url: String,
    client: reqwest::Client,
    keys: RwLock<Arc<Vec<Key>>>,
    /// When the keys are stale, and when a fetch was last tried.
    timing: Mutex<JwksTiming>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    /// Bumped by every fetched set: JWTs verified under an older one are
    /// verified again.
    generation: AtomicU64,
}

struct JwksTiming {
    stale_at: Instant,
    tried_at: Option<Instant>,
}

/// The least time between two fetches.
const REFETCH_EVERY: Duration = Duration::from_secs(10);
/// How long keys stay fresh when the answer says nothing.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// How long keys stay fresh at most, whatever the answer says.
const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a fetched key set stays fresh, from its answer's headers.
fn max_age(headers: &reqwest::header::HeaderMap) -> Duration {
    let read = super::cache_control(headers);
    if read.no_store {
        return REFETCH_EVERY;
    }
    read.max_age
        .unwrap_or(DEFAULT_MAX_AGE)
        .clamp(REFETCH_EVERY, MAX_MAX_AGE)
}

impl Jwks {
    fn new(url: String) -> Result<Jwks, String> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| format!("--jwt-jwks-url: {e}"))?;
        Ok(Jwks {
            url,
            client,
            keys: RwLock::new(Arc::new(Vec::new())),
            timing: Mutex::new(JwksTiming {
                stale_at: Instant::now(),
                tried_at: None,
            }),
            fetching: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
        })
    }

    fn current(&self) -> Arc<Vec<Key>> {
        self.keys.read_locked().clone()
    }

    fn timing(&self) -> std::sync::MutexGuard<'_, JwksTiming> {
        self.timing.locked()
    }

    /// Whether a fetch may start now (none in the last [`REFETCH_EVERY`]).
    fn may_fetch(&self) -> bool {
        self.timing()
            .tried_at
            .is_none_or(|at| at.elapsed() >= REFETCH_EVERY)
    }

    /// Fetches the set once more, unless another fetch just did.
    async fn refresh(&self) {
        let _one = self.fetching.lock().await;
        if !self.may_fetch() {
            return;
        }
        self.timing().tried_at = Some(Instant::now());
        match self.fetch().await {
            Ok((keys, max_age)) => {
                tracing::info!(url = %self.url, keys = keys.len(), max_age_s = max_age.as_secs(), "JWKS fetched");
                *self.keys.write_locked() = Arc::new(keys);
                self.generation.fetch_add(1, Ordering::Release);
                self.timing().stale_at = Instant::now() + max_age;
            }
            Err(err) => {
                tracing::warn!(url = %self.url, error = %err, "JWKS not fetched; the last good keys stay");
            }
        }
    }

    async fn fetch(&self) -> Result<(Vec<Key>, Duration), String> {
        let answer = self
            .client
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !answer.status().is_success() {
            return Err(format!("answered {}", answer.status()));
        }
        let max_age = max_age(answer.headers());
        let set: JwkSet = answer
            .json()
            .await
            .map_err(|e| format!("not a JWK set: {e}"))?;
        let mut keys = Vec::with_capacity(set.keys.len());
        for jwk in &set.keys {
            match Key::from_jwk(jwk) {
                Ok(key) => keys.push(key),
                Err(err) => {
                    tracing::warn!(url = %self.url, kid = ?jwk.common.key_id, error = %err, "JWKS key skipped")
                }
            }
        }
        Ok((keys, max_age))
    }

    /// The keys, starting a background fetch when they are stale.
    fn keys(self: &Arc<Self>) -> Arc<Vec<Key>> {
        if Instant::now() >= self.timing().stale_at && self.may_fetch() {
            let jwks = Arc::clone(self);
            tokio::spawn(async move { jwks.refresh().await });
        }
        self.current()
    }
}

/// Verifies JWTs and turns their claims into principals.
pub struct JwtVerifier {
    keys: Vec<Key>,
    jwks: Option<Arc<Jwks>>,
    issuer: Option<String>,
    audiences: Vec<String>,
    leeway: Duration,
    agent_claim: String,
    scopes_claim: String,
    default_read: ScopeTemplate,
    default_write: ScopeTemplate,
    /// JWTs verified before: a client sends the same JWT with every request
    /// until it refreshes it, and a signature check (RSA above all) costs
    /// far more than a digest. By the token's SHA-256, with the JWKS
    /// generation it was verified under; an entry is used only until the
    /// JWT's end and while that key set is current.
    verified: Mutex<HashMap<[u8; 32], (Principal, u64)>>,
}

/// The most verified JWTs remembered.
const VERIFIED_CAPACITY: usize = 10_000;

/// Why a JWT was refused, for the 401's message.
fn refusal(err: &jsonwebtoken::errors::Error, verifier: &JwtVerifier) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::ExpiredSignature => "the JWT has expired (exp)".to_owned(),
        ErrorKind::ImmatureSignature => "the JWT is not valid yet (nbf)".to_owned(),
        ErrorKind::InvalidIssuer => format!(
            "the JWT's issuer (iss) is not {}",
            verifier.issuer.as_deref().unwrap_or("the configured one")
        ),
        ErrorKind::InvalidAudience => format!(
            "the JWT's audience (aud) is not {}",
            verifier.audiences.join(" or ")
        ),
        ErrorKind::InvalidSignature => "the JWT's signature does not verify".to_owned(),
        ErrorKind::InvalidAlgorithm => "the JWT's algorithm does not match its key".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the JWT has no {claim} claim"),
        ErrorKind::InvalidClaimFormat(claim) => format!("the JWT's {claim} claim is malformed"),
        _ => "the JWT is malformed".to_owned(),
    }
}

/// Whether a bearer token looks like a JWS in compact form.
pub fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
}

impl JwtVerifier {
    pub fn new(settings: &JwtSettings) -> Result<JwtVerifier, String> {
        let mut keys = Vec::new();
        if let Some(secret) = &settings.secret {
            if secret.len() < 32 {
                return Err(
                    "--jwt-secret: an HMAC secret must be at least 32 bytes (RFC 7518 §3.2)"
                        .to_owned(),
                );
            }
            keys.push(Key {
                kid: None,
                alg: None,
                key: DecodingKey::from_secret(secret.as_bytes()),
            });
        }
        for value in &settings.keys {
            keys.extend(parse_keys(value).map_err(|e| format!("--jwt-key: {e}"))?);
        }
        let jwks = settings
            .jwks_url
            .clone()
            .map(Jwks::new)
            .transpose()?
            .map(Arc::new);
        Ok(JwtVerifier {
            keys,
            jwks,
            issuer: settings.issuer.clone(),
            audiences: settings.audiences.clone(),
            leeway: settings.leeway,
            agent_claim: settings.agent_claim.clone(),
            scopes_claim: settings.scopes_claim.clone(),
            default_read: ScopeTemplate::parse("--jwt-read", &settings.default_read)?,
            default_write: ScopeTemplate::parse("--jwt-write", &settings.default_write)?,
            verified: Mutex::new(HashMap::new()),
        })
    }

    fn generation(&self) -> u64 {
        self.jwks
            .as_ref()
            .map_or(0, |jwks| jwks.generation.load(Ordering::Acquire))
    }

    fn verified(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (Principal, u64)>> {
        self.verified.locked()
    }

    /// The principal of a JWT verified before under the current keys.
    fn recall(&self, digest: &[u8; 32]) -> Option<Principal> {
        if let Some(jwks) = &self.jwks {
            // Starts the refresh of stale keys, as a full check would.
            jwks.keys();
        }
        let generation = self.generation();
        let verified = self.verified();
        let (principal, at) = verified.get(digest)?;
        let current = *at == generation && !principal.expired();
        current.then(|| principal.clone())
    }

    fn remember(&self, digest: [u8; 32], principal: &Principal, generation: u64) {
        let mut verified = self.verified();
        if verified.len() >= VERIFIED_CAPACITY {
            verified.retain(|_, (p, at)| *at == generation && !p.expired());
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
        }
        verified.insert(digest, (principal.clone(), generation));
    }

    /// Fetches the JWKS, if there is one (at start).
    pub async fn start(&self) {
        if let Some(jwks) = &self.jwks {
            jwks.refresh().await;
        }
    }

    fn candidates(&self, alg: Algorithm, kid: Option<&str>, jwks: &[Key]) -> Vec<Key> {
        self.keys
            .iter()
            .chain(jwks)
            .filter(|key| key.answers(alg, kid))
            .cloned()
            .collect()
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        if self.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audiences);
        }
        validation
    }

    /// The principal of a JWT (whose SHA-256 is `digest`), or why it is
    /// refused.
    pub async fn verify(&self, token: &str, digest: [u8; 32]) -> Result<Principal, AuthError> {
        if let Some(principal) = self.recall(&digest) {
            return Ok(principal);
        }
        let generation = self.generation();
        let principal = self.check(token).await?;
        self.remember(digest, &principal, generation);
        Ok(principal)
    }

    /// The full check: key, signature, claims.
    async fn check(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            AuthError::Unauthorized(
                "the JWT's header is malformed or names an algorithm switchboard does not accept"
                    .to_owned(),
            )
        })?;
        let kid = header.kid.as_deref();
        let jwks_keys = self.jwks.as_ref().map(Jwks::keys).unwrap_or_default();
        let mut candidates = self.candidates(header.alg, kid, &jwks_keys);
        let known_kid = kid.is_none_or(|kid| {
            jwks_keys
                .iter()
                .chain(&self.keys)
                .any(|key| key.kid.as_deref() == Some(kid))
        });
        if !known_kid {
            if let Some(jwks) = &self.jwks {
                if jwks.may_fetch() {
                    // A new key at the provider: fetch at once (rate-limited).
                    jwks.refresh().await;
                    candidates = self.candidates(header.alg, kid, &jwks.current());
                }
            }
        }
        if candidates.is_empty() {
            return Err(AuthError::Unauthorized(match kid {
                Some(kid) => format!("the JWT's key id (kid) {kid} is unknown"),
                None => format!("no key is configured for {:?} JWTs", header.alg),
            }));
        }
        let validation = self.validation(header.alg);
        let mut refused = None;
        for key in &candidates {
            match jsonwebtoken::decode::<Value>(token, &key.key, &validation) {
                Ok(data) => return self.principal(data.claims),
                Err(err) => {
                    // A claim refused after the signature verified says more
                    // than another key's signature mismatch.
                    let signature = matches!(
                        err.kind(),
                        jsonwebtoken::errors::ErrorKind::InvalidSignature
                    );
                    if refused.is_none() || !signature {
                        refused = Some(refusal(&err, self));
                    }
                }
            }
        }
        Err(AuthError::Unauthorized(refused.unwrap_or_else(|| {
            "the JWT's signature does not verify".to_owned()
        })))
    }

    fn principal(&self, claims: Value) -> Result<Principal, AuthError> {
        let refused = |why: String| AuthError::Unauthorized(why);
        let agent = match claims.get(&self.agent_claim) {
            Some(Value::String(value)) => {
                AgentId::parse(&self.agent_claim, value).map_err(|e| {
                    refused(format!(
                        "the JWT's {} claim is not an agent id: {e}",
                        self.agent_claim
                    ))
                })?
            }
            _ => {
                return Err(refused(format!(
                    "the JWT has no {} claim (a string) to name its agent",
                    self.agent_claim
                )))
            }
        };
        let (read, write) = match claims.get(&self.scopes_claim) {
            None | Some(Value::Null) => (self.default_read.clone(), self.default_write.clone()),
            Some(Value::Object(scopes)) => {
                let list = |field: &str| -> Result<ScopeTemplate, AuthError> {
                    let patterns: Vec<String> = match scopes.get(field) {
                        None => Vec::new(),
                        Some(value) => serde_json::from_value(value.clone()).map_err(|_| {
                            refused(format!(
                                "the JWT's {}.{field} claim must be a list of channel patterns",
                                self.scopes_claim
                            ))
                        })?,
                    };
                    ScopeTemplate::parse(field, &patterns)
                        .map_err(|e| refused(format!("the JWT's {} claim: {e}", self.scopes_claim)))
                };
                (list("read")?, list("write")?)
            }
            Some(_) => {
                return Err(refused(format!(
                    "the JWT's {} claim must be an object {{\"read\": [...], \"write\": [...]}}",
                    self.scopes_claim
                )))
            }
        };
        // `exp` may have a fraction (RFC 7519 §2, NumericDate); one past any
        // time the clock can hold is refused, not overflowed. The library
        // compared whole seconds: the exact end is checked here, so that a
        // JWT a stream was just told has expired opens no new one.
        let expires = claims
            .get("exp")
            .and_then(Value::as_f64)
            .and_then(|exp| Duration::try_from_secs_f64(exp).ok())
            .and_then(|exp| UNIX_EPOCH.checked_add(exp)?.checked_add(self.leeway))
            .ok_or_else(|| refused("the JWT's exp claim is malformed".to_owned()))?;
        if expires <= SystemTime::now() {
            return Err(refused("the JWT has expired (exp)".to_owned()));
        }
        Ok(Principal {
            read: read.resolve("read", Some(&agent)).map_err(refused)?,
            write: write.resolve("write", Some(&agent)).map_err(refused)?,
            agent_id: Some(agent),
            expires: Some(expires),
            source: Source::Jwt,
        })
    }
}

#[cfg(test)]
mod tests;
