//! Every setting, with its default and meaning. Each flag also reads an
//! environment variable: `SWITCHBOARD_` + the flag's name in capitals.
//! The subcommands that take these settings are `cli::Command`; this module
//! imports nothing from `cli`.

use std::time::Duration;

use clap::{Args, Parser};

mod database;

pub use database::{DatabaseUrl, Synchronous};

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// The database: a SQLite file path or `sqlite://PATH` (created on first
    /// start), or a `postgres://USER@HOST:PORT/DB` URL that several nodes
    /// share (docs/scale-out.md).
    #[arg(long, env = "SWITCHBOARD_DATABASE", default_value = "switchboard.db", value_parser = DatabaseUrl::parse)]
    pub database: DatabaseUrl,
    /// When a SQLite commit reaches the disk: `normal` flushes the WAL at
    /// checkpoints (a commit survives a crash of the process, a power loss
    /// can take the last ones); `full` flushes it at every commit, as
    /// PostgreSQL does (a commit survives a power loss too, for fewer
    /// writes/s; docs/operations.md). PostgreSQL ignores it.
    #[arg(long, env = "SWITCHBOARD_SQLITE_SYNCHRONOUS", default_value = "normal", value_parser = Synchronous::parse)]
    pub sqlite_synchronous: Synchronous,
}

impl DatabaseArgs {
    /// The database with its settings.
    pub fn url(&self) -> DatabaseUrl {
        self.database
            .clone()
            .with_synchronous(self.sqlite_synchronous)
    }
}

#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Events older than this are deleted.
    #[arg(long, env = "SWITCHBOARD_RETENTION", default_value = "24h", value_parser = parse_duration)]
    pub retention: Duration,
}

