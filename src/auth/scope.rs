//! Channel scopes: the patterns a principal may read or write, and the
//! templates they are written as (`user:{agent}:*`), filled in with the
//! principal's agent when it is known.

use crate::domain::{AgentId, ChannelPattern};

/// Channel patterns a principal may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Patterns(Vec<ChannelPattern>),
}

impl Scope {
    /// Nothing at all (a principal whose provider granted no patterns).
    pub fn none() -> Scope {
        Scope::Patterns(Vec::new())
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

/// The one placeholder a pattern may hold.
const AGENT: &str = "{agent}";

/// Patterns as configured, placeholders not yet filled in: from the tokens
/// file, the JWT settings, an authorize answer. Checked when built, so that a
/// broken template is found at start, not at a user's first request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeTemplate(Vec<String>);

impl ScopeTemplate {
    /// Checks every pattern: `{agent}` is the only placeholder, and each
    /// pattern is a valid channel pattern once an agent fills it in.
    pub fn parse(field: &str, patterns: &[String]) -> Result<ScopeTemplate, String> {
        for pattern in patterns {
            fill(field, pattern, "agent")?;
        }
        Ok(ScopeTemplate(patterns.to_vec()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The scope for `agent`: each `{agent}` replaced by its id. An agent id
    /// may hold `@`, which no channel can: a template that would then name
    /// an invalid channel is an error, never a silently wider or narrower
    /// scope.
    pub fn resolve(&self, field: &str, agent: Option<&AgentId>) -> Result<Scope, String> {
        let mut patterns = Vec::with_capacity(self.0.len());
        for pattern in &self.0 {
            let filled = match agent {
                Some(agent) => fill(field, pattern, agent.as_str())?,
                None if pattern.contains(AGENT) => {
                    return Err(format!(
                        "{field}: {pattern} needs an agent, and this credential names none"
                    ))
                }
                None => fill(field, pattern, "")?,
            };
            if filled.is_all() {
                return Ok(Scope::All);
            }
            patterns.push(filled);
        }
        Ok(Scope::Patterns(patterns))
    }
}

fn fill(field: &str, pattern: &str, agent: &str) -> Result<ChannelPattern, String> {
    // In a prefix pattern, the character after `{agent}` ends the agent's
    // part: an agent whose id holds it would reach into another agent's
    // channels (`alice` and `alice:x` under `user:{agent}:*`).
    if pattern.ends_with('*') {
        for (at, _) in pattern.match_indices(AGENT) {
            match pattern[at + AGENT.len()..].chars().next() {
                Some('*') => {
                    return Err(format!(
                        "{field}: {pattern}: {AGENT}* would let an agent read every agent whose id starts with its own; put a separator after {AGENT}"
                    ))
                }
                Some(separator) if agent.contains(separator) => {
                    return Err(format!(
                        "{field}: the agent {agent:?} holds {separator:?}, which ends {AGENT} in {pattern}"
                    ))
                }
                _ => {}
            }
        }
    }
    let filled = pattern.replace(AGENT, agent);
    if filled.contains(['{', '}']) {
        return Err(format!(
            "{field}: {pattern} has a placeholder other than {AGENT}"
        ));
    }
    ChannelPattern::parse(field, &filled).map_err(|e| {
        if pattern.contains(AGENT) {
            format!(
                "{field}: {pattern} filled with the agent {agent:?} is not a channel pattern ({e})"
            )
        } else {
            e.to_string()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str) -> AgentId {
        AgentId::parse("agent", id).unwrap()
    }

    #[test]
    fn a_template_confines_each_agent_to_its_own_channels() {
        let template =
            ScopeTemplate::parse("read", &["user:{agent}:*".into(), "global".into()]).unwrap();
        let alice = template.resolve("read", Some(&agent("alice"))).unwrap();
        assert!(alice.allows("user:alice:todo") && alice.allows("global"));
        assert!(!alice.allows("user:bob:todo") && !alice.allows("user:alice"));
        let bob = template.resolve("read", Some(&agent("bob"))).unwrap();
        assert!(bob.allows("user:bob:x") && !bob.allows("user:alice:x"));
    }

    #[test]
    fn a_star_means_everything_and_bad_templates_are_refused() {
        let all = ScopeTemplate::parse("read", &["*".into()]).unwrap();
        assert_eq!(all.resolve("read", None).unwrap(), Scope::All);
        assert!(ScopeTemplate::parse("read", &["user:{sub}".into()]).is_err());
        assert!(ScopeTemplate::parse("read", &["bad channel".into()]).is_err());
        assert!(ScopeTemplate::parse("read", &["user:{agent}*".into()]).is_err());
        let prefix = ScopeTemplate::parse("read", &["user:{agent}:*".into()]).unwrap();
        assert!(
            prefix.resolve("read", Some(&agent("alice:x"))).is_err(),
            "alice:x would share alice's prefix"
        );
        let template = ScopeTemplate::parse("read", &["user:{agent}".into()]).unwrap();
        assert!(
            template.resolve("read", None).is_err(),
            "no agent to fill in"
        );
        let err = template
            .resolve("read", Some(&agent("a@example.com")))
            .unwrap_err();
        assert!(err.contains("a@example.com"), "{err}");
        assert_eq!(
            ScopeTemplate::default().resolve("read", None).unwrap(),
            Scope::none()
        );
    }
}
