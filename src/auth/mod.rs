//! Who may do what. Every credential — a token from the tokens file, a JWT
//! from the app's identity provider, the app's own answer through the
//! authorize callback, a stream ticket — resolves to one [`Principal`]: the
//! agent, the channel patterns it may read and write, when it stops being
//! valid and where it came from. The route table and the gate
//! (`http/auth.rs`) check that one type; nothing past the gate knows which
//! credential it was.
//!
//! Without any credential source the server is open (and binds only
//! loopback addresses unless `--allow-open`).
//!
//! Revocation bites: a principal from the tokens file is valid only while
//! its token is in the file (a SIGHUP that removes it ends its open streams
//! and its tickets); one from a JWT or a callback answer ends when they do
//! ([`Auth::end_of`]). A ticket is re-checked against the credential it
//! came from when it is redeemed, and opens a stream only.

mod callback;
mod jwt;
mod scope;
mod tokens;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

pub use callback::CallbackSettings;
pub use jwt::JwtSettings;
pub use scope::{Scope, ScopeTemplate};
pub use tokens::Tokens;

use crate::domain::AgentId;
use crate::sync::LockExt;

/// Where a principal came from: what is checked again when it is used
/// later (a ticket redeemed, a stream still open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// No credential: the server is open.
    Open,
    /// The tokens file entry with this token digest.
    Token([u8; 32]),
    /// A verified JWT.
    Jwt,
    /// The authorize callback's answer for credentials with this digest.
    Callback([u8; 32]),
}

/// The caller, once authenticated.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The credential's agent; `None` in open mode, where `X-Agent-ID` names it.
    pub agent_id: Option<AgentId>,
    pub read: Scope,
    pub write: Scope,
    /// When the credential stops being valid: a JWT's `exp` (plus the
    /// leeway), the end of an authorize answer's lifetime. `None`: until it
    /// is revoked.
    pub expires: Option<SystemTime>,
    pub source: Source,
}

impl Principal {
    pub fn open() -> Self {
        Principal {
            agent_id: None,
            read: Scope::All,
            write: Scope::All,
            expires: None,
            source: Source::Open,
        }
    }

    pub(crate) fn expired(&self) -> bool {
        self.expires.is_some_and(|at| at <= SystemTime::now())
    }
}

/// Why a credential was not taken.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// No one, or not any more (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Someone, refused every access (403).
    #[error("{0}")]
    Forbidden(String),
    /// The authority could not be asked (503): fail closed.
    #[error("{0}")]
    Unavailable(String),
}

/// Why an open stream ends before its client closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The credential's lifetime is over (a JWT's `exp`, an authorize
    /// answer's lifetime): get a fresh one and resume.
    Expired,
    /// The credential was withdrawn (its token left the tokens file).
    Revoked,
}

impl StreamEnd {
    pub fn reason(self) -> &'static str {
        match self {
            StreamEnd::Expired => "expired",
            StreamEnd::Revoked => "revoked",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            StreamEnd::Expired => {
                "the credential this stream was opened with has expired: resume with a fresh one"
            }
            StreamEnd::Revoked => "the credential this stream was opened with was revoked",
        }
    }
}

/// A future that resolves when a stream's credential stops being valid.
pub type EndOfCredential = Pin<Box<dyn Future<Output = StreamEnd> + Send>>;

/// What an answer's `Cache-Control` says about keeping it: its first
/// `max-age`, and whether it forbids keeping it (`no-cache`, `no-store`).
/// The JWKS and the authorize callback both read it.
struct CacheControl {
    max_age: Option<Duration>,
    no_store: bool,
}

fn cache_control(headers: &reqwest::header::HeaderMap) -> CacheControl {
    let mut read = CacheControl {
        max_age: None,
        no_store: false,
    };
    let Some(value) = headers
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
    else {
        return read;
    };
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            read.no_store = true;
        } else if let Some(seconds) = lower.strip_prefix("max-age=") {
            if read.max_age.is_none() {
                read.max_age = seconds
                    .trim_matches('"')
                    .parse()
                    .ok()
                    .map(Duration::from_secs);
            }
        }
    }
    read
}

pub(crate) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// How long a stream ticket lives unless told otherwise.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(30);

/// Every credential source the operator configured.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    pub tokens: Option<PathBuf>,
    pub jwt: JwtSettings,
    pub callback: Option<CallbackSettings>,
    pub ticket_lifetime: Option<Duration>,
}

struct TokensFile {
    path: PathBuf,
    /// The current tokens; open streams watch it to notice revocation.
    current: watch::Sender<Arc<Tokens>>,
}

struct Ticket {
    principal: Principal,
    expires: Instant,
}

/// Authentication state: the credential sources and outstanding tickets.
pub struct Auth {
    tokens: Option<TokensFile>,
    jwt: Option<jwt::JwtVerifier>,
    callback: Option<callback::Callback>,
    ticket_lifetime: Duration,
    tickets: Mutex<HashMap<String, Ticket>>,
}