/// Log lines as text or as JSON; telemetry's, named here for the flag.
pub use crate::telemetry::LogFormat;

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on. Port 0 picks a free port.
    #[arg(long, env = "SWITCHBOARD_BIND", default_value = "127.0.0.1:8000")]
    pub bind: String,
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Events older than this are pruned by a background task.
    #[arg(long, env = "SWITCHBOARD_RETENTION", default_value = "24h", value_parser = parse_duration)]
    pub retention: Duration,
    /// How many recent events a new stream without a cursor receives.
    #[arg(long, env = "SWITCHBOARD_REPLAY_COUNT", default_value_t = 50)]
    pub replay_count: usize,
    /// Only events younger than this are replayed to a new stream.
    #[arg(long, env = "SWITCHBOARD_REPLAY_WINDOW", default_value = "5m", value_parser = parse_duration)]
    pub replay_window: Duration,
    /// A comment line is sent on an idle stream this often.
    #[arg(long, env = "SWITCHBOARD_KEEPALIVE", default_value = "15s", value_parser = parse_duration)]
    pub keepalive: Duration,
    /// The reconnection delay announced to clients (`retry:`).
    #[arg(long, env = "SWITCHBOARD_RETRY", default_value = "2s", value_parser = parse_duration)]
    pub retry: Duration,
    /// How long a file lock lasts when the request names no `ttl_seconds`.
    #[arg(long, env = "SWITCHBOARD_LOCK_TTL", default_value = "60s", value_parser = parse_duration)]
    pub lock_ttl: Duration,
    /// Largest request body accepted (`1MiB`, `512KiB`, bytes).
    #[arg(long, env = "SWITCHBOARD_MAX_BODY", default_value = "1MiB", value_parser = parse_size)]
    pub max_body: usize,
    /// Frames queued per stream before it falls back to reading the log.
    #[arg(long, env = "SWITCHBOARD_STREAM_QUEUE", default_value_t = 1024)]
    pub stream_queue: usize,
    /// Connections in the read pool.
    #[arg(long, env = "SWITCHBOARD_READ_POOL", default_value_t = 8)]
    pub read_pool: u32,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "SWITCHBOARD_WORKERS")]
    pub workers: Option<usize>,
    /// A TOML file of tokens; without it (nor JWTs, nor an authorize
    /// callback) the server is open (see docs/security.md).
    #[arg(long, env = "SWITCHBOARD_TOKENS")]
    pub tokens: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// How long a stream ticket (`POST /api/stream-tickets`) stays valid.
    #[arg(long, env = "SWITCHBOARD_TICKET_TTL", default_value = "30s", value_parser = parse_duration)]
    pub ticket_ttl: Duration,
    /// Allow open mode (no tokens) on a non-loopback address.
    #[arg(long, env = "SWITCHBOARD_ALLOW_OPEN")]
    pub allow_open: bool,
    /// Browser origins allowed to call the API (CORS); none by default.
    #[arg(
        long = "cors-origin",
        env = "SWITCHBOARD_CORS_ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// Writes per second each agent may make (a burst of twice as many); 0 turns the limit off.
    #[arg(long, env = "SWITCHBOARD_RATE_LIMIT", default_value_t = 1000)]
    pub rate_limit: u32,
    /// Open streams the server accepts before answering 503.
    #[arg(long, env = "SWITCHBOARD_MAX_STREAMS", default_value_t = 50_000)]
    pub max_streams: usize,
    /// With PostgreSQL: a node that has not refreshed its heartbeat for this
    /// long is considered gone, and its sessions leave (heartbeats are sent
    /// five times per period).
    #[arg(long, env = "SWITCHBOARD_NODE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub node_timeout: Duration,
    /// `text` for people, `json` for machines.
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub mercure: MercureArgs,
    /// How long a Durable Streams long-poll (and an idle SSE wait) lasts
    /// before it answers 204 (SSE: a control event).
    #[arg(long, env = "SWITCHBOARD_DURABLE_STREAMS_LONG_POLL", default_value = "30s", value_parser = parse_duration)]
    pub durable_streams_long_poll: Duration,
    /// The largest Durable Streams append or initial body.
    #[arg(long, env = "SWITCHBOARD_DURABLE_STREAMS_MAX_APPEND", default_value = "16MiB", value_parser = parse_size)]
    pub durable_streams_max_append: usize,
    /// The URL clients and webhook receivers reach this server at
    /// (`https://sync.example.com`): the start of the callback and JWKS URLs
    /// that Durable Streams subscriptions publish. Default: `http://` and the
    /// bound address (`127.0.0.1` for an unspecified one).
    #[arg(long, env = "SWITCHBOARD_DURABLE_STREAMS_PUBLIC_URL")]
    pub durable_streams_public_url: Option<String>,
    /// Let webhooks (subscriptions on channels and Durable Streams'
    /// subscriptions) call loopback addresses (`127.0.0.0/8`, `::1`,
    /// `localhost`): for local development and tests.
    #[arg(
        long,
        alias = "durable-streams-webhooks-allow-loopback",
        env = "SWITCHBOARD_WEBHOOKS_ALLOW_LOOPBACK"
    )]
    pub webhooks_allow_loopback: bool,
    /// Let webhooks call private, shared and link-local addresses
    /// (`10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`, `100.64.0.0/10`,
    /// `169.254.0.0/16`, `fc00::/7`, `fe80::/10`): receivers on an internal
    /// network. Checked again for every address a host name resolves to.
    #[arg(long, env = "SWITCHBOARD_WEBHOOKS_ALLOW_PRIVATE")]
    pub webhooks_allow_private: bool,
    /// Call only these webhook hosts (repeatable or comma-separated; a name,
    /// `*.example.com` for its subdomains, or an address). Every public host
    /// when none is given. The other webhook rules still apply.
    #[arg(long, env = "SWITCHBOARD_WEBHOOKS_ALLOW_HOST", value_delimiter = ',')]
    pub webhooks_allow_host: Vec<String>,
}

