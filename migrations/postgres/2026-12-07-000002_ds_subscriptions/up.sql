-- Durable Streams subscriptions (/v1/stream/__ds/subscriptions/{id}): each
-- subscription with its current wake (generation, wake id, the hash of its
-- token, holder and lease), the streams it follows with their acked offsets,
-- and the Ed25519 keys that sign webhook notifications.
CREATE TABLE ds_subscriptions (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    pattern TEXT,
    webhook_url TEXT,
    wake_stream TEXT,
    lease_ttl_ms BIGINT NOT NULL,
    description TEXT,
    config_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    generation BIGINT NOT NULL DEFAULT 0,
    wake_id TEXT,
    wake_snapshot TEXT,
    token_hash TEXT,
    holder TEXT,
    lease_expires_ms BIGINT
);
CREATE TABLE ds_subscription_streams (
    subscription_id TEXT NOT NULL,
    path TEXT NOT NULL,
    explicit BOOLEAN NOT NULL DEFAULT FALSE,
    glob BOOLEAN NOT NULL DEFAULT FALSE,
    acked_offset TEXT NOT NULL,
    PRIMARY KEY (subscription_id, path)
);
CREATE INDEX ds_subscription_streams_by_path ON ds_subscription_streams (path);
CREATE TABLE ds_signing_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    secret BYTEA NOT NULL,
    created_ms BIGINT NOT NULL
);
