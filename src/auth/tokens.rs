//! The tokens file: static bearer tokens, each naming its agent and the
//! channel patterns (templates allowed) it may read and write.
//!
//! Tokens are looked up by their SHA-256 digest, so the file may hold either
//! the token or only its digest (`token_sha256`), and a token never needs to
//! be kept in memory in the clear.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::scope::ScopeTemplate;
use super::{digest, Principal, Source};
use crate::domain::AgentId;

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
            let agent =
                AgentId::parse("agent_id", &entry.agent_id).map_err(|e| format!("{at}: {e}"))?;
            let scope = |field: &str, patterns: &[String]| {
                ScopeTemplate::parse(field, patterns)
                    .and_then(|template| template.resolve(field, Some(&agent)))
                    .map_err(|e| format!("{at}: {e}"))
            };
            let principal = Principal {
                read: scope("read", &entry.read)?,
                write: scope("write", &entry.write)?,
                agent_id: Some(agent),
                expires: None,
                source: Source::Token(key),
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

    /// The principal of the token with this digest.
    pub fn get(&self, digest: &[u8; 32]) -> Option<&Principal> {
        self.by_digest.get(digest)
    }
}