/// `switchboard mcp`: the server it talks to and the session it is
/// (docs/agents.md).
#[derive(Debug, Clone, clap::Args)]
pub struct McpArgs {
    /// The switchboard server's base URL.
    #[arg(
        long,
        env = "SWITCHBOARD_SERVER",
        default_value = "http://127.0.0.1:8000"
    )]
    pub server: String,
    /// A bearer token, when the server runs with --tokens.
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Who acts (X-Agent-ID); with a token, the token's agent.
    #[arg(long, env = "SWITCHBOARD_AGENT_ID")]
    pub agent_id: Option<String>,
    /// This process's session (X-Session-ID); a new one per process by default.
    #[arg(long, env = "SWITCHBOARD_SESSION_ID")]
    pub session_id: Option<String>,
}

/// The app's own identities (docs/security.md): JWTs from its identity
/// provider, and the authorize callback for apps with cookie sessions.
#[derive(Debug, Clone, clap::Args)]
pub struct IdentityArgs {
    /// JWTs signed with this HMAC secret (HS256/384/512) are taken, e.g. a
    /// Supabase project's JWT secret (at least 32 bytes).
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// JWTs signed with this public key are taken: a PEM (RSA, EC P-256 or
    /// P-384, Ed25519), a JWK or a JWK set, inline or a file path. Repeat
    /// for several keys.
    #[arg(long = "jwt-key", env = "SWITCHBOARD_JWT_KEY", hide_env_values = true)]
    pub jwt_keys: Vec<String>,
    /// The identity provider's JWKS URL: fetched at start, again as its
    /// Cache-Control says and for an unknown `kid` (at most every 10 s);
    /// the last good keys stay while the provider is down.
    #[arg(long, env = "SWITCHBOARD_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,
    /// The `iss` a JWT must have (unchecked when not set).
    #[arg(long, env = "SWITCHBOARD_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The `aud` a JWT must have, one of these (unchecked when not set).
    #[arg(
        long = "jwt-audience",
        env = "SWITCHBOARD_JWT_AUDIENCE",
        value_delimiter = ','
    )]
    pub jwt_audiences: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[arg(long, env = "SWITCHBOARD_JWT_LEEWAY", default_value = "30s", value_parser = parse_duration)]
    pub jwt_leeway: Duration,
    /// The claim that names a JWT's agent (`sub`, `email`, …).
    #[arg(long, env = "SWITCHBOARD_JWT_AGENT_CLAIM", default_value = "sub")]
    pub jwt_agent_claim: String,
    /// The claim holding a JWT's channel patterns, `{"read": [...],
    /// "write": [...]}`; a JWT without it gets --jwt-read and --jwt-write.
    #[arg(
        long,
        env = "SWITCHBOARD_JWT_SCOPES_CLAIM",
        default_value = "switchboard"
    )]
    pub jwt_scopes_claim: String,
    /// Channel patterns a JWT without the scopes claim may read;
    /// `{agent}` is its agent (`user:{agent}:*`). None by default.
    #[arg(long = "jwt-read", env = "SWITCHBOARD_JWT_READ", value_delimiter = ',')]
    pub jwt_read: Vec<String>,
    /// Channel patterns a JWT without the scopes claim may write.
    #[arg(
        long = "jwt-write",
        env = "SWITCHBOARD_JWT_WRITE",
        value_delimiter = ','
    )]
    pub jwt_write: Vec<String>,
    /// The app's URL that says who a request's credentials are (its
    /// session cookie): `GET` with the forwarded headers, answered
    /// `{"agent_id", "read", "write", "expires_in"}`, 401 or 403.
    #[arg(long, env = "SWITCHBOARD_AUTHORIZE_URL")]
    pub authorize_url: Option<String>,
    /// The request headers forwarded to the authorize URL.
    #[arg(
        long = "authorize-header",
        env = "SWITCHBOARD_AUTHORIZE_HEADER",
        value_delimiter = ',',
        default_value = "Cookie,Authorization"
    )]
    pub authorize_headers: Vec<String>,
    /// How long the authorize URL may take; then the request is 503.
    #[arg(long, env = "SWITCHBOARD_AUTHORIZE_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub authorize_timeout: Duration,
    /// How long an authorize answer is kept when it names no lifetime.
    #[arg(long, env = "SWITCHBOARD_AUTHORIZE_TTL", default_value = "60s", value_parser = parse_duration)]
    pub authorize_ttl: Duration,
    /// The most authorize answers kept (one per credential).
    #[arg(long, env = "SWITCHBOARD_AUTHORIZE_CACHE", default_value_t = 10_000)]
    pub authorize_cache: usize,
}