impl Auth {
    pub fn open() -> Self {
        Auth {
            tokens: None,
            jwt: None,
            callback: None,
            ticket_lifetime: TICKET_LIFETIME,
            tickets: Mutex::new(HashMap::new()),
        }
    }

    /// The sources in `settings`, checked (a broken key, template or file
    /// is an error here, at start).
    pub fn new(settings: AuthSettings) -> Result<Self, String> {
        let tokens = settings
            .tokens
            .map(|path| {
                let tokens = Tokens::load(&path).map_err(|e| format!("--tokens: {e}"))?;
                Ok::<_, String>(TokensFile {
                    path,
                    current: watch::Sender::new(Arc::new(tokens)),
                })
            })
            .transpose()?;
        let jwt = settings
            .jwt
            .is_configured()
            .then(|| jwt::JwtVerifier::new(&settings.jwt))
            .transpose()?;
        let callback = settings.callback.map(callback::Callback::new).transpose()?;
        Ok(Auth {
            tokens,
            jwt,
            callback,
            ticket_lifetime: settings.ticket_lifetime.unwrap_or(TICKET_LIFETIME),
            tickets: Mutex::new(HashMap::new()),
        })
    }

    /// Only the tokens file (tests and tools).
    pub fn from_file(path: &Path) -> Result<Self, String> {
        Auth::new(AuthSettings {
            tokens: Some(path.to_owned()),
            ..AuthSettings::default()
        })
    }

    /// What needs doing before the first request: fetching the JWKS.
    pub async fn start(&self) {
        if let Some(jwt) = &self.jwt {
            jwt.start().await;
        }
    }

    pub fn is_open(&self) -> bool {
        self.tokens.is_none() && self.jwt.is_none() && self.callback.is_none()
    }

