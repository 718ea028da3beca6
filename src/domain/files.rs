//! Shared files and their edit locks. A lock is a lease: one session holds it
//! until it releases it or the lease runs out. Only the holder may save or
//! delete.

use serde_json::json;

use super::{AgentId, DomainError, ResourceId, SessionId, Timestamp};

/// The longest lease a client may ask for.
pub const MAX_LOCK_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// A request for a file's lock, checked: the session that is to hold it
/// (a lock is always a session's) and the lease it asks for — 1 to
/// `MAX_LOCK_TTL` seconds, or none (a renewal keeps its lease's length, a
/// new lock gets the server's default).
#[derive(Debug, Clone)]
pub struct LockRequest {
    pub session: SessionId,
    pub lease: Option<std::time::Duration>,
}

impl LockRequest {
    pub fn new(
        session: Option<&SessionId>,
        lease_seconds: Option<u64>,
    ) -> Result<Self, DomainError> {
        let lease = match lease_seconds {
            None => None,
            Some(s) if (1..=MAX_LOCK_TTL.as_secs()).contains(&s) => {
                Some(std::time::Duration::from_secs(s))
            }
            Some(_) => {
                return Err(DomainError::validation(
                    "ttl_seconds",
                    format!("must be 1 to {}", MAX_LOCK_TTL.as_secs()),
                ))
            }
        };
        let session = session.cloned().ok_or_else(|| {
            DomainError::BadRequest("a lock is held by a session: the request names none".into())
        })?;
        Ok(LockRequest { session, lease })
    }
}

/// Who holds a file's lock, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLock {
    pub session_id: SessionId,
    pub agent_id: AgentId,
    pub expires_at: Timestamp,
    /// The lease's length, kept by a renewal that names none; 0 for a
    /// lock taken before it was recorded.
    pub ttl_seconds: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SharedFile {
    pub stable_id: ResourceId,
    pub name: String,
    pub label: Option<String>,
    pub derived_from: Option<ResourceId>,
    pub content: String,
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub created_by: AgentId,
    pub updated_by: AgentId,
    pub deleted: bool,
    /// The lease as stored; it may have run out (see `active_lock`).
    pub lock: Option<FileLock>,
}

/// A kept version of a file: when, by whom, how large.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = FileVersionInfo)]
pub struct VersionInfo {
    pub version: i64,
    #[schema(value_type = String, format = DateTime)]
    pub saved_at: Timestamp,
    #[schema(value_type = String)]
    pub saved_by: AgentId,
    /// Its size in bytes.
    pub size: usize,
}

pub const MAX_NAME: usize = 255;

impl SharedFile {
    /// The lock if its lease is still running at `now`.
    pub fn active_lock(&self, now: Timestamp) -> Option<&FileLock> {
        self.lock.as_ref().filter(|lock| lock.expires_at > now)
    }

    fn touch(&mut self, agent: &AgentId, now: Timestamp) {
        self.version += 1;
        self.updated_at = now;
        self.updated_by = agent.clone();
    }
}

pub fn validate_name(field: &str, name: &str) -> Result<String, DomainError> {
    if name.trim().is_empty()
        || name.chars().count() > MAX_NAME
        || name.chars().any(char::is_control)
    {
        return Err(DomainError::validation(
            field,
            format!("must be 1 to {MAX_NAME} characters without control characters"),
        ));
    }
    Ok(name.to_owned())
}

pub struct NewFile {
    pub stable_id: ResourceId,
    pub name: String,
    pub label: Option<String>,
    pub derived_from: Option<ResourceId>,
    pub content: String,
}

pub fn create_file(
    new: NewFile,
    previous: Option<&SharedFile>,
    agent: &AgentId,
    now: Timestamp,
) -> SharedFile {
    SharedFile {
        stable_id: new.stable_id,
        name: new.name,
        label: new.label,
        derived_from: new.derived_from,
        content: new.content,
        version: previous.map_or(1, |p| p.version + 1),
        created_at: now,
        updated_at: now,
        created_by: agent.clone(),
        updated_by: agent.clone(),
        deleted: false,
        lock: None,
    }
}

