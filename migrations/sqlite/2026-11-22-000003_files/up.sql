-- Shared files. A deleted file stays as a tombstone for /api/sync.
CREATE TABLE files (
    stable_id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    label TEXT,
    derived_from TEXT,
    content TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT 0,
    last_event_id BIGINT NOT NULL,
    -- The edit lock: a lease held by one session until it expires.
    lock_session_id TEXT,
    lock_agent_id TEXT,
    lock_expires_at TEXT
);
CREATE INDEX files_event ON files (last_event_id);
-- The sweeper looks for leases that ran out.
CREATE INDEX files_lock_expiry ON files (lock_expires_at) WHERE lock_expires_at IS NOT NULL;

-- The content of every version of every file.
CREATE TABLE file_versions (
    stable_id TEXT NOT NULL REFERENCES files (stable_id),
    version BIGINT NOT NULL,
    content TEXT NOT NULL,
    saved_at TEXT NOT NULL,
    saved_by TEXT NOT NULL,
    PRIMARY KEY (stable_id, version)
);
