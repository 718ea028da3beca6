//! Who may do what. Without a tokens file the server is open (and binds only
//! loopback addresses unless `--allow-open`). With one, every request needs a
//! token; a token names its agent and the channel patterns it may read and
//! write.
//!
//! Tokens are looked up by their SHA-256 digest, so the file may hold either
//! the token or only its digest (`token_sha256`), and a token never needs to
//! be kept in memory in the clear. Stream tickets are short-lived, single-use
//! stand-ins for a token, so that long-lived tokens never sit in URLs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::domain::{AgentId, ChannelPattern};

/// Channel patterns a token may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Patterns(Vec<ChannelPattern>),
}

impl Scope {
    fn from_patterns(field: &str, list: &[String]) -> Result<Scope, String> {
        let patterns = list
            .iter()
            .map(|p| ChannelPattern::parse(field, p).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        if patterns.iter().any(ChannelPattern::is_all) {
            return Ok(Scope::All);
        }
        Ok(Scope::Patterns(patterns))
    }

    pub fn allows(&self, channel: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Patterns(patterns) => patterns.iter().any(|p| p.matches(channel)),
        }
    }

    /// The patterns to intersect a read with; `None` when everything is allowed.
    pub fn restriction(&self) -> Option<Vec<ChannelPattern>> {
        match self {
            Scope::All => None,
            Scope::Patterns(patterns) => Some(patterns.clone()),
        }
    }
}

/// The caller, once authenticated.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's agent; `None` in open mode, where `X-Agent-ID` names it.
    pub agent_id: Option<AgentId>,
    pub read: Scope,
    pub write: Scope,
}

impl Principal {
    pub fn open() -> Self {
        Principal {
            agent_id: None,
            read: Scope::All,
            write: Scope::All,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    token: Option<String>,
    token_sha256: Option<String>,
    agent_id: String,
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    write: Vec<String>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The parsed tokens file: principals by token digest.
#[derive(Debug, Default)]
pub struct Tokens {
    by_digest: HashMap<[u8; 32], Principal>,
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let file: TokensFile =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut by_digest = HashMap::new();
        for (i, entry) in file.tokens.into_iter().enumerate() {
            let at = format!("{} tokens[{i}]", path.display());
            let key = match (&entry.token, &entry.token_sha256) {
                (Some(token), None) if !token.is_empty() => digest(token),
                (None, Some(hex)) => parse_hex(hex)
                    .ok_or_else(|| format!("{at}: token_sha256 must be 64 hex digits"))?,
                _ => return Err(format!("{at}: give exactly one of token or token_sha256")),
            };
            let principal = Principal {
                agent_id: Some(
                    AgentId::parse("agent_id", &entry.agent_id)
                        .map_err(|e| format!("{at}: {e}"))?,
                ),
                read: Scope::from_patterns("read", &entry.read)
                    .map_err(|e| format!("{at}: {e}"))?,
                write: Scope::from_patterns("write", &entry.write)
                    .map_err(|e| format!("{at}: {e}"))?,
            };
            if by_digest.insert(key, principal).is_some() {
                return Err(format!("{at}: the same token appears twice"));
            }
        }
        Ok(Tokens { by_digest })
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

/// How long a stream ticket lives unless told otherwise.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(30);

/// Authentication state: the tokens (reloadable) and outstanding tickets.
pub struct Auth {
    path: Option<PathBuf>,
    ticket_lifetime: Duration,
    tokens: RwLock<Option<Arc<Tokens>>>,
    tickets: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl Auth {
    pub fn open() -> Self {
        Auth {
            path: None,
            ticket_lifetime: TICKET_LIFETIME,
            tokens: RwLock::new(None),
            tickets: Mutex::new(HashMap::new()),
        }
    }

    pub fn from_file(path: &Path) -> Result<Self, String> {
        let tokens = Tokens::load(path)?;
        Ok(Auth {
            path: Some(path.to_owned()),
            ticket_lifetime: TICKET_LIFETIME,
            tokens: RwLock::new(Some(Arc::new(tokens))),
            tickets: Mutex::new(HashMap::new()),
        })
    }

    pub fn with_ticket_lifetime(mut self, lifetime: Duration) -> Self {
        self.ticket_lifetime = lifetime;
        self
    }

    pub fn is_open(&self) -> bool {
        self.path.is_none()
    }

    /// Reads the tokens file again (SIGHUP). On error the old tokens stay.
    pub fn reload(&self) -> Result<usize, String> {
        let Some(path) = &self.path else {
            return Ok(0);
        };
        let tokens = Tokens::load(path)?;
        let count = tokens.len();
        *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(tokens));
        Ok(count)
    }

    /// The principal of a bearer token.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let tokens = self
            .tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        tokens.by_digest.get(&digest(token)).cloned()
    }

    /// A single-use ticket standing for `principal` for the ticket lifetime.
    pub fn issue_ticket(&self, principal: Principal) -> (String, Duration) {
        use rand::Rng;
        let bytes: [u8; 24] = rand::rng().random();
        let ticket: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut tickets = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
        tickets.retain(|_, (_, expires)| *expires > now);
        tickets.insert(ticket.clone(), (principal, now + self.ticket_lifetime));
        (ticket, self.ticket_lifetime)
    }

    /// Uses up a ticket: valid once, before it expires.
    pub fn redeem_ticket(&self, ticket: &str) -> Option<Principal> {
        let mut tickets = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
        let (principal, expires) = tickets.remove(ticket)?;
        (expires > Instant::now()).then_some(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_by_token_or_by_digest_and_scopes_match_patterns() {
        let dir = std::env::temp_dir().join(format!("sb-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens.toml");
        let hashed: String = digest("s3cret")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(
            &path,
            format!(
                r#"
[[tokens]]
token = "plain-token"
agent_id = "claude-1"
read = ["*"]
write = ["features", "conversation:*"]

[[tokens]]
token_sha256 = "{hashed}"
agent_id = "reader"
read = ["features"]
"#
            ),
        )
        .unwrap();
        let auth = Auth::from_file(&path).unwrap();
        let claude = auth.authenticate("plain-token").unwrap();
        assert_eq!(claude.agent_id.unwrap().as_str(), "claude-1");
        assert!(claude.read.allows("files"));
        assert!(claude.write.allows("conversation:9") && !claude.write.allows("files"));
        let reader = auth.authenticate("s3cret").unwrap();
        assert!(reader.read.allows("features") && !reader.read.allows("files"));
        assert!(!reader.write.allows("features"));
        assert!(auth.authenticate("wrong").is_none());

        let (ticket, _) = auth.issue_ticket(reader);
        assert!(auth.redeem_ticket(&ticket).is_some());
        assert!(auth.redeem_ticket(&ticket).is_none(), "single use");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
