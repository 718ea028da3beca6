//! The authorize callback: for an app with its own sessions (a cookie) and
//! no JWTs, switchboard asks the app who a request's credentials belong to.
//!
//! `GET <url>` carries the request's headers named in the allow-list
//! (`Cookie`, `Authorization` by default) and nothing else — no path, since
//! the answer is cached per credential and must not depend on it. The app
//! answers:
//!
//! - `200` with `{"agent_id": "...", "read": [...], "write": [...],
//!   "expires_in": 300}` (patterns may hold `{agent}`; `expires_in` in
//!   seconds, else `Cache-Control: max-age`, else the configured lifetime);
//! - `401`: these credentials are no one (the request is 401);
//! - `403`: someone, but with no access at all (the request is 403).
//!
//! Anything else, a timeout or an app that is down fails closed: 503, and
//! nothing is cached. Answers are cached per credential (the SHA-256 of the
//! forwarded headers) in a bounded map; a principal from the callback
//! expires with its answer, and a stream opened with it ends then.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::scope::ScopeTemplate;
use super::{AuthError, Principal, Source};
use crate::domain::AgentId;
use crate::sync::LockExt;

/// What the operator configured (`--authorize-*`).
#[derive(Debug, Clone)]
pub struct CallbackSettings {
    pub url: String,
    /// Header names forwarded to the app, lower-case.
    pub headers: Vec<String>,
    pub timeout: Duration,
    /// An answer's lifetime when it names none.
    pub lifetime: Duration,
    /// The most answers kept.
    pub capacity: usize,
}

/// How long a refusal (401/403) is remembered: short, so that a user who
/// logs in is not refused for long, long enough that guessing cookies costs
/// the app one request per guess and no more.
const DENIAL_LIFETIME: Duration = Duration::from_secs(5);
/// The longest an answer is believed, whatever it says.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Deserialize)]
struct Answer {
    agent_id: String,
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    write: Vec<String>,
    expires_in: Option<u64>,
}

#[derive(Clone)]
enum Cached {
    Allowed(Principal),
    Refused(AuthError),
}

pub struct Callback {
    settings: CallbackSettings,
    client: reqwest::Client,
    cache: Mutex<HashMap<[u8; 32], (Cached, Instant)>>,
}

impl Callback {
    pub fn new(mut settings: CallbackSettings) -> Result<Callback, String> {
        let url = reqwest::Url::parse(&settings.url)
            .map_err(|e| format!("--authorize-url {}: {e}", settings.url))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "--authorize-url {}: use http or https",
                settings.url
            ));
        }
        settings.headers = settings
            .headers
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if settings.headers.is_empty() {
            return Err("--authorize-header: name at least one header to forward".to_owned());
        }
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("--authorize-url: {e}"))?;
        Ok(Callback {
            settings,
            client,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The allow-listed headers a request carries, as forwarded.
    pub fn forwarded<'a>(&self, header: impl Fn(&str) -> Option<&'a str>) -> Vec<(String, String)> {
        self.settings
            .headers
            .iter()
            .filter_map(|name| header(name).map(|value| (name.clone(), value.to_owned())))
            .collect()
    }

    fn key(forwarded: &[(String, String)]) -> [u8; 32] {
        let mut hash = Sha256::new();
        for (name, value) in forwarded {
            hash.update(name.as_bytes());
            hash.update([0]);
            hash.update(value.as_bytes());
            hash.update([0]);
        }
        hash.finalize().into()
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (Cached, Instant)>> {
        self.cache.locked()
    }

    /// Who the forwarded credentials are, from the cache or the app.
    pub async fn authorize(&self, forwarded: &[(String, String)]) -> Result<Principal, AuthError> {
        let key = Self::key(forwarded);
        let now = Instant::now();
        if let Some((cached, until)) = self.cache().get(&key) {
            if *until > now {
                return match cached {
                    Cached::Allowed(principal) => Ok(principal.clone()),
                    Cached::Refused(err) => Err(err.clone()),
                };
            }
        }
        let (answer, lifetime) = self.ask(forwarded, key).await?;
        self.remember(key, answer.clone(), now + lifetime);
        match answer {
            Cached::Allowed(principal) => Ok(principal),
            Cached::Refused(err) => Err(err),
        }
    }

    fn remember(&self, key: [u8; 32], answer: Cached, until: Instant) {
        let mut cache = self.cache();
        if cache.len() >= self.settings.capacity && !cache.contains_key(&key) {
            let now = Instant::now();
            cache.retain(|_, (_, until)| *until > now);
            if cache.len() >= self.settings.capacity {
                // Still full of live answers: drop the one that ends first.
                if let Some(first) = cache.iter().min_by_key(|(_, (_, until))| *until) {
                    let first = *first.0;
                    cache.remove(&first);
                }
            }
        }
        cache.insert(key, (answer, until));
    }

    async fn ask(
        &self,
        forwarded: &[(String, String)],
        key: [u8; 32],
    ) -> Result<(Cached, Duration), AuthError> {
        let down = |why: String| {
            tracing::warn!(url = %self.settings.url, error = %why, "authorize callback failed; refusing (503)");
            AuthError::Unavailable(
                "the app that authorizes requests did not answer; try again".to_owned(),
            )
        };
        let mut request = self.client.get(&self.settings.url);
        for (name, value) in forwarded {
            request = request.header(name.as_str(), value.as_str());
        }
        let answer = request.send().await.map_err(|e| down(e.to_string()))?;
        let status = answer.status();
        match status.as_u16() {
            200 => {}
            401 => {
                return Ok((
                    Cached::Refused(AuthError::Unauthorized(
                        "the app does not know these credentials".to_owned(),
                    )),
                    DENIAL_LIFETIME,
                ))
            }
            403 => {
                return Ok((
                    Cached::Refused(AuthError::Forbidden(
                        "the app refuses these credentials any access".to_owned(),
                    )),
                    DENIAL_LIFETIME,
                ))
            }
            _ => return Err(down(format!("answered {status}"))),
        }
        let header_age = super::cache_control(answer.headers()).max_age;
        let body: Answer = answer
            .json()
            .await
            .map_err(|e| down(format!("its answer is not the documented JSON: {e}")))?;
        let lifetime = body
            .expires_in
            .map(Duration::from_secs)
            .or(header_age)
            .unwrap_or(self.settings.lifetime)
            .min(MAX_LIFETIME);
        let agent = AgentId::parse("agent_id", &body.agent_id)
            .map_err(|e| down(format!("its agent_id: {e}")))?;
        let scope = |field: &str, patterns: &[String]| {
            ScopeTemplate::parse(field, patterns)
                .and_then(|t| t.resolve(field, Some(&agent)))
                .map_err(|e| down(format!("its answer: {e}")))
        };
        let principal = Principal {
            read: scope("read", &body.read)?,
            write: scope("write", &body.write)?,
            agent_id: Some(agent),
            expires: Some(SystemTime::now() + lifetime),
            source: Source::Callback(key),
        };
        Ok((Cached::Allowed(principal), lifetime))
    }
}