fn lock_held(file: &SharedFile, lock: &FileLock) -> DomainError {
    DomainError::Conflict {
        code: "lock_held",
        message: format!(
            "{} is locked by {} until {}",
            file.stable_id, lock.agent_id, lock.expires_at
        ),
        details: json!({
            "stable_id": file.stable_id,
            "locked_by": lock.agent_id,
            "lock_session_id": lock.session_id,
            "lock_expires_at": lock.expires_at,
        }),
    }
}

/// The caller must hold the file's lock now.
pub fn require_lock(
    file: &SharedFile,
    session: Option<&SessionId>,
    now: Timestamp,
) -> Result<(), DomainError> {
    match (file.active_lock(now), session) {
        (Some(lock), Some(session)) if lock.session_id == *session => Ok(()),
        (lock, _) => Err(DomainError::Conflict {
            code: "lock_required",
            message: format!("acquire the lock of {} first", file.stable_id),
            details: json!({
                "stable_id": file.stable_id,
                "locked_by": lock.map(|l| &l.agent_id),
                "lock_session_id": lock.map(|l| &l.session_id),
            }),
        }),
    }
}

/// What taking a lock did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// A new lease. `expired` names the holder whose lease had run out and
    /// had not been swept yet: its release is announced first.
    New { expired: Option<FileLock> },
    /// The caller already held it: the lease is extended, nobody is told.
    Renewed,
}

/// Takes or renews the lock for `session` for `ttl_seconds`. A renewal
/// that names no length keeps the lease's own; a new lease without one
/// gets `default_ttl_seconds`.
pub fn acquire_lock(
    file: &mut SharedFile,
    session: &SessionId,
    agent: &AgentId,
    ttl_seconds: Option<u64>,
    default_ttl_seconds: u64,
    now: Timestamp,
) -> Result<Acquired, DomainError> {
    let (outcome, kept) = match file.active_lock(now) {
        Some(lock) if lock.session_id == *session => {
            (Acquired::Renewed, Some(lock.ttl_seconds).filter(|s| *s > 0))
        }
        Some(lock) => return Err(lock_held(file, lock)),
        None => (
            Acquired::New {
                expired: file.lock.clone(),
            },
            None,
        ),
    };
    let ttl_seconds = ttl_seconds.or(kept).unwrap_or(default_ttl_seconds);
    let length = chrono::Duration::seconds(i64::try_from(ttl_seconds).unwrap_or(i64::MAX / 1000));
    file.lock = Some(FileLock {
        session_id: session.clone(),
        agent_id: agent.clone(),
        expires_at: now.plus(length),
        ttl_seconds,
    });
    Ok(outcome)
}

/// Releases the caller's lock.
pub fn release_lock(
    file: &mut SharedFile,
    session: Option<&SessionId>,
    now: Timestamp,
) -> Result<(), DomainError> {
    match (file.active_lock(now), session) {
        (Some(lock), Some(session)) if lock.session_id == *session => {
            file.lock = None;
            Ok(())
        }
        (Some(lock), _) => Err(lock_held(file, lock)),
        (None, _) => Err(DomainError::Conflict {
            code: "conflict",
            message: format!("{} is not locked", file.stable_id),
            details: json!({ "stable_id": file.stable_id }),
        }),
    }
}

/// A save by the lock holder: the content becomes a new version.
pub fn save_file(file: &mut SharedFile, content: String, agent: &AgentId, now: Timestamp) {
    file.content = content;
    file.touch(agent, now);
}

pub fn delete_file(file: &mut SharedFile, agent: &AgentId, now: Timestamp) {
    file.deleted = true;
    file.lock = None;
    file.touch(agent, now);
}

