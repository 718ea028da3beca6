-- Shared files. A deleted file stays as a tombstone for /api/sync.
CREATE TABLE files (
    stable_id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    label TEXT COLLATE "C",
    derived_from TEXT COLLATE "C",
    content TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL,
    created_by TEXT COLLATE "C" NOT NULL,
    updated_by TEXT COLLATE "C" NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    last_event_id BIGINT NOT NULL,
    -- The edit lock: a lease held by one session until it expires.
    lock_session_id TEXT COLLATE "C",
    lock_agent_id TEXT COLLATE "C",
    lock_expires_at TEXT COLLATE "C"
);
CREATE INDEX files_event ON files (last_event_id);
-- The sweeper looks for leases that ran out.
CREATE INDEX files_lock_expiry ON files (lock_expires_at) WHERE lock_expires_at IS NOT NULL;

-- The content of every version of every file.
CREATE TABLE file_versions (
    stable_id TEXT COLLATE "C" NOT NULL REFERENCES files (stable_id),
    version BIGINT NOT NULL,
    content TEXT COLLATE "C" NOT NULL,
    saved_at TEXT COLLATE "C" NOT NULL,
    saved_by TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (stable_id, version)
);