/// The Mercure hub at `/.well-known/mercure` (docs/mercure.md): on when a
/// publisher key is given.
#[derive(Debug, Clone, clap::Args)]
pub struct MercureArgs {
    /// Turns the Mercure hub on: the key publishers' JWTs are signed with
    /// (HS256: the secret; RS256: a PEM public key, inline or a file path).
    #[arg(
        long,
        env = "SWITCHBOARD_MERCURE_PUBLISHER_JWT_KEY",
        hide_env_values = true
    )]
    pub mercure_publisher_jwt_key: Option<String>,
    /// The key subscribers' JWTs are signed with (default: the publisher key).
    #[arg(
        long,
        env = "SWITCHBOARD_MERCURE_SUBSCRIBER_JWT_KEY",
        hide_env_values = true
    )]
    pub mercure_subscriber_jwt_key: Option<String>,
    /// The algorithm of both keys.
    #[arg(long, env = "SWITCHBOARD_MERCURE_JWT_ALGORITHM", value_enum, default_value_t = MercureAlgorithm::Hs256)]
    pub mercure_jwt_algorithm: MercureAlgorithm,
    /// Subscribers without a token receive public updates.
    #[arg(long, env = "SWITCHBOARD_MERCURE_ANONYMOUS")]
    pub mercure_anonymous: bool,
    /// Publish subscription events and serve the subscriptions API.
    #[arg(long, env = "SWITCHBOARD_MERCURE_SUBSCRIPTIONS")]
    pub mercure_subscriptions: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MercureAlgorithm {
    #[value(name = "HS256")]
    Hs256,
    #[value(name = "RS256")]
    Rs256,
}

/// `ServeArgs` alone, to read the defaults.
#[derive(Parser)]
struct ServeOnly {
    #[command(flatten)]
    serve: ServeArgs,
}

impl ServeArgs {
    /// The webhook targets these flags allow.
    pub fn webhook_policy(&self) -> crate::domain::webhook::WebhookPolicy {
        crate::domain::webhook::WebhookPolicy {
            allow_loopback: self.webhooks_allow_loopback,
            allow_private: self.webhooks_allow_private,
            hosts: self
                .webhooks_allow_host
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        }
    }

    /// The settings for a test server: port 0, the given database, defaults.
    pub fn for_tests(database: DatabaseUrl) -> Self {
        let mut args = ServeOnly::parse_from(["switchboard"]).serve;
        args.bind = "127.0.0.1:0".into();
        args.db.database = database;
        args.workers = Some(2);
        args
    }
}

/// `24h`, `5m`, `2s`, `500ms`.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value)
        .map_err(|e| format!("{value:?} is not a duration like 24h, 5m, 2s or 500ms: {e}"))
}

/// `1MiB`, `512KiB`, `64kb`, `1000`.
pub fn parse_size(value: &str) -> Result<usize, String> {
    let lower = value.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("{value:?} is not a size like 1MiB"))?;
    let factor = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        _ => return Err(format!("{value:?}: unknown unit (use B, KiB, MiB or GiB)")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{value:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_parse_as_documented() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_size("1MiB").unwrap(), 1_048_576);
        assert_eq!(parse_size("512KiB").unwrap(), 524_288);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("1XB").is_err());
    }
}