/// What happened to a file, to be announced on `files`.
#[derive(Debug, Clone)]
pub enum FileChange {
    Created,
    Saved,
    Deleted,
    LockAcquired,
    LockReleased { reason: &'static str },
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_lock_request_names_a_session_and_asks_1_to_3600_seconds_or_none() {
        let session = SessionId::parse("X-Session-ID", "s1").unwrap();
        let lease = |s| LockRequest::new(Some(&session), s).map(|r| r.lease);
        assert!(matches!(lease(None), Ok(None)));
        assert!(matches!(lease(Some(3600)), Ok(Some(d)) if d.as_secs() == 3600));
        for bad in [0, 3601] {
            match lease(Some(bad)) {
                Err(DomainError::Validation { field, .. }) => assert_eq!(field, "ttl_seconds"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(matches!(
            LockRequest::new(None, Some(60)),
            Err(DomainError::BadRequest(_))
        ));
    }

    use super::*;

    fn file() -> SharedFile {
        let new = NewFile {
            stable_id: ResourceId::parse("stable_id", "file-1").unwrap(),
            name: "a.md".into(),
            label: None,
            derived_from: None,
            content: "x".into(),
        };
        create_file(
            new,
            None,
            &AgentId::parse("a", "alice").unwrap(),
            at("2026-01-01T00:00:00.000000Z"),
        )
    }

    fn at(text: &str) -> Timestamp {
        Timestamp::parse("t", text).unwrap()
    }

    fn session(s: &str) -> SessionId {
        SessionId::parse("s", s).unwrap()
    }

    #[test]
    fn the_first_session_wins_and_an_expired_lease_is_free_again() {
        let mut f = file();
        let agent = AgentId::parse("a", "alice").unwrap();
        let t0 = at("2026-01-01T00:00:00.000000Z");
        assert_eq!(
            acquire_lock(&mut f, &session("s1"), &agent, Some(60), 60, t0).unwrap(),
            Acquired::New { expired: None }
        );
        let err = acquire_lock(&mut f, &session("s2"), &agent, None, 60, t0).unwrap_err();
        assert!(matches!(
            err,
            DomainError::Conflict {
                code: "lock_held",
                ..
            }
        ));
        assert_eq!(
            acquire_lock(&mut f, &session("s1"), &agent, Some(60), 60, t0).unwrap(),
            Acquired::Renewed
        );
        let later = at("2026-01-01T00:02:00.000000Z");
        let outcome = acquire_lock(&mut f, &session("s2"), &agent, Some(60), 60, later).unwrap();
        assert!(matches!(outcome, Acquired::New { expired: Some(ref l) } if l.session_id == "s1"));
        assert!(require_lock(&f, Some(&session("s1")), later).is_err());
        assert!(require_lock(&f, Some(&session("s2")), later).is_ok());
        assert!(release_lock(&mut f, Some(&session("s1")), later).is_err());
        assert!(release_lock(&mut f, Some(&session("s2")), later).is_ok());
        assert!(f.lock.is_none());
    }

    #[test]
    fn a_renewal_without_a_length_keeps_the_leases_own() {
        let mut f = file();
        let agent = AgentId::parse("a", "alice").unwrap();
        let t0 = at("2026-01-01T00:00:00.000000Z");
        acquire_lock(&mut f, &session("s1"), &agent, Some(120), 60, t0).unwrap();
        let t1 = at("2026-01-01T00:01:00.000000Z");
        acquire_lock(&mut f, &session("s1"), &agent, None, 60, t1).unwrap();
        let lock = f.lock.as_ref().unwrap();
        assert_eq!(lock.expires_at, at("2026-01-01T00:03:00.000000Z"));
        assert_eq!(lock.ttl_seconds, 120);
        // A new lease without a length gets the default.
        f.lock = None;
        acquire_lock(&mut f, &session("s2"), &agent, None, 60, t1).unwrap();
        assert_eq!(
            f.lock.as_ref().unwrap().expires_at,
            at("2026-01-01T00:02:00.000000Z")
        );
    }
}