    /// Which sources are on, for the start-up log line.
    pub fn sources(&self) -> Vec<&'static str> {
        let mut sources = Vec::new();
        if self.tokens.is_some() {
            sources.push("tokens");
        }
        if self.jwt.is_some() {
            sources.push("jwt");
        }
        if self.callback.is_some() {
            sources.push("authorize-callback");
        }
        sources
    }

    pub fn has_callback(&self) -> bool {
        self.callback.is_some()
    }

    /// Reads the tokens file again (SIGHUP). On error the old tokens stay.
    /// Streams opened with a token that is gone end (they watch the tokens).
    pub fn reload(&self) -> Result<usize, String> {
        let Some(file) = &self.tokens else {
            return Ok(0);
        };
        let tokens = Tokens::load(&file.path)?;
        let count = tokens.len();
        file.current.send_replace(Arc::new(tokens));
        Ok(count)
    }

    fn token(&self, digest: &[u8; 32]) -> Option<Principal> {
        self.tokens
            .as_ref()
            .and_then(|file| file.current.borrow().get(digest).cloned())
    }

    /// The principal of a bearer credential: a token of the file, else a
    /// JWT, else (with a callback) the app's answer for the request's
    /// headers that `header` gives (read only then, and only those the
    /// callback forwards; a bearer from the query or a cookie gives none).
    pub async fn authenticate<'a>(
        &self,
        bearer: &str,
        header: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Principal, AuthError> {
        let digest = digest(bearer);
        if let Some(principal) = self.token(&digest) {
            return Ok(principal);
        }
        if let Some(jwt) = &self.jwt {
            if jwt::looks_like_jwt(bearer) {
                return jwt.verify(bearer, digest).await;
            }
        }
        if let Some(callback) = &self.callback {
            let forwarded = callback.forwarded(header);
            if !forwarded.is_empty() {
                return callback.authorize(&forwarded).await;
            }
        }
        Err(AuthError::Unauthorized("the token is not valid".to_owned()))
    }

    /// The principal of a request without a bearer credential, from the
    /// authorize callback and the headers it forwards.
    pub async fn authorize<'a>(
        &self,
        header: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Principal, AuthError> {
        let Some(callback) = &self.callback else {
            return Err(AuthError::Unauthorized("a token is required".to_owned()));
        };
        let forwarded = callback.forwarded(header);
        if forwarded.is_empty() {
            return Err(AuthError::Unauthorized(
                "credentials are required (a session cookie or a token)".to_owned(),
            ));
        }
        callback.authorize(&forwarded).await
    }

    /// The principal as it stands now: a token's current entry (its scopes
    /// may have changed), or the principal itself while it has not expired.
    fn recheck(&self, principal: &Principal) -> Result<Principal, AuthError> {
        match &principal.source {
            Source::Token(digest) => self.token(digest).ok_or_else(|| {
                AuthError::Unauthorized("the token this ticket stands for was revoked".to_owned())
            }),
            _ if principal.expired() => Err(AuthError::Unauthorized(
                "the credential this ticket stands for has expired".to_owned(),
            )),
            _ => Ok(principal.clone()),
        }
    }

    /// A single-use ticket standing for `principal` for the ticket lifetime
    /// (never past the principal's own end).
    pub fn issue_ticket(&self, principal: Principal) -> (String, Duration) {
        use rand::Rng;
        let bytes: [u8; 24] = rand::rng().random();
        let ticket: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let lifetime = match principal.expires {
            Some(at) => at
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .min(self.ticket_lifetime),
            None => self.ticket_lifetime,
        };
        let now = Instant::now();
        let mut tickets = self.tickets.locked();
        tickets.retain(|_, t| t.expires > now);
        tickets.insert(
            ticket.clone(),
            Ticket {
                principal,
                expires: now + lifetime,
            },
        );
        (ticket, lifetime)
    }

    /// Uses up a ticket: valid once, before it expires, and only while the
    /// credential it stands for still is.
    pub fn redeem_ticket(&self, ticket: &str) -> Result<Principal, AuthError> {
        let found = self.tickets.locked().remove(ticket);
        match found {
            Some(t) if t.expires > Instant::now() => self.recheck(&t.principal),
            _ => Err(AuthError::Unauthorized(
                "the ticket is unknown, used or expired".to_owned(),
            )),
        }
    }

    /// What ends a stream opened as `principal`: its expiry, or its token
    /// leaving the tokens file. `None` when nothing will (open mode).
    pub fn end_of(&self, principal: &Principal) -> Option<EndOfCredential> {
        let expiry = principal.expires.map(|at| {
            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::time::Instant::now() + left
        });
        let revocation = match (&principal.source, &self.tokens) {
            (Source::Token(digest), Some(file)) => {
                let digest = *digest;
                let mut tokens = file.current.subscribe();
                Some(async move {
                    loop {
                        if tokens.borrow_and_update().get(&digest).is_none() {
                            return;
                        }
                        if tokens.changed().await.is_err() {
                            // The server is going away; its shutdown ends the stream.
                            std::future::pending::<()>().await;
                        }
                    }
                })
            }
            _ => None,
        };
        match (expiry, revocation) {
            (None, None) => None,
            (Some(at), None) => Some(Box::pin(async move {
                tokio::time::sleep_until(at).await;
                StreamEnd::Expired
            })),
            (None, Some(revoked)) => Some(Box::pin(async move {
                revoked.await;
                StreamEnd::Revoked
            })),
            (Some(at), Some(revoked)) => Some(Box::pin(async move {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => StreamEnd::Expired,
                    _ = revoked => StreamEnd::Revoked,
                }
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens_file(dir: &Path, body: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("tokens.toml");
        std::fs::write(&path, body).unwrap();
        path
    }

    #[tokio::test]
    async fn tokens_are_found_by_token_or_by_digest_and_scopes_match_patterns() {
        let dir = std::env::temp_dir().join(format!("sb-tokens-{}", std::process::id()));
        let hashed: String = digest("s3cret")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let path = tokens_file(
            &dir,
            &format!(
                r#"
[[tokens]]
token = "plain-token"
agent_id = "claude-1"
read = ["*"]
write = ["features", "conversation:*", "agents/{{agent}}/*"]

[[tokens]]
token_sha256 = "{hashed}"
agent_id = "reader"
read = ["features"]
"#
            ),
        );
        let auth = Auth::from_file(&path).unwrap();
        let claude = auth.authenticate("plain-token", |_| None).await.unwrap();
        assert_eq!(claude.agent_id.as_ref().unwrap().as_str(), "claude-1");
        assert!(claude.read.allows("files"));
        assert!(claude.write.allows("conversation:9") && !claude.write.allows("files"));
        assert!(claude.write.allows("agents/claude-1/inbox"));
        assert!(!claude.write.allows("agents/claude-2/inbox"));
        let reader = auth.authenticate("s3cret", |_| None).await.unwrap();
        assert!(reader.read.allows("features") && !reader.read.allows("files"));
        assert!(!reader.write.allows("features"));
        assert!(auth.authenticate("wrong", |_| None).await.is_err());

        let (ticket, _) = auth.issue_ticket(reader);
        assert!(auth.redeem_ticket(&ticket).is_ok());
        assert!(auth.redeem_ticket(&ticket).is_err(), "single use");

        // Revocation: the token leaves the file; its ticket and its
        // streams stop.
        let (ticket, _) = auth.issue_ticket(claude.clone());
        let end = auth
            .end_of(&claude)
            .expect("a token's stream watches the file");
        std::fs::write(&path, "").unwrap();
        assert_eq!(auth.reload().unwrap(), 0);
        assert!(auth.redeem_ticket(&ticket).is_err(), "revoked");
        let ended = tokio::time::timeout(Duration::from_secs(1), end).await;
        assert_eq!(ended.unwrap(), StreamEnd::Revoked);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_principal_that_expires_ends_its_stream_and_its_tickets() {
        let auth = Auth::open();
        let principal = Principal {
            expires: Some(SystemTime::now() + Duration::from_millis(200)),
            source: Source::Jwt,
            ..Principal::open()
        };
        let (ticket, lifetime) = auth.issue_ticket(principal.clone());
        assert!(lifetime <= Duration::from_millis(200));
        let end = auth.end_of(&principal).unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(2), end)
                .await
                .unwrap(),
            StreamEnd::Expired
        );
        assert!(auth.redeem_ticket(&ticket).is_err());
        assert!(auth.end_of(&Principal::open()).is_none());
    }
}
