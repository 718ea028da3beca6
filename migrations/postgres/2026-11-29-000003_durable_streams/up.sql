-- Durable Streams (/v1/stream/{path}): each stream, its messages (the bytes
-- exactly as appended, keyed by their offset, which starts with the id of
-- the event that announced them), and its idempotent producers.
CREATE TABLE ds_streams (
    path TEXT PRIMARY KEY NOT NULL,
    content_type TEXT NOT NULL,
    ttl_seconds BIGINT,
    expires_at TEXT,
    closed BOOLEAN NOT NULL DEFAULT FALSE,
    closed_by TEXT,
    created_ms BIGINT NOT NULL,
    accessed_ms BIGINT NOT NULL,
    forked_from TEXT,
    fork_offset TEXT,
    fork_sub_offset BIGINT,
    ref_count BIGINT NOT NULL DEFAULT 0,
    soft_deleted BOOLEAN NOT NULL DEFAULT FALSE,
    tail TEXT NOT NULL,
    bytes BIGINT NOT NULL DEFAULT 0,
    last_seq TEXT
);
CREATE TABLE ds_messages (
    path TEXT NOT NULL,
    "offset" TEXT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (path, "offset")
);
CREATE TABLE ds_producers (
    path TEXT NOT NULL,
    producer_id TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (path, producer_id)
);
